#!/usr/bin/env node
/**
 * Local cluster launcher: starts 3 or 5 `registry-node` processes on loopback, prefixes their
 * logs with the node id, waits for a leader, optionally imports a data set, and runs until
 * Ctrl-C (SIGINT/SIGTERM), which stops every node cleanly. A second run reuses the data dirs.
 *
 *   npm run cluster -- --nodes 3 --base-port 7001 --http-base-port 8001 --data-dir ./data [--import FILE]
 *
 * n1 serves gRPC on the base port and HTTP/JSON (API, /health, /metrics, the dashboard) on the
 * HTTP base port; n2 on the next ports, and so on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { RegistryClient } from '../src/client/index.js';
import { REGISTRY_NODE_V8_FLAGS } from '../src/cli/node-flags.js';

/** How long to wait for the first leader before giving up, in ms. */
export const LEADER_WAIT_MS = 30_000;
/** Poll interval while waiting for a leader, in ms. */
const LEADER_POLL_MS = 200;

const here = dirname(fileURLToPath(import.meta.url));
const nodeBin = join(here, '..', 'src', 'cli', 'registry-node.js');
const registryBin = join(here, '..', 'src', 'cli', 'registry.js');

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Renders one pino JSON line as `LEVEL msg key=value ...`; other lines pass through. */
function formatLogLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { level, msg, time: _t, pid: _p, hostname: _h, node: _n, ...rest } = rec;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ');
  return `${LEVELS[level as number] ?? String(level)} ${String(msg ?? '')}${fields ? ` ${fields}` : ''}`;
}

function pipeWithPrefix(child: ChildProcess, prefix: string): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => process.stdout.write(`${prefix} ${formatLogLine(line)}\n`));
  }
}

const program = new Command()
  .name('cluster')
  .description('Start a local registry cluster on loopback')
  .option('--nodes <n>', 'cluster size: 3 or 5', (v) => {
    if (v !== '3' && v !== '5') throw new InvalidArgumentError('--nodes must be 3 or 5');
    return Number(v);
  }, 3)
  .option('--base-port <port>', 'port of n1; n2 gets base+1, ...', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65530) throw new InvalidArgumentError('--base-port must be a port number');
    return n;
  }, 7001)
  .option('--http-base-port <port>', 'HTTP port of n1 (API, dashboard); n2 gets base+1, ...', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65530) throw new InvalidArgumentError('--http-base-port must be a port number');
    return n;
  }, 8001)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--data-dir <dir>', 'parent directory of the nodes\' data dirs', './data')
  .option('--import <file>', 'import this MCP registry seed file once a leader is elected')
  .option('--log-level <level>', 'node log level', 'info');
program.parse();
const opts = program.opts<{ nodes: number; basePort: number; httpBasePort: number; host: string; dataDir: string; import?: string; logLevel: string }>();

const ids = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
const addresses = ids.map((_, i) => `${opts.host}:${opts.basePort + i}`);
const httpAddresses = ids.map((_, i) => `${opts.host}:${opts.httpBasePort + i}`);
const peers = ids.map((id, i) => `${id}=${addresses[i]}`).join(',');
const children = new Map<string, ChildProcess>();
let stopping = false;

for (const [i, id] of ids.entries()) {
  const child = spawn(
    process.execPath,
    [...REGISTRY_NODE_V8_FLAGS, nodeBin, '--id', id, '--listen', addresses[i] as string, '--peers', peers, '--data-dir', resolve(opts.dataDir, id), '--http-listen', httpAddresses[i] as string, '--log-level', opts.logLevel],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.set(id, child);
  pipeWithPrefix(child, `[${id}]`);
  child.on('exit', (code, signal) => {
    children.delete(id);
    process.stdout.write(`[${id}] exited (${signal ?? `code ${code}`})\n`);
    if (stopping && children.size === 0) process.exit(0);
  });
}

function stopAll(): void {
  if (stopping) return;
  stopping = true;
  process.stdout.write('stopping the cluster...\n');
  if (children.size === 0) process.exit(0);
  for (const c of children.values()) c.kill('SIGTERM');
}
process.on('SIGINT', stopAll);
process.on('SIGTERM', stopAll);

async function waitForLeader(): Promise<string> {
  const client = new RegistryClient({ endpoints: addresses, deadlineMs: 1_000 });
  try {
    const until = Date.now() + LEADER_WAIT_MS;
    while (Date.now() < until && !stopping) {
      const all = await client.statusAll();
      for (const s of all) if (s.status?.role === 'leader') return s.status.nodeId;
      await new Promise((r) => setTimeout(r, LEADER_POLL_MS));
    }
    throw new Error(`no leader elected within ${LEADER_WAIT_MS} ms`);
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const leader = await waitForLeader();
  process.stdout.write(`cluster up: ${opts.nodes} nodes, leader ${leader}, endpoints ${addresses.join(',')}\n`);
  if (opts.import) {
    const imp = spawn(process.execPath, [registryBin, '--endpoints', addresses.join(','), 'import', opts.import], { stdio: ['ignore', 'inherit', 'inherit'] });
    const code = await new Promise<number | null>((r) => imp.on('exit', r));
    process.stdout.write(code === 0 ? 'import done\n' : `import failed (exit ${code})\n`);
  }
  process.stdout.write(
    `dashboard: http://${httpAddresses[0]}/  (every node serves it: ${httpAddresses.map((a) => `http://${a}/`).join(' ')})\n` +
      `try: curl 'http://${httpAddresses[0]}/v1/agents?capability=npm&pageSize=5'\n` +
      `     npx registry --endpoints ${addresses.join(',')} find --capability npm\nCtrl-C stops the cluster.\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`cluster: ${(err as Error).message}\n`);
  stopAll();
});
