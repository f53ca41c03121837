/**
 * The wire codec of peer messages: maps the `Message` union of `src/raft/types.ts` to the
 * protobuf messages of `proto/raft/v1/raft.proto` and back, encodes / decodes whole
 * `MessageBatch`es, and encodes / decodes / sequences the `SnapshotChunk`s of a chunked
 * InstallSnapshot transfer (§7, Figure 13).
 *
 * Inbound data is untrusted: {@link fromWire} checks every field (presence, type, enum value,
 * non-negative safe integers, consecutive entry indexes) and throws a {@link WireDecodeError}
 * naming the first bad field, so the transport can drop the message instead of handing the core
 * something it would have to distrust (DESIGN.md convention 9: invariants are checked where data
 * enters).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import * as protoLoader from '@grpc/proto-loader';
import type { Entry__Output } from '../gen/raft/v1/Entry.js';
import type { EntryType__Output } from '../gen/raft/v1/EntryType.js';
import type { Message__Output } from '../gen/raft/v1/Message.js';
import type { MessageBatch as MessageBatchIn } from '../gen/raft/v1/MessageBatch.js';
import type { Snapshot__Output } from '../gen/raft/v1/Snapshot.js';
import type { SnapshotAck as SnapshotAckIn, SnapshotAck__Output } from '../gen/raft/v1/SnapshotAck.js';
import type { SnapshotChunk as SnapshotChunkIn, SnapshotChunk__Output } from '../gen/raft/v1/SnapshotChunk.js';
import type { StreamAck as StreamAckIn } from '../gen/raft/v1/StreamAck.js';
import { PROTO_LOADER_OPTIONS } from '../util/proto-options.js';
import {
  assertNever,
  logIndex,
  MAX_WIRE_INDEX,
  nodeId,
  term,
  type ConfState,
  type Entry,
  type EntryType,
  type InstallSnapshot,
  type LogIndex,
  type Message,
  type MessageType,
  type NodeId,
  type Snapshot,
  type Term,
} from '../raft/types.js';

/** The proto file of the peer service, relative to the directory that contains `proto/`. */
export const RAFT_PROTO_RELATIVE_PATH = join('proto', 'raft', 'v1', 'raft.proto');
/** Fully qualified name of the peer service. */
export const RAFT_SERVICE_NAME = 'raft.v1.Raft';
/** gRPC path of the client-streaming method every node opens to each peer. */
export const RAFT_STREAM_METHOD_PATH = '/raft.v1.Raft/Stream';
/** gRPC path of the client-streaming method that carries one chunked snapshot transfer. */
export const RAFT_INSTALL_SNAPSHOT_METHOD_PATH = '/raft.v1.Raft/InstallSnapshot';
/** How many directories {@link resolveRaftProtoPath} climbs before giving up. */
const MAX_PROTO_SEARCH_DEPTH_DIRS = 8;

/**
 * Thrown by {@link fromWire}, {@link decodeWireBatch}, {@link decodeSnapshotChunk} and
 * {@link SnapshotChunkSequence} on malformed input. `field` is the dotted path of the offending
 * field (e.g. `append_entries.entries[2].type`), `'batch'` when the bytes are not a
 * `MessageBatch` at all, `'chunk'` when they are not a `SnapshotChunk`.
 */
