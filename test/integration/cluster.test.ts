/**
 * End to end on real processes: a 3-node cluster on loopback serves the real MCP server seed
 * list, survives a SIGKILL of its leader, and brings the killed node back up to date.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegistryClient } from '../../src/client/index.js';
import { parseSeed } from '../../src/registry/seed.js';
import type { Agent, FindQuery } from '../../src/registry/types.js';
import { ProcessCluster, REGISTRY_BIN, SEED_FILE, runBinary, waitFor } from '../../cluster/process-cluster.js';

/** Every agent matching `query`, across pages. */
async function findAllIds(client: RegistryClient, query: FindQuery, consistency: 'linearizable' | 'serializable' = 'linearizable'): Promise<string[]> {
  const ids: string[] = [];
  for await (const page of client.findAll({ ...query, pageSize: 100 }, { consistency })) ids.push(...page.agents.map((a: Agent) => a.id));
  return ids;
}

/** Expected matches computed straight from the raw file, not from the registry's mapping. */
function expectedByRegistry(): Map<string, Set<string>> {
  const raw = JSON.parse(readFileSync(SEED_FILE, 'utf8')) as Array<{
    name: string;
    packages?: Array<{ registry_name?: string; registry?: string }>;
    remotes?: unknown[];
  }>;
  const out = new Map<string, Set<string>>();
  const add = (cap: string, id: string) => {
    const s = out.get(cap) ?? new Set<string>();
    s.add(id);
    out.set(cap, s);
  };
  for (const e of raw) {
    if (!e.name) continue;
    for (const p of e.packages ?? []) {
      const reg = (p.registry_name && p.registry_name !== 'unknown' ? p.registry_name : p.registry ?? '').toLowerCase();
      if (reg && reg !== 'unknown') add(reg, e.name);
    }
    if (Array.isArray(e.remotes) && e.remotes.length > 0) add('remote', e.name);
  }
  return out;
}

describe('a 3-node cluster on real processes', () => {
  let cluster: ProcessCluster;
  let leader: string;
  const seed = parseSeed(JSON.parse(readFileSync(SEED_FILE, 'utf8')));

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    leader = await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('imports the real data set through a follower: 464 agents, the 7 blank entries reported', async () => {
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const out = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints([follower]).join(','), 'import', SEED_FILE]);
    expect(out.code, out.out).toBe(0);
    expect(out.out).toMatch(/registered 464, invalid 7, failed 0/);
    const client = cluster.client([follower]);
    try {
      const all = await findAllIds(client, {});
      expect(all).toHaveLength(464);
      expect(new Set(all)).toEqual(new Set(seed.agents.map((a) => a.id)));
    } finally {
      client.close();
    }
  }, 60_000);

  it('Find by capability returns exactly the matching agents, from every node', async () => {
    const expected = expectedByRegistry();
    expect(expected.size).toBeGreaterThan(2);
    for (const id of cluster.ids) {
      const client = cluster.client([id]);
      try {
        for (const [cap, ids] of expected) {
          const got = await findAllIds(client, { capability: cap });
          expect(got, `capability ${cap} on ${id}`).toEqual([...ids].sort());
        }
      } finally {
        client.close();
      }
    }
  }, 60_000);

  it('after a SIGKILL of the leader a new leader is elected, every agent is readable and writes succeed', async () => {
    await cluster.kill(leader, 'SIGKILL');
    const rest = cluster.ids.filter((id) => id !== leader);
    const newLeader = await cluster.waitForLeader(rest, 20_000);
    expect(newLeader).not.toBe(leader);
    const client = cluster.client(rest);
    try {
      expect(await findAllIds(client, {})).toHaveLength(464);
      const r = await client.register({ id: 'after-failover', name: 'after failover', kind: 'service', version: '1', description: '', capabilities: ['probe'], endpoints: {}, labels: {} });
      expect(r.agent.modRevision).toBe(r.revision);
      const got = await client.get('after-failover');
      expect(got.agent.capabilities).toEqual(['probe']);
    } finally {
      client.close();
    }
  }, 60_000);

  it('the killed node restarts from its data dir and catches up', async () => {
    cluster.startNode(leader);
    const client = cluster.client([leader]);
    try {
      const got = await waitFor('the restarted node to apply the post-failover write', 20_000, async () => {
        try {
          return (await client.get('after-failover', { consistency: 'serializable' })).agent;
        } catch {
          return undefined;
        }
      });
      expect(got.id).toBe('after-failover');
      expect(await findAllIds(client, {}, 'serializable')).toHaveLength(465);
    } finally {
      client.close();
    }
  }, 60_000);
});
