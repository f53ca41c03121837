/**
 * The surface a driver uses to run the core (etcd-io/raft `rawnode.go`): feed it ticks,
 * messages and proposals; take a {@link Ready}; do what it says in the order it says; call
 * {@link RawNode.advance}. Every method is synchronous and performs no I/O.
 */
import { Raft, type RaftConfig, type ReadState, type SoftState } from './raft.js';
import { RaftInvariantError } from './errors.js';
import type { ConfChange, ConfState, Entry, HardState, LogIndex, Message, NodeId, Snapshot, SnapshotMetadata, Term } from './types.js';

/**
 * One batch of work for the driver. The contract, in this order:
 *
 * 1. Persist `hardState` (if set), `entries` and `snapshot` (if set) — atomically, synced to
 *    disk when `mustSync`. Nothing below may happen before this write is durable: votes and
 *    acknowledgements in `messages` promise that it is (§5.1, Figure 2 "respond to RPCs only
 *    after updating stable storage").
 * 2. Send `messages`.
 * 3. Apply `committedEntries` to the state machine in order (they are already durable), and
 *    restore it from `snapshot` if set; serve `readStates` once their index is applied.
 * 4. Call {@link RawNode.advance}. No other Ready is handed out before that.
 */
export interface Ready {
  /** Changed role or leader, for observation only (not persisted). */
  readonly softState?: SoftState;
  /** Changed hard state, to persist. */
  readonly hardState?: HardState;
  /** Entries to append to stable storage (a conflicting stored suffix is replaced). */
  readonly entries: readonly Entry[];
  /** A snapshot from the leader to persist and restore the state machine from. */
  readonly snapshot?: Snapshot;
  /** Durable, committed entries to apply, in log order. */
  readonly committedEntries: readonly Entry[];
  /** Messages to send, only after the writes above are durable. */
  readonly messages: readonly Message[];
  /** Reads confirmed by ReadIndex (or failed), serve once `index` is applied. */
  readonly readStates: readonly ReadState[];
  /** True when the write must be synced: the term, vote or log changed. */
  readonly mustSync: boolean;
}

/** A snapshot of the node's state, for status reports and tests. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly currentTerm: Term;
  readonly votedFor: NodeId;
  readonly commitIndex: LogIndex;
  readonly lastApplied: LogIndex;
  readonly lastIndex: LogIndex;
  readonly firstIndex: LogIndex;
  /** Index of the latest snapshot (0 when none). */
  readonly snapshotIndex: LogIndex;
  readonly leaderId: NodeId;
  readonly role: SoftState['role'];
  readonly leadTransferee: NodeId;
  /** On the leader: each member's matchIndex, nextIndex and flow state. */
  readonly progress: ReadonlyMap<NodeId, { matchIndex: LogIndex; nextIndex: LogIndex; state: string; isLearner: boolean }>;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.currentTerm === b.currentTerm && a.votedFor === b.votedFor && a.commitIndex === b.commitIndex;
}