export class WireDecodeError extends Error {
  override readonly name = 'WireDecodeError';
  constructor(
    /** Dotted path of the bad field. */
    readonly field: string,
    /** What is wrong with it. */
    readonly reason: string,
  ) {
    super(`malformed peer message: ${field}: ${reason}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes: derived from the types generated from raft.proto into `src/gen/raft/`
// (`npm run gen:proto`), never restated here.
// ---------------------------------------------------------------------------------------------

/**
 * What {@link toWire} and the encoders build from a generated `__Output` type: the same complete
 * object (every field present, uint64 as number, enums by name), with bytes as any `Uint8Array`
 * (the core's bytes are not Buffers) and nested messages never `null`. It is a subtype of the
 * generated permissive type the serializer takes (checked in {@link loadRaftProto}).
 */
export type Sent<T> = T extends Buffer
  ? Uint8Array
  : T extends readonly (infer E)[]
    ? Sent<E>[]
    : T extends object
      ? { [K in keyof T]: Sent<Exclude<T[K], null>> }
      : T;

/** Wire form of `EntryType` (`raft.v1.EntryType`) as sent: never `ENTRY_TYPE_UNSPECIFIED`. */
export type WireEntryType = Exclude<EntryType__Output, 'ENTRY_TYPE_UNSPECIFIED'>;

/** Wire form of an `Entry` (`raft.v1.Entry`). */
export type WireEntry = Sent<Entry__Output> & { type: WireEntryType };

/** Wire form of a `Snapshot` (`raft.v1.Snapshot`). */
export type WireSnapshot = Sent<Snapshot__Output>;

/** Names of the members of the `body` oneof of `raft.v1.Message`, one per {@link MessageType}. */
export type WireBodyField = NonNullable<Message__Output['body']>;

/** The body of a wire message: exactly one member of the `body` oneof, named by `body`. */
export type WireBody = { [F in WireBodyField]: { body: F } & { [K in F]: Sent<NonNullable<Message__Output[K]>> } }[WireBodyField];

/** Wire form of a `Message` (`raft.v1.Message`): the envelope plus exactly one body field. */
export type WireMessage = Sent<Pick<Message__Output, 'from' | 'to' | 'term'>> & WireBody;

/** The oneof member that carries each message type. */
export const WIRE_BODY_FIELD = {
  AppendEntries: 'append_entries',
  AppendEntriesResponse: 'append_entries_response',
  RequestVote: 'request_vote',
  RequestVoteResponse: 'request_vote_response',
  Heartbeat: 'heartbeat',
  HeartbeatResponse: 'heartbeat_response',
  InstallSnapshot: 'install_snapshot',
  TimeoutNow: 'timeout_now',
  ReadIndex: 'read_index',
  ReadIndexResponse: 'read_index_response',
} as const satisfies Readonly<Record<MessageType, WireBodyField>>;

/** Compile-time check: every member of the proto's `body` oneof carries some message type. */
const EVERY_BODY_FIELD_MAPPED: [Exclude<WireBodyField, (typeof WIRE_BODY_FIELD)[MessageType]>] extends [never] ? true : never = true;
void EVERY_BODY_FIELD_MAPPED;

const WIRE_BODY_FIELDS: readonly WireBodyField[] = Object.values(WIRE_BODY_FIELD);

// ---------------------------------------------------------------------------------------------
// Loading the proto.
// ---------------------------------------------------------------------------------------------

/**
 * Finds `proto/raft/v1/raft.proto` by walking up from `fromDir` (default: this module's
 * directory), so the same code works from `src/transport/` (tests) and `dist/src/transport/`
 * (the build). Throws `Error` naming the start directory when no ancestor holds the file.
 */
export function resolveRaftProtoPath(fromDir: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = fromDir;
  for (let depth = 0; depth <= MAX_PROTO_SEARCH_DEPTH_DIRS; depth++) {
    const candidate = join(dir, RAFT_PROTO_RELATIVE_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`cannot find ${RAFT_PROTO_RELATIVE_PATH} in ${fromDir} or any parent directory`);
}

/** The loaded peer proto: the service definition and the (de)serializers we use. */
export interface RaftProto {
  /** The `raft.v1.Raft` service as proto-loader defines it. */
  readonly service: protoLoader.ServiceDefinition;
  /** Encodes a `raft.v1.MessageBatch` object (throws on a value of the wrong shape). */
  readonly serializeBatch: protoLoader.Serialize<{ messages: WireMessage[] }>;
  /** Decodes `raft.v1.MessageBatch` bytes (throws on bytes that are not one). */
  readonly deserializeBatch: protoLoader.Deserialize<unknown>;
  /** Encodes a `raft.v1.StreamAck`. */
  readonly serializeAck: protoLoader.Serialize<Sent<StreamAckIn>>;
  /** Decodes a `raft.v1.StreamAck`. */
  readonly deserializeAck: protoLoader.Deserialize<unknown>;
  /** Encodes a `raft.v1.SnapshotChunk` object (throws on a value of the wrong shape). */
  readonly serializeSnapshotChunk: protoLoader.Serialize<WireSnapshotChunk>;
  /** Decodes `raft.v1.SnapshotChunk` bytes (throws on bytes that are not one). */
  readonly deserializeSnapshotChunk: protoLoader.Deserialize<unknown>;
  /** Encodes a `raft.v1.SnapshotAck`. */
  readonly serializeSnapshotAck: protoLoader.Serialize<WireSnapshotAck>;
  /** Decodes `raft.v1.SnapshotAck` bytes. */
  readonly deserializeSnapshotAck: protoLoader.Deserialize<unknown>;
}

let loaded: RaftProto | undefined;

/**
 * Loads `raft.proto` once (synchronously, on first use) with proto-loader and returns its
 * definitions. Throws `Error` when the file cannot be found or parsed.
 */
export function loadRaftProto(): RaftProto {
  if (loaded !== undefined) return loaded;
  const pkg = protoLoader.loadSync(resolveRaftProtoPath(), PROTO_LOADER_OPTIONS);
  const service = pkg[RAFT_SERVICE_NAME] as protoLoader.ServiceDefinition | undefined;
  const stream = service?.['Stream'];
  const install = service?.['InstallSnapshot'];
  if (service === undefined || stream === undefined || install === undefined) {
    throw new Error(`${RAFT_SERVICE_NAME}/Stream or /InstallSnapshot is missing from ${RAFT_PROTO_RELATIVE_PATH}`);
  }
  // The serializers take the generated permissive types; assigning them to the narrower fields of
  // RaftProto checks at compile time that what we send (WireMessage, ...) is such a value.
  const serializeBatch: protoLoader.Serialize<MessageBatchIn> = stream.requestSerialize;
  const serializeAck: protoLoader.Serialize<StreamAckIn> = stream.responseSerialize;
  const serializeSnapshotChunk: protoLoader.Serialize<SnapshotChunkIn> = install.requestSerialize;
  const serializeSnapshotAck: protoLoader.Serialize<SnapshotAckIn> = install.responseSerialize;
  loaded = {
    service,
    serializeBatch,
    deserializeBatch: stream.requestDeserialize as protoLoader.Deserialize<unknown>,
    serializeAck,
    deserializeAck: stream.responseDeserialize as protoLoader.Deserialize<unknown>,
    serializeSnapshotChunk,
    deserializeSnapshotChunk: install.requestDeserialize as protoLoader.Deserialize<unknown>,
    serializeSnapshotAck,
    deserializeSnapshotAck: install.responseDeserialize as protoLoader.Deserialize<unknown>,
  };
  return loaded;
}

// ---------------------------------------------------------------------------------------------
// Message -> wire.
// ---------------------------------------------------------------------------------------------

/** The wire name of each core entry type. */
const WIRE_ENTRY_TYPE: Readonly<Record<EntryType, WireEntryType>> = { normal: 'ENTRY_TYPE_NORMAL', config: 'ENTRY_TYPE_CONFIG' };
/** The core entry type of each wire name that may be received (UNSPECIFIED is malformed). */
const ENTRY_TYPE_OF_WIRE: ReadonlyMap<unknown, EntryType> = new Map(Object.entries(WIRE_ENTRY_TYPE).map(([core, wire]) => [wire, core as EntryType]));

function toWireEntry(e: Entry): WireEntry {
  return { term: e.term, index: e.index, type: WIRE_ENTRY_TYPE[e.type], data: e.data };
}

function toWireSnapshot(s: Snapshot): WireSnapshot {
  return {
    metadata: {
      index: s.metadata.index,
      term: s.metadata.term,
      conf_state: { voters: [...s.metadata.confState.voters], learners: [...s.metadata.confState.learners] },
    },
    data: s.data,
  };
}

/**
 * Maps a core {@link Message} to its wire object (`raft.v1.Message`), ready for proto-loader's
 * serializer. Byte fields are passed through without copying. Does not validate: messages come
 * from our own core.
 */
export function toWire(msg: Message): WireMessage {
  const head = { from: msg.from, to: msg.to, term: msg.term };
  switch (msg.type) {
    case 'AppendEntries':
      return {
        ...head,
        body: 'append_entries',
        append_entries: {
          prev_log_index: msg.prevLogIndex,
          prev_log_term: msg.prevLogTerm,
          entries: msg.entries.map(toWireEntry),
          leader_commit: msg.leaderCommit,
        },
      };
    case 'AppendEntriesResponse':
      return {
        ...head,
        body: 'append_entries_response',
        append_entries_response: {
          success: msg.success,
          match_index: msg.matchIndex,
          conflict_index: msg.conflictIndex,
          conflict_term: msg.conflictTerm,
        },
      };
    case 'RequestVote':
      return {
        ...head,
        body: 'request_vote',
        request_vote: {
          last_log_index: msg.lastLogIndex,
          last_log_term: msg.lastLogTerm,
          pre_vote: msg.preVote,
          transfer: msg.transfer,
        },
      };
    case 'RequestVoteResponse':
      return {
        ...head,
        body: 'request_vote_response',
        request_vote_response: { vote_granted: msg.voteGranted, pre_vote: msg.preVote },
      };
    case 'Heartbeat':
      return {
        ...head,
        body: 'heartbeat',
        heartbeat: { leader_commit: msg.leaderCommit, context: msg.context },
      };
    case 'HeartbeatResponse':
      return { ...head, body: 'heartbeat_response', heartbeat_response: { context: msg.context } };
    case 'InstallSnapshot':
      return { ...head, body: 'install_snapshot', install_snapshot: { snapshot: toWireSnapshot(msg.snapshot) } };
    case 'TimeoutNow':
      return { ...head, body: 'timeout_now', timeout_now: {} };
    case 'ReadIndex':
      return { ...head, body: 'read_index', read_index: { context: msg.context } };
    case 'ReadIndexResponse':
      return {
        ...head,
        body: 'read_index_response',
        read_index_response: { context: msg.context, index: msg.index, success: msg.success },
      };
    default:
      return assertNever(msg);
  }
}

// ---------------------------------------------------------------------------------------------
// Wire -> Message, validating.
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  return typeof v;
}

function objectAt(v: unknown, field: string): Obj {
  if (!isObject(v)) throw new WireDecodeError(field, v === undefined ? 'missing' : `expected a message, got ${describeValue(v)}`);
  return v;
}

function natAt(o: Obj, key: string, path: string): number {
  const v = o[key];
  const field = `${path}${key}`;
  if (typeof v !== 'number') {
    throw new WireDecodeError(field, v === undefined ? 'missing' : `expected a number, got ${describeValue(v)}`);
  }
  if (!Number.isInteger(v)) throw new WireDecodeError(field, `expected an integer, got ${v}`);
  if (v < 0) throw new WireDecodeError(field, `must not be negative, got ${v}`);
  if (!Number.isSafeInteger(v)) throw new WireDecodeError(field, `exceeds 2^53 - 1, got ${v}`);
  return v;
}

const termAt = (o: Obj, key: string, path: string): Term => term(natAt(o, key, path));
/** A log index, at most {@link MAX_WIRE_INDEX}: no log gets that long, so a larger one is forged or corrupt. */
function indexAt(o: Obj, key: string, path: string): LogIndex {
  const v = natAt(o, key, path);
  if (v > MAX_WIRE_INDEX) throw new WireDecodeError(`${path}${key}`, `exceeds the largest log index accepted (2^48), got ${v}`);
  return logIndex(v);
}

/**
 * Checks that a term carried inside a message (a log entry's, a snapshot's, the sender's last
 * log term) is not above the message's own term: a node holds no entry of a term later than
 * its current one, so a larger value is forged or corrupt.
 */
function notAboveMessageTerm(value: Term, messageTerm: Term, field: string): void {
  if (value > messageTerm) throw new WireDecodeError(field, `term ${value} is above the message's term ${messageTerm}`);
}

function boolAt(o: Obj, key: string, path: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') {
    throw new WireDecodeError(`${path}${key}`, v === undefined ? 'missing' : `expected a boolean, got ${describeValue(v)}`);
  }
  return v;
}

function bytesAt(o: Obj, key: string, path: string): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) {
    throw new WireDecodeError(`${path}${key}`, v === undefined ? 'missing' : `expected bytes, got ${describeValue(v)}`);
  }
  // A Buffer is a Uint8Array subclass; hand the core a plain view over the same memory (no copy).
  return Buffer.isBuffer(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : v;
}

