/**
 * The driver: the one place where the pure Raft core meets time, disk and network (etcd's
 * `raftNode` in `etcdserver/raft.go`). It
 *
 * - ticks the core every `tickMs` (an interval timer),
 * - steps inbound peer messages,
 * - batches proposals that arrive while a write is in flight into one `propose` (one log append,
 *   one AppendEntries round, one fsync),
 * - runs the Ready loop exactly as `Ready` documents it: one LevelDB batch with `sync: true`
 *   carrying hard state, new entries and the state machine changes of the committed entries
 *   (and the applied index); then sends the messages; then resolves waiting clients; then
 *   `advance()`,
 * - serves ReadIndex: reads queued during one loop turn share one ReadIndex round.
 *
 * Failure kinds: {@link NotLeaderError} and {@link UnavailableError} are expected and retryable;
 * a `RaftInvariantError` or `CorruptionError` is fatal: the node stops (`onFatal`).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import {
  MemoryStorage,
  NO_NODE,
  ProposalDroppedError,
  RawNode,
  nodeId,
  logIndex,
  seededRandom,
  type Entry,
  type LogIndex,
  type Message,
  type NodeId,
  type RaftStatus,
  type InstallSnapshot,
  type Ready,
  type Snapshot,
  type SnapshotMetadata,
  type Term,
  EMPTY_SNAPSHOT,
} from '../raft/index.js';
import type { NodeStore, SnapshotMeta, SnapshotStore } from '../storage/types.js';
import { decodeStatePairs, encodeStatePairs } from '../storage/snapshot-codec.js';
import type { RegistryStateMachine } from '../registry/state-machine.js';
import { encodeCommand, encodeMemberChange } from '../registry/commands.js';
import type { LeaseKeeper } from '../registry/lease-types.js';
import { LEASE_CHECK_INTERVAL_MS, MAX_EXPIRE_BATCH, MAX_LEASE_CHECK_GAP_MS } from '../registry/lease-manager.js';
import type { CommandResult, Member, MemberChange, WatchEvent } from '../registry/types.js';
import type { SnapshotTransport, Transport } from '../transport/types.js';
import { DEFAULT_SNAPSHOT_CHUNK_BYTES } from '../transport/grpc-transport.js';

/** Default length of one tick, in ms: heartbeat 1 tick = 100 ms, election 10-20 ticks = 1-2 s. */
export const DEFAULT_TICK_MS = 100;
/** Most proposals folded into one log append (and one synced write). */
export const MAX_PROPOSALS_PER_BATCH = 4096;
/** Most bytes of proposals folded into one log append. */
export const MAX_PROPOSAL_BATCH_BYTES = 8 * 1024 * 1024;
/** Most proposals waiting for the next append before new ones are refused (back-pressure). */
export const MAX_PENDING_PROPOSALS = 65_536;
/** Most reads waiting for their ReadIndex round before new ones are refused. */
export const MAX_PENDING_READS = 65_536;
/** Default: snapshot the state machine once this many entries were applied since the last one. */
export const DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES = 10_000;
/** Default: entries kept in the log behind a snapshot, so a briefly lagging follower catches up from the log. */
export const DEFAULT_SNAPSHOT_TAIL_ENTRIES = 5_000;
/** Snapshot files kept on disk (the newest and the one before, which a transfer may still read). */
export const SNAPSHOTS_RETAINED = 2;

/** This node is not the leader; `leaderId` says who is ('' when unknown). Retry there. */
export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
  constructor(readonly leaderId: NodeId) {
    super(leaderId ? `not the leader; the leader is ${leaderId}` : 'not the leader; no leader is known');
  }
}

