/**
 * The classic traps, as exact scenarios in the simulator: Figure 8, a leader isolated in a
 * minority, a node rejoining after a partition (PreVote), repeated leader changes under load,
 * and a symmetric 2/3 split of a 5-node cluster. Each checks every invariant after every event.
 */
import { describe, expect, it } from 'vitest';
import { checkLinearizable } from '../support/linearizability.js';
import { SafetyViolation, Simulation, type SimBugs } from './simulator.js';
import { WARMUP_UNITS, runSchedule } from './schedule.js';

function started(nodes: 3 | 5, seed = 1, bugs?: SimBugs): Simulation {
  const sim = new Simulation({ nodes, seed, ...(bugs ? { bugs } : {}) });
  sim.run(WARMUP_UNITS);
  expect(sim.leader()).toBeDefined();
  return sim;
}

function others(sim: Simulation, ...not: string[]): string[] {
  return sim.ids.filter((id) => !not.includes(id));
}

/**
 * Figure 8 of the paper, on 3 nodes: an entry X of term t is stored only by the old leader L1;
 * L2 wins term t+1 and appends its own entry at X's index, then is cut off; L1 wins term t+2
 * with the third node's vote and replicates X to it. X is now on a majority but of an old term.
 * If L1 commits X by counting replicas and crashes, L2 can win again and overwrite X.
 */
function figure8(bugs?: SimBugs): Simulation {
  const sim = started(3, 3, bugs);
  const l1 = sim.leader() as string;
  expect(sim.write(l1, 'register', 'x', 'X')).toBe(true);
  sim.partition([[l1], others(sim, l1)]);
  sim.awaitLeader();
  const l2 = sim.leader() as string;
  expect(l2).not.toBe(l1);
  const third = others(sim, l1, l2)[0] as string;
  // L2's own entry stays on L2: it is cut off the moment it wins.
  sim.partition([[l2], [l1, third]]);
  sim.awaitLeader();
  expect(sim.leader()).toBe(l1);
  // Run until L1 counts X committed (only the buggy rule does: X is of an old term) or a while.
  const xIndex = sim.get(l2).node.raft.raftLog.lastIndex();
  for (let i = 0; i < 200 && sim.get(l1).node.raft.raftLog.committed < xIndex; i++) sim.step();
  // L1 dies at once, its newest messages lost with it; L2 and the third node meet again.
  sim.partition([[l1], [l2, third]]);
  sim.crash(l1);
  sim.heal();
  sim.run(3_000);
  return sim;
}

describe('Figure 8: committing entries from previous terms', () => {
  it('with the commit rule of §5.4.2 the old entry is never treated as committed, and nothing breaks', () => {
    const sim = figure8();
    sim.restart(sim.ids[0] as string);
    sim.checkLiveness();
    sim.finish();
    expect(checkLinearizable(sim.history).ok).toBe(true);
  });

  it('with the deliberate bug (commit by counting prior-term replicas) the simulator finds the overwrite of a committed entry', () => {
    let error: unknown;
    try {
      figure8({ commitPriorTermEntries: true });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SafetyViolation);
    expect(String((error as Error).message)).toMatch(/committed|Leader Completeness|State Machine Safety/);
  });
});

describe('a leader isolated in a minority', () => {
  it('cannot commit, steps down, and its uncommitted entries are discarded when it rejoins', () => {
    const sim = started(5, 11);
    const old = sim.leader() as string;
    const minority = [old, others(sim, old)[0] as string];
    sim.partition([minority, others(sim, ...minority)]);
    sim.write(old, 'register', 'k', 'lost');
    const committedBefore = sim.get(old).node.raft.raftLog.committed;
    sim.run(400);
    expect(sim.get(old).node.raft.raftLog.committed).toBe(committedBefore);
    expect(sim.get(old).node.raft.role).not.toBe('leader');
    const fresh = sim.leader() as string;
    expect(minority).not.toContain(fresh);
    expect(sim.write(fresh, 'register', 'k', 'kept')).toBe(true);
    sim.run(100);
    sim.heal();
    sim.checkLiveness();
    sim.finish();
    for (const n of sim.upNodes()) expect(n.sm.kv.get('k')).toBe('kept');
    expect(checkLinearizable(sim.history).ok).toBe(true);
  });
});

