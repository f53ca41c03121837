/**
 * The TypeScript client of the registry: talks to any node of a cluster over gRPC, fails over
 * between endpoints, and retries with bounded exponential back-off within an overall deadline.
 *
 * Retry rules (after etcd's clientv3 balancer and gRPC's retry guidance):
 * - `UNAVAILABLE` and a failure to connect move to the next endpoint, for every call. Writes are
 *   safe to resend: Register replaces the whole record and Deregister deletes, both idempotent.
 * - `DEADLINE_EXCEEDED` of one attempt moves to the next endpoint for reads only; for a write the
 *   outcome is unknown and the error is surfaced.
 * - Any other status is surfaced at once as a {@link RegistryError}.
 * After every endpoint failed once in a row, the client waits (base × 2^round, capped, jittered)
 * before the next round. The endpoint that last answered is tried first next time.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { clientChannelCredentials, type ClientTlsOptions } from '../auth/tls.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import {
  AuthService,
  ClusterService,
  type AuthStatusResponse,
  type CreateTokenResponse,
  RegistryService,
  agentFromWire,
  consistencyToWire,
  findQueryToWire,
  listCapabilitiesToWire,
  searchQueryToWire,
  specToWire,
  statusFromWire,
  healthToWire,
  type ClusterMember,
  type ClusterStatus,
  type Consistency,
  type WireAgent,
  type WireWatchEvent,
} from '../api/registry-proto.js';
import type { Agent, AgentSpec, CapabilityCount, FindQuery, Health, SearchQuery } from '../registry/types.js';
import { ValidationError, validateAgentSpec, validateCapabilityPrefix, validateFindQuery, validateId, validateSearchQuery } from '../registry/validation.js';
import { RegistryError, isServiceError, statusName } from './errors.js';

/** Overall deadline of one client operation, retries included, in milliseconds. */
export const DEFAULT_DEADLINE_MS = 10_000;
/** Default longest time one read attempt may take before the client tries the next endpoint, in milliseconds. */
export const DEFAULT_READ_ATTEMPT_MS = 3_000;
/** Longest the client waits for a connection to an endpoint before trying the next, in milliseconds. */
export const CONNECT_TIMEOUT_MS = 1_000;
/** First back-off after every endpoint failed, in milliseconds. */
export const RETRY_BASE_DELAY_MS = 50;
/** Longest back-off between rounds of attempts, in milliseconds. */
export const RETRY_MAX_DELAY_MS = 1_000;
/** gRPC channel: first reconnect back-off after a failed connection, in milliseconds. */
export const CHANNEL_INITIAL_RECONNECT_BACKOFF_MS = 100;
/** gRPC channel: longest reconnect back-off, in milliseconds. */
export const CHANNEL_MAX_RECONNECT_BACKOFF_MS = 2_000;
/**
 * gRPC channel: the HTTP/2 flow-control window this client grants each stream and its connection
 * (grpc-js's `grpc-node.flow_control_window`), in bytes. HTTP/2 starts both at 65,535 bytes
 * (RFC 9113 §6.9.2), so a larger answer (a `Find` page of 100 MCP-shaped agents is ~86 KB) stalls
 * halfway until the client's WINDOW_UPDATE reaches the server. 1 MiB covers a page of
 * `MAX_PAGE_SIZE` agents of typical size in one flight; grpc-go grows its window to the same
 * end by probing the bandwidth-delay product.
 */
export const CHANNEL_FLOW_CONTROL_WINDOW_BYTES = 1024 * 1024;

/** Options of a {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** Client API addresses of the nodes, `host:port`, at least one. */
  readonly endpoints: readonly string[];
  /** Overall deadline of one operation in milliseconds; {@link DEFAULT_DEADLINE_MS} by default. */
  readonly deadlineMs?: number;
  /**
   * Longest time one read attempt may take before the read moves to the next endpoint, in
   * milliseconds; {@link DEFAULT_READ_ATTEMPT_MS} by default (never more than the deadline left).
   */
  readonly readAttemptMs?: number;
  /** Logger for failovers and retries (debug level); silent by default. */
  readonly logger?: Logger;
  /**
   * A bearer token (`registry token create`, or a node's `admin.token`), sent on every call as
   * gRPC metadata `authorization: Bearer <token>`; needed by a cluster running with `--auth on`.
   */
  readonly token?: string;
  /**
   * Dial with TLS: trust `ca` (the cluster CA, PEM) and present `cert`/`key` (PEM) as client
   * certificate — a node with TLS requires one on its gRPC port. The node's certificate must
   * name the endpoint's host. Plaintext when absent.
   */
  readonly tls?: ClientTlsOptions;
}

