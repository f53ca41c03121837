/**
 * Prometheus metrics of one node (prom-client), in a {@link Registry} of its own so that several
 * nodes in one process (tests) never share series. The HTTP front end serves
 * `await metrics.registry.metrics()` at `GET /metrics` with `metrics.registry.contentType`.
 *
 * Three ways values get in, each cheap:
 * - events counted as they happen: client requests ({@link NodeMetrics.observeRequest}), the
 *   driver's observer hooks ({@link NodeMetrics.observer}: writes, applies, snapshots,
 *   proposals), leader changes (the RaftNode's `'role'` events) and lease expiries (the committed
 *   watch events, {@link NodeMetrics.onEvents});
 * - gauges and counters read at scrape time from what the node already keeps: the Raft status,
 *   the transport's counters, the state machine's agent counts (O(kinds), never a scan), the
 *   lease manager and the watch hub (O(watchers));
 * - the process metrics of prom-client (`collectDefaultMetrics`).
 *
 * Units: durations in seconds, sizes in bytes (Prometheus conventions: `_seconds`, `_bytes`,
 * `_total` for counters). Metric names follow etcd's where there is one (`raft_` for consensus,
 * `registry_` for the service). No series carries the node id: Prometheus adds the target's
 * `instance`; `registry_node_info` maps it to the id.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RaftStatus, Role, SoftState } from '../raft/index.js';
import { MAX_COUNTED_AGENT_KINDS, OTHER_KINDS_LABEL } from '../registry/agent-counts.js';
import type { AgentCounts } from '../registry/state-machine.js';
import type { WatchEvent } from '../registry/types.js';
import type { TransportStats } from '../transport/types.js';
import type { ProposalFailure, RaftNodeObserver } from './ports.js';
import type { WatchStats } from './watch-hub.js';

/** Buckets of request latencies, in seconds (0.5 ms to 10 s). */
export const REQUEST_DURATION_BUCKETS_SECONDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Buckets of disk write and apply durations, in seconds: 100 µs doubling 16 times (to 3.3 s), like etcd's WAL fsync histogram. */
export const DISK_DURATION_BUCKETS_SECONDS: readonly number[] = Array.from({ length: 16 }, (_, i) => 0.0001 * 2 ** i);
/** Buckets of snapshot save, install and send durations, in seconds (10 ms to 5 min). */
export const SNAPSHOT_DURATION_BUCKETS_SECONDS: readonly number[] = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Buckets of snapshot sizes, in bytes: 1 KiB times 4 per bucket, 12 buckets (to 4 GiB). */
export const SNAPSHOT_SIZE_BUCKETS_BYTES: readonly number[] = Array.from({ length: 12 }, (_, i) => 1024 * 4 ** i);

/** The roles `raft_role` reports, one series each (1 for the current role, 0 for the others). */
export const RAFT_ROLES: readonly Role[] = ['follower', 'preCandidate', 'candidate', 'leader'];

/** Every reason of `raft_proposals_failed_total`, each series present (at 0) from the start so rates work. */
export const PROPOSAL_FAILURE_REASONS = ['not_leader', 'queue_full', 'dropped', 'replaced', 'snapshot', 'stopping'] as const satisfies readonly ProposalFailure[];

/** The client API a request came through (`api` label of the request metrics). */
export type RequestApi = 'grpc' | 'http';

/** What the metrics read of the Raft driver (a `RaftNode`, or a fake in tests). */
export interface RaftMetricsSource {
  /** The core's state: term, role, commit index, leader. */
  status(): RaftStatus;
  /** The state machine's durable applied index. */
  readonly appliedIndex: number;
  /** Proposals queued or appended and not yet answered. */
  readonly pendingProposals?: number;
  /** The driver emits `'role'` with a {@link SoftState} whenever the role or the known leader changes. */
  on(event: 'role', listener: (s: SoftState) => void): unknown;
  off(event: 'role', listener: (s: SoftState) => void): unknown;
}

