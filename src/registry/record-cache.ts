/**
 * Decoded records kept in memory for {@link RegistryStateMachine.get} (`state-machine.ts`): a
 * `Get` of a hot agent then skips the store read, the msgpack decode and the record's shape
 * check. Bounded by count and by the records' stored size, the least recently read dropped
 * first. The state machine puts only durable records here and drops an agent's entry when a
 * committed batch changes it; this class only keeps the bounds.
 */
import { LRUCache } from 'lru-cache';
import type { RecordDecoder } from './records.js';
import type { Agent } from './types.js';

/** Most records the cache keeps. */
export const RECORD_CACHE_ENTRIES = 4096;
/**
 * Most bytes of records, by their stored (encoded) size, the cache keeps: 8 MiB, so a registry
 * of large AgentCards (up to `MAX_AGENT_BYTES` each) keeps fewer of them, not more memory.
 */
export const RECORD_CACHE_BYTES = 8 * 1024 * 1024;

/**
 * An LRU of at most `maxEntries` values and `maxBytes` bytes (each value's size given when set),
 * or `undefined` when a bound is 0 (nothing is kept). Throws `RangeError`, naming `what`, when a
 * bound is not a non-negative safe integer.
 */
function boundedLru<V extends object>(what: string, maxEntries: number, maxBytes: number): LRUCache<string, V> | undefined {
  for (const [name, v] of [['maxEntries', maxEntries], ['maxBytes', maxBytes]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what} ${name} must be a non-negative integer, got ${String(v)}`);
  }
  return maxEntries === 0 || maxBytes === 0 ? undefined : new LRUCache<string, V>({ max: maxEntries, maxSize: maxBytes });
}

/**
 * An LRU of decoded records by agent id, within {@link RECORD_CACHE_ENTRIES} and
 * {@link RECORD_CACHE_BYTES}: `lru-cache`'s linked list, so every operation is O(1) (an LRU that
 * finds its oldest entry by iterating a `Map` skips every entry deleted since the map last
 * rehashed: thousands at this size).
 */
export class RecordCache {
  /** Undefined when a bound is 0: nothing is kept. */
  private readonly entries: LRUCache<string, Agent> | undefined;

  /** Throws `RangeError` when a bound is not a non-negative safe integer. */
  constructor(maxEntries = RECORD_CACHE_ENTRIES, maxBytes = RECORD_CACHE_BYTES) {
    this.entries = boundedLru<Agent>('record cache', maxEntries, maxBytes);
  }

  /** The record of `id`, now the most recently read, or `undefined`. */
  get(id: string): Agent | undefined {
    return this.entries?.get(id);
  }

  /**
   * Keeps `agent` (stored in `bytes` bytes, at least 1) as the record of `id`, dropping the least
   * recently read beyond the bounds; a record larger than the byte bound is not kept (and an older
   * record of `id` is forgotten).
   */
  set(id: string, agent: Agent, bytes: number): void {
    // lru-cache replaces an older record of `id` in place, and forgets it when `bytes` is too large.
    this.entries?.set(id, agent, { size: Math.max(1, bytes) });
  }

  /** Forgets the record of `id`. */
  delete(id: string): void {
    this.entries?.delete(id);
  }

  /** Forgets every record. */
  clear(): void {
    this.entries?.clear();
  }

  /** Records held. */
  get size(): number {
    return this.entries?.size ?? 0;
  }

  /** Stored bytes of the records held. */
  get bytes(): number {
    return this.entries?.calculatedSize ?? 0;
  }
}

/**
 * Most records a {@link DecodedRecords} keeps: ten first pages of 100. What it keeps costs
 * memory beyond its own bound (the decoded objects, their kept wire forms and encodings, and the
 * garbage a scan's churn leaves in the old generation): a follower of 10,000 MCP-shaped agents
 * paging through all of them five times in pages of 1,000 peaked at 217 MiB of anonymous memory
 * with 1,024 entries against 178 MiB before the cache (and about 100 MiB more with 4,096).
 */
export const DECODED_RECORDS_ENTRIES = 1024;
/** Most bytes of records, by their stored size, a {@link DecodedRecords} keeps: 2 MiB. */
export const DECODED_RECORDS_BYTES = 2 * 1024 * 1024;

/**
 * The decoder of the records a scan reads (`Find`, `Search`): keeps the last decoded record of
 * each key with the exact bytes it was decoded from, and answers a read of the same bytes with
 * the same `Agent` object, skipping the msgpack decode and the shape check. Unlike
 * {@link RecordCache}, which answers `Get` without reading the store and so must hold only the
 * current record, an entry here is used only when the bytes just read equal the kept ones, so a
 * scan of any view (an older snapshot's or the newest) may fill it, and nothing drops entries
 * when records change: a changed record simply no longer matches. Bounded by count and by stored
 * bytes ({@link DECODED_RECORDS_ENTRIES}, {@link DECODED_RECORDS_BYTES}), least recently read
 * dropped first. Keeping one object per record also lets the gRPC layer keep its encoding
 * (`src/api/agent-encoding.ts`); callers must treat the returned agents as read-only.
 */
export class DecodedRecords {
  /** Undefined when a bound is 0: every read decodes. */
  private readonly entries: LRUCache<string, { readonly stored: Uint8Array; readonly agent: Agent }> | undefined;

  /** Throws `RangeError` when a bound is not a non-negative safe integer. */
  constructor(
    private readonly decodeRecord: RecordDecoder,
    maxEntries = DECODED_RECORDS_ENTRIES,
    maxBytes = DECODED_RECORDS_BYTES,
  ) {
    this.entries = boundedLru('decoded records', maxEntries, maxBytes);
  }

  /**
   * The record stored under `key` as `value`: the kept `Agent` when `value` equals the bytes it
   * was decoded from, else a fresh decode (kept from now on). Throws what the decoder throws
   * (`CorruptionError` for a damaged record), keeping nothing.
   */
  decode(value: Uint8Array, key: string): Agent {
    const kept = this.entries?.get(key);
    if (kept !== undefined && Buffer.compare(kept.stored, value) === 0) return kept.agent;
    const agent = this.decodeRecord(value, key);
    // A copy: the value read may be a view into a larger buffer the kept entry would hold alive.
    this.entries?.set(key, { stored: new Uint8Array(value), agent }, { size: Math.max(1, value.byteLength) });
    return agent;
  }

  /** Records held. */
  get size(): number {
    return this.entries?.size ?? 0;
  }

  /** Forgets every record. */
  clear(): void {
    this.entries?.clear();
  }
}
