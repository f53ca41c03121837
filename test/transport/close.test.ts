import { describe, it, expect, afterEach } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { logIndex, nodeId, term, type Message } from '../../src/raft/types.js';
import { bind, connectAll, startNode, stopNode, waitConnected, waitFor } from './helpers.js';

/** Counts of the process's active handles and requests by kind (Node's own resource names). */
function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

const IO_KINDS = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'Immediate'] as const;

/**
 * Records the timeouts and immediates created from files whose path contains `fragment` and
 * that have neither fired nor been cleared yet. Call `restore` to put the globals back.
 */
function trackTimers(fragment: string): { pending: () => number; restore: () => void } {
  const real = { setTimeout, clearTimeout, setImmediate, clearImmediate };
  const live = new Set<unknown>();
  const fromUs = (): boolean => new Error().stack?.includes(fragment) ?? false;
  globalThis.setTimeout = ((cb: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t = real.setTimeout((...a: unknown[]) => {
      live.delete(t);
      cb(...a);
    }, ms, ...args);
    if (fromUs()) live.add(t);
    return t;
  }) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((t?: Parameters<typeof clearTimeout>[0]) => {
    live.delete(t);
    real.clearTimeout(t);
  }) as typeof clearTimeout;
  globalThis.setImmediate = ((cb: (...a: unknown[]) => void, ...args: unknown[]) => {
    const i = real.setImmediate((...a: unknown[]) => {
      live.delete(i);
      cb(...a);
    }, ...args);
    if (fromUs()) live.add(i);
    return i;
  }) as unknown as typeof setImmediate;
  globalThis.clearImmediate = ((i?: Parameters<typeof clearImmediate>[0]) => {
    live.delete(i);
    real.clearImmediate(i);
  }) as typeof clearImmediate;
  return {
    pending: () => live.size,
    restore: () => Object.assign(globalThis, real),
  };
}

describe('GrpcTransport.close', () => {
  let restoreTimers: (() => void) | undefined;
  afterEach(() => restoreTimers?.());

  it('leaves no sockets, servers, timers or immediates behind', async () => {
    const baseline = resources();
    const timers = trackTimers('src/transport/');
    restoreTimers = timers.restore;
    const [a, b] = await Promise.all([startNode('a'), startNode('b')]);
    connectAll([a, b]);
    // A peer that never answers: its stream stays connecting until close.
    a.transport.setPeer(nodeId('ghost'), '127.0.0.1:1');
    // A server without the Raft service: every stream fails at once, so a reconnect timer is
    // pending most of the time.
    const bare = new grpc.Server();
    const barePort = await bind(bare);
    b.transport.setPeer(nodeId('bare'), `127.0.0.1:${barePort}`);
    await waitConnected(a, [b]);
    await waitConnected(b, [a]);
    const hb: Message = { type: 'Heartbeat', from: a.id, to: b.id, term: term(1), leaderCommit: logIndex(0), context: new Uint8Array() };
    a.transport.send([hb, { ...hb, to: nodeId('ghost') }]);
    await waitFor('b receives', () => b.received.length === 1);
    expect(resources().get('TCPSocketWrap') ?? 0).toBeGreaterThan(baseline.get('TCPSocketWrap') ?? 0);

    // Close while a reconnect to the bare server is waiting on its back-off timer.
    await waitFor('b retries the bare server and waits to retry again', () => {
      return (b.transport.stats().peers['bare']?.reconnects ?? 0) >= 2 && timers.pending() > 0;
    });
    await Promise.all([stopNode(a), stopNode(b)]);
    // No timer or immediate of the transport survives close(), not even for a moment.
    timers.restore();
    expect(timers.pending()).toBe(0);
    bare.forceShutdown();
    // Closing again is harmless and sending after close neither throws nor reconnects.
    await a.transport.close();
    expect(() => a.transport.send([hb])).not.toThrow();

    await waitFor('handles back to the baseline', () => {
      const now = resources();
      return IO_KINDS.every((kind) => (now.get(kind) ?? 0) <= (baseline.get(kind) ?? 0));
    });
    const now = resources();
    for (const kind of IO_KINDS) expect(now.get(kind) ?? 0).toBeLessThanOrEqual(baseline.get(kind) ?? 0);
  });
});
