/**
 * The not-yet-persisted tail of the log (etcd-io/raft `log_unstable.go`): entries appended by a
 * proposal or received from the leader, and a received snapshot, that the driver has been asked
 * to persist but has not yet confirmed. `offset` is the index of `entries[0]`.
 */
import { RaftInvariantError } from './errors.js';
import type { Entry, LogIndex, Snapshot, Term } from './types.js';
import { logIndex } from './types.js';

/** Unstable entries and snapshot, in memory only. */
export class Unstable {
  /** Index of `entries[0]` (or where the next entry would go when empty). */
  offset: LogIndex;
  entries: Entry[] = [];
  /** A snapshot received from the leader and not yet persisted. */
  snapshot: Snapshot | undefined;

  constructor(offset: LogIndex) {
    this.offset = offset;
  }

  /** The first index, if an unstable snapshot sets it. */
  maybeFirstIndex(): LogIndex | undefined {
    return this.snapshot ? logIndex(this.snapshot.metadata.index + 1) : undefined;
  }

  /** The last index, if there are unstable entries or an unstable snapshot. */
  maybeLastIndex(): LogIndex | undefined {
    if (this.entries.length > 0) return logIndex(this.offset + this.entries.length - 1);
    return this.snapshot?.metadata.index;
  }

  /** The term at `i`, if the unstable part knows it. */
  maybeTerm(i: LogIndex): Term | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    return this.entries[i - this.offset]?.term;
  }

  /**
   * The driver persisted entries up to `i` with term `t`: drop them from here. Ignored when the
   * entry at `i` changed meanwhile (a new leader overwrote it while it was being written).
   */
  stableTo(i: LogIndex, t: Term): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return;
    this.entries = this.entries.slice(i + 1 - this.offset);
    this.offset = logIndex(i + 1);
  }

  /** The driver persisted the unstable snapshot at index `i`. */
  stableSnapTo(i: LogIndex): void {
    if (this.snapshot && this.snapshot.metadata.index === i) this.snapshot = undefined;
  }

  /** Holds a snapshot from the leader; every unstable entry is discarded. */
  restore(s: Snapshot): void {
    this.offset = logIndex(s.metadata.index + 1);
    this.entries = [];
    this.snapshot = s;
  }

  /**
   * Appends `ents`, first truncating any unstable entries at or after `ents[0].index` (§5.3: a
   * conflicting suffix is deleted). When `ents` start before `offset`, the unstable part is
   * replaced and `offset` moves back: the stable entries from there on are now shadowed.
   */
  truncateAndAppend(ents: readonly Entry[]): void {
    if (ents.length === 0) return;
    const after = (ents[0] as Entry).index;
    if (after === this.offset + this.entries.length) {
      this.entries.push(...ents);
    } else if (after <= this.offset) {
      this.offset = after;
      this.entries = [...ents];
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
    }
  }

  /** Unstable entries in `[lo, hi)`; the range must lie within the unstable part. */
  slice(lo: LogIndex, hi: LogIndex): Entry[] {
    const upper = this.offset + this.entries.length;
    if (lo < this.offset || hi > upper || lo > hi) {
      throw new RaftInvariantError(`unstable slice [${lo}, ${hi}) outside [${this.offset}, ${upper})`);
    }
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
