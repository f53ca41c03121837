/**
 * Leases, heartbeats, watch and compare-and-set on real processes: an agent heartbeating through
 * a follower survives a SIGKILL of the leader; once it stops, it is gone from every node within
 * its TTL plus an election timeout, and watchers see the expiry; watch streams equal the applied
 * history through a restart with resume; concurrent conditional writers: one wins per revision.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, waitFor } from '../../cluster/process-cluster.js';
import { RegistryError, type ClientWatchEvent, type RegistryClient } from '../../src/client/index.js';
import type { AgentSpec } from '../../src/registry/types.js';

const TTL_SECONDS = 5;
/** The election timeout of the nodes, at most (10-20 ticks of 100 ms). */
const MAX_ELECTION_TIMEOUT_MS = 2_000;

const spec = (id: string, capabilities = ['leased']): AgentSpec => ({ id, name: id, kind: 'service', version: '1', description: '', capabilities, endpoints: {}, labels: {} });

async function collect(
  client: RegistryClient,
  filter: { idPrefix?: string },
  from: number,
  n: number,
  timeoutMs: number,
  until: (e: ClientWatchEvent) => boolean = () => false,
): Promise<ClientWatchEvent[]> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), timeoutMs);
  const out: ClientWatchEvent[] = [];
  try {
    for await (const e of client.watch(filter, from, ac.signal)) {
      out.push(e);
      if (out.length >= n || until(e)) break;
    }
  } finally {
    clearTimeout(t);
  }
  return out;
}

describe('leases, heartbeats, watch and compare-and-set', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('an agent heartbeating through a follower survives a leader SIGKILL; once it stops it expires on every node within TTL + an election timeout', async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const viaFollower = cluster.client([follower]);
    await viaFollower.register(spec('leased-1'), { ttlSeconds: TTL_SECONDS });
    const watcher = cluster.client([follower]);
    const deletion = collect(watcher, { idPrefix: 'leased-1' }, 0, 1_000, 60_000, (e) => e.type === 'delete');

    let beating = true;
    let lastBeat = 0;
    const beats = (async () => {
      while (beating) {
        try {
          await viaFollower.heartbeat('leased-1', 'serving');
          lastBeat = performance.now();
        } catch {
          // A heartbeat during the election may fail; the next one goes through.
        }
        await new Promise((r) => setTimeout(r, 1_000));
      }
    })();
    await cluster.kill(leader, 'SIGKILL');
    await cluster.waitForLeader(cluster.ids.filter((id) => id !== leader));
    // Well past the TTL since the kill: still registered, because heartbeats went on.
    await new Promise((r) => setTimeout(r, (TTL_SECONDS + 3) * 1000));
    const alive = await viaFollower.get('leased-1');
    expect(alive.agent.id).toBe('leased-1');
    expect(alive.agent.health).toBe('serving');

    beating = false;
    await beats;
    const stoppedAt = lastBeat;
    const up = cluster.ids.filter((id) => id !== leader);
    for (const id of up) {
      const c = cluster.client([id]);
      await waitFor(`leased-1 to disappear from ${id}`, (TTL_SECONDS * 1000 + MAX_ELECTION_TIMEOUT_MS) * 2, async () => {
        try {
          await c.get('leased-1', { consistency: 'serializable' });
          return undefined;
        } catch (e) {
          return e instanceof RegistryError && e.codeName === 'NOT_FOUND' ? true : undefined;
        }
      }, 50);
      c.close();
    }
    const goneAfterMs = performance.now() - stoppedAt;
    expect(goneAfterMs).toBeGreaterThanOrEqual(TTL_SECONDS * 1000 - 1_000);
    const events = await deletion;
    const ev = events[events.length - 1];
    // The health change arrived as a PUT; the expiry as the one DELETE.
    expect(events.filter((e) => e.type === 'delete')).toHaveLength(1);
    expect(ev).toMatchObject({ type: 'delete', expired: true });
    expect(ev?.agent.id).toBe('leased-1');
    // Heartbeat of the expired agent: NOT_FOUND, so it knows to register again.
    await expect(viaFollower.heartbeat('leased-1')).rejects.toMatchObject({ codeName: 'NOT_FOUND' });
    cluster.startNode(leader);
    await cluster.waitForLeader().catch((e: unknown) => {
      throw new Error(`${String(e)}\n${cluster.dumpLogs(20)}`);
    });
    viaFollower.close();
    watcher.close();
  }, 120_000);

  it('a watch from a follower equals the applied history, and a stream resumed after a restart misses nothing', async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const writer = cluster.client([leader]);
    const first = await writer.register(spec('w-0', ['watched']));
    for (let i = 1; i < 20; i++) await writer.register(spec(`w-${i}`, ['watched']));
    await writer.deregister('w-3');
    const onFollower = cluster.client([follower]);
    const seen = await collect(onFollower, { idPrefix: 'w-' }, first.revision, 21, 20_000);
    expect(seen.map((e) => `${e.type}:${e.agent.id}`)).toEqual([...Array.from({ length: 20 }, (_, i) => `put:w-${i}`), 'delete:w-3']);
    const revisions = seen.map((e) => e.revision);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(new Set(revisions).size).toBe(revisions.length);

    // Restart the follower, write more, resume from the last revision seen plus one.
    await cluster.kill(follower, 'SIGTERM');
    for (let i = 20; i < 30; i++) await writer.register(spec(`w-${i}`, ['watched']));
    cluster.startNode(follower);
    // The resume is what is tested, not how long the client retries a node that is still
    // starting (on a loaded machine a start outlasts the watch's retry rounds).
    await cluster.waitServing(follower);
    const resumed = await collect(onFollower, { idPrefix: 'w-' }, (revisions[revisions.length - 1] as number) + 1, 10, 30_000);
    expect(resumed.map((e) => e.agent.id)).toEqual(Array.from({ length: 10 }, (_, i) => `w-${20 + i}`));
    writer.close();
    onFollower.close();
  }, 90_000);

  it('concurrent conditional writers: exactly one wins per revision', async () => {
    const client = cluster.client();
    const base = await client.register(spec('cas-1'));
    let revision = base.revision;
    for (let round = 0; round < 5; round++) {
      const writers = Array.from({ length: 8 }, () => cluster.client());
      const outcomes = await Promise.allSettled(writers.map((w, i) => w.register({ ...spec('cas-1'), version: `r${round}-w${i}` }, { expectedRevision: revision })));
      writers.forEach((w) => w.close());
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const o of outcomes) {
        if (o.status === 'rejected') expect(o.reason).toMatchObject({ codeName: 'FAILED_PRECONDITION' });
      }
      revision = (won[0] as PromiseFulfilledResult<{ revision: number }>).value.revision;
    }
    await expect(client.register(spec('cas-1'), { createOnly: true })).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
    await expect(client.deregister('cas-1', { expectedRevision: revision - 1 })).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
    expect((await client.deregister('cas-1', { expectedRevision: revision })).deleted).toBe(true);
    client.close();
  }, 60_000);
});
