/**
 * Scale benchmark on a real 3-node cluster on loopback (never part of `npm test`): loads up to
 * `--max` agents shaped like the real MCP registry data (default 1,000,000) through the leader
 * and, at every checkpoint (default 10k, 100k, 1M stored agents), prints as markdown tables:
 *
 * 1. `Find` latency against a follower, serializable and linearizable, for a rare capability
 *    (~0.1% of agents), a common one (~30%), a label filter and a combined filter (capability +
 *    kind + label): the first page (100 results) and a full scan of every match by paging (a full
 *    scan is skipped when the index the server walks holds more than `--full-scan-max` entries,
 *    and the output says so); the number of matches of each query;
 * 2. the RSS of every node process (VmRSS and VmHWM from /proc/<pid>/status);
 * 3. the size of every node's data dir (LevelDB and snapshots);
 * 4. the last snapshot point each node took (its `snapshot taken` log line: a snapshot is the
 *    state machine in the store, so taking one writes only a log compaction), and the snapshots it
 *    streamed to followers (size and time, from `snapshot sent`);
 * 5. the restart time of a follower (SIGTERM, start, until it has applied the leader's commit).
 *
 * After the last checkpoint: the catch-up time of a follower that missed `--missed` writes (and
 * whether it caught up by InstallSnapshot), then a heap snapshot of the leader (started with
 * `--heapsnapshot-signal=SIGUSR2`, stream-parsed here) with the top constructor/type names by
 * self size.
 *
 * The agents are `mcp-agents.ts`'s, shaped like the real MCP registry data.
 *
 *   npm run bench:scale -- [--checkpoints 10000,100000,1000000] [--max N] [--missed 100000]
 *                          [--concurrency 64] [--queries 200] [--timeout-min 90] [--help for more]
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { ProcessCluster, waitFor } from '../cluster/process-cluster.js';
import type { ClusterStatus, Consistency, RegistryClient } from '../src/client/index.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../src/registry/state-machine.js';
import type { FindQuery } from '../src/registry/types.js';
import {
  A2A_FRACTION,
  AgentFactory,
  type BenchQuery,
  CAPABILITY_NAMES,
  DESCRIPTION_MAX_BYTES,
  DESCRIPTION_MIN_BYTES,
  estimateCapabilityShares,
  loadSeedMaterial,
  MAX_CAPABILITIES_PER_AGENT,
  MAX_ENDPOINTS_PER_AGENT,
  MIN_CAPABILITIES,
  type QueryTally,
  rankNearest,
  REGIONS,
  SERVICE_FRACTION,
  TEAMS,
  VERSION_PATCHES,
  ZIPF_EXPONENT,
  zipfCdf,
} from './mcp-agents.js';

// ---------------------------------------------------------------------------------------------
// Defaults and limits.

/** Nodes in the cluster. */
const CLUSTER_SIZE = 3;
/** Default checkpoints, in stored agents. */
const DEFAULT_CHECKPOINTS = '10000,100000,1000000';
/** Default requests in flight while loading. */
const DEFAULT_CONCURRENCY = 64;
/** Default writes a stopped follower misses before its catch-up is timed. */
const DEFAULT_MISSED = 100_000;
/** Default first-page queries measured per filter and consistency. */
const DEFAULT_QUERIES = 200;
/** Queries per filter and consistency run before measuring, not recorded. */
const WARMUP_QUERIES = 10;
/** Default most full scans measured per filter and consistency. */
const DEFAULT_SCAN_QUERIES = 20;
/** Default time budget of the full scans of one filter and consistency, in seconds (at least one scan always runs). */
const DEFAULT_SCAN_BUDGET_S = 60;
/** Default page size of a full scan, in agents per page (the server's maximum). */
const DEFAULT_SCAN_PAGE_SIZE = MAX_PAGE_SIZE;
/** Default largest index (entries the server walks) whose full scan is still measured, in index entries. */
const DEFAULT_FULL_SCAN_MAX_ENTRIES = 100_000;
/** Page size of the first-page queries, in agents (the server's default page). */
const FIRST_PAGE_SIZE = DEFAULT_PAGE_SIZE;
/** Default whole-run time limit, in minutes. */
const DEFAULT_TIMEOUT_MIN = 90;
/** Default longest wait for the leader's heap snapshot file to be complete, in seconds. */
const DEFAULT_HEAP_TIMEOUT_S = 600;
/** Default seed of the PRNG that shapes the agents. */
const DEFAULT_SEED = 20250516;

/** Overall deadline of one client operation (retries included), in milliseconds. */
const CLIENT_DEADLINE_MS = 30_000;
/** Interval of the progress lines on stderr while loading, in milliseconds. */
const PROGRESS_INTERVAL_MS = 10_000;
/** Attempts per agent before the load gives up (the client retries within each attempt too). */
const MAX_REGISTER_ATTEMPTS = 5;
/** Pause after a failed register attempt before the next, in milliseconds. */
const RETRY_PAUSE_MS = 200;
/** Longest wait for the cluster to agree on a leader and apply everything, in milliseconds. */
const SETTLE_TIMEOUT_MS = 300_000;
/** Longest wait for a restarted follower to apply the leader's commit, in milliseconds. */
const RESTART_TIMEOUT_MS = 600_000;
/** Longest wait for a follower that missed writes to catch up, in milliseconds. */
const CATCH_UP_TIMEOUT_MS = 1_200_000;
/** Interval between status polls while waiting for a node, in milliseconds. */
const STATUS_POLL_MS = 50;
/** Interval between checks of the heap snapshot file, in milliseconds. */
const HEAP_POLL_MS = 500;

/** Share of agents the rare capability should match (0.1%). */
const RARE_TARGET_FRACTION = 0.001;
/** Share of agents the common capability should match (30%). */
const COMMON_TARGET_FRACTION = 0.3;
/** Team of the label query (one of {@link TEAMS}: ~2% of agents). */
const LABEL_QUERY_TEAM = 'team-07';
/** Kind of the combined query. */
const COMBINED_QUERY_KIND = 'a2a-agent';
/** Env of the combined query. */
const COMBINED_QUERY_ENV = 'prod';

/** registry-node's default `--snapshot-threshold`, in applied entries (shown when not overridden). */
const NODE_DEFAULT_SNAPSHOT_THRESHOLD = 10_000;
/** registry-node's default `--snapshot-tail`, in entries (shown when not overridden). */
const NODE_DEFAULT_SNAPSHOT_TAIL = 5_000;
/** registry-node's default `--tick-ms`, in milliseconds. */
const NODE_DEFAULT_TICK_MS = 100;
/** registry-node's default `--election-ticks`, in ticks. */
const NODE_DEFAULT_ELECTION_TICKS = 10;
/** registry-node's default `--heartbeat-ticks`, in ticks. */
const NODE_DEFAULT_HEARTBEAT_TICKS = 1;

/** Largest latency the histograms hold, in microseconds (10 minutes, for full scans). */
const HISTOGRAM_MAX_US = 600_000_000;
/** Significant decimal digits of the histograms. */
const HISTOGRAM_DIGITS = 3;
/** Microseconds per millisecond. */
const US_PER_MS = 1000;
/** Milliseconds per second. */
const MS_PER_S = 1000;
/** Seconds per minute. */
const S_PER_MIN = 60;
/** Bytes per KiB (the unit of the `kB` figures in /proc/<pid>/status). */
const BYTES_PER_KIB = 1024;
/** Bytes per MiB. */
const BYTES_PER_MIB = 1024 * 1024;
/** Bytes per GiB. */
const BYTES_PER_GIB = 1024 * 1024 * 1024;
/** Percent per unit. */
const PERCENT = 100;

