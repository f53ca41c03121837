/**
 * Backups of the registry (etcdctl `snapshot save` / `snapshot restore`): a consistent copy of
 * one node's state machine, taken while it keeps serving, that seeds a new cluster.
 *
 * File format (all integers big-endian):
 *
 * ```
 * "RGBACKUP1\n"                      10 bytes, the magic
 * u32 headerLength, header           JSON: { format: 1, nodeId }
 * payload                            the state machine's key/value pairs (snapshot-codec frames)
 * "RGEND\n" u64 payloadBytes u32 crc32(payload) u64 index u64 term   34 bytes, the trailer
 * ```
 *
 * The index is the state machine's applied index as the copy holds it (read from the copy
 * itself, so header and data always agree), hence its place in the trailer.
 *
 * ```
 * ```
 *
 * A file whose magic, header, size or checksum is wrong is refused with {@link BackupError}
 * before anything of it becomes visible: the restore streams the payload into the store's
 * install, which only switches over once the whole payload checked out.
 */
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { logIndex, type LogIndex, type Term } from '../raft/types.js';
import { encodeMemberChange, registryPackr } from '../registry/commands.js';
import { APPLIED_INDEX_KEY, MEMBERS_KEY } from '../registry/keys.js';
import type { Member } from '../registry/types.js';
import { decodeStatePairs, encodeStatePairBatches } from '../storage/snapshot-codec.js';
import type { NodeStore, StateMachineView } from '../storage/types.js';

/** The first bytes of every backup file. */
export const BACKUP_MAGIC = Buffer.from('RGBACKUP1\n');
/** The marker that starts the trailer. */
export const BACKUP_TRAILER_MAGIC = Buffer.from('RGEND\n');
/** Bytes of the trailer: marker, payload size, CRC32, index, term. */
export const BACKUP_TRAILER_BYTES = BACKUP_TRAILER_MAGIC.length + 8 + 4 + 8 + 8;
/** Largest header accepted, in bytes. */
export const MAX_BACKUP_HEADER_BYTES = 64 * 1024;
/** Chunk size of backup streams, in bytes. */
export const BACKUP_CHUNK_BYTES = 1024 * 1024;

/** What a backup says of itself (header and trailer together). */
export interface BackupHeader {
  readonly format: 1;
  /** The applied index the copy was taken at. */
  readonly index: LogIndex;
  /** The term the new cluster's log continues in. */
  readonly term: Term;
  /** The node the copy was taken from. */
  readonly nodeId: string;
}

/** A file is not a usable backup; `message` says why. Nothing was changed. */
export class BackupError extends Error {
  override readonly name = 'BackupError';
}

/**
 * The bytes of a backup of `view`, in chunks. `termAt` gives the term to record for the applied
 * index found in the copy. Throws {@link BackupError} when the copy holds no applied index.
 */
