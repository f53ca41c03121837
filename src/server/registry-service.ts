/**
 * The client API handlers: `registry.v1.Registry` and `registry.v1.Cluster`.
 *
 * Every node accepts every call:
 * - Writes (Register, Deregister) are proposed on the leader. A follower forwards the request
 *   to the leader it knows, then waits until it has applied the write itself, so a client that
 *   reads from the same node right after sees its write.
 * - Linearizable reads (the default) pass a ReadIndex barrier (thesis §6.4) and are then served
 *   from this node's state machine; serializable reads are served locally at once.
 *
 * Status codes: `INVALID_ARGUMENT` naming the field; `NOT_FOUND`; `UNAVAILABLE` when there is no
 * leader or quorum, or a write's entry was lost to a leader change (safe to retry);
 * `DEADLINE_EXCEEDED` when the request did not complete within its deadline (outcome unknown for
 * writes); `INTERNAL` for anything else (logged).
 */
import * as grpc from '@grpc/grpc-js';
import {
  ClusterGrpcClient,
  RegistryGrpcClient,
  agentToWire,
  findQueryFromWire,
  specFromWire,
  consistencyFromWire,
  statusToWire,
  type ClusterHandlers,
  type DeregisterRequest,
  type DeregisterResponse,
  type RegisterRequest,
  type RegisterResponse,
  type RegistryHandlers,
  type TransferLeadershipRequest,
  type TransferLeadershipResponse,
  type AddMemberRequest,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type WatchRequest,
  type WireAgent,
  type WireWatchEvent,
  type RemoveMemberRequest,
  type PromoteMemberRequest,
  type MemberListResponse,
} from '../api/registry-proto.js';
import type { Logger } from '../log.js';
import { nodeId, type NodeId } from '../raft/types.js';
import { encodeCommand } from '../registry/commands.js';
import { QueryError, type RegistryStateMachine } from '../registry/state-machine.js';
import { ValidationError, validateHealth, validateId, validateSession, validateTtlSeconds } from '../registry/validation.js';
import { WatchError, type WatchHub } from './watch-hub.js';
import type { Agent, Command, CommandResult, Member, MemberChange } from '../registry/types.js';
import { NotLeaderError, UnavailableError, type RaftNode } from './raft-node.js';
import { BackupError, backupStream } from './backup.js';
import type { NodeStore } from '../storage/types.js';

/** Longest a request waits for commit, apply or a read barrier when the client set no deadline, in ms. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Longest id_prefix, capability or kind filter of a watch, in characters. */
export const MAX_WATCH_FILTER_CHARS = 256;

/** Checks an optional revision (uint64 on the wire; 0 = none), naming `field`. */
function validateRevision(value: unknown, field: string): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0) throw new ValidationError(field, 'must be a non-negative integer');
  return n;
}

/** A failed compare-and-set, as FAILED_PRECONDITION with the current revision. */
function conflictError(r: Extract<CommandResult, { type: 'conflict' }>): StatusError {
  return new StatusError(grpc.status.FAILED_PRECONDITION, `${r.reason}; current revision ${r.currentRevision}`);
}

/** A learner is promoted only when it is at most this many entries behind the leader's log. */
export const PROMOTE_MAX_LAG_ENTRIES = 1_000;
/** Longest `host:port` accepted for a member address, in characters. */
export const MAX_ADDRESS_CHARS = 256;

/** Checks a `host:port` address, naming `field` in the error. */
function validateAddress(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ADDRESS_CHARS || !/^[^\s:]+(:[^\s:]+)*:\d{1,5}$/.test(value)) {
    throw new ValidationError(field, 'must be host:port');
  }
  const port = Number(value.slice(value.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) throw new ValidationError(field, 'port must be 1-65535');
  return value;
}

/** How often a leadership transfer checks whether the target leads yet, in ms. */
export const TRANSFER_POLL_MS = 20;
/** Metadata key marking a request forwarded by a follower: the receiver never forwards it again. */
export const FORWARDED_METADATA_KEY = 'x-registry-forwarded-by';

