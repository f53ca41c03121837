/**
 * The rules of the paper (Ongaro & Ousterhout 2014) and the thesis, one section per describe
 * block, after etcd-io/raft's `raft_paper_test.go`.
 *
 * Two kinds of test. Message-level rules are checked on a lone core: a message is stepped and
 * the messages and hard state it produces are read off its `Ready`s (no loop, no disk: nothing
 * is persisted or applied). Rules about a cluster run in the simulator, on the node loop that
 * ships (`src/server/raft-node.ts`) with its real state machine and API, so no test here carries
 * a loop of its own.
 */
import { describe, expect, it } from 'vitest';
import {
  MAX_TERM_LEAD,
  MAX_WIRE_TERM,
  MemoryStorage,
  RawNode,
  isAcceptableTerm,
  logIndex,
  nodeId,
  seededRandom,
  term,
  type Entry,
  type HardState,
  type Message,
  type RaftTestingKnobs,
} from '../../src/raft/index.js';
import { SIM_ELECTION_MS, Simulation, type ClientCall } from '../sim/simulator.js';
import { WARMUP_MS } from '../sim/schedule.js';

const n1 = nodeId('n1');
const n2 = nodeId('n2');
const n3 = nodeId('n3');
const enc = (s: string) => new TextEncoder().encode(s);

function entry(index: number, t: number, data = ''): Entry {
  return { index: logIndex(index), term: term(t), type: 'normal', data: enc(data) };
}

/** A lone core with a given stored log, term and vote, for message-level tests. */
function lone(opts: { entries?: Entry[]; currentTerm?: number; votedFor?: string; knobs?: RaftTestingKnobs; preVote?: boolean; id?: string; voters?: string[] } = {}): RawNode {
  const storage = new MemoryStorage();
  storage.append(opts.entries ?? []);
  const hardState: HardState = { currentTerm: term(opts.currentTerm ?? 0), votedFor: nodeId(opts.votedFor ?? ''), commitIndex: logIndex(0) };
  return new RawNode({
    id: nodeId(opts.id ?? 'n1'),
    voters: (opts.voters ?? ['n1', 'n2', 'n3']).map(nodeId),
    storage,
    hardState,
    random: seededRandom(7),
    preVote: opts.preVote ?? false,
    checkQuorum: false,
    ...(opts.knobs ? { testingKnobs: opts.knobs } : {}),
  });
}

/** Takes every Ready of a lone core (treating each as done at once) and returns their messages. */
function takeMessages(node: RawNode): Message[] {
  const out: Message[] = [];
  while (node.hasReady()) {
    const rd = node.ready();
    out.push(...rd.messages);
    node.advance();
  }
  return out;
}

/** A lone core of a 3-voter cluster that won an election in term `currentTerm + 1`. */
function electedLone(opts: { entries?: Entry[]; currentTerm?: number; knobs?: RaftTestingKnobs } = {}): RawNode {
  const node = lone({ currentTerm: opts.currentTerm ?? 1, ...(opts.entries ? { entries: opts.entries } : {}), ...(opts.knobs ? { knobs: opts.knobs } : {}) });
  node.campaign();
  takeMessages(node);
  node.step({ type: 'RequestVoteResponse', from: n2, to: n1, term: node.raft.currentTerm, voteGranted: true, preVote: false });
  takeMessages(node);
  expect(node.raft.role).toBe('leader');
  return node;
}

// ---------------------------------------------------------------------------------------------
// Cluster-level helpers: the simulator of the shipped loop.

async function cluster(nodes: 1 | 3 | 5 = 3, seed = 1): Promise<Simulation> {
  const sim = await Simulation.create({ nodes, seed });
  await sim.run(WARMUP_MS);
  expect(sim.leader()).toBeDefined();
  return sim;
}

async function settle(sim: Simulation, calls: readonly ClientCall[], maxMs = 10_000): Promise<void> {
  await sim.runUntil(() => calls.every((c) => c.outcome !== 'pending'), maxMs);
}

/** Writes `key` = `value` through `via` and waits for the answer. */
async function put(sim: Simulation, via: string, key: string, value: string): Promise<ClientCall> {
  const c = sim.write(via, 'register', key, value);
  await settle(sim, [c]);
  return c;
}

/** The value `key` has in node `id`'s applied state (undefined when absent). */
async function valueOn(sim: Simulation, id: string, key: string): Promise<string | undefined> {
  const sm = sim.get(id).sm;
  if (!sm) throw new Error(`${id} is down`);
  return (await sim.await(sm.get(key)))?.version;
}

