/**
 * One registry node: a LevelDB store, the registry state machine, the Raft driver, the peer
 * transport and the client API, all on one gRPC port (peers and clients alike).
 */
import { mkdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ClusterService, RegistryService as RegistryServiceDefinition } from '../api/registry-proto.js';
import type { Logger } from '../log.js';
import { nodeId, type NodeId } from '../raft/types.js';
import { RegistryStateMachine } from '../registry/state-machine.js';
import { openLevelStore } from '../storage/level-store.js';
import type { NodeStore } from '../storage/types.js';
import { GrpcTransport, PEER_SERVER_OPTIONS } from '../transport/grpc-transport.js';
import { RaftNode } from './raft-node.js';
import { RegistryService } from './registry-service.js';

/** How long a shutdown waits for in-flight calls before it forces them closed, in ms. */
export const SHUTDOWN_GRACE_MS = 2_000;

/** Settings of one node. */
export interface NodeOptions {
  /** This node's id; must be a key of `peers`. */
  readonly id: string;
  /** `host:port` to listen on (clients and peers); port 0 picks a free one. */
  readonly listen: string;
  /** Every voter of the cluster, this node included: id → `host:port`. */
  readonly peers: Readonly<Record<string, string>>;
  /** Directory of this node's LevelDB store (created if missing). */
  readonly dataDir: string;
  readonly logger: Logger;
  /** Length of a tick in ms (default 100). */
  readonly tickMs?: number;
  /** Election timeout in ticks (default 10, randomized up to 2x). */
  readonly electionTicks?: number;
  /** Heartbeat interval in ticks (default 1). */
  readonly heartbeatTicks?: number;
  /** Called once if the node stops on a fatal error (corrupt storage, broken invariant). */
  readonly onFatal?: (err: Error) => void;
}

/**
 * Turns off Nagle's algorithm on the sockets the server accepts. grpc-js sets TCP_NODELAY on
 * the sockets it dials but not on accepted ones, so small responses and peer acknowledgements
 * written back on an accepted connection would wait for the delayed ACK of the other side (up
 * to 40 ms on Linux) whenever an earlier segment is unacknowledged. grpc-js offers no option
 * for it, so this reaches its listening HTTP/2 servers.
 */
function disableNagle(server: grpc.Server): void {
  const listeners = (server as unknown as { http2Servers?: Map<{ on(e: 'connection', f: (s: Socket) => void): void }, unknown> }).http2Servers;
  if (!(listeners instanceof Map)) return;
  for (const s of listeners.keys()) s.on('connection', (socket: Socket) => socket.setNoDelay(true));
}

/** A running node. */
export class RegistryNode {
  private constructor(
    readonly id: NodeId,
    /** The bound `host:port`. */
    readonly address: string,
    readonly raft: RaftNode,
    private readonly server: grpc.Server,
    private readonly transport: GrpcTransport,
    private readonly service: RegistryService,
    private readonly store: NodeStore,
    private readonly log: Logger,
  ) {}

  /**
   * Opens the store (resuming from it if it holds data), starts Raft and serves on `listen`.
   * Throws on a bad configuration (`id` not in `peers`), an unusable data dir, a port in use, or
   * corrupt stored data.
   */
  static async start(opts: NodeOptions): Promise<RegistryNode> {
    const id = nodeId(opts.id);
    if (!(opts.id in opts.peers)) throw new Error(`--id ${opts.id} is not one of --peers (${Object.keys(opts.peers).join(', ')})`);
    const log = opts.logger;
    await mkdir(opts.dataDir, { recursive: true });
    const store = await openLevelStore(opts.dataDir);
    try {
      const stateMachine = new RegistryStateMachine(store, log.child({ component: 'state-machine' }));
      await stateMachine.open();
      const transport = new GrpcTransport({ id, peers: opts.peers, logger: log });
      const raft = await RaftNode.start({
        id,
        voters: Object.keys(opts.peers).map(nodeId),
        store,
        stateMachine,
        transport,
        logger: log.child({ component: 'raft' }),
        ...(opts.tickMs !== undefined ? { tickMs: opts.tickMs } : {}),
        ...(opts.electionTicks !== undefined ? { electionTicks: opts.electionTicks } : {}),
        ...(opts.heartbeatTicks !== undefined ? { heartbeatTicks: opts.heartbeatTicks } : {}),
        ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      });
      const members = new Map(Object.entries(opts.peers));
      const service = new RegistryService({ id, raft, stateMachine, members: () => members, logger: log.child({ component: 'api' }) });
      const server = new grpc.Server(PEER_SERVER_OPTIONS);
      transport.addToServer(server);
      server.addService(RegistryServiceDefinition, service.registryHandlers() as unknown as grpc.UntypedServiceImplementation);
      server.addService(ClusterService, service.clusterHandlers() as unknown as grpc.UntypedServiceImplementation);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(opts.listen, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
      );
      disableNagle(server);
      const host = opts.listen.slice(0, opts.listen.lastIndexOf(':'));
      const address = `${host}:${port}`;
      log.info({ address, peers: opts.peers, dataDir: opts.dataDir }, 'node serving');
      return new RegistryNode(id, address, raft, server, transport, service, store, log);
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  /** Stops serving, stops Raft, closes peer streams and the store. Safe to call twice. */
  async stop(): Promise<void> {
    await this.raft.stop();
    this.service.close();
    await this.transport.close();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, SHUTDOWN_GRACE_MS);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await this.store.close().catch(() => undefined);
    this.log.info('node stopped');
  }
}
