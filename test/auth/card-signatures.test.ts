/**
 * Signed AgentCards (A2A v1.0 §8.4): detached JWS (RFC 7515) over JCS (RFC 8785) of the card
 * without `signatures`. The card is the v1.0 sample of the specification (§8.5, in the shape of
 * a2a.proto) that test/registry/formats.test.ts also accepts.
 */
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ALLOWED_CARD_SIGNATURE_ALGORITHMS,
  CardSigningError,
  MAX_CARD_SIGNATURES,
  canonicalCardBytes,
  generateCardKey,
  signCard,
  verifyCardSignatures,
  type CardKey,
  type JWK,
} from '../../src/auth/card-signatures.js';

const CARD_TEXT = readFileSync(fileURLToPath(new URL('../registry/fixtures/formats/a2a-v1.0-sample-agent-card.json', import.meta.url)), 'utf8');
/** The sample card without the example signature the specification prints. */
function sampleCard(): Record<string, unknown> {
  const { signatures: _s, ...card } = JSON.parse(CARD_TEXT) as Record<string, unknown>;
  return card;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');

let keyA: CardKey;
let keyB: CardKey;
let trustedA: Map<string, JWK>;

beforeAll(async () => {
  [keyA, keyB] = await Promise.all([generateCardKey(), generateCardKey()]);
  trustedA = new Map([[keyA.kid, keyA.publicJwk]]);
});

describe('§8.4.1 canonicalization', () => {
  it('is JCS of the card without signatures: sorted keys, no whitespace', () => {
    const bytes = canonicalCardBytes({ name: 'Example Agent', capabilities: { streaming: false, pushNotifications: true }, skills: [], signatures: [{ x: 1 }] });
    expect(new TextDecoder().decode(bytes)).toBe('{"capabilities":{"pushNotifications":true,"streaming":false},"name":"Example Agent","skills":[]}');
  });

  it('refuses what is not a JSON object, or what JCS cannot represent, with a CardSigningError', () => {
    expect(() => canonicalCardBytes([1, 2])).toThrow(CardSigningError);
    expect(() => canonicalCardBytes('card')).toThrow(CardSigningError);
    expect(() => canonicalCardBytes({ n: Number.NaN })).toThrow(/canonicalized/);
    expect(() => canonicalCardBytes({ s: '\ud800' })).toThrow(/canonicalized/);
  });

  it('the same card with its keys in another order and other whitespace still verifies', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const reversed = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(reversed)
        : typeof v === 'object' && v !== null
          ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversed(x)]))
          : v;
    const reformatted = JSON.parse(JSON.stringify(reversed(signed), null, '\t')) as Record<string, unknown>;
    expect(Object.keys(reformatted)[0]).toBe('signatures');
    expect(await verifyCardSignatures(reformatted, trustedA)).toEqual({ status: 'verified', keyId: keyA.kid, index: 0 });
  });
});

