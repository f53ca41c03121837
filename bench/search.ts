/**
 * Keyword search benchmark (never part of `npm test`): loads 10,000 and then 100,000 agents
 * into a {@link RegistryStateMachine} over a real LevelDB store in a temporary directory,
 * **in-process and bypassing Raft** (commands are applied straight into the state machine in
 * batches of {@link LOAD_BATCH}, each written synced like a node's Ready), then prints for a few
 * queries the search latency (p50/p99/max over {@link QUERIES_PER_CASE} runs, first page of 10,
 * measured with hdr-histogram-js) and the text index's size per agent (bytes of the `text/` and
 * `count/` keys and values, divided by the agents).
 *
 * The agents are shaped like the real MCP registry data: ids `<seed name>-<n>` (the reverse-DNS
 * names of `data/mcp-registry-seed-2025-05-16.json`, e.g. `io.github.apache/iotdb-mcp-server-42`),
 * the seed's description padded to ~300 bytes with words drawn from all seed descriptions, the
 * seed's capabilities plus 0-3 `tool:<word>` ones. A seeded PRNG makes every run load the same.
 *
 *   npm run bench:search -- [--sizes 10000,100000] [--queries 200]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SEED_FILE } from '../cluster/process-cluster.js';
import { seededRandom } from '../src/raft/rand.js';
import { logIndex, term, type Entry } from '../src/raft/types.js';
import { encodeCommand } from '../src/registry/commands.js';
import { parseSeed } from '../src/registry/seed.js';
import { RegistryStateMachine } from '../src/registry/state-machine.js';
import { tokenize } from '../src/registry/text-index.js';
import type { AgentSpec, SearchQuery } from '../src/registry/types.js';
import { openLevelStore } from '../src/storage/level-store.js';
import { latencyHistogram } from './support.js';

/** Agents per applied (and synced) batch while loading. */
const LOAD_BATCH = 1000;
/** Measured runs per query case (after {@link WARMUP_RUNS}). */
const QUERIES_PER_CASE = 200;
/** Unmeasured runs per case first. */
const WARMUP_RUNS = 50;
/** Target description length in bytes. */
const DESCRIPTION_BYTES = 300;
/** Results per search page. */
const PAGE_SIZE = 10;
/** PRNG seed. */
const SEED = 20250516;
/** Microseconds per millisecond (the histogram records microseconds). */
const US_PER_MS = 1000;

const CASES: { label: string; query: SearchQuery }[] = [
  { label: 'database', query: { query: 'database' } },
  { label: 'postgres', query: { query: 'postgres' } },
  { label: 'iotdb', query: { query: 'iotdb' } },
  { label: 'mcp server (very common words)', query: { query: 'mcp server' } },
  { label: 'github file search', query: { query: 'github file search' } },
  { label: 'time series database', query: { query: 'time series database' } },
  { label: 'database + capability npm', query: { query: 'database', capability: 'npm' } },
  { label: 'database + capability_prefix tool:', query: { query: 'database', capabilityPrefix: 'tool:' } },
];

function args(): { sizes: number[]; queries: number } {
  const argv = process.argv.slice(2);
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return { sizes: (get('--sizes') ?? '10000,100000').split(',').map(Number), queries: Number(get('--queries') ?? QUERIES_PER_CASE) };
}

async function main(): Promise<void> {
  const { sizes, queries } = args();
  const seed = parseSeed(JSON.parse(await readFile(SEED_FILE, 'utf8'))).agents;
  const vocabulary = [...new Set(seed.flatMap((a) => tokenize(a.description)))];
  const rand = seededRandom(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const makeAgent = (n: number): AgentSpec => {
    const base = seed[n % seed.length] as AgentSpec;
    let description = base.description;
    while (Buffer.byteLength(description) < DESCRIPTION_BYTES) description += ` ${pick(vocabulary)}`;
    const tools = Array.from({ length: Math.floor(rand() * 4) }, () => `tool:${pick(vocabulary)}`);
    const id = `${base.name}-${n}`;
    return { ...base, id, name: id, description, capabilities: [...new Set([...base.capabilities, ...tools])] };
  };

  const dir = await mkdtemp(join(tmpdir(), 'bench-search-'));
  const store = await openLevelStore(join(dir, 'data'));
  const sm = new RegistryStateMachine(store);
  await sm.open();
  let loaded = 0;
  let index = 0;
  console.log('# Search benchmark: in-process state machine on LevelDB, loaded bypassing Raft\n');
  console.log(`node ${process.version}, first page of ${PAGE_SIZE}, ${queries} runs per query after ${WARMUP_RUNS} warm-up runs\n`);
  try {
    for (const size of sizes) {
      const started = performance.now();
      while (loaded < size) {
        const n = Math.min(LOAD_BATCH, size - loaded);
        const entries: Entry[] = [];
        for (let i = 0; i < n; i++) {
          index++;
          entries.push({ index: logIndex(index), term: term(1), type: 'normal', data: encodeCommand({ type: 'register', requestId: `b${index}`, agent: makeAgent(loaded + i) }) });
        }
        const batch = store.batch();
        await sm.applyEntries(entries, batch);
        await batch.write();
        sm.commitApplied(batch);
        loaded += n;
      }
      const loadS = (performance.now() - started) / 1000;
      let indexBytes = 0;
      let indexKeys = 0;
      for (const [gte, lt] of [['text/', 'text0'], ['count/', 'count0']] as const) {
        for await (const [k, v] of store.kv.range(gte, lt)) {
          indexBytes += Buffer.byteLength(k) + v.length;
          indexKeys++;
        }
      }
      console.log(`## ${size.toLocaleString('en-US')} agents\n`);
      console.log(`loaded in ${loadS.toFixed(1)} s; text index + capability counts: ${indexKeys.toLocaleString('en-US')} keys, ${(indexBytes / 1e6).toFixed(1)} MB, **${Math.round(indexBytes / size)} bytes per agent**\n`);
      console.log('| query | matches on page 1 | p50 ms | p99 ms | max ms |');
      console.log('|---|---:|---:|---:|---:|');
      for (const c of CASES) {
        const h = latencyHistogram();
        let results = 0;
        for (let i = 0; i < WARMUP_RUNS + queries; i++) {
          const t0 = performance.now();
          const page = await sm.search({ ...c.query, pageSize: PAGE_SIZE });
          const us = (performance.now() - t0) * US_PER_MS;
          if (i >= WARMUP_RUNS) h.recordValue(Math.max(1, Math.round(us)));
          results = page.results.length;
        }
        const ms = (p: number): string => (h.getValueAtPercentile(p) / US_PER_MS).toFixed(2);
        console.log(`| ${c.label} | ${results} | ${ms(50)} | ${ms(99)} | ${(h.maxValue / US_PER_MS).toFixed(2)} |`);
        h.destroy();
      }
      console.log('');
    }
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
