/**
 * fast-check arbitraries for every member of the Raft `Message` union, valid as the wire codec
 * accepts them (non-empty node ids, non-negative safe integers, log indexes up to
 * `MAX_WIRE_INDEX`, terms inside a message no higher than its own term, AppendEntries entries
 * that follow `prevLogIndex` consecutively with non-decreasing terms). Shared by the codec tests and the
 * simulator (`test/sim/`).
 */
import fc from 'fast-check';
import {
  logIndex,
  MAX_WIRE_INDEX,
  MESSAGE_TYPES,
  nodeId,
  term,
  type AppendEntries,
  type Entry,
  type EntryType,
  type LogIndex,
  type Message,
  type MessageType,
  type NodeId,
  type Snapshot,
  type Term,
} from '../../src/raft/types.js';

/** Options of {@link messageArbitraries} and {@link arbMessage}. */
export interface MessageArbitraryOptions {
  /** Draw `from` / `to` from these ids; default: arbitrary non-empty Unicode strings. */
  readonly nodeIds?: readonly NodeId[];
  /** Most entries in one AppendEntries. Default 8. */
  readonly maxEntries?: number;
  /**
   * Largest term or index. Default `Number.MAX_SAFE_INTEGER` for terms and `MAX_WIRE_INDEX` for
   * indexes (with small values favoured); indexes never exceed `MAX_WIRE_INDEX`.
   */
  readonly maxNumber?: number;
  /** Most bytes in one entry, context or snapshot. Default 64. */
  readonly maxBytes?: number;
}

/** Non-empty node ids made of whole graphemes (any Unicode protobuf strings carry). */
export const arbNodeId: fc.Arbitrary<NodeId> = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).map(nodeId);

/** Non-negative safe integers up to `max`, favouring small ones and the bounds. */
export function arbNat(max: number = Number.MAX_SAFE_INTEGER): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.nat({ max: Math.min(max, 1000) }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max }) },
    { weight: 1, arbitrary: fc.constantFrom(0, max) },
  );
}

/** Arbitrary terms. */
export const arbTerm = (max?: number): fc.Arbitrary<Term> => arbNat(max).map(term);
/** Arbitrary log indexes, at most `MAX_WIRE_INDEX`. */
export const arbLogIndex = (max?: number): fc.Arbitrary<LogIndex> => arbNat(Math.min(max ?? MAX_WIRE_INDEX, MAX_WIRE_INDEX)).map(logIndex);
/** Arbitrary byte strings. */
export const arbBytes = (maxLength = 64): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength });
/** Arbitrary entry types. */
export const arbEntryType: fc.Arbitrary<EntryType> = fc.constantFrom<EntryType>('normal', 'config');

/** Arbitrary snapshots (metadata, configuration and data). */
export function arbSnapshot(options: MessageArbitraryOptions = {}): fc.Arbitrary<Snapshot> {
  const ids = options.nodeIds !== undefined ? fc.constantFrom(...options.nodeIds) : arbNodeId;
  return fc.record({
    metadata: fc.record({
      index: arbLogIndex(options.maxNumber),
      term: arbTerm(options.maxNumber),
      confState: fc.record({ voters: fc.array(ids, { maxLength: 5 }), learners: fc.array(ids, { maxLength: 3 }) }),
    }),
    data: arbBytes(options.maxBytes),
  });
}

/**
 * Arbitrary AppendEntries bodies: `entries` follow `prevLogIndex` with consecutive indexes and
 * terms that never decrease from `prevLogTerm`.
 */
