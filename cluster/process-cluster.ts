/**
 * Real `registry-node` processes on loopback, for integration tests and benchmarks: ephemeral
 * ports, a data dir per node under a temp dir, logs kept in memory for failure reports,
 * teardown by PID. Runs the built binaries in dist/ (`npm test` and `npm run bench` build first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RegistryClient, type ClientTlsOptions, type ClusterStatus } from '../src/client/index.js';
import { initCerts, type CertFiles } from '../src/auth/certs.js';
import { ADMIN_TOKEN_FILE } from '../src/server/node.js';
import { REGISTRY_NODE_V8_FLAGS } from '../src/cli/node-flags.js';

/** The package root, from cluster/ in the sources or dist/cluster/ when built. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package root not found');
    dir = up;
  }
  return dir;
}
const root = packageRoot();
/** The built node binary. */
/**
 * Extra Node.js flags for every node process, from `REGISTRY_NODE_FLAGS` (space-separated), e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the nodes of a bench run (Node refuses
 * `--cpu-prof` in `NODE_OPTIONS`).
 */
export const NODE_FLAGS: readonly string[] = (process.env.REGISTRY_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');
export const NODE_BIN = join(root, 'dist', 'src', 'cli', 'registry-node.js');
/** The built CLI. */
export const REGISTRY_BIN = join(root, 'dist', 'src', 'cli', 'registry.js');
/** The real data set. */
export const SEED_FILE = join(root, 'data', 'mcp-registry-seed-2025-05-16.json');

/**
 * Runs a built binary (`node bin args...`) to completion, killing it after `timeoutMs`; resolves
 * with its exit code and its stdout and stderr together.
 */
export function runBinary(bin: string, args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Asks the OS for `n` free loopback ports. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Options of {@link ProcessCluster.start}. */
export interface ProcessClusterOptions {
  /**
   * Start the nodes with TLS: a CA and a certificate per node (and `client.crt`) are made in
   * `<dir>/certs` and each node gets `--tls-cert`, `--tls-key`, `--tls-ca`; the cluster's own
   * clients use `client.crt`, and `httpUrl` is `https://`. Nodes added with `addSlot` later have
   * no certificate. Default false (plaintext).
   */
  readonly tls?: boolean;
}

/** A local cluster of node processes. */
export class ProcessCluster {
  readonly ids: string[];
  readonly addresses = new Map<string, string>();
  /** Each node's HTTP/JSON address (`--http-listen`), `127.0.0.1:port`. */
  readonly httpAddresses = new Map<string, string>();
  readonly procs = new Map<string, ChildProcess>();
  readonly logs = new Map<string, string[]>();
  readonly dir: string;
  /** The certificates of a TLS cluster (`start(n, args, { tls: true })`); undefined when plaintext. */
  tlsFiles: CertFiles | undefined;
  private readonly extraArgs: string[];

  private constructor(ids: string[], ports: number[], extraArgs: string[]) {
    if (!existsSync(NODE_BIN)) throw new Error(`${NODE_BIN} is missing: run npm run build first`);
    this.ids = ids;
    ids.forEach((id, i) => {
      this.addresses.set(id, `127.0.0.1:${ports[i]}`);
      this.httpAddresses.set(id, `127.0.0.1:${ports[ids.length + i]}`);
    });
    this.dir = mkdtempSync(join(tmpdir(), 'registry-it-'));
    this.extraArgs = extraArgs;
  }

  /** Starts `n` nodes on fresh ports; with `options.tls`, with certificates made for them. */
  static async start(n: number, extraArgs: string[] = [], options: ProcessClusterOptions = {}): Promise<ProcessCluster> {
    const ports = await freePorts(2 * n);
    const c = new ProcessCluster(Array.from({ length: n }, (_, i) => `n${i + 1}`), ports, extraArgs);
    if (options.tls) c.tlsFiles = await initCerts(join(c.dir, 'certs'), { nodes: c.ids });
    for (const id of c.ids) c.startNode(id);
    return c;
  }

  get peers(): string {
    return [...this.addresses].map(([id, a]) => `${id}=${a}`).join(',');
  }

  /** The base URL of node `id`'s HTTP/JSON API, e.g. `http://127.0.0.1:40123` (`https://` with TLS). */
  httpUrl(id: string): string {
    const a = this.httpAddresses.get(id);
    if (!a) throw new Error(`no node ${id}`);
    return `${this.tlsFiles ? 'https' : 'http'}://${a}`;
  }

  /** The client TLS settings of a TLS cluster (its CA and `client.crt`); undefined when plaintext. */
  clientTls(): ClientTlsOptions | undefined {
    const f = this.tlsFiles;
    return f ? { ca: readFileSync(f.caCert), cert: readFileSync(f.clientCert), key: readFileSync(f.clientKey) } : undefined;
  }

  /** The `--tls-*` flags of node `id` in a TLS cluster; none when plaintext or it has no certificate. */
  tlsArgs(id: string): string[] {
    const f = this.tlsFiles;
    const node = f?.nodes[id];
    return f && node ? ['--tls-cert', node.cert, '--tls-key', node.key, '--tls-ca', f.caCert] : [];
  }

  endpoints(ids: string[] = this.ids): string[] {
    return ids.map((id) => this.addresses.get(id) as string);
  }

  /** Reserves a port for a new node `id` (not started; it will join an existing cluster). */
  async addSlot(id: string): Promise<string> {
    const [port, httpPort] = await freePorts(2);
    const address = `127.0.0.1:${port}`;
    this.addresses.set(id, address);
    this.httpAddresses.set(id, `127.0.0.1:${httpPort}`);
    this.ids.push(id);
    return address;
  }

  /** Deletes node `id`'s data dir (the node must be stopped). */
  wipe(id: string): void {
    rmSync(join(this.dir, id), { recursive: true, force: true });
  }

  /**
   * Starts (or restarts) node `id` with its data dir. With `join`, the node starts empty with no
   * peer list (`--join`) and waits to be added; it learns where the others are from the leader.
   */
  startNode(id: string, join_ = false): ChildProcess {
    const p = spawn(
      process.execPath,
      [...REGISTRY_NODE_V8_FLAGS, ...NODE_FLAGS, NODE_BIN, '--id', id, '--listen', this.addresses.get(id) as string, ...(join_ ? ['--join'] : ['--peers', this.peers]), '--data-dir', join(this.dir, id), '--http-listen', this.httpAddresses.get(id) as string, ...this.tlsArgs(id), ...this.extraArgs],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } },
    );
    const buf = this.logs.get(id) ?? [];
    this.logs.set(id, buf);
    const keep = (d: Buffer) => {
      buf.push(d.toString());
      if (buf.length > 2000) buf.splice(0, buf.length - 2000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    this.procs.set(id, p);
    return p;
  }

  /** Sends `signal` to node `id` and waits for it to exit. */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.procs.get(id);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
    this.procs.delete(id);
  }

  /** The status of every reachable node. */
  async statuses(ids: string[] = this.ids): Promise<ClusterStatus[]> {
    const tls = this.clientTls();
    const client = new RegistryClient({ endpoints: this.endpoints(ids), deadlineMs: 1_000, ...(tls ? { tls } : {}) });
    try {
      return (await client.statusAll()).flatMap((s) => (s.status ? [s.status] : []));
    } finally {
      client.close();
    }
  }

  /**
   * Waits until node `id` answers a status request (it has started and opened its store), for
   * at most `timeoutMs` ms; returns that status. Throws when it does not answer in time.
   */
  async waitServing(id: string, timeoutMs = 30_000): Promise<ClusterStatus> {
    return waitFor(`${id} to serve`, timeoutMs, async () => (await this.statuses([id]))[0]);
  }

  /** Waits until one of `ids` is leader and every one of them agrees on it; returns its id. */
  async waitForLeader(ids: string[] = this.ids, timeoutMs = 20_000): Promise<string> {
    return waitFor('a leader', timeoutMs, async () => {
      const st = await this.statuses(ids);
      const leader = st.find((s) => s.role === 'leader');
      if (!leader || st.length < ids.length) return undefined;
      return st.every((s) => s.leaderId === leader.nodeId && s.term === leader.term) ? leader.nodeId : undefined;
    });
  }

  /** A client on the given nodes (default: all), with a bearer token when given (and the cluster's client certificate with TLS). */
  client(ids: string[] = this.ids, deadlineMs = 15_000, token?: string): RegistryClient {
    const tls = this.clientTls();
    return new RegistryClient({ endpoints: this.endpoints(ids), deadlineMs, ...(token !== undefined ? { token } : {}), ...(tls ? { tls } : {}) });
  }

  /** Node `id`'s data dir. */
  dataDir(id: string): string {
    return join(this.dir, id);
  }

  /**
   * The bootstrap admin token node `id` writes once the cluster (started with `--auth on`) has
   * its signing key; waits for the file, up to `timeoutMs`.
   */
  async adminToken(id: string, timeoutMs = 20_000): Promise<string> {
    const file = join(this.dataDir(id), ADMIN_TOKEN_FILE);
    return waitFor(`${file}`, timeoutMs, async () => (existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined));
  }

  /** Kills every node by PID and removes the data. */
  async destroy(): Promise<void> {
    // With NODE_FLAGS (a profile to write at exit) the nodes get to exit cleanly.
    const signal: NodeJS.Signals = NODE_FLAGS.length > 0 ? 'SIGTERM' : 'SIGKILL';
    await Promise.all([...this.procs.keys()].map((id) => this.kill(id, signal)));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The last log lines of every node, for failure messages. */
  dumpLogs(lines = 30): string {
    return [...this.logs].map(([id, b]) => `--- ${id}\n${b.join('').split('\n').slice(-lines).join('\n')}`).join('\n');
  }
}
