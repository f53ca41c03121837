/**
 * Watches served by one node from its own applied state (etcd's watch, Consul's blocking
 * queries made streaming): a watcher first replays the event history kept in the state machine
 * from its start revision, then follows live events as the node applies them. Events come in
 * revision order with no gaps or duplicates for the watcher's filter, so a stream resumed from
 * the last revision seen plus one misses nothing.
 *
 * A watcher that cannot keep up is buffered up to {@link MAX_WATCHER_BUFFERED_EVENTS} events and
 * then cut off with {@link WatchError} `resource_exhausted`, rather than slowing the node; a
 * start revision older than the kept history fails with `out_of_range` naming the oldest one.
 */
import type { Logger } from '../log.js';
import type { RegistryStateMachine } from '../registry/state-machine.js';
import type { WatchEvent } from '../registry/types.js';

/** Events buffered for one watcher before it is cut off as too slow. */
export const MAX_WATCHER_BUFFERED_EVENTS = 10_000;
/** Events read from the history per page while a watcher catches up. */
export const WATCH_HISTORY_PAGE_EVENTS = 1_000;
/** Most watchers one node serves at once. */
export const MAX_WATCHERS = 10_000;

/** What a watcher wants: all given filters must hold. */
export interface WatchFilter {
  readonly idPrefix?: string;
  readonly capability?: string;
  readonly kind?: string;
}

/** Why a watch ended early. */
export class WatchError extends Error {
  override readonly name = 'WatchError';
  constructor(
    readonly kind: 'out_of_range' | 'resource_exhausted' | 'unavailable',
    message: string,
    /** For `out_of_range`: the oldest revision still kept. */
    readonly oldestRevision = 0,
  ) {
    super(message);
  }
}

/** Whether `e` passes `f`. */
export function matchesWatch(e: WatchEvent, f: WatchFilter): boolean {
  if (f.idPrefix && !e.agent.id.startsWith(f.idPrefix)) return false;
  if (f.capability && !e.agent.capabilities.includes(f.capability)) return false;
  if (f.kind && e.agent.kind !== f.kind) return false;
  return true;
}

/** Where a watcher's events go: `send` returns false when the consumer is full (back-pressure). */
export interface WatchSink {
  send(e: WatchEvent): boolean;
  /** Called once the consumer has room again after `send` returned false. */
  onDrain(resume: () => void): void;
  /** Ends the watch with an error. */
  fail(err: WatchError): void;
}

class Watcher {
  /** Accepted events not yet handed to the sink (bounded). */
  private readonly queue: WatchEvent[] = [];
  /** Live events that arrived while the history was replayed. */
  readonly held: WatchEvent[] = [];
  /** The next revision this watcher accepts: everything before it was delivered or filtered. */
  nextRevision: number;
  live = false;
  private blocked = false;
  closed = false;

  constructor(
    readonly filter: WatchFilter,
    private readonly sink: WatchSink,
    startRevision: number,
    private readonly onClose: (w: Watcher, err: WatchError | undefined) => void,
  ) {
    this.nextRevision = startRevision;
  }

  /** Events accepted or held and not yet handed to the sink. */
  get buffered(): number {
    return this.queue.length + this.held.length;
  }

  /**
   * The revision of the oldest event not yet handed to the sink, or `undefined` when nothing is
   * waiting and the watcher is live (it is caught up).
   */
  get oldestUndelivered(): number | undefined {
    const queued = this.queue[0] ?? this.held[0];
    if (queued !== undefined) return queued.revision;
    return this.live ? undefined : this.nextRevision;
  }

  /**
   * Accepts the events of whole revisions, in revision order (every event of one revision
   * arrives in the same call, so a revision is never split). Revisions already passed are dropped.
   */
  accept(events: readonly WatchEvent[]): void {
    if (this.closed) return;
    let last = this.nextRevision - 1;
    for (const e of events) {
      if (e.revision < this.nextRevision) continue;
      last = Math.max(last, e.revision);
      if (matchesWatch(e, this.filter)) this.queue.push(e);
    }
    this.nextRevision = last + 1;
    if (this.queue.length > MAX_WATCHER_BUFFERED_EVENTS) {
      this.close(new WatchError('resource_exhausted', `watcher fell more than ${MAX_WATCHER_BUFFERED_EVENTS} events behind; resume from the last revision received plus one`));
      return;
    }
    this.flush();
  }

  /** A live batch: held while the history is replayed, accepted afterwards. */
  offerLive(events: readonly WatchEvent[]): void {
    if (this.closed) return;
    if (this.live) {
      this.accept(events);
      return;
    }
    this.held.push(...events);
    if (this.held.length > MAX_WATCHER_BUFFERED_EVENTS) {
      this.close(new WatchError('resource_exhausted', `more than ${MAX_WATCHER_BUFFERED_EVENTS} events arrived while the history was replayed; resume later`));
    }
  }

  flush(): void {
    while (!this.blocked && !this.closed && this.queue.length > 0) {
      const e = this.queue.shift() as WatchEvent;
      if (!this.sink.send(e)) {
        this.blocked = true;
        this.sink.onDrain(() => {
          this.blocked = false;
          this.flush();
        });
      }
    }
  }

  close(err?: WatchError): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.held.length = 0;
    this.onClose(this, err);
    if (err) this.sink.fail(err);
  }
}

