/**
 * Counters kept in the state machine's key space (a term's document frequency, the text index's
 * totals, the agents per capability): each a key holding a msgpackr non-negative integer, absent
 * when 0.
 *
 * A {@link RecordIndex} (`records.ts`) only adds deltas while it stages a record write, without
 * reading; the state machine then resolves every counter the `applyEntries` call touched in one
 * `getMany` (values staged in batches not yet written first) and stages the new absolute values
 * in the same batch ({@link flushCounters}). So the counters always agree with the records of the
 * same batch, are deterministic, and travel in snapshots like every other key.
 */
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
 * from batches not yet written, newest first) or else the stored one (one `getMany` for all of
 * those), plus the delta, floored at 0; a 0 deletes the key. Records every new value in `into`
 * (the batch's staged counters). Deterministic given the store and the staged values.
 */
export async function flushCounters(
  kv: KeyValueReader,
  deltas: CounterDeltaMap,
  staged: (key: string) => number | undefined,
  batch: WriteBatch,
  into: Map<string, number>,
): Promise<void> {
  const bases = new Map<string, number>();
  const unread: string[] = [];
  for (const key of deltas.deltas.keys()) {
    const s = staged(key);
    if (s === undefined) unread.push(key);
    else bases.set(key, s);
  }
  const values = unread.length === 0 ? [] : await kv.getMany(unread);
  unread.forEach((key, i) => bases.set(key, decodeCount(values[i])));
  for (const [key, delta] of deltas.deltas) {
    const next = Math.max(0, (bases.get(key) ?? 0) + delta);
    into.set(key, next);
    if (next === 0) batch.del(key);
    else batch.put(key, encodeCount(next));
  }
  deltas.deltas.clear();
}
