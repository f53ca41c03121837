/**
 * Side-by-side benchmark against etcd 3.4, in one sitting, on loopback (never part of `npm test`):
 * a 3-member etcd cluster and then a 3-node cluster of this project, both with 100 ms heartbeats
 * and a 1 s election timeout, run the same cells with the same client, and one markdown table
 * compares them.
 *
 * The client is cheap on purpose (the machine is shared by the client and the servers): closed
 * loops in worker threads over `node:http2` with hand-made gRPC framing and protobufjs messages,
 * the same code for both systems; only the method paths and message types differ. Writes go to
 * the leader; read client i talks to member i % 3, with the members ordered leader first, so a
 * single reader talks to the leader on both systems. Alongside the table it prints the CPU use of
 * the client process and of every server process during each measured window, so a reader can
 * see whether the client was the bottleneck.
 *
 *   npm run bench:compare -- [--cells w1,w64,lr64] [--system-warmup 20] [--warmup 2] [--seconds 8] [--workers 2]
 *                            [--skip-etcd] [--skip-ours]
 *
 * Needs `etcd` on the PATH (`apt-get install -y etcd-server`) unless `--skip-etcd`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect as netConnect } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, type MessagePort, parentPort, Worker, workerData } from 'node:worker_threads';
import { Command, InvalidArgumentError } from 'commander';
import * as hdr from 'hdr-histogram-js';
import protobuf from 'protobufjs';
import { freePorts, ProcessCluster, waitFor } from '../cluster/process-cluster.js';
import { REGISTRY_PROTO_PATH } from '../src/api/registry-proto.js';
import { CLOCK_TICKS_PER_S, cpuTicks } from './support.js';

// ---------------------------------------------------------------------------------------------
// Limits and defaults.

/** Default warm-up per cell, not measured, in seconds. */
const WARMUP_S = 2;
/** Default measured time per cell, in seconds. */
const MEASURE_S = 8;
/**
 * Default warm-up of each system before its first cell, not measured, in seconds: half writes
 * and half linearizable reads, at 64 clients. A server that has run for a while has compiled its
 * hot paths; Node's JIT needs some thousands of calls of a function for that, which the 2 s
 * warm-up of a 1-client cell does not give (our 1-client writes cost about twice the CPU per
 * write on a fresh cluster). etcd gets the same warm-up. `--system-warmup 0` measures cold.
 */
const SYSTEM_WARMUP_S = 20;
/** Closed-loop clients of the system warm-up. */
const SYSTEM_WARMUP_CLIENTS = 64;
/** Bytes of every written value (etcd value, our agent's description). */
const VALUE_BYTES = 512;
/** Keys (etcd) or agents (ours) written once before the first read cell and read round-robin. */
const READ_KEYS = 1000;
/** Requests in flight while writing the keys for the read cells. */
const PRELOAD_CONCURRENCY = 32;
/** Default number of worker threads that run the clients. */
const WORKER_THREADS = 2;
/** Closed-loop clients sharing one HTTP/2 session (per worker and member). */
const CLIENTS_PER_SESSION = 32;
/** Members in each cluster. */
const CLUSTER_SIZE = 3;
/** etcd heartbeat interval, in ms: our nodes' default tick (one heartbeat per tick). */
const ETCD_HEARTBEAT_MS = 100;
/** etcd election timeout, in ms: our nodes' default of 10 ticks. */
const ETCD_ELECTION_TIMEOUT_MS = 1000;
/** How long etcd gets to elect a leader after it starts, in ms. */
const ETCD_START_TIMEOUT_MS = 30_000;
/** How long an etcd member gets to exit after SIGTERM before SIGKILL, in ms. */
const STOP_GRACE_MS = 5_000;
/** Interval between leader polls, in ms. */
const POLL_INTERVAL_MS = 100;
/** Deadline of one request, in seconds (sent as `grpc-timeout`). */
const REQUEST_TIMEOUT_S = 10;
/** Milliseconds per second. */
const MS_PER_S = 1000;
/** How long a worker waits after the stop time for requests in flight, in ms (a request's deadline and 1 s). */
const DRAIN_TIMEOUT_MS = (REQUEST_TIMEOUT_S + 1) * MS_PER_S;
/** Pause of a client after a failed request before its next one, in ms (no hot error loop). */
const ERROR_PAUSE_MS = 10;
/** Largest latency the histograms hold, in µs (60 s). */
const HISTOGRAM_MAX_US = 60_000_000;
/** Significant decimal digits of the histograms. */
const HISTOGRAM_DIGITS = 3;
/** Log lines kept per etcd member, for failure messages. */
const LOG_LINES_KEPT = 200;
/** Microseconds per second. */
const US_PER_S = 1_000_000;
/** Microseconds per millisecond. */
const US_PER_MS = 1000;
/** Nanoseconds per microsecond. */
const NS_PER_US = 1000n;
/** Bytes of the gRPC message prefix: 1 compressed flag, 4 length bytes (big-endian). */
const GRPC_PREFIX_BYTES = 5;
/** Offset of the length in the gRPC message prefix. */
const GRPC_LENGTH_OFFSET = 1;
/** The compressed flag of an uncompressed gRPC message. */
const GRPC_UNCOMPRESSED = 0;
/** The `grpc-status` of a success. */
const GRPC_STATUS_OK = '0';
/** Exit code when etcd is not installed. */
const EXIT_NO_ETCD = 2;
/** Exit code after SIGINT or SIGTERM (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

// ---------------------------------------------------------------------------------------------
// Cells.

/** The two systems compared. */
type SystemKind = 'etcd' | 'ours';

