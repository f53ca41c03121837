/**
 * The gRPC peer transport: one long-lived client stream (`raft.v1.Raft/Stream`) from this node
 * to each peer, carrying `MessageBatch`es; inbound messages arrive on the streams the peers open
 * to this node's server. The shape follows etcd's `rafthttp` (a stream writer per peer, messages
 * dropped rather than blocking Raft when a peer is slow or down) and hashicorp/raft's
 * `NetworkTransport` (pipelined writes over one connection).
 *
 * - Coalescing: every message queued for a peer during one turn of the event loop goes out in
 *   one `MessageBatch` write (flushed from `setImmediate`), split only past
 *   {@link MAX_BATCH_SIZE_BYTES}.
 * - Back-pressure: when a write returns `false` the peer's queue holds further messages until
 *   the stream emits `'drain'`.
 * - Bounded queues: {@link MAX_QUEUED_MESSAGES_PER_PEER} and {@link MAX_QUEUED_BYTES_PER_PEER},
 *   and far less ({@link MAX_QUEUED_MESSAGES_WHILE_DOWN}) while the peer's stream is down; on
 *   overflow the oldest messages are dropped (see `PeerQueue`) and counted.
 * - Reconnects: a stream that ends or fails is reopened after an exponential back-off between
 *   {@link RECONNECT_BACKOFF_MIN_MS} and {@link RECONNECT_BACKOFF_MAX_MS}, with jitter, or at
 *   once when the peer is heard from (its own stream to us opens or carries a batch). A stream
 *   counts as open once the peer's server answers with response headers; until then messages
 *   stay queued, so what is sent while a peer is down is delivered when it comes back (up to the
 *   bounds).
 * - Snapshots ({@link SnapshotTransport}, §7 / Figure 13) never travel on the peer stream: each
 *   transfer is its own `raft.v1.Raft/InstallSnapshot` call over its own connection, streamed in
 *   chunks with flow control on both sides (see `./snapshot-stream.ts`), so heartbeats and other
 *   messages keep flowing while a large snapshot is in transit.
 */
import * as grpc from '@grpc/grpc-js';
import { isMemberCertificate, memberNameOf, peerChannelCredentials, peerChannelOptions, type TlsMaterial } from '../auth/tls.js';
import { silentLogger, type Logger } from '../log.js';
import type { InstallSnapshot, Message, NodeId } from '../raft/types.js';
import {
  decodeWireBatch,
  encodeBatch,
  fromWire,
  loadRaftProto,
  RAFT_INSTALL_SNAPSHOT_METHOD_PATH,
  RAFT_STREAM_METHOD_PATH,
  WireDecodeError,
  type WireSnapshotAck,
} from './codec.js';
import { estimateMessageBytes, PeerQueue } from './peer-queue.js';
import {
  InboundSnapshot,
  MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER,
  OutboundSnapshot,
  SnapshotTransferError,
  type SnapshotHandler,
} from './snapshot-stream.js';
import type { MessageHandler, PeerStats, SnapshotTransport, Transport, TransportStats } from './types.js';

export {
  DEFAULT_SNAPSHOT_CHUNK_BYTES,
  MAX_BUFFERED_SNAPSHOT_CHUNKS,
  MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER,
  MAX_SNAPSHOT_CHUNK_BYTES,
  MAX_SNAPSHOT_WRITES_IN_FLIGHT,
  SnapshotTransferError,
  type SnapshotHandler,
} from './snapshot-stream.js';

const MIB = 1024 * 1024;

/** Most messages queued for one peer; beyond it the oldest are dropped. */
export const MAX_QUEUED_MESSAGES_PER_PEER = 4096;
/** Most estimated bytes queued for one peer; beyond it the oldest are dropped. */
export const MAX_QUEUED_BYTES_PER_PEER = 128 * MIB;
/**
 * Most messages kept for a peer whose stream is down (etcd's rafthttp drops them all): enough for
 * the votes and answers of a brief reconnect, not a replay of everything sent during a long
 * outage — the leader's optimistic AppendEntries to a dead follower would otherwise pile up to
 * {@link MAX_QUEUED_BYTES_PER_PEER} and be delivered, stale, when it returns. Raft resends what
 * was lost (§5.3): the follower rejects, the leader probes, and sends a snapshot if it compacted.
 */
export const MAX_QUEUED_MESSAGES_WHILE_DOWN = 256;
/** Most estimated bytes kept for a peer whose stream is down. */
export const MAX_QUEUED_BYTES_WHILE_DOWN = 4 * MIB;
const DOWN_LIMITS = { maxMessages: MAX_QUEUED_MESSAGES_WHILE_DOWN, maxBytes: MAX_QUEUED_BYTES_WHILE_DOWN };
/**
 * Largest encoded `MessageBatch` a node accepts (gRPC's receive limit on the peer service). An
 * InstallSnapshot passed to `send` travels as one message, so this bounds its size too; a message
 * whose estimated size exceeds it is dropped at `send`. Snapshots streamed with `sendSnapshot`
 * are bounded only per chunk (`MAX_SNAPSHOT_CHUNK_BYTES`).
 */
