/**
 * Signed A2A AgentCards (A2A v1.0 specification §8.4 "Agent Card Signing", type
 * `AgentCardSignature` §4.4.7).
 *
 * A card's `signatures` is a list of detached JWS signatures (RFC 7515, flattened JSON
 * serialization without its `payload` member):
 *
 * ```
 * { "protected": BASE64URL(UTF8(JSON protected header)),   // required: alg, kid; typ "JOSE" (SHOULD); jku (MAY)
 *   "signature": BASE64URL(signature bytes),               // required
 *   "header":    { ...unprotected header... } }            // optional, never trusted here
 * ```
 *
 * The payload is the card itself, re-created by the verifier: the card without its `signatures`
 * member, canonicalized with RFC 8785 (JCS) (§8.4.1 rules 2 and 3). The JWS signing input is
 * `BASE64URL(protected) || '.' || BASE64URL(JCS(card without signatures))` (§8.4.2 step 3,
 * RFC 7515 §5.1).
 *
 * Where we differ from §8.4.1: its rule 1 also asks to drop optional fields that hold their
 * protobuf default value before canonicalizing. That rule depends on the proto schema and is
 * under-determined (A2A issue #2122); we sign and verify the card as given, so a card is
 * verified against the very bytes (modulo JCS) it was signed as. A card serialized by a ProtoJSON
 * encoder (which omits defaults) canonicalizes identically under both readings.
 *
 * Only Ed25519 is accepted ({@link ALLOWED_CARD_SIGNATURE_ALGORITHMS}: JWS `EdDSA`, RFC 8037,
 * and its fully specified name `Ed25519`, RFC 9864); `none`, HMAC and RSA are refused.
 * Keys are trusted by key id: the caller supplies the `kid → public JWK` map; `jku` is never
 * fetched.
 */
import { calculateJwkThumbprint, exportJWK, FlattenedSign, flattenedVerify, generateKeyPair, importJWK, type JWK } from 'jose';
import canonicalize from 'canonicalize';
import { isRecord } from '../util/json.js';

export type { JWK };

/** The JWS `alg` values a card signature may use: Ed25519 only (RFC 8037 `EdDSA`, RFC 9864 `Ed25519`). */
export const ALLOWED_CARD_SIGNATURE_ALGORITHMS: readonly CardSignatureAlgorithm[] = ['EdDSA', 'Ed25519'];
/** A JWS algorithm name accepted for card signatures. */
export type CardSignatureAlgorithm = 'EdDSA' | 'Ed25519';
/** The algorithm {@link signCard} uses unless told otherwise. */
export const DEFAULT_CARD_SIGNATURE_ALGORITHM: CardSignatureAlgorithm = 'EdDSA';
/** At most this many entries of `signatures` are examined by {@link verifyCardSignatures}; the rest are ignored. */
export const MAX_CARD_SIGNATURES = 8;
/** Longest `protected` value examined, in characters (an Ed25519 header with a URL `jku` is ~200). */
export const MAX_PROTECTED_HEADER_CHARS = 4096;
/** Longest `signature` value examined, in characters (an Ed25519 signature is 86). */
export const MAX_SIGNATURE_CHARS = 1024;
/** The `typ` our signatures carry in their protected header (§8.4.2: SHOULD be "JOSE"). */
export const CARD_SIGNATURE_TYP = 'JOSE';

/** One entry of a card's `signatures` (A2A §4.4.7 AgentCardSignature). */
export interface AgentCardSignature {
  /** BASE64URL of the JWS Protected Header JSON (`alg`, `kid`, optionally `typ`, `jku`). */
  protected: string;
  /** BASE64URL of the signature bytes. */
  signature: string;
  /** JWS Unprotected Header; carried but never relied on. */
  header?: Record<string, unknown>;
}

/** A card: a JSON object, with or without `signatures`. */
export type SignableCard = Record<string, unknown>;

/**
 * Why a signature was refused:
 * - `malformed-card`: the card is not a JSON object, cannot be canonicalized, or `signatures` is not an array;
 * - `malformed-signature`: an entry is not an object, a field is missing, not base64url, too long, or the
 *   protected header is not a JSON object / lacks `alg` or `kid`, or jose refuses its shape;
 * - `unsupported-algorithm`: `alg` is not in {@link ALLOWED_CARD_SIGNATURE_ALGORITHMS};
 * - `unknown-key`: no trusted key has the header's `kid`;
 * - `unusable-trusted-key`: the trusted key under that kid is not an Ed25519 public JWK;
 * - `bad-signature`: the signature does not verify (the card changed after signing, or another key signed it).
 */
