/**
 * The simulator has teeth: each deliberate bug, switched on by a test-only knob of the core or
 * of the driver, is found by the generated schedules within a budget. Each test reports how many
 * schedules it took (a fixed fast-check seed, so the count replays).
 *
 * Bugs of the core: the Figure 8 commit rule, the up-to-date check of votes, a caught-up
 * follower left in probe. Bugs of the driver (each one once shipped or was one line away): the
 * vote not persisted, writes never synced, messages sent twice, InstallSnapshot on the ordinary
 * stream, lost ReadIndex rounds kept forever, the durable term frozen at start.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { arbRun, runSchedule, type SimProfile, type SimRun } from './schedule.js';
import type { SimBugs } from './simulator.js';

/** Schedules a deliberate bug may take to be found before its test fails. */
const TEETH_BUDGET_RUNS = 2_000;
/** The fast-check seed of these searches (fixed: the counts replay). */
const TEETH_SEED = 7;

/** Searches for a violation with `bugs` on; returns how many schedules it took and the error. */
async function findViolation(nodes: 3 | 5, profile: SimProfile, bugs: SimBugs): Promise<{ found: boolean; runs: number; error: string }> {
  let error = '';
  let runs = 0;
  const result = await fc.check(
    fc.asyncProperty(arbRun(nodes, profile), async (run: SimRun) => {
      runs++;
      const r = await runSchedule(run, bugs);
      if (!r.ok && error === '') error = r.error ?? '';
      return r.ok;
    }),
    { numRuns: TEETH_BUDGET_RUNS, seed: TEETH_SEED, endOnFailure: true },
  );
  return { found: result.failed, runs: result.failed ? result.numRuns : runs, error };
}

const cases: { name: string; nodes: 3 | 5; profile: SimProfile; bugs: SimBugs; expect: RegExp }[] = [
  { name: 'committing by counting replicas of prior-term entries (breaks the §5.4.2 / Figure 8 rule)', nodes: 3, profile: 'churn', bugs: { commitPriorTermEntries: true }, expect: /Leader Completeness|committed|State Machine Safety|linearizable|different agents/ },
  { name: 'granting votes without the §5.4.1 up-to-date check', nodes: 3, profile: 'churn', bugs: { skipUpToDateCheck: true }, expect: /Leader Completeness|committed|State Machine Safety|linearizable|different agents/ },
  { name: 'not persisting votedFor before answering a vote (a restarted node votes twice in a term)', nodes: 3, profile: 'churn', bugs: { forgetVotedFor: true }, expect: /vote|Election Safety|Leader Completeness|committed/ },
  { name: 'never syncing a write (a missing fsync, seen by power losses)', nodes: 3, profile: 'churn', bugs: { skipSync: true }, expect: /Election Safety|Leader Completeness|committed|linearizable|vote|restarted|stopped by itself/ },
  { name: 'sending the early messages of a Ready a second time after its write', nodes: 3, profile: 'mixed', bugs: { resendEarlyMessages: true }, expect: /sent one message twice/ },
  { name: 'sending InstallSnapshot on the ordinary stream as well, and stepping it without its payload', nodes: 3, profile: 'mixed', bugs: { installSnapshotOnStream: true }, expect: /stopped by itself: snapshot \d+ to install is not on disk/ },
  { name: 'keeping a ReadIndex round that got no answer until the client\'s deadline', nodes: 3, profile: 'mixed', bugs: { keepLostReads: true }, expect: /waited \d+ ms for its deadline/ },
  { name: 'leaving a caught-up follower in probe', nodes: 3, profile: 'mixed', bugs: { stayInProbe: true }, expect: /caught up but the leader keeps it in probe/ },
];

describe('the simulator of the shipped loop has teeth: deliberate bugs are found', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const r = await findViolation(c.nodes, c.profile, c.bugs);
      console.log(`${JSON.stringify(c.bugs)}: ${r.found ? `found after ${r.runs} schedules` : `not found in ${r.runs}`}: ${r.error.split('\n')[0]?.slice(0, 160) ?? ''}`);
      expect(r.found, `not found in ${r.runs} schedules`).toBe(true);
      expect(r.error).toMatch(c.expect);
    }, 1_200_000);
  }

  it('freezing the durable term at start: no leader after the first replicates in parallel with its own write (thesis §10.2.1)', async () => {
    const runs = fc.sample(arbRun(3, 'mixed'), { numRuns: 50, seed: TEETH_SEED });
    let early = 0;
    let earlyFrozen = 0;
    for (const run of runs) {
      early += (await runSchedule(run)).stats?.earlySendsAfterFirstTerm ?? 0;
      earlyFrozen += (await runSchedule(run, { freezeDurableTerm: true })).stats?.earlySendsAfterFirstTerm ?? 0;
    }
    console.log(`early sends by later leaders over ${runs.length} schedules: ${early} as shipped, ${earlyFrozen} with the durable term frozen`);
    expect(early).toBeGreaterThan(0);
    expect(earlyFrozen).toBe(0);
  }, 600_000);
});