/** One measured cell: a kind of request and a number of closed-loop clients. */
interface Cell {
  /** Short name used by `--cells`. */
  readonly name: string;
  /** Row label in the table. */
  readonly label: string;
  /** Writes (to the leader) or reads (client i to member i % 3). */
  readonly kind: 'write' | 'read';
  /** For reads: served locally (serializable) rather than linearizable. */
  readonly serializable: boolean;
  /** Closed-loop clients, each with one request in flight. */
  readonly clients: number;
}

/** Every cell, in the order they run. */
const CELLS: readonly Cell[] = [
  { name: 'w1', label: 'writes/s, 1 client', kind: 'write', serializable: false, clients: 1 },
  { name: 'w64', label: 'writes/s, 64 clients', kind: 'write', serializable: false, clients: 64 },
  { name: 'w256', label: 'writes/s, 256 clients', kind: 'write', serializable: false, clients: 256 },
  { name: 'lr1', label: 'linearizable gets/s, 1 client', kind: 'read', serializable: false, clients: 1 },
  { name: 'lr64', label: 'linearizable gets/s, 64 clients', kind: 'read', serializable: false, clients: 64 },
  { name: 'sr1', label: 'serializable gets/s, 1 client', kind: 'read', serializable: true, clients: 1 },
  { name: 'sr64', label: 'serializable gets/s, 64 clients', kind: 'read', serializable: true, clients: 64 },
  { name: 'sr256', label: 'serializable gets/s, 256 clients', kind: 'read', serializable: true, clients: 256 },
];

// ---------------------------------------------------------------------------------------------
// Messages: etcd's, defined by reflection (only the fields used; others are skipped on decode),
// and ours, loaded from the .proto with the field names as written there.

/** etcd's v3 API messages used here (field numbers as in etcd's rpc.proto and kv.proto). */
const etcdRoot = new protobuf.Root();
etcdRoot
  .define('etcdserverpb')
  .add(new protobuf.Type('ResponseHeader').add(new protobuf.Field('member_id', 2, 'uint64')))
  .add(new protobuf.Type('KeyValue').add(new protobuf.Field('key', 1, 'bytes')).add(new protobuf.Field('value', 5, 'bytes')))
  .add(new protobuf.Type('PutRequest').add(new protobuf.Field('key', 1, 'bytes')).add(new protobuf.Field('value', 2, 'bytes')))
  .add(new protobuf.Type('PutResponse').add(new protobuf.Field('header', 1, 'ResponseHeader')))
  .add(new protobuf.Type('RangeRequest').add(new protobuf.Field('key', 1, 'bytes')).add(new protobuf.Field('serializable', 7, 'bool')))
  .add(
    new protobuf.Type('RangeResponse')
      .add(new protobuf.Field('header', 1, 'ResponseHeader'))
      .add(new protobuf.Field('kvs', 2, 'KeyValue', 'repeated')),
  )
  .add(new protobuf.Type('StatusRequest'))
  .add(new protobuf.Type('StatusResponse').add(new protobuf.Field('header', 1, 'ResponseHeader')).add(new protobuf.Field('leader', 4, 'uint64')));
etcdRoot.resolveAll();
const PutRequest = etcdRoot.lookupType('etcdserverpb.PutRequest');
const PutResponse = etcdRoot.lookupType('etcdserverpb.PutResponse');
const RangeRequest = etcdRoot.lookupType('etcdserverpb.RangeRequest');
const RangeResponse = etcdRoot.lookupType('etcdserverpb.RangeResponse');
const StatusRequest = etcdRoot.lookupType('etcdserverpb.StatusRequest');
const StatusResponse = etcdRoot.lookupType('etcdserverpb.StatusResponse');

/** Our API, as in proto/registry/v1/registry.proto. */
const registryRoot = new protobuf.Root().loadSync(REGISTRY_PROTO_PATH, { keepCase: true });
const RegisterRequest = registryRoot.lookupType('registry.v1.RegisterRequest');
const RegisterResponse = registryRoot.lookupType('registry.v1.RegisterResponse');
const GetRequest = registryRoot.lookupType('registry.v1.GetRequest');
const GetResponse = registryRoot.lookupType('registry.v1.GetResponse');

/** The number of `registry.v1.Consistency` value `name`; throws if the .proto lacks it. */
function consistency(name: string): number {
  const value = registryRoot.lookupEnum('registry.v1.Consistency').values[name];
  if (value === undefined) throw new Error(`registry.v1.Consistency has no ${name}`);
  return value;
}
const LINEARIZABLE = consistency('CONSISTENCY_LINEARIZABLE');
const SERIALIZABLE = consistency('CONSISTENCY_SERIALIZABLE');

/** The etcd value written. */
const ETCD_VALUE = Buffer.alloc(VALUE_BYTES, 'v');
/** Our agents' description. */
const DESCRIPTION = 'd'.repeat(VALUE_BYTES);

