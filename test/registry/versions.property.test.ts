/**
 * The versions index against a model: random register (names, versions, renames) and
 * deregister sequences, applied in random batches with restarts, then copied into a fresh store
 * as a snapshot install does. On the original and on the installed copy, the `idx/ver/` keys
 * are exactly those the records prescribe, with `[version, createRevision]`; ListVersions,
 * Get by `<name>`, `<name>@latest` and `<name>@<version>`, and a paged walk (every version or
 * the latest of each name, with a name filter) agree with the model, whose order is written out
 * by hand below (not computed with `semver.ts`).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { encodeCommand, registryPackr } from '../../src/registry/commands.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { AgentSpec, Command } from '../../src/registry/types.js';
import { decodeStatePairs, encodeStatePairs } from '../../src/storage/snapshot-codec.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { NodeStore } from '../../src/storage/types.js';
import { HARNESSES } from '../storage/harnesses.js';

const IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
/** Names disjoint from the ids; one npm-style with a leading `@`, one that sorts inside another. */
const NAMES = ['x', 'xy', 'io.y/z', '@s/p', ''];
/**
 * Versions with their semver precedence rank, by hand from semver.org §11 (equal ranks are equal
 * precedence; -1: not a semantic version, below every semantic one, ordered by publication).
 */
const RANK: Record<string, number> = {
  '0.1.0+build': 0,
  '1.0.0-alpha': 1,
  '1.0.0-alpha.1': 2,
  '1.0.0-beta.2': 3,
  '1.0.0-beta.11': 4,
  '1.0.0': 5,
  '1.0.0+meta': 5,
  '1.9.0': 6,
  '1.10.0': 7,
  '2.0.0': 8,
  '18446744073709551616.0.0': 9,
  v1: -1,
  '2024.1': -1,
  '1.0': -1,
  nightly: -1,
};
const VERSIONS = Object.keys(RANK);

type Step = { kind: 'register'; id: string; name: string; version: string } | { kind: 'deregister'; id: string };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('register' as const), id: fc.constantFrom(...IDS), name: fc.constantFrom(...NAMES), version: fc.constantFrom(...VERSIONS) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deregister' as const), id: fc.constantFrom(...IDS) }) },
);

interface ModelRecord {
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly createRevision: number;
}

const utf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** The model's order, latest first: rank, then publication, then id. */
function latestFirst(records: Iterable<ModelRecord>): ModelRecord[] {
  return [...records].sort((x, y) => {
    const rx = RANK[x.version] as number;
    const ry = RANK[y.version] as number;
    if (rx !== ry) return ry - rx;
    if (x.createRevision !== y.createRevision) return y.createRevision - x.createRevision;
    return utf8(y.id, x.id);
  });
}

function spec(step: Extract<Step, { kind: 'register' }>): AgentSpec {
  return { id: step.id, name: step.name, kind: 'mcp-server', version: step.version, description: '', capabilities: [], endpoints: {}, labels: {} };
}

/** Entries of `steps` and the model's records after them. */
function model(steps: Step[]): { entries: Entry[]; records: Map<string, ModelRecord> } {
  const records = new Map<string, ModelRecord>();
  const entries = steps.map((step, i): Entry => {
    const revision = i + 1;
    let cmd: Command;
    if (step.kind === 'register') {
      cmd = { type: 'register', requestId: `r${revision}`, agent: spec(step), timeMs: 1_700_000_000_000 + revision };
      records.set(step.id, { id: step.id, name: step.name, version: step.version, createRevision: records.get(step.id)?.createRevision ?? revision });
    } else {
      cmd = { type: 'deregister', requestId: `r${revision}`, id: step.id };
      records.delete(step.id);
    }
    return { index: logIndex(revision), term: term(1), type: 'normal', data: encodeCommand(cmd) };
  });
  return { entries, records };
}

/** Copies the state machine key space of `from` into a fresh store, as a snapshot install does. */
async function installCopy(from: NodeStore): Promise<NodeStore> {
  const view = from.stateMachineView();
  const target = new MemoryStore();
  try {
    await target.installStateMachine(decodeStatePairs(encodeStatePairs(view.entries(), 256)), () => undefined);
  } finally {
    await view.close();
  }
  return target;
}

