/**
 * `RegistryStateMachine.get` answers hot agents from a cache of decoded records. It must never
 * answer with a record a committed batch replaced: checked against a model over random writes
 * and reads, and for a read that was in flight while a batch committed. The decoded records of
 * `Find` and `Search` must never answer with a replaced record either.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { logIndex, term, type Entry } from '../../src/raft/index.js';
import { encodeCommand } from '../../src/registry/commands.js';
import { DecodedRecords, RECORD_CACHE_ENTRIES, RecordCache } from '../../src/registry/record-cache.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { Agent, AgentSpec, Command } from '../../src/registry/types.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { KeyValueReader } from '../../src/storage/types.js';

const spec = (id: string, version: string): AgentSpec => ({ id, name: id, kind: 'service', version, description: `v${version}`, capabilities: [], endpoints: {}, labels: {} });

async function setup() {
  const store = new MemoryStore();
  // Point reads take the value at the call, as LevelDB's do, and hand it over when `held` is
  // released (a read in flight while a batch commits).
  let held: Promise<void> | undefined;
  const kv: KeyValueReader = { ...store.kv, get: (key) => {
    const read = store.kv.get(key);
    const wait = held;
    return wait === undefined ? read : read.then(async (v) => (await wait, v));
  } };
  const view = new Proxy(store, {
    get(target, prop) {
      if (prop === 'kv') return kv;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const sm = new RegistryStateMachine(view, silentLogger);
  await sm.open();
  let index = 0;
  /** Stages `commands` in one batch; `commit` writes it and tells the state machine. */
  const stage = async (commands: Command[]) => {
    const entries: Entry[] = commands.map((c) => ({ index: logIndex(++index), term: term(1), type: 'normal', data: encodeCommand(c) }));
    const batch = store.batch();
    await sm.applyEntries(entries, batch);
    return async () => {
      await batch.write();
      sm.commitApplied(batch);
    };
  };
  const apply = async (commands: Command[]) => (await stage(commands))();
  /** Holds every point read started from now until the returned function is called. */
  const holdReads = () => {
    let release = (): void => undefined;
    held = new Promise<void>((r) => (release = r));
    return () => {
      held = undefined;
      release();
    };
  };
  return { sm, stage, apply, holdReads };
}

const register = (id: string, version: string): Command => ({ type: 'register', requestId: `r-${id}-${version}`, agent: spec(id, version) });
const deregister = (id: string, n: number): Command => ({ type: 'deregister', requestId: `d-${id}-${n}`, id });

/**
 * Runs `steps` against the state machine and a model (agent id → version): a `write` registers
 * `a<k>` with a new version, a `delete` deregisters it, any other step is a read `check` runs.
 */
async function replay<Op extends string>(steps: readonly [Op | 'write' | 'delete', number][], apply: (commands: Command[]) => Promise<void>, check: (op: Op, id: string, model: ReadonlyMap<string, string>) => Promise<void>): Promise<void> {
  const model = new Map<string, string>();
  let n = 0;
  for (const [op, k] of steps) {
    const id = `a${k}`;
    n++;
    if (op === 'write') {
      await apply([register(id, `1.0.${n}`)]);
      model.set(id, `1.0.${n}`);
    } else if (op === 'delete') {
      await apply([deregister(id, n)]);
      model.delete(id);
    } else {
      await check(op as Op, id, model);
    }
  }
}

