/**
 * Exact scenarios in the simulator of the shipped node loop: the classic traps (Figure 8, a
 * leader isolated in a minority, a node rejoining after a partition, repeated leader changes
 * under load, a symmetric split, a removed leader), and the driver's own (a follower that
 * catches up by snapshot, a transfer cut part-way, a lost ReadIndex round, a paused leader, a
 * power loss, a watch across a snapshot install). Each checks every invariant after every event.
 */
import { describe, expect, it } from 'vitest';
import { checkLinearizable } from '../support/linearizability.js';
import { SafetyViolation, SIM_ELECTION_MS, SIM_SNAPSHOT_EVERY_ENTRIES, SIM_SNAPSHOT_TAIL_ENTRIES, Simulation, type ClientCall, type SimBugs } from './simulator.js';
import { WARMUP_MS, runSchedule, type SimRun } from './schedule.js';

/** Longest further wait for a first leader after the warm-up, in simulated ms. */
const ELECTION_WAIT_MS = 10_000;

async function started(nodes: 3 | 5, seed = 1, bugs?: SimBugs): Promise<Simulation> {
  const sim = await Simulation.create({ nodes, seed, ...(bugs ? { bugs } : {}) });
  await sim.run(WARMUP_MS);
  // Split votes can take a few more election rounds than the warm-up.
  await sim.runUntil(() => sim.leader() !== undefined, ELECTION_WAIT_MS);
  expect(sim.leader()).toBeDefined();
  return sim;
}

function others(sim: Simulation, ...not: string[]): string[] {
  return sim.ids.filter((id) => !not.includes(id));
}

/** Runs until every call has an outcome (bounded). */
async function settle(sim: Simulation, calls: readonly ClientCall[], maxMs = 10_000): Promise<void> {
  await sim.runUntil(() => calls.every((c) => c.outcome !== 'pending'), maxMs);
}

/** Ends a scenario: liveness, equal nodes and watches, and a linearizable history over `keys`. */
async function finish(sim: Simulation, keys: readonly string[]): Promise<void> {
  await sim.checkLiveness(keys);
  sim.finish();
  const lin = checkLinearizable(sim.history);
  expect(lin.ok, lin.ok === false ? lin.reason : '').toBe(true);
}

/** The agent version a node's state machine holds for `key` (read through the simulation). */
async function versionOn(sim: Simulation, id: string, key: string): Promise<string | undefined> {
  const sm = sim.get(id).sm;
  if (!sm) throw new Error(`${id} is down`);
  return (await sim.await(sm.get(key)))?.version;
}

/**
 * Figure 8 of the paper, on 3 nodes: an entry X of term t is stored only by the old leader L1;
 * L2 wins term t+1 and appends its own entry at X's index, then is cut off; L1 wins term t+2
 * with the third node's vote and replicates X to it. X is now on a majority but of an old term.
 * If L1 commits X by counting replicas and crashes, L2 can win again and overwrite X.
 */
async function figure8(bugs?: SimBugs): Promise<Simulation> {
  const sim = await started(3, 3, bugs);
  const l1 = sim.leader() as string;
  // X reaches L1's log only: everyone else is cut off first.
  sim.partition([[l1], others(sim, l1)]);
  sim.write(l1, 'register', 'x', 'X');
  await sim.run(50);
  await sim.awaitLeader();
  const l2 = sim.leader() as string;
  expect(l2).not.toBe(l1);
  const third = others(sim, l1, l2)[0] as string;
  // L2's own entry (its no-op, at X's index) stays on L2: it is cut off the moment it wins.
  sim.partition([[l2], [l1, third]]);
  await sim.awaitLeader();
  expect(sim.leader()).toBe(l1);
  // Run until L1 counts X committed (only the buggy rule does: X is of an old term) or a while.
  const xIndex = sim.get(l2).node.core.raft.raftLog.lastIndex();
  await sim.runUntil(() => sim.get(l1).node.core.raft.raftLog.committed >= xIndex, 2_000);
  // L1 dies at once, its newest messages lost with it; L2 and the third node meet again.
  sim.partition([[l1], [l2, third]]);
  sim.crash(l1, 'process');
  sim.heal();
  await sim.run(30_000);
  return sim;
}