export const MAX_MESSAGE_SIZE_BYTES = 64 * MIB;
/** Target size of one batch write; messages of one turn beyond it go out in further batches. */
export const MAX_BATCH_SIZE_BYTES = 1 * MIB;
/** First reconnect delay after a stream fails; doubles per failure. */
export const RECONNECT_BACKOFF_MIN_MS = 50;
/**
 * Longest reconnect delay: three heartbeats at the default timing, so a healed link carries
 * messages again well within an election timeout (a longer back-off kept healed nodes leaderless
 * for seconds). A message heard from the peer reconnects at once, whatever the back-off.
 */
export const RECONNECT_BACKOFF_MAX_MS = 300;
/** Interval of HTTP/2 keepalive pings on an idle peer connection. */
export const KEEPALIVE_TIME_MS = 10_000;
/** How long a keepalive ping may go unanswered before the connection counts as dead. */
export const KEEPALIVE_TIMEOUT_MS = 5_000;
/** How long `close()` waits for an open stream to flush and finish before cancelling it. */
export const CLOSE_GRACE_MS = 1_000;
/** Largest response a peer may send (a `StreamAck` is empty). */
const MAX_ACK_SIZE_BYTES = 64 * 1024;

/**
 * Options the node must pass to `new grpc.Server(...)` for the peer service to accept batches up
 * to {@link MAX_MESSAGE_SIZE_BYTES} (gRPC's default receive limit is 4 MiB).
 */
export const PEER_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_SIZE_BYTES,
};

/** Channel options of the client side of each peer stream. */
const PEER_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': RECONNECT_BACKOFF_MIN_MS,
  'grpc.max_send_message_length': MAX_MESSAGE_SIZE_BYTES,
  'grpc.max_receive_message_length': MAX_ACK_SIZE_BYTES,
  // One connection per transport and peer, never shared with other clients in the process.
  'grpc.use_local_subchannel_pool': 1,
};

/**
 * Channel options of a snapshot transfer: its own connection (so its flow-control window is not
 * shared with the peer stream's), keepalive to notice a dead peer during a long transfer without
 * a deadline, and no retries (gRPC would otherwise buffer written chunks for replay).
 */
const SNAPSHOT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_send_message_length': MAX_MESSAGE_SIZE_BYTES,
  'grpc.max_receive_message_length': MAX_ACK_SIZE_BYTES,
  'grpc.use_local_subchannel_pool': 1,
  'grpc.enable_retries': 0,
};

/** Options of {@link GrpcTransport}. */
export interface GrpcTransportOptions {
  /** This node's id; inbound messages addressed to another id are dropped. */
  readonly id: NodeId;
  /** Peer id → `host:port` of its gRPC server. May include this node itself (skipped). */
  readonly peers: Readonly<Record<string, string>>;
  /** Parent logger; the transport logs under `component: 'transport'`. Default: silent. */
  readonly logger?: Logger;
  /**
   * This node's own `host:port`, sent on every outbound stream (`raft-from-address`), so that a
   * peer that does not know us yet — a node that joined with no peer list — can answer.
   */
  readonly advertiseAddress?: string;
  /** Longest reconnect delay, in ms (default {@link RECONNECT_BACKOFF_MAX_MS}). */
  readonly reconnectBackoffMaxMs?: number;
  /**
   * This node's TLS material. With it, peers are dialed with mutual TLS (this node's certificate
   * as client certificate; the server must present a certificate naming the peer id), and an
   * inbound stream or snapshot call is refused with `UNAUTHENTICATED` unless the connection
   * carries a member certificate (`isMemberCertificate`) whose member name equals its
   * `raft-from` metadata. The server
   * must then be bound with `grpcServerCredentials` (client certificates required).
   */
  readonly tls?: TlsMaterial;
  /**
   * The snapshot payload formats this node reads, advertised on every outbound stream
   * (`raft-snapshot-formats`, see {@link encodeSnapshotFormats}) so that a leader sends it a
   * payload it can install. Default: none advertised.
   */
  readonly snapshotFormats?: readonly number[];
}

/** Metadata key of the snapshot payload formats a node reads, on its outbound peer streams. */
export const SNAPSHOT_FORMATS_METADATA_KEY = 'raft-snapshot-formats';
/** Most formats a `raft-snapshot-formats` value may list; a longer one is ignored as malformed. */
export const MAX_ADVERTISED_SNAPSHOT_FORMATS = 16;
/** Largest format number a `raft-snapshot-formats` value may list. */
const MAX_SNAPSHOT_FORMAT_NUMBER = 999;

/** `formats` as the value of `raft-snapshot-formats`: decimal numbers joined by commas ("1,2,3"). */
export function encodeSnapshotFormats(formats: readonly number[]): string {
  return formats.join(',');
}

/**
 * The formats a `raft-snapshot-formats` value lists, or undefined when it is malformed: not
 * 1..{@link MAX_ADVERTISED_SNAPSHOT_FORMATS} comma-separated integers in 1..999.
 */
export function parseSnapshotFormats(value: string): readonly number[] | undefined {
  const parts = value.split(',');
  if (parts.length > MAX_ADVERTISED_SNAPSHOT_FORMATS) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n < 1 || n > MAX_SNAPSHOT_FORMAT_NUMBER) return undefined;
    out.push(n);
  }
  return out;
}

/** What {@link peerCallRefusal} reads of an inbound call: its metadata and its connection's certificate. */
export type InboundPeerCall = Pick<grpc.ServerReadableStream<Buffer, unknown>, 'metadata' | 'getAuthContext' | 'getPeer'>;