/** Options of a read. */
export interface ReadOptions {
  /** `linearizable` (default) or `serializable` (served locally by the node, maybe stale). */
  readonly consistency?: Consistency;
}

/** The stored agent after a register, and the revision (log index) of that write. */
export interface RegisterResult {
  readonly agent: Agent;
  readonly revision: number;
}

/** An agent read by id, and the applied revision it was read at. */
export interface GetResult {
  readonly agent: Agent;
  readonly revision: number;
}

/** One page of a find: agents ordered by id, the token of the next page (`''` on the last), the revision. */
export interface FindResult {
  readonly agents: Agent[];
  readonly nextPageToken: string;
  readonly revision: number;
}

/** One page of a search: results best first (BM25 score descending, then id), the next page's token (`''` on the last), the revision. */
export interface SearchResult {
  readonly results: { readonly agent: Agent; readonly score: number }[];
  readonly nextPageToken: string;
  readonly revision: number;
}

/** The outcome of a deregister: whether the agent existed, and the revision of the write. */
export interface DeregisterResult {
  readonly deleted: boolean;
  readonly revision: number;
}

/** Options of a register: a lease, the initial health, compare-and-set conditions. */
export interface RegisterOptions {
  /** Lease in seconds (5-3600); 0 or absent for none. */
  readonly ttlSeconds?: number;
  readonly health?: Health;
  /** Apply only if the agent's mod_revision equals this (FAILED_PRECONDITION otherwise). */
  readonly expectedRevision?: number;
  /** Apply only if the id is absent (FAILED_PRECONDITION otherwise). */
  readonly createOnly?: boolean;
}

/** One change seen by {@link RegistryClient.watch}. */
export interface ClientWatchEvent {
  readonly type: 'put' | 'delete';
  readonly agent: Agent;
  readonly revision: number;
  /** A DELETE caused by a lease expiry. */
  readonly expired: boolean;
}

/** Rounds over every endpoint a watch retries before it gives up. */
export const WATCH_MAX_ROUNDS = 10;

/** The status of one endpoint in {@link RegistryClient.statusAll}: its status or its error. */
export type EndpointStatus =
  | { readonly endpoint: string; readonly status: ClusterStatus; readonly error?: undefined }
  | { readonly endpoint: string; readonly status?: undefined; readonly error: RegistryError };

/** Whether an operation reads or writes; it decides what is retried. */
type CallKind = 'read' | 'write';

/** A failed attempt that the retry loop may move past. */
class RetryableAttemptError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}

/**
 * A client of a registry cluster. Every method may throw {@link RegistryError}: `INVALID_ARGUMENT`
 * for bad input (checked before sending, naming the field), the server's status otherwise.
 * One gRPC channel per endpoint, opened lazily; call {@link close} when done.
 */
export class RegistryClient {
  private readonly endpoints: readonly string[];
  private readonly deadlineMs: number;
  private readonly readAttemptMs: number;
  private readonly logger: Logger;
  private readonly token: string | undefined;
  private readonly credentials: grpc.ChannelCredentials;
  private readonly channels = new Map<string, grpc.Client>();
  /** Index in `endpoints` of the endpoint that last answered. */
  private preferred = 0;
  private closed = false;

