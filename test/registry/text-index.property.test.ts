/**
 * Model-based property test of the text index and the capability counts: random sequences of
 * register (create and replace), deregister, setHealth and expire, applied in random batches
 * (several `applyEntries` calls per batch, batches staged before earlier ones are committed),
 * with restarts (the store reopened) and, at the end, a snapshot install into a fresh store.
 * After each, the `text/` and `count/` keys are exactly those a model recomputes from the
 * records (postings with their impacts and values, document frequencies, totals, capability
 * counts), and every search (random words and filters, paged with small pages) returns exactly
 * the ranking the model computes with BM25 from the records.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { encodeCommand, registryPackr } from '../../src/registry/commands.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import { decodePosting, tokenize } from '../../src/registry/text-index.js';
import type { Agent, AgentSpec, Command, Health, SearchQuery } from '../../src/registry/types.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { NodeStore } from '../../src/storage/types.js';
import { HARNESSES } from '../storage/harnesses.js';

const IDS = ['a', 'b', 'c', 'd', 'io.x/e', 'f@1'];
const WORDS = ['db', 'DB', 'sql', 'mcp', 'server', 'data', 'io.github.x/db-tool', 'Query_engine', 'time-series'];
const CAPABILITIES = ['tool:query', 'tool:db', 'tag:database', 'npm', 'sql'];
const KINDS = ['mcp-server', 'service'];
const HEALTHS: Health[] = ['unspecified', 'serving', 'degraded'];

const arbText = fc.array(fc.constantFrom(...WORDS), { maxLength: 5 }).map((w) => w.join(' '));
const arbSpec: fc.Arbitrary<AgentSpec> = fc.record({
  id: fc.constantFrom(...IDS),
  name: fc.array(fc.constantFrom(...WORDS), { minLength: 1, maxLength: 2 }).map((w) => w.join('-')),
  kind: fc.constantFrom(...KINDS),
  version: fc.constant('1.0.0'),
  description: arbText,
  capabilities: fc.uniqueArray(fc.constantFrom(...CAPABILITIES), { maxLength: 3 }),
  endpoints: fc.constant({}),
  labels: fc.constant({}),
});

type Step =
  | { kind: 'register'; agent: AgentSpec; ttlSeconds: number }
  | { kind: 'deregister'; id: string }
  | { kind: 'setHealth'; id: string; health: Health }
  | { kind: 'expire'; id: string };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('register' as const), agent: arbSpec, ttlSeconds: fc.constantFrom(0, 60) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('deregister' as const), id: fc.constantFrom(...IDS) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('setHealth' as const), id: fc.constantFrom(...IDS), health: fc.constantFrom(...HEALTHS) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const), id: fc.constantFrom(...IDS) }) },
);

const arbQuery: fc.Arbitrary<SearchQuery> = fc.record(
  {
    query: fc.array(fc.constantFrom(...WORDS, 'absent'), { minLength: 1, maxLength: 3 }).map((w) => w.join(' ')),
    capability: fc.constantFrom('', ...CAPABILITIES),
    capabilityPrefix: fc.constantFrom('', 'tool:', 't'),
    kind: fc.constantFrom('', ...KINDS),
    health: fc.constantFrom<Health>('unspecified', 'serving'),
    namePrefix: fc.constantFrom('', 'db', 'io'),
    pageSize: fc.constantFrom(1, 2, 3, 0),
  },
  { requiredKeys: ['query', 'pageSize'] },
);

/** The entries of `steps` and the records they leave (the model's state machine, records only). */
function model(steps: Step[]): { entries: Entry[]; records: Map<string, Agent> } {
  const records = new Map<string, Agent>();
  const entries: Entry[] = [];
  steps.forEach((step, i) => {
    const revision = i + 1;
    let cmd: Command;
    switch (step.kind) {
      case 'register': {
        const old = records.get(step.agent.id);
        records.set(step.agent.id, { ...step.agent, createRevision: old?.createRevision ?? revision, modRevision: revision, ttlSeconds: step.ttlSeconds, health: old?.health ?? 'unspecified' });
        cmd = { type: 'register', requestId: `r${revision}`, agent: step.agent, ttlSeconds: step.ttlSeconds };
        break;
      }
      case 'deregister':
        records.delete(step.id);
        cmd = { type: 'deregister', requestId: `r${revision}`, id: step.id };
        break;
      case 'setHealth': {
        const old = records.get(step.id);
        if (old !== undefined && old.health !== step.health) records.set(step.id, { ...old, health: step.health, modRevision: revision });
        cmd = { type: 'setHealth', requestId: `r${revision}`, id: step.id, health: step.health };
        break;
      }
      case 'expire': {
        const old = records.get(step.id);
        const modRevision = old?.modRevision ?? 1;
        if (old !== undefined && old.ttlSeconds > 0) records.delete(step.id);
        cmd = { type: 'expire', requestId: `r${revision}`, leases: [{ id: step.id, modRevision }] };
        break;
      }
    }
    entries.push({ index: logIndex(revision), term: term(1), type: 'normal', data: encodeCommand(cmd) });
  });
  return { entries, records };
}

