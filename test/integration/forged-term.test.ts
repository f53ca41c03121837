/**
 * On real processes: an outsider with nothing but network access to the peer port sends one
 * forged `Heartbeat` on `raft.v1.Raft/Stream`, claiming to come from the current leader with
 * term 2^53 - 2. No node may adopt it (a node at that term could never hold another election);
 * after the leader is SIGKILLed the others elect a new one and writes go on.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, waitFor } from '../../cluster/process-cluster.js';
import { logIndex, MAX_WIRE_TERM, nodeId, term, type Message } from '../../src/raft/types.js';
import { encodeBatch, RAFT_STREAM_METHOD_PATH } from '../../src/transport/codec.js';
import type { AgentSpec } from '../../src/registry/types.js';

const FORGED_TERM = 2 ** 53 - 2;

const spec = (id: string): AgentSpec => ({ id, name: id, kind: 'service', version: '1', description: '', capabilities: ['forged-term'], endpoints: {}, labels: {} });

/** Opens a peer stream to `address` as `claimedFrom` and writes `messages` in one batch. */
function sendOnPeerStream(address: string, claimedFrom: string, messages: Message[]): Promise<void> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('raft-from', claimedFrom);
  return new Promise<void>((resolve) => {
    const call = client.makeClientStreamRequest(
      RAFT_STREAM_METHOD_PATH,
      (b: Buffer) => b,
      (b: Buffer) => b,
      metadata,
      { deadline: Date.now() + 5_000 },
      () => {
        client.close();
        resolve();
      },
    );
    call.on('error', () => undefined);
    call.write(encodeBatch(messages));
    // Give the batch time to be read, then end the stream (its status is of no interest).
    setTimeout(() => call.end(), 500);
  });
}

describe('a forged huge term from the wire', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('is refused by every node, and the cluster elects a new leader once the old one is killed', async () => {
    const leader = await cluster.waitForLeader();
    const before = await cluster.statuses();
    const termBefore = Math.max(...before.map((s) => s.term));
    for (const id of cluster.ids) {
      const forged: Message = { type: 'Heartbeat', from: nodeId(leader), to: nodeId(id), term: term(FORGED_TERM), leaderCommit: logIndex(0), context: new Uint8Array() };
      await sendOnPeerStream(cluster.endpoints([id])[0] as string, leader, [forged]);
    }
    // Until every node either logged the refusal or took the forged term.
    const refused = (id: string): boolean => cluster.dumpLogs(2000).split(`--- ${id}`)[1]?.includes('refusing a message whose term is beyond the bound') === true;
    const after = await waitFor('every node handled the forged heartbeat', 10_000, async () => {
      const st = await cluster.statuses();
      return st.length === 3 && st.every((s) => refused(s.nodeId) || s.term >= MAX_WIRE_TERM) ? st : undefined;
    });
    for (const s of after) expect(s.term, `${s.nodeId}'s term`).toBeLessThan(MAX_WIRE_TERM);

    const client = cluster.client();
    try {
      await client.register(spec('before-kill'));
      await cluster.kill(leader);
      const survivors = cluster.ids.filter((id) => id !== leader);
      const next = await cluster.waitForLeader(survivors, 30_000);
      expect(next).not.toBe(leader);
      const st = await cluster.statuses(survivors);
      for (const s of st) {
        expect(s.term).toBeGreaterThan(termBefore);
        expect(s.term).toBeLessThan(MAX_WIRE_TERM);
      }
      const res = await client.register(spec('after-kill'));
      expect(res.revision).toBeGreaterThan(0);
      expect((await client.get('before-kill')).agent.id).toBe('before-kill');
    } finally {
      client.close();
    }
  }, 90_000);
});
