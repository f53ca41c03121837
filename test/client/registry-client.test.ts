import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest';
import { status } from '@grpc/grpc-js';
import { RegistryClient, RegistryError } from '../../src/client/index.js';
import type { AgentSpec } from '../../src/registry/types.js';
import { ValidationError } from '../../src/registry/validation.js';
import { closedAddress, startFakeRegistry, type FakeRegistry } from './fake-registry.js';

const spec = (id: string, patch: Partial<AgentSpec> = {}): AgentSpec => ({
  id,
  name: `Agent ${id}`,
  kind: 'service',
  version: '1.0.0',
  description: '',
  capabilities: ['search'],
  endpoints: { grpc: '10.0.0.1:50051' },
  labels: { env: 'prod' },
  ...patch,
});

/** The RegistryError a promise rejects with. */
async function registryError(p: Promise<unknown>): Promise<RegistryError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RegistryError) return e;
    throw e;
  }
  throw new Error('expected a RegistryError, the call succeeded');
}

describe('RegistryClient', () => {
  let a: FakeRegistry;
  let b: FakeRegistry;
  let dead: string;
  const clients: RegistryClient[] = [];
  const client = (endpoints: string[], options: { deadlineMs?: number; readAttemptMs?: number } = {}): RegistryClient => {
    const c = new RegistryClient({ endpoints, ...options });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    [a, b, dead] = await Promise.all([startFakeRegistry('n1'), startFakeRegistry('n2'), closedAddress()]);
  });
  afterAll(async () => {
    await Promise.all([a.stop(), b.stop()]);
  });
  beforeEach(() => {
    for (const f of [a, b]) {
      f.agents.clear();
      f.calls.clear();
      f.consistencies.length = 0;
      f.inject.length = 0;
      f.always = undefined;
    }
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  it('registers, reads and deregisters an agent', async () => {
    const c = client([a.address]);
    const reg = await c.register(spec('svc-1', { capabilities: ['b', 'a', 'b'] }));
    expect(reg.agent.capabilities).toEqual(['a', 'b']);
    expect(reg.agent.createRevision).toBe(reg.revision);
    const got = await c.get('svc-1');
    expect(got.agent).toEqual(reg.agent);
    expect(await c.deregister('svc-1')).toEqual({ deleted: true, revision: reg.revision + 1 });
    expect(await c.deregister('svc-1')).toEqual({ deleted: false, revision: reg.revision + 2 });
  });

  it('fails over from a closed port to the working endpoint and then remembers it', async () => {
    const c = client([dead, a.address]);
    await c.register(spec('svc-1'));
    expect(a.agents.has('svc-1')).toBe(true);
    expect((await c.get('svc-1')).agent.id).toBe('svc-1');
    expect((await c.find({})).agents.map((x) => x.id)).toEqual(['svc-1']);
    expect(a.calls.get('Register')).toBe(1);
    expect(a.calls.get('Get')).toBe(1);
  });

  it('moves to the next endpoint on UNAVAILABLE, for writes too', async () => {
    a.always = { code: status.UNAVAILABLE, details: 'no leader' };
    const c = client([a.address, b.address]);
    await c.register(spec('svc-1'));
    expect(a.calls.get('Register')).toBe(1);
    expect(b.agents.has('svc-1')).toBe(true);
    await c.deregister('svc-1');
    expect(a.calls.get('Deregister')).toBeUndefined(); // the last endpoint that answered goes first
    expect(b.agents.has('svc-1')).toBe(false);
  });

  it('retries the same endpoints after a back-off until one answers', async () => {
    a.inject.push({ code: status.UNAVAILABLE, details: 'electing' }, { code: status.UNAVAILABLE, details: 'electing' });
    const c = client([a.address]);
    const res = await c.register(spec('svc-1'));
    expect(res.agent.id).toBe('svc-1');
    expect(a.calls.get('Register')).toBe(3);
  });

  it('surfaces other status codes at once as RegistryError with code and details', async () => {
    a.inject.push({ code: status.FAILED_PRECONDITION, details: 'not today' });
    const c = client([a.address, b.address]);
    const err = await registryError(c.register(spec('svc-1')));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.codeName).toBe('FAILED_PRECONDITION');
    expect(err.details).toBe('not today');
    expect(err.endpoint).toBe(a.address);
    expect(b.calls.get('Register')).toBeUndefined();

    const missing = await registryError(c.get('nobody'));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(missing.details).toContain('nobody');
  });

  it('gives INVALID_ARGUMENT naming the field before sending a bad request', async () => {
    const c = client([a.address]);
    const err = await registryError(c.register(spec('svc-1', { capabilities: ['ok', ''] })));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^agent\.capabilities\[1\] must not be empty/);
    expect((await registryError(c.get('bad id'))).details).toMatch(/^id must only contain/);
    expect((await registryError(c.find({ pageSize: -1 }))).details).toMatch(/^query\.pageSize/);
    expect(a.calls.size).toBe(0);
  });

  it('passes the server\'s INVALID_ARGUMENT through', async () => {
    const c = client([a.address]);
    const err = await registryError(c.find({ pageSize: 1000 }));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toContain('page_size');
  });

  it('sends the read consistency', async () => {
    const c = client([a.address]);
    await c.register(spec('svc-1'));
    await c.get('svc-1');
    await c.get('svc-1', { consistency: 'serializable' });
    await c.find({}, { consistency: 'serializable' });
    expect(a.consistencies).toEqual(['linearizable', 'serializable', 'serializable']);
  });

  it('pages through find results with findAll, with filters', async () => {
    const c = client([a.address]);
    const ids = Array.from({ length: 25 }, (_, i) => `svc-${String(i).padStart(2, '0')}`);
    for (const [i, id] of ids.entries()) {
      await c.register(spec(id, { capabilities: i % 2 === 0 ? ['even'] : ['odd'], labels: { tier: i < 10 ? 'a' : 'b' } }));
    }
    const pages = [];
    for await (const page of c.findAll({ pageSize: 4 })) pages.push(page);
    expect(pages.map((p) => p.agents.length)).toEqual([4, 4, 4, 4, 4, 4, 1]);
    expect(pages.flatMap((p) => p.agents.map((x) => x.id))).toEqual(ids);
    expect(pages.at(-1)?.nextPageToken).toBe('');

    const even: string[] = [];
    for await (const page of c.findAll({ capability: 'even', labels: { tier: 'b' }, pageSize: 3 })) {
      even.push(...page.agents.map((x) => x.id));
    }
    expect(even).toEqual(ids.filter((_, i) => i % 2 === 0 && i >= 10));

    const first = await c.find({ pageSize: 10 });
    expect(first.agents).toHaveLength(10);
    expect(first.nextPageToken).not.toBe('');
  });

  it('reports UNAVAILABLE once the deadline passes with every endpoint down', async () => {
    const other = await closedAddress();
    const c = client([dead, other], { deadlineMs: 400 });
    const err = await registryError(c.get('svc-1'));
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.details).toContain(dead);
  });

  it('moves a read past an endpoint that does not answer in time, but not a write', async () => {
    a.always = 'hang';
    await client([b.address]).register(spec('svc-1'));
    const c = client([a.address, b.address], { deadlineMs: 2_000, readAttemptMs: 200 });
    expect((await c.get('svc-1')).agent.id).toBe('svc-1');
    expect(a.calls.get('Get')).toBe(1);

    const w = client([a.address, b.address], { deadlineMs: 300 });
    const err = await registryError(w.register(spec('svc-2')));
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    expect(b.agents.has('svc-2')).toBe(false);
  });

  it('reports the status of every endpoint, with errors per endpoint', async () => {
    const c = client([a.address, dead, b.address]);
    const all = await c.statusAll();
    expect(all.map((s) => s.endpoint)).toEqual([a.address, dead, b.address]);
    expect(all[0]?.status).toMatchObject({ nodeId: 'n1', leaderId: 'n1', role: 'leader', term: 2 });
    expect(all[1]?.error?.code).toBe(status.UNAVAILABLE);
    expect(all[2]?.status?.nodeId).toBe('n2');
    expect((await c.status(b.address)).nodeId).toBe('n2');
    expect((await client([dead, b.address]).status()).nodeId).toBe('n2');
  });

  it('refuses bad options and calls after close', async () => {
    expect(() => new RegistryClient({ endpoints: [] })).toThrow(ValidationError);
    expect(() => new RegistryClient({ endpoints: ['a:1', ''] })).toThrow(/endpoints\[1\]/);
    expect(() => new RegistryClient({ endpoints: ['a:1'], deadlineMs: 0 })).toThrow(/deadlineMs/);
    const c = client([a.address]);
    c.close();
    expect((await registryError(c.get('svc-1'))).code).toBe(status.CANCELLED);
  });
});
