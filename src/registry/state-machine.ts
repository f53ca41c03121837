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
 * record; kept when it is replaced) and `modRevision` (index of the last command that wrote it).
 * The key layout is in `keys.ts`.
 */
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { assertNever, type Entry } from '../raft/types.js';
import { CorruptionError, type NodeStore, type WriteBatch } from '../storage/types.js';
import { agentSpecFields, CommandDecodeError, decodeCommand, decodeMemberChange, parseAgentSpec, registryPackr } from './commands.js';
import {
  AGENT_PREFIX,
  APPLIED_INDEX_KEY,
  agentKey,
  capIndexPrefix,
  indexKeysOf,
  KEY_SEPARATOR,
  kindIndexPrefix,
  labelIndexPrefix,
  prefixEnd,
  sessionKey,
  MEMBERS_KEY,
} from './keys.js';
import type { Agent, AgentSpec, Command, CommandResult, FindPage, FindQuery, Member, MemberChange } from './types.js';

/**
 * How many of a client's most recent writes keep their result for exactly-once retries
 * (thesis §6.3). Writing sequence `n` forgets the result of `n - SESSION_WINDOW_SEQUENCES`, so
 * a client must never have more writes than this outstanding at once.
 */
export const SESSION_WINDOW_SEQUENCES = 4096;

/** Results per page of a find when the query gives 0 or nothing. */
export const DEFAULT_PAGE_SIZE = 100;
/** Largest page size a find accepts; more is refused with a {@link QueryError}. */
export const MAX_PAGE_SIZE = 1000;

/** The value of every secondary index key: the key is the information. */
const EMPTY_VALUE = new Uint8Array(0);

/**
 * A find was given a bad argument (gRPC `INVALID_ARGUMENT`); `field` names it in the API's
 * snake_case: `page_size`, `page_token`, `capability`, `kind` or `labels`.
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

/** Encodes a stored record (an {@link Agent}) with msgpackr, fields in a fixed order. */
export function encodeAgentRecord(agent: Agent): Uint8Array {
  return registryPackr.pack({
    ...agentSpecFields(agent),
    createRevision: agent.createRevision,
    modRevision: agent.modRevision,
  });
}

/**
 * Decodes a record written by {@link encodeAgentRecord}, stored at `key`. Throws
 * {@link CorruptionError} naming the key when it does not decode or has the wrong shape.
 */
export function decodeAgentRecord(value: Uint8Array, key: string): Agent {
  let decoded: unknown;
  let spec: AgentSpec;
  try {
    decoded = registryPackr.unpack(value);
    spec = parseAgentSpec(decoded, 'record');
  } catch (err) {
    throw new CorruptionError(`record ${JSON.stringify(key)} does not decode: ${(err as Error).message}`);
  }
  const { createRevision, modRevision } = decoded as { createRevision?: unknown; modRevision?: unknown };
  if (!isPositiveInteger(createRevision) || !isPositiveInteger(modRevision) || modRevision < createRevision) {
    throw new CorruptionError(`record ${JSON.stringify(key)} has bad revisions`);
  }
  return { ...spec, createRevision, modRevision };
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
}

/** What is kept of a write's first result to answer its retries. */
type SessionResult =
  | { readonly t: 'register'; readonly revision: number; readonly createRevision: number }
  | { readonly t: 'deregister'; readonly revision: number; readonly deleted: boolean };

/** The filters of a find, checked and normalized (empty strings dropped). */
interface Filters {
  readonly capability: string | undefined;
  readonly kind: string | undefined;
  readonly labels: readonly (readonly [string, string])[];
}

