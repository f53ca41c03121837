/**
 * The Raft core checked against the rules of the paper (Ongaro & Ousterhout 2014) and the
 * thesis, one section per describe block, after etcd-io/raft's `raft_paper_test.go`.
 */
import { describe, expect, it } from 'vitest';
import {
  MemoryStorage,
  RawNode,
  logIndex,
  nodeId,
  seededRandom,
  term,
  type Entry,
  type Message,
  type RaftTestingKnobs,
} from '../../src/raft/index.js';
import { Cluster } from '../support/raft-harness.js';

const n1 = nodeId('n1');
const n2 = nodeId('n2');
const n3 = nodeId('n3');
const enc = (s: string) => new TextEncoder().encode(s);

function entry(index: number, t: number, data = ''): Entry {
  return { index: logIndex(index), term: term(t), type: 'normal', data: enc(data) };
}

/** A lone core with a given stored log and term, for message-level tests. */
function lone(opts: { entries?: Entry[]; currentTerm?: number; knobs?: RaftTestingKnobs; preVote?: boolean; id?: string } = {}): RawNode {
  const storage = new MemoryStorage();
  storage.append(opts.entries ?? []);
  return new RawNode({
    id: nodeId(opts.id ?? 'n1'),
    voters: [n1, n2, n3],
    storage,
    hardState: { currentTerm: term(opts.currentTerm ?? 0), votedFor: nodeId(''), commitIndex: logIndex(0) },
    random: seededRandom(7),
    preVote: opts.preVote ?? false,
    checkQuorum: false,
    ...(opts.knobs ? { testingKnobs: opts.knobs } : {}),
  });
}

/** Persists and advances every Ready, returning all messages they carried. */
function drain(node: RawNode): Message[] {
  const out: Message[] = [];
  while (node.hasReady()) {
    const rd = node.ready();
    out.push(...rd.messages);
    node.advance();
  }
  return out;
}

function electedCluster(count = 3, seed = 1): Cluster {
  const c = new Cluster(count, { seed });
  c.campaign('n1');
  expect(c.get('n1').node.raft.role).toBe('leader');
  return c;
}

