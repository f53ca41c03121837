/**
 * The simulated disk of one node: a `MemoryStore` (log, hard state, state machine) and a
 * `MemorySnapshotStore` that outlive the node's incarnations, seen by each incarnation through
 * ports whose operations take simulated time — so a crash can fall between any two of the
 * driver's awaits: between persist and send, mid-apply, mid-snapshot-install, mid-compaction.
 * A written batch is visible a moment before its writer hears that it finished, as with LevelDB.
 *
 * A crash is a power loss (only what was synced survives, plus a random part of the unsynced
 * tail) or a process kill (the page cache keeps every written batch). A stall makes every
 * operation take at least until a given time.
 */
import type { HardState } from '../../src/raft/index.js';
import { MemorySnapshotStore } from '../../src/storage/snapshot-store.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { KeyValueReader, NodeStore, SnapshotSink, SnapshotStore, WriteBatch } from '../../src/storage/types.js';
import type { Owner, SimWorld } from './world.js';

/** Longest simulated write, in ms (each operation takes 0..this). */
export const DISK_MAX_MS = 20;
/**
 * Longest time, in ms, between a write becoming visible and its writer hearing it finished (a
 * LevelDB batch commits on a worker thread; other readers see it before the callback runs).
 */
export const DISK_ACK_MAX_MS = 20;
/** Longest simulated read of a batch of keys, in ms. */
export const DISK_READ_MAX_MS = 5;

/** How a node went down. */
export type CrashKind = 'power' | 'process';

/** One node's disk, across its incarnations. */
export class SimDisk {
  store = new MemoryStore();
  snapshots = new MemorySnapshotStore();
  /** No operation completes before this time (a stalled disk). */
  stallUntil = 0;
  /** Writes completed, and those synced (coverage). */
  writes = 0;
  syncedWrites = 0;

  constructor(private readonly world: SimWorld) {}

  /** The disk after a crash of the given kind: what the next incarnation finds. */
  crash(kind: CrashKind): void {
    this.store = kind === 'power' ? this.store.crash(this.world.int(0, this.store.unsyncedBatches)) : this.store.reopen();
    this.snapshots = this.snapshots.reopen();
  }

  private latency(owner: Owner, maxMs: number): Promise<void> {
    const ms = Math.max(this.world.int(0, maxMs), this.stallUntil - this.world.now);
    return this.world.delay(owner, ms);
  }

  /**
   * The ports an incarnation uses: the store and the snapshot store, with simulated latency.
   * `onSyncedHardState` sees every hard state that became durable by a synced write.
   */
  open(owner: Owner, onSyncedHardState: (hs: HardState) => void): { store: NodeStore; snapshots: SnapshotStore } {
    const disk = this;
    const inner = this.store;
    const snaps = this.snapshots;
    const kv: KeyValueReader = {
      get: (key) => inner.kv.get(key),
      getMany: async (keys) => {
        await disk.latency(owner, DISK_READ_MAX_MS);
        return inner.kv.getMany(keys);
      },
      range: (gte, lt, limit) => inner.kv.range(gte, lt, limit),
    };
    const store: NodeStore = {
      log: inner.log,
      stable: inner.stable,
      kv,
      batch(): WriteBatch {
        const b = inner.batch();
        let hs: HardState | undefined;
        return {
          appendEntries: (e) => b.appendEntries(e),
          setHardState: (h) => {
            hs = h;
            b.setHardState(h);
          },
          put: (k, v) => b.put(k, v),
          del: (k) => b.del(k),
          compactLog: (through, t) => b.compactLog(through, t),
          resetLog: (index, t) => b.resetLog(index, t),
          get empty() {
            return b.empty;
          },
          async write(options) {
            await disk.latency(owner, DISK_MAX_MS);
            await b.write(options);
            const synced = options?.sync ?? true;
            disk.writes++;
            if (synced) disk.syncedWrites++;
            if (hs && synced) onSyncedHardState(hs);
            await disk.latency(owner, DISK_ACK_MAX_MS);
          },
        };
      },
      stateMachineView: () => inner.stateMachineView(),
      async installStateMachine(pairs, finalize) {
        let hs: HardState | undefined;
        await inner.installStateMachine(pairs, (batch) => {
          const setHardState = batch.setHardState.bind(batch);
          finalize(Object.assign(Object.create(batch) as WriteBatch, {
            setHardState: (h: HardState) => {
              hs = h;
              setHardState(h);
            },
          }));
        });
        if (hs) onSyncedHardState(hs);
      },
      close: () => inner.close(),
    };
    const snapshots: SnapshotStore = {
      create(meta): SnapshotSink {
        const sink = snaps.create(meta);
        return {
          write: async (chunk) => {
            await disk.latency(owner, DISK_MAX_MS);
            await sink.write(chunk);
          },
          finish: async () => {
            await disk.latency(owner, DISK_MAX_MS);
            return sink.finish();
          },
          abort: () => sink.abort(),
        };
      },
      latest: () => snaps.latest(),
      read(meta, chunkBytes) {
        return (async function* () {
          for await (const chunk of snaps.read(meta, chunkBytes)) {
            await disk.latency(owner, DISK_READ_MAX_MS);
            yield chunk;
          }
        })();
      },
      prune: (retain) => snaps.prune(retain),
    };
    return { store, snapshots };
  }
}