/** What {@link WatchHub.stats} reports. */
export interface WatchStats {
  /** Open watchers. */
  readonly watchers: number;
  /** Events buffered for all watchers, not yet handed to their consumers. */
  readonly bufferedEvents: number;
  /** The most events buffered for one watcher (it is cut off past `MAX_WATCHER_BUFFERED_EVENTS`). */
  readonly maxBufferedEvents: number;
  /**
   * How far the furthest-behind watcher trails the applied index, in revisions: the applied index
   * plus one minus the revision of its oldest undelivered event; 0 when every watcher is caught up.
   */
  readonly maxLagRevisions: number;
  /**
   * Live watchers this hub ended with an error since start, by reason: `resource_exhausted` (too
   * slow), `out_of_range` (the history no longer reached back after a snapshot), `unavailable`
   * (shutdown, or a failed catch-up). A watch refused at its start is not counted.
   */
  readonly ended: Readonly<Record<WatchError['kind'], number>>;
}

/** Fans the events of each applied batch out to the watchers of this node. */
export class WatchHub {
  private readonly watchers = new Set<Watcher>();
  private readonly ended: Record<WatchError['kind'], number> = { out_of_range: 0, resource_exhausted: 0, unavailable: 0 };

  constructor(
    private readonly sm: RegistryStateMachine,
    private readonly log: Logger,
  ) {}

  /** Number of open watchers. */
  get size(): number {
    return this.watchers.size;
  }

  /** Counts of the watchers and of what they buffer: O(watchers), at most {@link MAX_WATCHERS}. */
  stats(): WatchStats {
    let bufferedEvents = 0;
    let maxBufferedEvents = 0;
    let oldest = Number.POSITIVE_INFINITY;
    for (const w of this.watchers) {
      const b = w.buffered;
      bufferedEvents += b;
      if (b > maxBufferedEvents) maxBufferedEvents = b;
      const r = w.oldestUndelivered;
      if (r !== undefined && r < oldest) oldest = r;
    }
    const maxLagRevisions = Number.isFinite(oldest) ? Math.max(0, this.sm.appliedIndex + 1 - oldest) : 0;
    return { watchers: this.watchers.size, bufferedEvents, maxBufferedEvents, maxLagRevisions, ended: { ...this.ended } };
  }

  /** Publishes the events of a batch just made durable, in revision order. */
  publish(events: readonly WatchEvent[]): void {
    if (events.length === 0) return;
    for (const w of this.watchers) w.offerLive(events);
  }

  /**
   * Starts a watch from `startRevision` (0: from now). Resolves with a `cancel` function once the
   * watcher is live; rejects with {@link WatchError} `out_of_range` when the history no longer
   * reaches back to `startRevision`.
   */
  async watch(startRevision: number, filter: WatchFilter, sink: WatchSink): Promise<() => void> {
    if (this.watchers.size >= MAX_WATCHERS) throw new WatchError('resource_exhausted', `this node already serves ${MAX_WATCHERS} watchers`);
    const start = startRevision === 0 ? this.sm.appliedIndex + 1 : startRevision;
    const w = new Watcher(filter, sink, start, (x, err) => {
      this.watchers.delete(x);
      if (err) this.ended[err.kind]++;
    });
    // Registered before the history is read, so nothing applied meanwhile is missed: it is held
    // and accepted after the history, revisions already replayed being dropped.
    this.watchers.add(w);
    try {
      await this.catchUp(w);
    } catch (err) {
      w.close();
      throw err;
    }
    return () => w.close();
  }

  /**
   * Replays the kept history from the watcher's next revision, then makes it live with what was
   * held meanwhile. Throws {@link WatchError} `out_of_range` when the history no longer reaches
   * back that far.
   */
  private async catchUp(w: Watcher): Promise<void> {
    let from = w.nextRevision;
    for (;;) {
      const page = await this.sm.eventsSince(from, WATCH_HISTORY_PAGE_EVENTS);
      if (from < page.oldestRevision && from <= page.lastRevision) {
        throw new WatchError('out_of_range', `revision ${from} is compacted; the oldest revision kept is ${page.oldestRevision}`, page.oldestRevision);
      }
      w.accept(page.events);
      if (w.closed) return;
      if (page.events.length < WATCH_HISTORY_PAGE_EVENTS) {
        // Everything up to the applied index read here is delivered or filtered.
        w.nextRevision = Math.max(w.nextRevision, page.lastRevision + 1);
        break;
      }
      from = w.nextRevision;
    }
    w.live = true;
    w.accept(w.held.splice(0, w.held.length));
  }

  /**
   * The state machine was replaced by a snapshot from the leader: the revisions between what the
   * watchers saw and the snapshot were never applied here one by one, so every live watcher goes
   * back to the history (carried by the snapshot) and catches up from its next revision; one the
   * history no longer reaches is ended with `out_of_range`.
   */
  resync(): void {
    for (const w of this.watchers) {
      if (!w.live || w.closed) continue;
      w.live = false;
      this.catchUp(w).catch((err: unknown) => {
        w.close(err instanceof WatchError ? err : new WatchError('unavailable', `watch could not catch up after a snapshot: ${String(err)}; resume`));
      });
    }
  }

  /** Ends every watch (node shutdown). */
  closeAll(): void {
    for (const w of [...this.watchers]) w.close(new WatchError('unavailable', 'node is stopping; resume elsewhere'));
    this.log.debug('all watchers closed');
  }
}
