/**
 * The LevelDB {@link NodeStore}: one database per node holding three key spaces (sublevels):
 *
 * - `log`:  key = entry index as 16 hex digits, value = `crc32 ‖ msgpack(entry)` (see `codec.ts`);
 * - `meta`: key `hardstate`, value = `crc32 ‖ msgpack(hardState)`;
 * - `sm`:   the state machine's keys and values, unchanged.
 *
 * Every {@link WriteBatch} becomes one LevelDB batch written with `sync: true`, so the entries,
 * hard state and state machine changes of one Raft `Ready` cost one fsync and land together or
 * not at all (the shape of hashicorp/raft's `LogStore`/`StableStore` with etcd's one synced
 * write per `Ready`).
 *
 * `firstIndex()`/`lastIndex()` are kept in memory: read from the first and last log key at open,
 * updated after a batch's write resolves. A batch is checked against those durable bounds plus
 * what it stages itself, so the batch that appends after another one must be started after the
 * other's `write()` resolved.
 */
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import type { Entry, HardState, LogIndex } from '../raft/types.js';
import { decodeEntry, decodeHardState, decodeLogKey, encodeEntry, encodeHardState, encodeLogKey } from './codec.js';
import { Staging, checkEntriesRange, checkLimit, type LogBounds } from './staging.js';
import { CorruptionError, type KeyValueReader, type LogStore, type NodeStore, type StableStore, type WriteBatch } from './types.js';

/** Name of the sublevel holding the Raft log. */
export const LOG_SUBLEVEL = 'log';
/** Name of the sublevel holding the hard state. */
export const META_SUBLEVEL = 'meta';
/** Name of the sublevel holding the state machine's key space. */
export const SM_SUBLEVEL = 'sm';
/** Key of the hard state in the `meta` sublevel. */
export const HARD_STATE_KEY = 'hardstate';

/** Options every sublevel uses: UTF-8 keys, raw bytes as values. */
const SUBLEVEL_OPTIONS = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;

type Db = Level<string, Uint8Array>;
type Sublevel = ReturnType<typeof openSublevel>;

function openSublevel(db: Db, name: string) {
  return db.sublevel<string, Uint8Array>(name, SUBLEVEL_OPTIONS);
}

/** One operation of the root-level batch; `sublevel` says which key space it targets. */
type BatchOp =
  | { type: 'put'; sublevel: Sublevel; key: string; value: Uint8Array }
  | { type: 'del'; sublevel: Sublevel; key: string };

/**
 * Opens (creating as needed, parents included) the LevelDB store at `dir` and loads the log's
 * bounds. Rejects when the directory cannot be created or is locked by another process, and with
 * {@link CorruptionError} when a log key is malformed.
 */
export async function openLevelStore(dir: string): Promise<LevelStore> {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir must be a non-empty path');
  await mkdir(dir, { recursive: true });
  const db: Db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  try {
    const store = new LevelStore(db, dir);
    await store.loadBounds();
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
  readonly kv: KeyValueReader;
  private readonly logDb: Sublevel;
  private readonly metaDb: Sublevel;
  private readonly smDb: Sublevel;
  private first = 1;
  private last = 0;
  /** Writes in flight that delete log entries; `entries()` waits for them to avoid a torn view. */
  private readonly truncating = new Set<Promise<void>>();

  /** Wraps an open database; use {@link openLevelStore}, which also loads the log bounds. */
  constructor(private readonly db: Db, readonly dir: string) {
    this.logDb = openSublevel(db, LOG_SUBLEVEL);
    this.metaDb = openSublevel(db, META_SUBLEVEL);
    this.smDb = openSublevel(db, SM_SUBLEVEL);
    const store = this;
    this.log = {
      firstIndex: () => store.first as LogIndex,
      lastIndex: () => store.last as LogIndex,
      entries: (lo, hi) => store.entries(lo, hi),
    };
    this.stable = { hardState: () => store.hardState() };
    this.kv = {
      get: (key) => store.smDb.get(key),
      getMany: (keys) => (keys.length === 0 ? Promise.resolve([]) : store.smDb.getMany(keys as string[])),
      range: (gte, lt, limit) => store.range(gte, lt, limit),
    };
  }

  /** Reads the first and last log keys into memory (first 1, last 0 for an empty log). */
  async loadBounds(): Promise<void> {
    const [firstKey] = await this.logDb.keys({ limit: 1 }).all();
    const [lastKey] = await this.logDb.keys({ limit: 1, reverse: true }).all();
    if (firstKey === undefined || lastKey === undefined) {
      this.first = 1;
      this.last = 0;
      return;
    }
    this.first = decodeLogKey(firstKey, this.dir);
    this.last = decodeLogKey(lastKey, this.dir);
  }

  /** Starts a new atomic batch; see {@link WriteBatch}. */
  batch(): WriteBatch {
    const staging = new Staging();
    const bounds = (): LogBounds => ({ firstIndex: this.first, lastIndex: this.last });
    return {
      appendEntries: (entries) => staging.append(entries, bounds()),
      setHardState: (hs) => staging.setHardState(hs),
      put: (key, value) => staging.put(key, value),
      del: (key) => staging.del(key),
      get empty() {
        return staging.empty;
      },
      write: () => this.write(staging),
    };
  }

  /** Closes the database; further calls reject. */
  async close(): Promise<void> {
    await this.db.close();
  }

  private async write(staging: Staging): Promise<void> {
    const deletes = staging.beginWrite({ firstIndex: this.first, lastIndex: this.last });
    if (staging.empty) return;
    const ops: BatchOp[] = [];
    for (const index of deletes) ops.push({ type: 'del', sublevel: this.logDb, key: encodeLogKey(index) });
    for (const [index, entry] of staging.entries) {
      ops.push({ type: 'put', sublevel: this.logDb, key: encodeLogKey(index), value: encodeEntry(entry) });
    }
    if (staging.hardState !== undefined) {
      ops.push({ type: 'put', sublevel: this.metaDb, key: HARD_STATE_KEY, value: encodeHardState(staging.hardState) });
    }
    for (const op of staging.kvOps) {
      ops.push(op.type === 'put'
        ? { type: 'put', sublevel: this.smDb, key: op.key, value: op.value }
        : { type: 'del', sublevel: this.smDb, key: op.key });
    }
    const done = this.db.batch(ops, { sync: true });
    if (deletes.length > 0) {
      this.truncating.add(done);
      done.then(
        () => this.truncating.delete(done),
        () => this.truncating.delete(done),
      );
    }
    await done;
    if (staging.lastIndex !== undefined) this.last = staging.lastIndex;
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

  private async *range(gte: string, lt: string, limit?: number): AsyncIterable<[string, Uint8Array]> {
    const max = checkLimit(limit);
    if (max === 0) return;
    // abstract-level iterators read from an implicit snapshot taken when they are created.
    const it = this.smDb.iterator({ gte, lt, limit: max === Infinity ? -1 : max });
    try {
      for await (const [key, value] of it) yield [key, value];
    } finally {
      await it.close();
    }
  }
}
