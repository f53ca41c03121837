/**
 * What clients wait for in the node loop: proposals on their way into the log, and linearizable
 * reads waiting for their ReadIndex round (thesis §6.4). Both are batched: every proposal queued
 * while the loop is busy goes into one `propose` (one append, one AppendEntries round, one synced
 * write: group commit), and every read queued meanwhile shares one ReadIndex round.
 *
 * Failure kinds: {@link NotLeaderError} (retry at the leader it names) and
 * {@link UnavailableError} (retry, here or elsewhere) are expected; nothing here throws otherwise.
 */
import { NO_NODE, ProposalDroppedError, RawNode, type Entry, type LogIndex, type NodeId, type Term } from '../raft/index.js';
import type { CommandResult } from '../registry/types.js';
import type { ProposalFailure } from './ports.js';

/** Most proposals folded into one log append (and one synced write). */
export const MAX_PROPOSALS_PER_BATCH = 4096;
/** Most bytes of proposals folded into one log append. */
export const MAX_PROPOSAL_BATCH_BYTES = 8 * 1024 * 1024;
/** Most proposals waiting for the next append before new ones are refused (back-pressure). */
export const MAX_PENDING_PROPOSALS = 65_536;
/** Most reads waiting for their ReadIndex round before new ones are refused. */
export const MAX_PENDING_READS = 65_536;
/** Bytes of a ReadIndex context: a 32-bit incarnation of this node, then a 32-bit round counter. */
export const READ_CONTEXT_BYTES = 8;

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

/**
 * Proposals: queued until the loop's next turn, then appended together; each waits, by the log
 * index it got, until its entry is applied (resolved with its result) or replaced by a new
 * leader's entry (rejected with {@link UnavailableError}: it never committed, retry is safe).
 */
export class Proposals {
  private queue: PendingProposal[] = [];
  private readonly proposed = new Map<number, ProposedWaiter>();

  /** `onFailed` hears of every proposal rejected here, by reason (for metrics). */
  constructor(private readonly onFailed: (reason: ProposalFailure, count: number) => void = () => undefined) {}

  /** Proposals queued or appended and not yet answered. */
  get pending(): number {
    return this.queue.length + this.proposed.size;
  }

  /** Proposals waiting for the next append. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Queues `data` for the next append. Rejects with {@link UnavailableError} when
   * {@link MAX_PENDING_PROPOSALS} are already queued.
   */
  enqueue(data: Uint8Array): Promise<CommandResult | undefined> {
    if (this.queue.length >= MAX_PENDING_PROPOSALS) {
      this.onFailed('queue_full', 1);
      return Promise.reject(new UnavailableError('too many pending proposals; retry'));
    }
    return new Promise((resolve, reject) => this.queue.push({ data, resolve, reject }));
  }

  /** Waits for the entry at `index` of `term` (a proposal made directly on the core, e.g. a membership change). */
  await(index: LogIndex, term: Term): Promise<CommandResult | undefined> {
    return new Promise((resolve, reject) => this.proposed.set(index, { term, resolve, reject }));
  }

  /**
   * Appends the queued proposals to the core's log, {@link MAX_PROPOSALS_PER_BATCH} or
   * {@link MAX_PROPOSAL_BATCH_BYTES} per append. While a leadership transfer runs they stay
   * queued (thesis §3.10); on a follower that knows the leader they are handed back with
   * {@link NotLeaderError} for the caller to forward; with no leader known they wait (for the
   * next leader or their caller's deadline). `onAppended` hears of each append.
   */
  flush(rawNode: RawNode, onAppended?: (firstIndex: LogIndex, lastIndex: LogIndex, term: Term) => void): void {
    if (this.queue.length === 0) return;
    const raft = rawNode.raft;
    if (raft.role === 'leader' && raft.leadTransferee !== NO_NODE) return;
    if (raft.role !== 'leader') {
      if (raft.leaderId === NO_NODE) return;
      this.rejectQueued(new NotLeaderError(raft.leaderId), 'not_leader');
      return;
    }
    while (this.queue.length > 0) {
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length && n < MAX_PROPOSALS_PER_BATCH && bytes < MAX_PROPOSAL_BATCH_BYTES) {
        bytes += (this.queue[n] as PendingProposal).data.byteLength;
        n++;
      }
      const batch = this.queue.splice(0, n);
      let r: { firstIndex: LogIndex; lastIndex: LogIndex; term: Term };
      try {
        r = rawNode.propose(batch.map((p) => p.data));
      } catch (err) {
        // The core takes no proposals now (e.g. a leader removing itself): the callers retry.
        if (!(err instanceof ProposalDroppedError)) throw err;
        const unavailable = new UnavailableError(err.message);
        const failed = [...batch, ...this.queue.splice(0)];
        this.onFailed('dropped', failed.length);
        for (const p of failed) p.reject(unavailable);
        return;
      }
      const { firstIndex, lastIndex, term } = r;
      batch.forEach((p, i) => this.proposed.set(firstIndex + i, { term, resolve: p.resolve, reject: p.reject }));
      onAppended?.(firstIndex, lastIndex, term);
    }
  }

  /** Whether queued proposals could be appended now (this node leads and no transfer runs). */
  proposable(rawNode: RawNode): boolean {
    const raft = rawNode.raft;
    return this.queue.length > 0 && raft.role === 'leader' && raft.leadTransferee === NO_NODE;
  }

  /**
   * Answers the waiters of applied `entries`: the result when the applied entry is the one
   * proposed (same term), else {@link UnavailableError} (a new leader replaced it, §5.3).
   */
  complete(entries: readonly Entry[], results: ReadonlyMap<number, CommandResult>): void {
    if (this.proposed.size === 0) return;
    for (const e of entries) {
      const w = this.proposed.get(e.index);
      if (!w) continue;
      this.proposed.delete(e.index);
      if (e.term === w.term) w.resolve(results.get(e.index));
      else {
        this.onFailed('replaced', 1);
        w.reject(new UnavailableError(`entry ${e.index} was replaced by a new leader (term ${e.term}); retry`));
      }
    }
  }

  /**
   * A snapshot replaced the log through `index`: proposals at or below it can no longer be
   * matched with their entries, so their outcome is unknown to this node.
   */
  forgetThrough(index: LogIndex): void {
    for (const [i, w] of this.proposed) {
      if (i > index) continue;
      this.proposed.delete(i);
      this.onFailed('snapshot', 1);
      w.reject(new UnavailableError(`entry ${i} was covered by a snapshot before it was applied here; its outcome is unknown`));
    }
  }

  private rejectQueued(err: Error, reason: ProposalFailure): void {
    const q = this.queue;
    this.queue = [];
    if (q.length > 0) this.onFailed(reason, q.length);
    for (const p of q) p.reject(err);
  }

  /** Rejects everything queued or waiting with `err` (the node stops). */
  rejectAll(err: Error): void {
    this.rejectQueued(err, 'stopping');
    if (this.proposed.size > 0) this.onFailed('stopping', this.proposed.size);
    for (const w of this.proposed.values()) w.reject(err);
    this.proposed.clear();
  }
}

