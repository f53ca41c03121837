/**
 * Rate limits of the client API: one bucket per (call class, principal) and one per (call class,
 * remote address), kept in memory by `rate-limiter-flexible` (`RateLimiterMemory`).
 *
 * Call classes ({@link CallClass}): `write` (register, deregister, import), `heartbeat` (lease
 * renewals) and `read` (get, find, search, list, watch opens). Each class has its own buckets,
 * so a flood of writes or reads from a client never uses up the points of its heartbeats.
 *
 * Bucket model. A bucket of `{ pointsPerSecond: R, burstPoints: B }` admits at most B calls per
 * window of B / R seconds, i.e. R calls per second on average and B at once. The window is
 * rate-limiter-flexible's fixed window that opens at a key's first call and closes B / R seconds
 * later (its "enhanced fixed window": windows of different keys do not align). Where this differs
 * from a refilling token bucket: once B calls are spent, the caller waits for the window's end
 * (`retryAfterMs`, at most B / R seconds) instead of getting one token every 1 / R seconds, and
 * just across a window boundary up to 2·B calls may pass within a short time.
 *
 * Memory is bounded by the traffic of one window: the memory store keeps one record (and one
 * unref'd timer that deletes it) per key that called in its current window, and forgets the key
 * when the window ends, so at most (distinct principals + distinct addresses seen in the last
 * B / R seconds) × classes records exist. Keys longer than {@link MAX_RATE_LIMIT_KEY_CHARS} are
 * replaced by their SHA-256, so one record is small whatever a caller sends.
 *
 * Limits are per node (each node counts the calls it receives); they are not replicated.
 */
import { createHash } from 'node:crypto';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';

/** The classes of calls that are limited separately. */
export type CallClass = 'write' | 'heartbeat' | 'read';
/** Every {@link CallClass}, in a fixed order. */
export const CALL_CLASSES: readonly CallClass[] = ['write', 'heartbeat', 'read'];

/** Whose bucket refused a call. */
export type RateLimitScope = 'principal' | 'address';

/**
 * One bucket's limit: on average `pointsPerSecond` calls per second (fractional allowed, e.g.
 * 0.5), at most `burstPoints` (an integer ≥ 1) at once. `pointsPerSecond: 0` means unlimited
 * (then `burstPoints` is ignored).
 */
export interface BucketSettings {
  readonly pointsPerSecond: number;
  readonly burstPoints: number;
}

/** The limits of every bucket: per principal and per remote address, for each call class. */
export interface RateLimitSettings {
  readonly principal: Readonly<Record<CallClass, BucketSettings>>;
  readonly address: Readonly<Record<CallClass, BucketSettings>>;
}

/**
 * Overrides of {@link DEFAULT_RATE_LIMIT_SETTINGS}, class by class and field by field (a
 * `Partial<RateLimitSettings>` is one). When only `pointsPerSecond` is given, `burstPoints`
 * becomes `ceil(pointsPerSecond)` (a window of about one second), not the default's burst.
 */
export interface RateLimitOverrides {
  readonly principal?: Partial<Record<CallClass, Partial<BucketSettings>>>;
  readonly address?: Partial<Record<CallClass, Partial<BucketSettings>>>;
}

/** Writes per second per principal (register, deregister, import): a 464-entry import takes about 10 s. */
export const DEFAULT_PRINCIPAL_WRITE_POINTS_PER_SECOND = 50;
/** Writes a principal may send at once. */
export const DEFAULT_PRINCIPAL_WRITE_BURST_POINTS = 100;
/** Heartbeats per second per principal: one process may renew the leases of many agents (1000 leases renewed every 5 s is 200/s). */
export const DEFAULT_PRINCIPAL_HEARTBEAT_POINTS_PER_SECOND = 200;
/** Heartbeats a principal may send at once (e.g. every lease renewed after a reconnect). */
export const DEFAULT_PRINCIPAL_HEARTBEAT_BURST_POINTS = 1000;
/** Reads per second per principal (get, find, search, list, watch opens). */
export const DEFAULT_PRINCIPAL_READ_POINTS_PER_SECOND = 200;
/** Reads a principal may send at once. */
export const DEFAULT_PRINCIPAL_READ_BURST_POINTS = 400;
/** Writes per second per remote address: larger than per principal, since principals may share an address (NAT, a gateway). */
export const DEFAULT_ADDRESS_WRITE_POINTS_PER_SECOND = 200;
/** Writes an address may send at once. */
export const DEFAULT_ADDRESS_WRITE_BURST_POINTS = 400;
/** Heartbeats per second per remote address. */
export const DEFAULT_ADDRESS_HEARTBEAT_POINTS_PER_SECOND = 1000;
/** Heartbeats an address may send at once. */
export const DEFAULT_ADDRESS_HEARTBEAT_BURST_POINTS = 4000;
/** Reads per second per remote address. */
export const DEFAULT_ADDRESS_READ_POINTS_PER_SECOND = 1000;
/** Reads an address may send at once. */
export const DEFAULT_ADDRESS_READ_BURST_POINTS = 2000;