describe('§8.4.2 signing and §8.4.3 verification', () => {
  it('a valid signature verifies with the trusted key, under the thumbprint kid by default', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    expect(signed.signatures).toHaveLength(1);
    const entry = signed.signatures[0]!;
    expect(Object.keys(entry).sort()).toEqual(['protected', 'signature']);
    expect(JSON.parse(Buffer.from(entry.protected, 'base64url').toString())).toEqual({ alg: 'EdDSA', typ: 'JOSE', kid: keyA.kid });
    expect(await verifyCardSignatures(signed, trustedA)).toEqual({ status: 'verified', keyId: keyA.kid, index: 0 });
    // The card itself is otherwise unchanged.
    const { signatures: _s, ...rest } = signed;
    expect(rest).toEqual(sampleCard());
  });

  it('signs under an explicit kid, and with the fully specified alg name Ed25519', async () => {
    const { kid: _kid, ...noKid } = keyA.privateJwk;
    const signed = await signCard(sampleCard(), noKid, { kid: 'seed-2025', alg: 'Ed25519' });
    expect(JSON.parse(Buffer.from(signed.signatures[0]!.protected, 'base64url').toString())).toMatchObject({ alg: 'Ed25519', kid: 'seed-2025' });
    expect(await verifyCardSignatures(signed, new Map([['seed-2025', keyA.publicJwk]]))).toMatchObject({ status: 'verified', keyId: 'seed-2025' });
  });

  it('a card without signatures, or with an empty list, is unsigned', async () => {
    expect(await verifyCardSignatures(sampleCard(), trustedA)).toEqual({ status: 'unsigned' });
    expect(await verifyCardSignatures({ ...sampleCard(), signatures: [] }, trustedA)).toEqual({ status: 'unsigned' });
  });

  it('a tampered card fails: one character of the description changed', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const description = signed.description as string;
    const tampered = { ...signed, description: `${description.slice(0, 10)}X${description.slice(11)}` };
    const r = await verifyCardSignatures(tampered, trustedA);
    expect(r).toMatchObject({ status: 'failed', code: 'bad-signature' });
    if (r.status === 'failed') expect(r.reason).toMatch(/^signatures\[0\] does not verify with key/);
  });

  it('a tampered card fails: a field added, a skill removed, a nested value changed', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const variants: Record<string, unknown>[] = [
      { ...signed, iconUrl: 'https://evil.example.com/icon.png' },
      { ...signed, skills: (signed.skills as unknown[]).slice(1) },
      { ...signed, capabilities: { ...(signed.capabilities as object), streaming: false } },
    ];
    for (const v of variants) expect(await verifyCardSignatures(v, trustedA)).toMatchObject({ status: 'failed', code: 'bad-signature' });
  });

  it('a wrong key fails: signed by A, key B trusted under A\'s kid', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const r = await verifyCardSignatures(signed, new Map([[keyA.kid, keyB.publicJwk]]));
    expect(r).toMatchObject({ status: 'failed', code: 'bad-signature' });
  });

  it('an untrusted kid fails as an unknown key id', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const r = await verifyCardSignatures(signed, new Map([[keyB.kid, keyB.publicJwk]]));
    expect(r).toMatchObject({ status: 'failed', code: 'unknown-key' });
    if (r.status === 'failed') expect(r.reason).toBe(`signatures[0] is signed by unknown key id ${JSON.stringify(keyA.kid)}`);
  });

  it('a trusted key that is not an Ed25519 public JWK is reported as unusable, not as a bad signature', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }) as JWK;
    expect(await verifyCardSignatures(signed, new Map([[keyA.kid, rsa]]))).toMatchObject({ status: 'failed', code: 'unusable-trusted-key' });
  });

  it('verifies when any one signature verifies (key rotation): an unknown kid first, then key A', async () => {
    const byB = await signCard(sampleCard(), keyB.privateJwk);
    const byBoth = await signCard(byB, keyA.privateJwk);
    expect(byBoth.signatures).toHaveLength(2);
    expect(await verifyCardSignatures(byBoth, trustedA)).toEqual({ status: 'verified', keyId: keyA.kid, index: 1 });
    const failed = await verifyCardSignatures(byBoth, new Map());
    expect(failed).toMatchObject({ status: 'failed', code: 'unknown-key' });
    if (failed.status === 'failed') expect(failed.failures.map((f) => f.index)).toEqual([0, 1]);
  });
});

describe('unsupported algorithms', () => {
  it('only EdDSA / Ed25519 are allowed', () => {
    expect([...ALLOWED_CARD_SIGNATURE_ALGORITHMS].sort()).toEqual(['Ed25519', 'EdDSA']);
  });

  it('HS256 (a real HMAC over the real signing input) fails with the unsupported-algorithm reason', async () => {
    const card = sampleCard();
    const protectedB64 = b64(JSON.stringify({ alg: 'HS256', typ: 'JOSE', kid: keyA.kid }));
    const input = `${protectedB64}.${Buffer.from(canonicalCardBytes(card)).toString('base64url')}`;
    const signature = createHmac('sha256', Buffer.from(keyA.publicJwk.x as string, 'base64url')).update(input).digest('base64url');
    const r = await verifyCardSignatures({ ...card, signatures: [{ protected: protectedB64, signature }] }, trustedA);
    expect(r).toMatchObject({ status: 'failed', code: 'unsupported-algorithm' });
    if (r.status === 'failed') expect(r.reason).toBe('signatures[0] uses unsupported algorithm "HS256" (allowed: EdDSA, Ed25519)');
  });

  it('alg none with an empty signature fails with the unsupported-algorithm reason', async () => {
    const signatures = [{ protected: b64(JSON.stringify({ alg: 'none', kid: keyA.kid })), signature: '' }];
    const r = await verifyCardSignatures({ ...sampleCard(), signatures }, trustedA);
    expect(r).toMatchObject({ status: 'failed', code: 'unsupported-algorithm' });
    if (r.status === 'failed') expect(r.reason).toMatch(/unsupported algorithm "none"/);
  });

  it('RS256 and ES256 fail the same way', async () => {
    for (const alg of ['RS256', 'ES256', 'PS256']) {
      const signatures = [{ protected: b64(JSON.stringify({ alg, kid: keyA.kid })), signature: 'AAAA' }];
      expect(await verifyCardSignatures({ ...sampleCard(), signatures }, trustedA)).toMatchObject({ status: 'failed', code: 'unsupported-algorithm' });
    }
  });

  it('an alg in the unprotected header does not count', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const entry = signed.signatures[0]!;
    const swapped = { protected: b64(JSON.stringify({ kid: keyA.kid })), signature: entry.signature, header: { alg: 'EdDSA' } };
    const r = await verifyCardSignatures({ ...signed, signatures: [swapped] }, trustedA);
    expect(r).toMatchObject({ status: 'failed', code: 'malformed-signature', reason: 'signatures[0].protected has no alg' });
  });
});