interface ReadWaiter {
  readonly resolve: (index: LogIndex) => void;
  readonly reject: (e: Error) => void;
}

interface ReadRound {
  readonly waiters: ReadWaiter[];
  /** When the round started, in ms of the node's clock. */
  readonly startedAt: number;
}

/**
 * ReadIndex rounds (thesis §6.4): reads queued during one turn of the loop share one round,
 * identified by a context unique to this incarnation of the node (so a late answer to a round of
 * an earlier incarnation can never release a read of this one). A round whose request or answer
 * was lost is failed with {@link UnavailableError} once it is older than the timeout the node
 * passes to {@link ReadRounds.expire}.
 */
export class ReadRounds {
  private queue: ReadWaiter[] = [];
  private readonly rounds = new Map<string, ReadRound>();
  private counter = 0;

  /** `incarnation`: a random 32-bit number drawn once per node start. */
  constructor(private readonly incarnation: number) {}

  /** Reads waiting for a round, queued or in flight. */
  get pending(): number {
    let n = this.queue.length;
    for (const r of this.rounds.values()) n += r.waiters.length;
    return n;
  }

  /** Whether reads are queued for the next round. */
  get queued(): boolean {
    return this.queue.length > 0;
  }

  /**
   * Queues a read for the next round; resolves with the index it may be served at once that is
   * applied. Rejects with {@link UnavailableError} when {@link MAX_PENDING_READS} are waiting.
   */
  enqueue(): Promise<LogIndex> {
    if (this.queue.length >= MAX_PENDING_READS) return Promise.reject(new UnavailableError('too many pending reads; retry'));
    return new Promise<LogIndex>((resolve, reject) => this.queue.push({ resolve, reject }));
  }

  /** Starts one round on the core for every queued read; `now` in ms. */
  flush(rawNode: RawNode, now: number): void {
    if (this.queue.length === 0) return;
    const ctx = Buffer.alloc(READ_CONTEXT_BYTES);
    ctx.writeUInt32BE(this.incarnation >>> 0, 0);
    ctx.writeUInt32BE((this.counter = (this.counter + 1) >>> 0), 4);
    this.rounds.set(ctx.toString('hex'), { waiters: this.queue, startedAt: now });
    this.queue = [];
    rawNode.readIndex(ctx);
  }

  /** The core's answer to a round: its reads may be served at `index`, or failed. Unknown contexts are ignored. */
  complete(context: Uint8Array, index: LogIndex, ok: boolean): void {
    const key = Buffer.from(context).toString('hex');
    const round = this.rounds.get(key);
    if (!round) return;
    this.rounds.delete(key);
    for (const w of round.waiters) {
      if (ok) w.resolve(index);
      else w.reject(new UnavailableError('no leader could confirm the read; retry'));
    }
  }

  /**
   * Fails every round started before `startedBefore` (ms): its request or answer was lost (a
   * dropped message, a leader that went away), and no answer will come.
   */
  expire(startedBefore: number): void {
    for (const [key, round] of this.rounds) {
      if (round.startedAt >= startedBefore) continue;
      this.rounds.delete(key);
      for (const w of round.waiters) w.reject(new UnavailableError('the read index round got no answer within an election timeout; retry'));
    }
  }

  /** Rejects every queued and in-flight read with `err`. */
  rejectAll(err: Error): void {
    for (const w of this.queue) w.reject(err);
    this.queue = [];
    for (const r of this.rounds.values()) for (const w of r.waiters) w.reject(err);
    this.rounds.clear();
  }
}
