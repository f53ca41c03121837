/**
 * Snapshots and log compaction on real processes (§7), with a snapshot threshold low enough
 * that the scenario of a follower missing several snapshots' worth of writes fits in a test:
 *
 * - a follower stopped (SIGTERM) misses more than threshold + tail writes, restarts, catches up
 *   by InstallSnapshot and serves every agent — the scenario that once crash-looped followers
 *   (`snapshot … to install is not on disk`);
 * - the same with the follower SIGKILLed while it receives or installs the snapshot: restarted,
 *   it catches up all the same;
 * - a restarted node recovers from its snapshot plus the log tail.
 *
 * No node may stop by itself in any of them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, waitFor } from '../../cluster/process-cluster.js';
import type { RegistryClient } from '../../src/client/index.js';
import type { AgentSpec } from '../../src/registry/types.js';

/** Applied entries between snapshots on these nodes. */
const SNAPSHOT_THRESHOLD = 1_000;
/** Entries kept behind a snapshot. */
const SNAPSHOT_TAIL = 200;
/** Agents written while the follower is down: several snapshots' worth, well past threshold + tail. */
const WRITES = 6 * (SNAPSHOT_THRESHOLD + SNAPSHOT_TAIL);
/** Requests in flight while writing. */
const CONCURRENCY = 64;
/** Bytes of each agent's description (so a snapshot takes a moment to send and install). */
const DESCRIPTION_BYTES = 1_000;

const spec = (batch: string, i: number): AgentSpec => ({
  id: `${batch}-${String(i).padStart(6, '0')}`,
  name: `agent ${i}`,
  kind: i % 2 === 0 ? 'mcp-server' : 'a2a-agent',
  version: '1.0.0',
  description: `written while a follower was down ${i} `.padEnd(DESCRIPTION_BYTES, 'x'),
  capabilities: [`cap-${i % 10}`],
  endpoints: { grpc: `10.0.${(i >> 8) & 255}.${i & 255}:50051` },
  labels: { batch },
});

async function countBatch(client: RegistryClient, batch: string): Promise<number> {
  let n = 0;
  for await (const page of client.findAll({ labels: { batch }, pageSize: 1000 }, { consistency: 'serializable' })) n += page.agents.length;
  return n;
}

async function writeBatch(client: RegistryClient, batch: string): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < WRITES) await client.register(spec(batch, next++));
    }),
  );
}

describe('snapshots, compaction and InstallSnapshot on a 3-node cluster', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3, ['--snapshot-threshold', String(SNAPSHOT_THRESHOLD), '--snapshot-tail', String(SNAPSHOT_TAIL)]);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  /** Logs of `id` so far, as one string. */
  const logsOf = (id: string): string => (cluster.logs.get(id) ?? []).join('');

  /** Stops `follower`, writes a batch through the others, waits for the leader to compact past what the follower holds. */
  async function missWrites(follower: string, batch: string, signal: NodeJS.Signals): Promise<number> {
    const leader = await cluster.waitForLeader();
    const before = (await cluster.statuses([follower]))[0];
    await cluster.kill(follower, signal);
    const client = cluster.client(cluster.ids.filter((id) => id !== follower), 30_000);
    try {
      await writeBatch(client, batch);
    } finally {
      client.close();
    }
    const st = await waitFor('the leader to compact past the stopped follower', 30_000, async () => {
      const s = (await cluster.statuses([leader]))[0];
      return s && s.firstIndex > (before?.appliedIndex ?? 0) + 1 ? s : undefined;
    });
    return st.commitIndex;
  }

  async function expectCaughtUp(follower: string, target: number, batch: string): Promise<void> {
    const caughtUp = await waitFor('the restarted follower to catch up', 60_000, async () => {
      const st = (await cluster.statuses([follower]))[0];
      return st && st.appliedIndex >= target ? st : undefined;
    }, 200);
    expect(caughtUp.snapshotIndex).toBeGreaterThan(0);
    const onFollower = cluster.client([follower]);
    try {
      expect(await countBatch(onFollower, batch)).toBe(WRITES);
    } finally {
      onFollower.close();
    }
  }

  it(`a follower that missed ${WRITES} writes (threshold ${SNAPSHOT_THRESHOLD} + tail ${SNAPSHOT_TAIL}, several times over) restarts, catches up by snapshot and serves every agent`, async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const target = await missWrites(follower, 'stopped', 'SIGTERM');
    const mark = logsOf(follower).length;
    cluster.startNode(follower);
    await expectCaughtUp(follower, target, 'stopped');
    const since = logsOf(follower).slice(mark);
    expect(since).toContain('snapshot installed');
    for (const id of cluster.ids) expect(logsOf(id)).not.toContain('stopped by a fatal error');
  }, 240_000);

  it('a follower SIGKILLed while it receives or installs a snapshot restarts and catches up all the same', async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const target = await missWrites(follower, 'killed', 'SIGTERM');
    const mark = logsOf(follower).length;
    cluster.startNode(follower);
    // Kill it the moment the transfer starts: before the install's atomic switch.
    await waitFor('the follower to start receiving a snapshot', 60_000, async () => (logsOf(follower).slice(mark).includes('receiving snapshot') ? true : undefined), 5);
    await cluster.kill(follower, 'SIGKILL');
    const killedLogs = logsOf(follower).slice(mark);
    expect(killedLogs).not.toContain('snapshot installed');
    const restartMark = logsOf(follower).length;
    cluster.startNode(follower);
    await expectCaughtUp(follower, target, 'killed');
    expect(logsOf(follower).slice(restartMark)).toContain('snapshot installed');
    for (const id of cluster.ids) expect(logsOf(id)).not.toContain('stopped by a fatal error');
  }, 240_000);

  it('a restarted node recovers from its snapshot plus the log tail', async () => {
    const leader = await cluster.waitForLeader();
    const node = cluster.ids.find((id) => id !== leader) as string;
    const before = (await cluster.statuses([node]))[0];
    await cluster.kill(node, 'SIGTERM');
    cluster.startNode(node);
    const after = await cluster.waitServing(node);
    expect(after.snapshotIndex).toBeGreaterThan(0);
    expect(after.appliedIndex).toBeGreaterThanOrEqual(before?.appliedIndex ?? 0);
    const client = cluster.client([node]);
    try {
      expect(await countBatch(client, 'stopped')).toBe(WRITES);
      expect(await countBatch(client, 'killed')).toBe(WRITES);
    } finally {
      client.close();
    }
  }, 120_000);
});
