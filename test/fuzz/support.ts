/**
 * Shared pieces of the fuzz suites (test/fuzz/*.fuzz.test.ts): the run count and seed (fixed by
 * default so a failure replays; FUZZ_RUNS / FUZZ_SEED override them), the liveness probe of a
 * real process cluster, hostile strings (odd Unicode, oversized), hostile JSON values, and a raw
 * gRPC client that sends arbitrary bytes as a request body.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import type { ProcessCluster } from '../../cluster/process-cluster.js';

/** The fixed default seed; FUZZ_SEED overrides it. */
export const FUZZ_SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : 20_251_106;
/** Scales every suite's run count: FUZZ_RUNS=<n> multiplies the default by n / 100. */
const RUNS_SCALE = process.env.FUZZ_RUNS !== undefined ? Number(process.env.FUZZ_RUNS) / 100 : 1;

/** A property's run count: `base` at the default scale (FUZZ_RUNS=100), at least 1. */
export function runs(base: number): number {
  return Math.max(1, Math.round(base * RUNS_SCALE));
}

/** fast-check parameters: the seed, the runs, and no shrinking (each run talks to real processes; FUZZ_SHRINK=1 turns it on). */
export function fcParams<T>(numRuns: number): fc.Parameters<T> {
  return {
    seed: FUZZ_SEED,
    numRuns,
    endOnFailure: process.env.FUZZ_SHRINK !== '1',
    // A short report: the seed and path to replay, and the error (which names the input), not a megabyte of counterexample.
    reporter: (d) => {
      if (!d.failed) return;
      const err = d.errorInstance instanceof Error ? d.errorInstance.message : String(d.errorInstance);
      const example = JSON.stringify(d.counterexample, (_k, v: unknown) => (v instanceof Uint8Array ? `bytes:${Buffer.from(v).toString('base64').slice(0, 400)}` : typeof v === 'string' && v.length > 300 ? `${v.slice(0, 300)}...(${v.length} chars)` : v));
      const file = join(tmpdir(), `fuzz-failure-${d.seed}-${process.pid}.txt`);
      writeFileSync(file, `${err}\n\ncounterexample:\n${JSON.stringify(d.counterexample, (_k, v: unknown) => (v instanceof Uint8Array ? `bytes:${Buffer.from(v).toString('base64')}` : v))}\n`);
      throw new Error(`property failed after ${d.numRuns} runs; replay with FUZZ_SEED=${d.seed} (path ${d.counterexamplePath}); the whole report is in ${file}\n${err.slice(0, 6000)}\ncounterexample (long strings cut): ${example?.slice(0, 6000)}`);
    },
  };
}

/**
 * Every node process is still running and answers `GET /health?live` with 200; throws with the
 * node's last log lines otherwise.
 */
export async function expectAlive(cluster: ProcessCluster, what: string): Promise<void> {
  for (const id of cluster.ids) {
    const p = cluster.procs.get(id);
    if (!p || p.exitCode !== null || p.signalCode !== null) {
      throw new Error(`node ${id} died (exit ${p?.exitCode}, signal ${p?.signalCode}) after ${what}\n${cluster.dumpLogs(60)}`);
    }
    let status = 0;
    try {
      const res = await fetch(`${cluster.httpUrl(id)}/health?live`, { signal: AbortSignal.timeout(5_000) });
      status = res.status;
      await res.arrayBuffer();
    } catch (e) {
      throw new Error(`node ${id} does not answer /health?live after ${what}: ${String(e)}\n${cluster.dumpLogs(60)}`);
    }
    if (status !== 200) throw new Error(`node ${id} answers /health?live with ${status} after ${what}\n${cluster.dumpLogs(60)}`);
  }
}