describe('Figure 8: committing entries from previous terms', () => {
  it('with the commit rule of §5.4.2 the old entry is never treated as committed, and nothing breaks', async () => {
    const sim = await figure8();
    await finish(sim, ['x']);
  });

  it('with the deliberate bug (commit by counting prior-term replicas) the simulator finds the overwrite of a committed entry', async () => {
    let error: unknown;
    try {
      await figure8({ commitPriorTermEntries: true });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SafetyViolation);
    expect(String((error as Error).message)).toMatch(/committed|Leader Completeness|State Machine Safety/);
  });
});

describe('a leader isolated in a minority', () => {
  it('cannot commit, steps down, and its uncommitted entries are discarded when it rejoins', async () => {
    const sim = await started(5, 11);
    const old = sim.leader() as string;
    const minority = [old, others(sim, old)[0] as string];
    sim.partition([minority, others(sim, ...minority)]);
    const lost = sim.write(old, 'register', 'k', 'lost');
    const committedBefore = sim.get(old).node.core.raft.raftLog.committed;
    await sim.run(4_000);
    expect(sim.get(old).node.core.raft.raftLog.committed).toBe(committedBefore);
    expect(sim.get(old).node.core.raft.role).not.toBe('leader');
    const fresh = sim.leader() as string;
    expect(minority).not.toContain(fresh);
    const kept = sim.write(fresh, 'register', 'k', 'kept');
    await settle(sim, [kept]);
    expect(kept.outcome).toBe('ok');
    sim.heal();
    await finish(sim, ['k']);
    expect(lost.outcome).not.toBe('ok');
    for (const n of sim.upNodes()) expect(await versionOn(sim, n.id, 'k')).toBe('kept');
  });
});

describe('thesis §9.6 PreVote: a node rejoining after a partition', () => {
  it('does not raise its term while cut off, so it does not depose the healthy leader when it returns', async () => {
    const sim = await started(3, 5);
    const leader = sim.leader() as string;
    const term = sim.get(leader).node.core.raft.currentTerm;
    const loner = others(sim, leader)[0] as string;
    sim.partition([[loner], others(sim, loner)]);
    await sim.run(20_000);
    expect(sim.get(loner).node.core.raft.currentTerm).toBe(term);
    sim.heal();
    await sim.run(5_000);
    expect(sim.leader()).toBe(leader);
    expect(sim.get(leader).node.core.raft.currentTerm).toBe(term);
  });
});

describe('repeated leader changes under load', () => {
  it('keeps every acknowledged write and stays linearizable through ten leader kills', async () => {
    const sim = await started(5, 21);
    const calls: ClientCall[] = [];
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 8; i++) {
        const via = sim.ids[(round + i) % sim.ids.length] as string;
        calls.push(sim.write(via, 'register', `k${i % 3}`));
        sim.read(via, `k${(i + 1) % 3}`);
        await sim.run(70);
      }
      const l = sim.leader();
      if (l) {
        sim.crash(l);
        await sim.awaitLeader();
        sim.restart(l);
      }
    }
    await finish(sim, ['k0', 'k1', 'k2']);
    expect(calls.filter((c) => c.outcome === 'ok').length).toBeGreaterThan(20);
  });
});

describe('a symmetric split of a 5-node cluster, 2/3, then healed', () => {
  it('the 3-side serves writes, the 2-side serves none, and after healing all five agree', async () => {
    const sim = await started(5, 8);
    const two = sim.ids.slice(0, 2);
    const three = sim.ids.slice(2);
    sim.partition([two, three]);
    await sim.run(6_000);
    const l = sim.leader() as string;
    expect(three).toContain(l);
    const refused = two.map((id) => sim.write(id, 'register', 'side', 'two'));
    const taken = sim.write(three[0] as string, 'register', 'side', 'three');
    await settle(sim, [...refused, taken]);
    expect(taken.outcome).toBe('ok');
    for (const c of refused) expect(c.outcome).not.toBe('ok');
    sim.heal();
    await finish(sim, ['side']);
    for (const n of sim.upNodes()) expect(await versionOn(sim, n.id, 'side')).toBe('three');
  });
});

