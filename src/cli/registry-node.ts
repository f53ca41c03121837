#!/usr/bin/env node
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
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}>();

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
