/**
 * A deterministic cluster simulator that runs the node loop that ships (after FoundationDB's
 * simulation and etcd's `network`): 3 or 5 nodes, each the production `RaftNode` with the real
 * registry state machine, watch hub, lease manager and client API handlers, wired to simulated
 * ports — a {@link SimWorld} clock, a {@link SimNetwork} transport and leader link, a
 * {@link SimDisk} store and snapshot store. Nothing here drives the Raft core itself: the only
 * loop is `src/server/raft-node.ts`.
 *
 * Faults: partitions of any shape (one-way too), drops, delays, duplicates and reordering, a
 * snapshot stream delayed, cut or reordered against the ordinary one, crashes at any await of
 * the loop (a power loss loses unsynced writes, a process kill keeps them), restarts, pauses
 * (SIGSTOP) and stalled disks. Clients call the real API through any node: register (plain,
 * create-only and compare-and-set), deregister, linearizable and serializable get and find,
 * watch, leases and heartbeats, membership changes.
 *
 * Invariants are checked after every event (`invariants.ts`); a violation throws
 * {@link SafetyViolation} carrying the trace. A node that stops by itself is a violation: only
 * local corruption may stop a node, and the simulated disks are never corrupt.
 */
import { DEFAULT_REQUEST_TIMEOUT_MS, RegistryApi, type WatchStream } from '../../src/api/handlers.js';
import type { RegisterRequest, WireAgent, WireWatchEvent } from '../../src/api/registry-proto.js';
import { ApiError, Code, codeName } from '../../src/api/status.js';
import { silentLogger } from '../../src/log.js';
import { nodeId, type Entry, type HardState, type NodeId, type RaftTestingKnobs, type SnapshotMetadata } from '../../src/raft/index.js';
import { decodeCommand } from '../../src/registry/commands.js';
import { LeaseManager } from '../../src/registry/lease-manager.js';
import type { LeaseKeeper, LeaseRecord } from '../../src/registry/lease-types.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { Member } from '../../src/registry/types.js';
import { RaftNode, type DriverTestingKnobs } from '../../src/server/raft-node.js';
import { WatchHub } from '../../src/server/watch-hub.js';
import type { Operation } from '../support/linearizability.js';
import { describeMessage } from '../support/trace.js';
import { SimDisk, type CrashKind } from './disk.js';
import { InvariantChecker } from './invariants.js';
import { CLEAN_NET, SimNetwork, type NetConditions, type NetNode } from './network.js';
import { SimWorld, type Owner } from './world.js';

/** Length of a tick, in ms: the production default. */
export const SIM_TICK_MS = 100;
/** Election timeout, in ticks (randomized up to twice that): the production default. */
export const SIM_ELECTION_TICKS = 10;
/** One election timeout, in ms. */
export const SIM_ELECTION_MS = SIM_TICK_MS * SIM_ELECTION_TICKS;
/** How long a client waits for any call before it counts as timed out, in ms. */
export const CLIENT_TIMEOUT_MS = 6_000;
/** Time allowed after every fault is healed for a leader to emerge and everything to apply, in ms. */
export const LIVENESS_BUDGET_MS = 60_000;
/** Snapshot every this many applied entries (small, so compaction and InstallSnapshot happen often). */
export const SIM_SNAPSHOT_EVERY_ENTRIES = 6;
/** Entries kept in the log behind a snapshot. */
export const SIM_SNAPSHOT_TAIL_ENTRIES = 3;
/** Chunk size of simulated snapshots, in bytes (small, so transfers and installs have several chunks to cut). */
export const SIM_SNAPSHOT_CHUNK_BYTES = 512;
/** Shortest lease the simulated nodes accept, in seconds (one election timeout: the simulator probes below the safe bound). */
export const SIM_MIN_LEASE_TTL_SECONDS = 1;
/** The port every simulated member's address carries (addresses are names only). */
const SIM_PORT = 7000;

/** A safety or liveness property failed. */
export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
  trace: string[] = [];
}

/** Deliberate bugs: of the driver and of the core. */
export type SimBugs = DriverTestingKnobs & RaftTestingKnobs;

/** Options of one simulation. */
export interface SimOptions {
  /** Cluster size (1 for the paper's single-node case; the schedules use 3 and 5). */
  readonly nodes: 1 | 3 | 5;
  readonly seed: number;
  readonly bugs?: SimBugs;
  /** Keep a readable trace of every event (costly; on for replays and failure reports). */
  readonly trace?: boolean;
  /** Applied entries between snapshots (default {@link SIM_SNAPSHOT_EVERY_ENTRIES}). */
  readonly snapshotEvery?: number;
  /**
   * Probability that a snapshot transfer is cut part-way even on a healed network (default 0):
   * long transfers on their own connections break more often than the peer stream.
   */
  readonly flakySnapshots?: number;
  /**
   * Probability that a snapshot transfer arrives damaged, so that its follower must refuse it
   * (`NetConditions.snapshotDamage`), on a healed network too (default 0).
   */
  readonly damagedSnapshots?: number;
}

/** What a client saw of one call. */
export type Outcome = 'pending' | 'ok' | 'notFound' | 'conflict' | 'unknown' | 'refused' | 'failed';

/** A client call in flight or done; `outcome` is updated as the simulation runs. */
export interface ClientCall {
  outcome: Outcome;
  /** The status code of a failed call. */
  code?: number;
  /** The revision a successful write or read answered with. */
  revision?: number;
  /** What a read found (the agent's version), or null. */
  found?: string | null;
}

/** One key of an `expire` command applied on one node. */
export interface ExpiryApplied {
  readonly node: NodeId;
  readonly index: number;
  readonly term: number;
  readonly at: number;
  readonly key: string;
  readonly modRevision: number;
  /** Whether the key still held that write (and so was deleted). */
  deleted: boolean;
}

