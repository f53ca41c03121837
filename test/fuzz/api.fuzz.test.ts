/**
 * Fuzzes the client surfaces of a real 3-node cluster with fast-check: every method of
 * `registry.v1.Registry` and `registry.v1.Cluster` over gRPC (structured hostile requests through
 * the proto-loader serializers, protobuf-shaped garbage and random bytes through a raw client;
 * the streaming Watch and Snapshot are opened and cancelled), and every HTTP route of
 * /openapi.json plus the MCP registry routes (random methods, odd paths, malformed, oversized and
 * deeply nested bodies, wrong content types, large headers).
 *
 * Properties, per batch of cases: every node process is alive and answers /health?live; every
 * gRPC answer is OK or a client-error status (never INTERNAL, UNKNOWN, UNAVAILABLE, ...); every
 * HTTP answer is 2xx/4xx with a JSON `google.rpc.Status` body naming the problem for errors;
 * and when no write in the batch succeeded, the agents without a lease (id, create and mod
 * revision) are the same before and after the batch (leased agents may expire on their own).
 *
 * Admin calls only get inputs the node must refuse: requests naming a real member in
 * RemoveMember / TransferLeadership, and AddMember requests with a valid-looking id and a
 * `host:port` address, are filtered out before they are sent (also when they come out of random
 * bytes: each request is decoded locally first).
 *
 * Seed: FUZZ_SEED (printed); run counts scale with FUZZ_RUNS (100 = default).
 */
import * as http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../../cluster/process-cluster.js';
import { AuthService, ClusterService, RegistryService } from '../../src/api/registry-proto.js';
import { validateId } from '../../src/registry/validation.js';
import {
  CLIENT_ERROR_CODES,
  FUZZ_SEED,
  deepJsonText,
  expectAlive,
  fcParams,
  hostileJson,
  hostileNumber,
  hostileString,
  oddString,
  oversizedString,
  protobufGarbage,
  randomBytes,
  rawServerStream,
  rawUnary,
  runs,
  statusName,
  suspiciousLogLines,
} from './support.js';

const GRPC_BATCHES = runs(100);
const GRPC_BATCH_MAX = 8;
const HTTP_BATCHES = runs(150);
const HTTP_BATCH_MAX = 8;

type MethodDef = {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (v: unknown) => Buffer;
  requestDeserialize: (b: Buffer) => Record<string, unknown>;
  responseDeserialize: (b: Buffer) => Record<string, unknown>;
};
const METHODS = new Map<string, MethodDef>();
for (const [svc, def] of [['Registry', RegistryService], ['Cluster', ClusterService], ['Auth', AuthService]] as const) {
  for (const [name, m] of Object.entries(def as unknown as Record<string, MethodDef>)) METHODS.set(`${svc}.${name}`, m);
}
const WRITE_METHODS = new Set(['Registry.Register', 'Registry.Deregister', 'Registry.Heartbeat', 'Auth.RevokeToken', 'Auth.RotateSigningKey', 'Auth.TrustCardKey', 'Auth.UntrustCardKey']);
const MEMBER_IDS = ['n1', 'n2', 'n3'];

/**
 * Whether an admin request could be valid and destructive (so it must not be sent): a real member
 * named in RemoveMember/TransferLeadership, or an AddMember with a valid id and a `host:port`.
 */
