/**
 * The payload of a snapshot (and of a backup): the state machine's key/value pairs, in frames.
 *
 * Stream format (integers big-endian):
 *
 * ```
 * "RSP3"                                  4 bytes, the magic (format 3; "RSP1" and "RSP2" are read too)
 * u32 length ‖ deflate(pair ‖ pair ‖ …)   one frame per group of pairs, 1 <= length <= MAX_STATE_FRAME_BYTES
 * …
 * u32 0 ‖ u32 pairCount                    the end: a zero length, then the number of pairs (mod 2^32)
 * pair = u32 keyBytes ‖ key (UTF-8) ‖ u32 valueBytes ‖ value
 * ```
 *
 * Frames are compressed (raw deflate, zlib level {@link FRAME_DEFLATE_LEVEL}): registry records
 * repeat their field names and are mostly text, so snapshots shrink several times at a small CPU
 * cost. Format 3 lays the pairs out with length prefixes; formats 1 and 2 held them as one msgpack
 * array per frame (format 1 not compressed), which cost more than half of a leader's time in
 * streaming a snapshot (msgpackr's `pack`, for pairs that are only strings and bytes). Both are
 * still decoded, so backups written before read back, and still written, for a peer of an
 * earlier version that reads no newer format (a leader sends each follower a format it
 * advertised, see `SnapshotManager.send`).
 *
 * A frame holds pairs until it reaches about `chunkBytes` (before compression); one pair larger
 * than that gets a frame of its own. The end marker makes a stream cut at a frame boundary
 * detectable (hashicorp/raft's FSM snapshots and etcd's snapshotter rely on the file's CRC for
 * that; the marker also covers a payload streamed between nodes).
 *
 * Decoding accepts any chunking of the stream (frames split across chunks, several frames in one
 * chunk) and throws {@link CorruptionError} on a bad magic, a malformed or oversized frame, a
 * wrong pair count, a missing end or bytes after it.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { Packr } from 'msgpackr';
import { CorruptionError } from './types.js';

/** The first bytes of every state pair stream written now: "RSP3" (deflated, length-prefixed pairs). */
export const STATE_STREAM_MAGIC = Uint8Array.from([0x52, 0x53, 0x50, 0x33]);
/** The magic of format 2 (deflated msgpack frames): still read. */
export const STATE_STREAM_MAGIC_V2 = Uint8Array.from([0x52, 0x53, 0x50, 0x32]);
/** The magic of format 1 (msgpack frames, not compressed): still read. */
export const STATE_STREAM_MAGIC_V1 = Uint8Array.from([0x52, 0x53, 0x50, 0x31]);
/**
 * A payload format, by the digit of its magic: 3 (length-prefixed pairs, deflated), 2 (msgpack
 * frames, deflated), 1 (msgpack frames).
 */
export type StatePayloadFormat = 1 | 2 | 3;
/** The format written unless a reader needs another: the newest. */
export const STATE_PAYLOAD_FORMAT: StatePayloadFormat = 3;
/** Every format this version reads (and writes), oldest first. */
export const STATE_PAYLOAD_FORMATS: readonly StatePayloadFormat[] = [1, 2, 3];
/** zlib level of frame compression: 1, fast; snapshots are written while the node serves. */
export const FRAME_DEFLATE_LEVEL = 1;
/** Bytes of a frame's length prefix (u32, big-endian). */
export const FRAME_LENGTH_BYTES = 4;
/** Bytes of the pair count after the end marker (u32, big-endian). */
export const PAIR_COUNT_BYTES = 4;
/**
 * Largest frame accepted or produced, in bytes (without its length prefix): bounds what a
 * damaged length prefix can make the decoder buffer. A single pair larger than this cannot be
 * encoded.
 */
