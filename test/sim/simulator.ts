/**
 * A deterministic cluster simulator for the Raft core (after etcd-io/raft's `network`, raft-rs'
 * harness and FoundationDB-style simulation): 3 or 5 cores, simulated time, a network that
 * partitions (any way, including one-way links), drops, delays, duplicates and reorders; disks
 * whose writes take time and are lost by a crash; clients that write and read a small key space.
 * Everything comes from one seed, so a run replays event for event.
 *
 * Invariants are checked after every event (see `invariants.ts`); a violation throws
 * {@link SafetyViolation} carrying the trace.
 *
 * Leases (on with {@link SimOptions.leases}; off, a run is event for event what it was without
 * them): clients register keys with a TTL and heartbeat them through any node; every leader
 * keeps a {@link LeaseManager} driven by simulated time and proposes `expire` commands for the
 * leases that lapse, as the registry node does (`src/server/raft-node.ts`).
 */
import {
  EMPTY_SNAPSHOT,
  MemoryStorage,
  NO_NODE,
  term,
  ProposalDroppedError,
  RawNode,
  logIndex,
  nodeId,
  seededRandom,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type NodeId,
  type RaftTestingKnobs,
  type ConfChange,
  type ConfState,
  type Ready,
  type Snapshot,
  type SnapshotMetadata,
  type Term,
} from '../../src/raft/index.js';
import { LeaseManager, MAX_EXPIRE_BATCH } from '../../src/registry/lease-manager.js';
import type { LeaseRecord } from '../../src/registry/lease-types.js';
import type { Operation } from '../support/linearizability.js';
import { describeMessage } from '../support/raft-harness.js';
import { InvariantChecker } from './invariants.js';

/** Time units per Raft tick (a node ticks every TICK_UNITS units). */
export const TICK_UNITS = 10;
/** Election timeout of every simulated node, in ticks. */
export const SIM_ELECTION_TICKS = 10;
/** How long a client waits for a write or read before it counts as timed out, in units. */
export const CLIENT_TIMEOUT_UNITS = 600;
/** Units allowed, after every fault is healed, for a leader to emerge and everything to apply. */
export const LIVENESS_BUDGET_UNITS = 6_000;

/** Deliberate bugs the simulator can switch on to prove that its checks have teeth. */
export interface SimBugs extends RaftTestingKnobs {
  /** The driver persists hard state without `votedFor` (so a restart forgets the vote). */
  readonly forgetVotedFor?: boolean;
}

/** A safety or liveness property failed. */
export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
  trace: string[] = [];
}

/** Snapshot every this many applied entries (small, so compaction and InstallSnapshot happen often). */
export const SIM_SNAPSHOT_EVERY_ENTRIES = 6;
/** Entries kept in the log behind a snapshot, for followers that lag a little. */
export const SIM_SNAPSHOT_TAIL_ENTRIES = 3;

/** The lease of a key in the simulated state machine: its TTL and the write that created it. */
export interface SimLease {
  /** Time to live, in simulated units. */
  readonly ttl: number;
  /** Log index of the `lease` command that wrote the key (the registry's `modRevision`). */
  readonly writeIndex: number;
}

/** The state machine of a simulated node: the key space and the ids of the commands applied. */
interface SmState {
  readonly kv: Map<string, string>;
  readonly ids: Set<string>;
  /** The membership as of the applied index (kept with the data, as the registry does). */
  conf: ConfState;
  /** Keys written with a lease (empty unless a run uses leases). */
  readonly leases: Map<string, SimLease>;
}

function copySm(s: SmState): SmState {
  return { kv: new Map(s.kv), ids: new Set(s.ids), conf: s.conf, leases: new Map(s.leases) };
}

/** A snapshot on a simulated disk: metadata and the state machine as of its index. */
interface SimSnapshot {
  readonly metadata: SnapshotMetadata;
  readonly sm: SmState;
}

/** Durable state of one node: what survives a crash. */
interface Disk {
  hardState: HardState | undefined;
  /** Log entries after the compaction point: `entries[0]` has index `compacted.index + 1`. */
  entries: Entry[];
  compacted: { index: LogIndex; term: Term };
  snapshot: SimSnapshot | undefined;
  /** The snapshot before it (a node keeps two, as `SnapshotStore.prune(2)` does). */
  previousSnapshot: SimSnapshot | undefined;
  /** Applied state machine, durable together with `appliedIndex`. */
  sm: SmState;
  appliedIndex: number;
}

interface PendingWrite {
  readonly op: Operation & { kind: 'register' | 'deregister' };
  readonly term: Term;
  readonly deadline: number;
}

interface PendingRead {
  readonly key: string;
  readonly call: number;
  readonly deadline: number;
  index: LogIndex | undefined;
}