/** The limits used where no override is given. */
export const DEFAULT_RATE_LIMIT_SETTINGS: RateLimitSettings = {
  principal: {
    write: { pointsPerSecond: DEFAULT_PRINCIPAL_WRITE_POINTS_PER_SECOND, burstPoints: DEFAULT_PRINCIPAL_WRITE_BURST_POINTS },
    heartbeat: { pointsPerSecond: DEFAULT_PRINCIPAL_HEARTBEAT_POINTS_PER_SECOND, burstPoints: DEFAULT_PRINCIPAL_HEARTBEAT_BURST_POINTS },
    read: { pointsPerSecond: DEFAULT_PRINCIPAL_READ_POINTS_PER_SECOND, burstPoints: DEFAULT_PRINCIPAL_READ_BURST_POINTS },
  },
  address: {
    write: { pointsPerSecond: DEFAULT_ADDRESS_WRITE_POINTS_PER_SECOND, burstPoints: DEFAULT_ADDRESS_WRITE_BURST_POINTS },
    heartbeat: { pointsPerSecond: DEFAULT_ADDRESS_HEARTBEAT_POINTS_PER_SECOND, burstPoints: DEFAULT_ADDRESS_HEARTBEAT_BURST_POINTS },
    read: { pointsPerSecond: DEFAULT_ADDRESS_READ_POINTS_PER_SECOND, burstPoints: DEFAULT_ADDRESS_READ_BURST_POINTS },
  },
};

/** Longest window a bucket may have (burstPoints / pointsPerSecond), in seconds: one day. */
export const MAX_RATE_LIMIT_WINDOW_SECONDS = 86_400;
/** Largest burst, in points. */
export const MAX_RATE_LIMIT_BURST_POINTS = 1_000_000;
/** Keys (principals, addresses) longer than this many characters are stored as their SHA-256. */
export const MAX_RATE_LIMIT_KEY_CHARS = 256;

/** The answer of {@link RateLimits.consume}. */
export type RateLimitDecision =
  | { allowed: true }
  | {
      allowed: false;
      /** Milliseconds until the refusing bucket's window ends (an integer ≥ 1, rounded up): the `Retry-After`. */
      retryAfterMs: number;
      /** Whose bucket refused: the caller's principal, or its remote address. */
      limitedBy: RateLimitScope;
      /** The refusing limit, human-readable, e.g. `write per principal: 50/s, burst 100`. */
      limit: string;
    };

/** Invalid rate-limit settings or flag values; `flag` names the flag when a flag was parsed. */
export class RateLimitSettingsError extends Error {
  override readonly name = 'RateLimitSettingsError';
  readonly flag: string | undefined;
  constructor(message: string, flag?: string) {
    super(message);
    this.flag = flag;
  }
}

/** `R/s, burst B` for messages. */
function describeBucket(b: BucketSettings): string {
  return b.pointsPerSecond === 0 ? 'unlimited' : `${+b.pointsPerSecond.toFixed(6)}/s, burst ${b.burstPoints}`;
}

