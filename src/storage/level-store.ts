/**
 * The LevelDB {@link NodeStore}: one database per node holding these key spaces (sublevels):
 *
 * - `log`:  key = entry index as 16 hex digits, value = `crc32 ‖ msgpack(entry)` (see `codec.ts`);
 * - `meta`: key `hardstate`, value = `crc32 ‖ msgpack(hardState)`;
 *           key `compacted`, value = `crc32 ‖ msgpack({index, term})`, the log's compaction point
 *           (absent on a store never compacted: index 0, term 0);
 *           key `smgen`, value = `crc32 ‖ msgpack({generation})`, the live state machine
 *           generation (absent: generation 0);
 * - `sm` (generation 0) or `sm-<generation>` in decimal (generation >= 1): the state machine's
 *           keys and values, unchanged. Only the live generation is read and written.
 *
 * Every {@link WriteBatch} becomes one LevelDB batch, written with `sync: true` unless the
 * caller asks for an unsynced write (a Ready that changed no term, vote or entry), so the entries,
 * hard state and state machine changes of one Raft `Ready` cost at most one fsync and land
 * together or not at all (the shape of hashicorp/raft's `LogStore`/`StableStore` with etcd's one synced
 * write per `Ready`). Log compaction (§7) deletes the compacted entries and records the
 * compaction point in the same batch.
 *
 * Installing a snapshot writes its pairs into the next generation's sublevel in unsynced batches
 * of at most {@link INSTALL_BATCH_BYTES}, then ONE synced batch switches `smgen` to it together
 * with what the caller stages (typically the log reset and the hard state). The previous
 * generation is then cleared in the background. A crash before the switch leaves the previous
 * generation live and the log untouched; at open, every generation sublevel but the live one is
 * cleared.
 *
 * `firstIndex()`/`lastIndex()` are kept in memory: read from the compaction point and the first
 * and last log key at open, updated after a batch's write resolves. A batch is checked against
 * those durable bounds plus what it stages itself, so the batch that appends after another one
 * must be started after the other's `write()` resolved.
 */
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import { silentLogger, type Logger } from '../log.js';
import type { Entry, HardState, LogIndex, Term } from '../raft/types.js';
import {
  decodeCompactionPoint,
  decodeEntry,
  decodeGeneration,
  decodeHardState,
  decodeLogKey,
  encodeCompactionPoint,
  encodeEntry,
  encodeGeneration,
  encodeHardState,
  encodeLogKey,
} from './codec.js';
import { Staging, writeBatchOver, checkEntriesRange, checkLimit, type LogBounds } from './staging.js';
import {
  CorruptionError,
  type KeyCursor,
  type KeyValueReader,
  type LogStore,
  type NodeStore,
  type StableStore,
  type StateMachineView,
  type WriteBatch,
  type WriteOptions,
} from './types.js';

/** Name of the sublevel holding the Raft log. */
export const LOG_SUBLEVEL = 'log';
/** Name of the sublevel holding the hard state, the compaction point and the live generation. */
export const META_SUBLEVEL = 'meta';
/** Name of the sublevel holding generation 0 of the state machine's key space. */
export const SM_SUBLEVEL = 'sm';
/** Key of the hard state in the `meta` sublevel. */
export const HARD_STATE_KEY = 'hardstate';
/** Key of the log's compaction point in the `meta` sublevel. */
export const COMPACTED_KEY = 'compacted';
/** Key of the live state machine generation in the `meta` sublevel. */
export const SM_GENERATION_KEY = 'smgen';
/**
 * Upper bound, in bytes (UTF-8 key bytes plus value bytes), of one unsynced batch that copies
 * snapshot pairs into the next generation during {@link LevelStore.installStateMachine}.
 */
export const INSTALL_BATCH_BYTES = 4 * 1024 * 1024;

/**
 * Most keys a `getMany` reads on the calling thread (`getSync`, one key after another); more go
 * to LevelDB's worker thread in one call. A point read of a record or an index counter costs a
 * few µs, less than handing it to a worker and back (two thread wake-ups), and an apply or a
 * `Get` needs one or two of them; a page of records is read off the main thread.
 */
export const SYNC_READ_MAX_KEYS = 8;

