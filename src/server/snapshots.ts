/**
 * Snapshots in the node loop (§7, Figures 12 and 13), made as etcd v3 makes them: the state
 * machine in the store is the snapshot. Nothing is copied until a follower needs one.
 *
 * - Taking: once `thresholdEntries` entries were applied since the last snapshot, the applied
 *   index becomes the core's snapshot point (`setSnapshot`) and the log is compacted behind it.
 *   Nothing else is written: the state as of that index is already in the store, and the synced
 *   compaction write makes every earlier unsynced apply durable with it (LevelDB's write-ahead
 *   log is one sequential file).
 * - Compaction: keep `tailEntries` behind the snapshot, and never drop an entry after a snapshot
 *   still being sent (a follower whose transfer outlasts the tail would otherwise never catch up:
 *   Consul issue 9609). The compaction is written between two Readies, synced.
 * - Sending: when the core asks for an `InstallSnapshot`, a point-in-time view of the state machine
 *   is opened between two applies, so it holds exactly the applied index. The message's metadata
 *   names that index, its term and the membership as of it, as etcd's merged snapshot message
 *   does, not the older point the core named. It is streamed, with its payload, on the transport's
 *   snapshot stream only, never on the ordinary peer stream, and the outcome is reported to the
 *   core (etcd's `ReportSnapshot`). The view costs one LevelDB snapshot while the transfer lasts.
 *   The payload is in the newest format the follower advertised on its peer stream (an older
 *   version reads only older formats; see `payloadFormatFor`).
 * - Receiving: the payload is written to a local snapshot file and decoded as it arrives. Only a
 *   payload that decodes and holds the state the metadata names steps into the core, which
 *   decides whether to install it; any other is refused (the transfer fails and the leader
 *   retries). An `InstallSnapshot` that arrives without a payload this node holds is dropped:
 *   peer input never stops a node.
 * - Installing: the state machine is replaced from the file and the log reset to end at the
 *   snapshot's index, in one atomic switch. A crash before it leaves the previous state and log.
 * - Restarting: the snapshot point is the state machine's applied index (see `RaftNode.start`).
 *   A snapshot file is only ever a transfer's landing place.
 */
import type { Logger } from '../log.js';
import { logIndex, type InstallSnapshot, type LogIndex, type NodeId, type RawNode, type Ready, type Snapshot, type SnapshotMetadata, type Term } from '../raft/index.js';
import { SnapshotStateCheck, type RegistryStateMachine } from '../registry/state-machine.js';
import { decodeStatePairs, encodeStatePairBatches, STATE_PAYLOAD_FORMAT, STATE_PAYLOAD_FORMATS, StatePairDecoder, type StatePayloadFormat } from '../storage/snapshot-codec.js';
import { CorruptionError, type NodeStore, type SnapshotMeta, type SnapshotStore, type StateMachineView } from '../storage/types.js';
import type { SnapshotTransport } from '../transport/types.js';
import type { Clock, RaftNodeObserver } from './ports.js';
import { UnavailableError } from './proposals.js';

/** Default: snapshot the state machine once this many entries were applied since the last one. */
export const DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES = 10_000;
/** Default: entries kept in the log behind a snapshot, so a briefly lagging follower catches up from the log. */
export const DEFAULT_SNAPSHOT_TAIL_ENTRIES = 5_000;
/** Milliseconds per second, for the durations (seconds) the observer hears of. */
const MS_PER_SECOND = 1_000;

/** Received snapshot files kept on disk: the newest (a file is only a transfer's landing place). */
export const SNAPSHOTS_RETAINED = 1;

