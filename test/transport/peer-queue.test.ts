import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { logIndex, nodeId, term, type Message } from '../../src/raft/types.js';
import { estimateMessageBytes, PeerQueue } from '../../src/transport/peer-queue.js';
import { encodeBatch } from '../../src/transport/codec.js';
import { arbMessage } from './arbitraries.js';

const hb = (n: number): Message => ({
  type: 'Heartbeat',
  from: nodeId('n1'),
  to: nodeId('n2'),
  term: term(1),
  leaderCommit: logIndex(n),
  context: new Uint8Array(0),
});

describe('PeerQueue', () => {
  it('drops the oldest messages when the message bound is exceeded', () => {
    const q = new PeerQueue({ maxMessages: 3, maxBytes: 1_000 });
    const dropped = [1, 2, 3, 4, 5].map((n) => q.push(hb(n), 10));
    expect(dropped).toEqual([0, 0, 0, 1, 1]);
    expect(q.length).toBe(3);
    expect(q.byteLength).toBe(30);
    const { messages } = q.take(1_000);
    expect(messages.map((m) => (m.type === 'Heartbeat' ? m.leaderCommit : -1))).toEqual([3, 4, 5]);
  });

  it('applies the tighter limits of one push (a peer that is down keeps less), never looser ones', () => {
    const q = new PeerQueue({ maxMessages: 10, maxBytes: 1_000 });
    for (let n = 1; n <= 6; n++) q.push(hb(n), 10);
    expect(q.push(hb(7), 10, { maxMessages: 2, maxBytes: 1_000 })).toBe(5);
    expect(q.take(1_000).messages.map((m) => (m.type === 'Heartbeat' ? m.leaderCommit : -1))).toEqual([6, 7]);
    for (let n = 1; n <= 12; n++) q.push(hb(n), 10, { maxMessages: 100, maxBytes: 100_000 });
    expect(q.length).toBe(10);
  });

  it('drops the oldest messages when the byte bound is exceeded', () => {
    const q = new PeerQueue({ maxMessages: 100, maxBytes: 100 });
    q.push(hb(1), 40);
    q.push(hb(2), 40);
    expect(q.push(hb(3), 40)).toBe(1);
    expect(q.byteLength).toBe(80);
    expect(q.take(1_000).messages.map((m) => (m.type === 'Heartbeat' ? m.leaderCommit : -1))).toEqual([2, 3]);
  });

  it('drops a message that alone exceeds the byte bound', () => {
    const q = new PeerQueue({ maxMessages: 10, maxBytes: 100 });
    q.push(hb(1), 10);
    expect(q.push(hb(2), 500)).toBe(2);
    expect(q.length).toBe(0);
    expect(q.byteLength).toBe(0);
  });

  it('takes up to maxBytes, but always at least one message', () => {
    const q = new PeerQueue({ maxMessages: 10, maxBytes: 10_000 });
    q.push(hb(1), 500);
    q.push(hb(2), 30);
    q.push(hb(3), 30);
    expect(q.take(100).messages).toHaveLength(1);
    expect(q.take(100)).toEqual({ messages: [hb(2), hb(3)], bytes: 60 });
    expect(q.take(100)).toEqual({ messages: [], bytes: 0 });
  });

  it('rejects limits that are not positive integers', () => {
    expect(() => new PeerQueue({ maxMessages: 0, maxBytes: 1 })).toThrow(/maxMessages/);
    expect(() => new PeerQueue({ maxMessages: 1, maxBytes: 1.5 })).toThrow(/maxBytes/);
  });

  it('keeps FIFO order, both bounds and exact byte accounting under any sequence of operations', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), size: fc.integer({ min: 1, max: 60 }) }),
      fc.record({ kind: fc.constant('take' as const), max: fc.integer({ min: 1, max: 200 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const q = new PeerQueue({ maxMessages: 16, maxBytes: 300 });
        const model: { n: number; size: number }[] = [];
        let next = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            model.push({ n: next, size: o.size });
            q.push(hb(next++), o.size);
            const bytes = (): number => model.reduce((s, x) => s + x.size, 0);
            while (model.length > 16 || bytes() > 300) model.shift();
          } else {
            const { messages, bytes } = q.take(o.max);
            const want: typeof model = [];
            let sum = 0;
            while (model.length > 0 && (want.length === 0 || sum + (model[0]?.size ?? 0) <= o.max)) {
              const x = model.shift() as { n: number; size: number };
              want.push(x);
              sum += x.size;
            }
            expect(messages.map((m) => (m.type === 'Heartbeat' ? m.leaderCommit : -1))).toEqual(want.map((x) => x.n));
            expect(bytes).toBe(sum);
          }
          expect(q.length).toBe(model.length);
          expect(q.byteLength).toBe(model.reduce((s, x) => s + x.size, 0));
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('estimateMessageBytes', () => {
  it('is at least the encoded size of the message', () => {
    fc.assert(
      fc.property(arbMessage({ maxBytes: 256 }), (m) => {
        expect(estimateMessageBytes(m)).toBeGreaterThanOrEqual(encodeBatch([m]).length);
      }),
      { numRuns: 300 },
    );
  });
});
