/**
 * Snapshot files of a node, in the shape of hashicorp/raft's `FileSnapshotStore` with etcd's
 * snapshotter file names: `<term>-<index>.snap`, both as 16 lower-case hex digits, so that file
 * names sort by (term, index). Within one log, term and index grow together, so the last name is
 * the newest snapshot.
 *
 * File format (integers big-endian), one file holding payload and metadata, so that one rename
 * publishes both:
 *
 * ```
 * payload                                 sizeBytes bytes (see `snapshot-codec.ts`)
 * msgpack({ format: 1, index, term, confState: { voters, learners }, sizeBytes, crc32 })
 * u32 metadataLength ‖ u32 crc32(metadata) ‖ "RSN1"     the 12-byte footer
 * ```
 *
 * A sink writes to `<name>.<unique>.tmp` while computing the payload's running CRC32 and size;
 * `finish()` appends metadata and footer, fsyncs the file, renames it into place and fsyncs the
 * directory. A crash before the rename leaves only the temp file, removed at the next open or by
 * `prune`. `latest()` returns the newest file whose metadata decodes and skips (with a warning)
 * a damaged one; `read()` checks the payload's size and CRC32 as it streams it.
 *
 * {@link MemorySnapshotStore} has the same behaviour without a disk, for tests and simulation.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { silentLogger, type Logger } from '../log.js';
import type { ConfState, LogIndex, NodeId, Term } from '../raft/types.js';
import { CorruptionError, type SnapshotMeta, type SnapshotSink, type SnapshotStore } from './types.js';

/** File name suffix of a finished snapshot. */
export const SNAPSHOT_SUFFIX = '.snap';
/** File name suffix of a snapshot being written. */
export const TEMP_SUFFIX = '.tmp';
/** The last 4 bytes of every snapshot file: "RSN1". */
export const SNAPSHOT_FOOTER_MAGIC = 0x52534e31;
/** Bytes of the footer: metadata length, metadata CRC32, magic (u32 each). */
export const SNAPSHOT_FOOTER_BYTES = 12;
/** Largest metadata record accepted, in bytes. */
export const MAX_SNAPSHOT_META_BYTES = 1024 * 1024;
/** Version of the metadata record. */
const META_FORMAT = 1;
/** Hex digits of the term and the index in a file name. */
const NAME_HEX_DIGITS = 16;
/** Random bytes that make a temp file name unique. */
const TEMP_ID_BYTES = 6;
const SNAPSHOT_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

const packr = new Packr({ useRecords: false });

/** What {@link SnapshotStore.create} takes: the point of the log a snapshot covers. */
export type SnapshotPoint = { index: LogIndex; term: Term; confState: ConfState };

/**
 * The file name of the snapshot at (`term`, `index`): `%016x-%016x.snap` as etcd names them.
 * Throws `RangeError` when either is not a non-negative safe integer.
 */
export function snapshotFileName(term: number, index: number): string {
  checkNat(term, 'term');
  checkNat(index, 'index');
  return `${term.toString(16).padStart(NAME_HEX_DIGITS, '0')}-${index.toString(16).padStart(NAME_HEX_DIGITS, '0')}${SNAPSHOT_SUFFIX}`;
}

