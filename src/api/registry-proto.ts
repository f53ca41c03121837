/**
 * The client API contract in TypeScript: loads `proto/registry/v1/registry.proto` with
 * `@grpc/proto-loader`, exports the `Registry` and `Cluster` service definitions (for
 * `server.addService`) and client constructors, the wire message shapes (snake_case, as loaded),
 * and converters between the wire shapes and the registry's own types (`src/registry/types.ts`).
 *
 * Loader options: keepCase, longs as Number, enums as String names, defaults, arrays, objects,
 * oneofs. So every field is present on a decoded message: strings `''`, numbers `0`, repeated
 * `[]`, maps `{}`, enums their name, and an unset message field `null`.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Role } from '../raft/types.js';
import type { Agent, AgentSpec, FindQuery, Health } from '../registry/types.js';
import { ValidationError, validateAgentSpec, validateFindQuery, validateHealth } from '../registry/validation.js';

/** Path of the proto file relative to the package root. */
const PROTO_RELATIVE_PATH = join('proto', 'registry', 'v1', 'registry.proto');

/**
 * Finds the package root by walking up from this module until a directory holds the proto file,
 * so the same code works from `src/api/` (vitest) and `dist/src/api/` (after `tsc`).
 * Throws `Error` when no ancestor has it (a broken install).
 */
function findProtoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, PROTO_RELATIVE_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find ${PROTO_RELATIVE_PATH} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Absolute path of `proto/registry/v1/registry.proto`. */
export const REGISTRY_PROTO_PATH = findProtoPath();

/** The `@grpc/proto-loader` options every user of this proto must share. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

const packageDefinition = protoLoader.loadSync(REGISTRY_PROTO_PATH, PROTO_LOADER_OPTIONS);
const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
  registry: { v1: { Registry: grpc.ServiceClientConstructor; Cluster: grpc.ServiceClientConstructor } };
};

// ---------------------------------------------------------------------------------------------
// Wire shapes (as decoded with PROTO_LOADER_OPTIONS).

/** `registry.v1.Consistency` as an enum name. */
export type WireConsistency = 'CONSISTENCY_UNSPECIFIED' | 'CONSISTENCY_LINEARIZABLE' | 'CONSISTENCY_SERIALIZABLE';
/** `registry.v1.Role` as an enum name. */
export type WireRole = 'ROLE_UNSPECIFIED' | 'ROLE_FOLLOWER' | 'ROLE_CANDIDATE' | 'ROLE_LEADER' | 'ROLE_LEARNER';

