/**
 * The Raft core under generated faults, with snapshots and log compaction every few entries and
 * membership changes (add voter, add learner, remove) proposed during the faults: fast-check drives the deterministic simulator through
 * thousands of schedules on 3- and 5-node clusters; every safety invariant is checked after
 * every simulated event, liveness after healing, and linearizability of the client history.
 *
 * `SIM_RUNS` (schedules per cluster size and profile) and `SIM_SEED` replay or lengthen a run:
 * `npm run test:sim -- --runs 20000 --seed 42`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { arbRun, explain, runSchedule, type SimProfile, type SimRun } from './schedule.js';
import type { SimBugs } from './simulator.js';

/** Schedules per (cluster size, profile): 4 combinations, so 4x this many in all. */
const RUNS = Number(process.env.SIM_RUNS ?? 1000);
const SEED = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);
/** Schedules a deliberate bug may take to be found before its test fails. */
const TEETH_BUDGET_RUNS = 3000;

/** Snapshots installed across the property runs of this file (coverage of §7 InstallSnapshot). */
let installs = 0;
/** Membership changes applied across the property runs (coverage of §4.1). */
let confChanges = 0;

function property(nodes: 3 | 5, profile: SimProfile, bugs?: SimBugs): fc.IProperty<[SimRun]> {
  return fc.property(arbRun(nodes, profile), (run) => {
    const r = runSchedule(run, bugs);
    installs += r.snapshotsInstalled ?? 0;
    confChanges += r.confChanges ?? 0;
    return r.ok;
  });
}

describe('safety under generated fault schedules', () => {
  for (const nodes of [3, 5] as const) {
    for (const profile of ['mixed', 'churn'] as const) {
      it(`${nodes} nodes, ${profile} faults: every invariant holds, every acknowledged write survives, histories are linearizable`, () => {
        const result = fc.check(property(nodes, profile), { numRuns: RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) });
        if (result.failed) {
          const run = result.counterexample?.[0] as SimRun;
          expect.fail(`seed ${result.seed}, path ${result.counterexample ? result.counterexamplePath : ''}\n${explain(run)}`);
        }
        expect(result.numRuns).toBe(RUNS);
        // The schedules reach InstallSnapshot (§7): followers fall behind compacted logs.
        expect(installs).toBeGreaterThan(0);
        // ... and membership changes (adds, promotions, removals) commit under those faults.
        expect(confChanges).toBeGreaterThan(0);
      }, 600_000);
    }
  }
});

/** Searches for a counterexample with a deliberate bug on; returns how many schedules it took. */
function findViolation(nodes: 3 | 5, profile: SimProfile, bugs: SimBugs): { found: boolean; runs: number; error: string } {
  const result = fc.check(property(nodes, profile, bugs), { numRuns: TEETH_BUDGET_RUNS, seed: 7, endOnFailure: true });
  const error = result.failed ? (runSchedule(result.counterexample?.[0] as SimRun, bugs).error ?? '') : '';
  return { found: result.failed, runs: result.numRuns, error };
}

describe('the simulator has teeth: deliberate bugs are found', () => {
  it('committing by counting replicas of prior-term entries (breaks the §5.4.2 / Figure 8 rule)', () => {
    const r = findViolation(3, 'churn', { commitPriorTermEntries: true });
    expect(r.found, `not found in ${r.runs} schedules`).toBe(true);
    expect(r.error).toMatch(/Leader Completeness|committed|State Machine Safety|linearizable|acknowledged/);
  }, 300_000);

  it('granting votes without the §5.4.1 up-to-date check', () => {
    const r = findViolation(3, 'churn', { skipUpToDateCheck: true });
    expect(r.found, `not found in ${r.runs} schedules`).toBe(true);
    expect(r.error).toMatch(/Leader Completeness|committed|State Machine Safety|linearizable|acknowledged/);
  }, 300_000);

  it('not persisting votedFor before answering a vote (a restarted node votes twice in a term)', () => {
    const r = findViolation(3, 'churn', { forgetVotedFor: true });
    expect(r.found, `not found in ${r.runs} schedules`).toBe(true);
    expect(r.error).toMatch(/vote|Election Safety/);
  }, 300_000);
});
