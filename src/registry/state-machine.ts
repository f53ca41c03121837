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
 *
 * The apply of one entry is a list of steps, each in a file of its own: decode the command;
 * answer a retried client write from its session (`sessions.ts`); apply the command to the
 * records, with every index in {@link RECORD_INDEXES} (`records.ts`); stage its watch events
 * (`event-history.ts`) and the session result; for a `config` entry, the membership
 * (`members.ts`). Reads: `queries.ts`.
 */
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { assertNever, type Entry } from '../raft/types.js';
import { CorruptionError, type NodeStore, type WriteBatch } from '../storage/types.js';
import { agentSpecFields, CommandDecodeError, decodeCommand, decodeMemberChange, HEALTH_VALUES, registryPackr } from './commands.js';
import { AGENT_PREFIX, APPLIED_INDEX_KEY, agentKey, eventKey, MEMBERS_KEY, prefixEnd, sessionKey } from './keys.js';
import { AgentTally, MAX_COUNTED_AGENT_KINDS, type AgentCount } from './agent-counts.js';
import { EVENT_HISTORY_REVISIONS, encodeEvents, readEvents } from './event-history.js';
import type { LeaseRecord } from './lease-types.js';
import { decodeMembers, encodeMembers, nextMembers } from './members.js';
import { applyAuthChange, AUTH_KEY, decodeAuthState, EMPTY_AUTH_STATE, encodeAuthState, type AuthState } from './auth-state.js';
import { capabilityCounts, listCapabilities } from './capabilities.js';
import { COUNTER_CACHE_ENTRIES, CounterCache, CounterDeltaMap, flushCounters } from './counters.js';
import { findAgents, QueryError } from './queries.js';
import { DecodedRecords, RecordCache } from './record-cache.js';
import { textIndex } from './text-index.js';
import { searchAgents } from './text-search.js';
import { agentOf, decodeAgentRecord, withOptionalFields, readLeases, secondaryIndexes, stageRecord, type RecordDecoder, type RecordIndex } from './records.js';
import { type CommandOutcome, decodeSessionResult, duplicateResult, type SessionResult, sessionOf, sessionResultOf, stageSessionResult } from './sessions.js';
import type { Agent, CapabilityCount, Command, CommandResult, FindPage, FindQuery, Health, Member, MemberChange, SearchPage, SearchQuery, WatchEvent } from './types.js';
import { pageVersions, readVersions, resolveAgentRef, versionsIndex, type VersionPageItem, type VersionPageQuery } from './versions.js';

// The concepts this file ties together live in files of their own; their public names are
// re-exported here for the callers that know the state machine as one module.
export { DEFAULT_PAGE_SIZE, FIND_INTERSECT_CHUNK_KEYS, MAX_PAGE_SIZE, QueryError } from './queries.js';
export { EVENT_HISTORY_REVISIONS } from './event-history.js';
export { decodeAgentRecord, encodeAgentRecord } from './records.js';
export { SESSION_WINDOW_SEQUENCES } from './sessions.js';

/**
 * The indexes kept beside the records, in the batch of every record write and delete, in
 * order (see `records.ts`). Every node must keep the same list: the indexes travel in snapshots.
 */
