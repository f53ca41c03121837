/**
 * A node's health, decided once for every front end: the HTTP `/health` probes and the gRPC
 * health checking protocol (`grpc.health.v1.Health`) answer from {@link nodeHealth}.
 */
import type { RaftNode } from '../server/raft-node.js';

/**
 * Committed entries a node may still have to apply and count as caught up. A node applies in
 * batches behind its log, so a lag of a few entries is normal under load; a node further behind
 * (restarting, installing a snapshot) serves stale reads and should take no traffic yet.
 */
export const HEALTH_MAX_APPLY_LAG_ENTRIES = 1_000;

/** What a probe reports. */
export interface NodeHealth {
  /** Serving: the node knows a leader and has applied what it knows committed. */
  readonly ready: boolean;
  /** Alive: the Raft loop runs (it has not stopped on a fatal error or a shutdown). */
  readonly live: boolean;
  /** Why the node is not ready (or not live); '' when it is. */
  readonly reason: string;
  readonly leaderId: string;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
}

/**
 * The health of the node behind `raft`: live while its loop runs; ready when, besides, it knows
 * a leader for its term and its applied index is within {@link HEALTH_MAX_APPLY_LAG_ENTRIES} of
 * its commit index (etcd's `/health` asks for a leader the same way).
 */
export function nodeHealth(raft: RaftNode): NodeHealth {
  const st = raft.status();
  const appliedIndex = raft.appliedIndex;
  const base = { leaderId: st.leaderId as string, term: st.currentTerm as number, commitIndex: st.commitIndex as number, appliedIndex };
  if (raft.isStopped) return { ...base, ready: false, live: false, reason: 'the raft loop has stopped' };
  if (st.leaderId === '') return { ...base, ready: false, live: true, reason: `no leader known in term ${st.currentTerm}` };
  const lag = st.commitIndex - appliedIndex;
  if (lag > HEALTH_MAX_APPLY_LAG_ENTRIES) {
    return { ...base, ready: false, live: true, reason: `applied index ${appliedIndex} is ${lag} entries behind the commit index ${st.commitIndex}` };
  }
  return { ...base, ready: true, live: true, reason: '' };
}
