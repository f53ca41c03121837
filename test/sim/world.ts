/**
 * Simulated time for the deterministic simulator: one event queue ordered by (time, sequence),
 * a {@link Clock} per node incarnation whose timers are events of that queue, and a seeded
 * generator. Time is in milliseconds, as the node's own clock is; nothing waits for real time.
 *
 * Events belong to an owner: a node incarnation (dropped once it crashed or was replaced), or a
 * node whatever its incarnation (deliveries to it: dropped while it is down). Events of a paused
 * node (SIGSTOP) are held and run, in order, when it resumes.
 *
 * After every event the microtasks it started run to completion (one `setImmediate` turn), so a
 * promise chain of the node — an `await` of a disk write, say — moves on exactly when the event
 * that resolves it fires. With no real I/O anywhere, the whole run is a function of the seed.
 */
import type { Clock, Timer } from '../../src/server/ports.js';
import { seededRandom } from '../../src/raft/index.js';

/** Who an event belongs to. `generation` undefined: the node, whatever its incarnation. */
export interface Owner {
  readonly node: string;
  readonly generation?: number;
}

interface SimEvent {
  readonly at: number;
  readonly seq: number;
  readonly owner: Owner | undefined;
  readonly fn: () => void;
  cancelled: boolean;
}

/** Lets every pending microtask run (one turn of the event loop: nothing else runs in a simulation). */
function settle(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** Unix time the simulated clocks start at (for wall-clock readings only). */
const WALL_EPOCH_MS = 1_764_000_000_000;

/** The event queue and clocks of one simulation. */
export class SimWorld {
  now = 0;
  readonly rand: () => number;
  private heap: SimEvent[] = [];
  private seq = 0;
  private readonly paused = new Map<string, SimEvent[]>();
  /** Events processed so far. */
  events = 0;

  /**
   * `alive(owner)`: whether the owner's events still run (its node is up, in that incarnation).
   * `afterEvent()`: called after each event and its microtasks (the invariant checks).
   */
  constructor(
    seed: number,
    private readonly alive: (owner: Owner) => boolean,
    private readonly afterEvent: () => void,
  ) {
    this.rand = seededRandom(seed);
  }

  /** A uniformly drawn integer in `[lo, hi]`. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }

  /** Schedules `fn` at time `at` (never before now) for `owner`. */
  at(at: number, owner: Owner | undefined, fn: () => void): Timer {
    const ev: SimEvent = { at: Math.max(at, this.now), seq: this.seq++, owner, fn, cancelled: false };
    this.push(ev);
    return { cancel: () => (ev.cancelled = true) };
  }

  /** A promise that resolves after `ms` for `owner` (never, if the owner dies first). */
  delay(owner: Owner, ms: number): Promise<void> {
    return new Promise((resolve) => this.at(this.now + ms, owner, resolve));
  }

  /** The clock of one node incarnation. */
  clockFor(owner: Owner): Clock {
    const world = this;
    return {
      now: () => world.now,
      wallNow: () => WALL_EPOCH_MS + world.now,
      setTimer: (ms, fn) => world.at(world.now + Math.max(0, ms), owner, fn),
      setRepeating(ms, fn) {
        const period = Math.max(1, ms);
        let current: Timer | undefined;
        let cancelled = false;
        const fire = (): void => {
          if (cancelled) return;
          current = world.at(world.now + period, owner, fire);
          fn();
        };
        current = world.at(world.now + period, owner, fire);
        return {
          cancel: () => {
            cancelled = true;
            current?.cancel();
          },
        };
      },
      defer: (fn) => void world.at(world.now, owner, fn),
    };
  }

  /** Holds every event of `node` until {@link resume} (a SIGSTOP). */
  pause(node: string): void {
    if (!this.paused.has(node)) this.paused.set(node, []);
  }

  /** Whether `node` is paused. */
  isPaused(node: string): boolean {
    return this.paused.has(node);
  }

  /** Runs the events held for `node` now, in their order (a SIGCONT). */
  resume(node: string): void {
    const held = this.paused.get(node);
    if (!held) return;
    this.paused.delete(node);
    for (const ev of held) this.push({ ...ev, at: this.now, seq: this.seq++ });
  }

  /** Processes every event up to and including time `until`, then sets the clock to it. */
  async runUntil(until: number): Promise<void> {
    await settle();
    while (this.heap.length > 0 && (this.heap[0] as SimEvent).at <= until) await this.next();
    if (until > this.now) this.now = until;
  }

  /** Processes events for `ms` of simulated time. */
  async run(ms: number): Promise<void> {
    await this.runUntil(this.now + ms);
  }

  /**
   * Processes events until `pred` holds (checked after each) or `maxMs` passed; returns whether
   * it holds.
   */
  async runWhile(pred: () => boolean, maxMs: number): Promise<boolean> {
    const until = this.now + maxMs;
    await settle();
    if (pred()) return true;
    while (this.heap.length > 0 && (this.heap[0] as SimEvent).at <= until) {
      await this.next();
      if (pred()) return true;
    }
    if (until > this.now) this.now = until;
    return pred();
  }

  /** Processes the next event, if any, and the microtasks it starts. Returns false when none is left. */
  async next(): Promise<boolean> {
    const ev = this.pop();
    if (!ev) return false;
    this.now = Math.max(this.now, ev.at);
    if (ev.cancelled) return true;
    if (ev.owner) {
      const held = this.paused.get(ev.owner.node);
      if (held) {
        held.push(ev);
        return true;
      }
      if (!this.alive(ev.owner)) return true;
    }
    this.events++;
    ev.fn();
    await settle();
    this.afterEvent();
    return true;
  }

  // A binary min-heap on (at, seq).
  private less(a: SimEvent, b: SimEvent): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(ev: SimEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i] as SimEvent, h[p] as SimEvent)) break;
      [h[i], h[p]] = [h[p] as SimEvent, h[i] as SimEvent];
      i = p;
    }
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0] as SimEvent;
    const last = h.pop() as SimEvent;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l] as SimEvent, h[m] as SimEvent)) m = l;
        if (r < h.length && this.less(h[r] as SimEvent, h[m] as SimEvent)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as SimEvent, h[i] as SimEvent];
        i = m;
      }
    }
    return top;
  }
}