describe('§5.2 leader election', () => {
  it('a follower that hears from no leader within its election timeout starts an election and wins with a majority', () => {
    const c = new Cluster(3, { seed: 3 });
    for (let i = 0; i < 40 && !c.leader(); i++) c.tick();
    const leader = c.leader();
    expect(leader).toBeDefined();
    for (const n of c.nodes.values()) {
      expect(n.node.raft.leaderId).toBe(leader?.id);
      expect(n.node.raft.currentTerm).toBe(leader?.node.raft.currentTerm);
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
    const replies = drain(node).filter((m) => m.type === 'RequestVoteResponse');
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

  it('a node cut off from the majority never becomes leader', () => {
    const c = new Cluster(3, { seed: 5, preVote: false });
    c.isolate('n1');
    c.tick(100, 'n1');
    expect(c.get('n1').node.raft.role).not.toBe('leader');
  });

  it('a single-node cluster elects itself', () => {
    const c = new Cluster(1);
    c.tick(30);
    expect(c.get('n1').node.raft.role).toBe('leader');
  });
});

describe('§5.3 log replication', () => {
  it('commits once a majority stores the entry, and every node applies it in order', () => {
    const c = electedCluster();
    c.propose('n1', 'a');
    c.propose('n1', 'b');
    c.tick(2);
    for (const id of ['n1', 'n2', 'n3']) expect(c.appliedData(id)).toEqual(['a', 'b']);
  });

  it('commits with one follower down (a majority of 3) and the follower catches up when back', () => {
    const c = electedCluster();
    c.crash('n3');
    c.propose('n1', 'x');
    expect(c.appliedData('n1')).toEqual(['x']);
    expect(c.appliedData('n2')).toEqual(['x']);
    c.restart('n3');
    c.tick(3);
    expect(c.appliedData('n3')).toEqual(['x']);
  });

  it('does not commit without a majority', () => {
    const c = electedCluster();
    c.isolate('n1');
    const before = c.get('n1').node.raft.raftLog.committed;
    c.get('n1').node.propose([enc('lost')]);
    c.deliver();
    expect(c.get('n1').node.raft.raftLog.committed).toBe(before);
    expect(c.appliedData('n1')).toEqual([]);
  });

  it('the consistency check rejects AppendEntries whose prevLogIndex/prevLogTerm do not match, with a conflict hint', () => {
    const node = lone({ id: 'n2', currentTerm: 3, entries: [entry(1, 1), entry(2, 1), entry(3, 2)] });
    node.step({ type: 'AppendEntries', from: n1, to: n2, term: term(3), prevLogIndex: logIndex(3), prevLogTerm: term(3), entries: [], leaderCommit: logIndex(0) });
    const [reply] = drain(node);
    expect(reply).toMatchObject({ type: 'AppendEntriesResponse', success: false, matchIndex: 3, conflictIndex: 3, conflictTerm: 2 });
  });

  it('a follower behind the leader answers with its last index, so the leader skips ahead', () => {
    const node = lone({ id: 'n2', currentTerm: 3, entries: [entry(1, 1)] });
    node.step({ type: 'AppendEntries', from: n1, to: n2, term: term(3), prevLogIndex: logIndex(9), prevLogTerm: term(3), entries: [], leaderCommit: logIndex(0) });
    const [reply] = drain(node);
    expect(reply).toMatchObject({ success: false, conflictIndex: 1, conflictTerm: 1 });
  });

  it('a follower deletes a conflicting suffix and takes the leader entries (§5.3 rule 3)', () => {
    const node = lone({ id: 'n2', currentTerm: 3, entries: [entry(1, 1), entry(2, 2, 'old'), entry(3, 2, 'old')] });
    node.step({ type: 'AppendEntries', from: n1, to: n2, term: term(3), prevLogIndex: logIndex(1), prevLogTerm: term(1), entries: [entry(2, 3, 'new')], leaderCommit: logIndex(2) });
    const msgs = drain(node);
    expect(msgs[0]).toMatchObject({ type: 'AppendEntriesResponse', success: true, matchIndex: 2 });
    const log = node.raft.raftLog;
    expect(log.lastIndex()).toBe(2);
    expect(log.term(logIndex(2))).toBe(3);
    expect(log.committed).toBe(2);
  });

  it('the leader repairs a follower whose log diverged over several terms', () => {
    const c = electedCluster(3, 11);
    c.propose('n1', 'a');
    // n1 keeps appending while cut off: these entries never commit.
    c.isolate('n1');
    for (const s of ['x1', 'x2', 'x3']) c.get('n1').node.propose([enc(s)]);
    c.deliver();
    // The others elect a new leader and commit more.
    c.tick(40, 'n2');
    c.tick(40, 'n3');
    const l = c.leader();
    expect(l && l.id !== 'n1').toBe(true);
    c.propose(l?.id as string, 'b');
    c.heal();
    c.tick(30);
    for (const id of ['n1', 'n2', 'n3']) expect(c.appliedData(id)).toEqual(['a', 'b']);
    const logs = ['n1', 'n2', 'n3'].map((id) => c.get(id).disk.entries.map((e) => `${e.index}/${e.term}`).join(','));
    expect(new Set(logs).size).toBe(1);
  });
});

describe('§5.4.1 election restriction', () => {
  it('a voter rejects a candidate whose log is less up-to-date than its own', () => {
    const node = lone({ id: 'n3', currentTerm: 2, entries: [entry(1, 1), entry(2, 2)] });
    node.step({ type: 'RequestVote', from: n1, to: n3, term: term(3), lastLogIndex: logIndex(5), lastLogTerm: term(1), preVote: false, transfer: false });
    node.step({ type: 'RequestVote', from: n2, to: n3, term: term(4), lastLogIndex: logIndex(1), lastLogTerm: term(2), preVote: false, transfer: false });
    const replies = drain(node).filter((m) => m.type === 'RequestVoteResponse');
    expect(replies.map((m) => m.type === 'RequestVoteResponse' && m.voteGranted)).toEqual([false, false]);
  });

  it('grants the vote to a candidate with a higher last term even if its log is shorter', () => {
    const node = lone({ id: 'n3', currentTerm: 2, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    node.step({ type: 'RequestVote', from: n1, to: n3, term: term(3), lastLogIndex: logIndex(1), lastLogTerm: term(2), preVote: false, transfer: false });
    const replies = drain(node).filter((m) => m.type === 'RequestVoteResponse');
    expect(replies[0]).toMatchObject({ voteGranted: true });
  });

  it('a node missing a committed entry cannot be elected', () => {
    const c = electedCluster();
    c.crash('n3');
    c.propose('n1', 'committed');
    c.crash('n1');
    c.restart('n3');
    // n3 lacks the committed entry; n2 has it. Only n2 can win.
    c.tick(60);
    expect(c.leader()?.id).toBe('n2');
  });
});

describe('§5.4.2 committing entries from previous terms (Figure 8)', () => {
  function newLeaderWithOldEntry(knobs?: RaftTestingKnobs): RawNode {
    // n1 holds [1/1, 2/1] in term 1 and wins term 2; its no-op lands at index 3.
    const node = lone({ currentTerm: 1, entries: [entry(1, 1), entry(2, 1, 'old')], ...(knobs ? { knobs } : {}) });
    node.campaign();
    drain(node);
    node.step({ type: 'RequestVoteResponse', from: n2, to: n1, term: term(2), voteGranted: true, preVote: false });
    drain(node);
    expect(node.raft.role).toBe('leader');
    return node;
  }

  it('a leader does not commit an earlier-term entry when a majority stores it', () => {
    const node = newLeaderWithOldEntry();
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: term(2), success: true, matchIndex: logIndex(2), conflictIndex: logIndex(0), conflictTerm: term(0) });
    drain(node);
    expect(node.raft.raftLog.committed).toBe(0);
  });

  it('it commits them indirectly once an entry of its own term is on a majority', () => {
    const node = newLeaderWithOldEntry();
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: term(2), success: true, matchIndex: logIndex(3), conflictIndex: logIndex(0), conflictTerm: term(0) });
    drain(node);
    expect(node.raft.raftLog.committed).toBe(3);
  });

  it('the test-only commitPriorTermEntries switch breaks exactly this rule', () => {
    const node = newLeaderWithOldEntry({ commitPriorTermEntries: true });
    node.step({ type: 'AppendEntriesResponse', from: n2, to: n1, term: term(2), success: true, matchIndex: logIndex(2), conflictIndex: logIndex(0), conflictTerm: term(0) });
    drain(node);
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
    const c = new Cluster(1);
    c.campaign('n1');
    const node = c.get('n1').node;
    node.propose([enc('a')]);
    const rd = node.ready();
    expect(rd.entries.length).toBe(1);
    // Not yet advanced (not durable): the entry is not committed.
    expect(node.raft.raftLog.committed).toBeLessThan(rd.entries[0]?.index as number);
    node.advance();
    expect(node.raft.raftLog.committed).toBe(rd.entries[0]?.index);
  });

  it('a node that voted, crashed and restarted does not vote for another candidate in the same term', () => {
    const c = new Cluster(3, { preVote: false });
    c.isolate('n1');
    c.isolate('n2');
    c.get('n1').node.campaign();
    c.heal();
    c.cut('n1', 'n2');
    c.cut('n2', 'n3');
    c.dropIf = (m) => m.type === 'RequestVoteResponse';
    c.deliver();
    expect(c.get('n3').disk.hardState?.votedFor).toBe('n1');
    c.crash('n3');
    c.restart('n3');
    const t = c.get('n1').node.raft.currentTerm;
    c.get('n3').node.step({ type: 'RequestVote', from: n2, to: n3, term: t, lastLogIndex: logIndex(5), lastLogTerm: t, preVote: false, transfer: false });
    const rd = c.get('n3').node.ready();
    expect(rd.messages[0]).toMatchObject({ type: 'RequestVoteResponse', voteGranted: false });
  });
});

describe('restart recovery', () => {
  it('a restarted node resumes its term, vote and log, and never re-applies what it applied', () => {
    const c = electedCluster();
    c.propose('n1', 'a');
    c.propose('n1', 'b');
    c.tick(2);
    const before = c.get('n2').disk.applied.length;
    const termBefore = c.get('n2').node.raft.currentTerm;
    c.crash('n2');
    c.restart('n2');
    expect(c.get('n2').node.raft.currentTerm).toBe(termBefore);
    expect(c.get('n2').node.raft.raftLog.lastIndex()).toBe(c.get('n1').node.raft.raftLog.lastIndex());
    c.tick(3);
    expect(c.get('n2').disk.applied.length).toBe(before);
    expect(c.appliedData('n2')).toEqual(['a', 'b']);
  });

  it('a whole cluster restarted from disk elects a leader and keeps every committed entry', () => {
    const c = electedCluster();
    c.propose('n1', 'a');
    for (const id of ['n1', 'n2', 'n3']) c.crash(id);
    for (const id of ['n1', 'n2', 'n3']) c.restart(id);
    c.tick(60);
    const l = c.leader();
    expect(l).toBeDefined();
    c.propose(l?.id as string, 'b');
    for (const id of ['n1', 'n2', 'n3']) expect(c.appliedData(id)).toEqual(['a', 'b']);
  });
});

describe('thesis §9.6 PreVote and §6.2 CheckQuorum', () => {
  it('a node rejoining after a partition does not raise the term and depose a healthy leader', () => {
    const c = electedCluster(3, 21);
    const t = c.get('n1').node.raft.currentTerm;
    c.isolate('n3');
    c.tick(100);
    expect(c.get('n3').node.raft.currentTerm).toBe(t);
    c.heal();
    c.tick(5);
    expect(c.leader()?.id).toBe('n1');
    expect(c.get('n1').node.raft.currentTerm).toBe(t);
  });

  it('a leader cut off from the majority steps down within an election timeout', () => {
    const c = electedCluster();
    c.isolate('n1');
    c.tick(25, 'n1');
    expect(c.get('n1').node.raft.role).toBe('follower');
  });
});

describe('thesis §6.4 ReadIndex', () => {
  it('the leader releases a read at its commit index after a heartbeat quorum', () => {
    const c = electedCluster();
    c.propose('n1', 'a');
    const leader = c.get('n1');
    leader.node.readIndex(enc('r1'));
    c.deliver();
    expect(leader.readStates).toHaveLength(1);
    expect(leader.readStates[0]).toMatchObject({ ok: true, index: leader.node.raft.raftLog.committed });
  });

  it('a follower gets the read index from the leader', () => {
    const c = electedCluster();
    c.propose('n1', 'a');
    c.get('n2').node.readIndex(enc('r2'));
    c.deliver();
    expect(c.get('n2').readStates[0]).toMatchObject({ ok: true, index: c.get('n1').node.raft.raftLog.committed });
  });

  it('a leader cut off from the majority never confirms a read', () => {
    const c = electedCluster();
    c.isolate('n1');
    c.get('n1').node.readIndex(enc('r3'));
    c.deliver();
    expect(c.get('n1').readStates.filter((r) => r.ok)).toHaveLength(0);
    c.tick(25, 'n1');
    // Stepping down fails the pending read so the client can retry elsewhere.
    expect(c.get('n1').readStates).toEqual([expect.objectContaining({ ok: false })]);
  });
});

describe('thesis §3.10 leadership transfer', () => {
  it('hands leadership to the target, which wins at once', () => {
    const c = electedCluster();
    c.propose('n1', 'a');
    expect(c.get('n1').node.transferLeadership(n3)).toBe(true);
    c.deliver();
    expect(c.leader()?.id).toBe('n3');
    c.propose('n3', 'b');
    for (const id of ['n1', 'n2', 'n3']) expect(c.appliedData(id)).toEqual(['a', 'b']);
  });
});

describe('thesis §4.1 membership changes, one server at a time', () => {
  const cc = (type: 'addVoter' | 'addLearner' | 'removeNode', id: string) => enc(JSON.stringify({ type, nodeId: id }));

  it('refuses a second change while the first is not applied', () => {
    const c = electedCluster();
    const leader = c.get('n1').node;
    c.isolate('n1');
    leader.proposeConfChange(cc('removeNode', 'n3'));
    expect(() => leader.proposeConfChange(cc('removeNode', 'n2'))).toThrow(/one change at a time/);
  });

  it('refuses a change from a new leader that has not committed an entry of its term', () => {
    const node = lone({ currentTerm: 1, entries: [entry(1, 1)] });
    node.campaign();
    drain(node);
    node.step({ type: 'RequestVoteResponse', from: n2, to: n1, term: term(2), voteGranted: true, preVote: false });
    drain(node);
    expect(node.raft.role).toBe('leader');
    expect(() => node.proposeConfChange(cc('removeNode', 'n3'))).toThrow(/not committed an entry of its term/);
  });

  it('a removed node no longer counts for quorum: two voters commit without it, and need both', () => {
    const c = electedCluster();
    c.changeConfig('n1', { type: 'removeNode', nodeId: n3 });
    expect(c.get('n1').node.raft.confState().voters).toEqual(['n1', 'n2']);
    c.isolate('n3');
    c.propose('n1', 'without n3');
    expect(c.appliedData('n1')).toEqual(['without n3']);
    c.crash('n2');
    const before = c.get('n1').node.raft.raftLog.committed;
    c.get('n1').node.propose([enc('needs n2')]);
    c.deliver();
    expect(c.get('n1').node.raft.raftLog.committed).toBe(before);
  });

  it('a removed leader hands leadership to an up-to-date remaining voter, then steps down', () => {
    const c = electedCluster();
    c.changeConfig('n1', { type: 'removeNode', nodeId: n1 });
    // The handoff (TimeoutNow) happens at once; the new leader commits the change itself.
    const next = c.leader();
    expect(next && next.id !== 'n1').toBe(true);
    expect(next?.node.raft.confState().voters).toEqual(['n2', 'n3']);
    // The removed node, no longer hearing from a majority of the new configuration, steps down.
    c.tick(25, 'n1');
    expect(c.get('n1').node.raft.role).toBe('follower');
    c.tick(60);
    const l = c.leader();
    expect(l && l.id !== 'n1').toBe(true);
    c.propose(l?.id as string, 'after');
    expect(c.appliedData('n2')).toContain('after');
  });
});
