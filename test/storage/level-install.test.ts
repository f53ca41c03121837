/**
 * LevelStore specifics of snapshot installs and compaction: the generation layout on disk, a
 * crash in the middle of an install (a partial next generation that never went live), the
 * background clear of the old generation, installs larger than one copy batch, and damaged
 * compaction records.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_NODE, logIndex, term } from '../../src/raft/types.js';
import { encodeLogKey } from '../../src/storage/codec.js';
import {
  COMPACTED_KEY,
  INSTALL_BATCH_BYTES,
  LOG_SUBLEVEL,
  META_SUBLEVEL,
  openLevelStore,
  smSublevelName,
  type LevelStore,
} from '../../src/storage/level-store.js';
import { CorruptionError } from '../../src/storage/types.js';
import { entriesAt } from './conformance.js';

const RAW_OPTIONS = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function* pairsOf(items: [string, string][]): AsyncIterable<[string, Uint8Array]> {
  for (const [k, v] of items) yield [k, bytes(v)];
}

async function collect(it: AsyncIterable<[string, Uint8Array]>): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const [k, v] of it) out.push([k, text(v)]);
  return out;
}

/** Opens `dir` with a raw Level handle and runs `fn` on it. */
async function withRaw<T>(dir: string, fn: (raw: Level<string, Uint8Array>) => Promise<T>): Promise<T> {
  const raw = new Level<string, Uint8Array>(dir, RAW_OPTIONS);
  await raw.open();
  try {
    return await fn(raw);
  } finally {
    await raw.close();
  }
}

/** Number of keys in each generation sublevel 0..max of the store at `dir`. */
async function generationSizes(dir: string, max: number): Promise<number[]> {
  return withRaw(dir, async (raw) => {
    const out: number[] = [];
    for (let g = 0; g <= max; g++) out.push((await raw.sublevel<string, Uint8Array>(smSublevelName(g), RAW_OPTIONS).keys().all()).length);
    return out;
  });
}

