/**
 * The replicated log of one node (§5.3), after etcd-io/raft `log.go`: the stable part
 * ({@link MemoryStorage}), the unstable tail ({@link Unstable}), and the two cursors
 * `commitIndex` and `lastApplied` (Figure 2, "Volatile state on all servers").
 *
 * Invariants: `lastApplied <= commitIndex <= lastIndex`; `commitIndex` never decreases.
 */
import { CompactedError, RaftInvariantError } from './errors.js';
import { MemoryStorage } from './memory-storage.js';
import { Unstable } from './log-unstable.js';
import type { Entry, LogIndex, Snapshot, Term } from './types.js';
import { logIndex, term } from './types.js';

/** Rough size of an entry on the wire, in bytes, for message size limits. */
export function entrySizeBytes(e: Entry): number {
  return e.data.byteLength + 24;
}

/** A node's log: stable entries, unstable tail, commit and apply cursors. */
export class RaftLog {
  readonly storage: MemoryStorage;
  readonly unstable: Unstable;
  /** Highest index known to be committed (Figure 2 `commitIndex`). */
  committed: LogIndex;
  /** Highest index handed to the state machine and confirmed applied (Figure 2 `lastApplied`). */
  applied: LogIndex;

  /**
   * @param storage what is already durable
   * @param applied the state machine's durable applied index (entries up to it are not re-applied)
   */
  constructor(storage: MemoryStorage, applied: LogIndex = logIndex(0)) {
    this.storage = storage;
    const first = storage.firstIndex();
    this.unstable = new Unstable(logIndex(storage.lastIndex() + 1));
    this.committed = logIndex(first - 1);
    this.applied = logIndex(Math.max(first - 1, applied));
  }

  /** First index still held (after the snapshot). */
  firstIndex(): LogIndex {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  /** Index of the last entry (stable or not). */
  lastIndex(): LogIndex {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Term of the last entry (§5.4.1 up-to-date check). */
  lastTerm(): Term {
    const t = this.term(this.lastIndex());
    if (t === undefined) throw new RaftInvariantError(`no term for last index ${this.lastIndex()}`);
    return t;
  }

  /**
   * Term of the entry at `i`: 0 for index 0, undefined when `i` is beyond the log or compacted
   * (below the snapshot). Never throws.
   */
  term(i: LogIndex): Term | undefined {
    if (i === 0) return term(0);
    const dummyIndex = this.firstIndex() - 1;
    if (i < dummyIndex || i > this.lastIndex()) return undefined;
    const u = this.unstable.maybeTerm(i);
    if (u !== undefined) return u;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof CompactedError) return undefined;
      throw e;
    }
  }

  /** True when the entry at `i` has term `t` (§5.3 consistency check). */
  matchTerm(i: LogIndex, t: Term): boolean {
    const x = this.term(i);
    return x !== undefined && x === t;
  }

  /**
   * §5.4.1 election restriction: a log ending at (`lastIndex`, `lastTerm`) is at least as
   * up-to-date as ours when its last term is higher, or equal with an index at least as high.
   */
  isUpToDate(lastIdx: LogIndex, lastTrm: Term): boolean {
    const myTerm = this.lastTerm();
    return lastTrm > myTerm || (lastTrm === myTerm && lastIdx >= this.lastIndex());
  }