/** Runs until every running node applied `revision` (bounded). */
async function appliedEverywhere(sim: Simulation, revision: number, maxMs = 10_000): Promise<boolean> {
  return sim.runUntil(() => sim.upNodes().every((n) => n.node.appliedIndex >= revision), maxMs);
}

describe('§5.2 leader election', () => {
  it('a follower that hears from no leader within its election timeout starts an election and wins with a majority', async () => {
    const sim = await cluster(3, 3);
    const leader = sim.leader() as string;
    for (const n of sim.upNodes()) {
      expect(n.node.leaderId).toBe(leader);
      expect(n.node.core.raft.currentTerm).toBe(sim.get(leader).node.core.raft.currentTerm);
    }
  });

  it('a candidate increments its term, votes for itself and asks every peer for its vote', () => {
    const node = lone({ currentTerm: 4 });
    node.campaign();
    const rd = node.ready();
    expect(node.raft.role).toBe('candidate');
    expect(rd.hardState).toMatchObject({ currentTerm: 5, votedFor: 'n1' });
    const votes = rd.messages.filter((m) => m.type === 'RequestVote');
    expect(votes.map((m) => m.to).sort()).toEqual([n2, n3]);
    expect(votes.every((m) => m.term === 5)).toBe(true);
  });

  it('election timeouts are randomized in [electionTicks, 2 * electionTicks)', () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const storage = new MemoryStorage();
      const node = new RawNode({ id: n1, voters: [n1, n2, n3], storage, random: seededRandom(seed), electionTicks: 10, preVote: false });
      let ticks = 0;
      while (node.raft.role === 'follower' && ticks < 100) {
        node.tick();
        ticks++;
      }
      expect(ticks).toBeGreaterThanOrEqual(10);
      expect(ticks).toBeLessThan(20);
      seen.add(ticks);
    }
    expect(seen.size).toBeGreaterThan(3);
  });

  it('each node grants at most one vote per term, first come first served', () => {
    const node = lone({ id: 'n3', currentTerm: 1 });
    const ask = (from: string): Message => ({ type: 'RequestVote', from: nodeId(from), to: n3, term: term(2), lastLogIndex: logIndex(0), lastLogTerm: term(0), preVote: false, transfer: false });
    node.step(ask('n1'));
    node.step(ask('n2'));
    node.step(ask('n1'));
    const replies = takeMessages(node).filter((m) => m.type === 'RequestVoteResponse');
    expect(replies.map((m) => [m.to, m.type === 'RequestVoteResponse' && m.voteGranted])).toEqual([
      ['n1', true],
      ['n2', false],
      ['n1', true],
    ]);
  });

  it('a candidate that hears from a leader of its term returns to follower', () => {
    const node = lone({ currentTerm: 1 });
    node.campaign();
    expect(node.raft.role).toBe('candidate');
    node.step({ type: 'Heartbeat', from: n2, to: n1, term: term(2), leaderCommit: logIndex(0), context: new Uint8Array() });
    expect(node.raft.role).toBe('follower');
    expect(node.raft.leaderId).toBe(n2);
  });

  it('a node cut off from the majority never becomes leader', async () => {
    const sim = await cluster(3, 5);
    const loner = sim.ids.find((id) => id !== sim.leader()) as string;
    sim.partition([[loner], sim.ids.filter((id) => id !== loner)]);
    await sim.runUntil(() => sim.get(loner).node.core.raft.role === 'leader', 20_000);
    expect(sim.get(loner).node.core.raft.role).not.toBe('leader');
  });

  it('a single-node cluster elects itself', async () => {
    const sim = await cluster(1);
    expect(sim.leader()).toBe('n1');
  });
});

