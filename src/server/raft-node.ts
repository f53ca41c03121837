/**
 * The driver: the one place where the pure Raft core meets time, disk and network (etcd's
 * `raftNode` in `etcdserver/raft.go`, hashicorp/raft's `raft.go`). It depends on ports only —
 * {@link NodeStore} and {@link SnapshotStore} for the disk, {@link Transport} and
 * {@link SnapshotTransport} for peers, {@link Clock} for time, {@link Entropy} for randomness, the
 * registry state machine — so that production (LevelDB, gRPC, real time) and the deterministic
 * simulator (memory, a simulated network, simulated time) run this same loop.
 *
 * The loop, one `Ready` at a time, exactly as the `Ready` contract orders it:
 *
 * 1. Messages a leader may send before its own write is durable go out first (thesis §10.2.1:
 *    AppendEntries, Heartbeat and TimeoutNow of a term already durable here); the leader counts
 *    itself toward a majority only once its write is durable, which the core enforces.
 * 2. One write: a snapshot to install (its own atomic switch), then hard state, new entries and
 *    the state machine's changes for the committed entries with the applied index, in one batch,
 *    synced when the Ready says `mustSync`.
 * 3. Every other message is sent, each exactly once; an `InstallSnapshot` only on the snapshot
 *    stream, with its payload.
 * 4. Membership changes take effect, watch events are published, clients are answered.
 * 5. `advance()`.
 *
 * Concepts of their own: proposals and ReadIndex rounds (`proposals.ts`), snapshots
 * (`snapshots.ts`), leases (`lease-policy.ts`).
 *
 * Failure kinds: {@link NotLeaderError} and {@link UnavailableError} are expected and retryable;
 * a `RaftInvariantError` or `CorruptionError`, or a failed write, is fatal: the node stops
 * (`onFatal`). Peer input never stops a node: the core drops what it cannot use, and this driver
 * drops an `InstallSnapshot` whose payload it does not hold.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import {
  MemoryStorage,
  NO_NODE,
  ProposalDroppedError,
  RawNode,
  isAcceptableTerm,
  logIndex,
  nodeId,
  seededRandom,
  type ConfState,
  type Entry,
  type InstallSnapshot,
  type LogIndex,
  type Message,
  type NodeId,
  type RaftStatus,
  type RaftTestingKnobs,
  type Ready,
  type Term,
} from '../raft/index.js';
import { encodeMemberChange } from '../registry/commands.js';
import { LEASE_CHECK_INTERVAL_MS } from '../registry/lease-manager.js';
import type { LeaseKeeper } from '../registry/lease-types.js';
import type { RegistryStateMachine } from '../registry/state-machine.js';
import type { CommandResult, Member, MemberChange, WatchEvent } from '../registry/types.js';
import { CorruptionError, type NodeStore, type SnapshotStore, type WriteBatch } from '../storage/types.js';
import { DEFAULT_SNAPSHOT_CHUNK_BYTES } from '../transport/snapshot-stream.js';
import type { SnapshotTransport, Transport } from '../transport/types.js';
import { LeasePolicy } from './lease-policy.js';
import { systemClock, systemEntropy, type Clock, type Entropy, type ProposalFailure, type RaftNodeObserver } from './ports.js';
import { NotLeaderError, Proposals, ReadRounds, UnavailableError } from './proposals.js';
import { DEFAULT_SNAPSHOT_TAIL_ENTRIES, DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES, SnapshotManager } from './snapshots.js';

export { NotLeaderError, UnavailableError } from './proposals.js';
export { MAX_PENDING_PROPOSALS, MAX_PENDING_READS, MAX_PROPOSAL_BATCH_BYTES, MAX_PROPOSALS_PER_BATCH } from './proposals.js';
export { DEFAULT_SNAPSHOT_TAIL_ENTRIES, DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES, SNAPSHOTS_RETAINED } from './snapshots.js';

/** Milliseconds per second, for the durations (seconds) the observer hears of. */
const MS_PER_SECOND = 1_000;

