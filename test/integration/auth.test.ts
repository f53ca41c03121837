/**
 * Tokens, roles and namespaces on a real 3-node cluster started with `--auth on`: the bootstrap
 * admin token every node writes, each role against each kind of call through gRPC and HTTP and
 * through every node, a writer for io.github.alice that cannot touch io.github.bob/… by any
 * route, expired, forged and revoked tokens, key rotation on the live cluster, `modified_by`,
 * and signed agent cards verified against trusted keys.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { SignJWT, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, REGISTRY_BIN, runBinary, waitFor } from '../../cluster/process-cluster.js';
import { generateCardKey, signCard } from '../../src/auth/card-signatures.js';
import { RegistryError } from '../../src/client/errors.js';
import type { RegistryClient } from '../../src/client/registry-client.js';
import type { AgentSpec } from '../../src/registry/types.js';
import { ADMIN_TOKEN_FILE } from '../../src/server/node.js';

const spec = (id: string): AgentSpec => ({ id, name: id, kind: 'mcp-server', version: '1.0.0', description: 'auth test', capabilities: ['auth-test'], endpoints: {}, labels: {} });
const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`../registry/fixtures/formats/${name}`, import.meta.url)), 'utf8');
const A2A_V1_CARD = fixture('a2a-v1.0-sample-agent-card.json');
const MCP_SERVER_JSON = fixture('mcp-server-json-remote.json');

/** The gRPC status a call ends with (OK when it succeeds). */
async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return grpc.status.OK;
  } catch (e) {
    if (e instanceof RegistryError) return e.code;
    throw e;
  }
}