/** Checks one bucket. @throws RateLimitSettingsError naming `where`. */
function checkBucket(b: BucketSettings, where: string): void {
  const { pointsPerSecond: rate, burstPoints: burst } = b;
  if (!Number.isFinite(rate) || rate < 0) throw new RateLimitSettingsError(`${where}: pointsPerSecond must be a finite number ≥ 0, got ${rate}`);
  if (rate === 0) return;
  if (!Number.isInteger(burst) || burst < 1 || burst > MAX_RATE_LIMIT_BURST_POINTS) {
    throw new RateLimitSettingsError(`${where}: burstPoints must be an integer from 1 to ${MAX_RATE_LIMIT_BURST_POINTS}, got ${burst}`);
  }
  if (burst / rate > MAX_RATE_LIMIT_WINDOW_SECONDS) {
    throw new RateLimitSettingsError(`${where}: burstPoints / pointsPerSecond must be at most ${MAX_RATE_LIMIT_WINDOW_SECONDS} s, got ${burst / rate} s`);
  }
}

/** The default burst for a rate: a window of about one second. */
function defaultBurst(pointsPerSecond: number): number {
  return Math.max(1, Math.ceil(pointsPerSecond));
}

/**
 * {@link DEFAULT_RATE_LIMIT_SETTINGS} with `overrides` applied (see {@link RateLimitOverrides}).
 * @throws RateLimitSettingsError when a resulting bucket is invalid (negative or non-finite rate,
 *   burst not an integer in [1, {@link MAX_RATE_LIMIT_BURST_POINTS}], window over {@link MAX_RATE_LIMIT_WINDOW_SECONDS}).
 */
export function resolveRateLimitSettings(overrides: RateLimitOverrides = {}): RateLimitSettings {
  const scope = (name: RateLimitScope): Record<CallClass, BucketSettings> => {
    const out = {} as Record<CallClass, BucketSettings>;
    for (const kind of CALL_CLASSES) {
      const base = DEFAULT_RATE_LIMIT_SETTINGS[name][kind];
      const o = overrides[name]?.[kind] ?? {};
      const pointsPerSecond = o.pointsPerSecond ?? base.pointsPerSecond;
      const burstPoints = o.burstPoints ?? (o.pointsPerSecond !== undefined ? defaultBurst(pointsPerSecond) : base.burstPoints);
      const bucket = { pointsPerSecond, burstPoints };
      checkBucket(bucket, `${kind} per ${name}`);
      out[kind] = bucket;
    }
    return out;
  };
  return { principal: scope('principal'), address: scope('address') };
}

/** Seconds per unit of a flag's rate. */
const RATE_UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600 };

/**
 * Parses a rate-limit flag value: `0` (unlimited), `RATE/UNIT` or `RATE/UNIT:burst=N`, with
 * RATE a non-negative decimal, UNIT `s`, `m` or `h`, N a positive integer. Examples: `200/s`
 * (200 per second, burst 200), `200/s:burst=400`, `30/m` (0.5 per second, burst 1), `0/s`.
 *
 * @param flagName the flag, for the message, e.g. `--rate-limit-write`
 * @throws RateLimitSettingsError whose message starts with `flagName` and whose `flag` is it
 */
export function parseRateLimitFlag(value: string, flagName: string): BucketSettings {
  const text = value.trim();
  const fail = (problem: string): never => {
    throw new RateLimitSettingsError(
      `${flagName} ${problem}; expected RATE/s, RATE/m or RATE/h with an optional :burst=N (e.g. 200/s:burst=400), or 0 for unlimited; got ${JSON.stringify(value)}`,
      flagName,
    );
  };
  if (text === '0') return { pointsPerSecond: 0, burstPoints: 0 };
  const m = /^(\d+(?:\.\d+)?)\/([smh])(?::(.*))?$/.exec(text);
  if (!m) return fail('is not a rate');
  const perUnit = Number(m[1]);
  const pointsPerSecond = perUnit / (RATE_UNIT_SECONDS[m[2] as string] as number);
  if (pointsPerSecond === 0) return { pointsPerSecond: 0, burstPoints: 0 };
  let burstPoints = defaultBurst(pointsPerSecond);
  if (m[3] !== undefined) {
    const b = /^burst=(\d+)$/.exec(m[3]);
    if (!b) return fail(`has an unknown suffix ${JSON.stringify(`:${m[3]}`)}`);
    burstPoints = Number(b[1]);
  }
  try {
    checkBucket({ pointsPerSecond, burstPoints }, flagName);
  } catch (e) {
    return fail(`is out of range (${e instanceof Error ? e.message.replace(`${flagName}: `, '') : String(e)})`);
  }
  return { pointsPerSecond, burstPoints };
}

