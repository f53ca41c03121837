/**
 * The Raft consensus algorithm (Ongaro & Ousterhout 2014; Ongaro's thesis 2014) as a pure,
 * deterministic state machine, after etcd-io/raft `raft.go`.
 *
 * Inputs: {@link Raft.tick} (one unit of logical time), {@link Raft.step} (a message from a
 * peer), {@link Raft.propose}, {@link Raft.readIndex}, {@link Raft.transferLeadership}.
 * Outputs accumulate in `msgs` and `readStates` and in the log; {@link RawNode} packages them
 * as a `Ready`. The core never performs I/O, never reads a clock and draws randomness only
 * from the injected generator.
 *
 * Features: leader election with randomized timeouts (§5.2), PreVote (thesis §9.6),
 * CheckQuorum and vote leases against disruptive servers (thesis §4.2.3, §6.2), log
 * replication with the consistency check and fast back-off (§5.3), the Figure 8 commit rule
 * (§5.4.2), ReadIndex (thesis §6.4), leadership transfer (thesis §3.10), InstallSnapshot (§7).
 */
import { CompactedError, ProposalDroppedError, RaftInvariantError } from './errors.js';
import { Progress } from './progress.js';
import { committedIndex, voteResult, type VoteResult } from './quorum.js';
import { ReadOnly } from './read-only.js';
import { RaftLog, entrySizeBytes } from './log.js';
import type { MemoryStorage } from './memory-storage.js';
import {
  NO_NODE,
  assertNever,
  logIndex,
  term as asTerm,
  isAcceptableTerm,
  type AppendEntries,
  type AppendEntriesResponse,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Heartbeat,
  type HeartbeatResponse,
  type InstallSnapshot,
  type LogIndex,
  type Message,
  type NodeId,
  type ReadIndexRequest,
  type ReadIndexResponse,
  type RequestVote,
  type RequestVoteResponse,
  type Role,
  type Term,
} from './types.js';

/** Default election timeout, in ticks; randomized in `[ELECTION_TICKS, 2*ELECTION_TICKS)`. */
export const DEFAULT_ELECTION_TICKS = 10;
/** Default heartbeat interval, in ticks. */
export const DEFAULT_HEARTBEAT_TICKS = 1;
/** Default cap on one AppendEntries payload, in bytes (at least one entry is always sent). */
export const DEFAULT_MAX_SIZE_PER_MSG_BYTES = 1024 * 1024;
/** Default cap on unacknowledged AppendEntries per follower in `replicate` state, in messages. */
export const DEFAULT_MAX_INFLIGHT_MSGS = 256;

/**
 * Deliberate bugs, for proving that tests catch them. Never set outside tests: each one breaks
 * a safety property of the paper.
 */
export interface RaftTestingKnobs {
  /** Breaks §5.4.2: commit by counting replicas of entries from earlier terms (Figure 8). */
  readonly commitPriorTermEntries?: boolean;
  /** Breaks §5.4.1: grant votes without the up-to-date check. */
  readonly skipUpToDateCheck?: boolean;
  /** Campaigns on TimeoutNow even with committed configuration changes not yet applied. */
  readonly timeoutNowIgnoresPendingConf?: boolean;
  /** Leaves a caught-up follower in probe (one AppendEntries per round trip) instead of replicate. */
  readonly stayInProbe?: boolean;
  /** Treats any error while reading entries to send as "compacted" and sends a snapshot. */
  readonly snapshotOnAnyLogError?: boolean;
  /** Lets a leader append proposals after the entry that removes it. */
  readonly leaderProposesWhileRemovingItself?: boolean;
}

/** How a node is configured. Times are in ticks; the driver decides how long a tick is. */
export interface RaftConfig {
  readonly id: NodeId;
  /** The configuration to start with when storage holds none (a new cluster). */
  readonly voters: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  /**
   * The configuration as of the `applied` index, when the driver knows it (it keeps the
   * membership in its state machine). Takes precedence over the snapshot's and `voters`.
   */
  readonly confState?: ConfState;
  /** What is already durable: snapshot and stable entries. */
  readonly storage: MemoryStorage;
  /** The persisted hard state, if any. */
  readonly hardState?: HardState;
  /** The state machine's durable applied index: entries up to it are not handed out again. */
  readonly applied?: LogIndex;
  /** Minimum election timeout in ticks (default {@link DEFAULT_ELECTION_TICKS}). */
  readonly electionTicks?: number;
  /** Heartbeat interval in ticks (default {@link DEFAULT_HEARTBEAT_TICKS}); must be < electionTicks. */
  readonly heartbeatTicks?: number;
  /** A seeded generator of floats in [0, 1): the only source of randomness. */
  readonly random: () => number;
  /** PreVote (thesis §9.6), default on. */
  readonly preVote?: boolean;
  /** CheckQuorum (thesis §6.2), default on. */
  readonly checkQuorum?: boolean;
  readonly maxSizePerMsgBytes?: number;
  readonly maxInflightMsgs?: number;
  readonly testingKnobs?: RaftTestingKnobs;
}

/** A read released by ReadIndex: serve it once `index` is applied (`ok`), or fail it. */
export interface ReadState {
  readonly index: LogIndex;
  readonly context: Uint8Array;
  /** False when the read could not be confirmed (no leader, leadership lost): retry elsewhere. */
  readonly ok: boolean;
}

