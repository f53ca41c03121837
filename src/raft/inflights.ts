/**
 * The window of AppendEntries messages sent to one follower and not yet acknowledged, after
 * etcd-io/raft `tracker/inflights.go`. It bounds how far optimistic replication runs ahead of
 * acknowledgements, so a slow follower cannot make the leader buffer without limit.
 */
import type { LogIndex } from './types.js';

/** A FIFO of the last log index carried by each in-flight AppendEntries. */
export class Inflights {
  private readonly buffer: LogIndex[] = [];

  /** @param capacity the most messages in flight at once (etcd's `MaxInflightMsgs`). */
  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`inflights capacity must be >= 1, got ${capacity}`);
  }

  /** Records a sent message whose last entry has index `last` (indexes must increase). */
  add(last: LogIndex): void {
    if (this.full()) throw new RangeError('inflights: add to a full window');
    this.buffer.push(last);
  }

  /** Frees every in-flight message whose last index is `<= to` (they were acknowledged). */
  freeLE(to: LogIndex): void {
    let i = 0;
    while (i < this.buffer.length && (this.buffer[i] as number) <= to) i++;
    if (i > 0) this.buffer.splice(0, i);
  }

  /** Frees the oldest message (a heartbeat response proves the follower is alive). */
  freeFirstOne(): void {
    this.buffer.shift();
  }

  /** True when no more messages may be sent. */
  full(): boolean {
    return this.buffer.length >= this.capacity;
  }

  /** How many messages are in flight. */
  get count(): number {
    return this.buffer.length;
  }

  /** Forgets everything in flight (on a state change of the follower's progress). */
  reset(): void {
    this.buffer.length = 0;
  }
}