/** Log lines that mean a node hit something it did not handle (checked once per suite). */
export function suspiciousLogLines(cluster: ProcessCluster): string[] {
  const out: string[] = [];
  for (const [id, buf] of cluster.logs) {
    for (const line of buf.join('').split('\n')) {
      if (/uncaught|unhandled|RaftInvariantError|"level":60|FATAL/i.test(line)) out.push(`${id}: ${line.slice(0, 400)}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hostile strings and values.
// ---------------------------------------------------------------------------------------------

/** Single odd code points and sequences: lone surrogates, NUL, controls, RTL overrides, BOM, combining marks, emoji with ZWJ. */
const ODD_PIECES = [
  '\uD800', '\uDFFF', '\uDBFF\uDBFF', '\u0000', '\u0001', '\u001F', '\u007F', '\u202E', '\u202D', '\u2066', '\u2069', '\u200B', '\u200D',
  '\uFEFF', '\uFFFE', '\uFFFF', '\u0301', '\u0336\u0336\u0336', '\u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466}', '\u{1F3F3}\uFE0F\u200D\u{1F308}',
  '\u{10FFFF}', '\n', '\r\n', '\t', ' ', '%', '%00', '%2F', '%ZZ', '/', '\\', '..', '../', '?', '#', '&', '=', '"', "'", '<script>', '{', '}',
  '\u0130', '\u00DF', 'ﬃ', '\u0344', 'Ω', 'ǅ', '\u3000', '\u00A0', '\u2028', '\u2029',
];

/** A string made of odd pieces and ordinary characters. */
export const oddString: fc.Arbitrary<string> = fc
  .array(fc.oneof(fc.constantFrom(...ODD_PIECES), fc.string({ maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 4 })), { maxLength: 12 })
  .map((parts) => parts.join(''));

/** One very long grapheme cluster: a base letter and thousands of combining marks. */
export const longGrapheme: fc.Arbitrary<string> = fc.integer({ min: 300, max: 5_000 }).map((n) => 'a' + '\u0301'.repeat(n));

/** A string past one of the documented limits (ids 256, descriptions 16 KiB, cards 64 KiB, HTTP body 512 KiB). */
export const oversizedString: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom(129, 257, 1_025, 2_049, 16 * 1024 + 1, 64 * 1024 + 1, 600 * 1024), fc.constantFrom('x', 'é', '\u{1F600}', '\u0000', 'a/'))
  .map(([n, c]) => c.repeat(Math.ceil(n / c.length)));

/** Any hostile string: odd, a long grapheme, oversized, or plain. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: oddString },
  { weight: 1, arbitrary: longGrapheme },
  { weight: 1, arbitrary: oversizedString },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
);

/** Numbers that break naive code: negatives, huge, non-integers, NaN, infinities, -0. */
export const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(-1, -0, 0.5, -(2 ** 63), 2 ** 53, 2 ** 64, 1e308, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.MAX_SAFE_INTEGER, 0xffff_ffff, 0x1_0000_0000),
  fc.double(),
  fc.integer(),
);

/** An object nested `depth` levels deep (`{"a":{"a":...}}` or `[[[...]]]`). */
export function nested(depth: number, array: boolean): unknown {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = array ? [v] : { a: v };
  return v;
}

/** Deeply nested JSON text, built as a string so it costs nothing to make (10 000 levels and more). */
export const deepJsonText: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom(100, 1_000, 10_000, 100_000), fc.boolean())
  .map(([d, arr]) => (arr ? '['.repeat(d) + ']'.repeat(d) : '{"a":'.repeat(d) + '1' + '}'.repeat(d)));

/** Any JSON-ish value, hostile leaves, with a few deep nests. */
export const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: hostileString },
  { weight: 1, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 20, max: 300 }), fc.boolean()).map(([d, a]) => nested(d, a)) },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}, [null], { __proto__: { polluted: true } }, { constructor: { prototype: { x: 1 } } }) },
);

/** Random bytes, sometimes empty, sometimes large. */
export const randomBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 64, maxLength: 2_048 }) },
  { weight: 1, arbitrary: fc.integer({ min: 64 * 1024, max: 1024 * 1024 }).map((n) => new Uint8Array(n).fill(0x0a)) },
);

/**
 * Protobuf-shaped garbage: a sequence of fields with random numbers (1-20, or huge) and random
 * wire types, so a string field arrives as a varint, a message field as a fixed64, a length
 * runs past the end, a varint never ends, a group never closes.
 */
export const protobufGarbage: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.tuple(fc.oneof(fc.integer({ min: 1, max: 20 }), fc.constantFrom(0, 536_870_911, 19_000)), fc.integer({ min: 0, max: 7 }), fc.uint8Array({ maxLength: 24 }), fc.boolean()),
    { minLength: 1, maxLength: 8 },
  )
  .map((fields) => {
    const out: number[] = [];
    const varint = (n: number): void => {
      let v = n;
      while (v > 0x7f) {
        out.push((v & 0x7f) | 0x80);
        v = Math.floor(v / 128);
      }
      out.push(v);
    };
    for (const [num, wire, payload, lie] of fields) {
      varint(num * 8 + wire);
      if (wire === 0) for (const b of payload.slice(0, 10)) out.push(b | (lie ? 0x80 : 0));
      else if (wire === 1) out.push(...payload.slice(0, lie ? 3 : 8));
      else if (wire === 2) {
        varint(lie ? payload.length + 1000 : payload.length);
        out.push(...payload);
      } else if (wire === 5) out.push(...payload.slice(0, lie ? 1 : 4));
      else out.push(...payload);
    }
    return Uint8Array.from(out);
  });

// ---------------------------------------------------------------------------------------------
// Raw gRPC.
// ---------------------------------------------------------------------------------------------

const identity = (b: Buffer): Buffer => b;

/** A status received, or OK with the response bytes. */
export interface RawAnswer {
  code: number;
  details: string;
}

/** Sends `body` as the request of unary method `path` (e.g. `/registry.v1.Registry/Get`) with identity serializers. */
export function rawUnary(client: grpc.Client, path: string, body: Uint8Array, deadlineMs = 10_000, metadata = new grpc.Metadata()): Promise<RawAnswer> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(path, identity, identity, Buffer.from(body), metadata, { deadline: Date.now() + deadlineMs }, (err) => {
      if (err) resolve({ code: err.code ?? grpc.status.UNKNOWN, details: err.details ?? err.message });
      else resolve({ code: grpc.status.OK, details: '' });
    });
  });
}

/**
 * Opens server-streaming method `path` with `body`, waits `openMs` (or until the call ends),
 * then cancels; resolves with the status (CANCELLED when it was still open).
 */
export function rawServerStream(client: grpc.Client, path: string, body: Uint8Array, openMs: number, deadlineMs = 10_000): Promise<RawAnswer & { messages: number }> {
  return new Promise((resolve) => {
    let messages = 0;
    const call = client.makeServerStreamRequest<Buffer, Buffer>(path, identity, identity, Buffer.from(body), new grpc.Metadata(), { deadline: Date.now() + deadlineMs });
    const timer = setTimeout(() => call.cancel(), openMs);
    call.on('data', () => messages++);
    call.on('error', () => {
      /* the status follows */
    });
    call.on('status', (s: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve({ code: s.code, details: s.details, messages });
    });
  });
}

/** Statuses a malformed or refused request may get: a clear client-side answer, never INTERNAL or UNKNOWN. */
export const CLIENT_ERROR_CODES: ReadonlySet<number> = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.ABORTED,
  grpc.status.OUT_OF_RANGE,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.UNIMPLEMENTED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
]);

/** The name of a gRPC status code. */
export function statusName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? String(code);
}
