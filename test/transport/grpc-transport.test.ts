import { describe, it, expect, afterEach } from 'vitest';
import fc from 'fast-check';
import * as grpc from '@grpc/grpc-js';
import { logIndex, MESSAGE_TYPES, nodeId, term, type Message, type NodeId } from '../../src/raft/types.js';
import { encodeBatch, loadRaftProto, RAFT_STREAM_METHOD_PATH, toWire, type WireMessage } from '../../src/transport/codec.js';
import {
  encodeSnapshotFormats,
  GrpcTransport,
  MAX_ADVERTISED_SNAPSHOT_FORMATS,
  MAX_BATCH_SIZE_BYTES,
  MAX_MESSAGE_SIZE_BYTES,
  MAX_QUEUED_MESSAGES_WHILE_DOWN,
  parseSnapshotFormats,
} from '../../src/transport/grpc-transport.js';
import { messageArbitraries } from './arbitraries.js';
import { bind, connectAll, startNode, stopNode, waitConnected, waitFor, type TestNode } from './helpers.js';

let running: TestNode[] = [];
const extraTransports: GrpcTransport[] = [];

async function nodes(...ids: string[]): Promise<TestNode[]> {
  const started = await Promise.all(ids.map((id) => startNode(id)));
  running.push(...started);
  connectAll(started);
  return started;
}

afterEach(async () => {
  await Promise.all([...running.map(stopNode), ...extraTransports.map((t) => t.close())]);
  running = [];
  extraTransports.length = 0;
});

/**
 * One message of every type that travels on the peer stream from `from` to `to`, numbered by
 * `seq` through the term field (InstallSnapshot travels only with its payload, on its own call).
 */
function oneOfEach(from: NodeId, to: NodeId, seq: number): Message[] {
  const byType = messageArbitraries({ nodeIds: [from], maxBytes: 32, maxNumber: 99 });
  return MESSAGE_TYPES.filter((type) => type !== 'InstallSnapshot').map((type, i) => {
    const [sample] = fc.sample(byType[type] as fc.Arbitrary<Message>, { numRuns: 1, seed: seq * 100 + i });
    return { ...(sample as Message), from, to, term: term(seq * 100 + i) };
  });
}

const heartbeat = (from: NodeId, to: NodeId, n: number): Message => ({
  type: 'Heartbeat',
  from,
  to,
  term: term(1),
  leaderCommit: logIndex(n),
  context: new Uint8Array([n & 0xff]),
});

const seqOf = (m: Message): number => (m.type === 'Heartbeat' ? m.leaderCommit : m.term);

