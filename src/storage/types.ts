/**
 * Storage ports of a node, in the shape of hashicorp/raft's `LogStore` / `StableStore`, with one
 * difference that matters for speed: every write goes into a {@link WriteBatch}, so that the
 * entries, the hard state and the state machine's changes of one Raft `Ready` reach the disk in
 * a single synced write (one fsync per batch, never one per request).
 *
 * Two implementations share one conformance suite: `LevelStore` (LevelDB via `level`, values
 * encoded with `msgpackr`, a CRC32 per entry) and `MemoryStore` (tests).
 */
import type { ConfState, Entry, HardState, LogIndex, Snapshot, Term } from '../raft/types.js';

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
  /**
   * The last log compaction point written with {@link WriteBatch.compactLog} or
   * {@link WriteBatch.resetLog}: index and term of the last entry the log no longer holds
   * (`{ index: 0, term: 0 }` on a store never compacted). `firstIndex() === index + 1`.
   */
  compactedTo(): Promise<{ index: LogIndex; term: Term }>;
}

/** What a snapshot file holds: the state machine as of `index` (§7, Figure 12). */
export interface SnapshotMeta {
  /** Last log index the snapshot covers. */
  readonly index: LogIndex;
  /** Term of the entry at `index`. */
  readonly term: Term;
  /** The cluster configuration as of `index`. */
  readonly confState: ConfState;
  /** Size of the file's payload, in bytes. */
  readonly sizeBytes: number;
  /** CRC32 (zlib.crc32) of the payload. */
  readonly crc32: number;
}

/** A snapshot being written: chunks in order, then `finish` makes it durable and visible at once. */
export interface SnapshotSink {
  /** Appends payload bytes. */
  write(chunk: Uint8Array): Promise<void>;
  /** fsyncs the file and renames it into place atomically; returns its metadata. */
  finish(): Promise<SnapshotMeta>;
  /** Discards a partial snapshot (a crash leaves only a temp file, removed at the next open). */
  abort(): Promise<void>;
}

/**
 * Snapshot files of a node, in the shape of hashicorp/raft's `SnapshotStore`: written in chunks,
 * finished atomically, read back in chunks. Files live in `<dataDir>/snapshots/`.
 */
export interface SnapshotStore {
  /** Starts a new snapshot for the given point of the log. */
  create(meta: { index: LogIndex; term: Term; confState: ConfState }): SnapshotSink;
  /** The newest finished snapshot, or `undefined`. */
  latest(): Promise<SnapshotMeta | undefined>;
  /**
   * Reads a finished snapshot's payload in chunks of at most `chunkBytes`; throws
   * {@link CorruptionError} at the end when size or CRC32 do not match its metadata.
   */
  read(meta: SnapshotMeta, chunkBytes: number): AsyncIterable<Uint8Array>;
  /** Deletes every finished snapshot but the newest `retain` (at least 1), and stray temp files. */
  prune(retain: number): Promise<void>;
}

/** A point-in-time view of the whole state machine key space, unaffected by later writes. */
export interface StateMachineView {
  /** Every key/value pair, in key order. */
  entries(): AsyncIterable<[string, Uint8Array]>;
  /**
   * The same pairs in batches (consecutive, in key order, none empty): what reads the whole
   * view (a snapshot, a backup) takes, so that it pays one await per batch, not one per pair.
   */
  entryBatches(): AsyncIterable<readonly [string, Uint8Array][]>;
  /** Releases the view (the underlying LevelDB snapshot). */
  close(): Promise<void>;
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
  /**
   * A forward cursor over the keys `gte <= key < lt` of a consistent view taken when it is
   * opened, that can seek: what a find joining several index ranges moves along, one open
   * iterator per range instead of a new range read at every leap. Optional: without it, readers
   * fall back to {@link range}.
   */
  cursor?(gte: string, lt: string): KeyCursor;
}

/** See {@link KeyValueReader.cursor}. Not safe for concurrent calls: one `next` at a time. */
export interface KeyCursor {
  /** Moves to the first key `>= key` (within the cursor's bounds): the next `next` reads from there. */
  seek(key: string): void;
  /** The next keys, at most `n` (fewer only at the end; none past it); values are not read. */
  next(n: number): Promise<string[]>;
  /** Releases the cursor and its view (idempotent). */
  close(): Promise<void>;
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
  /**
   * Stages log compaction (§7): deletes stored entries with index `<= through` and records
   * (`through`, `term`) as the compaction point, so `firstIndex()` becomes `through + 1` once
   * written. `through` must be `<= lastIndex()`; entries after it are kept.
   */
  compactLog(through: LogIndex, term: Term): void;
  /**
   * Stages the log's replacement by a snapshot at (`index`, `term`): deletes every stored entry
   * and records the compaction point, so the log restarts empty at `index + 1`.
   */
  resetLog(index: LogIndex, term: Term): void;
  /** True when nothing is staged. */
  readonly empty: boolean;
  /**
   * Writes everything staged, atomically; the batch cannot be reused. With `sync` (the default)
   * it is durable when the promise resolves (one fsync). Without it, it is visible to readers at
   * once but a power loss may lose it, together with every later unsynced write and never with
   * an earlier synced one: a synced write makes every write before it durable too (LevelDB's
   * write-ahead log is one sequential file).
   */
  write(options?: WriteOptions): Promise<void>;
}

/** Options of {@link WriteBatch.write}. */
export interface WriteOptions {
  /** fsync before resolving (default true). */
  readonly sync?: boolean;
}

/** A node's whole persistent state: the Raft log, the hard state and the state machine's data. */
export interface NodeStore {
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly kv: KeyValueReader;
  /** Starts a new atomic write. */
  batch(): WriteBatch;
  /**
   * Takes, synchronously, a consistent view of the state machine key space as of the last
   * written batch (a LevelDB snapshot): applies may go on while it is read.
   */
  stateMachineView(): StateMachineView;
  /**
   * Replaces the whole state machine key space by `pairs` (in key order), atomically: the pairs
   * are written aside in several unsynced batches, then ONE synced batch makes them the live key
   * space together with whatever `finalize` stages in it (e.g. `resetLog`, the hard state, the
   * applied index). A crash before that batch leaves the previous key space and log intact; the
   * partial copy is removed at the next open. Readers see the old key space until then.
   */
  installStateMachine(pairs: AsyncIterable<[string, Uint8Array]>, finalize: (batch: WriteBatch) => void): Promise<void>;
  /** Closes the store; further calls reject. */
  close(): Promise<void>;
}

/** A stored entry or record failed its checksum or could not be decoded: the node must stop. */
export class CorruptionError extends Error {
  override readonly name = 'CorruptionError';
}

export type { Snapshot };
