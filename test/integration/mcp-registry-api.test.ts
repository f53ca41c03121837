/**
 * The MCP registry's read API (`/v0.1/servers`, official API 2025-12-01) and versions on a real
 * 3-node cluster holding the imported real data set (data/mcp-registry-seed-2025-05-16.json)
 * plus several versions of one name: the official response shape, paging with `cursor` visiting
 * every server exactly once, `version=latest`, `search`, `updated_since`, the versions
 * endpoints, 404 and 400 in the official `{ error }` shape, and Get by `<name>[@<version>]` and
 * ListVersions over `/v1`.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, REGISTRY_BIN, SEED_FILE, runBinary } from '../../cluster/process-cluster.js';
import { parseSeed } from '../../src/registry/seed.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function get(url: string): Promise<Reply> {
  const res = await fetch(url);
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

async function post(url: string, body: unknown): Promise<Reply> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

interface Official {
  status: string;
  publishedAt?: string;
  updatedAt?: string;
  isLatest: boolean;
}
interface ServerResponse {
  server: Record<string, unknown> & { name: string; version: string; description: string };
  _meta: Record<string, Official>;
}
const OFFICIAL = 'io.modelcontextprotocol.registry/official';
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Checks one ServerResponse against the official schema's shape. */
function expectServerResponse(s: ServerResponse): void {
  expect(Object.keys(s).sort()).toEqual(['_meta', 'server']);
  expect(typeof s.server.name).toBe('string');
  expect(typeof s.server.version).toBe('string');
  expect(typeof s.server.description).toBe('string');
  const meta = s._meta[OFFICIAL] as Official;
  expect(meta.status).toBe('active');
  expect(typeof meta.isLatest).toBe('boolean');
  expect(meta.publishedAt).toMatch(RFC3339);
  expect(meta.updatedAt).toMatch(RFC3339);
  expect(Date.parse(meta.updatedAt as string)).toBeGreaterThanOrEqual(Date.parse(meta.publishedAt as string));
  for (const k of Object.keys(meta)) expect(['status', 'publishedAt', 'updatedAt', 'isLatest']).toContain(k);
}

