/**
 * The state machine side of leases, health, compare-and-set and the watch history: the command
 * encoding of the new fields, conditional writes (etcd's transactions on mod_revision), health
 * changes, lease expiry decided by the leader, the lease index, the event history window and the
 * committed events handed to live watchers, and finds by health and name prefix.
 */
import { describe, expect, it } from 'vitest';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { CommandDecodeError, decodeCommand, encodeCommand, registryPackr } from '../../src/registry/commands.js';
import { agentKey, eventKey, leaseIndexKey, prefixEnd, prefixEndAny, sessionKey } from '../../src/registry/keys.js';
import { EVENT_HISTORY_REVISIONS, FIND_INTERSECT_CHUNK_KEYS, QueryError, RegistryStateMachine, decodeAgentRecord } from '../../src/registry/state-machine.js';
import type { Agent, AgentSpec, ClientSession, Command, CommandResult, FindQuery, Health } from '../../src/registry/types.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { KeyValueReader, NodeStore, WriteBatch } from '../../src/storage/types.js';
import { HARNESSES } from '../storage/harnesses.js';

function spec(id: string, over: Partial<AgentSpec> = {}): AgentSpec {
  return { id, name: `name of ${id}`, kind: 'service', version: '1', description: '', capabilities: [], endpoints: {}, labels: {}, ...over };
}

const entry = (index: number, cmd: Command): Entry => ({ index: logIndex(index), term: term(1), type: 'normal', data: encodeCommand(cmd) });
const noop = (index: number): Entry => ({ index: logIndex(index), term: term(1), type: 'normal', data: new Uint8Array(0) });
type RegisterOptions = { ttlSeconds?: number; health?: Health; expectedRevision?: number; createOnly?: boolean; session?: ClientSession };
const reg = (index: number, agent: AgentSpec, options: RegisterOptions = {}): Entry => entry(index, { type: 'register', requestId: `r${index}`, agent, ...options });
const dereg = (index: number, id: string, options: { expectedRevision?: number; session?: ClientSession } = {}): Entry =>
  entry(index, { type: 'deregister', requestId: `r${index}`, id, ...options });
const setHealth = (index: number, id: string, health: Health): Entry => entry(index, { type: 'setHealth', requestId: `r${index}`, id, health });
const expire = (index: number, leases: { id: string; modRevision: number }[]): Entry => entry(index, { type: 'expire', requestId: `r${index}`, leases });

async function apply(sm: RegistryStateMachine, store: NodeStore, entries: Entry[]): Promise<Map<number, CommandResult>> {
  const batch = store.batch();
  const results = await sm.applyEntries(entries, batch);
  await batch.write();
  sm.commitApplied(batch);
  return results;
}

async function open(store: NodeStore = new MemoryStore(), eventHistoryRevisions?: number): Promise<{ store: NodeStore; sm: RegistryStateMachine }> {
  const sm = new RegistryStateMachine(store, undefined, eventHistoryRevisions === undefined ? {} : { eventHistoryRevisions });
  await sm.open();
  return { store, sm };
}

/** Every key and value of the store but the applied index, for "nothing was written" checks. */
async function dump(store: NodeStore): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const [k, v] of store.kv.range('\x00', '\u{10FFFF}')) if (k !== 'meta/applied') out.push([k, Buffer.from(v).toString('hex')]);
  return out;
}

async function keys(store: NodeStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const [k] of store.kv.range(prefix, prefixEnd(prefix))) out.push(k);
  return out;
}

