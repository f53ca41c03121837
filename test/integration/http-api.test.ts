/**
 * The HTTP/JSON front end on a real 3-node cluster: every route through a follower and through
 * the leader, the proto3 JSON mapping, every error status the cluster can be made to give
 * (400, 404, 409, 503, 504) with a `google.rpc.Status` body, SSE and WebSocket watches, CORS,
 * the OpenAPI document and the probes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ProcessCluster, waitFor } from '../../cluster/process-cluster.js';
import { httpStatusOf } from '../../src/http/errors.js';
import { Code } from '../../src/api/status.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

async function call(url: string, method = 'GET', body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Expects an error reply with `status` and gRPC `code`, its message matching `message`. */
function expectError(r: Reply, status: number, code: number, message?: RegExp): void {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.body.code).toBe(code);
  expect(Array.isArray(r.body.details)).toBe(true);
  if (message) expect(String(r.body.message)).toMatch(message);
}

const agent = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  name: id.split('/').pop(),
  kind: 'mcp-server',
  version: '1.0.0',
  description: 'an agent registered over HTTP',
  capabilities: ['http-test', 'sql'],
  endpoints: { http: 'http://127.0.0.1:9/mcp' },
  labels: { team: 'web' },
  ...extra,
});

describe('the HTTP/JSON front end', () => {
  let cluster: ProcessCluster;
  let leader: string;
  let follower: string;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    leader = await cluster.waitForLeader();
    follower = cluster.ids.find((id) => id !== leader) as string;
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  for (const through of ['follower', 'leader'] as const) {
    it(`registers, gets, finds, heartbeats and deregisters through the ${through}, ids with '/' in the path`, async () => {
      const base = cluster.httpUrl(through === 'leader' ? leader : follower);
      const id = `io.github.${through}/iotdb-mcp-server`;
      const reg = await call(`${base}/v1/agents`, 'POST', { agent: agent(id, { health: 'HEALTH_SERVING' }), ttlSeconds: '30' });
      expect(reg.status, JSON.stringify(reg.body)).toBe(200);
      const stored = reg.body.agent as Record<string, unknown>;
      expect(stored.id).toBe(id);
      expect(stored.capabilities).toEqual(['http-test', 'sql']);
      expect(stored.leaseTtlSeconds).toBe('30');
      expect(typeof reg.body.revision).toBe('string'); // uint64 as a decimal string (proto3 JSON)
      expect(stored.modRevision).toBe(reg.body.revision);

      for (const path of [`/v1/agents/${id}`, `/v1/agents/${encodeURIComponent(id)}`]) {
        const got = await call(`${base}${path}`);
        expect(got.status).toBe(200);
        expect((got.body.agent as Record<string, unknown>).id).toBe(id);
        expect(Number(got.body.revision)).toBeGreaterThanOrEqual(Number(reg.body.revision));
      }
      const serializable = await call(`${base}/v1/agents/${id}?consistency=serializable`);
      expect([200, 404]).toContain(serializable.status);

      const found = await call(`${base}/v1/agents?capability=http-test&label=team%3Dweb&kind=mcp-server&namePrefix=iotdb&health=HEALTH_SERVING&pageSize=50`);
      expect(found.status).toBe(200);
      expect((found.body.agents as Array<{ id: string }>).map((a) => a.id)).toContain(id);
      const none = await call(`${base}/v1/agents?capability=http-test&label=team%3Dother`);
      expect((none.body.agents as unknown[]).length).toBe(0);

      const hb = await call(`${base}/v1/agents/${id}/heartbeat`, 'POST');
      expect(hb.status, JSON.stringify(hb.body)).toBe(200);
      expect(hb.body.ttlSeconds).toBe('30');
      const hbDegraded = await call(`${base}/v1/agents/${id}/heartbeat`, 'POST', { health: 'HEALTH_DEGRADED' });
      expect(hbDegraded.status).toBe(200);
      await waitFor('the degraded health to be replicated', 10_000, async () => {
        const g = await call(`${base}/v1/agents/${id}`);
        return (g.body.agent as Record<string, unknown>).health === 'HEALTH_DEGRADED' ? true : undefined;
      });

      const del = await call(`${base}/v1/agents/${id}`, 'DELETE');
      expect(del.status).toBe(200);
      expect(del.body.deleted).toBe(true);
      expectError(await call(`${base}/v1/agents/${id}`), 404, Code.NOT_FOUND, /not found/);
      const again = await call(`${base}/v1/agents/${id}`, 'DELETE');
      expect(again.body.deleted).toBe(false);
    });
  }

  it('pages through Find with pageToken, in id order', async () => {
    const base = cluster.httpUrl(follower);
    for (let i = 0; i < 5; i++) expect((await call(`${base}/v1/agents`, 'POST', { agent: agent(`page/a${i}`, { capabilities: ['paged'] }) })).status).toBe(200);
    const seen: string[] = [];
    let token = '';
    for (let pages = 0; pages < 10; pages++) {
      const r = await call(`${base}/v1/agents?capability=paged&pageSize=2${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`);
      expect(r.status).toBe(200);
      seen.push(...(r.body.agents as Array<{ id: string }>).map((a) => a.id));
      token = String(r.body.nextPageToken);
      if (token === '') break;
    }
    expect(seen).toEqual(['page/a0', 'page/a1', 'page/a2', 'page/a3', 'page/a4']);
    expectError(await call(`${base}/v1/agents?capability=other&pageToken=${encodeURIComponent('not-a-token')}`), 400, Code.INVALID_ARGUMENT);
  });

  it('refuses bad input with 400 naming the field, and writes nothing', async () => {
    const base = cluster.httpUrl(follower);
    const post = (body: unknown) => call(`${base}/v1/agents`, 'POST', body);
    expectError(await post('{"agent":'), 400, Code.INVALID_ARGUMENT, /^body: not valid JSON/);
    expectError(await post({ agent: { id: 'bad-1', bogus: 1 } }), 400, Code.INVALID_ARGUMENT, /^agent\.bogus: unknown field/);
    expectError(await post({ agent: { id: 'bad-2' }, extra: true }), 400, Code.INVALID_ARGUMENT, /^extra: unknown field/);
    expectError(await post({ agent: { id: 5 } }), 400, Code.INVALID_ARGUMENT, /^agent\.id: must be string/);
    expectError(await post({ agent: { id: 'bad-3', capabilities: 'sql' } }), 400, Code.INVALID_ARGUMENT, /^agent\.capabilities: must be array/);
    expectError(await post({ agent: { id: 'bad-4', labels: { a: 1 } } }), 400, Code.INVALID_ARGUMENT, /^agent\.labels\.a: must be string/);
    expectError(await post({ agent: { id: 'bad-5' }, ttlSeconds: 'soon' }), 400, Code.INVALID_ARGUMENT, /^ttlSeconds: must be an integer/);
    expectError(await post({ agent: { id: 'bad-6' }, ttlSeconds: '99999999999999999999' }), 400, Code.INVALID_ARGUMENT, /ttlSeconds/);
    expectError(await post({ agent: { id: 'bad-7', health: 'GREAT' } }), 400, Code.INVALID_ARGUMENT, /^agent\.health: must be one of/);
    expectError(await post({ agent: { id: 'bad 8' } }), 400, Code.INVALID_ARGUMENT, /agent\.id/);
    expectError(await post({ agent: { id: 'bad-9', description: 'x'.repeat(600_000) } }), 400, Code.INVALID_ARGUMENT, /^body: larger than/);
    expectError(await post({ agent: { id: 'bad-10', description: 'x'.repeat(70_000) } }), 400, Code.INVALID_ARGUMENT, /agent/);
    expectError(await call(`${base}/v1/agents`, 'POST', 'id=x', { 'content-type': 'application/x-www-form-urlencoded' }), 400, Code.INVALID_ARGUMENT, /content-type/);
    expectError(await call(`${base}/v1/agents?pageSize=abc`), 400, Code.INVALID_ARGUMENT, /^query\.pageSize/);
    expectError(await call(`${base}/v1/agents?label=novalue`), 400, Code.INVALID_ARGUMENT, /^query\.label/);
    expectError(await call(`${base}/v1/agents?colour=red`), 400, Code.INVALID_ARGUMENT, /^query\.colour: unknown field/);
    expectError(await call(`${base}/v1/agents/x?consistency=eventual`), 400, Code.INVALID_ARGUMENT, /^query\.consistency/);
    // Nothing of the refused writes was stored.
    const all = await call(`${base}/v1/agents?namePrefix=bad`);
    expect(all.body.agents).toEqual([]);
    for (let i = 1; i <= 10; i++) expect((await call(`${base}/v1/agents/bad-${i}`)).status).toBe(404);
  });

  it('answers a failed condition with 409, an unknown route with 404, and maps every gRPC code', async () => {
    const base = cluster.httpUrl(follower);
    const first = await call(`${base}/v1/agents`, 'POST', { agent: agent('cas/one') });
    expect(first.status).toBe(200);
    expectError(await call(`${base}/v1/agents`, 'POST', { agent: agent('cas/one'), expectedRevision: '1' }), 409, Code.FAILED_PRECONDITION, /current revision/);
    expectError(await call(`${base}/v1/agents`, 'POST', { agent: agent('cas/one'), createOnly: true }), 409, Code.FAILED_PRECONDITION);
    const ok = await call(`${base}/v1/agents`, 'POST', { agent: agent('cas/one'), expectedRevision: first.body.revision });
    expect(ok.status).toBe(200);
    expectError(await call(`${base}/v1/agents/cas/one?expectedRevision=1`, 'DELETE'), 409, Code.FAILED_PRECONDITION);
    expectError(await call(`${base}/v1/agents/cas/one/heartbeat`, 'POST'), 409, Code.FAILED_PRECONDITION, /no lease/);
    expectError(await call(`${base}/v1/agents/cas/one/beat`, 'POST'), 404, Code.NOT_FOUND);
    expectError(await call(`${base}/v1/nothing-here`), 404, Code.NOT_FOUND, /no route/);
    const expected: Record<number, number> = {
      [Code.INVALID_ARGUMENT]: 400, [Code.OUT_OF_RANGE]: 400, [Code.NOT_FOUND]: 404, [Code.ALREADY_EXISTS]: 409, [Code.FAILED_PRECONDITION]: 409,
      [Code.ABORTED]: 409, [Code.RESOURCE_EXHAUSTED]: 429, [Code.UNAVAILABLE]: 503, [Code.DEADLINE_EXCEEDED]: 504, [Code.UNAUTHENTICATED]: 401,
      [Code.PERMISSION_DENIED]: 403, [Code.UNIMPLEMENTED]: 501, [Code.INTERNAL]: 500, [Code.CANCELLED]: 499,
    };
    for (const [code, status] of Object.entries(expected)) expect(httpStatusOf(Number(code))).toBe(status);
  });

  it('serves the cluster routes: status, members with their HTTP addresses, add (idempotent), promote, remove, leader transfer', async () => {
    const base = cluster.httpUrl(follower);
    const st = await call(`${base}/v1/cluster/status`);
    expect(st.status).toBe(200);
    expect(st.body.nodeId).toBe(follower);
    expect(st.body.leaderId).toBe(leader);
    expect(st.body.role).toBe('ROLE_FOLLOWER');
    expect(st.body.httpAddress).toBe(cluster.httpAddresses.get(follower));
    const members = await waitFor('every member HTTP address to be learned', 15_000, async () => {
      const r = await call(`${base}/v1/cluster/members`);
      const ms = r.body.members as Array<{ id: string; httpAddress: string }>;
      return ms.every((m) => m.httpAddress !== '') ? ms : undefined;
    });
    for (const m of members) expect(m.httpAddress).toBe(cluster.httpAddresses.get(m.id));

    const self = members.find((m) => m.id === leader) as unknown as { address: string };
    const same = await call(`${base}/v1/cluster/members`, 'POST', { id: leader, address: self.address });
    expect(same.status, JSON.stringify(same.body)).toBe(200);
    expectError(await call(`${base}/v1/cluster/members`, 'POST', { id: leader, address: '127.0.0.1:1' }), 409, Code.ALREADY_EXISTS, /already exists at/);
    expectError(await call(`${base}/v1/cluster/members`, 'POST', { id: 'n9', address: 'nowhere' }), 400, Code.INVALID_ARGUMENT, /address/);
    expectError(await call(`${base}/v1/cluster/members/${leader}/promote`, 'POST'), 409, Code.FAILED_PRECONDITION, /already a voter/);
    expectError(await call(`${base}/v1/cluster/members/n9`, 'DELETE'), 404, Code.NOT_FOUND);
    expectError(await call(`${base}/v1/cluster/leader`, 'POST', { targetId: 'n9' }), 400, Code.INVALID_ARGUMENT, /targetId|target_id/);

    const moved = await call(`${base}/v1/cluster/leader`, 'POST', { targetId: follower });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body.leaderId).toBe(follower);
    leader = await cluster.waitForLeader();
    follower = cluster.ids.find((id) => id !== leader) as string;
  });

  it('streams changes as Server-Sent Events, resumable with Last-Event-ID, and over WebSocket', async () => {
    const base = cluster.httpUrl(follower);
    const a = await call(`${base}/v1/agents`, 'POST', { agent: agent('watch/a', { capabilities: ['watched'] }) });
    const b = await call(`${base}/v1/agents`, 'POST', { agent: agent('watch/b', { capabilities: ['watched'] }) });
    const revA = Number(a.body.revision);
    const revB = Number(b.body.revision);

    const readSse = async (headers: Record<string, string>, want: number): Promise<Array<{ id: number; event: string; data: Record<string, unknown> }>> => {
      const ac = new AbortController();
      const res = await fetch(`${base}/v1/watch?capability=watched${headers['last-event-id'] ? '' : `&startRevision=${revA}`}`, { headers, signal: ac.signal });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const out: Array<{ id: number; event: string; data: Record<string, unknown> }> = [];
      let buf = '';
      const until = Date.now() + 10_000;
      while (out.length < want && Date.now() < until) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += new TextDecoder().decode(value);
        let at: number;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':') && l.includes(': ')).map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
          if (fields.data) out.push({ id: Number(fields.id), event: String(fields.event), data: JSON.parse(String(fields.data)) as Record<string, unknown> });
        }
      }
      ac.abort();
      return out;
    };
    const events = await readSse({}, 2);
    expect(events.map((e) => e.id)).toEqual([revA, revB]);
    expect(events.map((e) => e.event)).toEqual(['put', 'put']);
    expect(events[0]?.data.type).toBe('EVENT_TYPE_PUT');
    expect((events[0]?.data.agent as Record<string, unknown>).id).toBe('watch/a');
    expect(events[0]?.data.revision).toBe(String(revA));
    // A reconnect with Last-Event-ID = the first event's revision resumes right after it.
    const resumed = await readSse({ 'last-event-id': String(revA) }, 1);
    expect(resumed[0]?.id).toBe(revB);
    expectError(await call(`${base}/v1/watch?startRevision=abc`), 400, Code.INVALID_ARGUMENT, /startRevision/);

    const ws = new WebSocket(`${base.replace('http:', 'ws:')}/v1/watch/ws?capability=watched&startRevision=${revA}`);
    const got: Array<Record<string, unknown>> = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`websocket got ${got.length} events`)), 10_000);
      ws.on('message', (m) => {
        got.push(JSON.parse(String(m)) as Record<string, unknown>);
        if (got.length === 3) {
          clearTimeout(timer);
          resolve();
        }
      });
      ws.on('open', () => void call(`${base}/v1/agents/watch/a`, 'DELETE'));
      ws.on('error', reject);
    });
    ws.close();
    expect(got.map((e) => (e.agent as Record<string, unknown>).id)).toEqual(['watch/a', 'watch/b', 'watch/a']);
    expect(got.map((e) => e.type)).toEqual(['EVENT_TYPE_PUT', 'EVENT_TYPE_PUT', 'EVENT_TYPE_DELETE']);

    const bad = new WebSocket(`${base.replace('http:', 'ws:')}/v1/watch/ws?colour=red`);
    const answer = await new Promise<{ message: Record<string, unknown>; code: number }>((resolve, reject) => {
      let message: Record<string, unknown> = {};
      bad.on('message', (m) => (message = JSON.parse(String(m)) as Record<string, unknown>));
      bad.on('close', (code) => resolve({ message, code }));
      bad.on('error', reject);
    });
    expect((answer.message.error as Record<string, unknown>).code).toBe(Code.INVALID_ARGUMENT);
    expect(String((answer.message.error as Record<string, unknown>).message)).toMatch(/colour: unknown field/);
    expect(answer.code).toBe(1011);
  });

  it('allows the cluster\'s own dashboards cross-origin, and no other origin unless configured', async () => {
    const base = cluster.httpUrl(follower);
    const other = cluster.ids.find((id) => id !== follower) as string;
    await waitFor('the peers\' HTTP addresses', 15_000, async () => {
      const r = await call(`${base}/v1/cluster/members`);
      return (r.body.members as Array<{ httpAddress: string }>).every((m) => m.httpAddress !== '') ? true : undefined;
    });
    const own = await call(`${base}/v1/cluster/status`, 'GET', undefined, { origin: cluster.httpUrl(other) });
    expect(own.headers.get('access-control-allow-origin')).toBe(cluster.httpUrl(other));
    const evil = await call(`${base}/v1/cluster/status`, 'GET', undefined, { origin: 'http://evil.example' });
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    // WebSockets get no CORS from browsers: the watch checks the origin itself.
    const watchFrom = (origin: string) => new Promise<{ first: Record<string, unknown> | undefined; code: number }>((resolve, reject) => {
      const ws = new WebSocket(`${base.replace('http:', 'ws:')}/v1/watch/ws`, { origin });
      let first: Record<string, unknown> | undefined;
      ws.on('message', (m) => {
        first ??= JSON.parse(String(m)) as Record<string, unknown>;
      });
      ws.on('open', () => setTimeout(() => ws.close(1000), 500));
      ws.on('close', (code) => resolve({ first, code }));
      ws.on('error', reject);
    });
    const refused = await watchFrom('http://evil.example');
    expect((refused.first?.error as Record<string, unknown> | undefined)?.code).toBe(Code.PERMISSION_DENIED);
    expect(refused.code).toBe(1011);
    const allowed = await watchFrom(cluster.httpUrl(other));
    expect(allowed.first).toBeUndefined();
    expect(allowed.code).toBe(1000);
  });

  it('serves a backup download, an OpenAPI 3.1 document generated from the route schemas, probes and the dashboard', async () => {
    const base = cluster.httpUrl(follower);
    const backup = await fetch(`${base}/v1/snapshot`);
    expect(backup.status).toBe(200);
    expect(backup.headers.get('content-type')).toBe('application/octet-stream');
    expect((await backup.arrayBuffer()).byteLength).toBeGreaterThan(100);

    const doc = await call(`${base}/openapi.json`);
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
    const paths = doc.body.paths as Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } }>>;
    for (const p of ['/v1/agents', '/v1/agents/{*}', '/v1/watch', '/v1/cluster/status', '/v1/cluster/members', '/v1/cluster/leader', '/v1/snapshot', '/health']) expect(Object.keys(paths)).toContain(p);
    const register = paths['/v1/agents']?.post?.requestBody?.content['application/json']?.schema;
    expect(Object.keys(register?.properties ?? {})).toEqual(expect.arrayContaining(['agent', 'clientId', 'ttlSeconds', 'expectedRevision', 'createOnly']));

    for (const id of cluster.ids) {
      const h = await call(`${cluster.httpUrl(id)}/health`);
      expect(h.status).toBe(200);
      expect(h.body.status).toBe('SERVING');
      expect((await call(`${cluster.httpUrl(id)}/health?live`)).status).toBe(200);
      expect((await call(`${cluster.httpUrl(id)}/health?ready`)).status).toBe(200);
    }
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
  });

  it('serves Prometheus metrics whose counters move with the requests made', async () => {
    const base = cluster.httpUrl(follower);
    /** The samples of a Prometheus text exposition: `name{labels}` → value; throws on a malformed line. */
    const scrape = async (): Promise<Map<string, number>> => {
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const out = new Map<string, number>();
      for (const line of (await res.text()).split('\n')) {
        if (line === '' || line.startsWith('#')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line);
        if (!m) throw new Error(`not Prometheus text: ${line}`);
        out.set(m[1] as string, Number(m[2]));
      }
      return out;
    };
    const key = (name: string, labels: Record<string, string>) => `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;
    const getOk = key('registry_requests_total', { api: 'http', method: 'GET /v1/agents/*', code: 'OK' });
    const getMissing = key('registry_requests_total', { api: 'http', method: 'GET /v1/agents/*', code: 'NOT_FOUND' });
    const registerOk = key('registry_requests_total', { api: 'http', method: 'POST /v1/agents', code: 'OK' });
    const before = await scrape();
    expect(await call(`${base}/v1/agents`, 'POST', { agent: agent('metrics/one') })).toMatchObject({ status: 200 });
    for (let i = 0; i < 3; i++) expect((await call(`${base}/v1/agents/metrics/one`)).status).toBe(200);
    expect((await call(`${base}/v1/agents/metrics/none`)).status).toBe(404);
    const after = await scrape();
    expect((after.get(registerOk) ?? 0) - (before.get(registerOk) ?? 0)).toBe(1);
    expect((after.get(getOk) ?? 0) - (before.get(getOk) ?? 0)).toBe(3);
    expect((after.get(getMissing) ?? 0) - (before.get(getMissing) ?? 0)).toBe(1);
    expect(after.get('raft_term')).toBeGreaterThan(0);
    expect(after.get('raft_applied_index')).toBeGreaterThan(before.get('raft_applied_index') ?? 0);
    expect(after.get('raft_has_leader')).toBe(1);
    expect([...after.keys()].some((k) => k.startsWith('registry_request_duration_seconds_bucket{'))).toBe(true);
    expect([...after.keys()].some((k) => k.startsWith('process_cpu_seconds_total'))).toBe(true);
  });

  it('without a quorum: a write times out with 504, then 503 with Retry-After and /health 503 once the leader steps down', async () => {
    leader = await cluster.waitForLeader();
    const base = cluster.httpUrl(leader);
    for (const id of cluster.ids.filter((i) => i !== leader)) await cluster.kill(id, 'SIGKILL');
    const timedOut = await call(`${base}/v1/agents`, 'POST', { agent: agent('late/one') }, { 'x-request-timeout-ms': '300' });
    expect([503, 504]).toContain(timedOut.status);
    if (timedOut.status === 504) expect(timedOut.body.code).toBe(Code.DEADLINE_EXCEEDED);
    const down = await waitFor('the leader to step down', 20_000, async () => {
      const h = await call(`${base}/health`);
      return h.status === 503 ? h : undefined;
    });
    expect(down.body.status).toBe('NOT_SERVING');
    expect(String(down.body.reason)).toMatch(/no leader/);
    expect(down.headers.get('retry-after')).toBe('1');
    expect((await call(`${base}/health?live`)).status).toBe(200);
    const refused = await call(`${base}/v1/agents`, 'POST', { agent: agent('late/two') }, { 'x-request-timeout-ms': '2000' });
    expectError(refused, 503, Code.UNAVAILABLE);
    expect(refused.headers.get('retry-after')).toBe('1');
    const read = await call(`${base}/v1/agents/late/one`, 'GET', undefined, { 'x-request-timeout-ms': '1000' });
    expect([503, 504]).toContain(read.status);
    const stale = await call(`${base}/v1/agents?consistency=serializable&capability=paged`);
    expect(stale.status).toBe(200);
    expect((stale.body.agents as unknown[]).length).toBe(5);
  }, 60_000);
});