function nodeIdOf(v: unknown, field: string): NodeId {
  if (typeof v !== 'string') {
    throw new WireDecodeError(field, v === undefined ? 'missing' : `expected a string, got ${describeValue(v)}`);
  }
  if (v.length === 0) throw new WireDecodeError(field, 'must be a non-empty node id');
  return nodeId(v);
}

function arrayAt(o: Obj, key: string, path: string): readonly unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) {
    throw new WireDecodeError(`${path}${key}`, v === undefined ? 'missing' : `expected a list, got ${describeValue(v)}`);
  }
  return v;
}

function entryTypeAt(o: Obj, key: string, path: string): EntryType {
  const v = o[key];
  const t = ENTRY_TYPE_OF_WIRE.get(v);
  if (t === undefined) throw new WireDecodeError(`${path}${key}`, v === undefined ? 'missing' : `unknown entry type ${describeValue(v)}`);
  return t;
}

function entryOf(v: unknown, path: string): Entry {
  const o = objectAt(v, path);
  const p = `${path}.`;
  // A copy: the decoded bytes are a view of the whole received message (a batch of up to
  // MiBs), which the in-memory log would keep alive for as long as it keeps this one entry.
  return { term: termAt(o, 'term', p), index: indexAt(o, 'index', p), type: entryTypeAt(o, 'type', p), data: new Uint8Array(bytesAt(o, 'data', p)) };
}