/** What the snapshot manager needs from the node. */
export interface SnapshotContext {
  readonly id: NodeId;
  readonly rawNode: RawNode;
  readonly store: NodeStore;
  readonly stateMachine: RegistryStateMachine;
  readonly snapshots: SnapshotStore;
  readonly transport: SnapshotTransport;
  readonly clock: Clock;
  readonly log: Logger;
  readonly observer: RaftNodeObserver;
  /** Applied entries between snapshots. */
  readonly thresholdEntries: number;
  /** Entries kept behind a snapshot. */
  readonly tailEntries: number;
  /** Chunk size of snapshot files and transfers, in bytes. */
  readonly chunkBytes: number;
  /** Asks the node loop for another turn. */
  readonly schedule: () => void;
  /**
   * Runs `fn` between two applies: after every apply queued so far has written its batch and
   * before the next one starts, so the store holds exactly the state machine's applied index.
   */
  readonly betweenApplies: <T>(fn: () => T) => Promise<T>;
  /** Whether writes are synced (false only for a deliberate test bug). */
  readonly syncWrites: boolean;
  /** Whether the node has stopped. */
  readonly stopped: () => boolean;
  /** Whether a received payload is decoded and checked before it steps (false only for a deliberate test bug). */
  readonly checkPayloads: boolean;
}

/**
 * The payload format sent to a follower that advertised none on its peer stream: a node of a
 * version from before the advertisement, all of which read format 2 (format 3 came after it).
 */
export const UNADVERTISED_PEER_PAYLOAD_FORMAT: StatePayloadFormat = 2;

/**
 * The payload format to send a follower that advertised `formats` (undefined: none): the newest
 * one both sides know; {@link UNADVERTISED_PEER_PAYLOAD_FORMAT} when it advertised nothing; the
 * newest of ours when it knows none of them (it will refuse the payload, and the core retries).
 */
export function payloadFormatFor(formats: readonly number[] | undefined): StatePayloadFormat {
  if (formats === undefined) return UNADVERTISED_PEER_PAYLOAD_FORMAT;
  const common = STATE_PAYLOAD_FORMATS.filter((f) => formats.includes(f));
  return common[common.length - 1] ?? STATE_PAYLOAD_FORMAT;
}

/** A view of the state machine and the point of the log it holds: what an InstallSnapshot carries. */
interface SnapshotSource {
  readonly metadata: SnapshotMetadata;
  readonly view: StateMachineView;
}

/** The snapshot side of one node; see the module comment. */
export class SnapshotManager {
  /** Received snapshot files this node holds, by index. */
  private readonly files = new Map<number, SnapshotMeta>();
  /** A log compaction decided after a snapshot, written between two Readies. */
  private pendingCompaction: { index: LogIndex; term: Term } | undefined;
  /** Followers a snapshot is being streamed to. */
  private readonly sending = new Set<NodeId>();

  constructor(private readonly ctx: SnapshotContext) {}

  /** Records a snapshot file found on disk at start. */
  adopt(file: SnapshotMeta): void {
    this.files.set(file.index, file);
  }

  /** Whether a compaction waits to be written. */
  get compactionPending(): boolean {
    return this.pendingCompaction !== undefined;
  }

  /**
   * Takes a snapshot once `thresholdEntries` entries were applied since the last one: the
   * applied index becomes the core's snapshot point, and the log is compacted behind it (see the
   * module comment). Call it between two Readies with no apply in flight, so that every apply
   * through the point is written before the compaction that makes them durable.
   */
  maybeTake(): void {
    const { rawNode, stateMachine } = this.ctx;
    const applied = stateMachine.appliedIndex;
    const last = rawNode.raft.raftLog.storage.snapshot().metadata.index;
    if (applied - last < this.ctx.thresholdEntries) return;
    const index = logIndex(applied);
    const t = rawNode.raft.raftLog.term(index);
    if (t === undefined) return;
    const metadata: SnapshotMetadata = { index, term: t, confState: rawNode.raft.confState() };
    rawNode.setSnapshot(metadata);
    this.ctx.observer.onSnapshotTaken?.(this.ctx.id, metadata);
    this.ctx.log.info({ index, term: t }, 'snapshot taken');
    this.planCompaction(index);
  }

