/**
 * The core's in-memory copy of what is already durable: the last snapshot's metadata and the
 * stable log entries after it (etcd-io/raft `MemoryStorage`). The driver loads it from disk at
 * start; afterwards the core moves entries here itself once the driver reports them persisted
 * (`RawNode.advance`). Pure data structure: no I/O.
 *
 * Shape: `entries[0]` is a dummy whose index and term are those of the snapshot (index 0, term 0
 * for a fresh log), so term lookups at the snapshot boundary work (§5.3 consistency check right
 * after a compaction).
 */
import { CompactedError, RaftInvariantError } from './errors.js';
import type { Entry, LogIndex, Snapshot, SnapshotMetadata, Term } from './types.js';
import { EMPTY_SNAPSHOT, logIndex } from './types.js';

/** The stable log and the snapshot it follows. */
export class MemoryStorage {
  private entries: Entry[];
  private snap: Snapshot;

  /** @param snapshot the latest durable snapshot (EMPTY_SNAPSHOT for none) */
  constructor(snapshot: Snapshot = EMPTY_SNAPSHOT) {
    this.snap = snapshot;
    this.entries = [dummy(snapshot.metadata)];
  }

  /** Index of the first entry after the snapshot (the first one that can be read). */
  firstIndex(): LogIndex {
    return logIndex((this.entries[0] as Entry).index + 1);
  }

  /** Index of the last stable entry (the snapshot index when there is none after it). */
  lastIndex(): LogIndex {
    return (this.entries[this.entries.length - 1] as Entry).index;
  }

  /**
   * The term of the entry at `i`, for `snapshotIndex <= i <= lastIndex`; undefined beyond the
   * last index. Throws {@link CompactedError} below the snapshot index.
   */
  term(i: LogIndex): Term | undefined {
    const offset = (this.entries[0] as Entry).index;
    if (i < offset) throw new CompactedError(`index ${i} is compacted (snapshot at ${offset})`);
    const e = this.entries[i - offset];
    return e?.term;
  }

  /** Entries in `[lo, hi)`; throws {@link CompactedError} when `lo` is compacted. */
  slice(lo: LogIndex, hi: LogIndex): Entry[] {
    const offset = (this.entries[0] as Entry).index;
    if (lo <= offset) throw new CompactedError(`index ${lo} is compacted (snapshot at ${offset})`);
    if (hi > this.lastIndex() + 1) throw new RaftInvariantError(`slice [${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
    return this.entries.slice(lo - offset, hi - offset);
  }

  /** The latest snapshot. */
  snapshot(): Snapshot {
    return this.snap;
  }

  /**
   * Appends persisted entries. Entries at or below the snapshot are ignored; a stored suffix that
   * conflicts with (starts at or after) the first new entry is replaced.
   */
  append(ents: readonly Entry[]): void {
    if (ents.length === 0) return;
    const first = this.firstIndex();
    const lastNew = (ents[ents.length - 1] as Entry).index;
    if (lastNew < first) return;
    const kept = (ents[0] as Entry).index < first ? ents.slice(first - (ents[0] as Entry).index) : ents;
    const start = (kept[0] as Entry).index;
    const offset = (this.entries[0] as Entry).index;
    if (start > this.lastIndex() + 1) {
      throw new RaftInvariantError(`append at ${start} leaves a gap after last index ${this.lastIndex()}`);
    }
    this.entries = this.entries.slice(0, start - offset).concat(kept);
  }

  /** Replaces everything with `snapshot` (a follower installing the leader's snapshot, §7). */
  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.metadata.index < this.snap.metadata.index) {
      throw new RaftInvariantError(`snapshot ${snapshot.metadata.index} is older than ${this.snap.metadata.index}`);
    }
    this.snap = snapshot;
    this.entries = [dummy(snapshot.metadata)];
  }

  /**
   * Discards entries up to and including `index`, which a snapshot taken by the driver now covers
   * (log compaction, §7). `snapshot` must be at `index`.
   */
  compact(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    const offset = (this.entries[0] as Entry).index;
    if (index <= offset) return;
    if (index > this.lastIndex()) throw new RaftInvariantError(`compact ${index} beyond last index ${this.lastIndex()}`);
    const kept = this.entries.slice(index - offset);
    kept[0] = dummy(snapshot.metadata);
    this.entries = kept;
    this.snap = snapshot;
  }
}

function dummy(meta: SnapshotMetadata): Entry {
  return { index: meta.index, term: meta.term, type: 'normal', data: new Uint8Array(0) };
}