export const MAX_STATE_FRAME_BYTES = 128 * 1024 * 1024;
/** Bytes of each length prefix of a pair (u32, big-endian): one before the key, one before the value. */
const PAIR_LENGTH_BYTES = 4;
/** Bytes a pair takes in a frame besides its key and value: its two length prefixes. */
const PAIR_OVERHEAD_BYTES = 2 * PAIR_LENGTH_BYTES;
/** Pair counts are carried modulo 2^32. */
const PAIR_COUNT_MODULUS = 2 ** 32;

/** Formats 1 and 2: values come back as `bin` (Node `Buffer`s), plain maps, no shared record structures. */
const packr = new Packr({ useRecords: false });

/** The magic of each format. */
const MAGIC_OF: Readonly<Record<StatePayloadFormat, Uint8Array>> = { 1: STATE_STREAM_MAGIC_V1, 2: STATE_STREAM_MAGIC_V2, 3: STATE_STREAM_MAGIC };

/** The format whose magic `bytes` (4 bytes) is, or undefined. */
function formatOfMagic(bytes: Uint8Array): StatePayloadFormat | undefined {
  for (const f of STATE_PAYLOAD_FORMATS) if (MAGIC_OF[f].every((b, i) => b === bytes[i])) return f;
  return undefined;
}

/**
 * Encodes `pairs` as a state pair stream (see the module documentation) in `format` (default
 * {@link STATE_PAYLOAD_FORMAT}), yielding the magic, then one chunk per frame (about `chunkBytes`
 * each), then the end marker. Throws `RangeError` when `chunkBytes` is not a positive safe
 * integer, `format` is not one of {@link STATE_PAYLOAD_FORMATS} or one pair exceeds
 * {@link MAX_STATE_FRAME_BYTES}, `TypeError` on a pair that is not `[string, Uint8Array]`.
 */
export async function* encodeStatePairs(pairs: AsyncIterable<[string, Uint8Array]>, chunkBytes: number, format: StatePayloadFormat = STATE_PAYLOAD_FORMAT): AsyncIterable<Uint8Array> {
  yield* encodeStatePairBatches(singletons(pairs), chunkBytes, format);
}

/** Each pair of `pairs` as a batch of one. */
async function* singletons(pairs: AsyncIterable<[string, Uint8Array]>): AsyncIterable<readonly [string, Uint8Array][]> {
  for await (const pair of pairs) yield [pair];
}

/**
 * {@link encodeStatePairs} for pairs that come in batches (a view's `entryBatches()`): the same
 * stream, with one await per batch instead of one per pair. Same errors.
 */
export async function* encodeStatePairBatches(
  batches: AsyncIterable<readonly [string, Uint8Array][]>,
  chunkBytes: number,
  format: StatePayloadFormat = STATE_PAYLOAD_FORMAT,
): AsyncIterable<Uint8Array> {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) {
    throw new RangeError(`chunkBytes must be a positive integer, got ${String(chunkBytes)}`);
  }
  if (!STATE_PAYLOAD_FORMATS.includes(format)) throw new RangeError(`format must be one of ${STATE_PAYLOAD_FORMATS.join(', ')}, got ${String(format)}`);
  yield MAGIC_OF[format].slice();
  let frame: [string, Uint8Array][] = [];
  let frameBytes = 0;
  let count = 0;
  for await (const batch of batches) {
    for (const pair of batch) {
      const [key, value] = pair;
      if (typeof key !== 'string') throw new TypeError('pair key must be a string');
      if (!(value instanceof Uint8Array)) throw new TypeError(`value of ${JSON.stringify(key)} must be a Uint8Array`);
      const bytes = Buffer.byteLength(key, 'utf8') + value.byteLength + PAIR_OVERHEAD_BYTES;
      if (frame.length > 0 && frameBytes + bytes > chunkBytes) {
        yield encodeFrame(frame, frameBytes, format);
        frame = [];
        frameBytes = 0;
      }
      frame.push([key, value]);
      frameBytes += bytes;
      count++;
    }
  }
  if (frame.length > 0) yield encodeFrame(frame, frameBytes, format);
  const end = new Uint8Array(FRAME_LENGTH_BYTES + PAIR_COUNT_BYTES);
  new DataView(end.buffer).setUint32(FRAME_LENGTH_BYTES, count % PAIR_COUNT_MODULUS, false);
  yield end;
}

