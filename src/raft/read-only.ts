/**
 * Linearizable reads without writing to the log: ReadIndex (thesis §6.4), after etcd-io/raft
 * `read_only.go`. The leader records its `commitIndex` when a read arrives, confirms it is still
 * the leader by a heartbeat round that a majority acknowledges, and only then releases the read:
 * once the node serving it has applied that index, it may answer from its state machine.
 *
 * Requests are keyed by their opaque `context` (hex-encoded here); a heartbeat carries the
 * context of the newest pending read, and an acknowledgement of it also confirms every read
 * queued before it.
 */
import type { LogIndex, NodeId } from './types.js';

/** One pending read: where it came from and the commit index it must wait for. */
export interface ReadIndexStatus {
  readonly context: Uint8Array;
  readonly index: LogIndex;
  /** The node that asked (the leader itself, or a follower that forwarded it). */
  readonly from: NodeId;
  readonly acks: Set<NodeId>;
}

/** Hex key of a read context. */
export function contextKey(ctx: Uint8Array): string {
  let s = '';
  for (const b of ctx) s += b.toString(16).padStart(2, '0');
  return s;
}

/** The leader's queue of reads waiting for heartbeat confirmation. */
export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private readonly queue: string[] = [];

  /** Queues a read at `index` unless one with the same context is already queued. */
  addRequest(index: LogIndex, context: Uint8Array, from: NodeId): void {
    const key = contextKey(context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { context, index, from, acks: new Set() });
    this.queue.push(key);
  }

  /**
   * Records `id`'s acknowledgement of the heartbeat carrying `context`. Returns the set of nodes
   * that have acknowledged it, or undefined for an unknown context.
   */
  recvAck(id: NodeId, context: Uint8Array): ReadonlySet<NodeId> | undefined {
    const rs = this.pending.get(contextKey(context));
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /**
   * Releases the read with `context` and every read queued before it (a quorum confirmed the
   * leadership at or after all of them). Returns them in arrival order.
   */
  advance(context: Uint8Array): ReadIndexStatus[] {
    const key = contextKey(context);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const released = this.queue.splice(0, at + 1);
    const out: ReadIndexStatus[] = [];
    for (const k of released) {
      const rs = this.pending.get(k);
      if (rs) out.push(rs);
      this.pending.delete(k);
    }
    return out;
  }

  /** Context of the newest pending read, to ride on the next heartbeat. */
  lastPendingContext(): Uint8Array | undefined {
    const k = this.queue[this.queue.length - 1];
    return k === undefined ? undefined : this.pending.get(k)?.context;
  }

  /** Drops every pending read (on losing leadership); returns them so callers can fail them. */
  reset(): ReadIndexStatus[] {
    const all = this.queue.map((k) => this.pending.get(k)).filter((x): x is ReadIndexStatus => x !== undefined);
    this.pending.clear();
    this.queue.length = 0;
    return all;
  }

  /** How many reads are pending. */
  get size(): number {
    return this.queue.length;
  }
}
