/**
 * Safety invariants of Raft (Figure 3 of the paper, plus the driver-level ones), checked after
 * every simulated event:
 *
 * - Election Safety: at most one leader per term.
 * - Leader Append-Only: a leader never overwrites or deletes entries in its log.
 * - Log Matching: two logs with an entry of the same index and term agree on every entry up to it.
 * - Leader Completeness: a leader's log holds every entry committed before its term.
 * - State Machine Safety: no two nodes apply different entries at the same index.
 * - Commit quorum: when a leader advances its commitIndex, a majority of the voters of its
 *   current configuration hold that entry (a removed node or a learner never makes a majority).
 * - `commitIndex` never decreases during a node's life, and never below what it persisted;
 *   `lastApplied <= commitIndex`; a persisted `votedFor` never changes within a term.
 * - No entry is applied twice by a node, unless a power loss took its unsynced applies.
 */
import type { Entry, HardState, NodeId, Term } from '../../src/raft/index.js';
import { logIndex } from '../../src/raft/index.js';
import { SafetyViolation, type Simulation } from './simulator.js';

function fail(msg: string): never {
  throw new SafetyViolation(msg);
}

/** Entry data as text, for comparing what two nodes applied. */
function dataOf(e: Entry): string {
  return Buffer.from(e.data).toString('base64');
}

/** Watches a {@link Simulation} and throws {@link SafetyViolation} when a property breaks. */
export class InvariantChecker {
  private readonly sim: Simulation;
  /** term → the node that was leader in it. */
  private readonly leaders = new Map<number, NodeId>();
  /** index → term of every entry known committed (from any node's commitIndex). */
  private readonly committed: number[] = [0];
  /**
   * index → the term in which the entry was first seen committed (the observer's current term,
   * an upper bound of the term that committed it: Leader Completeness binds leaders of later terms).
   */
  private readonly commitTerms: number[] = [0];
  /** index → applied entry (term, data as string). */
  private readonly applied = new Map<number, { term: number; data: string }>();
  /** node → highest commitIndex in this life. */
  private readonly commitSeen = new Map<NodeId, number>();
  /** node → term → persisted votedFor. */
  private readonly votes = new Map<NodeId, Map<number, NodeId>>();
  /** leader → the commitIndex it had at the last check, in the term it led. */
  private readonly leaderCommits = new Map<NodeId, { term: number; commit: number; voters: readonly NodeId[] }>();
  /** node → the log terms when it was last checked as leader of `term`. */
  private readonly leaderLogs = new Map<NodeId, { term: Term; terms: number[] }>();

  constructor(sim: Simulation) {
    this.sim = sim;
  }

  /** A node replaced its state by a snapshot: its applied index jumps to the snapshot's. */
  onInstallSnapshot(id: NodeId, index: number): void {
    this.appliedThrough.set(id, Math.max(this.appliedThrough.get(id) ?? 0, index));
  }

  /** node → the highest index it applied since its last power loss (a process restart keeps what it applied). */
  private readonly appliedThrough = new Map<NodeId, number>();

  /** A node went down; after a power loss it may apply again what it had applied (unsynced). */
  onCrash(id: NodeId, kind: 'power' | 'process'): void {
    this.commitSeen.delete(id);
    this.leaderLogs.delete(id);
    if (kind === 'power') this.appliedThrough.delete(id);
  }

  /** A node started again: its commitIndex must not be below what it persisted (`hs`). */
  onRestart(id: NodeId, hs: HardState | undefined): void {
    const n = this.sim.get(id);
    const persisted = hs?.commitIndex ?? 0;
    const committed = n.node.core.raft.raftLog.committed;
    if (committed < persisted) fail(`${id} restarted with commitIndex ${committed} below its persisted ${persisted}`);
    this.commitSeen.set(id, committed);
  }

  /** A node's hard state reached its disk: votedFor must not change within a term. */
  onPersistHardState(id: NodeId, hs: HardState): void {
    if (!hs.votedFor) return;
    let byTerm = this.votes.get(id);
    if (!byTerm) {
      byTerm = new Map();
      this.votes.set(id, byTerm);
    }
    const prev = byTerm.get(hs.currentTerm);
    if (prev !== undefined && prev !== hs.votedFor) {
      fail(`${id} persisted a vote for ${hs.votedFor} in term ${hs.currentTerm} after voting for ${prev}`);
    }
    byTerm.set(hs.currentTerm, hs.votedFor);
  }

  /** State Machine Safety, and nothing applied twice by a node whose applied state survived, checked at every apply. */
  onApply(id: NodeId, e: Entry): void {
    const through = this.appliedThrough.get(id) ?? 0;
    if (e.index <= through) fail(`${id} applied ${e.index} again (it had applied through ${through} and lost nothing since)`);
    this.appliedThrough.set(id, e.index);
    const data = dataOf(e);
    const prev = this.applied.get(e.index);
    if (prev && (prev.term !== e.term || prev.data !== data)) {
      fail(`State Machine Safety: ${id} applied ${e.index}/${e.term} but another node applied a different entry ${e.index}/${prev.term}`);
    }
    if (!prev) this.applied.set(e.index, { term: e.term, data });
  }

