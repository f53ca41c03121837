/**
 * The official MCP registry's read API (`modelcontextprotocol/registry`,
 * `docs/reference/api/openapi.yaml`, version 2025-12-01) on the HTTP port, so clients written for
 * registry.modelcontextprotocol.io can read from this cluster:
 *
 *   GET /v0.1/servers?cursor=&limit=&search=&updated_since=&version=
 *   GET /v0.1/servers/{serverName}/versions
 *   GET /v0.1/servers/{serverName}/versions/{version|latest}
 *
 * `serverName` is percent-encoded (`io.github.user%2Fweather`); an unencoded `/` is accepted too.
 * Answers are the official shapes: a `ServerList` `{ servers: [ServerResponse], metadata: {
 * nextCursor?, count } }`, a `ServerResponse` `{ server: <server.json>, _meta: {
 * "io.modelcontextprotocol.registry/official": { status, publishedAt, updatedAt, isLatest } } }`,
 * and errors as `{ "error": "..." }` with the HTTP status of the gRPC code (404 for an unknown
 * server or version, 400 for a bad parameter, 503 without a leader).
 *
 * What is served: every agent that is an MCP server: registered with an MCP `server.json` card
 * (`cardFormat` `mcpServerJson`) or of kind `mcp-server` (the seed import's kind). Its
 * `server` is the stored card exactly as registered, else a server.json synthesized from the
 * record ({@link serverJsonOf}). Versions and `isLatest` are the registry's (`versions.ts`:
 * the highest semantic version; non-semantic ones below, by publication). `publishedAt` /
 * `updatedAt` are the record's `createdAtMs` / `updatedAtMs` (the leader's clock when the
 * registers were proposed, carried in the log), absent for records written before times were
 * kept; `status` is always `active` (a deregistered server is gone, not `deleted`).
 *
 * Paging: servers come in name order, then id; `cursor` is the opaque `nextCursor` of the page
 * before and resumes strictly after its last server, so a walk visits every server present
 * throughout exactly once. `search` keeps names containing it, ignoring case (the official
 * registry's substring match); `updated_since` (RFC 3339) keeps servers updated later than it;
 * `version=latest` keeps the latest version of each name, another value that exact version.
 * Every read is linearizable.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CallContext, RegistryApi } from '../api/handlers.js';
import { ApiError, Code, toApiError } from '../api/status.js';
import type { Logger } from '../log.js';
import { SEED_AGENT_KIND, REMOTE_CAPABILITY } from '../registry/seed.js';
import type { Agent } from '../registry/types.js';
import { LATEST_VERSION, type VersionPageItem } from '../registry/versions.js';
import { httpStatusOf, RETRY_AFTER_SECONDS } from './errors.js';

/** Servers per page when `limit` is not given (the official registry's default). */
export const MCP_DEFAULT_LIMIT = 30;
/** Largest `limit` accepted (the official registry's maximum); more is a 400. */
export const MCP_MAX_LIMIT = 100;
/** Longest `search`, `cursor` or `version` parameter accepted, in characters. */
export const MCP_MAX_PARAM_CHARS = 1024;
/** The `_meta` key of the registry's own metadata of a server (official registry namespace). */
export const OFFICIAL_META_KEY = 'io.modelcontextprotocol.registry/official';
/** The `$schema` of a server.json synthesized from a record (the schema the formats use). */
export const SYNTHESIZED_SERVER_JSON_SCHEMA = 'https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json';
/** Path prefix of the API. */
const PREFIX = '/v0.1/servers';

/** The registry's metadata of one server version (`_meta["io.modelcontextprotocol.registry/official"]`). */
export interface OfficialMeta {
  readonly status: 'active';
  /** RFC 3339, when the record was created; absent when unknown. */
  readonly publishedAt?: string;
  /** RFC 3339, when a register last wrote the record; absent when unknown. */
  readonly updatedAt?: string;
  readonly isLatest: boolean;
}