describe('§5.3 log replication', () => {
  it('commits once a majority stores the entry, and every node applies it in order', async () => {
    const sim = await cluster();
    const leader = sim.leader() as string;
    const a = await put(sim, leader, 'k', 'a');
    const b = await put(sim, leader, 'k', 'b');
    expect([a.outcome, b.outcome]).toEqual(['ok', 'ok']);
    expect(b.revision).toBeGreaterThan(a.revision as number);
    expect(await appliedEverywhere(sim, b.revision as number)).toBe(true);
    for (const id of sim.ids) expect(await valueOn(sim, id, 'k')).toBe('b');
  });

  it('commits with one follower down (a majority of 3) and the follower catches up when back', async () => {
    const sim = await cluster();
    const leader = sim.leader() as string;
    const down = sim.ids.find((id) => id !== leader) as string;
    sim.crash(down);
    const x = await put(sim, leader, 'k', 'x');
    expect(x.outcome).toBe('ok');
    sim.restart(down);
    expect(await appliedEverywhere(sim, x.revision as number)).toBe(true);
    expect(await valueOn(sim, down, 'k')).toBe('x');
  });

  it('does not commit without a majority', async () => {
    const sim = await cluster();
    const leader = sim.leader() as string;
    sim.partition([[leader], sim.ids.filter((id) => id !== leader)]);
    const before = sim.get(leader).node.core.raft.raftLog.committed;
    const lost = await put(sim, leader, 'k', 'lost');
    expect(lost.outcome).not.toBe('ok');
    expect(sim.get(leader).node.core.raft.raftLog.committed).toBe(before);
    expect(await valueOn(sim, leader, 'k')).toBeUndefined();
  });

  it('the consistency check rejects AppendEntries whose prevLogIndex/prevLogTerm do not match, with a conflict hint', () => {
    const node = lone({ id: 'n2', currentTerm: 3, entries: [entry(1, 1), entry(2, 1), entry(3, 2)] });
    node.step({ type: 'AppendEntries', from: n1, to: n2, term: term(3), prevLogIndex: logIndex(3), prevLogTerm: term(3), entries: [], leaderCommit: logIndex(0) });
    const [reply] = takeMessages(node);
    expect(reply).toMatchObject({ type: 'AppendEntriesResponse', success: false, matchIndex: 3, conflictIndex: 3, conflictTerm: 2 });
  });

  it('a follower behind the leader answers with its last index, so the leader skips ahead', () => {
    const node = lone({ id: 'n2', currentTerm: 3, entries: [entry(1, 1)] });
    node.step({ type: 'AppendEntries', from: n1, to: n2, term: term(3), prevLogIndex: logIndex(9), prevLogTerm: term(3), entries: [], leaderCommit: logIndex(0) });
    const [reply] = takeMessages(node);
    expect(reply).toMatchObject({ success: false, conflictIndex: 1, conflictTerm: 1 });
  });

  it('a follower deletes a conflicting suffix and takes the leader entries (§5.3 rule 3)', () => {
    const node = lone({ id: 'n2', currentTerm: 3, entries: [entry(1, 1), entry(2, 2, 'old'), entry(3, 2, 'old')] });
    node.step({ type: 'AppendEntries', from: n1, to: n2, term: term(3), prevLogIndex: logIndex(1), prevLogTerm: term(1), entries: [entry(2, 3, 'new')], leaderCommit: logIndex(2) });
    const msgs = takeMessages(node);
    expect(msgs[0]).toMatchObject({ type: 'AppendEntriesResponse', success: true, matchIndex: 2 });
    const log = node.raft.raftLog;
    expect(log.lastIndex()).toBe(2);
    expect(log.term(logIndex(2))).toBe(3);
    expect(log.committed).toBe(2);
  });

  it('the leader repairs a follower whose log diverged over several terms', async () => {
    const sim = await cluster(3, 11);
    const old = sim.leader() as string;
    expect((await put(sim, old, 'k', 'a')).outcome).toBe('ok');
    // The old leader keeps appending while cut off: these entries never commit.
    sim.partition([[old], sim.ids.filter((id) => id !== old)]);
    for (const v of ['x1', 'x2', 'x3']) sim.write(old, 'register', 'k', v);
    await sim.run(100);
    await sim.awaitLeader();
    const fresh = sim.leader() as string;
    expect(fresh).not.toBe(old);
    const b = await put(sim, fresh, 'k', 'b');
    expect(b.outcome).toBe('ok');
    sim.heal();
    expect(await appliedEverywhere(sim, b.revision as number, 20_000)).toBe(true);
    await sim.run(SIM_ELECTION_MS);
    for (const id of sim.ids) expect(await valueOn(sim, id, 'k')).toBe('b');
    const logs = sim.ids.map((id) => {
      const log = sim.get(id).node.core.raft.raftLog;
      const terms: number[] = [];
      for (let i = log.firstIndex(); i <= log.lastIndex(); i++) terms.push(log.term(logIndex(i)) ?? -1);
      return `${log.lastIndex()}:${terms.slice(-5).join(',')}`;
    });
    expect(new Set(logs).size).toBe(1);
  });
});

