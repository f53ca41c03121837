/**
 * On-disk encoding of Raft log entries, the hard state, the log's compaction point and the live
 * state machine generation.
 *
 * A stored value is `crc32(payload)` as 4 bytes big-endian followed by the payload, the payload
 * being the msgpackr encoding of the record. Log keys are the entry index as 16 lower-case hex
 * digits, so that LevelDB's byte order is the numeric order (hashicorp/raft-boltdb gets the same
 * with 8-byte big-endian keys).
 *
 * Decoding checks the checksum and the shape and throws {@link CorruptionError} naming what was
 * read and where: a node must stop rather than serve a damaged log.
 */
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import type { Entry, EntryType, HardState, LogIndex, NodeId, Term } from '../raft/types.js';
import { CorruptionError } from './types.js';

/** Bytes of the CRC32 that prefixes every stored value. */
export const CRC_BYTES = 4;

/** Hex digits of a log key; 16 hex digits cover every safe integer index. */
export const LOG_KEY_HEX_DIGITS = 16;

/** The msgpackr codec of all stored values: plain maps, no shared record structures. */
const packr = new Packr({ useRecords: false });

/**
 * Encodes a log index as its storage key: 16 lower-case hex digits, zero-padded.
 * Throws `RangeError` when `index` is not a non-negative safe integer.
 */
export function encodeLogKey(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new RangeError(`log index must be a non-negative safe integer, got ${String(index)}`);
  }
  return index.toString(16).padStart(LOG_KEY_HEX_DIGITS, '0');
}

/**
 * Decodes a storage key written by {@link encodeLogKey}. Throws {@link CorruptionError} naming
 * `where` (the data directory) when the key is not 16 hex digits.
 */
export function decodeLogKey(key: string, where: string): LogIndex {
  if (key.length !== LOG_KEY_HEX_DIGITS || !/^[0-9a-f]+$/.test(key)) {
    throw new CorruptionError(`malformed log key ${JSON.stringify(key)} in ${where}`);
  }
  return Number.parseInt(key, 16) as LogIndex;
}

/** Prefixes `payload` with its CRC32 (4 bytes, big-endian). */
function seal(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(CRC_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, crc32(payload) >>> 0, false);
  out.set(payload, CRC_BYTES);
  return out;
}

/**
 * Checks the CRC32 prefix of `value` and returns the payload after it. Throws
 * {@link CorruptionError} with `what` (e.g. `log entry 7`) and `where` in the message.
 */
function unseal(value: Uint8Array, what: string, where: string): Uint8Array {
  if (value.length < CRC_BYTES) {
    throw new CorruptionError(`${what} in ${where} is truncated (${value.length} bytes)`);
  }
  const stored = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0, false);
  const payload = value.subarray(CRC_BYTES);
  const actual = crc32(payload) >>> 0;
  if (stored !== actual) {
    throw new CorruptionError(
      `${what} in ${where} fails its checksum (stored crc32 ${stored.toString(16)}, computed ${actual.toString(16)})`,
    );
  }
  return payload;
}

/** msgpackr-decodes `payload`; any failure becomes a {@link CorruptionError}. */
function unpackOrThrow(payload: Uint8Array, what: string, where: string): unknown {
  try {
    return packr.unpack(payload);
  } catch (err) {
    throw new CorruptionError(`${what} in ${where} does not decode: ${(err as Error).message}`);
  }
}

