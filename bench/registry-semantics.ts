/**
 * Figures of the registry semantics on a real 3-node cluster on loopback:
 *
 * 1. lease expiry precision: an agent with a 5 s lease heartbeats once and stops; the time from
 *    its last renewal to the DELETE (expired) on a follower's watch, against the TTL,
 * 2. watch latency on a follower: from a write's acknowledgement by the leader to the event's
 *    delivery on a watch served by a follower (p50/p99),
 * 3. linearizable read throughput (Get, 64 in flight) through a follower and through the leader.
 *
 *   npm run bench:semantics -- [--expiries 5] [--events 2000] [--reads-ms 5000]
 */
import { Command } from 'commander';
import { ProcessCluster } from '../cluster/process-cluster.js';
import type { RegistryClient } from '../src/client/index.js';
import type { AgentSpec } from '../src/registry/types.js';
import { latencyHistogram } from './support.js';

const program = new Command()
  .option('--expiries <n>', 'lease expiries to time', (v) => Number(v), 5)
  .option('--events <n>', 'watch events to time', (v) => Number(v), 2000)
  .option('--reads-ms <ms>', 'duration of each read throughput run', (v) => Number(v), 5000);
program.parse();
const opts = program.opts<{ expiries: number; events: number; readsMs: number }>();

const TTL_SECONDS = 5;
const spec = (id: string): AgentSpec => ({ id, name: id, kind: 'service', version: '1', description: '', capabilities: ['bench'], endpoints: {}, labels: {} });
const ms = (us: number) => (us / 1000).toFixed(2);

async function readThroughput(client: RegistryClient, durationMs: number): Promise<number> {
  const until = performance.now() + durationMs;
  let n = 0;
  await Promise.all(
    Array.from({ length: 64 }, async (_, i) => {
      while (performance.now() < until) {
        await client.get(`r-${i % 16}`);
        n++;
      }
    }),
  );
  return (n / durationMs) * 1000;
}

async function main(): Promise<void> {
  const cluster = await ProcessCluster.start(3);
  try {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const onLeader = cluster.client([leader]);
    const onFollower = cluster.client([follower]);

    // 1. Lease expiry precision.
    for (let k = 0; k < opts.expiries; k++) {
      const id = `lease-${k}`;
      const reg = await onLeader.register(spec(id), { ttlSeconds: TTL_SECONDS });
      const ac = new AbortController();
      const deleted = (async () => {
        for await (const e of onFollower.watch({ idPrefix: id }, reg.revision + 1, ac.signal)) {
          if (e.type === 'delete') return { at: performance.now(), expired: e.expired };
        }
        return undefined;
      })();
      await onLeader.heartbeat(id);
      const renewedAt = performance.now();
      const d = await deleted;
      ac.abort();
      if (!d) throw new Error('no deletion seen');
      const observed = d.at - renewedAt;
      console.log(`lease ${k + 1}: ttl ${TTL_SECONDS * 1000} ms, deleted (expired=${d.expired}) on follower ${follower}'s watch ${observed.toFixed(0)} ms after the last renewal (+${(observed - TTL_SECONDS * 1000).toFixed(0)} ms)`);
    }

    // 2. Watch latency on a follower.
    const h = latencyHistogram();
    const acked = new Map<number, number>();
    const ac = new AbortController();
    let seen = 0;
    const start = (await onLeader.status(cluster.addresses.get(leader))).appliedIndex + 1;
    const watching = (async () => {
      for await (const e of onFollower.watch({ idPrefix: 'ev-' }, start, ac.signal)) {
        const t = performance.now();
        const a = acked.get(e.revision);
        if (a !== undefined) h.recordValue(Math.max(1, Math.round((t - a) * 1000)));
        else acked.set(e.revision, -t); // event before the ack: latency recorded as ~0 below
        if (++seen >= opts.events) return;
      }
    })();
    for (let i = 0; i < opts.events; i++) {
      const r = await onLeader.register(spec(`ev-${i}`));
      const pre = acked.get(r.revision);
      if (pre !== undefined && pre < 0) h.recordValue(1);
      else acked.set(r.revision, performance.now());
    }
    await watching;
    ac.abort();
    console.log(`watch delivery on follower after the leader's acknowledgement: p50 ${ms(h.getValueAtPercentile(50))} ms, p99 ${ms(h.getValueAtPercentile(99))} ms, max ${ms(h.maxValue)} ms (n=${h.totalCount})`);

    // 3. Linearizable read throughput.
    for (let i = 0; i < 16; i++) await onLeader.register(spec(`r-${i}`));
    const viaFollower = await readThroughput(onFollower, opts.readsMs);
    const viaLeader = await readThroughput(onLeader, opts.readsMs);
    console.log(`linearizable Get throughput, 64 in flight: via follower ${viaFollower.toFixed(0)} reads/s, via leader ${viaLeader.toFixed(0)} reads/s`);
    onLeader.close();
    onFollower.close();
  } finally {
    await cluster.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