export const RECORD_INDEXES: readonly RecordIndex[] = [secondaryIndexes, versionsIndex, textIndex, capabilityCounts];

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
  /** Counter values kept in memory; {@link COUNTER_CACHE_ENTRIES} by default (tests use fewer, to evict). */
  readonly counterCacheEntries?: number;
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
  /** Counter values staged in this batch, by key (see `counters.ts`). */
  readonly counters: Map<string, number>;
  /** The auth state after this batch, when an auth change was staged in it. */
  auth?: AuthState;
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
  /** Durable records by id, for {@link get} (see `record-cache.ts`). */
  private readonly recordCache = new RecordCache();
  /** Decoded records of scans (Find, Search), reused while their stored bytes are unchanged. */
  private readonly decodedRecords = new DecodedRecords(decodeAgentRecord);
  /** The record decoder of Find and Search: {@link decodedRecords}. */
  private readonly decodeScanned: RecordDecoder = (value, key) => this.decodedRecords.decode(value, key);
  /**
   * Bumped by every commit of a batch and every open: a record read from the store before a bump
   * may be stale after it, and is not cached.
   */
  private storeEpoch = 0;
  /** The membership as staged by the newest applied config entry (undefined: read the store). */
  private stagedMembers: Member[] | undefined;
  /** The auth state of the durable applied index (loaded by {@link open}). */
  private committedAuth: AuthState = EMPTY_AUTH_STATE;
  /** The auth state as staged by the newest applied auth change (undefined: {@link committedAuth}). */
  private stagedAuth: AuthState | undefined;
  /** Hears of every change of the durable auth state (after the batch holding it is written). */
  onAuthChanged: ((state: AuthState) => void) | undefined;
  /** Commands of the `applyEntries` call in progress, by log index, as the read-ahead decoded them. */
  private decoded: Map<number, Command> | undefined;
  /** Session results read ahead for the `applyEntries` call in progress. */
  private prefetchedSessions: Map<string, SessionResult | undefined> | undefined;
  /** Counter deltas of the `applyEntries` call in progress, staged into its batch at its end. */
  private readonly counterDeltas = new CounterDeltaMap();
  /** Durable values of recently touched counters, so that most applies read none (emptied by {@link open}). */
  private readonly counterCache: CounterCache;
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
    this.counterCache = new CounterCache(options.counterCacheEntries);
  }

  /**
   * Loads the applied index from the store (0 on a fresh store) and drops anything staged.
   * Rejects with {@link CorruptionError} when the stored value is not a non-negative integer.
   */
  async open(): Promise<void> {
    const value = await this.store.kv.get(APPLIED_INDEX_KEY);
    const applied = value === undefined ? 0 : decodeAppliedIndex(value);
    this.durableApplied = applied;
    this.stagedApplied = applied;
    this.pending = [];
    this.stagedMembers = undefined;
    this.counterCache.clear();
    this.recordCache.clear();
    this.decodedRecords.clear();
    this.storeEpoch++;
    const auth = await this.store.kv.get(AUTH_KEY);
    this.committedAuth = auth === undefined ? EMPTY_AUTH_STATE : decodeAuthState(auth);
    this.stagedAuth = undefined;
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
   *   `health` from the command, else the existing record, else `unspecified`; `createdAtMs` /
   *   `updatedAtMs` from the command's leader time `timeMs` (see `writeTimes`). Deregister of a
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
      this.decoded = undefined;
      if (pending !== undefined) {
        // One read of every counter the call touched; the new values go into the same batch.
        if (!this.counterDeltas.empty) await flushCounters(this.store.kv, this.counterDeltas, (key) => this.stagedCounter(key), pending.batch, pending.counters, this.counterCache);
        batch.put(APPLIED_INDEX_KEY, registryPackr.pack(this.stagedApplied));
      }
      this.counterDeltas.deltas.clear();
    }
    return results;
  }

  /**
   * Reads, in one `getMany`, the stored records of every id the commands among `entries` name
   * and no staged change covers; keeps the decoded commands for `applyOne`. Entries that do not
   * decode are left to `applyOne` to report.
   */
  private async prefetch(entries: readonly Entry[]): Promise<Map<string, Agent | undefined>> {
    const ids = new Set<string>();
    const sessions: string[] = [];
    this.decoded = new Map();
    for (const entry of entries) {
      if (entry.type === 'config' || entry.data.length === 0 || entry.index <= this.stagedApplied) continue;
      let cmd: Command;
      try {
        cmd = decodeCommand(entry.data);
      } catch {
        continue;
      }
      this.decoded.set(entry.index, cmd);
      for (const id of idsOf(cmd)) if (!this.pending.some((p) => p.changes.has(id))) ids.add(id);
      // As for records: what an unwritten batch staged is not read ahead, so a batch written
      // while this read is out cannot leave a stale answer behind.
      const session = sessionOf(cmd);
      const key = session && sessionKey(session.clientId, session.sequence);
      if (key !== undefined && !this.pending.some((p) => p.sessions.has(key))) sessions.push(key);
    }
    const keys = [...ids].map(agentKey);
    const values = await this.store.kv.getMany([...keys, ...sessions]);
    const out = new Map<string, Agent | undefined>();
    [...ids].forEach((id, i) => {
      const v = values[i];
      out.set(id, v === undefined ? undefined : decodeAgentRecord(v, keys[i] as string));
    });
    // Absent sessions are kept too (as undefined): a new session's write then reads nothing more.
    this.prefetchedSessions = new Map();
    sessions.forEach((key, i) => {
      const v = values[keys.length + i];
      this.prefetchedSessions?.set(key, v === undefined ? undefined : decodeSessionResult(v, key));
    });
    return out;
  }

  /** A counter's value as staged in a batch not yet written (newest first), or `undefined`. */
  private stagedCounter(key: string): number | undefined {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const v = (this.pending[i] as PendingApply).counters.get(key);
      if (v !== undefined) return v;
    }
    return undefined;
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
    let authChanged = false;
    this.storeEpoch++;
    for (const p of this.pending.splice(0, at + 1)) {
      for (const id of p.changes.keys()) this.recordCache.delete(id);
      for (const e of p.events) this.committedEvents.push(e);
      for (const [key, value] of p.counters) this.counterCache.set(key, value);
      if (!p.tally.empty) (this.agentTally ?? this.tallySinceCount)?.addAll(p.tally);
      if (p.auth !== undefined) {
        this.committedAuth = p.auth;
        authChanged = true;
      }
    }
    if (authChanged) this.onAuthChanged?.(this.committedAuth);
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
    const events = await readEvents(this.store.kv, Math.max(1, fromRevision), lastRevision, limit);
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
    return readLeases(this.store.kv);
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
    this.stagedAuth = undefined;
  }

  /**
   * The auth state (signing keys, revoked token ids, trusted card keys) of the durable applied
   * index: what this node verifies tokens and card signatures against. O(1).
   */
  authState(): AuthState {
    return this.committedAuth;
  }

  /**
   * The record of agent `id` as written to the store, or `undefined`. Rejects with
   * {@link CorruptionError} on a damaged record.
   */
  async get(id: string): Promise<Agent | undefined> {
    if (typeof id !== 'string') throw new QueryError('id', 'must be a string');
    const cached = this.recordCache.get(id);
    if (cached !== undefined) return cached;
    const epoch = this.storeEpoch;
    const key = agentKey(id);
    const value = await this.store.kv.get(key);
    if (value === undefined) return undefined;
    const agent = decodeAgentRecord(value, key);
    if (epoch === this.storeEpoch) this.recordCache.set(id, agent, value.byteLength);
    return agent;
  }

  /**
   * The agent `ref` names, as written to the store: the agent with id `ref` if there is one,
   * else the version `ref` names as `<name>@<version>`, `<name>@latest` or `<name>` (its latest;
   * see {@link resolveAgentRef}), else `undefined`. Rejects with {@link CorruptionError}.
   */
  async getByRef(ref: string): Promise<Agent | undefined> {
    const direct = await this.get(ref);
    if (direct !== undefined) return direct;
    const id = await resolveAgentRef(this.store.kv, ref);
    return id === undefined ? undefined : this.get(id);
  }

  /**
   * Every agent named `name`, latest first (the order of `semver.ts`), from the versions index
   * and one `getMany` of the records; empty for an unknown name. Rejects with
   * {@link CorruptionError}.
   */
  async versions(name: string): Promise<Agent[]> {
    const entries = await readVersions(this.store.kv, name);
    const keys = entries.map((e) => agentKey(e.id));
    const values = await this.store.kv.getMany(keys);
    const out: Agent[] = [];
    values.forEach((v, i) => {
      if (v === undefined) return;
      const agent = decodeAgentRecord(v, keys[i] as string);
      if (agent.name === name) out.push(agent);
    });
    return out;
  }

  /**
   * One page of versions of every name in name order, each with whether it is its name's
   * latest (see {@link pageVersions}). Throws `VersionCursorError` on a bad cursor.
   */
  async versionPage(query: VersionPageQuery): Promise<{ items: VersionPageItem[]; nextCursor: string }> {
    return pageVersions(this.store.kv, query, decodeAgentRecord, agentKey);
  }

  /**
   * One page of the agents matching every filter of `query`, ordered by id, as written to the
   * store (see {@link findAgents} for the index used and the cost). Throws {@link QueryError}
   * naming the field at fault.
   */
  async find(query: FindQuery): Promise<FindPage> {
    return findAgents(this.store.kv, query, this.decodeScanned);
  }

  /**
   * One page of a keyword search, best first, as written to the store (see {@link searchAgents}
   * for the ranking, the plans and the cost). Throws {@link QueryError} naming the field at fault
   * (`query`, `page_token`, or a filter as for {@link find}).
   */
  async search(query: SearchQuery): Promise<SearchPage> {
    return searchAgents(this.store.kv, query, this.decodeScanned);
  }

  /**
   * The capabilities starting with `prefix` (all for `''`) and how many agents list each, ordered
   * by capability, as written to the store; one range scan of the counts (see `capabilities.ts`).
   */
  async capabilities(prefix = ''): Promise<{ capabilities: CapabilityCount[]; truncated: boolean }> {
    return listCapabilities(this.store.kv, prefix);
  }

  /** The pending changes of `batch`, starting them when it is not the newest batch staged into. */
  private pendingFor(batch: WriteBatch): PendingApply {
    const newest = this.pending[this.pending.length - 1];
    if (newest !== undefined && newest.batch === batch) return newest;
    if (this.pending.some((p) => p.batch === batch)) {
      throw new Error('applyEntries into an older batch after a newer one: batches are written in order');
    }
    const created: PendingApply = { batch, appliedIndex: this.stagedApplied, changes: new Map(), sessions: new Map(), events: [], tally: new AgentTally(), counters: new Map() };
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
      cmd = this.decoded?.get(entry.index) ?? decodeCommand(entry.data);
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
    const forgotten = stageSessionResult(pending.batch, session, kept);
    if (forgotten !== undefined) pending.sessions.delete(forgotten);
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
    const next = nextMembers(await this.members(), change);
    this.stagedMembers = next;
    pending.batch.put(MEMBERS_KEY, encodeMembers(next));
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
        const agent = registeredAgent(cmd, existing, revision);
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
        const agent: Agent = { ...existing, health: cmd.health, modRevision: revision, ...(cmd.principal !== undefined ? { modifiedBy: cmd.principal } : {}) };
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
      case 'auth': {
        const { state, refused } = applyAuthChange(this.stagedAuth ?? this.committedAuth, cmd.change, Math.floor((cmd.timeMs ?? 0) / 1000));
        if (refused !== undefined) return { type: 'auth', applied: false, reason: refused, revision };
        this.stagedAuth = state;
        pending.auth = state;
        pending.batch.put(AUTH_KEY, encodeAuthState(state));
        return { type: 'auth', applied: true, revision };
      }
      default:
        return assertNever(cmd);
    }
  }

  /**
   * Stages `agent` as the record of its id, replacing `existing`, with every index of
   * {@link RECORD_INDEXES} (see `records.ts`), and keeps the staged change and the counts.
   */
  private writeRecord(pending: PendingApply, existing: Agent | undefined, agent: Agent): void {
    stageRecord(pending.batch, RECORD_INDEXES, existing, agent, this.counterDeltas);
    pending.changes.set(agent.id, agent);
    if (this.countAgentsWanted) {
      if (existing !== undefined) pending.tally.record(existing, -1);
      pending.tally.record(agent, 1);
    }
  }

  /** Stages the deletion of `existing`: its record and every index key. */
  private deleteRecord(pending: PendingApply, existing: Agent): void {
    stageRecord(pending.batch, RECORD_INDEXES, existing, undefined, this.counterDeltas);
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
    case 'auth':
      return [];
    default:
      return assertNever(cmd);
  }
}