  /**
   * @throws ValidationError when `endpoints` is empty or holds a non-string or empty entry, or
   *   `deadlineMs` or `readAttemptMs` is not a positive number, or `tls` has a cert without a
   *   key or a key without a cert.
   */
  constructor(options: RegistryClientOptions) {
    const endpoints: unknown = options.endpoints;
    if (!Array.isArray(endpoints) || endpoints.length === 0) {
      throw new ValidationError('endpoints', 'must list at least one host:port');
    }
    endpoints.forEach((e: unknown, i) => {
      if (typeof e !== 'string' || e.trim() === '') throw new ValidationError(`endpoints[${i}]`, 'must be a non-empty host:port');
    });
    this.endpoints = (endpoints as string[]).map((e) => e.trim());
    this.deadlineMs = positiveMs(options.deadlineMs ?? DEFAULT_DEADLINE_MS, 'deadlineMs');
    this.readAttemptMs = positiveMs(options.readAttemptMs ?? DEFAULT_READ_ATTEMPT_MS, 'readAttemptMs');
    this.logger = (options.logger ?? silentLogger).child({ component: 'client' });
    if (options.token !== undefined && (typeof options.token !== 'string' || options.token.trim() === '')) throw new ValidationError('token', 'must be a non-empty string');
    this.token = options.token?.trim();
    if (options.tls && (options.tls.cert === undefined) !== (options.tls.key === undefined)) {
      throw new ValidationError('tls', 'cert and key go together: give both or neither');
    }
    this.credentials = options.tls ? clientChannelCredentials(options.tls) : grpc.credentials.createInsecure();
    this.clientId = randomUUID();
  }

