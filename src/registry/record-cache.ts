/**
 * Decoded records kept in memory for {@link RegistryStateMachine.get} (`state-machine.ts`): a
 * `Get` of a hot agent then skips the store read, the msgpack decode and the record's shape
 * check. Bounded by count and by the records' stored size, the least recently read dropped
 * first. The state machine puts only durable records here and drops an agent's entry when a
 * committed batch changes it; this class only keeps the bounds.
 */
import type { Agent } from './types.js';

/** Most records the cache keeps. */
export const RECORD_CACHE_ENTRIES = 4096;
/**
 * Most bytes of records, by their stored (encoded) size, the cache keeps: 8 MiB, so a registry
 * of large AgentCards (up to `MAX_AGENT_BYTES` each) keeps fewer of them, not more memory.
 */
export const RECORD_CACHE_BYTES = 8 * 1024 * 1024;

/** An LRU of decoded records by agent id, within {@link RECORD_CACHE_ENTRIES} and {@link RECORD_CACHE_BYTES}. */
export class RecordCache {
  private readonly entries = new Map<string, { readonly agent: Agent; readonly bytes: number }>();
  private heldBytes = 0;

  /** Throws `RangeError` when a bound is not a non-negative safe integer. */
  constructor(
    private readonly maxEntries = RECORD_CACHE_ENTRIES,
    private readonly maxBytes = RECORD_CACHE_BYTES,
  ) {
    for (const [name, v] of [['maxEntries', maxEntries], ['maxBytes', maxBytes]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`record cache ${name} must be a non-negative integer, got ${String(v)}`);
    }
  }

  /** The record of `id`, now the most recently read, or `undefined`. */
  get(id: string): Agent | undefined {
    const e = this.entries.get(id);
    if (e === undefined) return undefined;
    this.entries.delete(id);
    this.entries.set(id, e);
    return e.agent;
  }

  /** Keeps `agent` (stored in `bytes` bytes) as the record of `id`, dropping the least recently read beyond the bounds. */
  set(id: string, agent: Agent, bytes: number): void {
    this.delete(id);
    if (bytes > this.maxBytes || this.maxEntries === 0) return;
    this.entries.set(id, { agent, bytes });
    this.heldBytes += bytes;
    for (const [oldest, e] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.heldBytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.heldBytes -= e.bytes;
    }
  }

  /** Forgets the record of `id`. */
  delete(id: string): void {
    const e = this.entries.get(id);
    if (e === undefined) return;
    this.entries.delete(id);
    this.heldBytes -= e.bytes;
  }

  /** Forgets every record. */
  clear(): void {
    this.entries.clear();
    this.heldBytes = 0;
  }

  /** Records held. */
  get size(): number {
    return this.entries.size;
  }

  /** Stored bytes of the records held. */
  get bytes(): number {
    return this.heldBytes;
  }
}
