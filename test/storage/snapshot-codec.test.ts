/**
 * The snapshot payload codec: pairs survive any re-chunking of the encoded stream, and damaged
 * or cut streams fail with CorruptionError instead of yielding a wrong state.
 */
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  MAX_STATE_FRAME_BYTES,
  STATE_STREAM_MAGIC,
  STATE_STREAM_MAGIC_V1,
  STATE_STREAM_MAGIC_V2,
  StatePairDecoder,
  decodeStatePairs,
  encodeStatePairs,
  type StatePayloadFormat,
} from '../../src/storage/snapshot-codec.js';
import { Packr } from 'msgpackr';
import { CorruptionError } from '../../src/storage/types.js';

type Pair = [string, Uint8Array];

async function* iterate<T>(items: Iterable<T>): AsyncIterable<T> {
  for (const item of items) yield item;
}

async function toArray<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function encode(pairs: Pair[], chunkBytes: number): Promise<Uint8Array> {
  return Uint8Array.from(Buffer.concat(await toArray(encodeStatePairs(iterate(pairs), chunkBytes))));
}

/** Cuts `bytes` at the given fractions of its length. */
function rechunk(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.slice(prev, p)); // empty chunks included on purpose
    prev = p;
  }
  return out;
}

/** Plain copies, so that values compare equal whatever their class. */
const plain = (pairs: Pair[]): [string, number[]][] => pairs.map(([k, v]) => [k, [...v]]);

const arbPair: fc.Arbitrary<Pair> = fc.tuple(
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.oneof({ weight: 5, arbitrary: fc.uint8Array({ maxLength: 40 }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 500, maxLength: 3000 }) }),
);

