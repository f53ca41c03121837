/**
 * The client API handlers, written once for every front end (gRPC today; the simulator calls
 * them directly): `registry.v1.Registry` and `registry.v1.Cluster` in their wire shapes.
 *
 * Every node accepts every call:
 * - Writes (Register, Deregister, Heartbeat, membership changes, leader transfer) are proposed on
 *   the leader. A follower forwards the request to the leader it knows over a
 *   {@link LeaderLink}, then (for Register and Deregister) waits until it has applied the write
 *   itself, so a client that reads from the same node right after sees its write.
 * - Linearizable reads (the default) pass a ReadIndex barrier (thesis §6.4) and are then served
 *   from this node's state machine; serializable reads are served locally at once.
 *
 * With auth on (`ApiContext.auth`), every call but `Status` and `AuthStatus` carries a bearer
 * token (`CallContext.token`), verified against the replicated signing keys; its role and
 * namespaces decide what it may do (`src/auth/tokens.ts`), and calls are rate-limited per
 * principal and per remote address (`src/auth/rate-limits.ts`). A forwarded call carries the
 * caller's token, and the leader checks it again.
 *
 * Errors are {@link ApiError}s: `INVALID_ARGUMENT` naming the field; `NOT_FOUND`;
 * `UNAUTHENTICATED` (no token, or one refused) and `PERMISSION_DENIED` (its role or namespaces
 * do not allow the call); `RESOURCE_EXHAUSTED` over a rate limit, with when to retry;
 * `FAILED_PRECONDITION` for a failed condition; `UNAVAILABLE` when there is no leader or quorum,
 * or a write's entry was lost to a leader change (safe to retry); `DEADLINE_EXCEEDED` when the
 * request did not complete within its budget (outcome unknown for writes); `INTERNAL` for
 * anything else (logged).
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.js';
import { verifyCardSignatures } from '../auth/card-signatures.js';
import type { CallClass, RateLimits } from '../auth/rate-limits.js';
import {
  ANONYMOUS_PRINCIPAL,
  AuthError,
  checkPermission,
  generateSigningKey,
  mintToken,
  TokenVerifier,
  type Permission,
  type Principal,
  type Role,
} from '../auth/tokens.js';
import { nodeId, type NodeId } from '../raft/types.js';
import { encodeCommand } from '../registry/commands.js';
import type { AuthState } from '../registry/auth-state.js';
import type { RegistryStateMachine } from '../registry/state-machine.js';
import type { Agent, AgentSpec, AuthChange, CardCheck, Command, CommandResult, Member, MemberChange } from '../registry/types.js';
import { ValidationError, validateHealth, validateId, validateSession, validateTtlSeconds } from '../registry/validation.js';
import { validateAgentRef, validateVersionsName, VersionCursorError, type VersionPageItem, type VersionPageQuery } from '../registry/versions.js';
import { backupStream } from '../server/backup.js';
import { sleep, type Clock } from '../server/ports.js';
import { NotLeaderError, UnavailableError } from '../server/proposals.js';
import type { RaftNode } from '../server/raft-node.js';
import { WatchError, type WatchHub } from '../server/watch-hub.js';
import type { NodeStore } from '../storage/types.js';
import {
  agentToWire,
  consistencyFromWire,
  findQueryFromWire,
  listCapabilitiesFromWire,
  memberToWire,
  searchQueryFromWire,
  specFromWire,
  statusToWire,
  type ClusterMember,
  type AddMemberRequest,
  type AuthStatusResponse,
  type AuthWriteResponse,
  type CreateTokenRequest,
  type CreateTokenResponse,
  type RevokeTokenRequest,
  type RotateSigningKeyRequest,
  type TrustCardKeyRequest,
  type UntrustCardKeyRequest,
  type DeregisterRequest,
  type DeregisterResponse,
  type FindRequest,
  type FindResponse,
  type GetRequest,
  type GetResponse,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type ListCapabilitiesRequest,
  type ListCapabilitiesResponse,
  type SearchRequest,
  type SearchResponse,
  type ListVersionsRequest,
  type ListVersionsResponse,
  type MemberListResponse,
  type PromoteMemberRequest,
  type RegisterRequest,
  type RegisterResponse,
  type RemoveMemberRequest,
  type StatusResponse,
  type TransferLeadershipRequest,
  type TransferLeadershipResponse,
  type WatchRequest,
  type WireAgent,
  type WireWatchEvent,
} from './registry-proto.js';
import { wireAgentOf } from './agent-encoding.js';
import { ApiError, Code, toApiError } from './status.js';

/** Longest a request waits for commit, apply or a read barrier when the client set no deadline, in ms. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Longest budget a request may ask for, in ms (a deadline further out is cut to this). */
export const MAX_REQUEST_TIMEOUT_MS = 6 * DEFAULT_REQUEST_TIMEOUT_MS;
/** Longest id_prefix, capability or kind filter of a watch, in characters. */
export const MAX_WATCH_FILTER_CHARS = 256;
/** A learner is promoted only when it is at most this many entries behind the leader's log. */
export const PROMOTE_MAX_LAG_ENTRIES = 1_000;
/** Longest `host:port` accepted for a member address, in characters. */
export const MAX_ADDRESS_CHARS = 256;
/** How often a leadership transfer or a catching-up learner is looked at again, in ms. */
export const TRANSFER_POLL_MS = 20;

/** How one call reached this node. */
export interface CallContext {
  /** Time left for the call, in ms (the client's deadline, else {@link DEFAULT_REQUEST_TIMEOUT_MS}). */
  readonly budgetMs: number;
  /** The node that forwarded this request, if any: it is never forwarded again. */
  readonly forwardedBy?: string;
  /** The bearer token the caller sent (gRPC `authorization` metadata, HTTP `Authorization`), without `Bearer `. */
  readonly token?: string;
  /** The caller's IP address, for the per-address rate limits. */
  readonly remoteAddress?: string;
}

/**
 * The token of an `Authorization` value `Bearer <token>` (case-insensitive scheme), or
 * undefined: how both front ends read the credential of a call (gRPC metadata `authorization`,
 * the HTTP `Authorization` header).
 */
export function bearerToken(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(value);
  return m ? m[1] : undefined;
}

/** Seconds per millisecond of a wall clock (Unix ms → s). */
const MS_PER_SECOND = 1_000;
/** Longest id of a token or a card key accepted by the auth calls, in characters. */
export const MAX_AUTH_ID_CHARS = 128;
/** Largest public JWK accepted for a trusted card key, in characters. */
export const MAX_JWK_CHARS = 4_096;
/** How often a leader with auth on and no signing key tries to create the bootstrap key, in ms. */
export const AUTH_BOOTSTRAP_RETRY_MS = 1_000;