interface SimNode {
  readonly id: NodeId;
  node: RawNode;
  disk: Disk;
  up: boolean;
  /** Volatile state machine (rebuilt from disk on restart). */
  sm: SmState;
  /** A snapshot payload received and staged, waiting for the core to install it. */
  staged: SmState | undefined;
  appliedIndex: number;
  /** A Ready being written: it completes at `doneAt` unless the node crashes first. */
  inflight: { rd: Ready; doneAt: number } | undefined;
  /** Writes this node proposed as leader, by log index. */
  writes: Map<number, PendingWrite>;
  /** Reads waiting for ReadIndex, by context. */
  reads: Map<string, PendingRead>;
  tickOffset: number;
  /** Lease deadlines while this node leads (used only when the run has leases). */
  readonly leases: LeaseManager;
  /** The term whose leadership `leases` was started for (0: not leading). */
  leaseTerm: number;
  /** When this node last took office, in units. */
  leaderSince: number;
  /** Per voter, when it last answered this leader in `ackTerm` (HeartbeatResponse or AppendEntriesResponse), in units. */
  acks: Map<NodeId, number>;
  ackTerm: number;
}

/** Network conditions; rates are probabilities per message, delays in units. */
export interface NetConditions {
  drop: number;
  duplicate: number;
  minDelay: number;
  maxDelay: number;
}

/** One lease an `expire` command removes: the key, and the write that must still hold it. */
export interface SimExpiryItem {
  readonly key: string;
  readonly writeIndex: number;
}

/**
 * A command as the simulated state machine sees it: a plain write, a write with a lease (`ttl`
 * in units), or the leader's `expire` (deletes each key only if it still holds that write).
 */
type SimCommand =
  | { readonly op: 'register' | 'deregister'; readonly key: string; readonly value: string; readonly id: string }
  | { readonly op: 'lease'; readonly key: string; readonly value: string; readonly ttl: number; readonly id: string }
  | { readonly op: 'expire'; readonly items: readonly SimExpiryItem[]; readonly id: string };

const enc = new TextEncoder();
const dec = new TextDecoder();

function encodeCommand(c: SimCommand): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

function decodeCommand(data: Uint8Array): SimCommand | undefined {
  if (data.byteLength === 0) return undefined;
  return JSON.parse(dec.decode(data)) as SimCommand;
}

/** Options of one simulation. */
export interface SimOptions {
  readonly nodes: 3 | 5;
  readonly seed: number;
  readonly bugs?: SimBugs;
  /** Keep a readable trace of every event (costly; on for replays and failure reports). */
  readonly trace?: boolean;
  /** Lease support: leaders keep deadlines and propose expiries. Off when absent. */
  readonly leases?: SimLeaseOptions;
}

/**
 * The lease limits of a simulation, in units (a unit stands for a millisecond of the node).
 * The defaults are the node's choices scaled to the simulator: check every tick, expire only
 * while a majority confirmed the leader within one election timeout, a gap of three checks is a
 * stall.
 */
export interface SimLeaseOptions {
  /** Period of a leader's lease check, in units (default {@link TICK_UNITS}). */
  readonly checkUnits?: number;
  /** Oldest quorum confirmation under which leases still expire, in units (default: one election timeout). */
  readonly maxQuorumAgeUnits?: number;
  /** Most leases one `expire` command names (default {@link MAX_EXPIRE_BATCH}). */
  readonly maxBatch?: number;
}

/** Outcome of one client heartbeat. */
export type HeartbeatOutcome = 'renewed' | 'notFound' | 'unreachable';

/** A client that heartbeats one key every `everyUnits`, through the nodes of `via` in turn. */
export interface Heartbeater {
  readonly key: string;
  readonly everyUnits: number;
  /** Nodes the client talks to, in turn (one per heartbeat). */
  via: readonly string[];
  /** Register the key again (with `ttl`) when a leader answers that it holds no lease. */
  readonly reregister: boolean;
  readonly ttl: number;
  /** Heartbeats sent so far. */
  beats: number;
  readonly startedAt: number;
}

/** A leader's `expire` proposal (what its LeaseManager returned at one check). */
export interface ExpireProposal {
  readonly node: NodeId;
  readonly term: number;
  readonly at: number;
  readonly index: number;
  readonly items: readonly SimExpiryItem[];
  /** `now - quorumConfirmedAt` at the check, in units. */
  readonly quorumAge: number;
}

/** One key of an `expire` command applied on one node. */
export interface ExpiryApplied {
  readonly node: NodeId;
  readonly index: number;
  readonly term: number;
  readonly at: number;
  readonly key: string;
  readonly writeIndex: number;
  /** Whether the key still held that write (and so was deleted). */
  readonly deleted: boolean;
}

/** A simulated cluster. */
export class Simulation {
  readonly ids: NodeId[];
  readonly nodes = new Map<NodeId, SimNode>();
  now = 0;
  readonly history: Operation[] = [];
  /** Writes acknowledged to clients: log index → command id. */
  readonly acknowledged = new Map<number, string>();
  readonly trace: string[] = [];
  readonly checker: InvariantChecker;
  /** How many times a follower installed a snapshot from its leader (coverage of §7). */
  snapshotsInstalled = 0;
  /** Log indexes of the membership changes applied (coverage of §4.1). */
  readonly confChangesApplied = new Set<number>();