/** `registry.v1.Agent`. Revisions are log indexes (uint64 as Number). */
export interface WireAgent {
  id: string;
  name: string;
  kind: string;
  version: string;
  description: string;
  capabilities: string[];
  endpoints: Record<string, string>;
  labels: Record<string, string>;
  create_revision: number;
  mod_revision: number;
  /** `registry.v1.Health` as an enum name: `HEALTH_UNSPECIFIED`, `HEALTH_SERVING`, `HEALTH_DEGRADED` or `HEALTH_NOT_SERVING`. */
  health: string;
  /** The agent's lease in seconds (int64 as Number); 0: none. */
  lease_ttl_seconds: number;
  /** When the lease lapses unless renewed, Unix ms, as the leader sees it; 0 elsewhere (output only). */
  lease_expires_unix_ms?: number;
}
/** `registry.v1.RegisterRequest`; `agent` is `null` when the sender left it unset. */
export interface RegisterRequest {
  agent: WireAgent | null;
  /** Exactly-once session id; '' for none. */
  client_id?: string;
  /** Exactly-once sequence number; 0 with no session. */
  sequence?: number;
  /** Lease in seconds; 0 for none. */
  ttl_seconds?: number;
  /** Compare-and-set on mod_revision; 0 for none. */
  expected_revision?: number;
  /** Apply only if absent. */
  create_only?: boolean;
}
/** `registry.v1.RegisterResponse`. */
export interface RegisterResponse {
  agent: WireAgent | null;
  revision: number;
}
/** `registry.v1.GetRequest`. */
export interface GetRequest {
  id: string;
  consistency: WireConsistency;
}
/** `registry.v1.GetResponse`. */
export interface GetResponse {
  agent: WireAgent | null;
  revision: number;
}
/** `registry.v1.FindRequest`. `page_size` is a uint32 count of agents. */
export interface FindRequest {
  capability: string;
  kind: string;
  labels: Record<string, string>;
  page_size: number;
  page_token: string;
  consistency: WireConsistency;
  /** Only agents with this health (`registry.v1.Health` enum name); unspecified means any. */
  health?: string | number;
  /** Only agents whose name starts with this; '' means any. */
  name_prefix?: string;
}
/** `registry.v1.FindResponse`. */
export interface FindResponse {
  agents: WireAgent[];
  next_page_token: string;
  revision: number;
}
/** `registry.v1.DeregisterRequest`. */
export interface DeregisterRequest {
  id: string;
  /** Exactly-once session id; '' for none. */
  client_id?: string;
  /** Exactly-once sequence number; 0 with no session. */
  sequence?: number;
  /** Compare-and-set on mod_revision; 0 for none. */
  expected_revision?: number;
}
/** `registry.v1.HeartbeatRequest`. */
export interface HeartbeatRequest {
  id: string;
  health?: string | number;
}
/** `registry.v1.HeartbeatResponse`. */
export interface HeartbeatResponse {
  ttl_seconds: number;
}
/** `registry.v1.WatchRequest`. */
export interface WatchRequest {
  start_revision?: number;
  id_prefix?: string;
  capability?: string;
  kind?: string;
}
/** `registry.v1.WatchEvent`. */
export interface WireWatchEvent {
  type: 'EVENT_TYPE_UNSPECIFIED' | 'EVENT_TYPE_PUT' | 'EVENT_TYPE_DELETE';
  agent: WireAgent | null;
  revision: number;
  expired: boolean;
}
/** `registry.v1.AddMemberRequest`. */
export interface AddMemberRequest {
  id: string;
  address: string;
  learner: boolean;
}
/** `registry.v1.RemoveMemberRequest`. */
export interface RemoveMemberRequest {
  id: string;
}
/** `registry.v1.PromoteMemberRequest`. */
export interface PromoteMemberRequest {
  id: string;
}
/** `registry.v1.MemberListResponse`. */
export interface MemberListResponse {
  members: WireMember[];
  revision: number;
}
/** `registry.v1.TransferLeadershipRequest`. */
export interface TransferLeadershipRequest {
  target_id: string;
}
/** `registry.v1.TransferLeadershipResponse`. */
export interface TransferLeadershipResponse {
  leader_id: string;
  term: number;
}
/** `registry.v1.DeregisterResponse`. */
export interface DeregisterResponse {
  deleted: boolean;
  revision: number;
}
/** `registry.v1.StatusRequest` (no fields). */
export type StatusRequest = Record<string, never>;
/** `registry.v1.Member`. */
export interface WireMember {
  id: string;
  address: string;
  voter: boolean;
}
/** `registry.v1.StatusResponse`. Term and indexes are uint64 as Number. */
export interface StatusResponse {
  node_id: string;
  leader_id: string;
  term: number;
  commit_index: number;
  applied_index: number;
  role: WireRole;
  members: WireMember[];
  /** Index of the latest snapshot (0: none). */
  snapshot_index?: number;
  /** First index still in the log. */
  first_index?: number;
}

// ---------------------------------------------------------------------------------------------
// Service definitions.

/** The methods of `registry.v1.Registry`, typed. */
export type RegistryServiceDefinition = {
  readonly Register: grpc.MethodDefinition<RegisterRequest, RegisterResponse>;
  readonly Get: grpc.MethodDefinition<GetRequest, GetResponse>;
  readonly Find: grpc.MethodDefinition<FindRequest, FindResponse>;
  readonly Deregister: grpc.MethodDefinition<DeregisterRequest, DeregisterResponse>;
  readonly Heartbeat: grpc.MethodDefinition<HeartbeatRequest, HeartbeatResponse>;
  readonly Watch: grpc.MethodDefinition<WatchRequest, WireWatchEvent>;
};
/** The methods of `registry.v1.Cluster`, typed. */
export type ClusterServiceDefinition = {
  readonly Status: grpc.MethodDefinition<StatusRequest, StatusResponse>;
  readonly TransferLeadership: grpc.MethodDefinition<TransferLeadershipRequest, TransferLeadershipResponse>;
  readonly AddMember: grpc.MethodDefinition<AddMemberRequest, MemberListResponse>;
  readonly RemoveMember: grpc.MethodDefinition<RemoveMemberRequest, MemberListResponse>;
  readonly PromoteMember: grpc.MethodDefinition<PromoteMemberRequest, MemberListResponse>;
  readonly Snapshot: grpc.MethodDefinition<Record<string, never>, { data: Uint8Array }>;
};