describe('LevelStore snapshot installs', () => {
  let root: string;
  let dir: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'level-install-'));
    dir = join(root, 'data');
    const store = await openLevelStore(dir);
    const b = store.batch();
    b.appendEntries(entriesAt(1, 5, 1));
    for (const k of ['a', 'b', 'c']) b.put(k, bytes(`old-${k}`));
    await b.write();
    await store.close();
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('names generation 0 "sm" and later ones "sm-<n>"', () => {
    expect(smSublevelName(0)).toBe('sm');
    expect(smSublevelName(12)).toBe('sm-12');
    expect(() => smSublevelName(-1)).toThrow(RangeError);
  });

  it('switches to the next generation and clears the old one in the background', async () => {
    let store = await openLevelStore(dir);
    await store.installStateMachine(pairsOf([['x', '1'], ['y', '2']]), (batch) => batch.resetLog(logIndex(10), term(2)));
    await store.close(); // waits for the background clear
    expect(await generationSizes(dir, 2)).toEqual([0, 2, 0]);
    store = await openLevelStore(dir);
    expect(await collect(store.kv.range('', '~'))).toEqual([['x', '1'], ['y', '2']]);
    await store.installStateMachine(pairsOf([['z', '3']]), () => undefined);
    await store.close();
    expect(await generationSizes(dir, 3)).toEqual([0, 0, 1, 0]);
  });

  it('keeps the old generation live after a crash in the middle of an install, and clears the partial copy at open', async () => {
    let store = await openLevelStore(dir);
    // What a crash leaves: the pairs copied aside, the switching batch never written.
    const partial = await store.writeGeneration(pairsOf([['p', '1'], ['q', '2'], ['r', '3']]));
    expect(partial.number).toBe(1);
    await store.close();
    expect(await generationSizes(dir, 1)).toEqual([3, 3]);
    store = await openLevelStore(dir);
    expect(await collect(store.kv.range('', '~'))).toEqual([['a', 'old-a'], ['b', 'old-b'], ['c', 'old-c']]);
    expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([1, 5]);
    await store.close();
    expect(await generationSizes(dir, 1)).toEqual([3, 0]);
    // The next install works, and a stray generation far from the live one is found too.
    await withRaw(dir, async (raw) => {
      await raw.sublevel<string, Uint8Array>(smSublevelName(17), RAW_OPTIONS).put('junk', bytes('j'));
    });
    store = await openLevelStore(dir);
    await store.installStateMachine(pairsOf([['n', 'new']]), (batch) => batch.resetLog(logIndex(9), term(2)));
    expect(await collect(store.kv.range('', '~'))).toEqual([['n', 'new']]);
    await store.close();
    const sizes = await generationSizes(dir, 18);
    expect(sizes[17]).toBe(0);
    expect(sizes.reduce((x, y) => x + y, 0)).toBe(1);
  });

  it('copies an install larger than one copy batch, and an old view still reads the old generation', async () => {
    const store = await openLevelStore(dir);
    try {
      const view = store.stateMachineView();
      const valueBytes = 64 * 1024;
      const count = Math.ceil((INSTALL_BATCH_BYTES * 1.5) / valueBytes);
      async function* big(): AsyncIterable<[string, Uint8Array]> {
        for (let i = 0; i < count; i++) yield [`big/${String(i).padStart(4, '0')}`, new Uint8Array(valueBytes).fill(i % 251)];
      }
      await store.installStateMachine(big(), () => undefined);
      const keys: string[] = [];
      for await (const [k, v] of store.kv.range('big/', 'big0')) {
        keys.push(k);
        expect(v.byteLength).toBe(valueBytes);
        expect(v[valueBytes - 1]).toBe(keys.length - 1);
      }
      expect(keys).toHaveLength(count);
      expect(await store.kv.get('a')).toBeUndefined();
      expect(await collect(view.entries())).toEqual([['a', 'old-a'], ['b', 'old-b'], ['c', 'old-c']]);
      await view.close();
    } finally {
      await store.close();
    }
  });

  it('closes with a view still open, even one in the middle of an iteration', async () => {
    const store = await openLevelStore(dir);
    const view = store.stateMachineView();
    const it = view.entries()[Symbol.asyncIterator]();
    expect((await it.next()).value?.[0]).toBe('a');
    await store.close();
    await view.close();
  });

  it('runs concurrent installs one after the other', async () => {
    const store: LevelStore = await openLevelStore(dir);
    try {
      await Promise.all([
        store.installStateMachine(pairsOf([['one', '1']]), () => undefined),
        store.installStateMachine(pairsOf([['two', '2']]), () => undefined),
      ]);
      expect(await collect(store.kv.range('', '~'))).toEqual([['two', '2']]);
    } finally {
      await store.close();
    }
    expect((await generationSizes(dir, 3)).reduce((x, y) => x + y, 0)).toBe(1);
  });
});

describe('LevelStore compaction records', () => {
  let root: string;
  let dir: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'level-compact-'));
    dir = join(root, 'data');
    const store = await openLevelStore(dir);
    const b = store.batch();
    b.appendEntries(entriesAt(1, 6, 1));
    await b.write();
    const c = store.batch();
    c.compactLog(logIndex(3), term(1));
    await c.write();
    await store.close();
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('deletes the compacted entries from disk', async () => {
    const keys = await withRaw(dir, (raw) => raw.sublevel<string, Uint8Array>(LOG_SUBLEVEL, RAW_OPTIONS).keys().all());
    expect(keys).toEqual([4, 5, 6].map(encodeLogKey));
  });

  it('refuses to open with a damaged compaction point', async () => {
    await withRaw(dir, async (raw) => {
      const meta = raw.sublevel<string, Uint8Array>(META_SUBLEVEL, RAW_OPTIONS);
      const value = ((await meta.get(COMPACTED_KEY)) as Uint8Array).slice();
      value[value.length - 1] = (value[value.length - 1] as number) ^ 0x01;
      await meta.put(COMPACTED_KEY, value);
    });
    await expect(openLevelStore(dir)).rejects.toThrow(/compaction point .*fails its checksum/);
  });

  it('refuses to open a log that does not start right after the compaction point', async () => {
    await withRaw(dir, async (raw) => {
      await raw.sublevel<string, Uint8Array>(LOG_SUBLEVEL, RAW_OPTIONS).del(encodeLogKey(4));
    });
    await expect(openLevelStore(dir)).rejects.toThrow(CorruptionError);
    await expect(openLevelStore(dir)).rejects.toThrow(/starts at 5 but is compacted through 3/);
  });
});

