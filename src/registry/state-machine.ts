/**
 * The registry state machine: applies committed log entries to the agent records and their
 * secondary indexes, and answers `get` and `find` from the store.
 *
 * Apply is deterministic (no clock, no randomness, no I/O but the node's own store): the same
 * entries give the same records and revisions on every node. Its changes go into the caller's
 * {@link WriteBatch} together with the Raft log and hard state of the same `Ready`, and the
 * applied index is written in that batch too, so after a crash the store holds the records and
 * the applied index of the same point of the log, and re-applying entries up to it is a no-op
 * (etcd's `consistentIndex`, hashicorp/raft's "apply is idempotent given the index").
 *
 * Records carry etcd's revisions: `createRevision` (index of the command that created the
 * record; kept when it is replaced) and `modRevision` (index of the last command that wrote it),
 * plus the lease length (`ttlSeconds`, 0 for none) and the reported health.
 *
 * Conditional writes (etcd's transactions on `mod_revision`): a register or deregister with
 * `expectedRevision` applies only if the agent exists with that `modRevision`, a register with
 * `createOnly` only if the id is absent; otherwise nothing is written and the result is a
 * `conflict`. Lease expiry is decided by the leader and arrives as an `expire` command naming
 * each agent's `modRevision`, so a re-registration in between survives it.
 *
 * Every command that changes records also yields watch events (etcd's event history), written
 * in the same batch under `ev/<revision>` and kept for the last {@link EVENT_HISTORY_REVISIONS}
 * revisions: {@link RegistryStateMachine.eventsSince} replays them,
 * {@link RegistryStateMachine.takeCommittedEvents} hands the newly durable ones to live
 * watchers. The key layout is in `keys.ts`.
 */
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { assertNever, type Entry } from '../raft/types.js';
import { compareUtf8 } from '../storage/staging.js';
import { CorruptionError, type KeyValueReader, type NodeStore, type WriteBatch } from '../storage/types.js';
import {
  agentSpecFields,
  CommandDecodeError,
  decodeCommand,
  decodeMemberChange,
  HEALTH_VALUES,
  parseAgentSpec,
  registryPackr,
} from './commands.js';
import {
  AGENT_PREFIX,
  APPLIED_INDEX_KEY,
  agentKey,
  capIndexPrefix,
  EVENT_PREFIX,
  eventKey,
  healthIndexKey,
  healthIndexPrefix,
  indexKeysOf,
  KEY_SEPARATOR,
  kindIndexPrefix,
  labelIndexPrefix,
  LEASE_INDEX_PREFIX,
  leaseIndexKey,
  leaseIndexValue,
  NAME_INDEX_PREFIX,
  nameIndexKey,
  prefixEnd,
  prefixEndAny,
  sessionKey,
  MEMBERS_KEY,
} from './keys.js';
import { AgentTally, MAX_COUNTED_AGENT_KINDS, type AgentCount } from './agent-counts.js';
import type { LeaseRecord } from './lease-types.js';
import type { Agent, AgentSpec, ClientSession, Command, CommandResult, FindPage, FindQuery, Health, Member, MemberChange, WatchEvent } from './types.js';

/**
 * How many of a client's most recent writes keep their result for exactly-once retries
 * (thesis §6.3). Writing sequence `n` forgets the result of `n - SESSION_WINDOW_SEQUENCES`, so
 * a client must never have more writes than this outstanding at once.
 */
export const SESSION_WINDOW_SEQUENCES = 4096;

/** Milliseconds per second, to turn a lease's `ttlSeconds` into the lease manager's `ttlMs`. */
const MS_PER_SECOND = 1000;

/** Results per page of a find when the query gives 0 or nothing. */
export const DEFAULT_PAGE_SIZE = 100;
/** Largest page size a find accepts; more is refused with a {@link QueryError}. */
export const MAX_PAGE_SIZE = 1000;

/**
 * How many revisions of watch events are kept (etcd's event history, bounded like its
 * compaction): applying entry `i` deletes the events of revision `i - EVENT_HISTORY_REVISIONS`.
 * Every node must use the same value (the history travels in snapshots, and each old key is
 * deleted exactly once, when its revision leaves the window).
 */
export const EVENT_HISTORY_REVISIONS = 10_000;

/**
 * Index keys read per range read when a find intersects two index ranges (health and a
 * capability, kind or label): a seek past the keys read so far starts a new read.
 */
export const FIND_INTERSECT_CHUNK_KEYS = 64;

/**
 * Most committed events kept for {@link RegistryStateMachine.takeCommittedEvents} between two
 * calls; beyond it the oldest are dropped with a warning (watchers recover them from the
 * history). The node takes them after every write, so this only bounds memory if it does not.
 */
export const MAX_UNTAKEN_EVENTS = 100_000;

/** Options of a {@link RegistryStateMachine}. */
export interface StateMachineOptions {
  /** Revisions of watch events kept; {@link EVENT_HISTORY_REVISIONS} by default (tests use fewer). */
  readonly eventHistoryRevisions?: number;
}

/** The value of every secondary index key: the key is the information. */
const EMPTY_VALUE = new Uint8Array(0);

/**
 * A find was given a bad argument (gRPC `INVALID_ARGUMENT`); `field` names it in the API's
 * snake_case: `page_size`, `page_token`, `capability`, `kind`, `labels`, `health` or
 * `name_prefix`.
 */