/** Walks `/v0.1/servers` with `query` page by page; checks every page's shape. */
async function walk(base: string, query: string, limit: number): Promise<ServerResponse[]> {
  const out: ServerResponse[] = [];
  let cursor: string | undefined;
  for (let pages = 0; ; pages++) {
    expect(pages).toBeLessThan(1000);
    const r = await get(`${base}/v0.1/servers?limit=${limit}${query}${cursor !== undefined ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const servers = r.body.servers as ServerResponse[];
    const metadata = r.body.metadata as { nextCursor?: string; count: number };
    expect(metadata.count).toBe(servers.length);
    expect(servers.length).toBeLessThanOrEqual(limit);
    for (const s of servers) expectServerResponse(s);
    out.push(...servers);
    if (metadata.nextCursor === undefined) break;
    expect(servers).toHaveLength(limit);
    cursor = metadata.nextCursor;
  }
  return out;
}

const VERSIONED = 'io.example/versioned-server';
/** Registered in this order; the latest is 1.10.0 (semver precedence, not registration order). */
const VERSIONS = ['1.0.0', '1.10.0', 'nightly', '1.9.0-beta'];

describe('the MCP registry read API on a 3-node cluster with the real data', () => {
  let cluster: ProcessCluster;
  let base: string;
  const seed = parseSeed(JSON.parse(readFileSync(SEED_FILE, 'utf8')));

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    base = cluster.httpUrl(follower);
    const out = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints([follower]).join(','), 'import', SEED_FILE]);
    expect(out.code, out.out).toBe(0);
    for (const version of VERSIONS) {
      const agent = { id: `${VERSIONED}@${version}`, name: VERSIONED, kind: 'mcp-server', version, description: `version ${version}`, endpoints: { repository: 'https://github.com/example/versioned' }, labels: { source: 'github' } };
      const r = await post(`${base}/v1/agents`, { agent });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    // Not an MCP server: never listed.
    const a2a = await post(`${base}/v1/agents`, { agent: { id: 'example.a2a-agent', name: 'io.example/a2a', kind: 'a2a-agent', version: '1.0.0' } });
    expect(a2a.status).toBe(200);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('pages with cursor through every server exactly once, in the official shape', async () => {
    const all = await walk(base, '', 37);
    const keys = all.map((s) => `${s.server.name}@${s.server.version}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(all).toHaveLength(seed.agents.length + VERSIONS.length);
    expect(new Set(all.map((s) => s.server.name))).toEqual(new Set([...seed.agents.map((a) => a.name), VERSIONED]));
    // Each seed server once, as the latest (one version each), with its synthesized server.json.
    for (const spec of seed.agents) {
      const found = all.filter((s) => s.server.name === spec.name);
      expect(found, spec.name).toHaveLength(1);
      const s = found[0] as ServerResponse;
      expect(s._meta[OFFICIAL]?.isLatest).toBe(true);
      expect(s.server.version).toBe(spec.version);
      expect(s.server.description).toBe(spec.description);
      if (spec.endpoints.repository !== undefined) expect((s.server.repository as { url: string }).url).toBe(spec.endpoints.repository);
      const packages = (spec.labels.package ?? '').split(',').filter((p) => p !== '');
      const listed = ((s.server.packages ?? []) as { identifier: string; registryType: string; transport: { type: string } }[]);
      for (const p of listed) {
        expect(packages).toContain(p.identifier);
        expect(spec.capabilities).toContain(p.registryType);
        expect(p.transport.type).toBe('stdio');
      }
      const remotes = ((s.server.remotes ?? []) as { url: string; type: string }[]);
      expect(remotes.map((r) => r.url)).toEqual(Object.keys(spec.endpoints).filter((k) => k.startsWith('remote')).map((k) => spec.endpoints[k]));
      for (const r of remotes) expect(['sse', 'streamable-http']).toContain(r.type);
    }
    // A different page size walks the same servers in the same order.
    expect((await walk(base, '', 100)).map((s) => `${s.server.name}@${s.server.version}`)).toEqual(keys);
  }, 60_000);

  it('version=latest answers one server per name, the highest semantic version', async () => {
    const latest = await walk(base, '&version=latest', 50);
    expect(latest).toHaveLength(seed.agents.length + 1);
    for (const s of latest) expect(s._meta[OFFICIAL]?.isLatest).toBe(true);
    expect(latest.filter((s) => s.server.name === VERSIONED).map((s) => s.server.version)).toEqual(['1.10.0']);
    // An exact version filter.
    const exact = await walk(base, `&version=${encodeURIComponent('1.9.0-beta')}`, 100);
    expect(exact.map((s) => s.server.name)).toEqual([VERSIONED]);
  }, 60_000);

  it('search keeps names containing the text, ignoring case; updated_since keeps later updates', async () => {
    const found = await walk(base, '&search=IoTDB', 10);
    expect(found.map((s) => s.server.name)).toContain('io.github.apache/iotdb-mcp-server');
    for (const s of found) expect(s.server.name.toLowerCase()).toContain('iotdb');
    expect(found).toHaveLength(seed.agents.filter((a) => a.name.toLowerCase().includes('iotdb')).length);

    const all = await walk(base, '', 100);
    const times = [...new Set(all.map((s) => Date.parse(s._meta[OFFICIAL]?.updatedAt as string)))].sort((a, b) => a - b);
    const since = times[Math.floor(times.length / 2)] as number;
    const later = await walk(base, `&updated_since=${encodeURIComponent(new Date(since).toISOString())}`, 100);
    const want = all.filter((s) => Date.parse(s._meta[OFFICIAL]?.updatedAt as string) > since).map((s) => `${s.server.name}@${s.server.version}`);
    expect(later.map((s) => `${s.server.name}@${s.server.version}`)).toEqual(want);
    expect(want.length).toBeLessThan(all.length);
  }, 60_000);

  it('answers the versions of a server, latest first, and one version or the latest; 404 otherwise', async () => {
    const name = encodeURIComponent(VERSIONED);
    const list = await get(`${base}/v0.1/servers/${name}/versions`);
    expect(list.status, JSON.stringify(list.body)).toBe(200);
    const servers = list.body.servers as ServerResponse[];
    for (const s of servers) expectServerResponse(s);
    expect(servers.map((s) => s.server.version)).toEqual(['1.10.0', '1.9.0-beta', '1.0.0', 'nightly']);
    expect(servers.map((s) => s._meta[OFFICIAL]?.isLatest)).toEqual([true, false, false, false]);
    expect(list.body.metadata).toEqual({ count: 4 });
    // The name with an unencoded '/' works too.
    expect((await get(`${base}/v0.1/servers/${VERSIONED}/versions`)).body).toEqual(list.body);

    const latest = await get(`${base}/v0.1/servers/${name}/versions/latest`);
    expect(latest.status).toBe(200);
    expectServerResponse(latest.body as unknown as ServerResponse);
    expect((latest.body as unknown as ServerResponse).server.version).toBe('1.10.0');
    const one = await get(`${base}/v0.1/servers/${name}/versions/${encodeURIComponent('1.9.0-beta')}`);
    expect((one.body as unknown as ServerResponse).server.version).toBe('1.9.0-beta');
    expect((one.body as unknown as ServerResponse)._meta[OFFICIAL]?.isLatest).toBe(false);

    const seedOne = seed.agents[0]!;
    const s = await get(`${base}/v0.1/servers/${encodeURIComponent(seedOne.name)}/versions/latest`);
    expect((s.body as unknown as ServerResponse).server.name).toBe(seedOne.name);

    for (const path of [`${name}/versions/9.9.9`, `${encodeURIComponent('io.example/no-such-server')}/versions`, `${encodeURIComponent('io.example/no-such-server')}/versions/latest`, `${encodeURIComponent('io.example/a2a')}/versions`]) {
      const r = await get(`${base}/v0.1/servers/${path}`);
      expect(r.status, path).toBe(404);
      expect(typeof r.body.error).toBe('string');
    }
  }, 60_000);

  it('refuses bad parameters with 400 and an error naming the parameter', async () => {
    for (const [q, field] of [['limit=0', 'limit'], ['limit=101', 'limit'], ['limit=x', 'limit'], ['updated_since=yesterday', 'updated_since'], ['cursor=not-a-cursor!', 'cursor'], ['cursor=AAAA', 'cursor'], ['colour=red', 'colour']] as const) {
      const r = await get(`${base}/v0.1/servers?${q}`);
      expect(r.status, q).toBe(400);
      expect(String(r.body.error)).toMatch(new RegExp(`^${field}`));
    }
  });

  it('Get takes <name>, <name>@latest and <name>@<version>; ListVersions lists them latest first', async () => {
    const ref = async (r: string): Promise<Reply> => get(`${base}/v1/agents/${r}`);
    const byName = await ref(VERSIONED);
    expect(byName.status, JSON.stringify(byName.body)).toBe(200);
    expect((byName.body.agent as { version: string }).version).toBe('1.10.0');
    expect(((await ref(`${VERSIONED}@latest`)).body.agent as { version: string }).version).toBe('1.10.0');
    expect(((await ref(`${VERSIONED}@nightly`)).body.agent as { id: string }).id).toBe(`${VERSIONED}@nightly`);
    expect((await ref(`${VERSIONED}@0.0.1`)).status).toBe(404);
    const versions = await get(`${base}/v1/agents:versions?name=${encodeURIComponent(VERSIONED)}`);
    expect(versions.status, JSON.stringify(versions.body)).toBe(200);
    expect((versions.body.agents as { version: string }[]).map((a) => a.version)).toEqual(['1.10.0', '1.9.0-beta', '1.0.0', 'nightly']);
    expect(versions.body.latestId).toBe(`${VERSIONED}@1.10.0`);
    const unknown = await get(`${base}/v1/agents:versions?name=nobody`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe(5);
    // The same over gRPC, through the client and the CLI.
    const client = cluster.client();
    const res = await client.listVersions(VERSIONED);
    expect(res.agents.map((a) => a.version)).toEqual(['1.10.0', '1.9.0-beta', '1.0.0', 'nightly']);
    expect(res.latestId).toBe(`${VERSIONED}@1.10.0`);
    client.close();
    const cli = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints().join(','), 'versions', VERSIONED]);
    expect(cli.code, cli.out).toBe(0);
    expect(cli.out).toMatch(/1\.10\.0\s+latest/);
    expect(cli.out).toMatch(/4 versions/);
  });
});
