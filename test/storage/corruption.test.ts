/**
 * Damaged data is detected, not served: a flipped byte, an entry stored under the wrong index, a
 * missing entry or a damaged hard state makes the read fail with CorruptionError naming what and
 * where.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { logIndex, nodeId, term, type Entry } from '../../src/raft/types.js';
import {
  CRC_BYTES,
  decodeEntry,
  decodeHardState,
  decodeLogKey,
  encodeEntry,
  encodeHardState,
  encodeLogKey,
} from '../../src/storage/codec.js';
import { HARD_STATE_KEY, LOG_SUBLEVEL, META_SUBLEVEL, openLevelStore } from '../../src/storage/level-store.js';
import { CorruptionError } from '../../src/storage/types.js';
import { entriesAt } from './conformance.js';

const RAW_OPTIONS = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;

type RawDb = Level<string, Uint8Array>;
const rawSublevel = (raw: RawDb, name: string) => raw.sublevel<string, Uint8Array>(name, RAW_OPTIONS);
type RawSublevel = ReturnType<typeof rawSublevel>;

/** Opens `dir` with a raw Level handle and lets `edit` change the log and meta sublevels. */
async function editRaw(dir: string, edit: (log: RawSublevel, meta: RawSublevel) => Promise<void>): Promise<void> {
  const raw: RawDb = new Level<string, Uint8Array>(dir, RAW_OPTIONS);
  await raw.open();
  try {
    await edit(rawSublevel(raw, LOG_SUBLEVEL), rawSublevel(raw, META_SUBLEVEL));
  } finally {
    await raw.close();
  }
}

describe('LevelStore corruption detection', () => {
  let root: string;
  let dir: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'corrupt-store-'));
    dir = join(root, 'data');
    const store = await openLevelStore(dir);
    const b = store.batch();
    b.appendEntries(entriesAt(1, 5, 1));
    b.setHardState({ currentTerm: term(1), votedFor: nodeId('n1'), commitIndex: logIndex(5) });
    await b.write();
    await store.close();
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('fails the read of an entry with a flipped byte, naming the index and the directory', async () => {
    await editRaw(dir, async (log) => {
      const value = (await log.get(encodeLogKey(3))) as Uint8Array;
      const damaged = value.slice();
      damaged[damaged.length - 1] = (damaged[damaged.length - 1] as number) ^ 0x01;
      await log.put(encodeLogKey(3), damaged);
    });
    const store = await openLevelStore(dir);
    try {
      expect(store.log.lastIndex()).toBe(5);
      await expect(store.log.entries(logIndex(1), logIndex(3))).resolves.toEqual(entriesAt(1, 2, 1));
      const failure = store.log.entries(logIndex(3), logIndex(4));
      await expect(failure).rejects.toThrow(CorruptionError);
      await expect(failure).rejects.toThrow(/log entry 3 .*fails its checksum/);
      await expect(failure).rejects.toThrow(dir);
      await expect(store.log.entries(logIndex(1), logIndex(6))).rejects.toThrow(CorruptionError);
    } finally {
      await store.close();
    }
  });

  it('fails the read of an entry stored under another index', async () => {
    await editRaw(dir, async (log) => {
      await log.put(encodeLogKey(2), (await log.get(encodeLogKey(4))) as Uint8Array);
    });
    const store = await openLevelStore(dir);
    try {
      await expect(store.log.entries(logIndex(2), logIndex(3))).rejects.toThrow(/log entry 2 .*holds index 4/);
    } finally {
      await store.close();
    }
  });

  it('fails a read across a missing entry', async () => {
    await editRaw(dir, async (log) => {
      await log.del(encodeLogKey(3));
    });
    const store = await openLevelStore(dir);
    try {
      await expect(store.log.entries(logIndex(2), logIndex(5))).rejects.toThrow(/log entry 3 is missing/);
    } finally {
      await store.close();
    }
  });

  it('fails the read of a damaged hard state', async () => {
    await editRaw(dir, async (_log, meta) => {
      const value = ((await meta.get(HARD_STATE_KEY)) as Uint8Array).slice();
      value[CRC_BYTES] = (value[CRC_BYTES] as number) ^ 0xff;
      await meta.put(HARD_STATE_KEY, value);
    });
    const store = await openLevelStore(dir);
    try {
      await expect(store.stable.hardState()).rejects.toThrow(/hard state .*fails its checksum/);
    } finally {
      await store.close();
    }
  });

  it('refuses to open a store with a malformed log key', async () => {
    await editRaw(dir, async (log) => {
      await log.put('zz', new Uint8Array([1]));
    });
    await expect(openLevelStore(dir)).rejects.toThrow(CorruptionError);
  });
});

describe('storage codec', () => {
  const arbEntry = fc.record({
    index: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    term: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    type: fc.constantFrom('normal' as const, 'config' as const),
    data: fc.uint8Array({ maxLength: 64 }),
  }).map((e) => ({ ...e, index: logIndex(e.index), term: term(e.term) }) satisfies Entry);

  it('round-trips entries and hard states', () => {
    fc.assert(
      fc.property(arbEntry, (e) => {
        expect(decodeEntry(encodeEntry(e), e.index, 'test')).toEqual(e);
      }),
    );
    const hs = { currentTerm: term(9), votedFor: nodeId('n2'), commitIndex: logIndex(77) };
    expect(decodeHardState(encodeHardState(hs), 'test')).toEqual(hs);
  });

  it('orders log keys numerically and decodes them back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (a, b) => {
        const [ka, kb] = [encodeLogKey(a), encodeLogKey(b)];
        expect(Math.sign(ka < kb ? -1 : ka > kb ? 1 : 0)).toBe(Math.sign(a - b));
        expect(decodeLogKey(ka, 'test')).toBe(a);
      }),
    );
    expect(() => encodeLogKey(-1)).toThrow(RangeError);
    expect(() => decodeLogKey('12', 'test')).toThrow(CorruptionError);
  });

  it('turns any damaged value into CorruptionError, never another error or a wrong entry', () => {
    fc.assert(
      fc.property(arbEntry, fc.nat(), fc.integer({ min: 1, max: 255 }), (e, at, mask) => {
        const value = encodeEntry(e).slice();
        const i = at % value.length;
        value[i] = (value[i] as number) ^ mask;
        expect(() => decodeEntry(value, e.index, 'test')).toThrow(CorruptionError);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (garbage) => {
        expect(() => decodeEntry(garbage, 1, 'test')).toThrow(CorruptionError);
        expect(() => decodeHardState(garbage, 'test')).toThrow(CorruptionError);
      }),
    );
  });
});
