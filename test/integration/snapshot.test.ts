/**
 * Snapshots and log compaction on real processes (§7): a follower stopped while 50,000 agents
 * are written comes back and catches up by InstallSnapshot (the leader compacted the entries it
 * missed), and a restarted node recovers from its snapshot plus the log tail.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, waitFor } from '../../cluster/process-cluster.js';
import type { RegistryClient } from '../../src/client/index.js';
import type { AgentSpec } from '../../src/registry/types.js';

/** Agents written while the follower is down (the figure). */
const WRITES = 50_000;
/** Requests in flight while writing. */
const CONCURRENCY = 64;

const spec = (i: number): AgentSpec => ({
  id: `snap-${String(i).padStart(6, '0')}`,
  name: `agent ${i}`,
  kind: i % 2 === 0 ? 'mcp-server' : 'a2a-agent',
  version: '1.0.0',
  description: 'written while a follower was down',
  capabilities: [`cap-${i % 10}`],
  endpoints: { grpc: `10.0.${(i >> 8) & 255}.${i & 255}:50051` },
  labels: { batch: 'snapshot-test' },
});

async function countAll(client: RegistryClient, consistency: 'linearizable' | 'serializable'): Promise<number> {
  let n = 0;
  for await (const page of client.findAll({ labels: { batch: 'snapshot-test' }, pageSize: 1000 }, { consistency })) n += page.agents.length;
  return n;
}

describe('snapshots, compaction and InstallSnapshot on a 3-node cluster', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it(`a follower stopped during ${WRITES} writes catches up by snapshot`, async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    await cluster.kill(follower, 'SIGTERM');
    const up = cluster.ids.filter((id) => id !== follower);
    const client = cluster.client(up, 30_000);
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < WRITES) await client.register(spec(next++));
      }),
    );
    const leaderStatus = await waitFor('the leader to compact its log', 30_000, async () => {
      const st = (await cluster.statuses([leader]))[0];
      return st && st.snapshotIndex > 0 && st.firstIndex > 1 ? st : undefined;
    });
    expect(leaderStatus.firstIndex).toBeGreaterThan(1);

    cluster.startNode(follower);
    const target = leaderStatus.commitIndex;
    const caughtUp = await waitFor('the restarted follower to catch up', 60_000, async () => {
      const st = (await cluster.statuses([follower]))[0];
      return st && st.appliedIndex >= target ? st : undefined;
    }, 200);
    // It got there through a snapshot: its log starts after the leader's compaction point.
    expect(caughtUp.snapshotIndex).toBeGreaterThan(0);
    expect((cluster.logs.get(follower) ?? []).join('')).toContain('snapshot installed');
    const onFollower = cluster.client([follower]);
    expect(await countAll(onFollower, 'serializable')).toBe(WRITES);
    onFollower.close();
    client.close();
  }, 240_000);

  it('a restarted node recovers from its snapshot plus the log tail', async () => {
    const leader = await cluster.waitForLeader();
    const node = cluster.ids.find((id) => id !== leader) as string;
    const before = (await cluster.statuses([node]))[0];
    await cluster.kill(node, 'SIGTERM');
    cluster.startNode(node);
    const after = await waitFor('the node to serve again', 30_000, async () => (await cluster.statuses([node]))[0]);
    expect(after.snapshotIndex).toBeGreaterThan(0);
    expect(after.appliedIndex).toBeGreaterThanOrEqual(before?.appliedIndex ?? 0);
    const client = cluster.client([node]);
    expect(await countAll(client, 'serializable')).toBe(WRITES);
    client.close();
  }, 120_000);
});
