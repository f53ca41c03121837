import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logIndex, MAX_WIRE_INDEX, MESSAGE_TYPES, nodeId, term, type AppendEntries, type Message } from '../../src/raft/types.js';
import {
  decodeBatch,
  decodeWireBatch,
  encodeBatch,
  fromWire,
  loadRaftProto,
  resolveRaftProtoPath,
  toWire,
  WIRE_BODY_FIELD,
  WireDecodeError,
  type WireMessage,
} from '../../src/transport/codec.js';
import { arbMessage, messageArbitraries } from './arbitraries.js';

const appendEntries: AppendEntries = {
  type: 'AppendEntries',
  from: nodeId('n1'),
  to: nodeId('n2'),
  term: term(3),
  prevLogIndex: logIndex(7),
  prevLogTerm: term(2),
  entries: [
    { term: term(2), index: logIndex(8), type: 'normal', data: new Uint8Array([1, 2, 3]) },
    { term: term(3), index: logIndex(9), type: 'config', data: new Uint8Array([]) },
  ],
  leaderCommit: logIndex(9),
};

/** A deep clone of a wire object with `patch` applied at a dotted path. */
function patched(w: WireMessage, path: string, value: unknown): unknown {
  const copy = structuredClone(w) as unknown as Record<string, unknown>;
  const keys = path.split('.');
  let o: Record<string, unknown> = copy;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  const last = keys[keys.length - 1] as string;
  if (value === undefined) delete o[last];
  else o[last] = value;
  return copy;
}

/** Runs `f` and returns the WireDecodeError it throws (failing the test if it throws nothing else). */
function decodeError(f: () => unknown): WireDecodeError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(WireDecodeError);
    return err as WireDecodeError;
  }
  throw new Error('expected a WireDecodeError, nothing was thrown');
}

describe('codec: round trips', () => {
  it('fromWire(toWire(m)) equals m for every message type', () => {
    const byType = messageArbitraries();
    for (const type of MESSAGE_TYPES) {
      fc.assert(
        fc.property(byType[type] as fc.Arbitrary<Message>, (m) => {
          expect(fromWire(toWire(m))).toEqual(m);
        }),
        { numRuns: 100 },
      );
    }
  });

  it('decodeBatch(encodeBatch(ms)) equals ms through protobuf bytes', () => {
    fc.assert(
      fc.property(fc.array(arbMessage(), { maxLength: 12 }), (ms) => {
        const bytes = encodeBatch(ms);
        const { messages, errors } = decodeBatch(bytes);
        expect(errors).toEqual([]);
        expect(messages).toEqual(ms);
      }),
      { numRuns: 300 },
    );
  });

  it('returns byte fields as plain Uint8Array, not Buffer', () => {
    const [decoded] = decodeBatch(encodeBatch([appendEntries])).messages;
    expect(decoded?.type).toBe('AppendEntries');
    const data = (decoded as AppendEntries).entries[0]?.data;
    expect(data).toBeInstanceOf(Uint8Array);
    expect(Buffer.isBuffer(data)).toBe(false);
    expect([...(data ?? [])]).toEqual([1, 2, 3]);
  });

  it('keeps the largest safe term and the largest accepted index exact', () => {
    const m: Message = { ...appendEntries, term: term(Number.MAX_SAFE_INTEGER), leaderCommit: logIndex(MAX_WIRE_INDEX) };
    expect(decodeBatch(encodeBatch([m])).messages).toEqual([m]);
  });

  it('maps every message type to its own body field', () => {
    expect(new Set(Object.values(WIRE_BODY_FIELD)).size).toBe(MESSAGE_TYPES.length);
    expect(Object.keys(WIRE_BODY_FIELD).sort()).toEqual([...MESSAGE_TYPES].sort());
  });
});

