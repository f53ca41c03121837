#!/usr/bin/env -S node --initial-old-space-size=64
/**
 * `registry-node`: runs one node of a registry cluster.
 *
 *   registry-node --id n1 --listen 127.0.0.1:7001 \
 *     --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 --data-dir ./data/n1 \
 *     --http-listen 127.0.0.1:8001 [--tls-cert n1.crt --tls-key n1.key --tls-ca ca.crt]
 *
 * With the three TLS flags (all or none; make the files with `registry certs init`) the gRPC
 * port requires mutual TLS and the HTTP front end serves HTTPS; a file that is missing, not PEM,
 * or does not fit the others (key of another certificate, certificate of another CA, of another
 * member) stops the start with `error: <flag> <file>: <problem>` on stderr and exit code 2.
 *
 * SIGTERM or SIGINT stops it cleanly (exit 0); a restart with the same data dir resumes.
 * Exit codes: 0 clean stop, 1 fatal error (corrupt data, broken invariant), 2 bad arguments
 * (bad TLS files included).
 */
import { Command, InvalidArgumentError } from 'commander';
import { TlsConfigError } from '../auth/tls.js';
import { createLogger } from '../log.js';
import { DEFAULT_ELECTION_TICKS, DEFAULT_HEARTBEAT_TICKS } from '../raft/raft.js';
import { RegistryNode } from '../server/node.js';
import { DEFAULT_TICK_MS } from '../server/raft-node.js';
import { DEFAULT_SNAPSHOT_TAIL_ENTRIES, DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES } from '../server/snapshots.js';
import { DEFAULT_SNAPSHOT_CHUNK_BYTES } from '../transport/snapshot-stream.js';
import {
  DEFAULT_PRINCIPAL_HEARTBEAT_POINTS_PER_SECOND,
  DEFAULT_PRINCIPAL_READ_POINTS_PER_SECOND,
  DEFAULT_PRINCIPAL_WRITE_POINTS_PER_SECOND,
  parseRateLimitFlag,
  type BucketSettings,
  type RateLimitOverrides,
} from '../auth/rate-limits.js';

/** Parses `n1=host:port,n2=host:port` into a map, rejecting malformed or duplicate entries. */
export function parsePeers(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9._-]+)=([^=\s]+:\d{1,5})$/.exec(part);
    if (!m) throw new InvalidArgumentError(`peer "${part}" is not of the form id=host:port`);
    const [, id, addr] = m as unknown as [string, string, string];
    if (id in out) throw new InvalidArgumentError(`peer id "${id}" appears twice`);
    out[id] = addr;
  }
  if (Object.keys(out).length === 0) throw new InvalidArgumentError('at least one peer is required');
  return out;
}

/** Parses `on` / `off` (also true/false) for flag `name`. */
function onOff(name: string) {
  return (v: string): boolean => {
    if (v === 'on' || v === 'true') return true;
    if (v === 'off' || v === 'false') return false;
    throw new InvalidArgumentError(`${name} must be on or off, got ${JSON.stringify(v)}`);
  };
}