/**
 * Keys of at most this many characters take the ASCII path (the registry's keys are ASCII):
 * written byte by byte in JS and read back as one-byte strings (`latin1`, which ASCII is a part
 * of), which in a microbenchmark of 160,000 pairs halved the encoding time against Buffer's UTF-8
 * codec per key. Longer keys, and keys with other characters, take the UTF-8 codec.
 */
const SHORT_KEY_CHARS = 256;
/** The largest code unit that is one byte in UTF-8. */
const MAX_ASCII = 0x7f;

/** Writes `key` as UTF-8 at `at` (the buffer has room: its size came from `Buffer.byteLength`); returns its bytes. */
function writeKey(buf: Buffer, key: string, at: number): number {
  const n = key.length;
  if (n <= SHORT_KEY_CHARS) {
    let i = 0;
    for (; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c > MAX_ASCII) break;
      buf[at + i] = c;
    }
    if (i === n) return n;
  }
  return buf.write(key, at, 'utf8');
}

/** The UTF-8 key in `buf[from, to)`. */
function readKey(buf: Buffer, from: number, to: number): string {
  if (to - from <= SHORT_KEY_CHARS) {
    let ascii = true;
    for (let i = from; i < to; i++) {
      if ((buf[i] as number) > MAX_ASCII) {
        ascii = false;
        break;
      }
    }
    if (ascii) return buf.toString('latin1', from, to);
  }
  return buf.toString('utf8', from, to);
}

/**
 * One frame in a buffer of its own, `u32 length ‖ body`: the body is `deflate(pair ‖ …)` in
 * format 3, the pairs as one msgpack array in format 1, deflated in format 2. `bytes` is the
 * pairs' laid-out size (format 3's, an estimate of the others').
 */
function encodeFrame(pairs: [string, Uint8Array][], bytes: number, format: StatePayloadFormat): Uint8Array {
  if (bytes > MAX_STATE_FRAME_BYTES) {
    throw new RangeError(`a state pair of ${bytes} bytes exceeds the frame limit of ${MAX_STATE_FRAME_BYTES} bytes`);
  }
  if (format === 3) return framed(deflateRawSync(layPairs(pairs, bytes), { level: FRAME_DEFLATE_LEVEL }));
  const packed = packr.pack(pairs);
  return framed(format === 2 ? deflateRawSync(packed, { level: FRAME_DEFLATE_LEVEL }) : packed);
}

/** Format 3's frame body before compression: `u32 keyBytes ‖ key ‖ u32 valueBytes ‖ value`, pair after pair. */
function layPairs(pairs: [string, Uint8Array][], bytes: number): Buffer {
  const laid = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const [key, value] of pairs) {
    const keyAt = at + PAIR_LENGTH_BYTES;
    const keyBytes = writeKey(laid, key, keyAt);
    laid.writeUInt32BE(keyBytes, at);
    at = keyAt + keyBytes;
    laid.writeUInt32BE(value.byteLength, at);
    at += PAIR_LENGTH_BYTES;
    laid.set(value, at);
    at += value.byteLength;
  }
  return laid.subarray(0, at);
}

/** `u32 length ‖ body`. Throws `RangeError` when the body exceeds {@link MAX_STATE_FRAME_BYTES}. */
function framed(body: Uint8Array): Uint8Array {
  if (body.byteLength > MAX_STATE_FRAME_BYTES) {
    throw new RangeError(`a state pair of ${body.byteLength} bytes exceeds the frame limit of ${MAX_STATE_FRAME_BYTES} bytes`);
  }
  const out = new Uint8Array(FRAME_LENGTH_BYTES + body.byteLength);
  new DataView(out.buffer).setUint32(0, body.byteLength, false);
  out.set(body, FRAME_LENGTH_BYTES);
  return out;
}