/**
 * The registry state machine over a {@link NodeStore}'s key space.
 *
 * Life cycle: `open()` once; then for every `Ready`: `applyEntries(committed, batch)`, the caller
 * writes the batch, then calls `commitApplied(batch)`. Reads (`get`, `find`) see what written
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

  /** Wraps `store`; logs through a child of `logger` with `component: 'state-machine'`. */
  constructor(private readonly store: NodeStore, logger: Logger = silentLogger) {
    this.log = logger.child({ component: 'state-machine' });
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
   *   `modRevision` is the entry's index. Deregister of a missing id yields `deleted: false`.
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
      const id = cmd.type === 'register' ? cmd.agent.id : cmd.id;
      if (!this.pending.some((p) => p.changes.has(id))) ids.add(id);
      if (cmd.session) sessions.push(sessionKey(cmd.session.clientId, cmd.session.sequence));
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
   * before it, become the durable state. Call it after `batch.write()` resolves, never before.
   * A batch the state machine staged nothing into is ignored.
   */
  commitApplied(batch?: WriteBatch): void {
    if (batch === undefined) {
      this.durableApplied = this.stagedApplied;
      this.pending = [];
      return;
    }
    const at = this.pending.findIndex((p) => p.batch === batch);
    if (at < 0) return;
    this.durableApplied = (this.pending[at] as PendingApply).appliedIndex;
    this.pending.splice(0, at + 1);
  }

  /**
   * Forgets everything staged and not committed, e.g. after a batch's write failed: the staged
   * index falls back to {@link appliedIndex}. The caller drops the batches.
   */
  discardStaged(): void {
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
   *
   * Scans one index: the capability's if given, else the kind's, else the first label's, else
   * all records; the other filters are checked on each record. The cost grows with the scanned
   * range, not with the number of records. Stops after `pageSize` matches plus one to know
   * whether another page follows; `nextPageToken` (base64url of the last id returned) resumes
   * strictly after that id. Each record is read when scanned, so a page reflects every write
   * before it started and possibly some after.
   *
   * Throws {@link QueryError} with `field` `page_size` (not an integer in
   * `[0, MAX_PAGE_SIZE]`), `page_token` (not a token this method returned), `capability`,
   * `kind` or `labels` (not strings).
   */
  async find(query: FindQuery): Promise<FindPage> {
    const filters = parseFilters(query);
    const pageSize = parsePageSize(query.pageSize);
    const after = parsePageToken(query.pageToken);

    let prefix: string;
    let scanningRecords = false;
    const [firstLabel] = filters.labels;
    if (filters.capability !== undefined) prefix = capIndexPrefix(filters.capability);
    else if (filters.kind !== undefined) prefix = kindIndexPrefix(filters.kind);
    else if (firstLabel !== undefined) prefix = labelIndexPrefix(firstLabel[0], firstLabel[1]);
    else {
      prefix = AGENT_PREFIX;
      scanningRecords = true;
    }
    const gte = after === undefined ? prefix : prefix + after + KEY_SEPARATOR;
    const lt = prefixEnd(prefix);

    const found: Agent[] = [];
    // Index hits are resolved to records a chunk at a time, one getMany per chunk.
    let chunk: string[] = [];
    const flush = async (): Promise<void> => {
      const keys = chunk.map(agentKey);
      const values = await this.store.kv.getMany(keys);
      chunk.forEach((id, i) => {
        const v = values[i];
        if (v === undefined || found.length > pageSize) return;
        const agent = decodeAgentRecord(v, keys[i] as string);
        if (agent.id === id && matches(agent, filters)) found.push(agent);
      });
      chunk = [];
    };
    for await (const [key, value] of this.store.kv.range(gte, lt)) {
      const id = key.slice(prefix.length);
      if (scanningRecords) {
        const agent = decodeAgentRecord(value, key);
        if (agent.id === id && matches(agent, filters)) found.push(agent);
        if (found.length > pageSize) break;
        continue;
      }
      // An index key may outlive its record between two reads, and a separator inside a value
      // can make a key look like another prefix's: the record itself decides.
      chunk.push(id);
      if (chunk.length >= pageSize + 1 - found.length) {
        await flush();
        if (found.length > pageSize) break;
      }
    }
    if (chunk.length > 0) await flush();
    if (found.length <= pageSize) return { agents: found, nextPageToken: '' };
    const agents = found.slice(0, pageSize);
    return { agents, nextPageToken: encodePageToken((agents[agents.length - 1] as Agent).id) };
  }

  /** The pending changes of `batch`, starting them when it is not the newest batch staged into. */
  private pendingFor(batch: WriteBatch): PendingApply {
    const newest = this.pending[this.pending.length - 1];
    if (newest !== undefined && newest.batch === batch) return newest;
    if (this.pending.some((p) => p.batch === batch)) {
      throw new Error('applyEntries into an older batch after a newer one: batches are written in order');
    }
    const created: PendingApply = { batch, appliedIndex: this.stagedApplied, changes: new Map(), sessions: new Map() };
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
    const session = cmd.session;
    if (session === undefined) return this.applyCommand(cmd, entry.index, pending);
    // Thesis §6.3: a retried write is answered with its first result and not applied again.
    const key = sessionKey(session.clientId, session.sequence);
    const first = await this.lookupSession(key);
    if (first !== undefined) return duplicateResult(cmd, first);
    const result = await this.applyCommand(cmd, entry.index, pending);
    const kept: SessionResult =
      result.type === 'register'
        ? { t: 'register', revision: result.revision, createRevision: result.agent.createRevision }
        : { t: 'deregister', revision: result.revision, deleted: result.deleted };
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

  /** Applies one decoded command at log index `revision` into `pending.batch`. */
  private async applyCommand(cmd: Command, revision: number, pending: PendingApply): Promise<Extract<CommandResult, { type: 'register' | 'deregister' }>> {
    const { batch, changes } = pending;
    switch (cmd.type) {
      case 'register': {
        const existing = await this.lookup(cmd.agent.id);
        const agent: Agent = {
          ...agentSpecFields(cmd.agent),
          createRevision: existing?.createRevision ?? revision,
          modRevision: revision,
        };
        const oldKeys = new Set(existing === undefined ? [] : indexKeysOf(existing));
        const newKeys = new Set(indexKeysOf(agent));
        for (const key of oldKeys) if (!newKeys.has(key)) batch.del(key);
        for (const key of newKeys) if (!oldKeys.has(key)) batch.put(key, EMPTY_VALUE);
        batch.put(agentKey(agent.id), encodeAgentRecord(agent));
        changes.set(agent.id, agent);
        return { type: 'register', agent, revision };
      }
      case 'deregister': {
        const existing = await this.lookup(cmd.id);
        if (existing === undefined) return { type: 'deregister', deleted: false, revision };
        for (const key of indexKeysOf(existing)) batch.del(key);
        batch.del(agentKey(cmd.id));
        changes.set(cmd.id, null);
        return { type: 'deregister', deleted: true, revision };
      }
      default:
        return assertNever(cmd);
    }
  }
}

/** The answer to a retried write, rebuilt from its stored first result. */
function duplicateResult(cmd: Command, first: SessionResult): CommandResult | undefined {
  if (cmd.type === 'register' && first.t === 'register') {
    const agent: Agent = { ...agentSpecFields(cmd.agent), createRevision: first.createRevision, modRevision: first.revision };
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
    return { t: 'register', revision: r.revision, createRevision: r.createRevision };
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
  for (const [key, value] of filters.labels) {
    if (!Object.hasOwn(agent.labels, key) || agent.labels[key] !== value) return false;
  }
  return true;
}

function parseFilters(query: FindQuery): Filters {
  if (typeof query !== 'object' || query === null) throw new QueryError('query', 'must be an object');
  const { capability, kind, labels } = query;
  if (capability !== undefined && typeof capability !== 'string') throw new QueryError('capability', 'must be a string');
  if (kind !== undefined && typeof kind !== 'string') throw new QueryError('kind', 'must be a string');
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