/** Every check of the module comment, on `store`. */
async function check(store: NodeStore, records: Map<string, ModelRecord>, pageLimit: number, needle: string): Promise<void> {
  const sm = new RegistryStateMachine(store);
  await sm.open();
  const named = [...records.values()].filter((r) => r.name !== '');
  // The index: exactly one key per named record, with its version and createRevision.
  const index: [string, unknown][] = [];
  for await (const [k, v] of store.kv.range('idx/ver/', 'idx/ver0')) index.push([k, registryPackr.unpack(v)]);
  const want = named.map((r): [string, unknown] => [`idx/ver/${r.name}\x00${r.id}`, [r.version, r.createRevision]]).sort((x, y) => utf8(x[0], y[0]));
  expect(index).toEqual(want);

  const latestOfName = new Map<string, string>();
  for (const name of NAMES) {
    const versions = latestFirst(named.filter((r) => r.name === name));
    expect((await sm.versions(name)).map((a) => a.id)).toEqual(versions.map((r) => r.id));
    const latest = versions[0]?.id;
    if (latest !== undefined) latestOfName.set(name, latest);
    if (name === '') continue;
    expect((await sm.getByRef(name))?.id).toBe(latest);
    expect((await sm.getByRef(`${name}@latest`))?.id).toBe(latest);
    for (const v of VERSIONS) expect((await sm.getByRef(`${name}@${v}`))?.id, `${name}@${v}`).toBe(versions.find((r) => r.version === v)?.id);
  }
  for (const id of IDS) expect((await sm.getByRef(id))?.id).toBe(records.get(id)?.id);

  // Paged walks: every version once, in (name, id) order; or the latest of each name once.
  const order = (x: ModelRecord, y: ModelRecord): number => utf8(x.name, y.name) || utf8(x.id, y.id);
  for (const latestOnly of [false, true]) {
    for (const nameContains of ['', needle]) {
      const expected = named
        .filter((r) => r.name.toLowerCase().includes(nameContains.toLowerCase()))
        .filter((r) => !latestOnly || latestOfName.get(r.name) === r.id)
        .sort(order)
        .map((r) => [r.id, latestOfName.get(r.name) === r.id]);
      const got: [string, boolean][] = [];
      let cursor = '';
      let pages = 0;
      do {
        const page = await sm.versionPage({ limit: pageLimit, cursor, nameContains, latestOnly });
        expect(page.items.length).toBeLessThanOrEqual(pageLimit);
        if (page.nextCursor !== '') expect(page.items).toHaveLength(pageLimit);
        got.push(...page.items.map((i): [string, boolean] => [i.agent.id, i.isLatest]));
        cursor = page.nextCursor;
        expect(++pages).toBeLessThanOrEqual(expected.length + 1);
      } while (cursor !== '');
      expect(got).toEqual(expected);
    }
  }
}

describe.each(HARNESSES)('versions index on $name', ({ name, make }) => {
  const numRuns = name === 'LevelStore' ? 15 : 80;

  it('agrees with a model after random register/deregister, restarts and a snapshot install', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbStep, { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 10 }),
        fc.array(fc.boolean(), { maxLength: 10 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom('X', 'y/', '@', 'q'),
        async (steps, batchSizes, restarts, pageLimit, needle) => {
          const harness = await make();
          try {
            let store = await harness.open();
            let sm = new RegistryStateMachine(store);
            await sm.open();
            const { entries, records } = model(steps);
            let next = 0;
            for (let b = 0; next < entries.length; b++) {
              const chunk = entries.slice(next, next + (batchSizes[b % batchSizes.length] as number));
              next += chunk.length;
              const batch = store.batch();
              await sm.applyEntries(chunk, batch);
              await batch.write();
              sm.commitApplied(batch);
              if (restarts[b] === true) {
                store = await harness.reopen(store);
                sm = new RegistryStateMachine(store);
                await sm.open();
              }
            }
            await check(store, records, pageLimit, needle);
            await check(await installCopy(store), records, pageLimit, needle);
          } finally {
            await harness.cleanup();
          }
        },
      ),
      { numRuns },
    );
  });
});

describe('record times', () => {
  it('a register dates the record with its leader time: createdAtMs kept on replace, updatedAtMs never below it', async () => {
    const store = new MemoryStore();
    const sm = new RegistryStateMachine(store);
    await sm.open();
    const reg = (index: number, timeMs: number | undefined): Entry => ({
      index: logIndex(index),
      term: term(1),
      type: 'normal',
      data: encodeCommand({ type: 'register', requestId: `r${index}`, agent: spec({ kind: 'register', id: 'a', name: 'x', version: '1.0.0' }), ...(timeMs !== undefined ? { timeMs } : {}) }),
    });
    const apply = async (e: Entry): Promise<void> => {
      const batch = store.batch();
      await sm.applyEntries([e], batch);
      await batch.write();
      sm.commitApplied(batch);
    };
    await apply(reg(1, 5_000));
    expect(await sm.get('a')).toMatchObject({ createdAtMs: 5_000, updatedAtMs: 5_000 });
    await apply(reg(2, 9_000));
    expect(await sm.get('a')).toMatchObject({ createdAtMs: 5_000, updatedAtMs: 9_000 });
    // A leader whose clock is behind: updatedAtMs does not go below createdAtMs.
    await apply(reg(3, 1_000));
    expect(await sm.get('a')).toMatchObject({ createdAtMs: 5_000, updatedAtMs: 5_000 });
    // An entry without a time (written before times existed) keeps the record's times.
    await apply(reg(4, undefined));
    expect(await sm.get('a')).toMatchObject({ createdAtMs: 5_000, updatedAtMs: 5_000 });
    // Times survive a restart (they are in the record).
    const again = new RegistryStateMachine(await store.reopen());
    await again.open();
    expect(await again.get('a')).toMatchObject({ createdAtMs: 5_000, updatedAtMs: 5_000, modRevision: 4 });
  });
});