/** A FIFO of byte chunks from which exact lengths are taken without copying more than needed. */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  /** Bytes buffered. */
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.byteLength;
  }

  /** Removes and returns the next `n` bytes (`n <= length`). */
  take(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first !== undefined && first.byteLength - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.head += n;
      this.length -= n;
      if (this.head === first.byteLength) {
        this.chunks.shift();
        this.head = 0;
      }
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0] as Uint8Array;
      const m = Math.min(n - filled, c.byteLength - this.head);
      out.set(c.subarray(this.head, this.head + m), filled);
      filled += m;
      this.head += m;
      if (this.head === c.byteLength) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.length -= n;
    return out;
  }
}

/** The big-endian u32 at `at` of `bytes` (the caller checked that four bytes are there). */
function readU32(bytes: Uint8Array, at = 0): number {
  return (((bytes[at] as number) << 24) | ((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number)) >>> 0;
}

/** Decodes one frame body into pairs; throws {@link CorruptionError} when it is malformed. */
function decodeFrame(body: Uint8Array, frameNumber: number, format: StatePayloadFormat): [string, Uint8Array][] {
  let inflated: Buffer;
  try {
    inflated = format === 1 ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : inflateRawSync(body, { maxOutputLength: MAX_STATE_FRAME_BYTES });
  } catch (err) {
    throw new CorruptionError(`state pair frame ${frameNumber} does not decode: ${(err as Error).message}`);
  }
  return format === 3 ? decodePairs(inflated, frameNumber) : decodeMsgpackPairs(inflated, frameNumber);
}

/** The length-prefixed pairs of a format 3 frame (values copied out of it). */
function decodePairs(laid: Buffer, frameNumber: number): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  const malformed = (): CorruptionError => new CorruptionError(`state pair frame ${frameNumber} holds a malformed pair`);
  let at = 0;
  while (at < laid.byteLength) {
    if (at + PAIR_LENGTH_BYTES > laid.byteLength) throw malformed();
    const keyAt = at + PAIR_LENGTH_BYTES;
    const keyEnd = keyAt + readU32(laid, at);
    if (keyEnd + PAIR_LENGTH_BYTES > laid.byteLength) throw malformed();
    const valueAt = keyEnd + PAIR_LENGTH_BYTES;
    const valueEnd = valueAt + readU32(laid, keyEnd);
    if (valueEnd > laid.byteLength) throw malformed();
    // The value is a copy of its own: the frame can be released.
    out.push([readKey(laid, keyAt, keyEnd), valueEnd === valueAt ? new Uint8Array(0) : new Uint8Array(laid.buffer.slice(laid.byteOffset + valueAt, laid.byteOffset + valueEnd))]);
    at = valueEnd;
  }
  return out;
}

/** The msgpack array of pairs of a format 1 or 2 frame (values copied out of it). */
function decodeMsgpackPairs(packed: Buffer, frameNumber: number): [string, Uint8Array][] {
  let decoded: unknown;
  try {
    decoded = packr.unpack(packed);
  } catch (err) {
    throw new CorruptionError(`state pair frame ${frameNumber} does not decode: ${(err as Error).message}`);
  }
  if (!Array.isArray(decoded)) throw new CorruptionError(`state pair frame ${frameNumber} is not an array`);
  const out: [string, Uint8Array][] = [];
  for (const pair of decoded as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new CorruptionError(`state pair frame ${frameNumber} holds a malformed pair`);
    const [key, value] = pair as [unknown, unknown];
    if (typeof key !== 'string' || !(value instanceof Uint8Array)) {
      throw new CorruptionError(`state pair frame ${frameNumber} holds a pair that is not [string, bytes]`);
    }
    // A copy of its own: the frame (and the caller's chunk) can be released.
    out.push([key, Uint8Array.from(value)]);
  }
  return out;
}

