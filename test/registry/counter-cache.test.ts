/**
 * `CounterCache` keeps the durable values of recently touched counters for the state machine's
 * applies: at most its capacity, the least recently used dropped first. Checked against a model.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CounterCache } from '../../src/registry/counters.js';

describe('CounterCache', () => {
  it('holds at most its capacity, the least recently used dropped first', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4 }),
        // Few keys and long runs, so that reads reorder what later sets evict.
        fc.array(fc.tuple(fc.constantFrom('set', 'get'), fc.integer({ min: 0, max: 5 }), fc.nat({ max: 50 })), { minLength: 20, maxLength: 200 }),
        (capacity, ops) => {
          const cache = new CounterCache(capacity);
          /** The model: keys from least to most recently touched, with their values. */
          let order: [string, number][] = [];
          for (const [op, k, value] of ops) {
            const key = `c${k}`;
            if (op === 'set') {
              cache.set(key, value);
              order = order.filter(([x]) => x !== key);
              if (capacity > 0) order.push([key, value]);
              while (order.length > capacity) order.shift();
            } else {
              const hit = order.find(([x]) => x === key);
              expect(cache.get(key)).toBe(hit?.[1]);
              if (hit) order = [...order.filter(([x]) => x !== key), hit];
            }
            expect(cache.size).toBe(order.length);
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(() => new CounterCache(-1)).toThrow(RangeError);
    expect(() => new CounterCache(1.5)).toThrow(RangeError);
  });

  it('forgets everything on clear', () => {
    const cache = new CounterCache(4);
    cache.set('a', 1);
    cache.set('b', 0);
    expect(cache.get('b')).toBe(0);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.get('a')).toBeUndefined();
  });
});
