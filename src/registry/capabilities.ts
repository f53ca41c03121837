/**
 * The known capabilities and how many agents list each (`Registry.ListCapabilities`): one counter
 * key per capability, `count/cap/<capability>` → msgpackr number of agents, kept by
 * {@link capabilityCounts} in the batch of every record write and delete (see `counters.ts`), so
 * listing them reads one key per capability and never the agents.
 */
import type { KeyValueReader, WriteBatch } from '../storage/types.js';
import { decodeCount, type CounterDeltas } from './counters.js';
import { prefixEndAny } from './keys.js';
import type { RecordIndex } from './records.js';
import type { Agent, CapabilityCount } from './types.js';

/** Prefix of the capability counts: `count/cap/<capability>`. */
export const CAP_COUNT_PREFIX = 'count/cap/';

/** Most capabilities one `ListCapabilities` answers; beyond it the answer is cut (ask with a prefix). */
export const MAX_LISTED_CAPABILITIES = 10_000;

/** The key of the number of agents listing `capability`. */
export function capCountKey(capability: string): string {
  return CAP_COUNT_PREFIX + capability;
}

/** The agent count per capability as a {@link RecordIndex}: +1 per capability gained, −1 per capability lost. */
export const capabilityCounts: RecordIndex = {
  stage(_batch: WriteBatch, existing: Agent | undefined, agent: Agent | undefined, counters?: CounterDeltas): void {
    if (counters === undefined) throw new Error('the capability counts need counters');
    const before = new Set(existing?.capabilities ?? []);
    const after = new Set(agent?.capabilities ?? []);
    for (const c of before) if (!after.has(c)) counters.add(capCountKey(c), -1);
    for (const c of after) if (!before.has(c)) counters.add(capCountKey(c), 1);
  },
};

/**
 * The capabilities starting with `prefix` (all for `''`) with their agent counts, ordered by
 * capability (UTF-8 byte order), at most {@link MAX_LISTED_CAPABILITIES}; `truncated` when more
 * exist. One range scan over the counters.
 */
export async function listCapabilities(kv: KeyValueReader, prefix: string): Promise<{ capabilities: CapabilityCount[]; truncated: boolean }> {
  const base = CAP_COUNT_PREFIX + prefix;
  const capabilities: CapabilityCount[] = [];
  for await (const [key, value] of kv.range(base, prefixEndAny(base), MAX_LISTED_CAPABILITIES + 1)) {
    const count = decodeCount(value);
    if (count > 0) capabilities.push({ capability: key.slice(CAP_COUNT_PREFIX.length), count });
  }
  const truncated = capabilities.length > MAX_LISTED_CAPABILITIES;
  return { capabilities: truncated ? capabilities.slice(0, MAX_LISTED_CAPABILITIES) : capabilities, truncated };
}
