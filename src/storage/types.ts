/**
 * Storage ports of a node, in the shape of hashicorp/raft's `LogStore` / `StableStore`, with one
 * difference that matters for speed: every write goes into a {@link WriteBatch}, so that the
 * entries, the hard state and the state machine's changes of one Raft `Ready` reach the disk in
 * a single synced write (one fsync per batch, never one per request).
 *
 * Two implementations share one conformance suite: `LevelStore` (LevelDB via `level`, values
 * encoded with `msgpackr`, a CRC32 per entry) and `MemoryStore` (tests).
 */
import type { Entry, HardState, LogIndex, Snapshot } from '../raft/types.js';

/** Read access to the persisted Raft log. */
export interface LogStore {
  /**
   * Index of the first entry still stored; `lastIndex() + 1` when the log is empty (after a
   * compaction to index N the first index is N + 1; a fresh log has first index 1).
   */
  firstIndex(): LogIndex;
  /** Index of the last stored entry, or `firstIndex() - 1` when the log is empty. */
  lastIndex(): LogIndex;
  /**
   * Entries with `lo <= index < hi`, in order. Throws `RangeError` outside
   * `[firstIndex, lastIndex + 1]`; throws {@link CorruptionError} when a stored entry fails its
   * checksum or does not decode.
   */
  entries(lo: LogIndex, hi: LogIndex): Promise<Entry[]>;
}

/** Read access to the persisted hard state (`currentTerm`, `votedFor`, `commitIndex`). */
export interface StableStore {
  /** The last hard state written, or `undefined` on a fresh store. */
  hardState(): Promise<HardState | undefined>;
}

/** Read access to the state machine's key space (keys are UTF-8 strings, values bytes). */
export interface KeyValueReader {
  /** The value at `key`, or `undefined`. */
  get(key: string): Promise<Uint8Array | undefined>;
  /**
   * The values at `keys`, in the same order (`undefined` where absent): one round trip to the
   * store instead of one per key, for applying a batch of commands or reading a page.
   */
  getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]>;
  /**
   * Entries with `gte <= key < lt` in ascending key order, at most `limit` of them (no limit when
   * omitted). Reads a consistent view taken when the iteration starts.
   */
  range(gte: string, lt: string, limit?: number): AsyncIterable<[string, Uint8Array]>;
}

/**
 * One atomic write, made durable with `sync: true`. Methods stage changes; nothing is visible to
 * readers until {@link WriteBatch.write} resolves, and then all of it is.
 */
export interface WriteBatch {
  /**
   * Stages `entries` (consecutive indexes). Any stored entry at an index `>= entries[0].index` is
   * replaced; stored entries past the last new one are deleted (the conflicting suffix, §5.3).
   */
  appendEntries(entries: readonly Entry[]): void;
  /** Stages the hard state. */
  setHardState(hardState: HardState): void;
  /** Stages a put into the state machine's key space. */
  put(key: string, value: Uint8Array): void;
  /** Stages a delete from the state machine's key space. */
  del(key: string): void;
  /** True when nothing is staged. */
  readonly empty: boolean;
  /** Writes everything staged, atomically and synced; the batch cannot be reused. */
  write(): Promise<void>;
}

/** A node's whole persistent state: the Raft log, the hard state and the state machine's data. */
export interface NodeStore {
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly kv: KeyValueReader;
  /** Starts a new atomic write. */
  batch(): WriteBatch;
  /** Closes the store; further calls reject. */
  close(): Promise<void>;
}

/** A stored entry or record failed its checksum or could not be decoded: the node must stop. */
export class CorruptionError extends Error {
  override readonly name = 'CorruptionError';
}

export type { Snapshot };
