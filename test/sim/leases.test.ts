/**
 * Lease expiry in the simulator of the shipped node loop: agents registered with a TTL heartbeat
 * through any node (a follower forwards to its leader over the simulated API link); every leader
 * runs the production lease policy on simulated time and proposes `expire` commands. The rules
 * under test are etcd's: a new leader gives every lease a fresh full TTL (etcd issue 2660), and a
 * leader whose quorum confirmation is older than an election timeout expires nothing (etcd issue
 * 15247). Every Raft invariant is checked after every event, as in the other simulator suites.
 *
 * Times are ms; the timing is the production default (ticks of 100 ms, elections of 1-2 s).
 * TTLs are whole seconds, as on the wire; the simulated nodes accept leases from 1 s, below the
 * production minimum, to probe the bounds.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkLinearizable, describeOperation } from '../support/linearizability.js';
import { WARMUP_MS } from './schedule.js';
import { SafetyViolation, SIM_ELECTION_MS, SIM_ELECTION_TICKS, SIM_TICK_MS, Simulation, type ClientCall, type SimBugs } from './simulator.js';

/** Client heartbeat period, in ms. */
const HEARTBEAT_MS = 200;
/** Commit latency allowed for an `expire` (one check period plus replication and apply), in ms. */
const EXPIRY_SLACK_MS = 400;

async function leaseSim(nodes: 3 | 5, seed: number, bugs?: SimBugs): Promise<Simulation> {
  const sim = await Simulation.create({ nodes, seed, ...(bugs ? { bugs } : {}) });
  await sim.run(WARMUP_MS);
  expect(sim.leader()).toBeDefined();
  return sim;
}

function others(sim: Simulation, ...not: string[]): string[] {
  return sim.ids.filter((id) => !not.includes(id));
}

async function settle(sim: Simulation, calls: readonly ClientCall[], maxMs = 10_000): Promise<void> {
  await sim.runUntil(() => calls.every((c) => c.outcome !== 'pending'), maxMs);
}

/** The lease (TTL in ms, write) node `id` holds for `key`, read from its applied state. */
async function leaseOn(sim: Simulation, id: string, key: string): Promise<{ ttlMs: number; modRevision: number } | undefined> {
  const sm = sim.get(id).sm;
  if (!sm) return undefined;
  return (await sim.await(sm.leases())).find((l) => l.id === key);
}

/** Whether node `id` holds agent `key`. */
async function holds(sim: Simulation, id: string, key: string): Promise<boolean> {
  const sm = sim.get(id).sm;
  if (!sm) throw new Error(`${id} is down`);
  return (await sim.await(sm.get(key))) !== undefined;
}

/** Registers `key` with a lease through the leader and runs until every running node applied it. */
async function register(sim: Simulation, key: string, ttlSeconds: number): Promise<void> {
  const c = sim.registerLease(sim.leader() as string, key, ttlSeconds);
  await settle(sim, [c]);
  expect(c.outcome).toBe('ok');
  await sim.runUntil(() => sim.upNodes().every((n) => n.node.appliedIndex >= (c.revision ?? 0)), 2_000);
  for (const n of sim.upNodes()) expect(await leaseOn(sim, n.id, key), n.id).toBeDefined();
}

