/**
 * A small seeded pseudo-random generator (mulberry32), so that election timeouts are random
 * across nodes yet every run of the simulator replays exactly from its seed. Pure: the state
 * lives in the closure.
 */

/** Returns a generator of floats in [0, 1) determined entirely by the 32-bit `seed`. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
