/**
 * The leader's lease bookkeeping (the {@link LeaseKeeper} contract of `lease-types.ts`), after
 * etcd's lessor (`server/lease/lessor.go`): a deadline per leased agent, kept only while this
 * node leads, in a min-heap ordered by deadline so the periodic check costs O(k log n) for the
 * k leases that lapsed, not a scan of all n.
 *
 * Pure: no clock, no timers, no I/O, no randomness. The caller reads its monotonic clock and
 * passes `nowMs` to every call, as the Raft core is passed ticks.
 *
 * Rules, and where they come from:
 * - A new leader gives every lease a fresh full TTL (etcd's `Promote`, etcd issue 2660): a
 *   failover never expires an agent whose heartbeats went to the old leader.
 * - Nothing expires while the leader's last quorum confirmation is older than `maxQuorumAgeMs`
 *   (etcd issue 15247: a leader stalled on its disk or cut off from its followers revoked every
 *   lease). Its proposals could not commit anyway without a majority; the gate also keeps a
 *   leader that is about to lose office from flooding its log with expiries.
 * - A gap between two checks longer than `maxTickGapMs` means this process stalled (GC, a
 *   blocked event loop, a suspended VM): every deadline moves forward by the whole gap, so the
 *   stall does not expire everyone at once (the heartbeats that arrived meanwhile were never
 *   processed).
 * - A lapsed lease is returned once, then held as pending until a committed write
 *   (`upsert`/`remove`) or a heartbeat (`renew`) touches it, or the caller reports its `expire`
 *   proposal lost ({@link LeaseManager.retryPending}).
 */
import type { LeaseKeeper, LeaseRecord } from './lease-types.js';

/** How often the node's leader checks for lapsed leases, in ms (the period of `expired()` calls). */
export const LEASE_CHECK_INTERVAL_MS = 100;
/** Most leases one `expire` command names (the `maxBatch` the node passes). */
export const MAX_EXPIRE_BATCH = 1_000;
/**
 * A gap between two checks longer than this, in ms, counts as a stall of the process (the
 * `maxTickGapMs` the node passes): three missed check periods.
 */
export const MAX_LEASE_CHECK_GAP_MS = 3 * LEASE_CHECK_INTERVAL_MS;

/** One tracked lease. `due + shiftMs` is its deadline; `pos` its place in the heap, -1 while pending. */
interface Slot {
  record: LeaseRecord;
  due: number;
  pos: number;
}

/** The limits of one {@link LeaseManager.expired} call (all in ms except `maxBatch`, a count). */
export interface LeaseCheckLimits {
  /** Oldest quorum confirmation, in ms, under which leases may still expire. */
  readonly maxQuorumAgeMs: number;
  /** Longest gap between two calls, in ms, not treated as a stall. */
  readonly maxTickGapMs: number;
  /** Most leases returned by one call. */
  readonly maxBatch: number;
}

/**
 * Leader-side lease deadlines: see the module comment for the rules. Every method is
 * synchronous and O(log n) (becomeLeader O(n), stepDown O(1) amortized, retryPending O(p log n)
 * for p pending leases). Never throws.
 */
export class LeaseManager implements LeaseKeeper {
  private readonly slots = new Map<string, Slot>();
  /** Min-heap of the slots not pending, by deadline then id. */
  private heap: Slot[] = [];
  /** Ids returned by `expired()` and not touched since. */
  private readonly pending = new Set<string>();
  /** Sum of the stall gaps since becoming leader, in ms: added to every stored `due`. */
  private shiftMs = 0;
  /** `nowMs` of the previous `expired()` call (or of `becomeLeader`), undefined when not leading. */
  private lastCheckMs: number | undefined = undefined;
  private isActive = false;

  /** Whether this node keeps deadlines now (between `becomeLeader` and `stepDown`). */
  get active(): boolean {
    return this.isActive;
  }

  /** How many leases are tracked (pending ones included). */
  get size(): number {
    return this.slots.size;
  }