describe('commands with leases, health and conditions', () => {
  it('round-trips the new fields and commands, writing optional fields only when set', () => {
    const cmds: Command[] = [
      { type: 'register', requestId: 'a', agent: spec('x'), ttlSeconds: 30, health: 'degraded', expectedRevision: 7, createOnly: true },
      { type: 'register', requestId: 'b', agent: spec('x'), health: 'unspecified' },
      { type: 'deregister', requestId: 'c', id: 'x', expectedRevision: 3, session: { clientId: 'k', sequence: 2 } },
      { type: 'setHealth', requestId: 'd', id: 'x', health: 'notServing' },
      { type: 'expire', requestId: 'e', leases: [{ id: 'x', modRevision: 4 }, { id: 'y', modRevision: 9 }] },
      { type: 'expire', requestId: 'f', leases: [] },
    ];
    for (const cmd of cmds) expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
    const plain = registryPackr.unpack(encodeCommand({ type: 'register', requestId: 'g', agent: spec('x'), ttlSeconds: 0, expectedRevision: 0, createOnly: false })) as object;
    expect(Object.keys(plain).sort()).toEqual(['agent', 'requestId', 't', 'v']);
    const plainDereg = registryPackr.unpack(encodeCommand({ type: 'deregister', requestId: 'h', id: 'x', expectedRevision: 0 })) as object;
    expect(Object.keys(plainDereg).sort()).toEqual(['id', 'requestId', 't', 'v']);
  });

  it('decodes entries written before the new fields existed', () => {
    const old = registryPackr.pack({ v: 1, t: 'register', requestId: 'r', agent: spec('x'), s: ['c', 1] });
    expect(decodeCommand(old)).toEqual({ type: 'register', requestId: 'r', agent: spec('x'), session: { clientId: 'c', sequence: 1 } });
  });

  it('names the offending field of a new command or field', () => {
    const base = { v: 1, requestId: 'r' };
    const cases: [object, string][] = [
      [{ ...base, t: 'register', agent: spec('x'), ttlSeconds: -1 }, 'ttlSeconds'],
      [{ ...base, t: 'register', agent: spec('x'), ttlSeconds: 1.5 }, 'ttlSeconds'],
      [{ ...base, t: 'register', agent: spec('x'), health: 'HEALTHY' }, 'health'],
      [{ ...base, t: 'register', agent: spec('x'), expectedRevision: '3' }, 'expectedRevision'],
      [{ ...base, t: 'register', agent: spec('x'), createOnly: 1 }, 'createOnly'],
      [{ ...base, t: 'deregister', id: 'x', expectedRevision: -2 }, 'expectedRevision'],
      [{ ...base, t: 'setHealth', id: 'x' }, 'health'],
      [{ ...base, t: 'setHealth', health: 'serving' }, 'id'],
      [{ ...base, t: 'expire' }, 'leases'],
      [{ ...base, t: 'expire', leases: ['x'] }, 'leases[0]'],
      [{ ...base, t: 'expire', leases: [['x', 1], [2, 1]] }, 'leases[1][0]'],
      [{ ...base, t: 'expire', leases: [['x', 0]] }, 'leases[0][1]'],
    ];
    for (const [map, field] of cases) {
      let caught: unknown;
      try {
        decodeCommand(registryPackr.pack(map));
      } catch (err) {
        caught = err;
      }
      expect(caught, field).toBeInstanceOf(CommandDecodeError);
      expect((caught as CommandDecodeError).field).toBe(field);
    }
  });
});

describe('records with leases and health', () => {
  it('old records without ttlSeconds and health decode as 0 and unspecified, and stay findable', async () => {
    const store = new MemoryStore();
    const old = { ...spec('legacy'), createRevision: 1, modRevision: 1 };
    const batch = store.batch();
    // What an older version wrote: the record, its kind index key, the applied index.
    batch.put(agentKey('legacy'), registryPackr.pack(old));
    batch.put('idx/kind/service\x00legacy', new Uint8Array(0));
    batch.put('meta/applied', registryPackr.pack(1));
    await batch.write();
    const { sm } = await open(store);
    expect(await sm.get('legacy')).toEqual({ ...old, ttlSeconds: 0, health: 'unspecified' });
    expect(decodeAgentRecord(registryPackr.pack(old), 'k')).toMatchObject({ ttlSeconds: 0, health: 'unspecified' });
    expect(() => decodeAgentRecord(registryPackr.pack({ ...old, health: 'sick' }), 'k')).toThrow(/health/);
    expect(() => decodeAgentRecord(registryPackr.pack({ ...old, ttlSeconds: -1 }), 'k')).toThrow(/ttlSeconds/);
    // A re-register of an old record replaces it and enters it into the health and name indexes,
    // which did not exist when it was written.
    const r = await apply(sm, store, [reg(2, spec('legacy'), { ttlSeconds: 10 })]);
    expect(r.get(2)).toMatchObject({ agent: { createRevision: 1, modRevision: 2, ttlSeconds: 10, health: 'unspecified' } });
    expect((await keys(store, 'idx/')).sort()).toEqual(
      ['idx/health/unspecified\x00legacy', 'idx/kind/service\x00legacy', leaseIndexKey('legacy'), 'idx/name/name of legacy\x00legacy', 'idx/ver/name of legacy\x00legacy'].sort(),
    );
    expect((await sm.find({ namePrefix: 'name of leg' })).agents.map((a) => a.id)).toEqual(['legacy']);
    await apply(sm, store, [setHealth(3, 'legacy', 'serving')]);
    expect((await sm.find({ health: 'serving', kind: 'service' })).agents.map((a) => a.id)).toEqual(['legacy']);
  });

  it('register takes ttlSeconds from the command and health from the command, else the record, else unspecified', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('a'), { ttlSeconds: 30 })]);
    expect(await sm.get('a')).toMatchObject({ ttlSeconds: 30, health: 'unspecified' });
    await apply(sm, store, [reg(2, spec('a'), { health: 'serving', ttlSeconds: 30 })]);
    await apply(sm, store, [reg(3, spec('a'))]);
    expect(await sm.get('a')).toMatchObject({ ttlSeconds: 0, health: 'serving', modRevision: 3 });
    await apply(sm, store, [reg(4, spec('a'), { health: 'unspecified' })]);
    expect(await sm.get('a')).toMatchObject({ health: 'unspecified' });
    // A deregister ends the record's life: a new one starts unspecified.
    await apply(sm, store, [reg(5, spec('a'), { health: 'degraded' }), dereg(6, 'a'), reg(7, spec('a'))]);
    expect(await sm.get('a')).toMatchObject({ health: 'unspecified', createRevision: 7 });
  });
});

