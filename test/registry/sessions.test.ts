/**
 * Exactly-once writes (Raft thesis §6.3): a write retried with the same client id and sequence
 * number is applied once and answered with its first result, across batches, within one batch,
 * and across a restart of the state machine.
 */
import { describe, expect, it } from 'vitest';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { decodeCommand, encodeCommand } from '../../src/registry/commands.js';
import { sessionKey } from '../../src/registry/keys.js';
import { RegistryStateMachine, SESSION_WINDOW_SEQUENCES } from '../../src/registry/state-machine.js';
import type { AgentSpec, ClientSession, Command } from '../../src/registry/types.js';
import { validateSession, ValidationError } from '../../src/registry/validation.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { NodeStore } from '../../src/storage/types.js';

const spec = (id: string, version = '1'): AgentSpec => ({ id, name: id, kind: 'service', version, description: '', capabilities: ['x'], endpoints: {}, labels: {} });
const entry = (index: number, cmd: Command): Entry => ({ index: logIndex(index), term: term(1), type: 'normal', data: encodeCommand(cmd) });
const reg = (index: number, agent: AgentSpec, session?: ClientSession) =>
  entry(index, { type: 'register', requestId: `r${index}`, agent, ...(session ? { session } : {}) });
const dereg = (index: number, id: string, session?: ClientSession) =>
  entry(index, { type: 'deregister', requestId: `r${index}`, id, ...(session ? { session } : {}) });

async function apply(sm: RegistryStateMachine, store: NodeStore, entries: Entry[]) {
  const batch = store.batch();
  const results = await sm.applyEntries(entries, batch);
  await batch.write();
  sm.commitApplied(batch);
  return results;
}

async function open(store: NodeStore): Promise<RegistryStateMachine> {
  const sm = new RegistryStateMachine(store);
  await sm.open();
  return sm;
}

describe('exactly-once writes (thesis §6.3)', () => {
  const s1: ClientSession = { clientId: 'client-a', sequence: 1 };

  it('a register retried in a later batch is not applied again and answers the first revision', async () => {
    const store = new MemoryStore();
    const sm = await open(store);
    const first = await apply(sm, store, [reg(1, spec('a', 'v1'), s1)]);
    // Someone else changes the agent; then the retry of the first write arrives.
    await apply(sm, store, [reg(2, spec('a', 'v2'))]);
    const retry = await apply(sm, store, [reg(3, spec('a', 'v1'), s1)]);
    expect(first.get(1)).toMatchObject({ type: 'register', revision: 1 });
    expect(retry.get(3)).toMatchObject({ type: 'register', revision: 1, duplicate: true });
    const stored = await sm.get('a');
    expect(stored?.version).toBe('v2');
    expect(stored?.modRevision).toBe(2);
  });

  it('a duplicate within one batch is applied once', async () => {
    const store = new MemoryStore();
    const sm = await open(store);
    const results = await apply(sm, store, [dereg(1, 'gone'), reg(2, spec('b'), s1), dereg(3, 'b'), reg(4, spec('b'), s1)]);
    expect(results.get(4)).toMatchObject({ revision: 2, duplicate: true });
    expect(await sm.get('b')).toBeUndefined();
  });

  it('a deregister retried after a re-register does not delete the new record', async () => {
    const store = new MemoryStore();
    const sm = await open(store);
    await apply(sm, store, [reg(1, spec('c'))]);
    const s = { clientId: 'client-b', sequence: 7 };
    expect((await apply(sm, store, [dereg(2, 'c', s)])).get(2)).toMatchObject({ deleted: true, revision: 2 });
    await apply(sm, store, [reg(3, spec('c'))]);
    expect((await apply(sm, store, [dereg(4, 'c', s)])).get(4)).toMatchObject({ deleted: true, revision: 2, duplicate: true });
    expect((await sm.get('c'))?.modRevision).toBe(3);
  });

  it('remembers first results across a restart (they are stored with the data)', async () => {
    const store = new MemoryStore();
    const sm = await open(store);
    await apply(sm, store, [reg(1, spec('d'), s1)]);
    const reopened = store.reopen();
    const sm2 = await open(reopened);
    const retry = await apply(sm2, reopened, [reg(2, spec('d'), s1)]);
    expect(retry.get(2)).toMatchObject({ revision: 1, duplicate: true });
    expect((await sm2.get('d'))?.modRevision).toBe(1);
  });

  it('a sequence reused for a different kind of write applies nothing and yields no result', async () => {
    const store = new MemoryStore();
    const sm = await open(store);
    await apply(sm, store, [reg(1, spec('e'), s1)]);
    const results = await apply(sm, store, [dereg(2, 'e', s1)]);
    expect(results.has(2)).toBe(false);
    expect(await sm.get('e')).toBeDefined();
  });

  it(`keeps the results of a client's last ${SESSION_WINDOW_SEQUENCES} writes and forgets older ones`, async () => {
    const store = new MemoryStore();
    const sm = await open(store);
    await apply(sm, store, [reg(1, spec('f'), { clientId: 'w', sequence: 1 })]);
    expect(await store.kv.get(sessionKey('w', 1))).toBeDefined();
    await apply(sm, store, [reg(2, spec('f'), { clientId: 'w', sequence: 1 + SESSION_WINDOW_SEQUENCES })]);
    expect(await store.kv.get(sessionKey('w', 1))).toBeUndefined();
    expect(await store.kv.get(sessionKey('w', 1 + SESSION_WINDOW_SEQUENCES))).toBeDefined();
  });

  it('the session rides in the command encoding', () => {
    const cmd: Command = { type: 'register', requestId: 'x', agent: spec('g'), session: { clientId: 'c', sequence: 42 } };
    expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
  });

  it('validates client_id and sequence, naming the field', () => {
    expect(validateSession('', 0)).toBeUndefined();
    expect(validateSession('abc', 3)).toEqual({ clientId: 'abc', sequence: 3 });
    expect(() => validateSession('', 3)).toThrow(ValidationError);
    expect(() => validateSession('abc', 0)).toThrow(/sequence/);
    expect(() => validateSession('a b', 1)).toThrow(/client_id/);
    expect(() => validateSession('x'.repeat(129), 1)).toThrow(/client_id/);
  });
});
