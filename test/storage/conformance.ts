/**
 * The conformance suite of the {@link NodeStore} port: the same tests run against every
 * implementation (LevelDB and in-memory), so both keep the same semantics.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { logIndex, nodeId, term, type Entry, type HardState } from '../../src/raft/types.js';
import type { NodeStore } from '../../src/storage/types.js';

/** Opens fresh stores of one implementation and reopens them as a restart would. */
export interface StoreHarness {
  /** Opens a new, empty store. */
  open(): Promise<NodeStore>;
  /** Closes `store` and opens the same data again. */
  reopen(store: NodeStore): Promise<NodeStore>;
  /** Closes what is still open and removes what the harness created. */
  cleanup(): Promise<void>;
}

/** An entry whose data names its index and term, so a wrong read is visible. */
export function entry(index: number, t: number, type: Entry['type'] = 'normal'): Entry {
  return { index: logIndex(index), term: term(t), type, data: new TextEncoder().encode(`e${index}@${t}`) };
}

/** Entries `lo..hi` (inclusive) at term `t`. */
export function entriesAt(lo: number, hi: number, t: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(entry(i, t));
  return out;
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

async function collect(it: AsyncIterable<[string, Uint8Array]>): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const [k, v] of it) out.push([k, text(v) as string]);
  return out;
}

/** The pairs of `items` (values as UTF-8 text) as the async iterable an install takes. */
async function* pairsOf(items: [string, string][]): AsyncIterable<[string, Uint8Array]> {
  for (const [k, v] of items) yield [k, bytes(v)];
}

async function writeEntries(store: NodeStore, entries: Entry[]): Promise<void> {
  const b = store.batch();
  b.appendEntries(entries);
  await b.write();
}

const hs = (t: number, voted: string, commit: number): HardState => ({
  currentTerm: term(t),
  votedFor: nodeId(voted),
  commitIndex: logIndex(commit),
});

/**
 * Registers the conformance tests of one {@link NodeStore} implementation under `name`.
 * `makeHarness` is called once per test.
 */
