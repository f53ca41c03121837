/**
 * Types of the Raft core: branded numbers, log entries, hard state, snapshots and the messages
 * peers exchange. Names follow the Raft paper (Ongaro & Ousterhout, 2014) and Ongaro's thesis
 * (2014); the shapes follow etcd-io/raft's `raftpb`.
 *
 * Everything here is plain data: it crosses the wire (see `proto/raft/v1/raft.proto`) and the
 * disk (see `src/storage/`) unchanged.
 */

/** A Raft term (§5.1). Starts at 0; a node's `currentTerm` only grows. */
export type Term = number & { readonly __brand: 'Term' };
/** A position in the replicated log (§5.3). The first entry has index 1; 0 means "none". */
export type LogIndex = number & { readonly __brand: 'LogIndex' };
/** A node's stable identity in the cluster configuration, e.g. `"n1"`. */
export type NodeId = string & { readonly __brand: 'NodeId' };

/** Brands a number as a {@link Term}. No check: callers validate input at the boundary. */
export const term = (n: number): Term => n as Term;
/** Brands a number as a {@link LogIndex}. */
export const logIndex = (n: number): LogIndex => n as LogIndex;
/** Brands a string as a {@link NodeId}. */
export const nodeId = (s: string): NodeId => s as NodeId;

/**
 * Highest term a message from the wire may carry whatever this node's own term is: 2^48.
 * Elections happen at most every election timeout (a second by default), so no cluster reaches
 * it in a lifetime (2^48 elections at one per millisecond take 8,900 years); only a forged or
 * corrupt message can. Refusing such a message keeps a node's term far below
 * `Number.MAX_SAFE_INTEGER` (2^53 - 1), where `currentTerm + 1` would stop being exact and no
 * election could ever be held again.
 */
export const MAX_WIRE_TERM = 2 ** 48;
/**
 * How far above this node's own term a message's term may be once the term is already past
 * {@link MAX_WIRE_TERM} (2^16 elections). It lets a cluster whose terms were pushed near the
 * bound go on electing leaders (their terms pass the bound one at a time) while a forger can
 * move a node's term only this far per accepted message.
 */
export const MAX_TERM_LEAD = 2 ** 16;
/**
 * Highest log index a message from the wire may carry (entry indexes, commit, match, conflict,
 * snapshot indexes): 2^48 entries, 89 years of writes at 100,000 per second.
 */
export const MAX_WIRE_INDEX = 2 ** 48;

/**
 * Whether a node whose `currentTerm` is `current` may take a message of term `t` into account:
 * `t` is at most {@link MAX_WIRE_TERM}, or at most {@link MAX_TERM_LEAD} above `current`. A node
 * never adopts a term it could not go past; a message that fails this is dropped (the driver
 * logs its sender).
 */
export function isAcceptableTerm(t: number, current: Term): boolean {
  return t <= Math.max(MAX_WIRE_TERM, current + MAX_TERM_LEAD);
}

/** No node: used for `votedFor` before a vote and for an unknown leader. */
export const NO_NODE = '' as NodeId;

/**
 * What a log entry carries.
 * - `normal`: an opaque command for the state machine (`data` may be empty: the no-op a new
 *   leader appends to commit entries of earlier terms, §5.4.2 / thesis §6.4).
 * - `config`: a membership change; `data` is an encoded {@link ConfState}.
 */
export type EntryType = 'normal' | 'config';

/** One entry of the replicated log (§5.3). */
export interface Entry {
  readonly term: Term;
  readonly index: LogIndex;
  readonly type: EntryType;
  /** The command bytes, opaque to the core. */
  readonly data: Uint8Array;
}

/**
 * The state every node must persist before it answers any RPC (Figure 2, "Persistent state on
 * all servers"). `commitIndex` is persisted as well (as etcd does) so a restart re-applies only
 * what was not yet applied; it is never needed for safety.
 */
export interface HardState {
  readonly currentTerm: Term;
  /** The candidate this node voted for in `currentTerm`, or {@link NO_NODE}. */
  readonly votedFor: NodeId;
  readonly commitIndex: LogIndex;
}

/** The cluster configuration: who votes and who only learns (thesis §4.2.1). */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/**
 * One membership change (single-server changes, thesis §4.1), carried by a `config` entry and
 * applied by the driver, when the entry is applied, through `RawNode.applyConfChange`.
 * - `addLearner`: a non-voting member that receives the log (thesis §4.2.1).
 * - `addVoter`: a new voter, or the promotion of a learner.
 * - `removeNode`: the member leaves; a removed leader steps down.
 */
export interface ConfChange {
  readonly type: 'addLearner' | 'addVoter' | 'removeNode';
  readonly nodeId: NodeId;
}

/** What a snapshot covers: everything up to and including `index` (§7). */
export interface SnapshotMetadata {
  readonly index: LogIndex;
  readonly term: Term;
  readonly confState: ConfState;
}

/** A state machine snapshot: metadata plus the serialized state machine. */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

