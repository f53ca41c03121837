/**
 * What applying a register costs one node (never part of `npm test`): the registry state machine
 * over a fresh LevelDB store in this process, no Raft and no network, applying committed register
 * commands in batches the way the driver does (`applyEntries` into one batch, an unsynced write,
 * `commitApplied`). For two shapes of agent, it prints the LevelDB puts each agent costs, by key
 * family (records, secondary indexes, the text index's postings and counters, the event
 * history), and the CPU time per agent: the main thread's (where the apply runs) and the whole
 * process's (LevelDB's own threads, which write and compact, included).
 *
 * The shapes: `compare`, the agent `bench:compare` writes (a 512-byte description of one
 * repeated letter, no capabilities or labels), and `mcp`, the agents `bench:scale` loads
 * (`mcp-agents.ts`: ~500 bytes of real descriptions' words, 1-6 capabilities, 4 labels).
 *
 *   npm run bench:apply -- [--agents 20000] [--batch 64]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { logIndex, type Entry, type Term } from '../src/raft/index.js';
import { encodeCommand } from '../src/registry/commands.js';
import { RegistryStateMachine } from '../src/registry/state-machine.js';
import type { AgentSpec } from '../src/registry/types.js';
import { openLevelStore } from '../src/storage/level-store.js';
import type { WriteBatch } from '../src/storage/types.js';
import { AgentFactory, CAPABILITY_NAMES, loadSeedMaterial, ZIPF_EXPONENT, zipfCdf } from './mcp-agents.js';
import { BENCH_DESCRIPTION_BYTES, CLOCK_TICKS_PER_S, cpuTicks } from './support.js';

/** Default agents applied per shape. */
const DEFAULT_AGENTS = 20_000;
/** Default committed entries per apply (about what a Ready carries with 64 writers). */
const DEFAULT_BATCH = 64;
/** Agents applied before measuring, per shape (the JIT warms up, LevelDB gets a first level). */
const WARMUP_AGENTS = 2_000;
/** Seed of the MCP-shaped agents (`bench:scale`'s default, so the same agents). */
const MCP_SEED = 20250516;
/** Microseconds per second. */
const US_PER_S = 1_000_000;
/** Microseconds per millisecond. */
const US_PER_MS = 1_000;

/** Key families counted, by the prefix of the state machine key (first match wins). */
const FAMILIES: readonly (readonly [string, string])[] = [
  ['text/p/', 'text postings'],
  ['text/', 'text counters'],
  ['agent/', 'records'],
  ['idx/', 'indexes'],
  ['count/', 'counts'],
  ['ev/', 'event history'],
];
/** The family of every other key (the applied index, sessions, ...). */
const OTHER_FAMILY = 'other';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** CPU time of this process's main thread and of the whole process so far, in µs (utime + stime). */
function cpuUs(): { main: number; process: number } {
  const us = (ticks: number): number => (ticks / CLOCK_TICKS_PER_S) * US_PER_S;
  return { main: us(cpuTicks(process.pid, process.pid)), process: us(cpuTicks(process.pid)) };
}

/** The family of state machine key `key`. */
function familyOf(key: string): string {
  return FAMILIES.find(([prefix]) => key.startsWith(prefix))?.[1] ?? OTHER_FAMILY;
}