describe('thesis §9.6 PreVote: a node rejoining after a partition', () => {
  it('does not raise its term while cut off, so it does not depose the healthy leader when it returns', () => {
    const sim = started(3, 5);
    const leader = sim.leader() as string;
    const term = sim.get(leader).node.raft.currentTerm;
    const loner = others(sim, leader)[0] as string;
    sim.partition([[loner], others(sim, loner)]);
    sim.run(2_000);
    expect(sim.get(loner).node.raft.currentTerm).toBe(term);
    sim.heal();
    sim.run(500);
    expect(sim.leader()).toBe(leader);
    expect(sim.get(leader).node.raft.currentTerm).toBe(term);
  });
});

describe('repeated leader changes under load', () => {
  it('keeps every acknowledged write and stays linearizable through ten leader kills', () => {
    const sim = started(5, 21);
    let v = 0;
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 8; i++) {
        const via = sim.ids[(round + i) % sim.ids.length] as string;
        sim.write(via, 'register', `k${i % 3}`, `v${++v}`);
        sim.read(via, `k${(i + 1) % 3}`);
        sim.run(7);
      }
      const l = sim.leader();
      if (l) {
        sim.crash(l);
        sim.awaitLeader();
        sim.restart(l);
      }
    }
    sim.checkLiveness();
    sim.finish();
    expect(sim.acknowledged.size).toBeGreaterThan(20);
    const lin = checkLinearizable(sim.history);
    expect(lin.ok, lin.ok === false ? lin.reason : '').toBe(true);
  });
});

describe('a symmetric split of a 5-node cluster, 2/3, then healed', () => {
  it('the 3-side serves writes, the 2-side serves none, and after healing all five agree', () => {
    const sim = started(5, 8);
    const two = sim.ids.slice(0, 2);
    const three = sim.ids.slice(2);
    sim.partition([two, three]);
    sim.run(600);
    const l = sim.leader() as string;
    expect(three).toContain(l);
    for (const id of two) expect(sim.write(id, 'register', 'side', 'two')).toBe(false);
    expect(sim.write(three[0] as string, 'register', 'side', 'three')).toBe(true);
    sim.run(200);
    sim.heal();
    sim.checkLiveness();
    sim.finish();
    for (const n of sim.upNodes()) expect(n.sm.kv.get('side')).toBe('three');
    expect(checkLinearizable(sim.history).ok).toBe(true);
  });
});

describe('thesis §4.2.2 removing the leader', () => {
  it('the removed leader hands over to a remaining voter: no deadlock when that voter never learned the removal committed', () => {
    // Found by a soak (seed 20261123): n2 leads {n2, n3}, commits its own removal and appends one
    // more entry; n3 never hears that the removal committed. Had n2 simply stepped down, n3 could
    // never win (n2's log is longer) and n2 would never campaign (it is removed).
    const run = {
      nodes: 3 as const,
      seed: 539510106,
      events: [
        { t: 'run' as const, units: 1 },
        { t: 'conf' as const, op: 'removeNode' as const, node: 0 },
        { t: 'write' as const, node: 0, del: false, key: 0, gap: 0 },
        { t: 'run' as const, units: 111 },
        { t: 'conf' as const, op: 'removeNode' as const, node: 1 },
        { t: 'write' as const, node: 0, del: false, key: 0, gap: 0 },
        { t: 'conf' as const, op: 'addVoter' as const, node: 0 },
        { t: 'bounce' as const, node: 0, down: 0 },
        { t: 'run' as const, units: 1 },
        { t: 'net' as const, drop: 0, duplicate: 0, maxDelay: 4 },
        { t: 'isolate' as const, node: 0 },
        { t: 'restart' as const, node: 0 },
        { t: 'run' as const, units: 1 },
        { t: 'write' as const, node: 0, del: false, key: 0, gap: 6 },
        { t: 'crash' as const, node: 0 },
        { t: 'oneway' as const, from: 0, to: 0 },
      ],
    };
    const r = runSchedule(run);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
  });
});