/** The request could not be completed now (no quorum, leadership lost, overload): retry. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
}

/** Settings of the driver. */
export interface RaftNodeOptions {
  readonly id: NodeId;
  /**
   * The members a fresh store bootstraps the cluster with (each node of a new cluster passes the
   * same list); ignored once the store holds a log. Empty for a node that joins an existing
   * cluster: it waits to be added and learns the membership from the leader.
   */
  readonly bootstrap: readonly Member[];
  readonly store: NodeStore;
  readonly stateMachine: RegistryStateMachine;
  readonly transport: Transport & SnapshotTransport;
  /** Where state machine snapshots are written and read (§7). */
  readonly snapshots: SnapshotStore;
  readonly logger: Logger;
  /** Applied entries between snapshots (default {@link DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES}). */
  readonly snapshotThresholdEntries?: number;
  /** Entries kept behind a snapshot (default {@link DEFAULT_SNAPSHOT_TAIL_ENTRIES}). */
  readonly snapshotTailEntries?: number;
  /** Chunk size of snapshot files and transfers, in bytes (default {@link DEFAULT_SNAPSHOT_CHUNK_BYTES}). */
  readonly snapshotChunkBytes?: number;
  /** Lease bookkeeping used while this node leads. */
  readonly leases: LeaseKeeper;
  /** How often the leader looks for lapsed leases, in ms (default `LEASE_CHECK_INTERVAL_MS`). */
  readonly leaseCheckIntervalMs?: number;
  /** Receives the watch events of every batch once it is durable. */
  readonly onEvents?: (events: readonly WatchEvent[]) => void;
  /** Length of a tick in ms (default {@link DEFAULT_TICK_MS}). */
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Called once with the error that stopped the node. */
  readonly onFatal?: (err: Error) => void;
}

interface PendingProposal {
  readonly data: Uint8Array;
  readonly resolve: (r: CommandResult | undefined) => void;
  readonly reject: (e: Error) => void;
}

interface ProposedWaiter {
  readonly term: Term;
  readonly resolve: (r: CommandResult | undefined) => void;
  readonly reject: (e: Error) => void;
}

interface ReadWaiter {
  readonly resolve: (index: LogIndex) => void;
  readonly reject: (e: Error) => void;
}

/**
 * Whether `m` may be sent before the Ready that holds it is durable: a leader's replication
 * traffic in a term already on disk (thesis §10.2.1). Everything a follower or candidate sends
 * (votes, acknowledgements) promises durable state and must wait.
 */
export function sendableBeforePersist(m: Message, durableTerm: Term): boolean {
  if (m.term > durableTerm) return false;
  switch (m.type) {
    case 'AppendEntries':
    case 'Heartbeat':
    case 'TimeoutNow':
      return true;
    default:
      return false;
  }
}

/** Runs one Raft node: core, storage, state machine and transport. */
export class RaftNode extends EventEmitter {
  readonly id: NodeId;
  private readonly rawNode: RawNode;
  private readonly store: NodeStore;
  private readonly sm: RegistryStateMachine;
  private readonly transport: Transport & SnapshotTransport;
  private readonly snapshots: SnapshotStore;
  private readonly log: Logger;
  private readonly snapshotThreshold: number;
  private readonly snapshotTail: number;
  private readonly chunkBytes: number;
  /** Snapshot files this node holds, by index (the newest few). */
  private readonly snapshotFiles = new Map<number, SnapshotMeta>();
  private snapshotInProgress = false;
  /** A log compaction decided after a snapshot, written between two Readies. */
  private pendingCompaction: { index: LogIndex; term: Term } | undefined;
  /** Followers a snapshot is being streamed to. */
  private readonly snapshotSends = new Set<NodeId>();
  /** Lease deadlines, kept while leading. */
  readonly leases: LeaseKeeper;
  private readonly leaseCheckIntervalMs: number;
  private leaseTimer: NodeJS.Timeout | undefined;
  private readonly onEvents: (events: readonly WatchEvent[]) => void;
  /** When each voter last answered this leader in its term (ms, monotonic). */
  private readonly lastAck = new Map<NodeId, number>();
  private leaderSince = 0;
  /** An `expire` proposal is in flight: no second one until it is answered. */
  private expiring = false;
  /** While a new leader loads its leases: the events applied meanwhile, replayed afterwards. */
  private heldLeaseEvents: WatchEvent[] | undefined;
  private readonly tickMs: number;
  private readonly onFatal: (err: Error) => void;

  private ticker: NodeJS.Timeout | undefined;
  private running = false;
  private scheduled = false;
  private stopped = false;

  private proposalQueue: PendingProposal[] = [];
  private readonly proposed = new Map<number, ProposedWaiter>();
  private readQueue: ReadWaiter[] = [];
  private readonly readRounds = new Map<string, ReadWaiter[]>();
  private readonly applyWaiters: { index: number; resolve: () => void }[] = [];
  /** The highest term known to be on disk. */
  private durableTerm: Term;

