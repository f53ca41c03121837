/**
 * The HTTP/JSON front end's overhead against gRPC, in one sitting on one real 3-node cluster on
 * loopback: sequential (one request in flight) Get and Register through the leader, over the
 * gRPC client (`RegistryClient`) and over HTTP (`fetch` with keep-alive), alternating rounds so
 * both see the same machine; p50/p99 of each, and the difference.
 *
 *   npm run bench:http -- [--ops 2000] [--rounds 4] [--warmup 200]
 */
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { ProcessCluster } from '../cluster/process-cluster.js';
import type { RegistryClient } from '../src/client/index.js';
import { benchSpec, latencyHistogram } from './support.js';

const program = new Command()
  .option('--ops <n>', 'requests per call, front end and round', (v) => Number(v), 2000)
  .option('--rounds <n>', 'alternating rounds per front end', (v) => Number(v), 4)
  .option('--warmup <n>', 'requests before measuring, per front end', (v) => Number(v), 200);
program.parse();
const opts = program.opts<{ ops: number; rounds: number; warmup: number }>();

async function time(h: hdr.Histogram | undefined, f: () => Promise<void>): Promise<void> {
  const t0 = process.hrtime.bigint();
  await f();
  h?.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
}

type Call = (i: number) => Promise<void>;

async function main(): Promise<void> {
  const cluster = await ProcessCluster.start(3);
  try {
    const leader = await cluster.waitForLeader();
    const client: RegistryClient = cluster.client([leader]);
    const base = cluster.httpUrl(leader);
    await client.register(benchSpec('bench/get-target'));

    const grpcCalls: Record<string, Call> = {
      get: async () => {
        await client.get('bench/get-target');
      },
      register: async (i) => {
        await client.register(benchSpec(`bench/grpc-${i}`));
      },
    };
    const httpCalls: Record<string, Call> = {
      get: async () => {
        const r = await fetch(`${base}/v1/agents/bench/get-target`);
        if (r.status !== 200) throw new Error(`GET answered ${r.status}`);
        await r.arrayBuffer();
      },
      register: async (i) => {
        const r = await fetch(`${base}/v1/agents`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: benchSpec(`bench/http-${i}`) }) });
        if (r.status !== 200) throw new Error(`POST answered ${r.status}: ${await r.text()}`);
        await r.arrayBuffer();
      },
    };
    const results = new Map<string, hdr.Histogram>();
    let n = 0;
    for (const call of ['get', 'register']) {
      for (const calls of [grpcCalls, httpCalls]) {
        for (let i = 0; i < opts.warmup; i++) await (calls[call] as Call)(n++);
      }
      for (let round = 0; round < opts.rounds; round++) {
        for (const [api, calls] of [['grpc', grpcCalls], ['http', httpCalls]] as const) {
          const key = `${call} ${api}`;
          const h = results.get(key) ?? latencyHistogram();
          results.set(key, h);
          for (let i = 0; i < opts.ops; i++) await time(h, () => (calls[call] as Call)(n++));
        }
      }
    }
    const ms = (us: number) => (us / 1000).toFixed(3);
    console.log(`\n${opts.rounds} alternating rounds of ${opts.ops} sequential requests per call and front end, to the leader of 3 nodes on loopback, ${new Date().toISOString()}\n`);
    console.log('| call | gRPC p50 / p99 ms | HTTP/JSON p50 / p99 ms | HTTP − gRPC at p50 / p99 |');
    console.log('| --- | --- | --- | --- |');
    for (const call of ['get', 'register']) {
      const g = results.get(`${call} grpc`) as hdr.Histogram;
      const h = results.get(`${call} http`) as hdr.Histogram;
      const d = (p: number) => ms(h.getValueAtPercentile(p) - g.getValueAtPercentile(p));
      console.log(`| ${call} | ${ms(g.getValueAtPercentile(50))} / ${ms(g.getValueAtPercentile(99))} | ${ms(h.getValueAtPercentile(50))} / ${ms(h.getValueAtPercentile(99))} | ${d(50)} / ${d(99)} |`);
    }
    client.close();
  } finally {
    await cluster.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
