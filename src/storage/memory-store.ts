/**
 * An in-memory {@link NodeStore} for tests and simulations, with the same semantics as
 * `LevelStore` (checked by the shared conformance suite): batches are atomic, nothing staged is
 * visible before `write()` resolves, and `range` reads a consistent view in UTF-8 byte order.
 *
 * It models a disk with a page cache. Every written batch is visible at once; a synced one is
 * also durable, and makes every unsynced batch before it durable (LevelDB's write-ahead log is one
 * sequential file). Two kinds of restart:
 *
 * - {@link MemoryStore.reopen}: a process restart (SIGKILL, clean exit): the operating system
 *   keeps what was written, synced or not.
 * - {@link MemoryStore.crash}: a power loss: only the durable state survives, plus the oldest
 *   `keepUnsynced` unsynced batches (the part of the log file the kernel happened to write back).
 *
 * The key space is copy-on-write: {@link MemoryStore.stateMachineView} keeps a reference to the
 * current map and marks it shared, and the next write copies it before changing it. An install
 * builds a new map aside and swaps it in with the finalize batch, in one synchronous step.
 */
import type { Entry, HardState, LogIndex, Term } from '../raft/types.js';
import {
  CorruptionError,
  type KeyValueReader,
  type LogStore,
  type NodeStore,
  type StableStore,
  type StateMachineView,
  type WriteBatch,
  type WriteOptions,
} from './types.js';
import { Staging, writeBatchOver, checkEntriesRange, checkLimit, compareUtf8, type KvOp, type LogBounds } from './staging.js';

/** Pairs per batch of a view's `entryBatches()`. */
const MEMORY_VIEW_BATCH_ENTRIES = 1_024;

/** One copy of everything a disk holds. */
interface MemoryState {
  readonly log: Map<number, Entry>;
  firstIndex: number;
  lastIndex: number;
  hardState: HardState | undefined;
  /** The compaction point: index and term of the last entry the log no longer holds. */
  compacted: { index: LogIndex; term: Term };
  /** The key space; replaced (not changed) while {@link MemoryState.kvShared}. */
  kv: Map<string, Uint8Array>;
  /** True when a view holds `kv`: the next write copies it first. */
  kvShared: boolean;
}

/** A written batch, resolved against the log as it stood: what it does to a state, replayable. */
interface Change {
  readonly deletes: readonly number[];
  readonly puts: ReadonlyMap<number, Entry>;
  readonly bounds: LogBounds;
  readonly compaction: { readonly index: number; readonly term: number } | undefined;
  readonly hardState: HardState | undefined;
  /** An installed key space that replaces the old one before `kvOps` apply. */
  readonly newKv: ReadonlyMap<string, Uint8Array> | undefined;
  readonly kvOps: readonly KvOp[];
}

/** What the stores made by `reopen` and `crash` share: the two states and the unsynced changes. */
interface MemoryDisk {
  /** What readers see (the page cache). */
  visible: MemoryState;
  /** What survives a power loss. */
  durable: MemoryState;
  /** Written but not synced, oldest first: applied to `visible`, not yet to `durable`. */
  unsynced: Change[];
}

function emptyState(): MemoryState {
  return { log: new Map(), firstIndex: 1, lastIndex: 0, hardState: undefined, compacted: { index: 0 as LogIndex, term: 0 as Term }, kv: new Map(), kvShared: false };
}

function copyState(s: MemoryState): MemoryState {
  return { log: new Map(s.log), firstIndex: s.firstIndex, lastIndex: s.lastIndex, hardState: s.hardState, compacted: { ...s.compacted }, kv: new Map(s.kv), kvShared: false };
}

function copyEntry(e: Entry): Entry {
  return { term: e.term, index: e.index, type: e.type, data: e.data.slice() };
}

/** Applies `c` to `s` in one synchronous step. */
function applyChange(s: MemoryState, c: Change): void {
  for (const index of c.deletes) s.log.delete(index);
  for (const [index, e] of c.puts) s.log.set(index, e);
  s.firstIndex = c.bounds.firstIndex;
  s.lastIndex = c.bounds.lastIndex;
  if (c.compaction !== undefined) s.compacted = { index: c.compaction.index as LogIndex, term: c.compaction.term as Term };
  if (c.hardState !== undefined) s.hardState = c.hardState;
  if (c.newKv !== undefined) {
    s.kv = new Map(c.newKv);
    s.kvShared = false;
  }
  if (c.kvOps.length > 0 && s.kvShared) {
    s.kv = new Map(s.kv);
    s.kvShared = false;
  }
  for (const op of c.kvOps) {
    if (op.type === 'put') s.kv.set(op.key, op.value);
    else s.kv.delete(op.key);
  }
}

