#!/usr/bin/env node
/**
 * `registry`: the command-line client of a registry cluster.
 *
 *   registry [--endpoints a,b,c] [--json] [--timeout ms] [--cacert F [--cert F --key F]] <command>
 *     import FILE|DIR                register every valid entry: the MCP seed list, server.json documents or
 *                                    A2A AgentCards (an object, an array or JSON Lines; the format is detected)
 *     register --file agent.json | --card card.json [--id ID] [--ttl 30s] [--expected-revision R] [--create-only]
 *     heartbeat ID [--every 5s] [--health serving]
 *     watch [--capability C] [--kind K] [--prefix P] [--from REV]
 *     get ID [--serializable]        read one agent
 *     find [--capability C] [--capability-prefix P] [--kind K] [--label k=v]... [--limit N] [--serializable]
 *     search QUERY [--capability C] [--capability-prefix P] [--kind K] [--label k=v]... [--limit N]
 *                                    keyword search, best first (BM25)
 *     capabilities [--prefix P]      the capabilities agents list, with their counts
 *     deregister ID                  remove one agent
 *     status                         every endpoint's role, term, leader and indexes
 *     leader transfer ID             hand leadership to member ID
 *     member list|add ID ADDR [--learner]|remove ID|promote ID
 *     snapshot save FILE             a consistent backup from any node
 *     certs init DIR --nodes n1,n2,n3 [--hosts h1,h2] [--days N] [--force]
 *                                    a cluster CA and node and client certificates for TLS
 *
 * Endpoints come from `--endpoints`, else `REGISTRY_ENDPOINTS`, else {@link DEFAULT_ENDPOINTS}.
 * With `--cacert` (or `REGISTRY_CACERT`) the CLI dials with TLS, trusting that CA, and presents
 * `--cert`/`--key` (`REGISTRY_CERT`/`REGISTRY_KEY`) as client certificate.
 * Output is human-readable, or JSON with `--json`. Any error prints `error: <CODE> <message>` on
 * stderr (CODE a gRPC status name, or a system error code such as ENOENT) and exits non-zero.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { RegistryClient, type RegistryClientOptions } from '../client/registry-client.js';
import { RegistryError } from '../client/errors.js';
import type { Agent, AgentSpec, Health } from '../registry/types.js';
import { specFromCard } from '../registry/formats/card.js';
import { parseImportFiles } from '../registry/seed.js';
import { ValidationError } from '../registry/validation.js';
import { addCardCommand } from './card.js';
import { readJsonFile } from './json-file.js';
import { addAuthCommands } from './auth-commands.js';

/** Environment variable holding a bearer token (the default of `--token`). */
export const TOKEN_ENV = 'REGISTRY_TOKEN';
/** Environment variable naming a file that holds a bearer token (the default of `--token-file`). */
export const TOKEN_FILE_ENV = 'REGISTRY_TOKEN_FILE';
import { loadClientTlsFiles, TlsConfigError } from '../auth/tls.js';
import { CertsError } from '../auth/certs.js';
import { registerCertsCommand } from './certs.js';

/** The endpoints of a local three-node cluster, used when neither flag nor environment names any. */
export const DEFAULT_ENDPOINTS = '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003';
/** The environment variable that may list the endpoints (comma-separated `host:port`). */
export const ENDPOINTS_ENV = 'REGISTRY_ENDPOINTS';
/** Results per request of `registry search` (at most the server's maximum page size). */
export const SEARCH_CLI_PAGE_SIZE = 100;
/** How many registrations `import` keeps in flight at once. */
export const IMPORT_CONCURRENCY = 32;
/** Results `registry search` shows unless `--limit` says otherwise. */
export const SEARCH_CLI_DEFAULT_LIMIT = 10;

/** Where the CLI writes. Each call of `out`/`err` is one line (the newline is added). */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Whether stdout is a terminal: `import` then draws a progress bar on `progressStream`. */
  readonly isTTY: boolean;
  readonly progressStream?: NodeJS.WritableStream;
}

