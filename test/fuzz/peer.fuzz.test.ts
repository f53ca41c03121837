/**
 * Fuzzes the peer port of a real 3-node cluster with fast-check: random bytes and protobuf-shaped
 * garbage as frames on `raft.v1.Raft/Stream` (the MessageBatch bytes, on a client stream opened
 * with `raft-from` metadata as src/transport/grpc-transport.ts does), well-formed but hostile
 * messages from unknown ids and from the real member ids (absurd indexes and commits, numbers past
 * 2^53, unknown entry types, entries with garbage data, every body type), random bytes and hostile
 * chunks on `raft.v1.Raft/InstallSnapshot`, and raw bytes on a plain TCP socket to the gRPC port
 * (garbage before and after an HTTP/2 preface).
 *
 * Properties, per batch: every node process is alive and answers /health?live, the cluster has
 * (or re-elects) a leader every node agrees on, and every peer call ends with OK or a
 * client-error status. At the end a write still commits.
 *
 * Excluded: forged terms. The node adopts a higher term from any sender (known; fixed on another
 * branch), so every generated message carries a term at most the cluster's current term (read
 * before each batch), never above it, and snapshot headers a term strictly below it.
 *
 * Seed: FUZZ_SEED (printed); run counts scale with FUZZ_RUNS (100 = default).
 */
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../../cluster/process-cluster.js';
import { RAFT_INSTALL_SNAPSHOT_METHOD_PATH, RAFT_STREAM_METHOD_PATH, loadRaftProto } from '../../src/transport/codec.js';
import { CLIENT_ERROR_CODES, FUZZ_SEED, expectAlive, fcParams, oddString, protobufGarbage, randomBytes, runs, statusName, suspiciousLogLines } from './support.js';

const STREAM_BATCHES = runs(80);
const SNAPSHOT_BATCHES = runs(25);
const TCP_BATCHES = runs(25);
const MEMBER_IDS = ['n1', 'n2', 'n3'];

const identity = (b: Buffer): Buffer => b;

/** Opens a client stream on `path`, writes `frames`, half-closes, and resolves with the status. */
function clientStream(client: grpc.Client, path: string, frames: Uint8Array[], from: string | undefined, deadlineMs = 5_000): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    const md = new grpc.Metadata();
    if (from !== undefined) md.set('raft-from', from);
    const call = client.makeClientStreamRequest<Buffer, Buffer>(path, identity, identity, md, { deadline: Date.now() + deadlineMs }, (err) => {
      resolve(err ? { code: err.code ?? grpc.status.UNKNOWN, details: err.details ?? err.message } : { code: grpc.status.OK, details: '' });
    });
    call.on('error', () => {
      /* reported through the callback */
    });
    for (const f of frames) call.write(Buffer.from(f));
    call.end();
  });
}

/** A uint64 field: small, at the log's scale, at 2^53 - 1, past 2^53, or "negative" (wraps to 2^64 - n on the wire). */
const u64 = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 50 }) },
  { weight: 1, arbitrary: fc.constantFrom(Number.MAX_SAFE_INTEGER, 2 ** 53, 2 ** 60, 0xffff_ffff, -1, -(2 ** 31)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }) },
);
const bytesField = fc.oneof(fc.uint8Array({ maxLength: 32 }), fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 1_000, maxLength: 20_000 }));
const entry = fc.record({ term: fc.integer({ min: 0, max: 3 }), index: u64, type: fc.constantFrom('ENTRY_TYPE_NORMAL', 'ENTRY_TYPE_CONFIG', 'ENTRY_TYPE_UNSPECIFIED', 7, 99), data: bytesField });
const confState = fc.record({ voters: fc.array(fc.oneof(fc.constantFrom(...MEMBER_IDS), oddString), { maxLength: 4 }), learners: fc.array(oddString, { maxLength: 2 }) });

