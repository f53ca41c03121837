/**
 * The storage layer of a node: the ports ({@link NodeStore} and friends), the LevelDB
 * implementation, the in-memory one for tests, and the on-disk codec.
 */
export {
  CorruptionError,
  type KeyValueReader,
  type LogStore,
  type NodeStore,
  type StableStore,
  type WriteBatch,
} from './types.js';
export {
  HARD_STATE_KEY,
  LOG_SUBLEVEL,
  LevelStore,
  META_SUBLEVEL,
  SM_SUBLEVEL,
  openLevelStore,
} from './level-store.js';
export { MemoryStore } from './memory-store.js';
export {
  CRC_BYTES,
  LOG_KEY_HEX_DIGITS,
  decodeEntry,
  decodeHardState,
  decodeLogKey,
  encodeEntry,
  encodeHardState,
  encodeLogKey,
} from './codec.js';
export { compareUtf8 } from './staging.js';