/** How one system's requests are named, encoded and checked. */
interface Protocol {
  /** gRPC method path of a write. */
  readonly writePath: string;
  /** gRPC method path of a read. */
  readonly readPath: string;
  /** The key (etcd) or agent id (ours) of client `client`'s `n`-th write. */
  writeKey(client: number, n: number): string;
  /** The key or id of the `i`-th entry written for the read cells. */
  readKey(i: number): string;
  /** The request message that writes `key`. */
  encodeWrite(key: string): Uint8Array;
  /** The request message that reads `key`. */
  encodeRead(key: string, serializable: boolean): Uint8Array;
  /** Decodes a write reply; returns an error text when it is not what a success looks like. */
  checkWrite(reply: Uint8Array): string | undefined;
  /** Decodes a read reply; returns an error text when it holds no entry. */
  checkRead(reply: Uint8Array): string | undefined;
}

/** The requests of both systems. */
const PROTOCOLS: Record<SystemKind, Protocol> = {
  etcd: {
    writePath: '/etcdserverpb.KV/Put',
    readPath: '/etcdserverpb.KV/Range',
    writeKey: (client, n) => `bench/${client}/${n}`,
    readKey: (i) => `read/${i}`,
    encodeWrite: (key) => PutRequest.encode({ key: Buffer.from(key), value: ETCD_VALUE }).finish(),
    encodeRead: (key, serializable) => RangeRequest.encode({ key: Buffer.from(key), serializable }).finish(),
    checkWrite: (reply) => ((PutResponse.decode(reply) as unknown as { header: unknown }).header ? undefined : 'PutResponse without a header'),
    checkRead: (reply) => ((RangeResponse.decode(reply) as unknown as { kvs: unknown[] }).kvs.length === 1 ? undefined : 'Range found no key'),
  },
  ours: {
    writePath: '/registry.v1.Registry/Register',
    readPath: '/registry.v1.Registry/Get',
    writeKey: (client, n) => `bench-${client}-${n}`,
    readKey: (i) => `read-${i}`,
    encodeWrite: (id) => RegisterRequest.encode({ agent: { id, name: id, kind: 'service', version: '1.0.0', description: DESCRIPTION } }).finish(),
    encodeRead: (id, serializable) =>
      GetRequest.encode({ id, consistency: serializable ? SERIALIZABLE : LINEARIZABLE }).finish(),
    checkWrite: (reply) => ((RegisterResponse.decode(reply) as unknown as { agent: unknown }).agent ? undefined : 'RegisterResponse without an agent'),
    checkRead: (reply) => ((GetResponse.decode(reply) as unknown as { agent: unknown }).agent ? undefined : 'GetResponse without an agent'),
  },
};

// ---------------------------------------------------------------------------------------------
// gRPC over node:http2, shared by the workers and the main thread.

/** Monotonic time in µs (the same clock in every thread of the process). */
function nowUs(): number {
  return Number(process.hrtime.bigint() / NS_PER_US);
}

/** `message` with the gRPC prefix: compressed flag 0 and its length, big-endian. */
function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + message.length);
  out[0] = GRPC_UNCOMPRESSED;
  out.writeUInt32BE(message.length, GRPC_LENGTH_OFFSET);
  out.set(message, GRPC_PREFIX_BYTES);
  return out;
}

/** Called once per request: an error text, or the reply message (without its prefix). */
type Done = (error: string | undefined, reply: Buffer | undefined) => void;

/**
 * Sends one unary gRPC call on `session`: POST `path` with the framed request `body`; calls
 * `done` once, with an error text for a transport failure, a non-200 answer, a missing or
 * non-zero `grpc-status` or a malformed reply, otherwise with the reply message.
 */
function unary(session: http2.ClientHttp2Session, path: string, body: Buffer, done: Done): void {
  let stream: http2.ClientHttp2Stream;
  try {
    stream = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${REQUEST_TIMEOUT_S}S`,
    });
  } catch (err) {
    setImmediate(done, err instanceof Error ? err.message : String(err), undefined);
    return;
  }
  let status: string | undefined;
  let statusMessage = '';
  let failure: string | undefined;
  const chunks: Buffer[] = [];
  const takeStatus = (h: http2.IncomingHttpHeaders) => {
    if (h['grpc-status'] === undefined) return;
    status = String(h['grpc-status']);
    statusMessage = String(h['grpc-message'] ?? '');
  };
  stream.on('response', (h) => {
    if (h[':status'] !== http2.constants.HTTP_STATUS_OK) failure ??= `HTTP status ${String(h[':status'])}`;
    takeStatus(h);
  });
  stream.on('trailers', takeStatus);
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.on('error', (err: Error) => (failure ??= err.message));
  stream.on('close', () => {
    if (failure !== undefined) return done(failure, undefined);
    if (status === undefined) return done('no grpc-status', undefined);
    if (status !== GRPC_STATUS_OK) return done(`grpc-status ${status}${statusMessage ? `: ${percentDecoded(statusMessage)}` : ''}`, undefined);
    const reply = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    if (reply.length < GRPC_PREFIX_BYTES || reply[0] !== GRPC_UNCOMPRESSED) return done('malformed reply', undefined);
    const length = reply.readUInt32BE(GRPC_LENGTH_OFFSET);
    if (reply.length !== GRPC_PREFIX_BYTES + length) return done('malformed reply length', undefined);
    done(undefined, reply.subarray(GRPC_PREFIX_BYTES));
  });
  stream.end(body);
}

/** A `grpc-message` trailer as text (it is percent-encoded); as sent when it does not decode. */
function percentDecoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** {@link unary} as a promise that rejects with the error text. */
function call(session: http2.ClientHttp2Session, path: string, message: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    unary(session, path, frame(message), (error, reply) => (error === undefined && reply ? resolve(reply) : reject(new Error(error)))),
  );
}

/**
 * An HTTP/2 session to one `host:port` (plaintext, Nagle off), opened again on the next use
 * once it has closed, e.g. after its server went away.
 */
class SessionSlot {
  private session: http2.ClientHttp2Session;

  constructor(private readonly address: string) {
    this.session = this.open();
  }

  /** The live session, reconnecting if the previous one closed. */
  get(): http2.ClientHttp2Session {
    if (this.session.closed || this.session.destroyed) this.session = this.open();
    return this.session;
  }

  /** Resolves once the current session is connected; rejects if it fails first. */
  async connected(): Promise<void> {
    const s = this.get();
    if (!s.connecting) return;
    await once(s, 'connect');
  }

  /** Closes the session at once, failing any request still in flight. */
  destroy(): void {
    this.session.destroy();
  }

  private open(): http2.ClientHttp2Session {
    const [host, port] = splitAddress(this.address);
    const session = http2.connect(`http://${this.address}`, { createConnection: () => netConnect({ host, port, noDelay: true }) });
    // A broken session fails its streams, which count the errors; the session's own error
    // event only needs a listener so it does not throw.
    session.on('error', () => undefined);
    return session;
  }
}

