/**
 * Tokens (`src/auth/tokens.ts`) and the replicated auth state (`src/registry/auth-state.ts`):
 * minting and verifying against the state's keys, expiry, revocation and retired keys seen by a
 * verifier that kept the token, the role and namespace rule, and the state's bounded changes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuthError, checkPermission, generateSigningKey, mintToken, normalizeNamespace, TokenVerifier, type Principal } from '../../src/auth/tokens.js';
import { applyAuthChange, decodeAuthState, EMPTY_AUTH_STATE, encodeAuthState, MAX_REVOKED_TOKENS, MAX_SIGNING_KEYS, type AuthState } from '../../src/registry/auth-state.js';

const NOW = 1_800_000_000;

describe('tokens', () => {
  it('verify what was minted with a key of the state, and name the principal, role and namespaces', async () => {
    const key = await generateSigningKey();
    const state: AuthState = { ...EMPTY_AUTH_STATE, signingKeys: [key] };
    const v = new TokenVerifier(() => state, () => NOW);
    const { token, tokenId } = await mintToken(key, { name: 'alice', role: 'writer', namespaces: ['io.github.alice/*'], ttlSeconds: 60 }, NOW);
    const p = await v.verify(token);
    expect(p).toEqual({ name: 'alice', role: 'writer', namespaces: ['io.github.alice'], tokenId, expiresAtSec: NOW + 60 });
  });

  it('refuse an expired, a revoked and a retired-key token even after the verifier kept it', async () => {
    const key = await generateSigningKey();
    let state: AuthState = { ...EMPTY_AUTH_STATE, signingKeys: [key] };
    let now = NOW;
    const v = new TokenVerifier(() => state, () => now);
    const short = await mintToken(key, { name: 'r', role: 'reader', ttlSeconds: 10 }, NOW);
    const revoked = await mintToken(key, { name: 'r', role: 'reader' }, NOW);
    const retired = await mintToken(key, { name: 'r', role: 'reader' }, NOW);
    for (const t of [short, revoked, retired]) await v.verify(t.token);
    now = NOW + 10;
    await expect(v.verify(short.token)).rejects.toThrow(/expired/);
    state = applyAuthChange(state, { op: 'revokeToken', tokenId: revoked.tokenId, expiresAtSec: 0 }, now).state;
    await expect(v.verify(revoked.token)).rejects.toThrow(/revoked/);
    const next = await generateSigningKey();
    state = applyAuthChange(state, { op: 'addSigningKey', key: next, retirePrevious: true }, now).state;
    await expect(v.verify(retired.token)).rejects.toThrow(/retired/);
  });

  it('refuse a token signed by a key the state does not hold, and garbage', async () => {
    const key = await generateSigningKey();
    const other = await generateSigningKey();
    const v = new TokenVerifier(() => ({ ...EMPTY_AUTH_STATE, signingKeys: [key] }), () => NOW);
    const foreign = await mintToken(other, { name: 'm', role: 'admin' }, NOW);
    await expect(v.verify(foreign.token)).rejects.toThrow(/unknown key/);
    // The same key id with another key: the signature does not verify.
    const impostor = await mintToken({ ...other, kid: key.kid }, { name: 'm', role: 'admin' }, NOW);
    await expect(v.verify(impostor.token)).rejects.toThrow(/signature does not verify/);
    for (const junk of ['', 'a.b.c', 'x'.repeat(9_000), '😀.😀.😀']) {
      const err = await v.verify(junk).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AuthError);
      expect((err as AuthError).kind).toBe('unauthenticated');
    }
  });

  it('refuse bad claims when minting', async () => {
    const key = await generateSigningKey();
    await expect(mintToken(key, { name: 'w', role: 'writer' }, NOW)).rejects.toThrow(/at least one namespace/);
    await expect(mintToken(key, { name: 'r', role: 'reader', namespaces: ['io.x'] }, NOW)).rejects.toThrow(/namespaces are for writer/);
    await expect(mintToken(key, { name: 'x', role: 'root' as never }, NOW)).rejects.toThrow(/role must be one of/);
    await expect(mintToken(key, { name: 'w', role: 'writer', namespaces: ['io.*'] }, NOW)).rejects.toThrow(/namespace/);
  });
});

describe('checkPermission', () => {
  const principal = (role: Principal['role'], namespaces: string[] = []): Principal => ({ name: 'p', role, namespaces, tokenId: 't', expiresAtSec: 0 });

  it('lets a reader read only, a writer write under its namespaces, an admin everything', () => {
    expect(() => checkPermission(principal('reader'), 'read')).not.toThrow();
    expect(() => checkPermission(principal('reader'), 'write', ['a/b'])).toThrow(/needs role writer/);
    expect(() => checkPermission(principal('writer', ['io.github.alice']), 'write', ['io.github.alice/x'])).not.toThrow();
    expect(() => checkPermission(principal('writer', ['io.github.alice']), 'heartbeat', ['io.github.bob/x'])).toThrow(/only under io\.github\.alice\//);
    expect(() => checkPermission(principal('writer', ['io.github.alice']), 'admin')).toThrow(/needs role admin/);
    expect(() => checkPermission(principal('admin'), 'admin')).not.toThrow();
    expect(() => checkPermission(principal('admin'), 'write', ['any/id'])).not.toThrow();
  });

  it('never lets a writer past its namespace boundary (property)', () => {
    const segment = fc.stringMatching(/^[a-z0-9.]{1,8}$/);
    fc.assert(
      fc.property(segment, segment, fc.string({ maxLength: 8 }), fc.constantFrom('own', 'glued', 'other', 'prefix'), (ns, other, rest, shape) => {
        const p = principal('writer', [normalizeNamespace(ns)]);
        // Inside the namespace, glued to it (io.github.alicexyz), another one, or a prefix of it.
        const id = shape === 'own' ? `${ns}/${rest}` : shape === 'glued' ? `${ns}${other}/${rest}` : shape === 'other' ? `${other}/${rest}` : `${ns.slice(0, -1)}/${rest}`;
        const allowed = id.startsWith(`${ns}/`);
        let ok = true;
        try {
          checkPermission(p, 'write', [id]);
        } catch {
          ok = false;
        }
        expect(ok).toBe(allowed);
      }),
      { numRuns: 500, seed: 12 },
    );
  });
});

describe('the replicated auth state', () => {
  it('round-trips through its record', async () => {
    const key = await generateSigningKey();
    let s = applyAuthChange(EMPTY_AUTH_STATE, { op: 'addSigningKey', key }, NOW).state;
    s = applyAuthChange(s, { op: 'revokeToken', tokenId: 'jti-1', expiresAtSec: NOW + 5 }, NOW).state;
    s = applyAuthChange(s, { op: 'trustCardKey', keyId: 'card-1', publicJwk: '{"kty":"OKP"}' }, NOW).state;
    expect(decodeAuthState(encodeAuthState(s))).toEqual(s);
  });

  it('creates the bootstrap key once (ifNone), keeps at most MAX_SIGNING_KEYS, refuses what it cannot hold', async () => {
    const a = await generateSigningKey();
    const b = await generateSigningKey();
    let s = applyAuthChange(EMPTY_AUTH_STATE, { op: 'addSigningKey', key: a, ifNone: true }, NOW).state;
    const race = applyAuthChange(s, { op: 'addSigningKey', key: b, ifNone: true }, NOW);
    expect(race.refused).toMatch(/already exists/);
    expect(race.state.signingKeys.map((k) => k.kid)).toEqual([a.kid]);
    for (let i = 0; i < MAX_SIGNING_KEYS + 2; i++) s = applyAuthChange(s, { op: 'addSigningKey', key: { ...b, kid: `k${i}` } }, NOW).state;
    expect(s.signingKeys).toHaveLength(MAX_SIGNING_KEYS);
    expect(s.signingKeys.at(-1)?.kid).toBe(`k${MAX_SIGNING_KEYS + 1}`);
    expect(applyAuthChange(s, { op: 'untrustCardKey', keyId: 'none' }, NOW).refused).toMatch(/not trusted/);
  });

  it('drops expired revocations to make room, and refuses a revocation when none has expired', () => {
    const revoked = new Map(Array.from({ length: MAX_REVOKED_TOKENS }, (_, i) => [`j${i}`, i === 0 ? NOW - 1 : 0] as [string, number]));
    const full: AuthState = { ...EMPTY_AUTH_STATE, revoked };
    const after = applyAuthChange(full, { op: 'revokeToken', tokenId: 'new', expiresAtSec: 0 }, NOW);
    expect(after.refused).toBeUndefined();
    expect(after.state.revoked.has('j0')).toBe(false);
    expect(after.state.revoked.has('new')).toBe(true);
    const stillFull = applyAuthChange(after.state, { op: 'revokeToken', tokenId: 'newer', expiresAtSec: 0 }, NOW);
    expect(stillFull.refused).toMatch(/revoked already/);
  });
});
