import { describe, it, expect, afterEach } from 'vitest';
import fc from 'fast-check';
import * as grpc from '@grpc/grpc-js';
import { crc32 } from 'node:zlib';
import { logIndex, nodeId, term, type InstallSnapshot, type Message, type NodeId } from '../../src/raft/types.js';
import {
  decodeSnapshotChunk,
  encodeSnapshotChunk,
  loadRaftProto,
  RAFT_INSTALL_SNAPSHOT_METHOD_PATH,
  SnapshotChunkSequence,
  toWire,
  WireDecodeError,
  type SnapshotChunk,
} from '../../src/transport/codec.js';
import {
  DEFAULT_SNAPSHOT_CHUNK_BYTES,
  GrpcTransport,
  MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER,
  MAX_SNAPSHOT_CHUNK_BYTES,
  SnapshotTransferError,
} from '../../src/transport/grpc-transport.js';
import { MAX_BUFFERED_SNAPSHOT_CHUNKS, MAX_SNAPSHOT_WRITES_IN_FLIGHT, SnapshotChunkQueue } from '../../src/transport/snapshot-stream.js';
import { bind, connectAll, startNode, stopNode, waitConnected, waitFor, type TestNode } from './helpers.js';

const MIB = 1024 * 1024;
/** Messages gRPC reads ahead of a paused server call on its own (its object-mode highWaterMark). */
const GRPC_READ_AHEAD_MESSAGES = 16;
/** Slack for chunks partly inside HTTP/2 flow-control windows. */
const WINDOW_SLACK_CHUNKS = 2;
/**
 * Chunks that may be pulled from the sender's iterator but not yet consumed by a stalled
 * receiver: the sender's writes in flight and the one it pulled, gRPC's read-ahead on the paused
 * server call (16 messages, its object-mode highWaterMark), the receiver's queue, the chunk the
 * consumer holds, and one chunk's worth of HTTP/2 windows.
 */
const MAX_OUTSTANDING_CHUNKS =
  MAX_SNAPSHOT_WRITES_IN_FLIGHT + 1 + GRPC_READ_AHEAD_MESSAGES + MAX_BUFFERED_SNAPSHOT_CHUNKS + 1 + WINDOW_SLACK_CHUNKS;
/** How long a counter must stay unchanged to count as settled, in ms. */
const SETTLE_QUIET_MS = 300;

let running: TestNode[] = [];

async function nodes(...ids: string[]): Promise<TestNode[]> {
  const started = await Promise.all(ids.map((id) => startNode(id)));
  running.push(...started);
  connectAll(started);
  return started;
}

afterEach(async () => {
  await Promise.all(running.map(stopNode));
  running = [];
});

/** An InstallSnapshot header from `from` to `to` (payload travels in chunks). */
const header = (from: NodeId, to: NodeId, index = 1000): InstallSnapshot => ({
  type: 'InstallSnapshot',
  from,
  to,
  term: term(4),
  snapshot: { metadata: { index: logIndex(index), term: term(3), confState: { voters: [from, to], learners: [nodeId('l1')] } }, data: new Uint8Array(0) },
});

/** `n` bytes of a recognisable pattern. */
function payloadOf(n: number): Uint8Array {
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 7 + (i >>> 11)) & 0xff;
  return data;
}

/**
 * A chunk source over `payload` that counts what was pulled and notes whether it was closed.
 * With `failAfter`, the pull after that many chunks waits for `failWhen` (if given), then throws.
 */
function source(payload: Uint8Array, chunkBytes: number, opts: { failAfter?: number; failWhen?: Promise<void> } = {}) {
  const state = { pulled: 0, closed: false };
  async function* gen(): AsyncGenerator<Uint8Array> {
    try {
      for (let off = 0; off < payload.length; off += chunkBytes) {
        if (opts.failAfter !== undefined && state.pulled === opts.failAfter) {
          await opts.failWhen;
          throw new Error('disk read failed');
        }
        state.pulled++;
        yield payload.subarray(off, Math.min(off + chunkBytes, payload.length));
      }
    } finally {
      state.closed = true;
    }
  }
  return { chunks: gen(), state };
}