describe('compare-and-set (etcd transactions on mod_revision)', () => {
  it('createOnly on an existing id is a conflict with its current revision; nothing is written', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('a')), reg(2, spec('a', { version: '2' }))]);
    const before = await dump(store);
    const r = await apply(sm, store, [reg(3, spec('a', { version: '3' }), { createOnly: true })]);
    expect(r.get(3)).toMatchObject({ type: 'conflict', revision: 3, currentRevision: 2 });
    expect((r.get(3) as { reason: string }).reason).toMatch(/exists/);
    expect(await dump(store)).toEqual(before);
    expect(sm.appliedIndex).toBe(3);
    expect(sm.takeCommittedEvents().map((e) => e.revision)).toEqual([1, 2]);
    // On an absent id it creates.
    expect((await apply(sm, store, [reg(4, spec('b'), { createOnly: true })])).get(4)).toMatchObject({ type: 'register', agent: { createRevision: 4 } });
  });

  it('register with expectedRevision applies only on a match (absent counts as 0)', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('a'))]);
    const r = await apply(sm, store, [
      reg(2, spec('a', { version: 'x' }), { expectedRevision: 5 }),
      reg(3, spec('a', { version: 'y' }), { expectedRevision: 1 }),
      reg(4, spec('ghost'), { expectedRevision: 1 }),
    ]);
    expect(r.get(2)).toMatchObject({ type: 'conflict', revision: 2, currentRevision: 1 });
    expect(r.get(3)).toMatchObject({ type: 'register', agent: { version: 'y', createRevision: 1, modRevision: 3 } });
    expect(r.get(4)).toMatchObject({ type: 'conflict', revision: 4, currentRevision: 0 });
    expect(await sm.get('ghost')).toBeUndefined();
  });

  it('deregister with expectedRevision deletes only on a match', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('a')), reg(2, spec('a'))]);
    const r = await apply(sm, store, [dereg(3, 'a', { expectedRevision: 1 }), dereg(4, 'zz', { expectedRevision: 2 }), dereg(5, 'a', { expectedRevision: 2 })]);
    expect(r.get(3)).toMatchObject({ type: 'conflict', revision: 3, currentRevision: 2 });
    expect(r.get(4)).toMatchObject({ type: 'conflict', revision: 4, currentRevision: 0 });
    expect(r.get(5)).toEqual({ type: 'deregister', deleted: true, revision: 5 });
    expect(await sm.get('a')).toBeUndefined();
  });

  it('concurrent conditional writers on one id in one batch: exactly one wins per revision', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('a'))]);
    // Three writers read revision 1 and race; then two creators race on a fresh id.
    const r = await apply(sm, store, [
      reg(2, spec('a', { version: 'w1' }), { expectedRevision: 1 }),
      reg(3, spec('a', { version: 'w2' }), { expectedRevision: 1 }),
      dereg(4, 'a', { expectedRevision: 1 }),
      reg(5, spec('n', { version: 'c1' }), { createOnly: true }),
      reg(6, spec('n', { version: 'c2' }), { createOnly: true }),
      // The loser retries with the revision it learned from its conflict.
      reg(7, spec('a', { version: 'w2' }), { expectedRevision: 2 }),
    ]);
    expect(r.get(2)).toMatchObject({ type: 'register', agent: { version: 'w1', modRevision: 2 } });
    expect(r.get(3)).toMatchObject({ type: 'conflict', currentRevision: 2 });
    expect(r.get(4)).toMatchObject({ type: 'conflict', currentRevision: 2 });
    expect(r.get(5)).toMatchObject({ type: 'register', agent: { version: 'c1' } });
    expect(r.get(6)).toMatchObject({ type: 'conflict', currentRevision: 5 });
    expect(r.get(7)).toMatchObject({ type: 'register', agent: { version: 'w2', modRevision: 7 } });
    expect(await sm.get('a')).toMatchObject({ version: 'w2', modRevision: 7 });
    expect(await sm.get('n')).toMatchObject({ version: 'c1', modRevision: 5 });
  });

  it('a retried conditional write is answered with its first conflict, across a restart', async () => {
    const store = new MemoryStore();
    const { sm } = await open(store);
    const s = { clientId: 'cas', sequence: 1 };
    await apply(sm, store, [reg(1, spec('a'))]);
    const first = await apply(sm, store, [reg(2, spec('a', { version: 'x' }), { expectedRevision: 9, session: s })]);
    expect(first.get(2)).toMatchObject({ type: 'conflict', revision: 2, currentRevision: 1 });
    expect(await store.kv.get(sessionKey('cas', 1))).toBeDefined();
    const reopened = store.reopen();
    const { sm: sm2 } = await open(reopened);
    // Even though the condition holds by now, the retry is not applied.
    await apply(sm2, reopened, [reg(3, spec('a'))]);
    const retry = await apply(sm2, reopened, [reg(4, spec('a', { version: 'x' }), { expectedRevision: 9, session: s })]);
    expect(retry.get(4)).toEqual(first.get(2));
    expect(await sm2.get('a')).toMatchObject({ version: '1', modRevision: 3 });
    // A deregister conflict too, within one batch.
    const d = { clientId: 'cas', sequence: 2 };
    const both = await apply(sm2, reopened, [dereg(5, 'a', { expectedRevision: 1, session: d }), dereg(6, 'a', { expectedRevision: 3, session: d })]);
    expect(both.get(6)).toEqual(both.get(5));
    expect(await sm2.get('a')).toBeDefined();
  });

  it('a retried register is answered with the health and lease it was applied with', async () => {
    const { store, sm } = await open();
    const s = { clientId: 'h', sequence: 1 };
    await apply(sm, store, [reg(1, spec('a'), { health: 'serving' }), reg(2, spec('a'), { ttlSeconds: 10, session: s })]);
    const retry = await apply(sm, store, [reg(3, spec('a'), { ttlSeconds: 10, session: s })]);
    expect(retry.get(3)).toMatchObject({ duplicate: true, revision: 2, agent: { health: 'serving', ttlSeconds: 10, modRevision: 2 } });
  });
});