/** One lease check of a leader that found lapsed leases (what it then proposes as an `expire`). */
export interface ExpireProposal {
  readonly node: NodeId;
  readonly term: number;
  readonly at: number;
  readonly items: readonly LeaseRecord[];
  /** `now - quorumConfirmedAt` at the check, in ms. */
  readonly quorumAge: number;
}

/** A client that heartbeats one key every `everyMs`, through the nodes of `via` in turn. */
export interface Heartbeater {
  readonly key: string;
  readonly everyMs: number;
  readonly via: readonly string[];
  /** Register again (with `ttlSeconds`) when the leader answers that it holds no lease. */
  readonly reregister: boolean;
  readonly ttlSeconds: number;
  beats: number;
  stopped: boolean;
}

interface PendingWrite {
  readonly op: Operation & { kind: 'register' | 'deregister' };
  readonly call: ClientCall;
}

/** A record of the watch events one node delivered, across its incarnations. */
interface WatchLog {
  /** The last revision delivered (a restart resumes after it). */
  lastRevision: number;
  /** `revision/id` → the event, as delivered here. */
  readonly seen: Map<string, string>;
}

/** The parts of one running incarnation of a node, all production code. */
interface Incarnation {
  readonly raft: RaftNode;
  readonly sm: RegistryStateMachine;
  readonly hub: WatchHub;
  readonly api: RegistryApi;
}

/** One simulated node: its disk outlives its incarnations; the rest is rebuilt on restart. */
export class SimNode implements NetNode {
  generation = 0;
  /** Running: started and not crashed since. */
  up = false;
  /** Starting: an incarnation is loading its disk. */
  starting = false;
  /** What the running incarnation is made of (undefined while down). */
  incarnation: Incarnation | undefined;
  members: readonly Member[] = [];
  messageHandler: NetNode['messageHandler'];
  snapshotHandler: NetNode['snapshotHandler'];
  readonly removedPeers = new Set<string>();
  readonly disk: SimDisk;
  /** Writes through this node still waiting for an answer. */
  readonly pending = new Set<PendingWrite>();
  readonly watch: WatchLog = { lastRevision: 0, seen: new Map() };

  constructor(
    readonly id: NodeId,
    world: SimWorld,
  ) {
    this.disk = new SimDisk(world);
  }

  get raft(): RaftNode | undefined {
    return this.incarnation?.raft;
  }

  get sm(): RegistryStateMachine | undefined {
    return this.incarnation?.sm;
  }

  get api(): RegistryApi | undefined {
    return this.incarnation?.api;
  }

  /** The owner of this incarnation's events. */
  get owner(): Owner {
    return { node: this.id, generation: this.generation };
  }

  /** The running RaftNode (throws when down). */
  get node(): RaftNode {
    if (!this.raft || !this.up) throw new Error(`${this.id} is not running`);
    return this.raft;
  }
}

const agentOf = (key: string, version: string): WireAgent => ({
  id: key,
  name: key,
  kind: 'service',
  version,
  description: '',
  capabilities: [],
  endpoints: {},
  labels: {},
  create_revision: 0,
  mod_revision: 0,
  health: 'HEALTH_UNSPECIFIED',
  lease_ttl_seconds: 0,
  lease_expires_unix_ms: 0,
  card: '',
  card_format: 'CARD_FORMAT_UNSPECIFIED',
  modified_by: '',
  verified_key_id: '',
  signature_error: '',
});

/** Whether an error means the call was never accepted (it cannot have taken effect). */
function neverAccepted(err: unknown): boolean {
  return err instanceof ApiError && err.code === Code.INVALID_ARGUMENT;
}

/** A simulated cluster running the production node loop. */
export class Simulation {
  readonly ids: NodeId[];
  readonly nodes = new Map<NodeId, SimNode>();
  readonly world: SimWorld;
  readonly network: SimNetwork;
  readonly checker: InvariantChecker;
  readonly history: Operation[] = [];
  readonly trace: string[] = [];
  /** The highest revision any write was acknowledged with. */
  lastAcknowledged = 0;
  /** Snapshots installed by followers (coverage of §7). */
  snapshotsInstalled = 0;
  /** Snapshots nodes took of their own state (coverage). */
  snapshotsTaken = 0;
  /** Snapshot payloads refused as they arrived, each one damaged by the network on purpose. */
  snapshotsRefused = 0;
  /** Log indexes of the membership changes applied (coverage of §4.1). */
  readonly confChangesApplied = new Set<number>();
  /** Messages sent before their Ready's write was durable, by leaders of a term above the first one (coverage of thesis §10.2.1). */
  earlySendsAfterFirstTerm = 0;
  /** Reads that waited for their client's deadline (a lost ReadIndex round never failed). */
  readsTimedOut = 0;
  /** Linearizable reads answered (coverage). */
  readsAnswered = 0;
  /** Crashes by kind, and pauses (coverage). */
  readonly crashes = { power: 0, process: 0, pauses: 0 };
  /** A node that stopped by itself, with its error. */
  fatal: string | undefined;
  /** Any other violation noticed by a callback, thrown at the next check. */
  violation: string | undefined;

  // Leases
  readonly heartbeaters = new Map<string, Heartbeater>();
  /** Last renewal of each key at a leader, in ms. */
  readonly lastRenewal = new Map<string, number>();
  readonly expireProposals: ExpireProposal[] = [];
  readonly expiriesApplied: ExpiryApplied[] = [];

  /** `revision/id` → the first event delivered for it by any node's watch. */
  private readonly watchEvents = new Map<string, string>();
  private readonly bugs: SimBugs;
  private readonly traceOn: boolean;
  private readonly snapshotEvery: number;
  private readonly healedNet: NetConditions;
  private opSeq = 0;
  private readonly bootstrap: Member[];

