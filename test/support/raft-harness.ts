/**
 * A deterministic in-memory cluster of Raft cores for tests (after etcd-io/raft's `network`
 * test helper): simulated disks, a message queue that delivers until quiet, and faults —
 * isolate, cut, drop by predicate, crash and restart. No timers, no real time: time is `tick`.
 *
 * Each node follows the Ready contract exactly: persist (hard state + entries) → send → apply
 * → advance. A crash loses everything not persisted; `restart` rebuilds the core from its disk.
 */
import {
  MemoryStorage,
  RawNode,
  seededRandom,
  logIndex,
  nodeId,
  type ConfChange,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type RaftTestingKnobs,
  type ReadState,
} from '../../src/raft/index.js';

/** What survives a crash. */
export interface Disk {
  hardState: HardState | undefined;
  entries: Entry[];
  /** Entries applied by the state machine, in order (the state machine is durable with them). */
  applied: Entry[];
}

export interface HarnessNode {
  readonly id: NodeId;
  node: RawNode;
  disk: Disk;
  up: boolean;
  readStates: ReadState[];
}

export interface HarnessOptions {
  readonly seed?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  readonly knobs?: RaftTestingKnobs;
}

/** A one-line rendering of a message, for traces (DESIGN convention 15). */
export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'AppendEntries':
      return `${head} prev=${m.prevLogIndex}/${m.prevLogTerm} entries=${m.entries.length} commit=${m.leaderCommit}`;
    case 'AppendEntriesResponse':
      return `${head} ${m.success ? 'ok' : 'reject'} match=${m.matchIndex}${m.success ? '' : ` hint=${m.conflictIndex}/${m.conflictTerm}`}`;
    case 'RequestVote':
      return `${head}${m.preVote ? ' pre' : ''} last=${m.lastLogIndex}/${m.lastLogTerm}`;
    case 'RequestVoteResponse':
      return `${head}${m.preVote ? ' pre' : ''} ${m.voteGranted ? 'granted' : 'rejected'}`;
    case 'Heartbeat':
      return `${head} commit=${m.leaderCommit}`;
    case 'InstallSnapshot':
      return `${head} snap=${m.snapshot.metadata.index}/${m.snapshot.metadata.term}`;
    case 'ReadIndexResponse':
      return `${head} index=${m.index} ${m.success ? 'ok' : 'failed'}`;
    default:
      return head;
  }
}

/** A cluster of cores joined by a perfect, controllable network. */
export class Cluster {
  readonly nodes = new Map<NodeId, HarnessNode>();
  readonly ids: NodeId[];
  queue: Message[] = [];
  /** Return true to drop a message. */
  dropIf: (m: Message) => boolean = () => false;
  readonly trace: string[] = [];
  private readonly opts: HarnessOptions;
  private readonly rand: () => number;
  private readonly cuts = new Set<string>();

  constructor(count: number, opts: HarnessOptions = {}) {
    this.opts = opts;
    this.rand = seededRandom(opts.seed ?? 1);
    this.ids = Array.from({ length: count }, (_, i) => nodeId(`n${i + 1}`));
    for (const id of this.ids) {
      const disk: Disk = { hardState: undefined, entries: [], applied: [] };
      this.nodes.set(id, { id, node: this.makeNode(id, disk), disk, up: true, readStates: [] });
    }
  }

  private makeNode(id: NodeId, disk: Disk): RawNode {
    const storage = new MemoryStorage();
    storage.append(disk.entries);
    const seed = Math.floor(this.rand() * 2 ** 32);
    return new RawNode({
      id,
      voters: this.ids,
      storage,
      ...(disk.hardState ? { hardState: disk.hardState } : {}),
      applied: logIndex(disk.applied.length),
      electionTicks: this.opts.electionTicks ?? 10,
      heartbeatTicks: this.opts.heartbeatTicks ?? 1,
      random: seededRandom(seed),
      preVote: this.opts.preVote ?? true,
      checkQuorum: this.opts.checkQuorum ?? true,
      ...(this.opts.knobs ? { testingKnobs: this.opts.knobs } : {}),
    });
  }

