/**
 * Lease expiry in the deterministic simulator: agents registered with a TTL heartbeat through
 * any node (a follower forwards to the leader it knows); every leader keeps a `LeaseManager` on
 * simulated time and proposes `expire` commands, as the registry node does. The rules under
 * test are etcd's: a new leader gives every lease a fresh full TTL (etcd issue 2660), and a
 * leader whose quorum confirmation is older than an election timeout expires nothing (etcd
 * issue 15247). Every Raft invariant is checked after every simulated unit, as in the other
 * simulator suites.
 *
 * Times are simulated units (TICK_UNITS per tick; the election timeout is
 * SIM_ELECTION_TICKS ticks, randomized up to twice that).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { NodeId } from '../../src/raft/index.js';
import { checkLinearizable, describeOperation } from '../support/linearizability.js';
import { WARMUP_UNITS } from './schedule.js';
import { SafetyViolation, SIM_ELECTION_TICKS, Simulation, TICK_UNITS, type SimLeaseOptions } from './simulator.js';

/** One election timeout, in units (the randomized timeout lies in [1, 2) of it). */
const ELECTION_UNITS = SIM_ELECTION_TICKS * TICK_UNITS;
/** Client heartbeat period, in units. */
const HEARTBEAT_UNITS = 20;
/** Commit latency allowed for an `expire` (one check period plus replication and apply), in units. */
const EXPIRY_SLACK_UNITS = 40;

function leaseSim(nodes: 3 | 5, seed: number, leases: SimLeaseOptions = {}): Simulation {
  const sim = new Simulation({ nodes, seed, leases });
  sim.run(WARMUP_UNITS);
  expect(sim.leader()).toBeDefined();
  return sim;
}

function others(sim: Simulation, ...not: string[]): string[] {
  return sim.ids.filter((id) => !not.includes(id));
}

/** Registers `key` with a lease through the leader and runs until every up node applied it. */
function register(sim: Simulation, key: string, ttl: number): void {
  expect(sim.registerLease(sim.leader() as string, key, ttl)).toBe(true);
  for (let i = 0; i < 200 && !sim.upNodes().every((n) => n.sm.leases.has(key)); i++) sim.step();
  expect(sim.upNodes().every((n) => n.sm.leases.has(key))).toBe(true);
}

/** Every `expire` of `key` applied on any node, and those that deleted it. */
function expiriesOf(sim: Simulation, key: string): { all: Simulation['expiriesApplied']; deleted: Simulation['expiriesApplied'] } {
  const all = sim.expiriesApplied.filter((x) => x.key === key);
  return { all, deleted: all.filter((x) => x.deleted) };
}

/** Runs until `pred` holds (at most `max` units); returns whether it did. */
function runUntil(sim: Simulation, pred: () => boolean, max: number): boolean {
  for (let i = 0; i < max; i++) {
    if (pred()) return true;
    sim.step();
  }
  return pred();
}