describe('thesis §4.2.2 removing the leader', () => {
  it('the removed leader hands over to a remaining voter, which commits; the removed node takes no more writes', async () => {
    const sim = await started(3, 4);
    const old = sim.leader() as string;
    const change = sim.changeConfig('removeNode', old);
    await settle(sim, [change]);
    expect(change.outcome).toBe('ok');
    await sim.runUntil(() => sim.leader() !== undefined && sim.leader() !== old, 10_000);
    const fresh = sim.leader() as string;
    expect(fresh).not.toBe(old);
    expect([...sim.members()].sort()).toEqual(others(sim, old).sort());
    const w = sim.write(fresh, 'register', 'k', 'after');
    await settle(sim, [w]);
    expect(w.outcome).toBe('ok');
    await finish(sim, ['k']);
  });
});

/** Writes `count` values to `key` through `via`, one after another, and waits for them. */
/** Rounds of writes while a restarted follower catches up, at most. */
const CATCH_UP_WRITE_ROUNDS = 200;
/** Writes started in each round, without waiting for them. */
const CATCH_UP_WRITES_PER_ROUND = 8;
/** Simulated time between rounds, in ms. */
const CATCH_UP_ROUND_MS = 5;
/** Seeds of the catch-up-under-writes scenario (fixed: each replays). */
const CATCH_UP_SEEDS = [1, 2, 3] as const;
/** Wall-clock limit of each multi-seed catch-up test, in ms: three simulated catch-ups take 10-30 s on a busy 2-core machine. */
const CATCH_UP_TEST_TIMEOUT_MS = 120_000;

async function writeMany(sim: Simulation, via: string, key: string, count: number): Promise<ClientCall[]> {
  const calls: ClientCall[] = [];
  for (let i = 0; i < count; i++) {
    calls.push(sim.write(via, 'register', key));
    await settle(sim, calls.slice(-1));
  }
  return calls;
}