/** A `ServerResponse` of the official API. */
export interface ServerResponse {
  readonly server: Record<string, unknown>;
  readonly _meta: { readonly [OFFICIAL_META_KEY]: OfficialMeta };
}

/** A `ServerList` of the official API. */
export interface ServerList {
  readonly servers: ServerResponse[];
  readonly metadata: { readonly nextCursor?: string; readonly count: number };
}

/** Whether `agent` is served as an MCP server (see the module comment). */
export function isMcpServer(agent: Agent): boolean {
  return agent.cardFormat === 'mcpServerJson' || agent.kind === SEED_AGENT_KIND;
}

/** The `transport.type` of a remote at `url`: `sse` for a path ending in `/sse`, else `streamable-http`. */
function remoteTransportOf(url: string): 'sse' | 'streamable-http' {
  let path = url;
  try {
    path = new URL(url).pathname;
  } catch {
    // not a URL: look at the string itself
  }
  return /\/sse\/?$/i.test(path) ? 'sse' : 'streamable-http';
}

/** The repository source of `url` when no `source` label says: `github`, `gitlab`, else the host. */
function sourceOfUrl(url: string): string {
  try {
    const host = new URL(url).hostname.toLowerCase();
    if (host === 'github.com' || host.endsWith('.github.com')) return 'github';
    if (host === 'gitlab.com' || host.endsWith('.gitlab.com')) return 'gitlab';
    return host;
  } catch {
    return '';
  }
}

/**
 * The server.json of `agent`: its stored card when it was registered as an MCP server.json,
 * else one synthesized from the record as the seed import (`seed.ts`) mapped it:
 *
 * - `name`, `description`, `version` from the record; `$schema` {@link SYNTHESIZED_SERVER_JSON_SCHEMA};
 * - `repository`: `url` = endpoint `repository`, `source` = label `source` (else derived from the
 *   URL's host), `id` = label `repository_id` when present;
 * - `websiteUrl` = endpoint `website` when present;
 * - `packages`: the package names of label `package` (comma-separated) paired in order with the
 *   package-registry capabilities (those without `:` other than `remote`) when there are as many,
 *   or all with the one registry when there is one; `transport` `stdio` (the 2025-05-16 seed does
 *   not say, and stdio is what a package runs with);
 * - `remotes`: endpoints `remote`, `remote-2`, ... in order, `sse` for a URL ending in `/sse`, else
 *   `streamable-http`.
 *
 * A card that no longer parses (it was validated when registered) falls back to the synthesis.
 */
export function serverJsonOf(agent: Agent): Record<string, unknown> {
  if (agent.cardFormat === 'mcpServerJson' && agent.card !== undefined) {
    try {
      const card: unknown = JSON.parse(agent.card);
      if (typeof card === 'object' && card !== null && !Array.isArray(card)) return card as Record<string, unknown>;
    } catch {
      // fall through to the synthesized form
    }
  }
  const out: Record<string, unknown> = { $schema: SYNTHESIZED_SERVER_JSON_SCHEMA, name: agent.name, description: agent.description, version: agent.version };
  const repositoryUrl = agent.endpoints.repository;
  if (repositoryUrl !== undefined) {
    const source = agent.labels.source ?? sourceOfUrl(repositoryUrl);
    const id = agent.labels.repository_id;
    out.repository = { url: repositoryUrl, source, ...(id !== undefined ? { id } : {}) };
  }
  if (agent.endpoints.website !== undefined) out.websiteUrl = agent.endpoints.website;
  const names = (agent.labels.package ?? '').split(',').map((n) => n.trim()).filter((n) => n !== '');
  const registries = agent.capabilities.filter((c) => c !== REMOTE_CAPABILITY && !c.includes(':'));
  let packages: { registryType: string; identifier: string }[] = [];
  if (names.length > 0 && registries.length === names.length) packages = names.map((identifier, i) => ({ registryType: registries[i] as string, identifier }));
  else if (names.length > 0 && registries.length === 1) packages = names.map((identifier) => ({ registryType: registries[0] as string, identifier }));
  if (packages.length > 0) out.packages = packages.map((p) => ({ ...p, transport: { type: 'stdio' } }));
  const remotes: { type: string; url: string }[] = [];
  for (let i = 1; ; i++) {
    const url = agent.endpoints[i === 1 ? 'remote' : `remote-${i}`];
    if (url === undefined) break;
    remotes.push({ type: remoteTransportOf(url), url });
  }
  if (remotes.length > 0) out.remotes = remotes;
  return out;
}

