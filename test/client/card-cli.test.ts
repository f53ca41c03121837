/**
 * `registry card keygen|sign|verify`, driven in-process through runCli (no cluster involved).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './run-cli.js';
import { CARD_PRIVATE_KEY_FILE, CARD_PUBLIC_KEY_FILE } from '../../src/cli/card.js';
import { verifyCardSignatures, type JWK } from '../../src/auth/card-signatures.js';

const CARD_PATH = fileURLToPath(new URL('../registry/fixtures/formats/a2a-v1.0-sample-agent-card.json', import.meta.url));


describe('registry card', () => {
  let dir: string;
  let cardFile: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'registry-card-cli-'));
    const { signatures: _s, ...card } = JSON.parse(readFileSync(CARD_PATH, 'utf8')) as Record<string, unknown>;
    cardFile = join(dir, 'card.json');
    writeFileSync(cardFile, JSON.stringify(card, null, 2));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keygen writes the private key with mode 0600 and the public key, prints the kid, and never overwrites', async () => {
    const keys = join(dir, 'keys-a');
    const r = await run(['card', 'keygen', '--out', keys]);
    expect(r).toMatchObject({ code: 0, err: [] });
    expect(r.out).toHaveLength(1);
    const kid = r.out[0] as string;
    expect(kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const privatePath = join(keys, CARD_PRIVATE_KEY_FILE);
    expect(statSync(privatePath).mode & 0o777).toBe(0o600);
    const priv = JSON.parse(readFileSync(privatePath, 'utf8')) as JWK;
    const pub = JSON.parse(readFileSync(join(keys, CARD_PUBLIC_KEY_FILE), 'utf8')) as JWK;
    expect(priv).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid });
    expect(typeof priv.d).toBe('string');
    expect(pub).toEqual({ kty: 'OKP', crv: 'Ed25519', x: priv.x, kid });

    const again = await run(['card', 'keygen', '--out', keys]);
    expect(again.code).toBe(1);
    expect(again.err[0]).toMatch(/^error: EEXIST /);
    expect(JSON.parse(readFileSync(privatePath, 'utf8'))).toEqual(priv);
  });

  it('sign prints the signed card, which verifies under the printed kid', async () => {
    const keys = join(dir, 'keys-b');
    const kid = (await run(['card', 'keygen', '--out', keys])).out[0] as string;
    const r = await run(['card', 'sign', '--key', join(keys, CARD_PRIVATE_KEY_FILE), cardFile]);
    expect(r).toMatchObject({ code: 0, err: [] });
    const signed = JSON.parse(r.out.join('\n')) as Record<string, unknown>;
    const pub = JSON.parse(readFileSync(join(keys, CARD_PUBLIC_KEY_FILE), 'utf8')) as JWK;
    expect(await verifyCardSignatures(signed, new Map([[kid, pub]]))).toEqual({ status: 'verified', keyId: kid, index: 0 });
  });

  it('sign --kid --out writes the file; verify accepts it with the public key and refuses it without', async () => {
    const keys = join(dir, 'keys-c');
    await run(['card', 'keygen', '--out', keys]);
    const out = join(dir, 'signed-c.json');
    const r = await run(['card', 'sign', '--key', join(keys, CARD_PRIVATE_KEY_FILE), '--kid', 'seed-2025', '--out', out, cardFile]);
    expect(r).toMatchObject({ code: 0, out: [`wrote ${out} (1 signature)`] });
    const signed = JSON.parse(readFileSync(out, 'utf8')) as { signatures: { protected: string }[] };
    expect(JSON.parse(Buffer.from(signed.signatures[0]!.protected, 'base64url').toString())).toMatchObject({ alg: 'EdDSA', kid: 'seed-2025' });

    // The public JWK file carries the thumbprint kid, not seed-2025: verify reports the unknown key id.
    const wrongKid = await run(['card', 'verify', '--key', join(keys, CARD_PUBLIC_KEY_FILE), out]);
    expect(wrongKid.code).toBe(1);
    expect(wrongKid.out[0]).toBe('failed (unknown-key): signatures[0] is signed by unknown key id "seed-2025"');

    const pub = JSON.parse(readFileSync(join(keys, CARD_PUBLIC_KEY_FILE), 'utf8')) as JWK;
    const renamed = join(dir, 'seed-2025.public.jwk');
    writeFileSync(renamed, JSON.stringify({ ...pub, kid: 'seed-2025' }));
    const ok = await run(['--json', 'card', 'verify', '--key', join(keys, CARD_PUBLIC_KEY_FILE), '--key', renamed, out]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out.join('\n'))).toEqual({ status: 'verified', keyId: 'seed-2025', index: 0 });

    const unsigned = await run(['card', 'verify', '--key', renamed, cardFile]);
    expect(unsigned).toMatchObject({ code: 1, out: ['unsigned: the card has no signatures'] });
  });

  it('reports a card that is not JSON and a key that is not an Ed25519 private JWK as INVALID_ARGUMENT', async () => {
    const keys = join(dir, 'keys-d');
    await run(['card', 'keygen', '--out', keys]);
    const notJson = join(dir, 'not.json');
    writeFileSync(notJson, '{ nope');
    const r1 = await run(['card', 'sign', '--key', join(keys, CARD_PRIVATE_KEY_FILE), notJson]);
    expect(r1.code).toBe(1);
    expect(r1.err[0]).toMatch(/^error: INVALID_ARGUMENT .*not\.json is not valid JSON/);

    const r2 = await run(['card', 'sign', '--key', join(keys, CARD_PUBLIC_KEY_FILE), cardFile]);
    expect(r2.code).toBe(1);
    expect(r2.err[0]).toMatch(/^error: INVALID_ARGUMENT .*card-key\.public\.jwk cannot be used: .*Ed25519 private JWK/);

    const r3 = await run(['card', 'sign', '--key', join(dir, 'missing.jwk'), cardFile]);
    expect(r3.err[0]).toMatch(/^error: ENOENT /);
  });
});
