/**
 * An in-memory {@link NodeStore} for tests and simulations, with the same semantics as
 * `LevelStore` (checked by the shared conformance suite): batches are atomic, nothing staged is
 * visible before `write()` resolves, and `range` reads a consistent view in UTF-8 byte order.
 *
 * {@link MemoryStore.reopen} stands in for a process restart: it returns a new store over the
 * same "durable" state, which is everything whose `write()` resolved.
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
} from './types.js';
import { Staging, writeBatchOver, checkEntriesRange, checkLimit, compareUtf8, type LogBounds } from './staging.js';

/** The state that survives {@link MemoryStore.reopen}: what a disk would hold. */
interface MemoryDurableState {
  readonly log: Map<number, Entry>;
  firstIndex: number;
  lastIndex: number;
  hardState: HardState | undefined;
  /** The compaction point: index and term of the last entry the log no longer holds. */
  compacted: { index: LogIndex; term: Term };
  /** The key space; replaced (not changed) while {@link MemoryDurableState.kvShared}. */
  kv: Map<string, Uint8Array>;
  /** True when a view holds `kv`: the next write copies it first. */
  kvShared: boolean;
}

function copyEntry(e: Entry): Entry {
  return { term: e.term, index: e.index, type: e.type, data: e.data.slice() };
}

/** In-memory {@link NodeStore}; see the module documentation. */
export class MemoryStore implements NodeStore {
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly kv: KeyValueReader;
  private closed = false;

  /**
   * Creates an empty store (first index 1, last index 0, no hard state, empty key space);
   * {@link MemoryStore.reopen} passes the durable state of the store it replaces.
   */
  constructor(private readonly state: MemoryDurableState = {
    log: new Map(),
    firstIndex: 1,
    lastIndex: 0,
    hardState: undefined,
    compacted: { index: 0 as LogIndex, term: 0 as Term },
    kv: new Map(),
    kvShared: false,
  }) {
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

  /**
   * Closes this store and returns a new one over the same durable state, as a restart would see
   * it. Staged but unwritten batches are lost.
   */
  reopen(): MemoryStore {
    this.closed = true;
    return new MemoryStore(this.state);
  }

  /** Starts a new atomic batch; see {@link WriteBatch}. */
  batch(): WriteBatch {
    const staging = new Staging();
    return this.batchOver(staging, async () => {
      this.checkOpen();
      this.apply(staging, undefined);
    });
  }

  private batchOver(staging: Staging, write: () => Promise<void>): WriteBatch {
    return writeBatchOver(staging, (): LogBounds => ({ firstIndex: this.state.firstIndex, lastIndex: this.state.lastIndex }), write);
  }

  /**
   * Applies a batch in one synchronous step, so that it becomes visible all at once; with
   * `newKv`, that map becomes the key space first and the batch's puts and deletes go to it.
   */
  private apply(staging: Staging, newKv: Map<string, Uint8Array> | undefined): void {
    const s = this.state;
    const plan = staging.beginWrite({ firstIndex: s.firstIndex, lastIndex: s.lastIndex });
    for (const index of plan.deletes) s.log.delete(index);
    for (const [index, e] of staging.entries) s.log.set(index, e);
    s.firstIndex = plan.bounds.firstIndex;
    s.lastIndex = plan.bounds.lastIndex;
    if (plan.compaction !== undefined) {
      s.compacted = { index: plan.compaction.index as LogIndex, term: plan.compaction.term as Term };
    }
    if (staging.hardState !== undefined) s.hardState = staging.hardState;
    if (newKv !== undefined) {
      s.kv = newKv;
      s.kvShared = false;
    }
    if (staging.kvOps.length > 0 && s.kvShared) {
      s.kv = new Map(s.kv);
      s.kvShared = false;
    }
    for (const op of staging.kvOps) {
      if (op.type === 'put') s.kv.set(op.key, op.value);
      else s.kv.delete(op.key);
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
    return {
      async *entries() {
        if (closed) throw new Error('state machine view is closed');
        const keys = [...kv.keys()].sort(compareUtf8);
        for (const key of keys) yield [key, (kv.get(key) as Uint8Array).slice()];
      },
      async close() {
        closed = true;
      },
    };
  }

  /**
   * Replaces the key space by `pairs` (see {@link NodeStore.installStateMachine}): builds a new
   * map, then applies the batch `finalize` staged and swaps the map in, in one synchronous step
   * (the batch's puts and deletes go to the new map; calling its `write` rejects). On any
   * failure nothing changes and the error is rethrown. Throws `TypeError` on a pair that is not
   * `[non-empty string, Uint8Array]`.
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
    this.apply(staging, kv);
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