/** How the API checks callers (absent: no checks, every caller is `anonymous`). */
export interface ApiAuthOptions {
  /** Whether every call (but Status and AuthStatus) needs a valid token. */
  readonly enabled: boolean;
  /** The per-principal and per-address limits (absent: none). */
  readonly rateLimits?: RateLimits;
  /** Refuse registers whose card does not carry a signature that verifies with a trusted key. */
  readonly requireSignedCards?: boolean;
}

/** The budget of a call whose client set `deadlineInMs` (ms from now; undefined or infinite: none). */
export function budgetFrom(deadlineInMs: number | undefined): number {
  if (deadlineInMs === undefined || !Number.isFinite(deadlineInMs)) return DEFAULT_REQUEST_TIMEOUT_MS;
  return Math.max(0, Math.min(deadlineInMs, MAX_REQUEST_TIMEOUT_MS));
}

/** Requests and responses of the calls a follower forwards to its leader. */
export interface ForwardedCalls {
  Register: [RegisterRequest, RegisterResponse];
  Deregister: [DeregisterRequest, DeregisterResponse];
  Heartbeat: [HeartbeatRequest, HeartbeatResponse];
  AddMember: [AddMemberRequest, MemberListResponse];
  RemoveMember: [RemoveMemberRequest, MemberListResponse];
  PromoteMember: [PromoteMemberRequest, MemberListResponse];
  TransferLeadership: [TransferLeadershipRequest, TransferLeadershipResponse];
  RevokeToken: [RevokeTokenRequest, AuthWriteResponse];
  RotateSigningKey: [RotateSigningKeyRequest, AuthWriteResponse];
  TrustCardKey: [TrustCardKeyRequest, AuthWriteResponse];
  UntrustCardKey: [UntrustCardKeyRequest, AuthWriteResponse];
}

/** The name of a call a follower forwards. */
export type ForwardedMethod = keyof ForwardedCalls;

/**
 * How a follower reaches its leader's API (a port: gRPC clients in production, the simulated
 * network in the simulator). The request arrives marked as forwarded by `from`.
 */
export interface LeaderLink {
  /**
   * Calls `method` on member `to`; resolves with its response, rejects with an {@link ApiError}
   * carrying the leader's status (or `UNAVAILABLE` / `DEADLINE_EXCEEDED` when it cannot be
   * reached within `budgetMs`). `token` is the caller's bearer token, passed on for the leader
   * to check again.
   */
  call<M extends ForwardedMethod>(to: Member, method: M, request: ForwardedCalls[M][0], budgetMs: number, from: string, token?: string): Promise<ForwardedCalls[M][1]>;
  /**
   * Asks member `to` for its `Cluster.Status` (how a node learns its peers' HTTP addresses).
   * Optional: without it, peers' HTTP addresses stay unknown.
   */
  status?(to: Member, budgetMs: number): Promise<StatusResponse>;
  /** Closes every connection. */
  close(): void;
}

/** How long a learned peer HTTP address is trusted before it is asked again, in ms. */
export const PEER_HTTP_ADDRESS_TTL_MS = 10_000;
/** Budget of one peer `Status` call made to learn its HTTP address, in ms. */
export const PEER_STATUS_BUDGET_MS = 1_000;

/** Where a watch's events go (the front end's stream). */
export interface WatchStream {
  /** Writes one event; returns false when the consumer is full (back-pressure). */
  write(e: WireWatchEvent): boolean;
  /** Calls `resume` once the consumer has room again. */
  onDrain(resume: () => void): void;
  /** Ends the stream with an error. */
  fail(err: ApiError): void;
}

/** What the handlers need from the node. */
export interface ApiContext {
  readonly id: NodeId;
  /** The node's store, for backups. */
  readonly store: NodeStore;
  /** Serves watches from this node's applied state. */
  readonly watchHub: WatchHub;
  readonly raft: RaftNode;
  readonly stateMachine: RegistryStateMachine;
  /** The cluster's members as this node knows them (replicated membership record). */
  readonly members: () => readonly Member[];
  readonly clock: Clock;
  readonly leaderLink: LeaderLink;
  readonly logger: Logger;
  /** This node's HTTP/JSON address, `host:port`, reported in its status ('' or absent: none). */
  readonly httpAddress?: string;
  /**
   * Shortest lease accepted, in seconds (default `MIN_TTL_SECONDS`, right for the default
   * timing). It must exceed two election timeouts and a heartbeat, or a failover could expire a
   * live agent.
   */
  readonly minLeaseTtlSeconds?: number;
  /** Tokens, roles, rate limits and card signature rules (absent: none). */
  readonly auth?: ApiAuthOptions;
}

/** Checks an optional revision (uint64 on the wire; 0 = none), naming `field`. */
function validateRevision(value: unknown, field: string): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0) throw new ValidationError(field, 'must be a non-negative integer');
  return n;
}

/** Checks a `host:port` address, naming `field` in the error. */
function validateAddress(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ADDRESS_CHARS || !/^[^\s:]+(:[^\s:]+)*:\d{1,5}$/.test(value)) {
    throw new ValidationError(field, 'must be host:port');
  }
  const port = Number(value.slice(value.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) throw new ValidationError(field, 'port must be 1-65535');
  return value;
}

/** A failed compare-and-set, as FAILED_PRECONDITION with the current revision. */
function conflictError(r: Extract<CommandResult, { type: 'conflict' }>): ApiError {
  return new ApiError(Code.FAILED_PRECONDITION, `${r.reason}; current revision ${r.currentRevision}`);
}

/** The registry's client API on one node. */
export class RegistryApi {
  private readonly log: Logger;
  private requestSeq = 0;
  /** Peers' HTTP addresses as they reported them: member id → address and when it was learned. */
  private readonly peerHttp = new Map<string, { address: string; at: number }>();
  private readonly peerHttpAsking = new Set<string>();
  private readonly verifier: TokenVerifier;
  private bootstrapping = false;
  private lastBootstrapAttempt = Number.NEGATIVE_INFINITY;
  /** {@link trustedCardKeys}, and the auth state they were parsed from. */
  private cardKeys: { state: AuthState; keys: ReadonlyMap<string, Record<string, unknown>> } | undefined;

  constructor(private readonly ctx: ApiContext) {
    this.log = ctx.logger;
    this.verifier = new TokenVerifier(() => ctx.stateMachine.authState(), () => Math.floor(ctx.clock.wallNow() / MS_PER_SECOND));
  }

  /** Whether this node checks tokens. */
  get authEnabled(): boolean {
    return this.ctx.auth?.enabled === true;
  }

