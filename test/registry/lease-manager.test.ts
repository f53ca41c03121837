/**
 * The leader's lease bookkeeping (`lease-manager.ts`), after etcd's lessor: renewals, expiry
 * exactly once after the TTL, the fresh TTL of a new leader (etcd issue 2660), no expiry on a
 * stale quorum confirmation (etcd issue 15247), the stall shift, step-down, replacement by a newer
 * write; and a property against a reference model (a map of deadlines, scanned in full).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LEASE_CHECK_INTERVAL_MS, LeaseManager, MAX_EXPIRE_BATCH, MAX_LEASE_CHECK_GAP_MS } from '../../src/registry/lease-manager.js';
import type { LeaseRecord } from '../../src/registry/lease-types.js';

/** Limits as the node passes them: the quorum must be confirmed within an election timeout. */
const LIMITS = { maxQuorumAgeMs: 1_000, maxTickGapMs: MAX_LEASE_CHECK_GAP_MS, maxBatch: MAX_EXPIRE_BATCH };

const rec = (id: string, ttlMs: number, modRevision = 1): LeaseRecord => ({ id, ttlMs, modRevision });

/**
 * Calls `expired` every check interval from `from` (exclusive) to `to` (inclusive), the quorum
 * confirmed at every call; returns what was expired, with the time of the call.
 */
function checkUntil(m: LeaseManager, from: number, to: number): { at: number; rec: LeaseRecord }[] {
  const out: { at: number; rec: LeaseRecord }[] = [];
  for (let t = from + LEASE_CHECK_INTERVAL_MS; t <= to; t += LEASE_CHECK_INTERVAL_MS) {
    for (const r of m.expired(t, t, LIMITS)) out.push({ at: t, rec: r });
  }
  return out;
}

describe('lease manager: renewals and expiry', () => {
  it('keeps a renewed lease alive, and expires it exactly once, ttl after the last renewal', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 1_000)]);
    // Renewed every 500 ms for 10 s: never expires.
    for (let t = 0; t < 10_000; t += LEASE_CHECK_INTERVAL_MS) {
      if (t % 500 === 0) expect(m.renew('a', t)).toBe(1_000);
      expect(m.expired(t, t, LIMITS)).toEqual([]);
    }
    // Last renewal at 9_500: deadline 10_500.
    expect(m.deadlineOf('a')).toBe(10_500);
    expect(checkUntil(m, 9_900, 10_400)).toEqual([]);
    expect(m.expired(10_500, 10_500, LIMITS)).toEqual([rec('a', 1_000)]);
    expect(m.isPending('a')).toBe(true);
    // Returned once: the caller proposes one `expire`, not one per check.
    expect(checkUntil(m, 10_500, 20_000)).toEqual([]);
    // ... until the expiry applies: the lease is gone.
    m.remove('a');
    expect(m.deadlineOf('a')).toBeUndefined();
    expect(m.renew('a', 20_000)).toBeUndefined();
    expect(m.size).toBe(0);
  });

  it('answers undefined to a renewal of an unknown id, and when not leading', () => {
    const m = new LeaseManager();
    expect(m.active).toBe(false);
    expect(m.renew('a', 0)).toBeUndefined();
    m.becomeLeader(0, [rec('a', 1_000)]);
    expect(m.active).toBe(true);
    expect(m.renew('b', 0)).toBeUndefined();
  });

  it('a renewal withdraws a pending expiry (the lease is checked again against its new deadline)', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 1_000)]);
    expect(checkUntil(m, 0, 1_000)).toEqual([{ at: 1_000, rec: rec('a', 1_000) }]);
    expect(m.renew('a', 1_050)).toBe(1_000);
    expect(m.isPending('a')).toBe(false);
    expect(checkUntil(m, 1_000, 3_000)).toEqual([{ at: 2_100, rec: rec('a', 1_000) }]);
  });

  it('returns at most maxBatch leases per call, earliest deadline first, ties by id', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('c', 100), rec('b', 100), rec('a', 300), rec('d', 200)]);
    const limits = { ...LIMITS, maxBatch: 2 };
    expect(m.expired(300, 300, limits).map((r) => r.id)).toEqual(['b', 'c']);
    expect(m.expired(300, 300, limits).map((r) => r.id)).toEqual(['d', 'a']);
    expect(m.expired(300, 300, limits)).toEqual([]);
  });

  it('retryPending returns the pending leases again at the next call (a lost expire proposal)', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 100), rec('b', 100)]);
    expect(m.expired(100, 100, LIMITS).map((r) => r.id)).toEqual(['a', 'b']);
    expect(m.pendingCount).toBe(2);
    m.remove('b');
    m.retryPending();
    expect(m.pendingCount).toBe(0);
    expect(m.expired(200, 200, LIMITS).map((r) => r.id)).toEqual(['a']);
    expect(m.expired(300, 300, LIMITS)).toEqual([]);
  });

  it('upsert with a new modRevision replaces the record: the expiry names the new write, ttl after it', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 1_000, 5)]);
    m.upsert(rec('a', 2_000, 9), 500);
    expect(m.size).toBe(1);
    expect(m.deadlineOf('a')).toBe(2_500);
    expect(checkUntil(m, 0, 2_500)).toEqual([{ at: 2_500, rec: rec('a', 2_000, 9) }]);
    // A re-registration while the expiry is pending: the new write survives (its own deadline).
    m.upsert(rec('a', 1_000, 12), 2_550);
    expect(m.isPending('a')).toBe(false);
    expect(checkUntil(m, 2_500, 5_000)).toEqual([{ at: 3_600, rec: rec('a', 1_000, 12) }]);
  });

  it('upsert with ttl 0 removes the lease; upsert while not leading is ignored', () => {
    const m = new LeaseManager();
    m.upsert(rec('a', 1_000), 0);
    m.becomeLeader(0, [rec('a', 1_000), rec('z', 0)]);
    expect(m.size).toBe(1);
    m.upsert(rec('a', 0, 2), 10);
    expect(m.size).toBe(0);
    expect(checkUntil(m, 0, 5_000)).toEqual([]);
  });
});

