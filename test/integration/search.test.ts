/**
 * Keyword search on real processes: a 3-node cluster imports the real MCP seed list, then
 * `registry search database` (gRPC, through the CLI), `GET /v1/agents:search` (HTTP) and the
 * gRPC client answer with known database servers of the seed in their top 10, from every node;
 * `GET /v1/capabilities` and `Find.capability_prefix` answer the seed's package registries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, REGISTRY_BIN, SEED_FILE, runBinary, waitFor } from '../../cluster/process-cluster.js';

/** Database servers of `data/mcp-registry-seed-2025-05-16.json` whose name or description says so. */
const KNOWN_DATABASE_SERVERS = [
  'io.github.fireproof-storage/mcp-database-server',
  'io.github.arturborycki/mcp-teradata',
  'io.github.oceanbase/mcp-oceanbase',
  'io.github.benborla/mcp-server-mysql',
];

interface WireSearch {
  results: { agent: { id: string }; score: number }[];
  nextPageToken?: string;
  revision: string;
}

describe('keyword search on a 3-node cluster with the real seed data', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
    const out = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints().join(','), 'import', SEED_FILE]);
    expect(out.code, out.out).toBe(0);
  }, 90_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('`registry search database` lists known database servers in its top 10', async () => {
    const out = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints().join(','), '--json', 'search', 'database']);
    expect(out.code, out.out).toBe(0);
    const body = JSON.parse(out.out) as { results: { agent: { id: string }; score: number }[] };
    const top = body.results.map((r) => r.agent.id);
    expect(top).toHaveLength(10);
    for (const id of KNOWN_DATABASE_SERVERS) expect(top).toContain(id);
    expect(top[0]).toBe('io.github.fireproof-storage/mcp-database-server');
    const human = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints().join(','), 'search', 'iotdb', '--limit', '3']);
    expect(human.out).toMatch(/io\.github\.apache\/iotdb-mcp-server/);
  }, 30_000);

  it('GET /v1/agents:search answers the same ranking from every node, paged', async () => {
    const rankings: string[][] = [];
    for (const id of cluster.ids) {
      const res = await fetch(`${cluster.httpUrl(id)}/v1/agents:search?q=database&pageSize=10&consistency=serializable`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as WireSearch;
      rankings.push(body.results.map((r) => r.agent.id));
    }
    // Followers may lag a little behind the import: wait until every node answers alike.
    await waitFor('every node ranks alike', 20_000, async () => {
      const again = await Promise.all(
        cluster.ids.map(async (id) => ((await (await fetch(`${cluster.httpUrl(id)}/v1/agents:search?q=database&pageSize=10`)).json()) as WireSearch).results.map((r) => r.agent.id)),
      );
      return again.every((r) => JSON.stringify(r) === JSON.stringify(again[0])) ? true : undefined;
    });
    for (const r of rankings) for (const id of KNOWN_DATABASE_SERVERS) expect(r).toContain(id);
    const base = cluster.httpUrl(cluster.ids[0] as string);
    const first = (await (await fetch(`${base}/v1/agents:search?q=database&pageSize=5`)).json()) as WireSearch;
    expect(first.results).toHaveLength(5);
    const second = (await (await fetch(`${base}/v1/agents:search?q=database&pageSize=5&pageToken=${first.nextPageToken ?? ''}`)).json()) as WireSearch;
    expect([...first.results, ...second.results].map((r) => r.agent.id)).toEqual(rankings[0]);
    const bad = await fetch(`${base}/v1/agents:search?q=...`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/query/);
  }, 30_000);

  it('GET /v1/capabilities counts the package registries; Find.capability_prefix uses them', async () => {
    const base = cluster.httpUrl(cluster.ids[0] as string);
    const res = (await (await fetch(`${base}/v1/capabilities`)).json()) as { capabilities: { capability: string; count: string }[] };
    const counts = new Map(res.capabilities.map((c) => [c.capability, Number(c.count)]));
    expect(counts.get('npm')).toBeGreaterThan(10);
    expect(counts.get('pypi')).toBeGreaterThan(10);
    const p = (await (await fetch(`${base}/v1/capabilities?prefix=np`)).json()) as { capabilities: { capability: string }[] };
    expect(p.capabilities.map((c) => c.capability)).toEqual(['npm']);
    const client = cluster.client();
    try {
      const ids: string[] = [];
      for await (const page of client.findAll({ capabilityPrefix: 'np', pageSize: 50 })) ids.push(...page.agents.map((a) => a.id));
      expect(ids).toHaveLength(counts.get('npm') as number);
      const listed = await client.listCapabilities('py');
      expect(listed.capabilities).toEqual([{ capability: 'pypi', count: counts.get('pypi') }]);
      const searched = await client.search({ query: 'database', capability: 'npm', pageSize: 10 });
      expect(searched.results.length).toBeGreaterThan(0);
      for (const r of searched.results) expect(r.agent.capabilities).toContain('npm');
    } finally {
      client.close();
    }
  }, 30_000);
});