export class QueryError extends Error {
  override readonly name = 'QueryError';
  /** The request field at fault, e.g. `page_size`. */
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** The fields of a stored record, in a fixed order (so encodings are stable). */
function agentRecordFields(agent: Agent): Record<string, unknown> {
  return {
    ...agentSpecFields(agent),
    createRevision: agent.createRevision,
    modRevision: agent.modRevision,
    ttlSeconds: agent.ttlSeconds,
    health: agent.health,
  };
}

/** Encodes a stored record (an {@link Agent}) with msgpackr, fields in a fixed order. */
export function encodeAgentRecord(agent: Agent): Uint8Array {
  return registryPackr.pack(agentRecordFields(agent));
}

/**
 * Decodes a record written by {@link encodeAgentRecord}, stored at `key`. A record written before
 * leases and health existed decodes with `ttlSeconds` 0 and health `unspecified`. Throws
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

/** Checks the shape of a decoded record; `what` names it in the {@link CorruptionError}. */
function parseAgentRecord(decoded: unknown, what: string): Agent {
  let spec: AgentSpec;
  try {
    spec = parseAgentSpec(decoded, 'record');
  } catch (err) {
    throw new CorruptionError(`${what} does not decode: ${(err as Error).message}`);
  }
  const { createRevision, modRevision, ttlSeconds = 0, health = 'unspecified' } = decoded as Record<string, unknown>;
  if (!isPositiveInteger(createRevision) || !isPositiveInteger(modRevision) || modRevision < createRevision) {
    throw new CorruptionError(`${what} has bad revisions`);
  }
  if (typeof ttlSeconds !== 'number' || !Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0) {
    throw new CorruptionError(`${what} has a bad ttlSeconds`);
  }
  if (typeof health !== 'string' || !(HEALTH_VALUES as readonly string[]).includes(health)) {
    throw new CorruptionError(`${what} has a bad health`);
  }
  return { ...spec, createRevision, modRevision, ttlSeconds, health: health as Health };
}

/** Encodes the events of one revision: `[[type, record, expired], ...]` (the revision is in the key). */
function encodeEvents(events: readonly WatchEvent[]): Uint8Array {
  return registryPackr.pack(events.map((e) => [e.type, agentRecordFields(e.agent), e.expired]));
}

/** Decodes the events stored at `key` for `revision`; throws {@link CorruptionError}. */
function decodeEvents(value: Uint8Array, key: string, revision: number): WatchEvent[] {
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

function isPositiveInteger(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
}

/** Changes applied into one batch that is not yet durable: id → new record, or `null` if deleted. */
interface PendingApply {
  readonly batch: WriteBatch;
  appliedIndex: number;
  readonly changes: Map<string, Agent | null>;
  /** Session results staged in this batch, by session key. */
  readonly sessions: Map<string, SessionResult>;
  /** Watch events staged in this batch, in revision order. */
  readonly events: WatchEvent[];
  /** How the batch changes the agent counts (only kept once counts are asked for). */
  readonly tally: AgentTally;
}

/** The agent counts as {@link RegistryStateMachine.agentCounts} reports them. */
export interface AgentCounts {
  /** Every non-zero count by kind and health (kinds beyond `MAX_COUNTED_AGENT_KINDS` merged). */
  counts(): Iterable<AgentCount>;
  /** Agents in all. */
  readonly total: number;
  /** Agents holding a lease. */
  readonly leased: number;
}

/** What is kept of a write's first result to answer its retries. */
type SessionResult =
  | { readonly t: 'register'; readonly revision: number; readonly createRevision: number; readonly health: Health }
  | { readonly t: 'deregister'; readonly revision: number; readonly deleted: boolean }
  | { readonly t: 'conflict'; readonly revision: number; readonly currentRevision: number; readonly reason: string };

/** The result of a command (a `config` entry is not a command). */
type CommandOutcome = Exclude<CommandResult, { type: 'config' }>;

/** The filters of a find, checked and normalized (empty strings and `unspecified` health dropped). */
interface Filters {
  readonly capability: string | undefined;
  readonly kind: string | undefined;
  readonly labels: readonly (readonly [string, string])[];
  readonly health: Health | undefined;
  readonly namePrefix: string | undefined;
}

/**
 * The registry state machine over a {@link NodeStore}'s key space.
 *
 * Life cycle: `open()` once; then for every `Ready`: `applyEntries(committed, batch)`, the caller
 * writes the batch, then calls `commitApplied(batch)` and `takeCommittedEvents()` (to publish
 * them to live watchers). Reads (`get`, `find`, `leases`, `eventsSince`) see what written
 * batches hold.
 */
export class RegistryStateMachine {
  private readonly log: Logger;
  private opened = false;
  /** Last applied index known durable (its batch was written and committed). */
  private durableApplied = 0;
  /** Last applied index staged in some batch (>= durableApplied). */
  private stagedApplied = 0;
  /** Staged, not yet committed changes, oldest batch first. */
  private pending: PendingApply[] = [];
  /** Records read ahead for the `applyEntries` call in progress. */
  private prefetched: Map<string, Agent | undefined> | undefined;
  /** The membership as staged by the newest applied config entry (undefined: read the store). */
  private stagedMembers: Member[] | undefined;
  /** Session results read ahead for the `applyEntries` call in progress. */
  private prefetchedSessions: Map<string, SessionResult> | undefined;
  /** Revisions of watch events kept in the store. */
  private readonly eventHistoryRevisions: number;
  /** Events of committed batches not yet taken by {@link takeCommittedEvents}, in order. */
  private committedEvents: WatchEvent[] = [];
  /** Whether agent counts were asked for ({@link keepAgentCounts}): kept, and made again after every open. */
  private countAgentsWanted = false;
  /** The agent counts, once counted. */
  private agentTally: AgentTally | undefined;
  /** While a count runs: the changes committed since it started, added to it when it ends. */
  private tallySinceCount: AgentTally | undefined;
  /** Bumped by every {@link open}: a count started before it is stale. */
  private generation = 0;

  /**
   * Wraps `store`; logs through a child of `logger` with `component: 'state-machine'`. Throws
   * `RangeError` when `options.eventHistoryRevisions` is not a positive safe integer.
   */
  constructor(
    private readonly store: NodeStore,
    logger: Logger = silentLogger,
    options: StateMachineOptions = {},
  ) {
    this.log = logger.child({ component: 'state-machine' });
    const window = options.eventHistoryRevisions ?? EVENT_HISTORY_REVISIONS;
    if (!Number.isSafeInteger(window) || window < 1) throw new RangeError(`eventHistoryRevisions must be a positive integer, got ${String(window)}`);
    this.eventHistoryRevisions = window;
  }

  /**
   * Loads the applied index from the store (0 on a fresh store) and drops anything staged.
   * Rejects with {@link CorruptionError} when the stored value is not a non-negative integer.
   */
  async open(): Promise<void> {
    const value = await this.store.kv.get(APPLIED_INDEX_KEY);
    let applied = 0;
    if (value !== undefined) {
      let decoded: unknown;
      try {
        decoded = registryPackr.unpack(value);
      } catch {
        decoded = undefined;
      }
      if (typeof decoded !== 'number' || !Number.isSafeInteger(decoded) || decoded < 0) {
        throw new CorruptionError(`state machine key ${APPLIED_INDEX_KEY} does not hold a log index`);
      }
      applied = decoded;
    }
    this.durableApplied = applied;
    this.stagedApplied = applied;
    this.pending = [];
    this.stagedMembers = undefined;
    this.opened = true;
    this.generation++;
    this.agentTally = undefined;
    this.tallySinceCount = undefined;
    this.maybeCountAgents();
  }

  /**
   * Starts keeping counts of the agents by kind and health, and of those holding a lease (for
   * metrics): one background pass over the agent records now (and after every later
   * {@link open}, e.g. a snapshot install), then the changes of every committed batch. Until the
   * pass ends {@link agentCounts} is `undefined`. Idempotent; the pass costs one read of every
   * record, once, and keeping the counts a few map updates per write.
   */
  keepAgentCounts(): void {
    if (this.countAgentsWanted) return;
    this.countAgentsWanted = true;
    this.maybeCountAgents();
  }

  /**
   * The agents as of the durable applied index, counted by kind and health: O(kinds) to read.
   * `undefined` before {@link keepAgentCounts}, while its pass runs, or when the pass failed.
   */
  agentCounts(): AgentCounts | undefined {
    return this.agentTally;
  }

  /**
   * Starts the pass that counts the agents, when counts are wanted and none is kept or running,
   * and nothing is staged and not committed: then the records the pass reads (a view of the
   * store taken as it starts) are exactly the committed state, and every batch committed later
   * is added to the count.
   */
  private maybeCountAgents(): void {
    if (!this.countAgentsWanted || !this.opened || this.agentTally !== undefined || this.tallySinceCount !== undefined || this.pending.length > 0) return;
    const generation = this.generation;
    const since = new AgentTally();
    this.tallySinceCount = since;
    const records = this.store.kv.range(AGENT_PREFIX, prefixEnd(AGENT_PREFIX))[Symbol.asyncIterator]();
    // Asking for the first record starts the iteration, and takes its view, now.
    const first = records.next();
    void (async () => {
      const tally = new AgentTally(MAX_COUNTED_AGENT_KINDS);
      try {
        for (let r = await first; r.done !== true; r = await records.next()) {
          let d: { kind?: unknown; health?: unknown; ttlSeconds?: unknown } | undefined;
          try {
            d = registryPackr.unpack(r.value[1]) as typeof d;
          } catch {
            d = undefined;
          }
          if (d === null || typeof d !== 'object') continue;
          const health = (HEALTH_VALUES as readonly unknown[]).includes(d.health) ? (d.health as Health) : 'unspecified';
          tally.add(typeof d.kind === 'string' ? d.kind : '', health, typeof d.ttlSeconds === 'number' && d.ttlSeconds > 0, 1);
        }
      } catch (err) {
        if (generation === this.generation) {
          this.tallySinceCount = undefined;
          this.log.warn({ err }, 'counting the agents failed; agent counts are not available');
        }
        return;
      }
      if (generation !== this.generation) return;
      tally.addAll(since);
      this.agentTally = tally;
      this.tallySinceCount = undefined;
      this.log.debug({ agents: tally.total }, 'agents counted');
    })();
  }

  /** The last applied log index whose batch is durable (committed with {@link commitApplied}). */
  get appliedIndex(): number {
    return this.durableApplied;
  }

  /** The last log index applied into a batch, durable or not (>= {@link appliedIndex}). */
  get stagedIndex(): number {
    return this.stagedApplied;
  }

  /**
   * Applies committed `entries` in order into `batch` (not written: the caller writes it, with
   * the Raft log and hard state of the same `Ready`), and stages the new applied index in it.
   *
   * - Entries at or below the last applied or staged index are skipped (idempotent replay).
   * - Empty `data` (a leader's no-op, §5.4.2), `config` entries and data that does not decode
   *   (logged as a warning) only advance the applied index and yield no result.
   * - Register creates or replaces: `createRevision` is kept from an existing record,
   *   `modRevision` is the entry's index, `ttlSeconds` comes from the command (0: no lease),
   *   `health` from the command, else the existing record, else `unspecified`. Deregister of a
   *   missing id yields `deleted: false`.
   * - A register or deregister whose condition (`expectedRevision`, `createOnly`) fails writes
   *   nothing and yields `conflict` with the agent's current `modRevision` (0 if absent).
   * - `setHealth` rewrites the record only when the health changes; `expire` deletes each named
   *   agent that still has that `modRevision` and a lease.
   * - The watch events of each revision are staged under `ev/<revision>`, and the events of
   *   revision `index - eventHistoryRevisions` are deleted, for every applied index.
   *
   * Several calls may stage into one batch, or into successive batches written in order: later
   * commands see the staged records of earlier ones. Returns the results by log index (the
   * revision). Throws `Error` before {@link open}, `RangeError` when an entry's index is not the
   * next one to apply (a gap); rejects with {@link CorruptionError} on a damaged stored record.
   * On rejection the batch holds every entry applied before the failure, with a matching
   * applied index, and the node should stop.
   */
  async applyEntries(entries: readonly Entry[], batch: WriteBatch): Promise<Map<number, CommandResult>> {
    if (!this.opened) throw new Error('state machine is not open: call open() first');
    const results = new Map<number, CommandResult>();
    let pending: PendingApply | undefined;
    // One read of every record the batch touches, instead of one read per command.
    this.prefetched = await this.prefetch(entries);
    try {
      for (const entry of entries) {
        const index: number = entry.index;
        if (!Number.isSafeInteger(index) || index < 1) {
          throw new RangeError(`entry index must be a positive integer, got ${String(index)}`);
        }
        if (index <= this.stagedApplied) continue;
        if (index !== this.stagedApplied + 1) {
          throw new RangeError(`entry ${index} is not the next to apply (${this.stagedApplied + 1})`);
        }
        pending ??= this.pendingFor(batch);
        const result = await this.applyOne(entry, pending);
        if (result !== undefined) results.set(index, result);
        // Indexes are dense, so every revision leaves the window exactly once, here.
        if (index > this.eventHistoryRevisions) pending.batch.del(eventKey(index - this.eventHistoryRevisions));
        this.stagedApplied = index;
        pending.appliedIndex = index;
      }
    } finally {
      this.prefetched = undefined;
      this.prefetchedSessions = undefined;
      if (pending !== undefined) batch.put(APPLIED_INDEX_KEY, registryPackr.pack(this.stagedApplied));
    }
    return results;
  }

  /**
   * Reads, in one `getMany`, the stored records of every id the commands among `entries` name
   * and no staged change covers. Entries that do not decode are left to `applyOne` to report.
   */
  private async prefetch(entries: readonly Entry[]): Promise<Map<string, Agent | undefined>> {
    const ids = new Set<string>();
    const sessions: string[] = [];
    for (const entry of entries) {
      if (entry.type === 'config' || entry.data.length === 0 || entry.index <= this.stagedApplied) continue;
      let cmd: Command;
      try {
        cmd = decodeCommand(entry.data);
      } catch {
        continue;
      }
      for (const id of idsOf(cmd)) if (!this.pending.some((p) => p.changes.has(id))) ids.add(id);
      const session = sessionOf(cmd);
      if (session) sessions.push(sessionKey(session.clientId, session.sequence));
    }
    const keys = [...ids].map(agentKey);
    const values = await this.store.kv.getMany([...keys, ...sessions]);
    const out = new Map<string, Agent | undefined>();
    [...ids].forEach((id, i) => {
      const v = values[i];
      out.set(id, v === undefined ? undefined : decodeAgentRecord(v, keys[i] as string));
    });
    this.prefetchedSessions = new Map();
    sessions.forEach((key, i) => {
      const v = values[keys.length + i];
      if (v !== undefined) this.prefetchedSessions?.set(key, decodeSessionResult(v, key));
    });
    return out;
  }

  /** The stored first result of a session write, if it was applied before. */
  private async lookupSession(key: string): Promise<SessionResult | undefined> {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const r = (this.pending[i] as PendingApply).sessions.get(key);
      if (r !== undefined) return r;
    }
    if (this.prefetchedSessions?.has(key)) return this.prefetchedSessions.get(key);
    const v = await this.store.kv.get(key);
    return v === undefined ? undefined : decodeSessionResult(v, key);
  }

  /**
   * Tells the state machine that `batch` (or, without an argument, every batch it staged into)
   * was written durably: the applied index and records staged in it, and in every batch staged
   * before it, become the durable state, and their watch events become available to
   * {@link takeCommittedEvents}. Call it after `batch.write()` resolves, never before. A batch
   * the state machine staged nothing into is ignored.
   */
  commitApplied(batch?: WriteBatch): void {
    const at = batch === undefined ? this.pending.length - 1 : this.pending.findIndex((p) => p.batch === batch);
    if (batch === undefined) this.durableApplied = this.stagedApplied;
    if (at < 0) return;
    if (batch !== undefined) this.durableApplied = (this.pending[at] as PendingApply).appliedIndex;
    for (const p of this.pending.splice(0, at + 1)) {
      for (const e of p.events) this.committedEvents.push(e);
      if (!p.tally.empty) (this.agentTally ?? this.tallySinceCount)?.addAll(p.tally);
    }
    this.maybeCountAgents();
    const excess = this.committedEvents.length - MAX_UNTAKEN_EVENTS;
    if (excess > 0) {
      this.committedEvents.splice(0, excess);
      this.log.warn({ dropped: excess, limit: MAX_UNTAKEN_EVENTS }, 'committed watch events were not taken; dropped the oldest');
    }
  }

  /**
   * The watch events of the batches passed to {@link commitApplied} since the last call, in
   * revision order (several per revision for an `expire`), and forgets them. Events of batches
   * dropped with {@link discardStaged} never appear. The node publishes them to live watchers
   * right after each write.
   */
  takeCommittedEvents(): WatchEvent[] {
    const events = this.committedEvents;
    this.committedEvents = [];
    return events;
  }

  /**
   * The kept watch history from `fromRevision` on (etcd's watch with a start revision): the events
   * with `fromRevision <= revision <= lastRevision`, in revision order, read from written batches.
   * Whole revisions only: it stops after the revision at which `limit` events are reached, so a
   * page may hold more than `limit` events, and fewer only when the history ends; the next page
   * starts after the last event's revision.
   *
   * - `lastRevision`: the durable applied index ({@link appliedIndex}) when the read started.
   * - `oldestRevision`: the oldest revision whose events are still kept,
   *   `max(1, index - eventHistoryRevisions + 1)` for the newest index staged when the read ends
   *   (the applied index when no write is in flight), so every revision from it on was intact in
   *   what was read. A `fromRevision` below it may have lost events: the caller answers
   *   `OUT_OF_RANGE`.
   *
   * Throws `RangeError` when `fromRevision` is not a non-negative safe integer or `limit` not a
   * positive one; rejects with {@link CorruptionError} on a damaged stored event.
   */
  async eventsSince(fromRevision: number, limit: number): Promise<{ events: WatchEvent[]; oldestRevision: number; lastRevision: number }> {
    if (!Number.isSafeInteger(fromRevision) || fromRevision < 0) throw new RangeError(`fromRevision must be a non-negative integer, got ${String(fromRevision)}`);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${String(limit)}`);
    const lastRevision = this.durableApplied;
    const start = Math.max(1, fromRevision);
    const events: WatchEvent[] = [];
    if (start <= lastRevision) {
      for await (const [key, value] of this.store.kv.range(eventKey(start), eventKey(lastRevision + 1))) {
        const revision = Number.parseInt(key.slice(EVENT_PREFIX.length), 16);
        for (const e of decodeEvents(value, key, revision)) events.push(e);
        if (events.length >= limit) break;
      }
    }
    const oldestRevision = Math.max(1, this.stagedApplied - this.eventHistoryRevisions + 1);
    return { events, oldestRevision, lastRevision };
  }

  /**
   * Every agent holding a lease, as written to the store, ordered by id: its TTL in milliseconds
   * and the `modRevision` an expiry must name. Read from the lease index (one key per leased
   * agent), so the cost grows with the leases, not with the agents. The leader loads this when it
   * takes office. Rejects with {@link CorruptionError} on a damaged lease key.
   */
  async leases(): Promise<LeaseRecord[]> {
    const out: LeaseRecord[] = [];
    for await (const [key, value] of this.store.kv.range(LEASE_INDEX_PREFIX, prefixEnd(LEASE_INDEX_PREFIX))) {
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

  /**
   * Forgets everything staged and not committed, e.g. after a batch's write failed: the staged
   * index falls back to {@link appliedIndex}. The caller drops the batches.
   */
  discardStaged(): void {
    // The staged events go with their batches: they never happened.
    this.pending = [];
    this.stagedApplied = this.durableApplied;
    this.stagedMembers = undefined;
  }

  /**
   * The record of agent `id` as written to the store, or `undefined`. Rejects with
   * {@link CorruptionError} on a damaged record.
   */
  async get(id: string): Promise<Agent | undefined> {
    if (typeof id !== 'string') throw new QueryError('id', 'must be a string');
    const key = agentKey(id);
    const value = await this.store.kv.get(key);
    return value === undefined ? undefined : decodeAgentRecord(value, key);
  }

  /**
   * One page of the agents matching every filter of `query`, ordered by id (UTF-8 byte order).
   * All filters must hold (AND); empty strings, empty maps and health `unspecified` mean "any".
   *
   * Reads indexes so the cost grows with the scanned ranges, not with the number of records:
   * the capability's index if given, else the kind's, else the first label's; with a health
   * filter too, that index and the health index are intersected (both are ordered by id: each
   * skips ahead to the other's next id, so the cost follows the shorter range, or the page when
   * matches are dense); with only a health filter (and maybe a name prefix), the health index;
   * with only a name prefix, the name index (`idx/name/<prefix>`, read whole, matching ids
   * sorted: the cost grows with the matches); with no filter, every record. Every filter is
   * checked on each record. Stops after `pageSize` matches plus one to know
   * whether another page follows; `nextPageToken` (base64url of the last id returned) resumes
   * strictly after that id, at any later revision. Each record is read when scanned, so a page
   * reflects every write before it started and possibly some after.
   *
   * Throws {@link QueryError} with `field` `page_size` (not an integer in
   * `[0, MAX_PAGE_SIZE]`), `page_token` (not a token this method returned), `capability`,
   * `kind`, `labels`, `name_prefix` (not strings) or `health` (not a {@link Health}).
   */
  async find(query: FindQuery): Promise<FindPage> {
    const filters = parseFilters(query);
    const pageSize = parsePageSize(query.pageSize);
    const after = parsePageToken(query.pageToken);

    const [firstLabel] = filters.labels;
    let prefix: string | undefined;
    if (filters.capability !== undefined) prefix = capIndexPrefix(filters.capability);
    else if (filters.kind !== undefined) prefix = kindIndexPrefix(filters.kind);
    else if (firstLabel !== undefined) prefix = labelIndexPrefix(firstLabel[0], firstLabel[1]);
    const health = filters.health === undefined ? undefined : healthIndexPrefix(filters.health);
    let found: Agent[];
    if (prefix !== undefined && health !== undefined) found = await this.scanIntersection(prefix, health, filters, pageSize, after);
    else if (prefix !== undefined || health !== undefined) found = await this.scanIndex((prefix ?? health) as string, filters, pageSize, after);
    else if (filters.namePrefix !== undefined) found = await this.scanNames(filters, pageSize, after);
    else found = await this.scanRecords(filters, pageSize, after);
    if (found.length <= pageSize) return { agents: found, nextPageToken: '' };
    const agents = found.slice(0, pageSize);
    return { agents, nextPageToken: encodePageToken((agents[agents.length - 1] as Agent).id) };
  }

  /**
   * Intersects two id-ordered index ranges after `after` (a leapfrog join: the cursor behind
   * seeks to the other's id), resolving common ids to records a chunk at a time; up to
   * `pageSize + 1` matches.
   */
  private async scanIntersection(a: string, b: string, filters: Filters, pageSize: number, after: string | undefined): Promise<Agent[]> {
    const x = new IndexCursor(this.store.kv, a);
    const y = new IndexCursor(this.store.kv, b);
    await x.load(resumeKey(a, after));
    await y.load(resumeKey(b, after));
    const found: Agent[] = [];
    let chunk: string[] = [];
    for (let xid = x.id, yid = y.id; xid !== undefined && yid !== undefined; xid = x.id, yid = y.id) {
      const order = compareUtf8(xid, yid);
      if (order < 0) await x.seek(yid);
      else if (order > 0) await y.seek(xid);
      else {
        chunk.push(xid);
        if (chunk.length >= pageSize + 1 - found.length) {
          await this.resolve(chunk, filters, pageSize, found);
          chunk = [];
          if (found.length > pageSize) break;
        }
        await x.next();
        await y.next();
      }
    }
    if (chunk.length > 0) await this.resolve(chunk, filters, pageSize, found);
    return found;
  }

  /** Scans every record after `after`; up to `pageSize + 1` matches. */
  private async scanRecords(filters: Filters, pageSize: number, after: string | undefined): Promise<Agent[]> {
    const found: Agent[] = [];
    for await (const [key, value] of this.store.kv.range(resumeKey(AGENT_PREFIX, after), prefixEnd(AGENT_PREFIX))) {
      const agent = decodeAgentRecord(value, key);
      if (agent.id === key.slice(AGENT_PREFIX.length) && matches(agent, filters)) found.push(agent);
      if (found.length > pageSize) break;
    }
    return found;
  }

  /**
   * Scans the id-ordered index range `prefix` after `after`, resolving hits to records a chunk at
   * a time (one getMany per chunk); up to `pageSize + 1` matches.
   */
  private async scanIndex(prefix: string, filters: Filters, pageSize: number, after: string | undefined): Promise<Agent[]> {
    const found: Agent[] = [];
    let chunk: string[] = [];
    for await (const [key] of this.store.kv.range(resumeKey(prefix, after), prefixEnd(prefix))) {
      // An index key may outlive its record between two reads, and a separator inside a value
      // can make a key look like another prefix's: the record itself decides.
      chunk.push(key.slice(prefix.length));
      if (chunk.length >= pageSize + 1 - found.length) {
        await this.resolve(chunk, filters, pageSize, found);
        chunk = [];
        if (found.length > pageSize) break;
      }
    }
    if (chunk.length > 0) await this.resolve(chunk, filters, pageSize, found);
    return found;
  }

  /**
   * Finds by name prefix alone: reads every `idx/name/<prefix>` key (ordered by name), keeps the
   * ids after `after`, sorts them by id and resolves them in order; up to `pageSize + 1` matches.
   */
  private async scanNames(filters: Filters, pageSize: number, after: string | undefined): Promise<Agent[]> {
    const base = NAME_INDEX_PREFIX + (filters.namePrefix ?? '');
    const ids: string[] = [];
    for await (const [key] of this.store.kv.range(base, prefixEndAny(base))) {
      // Ids never contain the separator; a name might (if written around validation).
      const id = key.slice(key.lastIndexOf(KEY_SEPARATOR) + 1);
      if (after === undefined || compareUtf8(id, after) > 0) ids.push(id);
    }
    ids.sort(compareUtf8);
    const found: Agent[] = [];
    let next = 0;
    while (next < ids.length && found.length <= pageSize) {
      const chunk = ids.slice(next, next + pageSize + 1 - found.length);
      next += chunk.length;
      await this.resolve(chunk, filters, pageSize, found);
    }
    return found;
  }

  /** Reads the records of `ids` (one getMany) and appends those matching `filters` to `found`, up to `pageSize + 1`. */
  private async resolve(ids: readonly string[], filters: Filters, pageSize: number, found: Agent[]): Promise<void> {
    const keys = ids.map(agentKey);
    const values = await this.store.kv.getMany(keys);
    ids.forEach((id, i) => {
      const v = values[i];
      if (v === undefined || found.length > pageSize) return;
      const agent = decodeAgentRecord(v, keys[i] as string);
      if (agent.id === id && matches(agent, filters) && found[found.length - 1]?.id !== id) found.push(agent);
    });
  }

  /** The pending changes of `batch`, starting them when it is not the newest batch staged into. */
  private pendingFor(batch: WriteBatch): PendingApply {
    const newest = this.pending[this.pending.length - 1];
    if (newest !== undefined && newest.batch === batch) return newest;
    if (this.pending.some((p) => p.batch === batch)) {
      throw new Error('applyEntries into an older batch after a newer one: batches are written in order');
    }
    const created: PendingApply = { batch, appliedIndex: this.stagedApplied, changes: new Map(), sessions: new Map(), events: [], tally: new AgentTally() };
    this.pending.push(created);
    return created;
  }

  /** The record of `id` as staged: newest pending change first, then the prefetch, then the store. */
  private async lookup(id: string): Promise<Agent | undefined> {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const change = (this.pending[i] as PendingApply).changes.get(id);
      if (change !== undefined) return change ?? undefined;
    }
    if (this.prefetched?.has(id)) return this.prefetched.get(id);
    return this.get(id);
  }

  /** Applies one entry into `pending.batch`; `undefined` when it yields no result. */
  private async applyOne(entry: Entry, pending: PendingApply): Promise<CommandResult | undefined> {
    if (entry.type === 'config') return this.applyMemberChange(entry, pending);
    if (entry.data.length === 0) return undefined;
    let cmd: Command;
    try {
      cmd = decodeCommand(entry.data);
    } catch (err) {
      if (!(err instanceof CommandDecodeError)) throw err;
      this.log.warn({ index: entry.index, field: err.field, err: err.message }, 'skipping entry that does not decode');
      return undefined;
    }
    const session = sessionOf(cmd);
    if (session === undefined) return this.applyAndRecord(cmd, entry.index, pending);
    // Thesis §6.3: a retried write is answered with its first result and not applied again.
    const key = sessionKey(session.clientId, session.sequence);
    const first = await this.lookupSession(key);
    if (first !== undefined) return duplicateResult(cmd, first);
    const result = await this.applyAndRecord(cmd, entry.index, pending);
    const kept = sessionResultOf(result);
    if (kept === undefined) return result;
    pending.sessions.set(key, kept);
    pending.batch.put(key, registryPackr.pack(kept));
    if (session.sequence > SESSION_WINDOW_SEQUENCES) {
      const old = sessionKey(session.clientId, session.sequence - SESSION_WINDOW_SEQUENCES);
      pending.batch.del(old);
      pending.sessions.delete(old);
    }
    return result;
  }

  /**
   * The membership as of the last applied (or staged) entry, in the order members were added.
   * Empty before the first membership entry is applied.
   */
  async members(): Promise<Member[]> {
    if (this.stagedMembers !== undefined) return [...this.stagedMembers];
    const v = await this.store.kv.get(MEMBERS_KEY);
    if (v === undefined) return [];
    return decodeMembers(v);
  }

  /** Applies a `config` entry to the membership record (Raft applies it to its progress separately). */
  private async applyMemberChange(entry: Entry, pending: PendingApply): Promise<CommandResult | undefined> {
    let change: MemberChange;
    try {
      change = decodeMemberChange(entry.data);
    } catch (err) {
      if (!(err instanceof CommandDecodeError)) throw err;
      this.log.warn({ index: entry.index, field: err.field, err: err.message }, 'skipping config entry that does not decode');
      return undefined;
    }
    const current = await this.members();
    const others = current.filter((m) => m.id !== change.nodeId);
    const existing = current.find((m) => m.id === change.nodeId);
    let next: Member[];
    switch (change.type) {
      case 'addLearner':
        next = existing ? current : [...current, { id: change.nodeId, address: change.address, voter: false }];
        break;
      case 'addVoter':
        next = existing
          ? current.map((m) => (m.id === change.nodeId ? { id: m.id, address: change.address || m.address, voter: true } : m))
          : [...current, { id: change.nodeId, address: change.address, voter: true }];
        break;
      case 'removeNode':
        next = others;
        break;
      default:
        return assertNever(change.type);
    }
    this.stagedMembers = next;
    pending.batch.put(MEMBERS_KEY, registryPackr.pack(next.map((m) => [m.id, m.address, m.voter])));
    return { type: 'config', change, members: next, revision: entry.index };
  }

  /**
   * Applies one decoded command at log index `revision` into `pending.batch`, and stages its
   * watch events (if any) under `ev/<revision>`.
   */
  private async applyAndRecord(cmd: Command, revision: number, pending: PendingApply): Promise<CommandOutcome> {
    const events: WatchEvent[] = [];
    const result = await this.applyCommand(cmd, revision, pending, events);
    if (events.length > 0) {
      pending.batch.put(eventKey(revision), encodeEvents(events));
      for (const e of events) pending.events.push(e);
    }
    return result;
  }

  /** Applies one decoded command at log index `revision`; appends the watch events it causes to `events`. */
  private async applyCommand(cmd: Command, revision: number, pending: PendingApply, events: WatchEvent[]): Promise<CommandOutcome> {
    switch (cmd.type) {
      case 'register': {
        const existing = await this.lookup(cmd.agent.id);
        const current = existing?.modRevision ?? 0;
        if (cmd.createOnly === true && existing !== undefined) {
          return { type: 'conflict', revision, currentRevision: current, reason: `agent ${cmd.agent.id} already exists (mod_revision ${current})` };
        }
        const expected = cmd.expectedRevision ?? 0;
        if (expected > 0 && current !== expected) {
          return { type: 'conflict', revision, currentRevision: current, reason: revisionMismatch(cmd.agent.id, current, expected) };
        }
        const agent: Agent = {
          ...agentSpecFields(cmd.agent),
          createRevision: existing?.createRevision ?? revision,
          modRevision: revision,
          ttlSeconds: cmd.ttlSeconds ?? 0,
          health: cmd.health ?? existing?.health ?? 'unspecified',
        };
        this.writeRecord(pending, existing, agent);
        events.push({ type: 'put', agent, revision, expired: false });
        return { type: 'register', agent, revision };
      }
      case 'deregister': {
        const existing = await this.lookup(cmd.id);
        const current = existing?.modRevision ?? 0;
        const expected = cmd.expectedRevision ?? 0;
        if (expected > 0 && current !== expected) {
          return { type: 'conflict', revision, currentRevision: current, reason: revisionMismatch(cmd.id, current, expected) };
        }
        if (existing === undefined) return { type: 'deregister', deleted: false, revision };
        this.deleteRecord(pending, existing);
        events.push({ type: 'delete', agent: existing, revision, expired: false });
        return { type: 'deregister', deleted: true, revision };
      }
      case 'setHealth': {
        const existing = await this.lookup(cmd.id);
        if (existing === undefined || existing.health === cmd.health) return { type: 'setHealth', agent: existing, revision };
        const agent: Agent = { ...existing, health: cmd.health, modRevision: revision };
        this.writeRecord(pending, existing, agent);
        events.push({ type: 'put', agent, revision, expired: false });
        return { type: 'setHealth', agent, revision };
      }
      case 'expire': {
        const expired: string[] = [];
        for (const lease of cmd.leases) {
          const existing = await this.lookup(lease.id);
          // A re-registration (new modRevision) or a register without a lease since the leader's
          // decision keeps the agent.
          if (existing === undefined || existing.modRevision !== lease.modRevision || existing.ttlSeconds <= 0) continue;
          this.deleteRecord(pending, existing);
          events.push({ type: 'delete', agent: existing, revision, expired: true });
          expired.push(existing.id);
        }
        return { type: 'expire', expired, revision };
      }
      default:
        return assertNever(cmd);
    }
  }

  /**
   * Stages `agent` as the record of its id, replacing `existing`: index keys of the old record
   * that the new one lacks are deleted, new ones written. The lease key is always written (its
   * value holds the `modRevision`), and so are the health and name keys: a record written before
   * those indexes existed has none, and rewriting it is how it enters them.
   */
  private writeRecord(pending: PendingApply, existing: Agent | undefined, agent: Agent): void {
    const { batch, changes } = pending;
    const oldKeys = new Set(existing === undefined ? [] : indexKeysOf(existing));
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
    batch.put(agentKey(agent.id), encodeAgentRecord(agent));
    changes.set(agent.id, agent);
    if (this.countAgentsWanted) {
      if (existing !== undefined) pending.tally.record(existing, -1);
      pending.tally.record(agent, 1);
    }
  }

  /** Stages the deletion of `existing`: its record and every index key. */
  private deleteRecord(pending: PendingApply, existing: Agent): void {
    for (const key of indexKeysOf(existing)) pending.batch.del(key);
    pending.batch.del(agentKey(existing.id));
    pending.changes.set(existing.id, null);
    if (this.countAgentsWanted) pending.tally.record(existing, -1);
  }
}

/** The ids of the agents a command reads. */
function idsOf(cmd: Command): string[] {
  switch (cmd.type) {
    case 'register':
      return [cmd.agent.id];
    case 'deregister':
    case 'setHealth':
      return [cmd.id];
    case 'expire':
      return cmd.leases.map((l) => l.id);
    default:
      return assertNever(cmd);
  }
}

/** The exactly-once session of a command, if it carries one (only client writes do). */
function sessionOf(cmd: Command): ClientSession | undefined {
  return cmd.type === 'register' || cmd.type === 'deregister' ? cmd.session : undefined;
}

/** What a session keeps of a client write's first result; `undefined` for other results. */
function sessionResultOf(result: CommandOutcome): SessionResult | undefined {
  switch (result.type) {
    case 'register':
      return { t: 'register', revision: result.revision, createRevision: result.agent.createRevision, health: result.agent.health };
    case 'deregister':
      return { t: 'deregister', revision: result.revision, deleted: result.deleted };
    case 'conflict':
      return { t: 'conflict', revision: result.revision, currentRevision: result.currentRevision, reason: result.reason };
    default:
      return undefined;
  }
}

/** The reason of a failed `expectedRevision` condition. */
function revisionMismatch(id: string, current: number, expected: number): string {
  return current === 0
    ? `agent ${id} does not exist (expected mod_revision ${expected})`
    : `agent ${id} has mod_revision ${current}, expected ${expected}`;
}

/**
 * A position in an id-ordered index range (`<prefix><id>` keys), read
 * {@link FIND_INTERSECT_CHUNK_KEYS} keys at a time. `id` is `undefined` once the range is
 * exhausted.
 */
class IndexCursor {
  private ids: string[] = [];
  private at = 0;
  /** Whether the range holds nothing after the ids read. */
  private ended = false;
  private readonly end: string;

  constructor(
    private readonly kv: KeyValueReader,
    private readonly prefix: string,
  ) {
    this.end = prefixEnd(prefix);
  }

  /** The id at the cursor, or `undefined` past the end. */
  get id(): string | undefined {
    return this.ids[this.at];
  }

  /** Reads the ids from key `gte` on (one chunk) and moves the cursor to the first. */
  async load(gte: string): Promise<void> {
    this.ids = [];
    this.at = 0;
    for await (const [key] of this.kv.range(gte, this.end, FIND_INTERSECT_CHUNK_KEYS)) this.ids.push(key.slice(this.prefix.length));
    this.ended = this.ids.length < FIND_INTERSECT_CHUNK_KEYS;
  }

  /** Moves to the next id. */
  async next(): Promise<void> {
    const current = this.ids[this.at];
    this.at++;
    if (this.at >= this.ids.length && !this.ended && current !== undefined) await this.load(this.prefix + current + KEY_SEPARATOR);
  }

  /** Moves to the first id at or after `id` (UTF-8 byte order, the order of the keys). */
  async seek(id: string): Promise<void> {
    const last = this.ids[this.ids.length - 1];
    if (last !== undefined && compareUtf8(last, id) >= 0) {
      while (compareUtf8(this.ids[this.at] as string, id) < 0) this.at++;
      return;
    }
    if (this.ended) {
      this.at = this.ids.length;
      return;
    }
    await this.load(this.prefix + id);
  }
}

/** The first key of a scan of `prefix` that resumes strictly after id `after`. */
function resumeKey(prefix: string, after: string | undefined): string {
  return after === undefined ? prefix : prefix + after + KEY_SEPARATOR;
}

/** The answer to a retried write, rebuilt from its stored first result. */
function duplicateResult(cmd: Command, first: SessionResult): CommandResult | undefined {
  if ((cmd.type === 'register' || cmd.type === 'deregister') && first.t === 'conflict') {
    return { type: 'conflict', revision: first.revision, currentRevision: first.currentRevision, reason: first.reason };
  }
  if (cmd.type === 'register' && first.t === 'register') {
    const agent: Agent = {
      ...agentSpecFields(cmd.agent),
      createRevision: first.createRevision,
      modRevision: first.revision,
      ttlSeconds: cmd.ttlSeconds ?? 0,
      health: first.health,
    };
    return { type: 'register', agent, revision: first.revision, duplicate: true };
  }
  if (cmd.type === 'deregister' && first.t === 'deregister') {
    return { type: 'deregister', deleted: first.deleted, revision: first.revision, duplicate: true };
  }
  // The client reused a sequence number for a different kind of write: nothing is applied and
  // there is no result to give (the server answers FAILED_PRECONDITION).
  return undefined;
}

/** Decodes the membership record; throws {@link CorruptionError}. */
function decodeMembers(v: Uint8Array): Member[] {
  const raw = registryPackr.unpack(v) as unknown;
  if (!Array.isArray(raw)) throw new CorruptionError(`${MEMBERS_KEY} does not decode`);
  return raw.map((m: unknown) => {
    if (!Array.isArray(m) || typeof m[0] !== 'string' || typeof m[1] !== 'string' || typeof m[2] !== 'boolean') {
      throw new CorruptionError(`${MEMBERS_KEY} holds a malformed member`);
    }
    return { id: m[0], address: m[1], voter: m[2] };
  });
}

/** Decodes a stored session result; throws {@link CorruptionError} naming the key. */
function decodeSessionResult(value: Uint8Array, key: string): SessionResult {
  const r = registryPackr.unpack(value) as Partial<Record<string, unknown>>;
  if (r?.t === 'register' && typeof r.revision === 'number' && typeof r.createRevision === 'number') {
    // Results stored before health existed carry none.
    const health = typeof r.health === 'string' && (HEALTH_VALUES as readonly string[]).includes(r.health) ? (r.health as Health) : 'unspecified';
    return { t: 'register', revision: r.revision, createRevision: r.createRevision, health };
  }
  if (r?.t === 'conflict' && typeof r.revision === 'number' && typeof r.currentRevision === 'number' && typeof r.reason === 'string') {
    return { t: 'conflict', revision: r.revision, currentRevision: r.currentRevision, reason: r.reason };
  }
  if (r?.t === 'deregister' && typeof r.revision === 'number' && typeof r.deleted === 'boolean') {
    return { t: 'deregister', revision: r.revision, deleted: r.deleted };
  }
  throw new CorruptionError(`session result ${JSON.stringify(key)} does not decode`);
}

/** Whether `agent` satisfies every filter (labels match exactly, key and value). */
function matches(agent: Agent, filters: Filters): boolean {
  if (filters.capability !== undefined && !agent.capabilities.includes(filters.capability)) return false;
  if (filters.kind !== undefined && agent.kind !== filters.kind) return false;
  if (filters.health !== undefined && agent.health !== filters.health) return false;
  if (filters.namePrefix !== undefined && !agent.name.startsWith(filters.namePrefix)) return false;
  for (const [key, value] of filters.labels) {
    if (!Object.hasOwn(agent.labels, key) || agent.labels[key] !== value) return false;
  }
  return true;
}

function parseFilters(query: FindQuery): Filters {
  if (typeof query !== 'object' || query === null) throw new QueryError('query', 'must be an object');
  const { capability, kind, labels, health, namePrefix } = query;
  if (capability !== undefined && typeof capability !== 'string') throw new QueryError('capability', 'must be a string');
  if (kind !== undefined && typeof kind !== 'string') throw new QueryError('kind', 'must be a string');
  if (namePrefix !== undefined && typeof namePrefix !== 'string') throw new QueryError('name_prefix', 'must be a string');
  if (health !== undefined && !(HEALTH_VALUES as readonly unknown[]).includes(health)) {
    throw new QueryError('health', `must be one of ${HEALTH_VALUES.join(', ')}`);
  }
  const labelFilters: [string, string][] = [];
  if (labels !== undefined) {
    if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
      throw new QueryError('labels', 'must be a map of strings');
    }
    for (const [key, value] of Object.entries(labels)) {
      if (typeof value !== 'string') throw new QueryError('labels', `value of ${JSON.stringify(key)} must be a string`);
      labelFilters.push([key, value]);
    }
  }
  return {
    capability: capability === undefined || capability === '' ? undefined : capability,
    kind: kind === undefined || kind === '' ? undefined : kind,
    labels: labelFilters,
    // `unspecified` is the proto default: no health filter, like an empty string.
    health: health === undefined || health === 'unspecified' ? undefined : health,
    namePrefix: namePrefix === undefined || namePrefix === '' ? undefined : namePrefix,
  };
}

function parsePageSize(pageSize: number | undefined): number {
  if (pageSize === undefined || pageSize === 0) return DEFAULT_PAGE_SIZE;
  if (typeof pageSize !== 'number' || !Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE) {
    throw new QueryError('page_size', `must be an integer in [0, ${MAX_PAGE_SIZE}], got ${String(pageSize)}`);
  }
  return pageSize;
}

/** The page token of a page ending at `id`: base64url of its UTF-8 bytes. */
function encodePageToken(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

/** The id a page token resumes after, or `undefined` for the first page. */
function parsePageToken(token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]+$/.test(token)) {
    throw new QueryError('page_token', 'malformed page token');
  }
  const id = Buffer.from(token, 'base64url').toString('utf8');
  if (id.length === 0 || encodePageToken(id) !== token) throw new QueryError('page_token', 'malformed page token');
  return id;
}
