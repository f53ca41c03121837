/**
 * The HTTP/JSON front end of a node (`registry-node --http-listen HOST:PORT`): every client call
 * of the gRPC API as a route over the same {@link RegistryApi} handlers (validation, forwarding
 * to the leader, consistency and errors live there, once), bodies in the proto3 JSON mapping
 * (`proto-json.ts`), errors as `google.rpc.Status` JSON with grpc-gateway's HTTP statuses.
 * Besides: the watch as Server-Sent Events and over WebSocket, `/health` probes, `/metrics`,
 * `/openapi.json` generated from the route schemas, and the dashboard (`web/`).
 *
 * Routes (ids contain `/`, so an id is the rest of the path, percent-decoded):
 *
 *   POST   /v1/agents                        Register (body: RegisterRequest)
 *   GET    /v1/agents?capability=&kind=&label=k=v&health=&namePrefix=&pageSize=&pageToken=&consistency=
 *   GET    /v1/agents/{id}                   Get (?consistency=); {id} may be <name>@<version>, <name>@latest, <name>
 *   GET    /v1/agents/{id}/card              the agent's card exactly as registered (application/json, ETag,
 *                                            304 on If-None-Match; 404 without a card). An id may itself end
 *                                            in `/card`: the whole path is tried as an id first, and only when
 *                                            no such agent exists is it the card of the agent `{id}`
 *   GET    /v1/agents:versions?name=         ListVersions (?consistency=), latest first
 *   GET    /v0.1/servers[/...]               the MCP registry's read API (`mcp-registry.ts`)
 *   DELETE /v1/agents/{id}                   Deregister (?expectedRevision=&clientId=&sequence=)
 *   POST   /v1/agents/{id}/heartbeat         Heartbeat (body: {"health": ...}, optional)
 *   GET    /v1/watch                         Watch as SSE (Last-Event-ID resumes)
 *   GET    /v1/watch/ws                      Watch over WebSocket, one JSON event per message
 *   GET    /v1/cluster/status, /v1/cluster/members
 *   POST   /v1/cluster/members               AddMember;  DELETE /v1/cluster/members/{id}
 *   POST   /v1/cluster/members/{id}/promote  PromoteMember
 *   POST   /v1/cluster/leader                TransferLeadership (body: {"targetId": ...})
 *   GET    /v1/snapshot                      a backup file (`registry snapshot save`)
 *   GET    /health[?ready|?live], /metrics, /openapi.json, / (dashboard), /ui/* (its assets)
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifyCors from '@fastify/cors';
import fastifyStatic from '@fastify/static';
import fastifySwagger from '@fastify/swagger';
import fastifyWebsocket from '@fastify/websocket';
import { Ajv } from 'ajv';
import type { WebSocket } from 'ws';
import { bearerToken, budgetFrom, type CallContext, type RegistryApi, type WatchStream } from '../api/handlers.js';
import { nodeHealth } from '../api/health.js';
import type { FindRequest, HeartbeatRequest, SearchRequest, WatchRequest, WireWatchEvent } from '../api/registry-proto.js';
import { ApiError, Code } from '../api/status.js';
import type { Logger } from '../log.js';
import { BackupError } from '../server/backup.js';
import type { RaftNode } from '../server/raft-node.js';
import { codeNameOfStatus, httpApiError, httpStatusOf, RETRY_AFTER_SECONDS, STATUS_BODY_SCHEMA, statusBody } from './errors.js';
import { registerMcpRegistryRoutes } from './mcp-registry.js';
import { enumNames, fromJson, messageSchema, responseSchema, toJson } from './proto-json.js';

/**
 * Largest request body accepted, in bytes: an agent (64 KiB) and its card (64 KiB, JSON-escaped
 * inside the body, which can double it) with room for the envelope.
 */
export const MAX_HTTP_BODY_BYTES = 512 * 1024;
/** Interval of the SSE keep-alive comment, in ms (below common proxy idle timeouts). */
export const SSE_KEEPALIVE_MS = 15_000;
/** WebSocket watch messages in flight before the stream pauses for the client to read. */
export const WS_MAX_PENDING_MESSAGES = 256;
/** Largest `pageSize` the HTTP front end passes on (the handlers apply the registry's own limit). */
const MAX_PAGE_SIZE_PARAM = 100_000;
/** The path suffix of `GET /v1/agents/{id}/card`. */
export const CARD_PATH_SUFFIX = '/card';

