/**
 * A leader paused (SIGSTOP) while the others elect a new leader and take a write must not
 * answer a linearizable read with stale data once it resumes (etcd issue 20418): ReadIndex makes
 * it confirm its leadership with a heartbeat round first, which fails, so it answers UNAVAILABLE
 * and the client reads elsewhere. Serializable reads from it may be stale, as documented.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../../cluster/process-cluster.js';
import { RegistryService, type GetResponse } from '../../src/api/registry-proto.js';
import type { AgentSpec } from '../../src/registry/types.js';

const spec = (version: string): AgentSpec => ({ id: 'paused', name: 'paused', kind: 'service', version, description: '', capabilities: [], endpoints: {}, labels: {} });

/** One Get on one node, no retries: its answer or its status code. */
function getOnce(address: string, consistency: 'CONSISTENCY_LINEARIZABLE' | 'CONSISTENCY_SERIALIZABLE'): Promise<{ version?: string; code?: number }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<{ version?: string; code?: number }>((resolve) => {
    client.makeUnaryRequest(
      RegistryService.Get.path,
      RegistryService.Get.requestSerialize,
      RegistryService.Get.responseDeserialize,
      { id: 'paused', consistency },
      new grpc.Metadata(),
      { deadline: Date.now() + 5_000 },
      (err, res?: GetResponse) => resolve(err ? { code: err.code } : { version: res?.agent?.version ?? '' }),
    );
  }).finally(() => client.close());
}

describe('a paused and resumed leader', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    for (const p of cluster?.procs.values() ?? []) p.kill('SIGCONT');
    await cluster?.destroy();
  });

  it('never answers a linearizable read with data older than a write the new leader acknowledged', async () => {
    const old = await cluster.waitForLeader();
    const client = cluster.client();
    await client.register(spec('v1'));
    const proc = cluster.procs.get(old);
    proc?.kill('SIGSTOP');
    try {
      const rest = cluster.ids.filter((id) => id !== old);
      await cluster.waitForLeader(rest, 20_000);
      const others = cluster.client(rest);
      await others.register(spec('v2'));
      others.close();
    } finally {
      proc?.kill('SIGCONT');
    }
    // Right after it resumes, the old leader still believes it leads.
    const address = cluster.addresses.get(old) as string;
    const lin = await getOnce(address, 'CONSISTENCY_LINEARIZABLE');
    if (lin.code === undefined) expect(lin.version).toBe('v2');
    else expect(lin.code).toBe(grpc.status.UNAVAILABLE);
    // Once it has caught up it serves the new value.
    const client2 = cluster.client([old]);
    const later = await client2.get('paused');
    expect(later.agent.version).toBe('v2');
    client2.close();
    client.close();
  }, 60_000);
});
