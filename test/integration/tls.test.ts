/**
 * Transport security on real processes: a 3-node cluster started with `--tls-cert`,
 * `--tls-key`, `--tls-ca` (certificates from `registry certs init`'s code) elects a leader and
 * serves writes and reads to a client with the cluster's client certificate; clients without a
 * certificate or with one of another CA are refused; raw `raft.v1.Raft/Stream` calls with no
 * certificate, a foreign one, or a member's certificate claiming another member are refused
 * while the cluster keeps serving; bad TLS files stop a node at start with a clear message; the
 * HTTP front end answers over HTTPS.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, NODE_BIN, ProcessCluster, runBinary, REGISTRY_BIN, waitFor } from '../../cluster/process-cluster.js';
import { initCerts, type CertFiles } from '../../src/auth/certs.js';
import { RegistryClient, RegistryError } from '../../src/client/index.js';
import { logIndex, nodeId, term, type Message } from '../../src/raft/types.js';
import { encodeBatch, loadRaftProto, RAFT_STREAM_METHOD_PATH } from '../../src/transport/codec.js';

const spec = (id: string) => ({ id, name: id, kind: 'service' as const, version: '1', description: 'over TLS', capabilities: ['tls-probe'], endpoints: {}, labels: {} });

/** GET `url` over HTTPS trusting `ca`; resolves with the status and body. */
function httpsGet(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Opens a raw peer stream to `address` with `creds`, claiming `raft-from: from`, writes
 * `messages` once the server answers with headers, and resolves with the call's final status
 * (OK when it was accepted and ended by us).
 */
function rawPeerStream(address: string, creds: grpc.ChannelCredentials, from: string, messages: Message[]): Promise<grpc.StatusObject> {
  const client = new grpc.Client(address, creds);
  const md = new grpc.Metadata();
  md.set('raft-from', from);
  return new Promise<grpc.StatusObject>((resolve) => {
    const call = client.makeClientStreamRequest<Buffer, unknown>(RAFT_STREAM_METHOD_PATH, (b) => b, loadRaftProto().deserializeAck, md, { deadline: Date.now() + 10_000 }, () => undefined);
    call.on('status', (s) => resolve(s));
    call.on('error', () => undefined);
    call.on('metadata', () => {
      if (messages.length > 0) call.write(encodeBatch(messages));
      // Give the server the batch, then end our side; an accepted stream then ends OK.
      setTimeout(() => call.end(), 200);
    });
  }).finally(() => client.close());
}

describe('TLS and mutual TLS', () => {
  let cluster: ProcessCluster;
  let files: CertFiles;
  let other: CertFiles;
  let leader: string;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3, [], { tls: true });
    files = cluster.tlsFiles as CertFiles;
    other = await initCerts(join(cluster.dir, 'other-ca'), { nodes: ['n1', 'n2'] });
    leader = await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  const read = (p: string): Buffer => readFileSync(p);

  it('a 3-node TLS cluster elects a leader and serves register and get to a client with the cluster client certificate', async () => {
    expect(leader).toMatch(/^n[123]$/);
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const client = cluster.client([follower]);
    try {
      const r = await client.register(spec('tls/one'));
      expect(r.revision).toBeGreaterThan(0);
      const got = await client.get('tls/one');
      expect(got.agent.capabilities).toEqual(['tls-probe']);
    } finally {
      client.close();
    }
  }, 30_000);

  it('refuses a client without a client certificate, and one whose certificate comes from another CA', async () => {
    const attempts: Array<[string, RegistryClient]> = [
      ['no client certificate', new RegistryClient({ endpoints: cluster.endpoints(), deadlineMs: 3_000, tls: { ca: read(files.caCert) } })],
      ['a certificate of another CA', new RegistryClient({ endpoints: cluster.endpoints(), deadlineMs: 3_000, tls: { ca: read(files.caCert), cert: read(other.clientCert), key: read(other.clientKey) } })],
    ];
    for (const [what, client] of attempts) {
      try {
        const err = await client.get('tls/one').then(() => undefined, (e: unknown) => e);
        expect(err, what).toBeInstanceOf(RegistryError);
        expect((err as RegistryError).code, what).toBe(grpc.status.UNAVAILABLE);
      } finally {
        client.close();
      }
    }
  }, 30_000);

  it('refuses raw peer streams with no certificate, a foreign certificate, or a member certificate claiming another member; the cluster keeps serving writes', async () => {
    const target = cluster.addresses.get('n3') as string;
    const forged: Message = { type: 'Heartbeat', from: nodeId('n1'), to: nodeId('n3'), term: term(1_000_000), leaderCommit: logIndex(0), context: new Uint8Array(0) };
    const noCert = await rawPeerStream(target, grpc.credentials.createSsl(read(files.caCert)), 'n1', [forged]);
    expect(noCert.code).toBe(grpc.status.UNAVAILABLE);
    const foreign = await rawPeerStream(target, grpc.credentials.createSsl(read(files.caCert), read(other.nodes.n1!.key), read(other.nodes.n1!.cert)), 'n1', [forged]);
    expect(foreign.code).toBe(grpc.status.UNAVAILABLE);
    // A real member's certificate (n2) claiming to be n1: the handshake succeeds, the call does not.
    const n2Creds = grpc.credentials.createSsl(read(files.caCert), read(files.nodes.n2!.key), read(files.nodes.n2!.cert));
    const impostor = await rawPeerStream(target, n2Creds, 'n1', [forged]);
    expect(impostor.code, impostor.details).toBe(grpc.status.UNAUTHENTICATED);
    expect(impostor.details).toMatch(/claims raft-from "n1" but its client certificate names "n2"/);
    // The CLI's client certificate, honest about its name, is still no member's.
    const asClient = await rawPeerStream(target, grpc.credentials.createSsl(read(files.caCert), read(files.clientKey), read(files.clientCert)), 'client', []);
    expect(asClient.code, asClient.details).toBe(grpc.status.UNAUTHENTICATED);
    expect(asClient.details).toMatch(/client-only certificate/);
    await waitFor('n3 to log the refusal', 10_000, async () => ((cluster.logs.get('n3') ?? []).join('').includes('refusing peer stream') ? true : undefined));

    // Honest about the stream (n2 as n2) but a message inside claims n1: dropped, the stream lives.
    const before = await misaddressed(cluster.httpUrl('n3'), read(files.caCert));
    const honest = await rawPeerStream(target, n2Creds, 'n2', [forged]);
    expect(honest.code, honest.details).toBe(grpc.status.OK);
    await waitFor('n3 to count the dropped message', 10_000, async () => ((await misaddressed(cluster.httpUrl('n3'), read(files.caCert))) > before ? true : undefined));

    // None of it disturbed the cluster: the term of 1,000,000 never reached Raft.
    const st = await cluster.statuses();
    expect(st.every((s) => s.term < 1_000_000)).toBe(true);
    const client = cluster.client();
    try {
      await client.register(spec('tls/after-attacks'));
      expect((await client.get('tls/after-attacks')).agent.id).toBe('tls/after-attacks');
    } finally {
      client.close();
    }
    expect(await cluster.waitForLeader()).toBe(leader);
  }, 60_000);

  it('answers /health over HTTPS with the cluster CA', async () => {
    const res = await httpsGet(`${cluster.httpUrl(leader)}/health`, read(files.caCert));
    expect(cluster.httpUrl(leader)).toMatch(/^https:\/\//);
    expect(res.status, res.body).toBe(200);
  }, 20_000);

  it('the registry CLI talks to the TLS cluster with --cacert, --cert and --key', async () => {
    const out = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints().join(','), '--cacert', files.caCert, '--cert', files.clientCert, '--key', files.clientKey, 'get', 'tls/one']);
    expect(out.code, out.out).toBe(0);
    expect(out.out).toContain('tls/one');
  }, 30_000);

  describe('a node with bad TLS files does not start', () => {
    async function startWith(tlsArgs: string[]): Promise<{ code: number | null; out: string }> {
      const [port] = await freePorts(1);
      return runBinary(NODE_BIN, ['--id', 'n1', '--listen', `127.0.0.1:${port}`, '--peers', `n1=127.0.0.1:${port}`, '--data-dir', join(cluster.dir, 'bad-node'), ...tlsArgs], 20_000);
    }

    it('exits 2 naming the flag and the file when the certificate file is missing', async () => {
      const missing = join(cluster.dir, 'certs', 'nope.crt');
      const r = await startWith(['--tls-cert', missing, '--tls-key', files.nodes.n1!.key, '--tls-ca', files.caCert]);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toContain(`error: --tls-cert ${missing}: cannot read the certificate: no such file`);
    }, 30_000);

    it('exits 2 when the key does not match the certificate', async () => {
      const r = await startWith(['--tls-cert', files.nodes.n1!.cert, '--tls-key', files.nodes.n2!.key, '--tls-ca', files.caCert]);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toMatch(/error: --tls-key \S+n2\.key: the key does not match the certificate --tls-cert \S+n1\.crt/);
    }, 30_000);

    it('a node without TLS listening beyond loopback warns at start', async () => {
      const [port, httpPort] = await freePorts(2);
      const p = spawn(process.execPath, [NODE_BIN, '--id', 'n1', '--listen', `0.0.0.0:${port}`, '--peers', `n1=127.0.0.1:${port}`, '--data-dir', join(cluster.dir, 'open-node'), '--http-listen', `0.0.0.0:${httpPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await waitFor('the node to start serving', 20_000, async () => (out.includes('node serving') ? true : undefined));
        expect(out).toContain(`listening on 0.0.0.0:${port} without TLS: anyone who can reach it can`);
        expect(out).toContain(`listening on 0.0.0.0:${httpPort} without TLS: anyone who can reach it can`);
      } finally {
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await exited;
      }
    }, 30_000);

    it('exits 2 when only some of the three flags are given', async () => {
      const r = await startWith(['--tls-cert', files.nodes.n1!.cert]);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toContain('--tls-cert, --tls-key and --tls-ca go together');
    }, 30_000);
  });
});

/** The `misaddressed` count of `raft_transport_dropped_messages_total` at `base`/metrics. */
async function misaddressed(base: string, ca: Buffer): Promise<number> {
  const { body } = await httpsGet(`${base}/metrics`, ca);
  const m = /raft_transport_dropped_messages_total\{reason="misaddressed"[^}]*\}\s+(\d+)/.exec(body);
  return m ? Number(m[1]) : 0;
}