describe('§7 a follower that missed a snapshot\'s worth of writes', () => {
  /** A follower stopped, then more than threshold + tail writes through the leader (key `k`). */
  async function stopFollowerAndWrite(seed: number, bugs?: SimBugs): Promise<{ sim: Simulation; leader: string; lagging: string; calls: ClientCall[] }> {
    const sim = await started(3, seed, bugs);
    const leader = sim.leader() as string;
    const lagging = others(sim, leader)[1] as string;
    sim.crash(lagging, 'process');
    const calls = await writeMany(sim, leader, 'k', 3 * (SIM_SNAPSHOT_EVERY_ENTRIES + SIM_SNAPSHOT_TAIL_ENTRIES));
    return { sim, leader, lagging, calls };
  }

  /** n3 stopped; more than threshold + tail writes; n3 restarted. */
  async function catchUp(bugs?: SimBugs): Promise<Simulation> {
    const { sim, leader, lagging, calls } = await stopFollowerAndWrite(6, bugs);
    expect(calls.every((c) => c.outcome === 'ok')).toBe(true);
    expect(sim.get(leader).node.core.raft.raftLog.firstIndex()).toBeGreaterThan(sim.get(lagging).disk.store.log.lastIndex() + 1);
    sim.restart(lagging);
    await sim.runUntil(() => sim.get(lagging).up && sim.get(lagging).node.appliedIndex >= sim.get(leader).node.appliedIndex, 20_000);
    return sim;
  }

  it('restarts, catches up by InstallSnapshot, and serves every agent', async () => {
    const sim = await catchUp();
    expect(sim.snapshotsInstalled).toBeGreaterThan(0);
    await finish(sim, ['k']);
  });

  it('with InstallSnapshot also sent on the ordinary stream (the bug that shipped), the follower stops by itself', async () => {
    let error: unknown;
    try {
      await catchUp({ installSnapshotOnStream: true });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SafetyViolation);
    expect(String((error as Error).message)).toMatch(/stopped by itself: snapshot \d+ to install is not on disk/);
  });

  /**
   * n3 stopped; more than threshold + tail writes; n3 restarted while the leader goes on taking
   * writes, so the snapshot's view opens while applies are in flight.
   */
  async function catchUpUnderWrites(seed: number, bugs?: SimBugs): Promise<Simulation> {
    const { sim, leader, lagging } = await stopFollowerAndWrite(seed, bugs);
    sim.restart(lagging);
    const during: ClientCall[] = [];
    const caughtUp = (): boolean => sim.snapshotsInstalled > 0 && sim.get(lagging).up && sim.get(lagging).node.appliedIndex >= sim.get(leader).node.appliedIndex;
    for (let round = 0; round < CATCH_UP_WRITE_ROUNDS && sim.snapshotsInstalled === 0; round++) {
      for (let i = 0; i < CATCH_UP_WRITES_PER_ROUND; i++) during.push(sim.write(leader, 'register', `w${i}`));
      await sim.run(CATCH_UP_ROUND_MS);
    }
    await settle(sim, during);
    await sim.runUntil(caughtUp, 20_000);
    expect(during.filter((c) => c.outcome === 'ok').length).toBeGreaterThan(0);
    return sim;
  }

  it('restarted while writes go on, catches up by a snapshot opened between two applies, and serves every agent', { timeout: CATCH_UP_TEST_TIMEOUT_MS }, async () => {
    for (const seed of CATCH_UP_SEEDS) {
      const sim = await catchUpUnderWrites(seed);
      expect(sim.snapshotsInstalled).toBeGreaterThan(0);
      await finish(sim, ['k', ...Array.from({ length: CATCH_UP_WRITES_PER_ROUND }, (_, i) => `w${i}`)]);
    }
  });

  /**
   * The first error of {@link catchUpUnderWrites} with `bugs` over {@link CATCH_UP_SEEDS}, in order:
   * whether an apply is in flight when the view opens depends on the schedule, so any of the seeds
   * the test above passes with must find the bug (at this writing seeds 2 and 3 do, seed 1 not).
   */
  async function firstCatchUpError(bugs: SimBugs): Promise<unknown> {
    for (const seed of CATCH_UP_SEEDS) {
      try {
        await catchUpUnderWrites(seed, bugs);
      } catch (e) {
        return e;
      }
    }
    return undefined;
  }

  it('with the snapshot\'s view opened while an apply is in flight, the view and its index disagree and the follower refuses the payload', { timeout: CATCH_UP_TEST_TIMEOUT_MS }, async () => {
    const error = await firstCatchUpError({ snapshotViewMidApply: true });
    expect(error).toBeInstanceOf(SafetyViolation);
    // The follower decodes a payload as it arrives, finds the applied index it holds is not the
    // one its metadata names, and refuses it; a correct leader never sends such a payload.
    expect(String((error as Error).message)).toMatch(/refused a snapshot payload from n\d that the network did not damage: the snapshot payload is applied through \d+, not the \d+ its metadata names/);
  });

  it('with the payload\'s check skipped as well, the mid-apply view reaches the install and the follower stops by itself', { timeout: CATCH_UP_TEST_TIMEOUT_MS }, async () => {
    const error = await firstCatchUpError({ snapshotViewMidApply: true, installUncheckedSnapshots: true });
    expect(error).toBeInstanceOf(SafetyViolation);
    expect(String((error as Error).message)).toMatch(/stopped by itself: installed snapshot \d+ but the state machine says applied \d+/);
  });

  /**
   * The leader cut off a follower for more than threshold + tail writes, then every transfer to
   * it arrives damaged (a format nobody reads, or a wrong pair count) for 5 simulated seconds.
   */
  async function damagedTransfers(bugs?: SimBugs): Promise<{ sim: Simulation; lagging: string }> {
    const sim = await started(3, 8, bugs);
    const leader = sim.leader() as string;
    const lagging = others(sim, leader)[0] as string;
    sim.partition([[lagging], others(sim, lagging)]);
    await writeMany(sim, leader, 'k', 3 * (SIM_SNAPSHOT_EVERY_ENTRIES + SIM_SNAPSHOT_TAIL_ENTRIES));
    sim.net = { ...sim.net, snapshotDamage: 1 };
    sim.network.unblockAll();
    await sim.run(5_000);
    return { sim, lagging };
  }

  it('a payload the follower cannot install is refused as it arrives, never stepped, and a clean one installs later', async () => {
    const { sim } = await damagedTransfers();
    expect(sim.snapshotsRefused).toBeGreaterThan(1);
    expect(sim.snapshotsInstalled).toBe(0);
    sim.net = { ...sim.net, snapshotDamage: 0 };
    await sim.runUntil(() => sim.snapshotsInstalled > 0, 10_000);
    expect(sim.snapshotsInstalled).toBeGreaterThan(0);
    await finish(sim, ['k']);
  });

  it('with payloads stepped unchecked (the bug), a damaged payload reaches the install and the follower stops by itself', async () => {
    let error: unknown;
    try {
      await damagedTransfers({ installUncheckedSnapshots: true });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SafetyViolation);
    expect(String((error as Error).message)).toMatch(/stopped by itself: (not a state pair stream \(bad magic\)|state pair stream ends after \d+ pairs but says \d+)/);
  });

  it('a follower of an earlier version (it advertises no payload formats) is sent format 2, which it reads, and catches up', async () => {
    const sim = await started(3, 6);
    const leader = sim.leader() as string;
    const lagging = others(sim, leader)[0] as string;
    sim.network.legacyNodes.add(lagging);
    sim.partition([[lagging], others(sim, lagging)]);
    await writeMany(sim, leader, 'k', 3 * (SIM_SNAPSHOT_EVERY_ENTRIES + SIM_SNAPSHOT_TAIL_ENTRIES));
    sim.network.unblockAll();
    // The network fails the run if a payload to it is in a format it does not read.
    await sim.runUntil(() => sim.snapshotsInstalled > 0, 10_000);
    expect(sim.snapshotsInstalled).toBeGreaterThan(0);
    await finish(sim, ['k']);
  });

  it('a transfer cut part-way, again and again, is retried until one gets through', async () => {
    const sim = await started(3, 7);
    const leader = sim.leader() as string;
    const lagging = others(sim, leader)[0] as string;
    sim.partition([[lagging], others(sim, lagging)]);
    await writeMany(sim, leader, 'k', 3 * (SIM_SNAPSHOT_EVERY_ENTRIES + SIM_SNAPSHOT_TAIL_ENTRIES));
    sim.network.unblockAll();
    sim.net = { ...sim.net, snapshotCut: 1 };
    await sim.run(5_000);
    expect(sim.network.snapshotCuts).toBeGreaterThan(1);
    expect(sim.snapshotsInstalled).toBe(0);
    sim.net = { ...sim.net, snapshotCut: 0 };
    await sim.runUntil(() => sim.snapshotsInstalled > 0, 10_000);
    expect(sim.snapshotsInstalled).toBeGreaterThan(0);
    await finish(sim, ['k']);
  });
});

