/**
 * The `registry token` and `registry auth` commands, and `registry card trust|untrust`: tokens,
 * signing keys and trusted card keys of a cluster running with `--auth on` (`registry.v1.Auth`).
 *
 *   registry --token-file data/n1/admin.token token create --role writer --namespace io.github.alice --ttl 1h
 *   registry --token-file data/n1/admin.token token revoke <token-id>
 *   registry --token-file data/n1/admin.token auth status
 *   registry --token-file data/n1/admin.token auth rotate-key [--retire-previous]
 *   registry --token-file data/n1/admin.token card trust <kid> card-key.public.jwk
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { RegistryClient } from '../client/registry-client.js';
import { ValidationError } from '../registry/validation.js';

/** Runs `body` with a client made from the global options (see `buildProgram`). */
export type WithClient = (command: Command, body: (client: RegistryClient, json: boolean) => Promise<void>) => Promise<void>;

/** How the commands print. */
export interface AuthCommandIo {
  out(line: string): void;
}

/** Parses a `--ttl` such as `30s`, `15m`, `1h`, `7d` (or plain seconds) into whole seconds; `0` means no expiry. */
export function parseTtlSeconds(value: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new ValidationError('--ttl', `must be a duration such as 30s, 15m, 1h or 7d, got ${JSON.stringify(value)}`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * (unit === 's' ? 1 : unit === 'm' ? 60 : unit === 'h' ? 3_600 : 86_400);
}

/** Adds `token`, `auth` and `card trust|untrust` to `program` (`card` is created if absent). */
export function addAuthCommands(program: Command, io: AuthCommandIo, withClient: WithClient): void {
  const token = program.command('token').description('bearer tokens of a cluster running with --auth on (admin)');
  token
    .command('create')
    .description('print a new token: reader (get, find, search, watch), writer (register, heartbeat, deregister under its namespaces) or admin')
    .requiredOption('--role <role>', 'reader, writer or admin')
    .option('--namespace <ns>', 'for a writer: a namespace it may write under, e.g. io.github.alice (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--ttl <duration>', 'lifetime, e.g. 1h or 7d (default: no expiry)')
    .option('--name <name>', 'the principal name recorded as modified_by (default <role>-<token id>)')
    .action(async (options: { role: string; namespace: string[]; ttl?: string; name?: string }, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.createToken({
          role: options.role,
          namespaces: options.namespace,
          ttlSeconds: options.ttl === undefined ? 0 : parseTtlSeconds(options.ttl),
          ...(options.name !== undefined ? { name: options.name } : {}),
        });
        if (json) io.out(JSON.stringify(res, null, 2));
        else {
          io.out(res.token);
          io.out(`# id ${res.token_id}, principal ${res.principal}, ${Number(res.expires_unix_s) > 0 ? `expires ${new Date(Number(res.expires_unix_s) * 1000).toISOString()}` : 'never expires'}`);
        }
      });
    });
  token
    .command('revoke')
    .description('revoke a token by its id; every node refuses it once the write is applied there')
    .argument('<id>', 'the token id (printed by token create; bootstrap-<node> for a node\'s admin.token)')
    .action(async (id: string, _options: unknown, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.revokeToken(id);
        io.out(json ? JSON.stringify(res) : `revoked ${id} at revision ${res.revision}`);
      });
    });

  const auth = program.command('auth').description('the cluster\'s auth state');
  auth
    .command('status')
    .description('whether auth is on, the signing and card key ids, and who your token says you are')
    .action(async (_options: unknown, command: Command) => {
      await withClient(command, async (client, json) => {
        const st = await client.authStatus();
        if (json) {
          io.out(JSON.stringify(st, null, 2));
          return;
        }
        io.out(`auth ${st.enabled ? 'on' : 'off'}`);
        io.out(`signing keys: ${st.signing_key_ids.join(', ') || 'none'} (current ${st.current_key_id || 'none'})`);
        io.out(`trusted card keys: ${st.trusted_card_key_ids.join(', ') || 'none'}`);
        io.out(`revoked tokens: ${st.revoked_tokens}`);
        if (st.principal) io.out(`you: ${st.principal} (${st.role}${st.namespaces.length > 0 ? ` of ${st.namespaces.join(', ')}` : ''})`);
      });
    });
  auth
    .command('rotate-key')
    .description('create a new signing key for new tokens; earlier tokens stay valid unless --retire-previous')
    .option('--retire-previous', 'remove the earlier signing keys: every token they signed stops working')
    .action(async (options: { retirePrevious?: boolean }, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.rotateSigningKey(Boolean(options.retirePrevious));
        io.out(json ? JSON.stringify(res) : `signing key ${res.keyId} at revision ${res.revision}`);
      });
    });

  const card = program.commands.find((c) => c.name() === 'card') ?? program.command('card').description('A2A agent card signatures');
  card
    .command('trust')
    .description('trust a public key (Ed25519 JWK, e.g. from `registry card keygen`) for card signatures')
    .argument('<kid>', 'the key id signatures name (printed by card keygen)')
    .argument('<file>', 'the public JWK file')
    .action(async (kid: string, file: string, _options: unknown, command: Command) => {
      const jwk = await readFile(file, 'utf8');
      await withClient(command, async (client, json) => {
        const res = await client.trustCardKey(kid, jwk.trim());
        io.out(json ? JSON.stringify(res) : `trusted card key ${kid} at revision ${res.revision}`);
      });
    });
  card
    .command('untrust')
    .description('stop trusting a card key')
    .argument('<kid>', 'the key id')
    .action(async (kid: string, _options: unknown, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.untrustCardKey(kid);
        io.out(json ? JSON.stringify(res) : `card key ${kid} is no longer trusted (revision ${res.revision})`);
      });
    });
}