describe('leases: a live agent is never expired', () => {
  it('heartbeats through the majority side of a partition keep the agent through a leader change; the old leader, cut off in a minority, expires nothing', () => {
    const sim = leaseSim(5, 21);
    const old = sim.leader() as string;
    const oldTerm = sim.get(old).node.raft.currentTerm;
    const minority = [old, others(sim, old)[0] as string];
    const majority = others(sim, ...minority);
    register(sim, 'agent', 300);
    sim.startHeartbeats('agent', { everyUnits: HEARTBEAT_UNITS, via: majority, ttl: 300 });
    sim.run(500);
    sim.partition([minority, majority]);
    sim.run(2_000);
    const fresh = sim.leader() as string;
    expect(majority).toContain(fresh);
    expect(sim.get(fresh).node.raft.currentTerm).toBeGreaterThan(oldTerm);
    // The old leader stepped down (CheckQuorum) and holds no deadlines.
    expect(sim.get(old).node.raft.role).not.toBe('leader');
    expect(sim.get(old).leases.active).toBe(false);
    // A second leader change on the majority side: its leader is cut off alone.
    sim.partition([[fresh], others(sim, fresh)]);
    sim.startHeartbeats('agent', { everyUnits: HEARTBEAT_UNITS, via: others(sim, fresh), ttl: 300 });
    sim.run(2_000);
    expect(sim.leader()).not.toBe(fresh);
    sim.heal();
    sim.run(1_000);
    // The heartbeats reached a leader to the end, and no expire of the agent ever applied anywhere.
    expect(sim.now - (sim.lastRenewal.get('agent') ?? 0)).toBeLessThanOrEqual(HEARTBEAT_UNITS);
    expect(expiriesOf(sim, 'agent').all).toEqual([]);
    expect(sim.expireProposals.filter((p) => p.items.some((i) => i.key === 'agent'))).toEqual([]);
    for (const n of sim.upNodes()) expect(n.sm.kv.has('agent'), n.id).toBe(true);
  });

  it('through a leader crash: the new leader gives a fresh TTL, so the election gap (longer than the TTL) expires nothing', () => {
    const ttl = 80;
    const sim = leaseSim(3, 5);
    const old = sim.leader() as string;
    register(sim, 'agent', ttl);
    sim.startHeartbeats('agent', { everyUnits: HEARTBEAT_UNITS, via: sim.ids, ttl });
    sim.run(300);
    const lastBefore = sim.lastRenewal.get('agent') as number;
    sim.crash(old);
    sim.awaitLeader();
    const fresh = sim.leader() as string;
    expect(fresh).not.toBe(old);
    // The new leader took office with the lease, at a full TTL from its first moment.
    const took = sim.now;
    expect(sim.get(fresh).leases.deadlineOf('agent')).toBeGreaterThanOrEqual(took + ttl - TICK_UNITS);
    expect(runUntil(sim, () => (sim.lastRenewal.get('agent') as number) > lastBefore, 200)).toBe(true);
    // No renewal for longer than the TTL: only the fresh TTL kept the agent.
    expect((sim.lastRenewal.get('agent') as number) - lastBefore).toBeGreaterThan(ttl);
    sim.run(500);
    sim.restart(old);
    sim.run(1_000);
    expect(expiriesOf(sim, 'agent').all).toEqual([]);
    for (const n of sim.upNodes()) expect(n.sm.kv.has('agent'), n.id).toBe(true);
  });
});