/**
 * Why an inbound peer call may not proceed: undefined when it may. With TLS the connection's
 * client certificate must name the member the call claims to come from (`raft-from`) and be a
 * member's (serverAuth usage, not the CLI's client-only certificate); without TLS there is
 * nothing to check.
 */
export function peerCallRefusal(call: InboundPeerCall, tls: boolean): { claimed: string; certName: string | undefined; details: string } | undefined {
  if (!tls) return undefined;
  const hint = call.metadata.get('raft-from')[0];
  const claimed = typeof hint === 'string' ? hint : '';
  const cert = call.getAuthContext()?.sslPeerCertificate;
  const certName = cert && Object.keys(cert).length > 0 ? memberNameOf(cert) : undefined;
  if (claimed === '') return { claimed, certName, details: 'peer call without raft-from metadata' };
  if (certName === undefined) return { claimed, certName, details: `peer call claiming raft-from ${JSON.stringify(claimed)} carries no client certificate naming a member` };
  if (certName !== claimed) {
    return { claimed, certName, details: `peer call claims raft-from ${JSON.stringify(claimed)} but its client certificate names ${JSON.stringify(certName)}` };
  }
  if (!isMemberCertificate(cert)) {
    return { claimed, certName, details: `peer call from ${JSON.stringify(claimed)} carries a client-only certificate (no serverAuth extended key usage), not a member's` };
  }
  return undefined;
}

interface PeerState {
  readonly id: NodeId;
  address: string;
  client: grpc.Client | undefined;
  call: grpc.ClientWritableStream<Buffer> | undefined;
  /** The peer's server answered the current call with response headers. */
  open: boolean;
  awaitingDrain: boolean;
  readonly queue: PeerQueue;
  backoffMs: number;
  reconnectTimer: NodeJS.Timeout | undefined;
  /** When a reconnect was last forced by hearing from the peer (ms, monotonic). */
  lastForcedReconnect: number;
  /** Reconnects forced by hearing from the peer while the stream was down. */
  heardFromReconnects: number;
  streamsOpened: number;
  sentMessages: number;
  sentBatches: number;
  sentBytes: number;
  drainWaits: number;
  droppedMessages: number;
  /** Snapshot transfers to this peer now running (at most MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER). */
  readonly snapshotSends: Set<OutboundSnapshot>;
}

interface InboundStream {
  readonly call: grpc.ServerReadableStream<Buffer, object>;
  readonly callback: grpc.sendUnaryData<object>;
  done: boolean;
}

const identity = (b: Buffer): Buffer => b;

/**
 * {@link Transport} over gRPC client streams, and {@link SnapshotTransport} over one
 * `InstallSnapshot` call per transfer. Construct it, register its service on the node's server
 * with {@link GrpcTransport.addToServer} (before the server binds), then `send` /
 * `sendSnapshot`.
 *
 * Never throws from `send`; never crashes on peer input (malformed messages are logged at warn
 * and dropped; a malformed snapshot transfer fails with `INVALID_ARGUMENT`). Call
 * {@link GrpcTransport.close} before shutting the server down: it ends the inbound streams and
 * transfers too, so `server.tryShutdown` can finish.
 */
export class GrpcTransport implements Transport, SnapshotTransport {
  /** This node's id. */
  readonly id: NodeId;
  private readonly log: Logger;
  private readonly advertiseAddress: string | undefined;
  /** The snapshot formats this node advertises on its outbound streams. */
  private readonly snapshotFormats: readonly number[];
  /** The snapshot formats each known peer advertised on its latest stream to this node. */
  private readonly peerSnapshotFormats = new Map<string, readonly number[]>();
  private readonly backoffMaxMs: number;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly tls: TlsMaterial | undefined;
  private readonly peers = new Map<NodeId, PeerState>();
  private readonly inbound = new Set<InboundStream>();
  private readonly inboundSnapshots = new Set<InboundSnapshot>();
  private readonly outboundSnapshots = new Set<OutboundSnapshot>();
  private handler: MessageHandler | undefined;
  private snapshotHandler: SnapshotHandler | undefined;
  private flushImmediate: NodeJS.Immediate | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private unknownPeerDropped = 0;
  private snapshotOnStreamDropped = 0;
  private receivedBatches = 0;
  private receivedMessages = 0;
  private malformedDropped = 0;
  private misaddressedDropped = 0;
  private unhandledDropped = 0;

  /**
   * Opens a stream to every peer in `options.peers` (except `options.id`).
   *
   * @throws {TypeError} when `id` is empty or a peer address is not a non-empty string.
   * @throws {Error} when `proto/raft/v1/raft.proto` cannot be found or parsed.
   */
  constructor(options: GrpcTransportOptions) {
    if (typeof options.id !== 'string' || options.id.length === 0) {
      throw new TypeError('GrpcTransport: id must be a non-empty node id');
    }
    this.id = options.id;
    this.advertiseAddress = options.advertiseAddress;
    this.snapshotFormats = options.snapshotFormats ?? [];
    this.backoffMaxMs = options.reconnectBackoffMaxMs ?? RECONNECT_BACKOFF_MAX_MS;
    this.tls = options.tls;
    this.channelOptions = { ...PEER_CHANNEL_OPTIONS, 'grpc.max_reconnect_backoff_ms': this.backoffMaxMs };
    this.log = (options.logger ?? silentLogger).child({ component: 'transport' });
    loadRaftProto();
    for (const [id, address] of Object.entries(options.peers)) this.setPeer(id as NodeId, address);
  }

