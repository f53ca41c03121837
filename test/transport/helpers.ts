/**
 * Test support for the gRPC transport: nodes made of a `GrpcTransport` on its own `grpc.Server`
 * bound to an ephemeral loopback port, and a bounded polling wait.
 */
import * as grpc from '@grpc/grpc-js';
import { expect } from 'vitest';
import { nodeId, type Message, type NodeId } from '../../src/raft/types.js';
import { GrpcTransport, PEER_SERVER_OPTIONS, type GrpcTransportOptions } from '../../src/transport/grpc-transport.js';

/** Longest a test waits for an asynchronous outcome before failing. */
export const WAIT_TIMEOUT_MS = 15_000;
/** Polling interval of {@link waitFor}. */
const POLL_INTERVAL_MS = 10;

/** A transport, its server, and everything its handler received. */
export interface TestNode {
  readonly id: NodeId;
  readonly transport: GrpcTransport;
  readonly server: grpc.Server;
  readonly port: number;
  readonly address: string;
  readonly received: Message[];
}

/** Binds `server` to 127.0.0.1 on `port` (0: ephemeral) and returns the bound port. */
export function bind(server: grpc.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err !== null) reject(err);
      else resolve(bound);
    });
  });
}

/** Starts a node with no peers; connect nodes with {@link connectAll}. */
export async function startNode(id: string, port = 0, options: Partial<GrpcTransportOptions> = {}): Promise<TestNode> {
  const transport = new GrpcTransport({ id: nodeId(id), peers: {}, ...options });
  const server = new grpc.Server(PEER_SERVER_OPTIONS);
  transport.addToServer(server);
  const received: Message[] = [];
  transport.onMessage((m) => received.push(m));
  const bound = await bind(server, port);
  return { id: nodeId(id), transport, server, port: bound, address: `127.0.0.1:${bound}`, received };
}

/** Tells every node the address of every other node. */
export function connectAll(nodes: readonly TestNode[]): void {
  for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.setPeer(b.id, b.address);
}

/** Closes the transport, then shuts the server down. */
export async function stopNode(node: TestNode): Promise<void> {
  await node.transport.close();
  await new Promise<void>((resolve) => node.server.tryShutdown(() => resolve()));
}

/**
 * Polls `condition` until it holds; fails with `what` after {@link WAIT_TIMEOUT_MS}. A bounded
 * wait for an outcome, never an assertion about timing.
 */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = WAIT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) expect.fail(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

/** Waits until `from`'s stream to every node in `to` is open. */
export async function waitConnected(from: TestNode, to: readonly TestNode[]): Promise<void> {
  await waitFor(`${from.id} connected to ${to.map((n) => n.id).join(',')}`, () =>
    to.every((n) => from.transport.stats().peers[n.id]?.connected === true),
  );
}