  /**
   * The follower side of AppendEntries (§5.3, Figure 2 receiver rules 2-5): when our entry at
   * `prevIndex` has `prevTerm`, deletes any conflicting suffix, appends what is new and advances
   * `commitIndex` to `min(leaderCommit, index of last new entry)`. Returns the index of the last
   * new entry, or undefined when the consistency check fails.
   */
  maybeAppend(prevIndex: LogIndex, prevTerm: Term, leaderCommit: LogIndex, ents: readonly Entry[]): LogIndex | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = logIndex(prevIndex + ents.length);
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new RaftInvariantError(`entry ${ci} conflicts with committed entry (commitIndex ${this.committed})`);
      }
      this.append(ents.slice(ci - (prevIndex + 1)));
    }
    this.commitTo(logIndex(Math.min(leaderCommit, lastNew)));
    return lastNew;
  }

  /**
   * Appends entries at the end of the log, truncating anything from `ents[0].index` on.
   * Returns the new last index. Entries at or below `commitIndex` must never be overwritten.
   */
  append(ents: readonly Entry[]): LogIndex {
    if (ents.length === 0) return this.lastIndex();
    const after = (ents[0] as Entry).index - 1;
    if (after < this.committed) {
      throw new RaftInvariantError(`append after ${after} is below commitIndex ${this.committed}`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry of `ents` that is not in the log or conflicts with it (same
   * index, different term), or 0 when every entry is already present.
   */
  findConflict(ents: readonly Entry[]): LogIndex {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return logIndex(0);
  }

  /**
   * Fast back-off hint (§5.3, "optimization"; etcd `findConflictByTerm`): the largest index
   * `<= index` whose term is `<= t`, with that term. Entries above it cannot match a log whose
   * entry at `index` has term `t`.
   */
  findConflictByTerm(index: LogIndex, t: Term): { index: LogIndex; term: Term } {
    let i = index;
    for (;;) {
      const x = this.term(i);
      if (x === undefined) return { index: i, term: term(0) };
      if (x <= t) return { index: i, term: x };
      if (i === 0) return { index: i, term: x };
      i = logIndex(i - 1);
    }
  }

  /** Raises `commitIndex` to `to` (never lowers it). Throws if `to` is beyond the log. */
  commitTo(to: LogIndex): void {
    if (to <= this.committed) return;
    if (to > this.lastIndex()) {
      throw new RaftInvariantError(`commit ${to} is out of range [last index ${this.lastIndex()}]`);
    }
    this.committed = to;
  }

  /**
   * §5.4.2 (Figure 8): a leader commits `maxIndex` by counting replicas only when that entry is
   * of its own term `t`; earlier entries are then committed indirectly. Returns whether
   * `commitIndex` advanced.
   */
  maybeCommit(maxIndex: LogIndex, t: Term): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === t) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  /** Records that entries up to `i` are applied by the state machine. */
  appliedTo(i: LogIndex): void {
    if (i === 0) return;
    if (i > this.committed || i < this.applied) {
      throw new RaftInvariantError(`applied ${i} out of range [prev applied ${this.applied}, committed ${this.committed}]`);
    }
    this.applied = i;
  }

  /** Index of the last entry that is durable and not shadowed by the unstable tail. */
  stableLastIndex(): LogIndex {
    if (this.unstable.snapshot) return logIndex(this.unstable.snapshot.metadata.index);
    return logIndex(Math.min(this.storage.lastIndex(), this.unstable.offset - 1));
  }

  /**
   * Committed entries ready to apply: `(lastApplied, min(commitIndex, stableLastIndex)]`.
   * Only durable entries are applied, so a crash never loses an entry the state machine saw.
   */
  nextCommittedEntries(maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    const lo = this.applied + 1;
    const hi = Math.min(this.committed, this.stableLastIndex()) + 1;
    if (lo >= hi || this.unstable.snapshot) return [];
    return this.slice(logIndex(lo), logIndex(hi), maxBytes);
  }

  /** True when {@link nextCommittedEntries} would return something. */
  hasNextCommittedEntries(): boolean {
    if (this.unstable.snapshot) return false;
    return this.applied < Math.min(this.committed, this.stableLastIndex());
  }

  /** Entries that are not yet persisted. */
  unstableEntries(): Entry[] {
    return this.unstable.entries.slice();
  }

  /**
   * Entries in `[lo, hi)`, stable then unstable, cut after `maxBytes` (at least one entry is
   * returned when the range is not empty). Throws {@link CompactedError} when `lo` is compacted.
   */
  slice(lo: LogIndex, hi: LogIndex, maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) throw new CompactedError(`index ${lo} is compacted`);
    if (hi > this.lastIndex() + 1) throw new RaftInvariantError(`slice [${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
    let out: Entry[] = [];
    const uo = this.unstable.offset;
    if (lo < uo) out = this.storage.slice(lo, logIndex(Math.min(hi, uo)));
    if (hi > uo) out = out.concat(this.unstable.slice(logIndex(Math.max(lo, uo)), hi));
    if (maxBytes !== Number.POSITIVE_INFINITY) {
      let size = 0;
      for (let i = 0; i < out.length; i++) {
        size += entrySizeBytes(out[i] as Entry);
        if (size > maxBytes && i > 0) return out.slice(0, i);
      }
    }
    return out;
  }

  /** Entries from `i` to the end, at most `maxBytes` (at least one). */
  entriesFrom(i: LogIndex, maxBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, logIndex(this.lastIndex() + 1), maxBytes);
  }

  /** The snapshot to send a lagging follower: the unstable one, else the stable one. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Installs a snapshot from the leader (§7): the log is reset to end at its index. */
  restore(s: Snapshot): void {
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  /** The driver persisted entries through `i` (term `t`): move them to stable storage. */
  stableTo(i: LogIndex, t: Term): void {
    const stillThere = this.unstable.maybeTerm(i) === t && i >= this.unstable.offset;
    if (!stillThere) return;
    const ents = this.unstable.slice(this.unstable.offset, logIndex(i + 1));
    this.storage.append(ents);
    this.unstable.stableTo(i, t);
  }

  /** The driver persisted the unstable snapshot at `i`. */
  stableSnapTo(i: LogIndex): void {
    const s = this.unstable.snapshot;
    if (s && s.metadata.index === i) {
      this.storage.applySnapshot(s);
      this.unstable.stableSnapTo(i);
      this.applied = logIndex(Math.max(this.applied, i));
    }
  }
}