describe('leases: an agent whose heartbeats stop expires exactly once', () => {
  /** Checks the single expiry of `key`: the same index on every node, within the bounds after `lastRenewal`. */
  function expectSingleExpiry(sim: Simulation, key: string, lastRenewal: number, ttl: number, maxDelay: number): void {
    const { all, deleted } = expiriesOf(sim, key);
    expect(new Set(all.map((x) => x.index)).size, 'one expire entry').toBe(1);
    expect(deleted.map((x) => x.node).sort()).toEqual([...sim.ids].sort());
    expect(all.length).toBe(sim.ids.length);
    for (const x of deleted) {
      expect(x.at - lastRenewal, `${x.node} applied the expiry too early`).toBeGreaterThanOrEqual(ttl);
      expect(x.at - lastRenewal, `${x.node} applied the expiry too late`).toBeLessThanOrEqual(ttl + maxDelay);
    }
    expect(sim.expireProposals.filter((p) => p.items.some((i) => i.key === key)).length).toBe(1);
    for (const n of sim.nodes.values()) expect(n.sm.kv.has(key), n.id).toBe(false);
  }

  it('on every node at the same log index, within ttl + one election timeout after its last renewal', () => {
    const ttl = 200;
    const sim = leaseSim(3, 8);
    register(sim, 'agent', ttl);
    register(sim, 'other', ttl);
    sim.startHeartbeats('agent', { everyUnits: HEARTBEAT_UNITS, via: sim.ids, ttl });
    sim.startHeartbeats('other', { everyUnits: HEARTBEAT_UNITS, via: sim.ids, ttl });
    sim.run(500);
    sim.stopHeartbeats('agent');
    const last = sim.lastRenewal.get('agent') as number;
    sim.run(ttl + ELECTION_UNITS + EXPIRY_SLACK_UNITS + 500);
    expectSingleExpiry(sim, 'agent', last, ttl, ELECTION_UNITS + EXPIRY_SLACK_UNITS);
    // The other agent heartbeats on and stays.
    expect(expiriesOf(sim, 'other').all).toEqual([]);
  });

  it('when the leader crashes after the last renewal, the new leader expires it, once, a TTL after taking office', () => {
    const ttl = 200;
    const sim = leaseSim(3, 9);
    const old = sim.leader() as string;
    register(sim, 'agent', ttl);
    sim.startHeartbeats('agent', { everyUnits: HEARTBEAT_UNITS, via: sim.ids, ttl });
    sim.run(400);
    sim.stopHeartbeats('agent');
    const last = sim.lastRenewal.get('agent') as number;
    sim.crash(old);
    // This seed's election takes almost three election timeouts (a pre-vote is refused once).
    expect(runUntil(sim, () => sim.leader() !== undefined, 1_000)).toBe(true);
    const took = sim.now;
    expect(took - last).toBeGreaterThan(2 * ELECTION_UNITS);
    sim.run(ttl + EXPIRY_SLACK_UNITS);
    sim.restart(old);
    sim.run(1_000);
    expect(sim.leader()).not.toBe(old);
    // The restarted node catches up from the log: it applies the same expire entry.
    expectSingleExpiry(sim, 'agent', last, ttl, took - last + EXPIRY_SLACK_UNITS + 1_000);
    const first = Math.min(...expiriesOf(sim, 'agent').deleted.map((x) => x.at));
    expect(first - took).toBeGreaterThanOrEqual(ttl);
    expect(first - took).toBeLessThanOrEqual(ttl + EXPIRY_SLACK_UNITS);
  });

  it('a re-registration while an expiry is in flight survives it (the expiry names the old write)', () => {
    const sim = leaseSim(3, 12);
    register(sim, 'agent', 100);
    const firstWrite = (sim.get(sim.leader() as string).sm.leases.get('agent') as { writeIndex: number }).writeIndex;
    // No heartbeats: the leader proposes the expiry at its check; the agent registers again at once.
    expect(runUntil(sim, () => sim.expireProposals.length > 0, 300)).toBe(true);
    expect(sim.registerLease(sim.leader() as string, 'agent', 100)).toBe(true);
    sim.startHeartbeats('agent', { everyUnits: HEARTBEAT_UNITS, via: sim.ids, ttl: 100 });
    sim.run(1_000);
    const { all } = expiriesOf(sim, 'agent');
    expect(all.every((x) => x.writeIndex === firstWrite)).toBe(true);
    for (const n of sim.nodes.values()) {
      // Either the expiry came first (and the new write holds the key) or it found the new write.
      expect(n.sm.kv.has('agent'), n.id).toBe(true);
      expect(n.sm.leases.get('agent')?.writeIndex).toBeGreaterThan(firstWrite);
    }
  });
});