  /** The metadata of every call: the bearer token, when the client has one. */
  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.token !== undefined) md.set('authorization', `Bearer ${this.token}`);
    return md;
  }

  /**
   * This client's exactly-once session id (thesis §6.3): every write carries it with the next
   * sequence number, and a retry of that write (on another endpoint, after a leader change)
   * carries the same pair, so the cluster applies it once.
   */
  readonly clientId: string;
  private sequence = 0;

  /**
   * Creates or replaces an agent. The spec is validated (and normalized) before it is sent.
   * @throws RegistryError `INVALID_ARGUMENT` naming the field, or the server's status.
   */
  async register(spec: AgentSpec, options: RegisterOptions = {}): Promise<RegisterResult> {
    const valid = guard(() => validateAgentSpec(spec));
    const agent = { ...specToWire(valid), ...(options.health ? { health: healthToWire(options.health) } : {}) };
    const res = await this.invoke('write', RegistryService.Register, {
      agent,
      client_id: this.clientId,
      sequence: ++this.sequence,
      ttl_seconds: options.ttlSeconds ?? 0,
      expected_revision: options.expectedRevision ?? 0,
      create_only: options.createOnly ?? false,
    });
    if (res.agent === null) throw new RegistryError(grpc.status.INTERNAL, 'server answered Register without an agent');
    return { agent: agentFromWire(res.agent), revision: Number(res.revision) };
  }

  /**
   * Reads one agent.
   * @throws RegistryError `NOT_FOUND` when absent, `INVALID_ARGUMENT` for a bad id.
   */
  async get(id: string, options: ReadOptions = {}): Promise<GetResult> {
    const valid = guard(() => validateId(id));
    const res = await this.invoke('read', RegistryService.Get, { id: valid, consistency: consistencyToWire(options.consistency) });
    if (res.agent === null) throw new RegistryError(grpc.status.NOT_FOUND, `agent ${valid} not found`);
    return { agent: agentFromWire(res.agent), revision: Number(res.revision) };
  }

  /**
   * Reads one page of agents matching every given filter, ordered by id.
   * @throws RegistryError `INVALID_ARGUMENT` for a bad filter, page size or page token.
   */
  async find(query: FindQuery = {}, options: ReadOptions = {}): Promise<FindResult> {
    const valid = guard(() => validateFindQuery(query));
    const res = await this.invoke('read', RegistryService.Find, findQueryToWire(valid, options.consistency));
    return {
      agents: (res.agents ?? []).map(agentFromWire),
      nextPageToken: res.next_page_token ?? '',
      revision: Number(res.revision),
    };
  }

  /**
   * Pages through every agent matching `query`, yielding one page at a time (starting from
   * `query.pageToken`, if any). Each page is a separate read, so pages may come from different
   * revisions.
   */
  async *findAll(query: FindQuery = {}, options: ReadOptions = {}): AsyncGenerator<FindResult, void, undefined> {
    let pageToken = query.pageToken ?? '';
    for (;;) {
      const page = await this.find({ ...query, pageToken }, options);
      yield page;
      if (page.nextPageToken === '') return;
      pageToken = page.nextPageToken;
    }
  }

  /**
   * Reads one page of a keyword search (`Registry.Search`): agents matching words of
   * `query.query` and every given filter, best first.
   * @throws RegistryError `INVALID_ARGUMENT` for an empty or oversized query, a bad filter, page size or page token.
   */
  async search(query: SearchQuery, options: ReadOptions = {}): Promise<SearchResult> {
    const valid = guard(() => validateSearchQuery(query));
    const res = await this.invoke('read', RegistryService.Search, searchQueryToWire(valid, options.consistency));
    return {
      results: (res.results ?? []).flatMap((r) => (r.agent ? [{ agent: agentFromWire(r.agent), score: Number(r.score) }] : [])),
      nextPageToken: res.next_page_token ?? '',
      revision: Number(res.revision),
    };
  }

  /**
   * The capabilities agents list, with how many list each, ordered by capability; only those
   * starting with `prefix` when given (`Registry.ListCapabilities`).
   * @throws RegistryError `INVALID_ARGUMENT` for a prefix over 128 characters.
   */
  async listCapabilities(prefix = '', options: ReadOptions = {}): Promise<{ capabilities: CapabilityCount[]; revision: number }> {
    const valid = guard(() => validateCapabilityPrefix(prefix));
    const res = await this.invoke('read', RegistryService.ListCapabilities, listCapabilitiesToWire(valid, options.consistency));
    return { capabilities: (res.capabilities ?? []).map((c) => ({ capability: c.capability ?? '', count: Number(c.count) })), revision: Number(res.revision) };
  }

  /**
   * Every version of the agents named `name` (`Agent.name`, exactly), latest first
   * (`Registry.ListVersions`: semantic version precedence, then publication order).
   * @throws RegistryError `NOT_FOUND` for a name no agent has, `INVALID_ARGUMENT` for an empty
   * or over-long name.
   */
  async listVersions(name: string, options: ReadOptions = {}): Promise<{ agents: Agent[]; latestId: string; revision: number }> {
    if (typeof name !== 'string' || name === '') throw new RegistryError(grpc.status.INVALID_ARGUMENT, 'name must not be empty');
    const res = await this.invoke('read', RegistryService.ListVersions, { name, consistency: consistencyToWire(options.consistency) });
    return { agents: (res.agents ?? []).map(agentFromWire), latestId: res.latest_id ?? '', revision: Number(res.revision) };
  }

  /**
   * Removes an agent; an absent id answers `deleted: false`.
   * @throws RegistryError `INVALID_ARGUMENT` for a bad id.
   */
  async deregister(id: string, options: { expectedRevision?: number } = {}): Promise<DeregisterResult> {
    const valid = guard(() => validateId(id));
    const res = await this.invoke('write', RegistryService.Deregister, { id: valid, client_id: this.clientId, sequence: ++this.sequence, expected_revision: options.expectedRevision ?? 0 });
    return { deleted: Boolean(res.deleted), revision: Number(res.revision) };
  }

  /**
   * Renews the lease of agent `id` (through any endpoint; the cluster forwards it to the leader),
   * reporting `health` if given. Resolves with the lease length in seconds.
   * @throws RegistryError `NOT_FOUND` when the agent is unknown or its lease expired (register
   *   again), `FAILED_PRECONDITION` when it has no lease.
   */
  async heartbeat(id: string, health?: Health): Promise<{ ttlSeconds: number }> {
    const valid = guard(() => validateId(id));
    const res = await this.invoke('write', RegistryService.Heartbeat, { id: valid, health: health ? healthToWire(health) : 'HEALTH_UNSPECIFIED' });
    return { ttlSeconds: Number(res.ttl_seconds) };
  }

  /**
   * Follows changes from `fromRevision` (0: from now), in revision order. When a node fails the
   * stream resumes on the next endpoint from the last revision seen plus one, so nothing is missed
   * or repeated. Ends when `signal` aborts.
   * @throws RegistryError `OUT_OF_RANGE` when `fromRevision` is older than the history kept
   *   (its message names the oldest revision), or the last error once every endpoint failed.
   */
  async *watch(filter: { idPrefix?: string; capability?: string; kind?: string } = {}, fromRevision = 0, signal?: AbortSignal): AsyncGenerator<ClientWatchEvent> {
    let next = fromRevision;
    let failures = 0;
    let index = this.preferred;
    while (!signal?.aborted) {
      const endpoint = this.endpoints[index % this.endpoints.length] as string;
      try {
        const channel = this.channel(endpoint);
        await connect(channel, endpoint, Date.now() + CONNECT_TIMEOUT_MS);
        // "From now" is pinned to an explicit revision first, so that a stream resumed on another
        // node after a failure continues exactly where this one would have started.
        if (next === 0) next = (await this.status(endpoint)).appliedIndex + 1;
        const call = channel.makeServerStreamRequest(
          RegistryService.Watch.path,
          RegistryService.Watch.requestSerialize,
          RegistryService.Watch.responseDeserialize,
          { start_revision: next, id_prefix: filter.idPrefix ?? '', capability: filter.capability ?? '', kind: filter.kind ?? '' },
          this.metadata(),
          {},
        );
        const onAbort = () => call.cancel();
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          for await (const w of call as AsyncIterable<WireWatchEvent>) {
            failures = 0;
            const e: ClientWatchEvent = { type: w.type === 'EVENT_TYPE_DELETE' ? 'delete' : 'put', agent: agentFromWire(w.agent as WireAgent), revision: Number(w.revision), expired: Boolean(w.expired) };
            // A resumed stream starts at `next`; everything before was delivered already.
            next = e.revision + 1;
            yield e;
          }
        } finally {
          signal?.removeEventListener('abort', onAbort);
        }
        if (signal?.aborted) return;
      } catch (e) {
        if (signal?.aborted) return;
        if (isServiceError(e) && e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.CANCELLED && e.code !== grpc.status.RESOURCE_EXHAUSTED) {
          throw toRegistryError(e, endpoint);
        }
        if (++failures > this.endpoints.length * WATCH_MAX_ROUNDS) throw isServiceError(e) ? toRegistryError(e, endpoint) : e;
        index++;
        await sleep(backoffDelayMs(Math.ceil(failures / this.endpoints.length)));
      }
      // A stream that ended cleanly (node stopping) resumes elsewhere from `next`.
      index++;
    }
  }

  /**
   * Hands leadership to member `targetId` (thesis §3.10) through any endpoint; resolves with
   * the new leader and its term once the target leads.
   * @throws RegistryError `INVALID_ARGUMENT` for an unknown member, `UNAVAILABLE`, `DEADLINE_EXCEEDED`.
   */
  async transferLeadership(targetId: string): Promise<{ leaderId: string; term: number }> {
    const valid = guard(() => validateId(targetId, 'target_id'));
    const res = await this.invoke('write', ClusterService.TransferLeadership, { target_id: valid });
    return { leaderId: res.leader_id, term: Number(res.term) };
  }

  /**
   * Adds member `id` at `address` (thesis §4.1): a learner first, promoted to voter once caught
   * up unless `learner` is set. Resolves with the membership after the change.
   * @throws RegistryError `ALREADY_EXISTS`, `INVALID_ARGUMENT`, `UNAVAILABLE` (another change pending), `DEADLINE_EXCEEDED`.
   */
  async addMember(id: string, address: string, learner = false): Promise<{ members: ClusterMember[]; revision: number }> {
    const valid = guard(() => validateId(id, 'id'));
    const res = await this.invoke('write', ClusterService.AddMember, { id: valid, address, learner });
    return { members: res.members.map((m) => ({ id: m.id, address: m.address, voter: Boolean(m.voter) })), revision: Number(res.revision) };
  }

  /**
   * Removes member `id`; a removed leader steps down.
   * @throws RegistryError `NOT_FOUND`, `FAILED_PRECONDITION` (last voter), `UNAVAILABLE`.
   */
  async removeMember(id: string): Promise<{ members: ClusterMember[]; revision: number }> {
    const valid = guard(() => validateId(id, 'id'));
    const res = await this.invoke('write', ClusterService.RemoveMember, { id: valid });
    return { members: res.members.map((m) => ({ id: m.id, address: m.address, voter: Boolean(m.voter) })), revision: Number(res.revision) };
  }

  /**
   * Promotes learner `id` to voter.
   * @throws RegistryError `NOT_FOUND`, `FAILED_PRECONDITION` (not a learner, or lagging), `UNAVAILABLE`.
   */
  async promoteMember(id: string): Promise<{ members: ClusterMember[]; revision: number }> {
    const valid = guard(() => validateId(id, 'id'));
    const res = await this.invoke('write', ClusterService.PromoteMember, { id: valid });
    return { members: res.members.map((m) => ({ id: m.id, address: m.address, voter: Boolean(m.voter) })), revision: Number(res.revision) };
  }

  /**
   * Saves a consistent backup of one node's state machine to `file` (written to `file.tmp`, then
   * renamed, so a failed save never leaves a partial file under `file`). Tries the endpoints in
   * turn until one streams it. Resolves with the bytes written.
   * @throws RegistryError from the last endpoint tried.
   */
  async saveSnapshot(file: string): Promise<{ bytes: number; endpoint: string }> {
    let last: unknown;
    for (const endpoint of this.endpoints) {
      const tmp = `${file}.tmp`;
      try {
        const channel = this.channel(endpoint);
        await connect(channel, endpoint, Date.now() + CONNECT_TIMEOUT_MS);
        const out = createWriteStream(tmp);
        const call = channel.makeServerStreamRequest(
          ClusterService.Snapshot.path,
          ClusterService.Snapshot.requestSerialize,
          ClusterService.Snapshot.responseDeserialize,
          {},
          this.metadata(),
          { deadline: Date.now() + this.deadlineMs * 30 },
        );
        let bytes = 0;
        for await (const chunk of call as AsyncIterable<{ data: Uint8Array }>) {
          bytes += chunk.data.byteLength;
          if (!out.write(chunk.data)) await new Promise<void>((r) => out.once('drain', () => r()));
        }
        await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
        await rename(tmp, file);
        return { bytes, endpoint };
      } catch (e) {
        last = e;
        await rm(tmp, { force: true });
        if (isServiceError(e) && !isRetryable(e.code, 'read')) throw toRegistryError(e, endpoint);
      }
    }
    throw isServiceError(last) ? toRegistryError(last, this.endpoints[this.endpoints.length - 1] as string) : last;
  }

  /**
   * The status of one node: of `endpoint` if given (one attempt, no failover), else of the first
   * endpoint that answers.
   */
  async status(endpoint?: string): Promise<ClusterStatus> {
    if (endpoint === undefined) return statusFromWire(await this.invoke('read', ClusterService.Status, {}));
    const deadline = Date.now() + this.deadlineMs;
    try {
      return statusFromWire(await this.attempt(endpoint, ClusterService.Status, {}, deadline));
    } catch (e) {
      throw toRegistryError(e, endpoint);
    }
  }

  /** The status of every endpoint, in the order given, each with its status or its error. Never throws. */
  async statusAll(): Promise<EndpointStatus[]> {
    return Promise.all(
      this.endpoints.map(async (endpoint): Promise<EndpointStatus> => {
        try {
          return { endpoint, status: await this.status(endpoint) };
        } catch (e) {
          return { endpoint, error: toRegistryError(e, endpoint) };
        }
      }),
    );
  }

  /** Whether auth is on at the node that answers, its key ids, and who this client's token says it is (`Auth.AuthStatus`). */
  async authStatus(): Promise<AuthStatusResponse> {
    return this.invoke('read', AuthService.AuthStatus, {});
  }

  /**
   * Creates a token (`Auth.CreateToken`, admin): `role` reader, writer (with `namespaces`) or
   * admin, living `ttlSeconds` (0: no expiry).
   * @throws RegistryError `INVALID_ARGUMENT` (bad role, namespace or ttl), `PERMISSION_DENIED`, `FAILED_PRECONDITION` (no signing key yet).
   */
  async createToken(options: { role: string; namespaces?: readonly string[]; ttlSeconds?: number; name?: string }): Promise<CreateTokenResponse> {
    return this.invoke('read', AuthService.CreateToken, { role: options.role, namespaces: [...(options.namespaces ?? [])], ttl_seconds: options.ttlSeconds ?? 0, name: options.name ?? '' });
  }

  /** Revokes a token by id (`Auth.RevokeToken`, admin). */
  async revokeToken(tokenId: string): Promise<{ revision: number }> {
    const res = await this.invoke('write', AuthService.RevokeToken, { token_id: tokenId });
    return { revision: Number(res.revision) };
  }

  /** Creates a new signing key (`Auth.RotateSigningKey`, admin); with `retirePrevious`, tokens of earlier keys stop verifying. */
  async rotateSigningKey(retirePrevious = false): Promise<{ revision: number; keyId: string }> {
    const res = await this.invoke('write', AuthService.RotateSigningKey, { retire_previous: retirePrevious });
    return { revision: Number(res.revision), keyId: res.key_id };
  }

  /** Trusts an Ed25519 public JWK (JSON text) for card signatures under `keyId` (`Auth.TrustCardKey`, admin). */
  async trustCardKey(keyId: string, publicJwk: string): Promise<{ revision: number }> {
    const res = await this.invoke('write', AuthService.TrustCardKey, { key_id: keyId, public_jwk: publicJwk });
    return { revision: Number(res.revision) };
  }

  /** Stops trusting a card key (`Auth.UntrustCardKey`, admin). */
  async untrustCardKey(keyId: string): Promise<{ revision: number }> {
    const res = await this.invoke('write', AuthService.UntrustCardKey, { key_id: keyId });
    return { revision: Number(res.revision) };
  }

  /** Closes every channel. Later calls fail with `CANCELLED`. */
  close(): void {
    this.closed = true;
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  /**
   * Runs one operation with failover and back-off within the overall deadline.
   * @throws RegistryError with the first non-retryable status, or the last status when the
   *   deadline ran out.
   */
  private async invoke<Req, Res>(kind: CallKind, method: grpc.MethodDefinition<Req, Res>, request: Req): Promise<Res> {
    const deadline = Date.now() + this.deadlineMs;
    const n = this.endpoints.length;
    const start = this.preferred;
    let last: RetryableAttemptError | undefined;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0 && attempt % n === 0) {
        const round = attempt / n;
        const delayMs = backoffDelayMs(round);
        if (Date.now() + delayMs >= deadline) break;
        this.logger.debug({ round, delayMs, path: method.path }, 'every endpoint failed; backing off');
        await sleep(delayMs);
      }
      if (Date.now() >= deadline) break;
      const index = (start + attempt) % n;
      const endpoint = this.endpoints[index] as string;
      const attemptDeadline = kind === 'read' ? Math.min(deadline, Date.now() + this.readAttemptMs) : deadline;
      try {
        const res = await this.attempt(endpoint, method, request, attemptDeadline);
        this.preferred = index;
        return res;
      } catch (e) {
        if (e instanceof RetryableAttemptError) {
          last = e;
          this.logger.debug({ endpoint, code: statusName(e.code), path: method.path }, 'endpoint failed; trying the next');
          continue;
        }
        if (isServiceError(e) && isRetryable(e.code, kind)) {
          last = new RetryableAttemptError(e.code, e.details ?? e.message);
          this.logger.debug({ endpoint, code: statusName(e.code), path: method.path }, 'endpoint failed; trying the next');
          continue;
        }
        if (isServiceError(e) && !(e instanceof RegistryError)) this.preferred = index; // it answered
        throw toRegistryError(e, endpoint);
      }
    }
    const code = last?.code ?? grpc.status.DEADLINE_EXCEEDED;
    const why = last === undefined ? 'no attempt completed' : `last error: ${last.details}`;
    throw new RegistryError(code, `no endpoint of ${this.endpoints.join(',')} answered within ${this.deadlineMs} ms (${why})`);
  }

  /**
   * One call on one endpoint: connects (bounded by {@link CONNECT_TIMEOUT_MS}), then sends.
   * A failure to connect throws {@link RetryableAttemptError} with `UNAVAILABLE`; a status
   * error is rethrown as the gRPC `ServiceError`.
   */
  private async attempt<Req, Res>(endpoint: string, method: grpc.MethodDefinition<Req, Res>, request: Req, deadline: number): Promise<Res> {
    if (this.closed) throw new RegistryError(grpc.status.CANCELLED, 'client is closed');
    const channel = this.channel(endpoint);
    await connect(channel, endpoint, Math.min(deadline, Date.now() + CONNECT_TIMEOUT_MS));
    return new Promise<Res>((resolve, reject) => {
      channel.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.metadata(),
        { deadline },
        (err, res) => {
          if (err) reject(err);
          else if (res === undefined) reject(new RegistryError(grpc.status.INTERNAL, `empty response from ${method.path}`, endpoint));
          else resolve(res);
        },
      );
    });
  }

  /** The channel of `endpoint`, created on first use. */
  private channel(endpoint: string): grpc.Client {
    let channel = this.channels.get(endpoint);
    if (channel === undefined) {
      channel = new grpc.Client(endpoint, this.credentials, {
        'grpc.initial_reconnect_backoff_ms': CHANNEL_INITIAL_RECONNECT_BACKOFF_MS,
        'grpc.max_reconnect_backoff_ms': CHANNEL_MAX_RECONNECT_BACKOFF_MS,
        'grpc-node.flow_control_window': CHANNEL_FLOW_CONTROL_WINDOW_BYTES,
      });
      this.channels.set(endpoint, channel);
    }
    return channel;
  }
}

