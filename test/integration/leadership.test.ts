/**
 * On real processes: leadership transfer (thesis §3.10) through the CLI while a client writes,
 * with no write lost, and exactly-once retries (thesis §6.3) through different nodes.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, REGISTRY_BIN, runBinary } from '../../cluster/process-cluster.js';
import { RegistryService, specToWire, type RegisterRequest, type RegisterResponse } from '../../src/api/registry-proto.js';
import type { AgentSpec } from '../../src/registry/types.js';

const spec = (id: string): AgentSpec => ({ id, name: id, kind: 'service', version: '1', description: '', capabilities: ['load'], endpoints: {}, labels: {} });

const cli = (args: string[]) => runBinary(REGISTRY_BIN, args);

function rawRegister(address: string, req: RegisterRequest): Promise<RegisterResponse> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<RegisterResponse>((resolve, reject) => {
    client.makeUnaryRequest(
      RegistryService.Register.path,
      RegistryService.Register.requestSerialize,
      RegistryService.Register.responseDeserialize,
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => (err || !res ? reject(err) : resolve(res)),
    );
  }).finally(() => client.close());
}

describe('leadership transfer and exactly-once writes on a 3-node cluster', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('`registry leader transfer` moves leadership while a client writes, and no write is lost', async () => {
    const leader = await cluster.waitForLeader();
    const target = cluster.ids.find((id) => id !== leader) as string;
    const via = cluster.ids.find((id) => id !== target) as string;
    const client = cluster.client();
    const total = 400;
    let next = 0;
    const failures: string[] = [];
    const writer = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < total) {
          const i = next++;
          try {
            await client.register(spec(`t-${i}`));
          } catch (e) {
            failures.push(`t-${i}: ${String(e)}`);
          }
        }
      }),
    );
    // Let some writes flow, then transfer in the middle of them.
    while (next < 50) await new Promise((r) => setTimeout(r, 5));
    const res = await cli(['--endpoints', cluster.endpoints([via]).join(','), 'leader', 'transfer', target]);
    await writer;
    expect(res.code, res.out).toBe(0);
    expect(res.out).toContain(`leader is now ${target}`);
    expect(next).toBeGreaterThanOrEqual(total);
    expect(failures).toEqual([]);
    expect(await cluster.waitForLeader()).toBe(target);
    const ids: string[] = [];
    for await (const page of client.findAll({ capability: 'load', pageSize: 500 })) ids.push(...page.agents.map((a) => a.id));
    expect(ids).toHaveLength(total);
    client.close();
  }, 60_000);

  it('a write retried with the same client id and sequence through another node is applied once', async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader) as string;
    const req: RegisterRequest = { agent: specToWire(spec('once')), client_id: 'it-client', sequence: 1 };
    const first = await rawRegister(cluster.addresses.get(leader) as string, req);
    const retry = await rawRegister(cluster.addresses.get(follower) as string, req);
    expect(Number(retry.revision)).toBe(Number(first.revision));
    const client = cluster.client();
    const stored = await client.get('once');
    expect(stored.agent.modRevision).toBe(Number(first.revision));
    // A new sequence number is a new write.
    const again = await rawRegister(cluster.addresses.get(follower) as string, { ...req, sequence: 2 });
    expect(Number(again.revision)).toBeGreaterThan(Number(first.revision));
    client.close();
  }, 60_000);

  it('an unknown transfer target is refused with INVALID_ARGUMENT naming target_id', async () => {
    const res = await cli(['--endpoints', cluster.endpoints().join(','), 'leader', 'transfer', 'n9']);
    expect(res.code).not.toBe(0);
    expect(res.out).toMatch(/INVALID_ARGUMENT.*target_id/);
  }, 30_000);
});