  /**
   * Registers the `raft.v1.Raft` service on the node's server. Call once, before `bindAsync`;
   * create the server with {@link PEER_SERVER_OPTIONS} so large batches are accepted.
   *
   * @throws {Error} from gRPC when the service is already registered on `server`.
   */
  addToServer(server: grpc.Server): void {
    const proto = loadRaftProto();
    const definition: grpc.ServiceDefinition = {
      Stream: {
        path: RAFT_STREAM_METHOD_PATH,
        requestStream: true,
        responseStream: false,
        // Batches are decoded in the handler, so a malformed one is dropped without failing
        // the stream.
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: proto.serializeAck,
        responseDeserialize: proto.deserializeAck,
      },
      InstallSnapshot: {
        path: RAFT_INSTALL_SNAPSHOT_METHOD_PATH,
        requestStream: true,
        responseStream: false,
        // Chunks are decoded in the handler, so a malformed one fails the call with
        // INVALID_ARGUMENT rather than gRPC's INTERNAL.
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: proto.serializeSnapshotAck,
        responseDeserialize: proto.deserializeSnapshotAck,
      },
    };
    const impl: grpc.UntypedServiceImplementation = {
      Stream: (call: grpc.ServerReadableStream<Buffer, object>, callback: grpc.sendUnaryData<object>) =>
        this.acceptStream(call, callback),
      InstallSnapshot: (call: grpc.ServerReadableStream<Buffer, WireSnapshotAck>, callback: grpc.sendUnaryData<WireSnapshotAck>) =>
        this.acceptSnapshot(call, callback),
    };
    server.addService(definition, impl);
  }

  /** {@inheritDoc Transport.send} */
  send(messages: readonly Message[]): void {
    if (this.closed) return;
    let queued = false;
    for (const msg of messages) {
      if (msg.type === 'InstallSnapshot') {
        // A snapshot travels only with its payload, on its own call (`sendSnapshot`).
        this.snapshotOnStreamDropped++;
        this.log.warn({ to: msg.to }, 'dropping InstallSnapshot passed to send: snapshots go through sendSnapshot');
        continue;
      }
      const peer = this.peers.get(msg.to);
      if (peer === undefined) {
        this.unknownPeerDropped++;
        this.log.debug({ to: msg.to, type: msg.type }, 'dropping message for unknown peer');
        continue;
      }
      const size = estimateMessageBytes(msg);
      if (size > MAX_MESSAGE_SIZE_BYTES) {
        peer.droppedMessages++;
        this.log.warn({ to: msg.to, type: msg.type, bytes: size, max: MAX_MESSAGE_SIZE_BYTES }, 'dropping message larger than MAX_MESSAGE_SIZE_BYTES');
        continue;
      }
      const dropped = peer.open ? peer.queue.push(msg, size) : peer.queue.push(msg, size, DOWN_LIMITS);
      if (dropped > 0) {
        peer.droppedMessages += dropped;
        this.log.debug({ to: msg.to, dropped }, 'peer queue full: dropped oldest messages');
      }
      queued = true;
    }
    if (queued) this.scheduleFlush();
  }

  /** {@inheritDoc Transport.onMessage} */
  onMessage(handler: MessageHandler): void {
    this.handler = handler;
  }

  /**
   * {@inheritDoc SnapshotTransport.sendSnapshot}
   *
   * One `raft.v1.Raft/InstallSnapshot` call on a connection of its own, without deadline:
   * a header chunk, then each chunk `chunks` yields (empty ones skipped) with its byte offset,
   * then a `done` chunk with the total size (Figure 13). At most
   * `MAX_SNAPSHOT_WRITES_IN_FLIGHT` chunks are handed to gRPC before one is flushed, and a
   * `false` from `write` waits for `'drain'`, so memory stays bounded by a few chunks however
   * large the snapshot. The promise settles only after the iterator was finished or
   * `return()`ed and the call ended.
   *
   * Rejects with {@link SnapshotTransferError}: `NOT_FOUND` for an unknown peer, `RESOURCE_EXHAUSTED`
   * when `MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER` transfers to that peer already run, `INVALID_ARGUMENT`
   * for a message that is not an InstallSnapshot with empty `snapshot.data` (these three at once,
   * without touching `chunks`) or for a chunk that is not a `Uint8Array` or exceeds
   * `MAX_SNAPSHOT_CHUNK_BYTES`, `ABORTED` when the iterator throws (its error is the `cause`),
   * `CANCELLED` on `close()` / `removePeer` / a changed address, `UNAVAILABLE` if the transport is
   * closed or the peer unreachable, or the receiver's status when it refuses the transfer.
   */
  sendSnapshot(message: InstallSnapshot, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    if (this.closed) return Promise.reject(new SnapshotTransferError(grpc.status.UNAVAILABLE, 'peer transport closed'));
    if (message?.type !== 'InstallSnapshot') {
      return Promise.reject(new SnapshotTransferError(grpc.status.INVALID_ARGUMENT, 'sendSnapshot takes an InstallSnapshot message'));
    }
    if (message.snapshot.data.byteLength !== 0) {
      return Promise.reject(
        new SnapshotTransferError(grpc.status.INVALID_ARGUMENT, 'InstallSnapshot snapshot.data must be empty: the payload travels in chunks'),
      );
    }
    const peer = this.peers.get(message.to);
    if (peer === undefined) {
      return Promise.reject(new SnapshotTransferError(grpc.status.NOT_FOUND, `unknown peer ${JSON.stringify(message.to)}`));
    }
    if (peer.snapshotSends.size >= MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER) {
      return Promise.reject(
        new SnapshotTransferError(grpc.status.RESOURCE_EXHAUSTED, `a snapshot transfer to ${peer.id} is already running`),
      );
    }
    const transfer = new OutboundSnapshot({
      localId: this.id,
      address: peer.address,
      message,
      chunks,
      channelOptions: this.tls ? { ...SNAPSHOT_CHANNEL_OPTIONS, ...peerChannelOptions(peer.id) } : SNAPSHOT_CHANNEL_OPTIONS,
      credentials: this.credentialsFor(peer.id),
      log: this.log,
    });
    peer.snapshotSends.add(transfer);
    this.outboundSnapshots.add(transfer);
    const forget = (): void => {
      peer.snapshotSends.delete(transfer);
      this.outboundSnapshots.delete(transfer);
    };
    return transfer.result.then(
      () => {
        forget();
        this.log.debug({ peer: peer.id, bytes: transfer.sentBytes }, 'snapshot sent');
      },
      (err: unknown) => {
        forget();
        throw err;
      },
    );
  }