describe('leases: a live agent is never expired', () => {
  it('heartbeats through the majority side of a partition keep the agent through a leader change; the old leader, cut off in a minority, expires nothing', async () => {
    const sim = await leaseSim(5, 21);
    const old = sim.leader() as string;
    const oldTerm = sim.get(old).node.core.raft.currentTerm;
    const minority = [old, others(sim, old)[0] as string];
    const majority = others(sim, ...minority);
    await register(sim, 'agent', 3);
    sim.startHeartbeats('agent', { everyMs: HEARTBEAT_MS, via: majority, ttlSeconds: 3 });
    await sim.run(5_000);
    sim.partition([minority, majority]);
    await sim.run(20_000);
    const fresh = sim.leader() as string;
    expect(majority).toContain(fresh);
    expect(sim.get(fresh).node.core.raft.currentTerm).toBeGreaterThan(oldTerm);
    // The old leader stepped down (CheckQuorum) and holds no deadlines.
    expect(sim.get(old).node.core.raft.role).not.toBe('leader');
    expect(sim.get(old).node.leases.active).toBe(false);
    // A second leader change on the majority side: its leader is cut off alone.
    sim.partition([[fresh], others(sim, fresh)]);
    sim.startHeartbeats('agent', { everyMs: HEARTBEAT_MS, via: others(sim, fresh), ttlSeconds: 3 });
    await sim.run(20_000);
    expect(sim.leader()).not.toBe(fresh);
    sim.heal();
    await sim.run(10_000);
    // The heartbeats reached a leader to the end, and no expire of the agent ever applied anywhere.
    expect(sim.now - (sim.lastRenewal.get('agent') ?? 0)).toBeLessThanOrEqual(2 * HEARTBEAT_MS);
    expect(sim.expiriesOf('agent').all).toEqual([]);
    expect(sim.expireProposals.filter((p) => p.items.some((i) => i.id === 'agent'))).toEqual([]);
    for (const n of sim.upNodes()) expect(await holds(sim, n.id, 'agent'), n.id).toBe(true);
  });

  it('through a leader crash: the new leader gives a fresh TTL, so the election gap (longer than the TTL) expires nothing', async () => {
    const ttlSeconds = 1;
    const sim = await leaseSim(3, 5);
    const old = sim.leader() as string;
    await register(sim, 'agent', ttlSeconds);
    sim.startHeartbeats('agent', { everyMs: HEARTBEAT_MS, via: sim.ids, ttlSeconds });
    await sim.run(3_000);
    const lastBefore = sim.lastRenewal.get('agent') as number;
    sim.crash(old);
    await sim.awaitLeader();
    const fresh = sim.leader() as string;
    expect(fresh).not.toBe(old);
    // The new leader took office with the lease, at a full TTL from its first moment.
    const took = sim.now;
    await sim.run(SIM_TICK_MS);
    expect(sim.get(fresh).node.leases.deadlineOf('agent')).toBeGreaterThanOrEqual(took + ttlSeconds * 1000 - SIM_TICK_MS);
    expect(await sim.runUntil(() => (sim.lastRenewal.get('agent') as number) > lastBefore, 2_000)).toBe(true);
    // No renewal for longer than the TTL: only the fresh TTL kept the agent.
    expect((sim.lastRenewal.get('agent') as number) - lastBefore).toBeGreaterThan(ttlSeconds * 1000);
    await sim.run(5_000);
    sim.restart(old);
    await sim.run(10_000);
    expect(sim.expiriesOf('agent').all).toEqual([]);
    for (const n of sim.upNodes()) expect(await holds(sim, n.id, 'agent'), n.id).toBe(true);
  });
});

