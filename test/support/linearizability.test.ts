/**
 * The linearizability checker (Wing & Gong search with Lowe's memoization, per key): accepts
 * linearizable histories, rejects non-linearizable ones, reports the offending key, and gives
 * up with `ok: 'unknown'` when its search budget is exceeded.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkLinearizable, describeOperation, type CheckResult, type Operation } from './linearizability.js';

const reg = (key: string, value: string, call: number, ret: number, outcome: 'ok' | 'unknown' = 'ok'): Operation => ({
  kind: 'register',
  key,
  value,
  call,
  ret,
  outcome,
});
const dereg = (key: string, call: number, ret: number, deleted?: boolean, outcome: 'ok' | 'unknown' = 'ok'): Operation =>
  deleted === undefined
    ? { kind: 'deregister', key, call, ret, outcome }
    : { kind: 'deregister', key, call, ret, outcome, deleted };
const get = (key: string, found: string | null, call: number, ret: number): Operation => ({
  kind: 'get',
  key,
  call,
  ret,
  outcome: 'ok',
  found,
});

function expectViolation(result: CheckResult, key: string): Extract<CheckResult, { ok: false }> {
  expect(result.ok).toBe(false);
  if (result.ok !== false) throw new Error('unreachable');
  expect(result.key).toBe(key);
  return result;
}

describe('linearizable histories are accepted', () => {
  it('accepts the empty history', () => {
    expect(checkLinearizable([])).toEqual({ ok: true });
  });

  it('accepts a sequential history', () => {
    const h = [
      get('a', null, 0, 1),
      reg('a', 'A', 2, 3),
      get('a', 'A', 4, 5),
      reg('a', 'B', 6, 7),
      get('a', 'B', 8, 9),
      dereg('a', 10, 11, true),
      get('a', null, 12, 13),
      dereg('a', 14, 15, false),
    ];
    expect(checkLinearizable(h)).toEqual({ ok: true });
  });

  it('accepts a get concurrent with a register seeing either the old or the new value', () => {
    const base = [reg('a', 'A', 0, 1), reg('a', 'B', 2, 10)];
    expect(checkLinearizable([...base, get('a', 'A', 3, 5)])).toEqual({ ok: true });
    expect(checkLinearizable([...base, get('a', 'B', 3, 5)])).toEqual({ ok: true });
    // Two concurrent readers may disagree as long as the order is consistent.
    expect(checkLinearizable([...base, get('a', 'A', 3, 5), get('a', 'B', 4, 6)])).toEqual({ ok: true });
  });

  it('accepts concurrent registers observed in either order', () => {
    const writes = [reg('a', 'A', 0, 10), reg('a', 'B', 0, 10)];
    expect(checkLinearizable([...writes, get('a', 'A', 11, 12)])).toEqual({ ok: true });
    expect(checkLinearizable([...writes, get('a', 'B', 11, 12)])).toEqual({ ok: true });
  });

  it('accepts an unknown register that later reads observe (it took effect)', () => {
    const h = [reg('a', 'A', 0, 1), reg('a', 'B', 2, 3, 'unknown'), get('a', 'A', 4, 5), get('a', 'B', 100, 101)];
    expect(checkLinearizable(h)).toEqual({ ok: true });
  });

  it('accepts an unknown register that nobody observes (omitted)', () => {
    const h = [reg('a', 'B', 0, 1, 'unknown'), get('a', null, 2, 3), reg('a', 'A', 4, 5), get('a', 'A', 6, 7)];
    expect(checkLinearizable(h)).toEqual({ ok: true });
  });

  it('accepts an unknown deregister taking effect or not', () => {
    const h = [reg('a', 'A', 0, 1), dereg('a', 2, 3, undefined, 'unknown')];
    expect(checkLinearizable([...h, get('a', 'A', 4, 5)])).toEqual({ ok: true });
    expect(checkLinearizable([...h, get('a', null, 4, 5)])).toEqual({ ok: true });
  });

  it('accepts a deregister reporting deleted=true after a register', () => {
    expect(checkLinearizable([reg('a', 'A', 0, 1), dereg('a', 2, 3, true), get('a', null, 4, 5)])).toEqual({ ok: true });
  });

  it('accepts reads of null before any write', () => {
    expect(checkLinearizable([get('a', null, 0, 1), get('a', null, 2, 3), reg('a', 'A', 4, 5)])).toEqual({ ok: true });
  });

  it('treats an operation invoked at the instant another returns as concurrent', () => {
    expect(checkLinearizable([reg('a', 'A', 0, 5), get('a', null, 5, 6)])).toEqual({ ok: true });
  });

  it('accepts histories whose only operations are of unknown outcome', () => {
    expect(checkLinearizable([reg('a', 'A', 0, 1, 'unknown'), dereg('a', 2, 3, true, 'unknown')])).toEqual({ ok: true });
  });
});

describe('non-linearizable histories are rejected', () => {
  it('rejects a stale read of null after a completed register', () => {
    const r = expectViolation(checkLinearizable([reg('a', 'A', 0, 1), get('a', null, 2, 3)]), 'a');
    expect(r.reason).toContain('get "a" -> null');
  });

  it('rejects a stale read of an older value', () => {
    expectViolation(checkLinearizable([reg('a', 'A', 0, 1), reg('a', 'B', 2, 3), get('a', 'A', 4, 5)]), 'a');
  });

  it('rejects a read of a value never written', () => {
    const r = expectViolation(checkLinearizable([reg('a', 'A', 0, 1), get('a', 'Z', 2, 3)]), 'a');
    expect(r.reason).toContain('no register of "Z"');
  });

  it('rejects sequential reads seeing B then A when A was written before B', () => {
    const h = [reg('a', 'A', 0, 1), reg('a', 'B', 2, 10), get('a', 'B', 3, 4), get('a', 'A', 5, 6)];
    expectViolation(checkLinearizable(h), 'a');
  });

  it('rejects deregister deleted=false after a completed register', () => {
    expectViolation(checkLinearizable([reg('a', 'A', 0, 1), dereg('a', 2, 3, false)]), 'a');
  });

  it('rejects deregister deleted=true on a key never written', () => {
    expectViolation(checkLinearizable([dereg('a', 0, 1, true)]), 'a');
  });

  it('rejects a read of a value before its register was invoked', () => {
    const r = expectViolation(checkLinearizable([get('a', 'A', 0, 1), reg('a', 'A', 2, 3)]), 'a');
    expect(r.reason).toContain('invoked after this get returned');
  });

  it('rejects a read of an unknown register before its call', () => {
    expectViolation(checkLinearizable([get('a', 'B', 0, 1), reg('a', 'B', 2, 3, 'unknown')]), 'a');
  });

  it('rejects a value that reappears after an unknown register was observed to be overwritten', () => {
    // Unknown B may take effect once at most: after A overwrites it, B cannot be read again.
    const h = [
      reg('a', 'B', 0, 1, 'unknown'),
      get('a', 'B', 2, 3),
      reg('a', 'A', 4, 5),
      get('a', 'A', 6, 7),
      get('a', 'B', 8, 9),
    ];
    expectViolation(checkLinearizable(h), 'a');
  });

  it('reports the key sub-history sorted by call and a readable reason', () => {
    const h = [get('a', null, 4, 5), reg('a', 'A', 0, 1), reg('b', 'X', 0, 1)];
    const r = expectViolation(checkLinearizable(h), 'a');
    expect(r.history).toEqual([reg('a', 'A', 0, 1), get('a', null, 4, 5)]);
    expect(r.reason).toMatch(/longest linearizable prefix has 1 operation/);
    expect(r.reason).toContain('register "a" := "A" @[0, 1] ok');
  });
});

/** A conditional register: applies only if the key holds `expected` (null: absent). */
const cas = (key: string, value: string, expected: string | null, call: number, ret: number, outcome: 'ok' | 'unknown' | 'conflict' = 'ok'): Operation => ({
  kind: 'register',
  key,
  value,
  expected,
  call,
  ret,
  outcome,
});

