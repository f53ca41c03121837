/**
 * The watch event history (etcd's event history, bounded like its compaction): the events of
 * each revision under `ev/<revision>`, written in the batch of the revision's entry and kept for
 * the last {@link EVENT_HISTORY_REVISIONS} revisions.
 */
import { CorruptionError, type KeyValueReader } from '../storage/types.js';
import { registryPackr } from './commands.js';
import { EVENT_PREFIX, eventKey } from './keys.js';
import { agentRecordFields, parseAgentRecord } from './records.js';
import type { WatchEvent } from './types.js';

/**
 * How many revisions of watch events are kept: applying entry `i` deletes the events of
 * revision `i - EVENT_HISTORY_REVISIONS`. Every node must use the same value (the history
 * travels in snapshots, and each old key is deleted exactly once, when its revision leaves the
 * window).
 */
export const EVENT_HISTORY_REVISIONS = 10_000;

/** Encodes the events of one revision: `[[type, record, expired], ...]` (the revision is in the key). */
export function encodeEvents(events: readonly WatchEvent[]): Uint8Array {
  return registryPackr.pack(events.map((e) => [e.type, agentRecordFields(e.agent), e.expired]));
}

/** Decodes the events stored at `key` for `revision`; throws {@link CorruptionError}. */
export function decodeEvents(value: Uint8Array, key: string, revision: number): WatchEvent[] {
  let decoded: unknown;
  try {
    decoded = registryPackr.unpack(value);
  } catch (err) {
    throw new CorruptionError(`events ${JSON.stringify(key)} do not decode: ${(err as Error).message}`);
  }
  if (!Array.isArray(decoded)) throw new CorruptionError(`events ${JSON.stringify(key)} are not an array`);
  return decoded.map((raw: unknown, i): WatchEvent => {
    if (!Array.isArray(raw) || raw.length !== 3 || (raw[0] !== 'put' && raw[0] !== 'delete') || typeof raw[2] !== 'boolean') {
      throw new CorruptionError(`event ${i} of ${JSON.stringify(key)} is malformed`);
    }
    const agent = parseAgentRecord(raw[1], `event ${i} of ${JSON.stringify(key)}`);
    return { type: raw[0] as 'put' | 'delete', agent, revision, expired: raw[2] as boolean };
  });
}

/**
 * The stored events of revisions `from..through`, in order, whole revisions only: stops after
 * the revision at which `limit` events are reached. Rejects with {@link CorruptionError} on a
 * damaged event.
 */
export async function readEvents(kv: KeyValueReader, from: number, through: number, limit: number): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  if (from > through) return events;
  for await (const [key, value] of kv.range(eventKey(from), eventKey(through + 1))) {
    const revision = Number.parseInt(key.slice(EVENT_PREFIX.length), 16);
    for (const e of decodeEvents(value, key, revision)) events.push(e);
    if (events.length >= limit) break;
  }
  return events;
}
