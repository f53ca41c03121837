/**
 * What a node checks of a snapshot payload before the core may step it (`SnapshotStateCheck`),
 * and which payload format a leader sends a follower (`payloadFormatFor`).
 */
import { describe, expect, it } from 'vitest';
import { AUTH_KEY, EMPTY_AUTH_STATE, encodeAuthState } from '../../src/registry/auth-state.js';
import { registryPackr } from '../../src/registry/commands.js';
import { APPLIED_INDEX_KEY } from '../../src/registry/keys.js';
import { SnapshotStateCheck } from '../../src/registry/state-machine.js';
import { payloadFormatFor, UNADVERTISED_PEER_PAYLOAD_FORMAT } from '../../src/server/snapshots.js';
import { STATE_PAYLOAD_FORMAT } from '../../src/storage/snapshot-codec.js';
import { CorruptionError } from '../../src/storage/types.js';

const applied = (n: number): [string, Uint8Array] => [APPLIED_INDEX_KEY, registryPackr.pack(n)];

/** Runs a fresh check for snapshot `index` over `pairs`, then its end. */
function check(index: number, pairs: readonly [string, Uint8Array][]): void {
  const c = new SnapshotStateCheck(index);
  for (const [k, v] of pairs) c.pair(k, v);
  c.end();
}

describe('SnapshotStateCheck: a payload must hold the state its metadata names', () => {
  it('passes a payload applied through the snapshot\'s index, with or without an auth state', () => {
    expect(() => check(42, [['agent/a', Uint8Array.of(1)], applied(42)])).not.toThrow();
    expect(() => check(42, [[AUTH_KEY, encodeAuthState(EMPTY_AUTH_STATE)], applied(42)])).not.toThrow();
  });

  it('refuses another applied index, none, one that is not a log index, an auth state that does not decode, and an empty key', () => {
    const cases: [string, readonly [string, Uint8Array][], RegExp][] = [
      ['another index', [applied(41)], /applied through 41, not the 42 its metadata names/],
      ['no applied index', [['agent/a', Uint8Array.of(1)]], /holds no meta\/applied/],
      ['not a log index', [[APPLIED_INDEX_KEY, registryPackr.pack('42')]], /does not hold a log index/],
      ['a negative index', [[APPLIED_INDEX_KEY, registryPackr.pack(-1)]], /does not hold a log index/],
      ['auth state', [[AUTH_KEY, Uint8Array.of(0xc1)], applied(42)], /meta\/auth/],
      ['empty key', [['', Uint8Array.of(1)], applied(42)], /empty key/],
    ];
    for (const [what, pairs, message] of cases) {
      let error: unknown;
      try {
        check(42, pairs);
      } catch (e) {
        error = e;
      }
      expect(error, what).toBeInstanceOf(CorruptionError);
      expect(String(error), what).toMatch(message);
    }
  });
});

describe('payloadFormatFor: a format the follower reads', () => {
  it('sends the newest common format, format 2 to a follower that advertised none, and ours to one that knows none of ours', () => {
    expect(payloadFormatFor([1, 2, 3])).toBe(3);
    expect(payloadFormatFor([3, 2, 1])).toBe(3);
    expect(payloadFormatFor([1, 2])).toBe(2);
    expect(payloadFormatFor([1])).toBe(1);
    expect(payloadFormatFor([2, 3, 4])).toBe(3);
    expect(payloadFormatFor(undefined)).toBe(UNADVERTISED_PEER_PAYLOAD_FORMAT);
    expect(UNADVERTISED_PEER_PAYLOAD_FORMAT).toBe(2);
    expect(payloadFormatFor([4, 5])).toBe(STATE_PAYLOAD_FORMAT);
  });
});
