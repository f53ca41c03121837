/**
 * Fault schedules for the simulator, generated and shrunk by fast-check: partitions of every
 * shape (majority/minority splits, an isolated node, one-way links, a bridge node that sees both
 * sides), heals, crashes and restarts, lossy / duplicating / reordering network phases, and client
 * writes and reads through any node, interleaved with runs of simulated time.
 */
import fc from 'fast-check';
import { Simulation, SafetyViolation, type SimBugs } from './simulator.js';
import { checkLinearizable, describeOperation } from '../support/linearizability.js';

/** One schedule event. Node numbers are taken modulo the cluster size. */
export type SimEvent =
  | { readonly t: 'run'; readonly units: number }
  | { readonly t: 'split'; readonly minority: readonly number[] }
  | { readonly t: 'isolate'; readonly node: number }
  | { readonly t: 'oneway'; readonly from: number; readonly to: number }
  | { readonly t: 'bridge'; readonly node: number }
  | { readonly t: 'heal' }
  | { readonly t: 'crash'; readonly node: number }
  | { readonly t: 'restart'; readonly node: number }
  | { readonly t: 'bounce'; readonly node: number; readonly down: number }
  | { readonly t: 'isolateLeader'; readonly after: number }
  | { readonly t: 'killLeader'; readonly after: number; readonly down: number }
  | { readonly t: 'awaitLeader' }
  | { readonly t: 'killLeaderAtCommit'; readonly down: number }
  | { readonly t: 'conf'; readonly op: 'addVoter' | 'addLearner' | 'removeNode'; readonly node: number }
  | { readonly t: 'net'; readonly drop: number; readonly duplicate: number; readonly maxDelay: number }
  | { readonly t: 'write'; readonly node: number; readonly del: boolean; readonly key: number; readonly gap: number }
  | { readonly t: 'read'; readonly node: number; readonly key: number; readonly gap: number };

/** Keys the clients use: few, so operations contend. */
export const SIM_KEYS = 3;

const node = fc.nat({ max: 4 });
/** Time that passes after a client operation is issued, in units (operations overlap). */
const gap = fc.integer({ min: 0, max: 40 });
/** Units of quiet time before the first event, so most runs start with a leader. */
export const WARMUP_UNITS = 250;

/** An arbitrary schedule event, weighted toward client operations and time passing. */
export const arbEvent: fc.Arbitrary<SimEvent> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('run' as const), units: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('split' as const), minority: fc.uniqueArray(node, { minLength: 1, maxLength: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('isolate' as const), node }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('oneway' as const), from: node, to: node }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('bridge' as const), node }) },
  { weight: 2, arbitrary: fc.constant({ t: 'heal' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const), node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('restart' as const), node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('bounce' as const), node, down: fc.integer({ min: 0, max: 30 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('net' as const),
      drop: fc.double({ min: 0, max: 0.3, noNaN: true }),
      duplicate: fc.double({ min: 0, max: 0.2, noNaN: true }),
      maxDelay: fc.integer({ min: 1, max: 30 }),
    }),
  },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('write' as const), node, del: fc.boolean(), key: fc.nat({ max: SIM_KEYS - 1 }), gap }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('conf' as const), op: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const), node }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('read' as const), node, key: fc.nat({ max: SIM_KEYS - 1 }), gap }) },
);

/**
 * Events of a high-churn profile: short runs between faults, so partitions and crashes land
 * inside the few units between an election and the replication of its first entries — where
 * the commit rule of Figure 8 is tested.
 */