/** RFC 3339 (UTC, milliseconds) of `ms` since the epoch, or `undefined`. */
function rfc3339(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

/** The `ServerResponse` of one version. */
export function serverResponseOf(agent: Agent, isLatest: boolean): ServerResponse {
  const publishedAt = rfc3339(agent.createdAtMs);
  const updatedAt = rfc3339(agent.updatedAtMs);
  return {
    server: serverJsonOf(agent),
    _meta: {
      [OFFICIAL_META_KEY]: { status: 'active', ...(publishedAt !== undefined ? { publishedAt } : {}), ...(updatedAt !== undefined ? { updatedAt } : {}), isLatest },
    },
  };
}

/** RFC 3339 date-time (section 5.6): date, `T`, time with optional fraction, `Z` or an offset. */
const RFC3339_PATTERN = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses `updated_since` to ms since the epoch; `INVALID_ARGUMENT` naming it otherwise. */
export function parseUpdatedSince(v: string): number {
  const ms = RFC3339_PATTERN.test(v) ? Date.parse(v) : Number.NaN;
  if (!Number.isFinite(ms)) throw new ApiError(Code.INVALID_ARGUMENT, 'updated_since: must be an RFC 3339 date-time, e.g. 2025-08-07T13:15:04.280Z');
  return ms;
}

/** One query parameter as a single string (a repeated one is refused), or `undefined`. */
function param(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ApiError(Code.INVALID_ARGUMENT, `${name}: must be given once`);
  if (v.length > MCP_MAX_PARAM_CHARS) throw new ApiError(Code.INVALID_ARGUMENT, `${name}: must be at most ${MCP_MAX_PARAM_CHARS} characters`);
  return v;
}

/** The query parameters `GET /v0.1/servers` takes. */
const LIST_PARAMS = new Set(['cursor', 'limit', 'search', 'updated_since', 'version']);

/** Percent-decodes one path part; `INVALID_ARGUMENT` when it is malformed. */
function decodePart(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiError(Code.INVALID_ARGUMENT, `${what}: malformed percent-encoding`);
  }
}

/**
 * Splits the raw path after `/v0.1/servers/` into the server name and, for
 * `.../versions/{version}`, the version: `[name, undefined]` for `.../versions`, `undefined` for
 * any other path. The version is the part after the last `/versions/` (it has no raw `/`).
 */
export function parseServerPath(rest: string): [string, string | undefined] | undefined {
  if (rest.endsWith('/versions')) {
    const name = rest.slice(0, -'/versions'.length);
    return name === '' ? undefined : [decodePart(name, 'serverName'), undefined];
  }
  const at = rest.lastIndexOf('/versions/');
  if (at <= 0) return undefined;
  const version = rest.slice(at + '/versions/'.length);
  if (version === '' || version.includes('/')) return undefined;
  return [decodePart(rest.slice(0, at), 'serverName'), decodePart(version, 'version')];
}

/** What the routes need from the front end. */
export interface McpRegistryRoutesOptions {
  readonly api: RegistryApi;
  readonly logger: Logger;
  /** The call context (time budget) of a request, as the rest of the front end makes it. */
  readonly contextOf: (req: FastifyRequest) => CallContext;
}

/**
 * Adds the MCP registry read routes to `app` (see the module comment). Errors are answered here
 * in the official `{ "error": message }` shape, not the `google.rpc.Status` of the `/v1` routes.
 */