describe('setHealth', () => {
  it('a change rewrites the record (new modRevision, health index, lease value) and is one put event', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('a'), { ttlSeconds: 20 })]);
    sm.takeCommittedEvents();
    const r = await apply(sm, store, [setHealth(2, 'a', 'serving')]);
    const agent = { ...spec('a'), createRevision: 1, modRevision: 2, ttlSeconds: 20, health: 'serving' };
    expect(r.get(2)).toEqual({ type: 'setHealth', agent, revision: 2 });
    expect(await sm.get('a')).toEqual(agent);
    expect(sm.takeCommittedEvents()).toEqual([{ type: 'put', agent, revision: 2, expired: false }]);
    expect(await keys(store, 'idx/health/')).toEqual(['idx/health/serving\x00a']);
    expect(await sm.leases()).toEqual([{ id: 'a', ttlMs: 20_000, modRevision: 2 }]);
    expect((await sm.find({ health: 'serving' })).agents).toEqual([agent]);
  });

  it('the same health writes nothing and answers the current record; an absent agent answers undefined', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('a'), { health: 'degraded' })]);
    sm.takeCommittedEvents();
    const before = await dump(store);
    const r = await apply(sm, store, [setHealth(2, 'a', 'degraded'), setHealth(3, 'nobody', 'serving')]);
    expect(r.get(2)).toEqual({ type: 'setHealth', agent: await sm.get('a'), revision: 2 });
    expect(r.get(3)).toEqual({ type: 'setHealth', agent: undefined, revision: 3 });
    expect(await dump(store)).toEqual(before);
    expect(sm.takeCommittedEvents()).toEqual([]);
    expect(sm.appliedIndex).toBe(3);
  });
});