export async function* backupStream(view: StateMachineView, nodeId: string, termAt: (index: number) => number): AsyncGenerator<Uint8Array> {
  const json = Buffer.from(JSON.stringify({ format: 1, nodeId }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  yield Buffer.concat([BACKUP_MAGIC, len, json]);
  let crc = 0;
  let size = 0;
  let index = 0;
  const batches = (async function* () {
    for await (const batch of view.entryBatches()) {
      for (const [key, value] of batch) if (key === APPLIED_INDEX_KEY) index = registryPackr.unpack(value) as number;
      yield batch;
    }
  })();
  for await (const chunk of encodeStatePairBatches(batches, BACKUP_CHUNK_BYTES)) {
    crc = crc32(chunk, crc);
    size += chunk.byteLength;
    yield chunk;
  }
  if (!Number.isSafeInteger(index) || index < 1) throw new BackupError('the state machine has applied nothing yet: nothing to back up');
  const trailer = Buffer.alloc(BACKUP_TRAILER_BYTES);
  let off = BACKUP_TRAILER_MAGIC.copy(trailer, 0);
  off = trailer.writeBigUInt64BE(BigInt(size), off);
  off = trailer.writeUInt32BE(crc >>> 0, off);
  off = trailer.writeBigUInt64BE(BigInt(index), off);
  trailer.writeBigUInt64BE(BigInt(Math.max(1, termAt(index))), off);
  yield trailer;
}

/** Reads and checks a backup file's header. Throws {@link BackupError}. */
export async function readBackupHeader(path: string): Promise<{ header: BackupHeader; payloadStart: number; payloadBytes: number; crc: number }> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new BackupError(`cannot open backup ${path}: ${e.code ?? e.message}`);
  });
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(BACKUP_MAGIC.length + 4);
    await fh.read(head, 0, head.length, 0);
    if (size < head.length + BACKUP_TRAILER_BYTES || !head.subarray(0, BACKUP_MAGIC.length).equals(BACKUP_MAGIC)) {
      throw new BackupError(`${path} is not a registry backup (bad magic)`);
    }
    const headerLength = head.readUInt32BE(BACKUP_MAGIC.length);
    if (headerLength > MAX_BACKUP_HEADER_BYTES || head.length + headerLength + BACKUP_TRAILER_BYTES > size) {
      throw new BackupError(`${path} has a malformed header`);
    }
    const json = Buffer.alloc(headerLength);
    await fh.read(json, 0, headerLength, head.length);
    let head0: { format?: unknown; nodeId?: unknown };
    try {
      head0 = JSON.parse(json.toString('utf8')) as { format?: unknown; nodeId?: unknown };
    } catch {
      throw new BackupError(`${path} has a header that is not JSON`);
    }
    if (head0.format !== 1) throw new BackupError(`${path} has an unknown format ${JSON.stringify(head0.format)}`);
    const trailer = Buffer.alloc(BACKUP_TRAILER_BYTES);
    await fh.read(trailer, 0, BACKUP_TRAILER_BYTES, size - BACKUP_TRAILER_BYTES);
    if (!trailer.subarray(0, BACKUP_TRAILER_MAGIC.length).equals(BACKUP_TRAILER_MAGIC)) {
      throw new BackupError(`${path} is truncated (no trailer)`);
    }
    let off = BACKUP_TRAILER_MAGIC.length;
    const payloadBytes = Number(trailer.readBigUInt64BE(off));
    const crc = trailer.readUInt32BE(off + 8);
    const index = Number(trailer.readBigUInt64BE(off + 12));
    const term = Number(trailer.readBigUInt64BE(off + 20));
    const payloadStart = head.length + headerLength;
    if (payloadStart + payloadBytes + BACKUP_TRAILER_BYTES !== size) throw new BackupError(`${path} is truncated or padded (size mismatch)`);
    if (!Number.isSafeInteger(index) || index < 1 || !Number.isSafeInteger(term) || term < 1) throw new BackupError(`${path} has a bad index or term`);
    const header: BackupHeader = { format: 1, index: logIndex(index), term: term as Term, nodeId: String(head0.nodeId ?? '') };
    return { header, payloadStart, payloadBytes, crc };
  } finally {
    await fh.close();
  }
}

/** The payload of a checked backup, in chunks; throws {@link BackupError} at the end on a CRC mismatch. */
async function* payloadChunks(path: string, start: number, bytes: number, expectedCrc: number): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    let crc = 0;
    for (let off = 0; off < bytes; ) {
      const n = Math.min(BACKUP_CHUNK_BYTES, bytes - off);
      const buf = Buffer.alloc(n);
      const { bytesRead } = await fh.read(buf, 0, n, start + off);
      if (bytesRead !== n) throw new BackupError(`${path} ended early`);
      crc = crc32(buf, crc);
      off += n;
      yield buf;
    }
    if (crc >>> 0 !== expectedCrc) throw new BackupError(`${path} is corrupt (checksum mismatch)`);
  } finally {
    await fh.close();
  }
}

/**
 * Seeds an empty store from a backup for a new cluster of `members` (every node of the new
 * cluster restores the same file with the same members): the state machine becomes the backup's
 * (its old membership dropped), the log restarts after the backup's index with one `config` entry
 * per member, committed, exactly as a fresh bootstrap writes them. Throws {@link BackupError} for
 * a bad file or a store that is not empty; nothing is changed then.
 */
export async function restoreBackup(store: NodeStore, path: string, members: readonly Member[]): Promise<BackupHeader> {
  if (store.log.lastIndex() > 0 || (await store.stable.hardState()) !== undefined) {
    throw new BackupError('the data dir is not empty: restore seeds a new node only');
  }
  const { header, payloadStart, payloadBytes, crc } = await readBackupHeader(path);
  const pairs = (async function* () {
    for await (const [key, value] of decodeStatePairs(payloadChunks(path, payloadStart, payloadBytes, crc))) {
      if (key !== MEMBERS_KEY) yield [key, value] as [string, Uint8Array];
    }
  })();
  const index = header.index;
  const term = header.term;
  try {
    await store.installStateMachine(pairs, (batch) => {
      batch.resetLog(index, term);
      batch.appendEntries(
        members.map((m, i) => ({
          index: logIndex(index + 1 + i),
          term,
          type: 'config' as const,
          data: encodeMemberChange({ type: m.voter ? 'addVoter' : 'addLearner', nodeId: m.id, address: m.address }),
        })),
      );
      batch.setHardState({ currentTerm: term, votedFor: '' as never, commitIndex: logIndex(index + members.length) });
    });
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError(`${path} could not be restored: ${(err as Error).message}`);
  }
  // The log now starts after `index`; the restored state machine, applied through it, is the
  // snapshot that covers it (see `RaftNode.start`).
  return header;
}