describe('lease manager: leadership (etcd issue 2660)', () => {
  it('becomeLeader gives a fresh full TTL: a lease about to expire under the old leader survives a failover', () => {
    const old = new LeaseManager();
    old.becomeLeader(0, [rec('a', 1_000)]);
    old.renew('a', 100);
    expect(old.deadlineOf('a')).toBe(1_100);
    // The old leader fails at 1_050, 50 ms before the deadline; the new leader takes office at 1_400.
    const fresh = new LeaseManager();
    fresh.becomeLeader(1_400, [rec('a', 1_000)]);
    expect(fresh.deadlineOf('a')).toBe(2_400);
    expect(checkUntil(fresh, 1_400, 2_300)).toEqual([]);
    // The agent's heartbeats reach the new leader: it lives on.
    fresh.renew('a', 2_000);
    expect(checkUntil(fresh, 2_300, 2_900)).toEqual([]);
    expect(fresh.expired(3_000, 3_000, LIMITS)).toEqual([rec('a', 1_000)]);
  });

  it('stepDown forgets everything: nothing expires, renewals find nothing', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 100), rec('b', 100)]);
    expect(m.expired(100, 100, LIMITS).length).toBe(2);
    m.stepDown();
    expect(m.active).toBe(false);
    expect(m.size).toBe(0);
    expect(m.pendingCount).toBe(0);
    expect(m.renew('a', 150)).toBeUndefined();
    expect(m.deadlineOf('a')).toBeUndefined();
    expect(m.expired(10_000, 10_000, LIMITS)).toEqual([]);
    m.retryPending();
    expect(m.expired(10_100, 10_100, LIMITS)).toEqual([]);
  });

  it('taking office again starts over: no pending marks and no stall shift carried over', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 100)]);
    m.expired(5_000, 5_000, LIMITS); // a stall: shifts by 5_000
    m.stepDown();
    m.becomeLeader(6_000, [rec('a', 100)]);
    expect(m.deadlineOf('a')).toBe(6_100);
    expect(m.expired(6_100, 6_100, LIMITS)).toEqual([rec('a', 100)]);
  });
});