describe('expire (lease expiry decided by the leader)', () => {
  it('deletes only agents with a lease and the named modRevision; a re-registration in between survives', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [
      reg(1, spec('gone'), { ttlSeconds: 10 }),
      reg(2, spec('renewed'), { ttlSeconds: 10 }),
      reg(3, spec('unleased')),
      reg(4, spec('dropped-lease'), { ttlSeconds: 10 }),
    ]);
    expect((await sm.leases()).map((l) => l.id)).toEqual(['dropped-lease', 'gone', 'renewed']);
    // The leader decides at revision 4; then 'renewed' re-registers, 'dropped-lease' re-registers without a lease.
    await apply(sm, store, [reg(5, spec('renewed'), { ttlSeconds: 10 }), reg(6, spec('dropped-lease'))]);
    sm.takeCommittedEvents();
    const gone = await sm.get('gone');
    const r = await apply(sm, store, [
      expire(7, [
        { id: 'gone', modRevision: 1 },
        { id: 'renewed', modRevision: 2 },
        { id: 'unleased', modRevision: 3 },
        { id: 'dropped-lease', modRevision: 4 },
        { id: 'never-was', modRevision: 1 },
        { id: 'gone', modRevision: 1 },
      ]),
    ]);
    expect(r.get(7)).toEqual({ type: 'expire', expired: ['gone'], revision: 7 });
    expect(await sm.get('gone')).toBeUndefined();
    for (const id of ['renewed', 'unleased', 'dropped-lease']) expect(await sm.get(id)).toBeDefined();
    expect(sm.takeCommittedEvents()).toEqual([{ type: 'delete', agent: gone, revision: 7, expired: true }]);
    expect(await sm.leases()).toEqual([{ id: 'renewed', ttlMs: 10_000, modRevision: 5 }]);
    expect(await keys(store, 'idx/')).not.toContain(leaseIndexKey('gone'));
    expect((await keys(store, 'idx/')).filter((k) => k.endsWith('gone'))).toEqual([]);
  });

  it('expires several agents in one revision, one delete event each, in the order named', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [reg(1, spec('x'), { ttlSeconds: 5 }), reg(2, spec('y'), { ttlSeconds: 5 }), reg(3, spec('z'), { ttlSeconds: 5 })]);
    const r = await apply(sm, store, [expire(4, [{ id: 'z', modRevision: 3 }, { id: 'x', modRevision: 1 }])]);
    expect(r.get(4)).toEqual({ type: 'expire', expired: ['z', 'x'], revision: 4 });
    const history = await sm.eventsSince(4, 1);
    // Whole revisions: both deletes of revision 4 though the limit is 1.
    expect(history.events.map((e) => [e.type, e.agent.id, e.revision, e.expired])).toEqual([
      ['delete', 'z', 4, true],
      ['delete', 'x', 4, true],
    ]);
  });
});

describe('leases()', () => {
  it('agrees with the records: added, changed, dropped and deleted leases', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [
      reg(1, spec('a'), { ttlSeconds: 5 }),
      reg(2, spec('b'), { ttlSeconds: 3600 }),
      reg(3, spec('c')),
      reg(4, spec('a'), { ttlSeconds: 60 }),
      reg(5, spec('b')),
      reg(6, spec('c'), { ttlSeconds: 7 }),
      reg(7, spec('d'), { ttlSeconds: 9 }),
      dereg(8, 'd'),
    ]);
    expect(await sm.leases()).toEqual([
      { id: 'a', ttlMs: 60_000, modRevision: 4 },
      { id: 'c', ttlMs: 7000, modRevision: 6 },
    ]);
    expect(await keys(store, 'idx/lease/')).toEqual([leaseIndexKey('a'), leaseIndexKey('c')]);
  });
});