  /**
   * Decides how far to compact after a snapshot at `index`: keep `tailEntries` entries, and
   * never drop an entry after a snapshot still being sent to a follower.
   */
  private planCompaction(index: LogIndex): void {
    const raft = this.ctx.rawNode.raft;
    let through = index - this.ctx.tailEntries;
    if (raft.role === 'leader') {
      for (const [id, pr] of raft.prs) if (id !== this.ctx.id && pr.state === 'snapshot') through = Math.min(through, pr.pendingSnapshot);
    }
    if (through <= raft.raftLog.storage.compactedTo().index) return;
    const t = this.ctx.rawNode.compact(logIndex(through));
    this.pendingCompaction = { index: logIndex(through), term: t };
    this.ctx.schedule();
  }

  /**
   * Writes a pending compaction, synced: it must outlast every unsynced apply before it, which
   * the sync makes durable with it.
   */
  async maybeWriteCompaction(): Promise<void> {
    const c = this.pendingCompaction;
    if (!c) return;
    this.pendingCompaction = undefined;
    // A snapshot from the leader may have reset the log past it since it was planned.
    if (c.index < this.ctx.store.log.firstIndex()) return;
    const batch = this.ctx.store.batch();
    batch.compactLog(c.index, c.term);
    await batch.write({ sync: this.ctx.syncWrites });
    this.ctx.observer.onCompacted?.(this.ctx.id, c.index);
    this.ctx.log.debug({ through: c.index, firstIndex: this.ctx.store.log.firstIndex() }, 'log compacted');
  }

  private async prune(): Promise<void> {
    await this.ctx.snapshots.prune(SNAPSHOTS_RETAINED);
    const keep = [...this.files.keys()].sort((a, b) => b - a).slice(0, SNAPSHOTS_RETAINED);
    for (const k of this.files.keys()) if (!keep.includes(k)) this.files.delete(k);
  }

  /**
   * Streams the state machine to the follower an InstallSnapshot names, as of the applied index
   * when the view opens (between two applies; at or after the core's snapshot point), and
   * reports the outcome to the core. A second request for a follower already receiving one is
   * ignored.
   */
  send(m: InstallSnapshot): void {
    const to = m.to;
    if (this.sending.has(to)) return;
    this.sending.add(to);
    const started = this.ctx.clock.now();
    void this.ctx.betweenApplies(() => this.openSource()).then(async (source) => {
      if (!source) {
        this.afterSend(to, false);
        return;
      }
      const { metadata, view } = source;
      // A format the follower reads: an older version may not read the newest.
      const format = payloadFormatFor(this.ctx.transport.snapshotFormatsOf(to));
      let sizeBytes = 0;
      const chunks = (async function* (chunkBytes: number) {
        for await (const chunk of encodeStatePairBatches(view.entryBatches(), chunkBytes, format)) {
          sizeBytes += chunk.byteLength;
          yield chunk;
        }
      })(this.ctx.chunkBytes);
      let ok = false;
      try {
        await this.ctx.transport.sendSnapshot({ ...m, snapshot: { metadata, data: new Uint8Array(0) } }, chunks);
        ok = true;
        this.ctx.log.info({ to, index: metadata.index, term: metadata.term, format, sizeBytes, ms: Math.round(this.ctx.clock.now() - started) }, 'snapshot sent');
      } catch (err) {
        this.ctx.log.warn({ to, index: metadata.index, err }, 'snapshot send failed; will retry');
      } finally {
        await view.close().catch(() => undefined);
      }
      this.ctx.observer.onSnapshotSent?.(this.ctx.id, to, ok, (this.ctx.clock.now() - started) / MS_PER_SECOND, ok ? sizeBytes : undefined);
      this.afterSend(to, ok);
    });
  }

  /**
   * A view of the state machine at its applied index, with that index, its term and the
   * membership as of it; undefined when this node no longer leads or has stopped. Runs between
   * two applies (so the store holds exactly the applied index and the core's configuration is
   * the one applied through it).
   */
  private openSource(): SnapshotSource | undefined {
    const raft = this.ctx.rawNode.raft;
    if (this.ctx.stopped() || raft.role !== 'leader') return undefined;
    const index = logIndex(this.ctx.stateMachine.appliedIndex);
    const t = raft.raftLog.term(index);
    if (t === undefined) return undefined;
    return { metadata: { index, term: t, confState: raft.confState() }, view: this.ctx.store.stateMachineView() };
  }