/** A promise with its resolve function, to hold a consumer until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Settles `p` into a value the test can inspect without unhandled rejections. */
function settle<T>(p: Promise<T>): { done: () => boolean; outcome: Promise<{ ok: true; value: T } | { ok: false; err: unknown }> } {
  let done = false;
  const outcome = p.then(
    (value) => ({ ok: true as const, value }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  void outcome.then(() => {
    done = true;
  });
  return { done: () => done, outcome };
}

/** Expects `p` to reject with a SnapshotTransferError of `code`; returns it. */
async function rejection(p: Promise<unknown>, code: grpc.status): Promise<SnapshotTransferError> {
  const err = await p.then(
    () => expect.fail(`expected a rejection with ${grpc.status[code]}`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SnapshotTransferError);
  expect(grpc.status[(err as SnapshotTransferError).code]).toBe(grpc.status[code]);
  return err as SnapshotTransferError;
}

/** Waits until `read()` has not changed for {@link SETTLE_QUIET_MS}; returns its value. */
async function settled(what: string, read: () => number): Promise<number> {
  let last = read();
  let since = Date.now();
  await waitFor(what, () => {
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
    return Date.now() - since >= SETTLE_QUIET_MS;
  });
  return last;
}

const concat = (parts: readonly Uint8Array[]): Buffer => Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));

/** Opens a raw InstallSnapshot call to `node`, writes `writes`, ends it; resolves with its status. */
async function rawTransfer(node: TestNode, writes: Buffer[]): Promise<grpc.ServiceError | null> {
  const client = new grpc.Client(node.address, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve) => {
      const call = client.makeClientStreamRequest<Buffer, unknown>(
        RAFT_INSTALL_SNAPSHOT_METHOD_PATH,
        (b) => b,
        loadRaftProto().deserializeSnapshotAck,
        (err) => resolve(err),
      );
      call.on('error', () => undefined);
      for (const w of writes) call.write(w);
      call.end();
    });
  } finally {
    client.close();
  }
}

const chunk = (c: Partial<SnapshotChunk>): Buffer =>
  encodeSnapshotChunk({ header: undefined, offset: 0, data: new Uint8Array(0), done: false, totalBytes: 0, ...c });