/** In-memory {@link NodeStore}; see the module documentation. */
export class MemoryStore implements NodeStore {
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly kv: KeyValueReader;
  private closed = false;

  /** Creates an empty store; {@link reopen} and {@link crash} pass on the disk of the store they replace. */
  constructor(private readonly disk: MemoryDisk = { visible: emptyState(), durable: emptyState(), unsynced: [] }) {
    const store = this;
    this.log = {
      firstIndex: () => store.state.firstIndex as LogIndex,
      lastIndex: () => store.state.lastIndex as LogIndex,
      entries: async (lo, hi) => store.entries(lo, hi),
    };
    this.stable = {
      hardState: async () => {
        store.checkOpen();
        const hs = store.state.hardState;
        return hs === undefined ? undefined : { ...hs };
      },
      compactedTo: async () => {
        store.checkOpen();
        return { ...store.state.compacted };
      },
    };
    this.kv = {
      get: async (key) => {
        store.checkOpen();
        const v = store.state.kv.get(key);
        return v === undefined ? undefined : v.slice();
      },
      getMany: async (keys) => {
        store.checkOpen();
        return keys.map((key) => store.state.kv.get(key)?.slice());
      },
      range: (gte, lt, limit) => store.range(gte, lt, limit),
    };
  }

  private get state(): MemoryState {
    return this.disk.visible;
  }

  /**
   * The term of the entry at `index` as readers see it, synchronously (for invariant checks):
   * `undefined` when the log does not hold it; the compaction point's term at that index.
   */
  termAt(index: number): Term | undefined {
    const s = this.state;
    if (index === s.compacted.index) return s.compacted.term;
    return s.log.get(index)?.term;
  }

  /** Index of the last entry the log no longer holds (the compaction point), synchronously. */
  get compactedIndex(): number {
    return this.state.compacted.index;
  }

  /** The hard state as readers see it, synchronously (for invariant checks). */
  get currentHardState(): HardState | undefined {
    return this.state.hardState;
  }

  /** Batches written without sync and not yet made durable by a later synced one. */
  get unsyncedBatches(): number {
    return this.disk.unsynced.length;
  }

  /**
   * A process restart: closes this store and returns a new one over the same disk, with every
   * written batch (the operating system keeps unsynced ones). Staged but unwritten batches are lost.
   */
  reopen(): MemoryStore {
    this.closed = true;
    return new MemoryStore(this.disk);
  }

  /**
   * A power loss: closes this store and returns a new one holding only what was durable, plus
   * the oldest `keepUnsynced` unsynced batches (0 by default). Throws `RangeError` when
   * `keepUnsynced` is not a non-negative integer.
   */
  crash(keepUnsynced = 0): MemoryStore {
    if (!Number.isSafeInteger(keepUnsynced) || keepUnsynced < 0) throw new RangeError(`keepUnsynced must be a non-negative integer, got ${String(keepUnsynced)}`);
    this.closed = true;
    const d = this.disk;
    for (const c of d.unsynced.slice(0, keepUnsynced)) applyChange(d.durable, c);
    return new MemoryStore({ visible: copyState(d.durable), durable: d.durable, unsynced: [] });
  }

  /** Starts a new atomic batch; see {@link WriteBatch}. */
  batch(): WriteBatch {
    const staging = new Staging();
    return this.batchOver(staging, async (options) => {
      this.checkOpen();
      this.write(staging, undefined, options?.sync ?? true);
    });
  }

  private batchOver(staging: Staging, write: (options?: WriteOptions) => Promise<void>): WriteBatch {
    return writeBatchOver(staging, (): LogBounds => ({ firstIndex: this.state.firstIndex, lastIndex: this.state.lastIndex }), write);
  }

