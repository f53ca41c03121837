/**
 * Bearer tokens: JWTs (RFC 7519) signed with EdDSA / Ed25519 (RFC 8037) by the cluster's
 * signing keys, which live in the replicated state (`src/registry/auth-state.ts`), so every
 * node verifies the same tokens and a rotation is one write. Claims: `iss`
 * ({@link TOKEN_ISSUER}), `sub` (the principal, recorded as `modified_by`), `role`, `ns` (a
 * writer's namespaces), `jti` (the token id, for revocation), `iat`, and `exp` unless the token
 * never expires. The protected header names the signing key (`kid`).
 *
 * Roles (etcd's RBAC, reduced to the registry's needs; the namespace rule is the MCP registry's
 * ownership rule):
 * - `reader`: get, find, search, list, watch;
 * - `writer`: a reader that may also register, heartbeat and deregister ids under its
 *   namespaces (`io.github.alice` owns `io.github.alice/...`);
 * - `admin`: everything, including membership, leadership transfer, backups and keys.
 */
import { randomBytes } from 'node:crypto';
import { errors as joseErrors, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type CryptoKey, type JWK, type KeyObject } from 'jose';
import type { AuthState } from '../registry/auth-state.js';
import type { SigningKey } from '../registry/types.js';

/** The `iss` of every token. */
export const TOKEN_ISSUER = 'raft-registry';
/** The only signing algorithm accepted (RFC 8037 EdDSA with Ed25519). */
export const TOKEN_ALGORITHM = 'EdDSA';
/** The principal of calls on a cluster without auth. */
export const ANONYMOUS_PRINCIPAL = 'anonymous';
/** The principal of writes the cluster makes itself (lease expiry, the bootstrap key). */
export const SYSTEM_PRINCIPAL = 'system';
/** Longest token accepted, in characters. */
export const MAX_TOKEN_CHARS = 8_192;
/** Most namespaces one writer token may hold. */
export const MAX_TOKEN_NAMESPACES = 64;
/** Longest namespace, in characters (as long as an id). */
export const MAX_NAMESPACE_CHARS = 256;
/** Longest principal name, in characters. */
export const MAX_PRINCIPAL_CHARS = 128;
/** Longest lifetime a token may be given, in seconds (ten years). */
export const MAX_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600;
/** Verified tokens kept, so a token is checked against its signature once, not per call. */
export const TOKEN_CACHE_ENTRIES = 10_000;

/** The roles of a token. */
export const ROLES = ['reader', 'writer', 'admin'] as const;
/** One of {@link ROLES}. */
export type Role = (typeof ROLES)[number];

/** What a call needs: to read, to write ids, to renew leases of ids, or to administer. */
export type Permission = 'read' | 'write' | 'heartbeat' | 'admin';

/** Who made a call, as its verified token says. */
export interface Principal {
  /** The token's `sub`. */
  readonly name: string;
  readonly role: Role;
  /** A writer's namespaces, normalized (no trailing `/*`); empty for other roles. */
  readonly namespaces: readonly string[];
  /** The token's `jti`. */
  readonly tokenId: string;
  /** The token's `exp` in Unix seconds, or 0 when it never expires. */
  readonly expiresAtSec: number;
}

/** A refused credential: `unauthenticated` (401 / UNAUTHENTICATED) or `denied` (403 / PERMISSION_DENIED). */
export class AuthError extends Error {
  override readonly name = 'AuthError';
  constructor(
    readonly kind: 'unauthenticated' | 'denied',
    message: string,
  ) {
    super(message);
  }
}

/** A new Ed25519 signing key; its id is random (16 hex digits). */
export async function generateSigningKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALGORITHM, { crv: 'Ed25519', extractable: true });
  const kid = randomBytes(8).toString('hex');
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: TOKEN_ALGORITHM };
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: TOKEN_ALGORITHM };
  return { kid, privateJwk: JSON.stringify(privateJwk), publicJwk: JSON.stringify(publicJwk) };
}

/**
 * Checks and normalizes a writer namespace: `io.github.alice` or `io.github.alice/*` (the MCP
 * registry's spelling) both give `io.github.alice`, which owns the ids `io.github.alice/...`.
 * @throws AuthError (`denied`) naming what is wrong.
 */
export function normalizeNamespace(ns: unknown): string {
  if (typeof ns !== 'string') throw new AuthError('denied', `namespace must be a string, got ${typeof ns}`);
  const n = ns.endsWith('/*') ? ns.slice(0, -2) : ns.endsWith('/') ? ns.slice(0, -1) : ns;
  if (n.length === 0 || n.length > MAX_NAMESPACE_CHARS || !/^[A-Za-z0-9._:@/-]+$/.test(n) || n.includes('*')) {
    throw new AuthError('denied', `namespace ${JSON.stringify(ns)} must be 1-${MAX_NAMESPACE_CHARS} characters of [A-Za-z0-9._:@/-], optionally ending in /*`);
  }
  return n;
}