/** Volatile state the driver may want to observe (not persisted). */
export interface SoftState {
  readonly leaderId: NodeId;
  readonly role: Role;
}

type CampaignKind = 'preElection' | 'election' | 'transfer';

/** The Raft state machine of one node. */
export class Raft {
  readonly id: NodeId;
  /** Latest term this node has seen (Figure 2, persistent). */
  currentTerm: Term = asTerm(0);
  /** Candidate that received this node's vote in `currentTerm` (Figure 2, persistent). */
  votedFor: NodeId = NO_NODE;
  role: Role = 'follower';
  leaderId: NodeId = NO_NODE;
  readonly raftLog: RaftLog;

  /** Messages to send once the current Ready is persisted. */
  msgs: Message[] = [];
  /** Reads released since the last Ready. */
  readStates: ReadState[] = [];

  /** Per-peer progress (meaningful on the leader), including self. Keys: the configuration. */
  readonly prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();

  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private randomizedElectionTicks = 0;
  /** Ticks since the last heartbeat from a valid leader (follower) or the last check (leader). */
  private electionElapsed = 0;
  private heartbeatElapsed = 0;

  private readonly random: () => number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly maxSizePerMsgBytes: number;
  private readonly maxInflightMsgs: number;
  private readonly knobs: RaftTestingKnobs;

  /** Target of an ongoing leadership transfer, or NO_NODE. */
  leadTransferee: NodeId = NO_NODE;
  /**
   * Index of the newest configuration entry this leader proposed (or its last index when it
   * took office): no new change is accepted until it is applied — one change at a time.
   */
  pendingConfIndex: LogIndex = logIndex(0);
  /** This leader proposed its own removal: it takes no more proposals (see proposeConfChange). */
  private removingSelf = false;
  private readonly readOnly = new ReadOnly();
  /** Reads that arrived before the leader committed an entry of its term (thesis §6.4 step 1). */
  private pendingReadIndex: { context: Uint8Array; from: NodeId }[] = [];

  constructor(config: RaftConfig) {
    this.id = config.id;
    this.electionTicks = config.electionTicks ?? DEFAULT_ELECTION_TICKS;
    this.heartbeatTicks = config.heartbeatTicks ?? DEFAULT_HEARTBEAT_TICKS;
    if (!(this.heartbeatTicks >= 1 && this.electionTicks > this.heartbeatTicks)) {
      throw new RangeError(`need 1 <= heartbeatTicks (${this.heartbeatTicks}) < electionTicks (${this.electionTicks})`);
    }
    this.random = config.random;
    this.preVote = config.preVote ?? true;
    this.checkQuorum = config.checkQuorum ?? true;
    this.maxSizePerMsgBytes = config.maxSizePerMsgBytes ?? DEFAULT_MAX_SIZE_PER_MSG_BYTES;
    this.maxInflightMsgs = config.maxInflightMsgs ?? DEFAULT_MAX_INFLIGHT_MSGS;
    this.knobs = config.testingKnobs ?? {};
    this.raftLog = new RaftLog(config.storage, config.applied ?? logIndex(0));

    const snapConf = config.storage.snapshot().metadata.confState;
    const conf: ConfState =
      config.confState ?? (snapConf.voters.length > 0 ? snapConf : { voters: config.voters, learners: config.learners ?? [] });
    this.applyConfState(conf);

    const hs = config.hardState;
    if (hs) this.loadState(hs);
    this.becomeFollower(this.currentTerm, NO_NODE);
  }

  // ---------------------------------------------------------------------------------------
  // Configuration

  /** Voters of the current configuration. */
  voters(): Set<NodeId> {
    const out = new Set<NodeId>();
    for (const [id, pr] of this.prs) if (!pr.isLearner) out.add(id);
    return out;
  }

  /** The current configuration. */
  confState(): ConfState {
    const voters: NodeId[] = [];
    const learners: NodeId[] = [];
    for (const [id, pr] of this.prs) (pr.isLearner ? learners : voters).push(id);
    return { voters: voters.sort(), learners: learners.sort() };
  }

  private applyConfState(conf: ConfState): void {
    this.prs.clear();
    const next = logIndex(this.raftLog.lastIndex() + 1);
    for (const id of conf.voters) this.prs.set(id, new Progress(next, this.maxInflightMsgs, false));
    for (const id of conf.learners) this.prs.set(id, new Progress(next, this.maxInflightMsgs, true));
  }

  /** A node may campaign only if it is a voter of the configuration (thesis §4.2.1). */
  promotable(): boolean {
    const pr = this.prs.get(this.id);
    return pr !== undefined && !pr.isLearner;
  }

  private loadState(hs: HardState): void {
    if (hs.commitIndex < this.raftLog.committed || hs.commitIndex > this.raftLog.lastIndex()) {
      throw new RaftInvariantError(
        `${this.id}: persisted commitIndex ${hs.commitIndex} out of range [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`,
      );
    }
    this.raftLog.committed = hs.commitIndex;
    if (this.raftLog.applied > hs.commitIndex) {
      throw new RaftInvariantError(`${this.id}: applied ${this.raftLog.applied} is beyond persisted commitIndex ${hs.commitIndex}`);
    }
    this.currentTerm = hs.currentTerm;
    this.votedFor = hs.votedFor;
  }