export function describeNodeStoreConformance(name: string, makeHarness: () => Promise<StoreHarness>): void {
  describe(`NodeStore conformance: ${name}`, () => {
    let harness: StoreHarness | undefined;
    afterEach(async () => {
      await harness?.cleanup();
      harness = undefined;
    });
    async function fresh(): Promise<NodeStore> {
      harness = await makeHarness();
      return harness.open();
    }

    it('a fresh store is empty: first index 1, last index 0, no hard state', async () => {
      const store = await fresh();
      expect(store.log.firstIndex()).toBe(1);
      expect(store.log.lastIndex()).toBe(0);
      expect(await store.log.entries(logIndex(1), logIndex(1))).toEqual([]);
      expect(await store.stable.hardState()).toBeUndefined();
      expect(await store.kv.get('a')).toBeUndefined();
      expect(store.batch().empty).toBe(true);
    });

    it('an unsynced write is visible at once and survives a process restart', async () => {
      const store = await fresh();
      const b = store.batch();
      b.appendEntries(entriesAt(1, 2, 1));
      b.setHardState(hs(1, 'n1', 1));
      b.put('a', bytes('1'));
      await b.write({ sync: false });
      expect(store.log.lastIndex()).toBe(2);
      expect(text(await store.kv.get('a'))).toBe('1');
      const reopened = await (harness as StoreHarness).reopen(store);
      expect(reopened.log.lastIndex()).toBe(2);
      expect(await reopened.stable.hardState()).toEqual(hs(1, 'n1', 1));
      expect(text(await reopened.kv.get('a'))).toBe('1');
    });

    it('appends entries and reads back any sub-range (§5.3)', async () => {
      const store = await fresh();
      await writeEntries(store, entriesAt(1, 5, 1));
      await writeEntries(store, entriesAt(6, 8, 2));
      expect(store.log.firstIndex()).toBe(1);
      expect(store.log.lastIndex()).toBe(8);
      expect(await store.log.entries(logIndex(1), logIndex(9))).toEqual([...entriesAt(1, 5, 1), ...entriesAt(6, 8, 2)]);
      expect(await store.log.entries(logIndex(4), logIndex(7))).toEqual([entry(4, 1), entry(5, 1), entry(6, 2)]);
      expect(await store.log.entries(logIndex(9), logIndex(9))).toEqual([]);
    });

    it('keeps config entries and empty data as they were', async () => {
      const store = await fresh();
      const written: Entry[] = [
        { index: logIndex(1), term: term(1), type: 'normal', data: new Uint8Array(0) },
        { index: logIndex(2), term: term(1), type: 'config', data: new Uint8Array([0, 255, 7]) },
      ];
      await writeEntries(store, written);
      const read = await store.log.entries(logIndex(1), logIndex(3));
      expect(read).toEqual(written);
      expect(read[1]?.data).toBeInstanceOf(Uint8Array);
    });

    it('replaces a conflicting suffix and deletes what follows it (§5.3)', async () => {
      const store = await fresh();
      await writeEntries(store, entriesAt(1, 6, 1));
      await writeEntries(store, entriesAt(3, 4, 2));
      expect(store.log.lastIndex()).toBe(4);
      expect(await store.log.entries(logIndex(1), logIndex(5))).toEqual([entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
      await expect(store.log.entries(logIndex(1), logIndex(6))).rejects.toThrow(RangeError);
      // Appending after the truncation continues from the new end.
      await writeEntries(store, entriesAt(5, 5, 3));
      expect(await store.log.entries(logIndex(4), logIndex(6))).toEqual([entry(4, 2), entry(5, 3)]);
    });

    it('lets a later appendEntries in the same batch override staged entries', async () => {
      const store = await fresh();
      const b = store.batch();
      b.appendEntries(entriesAt(1, 5, 1));
      b.appendEntries(entriesAt(3, 3, 2)); // truncates the staged 4..5
      expect(() => b.appendEntries(entriesAt(5, 5, 2))).toThrow(RangeError); // 4 is the next index now
      b.appendEntries(entriesAt(4, 6, 3));
      await b.write();
      expect(store.log.lastIndex()).toBe(6);
      expect(await store.log.entries(logIndex(1), logIndex(7))).toEqual([
        entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 3), entry(5, 3), entry(6, 3),
      ]);
    });

    it('throws RangeError for appends and reads outside [firstIndex, lastIndex + 1]', async () => {
      const store = await fresh();
      expect(() => store.batch().appendEntries(entriesAt(2, 3, 1))).toThrow(RangeError);
      await writeEntries(store, entriesAt(1, 3, 1));
      const b = store.batch();
      expect(() => b.appendEntries([entry(0, 1)])).toThrow(RangeError);
      expect(() => b.appendEntries(entriesAt(5, 5, 1))).toThrow(/entries\[0\]\.index 5/);
      expect(() => b.appendEntries([entry(4, 1), entry(6, 1)])).toThrow(/entries\[1\]\.index/);
      expect(b.empty).toBe(true);
      await expect(store.log.entries(logIndex(0), logIndex(2))).rejects.toThrow(RangeError);
      await expect(store.log.entries(logIndex(1), logIndex(5))).rejects.toThrow(RangeError);
      await expect(store.log.entries(logIndex(3), logIndex(2))).rejects.toThrow(RangeError);
    });

    it('rejects malformed entries, hard states and keys with an error naming the field', async () => {
      const store = await fresh();
      const b = store.batch();
      expect(() => b.appendEntries([{ ...entry(1, 1), data: 'x' as unknown as Uint8Array }])).toThrow(/entries\[0\]\.data/);
      expect(() => b.appendEntries([{ ...entry(1, 1), type: 'other' as Entry['type'] }])).toThrow(/entries\[0\]\.type/);
      expect(() => b.appendEntries([{ ...entry(1, 1), term: term(-1) }])).toThrow(/entries\[0\]\.term/);
      expect(() => b.setHardState({ ...hs(1, 'n1', 0), votedFor: 7 as unknown as HardState['votedFor'] })).toThrow(/votedFor/);
      expect(() => b.put('', bytes('v'))).toThrow(/key/);
      expect(() => b.put('k', 'v' as unknown as Uint8Array)).toThrow(/value/);
      expect(b.empty).toBe(true);
    });

    it('round-trips the hard state; a later write replaces it', async () => {
      const store = await fresh();
      const b = store.batch();
      b.setHardState(hs(1, 'n1', 0));
      b.setHardState(hs(2, 'n2', 0));
      await b.write();
      expect(await store.stable.hardState()).toEqual(hs(2, 'n2', 0));
      const b2 = store.batch();
      b2.setHardState(hs(3, '', 5));
      await b2.write();
      expect(await store.stable.hardState()).toEqual(hs(3, '', 5));
    });

    it('puts, gets, deletes and ranges over the key space with bounds and limit', async () => {
      const store = await fresh();
      const b = store.batch();
      for (const k of ['b', 'a', 'c/1', 'c/2', 'c/3', 'd']) b.put(k, bytes(`v-${k}`));
      b.put('x', bytes('first'));
      b.del('x');
      b.del('y');
      b.put('y', bytes('second'));
      await b.write();
      expect(text(await store.kv.get('a'))).toBe('v-a');
      expect(await store.kv.get('x')).toBeUndefined();
      expect(text(await store.kv.get('y'))).toBe('second');
      expect(await collect(store.kv.range('c/', 'c0'))).toEqual([['c/1', 'v-c/1'], ['c/2', 'v-c/2'], ['c/3', 'v-c/3']]);
      expect(await collect(store.kv.range('c/', 'c0', 2))).toEqual([['c/1', 'v-c/1'], ['c/2', 'v-c/2']]);
      expect(await collect(store.kv.range('c/', 'c0', 0))).toEqual([]);
      expect(await collect(store.kv.range('a', 'c/2'))).toEqual([['a', 'v-a'], ['b', 'v-b'], ['c/1', 'v-c/1']]);
      expect(await collect(store.kv.range('b', 'b'))).toEqual([]);
      const d = store.batch();
      d.del('c/2');
      await d.write();
      expect(await collect(store.kv.range('c/', 'c0'))).toEqual([['c/1', 'v-c/1'], ['c/3', 'v-c/3']]);
      expect(await store.kv.get('c/2')).toBeUndefined();
    });

    it('orders keys by their UTF-8 bytes, as LevelDB does', async () => {
      const store = await fresh();
      const keys = ['k\uffff', 'k\u{1F600}', 'k\u00e9', 'k\x00', 'kz'];
      const b = store.batch();
      for (const k of keys) b.put(k, bytes(k));
      await b.write();
      const got = (await collect(store.kv.range('k', 'l'))).map(([k]) => k);
      expect(got).toEqual(['k\x00', 'kz', 'k\u00e9', 'k\uffff', 'k\u{1F600}']);
    });

    it('reads a range from a consistent view taken when the iteration starts', async () => {
      const store = await fresh();
      const b = store.batch();
      for (let i = 0; i < 50; i++) b.put(`r/${String(i).padStart(3, '0')}`, bytes(String(i)));
      await b.write();
      const seen: string[] = [];
      let mutated = false;
      for await (const [k] of store.kv.range('r/', 'r0')) {
        seen.push(k);
        if (!mutated) {
          mutated = true;
          const d = store.batch();
          for (let i = 1; i < 50; i++) d.del(`r/${String(i).padStart(3, '0')}`);
          d.put('r/999', bytes('late'));
          await d.write();
        }
      }
      expect(seen).toHaveLength(50);
      expect(seen).not.toContain('r/999');
      expect(await collect(store.kv.range('r/', 'r0'))).toEqual([['r/000', '0'], ['r/999', 'late']]);
    });

    it('copies staged values: changing a buffer after put does not change what is stored', async () => {
      const store = await fresh();
      const value = bytes('abc');
      const e = entry(1, 1);
      const b = store.batch();
      b.put('k', value);
      b.appendEntries([e]);
      value[0] = 0x7a;
      e.data[0] = 0x7a;
      await b.write();
      expect(text(await store.kv.get('k'))).toBe('abc');
      expect(await store.log.entries(logIndex(1), logIndex(2))).toEqual([entry(1, 1)]);
    });

    it('makes nothing visible before write() resolves, then all of it (atomic batch)', async () => {
      const store = await fresh();
      await writeEntries(store, entriesAt(1, 4, 1));
      const b = store.batch();
      b.appendEntries(entriesAt(3, 6, 2));
      b.setHardState(hs(2, 'n1', 6));
      b.put('k', bytes('v'));
      expect(b.empty).toBe(false);
      expect(store.log.lastIndex()).toBe(4);
      expect(await store.log.entries(logIndex(1), logIndex(5))).toEqual(entriesAt(1, 4, 1));
      expect(await store.stable.hardState()).toBeUndefined();
      expect(await store.kv.get('k')).toBeUndefined();
      await b.write();
      expect(store.log.lastIndex()).toBe(6);
      expect(await store.log.entries(logIndex(1), logIndex(7))).toEqual([...entriesAt(1, 2, 1), ...entriesAt(3, 6, 2)]);
      expect(await store.stable.hardState()).toEqual(hs(2, 'n1', 6));
      expect(text(await store.kv.get('k'))).toBe('v');
    });

    it('refuses to reuse a written batch', async () => {
      const store = await fresh();
      const b = store.batch();
      b.put('k', bytes('v'));
      await b.write();
      expect(() => b.put('k2', bytes('v'))).toThrow(/already written/);
      await expect(b.write()).rejects.toThrow(/already written/);
    });

    it('keeps log, hard state and key space across close and reopen', async () => {
      let store = await fresh();
      const b = store.batch();
      b.appendEntries(entriesAt(1, 7, 1));
      b.setHardState(hs(4, 'n3', 5));
      b.put('agent/a', bytes('A'));
      b.put('agent/b', bytes('B'));
      await b.write();
      await writeEntries(store, entriesAt(6, 6, 4)); // truncates 7
      store = await (harness as StoreHarness).reopen(store);
      expect(store.log.firstIndex()).toBe(1);
      expect(store.log.lastIndex()).toBe(6);
      expect(await store.log.entries(logIndex(1), logIndex(7))).toEqual([...entriesAt(1, 5, 1), entry(6, 4)]);
      expect(await store.stable.hardState()).toEqual(hs(4, 'n3', 5));
      expect(await collect(store.kv.range('agent/', 'agent0'))).toEqual([['agent/a', 'A'], ['agent/b', 'B']]);
    });

    it('rejects calls after close', async () => {
      const store = await fresh();
      await store.close();
      await expect(store.kv.get('k')).rejects.toThrow();
      await expect(store.stable.hardState()).rejects.toThrow();
      const b = store.batch();
      b.put('k', bytes('v'));
      await expect(b.write()).rejects.toThrow();
    });

    it('compacts the log through an index: first index moves, later entries stay (§7)', async () => {
      let store = await fresh();
      await writeEntries(store, entriesAt(1, 10, 1));
      expect(await store.stable.compactedTo()).toEqual({ index: 0, term: 0 });
      const b = store.batch();
      b.compactLog(logIndex(4), term(1));
      expect(b.empty).toBe(false);
      expect(store.log.firstIndex()).toBe(1); // nothing visible before write()
      await b.write();
      expect(store.log.firstIndex()).toBe(5);
      expect(store.log.lastIndex()).toBe(10);
      expect(await store.stable.compactedTo()).toEqual({ index: 4, term: 1 });
      expect(await store.log.entries(logIndex(5), logIndex(11))).toEqual(entriesAt(5, 10, 1));
      await expect(store.log.entries(logIndex(4), logIndex(6))).rejects.toThrow(RangeError);
      expect(() => store.batch().appendEntries(entriesAt(4, 4, 2))).toThrow(RangeError);
      // A conflicting suffix is still replaced after compaction.
      await writeEntries(store, entriesAt(8, 9, 2));
      store = await (harness as StoreHarness).reopen(store);
      expect(store.log.firstIndex()).toBe(5);
      expect(store.log.lastIndex()).toBe(9);
      expect(await store.stable.compactedTo()).toEqual({ index: 4, term: 1 });
      expect(await store.log.entries(logIndex(5), logIndex(10))).toEqual([...entriesAt(5, 7, 1), ...entriesAt(8, 9, 2)]);
    });

    it('compacts through the last index to an empty log that survives reopen and takes the next append', async () => {
      let store = await fresh();
      await writeEntries(store, entriesAt(1, 6, 2));
      const b = store.batch();
      b.compactLog(logIndex(6), term(2));
      await b.write();
      expect(store.log.firstIndex()).toBe(7);
      expect(store.log.lastIndex()).toBe(6);
      expect(await store.log.entries(logIndex(7), logIndex(7))).toEqual([]);
      store = await (harness as StoreHarness).reopen(store);
      expect(store.log.firstIndex()).toBe(7);
      expect(store.log.lastIndex()).toBe(6);
      expect(await store.stable.compactedTo()).toEqual({ index: 6, term: 2 });
      expect(() => store.batch().appendEntries(entriesAt(8, 8, 3))).toThrow(RangeError);
      await writeEntries(store, entriesAt(7, 8, 3));
      expect(await store.log.entries(logIndex(7), logIndex(9))).toEqual(entriesAt(7, 8, 3));
    });

    it('refuses to compact past the last index or below the compaction point', async () => {
      const store = await fresh();
      await writeEntries(store, entriesAt(1, 5, 1));
      expect(() => store.batch().compactLog(logIndex(6), term(1))).toThrow(RangeError);
      expect(() => store.batch().compactLog(logIndex(-1), term(1))).toThrow(TypeError);
      const b = store.batch();
      b.compactLog(logIndex(3), term(1));
      await b.write();
      expect(() => store.batch().compactLog(logIndex(2), term(1))).toThrow(RangeError);
      const again = store.batch();
      again.compactLog(logIndex(3), term(1)); // the same point again is harmless
      await again.write();
      expect(store.log.firstIndex()).toBe(4);
      expect(await store.log.entries(logIndex(4), logIndex(6))).toEqual(entriesAt(4, 5, 1));
    });

    it('resets the log to a snapshot point: empty, restarts at index + 1, survives reopen', async () => {
      let store = await fresh();
      await writeEntries(store, entriesAt(1, 10, 1));
      const b = store.batch();
      b.resetLog(logIndex(100), term(7));
      await b.write();
      expect(store.log.firstIndex()).toBe(101);
      expect(store.log.lastIndex()).toBe(100);
      expect(await store.stable.compactedTo()).toEqual({ index: 100, term: 7 });
      expect(() => store.batch().appendEntries(entriesAt(11, 11, 7))).toThrow(RangeError);
      expect(() => store.batch().appendEntries(entriesAt(102, 102, 7))).toThrow(RangeError);
      store = await (harness as StoreHarness).reopen(store);
      expect(store.log.firstIndex()).toBe(101);
      expect(store.log.lastIndex()).toBe(100);
      await writeEntries(store, entriesAt(101, 102, 8));
      expect(await store.log.entries(logIndex(101), logIndex(103))).toEqual(entriesAt(101, 102, 8));
      // Reset behind the current end: nothing of the old log remains.
      const r = store.batch();
      r.resetLog(logIndex(101), term(8));
      await r.write();
      store = await (harness as StoreHarness).reopen(store);
      expect(store.log.firstIndex()).toBe(102);
      expect(store.log.lastIndex()).toBe(101);
      expect(await store.log.entries(logIndex(102), logIndex(102))).toEqual([]);
    });

    it('combines reset, compaction and appends in one batch in the order they were staged', async () => {
      let store = await fresh();
      await writeEntries(store, entriesAt(1, 10, 1));
      // Reset then append (a restore): the log restarts after the snapshot with new entries.
      const b = store.batch();
      b.appendEntries(entriesAt(11, 12, 1));
      b.resetLog(logIndex(50), term(3));
      b.appendEntries(entriesAt(51, 53, 3));
      b.setHardState(hs(3, '', 53));
      await b.write();
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([51, 53]);
      // Append then compact part of it, in one batch.
      const c = store.batch();
      c.appendEntries(entriesAt(54, 56, 4));
      c.compactLog(logIndex(55), term(4));
      await c.write();
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([56, 56]);
      expect(await store.log.entries(logIndex(56), logIndex(57))).toEqual([entry(56, 4)]);
      // Truncate a suffix then compact through the new end: the old suffix must not survive.
      await writeEntries(store, entriesAt(57, 60, 4));
      const d = store.batch();
      d.appendEntries(entriesAt(57, 58, 5));
      d.compactLog(logIndex(58), term(5));
      await d.write();
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([59, 58]);
      store = await (harness as StoreHarness).reopen(store);
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([59, 58]);
      expect(await store.stable.compactedTo()).toEqual({ index: 58, term: 5 });
      expect(await store.stable.hardState()).toEqual(hs(3, '', 53));
      await writeEntries(store, entriesAt(59, 59, 6));
      expect(await store.log.entries(logIndex(59), logIndex(60))).toEqual([entry(59, 6)]);
    });

    it('keeps both bounds right when a compaction and an append are written concurrently', async () => {
      let store = await fresh();
      await writeEntries(store, entriesAt(1, 5, 1));
      const compact = store.batch();
      compact.compactLog(logIndex(3), term(1));
      const append = store.batch();
      append.appendEntries(entriesAt(6, 7, 2));
      await Promise.all([compact.write(), append.write()]);
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([4, 7]);
      expect(await store.log.entries(logIndex(4), logIndex(8))).toEqual([...entriesAt(4, 5, 1), ...entriesAt(6, 7, 2)]);
      store = await (harness as StoreHarness).reopen(store);
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([4, 7]);
    });

    it('agrees with a model log under random appends, compactions and resets, across reopen (§7)', async () => {
      const op = fc.oneof(
        fc.record({ kind: fc.constant('append' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), count: fc.integer({ min: 1, max: 3 }) }),
        fc.record({ kind: fc.constant('compact' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
        fc.record({ kind: fc.constant('reset' as const), ahead: fc.integer({ min: -2, max: 5 }) }),
      );
      const step = fc.record({ op, flush: fc.boolean() });
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 10 }), async (steps) => {
          await harness?.cleanup();
          let store = await fresh();
          type Model = { point: { index: number; term: number }; entries: Entry[] };
          let model: Model = { point: { index: 0, term: 0 }, entries: [] };
          let staged: Model | undefined;
          let b = store.batch();
          let t = 0;
          const lastOf = (m: Model): number => m.point.index + m.entries.length;
          for (const { op: o, flush } of steps) {
            t++;
            const base = staged ?? model;
            if (o.kind === 'append') {
              const start = base.point.index + 1 + Math.floor(o.at * (base.entries.length + 0.999));
              const appended = entriesAt(start, start + o.count - 1, t);
              b.appendEntries(appended);
              staged = { point: base.point, entries: [...base.entries.slice(0, start - base.point.index - 1), ...appended] };
            } else if (o.kind === 'compact') {
              const through = base.point.index + Math.floor(o.at * (base.entries.length + 0.999));
              const k = through - base.point.index;
              const termAt = k === 0 ? base.point.term : (base.entries[k - 1] as Entry).term;
              b.compactLog(logIndex(through), term(termAt));
              staged = { point: { index: through, term: termAt }, entries: base.entries.slice(k) };
            } else {
              const index = Math.max(0, lastOf(base) + o.ahead);
              b.resetLog(logIndex(index), term(t));
              staged = { point: { index, term: t }, entries: [] };
            }
            if (flush) {
              await b.write();
              model = staged;
              staged = undefined;
              b = store.batch();
            }
          }
          if (staged !== undefined) {
            await b.write();
            model = staged;
          }
          for (let round = 0; round < 2; round++) {
            expect(store.log.firstIndex()).toBe(model.point.index + 1);
            expect(store.log.lastIndex()).toBe(lastOf(model));
            expect(await store.stable.compactedTo()).toEqual(model.point);
            expect(await store.log.entries(logIndex(model.point.index + 1), logIndex(lastOf(model) + 1))).toEqual(model.entries);
            store = await (harness as StoreHarness).reopen(store);
          }
        }),
        { numRuns: 25 },
      );
    });

    it('gives a state machine view that keeps the contents of when it was taken', async () => {
      const store = await fresh();
      const b = store.batch();
      for (const k of ['a', 'b', 'c', 'k\u{1F600}', 'k\u00e9']) b.put(k, bytes(`v-${k}`));
      await b.write();
      const view = store.stateMachineView();
      const d = store.batch();
      d.del('a');
      d.put('b', bytes('changed'));
      d.put('z', bytes('new'));
      await d.write();
      const e = store.batch();
      e.del('c');
      await e.write();
      const expected: [string, string][] = [['a', 'v-a'], ['b', 'v-b'], ['c', 'v-c'], ['k\u00e9', 'v-k\u00e9'], ['k\u{1F600}', 'v-k\u{1F600}']];
      expect(await collect(view.entries())).toEqual(expected);
      expect(await collect(view.entries())).toEqual(expected); // can be read again
      // The batches hold the same pairs, in order, none empty.
      const batches: (readonly [string, Uint8Array][])[] = [];
      for await (const batch of view.entryBatches()) batches.push(batch);
      expect(batches.every((x) => x.length > 0)).toBe(true);
      expect(batches.flat().map(([k, v]) => [k, Buffer.from(v).toString()])).toEqual(expected);
      expect(await collect(store.kv.range('a', 'zz'))).toEqual([['b', 'changed'], ['k\u00e9', 'v-k\u00e9'], ['k\u{1F600}', 'v-k\u{1F600}'], ['z', 'new']]);
      await view.close();
      await view.close(); // idempotent
      const empty = store.stateMachineView();
      const f = store.batch();
      f.put('late', bytes('x'));
      await f.write();
      expect((await collect(empty.entries())).map(([k]) => k)).toEqual(['b', 'k\u00e9', 'k\u{1F600}', 'z']);
      await empty.close();
    });

    it('installs a new state machine atomically with what finalize stages', async () => {
      let store = await fresh();
      const b = store.batch();
      b.appendEntries(entriesAt(1, 8, 1));
      b.setHardState(hs(1, 'n1', 8));
      for (const k of ['a', 'b', 'c']) b.put(k, bytes(`old-${k}`));
      await b.write();
      const before = store.stateMachineView();
      await store.installStateMachine(pairsOf([['b', 'new-b'], ['d', 'new-d'], ['e', 'new-e']]), (batch) => {
        expect(batch.empty).toBe(true);
        batch.resetLog(logIndex(20), term(3));
        batch.setHardState(hs(3, 'n2', 20));
        batch.put('applied', bytes('20'));
        batch.del('e');
      });
      const expected: [string, string][] = [['applied', '20'], ['b', 'new-b'], ['d', 'new-d']];
      expect(await collect(store.kv.range('', '\u{10FFFF}'))).toEqual(expected);
      expect(await store.kv.get('a')).toBeUndefined();
      expect((await store.kv.getMany(['a', 'b', 'e'])).map(text)).toEqual([undefined, 'new-b', undefined]);
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([21, 20]);
      expect(await store.stable.compactedTo()).toEqual({ index: 20, term: 3 });
      expect(await store.stable.hardState()).toEqual(hs(3, 'n2', 20));
      // A view taken before the install still reads the old key space.
      expect(await collect(before.entries())).toEqual([['a', 'old-a'], ['b', 'old-b'], ['c', 'old-c']]);
      await before.close();
      // Later batches write to the new key space.
      const c = store.batch();
      c.put('f', bytes('after'));
      c.del('d');
      c.appendEntries(entriesAt(21, 21, 3));
      await c.write();
      store = await (harness as StoreHarness).reopen(store);
      expect(await collect(store.kv.range('', '\u{10FFFF}'))).toEqual([['applied', '20'], ['b', 'new-b'], ['f', 'after']]);
      expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([21, 21]);
      // A second install replaces again.
      await store.installStateMachine(pairsOf([['only', '1']]), (batch) => batch.resetLog(logIndex(30), term(4)));
      store = await (harness as StoreHarness).reopen(store);
      expect(await collect(store.kv.range('', '\u{10FFFF}'))).toEqual([['only', '1']]);
      expect(await store.stable.compactedTo()).toEqual({ index: 30, term: 4 });
    });

    it('leaves the old state machine and log untouched when an install fails, and stays usable', async () => {
      let store = await fresh();
      const b = store.batch();
      b.appendEntries(entriesAt(1, 4, 1));
      b.put('a', bytes('old-a'));
      b.put('b', bytes('old-b'));
      await b.write();
      const boom = new Error('snapshot stream broke');
      async function* failing(): AsyncIterable<[string, Uint8Array]> {
        for (let i = 0; i < 100; i++) yield [`x/${String(i).padStart(3, '0')}`, bytes('x'.repeat(100))];
        throw boom;
      }
      let finalized = false;
      await expect(store.installStateMachine(failing(), () => {
        finalized = true;
      })).rejects.toBe(boom);
      expect(finalized).toBe(false);
      await expect(store.installStateMachine(pairsOf([['k', 'v']]), () => {
        throw new Error('finalize failed');
      })).rejects.toThrow('finalize failed');
      await expect(store.installStateMachine(pairsOf([['', 'v']]), () => undefined)).rejects.toThrow(TypeError);
      await expect(store.installStateMachine(pairsOf([['k', 'v']]), (batch) => {
        batch.compactLog(logIndex(9), term(1)); // past the last index
      })).rejects.toThrow(RangeError);
      const check = async (s: NodeStore): Promise<void> => {
        expect(await collect(s.kv.range('', '\u{10FFFF}'))).toEqual([['a', 'old-a'], ['b', 'old-b']]);
        expect([s.log.firstIndex(), s.log.lastIndex()]).toEqual([1, 4]);
        expect(await s.log.entries(logIndex(1), logIndex(5))).toEqual(entriesAt(1, 4, 1));
        expect(await s.stable.compactedTo()).toEqual({ index: 0, term: 0 });
      };
      await check(store);
      const c = store.batch();
      c.put('c', bytes('more'));
      await c.write();
      expect(text(await store.kv.get('c'))).toBe('more');
      const d = store.batch();
      d.del('c');
      await d.write();
      store = await (harness as StoreHarness).reopen(store);
      await check(store);
      await store.installStateMachine(pairsOf([['z', 'fresh']]), (batch) => batch.resetLog(logIndex(10), term(2)));
      expect(await collect(store.kv.range('', '\u{10FFFF}'))).toEqual([['z', 'fresh']]);
    });

    it('refuses views and installs after close', async () => {
      const store = await fresh();
      await store.close();
      expect(() => store.stateMachineView()).toThrow();
      await expect(store.installStateMachine(pairsOf([['k', 'v']]), () => undefined)).rejects.toThrow();
    });

    it('agrees with a model log under random appends, truncations and batch splits (§5.3)', async () => {
      // Each operation: where to start (a fraction of [first, last + 1]), how many entries,
      // and whether to write the batch after it.
      const op = fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), count: fc.integer({ min: 1, max: 4 }), flush: fc.boolean() });
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
          await harness?.cleanup();
          const store = await fresh();
          let model: Entry[] = []; // durable
          let staged: Entry[] | undefined; // model of the current batch's log
          let b = store.batch();
          let t = 0;
          for (const { at, count, flush } of ops) {
            t++;
            const base = staged ?? model;
            const start = 1 + Math.floor(at * (base.length + 0.999));
            const appended = entriesAt(start, start + count - 1, t);
            b.appendEntries(appended);
            staged = [...base.slice(0, start - 1), ...appended];
            if (flush) {
              await b.write();
              model = staged;
              staged = undefined;
              b = store.batch();
              expect(store.log.lastIndex()).toBe(model.length);
              expect(await store.log.entries(logIndex(1), logIndex(model.length + 1))).toEqual(model);
            }
          }
          if (staged !== undefined) {
            await b.write();
            model = staged;
          }
          expect(store.log.lastIndex()).toBe(model.length);
          expect(await store.log.entries(logIndex(1), logIndex(model.length + 1))).toEqual(model);
          // A restart sees the same log: no stale suffix survives on disk.
          const reopened = await (harness as StoreHarness).reopen(store);
          expect(reopened.log.lastIndex()).toBe(model.length);
          expect(await reopened.log.entries(logIndex(1), logIndex(model.length + 1))).toEqual(model);
        }),
        { numRuns: 25 },
      );
    });
  });
}
