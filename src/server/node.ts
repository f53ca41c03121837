/**
 * One registry node: a LevelDB store, the registry state machine, the Raft driver, the peer
 * transport and the client API, all on one gRPC port (peers and clients alike).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { withKeptAgentEncodings } from '../api/agent-encoding.js';
import { authHandlers, clusterHandlers, GrpcLeaderLink, registryHandlers, safeService } from '../api/grpc-service.js';
import { AUTH_BOOTSTRAP_RETRY_MS, RegistryApi } from '../api/handlers.js';
import { AuthService, ClusterService, RegistryService as RegistryServiceDefinition } from '../api/registry-proto.js';
import { RateLimits, type RateLimitOverrides } from '../auth/rate-limits.js';
import { mintToken } from '../auth/tokens.js';
import type { AuthState } from '../registry/auth-state.js';
import type { Logger } from '../log.js';
import { grpcServerCredentials, httpsServerOptions, isLoopbackHost, loadTlsFiles, NODE_TLS_FLAGS, TlsConfigError, type TlsFiles, type TlsMaterial } from '../auth/tls.js';
import { nodeId, type NodeId } from '../raft/types.js';
import { RegistryStateMachine } from '../registry/state-machine.js';
import type { Member } from '../registry/types.js';
import { openLevelStore } from '../storage/level-store.js';
import { openSnapshotStore } from '../storage/snapshot-store.js';
import { STATE_PAYLOAD_FORMATS } from '../storage/snapshot-codec.js';
import type { NodeStore } from '../storage/types.js';
import { GrpcTransport, PEER_SERVER_OPTIONS } from '../transport/grpc-transport.js';
import { RaftNode } from './raft-node.js';
import { restoreBackup } from './backup.js';
import { WatchHub } from './watch-hub.js';
import { LeaseManager } from '../registry/lease-manager.js';
import { combineObservers, systemClock } from './ports.js';
import { timelineObserver } from './timeline.js';
import { NodeMetrics } from './metrics.js';
import { addHealthAndReflection, type HealthAndReflection } from '../api/grpc-health.js';
import { HttpFrontEnd } from '../http/server.js';

/** Folder of the snapshot files inside a node's data dir. */
export const SNAPSHOT_DIR = 'snapshots';
/** How long a shutdown waits for in-flight calls before it forces them closed, in ms. */
export const SHUTDOWN_GRACE_MS = 2_000;
/** The file in a node's data dir that receives the bootstrap admin token (mode 0600). */
export const ADMIN_TOKEN_FILE = 'admin.token';
/** The principal name of the bootstrap admin tokens. */
export const BOOTSTRAP_ADMIN_NAME = 'admin';

/** Settings of one node. */
export interface NodeOptions {
  /** This node's id; must be a key of `peers`. */
  readonly id: string;
  /** `host:port` to listen on (clients and peers); port 0 picks a free one. */
  readonly listen: string;
  /**
   * The voters a new cluster bootstraps with, this node included: id → `host:port`. Only used
   * by a fresh data dir; afterwards the membership comes from the replicated log. Empty with
   * `join`.
   */
  readonly peers: Readonly<Record<string, string>>;
  /** Start empty and wait to be added to an existing cluster (no bootstrap). */
  readonly join?: boolean;
  /** Seed this new node's empty data dir from a backup file (`registry snapshot save`). */
  readonly restore?: string;
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
  /** Applied entries between snapshots (default 10,000). */
  readonly snapshotThresholdEntries?: number;
  /** Entries kept in the log behind a snapshot (default 5,000). */
  readonly snapshotTailEntries?: number;
  /** Chunk size of snapshot files and transfers, in bytes (default 1 MiB). */
  readonly snapshotChunkBytes?: number;
  /** Log the write timeline (every stage of every entry; see `timeline.ts`). */
  readonly timeline?: boolean;
  /** `host:port` of the HTTP/JSON front end (`src/http/`); none when absent. Port 0 picks one. */
  readonly httpListen?: string;
  /** Browser origins allowed to call the HTTP front end besides the cluster's own (`['*']`: any). */
  readonly corsOrigins?: readonly string[];
  /**
   * Require bearer tokens on every client call (`--auth on`). A new cluster's first leader
   * creates the signing key; every node then writes a bootstrap admin token to
   * `<dataDir>/admin.token` (mode 0600) if that file does not exist yet.
   */
  readonly auth?: boolean;
  /** Rate-limit calls per principal and per address (default: on exactly when `auth` is). */
  readonly rateLimits?: boolean;
  /** Overrides of the default rate limits (`src/auth/rate-limits.ts`). */
  readonly rateLimitSettings?: RateLimitOverrides;
  /** Refuse registers whose card carries no signature that verifies with a trusted key. */
  readonly requireSignedCards?: boolean;
  /**
   * This node's TLS files (`--tls-cert`, `--tls-key`, `--tls-ca`). With them the gRPC port
   * requires mutual TLS (a client certificate from the CA, peers and clients alike), peers and
   * the leader are dialed with TLS and must present a certificate naming their member id, and
   * the HTTP front end serves HTTPS. The certificate's member name (its CN) must be `id`.
   * Without them everything is plaintext.
   */
  readonly tls?: TlsFiles;
}

