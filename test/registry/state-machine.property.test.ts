/**
 * Property tests of the registry state machine against a model (a Map of records): random
 * sequences of register (with leases, health and compare-and-set conditions), deregister
 * (conditional or not), setHealth and expire over a small id/capability/kind/label/name space,
 * applied in random batch sizes and split across several applyEntries calls, with restarts that
 * replay entries already applied. Afterwards the index keys agree exactly with the records, the
 * leases with the leased records, the watch history (within its window) and the committed events
 * with the model's events, find agrees with a brute-force filter (also when paging with small
 * pages), and every revision is right.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { encodeCommand, registryPackr } from '../../src/registry/commands.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { Agent, AgentSpec, Command, CommandResult, FindQuery, Health, WatchEvent } from '../../src/registry/types.js';
import type { NodeStore } from '../../src/storage/types.js';
import { HARNESSES } from '../storage/harnesses.js';

const IDS = ['a', 'b', 'c', 'd', 'e', 'a.b', 'a/b'];
const CAPABILITIES = ['search', 'fetch', 'sea'];
const KINDS = ['mcp-server', 'service'];
const LABEL_KEYS = ['env', 'tier'];
const LABEL_VALUES = ['prod', 'dev', ''];
const HEALTHS: Health[] = ['unspecified', 'serving', 'degraded', 'notServing'];
/** Name characters: ASCII, a 2-byte, a 3-byte near the surrogates and a 4-byte one (UTF-8 order matters). */
const NAME_UNITS = ['a', 'b', 'é', '\u{d7ff}', '\u{ffff}', '😀'];

const arbName = fc.array(fc.constantFrom(...NAME_UNITS), { maxLength: 3 }).map((units) => units.join(''));

const arbLabels = fc
  .subarray(LABEL_KEYS)
  .chain((keys) => fc.tuple(...keys.map(() => fc.constantFrom(...LABEL_VALUES))).map((vals) => Object.fromEntries(keys.map((k, i) => [k, vals[i] as string]))));

const arbSpec: fc.Arbitrary<AgentSpec> = fc.record({
  id: fc.constantFrom(...IDS),
  name: arbName,
  kind: fc.constantFrom(...KINDS),
  version: fc.constant('1.0.0'),
  description: fc.string({ maxLength: 5 }),
  capabilities: fc.array(fc.constantFrom(...CAPABILITIES), { maxLength: 4 }), // duplicates allowed
  endpoints: fc.constant({}),
  labels: arbLabels,
});

/** A condition, resolved against the model when the command is built: the current revision, a wrong one, or none. */
type Condition = 'none' | 'current' | 'stale' | 'createOnly';

/** An entry's payload before it is resolved against the model's state at its index. */
type Step =
  | { kind: 'register'; agent: AgentSpec; ttlSeconds: number; health: Health | undefined; condition: Condition }
  | { kind: 'deregister'; id: string; condition: Exclude<Condition, 'createOnly'> }
  | { kind: 'setHealth'; id: string; health: Health }
  | { kind: 'expire'; leases: { id: string; stale: boolean }[] }
  | { kind: 'noop' }
  | { kind: 'config' };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('register' as const),
      agent: arbSpec,
      ttlSeconds: fc.constantFrom(0, 0, 5, 60),
      health: fc.option(fc.constantFrom(...HEALTHS), { nil: undefined }),
      condition: fc.constantFrom<Condition>('none', 'none', 'none', 'current', 'stale', 'createOnly'),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('deregister' as const),
      id: fc.constantFrom(...IDS),
      condition: fc.constantFrom<Exclude<Condition, 'createOnly'>>('none', 'none', 'current', 'stale'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('setHealth' as const), id: fc.constantFrom(...IDS), health: fc.constantFrom(...HEALTHS) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('expire' as const),
      leases: fc.array(fc.record({ id: fc.constantFrom(...IDS), stale: fc.boolean() }), { maxLength: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'noop' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'config' }) },
);

const arbQuery: fc.Arbitrary<FindQuery> = fc.record(
  {
    capability: fc.constantFrom('', ...CAPABILITIES),
    kind: fc.constantFrom('', ...KINDS),
    labels: arbLabels,
    health: fc.constantFrom(...HEALTHS),
    namePrefix: fc.array(fc.constantFrom(...NAME_UNITS), { maxLength: 2 }).map((units) => units.join('')),
    pageSize: fc.constantFrom(0, 1, 2, 3),
  },
  { requiredKeys: ['pageSize'] },
);