  /** Whether node `id` holds entry (`index`, `t`): in memory when up, on disk when down; compacted counts. */
  private holds(id: NodeId, index: number, t: number): boolean {
    const n = this.sim.nodes.get(id);
    if (!n) return false;
    if (n.up && n.raft) {
      const log = n.raft.core.raft.raftLog;
      if (index < log.firstIndex()) return true;
      return log.term(logIndex(index)) === t;
    }
    const store = n.disk.store;
    if (index <= store.compactedIndex) return true;
    return store.termAt(index) === t;
  }

  /** Checks every invariant over the current state. */
  check(): void {
    const up = this.sim.upNodes();
    const logs = new Map<NodeId, number[]>();
    for (const n of up) {
      const raft = n.node.core.raft;
      const log = raft.raftLog;
      const terms: number[] = [0];
      const last = log.lastIndex();
      for (let i = 1; i <= last; i++) terms.push(log.term(logIndex(i)) ?? -1);
      logs.set(n.id, terms);

      const commit = log.committed;
      // commitIndex monotonic within a life; lastApplied <= commitIndex.
      const seen = this.commitSeen.get(n.id) ?? 0;
      if (commit < seen) fail(`${n.id} commitIndex went back from ${seen} to ${commit}`);
      this.commitSeen.set(n.id, commit);
      if (log.applied > commit) fail(`${n.id} lastApplied ${log.applied} > commitIndex ${commit}`);
      if (n.node.appliedIndex > commit) fail(`${n.id} applied ${n.node.appliedIndex} entries but commitIndex is ${commit}`);

      // Record committed entries; two nodes must agree on them.
      for (let i = 1; i <= commit; i++) {
        const t = terms[i] as number;
        if (t === -1) continue; // compacted: covered by a snapshot
        const known = this.committed[i];
        if (known === undefined) {
          this.committed[i] = t;
          this.commitTerms[i] = raft.currentTerm;
        } else if (known !== t) fail(`${n.id} has ${i}/${t} committed, but ${i}/${known} was committed before`);
      }

      if (raft.role === 'leader') {
        // Election Safety.
        const other = this.leaders.get(raft.currentTerm);
        if (other !== undefined && other !== n.id) fail(`Election Safety: ${other} and ${n.id} are both leaders of term ${raft.currentTerm}`);
        this.leaders.set(raft.currentTerm, n.id);
        // Leader Append-Only.
        const prev = this.leaderLogs.get(n.id);
        if (prev && prev.term === raft.currentTerm) {
          if (terms.length < prev.terms.length) fail(`Leader Append-Only: leader ${n.id} shrank its log from ${prev.terms.length - 1} to ${terms.length - 1}`);
          for (let i = 1; i < prev.terms.length; i++) {
            if (terms[i] === -1 || prev.terms[i] === -1) continue; // compacted since
            if (terms[i] !== prev.terms[i]) fail(`Leader Append-Only: leader ${n.id} changed entry ${i} from term ${prev.terms[i]} to ${terms[i]}`);
          }
        }
        this.leaderLogs.set(n.id, { term: raft.currentTerm, terms });
        // Commit quorum: a newly committed index is held by a majority of the current voters.
        // The commit may have been counted just before a change was applied in the same event,
        // so the configuration before the event counts too (one change at a time: one of the two).
        const lc = this.leaderCommits.get(n.id);
        const voters = raft.confState().voters;
        if (lc && lc.term === raft.currentTerm && commit > lc.commit) {
          const t = terms[commit] as number;
          const quorumHolds = (vs: readonly NodeId[]) => vs.filter((v) => this.holds(v, commit, t)).length >= Math.floor(vs.length / 2) + 1;
          if (t !== -1 && !quorumHolds(voters) && !quorumHolds(lc.voters)) {
            fail(`Commit quorum: leader ${n.id} committed ${commit}/${t} without a majority of its voters (${voters.join(',')})`);
          }
        }
        this.leaderCommits.set(n.id, { term: raft.currentTerm, commit, voters });
        // Leader Completeness: every entry committed in an earlier term is in the leader's log.
        for (let i = 1; i < this.committed.length; i++) {
          const t = this.committed[i] as number;
          if ((this.commitTerms[i] as number) < raft.currentTerm && terms[i] !== t && terms[i] !== -1) {
            fail(`Leader Completeness: leader ${n.id} of term ${raft.currentTerm} lacks committed entry ${i}/${t}`);
          }
        }
      } else {
        this.leaderLogs.delete(n.id);
        this.leaderCommits.delete(n.id);
      }
    }
    // Log Matching: the same (index, term) implies identical prefixes.
    const all = [...logs];
    for (let a = 0; a < all.length; a++) {
      for (let b = a + 1; b < all.length; b++) {
        const [ida, la] = all[a] as [NodeId, number[]];
        const [idb, lb] = all[b] as [NodeId, number[]];
        const n = Math.min(la.length, lb.length);
        let i = n - 1;
        while (i > 0 && (la[i] !== lb[i] || la[i] === -1)) i--;
        for (let j = i - 1; j > 0; j--) {
          if (la[j] === -1 || lb[j] === -1) break; // compacted below here on one of them
          if (la[j] !== lb[j]) fail(`Log Matching: ${ida} and ${idb} agree at ${i}/${la[i]} but differ at ${j} (${la[j]} vs ${lb[j]})`);
        }
      }
    }
  }
}