/** Weights of name, capabilities, description, spelled out independently of text-index.ts. */
const WEIGHTS = [3, 2, 1];

/** Term → tf per field, and the length, of one record. */
function docOf(a: Agent): { length: number; tfs: Map<string, number[]> } {
  const fields = [tokenize(a.name), tokenize(a.capabilities.join(' ')), tokenize(a.description)];
  const tfs = new Map<string, number[]>();
  fields.forEach((tokens, f) => {
    for (const t of tokens) {
      const v = tfs.get(t) ?? [0, 0, 0];
      v[f] = (v[f] as number) + 1;
      tfs.set(t, v);
    }
  });
  return { length: fields.reduce((n, f) => n + f.length, 0), tfs };
}

const weighted = (v: number[]): number => v.reduce((s, x, f) => s + (WEIGHTS[f] as number) * x, 0);

/** Every `text/` and `count/` key with its decoded value, as the records prescribe. */
function expectedKeys(records: Iterable<Agent>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const df = new Map<string, number>();
  const caps = new Map<string, number>();
  let n = 0;
  let len = 0;
  for (const a of records) {
    const doc = docOf(a);
    n++;
    len += doc.length;
    for (const [t, v] of doc.tfs) {
      const tf = weighted(v);
      const impact = Math.min(65535, Math.floor((65535 * (10 * tf * 32)) / (10 * tf * 32 + 3 * 32 + 9 * doc.length)));
      out.set(`text/p/${t}\x00${(65535 - impact).toString(16).padStart(4, '0')}\x00${a.id}`, [doc.length, ...v]);
      df.set(t, (df.get(t) ?? 0) + 1);
    }
    for (const c of new Set(a.capabilities)) caps.set(c, (caps.get(c) ?? 0) + 1);
  }
  for (const [t, d] of df) out.set(`text/df/${t}`, d);
  if (n > 0) out.set('text/n', n);
  if (len > 0) out.set('text/len', len);
  for (const [c, k] of caps) out.set(`count/cap/${c}`, k);
  return out;
}

async function actualKeys(store: NodeStore): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const [gte, lt] of [['text/', 'text0'], ['count/', 'count0']] as const) {
    for await (const [k, v] of store.kv.range(gte, lt)) {
      // Postings are fixed-width [docLength, tf per field] uint16s; the counters are msgpack.
      if (k.startsWith('text/p/')) {
        const posting = decodePosting(v);
        out.set(k, posting === undefined ? v : [posting.docLength, ...posting.tfs]);
      } else out.set(k, registryPackr.unpack(v));
    }
  }
  return out;
}