/** Where a node's metrics are read from; each part is optional (its metrics are then absent or 0). */
export interface NodeMetricsSources {
  /** This node's id, reported by `registry_node_info`. */
  readonly id: string;
  /** The driver; may also be attached later with {@link NodeMetrics.attachRaft} (it is created after its observer). */
  readonly raft?: RaftMetricsSource;
  /** The peer transport's counters (`GrpcTransport`). */
  readonly transport?: { stats(): TransportStats };
  /** The state machine's agent counts (`RegistryStateMachine`): asked to keep them. */
  readonly stateMachine?: { keepAgentCounts(): void; agentCounts(): AgentCounts | undefined };
  /** The leader's lease deadlines (`LeaseManager`). */
  readonly leases?: { readonly size: number; readonly pendingCount: number };
  /** The node's watchers (`WatchHub`). */
  readonly watchHub?: { stats(): WatchStats };
  /** Whether to add prom-client's process and Node.js metrics (default true). */
  readonly processMetrics?: boolean;
}

/** Sets a counter that mirrors a monotonic value kept elsewhere (read at scrape time). */
function mirror<T extends string>(counter: Counter<T>, labels: Partial<Record<T, string>>, value: number): void {
  counter.inc(labels, Math.max(0, value));
}

/**
 * The metrics of one node: see the module comment. Create it before the RaftNode (its
 * {@link observer} goes into the driver's options), then {@link attachRaft}; call {@link close}
 * when the node stops.
 */
export class NodeMetrics {
  /** The registry holding every metric of this node (not prom-client's global one). */
  readonly registry: Registry;
  /**
   * The driver observer that feeds the write, apply, snapshot and proposal metrics; pass it to
   * `RaftNode.start` (with `combineObservers` beside another observer).
   */
  readonly observer: RaftNodeObserver;

  private raft: RaftMetricsSource | undefined;
  private lastLeader = '';
  private readonly onRole = (s: SoftState): void => {
    const leader = s.leaderId as string;
    // etcd's leader_changes_seen_total: a change to a known leader other than the last one seen.
    if (leader !== '' && leader !== this.lastLeader) this.leaderChanges.inc();
    this.lastLeader = leader;
  };

  private readonly requests: Counter<'api' | 'method' | 'code'>;
  private readonly requestDuration: Histogram<'api' | 'method'>;
  private readonly leaderChanges: Counter;
  private readonly leasesExpired: Counter;

