/**
 * The key layout of the registry in the state machine's key space (keys are UTF-8 strings,
 * ordered by their bytes, as LevelDB orders them):
 *
 * | key                                        | value                         |
 * |--------------------------------------------|-------------------------------|
 * | `agent/<id>`                               | the {@link Agent}, msgpackr   |
 * | `idx/cap/<capability>\x00<id>`             | empty (secondary index)       |
 * | `idx/kind/<kind>\x00<id>`                  | empty (secondary index)       |
 * | `idx/label/<key>\x00<value>\x00<id>`       | empty (secondary index)       |
 * | `idx/health/<health>\x00<id>`              | empty (secondary index)       |
 * | `idx/name/<name>\x00<id>`                  | empty (secondary index, ordered by name) |
 * | `idx/ver/<name>\x00<id>`                   | msgpackr `[version, createRevision]`: the versions of a name (`versions.ts`), only for a non-empty name |
 * | `idx/lease/<id>`                           | msgpackr `[ttlSeconds, modRevision]`, only for an agent with a lease |
 * | `ev/<revision, 16 hex>`                    | the watch events of that revision, msgpackr array (a window of recent revisions) |
 * | `meta/applied`                             | last applied log index, msgpackr number |
 * | `session/<clientId>\x00<seq, 16 hex>`      | first result of that write (exactly-once) |
 * | `meta/members`                             | the cluster membership, msgpackr |
 *
 * Every query is a range scan over one prefix: all entries of an index for one capability,
 * kind or label pair share the prefix up to and including the `\x00` before the id, so they
 * come out ordered by id (the layout of etcd's key index, with `\x00` as separator so that a
 * prefix never matches a longer value: `cap=a` does not see `cap=ab`). The name index is the
 * exception on purpose: a scan of `idx/name/<prefix>` (no separator) finds every name that starts
 * with the prefix, ordered by name, and the reader sorts the matches by id.
 */
import type { Agent, Health } from './types.js';

/** Prefix of agent records. */
export const AGENT_PREFIX = 'agent/';
/** Prefix of the capability index. */
export const CAP_INDEX_PREFIX = 'idx/cap/';
/** Prefix of the kind index. */
export const KIND_INDEX_PREFIX = 'idx/kind/';
/** Prefix of the label index. */
export const LABEL_INDEX_PREFIX = 'idx/label/';
/** Prefix of the health index. */
export const HEALTH_INDEX_PREFIX = 'idx/health/';
/** Prefix of the name index (entries ordered by name, then id). */
export const NAME_INDEX_PREFIX = 'idx/name/';
/**
 * Prefix of the versions index: `idx/ver/<name>\x00<id>` for every agent with a non-empty name,
 * valued `[version, createRevision]`, so the versions of a name and its latest are one range
 * read with no record reads. Kept by `versionsIndex` of `versions.ts` (not {@link indexKeysOf}).
 */
export const VERSION_INDEX_PREFIX = 'idx/ver/';
/** Prefix of the lease index: one key per agent holding a lease, valued `[ttlSeconds, modRevision]`. */
export const LEASE_INDEX_PREFIX = 'idx/lease/';
/** Prefix of the watch event history: `ev/<revision, 16 hex digits>`. */
export const EVENT_PREFIX = 'ev/';
/** Prefix shared by every secondary index. */
export const INDEX_PREFIX = 'idx/';
/** Key of the last applied log index. */
export const APPLIED_INDEX_KEY = 'meta/applied';
/** Separator between the parts of an index key; sorts before every other character. */
export const KEY_SEPARATOR = '\x00';
/** The replicated membership record: every member's id, address and voter flag. */
export const MEMBERS_KEY = 'meta/members';
/** Prefix of exactly-once session results: `session/<clientId>\x00<sequence, 16 hex digits>`. */
export const SESSION_PREFIX = 'session/';

/** Key of the stored result of write `sequence` of client `clientId` (thesis §6.3). */
export function sessionKey(clientId: string, sequence: number): string {
  return `${SESSION_PREFIX}${clientId}${KEY_SEPARATOR}${sequence.toString(16).padStart(16, '0')}`;
}

/** The key of the record of agent `id`: `agent/<id>`. */
export function agentKey(id: string): string {
  return AGENT_PREFIX + id;
}

/** Prefix of the capability index entries for `capability`: `idx/cap/<capability>\x00`. */
export function capIndexPrefix(capability: string): string {
  return CAP_INDEX_PREFIX + capability + KEY_SEPARATOR;
}

/** Prefix of the kind index entries for `kind`: `idx/kind/<kind>\x00`. */
export function kindIndexPrefix(kind: string): string {
  return KIND_INDEX_PREFIX + kind + KEY_SEPARATOR;
}

/** Prefix of the label index entries for `key=value`: `idx/label/<key>\x00<value>\x00`. */
export function labelIndexPrefix(key: string, value: string): string {
  return LABEL_INDEX_PREFIX + key + KEY_SEPARATOR + value + KEY_SEPARATOR;
}

