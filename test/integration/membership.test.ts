/**
 * Online membership changes on real processes (thesis §4.1, one server at a time): a running
 * 3-node cluster grows to 5 and shrinks back to 3 while a client writes continuously, with no
 * failed write; a node whose data dir is wiped is removed and re-added and catches up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, waitFor } from '../../cluster/process-cluster.js';
import type { RegistryClient } from '../../src/client/index.js';
import type { AgentSpec } from '../../src/registry/types.js';

const spec = (id: string): AgentSpec => ({ id, name: id, kind: 'service', version: '1', description: '', capabilities: ['membership'], endpoints: {}, labels: {} });

/** Writes until stopped (bounded by `max`), recording every failure. */
function writer(client: RegistryClient, max: number) {
  let stop = false;
  let written = 0;
  const failures: string[] = [];
  const done = Promise.all(
    Array.from({ length: 4 }, async (_, lane) => {
      for (let i = 0; !stop && written < max; i++) {
        const id = `m-${lane}-${i}`;
        try {
          await client.register(spec(id));
          written++;
        } catch (e) {
          failures.push(`${id}: ${String(e)}`);
        }
      }
    }),
  );
  return {
    stop: async () => {
      stop = true;
      await done;
      return { written, failures };
    },
  };
}

async function countAll(client: RegistryClient, consistency: 'linearizable' | 'serializable'): Promise<number> {
  let n = 0;
  for await (const page of client.findAll({ capability: 'membership', pageSize: 1000 }, { consistency })) n += page.agents.length;
  return n;
}

describe('online membership changes', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('grows 3 -> 5 and shrinks 5 -> 3 while a client writes, with no failed write', async () => {
    const client = cluster.client(['n1', 'n2', 'n3'], 30_000);
    const w = writer(client, 20_000);
    const admin = cluster.client(['n1', 'n2', 'n3'], 60_000);
    for (const id of ['n4', 'n5']) {
      const address = await cluster.addSlot(id);
      cluster.startNode(id, true);
      // n5 is added as a learner first: the second AddMember resumes from there, as a client's
      // retry after a failed promotion does, and promotes it.
      if (id === 'n5') expect((await admin.addMember(id, address, true)).members.find((m) => m.id === id)?.voter).toBe(false);
      const res = await admin.addMember(id, address);
      expect(res.members.find((m) => m.id === id)?.voter).toBe(true);
    }
    // A retried AddMember is answered, not refused; the id at another address is refused.
    const again = await admin.addMember('n4', cluster.addresses.get('n4') as string);
    expect(again.members.find((m) => m.id === 'n4')?.voter).toBe(true);
    await expect(admin.addMember('n4', '127.0.0.1:1')).rejects.toThrow(/ALREADY_EXISTS.*n4.*already exists at/);
    const leaderNow = await cluster.waitForLeader(['n1', 'n2', 'n3', 'n4', 'n5']);
    const five = await admin.status(cluster.addresses.get(leaderNow));
    expect(five.members.filter((m) => m.voter).map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3', 'n4', 'n5']);
    for (const id of ['n4', 'n5']) {
      const res = await admin.removeMember(id);
      expect(res.members.map((m) => m.id)).not.toContain(id);
    }
    const { written, failures } = await w.stop();
    expect(failures).toEqual([]);
    expect(written).toBeGreaterThan(0);
    const three = await admin.status(cluster.addresses.get(await cluster.waitForLeader(['n1', 'n2', 'n3'])));
    expect(three.members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(await countAll(admin, 'linearizable')).toBe(written);
    for (const id of ['n4', 'n5']) await cluster.kill(id, 'SIGTERM');
    client.close();
    admin.close();
  }, 180_000);

  it('a node whose data dir is wiped is removed, re-added empty, and catches up', async () => {
    const leader = await cluster.waitForLeader(['n1', 'n2', 'n3']);
    const victim = ['n1', 'n2', 'n3'].find((id) => id !== leader) as string;
    const admin = cluster.client(['n1', 'n2', 'n3'].filter((id) => id !== victim), 60_000);
    const before = await countAll(admin, 'linearizable');
    await cluster.kill(victim, 'SIGKILL');
    cluster.wipe(victim);
    await admin.removeMember(victim);
    cluster.startNode(victim, true);
    await admin.addMember(victim, cluster.addresses.get(victim) as string);
    const onVictim = cluster.client([victim]);
    const n = await waitFor('the re-added node to catch up', 30_000, async () => {
      const c = await countAll(onVictim, 'serializable').catch(() => -1);
      return c === before ? c : undefined;
    }, 250).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${cluster.dumpLogs(15)}`);
    });
    expect(n).toBe(before);
    onVictim.close();
    admin.close();
  }, 180_000);

  it('removing the leader hands leadership to a remaining voter, and writes go on', async () => {
    const members = ['n1', 'n2', 'n3'];
    const leader = await cluster.waitForLeader(members);
    const rest = members.filter((id) => id !== leader);
    const admin = cluster.client(members, 60_000);
    const res = await admin.removeMember(leader);
    expect(res.members.map((m) => m.id).sort()).toEqual([...rest].sort());
    const next = await cluster.waitForLeader(rest, 20_000);
    expect(rest).toContain(next);
    const client = cluster.client(rest);
    const w = await client.register(spec('after-leader-removal'));
    expect(w.revision).toBeGreaterThan(res.revision);
    client.close();
    admin.close();
  }, 120_000);
});
