/**
 * Counters kept in the state machine's key space (a term's document frequency, the text index's
 * totals, the agents per capability): each a key holding a msgpackr non-negative integer, absent
 * when 0.
 *
 * A {@link RecordIndex} (`records.ts`) only adds deltas while it stages a record write, without
 * reading; the state machine then resolves every counter the `applyEntries` call touched in one
 * `getMany` (values staged in batches not yet written first, then those a {@link CounterCache}
 * holds) and stages the new absolute values in the same batch ({@link flushCounters}). So the
 * counters always agree with the records of the same batch, are deterministic, and travel in
 * snapshots like every other key; the cache only saves the read of a counter written recently.
 */
import { LRUCache } from 'lru-cache';
import type { KeyValueReader, WriteBatch } from '../storage/types.js';
import { registryPackr } from './commands.js';

/** Where an index adds counter deltas while it stages a record write. */
export interface CounterDeltas {
  /** Adds `delta` (may be negative) to the counter at `key`. */
  add(key: string, delta: number): void;
}

/** Counter deltas collected over one `applyEntries` call, by key, in first-touch order. */
export class CounterDeltaMap implements CounterDeltas {
  readonly deltas = new Map<string, number>();

  add(key: string, delta: number): void {
    if (delta === 0) return;
    this.deltas.set(key, (this.deltas.get(key) ?? 0) + delta);
  }

  /** Whether no counter was touched. */
  get empty(): boolean {
    return this.deltas.size === 0;
  }
}

/**
 * Most counter values a {@link CounterCache} keeps: the counters every write touches (the text
 * index's totals, the kind and capability counts, common terms) stay, the rare terms' fall out.
 * About 100 bytes each, so at most a few MiB.
 */
export const COUNTER_CACHE_ENTRIES = 16_384;

/**
 * The durable values of recently written or read counters, least recently used dropped first
 * beyond `capacity` entries (`lru-cache`: O(1) per operation, which an LRU that finds its oldest
 * entry by iterating a `Map` is not). It must only ever hold values that are in the store (or
 * that a written batch put there): the state machine fills it after a batch is written, and with
 * values it has just read from the store while no unwritten batch staged that key.
 */
export class CounterCache {
  /** Undefined when the capacity is 0: nothing is kept. */
  private readonly values: LRUCache<string, number> | undefined;

  /** Throws `RangeError` when `capacity` is not a non-negative safe integer (0 keeps nothing). */
  constructor(capacity = COUNTER_CACHE_ENTRIES) {
    if (!Number.isSafeInteger(capacity) || capacity < 0) throw new RangeError(`counter cache capacity must be a non-negative integer, got ${String(capacity)}`);
    this.values = capacity === 0 ? undefined : new LRUCache<string, number>({ max: capacity });
  }

  /** The cached value of `key` (0 for a counter known to be absent), or `undefined`. */
  get(key: string): number | undefined {
    return this.values?.get(key);
  }

  /** Remembers `value` as the durable value of `key`. */
  set(key: string, value: number): void {
    this.values?.set(key, value);
  }

  /** Forgets every value (the store was replaced). */
  clear(): void {
    this.values?.clear();
  }

  /** Entries held. */
  get size(): number {
    return this.values?.size ?? 0;
  }
}

/** Encodes a counter value. */
export function encodeCount(n: number): Uint8Array {
  return registryPackr.pack(n);
}

/** Decodes a counter value; a missing one is 0, and so is a damaged one (it is rewritten whole by the next change). */
export function decodeCount(value: Uint8Array | undefined): number {
  if (value === undefined) return 0;
  try {
    const n = registryPackr.unpack(value) as unknown;
    return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

/**
 * Stages the counters of `deltas` into `batch`: each new value is the staged one (`staged(key)`,
 * from batches not yet written, newest first), else the cached durable one (`cache`), else the
 * stored one (one `getMany` for all of those, remembered in `cache`), plus the delta, floored at
 * 0; a 0 deletes the key. Records every new value in `into` (the batch's staged counters).
 * Deterministic given the store and the staged values.
 */
export async function flushCounters(
  kv: KeyValueReader,
  deltas: CounterDeltaMap,
  staged: (key: string) => number | undefined,
  batch: WriteBatch,
  into: Map<string, number>,
  cache: CounterCache,
): Promise<void> {
  const bases = new Map<string, number>();
  const unread: string[] = [];
  for (const key of deltas.deltas.keys()) {
    const s = staged(key) ?? cache.get(key);
    if (s === undefined) unread.push(key);
    else bases.set(key, s);
  }
  const values = unread.length === 0 ? [] : await kv.getMany(unread);
  unread.forEach((key, i) => {
    const stored = decodeCount(values[i]);
    bases.set(key, stored);
    cache.set(key, stored);
  });
  for (const [key, delta] of deltas.deltas) {
    const next = Math.max(0, (bases.get(key) ?? 0) + delta);
    into.set(key, next);
    if (next === 0) batch.del(key);
    else batch.put(key, encodeCount(next));
  }
  deltas.deltas.clear();
}