  constructor(sources: NodeMetricsSources) {
    const registry = new Registry();
    this.registry = registry;
    const registers = [registry];
    if (sources.processMetrics !== false) collectDefaultMetrics({ register: registry });
    sources.stateMachine?.keepAgentCounts();
    const raft = (): RaftMetricsSource | undefined => this.raft;

    new Gauge({ name: 'registry_node_info', help: 'Always 1; labels: this node id.', labelNames: ['node_id'], registers }).set({ node_id: sources.id }, 1);

    // Client requests.
    this.requests = new Counter({
      name: 'registry_requests_total',
      help: 'Client API requests answered, by API (grpc, http), method (RPC or route name) and gRPC status code name (OK, NOT_FOUND, ...).',
      labelNames: ['api', 'method', 'code'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'registry_request_duration_seconds',
      help: 'Time from receiving a client API request to answering it, in seconds, by API and method.',
      labelNames: ['api', 'method'],
      buckets: [...REQUEST_DURATION_BUCKETS_SECONDS],
      registers,
    });

    // Raft state, read at scrape time.
    const scalar = (name: string, help: string, value: (r: RaftMetricsSource) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const r = raft();
          this.set(r ? value(r) : 0);
        },
      });
    };
    scalar('raft_term', 'The current Raft term.', (r) => r.status().currentTerm);
    scalar('raft_commit_index', 'The highest log index known committed.', (r) => r.status().commitIndex);
    scalar('raft_applied_index', 'The highest log index applied to the state machine and durable (the registry revision).', (r) => r.appliedIndex);
    scalar('raft_last_log_index', 'The index of the last entry of the log.', (r) => r.status().lastIndex);
    scalar('raft_snapshot_index', 'The index of the latest snapshot (0 when none).', (r) => r.status().snapshotIndex);
    scalar('raft_is_leader', '1 when this node is the leader, else 0.', (r) => (r.status().role === 'leader' ? 1 : 0));
    scalar('raft_has_leader', '1 when this node knows a leader for its term, else 0.', (r) => (r.status().leaderId !== '' ? 1 : 0));
    scalar('raft_proposals_pending', 'Proposals queued or appended on this node and not yet answered.', (r) => r.pendingProposals ?? 0);
    new Gauge({
      name: 'raft_role',
      help: 'The Raft role of this node: 1 for the current role, 0 for the others.',
      labelNames: ['role'],
      registers,
      collect() {
        const role = raft()?.status().role;
        for (const r of RAFT_ROLES) this.set({ role: r }, r === role ? 1 : 0);
      },
    });
    this.leaderChanges = new Counter({ name: 'raft_leader_changes_total', help: 'Times this node saw a new leader (a known leader other than the last one seen).', registers });

    // Proposals, writes, applies and snapshots, from the driver's observer.
    const proposals = new Counter({ name: 'raft_proposals_total', help: 'Proposals (commands and membership changes) submitted to this node\'s Raft driver.', registers });
    const proposalsFailed = new Counter({
      name: 'raft_proposals_failed_total',
      help: `Proposals that ended in an error, by reason: ${PROPOSAL_FAILURE_REASONS.join(', ')}.`,
      labelNames: ['reason'],
      registers,
    });
    for (const reason of PROPOSAL_FAILURE_REASONS) proposalsFailed.inc({ reason }, 0);
    const append = new Histogram({
      name: 'raft_append_duration_seconds',
      help: 'Duration of a Ready\'s write (hard state and log entries, with the applies when they share the batch), in seconds; synced or not.',
      buckets: [...DISK_DURATION_BUCKETS_SECONDS],
      registers,
    });
    const fsync = new Histogram({
      name: 'raft_fsync_duration_seconds',
      help: 'Duration of a Ready\'s write that was synced to disk (fsync), in seconds.',
      buckets: [...DISK_DURATION_BUCKETS_SECONDS],
      registers,
    });
    const apply = new Histogram({
      name: 'raft_apply_duration_seconds',
      help: 'Duration of applying a batch of committed entries to the state machine and writing the result, in seconds.',
      buckets: [...DISK_DURATION_BUCKETS_SECONDS],
      registers,
    });
    const appliedEntries = new Counter({ name: 'raft_applied_entries_total', help: 'Committed entries applied to the state machine.', registers });
    const snapshotsTaken = new Counter({
      name: 'raft_snapshots_taken_total',
      help: 'Snapshot points taken: each compacts the log behind it (the state machine in the store is the snapshot; nothing is copied).',
      registers,
    });
    const snapshotInstall = new Histogram({
      name: 'raft_snapshot_install_duration_seconds',
      help: 'Duration of installing a snapshot received from the leader (replacing the state machine), in seconds.',
      buckets: [...SNAPSHOT_DURATION_BUCKETS_SECONDS],
      registers,
    });
    const snapshotSize = new Histogram({
      name: 'raft_snapshot_size_bytes',
      help: 'Size of a snapshot payload, in bytes, by operation: send (streamed to a follower) or install (received from the leader).',
      labelNames: ['op'],
      buckets: [...SNAPSHOT_SIZE_BUCKETS_BYTES],
      registers,
    });
    const snapshotSend = new Histogram({
      name: 'raft_snapshot_send_duration_seconds',
      help: 'Duration of streaming a snapshot to a follower, in seconds, by result (ok, failed).',
      labelNames: ['result'],
      buckets: [...SNAPSHOT_DURATION_BUCKETS_SECONDS],
      registers,
    });
    const snapshotsRefused = new Counter({
      name: 'raft_snapshot_payloads_refused_total',
      help: 'Snapshot payloads from the leader refused as they arrived (they do not decode, or do not hold the state their metadata names); never installed.',
      registers,
    });
    this.observer = {
      onProposalSubmitted: () => proposals.inc(),
      onSnapshotRefused: () => snapshotsRefused.inc(),
      onProposalFailed: (_node, reason, count) => proposalsFailed.inc({ reason }, count),
      onPersisted: (_node, _rd, synced, seconds) => {
        if (seconds === undefined) return;
        append.observe(seconds);
        if (synced) fsync.observe(seconds);
      },
      onApplied: (_node, entries, seconds) => {
        appliedEntries.inc(entries.length);
        if (seconds !== undefined) apply.observe(seconds);
      },
      onSnapshotTaken: () => snapshotsTaken.inc(),
      onSnapshotInstalled: (_node, _meta, cost) => {
        if (!cost) return;
        snapshotInstall.observe(cost.seconds);
        snapshotSize.observe({ op: 'install' }, cost.sizeBytes);
      },
      onSnapshotSent: (_node, _to, ok, seconds, sizeBytes) => {
        snapshotSend.observe({ result: ok ? 'ok' : 'failed' }, seconds);
        if (ok && sizeBytes !== undefined) snapshotSize.observe({ op: 'send' }, sizeBytes);
      },
    };

    // The peer transport, read at scrape time.
    const transport = sources.transport;
    const peerGauge = (name: string, help: string, value: (p: TransportStats['peers'][string]) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset();
          for (const [peer, p] of Object.entries(transport?.stats().peers ?? {})) this.set({ peer }, value(p));
        },
      });
    };
    const peerCounter = (name: string, help: string, value: (p: TransportStats['peers'][string]) => number): void => {
      new Counter({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset();
          for (const [peer, p] of Object.entries(transport?.stats().peers ?? {})) mirror(this, { peer }, value(p));
        },
      });
    };
    peerGauge('raft_peer_connected', '1 while the stream to the peer is open, else 0.', (p) => (p.connected ? 1 : 0));
    peerGauge('raft_peer_queued_messages', 'Messages waiting in the queue to the peer.', (p) => p.queuedMessages);
    peerGauge('raft_peer_queued_bytes', 'Estimated bytes waiting in the queue to the peer, in bytes.', (p) => p.queuedBytes);
    peerCounter('raft_peer_reconnects_total', 'Streams opened to the peer after the first one (reconnect attempts).', (p) => p.reconnects);
    peerCounter('raft_peer_heard_from_reconnects_total', 'Reconnects made at once because the peer was heard from while the stream was down.', (p) => p.heardFromReconnects);
    peerCounter('raft_peer_dropped_messages_total', 'Messages to the peer dropped: queue full, too large, or not encodable.', (p) => p.droppedMessages);
    peerCounter('raft_peer_sent_messages_total', 'Messages written to the stream to the peer.', (p) => p.sentMessages);
    peerCounter('raft_peer_sent_bytes_total', 'Encoded bytes written to the stream to the peer, in bytes.', (p) => p.sentBytes);
    new Counter({
      name: 'raft_transport_received_messages_total',
      help: 'Messages received from peers and handed to Raft.',
      registers,
      collect() {
        this.reset();
        mirror(this, {}, transport?.stats().receivedMessages ?? 0);
      },
    });
    new Counter({
      name: 'raft_transport_dropped_messages_total',
      help: 'Messages the transport dropped outside the per-peer queues, by reason: unknown_peer, snapshot_on_stream, malformed, misaddressed, unhandled.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        const s = transport?.stats();
        if (!s) return;
        mirror(this, { reason: 'unknown_peer' }, s.unknownPeerDropped);
        mirror(this, { reason: 'snapshot_on_stream' }, s.snapshotOnStreamDropped);
        mirror(this, { reason: 'malformed' }, s.malformedDropped);
        mirror(this, { reason: 'misaddressed' }, s.misaddressedDropped);
        mirror(this, { reason: 'unhandled' }, s.unhandledDropped);
      },
    });

    // Agents and leases.
    const counts = (): AgentCounts | undefined => sources.stateMachine?.agentCounts();
    new Gauge({
      name: 'registry_agents',
      help: `Registered agents by kind and health, as applied on this node (kinds past the first ${MAX_COUNTED_AGENT_KINDS} counted under kind "${OTHER_KINDS_LABEL}"); absent until counted after start.`,
      labelNames: ['kind', 'health'],
      registers,
      collect() {
        this.reset();
        for (const c of counts()?.counts() ?? []) this.set({ kind: c.kind, health: c.health }, c.count);
      },
    });
    new Gauge({
      name: 'registry_leases_active',
      help: 'Agents holding a lease (registered with a TTL), as applied on this node.',
      registers,
      collect() {
        this.set(counts()?.leased ?? 0);
      },
    });
    const leases = sources.leases;
    new Gauge({
      name: 'registry_leases_tracked',
      help: 'Lease deadlines this node keeps (only while it leads; 0 on followers).',
      registers,
      collect() {
        this.set(leases?.size ?? 0);
      },
    });
    new Gauge({
      name: 'registry_leases_expiring',
      help: 'Leases this leader found lapsed whose expiry is proposed and not yet applied.',
      registers,
      collect() {
        this.set(leases?.pendingCount ?? 0);
      },
    });
    this.leasesExpired = new Counter({ name: 'registry_leases_expired_total', help: 'Agents deleted because their lease expired, as applied on this node.', registers });

    // Watchers, read at scrape time.
    const watch = (): WatchStats | undefined => sources.watchHub?.stats();
    const watchGauge = (name: string, help: string, value: (s: WatchStats) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = watch();
          this.set(s ? value(s) : 0);
        },
      });
    };
    watchGauge('registry_watchers', 'Open watch streams on this node.', (s) => s.watchers);
    watchGauge('registry_watch_buffered_events', 'Events buffered for all watchers and not yet sent.', (s) => s.bufferedEvents);
    watchGauge('registry_watch_max_buffered_events', 'Most events buffered for one watcher (it is cut off past MAX_WATCHER_BUFFERED_EVENTS).', (s) => s.maxBufferedEvents);
    watchGauge('registry_watch_max_lag_revisions', 'How many revisions the furthest-behind watcher trails the applied index (0: all caught up).', (s) => s.maxLagRevisions);
    new Counter({
      name: 'registry_watchers_ended_total',
      help: 'Watch streams this node ended early, by reason: resource_exhausted (too slow), out_of_range (history compacted), unavailable (shutdown or resync failure).',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        const s = watch();
        if (!s) return;
        for (const [reason, n] of Object.entries(s.ended)) mirror(this, { reason }, n);
      },
    });

    if (sources.raft) this.attachRaft(sources.raft);
  }

  /** Reads the Raft metrics from `raft` from now on, and counts its leader changes. */
  attachRaft(raft: RaftMetricsSource): void {
    this.raft?.off('role', this.onRole);
    this.raft = raft;
    this.lastLeader = raft.status().leaderId as string;
    raft.on('role', this.onRole);
  }

  /**
   * Counts one answered client request: `api` it came through, `method` (the RPC name, e.g.
   * `Register`, or the HTTP route name), `code` the gRPC status code name (`OK`, `NOT_FOUND`, ...;
   * see `codeName` in `src/api/status.ts`), `seconds` from receiving it to answering it.
   */
  observeRequest(api: RequestApi, method: string, code: string, seconds: number): void {
    this.requests.inc({ api, method, code });
    this.requestDuration.observe({ api, method }, seconds);
  }

  /** Counts what a batch of committed watch events says (lease expiries); pass every batch the node publishes. */
  onEvents(events: readonly WatchEvent[]): void {
    let expired = 0;
    for (const e of events) if (e.type === 'delete' && e.expired) expired++;
    if (expired > 0) this.leasesExpired.inc(expired);
  }

  /** Stops listening to the driver. The registry keeps answering with the last values. */
  close(): void {
    this.raft?.off('role', this.onRole);
  }
}