/**
 * Writes a bootstrap admin token to `file` once the cluster has a signing key, unless the file
 * exists (it is never overwritten: delete it to get a new one). The token never expires; its id
 * is `bootstrap-<node id>`, so `registry token revoke bootstrap-n1` revokes it. Resolves true
 * once the file exists (written now or before), false while there is no signing key.
 */
async function writeAdminToken(file: string, state: AuthState, id: string, nowSec: number, log: Logger): Promise<boolean> {
  const key = state.signingKeys.at(-1);
  if (key === undefined) return false;
  const { token } = await mintToken(key, { name: BOOTSTRAP_ADMIN_NAME, role: 'admin', tokenId: `bootstrap-${id}` }, nowSec);
  try {
    await writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
    log.info({ file }, 'wrote the bootstrap admin token');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return true;
}


/** The host of a `host:port` (brackets of an IPv6 literal removed). */
function hostOf(listen: string): string {
  return listen.slice(0, listen.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
}

/**
 * Reads and checks the node's TLS files; throws {@link TlsConfigError} naming the flag and file,
 * or when the certificate names another member than `id`.
 */
function loadNodeTls(id: string, files: TlsFiles): TlsMaterial {
  const tls = loadTlsFiles(files, NODE_TLS_FLAGS);
  if (tls.name !== id) {
    throw new TlsConfigError(`${NODE_TLS_FLAGS.cert} ${files.cert}: the certificate names member ${JSON.stringify(tls.name ?? '')} (its CN), but this node is --id ${id}`);
  }
  return tls;
}

/** Warns about each address served in plaintext that is reachable beyond this host. */
function warnIfExposed(opts: NodeOptions, log: Logger): void {
  if (opts.tls) return;
  for (const [flag, listen, what] of [
    ['--listen', opts.listen, 'read and write the registry and pose as a cluster member'],
    ['--http-listen', opts.httpListen, 'read and write the registry'],
  ] as const) {
    if (listen !== undefined && !isLoopbackHost(hostOf(listen))) {
      log.warn({ flag, address: listen }, `listening on ${listen} without TLS: anyone who can reach it can ${what}, and the traffic is in clear (give --tls-cert, --tls-key and --tls-ca)`);
    }
  }
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
    private readonly api: RegistryApi,
    private readonly store: NodeStore,
    private readonly log: Logger,
    /** The Prometheus metrics of this node (served by the HTTP front end at `/metrics`). */
    readonly metrics: NodeMetrics,
    private readonly health: HealthAndReflection,
    /** The HTTP/JSON front end, when the node serves one. */
    readonly http?: HttpFrontEnd,
    private readonly authTimer?: NodeJS.Timeout,
  ) {}

  /**
   * Opens the store (resuming from it if it holds data), starts Raft and serves on `listen`.
   * Throws on a bad configuration (`id` not in `peers`), an unusable data dir, a port in use, or
   * corrupt stored data.
   */
  static async start(opts: NodeOptions): Promise<RegistryNode> {
    const id = nodeId(opts.id);
    if (!opts.join && !(opts.id in opts.peers)) throw new Error(`--id ${opts.id} is not one of --peers (${Object.keys(opts.peers).join(', ')})`);
    const log = opts.logger;
    // TLS files are checked before anything is opened, so a bad file stops the start at once.
    const tls = opts.tls ? loadNodeTls(opts.id, opts.tls) : undefined;
    warnIfExposed(opts, log);
    await mkdir(opts.dataDir, { recursive: true });
    const store = await openLevelStore(opts.dataDir, { logger: log.child({ component: 'storage' }) });
    try {
      const stateMachine = new RegistryStateMachine(store, log.child({ component: 'state-machine' }));
      await stateMachine.open();
      const snapshots = await openSnapshotStore(join(opts.dataDir, SNAPSHOT_DIR), { logger: log.child({ component: 'snapshots' }) });
      const bootstrap: Member[] = opts.join ? [] : Object.entries(opts.peers).map(([mid, address]) => ({ id: mid, address, voter: true }));
      if (opts.restore) {
        const header = await restoreBackup(store, opts.restore, bootstrap);
        await stateMachine.open();
        log.info({ file: opts.restore, index: header.index, from: header.nodeId }, 'restored from backup');
      }
      const stored = await stateMachine.members();
      let members: readonly Member[] = stored.length > 0 ? stored : bootstrap;
      const peerAddresses = { ...opts.peers, ...Object.fromEntries(members.map((m) => [m.id, m.address])) };
      const transport = new GrpcTransport({ id, peers: peerAddresses, logger: log, advertiseAddress: opts.listen, snapshotFormats: STATE_PAYLOAD_FORMATS, ...(tls ? { tls } : {}) });
      const watchHub = new WatchHub(stateMachine, log.child({ component: 'watch' }));
      const leases = new LeaseManager();
      const metrics = new NodeMetrics({ id, transport, stateMachine, leases, watchHub });
      const raft = await RaftNode.start({
        id,
        bootstrap,
        leases,
        observer: combineObservers(metrics.observer, opts.timeline ? timelineObserver(log) : undefined),
        onEvents: (events) => {
          watchHub.publish(events);
          metrics.onEvents(events);
        },
        onRestored: () => watchHub.resync(),
        store,
        stateMachine,
        transport,
        snapshots,
        logger: log.child({ component: 'raft' }),
        ...(opts.snapshotThresholdEntries !== undefined ? { snapshotThresholdEntries: opts.snapshotThresholdEntries } : {}),
        ...(opts.snapshotTailEntries !== undefined ? { snapshotTailEntries: opts.snapshotTailEntries } : {}),
        ...(opts.snapshotChunkBytes !== undefined ? { snapshotChunkBytes: opts.snapshotChunkBytes } : {}),
        ...(opts.tickMs !== undefined ? { tickMs: opts.tickMs } : {}),
        ...(opts.electionTicks !== undefined ? { electionTicks: opts.electionTicks } : {}),
        ...(opts.heartbeatTicks !== undefined ? { heartbeatTicks: opts.heartbeatTicks } : {}),
        ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      });
      metrics.attachRaft(raft);
      raft.on('members', (next: readonly Member[]) => {
        members = next;
      });
      const apiLog = log.child({ component: 'api' });
      // The HTTP address is known once its port is bound, after the API exists.
      let httpAddress = '';
      const authOn = opts.auth === true;
      const rateLimitsOn = opts.rateLimits ?? authOn;
      const api = new RegistryApi({
        id,
        store,
        watchHub,
        raft,
        stateMachine,
        members: () => members,
        clock: systemClock,
        leaderLink: new GrpcLeaderLink(tls),
        logger: apiLog,
        get httpAddress() {
          return httpAddress;
        },
        auth: {
          enabled: authOn,
          ...(rateLimitsOn ? { rateLimits: new RateLimits(opts.rateLimitSettings) } : {}),
          ...(opts.requireSignedCards ? { requireSignedCards: true } : {}),
        },
      });
      let authTimer: NodeJS.Timeout | undefined;
      if (authOn) {
        const tokenFile = join(opts.dataDir, ADMIN_TOKEN_FILE);
        // Once the file exists, later auth changes (revocations, rotations) mint nothing.
        let tokenFileExists = false;
        const maybeWriteToken = (state: AuthState): void => {
          if (tokenFileExists) return;
          writeAdminToken(tokenFile, state, opts.id, Math.floor(Date.now() / 1000), log).then(
            (exists) => {
              tokenFileExists ||= exists;
            },
            (err: unknown) => log.error({ err, file: tokenFile }, 'writing the bootstrap admin token failed'),
          );
        };
        stateMachine.onAuthChanged = maybeWriteToken;
        maybeWriteToken(stateMachine.authState());
        raft.on('role', () => api.maybeBootstrapAuth());
        authTimer = setInterval(() => api.maybeBootstrapAuth(), AUTH_BOOTSTRAP_RETRY_MS);
        authTimer.unref();
      }
      const server = new grpc.Server(PEER_SERVER_OPTIONS);
      transport.addToServer(server);
      const observeRequest = (method: string, code: string, seconds: number): void => metrics.observeRequest('grpc', method, code, seconds);
      server.addService(safeService(withKeptAgentEncodings(RegistryServiceDefinition)), registryHandlers(api, apiLog, observeRequest) as unknown as grpc.UntypedServiceImplementation);
      server.addService(safeService(ClusterService), clusterHandlers(api, apiLog, observeRequest) as unknown as grpc.UntypedServiceImplementation);
      server.addService(safeService(AuthService), authHandlers(api, apiLog, observeRequest) as unknown as grpc.UntypedServiceImplementation);
      const health = addHealthAndReflection(server, raft, log.child({ component: 'health' }));
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(opts.listen, tls ? grpcServerCredentials(tls) : grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
      );
      disableNagle(server);
      const host = opts.listen.slice(0, opts.listen.lastIndexOf(':'));
      const address = `${host}:${port}`;
      const http = opts.httpListen
        ? await HttpFrontEnd.start({ listen: opts.httpListen, api, raft, metrics, logger: log, ...(opts.corsOrigins ? { corsOrigins: opts.corsOrigins } : {}), ...(tls ? { https: httpsServerOptions(tls) } : {}) })
        : undefined;
      httpAddress = http?.address ?? '';
      log.info({ address, ...(http ? { http: http.address } : {}), tls: tls !== undefined, peers: opts.peers, dataDir: opts.dataDir }, 'node serving');
      return new RegistryNode(id, address, raft, server, transport, api, store, log, metrics, health, http, authTimer);
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  /** Stops serving, stops Raft, closes peer streams and the store. Safe to call twice. */
  async stop(): Promise<void> {
    clearInterval(this.authTimer);
    this.health.close();
    await this.http?.close().catch((err: unknown) => this.log.warn({ err }, 'closing the HTTP front end failed'));
    await this.raft.stop();
    this.metrics.close();
    this.api.close();
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