  /** The state to persist (Figure 2 persistent state, plus `commitIndex`). */
  hardState(): HardState {
    return { currentTerm: this.currentTerm, votedFor: this.votedFor, commitIndex: this.raftLog.committed };
  }

  /** The volatile state worth reporting. */
  softState(): SoftState {
    return { leaderId: this.leaderId, role: this.role };
  }

  // ---------------------------------------------------------------------------------------
  // Role changes: the only places `role` changes (DESIGN convention 4).

  private reset(t: Term): void {
    if (this.currentTerm !== t) {
      this.currentTerm = t;
      this.votedFor = NO_NODE;
    }
    this.leaderId = NO_NODE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.removingSelf = false;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.votes = new Map();
    const next = logIndex(this.raftLog.lastIndex() + 1);
    for (const [id, pr] of this.prs) {
      const fresh = new Progress(next, this.maxInflightMsgs, pr.isLearner);
      if (id === this.id) fresh.matchIndex = this.raftLog.stableLastIndex();
      this.prs.set(id, fresh);
    }
    for (const rs of this.readOnly.reset()) this.failRead(rs.context, rs.from);
    for (const r of this.pendingReadIndex) this.failRead(r.context, r.from);
    this.pendingReadIndex = [];
  }

  private resetRandomizedElectionTimeout(): void {
    // §5.2: randomized in [electionTicks, 2 * electionTicks).
    const r = this.random();
    this.randomizedElectionTicks = this.electionTicks + Math.floor(Math.min(Math.max(r, 0), 0.999999) * this.electionTicks);
  }

  /** Becomes a follower in term `t` of leader `lead` (or of no known leader). */
  becomeFollower(t: Term, lead: NodeId): void {
    this.reset(t);
    this.leaderId = lead;
    this.role = 'follower';
  }

  /** Thesis §9.6: ask for pre-votes without raising the term. */
  private becomePreCandidate(): void {
    if (this.role === 'leader') throw new RaftInvariantError('leader cannot become pre-candidate');
    this.votes = new Map();
    this.leaderId = NO_NODE;
    this.role = 'preCandidate';
  }

  /** §5.2: increment the term and vote for self. */
  private becomeCandidate(): void {
    if (this.role === 'leader') throw new RaftInvariantError('leader cannot become candidate');
    this.reset(asTerm(this.currentTerm + 1));
    this.votedFor = this.id;
    this.role = 'candidate';
  }

  /** §5.2 / §5.4.2: becomes leader and appends a no-op of its term so earlier entries commit. */
  private becomeLeader(): void {
    if (this.role === 'follower') throw new RaftInvariantError('follower cannot become leader directly');
    this.reset(this.currentTerm);
    this.leaderId = this.id;
    this.role = 'leader';
    // Peers start in probe; self is in replicate (its matchIndex follows durable appends).
    this.prs.get(this.id)?.becomeReplicate();
    // Any configuration entry in the log before our term must be applied before a new change.
    this.pendingConfIndex = this.raftLog.lastIndex();
    this.appendEntries([{ type: 'normal', data: new Uint8Array(0) }]);
  }

  // ---------------------------------------------------------------------------------------
  // Time