/**
 * The times of a record a register writes at leader time `timeMs` (absent in old entries):
 * `createdAtMs` is kept from the record it replaces (or, if that had none, taken from this
 * write); `updatedAtMs` is this write's time, never below `createdAtMs` (leaders' clocks may
 * disagree), else the replaced record's.
 */
function writeTimes(existing: Agent | undefined, timeMs: number | undefined): Pick<Agent, 'createdAtMs' | 'updatedAtMs'> {
  const createdAtMs = existing?.createdAtMs ?? timeMs;
  const updatedAtMs = timeMs === undefined ? existing?.updatedAtMs : Math.max(timeMs, createdAtMs ?? 0);
  return { createdAtMs, updatedAtMs };
}

/**
 * The record a register writes at `revision` over `existing`: the command's spec, the revisions,
 * lease and health, the times ({@link writeTimes}), who wrote it and what its card's signature
 * said; optional fields only when present ({@link withOptionalFields}).
 */
function registeredAgent(cmd: Extract<Command, { type: 'register' }>, existing: Agent | undefined, revision: number): Agent {
  const agent = agentOf(agentSpecFields(cmd.agent), existing?.createRevision ?? revision, revision, cmd.ttlSeconds ?? 0, cmd.health ?? existing?.health ?? 'unspecified');
  const { createdAtMs, updatedAtMs } = writeTimes(existing, cmd.timeMs);
  return withOptionalFields(agent, { createdAtMs, updatedAtMs, modifiedBy: cmd.principal, verifiedKeyId: cmd.cardCheck?.verifiedKeyId, signatureError: cmd.cardCheck?.signatureError });
}