/** Server-side handlers of `registry.v1.Registry`, for `server.addService(RegistryService, handlers)`. */
export type RegistryHandlers = {
  Register: grpc.handleUnaryCall<RegisterRequest, RegisterResponse>;
  Get: grpc.handleUnaryCall<GetRequest, GetResponse>;
  Find: grpc.handleUnaryCall<FindRequest, FindResponse>;
  Deregister: grpc.handleUnaryCall<DeregisterRequest, DeregisterResponse>;
  Heartbeat: grpc.handleUnaryCall<HeartbeatRequest, HeartbeatResponse>;
  Watch: grpc.handleServerStreamingCall<WatchRequest, WireWatchEvent>;
};
/** Server-side handlers of `registry.v1.Cluster`. */
export type ClusterHandlers = {
  Status: grpc.handleUnaryCall<StatusRequest, StatusResponse>;
  TransferLeadership: grpc.handleUnaryCall<TransferLeadershipRequest, TransferLeadershipResponse>;
  AddMember: grpc.handleUnaryCall<AddMemberRequest, MemberListResponse>;
  RemoveMember: grpc.handleUnaryCall<RemoveMemberRequest, MemberListResponse>;
  PromoteMember: grpc.handleUnaryCall<PromoteMemberRequest, MemberListResponse>;
  Snapshot: grpc.handleServerStreamingCall<Record<string, never>, { data: Uint8Array }>;
};

/** Client constructor of `registry.v1.Registry` (methods untyped; see {@link RegistryService} for typed paths). */
export const RegistryGrpcClient: grpc.ServiceClientConstructor = loaded.registry.v1.Registry;
/** Client constructor of `registry.v1.Cluster`. */
export const ClusterGrpcClient: grpc.ServiceClientConstructor = loaded.registry.v1.Cluster;
/** Service definition of `registry.v1.Registry` (paths, serializers) for servers and generic clients. */
export const RegistryService = RegistryGrpcClient.service as unknown as RegistryServiceDefinition & grpc.ServiceDefinition;
/** Service definition of `registry.v1.Cluster`. */
export const ClusterService = ClusterGrpcClient.service as unknown as ClusterServiceDefinition & grpc.ServiceDefinition;

// ---------------------------------------------------------------------------------------------
// Domain types of the API that the registry types do not cover.

/** How a read is served: `linearizable` (ReadIndex, the default) or `serializable` (local, maybe stale). */
export type Consistency = 'linearizable' | 'serializable';

/** A node's role as reported by `Cluster.Status`. */
export type NodeRole = 'follower' | 'candidate' | 'leader' | 'learner' | 'unspecified';

/** One member of the cluster configuration. */
export interface ClusterMember {
  readonly id: string;
  /** Client API address, `host:port`. */
  readonly address: string;
  /** True for a voter, false for a learner. */
  readonly voter: boolean;
}

/** A node's view of the cluster (`Cluster.Status`). Term and indexes are plain numbers. */
export interface ClusterStatus {
  readonly nodeId: string;
  /** The leader known for `term`, or `''`. */
  readonly leaderId: string;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly role: NodeRole;
  readonly members: readonly ClusterMember[];
  /** Index of the latest snapshot (0: none). */
  readonly snapshotIndex: number;
  /** First index still in the log (entries before it are in the snapshot). */
  readonly firstIndex: number;
}

// ---------------------------------------------------------------------------------------------
// Converters.