  /**
   * Writes a batch in one synchronous step, so that it becomes visible all at once; with
   * `newKv`, that map becomes the key space first and the batch's puts and deletes go to it.
   * A synced write makes it, and every unsynced write before it, durable.
   */
  private write(staging: Staging, newKv: Map<string, Uint8Array> | undefined, sync: boolean): void {
    const s = this.state;
    const plan = staging.beginWrite({ firstIndex: s.firstIndex, lastIndex: s.lastIndex });
    const change: Change = {
      deletes: plan.deletes,
      puts: staging.entries,
      bounds: plan.bounds,
      compaction: plan.compaction,
      hardState: staging.hardState,
      newKv,
      kvOps: staging.kvOps,
    };
    if (newKv !== undefined) {
      // The visible state takes the new map itself; the durable one gets a copy.
      s.kv = newKv;
      s.kvShared = false;
      applyChange(s, { ...change, newKv: undefined });
    } else {
      applyChange(s, change);
    }
    const d = this.disk;
    d.unsynced.push(change);
    if (sync) {
      for (const c of d.unsynced) applyChange(d.durable, c);
      d.unsynced = [];
    }
  }

  /**
   * A view of the key space as of the last written batch: the current map, kept as it is by
   * copy-on-write. Throws `Error` when the store is closed.
   */
  stateMachineView(): StateMachineView {
    this.checkOpen();
    this.state.kvShared = true;
    const kv = this.state.kv;
    let closed = false;
    async function* entryBatches(): AsyncIterable<[string, Uint8Array][]> {
      if (closed) throw new Error('state machine view is closed');
      const keys = [...kv.keys()].sort(compareUtf8);
      for (let i = 0; i < keys.length; i += MEMORY_VIEW_BATCH_ENTRIES) {
        yield keys.slice(i, i + MEMORY_VIEW_BATCH_ENTRIES).map((key): [string, Uint8Array] => [key, (kv.get(key) as Uint8Array).slice()]);
      }
    }
    return {
      async *entries() {
        for await (const batch of entryBatches()) yield* batch;
      },
      entryBatches,
      async close() {
        closed = true;
      },
    };
  }

  /**
   * Replaces the key space by `pairs` (see {@link NodeStore.installStateMachine}): builds a new
   * map, then applies the batch `finalize` staged and swaps the map in, in one synchronous,
   * synced step (the batch's puts and deletes go to the new map; calling its `write` rejects).
   * On any failure nothing changes and the error is rethrown. Throws `TypeError` on a pair that
   * is not `[non-empty string, Uint8Array]`.
   */
  async installStateMachine(pairs: AsyncIterable<[string, Uint8Array]>, finalize: (batch: WriteBatch) => void): Promise<void> {
    this.checkOpen();
    const kv = new Map<string, Uint8Array>();
    for await (const pair of pairs) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError('each pair must be [key, value]');
      const [key, value] = pair as [unknown, unknown];
      if (typeof key !== 'string' || key.length === 0) throw new TypeError('pair key must be a non-empty string');
      if (!(value instanceof Uint8Array)) throw new TypeError(`value of ${JSON.stringify(key)} must be a Uint8Array`);
      kv.set(key, value.slice());
    }
    this.checkOpen();
    const staging = new Staging();
    finalize(this.batchOver(staging, () => Promise.reject(new Error('the finalize batch is written by installStateMachine'))));
    this.write(staging, kv, true);
  }

  /** Closes the store; further reads and writes reject. */
  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('store is closed');
  }

  private async entries(lo: LogIndex, hi: LogIndex): Promise<Entry[]> {
    this.checkOpen();
    const { firstIndex, lastIndex } = this.state;
    checkEntriesRange(lo, hi, firstIndex, lastIndex);
    const out: Entry[] = [];
    for (let index = lo; index < hi; index++) {
      const e = this.state.log.get(index);
      if (e === undefined) throw new CorruptionError(`log entry ${index} is missing from the memory store`);
      out.push(copyEntry(e));
    }
    return out;
  }

  private async *range(gte: string, lt: string, limit?: number): AsyncIterable<[string, Uint8Array]> {
    this.checkOpen();
    const max = checkLimit(limit);
    // The consistent view: keys and values are captured before the first item is yielded.
    const keys = [...this.state.kv.keys()]
      .filter((k) => compareUtf8(k, gte) >= 0 && compareUtf8(k, lt) < 0)
      .sort(compareUtf8)
      .slice(0, max === Infinity ? undefined : max);
    const view = keys.map((k): [string, Uint8Array] => [k, (this.state.kv.get(k) as Uint8Array).slice()]);
    for (const item of view) yield item;
  }
}