describe('lease manager: a leader that lost its quorum or stalled (etcd issue 15247)', () => {
  it('expires nothing while the quorum confirmation is older than maxQuorumAgeMs', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 2_000), rec('b', 2_000)]);
    // Confirmed at 400 last; from 1_500 on the confirmation is stale: nothing expires, although
    // both deadlines (2_000) pass.
    for (let t = LEASE_CHECK_INTERVAL_MS; t <= 5_000; t += LEASE_CHECK_INTERVAL_MS) expect(m.expired(t, Math.min(t, 400), LIMITS)).toEqual([]);
    // At exactly maxQuorumAgeMs the confirmation still counts.
    expect(m.expired(5_100, 4_100, LIMITS).map((r) => r.id)).toEqual(['a', 'b']);
  });

  it('a gap between calls longer than maxTickGapMs moves every deadline forward by the gap', () => {
    const m = new LeaseManager();
    m.becomeLeader(0, [rec('a', 1_000), rec('b', 3_000)]);
    expect(m.expired(100, 100, LIMITS)).toEqual([]);
    // The process stalls from 100 to 5_100 (5 s): no lease expires because of it.
    expect(m.expired(5_100, 5_100, LIMITS)).toEqual([]);
    expect(m.deadlineOf('a')).toBe(6_000);
    expect(m.deadlineOf('b')).toBe(8_000);
    expect(checkUntil(m, 5_100, 5_900)).toEqual([]);
    expect(m.expired(6_000, 6_000, LIMITS)).toEqual([rec('a', 1_000)]);
    // A renewal after the stall counts from its own time.
    m.renew('b', 6_000);
    expect(m.deadlineOf('b')).toBe(9_000);
    // A gap of exactly maxTickGapMs is not a stall.
    expect(m.expired(6_000 + MAX_LEASE_CHECK_GAP_MS, 6_000 + MAX_LEASE_CHECK_GAP_MS, LIMITS)).toEqual([]);
    expect(m.deadlineOf('b')).toBe(9_000);
  });

  it('tracks 100k leases, expiring a batch per call without scanning the rest', () => {
    const m = new LeaseManager();
    const n = 100_000;
    const leases = Array.from({ length: n }, (_, i) => rec(`agent-${i}`, 10_000 + (i % 1_000) * 10));
    m.becomeLeader(0, leases);
    for (let i = 0; i < n; i += 2) m.renew(`agent-${i}`, 5_000);
    const started = performance.now();
    let calls = 0;
    let expired = 0;
    for (let t = 0; t <= 12_000; t += LEASE_CHECK_INTERVAL_MS) {
      expired += m.expired(t, t, LIMITS).length;
      calls++;
    }
    // Odd ids were never renewed: deadlines 10_000 + (i % 1000) * 10 <= 12_000 for i % 1000 <= 200.
    expect(expired).toBe(Array.from({ length: n }, (_, i) => i).filter((i) => i % 2 === 1 && (i % 1_000) * 10 <= 2_000).length);
    expect(calls).toBe(121);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

// ---------------------------------------------------------------------------------------------
// The reference model: a plain map of deadlines, scanned in full, the rules written naively.

type Op =
  | { readonly k: 'lead'; readonly ids: readonly number[]; readonly ttl: number }
  | { readonly k: 'stepDown' }
  | { readonly k: 'renew'; readonly id: number }
  | { readonly k: 'upsert'; readonly id: number; readonly ttl: number }
  | { readonly k: 'remove'; readonly id: number }
  | { readonly k: 'advance'; readonly ms: number }
  | { readonly k: 'check'; readonly quorumAgeMs: number; readonly batch: number }
  | { readonly k: 'retry' };

const IDS = 6;
const arbId = fc.nat({ max: IDS - 1 });
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ k: fc.constant('lead' as const), ids: fc.uniqueArray(arbId, { maxLength: IDS }), ttl: fc.integer({ min: 1, max: 2_000 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'stepDown' as const }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('renew' as const), id: arbId }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('upsert' as const), id: arbId, ttl: fc.integer({ min: 0, max: 2_000 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('remove' as const), id: arbId }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('advance' as const), ms: fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 3_000 })) }) },
  {
    weight: 6,
    arbitrary: fc.record({ k: fc.constant('check' as const), quorumAgeMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1_500 })), batch: fc.integer({ min: 1, max: 4 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ k: 'retry' as const }) },
);