describe('thesis §6.4 a ReadIndex round whose request is lost', () => {
  /** Every message from `via` to the leader is dropped while a read waits. */
  async function lostRound(bugs?: SimBugs): Promise<{ read: ClientCall; elapsed: number; sim: Simulation }> {
    const sim = await started(3, 9, bugs);
    const leader = sim.leader() as string;
    const via = others(sim, leader)[0] as string;
    sim.blockLink(via, leader);
    const at = sim.now;
    const read = sim.read(via, 'k');
    // The link heals at once: only the round's request was lost.
    await sim.run(20);
    sim.network.unblockAll();
    await settle(sim, [read], 8_000);
    return { read, elapsed: sim.now - at, sim };
  }

  it('is failed with UNAVAILABLE within an election timeout or so, not at the client\'s deadline', async () => {
    const { read, elapsed } = await lostRound();
    expect(read.outcome).toBe('failed');
    expect(read.code).toBe(14);
    expect(elapsed).toBeLessThan(3 * SIM_ELECTION_MS);
  });

  it('with lost rounds kept (the bug), the read waits for its deadline, which the simulator reports', async () => {
    await expect(lostRound({ keepLostReads: true })).rejects.toThrow(/waited \d+ ms for its deadline/);
  });
});

describe('a paused leader (SIGSTOP)', () => {
  it('asked for a linearizable read when it wakes, still believing it leads in its old term, never answers with data older than the new leader acknowledged', async () => {
    const sim = await started(3, 10);
    const old = sim.leader() as string;
    const first = sim.write(old, 'register', 'k', 'before');
    await settle(sim, [first]);
    sim.pause(old);
    await sim.awaitLeader();
    const fresh = sim.leader() as string;
    expect(fresh).not.toBe(old);
    const second = sim.write(fresh, 'register', 'k', 'after');
    await settle(sim, [second]);
    expect(second.outcome).toBe('ok');
    // It wakes cut off, so what the new leader sent it meanwhile is lost: the stale-leader case.
    sim.partition([[old], others(sim, old)]);
    sim.resume(old);
    const stale = sim.read(old, 'k');
    await sim.run(10);
    expect(sim.get(old).node.core.raft.role).toBe('leader');
    expect(sim.get(old).node.core.raft.currentTerm).toBeLessThan(sim.get(fresh).node.core.raft.currentTerm);
    await settle(sim, [stale]);
    // Its ReadIndex round cannot be confirmed by a majority: it fails (retry elsewhere) instead of
    // answering "before".
    expect(stale.outcome).toBe('failed');
    expect(stale.code).toBe(14); // UNAVAILABLE
    sim.heal();
    await finish(sim, ['k']);
  });

  it('with ReadIndex skipped (serving from local state, the bug ReadIndex prevents) the stale read happens and the history is not linearizable', async () => {
    // Serializable reads are what a leader without ReadIndex would answer.
    const sim = await started(3, 10);
    const old = sim.leader() as string;
    const first = sim.write(old, 'register', 'k', 'before');
    await settle(sim, [first]);
    sim.pause(old);
    await sim.awaitLeader();
    const second = sim.write(sim.leader() as string, 'register', 'k', 'after');
    await settle(sim, [second]);
    expect([first.outcome, second.outcome]).toEqual(['ok', 'ok']);
    sim.partition([[old], others(sim, old)]);
    sim.resume(old);
    await sim.run(10);
    const call = sim.now;
    const local = sim.read(old, 'k', { consistency: 'serializable' });
    await settle(sim, [local]);
    expect(local.found).toBe('before');
    // Had it been answered as a linearizable read, the checker would have caught it.
    const lin = checkLinearizable([...sim.history, { kind: 'get', key: 'k', call, ret: sim.now, outcome: 'ok', found: local.found ?? null }]);
    expect(lin.ok).toBe(false);
  });
});

