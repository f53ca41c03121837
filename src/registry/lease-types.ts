/**
 * The contract of the leader-side lease manager (`lease-manager.ts`): pure bookkeeping of lease
 * deadlines, driven by the caller's clock readings. Leases are etcd's and ZooKeeper's idea (an
 * ephemeral registration that disappears when its owner stops renewing it); the decision to expire
 * is the leader's alone and enters the log as an `expire` command, so every node deletes the same
 * agents at the same index.
 *
 * Times are milliseconds of a monotonic clock the caller reads (`performance.now()` in the node,
 * simulated time in tests); the manager itself never reads a clock.
 */

/** A lease as the state machine holds it: which agent, how long, and the write it belongs to. */
export interface LeaseRecord {
  readonly id: string;
  readonly ttlMs: number;
  /** The agent's `modRevision`: an expiry names it, so a re-registration in between survives. */
  readonly modRevision: number;
}

/** Leader-side lease bookkeeping. All methods are synchronous and do no I/O. */
export interface LeaseKeeper {
  /**
   * This node became leader at `nowMs`: every lease gets a fresh full TTL from now (etcd's rule,
   * etcd issue 2660), so no agent expires because of a failover.
   */
  becomeLeader(nowMs: number, leases: readonly LeaseRecord[]): void;
  /** This node is no longer leader: forget every deadline (a non-leader never expires anything). */
  stepDown(): void;
  /** Whether this node keeps deadlines now (it is leader). */
  readonly active: boolean;
  /**
   * A heartbeat for `id` at `nowMs`: renews its deadline to `nowMs + ttlMs` and returns the TTL in
   * ms, or `undefined` when the id holds no lease here (the caller answers NOT_FOUND).
   */
  renew(id: string, nowMs: number): number | undefined;
  /** A committed write created or replaced a leased agent (deadline: `nowMs + ttlMs`), or removed its lease (ttlMs 0). */
  upsert(record: LeaseRecord, nowMs: number): void;
  /** A committed write deleted the agent. */
  remove(id: string): void;
  /**
   * The caller's periodic check at `nowMs`. `quorumConfirmedAtMs` is when a majority last
   * acknowledged this leader (a heartbeat round): while it is older than `maxQuorumAgeMs`, nothing
   * expires (etcd issue 15247: a stalled or partitioned leader must not revoke leases). A gap since
   * the previous call longer than `maxTickGapMs` is treated as a stall of this process: every
   * deadline moves forward by the gap. Returns the leases whose deadline passed, at most
   * `maxBatch` of them, each once until `upsert`/`remove`/`renew` touches it again.
   */
  expired(nowMs: number, quorumConfirmedAtMs: number, limits: { maxQuorumAgeMs: number; maxTickGapMs: number; maxBatch: number }): LeaseRecord[];
  /** Makes the leases returned by `expired` but not yet removed eligible again (the expiry was not committed). */
  retryPending(): void;
  /** The deadline of `id` in ms, for reports (`lease_expires_unix_ms` is derived from it). */
  deadlineOf(id: string): number | undefined;
}