describe('auth on a 3-node cluster', () => {
  let cluster: ProcessCluster;
  let leader: string;
  let follower: string;
  let adminToken: string;
  const clients: RegistryClient[] = [];
  const client = (token?: string, ids?: string[]): RegistryClient => {
    const c = cluster.client(ids, 10_000, token);
    clients.push(c);
    return c;
  };
  const http = (id: string, path: string, init: RequestInit & { token?: string } = {}): Promise<Response> =>
    fetch(`${cluster.httpUrl(id)}${path}`, {
      ...init,
      headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.headers as Record<string, string> | undefined) },
    });
  const mint = async (role: string, namespaces: string[] = [], ttlSeconds = 0, name?: string): Promise<{ token: string; id: string }> => {
    const res = await client(adminToken).createToken({ role, namespaces, ttlSeconds, ...(name ? { name } : {}) });
    return { token: res.token, id: res.token_id };
  };

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3, ['--auth', 'on', '--rate-limits', 'off']);
    leader = await cluster.waitForLeader();
    follower = cluster.ids.find((id) => id !== leader) as string;
    // Every node writes its own bootstrap admin token once the signing key is committed.
    for (const id of cluster.ids) await cluster.adminToken(id);
    adminToken = await cluster.adminToken(follower);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await cluster?.destroy();
  });

  it('writes admin.token with mode 0600 on every node, and each one is an admin token', async () => {
    for (const id of cluster.ids) {
      const file = join(cluster.dataDir(id), ADMIN_TOKEN_FILE);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const st = await client(readFileSync(file, 'utf8').trim(), [id]).authStatus();
      expect(st.enabled).toBe(true);
      expect(st.role).toBe('admin');
      expect(st.signing_key_ids).toHaveLength(1);
    }
  });

  it('refuses calls without a token (UNAUTHENTICATED / 401) but serves Status and /health', async () => {
    expect(await codeOf(client().get('io.github.alice/none'))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(client().register(spec('io.github.alice/anon')))).toBe(grpc.status.UNAUTHENTICATED);
    const res = await http(follower, '/v1/agents/io.github.alice/none');
    expect(res.status).toBe(401);
    expect(((await res.json()) as { message: string }).message).toMatch(/bearer token/);
    expect((await client().status()).members).toHaveLength(3);
    expect((await http(follower, '/health')).status).toBe(200);
  });

  it('gives each role what it may do and nothing more, through gRPC and HTTP, on every node', async () => {
    const reader = await mint('reader');
    const alice = await mint('writer', ['io.github.alice'], 0, 'alice');
    const adminClient = client(adminToken);
    await adminClient.register(spec('io.github.carol/seeded'));
    for (const id of cluster.ids) {
      const r = client(reader.token, [id]);
      expect(await codeOf(r.get('io.github.carol/seeded'))).toBe(grpc.status.OK);
      expect(await codeOf(r.find({ capability: 'auth-test' }))).toBe(grpc.status.OK);
      expect(await codeOf(r.search({ query: 'auth' }))).toBe(grpc.status.OK);
      expect(await codeOf(r.register(spec('io.github.carol/by-reader')))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(r.deregister('io.github.carol/seeded'))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(r.addMember('n9', '127.0.0.1:1'))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(r.transferLeadership(id))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(r.createToken({ role: 'admin' }))).toBe(grpc.status.PERMISSION_DENIED);
      const w = client(alice.token, [id]);
      expect(await codeOf(w.register(spec(`io.github.alice/on-${id}`)))).toBe(grpc.status.OK);
      expect(await codeOf(w.removeMember('n3'))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(w.rotateSigningKey())).toBe(grpc.status.PERMISSION_DENIED);
      expect((await http(id, '/v1/agents/io.github.carol/seeded', { token: reader.token })).status).toBe(200);
      expect((await http(id, '/v1/agents', { method: 'POST', token: reader.token, body: JSON.stringify({ agent: spec('io.github.carol/http-reader') }) })).status).toBe(403);
      expect((await http(id, '/v1/snapshot', { token: reader.token })).status).toBe(403);
      expect((await http(id, '/v1/snapshot', { token: alice.token })).status).toBe(403);
    }
    // The backup needs admin; an admin gets one.
    const backup = await http(follower, '/v1/snapshot', { token: adminToken });
    expect(backup.status).toBe(200);
    expect((await backup.arrayBuffer()).byteLength).toBeGreaterThan(0);
    // A watch needs a token too; a browser's EventSource passes it as access_token (RFC 6750 §2.3).
    expect((await http(follower, '/v1/watch?capability=auth-test', { signal: AbortSignal.timeout(2_000) })).status).toBe(401);
    const ac = new AbortController();
    const sse = await http(follower, `/v1/watch?capability=auth-test&access_token=${reader.token}`, { signal: ac.signal });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/text\/event-stream/);
    ac.abort();
  });

  it('keeps a writer for io.github.alice out of io.github.bob/… by every route and node, leaving nothing behind', async () => {
    const alice = await mint('writer', ['io.github.alice/*'], 0, 'alice');
    const admin = client(adminToken);
    const bob = await admin.register(spec('io.github.bob/x'), { ttlSeconds: 30 });
    for (const id of cluster.ids) {
      const w = client(alice.token, [id]);
      expect(await codeOf(w.register(spec('io.github.bob/x')))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(w.register(spec('io.github.bob/x'), { expectedRevision: bob.revision }))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(w.register(spec('io.github.bob/new'), { createOnly: true }))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(w.deregister('io.github.bob/x'))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await codeOf(w.heartbeat('io.github.bob/x'))).toBe(grpc.status.PERMISSION_DENIED);
      // A look-alike prefix is not the namespace.
      expect(await codeOf(w.register(spec('io.github.alicexyz/x')))).toBe(grpc.status.PERMISSION_DENIED);
      const post = await http(id, '/v1/agents', { method: 'POST', token: alice.token, body: JSON.stringify({ agent: spec('io.github.bob/x') }) });
      expect(post.status).toBe(403);
      expect(((await post.json()) as { message: string }).message).toContain('io.github.alice/');
      expect((await http(id, '/v1/agents/io.github.bob/x', { method: 'DELETE', token: alice.token })).status).toBe(403);
      expect((await http(id, '/v1/agents/io.github.bob/x/heartbeat', { method: 'POST', token: alice.token, body: '{}' })).status).toBe(403);
    }
    // `registry import` through the CLI: alice's entry is written, bob's is refused.
    const server = JSON.parse(MCP_SERVER_JSON) as Record<string, unknown>;
    const file = join(cluster.dir, 'import.json');
    writeFileSync(file, JSON.stringify([{ ...server, name: 'io.github.alice/imported' }, { ...server, name: 'io.github.bob/imported' }]));
    const res = await runBinary(REGISTRY_BIN, ['--endpoints', cluster.endpoints().join(','), '--token', alice.token, 'import', file]);
    expect(res.code, res.out).toBe(1);
    expect(res.out).toMatch(/failed io\.github\.bob\/imported\S* PERMISSION_DENIED/);
    expect(res.out).toContain('registered 1');
    const after = await admin.get('io.github.bob/x');
    expect(after.agent.modRevision).toBe(bob.revision);
    expect(after.agent.modifiedBy).toBe('admin');
    for (const gone of ['io.github.bob/new', 'io.github.alicexyz/x']) expect(await codeOf(admin.get(gone))).toBe(grpc.status.NOT_FOUND);
    expect((await admin.find({ namePrefix: 'io.github.bob/imported' })).agents).toEqual([]);
    expect((await admin.find({ namePrefix: 'io.github.alice/imported' })).agents).toHaveLength(1);
    // What alice writes carries her name.
    const own = await client(alice.token).register(spec('io.github.alice/mine'));
    expect(own.agent.modifiedBy).toBe('alice');
    expect((await client(alice.token, [follower]).get('io.github.alice/mine')).agent.modifiedBy).toBe('alice');
  });

  it('refuses expired, forged and malformed tokens', async () => {
    const short = await mint('reader', [], 1);
    await new Promise((r) => setTimeout(r, 2_100));
    const expired = await client(short.token).get('io.github.carol/seeded').catch((e: unknown) => e);
    expect(expired).toBeInstanceOf(RegistryError);
    expect((expired as RegistryError).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((expired as RegistryError).message).toMatch(/expired/);
    // Same claims and key id, another key: the signature does not verify.
    const st = await client(adminToken).authStatus();
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await new SignJWT({ role: 'admin' })
      .setProtectedHeader({ alg: 'EdDSA', kid: st.current_key_id })
      .setIssuer('raft-registry')
      .setSubject('mallory')
      .setJti('forged')
      .sign(privateKey);
    const e1 = (await client(forged).get('io.github.carol/seeded').catch((e: unknown) => e)) as RegistryError;
    expect(e1.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e1.message).toMatch(/signature does not verify/);
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"m","role":"admin","jti":"x","iss":"raft-registry"}').toString('base64url')}.`;
    expect(await codeOf(client(unsigned).get('io.github.carol/seeded'))).toBe(grpc.status.UNAUTHENTICATED);
    expect((await http(follower, '/v1/agents/io.github.carol/seeded', { token: 'not-a-jwt' })).status).toBe(401);
  });

  it('revokes a token on every node, and rotates the signing key on the live cluster', async () => {
    const victim = await mint('reader');
    for (const id of cluster.ids) expect(await codeOf(client(victim.token, [id]).get('io.github.carol/seeded'))).toBe(grpc.status.OK);
    const started = Date.now();
    await client(adminToken).revokeToken(victim.id);
    const refusedAt: Record<string, number> = {};
    await waitFor('every node refuses the revoked token', 5_000, async () => {
      for (const id of cluster.ids) {
        if (refusedAt[id] === undefined && (await codeOf(client(victim.token, [id]).get('io.github.carol/seeded'))) === grpc.status.UNAUTHENTICATED) refusedAt[id] = Date.now() - started;
      }
      return Object.keys(refusedAt).length === 3 ? true : undefined;
    }, 20);
    console.log(`[auth] revoked token refused after (ms since the revoke was sent): ${JSON.stringify(refusedAt)}`);

    const before = await mint('reader');
    const rotated = await client(adminToken).rotateSigningKey();
    const after = await mint('reader');
    for (const id of cluster.ids) {
      await waitFor(`${id} holds the new key`, 5_000, async () => ((await client(adminToken, [id]).authStatus()).signing_key_ids.includes(rotated.keyId) ? true : undefined));
      expect(await codeOf(client(before.token, [id]).get('io.github.carol/seeded'))).toBe(grpc.status.OK);
      expect(await codeOf(client(after.token, [id]).get('io.github.carol/seeded'))).toBe(grpc.status.OK);
    }
    // Retiring the earlier keys: tokens they signed (this one, and the bootstrap admin tokens) stop working.
    const newAdmin = await mint('admin');
    const retired = await client(newAdmin.token).rotateSigningKey(true);
    for (const id of cluster.ids) {
      await waitFor(`${id} retired the old keys`, 5_000, async () => ((await client(undefined, [id]).authStatus()).signing_key_ids.length === 1 ? true : undefined));
      expect(await codeOf(client(after.token, [id]).get('io.github.carol/seeded'))).toBe(grpc.status.UNAUTHENTICATED);
      // adminToken was signed by a retired key too.
      expect(await codeOf(client(adminToken, [id]).createToken({ role: 'reader' }))).toBe(grpc.status.UNAUTHENTICATED);
    }
    const fresh = await client(newAdmin.token).createToken({ role: 'reader' }).catch((e: unknown) => e);
    expect(fresh).toBeInstanceOf(RegistryError); // newAdmin too was signed by a retired key
    expect(retired.keyId).not.toBe(rotated.keyId);
  });
});

