/**
 * Majority arithmetic over a set of voters (§5.2 elections, §5.3/§5.4 commitment), after
 * etcd-io/raft `quorum/majority.go`. Learners never appear here: they neither vote nor count
 * toward commitment (thesis §4.2.1).
 */
import type { LogIndex, NodeId } from './types.js';
import { logIndex } from './types.js';

/** The outcome of counting votes. */
export type VoteResult = 'won' | 'lost' | 'pending';

/** The smallest number of voters that forms a majority of `n` (n >= 1). */
export function quorumSize(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The highest index that a majority of `voters` has stored, given each voter's match index
 * (§5.3: an entry is committed once replicated on a majority). An empty set of voters commits
 * nothing (returns 0).
 */
export function committedIndex(voters: ReadonlySet<NodeId>, matchIndex: (id: NodeId) => LogIndex): LogIndex {
  const n = voters.size;
  if (n === 0) return logIndex(0);
  const matches: number[] = [];
  for (const id of voters) matches.push(matchIndex(id));
  matches.sort((a, b) => b - a);
  // The quorumSize-th largest match index is held by at least a majority.
  return logIndex(matches[quorumSize(n) - 1] ?? 0);
}

/**
 * Counts `votes` (granted or rejected, keyed by voter) among `voters` (§5.2): `won` with a
 * majority of grants, `lost` when a majority can no longer be reached, `pending` otherwise.
 * Votes of non-voters are ignored.
 */
export function voteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = quorumSize(voters.size);
  if (granted >= q) return 'won';
  if (granted + missing >= q) return 'pending';
  return 'lost';
}