describe('GrpcTransport: delivery', () => {
  it('delivers messages of every type between two nodes, in order, both ways', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const toB = [...oneOfEach(a.id, b.id, 1), ...oneOfEach(a.id, b.id, 2)];
    const toA = oneOfEach(b.id, a.id, 3);
    a.transport.send(toB);
    b.transport.send(toA);
    await waitFor('b receives all', () => b.received.length === toB.length);
    await waitFor('a receives all', () => a.received.length === toA.length);
    expect(b.received).toEqual(toB);
    expect(a.received).toEqual(toA);
    expect(a.transport.stats().peers['b']?.droppedMessages).toBe(0);
  });

  it('keeps per-peer order among three nodes across many turns', async () => {
    const [a, b, c] = (await nodes('a', 'b', 'c')) as [TestNode, TestNode, TestNode];
    const TURNS = 20;
    const PER_TURN = 10;
    for (let t = 0; t < TURNS; t++) {
      const batch: Message[] = [];
      for (let i = 0; i < PER_TURN; i++) {
        const n = t * PER_TURN + i;
        batch.push(heartbeat(a.id, b.id, n), heartbeat(a.id, c.id, n), heartbeat(c.id, b.id, n));
      }
      a.transport.send(batch.filter((m) => m.from === a.id));
      c.transport.send(batch.filter((m) => m.from === c.id));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const total = TURNS * PER_TURN;
    await waitFor('b receives from a and c', () => b.received.length === 2 * total);
    await waitFor('c receives from a', () => c.received.length === total);
    const expected = Array.from({ length: total }, (_, n) => n);
    expect(b.received.filter((m) => m.from === a.id).map(seqOf)).toEqual(expected);
    expect(b.received.filter((m) => m.from === c.id).map(seqOf)).toEqual(expected);
    expect(c.received.map(seqOf)).toEqual(expected);
    expect(a.received).toEqual([]);
  });

  it('coalesces the messages of one event-loop turn into one batch', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    await waitConnected(a, [b]);
    const before = a.transport.stats().peers['b'];
    const receivedBefore = b.transport.stats().receivedBatches;
    const N = 500;
    for (let n = 0; n < N; n++) a.transport.send([heartbeat(a.id, b.id, n)]);
    await waitFor('b receives all', () => b.received.length === N);
    const after = a.transport.stats().peers['b'];
    expect((after?.sentBatches ?? 0) - (before?.sentBatches ?? 0)).toBe(1);
    expect((after?.sentMessages ?? 0) - (before?.sentMessages ?? 0)).toBe(N);
    expect(b.transport.stats().receivedBatches - receivedBefore).toBe(1);
    expect(b.received.map(seqOf)).toEqual(Array.from({ length: N }, (_, n) => n));
  });

  it('splits a large turn into batches and delivers all of it in order (write back-pressure)', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    await waitConnected(a, [b]);
    // More 1 MiB batches in one turn than a gRPC call buffers (16 writes) before asking to drain.
    const N = 2400;
    const DATA_BYTES = 8 * 1024;
    const msgs: Message[] = Array.from({ length: N }, (_, n) => ({
      type: 'AppendEntries',
      from: a.id,
      to: b.id,
      term: term(n + 1),
      prevLogIndex: logIndex(n),
      prevLogTerm: term(0),
      entries: [{ term: term(1), index: logIndex(n + 1), type: 'normal', data: new Uint8Array(DATA_BYTES).fill(n & 0xff) }],
      leaderCommit: logIndex(0),
    }));
    a.transport.send(msgs);
    await waitFor('b receives all', () => b.received.length === N);
    expect(b.received.map((m) => m.term)).toEqual(msgs.map((m) => m.term));
    expect(b.received[N - 1]).toEqual(msgs[N - 1]);
    const stats = a.transport.stats().peers['b'];
    expect(stats?.droppedMessages).toBe(0);
    expect(stats?.sentBatches).toBeGreaterThanOrEqual(Math.floor((N * DATA_BYTES) / MAX_BATCH_SIZE_BYTES));
    expect(stats?.drainWaits).toBeGreaterThanOrEqual(1);
  });

  it('carries a message larger than gRPC\'s default 4 MiB limit as one message', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    // Connected first: a peer whose stream is not open keeps at most MAX_QUEUED_BYTES_WHILE_DOWN.
    await waitConnected(a, [b]);
    const data = new Uint8Array(5 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = i % 251;
    const big: Message = {
      type: 'AppendEntries',
      from: a.id,
      to: b.id,
      term: term(4),
      prevLogIndex: logIndex(999),
      prevLogTerm: term(3),
      entries: [{ index: logIndex(1000), term: term(4), type: 'normal', data }],
      leaderCommit: logIndex(999),
    };
    a.transport.send([big]);
    await waitFor('b receives the message', () => b.received.length === 1);
    const got = b.received[0] as Extract<Message, { type: 'AppendEntries' }>;
    expect(got.type).toBe('AppendEntries');
    // Compared as buffers: a deep equality walk over 5 Mi elements is needlessly slow.
    expect(Buffer.compare(Buffer.from(got.entries[0]?.data ?? []), Buffer.from(data))).toBe(0);
    expect(b.transport.stats().receivedBatches).toBe(1);
  });

  it('delivers again after the peer restarts on the same port', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    a.transport.send([heartbeat(a.id, b.id, 1)]);
    await waitFor('b receives the first message', () => b.received.length === 1);

    // b goes down: its streams end and a notices.
    running = running.filter((n) => n !== b);
    await b.transport.close();
    b.server.forceShutdown();
    await waitFor('a sees b down', () => a.transport.stats().peers['b']?.connected === false);

    // Sent while b is down: kept in a's queue.
    const whileDown = [2, 3, 4, 5].map((n) => heartbeat(a.id, b.id, n));
    a.transport.send(whileDown);

    const b2 = await startNode('b', b.port);
    running.push(b2);
    await waitFor('restarted b receives the queued messages', () => b2.received.length === whileDown.length);
    expect(b2.received).toEqual(whileDown);
    a.transport.send([heartbeat(a.id, b.id, 6)]);
    await waitFor('restarted b receives a new message', () => b2.received.length === whileDown.length + 1);
    expect(seqOf(b2.received[whileDown.length] as Message)).toBe(6);
    expect(a.transport.stats().peers['b']?.reconnects).toBeGreaterThanOrEqual(1);
  });

  it('reconnects at once when the peer is heard from, instead of waiting out its back-off', async () => {
    const probe = new grpc.Server();
    const port = await bind(probe);
    probe.forceShutdown();
    // A back-off of ten minutes: without a reconnect on hearing from b, a's link would stay down.
    const a = await startNode('a', 0, { reconnectBackoffMaxMs: 600_000 });
    running.push(a);
    a.transport.setPeer(nodeId('b'), `127.0.0.1:${port}`);
    a.transport.send([heartbeat(a.id, nodeId('b'), 1)]);
    await new Promise((r) => setTimeout(r, 300));
    expect(a.transport.stats().peers['b']?.connected).toBe(false);
    const b = await startNode('b', port);
    running.push(b);
    b.transport.setPeer(a.id, a.address);
    b.transport.send([heartbeat(b.id, a.id, 2)]);
    await waitFor('a hears from b', () => a.received.length === 1);
    await waitFor('b receives what a queued while it was down', () => b.received.length === 1);
    expect(seqOf(b.received[0] as Message)).toBe(1);
    expect(a.transport.stats().peers['b']?.heardFromReconnects).toBeGreaterThanOrEqual(1);
  });

  it('learns a forgotten peer back from the stream it keeps writing on, so its answers reach it', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    running.push(a, b);
    // b's outbound side, advertising the address where b's server (and handler) listens.
    const b2 = new GrpcTransport({ id: b.id, peers: { a: a.address }, advertiseAddress: b.address });
    extraTransports.push(b2);
    a.transport.setPeer(b.id, b.address);
    b2.send([heartbeat(b.id, a.id, 1)]);
    await waitFor('a hears from b', () => a.received.length === 1);
    // a forgets b (a membership change it applied), while b's stream to a stays open.
    a.transport.removePeer(b.id);
    expect(a.transport.stats().peers['b']).toBeUndefined();
    b2.send([heartbeat(b.id, a.id, 2)]);
    await waitFor('a hears from b again', () => a.received.length === 2);
    expect(a.transport.stats().peers['b']?.address).toBe(b.address);
    a.transport.send([heartbeat(a.id, b.id, 3)]);
    await waitFor('b receives a\'s answer', () => b.received.length === 1);
  });

  it('follows a peer to its new address', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const b2 = await startNode('b');
    running.push(b2);
    a.transport.setPeer(b.id, b2.address);
    a.transport.send([heartbeat(a.id, b.id, 9)]);
    await waitFor('new b receives', () => b2.received.length === 1);
    expect(b.received).toEqual([]);
    expect(a.transport.stats().peers['b']?.address).toBe(b2.address);
  });
});