describe('durability: a power loss', () => {
  it('loses nothing the loop synced; acknowledged writes survive a whole-cluster power loss', async () => {
    const sim = await started(3, 12);
    const calls = await writeMany(sim, sim.leader() as string, 'k', 10);
    expect(calls.every((c) => c.outcome === 'ok')).toBe(true);
    for (const id of sim.ids) sim.crash(id, 'power');
    for (const id of sim.ids) sim.restart(id);
    await finish(sim, ['k']);
  });

  it('with writes never synced (a missing fsync), a whole-cluster power loss loses acknowledged writes, which the simulator reports', async () => {
    // Whether the loss shows depends on the schedule (a snapshot file, always durable, may cover
    // every write): seed 13 loses some with and without the text index's apply steps.
    const sim = await started(3, 13, { skipSync: true });
    const calls = await writeMany(sim, sim.leader() as string, 'k', 10);
    expect(calls.every((c) => c.outcome === 'ok')).toBe(true);
    for (const id of sim.ids) sim.crash(id, 'power');
    for (const id of sim.ids) sim.restart(id);
    let error: unknown;
    try {
      await sim.checkLiveness(['k']);
      sim.finish();
      const lin = checkLinearizable(sim.history);
      if (lin.ok === false) throw new SafetyViolation(lin.reason);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SafetyViolation);
  });
});

