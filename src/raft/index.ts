/** The Raft core's public surface. */
export * from './types.js';
export * from './errors.js';
export { Raft, type RaftConfig, type ReadState, type SoftState, type RaftTestingKnobs, DEFAULT_ELECTION_TICKS, DEFAULT_HEARTBEAT_TICKS, DEFAULT_MAX_INFLIGHT_MSGS, DEFAULT_MAX_SIZE_PER_MSG_BYTES } from './raft.js';
export { RawNode, type Ready, type RaftStatus } from './raw-node.js';
export { MemoryStorage } from './memory-storage.js';
export { seededRandom } from './rand.js';