describe.each(HARNESSES)('watch history on $name', ({ make }) => {
  it('records puts, deletes with the last version, and expiries, in revision order', async () => {
    const harness = await make();
    try {
      const { store, sm } = await open(await harness.open());
      await apply(sm, store, [reg(1, spec('a'), { ttlSeconds: 5 }), noop(2), reg(3, spec('b')), setHealth(4, 'a', 'serving'), dereg(5, 'b'), expire(6, [{ id: 'a', modRevision: 4 }])]);
      const a1 = { ...spec('a'), createRevision: 1, modRevision: 1, ttlSeconds: 5, health: 'unspecified' as const };
      const a4 = { ...a1, modRevision: 4, health: 'serving' as const };
      const b3 = { ...spec('b'), createRevision: 3, modRevision: 3, ttlSeconds: 0, health: 'unspecified' as const };
      const want = [
        { type: 'put', agent: a1, revision: 1, expired: false },
        { type: 'put', agent: b3, revision: 3, expired: false },
        { type: 'put', agent: a4, revision: 4, expired: false },
        { type: 'delete', agent: b3, revision: 5, expired: false },
        { type: 'delete', agent: a4, revision: 6, expired: true },
      ];
      expect(await sm.eventsSince(1, 100)).toEqual({ events: want, oldestRevision: 1, lastRevision: 6 });
      expect(await sm.eventsSince(0, 100)).toEqual({ events: want, oldestRevision: 1, lastRevision: 6 });
      expect((await sm.eventsSince(4, 100)).events).toEqual(want.slice(2));
      expect((await sm.eventsSince(2, 2)).events).toEqual(want.slice(1, 3));
      expect((await sm.eventsSince(7, 100)).events).toEqual([]);
      expect(sm.takeCommittedEvents()).toEqual(want);
      expect(sm.takeCommittedEvents()).toEqual([]);
      await expect(sm.eventsSince(-1, 1)).rejects.toThrow(RangeError);
      await expect(sm.eventsSince(1, 0)).rejects.toThrow(RangeError);
    } finally {
      await harness.cleanup();
    }
  });

  it('keeps a window of revisions: old events are deleted and oldestRevision moves', async () => {
    const harness = await make();
    try {
      const window = 3;
      let store = await harness.open();
      let { sm } = await open(store, window);
      await apply(sm, store, [reg(1, spec('a')), reg(2, spec('b'))]);
      expect(await sm.eventsSince(1, 100)).toMatchObject({ oldestRevision: 1, lastRevision: 2 });
      await apply(sm, store, [noop(3), reg(4, spec('c'))]);
      // Applying 4 deleted revision 1; the window is 2..4.
      let h = await sm.eventsSince(1, 100);
      expect(h.oldestRevision).toBe(2);
      expect(h.events.map((e) => e.revision)).toEqual([2, 4]);
      expect(await keys(store, 'ev/')).toEqual([eventKey(2), eventKey(4)]);
      // After a restart the window goes on; revisions without events are deleted as no-ops.
      store = await harness.reopen(store);
      ({ sm } = await open(store, window));
      await apply(sm, store, [noop(5), noop(6), dereg(7, 'a')]);
      h = await sm.eventsSince(1, 100);
      expect(h.oldestRevision).toBe(5);
      expect(h.events.map((e) => [e.type, e.revision])).toEqual([['delete', 7]]);
      expect(await keys(store, 'ev/')).toEqual([eventKey(7)]);
      expect(EVENT_HISTORY_REVISIONS).toBe(10_000);
      expect(() => new RegistryStateMachine(store, undefined, { eventHistoryRevisions: 0 })).toThrow(RangeError);
    } finally {
      await harness.cleanup();
    }
  });
});

describe('committed events', () => {
  it('takeCommittedEvents returns exactly the events of committed batches, in order; discarded ones never', async () => {
    const store = new MemoryStore();
    const { sm } = await open(store);
    const first = store.batch();
    await sm.applyEntries([reg(1, spec('a'))], first);
    const second = store.batch();
    await sm.applyEntries([reg(2, spec('b')), dereg(3, 'a')], second);
    expect(sm.takeCommittedEvents()).toEqual([]);
    await first.write();
    sm.commitApplied(first);
    expect(sm.takeCommittedEvents().map((e) => [e.type, e.agent.id, e.revision])).toEqual([['put', 'a', 1]]);
    // The second batch's write fails: its events never happened.
    sm.discardStaged();
    expect(sm.takeCommittedEvents()).toEqual([]);
    // The entries are applied again into a new batch; commitApplied() without a batch commits all staged.
    const retry = store.batch();
    await sm.applyEntries([reg(2, spec('b')), dereg(3, 'a')], retry);
    await retry.write();
    sm.commitApplied();
    expect(sm.takeCommittedEvents().map((e) => [e.type, e.agent.id, e.revision])).toEqual([
      ['put', 'b', 2],
      ['delete', 'a', 3],
    ]);
    expect((await sm.eventsSince(1, 100)).events.map((e) => e.revision)).toEqual([1, 2, 3]);
  });

  it('eventsSince reads only written batches and reports the durable index', async () => {
    const store = new MemoryStore();
    const { sm } = await open(store);
    await apply(sm, store, [reg(1, spec('a'))]);
    const staged = store.batch();
    await sm.applyEntries([reg(2, spec('b'))], staged);
    expect(await sm.eventsSince(1, 100)).toMatchObject({ lastRevision: 1, events: [{ revision: 1 }] });
  });
});

/**
 * A second state machine over `store` whose reads are counted: `fetched` keys read by getMany,
 * `scanned` entries read by range (it offers no cursor, so joins read through `range`).
 */
async function countingReads(store: NodeStore): Promise<{ counting: RegistryStateMachine; reads: { scanned: number; fetched: number } }> {
  const reads = { scanned: 0, fetched: 0 };
  const kv: KeyValueReader = {
    get: (key) => store.kv.get(key),
    getMany: (ks) => {
      reads.fetched += ks.length;
      return store.kv.getMany(ks);
    },
    async *range(gte, lt, limit) {
      for await (const item of store.kv.range(gte, lt, limit)) {
        reads.scanned++;
        yield item;
      }
    },
  };
  const counting = new RegistryStateMachine({ ...store, kv, batch: () => store.batch() as WriteBatch, close: () => store.close() });
  await counting.open();
  return { counting, reads };
}