  private constructor(opts: RaftNodeOptions, rawNode: RawNode, durableTerm: Term) {
    super();
    this.durableTerm = durableTerm;
    this.id = opts.id;
    this.rawNode = rawNode;
    this.store = opts.store;
    this.sm = opts.stateMachine;
    this.transport = opts.transport;
    this.snapshots = opts.snapshots;
    this.log = opts.logger;
    this.snapshotThreshold = opts.snapshotThresholdEntries ?? DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES;
    this.snapshotTail = opts.snapshotTailEntries ?? DEFAULT_SNAPSHOT_TAIL_ENTRIES;
    this.chunkBytes = opts.snapshotChunkBytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES;
    this.leases = opts.leases;
    this.leaseCheckIntervalMs = opts.leaseCheckIntervalMs ?? LEASE_CHECK_INTERVAL_MS;
    this.onEvents = opts.onEvents ?? (() => undefined);
    this.tickMs = opts.tickMs ?? DEFAULT_TICK_MS;
    this.onFatal = opts.onFatal ?? (() => undefined);
  }

  /**
   * Loads the persisted log and hard state, builds the core and starts ticking. Throws
   * `CorruptionError` when stored data fails its checksum.
   */
  static async start(opts: RaftNodeOptions): Promise<RaftNode> {
    const { store, stateMachine } = opts;
    await RaftNode.maybeBootstrap(opts);
    const hardState = await store.stable.hardState();
    // Recovery (§7): the latest snapshot, the compaction point, then the log tail after it.
    const latest = await opts.snapshots.latest();
    const compacted = await store.stable.compactedTo();
    const snapshot: Snapshot = latest
      ? { metadata: { index: latest.index, term: latest.term, confState: latest.confState }, data: new Uint8Array(0) }
      : EMPTY_SNAPSHOT;
    const storage = new MemoryStorage(snapshot, compacted);
    const first = store.log.firstIndex();
    const last = store.log.lastIndex();
    if (last >= first) storage.append(await store.log.entries(first, logIndex(last + 1)));
    const seed = randomBytes(4).readUInt32BE(0);
    // The configuration as of the applied index: the replicated membership record, else (a
    // bootstrapped store whose first entries are not applied yet) the bootstrap list.
    const members = await stateMachine.members();
    const known = members.length > 0 ? members : latest ? [] : opts.bootstrap;
    const rawNode = new RawNode({
      id: opts.id,
      voters: opts.bootstrap.filter((m) => m.voter).map((m) => nodeId(m.id)),
      ...(known.length > 0
        ? { confState: { voters: known.filter((m) => m.voter).map((m) => nodeId(m.id)), learners: known.filter((m) => !m.voter).map((m) => nodeId(m.id)) } }
        : {}),
      storage,
      ...(hardState ? { hardState } : {}),
      applied: logIndex(stateMachine.appliedIndex),
      ...(opts.electionTicks !== undefined ? { electionTicks: opts.electionTicks } : {}),
      ...(opts.heartbeatTicks !== undefined ? { heartbeatTicks: opts.heartbeatTicks } : {}),
      random: seededRandom(seed),
      preVote: true,
      checkQuorum: true,
    });
    const node = new RaftNode(opts, rawNode, hardState?.currentTerm ?? (0 as Term));
    if (latest) node.snapshotFiles.set(latest.index, latest);
    opts.transport.onMessage((m) => node.onMessage(m));
    opts.transport.onSnapshot((m, chunks) => node.receiveSnapshot(m, chunks));
    node.ticker = setInterval(() => node.onTick(), node.tickMs);
    node.leaseTimer = setInterval(() => node.checkLeases(), node.leaseCheckIntervalMs);
    node.on('role', (ss: { role: string }) => void node.onRoleChange(ss.role));
    opts.logger.info(
      { term: hardState?.currentTerm ?? 0, snapshotIndex: latest?.index ?? 0, firstIndex: first, lastIndex: last, applied: stateMachine.appliedIndex },
      'raft node started',
    );
    node.schedule();
    return node;
  }

  /**
   * A fresh store of a new cluster starts with one `config` entry per bootstrap member, at
   * indexes 1..n of term 1 and already committed: every bootstrapping node writes the same
   * entries (etcd's bootstrap), so the membership is in the log, and a node that joins later
   * learns it by replication.
   */
  private static async maybeBootstrap(opts: RaftNodeOptions): Promise<void> {
    const { store } = opts;
    if (opts.bootstrap.length === 0) return;
    if ((await store.stable.hardState()) !== undefined || store.log.lastIndex() > 0) return;
    if ((await opts.snapshots.latest()) !== undefined) return;
    const entries: Entry[] = opts.bootstrap.map((m, i) => ({
      index: logIndex(i + 1),
      term: 1 as Term,
      type: 'config',
      data: encodeMemberChange({ type: m.voter ? 'addVoter' : 'addLearner', nodeId: m.id, address: m.address }),
    }));
    const batch = store.batch();
    batch.appendEntries(entries);
    batch.setHardState({ currentTerm: 1 as Term, votedFor: NO_NODE, commitIndex: logIndex(entries.length) });
    await batch.write();
    opts.logger.info({ members: opts.bootstrap.map((m) => m.id) }, 'bootstrapped a new cluster');
  }