describe('§7 InstallSnapshot chunks (Figure 13 offset/data/done): codec', () => {
  it('encodes and decodes a header, data and done chunk', () => {
    const h = header(nodeId('a'), nodeId('b'));
    const data = payloadOf(1000);
    const got = [
      decodeSnapshotChunk(chunk({ header: h })),
      decodeSnapshotChunk(chunk({ offset: 0, data })),
      decodeSnapshotChunk(chunk({ offset: 1000, done: true, totalBytes: 1000 })),
    ];
    expect(got[0]?.header).toEqual(h);
    expect(Buffer.compare(Buffer.from(got[1]?.data ?? []), Buffer.from(data))).toBe(0);
    expect(got[2]).toMatchObject({ header: undefined, offset: 1000, done: true, totalBytes: 1000 });
    const seq = new SnapshotChunkSequence(MAX_SNAPSHOT_CHUNK_BYTES);
    for (const c of got) seq.accept(c);
    expect(seq.done).toBe(true);
    expect(seq.receivedBytes).toBe(1000);
  });

  it('carries the payload\'s CRC-32 on the done chunk and checks it, and accepts a done chunk without one (a sender of an earlier version)', () => {
    const h = header(nodeId('a'), nodeId('b'));
    const parts = [payloadOf(700), payloadOf(300)];
    const crc = crc32(Buffer.concat(parts));
    const done = decodeSnapshotChunk(chunk({ offset: 1000, done: true, totalBytes: 1000, payloadCrc32: crc }));
    expect(done.payloadCrc32).toBe(crc);
    expect(decodeSnapshotChunk(chunk({ offset: 1000, done: true, totalBytes: 1000 })).payloadCrc32).toBeUndefined();
    for (const last of [done, { ...done, payloadCrc32: undefined }]) {
      const seq = new SnapshotChunkSequence(MAX_SNAPSHOT_CHUNK_BYTES);
      seq.accept({ header: h, offset: 0, data: new Uint8Array(0), done: false, totalBytes: 0 });
      seq.accept({ header: undefined, offset: 0, data: parts[0] as Uint8Array, done: false, totalBytes: 0 });
      seq.accept({ header: undefined, offset: 700, data: parts[1] as Uint8Array, done: false, totalBytes: 0 });
      seq.accept(last);
      expect(seq.done).toBe(true);
    }
    const bytes = loadRaftProto().serializeSnapshotChunk({ header: null, offset: 0, data: new Uint8Array(), done: true, total_bytes: 0, payload_crc32: 2 ** 32 - 1 });
    expect(decodeSnapshotChunk(bytes).payloadCrc32).toBe(2 ** 32 - 1);
  });

  it('never sends snapshot data in the header', () => {
    const h = { ...header(nodeId('a'), nodeId('b')), snapshot: { ...header(nodeId('a'), nodeId('b')).snapshot, data: new Uint8Array(5) } };
    expect(decodeSnapshotChunk(chunk({ header: h })).header?.snapshot.data.byteLength).toBe(0);
  });

  it('accepts any split of a payload into contiguous chunks, and refuses a gap or overlap', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 64 }), { maxLength: 20 }), fc.integer({ min: -3, max: 3 }), fc.nat(), (sizes, shift, at) => {
        const chunks: SnapshotChunk[] = [{ header: header(nodeId('a'), nodeId('b')), offset: 0, data: new Uint8Array(0), done: false, totalBytes: 0 }];
        let off = 0;
        for (const n of sizes) {
          chunks.push({ header: undefined, offset: off, data: new Uint8Array(n), done: false, totalBytes: 0 });
          off += n;
        }
        chunks.push({ header: undefined, offset: off, data: new Uint8Array(0), done: true, totalBytes: off });
        const decoded = chunks.map((c) => decodeSnapshotChunk(encodeSnapshotChunk(c)));
        const ok = new SnapshotChunkSequence(64);
        for (const c of decoded) ok.accept(c);
        expect(ok.receivedBytes).toBe(off);
        // Shift the offset of one chunk after the header: the sequence refuses it.
        const i = 1 + (at % (decoded.length - 1));
        const target = decoded[i] as SnapshotChunk;
        if (shift === 0 || target.offset + shift < 0) return;
        const bad = new SnapshotChunkSequence(64);
        const broken = decoded.map((c, j) => (j === i ? { ...c, offset: c.offset + shift } : c));
        expect(() => broken.forEach((c) => bad.accept(c))).toThrow(WireDecodeError);
      }),
      { numRuns: 200 },
    );
  });

  it.each<[string, SnapshotChunk[], string]>([
    ['a first chunk without header', [{ header: undefined, offset: 0, data: new Uint8Array(1), done: false, totalBytes: 0 }], 'header'],
    [
      'a second header',
      [
        { header: header(nodeId('a'), nodeId('b')), offset: 0, data: new Uint8Array(0), done: false, totalBytes: 0 },
        { header: header(nodeId('a'), nodeId('b')), offset: 0, data: new Uint8Array(0), done: false, totalBytes: 0 },
      ],
      'header',
    ],
    [
      'a chunk above the limit',
      [{ header: header(nodeId('a'), nodeId('b')), offset: 0, data: new Uint8Array(9), done: false, totalBytes: 0 }],
      'data',
    ],
    [
      'a wrong total',
      [{ header: header(nodeId('a'), nodeId('b')), offset: 0, data: new Uint8Array(3), done: true, totalBytes: 4 }],
      'total_bytes',
    ],
    [
      'a payload whose CRC-32 is not the sender\'s',
      [{ header: header(nodeId('a'), nodeId('b')), offset: 0, data: Uint8Array.of(1, 2, 3), done: true, totalBytes: 3, payloadCrc32: crc32(Uint8Array.of(1, 2, 4)) }],
      'payload_crc32',
    ],
    [
      'a CRC-32 before done',
      [{ header: header(nodeId('a'), nodeId('b')), offset: 0, data: Uint8Array.of(1, 2, 3), done: false, totalBytes: 0, payloadCrc32: crc32(Uint8Array.of(1, 2, 3)) }],
      'payload_crc32',
    ],
    [
      'a chunk after done',
      [
        { header: header(nodeId('a'), nodeId('b')), offset: 0, data: new Uint8Array(0), done: true, totalBytes: 0 },
        { header: undefined, offset: 0, data: new Uint8Array(0), done: false, totalBytes: 0 },
      ],
      'done',
    ],
  ])('refuses %s', (_name, chunks, field) => {
    const seq = new SnapshotChunkSequence(8);
    let error: unknown;
    try {
      chunks.forEach((c) => seq.accept(c));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(WireDecodeError);
    expect((error as WireDecodeError).field).toBe(field);
  });

  it('refuses bytes that are not a chunk, and a header that is not an InstallSnapshot', () => {
    expect(() => decodeSnapshotChunk(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(WireDecodeError);
    const hb: Message = { type: 'Heartbeat', from: nodeId('a'), to: nodeId('b'), term: term(1), leaderCommit: logIndex(0), context: new Uint8Array() };
    const bytes = loadRaftProto().serializeSnapshotChunk({ header: toWire(hb), offset: 0, data: new Uint8Array(), done: false, total_bytes: 0 });
    let error: unknown;
    try {
      decodeSnapshotChunk(bytes);
    } catch (err) {
      error = err;
    }
    expect((error as WireDecodeError).field).toBe('header.body');
  });
});

describe('SnapshotChunkQueue', () => {
  it('asks the producer to pause at capacity and reports space as the consumer pulls', async () => {
    let spaces = 0;
    const q = new SnapshotChunkQueue(2, () => spaces++);
    expect(q.push(new Uint8Array([1]))).toBe(true);
    expect(q.push(new Uint8Array([2]))).toBe(false);
    const it = q[Symbol.asyncIterator]();
    expect((await it.next()).value).toEqual(new Uint8Array([1]));
    expect(spaces).toBe(1);
    q.end();
    expect((await it.next()).value).toEqual(new Uint8Array([2]));
    expect((await it.next()).done).toBe(true);
    expect(() => q[Symbol.asyncIterator]()).toThrow(/once/);
  });

  it('throws the failure to a waiting consumer, discarding buffered chunks', async () => {
    const q = new SnapshotChunkQueue(2, () => undefined);
    const it = q[Symbol.asyncIterator]();
    const pending = it.next();
    q.fail(new Error('gone'));
    await expect(pending).rejects.toThrow('gone');
    q.push(new Uint8Array([1]));
    await expect(it.next()).rejects.toThrow('gone');
  });
});

describe('§7 InstallSnapshot over GrpcTransport: streaming', () => {
  it('delivers a multi-chunk payload with its exact bytes and header, and resolves after the handler', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const payload = payloadOf(5 * MIB + 123);
    const got: { header?: InstallSnapshot; chunks: Uint8Array[]; handlerDone: boolean } = { chunks: [], handlerDone: false };
    b.transport.onSnapshot(async (m, chunks) => {
      got.header = m;
      for await (const c of chunks) got.chunks.push(Uint8Array.from(c));
      got.handlerDone = true;
    });
    const src = source(payload, DEFAULT_SNAPSHOT_CHUNK_BYTES);
    const h = header(a.id, b.id);
    await a.transport.sendSnapshot(h, src.chunks);
    expect(got.handlerDone).toBe(true);
    expect(got.header).toEqual(h);
    expect(got.chunks.length).toBe(6);
    expect(got.chunks.every((c) => c.byteLength <= DEFAULT_SNAPSHOT_CHUNK_BYTES)).toBe(true);
    expect(Buffer.compare(concat(got.chunks), Buffer.from(payload))).toBe(0);
    expect(src.state.closed).toBe(true);
    // The slot is free again: a second transfer to the same peer runs.
    await a.transport.sendSnapshot(header(a.id, b.id, 1001), source(payloadOf(10), 3).chunks);
    expect(got.header?.snapshot.metadata.index).toBe(1001);
  });

  it('sends the payload\'s CRC-32 on the done chunk', async () => {
    // A bare peer server that records the chunks it is sent.
    const server = new grpc.Server();
    const received: SnapshotChunk[] = [];
    const service = loadRaftProto().service;
    // The chunks as bytes: the service's own deserializer would hand the handler objects.
    const raw = { ...service, InstallSnapshot: { ...(service['InstallSnapshot'] as grpc.MethodDefinition<Buffer, object>), requestDeserialize: (b: Buffer) => b } };
    server.addService(raw as grpc.ServiceDefinition, {
      Stream: (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, {}),
      InstallSnapshot: (call: grpc.ServerReadableStream<Buffer, object>, callback: grpc.sendUnaryData<object>) => {
        call.sendMetadata(new grpc.Metadata());
        call.on('data', (bytes: Buffer) => received.push(decodeSnapshotChunk(bytes)));
        call.on('end', () => callback(null, { received_bytes: received.at(-1)?.totalBytes ?? 0 }));
      },
    });
    const port = await bind(server);
    const a = new GrpcTransport({ id: nodeId('a'), peers: { b: `127.0.0.1:${port}` } });
    try {
      const payload = payloadOf(3 * 1000 + 7);
      await a.sendSnapshot(header(nodeId('a'), nodeId('b')), source(payload, 1000).chunks);
      const done = received.at(-1);
      expect(done?.done).toBe(true);
      expect(done?.payloadCrc32).toBe(crc32(payload));
      expect(received.slice(0, -1).every((c) => c.payloadCrc32 === undefined)).toBe(true);
    } finally {
      await a.close();
      server.forceShutdown();
    }
  });

  it('delivers an empty payload', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    let count = -1;
    b.transport.onSnapshot(async (_m, chunks) => {
      count = 0;
      for await (const _ of chunks) count++;
    });
    await a.transport.sendSnapshot(header(a.id, b.id), source(new Uint8Array(0), 1).chunks);
    expect(count).toBe(0);
  });

  it('keeps a slow consumer from making the sender pull the whole payload (back-pressure)', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const CHUNK_BYTES = 256 * 1024;
    const CHUNKS = 96;
    const payload = payloadOf(CHUNK_BYTES * CHUNKS);
    const hold = gate();
    let consumed = 0;
    const received: Uint8Array[] = [];
    b.transport.onSnapshot(async (_m, chunks) => {
      for await (const c of chunks) {
        consumed++;
        received.push(c);
        if (consumed === 1) await hold.promise;
      }
    });
    const src = source(payload, CHUNK_BYTES);
    const transfer = settle(a.transport.sendSnapshot(header(a.id, b.id), src.chunks));
    await waitFor('the consumer holds the first chunk', () => consumed === 1);
    const pulled = await settled('the sender stops pulling', () => src.state.pulled);
    expect(consumed).toBe(1);
    expect(pulled - consumed).toBeLessThanOrEqual(MAX_OUTSTANDING_CHUNKS);
    expect(pulled).toBeLessThan(CHUNKS);
    expect(transfer.done()).toBe(false);
    hold.open();
    const outcome = await transfer.outcome;
    expect(outcome.ok).toBe(true);
    expect(consumed).toBe(CHUNKS);
    expect(Buffer.compare(concat(received), Buffer.from(payload))).toBe(0);
  });

  it('keeps messages flowing both ways on the peer stream while a transfer is held up', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    await waitConnected(a, [b]);
    await waitConnected(b, [a]);
    const events: string[] = [];
    const hold = gate();
    let consumed = 0;
    b.transport.onSnapshot(async (_m, chunks) => {
      for await (const _ of chunks) {
        consumed++;
        if (consumed === 1) await hold.promise;
      }
    });
    b.transport.onMessage((m) => {
      b.received.push(m);
      events.push(`b got ${m.type}`);
    });
    a.transport.onMessage((m) => {
      a.received.push(m);
      events.push(`a got ${m.type}`);
    });
    const transfer = settle(
      a.transport.sendSnapshot(header(a.id, b.id), source(payloadOf(8 * MIB), DEFAULT_SNAPSHOT_CHUNK_BYTES).chunks).then(() => {
        events.push('transfer done');
      }),
    );
    await waitFor('the transfer is under way', () => consumed === 1);
    const hb = (from: NodeId, to: NodeId): Message => ({ type: 'Heartbeat', from, to, term: term(4), leaderCommit: logIndex(7), context: new Uint8Array([1]) });
    a.transport.send([hb(a.id, b.id)]);
    b.transport.send([hb(b.id, a.id)]);
    await waitFor('heartbeats delivered both ways', () => b.received.length === 1 && a.received.length === 1);
    expect(transfer.done()).toBe(false);
    hold.open();
    expect((await transfer.outcome).ok).toBe(true);
    expect(events.indexOf('transfer done')).toBe(events.length - 1);
    expect(events.slice(0, 2).sort()).toEqual(['a got Heartbeat', 'b got Heartbeat']);
  });
});