function confStateOf(v: unknown, path: string): ConfState {
  const o = objectAt(v, path);
  const ids = (key: string): NodeId[] => arrayAt(o, key, `${path}.`).map((x, i) => nodeIdOf(x, `${path}.${key}[${i}]`));
  return { voters: ids('voters'), learners: ids('learners') };
}

function snapshotOf(v: unknown, path: string): Snapshot {
  const o = objectAt(v, path);
  const metaPath = `${path}.metadata`;
  const meta = objectAt(o['metadata'], metaPath);
  const mp = `${metaPath}.`;
  return {
    metadata: {
      index: indexAt(meta, 'index', mp),
      term: termAt(meta, 'term', mp),
      confState: confStateOf(meta['conf_state'], `${mp}conf_state`),
    },
    data: bytesAt(o, 'data', `${path}.`),
  };
}

/** Finds the single `body` member that is set; checks the `body` discriminator if present. */
function bodyFieldOf(w: Obj): WireBodyField {
  const set = WIRE_BODY_FIELDS.filter((f) => w[f] !== undefined && w[f] !== null);
  if (set.length === 0) throw new WireDecodeError('body', 'missing: no message type is set');
  if (set.length > 1) throw new WireDecodeError('body', `more than one message type is set (${set.join(', ')})`);
  const field = set[0] as WireBodyField;
  const tag = w['body'];
  if (tag !== undefined && tag !== null && tag !== field) {
    throw new WireDecodeError('body', `discriminator ${describeValue(tag)} does not match the field set (${field})`);
  }
  return field;
}