describe('leases: an agent whose heartbeats stop expires exactly once', () => {
  /** Checks the single expiry of `key`: the same index on every node, within the bounds after `lastRenewal`. */
  async function expectSingleExpiry(sim: Simulation, key: string, lastRenewal: number, ttlMs: number, maxDelay: number): Promise<void> {
    const { all, deleted } = sim.expiriesOf(key);
    expect(new Set(all.map((x) => x.index)).size, 'one expire entry').toBe(1);
    expect(deleted.map((x) => x.node).sort()).toEqual([...sim.ids].sort());
    expect(all.length).toBe(sim.ids.length);
    for (const x of deleted) {
      expect(x.at - lastRenewal, `${x.node} applied the expiry too early`).toBeGreaterThanOrEqual(ttlMs);
      expect(x.at - lastRenewal, `${x.node} applied the expiry too late`).toBeLessThanOrEqual(ttlMs + maxDelay);
    }
    expect(sim.expireProposals.filter((p) => p.items.some((i) => i.id === key)).length).toBe(1);
    for (const n of sim.upNodes()) expect(await holds(sim, n.id, key), n.id).toBe(false);
  }

  it('on every node at the same log index, within ttl + one election timeout after its last renewal', async () => {
    const ttlSeconds = 2;
    const sim = await leaseSim(3, 8);
    await register(sim, 'agent', ttlSeconds);
    await register(sim, 'other', ttlSeconds);
    sim.startHeartbeats('agent', { everyMs: HEARTBEAT_MS, via: sim.ids, ttlSeconds });
    sim.startHeartbeats('other', { everyMs: HEARTBEAT_MS, via: sim.ids, ttlSeconds });
    await sim.run(5_000);
    sim.stopHeartbeats('agent');
    await sim.run(HEARTBEAT_MS);
    const last = sim.lastRenewal.get('agent') as number;
    await sim.run(ttlSeconds * 1000 + SIM_ELECTION_MS + EXPIRY_SLACK_MS + 5_000);
    await expectSingleExpiry(sim, 'agent', last, ttlSeconds * 1000, SIM_ELECTION_MS + EXPIRY_SLACK_MS);
    // The other agent heartbeats on and stays.
    expect(sim.expiriesOf('other').all).toEqual([]);
  });

  it('when the leader crashes after the last renewal, the new leader expires it, once, a TTL after taking office', async () => {
    const ttlSeconds = 2;
    const sim = await leaseSim(3, 9);
    const old = sim.leader() as string;
    await register(sim, 'agent', ttlSeconds);
    sim.startHeartbeats('agent', { everyMs: HEARTBEAT_MS, via: sim.ids, ttlSeconds });
    await sim.run(4_000);
    sim.stopHeartbeats('agent');
    await sim.run(HEARTBEAT_MS);
    const last = sim.lastRenewal.get('agent') as number;
    sim.crash(old);
    expect(await sim.runUntil(() => sim.leader() !== undefined, 10_000)).toBe(true);
    const took = sim.now;
    expect(took - last).toBeGreaterThan(SIM_ELECTION_MS);
    await sim.run(ttlSeconds * 1000 + EXPIRY_SLACK_MS);
    sim.restart(old);
    await sim.run(10_000);
    expect(sim.leader()).not.toBe(old);
    // The restarted node catches up from the log: it applies the same expire entry.
    await expectSingleExpiry(sim, 'agent', last, ttlSeconds * 1000, took - last + EXPIRY_SLACK_MS + 10_000);
    const first = Math.min(...sim.expiriesOf('agent').deleted.map((x) => x.at));
    expect(first - took).toBeGreaterThanOrEqual(ttlSeconds * 1000);
    expect(first - took).toBeLessThanOrEqual(ttlSeconds * 1000 + EXPIRY_SLACK_MS);
  });

  it('a re-registration while an expiry is in flight survives it (the expiry names the old write)', async () => {
    const sim = await leaseSim(3, 12);
    await register(sim, 'agent', 1);
    const firstWrite = (await leaseOn(sim, sim.leader() as string, 'agent'))?.modRevision as number;
    // No heartbeats: the leader finds the lease lapsed at a check; the agent registers again at once.
    expect(await sim.runUntil(() => sim.expireProposals.length > 0, 3_000)).toBe(true);
    sim.registerLease(sim.leader() as string, 'agent', 1);
    sim.startHeartbeats('agent', { everyMs: HEARTBEAT_MS, via: sim.ids, ttlSeconds: 1 });
    await sim.run(10_000);
    const { all } = sim.expiriesOf('agent');
    expect(all.every((x) => x.modRevision === firstWrite)).toBe(true);
    for (const n of sim.upNodes()) {
      // Either the expiry came first (and the new write holds the key) or it found the new write.
      expect(await holds(sim, n.id, 'agent'), n.id).toBe(true);
      expect((await leaseOn(sim, n.id, 'agent'))?.modRevision).toBeGreaterThan(firstWrite);
    }
  });
});

