/**
 * What a {@link WriteBatch} stages before it is written, shared by `LevelStore` and
 * `MemoryStore` so that both check their input and resolve conflicting suffixes the same way.
 */
import type { Entry, HardState } from '../raft/types.js';
import type { WriteBatch, WriteOptions } from './types.js';

/** One staged change of the state machine's key space. */
export type KvOp =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: string };

/** The durable bounds of a log, as the store holds them in memory. */
export interface LogBounds {
  readonly firstIndex: number;
  readonly lastIndex: number;
}

/**
 * A staged log compaction: (`index`, `term`) becomes the compaction point; `reset` says that
 * every stored entry goes ({@link WriteBatch.resetLog}), not only those `<= index`
 * ({@link WriteBatch.compactLog}).
 */
export interface StagedCompaction {
  readonly index: number;
  readonly term: number;
  readonly reset: boolean;
}

/** What a batch does to the durable log, computed by {@link Staging.beginWrite}. */
export interface LogWritePlan {
  /** Stored log indexes to delete (compacted entries and the conflicting suffix, §5.3). */
  readonly deletes: number[];
  /** The log's bounds once the batch is written. */
  readonly bounds: LogBounds;
  /** The compaction point to record, or `undefined` when the batch stages none. */
  readonly compaction: { readonly index: number; readonly term: number } | undefined;
}

