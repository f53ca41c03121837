/**
 * `registry card`: signing keys and signatures of A2A AgentCards (A2A v1.0 §8.4), offline (no
 * cluster is contacted).
 *
 *   registry card keygen --out DIR                 a new Ed25519 key: DIR/card-key.private.jwk (mode 0600,
 *                                                  never overwritten) and DIR/card-key.public.jwk; prints the kid
 *   registry card sign --key PRIVATE.jwk [--kid K] [--out F] FILE
 *                                                  the card with one more signature, on stdout or in F
 *   registry card verify --key PUBLIC.jwk [--key ...] FILE
 *                                                  verified / unsigned / failed (exit code 1 unless verified)
 *
 * A key's kid is its JWK `kid` member (keygen writes the RFC 7638 thumbprint there), else its
 * thumbprint. With the global `--json`, keygen and verify print JSON.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { calculateJwkThumbprint } from 'jose';
import { CardSigningError, generateCardKey, signCard, verifyCardSignatures, type JWK } from '../auth/card-signatures.js';
import { isRecord } from '../util/json.js';
import { ValidationError } from '../registry/validation.js';
import { readJsonFile } from './json-file.js';
import type { CliContext } from './registry.js';

/** The file name `card keygen` gives the private key. */
export const CARD_PRIVATE_KEY_FILE = 'card-key.private.jwk';
/** The file name `card keygen` gives the public key. */
export const CARD_PUBLIC_KEY_FILE = 'card-key.public.jwk';
/** File mode of the private key: owner read/write only. */
export const CARD_PRIVATE_KEY_FILE_MODE = 0o600;

/** Reads a JWK file. @throws ValidationError naming the file when it is not a JSON object. */
async function readJwkFile(file: string): Promise<JWK> {
  const jwk = await readJsonFile(file);
  if (!isRecord(jwk)) throw new ValidationError(file, 'is not a JWK (a JSON object)');
  return jwk as JWK;
}

/** Commander collector of a repeated option. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Adds the `card` command (`keygen`, `sign`, `verify`) to `program`. Output goes through
 * `ctx.io`; failures are thrown for `runCli` to print: {@link ValidationError} for a bad key or
 * card, a system error (e.g. `EEXIST` when keygen would overwrite a private key, `ENOENT`).
 */
export function addCardCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const card = program.command('card').description('sign A2A AgentCards (A2A v1.0 §8.4: JWS over the RFC 8785 canonical card) and make signing keys');
  const json = (command: Command): boolean => Boolean(command.optsWithGlobals<{ json?: boolean }>().json);

  card
    .command('keygen')
    .description(`generate an Ed25519 signing key: DIR/${CARD_PRIVATE_KEY_FILE} (mode 0600) and DIR/${CARD_PUBLIC_KEY_FILE}; prints its kid`)
    .requiredOption('--out <dir>', 'the directory to write the two JWK files to (created if missing)')
    .action(async (options: { out: string }, command: Command) => {
      const key = await generateCardKey();
      await mkdir(options.out, { recursive: true });
      const privatePath = join(options.out, CARD_PRIVATE_KEY_FILE);
      const publicPath = join(options.out, CARD_PUBLIC_KEY_FILE);
      // 'wx': never overwrite an existing key (EEXIST); chmod as well, since the umask may narrow but never widen.
      await writeFile(privatePath, `${JSON.stringify(key.privateJwk, null, 2)}\n`, { mode: CARD_PRIVATE_KEY_FILE_MODE, flag: 'wx' });
      await chmod(privatePath, CARD_PRIVATE_KEY_FILE_MODE);
      await writeFile(publicPath, `${JSON.stringify(key.publicJwk, null, 2)}\n`);
      if (json(command)) io.out(JSON.stringify({ kid: key.kid, privateKey: privatePath, publicKey: publicPath }, null, 2));
      else io.out(key.kid);
    });

  card
    .command('sign')
    .description('add a signature to an A2A AgentCard; prints the signed card (or writes it with --out)')
    .argument('<file>', 'the AgentCard JSON file')
    .requiredOption('--key <file>', 'the Ed25519 private JWK, e.g. from `registry card keygen`')
    .option('--kid <kid>', 'the key id to put in the protected header (default: the JWK kid, else its RFC 7638 thumbprint)')
    .option('--out <file>', 'write the signed card here instead of stdout')
    .action(async (file: string, options: { key: string; kid?: string; out?: string }) => {
      const [doc, jwk] = await Promise.all([readJsonFile(file), readJwkFile(options.key)]);
      let signed: Awaited<ReturnType<typeof signCard>>;
      try {
        signed = await signCard(doc, jwk, options.kid !== undefined ? { kid: options.kid } : {});
      } catch (e) {
        if (e instanceof CardSigningError) {
          throw e.message.startsWith('card')
            ? new ValidationError(file, `cannot be signed: ${e.message}`)
            : new ValidationError(options.key, `cannot be used: ${e.message}`);
        }
        throw e;
      }
      const text = JSON.stringify(signed, null, 2);
      if (options.out === undefined) {
        io.out(text);
      } else {
        await writeFile(options.out, `${text}\n`);
        io.out(`wrote ${options.out} (${signed.signatures.length} signature${signed.signatures.length === 1 ? '' : 's'})`);
      }
    });

  card
    .command('verify')
    .description("check an AgentCard's signatures against public keys; exits non-zero unless one verifies")
    .argument('<file>', 'the AgentCard JSON file')
    .requiredOption('--key <file>', 'a trusted Ed25519 public JWK (repeatable); trusted under its kid, else its thumbprint', collect, [])
    .action(async (file: string, options: { key: string[] }, command: Command) => {
      const doc = await readJsonFile(file);
      const trusted = new Map<string, JWK>();
      for (const path of options.key) {
        const jwk = await readJwkFile(path);
        const kid = typeof jwk.kid === 'string' && jwk.kid !== '' ? jwk.kid : await calculateJwkThumbprint(jwk, 'sha256').catch(() => undefined);
        if (kid === undefined) throw new ValidationError(path, 'is not a usable public JWK');
        trusted.set(kid, jwk);
      }
      const result = await verifyCardSignatures(doc, trusted);
      if (json(command)) io.out(JSON.stringify(result, null, 2));
      else if (result.status === 'verified') io.out(`verified: signature ${result.index} by key ${result.keyId}`);
      else if (result.status === 'unsigned') io.out('unsigned: the card has no signatures');
      else io.out(`failed (${result.code}): ${result.reason}`);
      if (result.status !== 'verified') ctx.exitCode = 1;
    });
}