describe('malformed input: a reason, never a throw', () => {
  const cases: [string, unknown, RegExp][] = [
    ['an entry that is not an object', 'eyJhbGciOiJFZERTQSJ9.sig', /^signatures\[0\] is not an object$/],
    ['protected missing', { signature: 'AAAA' }, /^signatures\[0\]\.protected is missing or not a string$/],
    ['protected not base64url', { protected: 'not base64url!', signature: 'AAAA' }, /^signatures\[0\]\.protected is not base64url$/],
    ['protected padded base64', { protected: `${b64('{"alg":"EdDSA"}')}==`, signature: 'AAAA' }, /^signatures\[0\]\.protected is not base64url$/],
    ['protected not JSON', { protected: b64('not json'), signature: 'AAAA' }, /^signatures\[0\]\.protected does not decode to JSON$/],
    ['protected a JSON array', { protected: b64('[1]'), signature: 'AAAA' }, /^signatures\[0\]\.protected does not decode to a JSON object$/],
    ['protected without kid', { protected: b64('{"alg":"EdDSA"}'), signature: 'AAAA' }, /^signatures\[0\]\.protected has no kid$/],
    ['signature missing', { protected: b64('{"alg":"EdDSA","kid":"k"}') }, /^signatures\[0\]\.signature is missing or not a string$/],
    ['signature not base64url', { protected: b64('{"alg":"EdDSA","kid":"k"}'), signature: 'a+b/c=' }, /^signatures\[0\]\.signature is not base64url$/],
    ['header not an object', { protected: b64('{"alg":"EdDSA","kid":"k"}'), signature: 'AAAA', header: 'x' }, /^signatures\[0\]\.header is not an object$/],
  ];
  for (const [name, entry, reason] of cases) {
    it(name, async () => {
      const r = await verifyCardSignatures({ ...sampleCard(), signatures: [entry] }, new Map([['k', keyA.publicJwk]]));
      expect(r).toMatchObject({ status: 'failed', code: 'malformed-signature' });
      if (r.status === 'failed') expect(r.reason).toMatch(reason);
    });
  }

  it('says which index is malformed', async () => {
    const signed = await signCard(sampleCard(), keyA.privateJwk);
    const r = await verifyCardSignatures({ ...signed, signatures: [{ signature: 'x' }, { protected: '%%', signature: 'x' }] }, trustedA);
    expect(r).toMatchObject({ status: 'failed' });
    if (r.status === 'failed') expect(r.reason).toBe('signatures[0].protected is missing or not a string; signatures[1].protected is not base64url');
  });

  it('a card that is not an object, signatures that are not a list, and an unrepresentable card are malformed cards', async () => {
    for (const card of [null, 'card', 42, [sampleCard()], { ...sampleCard(), signatures: {} }, { ...sampleCard(), n: Number.POSITIVE_INFINITY, signatures: [{}] }]) {
      expect(await verifyCardSignatures(card, trustedA)).toMatchObject({ status: 'failed', code: 'malformed-card' });
    }
  });

  it(`looks at no more than MAX_CARD_SIGNATURES (${MAX_CARD_SIGNATURES}) entries`, async () => {
    const good = (await signCard(sampleCard(), keyA.privateJwk)).signatures[0]!;
    const junk = { protected: b64(JSON.stringify({ alg: 'EdDSA', kid: 'unknown' })), signature: 'AAAA' };
    const last = [...Array<typeof junk>(MAX_CARD_SIGNATURES - 1).fill(junk), good];
    expect(await verifyCardSignatures({ ...sampleCard(), signatures: last }, trustedA)).toMatchObject({ status: 'verified', index: MAX_CARD_SIGNATURES - 1 });
    const beyond = [...Array<typeof junk>(MAX_CARD_SIGNATURES).fill(junk), good];
    const r = await verifyCardSignatures({ ...sampleCard(), signatures: beyond }, trustedA);
    expect(r).toMatchObject({ status: 'failed', code: 'unknown-key' });
    if (r.status === 'failed') {
      expect(r.failures).toHaveLength(MAX_CARD_SIGNATURES);
      expect(r.reason).toMatch(/1 more not examined/);
    }
  });

  it('signCard refuses a non-object card, a bad signatures member and a non-Ed25519 key with CardSigningError', async () => {
    await expect(signCard([1], keyA.privateJwk)).rejects.toThrow(CardSigningError);
    await expect(signCard({ ...sampleCard(), signatures: 'x' }, keyA.privateJwk)).rejects.toThrow(/signatures must be an array/);
    await expect(signCard(sampleCard(), keyA.publicJwk)).rejects.toThrow(/Ed25519 private JWK/);
    await expect(signCard(sampleCard(), { ...keyA.privateJwk, d: 'AAAA' })).rejects.toThrow(CardSigningError);
  });
});