/**
 * LevelDB's `max_open_files`, the number of files it keeps open; all but 10 of them are table
 * files in its table cache (classic-level's default is 1000, LevelDB's floor is 74). LevelDB 1.20
 * on a 64-bit host reads every open table through an `mmap` of the whole file, and the pages a
 * read touches stay in the process's resident set until the table leaves the cache: with the
 * default, the leader of a million agents (about a thousand 2 MiB tables) held 1.5 GiB of file
 * pages. At the floor, at most 64 tables are mapped, so that part of the RSS stays under about
 * 128 MiB whatever the store holds; a read of a table outside the cache reopens it (its footer,
 * index and filter blocks) first.
 */
export const MAX_OPEN_FILES = 74;

/**
 * Bytes LevelDB gathers in its memtable before writing them out as a level-0 table
 * (`write_buffer_size`; LevelDB's default is 4 MiB): 16 MiB. Every write of a node lands here
 * twice over (its log entry, then the state machine's keys), and each memtable written out is
 * later merged into level 1; four times fewer, larger level-0 tables cost LevelDB's threads less
 * of that merging per write. Measured on `bench:compare`'s agents (2026-12-03): `bench:apply`
 * process CPU 206-244 → 166-180 µs per agent (three pairs), `bench:compare` w64 server CPU
 * 1.46-1.49 → 1.30-1.34 ms per write (two pairs, alternated). The price is memory: up to two
 * memtables (one being written out) per node, 32 MiB at worst against 8; `bench:scale
 * --checkpoints 10000,100000` with it put the nodes at 253-456 MiB RSS at 100,000 agents
 * (leader 253), inside the 368-446 MiB of earlier runs with the default.
 */
export const WRITE_BUFFER_BYTES = 16 * 1024 * 1024;

/** Options every sublevel uses: UTF-8 keys, raw bytes as values. */
const SUBLEVEL_OPTIONS = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;
/** Sublevel separator of abstract-level; `"` is the character right after it. */
const SEPARATOR = '!';
const AFTER_SEPARATOR = '"';
/** Bounds of the root keys of every state machine generation: `!sm!…` and `!sm-<n>!…`. */
const GENERATION_KEYS_GTE = `${SEPARATOR}${SM_SUBLEVEL}${SEPARATOR}`;
const GENERATION_KEYS_LT = `${SEPARATOR}${SM_SUBLEVEL}.`;

type Db = Level<string, Uint8Array>;
type Sublevel = ReturnType<typeof openSublevel>;

function openSublevel(db: Db, name: string) {
  return db.sublevel<string, Uint8Array>(name, SUBLEVEL_OPTIONS);
}

/** abstract-level's chained batch as its implementation (classic-level) sees it. */
interface NativeChainedBatch {
  _put(key: string, value: Uint8Array): void;
  _del(key: string): void;
}

/**
 * Fills a chained batch of the root database by full key: the sublevel's `prefix` followed by
 * the key, which is the key the sublevel itself would write (UTF-8 keys and raw values at every
 * level, so nothing needs encoding).
 *
 * Past its first operation it queues straight into classic-level's native batch (`_put`,
 * `_del`: abstract-level's interface for implementations). abstract-level's public `put` checks,
 * clones and re-encodes each operation in JS; a Ready's batch holds every index key its records
 * touch, and those public calls were the largest item of a follower's profile under load (with
 * 64 writers in flight, 20% of its busy time), twice the cost per key of the native call. The
 * first operation goes through the public API because abstract-level counts only those and skips
 * the write of a batch it counts as empty. Without the native methods (another implementation),
 * every operation takes the public path.
 */
class PrefixedBatch {
  private readonly native: NativeChainedBatch | undefined;
  private queued = false;

  constructor(private readonly batch: ReturnType<Db['batch']>) {
    const candidate = batch as unknown as Partial<NativeChainedBatch>;
    this.native = typeof candidate._put === 'function' && typeof candidate._del === 'function' ? (candidate as NativeChainedBatch) : undefined;
  }

  put(key: string, value: Uint8Array): void {
    if (this.queued && this.native !== undefined) this.native._put(key, value);
    else this.batch.put(key, value);
    this.queued = true;
  }