/** Default length of one tick, in ms: heartbeat 1 tick = 100 ms, election 10-20 ticks = 1-2 s. */
export const DEFAULT_TICK_MS = 100;

/**
 * Deliberate bugs of the driver, for proving that the simulator finds them. Never set outside
 * tests: each one puts back a defect that once shipped or breaks a rule of the paper.
 */
export interface DriverTestingKnobs {
  /** Sends the messages that went out before the write a second time after it (a duplicate send). */
  readonly resendEarlyMessages?: boolean;
  /** Also sends `InstallSnapshot` on the ordinary peer stream, and steps one that arrives there without its payload. */
  readonly installSnapshotOnStream?: boolean;
  /** Never advances the durable term after start, so a later leader never replicates in parallel with its write. */
  readonly freezeDurableTerm?: boolean;
  /** Never fails a ReadIndex round that got no answer, nor a read whose index is not applied (they wait for their deadline). */
  readonly keepLostReads?: boolean;
  /** Never syncs a write (what a missing fsync does). */
  readonly skipSync?: boolean;
  /** Persists hard state without `votedFor` (so a restart forgets the vote). */
  readonly forgetVotedFor?: boolean;
  /** Expires leases however long ago a majority last confirmed this leader (etcd issue 15247). */
  readonly ignoreQuorumAge?: boolean;
  /** Opens a snapshot's view for a follower at once, even while an apply is in flight (its index then names another state). */
  readonly snapshotViewMidApply?: boolean;
  /** Steps a received snapshot without decoding its payload first, so a payload it cannot install stops the node. */
  readonly installUncheckedSnapshots?: boolean;
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
  /** Where snapshots streamed from a leader land before they are installed (§7). */
  readonly snapshots: SnapshotStore;
  readonly logger: Logger;
  /** Time and timers (default: real time). */
  readonly clock?: Clock;
  /** Randomness: election timeouts and ReadIndex contexts (default: the OS's). */
  readonly entropy?: Entropy;
  /** Callbacks for metrics and invariant checks. */
  readonly observer?: RaftNodeObserver;
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
  /** Called after a snapshot from the leader replaced the state machine (watchers must catch up from history). */
  readonly onRestored?: (index: LogIndex) => void;
  /** Length of a tick in ms (default {@link DEFAULT_TICK_MS}). */
  readonly tickMs?: number;
  /** Election timeout in ticks (default 10, randomized up to twice that). */
  readonly electionTicks?: number;
  /** Heartbeat interval in ticks (default 1). */
  readonly heartbeatTicks?: number;
  /** Largest AppendEntries payload, in bytes (the core's default when absent). */
  readonly maxSizePerMsgBytes?: number;
  /** Most AppendEntries in flight per follower (the core's default when absent). */
  readonly maxInflightMsgs?: number;
  /** Called once with the error that stopped the node. */
  readonly onFatal?: (err: Error) => void;
  /** Deliberate bugs, for tests only. */
  readonly testingKnobs?: DriverTestingKnobs & RaftTestingKnobs;
}

