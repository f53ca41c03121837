/**
 * Counts of the registry's agents by kind and health, and of those holding a lease, kept by the
 * state machine as it applies (for the node's metrics): reading them costs O(kinds), never a scan
 * of the agents. A full count is made once (after each `open`, in the background, on request)
 * and kept current from then on by the changes of every committed batch.
 */
import { HEALTH_VALUES } from './commands.js';
import type { Agent, Health } from './types.js';

/**
 * Most distinct kinds counted one by one; agents of later kinds are counted together under
 * {@link OTHER_KINDS_LABEL}. Kinds are free-form strings, so this bounds both the memory of the
 * counts and the number of metric series they become.
 */
export const MAX_COUNTED_AGENT_KINDS = 100;

/** The kind under which agents of kinds beyond {@link MAX_COUNTED_AGENT_KINDS} are counted. */
export const OTHER_KINDS_LABEL = '_other';

/** The position of each health in a count array. */
const HEALTH_SLOT: Readonly<Record<Health, number>> = Object.fromEntries(HEALTH_VALUES.map((h, i) => [h, i])) as Record<Health, number>;

/** One line of the counts: `count` agents of `kind` with `health`. */
export interface AgentCount {
  readonly kind: string;
  readonly health: Health;
  readonly count: number;
}

/**
 * A tally of agents (or of changes to them: counts may be negative in a tally of changes) by kind
 * and health, plus those holding a lease. With `maxKinds`, a kind first seen once that many kinds
 * are tallied goes to {@link OTHER_KINDS_LABEL} (one more entry) for the tally's whole life (kinds
 * already tallied are never dropped, even at zero, so every agent of a kind is always counted in
 * the same place).
 */
export class AgentTally {
  private readonly kinds = new Map<string, number[]>();
  /** Agents holding a lease (`ttlSeconds > 0`). */
  leased = 0;

  constructor(private readonly maxKinds = Number.POSITIVE_INFINITY) {}

  /** Counts `agent` `n` times (`n = -1`: it is gone). */
  record(agent: Agent, n: number): void {
    this.add(agent.kind, agent.health, agent.ttlSeconds > 0, n);
  }

  /** Adds `n` agents of `kind` with `health` (`leased`: holding a lease). */
  add(kind: string, health: Health, leased: boolean, n: number): void {
    let slots = this.kinds.get(kind);
    if (slots === undefined && kind !== OTHER_KINDS_LABEL && this.kinds.size >= this.maxKinds) {
      kind = OTHER_KINDS_LABEL;
      slots = this.kinds.get(kind);
    }
    if (slots === undefined) {
      slots = HEALTH_VALUES.map(() => 0);
      this.kinds.set(kind, slots);
    }
    slots[HEALTH_SLOT[health]] = (slots[HEALTH_SLOT[health]] ?? 0) + n;
    if (leased) this.leased += n;
  }

  /** Adds every count of `other` to this tally. */
  addAll(other: AgentTally): void {
    for (const [kind, slots] of other.kinds) {
      slots.forEach((n, i) => {
        if (n !== 0) this.add(kind, HEALTH_VALUES[i] as Health, false, n);
      });
    }
    this.leased += other.leased;
  }

  /** Whether nothing was tallied. */
  get empty(): boolean {
    return this.kinds.size === 0 && this.leased === 0;
  }

  /** Every non-zero count, by kind then health. */
  *counts(): IterableIterator<AgentCount> {
    for (const [kind, slots] of this.kinds) {
      for (let i = 0; i < slots.length; i++) {
        const count = slots[i] ?? 0;
        if (count !== 0) yield { kind, health: HEALTH_VALUES[i] as Health, count };
      }
    }
  }

  /** All agents tallied. */
  get total(): number {
    let n = 0;
    for (const slots of this.kinds.values()) for (const c of slots) n += c;
    return n;
  }
}