describe('§7 InstallSnapshot over GrpcTransport: failures', () => {
  it('rejects the send when the receiver\'s handler rejects, with its message', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    b.transport.onSnapshot(async (_m, chunks) => {
      for await (const _ of chunks) {
        // consume everything, then fail (e.g. the disk is full)
      }
      throw new Error('disk full');
    });
    const err = await rejection(a.transport.sendSnapshot(header(a.id, b.id), source(payloadOf(3 * MIB), MIB).chunks), grpc.status.UNKNOWN);
    expect(err.message).toMatch(/disk full/);
  });

  it('stops a sender mid-way when the handler rejects early, releasing its iterator', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    b.transport.onSnapshot(async (_m, chunks) => {
      for await (const _ of chunks) throw new Error('not wanted');
    });
    const src = source(payloadOf(16 * MIB), MIB);
    const err = await rejection(a.transport.sendSnapshot(header(a.id, b.id), src.chunks), grpc.status.UNKNOWN);
    expect(err.message).toMatch(/not wanted/);
    expect(src.state.closed).toBe(true);
    expect(src.state.pulled).toBeLessThan(16);
  });

  it('fails the receiver\'s iterator when the sender\'s iterator throws mid-way (truncated)', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    let seen: unknown;
    let consumed = 0;
    const handled = gate();
    const firstConsumed = gate();
    b.transport.onSnapshot(async (_m, chunks) => {
      try {
        for await (const _ of chunks) {
          consumed++;
          firstConsumed.open();
        }
      } catch (err) {
        seen = err;
        throw err;
      } finally {
        handled.open();
      }
    });
    // The read fails once the receiver is consuming, so its handler is running when it happens.
    const src = source(payloadOf(4 * MIB), MIB, { failAfter: 2, failWhen: firstConsumed.promise });
    const err = await rejection(a.transport.sendSnapshot(header(a.id, b.id), src.chunks), grpc.status.ABORTED);
    expect((err.cause as Error).message).toBe('disk read failed');
    await handled.promise;
    expect(seen).toBeInstanceOf(SnapshotTransferError);
    expect(consumed).toBeLessThanOrEqual(2);
  });

  it('refuses a second concurrent send to the same peer at once, without touching its chunks', async () => {
    expect(MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER).toBe(1);
    const [a, b, c] = (await nodes('a', 'b', 'c')) as [TestNode, TestNode, TestNode];
    const hold = gate();
    for (const n of [b, c]) {
      n.transport.onSnapshot(async (_m, chunks) => {
        await hold.promise;
        for await (const _ of chunks) {
          // drain
        }
      });
    }
    const first = settle(a.transport.sendSnapshot(header(a.id, b.id), source(payloadOf(2 * MIB), MIB).chunks));
    const second = source(payloadOf(10), 5);
    await rejection(a.transport.sendSnapshot(header(a.id, b.id), second.chunks), grpc.status.RESOURCE_EXHAUSTED);
    expect(second.state.pulled).toBe(0);
    // Another peer is not affected.
    const toC = settle(a.transport.sendSnapshot(header(a.id, c.id), source(payloadOf(10), 5).chunks));
    hold.open();
    expect((await first.outcome).ok).toBe(true);
    expect((await toC.outcome).ok).toBe(true);
  });

  it('refuses a chunk above MAX_SNAPSHOT_CHUNK_BYTES on the sender, and on the receiver', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    let seen: unknown;
    let total = 0;
    b.transport.onSnapshot(async (_m, chunks) => {
      try {
        for await (const c of chunks) total += c.byteLength;
      } catch (err) {
        seen = err;
        throw err;
      }
    });
    // Exactly the limit is fine.
    await a.transport.sendSnapshot(header(a.id, b.id), source(payloadOf(MAX_SNAPSHOT_CHUNK_BYTES), MAX_SNAPSHOT_CHUNK_BYTES).chunks);
    expect(total).toBe(MAX_SNAPSHOT_CHUNK_BYTES);
    // One byte more: the sender refuses it and cancels the call.
    const src = source(payloadOf(MAX_SNAPSHOT_CHUNK_BYTES + 1), MAX_SNAPSHOT_CHUNK_BYTES + 1);
    const err = await rejection(a.transport.sendSnapshot(header(a.id, b.id), src.chunks), grpc.status.INVALID_ARGUMENT);
    expect(err.message).toMatch(/MAX_SNAPSHOT_CHUNK_BYTES/);
    expect(src.state.closed).toBe(true);
    // A sender that does not check: the receiver refuses the chunk.
    seen = undefined;
    const status = await rawTransfer(b, [
      chunk({ header: header(a.id, b.id) }),
      chunk({ data: new Uint8Array(MAX_SNAPSHOT_CHUNK_BYTES + 1) }),
      chunk({ offset: MAX_SNAPSHOT_CHUNK_BYTES + 1, done: true, totalBytes: MAX_SNAPSHOT_CHUNK_BYTES + 1 }),
    ]);
    expect(status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status?.details).toMatch(/exceeds/);
    await waitFor('the handler sees the failure', () => seen !== undefined);
    expect((seen as SnapshotTransferError).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('answers INVALID_ARGUMENT to malformed, misaddressed or truncated transfers, and fails the handler\'s iterator', async () => {
    const [b] = (await nodes('b')) as [TestNode];
    const failures: SnapshotTransferError[] = [];
    let completed = 0;
    b.transport.onSnapshot(async (_m, chunks) => {
      try {
        for await (const _ of chunks) {
          // consume
        }
        completed++;
      } catch (err) {
        failures.push(err as SnapshotTransferError);
        throw err;
      }
    });
    const h = header(nodeId('a'), b.id);
    const cases: [string, Buffer[], RegExp, boolean][] = [
      ['not protobuf', [Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])], /chunk/, false],
      ['no header', [chunk({ data: new Uint8Array(3) })], /header/, false],
      ['misaddressed', [chunk({ header: header(nodeId('a'), nodeId('c')) })], /addressed to c/, false],
      ['a gap', [chunk({ header: h }), chunk({ data: new Uint8Array(3) }), chunk({ offset: 4, data: new Uint8Array(3) })], /offset/, true],
      ['a wrong total', [chunk({ header: h }), chunk({ data: new Uint8Array(3) }), chunk({ offset: 3, done: true, totalBytes: 9 })], /total_bytes/, true],
      ['damaged on the way', [chunk({ header: h }), chunk({ data: Uint8Array.of(1, 2, 3) }), chunk({ offset: 3, done: true, totalBytes: 3, payloadCrc32: crc32(Uint8Array.of(1, 2, 4)) })], /payload_crc32.*damaged on the way/, true],
      ['truncated', [chunk({ header: h }), chunk({ data: new Uint8Array(3) })], /without its done chunk/, true],
      ['empty', [], /without its done chunk/, false],
    ];
    for (const [name, writes, details, handlerStarted] of cases) {
      const before = failures.length;
      const status = await rawTransfer(b, writes);
      expect(status?.code, name).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status?.details, name).toMatch(details);
      if (handlerStarted) await waitFor(`${name}: the handler sees the failure`, () => failures.length === before + 1);
    }
    expect(completed).toBe(0);
    expect(failures.every((f) => f.code === grpc.status.INVALID_ARGUMENT)).toBe(true);
    // The server is still fine: a good transfer goes through.
    const ok = await rawTransfer(b, [chunk({ header: h }), chunk({ data: new Uint8Array(3) }), chunk({ offset: 3, done: true, totalBytes: 3 })]);
    expect(ok).toBeNull();
    expect(completed).toBe(1);
  });

  it('answers FAILED_PRECONDITION without a handler, and ABORTED when the handler finishes early', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    await rejection(a.transport.sendSnapshot(header(a.id, b.id), source(payloadOf(10), 5).chunks), grpc.status.FAILED_PRECONDITION);
    b.transport.onSnapshot(async () => undefined);
    await rejection(a.transport.sendSnapshot(header(a.id, b.id), source(payloadOf(3 * MIB), MIB).chunks), grpc.status.ABORTED);
  });

  it('rejects at once for an unknown peer, a payload in the header, or a closed transport', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const src = source(payloadOf(10), 5);
    await rejection(a.transport.sendSnapshot(header(a.id, nodeId('nobody')), src.chunks), grpc.status.NOT_FOUND);
    const withData: InstallSnapshot = { ...header(a.id, b.id), snapshot: { ...header(a.id, b.id).snapshot, data: new Uint8Array(1) } };
    await rejection(a.transport.sendSnapshot(withData, src.chunks), grpc.status.INVALID_ARGUMENT);
    expect(src.state.pulled).toBe(0);
    await a.transport.close();
    await rejection(a.transport.sendSnapshot(header(a.id, b.id), src.chunks), grpc.status.UNAVAILABLE);
  });

  it('rejects with UNAVAILABLE when the peer is down', async () => {
    const probe = new grpc.Server();
    const port = await bind(probe);
    probe.forceShutdown();
    const [a] = (await nodes('a')) as [TestNode];
    a.transport.setPeer(nodeId('down'), `127.0.0.1:${port}`);
    const src = source(payloadOf(10), 5);
    await rejection(a.transport.sendSnapshot(header(a.id, nodeId('down')), src.chunks), grpc.status.UNAVAILABLE);
    expect(src.state.pulled === 0 || src.state.closed).toBe(true);
  });
});