/**
 * Whether `m` may be sent before the Ready that holds it is durable: a leader's replication
 * traffic in a term already on disk (thesis §10.2.1). Everything a follower or candidate sends
 * (votes, acknowledgements) promises durable state and must wait, and so does anything of a term
 * not yet durable (a crash could make this node forget the term it led).
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
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly observer: RaftNodeObserver;
  private readonly knobs: DriverTestingKnobs;
  /** Lease deadlines, kept while leading. */
  readonly leases: LeaseKeeper;
  private readonly leasePolicy: LeasePolicy;
  private readonly snapshotManager: SnapshotManager;
  private readonly proposals = new Proposals((reason, count) => this.observer.onProposalFailed?.(this.id, reason, count));
  private readonly reads: ReadRounds;
  private readonly applyWaiters: { index: number; resolve: () => void }[] = [];
  private readonly onEvents: (events: readonly WatchEvent[]) => void;
  private readonly onRestored: (index: LogIndex) => void;
  private readonly onFatal: (err: Error) => void;
  private readonly tickMs: number;
  private readonly leaseCheckIntervalMs: number;

  private ticker: { cancel(): void } | undefined;
  private leaseTimer: { cancel(): void } | undefined;
  private running = false;
  private scheduled = false;
  private stopped = false;
  private idle: (() => void) | undefined;
  /** The highest term known to be on disk (advanced after every durable write of a hard state). */
  private durableTerm: Term;
  /** The tail of the chain of applies (each waits for the one before). */
  private applying: Promise<void> = Promise.resolve();
  /** Applies queued or running. */
  private applyInFlight = 0;
  /** Messages refused because their term was beyond the bound ({@link isAcceptableTerm}). */
  refusedTermMessages = 0;

  private constructor(opts: RaftNodeOptions, rawNode: RawNode, durableTerm: Term, incarnation: number) {
    super();
    this.id = opts.id;
    this.rawNode = rawNode;
    this.durableTerm = durableTerm;
    this.store = opts.store;
    this.sm = opts.stateMachine;
    this.transport = opts.transport;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.observer = opts.observer ?? {};
    this.knobs = opts.testingKnobs ?? {};
    this.leases = opts.leases;
    this.onEvents = opts.onEvents ?? (() => undefined);
    this.onRestored = opts.onRestored ?? (() => undefined);
    this.onFatal = opts.onFatal ?? (() => undefined);
    this.tickMs = opts.tickMs ?? DEFAULT_TICK_MS;
    this.leaseCheckIntervalMs = opts.leaseCheckIntervalMs ?? LEASE_CHECK_INTERVAL_MS;
    this.reads = new ReadRounds(incarnation);
    this.leasePolicy = new LeasePolicy({
      id: this.id,
      rawNode,
      clock: this.clock,
      keeper: opts.leases,
      log: this.log,
      tickMs: this.tickMs,
      checkIntervalMs: this.leaseCheckIntervalMs,
      loadLeases: () => this.sm.leases(),
      ignoreQuorumAge: this.knobs.ignoreQuorumAge === true,
      propose: (data) => this.propose(data),
    });
    this.snapshotManager = new SnapshotManager({
      id: this.id,
      rawNode,
      store: opts.store,
      stateMachine: opts.stateMachine,
      snapshots: opts.snapshots,
      transport: opts.transport,
      clock: this.clock,
      log: this.log,
      observer: this.observer,
      thresholdEntries: opts.snapshotThresholdEntries ?? DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES,
      tailEntries: opts.snapshotTailEntries ?? DEFAULT_SNAPSHOT_TAIL_ENTRIES,
      chunkBytes: opts.snapshotChunkBytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES,
      schedule: () => this.schedule(),
      betweenApplies: this.knobs.snapshotViewMidApply ? (fn) => Promise.resolve().then(fn) : (fn) => this.betweenApplies(fn),
      syncWrites: !this.knobs.skipSync,
      stopped: () => this.stopped,
      checkPayloads: !this.knobs.installUncheckedSnapshots,
    });
  }

  /**
   * Loads the persisted log and hard state, builds the core and starts ticking. Throws
   * `CorruptionError` when stored data fails its checksum.
   */
  static async start(opts: RaftNodeOptions): Promise<RaftNode> {
    const { store, stateMachine } = opts;
    const entropy = opts.entropy ?? systemEntropy;
    await RaftNode.maybeBootstrap(opts);
    const hardState = await store.stable.hardState();
    // Recovery (§7): the compaction point, the log tail after it, and the snapshot point, which
    // is the state machine's applied index: the state machine in the store is the snapshot.
    const compacted = await store.stable.compactedTo();
    const applied = logIndex(stateMachine.appliedIndex);
    if (applied < compacted.index) {
      throw new CorruptionError(`the state machine is applied through ${applied}, behind the log's compaction point ${compacted.index}: the entries in between are gone`);
    }
    // The configuration as of the applied index: the replicated membership record, else (a
    // bootstrapped store whose first entries are not applied yet) the bootstrap list.
    const members = await stateMachine.members();
    const known = members.length > 0 ? members : applied > 0 ? [] : opts.bootstrap;
    const confState: ConfState = { voters: known.filter((m) => m.voter).map((m) => nodeId(m.id)), learners: known.filter((m) => !m.voter).map((m) => nodeId(m.id)) };
    const storage = new MemoryStorage({ metadata: { index: compacted.index, term: compacted.term, confState }, data: new Uint8Array(0) }, compacted);
    const first = store.log.firstIndex();
    const last = store.log.lastIndex();
    if (last >= first) storage.append(await store.log.entries(first, logIndex(last + 1)));
    const appliedTerm = applied > compacted.index ? storage.term(applied) : undefined;
    if (appliedTerm !== undefined) storage.setSnapshot({ metadata: { index: applied, term: appliedTerm, confState }, data: new Uint8Array(0) });
    const latest = await opts.snapshots.latest();
    const { resendEarlyMessages: _a, installSnapshotOnStream: _b, freezeDurableTerm: _c, keepLostReads: _e, skipSync: _f, forgetVotedFor: _g, ignoreQuorumAge: _h, snapshotViewMidApply: _i, installUncheckedSnapshots: _j, ...coreKnobs } =
      opts.testingKnobs ?? {};
    const rawNode = new RawNode({
      id: opts.id,
      voters: opts.bootstrap.filter((m) => m.voter).map((m) => nodeId(m.id)),
      ...(known.length > 0 ? { confState } : {}),
      storage,
      ...(hardState ? { hardState } : {}),
      applied,
      ...(opts.electionTicks !== undefined ? { electionTicks: opts.electionTicks } : {}),
      ...(opts.heartbeatTicks !== undefined ? { heartbeatTicks: opts.heartbeatTicks } : {}),
      ...(opts.maxSizePerMsgBytes !== undefined ? { maxSizePerMsgBytes: opts.maxSizePerMsgBytes } : {}),
      ...(opts.maxInflightMsgs !== undefined ? { maxInflightMsgs: opts.maxInflightMsgs } : {}),
      random: seededRandom(entropy.uint32()),
      preVote: true,
      checkQuorum: true,
      testingKnobs: coreKnobs,
    });
    const node = new RaftNode(opts, rawNode, hardState?.currentTerm ?? (0 as Term), entropy.uint32());
    if (latest) node.snapshotManager.adopt(latest);
    opts.transport.onMessage((m) => node.onMessage(m));
    opts.transport.onSnapshot((m, chunks) => node.snapshotManager.receive(m, chunks, (s) => node.stepSnapshot(s)));
    node.ticker = node.clock.setRepeating(node.tickMs, () => node.onTick());
    node.leaseTimer = node.clock.setRepeating(node.leaseCheckIntervalMs, () => {
      if (!node.stopped) node.leasePolicy.check();
    });
    opts.logger.info(
      { term: hardState?.currentTerm ?? 0, snapshotIndex: storage.snapshot().metadata.index, firstIndex: first, lastIndex: last, applied: stateMachine.appliedIndex },
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
    await batch.write({ sync: true });
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
    // A ReadIndex round unanswered for an election timeout was lost (a dropped request or
    // answer, a leader gone): its reads are failed so their clients retry now, not at their deadline.
    if (!this.knobs.keepLostReads) this.reads.expire(this.clock.now() - this.electionTimeoutMs());
    this.schedule();
  }

  private onMessage(m: Message): void {
    if (this.stopped) return;
    if (m.type === 'InstallSnapshot' && !this.knobs.installSnapshotOnStream) {
      // A snapshot travels only with its payload (`stepSnapshot`); one without is dropped.
      this.log.warn({ from: m.from, index: m.snapshot.metadata.index }, 'dropping InstallSnapshot that arrived without its payload');
      return;
    }
    this.step(m);
  }

  /** Steps an InstallSnapshot whose payload the snapshot manager has just stored. */
  private stepSnapshot(m: InstallSnapshot): void {
    if (this.stopped) return;
    this.step(m);
  }

  private step(m: Message): void {
    if (!isAcceptableTerm(m.term, this.rawNode.raft.currentTerm)) {
      // The core drops it too; here the sender is named, since only a forged or corrupt message
      // carries a term this node could never go past.
      this.refusedTermMessages++;
      this.log.warn({ from: m.from, type: m.type, term: m.term, currentTerm: this.rawNode.raft.currentTerm }, 'refusing a message whose term is beyond the bound (MAX_WIRE_TERM)');
      return;
    }
    this.leasePolicy.observe(m);
    this.observer.onStep?.(this.id, m);
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
    this.observer.onProposalSubmitted?.(this.id);
    if (this.stopped) return this.refuseProposal('stopping', new UnavailableError('node is stopping'));
    const st = this.rawNode.raft;
    if (st.role !== 'leader') return this.refuseProposal('not_leader', new NotLeaderError(st.leaderId));
    const p = this.proposals.enqueue(data);
    this.schedule();
    return p;
  }

  /**
   * Linearizable read barrier (ReadIndex, thesis §6.4): resolves with an index once this node
   * has applied everything committed when the read arrived, so a read of the local state machine
   * after it is linearizable. Rejects with {@link UnavailableError} when no leader confirms it
   * within an election timeout, or this node does not apply that index within another one (it is
   * cut off or far behind): the client retries, here or elsewhere, instead of waiting for its
   * deadline.
   */
  readBarrier(): Promise<LogIndex> {
    if (this.stopped) return Promise.reject(new UnavailableError('node is stopping'));
    const p = this.reads.enqueue().then((index) => this.waitAppliedWithin(index, this.electionTimeoutMs(), 'this node has not applied the read index within an election timeout (it is behind or cut off from the leader); retry'));
    this.schedule();
    return p;
  }

  /** One (minimum) election timeout, in ms. */
  private electionTimeoutMs(): number {
    return this.tickMs * this.rawNode.raft.electionTimeoutTicks;
  }

  /** Resolves with `index` once applied; rejects with {@link UnavailableError} (`why`) after `ms`. */
  private waitAppliedWithin(index: LogIndex, ms: number, why: string): Promise<LogIndex> {
    if (this.sm.appliedIndex >= index || this.knobs.keepLostReads) return this.waitApplied(index).then(() => index);
    return new Promise<LogIndex>((resolve, reject) => {
      const timer = this.clock.setTimer(ms, () => reject(new UnavailableError(why)));
      void this.waitApplied(index).then(() => {
        timer.cancel();
        resolve(index);
      });
    });
  }

  /**
   * Runs `fn` in the chain of applies: after every apply queued so far, before any queued later,
   * so the store holds exactly the state machine's applied index while it runs. Resolves with
   * what `fn` returns; rejects with what it throws (the chain goes on).
   */
  private betweenApplies<T>(fn: () => T): Promise<T> {
    const p = this.applying.then(fn);
    this.applying = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
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
    this.observer.onProposalSubmitted?.(this.id);
    if (this.stopped) return this.refuseProposal('stopping', new UnavailableError('node is stopping'));
    const raft = this.rawNode.raft;
    if (raft.role !== 'leader') return this.refuseProposal('not_leader', new NotLeaderError(raft.leaderId));
    let r: { index: LogIndex; term: Term };
    try {
      r = this.rawNode.proposeConfChange(encodeMemberChange(change), { type: change.type, nodeId: nodeId(change.nodeId) });
    } catch (err) {
      if (err instanceof ProposalDroppedError) return this.refuseProposal('dropped', new UnavailableError(err.message));
      return Promise.reject(err);
    }
    this.schedule();
    return this.proposals.await(r.index, r.term);
  }

  /** Tells the observer a proposal failed for `reason`, and rejects with `err`. */
  private refuseProposal(reason: ProposalFailure, err: Error): Promise<never> {
    this.observer.onProposalFailed?.(this.id, reason, 1);
    return Promise.reject(err);
  }

  /** Proposals queued or appended and not yet answered (commands and membership changes). */
  get pendingProposals(): number {
    return this.proposals.pending;
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

  /** When a majority of voters last acknowledged this leader (ms of the node's clock); 0 when not leading. */
  quorumConfirmedAt(): number {
    return this.leasePolicy.quorumConfirmedAt();
  }

  /** The core's state. */
  status(): RaftStatus {
    return this.rawNode.status();
  }

  /** The core itself, read-only by convention: for status pages and the simulator's invariant checks. */
  get core(): RawNode {
    return this.rawNode;
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

  /** Whether the node has stopped (by `stop()` or a fatal error). */
  get isStopped(): boolean {
    return this.stopped;
  }

  // -----------------------------------------------------------------------------------------
  // The Ready loop

  private schedule(): void {
    if (this.scheduled || this.running || this.stopped) return;
    this.scheduled = true;
    this.clock.defer(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      for (;;) {
        await this.snapshotManager.maybeWriteCompaction();
        if (this.stopped) return;
        // A snapshot's point must be written through: none while an apply is in flight.
        if (this.applyInFlight === 0) this.snapshotManager.maybeTake();
        this.proposals.flush(this.rawNode, this.observer.onProposed && ((first, last, term) => this.observer.onProposed?.(this.id, first, last, term)));
        this.reads.flush(this.rawNode, this.clock.now());
        if (!this.rawNode.hasReady()) break;
        await this.handleReady(this.rawNode.ready());
        if (this.stopped) return;
        this.rawNode.advance();
      }
    } catch (err) {
      this.fatal(err as Error);
    } finally {
      this.running = false;
      this.idle?.();
    }
    // Held proposals (a transfer in progress, no known leader) are looked at again on the next
    // tick or message, not in a busy loop.
    if (this.proposals.proposable(this.rawNode) || this.reads.queued || this.snapshotManager.compactionPending || this.rawNode.hasReady()) this.schedule();
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState) {
      this.log.info({ role: rd.softState.role, leader: rd.softState.leaderId, term: this.rawNode.raft.currentTerm }, 'raft role changed');
      void this.leasePolicy.onRoleChange(rd.softState.role);
      this.emit('role', rd.softState);
    }
    // 1. Early: a leader's replication traffic of a durable term, in parallel with its write.
    const early: Message[] = [];
    const late: Message[] = [];
    const snapshots: InstallSnapshot[] = [];
    for (const m of rd.messages) {
      if (m.type === 'InstallSnapshot') {
        snapshots.push(m);
        if (this.knobs.installSnapshotOnStream) late.push(m);
      } else (sendableBeforePersist(m, this.durableTerm) ? early : late).push(m);
    }
    if (early.length > 0) {
      this.transport.send(early);
      this.observer.onSent?.(this.id, early, true);
    }
    // 2. Persist: a snapshot's atomic install (after every apply before it), then hard state and
    //    entries in one write, synced when the Ready must be. A Ready that only commits is
    //    written together with its applies, in one unsynced batch.
    const committed = rd.committedEntries;
    if (rd.snapshot) {
      await this.applying;
      await this.snapshotManager.install(rd);
    }
    const hardState = rd.hardState && this.knobs.forgetVotedFor ? { ...rd.hardState, votedFor: NO_NODE } : rd.hardState;
    const sync = rd.mustSync && !this.knobs.skipSync;
    const withApplies = committed.length > 0 && rd.entries.length === 0 && !rd.mustSync && !rd.snapshot;
    const batch = this.store.batch();
    if (hardState && !rd.snapshot) batch.setHardState(hardState);
    if (rd.entries.length > 0) batch.appendEntries(rd.entries);
    let writeSeconds: number | undefined;
    if (!withApplies && !batch.empty) {
      const started = this.clock.now();
      await batch.write({ sync });
      writeSeconds = (this.clock.now() - started) / MS_PER_SECOND;
    }
    if (rd.hardState && !this.knobs.freezeDurableTerm && rd.hardState.currentTerm > this.durableTerm) this.durableTerm = rd.hardState.currentTerm;
    if (!withApplies) this.observer.onPersisted?.(this.id, rd, sync, writeSeconds);
    if (rd.snapshot) {
      this.proposals.forgetThrough(rd.snapshot.metadata.index);
      this.onRestored(rd.snapshot.metadata.index);
    }
    // 3. Send, only now that what the messages promise is durable; each message exactly once.
    const rest = this.knobs.resendEarlyMessages ? [...early, ...late] : late;
    if (rest.length > 0) {
      this.transport.send(rest);
      this.observer.onSent?.(this.id, rest, false);
    }
    for (const m of snapshots) this.snapshotManager.send(m);
    // 4. Apply the committed entries, in order, behind every earlier apply (etcd applies apart from
    //    the raft loop too): the loop goes on to the next Ready meanwhile, unless this one changes
    //    the membership (which must take effect before the core moves on) or carries the hard
    //    state with it.
    if (committed.length > 0) {
      const job = this.applying.then(() => this.applyCommitted(committed, withApplies ? batch : undefined, rd, sync));
      this.applyInFlight++;
      this.applying = job.then(
        () => {
          this.applyInFlight--;
        },
        (err: unknown) => {
          this.applyInFlight--;
          this.fatal(err as Error);
        },
      );
      if (withApplies || committed.some((e) => e.type === 'config')) await this.applying;
    }
    for (const rs of rd.readStates) this.reads.complete(rs.context, rs.index, rs.ok);
  }

  /**
   * Applies committed entries to the state machine in one write (into `batch` when the Ready's
   * hard state rides along, else a batch of its own, unsynced: the entries are durable in the
   * log), then makes membership changes take effect, publishes the watch events, keeps the lease
   * deadlines, and answers the proposals and the reads waiting for these indexes.
   */
  private async applyCommitted(entries: readonly Entry[], batch: WriteBatch | undefined, rd: Ready, sync: boolean): Promise<void> {
    if (this.stopped) return;
    const started = this.clock.now();
    const b = batch ?? this.store.batch();
    const results = await this.sm.applyEntries(entries, b);
    const written = !b.empty;
    if (written) await b.write({ sync: batch !== undefined && sync });
    this.sm.commitApplied(b);
    const seconds = (this.clock.now() - started) / MS_PER_SECOND;
    if (batch) this.observer.onPersisted?.(this.id, rd, sync, written ? seconds : undefined);
    if (this.stopped) return;
    // Membership changes take effect in Raft and in the transport once applied (etcd's rule).
    for (const e of entries) {
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
    this.observer.onApplied?.(this.id, entries, seconds);
    // Leases follow the committed writes; watchers see the batch once it is durable.
    const events = this.sm.takeCommittedEvents();
    this.leasePolicy.onApplied(events);
    this.onEvents(events);
    // Answer clients.
    this.proposals.complete(entries, results);
    this.releaseApplyWaiters();
    this.schedule();
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
    this.ticker?.cancel();
    this.leaseTimer?.cancel();
    this.leasePolicy.stop();
    const err = new UnavailableError('node is stopping');
    this.proposals.rejectAll(err);
    this.reads.rejectAll(err);
    if (this.running) await new Promise<void>((resolve) => (this.idle = resolve));
    await this.applying;
  }
}