function checkNat(x: unknown, what: string): asserts x is number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${String(x)}`);
  }
}

function isNat(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Checks and copies a snapshot point; throws `RangeError`/`TypeError` naming the bad field. */
function checkPoint(meta: SnapshotPoint): SnapshotPoint {
  if (typeof meta !== 'object' || meta === null) throw new TypeError('snapshot metadata must be an object');
  checkNat(meta.index, 'index');
  checkNat(meta.term, 'term');
  const cs = meta.confState;
  if (typeof cs !== 'object' || cs === null || !Array.isArray(cs.voters) || !Array.isArray(cs.learners)
    || ![...cs.voters, ...cs.learners].every((id) => typeof id === 'string')) {
    throw new TypeError('confState must be { voters: string[], learners: string[] }');
  }
  return { index: meta.index, term: meta.term, confState: { voters: [...cs.voters], learners: [...cs.learners] } };
}

/** Checks `chunkBytes` of a read; throws `RangeError` unless it is a positive safe integer. */
function checkChunkBytes(chunkBytes: number): void {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) {
    throw new RangeError(`chunkBytes must be a positive integer, got ${String(chunkBytes)}`);
  }
}

/** Metadata record and footer appended to a payload. */
function encodeTrailer(meta: SnapshotMeta): Uint8Array {
  const body = packr.pack({
    format: META_FORMAT,
    index: meta.index,
    term: meta.term,
    confState: { voters: [...meta.confState.voters], learners: [...meta.confState.learners] },
    sizeBytes: meta.sizeBytes,
    crc32: meta.crc32,
  });
  const out = Buffer.alloc(body.byteLength + SNAPSHOT_FOOTER_BYTES);
  out.set(body, 0);
  out.writeUInt32BE(body.byteLength, body.byteLength);
  out.writeUInt32BE(crc32(body) >>> 0, body.byteLength + 4);
  out.writeUInt32BE(SNAPSHOT_FOOTER_MAGIC, body.byteLength + 8);
  return out;
}

/**
 * Decodes a metadata record; throws {@link CorruptionError} naming `where` when a field is
 * missing or of the wrong type.
 */
function decodeMeta(body: Uint8Array, where: string): SnapshotMeta {
  let d: unknown;
  try {
    d = packr.unpack(body);
  } catch (err) {
    throw new CorruptionError(`snapshot metadata of ${where} does not decode: ${(err as Error).message}`);
  }
  if (typeof d !== 'object' || d === null) throw new CorruptionError(`snapshot metadata of ${where} is not a map`);
  const { format, index, term, confState, sizeBytes, crc32: crc } = d as Record<string, unknown>;
  if (format !== META_FORMAT) throw new CorruptionError(`snapshot metadata of ${where} has an unknown format ${String(format)}`);
  if (!isNat(index) || !isNat(term) || !isNat(sizeBytes) || !isNat(crc) || crc > 0xffffffff) {
    throw new CorruptionError(`snapshot metadata of ${where} has a bad index, term, size or crc32`);
  }
  const cs = confState as { voters?: unknown; learners?: unknown } | null;
  const ids = (x: unknown): x is NodeId[] => Array.isArray(x) && x.every((id) => typeof id === 'string');
  if (typeof cs !== 'object' || cs === null || !ids(cs.voters) || !ids(cs.learners)) {
    throw new CorruptionError(`snapshot metadata of ${where} has a bad confState`);
  }
  return {
    index: index as LogIndex,
    term: term as Term,
    confState: { voters: cs.voters, learners: cs.learners },
    sizeBytes,
    crc32: crc,
  };
}

/** Reads exactly `length` bytes at `position`; throws {@link CorruptionError} if the file is shorter. */
async function readExactly(fh: FileHandle, length: number, position: number, where: string): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new CorruptionError(`${where} is truncated`);
    filled += bytesRead;
  }
  return buf;
}

/** Writes all of `bytes` at the file's current position. */
async function writeFully(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.byteLength - off);
    off += bytesWritten;
  }
}

/** fsyncs a directory so that renames and unlinks in it are durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** Options of {@link openSnapshotStore}. */
export interface SnapshotStoreOptions {
  /** Where warnings go (a damaged snapshot skipped); silent by default. */
  readonly logger?: Logger;
}

/**
 * Opens (creating as needed, parents included) the snapshot directory `dir` (a node passes
 * `<dataDir>/snapshots`) and removes the temp files a crash left there. Rejects when the
 * directory cannot be created or read.
 */
export async function openSnapshotStore(dir: string, options: SnapshotStoreOptions = {}): Promise<FileSnapshotStore> {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir must be a non-empty path');
  await mkdir(dir, { recursive: true });
  const store = new FileSnapshotStore(dir, options.logger ?? silentLogger);
  await store.removeStrayTemps();
  return store;
}

/** The {@link SnapshotStore} over a directory; open it with {@link openSnapshotStore}. */
export class FileSnapshotStore implements SnapshotStore {
  private readonly logger: Logger;
  /** Temp files of sinks still open: `prune` leaves them alone. */
  private readonly activeTemps = new Set<string>();

  /** Wraps an existing directory; use {@link openSnapshotStore}, which also removes stray temp files. */
  constructor(readonly dir: string, logger: Logger = silentLogger) {
    this.logger = logger.child({ component: 'snapshot-store' });
  }

  /**
   * Starts a snapshot at (`index`, `term`) with `confState`. Nothing is visible until the sink's
   * `finish()` resolves; finishing a snapshot of the same (term, index) replaces the file. Throws
   * `RangeError`/`TypeError` on malformed metadata.
   */
  create(meta: SnapshotPoint): SnapshotSink {
    const point = checkPoint(meta);
    const name = snapshotFileName(point.term, point.index);
    const temp = `${name}.${randomBytes(TEMP_ID_BYTES).toString('hex')}${TEMP_SUFFIX}`;
    return new FileSnapshotSink(this.dir, name, temp, point, this.activeTemps);
  }

  /**
   * The newest snapshot whose metadata decodes, or `undefined`; a damaged newer file is skipped
   * with a warning. Rejects when the directory cannot be read.
   */
  async latest(): Promise<SnapshotMeta | undefined> {
    for (const name of await this.snapshotNames()) {
      try {
        return await this.readMeta(name);
      } catch (err) {
        if (!(err instanceof CorruptionError) && !isNotFound(err)) throw err;
        this.logger.warn({ err, file: join(this.dir, name) }, 'skipping a damaged snapshot');
      }
    }
    return undefined;
  }

  /**
   * Streams the payload of the snapshot `meta` names in chunks of at most `chunkBytes` (each a
   * fresh buffer); throws {@link CorruptionError} at the end when the file's payload is shorter
   * than `meta.sizeBytes` or its CRC32 differs, `RangeError` on a bad `chunkBytes`, and the file
   * system's error when the file is gone.
   */
  read(meta: SnapshotMeta, chunkBytes: number): AsyncIterable<Uint8Array> {
    checkChunkBytes(chunkBytes);
    const path = join(this.dir, snapshotFileName(meta.term, meta.index));
    return readPayload(path, meta, chunkBytes);
  }

  /**
   * Deletes every snapshot file but the newest `retain` whose metadata decodes (damaged files
   * go too), and every temp file not held by an open sink. Throws `RangeError` when `retain` is
   * not a positive integer.
   */
  async prune(retain: number): Promise<void> {
    if (!Number.isSafeInteger(retain) || retain < 1) throw new RangeError(`retain must be a positive integer, got ${String(retain)}`);
    let kept = 0;
    let removed = 0;
    for (const name of await this.snapshotNames()) {
      if (kept < retain) {
        try {
          await this.readMeta(name);
          kept++;
          continue;
        } catch (err) {
          if (isNotFound(err)) continue;
          if (!(err instanceof CorruptionError)) throw err;
          this.logger.warn({ err, file: join(this.dir, name) }, 'removing a damaged snapshot');
        }
      }
      await unlink(join(this.dir, name)).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      removed++;
    }
    removed += await this.removeStrayTemps();
    if (removed > 0) await syncDir(this.dir);
  }

  /**
   * Removes temp files not held by an open sink of this store and returns how many.
   * @internal called at open and by {@link prune}.
   */
  async removeStrayTemps(): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith(TEMP_SUFFIX) || this.activeTemps.has(name)) continue;
      await unlink(join(this.dir, name)).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      removed++;
    }
    return removed;
  }

  /** Finished snapshot file names, newest first. */
  private async snapshotNames(): Promise<string[]> {
    return (await readdir(this.dir)).filter((n) => SNAPSHOT_NAME.test(n)).sort().reverse();
  }

  /** Reads and checks the metadata of file `name`; throws {@link CorruptionError} when damaged. */
  private async readMeta(name: string): Promise<SnapshotMeta> {
    const path = join(this.dir, name);
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size < SNAPSHOT_FOOTER_BYTES) throw new CorruptionError(`snapshot ${path} is truncated (${size} bytes)`);
      const footer = await readExactly(fh, SNAPSHOT_FOOTER_BYTES, size - SNAPSHOT_FOOTER_BYTES, path);
      const metaLength = footer.readUInt32BE(0);
      const metaCrc = footer.readUInt32BE(4);
      if (footer.readUInt32BE(8) !== SNAPSHOT_FOOTER_MAGIC) throw new CorruptionError(`snapshot ${path} has no footer (bad magic)`);
      if (metaLength > MAX_SNAPSHOT_META_BYTES || metaLength > size - SNAPSHOT_FOOTER_BYTES) {
        throw new CorruptionError(`snapshot ${path} has a bad metadata length ${metaLength}`);
      }
      const payloadBytes = size - SNAPSHOT_FOOTER_BYTES - metaLength;
      const body = await readExactly(fh, metaLength, payloadBytes, path);
      if ((crc32(body) >>> 0) !== metaCrc) throw new CorruptionError(`snapshot ${path} fails its metadata checksum`);
      const meta = decodeMeta(body, path);
      if (meta.sizeBytes !== payloadBytes) {
        throw new CorruptionError(`snapshot ${path} holds ${payloadBytes} payload bytes, its metadata says ${meta.sizeBytes}`);
      }
      if (snapshotFileName(meta.term, meta.index) !== name) {
        throw new CorruptionError(`snapshot ${path} holds term ${meta.term} index ${meta.index}, not those of its name`);
      }
      return meta;
    } finally {
      await fh.close();
    }
  }
}

/** Streams `meta.sizeBytes` payload bytes of `path`, checking size and CRC32 at the end. */
async function* readPayload(path: string, meta: SnapshotMeta, chunkBytes: number): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    let crc = 0;
    let off = 0;
    while (off < meta.sizeBytes) {
      const buf = Buffer.alloc(Math.min(chunkBytes, meta.sizeBytes - off));
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, off);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      crc = crc32(chunk, crc);
      off += bytesRead;
      yield chunk;
    }
    if (off !== meta.sizeBytes) throw new CorruptionError(`snapshot ${path} is truncated: ${off} of ${meta.sizeBytes} payload bytes`);
    if ((crc >>> 0) !== meta.crc32) {
      throw new CorruptionError(`snapshot ${path} fails its checksum (expected crc32 ${meta.crc32.toString(16)}, computed ${(crc >>> 0).toString(16)})`);
    }
  } finally {
    await fh.close();
  }
}

/** A sink writing one snapshot file; see {@link FileSnapshotStore.create}. */
class FileSnapshotSink implements SnapshotSink {
  private fh: FileHandle | undefined;
  private crc = 0;
  private size = 0;
  private state: 'open' | 'finished' | 'aborted' = 'open';
  /** Serialises writes, finish and abort. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly name: string,
    private readonly temp: string,
    private readonly point: SnapshotPoint,
    private readonly activeTemps: Set<string>,
  ) {
    activeTemps.add(temp);
  }

  /** Appends `chunk` to the temp file; rejects once finished or aborted. */
  write(chunk: Uint8Array): Promise<void> {
    return this.enqueue(async () => {
      this.checkOpen();
      if (!(chunk instanceof Uint8Array)) throw new TypeError('chunk must be a Uint8Array');
      const fh = await this.handle();
      await writeFully(fh, chunk);
      this.crc = crc32(chunk, this.crc);
      this.size += chunk.byteLength;
    });
  }

  /**
   * Appends metadata and footer, fsyncs, renames the file into place, fsyncs the directory and
   * returns the metadata. Rejects once finished or aborted; on failure the sink stays unfinished
   * and `abort()` removes the temp file.
   */
  finish(): Promise<SnapshotMeta> {
    return this.enqueue(async () => {
      this.checkOpen();
      const meta: SnapshotMeta = { ...this.point, sizeBytes: this.size, crc32: this.crc >>> 0 };
      const fh = await this.handle();
      await writeFully(fh, encodeTrailer(meta));
      await fh.sync();
      await fh.close();
      this.fh = undefined;
      await rename(join(this.dir, this.temp), join(this.dir, this.name));
      this.state = 'finished';
      this.activeTemps.delete(this.temp);
      await syncDir(this.dir);
      return meta;
    });
  }

  /** Closes and removes the temp file; does nothing after a successful `finish()` or a second call. */
  abort(): Promise<void> {
    return this.enqueue(async () => {
      if (this.state !== 'open') return;
      this.state = 'aborted';
      this.activeTemps.delete(this.temp);
      const fh = this.fh;
      this.fh = undefined;
      await fh?.close().catch(() => undefined);
      await unlink(join(this.dir, this.temp)).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    });
  }

  private enqueue<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw new Error(`snapshot sink is already ${this.state}`);
  }

  private async handle(): Promise<FileHandle> {
    if (this.fh === undefined) this.fh = await open(join(this.dir, this.temp), 'wx');
    return this.fh;
  }
}

/** One finished in-memory snapshot: metadata and payload. */
interface MemorySnapshotFile {
  readonly meta: SnapshotMeta;
  readonly payload: Uint8Array;
}

/**
 * An in-memory {@link SnapshotStore} for tests and simulation, with the file store's behaviour:
 * sinks are invisible until finished, `latest()` is the newest by (term, index), `read()` checks
 * size and CRC32, `prune()` keeps the newest `retain`. {@link MemorySnapshotStore.reopen} stands
 * in for a restart (open sinks are lost).
 */
export class MemorySnapshotStore implements SnapshotStore {
  /** Finished snapshots by file name (as the file store would name them). */
  private readonly files: Map<string, MemorySnapshotFile>;
  /** Bumped by {@link reopen}: sinks of an older epoch cannot finish. */
  private readonly epoch: { value: number };

  /** Creates an empty store; {@link reopen} passes the finished snapshots on. */
  constructor(files: Map<string, MemorySnapshotFile> = new Map(), epoch = { value: 0 }) {
    this.files = files;
    this.epoch = epoch;
  }

  /** A new store over the same finished snapshots, as a restart would see them. */
  reopen(): MemorySnapshotStore {
    this.epoch.value++;
    return new MemorySnapshotStore(this.files, this.epoch);
  }

  /** Starts a snapshot; see {@link FileSnapshotStore.create}. */
  create(meta: SnapshotPoint): SnapshotSink {
    const point = checkPoint(meta);
    const epoch = this.epoch.value;
    const chunks: Uint8Array[] = [];
    let size = 0;
    let crc = 0;
    let state: 'open' | 'finished' | 'aborted' = 'open';
    const checkOpen = (): void => {
      if (state !== 'open') throw new Error(`snapshot sink is already ${state}`);
      if (this.epoch.value !== epoch) throw new Error('snapshot store was reopened');
    };
    return {
      write: async (chunk) => {
        checkOpen();
        if (!(chunk instanceof Uint8Array)) throw new TypeError('chunk must be a Uint8Array');
        chunks.push(chunk.slice());
        size += chunk.byteLength;
        crc = crc32(chunk, crc);
      },
      finish: async () => {
        checkOpen();
        const meta: SnapshotMeta = { ...point, sizeBytes: size, crc32: crc >>> 0 };
        const payload = new Uint8Array(size);
        let off = 0;
        for (const c of chunks) {
          payload.set(c, off);
          off += c.byteLength;
        }
        this.files.set(snapshotFileName(point.term, point.index), { meta, payload });
        state = 'finished';
        return meta;
      },
      abort: async () => {
        if (state === 'open') state = 'aborted';
      },
    };
  }

  /** The newest finished snapshot, or `undefined`. */
  async latest(): Promise<SnapshotMeta | undefined> {
    const [newest] = this.names();
    return newest === undefined ? undefined : this.files.get(newest)?.meta;
  }

  /**
   * Streams the payload in chunks of at most `chunkBytes`; throws {@link CorruptionError} at the
   * end on a size or CRC32 mismatch with `meta`, `Error` when no such snapshot is stored.
   */
  read(meta: SnapshotMeta, chunkBytes: number): AsyncIterable<Uint8Array> {
    checkChunkBytes(chunkBytes);
    const name = snapshotFileName(meta.term, meta.index);
    const files = this.files;
    return (async function* () {
      const file = files.get(name);
      if (file === undefined) throw new Error(`snapshot ${name} is not stored`);
      const payload = file.payload;
      let crc = 0;
      const end = Math.min(payload.byteLength, meta.sizeBytes);
      for (let off = 0; off < end; off += chunkBytes) {
        const chunk = payload.slice(off, Math.min(end, off + chunkBytes));
        crc = crc32(chunk, crc);
        yield chunk;
      }
      if (end !== meta.sizeBytes) throw new CorruptionError(`snapshot ${name} is truncated: ${end} of ${meta.sizeBytes} payload bytes`);
      if ((crc >>> 0) !== meta.crc32) throw new CorruptionError(`snapshot ${name} fails its checksum`);
    })();
  }

  /** Keeps the newest `retain` snapshots; throws `RangeError` unless `retain` is a positive integer. */
  async prune(retain: number): Promise<void> {
    if (!Number.isSafeInteger(retain) || retain < 1) throw new RangeError(`retain must be a positive integer, got ${String(retain)}`);
    for (const name of this.names().slice(retain)) this.files.delete(name);
  }

  /**
   * The stored payload of the snapshot `meta` names, changeable in place to simulate damage, or
   * `undefined`.
   */
  payloadOf(meta: SnapshotMeta): Uint8Array | undefined {
    return this.files.get(snapshotFileName(meta.term, meta.index))?.payload;
  }

  /** Finished snapshot names, newest first. */
  private names(): string[] {
    return [...this.files.keys()].sort().reverse();
  }
}
