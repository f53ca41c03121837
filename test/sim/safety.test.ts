/**
 * The node loop that ships, under generated faults: fast-check drives the deterministic
 * simulator (production `RaftNode`s, registry state machines and API handlers on simulated
 * disks, network and time) through schedules on 3- and 5-node clusters, with snapshots and
 * compaction every few entries, membership changes and leadership transfers, crashes at any
 * await of the loop, power losses, pauses and stalled disks. Every safety invariant is checked
 * after every event; liveness, equal state machines and complete watches after healing; and
 * linearizability of the client history (writes, compare-and-set, gets and finds).
 *
 * `SIM_RUNS` (schedules per cluster size and profile) and `SIM_SEED` lengthen a run or explore
 * other schedules (`npm run test:sim -- --runs 20000 --seed 42`); `SIM_PATH` with the seed a
 * failure printed replays its shrunk counterexample at once (`--seed S --path P`). Without a
 * seed the suite runs {@link DEFAULT_SEED}, so every CI run checks the same schedules.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { arbRun, explain, runSchedule, type RunStats, type SimProfile, type SimRun } from './schedule.js';

/** Schedules per (cluster size, profile): 4 combinations, so 4x this many in all. */
const RUNS = Number(process.env.SIM_RUNS ?? 300);
/** The fast-check seed of a CI run (fixed: a failure in CI replays anywhere). */
const DEFAULT_SEED = 20261201;
const SEED = process.env.SIM_SEED === undefined ? DEFAULT_SEED : Number(process.env.SIM_SEED);
const PATH = process.env.SIM_PATH;

/** Sums of the coverage counters over one test's runs (each test keeps its own). */
type Coverage = { -readonly [K in keyof RunStats]: number } & { runs: number };

function emptyCoverage(): Coverage {
  return { runs: 0, snapshotsInstalled: 0, confChanges: 0, powerCrashes: 0, pauses: 0, snapshotCuts: 0, snapshotsRefused: 0, earlySendsAfterFirstTerm: 0, readsTimedOut: 0, events: 0, snapshotsTaken: 0, writesOk: 0, readsOk: 0 };
}

/** Schedules of the damaged-snapshot test: a third of {@link RUNS}, on 3 nodes. */
const DAMAGED_RUNS = Math.max(1, Math.floor(RUNS / 3));
/** Probability that a snapshot transfer arrives damaged in that test, for the whole run. */
const DAMAGED_SNAPSHOT_RATE = 0.3;

/**
 * Checks `numRuns` schedules of `nodes` nodes and `profile` with `damagedSnapshots` (the rate of
 * damaged snapshot transfers), failing the test with the shrunk counterexample's seed, path and
 * trace. Returns the coverage summed over the runs, or undefined when replaying one `SIM_PATH`.
 */
async function checkSchedules(nodes: 3 | 5, profile: SimProfile, numRuns: number, damagedSnapshots = 0): Promise<Coverage | undefined> {
  const coverage = emptyCoverage();
  const result = await fc.check(
    fc.asyncProperty(arbRun(nodes, profile), async (run) => {
      const r = await runSchedule(run, undefined, false, damagedSnapshots);
      if (r.stats) {
        coverage.runs++;
        for (const k of Object.keys(r.stats) as (keyof RunStats)[]) coverage[k] += r.stats[k];
      }
      return r.ok;
    }),
    { numRuns, seed: SEED, ...(PATH !== undefined ? { path: PATH } : {}) },
  );
  if (result.failed) {
    const run = result.counterexample?.[0] as SimRun;
    expect.fail(`seed ${result.seed}, path ${result.counterexamplePath ?? ''}\n${await explain(run, undefined, undefined, damagedSnapshots)}`);
  }
  if (PATH !== undefined) return undefined;
  expect(result.numRuns).toBe(numRuns);
  return coverage;
}

describe('safety of the shipped node loop under generated fault schedules', () => {
  for (const nodes of [3, 5] as const) {
    for (const profile of ['mixed', 'churn'] as const satisfies readonly SimProfile[]) {
      it(`${nodes} nodes, ${profile} faults: every invariant holds, every acknowledged write survives, histories are linearizable`, async () => {
        const coverage = await checkSchedules(nodes, profile, RUNS);
        if (coverage === undefined) return;
        console.log(`${nodes} nodes, ${profile}: ${JSON.stringify(coverage)}`);
        // Coverage of this test's own schedules: they reach what they are meant to test.
        expect(coverage.writesOk, 'acknowledged writes').toBeGreaterThan(profile === 'mixed' ? 2 * RUNS : RUNS / 2);
        expect(coverage.snapshotsTaken, 'snapshots taken (§7)').toBeGreaterThan(RUNS);
        expect(coverage.snapshotsInstalled, 'InstallSnapshot (§7)').toBeGreaterThan(0);
        expect(coverage.powerCrashes, 'power losses').toBeGreaterThan(0);
        expect(coverage.earlySendsAfterFirstTerm, 'replication in parallel with the leader\'s write (thesis §10.2.1)').toBeGreaterThan(0);
        if (profile === 'mixed') {
          expect(coverage.confChanges, 'membership changes (§4.1)').toBeGreaterThan(0);
          expect(coverage.pauses, 'paused nodes').toBeGreaterThan(0);
          expect(coverage.snapshotCuts, 'cut snapshot transfers').toBeGreaterThan(0);
        }
      }, 1_800_000);
    }
  }

  it(`3 nodes, mixed faults, ${DAMAGED_SNAPSHOT_RATE * 100}% of snapshot transfers damaged: every damaged payload is refused before it steps, no node stops, and the followers still catch up`, async () => {
    const coverage = await checkSchedules(3, 'mixed', DAMAGED_RUNS, DAMAGED_SNAPSHOT_RATE);
    if (coverage === undefined) return;
    console.log(`3 nodes, mixed, damaged snapshots: ${JSON.stringify(coverage)}`);
    expect(coverage.snapshotsRefused, 'damaged payloads refused').toBeGreaterThan(0);
    expect(coverage.snapshotsInstalled, 'InstallSnapshot (§7) despite the damage').toBeGreaterThan(0);
  }, 1_800_000);
});