describe('LevelStore key layout', () => {
  let root: string;
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes every key where its sublevel puts it, so stores written through the sublevels read the same', async () => {
    root = await mkdtemp(join(tmpdir(), 'level-layout-'));
    const dir = join(root, 'data');
    const store = await openLevelStore(dir);
    // Many keys in one batch: the first goes through the public API, the rest straight to the native batch.
    const b = store.batch();
    b.appendEntries(entriesAt(1, 3, 1));
    b.setHardState({ currentTerm: term(1), votedFor: NO_NODE, commitIndex: logIndex(2) });
    for (let i = 0; i < 50; i++) b.put(`k/${String(i).padStart(2, '0')}`, bytes(`v${i}`));
    await b.write();
    const d = store.batch();
    d.del('k/07');
    d.put('k/50', bytes('v50'));
    await d.write({ sync: false });
    await store.close();
    await withRaw(dir, async (raw) => {
      const sm = raw.sublevel<string, Uint8Array>(smSublevelName(0), RAW_OPTIONS);
      const kept = (await sm.keys().all()).filter((k) => k.startsWith('k/'));
      expect(kept).toHaveLength(50);
      expect(kept).not.toContain('k/07');
      expect(text((await sm.get('k/50')) as Uint8Array)).toBe('v50');
      expect(await raw.sublevel<string, Uint8Array>(LOG_SUBLEVEL, RAW_OPTIONS).keys().all()).toEqual([1, 2, 3].map(encodeLogKey));
      expect(await raw.sublevel<string, Uint8Array>(META_SUBLEVEL, RAW_OPTIONS).get('hardstate')).toBeInstanceOf(Uint8Array);
      // Nothing outside the sublevels.
      expect((await raw.keys().all()).every((k) => /^!(log|meta|sm)!/.test(k))).toBe(true);
    });
    const again = await openLevelStore(dir);
    expect(await again.stable.hardState()).toMatchObject({ currentTerm: 1, commitIndex: 2 });
    expect((await collect(again.kv.range('k/', 'k0'))).length).toBe(50);
    await again.close();
  });
});

describe('LevelStore key cursor (KeyValueReader.cursor)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'level-cursor-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the whole count asked for (fewer only at the end), seeks forward, and reads a view from when it opened', async () => {
    const store = await openLevelStore(dir);
    try {
      // Keys long enough that one native read (bounded in bytes) holds fewer of them than asked.
      const key = (i: number): string => `idx/k/${String(i).padStart(6, '0')}${'-'.repeat(400)}`;
      const b = store.batch();
      for (let i = 0; i < 5_000; i++) b.put(key(i), bytes('v'.repeat(40)));
      b.put('idx/l/after', bytes('outside'));
      await b.write();
      const cursor = store.kv.cursor?.('idx/k/', 'idx/k0');
      expect(cursor).toBeDefined();
      if (!cursor) return;
      const later = store.batch();
      later.put(key(5_000), bytes('written after the cursor opened'));
      await later.write();
      const first = await cursor.next(1_024);
      expect(first).toEqual(Array.from({ length: 1_024 }, (_, i) => key(i)));
      cursor.seek(key(4_990));
      const tail = await cursor.next(1_024);
      expect(tail).toEqual(Array.from({ length: 10 }, (_, i) => key(4_990 + i)));
      expect(await cursor.next(1_024)).toEqual([]);
      await cursor.close();
      await cursor.close();
    } finally {
      await store.close();
    }
  });
});