/**
 * Checks the entries of an AppendEntries: they follow `prevLogIndex` with consecutive indexes
 * (§5.3) and their terms never decrease along the log (a leader appends entries of its own term
 * after those it holds, §5.3 / Log Matching).
 */
function checkEntrySequence(entries: readonly Entry[], prevLogIndex: number, prevLogTerm: number, path: string): void {
  let expectedIndex = prevLogIndex + 1;
  let minTerm = prevLogTerm;
  entries.forEach((e, i) => {
    if (e.index !== expectedIndex) {
      throw new WireDecodeError(`${path}[${i}].index`, `expected ${expectedIndex} (entries follow prev_log_index consecutively), got ${e.index}`);
    }
    if (e.term < minTerm) {
      throw new WireDecodeError(`${path}[${i}].term`, `terms must not decrease along the log: ${e.term} after ${minTerm}`);
    }
    expectedIndex++;
    minTerm = e.term;
  });
}

/**
 * Validates a wire object (as decoded by proto-loader with `keepCase`, `longs: Number`,
 * `enums: String`, `defaults`, `arrays`, `oneofs`, or as built by {@link toWire}) and maps it to
 * a core {@link Message}. Byte fields come back as `Uint8Array` views over the decoded buffer.
 *
 * @throws {WireDecodeError} naming the first bad field: a missing envelope field or body, an
 *   empty node id, a number that is negative, fractional or above 2^53 - 1, a log index above
 *   {@link MAX_WIRE_INDEX}, a term inside the message above the message's own term, an unknown
 *   entry type, a wrongly typed field, or AppendEntries entries that do not follow
 *   `prev_log_index` consecutively with non-decreasing terms. (The message's own term is
 *   bounded relative to the receiver's by the core: `isAcceptableTerm`.)
 */