  /** How many leases were returned by `expired()` and are waiting for their `expire` to apply. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Takes office at `nowMs`: forgets whatever it held and gives each of `leases` the deadline
   * `nowMs + ttlMs` (etcd issue 2660). Records with `ttlMs <= 0` hold no lease and are skipped;
   * a repeated id keeps its last record.
   */
  becomeLeader(nowMs: number, leases: readonly LeaseRecord[]): void {
    this.reset();
    this.isActive = true;
    this.lastCheckMs = nowMs;
    for (const record of leases) {
      if (!(record.ttlMs > 0)) continue;
      const prev = this.slots.get(record.id);
      if (prev) {
        prev.record = record;
        prev.due = nowMs + record.ttlMs;
      } else {
        this.slots.set(record.id, { record, due: nowMs + record.ttlMs, pos: -1 });
      }
    }
    // Floyd's heapify: O(n) for a large registry.
    this.heap = [...this.slots.values()];
    for (let i = 0; i < this.heap.length; i++) (this.heap[i] as Slot).pos = i;
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  /** Leaves office: forgets every deadline; `expired()` returns nothing until the next `becomeLeader`. */
  stepDown(): void {
    this.reset();
    this.isActive = false;
  }

  /**
   * A heartbeat for `id` at `nowMs`: its deadline becomes `nowMs + ttlMs` (a pending expiry is
   * withdrawn: if its `expire` is already in the log, the apply decides). Returns the TTL in ms,
   * or `undefined` when `id` holds no lease here (not leading, never registered with a lease, or
   * removed): the caller answers NOT_FOUND.
   */
  renew(id: string, nowMs: number): number | undefined {
    const slot = this.slots.get(id);
    if (!slot) return undefined;
    this.reschedule(slot, nowMs + slot.record.ttlMs);
    return slot.record.ttlMs;
  }

  /**
   * A committed write created or replaced the leased agent `record.id` at `nowMs` (the time this
   * leader applied it): the record (and so the `modRevision` an expiry will name) is replaced and
   * the deadline becomes `nowMs + ttlMs`. `ttlMs <= 0` means the agent no longer holds a lease:
   * same as {@link remove}. Ignored when not leading (`becomeLeader` loads from the state machine).
   */
  upsert(record: LeaseRecord, nowMs: number): void {
    if (!this.isActive) return;
    if (!(record.ttlMs > 0)) {
      this.remove(record.id);
      return;
    }
    const slot = this.slots.get(record.id);
    if (slot) {
      slot.record = record;
      this.reschedule(slot, nowMs + record.ttlMs);
      return;
    }
    const fresh: Slot = { record, due: nowMs + record.ttlMs - this.shiftMs, pos: -1 };
    this.slots.set(record.id, fresh);
    this.push(fresh);
  }

  /** A committed write deleted the agent `id` (a deregistration or an applied expiry). Unknown ids are ignored. */
  remove(id: string): void {
    const slot = this.slots.get(id);
    if (!slot) return;
    this.slots.delete(id);
    this.pending.delete(id);
    if (slot.pos >= 0) this.removeAt(slot.pos);
  }

  /**
   * The periodic check at `nowMs` (every {@link LEASE_CHECK_INTERVAL_MS} in the node). First,
   * a gap since the previous call longer than `maxTickGapMs` moves every deadline forward by the
   * whole gap. Then, if `nowMs - quorumConfirmedAtMs > maxQuorumAgeMs`, returns nothing (etcd
   * issue 15247). Otherwise returns the leases whose deadline is `<= nowMs`, earliest deadline
   * first (ties by id), at most `maxBatch`, and marks them pending: they are not returned again
   * until `upsert`/`remove`/`renew` touches them or {@link retryPending} is called. Returns
   * nothing when not leading.
   */
  expired(nowMs: number, quorumConfirmedAtMs: number, limits: LeaseCheckLimits): LeaseRecord[] {
    if (!this.isActive) return [];
    if (this.lastCheckMs !== undefined && nowMs - this.lastCheckMs > limits.maxTickGapMs) this.shiftMs += nowMs - this.lastCheckMs;
    this.lastCheckMs = nowMs;
    if (nowMs - quorumConfirmedAtMs > limits.maxQuorumAgeMs) return [];
    const out: LeaseRecord[] = [];
    while (out.length < limits.maxBatch) {
      const top = this.heap[0];
      if (!top || top.due + this.shiftMs > nowMs) break;
      this.removeAt(0);
      this.pending.add(top.record.id);
      out.push(top.record);
    }
    return out;
  }

  /**
   * The `expire` proposal carrying the pending leases was lost (dropped, or overwritten while
   * this node still leads): they are returned again by the next `expired()` call whose deadline
   * test they pass (their deadlines are unchanged, so at once unless a stall shifted them).
   */
  retryPending(): void {
    for (const id of this.pending) {
      const slot = this.slots.get(id);
      if (slot && slot.pos < 0) this.push(slot);
    }
    this.pending.clear();
  }

  /** The deadline of `id` in ms of the caller's clock (stall shifts included), or undefined when it holds no lease here. */
  deadlineOf(id: string): number | undefined {
    const slot = this.slots.get(id);
    return slot ? slot.due + this.shiftMs : undefined;
  }

  /** Whether `id` was returned by `expired()` and is waiting for its `expire` to apply. */
  isPending(id: string): boolean {
    return this.pending.has(id);
  }

  // ---------------------------------------------------------------------------------------
  // The heap

  private reset(): void {
    this.slots.clear();
    this.heap = [];
    this.pending.clear();
    this.shiftMs = 0;
    this.lastCheckMs = undefined;
  }

  /** Sets a slot's deadline and puts it back in the heap if it was pending. */
  private reschedule(slot: Slot, deadlineMs: number): void {
    slot.due = deadlineMs - this.shiftMs;
    if (slot.pos < 0) {
      this.pending.delete(slot.record.id);
      this.push(slot);
      return;
    }
    this.siftUp(slot.pos);
    this.siftDown(slot.pos);
  }

  private less(a: Slot, b: Slot): boolean {
    return a.due < b.due || (a.due === b.due && a.record.id < b.record.id);
  }

  private push(slot: Slot): void {
    slot.pos = this.heap.length;
    this.heap.push(slot);
    this.siftUp(slot.pos);
  }

  private removeAt(i: number): void {
    const h = this.heap;
    const gone = h[i] as Slot;
    const last = h.pop() as Slot;
    gone.pos = -1;
    if (last === gone) return;
    h[i] = last;
    last.pos = i;
    this.siftUp(i);
    this.siftDown(last.pos);
  }

  private siftUp(i: number): void {
    const h = this.heap;
    const s = h[i] as Slot;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as Slot;
      if (!this.less(s, parent)) break;
      h[i] = parent;
      parent.pos = i;
      i = p;
    }
    h[i] = s;
    s.pos = i;
  }

  private siftDown(i: number): void {
    const h = this.heap;
    const n = h.length;
    const s = h[i] as Slot;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.less(h[r] as Slot, h[l] as Slot)) c = r;
      const child = h[c] as Slot;
      if (!this.less(child, s)) break;
      h[i] = child;
      child.pos = i;
      i = c;
    }
    h[i] = s;
    s.pos = i;
  }
}
