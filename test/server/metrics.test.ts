/**
 * The node's Prometheus metrics, read the way Prometheus reads them: the text exposition of the
 * node's own registry, parsed here. Real objects where they are cheap (a single-node RaftNode on
 * memory stores, the registry state machine, the watch hub, the lease manager), fakes for the
 * Raft status and the transport counters where a real cluster would be needed to move them.
 */
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { logIndex, nodeId, term, type Entry, type NodeId, type RaftStatus, type SoftState } from '../../src/raft/index.js';
import { MAX_COUNTED_AGENT_KINDS, OTHER_KINDS_LABEL } from '../../src/registry/agent-counts.js';
import { encodeCommand } from '../../src/registry/commands.js';
import { LeaseManager } from '../../src/registry/lease-manager.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { AgentSpec, Command, Health } from '../../src/registry/types.js';
import { NodeMetrics, type RaftMetricsSource } from '../../src/server/metrics.js';
import { combineObservers, type RaftNodeObserver } from '../../src/server/ports.js';
import { RaftNode } from '../../src/server/raft-node.js';
import { WatchHub, type WatchSink } from '../../src/server/watch-hub.js';
import { loneNodeOptions } from './lone-node.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { NodeStore } from '../../src/storage/types.js';
import type { PeerStats, TransportStats } from '../../src/transport/types.js';

// ---------------------------------------------------------------------------------------------
// A small parser of the Prometheus text format (version 0.0.4).

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Every sample line of `text` (comments skipped); throws on a line that is not a sample. */
function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, '$1');
    const raw = m[3] as string;
    out.push({ name: m[1] as string, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return out;
}

/** The scraped samples of `metrics`, with a lookup by name and labels. */
async function scrape(metrics: NodeMetrics): Promise<{ samples: Sample[]; value(name: string, labels?: Record<string, string>): number | undefined; all(name: string): Sample[] }> {
  const text = await metrics.registry.metrics();
  const samples = parseExposition(text);
  const matches = (s: Sample, name: string, labels: Record<string, string>) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length;
  return {
    samples,
    value: (name, labels = {}) => samples.find((s) => matches(s, name, labels))?.value,
    all: (name) => samples.filter((s) => s.name === name),
  };
}

// ---------------------------------------------------------------------------------------------
// Fakes and helpers.

/** A Raft status with the given fields, the rest zero. */
function status(over: Partial<Pick<RaftStatus, 'currentTerm' | 'commitIndex' | 'leaderId' | 'role' | 'lastIndex' | 'snapshotIndex'>>): RaftStatus {
  return {
    id: nodeId('n1'),
    currentTerm: term(0),
    votedFor: nodeId(''),
    commitIndex: logIndex(0),
    lastApplied: logIndex(0),
    lastIndex: logIndex(0),
    firstIndex: logIndex(1),
    snapshotIndex: logIndex(0),
    leaderId: nodeId(''),
    role: 'follower',
    leadTransferee: nodeId(''),
    progress: new Map(),
    ...over,
  } as RaftStatus;
}

/** A Raft driver whose status the test sets, emitting `'role'` like RaftNode does. */
class FakeRaft extends EventEmitter implements RaftMetricsSource {
  st = status({});
  appliedIndex = 0;
  pendingProposals = 0;
  status(): RaftStatus {
    return this.st;
  }
  /** Changes the soft state and emits `'role'`, as the driver does for a Ready with a soft state. */
  become(role: SoftState['role'], leaderId: string, t: number): void {
    this.st = status({ ...this.st, role, leaderId: nodeId(leaderId), currentTerm: term(t) });
    this.emit('role', { role, leaderId: nodeId(leaderId) } satisfies SoftState);
  }
}

function peer(over: Partial<PeerStats>): PeerStats {
  return { address: '127.0.0.1:1', connected: false, queuedMessages: 0, queuedBytes: 0, sentMessages: 0, sentBatches: 0, sentBytes: 0, drainWaits: 0, droppedMessages: 0, reconnects: 0, heardFromReconnects: 0, ...over };
}

function spec(id: string, over: Partial<AgentSpec> = {}): AgentSpec {
  return { id, name: `name of ${id}`, kind: 'service', version: '1.0.0', description: '', capabilities: [], endpoints: {}, labels: {}, ...over };
}

/** Applies `commands` at indexes from `first` into one batch, written and committed. */
async function apply(sm: RegistryStateMachine, store: NodeStore, first: number, commands: Command[]): Promise<void> {
  const entries: Entry[] = commands.map((c, i) => ({ index: logIndex(first + i), term: term(1), type: 'normal', data: encodeCommand(c) }));
  const batch = store.batch();
  await sm.applyEntries(entries, batch);
  await batch.write();
  sm.commitApplied(batch);
}

const register = (id: string, over: Partial<AgentSpec> = {}, extra: { ttlSeconds?: number; health?: Health } = {}): Command => ({ type: 'register', requestId: `r-${id}`, agent: spec(id, over), ...extra });

/** How long {@link eventually} waits before it fails, in ms: a bound for a stuck test, not a timing assertion. */
const EVENTUALLY_TIMEOUT_MS = 10_000;
/** How often {@link eventually} polls, in ms. */
const EVENTUALLY_POLL_MS = 5;

/** Polls `check` until it holds, failing after `ms`. */
async function eventually(what: string, check: () => Promise<boolean> | boolean, ms = EVENTUALLY_TIMEOUT_MS): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, EVENTUALLY_POLL_MS));
  }
}

