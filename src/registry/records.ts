/**
 * Agent records and their secondary indexes, as the state machine stores them: the record codec
 * (msgpackr, fields in a fixed order so encodings are stable), the index maintenance of one
 * record write or delete (every index key derived from the record, see `keys.ts`), and the read
 * of the lease index.
 *
 * Index maintenance is a list of {@link RecordIndex} steps run in the same batch as the record:
 * each derives its keys from the record alone, so the indexes always agree with the records they
 * were written with, and a snapshot (which carries every key of the state machine) carries them.
 */
import { CorruptionError, type KeyValueReader, type WriteBatch } from '../storage/types.js';
import { HEALTH_VALUES, parseAgentSpec, registryPackr } from './commands.js';
import { agentKey, healthIndexKey, indexKeysOf, LEASE_INDEX_PREFIX, leaseIndexKey, leaseIndexValue, nameIndexKey, prefixEnd } from './keys.js';
import type { CounterDeltas } from './counters.js';
import type { LeaseRecord } from './lease-types.js';
import type { Agent, AgentSpec, Health } from './types.js';

/** Milliseconds per second, to turn a lease's `ttlSeconds` into the lease manager's `ttlMs`. */
const MS_PER_SECOND = 1000;

/** The value of every secondary index key: the key is the information. */
export const EMPTY_VALUE = new Uint8Array(0);

/**
 * The fields of a stored record, in a fixed order (so encodings are stable): {@link agentOf}'s,
 * then the optional ones that are present ({@link withOptionalFields}). For encoding only: the
 * arrays and maps are the agent's own, not copies.
 */
export function agentRecordFields(agent: Agent): Record<string, unknown> {
  return withOptionalFields(agentOf(agent, agent.createRevision, agent.modRevision, agent.ttlSeconds, agent.health), agent);
}

/** Encodes a stored record (an {@link Agent}) with msgpackr, fields in a fixed order. */
export function encodeAgentRecord(agent: Agent): Uint8Array {
  return registryPackr.pack(agentRecordFields(agent));
}

/**
 * Decodes a record written by {@link encodeAgentRecord}, stored at `key`. A record written before
 * leases and health existed decodes with `ttlSeconds` 0 and health `unspecified`, one written
 * before times existed without `createdAtMs` / `updatedAtMs`. Throws
 * {@link CorruptionError} naming the key when it does not decode or has the wrong shape.
 */
export function decodeAgentRecord(value: Uint8Array, key: string): Agent {
  let decoded: unknown;
  try {
    decoded = registryPackr.unpack(value);
  } catch (err) {
    throw new CorruptionError(`record ${JSON.stringify(key)} does not decode: ${(err as Error).message}`);
  }
  return parseAgentRecord(decoded, `record ${JSON.stringify(key)}`);
}

/**
 * Turns the stored bytes of the record under `key` into its `Agent`: {@link decodeAgentRecord},
 * or a cache in front of it (`DecodedRecords`, `record-cache.ts`). Throws `CorruptionError`.
 */
export type RecordDecoder = (value: Uint8Array, key: string) => Agent;

/** Checks the shape of a decoded record; `what` names it in the {@link CorruptionError}. */
export function parseAgentRecord(decoded: unknown, what: string): Agent {
  let spec: AgentSpec;
  try {
    spec = parseAgentSpec(decoded, 'record');
  } catch (err) {
    throw new CorruptionError(`${what} does not decode: ${(err as Error).message}`);
  }
  const { createRevision, modRevision, ttlSeconds = 0, health = 'unspecified', createdAtMs, updatedAtMs, modifiedBy, verifiedKeyId, signatureError } = decoded as Record<string, unknown>;
  if (!isPositiveInteger(createRevision) || !isPositiveInteger(modRevision) || modRevision < createRevision) {
    throw new CorruptionError(`${what} has bad revisions`);
  }
  if (typeof ttlSeconds !== 'number' || !Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0) {
    throw new CorruptionError(`${what} has a bad ttlSeconds`);
  }
  if (typeof health !== 'string' || !(HEALTH_VALUES as readonly string[]).includes(health)) {
    throw new CorruptionError(`${what} has a bad health`);
  }
  return withOptionalFields(agentOf(spec, createRevision, modRevision, ttlSeconds, health as Health), {
    createdAtMs: createdAtMs === undefined ? undefined : checkedTime(createdAtMs, 'createdAtMs', what),
    updatedAtMs: updatedAtMs === undefined ? undefined : checkedTime(updatedAtMs, 'updatedAtMs', what),
    modifiedBy: modifiedBy === undefined ? undefined : checkedText(modifiedBy, 'modifiedBy', what),
    verifiedKeyId: verifiedKeyId === undefined ? undefined : checkedText(verifiedKeyId, 'verifiedKeyId', what),
    signatureError: signatureError === undefined ? undefined : checkedText(signatureError, 'signatureError', what),
  });
}

/** An {@link Agent} whose optional fields can still be set. */
export type AgentDraft = { -readonly [K in keyof Agent]: Agent[K] };

/**
 * The agent of `spec` (its arrays and maps shared, not copied) with the record's required fields;
 * the optional ones are for the caller to set. Built as a literal of named fields, in the order
 * of the stored encoding: spreading the spec into a literal with more fields cost about 8 µs,
 * which every read and every write of a record paid.
 */