  private readonly rand: () => number;
  private readonly bugs: SimBugs;
  private readonly traceOn: boolean;
  private queue = new Map<number, Message[]>();
  /** Snapshot payloads riding with InstallSnapshot messages (the wire's chunked stream). */
  private readonly payloads = new WeakMap<Message, SmState>();
  private readonly blocked = new Set<string>();
  net: NetConditions = { drop: 0, duplicate: 0, minDelay: 1, maxDelay: 5 };
  private opSeq = 0;

  /** Lease limits; undefined when the run has no leases (then no lease code runs at all). */
  private readonly leaseOpts: Required<SimLeaseOptions> | undefined;
  /** Clients heartbeating keys, by key. */
  readonly heartbeaters = new Map<string, Heartbeater>();
  /** Last successful renewal of each key at a leader, in units. */
  readonly lastRenewal = new Map<string, number>();
  /** Every `expire` a leader proposed, in order. */
  readonly expireProposals: ExpireProposal[] = [];
  /** Every key of every `expire` applied, per node, in order. */
  readonly expiriesApplied: ExpiryApplied[] = [];

  constructor(opts: SimOptions) {
    this.rand = seededRandom(opts.seed);
    this.bugs = opts.bugs ?? {};
    this.traceOn = opts.trace ?? false;
    this.leaseOpts = opts.leases
      ? {
          checkUnits: opts.leases.checkUnits ?? TICK_UNITS,
          maxQuorumAgeUnits: opts.leases.maxQuorumAgeUnits ?? SIM_ELECTION_TICKS * TICK_UNITS,
          maxBatch: opts.leases.maxBatch ?? MAX_EXPIRE_BATCH,
        }
      : undefined;
    this.ids = Array.from({ length: opts.nodes }, (_, i) => nodeId(`n${i + 1}`));
    for (const id of this.ids) {
      const disk: Disk = {
        hardState: undefined,
        entries: [],
        compacted: { index: logIndex(0), term: term(0) },
        snapshot: undefined,
        previousSnapshot: undefined,
        sm: { kv: new Map(), ids: new Set(), conf: { voters: this.ids, learners: [] }, leases: new Map() },
        appliedIndex: 0,
      };
      const n: SimNode = {
        id,
        node: this.makeRawNode(id, disk),
        disk,
        up: true,
        sm: { kv: new Map(), ids: new Set(), conf: { voters: this.ids, learners: [] }, leases: new Map() },
        staged: undefined,
        appliedIndex: 0,
        inflight: undefined,
        writes: new Map(),
        reads: new Map(),
        tickOffset: Math.floor(this.rand() * TICK_UNITS),
        leases: new LeaseManager(),
        leaseTerm: 0,
        leaderSince: 0,
        acks: new Map(),
        ackTerm: 0,
      };
      this.nodes.set(id, n);
    }
    this.checker = new InvariantChecker(this);
  }

  private makeRawNode(id: NodeId, disk: Disk): RawNode {
    const snap: Snapshot = disk.snapshot ? { metadata: disk.snapshot.metadata, data: new Uint8Array(0) } : EMPTY_SNAPSHOT;
    const storage = new MemoryStorage(snap, disk.compacted);
    storage.append(disk.entries);
    const { forgetVotedFor: _f, ...knobs } = this.bugs;
    return new RawNode({
      id,
      voters: this.ids,
      confState: disk.sm.conf,
      storage,
      ...(disk.hardState ? { hardState: disk.hardState } : {}),
      applied: logIndex(disk.appliedIndex),
      electionTicks: SIM_ELECTION_TICKS,
      heartbeatTicks: 1,
      random: seededRandom(Math.floor(this.rand() * 2 ** 32)),
      preVote: true,
      checkQuorum: true,
      maxInflightMsgs: 8,
      // One entry per AppendEntries: replication proceeds entry by entry, which makes the
      // interleavings of Figure 8 (an old entry on a majority, the new term's not yet) reachable.
      maxSizePerMsgBytes: 1,
      testingKnobs: knobs,
    });
  }

  private log(line: string): void {
    if (this.traceOn) this.trace.push(`t=${this.now} ${line}`);
  }