/** Constructor/type names shown from the heap snapshot. */
const TOP_HEAP_TYPES = 15;
/** Read size while stream-parsing a heap snapshot, in bytes. */
const HEAP_READ_CHUNK_BYTES = 4 * 1024 * 1024;
/** Longest heap snapshot header before the `nodes` array, in bytes (it is a few hundred). */
const HEAP_MAX_HEADER_BYTES = 1024 * 1024;
/** Bytes read from the end of a heap snapshot to see whether it is complete. */
const HEAP_TAIL_BYTES = 16;
/** Node types per key slot when grouping heap nodes by (name, type): more than V8 has. */
const HEAP_TYPE_SLOTS = 64;
/** Exit code after SIGINT or SIGTERM (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

// ---------------------------------------------------------------------------------------------
// Options.

/** A positive integer, for commander. */
function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return n;
}

/** A non-negative integer, for commander. */
function parseNonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected an integer >= 0');
  return n;
}

/** A positive number (minutes, seconds), for commander. */
function parsePositive(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number > 0');
  return n;
}

/** A comma list of positive integers (stored agents), sorted ascending and de-duplicated. */
function parseCheckpoints(v: string): number[] {
  const list = v.split(',').map((s) => s.trim()).filter((s) => s !== '').map(parsePositiveInt);
  if (list.length === 0) throw new InvalidArgumentError('expected at least one checkpoint');
  return [...new Set(list)].sort((a, b) => a - b);
}

/** The parsed command line. */
interface Options {
  readonly checkpoints: number[];
  readonly max?: number;
  readonly missed: number;
  readonly concurrency: number;
  readonly queries: number;
  readonly scanQueries: number;
  readonly scanBudgetS: number;
  readonly scanPageSize: number;
  readonly fullScanMax: number;
  readonly snapshotThreshold?: number;
  readonly snapshotTail?: number;
  readonly seed: number;
  readonly timeoutMin: number;
  readonly heapSnapshot: boolean;
  readonly heapTimeoutS: number;
}

/** Parses the command line. */
function parseOptions(): Options {
  const program = new Command()
    .description('Loads up to --max MCP-shaped agents into a real 3-node cluster and measures find latency, memory, disk, snapshots, restart and catch-up at checkpoints.')
    .option('--checkpoints <list>', 'comma list of stored-agent counts to measure at', parseCheckpoints, parseCheckpoints(DEFAULT_CHECKPOINTS))
    .option('--max <n>', 'agents to load (default: the last checkpoint; checkpoints above it are dropped)', parsePositiveInt)
    .option('--missed <n>', 'writes a stopped follower misses after the last checkpoint (0: skip)', parseNonNegativeInt, DEFAULT_MISSED)
    .option('--concurrency <n>', 'register requests in flight while loading', parsePositiveInt, DEFAULT_CONCURRENCY)
    .option('--queries <n>', 'first-page queries measured per filter and consistency', parsePositiveInt, DEFAULT_QUERIES)
    .option('--scan-queries <n>', 'most full scans measured per filter and consistency', parsePositiveInt, DEFAULT_SCAN_QUERIES)
    .option('--scan-budget-s <s>', 'time budget of the full scans per filter and consistency, in seconds', parsePositive, DEFAULT_SCAN_BUDGET_S)
    .option('--scan-page-size <n>', `page size of the full scans (at most ${MAX_PAGE_SIZE})`, parsePositiveInt, DEFAULT_SCAN_PAGE_SIZE)
    .option('--full-scan-max <n>', 'skip the full scan of a filter whose index holds more entries than this', parsePositiveInt, DEFAULT_FULL_SCAN_MAX_ENTRIES)
    .option('--snapshot-threshold <entries>', `passed to the nodes (default: theirs, ${NODE_DEFAULT_SNAPSHOT_THRESHOLD})`, parsePositiveInt)
    .option('--snapshot-tail <entries>', `passed to the nodes (default: theirs, ${NODE_DEFAULT_SNAPSHOT_TAIL})`, parsePositiveInt)
    .option('--seed <n>', 'seed of the PRNG that shapes the agents', parseNonNegativeInt, DEFAULT_SEED)
    .option('--timeout-min <m>', 'abort the whole run after this many minutes', parsePositive, DEFAULT_TIMEOUT_MIN)
    .option('--no-heap-snapshot', 'skip the heap snapshot of the leader')
    .option('--heap-timeout-s <s>', 'longest wait for the heap snapshot file, in seconds', parsePositive, DEFAULT_HEAP_TIMEOUT_S);
  program.parse();
  const o = program.opts<Options>();
  if (o.scanPageSize > MAX_PAGE_SIZE) program.error(`--scan-page-size must be at most ${MAX_PAGE_SIZE}`);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Run-wide deadline and cleanup.

/** The run was stopped by `--timeout-min`. */
class BenchTimeout extends Error {
  override readonly name = 'BenchTimeout';
}

/** Epoch milliseconds after which the run aborts (`--timeout-min`). */
let deadlineAt = Number.POSITIVE_INFINITY;

/** Throws {@link BenchTimeout} once the run-wide deadline has passed. */
function checkTime(what: string): void {
  if (Date.now() > deadlineAt) throw new BenchTimeout(`--timeout-min reached during ${what}`);
}

/** `capMs`, or less when the run-wide deadline comes first (at least 1 ms), in milliseconds. */
function remainingMs(capMs: number): number {
  return Math.max(1, Math.min(capMs, deadlineAt - Date.now()));
}

/** Resolves after `ms` milliseconds. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** PIDs of every node process the bench started, for removing their heap snapshot files. */
const nodePids = new Set<number>();

/** Names of the heap snapshot files of process `pid` in `dir` (`Heap.<date>.<time>.<pid>.<tid>.<seq>.heapsnapshot`). */
function heapFiles(dir: string, pid: number): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot') && f.includes(`.${pid}.`));
}

/** Deletes every heap snapshot file a node process of this run left in the current directory. */
function removeHeapFiles(): void {
  for (const pid of nodePids) for (const f of heapFiles(process.cwd(), pid)) rmSync(join(process.cwd(), f), { force: true });
}

// ---------------------------------------------------------------------------------------------
// Node logs (pino JSON lines on stderr).

/** A `snapshot taken` / `installed` / `sent` log line of a node (`sizeBytes` and `ms` are NaN on `taken`). */
interface SnapshotLogLine {
  readonly index: number;
  readonly sizeBytes: number;
  readonly ms: number;
}

/**
 * Follows a node's log across restarts and keeps its snapshot lines (`snapshot taken`,
 * `snapshot installed`, `snapshot sent`): all of them, so nothing is lost to the cluster's
 * bounded log buffer.
 */
class NodeLogWatch {
  readonly taken: SnapshotLogLine[] = [];
  readonly installed: SnapshotLogLine[] = [];
  readonly sent: SnapshotLogLine[] = [];

  /** Starts reading the stdout and stderr of a newly started process of this node. */
  attach(p: ChildProcess): void {
    for (const stream of [p.stdout, p.stderr]) {
      let rest = '';
      stream?.on('data', (d: Buffer) => {
        const lines = (rest + d.toString()).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) this.line(line);
      });
    }
  }

  /** Records one log line if it is a snapshot line. */
  private line(line: string): void {
    if (!line.includes('"msg":"snapshot ')) return;
    let o: { msg?: unknown; index?: unknown; sizeBytes?: unknown; ms?: unknown };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      return;
    }
    const rec = { index: Number(o.index), sizeBytes: Number(o.sizeBytes), ms: Number(o.ms) };
    if (o.msg === 'snapshot taken') this.taken.push(rec);
    else if (o.msg === 'snapshot installed') this.installed.push(rec);
    else if (o.msg === 'snapshot sent') this.sent.push(rec);
  }
}