describe('conditional writes (compare-and-set)', () => {
  it('accepts a CAS that applied when the key held the expected value, and one that conflicted when it did not', () => {
    const h = [reg('a', 'A', 0, 1), cas('a', 'B', 'A', 2, 3), cas('a', 'C', 'A', 4, 5, 'conflict'), get('a', 'B', 6, 7)];
    expect(checkLinearizable(h)).toEqual({ ok: true });
  });

  it('accepts create-only on an absent key, and a conflict once it exists', () => {
    expect(checkLinearizable([cas('a', 'A', null, 0, 1), cas('a', 'B', null, 2, 3, 'conflict'), get('a', 'A', 4, 5)])).toEqual({ ok: true });
  });

  it('accepts two concurrent CASes on the same value when exactly one applies', () => {
    const h = [reg('a', 'A', 0, 1), cas('a', 'B', 'A', 2, 10), cas('a', 'C', 'A', 3, 9, 'conflict'), get('a', 'B', 11, 12)];
    expect(checkLinearizable(h)).toEqual({ ok: true });
  });

  it('rejects two CASes on the same value that both applied (a lost update)', () => {
    const h = [reg('a', 'A', 0, 1), cas('a', 'B', 'A', 2, 10), cas('a', 'C', 'A', 3, 9)];
    expectViolation(checkLinearizable(h), 'a');
  });

  it('rejects a conflict reported while the key held the expected value', () => {
    expectViolation(checkLinearizable([reg('a', 'A', 0, 1), cas('a', 'B', 'A', 2, 3, 'conflict')]), 'a');
  });

  it('rejects a conditional deregister that applied although the key held another value', () => {
    const h: Operation[] = [reg('a', 'A', 0, 1), reg('a', 'B', 2, 3), { kind: 'deregister', key: 'a', expected: 'A', call: 4, ret: 5, outcome: 'ok' }];
    expectViolation(checkLinearizable(h), 'a');
  });

  it('lets a CAS of unknown outcome apply or not', () => {
    const base = [reg('a', 'A', 0, 1), cas('a', 'B', 'A', 2, 3, 'unknown')];
    expect(checkLinearizable([...base, get('a', 'B', 4, 5)])).toEqual({ ok: true });
    expect(checkLinearizable([...base, get('a', 'A', 4, 5)])).toEqual({ ok: true });
  });

  it('refuses a conflict outcome on an unconditional write', () => {
    expect(() => checkLinearizable([{ kind: 'register', key: 'a', value: 'A', call: 0, ret: 1, outcome: 'conflict' }])).toThrow(TypeError);
  });
});