describe('leases: a leader cut off in a minority (etcd issue 15247)', () => {
  /**
   * 5 nodes. `live` heartbeats through the majority side throughout; `dying` heartbeats through
   * the leader L until the partition cuts L off with one follower, then stops. The partition
   * falls mid-way between two CheckQuorum rounds of L, so L stays leader ~150 units while its
   * quorum confirmation is stale after 100: `dying` (ttl 120) lapses on L in that window.
   */
  function cutOffLeader(leases: SimLeaseOptions) {
    const sim = leaseSim(5, 31, leases);
    const old = sim.leader() as string;
    const oldTerm = sim.get(old).node.raft.currentTerm;
    const minority = [old, others(sim, old)[0] as string];
    const majority = others(sim, ...minority);
    register(sim, 'live', 300);
    register(sim, 'dying', 120);
    sim.startHeartbeats('live', { everyUnits: HEARTBEAT_UNITS, via: majority, ttl: 300 });
    sim.startHeartbeats('dying', { everyUnits: HEARTBEAT_UNITS, via: [old], ttl: 120 });
    sim.run(300);
    expect(runUntil(sim, () => sim.get(old).node.raft.electionElapsedTicks === SIM_ELECTION_TICKS / 2, 200)).toBe(true);
    sim.stopHeartbeats('dying');
    expect(sim.heartbeat(old, 'dying')).toBe('renewed');
    const cut = sim.now;
    sim.partition([minority, majority]);
    // Past the deadline of `dying` on L by two checks: L still leads, on a stale confirmation.
    sim.run(120 + 2 * TICK_UNITS);
    const l = sim.get(old);
    const stillLeading = l.node.raft.role === 'leader' && l.node.raft.currentTerm === oldTerm;
    const stale = sim.now - sim.quorumConfirmedAt(old);
    const lapsed = (l.leases.deadlineOf('dying') ?? Number.POSITIVE_INFINITY) <= sim.now;
    sim.run(3_000);
    sim.heal();
    sim.run(1_000);
    return { sim, old, oldTerm, cut, stillLeading, stale, lapsed };
  }

  it('proposes no expiry once its confirmation is stale, and none of its term ever commits', () => {
    const { sim, old, oldTerm, cut, stillLeading, stale, lapsed } = cutOffLeader({});
    // The scenario reached the window: L leads, its confirmation is stale, `dying` lapsed on it.
    expect(stillLeading).toBe(true);
    expect(stale).toBeGreaterThan(ELECTION_UNITS);
    expect(lapsed).toBe(true);
    expect(sim.expireProposals.filter((p) => p.node === old && p.at >= cut)).toEqual([]);
    expect(sim.expiriesApplied.filter((x) => x.term === oldTerm)).toEqual([]);
    // The majority side expired `dying`, once, in a later term; `live` lives.
    const dying = expiriesOf(sim, 'dying');
    expect(new Set(dying.deleted.map((x) => x.index)).size).toBe(1);
    expect(dying.deleted.length).toBe(5);
    expect(dying.deleted.every((x) => x.term > oldTerm)).toBe(true);
    expect(expiriesOf(sim, 'live').all).toEqual([]);
    for (const n of sim.nodes.values()) expect(n.sm.kv.has('live'), n.id).toBe(true);
  });

  it('without the quorum-age gate (a deliberate bug) the cut-off leader proposes expiries, which Raft keeps from committing', () => {
    const { sim, old, oldTerm, cut, stillLeading } = cutOffLeader({ maxQuorumAgeUnits: Number.POSITIVE_INFINITY });
    expect(stillLeading).toBe(true);
    const stray = sim.expireProposals.filter((p) => p.node === old && p.at >= cut && p.term === oldTerm);
    expect(stray.some((p) => p.items.some((i) => i.key === 'dying'))).toBe(true);
    expect(sim.expiriesApplied.filter((x) => x.term === oldTerm)).toEqual([]);
    expect(expiriesOf(sim, 'live').all).toEqual([]);
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
  | { readonly t: 'run'; readonly units: number }
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
 * TTL of the agent that heartbeats throughout, in units. Why it never expires: an expiry needs
 * a leader whose quorum was confirmed within one election timeout (100 units) and whose
 * deadline passed. Any majority contains a node of C, and C is never split, so a leader with a
 * fresh confirmation was in C's component at most 100 units ago; while it is, every node of C
 * knows it within a heartbeat round and the agent's heartbeats (every 20 units, through the
 * nodes of C) renew the lease there. A new leader starts from a full TTL. The longest a leader
 * can go without renewals and still expire is when it is cut off from C and the partition
 * heals just before CheckQuorum deposes it (under two election timeouts, 200 units): its
 * confirmation is fresh again at once, and the heartbeats that went nowhere meanwhile count
 * against the agent. So the TTL must exceed two election timeouts plus a heartbeat period; 400
 * leaves room. (At 250 thousands of schedules pass; at 150 that heal-just-in-time case expires
 * the agent.)
 */
const LIVE_TTL = 400;
/** TTL of the agent whose heartbeats go on and off, in units. */
const FLAKY_TTL = 150;

const rest = fc.nat({ max: 1 });
const arbLeaseEvent: fc.Arbitrary<LeaseEvent> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('run' as const), units: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('isolate' as const), node: rest }) },
  { weight: 1, arbitrary: fc.constant({ t: 'isolateRest' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'heal' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('bounce' as const), node: rest, down: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('isolateLeader' as const), after: fc.integer({ min: 0, max: 150 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('killLeader' as const), after: fc.integer({ min: 0, max: 150 }), down: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('transfer' as const), node: rest }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('flaky' as const), on: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('write' as const), node: fc.nat({ max: 4 }), del: fc.boolean(), key: fc.nat({ max: 2 }), gap: fc.integer({ min: 0, max: 40 }) }),
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
  readonly ttl: number;
  /** `core`: heartbeats through the nodes of C (the property's premise); `all`: through every node in turn. */
  readonly via: 'core' | 'all';
}

/** What a lease schedule found: the first failure, or counts for the coverage checks. */
interface LeaseRunResult {
  readonly error?: string;
  readonly trace?: string[];
  /** Keys of the silent agent deleted by an expire (node applications). */
  readonly flakyExpiries: number;
  /** Terms that passed after the warm-up (leader changes, at most). */
  readonly newTerms: number;
}

/** Runs a lease schedule; returns the first violation (SafetyViolation) found. */
function runLeaseSchedule(run: LeaseRun, live: LiveAgent = { ttl: LIVE_TTL, via: 'core' }, trace = false): LeaseRunResult {
  const sim = new Simulation({ nodes: run.nodes, seed: run.seed, leases: {}, trace });
  const core = sim.ids.slice(0, run.nodes === 5 ? 3 : 2);
  const restIds = sim.ids.filter((id) => !core.includes(id));
  const inRest = (i: number) => restIds[i % restIds.length] as string;
  let termAfterWarmup = 0;
  try {
    sim.run(WARMUP_UNITS);
    termAfterWarmup = Math.max(...sim.upNodes().map((n) => n.node.raft.currentTerm));
    // Both agents register through the core (retried until a leader takes them).
    for (const [key, ttl] of [['live', live.ttl], ['flaky', FLAKY_TTL]] as const) {
      for (let i = 0; i < 50 && !sim.upNodes().every((n) => n.sm.leases.has(key)); i++) {
        sim.registerLease(core[i % core.length] as string, key, ttl);
        sim.run(40);
      }
      if (!core.every((id) => sim.get(id).sm.leases.has(key))) throw new SafetyViolation(`${key} never registered`);
    }
    sim.startHeartbeats('live', { everyUnits: HEARTBEAT_UNITS, via: live.via === 'core' ? core : sim.ids, ttl: live.ttl });
    sim.startHeartbeats('flaky', { everyUnits: HEARTBEAT_UNITS, via: core, ttl: FLAKY_TTL, reregister: true });
    let seq = 0;
    for (const e of run.events) {
      switch (e.t) {
        case 'run':
          sim.run(e.units);
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
          sim.run(e.down);
          sim.restart(inRest(e.node));
          break;
        case 'isolateLeader': {
          sim.run(e.after);
          const l = sim.leader();
          if (l && restIds.includes(l)) sim.partition([[l], others(sim, l)]);
          break;
        }
        case 'killLeader': {
          sim.run(e.after);
          const l = sim.leader();
          if (!l || !restIds.includes(l)) break;
          sim.crash(l);
          sim.run(e.down);
          sim.restart(l);
          break;
        }
        case 'transfer': {
          const l = sim.leader();
          if (l && sim.get(inRest(e.node)).up) sim.get(l).node.transferLeadership(inRest(e.node) as NodeId);
          break;
        }
        case 'flaky':
          if (!e.on) sim.stopHeartbeats('flaky');
          else if (!sim.heartbeaters.has('flaky')) sim.startHeartbeats('flaky', { everyUnits: HEARTBEAT_UNITS, via: core, ttl: FLAKY_TTL, reregister: true });
          break;
        case 'write':
          sim.write(sim.ids[e.node % sim.ids.length] as string, e.del ? 'deregister' : 'register', `k${e.key}`, `v${++seq}`);
          sim.run(e.gap);
          break;
      }
    }
    // Heal, let the flaky agent die, and check that everything converges.
    sim.stopHeartbeats('flaky');
    sim.checkLiveness();
    sim.run(FLAKY_TTL + 2 * ELECTION_UNITS + 2 * EXPIRY_SLACK_UNITS);
    sim.finish();
    const lin = checkLinearizable(sim.history);
    if (lin.ok === false) throw new SafetyViolation(`not linearizable on ${lin.key}: ${lin.reason}\n${lin.history.map(describeOperation).join('\n')}`);
    const expiredLive = expiriesOf(sim, 'live').all;
    if (expiredLive.length > 0) throw new SafetyViolation(`the live agent was expired: ${JSON.stringify(expiredLive[0])}`);
    for (const n of sim.nodes.values()) {
      if (!n.sm.kv.has('live')) throw new SafetyViolation(`${n.id} lost the live agent`);
      if (n.sm.kv.has('flaky')) throw new SafetyViolation(`${n.id} still holds the flaky agent, long after its heartbeats stopped`);
    }
    // Every write of the flaky agent was deleted by at most one expire entry (the same on every node).
    const byWrite = new Map<number, Set<number>>();
    for (const x of expiriesOf(sim, 'flaky').deleted) byWrite.set(x.writeIndex, (byWrite.get(x.writeIndex) ?? new Set()).add(x.index));
    for (const [w, idx] of byWrite) if (idx.size !== 1) throw new SafetyViolation(`write ${w} of the flaky agent deleted by several entries: ${[...idx].join(',')}`);
    // The nodes agree on the leased keys and their writes.
    const leasesOf = (id: string) => JSON.stringify([...sim.get(id).sm.leases].sort());
    for (const id of sim.ids) if (leasesOf(id) !== leasesOf(sim.ids[0] as string)) throw new SafetyViolation(`${id} disagrees on the leases`);
    const maxTerm = Math.max(...sim.upNodes().map((n) => n.node.raft.currentTerm));
    return { flakyExpiries: expiriesOf(sim, 'flaky').deleted.length, newTerms: maxTerm - termAfterWarmup };
  } catch (err) {
    if (!(err instanceof SafetyViolation)) throw err;
    return { error: err.message, trace: sim.trace, flakyExpiries: 0, newTerms: 0 };
  }
}

/** Replays a failing lease schedule with the trace on, for the report. */
function explainLeaseRun(run: LeaseRun, live?: LiveAgent, lines = 80): string {
  const again = runLeaseSchedule(run, live, true);
  return [`seed=${run.seed} nodes=${run.nodes}`, `events=${JSON.stringify(run.events)}`, `violation: ${again.error ?? '(none on replay)'}`, ...(again.trace ?? []).slice(-lines)].join('\n');
}

/** Schedules per cluster size (`SIM_LEASE_RUNS` lengthens a run, `SIM_SEED` replays one). */
const LEASE_RUNS = Number(process.env.SIM_LEASE_RUNS ?? 400);
const SEED = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);

