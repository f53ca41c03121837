/**
 * The leader's view of one follower (Figure 2 "Volatile state on leaders": `nextIndex`,
 * `matchIndex`), with the flow-control states of etcd-io/raft `tracker/progress.go`:
 *
 * - `probe`: the leader does not know where the follower's log ends; it sends one AppendEntries
 *   at a time and waits for the answer (or the next heartbeat) before sending another.
 * - `replicate`: the follower is in sync; the leader streams entries optimistically, bounded by
 *   the {@link Inflights} window.
 * - `snapshot`: the follower needs entries the leader has compacted; the leader sent a snapshot
 *   and sends nothing more until it is installed.
 *
 * Invariant: `matchIndex < nextIndex` (checked by {@link Progress.checkInvariant}).
 */
import { Inflights } from './inflights.js';
import type { LogIndex } from './types.js';
import { logIndex } from './types.js';
import { RaftInvariantError } from './errors.js';

/** The flow-control state of a follower's progress. */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** Per-peer replication progress, owned by the leader. */
export class Progress {
  /** Highest index known to be replicated on the peer (Figure 2). */
  matchIndex: LogIndex;
  /** Index of the next entry to send to the peer (Figure 2). */
  nextIndex: LogIndex;
  state: ProgressState = 'probe';
  /** In `probe`: an AppendEntries is out and unanswered, so sending pauses. */
  probeSent = false;
  /** In `snapshot`: the index of the snapshot being sent. */
  pendingSnapshot: LogIndex = logIndex(0);
  /** Whether the peer was heard from since the last CheckQuorum round (thesis §6.2). */
  recentActive = false;
  /** Learners replicate but neither vote nor count for commitment (thesis §4.2.1). */
  isLearner: boolean;
  readonly inflights: Inflights;

  /**
   * @param nextIndex where replication starts (the leader's last index + 1)
   * @param maxInflight capacity of the in-flight window, in messages
   */
  constructor(nextIndex: LogIndex, maxInflight: number, isLearner = false) {
    this.matchIndex = logIndex(0);
    this.nextIndex = nextIndex;
    this.inflights = new Inflights(maxInflight);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = logIndex(0);
    this.state = state;
    this.inflights.reset();
  }

  /** Enters `probe`: resume just after what the peer is known to hold. */
  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.nextIndex = logIndex(Math.max(this.matchIndex + 1, pending + 1));
    } else {
      this.resetState('probe');
      this.nextIndex = logIndex(this.matchIndex + 1);
    }
  }

  /** Enters `replicate`: stream entries from just after the match. */
  becomeReplicate(): void {
    this.resetState('replicate');
    this.nextIndex = logIndex(this.matchIndex + 1);
  }

  /** Enters `snapshot`: a snapshot at `snapshotIndex` is on its way. */
  becomeSnapshot(snapshotIndex: LogIndex): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /**
   * Records that the peer holds everything up to `n` (a successful AppendEntries response).
   * Returns false when the response is stale (`n` is not beyond the known match).
   */
  maybeUpdate(n: LogIndex): boolean {
    let updated = false;
    if (this.matchIndex < n) {
      this.matchIndex = n;
      updated = true;
      this.probeSent = false;
    }
    if (this.nextIndex < n + 1) this.nextIndex = logIndex(n + 1);
    return updated;
  }

  /** In `replicate`: entries up to `n` were sent, so the next message starts after them. */
  optimisticUpdate(n: LogIndex): void {
    this.nextIndex = logIndex(n + 1);
  }

  /**
   * Handles a rejected AppendEntries whose `prevLogIndex` was `rejected`; `matchHint` is the
   * highest index that may still match (from the follower's conflict hint, §5.3 fast back-off).
   * Returns false when the rejection is stale and must be ignored.
   */
  maybeDecrTo(rejected: LogIndex, matchHint: LogIndex): boolean {
    if (this.state === 'replicate') {
      // A rejection at or below the match is a duplicate or reordered answer.
      if (rejected <= this.matchIndex) return false;
      this.nextIndex = logIndex(this.matchIndex + 1);
      return true;
    }
    // In probe, only the answer to the message just sent (prev = next - 1) counts.
    if (this.nextIndex - 1 !== rejected) return false;
    this.nextIndex = logIndex(Math.max(Math.min(rejected, matchHint + 1), this.matchIndex + 1));
    this.probeSent = false;
    return true;
  }

  /** True when the leader must not send more AppendEntries to this peer now. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  /** Throws {@link RaftInvariantError} unless `matchIndex < nextIndex`. */
  checkInvariant(peer: string): void {
    if (!(this.matchIndex < this.nextIndex)) {
      throw new RaftInvariantError(`progress of ${peer}: matchIndex ${this.matchIndex} >= nextIndex ${this.nextIndex}`);
    }
  }
}