describe('the record cache of RegistryStateMachine.get', () => {
  it('answers every read with the last committed write of that agent, over random writes and reads', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom('write', 'delete', 'read'), fc.integer({ min: 0, max: 5 })), { minLength: 1, maxLength: 60 }),
        async (steps) => {
          const { sm, apply } = await setup();
          await replay(steps, apply, async (_op, id, model) => expect((await sm.get(id))?.version).toBe(model.get(id)));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('does not keep a record read before a batch that replaced it committed', async () => {
    const { sm, stage, apply, holdReads } = await setup();
    await apply([register('a', '1.0.0')]);
    const commit = await stage([register('a', '2.0.0')]);
    const release = holdReads();
    const inFlight = sm.get('a');
    await commit();
    release();
    expect((await inFlight)?.version).toBe('1.0.0');
    expect((await sm.get('a'))?.version).toBe('2.0.0');
  });

  it('drops an agent a committed batch changed, and keeps at most RECORD_CACHE_ENTRIES', async () => {
    const { sm, apply } = await setup();
    await apply([register('a', '1.0.0')]);
    expect((await sm.get('a'))?.version).toBe('1.0.0');
    await apply([register('a', '1.0.1')]);
    expect((await sm.get('a'))?.version).toBe('1.0.1');
    await apply([deregister('a', 1)]);
    expect(await sm.get('a')).toBeUndefined();
    const ids = Array.from({ length: RECORD_CACHE_ENTRIES + 10 }, (_, i) => `many-${i}`);
    await apply(ids.map((id) => register(id, '1.0.0')));
    for (const id of ids) expect((await sm.get(id))?.id).toBe(id);
    expect((await sm.get(ids[0] as string))?.version).toBe('1.0.0');
  });

  it('holds at most its count and its bytes, the least recently read dropped first', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 300 }),
        // Few ids and long runs, so that reads reorder what later sets evict.
        fc.array(fc.tuple(fc.constantFrom('set', 'get', 'delete'), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 120 })), { minLength: 20, maxLength: 200 }),
        (maxEntries, maxBytes, ops) => {
          const cache = new RecordCache(maxEntries, maxBytes);
          const agentOf = (id: string): Agent => ({ ...spec(id, '1.0.0'), createRevision: 1, modRevision: 1, ttlSeconds: 0, health: 'unspecified' });
          /** The model: ids from least to most recently touched, with their sizes. */
          let order: [string, number][] = [];
          for (const [op, k, bytes] of ops) {
            const id = `a${k}`;
            if (op === 'set') {
              cache.set(id, agentOf(id), bytes);
              order = order.filter(([x]) => x !== id);
              if (bytes <= maxBytes && maxEntries > 0) order.push([id, bytes]);
              while (order.length > maxEntries || order.reduce((n, [, b]) => n + b, 0) > maxBytes) order.shift();
            } else if (op === 'get') {
              const hit = order.find(([x]) => x === id);
              expect(cache.get(id)?.id).toBe(hit?.[0]);
              if (hit) order = [...order.filter(([x]) => x !== id), hit];
            } else {
              cache.delete(id);
              order = order.filter(([x]) => x !== id);
            }
            expect(cache.size).toBe(order.length);
            expect(cache.bytes).toBe(order.reduce((n, [, b]) => n + b, 0));
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(() => new RecordCache(-1)).toThrow(RangeError);
  });
});

describe('the decoded records of Find and Search', () => {
  it('answers every find and search with the last committed write of each agent, over random writes and reads', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom('write', 'delete', 'find', 'search'), fc.integer({ min: 0, max: 5 })), { minLength: 1, maxLength: 60 }),
        async (steps) => {
          const { sm, apply } = await setup();
          await replay(steps, apply, async (op, _id, model) => {
            const want = [...model].sort(([a], [b]) => (a < b ? -1 : 1));
            // A search by an id finds that agent only (its name is its id).
            const got = op === 'find'
              ? (await sm.find({})).agents
              : (await Promise.all(Array.from({ length: 6 }, async (_, i) => (await sm.search({ query: `a${i}` })).results.map((r) => r.agent)))).flat();
            expect(got.map((a) => [a.id, a.version])).toEqual(want);
          });
        },
      ),
      { numRuns: 150 },
    );
  });

  it('hands out the same Agent object while a record is unchanged, a new one once it changed', async () => {
    const { sm, apply } = await setup();
    await apply([register('a', '1.0.0'), register('b', '1.0.0')]);
    const [a1, b1] = (await sm.find({})).agents;
    const [a2, b2] = (await sm.find({})).agents;
    expect(a2).toBe(a1);
    expect(b2).toBe(b1);
    await apply([register('a', '1.0.1')]);
    const [a3, b3] = (await sm.find({})).agents;
    expect(a3).not.toBe(a1);
    expect(a3?.version).toBe('1.0.1');
    expect(b3).toBe(b1);
  });

  it('decodes again only bytes it does not hold, within its bounds', () => {
    let decodes = 0;
    const decode = (value: Uint8Array, key: string): Agent => (decodes++, { ...spec(key, Buffer.from(value).toString()), createRevision: 1, modRevision: 1, ttlSeconds: 0, health: 'unspecified' });
    const records = new DecodedRecords(decode, 2, 1024);
    const v1 = Buffer.from('1.0.0');
    const first = records.decode(v1, 'k');
    expect(records.decode(Buffer.from('1.0.0'), 'k')).toBe(first);
    expect(decodes).toBe(1);
    // The same key with other bytes is a changed record.
    expect(records.decode(Buffer.from('1.0.1'), 'k').version).toBe('1.0.1');
    expect(decodes).toBe(2);
    // The kept bytes are a copy: changing the buffer read does not change what matches.
    v1.write('9');
    records.decode(Buffer.from('1.0.2'), 'j');
    records.decode(Buffer.from('1.0.3'), 'i');
    expect(records.size).toBe(2);
    records.decode(Buffer.from('1.0.1'), 'k');
    expect(decodes).toBe(5);
    const none = new DecodedRecords(decode, 0, 1024);
    none.decode(v1, 'k');
    none.decode(v1, 'k');
    expect(decodes).toBe(7);
    expect(() => new DecodedRecords(decode, 1, -1)).toThrow(RangeError);
  });
});
