/**
 * Fuzzing the token check on a real 3-node cluster running with `--auth on`: hostile
 * `authorization` values (random text, odd Unicode, oversized values, JWT-shaped strings with
 * random or plausible headers and claims — `alg` none/HS256/RS256, forged roles and namespaces —
 * and random or missing signatures) on gRPC metadata and HTTP headers against reads and writes,
 * through every node. Properties:
 * every node stays alive; every answer is UNAUTHENTICATED / 401, PERMISSION_DENIED / 403,
 * RESOURCE_EXHAUSTED / 429 or a clear client error (never INTERNAL, UNKNOWN or a 5xx); a forged
 * token never gets a write through (the agents stay as they were); and a real token still works
 * afterwards. Fixed seed (FUZZ_SEED / FUZZ_RUNS override it).
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../../cluster/process-cluster.js';
import { RegistryService, specToWire } from '../../src/api/registry-proto.js';
import type { RegistryClient } from '../../src/client/registry-client.js';
import { CLIENT_ERROR_CODES, expectAlive, fcParams, FUZZ_SEED, hostileString, rawUnary, runs, statusName } from './support.js';

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** JWT-shaped strings: random or plausible headers and claims, random or empty signatures. */
const jwtShaped: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      fc.record({ alg: fc.constantFrom('EdDSA', 'none', 'HS256', 'RS256', 'ES256', 'Ed25519', ''), kid: fc.oneof(hostileString, fc.constant('')), typ: fc.constantFrom('JWT', 'JOSE') }, { requiredKeys: ['alg'] }),
      fc.jsonValue(),
    ),
    fc.oneof(
      fc.record({ sub: hostileString, role: fc.constantFrom('admin', 'writer', 'reader', 'root', ''), ns: fc.array(hostileString, { maxLength: 4 }), jti: hostileString, iss: fc.constantFrom('raft-registry', 'x'), exp: fc.oneof(fc.integer(), fc.double()) }, { requiredKeys: [] }),
      fc.jsonValue(),
    ),
    fc.oneof(fc.constant(''), fc.base64String({ maxLength: 120 }).map((s) => s.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_'))),
  )
  .map(([h, p, sig]) => `${b64(h)}.${b64(p)}.${sig}`);

const hostileAuthorization: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: jwtShaped.map((t) => `Bearer ${t}`) },
  { weight: 1, arbitrary: hostileString.map((t) => `Bearer ${t}`) },
  { weight: 1, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.constantFrom('Bearer', 'Bearer ', 'Basic YWRtaW46YWRtaW4=', 'bearer a.b.c', `Bearer ${'x'.repeat(9_000)}`) },
);

/** Bytes grpc-js is willing to send as an ASCII metadata value. */
const asciiSafe = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?');

describe('fuzz: the token check with --auth on', () => {
  let cluster: ProcessCluster;
  let admin: RegistryClient;
  const raw: grpc.Client[] = [];

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3, ['--auth', 'on', '--rate-limits', 'off']);
    await cluster.waitForLeader();
    admin = cluster.client(undefined, 10_000, await cluster.adminToken('n1'));
    await admin.register({ id: 'io.github.fuzz/existing', name: 'existing', kind: 'service', version: '1', description: '', capabilities: ['fuzz-auth'], endpoints: {}, labels: {} });
    for (const address of cluster.endpoints()) raw.push(new grpc.Client(address, grpc.credentials.createInsecure()));
  }, 60_000);

  afterAll(async () => {
    for (const c of raw) c.close();
    admin?.close();
    await cluster?.destroy();
  });

  it('answers every hostile credential with a clear refusal, lets no write through, and keeps serving real tokens', async () => {
    const before = (await admin.find({ capability: 'fuzz-auth' })).agents.map((a) => [a.id, a.modRevision]);
    const codes = new Map<string, number>();
    let cases = 0;
    const register = RegistryService.Register.requestSerialize({ agent: specToWire({ id: 'io.github.fuzz/forged', name: 'forged', kind: 'service', version: '1', description: '', capabilities: ['fuzz-auth'], endpoints: {}, labels: {} }) });
    const get = RegistryService.Get.requestSerialize({ id: 'io.github.fuzz/existing' });
    await fc.assert(
      fc.asyncProperty(hostileAuthorization, fc.integer({ min: 0, max: 2 }), fc.boolean(), async (authorization, node, write) => {
        cases++;
        // gRPC
        const md = new grpc.Metadata();
        md.set('authorization', asciiSafe(authorization));
        const ans = await rawUnary(raw[node] as grpc.Client, write ? RegistryService.Register.path : RegistryService.Get.path, write ? register : get, 10_000, md);
        const key = `grpc ${statusName(ans.code)}`;
        codes.set(key, (codes.get(key) ?? 0) + 1);
        // Metadata over the HTTP/2 header limit is refused by the transport before gRPC reads it
        // (RST_STREAM, which the client reports as INTERNAL): the gRPC counterpart of HTTP 431.
        const oversized = ans.code === grpc.status.INTERNAL && /RST_STREAM/.test(ans.details) && authorization.length > 8_000;
        if (!oversized) expect(ans.code === grpc.status.OK ? 'OK' : CLIENT_ERROR_CODES.has(ans.code) ? 'client error' : statusName(ans.code), `${authorization.slice(0, 200)} -> ${statusName(ans.code)} ${ans.details}`).toBe('client error');
        if (!oversized) expect([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.RESOURCE_EXHAUSTED]).toContain(ans.code);
        // HTTP
        let res: Response | undefined;
        try {
          res = await fetch(`${cluster.httpUrl(cluster.ids[node] as string)}/v1/agents${write ? '' : '/io.github.fuzz/existing'}`, {
            method: write ? 'POST' : 'GET',
            headers: { authorization: asciiSafe(authorization), 'content-type': 'application/json' },
            ...(write ? { body: JSON.stringify({ agent: { id: 'io.github.fuzz/forged-http', kind: 'service', capabilities: ['fuzz-auth'] } }) } : {}),
          });
        } catch {
          // A header over Node's 16 KiB limit: the connection is refused, like any HTTP server's.
          expect(authorization.length).toBeGreaterThan(8_000);
          return;
        }
        codes.set(`http ${res.status}`, (codes.get(`http ${res.status}`) ?? 0) + 1);
        expect([401, 403, 429, 431]).toContain(res.status);
        const body = await res.text();
        if (res.status !== 431) expect((JSON.parse(body) as { message: string }).message).not.toBe('');
      }),
      fcParams(runs(150)),
    );
    console.log(`auth fuzz summary: seed=${FUZZ_SEED} cases=${cases} (each over gRPC and HTTP); answers ${JSON.stringify(Object.fromEntries(codes))}`);
    await expectAlive(cluster, 'after the auth fuzz');
    const after = (await admin.find({ capability: 'fuzz-auth' })).agents.map((a) => [a.id, a.modRevision]);
    expect(after).toEqual(before);
    expect((await admin.get('io.github.fuzz/existing')).agent.id).toBe('io.github.fuzz/existing');
  }, 180_000);
});