/** The options of a new token. */
export interface TokenClaims {
  readonly name: string;
  readonly role: Role;
  /** For a writer: at least one namespace. */
  readonly namespaces?: readonly string[];
  /** Lifetime in seconds; 0 or absent: never expires. */
  readonly ttlSeconds?: number;
  /** The token id; random when absent. */
  readonly tokenId?: string;
}

/**
 * Signs a token with `key` at time `nowSec` (Unix seconds). Throws {@link AuthError}
 * (`denied`) for a bad role, name, namespace list or lifetime.
 */
export async function mintToken(key: SigningKey, claims: TokenClaims, nowSec: number): Promise<{ token: string; tokenId: string; expiresAtSec: number }> {
  if (!(ROLES as readonly string[]).includes(claims.role)) throw new AuthError('denied', `role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(claims.role)}`);
  if (claims.name.length === 0 || claims.name.length > MAX_PRINCIPAL_CHARS) throw new AuthError('denied', `name must be 1-${MAX_PRINCIPAL_CHARS} characters`);
  const namespaces = (claims.namespaces ?? []).map(normalizeNamespace);
  if (claims.role === 'writer' && namespaces.length === 0) throw new AuthError('denied', 'a writer token needs at least one namespace (e.g. io.github.alice)');
  if (claims.role !== 'writer' && namespaces.length > 0) throw new AuthError('denied', `namespaces are for writer tokens; a ${claims.role} has none`);
  if (namespaces.length > MAX_TOKEN_NAMESPACES) throw new AuthError('denied', `at most ${MAX_TOKEN_NAMESPACES} namespaces`);
  const ttl = claims.ttlSeconds ?? 0;
  if (!Number.isSafeInteger(ttl) || ttl < 0 || ttl > MAX_TOKEN_TTL_SECONDS) throw new AuthError('denied', `ttl must be 0 to ${MAX_TOKEN_TTL_SECONDS} seconds`);
  const tokenId = claims.tokenId ?? randomBytes(12).toString('hex');
  const privateKey = await importJWK(JSON.parse(key.privateJwk) as JWK, TOKEN_ALGORITHM);
  const expiresAtSec = ttl > 0 ? nowSec + ttl : 0;
  const jwt = new SignJWT({ role: claims.role, ...(namespaces.length > 0 ? { ns: namespaces } : {}) })
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: key.kid, typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setSubject(claims.name)
    .setJti(tokenId)
    .setIssuedAt(nowSec);
  if (expiresAtSec > 0) jwt.setExpirationTime(expiresAtSec);
  return { token: await jwt.sign(privateKey), tokenId, expiresAtSec };
}

/**
 * Verifies bearer tokens against the signing keys and revocations of the replicated auth state
 * (read through `state` at every call, so a rotation or a revocation applies at once). A token
 * is checked against its signature once and then kept (up to {@link TOKEN_CACHE_ENTRIES}); the
 * kept answer is still checked for expiry, revocation and a removed key on every call.
 */
export class TokenVerifier {
  private readonly keys = new Map<string, { publicJwk: string; key: CryptoKey | KeyObject | Uint8Array }>();
  private readonly verified = new Map<string, { principal: Principal; kid: string }>();

  /** `state` gives the current auth state; `nowSec` the time in Unix seconds. */
  constructor(
    private readonly state: () => AuthState,
    private readonly nowSec: () => number,
  ) {}

  /**
   * The principal of `token`. @throws AuthError (`unauthenticated`) naming why it is refused:
   * malformed, too long, signed by an unknown key or not verifying, wrong issuer or claims,
   * expired, or revoked.
   */
  async verify(token: string): Promise<Principal> {
    if (token.length > MAX_TOKEN_CHARS) throw new AuthError('unauthenticated', `token is longer than ${MAX_TOKEN_CHARS} characters`);
    const state = this.state();
    const now = this.nowSec();
    const kept = this.verified.get(token);
    if (kept !== undefined) {
      if (!state.signingKeys.some((k) => k.kid === kept.kid)) {
        this.verified.delete(token);
        throw new AuthError('unauthenticated', `token is signed by key ${kept.kid}, which was retired`);
      }
      this.checkLive(kept.principal, state, now);
      return kept.principal;
    }
    let kid = '';
    let payload: Record<string, unknown>;
    try {
      const result = await jwtVerify(
        token,
        async (header) => {
          kid = typeof header.kid === 'string' ? header.kid : '';
          return this.publicKey(kid, state);
        },
        { issuer: TOKEN_ISSUER, algorithms: [TOKEN_ALGORITHM], currentDate: new Date(now * 1000) },
      );
      payload = result.payload as Record<string, unknown>;
    } catch (err) {
      throw new AuthError('unauthenticated', `token refused: ${describeJoseError(err)}`);
    }
    const principal = principalOf(payload);
    this.checkLive(principal, state, now);
    if (this.verified.size >= TOKEN_CACHE_ENTRIES) {
      const oldest = this.verified.keys().next().value;
      if (oldest !== undefined) this.verified.delete(oldest);
    }
    this.verified.set(token, { principal, kid });
    return principal;
  }