/** How the entries are cut: batch sizes, calls per batch, and where the node restarts. */
const arbSchedule = fc.record({
  batchSizes: fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 40 }),
  splitCalls: fc.array(fc.boolean(), { maxLength: 40 }),
  restartAfterBatch: fc.array(fc.boolean(), { maxLength: 40 }),
  replayFrom: fc.array(fc.nat(), { maxLength: 40 }),
  /** Revisions of event history kept: small windows make old events leave it. */
  eventWindow: fc.oneof(fc.integer({ min: 1, max: 30 }), fc.constant(10_000)),
});

/** What the model expects after applying every step. */
interface Expected {
  readonly entries: Entry[];
  readonly records: Map<string, Agent>;
  readonly results: Map<number, CommandResult>;
  readonly events: WatchEvent[];
}

/**
 * The model: walks `steps`, resolving each conditional step against the records at that point
 * into a command (and its entry), and applies it to a Map. Written independently of the state
 * machine: the rules of types.ts, spelled out.
 */
function model(steps: Step[]): Expected {
  const records = new Map<string, Agent>();
  const results = new Map<number, CommandResult>();
  const events: WatchEvent[] = [];
  const entries: Entry[] = [];
  const conflict = (revision: number, currentRevision: number): CommandResult => ({ type: 'conflict', revision, currentRevision, reason: '' });
  steps.forEach((step, i) => {
    const revision = i + 1;
    const base = { index: logIndex(revision), term: term(1) };
    if (step.kind === 'noop') return void entries.push({ ...base, type: 'normal', data: new Uint8Array(0) });
    if (step.kind === 'config') return void entries.push({ ...base, type: 'config', data: new Uint8Array([1]) });
    let cmd: Command;
    switch (step.kind) {
      case 'register': {
        const existing = records.get(step.agent.id);
        const current = existing?.modRevision ?? 0;
        const expectedRevision = step.condition === 'current' ? current : step.condition === 'stale' ? current + 1 : 0;
        cmd = {
          type: 'register',
          requestId: `r${revision}`,
          agent: step.agent,
          ...(step.ttlSeconds > 0 ? { ttlSeconds: step.ttlSeconds } : {}),
          ...(step.health !== undefined ? { health: step.health } : {}),
          ...(expectedRevision > 0 ? { expectedRevision } : {}),
          ...(step.condition === 'createOnly' ? { createOnly: true } : {}),
        };
        if ((step.condition === 'createOnly' && existing) || (expectedRevision > 0 && expectedRevision !== current)) {
          results.set(revision, conflict(revision, current));
          break;
        }
        const agent: Agent = {
          ...step.agent,
          createRevision: existing?.createRevision ?? revision,
          modRevision: revision,
          ttlSeconds: step.ttlSeconds,
          health: step.health ?? existing?.health ?? 'unspecified',
        };
        records.set(agent.id, agent);
        results.set(revision, { type: 'register', agent, revision });
        events.push({ type: 'put', agent, revision, expired: false });
        break;
      }
      case 'deregister': {
        const existing = records.get(step.id);
        const current = existing?.modRevision ?? 0;
        const expectedRevision = step.condition === 'current' ? current : step.condition === 'stale' ? current + 1 : 0;
        cmd = { type: 'deregister', requestId: `r${revision}`, id: step.id, ...(expectedRevision > 0 ? { expectedRevision } : {}) };
        if (expectedRevision > 0 && expectedRevision !== current) {
          results.set(revision, conflict(revision, current));
          break;
        }
        results.set(revision, { type: 'deregister', deleted: existing !== undefined, revision });
        if (existing) {
          records.delete(step.id);
          events.push({ type: 'delete', agent: existing, revision, expired: false });
        }
        break;
      }
      case 'setHealth': {
        cmd = { type: 'setHealth', requestId: `r${revision}`, id: step.id, health: step.health };
        const existing = records.get(step.id);
        if (existing === undefined || existing.health === step.health) {
          results.set(revision, { type: 'setHealth', agent: existing, revision });
          break;
        }
        const agent: Agent = { ...existing, health: step.health, modRevision: revision };
        records.set(agent.id, agent);
        results.set(revision, { type: 'setHealth', agent, revision });
        events.push({ type: 'put', agent, revision, expired: false });
        break;
      }
      case 'expire': {
        const leases = step.leases.map((l) => ({ id: l.id, modRevision: (records.get(l.id)?.modRevision ?? 0) + (l.stale ? 1 : 0) || 1 }));
        cmd = { type: 'expire', requestId: `r${revision}`, leases };
        const expired: string[] = [];
        for (const lease of leases) {
          const existing = records.get(lease.id);
          if (!existing || existing.modRevision !== lease.modRevision || existing.ttlSeconds === 0) continue;
          records.delete(lease.id);
          expired.push(lease.id);
          events.push({ type: 'delete', agent: existing, revision, expired: true });
        }
        results.set(revision, { type: 'expire', expired, revision });
        break;
      }
    }
    entries.push({ ...base, type: 'normal', data: encodeCommand(cmd) });
  });
  return { entries, records, results, events };
}

