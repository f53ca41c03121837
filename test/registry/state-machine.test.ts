import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import {
  COMMAND_VERSION,
  CommandDecodeError,
  decodeCommand,
  encodeCommand,
  registryPackr,
} from '../../src/registry/commands.js';
import { APPLIED_INDEX_KEY, agentKey, capIndexKey, healthIndexKey, kindIndexKey, labelIndexKey, nameIndexKey, prefixEnd, versionIndexKey } from '../../src/registry/keys.js';
import {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  QueryError,
  RegistryStateMachine,
} from '../../src/registry/state-machine.js';
import type { AgentSpec, Command } from '../../src/registry/types.js';
import type { KeyValueReader, NodeStore, WriteBatch } from '../../src/storage/types.js';
import type { StoreHarness } from '../storage/conformance.js';
import { HARNESSES } from '../storage/harnesses.js';

function spec(id: string, over: Partial<AgentSpec> = {}): AgentSpec {
  return {
    id,
    name: `name of ${id}`,
    kind: 'service',
    version: '1.0.0',
    description: '',
    capabilities: [],
    endpoints: { grpc: '127.0.0.1:1' },
    labels: {},
    ...over,
  };
}

function normal(index: number, data: Uint8Array): Entry {
  return { index: logIndex(index), term: term(1), type: 'normal', data };
}
const reg = (index: number, agent: AgentSpec): Entry =>
  normal(index, encodeCommand({ type: 'register', requestId: `req-${index}`, agent }));
const dereg = (index: number, id: string): Entry =>
  normal(index, encodeCommand({ type: 'deregister', requestId: `req-${index}`, id }));

async function applyAndWrite(sm: RegistryStateMachine, store: NodeStore, entries: Entry[]) {
  const batch = store.batch();
  const results = await sm.applyEntries(entries, batch);
  await batch.write();
  sm.commitApplied(batch);
  return results;
}

async function allKeys(store: NodeStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const [k] of store.kv.range(prefix, prefixEnd(prefix))) keys.push(k);
  return keys;
}