// ---------------------------------------------------------------------------------------------
// The cluster under test.

/** The cluster, the log watch of every node, and helpers to start, stop and wait for nodes. */
class Harness {
  readonly watches = new Map<string, NodeLogWatch>();

  constructor(readonly cluster: ProcessCluster) {
    for (const id of cluster.ids) {
      const w = new NodeLogWatch();
      this.watches.set(id, w);
      const p = cluster.procs.get(id);
      if (p) this.track(id, p);
    }
  }

  /** Attaches the log watch and remembers the PID of a node process. */
  private track(id: string, p: ChildProcess): void {
    (this.watches.get(id) as NodeLogWatch).attach(p);
    if (p.pid !== undefined) nodePids.add(p.pid);
  }

  /** Starts (restarts) node `id` and follows its log. */
  start(id: string): void {
    this.track(id, this.cluster.startNode(id));
  }

  /** The PID of node `id`'s running process. */
  pid(id: string): number {
    const pid = this.cluster.procs.get(id)?.pid;
    if (pid === undefined) throw new Error(`node ${id} is not running`);
    return pid;
  }

  /**
   * Waits until the running nodes `ids` agree on a leader and every one has applied the leader's
   * commit index; returns the leader, its commit and every status.
   */
  async settle(ids: string[], what: string): Promise<{ leader: string; commit: number; statuses: ClusterStatus[] }> {
    return waitFor(`${what}: a leader and every node applied its commit`, remainingMs(SETTLE_TIMEOUT_MS), async () => {
      const st = await this.cluster.statuses(ids);
      const leader = st.find((s) => s.role === 'leader');
      if (!leader || st.length < ids.length) return undefined;
      if (!st.every((s) => s.leaderId === leader.nodeId && s.term === leader.term && s.appliedIndex >= leader.commitIndex)) return undefined;
      return { leader: leader.nodeId, commit: leader.commitIndex, statuses: st };
    }, STATUS_POLL_MS);
  }

  /** Waits until node `id` reports an applied index of at least `index`; resolves with the time waited in milliseconds. */
  async caughtUp(id: string, index: number, timeoutMs: number): Promise<number> {
    const t0 = performance.now();
    await waitFor(`${id} to apply ${index}`, remainingMs(timeoutMs), async () => {
      const st = (await this.cluster.statuses([id]))[0];
      return st && st.appliedIndex >= index ? true : undefined;
    }, STATUS_POLL_MS);
    return performance.now() - t0;
  }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/** The outcome of one load segment. */
interface LoadResult {
  /** Agents registered in the segment. */
  readonly stored: number;
  /** Wall time of the segment, in milliseconds. */
  readonly ms: number;
  /** Register attempts that failed and were retried. */
  readonly retries: number;
}

/**
 * Registers agents through the leader with a fixed number of requests in flight, re-finding the
 * leader (and opening a client on it) when a register fails.
 */
class Loader {
  private client: RegistryClient;
  private readonly clients: RegistryClient[] = [];
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly h: Harness,
    private readonly factory: AgentFactory,
    private leader: string,
    private readonly concurrency: number,
  ) {
    this.client = h.cluster.client([leader], CLIENT_DEADLINE_MS);
    this.clients.push(this.client);
  }

  /** Re-finds the leader among `up` (one refresh at a time) and switches to a client on it if it changed. */
  private refresh(up: string[]): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const leader = await this.h.cluster.waitForLeader(up, remainingMs(SETTLE_TIMEOUT_MS));
        if (leader !== this.leader) {
          process.stderr.write(`[scale] leader changed from ${this.leader} to ${leader}\n`);
          this.leader = leader;
          this.client = this.h.cluster.client([leader], CLIENT_DEADLINE_MS);
          this.clients.push(this.client);
        }
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /**
   * Registers agents `from` .. `to - 1` with the running nodes `up`; prints progress on stderr
   * every {@link PROGRESS_INTERVAL_MS}.
   * @throws BenchTimeout when the run-wide deadline passes first; the last register error after
   *   {@link MAX_REGISTER_ATTEMPTS} attempts.
   */
  async load(from: number, to: number, up: string[], what: string): Promise<LoadResult> {
    let next = from;
    let stored = 0;
    let retries = 0;
    let failure: unknown;
    let timedOut = false;
    const t0 = performance.now();
    let lastStored = 0;
    let lastAt = t0;
    const progress = setInterval(() => {
      const now = performance.now();
      const rate = ((stored - lastStored) / (now - lastAt)) * MS_PER_S;
      const avg = (stored / (now - t0)) * MS_PER_S;
      process.stderr.write(
        `[scale] ${what}: ${fmtInt(from + stored)} / ${fmtInt(to)} agents stored, ${fmtInt(rate)} agents/s last ${PROGRESS_INTERVAL_MS / MS_PER_S} s, ${fmtInt(avg)} agents/s average, ${((now - t0) / MS_PER_S).toFixed(0)} s, ${retries} retries\n`,
      );
      lastStored = stored;
      lastAt = now;
    }, PROGRESS_INTERVAL_MS);
    /** One request in flight: takes the next index, registers it (retrying), until done, failed or out of time. */
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < to) {
        if (Date.now() > deadlineAt) {
          timedOut = true;
          return;
        }
        const spec = this.factory.make(next++);
        for (let attempt = 1; ; attempt++) {
          try {
            await this.client.register(spec);
            stored++;
            break;
          } catch (e) {
            if (failure !== undefined) return;
            if (attempt >= MAX_REGISTER_ATTEMPTS || Date.now() > deadlineAt) {
              failure ??= e;
              return;
            }
            retries++;
            await sleep(RETRY_PAUSE_MS);
            await this.refresh(up).catch(() => undefined);
          }
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: this.concurrency }, worker));
    } finally {
      clearInterval(progress);
    }
    if (failure !== undefined) throw failure;
    if (timedOut) throw new BenchTimeout(`--timeout-min reached during ${what} after ${fmtInt(from + stored)} agents`);
    return { stored, ms: performance.now() - t0, retries };
  }

  /** The current leader as the loader knows it. */
  get currentLeader(): string {
    return this.leader;
  }

  /** Closes every client the loader opened. */
  close(): void {
    for (const c of this.clients) c.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

/** A histogram for latencies in microseconds. */
function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HISTOGRAM_MAX_US, numberOfSignificantValueDigits: HISTOGRAM_DIGITS });
}

/** Records a duration given in milliseconds into a microsecond histogram. */
function record(h: hdr.Histogram, ms: number): void {
  h.recordValue(Math.max(1, Math.round(ms * US_PER_MS)));
}

/** A percentile of a microsecond histogram, in milliseconds. */
function pctMs(h: hdr.Histogram, p: number): number {
  return h.getValueAtPercentile(p) / US_PER_MS;
}

/** First-page latencies of one query and consistency, and the size of that page. */
interface FirstPageResult {
  readonly h: hdr.Histogram;
  readonly pageAgents: number;
}

/** Times `n` first-page finds (page size {@link FIRST_PAGE_SIZE}) after {@link WARMUP_QUERIES} unrecorded ones. */
async function measureFirstPage(client: RegistryClient, q: FindQuery, consistency: Consistency, n: number): Promise<FirstPageResult> {
  const h = histogram();
  let pageAgents = 0;
  for (let i = 0; i < WARMUP_QUERIES + n; i++) {
    checkTime('the first-page finds');
    const t0 = performance.now();
    const page = await client.find({ ...q, pageSize: FIRST_PAGE_SIZE }, { consistency });
    if (i >= WARMUP_QUERIES) record(h, performance.now() - t0);
    pageAgents = page.agents.length;
  }
  return { h, pageAgents };
}