/** Encodes a stored agent for the wire, with its health and lease length. */
export function agentToWire(agent: Agent): WireAgent {
  return {
    ...specToWire(agent),
    create_revision: agent.createRevision,
    mod_revision: agent.modRevision,
    health: healthToWire(agent.health),
    lease_ttl_seconds: agent.ttlSeconds,
  };
}

/** The proto enum name of a health value (`serving` → `HEALTH_SERVING`). */
export function healthToWire(h: Health): string {
  switch (h) {
    case 'unspecified':
      return 'HEALTH_UNSPECIFIED';
    case 'serving':
      return 'HEALTH_SERVING';
    case 'degraded':
      return 'HEALTH_DEGRADED';
    case 'notServing':
      return 'HEALTH_NOT_SERVING';
    default:
      return assertNever(h);
  }
}

/** A health value from the wire without failing: unknown (newer) values read as `unspecified`. */
function agentHealthFromWire(w: unknown): Health {
  try {
    return validateHealth(w ?? 'HEALTH_UNSPECIFIED');
  } catch {
    return 'unspecified';
  }
}

/** Encodes an agent spec for the wire (revisions 0, no health, no lease: a spec has none). */
export function specToWire(spec: AgentSpec): WireAgent {
  return {
    id: spec.id,
    name: spec.name,
    kind: spec.kind,
    version: spec.version,
    description: spec.description,
    capabilities: [...spec.capabilities],
    endpoints: Object.fromEntries(Object.entries(spec.endpoints)),
    labels: Object.fromEntries(Object.entries(spec.labels)),
    create_revision: 0,
    mod_revision: 0,
    health: 'HEALTH_UNSPECIFIED',
    lease_ttl_seconds: 0,
  };
}

/**
 * Decodes a stored agent from the wire (a response). Missing repeated/map fields become empty;
 * nothing is validated (the server is trusted).
 */
export function agentFromWire(w: WireAgent): Agent {
  return {
    id: w.id ?? '',
    name: w.name ?? '',
    kind: w.kind ?? '',
    version: w.version ?? '',
    description: w.description ?? '',
    capabilities: [...(w.capabilities ?? [])],
    endpoints: Object.fromEntries(Object.entries(w.endpoints ?? {})),
    labels: Object.fromEntries(Object.entries(w.labels ?? {})),
    createRevision: Number(w.create_revision ?? 0),
    modRevision: Number(w.mod_revision ?? 0),
    ttlSeconds: Number(w.lease_ttl_seconds ?? 0),
    health: agentHealthFromWire(w.health),
  };
}

/**
 * Decodes and validates the agent of a `RegisterRequest` (server side). Revisions are ignored.
 *
 * @throws ValidationError naming the field (`agent` when unset, `agent.id`, …): answer
 *   `INVALID_ARGUMENT` with its message.
 */
export function specFromWire(w: WireAgent | null | undefined, path = 'agent'): AgentSpec {
  if (w === null || w === undefined) throw new ValidationError(path, 'is required');
  return validateAgentSpec(
    {
      id: w.id,
      name: w.name,
      kind: w.kind,
      version: w.version,
      description: w.description,
      capabilities: w.capabilities,
      endpoints: w.endpoints,
      labels: w.labels,
    },
    path,
  );
}

/** Encodes a consistency; `undefined` becomes `CONSISTENCY_UNSPECIFIED` (linearizable). */
export function consistencyToWire(c: Consistency | undefined): WireConsistency {
  switch (c) {
    case undefined:
      return 'CONSISTENCY_UNSPECIFIED';
    case 'linearizable':
      return 'CONSISTENCY_LINEARIZABLE';
    case 'serializable':
      return 'CONSISTENCY_SERIALIZABLE';
    default:
      return assertNever(c);
  }
}

/**
 * Decodes a consistency; unspecified means linearizable.
 * @throws ValidationError (field `consistency`) on an unknown value.
 */