export type CardSignatureFailureCode =
  | 'malformed-card'
  | 'malformed-signature'
  | 'unsupported-algorithm'
  | 'unknown-key'
  | 'unusable-trusted-key'
  | 'bad-signature';

/** Why one entry of `signatures` (at `index`) did not verify. */
export interface CardSignatureFailure {
  readonly index: number;
  readonly code: CardSignatureFailureCode;
  readonly reason: string;
}

/**
 * The outcome of {@link verifyCardSignatures}:
 * - `verified`: the signature at `index` verifies with the trusted key `keyId`;
 * - `unsigned`: the card has no `signatures`, or an empty list;
 * - `failed`: none of the examined signatures verifies. `reason` is human-readable (one
 *   `signatures[i]: …` clause per examined entry); `code` is the first failure's code, or
 *   `malformed-card`; `failures` lists each examined entry (empty for `malformed-card`).
 */
export type CardVerification =
  | { status: 'verified'; keyId: string; index: number }
  | { status: 'unsigned' }
  | { status: 'failed'; reason: string; code: CardSignatureFailureCode; failures: readonly CardSignatureFailure[] };

/** A card cannot be canonicalized or signed (not an object, a non-JSON value, or a bad key). */
export class CardSigningError extends Error {
  override readonly name = 'CardSigningError';
}