/** Full-scan times of one query and consistency, and what a scan returned. */
interface FullScanResult {
  readonly h: hdr.Histogram;
  readonly matches: number;
  readonly pages: number;
}

/**
 * Times full scans (every page of `pageSize` until the last) of `q`: up to `maxScans`, stopping
 * once `budgetMs` is spent (at least one scan runs).
 */
async function measureFullScan(client: RegistryClient, q: FindQuery, consistency: Consistency, pageSize: number, maxScans: number, budgetMs: number): Promise<FullScanResult> {
  const h = histogram();
  let matches = 0;
  let pages = 0;
  const started = performance.now();
  for (let scan = 0; scan < maxScans && (scan === 0 || performance.now() - started < budgetMs); scan++) {
    matches = 0;
    pages = 0;
    let pageToken = '';
    const t0 = performance.now();
    for (;;) {
      checkTime('the full scans');
      const page = await client.find({ ...q, pageSize, pageToken }, { consistency });
      matches += page.agents.length;
      pages++;
      if (page.nextPageToken === '') break;
      pageToken = page.nextPageToken;
    }
    record(h, performance.now() - t0);
  }
  return { h, matches, pages };
}

/** Memory figures of a process from /proc/<pid>/status, in bytes. */
interface ProcMemory {
  /** Resident set size (VmRSS). */
  readonly rss: number;
  /** Peak resident set size (VmHWM). */
  readonly hwm: number;
  /** Anonymous resident memory (RssAnon: heap, native allocations). */
  readonly rssAnon: number;
  /** File-backed resident memory (RssFile: code, mapped files). */
  readonly rssFile: number;
  /** Size of the data segments (VmData). */
  readonly data: number;
}

/** Reads the memory figures of process `pid` from /proc/<pid>/status. */
function procMemory(pid: number): ProcMemory {
  const kib = new Map<string, number>();
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+)\s+kB$/.exec(line);
    if (m) kib.set(m[1] as string, Number(m[2]));
  }
  const b = (k: string) => (kib.get(k) ?? 0) * BYTES_PER_KIB;
  return { rss: b('VmRSS'), hwm: b('VmHWM'), rssAnon: b('RssAnon'), rssFile: b('RssFile'), data: b('VmData') };
}

/** Total size of the files under `dir`, in bytes; files that vanish meanwhile (compaction) count 0. */
function dirBytes(dir: string): number {
  let total = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const p = join(dir, name);
    try {
      const st = statSync(p);
      total += st.isDirectory() ? dirBytes(p) : st.size;
    } catch {
      // Removed between the listing and the stat.
    }
  }
  return total;
}

/** What one node holds and uses at a checkpoint. */
interface NodeFigures {
  readonly id: string;
  readonly role: string;
  readonly applied: number;
  readonly mem: ProcMemory;
  /** Everything under the node's data dir, in bytes. */
  readonly dataBytes: number;
  /** The `snapshots` folder alone, in bytes. */
  readonly snapshotDirBytes: number;
  /** `.snap` files in the snapshots folder. */
  readonly snapFiles: number;
  /** The last `snapshot taken` line, if any. */
  readonly lastSnapshot: SnapshotLogLine | undefined;
  /** Snapshots this node took since the start. */
  readonly snapshotsTaken: number;
  /** The last `snapshot sent` line, if any. */
  readonly lastSent: SnapshotLogLine | undefined;
}

/** Gathers {@link NodeFigures} of every node. */
function nodeFigures(h: Harness, statuses: readonly ClusterStatus[]): NodeFigures[] {
  return h.cluster.ids.map((id) => {
    const dir = join(h.cluster.dir, id);
    const snapDir = join(dir, 'snapshots');
    let snapFiles = 0;
    try {
      snapFiles = readdirSync(snapDir).filter((f) => f.endsWith('.snap')).length;
    } catch {
      // No snapshot yet.
    }
    const st = statuses.find((s) => s.nodeId === id);
    const w = h.watches.get(id) as NodeLogWatch;
    return {
      id,
      role: st?.role ?? '?',
      applied: st?.appliedIndex ?? 0,
      mem: procMemory(h.pid(id)),
      dataBytes: dirBytes(dir),
      snapshotDirBytes: dirBytes(snapDir),
      snapFiles,
      lastSnapshot: w.taken[w.taken.length - 1],
      snapshotsTaken: w.taken.length,
      lastSent: w.sent[w.sent.length - 1],
    };
  });
}

/** The outcome of a SIGTERM and restart of a follower. */
interface RestartResult {
  readonly id: string;
  /** From SIGTERM to exit, in milliseconds. */
  readonly stopMs: number;
  /** From start to applied >= the leader's commit, in milliseconds. */
  readonly catchUpMs: number;
  /** The leader's commit index it had to reach. */
  readonly target: number;
}

/** SIGTERMs follower `id`, starts it again and times it until it has applied the leader's commit. */
async function restartFollower(h: Harness, id: string, commit: number): Promise<RestartResult> {
  const t0 = performance.now();
  await h.cluster.kill(id, 'SIGTERM');
  const stopMs = performance.now() - t0;
  const t1 = performance.now();
  h.start(id);
  await h.caughtUp(id, commit, RESTART_TIMEOUT_MS);
  return { id, stopMs, catchUpMs: performance.now() - t1, target: commit };
}

// ---------------------------------------------------------------------------------------------
// Heap snapshot of the leader.

/** A written heap snapshot file. */
interface HeapSnapshotFile {
  readonly path: string;
  readonly bytes: number;
  /** From the signal until the file was complete and the process answered again, in milliseconds (± {@link HEAP_POLL_MS}). */
  readonly ms: number;
}

/** Whether the file of `bytes` bytes at `path` ends with `]}` (a complete heap snapshot, white space aside). */
function endsLikeHeapSnapshot(path: string, bytes: number): boolean {
  const n = Math.min(HEAP_TAIL_BYTES, bytes);
  const buf = Buffer.alloc(n);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, n, bytes - n);
  } finally {
    closeSync(fd);
  }
  return buf.toString('latin1').trimEnd().endsWith(']}');
}

/**
 * Sends SIGUSR2 to `pid` (started with `--heapsnapshot-signal=SIGUSR2`) and waits until a new
 * `*.heapsnapshot` file of that process in the current directory stops growing, ends like a
 * complete snapshot, and `responsive` says the process answers again.
 */
async function takeHeapSnapshot(pid: number, timeoutMs: number, responsive: () => Promise<boolean>): Promise<HeapSnapshotFile> {
  const dir = process.cwd();
  const before = new Set(heapFiles(dir, pid));
  const t0 = performance.now();
  process.kill(pid, 'SIGUSR2');
  let lastSize = -1;
  return waitFor('the heap snapshot file', remainingMs(timeoutMs), async () => {
    const name = heapFiles(dir, pid).find((f) => !before.has(f));
    if (name === undefined) return undefined;
    const path = join(dir, name);
    const size = statSync(path).size;
    const stable = size === lastSize;
    lastSize = size;
    if (!stable || size === 0 || !endsLikeHeapSnapshot(path, size)) return undefined;
    if (!(await responsive())) return undefined;
    return { path, bytes: size, ms: performance.now() - t0 };
  }, HEAP_POLL_MS);
}

/** One row of the heap summary: a constructor or type name, its node count and total self size. */
interface HeapGroup {
  readonly name: string;
  readonly count: number;
  readonly selfBytes: number;
}