/**
 * The decoder of a state pair stream, fed chunk by chunk: {@link decodeStatePairs} pulls through
 * one, and a node checks a snapshot payload with one as it arrives, before it believes it.
 */
export class StatePairDecoder {
  private readonly queue = new ByteQueue();
  /** The stream's format, once its magic is read. */
  private streamFormat: StatePayloadFormat | undefined;
  /** Length of the frame being read, `undefined` between frames. */
  private frameLength: number | undefined;
  private ended = false;
  private frames = 0;
  private count = 0;

  /** The format named by the stream's magic; undefined until the first four bytes are in. */
  get format(): StatePayloadFormat | undefined {
    return this.streamFormat;
  }

  /**
   * Takes the next chunk (of any size) and returns the pairs its frames completed, in order
   * (values are copies). Throws {@link CorruptionError} on a bad magic, a malformed or oversized
   * frame, a wrong pair count or bytes after the end; `TypeError` when `chunk` is not bytes.
   */
  push(chunk: Uint8Array): [string, Uint8Array][] {
    if (!(chunk instanceof Uint8Array)) throw new TypeError('chunks must be Uint8Arrays');
    const queue = this.queue;
    queue.push(chunk);
    const out: [string, Uint8Array][] = [];
    for (;;) {
      if (this.streamFormat === undefined) {
        if (queue.length < STATE_STREAM_MAGIC.length) break;
        this.streamFormat = formatOfMagic(queue.take(STATE_STREAM_MAGIC.length));
        if (this.streamFormat === undefined) throw new CorruptionError('not a state pair stream (bad magic)');
      } else if (this.ended) {
        if (queue.length > 0) throw new CorruptionError('state pair stream has bytes after its end');
        break;
      } else if (this.frameLength === undefined) {
        if (queue.length < FRAME_LENGTH_BYTES) break;
        this.frameLength = readU32(queue.take(FRAME_LENGTH_BYTES));
        if (this.frameLength > MAX_STATE_FRAME_BYTES) {
          throw new CorruptionError(`state pair frame ${this.frames} claims ${this.frameLength} bytes, over the limit of ${MAX_STATE_FRAME_BYTES}`);
        }
      } else if (this.frameLength === 0) {
        if (queue.length < PAIR_COUNT_BYTES) break;
        const expected = readU32(queue.take(PAIR_COUNT_BYTES));
        if (expected !== this.count % PAIR_COUNT_MODULUS) {
          throw new CorruptionError(`state pair stream ends after ${this.count} pairs but says ${expected}`);
        }
        this.ended = true;
      } else {
        if (queue.length < this.frameLength) break;
        const pairs = decodeFrame(queue.take(this.frameLength), this.frames, this.streamFormat);
        this.frames++;
        this.frameLength = undefined;
        this.count += pairs.length;
        for (const pair of pairs) out.push(pair);
      }
    }
    return out;
  }

  /** Checks that the stream is complete. Throws {@link CorruptionError} when it has no magic or no end marker. */
  end(): void {
    if (this.streamFormat === undefined) throw new CorruptionError('state pair stream is empty or truncated (no magic)');
    if (!this.ended) throw new CorruptionError(`state pair stream is truncated after ${this.count} pairs (no end marker)`);
  }
}

/**
 * Decodes a stream written by {@link encodeStatePairs}, cut into chunks of any sizes, yielding
 * the pairs in order (values are copies, plain `Uint8Array`s). Throws {@link CorruptionError} on
 * a bad magic, a malformed or oversized frame, a missing end marker, a wrong pair count or bytes
 * after the end; pairs before the damage may have been yielded already.
 */
export async function* decodeStatePairs(chunks: AsyncIterable<Uint8Array>): AsyncIterable<[string, Uint8Array]> {
  const decoder = new StatePairDecoder();
  for await (const chunk of chunks) {
    for (const pair of decoder.push(chunk)) yield pair;
  }
  decoder.end();
}