  /** {@inheritDoc SnapshotTransport.onSnapshot} A later call replaces the earlier handler. */
  onSnapshot(handler: SnapshotHandler): void {
    this.snapshotHandler = handler;
  }

  /**
   * {@inheritDoc Transport.setPeer}
   * Setting this node's own id is ignored. A changed address closes the old stream and opens a
   * new one; queued messages are kept.
   *
   * @throws {TypeError} when `address` is not a non-empty string.
   */
  setPeer(id: NodeId, address: string): void {
    if (typeof address !== 'string' || address.length === 0) {
      throw new TypeError(`GrpcTransport.setPeer: address of peer ${JSON.stringify(id)} must be a non-empty host:port`);
    }
    if (id === this.id || this.closed) return;
    const existing = this.peers.get(id);
    if (existing !== undefined) {
      if (existing.address === address) return;
      this.log.info({ peer: id, from: existing.address, to: address }, 'peer address changed');
      this.cancelSnapshotSends(existing, 'peer address changed');
      this.teardown(existing);
      existing.address = address;
      existing.backoffMs = RECONNECT_BACKOFF_MIN_MS;
      this.openStream(existing);
      return;
    }
    const peer: PeerState = {
      id,
      address,
      client: undefined,
      call: undefined,
      open: false,
      awaitingDrain: false,
      queue: new PeerQueue({ maxMessages: MAX_QUEUED_MESSAGES_PER_PEER, maxBytes: MAX_QUEUED_BYTES_PER_PEER }),
      backoffMs: RECONNECT_BACKOFF_MIN_MS,
      reconnectTimer: undefined,
      lastForcedReconnect: 0,
      heardFromReconnects: 0,
      streamsOpened: 0,
      sentMessages: 0,
      sentBatches: 0,
      sentBytes: 0,
      drainWaits: 0,
      droppedMessages: 0,
      snapshotSends: new Set(),
    };
    this.peers.set(id, peer);
    this.openStream(peer);
  }

  /** {@inheritDoc Transport.removePeer} Unknown ids are ignored. Cancels a snapshot transfer to it. */
  removePeer(id: NodeId): void {
    const peer = this.peers.get(id);
    if (peer === undefined) return;
    this.peers.delete(id);
    this.peerSnapshotFormats.delete(id);
    this.cancelSnapshotSends(peer, 'peer removed');
    this.teardown(peer);
    peer.queue.clear();
  }

  /** Counters per peer and for inbound traffic; a snapshot, not live. */
  stats(): TransportStats {
    const peers: Record<string, PeerStats> = {};
    for (const p of this.peers.values()) {
      peers[p.id] = {
        address: p.address,
        connected: p.open,
        queuedMessages: p.queue.length,
        queuedBytes: p.queue.byteLength,
        sentMessages: p.sentMessages,
        sentBatches: p.sentBatches,
        sentBytes: p.sentBytes,
        drainWaits: p.drainWaits,
        droppedMessages: p.droppedMessages,
        reconnects: Math.max(0, p.streamsOpened - 1),
        heardFromReconnects: p.heardFromReconnects,
      };
    }
    return {
      peers,
      unknownPeerDropped: this.unknownPeerDropped,
      snapshotOnStreamDropped: this.snapshotOnStreamDropped,
      receivedBatches: this.receivedBatches,
      receivedMessages: this.receivedMessages,
      malformedDropped: this.malformedDropped,
      misaddressedDropped: this.misaddressedDropped,
      unhandledDropped: this.unhandledDropped,
    };
  }