/** What a program run needs besides its arguments: the output, and how to make a client. */
export interface CliContext {
  readonly io: CliIo;
  /** Makes the client for the given options; a {@link RegistryClient} by default. */
  readonly createClient?: (options: RegistryClientOptions) => RegistryClient;
  /** The exit code; commands set it to non-zero on failure. */
  exitCode: number;
}

/** The global options, as parsed. */
interface GlobalOptions {
  endpoints: string;
  json?: boolean;
  timeout?: string;
  token?: string;
  tokenFile?: string;
  cacert?: string;
  cert?: string;
  key?: string;
}

/** Parses `500ms`, `30s`, `5m`, `1h` or a plain number of seconds into ms. */
export function parseDurationMs(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new ValidationError(flag, `must be a duration such as 30s, 5m or 500ms, got ${JSON.stringify(value)}`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
  if (!(ms > 0)) throw new ValidationError(flag, 'must be positive');
  return ms;
}

function parseHealth(value: string): Health {
  switch (value) {
    case 'serving':
      return 'serving';
    case 'degraded':
      return 'degraded';
    case 'not-serving':
    case 'notServing':
      return 'notServing';
    default:
      throw new ValidationError('--health', 'must be serving, degraded or not-serving');
  }
}

/** The process's own stdout/stderr. */
const processIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  isTTY: Boolean(process.stdout.isTTY),
  progressStream: process.stdout,
};

/**
 * Builds the `registry` program. Commands write through `ctx.io` and set `ctx.exitCode`;
 * failures are thrown (a {@link RegistryError}, {@link ValidationError} or system error) for
 * {@link runCli} to print. Commander is set not to exit the process.
 */