/** A freshly generated Ed25519 card-signing key pair (JWKs, RFC 7517/8037), both carrying `kid`. */
export interface CardKey {
  /** `{ kty: 'OKP', crv: 'Ed25519', x, d, kid }`: keep secret. */
  privateJwk: JWK;
  /** `{ kty: 'OKP', crv: 'Ed25519', x, kid }`: what verifiers trust. */
  publicJwk: JWK;
  /** The RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key. */
  kid: string;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const encoder = new TextEncoder();

/**
 * The signed payload of a card: UTF-8 of JCS (RFC 8785) of `card` without its `signatures`
 * member (A2A §8.4.1). Key order and whitespace of the input do not matter.
 *
 * @throws CardSigningError when `card` is not a JSON object or holds a value JCS refuses
 *   (NaN, Infinity, a lone surrogate, a BigInt, a cycle).
 */
export function canonicalCardBytes(card: unknown): Uint8Array {
  if (!isRecord(card)) throw new CardSigningError('card must be a JSON object');
  const { signatures: _signatures, ...rest } = card;
  let text: string | undefined;
  try {
    text = canonicalize(rest);
  } catch (e) {
    throw new CardSigningError(`card cannot be canonicalized (RFC 8785): ${e instanceof Error ? e.message : String(e)}`);
  }
  if (text === undefined) throw new CardSigningError('card cannot be canonicalized (RFC 8785)');
  return encoder.encode(text);
}

/** The public members of an Ed25519 JWK (`kty`, `crv`, `x`), dropping `d` and everything else. */
function publicPart(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
}

/**
 * Signs `card` with an Ed25519 private JWK and returns a copy of the card with one more entry
 * appended to `signatures` (existing entries are kept). The protected header is
 * `{ alg, typ: "JOSE", kid }` (A2A §8.4.2); no unprotected header is written.
 *
 * `kid` is `opts.kid`, else the JWK's own `kid`, else the RFC 7638 thumbprint of the public key.
 * `alg` is `opts.alg` (default {@link DEFAULT_CARD_SIGNATURE_ALGORITHM}).
 *
 * @throws CardSigningError when the card is not a JSON object, cannot be canonicalized, has a
 *   `signatures` member that is not an array, or the key is not an Ed25519 private JWK.
 */
export async function signCard(
  card: unknown,
  privateJwk: JWK,
  opts: { kid?: string; alg?: CardSignatureAlgorithm } = {},
): Promise<SignableCard & { signatures: AgentCardSignature[] }> {
  const payload = canonicalCardBytes(card);
  const doc = card as SignableCard;
  const existing = doc.signatures;
  if (existing !== undefined && !Array.isArray(existing)) throw new CardSigningError('card.signatures must be an array');
  if (privateJwk.kty !== 'OKP' || privateJwk.crv !== 'Ed25519' || typeof privateJwk.d !== 'string' || typeof privateJwk.x !== 'string') {
    throw new CardSigningError('the signing key must be an Ed25519 private JWK (kty OKP, crv Ed25519, with d and x)');
  }
  const alg = opts.alg ?? DEFAULT_CARD_SIGNATURE_ALGORITHM;
  const kid = opts.kid ?? privateJwk.kid ?? (await calculateJwkThumbprint(publicPart(privateJwk), 'sha256'));
  let jws: { protected?: string; signature: string };
  try {
    const key = await importJWK({ kty: 'OKP', crv: 'Ed25519', x: privateJwk.x, d: privateJwk.d }, alg);
    jws = await new FlattenedSign(payload).setProtectedHeader({ alg, typ: CARD_SIGNATURE_TYP, kid }).sign(key);
  } catch (e) {
    throw new CardSigningError(`cannot sign with this key: ${e instanceof Error ? e.message : String(e)}`);
  }
  const entry: AgentCardSignature = { protected: jws.protected as string, signature: jws.signature };
  return { ...doc, signatures: [...((existing as AgentCardSignature[] | undefined) ?? []), entry] };
}

/** A parsed, well-formed entry, or why it is not. */
type ParsedEntry =
  | { ok: true; protectedB64: string; signature: string; header: Record<string, unknown> | undefined; alg: CardSignatureAlgorithm; kid: string }
  | { ok: false; code: CardSignatureFailureCode; reason: string };

/**
 * Checks one `signatures` entry: its protected header (base64url of a JSON object with an allowed
 * `alg` and a `kid`) first, so that e.g. `alg: none` with an empty signature is reported as an
 * unsupported algorithm; then `signature` and `header`.
 */
function parseEntry(entry: unknown, index: number): ParsedEntry {
  const at = `signatures[${index}]`;
  const malformed = (reason: string): ParsedEntry => ({ ok: false, code: 'malformed-signature', reason: `${at}${reason}` });
  if (!isRecord(entry)) return malformed(' is not an object');
  const p = entry.protected;
  if (typeof p !== 'string' || p === '') return malformed('.protected is missing or not a string');
  if (p.length > MAX_PROTECTED_HEADER_CHARS) return malformed(`.protected is longer than ${MAX_PROTECTED_HEADER_CHARS} characters`);
  if (!BASE64URL.test(p)) return malformed('.protected is not base64url');
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    return malformed('.protected does not decode to JSON');
  }
  if (!isRecord(decoded)) return malformed('.protected does not decode to a JSON object');
  const alg = decoded.alg;
  if (typeof alg !== 'string' || alg === '') return malformed('.protected has no alg');
  if (!(ALLOWED_CARD_SIGNATURE_ALGORITHMS as readonly string[]).includes(alg)) {
    return {
      ok: false,
      code: 'unsupported-algorithm',
      reason: `${at} uses unsupported algorithm ${JSON.stringify(alg).slice(0, 64)} (allowed: ${ALLOWED_CARD_SIGNATURE_ALGORITHMS.join(', ')})`,
    };
  }
  const kid = decoded.kid;
  if (typeof kid !== 'string' || kid === '') return malformed('.protected has no kid');
  const s = entry.signature;
  if (typeof s !== 'string' || s === '') return malformed('.signature is missing or not a string');
  if (s.length > MAX_SIGNATURE_CHARS) return malformed(`.signature is longer than ${MAX_SIGNATURE_CHARS} characters`);
  if (!BASE64URL.test(s)) return malformed('.signature is not base64url');
  const header = entry.header;
  if (header !== undefined && !isRecord(header)) return malformed('.header is not an object');
  return { ok: true, protectedB64: p, signature: s, header, alg: alg as CardSignatureAlgorithm, kid };
}