function destructive(method: string, req: Record<string, unknown>): boolean {
  const named = (v: unknown) => typeof v === 'string' && MEMBER_IDS.includes(v);
  switch (method) {
    case 'Cluster.RemoveMember':
      return named(req.id);
    case 'Cluster.TransferLeadership':
      return named(req.target_id) || named(req.targetId);
    case 'Cluster.AddMember': {
      let idOk = true;
      try {
        validateId(req.id);
      } catch {
        idOk = false;
      }
      return idOk && typeof req.address === 'string' && /:\d+\s*$/.test(req.address);
    }
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Structured hostile requests.
// ---------------------------------------------------------------------------------------------

const validAgent = (id: string) => ({
  id,
  name: id.split('/').pop(),
  kind: 'mcp-server',
  version: '1.0.0',
  description: 'fuzz',
  capabilities: ['fuzz'],
  endpoints: { http: 'http://127.0.0.1:9/mcp' },
  labels: { team: 'fuzz' },
});

const enumValue = fc.oneof(fc.constantFrom('HEALTH_SERVING', 'CONSISTENCY_LINEARIZABLE', 'CARD_FORMAT_A2A_AGENT_CARD', 'CARD_FORMAT_MCP_SERVER_JSON', 'NOPE'), fc.integer({ min: -5, max: 2 ** 31 - 1 }));
const hostileMap = fc.oneof(
  fc.dictionary(hostileString, hostileString, { maxKeys: 5 }),
  fc.integer({ min: 65, max: 300 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']))),
  fc.constant({ '': '' }),
);
const hostileCard = fc.oneof(
  deepJsonText,
  hostileJson.map((v) => JSON.stringify(v) ?? 'undefined'),
  oversizedString,
  oddString,
  fc.constant('{"name":"x","url":"http://x","version":"1","capabilities":{},"skills":[' + '{"id":"s","name":"s","description":"d","tags":[]},'.repeat(2000) + '{}]}'),
);
/** A field value of any type: hostile strings, numbers, enums, maps, arrays, nested objects. */
const anyField: fc.Arbitrary<unknown> = fc.oneof(hostileString, hostileNumber, enumValue, hostileMap, fc.array(hostileString, { maxLength: 70 }), hostileJson);

/** An agent: valid by default, with 1-4 fields replaced by hostile values. */
const hostileAgent = fc
  .record({
    id: fc.oneof(fc.stringMatching(/^fuzz\/a-[a-z0-9]{1,8}$/), hostileString),
    overrides: fc.array(
      fc.oneof(
        fc.tuple(fc.constantFrom('id', 'name', 'kind', 'version', 'description'), hostileString),
        fc.tuple(fc.constant('capabilities'), fc.oneof(fc.array(hostileString, { maxLength: 70 }), fc.integer({ min: 65, max: 200 }).map((n) => Array.from({ length: n }, (_, i) => `c${i}`)))),
        fc.tuple(fc.constantFrom('endpoints', 'labels'), hostileMap),
        fc.tuple(fc.constantFrom('health', 'card_format'), enumValue),
        fc.tuple(fc.constantFrom('lease_ttl_seconds', 'lease_expires_unix_ms', 'create_revision', 'mod_revision'), hostileNumber),
        fc.tuple(fc.constant('card'), hostileCard),
        fc.tuple(fc.constantFrom('id', 'name', 'labels', 'capabilities', 'health'), anyField),
      ),
      { minLength: 1, maxLength: 4 },
    ),
  })
  .map(({ id, overrides }) => {
    const a: Record<string, unknown> = validAgent(id);
    for (const [k, v] of overrides) a[k] = v;
    return a;
  });

/** Per method, a generator of structured requests with hostile fields. */
const FIELD_GEN: Record<string, fc.Arbitrary<Record<string, unknown>>> = {
  'Registry.Register': fc.record(
    {
      agent: fc.oneof({ weight: 6, arbitrary: hostileAgent }, { weight: 1, arbitrary: fc.constant(null) }),
      client_id: hostileString,
      sequence: hostileNumber,
      ttl_seconds: hostileNumber,
      expected_revision: hostileNumber,
      create_only: fc.boolean(),
    },
    { requiredKeys: ['agent'] },
  ),
  'Registry.Get': fc.record({ id: hostileString, consistency: enumValue }, { requiredKeys: [] }),
  'Registry.ListVersions': fc.record({ name: hostileString, consistency: enumValue }, { requiredKeys: [] }),
  'Registry.Find': fc.record(
    { capability: hostileString, kind: hostileString, labels: hostileMap, page_size: hostileNumber, page_token: hostileString, consistency: enumValue, health: enumValue, name_prefix: hostileString, capability_prefix: hostileString },
    { requiredKeys: [] },
  ),
  'Registry.Search': fc.record(
    { query: hostileString, capability: hostileString, capability_prefix: hostileString, kind: hostileString, labels: hostileMap, health: enumValue, name_prefix: hostileString, page_size: hostileNumber, page_token: hostileString, consistency: enumValue },
    { requiredKeys: [] },
  ),
  'Registry.ListCapabilities': fc.record({ prefix: hostileString, consistency: enumValue }, { requiredKeys: [] }),
  'Registry.Deregister': fc.record({ id: hostileString, client_id: hostileString, sequence: hostileNumber, expected_revision: hostileNumber }, { requiredKeys: [] }),
  'Registry.Heartbeat': fc.record({ id: hostileString, health: enumValue }, { requiredKeys: [] }),
  'Registry.Watch': fc.record({ start_revision: hostileNumber, id_prefix: hostileString, capability: hostileString, kind: hostileString }, { requiredKeys: [] }),
  'Cluster.Status': fc.record({ junk: anyField }, { requiredKeys: [] }),
  'Cluster.TransferLeadership': fc.record({ target_id: hostileString }, { requiredKeys: [] }),
  'Cluster.AddMember': fc.record({ id: hostileString, address: fc.oneof(hostileString, fc.constant('127.0.0.1:0'), fc.constant('127.0.0.1:99999'), fc.constant('::1')), learner: fc.boolean() }, { requiredKeys: [] }),
  'Cluster.RemoveMember': fc.record({ id: hostileString }, { requiredKeys: [] }),
  'Cluster.PromoteMember': fc.record({ id: fc.oneof(hostileString, fc.constantFrom(...MEMBER_IDS)) }, { requiredKeys: [] }),
  'Cluster.Snapshot': fc.record({ junk: anyField }, { requiredKeys: [] }),
  'Auth.AuthStatus': fc.record({ junk: anyField }, { requiredKeys: [] }),
  'Auth.CreateToken': fc.record({ role: fc.oneof(hostileString, fc.constantFrom('reader', 'writer', 'admin')), namespaces: fc.array(hostileString, { maxLength: 70 }), ttl_seconds: hostileNumber, name: hostileString }, { requiredKeys: [] }),
  'Auth.RevokeToken': fc.record({ token_id: hostileString }, { requiredKeys: [] }),
  'Auth.RotateSigningKey': fc.record({ retire_previous: fc.boolean() }, { requiredKeys: [] }),
  'Auth.TrustCardKey': fc.record({ key_id: hostileString, public_jwk: fc.oneof(hostileString, deepJsonText, fc.constant('{"kty":"OKP","crv":"Ed25519","x":"AAAA","d":"BBBB"}')) }, { requiredKeys: [] }),
  'Auth.UntrustCardKey': fc.record({ key_id: hostileString }, { requiredKeys: [] }),
};
for (const name of METHODS.keys()) if (!FIELD_GEN[name]) throw new Error(`no generator for ${name}`);

type GrpcCase = { method: string; node: number; body: { kind: 'fields'; req: Record<string, unknown> } | { kind: 'bytes'; bytes: Uint8Array } };
const grpcCase: fc.Arbitrary<GrpcCase> = fc.constantFrom(...METHODS.keys()).chain((method) =>
  fc.record({
    method: fc.constant(method),
    node: fc.integer({ min: 0, max: 2 }),
    body: fc.oneof(
      { weight: 3, arbitrary: (FIELD_GEN[method] as fc.Arbitrary<Record<string, unknown>>).map((req) => ({ kind: 'fields' as const, req })) },
      { weight: 1, arbitrary: fc.oneof(protobufGarbage, randomBytes).map((bytes) => ({ kind: 'bytes' as const, bytes })) },
    ),
  }),
);

// ---------------------------------------------------------------------------------------------
// The state compared across refused batches.
// ---------------------------------------------------------------------------------------------

const identity = (b: Buffer): Buffer => b;

/** The agents without a lease, as `id@create/mod`, sorted, read linearizably from `client`. */
async function unleasedAgents(client: grpc.Client): Promise<string[]> {
  const find = METHODS.get('Registry.Find') as MethodDef;
  const out: string[] = [];
  let token = '';
  for (let page = 0; page < 100; page++) {
    const bytes = find.requestSerialize({ page_size: 500, page_token: token, consistency: 'CONSISTENCY_LINEARIZABLE' });
    const res = await new Promise<Record<string, unknown>>((resolve, reject) =>
      client.makeUnaryRequest<Buffer, Buffer>(find.path, identity, identity, bytes, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, v) =>
        err ? reject(err) : resolve(find.responseDeserialize(v as Buffer)),
      ),
    );
    for (const a of res.agents as Record<string, unknown>[]) {
      if (Number(a.lease_ttl_seconds) === 0) out.push(`${String(a.id)}@${String(a.create_revision)}/${String(a.mod_revision)}`);
    }
    token = String(res.next_page_token ?? '');
    if (token === '') break;
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------------------------

interface HttpAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** One raw HTTP request (node:http, so methods, paths and headers are sent as given); a stream (SSE, the backup) is cut after its headers. */
function rawHttp(base: string, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<HttpAnswer> {
  const u = new URL(base);
  // A body always goes with its length: without it Node sends a GET's body unframed, and the node reads it as a second request.
  if (body !== undefined) headers = { ...headers, 'content-length': String(body.byteLength) };
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers, agent: false, timeout: 15_000 }, (res) => {
      const contentType = String(res.headers['content-type'] ?? '');
      if (/event-stream|octet-stream/.test(contentType) || (res.statusCode === 200 && /^\/v1\/(watch|snapshot)/.test(path))) {
        res.destroy();
        resolve({ status: res.statusCode ?? 0, contentType, body: '' });
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${path.slice(0, 200)}`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** `s` with lone surrogates replaced by U+FFFD (encodeURIComponent throws on them; invalid UTF-8 comes from the percent oddities instead). */
const wellFormed = (s: string): string => s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');

/** Percent-encoding oddities for path segments and query values. */
const oddPercent = fc.constantFrom('%', '%0', '%ZZ', '%00', '%C0%AF', '%E0%A4%A', '%ED%A0%80', '%F4%90%80%80', '%FF', '%2e%2e%2f', '%252F', '%u202E', '%EF%BB%BF', '%0d%0a');
/** A path segment: a hostile string percent-encoded (lone surrogates encoded as U+FFFD), or raw percent oddities. */
const pathSegment = fc.oneof(
  { weight: 4, arbitrary: hostileString.map((s) => encodeURIComponent(wellFormed(s)).slice(0, 6_000)) },
  { weight: 2, arbitrary: fc.array(fc.oneof(oddPercent, fc.stringMatching(/^[A-Za-z0-9._~:@!$&'()*+,;=-]{0,8}$/)), { minLength: 1, maxLength: 5 }).map((p) => p.join('')) },
  { weight: 1, arbitrary: fc.constantFrom('n1', 'fuzz/agent', '..', '.', '', 'latest', 'versions', 'card', ':search') },
);

type HttpCase = { node: number; method: string; path: string; headers: Record<string, string>; body: string | undefined; route: string };

function fillTemplate(template: string, segs: string[]): string {
  let i = 0;
  return template.replace(/\{[^}]+\}|\*/g, () => segs[i++ % segs.length] as string);
}

function httpCaseArb(routes: { path: string; methods: string[] }[]): fc.Arbitrary<HttpCase> {
  return fc
    .record({
      node: fc.integer({ min: 0, max: 2 }),
      route: fc.constantFrom(...routes),
      methodPick: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'PROPFIND', 'FUZZ', 'TRACE') }),
      segs: fc.array(pathSegment, { minLength: 1, maxLength: 3 }),
      extraPath: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: pathSegment.map((s) => `/${s}`) }, { weight: 1, arbitrary: fc.constantFrom('//', '/..', ';x', '::search', '/card', '/versions/latest') }),
      query: fc.oneof(
        { weight: 2, arbitrary: fc.constant('') },
        {
          weight: 3,
          arbitrary: fc
            .array(fc.tuple(fc.constantFrom('capability', 'kind', 'label', 'health', 'namePrefix', 'pageSize', 'pageToken', 'consistency', 'q', 'query', 'limit', 'cursor', 'search', 'version', 'updated_since', 'startRevision', 'idPrefix', 'ready', 'live', 'x'), fc.oneof(pathSegment, hostileNumber.map(String))), { maxLength: 6 })
            .map((kv) => '?' + kv.map(([k, v]) => `${k}=${v}`).join('&')),
        },
      ),
      contentType: fc.constantFrom(undefined, 'application/json', 'application/json; charset=utf-16', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/json; charset=\u00e9', '*/*', ''),
      body: fc.oneof(
        { weight: 2, arbitrary: fc.constant(undefined) },
        { weight: 3, arbitrary: hostileJson.map((v) => JSON.stringify(v) ?? 'null') },
        { weight: 2, arbitrary: fc.record({ agent: hostileAgent, ttlSeconds: fc.oneof(hostileNumber, hostileString) }, { requiredKeys: ['agent'] }).map((v) => JSON.stringify(v)) },
        { weight: 1, arbitrary: deepJsonText },
        { weight: 1, arbitrary: fc.oneof(oddString, fc.constantFrom('{', '{"a":', '[1,2', '{"__proto__":{"x":1}}', 'null', '"', '\uFEFF{}', '{"agent":{}}', '{"id":1e999}')) },
        { weight: 1, arbitrary: fc.integer({ min: 520 * 1024, max: 700 * 1024 }).map((n) => `{"agent":{"id":"fuzz/big","description":"${'x'.repeat(n)}"}}`) },
      ),
      bigHeader: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1_000, max: 12_000 }), fc.constantFrom('x-fuzz', 'x-request-timeout-ms', 'authorization', 'origin', 'accept', 'cookie')) }),
      timeoutHeader: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.oneof(hostileNumber.map(String), fc.constantFrom('-1', '0', '1e9', 'abc', '  5 ')) }),
    })
    .map(({ node, route, methodPick, segs, extraPath, query, contentType, body, bigHeader, timeoutHeader }) => {
      const method = methodPick !== '' ? methodPick : (route.methods[Math.abs(segs.length * 7 + extraPath.length) % route.methods.length] as string);
      const headers: Record<string, string> = {};
      if (contentType !== undefined && body !== undefined) headers['content-type'] = contentType;
      if (bigHeader) headers[bigHeader[1]] = 'a'.repeat(bigHeader[0]);
      if (timeoutHeader !== undefined) headers['x-request-timeout-ms'] = timeoutHeader;
      return { node, method, path: fillTemplate(route.path, segs) + extraPath + query, headers, body: method === 'GET' || method === 'HEAD' ? (body?.length ?? 0) < 1000 ? body : undefined : body, route: route.path };
    });
}

/** Whether an HTTP case is an admin call that could be valid and destructive (never sent). */
function destructiveHttp(c: HttpCase): boolean {
  const p = c.path.split('?')[0] as string;
  if (!p.startsWith('/v1/cluster/')) return false;
  let decoded = p;
  try {
    decoded = decodeURIComponent(p);
  } catch {
    /* keep the raw path */
  }
  if (c.method === 'DELETE' && MEMBER_IDS.some((id) => decoded.includes(id))) return true;
  if (c.method === 'POST' && /\/v1\/cluster\/(members|leader)/.test(decoded)) {
    if (c.body !== undefined && MEMBER_IDS.some((id) => c.body?.includes(id))) return true;
    let parsed: unknown;
    try {
      parsed = c.body === undefined ? undefined : JSON.parse(c.body);
    } catch {
      return false;
    }
    if (parsed && typeof parsed === 'object') {
      const o = parsed as Record<string, unknown>;
      if (destructive('Cluster.AddMember', o) || destructive('Cluster.TransferLeadership', o)) return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------

describe('fuzzing the client API of a real 3-node cluster', () => {
  let cluster: ProcessCluster;
  let clients: grpc.Client[];
  const counts = { grpc: 0, grpcSkipped: 0, grpcClientSideRefused: 0, http: 0, httpSkipped: 0 };
  const codes = new Map<string, number>();
  const started = Date.now();

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
    clients = cluster.endpoints().map((e) => new grpc.Client(e, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 8 * 1024 * 1024 }));
    console.log(`fuzz seed ${FUZZ_SEED} (FUZZ_SEED to replay, FUZZ_RUNS to scale, FUZZ_SHRINK=1 to shrink)`);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients ?? []) c.close();
    const odd = cluster ? suspiciousLogLines(cluster) : [];
    await cluster?.destroy();
    console.log(
      `api fuzz summary: seed=${FUZZ_SEED} grpc cases=${counts.grpc} (+${counts.grpcSkipped} destructive skipped, ${counts.grpcClientSideRefused} refused by the client serializer) ` +
        `http cases=${counts.http} (+${counts.httpSkipped} destructive skipped) in ${((Date.now() - started) / 1000).toFixed(1)} s; answers ${JSON.stringify(Object.fromEntries(codes))}` +
        (odd.length > 0 ? `\nsuspicious log lines:\n${odd.slice(0, 20).join('\n')}` : ''),
    );
  });

  it('gRPC: every Registry and Cluster method answers hostile requests with a clear status, and refused batches change nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(grpcCase, { minLength: 1, maxLength: GRPC_BATCH_MAX }), async (batch) => {
        const before = await unleasedAgents(clients[0] as grpc.Client);
        let wrote = false;
        for (const c of batch) {
          const m = METHODS.get(c.method) as MethodDef;
          let bytes: Buffer;
          if (c.body.kind === 'fields') {
            try {
              bytes = m.requestSerialize(c.body.req);
            } catch {
              counts.grpcClientSideRefused++;
              continue;
            }
          } else bytes = Buffer.from(c.body.bytes);
          // Decode what the server will see, to keep valid destructive admin calls out.
          let seen: Record<string, unknown> | undefined;
          try {
            seen = m.requestDeserialize(bytes);
          } catch {
            seen = undefined;
          }
          if (seen && destructive(c.method, seen)) {
            counts.grpcSkipped++;
            continue;
          }
          const client = clients[c.node] as grpc.Client;
          const ans = m.responseStream ? await rawServerStream(client, m.path, bytes, 60) : await rawUnary(client, m.path, bytes);
          counts.grpc++;
          const key = `grpc ${statusName(ans.code)}`;
          codes.set(key, (codes.get(key) ?? 0) + 1);
          const ok = CLIENT_ERROR_CODES.has(ans.code) || (m.responseStream && ans.code === grpc.status.CANCELLED);
          if (!ok) {
            throw new Error(`${c.method} on n${c.node + 1} answered ${statusName(ans.code)}: ${ans.details}\nrequest (as decoded by the server): ${JSON.stringify(seen)?.slice(0, 2000)}\nbytes (base64, first 4 KiB): ${bytes.subarray(0, 4096).toString('base64')}\n${cluster.dumpLogs(15)}`);
          }
          if (ans.code !== grpc.status.OK && ans.code !== grpc.status.CANCELLED) expect(ans.details, `${c.method} ${statusName(ans.code)} names the problem`).not.toBe('');
          if (ans.code === grpc.status.OK && WRITE_METHODS.has(c.method)) wrote = true;
        }
        await expectAlive(cluster, `a gRPC batch of ${batch.length}`);
        if (!wrote) expect(await unleasedAgents(clients[0] as grpc.Client), 'state after a batch of refused requests').toEqual(before);
      }),
      fcParams(GRPC_BATCHES),
    );
  }, 120_000);

  it('HTTP: every route of /openapi.json and the MCP routes answer hostile requests with 2xx/4xx and a JSON error, and refused batches change nothing', async () => {
    const doc = JSON.parse((await rawHttp(cluster.httpUrl('n1'), 'GET', '/openapi.json', {}, undefined)).body) as { paths: Record<string, Record<string, unknown>> };
    const routes = Object.entries(doc.paths).map(([path, ops]) => ({ path, methods: Object.keys(ops).map((m) => m.toUpperCase()) }));
    for (const extra of ['/v0.1/servers', '/v0.1/servers/{name}', '/v0.1/servers/{name}/versions', '/v0.1/servers/{name}/versions/{version}', '/v0.1/servers/{name}/versions/latest', '/v1/agents/{id}/card', '/v1/watch/ws', '/health']) {
      if (!routes.some((r) => r.path === extra)) routes.push({ path: extra, methods: ['GET'] });
    }
    expect(routes.length).toBeGreaterThan(10);
    const bases = cluster.ids.map((id) => cluster.httpUrl(id));
    await fc.assert(
      fc.asyncProperty(fc.array(httpCaseArb(routes), { minLength: 1, maxLength: HTTP_BATCH_MAX }), async (batch) => {
        const before = await unleasedAgents(clients[0] as grpc.Client);
        let wrote = false;
        for (const c of batch) {
          if (destructiveHttp(c)) {
            counts.httpSkipped++;
            continue;
          }
          let ans: HttpAnswer;
          try {
            ans = await rawHttp(bases[c.node] as string, c.method, c.path, c.headers, c.body === undefined ? undefined : Buffer.from(c.body));
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            // The client refused to send it (an invalid header or path character): nothing reached the node.
            if (code === 'ERR_UNESCAPED_CHARACTERS' || code === 'ERR_INVALID_CHAR' || code === 'ERR_INVALID_HTTP_TOKEN') continue;
            // Past Node's 16 KiB header limit the node answers 431 and closes while we still write.
            const headBytes = c.path.length + Object.entries(c.headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
            if ((code === 'ECONNRESET' || code === 'EPIPE') && headBytes > 16 * 1024 - 512) continue;
            throw new Error(`${c.method} ${c.path.slice(0, 300)} failed: ${String(e)}`);
          }
          counts.http++;
          const key = `http ${ans.status}`;
          codes.set(key, (codes.get(key) ?? 0) + 1);
          const what = `${c.method} ${c.path.slice(0, 500)} (route ${c.route}, content-type ${c.headers['content-type']}, body ${c.body?.slice(0, 300)}) on n${c.node + 1} -> ${ans.status} ${ans.body.slice(0, 500)}`;
          if (ans.status >= 500) {
            // 503 only while there is no leader, which names it.
            // 504 only when the case itself asked for a tiny budget (x-request-timeout-ms) and the answer says so.
            const ownDeadline = ans.status === 504 && c.headers['x-request-timeout-ms'] !== undefined && /within \d+ ms/.test(ans.body);
            if (!(ans.status === 503 && /leader/i.test(ans.body)) && !ownDeadline) throw new Error(`5xx: ${what}`);
          }
          expect(ans.status >= 200 && ans.status < 600, what).toBe(true);
          if (ans.status >= 400 && c.method !== 'HEAD') {
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(ans.body) as Record<string, unknown>;
            } catch {
              throw new Error(`error answer is not JSON: ${what}`);
            }
            // google.rpc.Status `{code, message, details}`; the MCP registry routes answer `{ "error": "..." }` as the official API does.
            const named = [parsed.message, parsed.error].some((m) => typeof m === 'string' && m !== '');
            expect(named, `error names the problem: ${what}`).toBe(true);
          }
          if (ans.status < 300 && c.method !== 'GET' && c.method !== 'HEAD' && c.method !== 'OPTIONS') wrote = true;
        }
        await expectAlive(cluster, `an HTTP batch of ${batch.length}`);
        if (!wrote) expect(await unleasedAgents(clients[0] as grpc.Client), 'state after a batch of refused requests').toEqual(before);
      }),
      fcParams(HTTP_BATCHES),
    );
  }, 120_000);
});
