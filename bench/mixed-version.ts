/**
 * A rolling upgrade's snapshot, checked with real processes (never part of `npm test`): a 3-node
 * cluster of this build, with small snapshot settings; one follower is stopped, misses more than
 * a snapshot's worth of writes, and restarts on the build in `--other` (a checkout of another
 * commit with its `dist/` built), so it catches up by InstallSnapshot across versions. Prints the
 * format the leader sent and whether the follower installed it or stopped.
 *
 *   npm run bench:mixed-version -- --other /path/to/other/checkout [--writes 1000]
 *
 * With `--other-leads`, the roles swap: the cluster is of the other build and the restarted
 * follower runs this one (an old leader, a new follower).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import type { ProcessCluster as ProcessClusterType } from '../cluster/process-cluster.js';
import type { AgentSpec } from '../src/registry/types.js';
import { REGISTRY_NODE_V8_FLAGS } from '../src/cli/node-flags.js';

/** Applied entries between snapshots, and entries kept behind one: small, so a few writes need a snapshot. */
const SNAPSHOT_ARGS = ['--snapshot-threshold', '200', '--snapshot-tail', '50'];
/** Longest wait for the restarted follower to install a snapshot or stop, in ms. */
const OUTCOME_TIMEOUT_MS = 60_000;
/** Polling interval of that wait, in ms. */
const POLL_MS = 200;

const program = new Command()
  .requiredOption('--other <dir>', 'a checkout of another commit, with dist/ built (npx tsc -p tsconfig.json)')
  .option('--writes <n>', 'writes the stopped follower misses', (v) => Number(v), 1000)
  .option('--other-leads', 'run the cluster on the other build and the restarted follower on this one');
program.parse();
const opts = program.opts<{ other: string; writes: number; otherLeads?: boolean }>();

const here = resolve(import.meta.dirname, '..', '..');
const other = resolve(opts.other);
const clusterRoot = opts.otherLeads ? other : here;
const followerRoot = opts.otherLeads ? here : other;

const spec = (i: number): AgentSpec => ({
  id: `upgrade-${i}`,
  name: `upgrade ${i}`,
  kind: 'service',
  version: '1.0.0',
  description: 'written while a follower of another version was down',
  capabilities: [],
  endpoints: {},
  labels: {},
});

/** The JSON log lines of `lines` whose message matches `re`. */
function logged(lines: readonly string[], re: RegExp): Record<string, unknown>[] {
  return lines
    .join('')
    .split('\n')
    .flatMap((l) => {
      try {
        const j = JSON.parse(l) as Record<string, unknown>;
        return re.test(String(j['msg'])) ? [j] : [];
      } catch {
        return [];
      }
    });
}

async function main(): Promise<void> {
  for (const root of [clusterRoot, followerRoot]) {
    if (!existsSync(join(root, 'dist', 'src', 'cli', 'registry-node.js'))) throw new Error(`${root} has no dist/src/cli/registry-node.js: build it first`);
  }
  const { ProcessCluster } = (await import(join(clusterRoot, 'dist', 'cluster', 'process-cluster.js'))) as { ProcessCluster: typeof ProcessClusterType };
  const cluster = await ProcessCluster.start(3, SNAPSHOT_ARGS);
  let follower: ChildProcess | undefined;
  try {
    const leader = await cluster.waitForLeader();
    const lagging = cluster.ids.find((id) => id !== leader) as string;
    await cluster.kill(lagging, 'SIGTERM');
    const client = cluster.client([leader], 10_000);
    for (let i = 0; i < opts.writes; i++) await client.register(spec(i));
    client.close();
    const peers = [...cluster.addresses].map(([id, a]) => `${id}=${a}`).join(',');
    follower = spawn(
      process.execPath,
      [...REGISTRY_NODE_V8_FLAGS, join(followerRoot, 'dist', 'src', 'cli', 'registry-node.js'), '--id', lagging, '--listen', cluster.addresses.get(lagging) as string, '--peers', peers, '--data-dir', join(cluster.dir, lagging), '--http-listen', cluster.httpAddresses.get(lagging) as string, ...SNAPSHOT_ARGS],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } },
    );
    const lines: string[] = [];
    follower.stdout?.on('data', (d: Buffer) => lines.push(d.toString()));
    follower.stderr?.on('data', (d: Buffer) => lines.push(d.toString()));
    let exit: string | undefined;
    follower.on('exit', (code, signal) => (exit = `exited (code ${String(code)}${signal ? `, ${signal}` : ''})`));
    const started = Date.now();
    while (exit === undefined && logged(lines, /^snapshot installed$/).length === 0 && Date.now() - started < OUTCOME_TIMEOUT_MS) {
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const sent = logged(cluster.logs.get(leader) ?? [], /^snapshot sent$/);
    const installed = logged(lines, /^snapshot installed$/);
    const failures = logged(lines, /fatal|refusing a snapshot payload/);
    console.log(`cluster: ${clusterRoot} (leader ${leader}); restarted follower ${lagging}: ${followerRoot}`);
    for (const s of sent) console.log(`leader sent a snapshot: index ${String(s['index'])}, format ${String(s['format'] ?? '(not logged: a build before the advertisement)')}, ${String(s['sizeBytes'])} bytes`);
    for (const s of installed) console.log(`follower installed it: index ${String(s['index'])}, ${String(s['sizeBytes'])} bytes, ${String(s['ms'])} ms`);
    for (const f of failures) console.log(`follower: ${String(f['msg'])}: ${JSON.stringify(f['err'] ?? '').slice(0, 200)}`);
    console.log(`follower ${exit ?? (installed.length > 0 ? 'still running' : `neither installed nor stopped within ${OUTCOME_TIMEOUT_MS} ms`)}`);
  } finally {
    follower?.kill('SIGKILL');
    await cluster.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
