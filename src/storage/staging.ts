/**
 * What a {@link WriteBatch} stages before it is written, shared by `LevelStore` and
 * `MemoryStore` so that both check their input and resolve conflicting suffixes the same way.
 */
import type { Entry, HardState } from '../raft/types.js';
import type { WriteBatch } from './types.js';

/** One staged change of the state machine's key space. */
export type KvOp =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: string };

/** The durable bounds of a log, as the store holds them in memory. */
export interface LogBounds {
  readonly firstIndex: number;
  readonly lastIndex: number;
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
  /** Last log index once written, or `undefined` when no entries were staged. */
  lastIndex: number | undefined;
  /** Lowest index staged by any `appendEntries` of this batch, or `undefined`. */
  firstAppendIndex: number | undefined;
  /** The hard state to write, or `undefined`. */
  hardState: HardState | undefined;
  /** Key-value operations, in the order they were staged (a later one wins). */
  readonly kvOps: KvOp[] = [];
  /** Set once `write()` was called: the batch cannot be reused. */
  written = false;

  /** True when nothing is staged. */
  get empty(): boolean {
    return this.lastIndex === undefined && this.hardState === undefined && this.kvOps.length === 0;
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
    const last = this.lastIndex ?? bounds.lastIndex;
    if (first < bounds.firstIndex || first > last + 1) {
      throw new RangeError(
        `entries[0].index ${first} is outside [${bounds.firstIndex}, ${last + 1}] (first index, last index + 1)`,
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
   * Marks the batch written and returns the log indexes to delete given the durable bounds at
   * write time: the stored suffix past the batch's last entry (§5.3). Throws `RangeError` when
   * the log moved since staging so that the batch would leave a hole, `Error` when written twice.
   */
  beginWrite(bounds: LogBounds): number[] {
    this.checkWritable();
    this.written = true;
    if (this.lastIndex === undefined || this.firstAppendIndex === undefined) return [];
    if (this.firstAppendIndex > bounds.lastIndex + 1) {
      throw new RangeError(
        `batch appends from index ${this.firstAppendIndex} but the log now ends at ${bounds.lastIndex}`,
      );
    }
    const deletes: number[] = [];
    for (let index = this.lastIndex + 1; index <= bounds.lastIndex; index++) deletes.push(index);
    return deletes;
  }

  private checkWritable(): void {
    if (this.written) throw new Error('write batch was already written; start a new batch');
  }
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('key must be a non-empty string');
}

/**
 * Compares two strings by their UTF-8 bytes, the order LevelDB keeps keys in (JavaScript's `<`
 * compares UTF-16 code units, which differs for characters above U+FFFF).
 */
export function compareUtf8(a: string, b: string): number {
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