/** The strong ETag of a card: the SHA-256 of its UTF-8 bytes, hex, quoted (the same on every node). */
export function cardEtag(card: string): string {
  return `"${createHash('sha256').update(card, 'utf8').digest('hex')}"`;
}

/** Whether an `If-None-Match` header matches `etag` (`*`, a list, weak `W/` forms compare equal: RFC 9110 §13.1.2). */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}

/**
 * Answers with a stored card exactly as registered (`application/json`, its {@link cardEtag}),
 * or `304 Not Modified` when the request's `If-None-Match` names that ETag.
 */
function sendCard(req: FastifyRequest, reply: FastifyReply, card: string): FastifyReply {
  const etag = cardEtag(card);
  void reply.header('etag', etag).header('cache-control', 'no-cache');
  if (noneMatch(req.headers['if-none-match'], etag)) return reply.code(304).send();
  // A string with a JSON content type is sent as is (Fastify does not serialize it again).
  return reply.type('application/json; charset=utf-8').send(card);
}

/** Header carrying a call's time budget, in ms (the HTTP counterpart of a gRPC deadline). */
export const TIMEOUT_HEADER = 'x-request-timeout-ms';

/** What the front end needs of the metrics (see `src/server/metrics.ts`). */
export interface HttpMetrics {
  readonly registry: { metrics(): Promise<string>; readonly contentType: string };
  observeRequest(api: 'grpc' | 'http', method: string, code: string, seconds: number): void;
}

/** Settings of the HTTP front end. */
export interface HttpFrontEndOptions {
  /** `host:port` to listen on; port 0 picks a free one. */
  readonly listen: string;
  readonly api: RegistryApi;
  /** The node's Raft driver, for `/health`. */
  readonly raft: RaftNode;
  readonly logger: Logger;
  /**
   * Origins allowed to call from a browser besides the cluster's own dashboards (the HTTP
   * origins of its members are always allowed); `['*']` allows any. Default none.
   */
  readonly corsOrigins?: readonly string[];
  readonly metrics?: HttpMetrics;
  /**
   * Serve HTTPS with this certificate and key (PEM) instead of plain HTTP; no client
   * certificate is asked for. The cluster's own CORS origins are then `https://<member>`.
   */
  readonly https?: { readonly cert: Buffer; readonly key: Buffer };
  /** Folder of the dashboard's files (default: `web/` of the package, if present). */
  readonly webDir?: string;
}

/** `web/` of the package: two levels above `src/http/`, three above `dist/src/http/`. */
function defaultWebDir(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const dir = join(here, up, 'web');
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return undefined;
}

/**
 * The {@link CallContext} of an HTTP request: its budget from {@link TIMEOUT_HEADER}, its bearer
 * token from `Authorization` (or the `access_token` query parameter), and the client's address.
 */
function contextOf(req: FastifyRequest): CallContext {
  const raw = req.headers[TIMEOUT_HEADER];
  const ms = typeof raw === 'string' && raw !== '' ? Number(raw) : undefined;
  // Browsers cannot set headers on an EventSource or a WebSocket: there the token may come as the
  // `access_token` query parameter (RFC 6750 §2.3).
  const query = req.query as Record<string, unknown> | undefined;
  const token = bearerToken(req.headers.authorization) ?? (typeof query?.access_token === 'string' && query.access_token !== '' ? query.access_token : undefined);
  return {
    budgetMs: budgetFrom(ms !== undefined && Number.isFinite(ms) && ms > 0 ? ms : undefined),
    ...(token !== undefined ? { token } : {}),
    remoteAddress: req.ip,
  };
}

/** `Retry-After` for an error, in whole seconds: the error's own hint, else {@link RETRY_AFTER_SECONDS}. */
function retryAfterSeconds(e: ApiError): string {
  return String(e.retryAfterMs !== undefined ? Math.max(1, Math.ceil(e.retryAfterMs / 1000)) : RETRY_AFTER_SECONDS);
}

const CONSISTENCY_VALUES = [...enumNames('Consistency'), 'linearizable', 'serializable'];
const HEALTH_VALUES = [...enumNames('Health'), 'serving', 'degraded', 'not_serving'];

/** `linearizable` / `CONSISTENCY_LINEARIZABLE` → the enum name. */
function consistencyOf(v: string | undefined): FindRequest['consistency'] {
  if (v === undefined || v === '') return 'CONSISTENCY_UNSPECIFIED';
  return (v.startsWith('CONSISTENCY_') ? v : `CONSISTENCY_${v.toUpperCase()}`) as FindRequest['consistency'];
}

