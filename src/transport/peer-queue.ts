/**
 * The bounded outbound queue of one peer: messages waiting for the peer's stream to open or to
 * drain. Bounded both in messages and in (estimated) bytes; when a bound is exceeded the OLDEST
 * messages are dropped first. Raft tolerates the loss (the leader re-sends AppendEntries, §5.3;
 * elections and heartbeats repeat on their timers, §5.2), and the newest messages carry the
 * highest term and commit index, so they are the ones worth keeping after an outage.
 */
import type { Message } from '../raft/types.js';

/** Fixed per-message allowance of {@link estimateMessageBytes}: envelope, tags, lengths. */
const MESSAGE_OVERHEAD_BYTES = 64;
/** Fixed per-entry allowance of {@link estimateMessageBytes}: term, index, type, tags. */
const ENTRY_OVERHEAD_BYTES = 32;
/** Worst-case UTF-8 bytes per UTF-16 code unit of a string. */
const MAX_UTF8_BYTES_PER_CHAR = 3;

/**
 * An upper estimate of a message's encoded protobuf size in bytes, without encoding it: byte
 * fields count their length, strings three bytes per UTF-16 unit, plus fixed allowances.
 */
export function estimateMessageBytes(msg: Message): number {
  let bytes = MESSAGE_OVERHEAD_BYTES + MAX_UTF8_BYTES_PER_CHAR * (msg.from.length + msg.to.length);
  switch (msg.type) {
    case 'AppendEntries':
      for (const e of msg.entries) bytes += ENTRY_OVERHEAD_BYTES + e.data.byteLength;
      break;
    case 'InstallSnapshot': {
      const { confState } = msg.snapshot.metadata;
      bytes += MESSAGE_OVERHEAD_BYTES + msg.snapshot.data.byteLength;
      for (const id of [...confState.voters, ...confState.learners]) {
        bytes += ENTRY_OVERHEAD_BYTES + MAX_UTF8_BYTES_PER_CHAR * id.length;
      }
      break;
    }
    case 'Heartbeat':
    case 'HeartbeatResponse':
    case 'ReadIndex':
    case 'ReadIndexResponse':
      bytes += msg.context.byteLength;
      break;
    default:
      break;
  }
  return bytes;
}

/** Limits of a {@link PeerQueue}. */
export interface PeerQueueLimits {
  /** Most messages held at once. */
  readonly maxMessages: number;
  /** Most estimated bytes held at once (see {@link estimateMessageBytes}). */
  readonly maxBytes: number;
}

/** Compact the backing array once this many dropped or taken slots precede the head. */
const COMPACT_AFTER_SLOTS = 1024;

/**
 * A FIFO of messages with byte accounting and drop-oldest overflow. Not thread-aware: used from
 * the event loop only.
 */
export class PeerQueue {
  private items: Message[] = [];
  private sizes: number[] = [];
  private head = 0;
  private bytes = 0;

  /** @throws {RangeError} when a limit is not a positive integer. */
  constructor(private readonly limits: PeerQueueLimits) {
    for (const [name, v] of Object.entries(limits)) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`PeerQueue limit ${name} must be a positive integer, got ${String(v)}`);
    }
  }

  /** Messages held. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** Estimated bytes held. */
  get byteLength(): number {
    return this.bytes;
  }

  /**
   * Appends a message of `size` estimated bytes, then drops the oldest messages until both
   * limits hold again — the queue's own, or the tighter `limits` of this call (a peer that is
   * down keeps less). Returns how many messages were dropped (the new one included when it alone
   * exceeds `maxBytes`).
   */
  push(msg: Message, size: number, limits: PeerQueueLimits = this.limits): number {
    this.items.push(msg);
    this.sizes.push(size);
    this.bytes += size;
    const maxMessages = Math.min(limits.maxMessages, this.limits.maxMessages);
    const maxBytes = Math.min(limits.maxBytes, this.limits.maxBytes);
    let dropped = 0;
    while (this.length > 0 && (this.length > maxMessages || this.bytes > maxBytes)) {
      this.shiftOne();
      dropped++;
    }
    this.maybeCompact();
    return dropped;
  }

  /**
   * Removes and returns the oldest messages whose estimated sizes sum to at most `maxBytes`;
   * always at least one message when the queue is not empty (a message larger than `maxBytes`
   * travels alone). Returns the messages and their estimated total.
   */
  take(maxBytes: number): { messages: Message[]; bytes: number } {
    const messages: Message[] = [];
    let bytes = 0;
    while (this.length > 0) {
      const size = this.sizes[this.head] as number;
      if (messages.length > 0 && bytes + size > maxBytes) break;
      messages.push(this.shiftOne());
      bytes += size;
    }
    this.maybeCompact();
    return { messages, bytes };
  }

  /** Drops everything; returns how many messages were held. */
  clear(): number {
    const n = this.length;
    this.items = [];
    this.sizes = [];
    this.head = 0;
    this.bytes = 0;
    return n;
  }

  private shiftOne(): Message {
    const msg = this.items[this.head] as Message;
    this.bytes -= this.sizes[this.head] as number;
    // Release the reference so a dropped message's buffers can be collected before compaction.
    (this.items as (Message | undefined)[])[this.head] = undefined;
    this.head++;
    return msg;
  }

  private maybeCompact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.sizes = [];
      this.head = 0;
    } else if (this.head >= COMPACT_AFTER_SLOTS && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }
}