  // -----------------------------------------------------------------------------------------
  // Inputs

  private onTick(): void {
    if (this.stopped) return;
    try {
      this.rawNode.tick();
    } catch (err) {
      this.fatal(err as Error);
      return;
    }
    this.schedule();
  }

  private onMessage(m: Message): void {
    if (this.stopped) return;
    // The leader's evidence that a majority still follows it (for lease expiry, etcd 15247).
    if ((m.type === 'HeartbeatResponse' || m.type === 'AppendEntriesResponse') && m.term === this.rawNode.raft.currentTerm) {
      this.lastAck.set(m.from, performance.now());
    }
    try {
      this.rawNode.step(m);
    } catch (err) {
      // The core drops bad peer input itself; a throw here is a broken invariant.
      this.fatal(err as Error);
      return;
    }
    this.schedule();
  }

  /**
   * Proposes an encoded command and resolves with its result once it is committed and applied
   * on this node (undefined for an entry the state machine skipped). Rejects with
   * {@link NotLeaderError} when this node is not the leader, {@link UnavailableError} when the
   * entry was overwritten by a new leader or the queue is full.
   */
  propose(data: Uint8Array): Promise<CommandResult | undefined> {
    if (this.stopped) return Promise.reject(new UnavailableError('node is stopping'));
    const st = this.rawNode.raft;
    if (st.role !== 'leader') return Promise.reject(new NotLeaderError(st.leaderId));
    if (this.proposalQueue.length >= MAX_PENDING_PROPOSALS) return Promise.reject(new UnavailableError('too many pending proposals'));
    return new Promise((resolve, reject) => {
      this.proposalQueue.push({ data, resolve, reject });
      this.schedule();
    });
  }

  /**
   * Linearizable read barrier (ReadIndex, thesis §6.4): resolves with an index once this node
   * has applied everything committed when the read arrived, so a read of the local state machine
   * after it is linearizable. Rejects with {@link UnavailableError} when no leader can confirm it.
   */
  readBarrier(): Promise<LogIndex> {
    if (this.stopped) return Promise.reject(new UnavailableError('node is stopping'));
    if (this.readQueue.length >= MAX_PENDING_READS) return Promise.reject(new UnavailableError('too many pending reads'));
    return new Promise<LogIndex>((resolve, reject) => {
      this.readQueue.push({ resolve, reject });
      this.schedule();
    }).then(async (index) => {
      await this.waitApplied(index);
      return index;
    });
  }

  /** Resolves once the state machine has applied `index` (durably). */
  waitApplied(index: number): Promise<void> {
    if (this.sm.appliedIndex >= index) return Promise.resolve();
    return new Promise((resolve) => this.applyWaiters.push({ index, resolve }));
  }

  /**
   * Proposes a membership change (thesis §4.1) and resolves with its result once applied here.
   * Rejects with {@link NotLeaderError} on a follower and {@link UnavailableError} when the core
   * refuses it for now (a change still pending, no entry of this term committed yet).
   */
  proposeMemberChange(change: MemberChange): Promise<CommandResult | undefined> {
    if (this.stopped) return Promise.reject(new UnavailableError('node is stopping'));
    const raft = this.rawNode.raft;
    if (raft.role !== 'leader') return Promise.reject(new NotLeaderError(raft.leaderId));
    let r: { index: LogIndex; term: Term };
    try {
      r = this.rawNode.proposeConfChange(encodeMemberChange(change));
    } catch (err) {
      if (err instanceof ProposalDroppedError) return Promise.reject(new UnavailableError(err.message));
      return Promise.reject(err);
    }
    this.schedule();
    return new Promise((resolve, reject) => this.proposed.set(r.index, { term: r.term, resolve, reject }));
  }

  /** The term of the entry at `index` if the log still holds it, else the current term. */
  termAt(index: number): number {
    return this.rawNode.raft.raftLog.term(logIndex(index)) ?? this.rawNode.raft.currentTerm;
  }

  /** The leader's view of a member's replication: its matchIndex and the leader's last index. */
  replicationOf(id: string): { matchIndex: number; lastIndex: number } | undefined {
    const raft = this.rawNode.raft;
    if (raft.role !== 'leader') return undefined;
    const pr = raft.prs.get(nodeId(id));
    return pr ? { matchIndex: pr.matchIndex, lastIndex: raft.raftLog.lastIndex() } : undefined;
  }