  /**
   * {@inheritDoc Transport.close}
   * Open outbound streams are half-closed so written batches reach the peer, and cancelled if
   * they have not finished within {@link CLOSE_GRACE_MS}; streams still connecting are cancelled
   * at once. Inbound streams are ended with `UNAVAILABLE`. Snapshot transfers are cancelled both
   * ways: outbound ones reject with `CANCELLED` (close waits until their chunk iterator was
   * released and their call ended), inbound ones end with `UNAVAILABLE` and their handler's
   * iterator throws (close does not wait for the handler itself). Idempotent.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    this.handler = undefined;
    this.snapshotHandler = undefined;
    for (const s of [...this.inboundSnapshots]) s.cancel('peer transport closed');
    this.inboundSnapshots.clear();
    const transfers = [...this.outboundSnapshots];
    for (const t of transfers) t.cancel('peer transport closed');
    const transfersEnded = transfers.map((t) => t.result.catch(() => undefined));
    if (this.flushImmediate !== undefined) {
      clearImmediate(this.flushImmediate);
      this.flushImmediate = undefined;
    }
    for (const s of this.inbound) this.finishInbound(s, { code: grpc.status.UNAVAILABLE, details: 'peer transport closed' });
    this.inbound.clear();
    const peers = [...this.peers.values()];
    this.peers.clear();
    this.closing = Promise.all([...peers.map((p) => this.closePeer(p)), ...transfersEnded]).then(() => undefined);
    return this.closing;
  }

  // -------------------------------------------------------------------------------------------
  // Outbound.
  // -------------------------------------------------------------------------------------------

  private openStream(peer: PeerState): void {
    if (this.closed || this.peers.get(peer.id) !== peer) return;
    peer.client ??= new grpc.Client(peer.address, this.credentialsFor(peer.id), this.tls ? { ...this.channelOptions, ...peerChannelOptions(peer.id) } : this.channelOptions);
    // waitForReady: while the peer is unreachable the call waits for the channel (which keeps
    // reconnecting with the same back-off bounds) instead of failing at once.
    const metadata = new grpc.Metadata({ waitForReady: true });
    metadata.set('raft-from', this.id);
    if (this.advertiseAddress) metadata.set('raft-from-address', this.advertiseAddress);
    if (this.snapshotFormats.length > 0) metadata.set(SNAPSHOT_FORMATS_METADATA_KEY, encodeSnapshotFormats(this.snapshotFormats));
    const call = peer.client.makeClientStreamRequest<Buffer, unknown>(
      RAFT_STREAM_METHOD_PATH,
      identity,
      loadRaftProto().deserializeAck,
      metadata,
      {},
      (err) => this.onStreamEnd(peer, call, err),
    );
    peer.call = call;
    peer.open = false;
    peer.awaitingDrain = false;
    peer.streamsOpened++;
    call.on('metadata', () => {
      if (peer.call !== call) return;
      peer.open = true;
      peer.backoffMs = RECONNECT_BACKOFF_MIN_MS;
      this.log.debug({ peer: peer.id, address: peer.address }, 'peer stream open');
      this.flushPeer(peer);
    });
    call.on('drain', () => {
      if (peer.call !== call) return;
      peer.awaitingDrain = false;
      this.flushPeer(peer);
    });
    // The status reaches the callback; this listener only keeps an 'error' event from throwing.
    call.on('error', (err: Error) => this.log.debug({ peer: peer.id, err: err.message }, 'peer stream error'));
  }

  /** Credentials for dialing peer `id`: mutual TLS checking that the server is `id`, or plaintext. */
  private credentialsFor(id: NodeId): grpc.ChannelCredentials {
    return this.tls ? peerChannelCredentials(this.tls, id) : grpc.credentials.createInsecure();
  }

  /**
   * Refuses an inbound peer call whose client certificate does not name the member it claims to
   * be (TLS only; see {@link peerCallRefusal}); true when refused (the call is answered).
   */
  private refusePeerCall(call: InboundPeerCall, callback: (err: Partial<grpc.StatusObject>) => void, what: string): boolean {
    const refusal = peerCallRefusal(call, this.tls !== undefined);
    if (refusal === undefined) return false;
    this.log.warn({ claimed: refusal.claimed, certName: refusal.certName ?? null, peer: call.getPeer(), call: what }, `refusing ${what}: ${refusal.details}`);
    callback({ code: grpc.status.UNAUTHENTICATED, details: refusal.details });
    return true;
  }

  private onStreamEnd(peer: PeerState, call: grpc.ClientWritableStream<Buffer>, err: grpc.ServiceError | null): void {
    if (peer.call !== call) return;
    const wasOpen = peer.open;
    peer.call = undefined;
    peer.open = false;
    peer.awaitingDrain = false;
    if (this.closed || this.peers.get(peer.id) !== peer) return;
    const reason = err === null ? 'ended by peer' : `${grpc.status[err.code] ?? err.code}: ${err.details}`;
    if (wasOpen) this.log.warn({ peer: peer.id, address: peer.address, reason }, 'peer stream closed; reconnecting');
    else this.log.debug({ peer: peer.id, address: peer.address, reason }, 'peer stream failed; reconnecting');
    this.scheduleReconnect(peer);
  }

  private scheduleReconnect(peer: PeerState): void {
    // Equal jitter: half the back-off fixed, half random, so peers do not reconnect in lockstep.
    const base = peer.backoffMs;
    const delayMs = base / 2 + (Math.random() * base) / 2;
    peer.backoffMs = Math.min(base * 2, this.backoffMaxMs);
    peer.reconnectTimer = setTimeout(() => {
      peer.reconnectTimer = undefined;
      this.openStream(peer);
    }, delayMs);
  }