describe('leases: a leader cut off in a minority (etcd issue 15247)', () => {
  /**
   * 5 nodes. `live` heartbeats through the majority side throughout; `dying` heartbeats through
   * the leader L until the partition cuts L off with one follower, then stops. The partition
   * falls mid-way between two CheckQuorum rounds of L, so L stays leader ~1.5 s while its
   * quorum confirmation is stale after 1 s: `dying` (TTL 1 s) lapses on L in that window.
   */
  async function cutOffLeader(bugs?: SimBugs) {
    const sim = await leaseSim(5, 31, bugs);
    const old = sim.leader() as string;
    const oldTerm = sim.get(old).node.core.raft.currentTerm;
    const minority = [old, others(sim, old)[0] as string];
    const majority = others(sim, ...minority);
    await register(sim, 'live', 3);
    await register(sim, 'dying', 1);
    sim.startHeartbeats('live', { everyMs: HEARTBEAT_MS, via: majority, ttlSeconds: 3 });
    sim.startHeartbeats('dying', { everyMs: HEARTBEAT_MS, via: [old], ttlSeconds: 1 });
    await sim.run(3_000);
    expect(await sim.runUntil(() => sim.get(old).node.core.raft.electionElapsedTicks === SIM_ELECTION_TICKS / 2, 2_000)).toBe(true);
    sim.stopHeartbeats('dying');
    const last = sim.heartbeat(old, 'dying');
    await settle(sim, [last]);
    expect(last.outcome).toBe('ok');
    const cut = sim.now;
    sim.partition([minority, majority]);
    // Past the deadline of `dying` on L by two checks: L still leads, on a stale confirmation.
    await sim.run(1_000 + 2 * SIM_TICK_MS);
    const l = sim.get(old).node;
    const stillLeading = l.core.raft.role === 'leader' && l.core.raft.currentTerm === oldTerm;
    const stale = sim.now - l.quorumConfirmedAt();
    const lapsed = (l.leases.deadlineOf('dying') ?? Number.POSITIVE_INFINITY) <= sim.now;
    await sim.run(30_000);
    sim.heal();
    await sim.run(10_000);
    return { sim, old, oldTerm, cut, stillLeading, stale, lapsed };
  }

  it('proposes no expiry once its confirmation is stale, and none of its term ever commits', async () => {
    const { sim, old, oldTerm, cut, stillLeading, stale, lapsed } = await cutOffLeader();
    // The scenario reached the window: L leads, its confirmation is stale, `dying` lapsed on it.
    expect(stillLeading).toBe(true);
    expect(stale).toBeGreaterThan(SIM_ELECTION_MS);
    expect(lapsed).toBe(true);
    expect(sim.expireProposals.filter((p) => p.node === old && p.at >= cut)).toEqual([]);
    expect(sim.expiriesApplied.filter((x) => x.term === oldTerm)).toEqual([]);
    // The majority side expired `dying`, once, in a later term; `live` lives.
    const dying = sim.expiriesOf('dying');
    expect(new Set(dying.deleted.map((x) => x.index)).size).toBe(1);
    expect(dying.deleted.length).toBe(5);
    expect(dying.deleted.every((x) => x.term > oldTerm)).toBe(true);
    expect(sim.expiriesOf('live').all).toEqual([]);
    for (const n of sim.upNodes()) expect(await holds(sim, n.id, 'live'), n.id).toBe(true);
  });

  it('without the quorum-age gate (a deliberate bug) the cut-off leader proposes expiries, which Raft keeps from committing', async () => {
    const { sim, old, oldTerm, cut, stillLeading } = await cutOffLeader({ ignoreQuorumAge: true });
    expect(stillLeading).toBe(true);
    const stray = sim.expireProposals.filter((p) => p.node === old && p.at >= cut && p.term === oldTerm);
    expect(stray.some((p) => p.items.some((i) => i.id === 'dying'))).toBe(true);
    expect(sim.expiriesApplied.filter((x) => x.term === oldTerm)).toEqual([]);
    expect(sim.expiriesOf('live').all).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Generated schedules

/**
 * Events of the lease schedules. The cluster's nodes are split once and for all into a core
 * majority C (n1..n3 of 5, n1..n2 of 3) and the rest R. Faults touch only R: a node of R or all
 * of R is cut off (symmetric partitions), crashed and restarted; the leader is cut off or
 * crashed when it is in R; leadership is handed to a node of R (thesis §3.10), so leaders
 * change often. So C stays up and connected for the whole run, on a clean network.
 */
type LeaseEvent =
  | { readonly t: 'run'; readonly ms: number }
  | { readonly t: 'isolate'; readonly node: number }
  | { readonly t: 'isolateRest' }
  | { readonly t: 'heal' }
  | { readonly t: 'bounce'; readonly node: number; readonly down: number }
  | { readonly t: 'isolateLeader'; readonly after: number }
  | { readonly t: 'killLeader'; readonly after: number; readonly down: number }
  | { readonly t: 'transfer'; readonly node: number }
  | { readonly t: 'flaky'; readonly on: boolean }
  | { readonly t: 'write'; readonly node: number; readonly del: boolean; readonly key: number; readonly gap: number };

interface LeaseRun {
  readonly nodes: 3 | 5;
  readonly seed: number;
  readonly events: readonly LeaseEvent[];
}

/**
 * TTL of the agent that heartbeats throughout, in s. Why it never expires: an expiry needs a
 * leader whose quorum was confirmed within one election timeout (1 s) and whose deadline passed.
 * Any majority contains a node of C, and C is never split, so a leader with a fresh confirmation
 * was in C's component at most 1 s ago; while it is, every node of C knows it within a heartbeat
 * round and the agent's heartbeats (every 200 ms, through the nodes of C) renew the lease there.
 * A new leader starts from a full TTL. The longest a leader can go without renewals and still
 * expire is when it is cut off from C and the partition heals just before CheckQuorum deposes it
 * (under two election timeouts): its confirmation is fresh again at once, and the heartbeats
 * that went nowhere meanwhile count against the agent. So the TTL must exceed two election
 * timeouts plus a heartbeat period; 4 s leaves room (and is the production minimum's shape: 5 s
 * for elections of up to 2 s).
 */
const LIVE_TTL_SECONDS = 4;
/** TTL of the agent whose heartbeats go on and off, in s. */
const FLAKY_TTL_SECONDS = 2;

const rest = fc.nat({ max: 1 });
const arbLeaseEvent: fc.Arbitrary<LeaseEvent> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('run' as const), ms: fc.integer({ min: 10, max: 3_000 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('isolate' as const), node: rest }) },
  { weight: 1, arbitrary: fc.constant({ t: 'isolateRest' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'heal' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('bounce' as const), node: rest, down: fc.integer({ min: 0, max: 3_000 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('isolateLeader' as const), after: fc.integer({ min: 0, max: 1_500 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('killLeader' as const), after: fc.integer({ min: 0, max: 1_500 }), down: fc.integer({ min: 0, max: 3_000 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('transfer' as const), node: rest }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('flaky' as const), on: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('write' as const), node: fc.nat({ max: 4 }), del: fc.boolean(), key: fc.nat({ max: 2 }), gap: fc.integer({ min: 0, max: 400 }) }),
  },
);

function arbLeaseRun(nodes: 3 | 5): fc.Arbitrary<LeaseRun> {
  return fc.record({
    nodes: fc.constant(nodes),
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
    events: fc.array(arbLeaseEvent, { minLength: 5, maxLength: 30 }),
  });
}

/** How the heartbeating agent is set up in a lease schedule. */
interface LiveAgent {
  readonly ttlSeconds: number;
  /** Heartbeat period, in ms. */
  readonly everyMs: number;
  /** `core`: heartbeats through the nodes of C (the property's premise); `all`: through every node in turn. */
  readonly via: 'core' | 'all';
}

/** What a lease schedule found: the first failure, or counts for the coverage checks. */
interface LeaseRunResult {
  readonly error?: string;
  readonly trace?: string[];
  /** Deletions of the flaky agent by an expire (node applications). */
  readonly flakyExpiries: number;
  /** Terms that passed after the warm-up (leader changes, at most). */
  readonly newTerms: number;
}

/** Runs a lease schedule; returns the first violation (SafetyViolation) found. */
async function runLeaseSchedule(run: LeaseRun, live: LiveAgent = { ttlSeconds: LIVE_TTL_SECONDS, everyMs: HEARTBEAT_MS, via: 'core' }, trace = false): Promise<LeaseRunResult> {
  const sim = await Simulation.create({ nodes: run.nodes, seed: run.seed, trace });
  const core = sim.ids.slice(0, run.nodes === 5 ? 3 : 2);
  const restIds = sim.ids.filter((id) => !core.includes(id));
  const inRest = (i: number) => restIds[i % restIds.length] as string;
  let termAfterWarmup = 0;
  const maxTerm = () => Math.max(...sim.upNodes().map((n) => n.node.core.raft.currentTerm));
  try {
    await sim.run(WARMUP_MS);
    termAfterWarmup = maxTerm();
    // Both agents register through the core (retried until a leader takes them).
    for (const [key, ttl] of [['live', live.ttlSeconds], ['flaky', FLAKY_TTL_SECONDS]] as const) {
      let done = false;
      for (let i = 0; i < 20 && !done; i++) {
        const c = sim.registerLease(core[i % core.length] as string, key, ttl);
        await settle(sim, [c]);
        done = c.outcome === 'ok';
        if (!done) await sim.run(400);
      }
      if (!done) throw new SafetyViolation(`${key} never registered`);
    }
    sim.startHeartbeats('live', { everyMs: live.everyMs, via: live.via === 'core' ? core : sim.ids, ttlSeconds: live.ttlSeconds });
    sim.startHeartbeats('flaky', { everyMs: HEARTBEAT_MS, via: core, ttlSeconds: FLAKY_TTL_SECONDS, reregister: true });
    for (const e of run.events) {
      switch (e.t) {
        case 'run':
          await sim.run(e.ms);
          break;
        case 'isolate':
          sim.partition([[inRest(e.node)], others(sim, inRest(e.node))]);
          break;
        case 'isolateRest':
          sim.partition([restIds, core]);
          break;
        case 'heal':
          sim.heal();
          break;
        case 'bounce':
          sim.crash(inRest(e.node));
          await sim.run(e.down);
          sim.restart(inRest(e.node));
          break;
        case 'isolateLeader': {
          await sim.run(e.after);
          const l = sim.leader();
          if (l && restIds.includes(l)) sim.partition([[l], others(sim, l)]);
          break;
        }
        case 'killLeader': {
          await sim.run(e.after);
          const l = sim.leader();
          if (!l || !restIds.includes(l)) break;
          sim.crash(l);
          await sim.run(e.down);
          sim.restart(l);
          break;
        }
        case 'transfer': {
          const l = sim.leader();
          const target = inRest(e.node);
          if (l && l !== target && sim.get(target).up) sim.get(l).api?.transferLeadership({ target_id: target }, { budgetMs: 3_000 }).catch(() => undefined);
          break;
        }
        case 'flaky':
          if (!e.on) sim.stopHeartbeats('flaky');
          else if (!sim.heartbeaters.has('flaky')) sim.startHeartbeats('flaky', { everyMs: HEARTBEAT_MS, via: core, ttlSeconds: FLAKY_TTL_SECONDS, reregister: true });
          break;
        case 'write':
          sim.write(sim.ids[e.node % sim.ids.length] as string, e.del ? 'deregister' : 'register', `k${e.key}`);
          await sim.run(e.gap);
          break;
      }
    }
    // Heal, let the flaky agent die, and check that everything converges.
    sim.stopHeartbeats('flaky');
    await sim.checkLiveness(['k0', 'k1', 'k2']);
    await sim.run(FLAKY_TTL_SECONDS * 1000 + 2 * SIM_ELECTION_MS + 2 * EXPIRY_SLACK_MS);
    sim.finish();
    const lin = checkLinearizable(sim.history);
    if (lin.ok === false) throw new SafetyViolation(`not linearizable on ${lin.key}: ${lin.reason}\n${lin.history.map(describeOperation).join('\n')}`);
    const expiredLive = sim.expiriesOf('live').deleted;
    if (expiredLive.length > 0) throw new SafetyViolation(`the live agent was expired: ${JSON.stringify(expiredLive[0])}`);
    for (const n of sim.upNodes()) {
      if (!(await holds(sim, n.id, 'live'))) throw new SafetyViolation(`${n.id} lost the live agent`);
      if (await holds(sim, n.id, 'flaky')) throw new SafetyViolation(`${n.id} still holds the flaky agent, long after its heartbeats stopped`);
    }
    // Every write of the flaky agent was deleted by at most one expire entry (the same on every node).
    const byWrite = new Map<number, Set<number>>();
    for (const x of sim.expiriesOf('flaky').deleted) byWrite.set(x.modRevision, (byWrite.get(x.modRevision) ?? new Set()).add(x.index));
    for (const [w, idx] of byWrite) if (idx.size !== 1) throw new SafetyViolation(`write ${w} of the flaky agent deleted by several entries: ${[...idx].join(',')}`);
    // The nodes agree on the leased keys and their writes.
    const leasesOf = async (id: string) => JSON.stringify(await sim.await((sim.get(id).sm as NonNullable<ReturnType<Simulation['get']>['sm']>).leases()));
    const want = await leasesOf(sim.ids[0] as string);
    for (const id of sim.ids) if ((await leasesOf(id)) !== want) throw new SafetyViolation(`${id} disagrees on the leases`);
    return { flakyExpiries: sim.expiriesOf('flaky').deleted.length, newTerms: maxTerm() - termAfterWarmup };
  } catch (err) {
    if (!(err instanceof SafetyViolation)) throw err;
    return { error: err.message, trace: sim.trace, flakyExpiries: 0, newTerms: 0 };
  }
}

/** Replays a failing lease schedule with the trace on, for the report. */
async function explainLeaseRun(run: LeaseRun, live?: LiveAgent, lines = 80): Promise<string> {
  const again = await runLeaseSchedule(run, live, true);
  return [`seed=${run.seed} nodes=${run.nodes}`, `events=${JSON.stringify(run.events)}`, `violation: ${again.error ?? '(none on replay)'}`, ...(again.trace ?? []).slice(-lines)].join('\n');
}

/** Schedules per cluster size (`SIM_LEASE_RUNS` lengthens a run, `SIM_SEED` replays one). */
const LEASE_RUNS = Number(process.env.SIM_LEASE_RUNS ?? 100);
const SEED = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);

describe('leases under generated schedules', () => {
  for (const nodes of [3, 5] as const) {
    it(`${nodes} nodes: the invariants hold, the agent heartbeating through the connected majority is never expired, the silent one is, once per write`, async () => {
      let flakyExpiries = 0;
      let newTerms = 0;
      const result = await fc.check(
        fc.asyncProperty(arbLeaseRun(nodes), async (run) => {
          const r = await runLeaseSchedule(run);
          flakyExpiries += r.flakyExpiries;
          newTerms += r.newTerms;
          return r.error === undefined;
        }),
        { numRuns: LEASE_RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) },
      );
      if (result.failed) expect.fail(`seed ${result.seed}, path ${result.counterexamplePath ?? ''}\n${await explainLeaseRun(result.counterexample?.[0] as LeaseRun)}`);
      // Coverage: the schedules changed leaders and expired the silent agent.
      expect(newTerms).toBeGreaterThan(LEASE_RUNS / 2);
      expect(flakyExpiries).toBeGreaterThan(LEASE_RUNS);
    }, 1_200_000);
  }

  it('the property has teeth: heartbeats through nodes that get cut off, with a short TTL, do get the agent expired, and the check reports it', async () => {
    // A TTL of one election timeout, and heartbeats rare enough that two lost in a row lapse it.
    const live: LiveAgent = { ttlSeconds: 1, everyMs: 600, via: 'all' };
    let runs = 0;
    const result = await fc.check(
      fc.asyncProperty(arbLeaseRun(5), async (run) => {
        runs++;
        return (await runLeaseSchedule(run, live)).error === undefined;
      }),
      { numRuns: 200, seed: 7, endOnFailure: true },
    );
    expect(result.failed, `not found in ${runs} schedules`).toBe(true);
    const again = await runLeaseSchedule(result.counterexample?.[0] as LeaseRun, live);
    expect(again.error).toMatch(/live agent/);
  }, 600_000);
});
