/**
 * `compareUtf8` must order strings exactly as LevelDB orders their keys: by the bytes
 * `Buffer.from(s, 'utf8')` makes of them (a lone surrogate becoming U+FFFD). The finds' joins and
 * the memory store's ranges rely on it agreeing with the disk.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareUtf8 } from '../../src/storage/staging.js';

/** The order LevelDB keeps the keys `a` and `b` in: -1, 0 or 1. */
function byteOrder(a: string, b: string): number {
  return Math.sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

/** Code units where UTF-16 and UTF-8 orders part: ASCII, the last BMP units below and above the surrogates, both kinds of surrogate. */
const EDGE_UNITS = [0x00, 0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xe000, 0xfffd, 0xffff];

/** Strings of arbitrary UTF-16 code units (lone and paired surrogates included), weighted to the edges. */
const units = fc.string({
  unit: fc.oneof(
    fc.constantFrom(...EDGE_UNITS.map((u) => String.fromCharCode(u))),
    fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)),
    fc.constantFrom('😀', '𝄞', 'a', 'z', '\x00'),
  ),
  maxLength: 8,
});

describe('compareUtf8', () => {
  it('orders any two strings as their UTF-8 bytes, also when they share a prefix', () => {
    fc.assert(
      fc.property(units, units, units, (prefix, x, y) => {
        const a = prefix + x;
        const b = prefix + y;
        expect(Math.sign(compareUtf8(a, b))).toBe(byteOrder(a, b));
        expect(Math.sign(compareUtf8(b, a))).toBe(byteOrder(b, a));
      }),
      { numRuns: 5_000 },
    );
  });

  it('puts a character above U+FFFF after U+E000..U+FFFF, as UTF-8 does and UTF-16 does not', () => {
    expect(compareUtf8('😀', '\uffff')).toBeGreaterThan(0);
    expect('😀' < '\uffff').toBe(true);
    expect(compareUtf8('a😀', 'a\ue000')).toBeGreaterThan(0);
  });

  it('reads a lone surrogate as U+FFFD, as the keys on disk hold it', () => {
    expect(compareUtf8('\ud800', '\ufffd')).toBe(0);
    expect(compareUtf8('x\udc00y', 'x\ufffdy')).toBe(0);
    expect(compareUtf8('\ud83d', '\ud83d\ude00')).toBeLessThan(0);
  });

  it('sorts a prefix first and equal strings as equal', () => {
    expect(compareUtf8('idx/cap/a', 'idx/cap/a\x00x')).toBeLessThan(0);
    expect(compareUtf8('agent-2', 'agent-10')).toBeGreaterThan(0);
    expect(compareUtf8('', '')).toBe(0);
    expect(compareUtf8('same', 'same')).toBe(0);
  });
});
