/** Store harnesses shared by the storage and state machine tests. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLevelStore } from '../../src/storage/level-store.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { NodeStore } from '../../src/storage/types.js';
import type { StoreHarness } from './conformance.js';

/** A harness over LevelDB stores in a temporary directory, removed on cleanup. */
export async function levelHarness(): Promise<StoreHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'level-store-'));
  const dataDir = join(dir, 'node', 'data');
  let current: NodeStore | undefined;
  return {
    async open() {
      current = await openLevelStore(dataDir);
      return current;
    },
    async reopen(store) {
      await store.close();
      current = await openLevelStore(dataDir);
      return current;
    },
    async cleanup() {
      await current?.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A harness over in-memory stores; reopening keeps what was written. */
export async function memoryHarness(): Promise<StoreHarness> {
  return {
    async open() {
      return new MemoryStore();
    },
    async reopen(store) {
      return (store as MemoryStore).reopen();
    },
    async cleanup() {},
  };
}

/** Both harnesses, for `describe.each`. */
export const HARNESSES: readonly { readonly name: string; readonly make: () => Promise<StoreHarness> }[] = [
  { name: 'MemoryStore', make: memoryHarness },
  { name: 'LevelStore', make: levelHarness },
];