  /**
   * Who is calling: the verified principal of the call's token (auth on), or `undefined` (auth
   * off: the caller is {@link ANONYMOUS_PRINCIPAL}); then charges the call to the rate limits
   * of `kind` (a forwarded call only to its principal's: the forwarding node's address is not
   * the caller's). @throws ApiError `UNAUTHENTICATED` (no token or a refused one) or
   * `RESOURCE_EXHAUSTED` (over a limit, with `retryAfterMs`).
   */
  private async authenticate(call: CallContext, kind: CallClass | undefined): Promise<Principal | undefined> {
    let principal: Principal | undefined;
    if (this.authEnabled) {
      if (call.token === undefined || call.token === '') {
        throw new ApiError(Code.UNAUTHENTICATED, 'this cluster requires a bearer token (gRPC metadata "authorization: Bearer <token>" or the HTTP Authorization header); create one with `registry token create`');
      }
      try {
        principal = await this.verifier.verify(call.token);
      } catch (err) {
        // A refused token still costs its sender's address a read, so that a flood of bad
        // tokens (each a signature check) is limited like any other.
        const limits = this.ctx.auth?.rateLimits;
        if (limits !== undefined && call.forwardedBy === undefined) {
          const decision = await limits.consume('read', undefined, call.remoteAddress);
          if (!decision.allowed) throw rateLimited(decision);
        }
        throw authToApi(err);
      }
    }
    const limits = this.ctx.auth?.rateLimits;
    if (limits !== undefined && kind !== undefined) {
      const address = call.forwardedBy === undefined ? call.remoteAddress : undefined;
      const decision = await limits.consume(kind, principal?.name, address);
      if (!decision.allowed) throw rateLimited(decision);
    }
    return principal;
  }

  /**
   * Checks that `principal` (from {@link authenticate}; undefined without auth) may do
   * `permission` on `ids`; returns its name (for `modified_by`).
   * @throws ApiError `PERMISSION_DENIED` naming the role or namespace that is missing.
   */
  private authorize(principal: Principal | undefined, permission: Permission, ids: readonly string[] = []): string {
    if (principal === undefined) return ANONYMOUS_PRINCIPAL;
    try {
      checkPermission(principal, permission, ids);
    } catch (err) {
      throw authToApi(err);
    }
    return principal.name;
  }

  /**
   * {@link authenticate} charged to `permission`'s class, then {@link authorize}: for calls whose
   * ids are known before their request is validated (reads, admin calls).
   */
  private async admit(call: CallContext, permission: Permission): Promise<string> {
    return this.authorize(await this.authenticate(call, permission === 'read' ? 'read' : undefined), permission);
  }

  /**
   * What the card's signatures say (A2A v1.0 AgentCard `signatures`), checked against the
   * trusted card keys; with `requireSignedCards`, anything but a verified signature is
   * `INVALID_ARGUMENT` (field `agent.card`).
   */
  private async checkCard(spec: AgentSpec): Promise<CardCheck | undefined> {
    const required = this.ctx.auth?.requireSignedCards === true;
    if (spec.card === undefined || spec.cardFormat !== 'a2aAgentCard') {
      if (required) throw new ValidationError('agent.card', 'this cluster requires a signed A2A AgentCard (--require-signed-cards)');
      return undefined;
    }
    let card: unknown;
    try {
      card = JSON.parse(spec.card);
    } catch {
      card = undefined;
    }
    const result = await verifyCardSignatures(card, this.trustedCardKeys());
    if (required && result.status !== 'verified') {
      throw new ValidationError('agent.card.signatures', result.status === 'unsigned' ? 'this cluster requires a signed card (--require-signed-cards); the card has no signatures' : result.reason);
    }
    if (result.status === 'verified') return { verifiedKeyId: result.keyId };
    if (result.status === 'failed') return { signatureError: result.reason };
    return undefined;
  }

  /** The trusted card keys as JWKs, parsed once per auth state (the state is immutable; a change makes a new one). */
  private trustedCardKeys(): ReadonlyMap<string, Record<string, unknown>> {
    const state = this.ctx.stateMachine.authState();
    if (this.cardKeys?.state !== state) {
      const keys = new Map<string, Record<string, unknown>>();
      for (const [kid, jwk] of state.cardKeys) keys.set(kid, JSON.parse(jwk) as Record<string, unknown>);
      this.cardKeys = { state, keys };
    }
    return this.cardKeys.keys;
  }

