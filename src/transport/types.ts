/**
 * The transport port: how a node hands Raft messages to its peers and receives theirs. Shaped
 * after hashicorp/raft's `Transport` and etcd's `rafthttp.Transporter`: sending is fire and
 * forget (Raft retries whatever is lost, §5.3 "if followers crash or run slowly, or if network
 * packets are lost, the leader retries AppendEntries RPCs indefinitely").
 *
 * The gRPC implementation is `GrpcTransport` in `./grpc-transport.ts`; the simulator in
 * `test/sim/` provides a deterministic in-memory one.
 */
import type { InstallSnapshot, Message, NodeId } from '../raft/types.js';

/** Handler for inbound messages; called synchronously, once per message. */
export type MessageHandler = (msg: Message) => void;

/** Moves Raft messages between the nodes of one cluster. */
export interface Transport {
  /**
   * Queues messages for their `to` peers; never blocks, never throws for an unknown or down peer
   * (the message is dropped and counted; Raft retries). An `InstallSnapshot` is never sent this
   * way (it is dropped): a snapshot travels with its payload through
   * {@link SnapshotTransport.sendSnapshot}.
   */
  send(messages: readonly Message[]): void;
  /**
   * Registers the single handler for inbound messages (called synchronously per message, in
   * arrival order per peer). A later call replaces the earlier handler. Messages that arrive
   * before a handler is registered are dropped.
   */
  onMessage(handler: MessageHandler): void;
  /** Adds or changes a peer's address (`host:port`); used for membership changes. */
  setPeer(id: NodeId, address: string): void;
  /** Forgets a peer: closes its stream and drops what is queued for it. */
  removePeer(id: NodeId): void;
  /** Closes all streams and stops reconnecting; resolves once nothing is left running. */
  close(): Promise<void>;
}

/**
 * Streams snapshots between peers (§7 InstallSnapshot, chunked as in Figure 13), on a
 * separate RPC per transfer so that a large snapshot never delays heartbeats or other peers.
 */
export interface SnapshotTransport {
  /**
   * Sends `message` (an InstallSnapshot whose `snapshot.data` is empty: the payload comes from
   * `chunks`) to `message.to`, streaming `chunks` with flow control. Resolves once the receiver
   * acknowledged that it has the whole payload and handed it to its handler; rejects on any
   * failure (the caller reports it to Raft, which retries later).
   */
  sendSnapshot(message: InstallSnapshot, chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * Registers the single handler of inbound snapshots: it receives the InstallSnapshot header
   * and the payload chunks in order, and resolves once it has consumed them (e.g. written and
   * installed them); its rejection fails the transfer on the sender's side.
   */
  onSnapshot(handler: (message: InstallSnapshot, chunks: AsyncIterable<Uint8Array>) => Promise<void>): void;
  /**
   * The snapshot payload formats `peer` says it reads, as it advertised them when it opened its
   * peer stream to this node; undefined when it advertised none (a version from before the
   * advertisement) or has not been heard from.
   */
  snapshotFormatsOf(peer: NodeId): readonly number[] | undefined;
}

/** Counters of one outbound peer, as returned by `GrpcTransport.stats()`. */
export interface PeerStats {
  /** The peer's address, `host:port`. */
  readonly address: string;
  /** True while a stream to the peer is open (the peer's server accepted it). */
  readonly connected: boolean;
  /** Messages waiting in the queue now. */
  readonly queuedMessages: number;
  /** Estimated bytes waiting in the queue now. */
  readonly queuedBytes: number;
  /** Messages written to the stream (handed to gRPC; not an acknowledgement of delivery). */
  readonly sentMessages: number;
  /** `MessageBatch` writes on the stream. */
  readonly sentBatches: number;
  /** Encoded bytes written to the stream. */
  readonly sentBytes: number;
  /** Times a write returned `false` and the queue waited for the stream's `'drain'`. */
  readonly drainWaits: number;
  /** Messages dropped: queue full, too large, or their batch could not be encoded. */
  readonly droppedMessages: number;
  /** Streams opened after the first one (one per reconnect attempt). */
  readonly reconnects: number;
  /** Reconnects made at once because the peer was heard from while the stream was down. */
  readonly heardFromReconnects: number;
}

/** Counters of a whole transport, as returned by `GrpcTransport.stats()`. */
export interface TransportStats {
  /** Outbound counters by peer id. */
  readonly peers: Readonly<Record<string, PeerStats>>;
  /** Messages passed to `send` for a peer that is not configured, or for this node itself (dropped). */
  readonly unknownPeerDropped: number;
  /** InstallSnapshot messages passed to `send` (dropped: snapshots travel only through `sendSnapshot`). */
  readonly snapshotOnStreamDropped: number;
  /** Inbound `MessageBatch` messages received. */
  readonly receivedBatches: number;
  /** Inbound messages handed to the handler. */
  readonly receivedMessages: number;
  /** Inbound messages or batches dropped because they did not decode or validate. */
  readonly malformedDropped: number;
  /**
   * Inbound messages dropped because their `to` is not this node, or their `from` is not the
   * sender their stream declared (`raft-from`, checked against its certificate under TLS).
   */
  readonly misaddressedDropped: number;
  /** Inbound messages dropped because no handler was registered or the transport was closed. */
  readonly unhandledDropped: number;
}