/** Splits `host:port`. */
function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), Number(address.slice(i + 1))];
}

// ---------------------------------------------------------------------------------------------
// Worker threads: the closed-loop clients.

/** One client of a worker: its global number and the member it talks to. */
interface ClientSpec {
  readonly id: number;
  readonly address: string;
}

/** What a worker runs, passed as its workerData. */
interface WorkerJob {
  readonly system: SystemKind;
  readonly kind: Cell['kind'];
  readonly serializable: boolean;
  readonly clients: readonly ClientSpec[];
}

/** The main thread's go signal: when measuring starts and when clients stop, in µs of {@link nowUs}. */
interface WorkerGo {
  readonly measureFromUs: number;
  readonly stopAtUs: number;
}

/** What a worker reports for the measured window (requests counted by completion time). */
interface WorkerResult {
  readonly type: 'result';
  /** Successful requests. */
  readonly count: number;
  /** Failed requests. */
  readonly errors: number;
  /** The first error text seen in the window, if any. */
  readonly firstError: string | undefined;
  /** Latencies of the successful requests in µs, hdr-histogram-js compressed base64. */
  readonly histogram: string;
}

/** Messages from a worker to the main thread. */
type FromWorker = { readonly type: 'ready' } | WorkerResult;

/** Histogram settings for latencies in µs. */
const HISTOGRAM_OPTIONS: hdr.BuildRequest = { lowestDiscernibleValue: 1, highestTrackableValue: HISTOGRAM_MAX_US, numberOfSignificantValueDigits: HISTOGRAM_DIGITS };

/**
 * Worker entry point: opens one session per {@link CLIENTS_PER_SESSION} clients per member,
 * reports `ready`, waits for {@link WorkerGo}, runs every client as a closed loop until the stop
 * time, then reports a {@link WorkerResult} and closes its sessions.
 */
async function runWorker(job: WorkerJob, port: MessagePort): Promise<void> {
  const protocol = PROTOCOLS[job.system];
  const readFrames = job.kind === 'read' ? Array.from({ length: READ_KEYS }, (_, i) => frame(protocol.encodeRead(protocol.readKey(i), job.serializable))) : [];
  const path = job.kind === 'read' ? protocol.readPath : protocol.writePath;
  const check = job.kind === 'read' ? protocol.checkRead : protocol.checkWrite;
  const request = job.kind === 'read' ? (client: number, n: number) => readFrames[(client + n) % READ_KEYS] as Buffer : (client: number, n: number) => frame(protocol.encodeWrite(protocol.writeKey(client, n)));

  const slots: SessionSlot[] = [];
  const filling = new Map<string, { slot: SessionSlot; users: number }>();
  const clients = job.clients.map((c) => {
    let current = filling.get(c.address);
    if (!current || current.users === CLIENTS_PER_SESSION) {
      current = { slot: new SessionSlot(c.address), users: 0 };
      filling.set(c.address, current);
      slots.push(current.slot);
    }
    current.users++;
    return { id: c.id, slot: current.slot };
  });
  await Promise.all(slots.map((s) => s.connected()));
  port.postMessage({ type: 'ready' } satisfies FromWorker);
  const [go] = (await once(port, 'message')) as [WorkerGo];

  const histogram = hdr.build(HISTOGRAM_OPTIONS);
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  let running = clients.length;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(drainTimer);
    port.postMessage({ type: 'result', count, errors, firstError, histogram: hdr.encodeIntoCompressedBase64(histogram) } satisfies FromWorker);
    for (const s of slots) s.destroy();
  };
  const drainTimer = setTimeout(finish, (go.stopAtUs - nowUs()) / US_PER_MS + DRAIN_TIMEOUT_MS);

  for (const client of clients) {
    let n = 0;
    const next = (): void => {
      if (finished || nowUs() >= go.stopAtUs) {
        if (--running === 0) finish();
        return;
      }
      const startUs = nowUs();
      unary(client.slot.get(), path, request(client.id, n++), (error, reply) => {
        const endUs = nowUs();
        let problem = error;
        if (problem === undefined && reply) {
          try {
            problem = check(reply);
          } catch (err) {
            problem = `undecodable reply: ${String(err)}`;
          }
        }
        if (endUs >= go.measureFromUs && endUs < go.stopAtUs) {
          if (problem === undefined) {
            count++;
            histogram.recordValue(endUs - startUs);
          } else {
            errors++;
            firstError ??= problem;
          }
        }
        if (problem === undefined) next();
        else setTimeout(next, ERROR_PAUSE_MS);
      });
    };
    next();
  }
}