export function buildProgram(ctx: CliContext): Command {
  const { io } = ctx;
  const program = new Command('registry')
    .description('Client of a Raft-replicated registry of services and AI agents')
    .addOption(
      new Option('--endpoints <list>', 'comma-separated host:port of the nodes').env(ENDPOINTS_ENV).default(DEFAULT_ENDPOINTS),
    )
    .option('--json', 'print JSON instead of text')
    .option('--timeout <ms>', 'overall deadline of each request, retries included, in milliseconds')
    .addOption(new Option('--token <token>', 'bearer token for a cluster running with --auth on').env(TOKEN_ENV))
    .addOption(new Option('--token-file <file>', 'read the bearer token from a file (e.g. <data-dir>/admin.token)').env(TOKEN_FILE_ENV))
    .addOption(new Option('--cacert <file>', 'dial with TLS, trusting this CA certificate (PEM)').env('REGISTRY_CACERT'))
    .addOption(new Option('--cert <file>', 'client certificate (PEM) for mutual TLS, with --key and --cacert').env('REGISTRY_CERT'))
    .addOption(new Option('--key <file>', 'private key (PEM) of --cert').env('REGISTRY_KEY'))
    // Global options go before the command, so a command may have an option of the same name
    // (`registry --key client.key card sign --key card.jwk`).
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s.replace(/\n$/, '')),
      writeErr: (s) => io.err(s.replace(/\n$/, '')),
    });

  /** Runs `body` with a client built from the global options, closing it afterwards. */
  const withClient = async (command: Command, body: (client: RegistryClient, json: boolean) => Promise<void>): Promise<void> => {
    const opts = command.optsWithGlobals<GlobalOptions>();
    const token = opts.token ?? (opts.tokenFile !== undefined ? (await readFile(opts.tokenFile, 'utf8')).trim() : undefined);
    const options: RegistryClientOptions = {
      endpoints: parseEndpoints(opts.endpoints),
      ...(opts.timeout !== undefined ? { deadlineMs: parsePositiveInt(opts.timeout, '--timeout') } : {}),
      ...(token !== undefined && token !== '' ? { token } : {}),
      ...clientTls(opts),
    };
    const client = (ctx.createClient ?? ((o) => new RegistryClient(o)))(options);
    try {
      await body(client, Boolean(opts.json));
    } finally {
      client.close();
    }
  };

  program
    .command('import')
    .description(
      'register every valid entry of a file or a directory of files: the MCP registry seed list (e.g. data/mcp-registry-seed-2025-05-16.json), ' +
        'or MCP server.json documents / A2A AgentCards (one JSON object, a JSON array or JSON Lines); the format is detected',
    )
    .argument('<file>', 'the file, or a directory whose *.json and *.jsonl files are read in name order')
    .option('--concurrency <n>', 'registrations in flight at once', String(IMPORT_CONCURRENCY))
    .action(async (file: string, options: { concurrency: string }, command: Command) => {
      const concurrency = parsePositiveInt(options.concurrency, '--concurrency');
      const files = await readImportFiles(file);
      const seed = parseImportFiles(files);
      await withClient(command, async (client, json) => {
        if (!json) {
          for (const x of seed.invalid) {
            const where = files.length > 1 ? `${x.source}:${x.index}` : String(x.index);
            io.out(`invalid entry ${where} ${x.name === '' ? '(no name)' : x.name}: ${x.reason}`);
          }
        }
        const started = performance.now();
        const bar =
          io.isTTY && !json && io.progressStream !== undefined
            ? new cliProgress.SingleBar(
                { stream: io.progressStream, format: 'importing [{bar}] {value}/{total} agents' },
                cliProgress.Presets.shades_classic,
              )
            : undefined;
        bar?.start(seed.agents.length, 0);
        let registered = 0;
        const failed: { id: string; code: string; message: string }[] = [];
        await forEachConcurrently(seed.agents, concurrency, async (agent) => {
          try {
            await client.register(agent);
            registered++;
          } catch (e) {
            const { code, message } = describeError(e);
            failed.push({ id: agent.id, code, message });
          }
          bar?.increment();
        });
        bar?.stop();
        const elapsedMs = Math.round(performance.now() - started);
        if (json) {
          io.out(JSON.stringify({ registered, invalid: seed.invalid, failed, elapsedMs }, null, 2));
        } else {
          for (const f of failed) io.out(`failed ${f.id}: ${f.code} ${f.message}`);
          io.out(`registered ${registered}, invalid ${seed.invalid.length}, failed ${failed.length} in ${elapsedMs} ms`);
        }
        if (failed.length > 0) ctx.exitCode = 1;
      });
    });

  program
    .command('register')
    .description('create or replace one agent, from an agent spec (--file) or from its A2A AgentCard / MCP server.json (--card)')
    .option('--file <path>', 'a JSON file holding one agent spec')
    .option('--card <path>', 'a JSON file holding one A2A AgentCard or MCP server.json, stored as is; the indexed fields are derived from it')
    .option('--id <id>', 'with --card: the agent id (default <name>@<version> of the card)')
    .option('--ttl <duration>', 'a lease (e.g. 30s, 5m): the agent disappears unless `registry heartbeat` renews it')
    .option('--expected-revision <rev>', 'compare-and-set: only if the agent is at this mod revision')
    .option('--create-only', 'only if the id is not registered yet')
    .action(async (options: { file?: string; card?: string; id?: string; ttl?: string; expectedRevision?: string; createOnly?: boolean }, command: Command) => {
      if ((options.file === undefined) === (options.card === undefined)) throw new ValidationError('--file', 'or --card is required (one of them)');
      const spec =
        options.card !== undefined
          ? specFromCard({ card: await readFile(options.card, 'utf8'), ...(options.id !== undefined ? { id: options.id } : {}) }, 'agent', 'card')
          : ((await readJsonFile(options.file as string)) as AgentSpec);
      const ttlSeconds = options.ttl === undefined ? 0 : Math.round(parseDurationMs(options.ttl, '--ttl') / 1000);
      const expectedRevision = options.expectedRevision === undefined ? 0 : parsePositiveInt(options.expectedRevision, '--expected-revision');
      await withClient(command, async (client, json) => {
        const res = await client.register(spec, { ttlSeconds, expectedRevision, createOnly: Boolean(options.createOnly) });
        if (json) io.out(JSON.stringify(res, null, 2));
        else io.out(`registered ${res.agent.id} at revision ${res.revision} (created at ${res.agent.createRevision})`);
      });
    });

  program
    .command('heartbeat')
    .description('renew the lease of an agent registered with --ttl (once, or every --every until Ctrl-C)')
    .argument('<id>', 'the agent id')
    .option('--every <duration>', 'keep renewing at this interval, e.g. 5s')
    .option('--health <health>', 'report health: serving, degraded or not-serving')
    .action(async (id: string, options: { every?: string; health?: string }, command: Command) => {
      const health = options.health === undefined ? undefined : parseHealth(options.health);
      const everyMs = options.every === undefined ? 0 : parseDurationMs(options.every, '--every');
      await withClient(command, async (client, json) => {
        for (;;) {
          const res = await client.heartbeat(id, health);
          if (json) io.out(JSON.stringify({ id, ...res }));
          else io.out(`renewed ${id}: lease ${res.ttlSeconds}s`);
          if (everyMs === 0) return;
          await new Promise((r) => setTimeout(r, everyMs));
        }
      });
    });

  program
    .command('watch')
    .description('follow changes, in revision order (Ctrl-C stops); resumes on another node if one fails')
    .option('--capability <c>', 'only agents with this capability')
    .option('--kind <k>', 'only agents of this kind')
    .option('--prefix <p>', 'only agents whose id starts with this')
    .option('--from <rev>', 'start at this revision (default: from now)')
    .option('--count <n>', 'stop after this many events')
    .action(async (options: { capability?: string; kind?: string; prefix?: string; from?: string; count?: string }, command: Command) => {
      const from = options.from === undefined ? 0 : parsePositiveInt(options.from, '--from');
      const count = options.count === undefined ? Infinity : parsePositiveInt(options.count, '--count');
      await withClient(command, async (client, json) => {
        let n = 0;
        const filter = { ...(options.capability ? { capability: options.capability } : {}), ...(options.kind ? { kind: options.kind } : {}), ...(options.prefix ? { idPrefix: options.prefix } : {}) };
        for await (const e of client.watch(filter, from)) {
          if (json) io.out(JSON.stringify(e));
          else io.out(`${e.revision} ${e.type.toUpperCase()}${e.expired ? ' (lease expired)' : ''} ${e.agent.id}`);
          if (++n >= count) return;
        }
      });
    });

  program
    .command('get')
    .description('read one agent')
    .argument('<id>', 'the agent id')
    .option('--serializable', 'read the answering node\'s local state (maybe stale; works without a leader)')
    .action(async (id: string, options: { serializable?: boolean }, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.get(id, { consistency: options.serializable ? 'serializable' : 'linearizable' });
        if (json) io.out(JSON.stringify(res, null, 2));
        else for (const line of formatAgent(res.agent, res.revision)) io.out(line);
      });
    });

  program
    .command('find')
    .description('list agents matching every given filter, ordered by id')
    .option('--capability <c>', 'only agents with this capability')
    .option('--capability-prefix <p>', 'only agents with a capability starting with this (e.g. tool:)')
    .option('--kind <k>', 'only agents of this kind')
    .option('--label <k=v>', 'only agents with this label (repeatable)', collectLabel, {} as Record<string, string>)
    .option('--limit <n>', 'stop after this many agents')
    .option('--page-size <n>', 'agents per request (0: the server default)', '0')
    .option('--serializable', 'read the answering nodes\' local state (maybe stale)')
    .option('--verified', 'only agents whose card signature verified with a trusted key')
    .action(
      async (
        options: { capability?: string; capabilityPrefix?: string; kind?: string; label: Record<string, string>; limit?: string; pageSize: string; serializable?: boolean; verified?: boolean },
        command: Command,
      ) => {
        const limit = options.limit === undefined ? Infinity : parsePositiveInt(options.limit, '--limit');
        const pageSize = parseNonNegativeInt(options.pageSize, '--page-size');
        await withClient(command, async (client, json) => {
          const agents: Agent[] = [];
          let revision = 0;
          const query = {
            ...(options.capability !== undefined ? { capability: options.capability } : {}),
            ...(options.capabilityPrefix !== undefined ? { capabilityPrefix: options.capabilityPrefix } : {}),
            ...(options.kind !== undefined ? { kind: options.kind } : {}),
            labels: options.label,
            ...(options.verified ? { verifiedOnly: true } : {}),
            pageSize,
          };
          const consistency = options.serializable ? 'serializable' : 'linearizable';
          for await (const page of client.findAll(query, { consistency })) {
            revision = Math.max(revision, page.revision);
            agents.push(...page.agents.slice(0, limit - agents.length));
            if (agents.length >= limit) break;
          }
          if (json) {
            io.out(JSON.stringify({ agents, revision }, null, 2));
            return;
          }
          const rows = agents.map((a) => [a.id, a.kind, a.version, a.capabilities.join(',')]);
          for (const line of formatTable(['ID', 'KIND', 'VERSION', 'CAPABILITIES'], rows)) io.out(line);
          io.out(`${agents.length} agent${agents.length === 1 ? '' : 's'} (revision ${revision})`);
        });
      },
    );

  program
    .command('search')
    .description('keyword search over name, capabilities and description, best first (BM25)')
    .argument('<query...>', 'the words to look for')
    .option('--capability <c>', 'only agents with this capability')
    .option('--capability-prefix <p>', 'only agents with a capability starting with this (e.g. tool:)')
    .option('--kind <k>', 'only agents of this kind')
    .option('--label <k=v>', 'only agents with this label (repeatable)', collectLabel, {} as Record<string, string>)
    .option('--limit <n>', 'show this many results', String(SEARCH_CLI_DEFAULT_LIMIT))
    .option('--serializable', 'read the answering node\'s local state (maybe stale)')
    .action(
      async (
        words: string[],
        options: { capability?: string; capabilityPrefix?: string; kind?: string; label: Record<string, string>; limit: string; serializable?: boolean },
        command: Command,
      ) => {
        const limit = parsePositiveInt(options.limit, '--limit');
        await withClient(command, async (client, json) => {
          const results: { agent: Agent; score: number }[] = [];
          let revision = 0;
          let pageToken = '';
          const consistency = options.serializable ? 'serializable' : 'linearizable';
          do {
            const page = await client.search(
              {
                query: words.join(' '),
                ...(options.capability !== undefined ? { capability: options.capability } : {}),
                ...(options.capabilityPrefix !== undefined ? { capabilityPrefix: options.capabilityPrefix } : {}),
                ...(options.kind !== undefined ? { kind: options.kind } : {}),
                labels: options.label,
                pageSize: Math.min(limit - results.length, SEARCH_CLI_PAGE_SIZE),
                pageToken,
              },
              { consistency },
            );
            revision = Math.max(revision, page.revision);
            results.push(...page.results);
            pageToken = page.nextPageToken;
          } while (pageToken !== '' && results.length < limit);
          if (json) {
            io.out(JSON.stringify({ results, revision }, null, 2));
            return;
          }
          const rows = results.map((r) => [r.score.toFixed(3), r.agent.id, r.agent.description.length > 60 ? `${r.agent.description.slice(0, 57)}...` : r.agent.description]);
          for (const line of formatTable(['SCORE', 'ID', 'DESCRIPTION'], rows)) io.out(line);
          io.out(`${results.length} result${results.length === 1 ? '' : 's'} (revision ${revision})`);
        });
      },
    );

  program
    .command('capabilities')
    .description('the capabilities agents list, with how many agents list each')
    .option('--prefix <p>', 'only capabilities starting with this (e.g. tool:)', '')
    .option('--serializable', 'read the answering node\'s local state (maybe stale)')
    .action(async (options: { prefix: string; serializable?: boolean }, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.listCapabilities(options.prefix, { consistency: options.serializable ? 'serializable' : 'linearizable' });
        if (json) {
          io.out(JSON.stringify(res, null, 2));
          return;
        }
        for (const line of formatTable(['CAPABILITY', 'AGENTS'], res.capabilities.map((c) => [c.capability, String(c.count)]))) io.out(line);
        io.out(`${res.capabilities.length} capabilit${res.capabilities.length === 1 ? 'y' : 'ies'} (revision ${res.revision})`);
      });
    });

  program
    .command('versions')
    .description('every version of the agents with this name, latest first')
    .argument('<name>', 'the name (exactly), e.g. io.github.apache/iotdb-mcp-server')
    .option('--serializable', 'read the answering node\'s local state (maybe stale)')
    .action(async (name: string, options: { serializable?: boolean }, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.listVersions(name, { consistency: options.serializable ? 'serializable' : 'linearizable' });
        if (json) {
          io.out(JSON.stringify(res, null, 2));
          return;
        }
        const rows = res.agents.map((a) => [a.version, a.id === res.latestId ? 'latest' : '', a.id, String(a.modRevision)]);
        for (const line of formatTable(['VERSION', '', 'ID', 'REVISION'], rows)) io.out(line);
        io.out(`${res.agents.length} version${res.agents.length === 1 ? '' : 's'} (revision ${res.revision})`);
      });
    });

  program
    .command('deregister')
    .description('remove one agent')
    .argument('<id>', 'the agent id')
    .action(async (id: string, _options: unknown, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.deregister(id);
        if (json) io.out(JSON.stringify(res, null, 2));
        else io.out(res.deleted ? `deregistered ${id} at revision ${res.revision}` : `${id} was not registered (revision ${res.revision})`);
      });
    });

  const member = program.command('member').description('cluster membership (one change at a time)');
  const printMembers = (json: boolean, res: { members: readonly { id: string; address: string; voter: boolean }[]; revision?: number }) => {
    if (json) io.out(JSON.stringify(res, null, 2));
    else for (const line of formatTable(['ID', 'ADDRESS', 'ROLE'], res.members.map((m) => [m.id, m.address, m.voter ? 'voter' : 'learner']))) io.out(line);
  };
  member
    .command('list')
    .description('the members as the first answering endpoint knows them')
    .action(async (_options: unknown, command: Command) => {
      await withClient(command, async (client, json) => printMembers(json, { members: (await client.status()).members }));
    });
  member
    .command('add')
    .description('add a member (it runs `registry-node --join`); a learner until caught up, then a voter')
    .argument('<id>', 'the new member id, e.g. n4')
    .argument('<address>', 'its host:port')
    .option('--learner', 'keep it a non-voting learner')
    .action(async (id: string, address: string, options: { learner?: boolean }, command: Command) => {
      await withClient(command, async (client, json) => printMembers(json, await client.addMember(id, address, Boolean(options.learner))));
    });
  member
    .command('remove')
    .description('remove a member; a removed leader steps down')
    .argument('<id>', 'the member id')
    .action(async (id: string, _options: unknown, command: Command) => {
      await withClient(command, async (client, json) => printMembers(json, await client.removeMember(id)));
    });
  member
    .command('promote')
    .description('make a learner a voter')
    .argument('<id>', 'the learner id')
    .action(async (id: string, _options: unknown, command: Command) => {
      await withClient(command, async (client, json) => printMembers(json, await client.promoteMember(id)));
    });

  program
    .command('snapshot')
    .description('backups')
    .command('save')
    .description('save a consistent backup of the registry from any node (restore with registry-node --restore FILE)')
    .argument('<file>', 'where to write it')
    .action(async (file: string, _options: unknown, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.saveSnapshot(file);
        if (json) io.out(JSON.stringify({ file, ...res }, null, 2));
        else io.out(`saved ${res.bytes} bytes from ${res.endpoint} to ${file}`);
      });
    });

  program
    .command('leader')
    .description('leadership of the cluster')
    .command('transfer')
    .description('hand leadership to another member (Raft thesis §3.10); waits until it leads')
    .argument('<id>', 'the member id of the new leader, e.g. n2')
    .action(async (id: string, _options: unknown, command: Command) => {
      await withClient(command, async (client, json) => {
        const res = await client.transferLeadership(id);
        if (json) io.out(JSON.stringify(res, null, 2));
        else io.out(`leader is now ${res.leaderId} (term ${res.term})`);
      });
    });

  program
    .command('status')
    .description('the status of every endpoint; exits non-zero when none answers')
    .action(async (_options: unknown, command: Command) => {
      await withClient(command, async (client, json) => {
        const all = await client.statusAll();
        if (json) {
          io.out(
            JSON.stringify(
              all.map((s) => (s.error ? { endpoint: s.endpoint, error: { code: s.error.codeName, message: s.error.details } } : s)),
              null,
              2,
            ),
          );
        } else {
          const rows = all.map((s) =>
            s.status
              ? [s.endpoint, s.status.nodeId, s.status.role, String(s.status.term), s.status.leaderId || '-', String(s.status.commitIndex), String(s.status.appliedIndex), String(s.status.snapshotIndex), String(s.status.firstIndex)]
              : [s.endpoint, `error: ${s.error.codeName} ${s.error.details}`],
          );
          for (const line of formatTable(['ENDPOINT', 'ID', 'ROLE', 'TERM', 'LEADER', 'COMMIT', 'APPLIED', 'SNAPSHOT', 'FIRST'], rows)) io.out(line);
        }
        if (all.every((s) => s.error !== undefined)) ctx.exitCode = 1;
      });
    });

  addCardCommand(program, ctx);
  addAuthCommands(program, io, withClient);
  registerCertsCommand(program, (line) => io.out(line));
  return program;
}

