/**
 * Rate limits on real processes (`--auth on` with small write and read limits): a flood from one
 * principal is answered RESOURCE_EXHAUSTED / 429 with when to retry, while another principal's
 * heartbeats keep its lease alive throughout; and `--require-signed-cards` on a one-node
 * cluster refuses unsigned cards.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../../cluster/process-cluster.js';
import { RegistryError } from '../../src/client/errors.js';
import type { RegistryClient } from '../../src/client/registry-client.js';
import type { AgentSpec } from '../../src/registry/types.js';

const spec = (id: string): AgentSpec => ({ id, name: id, kind: 'service', version: '1', description: '', capabilities: ['flood'], endpoints: {}, labels: {} });
/** How long the flood runs, in ms (bounded in time and in count). */
const FLOOD_MS = 8_000;
/** Most requests the flood sends. */
const FLOOD_MAX_REQUESTS = 20_000;
/** The well-behaved agent's lease, in seconds, and how often it renews it, in ms. */
const LEASE_TTL_SECONDS = 5;
const RENEW_EVERY_MS = 1_000;

describe('rate limits', () => {
  let cluster: ProcessCluster;
  const clients: RegistryClient[] = [];

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3, ['--auth', 'on', '--rate-limit-write', '20/s:burst=20', '--rate-limit-read', '50/s:burst=50', '--rate-limit-address-read', '100/s:burst=100']);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await cluster?.destroy();
  });

  it('refuse a flooding principal with RESOURCE_EXHAUSTED / 429 and keep another principal\'s lease alive', async () => {
    const admin = cluster.client(undefined, 10_000, await cluster.adminToken('n1'));
    clients.push(admin);
    const alice = cluster.client(undefined, 10_000, (await admin.createToken({ role: 'writer', namespaces: ['io.github.alice'], name: 'alice' })).token);
    const bobToken = (await admin.createToken({ role: 'writer', namespaces: ['io.github.bob'], name: 'bob' })).token;
    clients.push(alice);

    await alice.register(spec('io.github.alice/steady'), { ttlSeconds: LEASE_TTL_SECONDS });
    const heartbeatErrors: string[] = [];
    let renewals = 0;
    const until = Date.now() + FLOOD_MS;
    const keeper = (async () => {
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, RENEW_EVERY_MS));
        try {
          await alice.heartbeat('io.github.alice/steady');
          renewals++;
        } catch (e) {
          heartbeatErrors.push(String(e));
        }
      }
    })();

    // The flood: bob's writes and finds from 8 loops over every node, gRPC and HTTP (loop 0: HTTP registers).
    const counts = { ok: 0, exhausted: 0, other: [] as string[], http429: 0, retryAfter: new Set<string>() };
    let sent = 0;
    const bobs = cluster.ids.map((id) => {
      const c = cluster.client([id], 10_000, bobToken);
      clients.push(c);
      return c;
    });
    const flood = Array.from({ length: 8 }, async (_, loop) => {
      for (let i = 0; Date.now() < until && sent < FLOOD_MAX_REQUESTS; i++) {
        sent++;
        const c = bobs[(loop + i) % bobs.length] as RegistryClient;
        try {
          if (loop === 0) {
            const res = await fetch(`${cluster.httpUrl(cluster.ids[i % 3] as string)}/v1/agents`, {
              method: 'POST',
              headers: { authorization: `Bearer ${bobToken}`, 'content-type': 'application/json' },
              body: JSON.stringify({ agent: spec(`io.github.bob/flood-http-${i}`) }),
            });
            if (res.status === 429) {
              counts.http429++;
              counts.retryAfter.add(res.headers.get('retry-after') ?? '');
            } else if (res.status !== 200) counts.other.push(`http ${res.status}`);
            else counts.ok++;
            await res.arrayBuffer();
          } else if (i % 2 === 0) {
            await c.register(spec(`io.github.bob/flood-${loop}-${i}`));
            counts.ok++;
          } else {
            await c.find({ capability: 'flood' });
            counts.ok++;
          }
        } catch (e) {
          if (e instanceof RegistryError && e.code === grpc.status.RESOURCE_EXHAUSTED) {
            counts.exhausted++;
            expect(e.message).toMatch(/retry after \d+ ms/);
          } else counts.other.push(String(e));
        }
      }
    });
    await Promise.all([...flood, keeper]);
    console.log(`[rate-limits] flood: ${sent} requests, ${counts.ok} served, ${counts.exhausted} RESOURCE_EXHAUSTED, ${counts.http429} HTTP 429; alice renewed ${renewals} times, ${heartbeatErrors.length} heartbeat errors`);

    expect(counts.other).toEqual([]);
    expect(counts.exhausted).toBeGreaterThan(0);
    expect(counts.http429).toBeGreaterThan(0);
    for (const v of counts.retryAfter) expect(Number(v)).toBeGreaterThanOrEqual(1);
    expect(heartbeatErrors).toEqual([]);
    expect(renewals).toBeGreaterThan(0);
    const steady = await alice.get('io.github.alice/steady');
    expect(steady.agent.ttlSeconds).toBe(LEASE_TTL_SECONDS);
    // The writes that got through stay within the limit: 3 nodes x (burst + rate x time), and
    // bob's writes reach the leader forwarded, where his principal is charged again.
    const bobWrites = (await admin.find({ namePrefix: 'io.github.bob/flood-', pageSize: 1000 })).agents.length;
    expect(bobWrites).toBeLessThanOrEqual(3 * (20 + 20 * Math.ceil(FLOOD_MS / 1000 + 1)));
  }, 60_000);
});

describe('rate limits on refused tokens', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    // A window of a minute (20 per 60 s): the test ends well within it, however slow the machine.
    cluster = await ProcessCluster.start(1, ['--auth', 'on', '--rate-limit-address-read', '20/m:burst=20']);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('charge a flood of bad tokens to its address: past the limit it is RESOURCE_EXHAUSTED, not another signature check', async () => {
    const codes = new Map<number, number>();
    const bad = cluster.client(undefined, 10_000, 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtIn0.AAAA');
    try {
      for (let i = 0; i < 50; i++) {
        const code = await bad.get('io.github.x/y').then(() => grpc.status.OK, (e: unknown) => (e instanceof RegistryError ? e.code : -1));
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    } finally {
      bad.close();
    }
    expect(codes.get(grpc.status.UNAUTHENTICATED) ?? 0).toBeGreaterThan(0);
    expect(codes.get(grpc.status.UNAUTHENTICATED) ?? 0).toBeLessThanOrEqual(20);
    expect(codes.get(grpc.status.RESOURCE_EXHAUSTED) ?? 0).toBeGreaterThan(0);
    expect([...codes.keys()].sort()).toEqual([grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNAUTHENTICATED].sort());
  });
});

describe('--require-signed-cards', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(1, ['--auth', 'on', '--require-signed-cards']);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('refuses a register without a verified card, naming the field', async () => {
    const admin = cluster.client(undefined, 10_000, await cluster.adminToken('n1'));
    try {
      const err = (await admin.register(spec('io.github.x/plain')).catch((e: unknown) => e)) as RegistryError;
      expect(err).toBeInstanceOf(RegistryError);
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.message).toContain('agent.card');
      expect((await admin.get('io.github.x/plain').catch((e: unknown) => e)) as RegistryError).toHaveProperty('code', grpc.status.NOT_FOUND);
    } finally {
      admin.close();
    }
  });
});