/** The next message from `worker`; rejects if the worker fails or exits first. */
function nextMessage(worker: Worker): Promise<FromWorker> {
  return new Promise((resolve, reject) => {
    const off = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const onMessage = (m: FromWorker) => {
      off();
      resolve(m);
    };
    const onError = (err: Error) => {
      off();
      reject(err);
    };
    const onExit = (code: number) => {
      off();
      reject(new Error(`a load worker exited with code ${code} before reporting`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

// ---------------------------------------------------------------------------------------------
// The systems under test.

/** One server process. */
interface Member {
  /** Member name (etcd) or node id (ours). */
  readonly name: string;
  /** Client address, `127.0.0.1:port`. */
  readonly address: string;
  /** Its PID, for CPU accounting. */
  readonly pid: number;
}

/** A running cluster, members ordered leader first. */
interface SystemUnderTest {
  readonly kind: SystemKind;
  readonly members: readonly Member[];
}

/** Stops registered for SIGINT and SIGTERM: whatever runs when the user interrupts. */
const STOPS = new Set<() => Promise<void>>();

/** Runs `body` with `stop` registered for SIGINT/SIGTERM, and always runs `stop` afterwards. */
async function guarded<R>(stop: () => Promise<void>, body: () => Promise<R>): Promise<R> {
  STOPS.add(stop);
  try {
    return await body();
  } finally {
    STOPS.delete(stop);
    await stop();
  }
}

/** Sends SIGTERM to `p`, then SIGKILL after `graceMs`; resolves once it has exited. */
async function stopProcess(p: ChildProcess, graceMs: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = once(p, 'exit');
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** One etcd member process and its log tail. */
interface EtcdMember {
  readonly name: string;
  readonly address: string;
  readonly proc: ChildProcess;
  readonly log: string[];
  readonly slot: SessionSlot;
}

/** A 3-member etcd cluster on loopback, data under a fresh temp dir. */
class EtcdCluster {
  private constructor(
    private readonly dir: string,
    private readonly members: readonly EtcdMember[],
  ) {}

  /** Starts the members on free loopback ports; returns as soon as they are spawned. */
  static async start(): Promise<EtcdCluster> {
    const ports = await freePorts(2 * CLUSTER_SIZE);
    const dir = mkdtempSync(join(tmpdir(), 'compare-etcd-'));
    const names = Array.from({ length: CLUSTER_SIZE }, (_, i) => `e${i + 1}`);
    const peerUrl = (i: number) => `http://127.0.0.1:${ports[CLUSTER_SIZE + i]}`;
    const initialCluster = names.map((name, i) => `${name}=${peerUrl(i)}`).join(',');
    const members = names.map((name, i): EtcdMember => {
      const address = `127.0.0.1:${ports[i]}`;
      const proc = spawn(
        'etcd',
        [
          '--name', name,
          '--data-dir', join(dir, name),
          '--listen-client-urls', `http://${address}`,
          '--advertise-client-urls', `http://${address}`,
          '--listen-peer-urls', peerUrl(i),
          '--initial-advertise-peer-urls', peerUrl(i),
          '--initial-cluster', initialCluster,
          '--initial-cluster-state', 'new',
          '--initial-cluster-token', `compare-${process.pid}`,
          '--heartbeat-interval', String(ETCD_HEARTBEAT_MS),
          '--election-timeout', String(ETCD_ELECTION_TIMEOUT_MS),
          '--logger', 'zap',
          '--log-level', 'error',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const log: string[] = [];
      const keep = (d: Buffer | string) => {
        log.push(d.toString());
        if (log.length > LOG_LINES_KEPT) log.splice(0, log.length - LOG_LINES_KEPT);
      };
      proc.stdout?.on('data', keep);
      proc.stderr?.on('data', keep);
      proc.on('error', (err) => keep(`spawn failed: ${err.message}\n`));
      return { name, address, proc, log, slot: new SessionSlot(address) };
    });
    return new EtcdCluster(dir, members);
  }

  /**
   * Waits until every member reports the same leader (Maintenance.Status) and returns the
   * members, leader first. Throws when a member exits or no leader emerges in time.
   */
  async waitForLeader(): Promise<SystemUnderTest> {
    const outcome = await waitFor(
      'an etcd leader',
      ETCD_START_TIMEOUT_MS,
      async () => {
        const dead = this.members.find((m) => m.proc.exitCode !== null || m.proc.signalCode !== null);
        if (dead) return { dead };
        const statuses = await Promise.all(
          this.members.map(async (m) => {
            const reply = await call(m.slot.get(), '/etcdserverpb.Maintenance/Status', StatusRequest.encode({}).finish());
            return StatusResponse.toObject(StatusResponse.decode(reply), { longs: String }) as { header?: { member_id?: string }; leader?: string };
          }),
        );
        const leader = statuses[0]?.leader;
        if (!leader || leader === '0' || !statuses.every((s) => s.leader === leader)) return undefined;
        const index = statuses.findIndex((s) => s.header?.member_id === leader);
        return index < 0 ? undefined : { index };
      },
      POLL_INTERVAL_MS,
    );
    if (outcome.dead) throw new Error(`etcd member ${outcome.dead.name} exited:\n${outcome.dead.log.join('')}`);
    const ordered = [...this.members.slice(outcome.index), ...this.members.slice(0, outcome.index)];
    return {
      kind: 'etcd',
      members: ordered.map((m) => {
        if (m.proc.pid === undefined) throw new Error(`etcd member ${m.name} has no PID`);
        return { name: m.name, address: m.address, pid: m.proc.pid };
      }),
    };
  }

  /** Stops every member (SIGTERM, SIGKILL after a grace period) and removes the data. */
  async stop(): Promise<void> {
    for (const m of this.members) m.slot.destroy();
    await Promise.all(this.members.map((m) => stopProcess(m.proc, STOP_GRACE_MS)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Our cluster's members, leader first. */
async function ourSystem(cluster: ProcessCluster): Promise<SystemUnderTest> {
  const leader = await cluster.waitForLeader();
  const ids = [leader, ...cluster.ids.filter((id) => id !== leader)];
  return {
    kind: 'ours',
    members: ids.map((id) => {
      const address = cluster.addresses.get(id);
      const pid = cluster.procs.get(id)?.pid;
      if (address === undefined || pid === undefined) throw new Error(`node ${id} is not running`);
      return { name: id, address, pid };
    }),
  };
}

/**
 * Writes the {@link READ_KEYS} entries the read cells read, through the leader, then reads the
 * last one linearizably from every member so each has applied them all before serializable
 * reads start.
 */
async function preload(sut: SystemUnderTest): Promise<void> {
  const protocol = PROTOCOLS[sut.kind];
  const slots = sut.members.map((m) => new SessionSlot(m.address));
  try {
    const leader = slots[0] as SessionSlot;
    let next = 0;
    await Promise.all(
      Array.from({ length: PRELOAD_CONCURRENCY }, async () => {
        while (next < READ_KEYS) await call(leader.get(), protocol.writePath, protocol.encodeWrite(protocol.readKey(next++)));
      }),
    );
    const last = protocol.encodeRead(protocol.readKey(READ_KEYS - 1), false);
    await Promise.all(
      slots.map(async (s) => {
        const problem = protocol.checkRead(await call(s.get(), protocol.readPath, last));
        if (problem !== undefined) throw new Error(`preload check failed: ${problem}`);
      }),
    );
  } finally {
    for (const s of slots) s.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Running a cell.

/** CPU counters at one instant. */
interface CpuSample {
  /** {@link nowUs} when taken. */
  readonly atUs: number;
  /** This process's CPU time (all threads), in µs. */
  readonly clientUs: number;
  /** Each member's utime + stime, in clock ticks. */
  readonly serverTicks: readonly number[];
}

/** Takes a {@link CpuSample} of this process and of `members`. */
function sampleCpu(members: readonly Member[]): CpuSample {
  const cpu = process.cpuUsage();
  return { atUs: nowUs(), clientUs: cpu.user + cpu.system, serverTicks: members.map((m) => cpuTicks(m.pid)) };
}

/** The outcome of one cell on one system. */
interface CellResult {
  /** Successful requests per second of the measured window. */
  readonly opsPerS: number;
  /** Latencies of the successful requests, in µs. */
  readonly latencyUs: hdr.Histogram;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** The client process's CPU use, in cores (1 = one core busy). */
  readonly clientCores: number;
  /** Each member's CPU use in cores, in the order of {@link SystemUnderTest.members}. */
  readonly serverCores: readonly number[];
}

/** Options of a run. */
interface RunOptions {
  /** Unmeasured load before the first cell, in seconds ({@link SYSTEM_WARMUP_S}). */
  readonly systemWarmupS: number;
  readonly warmupS: number;
  readonly seconds: number;
  readonly workers: number;
}

/** The module's own file, run again as each load worker. */
const WORKER_URL = new URL(import.meta.url);

/**
 * Runs `cell` on `sut`: starts the workers, waits for their sessions, gives the go, samples CPU
 * at the start and end of the measured window and merges the workers' results.
 */
async function runCell(sut: SystemUnderTest, cell: Cell, opts: RunOptions): Promise<CellResult> {
  const leader = sut.members[0] as Member;
  const perWorker: ClientSpec[][] = Array.from({ length: Math.min(opts.workers, cell.clients) }, () => []);
  for (let id = 0; id < cell.clients; id++) {
    const member = cell.kind === 'write' ? leader : (sut.members[id % sut.members.length] as Member);
    perWorker[id % perWorker.length]?.push({ id, address: member.address });
  }
  const workers = perWorker.map(
    (clients) => new Worker(WORKER_URL, { workerData: { system: sut.kind, kind: cell.kind, serializable: cell.serializable, clients } satisfies WorkerJob }),
  );
  try {
    await Promise.all(workers.map(nextMessage));
    const results = workers.map(nextMessage);
    const measureFromUs = nowUs() + opts.warmupS * US_PER_S;
    const go: WorkerGo = { measureFromUs, stopAtUs: measureFromUs + opts.seconds * US_PER_S };
    for (const w of workers) w.postMessage(go);
    const at = (us: number) =>
      new Promise<CpuSample>((resolve, reject) =>
        setTimeout(() => {
          try {
            resolve(sampleCpu(sut.members));
          } catch (err) {
            reject(err);
          }
        }, Math.max(0, (us - nowUs()) / US_PER_MS)),
      );
    // One await for all, so that whichever fails first, the others' failures are handled too.
    const [before, after, reports] = await Promise.all([at(go.measureFromUs), at(go.stopAtUs), Promise.all(results)]);
    const latencyUs = hdr.build(HISTOGRAM_OPTIONS);
    let count = 0;
    let errors = 0;
    let firstError: string | undefined;
    for (const r of reports) {
      if (r.type !== 'result') throw new Error(`unexpected message from a load worker: ${r.type}`);
      latencyUs.add(hdr.decodeFromCompressedBase64(r.histogram));
      count += r.count;
      errors += r.errors;
      firstError ??= r.firstError;
    }
    const windowS = (after.atUs - before.atUs) / US_PER_S;
    return {
      opsPerS: count / opts.seconds,
      latencyUs,
      errors,
      firstError,
      clientCores: (after.clientUs - before.clientUs) / US_PER_S / windowS,
      serverCores: after.serverTicks.map((t, i) => (t - (before.serverTicks[i] ?? 0)) / CLOCK_TICKS_PER_S / windowS),
    };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/**
 * Runs `cells` in order on `sut`, after the system warm-up (writes, then linearizable reads, at
 * {@link SYSTEM_WARMUP_CLIENTS} clients, nothing recorded), preloading the read keys before the
 * first read.
 */
async function runCells(sut: SystemUnderTest, cells: readonly Cell[], opts: RunOptions): Promise<Map<string, CellResult>> {
  const out = new Map<string, CellResult>();
  let preloaded = false;
  if (opts.systemWarmupS > 0) {
    const half: RunOptions = { ...opts, warmupS: 0, seconds: opts.systemWarmupS / 2 };
    const warmCell = { label: 'system warm-up', serializable: false, clients: SYSTEM_WARMUP_CLIENTS } as const;
    await runCell(sut, { ...warmCell, name: 'warm-writes', kind: 'write' }, half);
    await preload(sut);
    preloaded = true;
    await runCell(sut, { ...warmCell, name: 'warm-reads', kind: 'read' }, half);
    console.error(`${sut.kind}: warmed up for ${opts.systemWarmupS} s`);
  }
  for (const cell of cells) {
    if (cell.kind === 'read' && !preloaded) {
      await preload(sut);
      preloaded = true;
    }
    const r = await runCell(sut, cell, opts);
    console.error(`${sut.kind}: ${cell.name} ${r.opsPerS.toFixed(0)} ops/s, ${r.errors} errors`);
    out.set(cell.name, r);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Report.

/** `ops/s (p50 x ms, p99 y ms)`, or `-` for a side not run. */
function formatResult(r: CellResult | undefined): string {
  if (!r) return '-';
  const ms = (us: number) => (us / US_PER_MS).toFixed(2);
  return `${r.opsPerS.toFixed(0)} ops/s (p50 ${ms(r.latencyUs.getValueAtPercentile(50))} ms, p99 ${ms(r.latencyUs.getValueAtPercentile(99))} ms)`;
}

/** The servers' CPU time per successful request, in ms to 3 decimals (`-` when none succeeded). */
function serverCpuMsPerOp(r: CellResult): string {
  if (r.opsPerS <= 0) return '-';
  const cores = r.serverCores.reduce((a, b) => a + b, 0);
  return ((cores * MS_PER_S) / r.opsPerS).toFixed(3);
}

/** Prints the comparison table, the CPU table and any errors. */
function printReport(
  cells: readonly Cell[],
  results: Record<SystemKind, Map<string, CellResult> | undefined>,
  members: Record<SystemKind, readonly Member[] | undefined>,
  header: string[],
): void {
  const label: Record<SystemKind, string> = { etcd: 'etcd 3.4', ours: 'this project' };
  console.log(header.join('\n'));
  console.log('');
  console.log(`| cell | ${label.etcd} | ${label.ours} | ratio |`);
  console.log('| --- | --- | --- | --- |');
  for (const cell of cells) {
    const e = results.etcd?.get(cell.name);
    const o = results.ours?.get(cell.name);
    const ratio = e && o && e.opsPerS > 0 ? (o.opsPerS / e.opsPerS).toFixed(2) : '-';
    console.log(`| ${cell.label} | ${formatResult(e)} | ${formatResult(o)} | ${ratio} |`);
  }
  console.log('');
  console.log('CPU in the measured window, in cores (1.00 = one core busy); * marks the leader. "Server CPU per op" is the');
  console.log('servers\' CPU time (all members) per successful request, in ms: the work one request costs each system.');
  console.log('');
  console.log('| cell | system | errors | client process | server processes | server CPU per op, ms |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  const notes: string[] = [];
  for (const cell of cells) {
    for (const kind of ['etcd', 'ours'] as const) {
      const r = results[kind]?.get(cell.name);
      if (!r) continue;
      const servers = (members[kind] ?? []).map((m, i) => `${m.name}${i === 0 ? '*' : ''} ${(r.serverCores[i] ?? 0).toFixed(2)}`).join(', ');
      console.log(`| ${cell.label} | ${label[kind]} | ${r.errors} | ${r.clientCores.toFixed(2)} | ${servers} | ${serverCpuMsPerOp(r)} |`);
      if (r.firstError !== undefined) notes.push(`${label[kind]}, ${cell.label}: first error: ${r.firstError}`);
    }
  }
  if (notes.length > 0) console.log(`\n${notes.join('\n')}`);
}

// ---------------------------------------------------------------------------------------------
// Main.

/** A positive number of seconds, for commander. */
function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds >= 0');
  return n;
}

/** A positive integer, for commander. */
function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return n;
}

/** The cells named in a comma list, in the canonical order. */
function parseCells(v: string): Cell[] {
  const names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = names.filter((n) => !CELLS.some((c) => c.name === n));
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown cell ${unknown.join(', ')}; known: ${CELLS.map((c) => c.name).join(',')}`);
  return CELLS.filter((c) => names.includes(c.name));
}

/** The first line of `etcd --version`, or undefined when etcd is not on the PATH. */
function etcdVersion(): string | undefined {
  const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split('\n')[0]?.trim();
}

/** Parses the options, runs both sides and prints the report. */
async function main(): Promise<void> {
  const program = new Command()
    .description('Side-by-side benchmark of this project against etcd 3.4 (3 members each, on loopback).')
    .option('--cells <list>', 'comma list of cells to run, by the names below (default: all)', parseCells)
    .option('--system-warmup <s>', 'warm-up of each system before its first cell (half writes, half reads, 64 clients), not measured, in seconds; 0 measures cold', parseSeconds, SYSTEM_WARMUP_S)
    .option('--warmup <s>', 'warm-up per cell, not measured, in seconds', parseSeconds, WARMUP_S)
    .option('--seconds <s>', 'measured time per cell, in seconds', parseSeconds, MEASURE_S)
    .option('--workers <n>', 'worker threads running the clients', parsePositiveInt, WORKER_THREADS)
    .option('--skip-etcd', 'run only this project')
    .option('--skip-ours', 'run only etcd')
    .option('--node-args <args>', 'extra registry-node arguments for our nodes, space separated (e.g. "--snapshot-threshold 1000000")', (v: string) => v.split(' ').filter((a) => a !== ''), [] as string[])
    .addHelpText('after', `\nCells:\n${CELLS.map((c) => `  ${c.name.padEnd(6)} ${c.label}`).join('\n')}\n\nExample: --cells w1,lr64`);
  program.parse();
  const opts = program.opts<{ cells?: Cell[]; systemWarmup: number; warmup: number; seconds: number; workers: number; skipEtcd?: boolean; skipOurs?: boolean; nodeArgs: string[] }>();
  if (opts.seconds <= 0) program.error('--seconds must be > 0');
  const cells = opts.cells ?? CELLS;
  const run: RunOptions = { systemWarmupS: opts.systemWarmup, warmupS: opts.warmup, seconds: opts.seconds, workers: opts.workers };

  const version = etcdVersion();
  if (!opts.skipEtcd && version === undefined) {
    console.error('etcd is not installed: apt-get install -y etcd-server');
    process.exit(EXIT_NO_ETCD);
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`${signal}: stopping the servers`);
      void Promise.allSettled([...STOPS].map((stop) => stop())).then(() => process.exit(EXIT_INTERRUPTED));
    });
  }

  const header = [
    `# bench:compare, ${new Date().toISOString()}`,
    '',
    `\`etcd --version\`: ${version ?? 'not installed'}${opts.skipEtcd ? ' (skipped)' : ''}; this project: 3 nodes${opts.skipOurs ? ' (skipped)' : ''}; both with ${ETCD_HEARTBEAT_MS} ms heartbeats and a ${ETCD_ELECTION_TIMEOUT_MS} ms election timeout.`,
    `Node ${process.version}, ${availableParallelism()} cores shared by the client and the servers, load average ${(loadavg()[0] ?? 0).toFixed(2)} at start.`,
    `Each system first runs ${opts.systemWarmup} s of unmeasured load (half writes, half linearizable reads, ${SYSTEM_WARMUP_CLIENTS} clients); then per cell: ${opts.warmup} s warm-up, ${opts.seconds} s measured; closed-loop clients (one request in flight each) in up to ${opts.workers} worker threads, one HTTP/2 session per ${CLIENTS_PER_SESSION} clients per member; ${VALUE_BYTES}-byte values; writes to the leader, read client i to member i % ${CLUSTER_SIZE} (leader first).`,
  ];
  const results: Record<SystemKind, Map<string, CellResult> | undefined> = { etcd: undefined, ours: undefined };
  const members: Record<SystemKind, readonly Member[] | undefined> = { etcd: undefined, ours: undefined };

  if (!opts.skipEtcd) {
    const etcd = await EtcdCluster.start();
    await guarded(
      () => etcd.stop(),
      async () => {
        const sut = await etcd.waitForLeader();
        members.etcd = sut.members;
        results.etcd = await runCells(sut, cells, run);
      },
    );
  }
  if (!opts.skipOurs) {
    const cluster = await ProcessCluster.start(CLUSTER_SIZE, opts.nodeArgs);
    await guarded(
      () => cluster.destroy(),
      async () => {
        const sut = await ourSystem(cluster);
        members.ours = sut.members;
        results.ours = await runCells(sut, cells, run);
      },
    );
  }
  printReport(cells, results, members, header);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else if (parentPort) {
  // A failure rejects unhandled, which ends the worker with an 'error' event in the main thread.
  void runWorker(workerData as WorkerJob, parentPort);
}