function isNonNegativeSafeInteger(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/**
 * Checks the shape of one entry handed to `appendEntries`. Throws `TypeError` naming the field
 * (e.g. `entries[2].data`) when it is missing or of the wrong type.
 */
function checkEntryShape(entry: Entry, i: number): void {
  if (typeof entry !== 'object' || entry === null) throw new TypeError(`entries[${i}] must be an entry object`);
  if (!isNonNegativeSafeInteger(entry.index)) {
    throw new TypeError(`entries[${i}].index must be a non-negative safe integer, got ${String(entry.index)}`);
  }
  if (!isNonNegativeSafeInteger(entry.term)) {
    throw new TypeError(`entries[${i}].term must be a non-negative safe integer, got ${String(entry.term)}`);
  }
  if (entry.type !== 'normal' && entry.type !== 'config') {
    throw new TypeError(`entries[${i}].type must be 'normal' or 'config', got ${JSON.stringify(entry.type)}`);
  }
  if (!(entry.data instanceof Uint8Array)) throw new TypeError(`entries[${i}].data must be a Uint8Array`);
}

/**
 * The staged content of one batch: log entries by index, the log's last index once the batch is
 * written, the hard state and the key-value operations in order. Entries and values are copied
 * when staged, so a caller may reuse its buffers.
 */
export class Staging {
  /** Staged entries by index (already copied). */
  readonly entries = new Map<number, Entry>();
  /**
   * Last log index once written as staged appends leave it, or `undefined` when no entries were
   * staged since the batch started or its last `resetLog`.
   */
  lastIndex: number | undefined;
  /** Lowest index staged by any `appendEntries` of this batch, or `undefined`. */
  firstAppendIndex: number | undefined;
  /** The hard state to write, or `undefined`. */
  hardState: HardState | undefined;
  /** Key-value operations, in the order they were staged (a later one wins). */
  readonly kvOps: KvOp[] = [];
  /** The staged compaction point, or `undefined`. */
  compaction: StagedCompaction | undefined;
  /** Set once `write()` was called: the batch cannot be reused. */
  written = false;

  /** True when nothing is staged. */
  get empty(): boolean {
    return this.lastIndex === undefined && this.hardState === undefined && this.kvOps.length === 0
      && this.compaction === undefined;
  }

  /**
   * The log's bounds as this batch would leave them if written now over the durable `bounds`:
   * a staged compaction moves the first index, staged entries (or a reset) the last one.
   */
  effectiveBounds(bounds: LogBounds): LogBounds {
    const c = this.compaction;
    const firstIndex = c === undefined ? bounds.firstIndex : c.index + 1;
    const base = c?.reset === true ? c.index : Math.max(bounds.lastIndex, c?.index ?? 0);
    return { firstIndex, lastIndex: this.lastIndex ?? base };
  }

  /**
   * Stages `entries` against the durable `bounds` plus what this batch already staged (see
   * {@link WriteBatch.appendEntries}). Throws `TypeError` on a malformed entry, `RangeError` when
   * indexes are not consecutive or `entries[0].index` is outside `[firstIndex, lastIndex + 1]`,
   * and `Error` when the batch was already written.
   */
  append(entries: readonly Entry[], bounds: LogBounds): void {
    this.checkWritable();
    if (!Array.isArray(entries)) throw new TypeError('entries must be an array');
    if (entries.length === 0) return;
    entries.forEach(checkEntryShape);
    const first = (entries[0] as Entry).index;
    for (let i = 1; i < entries.length; i++) {
      const index = (entries[i] as Entry).index;
      if (index !== first + i) {
        throw new RangeError(`entries[${i}].index must be ${first + i} (consecutive), got ${index}`);
      }
    }
    const effective = this.effectiveBounds(bounds);
    const last = effective.lastIndex;
    if (first < effective.firstIndex || first > last + 1) {
      throw new RangeError(
        `entries[0].index ${first} is outside [${effective.firstIndex}, ${last + 1}] (first index, last index + 1)`,
      );
    }
    const newLast = first + entries.length - 1;
    for (const index of this.entries.keys()) {
      if (index > newLast) this.entries.delete(index);
    }
    for (const e of entries) {
      this.entries.set(e.index, { term: e.term, index: e.index, type: e.type, data: e.data.slice() });
    }
    this.lastIndex = newLast;
    this.firstAppendIndex = Math.min(this.firstAppendIndex ?? first, first);
  }

  /** Stages the hard state (a later call replaces an earlier one). Throws `TypeError` on bad fields. */
  setHardState(hs: HardState): void {
    this.checkWritable();
    if (typeof hs !== 'object' || hs === null) throw new TypeError('hardState must be an object');
    if (!isNonNegativeSafeInteger(hs.currentTerm)) throw new TypeError('hardState.currentTerm must be a non-negative safe integer');
    if (typeof hs.votedFor !== 'string') throw new TypeError('hardState.votedFor must be a string');
    if (!isNonNegativeSafeInteger(hs.commitIndex)) throw new TypeError('hardState.commitIndex must be a non-negative safe integer');
    this.hardState = { currentTerm: hs.currentTerm, votedFor: hs.votedFor, commitIndex: hs.commitIndex };
  }

  /** Stages a put; throws `TypeError` when `key` is not a non-empty string or `value` not bytes. */
  put(key: string, value: Uint8Array): void {
    this.checkWritable();
    checkKey(key);
    if (!(value instanceof Uint8Array)) throw new TypeError(`value of ${JSON.stringify(key)} must be a Uint8Array`);
    this.kvOps.push({ type: 'put', key, value: value.slice() });
  }

  /** Stages a delete; throws `TypeError` when `key` is not a non-empty string. */
  del(key: string): void {
    this.checkWritable();
    checkKey(key);
    this.kvOps.push({ type: 'del', key });
  }

  /**
   * Stages log compaction through `through` (see {@link WriteBatch.compactLog}) against the
   * durable `bounds` plus what this batch already staged; staged entries `<= through` are
   * dropped. Throws `TypeError` when `through` or `term` is not a non-negative safe integer,
   * `RangeError` when `through` is past the last index or below the current compaction point.
   */
  compactLog(through: number, term: number, bounds: LogBounds): void {
    this.checkWritable();
    checkPoint(through, term);
    const { firstIndex, lastIndex } = this.effectiveBounds(bounds);
    if (through > lastIndex) {
      throw new RangeError(`cannot compact through ${through}: the log ends at ${lastIndex}`);
    }
    if (through < firstIndex - 1) {
      throw new RangeError(`cannot compact through ${through}: the log is already compacted through ${firstIndex - 1}`);
    }
    for (const index of this.entries.keys()) {
      if (index <= through) this.entries.delete(index);
    }
    // `lastIndex` stays: when every staged entry was dropped it equals `through`, and the
    // batch still truncates the stored suffix after it.
    if (this.entries.size === 0) this.firstAppendIndex = undefined;
    else if (this.firstAppendIndex !== undefined) this.firstAppendIndex = Math.max(this.firstAppendIndex, through + 1);
    this.compaction = { index: through, term, reset: this.compaction?.reset ?? false };
  }

  /**
   * Stages the log's replacement by a snapshot at (`index`, `term`) (see
   * {@link WriteBatch.resetLog}): drops every staged entry; later appends start at `index + 1`.
   * Throws `TypeError` when `index` or `term` is not a non-negative safe integer.
   */
  resetLog(index: number, term: number): void {
    this.checkWritable();
    checkPoint(index, term);
    this.entries.clear();
    this.lastIndex = undefined;
    this.firstAppendIndex = undefined;
    this.compaction = { index, term, reset: true };
  }

  /**
   * Marks the batch written and plans its log changes given the durable bounds at write time:
   * the indexes to delete (compacted entries, the whole log on a reset, the stored suffix past
   * the batch's last entry, §5.3) and the bounds after the write. Throws `RangeError` when the
   * log moved since staging so that the batch would leave a hole or move the compaction point
   * back, `Error` when written twice.
   */
  beginWrite(bounds: LogBounds): LogWritePlan {
    this.checkWritable();
    this.written = true;
    const c = this.compaction;
    if (c !== undefined && !c.reset && c.index < bounds.firstIndex - 1) {
      throw new RangeError(
        `batch compacts through ${c.index} but the log is now compacted through ${bounds.firstIndex - 1}`,
      );
    }
    // Staged entries must follow the stored log or the staged compaction point without a hole.
    const reach = Math.max(bounds.lastIndex, c?.index ?? 0);
    if (c?.reset !== true && this.firstAppendIndex !== undefined && this.firstAppendIndex > reach + 1) {
      throw new RangeError(
        `batch appends from index ${this.firstAppendIndex} but the log now ends at ${bounds.lastIndex}`,
      );
    }
    const deletes: number[] = [];
    if (c?.reset === true) {
      // Every stored entry goes, except those the batch rewrites itself.
      for (let index = bounds.firstIndex; index <= bounds.lastIndex; index++) {
        if (!this.entries.has(index)) deletes.push(index);
      }
    } else {
      const compactThrough = c === undefined ? bounds.firstIndex - 1 : Math.min(c.index, bounds.lastIndex);
      for (let index = bounds.firstIndex; index <= compactThrough; index++) deletes.push(index);
      if (this.lastIndex !== undefined) {
        for (let index = Math.max(this.lastIndex + 1, compactThrough + 1); index <= bounds.lastIndex; index++) {
          deletes.push(index);
        }
      }
    }
    return {
      deletes,
      bounds: this.effectiveBounds(bounds),
      compaction: c === undefined ? undefined : { index: c.index, term: c.term },
    };
  }

  /**
   * The log's bounds once this batch's write resolved, given the bounds at that moment: only
   * what the batch changes moves (a compaction the first index; its entries, a reset or a
   * compaction past the end the last index), so that batches written concurrently do not undo
   * each other's bounds.
   */
  boundsAfterWrite(current: LogBounds): LogBounds {
    const c = this.compaction;
    const firstIndex = c === undefined ? current.firstIndex : c.index + 1;
    let lastIndex = current.lastIndex;
    if (this.lastIndex !== undefined) lastIndex = this.lastIndex;
    else if (c?.reset === true) lastIndex = c.index;
    else if (c !== undefined) lastIndex = Math.max(current.lastIndex, c.index);
    return { firstIndex, lastIndex };
  }

  private checkWritable(): void {
    if (this.written) throw new Error('write batch was already written; start a new batch');
  }
}

function checkPoint(index: number, term: number): void {
  if (!isNonNegativeSafeInteger(index)) throw new TypeError(`index must be a non-negative safe integer, got ${String(index)}`);
  if (!isNonNegativeSafeInteger(term)) throw new TypeError(`term must be a non-negative safe integer, got ${String(term)}`);
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('key must be a non-empty string');
}

/** The first UTF-16 code unit of a surrogate (U+D800–U+DFFF); every unit below it is a whole code point. */
const FIRST_SURROGATE = 0xd800;

/**
 * Compares two strings by their UTF-8 bytes (as `Buffer.from(s, 'utf8')` encodes them, a lone
 * surrogate as U+FFFD), the order LevelDB keeps keys in; JavaScript's `<` compares UTF-16 code
 * units, which differs for characters above U+FFFF. Negative, zero or positive, like
 * `Buffer.compare`.
 *
 * Without allocating in the usual case: where the strings first differ in two code units below
 * the surrogates, the common prefix encodes alike (a surrogate it ends with pairs with neither
 * unit, so it is lone, U+FFFD, in both) and UTF-8 keeps the order of code points, so the units
 * decide. One string a prefix of the other sorts first in both encodings (a leading
 * surrogate it ends with encodes as U+FFFD, `EF BF BD`, a byte prefix of what the longer one
 * holds there, or below the `F0`-`F4` of the pair it makes there). A difference in a surrogate
 * is settled on the encoded bytes.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === n) return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
  const x = a.charCodeAt(i);
  const y = b.charCodeAt(i);
  if (x < FIRST_SURROGATE && y < FIRST_SURROGATE) return x < y ? -1 : 1;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Checks a `range` limit: `undefined` or `Infinity` mean no limit, otherwise a non-negative
 * integer. Returns the limit as a number (`Infinity` for none); throws `RangeError` otherwise.
 */
export function checkLimit(limit: number | undefined): number {
  if (limit === undefined || limit === Infinity) return Infinity;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`limit must be a non-negative integer, got ${String(limit)}`);
  }
  return limit;
}