/** A message body of every type, with absurd fields. */
const body = fc.oneof(
  fc.record({ append_entries: fc.record({ prev_log_index: u64, prev_log_term: fc.integer({ min: 0, max: 3 }), entries: fc.array(entry, { maxLength: 5 }), leader_commit: u64 }) }),
  fc.record({ append_entries_response: fc.record({ success: fc.boolean(), match_index: u64, conflict_index: u64, conflict_term: u64 }) }),
  fc.record({ request_vote: fc.record({ last_log_index: u64, last_log_term: u64, pre_vote: fc.boolean(), transfer: fc.boolean() }) }),
  fc.record({ request_vote_response: fc.record({ vote_granted: fc.boolean(), pre_vote: fc.boolean() }) }),
  fc.record({ heartbeat: fc.record({ leader_commit: u64, context: bytesField }) }),
  fc.record({ heartbeat_response: fc.record({ context: bytesField }) }),
  fc.record({ install_snapshot: fc.record({ snapshot: fc.record({ metadata: fc.record({ index: u64, term: u64, conf_state: confState }), data: bytesField }) }) }),
  fc.record({ timeout_now: fc.constant({}) }),
  fc.record({ read_index: fc.record({ context: bytesField }) }),
  fc.record({ read_index_response: fc.record({ context: bytesField, index: u64, success: fc.boolean() }) }),
);
const peerId = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...MEMBER_IDS) }, { weight: 2, arbitrary: fc.oneof(oddString, fc.constantFrom('n4', 'evil', '', 'n1 ')) });

/** A hostile message at a term in [0, maxTerm] (term forging left out). */
const message = (maxTerm: number) => fc.record({ from: peerId, to: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...MEMBER_IDS) }, { weight: 1, arbitrary: oddString }), term: fc.integer({ min: 0, max: maxTerm }), body });

type Frame = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'batch'; seed: number };