export function consistencyFromWire(w: WireConsistency | string | number | undefined): Consistency {
  switch (w) {
    case undefined:
    case 0:
    case 1:
    case 'CONSISTENCY_UNSPECIFIED':
    case 'CONSISTENCY_LINEARIZABLE':
      return 'linearizable';
    case 2:
    case 'CONSISTENCY_SERIALIZABLE':
      return 'serializable';
    default:
      throw new ValidationError('consistency', `must be CONSISTENCY_LINEARIZABLE or CONSISTENCY_SERIALIZABLE, got ${String(w)}`);
  }
}

/** Encodes a find query (with its consistency) as a `FindRequest`. Absent filters become empty. */
export function findQueryToWire(q: FindQuery, consistency?: Consistency): FindRequest {
  return {
    capability: q.capability ?? '',
    kind: q.kind ?? '',
    labels: Object.fromEntries(Object.entries(q.labels ?? {})),
    page_size: q.pageSize ?? 0,
    page_token: q.pageToken ?? '',
    consistency: consistencyToWire(consistency),
    health: healthToWire(q.health ?? 'unspecified'),
    name_prefix: q.namePrefix ?? '',
  };
}

/**
 * Decodes and validates a `FindRequest` (server side). Page size is not capped here: the server
 * applies its own maximum.
 *
 * @throws ValidationError naming the field (`query.capability`, `query.labels`, `consistency`…).
 */
export function findQueryFromWire(req: FindRequest): { query: Required<FindQuery>; consistency: Consistency } {
  const query = validateFindQuery({
    capability: req.capability,
    kind: req.kind,
    labels: req.labels,
    pageSize: req.page_size,
    pageToken: req.page_token,
    health: req.health ?? 'HEALTH_UNSPECIFIED',
    namePrefix: req.name_prefix ?? '',
  });
  return { query, consistency: consistencyFromWire(req.consistency) };
}

/** Encodes a node role; a pre-candidate (thesis §9.6) is reported as a candidate. */
export function roleToWire(role: Role | 'learner'): WireRole {
  switch (role) {
    case 'follower':
      return 'ROLE_FOLLOWER';
    case 'preCandidate':
    case 'candidate':
      return 'ROLE_CANDIDATE';
    case 'leader':
      return 'ROLE_LEADER';
    case 'learner':
      return 'ROLE_LEARNER';
    default:
      return assertNever(role);
  }
}

/** Decodes a node role; an unknown value is `unspecified`. */
export function roleFromWire(w: WireRole | string | number | undefined): NodeRole {
  switch (w) {
    case 'ROLE_FOLLOWER':
    case 1:
      return 'follower';
    case 'ROLE_CANDIDATE':
    case 2:
      return 'candidate';
    case 'ROLE_LEADER':
    case 3:
      return 'leader';
    case 'ROLE_LEARNER':
    case 4:
      return 'learner';
    default:
      return 'unspecified';
  }
}

/** Encodes a node's status (server side). */
export function statusToWire(s: {
  nodeId: string;
  leaderId: string;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  role: Role | 'learner';
  members: readonly ClusterMember[];
  snapshotIndex?: number;
  firstIndex?: number;
}): StatusResponse {
  return {
    node_id: s.nodeId,
    leader_id: s.leaderId,
    term: s.term,
    commit_index: s.commitIndex,
    applied_index: s.appliedIndex,
    role: roleToWire(s.role),
    members: s.members.map((m) => ({ id: m.id, address: m.address, voter: m.voter })),
    snapshot_index: s.snapshotIndex ?? 0,
    first_index: s.firstIndex ?? 0,
  };
}

/** Decodes a node's status (client side). */
export function statusFromWire(w: StatusResponse): ClusterStatus {
  return {
    nodeId: w.node_id ?? '',
    leaderId: w.leader_id ?? '',
    term: Number(w.term ?? 0),
    commitIndex: Number(w.commit_index ?? 0),
    appliedIndex: Number(w.applied_index ?? 0),
    role: roleFromWire(w.role),
    members: (w.members ?? []).map((m) => ({ id: m.id ?? '', address: m.address ?? '', voter: Boolean(m.voter) })),
    snapshotIndex: Number(w.snapshot_index ?? 0),
    firstIndex: Number(w.first_index ?? 0),
  };
}

/** Exhaustiveness check for switches over unions. */
function assertNever(x: never): never {
  throw new Error(`unexpected value ${String(x)}`);
}