export function fromWire(w: unknown): Message {
  const o = objectAt(w, 'message');
  const from = nodeIdOf(o['from'], 'from');
  const to = nodeIdOf(o['to'], 'to');
  const t = termAt(o, 'term', '');
  const head = { from, to, term: t };
  const field = bodyFieldOf(o);
  const b = objectAt(o[field], field);
  const p = `${field}.`;
  switch (field) {
    case 'append_entries': {
      const prevLogIndex = indexAt(b, 'prev_log_index', p);
      const prevLogTerm = termAt(b, 'prev_log_term', p);
      const entries = arrayAt(b, 'entries', p).map((e, i) => entryOf(e, `${p}entries[${i}]`));
      notAboveMessageTerm(prevLogTerm, t, `${p}prev_log_term`);
      checkEntrySequence(entries, prevLogIndex, prevLogTerm, `${p}entries`);
      const lastEntry = entries[entries.length - 1];
      if (lastEntry) notAboveMessageTerm(lastEntry.term, t, `${p}entries[${entries.length - 1}].term`);
      return { type: 'AppendEntries', ...head, prevLogIndex, prevLogTerm, entries, leaderCommit: indexAt(b, 'leader_commit', p) };
    }
    case 'append_entries_response': {
      const conflictTerm = termAt(b, 'conflict_term', p);
      notAboveMessageTerm(conflictTerm, t, `${p}conflict_term`);
      return {
        type: 'AppendEntriesResponse',
        ...head,
        success: boolAt(b, 'success', p),
        matchIndex: indexAt(b, 'match_index', p),
        conflictIndex: indexAt(b, 'conflict_index', p),
        conflictTerm,
      };
    }
    case 'request_vote': {
      const lastLogTerm = termAt(b, 'last_log_term', p);
      notAboveMessageTerm(lastLogTerm, t, `${p}last_log_term`);
      return {
        type: 'RequestVote',
        ...head,
        lastLogIndex: indexAt(b, 'last_log_index', p),
        lastLogTerm,
        preVote: boolAt(b, 'pre_vote', p),
        transfer: boolAt(b, 'transfer', p),
      };
    }
    case 'request_vote_response':
      return { type: 'RequestVoteResponse', ...head, voteGranted: boolAt(b, 'vote_granted', p), preVote: boolAt(b, 'pre_vote', p) };
    case 'heartbeat':
      return { type: 'Heartbeat', ...head, leaderCommit: indexAt(b, 'leader_commit', p), context: bytesAt(b, 'context', p) };
    case 'heartbeat_response':
      return { type: 'HeartbeatResponse', ...head, context: bytesAt(b, 'context', p) };
    case 'install_snapshot': {
      const snapshot = snapshotOf(b['snapshot'], `${p}snapshot`);
      notAboveMessageTerm(snapshot.metadata.term, t, `${p}snapshot.metadata.term`);
      return { type: 'InstallSnapshot', ...head, snapshot };
    }
    case 'timeout_now':
      return { type: 'TimeoutNow', ...head };
    case 'read_index':
      return { type: 'ReadIndex', ...head, context: bytesAt(b, 'context', p) };
    case 'read_index_response':
      return {
        type: 'ReadIndexResponse',
        ...head,
        context: bytesAt(b, 'context', p),
        index: indexAt(b, 'index', p),
        success: boolAt(b, 'success', p),
      };
    default:
      return assertNever(field);
  }
}

// ---------------------------------------------------------------------------------------------
// Batches.
// ---------------------------------------------------------------------------------------------

/**
 * Encodes messages as one `raft.v1.MessageBatch`. Throws `Error` only if a message holds a value
 * protobuf cannot represent (never for messages produced by the core).
 */
export function encodeBatch(messages: readonly Message[]): Buffer {
  return loadRaftProto().serializeBatch({ messages: messages.map(toWire) });
}

/**
 * Decodes `raft.v1.MessageBatch` bytes into unvalidated wire objects; pass each to
 * {@link fromWire}, so that one bad message does not cost the rest of the batch.
 *
 * @throws {WireDecodeError} with field `'batch'` when the bytes are not a `MessageBatch`.
 */
export function decodeWireBatch(bytes: Uint8Array): unknown[] {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let decoded: unknown;
  try {
    decoded = loadRaftProto().deserializeBatch(buf);
  } catch (err) {
    throw new WireDecodeError('batch', `not a raft.v1.MessageBatch (${err instanceof Error ? err.message : String(err)})`);
  }
  const messages = isObject(decoded) ? decoded['messages'] : undefined;
  if (!Array.isArray(messages)) throw new WireDecodeError('batch.messages', 'missing');
  return messages;
}

/**
 * Decodes and validates a whole batch: the messages that pass {@link fromWire}, in order, and
 * the errors of those that did not. Throws {@link WireDecodeError} (field `'batch'`) when the
 * bytes are not a `MessageBatch`.
 */