  get(id: string): SimNode {
    const n = this.nodes.get(id as NodeId);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Nodes currently up. */
  upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.up);
  }

  // ---------------------------------------------------------------------------------------
  // Faults

  /** Blocks messages from `a` to `b` (one direction). */
  blockLink(a: string, b: string): void {
    this.blocked.add(`${a}>${b}`);
  }

  /** Splits the cluster into `groups`; nodes in different groups cannot talk. */
  partition(groups: string[][]): void {
    this.blocked.clear();
    for (const g of groups) for (const h of groups) if (g !== h) for (const a of g) for (const b of h) this.blockLink(a, b);
    this.log(`partition ${groups.map((g) => `{${g.join(',')}}`).join(' ')}`);
  }

  /** Removes every partition and restores a clean network. */
  heal(): void {
    this.blocked.clear();
    this.net = { drop: 0, duplicate: 0, minDelay: 1, maxDelay: 5 };
    this.log('heal');
  }

  /** Stops a node: its in-flight write and volatile state are lost. */
  crash(id: string): void {
    const n = this.get(id);
    if (!n.up) return;
    n.up = false;
    n.inflight = undefined;
    for (const w of n.writes.values()) this.recordWrite(w.op, 'unknown');
    n.writes.clear();
    n.reads.clear();
    n.leases.stepDown();
    n.leaseTerm = 0;
    this.checker.onCrash(n.id);
    this.log(`crash ${id}`);
  }

  /** Restarts a node from its disk. */
  restart(id: string): void {
    const n = this.get(id);
    if (n.up) return;
    n.node = this.makeRawNode(n.id, n.disk);
    n.sm = copySm(n.disk.sm);
    n.appliedIndex = n.disk.appliedIndex;
    n.staged = undefined;
    n.up = true;
    this.checker.onRestart(n.id);
    this.log(`restart ${id}`);
  }

  // ---------------------------------------------------------------------------------------
  // Clients

  /**
   * A client writes through node `via`: a follower hands it to the leader it knows (a forwarded
   * request; lost if that node is down or not the leader). Returns false when no leader took it.
   */
  write(via: string, op: 'register' | 'deregister', key: string, value = ''): boolean {
    const call = this.now;
    let n = this.get(via);
    if (!n.up) return false;
    const raft = n.node.raft;
    if (raft.role !== 'leader') {
      const lead = raft.leaderId;
      if (lead === NO_NODE || this.blocked.has(`${via}>${lead}`)) return false;
      n = this.get(lead);
      if (!n.up) return false;
    }
    const id = `c${++this.opSeq}`;
    const cmd: SimCommand = { op, key, value, id };
    let r: { firstIndex: LogIndex; term: Term };
    try {
      r = n.node.propose([encodeCommand(cmd)]);
    } catch (e) {
      if (e instanceof ProposalDroppedError) return false;
      throw e;
    }
    const base = { key, call, ret: Number.POSITIVE_INFINITY, clientId: id };
    const pending: PendingWrite = {
      op: op === 'register' ? { kind: 'register', value, outcome: 'ok', ...base } : { kind: 'deregister', outcome: 'ok', ...base },
      term: r.term,
      deadline: call + CLIENT_TIMEOUT_UNITS,
    };
    n.writes.set(r.firstIndex, pending);
    this.log(`client ${id} ${op} ${key}=${value} via ${via} -> ${n.id} at ${r.firstIndex}/${r.term}`);
    return true;
  }

  /**
   * An operator asks the current leader for a membership change. Returns false when it was
   * refused (no leader, a change still pending, no entry of the leader's term committed yet) or
   * would remove the last voter.
   */
  changeConfig(type: ConfChange['type'], id: string): boolean {
    const l = this.leader();
    if (!l) return false;
    const n = this.get(l);
    const conf = n.node.raft.confState();
    if (type === 'removeNode' && conf.voters.length === 1 && conf.voters[0] === id) return false;
    const cc: ConfChange = { type, nodeId: id as NodeId };
    try {
      const r = n.node.proposeConfChange(enc.encode(JSON.stringify(cc)));
      this.log(`config ${type} ${id} proposed at ${r.index}/${r.term} on ${l}`);
      return true;
    } catch (e) {
      if (e instanceof ProposalDroppedError) return false;
      throw e;
    }
  }

  /** Members (voters and learners) in the configuration of the leader, if any. */
  members(): Set<string> {
    const l = this.leader();
    if (!l) return new Set(this.ids);
    const c = this.get(l).node.raft.confState();
    return new Set([...c.voters, ...c.learners]);
  }

  /** A client reads `key` linearizably through node `via` (ReadIndex, thesis §6.4). */
  read(via: string, key: string): void {
    const n = this.get(via);
    if (!n.up) return;
    const ctx = `r${++this.opSeq}`;
    n.reads.set(ctx, { key, call: this.now, deadline: this.now + CLIENT_TIMEOUT_UNITS, index: undefined });
    n.node.readIndex(enc.encode(ctx));
    this.log(`client ${ctx} get ${key} via ${via}`);
  }

  private recordWrite(op: PendingWrite['op'], outcome: 'ok' | 'unknown', deleted?: boolean): void {
    if (outcome === 'ok') {
      if (op.kind === 'deregister') this.history.push({ ...op, ret: this.now, outcome, deleted: deleted ?? false });
      else this.history.push({ ...op, ret: this.now, outcome });
    } else {
      this.history.push({ ...op, outcome: 'unknown' });
    }
  }

  // ---------------------------------------------------------------------------------------
  // Time

  /** Advances simulated time by `units`, one unit at a time, checking invariants after each. */
  run(units: number): void {
    for (let i = 0; i < units; i++) this.step();
  }

  /** One unit of time: ticks, deliveries, disk completions, Ready processing, timeouts. */
  step(): void {
    this.now++;
    for (const n of this.nodes.values()) {
      if (!n.up) continue;
      if ((this.now + n.tickOffset) % TICK_UNITS === 0) n.node.tick();
    }
    const due = this.queue.get(this.now);
    if (due) {
      this.queue.delete(this.now);
      for (const m of due) this.deliver(m);
    }
    for (const n of this.nodes.values()) {
      if (!n.up) continue;
      if (n.inflight && n.inflight.doneAt <= this.now) this.completeReady(n);
      if (!n.inflight && n.node.hasReady()) {
        const rd = n.node.ready();
        // A disk write takes 0-2 units; a crash before then loses it.
        n.inflight = { rd, doneAt: this.now + Math.floor(this.rand() * 3) };
        if (n.inflight.doneAt <= this.now) this.completeReady(n);
      }
      this.expireClients(n);
    }
    if (this.leaseOpts) this.stepLeases(this.leaseOpts);
    this.checker.check();
  }

  private deliver(m: Message): void {
    const to = this.nodes.get(m.to);
    const ok = to?.up === true && !this.blocked.has(`${m.from}>${m.to}`); // a partition also cuts what is on the wire
    if (m.type === 'InstallSnapshot') {
      // The snapshot stream ends here: the sender learns whether it arrived (etcd ReportSnapshot).
      const from = this.nodes.get(m.from);
      if (from?.up) from.node.reportSnapshot(m.to, ok);
      if (ok) (to as SimNode).staged = this.payloads.get(m);
    }
    if (!ok) return;
    this.log(describeMessage(m));
    if (this.leaseOpts && (m.type === 'HeartbeatResponse' || m.type === 'AppendEntriesResponse')) this.recordAck(to as SimNode, m);
    (to as SimNode).node.step(m);
  }

  private send(m: Message): void {
    if (m.type === 'InstallSnapshot') {
      // The message may name a snapshot older than the newest (it was made before a newer one);
      // the driver streams it if it still holds it, else tells the core the send failed.
      const from = this.get(m.from);
      const snap = [from.disk.snapshot, from.disk.previousSnapshot].find((x) => x?.metadata.index === m.snapshot.metadata.index);
      if (!snap) {
        from.node.reportSnapshot(m.to, false);
        return;
      }
      this.payloads.set(m, copySm(snap.sm));
    }
    const lost = this.blocked.has(`${m.from}>${m.to}`) || this.rand() < this.net.drop;
    if (lost) {
      if (m.type === 'InstallSnapshot') this.get(m.from).node.reportSnapshot(m.to, false);
      return;
    }
    const copies = this.rand() < this.net.duplicate ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const span = this.net.maxDelay - this.net.minDelay + 1;
      const at = this.now + this.net.minDelay + Math.floor(this.rand() * span);
      const bucket = this.queue.get(at);
      if (bucket) bucket.push(m);
      else this.queue.set(at, [m]);
    }
  }

  /** The Ready contract: persist, then send, then apply, then advance. */
  private completeReady(n: SimNode): void {
    const rd = (n.inflight as { rd: Ready }).rd;
    n.inflight = undefined;
    if (rd.hardState) {
      const hs = rd.hardState;
      n.disk.hardState = this.bugs.forgetVotedFor ? { ...hs, votedFor: NO_NODE } : hs;
      this.checker.onPersistHardState(n.id, hs);
    }
    if (rd.snapshot) {
      // §7: install the staged payload atomically with the log reset.
      const meta = rd.snapshot.metadata;
      if (!n.staged || n.staged === undefined) throw new SafetyViolation(`${n.id} was told to install snapshot ${meta.index} it never received`);
      n.disk.previousSnapshot = n.disk.snapshot;
      n.disk.snapshot = { metadata: meta, sm: copySm(n.staged) };
      n.disk.entries = [];
      n.disk.compacted = { index: meta.index, term: meta.term };
      n.sm = copySm(n.staged);
      n.appliedIndex = meta.index;
      n.staged = undefined;
      this.checker.onInstallSnapshot(n.id, meta.index);
      this.snapshotsInstalled++;
      this.log(`${n.id} installed snapshot ${meta.index}/${meta.term}`);
    }
    if (rd.entries.length > 0) {
      const first = (rd.entries[0] as Entry).index;
      n.disk.entries = n.disk.entries.slice(0, first - n.disk.compacted.index - 1).concat(rd.entries);
    }
    for (const m of rd.messages) this.send(m);
    for (const e of rd.committedEntries) this.apply(n, e);
    n.disk.sm = copySm(n.sm);
    n.disk.appliedIndex = n.appliedIndex;
    for (const rs of rd.readStates) {
      const ctx = dec.decode(rs.context);
      const r = n.reads.get(ctx);
      if (!r) continue;
      if (!rs.ok) n.reads.delete(ctx);
      else r.index = rs.index;
    }
    n.node.advance();
    this.serveReads(n);
    this.maybeSnapshot(n);
  }

  /**
   * Every SIM_SNAPSHOT_EVERY_ENTRIES applied entries: snapshot the state machine and compact the
   * log, keeping a tail, and never past a snapshot a follower is still receiving (so a slow
   * transfer can always continue from the log afterwards).
   */
  private maybeSnapshot(n: SimNode): void {
    const last = n.disk.snapshot?.metadata.index ?? 0;
    if (n.appliedIndex - last < SIM_SNAPSHOT_EVERY_ENTRIES) return;
    const raft = n.node.raft;
    const index = logIndex(n.appliedIndex);
    const t = raft.raftLog.term(index);
    if (t === undefined) return;
    const metadata: SnapshotMetadata = { index, term: t, confState: raft.confState() };
    n.disk.previousSnapshot = n.disk.snapshot;
    n.disk.snapshot = { metadata, sm: copySm(n.sm) };
    n.node.setSnapshot(metadata);
    let through = index - SIM_SNAPSHOT_TAIL_ENTRIES;
    for (const pr of raft.prs.values()) if (pr.state === 'snapshot') through = Math.min(through, pr.pendingSnapshot);
    if (through <= n.disk.compacted.index) return;
    const ct = n.node.compact(logIndex(through));
    n.disk.entries = n.disk.entries.slice(through - n.disk.compacted.index);
    n.disk.compacted = { index: logIndex(through), term: ct };
  }

  private apply(n: SimNode, e: Entry): void {
    if (e.index !== n.appliedIndex + 1) {
      const v = new SafetyViolation(`${n.id} applied ${e.index} after ${n.appliedIndex}: a gap or a repeat`);
      throw v;
    }
    n.appliedIndex = e.index;
    this.checker.onApply(n.id, e);
    if (e.type === 'config') {
      // Membership changes take effect when applied (etcd's approach), one at a time.
      n.sm.conf = n.node.applyConfChange(JSON.parse(dec.decode(e.data)) as ConfChange);
      this.confChangesApplied.add(e.index);
      this.log(`${n.id} applied config ${dec.decode(e.data)} -> voters ${n.sm.conf.voters.join(',')} learners ${n.sm.conf.learners.join(',')}`);
      return;
    }
    const cmd = decodeCommand(e.data);
    let deleted = false;
    if (cmd) {
      switch (cmd.op) {
        case 'register':
          n.sm.kv.set(cmd.key, cmd.value);
          if (n.sm.leases.delete(cmd.key)) n.leases.remove(cmd.key);
          break;
        case 'deregister':
          deleted = n.sm.kv.delete(cmd.key);
          if (n.sm.leases.delete(cmd.key)) n.leases.remove(cmd.key);
          break;
        case 'lease':
          n.sm.kv.set(cmd.key, cmd.value);
          n.sm.leases.set(cmd.key, { ttl: cmd.ttl, writeIndex: e.index });
          n.leases.upsert({ id: cmd.key, ttlMs: cmd.ttl, modRevision: e.index }, this.now);
          break;
        case 'expire':
          this.applyExpire(n, e, cmd.items);
          break;
      }
      n.sm.ids.add(cmd.id);
    }
    const w = n.writes.get(e.index);
    if (w) {
      n.writes.delete(e.index);
      if (e.term === w.term) {
        this.recordWrite(w.op, 'ok', deleted);
        this.acknowledged.set(e.index, w.op.clientId as string);
      }
      // A different term: the proposal was overwritten and never committed; the client is told
      // to retry, so the operation is not part of the history.
    }
  }

  private serveReads(n: SimNode): void {
    for (const [ctx, r] of n.reads) {
      if (r.index === undefined || n.appliedIndex < r.index) continue;
      n.reads.delete(ctx);
      this.history.push({ kind: 'get', key: r.key, call: r.call, ret: this.now, outcome: 'ok', found: n.sm.kv.get(r.key) ?? null, clientId: ctx });
    }
  }

  private expireClients(n: SimNode): void {
    for (const [idx, w] of n.writes) {
      if (w.deadline > this.now) continue;
      n.writes.delete(idx);
      this.recordWrite(w.op, 'unknown');
    }
    for (const [ctx, r] of n.reads) if (r.deadline <= this.now) n.reads.delete(ctx);
  }

  /** The up node that is leader with the highest term, if any. */
  leader(): NodeId | undefined {
    let best: SimNode | undefined;
    for (const n of this.upNodes()) {
      if (n.node.raft.role !== 'leader') continue;
      if (!best || n.node.raft.currentTerm > best.node.raft.currentTerm) best = n;
    }
    return best?.id;
  }

  /** Runs until a leader with a term newer than the current highest one appears (bounded). */
  awaitLeader(maxUnits = 1_000): void {
    let top = 0;
    for (const n of this.upNodes()) top = Math.max(top, n.node.raft.currentTerm);
    for (let i = 0; i < maxUnits; i++) {
      this.step();
      const l = this.leader();
      if (l && this.get(l).node.raft.currentTerm > top) return;
    }
  }

  /** Ends the run: writes still waiting for an answer count as timed out (outcome unknown). */
  finish(): void {
    for (const n of this.nodes.values()) {
      for (const w of n.writes.values()) this.recordWrite(w.op, 'unknown');
      n.writes.clear();
      n.reads.clear();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Leases (only when the run has them)

  /**
   * A client registers `key` with a lease of `ttl` units through node `via` (forwarded to the
   * leader as {@link write} does). Not part of the linearizability history. Returns false when no
   * leader took it.
   */
  registerLease(via: string, key: string, ttl: number, value = 'agent'): boolean {
    const n = this.leaderVia(via);
    if (!n) return false;
    const id = `c${++this.opSeq}`;
    try {
      const r = n.node.propose([encodeCommand({ op: 'lease', key, value, ttl, id })]);
      this.log(`client ${id} lease ${key} ttl=${ttl} via ${via} -> ${n.id} at ${r.firstIndex}/${r.term}`);
      return true;
    } catch (e) {
      if (e instanceof ProposalDroppedError) return false;
      throw e;
    }
  }

  /**
   * A client heartbeat for `key` through node `via`: a follower forwards it to the leader it
   * knows, unless the link is cut (as {@link write} does); the leader renews the lease. Not a log
   * entry: renewals are the leader's alone (etcd's LeaseKeepAlive).
   */
  heartbeat(via: string, key: string): HeartbeatOutcome {
    const n = this.leaderVia(via);
    if (!n || n.node.raft.role !== 'leader') return 'unreachable';
    const ttl = n.leases.renew(key, this.now);
    if (ttl === undefined) return 'notFound';
    this.lastRenewal.set(key, this.now);
    return 'renewed';
  }

  /**
   * Starts a client that heartbeats `key` every `everyUnits` through the nodes of `via` in turn
   * (the first beat at once). With `reregister`, a NOT_FOUND answer makes it register the key
   * again with `ttl`, as an agent does after its lease was lost.
   */
  startHeartbeats(key: string, opts: { everyUnits: number; via: readonly string[]; ttl: number; reregister?: boolean }): Heartbeater {
    const hb: Heartbeater = { key, everyUnits: opts.everyUnits, via: opts.via, ttl: opts.ttl, reregister: opts.reregister ?? false, beats: 0, startedAt: this.now };
    this.heartbeaters.set(key, hb);
    this.beat(hb);
    return hb;
  }

  /** Stops the heartbeats of `key` (the agent died or hung). */
  stopHeartbeats(key: string): void {
    this.heartbeaters.delete(key);
  }

  /**
   * When a majority of voters last acknowledged node `id` as leader, in units: the quorum-th most
   * recent answer (HeartbeatResponse or AppendEntriesResponse of its term, counted when it is
   * delivered), this node counting as now, and the votes that made it leader counting as an
   * answer at the time it took office. The same derivation as the node's `quorumConfirmedAt`.
   */
  quorumConfirmedAt(id: string): number {
    const n = this.get(id);
    const raft = n.node.raft;
    if (!n.up || raft.role !== 'leader') return Number.NEGATIVE_INFINITY;
    const voters = [...raft.voters()];
    const acks = n.ackTerm === raft.currentTerm ? n.acks : new Map<NodeId, number>();
    const times = voters.map((v) => (v === n.id ? this.now : Math.max(acks.get(v) ?? Number.NEGATIVE_INFINITY, n.leaderSince)));
    times.sort((a, b) => b - a);
    return times[Math.floor(voters.length / 2)] ?? Number.NEGATIVE_INFINITY;
  }

  /** The up node that would take a client request sent to `via`: `via` itself if leader, else the leader it knows. */
  private leaderVia(via: string): SimNode | undefined {
    const n = this.get(via);
    if (!n.up) return undefined;
    if (n.node.raft.role === 'leader') return n;
    const lead = n.node.raft.leaderId;
    if (lead === NO_NODE || this.blocked.has(`${via}>${lead}`)) return undefined;
    const l = this.get(lead);
    return l.up ? l : undefined;
  }

  private recordAck(to: SimNode, m: Message): void {
    const raft = to.node.raft;
    if (raft.role !== 'leader' || m.term !== raft.currentTerm) return;
    if (to.ackTerm !== raft.currentTerm) {
      to.acks = new Map();
      to.ackTerm = raft.currentTerm;
    }
    to.acks.set(m.from, this.now);
  }

  /** Per unit: leadership changes start or stop lease managers, clients heartbeat, leaders check. */
  private stepLeases(opts: Required<SimLeaseOptions>): void {
    for (const n of this.nodes.values()) {
      const raft = n.node.raft;
      const leading = n.up && raft.role === 'leader';
      if (leading && n.leaseTerm !== raft.currentTerm) {
        // A new leader gives every lease a fresh full TTL (etcd issue 2660), from its applied state.
        n.leaderSince = this.now;
        n.leaseTerm = raft.currentTerm;
        const records: LeaseRecord[] = [...n.sm.leases].map(([key, l]) => ({ id: key, ttlMs: l.ttl, modRevision: l.writeIndex }));
        n.leases.becomeLeader(this.now, records);
        this.log(`${n.id} leases: took office with ${records.length}`);
      } else if (!leading && n.leaseTerm !== 0) {
        n.leases.stepDown();
        n.leaseTerm = 0;
        this.log(`${n.id} leases: stepped down`);
      }
    }
    for (const hb of this.heartbeaters.values()) {
      if ((this.now - hb.startedAt) % hb.everyUnits === 0 && this.now !== hb.startedAt) this.beat(hb);
    }
    for (const n of this.nodes.values()) {
      if (n.leaseTerm === 0 || (this.now + n.tickOffset) % opts.checkUnits !== 0) continue;
      this.checkLeases(n, opts);
    }
  }

  private beat(hb: Heartbeater): void {
    if (hb.via.length === 0) return;
    const via = hb.via[hb.beats % hb.via.length] as string;
    hb.beats++;
    const r = this.heartbeat(via, hb.key);
    if (r === 'notFound' && hb.reregister) this.registerLease(via, hb.key, hb.ttl);
  }

  /** A leader's periodic check: what its LeaseManager returns is proposed as one `expire`. */
  private checkLeases(n: SimNode, opts: Required<SimLeaseOptions>): void {
    const confirmed = this.quorumConfirmedAt(n.id);
    const lapsed = n.leases.expired(this.now, confirmed, {
      maxQuorumAgeMs: opts.maxQuorumAgeUnits,
      maxTickGapMs: 3 * opts.checkUnits,
      maxBatch: opts.maxBatch,
    });
    if (lapsed.length === 0) return;
    const items = lapsed.map((l) => ({ key: l.id, writeIndex: l.modRevision }));
    const id = `x${++this.opSeq}`;
    try {
      const r = n.node.propose([encodeCommand({ op: 'expire', items, id })]);
      this.expireProposals.push({ node: n.id, term: r.term, at: this.now, index: r.firstIndex, items, quorumAge: this.now - confirmed });
      this.log(`${n.id} proposes expire ${items.map((i) => `${i.key}@${i.writeIndex}`).join(',')} at ${r.firstIndex}/${r.term}`);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      n.leases.retryPending();
    }
  }

  private applyExpire(n: SimNode, e: Entry, items: readonly SimExpiryItem[]): void {
    for (const it of items) {
      const l = n.sm.leases.get(it.key);
      const deleted = l !== undefined && l.writeIndex === it.writeIndex;
      if (deleted) {
        n.sm.leases.delete(it.key);
        n.sm.kv.delete(it.key);
        n.leases.remove(it.key);
      }
      this.expiriesApplied.push({ node: n.id, index: e.index, term: e.term, at: this.now, key: it.key, writeIndex: it.writeIndex, deleted });
      this.log(`${n.id} applied expire ${it.key}@${it.writeIndex} at ${e.index}${deleted ? '' : ' (a newer write holds it: kept)'}`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Liveness

  /**
   * Heals every fault, restarts every node and runs until a leader is known to all and every
   * node has applied every acknowledged write, or the budget runs out (a liveness violation).
   */
  checkLiveness(): void {
    this.heal();
    for (const id of this.ids) this.restart(id);
    const deadline = this.now + LIVENESS_BUDGET_UNITS;
    while (this.now < deadline) {
      this.run(TICK_UNITS);
      let lastAck = 0;
      for (const i of this.acknowledged.keys()) lastAck = Math.max(lastAck, i);
      const leaderId = this.leader();
      if (!leaderId) continue;
      const leader = this.get(leaderId);
      // Removed nodes are out of the cluster: only members must converge.
      const members = this.upNodes().filter((n) => this.members().has(n.id));
      const agreed = members.every((n) => n.node.raft.leaderId === leader.id && n.appliedIndex >= lastAck);
      if (agreed) {
        for (const n of members) {
          for (const [index, id] of this.acknowledged) {
            if (!n.sm.ids.has(id)) throw new SafetyViolation(`${n.id} lacks acknowledged write ${id} at ${index}`);
          }
        }
        return;
      }
    }
    throw new SafetyViolation(`no stable leader with every acknowledged write applied within ${LIVENESS_BUDGET_UNITS} units after healing`);
  }
}