describe('§5.4.1 election restriction', () => {
  it('a voter rejects a candidate whose log is less up-to-date than its own', () => {
    const node = lone({ id: 'n3', currentTerm: 2, entries: [entry(1, 1), entry(2, 2)] });
    node.step({ type: 'RequestVote', from: n1, to: n3, term: term(3), lastLogIndex: logIndex(5), lastLogTerm: term(1), preVote: false, transfer: false });
    node.step({ type: 'RequestVote', from: n2, to: n3, term: term(4), lastLogIndex: logIndex(1), lastLogTerm: term(2), preVote: false, transfer: false });
    const replies = takeMessages(node).filter((m) => m.type === 'RequestVoteResponse');
    expect(replies.map((m) => m.type === 'RequestVoteResponse' && m.voteGranted)).toEqual([false, false]);
  });

  it('grants the vote to a candidate with a higher last term even if its log is shorter', () => {
    const node = lone({ id: 'n3', currentTerm: 2, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    node.step({ type: 'RequestVote', from: n1, to: n3, term: term(3), lastLogIndex: logIndex(1), lastLogTerm: term(2), preVote: false, transfer: false });
    const replies = takeMessages(node).filter((m) => m.type === 'RequestVoteResponse');
    expect(replies[0]).toMatchObject({ voteGranted: true });
  });

  it('a node missing a committed entry cannot be elected', async () => {
    const sim = await cluster(3, 2);
    const leader = sim.leader() as string;
    const [other, lagging] = sim.ids.filter((id) => id !== leader) as string[] as [string, string];
    sim.crash(lagging, 'process');
    expect((await put(sim, leader, 'k', 'committed')).outcome).toBe('ok');
    sim.crash(leader, 'process');
    sim.restart(lagging);
    // The lagging node lacks the committed entry; the other has it. Only the other can win.
    await sim.runUntil(() => sim.leader() !== undefined, 20_000);
    expect(sim.leader()).toBe(other);
  });
});

describe('§5.4.2 committing entries from previous terms (Figure 8)', () => {
  /** n1 holds [1/1, 2/1] in term 1 and wins term 2; its no-op lands at index 3. */
  const newLeaderWithOldEntry = (knobs?: RaftTestingKnobs): RawNode => electedLone({ entries: [entry(1, 1), entry(2, 1, 'old')], ...(knobs ? { knobs } : {}) });

  it('a leader does not commit an earlier-term entry when a majority stores it', () => {
    const node = newLeaderWithOldEntry();
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: term(2), success: true, matchIndex: logIndex(2), conflictIndex: logIndex(0), conflictTerm: term(0) });
    takeMessages(node);
    expect(node.raft.raftLog.committed).toBe(0);
  });

  it('it commits them indirectly once an entry of its own term is on a majority', () => {
    const node = newLeaderWithOldEntry();
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: term(2), success: true, matchIndex: logIndex(3), conflictIndex: logIndex(0), conflictTerm: term(0) });
    takeMessages(node);
    expect(node.raft.raftLog.committed).toBe(3);
  });

  it('the test-only commitPriorTermEntries switch breaks exactly this rule', () => {
    const node = newLeaderWithOldEntry({ commitPriorTermEntries: true });
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: term(2), success: true, matchIndex: logIndex(2), conflictIndex: logIndex(0), conflictTerm: term(0) });
    takeMessages(node);
    expect(node.raft.raftLog.committed).toBe(2);
  });
});