describe('leases under generated schedules', () => {
  for (const nodes of [3, 5] as const) {
    it(`${nodes} nodes: the invariants hold, the agent heartbeating through the connected majority is never expired, the silent one is, once per write`, () => {
      let flakyExpiries = 0;
      let newTerms = 0;
      const result = fc.check(
        fc.property(arbLeaseRun(nodes), (run) => {
          const r = runLeaseSchedule(run);
          flakyExpiries += r.flakyExpiries;
          newTerms += r.newTerms;
          return r.error === undefined;
        }),
        { numRuns: LEASE_RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) },
      );
      if (result.failed) expect.fail(`seed ${result.seed}, path ${result.counterexamplePath ?? ''}\n${explainLeaseRun(result.counterexample?.[0] as LeaseRun)}`);
      // Coverage: the schedules changed leaders and expired the silent agent.
      expect(newTerms).toBeGreaterThan(LEASE_RUNS / 2);
      expect(flakyExpiries).toBeGreaterThan(LEASE_RUNS);
    }, 120_000);
  }

  it('the property has teeth: heartbeats through nodes that get cut off, with a short TTL, do get the agent expired, and the check reports it', () => {
    const live: LiveAgent = { ttl: 60, via: 'all' };
    const result = fc.check(
      fc.property(arbLeaseRun(5), (run) => runLeaseSchedule(run, live).error === undefined),
      { numRuns: 200, seed: 7, endOnFailure: true },
    );
    expect(result.failed).toBe(true);
    const again = runLeaseSchedule(result.counterexample?.[0] as LeaseRun, live);
    expect(again.error).toMatch(/live agent/);
  });
});
