/**
 * Snapshot and compaction figures on a real 3-node cluster on loopback (§7):
 *
 * 1. the snapshot point once the registry holds `--agents` agents (default 100,000),
 * 2. restart time of a node holding them (SIGTERM, start, until it serves at the leader's commit),
 * 3. catch-up time of a follower that missed `--missed` writes (default 50,000), and the size
 *    and time of the snapshot the leader streamed to it,
 * 4. on-disk size of the LevelDB store with compaction (default settings) and, in a second
 *    cluster, without it (snapshots disabled), after the same writes.
 *
 *   npm run bench:snapshot -- [--agents 100000] [--missed 50000] [--no-baseline]
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { ProcessCluster, waitFor } from '../cluster/process-cluster.js';
import type { RegistryClient } from '../src/client/index.js';
import type { AgentSpec } from '../src/registry/types.js';

const program = new Command()
  .option('--agents <n>', 'agents registered before measuring', (v) => Number(v), 100_000)
  .option('--missed <n>', 'writes a stopped follower misses', (v) => Number(v), 50_000)
  .option('--no-baseline', 'skip the cluster without compaction');
program.parse();
const opts = program.opts<{ agents: number; missed: number; baseline: boolean }>();

/** Requests in flight while loading. */
const CONCURRENCY = 64;

const spec = (i: number): AgentSpec => ({
  id: `bench-${String(i).padStart(7, '0')}`,
  name: `agent ${i}`,
  kind: i % 3 === 0 ? 'mcp-server' : 'service',
  version: '1.0.0',
  description: 'an agent registered by the snapshot benchmark, with a description of typical length',
  capabilities: [`cap-${i % 50}`, 'search'],
  endpoints: { grpc: `10.1.${(i >> 8) & 255}.${i & 255}:50051`, http: `http://10.1.${(i >> 8) & 255}.${i & 255}:8080` },
  labels: { env: i % 2 ? 'prod' : 'staging', team: `team-${i % 20}` },
});

async function load(client: RegistryClient, from: number, to: number): Promise<number> {
  const t0 = performance.now();
  let next = from;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < to) await client.register(spec(next++));
    }),
  );
  return performance.now() - t0;
}

function dirBytes(dir: string, skip?: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    if (name === skip) continue;
    const p = join(dir, name);
    const st = statSync(p);
    total += st.isDirectory() ? dirBytes(p) : st.size;
  }
  return total;
}

const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;

async function caughtUp(cluster: ProcessCluster, id: string, index: number, timeoutMs: number): Promise<void> {
  await waitFor(`${id} to apply ${index}`, timeoutMs, async () => {
    const st = (await cluster.statuses([id]))[0];
    return st && st.appliedIndex >= index ? true : undefined;
  }, 50);
}

async function main(): Promise<void> {
  const cluster = await ProcessCluster.start(3);
  try {
    const leader = await cluster.waitForLeader();
    const client = cluster.client(cluster.ids, 60_000);
    const ms = await load(client, 0, opts.agents);
    console.log(`loaded ${opts.agents} agents in ${(ms / 1000).toFixed(1)} s (${((opts.agents / ms) * 1000).toFixed(0)} writes/s)`);
    const st = await waitFor('a snapshot', 60_000, async () => {
      const s = (await cluster.statuses([leader]))[0];
      return s && s.snapshotIndex > 0 ? s : undefined;
    });
    const leaderDir = join(cluster.dir, leader);
    const snapDir = join(leaderDir, 'snapshots');
    console.log(`snapshot: index ${st.snapshotIndex} (the state machine in the store; taking it writes only a log compaction); log now starts at ${st.firstIndex}`);
    console.log(`leader store on disk with compaction: ${mib(dirBytes(leaderDir, 'snapshots'))} LevelDB + ${mib(dirBytes(snapDir))} snapshot files`);

    // Restart time with every agent on the node.
    const node = cluster.ids.find((id) => id !== leader) as string;
    const commit = st.commitIndex;
    await cluster.kill(node, 'SIGTERM');
    const r0 = performance.now();
    cluster.startNode(node);
    await caughtUp(cluster, node, commit, 60_000);
    console.log(`restart of ${node} holding ${opts.agents} agents: serving at the leader's commit after ${(performance.now() - r0).toFixed(0)} ms`);

    // Catch-up of a follower that missed writes.
    await cluster.kill(node, 'SIGTERM');
    const up = cluster.ids.filter((id) => id !== node);
    const c2 = cluster.client(up, 60_000);
    await load(c2, opts.agents, opts.agents + opts.missed);
    const target = (await cluster.statuses([leader]))[0]?.commitIndex ?? 0;
    const c0 = performance.now();
    cluster.startNode(node);
    await caughtUp(cluster, node, target, 180_000);
    const viaSnapshot = (cluster.logs.get(node) ?? []).join('').includes('snapshot installed');
    const sent = (cluster.logs.get(leader) ?? []).join('').split('\n').filter((l) => l.includes('"snapshot sent"') && l.includes('"sizeBytes"'));
    const lastSent = sent.length > 0 ? (JSON.parse(sent[sent.length - 1] as string) as { ms: number; sizeBytes: number; index: number }) : undefined;
    console.log(`catch-up of ${node} after missing ${opts.missed} writes: ${(performance.now() - c0).toFixed(0)} ms (${viaSnapshot ? 'by InstallSnapshot' : 'from the log'})`);
    if (lastSent) console.log(`snapshot streamed by the leader: index ${lastSent.index}, ${mib(lastSent.sizeBytes)} in ${lastSent.ms} ms`);
    client.close();
    c2.close();
  } finally {
    await cluster.destroy();
  }

  if (opts.baseline) {
    const baseline = await ProcessCluster.start(3, ['--snapshot-threshold', String(1e9)]);
    try {
      const leader = await baseline.waitForLeader();
      const client = baseline.client(baseline.ids, 60_000);
      await load(client, 0, opts.agents);
      console.log(`leader store on disk without compaction (snapshots off), same ${opts.agents} writes: ${mib(dirBytes(join(baseline.dir, leader), 'snapshots'))}`);
      client.close();
    } finally {
      await baseline.destroy();
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