  /**
   * The peer was heard from while our stream to it is down: the path works again, so reconnect
   * now instead of waiting out the back-off (ours, or the channel's own in its transient-failure
   * state: the client is replaced). At most once per {@link RECONNECT_BACKOFF_MIN_MS}.
   */
  private reconnectIfHeardFrom(id: string): void {
    const peer = this.peers.get(id as NodeId);
    if (peer === undefined || peer.open || this.closed) return;
    const now = performance.now();
    if (now - peer.lastForcedReconnect < RECONNECT_BACKOFF_MIN_MS) return;
    peer.lastForcedReconnect = now;
    peer.heardFromReconnects++;
    this.log.debug({ peer: peer.id, address: peer.address }, 'heard from peer while disconnected; reconnecting now');
    this.teardown(peer);
    peer.backoffMs = RECONNECT_BACKOFF_MIN_MS;
    this.openStream(peer);
  }

  private scheduleFlush(): void {
    if (this.flushImmediate !== undefined) return;
    this.flushImmediate = setImmediate(() => {
      this.flushImmediate = undefined;
      for (const peer of this.peers.values()) this.flushPeer(peer);
    });
  }

  /** Writes the queue as batches until it is empty or the stream asks us to wait for 'drain'. */
  private flushPeer(peer: PeerState): void {
    const call = peer.call;
    while (call !== undefined && peer.open && !peer.awaitingDrain && peer.queue.length > 0) {
      const { messages } = peer.queue.take(MAX_BATCH_SIZE_BYTES);
      let bytes: Buffer;
      try {
        bytes = encodeBatch(messages);
      } catch (err) {
        peer.droppedMessages += messages.length;
        this.log.error({ peer: peer.id, err }, 'cannot encode batch; dropped');
        continue;
      }
      if (bytes.length > MAX_MESSAGE_SIZE_BYTES) {
        peer.droppedMessages += messages.length;
        this.log.warn({ peer: peer.id, bytes: bytes.length, max: MAX_MESSAGE_SIZE_BYTES }, 'batch larger than MAX_MESSAGE_SIZE_BYTES; dropped');
        continue;
      }
      peer.sentMessages += messages.length;
      peer.sentBatches++;
      peer.sentBytes += bytes.length;
      if (!call.write(bytes)) {
        peer.awaitingDrain = true;
        peer.drainWaits++;
      }
    }
  }

  private cancelSnapshotSends(peer: PeerState, reason: string): void {
    for (const t of peer.snapshotSends) t.cancel(reason);
  }

  /** Stops a peer's stream, client and reconnect timer (the queue is kept). */
  private teardown(peer: PeerState): void {
    if (peer.reconnectTimer !== undefined) {
      clearTimeout(peer.reconnectTimer);
      peer.reconnectTimer = undefined;
    }
    const call = peer.call;
    peer.call = undefined;
    peer.open = false;
    peer.awaitingDrain = false;
    call?.cancel();
    peer.client?.close();
    peer.client = undefined;
  }

  private closePeer(peer: PeerState): Promise<void> {
    if (peer.reconnectTimer !== undefined) {
      clearTimeout(peer.reconnectTimer);
      peer.reconnectTimer = undefined;
    }
    const { call, client } = peer;
    const wasOpen = peer.open;
    peer.call = undefined;
    peer.client = undefined;
    peer.open = false;
    peer.queue.clear();
    if (call === undefined || !wasOpen) {
      call?.cancel();
      client?.close();
      return Promise.resolve();
    }
    // Half-close so the batches already written reach the peer, then wait for its status.
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        call.cancel();
        client?.close();
        resolve();
      };
      const timer = setTimeout(finish, CLOSE_GRACE_MS);
      call.on('status', finish);
      call.end();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Inbound.
  // -------------------------------------------------------------------------------------------

  private acceptStream(call: grpc.ServerReadableStream<Buffer, object>, callback: grpc.sendUnaryData<object>): void {
    if (this.closed) {
      callback({ code: grpc.status.UNAVAILABLE, details: 'peer transport closed' });
      return;
    }
    // Before anything of the call is read or believed (its raft-from-address included).
    if (this.refusePeerCall(call, callback, 'peer stream')) return;
    const stream: InboundStream = { call, callback, done: false };
    this.inbound.add(stream);
    const peerHint = call.metadata.get('raft-from')[0];
    const from = typeof peerHint === 'string' ? peerHint : call.getPeer();
    const advertised = call.metadata.get('raft-from-address')[0];
    /**
     * A peer we have no address for — we joined with no peer list, or were told to forget it
     * (`removePeer`) and it was added back since — tells us where it is on its stream, so our
     * answers reach it (without this, a node that applied a removal but not yet the re-addition
     * could never answer the re-added member when it leads).
     */
    const learn = (): void => {
      if (typeof peerHint !== 'string' || peerHint === '' || typeof advertised !== 'string' || !/^[^\s]+:\d{1,5}$/.test(advertised)) return;
      if (this.peers.has(peerHint as NodeId) || this.closed) return;
      this.log.info({ peer: peerHint, address: advertised }, 'learned the address of a peer from its stream');
      this.setPeer(peerHint as NodeId, advertised);
    };
    learn();
    if (typeof peerHint === 'string') this.noteSnapshotFormats(peerHint, call.metadata.get(SNAPSHOT_FORMATS_METADATA_KEY)[0]);
    // Response headers tell the peer the stream is accepted; it starts writing on them.
    call.sendMetadata(new grpc.Metadata());
    if (typeof peerHint === 'string') this.reconnectIfHeardFrom(peerHint);
    call.on('data', (bytes: Buffer) => {
      if (stream.done) return;
      learn();
      if (typeof peerHint === 'string') this.reconnectIfHeardFrom(peerHint);
      this.receiveBatch(bytes, from, typeof peerHint === 'string' ? peerHint : undefined);
    });
    call.on('end', () => this.finishInbound(stream, null));
    call.on('error', (err: Error) => {
      this.log.debug({ from, err: err.message }, 'inbound peer stream error');
      this.finishInbound(stream, undefined);
    });
    call.on('cancelled', () => this.finishInbound(stream, undefined));
  }

