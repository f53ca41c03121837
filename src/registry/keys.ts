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
 * | `meta/applied`                             | last applied log index, msgpackr number |
 * | `session/<clientId>\x00<seq, 16 hex>`      | first result of that write (exactly-once) |
 * | `meta/members`                             | the cluster membership, msgpackr |
 *
 * Every query is a range scan over one prefix: all entries of an index for one capability,
 * kind or label pair share the prefix up to and including the `\x00` before the id, so they
 * come out ordered by id (the layout of etcd's key index, with `\x00` as separator so that a
 * prefix never matches a longer value: `cap=a` does not see `cap=ab`).
 */
import type { Agent } from './types.js';

/** Prefix of agent records. */
export const AGENT_PREFIX = 'agent/';
/** Prefix of the capability index. */
export const CAP_INDEX_PREFIX = 'idx/cap/';
/** Prefix of the kind index. */
export const KIND_INDEX_PREFIX = 'idx/kind/';
/** Prefix of the label index. */
export const LABEL_INDEX_PREFIX = 'idx/label/';
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
 * The set of secondary index keys of a record: one per distinct capability, one for the kind,
 * one per label. Sorted, without duplicates.
 */
export function indexKeysOf(agent: Pick<Agent, 'id' | 'kind' | 'capabilities' | 'labels'>): string[] {
  const keys = new Set<string>();
  for (const capability of agent.capabilities) keys.add(capIndexKey(capability, agent.id));
  keys.add(kindIndexKey(agent.kind, agent.id));
  for (const [key, value] of Object.entries(agent.labels)) keys.add(labelIndexKey(key, value, agent.id));
  return [...keys].sort();
}