describe('find by health and name prefix', () => {
  const HEALTHS: Health[] = ['unspecified', 'serving', 'degraded', 'notServing'];

  /** Pages through a find and returns the ids, checking each page's size. */
  async function findAll(sm: RegistryStateMachine, q: FindQuery): Promise<string[]> {
    const ids: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = await sm.find({ ...q, pageToken: token });
      if (page.nextPageToken !== '') expect(page.agents).toHaveLength(q.pageSize as number);
      ids.push(...page.agents.map((a) => a.id));
      token = page.nextPageToken;
      expect(++pages).toBeLessThan(1000);
    } while (token !== '');
    return ids;
  }

  function brute(agents: Agent[], q: FindQuery): string[] {
    return agents
      .filter((a) => !q.capability || a.capabilities.includes(q.capability))
      .filter((a) => !q.kind || a.kind === q.kind)
      .filter((a) => Object.entries(q.labels ?? {}).every(([k, v]) => a.labels[k] === v))
      .filter((a) => !q.health || q.health === 'unspecified' || a.health === q.health)
      .filter((a) => !q.namePrefix || a.name.startsWith(q.namePrefix))
      .map((a) => a.id)
      .sort();
  }

  it.each(HARNESSES)('agrees with a brute-force filter, alone and combined, with small pages, across index chunk boundaries, on $name', async ({ make }) => {
    const harness = await make();
    const { store, sm } = await open(await harness.open());
    const n = 2 * FIND_INTERSECT_CHUNK_KEYS + 10;
    const entries: Entry[] = [];
    for (let i = 0; i < n; i++) {
      const id = `agent-${String((i * 37) % n).padStart(4, '0')}`;
      const agent = spec(id, {
        name: ['alpha', 'alpine', 'beta', 'bé', ''][i % 5] + String(i % 3),
        kind: i % 4 === 0 ? 'rare' : 'common',
        capabilities: i % 2 === 0 ? ['search'] : [],
        labels: i % 3 === 0 ? { env: 'prod' } : {},
      });
      entries.push(reg(i + 1, agent, { health: HEALTHS[(i * 7) % 11 === 0 ? 3 : i % 3] as Health }));
    }
    await apply(sm, store, entries);
    const agents: Agent[] = [];
    for await (const [k, v] of store.kv.range('agent/', 'agent0')) agents.push(decodeAgentRecord(v, k));
    const queries: FindQuery[] = [];
    for (const health of [undefined, 'unspecified', 'serving', 'notServing'] as const) {
      for (const namePrefix of [undefined, 'alp', 'bé', 'beta1', 'z']) {
        queries.push({ health, namePrefix });
        queries.push({ health, namePrefix, kind: 'common' });
        queries.push({ health, namePrefix, capability: 'search', labels: { env: 'prod' } });
        queries.push({ health, namePrefix, capability: 'search', kind: 'rare', labels: { env: 'prod' } });
      }
    }
    queries.push({ health: 'degraded', labels: { env: 'prod' } });
    for (const q of queries) {
      for (const pageSize of [7, 100]) expect(await findAll(sm, { ...q, pageSize }), JSON.stringify(q)).toEqual(brute(agents, q));
    }
    // Page size 1 on the intersection, across chunk boundaries.
    for (const q of [{ kind: 'common', health: 'serving' }, { namePrefix: 'al' }] as FindQuery[]) {
      expect(await findAll(sm, { ...q, pageSize: 1 })).toEqual(brute(agents, q));
    }
    await store.close();
    await harness.cleanup();
  });

  it('intersects the health index with another index without reading every record', async () => {
    const { store, sm } = await open();
    const entries: Entry[] = [];
    for (let i = 0; i < 300; i++) entries.push(reg(i + 1, spec(`bulk-${String(i).padStart(3, '0')}`, { kind: 'common' }), { health: 'serving' }));
    entries.push(reg(301, spec('bulk-150x', { kind: 'common' }), { health: 'notServing' }));
    entries.push(reg(302, spec('other', { kind: 'other' }), { health: 'notServing' }));
    await apply(sm, store, entries);
    const { counting, reads } = await countingReads(store);
    expect((await counting.find({ kind: 'common', health: 'notServing' })).agents.map((a) => a.id)).toEqual(['bulk-150x']);
    expect(reads.fetched).toBe(1);
    expect(reads.scanned).toBeLessThanOrEqual(2 * FIND_INTERSECT_CHUNK_KEYS + 2);
    // Dense matches: a page costs about a page, not the whole range.
    reads.scanned = 0;
    reads.fetched = 0;
    const page = await counting.find({ kind: 'common', health: 'serving', pageSize: 10 });
    expect(page.agents).toHaveLength(10);
    expect(reads.fetched).toBe(11);
    expect(reads.scanned).toBeLessThanOrEqual(2 * FIND_INTERSECT_CHUNK_KEYS);
    // A name prefix alone reads the matching names only.
    reads.scanned = 0;
    expect((await counting.find({ namePrefix: 'name of bulk-15' })).agents.map((a) => a.id)).toEqual([
      'bulk-150',
      'bulk-150x',
      ...Array.from({ length: 9 }, (_, i) => `bulk-15${i + 1}`),
    ]);
    expect(reads.scanned).toBe(11);
  });

  it.each(HARNESSES)('intersects a capability, a kind and a label (three indexes) and reads only the common ids as records, on $name', async ({ make }) => {
    const harness = await make();
    const { store, sm } = await open(await harness.open());
    const entries: Entry[] = [];
    for (let i = 0; i < 600; i++) {
      const agent = spec(`many-${String(i).padStart(3, '0')}`, {
        kind: i % 3 === 0 ? 'rare' : 'common',
        capabilities: i % 2 === 0 ? ['search'] : [],
        labels: i % 5 === 0 ? { env: 'prod' } : { env: 'dev' },
      });
      entries.push(reg(i + 1, agent));
    }
    await apply(sm, store, entries);
    const { counting, reads } = await countingReads(store);
    const expected = Array.from({ length: 20 }, (_, j) => `many-${String(30 * j).padStart(3, '0')}`);
    expect((await sm.find({ capability: 'search', kind: 'rare', labels: { env: 'prod' } })).agents.map((a) => a.id)).toEqual(expected);
    const page = await counting.find({ capability: 'search', kind: 'rare', labels: { env: 'prod' } });
    expect(page.agents.map((a) => a.id)).toEqual(expected);
    // 300 agents have the capability, 200 the kind, 120 the label: only the 20 in all three are read.
    expect(reads.fetched).toBe(expected.length);
    // With a health filter as a fourth index, and pages of 7 that resume inside the join.
    expect(await findAll(counting, { capability: 'search', kind: 'rare', labels: { env: 'prod' }, health: 'unspecified', pageSize: 7 })).toEqual(expected);
    expect(await findAll(sm, { capability: 'search', kind: 'rare', labels: { env: 'prod' }, health: 'unspecified', pageSize: 7 })).toEqual(expected);
    await store.close();
    await harness.cleanup();
  });

  it('pages a name prefix by id though the index is ordered by name; tokens stay valid across writes', async () => {
    const { store, sm } = await open();
    await apply(sm, store, [
      reg(1, spec('z', { name: 'svc-a' })),
      reg(2, spec('y', { name: 'svc-b' })),
      reg(3, spec('x', { name: 'svc-c' })),
      reg(4, spec('w', { name: 'other' })),
    ]);
    const first = await sm.find({ namePrefix: 'svc-', pageSize: 2 });
    expect(first.agents.map((a) => a.id)).toEqual(['x', 'y']);
    await apply(sm, store, [reg(5, spec('a', { name: 'svc-d' })), reg(6, spec('y2', { name: 'svc-e' }))]);
    const rest = await sm.find({ namePrefix: 'svc-', pageSize: 2, pageToken: first.nextPageToken });
    expect(rest.agents.map((a) => a.id)).toEqual(['y2', 'z']);
    expect(rest.nextPageToken).toBe('');
  });

  it('refuses a bad health or name prefix with a QueryError naming the field', async () => {
    const { sm } = await open();
    await expect(sm.find({ health: 'HEALTH_SERVING' as Health })).rejects.toMatchObject({ name: 'QueryError', field: 'health' });
    await expect(sm.find({ namePrefix: 3 as unknown as string })).rejects.toBeInstanceOf(QueryError);
    await expect(sm.find({ namePrefix: 3 as unknown as string })).rejects.toMatchObject({ field: 'name_prefix' });
  });

  it('prefixEndAny bounds a prefix scan in UTF-8 order for any last character', () => {
    expect(prefixEndAny('ab')).toBe('ac');
    expect(prefixEndAny('a\u{d7ff}')).toBe('a\u{e000}');
    expect(prefixEndAny('a\u{10ffff}')).toBe('b');
    expect(prefixEndAny('é')).toBe('ê');
    expect(prefixEndAny('a😀')).toBe('a😁');
    expect(() => prefixEndAny('')).toThrow(RangeError);
  });
});
