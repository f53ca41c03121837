/**
 * What transport security and token checks cost, in one sitting: four real 3-node clusters on
 * loopback at once — plaintext, `--auth on`, TLS (mutual on the gRPC port), TLS and auth — and
 * sequential (one request in flight) linearizable Get and Register through each leader over the
 * gRPC client, in alternating rounds so every configuration sees the same machine. Prints p50 /
 * p99 of each and the difference from plaintext as a markdown table. Rate limits are off in
 * every configuration (they are measured by their own test, not here).
 *
 *   npm run bench:security -- [--ops 1000] [--rounds 4] [--warmup 200]
 */
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { ProcessCluster } from '../cluster/process-cluster.js';
import { RegistryClient } from '../src/client/index.js';
import { benchSpec, latencyHistogram } from './support.js';

const program = new Command()
  .option('--ops <n>', 'requests per call, configuration and round', (v) => Number(v), 1000)
  .option('--rounds <n>', 'alternating rounds', (v) => Number(v), 4)
  .option('--warmup <n>', 'requests before measuring, per call and configuration', (v) => Number(v), 200);
program.parse();
const opts = program.opts<{ ops: number; rounds: number; warmup: number }>();

/** One configuration under test. */
interface Setup {
  readonly name: string;
  readonly tls: boolean;
  readonly auth: boolean;
  cluster?: ProcessCluster;
  client?: RegistryClient;
}


/** Starts `s`'s cluster and a client on its leader: with auth, a writer token for `io.bench`. */
async function start(s: Setup): Promise<void> {
  const cluster = await ProcessCluster.start(3, ['--rate-limits', 'off', ...(s.auth ? ['--auth', 'on'] : [])], { tls: s.tls });
  s.cluster = cluster;
  const leader = await cluster.waitForLeader();
  const tls = cluster.clientTls();
  let token: string | undefined;
  if (s.auth) {
    const admin = await cluster.adminToken(leader);
    const adminClient = new RegistryClient({ endpoints: cluster.endpoints([leader]), token: admin, ...(tls ? { tls } : {}) });
    token = (await adminClient.createToken({ role: 'writer', namespaces: ['io.bench'], name: 'bench' })).token;
    adminClient.close();
  }
  s.client = new RegistryClient({ endpoints: cluster.endpoints([leader]), ...(token ? { token } : {}), ...(tls ? { tls } : {}) });
  await s.client.register(benchSpec('io.bench/get-target'));
}

async function main(): Promise<void> {
  const setups: Setup[] = [
    { name: 'plaintext', tls: false, auth: false },
    { name: 'tokens', tls: false, auth: true },
    { name: 'TLS', tls: true, auth: false },
    { name: 'TLS + tokens', tls: true, auth: true },
  ];
  try {
    for (const s of setups) await start(s);
    const results = new Map<string, hdr.Histogram>();
    let n = 0;
    const calls: Record<string, (c: RegistryClient) => Promise<unknown>> = {
      get: (c) => c.get('io.bench/get-target'),
      register: (c) => c.register(benchSpec(`io.bench/r-${n++}`)),
    };
    for (const [call, f] of Object.entries(calls)) {
      for (const s of setups) for (let i = 0; i < opts.warmup; i++) await f(s.client as RegistryClient);
      for (let round = 0; round < opts.rounds; round++) {
        for (const s of setups) {
          const key = `${call} ${s.name}`;
          const h = results.get(key) ?? latencyHistogram();
          results.set(key, h);
          for (let i = 0; i < opts.ops; i++) {
            const t0 = process.hrtime.bigint();
            await f(s.client as RegistryClient);
            h.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
          }
        }
      }
    }
    const ms = (us: number) => (us / 1000).toFixed(3);
    console.log(`\n${opts.rounds} alternating rounds of ${opts.ops} sequential requests per call and configuration, gRPC client to the leader of 3 nodes on loopback, ${new Date().toISOString()}\n`);
    console.log(`| call | ${setups.map((s) => `${s.name} p50 / p99 ms`).join(' | ')} |`);
    console.log(`| --- |${setups.map(() => ' --- |').join('')}`);
    for (const call of Object.keys(calls)) {
      const base = results.get(`${call} plaintext`) as hdr.Histogram;
      const cells = setups.map((s) => {
        const h = results.get(`${call} ${s.name}`) as hdr.Histogram;
        const p50 = h.getValueAtPercentile(50);
        const p99 = h.getValueAtPercentile(99);
        const signed = (us: number) => `${us >= 0 ? '+' : ''}${ms(us)}`;
        const delta = s.name === 'plaintext' ? '' : ` (${signed(p50 - base.getValueAtPercentile(50))} / ${signed(p99 - base.getValueAtPercentile(99))})`;
        return `${ms(p50)} / ${ms(p99)}${delta}`;
      });
      console.log(`| ${call} | ${cells.join(' | ')} |`);
    }
  } finally {
    for (const s of setups) s.client?.close();
    await Promise.all(setups.map((s) => s.cluster?.destroy()));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