/** What {@link summarizeHeapSnapshot} found. */
interface HeapSummary {
  readonly nodes: number;
  readonly totalSelfBytes: number;
  /** Groups by self size, largest first, at most `top` of them. */
  readonly top: HeapGroup[];
  /** Distinct groups in the snapshot. */
  readonly groups: number;
  /** Time to parse the file, in milliseconds. */
  readonly parseMs: number;
}

/** The header of a heap snapshot file (before the `nodes` array). */
interface HeapSnapshotHeader {
  readonly snapshot: { readonly meta: { readonly node_fields: string[]; readonly node_types: unknown[] }; readonly node_count: number };
}

/** ASCII codes the heap snapshot parser looks for. */
const CH = { zero: 48, nine: 57, quote: 34, backslash: 92, closeBracket: 93 } as const;

/**
 * Stream-parses a V8 heap snapshot (`{"snapshot":{"meta":...},"nodes":[...],"edges":[...],...,
 * "strings":[...]}`) in constant memory apart from the groups: sums the self size and count of
 * the nodes per constructor name (types `object`, `native`, `synthetic`) or per type (the others:
 * `(string)`, `(closure)`, `(compiled code)`, `(system)` for `hidden`, ...), skips the edges
 * with a native search for `"strings":[`, then reads only the strings that name a group.
 */
async function summarizeHeapSnapshot(path: string, top: number): Promise<HeapSummary> {
  const t0 = performance.now();
  const NODES_MARK = Buffer.from('"nodes":[');
  const STRINGS_MARK = Buffer.from('"strings":[');
  type Phase = 'header' | 'nodes' | 'seek' | 'strings' | 'done';
  let phase: Phase = 'header';
  let header: Buffer = Buffer.alloc(0);
  let carry: Buffer = Buffer.alloc(0);
  let fieldCount = 0;
  let typeField = -1;
  let nameField = -1;
  let sizeField = -1;
  let typeNames: string[] = [];
  let named = new Set<number>();
  let declaredNodes = 0;
  // Node parsing state.
  let field = 0;
  let cur = 0;
  let inNumber = false;
  let type = 0;
  let name = 0;
  let size = 0;
  let nodes = 0;
  let totalSelfBytes = 0;
  const groups = new Map<number, { count: number; bytes: number }>();
  // String parsing state.
  const names = new Map<number, string | undefined>();
  let stringIndex = 0;
  let inString = false;
  let escaped = false;
  let collecting = false;
  let parts: Buffer[] = [];

  /** Ends the number being read in the nodes array: stores its field; after a node's last field, adds the node to its group. */
  const endNumber = (): void => {
    if (field === typeField) type = cur;
    else if (field === nameField) name = cur;
    else if (field === sizeField) size = cur;
    cur = 0;
    inNumber = false;
    if (++field < fieldCount) return;
    field = 0;
    nodes++;
    totalSelfBytes += size;
    const key = named.has(type) ? name * HEAP_TYPE_SLOTS + type : -(type + 1);
    const g = groups.get(key);
    if (g) {
      g.count++;
      g.bytes += size;
    } else groups.set(key, { count: 1, bytes: size });
  };

  for await (const chunk of createReadStream(path, { highWaterMark: HEAP_READ_CHUNK_BYTES })) {
    let buf = chunk as Buffer;
    let pos = 0;
    while (pos < buf.length && phase !== 'done') {
      if (phase === 'header') {
        header = Buffer.concat([header, buf.subarray(pos)]);
        pos = buf.length;
        const at = header.indexOf(NODES_MARK);
        if (at < 0) {
          if (header.length > HEAP_MAX_HEADER_BYTES) throw new Error(`${path}: no "nodes" array in the first ${HEAP_MAX_HEADER_BYTES} bytes`);
          break;
        }
        const text = header.subarray(0, at).toString('utf8').trimEnd().replace(/,$/, '');
        const h = JSON.parse(`${text}}`) as HeapSnapshotHeader;
        const fields = h.snapshot.meta.node_fields;
        fieldCount = fields.length;
        typeField = fields.indexOf('type');
        nameField = fields.indexOf('name');
        sizeField = fields.indexOf('self_size');
        const types = h.snapshot.meta.node_types[0];
        if (typeField < 0 || nameField < 0 || sizeField < 0 || !Array.isArray(types)) throw new Error(`${path}: unexpected node_fields ${JSON.stringify(fields)}`);
        typeNames = types.map(String);
        if (typeNames.length > HEAP_TYPE_SLOTS) throw new Error(`${path}: ${typeNames.length} node types, more than ${HEAP_TYPE_SLOTS}`);
        named = new Set(['object', 'native', 'synthetic'].map((t) => typeNames.indexOf(t)).filter((i) => i >= 0));
        declaredNodes = h.snapshot.node_count;
        buf = header.subarray(at + NODES_MARK.length);
        header = Buffer.alloc(0);
        pos = 0;
        phase = 'nodes';
      } else if (phase === 'nodes') {
        for (; pos < buf.length; pos++) {
          const c = buf[pos] as number;
          if (c >= CH.zero && c <= CH.nine) {
            cur = cur * 10 + (c - CH.zero);
            inNumber = true;
            continue;
          }
          if (inNumber) endNumber();
          if (c === CH.closeBracket) {
            pos++;
            phase = 'seek';
            break;
          }
        }
      } else if (phase === 'seek') {
        const hay = carry.length > 0 ? Buffer.concat([carry, buf.subarray(pos)]) : buf.subarray(pos);
        const at = hay.indexOf(STRINGS_MARK);
        if (at < 0) {
          carry = Buffer.from(hay.subarray(Math.max(0, hay.length - (STRINGS_MARK.length - 1))));
          pos = buf.length;
          break;
        }
        buf = hay.subarray(at + STRINGS_MARK.length);
        carry = Buffer.alloc(0);
        pos = 0;
        phase = 'strings';
        for (const key of groups.keys()) if (key >= 0) names.set(Math.floor(key / HEAP_TYPE_SLOTS), undefined);
      } else {
        let start = pos;
        for (; pos < buf.length; pos++) {
          const c = buf[pos] as number;
          if (inString) {
            if (escaped) escaped = false;
            else if (c === CH.backslash) escaped = true;
            else if (c === CH.quote) {
              if (collecting) {
                parts.push(buf.subarray(start, pos));
                names.set(stringIndex, JSON.parse(`"${Buffer.concat(parts).toString('utf8')}"`) as string);
                parts = [];
                collecting = false;
              }
              inString = false;
              stringIndex++;
            }
          } else if (c === CH.quote) {
            inString = true;
            collecting = names.has(stringIndex);
            start = pos + 1;
          } else if (c === CH.closeBracket) {
            phase = 'done';
            break;
          }
        }
        if (inString && collecting) parts.push(Buffer.from(buf.subarray(start)));
      }
    }
    if (phase === 'done') break;
  }
  if (phase !== 'done') throw new Error(`${path}: ended in the ${phase} section (truncated?)`);
  if (nodes !== declaredNodes) throw new Error(`${path}: parsed ${nodes} nodes, the header says ${declaredNodes}`);

  const byName = new Map<string, { count: number; bytes: number }>();
  for (const [key, g] of groups) {
    let label: string;
    if (key >= 0) label = names.get(Math.floor(key / HEAP_TYPE_SLOTS)) ?? `(string #${Math.floor(key / HEAP_TYPE_SLOTS)})`;
    else {
      const t = typeNames[-key - 1] ?? `type ${-key - 1}`;
      label = t === 'hidden' ? '(system)' : t === 'code' ? '(compiled code)' : `(${t})`;
    }
    const m = byName.get(label);
    if (m) {
      m.count += g.count;
      m.bytes += g.bytes;
    } else byName.set(label, { count: g.count, bytes: g.bytes });
  }
  const sorted = [...byName].map(([n, g]) => ({ name: n, count: g.count, selfBytes: g.bytes })).sort((a, b) => b.selfBytes - a.selfBytes);
  return { nodes, totalSelfBytes, top: sorted.slice(0, top), groups: sorted.length, parseMs: performance.now() - t0 };
}