/** The empty snapshot: index 0, term 0. */
export const EMPTY_SNAPSHOT: Snapshot = {
  metadata: { index: logIndex(0), term: term(0), confState: { voters: [], learners: [] } },
  data: new Uint8Array(0),
};

/** Fields every peer message carries. */
interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's `currentTerm` (§5.1: every RPC carries the term). */
  readonly term: Term;
}

/** AppendEntries RPC (Figure 2), sent by the leader to replicate entries. */
export interface AppendEntries extends MessageBase {
  readonly type: 'AppendEntries';
  readonly prevLogIndex: LogIndex;
  readonly prevLogTerm: Term;
  readonly entries: readonly Entry[];
  readonly leaderCommit: LogIndex;
}

/**
 * Reply to AppendEntries. On success `matchIndex` is the last index now known to match the
 * leader's log. On rejection (§5.3 consistency check failed) the follower returns a hint for
 * fast back-off (§5.3, "the follower can include the term of the conflicting entry"): the
 * leader may resume at `conflictIndex`, or skip the whole `conflictTerm`.
 */
export interface AppendEntriesResponse extends MessageBase {
  readonly type: 'AppendEntriesResponse';
  readonly success: boolean;
  /** Success: the highest index matching the leader. Rejection: the `prevLogIndex` rejected. */
  readonly matchIndex: LogIndex;
  /** Rejection: the follower's last index, or the first index of `conflictTerm`. */
  readonly conflictIndex: LogIndex;
  /** Rejection: the term of the follower's entry at `prevLogIndex`, or 0 if it has none. */
  readonly conflictTerm: Term;
}

/**
 * RequestVote RPC (Figure 2), or a PreVote (thesis §9.6) when `preVote` is set: a pre-vote
 * carries the term the candidate would use (`currentTerm + 1`) without having adopted it.
 */
export interface RequestVote extends MessageBase {
  readonly type: 'RequestVote';
  readonly lastLogIndex: LogIndex;
  readonly lastLogTerm: Term;
  readonly preVote: boolean;
  /** Set when the election follows a TimeoutNow (thesis §3.10): peers ignore their lease. */
  readonly transfer: boolean;
}

/** Reply to RequestVote or PreVote. */
export interface RequestVoteResponse extends MessageBase {
  readonly type: 'RequestVoteResponse';
  readonly voteGranted: boolean;
  readonly preVote: boolean;
}

/**
 * Leader heartbeat (an AppendEntries without entries in the paper, §5.2; a separate message in
 * etcd so that it never needs a log lookup). `leaderCommit` is capped at the follower's known
 * match, and `context` carries a ReadIndex round's id (thesis §6.4).
 */
export interface Heartbeat extends MessageBase {
  readonly type: 'Heartbeat';
  readonly leaderCommit: LogIndex;
  readonly context: Uint8Array;
}

/** Reply to a Heartbeat, echoing its `context`. */
export interface HeartbeatResponse extends MessageBase {
  readonly type: 'HeartbeatResponse';
  readonly context: Uint8Array;
}

/** InstallSnapshot RPC (Figure 13), carrying the whole snapshot; the transport chunks it. */
export interface InstallSnapshot extends MessageBase {
  readonly type: 'InstallSnapshot';
  readonly snapshot: Snapshot;
}

/** TimeoutNow (thesis §3.10): the leader tells the transfer target to start an election now. */
export interface TimeoutNow extends MessageBase {
  readonly type: 'TimeoutNow';
}

/** A follower asks the leader for a read index (thesis §6.4); `context` identifies the read. */
export interface ReadIndexRequest extends MessageBase {
  readonly type: 'ReadIndex';
  readonly context: Uint8Array;
}

/** The leader's answer: reads with `context` may be served once `index` is applied. */
export interface ReadIndexResponse extends MessageBase {
  readonly type: 'ReadIndexResponse';
  readonly context: Uint8Array;
  readonly index: LogIndex;
  /** False when the leader could not serve the read (e.g. no entry committed in its term yet). */
  readonly success: boolean;
}

/** Every message that crosses the network between peers. */
export type Message =
  | AppendEntries
  | AppendEntriesResponse
  | RequestVote
  | RequestVoteResponse
  | Heartbeat
  | HeartbeatResponse
  | InstallSnapshot
  | TimeoutNow
  | ReadIndexRequest
  | ReadIndexResponse;

/** The tag of a {@link Message}. */
export type MessageType = Message['type'];

/** All message tags, for exhaustive tests and wire mapping. */
export const MESSAGE_TYPES: readonly MessageType[] = [
  'AppendEntries',
  'AppendEntriesResponse',
  'RequestVote',
  'RequestVoteResponse',
  'Heartbeat',
  'HeartbeatResponse',
  'InstallSnapshot',
  'TimeoutNow',
  'ReadIndex',
  'ReadIndexResponse',
];

/** A node's role (§5.1, plus learners of thesis §4.2.1). */
export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Throws on a case a type switch should never reach. */
export function assertNever(x: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(x)}`);
}