/** A batch that counts its puts and deletes by family into `counts`. */
function counting(batch: WriteBatch, counts: Map<string, number>): WriteBatch {
  const bump = (key: string): void => {
    const f = familyOf(key);
    counts.set(f, (counts.get(f) ?? 0) + 1);
  };
  return new Proxy(batch, {
    get(target, prop, receiver) {
      if (prop === 'put') return (key: string, value: Uint8Array) => (bump(key), target.put(key, value));
      if (prop === 'del') return (key: string) => (bump(key), target.del(key));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** What applying one shape cost, per agent. */
interface Result {
  readonly shape: string;
  readonly agents: number;
  /** Puts and deletes per agent, by family. */
  readonly ops: Map<string, number>;
  readonly mainUs: number;
  readonly processUs: number;
  readonly wallUs: number;
}

/** Applies `warmup + agents` registers of `make(i)` in batches of `batchSize`; measures the last `agents`. */
async function run(shape: string, make: (i: number) => AgentSpec, agents: number, batchSize: number): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-apply-'));
  const store = await openLevelStore(dir);
  try {
    const sm = new RegistryStateMachine(store);
    await sm.open();
    const total = WARMUP_AGENTS + agents;
    const ops = new Map<string, number>();
    let index = 0;
    let cpu0 = cpuUs();
    let wall0 = performance.now();
    // Batches of the warm-up end at WARMUP_AGENTS exactly, so the measured ones hold `agents`.
    for (let first = 0; first < total; ) {
      if (first === WARMUP_AGENTS) {
        ops.clear();
        cpu0 = cpuUs();
        wall0 = performance.now();
      }
      const end = Math.min(first + batchSize, first < WARMUP_AGENTS ? WARMUP_AGENTS : total);
      const entries: Entry[] = [];
      for (let i = first; i < end; i++) {
        index++;
        entries.push({ index: logIndex(index), term: 1 as Term, type: 'normal', data: encodeCommand({ type: 'register', requestId: `bench-apply-${i}`, agent: make(i) }) });
      }
      // The counting batch throughout: the state machine knows its batches by identity.
      const batch = counting(store.batch(), ops);
      await sm.applyEntries(entries, batch);
      await batch.write({ sync: false });
      sm.commitApplied(batch);
      first = end;
    }
    const cpu = cpuUs();
    const wallUs = (performance.now() - wall0) * US_PER_MS;
    const perAgent = new Map([...ops].map(([f, n]) => [f, n / agents]));
    return { shape, agents, ops: perAgent, mainUs: (cpu.main - cpu0.main) / agents, processUs: (cpu.process - cpu0.process) / agents, wallUs: wallUs / agents };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const program = new Command()
    .name('bench:apply')
    .description("What applying a register costs one node's state machine and LevelDB, per agent, for two shapes of agent.")
    .option('--agents <n>', 'agents applied and measured per shape (after a warm-up)', positiveInt, DEFAULT_AGENTS)
    .option('--batch <n>', 'committed entries per apply', positiveInt, DEFAULT_BATCH);
  program.parse();
  const opts = program.opts<{ agents: number; batch: number }>();

  const description = 'd'.repeat(BENCH_DESCRIPTION_BYTES);
  const compare = (i: number): AgentSpec => ({ id: `w-0-${i}`, name: `w-0-${i}`, kind: 'service', version: '1.0.0', description, capabilities: [], endpoints: {}, labels: {} });
  const factory = new AgentFactory(MCP_SEED, loadSeedMaterial(), zipfCdf(CAPABILITY_NAMES, ZIPF_EXPONENT), []);
  const mcp = (i: number): AgentSpec => factory.make(i);

  const results = [await run('compare', compare, opts.agents, opts.batch), await run('mcp', mcp, opts.agents, opts.batch)];
  const families = [...FAMILIES.map(([, f]) => f), OTHER_FAMILY];
  const fmt = (n: number): string => (n === 0 ? '0' : n < 10 ? n.toFixed(1) : n.toFixed(0));
  process.stdout.write(`# bench:apply, ${new Date().toISOString()}\n\n`);
  process.stdout.write(`${opts.agents} registers per shape (after ${WARMUP_AGENTS} not measured), ${opts.batch} per apply, one LevelDB store, unsynced writes; per agent:\n\n`);
  process.stdout.write(`| shape | puts and deletes | ${families.join(' | ')} | main thread CPU µs | process CPU µs | wall µs |\n`);
  process.stdout.write(`| --- | --- | ${families.map(() => '---').join(' | ')} | --- | --- | --- |\n`);
  for (const r of results) {
    const all = [...r.ops.values()].reduce((a, b) => a + b, 0);
    process.stdout.write(`| ${r.shape} | ${fmt(all)} | ${families.map((f) => fmt(r.ops.get(f) ?? 0)).join(' | ')} | ${r.mainUs.toFixed(0)} | ${r.processUs.toFixed(0)} | ${r.wallUs.toFixed(0)} |\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:apply failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
