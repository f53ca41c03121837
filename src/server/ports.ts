/**
 * The ports of the node loop that are not storage or transport: time and scheduling, entropy,
 * and an observer. Production wires {@link systemClock} and {@link systemEntropy}; the
 * deterministic simulator (`test/sim/`) wires simulated time and a seeded generator into the very
 * same driver, so that the loop that ships is the loop the simulator proves (the shape of etcd's
 * `raft.Node` and hashicorp/raft's `Raft`, whose loops take their clock and transport as
 * arguments).
 *
 * Storage ports are in `../storage/types.ts` (`NodeStore`, `SnapshotStore`), the peer transport
 * in `../transport/types.ts` (`Transport`, `SnapshotTransport`).
 */
import { randomBytes } from 'node:crypto';
import type { Entry, LogIndex, Message, NodeId, Ready, SnapshotMetadata, Term } from '../raft/index.js';

/** A scheduled callback that can be cancelled (idempotent). */
export interface Timer {
  cancel(): void;
}

/**
 * Time and scheduling. Times are milliseconds; `now` is monotonic and may jump forward (a process
 * pause), never back.
 */
export interface Clock {
  /** Milliseconds of a monotonic clock (`performance.now()` in production). */
  now(): number;
  /** Milliseconds since the Unix epoch, for values shown to users (lease deadlines). */
  wallNow(): number;
  /** Calls `fn` once after `ms` milliseconds. */
  setTimer(ms: number, fn: () => void): Timer;
  /** Calls `fn` every `ms` milliseconds until cancelled. */
  setRepeating(ms: number, fn: () => void): Timer;
  /** Calls `fn` soon, after the current turn and its microtasks (`setImmediate`). */
  defer(fn: () => void): void;
}

/** Real time: `performance.now()`, `Date.now()` and Node's timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  setRepeating(ms, fn) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
  defer(fn) {
    setImmediate(fn);
  },
};

/** A promise that resolves after `ms` milliseconds of `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}

/** Where the node's randomness comes from: only ever through this port. */
export interface Entropy {
  /** A uniformly distributed unsigned 32-bit integer. */
  uint32(): number;
}

/** Randomness from the operating system (`crypto.randomBytes`). */
export const systemEntropy: Entropy = {
  uint32: () => randomBytes(4).readUInt32BE(0),
};

/**
 * Optional callbacks the node makes as it goes, for metrics and for the simulator's invariant
 * checks. Each is called synchronously; none may throw or change the node.
 */
export interface RaftNodeObserver {
  /** A Ready's write is durable (before its messages that wait for it are sent). */
  onPersisted?(node: NodeId, ready: Ready, synced: boolean): void;
  /** Entries were applied to the state machine and made durable, in log order. */
  onApplied?(node: NodeId, entries: readonly Entry[]): void;
  /** A snapshot from the leader replaced the state machine. */
  onSnapshotInstalled?(node: NodeId, metadata: SnapshotMetadata): void;
  /** The node wrote a snapshot of its own state machine. */
  onSnapshotTaken?(node: NodeId, metadata: SnapshotMetadata): void;
  /** The log was compacted through `index`. */
  onCompacted?(node: NodeId, index: LogIndex): void;
  /** Messages were handed to the transport (`early`: before the Ready's write was durable). */
  onSent?(node: NodeId, messages: readonly Message[], early: boolean): void;
  /** A message from a peer is about to be stepped into the core. */
  onStep?(node: NodeId, message: Message): void;
  /** Proposals were appended to the leader's log at `firstIndex..lastIndex` (term `term`). */
  onProposed?(node: NodeId, firstIndex: LogIndex, lastIndex: LogIndex, term: Term): void;
}
