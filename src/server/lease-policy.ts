/**
 * The leader's side of leases in the node loop (etcd's lessor on the leader; ZooKeeper's session
 * expiry): deadlines are kept in a {@link LeaseKeeper} while this node leads, renewals stay in
 * memory, and lapsed leases leave through an `expire` command in the log, so every node removes
 * the same agents at the same index.
 *
 * The rules (see `lease-manager.ts` for their sources): a new leader gives every lease a fresh
 * full TTL; nothing expires unless a majority acknowledged this leader within an election
 * timeout (the acknowledgements are counted here, from the responses the node steps); a stall of
 * this process pushes every deadline back by its length.
 */
import type { Logger } from '../log.js';
import type { Message, NodeId, RawNode } from '../raft/index.js';
import { encodeCommand } from '../registry/commands.js';
import { MAX_EXPIRE_BATCH, MAX_LEASE_CHECK_GAP_MS } from '../registry/lease-manager.js';
import type { LeaseKeeper, LeaseRecord } from '../registry/lease-types.js';
import type { CommandResult, WatchEvent } from '../registry/types.js';
import type { Clock } from './ports.js';

/** What the lease policy needs from the node. */
export interface LeasePolicyContext {
  readonly id: NodeId;
  readonly rawNode: RawNode;
  readonly clock: Clock;
  readonly keeper: LeaseKeeper;
  readonly log: Logger;
  /** Length of a tick, in ms. */
  readonly tickMs: number;
  /** Period of the lease check, in ms. */
  readonly checkIntervalMs: number;
  /** Every lease the applied state holds (read when this node takes office). */
  readonly loadLeases: () => Promise<LeaseRecord[]>;
  /** Proposes an encoded command and resolves with its result once applied. */
  readonly propose: (data: Uint8Array) => Promise<CommandResult | undefined>;
  /** A deliberate bug for tests: expire however stale the quorum confirmation is. */
  readonly ignoreQuorumAge?: boolean;
}

/** Lease deadlines and expiry while this node leads; inert otherwise. */
export class LeasePolicy {
  /** When each voter last answered this leader in its term (ms of the node's clock). */
  private readonly lastAck = new Map<NodeId, number>();
  private leaderSince = 0;
  /** An `expire` proposal is in flight: no second one until it is answered. */
  private expiring = false;
  /** While a new leader loads its leases: the events applied meanwhile, replayed afterwards. */
  private held: WatchEvent[] | undefined;
  /** Bumped on every role change, so a lease load that finishes late is discarded. */
  private generation = 0;

  constructor(private readonly ctx: LeasePolicyContext) {}

  /** Counts `m` as an acknowledgement of this leader when it answers in the current term. */
  observe(m: Message): void {
    if ((m.type === 'HeartbeatResponse' || m.type === 'AppendEntriesResponse') && m.term === this.ctx.rawNode.raft.currentTerm) {
      this.lastAck.set(m.from, this.ctx.clock.now());
    }
  }

  /**
   * When a majority of voters last acknowledged this leader (ms): the quorum-th most recent
   * acknowledgement, counting this node as now and the votes that elected it as an
   * acknowledgement at the moment it took office. 0 when not leading.
   */
  quorumConfirmedAt(): number {
    const raft = this.ctx.rawNode.raft;
    if (raft.role !== 'leader') return 0;
    const now = this.ctx.clock.now();
    const voters = [...raft.voters()];
    const times = voters.map((v) => (v === this.ctx.id ? now : Math.max(this.lastAck.get(v) ?? 0, this.leaderSince)));
    times.sort((a, b) => b - a);
    return times[Math.floor(voters.length / 2)] ?? 0;
  }

  /**
   * The node's role changed. On becoming leader the leases are loaded from the applied state and
   * each gets a fresh full TTL (etcd issue 2660); events applied while they load are held and
   * replayed after, so none is missed. On losing leadership every deadline is forgotten.
   */
  async onRoleChange(role: string): Promise<void> {
    const gen = ++this.generation;
    if (role !== 'leader') {
      this.held = undefined;
      this.ctx.keeper.stepDown();
      this.expiring = false;
      return;
    }
    this.leaderSince = this.ctx.clock.now();
    this.lastAck.clear();
    this.held = [];
    const leases = await this.ctx.loadLeases();
    if (gen !== this.generation) return;
    const held = this.held;
    this.held = undefined;
    if (this.ctx.rawNode.raft.role !== 'leader') return;
    this.ctx.keeper.becomeLeader(this.ctx.clock.now(), leases);
    this.track(held);
  }

  /** Keeps the deadlines in step with the committed writes (their watch events). */
  onApplied(events: readonly WatchEvent[]): void {
    if (this.held) this.held.push(...events);
    else if (this.ctx.keeper.active) this.track(events);
  }

  private track(events: readonly WatchEvent[]): void {
    const now = this.ctx.clock.now();
    for (const e of events) {
      const a = e.agent;
      if (e.type === 'delete' || a.ttlSeconds === 0) this.ctx.keeper.remove(a.id);
      else this.ctx.keeper.upsert({ id: a.id, ttlMs: a.ttlSeconds * 1000, modRevision: a.modRevision }, now);
    }
  }

  /**
   * The periodic check: lapsed leases are proposed as one `expire` command, only while a majority
   * confirmed this leader within an election timeout, and never while an earlier one is in flight.
   */
  check(): void {
    const { keeper, rawNode, clock } = this.ctx;
    if (!keeper.active || this.expiring || rawNode.raft.role !== 'leader') return;
    const electionMs = this.ctx.tickMs * rawNode.raft.electionTimeoutTicks;
    const now = clock.now();
    const lapsed = keeper.expired(now, this.quorumConfirmedAt(), {
      maxQuorumAgeMs: this.ctx.ignoreQuorumAge === true ? Number.POSITIVE_INFINITY : electionMs,
      maxTickGapMs: Math.max(MAX_LEASE_CHECK_GAP_MS, 3 * this.ctx.checkIntervalMs),
      maxBatch: MAX_EXPIRE_BATCH,
    });
    if (lapsed.length === 0) return;
    this.expiring = true;
    const cmd = encodeCommand({
      type: 'expire',
      requestId: `${this.ctx.id}:expire:${rawNode.raft.currentTerm}:${Math.round(now)}`,
      leases: lapsed.map((l) => ({ id: l.id, modRevision: l.modRevision })),
    });
    this.ctx.propose(cmd).then(
      (r) => {
        this.expiring = false;
        if (r?.type === 'expire' && r.expired.length > 0) this.ctx.log.info({ expired: r.expired, revision: r.revision }, 'leases expired');
      },
      (err: unknown) => {
        this.expiring = false;
        keeper.retryPending();
        this.ctx.log.debug({ err }, 'lease expiry not committed; will retry');
      },
    );
  }

  /** Forgets every deadline (the node stops). */
  stop(): void {
    this.generation++;
    this.ctx.keeper.stepDown();
  }
}