function arbAppendEntriesBody(
  options: MessageArbitraryOptions,
): fc.Arbitrary<Pick<AppendEntries, 'prevLogIndex' | 'prevLogTerm' | 'entries' | 'leaderCommit'>> {
  const max = options.maxNumber ?? Number.MAX_SAFE_INTEGER;
  const maxEntries = options.maxEntries ?? 8;
  return fc
    .record({
      prevLogIndex: arbNat(Math.max(0, Math.min(max, MAX_WIRE_INDEX) - maxEntries)),
      prevLogTerm: arbNat(max),
      leaderCommit: arbLogIndex(max),
      steps: fc.array(
        fc.record({ termStep: fc.oneof(fc.constant(0), fc.nat({ max: 3 })), type: arbEntryType, data: arbBytes(options.maxBytes) }),
        { maxLength: maxEntries },
      ),
    })
    .map(({ prevLogIndex, prevLogTerm, leaderCommit, steps }) => {
      let t = prevLogTerm;
      const entries: Entry[] = steps.map((s, i) => {
        t = Math.min(max, t + s.termStep);
        return { term: term(t), index: logIndex(prevLogIndex + 1 + i), type: s.type, data: s.data };
      });
      return { prevLogIndex: logIndex(prevLogIndex), prevLogTerm: term(prevLogTerm), entries, leaderCommit };
    });
}

/** One arbitrary per message type, all valid on the wire. */
export function messageArbitraries(options: MessageArbitraryOptions = {}): { readonly [K in MessageType]: fc.Arbitrary<Extract<Message, { type: K }>> } {
  const ids = options.nodeIds !== undefined ? fc.constantFrom(...options.nodeIds) : arbNodeId;
  const head = fc.record({ from: ids, to: ids, term: arbTerm(options.maxNumber) });
  const idx = arbLogIndex(options.maxNumber);
  const trm = arbTerm(options.maxNumber);
  const bytes = arbBytes(options.maxBytes);
  // The message's term is raised to the highest term inside it, as a real sender's always is.
  const with_ = <T extends Message>(body: fc.Arbitrary<Omit<T, 'from' | 'to' | 'term'>>): fc.Arbitrary<T> =>
    fc.tuple(head, body).map(([h, b]) => {
      const m = { ...h, ...b } as T;
      return { ...m, term: term(Math.max(m.term, ...innerTerms(m))) };
    });
  return {
    AppendEntries: with_(arbAppendEntriesBody(options).map((b) => ({ type: 'AppendEntries' as const, ...b }))),
    AppendEntriesResponse: with_(
      fc.record({
        type: fc.constant('AppendEntriesResponse' as const),
        success: fc.boolean(),
        matchIndex: idx,
        conflictIndex: idx,
        conflictTerm: trm,
      }),
    ),
    RequestVote: with_(
      fc.record({
        type: fc.constant('RequestVote' as const),
        lastLogIndex: idx,
        lastLogTerm: trm,
        preVote: fc.boolean(),
        transfer: fc.boolean(),
      }),
    ),
    RequestVoteResponse: with_(
      fc.record({ type: fc.constant('RequestVoteResponse' as const), voteGranted: fc.boolean(), preVote: fc.boolean() }),
    ),
    Heartbeat: with_(fc.record({ type: fc.constant('Heartbeat' as const), leaderCommit: idx, context: bytes })),
    HeartbeatResponse: with_(fc.record({ type: fc.constant('HeartbeatResponse' as const), context: bytes })),
    InstallSnapshot: with_(fc.record({ type: fc.constant('InstallSnapshot' as const), snapshot: arbSnapshot(options) })),
    TimeoutNow: with_(fc.record({ type: fc.constant('TimeoutNow' as const) })),
    ReadIndex: with_(fc.record({ type: fc.constant('ReadIndex' as const), context: bytes })),
    ReadIndexResponse: with_(
      fc.record({ type: fc.constant('ReadIndexResponse' as const), context: bytes, index: idx, success: fc.boolean() }),
    ),
  };
}

/** The terms a message carries besides its own: none may exceed it on the wire. */
function innerTerms(m: Message): number[] {
  switch (m.type) {
    case 'AppendEntries':
      return [m.prevLogTerm, ...m.entries.map((e) => e.term)];
    case 'AppendEntriesResponse':
      return [m.conflictTerm];
    case 'RequestVote':
      return [m.lastLogTerm];
    case 'InstallSnapshot':
      return [m.snapshot.metadata.term];
    default:
      return [];
  }
}

/** Arbitrary messages of every type, with equal weight per type. */
export function arbMessage(options: MessageArbitraryOptions = {}): fc.Arbitrary<Message> {
  const byType = messageArbitraries(options);
  return fc.oneof(...MESSAGE_TYPES.map((t) => byType[t] as fc.Arbitrary<Message>));
}