  get(id: string): HarnessNode {
    const n = this.nodes.get(nodeId(id));
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Runs every up node's Ready loop until none has work (persist, send, apply, advance). */
  flushReady(): void {
    for (let progress = true; progress; ) {
      progress = false;
      for (const n of this.nodes.values()) {
        if (!n.up || !n.node.hasReady()) continue;
        progress = true;
        const rd = n.node.ready();
        if (rd.hardState) n.disk.hardState = rd.hardState;
        if (rd.entries.length > 0) {
          const first = (rd.entries[0] as Entry).index;
          n.disk.entries = n.disk.entries.slice(0, first - 1).concat(rd.entries);
        }
        for (const m of rd.messages) this.queue.push(m);
        for (const e of rd.committedEntries) {
          n.disk.applied.push(e);
          if (e.type === 'config') n.node.applyConfChange(JSON.parse(new TextDecoder().decode(e.data)) as ConfChange);
        }
        n.readStates.push(...rd.readStates);
        n.node.advance();
      }
    }
  }

  private blocked(m: Message): boolean {
    const a = this.nodes.get(m.from);
    const b = this.nodes.get(m.to);
    if (!a?.up || !b?.up) return true;
    if (this.cuts.has(`${m.from}|${m.to}`)) return true;
    return this.dropIf(m);
  }

  /** Delivers messages until the network is quiet (bounded, to catch livelock). */
  deliver(maxMessages = 100_000): void {
    this.flushReady();
    let n = 0;
    while (this.queue.length > 0) {
      if (++n > maxMessages) throw new Error('network did not quiesce');
      const m = this.queue.shift() as Message;
      if (this.blocked(m)) {
        this.trace.push(`drop ${describeMessage(m)}`);
        continue;
      }
      this.trace.push(describeMessage(m));
      this.get(m.to).node.step(m);
      this.flushReady();
    }
  }

  /** Ticks `id` (or every up node) `times` times, delivering after each tick. */
  tick(times = 1, id?: string): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) {
        if (!n.up || (id !== undefined && n.id !== id)) continue;
        n.node.tick();
      }
      this.deliver();
    }
  }

  /** Makes `id` campaign now and delivers. */
  campaign(id: string): void {
    this.get(id).node.campaign();
    this.deliver();
  }

  /** Proposes a membership change on `id` and delivers. */
  changeConfig(id: string, cc: ConfChange): void {
    this.get(id).node.proposeConfChange(new TextEncoder().encode(JSON.stringify(cc)));
    this.deliver();
  }

  /** Proposes on `id` and delivers. */
  propose(id: string, data: string): void {
    this.get(id).node.propose([new TextEncoder().encode(data)]);
    this.deliver();
  }

  /** Cuts both directions between a and b. */
  cut(a: string, b: string): void {
    this.cuts.add(`${a}|${b}`);
    this.cuts.add(`${b}|${a}`);
  }

  /** Cuts `id` from every other node. */
  isolate(id: string): void {
    for (const other of this.ids) if (other !== id) this.cut(id, other);
  }

  /** Removes every cut and drop rule. */
  heal(): void {
    this.cuts.clear();
    this.dropIf = () => false;
  }

  /** Stops `id`: its queued messages and unpersisted state are lost. */
  crash(id: string): void {
    const n = this.get(id);
    n.up = false;
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
  }

  /** Restarts `id` from its disk. */
  restart(id: string): void {
    const n = this.get(id);
    n.node = this.makeNode(n.id, n.disk);
    n.up = true;
    this.flushReady();
  }

  /** The leader among up nodes with the highest term, if any. */
  leader(): HarnessNode | undefined {
    let best: HarnessNode | undefined;
    for (const n of this.nodes.values()) {
      if (!n.up || n.node.raft.role !== 'leader') continue;
      if (!best || n.node.raft.currentTerm > best.node.raft.currentTerm) best = n;
    }
    return best;
  }

  /** The applied commands of `id`, decoded as text (no-ops skipped). */
  appliedData(id: string): string[] {
    return this.get(id)
      .disk.applied.filter((e) => e.type === 'normal' && e.data.byteLength > 0)
      .map((e) => new TextDecoder().decode(e.data));
  }
}