function healthOf(v: string | undefined): FindRequest['health'] {
  if (v === undefined || v === '') return 'HEALTH_UNSPECIFIED';
  return (v.startsWith('HEALTH_') ? v : `HEALTH_${v.toUpperCase()}`) as FindRequest['health'];
}

const string = { type: 'string' } as const;
const uint64Param = { type: 'string', pattern: '^[0-9]{1,16}$' } as const;
const errorResponses = { '4xx': STATUS_BODY_SCHEMA, '5xx': STATUS_BODY_SCHEMA };

/** Query of `GET /v1/agents`. */
const FIND_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    capability: string,
    capabilityPrefix: string,
    kind: string,
    label: { type: 'array', items: { type: 'string', pattern: '^[^=]+=', description: 'key=value; repeat for several' } },
    health: { type: 'string', enum: HEALTH_VALUES },
    namePrefix: string,
    verifiedOnly: { type: 'boolean', description: 'only agents whose card signature verified with a trusted key' },
    pageSize: { type: 'integer', minimum: 0, maximum: MAX_PAGE_SIZE_PARAM },
    pageToken: string,
    consistency: { type: 'string', enum: CONSISTENCY_VALUES },
  },
} as const;

/** Query of `GET /v1/agents:search`: the words `q` and every filter of a find. */
const SEARCH_QUERY = {
  type: 'object',
  additionalProperties: false,
  required: ['q'],
  properties: { q: { type: 'string', description: 'the words to look for' }, ...FIND_QUERY.properties },
} as const;

/** Query of the watch routes; `access_token` carries the bearer token of a browser's EventSource or WebSocket. */
const WATCH_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { startRevision: uint64Param, idPrefix: string, capability: string, kind: string, access_token: string },
} as const;

interface FindQuery {
  capability?: string;
  capabilityPrefix?: string;
  kind?: string;
  label?: string[];
  health?: string;
  namePrefix?: string;
  verifiedOnly?: boolean;
  pageSize?: number;
  pageToken?: string;
  consistency?: string;
}
interface WatchQuery {
  startRevision?: string;
  idPrefix?: string;
  capability?: string;
  kind?: string;
}

/** `a=b` pairs (repeated `label`) as a map; a key given twice is refused. */
function labelsOf(pairs: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs ?? []) {
    const at = p.indexOf('=');
    const key = p.slice(0, at);
    if (key in out) throw new ApiError(Code.INVALID_ARGUMENT, `query.label: ${JSON.stringify(key)} is given twice`);
    out[key] = p.slice(at + 1);
  }
  return out;
}

/** The filters, paging and consistency of a Find (or Search) query, as the handlers take them. */
function findFiltersOf(q: FindQuery): FindRequest {
  return {
    capability: q.capability ?? '',
    kind: q.kind ?? '',
    labels: labelsOf(q.label),
    page_size: q.pageSize ?? 0,
    page_token: q.pageToken ?? '',
    consistency: consistencyOf(q.consistency),
    health: healthOf(q.health),
    name_prefix: q.namePrefix ?? '',
    capability_prefix: q.capabilityPrefix ?? '',
    verified_only: q.verifiedOnly ?? false,
  };
}

/** The watch request of a query (with `Last-Event-ID`, resuming after that revision). */
function watchRequestOf(q: WatchQuery, lastEventId: string | undefined): WatchRequest {
  let start = q.startRevision === undefined ? 0 : Number(q.startRevision);
  if (lastEventId !== undefined && lastEventId !== '') {
    const last = Number(lastEventId);
    if (!Number.isSafeInteger(last) || last < 0) throw new ApiError(Code.INVALID_ARGUMENT, 'header.last-event-id: must be a revision');
    start = last + 1;
  }
  if (!Number.isSafeInteger(start)) throw new ApiError(Code.INVALID_ARGUMENT, 'query.startRevision: must be an integer within 2^53');
  return { start_revision: start, id_prefix: q.idPrefix ?? '', capability: q.capability ?? '', kind: q.kind ?? '' };
}

/** A running HTTP front end. */
export class HttpFrontEnd {
  private constructor(
    private readonly app: FastifyInstance,
    /** The bound `host:port`. */
    readonly address: string,
  ) {}

