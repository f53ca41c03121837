/**
 * Benchmarks on a real 3-node cluster on loopback (never part of `npm test`):
 *
 * 1. import of the real MCP seed list through a follower (wall time, agents/s),
 * 2. single-client register latency, sequential, through the leader and through a follower
 *    (p50/p90/p99/max, hdr-histogram-js),
 * 3. concurrent register throughput (N clients in flight, ops/s),
 * 4. failover: time from SIGKILL of the leader to the first successful write.
 *
 *   npm run bench -- [--registers 500] [--concurrency 64] [--throughput-ops 5000] [--failovers 3]
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { ProcessCluster, SEED_FILE } from '../cluster/process-cluster.js';
import type { RegistryClient } from '../src/client/index.js';
import { parseSeed } from '../src/registry/seed.js';
import type { AgentSpec } from '../src/registry/types.js';
import { latencyHistogram } from './support.js';

const program = new Command()
  .option('--registers <n>', 'sequential registers per latency run', (v) => Number(v), 500)
  .option('--concurrency <n>', 'requests in flight for the throughput run', (v) => Number(v), 64)
  .option('--throughput-ops <n>', 'registers in the throughput run', (v) => Number(v), 5000)
  .option('--failovers <n>', 'leader kills to time', (v) => Number(v), 3);
program.parse();
const opts = program.opts<{ registers: number; concurrency: number; throughputOps: number; failovers: number }>();

function spec(id: string): AgentSpec {
  return { id, name: id, kind: 'service', version: '1.0.0', description: 'benchmark agent', capabilities: ['bench', 'search'], endpoints: { grpc: '127.0.0.1:1' }, labels: { env: 'bench' } };
}

function fmt(h: hdr.Histogram): string {
  const ms = (us: number) => (us / 1000).toFixed(2);
  return `p50 ${ms(h.getValueAtPercentile(50))} ms, p90 ${ms(h.getValueAtPercentile(90))} ms, p99 ${ms(h.getValueAtPercentile(99))} ms, max ${ms(h.maxValue)} ms (n=${h.totalCount})`;
}

async function latency(client: RegistryClient, n: number, prefix: string): Promise<hdr.Histogram> {
  const h = latencyHistogram();
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await client.register(spec(`${prefix}-${i}`));
    h.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
  }
  return h;
}

async function throughput(client: RegistryClient, total: number, concurrency: number): Promise<{ opsPerSec: number; h: hdr.Histogram }> {
  const h = latencyHistogram();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const s = process.hrtime.bigint();
        await client.register(spec(`tp-${i}`));
        h.recordValue(Number((process.hrtime.bigint() - s) / 1000n));
      }
    }),
  );
  return { opsPerSec: (total / (performance.now() - t0)) * 1000, h };
}

async function main(): Promise<void> {
  const cluster = await ProcessCluster.start(3);
  try {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    console.log(`cluster of 3 on loopback, leader ${leader}`);

    // 1. Import the real data set through a follower.
    const seed = parseSeed(JSON.parse(readFileSync(SEED_FILE, 'utf8')));
    const viaFollower = cluster.client([follower]);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < seed.agents.length) await viaFollower.register(seed.agents[next++] as AgentSpec);
      }),
    );
    const importMs = performance.now() - t0;
    console.log(`import: ${seed.agents.length} agents through follower ${follower} in ${importMs.toFixed(0)} ms (${((seed.agents.length / importMs) * 1000).toFixed(0)} agents/s, 32 in flight)`);

    // 2. Sequential single-client latency.
    const viaLeader = cluster.client([leader]);
    await latency(viaLeader, 50, 'warm');
    console.log(`register latency via leader:   ${fmt(await latency(viaLeader, opts.registers, 'lat-l'))}`);
    console.log(`register latency via follower: ${fmt(await latency(viaFollower, opts.registers, 'lat-f'))}`);
    const getH = hdr.build();
    for (let i = 0; i < opts.registers; i++) {
      const s = process.hrtime.bigint();
      await viaFollower.get(`lat-l-${i}`);
      getH.recordValue(Number((process.hrtime.bigint() - s) / 1000n));
    }
    console.log(`linearizable get latency via follower: ${fmt(getH)}`);

    // 3. Throughput with many requests in flight.
    const tp = await throughput(viaLeader, opts.throughputOps, opts.concurrency);
    console.log(`register throughput via leader: ${tp.opsPerSec.toFixed(0)} ops/s with ${opts.concurrency} in flight; latency ${fmt(tp.h)}`);
    viaLeader.close();
    viaFollower.close();

    // 4. Failover: SIGKILL the leader, time to the first successful write.
    for (let k = 0; k < opts.failovers; k++) {
      const cur = await cluster.waitForLeader();
      const rest = cluster.ids.filter((id) => id !== cur);
      const client = cluster.client(rest, 500);
      const killedAt = performance.now();
      await cluster.kill(cur, 'SIGKILL');
      let attempts = 0;
      for (;;) {
        attempts++;
        try {
          await client.register(spec(`failover-${k}`));
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      const ms = performance.now() - killedAt;
      console.log(`failover ${k + 1}: leader ${cur} SIGKILLed, first successful write after ${ms.toFixed(0)} ms (${attempts} attempts)`);
      client.close();
      cluster.startNode(cur);
      await cluster.waitForLeader();
    }
  } finally {
    await cluster.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