/** Wraps {@link Raft} with the Ready/advance handshake. */
export class RawNode {
  readonly raft: Raft;
  private prevHardState: HardState;
  private prevSoftState: SoftState;
  private pending: Ready | undefined;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevHardState = config.hardState ?? this.raft.hardState();
    this.prevSoftState = this.raft.softState();
  }

  /** One unit of logical time. */
  tick(): void {
    this.raft.tick();
  }

  /** Feeds a message from a peer. Never throws on bad peer input. */
  step(m: Message): void {
    this.raft.step(m);
  }

  /** Starts an election now (tests and operator tooling). */
  campaign(): void {
    this.raft.hup();
  }

  /**
   * Proposes commands; see {@link Raft.propose}. Throws `ProposalDroppedError` when not leader.
   */
  propose(datas: readonly Uint8Array[]): { firstIndex: LogIndex; lastIndex: LogIndex; term: Term } {
    return this.raft.propose(datas);
  }

  /**
   * Proposes a membership change encoded as `data`; `change` (what it does) lets the core keep a
   * leader that removes itself from appending after it. See {@link Raft.proposeConfChange}.
   */
  proposeConfChange(data: Uint8Array, change?: ConfChange): { index: LogIndex; term: Term } {
    return this.raft.proposeConfChange(data, change);
  }

  /** Applies a committed membership change; see {@link Raft.applyConfChange}. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /** Requests a linearizable read; see {@link Raft.readIndex}. */
  readIndex(context: Uint8Array): void {
    this.raft.readIndex(context);
  }

  /** Starts a leadership transfer; see {@link Raft.transferLeadership}. */
  transferLeadership(target: NodeId): boolean {
    return this.raft.transferLeadership(target);
  }

  /**
   * The driver made a snapshot of the state machine as of `metadata.index` durable (§7): it
   * becomes what followers that need compacted entries receive. `metadata.index` must be applied.
   */
  setSnapshot(metadata: SnapshotMetadata): void {
    if (metadata.index > this.raft.raftLog.applied) {
      throw new RaftInvariantError(`snapshot at ${metadata.index} is beyond the applied index ${this.raft.raftLog.applied}`);
    }
    this.raft.raftLog.storage.setSnapshot({ metadata, data: new Uint8Array(0) });
  }

  /**
   * Discards log entries up to and including `index` (§7 log compaction); the latest snapshot
   * must cover them. Returns the term of the entry at `index`, for the driver to persist as the
   * compaction point. Throws `RaftInvariantError` when `index` is beyond the snapshot.
   */
  compact(index: LogIndex): Term {
    return this.raft.raftLog.storage.compact(index);
  }

  /**
   * The driver's report on a snapshot it streamed to `to`: on failure the leader goes back to
   * probing and retries later (etcd `ReportSnapshot`); on success it waits for the follower's
   * acknowledgement of the installed index.
   */
  reportSnapshot(to: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(to, ok);
  }

  /** True when {@link ready} has something to hand out (and no Ready is outstanding). */
  hasReady(): boolean {
    if (this.pending) return false;
    const r = this.raft;
    if (r.msgs.length > 0 || r.readStates.length > 0) return true;
    if (r.raftLog.unstable.entries.length > 0 || r.raftLog.unstable.snapshot) return true;
    if (r.raftLog.hasNextCommittedEntries()) return true;
    if (!sameHardState(r.hardState(), this.prevHardState)) return true;
    const ss = r.softState();
    return ss.leaderId !== this.prevSoftState.leaderId || ss.role !== this.prevSoftState.role;
  }

  /**
   * Takes the next batch of work. Throws {@link RaftInvariantError} when the previous Ready was
   * not yet advanced.
   */
  ready(): Ready {
    if (this.pending) throw new RaftInvariantError('ready() called before advance() of the previous Ready');
    const r = this.raft;
    const hs = r.hardState();
    const ss = r.softState();
    const entries = r.raftLog.unstableEntries();
    const snapshot = r.raftLog.unstable.snapshot;
    const hardChanged = !sameHardState(hs, this.prevHardState);
    const rd: Ready = {
      ...(ss.leaderId !== this.prevSoftState.leaderId || ss.role !== this.prevSoftState.role ? { softState: ss } : {}),
      ...(hardChanged ? { hardState: hs } : {}),
      entries,
      ...(snapshot ? { snapshot } : {}),
      committedEntries: r.raftLog.nextCommittedEntries(),
      messages: r.msgs,
      readStates: r.readStates,
      mustSync:
        entries.length > 0 ||
        snapshot !== undefined ||
        hs.currentTerm !== this.prevHardState.currentTerm ||
        hs.votedFor !== this.prevHardState.votedFor,
    };
    r.msgs = [];
    r.readStates = [];
    this.prevSoftState = ss;
    this.pending = rd;
    return rd;
  }

  /**
   * The driver finished the Ready handed out last: its writes are durable, its messages sent,
   * its committed entries applied. Moves the log cursors accordingly.
   */
  advance(): void {
    const rd = this.pending;
    if (!rd) throw new RaftInvariantError('advance() without an outstanding Ready');
    this.pending = undefined;
    const log = this.raft.raftLog;
    if (rd.hardState) this.prevHardState = rd.hardState;
    if (rd.snapshot) log.stableSnapTo(rd.snapshot.metadata.index);
    const last = rd.entries[rd.entries.length - 1];
    if (last) log.stableTo(last.index, last.term);
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied) log.appliedTo(lastApplied.index);
    if (last || rd.snapshot) this.raft.onStable(log.stableLastIndex());
  }

  /** The node's current state. */
  status(): RaftStatus {
    const r = this.raft;
    const progress = new Map<NodeId, { matchIndex: LogIndex; nextIndex: LogIndex; state: string; isLearner: boolean }>();
    if (r.role === 'leader') {
      for (const [id, pr] of r.prs) progress.set(id, { matchIndex: pr.matchIndex, nextIndex: pr.nextIndex, state: pr.state, isLearner: pr.isLearner });
    }
    return {
      id: r.id,
      currentTerm: r.currentTerm,
      votedFor: r.votedFor,
      commitIndex: r.raftLog.committed,
      lastApplied: r.raftLog.applied,
      lastIndex: r.raftLog.lastIndex(),
      firstIndex: r.raftLog.firstIndex(),
      snapshotIndex: r.raftLog.snapshot().metadata.index,
      leaderId: r.leaderId,
      role: r.role,
      leadTransferee: r.leadTransferee,
      progress,
    };
  }
}
