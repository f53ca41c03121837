/**
 * A one-node cluster for tests of the real `RaftNode`: a transport with no peers (nothing is ever
 * sent or received) and the options every such test starts from.
 */
import { silentLogger } from '../../src/log.js';
import { nodeId } from '../../src/raft/index.js';
import type { LeaseKeeper } from '../../src/registry/lease-types.js';
import type { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { RaftNodeOptions } from '../../src/server/raft-node.js';
import { MemorySnapshotStore } from '../../src/storage/snapshot-store.js';
import type { NodeStore } from '../../src/storage/types.js';
import type { SnapshotTransport, Transport } from '../../src/transport/types.js';

/** Length of a tick of these nodes, in ms (an election within a few tens of ms). */
export const LONE_TICK_MS = 5;
/** Election timeout of these nodes, in ticks. */
export const LONE_ELECTION_TICKS = 4;

/** A transport that drops everything (a single-node cluster has no one to talk to). */
export function loneTransport(): Transport & SnapshotTransport {
  return {
    send: () => undefined,
    onMessage: () => undefined,
    setPeer: () => undefined,
    removePeer: () => undefined,
    close: async () => undefined,
    sendSnapshot: async () => undefined,
    onSnapshot: () => undefined,
    snapshotFormatsOf: () => undefined,
  };
}

/** Options of node `n1`, the only member, over `store` and `stateMachine`, fast timing; `extra` overrides. */
export function loneNodeOptions(store: NodeStore, stateMachine: RegistryStateMachine, leases: LeaseKeeper, extra: Partial<RaftNodeOptions> = {}): RaftNodeOptions {
  return {
    id: nodeId('n1'),
    bootstrap: [{ id: 'n1', address: '127.0.0.1:1', voter: true }],
    store,
    stateMachine,
    transport: loneTransport(),
    snapshots: new MemorySnapshotStore(),
    logger: silentLogger,
    leases,
    tickMs: LONE_TICK_MS,
    electionTicks: LONE_ELECTION_TICKS,
    ...extra,
  };
}