/** The index keys the layout prescribes for `records`, spelled out independently of keys.ts. */
function expectedIndexKeys(records: Iterable<Agent>): string[] {
  const keys = new Set<string>();
  for (const a of records) {
    for (const c of a.capabilities) keys.add(`idx/cap/${c}\x00${a.id}`);
    keys.add(`idx/kind/${a.kind}\x00${a.id}`);
    for (const [k, v] of Object.entries(a.labels)) keys.add(`idx/label/${k}\x00${v}\x00${a.id}`);
    keys.add(`idx/health/${a.health}\x00${a.id}`);
    keys.add(`idx/name/${a.name}\x00${a.id}`);
    if (a.name !== '') keys.add(`idx/ver/${a.name}\x00${a.id}`);
    if (a.ttlSeconds > 0) keys.add(`idx/lease/${a.id}`);
  }
  return [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
}

function bruteForce(records: Map<string, Agent>, q: FindQuery): Agent[] {
  return [...records.values()]
    .filter((a) => !q.capability || a.capabilities.includes(q.capability))
    .filter((a) => !q.kind || a.kind === q.kind)
    .filter((a) => Object.entries(q.labels ?? {}).every(([k, v]) => Object.hasOwn(a.labels, k) && a.labels[k] === v))
    .filter((a) => !q.health || q.health === 'unspecified' || a.health === q.health)
    .filter((a) => !q.namePrefix || a.name.startsWith(q.namePrefix))
    .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

async function scanKeys(store: NodeStore, gte: string, lt: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const [k] of store.kv.range(gte, lt)) keys.push(k);
  return keys;
}

/** Conflict reasons are prose: compare everything else. */
function withoutReasons(results: Map<number, CommandResult>): Map<number, CommandResult> {
  return new Map([...results].map(([i, r]) => [i, r.type === 'conflict' ? { ...r, reason: '' } : r]));
}

describe.each(HARNESSES)('RegistryStateMachine properties on $name', ({ name, make }) => {
  const numRuns = name === 'LevelStore' ? 15 : 80;

  it('keeps indexes, leases, events, find results and revisions in agreement with a model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(arbStep, { minLength: 1, maxLength: 60 }), arbSchedule, fc.array(arbQuery, { minLength: 1, maxLength: 6 }), async (steps, schedule, queries) => {
        const harness = await make();
        try {
          const options = { eventHistoryRevisions: schedule.eventWindow };
          let store = await harness.open();
          let sm = new RegistryStateMachine(store, undefined, options);
          await sm.open();
          const expected = model(steps);
          const entries = expected.entries;
          const got = new Map<number, CommandResult>();
          const committed: WatchEvent[] = [];
          let next = 0;
          for (let b = 0; next < entries.length; b++) {
            const size = schedule.batchSizes[b % schedule.batchSizes.length] as number;
            const chunk = entries.slice(next, next + size);
            next += chunk.length;
            const batch = store.batch();
            const cut = schedule.splitCalls[b] === true ? Math.floor(chunk.length / 2) : chunk.length;
            for (const part of [chunk.slice(0, cut), chunk.slice(cut)]) {
              for (const [index, result] of await sm.applyEntries(part, batch)) got.set(index, result);
            }
            await batch.write();
            sm.commitApplied(batch);
            committed.push(...sm.takeCommittedEvents());
            expect(sm.appliedIndex).toBe(next);
            if (schedule.restartAfterBatch[b] === true) {
              store = await harness.reopen(store);
              sm = new RegistryStateMachine(store, undefined, options);
              await sm.open();
              expect(sm.appliedIndex).toBe(next);
              // Replaying applied entries (as a restart with an older commit index would) is a no-op.
              const from = (schedule.replayFrom[b] ?? 0) % next;
              const replay = store.batch();
              expect((await sm.applyEntries(entries.slice(from, next), replay)).size).toBe(0);
              expect(replay.empty).toBe(true);
              sm.commitApplied(replay);
              expect(sm.takeCommittedEvents()).toEqual([]);
            }
          }

          expect(withoutReasons(got)).toEqual(expected.results);
          // Records: exactly the model's, with their revisions, leases and health.
          const records = new Map<string, Agent>();
          for await (const [key] of store.kv.range('agent/', 'agent0')) {
            const id = key.slice('agent/'.length);
            records.set(id, (await sm.get(id)) as Agent);
          }
          expect(records).toEqual(expected.records);
          // Index keys: exactly those the records prescribe, nothing stale.
          expect(await scanKeys(store, 'idx/', 'idx0')).toEqual(expectedIndexKeys(expected.records.values()));
          // Leases: every leased record, with its TTL and modRevision, ordered by id.
          const leased = [...expected.records.values()].filter((a) => a.ttlSeconds > 0).sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
          expect(await sm.leases()).toEqual(leased.map((a) => ({ id: a.id, ttlMs: a.ttlSeconds * 1000, modRevision: a.modRevision })));
          for (const a of leased) expect(registryPackr.unpack((await store.kv.get(`idx/lease/${a.id}`)) as Uint8Array)).toEqual([a.ttlSeconds, a.modRevision]);
          // Events: every committed batch's events, in order, exactly once.
          expect(committed).toEqual(expected.events);
          // History: the window's events, no gaps, no duplicates, and no keys older than the window.
          const oldest = Math.max(1, entries.length - schedule.eventWindow + 1);
          const history = await sm.eventsSince(1, 1_000_000);
          expect(history.lastRevision).toBe(entries.length);
          expect(history.oldestRevision).toBe(oldest);
          expect(history.events).toEqual(expected.events.filter((e) => e.revision >= oldest));
          const evKeys = await scanKeys(store, 'ev/', 'ev0');
          expect(evKeys).toEqual([...new Set(expected.events.filter((e) => e.revision >= oldest).map((e) => `ev/${e.revision.toString(16).padStart(16, '0')}`))]);
          // Paged history: small pages, whole revisions, resumed after the last revision seen.
          const paged: WatchEvent[] = [];
          for (let from = oldest; ; ) {
            const page = await sm.eventsSince(from, 2);
            paged.push(...page.events);
            const last = page.events[page.events.length - 1];
            if (page.events.length < 2 || last === undefined) break;
            from = last.revision + 1;
          }
          expect(paged).toEqual(history.events);
          // Nothing else in the key space but records, indexes, events and the applied index (the
          // text index and the capability counts, `text/` and `count/`, are checked by
          // text-index.property.test.ts).
          const others = (await scanKeys(store, '\x00', '\u{10FFFF}')).filter(
            (k) => !k.startsWith('agent/') && !k.startsWith('idx/') && !k.startsWith('ev/') && !k.startsWith('text/') && !k.startsWith('count/'),
          );
          expect(others).toEqual(['meta/applied']);
          // find agrees with a brute-force filter, page by page.
          for (const query of queries) {
            const want = bruteForce(expected.records, query);
            const pageSize = query.pageSize === 0 ? 100 : (query.pageSize as number);
            const pages: Agent[][] = [];
            let token = '';
            do {
              const page = await sm.find({ ...query, pageToken: token });
              pages.push(page.agents);
              token = page.nextPageToken;
              expect(pages.length).toBeLessThanOrEqual(want.length + 1);
            } while (token !== '');
            expect(pages.flat()).toEqual(want);
            for (const page of pages.slice(0, -1)) expect(page).toHaveLength(pageSize);
            expect(pages[pages.length - 1]?.length).toBeGreaterThan(pages.length > 1 ? 0 : -1);
          }
        } finally {
          await harness.cleanup();
        }
      }),
      { numRuns },
    );
  });
});