describe('watch across a snapshot install', () => {
  it('a follower that installs a snapshot while its watch is live delivers every revision in between', async () => {
    const sim = await started(3, 13);
    const leader = sim.leader() as string;
    const lagging = others(sim, leader)[0] as string;
    sim.partition([[lagging], others(sim, lagging)]);
    await writeMany(sim, leader, 'k', 3 * (SIM_SNAPSHOT_EVERY_ENTRIES + SIM_SNAPSHOT_TAIL_ENTRIES));
    const installsBefore = sim.snapshotsInstalled;
    sim.heal();
    await sim.runUntil(() => sim.snapshotsInstalled > installsBefore, 10_000);
    expect(sim.snapshotsInstalled).toBeGreaterThan(installsBefore);
    // The watch is still the one it started with: it was live across the install.
    await finish(sim, ['k']);
    expect(sim.get(lagging).watch.lastRevision).toBe(sim.get(leader).watch.lastRevision);
  });
});

const EVENTS_1: SimRun['events'] = [{"t": "isolate", "node": 0}, {"t": "killLeaderAtCommit", "down": 586}, {"t": "conf", "op": "removeNode", "node": 0}, {"t": "run", "ms": 668}, {"t": "awaitLeader"}, {"t": "conf", "op": "removeNode", "node": 2}, {"t": "write", "node": 0, "del": false, "key": 0, "count": 2, "gap": 17}, {"t": "isolateLeader", "after": 70}, {"t": "cas", "node": 0, "key": 0, "gap": 0}, {"t": "awaitLeader"}, {"t": "awaitLeader"}, {"t": "split", "minority": [0]}, {"t": "killLeader", "after": 0, "down": 0, "power": false}, {"t": "isolate", "node": 0}, {"t": "heal"}, {"t": "killLeader", "after": 0, "down": 0, "power": false}];
const EVENTS_3: SimRun['events'] = [{"t": "conf", "op": "removeNode", "node": 0}, {"t": "cas", "node": 0, "key": 0, "gap": 0}, {"t": "killLeaderAtCommit", "down": 1708}, {"t": "write", "node": 1, "del": false, "key": 0, "count": 1, "gap": 20}, {"t": "run", "ms": 785}, {"t": "conf", "op": "addVoter", "node": 0}, {"t": "awaitLeader"}, {"t": "isolateLeader", "after": 0}, {"t": "run", "ms": 400}, {"t": "run", "ms": 599}, {"t": "killLeader", "after": 49, "down": 0, "power": false}, {"t": "isolate", "node": 0}, {"t": "split", "minority": [1]}, {"t": "awaitLeader"}, {"t": "write", "node": 0, "del": false, "key": 0, "count": 1, "gap": 0}, {"t": "isolateLeader", "after": 0}, {"t": "heal"}, {"t": "isolateLeader", "after": 0}, {"t": "bounce", "node": 0, "down": 0, "power": false}, {"t": "run", "ms": 10}, {"t": "run", "ms": 23}];

describe('regressions found by soaks of the shipped loop', () => {
  /** Runs a schedule a soak once failed, as it printed it; it must pass now. */
  async function expectPasses(run: SimRun): Promise<void> {
    const r = await runSchedule(run);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
  }

  it('a leader that removed itself appends nothing after the removal, so a survivor can be elected when it dies before handing off (soak seed 20261202)', async () => {
    // n3 led {n2, n3}, proposed its own removal, took one more write, and died before handing
    // off; the survivor never learned the removal committed and could never win n3's vote: n3's
    // log was longer. Now a leader takes no proposal after its own removal.
    await expectPasses({ nodes: 3, seed: 1700527839, events: EVENTS_1 });
  });

  it('a node that forgot a removed peer learns it back when it is re-added and leads (soak seed 20261202)', async () => {
    // n5 applied the removal of n1 (forgetting its address) but not its re-addition; n1 then led
    // and n5's answers went nowhere. Hearing from a forgotten peer now brings it back, as the
    // gRPC transport does with the address on the peer's stream.
    await expectPasses({ nodes: 5, seed: 919601759, events: EVENTS_3 });
  });
});