/** The client's TLS settings from `--cacert`/`--cert`/`--key`. @throws TlsConfigError naming the flag and file. */
function clientTls(opts: GlobalOptions): Pick<RegistryClientOptions, 'tls'> {
  if (opts.cacert === undefined) {
    if (opts.cert !== undefined || opts.key !== undefined) throw new TlsConfigError('--cert and --key need --cacert (the cluster CA to trust)');
    return {};
  }
  return { tls: loadClientTlsFiles({ ca: opts.cacert, ...(opts.cert !== undefined ? { cert: opts.cert } : {}), ...(opts.key !== undefined ? { key: opts.key } : {}) }) };
}

/**
 * Runs the CLI on `argv` (the arguments after the program name) and returns the exit code. Errors
 * are printed as `error: <CODE> <message>` on `io.err`, never thrown.
 */
export async function runCli(argv: readonly string[], io: CliIo = processIo, createClient?: CliContext['createClient']): Promise<number> {
  const ctx: CliContext = { io, exitCode: 0, ...(createClient ? { createClient } : {}) };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander has printed it (help: exit code 0)
    const { code, message } = describeError(e);
    io.err(`error: ${code} ${message}`);
    return 1;
  }
}

/** The code and message printed for an error. */
function describeError(e: unknown): { code: string; message: string } {
  if (e instanceof RegistryError) return { code: e.codeName, message: e.details };
  if (e instanceof ValidationError || e instanceof TlsConfigError || e instanceof CertsError) return { code: 'INVALID_ARGUMENT', message: e.message };
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return { code: typeof code === 'string' ? code : 'UNKNOWN', message: e.message };
  }
  return { code: 'UNKNOWN', message: String(e) };
}