/** Checks a duration option. @throws ValidationError naming `field`. */
function positiveMs(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ValidationError(field, `must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}

/** Whether a status moves the call to the next endpoint. */
function isRetryable(code: number, kind: CallKind): boolean {
  return code === grpc.status.UNAVAILABLE || (kind === 'read' && code === grpc.status.DEADLINE_EXCEEDED);
}

/**
 * Waits until the channel is connected. Throws a retryable `UNAVAILABLE` as soon as the
 * connection fails (state TRANSIENT_FAILURE, e.g. connection refused) or at `deadline`.
 */
function connect(channel: grpc.Client, endpoint: string, deadline: number): Promise<void> {
  const ch = channel.getChannel();
  const fail = (why: string) => new RetryableAttemptError(grpc.status.UNAVAILABLE, `cannot connect to ${endpoint}: ${why}`);
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const state = ch.getConnectivityState(true);
      switch (state) {
        case grpc.connectivityState.READY:
          return resolve();
        case grpc.connectivityState.TRANSIENT_FAILURE:
          return reject(fail('connection failed'));
        case grpc.connectivityState.SHUTDOWN:
          return reject(new RegistryError(grpc.status.CANCELLED, 'client is closed', endpoint));
        default:
          ch.watchConnectivityState(state, deadline, (err?: Error) => {
            if (err) reject(fail('not connected in time'));
            else check();
          });
      }
    };
    check();
  });
}

/** Back-off before round `round` (1-based): base × 2^(round-1), capped, with ±50% jitter. */
function backoffDelayMs(round: number): number {
  const capped = Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * 2 ** Math.min(round - 1, 30));
  return Math.round(capped * (0.5 + Math.random() / 2));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs a validation, turning a {@link ValidationError} into `INVALID_ARGUMENT`. */
function guard<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof ValidationError) throw new RegistryError(grpc.status.INVALID_ARGUMENT, e.message);
    throw e;
  }
}

/** Any failure as a {@link RegistryError}. */
function toRegistryError(e: unknown, endpoint: string): RegistryError {
  if (e instanceof RegistryError) return e;
  if (e instanceof RetryableAttemptError) return new RegistryError(e.code, e.details, endpoint);
  if (isServiceError(e)) return new RegistryError(e.code, e.details ?? e.message, endpoint);
  return new RegistryError(grpc.status.UNKNOWN, e instanceof Error ? e.message : String(e), endpoint);
}
