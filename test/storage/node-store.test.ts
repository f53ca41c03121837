import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/storage/memory-store.js';
import { describeNodeStoreConformance } from './conformance.js';
import { HARNESSES } from './harnesses.js';

for (const { name, make } of HARNESSES) describeNodeStoreConformance(name, make);

describe('MemoryStore power loss: only what was synced survives', () => {
  const put = async (store: MemoryStore, key: string, sync: boolean): Promise<void> => {
    const b = store.batch();
    b.put(key, new TextEncoder().encode(key));
    await b.write({ sync });
  };
  const keys = async (store: MemoryStore): Promise<string[]> => {
    const out: string[] = [];
    for await (const [k] of store.kv.range('', '\uffff')) out.push(k);
    return out;
  };

  it('drops unsynced writes, keeps synced ones, and a synced write makes the unsynced ones before it durable', async () => {
    const store = new MemoryStore();
    await put(store, 'a', true);
    await put(store, 'b', false);
    expect(await keys(store)).toEqual(['a', 'b']);
    expect(store.unsyncedBatches).toBe(1);
    const afterLoss = store.crash();
    expect(await keys(afterLoss)).toEqual(['a']);
    await put(afterLoss, 'c', false);
    await put(afterLoss, 'd', true);
    await put(afterLoss, 'e', false);
    expect(await keys(afterLoss.crash())).toEqual(['a', 'c', 'd']);
  });

  it('keeps the oldest `keepUnsynced` unsynced writes (the part of the log the kernel wrote back)', async () => {
    const store = new MemoryStore();
    for (const k of ['a', 'b', 'c']) await put(store, k, false);
    expect(await keys(store.crash(2))).toEqual(['a', 'b']);
  });

  it('a process restart keeps every written batch, synced or not', async () => {
    const store = new MemoryStore();
    await put(store, 'a', false);
    expect(await keys(store.reopen())).toEqual(['a']);
  });

  it('refuses a keep count that is not a non-negative integer', () => {
    expect(() => new MemoryStore().crash(-1)).toThrow(RangeError);
  });
});
