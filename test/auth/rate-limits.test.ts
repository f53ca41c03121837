/**
 * Rate limits per principal and per remote address, per call class. No test waits for time to
 * pass: each uses a fresh RateLimits (fresh buckets) and checks counts and retryAfterMs values.
 */
import { describe, expect, it } from 'vitest';
import {
  CALL_CLASSES,
  DEFAULT_RATE_LIMIT_SETTINGS,
  MAX_RATE_LIMIT_KEY_CHARS,
  RateLimitSettingsError,
  RateLimits,
  parseRateLimitFlag,
  resolveRateLimitSettings,
  type CallClass,
  type RateLimitDecision,
} from '../../src/auth/rate-limits.js';

/** Consumes `n` calls and returns the decisions. */
async function consumeN(limits: RateLimits, n: number, kind: CallClass, principal: string | undefined, address: string | undefined): Promise<RateLimitDecision[]> {
  const out: RateLimitDecision[] = [];
  for (let i = 0; i < n; i++) out.push(await limits.consume(kind, principal, address));
  return out;
}
const allowedCount = (ds: RateLimitDecision[]): number => ds.filter((d) => d.allowed).length;

/**
 * A bucket of `burst` points whose window lasts an hour, so that no window ends while a test
 * runs, however slow the machine.
 */
const hourly = (burst: number) => ({ pointsPerSecond: burst / 3600, burstPoints: burst });

/** Generous buckets everywhere but where a test narrows them. */
const WIDE = { pointsPerSecond: 1_000_000, burstPoints: 1_000_000 };
const wide = { write: WIDE, heartbeat: WIDE, read: WIDE };

describe('defaults', () => {
  it('every class has a bucket per principal and a larger one per address', () => {
    for (const kind of CALL_CLASSES) {
      const p = DEFAULT_RATE_LIMIT_SETTINGS.principal[kind];
      const a = DEFAULT_RATE_LIMIT_SETTINGS.address[kind];
      expect(p.pointsPerSecond).toBeGreaterThan(0);
      expect(a.pointsPerSecond).toBeGreaterThan(p.pointsPerSecond);
      expect(a.burstPoints).toBeGreaterThan(p.burstPoints);
    }
  });

  it('heartbeats have more room than writes', () => {
    const p = DEFAULT_RATE_LIMIT_SETTINGS.principal;
    expect(p.heartbeat.pointsPerSecond).toBeGreaterThan(p.write.pointsPerSecond);
    expect(p.heartbeat.burstPoints).toBeGreaterThan(p.write.burstPoints);
  });

  it('overrides apply field by field; a rate without a burst gets a one-second burst', () => {
    const s = resolveRateLimitSettings({ principal: { write: { pointsPerSecond: 7.5 } }, address: { read: { burstPoints: 9 } } });
    expect(s.principal.write).toEqual({ pointsPerSecond: 7.5, burstPoints: 8 });
    expect(s.address.read).toEqual({ pointsPerSecond: DEFAULT_RATE_LIMIT_SETTINGS.address.read.pointsPerSecond, burstPoints: 9 });
    expect(s.principal.heartbeat).toEqual(DEFAULT_RATE_LIMIT_SETTINGS.principal.heartbeat);
  });

  it('invalid settings throw RateLimitSettingsError naming the bucket', () => {
    expect(() => new RateLimits({ principal: { write: { pointsPerSecond: -1 } } })).toThrow(RateLimitSettingsError);
    expect(() => new RateLimits({ principal: { write: { pointsPerSecond: Number.NaN } } })).toThrow(/write per principal/);
    expect(() => new RateLimits({ address: { read: { pointsPerSecond: 10, burstPoints: 0 } } })).toThrow(/read per address: burstPoints/);
    expect(() => new RateLimits({ address: { read: { pointsPerSecond: 10, burstPoints: 2.5 } } })).toThrow(RateLimitSettingsError);
    expect(() => new RateLimits({ address: { read: { pointsPerSecond: 0.00001, burstPoints: 10 } } })).toThrow(/at most 86400 s/);
  });
});

