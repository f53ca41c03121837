/**
 * Where a restarted node's snapshot point comes from (§7, as etcd v3 does it): the state machine
 * in the store is the snapshot, so the point is its applied index, and a store whose log was
 * compacted past what its state machine holds is refused as corrupt rather than served.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { logIndex, nodeId, term, type Entry } from '../../src/raft/index.js';
import { encodeCommand } from '../../src/registry/commands.js';
import { LeaseManager } from '../../src/registry/lease-manager.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import { RaftNode } from '../../src/server/raft-node.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import { CorruptionError } from '../../src/storage/types.js';
import { loneNodeOptions } from './lone-node.js';

/** Applied entries between snapshots on these nodes. */
const THRESHOLD = 4;
/** Registers proposed: past two snapshot points. */
const WRITES = 10;

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

/** Starts a single-node RaftNode over `store`; stopped after the test. */
async function startOn(store: MemoryStore): Promise<RaftNode> {
  const sm = new RegistryStateMachine(store, silentLogger);
  await sm.open();
  const opts = loneNodeOptions(store, sm, new LeaseManager(), { snapshotThresholdEntries: THRESHOLD, snapshotTailEntries: 1 });
  const node = await RaftNode.start(opts);
  stops.push(() => node.stop());
  return node;
}

async function leading(node: RaftNode): Promise<void> {
  for (let i = 0; i < 200 && !node.isLeader; i++) await new Promise((r) => setTimeout(r, 5));
  expect(node.isLeader).toBe(true);
}

describe('a restarted node\'s snapshot point', () => {
  it('is the applied index of its state machine, and the log it keeps starts at its compaction point', async () => {
    const store = new MemoryStore();
    const first = await startOn(store);
    await leading(first);
    for (let i = 0; i < WRITES; i++) {
      await first.propose(encodeCommand({ type: 'register', requestId: `r-${i}`, agent: { id: `a${i}`, name: `a${i}`, kind: 'service', version: '1.0.0', description: '', capabilities: [], endpoints: { http: 'http://127.0.0.1:1' }, labels: {} } }));
    }
    expect(first.status().snapshotIndex).toBeGreaterThanOrEqual(THRESHOLD);
    await first.stop();
    const applied = first.appliedIndex;
    const again = await startOn(store.reopen());
    expect(again.appliedIndex).toBe(applied);
    expect(again.status().snapshotIndex).toBe(applied);
    expect(again.status().firstIndex).toBe(store.log.firstIndex());
    expect(again.status().firstIndex).toBeGreaterThan(1);
  });

  it('refuses a store whose log is compacted past its state machine, naming both indexes', async () => {
    const store = new MemoryStore();
    const entries: Entry[] = Array.from({ length: 8 }, (_, i) => ({ index: logIndex(i + 1), term: term(1), type: 'normal', data: new Uint8Array(0) }));
    const b = store.batch();
    b.appendEntries(entries);
    b.setHardState({ currentTerm: term(1), votedFor: nodeId('n1'), commitIndex: logIndex(8) });
    await b.write({ sync: true });
    const c = store.batch();
    c.compactLog(logIndex(5), term(1));
    await c.write({ sync: true });
    await expect(startOn(store)).rejects.toThrow(CorruptionError);
    await expect(startOn(store)).rejects.toThrow(/applied through 0, behind the log's compaction point 5/);
  });
});