describe('codec: malformed input is rejected naming the field', () => {
  const w = toWire(appendEntries);

  it.each([
    ['not an object', null, 'message'],
    ['an array', [], 'message'],
    ['missing from', patched(w, 'from', undefined), 'from'],
    ['empty to', patched(w, 'to', ''), 'to'],
    ['numeric from', patched(w, 'from', 5), 'from'],
    ['negative term', patched(w, 'term', -1), 'term'],
    ['fractional term', patched(w, 'term', 1.5), 'term'],
    ['unsafe term', patched(w, 'term', 2 ** 64), 'term'],
    ['string term', patched(w, 'term', '3'), 'term'],
    ['missing prev_log_index', patched(w, 'append_entries.prev_log_index', undefined), 'append_entries.prev_log_index'],
    ['negative leader_commit', patched(w, 'append_entries.leader_commit', -4), 'append_entries.leader_commit'],
    ['entries not a list', patched(w, 'append_entries.entries', {}), 'append_entries.entries'],
    ['unknown entry type', patched(w, 'append_entries.entries.0.type', 'ENTRY_TYPE_BOGUS'), 'append_entries.entries[0].type'],
    ['unspecified entry type', patched(w, 'append_entries.entries.1.type', 'ENTRY_TYPE_UNSPECIFIED'), 'append_entries.entries[1].type'],
    ['numeric entry type', patched(w, 'append_entries.entries.0.type', 7), 'append_entries.entries[0].type'],
    ['entry data not bytes', patched(w, 'append_entries.entries.0.data', [1, 2]), 'append_entries.entries[0].data'],
    ['entry index gap', patched(w, 'append_entries.entries.1.index', 11), 'append_entries.entries[1].index'],
    ['entry term decreasing', patched(w, 'append_entries.entries.0.term', 1), 'append_entries.entries[0].term'],
    ['index beyond MAX_WIRE_INDEX', patched(w, 'append_entries.leader_commit', MAX_WIRE_INDEX + 1), 'append_entries.leader_commit'],
    ['prev_log_term above the message term', patched(w, 'append_entries.prev_log_term', 1_000), 'append_entries.prev_log_term'],
    ['null body member', patched(w, 'append_entries', null), 'body'],
  ])('%s', (_name, input, field) => {
    expect(decodeError(() => fromWire(input)).field).toBe(field);
  });

  it('rejects a message without a body', () => {
    const e = decodeError(() => fromWire({ from: 'n1', to: 'n2', term: 1 }));
    expect(e.field).toBe('body');
    expect(e.message).toMatch(/body: missing/);
  });

  it('rejects two bodies at once', () => {
    const e = decodeError(() => fromWire({ ...w, timeout_now: {} }));
    expect(e.field).toBe('body');
  });

  it('rejects a body discriminator that names another field', () => {
    expect(decodeError(() => fromWire({ ...w, body: 'heartbeat' })).field).toBe('body');
  });

  it('rejects wrongly typed fields of every message type', () => {
    const samples = messageArbitraries({ maxBytes: 4 });
    for (const type of MESSAGE_TYPES) {
      const [m] = fc.sample(samples[type] as fc.Arbitrary<Message>, { numRuns: 1, seed: 42 });
      const wire = toWire(m as Message) as unknown as Record<string, Record<string, unknown>>;
      const field = WIRE_BODY_FIELD[type];
      const body = wire[field] as Record<string, unknown>;
      for (const key of Object.keys(body)) {
        const broken = { ...wire, [field]: { ...body, [key]: { bogus: true } } };
        expect(decodeError(() => fromWire(broken)).field.startsWith(`${field}.${key}`)).toBe(true);
      }
    }
  });

  it('rejects a snapshot without metadata and an empty voter id', () => {
    const snap = toWire({
      type: 'InstallSnapshot',
      from: nodeId('n1'),
      to: nodeId('n2'),
      term: term(1),
      snapshot: { metadata: { index: logIndex(3), term: term(1), confState: { voters: [nodeId('n1')], learners: [] } }, data: new Uint8Array(2) },
    });
    expect(decodeError(() => fromWire(patched(snap, 'install_snapshot.snapshot.metadata', null))).field).toBe(
      'install_snapshot.snapshot.metadata',
    );
    expect(decodeError(() => fromWire(patched(snap, 'install_snapshot.snapshot.metadata.conf_state.voters', ['']))).field).toBe(
      'install_snapshot.snapshot.metadata.conf_state.voters[0]',
    );
  });

  it('rejects bytes that are not a MessageBatch', () => {
    const e = decodeError(() => decodeWireBatch(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])));
    expect(e.field).toBe('batch');
  });

  it('rejects uint64 values above 2^53 - 1 and unknown enum numbers on the wire', () => {
    const { serializeBatch } = loadRaftProto();
    const big = { ...w, term: '18446744073709551615' } as unknown as WireMessage;
    const unknownEnum = patched(w, 'append_entries.entries.0.type', 7) as WireMessage;
    const { messages, errors } = decodeBatch(serializeBatch({ messages: [big, unknownEnum, w] }));
    expect(errors.map((e) => e.field)).toEqual(['messages[0].term', 'messages[1].append_entries.entries[0].type']);
    expect(messages).toEqual([appendEntries]);
  });

  it('never throws anything but WireDecodeError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.anything(), (x) => {
        try {
          fromWire(x);
        } catch (err) {
          expect(err).toBeInstanceOf(WireDecodeError);
        }
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeBatch(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(WireDecodeError);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('codec: proto path', () => {
  it('finds proto/raft/v1/raft.proto from a nested directory', () => {
    expect(resolveRaftProtoPath()).toMatch(/proto[\\/]raft[\\/]v1[\\/]raft\.proto$/);
  });

  it('finds it from the build output directory as well', () => {
    const root = resolveRaftProtoPath().replace(/[\\/]proto[\\/]raft[\\/]v1[\\/]raft\.proto$/, '');
    expect(resolveRaftProtoPath(join(root, 'dist', 'src', 'transport'))).toBe(join(root, 'proto', 'raft', 'v1', 'raft.proto'));
  });

  it('throws naming the start directory when no ancestor holds the proto', () => {
    const dir = mkdtempSync(join(tmpdir(), 'no-proto-'));
    try {
      expect(() => resolveRaftProtoPath(dir)).toThrow(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