describe('signed agent cards', () => {
  let cluster: ProcessCluster;
  let admin: RegistryClient;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3, ['--auth', 'on', '--rate-limits', 'off']);
    await cluster.waitForLeader();
    admin = cluster.client(undefined, 10_000, await cluster.adminToken('n1'));
  }, 60_000);

  afterAll(async () => {
    admin?.close();
    await cluster?.destroy();
  });

  it('verifies a signed card against a trusted key and records why others fail', async () => {
    const trustedKey = await generateCardKey();
    const otherKey = await generateCardKey();
    await admin.trustCardKey(trustedKey.kid, JSON.stringify(trustedKey.publicJwk));
    // The sample card carries the specification's example signature (ES256): start unsigned.
    const { signatures: _example, ...card } = JSON.parse(A2A_V1_CARD) as Record<string, unknown>;
    const register = (id: string, doc: unknown) => admin.register({ ...spec(id), card: JSON.stringify(doc), cardFormat: 'a2aAgentCard' });

    const signed = await signCard(card, trustedKey.privateJwk);
    const ok = await register('io.github.x/signed', signed);
    expect(ok.agent.verifiedKeyId).toBe(trustedKey.kid);
    expect(ok.agent.signatureError).toBeUndefined();

    const tampered = { ...signed, description: `${String(signed.description)}!` };
    const bad = await register('io.github.x/tampered', tampered);
    expect(bad.agent.verifiedKeyId).toBeUndefined();
    expect(bad.agent.signatureError).toMatch(/verif/);

    const wrongKey = await register('io.github.x/wrong-key', await signCard(card, otherKey.privateJwk));
    expect(wrongKey.agent.signatureError).toMatch(/unknown key/);

    const hs = { ...card, signatures: [{ protected: Buffer.from(JSON.stringify({ alg: 'HS256', kid: trustedKey.kid })).toString('base64url'), signature: 'AAAA' }] };
    const unsupported = await register('io.github.x/hs256', hs);
    expect(unsupported.agent.signatureError).toMatch(/unsupported algorithm/);

    const plain = await register('io.github.x/unsigned', card);
    expect(plain.agent.verifiedKeyId).toBeUndefined();
    expect(plain.agent.signatureError).toBeUndefined();

    const verified = await admin.find({ capabilityPrefix: 'skill:', verifiedOnly: true });
    expect(verified.agents.map((a) => a.id)).toEqual(['io.github.x/signed']);
    const all = await admin.find({ capabilityPrefix: 'skill:' });
    expect(all.agents.length).toBe(5);
  });
});