/** A gRPC error with a status code. */
class StatusError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/** The request's time budget in ms: the client's deadline if any, else the default. */
function budgetMs(call: grpc.ServerUnaryCall<unknown, unknown>): number {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : typeof d === 'number' ? d : Number.POSITIVE_INFINITY;
  if (!Number.isFinite(at)) return DEFAULT_REQUEST_TIMEOUT_MS;
  return Math.max(0, Math.min(at - Date.now(), DEFAULT_REQUEST_TIMEOUT_MS * 6));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new StatusError(grpc.status.DEADLINE_EXCEEDED, `${what} did not complete within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** Maps an error to a gRPC status (DESIGN: expected errors are typed; the rest is INTERNAL). */
function toServiceError(err: unknown, log: Logger): Partial<grpc.ServiceError> {
  if (err instanceof StatusError) return { code: err.code, details: err.message };
  if (err instanceof ValidationError || err instanceof QueryError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
  if (err instanceof NotLeaderError || err instanceof UnavailableError) return { code: grpc.status.UNAVAILABLE, details: err.message };
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e?.code === 'number' && typeof e.details === 'string') return { code: e.code, details: e.details };
  log.error({ err }, 'request failed');
  return { code: grpc.status.INTERNAL, details: (err as Error)?.message ?? String(err) };
}

/** Runs an async handler body and answers the call with its result or mapped error. */
function unary<Req, Res>(log: Logger, body: (call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    body(call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err, log) as grpc.ServiceError),
    );
  };
}

/** What the handlers need from the node. */
export interface ServiceContext {
  readonly id: NodeId;
  /** The node's store, for backups. */
  readonly store: NodeStore;
  /** Serves watches from this node's applied state. */
  readonly watchHub: WatchHub;
  readonly raft: RaftNode;
  readonly stateMachine: RegistryStateMachine;
  /** The cluster's members as this node knows them (replicated membership record). */
  readonly members: () => readonly Member[];
  readonly logger: Logger;
}

/** The Registry and Cluster handlers of one node. */
export class RegistryService {
  private readonly ctx: ServiceContext;
  private readonly log: Logger;
  private requestSeq = 0;
  private readonly leaderClients = new Map<string, grpc.Client>();

  constructor(ctx: ServiceContext) {
    this.ctx = ctx;
    this.log = ctx.logger;
  }

  /** Handlers for `registry.v1.Registry`. */
  registryHandlers(): RegistryHandlers {
    return {
      Register: unary(this.log, (call) => this.register(call)),
      Deregister: unary(this.log, (call) => this.deregister(call)),
      Get: unary(this.log, async (call) => {
        const id = validateId(call.request.id, 'id');
        const revision = await this.readBarrier(consistencyFromWire(call.request.consistency), call);
        const agent = await this.ctx.stateMachine.get(id);
        if (!agent) throw new StatusError(grpc.status.NOT_FOUND, `agent ${JSON.stringify(id)} not found`);
        return { agent: this.toWire(agent), revision: Math.max(revision, agent.modRevision) };
      }),
      Find: unary(this.log, async (call) => {
        const { query, consistency } = findQueryFromWire(call.request);
        const revision = await this.readBarrier(consistency, call);
        const page = await this.ctx.stateMachine.find(query);
        return { agents: page.agents.map((a) => this.toWire(a)), next_page_token: page.nextPageToken, revision };
      }),
      Heartbeat: unary(this.log, (call) => this.heartbeat(call)),
      Watch: (call) => void this.watch(call),
    };
  }

  /** An agent for the wire, with its lease deadline as this node sees it (the leader's view; 0 elsewhere). */
  private toWire(agent: Agent): WireAgent {
    const w = agentToWire(agent);
    const deadline = agent.ttlSeconds > 0 ? this.ctx.raft.leases.deadlineOf(agent.id) : undefined;
    return { ...w, lease_expires_unix_ms: deadline === undefined ? 0 : Math.round(Date.now() + (deadline - performance.now())) };
  }

  /**
   * Renews a lease on the leader (a follower forwards the heartbeat there). Renewals stay in the
   * leader's memory; only a change of health is written to the log.
   */
  private async heartbeat(call: grpc.ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>): Promise<HeartbeatResponse> {
    const id = validateId(call.request.id, 'id');
    const health = validateHealth(call.request.health ?? 'HEALTH_UNSPECIFIED', 'health');
    const forwarded = await this.forwardIfFollower<HeartbeatRequest, HeartbeatResponse>(this.leaderClient.bind(this), 'Heartbeat', { id, health: call.request.health ?? 0 }, call, false);
    if (forwarded) return forwarded;
    const raft = this.ctx.raft;
    const ttlMs = raft.leases.renew(id, performance.now());
    if (ttlMs === undefined) {
      const agent = await this.ctx.stateMachine.get(id);
      if (!agent) throw new StatusError(grpc.status.NOT_FOUND, `agent ${JSON.stringify(id)} is not registered (or its lease expired): register again`);
      if (agent.ttlSeconds === 0) throw new StatusError(grpc.status.FAILED_PRECONDITION, `agent ${JSON.stringify(id)} has no lease (registered with ttl_seconds 0)`);
      throw new UnavailableError('the leader is loading its leases; retry');
    }
    if (health !== 'unspecified') {
      const agent = await this.ctx.stateMachine.get(id);
      if (agent && agent.health !== health) {
        await this.proposeAndWait({ type: 'setHealth', requestId: this.nextRequestId(), id, health }, call);
      }
    }
    return { ttl_seconds: Math.round(ttlMs / 1000) };
  }

  /** Streams this node's applied changes from `start_revision` (see `watch-hub.ts`). */
  private async watch(call: grpc.ServerWritableStream<WatchRequest, WireWatchEvent>): Promise<void> {
    const fail = (code: grpc.status, details: string) => {
      if (!call.cancelled) call.destroy(Object.assign(new Error(details), { code, details }));
    };
    let start: number;
    try {
      start = Number(call.request.start_revision ?? 0);
      if (!Number.isSafeInteger(start) || start < 0) throw new ValidationError('start_revision', 'must be a non-negative integer');
      for (const [field, v] of [['id_prefix', call.request.id_prefix], ['capability', call.request.capability], ['kind', call.request.kind]] as const) {
        if (v !== undefined && (typeof v !== 'string' || v.length > MAX_WATCH_FILTER_CHARS)) throw new ValidationError(field, `must be at most ${MAX_WATCH_FILTER_CHARS} characters`);
      }
    } catch (err) {
      fail(grpc.status.INVALID_ARGUMENT, (err as Error).message);
      return;
    }
    const filter = { idPrefix: call.request.id_prefix ?? '', capability: call.request.capability ?? '', kind: call.request.kind ?? '' };
    try {
      const cancel = await this.ctx.watchHub.watch(start, filter, {
        send: (e) =>
          call.write({
            type: e.type === 'put' ? 'EVENT_TYPE_PUT' : 'EVENT_TYPE_DELETE',
            agent: this.toWire(e.agent),
            revision: e.revision,
            expired: e.expired,
          }),
        onDrain: (resume) => call.once('drain', resume),
        fail: (err) => fail(err.kind === 'out_of_range' ? grpc.status.OUT_OF_RANGE : err.kind === 'resource_exhausted' ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.UNAVAILABLE, err.message),
      });
      call.on('cancelled', cancel);
      call.on('close', cancel);
      if (call.cancelled) cancel();
    } catch (err) {
      if (err instanceof WatchError) {
        fail(err.kind === 'out_of_range' ? grpc.status.OUT_OF_RANGE : grpc.status.RESOURCE_EXHAUSTED, err.message);
      } else {
        const e = toServiceError(err, this.log);
        fail(e.code ?? grpc.status.INTERNAL, e.details ?? 'watch failed');
      }
    }
  }

  /** Handlers for `registry.v1.Cluster`. */
  clusterHandlers(): ClusterHandlers {
    return {
      Status: unary(this.log, async () => {
        const st = this.ctx.raft.status();
        const members = this.ctx.members().map((m) => ({ id: m.id, address: m.address, voter: m.voter }));
        return statusToWire({
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
      }),
      TransferLeadership: unary(this.log, (call) => this.transferLeadership(call)),
      AddMember: unary(this.log, (call) => this.addMember(call)),
      RemoveMember: unary(this.log, (call) => this.removeMember(call)),
      PromoteMember: unary(this.log, (call) => this.promoteMember(call)),
      Snapshot: (call) => void this.streamBackup(call),
    };
  }

  /** Streams a backup of this node's state machine (see `backup.ts`), honouring back-pressure. */
  private async streamBackup(call: grpc.ServerWritableStream<Record<string, never>, { data: Uint8Array }>): Promise<void> {
    const view = this.ctx.store.stateMachineView();
    try {
      for await (const chunk of backupStream(view, this.ctx.id, (i) => this.ctx.raft.termAt(i))) {
        if (call.cancelled) return;
        if (!call.write({ data: chunk })) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    } catch (err) {
      const e = err instanceof BackupError ? { code: grpc.status.FAILED_PRECONDITION, details: err.message } : toServiceError(err, this.log);
      call.destroy(Object.assign(new Error(e.details), e));
    } finally {
      await view.close().catch(() => undefined);
    }
  }

  /**
   * Thesis §4.1/§4.2.1: the new member joins as a learner and, unless it should stay one, is
   * promoted once it has caught up, so it never counts for quorum before it holds the log.
   */
  private async addMember(call: grpc.ServerUnaryCall<AddMemberRequest, MemberListResponse>): Promise<MemberListResponse> {
    const id = validateId(call.request.id, 'id');
    const address = validateAddress(call.request.address, 'address');
    const learner = Boolean(call.request.learner);
    const forwarded = await this.forwardIfFollower<AddMemberRequest, MemberListResponse>(this.clusterClient.bind(this), 'AddMember', { id, address, learner }, call, false);
    if (forwarded) return forwarded;
    if (this.ctx.members().some((m) => m.id === id)) throw new StatusError(grpc.status.ALREADY_EXISTS, `member ${JSON.stringify(id)} already exists`);
    let res = await this.changeMembers({ type: 'addLearner', nodeId: id, address }, call);
    if (learner) return res;
    await this.waitCaughtUp(id, call);
    res = await this.changeMembers({ type: 'addVoter', nodeId: id, address }, call);
    return res;
  }

  private async removeMember(call: grpc.ServerUnaryCall<RemoveMemberRequest, MemberListResponse>): Promise<MemberListResponse> {
    const id = validateId(call.request.id, 'id');
    const forwarded = await this.forwardIfFollower<RemoveMemberRequest, MemberListResponse>(this.clusterClient.bind(this), 'RemoveMember', { id }, call, false);
    if (forwarded) return forwarded;
    const members = this.ctx.members();
    const m = members.find((x) => x.id === id);
    if (!m) throw new StatusError(grpc.status.NOT_FOUND, `member ${JSON.stringify(id)} not found`);
    if (m.voter && members.filter((x) => x.voter).length === 1) {
      throw new StatusError(grpc.status.FAILED_PRECONDITION, `cannot remove ${id}: it is the last voter`);
    }
    return this.changeMembers({ type: 'removeNode', nodeId: id, address: '' }, call);
  }

  private async promoteMember(call: grpc.ServerUnaryCall<PromoteMemberRequest, MemberListResponse>): Promise<MemberListResponse> {
    const id = validateId(call.request.id, 'id');
    const forwarded = await this.forwardIfFollower<PromoteMemberRequest, MemberListResponse>(this.clusterClient.bind(this), 'PromoteMember', { id }, call, false);
    if (forwarded) return forwarded;
    const m = this.ctx.members().find((x) => x.id === id);
    if (!m) throw new StatusError(grpc.status.NOT_FOUND, `member ${JSON.stringify(id)} not found`);
    if (m.voter) throw new StatusError(grpc.status.FAILED_PRECONDITION, `${id} is already a voter`);
    const rep = this.ctx.raft.replicationOf(id);
    if (!rep || rep.lastIndex - rep.matchIndex > PROMOTE_MAX_LAG_ENTRIES) {
      throw new StatusError(grpc.status.FAILED_PRECONDITION, `${id} is ${rep ? rep.lastIndex - rep.matchIndex : 'an unknown number of'} entries behind; promote it once it has caught up`);
    }
    return this.changeMembers({ type: 'addVoter', nodeId: id, address: m.address }, call);
  }

  /** Proposes one membership change on the leader and answers with the membership after it. */
  private async changeMembers(change: MemberChange, call: grpc.ServerUnaryCall<unknown, unknown>): Promise<MemberListResponse> {
    const result = await withTimeout(this.ctx.raft.proposeMemberChange(change), budgetMs(call), 'membership change');
    if (result?.type !== 'config') throw new StatusError(grpc.status.INTERNAL, 'membership change produced no result');
    return { members: result.members.map((m) => ({ id: m.id, address: m.address, voter: m.voter })), revision: result.revision };
  }

  /** Waits until the leader has replicated to `id` within {@link PROMOTE_MAX_LAG_ENTRIES} of its log. */
  private async waitCaughtUp(id: string, call: grpc.ServerUnaryCall<unknown, unknown>): Promise<void> {
    const until = Date.now() + budgetMs(call);
    while (Date.now() < until) {
      const rep = this.ctx.raft.replicationOf(id);
      if (!rep) throw new UnavailableError('leadership changed while the new member was catching up; it stays a learner');
      if (rep.lastIndex - rep.matchIndex <= PROMOTE_MAX_LAG_ENTRIES) return;
      await new Promise((r) => setTimeout(r, TRANSFER_POLL_MS));
    }
    throw new StatusError(grpc.status.DEADLINE_EXCEEDED, `${id} did not catch up in time; it stays a learner (PromoteMember later)`);
  }

  /**
   * Thesis §3.10: on the leader, starts the transfer and waits until the target leads; on a
   * follower, forwards to the leader.
   */
  private async transferLeadership(call: grpc.ServerUnaryCall<TransferLeadershipRequest, TransferLeadershipResponse>): Promise<TransferLeadershipResponse> {
    const target = validateId(call.request.target_id, 'target_id');
    if (!this.ctx.members().some((m) => m.id === target && m.voter)) throw new ValidationError('target_id', `${JSON.stringify(target)} is not a voting member`);
    const raft = this.ctx.raft;
    if (raft.leaderId === target) return { leader_id: target, term: raft.status().currentTerm };
    const forwarded = await this.forwardIfFollower<TransferLeadershipRequest, TransferLeadershipResponse>(this.clusterClient.bind(this), 'TransferLeadership', { target_id: target }, call, false);
    if (forwarded) return forwarded;
    if (!raft.transferLeadership(nodeId(target))) throw new UnavailableError(`cannot transfer leadership to ${target} now; retry`);
    const budget = budgetMs(call);
    const until = Date.now() + budget;
    while (Date.now() < until) {
      const st = raft.status();
      if (st.leaderId === target) return { leader_id: target, term: st.currentTerm };
      if (st.role === 'leader' && st.leadTransferee === '') {
        // The core aborted the transfer (it did not finish within an election timeout).
        throw new UnavailableError(`leadership transfer to ${target} was aborted; retry`);
      }
      await new Promise((r) => setTimeout(r, TRANSFER_POLL_MS));
    }
    throw new StatusError(grpc.status.DEADLINE_EXCEEDED, `leadership transfer to ${target} did not finish within ${budget} ms`);
  }

  /** Ends every watch and closes the clients used to forward writes. */
  close(): void {
    this.ctx.watchHub.closeAll();
    for (const c of this.leaderClients.values()) c.close();
    this.leaderClients.clear();
  }

  /**
   * Waits for a linearizable read to be safe on this node and returns the revision it reads
   * at; serializable reads return the local applied index at once.
   */
  private async readBarrier(consistency: 'linearizable' | 'serializable', call: grpc.ServerUnaryCall<unknown, unknown>): Promise<number> {
    if (consistency === 'serializable') return this.ctx.raft.appliedIndex;
    await withTimeout(this.ctx.raft.readBarrier(), budgetMs(call), 'linearizable read');
    return this.ctx.raft.appliedIndex;
  }

  private nextRequestId(): string {
    return `${this.ctx.id}:${++this.requestSeq}`;
  }

  private async register(call: grpc.ServerUnaryCall<RegisterRequest, RegisterResponse>): Promise<RegisterResponse> {
    const spec = specFromWire(call.request.agent, 'agent');
    const session = validateSession(call.request.client_id, call.request.sequence);
    const ttlSeconds = validateTtlSeconds(call.request.ttl_seconds ?? 0);
    const health = validateHealth(call.request.agent?.health ?? 'HEALTH_UNSPECIFIED', 'agent.health');
    const expectedRevision = validateRevision(call.request.expected_revision, 'expected_revision');
    const createOnly = Boolean(call.request.create_only);
    const cmd: Command = {
      type: 'register',
      requestId: this.nextRequestId(),
      agent: spec,
      ...(session ? { session } : {}),
      ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
      ...(health !== 'unspecified' ? { health } : {}),
      ...(expectedRevision > 0 ? { expectedRevision } : {}),
      ...(createOnly ? { createOnly } : {}),
    };
    const wire: RegisterRequest = {
      agent: call.request.agent,
      client_id: session?.clientId ?? '',
      sequence: session?.sequence ?? 0,
      ttl_seconds: ttlSeconds,
      expected_revision: expectedRevision,
      create_only: createOnly,
    };
    return this.write<RegisterRequest, RegisterResponse>('Register', wire, cmd, call, (result) => {
      if (result?.type === 'conflict') throw conflictError(result);
      if (result?.type !== 'register') return undefined;
      return { agent: this.toWire(result.agent), revision: result.revision };
    });
  }

  private async deregister(call: grpc.ServerUnaryCall<DeregisterRequest, DeregisterResponse>): Promise<DeregisterResponse> {
    const id = validateId(call.request.id, 'id');
    const session = validateSession(call.request.client_id, call.request.sequence);
    const expectedRevision = validateRevision(call.request.expected_revision, 'expected_revision');
    const cmd: Command = { type: 'deregister', requestId: this.nextRequestId(), id, ...(session ? { session } : {}), ...(expectedRevision > 0 ? { expectedRevision } : {}) };
    const wire: DeregisterRequest = { id, client_id: session?.clientId ?? '', sequence: session?.sequence ?? 0, expected_revision: expectedRevision };
    return this.write<DeregisterRequest, DeregisterResponse>('Deregister', wire, cmd, call, (result) => {
      if (result?.type === 'conflict') throw conflictError(result);
      if (result?.type !== 'deregister') return undefined;
      return { deleted: result.deleted, revision: result.revision };
    });
  }

  /**
   * A write from any node: forwarded when this node is a follower, proposed when it leads. If
   * leadership moves away before the command is proposed (a transfer, an election), the write
   * is handed to the new leader once: it was never in the log, so this cannot apply it twice.
   */
  private async write<Req, Res extends { revision: number }>(
    method: 'Register' | 'Deregister',
    wire: Req,
    cmd: Command,
    call: grpc.ServerUnaryCall<unknown, unknown>,
    toResponse: (r: CommandResult | undefined) => Res | undefined,
  ): Promise<Res> {
    for (let attempt = 0; ; attempt++) {
      const forwarded = await this.forwardIfFollower<Req, Res>(this.leaderClient.bind(this), method, wire, call, true);
      if (forwarded) return forwarded;
      try {
        const res = toResponse(await this.proposeAndWait(cmd, call));
        if (res === undefined) {
          throw new StatusError(grpc.status.FAILED_PRECONDITION, 'sequence was already used by a different write of this client_id');
        }
        return res;
      } catch (e) {
        if (e instanceof NotLeaderError && e.leaderId !== '' && attempt === 0) continue;
        throw e;
      }
    }
  }

  private proposeAndWait(cmd: Command, call: grpc.ServerUnaryCall<unknown, unknown>): Promise<CommandResult | undefined> {
    return withTimeout(this.ctx.raft.propose(encodeCommand(cmd)), budgetMs(call), 'write');
  }

  /**
   * On a follower, sends the write to the leader and, once answered, waits until this node has
   * applied it too. Returns undefined on the leader (the caller proposes locally).
   */
  private async forwardIfFollower<Req, Res>(
    clientFor: (address: string) => grpc.Client,
    method: string,
    request: Req,
    call: grpc.ServerUnaryCall<unknown, unknown>,
    waitForApply: boolean,
  ): Promise<Res | undefined> {
    const raft = this.ctx.raft;
    if (raft.isLeader) return undefined;
    if (call.metadata.get(FORWARDED_METADATA_KEY).length > 0) {
      throw new UnavailableError(`${this.ctx.id} is not the leader (request was forwarded here); retry`);
    }
    const leader = raft.leaderId;
    if (!leader) throw new UnavailableError('no leader is known; retry');
    const address = this.ctx.members().find((m) => m.id === leader)?.address;
    if (!address) throw new UnavailableError(`leader ${leader} has no known address; retry`);
    const client = clientFor(address);
    const budget = budgetMs(call);
    const md = new grpc.Metadata();
    md.set(FORWARDED_METADATA_KEY, this.ctx.id);
    const res = await new Promise<Res>((resolve, reject) => {
      (client as unknown as Record<string, (r: Req, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: Res) => void) => void>)[method]!(
        request,
        md,
        { deadline: Date.now() + budget },
        (err, value) => (err ? reject(err) : resolve(value)),
      );
    });
    // Read-your-writes on this node: answer once the write is applied here too.
    if (waitForApply) {
      const revision = Number((res as { revision?: unknown }).revision ?? 0);
      await withTimeout(raft.waitApplied(revision), budget, 'local apply of the forwarded write');
    }
    return res;
  }

  private leaderClient(address: string): grpc.Client {
    let c = this.leaderClients.get(`registry ${address}`);
    if (!c) {
      c = new RegistryGrpcClient(address, grpc.credentials.createInsecure());
      this.leaderClients.set(`registry ${address}`, c);
    }
    return c;
  }

  private clusterClient(address: string): grpc.Client {
    let c = this.leaderClients.get(`cluster ${address}`);
    if (!c) {
      c = new ClusterGrpcClient(address, grpc.credentials.createInsecure());
      this.leaderClients.set(`cluster ${address}`, c);
    }
    return c;
  }
}