  private acceptSnapshot(call: grpc.ServerReadableStream<Buffer, WireSnapshotAck>, callback: grpc.sendUnaryData<WireSnapshotAck>): void {
    if (this.closed) {
      callback({ code: grpc.status.UNAVAILABLE, details: 'peer transport closed' });
      return;
    }
    if (this.refusePeerCall(call, callback, 'snapshot transfer')) return;
    const transfer = new InboundSnapshot(call, callback, {
      localId: this.id,
      handler: () => this.snapshotHandler,
      onFinish: (t) => this.inboundSnapshots.delete(t),
      log: this.log,
    });
    this.inboundSnapshots.add(transfer);
  }

  /**
   * Records the snapshot formats a known peer advertised on the stream it just opened (the
   * latest stream counts: a peer restarted at another version says so again). A peer that
   * advertises none, or a malformed list (logged), is taken to advertise none.
   */
  private noteSnapshotFormats(peer: string, value: unknown): void {
    if (!this.peers.has(peer as NodeId)) return;
    const formats = typeof value === 'string' ? parseSnapshotFormats(value) : undefined;
    if (typeof value === 'string' && formats === undefined) this.log.warn({ peer, value }, `ignoring a malformed ${SNAPSHOT_FORMATS_METADATA_KEY} value`);
    if (formats === undefined) this.peerSnapshotFormats.delete(peer);
    else this.peerSnapshotFormats.set(peer, formats);
  }

  /** {@inheritDoc SnapshotTransport.snapshotFormatsOf} */
  snapshotFormatsOf(peer: NodeId): readonly number[] | undefined {
    return this.peerSnapshotFormats.get(peer);
  }

  /** Ends an inbound stream once: `null` answers OK, an error object answers that status, `undefined` answers nothing (the call is already gone). */
  private finishInbound(stream: InboundStream, status: Partial<grpc.StatusObject> | null | undefined): void {
    if (stream.done) return;
    stream.done = true;
    this.inbound.delete(stream);
    if (status === undefined) return;
    if (status === null) stream.callback(null, {});
    else stream.callback(status);
  }

  /**
   * Decodes one batch and hands its messages to the handler. `claimed` is the stream's
   * `raft-from` (checked against the client certificate under TLS): a message whose `from`
   * differs is dropped and counted as misaddressed.
   */
  private receiveBatch(bytes: Buffer, from: string, claimed: string | undefined): void {
    let wire: unknown[];
    try {
      wire = decodeWireBatch(bytes);
    } catch (err) {
      this.malformedDropped++;
      this.log.warn({ from, err: err instanceof Error ? err.message : String(err) }, 'dropping malformed batch');
      return;
    }
    this.receivedBatches++;
    for (const w of wire) {
      let msg: Message;
      try {
        msg = fromWire(w);
      } catch (err) {
        this.malformedDropped++;
        if (err instanceof WireDecodeError) this.log.warn({ from, field: err.field, reason: err.reason }, 'dropping malformed message');
        else this.log.warn({ from, err }, 'dropping message that failed to decode');
        continue;
      }
      if (msg.type === 'InstallSnapshot') {
        // Only the snapshot call carries a snapshot, with its payload; one on the stream has none.
        this.malformedDropped++;
        this.log.warn({ from: msg.from }, 'dropping InstallSnapshot that arrived on the peer stream without its payload');
        continue;
      }
      if (claimed !== undefined && msg.from !== claimed) {
        this.misaddressedDropped++;
        this.log.warn({ streamFrom: claimed, from: msg.from, to: msg.to, type: msg.type }, 'dropping message whose sender is not the stream\'s raft-from');
        continue;
      }
      if (msg.to !== this.id) {
        this.misaddressedDropped++;
        this.log.warn({ from: msg.from, to: msg.to, type: msg.type }, 'dropping message addressed to another node');
        continue;
      }
      const handler = this.handler;
      if (handler === undefined) {
        this.unhandledDropped++;
        continue;
      }
      this.receivedMessages++;
      try {
        handler(msg);
      } catch (err) {
        // The handler is not expected to throw; keep the stream alive for the next messages.
        this.log.error({ err, from: msg.from, type: msg.type }, 'message handler threw');
      }
    }
  }
}
