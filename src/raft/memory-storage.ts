/**
 * The core's in-memory copy of what is already durable: the last snapshot's metadata and the
 * stable log entries after it (etcd-io/raft `MemoryStorage`). The driver loads it from disk at
 * start; afterwards the core moves entries here itself once the driver reports them persisted
 * (`RawNode.advance`). Pure data structure: no I/O.
 *
 * Shape: `entries[0]` is a dummy whose index and term are those of the compaction point (the last
 * entry the log no longer holds; index 0, term 0 for a fresh log), so term lookups at the
 * boundary work (§5.3 consistency check right after a compaction). The latest snapshot covers at
 * least the compaction point: a follower that needs compacted entries gets the snapshot (§7).
 * The snapshot's `data` is empty here: the driver keeps the payload on disk and streams it.
 */
import { CompactedError, RaftInvariantError } from './errors.js';
import type { Entry, LogIndex, Snapshot, SnapshotMetadata, Term } from './types.js';
import { EMPTY_SNAPSHOT, logIndex } from './types.js';

/** The stable log and the snapshot it follows. */
export class MemoryStorage {
  private entries: Entry[];
  private snap: Snapshot;

  /**
   * @param snapshot the latest durable snapshot (EMPTY_SNAPSHOT for none)
   * @param compacted the durable compaction point (default: the snapshot's index and term);
   *   must not be beyond the snapshot
   */
  constructor(snapshot: Snapshot = EMPTY_SNAPSHOT, compacted?: { index: LogIndex; term: Term }) {
    this.snap = snapshot;
    const point = compacted ?? { index: snapshot.metadata.index, term: snapshot.metadata.term };
    if (point.index > snapshot.metadata.index) {
      throw new RaftInvariantError(`compaction point ${point.index} is beyond the snapshot at ${snapshot.metadata.index}`);
    }
    this.entries = [{ index: point.index, term: point.term, type: 'normal', data: new Uint8Array(0) }];
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
   * Records a newer snapshot the driver has made durable (§7): it is what a follower missing
   * compacted entries receives. Its index must be an applied, stable index.
   */
  setSnapshot(snapshot: Snapshot): void {
    if (snapshot.metadata.index < this.snap.metadata.index) return;
    if (snapshot.metadata.index > this.lastIndex()) {
      throw new RaftInvariantError(`snapshot ${snapshot.metadata.index} beyond last index ${this.lastIndex()}`);
    }
    this.snap = snapshot;
  }

  /**
   * Discards entries up to and including `index` (log compaction, §7). `index` must not be
   * beyond the latest snapshot, which must therefore cover everything discarded. Returns the
   * term of the new compaction point, for the driver to persist.
   */
  compact(index: LogIndex): Term {
    const offset = (this.entries[0] as Entry).index;
    if (index <= offset) return (this.entries[0] as Entry).term;
    if (index > this.snap.metadata.index) {
      throw new RaftInvariantError(`compact ${index} beyond the snapshot at ${this.snap.metadata.index}`);
    }
    if (index > this.lastIndex()) throw new RaftInvariantError(`compact ${index} beyond last index ${this.lastIndex()}`);
    const kept = this.entries.slice(index - offset);
    const head = kept[0] as Entry;
    kept[0] = { index: head.index, term: head.term, type: 'normal', data: new Uint8Array(0) };
    this.entries = kept;
    return head.term;
  }

  /** The compaction point: index and term of the last entry the log no longer holds. */
  compactedTo(): { index: LogIndex; term: Term } {
    const d = this.entries[0] as Entry;
    return { index: d.index, term: d.term };
  }
}

function dummy(meta: SnapshotMetadata): Entry {
  return { index: meta.index, term: meta.term, type: 'normal', data: new Uint8Array(0) };
}

