/**
 * Snapshot stores: the file store and the in-memory one share these tests (round trip in chunks,
 * nothing visible before `finish`, damage detected, pruning, restart); the file store's own tests
 * cover temp files, damaged metadata and file names.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { logIndex, nodeId, term } from '../../src/raft/types.js';
import {
  MemorySnapshotStore,
  SNAPSHOT_FOOTER_BYTES,
  openSnapshotStore,
  snapshotFileName,
  type FileSnapshotStore,
} from '../../src/storage/snapshot-store.js';
import { CorruptionError, type SnapshotMeta, type SnapshotStore } from '../../src/storage/types.js';

const CONF = { voters: [nodeId('n1'), nodeId('n2'), nodeId('n3')], learners: [nodeId('n4')] };
const point = (index: number, t: number) => ({ index: logIndex(index), term: term(t), confState: CONF });

/** Opens snapshot stores of one kind, reopens them as a restart would, damages a payload byte. */
interface SnapshotHarness {
  open(): Promise<SnapshotStore>;
  reopen(): Promise<SnapshotStore>;
  /** Flips one bit of the payload byte at `offset` of the stored snapshot `meta`. */
  damage(meta: SnapshotMeta, offset: number): Promise<void>;
  cleanup(): Promise<void>;
}

async function fileHarness(): Promise<SnapshotHarness & { dir: string }> {
  const root = await mkdtemp(join(tmpdir(), 'snapshots-'));
  const dir = join(root, 'data', 'snapshots');
  return {
    dir,
    open: () => openSnapshotStore(dir),
    reopen: () => openSnapshotStore(dir),
    async damage(meta, offset) {
      const fh = await open(join(dir, snapshotFileName(meta.term, meta.index)), 'r+');
      try {
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, offset);
        b[0] = (b[0] as number) ^ 0x10;
        await fh.write(b, 0, 1, offset);
      } finally {
        await fh.close();
      }
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

async function memoryHarness(): Promise<SnapshotHarness> {
  let store = new MemorySnapshotStore();
  return {
    open: async () => store,
    reopen: async () => {
      store = store.reopen();
      return store;
    },
    async damage(meta, offset) {
      const payload = store.payloadOf(meta) as Uint8Array;
      payload[offset] = (payload[offset] as number) ^ 0x10;
    },
    cleanup: async () => undefined,
  };
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return out;
}

/** Writes `payload` into a new snapshot in pieces of `pieceBytes`, and finishes it. */
async function writeSnapshot(store: SnapshotStore, p: ReturnType<typeof point>, payload: Uint8Array, pieceBytes = 1000): Promise<SnapshotMeta> {
  const sink = store.create(p);
  for (let off = 0; off < payload.length; off += pieceBytes) await sink.write(payload.subarray(off, off + pieceBytes));
  return sink.finish();
}

for (const [name, make] of [['FileSnapshotStore', fileHarness], ['MemorySnapshotStore', memoryHarness]] as const) {
  describe(`SnapshotStore: ${name}`, () => {
    let h: SnapshotHarness | undefined;
    afterEach(async () => {
      await h?.cleanup();
      h = undefined;
    });
    async function fresh(): Promise<SnapshotStore> {
      h = await make();
      return h.open();
    }

    it('round-trips a payload written and read in chunks, with its metadata', async () => {
      const store = await fresh();
      expect(await store.latest()).toBeUndefined();
      const payload = randomBytes(100_000);
      const meta = await writeSnapshot(store, point(42, 3), payload, 777);
      expect(meta).toEqual({ ...point(42, 3), sizeBytes: payload.length, crc32: expect.any(Number) });
      expect(await store.latest()).toEqual(meta);
      const chunks = await collect(store.read(meta, 8192));
      expect(chunks.length).toBe(Math.ceil(payload.length / 8192));
      for (const c of chunks) expect(c.byteLength).toBeLessThanOrEqual(8192);
      expect(Buffer.concat(chunks).equals(payload)).toBe(true);
      // An empty payload is a valid snapshot too.
      const empty = await store.create(point(43, 3)).finish();
      expect(empty.sizeBytes).toBe(0);
      expect(await collect(store.read(empty, 10))).toEqual([]);
      expect(() => store.read(meta, 0)).toThrow(RangeError);
    });

    it('shows nothing of an unfinished or aborted sink', async () => {
      const store = await fresh();
      const first = await writeSnapshot(store, point(10, 1), randomBytes(5000));
      const unfinished = store.create(point(20, 2));
      await unfinished.write(randomBytes(3000));
      const aborted = store.create(point(30, 2));
      await aborted.write(randomBytes(3000));
      await aborted.abort();
      await aborted.abort();
      await expect(aborted.write(new Uint8Array(1))).rejects.toThrow();
      await expect(aborted.finish()).rejects.toThrow();
      expect(await store.latest()).toEqual(first);
      const reopened = await (h as SnapshotHarness).reopen();
      expect(await reopened.latest()).toEqual(first);
      // The sink from before the restart cannot publish anything on the new store.
      await expect(unfinished.finish()).rejects.toThrow();
      const again = await (h as SnapshotHarness).reopen();
      expect(await again.latest()).toEqual(first);
    });

    it('refuses to finish twice, and ignores an abort after a finish', async () => {
      const store = await fresh();
      const sink = store.create(point(5, 1));
      await sink.write(Uint8Array.of(1, 2, 3));
      const meta = await sink.finish();
      await expect(sink.finish()).rejects.toThrow();
      await sink.abort();
      expect(await store.latest()).toEqual(meta);
      expect(Buffer.concat(await collect(store.read(meta, 2)))).toEqual(Buffer.from([1, 2, 3]));
    });

    it('detects a damaged payload at the end of the read', async () => {
      const store = await fresh();
      const payload = randomBytes(30_000);
      const meta = await writeSnapshot(store, point(7, 2), payload);
      await (h as SnapshotHarness).damage(meta, 12_345);
      const seen: Uint8Array[] = [];
      const read = (async () => {
        for await (const c of store.read(meta, 4096)) seen.push(c);
      })();
      await expect(read).rejects.toThrow(CorruptionError);
      expect(Buffer.concat(seen).length).toBe(payload.length); // every chunk came before the error
      // Metadata that does not match the payload is refused as well.
      await expect(collect(store.read({ ...meta, sizeBytes: meta.sizeBytes + 1 }, 4096))).rejects.toThrow(CorruptionError);
    });

    it('prunes all but the newest snapshots, ordered by (term, index)', async () => {
      const store = await fresh();
      const metas: SnapshotMeta[] = [];
      for (const [i, t] of [[10, 1], [20, 1], [25, 2], [30, 2], [40, 3]] as const) {
        metas.push(await writeSnapshot(store, point(i, t), randomBytes(200)));
      }
      await expect(store.prune(0)).rejects.toThrow(RangeError);
      await store.prune(2);
      expect(await store.latest()).toEqual(metas[4]);
      expect((await collect(store.read(metas[3] as SnapshotMeta, 64))).length).toBeGreaterThan(0);
      await expect(collect(store.read(metas[2] as SnapshotMeta, 64))).rejects.toThrow();
      await store.prune(1);
      await expect(collect(store.read(metas[3] as SnapshotMeta, 64))).rejects.toThrow();
      expect(await store.latest()).toEqual(metas[4]);
    });

    it('finds the latest snapshot again after a restart', async () => {
      const store = await fresh();
      await writeSnapshot(store, point(100, 4), randomBytes(1000));
      const newest = await writeSnapshot(store, point(200, 5), randomBytes(2000));
      const reopened = await (h as SnapshotHarness).reopen();
      expect(await reopened.latest()).toEqual(newest);
      expect(Buffer.concat(await collect(reopened.read(newest, 500))).length).toBe(2000);
    });
  });
}

describe('FileSnapshotStore files', () => {
  let h: Awaited<ReturnType<typeof fileHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });
  async function fresh(): Promise<FileSnapshotStore> {
    h = await fileHarness();
    return openSnapshotStore(h.dir);
  }
  const dir = (): string => (h as { dir: string }).dir;

  it('names files %016x-%016x.snap by term and index, and writes a temp file meanwhile', async () => {
    const store = await fresh();
    expect(snapshotFileName(2, 255)).toBe('0000000000000002-00000000000000ff.snap');
    const sink = store.create(point(255, 2));
    await sink.write(Uint8Array.of(1));
    const during = await readdir(dir());
    expect(during).toHaveLength(1);
    expect(during[0]).toMatch(/^0000000000000002-00000000000000ff\.snap\..*\.tmp$/);
    await sink.finish();
    expect(await readdir(dir())).toEqual(['0000000000000002-00000000000000ff.snap']);
  });

  it('removes stray temp files at open and in prune, but not those of open sinks', async () => {
    const store = await fresh();
    const meta = await writeSnapshot(store, point(1, 1), randomBytes(100));
    await writeFile(join(dir(), `${snapshotFileName(1, 2)}.dead.tmp`), 'partial');
    const reopened = await openSnapshotStore(dir());
    expect(await readdir(dir())).toEqual([snapshotFileName(1, 1)]);
    const open = reopened.create(point(3, 1));
    await open.write(Uint8Array.of(9));
    await writeFile(join(dir(), `${snapshotFileName(1, 2)}.dead.tmp`), 'partial');
    await reopened.prune(1);
    const files = (await readdir(dir())).sort();
    expect(files).toHaveLength(2);
    expect(files[0]).toBe(snapshotFileName(1, 1));
    expect(files[1]).toMatch(/\.tmp$/);
    const finished = await open.finish();
    expect(await reopened.latest()).toEqual(finished);
    expect((await reopened.latest())?.index).not.toBe(meta.index);
  });

  it('skips a newest snapshot whose metadata is damaged or truncated, and prune removes it', async () => {
    const store = await fresh();
    const older = await writeSnapshot(store, point(10, 1), randomBytes(500));
    const newer = await writeSnapshot(store, point(20, 1), randomBytes(500));
    const path = join(dir(), snapshotFileName(1, 20));
    // Flip a byte of the metadata record (just before the footer).
    await h?.damage({ ...newer, sizeBytes: 0 }, newer.sizeBytes + 3);
    expect(await store.latest()).toEqual(older);
    await truncate(path, newer.sizeBytes + SNAPSHOT_FOOTER_BYTES - 1);
    expect(await store.latest()).toEqual(older);
    await writeFile(join(dir(), snapshotFileName(1, 30)), new Uint8Array(3));
    expect(await store.latest()).toEqual(older);
    await store.prune(1);
    expect(await readdir(dir())).toEqual([snapshotFileName(1, 10)]);
  });

  it('detects a payload truncated on disk', async () => {
    const store = await fresh();
    const meta = await writeSnapshot(store, point(10, 1), randomBytes(5000));
    await truncate(join(dir(), snapshotFileName(1, 10)), 4000);
    await expect(collect(store.read(meta, 1024))).rejects.toThrow(CorruptionError);
  });
});