/** Copies a byte view into a plain `Uint8Array` (msgpackr yields Node `Buffer`s). */
function toPlainBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isNonNegativeInteger(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Encodes a log entry as `crc32 ‖ msgpack({term, index, type, data})`. */
export function encodeEntry(entry: Entry): Uint8Array {
  return seal(packr.pack({ term: entry.term, index: entry.index, type: entry.type, data: entry.data }));
}

/**
 * Decodes a value written by {@link encodeEntry} and stored under `expectedIndex`.
 * Throws {@link CorruptionError} (naming the index and `where`) when the checksum fails, the
 * payload does not decode, a field has the wrong type, or the decoded index is not the key's.
 */
export function decodeEntry(value: Uint8Array, expectedIndex: number, where: string): Entry {
  const what = `log entry ${expectedIndex}`;
  const decoded = unpackOrThrow(unseal(value, what, where), what, where);
  if (!isRecord(decoded)) throw new CorruptionError(`${what} in ${where} is not a map`);
  const { term, index, type, data } = decoded;
  if (!isNonNegativeInteger(term)) throw new CorruptionError(`${what} in ${where} has a bad term`);
  if (index !== expectedIndex) {
    throw new CorruptionError(`${what} in ${where} holds index ${String(index)}`);
  }
  if (type !== 'normal' && type !== 'config') {
    throw new CorruptionError(`${what} in ${where} has a bad type ${JSON.stringify(type)}`);
  }
  if (!(data instanceof Uint8Array)) throw new CorruptionError(`${what} in ${where} has no data bytes`);
  return { term: term as Term, index: index as LogIndex, type: type as EntryType, data: toPlainBytes(data) };
}

/** Encodes the hard state as `crc32 ‖ msgpack({currentTerm, votedFor, commitIndex})`. */
export function encodeHardState(hs: HardState): Uint8Array {
  return seal(packr.pack({ currentTerm: hs.currentTerm, votedFor: hs.votedFor, commitIndex: hs.commitIndex }));
}

/**
 * Decodes a value written by {@link encodeHardState}. Throws {@link CorruptionError} naming
 * `where` when the checksum fails or a field is missing or of the wrong type.
 */
export function decodeHardState(value: Uint8Array, where: string): HardState {
  const what = 'hard state';
  const decoded = unpackOrThrow(unseal(value, what, where), what, where);
  if (!isRecord(decoded)) throw new CorruptionError(`${what} in ${where} is not a map`);
  const { currentTerm, votedFor, commitIndex } = decoded;
  if (!isNonNegativeInteger(currentTerm)) throw new CorruptionError(`${what} in ${where} has a bad currentTerm`);
  if (typeof votedFor !== 'string') throw new CorruptionError(`${what} in ${where} has a bad votedFor`);
  if (!isNonNegativeInteger(commitIndex)) throw new CorruptionError(`${what} in ${where} has a bad commitIndex`);
  return { currentTerm: currentTerm as Term, votedFor: votedFor as NodeId, commitIndex: commitIndex as LogIndex };
}

/** Encodes the log's compaction point as `crc32 ‖ msgpack({index, term})`. */
export function encodeCompactionPoint(point: { index: LogIndex; term: Term }): Uint8Array {
  return seal(packr.pack({ index: point.index, term: point.term }));
}

/**
 * Decodes a value written by {@link encodeCompactionPoint}. Throws {@link CorruptionError}
 * naming `where` when the checksum fails or a field is missing or of the wrong type.
 */
export function decodeCompactionPoint(value: Uint8Array, where: string): { index: LogIndex; term: Term } {
  const what = 'compaction point';
  const decoded = unpackOrThrow(unseal(value, what, where), what, where);
  if (!isRecord(decoded)) throw new CorruptionError(`${what} in ${where} is not a map`);
  const { index, term } = decoded;
  if (!isNonNegativeInteger(index)) throw new CorruptionError(`${what} in ${where} has a bad index`);
  if (!isNonNegativeInteger(term)) throw new CorruptionError(`${what} in ${where} has a bad term`);
  return { index: index as LogIndex, term: term as Term };
}

/** Encodes the live state machine generation as `crc32 ‖ msgpack({generation})`. */
export function encodeGeneration(generation: number): Uint8Array {
  return seal(packr.pack({ generation }));
}

/**
 * Decodes a value written by {@link encodeGeneration}. Throws {@link CorruptionError} naming
 * `where` when the checksum fails or the generation is not a non-negative integer.
 */
export function decodeGeneration(value: Uint8Array, where: string): number {
  const what = 'state machine generation';
  const decoded = unpackOrThrow(unseal(value, what, where), what, where);
  if (!isRecord(decoded) || !isNonNegativeInteger(decoded.generation)) {
    throw new CorruptionError(`${what} in ${where} has a bad generation`);
  }
  return decoded.generation;
}