interface ModelLease {
  record: LeaseRecord;
  deadline: number;
  pending: boolean;
}

class Model {
  leading = false;
  leases = new Map<string, ModelLease>();
  lastCheck: number | undefined;

  expired(now: number, confirmedAt: number, limits: typeof LIMITS): LeaseRecord[] {
    if (!this.leading) return [];
    if (this.lastCheck !== undefined && now - this.lastCheck > limits.maxTickGapMs) {
      const gap = now - this.lastCheck;
      for (const l of this.leases.values()) l.deadline += gap;
    }
    this.lastCheck = now;
    if (now - confirmedAt > limits.maxQuorumAgeMs) return [];
    const due = [...this.leases.values()]
      .filter((l) => !l.pending && l.deadline <= now)
      .sort((a, b) => a.deadline - b.deadline || (a.record.id < b.record.id ? -1 : a.record.id > b.record.id ? 1 : 0))
      .slice(0, limits.maxBatch);
    for (const l of due) l.pending = true;
    return due.map((l) => l.record);
  }
}

describe('lease manager: against a reference model', () => {
  it('returns exactly what a full scan of a map of deadlines returns, over random operation sequences', () => {
    fc.assert(
      fc.property(fc.array(arbOp, { maxLength: 120 }), (ops) => {
        const m = new LeaseManager();
        const model = new Model();
        let now = 0;
        let rev = 0;
        /** Writes returned by `expired` and not touched since: none may be returned twice. */
        const outstanding = new Set<string>();
        const touch = (id: string) => {
          for (const key of outstanding) if (key.startsWith(`${id}@`)) outstanding.delete(key);
        };
        for (const op of ops) {
          switch (op.k) {
            case 'lead': {
              const recs = op.ids.map((i) => rec(`a${i}`, op.ttl, ++rev));
              m.becomeLeader(now, recs);
              outstanding.clear();
              model.leading = true;
              model.lastCheck = now;
              model.leases = new Map(recs.map((r) => [r.id, { record: r, deadline: now + r.ttlMs, pending: false }]));
              break;
            }
            case 'stepDown':
              m.stepDown();
              outstanding.clear();
              model.leading = false;
              model.leases.clear();
              model.lastCheck = undefined;
              break;
            case 'renew': {
              const id = `a${op.id}`;
              const l = model.leases.get(id);
              expect(m.renew(id, now)).toBe(l?.record.ttlMs);
              touch(id);
              if (l) {
                l.deadline = now + l.record.ttlMs;
                l.pending = false;
              }
              break;
            }
            case 'upsert': {
              const r = rec(`a${op.id}`, op.ttl, ++rev);
              m.upsert(r, now);
              touch(r.id);
              if (model.leading) {
                if (op.ttl > 0) model.leases.set(r.id, { record: r, deadline: now + op.ttl, pending: false });
                else model.leases.delete(r.id);
              }
              break;
            }
            case 'remove':
              m.remove(`a${op.id}`);
              touch(`a${op.id}`);
              model.leases.delete(`a${op.id}`);
              break;
            case 'advance':
              now += op.ms;
              break;
            case 'check': {
              const limits = { ...LIMITS, maxBatch: op.batch };
              const got = m.expired(now, now - op.quorumAgeMs, limits);
              expect(got).toEqual(model.expired(now, now - op.quorumAgeMs, limits));
              for (const r of got) {
                const key = `${r.id}@${r.modRevision}`;
                expect(outstanding.has(key), `${key} returned twice`).toBe(false);
                outstanding.add(key);
              }
              break;
            }
            case 'retry':
              m.retryPending();
              outstanding.clear();
              for (const l of model.leases.values()) l.pending = false;
              break;
          }
          expect(m.active).toBe(model.leading);
          expect(m.size).toBe(model.leases.size);
          for (let i = 0; i < IDS; i++) expect(m.deadlineOf(`a${i}`)).toBe(model.leases.get(`a${i}`)?.deadline);
        }
      }),
      { numRuns: 500 },
    );
  });
});
