/**
 * The storage layer of a node: the ports ({@link NodeStore}, {@link SnapshotStore} and friends),
 * the LevelDB and file implementations, the in-memory ones for tests, and the on-disk codecs.
 */
export {
  CorruptionError,
  type KeyValueReader,
  type LogStore,
  type NodeStore,
  type SnapshotMeta,
  type SnapshotSink,
  type SnapshotStore,
  type StableStore,
  type StateMachineView,
  type WriteBatch,
} from './types.js';
export {
  COMPACTED_KEY,
  HARD_STATE_KEY,
  INSTALL_BATCH_BYTES,
  LOG_SUBLEVEL,
  LevelStore,
  META_SUBLEVEL,
  SM_GENERATION_KEY,
  SM_SUBLEVEL,
  openLevelStore,
  smSublevelName,
  type LevelStoreOptions,
} from './level-store.js';
export { MemoryStore } from './memory-store.js';
export {
  FileSnapshotStore,
  MAX_SNAPSHOT_META_BYTES,
  MemorySnapshotStore,
  SNAPSHOT_FOOTER_BYTES,
  SNAPSHOT_FOOTER_MAGIC,
  SNAPSHOT_SUFFIX,
  TEMP_SUFFIX,
  openSnapshotStore,
  snapshotFileName,
  type SnapshotPoint,
  type SnapshotStoreOptions,
} from './snapshot-store.js';
export { MAX_STATE_FRAME_BYTES, STATE_STREAM_MAGIC, decodeStatePairs, encodeStatePairBatches, encodeStatePairs } from './snapshot-codec.js';
export {
  CRC_BYTES,
  LOG_KEY_HEX_DIGITS,
  decodeCompactionPoint,
  decodeEntry,
  decodeGeneration,
  decodeHardState,
  decodeLogKey,
  encodeCompactionPoint,
  encodeEntry,
  encodeGeneration,
  encodeHardState,
  encodeLogKey,
} from './codec.js';
export { compareUtf8 } from './staging.js';