export const arbChurnEvent: fc.Arbitrary<SimEvent> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('run' as const), units: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('run' as const), units: fc.integer({ min: 40, max: 250 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('isolate' as const), node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('split' as const), minority: fc.uniqueArray(node, { minLength: 1, maxLength: 2 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'heal' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('bounce' as const), node, down: fc.integer({ min: 0, max: 60 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('write' as const), node, del: fc.boolean(), key: fc.nat({ max: SIM_KEYS - 1 }), gap: fc.integer({ min: 0, max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('read' as const), node, key: fc.nat({ max: SIM_KEYS - 1 }), gap: fc.integer({ min: 0, max: 5 }) }) },
  // Leader-targeted faults, as a Jepsen nemesis does: they land right after elections.
  { weight: 4, arbitrary: fc.record({ t: fc.constant('isolateLeader' as const), after: fc.integer({ min: 0, max: 8 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('killLeader' as const), after: fc.integer({ min: 0, max: 8 }), down: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 3, arbitrary: fc.constant({ t: 'awaitLeader' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('killLeaderAtCommit' as const), down: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('conf' as const), op: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const), node }) },
);

/** Fault profiles: `mixed` (every kind of fault and long quiet stretches) or `churn`. */
export type SimProfile = 'mixed' | 'churn';

/** A whole run: cluster size, seed of the simulation's own randomness, events. */
export interface SimRun {
  readonly nodes: 3 | 5;
  readonly seed: number;
  readonly events: readonly SimEvent[];
}

/** Arbitrary runs of a given cluster size. */
export function arbRun(nodes: 3 | 5, profile: SimProfile = 'mixed', maxEvents = 80): fc.Arbitrary<SimRun> {
  return fc.record({
    nodes: fc.constant(nodes),
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
    events: fc.array(profile === 'mixed' ? arbEvent : arbChurnEvent, { minLength: 10, maxLength: maxEvents, size: 'max' }),
  });
}

function apply(sim: Simulation, e: SimEvent, writeSeq: { n: number }): void {
  const ids = sim.ids;
  const at = (i: number) => ids[i % ids.length] as string;
  switch (e.t) {
    case 'run':
      sim.run(e.units);
      return;
    case 'split': {
      const minority = new Set(e.minority.map(at));
      sim.partition([[...minority], ids.filter((id) => !minority.has(id))]);
      return;
    }
    case 'isolate':
      sim.partition([[at(e.node)], ids.filter((id) => id !== at(e.node))]);
      return;
    case 'oneway':
      if (at(e.from) !== at(e.to)) sim.blockLink(at(e.from), at(e.to));
      return;
    case 'bridge': {
      // The bridge sees both halves; the halves do not see each other.
      const bridge = at(e.node);
      const rest = ids.filter((id) => id !== bridge);
      const half = Math.floor(rest.length / 2);
      const left = rest.slice(0, half);
      const right = rest.slice(half);
      sim.partition([[...left, ...right]]);
      for (const a of left) for (const b of right) {
        sim.blockLink(a, b);
        sim.blockLink(b, a);
      }
      return;
    }
    case 'heal':
      sim.heal();
      return;
    case 'crash':
      sim.crash(at(e.node));
      return;
    case 'restart':
      sim.restart(at(e.node));
      return;
    case 'isolateLeader': {
      sim.run(e.after);
      const l = sim.leader();
      if (l) sim.partition([[l], ids.filter((id) => id !== l)]);
      return;
    }
    case 'killLeader': {
      sim.run(e.after);
      const l = sim.leader();
      if (!l) return;
      sim.crash(l);
      sim.run(e.down);
      sim.restart(l);
      return;
    }
    case 'awaitLeader':
      sim.awaitLeader();
      return;
    case 'killLeaderAtCommit': {
      // The worst moment: the instant the leader advances its commit index, before anyone else
      // hears of it. Its messages still on the wire are lost with it.
      const l = sim.leader();
      if (!l) return;
      const raft = sim.get(l).node.raft;
      const before = raft.raftLog.committed;
      for (let i = 0; i < 300 && sim.get(l).up && raft.raftLog.committed === before; i++) sim.step();
      sim.partition([[l], ids.filter((id) => id !== l)]);
      sim.crash(l);
      sim.run(e.down);
      sim.restart(l);
      return;
    }
    case 'conf':
      sim.changeConfig(e.op, at(e.node));
      return;
    case 'bounce':
      // A process restart: down for `down` units, then back with what its disk holds.
      sim.crash(at(e.node));
      sim.run(e.down);
      sim.restart(at(e.node));
      return;
    case 'net':
      sim.net = { drop: e.drop, duplicate: e.duplicate, minDelay: 1, maxDelay: e.maxDelay };
      return;
    case 'write':
      sim.write(at(e.node), e.del ? 'deregister' : 'register', `k${e.key}`, `v${++writeSeq.n}`);
      sim.run(e.gap);
      return;
    case 'read':
      sim.read(at(e.node), `k${e.key}`);
      sim.run(e.gap);
      return;
  }
}

/** What a run found. */
export interface RunResult {
  readonly ok: boolean;
  /** Snapshots installed by followers during the run. */
  readonly snapshotsInstalled?: number;
  /** Membership changes applied during the run. */
  readonly confChanges?: number;
  readonly error?: string;
  readonly trace?: string[];
}

/**
 * Runs a schedule: every event, then a quiet period, then the liveness check, then the
 * linearizability check of the client history. Returns the first failure found.
 */
export function runSchedule(run: SimRun, bugs?: SimBugs, trace = false): RunResult {
  const sim = new Simulation({ nodes: run.nodes, seed: run.seed, ...(bugs ? { bugs } : {}), trace });
  const writeSeq = { n: 0 };
  try {
    sim.run(WARMUP_UNITS);
    for (const e of run.events) apply(sim, e, writeSeq);
    sim.checkLiveness();
    sim.finish();
    const lin = checkLinearizable(sim.history);
    if (lin.ok === false) {
      return { ok: false, error: `not linearizable on ${lin.key}: ${lin.reason}\n${lin.history.map(describeOperation).join('\n')}`, trace: sim.trace };
    }
    return { ok: true, snapshotsInstalled: sim.snapshotsInstalled, confChanges: sim.confChangesApplied.size };
  } catch (err) {
    if (err instanceof SafetyViolation) return { ok: false, error: err.message, trace: sim.trace };
    throw err;
  }
}

/** Renders a failing run for a report: the violation and the tail of the event trace. */
export function explain(run: SimRun, bugs?: SimBugs, lines = 60): string {
  const again = runSchedule(run, bugs, true);
  return [`seed=${run.seed} nodes=${run.nodes}`, `events=${JSON.stringify(run.events)}`, `violation: ${again.error ?? '(none on replay)'}`, ...(again.trace ?? []).slice(-lines)].join('\n');
}