/** A transport for a cluster of one: nothing to send, nothing arrives. */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// ---------------------------------------------------------------------------------------------

describe('client request metrics', () => {
  it('counts requests by api, method and code, and observes their latency', async () => {
    const m = new NodeMetrics({ id: 'n1', processMetrics: false });
    const before = await scrape(m);
    expect(before.value('registry_requests_total', { api: 'grpc', method: 'Register', code: 'OK' })).toBeUndefined();
    m.observeRequest('grpc', 'Register', 'OK', 0.003);
    m.observeRequest('grpc', 'Register', 'OK', 0.2);
    m.observeRequest('grpc', 'Get', 'NOT_FOUND', 0.001);
    m.observeRequest('http', 'getAgent', 'OK', 0.004);
    const s = await scrape(m);
    expect(s.value('registry_requests_total', { api: 'grpc', method: 'Register', code: 'OK' })).toBe(2);
    expect(s.value('registry_requests_total', { api: 'grpc', method: 'Get', code: 'NOT_FOUND' })).toBe(1);
    expect(s.value('registry_requests_total', { api: 'http', method: 'getAgent', code: 'OK' })).toBe(1);
    expect(s.value('registry_request_duration_seconds_count', { api: 'grpc', method: 'Register' })).toBe(2);
    expect(s.value('registry_request_duration_seconds_sum', { api: 'grpc', method: 'Register' })).toBeCloseTo(0.203, 9);
    // 0.003 s is in the 5 ms bucket, 0.2 s is not.
    expect(s.value('registry_request_duration_seconds_bucket', { api: 'grpc', method: 'Register', le: '0.005' })).toBe(1);
    expect(s.value('registry_request_duration_seconds_bucket', { api: 'grpc', method: 'Register', le: '+Inf' })).toBe(2);
  });

  it('uses its own registry: two nodes in one process never share series', async () => {
    const a = new NodeMetrics({ id: 'a', processMetrics: false });
    const b = new NodeMetrics({ id: 'b', processMetrics: false });
    a.observeRequest('grpc', 'Find', 'OK', 0.01);
    expect((await scrape(a)).value('registry_requests_total', { api: 'grpc', method: 'Find', code: 'OK' })).toBe(1);
    expect((await scrape(b)).value('registry_requests_total', { api: 'grpc', method: 'Find', code: 'OK' })).toBeUndefined();
    expect((await scrape(b)).value('registry_node_info', { node_id: 'b' })).toBe(1);
    expect(a.registry.contentType).toMatch(/^text\/plain/);
  });

  it('adds the process metrics unless told not to', async () => {
    const withProcess = await scrape(new NodeMetrics({ id: 'n1' }));
    expect(withProcess.all('process_cpu_user_seconds_total')).toHaveLength(1);
    expect(withProcess.all('nodejs_heap_size_used_bytes')).toHaveLength(1);
    const without = await scrape(new NodeMetrics({ id: 'n1', processMetrics: false }));
    expect(without.all('process_cpu_user_seconds_total')).toHaveLength(0);
  });
});