// ---------------------------------------------------------------------------------------------
// Output.

/** An integer with thousands separators. */
function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Bytes as MiB with one decimal. */
function mib(bytes: number): string {
  return (bytes / BYTES_PER_MIB).toFixed(1);
}

/** Milliseconds with two decimals. */
function ms2(ms: number): string {
  return ms.toFixed(2);
}

/** A markdown table. */
function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  /** One row, with `|` escaped. */
  const line = (cells: readonly string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Prints a block to stdout followed by an empty line. */
function out(text: string): void {
  console.log(`${text}\n`);
}

/** A filter as people read it, e.g. `capability=npm, kind=a2a-agent, env=prod`. */
function describeQuery(q: FindQuery): string {
  const parts: string[] = [];
  if (q.capability !== undefined) parts.push(`capability=${q.capability}`);
  if (q.kind !== undefined) parts.push(`kind=${q.kind}`);
  for (const [k, v] of Object.entries(q.labels ?? {})) parts.push(`${k}=${v}`);
  return parts.join(', ');
}

/** Figures of one checkpoint kept for the summary across checkpoints. */
interface CheckpointSummary {
  readonly agents: number;
  readonly segmentRate: number;
  readonly cumulativeRate: number;
  /** Serializable first-page p50 per query label, in milliseconds. */
  readonly firstPageP50: Map<string, number>;
  readonly leaderRss: number;
  readonly leaderDataBytes: number;
  /** The leader's last snapshot point (index), if it took one. */
  readonly snapshotIndex: number | undefined;
  /** Snapshot points the leader took so far. */
  readonly snapshotsTaken: number;
  readonly restartMs: number;
}

// ---------------------------------------------------------------------------------------------
// Main.

/** Runs the load, the checkpoints, the catch-up and the heap snapshot, printing as it goes. */
async function main(): Promise<void> {
  const opts = parseOptions();
  const max = opts.max ?? (opts.checkpoints[opts.checkpoints.length - 1] as number);
  const checkpoints = opts.checkpoints.filter((c) => c <= max);
  if (checkpoints[checkpoints.length - 1] !== max) checkpoints.push(max);
  const startedAt = Date.now();
  deadlineAt = startedAt + opts.timeoutMin * S_PER_MIN * MS_PER_S;

  const material = loadSeedMaterial();
  const cdf = zipfCdf(CAPABILITY_NAMES, ZIPF_EXPONENT);
  const shares = estimateCapabilityShares(cdf);
  const rareRank = rankNearest(shares, RARE_TARGET_FRACTION);
  const commonRank = rankNearest(shares, COMMON_TARGET_FRACTION);
  const rare = material.capabilities[rareRank] as string;
  const common = material.capabilities[commonRank] as string;
  const queries: BenchQuery[] = [
    { label: 'rare capability', query: { capability: rare }, index: 'capability' },
    { label: 'common capability', query: { capability: common }, index: 'capability' },
    { label: 'label', query: { labels: { team: LABEL_QUERY_TEAM } }, index: 'label' },
    { label: 'combined', query: { capability: common, kind: COMBINED_QUERY_KIND, labels: { env: COMBINED_QUERY_ENV } }, index: 'capability' },
  ];
  const factory = new AgentFactory(opts.seed, material, cdf, queries);

  const extraArgs = [
    ...(opts.snapshotThreshold !== undefined ? ['--snapshot-threshold', String(opts.snapshotThreshold)] : []),
    ...(opts.snapshotTail !== undefined ? ['--snapshot-tail', String(opts.snapshotTail)] : []),
  ];
  if (opts.heapSnapshot) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --heapsnapshot-signal=SIGUSR2`.trim();

  const cluster = await ProcessCluster.start(CLUSTER_SIZE, extraArgs);
  const h = new Harness(cluster);
  let interrupted = false;
  /** SIGINT/SIGTERM: kills the nodes by PID, removes the data and heap files, exits 130 (a second signal exits at once). */
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) process.exit(EXIT_INTERRUPTED);
    interrupted = true;
    console.error(`${signal}: stopping the nodes`);
    void cluster.destroy().finally(() => {
      removeHeapFiles();
      process.exit(EXIT_INTERRUPTED);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Last resort if the bench exits without the finally below (process.exit elsewhere): SIGKILL by PID.
  const onExit = (): void => {
    for (const p of cluster.procs.values()) p.kill('SIGKILL');
    rmSync(cluster.dir, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  let loader: Loader | undefined;
  try {
    let leader = await cluster.waitForLeader(cluster.ids, remainingMs(SETTLE_TIMEOUT_MS));
    loader = new Loader(h, factory, leader, opts.concurrency);

    out(
      [
        `# bench:scale, ${new Date(startedAt).toISOString()}`,
        '',
        `- Node ${process.version}, ${process.platform} ${process.arch}, ${availableParallelism()} cores shared by the bench and the nodes, ${(totalmem() / BYTES_PER_GIB).toFixed(1)} GiB RAM, load average ${(loadavg()[0] ?? 0).toFixed(2)} at start.`,
        `- Cluster: ${CLUSTER_SIZE} registry-node processes on 127.0.0.1 (data under ${cluster.dir}); tick ${NODE_DEFAULT_TICK_MS} ms, election ${NODE_DEFAULT_ELECTION_TICKS} ticks, heartbeat ${NODE_DEFAULT_HEARTBEAT_TICKS} tick (registry-node defaults); snapshot threshold ${opts.snapshotThreshold ?? `${NODE_DEFAULT_SNAPSHOT_THRESHOLD} (default)`} entries, snapshot tail ${opts.snapshotTail ?? `${NODE_DEFAULT_SNAPSHOT_TAIL} (default)`} entries; first leader ${leader}.`,
        `- Load: ${fmtInt(max)} agents (checkpoints ${checkpoints.map(fmtInt).join(', ')}), registered through the leader with ${opts.concurrency} requests in flight (one client, ${CLIENT_DEADLINE_MS / MS_PER_S} s deadline); then ${fmtInt(opts.missed)} more while a follower is stopped. PRNG seed ${opts.seed}; time limit ${opts.timeoutMin} min.`,
        `- Agents: ids \`<seed name>-<n>\` over the ${material.agents.length} seed names; kind mcp-server (${PERCENT * A2A_FRACTION}% a2a-agent, ${PERCENT * SERVICE_FRACTION}% service); version 1.0.<n % ${VERSION_PATCHES}>; description ${DESCRIPTION_MIN_BYTES}-${DESCRIPTION_MAX_BYTES} bytes (seed text padded with seed words); ${MIN_CAPABILITIES}-${MAX_CAPABILITIES_PER_AGENT} capabilities from a Zipf law (s = ${ZIPF_EXPONENT}) over ${CAPABILITY_NAMES} names, the seed's real ones first (${material.realCapabilities.join(', ')}) then tool:<word>; labels env (3), team (${TEAMS}), region (${REGIONS.length}), source; 1-${MAX_ENDPOINTS_PER_AGENT} endpoints.`,
        `- Queries: rare capability \`${rare}\` (rank ${rareRank + 1}, estimated ${(PERCENT * (shares[rareRank] ?? 0)).toFixed(2)}% of agents), common capability \`${common}\` (rank ${commonRank + 1}, estimated ${(PERCENT * (shares[commonRank] ?? 0)).toFixed(1)}%), label \`team=${LABEL_QUERY_TEAM}\`, combined \`${describeQuery((queries[3] as BenchQuery).query)}\`.`,
        `- Find: against a follower, first page of ${FIRST_PAGE_SIZE}: ${opts.queries} queries per filter and consistency after ${WARMUP_QUERIES} warm-up; full scan by paging with pages of ${opts.scanPageSize}: up to ${opts.scanQueries} scans or ${opts.scanBudgetS} s per filter and consistency, skipped when the index the server walks holds more than ${fmtInt(opts.fullScanMax)} entries (--full-scan-max). Latencies in ms, client-side, one query at a time.`,
      ].join('\n'),
    );

    const summaries: CheckpointSummary[] = [];
    let loaded = 0;
    let totalLoadMs = 0;
    let lastRate = 0;
    for (const checkpoint of checkpoints) {
      const takenBefore = new Map(cluster.ids.map((id) => [id, (h.watches.get(id) as NodeLogWatch).taken.length]));
      const seg = await loader.load(loaded, checkpoint, cluster.ids, `load to ${fmtInt(checkpoint)}`);
      loaded = checkpoint;
      totalLoadMs += seg.ms;
      lastRate = (seg.stored / seg.ms) * MS_PER_S;
      const cumulativeRate = (loaded / totalLoadMs) * MS_PER_S;
      process.stderr.write(`[scale] ${fmtInt(loaded)} agents stored; measuring\n`);

      const settled = await h.settle(cluster.ids, `checkpoint ${checkpoint}`);
      leader = settled.leader;
      const followers = cluster.ids.filter((id) => id !== leader);
      const queryFollower = followers[0] as string;
      const restartNode = (followers[1] ?? followers[0]) as string;

      out(`## ${fmtInt(checkpoint)} agents stored`);
      out(
        table(
          ['agents stored', 'loaded in this segment', 'segment time s', 'segment rate agents/s', 'cumulative load rate agents/s', 'register retries', 'snapshots taken during this load'],
          [[fmtInt(loaded), fmtInt(seg.stored), (seg.ms / MS_PER_S).toFixed(1), fmtInt(lastRate), fmtInt(cumulativeRate), String(seg.retries), cluster.ids.map((id) => `${id}: ${(h.watches.get(id) as NodeLogWatch).taken.length - (takenBefore.get(id) ?? 0)}`).join(', ')]],
        ),
      );

      // 1. Find latency against a follower.
      const client = cluster.client([queryFollower], CLIENT_DEADLINE_MS);
      const firstRows: string[][] = [];
      const scanRows: string[][] = [];
      const firstPageP50 = new Map<string, number>();
      try {
        for (const [k, q] of queries.entries()) {
          const tally = factory.tallies[k] as QueryTally;
          process.stderr.write(`[scale] find ${q.label}: first page\n`);
          const ser = await measureFirstPage(client, q.query, 'serializable', opts.queries);
          const lin = await measureFirstPage(client, q.query, 'linearizable', opts.queries);
          firstPageP50.set(q.label, pctMs(ser.h, 50));
          const expectedPage = Math.min(FIRST_PAGE_SIZE, tally.matches);
          firstRows.push([
            q.label,
            `\`${describeQuery(q.query)}\``,
            fmtInt(tally.matches),
            `${(PERCENT * (tally.matches / loaded)).toFixed(2)}%`,
            `${q.index}: ${fmtInt(tally.indexEntries)}`,
            `${ser.pageAgents}${ser.pageAgents === expectedPage ? '' : ` (expected ${expectedPage}!)`}`,
            ms2(pctMs(ser.h, 50)),
            ms2(pctMs(ser.h, 99)),
            ms2(pctMs(lin.h, 50)),
            ms2(pctMs(lin.h, 99)),
          ]);
          if (tally.indexEntries > opts.fullScanMax) {
            scanRows.push([q.label, `${fmtInt(tally.matches)} (generator's count)`, '-', '-', '-', '-', '-', '-', '-', `skipped: the ${q.index} index holds ${fmtInt(tally.indexEntries)} entries > --full-scan-max ${fmtInt(opts.fullScanMax)} (too slow to scan fully)`]);
            continue;
          }
          process.stderr.write(`[scale] find ${q.label}: full scan\n`);
          const budgetMs = opts.scanBudgetS * MS_PER_S;
          const sScan = await measureFullScan(client, q.query, 'serializable', opts.scanPageSize, opts.scanQueries, budgetMs);
          const lScan = await measureFullScan(client, q.query, 'linearizable', opts.scanPageSize, opts.scanQueries, budgetMs);
          const mismatch = [sScan, lScan].some((s) => s.matches !== tally.matches);
          scanRows.push([
            q.label,
            fmtInt(sScan.matches),
            String(sScan.pages),
            ms2(pctMs(sScan.h, 50)),
            ms2(pctMs(sScan.h, 99)),
            String(sScan.h.totalCount),
            ms2(pctMs(lScan.h, 50)),
            ms2(pctMs(lScan.h, 99)),
            String(lScan.h.totalCount),
            mismatch ? `MISMATCH: the generator made ${fmtInt(tally.matches)} (linearizable scan found ${fmtInt(lScan.matches)})` : 'matches the generator\'s count',
          ]);
        }
      } finally {
        client.close();
      }
      out(`### Find against follower ${queryFollower}: first page (page size ${FIRST_PAGE_SIZE}, ${opts.queries} queries each, ms)`);
      out(table(['query', 'filter', 'matches', 'share', 'index walked: entries', 'agents on page 1', 'serializable p50', 'serializable p99', 'linearizable p50', 'linearizable p99'], firstRows));
      out(`### Find against follower ${queryFollower}: full scan by paging (page size ${opts.scanPageSize}, ms per whole scan)`);
      out(table(['query', 'matches', 'pages', 'serializable p50', 'serializable p99', 'n', 'linearizable p50', 'linearizable p99', 'n', 'note'], scanRows));

      // 2-4. Memory, disk and snapshots of every node.
      const statuses = (await h.settle(cluster.ids, `checkpoint ${checkpoint} after the finds`)).statuses;
      const figures = nodeFigures(h, statuses);
      out(`### Nodes`);
      out(
        table(
          ['node', 'role', 'applied index', 'VmRSS MiB', 'VmHWM (peak) MiB', 'data dir MiB', 'of which snapshots MiB', '.snap files', 'last snapshot index', 'snapshots taken so far', 'last snapshot sent: index, MiB, ms'],
          figures.map((f) => [
            f.id,
            f.role,
            fmtInt(f.applied),
            mib(f.mem.rss),
            mib(f.mem.hwm),
            mib(f.dataBytes),
            mib(f.snapshotDirBytes),
            String(f.snapFiles),
            f.lastSnapshot ? fmtInt(f.lastSnapshot.index) : 'none yet',
            String(f.snapshotsTaken),
            f.lastSent ? `${fmtInt(f.lastSent.index)}, ${mib(f.lastSent.sizeBytes)}, ${fmtInt(f.lastSent.ms)}` : '-',
          ]),
        ),
      );

      // 5. Restart of a follower.
      process.stderr.write(`[scale] restarting ${restartNode}\n`);
      const settledBefore = await h.settle(cluster.ids, 'before the restart');
      const restart = await restartFollower(h, restartNode, settledBefore.commit);
      out(`### Restart of follower ${restart.id}`);
      out(
        table(
          ['node', 'agents held', 'SIGTERM to exit ms', 'start to applied >= leader commit ms', 'leader commit index'],
          [[restart.id, fmtInt(loaded), fmtInt(restart.stopMs), fmtInt(restart.catchUpMs), fmtInt(restart.target)]],
        ),
      );
      const leaderFig = figures.find((f) => f.id === leader);
      summaries.push({
        agents: loaded,
        segmentRate: lastRate,
        cumulativeRate,
        firstPageP50,
        leaderRss: leaderFig?.mem.rss ?? 0,
        leaderDataBytes: leaderFig?.dataBytes ?? 0,
        snapshotIndex: leaderFig?.lastSnapshot?.index,
        snapshotsTaken: leaderFig?.snapshotsTaken ?? 0,
        restartMs: restart.catchUpMs,
      });
      checkTime(`checkpoint ${checkpoint}`);
    }

    // 6. Catch-up of a follower that missed writes.
    if (opts.missed > 0) {
      const settled = await h.settle(cluster.ids, 'before the catch-up');
      leader = settled.leader;
      const lagging = cluster.ids.filter((id) => id !== leader)[1] ?? (cluster.ids.find((id) => id !== leader) as string);
      const up = cluster.ids.filter((id) => id !== lagging);
      process.stderr.write(`[scale] stopping ${lagging}, writing ${fmtInt(opts.missed)} agents\n`);
      await cluster.kill(lagging, 'SIGTERM');
      const seg = await loader.load(loaded, loaded + opts.missed, up, `${fmtInt(opts.missed)} writes missed by ${lagging}`);
      loaded += opts.missed;
      const afterLoad = await h.settle(up, 'after the missed writes');
      leader = afterLoad.leader;
      const watch = h.watches.get(lagging) as NodeLogWatch;
      const leaderWatch = h.watches.get(leader) as NodeLogWatch;
      const installedBefore = watch.installed.length;
      const sentBefore = leaderWatch.sent.length;
      process.stderr.write(`[scale] starting ${lagging}, waiting for it to apply ${afterLoad.commit}\n`);
      const t0 = performance.now();
      h.start(lagging);
      await h.caughtUp(lagging, afterLoad.commit, CATCH_UP_TIMEOUT_MS);
      const catchUpMs = performance.now() - t0;
      const installs = watch.installed.slice(installedBefore);
      const sends = leaderWatch.sent.slice(sentBefore);
      const lastInstall = installs[installs.length - 1];
      out(`## Catch-up of follower ${lagging} after missing ${fmtInt(opts.missed)} writes`);
      out(
        table(
          ['node', 'missed writes', 'load rate while it was down agents/s', 'leader commit index to reach', 'start to applied >= that ms', 'through a snapshot', 'snapshot installed: index, MiB, install ms', 'snapshots sent by leader ' + leader],
          [[
            lagging,
            fmtInt(opts.missed),
            fmtInt((seg.stored / seg.ms) * MS_PER_S),
            fmtInt(afterLoad.commit),
            fmtInt(catchUpMs),
            installs.length > 0 ? `yes (${installs.length} \`snapshot installed\`)` : 'no (from the log)',
            lastInstall ? `${fmtInt(lastInstall.index)}, ${mib(lastInstall.sizeBytes)}, ${fmtInt(lastInstall.ms)}` : '-',
            sends.length > 0 ? sends.map((s) => `${fmtInt(s.index)} (${mib(s.sizeBytes)} MiB, ${fmtInt(s.ms)} ms)`).join('; ') : 'none',
          ]],
        ),
      );
    }

    // 7. The leader's memory.
    const final = await h.settle(cluster.ids, 'before the heap snapshot');
    leader = final.leader;
    const leaderPid = h.pid(leader);
    const mem = procMemory(leaderPid);
    out(`## Memory of leader ${leader} (pid ${leaderPid}) holding ${fmtInt(loaded)} agents`);
    out(
      table(
        ['VmRSS MiB', 'VmHWM (peak) MiB', 'RssAnon MiB', 'RssFile MiB', 'VmData MiB'],
        [[mib(mem.rss), mib(mem.hwm), mib(mem.rssAnon), mib(mem.rssFile), mib(mem.data)]],
      ),
    );
    if (opts.heapSnapshot) {
      process.stderr.write(`[scale] heap snapshot of ${leader} (pid ${leaderPid})\n`);
      let file: HeapSnapshotFile | undefined;
      try {
        file = await takeHeapSnapshot(leaderPid, opts.heapTimeoutS * MS_PER_S, async () => (await cluster.statuses([leader])).length === 1);
        const sum = await summarizeHeapSnapshot(file.path, TOP_HEAP_TYPES);
        out(
          `Heap snapshot: ${mib(file.bytes)} MiB file, written in ~${fmtInt(file.ms)} ms (the leader is paused meanwhile), stream-parsed in ${fmtInt(sum.parseMs)} ms; ${fmtInt(sum.nodes)} heap objects, ${mib(sum.totalSelfBytes)} MiB of self size in ${fmtInt(sum.groups)} constructor/type names. Top ${TOP_HEAP_TYPES} by self size:`,
        );
        out(
          table(
            ['#', 'constructor / type', 'count', 'self size MiB', 'share of heap'],
            sum.top.map((g, i) => [String(i + 1), `\`${g.name.slice(0, 80)}\``, fmtInt(g.count), mib(g.selfBytes), `${((PERCENT * g.selfBytes) / Math.max(1, sum.totalSelfBytes)).toFixed(1)}%`]),
          ),
        );
      } catch (e) {
        if (e instanceof BenchTimeout) throw e;
        out(`Heap snapshot not available (${e instanceof Error ? e.message : String(e)}); the /proc figures above are all there is.`);
      } finally {
        if (file) rmSync(file.path, { force: true });
        removeHeapFiles();
      }
    }

    // Summary across checkpoints.
    out('## Summary across checkpoints');
    out(
      table(
        ['agents', 'segment load rate agents/s', 'cumulative load rate agents/s', ...queries.map((q) => `${q.label} page 1 p50 ms (serializable)`), 'leader VmRSS MiB', 'leader data dir MiB', 'leader last snapshot index', 'snapshots taken by the leader', 'follower restart ms'],
        summaries.map((s) => [
          fmtInt(s.agents),
          fmtInt(s.segmentRate),
          fmtInt(s.cumulativeRate),
          ...queries.map((q) => ms2(s.firstPageP50.get(q.label) ?? Number.NaN)),
          mib(s.leaderRss),
          mib(s.leaderDataBytes),
          s.snapshotIndex !== undefined ? fmtInt(s.snapshotIndex) : '-',
          String(s.snapshotsTaken),
          fmtInt(s.restartMs),
        ]),
      ),
    );
    const avgRate = ((checkpoints[checkpoints.length - 1] as number) / totalLoadMs) * MS_PER_S;
    out(
      `Load time: ${(totalLoadMs / MS_PER_S).toFixed(1)} s for ${fmtInt(checkpoints[checkpoints.length - 1] as number)} agents (${fmtInt(avgRate)} agents/s on average, ${fmtInt(lastRate)} agents/s in the last segment); whole run ${((Date.now() - startedAt) / MS_PER_S).toFixed(0)} s.`,
    );
  } catch (e) {
    if (e instanceof BenchTimeout || Date.now() > deadlineAt) {
      console.error(`aborted: ${e instanceof Error ? e.message : String(e)} (--timeout-min ${opts.timeoutMin}); the checkpoints above are complete`);
      process.exitCode = 1;
    } else {
      console.error(cluster.dumpLogs(10));
      throw e;
    }
  } finally {
    loader?.close();
    await cluster.destroy();
    removeHeapFiles();
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