describe('commands', () => {
  const register: Command = {
    type: 'register',
    requestId: 'r1',
    agent: spec('weather', { capabilities: ['forecast', 'alerts'], labels: { env: 'prod' } }),
  };

  it('round-trips register and deregister with a version tag', () => {
    expect(decodeCommand(encodeCommand(register))).toEqual(register);
    const deregister: Command = { type: 'deregister', requestId: 'r2', id: 'weather' };
    expect(decodeCommand(encodeCommand(deregister))).toEqual(deregister);
    expect(registryPackr.unpack(encodeCommand(deregister))).toMatchObject({ v: COMMAND_VERSION, t: 'deregister' });
  });

  it('throws CommandDecodeError naming the field on garbage, unknown versions and bad fields', () => {
    const cases: [Uint8Array, string][] = [
      [new Uint8Array(0), 'data'],
      [new Uint8Array([0xc1]), 'data'],
      [new Uint8Array([0x93, 1]), 'data'],
      [registryPackr.pack({ v: 2, t: 'deregister', requestId: 'r', id: 'x' }), 'v'],
      [registryPackr.pack({ v: 1, t: 'rename', requestId: 'r', id: 'x' }), 't'],
      [registryPackr.pack({ v: 1, t: 'deregister', requestId: 7, id: 'x' }), 'requestId'],
      [registryPackr.pack({ v: 1, t: 'deregister', requestId: 'r' }), 'id'],
      [registryPackr.pack({ v: 1, t: 'register', requestId: 'r', agent: { ...spec('a'), capabilities: ['ok', 3] } }), 'agent.capabilities[1]'],
      [registryPackr.pack({ v: 1, t: 'register', requestId: 'r', agent: { ...spec('a'), labels: { env: 1 } } }), 'agent.labels.env'],
      [registryPackr.pack({ v: 1, t: 'register', requestId: 'r', agent: { ...spec('a'), kind: undefined } }), 'agent.kind'],
    ];
    for (const [data, field] of cases) {
      let caught: unknown;
      try {
        decodeCommand(data);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(CommandDecodeError);
      expect((caught as CommandDecodeError).field).toBe(field);
    }
  });

  it('drops fields a spec does not have', () => {
    const data = registryPackr.pack({ v: 1, t: 'register', requestId: 'r', agent: { ...spec('a'), extra: 'x' } });
    const cmd = decodeCommand(data);
    expect(cmd.type === 'register' && Object.keys(cmd.agent).sort()).toEqual(Object.keys(spec('a')).sort());
  });
});

describe.each(HARNESSES)('RegistryStateMachine on $name', ({ make }) => {
  let harness: StoreHarness | undefined;
  afterEach(async () => {
    await harness?.cleanup();
    harness = undefined;
  });
  async function setup(logger = pino({ level: 'silent' })) {
    harness = await make();
    const store = await harness.open();
    const sm = new RegistryStateMachine(store, logger);
    await sm.open();
    return { store, sm };
  }

  it('registers a new agent with both revisions at the entry index', async () => {
    const { store, sm } = await setup();
    const agent = spec('a', { capabilities: ['x'], labels: { env: 'prod' } });
    const results = await applyAndWrite(sm, store, [reg(1, agent)]);
    const expected = { ...agent, createRevision: 1, modRevision: 1, ttlSeconds: 0, health: 'unspecified' };
    expect(results).toEqual(new Map([[1, { type: 'register', agent: expected, revision: 1 }]]));
    expect(await sm.get('a')).toEqual(expected);
    expect(sm.appliedIndex).toBe(1);
    expect(await allKeys(store, 'idx/')).toEqual([
      capIndexKey('x', 'a'),
      healthIndexKey('unspecified', 'a'),
      kindIndexKey('service', 'a'),
      labelIndexKey('env', 'prod', 'a'),
      nameIndexKey('name of a', 'a'),
      versionIndexKey('name of a', 'a'),
    ]);
    expect(registryPackr.unpack((await store.kv.get(APPLIED_INDEX_KEY)) as Uint8Array)).toBe(1);
  });

  it('replaces a record: keeps createRevision, moves modRevision, swaps its index keys', async () => {
    const { store, sm } = await setup();
    await applyAndWrite(sm, store, [reg(1, spec('a', { capabilities: ['x', 'y'], kind: 'k1', labels: { env: 'a' } }))]);
    await applyAndWrite(sm, store, [normal(2, new Uint8Array(0))]);
    const results = await applyAndWrite(sm, store, [reg(3, spec('a', { capabilities: ['y', 'z'], kind: 'k2', labels: { env: 'b' } }))]);
    expect(results.get(3)).toMatchObject({ type: 'register', revision: 3, agent: { createRevision: 1, modRevision: 3 } });
    expect(await allKeys(store, 'idx/')).toEqual([
      capIndexKey('y', 'a'),
      capIndexKey('z', 'a'),
      healthIndexKey('unspecified', 'a'),
      kindIndexKey('k2', 'a'),
      labelIndexKey('env', 'b', 'a'),
      nameIndexKey('name of a', 'a'),
      versionIndexKey('name of a', 'a'),
    ]);
    expect((await sm.find({ capability: 'x' })).agents).toEqual([]);
    expect((await sm.find({ capability: 'z' })).agents.map((a) => a.id)).toEqual(['a']);
  });

  it('deregisters: deleted is true once, then false; the record and its index keys are gone', async () => {
    const { store, sm } = await setup();
    await applyAndWrite(sm, store, [reg(1, spec('a', { capabilities: ['x'] })), reg(2, spec('b'))]);
    const results = await applyAndWrite(sm, store, [dereg(3, 'a'), dereg(4, 'a'), dereg(5, 'nobody')]);
    expect([...results.values()]).toEqual([
      { type: 'deregister', deleted: true, revision: 3 },
      { type: 'deregister', deleted: false, revision: 4 },
      { type: 'deregister', deleted: false, revision: 5 },
    ]);
    expect(await sm.get('a')).toBeUndefined();
    expect(await allKeys(store, 'agent/')).toEqual([agentKey('b')]);
    expect(await allKeys(store, 'idx/')).toEqual([healthIndexKey('unspecified', 'b'), kindIndexKey('service', 'b'), nameIndexKey('name of b', 'b'), versionIndexKey('name of b', 'b')]);
    // A new registration after a delete starts a new life: a new createRevision.
    const again = await applyAndWrite(sm, store, [reg(6, spec('a'))]);
    expect(again.get(6)).toMatchObject({ agent: { createRevision: 6, modRevision: 6 } });
  });

  it('applies several commands on the same id in one batch, each seeing the one before', async () => {
    const { store, sm } = await setup();
    const results = await applyAndWrite(sm, store, [
      reg(1, spec('a', { capabilities: ['x'] })),
      reg(2, spec('a', { capabilities: ['y'] })),
      dereg(3, 'a'),
      dereg(4, 'a'),
      reg(5, spec('a', { capabilities: ['z'] })),
      reg(6, spec('a', { capabilities: ['z'], labels: { env: 'prod' } })),
    ]);
    expect(results.get(2)).toMatchObject({ agent: { createRevision: 1, modRevision: 2 } });
    expect(results.get(3)).toEqual({ type: 'deregister', deleted: true, revision: 3 });
    expect(results.get(4)).toEqual({ type: 'deregister', deleted: false, revision: 4 });
    expect(results.get(6)).toMatchObject({ agent: { createRevision: 5, modRevision: 6 } });
    expect(await sm.get('a')).toMatchObject({ capabilities: ['z'], createRevision: 5, modRevision: 6 });
    expect(await allKeys(store, 'idx/')).toEqual([
      capIndexKey('z', 'a'),
      healthIndexKey('unspecified', 'a'),
      kindIndexKey('service', 'a'),
      labelIndexKey('env', 'prod', 'a'),
      nameIndexKey('name of a', 'a'),
      versionIndexKey('name of a', 'a'),
    ]);
  });

  it('stages several applyEntries calls into one batch; reads see nothing until it is written', async () => {
    const { store, sm } = await setup();
    const batch = store.batch();
    await sm.applyEntries([reg(1, spec('a', { capabilities: ['x'] }))], batch);
    const second = await sm.applyEntries([reg(2, spec('a', { capabilities: ['y'] })), reg(3, spec('b'))], batch);
    expect(second.get(2)).toMatchObject({ agent: { createRevision: 1, modRevision: 2 } });
    expect(sm.stagedIndex).toBe(3);
    expect(sm.appliedIndex).toBe(0);
    expect(await sm.get('a')).toBeUndefined();
    await batch.write();
    sm.commitApplied(batch);
    expect(sm.appliedIndex).toBe(3);
    expect(await sm.get('a')).toMatchObject({ capabilities: ['y'], createRevision: 1, modRevision: 2 });
    expect(await allKeys(store, 'idx/cap/')).toEqual([capIndexKey('y', 'a')]);
  });

  it('pipelines batches: a later batch sees the staged records of an earlier unwritten one', async () => {
    const { store, sm } = await setup();
    const first = store.batch();
    await sm.applyEntries([reg(1, spec('a', { capabilities: ['x'] }))], first);
    const second = store.batch();
    const results = await sm.applyEntries([reg(2, spec('a', { capabilities: ['y'] }))], second);
    expect(results.get(2)).toMatchObject({ agent: { createRevision: 1, modRevision: 2 } });
    await first.write();
    sm.commitApplied(first);
    expect(sm.appliedIndex).toBe(1);
    // The second batch's change is still pending: a third command must see it.
    const third = store.batch();
    const r3 = await sm.applyEntries([dereg(3, 'a')], third);
    expect(r3.get(3)).toEqual({ type: 'deregister', deleted: true, revision: 3 });
    await second.write();
    sm.commitApplied(second);
    expect(sm.appliedIndex).toBe(2);
    await third.write();
    sm.commitApplied(third);
    expect(sm.appliedIndex).toBe(3);
    expect(await allKeys(store, 'agent/')).toEqual([]);
    expect(await allKeys(store, 'idx/')).toEqual([]);
  });

  it('skips no-ops, config entries and undecodable data, advancing the applied index and logging the latter', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const { store, sm } = await setup(logger);
    const results = await applyAndWrite(sm, store, [
      normal(1, new Uint8Array(0)),
      { index: logIndex(2), term: term(1), type: 'config', data: new Uint8Array([1, 2, 3]) },
      normal(3, new Uint8Array([0xde, 0xad, 0xbe, 0xef])),
      normal(4, registryPackr.pack({ v: 99, t: 'register' })),
      reg(5, spec('a')),
    ]);
    expect([...results.keys()]).toEqual([5]);
    expect(sm.appliedIndex).toBe(5);
    // The config entry's data is not a membership change either: it is logged and skipped too.
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ index: 2, component: 'state-machine' });
    expect(JSON.parse(lines[1] as string)).toMatchObject({ index: 3, field: 'data', component: 'state-machine' });
    expect(JSON.parse(lines[2] as string)).toMatchObject({ index: 4, field: 'v' });
  });

  it('is idempotent across a restart: re-applying written entries changes nothing', async () => {
    const { store, sm } = await setup();
    const entries = [
      reg(1, spec('a', { capabilities: ['x'] })),
      reg(2, spec('b', { labels: { env: 'prod' } })),
      reg(3, spec('a', { capabilities: ['y'] })),
      dereg(4, 'b'),
    ];
    await applyAndWrite(sm, store, entries.slice(0, 2));
    await applyAndWrite(sm, store, entries.slice(2));
    const before = { agents: await allKeys(store, 'agent/'), idx: await allKeys(store, 'idx/'), a: await sm.get('a') };

    const reopened = await (harness as StoreHarness).reopen(store);
    const sm2 = new RegistryStateMachine(reopened);
    await sm2.open();
    expect(sm2.appliedIndex).toBe(4);
    const batch = reopened.batch();
    expect(await sm2.applyEntries(entries, batch)).toEqual(new Map());
    expect(batch.empty).toBe(true);
    await batch.write();
    sm2.commitApplied(batch);
    expect(sm2.appliedIndex).toBe(4);
    expect({ agents: await allKeys(reopened, 'agent/'), idx: await allKeys(reopened, 'idx/'), a: await sm2.get('a') }).toEqual(before);
    expect(before.a).toMatchObject({ createRevision: 1, modRevision: 3 });
    // The next entry applies normally.
    const next = await applyAndWrite(sm2, reopened, [...entries, reg(5, spec('a'))]);
    expect([...next.keys()]).toEqual([5]);
    expect(next.get(5)).toMatchObject({ agent: { createRevision: 1, modRevision: 5 } });
  });

  it('re-applies entries whose batch was never written, with the same results', async () => {
    const { store, sm } = await setup();
    await applyAndWrite(sm, store, [reg(1, spec('a'))]);
    const lost = store.batch();
    const entries = [reg(2, spec('a', { capabilities: ['x'] })), dereg(3, 'zz')];
    const firstTry = await sm.applyEntries(entries, lost); // never written: a crash
    const reopened = await (harness as StoreHarness).reopen(store);
    const sm2 = new RegistryStateMachine(reopened);
    await sm2.open();
    expect(sm2.appliedIndex).toBe(1);
    expect(await applyAndWrite(sm2, reopened, entries)).toEqual(firstTry);
    expect(await sm2.get('a')).toMatchObject({ capabilities: ['x'], createRevision: 1, modRevision: 2 });
  });

  it('discardStaged forgets staged changes after a failed write', async () => {
    const { store, sm } = await setup();
    await sm.applyEntries([reg(1, spec('a'))], store.batch());
    expect(sm.stagedIndex).toBe(1);
    sm.discardStaged();
    expect(sm.stagedIndex).toBe(0);
    const results = await applyAndWrite(sm, store, [reg(1, spec('a'))]);
    expect(results.get(1)).toMatchObject({ agent: { createRevision: 1 } });
  });

  it('refuses a gap in the log and use before open()', async () => {
    const { store, sm } = await setup();
    await expect(sm.applyEntries([reg(2, spec('a'))], store.batch())).rejects.toThrow(/entry 2 is not the next to apply \(1\)/);
    const unopened = new RegistryStateMachine(store);
    await expect(unopened.applyEntries([reg(1, spec('a'))], store.batch())).rejects.toThrow(/open\(\)/);
  });

  it('finds by capability, kind and labels (AND), ordered by id', async () => {
    const { store, sm } = await setup();
    await applyAndWrite(sm, store, [
      reg(1, spec('d', { capabilities: ['search'], kind: 'mcp-server', labels: { env: 'prod' } })),
      reg(2, spec('b', { capabilities: ['search', 'fetch'], kind: 'a2a-agent', labels: { env: 'prod', team: 'x' } })),
      reg(3, spec('c', { capabilities: ['fetch'], kind: 'mcp-server', labels: { env: 'dev' } })),
      reg(4, spec('a', { capabilities: ['search'], kind: 'mcp-server', labels: { env: 'dev' } })),
      reg(5, spec('ab', { capabilities: ['searching'], kind: 'mcp-server-x', labels: { env: 'prodx' } })),
    ]);
    const ids = async (q: Parameters<RegistryStateMachine['find']>[0]) => (await sm.find(q)).agents.map((a) => a.id);
    expect(await ids({})).toEqual(['a', 'ab', 'b', 'c', 'd']);
    expect(await ids({ capability: 'search' })).toEqual(['a', 'b', 'd']);
    expect(await ids({ kind: 'mcp-server' })).toEqual(['a', 'c', 'd']);
    expect(await ids({ labels: { env: 'prod' } })).toEqual(['b', 'd']);
    expect(await ids({ capability: 'search', kind: 'mcp-server' })).toEqual(['a', 'd']);
    expect(await ids({ capability: 'search', labels: { env: 'prod', team: 'x' } })).toEqual(['b']);
    expect(await ids({ kind: 'mcp-server', labels: { env: 'dev' } })).toEqual(['a', 'c']);
    expect(await ids({ capability: '', kind: '', labels: {} })).toEqual(['a', 'ab', 'b', 'c', 'd']);
    expect(await ids({ capability: 'nothing' })).toEqual([]);
  });

  it('pages with opaque tokens; 0 or no page size means DEFAULT_PAGE_SIZE', async () => {
    const { store, sm } = await setup();
    const n = DEFAULT_PAGE_SIZE + 20;
    const entries = Array.from({ length: n }, (_, i) => reg(i + 1, spec(`agent-${String(i).padStart(4, '0')}`, { capabilities: ['c'] })));
    await applyAndWrite(sm, store, entries);
    for (const q of [{}, { pageSize: 0 }, { capability: 'c' }]) {
      const page = await sm.find(q);
      expect(page.agents).toHaveLength(DEFAULT_PAGE_SIZE);
      expect(page.nextPageToken).not.toBe('');
      const rest = await sm.find({ ...q, pageToken: page.nextPageToken });
      expect(rest.agents.map((a) => a.id)).toEqual(entries.slice(DEFAULT_PAGE_SIZE).map((_, i) => `agent-${String(DEFAULT_PAGE_SIZE + i).padStart(4, '0')}`));
      expect(rest.nextPageToken).toBe('');
    }
    const exact = await sm.find({ pageSize: n });
    expect(exact.agents).toHaveLength(n);
    expect(exact.nextPageToken).toBe('');
  });

  it('refuses bad page sizes, page tokens and filters with a QueryError naming the field', async () => {
    const { sm } = await setup();
    const fieldOf = async (q: object): Promise<string | undefined> => {
      try {
        await sm.find(q as Parameters<RegistryStateMachine['find']>[0]);
        return undefined;
      } catch (err) {
        expect(err).toBeInstanceOf(QueryError);
        return (err as QueryError).field;
      }
    };
    expect(await fieldOf({ pageSize: MAX_PAGE_SIZE + 1 })).toBe('page_size');
    expect(await fieldOf({ pageSize: -1 })).toBe('page_size');
    expect(await fieldOf({ pageSize: 2.5 })).toBe('page_size');
    expect(await fieldOf({ pageSize: MAX_PAGE_SIZE })).toBeUndefined();
    expect(await fieldOf({ pageToken: 'not a token!' })).toBe('page_token');
    expect(await fieldOf({ pageToken: '_w' })).toBe('page_token'); // bytes that are not UTF-8
    expect(await fieldOf({ pageToken: 'YQ==' })).toBe('page_token'); // padding is not base64url
    expect(await fieldOf({ pageToken: Buffer.from('a').toString('base64url') })).toBeUndefined();
    expect(await fieldOf({ capability: 3 })).toBe('capability');
    expect(await fieldOf({ kind: ['k'] })).toBe('kind');
    expect(await fieldOf({ labels: { env: 1 } })).toBe('labels');
  });

  it('scans only the chosen index range, not every record', async () => {
    const { store, sm } = await setup();
    const entries: Entry[] = [];
    for (let i = 0; i < 200; i++) entries.push(reg(i + 1, spec(`bulk-${String(i).padStart(3, '0')}`, { kind: 'common' })));
    entries.push(reg(201, spec('rare-1', { kind: 'common', capabilities: ['rare'] })));
    entries.push(reg(202, spec('rare-2', { kind: 'other', capabilities: ['rare'], labels: { tier: 'gold' } })));
    await applyAndWrite(sm, store, entries);
    let scanned = 0;
    const kv: KeyValueReader = {
      get: (key) => store.kv.get(key),
      getMany: (keys) => store.kv.getMany(keys),
      async *range(gte, lt, limit) {
        for await (const item of store.kv.range(gte, lt, limit)) {
          scanned++;
          yield item;
        }
      },
    };
    const counting = new RegistryStateMachine({ ...store, kv, batch: () => store.batch() as WriteBatch, close: () => store.close() });
    await counting.open();
    expect((await counting.find({ capability: 'rare', kind: 'common' })).agents.map((a) => a.id)).toEqual(['rare-1']);
    // The capability's two keys, and one seek into the kind's 201 that finds rare-1 and then the end.
    expect(scanned).toBe(3);
    scanned = 0;
    expect((await counting.find({ labels: { tier: 'gold' } })).agents.map((a) => a.id)).toEqual(['rare-2']);
    expect(scanned).toBe(1);
    scanned = 0;
    const page = await counting.find({ kind: 'common', pageSize: 10 });
    expect(page.agents).toHaveLength(10);
    expect(scanned).toBe(11); // the page plus one lookahead
  });
});