  /** Asks the leader to hand leadership to `target` (thesis §3.10). */
  transferLeadership(target: NodeId): boolean {
    const ok = this.rawNode.transferLeadership(target);
    this.schedule();
    return ok;
  }

  /** The core's state. */
  status(): RaftStatus {
    return this.rawNode.status();
  }

  /** The leader this node knows of, or '' . */
  get leaderId(): NodeId {
    return this.rawNode.raft.leaderId;
  }

  /** Whether this node is the leader now. */
  get isLeader(): boolean {
    return this.rawNode.raft.role === 'leader';
  }

  /** The state machine's durable applied index (the registry revision). */
  get appliedIndex(): number {
    return this.sm.appliedIndex;
  }

  // -----------------------------------------------------------------------------------------
  // The Ready loop

  private schedule(): void {
    if (this.scheduled || this.running || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private flushProposals(): void {
    if (this.proposalQueue.length === 0) return;
    const raft = this.rawNode.raft;
    // Thesis §3.10: during a leadership transfer new commands are held, not appended; once the
    // new leader is known they are handed back (NotLeaderError) for the caller to forward.
    if (raft.role === 'leader' && raft.leadTransferee !== NO_NODE) return;
    if (raft.role !== 'leader') {
      if (raft.leaderId === NO_NODE) return; // wait to learn the new leader (or the caller's deadline)
      const err = new NotLeaderError(raft.leaderId);
      for (const p of this.proposalQueue) p.reject(err);
      this.proposalQueue = [];
      return;
    }
    while (this.proposalQueue.length > 0) {
      let bytes = 0;
      let n = 0;
      while (n < this.proposalQueue.length && n < MAX_PROPOSALS_PER_BATCH && bytes < MAX_PROPOSAL_BATCH_BYTES) {
        bytes += (this.proposalQueue[n] as PendingProposal).data.byteLength;
        n++;
      }
      const batch = this.proposalQueue.splice(0, n);
      const { firstIndex, term } = this.rawNode.propose(batch.map((p) => p.data));
      batch.forEach((p, i) => this.proposed.set(firstIndex + i, { term, resolve: p.resolve, reject: p.reject }));
    }
  }

  private flushReads(): void {
    if (this.readQueue.length === 0) return;
    const ctx = randomBytes(8);
    this.readRounds.set(ctx.toString('hex'), this.readQueue);
    this.readQueue = [];
    this.rawNode.readIndex(ctx);
  }

  private async run(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      for (;;) {
        await this.maybeWriteCompaction();
        this.maybeStartSnapshot();
        this.flushProposals();
        this.flushReads();
        if (!this.rawNode.hasReady()) break;
        await this.handleReady(this.rawNode.ready());
        if (this.stopped) return;
        this.rawNode.advance();
      }
    } catch (err) {
      this.fatal(err as Error);
    } finally {
      this.running = false;
    }
    // Held proposals (a transfer in progress, no known leader) are looked at again on the next
    // tick or message, not in a busy loop.
    const raft = this.rawNode.raft;
    const proposable = this.proposalQueue.length > 0 && raft.role === 'leader' && raft.leadTransferee === NO_NODE;
    if (proposable || this.readQueue.length > 0 || this.pendingCompaction || this.rawNode.hasReady()) this.schedule();
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.snapshot) await this.installSnapshot(rd);
    if (rd.softState) {
      this.log.info({ role: rd.softState.role, leader: rd.softState.leaderId, term: this.rawNode.raft.currentTerm }, 'raft role changed');
      this.emit('role', rd.softState);
    }
    // Thesis §10.2.1: a leader may replicate in parallel with its own disk write (it counts
    // itself toward a majority only once the write is durable, which the core enforces). Only
    // leader-to-follower messages of a term already durable here go out early; votes and
    // acknowledgements wait for the write they promise.
    const early: Message[] = [];
    const late: Message[] = [];
    for (const m of rd.messages) {
      if (m.type === 'InstallSnapshot') this.sendSnapshot(m);
      else (sendableBeforePersist(m, this.durableTerm) ? early : late).push(m);
    }
    if (early.length > 0) this.transport.send(early);
    // 1. Persist: hard state, entries and the applied state machine changes, in one synced write.
    const batch = this.store.batch();
    if (rd.hardState) batch.setHardState(rd.hardState);
    if (rd.entries.length > 0) batch.appendEntries(rd.entries);
    const results = await this.sm.applyEntries(rd.committedEntries, batch);
    if (!batch.empty) await batch.write();
    this.sm.commitApplied(batch);
    // 2. Send, only now that what the messages promise is durable.
    if (rd.messages.length > 0) this.transport.send(rd.messages);
    // Membership changes take effect in Raft and in the transport once applied (etcd's rule).
    for (const e of rd.committedEntries) {
      const r = results.get(e.index);
      if (e.type !== 'config' || r?.type !== 'config') continue;
      this.rawNode.applyConfChange({ type: r.change.type, nodeId: nodeId(r.change.nodeId) });
      if (r.change.nodeId !== this.id) {
        if (r.change.type === 'removeNode') this.transport.removePeer(nodeId(r.change.nodeId));
        else this.transport.setPeer(nodeId(r.change.nodeId), r.change.address);
      }
      this.log.info({ change: r.change, members: r.members.map((m) => `${m.id}${m.voter ? '' : '(learner)'}`) }, 'membership changed');
      this.emit('members', r.members);
    }
    // Leases follow the committed writes; watchers see the batch once it is durable.
    const events = this.sm.takeCommittedEvents();
    if (this.heldLeaseEvents) this.heldLeaseEvents.push(...events);
    else if (this.leases.active) this.trackLeases(events);
    this.onEvents(events);
    // 3. Answer clients.
    this.completeProposals(rd.committedEntries, results);
    for (const rs of rd.readStates) this.completeRead(rs.context, rs.index, rs.ok);
    this.releaseApplyWaiters();
  }