describe('§5.1 / Figure 2 persistence before reply', () => {
  it('a granted vote travels in the same Ready as the hard state recording it', () => {
    const node = lone({ id: 'n3', currentTerm: 1 });
    node.step({ type: 'RequestVote', from: n1, to: n3, term: term(2), lastLogIndex: logIndex(0), lastLogTerm: term(0), preVote: false, transfer: false });
    const rd = node.ready();
    expect(rd.messages[0]).toMatchObject({ type: 'RequestVoteResponse', voteGranted: true });
    expect(rd.hardState).toMatchObject({ currentTerm: 2, votedFor: 'n1' });
    expect(rd.mustSync).toBe(true);
  });

  it('an AppendEntries acknowledgement travels in the same Ready as the entries it acknowledges', () => {
    const node = lone({ id: 'n2', currentTerm: 1 });
    node.step({ type: 'AppendEntries', from: n1, to: n2, term: term(1), prevLogIndex: logIndex(0), prevLogTerm: term(0), entries: [entry(1, 1, 'a')], leaderCommit: logIndex(0) });
    const rd = node.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([1]);
    expect(rd.messages[0]).toMatchObject({ type: 'AppendEntriesResponse', success: true, matchIndex: 1 });
  });

  it('the leader counts itself toward a majority only once its own append is durable', () => {
    const node = lone({ voters: ['n1'] });
    node.campaign();
    takeMessages(node);
    expect(node.raft.role).toBe('leader');
    node.propose([enc('a')]);
    const rd = node.ready();
    expect(rd.entries.length).toBe(1);
    // Not yet advanced (not durable): the entry is not committed.
    expect(node.raft.raftLog.committed).toBeLessThan(rd.entries[0]?.index as number);
    node.advance();
    expect(node.raft.raftLog.committed).toBe(rd.entries[0]?.index);
  });

  it('a node restarted with its vote on disk does not vote for another candidate in the same term', () => {
    // What the loop persisted before answering n1: term 2, votedFor n1 (the simulator proves
    // the loop persists it: without it, its schedules find two leaders in one term).
    const node = lone({ id: 'n3', currentTerm: 2, votedFor: 'n1' });
    node.step({ type: 'RequestVote', from: n2, to: n3, term: term(2), lastLogIndex: logIndex(5), lastLogTerm: term(2), preVote: false, transfer: false });
    const [reply] = takeMessages(node);
    expect(reply).toMatchObject({ type: 'RequestVoteResponse', voteGranted: false });
  });
});

describe('restart recovery', () => {
  it('a restarted node resumes its term, vote and log, and never re-applies what it applied', async () => {
    const sim = await cluster(3, 4);
    const leader = sim.leader() as string;
    await put(sim, leader, 'k', 'a');
    const b = await put(sim, leader, 'k', 'b');
    expect(await appliedEverywhere(sim, b.revision as number)).toBe(true);
    const follower = sim.ids.find((id) => id !== leader) as string;
    const raft = sim.get(follower).node.core.raft;
    const before = { term: raft.currentTerm, vote: raft.votedFor, last: raft.raftLog.lastIndex() };
    sim.crash(follower, 'process');
    sim.restart(follower);
    await sim.runUntil(() => sim.get(follower).up, 1_000);
    const again = sim.get(follower).node.core.raft;
    expect({ term: again.currentTerm, vote: again.votedFor, last: again.raftLog.lastIndex() }).toEqual(before);
    // The invariant checker fails the run if the restarted node applies an entry a second time.
    await sim.run(3_000);
    expect(await valueOn(sim, follower, 'k')).toBe('b');
  });

  it('a whole cluster restarted from disk elects a leader and keeps every committed entry', async () => {
    const sim = await cluster();
    expect((await put(sim, sim.leader() as string, 'k', 'a')).outcome).toBe('ok');
    for (const id of sim.ids) sim.crash(id, 'power');
    for (const id of sim.ids) sim.restart(id);
    await sim.runUntil(() => sim.leader() !== undefined, 20_000);
    const b = await put(sim, sim.leader() as string, 'j', 'b');
    expect(b.outcome).toBe('ok');
    expect(await appliedEverywhere(sim, b.revision as number)).toBe(true);
    for (const id of sim.ids) {
      expect(await valueOn(sim, id, 'k')).toBe('a');
      expect(await valueOn(sim, id, 'j')).toBe('b');
    }
  });
});

describe('thesis §9.6 PreVote and §6.2 CheckQuorum', () => {
  it('a leader cut off from the majority steps down within an election timeout or two', async () => {
    const sim = await cluster();
    const leader = sim.leader() as string;
    sim.partition([[leader], sim.ids.filter((id) => id !== leader)]);
    await sim.run(2 * SIM_ELECTION_MS + 100);
    expect(sim.get(leader).node.core.raft.role).not.toBe('leader');
  });
});