/**
 * Checks the arguments of `LogStore.entries`: integers with `firstIndex <= lo <= hi <=
 * lastIndex + 1`. Throws `RangeError` naming the bound otherwise.
 */
export function checkEntriesRange(lo: number, hi: number, firstIndex: number, lastIndex: number): void {
  if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi)) {
    throw new RangeError(`entries(lo, hi) needs integer bounds, got lo=${String(lo)} hi=${String(hi)}`);
  }
  if (lo < firstIndex) throw new RangeError(`lo ${lo} is below the first index ${firstIndex}`);
  if (hi > lastIndex + 1) throw new RangeError(`hi ${hi} is past the last index + 1 (${lastIndex + 1})`);
  if (lo > hi) throw new RangeError(`lo ${lo} is greater than hi ${hi}`);
}

/**
 * The {@link WriteBatch} face of a {@link Staging}: both stores stage the same way and differ only
 * in where the log bounds come from and how the staged batch is written.
 */
export function writeBatchOver(staging: Staging, bounds: () => LogBounds, write: (options?: WriteOptions) => Promise<void>): WriteBatch {
  return {
    appendEntries: (entries) => staging.append(entries, bounds()),
    setHardState: (hs) => staging.setHardState(hs),
    put: (key, value) => staging.put(key, value),
    del: (key) => staging.del(key),
    compactLog: (through, t) => staging.compactLog(through, t, bounds()),
    resetLog: (index, t) => staging.resetLog(index, t),
    get empty() {
      return staging.empty;
    },
    write,
  };
}