  /** Builds the routes and listens on `opts.listen`; throws if the port is taken. */
  static async start(opts: HttpFrontEndOptions): Promise<HttpFrontEnd> {
    const app = await buildApp(opts);
    const at = opts.listen.lastIndexOf(':');
    const host = opts.listen.slice(0, at);
    await app.listen({ host, port: Number(opts.listen.slice(at + 1)) });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : Number(opts.listen.slice(at + 1));
    return new HttpFrontEnd(app, `${host}:${port}`);
  }

  /** Stops listening and closes open streams (watches end). */
  async close(): Promise<void> {
    await this.app.close();
  }
}

/** The Fastify app with every route, not yet listening (tests may `inject` into it). */
export async function buildApp(opts: HttpFrontEndOptions): Promise<FastifyInstance> {
  const log = opts.logger;
  const { api, raft, metrics } = opts;
  // With `https` Fastify serves over an https.Server; the routes are the same either way.
  const app = Fastify({
    ...(opts.https ? { https: { cert: opts.https.cert, key: opts.https.key } } : {}),
    loggerInstance: log.child({ component: 'http' }) as unknown as FastifyBaseLogger,
    disableRequestLogging: true,
    bodyLimit: MAX_HTTP_BODY_BYTES,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
  }) as unknown as FastifyInstance;

  // Unknown fields are refused, never silently dropped. Query strings and paths are text, so
  // their values are coerced (`?pageSize=10`, a repeated `label`); a JSON body never is (an id
  // of 5 is a wrong type, not "5").
  const strict = new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, strict: false });
  const coercing = new Ajv({ removeAdditional: false, coerceTypes: 'array', useDefaults: false, allErrors: false, strict: false });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema));

  const apiCodes = new WeakMap<FastifyRequest, number>();
  app.setErrorHandler((err, req, reply) => {
    const e = httpApiError(err, log, MAX_HTTP_BODY_BYTES);
    apiCodes.set(req, e.code);
    const status = httpStatusOf(e.code);
    if (status === 503 || status === 429) void reply.header('retry-after', retryAfterSeconds(e));
    void reply.code(status).send(statusBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    apiCodes.set(req, Code.NOT_FOUND);
    void reply.code(404).send(statusBody(new ApiError(Code.NOT_FOUND, `no route ${req.method} ${req.url.split('?')[0]}`)));
  });
  if (metrics) {
    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched';
      metrics.observeRequest('http', `${req.method} ${route}`, codeNameOfStatus(reply.statusCode, apiCodes.get(req)), reply.elapsedTime / 1000);
    });
  }

  // Browsers: the cluster's own dashboards may call every member; other origins only as set.
  const extra = new Set(opts.corsOrigins ?? []);
  const originAllowed = (origin: string): boolean => {
    if (extra.has('*') || extra.has(origin)) return true;
    const scheme = opts.https ? 'https' : 'http';
    return api.memberHttpAddresses().some((a) => `${scheme}://${a}` === origin);
  };
  await app.register(fastifyCors, {
    origin: (origin, cb) => cb(null, origin !== undefined && originAllowed(origin)),
    methods: ['GET', 'POST', 'DELETE'],
    exposedHeaders: ['retry-after', 'etag'],
  });
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'registry.v1 over HTTP/JSON',
        version: '1',
        description: 'The registry API of every node, in the proto3 JSON mapping. Errors are google.rpc.Status JSON; a follower forwards writes to the leader.',
      },
    },
  });
  await app.register(fastifyWebsocket, { options: { maxPayload: MAX_HTTP_BODY_BYTES } });

  // --- registry.v1.Registry -------------------------------------------------------------------

  app.post('/v1/agents', {
    schema: { summary: 'Register an agent', tags: ['registry'], body: messageSchema('RegisterRequest'), response: { 200: responseSchema('RegisterResponse'), ...errorResponses } },
  }, async (req) => toJson('RegisterResponse', await api.register(fromJson('RegisterRequest', req.body), contextOf(req))));

  app.get('/v1/agents', {
    schema: { summary: 'Find agents, one page at a time', tags: ['registry'], querystring: FIND_QUERY, response: { 200: responseSchema('FindResponse'), ...errorResponses } },
  }, async (req) => {
    return toJson('FindResponse', await api.find(findFiltersOf(req.query as FindQuery), contextOf(req)));
  });

  // `/v1/agents:search` is its own path (`::` is a literal `:`), not an id under `/v1/agents/*`.
  app.get('/v1/agents::search', {
    schema: { summary: 'Keyword search over agents, ranked by BM25, one page at a time', tags: ['registry'], querystring: SEARCH_QUERY, response: { 200: responseSchema('SearchResponse'), ...errorResponses } },
  }, async (req) => {
    const q = req.query as FindQuery & { q: string };
    const request: SearchRequest = { query: q.q, ...findFiltersOf(q) };
    return toJson('SearchResponse', await api.search(request, contextOf(req)));
  });

  app.get('/v1/capabilities', {
    schema: {
      summary: 'The capabilities agents list, with their counts, optionally by prefix',
      tags: ['registry'],
      querystring: { type: 'object', additionalProperties: false, properties: { prefix: string, consistency: { type: 'string', enum: CONSISTENCY_VALUES } } },
      response: { 200: responseSchema('ListCapabilitiesResponse'), ...errorResponses },
    },
  }, async (req) => {
    const q = req.query as { prefix?: string; consistency?: string };
    return toJson('ListCapabilitiesResponse', await api.listCapabilities({ prefix: q.prefix ?? '', consistency: consistencyOf(q.consistency) }, contextOf(req)));
  });

  // `::` is a literal `:` in Fastify's router (a single `:` starts a parameter).
  app.get('/v1/agents::versions', {
    schema: {
      summary: 'Every version of one name, latest first',
      tags: ['registry'],
      querystring: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: string, consistency: { type: 'string', enum: CONSISTENCY_VALUES } } },
      response: { 200: responseSchema('ListVersionsResponse'), ...errorResponses },
    },
  }, async (req) => {
    const q = req.query as { name: string; consistency?: string };
    return toJson('ListVersionsResponse', await api.listVersions({ name: q.name, consistency: consistencyOf(q.consistency) }, contextOf(req)));
  });

  registerMcpRegistryRoutes(app, { api, logger: log, contextOf });

  const idParams = { type: 'object', properties: { '*': { type: 'string', description: 'the agent id (may contain /)' } } } as const;
  app.get('/v1/agents/*', {
    schema: {
      summary: 'Get one agent by id',
      tags: ['registry'],
      params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { consistency: { type: 'string', enum: CONSISTENCY_VALUES } } },
      response: { 200: responseSchema('GetResponse'), ...errorResponses },
    },
  }, async (req, reply) => {
    const id = (req.params as { '*': string })['*'];
    const q = req.query as { consistency?: string };
    const consistency = consistencyOf(q.consistency);
    if (!id.endsWith(CARD_PATH_SUFFIX)) return toJson('GetResponse', await api.get({ id, consistency }, contextOf(req)));
    // `.../card`: an agent whose id itself ends in `/card` is read first; only when there is
    // none is this the card of the agent named by the rest of the path.
    try {
      return toJson('GetResponse', await api.get({ id, consistency }, contextOf(req)));
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== Code.NOT_FOUND) throw err;
    }
    const owner = id.slice(0, -CARD_PATH_SUFFIX.length);
    const { agent } = await api.get({ id: owner, consistency }, contextOf(req));
    if (agent === null || agent.card === '') throw new ApiError(Code.NOT_FOUND, `agent ${JSON.stringify(owner)} has no card`);
    return sendCard(req, reply, agent.card);
  });

  app.delete('/v1/agents/*', {
    schema: {
      summary: 'Deregister an agent',
      tags: ['registry'],
      params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { expectedRevision: uint64Param, clientId: string, sequence: uint64Param } },
      response: { 200: responseSchema('DeregisterResponse'), ...errorResponses },
    },
  }, async (req) => {
    const id = (req.params as { '*': string })['*'];
    const q = req.query as { expectedRevision?: string; clientId?: string; sequence?: string };
    const res = await api.deregister({ id, client_id: q.clientId ?? '', sequence: Number(q.sequence ?? 0), expected_revision: Number(q.expectedRevision ?? 0) }, contextOf(req));
    return toJson('DeregisterResponse', res);
  });

  const heartbeatBody = { type: 'object', additionalProperties: false, properties: { health: (messageSchema('HeartbeatRequest').properties as Record<string, unknown>).health } };
  app.post('/v1/agents/*', {
    schema: {
      summary: 'Renew the lease of an agent: POST /v1/agents/{id}/heartbeat',
      tags: ['registry'],
      params: idParams,
      body: { anyOf: [{ type: 'null' }, heartbeatBody] },
      response: { 200: responseSchema('HeartbeatResponse'), ...errorResponses },
    },
  }, async (req) => {
    const rest = (req.params as { '*': string })['*'];
    if (!rest.endsWith('/heartbeat')) throw new ApiError(Code.NOT_FOUND, `no route POST /v1/agents/${rest} (heartbeat is POST /v1/agents/{id}/heartbeat)`);
    const id = rest.slice(0, -'/heartbeat'.length);
    const body = (req.body ?? {}) as { health?: HeartbeatRequest['health'] };
    return toJson('HeartbeatResponse', await api.heartbeat({ id, health: body.health ?? 'HEALTH_UNSPECIFIED' }, contextOf(req)));
  });
  // A heartbeat with no body at all: Fastify would refuse an empty JSON body.
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: MAX_HTTP_BODY_BYTES }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, null);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(new ApiError(Code.INVALID_ARGUMENT, `body: not valid JSON (${(e as Error).message})`), undefined);
    }
  });

  // --- watch ----------------------------------------------------------------------------------

  const eventJson = (e: WireWatchEvent): string => JSON.stringify(toJson('WatchEvent', e));

  app.get('/v1/watch', {
    schema: {
      summary: 'Watch changes as Server-Sent Events (id = revision; Last-Event-ID resumes after it)',
      tags: ['registry'],
      querystring: WATCH_QUERY,
      produces: ['text/event-stream'],
      response: { 200: { description: 'event: put|delete, data: a WatchEvent as JSON', type: 'string' }, ...errorResponses },
    },
  }, async (req, reply) => {
    const lastId = req.headers['last-event-id'];
    const request = watchRequestOf(req.query as WatchQuery, typeof lastId === 'string' ? lastId : undefined);
    const res = reply.raw;
    let started = false;
    const head = (): void => {
      if (started) return;
      started = true;
      reply.hijack();
      res.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
      res.write(': watching\n\n');
    };
    let keepalive: NodeJS.Timeout | undefined;
    const stream: WatchStream = {
      write: (e) => {
        head();
        return res.write(`id: ${e.revision}\nevent: ${e.type === 'EVENT_TYPE_DELETE' ? 'delete' : 'put'}\ndata: ${eventJson(e)}\n\n`);
      },
      onDrain: (resume) => res.once('drain', resume),
      fail: (err) => {
        head();
        res.end(`event: error\ndata: ${JSON.stringify(statusBody(err))}\n\n`);
      },
    };
    const cancel = await api.watch(request, stream, contextOf(req)); // a bad request throws here, before any byte is sent
    head();
    keepalive = setInterval(() => res.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
    keepalive.unref();
    const stop = (): void => {
      clearInterval(keepalive);
      cancel();
    };
    res.on('close', stop);
    if (res.destroyed) stop();
    return reply;
  });

  app.route({
    method: 'GET',
    url: '/v1/watch/ws',
    schema: { hide: true },
    // A plain request (no Upgrade header) gets a JSON answer saying what the route needs.
    handler: async (_req, reply) =>
      reply.code(426).header('upgrade', 'websocket').send(statusBody(new ApiError(Code.FAILED_PRECONDITION, 'GET /v1/watch/ws needs a WebSocket upgrade (Upgrade: websocket); GET /v1/watch serves the same events as Server-Sent Events'))),
    wsHandler: (socket: WebSocket, req: FastifyRequest) => {
      let pending = 0;
      let resumeWhenDrained: (() => void) | undefined;
      const sent = (): void => {
        pending--;
        if (resumeWhenDrained && pending <= WS_MAX_PENDING_MESSAGES / 2) {
          const r = resumeWhenDrained;
          resumeWhenDrained = undefined;
          r();
        }
      };
      const failWith = (err: ApiError): void => {
        if (socket.readyState !== socket.OPEN) return;
        socket.send(JSON.stringify({ error: statusBody(err) }), () => socket.close(1011, err.message.slice(0, 120)));
      };
      const stream: WatchStream = {
        write: (e) => {
          pending++;
          socket.send(eventJson(e), sent);
          return pending < WS_MAX_PENDING_MESSAGES;
        },
        onDrain: (resume) => {
          resumeWhenDrained = resume;
        },
        fail: failWith,
      };
      // Browsers apply no CORS to WebSockets, so the same origins are checked here.
      const origin = req.headers.origin;
      if (origin !== undefined && !originAllowed(origin)) {
        failWith(new ApiError(Code.PERMISSION_DENIED, `origin ${origin} may not watch this node (registry-node --cors-origin)`));
        return;
      }
      let request: WatchRequest;
      try {
        request = watchRequestOf(parseWatchQuery(req.query), undefined);
      } catch (err) {
        failWith(httpApiError(err, log, MAX_HTTP_BODY_BYTES));
        return;
      }
      api.watch(request, stream, contextOf(req)).then(
        (cancel) => {
          socket.on('close', cancel);
          if (socket.readyState !== socket.OPEN) cancel();
        },
        (err: unknown) => failWith(httpApiError(err, log, MAX_HTTP_BODY_BYTES)),
      );
    },
  });

  // --- registry.v1.Cluster --------------------------------------------------------------------

  app.get('/v1/cluster/status', {
    schema: { summary: "This node's view of the cluster", tags: ['cluster'], response: { 200: responseSchema('StatusResponse') } },
  }, async () => toJson('StatusResponse', api.status()));

  app.get('/v1/cluster/members', {
    schema: { summary: 'The members as this node knows them', tags: ['cluster'], response: { 200: responseSchema('MemberListResponse') } },
  }, async () => toJson('MemberListResponse', api.memberList()));

  app.post('/v1/cluster/members', {
    schema: { summary: 'Add a member (a learner, promoted once caught up unless learner=true)', tags: ['cluster'], body: messageSchema('AddMemberRequest'), response: { 200: responseSchema('MemberListResponse'), ...errorResponses } },
  }, async (req) => toJson('MemberListResponse', await api.addMember(fromJson('AddMemberRequest', req.body), contextOf(req))));

  const memberParams = { type: 'object', properties: { id: string } } as const;
  app.delete('/v1/cluster/members/:id', {
    schema: { summary: 'Remove a member', tags: ['cluster'], params: memberParams, response: { 200: responseSchema('MemberListResponse'), ...errorResponses } },
  }, async (req) => toJson('MemberListResponse', await api.removeMember({ id: (req.params as { id: string }).id }, contextOf(req))));

  app.post('/v1/cluster/members/:id/promote', {
    schema: { summary: 'Promote a caught-up learner to voter', tags: ['cluster'], params: memberParams, response: { 200: responseSchema('MemberListResponse'), ...errorResponses } },
  }, async (req) => toJson('MemberListResponse', await api.promoteMember({ id: (req.params as { id: string }).id }, contextOf(req))));

  app.post('/v1/cluster/leader', {
    schema: { summary: 'Hand leadership to another voter', tags: ['cluster'], body: messageSchema('TransferLeadershipRequest'), response: { 200: responseSchema('TransferLeadershipResponse'), ...errorResponses } },
  }, async (req) => toJson('TransferLeadershipResponse', await api.transferLeadership(fromJson('TransferLeadershipRequest', req.body), contextOf(req))));

  // --- registry.v1.Auth ------------------------------------------------------------------------

  app.get('/v1/auth/status', {
    schema: { summary: 'Whether auth is on, the key ids, and who the token says the caller is', tags: ['auth'], response: { 200: responseSchema('AuthStatusResponse'), ...errorResponses } },
  }, async (req) => toJson('AuthStatusResponse', await api.authStatus(contextOf(req))));

  app.post('/v1/auth/tokens', {
    schema: { summary: 'Create a token (admin)', tags: ['auth'], body: messageSchema('CreateTokenRequest'), response: { 200: responseSchema('CreateTokenResponse'), ...errorResponses } },
  }, async (req) => toJson('CreateTokenResponse', await api.createToken(fromJson('CreateTokenRequest', req.body), contextOf(req))));

  app.delete('/v1/auth/tokens/:id', {
    schema: { summary: 'Revoke a token by its id (admin)', tags: ['auth'], params: { type: 'object', properties: { id: string } }, response: { 200: responseSchema('AuthWriteResponse'), ...errorResponses } },
  }, async (req) => toJson('AuthWriteResponse', await api.revokeToken({ token_id: (req.params as { id: string }).id }, contextOf(req))));

  app.post('/v1/auth/signing-keys', {
    schema: { summary: 'Rotate the signing key (admin)', tags: ['auth'], body: messageSchema('RotateSigningKeyRequest'), response: { 200: responseSchema('AuthWriteResponse'), ...errorResponses } },
  }, async (req) => toJson('AuthWriteResponse', await api.rotateSigningKey(fromJson('RotateSigningKeyRequest', req.body ?? {}), contextOf(req))));

  app.post('/v1/auth/card-keys', {
    schema: { summary: 'Trust a public key for card signatures (admin)', tags: ['auth'], body: messageSchema('TrustCardKeyRequest'), response: { 200: responseSchema('AuthWriteResponse'), ...errorResponses } },
  }, async (req) => toJson('AuthWriteResponse', await api.trustCardKey(fromJson('TrustCardKeyRequest', req.body), contextOf(req))));

  app.delete('/v1/auth/card-keys/:id', {
    schema: { summary: 'Stop trusting a card key (admin)', tags: ['auth'], params: { type: 'object', properties: { id: string } }, response: { 200: responseSchema('AuthWriteResponse'), ...errorResponses } },
  }, async (req) => toJson('AuthWriteResponse', await api.untrustCardKey({ key_id: (req.params as { id: string }).id }, contextOf(req))));

  app.get('/v1/snapshot', {
    schema: { summary: "A consistent backup of this node's state (registry-node --restore FILE)", tags: ['cluster'], produces: ['application/octet-stream'], response: { 200: { type: 'string', format: 'binary' }, ...errorResponses } },
  }, async (req, reply) => {
    const chunks = api.backup(contextOf(req));
    let first: IteratorResult<Uint8Array>;
    try {
      first = await chunks.next();
    } catch (err) {
      throw err instanceof BackupError ? new ApiError(Code.FAILED_PRECONDITION, err.message) : err;
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), 'content-type': 'application/octet-stream', 'content-disposition': `attachment; filename="registry-${Date.now()}.backup"` });
    try {
      if (!first.done) res.write(first.value);
      for await (const chunk of chunks) {
        if (res.destroyed) break;
        if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      }
      res.end();
    } catch (err) {
      log.warn({ err }, 'backup download failed midway');
      res.destroy(err as Error);
    } finally {
      await chunks.return(undefined);
    }
    return reply;
  });

  // --- probes, metrics, documents, dashboard --------------------------------------------------

  app.get('/health', {
    schema: {
      summary: 'Health: 200 with a leader known and the committed log applied; ?live only asks that the node runs',
      tags: ['operations'],
      querystring: { type: 'object', additionalProperties: false, properties: { ready: string, live: string } },
    },
  }, async (req, reply) => {
    const h = nodeHealth(raft);
    const liveOnly = (req.query as { live?: string }).live !== undefined;
    const ok = liveOnly ? h.live : h.ready;
    if (!ok) void reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS));
    return {
      status: ok ? 'SERVING' : 'NOT_SERVING',
      reason: liveOnly && h.live ? '' : h.reason,
      leaderId: h.leaderId,
      term: String(h.term),
      commitIndex: String(h.commitIndex),
      appliedIndex: String(h.appliedIndex),
    };
  });

  if (metrics) {
    app.get('/metrics', { schema: { summary: 'Prometheus metrics (text format)', tags: ['operations'], produces: ['text/plain'] } }, async (_req, reply) => {
      void reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  }

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const webDir = opts.webDir ?? defaultWebDir();
  if (webDir) {
    await app.register(fastifyStatic, { root: webDir, prefix: '/ui/', index: false });
    app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.sendFile('index.html'));
  }

  await app.ready();
  return app;
}

/** The watch query of a WebSocket upgrade (no schema runs on it), checked by hand. */
function parseWatchQuery(q: unknown): WatchQuery {
  const query = (q ?? {}) as Record<string, unknown>;
  const out: WatchQuery = {};
  for (const [k, v] of Object.entries(query)) {
    if (typeof v !== 'string') throw new ApiError(Code.INVALID_ARGUMENT, `query.${k}: must be given once`);
    switch (k) {
      case 'startRevision':
        if (!/^[0-9]{1,16}$/.test(v)) throw new ApiError(Code.INVALID_ARGUMENT, 'query.startRevision: must be a revision');
        out.startRevision = v;
        break;
      case 'idPrefix':
      case 'capability':
      case 'kind':
        out[k] = v;
        break;
      case 'access_token':
        break; // read by contextOf
      default:
        throw new ApiError(Code.INVALID_ARGUMENT, `query.${k}: unknown field`);
    }
  }
  return out;
}

export type { FastifyReply };