/** The capability index key of agent `id`: `idx/cap/<capability>\x00<id>`. */
export function capIndexKey(capability: string, id: string): string {
  return capIndexPrefix(capability) + id;
}

/** The kind index key of agent `id`: `idx/kind/<kind>\x00<id>`. */
export function kindIndexKey(kind: string, id: string): string {
  return kindIndexPrefix(kind) + id;
}

/** The label index key of agent `id`: `idx/label/<key>\x00<value>\x00<id>`. */
export function labelIndexKey(key: string, value: string, id: string): string {
  return labelIndexPrefix(key, value) + id;
}

/** Prefix of the health index entries for `health`: `idx/health/<health>\x00`. */
export function healthIndexPrefix(health: Health): string {
  return HEALTH_INDEX_PREFIX + health + KEY_SEPARATOR;
}

/** The health index key of agent `id`: `idx/health/<health>\x00<id>`. */
export function healthIndexKey(health: Health, id: string): string {
  return healthIndexPrefix(health) + id;
}

/**
 * The name index key of agent `id`: `idx/name/<name>\x00<id>`. A scan of
 * `idx/name/<prefix>` yields the agents whose name starts with `prefix`, ordered by name (not
 * by id).
 */
export function nameIndexKey(name: string, id: string): string {
  return NAME_INDEX_PREFIX + name + KEY_SEPARATOR + id;
}

/** Prefix of the versions index entries of `name`: `idx/ver/<name>\x00`. */
export function versionIndexPrefix(name: string): string {
  return VERSION_INDEX_PREFIX + name + KEY_SEPARATOR;
}

/** The versions index key of agent `id` named `name`: `idx/ver/<name>\x00<id>`. */
export function versionIndexKey(name: string, id: string): string {
  return versionIndexPrefix(name) + id;
}

/** The lease index key of agent `id`: `idx/lease/<id>`. */
export function leaseIndexKey(id: string): string {
  return LEASE_INDEX_PREFIX + id;
}

/**
 * The key of the watch events of `revision`: `ev/<revision as 16 lowercase hex digits>`, so
 * keys sort by revision. Throws `RangeError` unless `revision` is a positive safe integer.
 */
export function eventKey(revision: number): string {
  if (!Number.isSafeInteger(revision) || revision < 1) throw new RangeError(`revision must be a positive integer, got ${String(revision)}`);
  return EVENT_PREFIX + revision.toString(16).padStart(16, '0');
}

/**
 * The smallest string greater than every string that starts with `prefix` (its last character
 * plus one), for use as the exclusive end of a range scan. The prefix must end in an ASCII
 * character below U+007F (every prefix here ends in `/` or `\x00`), so that the result is also
 * right in UTF-8 byte order; throws `RangeError` otherwise or on an empty prefix.
 */
export function prefixEnd(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  if (prefix.length === 0 || !(last < 0x7f)) {
    throw new RangeError(`prefix must be non-empty and end in an ASCII character: ${JSON.stringify(prefix)}`);
  }
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

/**
 * The exclusive end of a scan over every key that starts with `prefix`, for any non-empty
 * prefix (a name prefix may end in any character): the prefix with its last code point
 * replaced by the next one (skipping the surrogate range), dropping trailing U+10FFFF. Right in
 * UTF-8 byte order, which is code point order. Throws `RangeError` on a prefix made only of
 * U+10FFFF or an empty one.
 */
export function prefixEndAny(prefix: string): string {
  const points = [...prefix];
  while (points.length > 0) {
    const last = (points.pop() as string).codePointAt(0) as number;
    if (last >= 0x10ffff) continue;
    const next = last + 1 >= 0xd800 && last + 1 <= 0xdfff ? 0xe000 : last + 1;
    return points.join('') + String.fromCodePoint(next);
  }
  throw new RangeError(`prefix has no end: ${JSON.stringify(prefix)}`);
}

/**
 * The set of secondary index keys of a record: one per distinct capability, one for the kind,
 * one per label, one for the health, one for the name, and the lease key when `ttlSeconds > 0`.
 * Sorted, without duplicates. The lease key's value is {@link leaseIndexValue}; every other
 * index value is empty.
 */
export function indexKeysOf(agent: Pick<Agent, 'id' | 'name' | 'kind' | 'capabilities' | 'labels' | 'health' | 'ttlSeconds'>): string[] {
  const keys = new Set<string>();
  for (const capability of agent.capabilities) keys.add(capIndexKey(capability, agent.id));
  keys.add(kindIndexKey(agent.kind, agent.id));
  for (const [key, value] of Object.entries(agent.labels)) keys.add(labelIndexKey(key, value, agent.id));
  keys.add(healthIndexKey(agent.health, agent.id));
  keys.add(nameIndexKey(agent.name, agent.id));
  if (agent.ttlSeconds > 0) keys.add(leaseIndexKey(agent.id));
  return [...keys].sort();
}

/** The value of an agent's lease index key: `[ttlSeconds, modRevision]` (encoded by the caller). */
export function leaseIndexValue(agent: Pick<Agent, 'ttlSeconds' | 'modRevision'>): [number, number] {
  return [agent.ttlSeconds, agent.modRevision];
}