/** Verifies one well-formed entry against the trusted keys; `undefined` when it verifies. */
async function verifyEntry(
  parsed: Extract<ParsedEntry, { ok: true }>,
  payloadB64: string,
  trustedKeys: ReadonlyMap<string, JWK>,
  index: number,
): Promise<CardSignatureFailure | undefined> {
  const at = `signatures[${index}]`;
  const kidText = JSON.stringify(parsed.kid).slice(0, 128);
  const jwk = trustedKeys.get(parsed.kid);
  if (jwk === undefined) return { index, code: 'unknown-key', reason: `${at} is signed by unknown key id ${kidText}` };
  if (!isRecord(jwk) || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    return { index, code: 'unusable-trusted-key', reason: `${at}: the trusted key ${kidText} is not an Ed25519 public JWK` };
  }
  let key: Awaited<ReturnType<typeof importJWK>>;
  try {
    key = await importJWK(publicPart(jwk), parsed.alg);
  } catch (e) {
    return { index, code: 'unusable-trusted-key', reason: `${at}: the trusted key ${kidText} cannot be imported (${e instanceof Error ? e.message : String(e)})` };
  }
  try {
    await flattenedVerify(
      { protected: parsed.protectedB64, signature: parsed.signature, payload: payloadB64, ...(parsed.header ? { header: parsed.header } : {}) },
      key,
      { algorithms: [...ALLOWED_CARD_SIGNATURE_ALGORITHMS] },
    );
    return undefined;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') {
      return { index, code: 'bad-signature', reason: `${at} does not verify with key ${kidText} (the card changed after signing, or another key signed it)` };
    }
    if (code === 'ERR_JOSE_ALG_NOT_ALLOWED') {
      return { index, code: 'unsupported-algorithm', reason: `${at} uses an unsupported algorithm (allowed: ${ALLOWED_CARD_SIGNATURE_ALGORITHMS.join(', ')})` };
    }
    return { index, code: 'malformed-signature', reason: `${at} is not a valid JWS (${e instanceof Error ? e.message : String(e)})` };
  }
}

/**
 * Verifies a card's signatures against trusted keys (A2A §8.4.3): verified as soon as one of the
 * first {@link MAX_CARD_SIGNATURES} entries verifies with the trusted key whose id is the entry's
 * protected-header `kid`. The unprotected `header` is never used to pick the key or algorithm.
 *
 * Never throws and never rejects: every bad input becomes a `failed` outcome (see
 * {@link CardVerification}, {@link CardSignatureFailureCode}). Work is bounded: at most
 * {@link MAX_CARD_SIGNATURES} entries, each of bounded size, and one canonicalization.
 *
 * @param card the card as parsed JSON (`signatures` included)
 * @param trustedKeys `kid → Ed25519 public JWK`; private members, if any, are ignored
 */
export async function verifyCardSignatures(card: unknown, trustedKeys: ReadonlyMap<string, JWK>): Promise<CardVerification> {
  try {
    if (!isRecord(card)) return { status: 'failed', code: 'malformed-card', reason: 'card is not a JSON object', failures: [] };
    const signatures = card.signatures;
    if (signatures === undefined || (Array.isArray(signatures) && signatures.length === 0)) return { status: 'unsigned' };
    if (!Array.isArray(signatures)) return { status: 'failed', code: 'malformed-card', reason: 'card.signatures is not an array', failures: [] };
    let payloadB64: string;
    try {
      payloadB64 = Buffer.from(canonicalCardBytes(card)).toString('base64url');
    } catch (e) {
      return { status: 'failed', code: 'malformed-card', reason: e instanceof Error ? e.message : String(e), failures: [] };
    }
    const failures: CardSignatureFailure[] = [];
    const examined = Math.min(signatures.length, MAX_CARD_SIGNATURES);
    for (let i = 0; i < examined; i++) {
      const parsed = parseEntry(signatures[i], i);
      if (!parsed.ok) {
        failures.push({ index: i, code: parsed.code, reason: parsed.reason });
        continue;
      }
      const failure = await verifyEntry(parsed, payloadB64, trustedKeys, i);
      if (failure === undefined) return { status: 'verified', keyId: parsed.kid, index: i };
      failures.push(failure);
    }
    const skipped = signatures.length - examined;
    const reason =
      failures.map((f) => f.reason).join('; ') + (skipped > 0 ? `; ${skipped} more not examined (at most ${MAX_CARD_SIGNATURES} are)` : '');
    return { status: 'failed', code: (failures[0] as CardSignatureFailure).code, reason, failures };
  } catch (e) {
    // Not expected (every step above catches its own errors); a defensive net so that callers never see a rejection.
    return { status: 'failed', code: 'malformed-card', reason: `card cannot be verified: ${e instanceof Error ? e.message : String(e)}`, failures: [] };
  }
}

/**
 * Generates an Ed25519 card-signing key (extractable, exported as JWKs). Both JWKs carry `kid`,
 * the RFC 7638 thumbprint of the public key, so {@link signCard} with `privateJwk` signs under
 * the kid that verifiers map to `publicJwk`.
 */
export async function generateCardKey(): Promise<CardKey> {
  const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
  const pub = await exportJWK(publicKey);
  const priv = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicPart(pub), 'sha256');
  return {
    privateJwk: { kty: priv.kty, crv: priv.crv, x: priv.x, d: priv.d, kid },
    publicJwk: { ...publicPart(pub), kid },
    kid,
  };
}