describe('Raft metrics', () => {
  it('reads term, role, commit and applied index at scrape time', async () => {
    const raft = new FakeRaft();
    const m = new NodeMetrics({ id: 'n1', raft, processMetrics: false });
    let s = await scrape(m);
    expect(s.value('raft_is_leader')).toBe(0);
    expect(s.value('raft_has_leader')).toBe(0);
    expect(s.value('raft_role', { role: 'follower' })).toBe(1);
    raft.st = status({ currentTerm: term(7), commitIndex: logIndex(42), leaderId: nodeId('n1'), role: 'leader', lastIndex: logIndex(45), snapshotIndex: logIndex(30) });
    raft.appliedIndex = 40;
    raft.pendingProposals = 3;
    s = await scrape(m);
    expect(s.value('raft_term')).toBe(7);
    expect(s.value('raft_commit_index')).toBe(42);
    expect(s.value('raft_applied_index')).toBe(40);
    expect(s.value('raft_last_log_index')).toBe(45);
    expect(s.value('raft_snapshot_index')).toBe(30);
    expect(s.value('raft_is_leader')).toBe(1);
    expect(s.value('raft_has_leader')).toBe(1);
    expect(s.value('raft_proposals_pending')).toBe(3);
    expect(s.value('raft_role', { role: 'leader' })).toBe(1);
    expect(s.value('raft_role', { role: 'follower' })).toBe(0);
    expect(s.value('raft_role', { role: 'candidate' })).toBe(0);
    expect(s.value('raft_role', { role: 'preCandidate' })).toBe(0);
  });

  it('counts a leader change each time a known leader other than the last one appears', async () => {
    const raft = new FakeRaft();
    const m = new NodeMetrics({ id: 'n1', processMetrics: false });
    m.attachRaft(raft);
    expect((await scrape(m)).value('raft_leader_changes_total')).toBe(0);
    raft.become('follower', 'n2', 2); // first leader seen
    raft.become('preCandidate', '', 2); // lost it: no change counted
    raft.become('candidate', '', 3);
    raft.become('leader', 'n1', 3); // a new leader
    raft.become('leader', 'n1', 3); // same leader, no change
    expect((await scrape(m)).value('raft_leader_changes_total')).toBe(2);
    m.close();
    raft.become('follower', 'n3', 4); // no longer listened to
    expect((await scrape(m)).value('raft_leader_changes_total')).toBe(2);
  });

  it('turns observer hooks into write, apply, snapshot and proposal metrics', async () => {
    const m = new NodeMetrics({ id: 'n1', processMetrics: false });
    const o = m.observer;
    const id = nodeId('n1');
    const rd = { entries: [], messages: [], committedEntries: [], readStates: [], mustSync: true } as unknown as Parameters<NonNullable<RaftNodeObserver['onPersisted']>>[1];
    o.onPersisted?.(id, rd, true, 0.002);
    o.onPersisted?.(id, rd, false, 0.0005);
    o.onPersisted?.(id, rd, true); // nothing was written: not observed
    o.onApplied?.(id, [{ index: logIndex(1), term: term(1), type: 'normal', data: new Uint8Array() }], 0.001);
    o.onSnapshotTaken?.(id, { index: logIndex(10), term: term(1), confState: { voters: [id], learners: [] } } as never);
    o.onSnapshotInstalled?.(id, { index: logIndex(20), term: term(2), confState: { voters: [id], learners: [] } } as never, { seconds: 1.5, sizeBytes: 9000 });
    o.onSnapshotSent?.(id, nodeId('n2'), false, 0.2, 7000); // a failed send: its size is not observed
    o.onSnapshotSent?.(id, nodeId('n3'), true, 0.4, 5000);
    o.onProposalSubmitted?.(id);
    o.onProposalSubmitted?.(id);
    o.onProposalSubmitted?.(id);
    o.onProposalFailed?.(id, 'not_leader', 1);
    o.onProposalFailed?.(id, 'stopping', 2);
    const s = await scrape(m);
    expect(s.value('raft_append_duration_seconds_count')).toBe(2);
    expect(s.value('raft_fsync_duration_seconds_count')).toBe(1);
    expect(s.value('raft_fsync_duration_seconds_sum')).toBeCloseTo(0.002, 9);
    expect(s.value('raft_apply_duration_seconds_count')).toBe(1);
    expect(s.value('raft_applied_entries_total')).toBe(1);
    expect(s.value('raft_snapshots_taken_total')).toBe(1);
    expect(s.value('raft_snapshot_install_duration_seconds_sum')).toBeCloseTo(1.5, 9);
    expect(s.value('raft_snapshot_size_bytes_sum', { op: 'send' })).toBe(5000);
    expect(s.value('raft_snapshot_size_bytes_sum', { op: 'install' })).toBe(9000);
    expect(s.value('raft_snapshot_send_duration_seconds_count', { result: 'failed' })).toBe(1);
    expect(s.value('raft_snapshot_send_duration_seconds_count', { result: 'ok' })).toBe(1);
    expect(s.value('raft_proposals_total')).toBe(3);
    expect(s.value('raft_proposals_failed_total', { reason: 'not_leader' })).toBe(1);
    expect(s.value('raft_proposals_failed_total', { reason: 'stopping' })).toBe(2);
  });

  it('measures a real single-node RaftNode: proposals, synced writes, applies, snapshots, leadership', async () => {
    const store = new MemoryStore();
    const sm = new RegistryStateMachine(store, silentLogger);
    await sm.open();
    const leases = new LeaseManager();
    const hub = new WatchHub(sm, silentLogger);
    const metrics = new NodeMetrics({ id: 'n1', stateMachine: sm, leases, watchHub: hub, processMetrics: false });
    const seen: string[] = [];
    const raft = await RaftNode.start(loneNodeOptions(store, sm, leases, {
      // Both observers hear every hook: the metrics and a second one.
      observer: combineObservers(metrics.observer, { onApplied: (_id, entries) => seen.push(...entries.map((e) => String(e.index))) }),
      onEvents: (events) => {
        hub.publish(events);
        metrics.onEvents(events);
      },
      snapshotThresholdEntries: 4,
      snapshotTailEntries: 1,
    }));
    cleanups.push(() => raft.stop());
    metrics.attachRaft(raft);
    cleanups.push(() => metrics.close());
    await eventually('leadership', () => raft.isLeader);
    for (let i = 0; i < 6; i++) await raft.propose(encodeCommand(register(`a${i}`, { kind: i % 2 === 0 ? 'mcp-server' : 'a2a-agent' }, i === 0 ? { ttlSeconds: 30 } : {})));
    await eventually('a snapshot', async () => ((await scrape(metrics)).value('raft_snapshots_taken_total') ?? 0) >= 1);
    const s = await scrape(metrics);
    expect(s.value('raft_proposals_total')).toBe(6);
    expect(s.all('raft_proposals_failed_total').reduce((n, x) => n + x.value, 0)).toBe(0);
    expect(s.value('raft_is_leader')).toBe(1);
    expect(s.value('raft_role', { role: 'leader' })).toBe(1);
    expect(s.value('raft_leader_changes_total')).toBe(1);
    expect(s.value('raft_applied_index')).toBe(raft.appliedIndex);
    expect(s.value('raft_commit_index')).toBeGreaterThanOrEqual(raft.appliedIndex);
    expect(s.value('raft_fsync_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(s.value('raft_append_duration_seconds_count')).toBeGreaterThanOrEqual(s.value('raft_fsync_duration_seconds_count') ?? Infinity);
    expect(s.value('raft_apply_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(s.value('raft_applied_entries_total')).toBe(seen.length);
    expect(s.value('raft_snapshots_taken_total')).toBeGreaterThanOrEqual(1);
    expect(raft.status().snapshotIndex).toBeGreaterThanOrEqual(4);
    expect(s.value('registry_agents', { kind: 'mcp-server', health: 'unspecified' })).toBe(3);
    expect(s.value('registry_agents', { kind: 'a2a-agent', health: 'unspecified' })).toBe(3);
    expect(s.value('registry_leases_active')).toBe(1);
    expect(s.value('registry_leases_tracked')).toBe(1);

    // A refusal is counted as a failure with its reason (here: the node has stopped).
    await raft.stop();
    await expect(raft.propose(encodeCommand(register('late')))).rejects.toThrow();
    const after = await scrape(metrics);
    expect(after.value('raft_proposals_total')).toBe(7);
    expect(after.value('raft_proposals_failed_total', { reason: 'stopping' })).toBe(1);
  });
});

describe('transport metrics', () => {
  it('reads per-peer reconnects, drops and queues, and transport-wide drops, at scrape time', async () => {
    let stats: TransportStats = {
      peers: { n2: peer({ connected: true, reconnects: 1, droppedMessages: 0, queuedMessages: 2, queuedBytes: 300 }), n3: peer({ reconnects: 4, heardFromReconnects: 2, droppedMessages: 17 }) },
      unknownPeerDropped: 1,
      snapshotOnStreamDropped: 0,
      receivedBatches: 5,
      receivedMessages: 9,
      malformedDropped: 3,
      misaddressedDropped: 0,
      unhandledDropped: 0,
    };
    const m = new NodeMetrics({ id: 'n1', transport: { stats: () => stats }, processMetrics: false });
    let s = await scrape(m);
    expect(s.value('raft_peer_connected', { peer: 'n2' })).toBe(1);
    expect(s.value('raft_peer_connected', { peer: 'n3' })).toBe(0);
    expect(s.value('raft_peer_reconnects_total', { peer: 'n3' })).toBe(4);
    expect(s.value('raft_peer_heard_from_reconnects_total', { peer: 'n3' })).toBe(2);
    expect(s.value('raft_peer_dropped_messages_total', { peer: 'n3' })).toBe(17);
    expect(s.value('raft_peer_queued_bytes', { peer: 'n2' })).toBe(300);
    expect(s.value('raft_transport_received_messages_total')).toBe(9);
    expect(s.value('raft_transport_dropped_messages_total', { reason: 'malformed' })).toBe(3);
    expect(s.value('raft_transport_dropped_messages_total', { reason: 'unknown_peer' })).toBe(1);
    // The counters follow the transport's, and a removed peer's series go away.
    stats = { ...stats, peers: { n2: peer({ connected: false, reconnects: 2, droppedMessages: 5 }) } };
    s = await scrape(m);
    expect(s.value('raft_peer_reconnects_total', { peer: 'n2' })).toBe(2);
    expect(s.value('raft_peer_dropped_messages_total', { peer: 'n2' })).toBe(5);
    expect(s.value('raft_peer_connected', { peer: 'n2' })).toBe(0);
    expect(s.all('raft_peer_reconnects_total').map((x) => x.labels.peer)).toEqual(['n2']);
  });
});

describe('agent, lease and watch metrics', () => {
  it('counts agents by kind and health from the applied writes, without scanning per scrape', async () => {
    const store = new MemoryStore();
    const sm = new RegistryStateMachine(store, silentLogger);
    await sm.open();
    // Written before the counts are asked for: found by the one pass at start.
    await apply(sm, store, 1, [register('a', { kind: 'mcp-server' }), register('b', { kind: 'mcp-server' }, { health: 'serving', ttlSeconds: 10 })]);
    const m = new NodeMetrics({ id: 'n1', stateMachine: sm, processMetrics: false });
    await eventually('the first count', () => sm.agentCounts() !== undefined);
    let s = await scrape(m);
    expect(s.value('registry_agents', { kind: 'mcp-server', health: 'unspecified' })).toBe(1);
    expect(s.value('registry_agents', { kind: 'mcp-server', health: 'serving' })).toBe(1);
    expect(s.value('registry_leases_active')).toBe(1);

    // Later writes move the counts: a new kind, a health change, a re-register changing kind, a delete.
    const reads = store.kv.range.bind(store.kv);
    let scans = 0;
    (store.kv as { range: typeof reads }).range = (gte, lt, limit) => {
      if (gte.startsWith('agent/')) scans++;
      return reads(gte, lt, limit);
    };
    await apply(sm, store, 3, [
      register('c', { kind: 'a2a-agent' }),
      { type: 'setHealth', requestId: 'h', id: 'a', health: 'degraded' },
      register('b', { kind: 'service' }, { health: 'serving' }),
      { type: 'deregister', requestId: 'd', id: 'c' },
    ]);
    s = await scrape(m);
    expect(s.value('registry_agents', { kind: 'mcp-server', health: 'degraded' })).toBe(1);
    expect(s.value('registry_agents', { kind: 'mcp-server', health: 'unspecified' })).toBeUndefined();
    expect(s.value('registry_agents', { kind: 'mcp-server', health: 'serving' })).toBeUndefined();
    expect(s.value('registry_agents', { kind: 'service', health: 'serving' })).toBe(1);
    expect(s.value('registry_agents', { kind: 'a2a-agent', health: 'unspecified' })).toBeUndefined();
    expect(s.value('registry_leases_active')).toBe(0);
    expect(s.all('registry_agents').reduce((n, x) => n + x.value, 0)).toBe(2);
    expect(scans).toBe(0);

    // Reopening (a restart, a snapshot install) counts again from the store.
    await sm.open();
    await eventually('the recount', () => sm.agentCounts() !== undefined);
    s = await scrape(m);
    expect(s.value('registry_agents', { kind: 'service', health: 'serving' })).toBe(1);
    expect(s.value('registry_agents', { kind: 'mcp-server', health: 'degraded' })).toBe(1);
    expect(scans).toBe(1);
  });

  it('counts kinds past MAX_COUNTED_AGENT_KINDS together, consistently', async () => {
    const store = new MemoryStore();
    const sm = new RegistryStateMachine(store, silentLogger);
    await sm.open();
    sm.keepAgentCounts();
    await eventually('the first count', () => sm.agentCounts() !== undefined);
    const n = MAX_COUNTED_AGENT_KINDS + 5;
    await apply(sm, store, 1, Array.from({ length: n }, (_, i) => register(`x${i}`, { kind: `kind-${i}` })));
    const m = new NodeMetrics({ id: 'n1', stateMachine: sm, processMetrics: false });
    let s = await scrape(m);
    expect(s.all('registry_agents')).toHaveLength(MAX_COUNTED_AGENT_KINDS + 1);
    expect(s.value('registry_agents', { kind: OTHER_KINDS_LABEL, health: 'unspecified' })).toBe(5);
    // Deleting an agent of a merged kind takes it from the merged count, not from a counted one.
    await apply(sm, store, n + 1, [{ type: 'deregister', requestId: 'd', id: `x${n - 1}` }]);
    s = await scrape(m);
    expect(s.value('registry_agents', { kind: OTHER_KINDS_LABEL, health: 'unspecified' })).toBe(4);
    expect(s.all('registry_agents').reduce((k, x) => k + x.value, 0)).toBe(n - 1);
  });

  it('counts expired leases from the committed events, and reads the lease manager', async () => {
    const leases = new LeaseManager();
    const m = new NodeMetrics({ id: 'n1', leases, processMetrics: false });
    const agent = { ...spec('a'), createRevision: 1, modRevision: 1, ttlSeconds: 5, health: 'unspecified' as const };
    m.onEvents([
      { type: 'delete', agent, revision: 9, expired: true },
      { type: 'delete', agent: { ...agent, id: 'b' }, revision: 9, expired: true },
      { type: 'delete', agent: { ...agent, id: 'c' }, revision: 10, expired: false },
      { type: 'put', agent, revision: 11, expired: false },
    ]);
    leases.becomeLeader(0, [
      { id: 'a', ttlMs: 1000, modRevision: 1 },
      { id: 'b', ttlMs: 1000, modRevision: 2 },
    ]);
    const s = await scrape(m);
    expect(s.value('registry_leases_expired_total')).toBe(2);
    expect(s.value('registry_leases_tracked')).toBe(2);
    expect(s.value('registry_leases_expiring')).toBe(0);
  });

  it('reports watchers, what they buffer, and how far the slowest trails', async () => {
    const store = new MemoryStore();
    const sm = new RegistryStateMachine(store, silentLogger);
    await sm.open();
    const hub = new WatchHub(sm, silentLogger);
    const m = new NodeMetrics({ id: 'n1', watchHub: hub, processMetrics: false });
    const fast: WatchSink = { send: () => true, onDrain: () => undefined, fail: () => undefined };
    let resume: (() => void) | undefined;
    const slow: WatchSink = { send: () => false, onDrain: (r) => (resume = r), fail: () => undefined };
    const cancelFast = await hub.watch(0, {}, fast);
    await hub.watch(0, {}, slow);
    expect((await scrape(m)).value('registry_watchers')).toBe(2);
    // Three revisions: the slow watcher takes the first and then blocks with two buffered.
    for (let i = 1; i <= 3; i++) {
      await apply(sm, store, i, [register(`w${i}`)]);
      hub.publish(sm.takeCommittedEvents());
    }
    let s = await scrape(m);
    expect(s.value('registry_watch_buffered_events')).toBe(2);
    expect(s.value('registry_watch_max_buffered_events')).toBe(2);
    expect(s.value('registry_watch_max_lag_revisions')).toBe(2);
    expect(resume).toBeDefined();
    cancelFast();
    s = await scrape(m);
    expect(s.value('registry_watchers')).toBe(1);
    hub.closeAll();
    s = await scrape(m);
    expect(s.value('registry_watchers')).toBe(0);
    expect(s.value('registry_watch_max_lag_revisions')).toBe(0);
    expect(s.value('registry_watchers_ended_total', { reason: 'unavailable' })).toBe(1);
  });
});

describe('combineObservers', () => {
  it('calls every observer that has the hook, in order, and skips undefined ones', () => {
    const calls: string[] = [];
    const a: RaftNodeObserver = { onCompacted: (_n, i) => calls.push(`a${i}`) };
    const b: RaftNodeObserver = { onCompacted: (_n, i) => calls.push(`b${i}`), onProposalSubmitted: () => calls.push('b-submit') };
    const both = combineObservers(a, undefined, b);
    both.onCompacted?.(nodeId('n1') as NodeId, logIndex(3));
    both.onProposalSubmitted?.(nodeId('n1'));
    expect(calls).toEqual(['a3', 'b3', 'b-submit']);
    expect(both.onApplied).toBeUndefined();
    expect(combineObservers(a)).toBe(a);
  });
});