/** Extensions of the files a directory import reads. */
const IMPORT_FILE_PATTERN = /\.(json|jsonl)$/;

/** The files of an import: `path` itself, or the `*.json` / `*.jsonl` files of a directory in name order. */
async function readImportFiles(path: string): Promise<{ source: string; text: string }[]> {
  if (!(await stat(path)).isDirectory()) return [{ source: basename(path), text: await readFile(path, 'utf8') }];
  const names = (await readdir(path)).filter((n) => IMPORT_FILE_PATTERN.test(n)).sort();
  if (names.length === 0) throw new ValidationError(path, 'holds no *.json or *.jsonl file');
  return Promise.all(names.map(async (n) => ({ source: n, text: await readFile(join(path, n), 'utf8') })));
}

/** Splits `a,b,c` into endpoints. @throws ValidationError (`--endpoints`) when none is left. */
function parseEndpoints(list: string): string[] {
  const endpoints = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (endpoints.length === 0) throw new ValidationError('--endpoints', 'must list at least one host:port');
  return endpoints;
}

/** Parses a positive integer flag. @throws ValidationError naming the flag. */
function parsePositiveInt(value: string, flag: string): number {
  const n = parseNonNegativeInt(value, flag);
  if (n === 0) throw new ValidationError(flag, 'must be a positive integer, got 0');
  return n;
}