describe('thesis §6.4 ReadIndex', () => {
  it('a read through the leader or a follower sees every write acknowledged before it started', async () => {
    const sim = await cluster();
    const leader = sim.leader() as string;
    const follower = sim.ids.find((id) => id !== leader) as string;
    expect((await put(sim, leader, 'k', 'a')).outcome).toBe('ok');
    const viaLeader = sim.read(leader, 'k');
    const viaFollower = sim.read(follower, 'k');
    await settle(sim, [viaLeader, viaFollower]);
    expect([viaLeader.found, viaFollower.found]).toEqual(['a', 'a']);
  });

  it('a leader cut off from the majority never confirms a read, and fails it so the client can retry elsewhere', async () => {
    const sim = await cluster();
    const leader = sim.leader() as string;
    expect((await put(sim, leader, 'k', 'a')).outcome).toBe('ok');
    sim.partition([[leader], sim.ids.filter((id) => id !== leader)]);
    const r = sim.read(leader, 'k');
    await settle(sim, [r]);
    expect(r.outcome).toBe('failed');
    expect(r.code).toBe(14); // UNAVAILABLE
  });
});

describe('thesis §3.10 leadership transfer', () => {
  it('hands leadership to the target, which wins at once', async () => {
    const sim = await cluster();
    const leader = sim.leader() as string;
    const target = sim.ids.find((id) => id !== leader) as string;
    expect((await put(sim, leader, 'k', 'a')).outcome).toBe('ok');
    const api = sim.get(leader).api;
    let answered: unknown;
    void api?.transferLeadership({ target_id: target }, { budgetMs: 5_000 }).then((r) => (answered = r));
    await sim.runUntil(() => answered !== undefined, 5_000);
    expect(answered).toMatchObject({ leader_id: target });
    expect(sim.leader()).toBe(target);
    const b = await put(sim, target, 'k', 'b');
    expect(b.outcome).toBe('ok');
    expect(await appliedEverywhere(sim, b.revision as number)).toBe(true);
    for (const id of sim.ids) expect(await valueOn(sim, id, 'k')).toBe('b');
  });
});

describe('thesis §4.1 membership changes, one server at a time', () => {
  const cc = (type: 'addVoter' | 'addLearner' | 'removeNode', id: string) => enc(JSON.stringify({ type, nodeId: id }));

  it('refuses a second change while the first is not applied', () => {
    const node = electedLone();
    // The no-op of its term commits (n2 acknowledges it), so changes are allowed.
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: node.raft.currentTerm, success: true, matchIndex: node.raft.raftLog.lastIndex(), conflictIndex: logIndex(0), conflictTerm: term(0) });
    takeMessages(node);
    node.proposeConfChange(cc('removeNode', 'n3'));
    expect(() => node.proposeConfChange(cc('removeNode', 'n2'))).toThrow(/one change at a time/);
  });

  it('refuses a change from a new leader that has not committed an entry of its term', () => {
    const node = electedLone({ entries: [entry(1, 1)] });
    expect(() => node.proposeConfChange(cc('removeNode', 'n3'))).toThrow(/not committed an entry of its term/);
  });

  it('a removed node no longer counts for quorum: two voters commit without it, and need both', async () => {
    const sim = await cluster(3, 6);
    const leader = sim.leader() as string;
    const [other, removed] = sim.ids.filter((id) => id !== leader) as string[] as [string, string];
    const change = sim.changeConfig('removeNode', removed);
    await settle(sim, [change]);
    expect(change.outcome).toBe('ok');
    expect(sim.get(leader).node.core.raft.confState().voters).toEqual([leader, other].sort());
    sim.partition([[removed], [leader, other]]);
    expect((await put(sim, leader, 'k', 'without the removed node')).outcome).toBe('ok');
    sim.crash(other);
    const needsBoth = await put(sim, leader, 'k', 'needs the other');
    expect(needsBoth.outcome).not.toBe('ok');
  });

  it('a TimeoutNow is ignored while committed configuration changes are not applied (etcd\'s check before campaigning)', () => {
    // n2 has a committed, unapplied config entry at 2 (it would campaign under a stale configuration).
    const withPendingConf = (knobs?: RaftTestingKnobs): RawNode => {
      const storage = new MemoryStorage();
      storage.append([entry(1, 1), { index: logIndex(2), term: term(1), type: 'config', data: cc('removeNode', 'n3') }]);
      return new RawNode({
        id: n2,
        voters: [n1, n2, n3],
        storage,
        hardState: { currentTerm: term(1), votedFor: nodeId(''), commitIndex: logIndex(2) },
        applied: logIndex(1),
        random: seededRandom(3),
        preVote: false,
        checkQuorum: false,
        ...(knobs ? { testingKnobs: knobs } : {}),
      });
    };
    const node = withPendingConf();
    node.step({ type: 'TimeoutNow', from: n1, to: n2, term: term(1) });
    expect(node.raft.role).toBe('follower');
    const buggy = withPendingConf({ timeoutNowIgnoresPendingConf: true });
    buggy.step({ type: 'TimeoutNow', from: n1, to: n2, term: term(1) });
    expect(buggy.raft.role).toBe('candidate');
  });
});

