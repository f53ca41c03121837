/**
 * Mutual TLS on the peer transport, in process: streams and snapshot transfers between members
 * with cluster certificates work; a node dialing an address where another member answers (a
 * stale or hijacked address) never opens its stream, its snapshot transfer fails, and its leader
 * link refuses the call; a snapshot call whose certificate names another member is refused; a
 * message whose `from` is not the stream's `raft-from` is dropped even without TLS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GrpcLeaderLink } from '../../src/api/grpc-service.js';
import { initCerts, type CertFiles } from '../../src/auth/certs.js';
import { grpcServerCredentials, loadTlsFiles, type TlsMaterial } from '../../src/auth/tls.js';
import { ApiError } from '../../src/api/status.js';
import { logIndex, nodeId, term, type InstallSnapshot, type Message, type NodeId } from '../../src/raft/types.js';
import { GrpcTransport, PEER_SERVER_OPTIONS, SnapshotTransferError } from '../../src/transport/grpc-transport.js';
import { encodeBatch, encodeSnapshotChunk, loadRaftProto, RAFT_INSTALL_SNAPSHOT_METHOD_PATH, RAFT_STREAM_METHOD_PATH } from '../../src/transport/codec.js';
import { startNode, stopNode, waitFor, type TestNode } from './helpers.js';

interface TlsNode {
  readonly id: NodeId;
  readonly transport: GrpcTransport;
  readonly server: grpc.Server;
  readonly address: string;
  readonly received: Message[];
}

let dir: string;
let certs: CertFiles;
const material = new Map<string, TlsMaterial>();
const running: TlsNode[] = [];
const plain: TestNode[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'registry-tls-transport-'));
  certs = await initCerts(dir, { nodes: ['a', 'b', 'c'] });
  for (const id of ['a', 'b', 'c']) material.set(id, loadTlsFiles({ cert: certs.nodes[id]!.cert, key: certs.nodes[id]!.key, ca: certs.caCert }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(running.splice(0).map(async (n) => {
    await n.transport.close();
    await new Promise<void>((r) => n.server.tryShutdown(() => r()));
  }));
  await Promise.all(plain.splice(0).map(stopNode));
});

async function tlsNode(id: string): Promise<TlsNode> {
  const tls = material.get(id) as TlsMaterial;
  const transport = new GrpcTransport({ id: nodeId(id), peers: {}, tls });
  const server = new grpc.Server(PEER_SERVER_OPTIONS);
  transport.addToServer(server);
  const received: Message[] = [];
  transport.onMessage((m) => received.push(m));
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpcServerCredentials(tls), (e, p) => (e ? reject(e) : resolve(p))));
  const n = { id: nodeId(id), transport, server, address: `127.0.0.1:${port}`, received };
  running.push(n);
  return n;
}

const heartbeat = (from: NodeId, to: NodeId, n: number): Message => ({ type: 'Heartbeat', from, to, term: term(1), leaderCommit: logIndex(n), context: new Uint8Array(0) });
const header = (from: NodeId, to: NodeId): InstallSnapshot => ({
  type: 'InstallSnapshot',
  from,
  to,
  term: term(2),
  snapshot: { metadata: { index: logIndex(10), term: term(1), confState: { voters: [from, to], learners: [] } }, data: new Uint8Array(0) },
});
async function* chunks(): AsyncGenerator<Uint8Array> {
  yield new Uint8Array([1, 2, 3]);
}

describe('mutual TLS between peers', () => {
  it('carries messages and snapshots between members with cluster certificates', async () => {
    const [a, b] = [await tlsNode('a'), await tlsNode('b')];
    a.transport.setPeer(b.id, b.address);
    b.transport.setPeer(a.id, a.address);
    a.transport.send([heartbeat(a.id, b.id, 1)]);
    await waitFor('b receives the heartbeat', () => b.received.length === 1);
    let got = 0;
    b.transport.onSnapshot(async (_m, it) => {
      for await (const c of it) got += c.byteLength;
    });
    await a.transport.sendSnapshot(header(a.id, b.id), chunks());
    expect(got).toBe(3);
  });

  it('does not open a stream, send a snapshot or forward a call to an address where another member answers', async () => {
    const [a, c] = [await tlsNode('a'), await tlsNode('c')];
    // a believes b lives at c's address: c's certificate names c, so every dial fails.
    a.transport.setPeer(nodeId('b'), c.address);
    a.transport.send([heartbeat(a.id, nodeId('b'), 1)]);
    // The snapshot call fails as soon as its handshake does (it does not wait for ready)...
    const err = await a.transport.sendSnapshot(header(a.id, nodeId('b')), chunks()).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SnapshotTransferError);
    expect((err as SnapshotTransferError).code).toBe(grpc.status.UNAVAILABLE);
    expect((err as SnapshotTransferError).message).toMatch(/the server.s certificate names "c", expected member "b"/);
    // ...while the stream, which waits for ready, has stayed closed all along: nothing reached c.
    expect(a.transport.stats().peers.b?.connected).toBe(false);
    expect(c.received).toEqual([]);

    const link = new GrpcLeaderLink(material.get('a'));
    try {
      const wrong = await link.status({ id: 'b', address: c.address, voter: true }, 5_000).then(() => undefined, (e: unknown) => e);
      expect(wrong).toBeInstanceOf(ApiError);
      expect((wrong as ApiError).code as number).toBe(grpc.status.UNAVAILABLE);
      expect((wrong as ApiError).message).toMatch(/names "c", expected member "b"/);
      // The right name gets through the handshake (this server has no Cluster service).
      const right = await link.status({ id: 'c', address: c.address, voter: true }, 5_000).then(() => undefined, (e: unknown) => e);
      expect((right as ApiError).code as number).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      link.close();
    }
  });

  it('refuses a snapshot call whose client certificate names another member than its raft-from', async () => {
    const b = await tlsNode('b');
    let started = false;
    b.transport.onSnapshot(async () => {
      started = true;
    });
    const client = new grpc.Client(b.address, grpc.credentials.createSsl(material.get('c')!.ca, material.get('c')!.key, material.get('c')!.cert));
    const md = new grpc.Metadata();
    md.set('raft-from', 'a');
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeClientStreamRequest<Buffer, unknown>(RAFT_INSTALL_SNAPSHOT_METHOD_PATH, (x) => x, loadRaftProto().deserializeSnapshotAck, md, {}, () => undefined);
      call.on('status', resolve);
      call.on('error', () => undefined);
      call.write(encodeSnapshotChunk({ header: header(nodeId('a'), b.id), offset: 0, data: new Uint8Array(0), done: false, totalBytes: 0 }));
    });
    client.close();
    expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(status.details).toMatch(/names "c"/);
    expect(started).toBe(false);
  });
});

describe('the sender of a message is the sender of its stream', () => {
  it('drops a message whose from is not the stream raft-from, without TLS too', async () => {
    const b = await startNode('b');
    plain.push(b);
    const client = new grpc.Client(b.address, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('raft-from', 'a');
    const status = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.makeClientStreamRequest<Buffer, unknown>(RAFT_STREAM_METHOD_PATH, (x) => x, loadRaftProto().deserializeAck, md, {}, (err) => resolve(err));
      call.write(encodeBatch([heartbeat(nodeId('c'), b.id, 1), heartbeat(nodeId('a'), b.id, 2)]));
      call.end();
    });
    client.close();
    expect(status).toBeNull();
    expect(b.received).toEqual([heartbeat(nodeId('a'), b.id, 2)]);
    expect(b.transport.stats().misaddressedDropped).toBe(1);
  });
});