export function decodeBatch(bytes: Uint8Array): { messages: Message[]; errors: WireDecodeError[] } {
  const messages: Message[] = [];
  const errors: WireDecodeError[] = [];
  decodeWireBatch(bytes).forEach((w, i) => {
    try {
      messages.push(fromWire(w));
    } catch (err) {
      if (!(err instanceof WireDecodeError)) throw err;
      errors.push(new WireDecodeError(`messages[${i}].${err.field}`, err.reason));
    }
  });
  return { messages, errors };
}

// ---------------------------------------------------------------------------------------------
// Chunked snapshot transfers (§7, Figure 13: offset, data[], done).
// ---------------------------------------------------------------------------------------------

/** Wire form of a `SnapshotChunk` (`raft.v1.SnapshotChunk`). `header` is null when absent. */
export type WireSnapshotChunk = Sent<Omit<SnapshotChunk__Output, 'header'>> & { header: WireMessage | null };

/** Wire form of a `SnapshotAck` (`raft.v1.SnapshotAck`). */
export type WireSnapshotAck = Sent<SnapshotAck__Output>;

/**
 * One message of a chunked snapshot transfer, decoded. `header` is set on the first chunk only;
 * `offset` counts the payload bytes before `data`; `done` marks the last chunk, which carries
 * the payload size in `totalBytes` (0 on every other chunk) and the payload's CRC-32 in
 * `payloadCrc32` (undefined on every other chunk, and from a sender of an earlier version).
 */
export interface SnapshotChunk {
  readonly header: InstallSnapshot | undefined;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly done: boolean;
  readonly totalBytes: number;
  readonly payloadCrc32?: number | undefined;
}

/** Largest value of a CRC-32. */
const MAX_CRC32 = 0xffff_ffff;

const EMPTY_BYTES = new Uint8Array(0);

/**
 * Encodes one `raft.v1.SnapshotChunk`. A header is sent with its `snapshot.data` emptied: the
 * payload travels in the chunks. `data` is copied once into the encoded buffer. Does not
 * validate (the sender builds chunks in order itself); throws `Error` only for values protobuf
 * cannot represent.
 */
export function encodeSnapshotChunk(chunk: SnapshotChunk): Buffer {
  const header =
    chunk.header === undefined
      ? null
      : toWire({ ...chunk.header, snapshot: { metadata: chunk.header.snapshot.metadata, data: EMPTY_BYTES } });
  return loadRaftProto().serializeSnapshotChunk({
    header,
    offset: chunk.offset,
    data: chunk.data,
    done: chunk.done,
    total_bytes: chunk.totalBytes,
    ...(chunk.payloadCrc32 !== undefined ? { payload_crc32: chunk.payloadCrc32 } : {}),
  });
}

/**
 * Decodes and validates the fields of one `raft.v1.SnapshotChunk` (not its place in the
 * sequence: see {@link SnapshotChunkSequence}). `data` comes back as a view over `bytes`.
 *
 * @throws {WireDecodeError} with field `'chunk'` when the bytes are not a `SnapshotChunk`;
 *   `header.*` when the header is not a valid InstallSnapshot message with empty snapshot data;
 *   `offset` / `total_bytes` when they are not non-negative safe integers; `payload_crc32` when
 *   it is present and not a u32.
 */
export function decodeSnapshotChunk(bytes: Uint8Array): SnapshotChunk {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let decoded: unknown;
  try {
    decoded = loadRaftProto().deserializeSnapshotChunk(buf);
  } catch (err) {
    throw new WireDecodeError('chunk', `not a raft.v1.SnapshotChunk (${err instanceof Error ? err.message : String(err)})`);
  }
  const o = objectAt(decoded, 'chunk');
  let header: InstallSnapshot | undefined;
  const h = o['header'];
  if (h !== undefined && h !== null) {
    let msg: Message;
    try {
      msg = fromWire(h);
    } catch (err) {
      if (err instanceof WireDecodeError) throw new WireDecodeError(`header.${err.field}`, err.reason);
      throw err;
    }
    if (msg.type !== 'InstallSnapshot') throw new WireDecodeError('header.body', `expected install_snapshot, got ${WIRE_BODY_FIELD[msg.type]}`);
    if (msg.snapshot.data.byteLength !== 0) {
      throw new WireDecodeError('header.install_snapshot.snapshot.data', `must be empty in a chunked transfer, got ${msg.snapshot.data.byteLength} bytes`);
    }
    header = msg;
  }
  return {
    header,
    offset: natAt(o, 'offset', ''),
    data: bytesAt(o, 'data', ''),
    done: boolAt(o, 'done', ''),
    totalBytes: natAt(o, 'total_bytes', ''),
    payloadCrc32: o['payload_crc32'] === undefined ? undefined : crc32At(o, 'payload_crc32'),
  };
}