/** Parses a rate flag (`50/s`, `50/s:burst=100`, `0`) with {@link parseRateLimitFlag}. */
function rateFlag(name: string) {
  return (v: string): BucketSettings => {
    try {
      return parseRateLimitFlag(v, name);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

const program = new Command()
  .name('registry-node')
  .description('Run one node of a Raft-replicated registry cluster')
  .requiredOption('--id <id>', 'this node id, one of --peers')
  .requiredOption('--listen <host:port>', 'address to serve clients and peers on')
  .option('--peers <list>', 'the voters a new cluster starts with: id=host:port,... (not with --join)', parsePeers)
  .option('--join', 'start empty and wait to be added to an existing cluster (registry member add)', false)
  .option('--restore <file>', 'seed a new node from a backup (registry snapshot save); the data dir must be empty')
  .requiredOption('--data-dir <dir>', 'directory of this node\'s data')
  .option('--tick-ms <ms>', 'length of a Raft tick in ms', positiveInt('--tick-ms'), DEFAULT_TICK_MS)
  .option('--election-ticks <n>', 'minimum election timeout in ticks', positiveInt('--election-ticks'), DEFAULT_ELECTION_TICKS)
  .option('--heartbeat-ticks <n>', 'heartbeat interval in ticks', positiveInt('--heartbeat-ticks'), DEFAULT_HEARTBEAT_TICKS)
  .option('--snapshot-threshold <entries>', 'snapshot after this many applied entries', positiveInt('--snapshot-threshold'), DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES)
  .option('--snapshot-tail <entries>', 'entries kept in the log behind a snapshot', positiveInt('--snapshot-tail'), DEFAULT_SNAPSHOT_TAIL_ENTRIES)
  .option('--snapshot-chunk-bytes <bytes>', 'chunk size of snapshot files and transfers', positiveInt('--snapshot-chunk-bytes'), DEFAULT_SNAPSHOT_CHUNK_BYTES)
  .option('--log-level <level>', 'pino log level', process.env.LOG_LEVEL ?? 'info')
  .option('--timeline', 'log every stage of every replicated entry (for measuring write latency)', false)
  .option('--http-listen <host:port>', 'address of the HTTP/JSON API, /health, /metrics and the dashboard (none when absent)')
  .option('--cors-origin <origins>', 'browser origins allowed to call the HTTP API besides the cluster\'s own, comma-separated (* for any)', (v) => v.split(',').map((o) => o.trim()).filter((o) => o !== ''))
  .option('--auth <on|off>', 'require bearer tokens (JWT, roles reader/writer/admin) on every client call; a new cluster writes an admin token to <data-dir>/admin.token', onOff('--auth'), false)
  .option('--rate-limits <on|off>', 'token buckets per principal and per address on writes, heartbeats and reads (default: as --auth)', onOff('--rate-limits'))
  .option('--rate-limit-write <rate>', `writes per principal, e.g. 50/s:burst=100 (0: unlimited; default ${DEFAULT_PRINCIPAL_WRITE_POINTS_PER_SECOND}/s)`, rateFlag('--rate-limit-write'))
  .option('--rate-limit-read <rate>', `reads (get, find, search, watch) per principal (default ${DEFAULT_PRINCIPAL_READ_POINTS_PER_SECOND}/s)`, rateFlag('--rate-limit-read'))
  .option('--rate-limit-heartbeat <rate>', `lease renewals per principal (default ${DEFAULT_PRINCIPAL_HEARTBEAT_POINTS_PER_SECOND}/s)`, rateFlag('--rate-limit-heartbeat'))
  .option('--rate-limit-address-write <rate>', 'writes per remote address', rateFlag('--rate-limit-address-write'))
  .option('--rate-limit-address-read <rate>', 'reads per remote address', rateFlag('--rate-limit-address-read'))
  .option('--rate-limit-address-heartbeat <rate>', 'lease renewals per remote address', rateFlag('--rate-limit-address-heartbeat'))
  .option('--require-signed-cards', 'refuse registers whose card carries no signature that verifies with a trusted key (registry card trust)', false)
  .option('--tls-cert <file>', 'this node\'s certificate, PEM (with --tls-key and --tls-ca: mutual TLS on the gRPC port, HTTPS on --http-listen)')
  .option('--tls-key <file>', 'the private key of --tls-cert, PEM')
  .option('--tls-ca <file>', 'the cluster CA certificate, PEM: peers and clients must present a certificate it signed')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program.parse();
if (!program.opts().join && !program.opts().peers) {
  process.stderr.write('error: --peers is required unless --join is given\n');
  process.exit(2);
}
{
  const given = (['tlsCert', 'tlsKey', 'tlsCa'] as const).filter((k) => program.opts()[k] !== undefined);
  if (given.length > 0 && given.length < 3) {
    process.stderr.write('error: --tls-cert, --tls-key and --tls-ca go together: give all three or none\n');
    process.exit(2);
  }
}
const opts = program.opts<{
  id: string;
  listen: string;
  peers?: Record<string, string>;
  join: boolean;
  restore?: string;
  dataDir: string;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  snapshotThreshold: number;
  snapshotTail: number;
  snapshotChunkBytes: number;
  logLevel: string;
  timeline: boolean;
  httpListen?: string;
  corsOrigin?: string[];
  auth: boolean;
  rateLimits?: boolean;
  rateLimitWrite?: BucketSettings;
  rateLimitRead?: BucketSettings;
  rateLimitHeartbeat?: BucketSettings;
  rateLimitAddressWrite?: BucketSettings;
  rateLimitAddressRead?: BucketSettings;
  rateLimitAddressHeartbeat?: BucketSettings;
  requireSignedCards: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}>();

/** The rate limit flags given, as overrides of the defaults. */
const rateLimitSettings: RateLimitOverrides = {
  principal: {
    ...(opts.rateLimitWrite ? { write: opts.rateLimitWrite } : {}),
    ...(opts.rateLimitRead ? { read: opts.rateLimitRead } : {}),
    ...(opts.rateLimitHeartbeat ? { heartbeat: opts.rateLimitHeartbeat } : {}),
  },
  address: {
    ...(opts.rateLimitAddressWrite ? { write: opts.rateLimitAddressWrite } : {}),
    ...(opts.rateLimitAddressRead ? { read: opts.rateLimitAddressRead } : {}),
    ...(opts.rateLimitAddressHeartbeat ? { heartbeat: opts.rateLimitAddressHeartbeat } : {}),
  },
};

const logger = createLogger({ node: opts.id }, opts.logLevel);

async function main(): Promise<void> {
  let stopping = false;
  const node = await RegistryNode.start({
    id: opts.id,
    listen: opts.listen,
    peers: opts.peers ?? {},
    join: opts.join,
    ...(opts.restore ? { restore: opts.restore } : {}),
    dataDir: opts.dataDir,
    tickMs: opts.tickMs,
    electionTicks: opts.electionTicks,
    heartbeatTicks: opts.heartbeatTicks,
    snapshotThresholdEntries: opts.snapshotThreshold,
    snapshotTailEntries: opts.snapshotTail,
    snapshotChunkBytes: opts.snapshotChunkBytes,
    timeline: opts.timeline,
    ...(opts.httpListen ? { httpListen: opts.httpListen } : {}),
    ...(opts.corsOrigin ? { corsOrigins: opts.corsOrigin } : {}),
    auth: opts.auth,
    ...(opts.rateLimits !== undefined ? { rateLimits: opts.rateLimits } : {}),
    rateLimitSettings,
    requireSignedCards: opts.requireSignedCards,
    ...(opts.tlsCert && opts.tlsKey && opts.tlsCa ? { tls: { cert: opts.tlsCert, key: opts.tlsKey, ca: opts.tlsCa } } : {}),
    logger,
    onFatal: (err) => {
      logger.fatal({ err }, 'stopping on a fatal error');
      logger.flush();
      setTimeout(() => process.exit(1), 50);
    },
  });
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    node.stop().then(
      () => {
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof TlsConfigError) {
    // A bad file is a bad argument: say which, plainly, where the operator looks.
    logger.fatal({ err: err.message }, 'node failed to start: bad TLS files');
    logger.flush();
    process.stderr.write(`error: ${err.message}\n`);
    setTimeout(() => process.exit(2), 50);
    return;
  }
  logger.fatal({ err }, 'node failed to start');
  logger.flush();
  setTimeout(() => process.exit(1), 50);
});