  private afterSend(to: NodeId, ok: boolean): void {
    this.sending.delete(to);
    if (this.ctx.stopped()) return;
    this.ctx.rawNode.reportSnapshot(to, ok);
    this.ctx.schedule();
  }

  /**
   * A snapshot's payload arrives from the leader: decoded and checked as it is written to a local
   * snapshot file, after which `step` hands the InstallSnapshot to the core. Rejects (failing the
   * transfer on the sender's side) when the node is stopping or the payload cannot be stored, and
   * with `CorruptionError` when it does not decode or does not hold the state its metadata names
   * (see `SnapshotStateCheck`): such a payload is never stepped.
   */
  async receive(m: InstallSnapshot, chunks: AsyncIterable<Uint8Array>, step: (m: InstallSnapshot) => void): Promise<void> {
    if (this.ctx.stopped()) throw new UnavailableError('node is stopping');
    const { index, term } = m.snapshot.metadata;
    this.ctx.log.info({ from: m.from, index, term }, 'receiving snapshot');
    const sink = this.ctx.snapshots.create(m.snapshot.metadata);
    // The payload is decoded as it arrives, so one this node could not install (a format it does
    // not read, a damaged frame, another applied index) is refused here, before the core steps it.
    const decoder = this.ctx.checkPayloads ? new StatePairDecoder() : undefined;
    const check = new SnapshotStateCheck(index);
    try {
      for await (const chunk of chunks) {
        if (decoder) for (const [key, value] of decoder.push(chunk)) check.pair(key, value);
        await sink.write(chunk);
      }
      if (decoder) {
        decoder.end();
        check.end();
      }
      const file = await sink.finish();
      this.files.set(file.index, file);
    } catch (err) {
      await sink.abort().catch(() => undefined);
      if (err instanceof CorruptionError) {
        this.ctx.log.warn({ from: m.from, index, term, err: err.message }, 'refusing a snapshot payload this node cannot install');
        this.ctx.observer.onSnapshotRefused?.(this.ctx.id, m.from, m.snapshot.metadata, err.message);
      }
      throw err;
    }
    if (this.ctx.stopped()) throw new UnavailableError('node is stopping');
    step(m);
  }

  /**
   * Installs the snapshot of a Ready (§7, Figure 13 steps 6-8): the state machine is replaced
   * from the snapshot file and the log reset to end at its index, with the Ready's hard state, in
   * one atomic switch. Throws when the file is not held (the node only steps an InstallSnapshot
   * whose payload it holds, so this is a local fault) or the installed state disagrees with it.
   */
  async install(rd: Ready): Promise<void> {
    const meta = (rd.snapshot as Snapshot).metadata;
    const file = this.files.get(meta.index);
    if (!file) throw new Error(`snapshot ${meta.index} to install is not on disk`);
    const started = this.ctx.clock.now();
    const sm = this.ctx.stateMachine;
    await this.ctx.store.installStateMachine(decodeStatePairs(this.ctx.snapshots.read(file, this.ctx.chunkBytes)), (batch) => {
      batch.resetLog(meta.index, meta.term);
      if (rd.hardState) batch.setHardState(rd.hardState);
    });
    // A compaction planned before this install is covered by it.
    if (this.pendingCompaction && this.pendingCompaction.index <= meta.index) this.pendingCompaction = undefined;
    sm.discardStaged();
    await sm.open();
    if (sm.appliedIndex !== meta.index) {
      throw new Error(`installed snapshot ${meta.index} but the state machine says applied ${sm.appliedIndex}`);
    }
    this.ctx.observer.onSnapshotInstalled?.(this.ctx.id, meta, { seconds: (this.ctx.clock.now() - started) / MS_PER_SECOND, sizeBytes: file.sizeBytes });
    this.ctx.log.info({ index: meta.index, term: meta.term, sizeBytes: file.sizeBytes, ms: Math.round(this.ctx.clock.now() - started) }, 'snapshot installed');
    await this.prune();
  }
}