describe('RateLimits.consume', () => {
  it('the limit holds: burst calls allowed, the next refused with retryAfterMs > 0 within the window', async () => {
    const limits = new RateLimits({ principal: { ...wide, write: { pointsPerSecond: 0.01, burstPoints: 10 } }, address: wide });
    const ds = await consumeN(limits, 11, 'write', 'alice', '10.0.0.1');
    expect(ds.slice(0, 10).every((d) => d.allowed)).toBe(true);
    const refused = ds[10]!;
    expect(refused).toMatchObject({ allowed: false, limitedBy: 'principal', limit: 'write per principal: 0.01/s, burst 10' });
    if (!refused.allowed) {
      expect(Number.isInteger(refused.retryAfterMs)).toBe(true);
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(1_000_000); // the window is 10 / 0.01 s
    }
  });

  it('the buckets of one principal do not affect another', async () => {
    const limits = new RateLimits({ principal: { ...wide, read: hourly(3) }, address: wide });
    expect(allowedCount(await consumeN(limits, 5, 'read', 'alice', '10.0.0.1'))).toBe(3);
    expect(allowedCount(await consumeN(limits, 5, 'read', 'bob', '10.0.0.1'))).toBe(3);
  });

  it('the address bucket is shared by the principals behind one address', async () => {
    const limits = new RateLimits({ principal: wide, address: { ...wide, write: { pointsPerSecond: 0.004, burstPoints: 4 } } });
    expect(allowedCount(await consumeN(limits, 2, 'write', 'alice', '10.0.0.1'))).toBe(2);
    expect(allowedCount(await consumeN(limits, 2, 'write', 'bob', '10.0.0.1'))).toBe(2);
    const carol = await limits.consume('write', 'carol', '10.0.0.1');
    expect(carol).toMatchObject({ allowed: false, limitedBy: 'address', limit: 'write per address: 0.004/s, burst 4' });
    if (!carol.allowed) expect(carol.retryAfterMs).toBeGreaterThan(0);
    // Another address is untouched.
    expect(await limits.consume('write', 'carol', '10.0.0.2')).toEqual({ allowed: true });
  });

  it('a call the address refuses costs the principal nothing', async () => {
    const limits = new RateLimits({
      principal: { ...wide, write: hourly(3) },
      address: { ...wide, write: hourly(2) },
    });
    const fromA = await consumeN(limits, 4, 'write', 'alice', '10.0.0.1');
    expect(fromA.map((d) => (d.allowed ? 'ok' : d.limitedBy))).toEqual(['ok', 'ok', 'address', 'address']);
    // alice has spent 2 of her 3 points; from another address she gets exactly one more.
    const fromB = await consumeN(limits, 2, 'write', 'alice', '10.0.0.2');
    expect(fromB.map((d) => (d.allowed ? 'ok' : d.limitedBy))).toEqual(['ok', 'principal']);
  });

  it('heartbeats are not starved by a flood of writes and reads from the same principal and address', async () => {
    const narrow = hourly(5);
    const limits = new RateLimits({
      principal: { write: narrow, read: narrow, heartbeat: hourly(10) },
      address: { write: narrow, read: narrow, heartbeat: hourly(20) },
    });
    expect(allowedCount(await consumeN(limits, 200, 'write', 'agent-host', '10.0.0.1'))).toBe(5);
    expect(allowedCount(await consumeN(limits, 200, 'read', 'agent-host', '10.0.0.1'))).toBe(5);
    expect(allowedCount(await consumeN(limits, 10, 'heartbeat', 'agent-host', '10.0.0.1'))).toBe(10);
  });

  it('0 means unlimited, per bucket', async () => {
    const unlimitedPrincipal = new RateLimits({ principal: { ...wide, write: { pointsPerSecond: 0 } }, address: { ...wide, write: { pointsPerSecond: 0 } } });
    expect(allowedCount(await consumeN(unlimitedPrincipal, 2000, 'write', 'alice', '10.0.0.1'))).toBe(2000);

    // The principal unlimited, the address still limited.
    const addressOnly = new RateLimits({ principal: { ...wide, read: parseRateLimitFlag('0', '--rate-limit-read') }, address: { ...wide, read: hourly(2) } });
    const ds = await consumeN(addressOnly, 3, 'read', 'alice', '10.0.0.1');
    expect(ds.map((d) => (d.allowed ? 'ok' : d.limitedBy))).toEqual(['ok', 'ok', 'address']);
  });

  it('an anonymous caller (no principal) is limited by its address only; no address skips the address bucket', async () => {
    const limits = new RateLimits({ principal: { ...wide, read: hourly(1) }, address: { ...wide, read: hourly(3) } });
    expect(allowedCount(await consumeN(limits, 5, 'read', undefined, '10.0.0.9'))).toBe(3);
    const noAddress = await consumeN(limits, 3, 'read', 'alice', undefined);
    expect(noAddress.map((d) => (d.allowed ? 'ok' : d.limitedBy))).toEqual(['ok', 'principal', 'principal']);
  });

  it('a cost above one is charged, and clamped to the burst so that a batch is never refused forever', async () => {
    const limits = new RateLimits({ principal: { ...wide, write: hourly(10) }, address: wide });
    expect(await limits.consume('write', 'alice', undefined, 6)).toEqual({ allowed: true });
    expect(await limits.consume('write', 'alice', undefined, 6)).toMatchObject({ allowed: false, limitedBy: 'principal' });
    expect(await limits.consume('write', 'bob', undefined, 500)).toEqual({ allowed: true });
    expect(await limits.consume('write', 'bob', undefined, 1)).toMatchObject({ allowed: false });
  });

  it('long principals are distinct buckets even when they share a long prefix', async () => {
    const limits = new RateLimits({ principal: { ...wide, read: hourly(1) }, address: wide });
    const prefix = 'p'.repeat(MAX_RATE_LIMIT_KEY_CHARS + 10);
    expect(await limits.consume('read', `${prefix}-1`, undefined)).toEqual({ allowed: true });
    expect(await limits.consume('read', `${prefix}-2`, undefined)).toEqual({ allowed: true });
    expect(await limits.consume('read', `${prefix}-1`, undefined)).toMatchObject({ allowed: false });
  });

  it('a fresh instance starts with full buckets', async () => {
    const opts = { principal: { ...wide, write: hourly(1) }, address: wide };
    const first = new RateLimits(opts);
    expect(allowedCount(await consumeN(first, 2, 'write', 'alice', '10.0.0.1'))).toBe(1);
    expect(allowedCount(await consumeN(new RateLimits(opts), 2, 'write', 'alice', '10.0.0.1'))).toBe(1);
  });
});