export function agentOf(spec: AgentSpec, createRevision: number, modRevision: number, ttlSeconds: number, health: Health): AgentDraft {
  const { id, name, kind, version, description, capabilities, endpoints, labels, card, cardFormat } = spec;
  if (card !== undefined && cardFormat !== undefined) {
    return { id, name, kind, version, description, capabilities, endpoints, labels, card, cardFormat, createRevision, modRevision, ttlSeconds, health };
  }
  return { id, name, kind, version, description, capabilities, endpoints, labels, createRevision, modRevision, ttlSeconds, health };
}

/** The optional fields of a record, after its required ones in the stored encoding. */
export type OptionalRecordFields = Pick<Agent, 'createdAtMs' | 'updatedAtMs' | 'modifiedBy' | 'verifiedKeyId' | 'signatureError'>;

/**
 * `agent` with those of `from`'s optional fields that are present, set in the order of the
 * stored encoding (assigned, not spread: every read and write of a record runs this).
 */
export function withOptionalFields(agent: AgentDraft, from: OptionalRecordFields): AgentDraft {
  if (from.createdAtMs !== undefined) agent.createdAtMs = from.createdAtMs;
  if (from.updatedAtMs !== undefined) agent.updatedAtMs = from.updatedAtMs;
  if (from.modifiedBy !== undefined) agent.modifiedBy = from.modifiedBy;
  if (from.verifiedKeyId !== undefined) agent.verifiedKeyId = from.verifiedKeyId;
  if (from.signatureError !== undefined) agent.signatureError = from.signatureError;
  return agent;
}

/** A stored time in ms, else {@link CorruptionError} naming `field` of `what`. */
function checkedTime(v: unknown, field: string, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new CorruptionError(`${what} has a bad ${field}`);
  return v;
}

/** A stored string, else {@link CorruptionError} naming `field` of `what`. */
function checkedText(v: unknown, field: string, what: string): string {
  if (typeof v !== 'string') throw new CorruptionError(`${what} has a bad ${field}`);
  return v;
}

/** Whether `x` is a positive safe integer. */
export function isPositiveInteger(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
}

/**
 * One index kept beside the records: given a record's old and new version, it stages the key
 * changes into the batch of the write. `existing` is `undefined` for a new record; `agent` is
 * `undefined` for a delete. Deterministic: derived from the records alone.
 */
export interface RecordIndex {
  /**
   * Stages the index changes of replacing `existing` with `agent` (either may be absent); an
   * index that keeps counts adds their deltas to `counters` (see `counters.ts`).
   */
  stage(batch: WriteBatch, existing: Agent | undefined, agent: Agent | undefined, counters?: CounterDeltas): void;
}

/**
 * The secondary indexes of `keys.ts` (capability, kind, label, health, name, lease): index keys
 * of the old record that the new one lacks are deleted, new ones written. The lease key is
 * always written (its value holds the `modRevision`), and so are the health and name keys: a
 * record written before those indexes existed has none, and rewriting it is how it enters them.
 */
export const secondaryIndexes: RecordIndex = {
  stage(batch, existing, agent) {
    const oldKeys = new Set(existing === undefined ? [] : indexKeysOf(existing));
    if (agent === undefined) {
      for (const key of oldKeys) batch.del(key);
      return;
    }
    const newKeys = indexKeysOf(agent);
    const lease = agent.ttlSeconds > 0 ? leaseIndexKey(agent.id) : undefined;
    const health = healthIndexKey(agent.health, agent.id);
    const name = nameIndexKey(agent.name, agent.id);
    const kept = new Set(newKeys);
    for (const key of oldKeys) if (!kept.has(key)) batch.del(key);
    for (const key of newKeys) {
      if (key === lease) batch.put(key, registryPackr.pack(leaseIndexValue(agent)));
      else if (!oldKeys.has(key) || key === health || key === name) batch.put(key, EMPTY_VALUE);
    }
  },
};

/**
 * Stages the write of `agent` (replacing `existing`) or, with `agent` undefined, the delete of
 * `existing`: the record itself, then every index of `indexes`, in order.
 */
export function stageRecord(batch: WriteBatch, indexes: readonly RecordIndex[], existing: Agent | undefined, agent: Agent | undefined, counters?: CounterDeltas): void {
  for (const index of indexes) index.stage(batch, existing, agent, counters);
  if (agent !== undefined) batch.put(agentKey(agent.id), encodeAgentRecord(agent));
  else if (existing !== undefined) batch.del(agentKey(existing.id));
}

/**
 * Every agent holding a lease, as written to the store, ordered by id: its TTL in milliseconds
 * and the `modRevision` an expiry must name. Read from the lease index (one key per leased
 * agent), so the cost grows with the leases, not with the agents. Rejects with
 * {@link CorruptionError} on a damaged lease key.
 */
export async function readLeases(kv: KeyValueReader): Promise<LeaseRecord[]> {
  const out: LeaseRecord[] = [];
  for await (const [key, value] of kv.range(LEASE_INDEX_PREFIX, prefixEnd(LEASE_INDEX_PREFIX))) {
    let decoded: unknown;
    try {
      decoded = registryPackr.unpack(value);
    } catch {
      decoded = undefined;
    }
    if (!Array.isArray(decoded) || !isPositiveInteger(decoded[0]) || !isPositiveInteger(decoded[1])) {
      throw new CorruptionError(`lease ${JSON.stringify(key)} does not decode`);
    }
    out.push({ id: key.slice(LEASE_INDEX_PREFIX.length), ttlMs: decoded[0] * MS_PER_SECOND, modRevision: decoded[1] });
  }
  return out;
}
