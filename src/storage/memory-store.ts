/**
 * An in-memory {@link NodeStore} for tests and simulations, with the same semantics as
 * `LevelStore` (checked by the shared conformance suite): batches are atomic, nothing staged is
 * visible before `write()` resolves, and `range` reads a consistent view in UTF-8 byte order.
 *
 * {@link MemoryStore.reopen} stands in for a process restart: it returns a new store over the
 * same "durable" state, which is everything whose `write()` resolved.
 */
import type { Entry, HardState, LogIndex } from '../raft/types.js';
import { CorruptionError, type KeyValueReader, type LogStore, type NodeStore, type StableStore, type WriteBatch } from './types.js';
import { Staging, checkEntriesRange, checkLimit, compareUtf8, type LogBounds } from './staging.js';

/** The state that survives {@link MemoryStore.reopen}: what a disk would hold. */
interface MemoryDurableState {
  readonly log: Map<number, Entry>;
  firstIndex: number;
  lastIndex: number;
  hardState: HardState | undefined;
  readonly kv: Map<string, Uint8Array>;
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
    kv: new Map(),
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
    const bounds = (): LogBounds => ({ firstIndex: this.state.firstIndex, lastIndex: this.state.lastIndex });
    return {
      appendEntries: (entries) => staging.append(entries, bounds()),
      setHardState: (hs) => staging.setHardState(hs),
      put: (key, value) => staging.put(key, value),
      del: (key) => staging.del(key),
      get empty() {
        return staging.empty;
      },
      write: async () => {
        this.checkOpen();
        const deletes = staging.beginWrite(bounds());
        // One synchronous step: the batch becomes visible all at once.
        const s = this.state;
        for (const index of deletes) s.log.delete(index);
        for (const [index, e] of staging.entries) s.log.set(index, e);
        if (staging.lastIndex !== undefined) s.lastIndex = staging.lastIndex;
        if (staging.hardState !== undefined) s.hardState = staging.hardState;
        for (const op of staging.kvOps) {
          if (op.type === 'put') s.kv.set(op.key, op.value);
          else s.kv.delete(op.key);
        }
      },
    };
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
