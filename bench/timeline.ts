/**
 * The timeline of one write, for a single client writing sequentially to the leader of a real
 * 3-node cluster on loopback: where the time between the client's send and its answer goes.
 * The nodes run with `--timeline` (a log line per stage of every entry, wall-clock stamped; one
 * clock for every process of this host), and each write is matched to its entry by the revision
 * it was answered with (the entry's log index).
 *
 *   npm run bench:timeline -- [--writes 300] [--warmup 50]
 *
 * Prints the median and p90 of each stage, in ms after the client sent the request.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Command } from 'commander';
import { ProcessCluster } from '../cluster/process-cluster.js';
import type { AgentSpec } from '../src/registry/types.js';

/** Bytes of each written agent's description. */
const DESCRIPTION_BYTES = 512;

const program = new Command()
  .option('--writes <n>', 'sequential writes measured', (v) => Number(v), 300)
  .option('--warmup <n>', 'writes before measuring', (v) => Number(v), 50);
program.parse();
const opts = program.opts<{ writes: number; warmup: number }>();

/** One timeline line of a node. */
interface Stage {
  readonly node: string;
  readonly t: number;
  readonly stage: string;
  readonly first?: number;
  readonly last?: number;
  readonly match?: number;
  readonly peer?: string;
  readonly early?: boolean;
}

function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Collects the timeline lines a node process writes to stderr (pino JSON). */
function collect(id: string, proc: ChildProcess, into: Stage[]): void {
  if (!proc.stderr) return;
  createInterface({ input: proc.stderr }).on('line', (line) => {
    if (!line.includes('"timeline"')) return;
    try {
      const j = JSON.parse(line) as Stage & { component?: string };
      if (j.component === 'timeline') into.push({ ...j, node: id });
    } catch {
      // Not a JSON line: ignore.
    }
  });
}

const spec = (i: number): AgentSpec => ({
  id: `timeline-${i}`,
  name: `timeline ${i}`,
  kind: 'service',
  version: '1.0.0',
  description: 'x'.repeat(DESCRIPTION_BYTES),
  capabilities: [],
  endpoints: {},
  labels: {},
});

/** The median and 90th percentile of `xs`, in ms to 2 decimals. */
function pct(xs: number[]): string {
  if (xs.length === 0) return '—';
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => (s[Math.min(s.length - 1, Math.floor(p * s.length))] as number).toFixed(2);
  return `${at(0.5)} | ${at(0.9)}`;
}

async function main(): Promise<void> {
  const cluster = await ProcessCluster.start(3, ['--timeline']);
  const stages: Stage[] = [];
  try {
    for (const [id, proc] of cluster.procs) collect(id, proc, stages);
    const leader = await cluster.waitForLeader();
    const followers = cluster.ids.filter((id) => id !== leader);
    const client = cluster.client([leader], 10_000);
    for (let i = 0; i < opts.warmup; i++) await client.register(spec(-1 - i));
    const writes: { sent: number; answered: number; index: number }[] = [];
    for (let i = 0; i < opts.writes; i++) {
      const sent = wallMs();
      const r = await client.register(spec(i));
      writes.push({ sent, answered: wallMs(), index: r.revision });
    }
    client.close();
    // Let the last lines arrive.
    await new Promise((r) => setTimeout(r, 500));
    const covers = (s: Stage, index: number) => s.first !== undefined && s.last !== undefined && s.first <= index && index <= s.last;
    const firstAt = (pred: (s: Stage) => boolean): number | undefined => {
      let best: number | undefined;
      for (const s of stages) if (pred(s) && (best === undefined || s.t < best)) best = s.t;
      return best;
    };
    const rows: [string, (w: { sent: number; index: number }) => number | undefined][] = [
      ['leader: proposed (appended to its log)', (w) => firstAt((s) => s.node === leader && s.stage === 'proposed' && covers(s, w.index))],
      ['leader: AppendEntries handed to the transport', (w) => firstAt((s) => s.node === leader && s.stage === 'sent' && covers(s, w.index))],
      ['follower: AppendEntries received (first follower)', (w) => firstAt((s) => followers.includes(s.node) && s.stage === 'received' && covers(s, w.index))],
      ['leader: own append durable (fsync)', (w) => firstAt((s) => s.node === leader && s.stage === 'durable' && covers(s, w.index))],
      ['follower: append durable (first follower)', (w) => firstAt((s) => followers.includes(s.node) && s.stage === 'durable' && covers(s, w.index))],
      ['leader: acknowledgement received (first: the commit quorum)', (w) => firstAt((s) => s.node === leader && s.stage === 'acked' && (s.match ?? 0) >= w.index)],
      ['leader: applied (answer ready)', (w) => firstAt((s) => s.node === leader && s.stage === 'applied' && covers(s, w.index))],
    ];
    console.log(`\n${opts.writes} sequential writes of ${DESCRIPTION_BYTES}-byte agents to the leader (${leader}), 3 nodes on loopback, ${new Date().toISOString()}\n`);
    console.log('| stage | median ms after send | p90 ms |');
    console.log('| --- | --- | --- |');
    for (const [name, at] of rows) {
      const xs = writes.flatMap((w) => {
        const t = at(w);
        return t === undefined ? [] : [t - w.sent];
      });
      console.log(`| ${name} | ${pct(xs)} |`);
    }
    console.log(`| client: answer received | ${pct(writes.map((w) => w.answered - w.sent))} |`);
  } finally {
    await cluster.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
