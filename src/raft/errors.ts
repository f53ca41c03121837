/**
 * The two kinds of failure of the core (etcd-io/raft: `ErrProposalDropped` versus a panic):
 * expected outcomes are typed errors a caller handles; a broken invariant is a
 * {@link RaftInvariantError} that must stop the node.
 */
import type { NodeId } from './types.js';

/** A proposal was not appended: this node is not the leader (or is transferring leadership). */
export class ProposalDroppedError extends Error {
  override readonly name = 'ProposalDroppedError';
  /** The leader this node knows of, or '' when none. Writes can be forwarded there. */
  readonly leaderHint: NodeId;
  constructor(message: string, leaderHint: NodeId) {
    super(message);
    this.leaderHint = leaderHint;
  }
}

/** Requested entries are gone: compacted into a snapshot (§7). */
export class CompactedError extends Error {
  override readonly name = 'CompactedError';
}

/** A core invariant was broken (corrupt input from storage, or a bug): the node must stop. */
export class RaftInvariantError extends Error {
  override readonly name = 'RaftInvariantError';
}