describe('per-key independence', () => {
  it('names the bad key even when the other keys are fine', () => {
    const h = [
      reg('svc-1', 'A', 0, 1),
      reg('svc-2', 'A', 0, 1),
      reg('svc-3', 'A', 0, 1),
      get('svc-1', 'A', 2, 3),
      get('svc-2', null, 2, 3),
      get('svc-3', 'A', 2, 3),
    ];
    const r = expectViolation(checkLinearizable(h), 'svc-2');
    expect(r.history.every((op) => op.key === 'svc-2')).toBe(true);
  });

  it('does not let values of one key satisfy reads of another', () => {
    expectViolation(checkLinearizable([reg('x', 'A', 0, 1), get('y', 'A', 2, 3)]), 'y');
  });
});

describe('search budget', () => {
  // 12 fully concurrent registers, then a read of a value never written: the search must
  // explore every subset of registers before concluding.
  const concurrent: Operation[] = [
    ...Array.from({ length: 12 }, (_, i) => reg('hot', `v${i}`, 0, 100)),
    get('hot', 'never', 200, 201),
  ];

  it('returns unknown when maxStates is exceeded', () => {
    const r = checkLinearizable(concurrent, { maxStates: 50 });
    expect(r.ok).toBe('unknown');
    if (r.ok === 'unknown') {
      expect(r.key).toBe('hot');
      expect(r.reason).toContain('maxStates=50');
    }
  });

  it('reaches the verdict with the default budget', () => {
    expectViolation(checkLinearizable(concurrent), 'hot');
  });

  it('prefers a definite violation on another key over an unknown', () => {
    const h = [...concurrent, reg('cold', 'A', 0, 1), get('cold', null, 2, 3)];
    expectViolation(checkLinearizable(h, { maxStates: 50 }), 'cold');
  });

  it('rejects invalid options and operations', () => {
    expect(() => checkLinearizable([], { maxStates: 0 })).toThrow(RangeError);
    expect(() => checkLinearizable([reg('a', 'A', 5, 4)])).toThrow(RangeError);
    expect(() => checkLinearizable([get('a', null, Number.NaN, 1)])).toThrow(RangeError);
  });
});