/** The reason of a failed `expectedRevision` condition. */
function revisionMismatch(id: string, current: number, expected: number): string {
  return current === 0
    ? `agent ${id} does not exist (expected mod_revision ${expected})`
    : `agent ${id} has mod_revision ${current}, expected ${expected}`;
}

/** The log index stored under `APPLIED_INDEX_KEY`. Throws {@link CorruptionError} when `value` is not one. */
function decodeAppliedIndex(value: Uint8Array): number {
  let decoded: unknown;
  try {
    decoded = registryPackr.unpack(value);
  } catch {
    decoded = undefined;
  }
  if (typeof decoded !== 'number' || !Number.isSafeInteger(decoded) || decoded < 0) {
    throw new CorruptionError(`state machine key ${APPLIED_INDEX_KEY} does not hold a log index`);
  }
  return decoded;
}

/**
 * Checks the pairs of a snapshot payload for what {@link RegistryStateMachine.open} reads from
 * them once they are installed: the applied index, which must be the snapshot's `index`, and the
 * auth state, which must decode. A node runs it over a payload as the payload arrives, so one that
 * would fail its install is refused before the core believes it (peer input never stops a node:
 * after the core has stepped a snapshot, a failed install can only stop the node).
 */
export class SnapshotStateCheck {
  private appliedSeen = false;

  /** `index`: the log index the snapshot's metadata names. */
  constructor(private readonly index: number) {}

  /** Checks one pair. Throws {@link CorruptionError} on an empty key, a wrong applied index or an auth state that does not decode. */
  pair(key: string, value: Uint8Array): void {
    if (key.length === 0) throw new CorruptionError('the snapshot payload holds a pair with an empty key');
    if (key === APPLIED_INDEX_KEY) {
      const applied = decodeAppliedIndex(value);
      if (applied !== this.index) throw new CorruptionError(`the snapshot payload is applied through ${applied}, not the ${this.index} its metadata names`);
      this.appliedSeen = true;
    } else if (key === AUTH_KEY) {
      decodeAuthState(value);
    }
  }

  /** Checks the payload as a whole. Throws {@link CorruptionError} when it holds no applied index. */
  end(): void {
    if (!this.appliedSeen) throw new CorruptionError(`the snapshot payload holds no ${APPLIED_INDEX_KEY}`);
  }
}
