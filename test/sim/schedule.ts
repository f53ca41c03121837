/**
 * Fault schedules for the simulator, generated and shrunk by fast-check: partitions of every
 * shape (majority/minority splits, an isolated node, one-way links, a bridge node that sees both
 * sides), heals, crashes (power loss or process kill) and restarts, pauses, stalled disks, lossy /
 * duplicating / reordering network phases with cut snapshot transfers, membership changes and
 * leadership transfers, and client calls through any node — writes, compare-and-set, linearizable
 * and serializable gets and finds — interleaved with runs of simulated time.
 */
import fc from 'fast-check';
import { checkLinearizable, describeOperation } from '../support/linearizability.js';
import { Simulation, SafetyViolation, type SimBugs } from './simulator.js';

/** One schedule event. Node numbers are taken modulo the cluster size; times are ms. */
export type SimEvent =
  | { readonly t: 'run'; readonly ms: number }
  | { readonly t: 'split'; readonly minority: readonly number[] }
  | { readonly t: 'isolate'; readonly node: number }
  | { readonly t: 'oneway'; readonly from: number; readonly to: number }
  | { readonly t: 'bridge'; readonly node: number }
  | { readonly t: 'heal' }
  | { readonly t: 'crash'; readonly node: number; readonly power: boolean }
  | { readonly t: 'restart'; readonly node: number }
  | { readonly t: 'bounce'; readonly node: number; readonly down: number; readonly power: boolean }
  | { readonly t: 'pause'; readonly node: number; readonly ms: number }
  | { readonly t: 'stall'; readonly node: number; readonly ms: number }
  | { readonly t: 'isolateLeader'; readonly after: number }
  | { readonly t: 'killLeader'; readonly after: number; readonly down: number; readonly power: boolean }
  | { readonly t: 'awaitLeader' }
  | { readonly t: 'killLeaderAtCommit'; readonly down: number }
  | { readonly t: 'conf'; readonly op: 'addVoter' | 'addLearner' | 'removeNode'; readonly node: number }
  | { readonly t: 'transfer'; readonly node: number }
  | { readonly t: 'net'; readonly drop: number; readonly duplicate: number; readonly maxDelay: number; readonly snapshotCut: number }
  | { readonly t: 'write'; readonly node: number; readonly del: boolean; readonly key: number; readonly count: number; readonly gap: number }
  | { readonly t: 'cas'; readonly node: number; readonly key: number; readonly gap: number }
  | { readonly t: 'read'; readonly node: number; readonly key: number; readonly gap: number; readonly find: boolean; readonly serializable: boolean };

/** Keys the clients use: few, so operations contend (prefix-free, for reads by find). */
export const SIM_KEYS = 3;
const keyOf = (k: number): string => `k${k}`;
/** Every key of the schedules. */
export const SIM_KEY_NAMES: readonly string[] = Array.from({ length: SIM_KEYS }, (_, i) => keyOf(i));

const node = fc.nat({ max: 4 });
/** Probability that a snapshot transfer of a schedule is cut part-way, faults or not. */
export const SCHEDULE_FLAKY_SNAPSHOTS = 0.1;
/** Time before the first event, in ms, so most runs start with a leader. */
export const WARMUP_MS = 2_500;

const arbNet = fc.record({
  t: fc.constant('net' as const),
  drop: fc.double({ min: 0, max: 0.3, noNaN: true }),
  duplicate: fc.double({ min: 0, max: 0.2, noNaN: true }),
  maxDelay: fc.integer({ min: 10, max: 300 }),
  snapshotCut: fc.double({ min: 0, max: 0.5, noNaN: true }),
});
/** Writes to one key, `count` of them issued together (a burst: concurrent calls, batched proposals). */
const arbWrite = (gapMax: number) =>
  fc.record({ t: fc.constant('write' as const), node, del: fc.boolean(), key: fc.nat({ max: SIM_KEYS - 1 }), count: fc.integer({ min: 1, max: 3 }), gap: fc.integer({ min: 0, max: gapMax }) });
const arbCas = (gapMax: number) => fc.record({ t: fc.constant('cas' as const), node, key: fc.nat({ max: SIM_KEYS - 1 }), gap: fc.integer({ min: 0, max: gapMax }) });
const arbRead = (gapMax: number) =>
  fc.record({ t: fc.constant('read' as const), node, key: fc.nat({ max: SIM_KEYS - 1 }), gap: fc.integer({ min: 0, max: gapMax }), find: fc.boolean(), serializable: fc.boolean() });
const arbConf = fc.record({ t: fc.constant('conf' as const), op: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const), node });