describe('state pair codec', () => {
  it('round-trips any pairs through any chunk size and any re-chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbPair, { maxLength: 30 }),
        fc.integer({ min: 1, max: 600 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }),
        async (pairs, chunkBytes, cuts) => {
          const encoded = await encode(pairs, chunkBytes);
          const decoded = await toArray(decodeStatePairs(iterate(rechunk(encoded, cuts))));
          expect(plain(decoded)).toEqual(plain(pairs));
          for (const [, v] of decoded) expect(v).toBeInstanceOf(Uint8Array);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('round-trips empty input and one byte at a time', async () => {
    const empty = await encode([], 64);
    expect(await toArray(decodeStatePairs(iterate([empty])))).toEqual([]);
    expect(await toArray(decodeStatePairs(iterate([...empty].map((b) => Uint8Array.of(b)))))).toEqual([]);
    const pairs: Pair[] = [['k', Uint8Array.of(1, 2, 3)], ['', new Uint8Array(0)], ['\u{1F600}', Uint8Array.of(255)]];
    const encoded = await encode(pairs, 1);
    expect(plain(await toArray(decodeStatePairs(iterate([...encoded].map((b) => Uint8Array.of(b))))))).toEqual(plain(pairs));
  });

  it('groups pairs into frames of about chunkBytes, and gives a large value a frame of its own', async () => {
    // Incompressible values, so that compressed frame sizes still show the grouping.
    const noise = (n: number, seed: number) => {
      const out = new Uint8Array(n);
      let x = seed >>> 0 || 1;
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = x & 0xff;
      }
      return out;
    };
    const small = Array.from({ length: 200 }, (_, i): Pair => [`key/${String(i).padStart(4, '0')}`, noise(100, i + 1)]);
    const large: Pair = ['large', noise(3 * 1024 * 1024, 7)];
    const chunks = await toArray(encodeStatePairs(iterate([...small.slice(0, 100), large, ...small.slice(100)]), 4096));
    // magic, frames, end marker
    const frames = chunks.slice(1, -1);
    // At least the pairs' own bytes split into frames of at most chunkBytes, plus the large one.
    expect(frames.length).toBeGreaterThanOrEqual(1 + Math.ceil((200 * 108) / 4096));
    const oversized = frames.filter((f) => f.byteLength > 2 * 4096);
    expect(oversized).toHaveLength(1);
    expect(oversized[0]?.byteLength).toBeGreaterThan(large[1].byteLength);
    const decoded = await toArray(decodeStatePairs(iterate(rechunk(Buffer.concat(chunks), [0.1, 0.5, 0.50001, 0.9]))));
    expect(decoded).toHaveLength(201);
    expect(decoded[100]?.[0]).toBe('large');
    expect(Buffer.from(decoded[100]?.[1] as Uint8Array).equals(Buffer.from(large[1]))).toBe(true);
  });

  it('compresses frames: repetitive records take several times less room', async () => {
    const record = (i: number) => new TextEncoder().encode(JSON.stringify({ id: `agent-${i}`, name: `agent ${i}`, kind: 'mcp-server', version: '1.0.0', description: 'an agent with a description of a typical length', capabilities: ['search', 'npm'] }));
    const pairs = Array.from({ length: 2000 }, (_, i): Pair => [`agent/agent-${i}`, record(i)]);
    const raw = pairs.reduce((n, [k, v]) => n + k.length + v.byteLength, 0);
    const encoded = await encode(pairs, 64 * 1024);
    expect(encoded.byteLength * 3).toBeLessThan(raw);
    expect(await toArray(decodeStatePairs(iterate([encoded])))).toHaveLength(2000);
  });

  it('still reads streams of formats 1 and 2 (msgpack frames, not compressed and deflated)', async () => {
    const body = new Packr({ useRecords: false }).pack([['a', Uint8Array.of(1)], ['b', Uint8Array.of(2, 3)]]);
    const framed = (bytes: Uint8Array): Uint8Array => {
      const frame = new Uint8Array(4 + bytes.byteLength);
      new DataView(frame.buffer).setUint32(0, bytes.byteLength, false);
      frame.set(bytes, 4);
      return frame;
    };
    const end = new Uint8Array(8);
    new DataView(end.buffer).setUint32(4, 2, false);
    for (const [magic, frame] of [
      [STATE_STREAM_MAGIC_V1, framed(body)],
      [STATE_STREAM_MAGIC_V2, framed(deflateRawSync(body))],
    ] as const) {
      const decoded = await toArray(decodeStatePairs(iterate([magic, frame, end])));
      expect(decoded.map(([k, v]) => [k, [...v]])).toEqual([['a', [1]], ['b', [2, 3]]]);
    }
  });

  it('writes formats 1 and 2 as well, for a reader of an earlier version, with their own magic', async () => {
    const pairs: Pair[] = Array.from({ length: 300 }, (_, i) => [`agent/${i}`, Uint8Array.from(Buffer.from(`value ${i}`.repeat(i % 7)))]);
    for (const [format, magic] of [
      [1, STATE_STREAM_MAGIC_V1],
      [2, STATE_STREAM_MAGIC_V2],
      [3, STATE_STREAM_MAGIC],
    ] as const) {
      const encoded = Uint8Array.from(Buffer.concat(await toArray(encodeStatePairs(iterate(pairs), 512, format))));
      expect([...encoded.subarray(0, 4)], `format ${format}`).toEqual([...magic]);
      const decoder = new StatePairDecoder();
      const decoded = decoder.push(encoded);
      decoder.end();
      expect(decoder.format).toBe(format);
      expect(plain(decoded)).toEqual(plain(pairs));
    }
    await expect(toArray(encodeStatePairs(iterate(pairs), 512, 4 as StatePayloadFormat))).rejects.toThrow(RangeError);
  });

  it('decodes fed chunk by chunk, and refuses a stream that has not ended', () => {
    const decoder = new StatePairDecoder();
    expect(() => decoder.end()).toThrow(/no magic/);
    expect(decoder.push(STATE_STREAM_MAGIC.subarray(0, 2))).toEqual([]);
    expect(decoder.format).toBeUndefined();
    decoder.push(STATE_STREAM_MAGIC.subarray(2));
    expect(decoder.format).toBe(3);
    expect(() => decoder.end()).toThrow(/no end marker/);
    expect(() => new StatePairDecoder().push(Uint8Array.from([0x52, 0x53, 0x50, 0x39]))).toThrow(/bad magic/);
  });

  it('round-trips keys that are not ASCII, and keys longer than the ASCII path takes', async () => {
    const pairs: Pair[] = [
      ['agent/café-☕', Uint8Array.of(1)],
      ['agent/\u{1F600}', new Uint8Array(0)],
      [`agent/${'x'.repeat(300)}`, Uint8Array.of(2)],
      [`agent/${'y'.repeat(300)}é`, Uint8Array.of(3)],
      ['agent/plain', Uint8Array.of(4)],
    ];
    const decoded = await toArray(decodeStatePairs(iterate([await encode(pairs, 64)])));
    expect(decoded.map(([k, v]) => [k, [...v]])).toEqual(pairs.map(([k, v]) => [k, [...v]]));
  });

  it('fails a stream cut anywhere before its end with CorruptionError', async () => {
    const encoded = await encode([['a', Uint8Array.of(1)], ['b', Uint8Array.of(2)], ['c', Uint8Array.of(3)]], 8);
    for (let n = 0; n < encoded.length; n++) {
      await expect(toArray(decodeStatePairs(iterate([encoded.subarray(0, n)])))).rejects.toThrow(CorruptionError);
    }
  });

  it('fails bad magic, bytes after the end, a wrong count, an oversized or malformed frame', async () => {
    const good = await encode([['a', Uint8Array.of(1)]], 64);
    const decodeAll = (bytes: Uint8Array): Promise<Pair[]> => toArray(decodeStatePairs(iterate([bytes])));
    const badMagic = good.slice();
    badMagic[0] = (badMagic[0] as number) ^ 0xff;
    await expect(decodeAll(badMagic)).rejects.toThrow(/bad magic/);
    await expect(decodeAll(Buffer.concat([good, Uint8Array.of(0)]))).rejects.toThrow(/after its end/);
    const badCount = good.slice();
    badCount[badCount.length - 1] = (badCount[badCount.length - 1] as number) ^ 0x01;
    await expect(decodeAll(badCount)).rejects.toThrow(/says/);
    const magic = good.subarray(0, 4);
    const header = (n: number): Uint8Array => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    await expect(decodeAll(Buffer.concat([magic, header(MAX_STATE_FRAME_BYTES + 1)]))).rejects.toThrow(/over the limit/);
    const notPairs = Buffer.from([0x91, 0x92, 0x01, 0x02]); // msgpack [[1, 2]]
    await expect(decodeAll(Buffer.concat([magic, header(notPairs.length), notPairs]))).rejects.toThrow(CorruptionError);
    const garbage = Buffer.from([0xc1, 0xc1, 0xc1]); // not a deflate stream
    await expect(decodeAll(Buffer.concat([magic, header(garbage.length), garbage]))).rejects.toThrow(CorruptionError);
    // Pairs whose length prefixes run past the frame: a key, then a value, then a prefix cut short.
    for (const laid of [[0, 0, 0, 9, 0x61], [0, 0, 0, 1, 0x61, 0, 0, 0, 5, 1], [0, 0, 0, 1, 0x61, 0, 0]]) {
      const body = deflateRawSync(Uint8Array.from(laid));
      await expect(decodeAll(Buffer.concat([magic, header(body.length), body]))).rejects.toThrow(/malformed pair/);
    }
  });

  it('rejects a bad chunk size', async () => {
    await expect(toArray(encodeStatePairs(iterate([]), 0))).rejects.toThrow(RangeError);
  });
});

describe('state pair decoder on bytes from a peer', () => {
  /** Feeds `bytes` to a decoder in chunks cut at `cuts`; returns what it threw, or undefined when the stream decoded whole. */
  function feed(bytes: Uint8Array, cuts: readonly number[]): unknown {
    const decoder = new StatePairDecoder();
    try {
      let at = 0;
      for (const cut of [...cuts.map((c) => Math.floor(c * bytes.byteLength)), bytes.byteLength].sort((a, b) => a - b)) {
        decoder.push(bytes.subarray(at, cut));
        at = cut;
      }
      decoder.end();
      return undefined;
    } catch (err) {
      return err;
    }
  }

  it('throws nothing but CorruptionError on any damage to a valid stream of any format, however it is chunked', async () => {
    const pairs: Pair[] = Array.from({ length: 40 }, (_, i) => [`agent/${i}`, Uint8Array.from(Buffer.from(`record ${i} `.repeat(1 + (i % 5))))]);
    const streams = await Promise.all(([1, 2, 3] as const).map(async (f) => Uint8Array.from(Buffer.concat(await toArray(encodeStatePairs(iterate(pairs), 256, f))))));
    const damage = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), xor: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    );
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 2), fc.array(damage, { minLength: 1, maxLength: 3 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), (which, damages, cuts) => {
        let bytes = streams[which] as Uint8Array;
        for (const d of damages) {
          const at = Math.floor(d.at * bytes.byteLength);
          if (d.kind === 'flip') {
            bytes = Uint8Array.from(bytes);
            bytes[at] = (bytes[at] as number) ^ d.xor;
          } else if (d.kind === 'truncate') bytes = bytes.subarray(0, at);
          else bytes = Uint8Array.from(Buffer.concat([bytes.subarray(0, at), d.bytes, bytes.subarray(at)]));
        }
        const err = feed(bytes, cuts);
        if (err !== undefined) expect(err).toBeInstanceOf(CorruptionError);
      }),
      { numRuns: 500 },
    );
  });

  it('throws nothing but CorruptionError on arbitrary bytes after a valid magic', () => {
    fc.assert(
      fc.property(fc.constantFrom(STATE_STREAM_MAGIC, STATE_STREAM_MAGIC_V1, STATE_STREAM_MAGIC_V2), fc.uint8Array({ maxLength: 300 }), (magic, rest) => {
        const err = feed(Uint8Array.from(Buffer.concat([magic, rest])), []);
        if (err !== undefined) expect(err).toBeInstanceOf(CorruptionError);
      }),
      { numRuns: 500 },
    );
  });
});
