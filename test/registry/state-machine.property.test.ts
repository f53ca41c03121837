/**
 * Property tests of the registry state machine against a model (a Map of records): random
 * register/deregister sequences over a small id/capability/kind/label space, applied in random
 * batch sizes and split across several applyEntries calls, with restarts that replay entries
 * already applied. Afterwards the index keys agree exactly with the records, find agrees with a
 * brute-force filter (also when paging with small pages), and every revision is right.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { encodeCommand } from '../../src/registry/commands.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { Agent, AgentSpec, Command, CommandResult, FindQuery } from '../../src/registry/types.js';
import type { NodeStore } from '../../src/storage/types.js';
import { HARNESSES } from '../storage/harnesses.js';

const IDS = ['a', 'b', 'c', 'd', 'e', 'a.b', 'a/b'];
const CAPABILITIES = ['search', 'fetch', 'sea'];
const KINDS = ['mcp-server', 'service'];
const LABEL_KEYS = ['env', 'tier'];
const LABEL_VALUES = ['prod', 'dev', ''];

const arbLabels = fc
  .subarray(LABEL_KEYS)
  .chain((keys) => fc.tuple(...keys.map(() => fc.constantFrom(...LABEL_VALUES))).map((vals) => Object.fromEntries(keys.map((k, i) => [k, vals[i] as string]))));

const arbSpec: fc.Arbitrary<AgentSpec> = fc.record({
  id: fc.constantFrom(...IDS),
  name: fc.string({ maxLength: 5 }),
  kind: fc.constantFrom(...KINDS),
  version: fc.constant('1.0.0'),
  description: fc.string({ maxLength: 5 }),
  capabilities: fc.array(fc.constantFrom(...CAPABILITIES), { maxLength: 4 }), // duplicates allowed
  endpoints: fc.constant({}),
  labels: arbLabels,
});

/** An entry's payload: a command, a leader no-op, or a config change. */
type Step = { kind: 'command'; command: Command } | { kind: 'noop' } | { kind: 'config' };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: arbSpec.map((agent): Step => ({ kind: 'command', command: { type: 'register', requestId: 'r', agent } })) },
  { weight: 3, arbitrary: fc.constantFrom(...IDS).map((id): Step => ({ kind: 'command', command: { type: 'deregister', requestId: 'r', id } })) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'noop' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'config' }) },
);

const arbQuery: fc.Arbitrary<FindQuery> = fc.record(
  {
    capability: fc.constantFrom('', ...CAPABILITIES),
    kind: fc.constantFrom('', ...KINDS),
    labels: arbLabels,
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
});

function toEntry(step: Step, index: number): Entry {
  const base = { index: logIndex(index), term: term(1) };
  switch (step.kind) {
    case 'command':
      return { ...base, type: 'normal', data: encodeCommand(step.command) };
    case 'noop':
      return { ...base, type: 'normal', data: new Uint8Array(0) };
    case 'config':
      return { ...base, type: 'config', data: new Uint8Array([1]) };
  }
}

/** The model: applies `steps` to a Map and returns the records and each command's result. */
function model(steps: Step[]): { records: Map<string, Agent>; results: Map<number, CommandResult> } {
  const records = new Map<string, Agent>();
  const results = new Map<number, CommandResult>();
  steps.forEach((step, i) => {
    const revision = i + 1;
    if (step.kind !== 'command') return;
    const cmd = step.command;
    if (cmd.type === 'register') {
      const agent: Agent = { ...cmd.agent, createRevision: records.get(cmd.agent.id)?.createRevision ?? revision, modRevision: revision };
      records.set(agent.id, agent);
      results.set(revision, { type: 'register', agent, revision });
    } else {
      results.set(revision, { type: 'deregister', deleted: records.delete(cmd.id), revision });
    }
  });
  return { records, results };
}

/** The index keys the layout prescribes for `records`, spelled out independently of keys.ts. */
function expectedIndexKeys(records: Iterable<Agent>): string[] {
  const keys = new Set<string>();
  for (const a of records) {
    for (const c of a.capabilities) keys.add(`idx/cap/${c}\x00${a.id}`);
    keys.add(`idx/kind/${a.kind}\x00${a.id}`);
    for (const [k, v] of Object.entries(a.labels)) keys.add(`idx/label/${k}\x00${v}\x00${a.id}`);
  }
  return [...keys].sort();
}

function bruteForce(records: Map<string, Agent>, q: FindQuery): Agent[] {
  return [...records.values()]
    .filter((a) => !q.capability || a.capabilities.includes(q.capability))
    .filter((a) => !q.kind || a.kind === q.kind)
    .filter((a) => Object.entries(q.labels ?? {}).every(([k, v]) => Object.hasOwn(a.labels, k) && a.labels[k] === v))
    .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

async function scanKeys(store: NodeStore, gte: string, lt: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const [k] of store.kv.range(gte, lt)) keys.push(k);
  return keys;
}

describe.each(HARNESSES)('RegistryStateMachine properties on $name', ({ name, make }) => {
  const numRuns = name === 'LevelStore' ? 15 : 80;

  it('keeps indexes, find results and revisions in agreement with a model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(arbStep, { minLength: 1, maxLength: 60 }), arbSchedule, fc.array(arbQuery, { minLength: 1, maxLength: 6 }), async (steps, schedule, queries) => {
        const harness = await make();
        try {
          let store = await harness.open();
          let sm = new RegistryStateMachine(store);
          await sm.open();
          const entries = steps.map((s, i) => toEntry(s, i + 1));
          const got = new Map<number, CommandResult>();
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
            expect(sm.appliedIndex).toBe(next);
            if (schedule.restartAfterBatch[b] === true) {
              store = await harness.reopen(store);
              sm = new RegistryStateMachine(store);
              await sm.open();
              expect(sm.appliedIndex).toBe(next);
              // Replaying applied entries (as a restart with an older commit index would) is a no-op.
              const from = (schedule.replayFrom[b] ?? 0) % next;
              const replay = store.batch();
              expect((await sm.applyEntries(entries.slice(from, next), replay)).size).toBe(0);
              expect(replay.empty).toBe(true);
            }
          }

          const expected = model(steps);
          expect(got).toEqual(expected.results);
          // Records: exactly the model's, with their revisions.
          const records = new Map<string, Agent>();
          for await (const [key] of store.kv.range('agent/', 'agent0')) {
            const id = key.slice('agent/'.length);
            records.set(id, (await sm.get(id)) as Agent);
          }
          expect(records).toEqual(expected.records);
          // Index keys: exactly those the records prescribe, nothing stale.
          expect(await scanKeys(store, 'idx/', 'idx0')).toEqual(expectedIndexKeys(expected.records.values()));
          // Nothing else in the key space but records, indexes and the applied index.
          const others = (await scanKeys(store, '\x00', '\u{10FFFF}')).filter((k) => !k.startsWith('agent/') && !k.startsWith('idx/'));
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