/** The u32 at `o[key]`. @throws {WireDecodeError} when it is not an integer in 0..2^32-1. */
function crc32At(o: Obj, key: string): number {
  const v = natAt(o, key, '');
  if (v > MAX_CRC32) throw new WireDecodeError(key, `exceeds 2^32 - 1, got ${v}`);
  return v;
}

/**
 * Reads the payload size from a decoded `raft.v1.SnapshotAck`.
 *
 * @throws {WireDecodeError} when `received_bytes` is missing or not a non-negative safe integer.
 */
export function snapshotAckBytes(ack: unknown): number {
  return natAt(objectAt(ack, 'ack'), 'received_bytes', 'ack.');
}

/**
 * Checks that the chunks of one transfer form the sequence `raft.v1.SnapshotChunk` describes
 * (after Figure 13's offset / data / done): a header first and only first, offsets contiguous
 * from 0, no chunk larger than `maxChunkBytes`, nothing after `done`, and a `done` chunk whose
 * `totalBytes` equals the payload received and whose `payloadCrc32`, when the sender set it,
 * equals the CRC-32 of the payload received. Feed it every chunk in arrival order.
 */
export class SnapshotChunkSequence {
  private expectedOffset = 0;
  private started = false;
  private finished = false;
  /** Running CRC-32 of the payload accepted so far. */
  private crc = 0;

  constructor(
    /** Largest `data` of one chunk, in bytes. */
    readonly maxChunkBytes: number,
  ) {}

  /** Payload bytes accepted so far. */
  get receivedBytes(): number {
    return this.expectedOffset;
  }

  /** True once the `done` chunk was accepted. */
  get done(): boolean {
    return this.finished;
  }

  /**
   * Accepts the next chunk of the transfer.
   *
   * @throws {WireDecodeError} naming the bad field: `header` (missing on the first chunk, or
   *   repeated), `data` (above `maxChunkBytes`), `offset` (not contiguous), `total_bytes`
   *   (different from the payload received, or set before `done`), `payload_crc32` (different
   *   from the CRC-32 of the payload received, or set before `done`), `done` (a chunk after it).
   */
  accept(chunk: SnapshotChunk): void {
    if (this.finished) throw new WireDecodeError('done', 'a chunk arrived after the done chunk');
    if (!this.started && chunk.header === undefined) throw new WireDecodeError('header', 'missing on the first chunk');
    if (this.started && chunk.header !== undefined) throw new WireDecodeError('header', 'only the first chunk carries one');
    if (chunk.data.byteLength > this.maxChunkBytes) {
      throw new WireDecodeError('data', `chunk of ${chunk.data.byteLength} bytes exceeds the limit of ${this.maxChunkBytes}`);
    }
    if (chunk.offset !== this.expectedOffset) {
      throw new WireDecodeError('offset', `expected ${this.expectedOffset} (contiguous with the bytes received), got ${chunk.offset}`);
    }
    const end = this.expectedOffset + chunk.data.byteLength;
    if (!Number.isSafeInteger(end)) throw new WireDecodeError('offset', `payload exceeds 2^53 - 1 bytes`);
    const crc = chunk.data.byteLength > 0 ? crc32(chunk.data, this.crc) >>> 0 : this.crc;
    if (chunk.done) {
      if (chunk.totalBytes !== end) throw new WireDecodeError('total_bytes', `expected ${end} (the bytes received), got ${chunk.totalBytes}`);
      if (chunk.payloadCrc32 !== undefined && chunk.payloadCrc32 !== crc) {
        throw new WireDecodeError('payload_crc32', `the payload received has CRC-32 ${crc.toString(16)}, the sender's says ${chunk.payloadCrc32.toString(16)} (damaged on the way)`);
      }
    } else if (chunk.totalBytes !== 0) {
      throw new WireDecodeError('total_bytes', 'set on a chunk that is not done');
    } else if (chunk.payloadCrc32 !== undefined) {
      throw new WireDecodeError('payload_crc32', 'set on a chunk that is not done');
    }
    this.crc = crc;
    this.started = true;
    this.expectedOffset = end;
    this.finished = chunk.done;
  }
}