describe('parseRateLimitFlag', () => {
  it('parses RATE/UNIT with an optional burst, and 0 for unlimited', () => {
    expect(parseRateLimitFlag('200/s', '--rate-limit-write')).toEqual({ pointsPerSecond: 200, burstPoints: 200 });
    expect(parseRateLimitFlag('200/s:burst=400', '--rate-limit-write')).toEqual({ pointsPerSecond: 200, burstPoints: 400 });
    expect(parseRateLimitFlag(' 30/m ', '--rate-limit-write')).toEqual({ pointsPerSecond: 0.5, burstPoints: 1 });
    expect(parseRateLimitFlag('7200/h:burst=10', '--rate-limit-write')).toEqual({ pointsPerSecond: 2, burstPoints: 10 });
    expect(parseRateLimitFlag('2.5/s', '--rate-limit-write')).toEqual({ pointsPerSecond: 2.5, burstPoints: 3 });
    expect(parseRateLimitFlag('0', '--rate-limit-write').pointsPerSecond).toBe(0);
    expect(parseRateLimitFlag('0/s', '--rate-limit-write').pointsPerSecond).toBe(0);
  });

  const bad: [string, RegExp][] = [
    ['', /is not a rate/],
    ['abc', /is not a rate/],
    ['200', /is not a rate/],
    ['200/x', /is not a rate/],
    ['-1/s', /is not a rate/],
    ['200/s:bust=4', /unknown suffix ":bust=4"/],
    ['200/s:burst=1.5', /unknown suffix/],
    ['200/s:burst=0', /out of range/],
    ['1/h:burst=100', /out of range .*86400 s/],
  ];
  for (const [value, problem] of bad) {
    it(`refuses ${JSON.stringify(value)} with an error naming the flag`, () => {
      try {
        parseRateLimitFlag(value, '--rate-limit-heartbeat');
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(RateLimitSettingsError);
        expect((e as RateLimitSettingsError).flag).toBe('--rate-limit-heartbeat');
        expect((e as Error).message).toMatch(/^--rate-limit-heartbeat /);
        expect((e as Error).message).toMatch(problem);
        expect((e as Error).message).toContain(`got ${JSON.stringify(value)}`);
      }
    });
  }
});