describe('§7 replication falls back to a snapshot only when entries are compacted', () => {
  it('a broken invariant while reading entries to send stops the core instead of turning into an InstallSnapshot', () => {
    const node = electedLone({ entries: [entry(1, 1), entry(2, 1)] });
    const storage = node.raft.raftLog.storage as MemoryStorage;
    // A storage that fails with something other than "compacted" (a broken invariant).
    storage.slice = () => {
      throw new Error('disk read failed');
    };
    expect(() => {
      // n2 holds entry 1 only: the leader reads entries 2.. to send it.
      node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: node.raft.currentTerm, success: true, matchIndex: logIndex(1), conflictIndex: logIndex(0), conflictTerm: term(0) });
      takeMessages(node);
    }).toThrow(/disk read failed/);
    const buggy = electedLone({ entries: [entry(1, 1), entry(2, 1)], knobs: { snapshotOnAnyLogError: true } });
    (buggy.raft.raftLog.storage as MemoryStorage).slice = () => {
      throw new Error('disk read failed');
    };
    buggy.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: buggy.raft.currentTerm, success: true, matchIndex: logIndex(1), conflictIndex: logIndex(0), conflictTerm: term(0) });
    // The bug: the failure is taken for compaction and swallowed (with no snapshot to send,
    // nothing goes out at all), and the node runs on with a broken log.
    expect(() => takeMessages(buggy)).not.toThrow();
  });

  it('a caught-up follower in probe moves to replicate (so entries stream to it)', () => {
    const node = electedLone();
    const last = node.raft.raftLog.lastIndex();
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: node.raft.currentTerm, success: true, matchIndex: last, conflictIndex: logIndex(0), conflictTerm: term(0) });
    takeMessages(node);
    expect(node.raft.prs.get(n2)?.state).toBe('replicate');
    // n3 answered already at its known match: a heartbeat response makes the leader probe it,
    // and the answer to that probe moves it to replicate.
    node.step({ type: 'HeartbeatResponse', from: n3, to: n1, term: node.raft.currentTerm, context: new Uint8Array() });
    const probe = takeMessages(node).find((m) => m.type === 'AppendEntries' && m.to === n3);
    expect(probe).toBeDefined();
  });
});

describe('terms from the wire are bounded (docs/divergence.md: term bound)', () => {
  const heartbeat = (t: number): Message => ({ type: 'Heartbeat', from: n2, to: n1, term: term(t), leaderCommit: logIndex(0), context: new Uint8Array() });

  it('drops a message whose term it could never go past, and keeps its own term', () => {
    const node = lone({ currentTerm: 3 });
    node.step(heartbeat(Number.MAX_SAFE_INTEGER - 1));
    expect(takeMessages(node)).toEqual([]);
    expect(node.raft.currentTerm).toBe(3);
    expect(node.raft.leaderId).toBe('');
  });

  it('adopts a term up to MAX_WIRE_TERM, and past it only MAX_TERM_LEAD at a time', () => {
    const node = lone({ currentTerm: 3 });
    node.step(heartbeat(MAX_WIRE_TERM));
    expect(node.raft.currentTerm).toBe(MAX_WIRE_TERM);
    expect(takeMessages(node).map((m) => m.type)).toEqual(['HeartbeatResponse']);
    // A cluster pushed to the bound still elects: later terms pass it one step at a time.
    node.step(heartbeat(MAX_WIRE_TERM + MAX_TERM_LEAD));
    expect(node.raft.currentTerm).toBe(MAX_WIRE_TERM + MAX_TERM_LEAD);
    node.step(heartbeat(MAX_WIRE_TERM + 2 * MAX_TERM_LEAD + 1));
    expect(node.raft.currentTerm).toBe(MAX_WIRE_TERM + MAX_TERM_LEAD);
    expect(isAcceptableTerm(MAX_WIRE_TERM + 2 * MAX_TERM_LEAD, term(MAX_WIRE_TERM + MAX_TERM_LEAD))).toBe(true);
  });
});