export function registerMcpRegistryRoutes(app: FastifyInstance, opts: McpRegistryRoutesOptions): void {
  const { api, logger, contextOf } = opts;

  /** Runs `body`, answering an error as `{ error }` with its HTTP status. */
  const answer = async (reply: FastifyReply, body: () => Promise<unknown>): Promise<unknown> => {
    try {
      return await body();
    } catch (err) {
      const e = toApiError(err, logger);
      const status = httpStatusOf(e.code);
      if (status === 503 || status === 429) void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      return reply.code(status).send({ error: e.message });
    }
  };

  app.get(PREFIX, { schema: { summary: 'MCP registry: list servers (official API v0.1)', tags: ['mcp-registry'] } }, async (req, reply) =>
    answer(reply, async (): Promise<ServerList> => {
      const query = (req.query ?? {}) as Record<string, unknown>;
      for (const k of Object.keys(query)) if (!LIST_PARAMS.has(k)) throw new ApiError(Code.INVALID_ARGUMENT, `${k}: unknown parameter`);
      const rawLimit = param(query, 'limit');
      const limit = rawLimit === undefined ? MCP_DEFAULT_LIMIT : Number(rawLimit);
      if (!/^\d+$/.test(rawLimit ?? '1') || !Number.isInteger(limit) || limit < 1 || limit > MCP_MAX_LIMIT) {
        throw new ApiError(Code.INVALID_ARGUMENT, `limit: must be an integer in [1, ${MCP_MAX_LIMIT}]`);
      }
      const rawSince = param(query, 'updated_since');
      const since = rawSince === undefined || rawSince === '' ? undefined : parseUpdatedSince(rawSince);
      const version = param(query, 'version') ?? '';
      const page = await api.versionPage(
        {
          limit,
          cursor: param(query, 'cursor') ?? '',
          nameContains: param(query, 'search') ?? '',
          ...(version === LATEST_VERSION ? { latestOnly: true } : version !== '' ? { version } : {}),
          accept: (a) => isMcpServer(a) && (since === undefined || (a.updatedAtMs !== undefined && a.updatedAtMs > since)),
        },
        contextOf(req),
      );
      const servers = page.items.map((i: VersionPageItem) => serverResponseOf(i.agent, i.isLatest));
      return { servers, metadata: { ...(page.nextCursor !== '' ? { nextCursor: page.nextCursor } : {}), count: servers.length } };
    }),
  );

  app.get(`${PREFIX}/*`, { schema: { summary: 'MCP registry: GET /v0.1/servers/{serverName}/versions[/{version|latest}]', tags: ['mcp-registry'] } }, async (req, reply) =>
    answer(reply, async (): Promise<ServerList | ServerResponse> => {
      const raw = req.raw.url ?? '';
      const path = raw.split('?')[0] as string;
      const parsed = parseServerPath(path.slice(PREFIX.length + 1));
      if (parsed === undefined) throw new ApiError(Code.NOT_FOUND, `no route GET ${path} (use ${PREFIX}/{serverName}/versions[/{version}])`);
      const [name, version] = parsed;
      const { agents } = await api.versionsOf(name, contextOf(req));
      const latestId = agents[0]?.id;
      const servers = agents.filter(isMcpServer);
      if (servers.length === 0) throw new ApiError(Code.NOT_FOUND, 'Server not found');
      if (version === undefined) {
        const list = servers.map((a) => serverResponseOf(a, a.id === latestId));
        return { servers: list, metadata: { count: list.length } };
      }
      // Latest first, so the first match is the latest of records sharing a version string.
      const found = version === LATEST_VERSION ? servers.find((a) => a.id === latestId) : servers.find((a) => a.version === version);
      if (found === undefined) throw new ApiError(Code.NOT_FOUND, 'Server version not found');
      return serverResponseOf(found, found.id === latestId);
    }),
  );
}
