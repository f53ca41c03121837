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
 * Why a proposal ended without being applied (the `reason` of
 * {@link RaftNodeObserver.onProposalFailed}):
 * - `not_leader`: this node was not the leader (or stopped being it before the append),
 * - `queue_full`: too many proposals were waiting (back-pressure),
 * - `dropped`: the core refused the append (e.g. a leader removing itself, a change pending),
 * - `replaced`: a new leader's entry replaced the proposed one (§5.3),
 * - `snapshot`: a snapshot covered the entry before it was applied here (outcome unknown),
 * - `stopping`: the node stopped.
 */
export type ProposalFailure = 'not_leader' | 'queue_full' | 'dropped' | 'replaced' | 'snapshot' | 'stopping';

/** What a snapshot install cost (see {@link RaftNodeObserver.onSnapshotInstalled}). */
export interface SnapshotCost {
  /** How long installing the snapshot took, in seconds of the node's clock. */
  readonly seconds: number;
  /** Size of the snapshot file, in bytes. */
  readonly sizeBytes: number;
}

/**
 * Optional callbacks the node makes as it goes, for metrics and for the simulator's invariant
 * checks. Each is called synchronously; none may throw or change the node. Durations are seconds
 * of the node's {@link Clock} (simulated time in the simulator); they are optional arguments, so
 * an observer may ignore them.
 */
export interface RaftNodeObserver {
  /**
   * A Ready's write is durable (before its messages that wait for it are sent). `seconds`: how
   * long the write (hard state and entries, with the applies when they ride along) took;
   * undefined when the Ready had nothing to write.
   */
  onPersisted?(node: NodeId, ready: Ready, synced: boolean, seconds?: number): void;
  /**
   * Entries were applied to the state machine and made durable, in log order. `seconds`: how
   * long applying them and writing the result took.
   */
  onApplied?(node: NodeId, entries: readonly Entry[], seconds?: number): void;
  /** A snapshot from the leader replaced the state machine; `cost`: the install's duration and the file's size. */
  onSnapshotInstalled?(node: NodeId, metadata: SnapshotMetadata, cost?: SnapshotCost): void;
  /** The node took a snapshot point of its own state machine (and compacts its log behind it; nothing is copied). */
  onSnapshotTaken?(node: NodeId, metadata: SnapshotMetadata): void;
  /**
   * A snapshot was streamed to follower `to` (`ok`: it acknowledged the whole payload), taking
   * `seconds`; `sizeBytes`: the payload's size, when it was sent whole.
   */
  onSnapshotSent?(node: NodeId, to: NodeId, ok: boolean, seconds: number, sizeBytes?: number): void;
  /**
   * A snapshot payload from `from` was refused as it arrived, never stepped: it does not decode,
   * or does not hold the state its `metadata` names (`reason` says which).
   */
  onSnapshotRefused?(node: NodeId, from: NodeId, metadata: SnapshotMetadata, reason: string): void;
  /** The log was compacted through `index`. */
  onCompacted?(node: NodeId, index: LogIndex): void;
  /** Messages were handed to the transport (`early`: before the Ready's write was durable). */
  onSent?(node: NodeId, messages: readonly Message[], early: boolean): void;
  /** A message from a peer is about to be stepped into the core. */
  onStep?(node: NodeId, message: Message): void;
  /** Proposals were appended to the leader's log at `firstIndex..lastIndex` (term `term`). */
  onProposed?(node: NodeId, firstIndex: LogIndex, lastIndex: LogIndex, term: Term): void;
  /** A proposal (a command or a membership change) was submitted to this node's driver. */
  onProposalSubmitted?(node: NodeId): void;
  /** `count` proposals ended with an error, for `reason` (each is also counted by {@link onProposalSubmitted}). */
  onProposalFailed?(node: NodeId, reason: ProposalFailure, count: number): void;
}

/** The hooks of {@link RaftNodeObserver}, every one a method. */
type ObserverHook = keyof RaftNodeObserver;

/** Every hook of {@link RaftNodeObserver} (checked against the interface: add a new hook here too). */
const OBSERVER_HOOKS = [
  'onPersisted',
  'onApplied',
  'onSnapshotInstalled',
  'onSnapshotTaken',
  'onSnapshotSent',
  'onSnapshotRefused',
  'onCompacted',
  'onSent',
  'onStep',
  'onProposed',
  'onProposalSubmitted',
  'onProposalFailed',
] as const satisfies readonly ObserverHook[];
// A compile error here means a hook of RaftNodeObserver is missing from OBSERVER_HOOKS.
const _everyHookListed: Record<ObserverHook, true> = Object.fromEntries(OBSERVER_HOOKS.map((h) => [h, true])) as Record<(typeof OBSERVER_HOOKS)[number], true>;
void _everyHookListed;

/**
 * One observer that calls each of `observers` in turn (those undefined are skipped), hook by
 * hook: `RaftNodeOptions` takes one observer, and a node may want metrics and the write timeline
 * at once. Only hooks some observer has are set, so a hook nobody listens to costs nothing.
 */
export function combineObservers(...observers: readonly (RaftNodeObserver | undefined)[]): RaftNodeObserver {
  const present = observers.filter((o): o is RaftNodeObserver => o !== undefined);
  if (present.length === 1) return present[0] as RaftNodeObserver;
  const combined: Record<string, (...args: unknown[]) => void> = {};
  for (const hook of OBSERVER_HOOKS) {
    const fns = present.flatMap((o) => {
      const f = o[hook] as ((...args: unknown[]) => void) | undefined;
      return typeof f === 'function' ? [f.bind(o)] : [];
    });
    if (fns.length === 0) continue;
    combined[hook] = (...args: unknown[]) => {
      for (const f of fns) f(...args);
    };
  }
  return combined as RaftNodeObserver;
}
