/**
 * The watch hub against a real state machine on an in-memory store: history replay then live
 * events with no gap or duplicate, the compacted case (OUT_OF_RANGE with the oldest revision),
 * filters, and a slow watcher cut off instead of slowing the node.
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { encodeCommand } from '../../src/registry/commands.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { AgentSpec, WatchEvent } from '../../src/registry/types.js';
import { MAX_WATCHER_BUFFERED_EVENTS, WatchError, WatchHub, type WatchSink } from '../../src/server/watch-hub.js';
import { MemoryStore } from '../../src/storage/memory-store.js';

const spec = (id: string, kind = 'service'): AgentSpec => ({ id, name: id, kind, version: '1', description: '', capabilities: [], endpoints: {}, labels: {} });

async function setup(window?: number) {
  const store = new MemoryStore();
  const sm = new RegistryStateMachine(store, silentLogger, window ? { eventHistoryRevisions: window } : {});
  await sm.open();
  const hub = new WatchHub(sm, silentLogger);
  let index = 0;
  /** Applies register commands as committed entries and publishes their events, as the node does. */
  const apply = async (ids: string[], kind = 'service') => {
    const entries: Entry[] = ids.map((id) => ({ index: logIndex(++index), term: term(1), type: 'normal', data: encodeCommand({ type: 'register', requestId: `r${index}`, agent: spec(id, kind) }) }));
    const batch = store.batch();
    await sm.applyEntries(entries, batch);
    await batch.write();
    sm.commitApplied(batch);
    hub.publish(sm.takeCommittedEvents());
  };
  return { sm, hub, apply };
}

function recorder(): WatchSink & { events: WatchEvent[]; error: WatchError | undefined } {
  const r = {
    events: [] as WatchEvent[],
    error: undefined as WatchError | undefined,
    send(e: WatchEvent) {
      r.events.push(e);
      return true;
    },
    onDrain() {},
    fail(err: WatchError) {
      r.error = err;
    },
  };
  return r;
}

describe('WatchHub', () => {
  it('replays the history from the start revision, then follows live events, with no gap or duplicate', async () => {
    const { hub, apply } = await setup();
    await apply(['a', 'b', 'c']);
    const sink = recorder();
    const cancel = await hub.watch(2, {}, sink);
    await apply(['d']);
    await apply(['e', 'f']);
    expect(sink.events.map((e) => `${e.revision}:${e.agent.id}`)).toEqual(['2:b', '3:c', '4:d', '5:e', '6:f']);
    cancel();
    await apply(['g']);
    expect(sink.events).toHaveLength(5);
  });

  it('start revision 0 means from now', async () => {
    const { hub, apply } = await setup();
    await apply(['a']);
    const sink = recorder();
    await hub.watch(0, {}, sink);
    await apply(['b']);
    expect(sink.events.map((e) => e.agent.id)).toEqual(['b']);
  });

  it('filters by id prefix and kind', async () => {
    const { hub, apply } = await setup();
    const sink = recorder();
    await hub.watch(1, { idPrefix: 'x-', kind: 'mcp-server' }, sink);
    await apply(['x-1', 'y-1'], 'mcp-server');
    await apply(['x-2'], 'service');
    await apply(['x-3'], 'mcp-server');
    expect(sink.events.map((e) => e.agent.id)).toEqual(['x-1', 'x-3']);
  });

  it('a start revision older than the history answers OUT_OF_RANGE naming the oldest revision kept', async () => {
    const { hub, apply } = await setup(5);
    for (let i = 0; i < 12; i++) await apply([`a${i}`]);
    const err = await hub.watch(2, {}, recorder()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WatchError);
    expect((err as WatchError).kind).toBe('out_of_range');
    expect((err as WatchError).oldestRevision).toBe(8);
    const ok = recorder();
    await hub.watch(8, {}, ok);
    expect(ok.events.map((e) => e.revision)).toEqual([8, 9, 10, 11, 12]);
  });

  it('cuts off a watcher that stops consuming instead of buffering without bound', async () => {
    const { hub, apply } = await setup();
    const stuck: WatchSink & { error?: WatchError } = {
      send: () => false,
      onDrain: () => undefined,
      fail(err) {
        stuck.error = err;
      },
    };
    await hub.watch(0, {}, stuck);
    const ids = Array.from({ length: MAX_WATCHER_BUFFERED_EVENTS + 2 }, (_, i) => `s${i}`);
    for (let i = 0; i < ids.length; i += 1000) await apply(ids.slice(i, i + 1000));
    expect(stuck.error?.kind).toBe('resource_exhausted');
    expect(hub.size).toBe(0);
  });
});