  private completeProposals(entries: readonly Entry[], results: Map<number, CommandResult>): void {
    for (const e of entries) {
      const w = this.proposed.get(e.index);
      if (!w) continue;
      this.proposed.delete(e.index);
      if (e.term === w.term) w.resolve(results.get(e.index));
      else w.reject(new UnavailableError(`entry ${e.index} was replaced by a new leader (term ${e.term}); retry`));
    }
  }

  private completeRead(context: Uint8Array, index: LogIndex, ok: boolean): void {
    const key = Buffer.from(context).toString('hex');
    const waiters = this.readRounds.get(key);
    if (!waiters) return;
    this.readRounds.delete(key);
    for (const w of waiters) {
      if (ok) w.resolve(index);
      else w.reject(new UnavailableError('no leader could confirm the read; retry'));
    }
  }

  private releaseApplyWaiters(): void {
    const applied = this.sm.appliedIndex;
    for (let i = this.applyWaiters.length - 1; i >= 0; i--) {
      const w = this.applyWaiters[i] as { index: number; resolve: () => void };
      if (w.index <= applied) {
        this.applyWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  // -----------------------------------------------------------------------------------------
  // Leases (decided by the leader, applied through the log)

  /**
   * When a majority of voters last acknowledged this leader (ms, monotonic): the quorum-th most
   * recent acknowledgement, counting this node as now. 0 when not leading.
   */
  quorumConfirmedAt(): number {
    const raft = this.rawNode.raft;
    if (raft.role !== 'leader') return 0;
    const now = performance.now();
    const voters = [...raft.voters()];
    const times = voters.map((v) => (v === this.id ? now : Math.max(this.lastAck.get(v) ?? 0, this.leaderSince)));
    times.sort((a, b) => b - a);
    const q = Math.floor(voters.length / 2) + 1;
    // Right after taking office the votes just received are the confirmation.
    return times[q - 1] ?? 0;
  }

  private async onRoleChange(role: string): Promise<void> {
    if (role === 'leader') {
      this.leaderSince = performance.now();
      this.lastAck.clear();
      // Writes applied while the lease list loads are held and replayed after it, so none is missed.
      this.heldLeaseEvents = [];
      // A new leader gives every lease a fresh full TTL (etcd's rule, issue 2660).
      const leases = await this.sm.leases();
      const held = this.heldLeaseEvents;
      this.heldLeaseEvents = undefined;
      if (this.rawNode.raft.role === 'leader') {
        this.leases.becomeLeader(performance.now(), leases);
        this.trackLeases(held);
      }
    } else {
      this.heldLeaseEvents = undefined;
      this.leases.stepDown();
      this.expiring = false;
    }
  }

  /** Keeps the leader's lease deadlines in step with the committed writes (their watch events). */
  private trackLeases(events: readonly WatchEvent[]): void {
    const now = performance.now();
    for (const e of events) {
      const a = e.agent;
      if (e.type === 'delete' || a.ttlSeconds === 0) this.leases.remove(a.id);
      else this.leases.upsert({ id: a.id, ttlMs: a.ttlSeconds * 1000, modRevision: a.modRevision }, now);
    }
  }

  /**
   * The leader's periodic lease check: lapsed leases are removed by an `expire` command through
   * the log, only while a majority confirmed this leader within an election timeout.
   */
  private checkLeases(): void {
    if (this.stopped || !this.leases.active || this.expiring || this.rawNode.raft.role !== 'leader') return;
    const electionMs = this.tickMs * this.rawNode.raft.electionTimeoutTicks;
    const lapsed = this.leases.expired(performance.now(), this.quorumConfirmedAt(), {
      maxQuorumAgeMs: electionMs,
      maxTickGapMs: Math.max(MAX_LEASE_CHECK_GAP_MS, 3 * this.leaseCheckIntervalMs),
      maxBatch: MAX_EXPIRE_BATCH,
    });
    if (lapsed.length === 0) return;
    this.expiring = true;
    const cmd = encodeCommand({ type: 'expire', requestId: `${this.id}:expire:${performance.now().toFixed(0)}`, leases: lapsed.map((l) => ({ id: l.id, modRevision: l.modRevision })) });
    this.propose(cmd).then(
      (r) => {
        this.expiring = false;
        if (r?.type === 'expire' && r.expired.length > 0) this.log.info({ expired: r.expired, revision: r.revision }, 'leases expired');
      },
      (err: unknown) => {
        this.expiring = false;
        this.leases.retryPending();
        this.log.debug({ err }, 'lease expiry not committed; will retry');
      },
    );
  }

  // -----------------------------------------------------------------------------------------
  // Snapshots and compaction (§7)

  /**
   * Once `snapshotThresholdEntries` entries were applied since the last snapshot, takes a
   * consistent view of the state machine (a LevelDB snapshot, at exactly the applied index:
   * no write is in flight between two Readies) and writes it to a snapshot file in the
   * background, while applies go on.
   */
  private maybeStartSnapshot(): void {
    if (this.snapshotInProgress) return;
    const applied = this.sm.appliedIndex;
    const last = this.rawNode.raft.raftLog.storage.snapshot().metadata.index;
    if (applied - last < this.snapshotThreshold) return;
    const index = logIndex(applied);
    const t = this.rawNode.raft.raftLog.term(index);
    if (t === undefined) return;
    const metadata: SnapshotMetadata = { index, term: t, confState: this.rawNode.raft.confState() };
    const view = this.store.stateMachineView();
    this.snapshotInProgress = true;
    const started = performance.now();
    void (async () => {
      const sink = this.snapshots.create(metadata);
      try {
        for await (const chunk of encodeStatePairs(view.entries(), this.chunkBytes)) await sink.write(chunk);
        const file = await sink.finish();
        this.snapshotFiles.set(file.index, file);
        this.rawNode.setSnapshot(metadata);
        this.planCompaction(index);
        this.log.info({ index, term: t, sizeBytes: file.sizeBytes, ms: Math.round(performance.now() - started) }, 'snapshot written');
        await this.pruneSnapshots();
      } catch (err) {
        await sink.abort().catch(() => undefined);
        this.log.error({ err, index }, 'snapshot failed; will retry');
      } finally {
        await view.close().catch(() => undefined);
        this.snapshotInProgress = false;
        this.schedule();
      }
    })();
  }

  /**
   * Decides how far to compact after a snapshot at `index`: keep `snapshotTailEntries` entries,
   * and never drop an entry after a snapshot still being sent to a follower, so that once it is
   * installed the follower continues from the log instead of needing yet another snapshot
   * (a follower whose transfer outlasts the tail would otherwise never catch up).
   */
  private planCompaction(index: LogIndex): void {
    const raft = this.rawNode.raft;
    let through = index - this.snapshotTail;
    if (raft.role === 'leader') {
      for (const [id, pr] of raft.prs) if (id !== this.id && pr.state === 'snapshot') through = Math.min(through, pr.pendingSnapshot);
    }
    if (through <= raft.raftLog.storage.compactedTo().index) return;
    const t = this.rawNode.compact(logIndex(through));
    this.pendingCompaction = { index: logIndex(through), term: t };
    this.schedule();
  }

  private async maybeWriteCompaction(): Promise<void> {
    const c = this.pendingCompaction;
    if (!c) return;
    this.pendingCompaction = undefined;
    const batch = this.store.batch();
    batch.compactLog(c.index, c.term);
    await batch.write();
    this.log.info({ through: c.index, firstIndex: this.store.log.firstIndex() }, 'log compacted');
  }

  private async pruneSnapshots(): Promise<void> {
    await this.snapshots.prune(SNAPSHOTS_RETAINED);
    const keep = [...this.snapshotFiles.keys()].sort((a, b) => b - a).slice(0, SNAPSHOTS_RETAINED);
    for (const k of this.snapshotFiles.keys()) if (!keep.includes(k)) this.snapshotFiles.delete(k);
  }

  /** Streams the snapshot file an InstallSnapshot names to its follower; reports the outcome to Raft. */
  private sendSnapshot(m: InstallSnapshot): void {
    const to = m.to;
    const file = this.snapshotFiles.get(m.snapshot.metadata.index);
    if (!file || this.snapshotSends.has(to)) {
      if (!file) this.rawNode.reportSnapshot(to, false);
      return;
    }
    this.snapshotSends.add(to);
    const started = performance.now();
    this.transport.sendSnapshot(m, this.snapshots.read(file, this.chunkBytes)).then(
      () => {
        this.log.info({ to, index: file.index, sizeBytes: file.sizeBytes, ms: Math.round(performance.now() - started) }, 'snapshot sent');
        this.afterSnapshotSend(to, true);
      },
      (err: unknown) => {
        this.log.warn({ to, index: file.index, err }, 'snapshot send failed; will retry');
        this.afterSnapshotSend(to, false);
      },
    );
  }

  private afterSnapshotSend(to: NodeId, ok: boolean): void {
    this.snapshotSends.delete(to);
    if (this.stopped) return;
    this.rawNode.reportSnapshot(to, ok);
    this.schedule();
  }

  /**
   * A snapshot arrives from the leader: its payload is written to a local snapshot file first;
   * only then does the InstallSnapshot step into Raft, which decides whether to install it.
   */
  private async receiveSnapshot(m: InstallSnapshot, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    if (this.stopped) throw new UnavailableError('node is stopping');
    const sink = this.snapshots.create(m.snapshot.metadata);
    try {
      for await (const chunk of chunks) await sink.write(chunk);
      const file = await sink.finish();
      this.snapshotFiles.set(file.index, file);
    } catch (err) {
      await sink.abort().catch(() => undefined);
      throw err;
    }
    this.onMessage(m);
  }

  /**
   * Installs the snapshot of a Ready (§7, Figure 13 steps 6-8): the state machine is replaced
   * from the snapshot file and the log reset to end at its index, in one atomic switch; a crash
   * before it leaves the previous state and log.
   */
  private async installSnapshot(rd: Ready): Promise<void> {
    const meta = (rd.snapshot as Snapshot).metadata;
    const file = this.snapshotFiles.get(meta.index);
    if (!file) throw new Error(`snapshot ${meta.index} to install is not on disk`);
    const started = performance.now();
    await this.store.installStateMachine(decodeStatePairs(this.snapshots.read(file, this.chunkBytes)), (batch) => {
      batch.resetLog(meta.index, meta.term);
      if (rd.hardState) batch.setHardState(rd.hardState);
    });
    this.sm.discardStaged();
    await this.sm.open();
    if (this.sm.appliedIndex !== meta.index) {
      throw new Error(`installed snapshot ${meta.index} but the state machine says applied ${this.sm.appliedIndex}`);
    }
    this.log.info({ index: meta.index, term: meta.term, sizeBytes: file.sizeBytes, ms: Math.round(performance.now() - started) }, 'snapshot installed');
    await this.pruneSnapshots();
  }

  private fatal(err: Error): void {
    if (this.stopped) return;
    this.log.fatal({ err }, 'raft node stopped by a fatal error');
    void this.stop();
    this.onFatal(err);
  }

  /**
   * Stops ticking and stepping; rejects everything pending with {@link UnavailableError}.
   * Waits for a Ready write in flight to finish. Does not close the store or transport.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.leases.stepDown();
    const err = new UnavailableError('node is stopping');
    for (const p of this.proposalQueue) p.reject(err);
    this.proposalQueue = [];
    for (const w of this.proposed.values()) w.reject(err);
    this.proposed.clear();
    for (const w of this.readQueue) w.reject(err);
    this.readQueue = [];
    for (const ws of this.readRounds.values()) for (const w of ws) w.reject(err);
    this.readRounds.clear();
    while (this.running) await new Promise((r) => setTimeout(r, 5));
  }
}