  /** Advances logical time by one tick (convention 3: timeouts become local steps). */
  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTicks) {
      this.electionElapsed = 0;
      this.hup();
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.checkQuorumActive();
      // Thesis §3.10: a transfer that did not finish within an election timeout is aborted; a
      // removed leader tries again (possibly with another voter) until someone takes over.
      if (this.role === 'leader' && this.leadTransferee !== NO_NODE) {
        this.abortLeaderTransfer();
        if (!this.prs.has(this.id)) this.handOffAfterRemoval();
      }
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  /** Starts an election now (local `Hup`): a pre-election first when PreVote is on. */
  hup(): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) return;
    // A node whose committed configuration changes are not applied yet would campaign with a
    // stale configuration (etcd does the same check).
    if (this.hasUnappliedConfChanges()) return;
    this.campaign(this.preVote ? 'preElection' : 'election');
  }

  private hasUnappliedConfChanges(): boolean {
    const log = this.raftLog;
    if (log.applied >= log.committed) return false;
    const hi = Math.min(log.committed, log.lastIndex());
    for (let i = log.applied + 1; i <= hi; i++) {
      const ents = log.slice(logIndex(i), logIndex(i + 1));
      if (ents[0]?.type === 'config') return true;
    }
    return false;
  }

  /** Thesis §6.2 CheckQuorum: a leader that has not heard from a majority steps down. */
  private checkQuorumActive(): void {
    const voters = this.voters();
    const active = new Map<NodeId, boolean>();
    for (const id of voters) {
      const pr = this.prs.get(id);
      active.set(id, id === this.id || (pr?.recentActive ?? false));
    }
    for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
    if (voteResult(voters, active) !== 'won') this.becomeFollower(this.currentTerm, NO_NODE);
  }

  // ---------------------------------------------------------------------------------------
  // Elections

  private campaign(kind: CampaignKind): void {
    let voteTerm: Term;
    if (kind === 'preElection') {
      this.becomePreCandidate();
      voteTerm = asTerm(this.currentTerm + 1);
    } else {
      this.becomeCandidate();
      voteTerm = this.currentTerm;
    }
    const preVote = kind === 'preElection';
    // Vote for self (a real vote was recorded in votedFor by becomeCandidate).
    if (this.poll(this.id, true) === 'won') {
      if (preVote) this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const lastLogIndex = this.raftLog.lastIndex();
    const lastLogTerm = this.raftLog.lastTerm();
    for (const id of this.voters()) {
      if (id === this.id) continue;
      const m: RequestVote = {
        type: 'RequestVote',
        from: this.id,
        to: id,
        term: voteTerm,
        lastLogIndex,
        lastLogTerm,
        preVote,
        transfer: kind === 'transfer',
      };
      this.msgs.push(m);
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    return voteResult(this.voters(), this.votes);
  }

  // ---------------------------------------------------------------------------------------
  // The entry point for peer messages

  /**
   * Handles one message from a peer. Settles the term first (§5.1: a higher term makes us a
   * follower; a lower one is stale), then hands the message to the role's step function.
   * Never throws on bad peer input: stale or unexpected messages are dropped or rejected.
   */
  step(m: Message): void {
    if (m.to !== this.id) return;
    // A term this node could never go past (forged or corrupt) is dropped, not adopted: adopting
    // it would leave no term for the next election (see MAX_WIRE_TERM).
    if (!isAcceptableTerm(m.term, this.currentTerm)) return;
    if (m.term > this.currentTerm) {
      if (m.type === 'RequestVote') {
        // Thesis §4.2.3: while a leader is known and was heard from within the minimum election
        // timeout, ignore vote requests (unless the leader itself asked for the transfer).
        const inLease = this.checkQuorum && this.leaderId !== NO_NODE && this.electionElapsed < this.electionTicks;
        if (!m.transfer && inLease) return;
      }
      if (m.type === 'RequestVote' && m.preVote) {
        // A pre-vote never changes our term (thesis §9.6).
      } else if (m.type === 'RequestVoteResponse' && m.preVote && m.voteGranted) {
        // A granted pre-vote carries the future term we asked about; our term rises only once
        // the pre-election is won. A rejection carries the voter's real term and is handled below.
      } else if (m.type === 'AppendEntries' || m.type === 'Heartbeat' || m.type === 'InstallSnapshot') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NO_NODE);
      }
    } else if (m.term < this.currentTerm) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'AppendEntries' || m.type === 'Heartbeat')) {
        // A stale leader (e.g. one that was partitioned away) learns our term and steps down;
        // without this a node that raised its term could never rejoin under PreVote/CheckQuorum.
        this.send({ type: 'AppendEntriesResponse', to: m.from, success: false, matchIndex: logIndex(0), conflictIndex: logIndex(0), conflictTerm: asTerm(0) });
      } else if (m.type === 'RequestVote' && m.preVote) {
        // Reject with our term so the pre-candidate learns it is behind.
        this.msgs.push({ type: 'RequestVoteResponse', from: this.id, to: m.from, term: this.currentTerm, voteGranted: false, preVote: true });
      }
      return;
    }

    if (m.type === 'RequestVote') {
      this.handleRequestVote(m);
      return;
    }

    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'preCandidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
      default:
        assertNever(this.role);
    }
  }

  /** Figure 2 RequestVote receiver, §5.2 one vote per term, §5.4.1 election restriction. */
  private handleRequestVote(m: RequestVote): void {
    const canVote =
      this.votedFor === m.from ||
      (this.votedFor === NO_NODE && this.leaderId === NO_NODE) ||
      (m.preVote && m.term > this.currentTerm);
    const upToDate = this.knobs.skipUpToDateCheck === true || this.raftLog.isUpToDate(m.lastLogIndex, m.lastLogTerm);
    if (canVote && upToDate) {
      // A granted pre-vote answers with the term it was asked about (thesis §9.6).
      this.msgs.push({ type: 'RequestVoteResponse', from: this.id, to: m.from, term: m.term, voteGranted: true, preVote: m.preVote });
      if (!m.preVote) {
        this.electionElapsed = 0;
        this.votedFor = m.from;
      }
    } else {
      this.msgs.push({ type: 'RequestVoteResponse', from: this.id, to: m.from, term: this.currentTerm, voteGranted: false, preVote: m.preVote });
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'AppendEntriesResponse':
        this.handleAppendEntriesResponse(m);
        return;
      case 'HeartbeatResponse':
        this.handleHeartbeatResponse(m);
        return;
      case 'ReadIndex':
        this.handleReadIndexRequest(m.context, m.from);
        return;
      case 'RequestVoteResponse':
      case 'TimeoutNow':
      case 'ReadIndexResponse':
        return;
      case 'AppendEntries':
      case 'Heartbeat':
      case 'InstallSnapshot':
        // Two leaders in one term would break Election Safety (§5.2); never expected.
        return;
      case 'RequestVote':
        return;
      default:
        assertNever(m);
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'AppendEntries':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case 'Heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'InstallSnapshot':
        this.becomeFollower(m.term, m.from);
        this.handleInstallSnapshot(m);
        return;
      case 'RequestVoteResponse': {
        if (m.preVote !== (this.role === 'preCandidate')) return;
        const result = this.poll(m.from, m.voteGranted);
        if (result === 'won') {
          if (this.role === 'preCandidate') this.campaign('election');
          else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === 'lost') {
          this.becomeFollower(this.currentTerm, NO_NODE);
        }
        return;
      }
      case 'ReadIndex':
        this.send({ type: 'ReadIndexResponse', to: m.from, context: m.context, index: logIndex(0), success: false });
        return;
      case 'AppendEntriesResponse':
      case 'HeartbeatResponse':
      case 'TimeoutNow':
      case 'ReadIndexResponse':
      case 'RequestVote':
        return;
      default:
        assertNever(m);
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'AppendEntries':
        this.electionElapsed = 0;
        this.leaderId = m.from;
        this.handleAppendEntries(m);
        return;
      case 'Heartbeat':
        this.electionElapsed = 0;
        this.leaderId = m.from;
        this.handleHeartbeat(m);
        return;
      case 'InstallSnapshot':
        this.electionElapsed = 0;
        this.leaderId = m.from;
        this.handleInstallSnapshot(m);
        return;
      case 'TimeoutNow':
        // Thesis §3.10: start an election at once, skipping PreVote and the vote lease; like a
        // timeout's Hup, not with committed configuration changes unapplied (etcd's hup check):
        // it would campaign under a configuration that is no longer the cluster's.
        if (!this.promotable()) return;
        if (this.hasUnappliedConfChanges() && this.knobs.timeoutNowIgnoresPendingConf !== true) return;
        this.campaign('transfer');
        return;
      case 'ReadIndex':
        this.send({ type: 'ReadIndexResponse', to: m.from, context: m.context, index: logIndex(0), success: false });
        return;
      case 'ReadIndexResponse':
        this.readStates.push({ index: m.index, context: m.context, ok: m.success });
        return;
      case 'AppendEntriesResponse':
      case 'HeartbeatResponse':
      case 'RequestVoteResponse':
      case 'RequestVote':
        return;
      default:
        assertNever(m);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Follower side of replication

  /** Figure 2 AppendEntries receiver; rejections carry the fast back-off hint (§5.3). */
  private handleAppendEntries(m: AppendEntries): void {
    if (m.prevLogIndex < this.raftLog.committed) {
      // Everything up to commitIndex already matches the leader (Log Matching).
      this.send({ type: 'AppendEntriesResponse', to: m.from, success: true, matchIndex: this.raftLog.committed, conflictIndex: logIndex(0), conflictTerm: asTerm(0) });
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.prevLogIndex, m.prevLogTerm, m.leaderCommit, m.entries);
    if (lastNew !== undefined) {
      this.send({ type: 'AppendEntriesResponse', to: m.from, success: true, matchIndex: lastNew, conflictIndex: logIndex(0), conflictTerm: asTerm(0) });
      return;
    }
    const hintIndex = logIndex(Math.min(m.prevLogIndex, this.raftLog.lastIndex()));
    const hint = this.raftLog.findConflictByTerm(hintIndex, m.prevLogTerm);
    this.send({
      type: 'AppendEntriesResponse',
      to: m.from,
      success: false,
      matchIndex: m.prevLogIndex,
      conflictIndex: hint.index,
      conflictTerm: hint.term,
    });
  }

  private handleHeartbeat(m: Heartbeat): void {
    // The leader caps leaderCommit at what it knows we hold, so this never exceeds our log.
    if (m.leaderCommit <= this.raftLog.lastIndex()) this.raftLog.commitTo(m.leaderCommit);
    this.send({ type: 'HeartbeatResponse', to: m.from, context: m.context });
  }

  /** §7 InstallSnapshot receiver. */
  private handleInstallSnapshot(m: InstallSnapshot): void {
    const s = m.snapshot;
    if (this.restore(s)) {
      this.send({ type: 'AppendEntriesResponse', to: m.from, success: true, matchIndex: this.raftLog.lastIndex(), conflictIndex: logIndex(0), conflictTerm: asTerm(0) });
    } else {
      this.send({ type: 'AppendEntriesResponse', to: m.from, success: true, matchIndex: this.raftLog.committed, conflictIndex: logIndex(0), conflictTerm: asTerm(0) });
    }
  }

  /** Installs a snapshot unless it is older than what is committed; returns whether it did. */
  private restore(s: InstallSnapshot['snapshot']): boolean {
    const { index, term: t } = s.metadata;
    if (index <= this.raftLog.committed) return false;
    // Unlike etcd, a snapshot whose configuration lacks this node is installed: snapshots are
    // files made before they are sent, so a member added after the leader's last snapshot gets
    // one that predates its addition, and the entries after it add the member back. Refusing it
    // leaves that member unable ever to catch up (docs/divergence.md).
    if (this.raftLog.matchTerm(index, t)) {
      // Figure 13 step 6: our log already has the snapshot's last entry: keep the suffix.
      this.raftLog.commitTo(index);
      return false;
    }
    this.raftLog.restore(s);
    this.applyConfState(s.metadata.confState);
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // Leader side of replication

  private appendEntries(es: { type: Entry['type']; data: Uint8Array }[]): { firstIndex: LogIndex; lastIndex: LogIndex; term: Term } {
    const li = this.raftLog.lastIndex();
    const ents: Entry[] = es.map((e, i) => ({ type: e.type, data: e.data, term: this.currentTerm, index: logIndex(li + 1 + i) }));
    this.raftLog.append(ents);
    // The leader's own match advances only when the driver reports the append durable
    // (thesis §10.2.1: the leader may send before its own write completes).
    return { firstIndex: logIndex(li + 1), lastIndex: logIndex(li + ents.length), term: this.currentTerm };
  }

  /**
   * Appends `datas` as new entries of the current term and starts replicating them (§5.3).
   * Many proposals become one append and one round of AppendEntries. Returns the index range
   * and term the entries got, which identify them when they are later applied. Throws
   * {@link ProposalDroppedError} when this node is not the leader, is transferring leadership,
   * or has proposed its own removal.
   */
  propose(datas: readonly Uint8Array[]): { firstIndex: LogIndex; lastIndex: LogIndex; term: Term } {
    if (this.role !== 'leader') throw new ProposalDroppedError(`${this.id} is not the leader`, this.leaderId);
    if (this.removingSelf) throw new ProposalDroppedError(`${this.id} is removing itself from the configuration; retry at the next leader`, NO_NODE);
    if (this.leadTransferee !== NO_NODE) {
      throw new ProposalDroppedError(`${this.id} is transferring leadership to ${this.leadTransferee}`, this.leaderId);
    }
    const r = this.appendEntries(datas.map((data) => ({ type: 'normal', data })));
    this.bcastAppend();
    return r;
  }

  /**
   * The driver reports its log durable through `index` with term `t`. On the leader this counts
   * its own replica toward commitment (only now: persistence before counting).
   */
  onStable(index: LogIndex): void {
    if (this.role !== 'leader') return;
    const pr = this.prs.get(this.id);
    if (pr && pr.maybeUpdate(index) && this.maybeCommit()) this.bcastAppend();
  }

  private handleAppendEntriesResponse(m: AppendEntriesResponse): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (!m.success) {
      // §5.3 fast back-off: skip every entry the follower cannot match.
      let nextProbe = m.conflictIndex;
      if (m.conflictTerm > 0) nextProbe = this.raftLog.findConflictByTerm(m.conflictIndex, m.conflictTerm).index;
      if (pr.maybeDecrTo(m.matchIndex, nextProbe)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    const updated = pr.maybeUpdate(m.matchIndex);
    // A follower in probe that answers with exactly what we know it holds is caught up too: it
    // moves to replicate (etcd does the same), or it would get one message per round trip.
    const caughtUpProbe = !updated && pr.state === 'probe' && pr.matchIndex === m.matchIndex && this.knobs.stayInProbe !== true;
    if (!updated && !caughtUpProbe) {
      if (wasPaused && !pr.isPaused()) this.sendAppend(m.from);
      return;
    }
    switch (pr.state) {
      case 'probe':
        pr.becomeReplicate();
        break;
      case 'snapshot':
        if (pr.matchIndex >= pr.pendingSnapshot) pr.becomeProbe();
        break;
      case 'replicate':
        pr.inflights.freeLE(m.matchIndex);
        break;
    }
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else if (wasPaused) {
      this.sendAppend(m.from);
    }
    // Keep the pipeline full while the window allows.
    while (this.maybeSendAppend(m.from, false)) {
      /* send more */
    }
    if (m.from === this.leadTransferee && pr.matchIndex === this.raftLog.lastIndex()) this.sendTimeoutNow(m.from);
  }

  /** See `RawNode.reportSnapshot`. */
  reportSnapshot(to: NodeId, ok: boolean): void {
    const pr = this.prs.get(to);
    if (this.role !== 'leader' || !pr || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = logIndex(0);
    pr.becomeProbe();
    // Wait for the follower's answer (or the next heartbeat) before sending again.
    pr.probeSent = true;
  }

  private handleHeartbeatResponse(m: HeartbeatResponse): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    pr.probeSent = false;
    if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    // A follower in probe gets an append even when it seems caught up (etcd does the same): its
    // answer moves it to replicate, so new entries then stream to it instead of one per round trip.
    const probing = pr.state === 'probe' && this.knobs.stayInProbe !== true;
    if (pr.matchIndex < this.raftLog.lastIndex() || probing) this.sendAppend(m.from);

    if (m.context.byteLength === 0) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (!acks) return;
    const granted = new Map<NodeId, boolean>();
    for (const id of acks) granted.set(id, true);
    if (voteResult(this.voters(), granted) !== 'won') return;
    for (const rs of this.readOnly.advance(m.context)) this.releaseRead(rs.context, rs.index, rs.from);
  }

  /**
   * The leader's commit rule: the highest index a majority of voters has durably stored, if
   * that entry is of the current term (§5.4.2, Figure 8). Returns whether `commitIndex` moved.
   */
  private maybeCommit(): boolean {
    const voters = this.voters();
    const mci = committedIndex(voters, (id) => this.prs.get(id)?.matchIndex ?? logIndex(0));
    if (this.knobs.commitPriorTermEntries === true) {
      // Deliberately broken (tests only): commit whatever a majority holds, whatever its term.
      if (mci > this.raftLog.committed) {
        this.raftLog.commitTo(mci);
        this.releasePendingReadIndex();
        return true;
      }
      return false;
    }
    const moved = this.raftLog.maybeCommit(mci, this.currentTerm);
    if (moved) this.releasePendingReadIndex();
    return moved;
  }

  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevLogIndex = logIndex(pr.nextIndex - 1);
    const prevLogTerm = this.raftLog.term(prevLogIndex);
    let entries: Entry[] | undefined;
    if (prevLogTerm !== undefined) {
      try {
        entries = this.raftLog.entriesFrom(pr.nextIndex, this.maxSizePerMsgBytes);
      } catch (err) {
        // Only compaction means "send a snapshot"; anything else is a broken invariant.
        if (!(err instanceof CompactedError) && this.knobs.snapshotOnAnyLogError !== true) throw err;
        entries = undefined;
      }
    }
    if (prevLogTerm === undefined || entries === undefined) {
      // §7: the follower needs entries we compacted: send the snapshot instead.
      if (!pr.recentActive) return false;
      const snapshot = this.raftLog.snapshot();
      if (snapshot.metadata.index === 0) return false;
      pr.becomeSnapshot(snapshot.metadata.index);
      this.send({ type: 'InstallSnapshot', to, snapshot });
      return true;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({ type: 'AppendEntries', to, prevLogIndex, prevLogTerm, entries, leaderCommit: this.raftLog.committed });
    const last = entries[entries.length - 1];
    switch (pr.state) {
      case 'replicate':
        if (last) {
          pr.optimisticUpdate(last.index);
          pr.inflights.add(last.index);
        }
        break;
      case 'probe':
        pr.probeSent = true;
        break;
      case 'snapshot':
        throw new RaftInvariantError(`sent AppendEntries to ${to} while it installs a snapshot`);
    }
    return true;
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /** Sends AppendEntries (possibly empty, to carry the commit index) to every peer. */
  private bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private bcastHeartbeat(): void {
    const ctx = this.readOnly.lastPendingContext() ?? new Uint8Array(0);
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold.
      const leaderCommit = logIndex(Math.min(pr.matchIndex, this.raftLog.committed));
      const hb: Omit<Heartbeat, 'from' | 'term'> = { type: 'Heartbeat', to: id, leaderCommit, context: ctx };
      this.send(hb);
    }
  }

  private send(m: DistributiveOmit<Message, 'from' | 'term'> & { term?: Term }): void {
    this.msgs.push({ ...m, from: this.id, term: m.term ?? this.currentTerm } as Message);
  }

  // ---------------------------------------------------------------------------------------
  // Membership changes (thesis §4.1: one server at a time)

  /**
   * Proposes a membership change, encoded by the caller as `data` (a `config` entry). Refused
   * with {@link ProposalDroppedError} unless this node leads, no transfer is running, an entry
   * of the current term is committed (the fix to single-server changes: a new leader must commit
   * in its term before changing the configuration), and no earlier change is still unapplied
   * (one change at a time). `change` says what the entry does: a leader removing itself takes
   * no proposals after it. Returns the entry's index and term.
   */
  proposeConfChange(data: Uint8Array, change?: ConfChange): { index: LogIndex; term: Term } {
    if (this.role !== 'leader') throw new ProposalDroppedError(`${this.id} is not the leader`, this.leaderId);
    if (this.leadTransferee !== NO_NODE) throw new ProposalDroppedError('leadership transfer in progress', this.leaderId);
    if (this.raftLog.term(this.raftLog.committed) !== this.currentTerm) {
      throw new ProposalDroppedError('the leader has not committed an entry of its term yet; retry', this.leaderId);
    }
    if (this.pendingConfIndex > this.raftLog.applied) {
      throw new ProposalDroppedError(`a configuration change at ${this.pendingConfIndex} is not applied yet; one change at a time`, this.leaderId);
    }
    const r = this.appendEntries([{ type: 'config', data }]);
    this.pendingConfIndex = r.lastIndex;
    // A leader removing itself appends nothing after the removal: its log then ends where the
    // remaining voters' can, so if it fails before handing off, they can still elect one of
    // themselves (a longer log on the removed node would refuse them every vote).
    if (change?.type === 'removeNode' && change.nodeId === this.id && this.knobs.leaderProposesWhileRemovingItself !== true) this.removingSelf = true;
    this.bcastAppend();
    return { index: r.lastIndex, term: r.term };
  }

  /**
   * Applies a committed membership change (the driver calls it when it applies the `config`
   * entry). Returns the new configuration. A leader removed from the configuration steps down;
   * a changed quorum may commit more at once.
   */
  applyConfChange(cc: ConfChange): ConfState {
    const next = logIndex(this.raftLog.lastIndex() + 1);
    const pr = this.prs.get(cc.nodeId);
    switch (cc.type) {
      case 'addLearner':
        if (!pr) this.prs.set(cc.nodeId, new Progress(next, this.maxInflightMsgs, true));
        break;
      case 'addVoter':
        if (pr) pr.isLearner = false;
        else this.prs.set(cc.nodeId, new Progress(next, this.maxInflightMsgs, false));
        break;
      case 'removeNode':
        this.prs.delete(cc.nodeId);
        if (this.leadTransferee === cc.nodeId) this.abortLeaderTransfer();
        break;
      default:
        assertNever(cc.type);
    }
    if (this.role === 'leader') {
      if (!this.prs.has(this.id)) {
        // Removed leader (thesis §4.2.2): the change is committed, but the remaining voters may
        // not know it yet, and without this node they might never learn it (it may hold the
        // longest log, so none of them could win its vote). It hands leadership to the most
        // up-to-date remaining voter, which then commits and applies the change itself; until
        // then it takes no proposals. A transfer that stalls is retried (tickHeartbeat).
        this.handOffAfterRemoval();
      } else if (this.prs.get(this.id)?.isLearner !== true) {
        const added = this.prs.get(cc.nodeId);
        if (added && cc.type !== 'removeNode' && added.matchIndex === 0) added.recentActive = true;
        if (this.maybeCommit()) this.bcastAppend();
        else if (added && cc.type !== 'removeNode') this.sendAppend(cc.nodeId);
      }
    }
    return this.confState();
  }

  /** A removed leader picks the remaining voter with the highest matchIndex and transfers to it. */
  private handOffAfterRemoval(): void {
    let best: NodeId = NO_NODE;
    let bestMatch = -1;
    for (const [id, pr] of this.prs) {
      if (id === this.id || pr.isLearner) continue;
      if (pr.matchIndex > bestMatch) {
        best = id;
        bestMatch = pr.matchIndex;
      }
    }
    if (best === NO_NODE) {
      this.becomeFollower(this.currentTerm, NO_NODE);
      return;
    }
    this.abortLeaderTransfer();
    this.leadTransferee = best;
    this.electionElapsed = 0;
    const pr = this.prs.get(best) as Progress;
    if (pr.matchIndex === this.raftLog.lastIndex()) this.sendTimeoutNow(best);
    else this.sendAppend(best);
  }

  // ---------------------------------------------------------------------------------------
  // ReadIndex (thesis §6.4)

  /**
   * Requests a linearizable read identified by `context`. The answer arrives as a
   * {@link ReadState} in a later Ready: once `index` is applied, the read may be served.
   * A node without a known leader answers at once with `ok: false`.
   */
  readIndex(context: Uint8Array): void {
    if (this.role === 'leader') {
      this.handleReadIndexRequest(context, this.id);
    } else if (this.role === 'follower' && this.leaderId !== NO_NODE) {
      const m: Omit<ReadIndexRequest, 'from' | 'term'> = { type: 'ReadIndex', to: this.leaderId, context };
      this.send(m);
    } else {
      this.readStates.push({ index: logIndex(0), context, ok: false });
    }
  }

  private handleReadIndexRequest(context: Uint8Array, from: NodeId): void {
    // Thesis §6.4 step 1: the leader must have committed an entry of its own term.
    if (this.raftLog.term(this.raftLog.committed) !== this.currentTerm) {
      this.pendingReadIndex.push({ context, from });
      return;
    }
    this.startReadIndex(context, from);
  }

  private startReadIndex(context: Uint8Array, from: NodeId): void {
    const index = this.raftLog.committed;
    if (this.voters().size === 1) {
      this.releaseRead(context, index, from);
      return;
    }
    this.readOnly.addRequest(index, context, from);
    this.readOnly.recvAck(this.id, context);
    this.bcastHeartbeat();
  }

  /** Answers a confirmed read: locally as a ReadState, or to the follower that asked. */
  private releaseRead(context: Uint8Array, index: LogIndex, from: NodeId): void {
    if (from === this.id) {
      this.readStates.push({ index, context, ok: true });
    } else {
      const m: Omit<ReadIndexResponse, 'from' | 'term'> = { type: 'ReadIndexResponse', to: from, context, index, success: true };
      this.send(m);
    }
  }

  /** Fails a read that can no longer be confirmed (leadership lost): the caller retries. */
  private failRead(context: Uint8Array, from: NodeId): void {
    if (from === this.id) {
      this.readStates.push({ index: logIndex(0), context, ok: false });
    } else {
      const m: Omit<ReadIndexResponse, 'from' | 'term'> = { type: 'ReadIndexResponse', to: from, context, index: logIndex(0), success: false };
      this.send(m);
    }
  }

  private releasePendingReadIndex(): void {
    if (this.pendingReadIndex.length === 0) return;
    if (this.raftLog.term(this.raftLog.committed) !== this.currentTerm) return;
    const pending = this.pendingReadIndex;
    this.pendingReadIndex = [];
    for (const r of pending) this.startReadIndex(r.context, r.from);
  }

  // ---------------------------------------------------------------------------------------
  // Leadership transfer (thesis §3.10)

  /**
   * Hands leadership to `target`: new proposals are refused, the target is brought up to date,
   * then told to start an election at once (TimeoutNow). Returns false when not possible (not
   * leader, target unknown or a learner, or target is self).
   */
  transferLeadership(target: NodeId): boolean {
    if (this.role !== 'leader') return false;
    const pr = this.prs.get(target);
    if (target === this.id || !pr || pr.isLearner) return false;
    if (this.leadTransferee === target) return true;
    this.abortLeaderTransfer();
    this.electionElapsed = 0;
    this.leadTransferee = target;
    if (pr.matchIndex === this.raftLog.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target);
    return true;
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'TimeoutNow', to });
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = NO_NODE;
  }

  // ---------------------------------------------------------------------------------------
  // Snapshots produced by the driver

  /** The minimum election timeout, in ticks. */
  get electionTimeoutTicks(): number {
    return this.electionTicks;
  }

  /** Ticks until this follower would start an election (for tests and status). */
  get electionElapsedTicks(): number {
    return this.electionElapsed;
  }

  /** Message size estimate, in bytes, of an entry list (for the transport's batching). */
  static entriesSizeBytes(ents: readonly Entry[]): number {
    return ents.reduce((n, e) => n + entrySizeBytes(e), 0);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