/** One bucket: its settings, its limiter (absent when unlimited) and its description. */
interface Bucket {
  readonly settings: BucketSettings;
  readonly limiter: RateLimiterMemory | undefined;
  readonly limit: string;
}

/** The stored key of a principal or address: itself, or `sha256:<hex>` when it is long. */
function storeKey(key: string): string {
  return key.length <= MAX_RATE_LIMIT_KEY_CHARS ? key : `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

/**
 * The rate limits of one node. `consume` charges a call to its principal's and its address's
 * bucket of the call's class and says whether it may proceed. Buckets live in this instance's
 * memory only: a new instance starts with full buckets.
 */
export class RateLimits {
  /** The settings in force, defaults and overrides merged. */
  readonly settings: RateLimitSettings;
  private readonly buckets: Readonly<Record<RateLimitScope, Readonly<Record<CallClass, Bucket>>>>;

  /** @throws RateLimitSettingsError when an override is invalid (see {@link resolveRateLimitSettings}). */
  constructor(opts: RateLimitOverrides = {}) {
    this.settings = resolveRateLimitSettings(opts);
    const make = (scope: RateLimitScope): Record<CallClass, Bucket> => {
      const out = {} as Record<CallClass, Bucket>;
      for (const kind of CALL_CLASSES) {
        const settings = this.settings[scope][kind];
        const limiter =
          settings.pointsPerSecond === 0
            ? undefined
            : new RateLimiterMemory({ keyPrefix: `${scope}:${kind}`, points: settings.burstPoints, duration: settings.burstPoints / settings.pointsPerSecond });
        out[kind] = { settings, limiter, limit: `${kind} per ${scope}: ${describeBucket(settings)}` };
      }
      return out;
    };
    this.buckets = { principal: make('principal'), address: make('address') };
  }

  /**
   * Charges one call of class `kind` (or `cost` points, e.g. the entries of an import batch,
   * clamped to [1, the bucket's burst] so a batch is never refused forever) to the bucket of
   * `principal` and to the bucket of `address`.
   *
   * The principal's bucket is asked first; when it refuses, the address is not charged. When the
   * address refuses, the point taken from the principal is given back, so a refused call costs
   * the principal nothing. An `undefined` principal (an anonymous caller) or address skips that
   * bucket; a bucket set to 0 is unlimited.
   *
   * Resolves, never rejects on a refusal; a refusal says which bucket refused, its limit, and
   * `retryAfterMs` (rounded up, ≥ 1).
   */
  async consume(kind: CallClass, principal: string | undefined, address: string | undefined, cost = 1): Promise<RateLimitDecision> {
    const p = this.buckets.principal[kind];
    const a = this.buckets.address[kind];
    const pKey = principal === undefined || p.limiter === undefined ? undefined : storeKey(principal);
    const pPoints = clampCost(cost, p.settings);
    if (pKey !== undefined) {
      const refused = await take(p, pKey, pPoints);
      if (refused !== undefined) return { allowed: false, retryAfterMs: refused, limitedBy: 'principal', limit: p.limit };
    }
    if (address !== undefined && a.limiter !== undefined) {
      const refused = await take(a, storeKey(address), clampCost(cost, a.settings));
      if (refused !== undefined) {
        if (pKey !== undefined) await (p.limiter as RateLimiterMemory).reward(pKey, pPoints);
        return { allowed: false, retryAfterMs: refused, limitedBy: 'address', limit: a.limit };
      }
    }
    return { allowed: true };
  }
}

/** `cost` as a whole number of points in [1, burst]. */
function clampCost(cost: number, settings: BucketSettings): number {
  const whole = Number.isFinite(cost) ? Math.ceil(cost) : 1;
  return Math.min(Math.max(1, whole), Math.max(1, settings.burstPoints));
}

/** Consumes `points` of `key`; `undefined` when allowed, else the ms until the window ends (≥ 1). */
async function take(bucket: Bucket, key: string, points: number): Promise<number | undefined> {
  try {
    await (bucket.limiter as RateLimiterMemory).consume(key, points);
    return undefined;
  } catch (e) {
    // The memory store rejects with a RateLimiterRes on refusal; anything else is a bug, not a limit.
    if (e instanceof RateLimiterRes) return Math.max(1, Math.ceil(e.msBeforeNext));
    throw e;
  }
}
