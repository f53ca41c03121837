/**
 * Chunked snapshot transfers over gRPC (§7 InstallSnapshot, chunked as in Figure 13: offset,
 * data[], done), one client-streaming `raft.v1.Raft/InstallSnapshot` call per transfer, as etcd's
 * `rafthttp` sends snapshots apart from its message streams.
 *
 * - {@link OutboundSnapshot}: the sender. It pulls the caller's chunks one at a time and hands
 *   at most {@link MAX_SNAPSHOT_WRITES_IN_FLIGHT} writes to gRPC before waiting for one to be
 *   flushed (and waits for `'drain'` whenever a write returns `false`), so its memory stays
 *   bounded by a couple of chunks plus HTTP/2's flow-control window. Its done chunk carries the
 *   payload's CRC-32.
 * - {@link InboundSnapshot}: the receiver. It checks every chunk ({@link SnapshotChunkSequence},
 *   the payload's CRC-32 with the done chunk: a payload damaged on the way fails the handler's
 *   iterator instead of ending it), hands the payload to the snapshot handler through a
 *   {@link SnapshotChunkQueue}, pauses the call while the handler is behind, and answers
 *   `SnapshotAck` only after the handler resolved.
 *
 * `GrpcTransport` (`./grpc-transport.ts`) creates both and cancels them on `close()`.
 */
import { crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { InstallSnapshot, NodeId } from '../raft/types.js';
import {
  decodeSnapshotChunk,
  encodeSnapshotChunk,
  loadRaftProto,
  RAFT_INSTALL_SNAPSHOT_METHOD_PATH,
  snapshotAckBytes,
  SnapshotChunkSequence,
  WireDecodeError,
  type WireSnapshotAck,
} from './codec.js';

const MIB = 1024 * 1024;

/** Chunk size the node streams snapshots in, in bytes (the transport takes whatever it is given, up to {@link MAX_SNAPSHOT_CHUNK_BYTES}). */
export const DEFAULT_SNAPSHOT_CHUNK_BYTES = 1 * MIB;
/** Largest payload chunk, in bytes, a sender writes or a receiver accepts; a larger one fails the transfer. */
export const MAX_SNAPSHOT_CHUNK_BYTES = 4 * MIB;
/** Snapshot transfers that may run to one peer at a time; one more is refused at once. */
export const MAX_CONCURRENT_SNAPSHOT_SENDS_PER_PEER = 1;
/** Chunk writes a sender hands to gRPC before it waits for one of them to be flushed. */
export const MAX_SNAPSHOT_WRITES_IN_FLIGHT = 2;
/**
 * Chunks a receiver holds for a handler that is slower than the network before it pauses the
 * call. (gRPC reads a few messages ahead of a paused call on its own: at most the call's
 * object-mode `highWaterMark`, 16 messages.)
 */
export const MAX_BUFFERED_SNAPSHOT_CHUNKS = 2;

/**
 * Handler of inbound snapshots (see `SnapshotTransport.onSnapshot`): receives the InstallSnapshot
 * header (its `snapshot.data` is empty) and the payload, and resolves once it consumed it.
 */
export type SnapshotHandler = (message: InstallSnapshot, chunks: AsyncIterable<Uint8Array>) => Promise<void>;

/**
 * Why a snapshot transfer failed, on either side. `code` is a gRPC status: the remote status
 * when the receiver refused the transfer (`INVALID_ARGUMENT` malformed or misaddressed,
 * `FAILED_PRECONDITION` no handler, `UNKNOWN` the handler rejected, `ABORTED` the handler
 * finished early, `UNAVAILABLE` closed or unreachable), or a local one: `NOT_FOUND` unknown peer,
 * `RESOURCE_EXHAUSTED` a transfer to that peer is already running, `INVALID_ARGUMENT` a bad
 * message or chunk, `ABORTED` the chunk iterator threw (the error is the `cause`), `CANCELLED`
 * the transfer was cancelled (transport closed, peer removed, sender gone), `DATA_LOSS` the
 * acknowledged size differs from the size sent.
 */
export class SnapshotTransferError extends Error {
  override readonly name = 'SnapshotTransferError';
  constructor(
    /** The gRPC status code that describes the failure. */
    readonly code: grpc.status,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const identity = (b: Buffer): Buffer => b;
const EMPTY_BYTES = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------
// The receiver's queue.
// ---------------------------------------------------------------------------------------------

/**
 * The payload of one inbound transfer as the handler sees it: an `AsyncIterable<Uint8Array>`
 * that may be iterated once, fed by the gRPC call. `push` tells the producer to pause once
 * `capacity` chunks wait; `onSpace` is called whenever the consumer takes one and fewer remain.
 * After `fail`, the iterator throws that error (buffered chunks are discarded); after `end`, it
 * finishes once the buffered chunks are consumed.
 */
export class SnapshotChunkQueue implements AsyncIterable<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private ended = false;
  private error: Error | undefined;
  private abandoned = false;
  private iterated = false;
  private waiter: (() => void) | undefined;

  constructor(
    /** Chunks held before `push` answers `false`. */
    private readonly capacity: number,
    /** Called when the consumer took a chunk and fewer than `capacity` remain. */
    private readonly onSpace: () => void,
  ) {}

  /** Chunks waiting for the consumer. */
  get length(): number {
    return this.chunks.length;
  }

  /** True once the consumer stopped iterating early (`break` / `return`). */
  get isAbandoned(): boolean {
    return this.abandoned;
  }

  /** Queues a chunk; returns `false` when the queue is at capacity (the producer should pause). */
  push(chunk: Uint8Array): boolean {
    if (this.ended || this.error !== undefined || this.abandoned) return true;
    this.chunks.push(chunk);
    this.wake();
    return this.chunks.length < this.capacity;
  }

  /** Marks the payload complete: iteration ends after the buffered chunks. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  /** Fails the payload: the next `next()` (and every later one) rejects with `err`. First error wins. */
  fail(err: Error): void {
    this.error ??= err;
    this.chunks.length = 0;
    this.wake();
  }

  /**
   * Returns the single iterator of the payload.
   *
   * @throws {Error} when called a second time: the payload streams through once.
   */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterated) throw new Error('a snapshot payload can be iterated only once');
    this.iterated = true;
    return {
      next: () => this.next(),
      return: () => {
        this.abandoned = true;
        this.chunks.length = 0;
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }

  private async next(): Promise<IteratorResult<Uint8Array>> {
    // Each pass either returns or waits for push / end / fail; there is no busy loop.
    for (;;) {
      if (this.error !== undefined) throw this.error;
      const chunk = this.chunks.shift();
      if (chunk !== undefined) {
        if (this.chunks.length < this.capacity) this.onSpace();
        return { done: false, value: chunk };
      }
      if (this.ended || this.abandoned) return { done: true, value: undefined };
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}

// ---------------------------------------------------------------------------------------------
// Sender.
// ---------------------------------------------------------------------------------------------

/** What an {@link OutboundSnapshot} needs from the transport. */
export interface OutboundSnapshotOptions {
  /** This node's id (sent as `raft-from` metadata). */
  readonly localId: NodeId;
  /** The peer's `host:port`. */
  readonly address: string;
  /** The header: an InstallSnapshot whose `snapshot.data` is empty. */
  readonly message: InstallSnapshot;
  /** The payload, pulled one chunk at a time. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /** Options of the transfer's own channel (a connection apart from the peer stream's). */
  readonly channelOptions: grpc.ChannelOptions;
  /** Credentials of that channel (mutual TLS, or plaintext when absent). */
  readonly credentials?: grpc.ChannelCredentials;
  /** The transport's logger; the transfer logs under `peer` and `snapshotIndex`. */
  readonly log: Logger;
}

/**
 * One outbound transfer: a dedicated client (so the transfer's flow-control window never
 * throttles the peer's message stream), one `InstallSnapshot` call without deadline, a header
 * chunk, the payload chunks with contiguous offsets, and a `done` chunk with the total size.
 * {@link OutboundSnapshot.result} settles once the outcome is known AND the chunk iterator has
 * been released (finished or `return()`ed) AND the call has ended, so nothing of the transfer
 * runs afterwards.
 */
export class OutboundSnapshot {
  /** Resolves when the receiver acknowledged the whole payload; rejects with {@link SnapshotTransferError}. */
  readonly result: Promise<void>;
  /** The peer this transfer goes to. */
  readonly to: NodeId;
  /** Payload bytes handed to gRPC so far. */
  sentBytes = 0;
  /** Times a chunk write returned `false` and the sender waited for `'drain'`. */
  drainWaits = 0;

  private readonly client: grpc.Client;
  private readonly call: grpc.ClientWritableStream<Buffer>;
  private readonly log: Logger;
  private failure: SnapshotTransferError | undefined;
  private stopped = false;
  private wroteAll = false;
  private inFlight = 0;
  private awaitingDrain = false;
  private waiter: (() => void) | undefined;
  private statusReceived!: () => void;

  constructor(private readonly options: OutboundSnapshotOptions) {
    this.to = options.message.to;
    this.log = options.log.child({ peer: this.to, snapshotIndex: options.message.snapshot.metadata.index });
    this.client = new grpc.Client(options.address, options.credentials ?? grpc.credentials.createInsecure(), options.channelOptions);
    const metadata = new grpc.Metadata();
    metadata.set('raft-from', options.localId);
    const status = new Promise<void>((resolve) => {
      this.statusReceived = resolve;
    });
    this.call = this.client.makeClientStreamRequest<Buffer, unknown>(
      RAFT_INSTALL_SNAPSHOT_METHOD_PATH,
      identity,
      loadRaftProto().deserializeSnapshotAck,
      metadata,
      {},
      (err, ack) => this.onStatus(err, ack),
    );
    // The status reaches the callback; this listener only keeps an 'error' event from throwing.
    this.call.on('error', (err: Error) => this.log.debug({ err: err.message }, 'snapshot call error'));
    this.call.on('drain', () => {
      this.awaitingDrain = false;
      this.wake();
    });
    this.result = Promise.all([this.pump(), status]).then(() => {
      this.client.close();
      if (this.failure !== undefined) throw this.failure;
    });
  }

  /** Cancels the transfer (if still running): `result` rejects with `CANCELLED` and `reason`. */
  cancel(reason: string): void {
    this.fail(new SnapshotTransferError(grpc.status.CANCELLED, `snapshot transfer to ${this.to} cancelled: ${reason}`));
  }

  /** Pulls and writes every chunk; never rejects (failures go through {@link fail}). */
  private async pump(): Promise<void> {
    const { message, chunks } = this.options;
    let iterator: AsyncIterator<Uint8Array> | undefined;
    let released = false;
    try {
      this.write(encodeSnapshotChunk({ header: message, offset: 0, data: EMPTY_BYTES, done: false, totalBytes: 0 }));
      iterator = chunks[Symbol.asyncIterator]();
      let offset = 0;
      /** CRC-32 of the payload written so far, sent with the done chunk. */
      let crc = 0;
      // Bounded by the caller's iterator; each pass waits for room before pulling a chunk, so
      // at most MAX_SNAPSHOT_WRITES_IN_FLIGHT chunks are held beyond the one being pulled.
      for (let index = 0; ; index++) {
        await this.roomToWrite();
        if (this.stopped) return;
        let next: IteratorResult<Uint8Array>;
        try {
          next = await iterator.next();
        } catch (err) {
          released = true; // an iterator that threw is finished
          throw new SnapshotTransferError(grpc.status.ABORTED, `reading the snapshot for ${this.to} failed: ${errorMessage(err)}`, { cause: err });
        }
        if (next.done === true) {
          released = true;
          break;
        }
        if (this.stopped) return;
        const data: unknown = next.value;
        if (!(data instanceof Uint8Array)) {
          throw new SnapshotTransferError(grpc.status.INVALID_ARGUMENT, `snapshot chunk ${index} is not a Uint8Array`);
        }
        if (data.byteLength > MAX_SNAPSHOT_CHUNK_BYTES) {
          throw new SnapshotTransferError(
            grpc.status.INVALID_ARGUMENT,
            `snapshot chunk ${index} of ${data.byteLength} bytes exceeds MAX_SNAPSHOT_CHUNK_BYTES (${MAX_SNAPSHOT_CHUNK_BYTES})`,
          );
        }
        if (data.byteLength === 0) continue;
        this.write(encodeSnapshotChunk({ header: undefined, offset, data, done: false, totalBytes: 0 }));
        crc = crc32(data, crc) >>> 0;
        offset += data.byteLength;
        this.sentBytes = offset;
      }
      if (this.stopped) return;
      this.write(encodeSnapshotChunk({ header: undefined, offset, data: EMPTY_BYTES, done: true, totalBytes: offset, payloadCrc32: crc }));
      this.wroteAll = true;
      this.call.end();
    } catch (err) {
      this.fail(
        err instanceof SnapshotTransferError
          ? err
          : new SnapshotTransferError(grpc.status.INTERNAL, `snapshot transfer to ${this.to} failed: ${errorMessage(err)}`, { cause: err }),
      );
    } finally {
      if (iterator !== undefined && !released) {
        try {
          await iterator.return?.();
        } catch (err) {
          this.log.debug({ err: errorMessage(err) }, 'snapshot chunk iterator threw on return');
        }
      }
    }
  }

  private write(bytes: Buffer): void {
    this.inFlight++;
    const ok = this.call.write(bytes, () => {
      this.inFlight--;
      this.wake();
    });
    if (!ok) {
      this.awaitingDrain = true;
      this.drainWaits++;
    }
  }

  /** Waits until a write may be added (fewer than the limit in flight, no pending drain) or the transfer stopped. */
  private async roomToWrite(): Promise<void> {
    while (!this.stopped && (this.awaitingDrain || this.inFlight >= MAX_SNAPSHOT_WRITES_IN_FLIGHT)) {
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  private fail(err: SnapshotTransferError): void {
    if (this.stopped) return;
    this.stopped = true;
    this.failure = err;
    this.log.debug({ code: grpc.status[err.code], err: err.message }, 'snapshot transfer failed');
    this.call.cancel();
    this.wake();
  }

  private onStatus(err: grpc.ServiceError | null, ack: unknown): void {
    if (!this.stopped) {
      if (err !== null) {
        this.fail(new SnapshotTransferError(err.code, `peer ${this.to} refused the snapshot: ${grpc.status[err.code] ?? err.code}: ${err.details}`));
      } else if (!this.wroteAll) {
        this.fail(new SnapshotTransferError(grpc.status.INTERNAL, `peer ${this.to} answered before the transfer finished`));
      } else {
        let received: number | undefined;
        try {
          received = snapshotAckBytes(ack);
        } catch {
          received = undefined;
        }
        if (received !== this.sentBytes) {
          this.fail(new SnapshotTransferError(grpc.status.DATA_LOSS, `peer ${this.to} acknowledged ${String(received)} bytes of ${this.sentBytes}`));
        } else {
          this.stopped = true;
          this.wake();
        }
      }
    }
    this.statusReceived();
  }
}

// ---------------------------------------------------------------------------------------------
// Receiver.
// ---------------------------------------------------------------------------------------------

/** What an {@link InboundSnapshot} needs from the transport. */
export interface InboundSnapshotOptions {
  /** This node's id: a header addressed to another node is refused. */
  readonly localId: NodeId;
  /** The current snapshot handler, looked up when the header arrives. */
  readonly handler: () => SnapshotHandler | undefined;
  /** Called once when the call is answered or gone. */
  readonly onFinish: (transfer: InboundSnapshot) => void;
  /** The transport's logger; the transfer logs under `from`. */
  readonly log: Logger;
}

/**
 * One inbound transfer: validates each chunk as it arrives, starts the handler on the header,
 * feeds it the payload with back-pressure (the call is paused while
 * {@link MAX_BUFFERED_SNAPSHOT_CHUNKS} wait), and answers once: `SnapshotAck` after the handler
 * resolved on a complete payload; `INVALID_ARGUMENT` (malformed, misaddressed or truncated),
 * `FAILED_PRECONDITION` (no handler), `UNKNOWN` (the handler rejected), `ABORTED` (the handler
 * resolved before the payload was complete) or `UNAVAILABLE` (transport closed) otherwise. On
 * every failure the handler's iterator throws a {@link SnapshotTransferError}.
 */
export class InboundSnapshot {
  /** The sender, from `raft-from` metadata (or the connection's address). */
  readonly from: string;
  /** The call's `raft-from`, when it has one: the header's `from` must equal it. */
  private readonly claimed: string | undefined;
  private readonly sequence = new SnapshotChunkSequence(MAX_SNAPSHOT_CHUNK_BYTES);
  private readonly log: Logger;
  private queue: SnapshotChunkQueue | undefined;
  private paused = false;
  private finished = false;

  constructor(
    private readonly call: grpc.ServerReadableStream<Buffer, WireSnapshotAck>,
    private readonly callback: grpc.sendUnaryData<WireSnapshotAck>,
    private readonly options: InboundSnapshotOptions,
  ) {
    const hint = call.metadata.get('raft-from')[0];
    this.claimed = typeof hint === 'string' ? hint : undefined;
    this.from = typeof hint === 'string' ? hint : call.getPeer();
    this.log = options.log.child({ from: this.from });
    call.on('data', (bytes: Buffer) => this.onData(bytes));
    call.on('end', () => this.onEnd());
    call.on('error', (err: Error) => {
      this.log.debug({ err: err.message }, 'inbound snapshot call error');
      this.abandon(new SnapshotTransferError(grpc.status.CANCELLED, `snapshot transfer from ${this.from} failed: ${err.message}`));
    });
    call.on('cancelled', () => this.abandon(new SnapshotTransferError(grpc.status.CANCELLED, `snapshot transfer from ${this.from} cancelled by the sender`)));
  }

  /** Ends the transfer with `UNAVAILABLE` (the transport is closing); the handler's iterator throws. */
  cancel(reason: string): void {
    this.refuse(grpc.status.UNAVAILABLE, reason);
  }

  private onData(bytes: Buffer): void {
    if (this.finished) return;
    let chunk;
    try {
      chunk = decodeSnapshotChunk(bytes);
      this.sequence.accept(chunk);
    } catch (err) {
      if (!(err instanceof WireDecodeError)) throw err;
      this.log.warn({ field: err.field, reason: err.reason }, 'refusing malformed snapshot transfer');
      this.refuse(grpc.status.INVALID_ARGUMENT, err.message);
      return;
    }
    if (chunk.header !== undefined && !this.start(chunk.header)) return;
    const queue = this.queue;
    if (queue === undefined) return;
    if (chunk.data.byteLength > 0 && !queue.push(chunk.data) && !this.paused) {
      this.paused = true;
      this.call.pause();
    }
    if (chunk.done) queue.end();
  }

  /** Validates the header and starts the handler; false when the transfer was refused. */
  private start(header: InstallSnapshot): boolean {
    if (header.to !== this.options.localId) {
      this.log.warn({ to: header.to }, 'refusing snapshot addressed to another node');
      this.refuse(grpc.status.INVALID_ARGUMENT, `snapshot addressed to ${header.to}, this node is ${this.options.localId}`);
      return false;
    }
    if (this.claimed !== undefined && header.from !== this.claimed) {
      this.log.warn({ headerFrom: header.from }, 'refusing snapshot whose sender is not the call\'s raft-from');
      this.refuse(grpc.status.PERMISSION_DENIED, `snapshot from ${header.from} sent on a call from ${this.claimed}`);
      return false;
    }
    const handler = this.options.handler();
    if (handler === undefined) {
      this.refuse(grpc.status.FAILED_PRECONDITION, 'no snapshot handler is registered');
      return false;
    }
    const queue = new SnapshotChunkQueue(MAX_BUFFERED_SNAPSHOT_CHUNKS, () => this.maybeResume());
    this.queue = queue;
    this.log.debug({ term: header.term, index: header.snapshot.metadata.index }, 'snapshot transfer started');
    let outcome: Promise<void>;
    try {
      outcome = Promise.resolve(handler(header, queue));
    } catch (err) {
      outcome = Promise.reject(err);
    }
    outcome.then(
      () => {
        if (this.finished) return;
        if (!this.sequence.done) {
          this.refuse(grpc.status.ABORTED, 'the snapshot handler finished before the whole payload arrived');
          return;
        }
        this.finish(null);
        this.log.debug({ bytes: this.sequence.receivedBytes }, 'snapshot transfer acknowledged');
      },
      (err: unknown) => {
        if (this.finished) return;
        this.log.warn({ err: errorMessage(err) }, 'snapshot handler rejected the transfer');
        this.refuse(grpc.status.UNKNOWN, `snapshot handler failed: ${errorMessage(err)}`);
      },
    );
    return true;
  }

  private maybeResume(): void {
    if (!this.paused || this.finished) return;
    this.paused = false;
    this.call.resume();
  }

  private onEnd(): void {
    if (this.finished || this.sequence.done) return;
    this.log.warn({ bytes: this.sequence.receivedBytes }, 'snapshot transfer ended before its done chunk');
    this.refuse(grpc.status.INVALID_ARGUMENT, `snapshot stream ended after ${this.sequence.receivedBytes} bytes without its done chunk`);
  }

  /** Answers `code` and fails the handler's iterator. */
  private refuse(code: grpc.status, details: string): void {
    if (this.finished) return;
    this.queue?.fail(new SnapshotTransferError(code, details));
    this.finish({ code, details });
  }

  /** The call is gone (cancelled by the sender or broken): fail the iterator, answer nothing. */
  private abandon(err: SnapshotTransferError): void {
    if (this.finished) return;
    this.queue?.fail(err);
    this.finish(undefined);
  }

  /** `null` answers the ack, a status answers that error, `undefined` answers nothing. */
  private finish(status: Partial<grpc.StatusObject> | null | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.options.onFinish(this);
    if (status === undefined) return;
    if (status === null) this.callback(null, { received_bytes: this.sequence.receivedBytes });
    else this.callback(status);
  }
}