/** Parses a non-negative integer flag. @throws ValidationError naming the flag. */
function parseNonNegativeInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) {
    throw new ValidationError(flag, `must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Commander collector of repeated `--label k=v`. @throws ValidationError (`--label`) without `=`. */
function collectLabel(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new ValidationError('--label', `must be key=value, got ${JSON.stringify(value)}`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Lines describing one agent. */
function formatAgent(agent: Agent, revision: number): string[] {
  const entries = (m: Readonly<Record<string, string>>) => Object.entries(m).map(([k, v]) => `${k}=${v}`);
  const block = (label: string, values: string[]) =>
    values.length === 0 ? [`${label.padEnd(14)}-`] : values.map((v, i) => `${(i === 0 ? label : '').padEnd(14)}${v}`);
  return [
    `${'id:'.padEnd(14)}${agent.id}`,
    `${'name:'.padEnd(14)}${agent.name}`,
    `${'kind:'.padEnd(14)}${agent.kind}`,
    `${'version:'.padEnd(14)}${agent.version}`,
    `${'description:'.padEnd(14)}${agent.description}`,
    `${'capabilities:'.padEnd(14)}${agent.capabilities.join(', ') || '-'}`,
    ...block('endpoints:', entries(agent.endpoints)),
    ...block('labels:', entries(agent.labels)),
    `${'revisions:'.padEnd(14)}created ${agent.createRevision}, modified ${agent.modRevision}, read at ${revision}`,
  ];
}

/** A left-aligned text table; short rows leave the remaining cells empty. */
function formatTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.filter((r) => r.length > i + 1).map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** Whether this module is the process's entry point (also through an npm bin symlink). */
function isMainModule(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

/**
 * The process-level setup of the `registry` command: output piped into a reader that stops
 * early (`registry token create | head -1`) ends the command quietly instead of crashing on
 * EPIPE; and Node's DEP0123 warning, which grpc-js triggers by sending an IP endpoint's address
 * as the TLS server name (the certificate is still checked against that IP), is not printed.
 */
function setUpProcess(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const options = rest[0];
    const code = typeof options === 'object' && options !== null ? (options as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    emitWarning(warning, ...rest);
  }) as typeof process.emitWarning;
}

if (isMainModule()) {
  setUpProcess();
  void runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