/** The model's ranking: BM25 (k1 1.2, b 0.75, Lucene idf) from the records, filtered, score desc then id. */
function expectedSearch(records: Map<string, Agent>, q: SearchQuery): { id: string; score: number }[] {
  const terms = [...new Set(tokenize(q.query))];
  const docs = [...records.values()].map((a) => ({ a, doc: docOf(a) }));
  const n = docs.length;
  const avg = n === 0 ? 1 : docs.reduce((s, d) => s + d.doc.length, 0) / n || 1;
  const df = (t: string): number => docs.filter((d) => d.doc.tfs.has(t)).length;
  const idf = terms.map((t) => Math.log(1 + (n - df(t) + 0.5) / (df(t) + 0.5)));
  const out: { id: string; score: number }[] = [];
  for (const { a, doc } of docs) {
    if (q.capability && !a.capabilities.includes(q.capability)) continue;
    if (q.capabilityPrefix && !a.capabilities.some((c) => c.startsWith(q.capabilityPrefix as string))) continue;
    if (q.kind && a.kind !== q.kind) continue;
    if (q.health && q.health !== 'unspecified' && a.health !== q.health) continue;
    if (q.namePrefix && !a.name.startsWith(q.namePrefix)) continue;
    let score = 0;
    let hit = false;
    terms.forEach((t, i) => {
      const v = doc.tfs.get(t);
      if (v === undefined) return;
      hit = true;
      const tf = weighted(v);
      score += ((idf[i] as number) * (tf * (1.2 + 1))) / (tf + 1.2 * (1 - 0.75 + (0.75 * doc.length) / avg));
    });
    if (hit) out.push({ id: a.id, score });
  }
  return out.sort((x, y) => (x.score !== y.score ? y.score - x.score : x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

async function searchAll(sm: RegistryStateMachine, q: SearchQuery): Promise<{ id: string; score: number }[]> {
  const got: { id: string; score: number }[] = [];
  let token = '';
  let pages = 0;
  do {
    const page = await sm.search({ ...q, pageToken: token });
    got.push(...page.results.map((r) => ({ id: r.agent.id, score: r.score })));
    token = page.nextPageToken;
    expect(++pages).toBeLessThan(50);
  } while (token !== '');
  return got;
}

async function check(store: NodeStore, sm: RegistryStateMachine, records: Map<string, Agent>, queries: SearchQuery[]): Promise<void> {
  expect(await actualKeys(store)).toEqual(expectedKeys(records.values()));
  for (const q of queries) expect(await searchAll(sm, q)).toEqual(expectedSearch(records, q));
  const caps = (await sm.capabilities()).capabilities;
  const want = [...expectedKeys(records.values())].filter(([k]) => k.startsWith('count/cap/')).map(([k, v]) => ({ capability: k.slice('count/cap/'.length), count: v }));
  expect(caps).toEqual(want.sort((x, y) => (x.capability < y.capability ? -1 : 1)));
}

describe.each(HARNESSES)('text index properties on $name', ({ name, make }) => {
  const numRuns = name === 'LevelStore' ? 15 : 60;

  it('agrees with a model recomputed from the records, after restarts and a snapshot install', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbStep, { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 10 }),
        fc.array(fc.boolean(), { maxLength: 20 }),
        fc.array(fc.boolean(), { maxLength: 20 }),
        fc.array(arbQuery, { minLength: 1, maxLength: 5 }),
        fc.constantFrom(0, 3, undefined),
        async (steps, batchSizes, restarts, holdBatches, queries, counterCacheEntries) => {
          const harness = await make();
          // No cache, a cache that keeps evicting, the default one.
          const smOptions = counterCacheEntries === undefined ? {} : { counterCacheEntries };
          try {
            let store = await harness.open();
            let sm = new RegistryStateMachine(store, undefined, smOptions);
            await sm.open();
            const { entries, records } = model(steps);
            let next = 0;
            for (let b = 0; next < entries.length; b++) {
              const size = batchSizes[b % batchSizes.length] as number;
              const chunk = entries.slice(next, next + size);
              next += chunk.length;
              const batch = store.batch();
              const cut = Math.floor(chunk.length / 2);
              await sm.applyEntries(chunk.slice(0, cut), batch);
              await sm.applyEntries(chunk.slice(cut), batch);
              if (holdBatches[b] === true && next < entries.length) {
                // A second batch staged before the first is written: its counters build on the first's.
                const more = entries.slice(next, next + 1);
                next += more.length;
                const second = store.batch();
                await sm.applyEntries(more, second);
                await batch.write();
                sm.commitApplied(batch);
                await second.write();
                sm.commitApplied(second);
              } else {
                await batch.write();
                sm.commitApplied(batch);
              }
              if (restarts[b] === true) {
                store = await harness.reopen(store);
                sm = new RegistryStateMachine(store, undefined, smOptions);
                await sm.open();
              }
            }
            await check(store, sm, records, queries);
            // A snapshot install: the whole key space into a fresh store, as a follower gets it.
            const view = store.stateMachineView();
            const installed = new MemoryStore();
            await installed.installStateMachine(view.entries(), () => undefined);
            await view.close();
            const sm2 = new RegistryStateMachine(installed);
            await sm2.open();
            await check(installed, sm2, records, queries);
          } finally {
            await harness.cleanup();
          }
        },
      ),
      { numRuns },
    );
  });
});