/** An arbitrary schedule event, weighted toward client calls and time passing. */
export const arbEvent: fc.Arbitrary<SimEvent> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('run' as const), ms: fc.integer({ min: 10, max: 3_000 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('split' as const), minority: fc.uniqueArray(node, { minLength: 1, maxLength: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('isolate' as const), node }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('oneway' as const), from: node, to: node }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('bridge' as const), node }) },
  { weight: 2, arbitrary: fc.constant({ t: 'heal' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const), node, power: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('restart' as const), node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('bounce' as const), node, down: fc.integer({ min: 0, max: 300 }), power: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('pause' as const), node, ms: fc.integer({ min: 50, max: 3_000 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('stall' as const), node, ms: fc.integer({ min: 50, max: 2_000 }) }) },
  { weight: 2, arbitrary: arbNet },
  { weight: 6, arbitrary: arbWrite(400) },
  { weight: 2, arbitrary: arbCas(400) },
  { weight: 1, arbitrary: arbConf },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('transfer' as const), node }) },
  { weight: 4, arbitrary: arbRead(400) },
);

/**
 * Events of a high-churn profile: short runs between faults, so partitions and crashes land
 * inside the few ms between an election and the replication of its first entries — where the
 * commit rule of Figure 8 is tested.
 */
export const arbChurnEvent: fc.Arbitrary<SimEvent> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('run' as const), ms: fc.integer({ min: 10, max: 400 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('run' as const), ms: fc.integer({ min: 400, max: 2_500 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('isolate' as const), node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('split' as const), minority: fc.uniqueArray(node, { minLength: 1, maxLength: 2 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'heal' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('bounce' as const), node, down: fc.integer({ min: 0, max: 600 }), power: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('pause' as const), node, ms: fc.integer({ min: 50, max: 2_500 }) }) },
  { weight: 5, arbitrary: arbWrite(50) },
  { weight: 1, arbitrary: arbCas(50) },
  { weight: 1, arbitrary: arbRead(50) },
  // Leader-targeted faults, as a Jepsen nemesis does: they land right after elections.
  { weight: 4, arbitrary: fc.record({ t: fc.constant('isolateLeader' as const), after: fc.integer({ min: 0, max: 80 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('killLeader' as const), after: fc.integer({ min: 0, max: 80 }), down: fc.integer({ min: 0, max: 3_000 }), power: fc.boolean() }) },
  { weight: 3, arbitrary: fc.constant({ t: 'awaitLeader' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('killLeaderAtCommit' as const), down: fc.integer({ min: 0, max: 3_000 }) }) },
  { weight: 2, arbitrary: arbConf },
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

async function apply(sim: Simulation, e: SimEvent): Promise<void> {
  const ids = sim.ids;
  const at = (i: number) => ids[i % ids.length] as string;
  const kind = (power: boolean) => (power ? 'power' : 'process');
  switch (e.t) {
    case 'run':
      await sim.run(e.ms);
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
      sim.crash(at(e.node), kind(e.power));
      return;
    case 'restart':
      sim.restart(at(e.node));
      return;
    case 'pause':
      sim.pause(at(e.node));
      await sim.run(e.ms);
      sim.resume(at(e.node));
      return;
    case 'stall':
      sim.stallDisk(at(e.node), e.ms);
      return;
    case 'isolateLeader': {
      await sim.run(e.after);
      const l = sim.leader();
      if (l) sim.partition([[l], ids.filter((id) => id !== l)]);
      return;
    }
    case 'killLeader': {
      await sim.run(e.after);
      const l = sim.leader();
      if (!l) return;
      sim.crash(l, kind(e.power));
      await sim.run(e.down);
      sim.restart(l);
      return;
    }
    case 'awaitLeader':
      await sim.awaitLeader();
      return;
    case 'killLeaderAtCommit': {
      // The worst moment: the instant the leader advances its commit index, before anyone else
      // hears of it. Its messages still on the wire are lost with it.
      const l = sim.leader();
      if (!l) return;
      const raft = sim.get(l).node.core.raft;
      const before = raft.raftLog.committed;
      await sim.runUntil(() => !sim.get(l).up || raft.raftLog.committed !== before, 3_000);
      sim.partition([[l], ids.filter((id) => id !== l)]);
      sim.crash(l, 'power');
      await sim.run(e.down);
      sim.restart(l);
      return;
    }
    case 'conf':
      sim.changeConfig(e.op, at(e.node));
      return;
    case 'transfer': {
      const l = sim.leader();
      const target = at(e.node);
      if (l && l !== target && sim.get(target).up) sim.get(l).api?.transferLeadership({ target_id: target }, { budgetMs: 3_000 }).catch(() => undefined);
      return;
    }
    case 'net':
      sim.net = { ...sim.net, drop: e.drop, duplicate: e.duplicate, minDelay: 10, maxDelay: e.maxDelay, snapshotCut: e.snapshotCut };
      return;
    case 'write':
      for (let i = 0; i < e.count; i++) sim.write(at(e.node + i), e.del && i === 0 ? 'deregister' : 'register', `k${e.key}`);
      await sim.run(e.gap);
      return;
    case 'cas':
      sim.compareAndSet(at(e.node), `k${e.key}`);
      await sim.run(e.gap);
      return;
    case 'read':
      sim.read(at(e.node), `k${e.key}`, { path: e.find ? 'find' : 'get', consistency: e.serializable ? 'serializable' : 'linearizable' });
      await sim.run(e.gap);
      return;
  }
}

/** Applies `events` to `sim` in order (for replays under a debugger). */
export async function runEventsForDebug(sim: Simulation, events: readonly SimEvent[]): Promise<void> {
  for (const e of events) await apply(sim, e);
  await sim.checkLiveness(SIM_KEY_NAMES);
}

/** What a run found. */
export interface RunResult {
  readonly ok: boolean;
  readonly error?: string;
  readonly trace?: string[];
  readonly stats?: RunStats;
}

/** Coverage counters of one run. */
export interface RunStats {
  readonly snapshotsInstalled: number;
  readonly confChanges: number;
  readonly powerCrashes: number;
  readonly pauses: number;
  readonly snapshotCuts: number;
  readonly snapshotsRefused: number;
  readonly earlySendsAfterFirstTerm: number;
  readonly readsTimedOut: number;
  readonly events: number;
  readonly snapshotsTaken: number;
  readonly writesOk: number;
  readonly readsOk: number;
}

/**
 * Runs a schedule: every event, then the liveness check (heal, converge, compare the nodes and
 * their watches, read every key through every member), then the linearizability check of the
 * client history. Returns the first failure found. `damagedSnapshots`: the probability that a
 * snapshot transfer arrives damaged, throughout the run (see `SimOptions.damagedSnapshots`).
 */
export async function runSchedule(run: SimRun, bugs?: SimBugs, trace = false, damagedSnapshots = 0): Promise<RunResult> {
  let sim: Simulation | undefined;
  try {
    sim = await Simulation.create({ nodes: run.nodes, seed: run.seed, flakySnapshots: SCHEDULE_FLAKY_SNAPSHOTS, damagedSnapshots, ...(bugs ? { bugs } : {}), trace });
    await sim.run(WARMUP_MS);
    for (const e of run.events) await apply(sim, e);
    await sim.checkLiveness(SIM_KEY_NAMES);
    sim.finish();
    const lin = checkLinearizable(sim.history);
    if (lin.ok === false) {
      return { ok: false, error: `not linearizable on ${lin.key}: ${lin.reason}\n${lin.history.map(describeOperation).join('\n')}`, trace: sim.trace };
    }
    return {
      ok: true,
      stats: {
        snapshotsInstalled: sim.snapshotsInstalled,
        confChanges: sim.confChangesApplied.size,
        powerCrashes: sim.crashes.power,
        pauses: sim.crashes.pauses,
        snapshotCuts: sim.network.snapshotCuts,
        snapshotsRefused: sim.snapshotsRefused,
        earlySendsAfterFirstTerm: sim.earlySendsAfterFirstTerm,
        readsTimedOut: sim.readsTimedOut,
        events: sim.world.events,
        snapshotsTaken: sim.snapshotsTaken,
        writesOk: sim.history.filter((o) => o.kind !== 'get' && o.outcome === 'ok').length,
        readsOk: sim.history.filter((o) => o.kind === 'get').length,
      },
    };
  } catch (err) {
    if (err instanceof SafetyViolation) return { ok: false, error: err.message, trace: sim?.trace ?? err.trace };
    throw err;
  }
}

/** Renders a failing run for a report: the violation and the tail of the event trace. */
export async function explain(run: SimRun, bugs?: SimBugs, lines = 80, damagedSnapshots = 0): Promise<string> {
  const again = await runSchedule(run, bugs, true, damagedSnapshots);
  return [`seed=${run.seed} nodes=${run.nodes}`, `events=${JSON.stringify(run.events)}`, `violation: ${again.error ?? '(none on replay)'}`, ...(again.trace ?? []).slice(-lines)].join('\n');
}
