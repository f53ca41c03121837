/**
 * The replicated auth state: the signing keys of the cluster's tokens, the revoked token ids
 * and the keys trusted for agent card signatures. It is one record (`meta/auth`, msgpackr),
 * written in the batch of the `auth` command that changed it, so every node verifies the same
 * tokens and a key rotation or a revocation is one write through the log. The bounds keep the
 * record small: it is read whole at open and rewritten whole by each (rare) change.
 */
import { CorruptionError } from '../storage/types.js';
import { registryPackr } from './commands.js';
import type { AuthChange, SigningKey } from './types.js';

/** Key of the auth record. */
export const AUTH_KEY = 'meta/auth';
/** Most signing keys kept at once (rotations past it drop the oldest). */
export const MAX_SIGNING_KEYS = 8;
/** Most revoked token ids kept (expired ones are dropped first); a revocation past it is refused. */
export const MAX_REVOKED_TOKENS = 10_000;
/** Most trusted card keys. */
export const MAX_TRUSTED_CARD_KEYS = 64;

/** The auth state as of some applied index. Immutable: every change makes a new one. */
export interface AuthState {
  /** Signing keys, oldest first; the last is the one new tokens are signed with. */
  readonly signingKeys: readonly SigningKey[];
  /** Revoked token ids → their expiry in Unix seconds (0: unknown, kept until dropped for room). */
  readonly revoked: ReadonlyMap<string, number>;
  /** Trusted card keys: key id → public JWK (JSON text). */
  readonly cardKeys: ReadonlyMap<string, string>;
}

/** The state of a cluster that never wrote an auth change. */
export const EMPTY_AUTH_STATE: AuthState = { signingKeys: [], revoked: new Map(), cardKeys: new Map() };

/** Encodes the auth record: `{ k: [[kid, privateJwk, publicJwk]...], r: [[jti, exp]...], c: [[kid, jwk]...] }`. */
export function encodeAuthState(s: AuthState): Uint8Array {
  return registryPackr.pack({
    k: s.signingKeys.map((k) => [k.kid, k.privateJwk, k.publicJwk]),
    r: [...s.revoked],
    c: [...s.cardKeys],
  });
}

/** Decodes the auth record; throws {@link CorruptionError} when it has the wrong shape. */
export function decodeAuthState(v: Uint8Array): AuthState {
  let raw: unknown;
  try {
    raw = registryPackr.unpack(v);
  } catch (err) {
    throw new CorruptionError(`${AUTH_KEY} does not decode: ${(err as Error).message}`);
  }
  const o = raw as { k?: unknown; r?: unknown; c?: unknown } | null;
  if (o === null || typeof o !== 'object' || !Array.isArray(o.k) || !Array.isArray(o.r) || !Array.isArray(o.c)) {
    throw new CorruptionError(`${AUTH_KEY} has the wrong shape`);
  }
  const strings = (x: unknown, n: number): x is string[] => Array.isArray(x) && x.length === n && x.every((e) => typeof e === 'string');
  const signingKeys = o.k.map((k: unknown) => {
    if (!strings(k, 3)) throw new CorruptionError(`${AUTH_KEY} holds a malformed signing key`);
    return { kid: k[0] as string, privateJwk: k[1] as string, publicJwk: k[2] as string };
  });
  const revoked = new Map<string, number>();
  for (const r of o.r as unknown[]) {
    if (!Array.isArray(r) || typeof r[0] !== 'string' || typeof r[1] !== 'number') throw new CorruptionError(`${AUTH_KEY} holds a malformed revocation`);
    revoked.set(r[0], r[1]);
  }
  const cardKeys = new Map<string, string>();
  for (const c of o.c as unknown[]) {
    if (!strings(c, 2)) throw new CorruptionError(`${AUTH_KEY} holds a malformed card key`);
    cardKeys.set(c[0] as string, c[1] as string);
  }
  return { signingKeys, revoked, cardKeys };
}

/**
 * Applies one change (deterministic: the same on every node). `nowSec` is the command's leader
 * time, used only to drop expired revocations when the list is full. Returns the new state, or
 * the old one with the `refused` reason.
 */
export function applyAuthChange(s: AuthState, change: AuthChange, nowSec: number): { state: AuthState; refused?: string } {
  switch (change.op) {
    case 'addSigningKey': {
      if (change.ifNone === true && s.signingKeys.length > 0) return { state: s, refused: 'a signing key already exists' };
      if (s.signingKeys.some((k) => k.kid === change.key.kid)) return { state: s, refused: `signing key ${change.key.kid} already exists` };
      const kept = change.retirePrevious === true ? [] : s.signingKeys.slice(Math.max(0, s.signingKeys.length - (MAX_SIGNING_KEYS - 1)));
      return { state: { ...s, signingKeys: [...kept, change.key] } };
    }
    case 'revokeToken': {
      if (s.revoked.has(change.tokenId)) return { state: s };
      const revoked = new Map(s.revoked);
      if (revoked.size >= MAX_REVOKED_TOKENS) {
        for (const [jti, exp] of revoked) if (exp !== 0 && exp < nowSec) revoked.delete(jti);
      }
      if (revoked.size >= MAX_REVOKED_TOKENS) {
        return { state: s, refused: `${MAX_REVOKED_TOKENS} token ids are revoked already: rotate the signing key with retire_previous instead` };
      }
      revoked.set(change.tokenId, change.expiresAtSec);
      return { state: { ...s, revoked } };
    }
    case 'trustCardKey': {
      if (!s.cardKeys.has(change.keyId) && s.cardKeys.size >= MAX_TRUSTED_CARD_KEYS) {
        return { state: s, refused: `${MAX_TRUSTED_CARD_KEYS} card keys are trusted already` };
      }
      const cardKeys = new Map(s.cardKeys);
      cardKeys.set(change.keyId, change.publicJwk);
      return { state: { ...s, cardKeys } };
    }
    case 'untrustCardKey': {
      if (!s.cardKeys.has(change.keyId)) return { state: s, refused: `card key ${change.keyId} is not trusted` };
      const cardKeys = new Map(s.cardKeys);
      cardKeys.delete(change.keyId);
      return { state: { ...s, cardKeys } };
    }
  }
}