describe('§7 InstallSnapshot over GrpcTransport: cancellation', () => {
  /** Counts of the process's active handles by kind. */
  function resources(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
    return counts;
  }
  const IO_KINDS = ['TCPSocketWrap', 'TCPServerWrap'] as const;

  /** Starts a transfer a -> b that b's handler holds after its first chunk; returns what to observe. */
  async function heldTransfer(a: TestNode, b: TestNode) {
    const seen: { err?: unknown } = {};
    let consumed = 0;
    const handlerEnded = gate();
    b.transport.onSnapshot(async (_m, chunks) => {
      try {
        for await (const _ of chunks) {
          consumed++;
          // Slow consumer: a little pause per chunk keeps the transfer in flight.
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      } catch (err) {
        seen.err = err;
        throw err;
      } finally {
        handlerEnded.open();
      }
    });
    const src = source(payloadOf(32 * MIB), MIB);
    const transfer = settle(a.transport.sendSnapshot(header(a.id, b.id), src.chunks));
    await waitFor('the transfer is under way', () => consumed >= 1);
    return { seen, src, transfer, handlerEnded: handlerEnded.promise };
  }

  it('close() on the sender cancels the transfer on both sides and leaves nothing running', async () => {
    const baseline = resources();
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const { seen, src, transfer, handlerEnded } = await heldTransfer(a, b);
    await a.transport.close();
    // close() waited for the transfer: it is settled and its iterator released.
    expect(transfer.done()).toBe(true);
    expect(src.state.closed).toBe(true);
    const outcome = await transfer.outcome;
    expect(outcome.ok).toBe(false);
    expect(((outcome as { err: SnapshotTransferError }).err).code).toBe(grpc.status.CANCELLED);
    await handlerEnded;
    expect(seen.err).toBeInstanceOf(SnapshotTransferError);
    await Promise.all(running.map(stopNode));
    running = [];
    await waitFor('handles back to the baseline', () => {
      const now = resources();
      return IO_KINDS.every((kind) => (now.get(kind) ?? 0) <= (baseline.get(kind) ?? 0));
    });
  });

  it('close() on the receiver fails the handler\'s iterator and the sender\'s promise', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const { seen, src, transfer, handlerEnded } = await heldTransfer(a, b);
    await b.transport.close();
    await handlerEnded;
    expect((seen.err as SnapshotTransferError).code).toBe(grpc.status.UNAVAILABLE);
    const outcome = await transfer.outcome;
    expect(outcome.ok).toBe(false);
    expect(((outcome as { err: SnapshotTransferError }).err).code).toBe(grpc.status.UNAVAILABLE);
    expect(src.state.closed).toBe(true);
  });

  it('removePeer cancels a transfer to that peer', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const { transfer, handlerEnded } = await heldTransfer(a, b);
    a.transport.removePeer(b.id);
    const outcome = await transfer.outcome;
    expect(((outcome as { err: SnapshotTransferError }).err).code).toBe(grpc.status.CANCELLED);
    await handlerEnded;
  });
});
