/**
 * The cluster membership as the state machine keeps it (under `MEMBERS_KEY`, in the batch of
 * the `config` entry that changed it; Raft applies the same change to its progress separately,
 * thesis §4.1): members in the order they were added.
 */
import { assertNever } from '../raft/types.js';
import { CorruptionError } from '../storage/types.js';
import { registryPackr } from './commands.js';
import { MEMBERS_KEY } from './keys.js';
import type { Member, MemberChange } from './types.js';

/** The membership after `change`: a learner added, a member made a voter (added if new), or removed. */
export function nextMembers(current: readonly Member[], change: MemberChange): Member[] {
  const existing = current.find((m) => m.id === change.nodeId);
  switch (change.type) {
    case 'addLearner':
      return existing ? [...current] : [...current, { id: change.nodeId, address: change.address, voter: false }];
    case 'addVoter':
      return existing
        ? current.map((m) => (m.id === change.nodeId ? { id: m.id, address: change.address || m.address, voter: true } : m))
        : [...current, { id: change.nodeId, address: change.address, voter: true }];
    case 'removeNode':
      return current.filter((m) => m.id !== change.nodeId);
    default:
      return assertNever(change.type);
  }
}

/** Encodes the membership record: `[[id, address, voter], ...]`. */
export function encodeMembers(members: readonly Member[]): Uint8Array {
  return registryPackr.pack(members.map((m) => [m.id, m.address, m.voter]));
}

/** Decodes the membership record; throws {@link CorruptionError}. */
export function decodeMembers(v: Uint8Array): Member[] {
  const raw = registryPackr.unpack(v) as unknown;
  if (!Array.isArray(raw)) throw new CorruptionError(`${MEMBERS_KEY} does not decode`);
  return raw.map((m: unknown) => {
    if (!Array.isArray(m) || typeof m[0] !== 'string' || typeof m[1] !== 'string' || typeof m[2] !== 'boolean') {
      throw new CorruptionError(`${MEMBERS_KEY} holds a malformed member`);
    }
    return { id: m[0], address: m[1], voter: m[2] };
  });
}