  private constructor(opts: SimOptions) {
    this.bugs = opts.bugs ?? {};
    this.traceOn = opts.trace ?? false;
    this.snapshotEvery = opts.snapshotEvery ?? SIM_SNAPSHOT_EVERY_ENTRIES;
    this.healedNet = { ...CLEAN_NET, snapshotCut: opts.flakySnapshots ?? 0, snapshotDamage: opts.damagedSnapshots ?? 0 };
    this.world = new SimWorld(
      opts.seed,
      (o) => this.isAlive(o),
      () => this.afterEvent(),
    );
    this.ids = Array.from({ length: opts.nodes }, (_, i) => nodeId(`n${i + 1}`));
    this.bootstrap = this.ids.map((id) => ({ id, address: `${id}:${SIM_PORT}`, voter: true }));
    for (const id of this.ids) this.nodes.set(id, new SimNode(id, this.world));
    this.network = new SimNetwork(this.world, (id) => this.nodes.get(id as NodeId), describeMessage, (l) => this.log(l));
    this.network.net = { ...this.healedNet };
    this.checker = new InvariantChecker(this);
  }

  /** Builds a cluster and starts every node (they bootstrap the same membership). */
  static async create(opts: SimOptions): Promise<Simulation> {
    const sim = new Simulation(opts);
    for (const id of sim.ids) sim.start(sim.get(id));
    await sim.world.runWhile(() => sim.ids.every((id) => sim.get(id).up), 1_000);
    return sim;
  }

  private isAlive(o: Owner): boolean {
    const n = this.nodes.get(o.node as NodeId);
    if (!n) return true;
    if (o.generation === undefined) return true; // deliveries check `up` themselves
    return n.generation === o.generation;
  }

  private afterEvent(): void {
    if (this.fatal) this.fail(this.fatal);
    if (this.violation) this.fail(this.violation);
    if (this.network.duplicateSend) this.fail(this.network.duplicateSend);
    if (this.network.legacyViolation) this.fail(this.network.legacyViolation);
    this.checker.check();
  }

  private fail(msg: string): never {
    const v = new SafetyViolation(`${msg} (at t=${this.world.now})`);
    v.trace = this.trace;
    throw v;
  }

  /** Adds a line to the trace (when tracing). */
  log(line: string): void {
    if (this.traceOn) this.trace.push(`t=${this.world.now} ${line}`);
  }

  get now(): number {
    return this.world.now;
  }

