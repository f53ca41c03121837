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
  RawNode,
  logIndex,
  seededRandom,
  type Entry,
  type LogIndex,
  type Message,
  type NodeId,
  type RaftStatus,
  type Ready,
  type Term,
} from '../raft/index.js';
import type { NodeStore } from '../storage/types.js';
import type { RegistryStateMachine } from '../registry/state-machine.js';
import type { CommandResult } from '../registry/types.js';
import type { Transport } from '../transport/types.js';

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
  readonly voters: readonly NodeId[];
  readonly store: NodeStore;
  readonly stateMachine: RegistryStateMachine;
  readonly transport: Transport;
  readonly logger: Logger;
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
  private readonly transport: Transport;
  private readonly log: Logger;
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
    this.log = opts.logger;
    this.tickMs = opts.tickMs ?? DEFAULT_TICK_MS;
    this.onFatal = opts.onFatal ?? (() => undefined);
  }

  /**
   * Loads the persisted log and hard state, builds the core and starts ticking. Throws
   * `CorruptionError` when stored data fails its checksum.
   */
  static async start(opts: RaftNodeOptions): Promise<RaftNode> {
    const { store, stateMachine } = opts;
    const hardState = await store.stable.hardState();
    const storage = new MemoryStorage();
    const first = store.log.firstIndex();
    const last = store.log.lastIndex();
    if (last >= first) storage.append(await store.log.entries(first, logIndex(last + 1)));
    const seed = randomBytes(4).readUInt32BE(0);
    const rawNode = new RawNode({
      id: opts.id,
      voters: opts.voters,
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
    opts.transport.onMessage((m) => node.onMessage(m));
    node.ticker = setInterval(() => node.onTick(), node.tickMs);
    opts.logger.info({ term: hardState?.currentTerm ?? 0, lastIndex: last, applied: stateMachine.appliedIndex }, 'raft node started');
    node.schedule();
    return node;
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
    if (proposable || this.readQueue.length > 0 || this.rawNode.hasReady()) this.schedule();
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.snapshot) throw new Error('InstallSnapshot is not supported by this version');
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
    for (const m of rd.messages) (sendableBeforePersist(m, this.durableTerm) ? early : late).push(m);
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