  /** Runs `body` and turns what it throws into an {@link ApiError}. */
  private async guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      throw toApiError(err, this.log);
    }
  }

  /** `p`, or `DEADLINE_EXCEEDED` after `ms` milliseconds of the node's clock. */
  private withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = this.ctx.clock.setTimer(ms, () => reject(new ApiError(Code.DEADLINE_EXCEEDED, `${what} did not complete within ${Math.round(ms)} ms`)));
      p.then(
        (v) => {
          t.cancel();
          resolve(v);
        },
        (e: unknown) => {
          t.cancel();
          reject(e);
        },
      );
    });
  }

  // -------------------------------------------------------------------------------------------
  // registry.v1.Registry

  /** `Registry.Register`: create or replace one agent (with a lease, or conditionally). */
  register(req: RegisterRequest, call: CallContext): Promise<RegisterResponse> {
    return this.guard(async () => {
      const who = await this.authenticate(call, 'write');
      const spec = specFromWire(req.agent, 'agent');
      const principal = this.authorize(who, 'write', [spec.id]);
      // The leader checks the card; a follower only forwards the request.
      const cardCheck = this.ctx.raft.isLeader ? await this.checkCard(spec) : undefined;
      const session = validateSession(req.client_id, req.sequence);
      const ttlSeconds = validateTtlSeconds(req.ttl_seconds ?? 0, 'ttl_seconds', this.ctx.minLeaseTtlSeconds);
      const health = validateHealth(req.agent?.health ?? 'HEALTH_UNSPECIFIED', 'agent.health');
      const expectedRevision = validateRevision(req.expected_revision, 'expected_revision');
      const createOnly = Boolean(req.create_only);
      const cmd: Command = {
        type: 'register',
        requestId: this.nextRequestId(),
        agent: spec,
        ...(session ? { session } : {}),
        ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
        ...(health !== 'unspecified' ? { health } : {}),
        ...(expectedRevision > 0 ? { expectedRevision } : {}),
        ...(createOnly ? { createOnly } : {}),
        principal,
        ...(cardCheck ? { cardCheck } : {}),
      };
      const wire: RegisterRequest = {
        agent: req.agent,
        client_id: session?.clientId ?? '',
        sequence: session?.sequence ?? 0,
        ttl_seconds: ttlSeconds,
        expected_revision: expectedRevision,
        create_only: createOnly,
      };
      return this.write('Register', wire, cmd, call, (result) => {
        if (result?.type === 'conflict') throw conflictError(result);
        if (result?.type !== 'register') return undefined;
        return { agent: this.toWire(result.agent), revision: result.revision };
      });
    });
  }

  /** `Registry.Deregister`: remove one agent (conditionally with `expected_revision`). */
  deregister(req: DeregisterRequest, call: CallContext): Promise<DeregisterResponse> {
    return this.guard(async () => {
      const who = await this.authenticate(call, 'write');
      const id = validateId(req.id, 'id');
      const principal = this.authorize(who, 'write', [id]);
      const session = validateSession(req.client_id, req.sequence);
      const expectedRevision = validateRevision(req.expected_revision, 'expected_revision');
      const cmd: Command = { type: 'deregister', requestId: this.nextRequestId(), id, ...(session ? { session } : {}), ...(expectedRevision > 0 ? { expectedRevision } : {}), principal };
      const wire: DeregisterRequest = { id, client_id: session?.clientId ?? '', sequence: session?.sequence ?? 0, expected_revision: expectedRevision };
      return this.write('Deregister', wire, cmd, call, (result) => {
        if (result?.type === 'conflict') throw conflictError(result);
        if (result?.type !== 'deregister') return undefined;
        return { deleted: result.deleted, revision: result.revision };
      });
    });
  }

  /**
   * `Registry.Get`: one agent by id, or by version reference (`<name>@<version>`,
   * `<name>@latest`, `<name>`) when no agent has that id; `NOT_FOUND` when none matches.
   */
  get(req: GetRequest, call: CallContext): Promise<GetResponse> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const id = validateAgentRef(req.id, 'id');
      const revision = await this.readBarrier(consistencyFromWire(req.consistency), call);
      const agent = await this.ctx.stateMachine.getByRef(id);
      if (!agent) throw new ApiError(Code.NOT_FOUND, `agent ${JSON.stringify(id)} not found`);
      return { agent: this.readWire(agent), revision: Math.max(revision, agent.modRevision) };
    });
  }

  /** `Registry.ListVersions`: every agent named `name`, latest first; `NOT_FOUND` when none. */
  listVersions(req: ListVersionsRequest, call: CallContext): Promise<ListVersionsResponse> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const name = validateVersionsName(req.name, 'name');
      const revision = await this.readBarrier(consistencyFromWire(req.consistency), call);
      const agents = await this.ctx.stateMachine.versions(name);
      if (agents.length === 0) throw new ApiError(Code.NOT_FOUND, `no agent is named ${JSON.stringify(name)}`);
      return { agents: agents.map((a) => this.toWire(a, false)), latest_id: (agents[0] as Agent).id, revision };
    });
  }

  /**
   * The versions of one name as stored records, latest first (empty for an unknown name), after
   * a linearizable read barrier: for front ends with their own response shape (the MCP
   * registry's read API). Rejects with an {@link ApiError}.
   */
  versionsOf(name: string, call: CallContext): Promise<{ agents: Agent[]; revision: number }> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const checked = validateVersionsName(name, 'serverName');
      const revision = await this.readBarrier('linearizable', call);
      return { agents: await this.ctx.stateMachine.versions(checked), revision };
    });
  }

  /**
   * One page of the versions of every name, in name order, each with whether it is the latest
   * of its name, after a linearizable read barrier (see `pageVersions` in `versions.ts`): for the
   * MCP registry's read API. `INVALID_ARGUMENT` (field `cursor`) for a cursor it did not return.
   */
  versionPage(query: VersionPageQuery, call: CallContext): Promise<{ items: VersionPageItem[]; nextCursor: string; revision: number }> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const revision = await this.readBarrier('linearizable', call);
      try {
        return { ...(await this.ctx.stateMachine.versionPage(query)), revision };
      } catch (err) {
        if (err instanceof VersionCursorError) throw new ValidationError('cursor', err.message);
        throw err;
      }
    });
  }

  /** `Registry.Find`: one page of the agents matching every filter, ordered by id. */
  find(req: FindRequest, call: CallContext): Promise<FindResponse> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const { query, consistency } = findQueryFromWire(req);
      const revision = await this.readBarrier(consistency, call);
      const page = await this.ctx.stateMachine.find(query);
      return { agents: page.agents.map((a) => this.readWire(a, false)), next_page_token: page.nextPageToken, revision };
    });
  }

  /** `Registry.Search`: one page of a keyword search, best first (BM25, then id). */
  search(req: SearchRequest, call: CallContext): Promise<SearchResponse> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const { query, consistency } = searchQueryFromWire(req);
      const revision = await this.readBarrier(consistency, call);
      const page = await this.ctx.stateMachine.search(query);
      return {
        results: page.results.map((r) => ({ agent: this.readWire(r.agent, false), score: r.score })),
        next_page_token: page.nextPageToken,
        revision,
      };
    });
  }

  /** `Registry.ListCapabilities`: the capabilities (optionally by prefix) with their agent counts. */
  listCapabilities(req: ListCapabilitiesRequest, call: CallContext): Promise<ListCapabilitiesResponse> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const { prefix, consistency } = listCapabilitiesFromWire(req);
      const revision = await this.readBarrier(consistency, call);
      const { capabilities } = await this.ctx.stateMachine.capabilities(prefix);
      return { capabilities: capabilities.map((c) => ({ capability: c.capability, count: c.count })), revision };
    });
  }

  /**
   * `Registry.Heartbeat`: renews a lease on the leader (a follower forwards it there). Renewals
   * stay in the leader's memory; only a change of health is written to the log.
   */
  heartbeat(req: HeartbeatRequest, call: CallContext): Promise<HeartbeatResponse> {
    return this.guard(async () => {
      const who = await this.authenticate(call, 'heartbeat');
      const id = validateId(req.id, 'id');
      const principal = this.authorize(who, 'heartbeat', [id]);
      const health = validateHealth(req.health ?? 'HEALTH_UNSPECIFIED', 'health');
      const forwarded = await this.forwardIfFollower('Heartbeat', { id, health: req.health ?? 0 }, call, false);
      if (forwarded) return forwarded;
      const raft = this.ctx.raft;
      const ttlMs = raft.leases.renew(id, this.ctx.clock.now());
      if (ttlMs === undefined) {
        const agent = await this.ctx.stateMachine.get(id);
        if (!agent) throw new ApiError(Code.NOT_FOUND, `agent ${JSON.stringify(id)} is not registered (or its lease expired): register again`);
        if (agent.ttlSeconds === 0) throw new ApiError(Code.FAILED_PRECONDITION, `agent ${JSON.stringify(id)} has no lease (registered with ttl_seconds 0)`);
        throw new UnavailableError('the leader is loading its leases; retry');
      }
      if (health !== 'unspecified') {
        const agent = await this.ctx.stateMachine.get(id);
        if (agent && agent.health !== health) {
          await this.proposeAndWait({ type: 'setHealth', requestId: this.nextRequestId(), id, health, principal }, call);
        }
      }
      return { ttl_seconds: Math.round(ttlMs / 1000) };
    });
  }

  /**
   * `Registry.Watch`: streams this node's applied changes from `start_revision` (see
   * `watch-hub.ts`) into `stream`. Resolves with a function that ends the watch once it is live;
   * rejects with `INVALID_ARGUMENT`, `OUT_OF_RANGE` (history compacted) or `RESOURCE_EXHAUSTED`.
   * A watch cut off later (too slow, node stopping) ends through `stream.fail`.
   */
  watch(req: WatchRequest, stream: WatchStream, call: CallContext): Promise<() => void> {
    return this.guard(async () => {
      await this.admit(call, 'read');
      const start = Number(req.start_revision ?? 0);
      if (!Number.isSafeInteger(start) || start < 0) throw new ValidationError('start_revision', 'must be a non-negative integer');
      for (const [field, v] of [['id_prefix', req.id_prefix], ['capability', req.capability], ['kind', req.kind]] as const) {
        if (v !== undefined && (typeof v !== 'string' || v.length > MAX_WATCH_FILTER_CHARS)) throw new ValidationError(field, `must be at most ${MAX_WATCH_FILTER_CHARS} characters`);
      }
      const filter = { idPrefix: req.id_prefix ?? '', capability: req.capability ?? '', kind: req.kind ?? '' };
      try {
        return await this.ctx.watchHub.watch(start, filter, {
          send: (e) =>
            stream.write({
              type: e.type === 'put' ? 'EVENT_TYPE_PUT' : 'EVENT_TYPE_DELETE',
              agent: this.toWire(e.agent, false),
              revision: e.revision,
              expired: e.expired,
            }),
          onDrain: (resume) => stream.onDrain(resume),
          fail: (err) => stream.fail(watchErrorToApi(err)),
        });
      } catch (err) {
        if (err instanceof WatchError) throw watchErrorToApi(err);
        throw err;
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // registry.v1.Cluster

  /** `Cluster.Status`: this node's view of the cluster. */
  status(): StatusResponse {
    const st = this.ctx.raft.status();
    const members = this.membersWithHttp();
    return statusToWire({
      httpAddress: this.ctx.httpAddress ?? '',
      nodeId: this.ctx.id,
      leaderId: st.leaderId,
      term: st.currentTerm,
      commitIndex: st.commitIndex,
      appliedIndex: this.ctx.raft.appliedIndex,
      role: st.role,
      members,
      snapshotIndex: st.snapshotIndex,
      firstIndex: st.firstIndex,
    });
  }

  /**
   * Asks, in the background, each peer whose HTTP address is unknown or older than
   * {@link PEER_HTTP_ADDRESS_TTL_MS} for its status; one call per peer at a time. Failures are
   * ignored (the peer is asked again on a later status).
   */
  private learnPeerHttpAddresses(): void {
    const link = this.ctx.leaderLink;
    if (!link.status) return;
    const now = this.ctx.clock.now();
    for (const m of this.ctx.members()) {
      if (m.id === this.ctx.id || this.peerHttpAsking.has(m.id)) continue;
      const known = this.peerHttp.get(m.id);
      if (known && now - known.at < PEER_HTTP_ADDRESS_TTL_MS) continue;
      this.peerHttpAsking.add(m.id);
      link.status(m, PEER_STATUS_BUDGET_MS).then(
        (st) => {
          this.peerHttpAsking.delete(m.id);
          if (st.node_id === m.id) this.peerHttp.set(m.id, { address: st.http_address ?? '', at: this.ctx.clock.now() });
        },
        () => this.peerHttpAsking.delete(m.id),
      );
    }
  }

  /**
   * `Cluster.AddMember` (thesis §4.1/§4.2.1): the new member joins as a learner and, unless it
   * should stay one, is promoted once it has caught up, so it never counts for quorum before it
   * holds the log.
   *
   * The two steps make the call retryable as a whole: a client that retries after a lost answer
   * or a failed second step (another change pending, a leader change) finds the member it added
   * with the same address, and the call resumes — a learner is promoted, a member that is already
   * what was asked for is answered as is. `ALREADY_EXISTS` only when the id is taken by a member
   * at another address.
   */
  addMember(req: AddMemberRequest, call: CallContext): Promise<MemberListResponse> {
    return this.guard(async () => {
      const principal = await this.admit(call, 'admin');
      const id = validateId(req.id, 'id');
      const address = validateAddress(req.address, 'address');
      const learner = Boolean(req.learner);
      const forwarded = await this.forwardIfFollower('AddMember', { id, address, learner }, call, false);
      if (forwarded) return forwarded;
      const existing = this.ctx.members().find((m) => m.id === id);
      if (existing && existing.address !== address) {
        throw new ApiError(Code.ALREADY_EXISTS, `member ${JSON.stringify(id)} already exists at ${existing.address}`);
      }
      if (existing && (existing.voter || learner)) return this.memberList();
      if (!existing) {
        const res = await this.changeMembers({ type: 'addLearner', nodeId: id, address, principal }, call);
        if (learner) return res;
      }
      await this.waitCaughtUp(id, call);
      return this.changeMembers({ type: 'addVoter', nodeId: id, address, principal }, call);
    });
  }

  /** `Cluster.RemoveMember`: removes a member; a removed leader hands over and steps down. */
  removeMember(req: RemoveMemberRequest, call: CallContext): Promise<MemberListResponse> {
    return this.guard(async () => {
      const principal = await this.admit(call, 'admin');
      const id = validateId(req.id, 'id');
      const forwarded = await this.forwardIfFollower('RemoveMember', { id }, call, false);
      if (forwarded) return forwarded;
      const members = this.ctx.members();
      const m = members.find((x) => x.id === id);
      if (!m) throw new ApiError(Code.NOT_FOUND, `member ${JSON.stringify(id)} not found`);
      if (m.voter && members.filter((x) => x.voter).length === 1) {
        throw new ApiError(Code.FAILED_PRECONDITION, `cannot remove ${id}: it is the last voter`);
      }
      return this.changeMembers({ type: 'removeNode', nodeId: id, address: '', principal }, call);
    });
  }

  /** `Cluster.PromoteMember`: makes a caught-up learner a voter. */
  promoteMember(req: PromoteMemberRequest, call: CallContext): Promise<MemberListResponse> {
    return this.guard(async () => {
      const principal = await this.admit(call, 'admin');
      const id = validateId(req.id, 'id');
      const forwarded = await this.forwardIfFollower('PromoteMember', { id }, call, false);
      if (forwarded) return forwarded;
      const m = this.ctx.members().find((x) => x.id === id);
      if (!m) throw new ApiError(Code.NOT_FOUND, `member ${JSON.stringify(id)} not found`);
      if (m.voter) throw new ApiError(Code.FAILED_PRECONDITION, `${id} is already a voter`);
      const rep = this.ctx.raft.replicationOf(id);
      if (!rep || rep.lastIndex - rep.matchIndex > PROMOTE_MAX_LAG_ENTRIES) {
        throw new ApiError(Code.FAILED_PRECONDITION, `${id} is ${rep ? rep.lastIndex - rep.matchIndex : 'an unknown number of'} entries behind; promote it once it has caught up`);
      }
      return this.changeMembers({ type: 'addVoter', nodeId: id, address: m.address, principal }, call);
    });
  }

  /**
   * `Cluster.TransferLeadership` (thesis §3.10): on the leader, starts the transfer and waits
   * until the target leads; on a follower, forwards to the leader.
   */
  transferLeadership(req: TransferLeadershipRequest, call: CallContext): Promise<TransferLeadershipResponse> {
    return this.guard(async () => {
      await this.admit(call, 'admin');
      const target = validateId(req.target_id, 'target_id');
      if (!this.ctx.members().some((m) => m.id === target && m.voter)) throw new ValidationError('target_id', `${JSON.stringify(target)} is not a voting member`);
      const raft = this.ctx.raft;
      if (raft.leaderId === target) return { leader_id: target, term: raft.status().currentTerm };
      const forwarded = await this.forwardIfFollower('TransferLeadership', { target_id: target }, call, false);
      if (forwarded) return forwarded;
      if (!raft.transferLeadership(nodeId(target))) throw new UnavailableError(`cannot transfer leadership to ${target} now; retry`);
      const until = this.ctx.clock.now() + call.budgetMs;
      while (this.ctx.clock.now() < until) {
        const st = raft.status();
        if (st.leaderId === target) return { leader_id: target, term: st.currentTerm };
        if (st.role === 'leader' && st.leadTransferee === '') {
          // The core aborted the transfer (it did not finish within an election timeout).
          throw new UnavailableError(`leadership transfer to ${target} was aborted; retry`);
        }
        await sleep(this.ctx.clock, TRANSFER_POLL_MS);
      }
      throw new ApiError(Code.DEADLINE_EXCEEDED, `leadership transfer to ${target} did not finish within ${call.budgetMs} ms`);
    });
  }

  /**
   * `Cluster.Snapshot`: a consistent backup of this node's state machine (see `backup.ts`), as
   * chunks; the view it reads is released when the iteration ends or is abandoned with `return`.
   * Needs an admin token (a backup holds the signing keys); the check runs before the first chunk.
   */
  async *backup(call: CallContext): AsyncGenerator<Uint8Array> {
    await this.guard(() => this.admit(call, 'admin'));
    const view = this.ctx.store.stateMachineView();
    try {
      yield* backupStream(view, this.ctx.id, (i) => this.ctx.raft.termAt(i));
    } finally {
      await view.close().catch(() => undefined);
    }
  }

  // -------------------------------------------------------------------------------------------
  // registry.v1.Auth

  /** `Auth.AuthStatus`: whether auth is on, the key ids, and who the caller's token says it is. */
  authStatus(call: CallContext): Promise<AuthStatusResponse> {
    return this.guard(async () => {
      const state = this.ctx.stateMachine.authState();
      let principal: Principal | undefined;
      if (this.authEnabled && call.token) {
        try {
          principal = await this.verifier.verify(call.token);
        } catch (err) {
          throw authToApi(err);
        }
      }
      return {
        enabled: this.authEnabled,
        current_key_id: state.signingKeys[state.signingKeys.length - 1]?.kid ?? '',
        signing_key_ids: state.signingKeys.map((k) => k.kid),
        trusted_card_key_ids: [...state.cardKeys.keys()],
        revoked_tokens: state.revoked.size,
        principal: principal?.name ?? '',
        role: principal?.role ?? '',
        namespaces: [...(principal?.namespaces ?? [])],
      };
    });
  }

  /** `Auth.CreateToken`: signs a new token with the current signing key (admin). */
  createToken(req: CreateTokenRequest, call: CallContext): Promise<CreateTokenResponse> {
    return this.guard(async () => {
      await this.admit(call, 'admin');
      const role = req.role ?? '';
      const ttlSeconds = validateRevision(req.ttl_seconds, 'ttl_seconds');
      const namespaces = req.namespaces ?? [];
      if (!Array.isArray(namespaces) || namespaces.some((n) => typeof n !== 'string')) throw new ValidationError('namespaces', 'must be a list of strings');
      const name = typeof req.name === 'string' ? req.name : '';
      const key = this.ctx.stateMachine.authState().signingKeys.at(-1);
      if (key === undefined) throw new ApiError(Code.FAILED_PRECONDITION, 'the cluster has no signing key yet (it is created once a leader with --auth on is elected); retry');
      const nowSec = Math.floor(this.ctx.clock.wallNow() / MS_PER_SECOND);
      try {
        const tokenId = randomTokenId();
        const principal = name || `${role}-${tokenId}`;
        const minted = await mintToken(key, { name: principal, role: role as Role, namespaces, ttlSeconds, tokenId }, nowSec);
        return { token: minted.token, token_id: minted.tokenId, expires_unix_s: minted.expiresAtSec, principal };
      } catch (err) {
        if (err instanceof AuthError) throw new ApiError(Code.INVALID_ARGUMENT, err.message);
        throw err;
      }
    });
  }

  /** `Auth.RevokeToken`: every node refuses the token once the write is applied there (admin). */
  revokeToken(req: RevokeTokenRequest, call: CallContext): Promise<AuthWriteResponse> {
    return this.guard(async () => {
      const principal = await this.admit(call, 'admin');
      const tokenId = validateAuthId(req.token_id, 'token_id');
      return this.authWrite('RevokeToken', { token_id: tokenId }, call, principal, async () => ({ op: 'revokeToken', tokenId, expiresAtSec: 0 }));
    });
  }

  /** `Auth.RotateSigningKey`: a new signing key for new tokens; earlier ones kept unless retired (admin). */
  rotateSigningKey(req: RotateSigningKeyRequest, call: CallContext): Promise<AuthWriteResponse> {
    return this.guard(async () => {
      const principal = await this.admit(call, 'admin');
      const retirePrevious = Boolean(req.retire_previous);
      let kid = '';
      const res = await this.authWrite('RotateSigningKey', { retire_previous: retirePrevious }, call, principal, async () => {
        const key = await generateSigningKey();
        kid = key.kid;
        return { op: 'addSigningKey', key, ...(retirePrevious ? { retirePrevious } : {}) };
      });
      return { ...res, key_id: res.key_id || kid };
    });
  }

  /** `Auth.TrustCardKey`: trusts an Ed25519 public JWK for card signatures under `key_id` (admin). */
  trustCardKey(req: TrustCardKeyRequest, call: CallContext): Promise<AuthWriteResponse> {
    return this.guard(async () => {
      const principal = await this.admit(call, 'admin');
      const keyId = validateAuthId(req.key_id, 'key_id');
      const publicJwk = validatePublicJwk(req.public_jwk, 'public_jwk');
      return this.authWrite('TrustCardKey', { key_id: keyId, public_jwk: publicJwk }, call, principal, async () => ({ op: 'trustCardKey', keyId, publicJwk }));
    });
  }

  /** `Auth.UntrustCardKey`: stops trusting a card key (admin); `NOT_FOUND` when it is not trusted. */
  untrustCardKey(req: UntrustCardKeyRequest, call: CallContext): Promise<AuthWriteResponse> {
    return this.guard(async () => {
      const principal = await this.admit(call, 'admin');
      const keyId = validateAuthId(req.key_id, 'key_id');
      return this.authWrite('UntrustCardKey', { key_id: keyId }, call, principal, async () => ({ op: 'untrustCardKey', keyId }));
    });
  }

  /**
   * On the leader, with auth on and no signing key in the replicated state: creates the
   * bootstrap key (an `addSigningKey` with `ifNone`, so two leaders racing write one key). Cheap
   * to call often: it tries at most every {@link AUTH_BOOTSTRAP_RETRY_MS}.
   */
  maybeBootstrapAuth(): void {
    if (!this.authEnabled || this.bootstrapping || !this.ctx.raft.isLeader) return;
    if (this.ctx.stateMachine.authState().signingKeys.length > 0) return;
    const now = this.ctx.clock.now();
    if (now - this.lastBootstrapAttempt < AUTH_BOOTSTRAP_RETRY_MS) return;
    this.lastBootstrapAttempt = now;
    this.bootstrapping = true;
    void (async () => {
      try {
        const key = await generateSigningKey();
        const cmd: Command = { type: 'auth', requestId: this.nextRequestId(), change: { op: 'addSigningKey', key, ifNone: true }, principal: SYSTEM_PRINCIPAL_NAME, timeMs: Math.floor(this.ctx.clock.wallNow()) };
        const result = await this.proposeAndWait(cmd, { budgetMs: DEFAULT_REQUEST_TIMEOUT_MS });
        if (result?.type === 'auth' && result.applied) this.log.info({ kid: key.kid }, 'created the cluster signing key');
      } catch (err) {
        this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'creating the cluster signing key failed; retrying');
      } finally {
        this.bootstrapping = false;
      }
    })();
  }

  /** An auth change by `principal` from any node: forwarded to the leader, which builds and proposes it. */
  private async authWrite<M extends 'RevokeToken' | 'RotateSigningKey' | 'TrustCardKey' | 'UntrustCardKey'>(
    method: M,
    wire: ForwardedCalls[M][0],
    call: CallContext,
    principal: string,
    change: () => Promise<AuthChange>,
  ): Promise<AuthWriteResponse> {
    const forwarded = (await this.forwardIfFollower(method, wire, call, true)) as AuthWriteResponse | undefined;
    if (forwarded) return forwarded;
    const c = await change();
    const result = await this.proposeAndWait({ type: 'auth', requestId: this.nextRequestId(), change: c, principal, timeMs: Math.floor(this.ctx.clock.wallNow()) }, call);
    if (result?.type !== 'auth') throw new ApiError(Code.INTERNAL, 'auth change produced no result');
    if (!result.applied) {
      const code = c.op === 'untrustCardKey' ? Code.NOT_FOUND : c.op === 'revokeToken' ? Code.RESOURCE_EXHAUSTED : Code.FAILED_PRECONDITION;
      throw new ApiError(code, result.reason ?? 'auth change refused');
    }
    return { revision: result.revision, key_id: c.op === 'addSigningKey' ? c.key.kid : '' };
  }

  /** Ends every watch and closes the links used to forward writes. */
  close(): void {
    this.ctx.watchHub.closeAll();
    this.ctx.leaderLink.close();
  }

  // -------------------------------------------------------------------------------------------
  // Shared steps

  /**
   * An agent as answered, with its lease deadline as this node sees it (the leader's view; 0
   * elsewhere). Lists (Find, Search, ListVersions, Watch) leave the card out (`withCard` false:
   * `card` empty, `card_format` still says one is stored), so a page of 64 KiB cards never
   * exceeds a client's message limit; Get and `GET /v1/agents/{id}/card` carry it.
   */
  private toWire(agent: Agent, withCard = true): WireAgent {
    const w = withCard ? agentToWire(agent) : { ...agentToWire(agent), card: '' };
    return { ...w, lease_expires_unix_ms: this.leaseExpiresUnixMs(agent) };
  }

  /**
   * {@link toWire} for the answers of Get, Find and Search, whose agents are the state machine's
   * kept records: the wire form kept for this `Agent` object (`agent-encoding.ts`), read-only,
   * whose encoding the gRPC serializers of those methods copy. A write's answer or a watch event
   * carries a record made for it, which nothing would read again: those take {@link toWire}.
   */
  private readWire(agent: Agent, withCard = true): WireAgent {
    return wireAgentOf(agent, withCard, this.leaseExpiresUnixMs(agent), () => agentToWire(agent));
  }

  /** When `agent`'s lease expires as this node sees it, in Unix ms; 0 without a lease or a deadline. */
  private leaseExpiresUnixMs(agent: Agent): number {
    const deadline = agent.ttlSeconds > 0 ? this.ctx.raft.leases.deadlineOf(agent.id) : undefined;
    const clock = this.ctx.clock;
    return deadline === undefined ? 0 : Math.round(clock.wallNow() + (deadline - clock.now()));
  }

  /** Proposes one membership change on the leader and answers with the membership after it. */
  private async changeMembers(change: MemberChange, call: CallContext): Promise<MemberListResponse> {
    const result = await this.withTimeout(this.ctx.raft.proposeMemberChange(change), call.budgetMs, 'membership change');
    if (result?.type !== 'config') throw new ApiError(Code.INTERNAL, 'membership change produced no result');
    return { members: result.members.map(memberToWire), revision: result.revision };
  }

  /** The membership as this node has applied it, with the HTTP addresses known, at its applied index. */
  memberList(): MemberListResponse {
    return { members: this.membersWithHttp().map(memberToWire), revision: this.ctx.raft.appliedIndex };
  }

  /** The HTTP addresses of the members known so far (this node's and those its peers reported). */
  memberHttpAddresses(): string[] {
    return this.membersWithHttp().flatMap((m) => (m.httpAddress ? [m.httpAddress] : []));
  }

  /** The members, each with its HTTP address when known; asks peers whose address is not (see {@link learnPeerHttpAddresses}). */
  private membersWithHttp(): ClusterMember[] {
    this.learnPeerHttpAddresses();
    const own = this.ctx.httpAddress ?? '';
    return this.ctx.members().map((m) => {
      const http = m.id === this.ctx.id ? own : (this.peerHttp.get(m.id)?.address ?? '');
      return { id: m.id, address: m.address, voter: m.voter, ...(http ? { httpAddress: http } : {}) };
    });
  }

  /** Waits until the leader has replicated to `id` within {@link PROMOTE_MAX_LAG_ENTRIES} of its log. */
  private async waitCaughtUp(id: string, call: CallContext): Promise<void> {
    const until = this.ctx.clock.now() + call.budgetMs;
    while (this.ctx.clock.now() < until) {
      const rep = this.ctx.raft.replicationOf(id);
      if (!rep) throw new UnavailableError('leadership changed while the new member was catching up; it stays a learner');
      if (rep.lastIndex - rep.matchIndex <= PROMOTE_MAX_LAG_ENTRIES) return;
      await sleep(this.ctx.clock, TRANSFER_POLL_MS);
    }
    throw new ApiError(Code.DEADLINE_EXCEEDED, `${id} did not catch up in time; it stays a learner (PromoteMember later)`);
  }

  /**
   * Waits for a linearizable read to be safe on this node and returns the revision it reads
   * at; serializable reads return the local applied index at once.
   */
  private async readBarrier(consistency: 'linearizable' | 'serializable', call: CallContext): Promise<number> {
    if (consistency === 'serializable') return this.ctx.raft.appliedIndex;
    await this.withTimeout(this.ctx.raft.readBarrier(), call.budgetMs, 'linearizable read');
    return this.ctx.raft.appliedIndex;
  }

  private nextRequestId(): string {
    return `${this.ctx.id}:${++this.requestSeq}`;
  }

  /**
   * A write from any node: forwarded when this node is a follower, proposed when it leads. If
   * leadership moves away before the command is proposed (a transfer, an election), the write
   * is handed to the new leader once: it was never in the log, so this cannot apply it twice.
   */
  private async write<M extends 'Register' | 'Deregister'>(
    method: M,
    wire: ForwardedCalls[M][0],
    cmd: Command,
    call: CallContext,
    toResponse: (r: CommandResult | undefined) => ForwardedCalls[M][1] | undefined,
  ): Promise<ForwardedCalls[M][1]> {
    for (let attempt = 0; ; attempt++) {
      const forwarded = await this.forwardIfFollower(method, wire, call, true);
      if (forwarded) return forwarded;
      try {
        // The leader's wall clock dates a register (the record's created/updated times): data in
        // the log, so every node applies the same time.
        const stamped: Command = cmd.type === 'register' ? { ...cmd, timeMs: Math.max(0, Math.floor(this.ctx.clock.wallNow())) } : cmd;
        const res = toResponse(await this.proposeAndWait(stamped, call));
        if (res === undefined) {
          throw new ApiError(Code.FAILED_PRECONDITION, 'sequence was already used by a different write of this client_id');
        }
        return res;
      } catch (e) {
        if (e instanceof NotLeaderError && e.leaderId !== '' && attempt === 0) continue;
        throw e;
      }
    }
  }

  private proposeAndWait(cmd: Command, call: CallContext): Promise<CommandResult | undefined> {
    return this.withTimeout(this.ctx.raft.propose(encodeCommand(cmd)), call.budgetMs, 'write');
  }

  /**
   * On a follower, sends the call to the leader and, with `waitForApply`, waits once answered
   * until this node has applied it too (read-your-writes on this node). Returns undefined on
   * the leader (the caller handles the call itself).
   */
  private async forwardIfFollower<M extends ForwardedMethod>(
    method: M,
    request: ForwardedCalls[M][0],
    call: CallContext,
    waitForApply: boolean,
  ): Promise<ForwardedCalls[M][1] | undefined> {
    const raft = this.ctx.raft;
    if (raft.isLeader) return undefined;
    if (call.forwardedBy !== undefined) {
      throw new UnavailableError(`${this.ctx.id} is not the leader (request was forwarded here by ${call.forwardedBy}); retry`);
    }
    const leader = raft.leaderId;
    if (!leader) throw new UnavailableError('no leader is known; retry');
    const member = this.ctx.members().find((m) => m.id === leader);
    if (!member) throw new UnavailableError(`leader ${leader} has no known address; retry`);
    const started = this.ctx.clock.now();
    const res = await this.ctx.leaderLink.call(member, method, request, call.budgetMs, this.ctx.id, call.token);
    if (waitForApply) {
      const revision = Number((res as { revision?: unknown }).revision ?? 0);
      const left = Math.max(0, call.budgetMs - (this.ctx.clock.now() - started));
      await this.withTimeout(raft.waitApplied(revision), left, 'local apply of the forwarded write');
    }
    return res;
  }
}

/** A refusal of the rate limits as `RESOURCE_EXHAUSTED`, with when to retry. */
function rateLimited(decision: { readonly retryAfterMs: number; readonly limit: string }): ApiError {
  return new ApiError(Code.RESOURCE_EXHAUSTED, `rate limit exceeded (${decision.limit}); retry after ${decision.retryAfterMs} ms`, decision.retryAfterMs);
}

/** The principal name of the cluster's own writes. */
const SYSTEM_PRINCIPAL_NAME = 'system';

/** A token id for a new token: 24 hex digits. */
function randomTokenId(): string {
  return randomBytes(12).toString('hex');
}

/** An {@link AuthError} (or anything else) as an API status. */
function authToApi(err: unknown): unknown {
  if (!(err instanceof AuthError)) return err;
  return new ApiError(err.kind === 'unauthenticated' ? Code.UNAUTHENTICATED : Code.PERMISSION_DENIED, err.message);
}

/** Checks a token or key id: 1..{@link MAX_AUTH_ID_CHARS} of `[A-Za-z0-9._:-]`. @throws ValidationError naming `field`. */
function validateAuthId(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_AUTH_ID_CHARS || !/^[A-Za-z0-9._:-]+$/.test(v)) {
    throw new ValidationError(field, `must be 1-${MAX_AUTH_ID_CHARS} characters of [A-Za-z0-9._:-]`);
  }
  return v;
}

/** Checks a public Ed25519 JWK given as JSON text. @throws ValidationError naming `field`. */
function validatePublicJwk(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_JWK_CHARS) throw new ValidationError(field, `must be a JWK as JSON text of at most ${MAX_JWK_CHARS} characters`);
  let jwk: unknown;
  try {
    jwk = JSON.parse(v);
  } catch {
    throw new ValidationError(field, 'is not JSON');
  }
  const o = jwk as Record<string, unknown> | null;
  if (o === null || typeof o !== 'object' || o.kty !== 'OKP' || o.crv !== 'Ed25519' || typeof o.x !== 'string') throw new ValidationError(field, 'must be an Ed25519 public key (kty OKP, crv Ed25519, x)');
  if (o.d !== undefined) throw new ValidationError(field, 'holds a private key (d): give the public key only');
  return JSON.stringify({ kty: o.kty, crv: o.crv, x: o.x });
}

/** A watch that ended early, as an API status. */
function watchErrorToApi(err: WatchError): ApiError {
  switch (err.kind) {
    case 'out_of_range':
      return new ApiError(Code.OUT_OF_RANGE, err.message);
    case 'resource_exhausted':
      return new ApiError(Code.RESOURCE_EXHAUSTED, err.message);
    case 'unavailable':
      return new ApiError(Code.UNAVAILABLE, err.message);
  }
}