  /** Refuses an expired or revoked principal. */
  private checkLive(p: Principal, state: AuthState, now: number): void {
    if (p.expiresAtSec > 0 && p.expiresAtSec <= now) throw new AuthError('unauthenticated', `token ${p.tokenId} expired at ${new Date(p.expiresAtSec * 1000).toISOString()}`);
    if (state.revoked.has(p.tokenId)) throw new AuthError('unauthenticated', `token ${p.tokenId} was revoked`);
  }

  /** The imported public key of `kid`; throws when the state holds no such key. */
  private async publicKey(kid: string, state: AuthState): Promise<CryptoKey | KeyObject | Uint8Array> {
    const signing = state.signingKeys.find((k) => k.kid === kid);
    if (signing === undefined) throw new AuthError('unauthenticated', kid === '' ? 'token names no key id (kid)' : `token is signed by unknown key ${kid}`);
    const cached = this.keys.get(kid);
    if (cached !== undefined && cached.publicJwk === signing.publicJwk) return cached.key;
    const key = await importJWK(JSON.parse(signing.publicJwk) as JWK, TOKEN_ALGORITHM);
    this.keys.set(kid, { publicJwk: signing.publicJwk, key });
    return key;
  }
}

/** The principal of a verified payload. @throws AuthError when a claim is missing or malformed. */
function principalOf(payload: Record<string, unknown>): Principal {
  const { sub, role, ns, jti, exp } = payload;
  if (typeof sub !== 'string' || sub === '') throw new AuthError('unauthenticated', 'token has no subject (sub)');
  if (typeof jti !== 'string' || jti === '') throw new AuthError('unauthenticated', 'token has no id (jti)');
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw new AuthError('unauthenticated', `token has no valid role (one of ${ROLES.join(', ')})`);
  let namespaces: string[] = [];
  if (ns !== undefined) {
    if (!Array.isArray(ns) || ns.length > MAX_TOKEN_NAMESPACES) throw new AuthError('unauthenticated', 'token namespaces (ns) must be a list');
    try {
      namespaces = ns.map(normalizeNamespace);
    } catch (err) {
      throw new AuthError('unauthenticated', `token namespaces (ns): ${(err as Error).message}`);
    }
  }
  return { name: sub, role: role as Role, namespaces, tokenId: jti, expiresAtSec: typeof exp === 'number' ? exp : 0 };
}

/** A jose failure in words (expired, bad signature, malformed, wrong issuer or algorithm). */
function describeJoseError(err: unknown): string {
  if (err instanceof AuthError) return err.message;
  if (err instanceof joseErrors.JWTExpired) return 'it expired';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'its signature does not verify';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return `only ${TOKEN_ALGORITHM} is accepted`;
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} is not valid (${err.reason})`;
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'it is not a well-formed JWT';
  return err instanceof Error ? err.message : String(err);
}

/**
 * Whether `p` may do `permission` on `ids` (the agent ids a write or heartbeat touches).
 * @throws AuthError (`denied`) naming the role or the namespace that is missing.
 */
export function checkPermission(p: Principal, permission: Permission, ids: readonly string[] = []): void {
  if (p.role === 'admin') return;
  if (permission === 'read') return;
  if (permission === 'admin') throw new AuthError('denied', `${p.name} (role ${p.role}) may not do this: it needs role admin`);
  if (p.role !== 'writer') throw new AuthError('denied', `${p.name} (role ${p.role}) may not write: it needs role writer or admin`);
  for (const id of ids) {
    if (!p.namespaces.some((ns) => id.startsWith(`${ns}/`))) {
      throw new AuthError('denied', `${p.name} may write only under ${p.namespaces.map((n) => `${n}/`).join(', ')}, not ${JSON.stringify(id)}`);
    }
  }
}