  del(key: string): void {
    if (this.queued && this.native !== undefined) this.native._del(key);
    else this.batch.del(key);
    this.queued = true;
  }
}

/**
 * Name of the sublevel holding state machine generation `generation`: `sm` for 0, `sm-<n>` for
 * n >= 1. Throws `RangeError` when `generation` is not a non-negative safe integer.
 */
export function smSublevelName(generation: number): string {
  if (!Number.isSafeInteger(generation) || generation < 0) {
    throw new RangeError(`generation must be a non-negative safe integer, got ${String(generation)}`);
  }
  return generation === 0 ? SM_SUBLEVEL : `${SM_SUBLEVEL}-${generation}`;
}

/** The generation a sublevel name stands for, or `undefined` when it is not a generation's. */
function parseSmSublevelName(name: string): number | undefined {
  if (name === SM_SUBLEVEL) return 0;
  const m = /^sm-([1-9][0-9]*)$/.exec(name);
  if (m === null) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A state machine generation: its number and its sublevel (see the module documentation). */
export interface StateMachineGeneration {
  /** The generation number (0 is the `sm` sublevel, n >= 1 is `sm-<n>`). */
  readonly number: number;
  /** Its sublevel: UTF-8 keys, byte values. */
  readonly db: Sublevel;
}

/** Entries a range read takes from LevelDB per native call (`iterator.nextv`). */
export const RANGE_READ_ENTRIES = 256;
/** Pairs read per native call when a whole state machine view is read (a snapshot, a backup). */
export const SNAPSHOT_READ_ENTRIES = 1_024;
/**
 * Bytes one native read of a whole view may hold (classic-level's `highWaterMarkBytes`, whose
 * default of 16 KiB ends a `nextv` after about 15 agent records): 1 MiB, so that a read returns
 * its {@link SNAPSHOT_READ_ENTRIES} pairs and a snapshot of 100,000 agents is not 100,000 thread
 * pool round trips.
 */
export const SNAPSHOT_READ_BYTES = 1024 * 1024;
/**
 * Bytes one native read of a range may hold (`highWaterMarkBytes`): 256 KiB, enough for
 * {@link RANGE_READ_ENTRIES} agent records of about 1 KiB, or for the 1,024 index keys of the
 * largest chunk a find's cursor reads.
 */
export const RANGE_READ_BYTES = 256 * 1024;

/**
 * Iterator options with classic-level's `highWaterMarkBytes`, which a sublevel passes on to the
 * root database's iterator although abstract-level's types do not name it.
 */
/** The key of an iterator entry. */
function keyOf(entry: [string, unknown]): string {
  return entry[0];
}

function boundedRead<O extends object>(bytes: number, options: O): O & { readonly highWaterMarkBytes: number } {
  return { ...options, highWaterMarkBytes: bytes };
}

/** Options of {@link openLevelStore}. */
export interface LevelStoreOptions {
  /** Where warnings go (a failed background clear); silent by default. */
  readonly logger?: Logger;
}

/**
 * Opens (creating as needed, parents included) the LevelDB store at `dir`, loads the log's
 * bounds and the live state machine generation, and clears any other generation (left by an
 * install that did not finish). Rejects when the directory cannot be created or is locked by
 * another process, and with {@link CorruptionError} when a log key or a meta record is malformed
 * or the log does not start right after the compaction point.
 */
export async function openLevelStore(dir: string, options: LevelStoreOptions = {}): Promise<LevelStore> {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir must be a non-empty path');
  await mkdir(dir, { recursive: true });
  const db: Db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view', maxOpenFiles: MAX_OPEN_FILES, writeBufferSize: WRITE_BUFFER_BYTES });
  await db.open();
  try {
    const store = new LevelStore(db, dir, options.logger ?? silentLogger);
    await store.load();
    return store;
  } catch (err) {
    await db.close();
    throw err;
  }
}

/** The LevelDB {@link NodeStore}; open it with {@link openLevelStore}. */
export class LevelStore implements NodeStore {
  readonly log: LogStore;
  readonly stable: StableStore;
  /** Reads the live generation, whichever it is at the time of the call. */
  readonly kv: KeyValueReader;
  private readonly logDb: Sublevel;
  private readonly metaDb: Sublevel;
  private live: StateMachineGeneration;
  /** Next generation number an install may use (never reused while the store is open). */
  private nextGeneration = 1;
  private first = 1;
  private last = 0;
  private closed = false;
  private readonly logger: Logger;
  /** Writes in flight that delete log entries; `entries()` waits for them to avoid a torn view. */
  private readonly truncating = new Set<Promise<void>>();
  /** Background clears of dropped generations; `close()` waits for them. */
  private readonly clearing = new Set<Promise<void>>();
  /** The install in progress, if any: installs run one at a time. */
  private installing: Promise<void> = Promise.resolve();

  /** Wraps an open database; use {@link openLevelStore}, which also loads the bounds. */
  constructor(private readonly db: Db, readonly dir: string, logger: Logger = silentLogger) {
    this.logger = logger.child({ component: 'level-store' });
    this.logDb = openSublevel(db, LOG_SUBLEVEL);
    this.metaDb = openSublevel(db, META_SUBLEVEL);
    this.live = { number: 0, db: openSublevel(db, SM_SUBLEVEL) };
    const store = this;
    this.log = {
      firstIndex: () => store.first as LogIndex,
      lastIndex: () => store.last as LogIndex,
      entries: (lo, hi) => store.entries(lo, hi),
    };
    this.stable = {
      hardState: () => store.hardState(),
      compactedTo: () => store.compactedTo(),
    };
    this.kv = {
      get: (key) => store.readNow(() => store.live.db.getSync(key)),
      getMany: (keys) => {
        if (keys.length === 0) return Promise.resolve([]);
        if (keys.length > SYNC_READ_MAX_KEYS) return store.live.db.getMany(keys as string[]);
        return store.readNow(() => keys.map((key) => store.live.db.getSync(key)));
      },
      range: (gte, lt, limit) => store.range(gte, lt, limit),
      cursor: (gte, lt) => store.cursor(gte, lt),
    };
  }

  /** Runs a synchronous read and hands its value or error over as a promise. */
  private readNow<T>(read: () => T): Promise<T> {
    try {
      return Promise.resolve(read());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Reads the compaction point, the first and last log keys and the live generation, then
   * clears every other generation; {@link openLevelStore} calls it once. Throws
   * {@link CorruptionError} when a record is damaged or the log does not start right after the
   * compaction point.
   */
  async load(): Promise<void> {
    const point = await this.compactedTo();
    const [firstKey] = await this.logDb.keys({ limit: 1 }).all();
    const [lastKey] = await this.logDb.keys({ limit: 1, reverse: true }).all();
    if (firstKey === undefined || lastKey === undefined) {
      this.first = point.index + 1;
      this.last = point.index;
    } else {
      this.first = decodeLogKey(firstKey, this.dir);
      this.last = decodeLogKey(lastKey, this.dir);
      if (this.first !== point.index + 1) {
        throw new CorruptionError(
          `log in ${this.dir} starts at ${this.first} but is compacted through ${point.index}`,
        );
      }
    }
    const genValue = await this.metaDb.get(SM_GENERATION_KEY);
    const live = genValue === undefined ? 0 : decodeGeneration(genValue, this.dir);
    this.live = { number: live, db: openSublevel(this.db, smSublevelName(live)) };
    this.nextGeneration = live + 1;
    await this.clearStrayGenerations();
  }

  /** Clears every generation sublevel but the live one (found by seeking over root keys). */
  private async clearStrayGenerations(): Promise<void> {
    let from = GENERATION_KEYS_GTE;
    for (;;) {
      const [key] = await this.db.keys({ gte: from, lt: GENERATION_KEYS_LT, limit: 1 }).all();
      if (key === undefined) return;
      const end = key.indexOf(SEPARATOR, 1);
      if (end < 0) {
        from = `${key}\u0000`;
        continue;
      }
      const name = key.slice(1, end);
      const generation = parseSmSublevelName(name);
      if (generation !== undefined && generation !== this.live.number) {
        this.logger.warn({ dir: this.dir, generation, live: this.live.number }, 'clearing a stray state machine generation');
        await openSublevel(this.db, name).clear();
        this.nextGeneration = Math.max(this.nextGeneration, generation + 1);
      }
      from = `${SEPARATOR}${name}${AFTER_SEPARATOR}`;
    }
  }

  /** Starts a new atomic batch; see {@link WriteBatch}. */
  batch(): WriteBatch {
    const staging = new Staging();
    return this.batchOver(staging, (options) => this.write(staging, undefined, options?.sync ?? true));
  }

  private batchOver(staging: Staging, write: (options?: WriteOptions) => Promise<void>): WriteBatch {
    return writeBatchOver(staging, (): LogBounds => ({ firstIndex: this.first, lastIndex: this.last }), write);
  }

  /**
   * Takes a LevelDB snapshot of the live generation, synchronously: its `entries()` read the
   * key space as of the last written batch, whatever is written or installed afterwards. Throws
   * `Error` when the store is closed.
   */
  stateMachineView(): StateMachineView {
    if (this.closed) throw new Error('store is closed');
    return new LevelStateMachineView(this.db.snapshot(), this.live.db);
  }

  /**
   * Replaces the state machine key space by `pairs` (see {@link NodeStore.installStateMachine}):
   * copies them into the next generation in unsynced batches of at most
   * {@link INSTALL_BATCH_BYTES}, then writes one synced batch that makes it live with what
   * `finalize` staged (its `put`/`del` target the new generation; calling its `write` rejects).
   * On any failure (the iterator throws, a pair is malformed, `finalize` throws, the write
   * fails) the partial copy is cleared and the error rethrown; the old key space and log stay.
   * Installs run one at a time. Throws `TypeError` on a pair that is not
   * `[non-empty string, Uint8Array]`.
   */
  installStateMachine(pairs: AsyncIterable<[string, Uint8Array]>, finalize: (batch: WriteBatch) => void): Promise<void> {
    const run = this.installing.then(() => this.install(pairs, finalize));
    this.installing = run.catch(() => undefined);
    return run;
  }

  private async install(pairs: AsyncIterable<[string, Uint8Array]>, finalize: (batch: WriteBatch) => void): Promise<void> {
    if (this.closed) throw new Error('store is closed');
    const next = await this.writeGeneration(pairs);
    try {
      const staging = new Staging();
      const batch = this.batchOver(staging, () => Promise.reject(new Error('the finalize batch is written by installStateMachine')));
      finalize(batch);
      await this.write(staging, next);
    } catch (err) {
      this.clearInBackground(next);
      throw err;
    }
  }

  /**
   * Copies `pairs` into a fresh generation's sublevel in unsynced batches of at most
   * {@link INSTALL_BATCH_BYTES} and returns it, NOT live. On failure the partial copy is cleared
   * in the background and the error rethrown. Used by {@link installStateMachine}; exposed so
   * that tests can leave a partial generation behind as a crash would.
   * @internal
   */
  async writeGeneration(pairs: AsyncIterable<[string, Uint8Array]>): Promise<StateMachineGeneration> {
    const number = this.nextGeneration++;
    const gen: StateMachineGeneration = { number, db: openSublevel(this.db, smSublevelName(number)) };
    try {
      // A generation number is never reused while open, but one left over by a crash is
      // cleared at open; clear anyway so the copy starts empty.
      await gen.db.clear();
      // Chained batches of the root database filled by full key, as in `write` (see
      // {@link PrefixedBatch}): a sublevel's own chained batch is abstract-level's array batch in
      // disguise, which re-encodes every pair in JS and cost three times as much per pair.
      const prefix = gen.db.prefix;
      let batch = this.db.batch();
      let ops = new PrefixedBatch(batch);
      let bytes = 0;
      let queued = 0;
      try {
        for await (const pair of pairs) {
          const [key, value] = checkPair(pair);
          const size = Buffer.byteLength(key, 'utf8') + value.byteLength;
          // A pair larger than the limit gets a batch of its own.
          if (queued > 0 && bytes + size > INSTALL_BATCH_BYTES) {
            await batch.write();
            batch = this.db.batch();
            ops = new PrefixedBatch(batch);
            bytes = 0;
            queued = 0;
          }
          ops.put(prefix + key, value);
          bytes += size;
          queued++;
        }
        if (queued > 0) await batch.write();
        queued = 0;
      } finally {
        if (queued > 0) await batch.close();
      }
      return gen;
    } catch (err) {
      this.clearInBackground(gen);
      throw err;
    }
  }

  /** Clears a generation that is not live without waiting; `close()` waits for it. */
  private clearInBackground(gen: StateMachineGeneration): void {
    const done = gen.db.clear().catch((err: unknown) => {
      this.logger.warn({ err, dir: this.dir, generation: gen.number }, 'clearing a dropped state machine generation failed; it is cleared at the next open');
    });
    this.clearing.add(done);
    void done.then(() => this.clearing.delete(done));
  }

  /**
   * Waits for background clears, then closes the database, which also releases the snapshots
   * of views still open and ends their iterations with an error; further calls reject.
   */
  async close(): Promise<void> {
    this.closed = true;
    while (this.clearing.size > 0) await Promise.allSettled([...this.clearing]);
    await this.db.close();
  }

  /**
   * Writes `staging` as one batch, synced unless `sync` is false. With `install`, the batch also
   * makes that generation live and its `put`/`del` go there; the previous generation is cleared
   * in the background once the batch is written.
   */
  private async write(staging: Staging, install?: StateMachineGeneration, sync = true): Promise<void> {
    const plan = staging.beginWrite({ firstIndex: this.first, lastIndex: this.last });
    if (staging.empty && install === undefined) return;
    const sm = install ?? this.live;
    // A chained batch, filled by full key (see {@link PrefixedBatch}).
    const batch = this.db.batch();
    const ops = new PrefixedBatch(batch);
    const log = this.logDb.prefix;
    const meta = this.metaDb.prefix;
    const state = sm.db.prefix;
    try {
      for (const index of plan.deletes) ops.del(log + encodeLogKey(index));
      for (const [index, entry] of staging.entries) ops.put(log + encodeLogKey(index), encodeEntry(entry));
      if (plan.compaction !== undefined) {
        const point = { index: plan.compaction.index as LogIndex, term: plan.compaction.term as Term };
        ops.put(meta + COMPACTED_KEY, encodeCompactionPoint(point));
      }
      if (staging.hardState !== undefined) ops.put(meta + HARD_STATE_KEY, encodeHardState(staging.hardState));
      if (install !== undefined) ops.put(meta + SM_GENERATION_KEY, encodeGeneration(install.number));
      for (const op of staging.kvOps) {
        if (op.type === 'put') ops.put(state + op.key, op.value);
        else ops.del(state + op.key);
      }
    } catch (err) {
      await batch.close();
      throw err;
    }
    const done = batch.write({ sync: install !== undefined || sync });
    if (plan.deletes.length > 0) {
      this.truncating.add(done);
      done.then(
        () => this.truncating.delete(done),
        () => this.truncating.delete(done),
      );
    }
    await done;
    const after = staging.boundsAfterWrite({ firstIndex: this.first, lastIndex: this.last });
    this.first = after.firstIndex;
    this.last = after.lastIndex;
    if (install !== undefined) {
      const old = this.live;
      this.live = install;
      this.clearInBackground(old);
    }
  }

  private async entries(lo: LogIndex, hi: LogIndex): Promise<Entry[]> {
    if (this.truncating.size > 0) await Promise.allSettled([...this.truncating]);
    checkEntriesRange(lo, hi, this.first, this.last);
    if (lo === hi) return [];
    const rows = await this.logDb.iterator({ gte: encodeLogKey(lo), lt: encodeLogKey(hi) }).all();
    const out: Entry[] = [];
    for (let i = 0; i < hi - lo; i++) {
      const index = lo + i;
      const row = rows[i];
      if (row === undefined || row[0] !== encodeLogKey(index)) {
        throw new CorruptionError(`log entry ${index} is missing in ${this.dir}`);
      }
      out.push(decodeEntry(row[1], index, this.dir));
    }
    return out;
  }

  private async hardState(): Promise<HardState | undefined> {
    const value = await this.metaDb.get(HARD_STATE_KEY);
    return value === undefined ? undefined : decodeHardState(value, this.dir);
  }

  private async compactedTo(): Promise<{ index: LogIndex; term: Term }> {
    const value = await this.metaDb.get(COMPACTED_KEY);
    return value === undefined ? { index: 0 as LogIndex, term: 0 as Term } : decodeCompactionPoint(value, this.dir);
  }

  /**
   * A {@link KeyCursor} over one abstract-level iterator (its implicit snapshot is the view) that
   * reads keys only: `values: false`, and values "decoded" as UTF-8. classic-level hands every
   * entry over as a `[key, value]` pair whatever the iterator asks for (its `keys()` iterator is
   * abstract-level's wrapper of a full one), so with the stores' binary value encoding each key
   * read also made a `Buffer` for its (empty) value, an ArrayBuffer allocated, tracked and swept:
   * 2.0-2.4 µs per key against 0.7-1.1 µs this way (50,000 index keys, one sublevel, this machine).
   */
  private cursor(gte: string, lt: string): KeyCursor {
    const it = this.live.db.iterator(boundedRead(RANGE_READ_BYTES, { gte, lt, values: false, valueEncoding: 'utf8' }));
    let closed = false;
    return {
      seek: (key) => it.seek(key),
      // nextv may return fewer entries than asked before the end (a read is bounded in bytes):
      // read on until `n` or an empty answer, so fewer than `n` means the end.
      next: async (n) => {
        const out = (await it.nextv(n)).map(keyOf);
        while (out.length < n) {
          const more = await it.nextv(n - out.length);
          if (more.length === 0) break;
          for (const [key] of more) out.push(key);
        }
        return out;
      },
      close: async () => {
        if (closed) return;
        closed = true;
        await it.close();
      },
    };
  }

  private async *range(gte: string, lt: string, limit?: number): AsyncIterable<[string, Uint8Array]> {
    const max = checkLimit(limit);
    if (max === 0) return;
    // abstract-level iterators read from an implicit snapshot taken when they are created.
    const it = this.live.db.iterator(boundedRead(RANGE_READ_BYTES, { gte, lt, limit: max === Infinity ? -1 : max }));
    try {
      // Entries are read RANGE_READ_ENTRIES at a time (one native call each), not one by one.
      for (;;) {
        const entries = await it.nextv(RANGE_READ_ENTRIES);
        if (entries.length === 0) break;
        for (const [key, value] of entries) yield [key, value];
      }
    } finally {
      await it.close();
    }
  }
}

type LevelSnapshot = ReturnType<Db['snapshot']>;

/** A {@link StateMachineView} over an explicit LevelDB snapshot of one generation's sublevel. */
class LevelStateMachineView implements StateMachineView {
  private closed = false;

  constructor(private readonly snapshot: LevelSnapshot, private readonly sm: Sublevel) {}

  /** Every pair of the generation as of the snapshot, in key order; may be iterated again. */
  async *entries(): AsyncIterable<[string, Uint8Array]> {
    for await (const batch of this.entryBatches()) yield* batch;
  }

  /**
   * The pairs {@link SNAPSHOT_READ_ENTRIES} at a time (one native call each): reading them one
   * await at a time cost about 4 µs a pair, most of a snapshot's time.
   */
  async *entryBatches(): AsyncIterable<[string, Uint8Array][]> {
    if (this.closed) throw new Error('state machine view is closed');
    const it = this.sm.iterator(boundedRead(SNAPSHOT_READ_BYTES, { snapshot: this.snapshot }));
    try {
      for (;;) {
        const entries = await it.nextv(SNAPSHOT_READ_ENTRIES);
        if (entries.length === 0) break;
        yield entries;
      }
    } finally {
      await it.close();
    }
  }

  /** Releases the snapshot (idempotent); waits for iterations in progress to end. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.snapshot.close();
  }
}

/** Checks one pair handed to an install; throws `TypeError` when it is malformed. */
function checkPair(pair: unknown): [string, Uint8Array] {
  if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError('each pair must be [key, value]');
  const [key, value] = pair as [unknown, unknown];
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('pair key must be a non-empty string');
  if (!(value instanceof Uint8Array)) throw new TypeError(`value of ${JSON.stringify(key)} must be a Uint8Array`);
  return [key, value];
}