  get(id: string): SimNode {
    const n = this.nodes.get(id as NodeId);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Nodes currently running. */
  upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.up && n.raft !== undefined);
  }

  /** Network conditions (assign to change them). */
  get net(): NetConditions {
    return this.network.net;
  }

  set net(c: NetConditions) {
    this.network.net = c;
  }

  // ---------------------------------------------------------------------------------------
  // Node life

  /** Starts an incarnation of `n` on what its disk holds (asynchronously: it is up once started). */
  private start(n: SimNode): void {
    n.starting = true;
    const owner = n.owner;
    const generation = n.generation;
    const { store, snapshots } = n.disk.open(owner, (hs) => this.onSyncedHardState(n.id, hs));
    const clock = this.world.clockFor(owner);
    const sm = new RegistryStateMachine(store, silentLogger);
    const hub = new WatchHub(sm, silentLogger);
    const keeper = this.recordingLeases(n, new LeaseManager());
    const transport = this.network.transport(n);
    const world = this.world;
    void (async () => {
      await sm.open();
      const raft = await RaftNode.start({
        id: n.id,
        bootstrap: this.bootstrap,
        store,
        stateMachine: sm,
        transport,
        snapshots,
        logger: silentLogger,
        clock,
        entropy: { uint32: () => Math.floor(world.rand() * 2 ** 32) >>> 0 },
        observer: {
          onApplied: (id, entries) => this.onApplied(id, entries),
          onSnapshotInstalled: (id, meta) => this.onSnapshotInstalled(id, meta),
          onSnapshotTaken: () => this.snapshotsTaken++,
          onSnapshotRefused: (id, from, meta, reason) => this.onSnapshotRefused(id, from, meta, reason),
          onSent: (id, messages, early) => {
            if (early && (this.nodes.get(id)?.raft?.core.raft.currentTerm ?? 0) > 2) this.earlySendsAfterFirstTerm += messages.length;
          },
        },
        leases: keeper,
        onEvents: (events) => hub.publish(events),
        onRestored: () => hub.resync(),
        tickMs: SIM_TICK_MS,
        electionTicks: SIM_ELECTION_TICKS,
        heartbeatTicks: 1,
        snapshotThresholdEntries: this.snapshotEvery,
        snapshotTailEntries: SIM_SNAPSHOT_TAIL_ENTRIES,
        snapshotChunkBytes: SIM_SNAPSHOT_CHUNK_BYTES,
        maxInflightMsgs: 8,
        // One entry per AppendEntries: replication goes entry by entry, which makes the
        // interleavings of Figure 8 (an old entry on a majority, the new term's not yet) reachable.
        maxSizePerMsgBytes: 1,
        testingKnobs: this.bugs,
        onFatal: (err) => {
          this.fatal ??= `${n.id} stopped by itself: ${err.message}`;
        },
      });
      if (n.generation !== generation) return; // crashed while starting
      const stored = await sm.members();
      n.members = stored.length > 0 ? stored : this.bootstrap;
      raft.on('members', (m: readonly Member[]) => {
        n.members = m;
      });
      raft.on('role', (ss: { role: string; leaderId: string }) => this.log(`${n.id} is ${ss.role} (leader ${ss.leaderId || '-'}) term ${raft.core.raft.currentTerm}`));
      const api = new RegistryApi({
        id: n.id,
        store,
        watchHub: hub,
        raft,
        stateMachine: sm,
        members: () => n.members,
        clock,
        leaderLink: this.network.leaderLink(n),
        logger: silentLogger,
        minLeaseTtlSeconds: SIM_MIN_LEASE_TTL_SECONDS,
      });
      n.incarnation = { raft, sm, hub, api };
      n.starting = false;
      n.up = true;
      this.checker.onRestart(n.id, await store.stable.hardState());
      this.startWatch(n, generation);
    })().catch((err: unknown) => {
      if (n.generation === generation) this.fatal ??= `${n.id} failed to start: ${String(err)}`;
    });
  }

  /** Wraps the lease keeper to record what a leader finds lapsed and renews. */
  private recordingLeases(n: SimNode, inner: LeaseManager): LeaseKeeper {
    const sim = this;
    return {
      becomeLeader: (now, leases) => inner.becomeLeader(now, leases),
      stepDown: () => inner.stepDown(),
      get active() {
        return inner.active;
      },
      renew(id, now) {
        const ttl = inner.renew(id, now);
        if (ttl !== undefined) sim.lastRenewal.set(id, now);
        return ttl;
      },
      upsert: (r, now) => inner.upsert(r, now),
      remove: (id) => inner.remove(id),
      expired(now, confirmedAt, limits) {
        const out = inner.expired(now, confirmedAt, limits);
        if (out.length > 0) {
          const term = n.raft?.core.raft.currentTerm ?? 0;
          sim.expireProposals.push({ node: n.id, term, at: now, items: out, quorumAge: now - confirmedAt });
          sim.log(`${n.id} finds lapsed ${out.map((l) => `${l.id}@${l.modRevision}`).join(',')} (quorum age ${now - confirmedAt})`);
        }
        return out;
      },
      retryPending: () => inner.retryPending(),
      deadlineOf: (id) => inner.deadlineOf(id),
    };
  }

  /**
   * Stops a node at once: its in-flight writes and volatile state are lost. `power` (the
   * default picks one at random) also loses what was written but not synced.
   */
  crash(id: string, kind?: CrashKind): void {
    const n = this.get(id);
    if (!n.up && !n.starting) return;
    const k: CrashKind = kind ?? (this.world.rand() < 0.5 ? 'power' : 'process');
    n.generation++;
    n.up = false;
    n.starting = false;
    n.incarnation = undefined;
    n.messageHandler = undefined;
    n.snapshotHandler = undefined;
    this.world.resume(id);
    for (const w of n.pending) {
      w.call.outcome = 'unknown';
      this.history.push({ ...w.op, outcome: 'unknown' });
    }
    n.pending.clear();
    n.disk.crash(k);
    n.disk.stallUntil = 0;
    this.network.crashed(id);
    this.crashes[k]++;
    this.checker.onCrash(n.id, k);
    this.log(`crash ${id} (${k})`);
  }

  /** Restarts a node from its disk (no-op while it runs or starts). */
  restart(id: string): void {
    const n = this.get(id);
    if (n.up || n.starting) return;
    n.generation++;
    this.log(`restart ${id}`);
    this.start(n);
  }

  /** Pauses a node's process (SIGSTOP): its timers, deliveries and disk completions wait. */
  pause(id: string): void {
    const n = this.get(id);
    if (!n.up || this.world.isPaused(id)) return;
    this.crashes.pauses++;
    this.world.pause(id);
    this.log(`pause ${id}`);
  }

  /** Resumes a paused node (SIGCONT): everything it missed runs now. */
  resume(id: string): void {
    if (!this.world.isPaused(id)) return;
    this.world.resume(id);
    this.log(`resume ${id}`);
  }

  /** Makes every disk operation of `id` take at least until `ms` from now. */
  stallDisk(id: string, ms: number): void {
    this.get(id).disk.stallUntil = this.world.now + ms;
    this.log(`stall disk of ${id} for ${ms} ms`);
  }

  // ---------------------------------------------------------------------------------------
  // Network faults

  /** Blocks messages from `a` to `b` (one direction). */
  blockLink(a: string, b: string): void {
    this.network.block(a, b);
  }

  /** Splits the cluster into `groups`; nodes in different groups cannot talk. */
  partition(groups: string[][]): void {
    this.network.unblockAll();
    for (const g of groups) for (const h of groups) if (g !== h) for (const a of g) for (const b of h) this.network.block(a, b);
    this.log(`partition ${groups.map((g) => `{${g.join(',')}}`).join(' ')}`);
  }

  /** Removes every partition, restores a clean network (but for flaky snapshots) and resumes paused nodes. */
  heal(): void {
    this.network.unblockAll();
    this.network.net = { ...this.healedNet };
    for (const id of this.ids) {
      this.resume(id);
      this.get(id).disk.stallUntil = 0;
    }
    this.log('heal');
  }

  // ---------------------------------------------------------------------------------------
  // Time

  /** Runs `ms` of simulated time; every invariant is checked after every event. */
  async run(ms: number): Promise<void> {
    await this.world.run(ms);
  }

  /** Processes the next event. */
  async step(): Promise<void> {
    await this.world.next();
  }

  /** Runs until `pred` holds or `maxMs` passed; returns whether it holds. */
  async runUntil(pred: () => boolean, maxMs: number): Promise<boolean> {
    return this.world.runWhile(pred, maxMs);
  }

  /**
   * Runs the simulation until `p` settles (at most `maxMs`), and returns its value: for awaiting
   * a node's own asynchronous work (its disk reads take simulated time too) from a test.
   */
  async await<T>(p: Promise<T>, maxMs = 60_000): Promise<T> {
    let settled = false;
    const watched = p.finally(() => (settled = true));
    watched.catch(() => undefined);
    if (!(await this.runUntil(() => settled, maxMs))) throw new Error(`a promise did not settle within ${maxMs} ms of simulated time`);
    return watched;
  }

  /** The running node that leads with the highest term, if any. */
  leader(): NodeId | undefined {
    let best: SimNode | undefined;
    for (const n of this.upNodes()) {
      const r = n.node.core.raft;
      if (r.role !== 'leader') continue;
      if (!best || r.currentTerm > best.node.core.raft.currentTerm) best = n;
    }
    return best?.id;
  }

  /** Runs until a leader with a term newer than the current highest one appears (bounded). */
  async awaitLeader(maxMs = 10_000): Promise<void> {
    let top = 0;
    for (const n of this.upNodes()) top = Math.max(top, n.node.core.raft.currentTerm);
    await this.runUntil(() => {
      const l = this.leader();
      return l !== undefined && this.get(l).node.core.raft.currentTerm > top;
    }, maxMs);
  }

  /** Members (voters and learners) in the configuration of the leader, if any. */
  members(): Set<string> {
    const l = this.leader();
    if (!l) return new Set(this.ids);
    const c = this.get(l).node.core.raft.confState();
    return new Set([...c.voters, ...c.learners]);
  }

  // ---------------------------------------------------------------------------------------
  // Clients (through the real API of the node they call)

  private nextValue(): string {
    return `v${++this.opSeq}`;
  }

  /**
   * A client writes through node `via`: `register` sets `key` to `value`, `deregister` removes
   * it. With `expected`, the write is conditional: `expectedRevision` (the revision at which the
   * client saw `expected`) or, for `expected: null`, create-only. Refused at once when `via` is
   * down (it cannot have taken effect; not recorded).
   */
  write(via: string, op: 'register' | 'deregister', key: string, value = this.nextValue(), cond?: { expected: string | null; revision: number }): ClientCall {
    const n = this.get(via);
    const call: ClientCall = { outcome: 'pending' };
    const api = n.up ? n.api : undefined;
    if (!api) {
      call.outcome = 'refused';
      return call;
    }
    const clientId = `c${++this.opSeq}`;
    const base = { key, call: this.world.now, ret: Number.POSITIVE_INFINITY, clientId };
    let rec: PendingWrite['op'];
    if (op === 'register') rec = { kind: 'register', value, outcome: 'ok', ...base, ...(cond === undefined ? {} : { expected: cond.expected }) };
    else {
      if (cond !== undefined && cond.expected === null) throw new Error('a conditional deregister needs an expected value');
      rec = { kind: 'deregister', outcome: 'ok', ...base, ...(cond === undefined ? {} : { expected: cond.expected as string }) };
    }
    const pending: PendingWrite = { op: rec, call };
    n.pending.add(pending);
    const generation = n.generation;
    const ctx = { budgetMs: CLIENT_TIMEOUT_MS };
    const p =
      op === 'register'
        ? api.register(
            { agent: agentOf(key, value), ...(cond === undefined ? {} : cond.expected === null ? { create_only: true } : { expected_revision: cond.revision }) } as RegisterRequest,
            ctx,
          )
        : api.deregister({ id: key, ...(cond === undefined || cond.expected === null ? {} : { expected_revision: cond.revision }) }, ctx);
    this.log(`client ${clientId} ${op} ${key}${op === 'register' ? `=${value}` : ''}${cond ? ` if ${cond.expected ?? 'absent'}@${cond.revision}` : ''} via ${via}`);
    p.then(
      (res) => {
        if (n.generation !== generation || !n.pending.delete(pending)) return;
        call.outcome = 'ok';
        call.revision = res.revision;
        this.lastAcknowledged = Math.max(this.lastAcknowledged, res.revision);
        if (rec.kind === 'deregister' && cond === undefined) this.history.push({ ...rec, ret: this.world.now, deleted: (res as { deleted: boolean }).deleted });
        else this.history.push({ ...rec, ret: this.world.now });
        this.log(`client ${clientId} ok at ${res.revision}`);
      },
      (err: unknown) => {
        if (n.generation !== generation || !n.pending.delete(pending)) return;
        const code = err instanceof ApiError ? err.code : Code.UNKNOWN;
        call.code = code;
        if (neverAccepted(err)) {
          this.violation ??= `a valid write was refused: ${String(err)}`;
          call.outcome = 'failed';
          return;
        }
        if (code === Code.INTERNAL) this.violation ??= `${via} answered INTERNAL: ${(err as Error).message}`;
        if (code === Code.FAILED_PRECONDITION && cond !== undefined) {
          call.outcome = 'conflict';
          this.history.push({ ...rec, ret: this.world.now, outcome: 'conflict' });
        } else {
          call.outcome = 'unknown';
          this.history.push({ ...rec, outcome: 'unknown' });
        }
        this.log(`client ${clientId} ${codeName(code)}: ${(err as Error).message}`);
      },
    );
    return call;
  }

  /**
   * A compare-and-set through `via`: a linearizable get of `key`, then a register of a new value
   * conditional on what the get saw (its revision, or create-only when absent).
   */
  compareAndSet(via: string, key: string): ClientCall {
    const outer: ClientCall = { outcome: 'pending' };
    const read = this.read(via, key, { record: true });
    const world = this.world;
    const until = world.now + CLIENT_TIMEOUT_MS;
    const poll = (): void => {
      if (read.outcome === 'pending' && world.now < until) {
        world.at(world.now + 20, undefined, poll);
        return;
      }
      if (read.outcome !== 'ok' && read.outcome !== 'notFound') {
        outer.outcome = 'refused';
        return;
      }
      const w = this.write(via, 'register', key, this.nextValue(), { expected: read.found ?? null, revision: read.revision ?? 0 });
      const follow = (): void => {
        if (w.outcome === 'pending') world.at(world.now + 20, undefined, follow);
        else Object.assign(outer, w);
      };
      follow();
    };
    world.at(world.now, undefined, poll);
    return outer;
  }

  /**
   * A client reads `key` through `via`: a `get`, or a `find` by name prefix (the keys are
   * prefix-free); linearizable (recorded in the history) or serializable (checked to be a state
   * that existed).
   */
  read(via: string, key: string, opts: { consistency?: 'linearizable' | 'serializable'; path?: 'get' | 'find'; record?: boolean } = {}): ClientCall {
    const n = this.get(via);
    const call: ClientCall = { outcome: 'pending' };
    const api = n.up ? n.api : undefined;
    if (!api) {
      call.outcome = 'refused';
      return call;
    }
    const consistency = opts.consistency ?? 'linearizable';
    const wire = consistency === 'linearizable' ? 'CONSISTENCY_LINEARIZABLE' : 'CONSISTENCY_SERIALIZABLE';
    const started = this.world.now;
    const ctx = { budgetMs: CLIENT_TIMEOUT_MS };
    const generation = n.generation;
    const p: Promise<{ agent: WireAgent | null; revision: number }> =
      opts.path === 'find'
        ? api.find({ capability: '', kind: '', labels: {}, page_size: 10, page_token: '', consistency: wire, name_prefix: key }, ctx).then((r) => {
            const a = r.agents.find((x) => x.id === key);
            if (!a) throw new ApiError(Code.NOT_FOUND, 'not found');
            return { agent: a, revision: r.revision };
          })
        : api.get({ id: key, consistency: wire }, ctx);
    const done = (found: string | null, agent: WireAgent | null, revision: number): void => {
      if (n.generation !== generation) return;
      call.outcome = found === null ? 'notFound' : 'ok';
      call.found = found;
      call.revision = agent?.mod_revision ?? revision;
      if (consistency === 'linearizable') {
        this.readsAnswered++;
        if (opts.record !== false) this.history.push({ kind: 'get', key, call: started, ret: this.world.now, outcome: 'ok', found, clientId: `r${this.opSeq}` });
      } else if (agent) {
        this.checkSerializable(via, agent);
      }
    };
    p.then(
      (r) => done(r.agent?.version ?? null, r.agent, r.revision),
      (err: unknown) => {
        if (err instanceof ApiError && err.code === Code.NOT_FOUND) {
          done(null, null, 0);
          return;
        }
        if (n.generation !== generation) return;
        const code = err instanceof ApiError ? err.code : Code.UNKNOWN;
        call.outcome = 'failed';
        call.code = code;
        if (code === Code.DEADLINE_EXCEEDED) {
          // A read is answered or failed (UNAVAILABLE, retry) within a few election timeouts;
          // waiting for the client's deadline means a lost ReadIndex round was never failed.
          this.readsTimedOut++;
          this.violation ??= `a ${consistency} read through ${via} waited ${this.world.now - started} ms for its deadline: ${(err as Error).message}`;
        }
        if (code === Code.INTERNAL || code === Code.INVALID_ARGUMENT) this.violation ??= `${via} answered ${codeName(code)} to a read: ${(err as Error).message}`;
      },
    );
    return call;
  }

  /** A serializable read may be stale, but must show a state some node applied: the version written at its revision. */
  private checkSerializable(via: string, agent: WireAgent): void {
    const seen = this.watchEvents.get(`${agent.mod_revision}/${agent.id}`);
    if (seen !== undefined && seen !== `put ${agent.version}`) {
      this.violation ??= `serializable read on ${via} saw ${agent.id}=${agent.version} at revision ${agent.mod_revision}, but that revision wrote ${seen}`;
    }
  }

  /** Registers `key` with a lease of `ttlSeconds` through `via`; not part of the linearizability history. */
  registerLease(via: string, key: string, ttlSeconds: number, value = 'agent'): ClientCall {
    const n = this.get(via);
    const call: ClientCall = { outcome: 'pending' };
    if (!n.up || !n.api) {
      call.outcome = 'refused';
      return call;
    }
    this.log(`client lease ${key} ttl=${ttlSeconds}s via ${via}`);
    n.api.register({ agent: agentOf(key, value), ttl_seconds: ttlSeconds }, { budgetMs: CLIENT_TIMEOUT_MS }).then(
      (r) => {
        call.outcome = 'ok';
        call.revision = r.revision;
      },
      (err: unknown) => {
        call.outcome = 'failed';
        call.code = err instanceof ApiError ? err.code : Code.UNKNOWN;
      },
    );
    return call;
  }

  /** One heartbeat for `key` through `via` (a follower forwards it to the leader). */
  heartbeat(via: string, key: string): ClientCall {
    const n = this.get(via);
    const call: ClientCall = { outcome: 'pending' };
    if (!n.up || !n.api) {
      call.outcome = 'refused';
      return call;
    }
    n.api.heartbeat({ id: key }, { budgetMs: CLIENT_TIMEOUT_MS }).then(
      () => (call.outcome = 'ok'),
      (err: unknown) => {
        call.code = err instanceof ApiError ? err.code : Code.UNKNOWN;
        call.outcome = call.code === Code.NOT_FOUND ? 'notFound' : 'failed';
      },
    );
    return call;
  }

  /**
   * Starts a client that heartbeats `key` every `everyMs` through the nodes of `via` in turn
   * (the first beat at once). With `reregister`, a NOT_FOUND answer makes it register the key
   * again, as an agent does after its lease was lost.
   */
  startHeartbeats(key: string, opts: { everyMs: number; via: readonly string[]; ttlSeconds: number; reregister?: boolean }): Heartbeater {
    this.stopHeartbeats(key);
    const hb: Heartbeater = { key, everyMs: opts.everyMs, via: opts.via, ttlSeconds: opts.ttlSeconds, reregister: opts.reregister ?? false, beats: 0, stopped: false };
    this.heartbeaters.set(key, hb);
    const beat = (): void => {
      if (hb.stopped) return;
      const via = hb.via[hb.beats % hb.via.length] as string;
      hb.beats++;
      const c = this.heartbeat(via, key);
      if (hb.reregister) {
        const check = (): void => {
          if (c.outcome === 'pending') this.world.at(this.world.now + 10, undefined, check);
          else if (c.outcome === 'notFound' && !hb.stopped) this.registerLease(via, key, hb.ttlSeconds);
        };
        check();
      }
      this.world.at(this.world.now + hb.everyMs, undefined, beat);
    };
    beat();
    return hb;
  }

  /** Stops the heartbeats of `key` (the agent died or hung). */
  stopHeartbeats(key: string): void {
    const hb = this.heartbeaters.get(key);
    if (hb) hb.stopped = true;
    this.heartbeaters.delete(key);
  }

  /**
   * An operator asks the leader for a membership change through the API (`AddMember` as a
   * learner or voter, `PromoteMember`, `RemoveMember`). Returns the call (refused when there is
   * no leader).
   */
  changeConfig(type: 'addVoter' | 'addLearner' | 'removeNode', id: string): ClientCall {
    const call: ClientCall = { outcome: 'pending' };
    const l = this.leader();
    const api = l ? this.get(l).api : undefined;
    if (!l || !api) {
      call.outcome = 'refused';
      return call;
    }
    const member = this.get(l).members.find((m) => m.id === id);
    const ctx = { budgetMs: CLIENT_TIMEOUT_MS };
    let p: Promise<unknown>;
    if (type === 'removeNode') p = api.removeMember({ id }, ctx);
    else if (member && !member.voter && type === 'addVoter') p = api.promoteMember({ id }, ctx);
    else p = api.addMember({ id, address: `${id}:${SIM_PORT}`, learner: type === 'addLearner' }, ctx);
    this.log(`operator ${type} ${id} via ${l}`);
    p.then(
      () => (call.outcome = 'ok'),
      (err: unknown) => {
        call.outcome = 'failed';
        call.code = err instanceof ApiError ? err.code : Code.UNKNOWN;
        if (call.code === Code.INTERNAL || call.code === Code.INVALID_ARGUMENT) this.violation ??= `membership change answered ${codeName(call.code)}: ${(err as Error).message}`;
      },
    );
    return call;
  }

  // ---------------------------------------------------------------------------------------
  // Watches: every node incarnation follows the registry from where the last one stopped.

  private startWatch(n: SimNode, generation: number): void {
    const api = n.api;
    if (!api) return;
    const log = n.watch;
    const stream: WatchStream = {
      write: (e: WireWatchEvent) => {
        if (n.generation !== generation) return true;
        this.onWatchEvent(n, e);
        return true;
      },
      onDrain: () => undefined,
      fail: (err) => {
        if (n.generation !== generation) return;
        if (err.code !== Code.UNAVAILABLE) this.violation ??= `watch on ${n.id} failed: ${codeName(err.code)} ${err.message}`;
      },
    };
    api.watch({ start_revision: log.lastRevision + 1 }, stream, { budgetMs: DEFAULT_REQUEST_TIMEOUT_MS }).catch((err: unknown) => {
      if (n.generation !== generation) return;
      this.violation ??= `watch on ${n.id} from ${log.lastRevision + 1} refused: ${String(err)}`;
    });
  }

  private onWatchEvent(n: SimNode, e: WireWatchEvent): void {
    const log = n.watch;
    const id = e.agent?.id ?? '';
    const key = `${e.revision}/${id}`;
    const what = e.type === 'EVENT_TYPE_PUT' ? `put ${e.agent?.version ?? ''}` : `delete${e.expired ? ' expired' : ''}`;
    if (e.revision < log.lastRevision) this.violation ??= `${n.id}'s watch went back from revision ${log.lastRevision} to ${e.revision}`;
    if (log.seen.has(key)) this.violation ??= `${n.id}'s watch delivered ${key} twice`;
    log.seen.set(key, what);
    log.lastRevision = Math.max(log.lastRevision, e.revision);
    const first = this.watchEvents.get(key);
    if (first === undefined) this.watchEvents.set(key, what);
    else if (first !== what) this.violation ??= `watches disagree on ${key}: ${first} vs ${what} on ${n.id}`;
  }

  // ---------------------------------------------------------------------------------------
  // Observations

  private onSyncedHardState(id: NodeId, hs: HardState): void {
    this.checker.onPersistHardState(id, hs);
  }

  private onApplied(id: NodeId, entries: readonly Entry[]): void {
    for (const e of entries) {
      this.checker.onApply(id, e);
      if (e.type === 'config') {
        // The bootstrap entries (one per founding member) are not changes.
        if (e.index > this.bootstrap.length) this.confChangesApplied.add(e.index);
        continue;
      }
      if (e.data.byteLength === 0) continue;
      let cmd;
      try {
        cmd = decodeCommand(e.data);
      } catch {
        continue;
      }
      if (cmd.type !== 'expire') continue;
      for (const l of cmd.leases) {
        this.expiriesApplied.push({ node: id, index: e.index, term: e.term, at: this.world.now, key: l.id, modRevision: l.modRevision, deleted: false });
      }
    }
  }

  /**
   * A node refused a snapshot payload as it arrived. Expected of a payload the network damaged on
   * purpose (counted); any other refusal means a correct leader sent a payload that does not hold
   * the state it names, which is a violation.
   */
  private onSnapshotRefused(id: NodeId, from: NodeId, meta: SnapshotMetadata, reason: string): void {
    const key = `${id}/${meta.index}/${meta.term}`;
    const damaged = this.network.damagedTransfers.get(key) ?? 0;
    if (damaged > 0) {
      this.network.damagedTransfers.set(key, damaged - 1);
      this.snapshotsRefused++;
      return;
    }
    this.violation ??= `${id} refused a snapshot payload from ${from} that the network did not damage: ${reason}`;
  }

  private onSnapshotInstalled(id: NodeId, meta: SnapshotMetadata): void {
    this.snapshotsInstalled++;
    this.checker.onInstallSnapshot(id, meta.index);
    this.log(`${id} installed snapshot ${meta.index}/${meta.term}`);
  }

  /**
   * Every key of `key` whose expire entry deleted it, per node: read from the nodes' watch logs
   * (an expired delete at the expire entry's revision).
   */
  expiriesOf(key: string): { all: ExpiryApplied[]; deleted: ExpiryApplied[] } {
    const all = this.expiriesApplied.filter((x) => x.key === key);
    for (const x of all) {
      const seen = this.get(x.node).watch.seen.get(`${x.index}/${key}`);
      x.deleted = seen === 'delete expired';
    }
    return { all, deleted: all.filter((x) => x.deleted) };
  }

  // ---------------------------------------------------------------------------------------
  // Liveness and the end of a run

  /**
   * Heals every fault, restarts every node and runs until a leader is known to all members and
   * every member has applied every acknowledged write and delivered it to its watch, or the
   * budget runs out (a liveness violation). Then every member must hold the same agents, every
   * watch must have delivered the same events, and a linearizable read of each key through
   * each member goes into the history.
   */
  async checkLiveness(keys: readonly string[] = []): Promise<void> {
    this.heal();
    for (const id of this.ids) this.restart(id);
    const converged = (): boolean => {
      const leaderId = this.leader();
      if (!leaderId) return false;
      const leader = this.get(leaderId);
      const members = this.memberNodes();
      // Everything in the leader's log (its own term's no-op included) is applied everywhere.
      const last = leader.node.core.raft.raftLog.lastIndex();
      return members.every((n) => n.up && n.node.leaderId === leader.id && n.node.appliedIndex >= Math.max(this.lastAcknowledged, last) && n.pending.size === 0);
    };
    if (!(await this.runUntil(converged, LIVENESS_BUDGET_MS))) {
      const state = this.upNodes().map((n) => `${n.id}:${n.node.core.raft.role}/t${n.node.core.raft.currentTerm}/applied ${n.node.appliedIndex}/commit ${n.node.core.raft.raftLog.committed}`).join(' ');
      this.fail(`no stable leader with every acknowledged write applied within ${LIVENESS_BUDGET_MS} ms after healing (${state})`);
    }
    // Quiet for an election timeout (the watches catch up), and converged still.
    await this.run(SIM_ELECTION_MS);
    if (!(await this.runUntil(converged, LIVENESS_BUDGET_MS))) this.fail('the cluster did not stay converged after healing');
    // Caught up and quiet: the leader soon streams to every follower (replicate), none is left
    // probing (a follower whose disk was stalled answers once its write completes).
    const notReplicating = (): string | undefined => {
      const l = this.leader();
      if (!l) return 'no leader';
      const leader = this.get(l);
      for (const [id, pr] of leader.node.core.raft.prs) {
        if (id !== leader.id && this.get(id).up && pr.state !== 'replicate') {
          return `${id} is caught up but the leader keeps it in ${pr.state} (match ${pr.matchIndex}, next ${pr.nextIndex}, probeSent ${pr.probeSent}, leader last ${leader.node.core.raft.raftLog.lastIndex()}, its last ${this.get(id).node.core.raft.raftLog.lastIndex()})`;
        }
      }
      return undefined;
    };
    if (!(await this.runUntil(() => notReplicating() === undefined, LIVENESS_BUDGET_MS))) this.fail(notReplicating() ?? 'lost the leader');
    const members = this.memberNodes();
    const snapshotOf = async (n: SimNode): Promise<string> => {
      const page = await this.await((n.sm as RegistryStateMachine).find({ pageSize: 1000 }));
      return JSON.stringify(page.agents.map((a) => [a.id, a.version, a.modRevision]));
    };
    const first = members[0] as SimNode;
    const want = await snapshotOf(first);
    for (const n of members.slice(1)) {
      if (n.node.appliedIndex !== first.node.appliedIndex) continue;
      const got = await snapshotOf(n);
      if (got !== want) this.fail(`${n.id} and ${first.id} hold different agents at revision ${n.node.appliedIndex}: ${got} vs ${want}`);
    }
    for (const n of members) {
      for (const [k, what] of this.watchEvents) {
        const revision = Number(k.slice(0, k.indexOf('/')));
        if (revision > n.watch.lastRevision) continue;
        if (n.watch.seen.get(k) !== what) this.fail(`${n.id}'s watch missed ${k} (${what}); it delivered up to revision ${n.watch.lastRevision}`);
      }
    }
    const reads = keys.flatMap((key) => members.map((n) => this.read(n.id, key)));
    await this.runUntil(() => reads.every((r) => r.outcome !== 'pending'), CLIENT_TIMEOUT_MS + SIM_ELECTION_MS);
  }

  /** Running nodes that are members of the leader's configuration. */
  private memberNodes(): SimNode[] {
    const m = this.members();
    return this.upNodes().filter((n) => m.has(n.id));
  }

  /** Ends the run: writes still waiting for an answer count as of unknown outcome. */
  finish(): void {
    for (const n of this.nodes.values()) {
      for (const w of n.pending) this.history.push({ ...w.op, outcome: 'unknown' });
      n.pending.clear();
    }
    for (const hb of this.heartbeaters.values()) hb.stopped = true;
  }
}