/** The paths of the leaves of a JSON value: scalars, empty arrays and empty objects. */
function leafPaths(v: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(v)) return v.length === 0 ? [path] : v.flatMap((x, i) => leafPaths(x, [...path, i]));
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v);
    return entries.length === 0 ? [path] : entries.flatMap(([k, x]) => leafPaths(x, [...path, k]));
  }
  return [path];
}

/** A JSON value that canonicalizes differently from `v`. */
function changed(v: unknown): unknown {
  if (typeof v === 'string') return `${v}x`;
  if (typeof v === 'number') return v === 0 ? 1 : -v;
  if (typeof v === 'boolean') return !v;
  if (v === null) return 0;
  if (Array.isArray(v)) return [null];
  return { x: null };
}

/** A deep copy of `card` with the leaf at `path` replaced by a changed value. */
function withLeafChanged(card: Record<string, unknown>, path: (string | number)[]): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(card)) as Record<string, unknown>;
  let parent: any = copy;
  for (const key of path.slice(0, -1)) parent = parent[key];
  const last = path.at(-1) as string | number;
  Object.defineProperty(parent, last, { value: changed(parent[last]), enumerable: true, writable: true, configurable: true });
  return copy;
}

describe('property: sign then verify', () => {
  const card = fc
    .record({
      name: fc.string({ minLength: 1 }),
      description: fc.string(),
      version: fc.string({ minLength: 1 }),
      supportedInterfaces: fc.array(fc.record({ url: fc.webUrl(), protocolBinding: fc.constantFrom('JSONRPC', 'GRPC', 'HTTP+JSON'), protocolVersion: fc.constant('1.0') }), { minLength: 1, maxLength: 3 }),
      capabilities: fc.record({ streaming: fc.boolean(), pushNotifications: fc.boolean() }, { requiredKeys: [] }),
      skills: fc.array(fc.record({ id: fc.string({ minLength: 1 }), name: fc.string(), description: fc.string(), tags: fc.array(fc.string()) }), { maxLength: 3 }),
      extra: fc.dictionary(fc.string().filter((k) => k !== 'signatures'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
    })
    .map(({ extra, ...base }) => JSON.parse(JSON.stringify({ ...extra, ...base })) as Record<string, unknown>);

  it('verifies any card it signed, and fails once any one leaf value changes', async () => {
    await fc.assert(
      fc.asyncProperty(card, fc.nat(), async (c, pick) => {
        const signed = await signCard(c, keyA.privateJwk);
        expect(await verifyCardSignatures(signed, trustedA)).toMatchObject({ status: 'verified', keyId: keyA.kid });
        const leaves = leafPaths(c);
        const path = leaves[pick % leaves.length] as (string | number)[];
        const tampered = withLeafChanged(signed, path);
        expect(await verifyCardSignatures(tampered, trustedA)).toMatchObject({ status: 'failed', code: 'bad-signature' });
      }),
      { numRuns: 60 },
    );
  });
});