describe('GrpcTransport: snapshot formats a peer reads', () => {
  it('learns the formats a peer advertises on its stream, and forgets them when it advertises none or a malformed list', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    running.push(a, b);
    a.transport.setPeer(b.id, b.address);
    expect(a.transport.snapshotFormatsOf(b.id)).toBeUndefined();
    // b's outbound side, one transport per version of b.
    const speak = async (n: number, options: { snapshotFormats?: readonly number[] }): Promise<void> => {
      const b2 = new GrpcTransport({ id: b.id, peers: { a: a.address }, ...options });
      extraTransports.push(b2);
      b2.send([heartbeat(b.id, a.id, n)]);
      await waitFor(`a hears from b (${n})`, () => a.received.length === n);
      await b2.close();
    };
    await speak(1, { snapshotFormats: [1, 2, 3] });
    expect(a.transport.snapshotFormatsOf(b.id)).toEqual([1, 2, 3]);
    await speak(2, {});
    expect(a.transport.snapshotFormatsOf(b.id)).toBeUndefined();
    await speak(3, { snapshotFormats: [2, 7] });
    expect(a.transport.snapshotFormatsOf(b.id)).toEqual([2, 7]);
    await speak(4, { snapshotFormats: [0] });
    expect(a.transport.snapshotFormatsOf(b.id)).toBeUndefined();
    a.transport.removePeer(b.id);
    expect(a.transport.snapshotFormatsOf(b.id)).toBeUndefined();
  });

  it('reads a raft-snapshot-formats value only as 1-16 comma-separated integers in 1..999', () => {
    expect(parseSnapshotFormats(encodeSnapshotFormats([1, 2, 3]))).toEqual([1, 2, 3]);
    expect(parseSnapshotFormats('999')).toEqual([999]);
    for (const bad of ['', '1,', ',1', '1,,2', '0', '1000', '-1', '1.5', ' 1', 'x', Array.from({ length: MAX_ADVERTISED_SNAPSHOT_FORMATS + 1 }, () => '1').join(',')]) {
      expect(parseSnapshotFormats(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe('GrpcTransport: dropping', () => {
  it('drops messages for an unknown or removed peer without throwing', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    expect(() => a.transport.send([heartbeat(a.id, nodeId('nobody'), 1), heartbeat(a.id, a.id, 2)])).not.toThrow();
    expect(a.transport.stats().unknownPeerDropped).toBe(2);
    a.transport.send([heartbeat(a.id, b.id, 3)]);
    await waitFor('b still receives', () => b.received.length === 1);
    a.transport.removePeer(b.id);
    expect(() => a.transport.send([heartbeat(a.id, b.id, 4)])).not.toThrow();
    expect(a.transport.stats().unknownPeerDropped).toBe(3);
    expect(a.transport.stats().peers['b']).toBeUndefined();
  });

  it('drops a message larger than MAX_MESSAGE_SIZE_BYTES at send', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const huge: Message = {
      type: 'AppendEntries',
      from: a.id,
      to: b.id,
      term: term(1),
      prevLogIndex: logIndex(0),
      prevLogTerm: term(0),
      entries: [{ index: logIndex(1), term: term(1), type: 'normal', data: new Uint8Array(MAX_MESSAGE_SIZE_BYTES + 1) }],
      leaderCommit: logIndex(0),
    };
    expect(() => a.transport.send([huge, heartbeat(a.id, b.id, 7)])).not.toThrow();
    expect(a.transport.stats().peers['b']?.droppedMessages).toBe(1);
    await waitFor('b receives the small message', () => b.received.length === 1);
    expect(seqOf(b.received[0] as Message)).toBe(7);
  });

  it('keeps only a little for a peer that is down, dropping the oldest', async () => {
    // A port with nothing listening: bind, note the port, shut down.
    const probe = new grpc.Server();
    const port = await bind(probe);
    probe.forceShutdown();
    const t = new GrpcTransport({ id: nodeId('a'), peers: { a: '127.0.0.1:1', down: `127.0.0.1:${port}` } });
    extraTransports.push(t);
    const EXTRA = 100;
    const msgs = Array.from({ length: MAX_QUEUED_MESSAGES_WHILE_DOWN + EXTRA }, (_, n) => heartbeat(t.id, nodeId('down'), n));
    t.send(msgs);
    const s = t.stats();
    expect(Object.keys(s.peers)).toEqual(['down']);
    expect(s.peers['down']?.queuedMessages).toBe(MAX_QUEUED_MESSAGES_WHILE_DOWN);
    expect(s.peers['down']?.droppedMessages).toBe(EXTRA);
    expect(s.peers['down']?.connected).toBe(false);
  });

  it('rejects an empty id or address with a TypeError naming it', () => {
    expect(() => new GrpcTransport({ id: nodeId(''), peers: {} })).toThrow(/id/);
    expect(() => new GrpcTransport({ id: nodeId('a'), peers: { b: '' } })).toThrow(/address of peer "b"/);
  });
});

describe('GrpcTransport: inbound validation', () => {
  /** Opens a raw stream to `node`'s server and writes `writes`, then ends it. */
  async function rawStream(node: TestNode, writes: Buffer[]): Promise<grpc.ServiceError | null> {
    const client = new grpc.Client(node.address, grpc.credentials.createInsecure());
    try {
      return await new Promise((resolve) => {
        const call = client.makeClientStreamRequest<Buffer, unknown>(
          RAFT_STREAM_METHOD_PATH,
          (b) => b,
          loadRaftProto().deserializeAck,
          (err) => resolve(err),
        );
        for (const w of writes) call.write(w);
        call.end();
      });
    } finally {
      client.close();
    }
  }

  it('drops malformed batches and messages, and those addressed to another node, keeping the stream', async () => {
    const [b] = (await nodes('b')) as [TestNode];
    const good = heartbeat(nodeId('a'), b.id, 1);
    const wire = toWire(good);
    const { serializeBatch } = loadRaftProto();
    const badEnum = {
      ...toWire({ type: 'AppendEntries', from: nodeId('a'), to: b.id, term: term(1), prevLogIndex: logIndex(0), prevLogTerm: term(0), entries: [{ term: term(1), index: logIndex(1), type: 'normal', data: new Uint8Array(1) }], leaderCommit: logIndex(0) }),
    } as WireMessage & { append_entries: { entries: { type: unknown }[] } };
    (badEnum.append_entries.entries[0] as { type: unknown }).type = 9;
    const noBody = { from: 'a', to: b.id, term: 1 } as unknown as WireMessage;
    const writes = [
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), // not protobuf at all
      serializeBatch({ messages: [badEnum, noBody] }), // two malformed messages
      encodeBatch([heartbeat(nodeId('a'), nodeId('c'), 2)]), // addressed to c
      serializeBatch({ messages: [wire] }),
    ];
    const status = await rawStream(b, writes);
    expect(status).toBeNull();
    expect(b.received).toEqual([good]);
    const s = b.transport.stats();
    expect(s.malformedDropped).toBe(3);
    expect(s.misaddressedDropped).toBe(1);
    expect(s.receivedMessages).toBe(1);
  });

  it('never carries an InstallSnapshot on the peer stream: dropped at send, and dropped on arrival', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const snap: Message = {
      type: 'InstallSnapshot',
      from: a.id,
      to: b.id,
      term: term(4),
      snapshot: { metadata: { index: logIndex(1000), term: term(3), confState: { voters: [a.id, b.id], learners: [] } }, data: new Uint8Array(0) },
    };
    a.transport.send([snap, heartbeat(a.id, b.id, 1)]);
    await waitFor('b receives the heartbeat', () => b.received.length === 1);
    expect(b.received[0]?.type).toBe('Heartbeat');
    expect(a.transport.stats().snapshotOnStreamDropped).toBe(1);
    // A peer that writes one on the stream anyway (a raw batch) gets it dropped on arrival.
    expect(await rawStream(b, [encodeBatch([snap, heartbeat(a.id, b.id, 2)])])).toBeNull();
    await waitFor('b receives the second heartbeat', () => b.received.length === 2);
    expect(b.received.map((m) => m.type)).toEqual(['Heartbeat', 'Heartbeat']);
    expect(b.transport.stats().malformedDropped).toBe(1);
  });

  it('keeps delivering when the handler throws', async () => {
    const [a, b] = (await nodes('a', 'b')) as [TestNode, TestNode];
    const got: Message[] = [];
    b.transport.onMessage((m) => {
      got.push(m);
      if (seqOf(m) === 1) throw new Error('handler failure');
    });
    a.transport.send([heartbeat(a.id, b.id, 1), heartbeat(a.id, b.id, 2)]);
    await waitFor('both delivered', () => got.length === 2);
    expect(got.map(seqOf)).toEqual([1, 2]);
  });
});