describe('fuzzing the peer port of a real 3-node cluster', () => {
  let cluster: ProcessCluster;
  let clients: grpc.Client[];
  const counts = { streamCalls: 0, frames: 0, messages: 0, snapshotCalls: 0, tcp: 0 };
  const codes = new Map<string, number>();
  const started = Date.now();
  const proto = loadRaftProto();

  /** The highest term any node reports (forged messages stay at or below it). */
  async function currentTerm(): Promise<number> {
    return Math.max(1, ...(await cluster.statuses()).map((s) => Number(s.term)));
  }
  async function afterBatch(what: string): Promise<void> {
    await expectAlive(cluster, what);
    await cluster.waitForLeader(cluster.ids, 20_000);
  }
  function note(code: number): void {
    const k = statusName(code);
    codes.set(k, (codes.get(k) ?? 0) + 1);
  }

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
    clients = cluster.endpoints().map((e) => new grpc.Client(e, grpc.credentials.createInsecure()));
    console.log(`fuzz seed ${FUZZ_SEED} (FUZZ_SEED to replay, FUZZ_RUNS to scale, FUZZ_SHRINK=1 to shrink)`);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients ?? []) c.close();
    const odd = cluster ? suspiciousLogLines(cluster) : [];
    await cluster?.destroy();
    console.log(
      `peer fuzz summary: seed=${FUZZ_SEED} Stream calls=${counts.streamCalls} (frames=${counts.frames}, structured messages=${counts.messages}) InstallSnapshot calls=${counts.snapshotCalls} raw TCP connections=${counts.tcp} ` +
        `in ${((Date.now() - started) / 1000).toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries(codes))}` +
        (odd.length > 0 ? `\nsuspicious log lines:\n${odd.slice(0, 20).join('\n')}` : ''),
    );
  });

  it('raft.v1.Raft/Stream: random frames and hostile messages neither crash a node nor cost the cluster its leader', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            node: fc.integer({ min: 0, max: 2 }),
            // Metadata values are printable ASCII (grpc-js refuses others before sending).
            from: fc.oneof(fc.constantFrom(...MEMBER_IDS, 'n4', 'evil', '', ' n1', undefined), fc.stringMatching(/^[\x20-\x7e]{0,40}$/)),
            frames: fc.array(fc.oneof({ weight: 1, arbitrary: fc.oneof(randomBytes, protobufGarbage).map((bytes): Frame => ({ kind: 'bytes', bytes })) }, { weight: 2, arbitrary: fc.integer().map((seed): Frame => ({ kind: 'batch', seed })) }), { minLength: 1, maxLength: 4 }),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        async (calls) => {
          const maxTerm = await currentTerm();
          for (const c of calls) {
            const frames = c.frames.map((f) => {
              if (f.kind === 'bytes') return f.bytes;
              // Structured batch: sample messages capped at the current term from the frame's own seed.
              const msgs = fc.sample(fc.array(message(maxTerm), { minLength: 1, maxLength: 6 }), { seed: f.seed, numRuns: 1 })[0] ?? [];
              counts.messages += msgs.length;
              try {
                return proto.serializeBatch({ messages: msgs } as never);
              } catch {
                return new Uint8Array(0);
              }
            });
            counts.frames += frames.length;
            const ans = await clientStream(clients[c.node] as grpc.Client, RAFT_STREAM_METHOD_PATH, frames, c.from);
            counts.streamCalls++;
            note(ans.code);
            if (!CLIENT_ERROR_CODES.has(ans.code)) throw new Error(`Stream on n${c.node + 1} (raft-from ${JSON.stringify(c.from)}) ended ${statusName(ans.code)}: ${ans.details}\nframes (base64): ${frames.map((f) => Buffer.from(f).toString('base64').slice(0, 2000)).join(' ')}\n${cluster.dumpLogs(15)}`);
          }
          await afterBatch(`${calls.length} Stream calls`);
        },
      ),
      fcParams(STREAM_BATCHES),
    );
  }, 120_000);

  it('raft.v1.Raft/InstallSnapshot: random bytes and hostile chunks are refused without harm', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            node: fc.integer({ min: 0, max: 2 }),
            chunks: fc.array(
              fc.oneof(
                fc.oneof(randomBytes, protobufGarbage).map((b) => ({ raw: b })),
                fc.record({ header: fc.boolean(), offset: u64, data: bytesField, done: fc.boolean(), total_bytes: u64, from: peerId, metaIndex: u64 }),
              ),
              { minLength: 1, maxLength: 4 },
            ),
          }),
          { minLength: 1, maxLength: 3 },
        ),
        async (calls) => {
          const term = await currentTerm();
          for (const c of calls) {
            const to = MEMBER_IDS[c.node] as string;
            const frames = c.chunks.map((ch) => {
              if ('raw' in ch) return ch.raw;
              // A header from a stale term (strictly below the current one): it must be refused or ignored.
              const header = ch.header
                ? { from: ch.from, to, term: Math.max(0, term - 1), body: 'install_snapshot', install_snapshot: { snapshot: { metadata: { index: ch.metaIndex, term: Math.max(0, term - 1), conf_state: { voters: MEMBER_IDS, learners: [] } }, data: new Uint8Array(0) } } }
                : null;
              try {
                return proto.serializeSnapshotChunk({ header, offset: ch.offset, data: ch.data, done: ch.done, total_bytes: ch.total_bytes } as never);
              } catch {
                return new Uint8Array([0xff]);
              }
            });
            const ans = await clientStream(clients[c.node] as grpc.Client, RAFT_INSTALL_SNAPSHOT_METHOD_PATH, frames, undefined);
            counts.snapshotCalls++;
            note(ans.code);
            if (!CLIENT_ERROR_CODES.has(ans.code)) throw new Error(`InstallSnapshot on n${c.node + 1} ended ${statusName(ans.code)}: ${ans.details}\nchunks (base64): ${frames.map((f) => Buffer.from(f).toString('base64').slice(0, 2000)).join(' ')}\n${cluster.dumpLogs(15)}`);
          }
          await afterBatch(`${calls.length} InstallSnapshot calls`);
        },
      ),
      fcParams(SNAPSHOT_BATCHES),
    );
  }, 120_000);

  it('raw TCP to the gRPC port: garbage before and after an HTTP/2 preface is dropped', async () => {
    const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ node: fc.integer({ min: 0, max: 2 }), before: fc.oneof(fc.constant(new Uint8Array(0)), randomBytes), preface: fc.boolean(), after: fc.oneof(randomBytes, protobufGarbage), waitMs: fc.integer({ min: 0, max: 30 }) }), { minLength: 1, maxLength: 5 }),
        async (conns) => {
          await Promise.all(
            conns.map(
              (c) =>
                new Promise<void>((resolve) => {
                  const [host, port] = (cluster.addresses.get(MEMBER_IDS[c.node] as string) as string).split(':') as [string, string];
                  const s = net.connect(Number(port), host);
                  const done = () => {
                    s.destroy();
                    resolve();
                  };
                  s.on('error', done);
                  s.on('close', done);
                  s.on('data', () => {
                    /* whatever the server answers */
                  });
                  s.on('connect', () => {
                    s.write(Buffer.concat([Buffer.from(c.before), c.preface ? PREFACE : Buffer.alloc(0), Buffer.from(c.after)]));
                    setTimeout(done, c.waitMs + 20);
                  });
                  counts.tcp++;
                }),
            ),
          );
          await afterBatch(`${conns.length} raw TCP connections`);
        },
      ),
      fcParams(TCP_BATCHES),
    );
  }, 120_000);

  it('the cluster still commits a write afterwards', async () => {
    const client = cluster.client();
    try {
      const r = await client.register({ id: 'fuzz/after-peer', name: 'after-peer', kind: 'mcp-server', version: '1.0.0', description: 'after the peer fuzz', capabilities: ['fuzz'], endpoints: {}, labels: {} } as never);
      expect(r).toBeDefined();
    } finally {
      client.close();
    }
  }, 30_000);
});