describe('describeOperation', () => {
  it('renders one line per kind', () => {
    expect(describeOperation(reg('a', 'A', 1, 2))).toBe('register "a" := "A" @[1, 2] ok');
    expect(describeOperation({ ...reg('a', 'A', 1, 2, 'unknown'), clientId: 'c1' })).toBe(
      'register "a" := "A" @[1, +inf) unknown client=c1',
    );
    expect(describeOperation(dereg('a', 3, 4, true))).toBe('deregister "a" -> deleted=true @[3, 4] ok');
    expect(describeOperation(dereg('a', 3, 4))).toBe('deregister "a" @[3, 4] ok');
    expect(describeOperation(get('a', null, 5, 6))).toBe('get "a" -> null @[5, 6]');
    expect(describeOperation(get('a', 'A', 5, 6))).toBe('get "a" -> "A" @[5, 6]');
  });
});

describe('properties', () => {
  const KEYS = ['k0', 'k1', 'k2'];
  const VALUES = ['v0', 'v1', 'v2', 'v3'];

  type Step =
    | { kind: 'register'; key: number; value: number; unknown: boolean; effective: boolean }
    | { kind: 'deregister'; key: number; unknown: boolean; effective: boolean; observe: boolean }
    | { kind: 'get'; key: number };

  const stepArb: fc.Arbitrary<Step> = fc.oneof(
    fc.record({
      kind: fc.constant('register' as const),
      key: fc.nat(KEYS.length - 1),
      value: fc.nat(VALUES.length - 1),
      unknown: fc.boolean(),
      effective: fc.boolean(),
    }),
    fc.record({
      kind: fc.constant('deregister' as const),
      key: fc.nat(KEYS.length - 1),
      unknown: fc.boolean(),
      effective: fc.boolean(),
      observe: fc.boolean(),
    }),
    fc.record({ kind: fc.constant('get' as const), key: fc.nat(KEYS.length - 1) }),
    fc.record({ kind: fc.constant('get' as const), key: fc.nat(KEYS.length - 1) }),
  );

  /**
   * Runs the steps one at a time against a reference Map, each in its own interval with gaps
   * between them. Unknown-outcome writes take effect or not (`effective`); known ones always do.
   */
  function sequentialHistory(steps: Step[], gaps: number[], allowUnknown: boolean): Operation[] {
    const model = new Map<string, string>();
    const out: Operation[] = [];
    let t = 0;
    steps.forEach((s, i) => {
      const call = t + 1 + (gaps[i % gaps.length] ?? 0);
      const ret = call + 1 + (gaps[(i + 1) % gaps.length] ?? 0);
      t = ret;
      const key = KEYS[s.key]!;
      if (s.kind === 'register') {
        const unknown = allowUnknown && s.unknown;
        if (!unknown || s.effective) model.set(key, VALUES[s.value]!);
        out.push(reg(key, VALUES[s.value]!, call, ret, unknown ? 'unknown' : 'ok'));
      } else if (s.kind === 'deregister') {
        const unknown = allowUnknown && s.unknown;
        const existed = model.has(key);
        if (!unknown || s.effective) model.delete(key);
        out.push(dereg(key, call, ret, unknown || !s.observe ? undefined : existed, unknown ? 'unknown' : 'ok'));
      } else {
        out.push(get(key, model.get(key) ?? null, call, ret));
      }
    });
    return out;
  }

  /** Widens each interval by the given amounts (a linearizable history stays linearizable). */
  function widen(history: Operation[], widths: number[]): Operation[] {
    return history.map((op, i) => ({
      ...op,
      call: op.call - (widths[(2 * i) % widths.length] ?? 0),
      ret: op.ret + (widths[(2 * i + 1) % widths.length] ?? 0),
    }));
  }

  const gapsArb = fc.array(fc.nat(3), { minLength: 1, maxLength: 16 });
  const widthsArb = fc.array(fc.nat(12), { minLength: 1, maxLength: 16 });

  it('accepts random sequential executions, widened into concurrent ones, with unknown outcomes', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 60 }), gapsArb, widthsArb, (steps, gaps, widths) => {
        const seq = sequentialHistory(steps, gaps, true);
        expect(checkLinearizable(seq)).toEqual({ ok: true });
        expect(checkLinearizable(widen(seq, widths))).toEqual({ ok: true });
      }),
      { numRuns: 200 },
    );
  });

  it('never accepts a history where one get returns a value never written', () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { maxLength: 60 }),
        fc.nat(),
        gapsArb,
        widthsArb,
        fc.boolean(),
        (steps, pick, gaps, widths, widened) => {
          const seq = sequentialHistory(steps, gaps, true);
          const gets = seq.flatMap((op, i) => (op.kind === 'get' ? [i] : []));
          fc.pre(gets.length > 0);
          const victim = gets[pick % gets.length]!;
          const corrupted = seq.map((op, i) => (i === victim && op.kind === 'get' ? { ...op, found: 'never-written' } : op));
          const r = checkLinearizable(widened ? widen(corrupted, widths) : corrupted);
          expect(r.ok).toBe(false);
          if (r.ok === false) expect(r.key).toBe(seq[victim]!.key);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('never accepts a strictly sequential history with one observation changed', () => {
    // Without unknown outcomes and without overlap, the only candidate order is the real-time
    // order, so any altered get result or deleted flag must be rejected.
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 60 }), fc.nat(), fc.nat(VALUES.length), gapsArb, (steps, pick, alt, gaps) => {
        const seq = sequentialHistory(steps, gaps, false);
        const observed = seq.flatMap((op, i) =>
          op.kind === 'get' || (op.kind === 'deregister' && op.deleted !== undefined) ? [i] : [],
        );
        fc.pre(observed.length > 0);
        const victim = observed[pick % observed.length]!;
        const original = seq[victim]!;
        let changed: Operation;
        if (original.kind === 'get') {
          const candidates = [null, ...VALUES].filter((v) => v !== original.found);
          changed = { ...original, found: candidates[alt % candidates.length]! };
        } else if (original.kind === 'deregister') {
          changed = { ...original, deleted: !original.deleted };
        } else {
          throw new Error('unreachable');
        }
        const r = checkLinearizable(seq.map((op, i) => (i === victim ? changed : op)));
        expect(r.ok).toBe(false);
        if (r.ok === false) expect(r.key).toBe(original.key);
      }),
      { numRuns: 200 },
    );
  });

  it('checks a few hundred operations per key with modest concurrency quickly', () => {
    let seed = 12345;
    const rand = (m: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % m;
    };
    const steps: Step[] = Array.from({ length: 900 }, (): Step => {
      const roll = rand(10);
      const key = rand(KEYS.length);
      if (roll < 3) return { kind: 'register', key, value: rand(VALUES.length), unknown: rand(10) === 0, effective: rand(2) === 0 };
      if (roll < 4) return { kind: 'deregister', key, unknown: rand(10) === 0, effective: rand(2) === 0, observe: true };
      return { kind: 'get', key };
    });
    const h = widen(sequentialHistory(steps, [0, 1, 2], true), [0, 3, 5, 1, 4, 2]);
    const started = performance.now();
    expect(checkLinearizable(h)).toEqual({ ok: true });
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
