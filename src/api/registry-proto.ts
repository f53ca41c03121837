/**
 * The client API contract in TypeScript: loads `proto/registry/v1/registry.proto` with
 * `@grpc/proto-loader`, exports the `Registry` and `Cluster` service definitions (for
 * `server.addService`) and client constructors, the wire message shapes (snake_case, as loaded),
 * and converters between the wire shapes and the registry's own types (`src/registry/types.ts`).
 *
 * The wire shapes are not written here: they are aliases of the types `proto-loader-gen-types`
 * generates from the proto into `src/gen/registry/` (`npm run gen:proto`), with the same loader
 * options ({@link PROTO_LOADER_OPTIONS}, `src/util/proto-options.ts`): keepCase, longs as Number, enums as
 * String names, defaults, arrays, objects, oneofs. So every field is present on a decoded message:
 * strings `''`, numbers `0`, repeated `[]`, maps `{}`, enums their name, and an unset message
 * field `null`.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Role } from '../raft/types.js';
import { specFromCard } from '../registry/formats/card.js';
import type { Agent, AgentSpec, CardFormat, FindQuery, Health, SearchQuery } from '../registry/types.js';
import { ValidationError, validateAgentSpec, validateCapabilityPrefix, validateFindQuery, validateHealth, validateSearchQuery } from '../registry/validation.js';
import type { ProtoGrpcType } from '../gen/registry.js';
import type { AddMemberRequest as AddMemberRequestIn } from '../gen/registry/v1/AddMemberRequest.js';
import type { AuthDefinition, AuthHandlers } from '../gen/registry/v1/Auth.js';
import type { AuthStatusResponse__Output } from '../gen/registry/v1/AuthStatusResponse.js';
import type { AuthWriteResponse__Output } from '../gen/registry/v1/AuthWriteResponse.js';
import type { CreateTokenRequest as CreateTokenRequestIn } from '../gen/registry/v1/CreateTokenRequest.js';
import type { CreateTokenResponse__Output } from '../gen/registry/v1/CreateTokenResponse.js';
import type { RevokeTokenRequest as RevokeTokenRequestIn } from '../gen/registry/v1/RevokeTokenRequest.js';
import type { RotateSigningKeyRequest as RotateSigningKeyRequestIn } from '../gen/registry/v1/RotateSigningKeyRequest.js';
import type { TrustCardKeyRequest as TrustCardKeyRequestIn } from '../gen/registry/v1/TrustCardKeyRequest.js';
import type { UntrustCardKeyRequest as UntrustCardKeyRequestIn } from '../gen/registry/v1/UntrustCardKeyRequest.js';
import type { Agent as AgentIn, Agent__Output } from '../gen/registry/v1/Agent.js';
import type { BackupChunk__Output } from '../gen/registry/v1/BackupChunk.js';
import type { BackupRequest as BackupRequestIn } from '../gen/registry/v1/BackupRequest.js';
import { CardFormat as CARD_FORMAT_NAMES, type CardFormat__Output } from '../gen/registry/v1/CardFormat.js';
import type { ClusterDefinition, ClusterHandlers } from '../gen/registry/v1/Cluster.js';
import { Consistency as CONSISTENCY_NAMES, type Consistency as ConsistencyInput, type Consistency__Output } from '../gen/registry/v1/Consistency.js';
import type { DeregisterRequest as DeregisterRequestIn } from '../gen/registry/v1/DeregisterRequest.js';
import type { DeregisterResponse__Output } from '../gen/registry/v1/DeregisterResponse.js';
import type { EventType__Output } from '../gen/registry/v1/EventType.js';
import type { FindRequest as FindRequestIn, FindRequest__Output } from '../gen/registry/v1/FindRequest.js';
import type { FindResponse__Output } from '../gen/registry/v1/FindResponse.js';
import type { ListCapabilitiesRequest as ListCapabilitiesRequestIn, ListCapabilitiesRequest__Output } from '../gen/registry/v1/ListCapabilitiesRequest.js';
import type { ListCapabilitiesResponse__Output } from '../gen/registry/v1/ListCapabilitiesResponse.js';
import type { SearchRequest as SearchRequestIn, SearchRequest__Output } from '../gen/registry/v1/SearchRequest.js';
import type { SearchResponse__Output } from '../gen/registry/v1/SearchResponse.js';
import type { GetRequest as GetRequestIn } from '../gen/registry/v1/GetRequest.js';
import type { GetResponse__Output } from '../gen/registry/v1/GetResponse.js';
import type { ListVersionsRequest as ListVersionsRequestIn } from '../gen/registry/v1/ListVersionsRequest.js';
import type { ListVersionsResponse__Output } from '../gen/registry/v1/ListVersionsResponse.js';
import type { Health__Output } from '../gen/registry/v1/Health.js';
import type { HeartbeatRequest as HeartbeatRequestIn } from '../gen/registry/v1/HeartbeatRequest.js';
import type { HeartbeatResponse__Output } from '../gen/registry/v1/HeartbeatResponse.js';
import type { Member__Output } from '../gen/registry/v1/Member.js';
import type { MemberListResponse__Output } from '../gen/registry/v1/MemberListResponse.js';
import type { PromoteMemberRequest as PromoteMemberRequestIn } from '../gen/registry/v1/PromoteMemberRequest.js';
import type { RegisterRequest as RegisterRequestIn } from '../gen/registry/v1/RegisterRequest.js';
import type { RegisterResponse__Output } from '../gen/registry/v1/RegisterResponse.js';
import type { RegistryDefinition, RegistryHandlers } from '../gen/registry/v1/Registry.js';
import type { RemoveMemberRequest as RemoveMemberRequestIn } from '../gen/registry/v1/RemoveMemberRequest.js';
import { Role as ROLE_NAMES, type Role as RoleInput, type Role__Output } from '../gen/registry/v1/Role.js';
import type { StatusRequest as StatusRequestIn } from '../gen/registry/v1/StatusRequest.js';
import type { StatusResponse__Output } from '../gen/registry/v1/StatusResponse.js';
import type { TransferLeadershipRequest as TransferLeadershipRequestIn } from '../gen/registry/v1/TransferLeadershipRequest.js';
import type { TransferLeadershipResponse__Output } from '../gen/registry/v1/TransferLeadershipResponse.js';
import type { WatchEvent__Output } from '../gen/registry/v1/WatchEvent.js';
import type { WatchRequest as WatchRequestIn } from '../gen/registry/v1/WatchRequest.js';
import { PROTO_LOADER_OPTIONS } from '../util/proto-options.js';

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

/** The `@grpc/proto-loader` options every user of this proto must share (see `src/util/proto-options.ts`). */
export { PROTO_LOADER_OPTIONS };

const packageDefinition = protoLoader.loadSync(REGISTRY_PROTO_PATH, PROTO_LOADER_OPTIONS);
const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as ProtoGrpcType;

// ---------------------------------------------------------------------------------------------
// Wire shapes: the types generated from registry.proto into `src/gen/registry/` (`npm run
// gen:proto`), with PROTO_LOADER_OPTIONS.
//
// Requests are the generated permissive types (every field optional, enums by name or number,
// 64-bit integers as number, string or Long): the handlers of `handlers.ts` take them from the
// gRPC decoder, from the HTTP front end's JSON (which leaves absent fields out) and from the
// simulator, so they must not assume a field is present; they validate every field anyway.
// Clients send the same types.
//
// Responses and the messages inside them (`WireAgent`, `WireMember`, `WireWatchEvent`, ...) are
// the `__Output` types: the complete object the loader decodes (every field present, enums by
// name, uint64/int64 as Number, an unset message field `null`). Clients receive that shape; the
// handlers must build it whole (it is a subtype of the permissive type the serializer takes), so
// no field can be forgotten.

/** `registry.v1.Consistency` as an enum name. */
export type WireConsistency = Consistency__Output;
/** `registry.v1.Role` as an enum name. */
export type WireRole = Role__Output;
/** `registry.v1.CardFormat` as an enum name. */
export type WireCardFormat = CardFormat__Output;
/** `registry.v1.Health` as an enum name. */
export type WireHealth = Health__Output;
/** `registry.v1.EventType` as an enum name. */
export type WireEventType = EventType__Output;
/** `registry.v1.Agent`. Revisions are log indexes (uint64 as Number). */
export type WireAgent = Agent__Output;
/** `registry.v1.RegisterRequest`; `agent` is `null` (decoded) or absent when the sender left it unset. */
export type RegisterRequest = RegisterRequestIn;
/** `registry.v1.RegisterResponse`. */
export type RegisterResponse = RegisterResponse__Output;
/** `registry.v1.GetRequest`. */
export type GetRequest = GetRequestIn;
/** `registry.v1.GetResponse`. */
export type GetResponse = GetResponse__Output;
/** `registry.v1.ListVersionsRequest`. */
export type ListVersionsRequest = ListVersionsRequestIn;
/** `registry.v1.ListVersionsResponse`: the versions of one name, latest first. */
export type ListVersionsResponse = ListVersionsResponse__Output;
/** `registry.v1.FindRequest`. `page_size` is a uint32 count of agents. */
export type FindRequest = FindRequestIn;
/** `registry.v1.FindResponse`. */
export type FindResponse = FindResponse__Output;
/** `registry.v1.SearchRequest`. `page_size` is a uint32 count of results. */
export type SearchRequest = SearchRequestIn;
/** `registry.v1.SearchResponse`; each result's `score` is a BM25 score (double). */
export type SearchResponse = SearchResponse__Output;
/** `registry.v1.ListCapabilitiesRequest`. */
export type ListCapabilitiesRequest = ListCapabilitiesRequestIn;
/** `registry.v1.ListCapabilitiesResponse`; counts are uint64 as Number. */
export type ListCapabilitiesResponse = ListCapabilitiesResponse__Output;
/** `registry.v1.DeregisterRequest`. */
export type DeregisterRequest = DeregisterRequestIn;
/** `registry.v1.DeregisterResponse`. */
export type DeregisterResponse = DeregisterResponse__Output;
/** `registry.v1.HeartbeatRequest`. */
export type HeartbeatRequest = HeartbeatRequestIn;
/** `registry.v1.HeartbeatResponse`. */
export type HeartbeatResponse = HeartbeatResponse__Output;
/** `registry.v1.WatchRequest`. */
export type WatchRequest = WatchRequestIn;
/** `registry.v1.WatchEvent`. */
export type WireWatchEvent = WatchEvent__Output;
/** `registry.v1.AddMemberRequest`. */
export type AddMemberRequest = AddMemberRequestIn;
/** `registry.v1.RemoveMemberRequest`. */
export type RemoveMemberRequest = RemoveMemberRequestIn;
/** `registry.v1.PromoteMemberRequest`. */
export type PromoteMemberRequest = PromoteMemberRequestIn;
/** `registry.v1.MemberListResponse`. */
export type MemberListResponse = MemberListResponse__Output;
/** `registry.v1.TransferLeadershipRequest`. */
export type TransferLeadershipRequest = TransferLeadershipRequestIn;
/** `registry.v1.TransferLeadershipResponse`. */
export type TransferLeadershipResponse = TransferLeadershipResponse__Output;
/** `registry.v1.StatusRequest` (no fields). */
export type StatusRequest = StatusRequestIn;
/** `registry.v1.Member`. */
export type WireMember = Member__Output;
/** `registry.v1.StatusResponse`. Term and indexes are uint64 as Number. */
export type StatusResponse = StatusResponse__Output;
/** `registry.v1.BackupRequest` (no fields). */
export type BackupRequest = BackupRequestIn;
/** `registry.v1.BackupChunk`. */
export type BackupChunk = BackupChunk__Output;
/** `registry.v1.AuthStatusResponse`. */
export type AuthStatusResponse = AuthStatusResponse__Output;
/** `registry.v1.CreateTokenRequest`; `ttl_seconds` is a uint64 count of seconds (0: never expires). */
export type CreateTokenRequest = CreateTokenRequestIn;
/** `registry.v1.CreateTokenResponse`. */
export type CreateTokenResponse = CreateTokenResponse__Output;
/** `registry.v1.RevokeTokenRequest`. */
export type RevokeTokenRequest = RevokeTokenRequestIn;
/** `registry.v1.RotateSigningKeyRequest`. */
export type RotateSigningKeyRequest = RotateSigningKeyRequestIn;
/** `registry.v1.TrustCardKeyRequest`. */
export type TrustCardKeyRequest = TrustCardKeyRequestIn;
/** `registry.v1.UntrustCardKeyRequest`. */
export type UntrustCardKeyRequest = UntrustCardKeyRequestIn;
/** `registry.v1.AuthWriteResponse`. */
export type AuthWriteResponse = AuthWriteResponse__Output;

// ---------------------------------------------------------------------------------------------
// Service definitions (generated): request types are what the server decodes (`__Output`),
// response types what its serializer accepts.

/** The methods of `registry.v1.Registry`, typed. */
export type RegistryServiceDefinition = RegistryDefinition;
/** The methods of `registry.v1.Cluster`, typed. */
export type ClusterServiceDefinition = ClusterDefinition;
/** The methods of `registry.v1.Auth`, typed. */
export type AuthServiceDefinition = AuthDefinition;
/** Server-side handlers of `registry.v1.Registry`, for `server.addService(RegistryService, handlers)`. */
export type { RegistryHandlers, ClusterHandlers, AuthHandlers };

/** Client constructor of `registry.v1.Registry` (methods untyped; see {@link RegistryService} for typed paths). */
export const RegistryGrpcClient = loaded.registry.v1.Registry as unknown as grpc.ServiceClientConstructor;
/** Client constructor of `registry.v1.Cluster`. */
export const ClusterGrpcClient = loaded.registry.v1.Cluster as unknown as grpc.ServiceClientConstructor;
/** Service definition of `registry.v1.Registry` (paths, serializers) for servers and generic clients. */
export const RegistryService: RegistryServiceDefinition = loaded.registry.v1.Registry.service;
/** Service definition of `registry.v1.Cluster`. */
export const ClusterService: ClusterServiceDefinition = loaded.registry.v1.Cluster.service;
/** Client constructor of `registry.v1.Auth`. */
export const AuthGrpcClient = loaded.registry.v1.Auth as unknown as grpc.ServiceClientConstructor;
/** Service definition of `registry.v1.Auth`. */
export const AuthService: AuthServiceDefinition = loaded.registry.v1.Auth.service;

// ---------------------------------------------------------------------------------------------
// Enum values as the loaded proto defines them.

/**
 * The name of value `v` of enum `registry.v1.<enumName>` (given by name, or by number as a
 * sender may encode it), or `undefined` when the enum has no such value. Names come from the
 * generated enum object, numbers from the loaded definition.
 */
function enumNameOf<N extends string>(enumName: string, names: Readonly<Record<N, N>>, v: unknown): N | undefined {
  if (typeof v === 'string') return Object.hasOwn(names, v) ? (v as N) : undefined;
  if (typeof v === 'number') {
    const name = enumNumbers(enumName).get(v);
    return name !== undefined && Object.hasOwn(names, name) ? (name as N) : undefined;
  }
  return undefined;
}

const enumNumberCache = new Map<string, ReadonlyMap<number, string>>();

/** Number → name of the values of enum `registry.v1.<enumName>`, from the loaded descriptor. */
function enumNumbers(enumName: string): ReadonlyMap<number, string> {
  let m = enumNumberCache.get(enumName);
  if (m === undefined) {
    const def = packageDefinition[`registry.v1.${enumName}`] as protoLoader.EnumTypeDefinition | undefined;
    const values = (def?.type as { value?: unknown } | undefined)?.value;
    if (!Array.isArray(values)) throw new Error(`registry.v1.${enumName} is not an enum of ${PROTO_RELATIVE_PATH}`);
    m = new Map((values as { name: string; number: number }[]).map((x) => [x.number, x.name]));
    enumNumberCache.set(enumName, m);
  }
  return m;
}

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
  /** HTTP/JSON address, `host:port`, as the member last reported it (absent while unknown). */
  readonly httpAddress?: string;
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
  /** This node's HTTP/JSON address, `host:port` ('' without one). */
  readonly httpAddress: string;
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
    lease_expires_unix_ms: 0,
    modified_by: agent.modifiedBy ?? '',
    verified_key_id: agent.verifiedKeyId ?? '',
    signature_error: agent.signatureError ?? '',
  };
}

/** The proto enum name of a health value (`serving` → `HEALTH_SERVING`). */
export function healthToWire(h: Health): WireHealth {
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
    lease_expires_unix_ms: 0,
    card: spec.card ?? '',
    card_format: cardFormatToWire(spec.card === undefined ? undefined : spec.cardFormat),
    modified_by: '',
    verified_key_id: '',
    signature_error: '',
  };
}

/** The proto enum name of a card format; `undefined` (no card) is `CARD_FORMAT_UNSPECIFIED`. */
export function cardFormatToWire(f: CardFormat | undefined): WireCardFormat {
  switch (f) {
    case undefined:
      return 'CARD_FORMAT_UNSPECIFIED';
    case 'a2aAgentCard':
      return 'CARD_FORMAT_A2A_AGENT_CARD';
    case 'mcpServerJson':
      return 'CARD_FORMAT_MCP_SERVER_JSON';
    default:
      return assertNever(f);
  }
}

/**
 * A card format from the wire (by name or number); `CARD_FORMAT_UNSPECIFIED` is `undefined`.
 * @throws ValidationError naming `field` for a value the enum does not have.
 */
export function cardFormatFromWire(w: unknown, field = 'agent.card_format'): CardFormat | undefined {
  const name = w === undefined || w === null ? 'CARD_FORMAT_UNSPECIFIED' : enumNameOf('CardFormat', CARD_FORMAT_NAMES, w);
  switch (name) {
    case 'CARD_FORMAT_UNSPECIFIED':
      return undefined;
    case 'CARD_FORMAT_A2A_AGENT_CARD':
      return 'a2aAgentCard';
    case 'CARD_FORMAT_MCP_SERVER_JSON':
      return 'mcpServerJson';
    case undefined:
      throw new ValidationError(field, `must be CARD_FORMAT_UNSPECIFIED, CARD_FORMAT_A2A_AGENT_CARD or CARD_FORMAT_MCP_SERVER_JSON, got ${String(w)}`);
    default:
      return assertNever(name);
  }
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
    ...cardFromWire(w),
    ...(w.modified_by ? { modifiedBy: w.modified_by } : {}),
    ...(w.verified_key_id ? { verifiedKeyId: w.verified_key_id } : {}),
    ...(w.signature_error ? { signatureError: w.signature_error } : {}),
  };
}

/** The card of an agent from the wire (a response), without failing: an unknown format reads as no card. */
function cardFromWire(w: WireAgent): Pick<Agent, 'card' | 'cardFormat'> {
  if (!w.card) return {};
  try {
    const cardFormat = cardFormatFromWire(w.card_format);
    return cardFormat === undefined ? {} : { card: w.card, cardFormat };
  } catch {
    return {};
  }
}

/**
 * Decodes and validates the agent of a `RegisterRequest` (server side). Revisions are ignored.
 * An agent with a `card` is the card's spec (`registry/formats/card.ts` `specFromCard`: checked
 * against its official schema, indexed fields derived, given fields merged in).
 *
 * @throws ValidationError naming the field (`agent` when unset, `agent.id`, …): answer
 *   `INVALID_ARGUMENT` with its message.
 */
export function specFromWire(w: AgentIn | null | undefined, path = 'agent'): AgentSpec {
  if (w === null || w === undefined) throw new ValidationError(path, 'is required');
  const cardFormat = cardFormatFromWire(w.card_format, `${path}.card_format`);
  if (w.card !== undefined && w.card !== '') {
    // A native document: validated against its schema, the indexed fields derived from it.
    return specFromCard({ ...w, card: w.card, ...(cardFormat ? { cardFormat } : {}) }, path);
  }
  if (cardFormat !== undefined) throw new ValidationError(`${path}.card`, 'is required when card_format is set');
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
 * Decodes a consistency (by name, or by number as a sender may encode it); unspecified means
 * linearizable.
 * @throws ValidationError (field `consistency`) on an unknown value.
 */
export function consistencyFromWire(w: ConsistencyInput | string | undefined): Consistency {
  const name = w === undefined ? 'CONSISTENCY_UNSPECIFIED' : enumNameOf('Consistency', CONSISTENCY_NAMES, w);
  switch (name) {
    case 'CONSISTENCY_UNSPECIFIED':
    case 'CONSISTENCY_LINEARIZABLE':
      return 'linearizable';
    case 'CONSISTENCY_SERIALIZABLE':
      return 'serializable';
    case undefined:
      throw new ValidationError('consistency', `must be CONSISTENCY_LINEARIZABLE or CONSISTENCY_SERIALIZABLE, got ${String(w)}`);
    default:
      return assertNever(name);
  }
}

/** Encodes a find query (with its consistency) as a complete `FindRequest`. Absent filters become empty. */
export function findQueryToWire(q: FindQuery, consistency?: Consistency): FindRequest__Output {
  return {
    capability: q.capability ?? '',
    kind: q.kind ?? '',
    labels: Object.fromEntries(Object.entries(q.labels ?? {})),
    page_size: q.pageSize ?? 0,
    page_token: q.pageToken ?? '',
    consistency: consistencyToWire(consistency),
    health: healthToWire(q.health ?? 'unspecified'),
    name_prefix: q.namePrefix ?? '',
    capability_prefix: q.capabilityPrefix ?? '',
    verified_only: q.verifiedOnly ?? false,
  };
}

/** Encodes a search query (with its consistency) as a complete `SearchRequest`. Absent filters become empty. */
export function searchQueryToWire(q: SearchQuery, consistency?: Consistency): SearchRequest__Output {
  const f = findQueryToWire(q, consistency);
  return {
    query: q.query,
    capability: f.capability,
    capability_prefix: f.capability_prefix,
    kind: f.kind,
    labels: f.labels,
    health: f.health,
    name_prefix: f.name_prefix,
    page_size: f.page_size,
    page_token: f.page_token,
    consistency: f.consistency,
    verified_only: f.verified_only,
  };
}

/**
 * Decodes and validates a `SearchRequest` (server side); the page size is capped by the server.
 *
 * @throws ValidationError naming the field (`query.query`, `query.capability`, `consistency`…).
 */
export function searchQueryFromWire(req: SearchRequest): { query: Required<SearchQuery>; consistency: Consistency } {
  const query = validateSearchQuery({
    query: req.query ?? '',
    capability: req.capability,
    capabilityPrefix: req.capability_prefix ?? '',
    kind: req.kind,
    labels: req.labels,
    pageSize: req.page_size,
    pageToken: req.page_token,
    health: req.health ?? 'HEALTH_UNSPECIFIED',
    namePrefix: req.name_prefix ?? '',
    verifiedOnly: req.verified_only ?? false,
  });
  return { query, consistency: consistencyFromWire(req.consistency) };
}

/** Encodes a `ListCapabilitiesRequest`. */
export function listCapabilitiesToWire(prefix: string, consistency?: Consistency): ListCapabilitiesRequest__Output {
  return { prefix, consistency: consistencyToWire(consistency) };
}

/**
 * Decodes and validates a `ListCapabilitiesRequest` (server side).
 * @throws ValidationError naming `prefix` or `consistency`.
 */
export function listCapabilitiesFromWire(req: ListCapabilitiesRequest): { prefix: string; consistency: Consistency } {
  return { prefix: validateCapabilityPrefix(req.prefix ?? '', 'prefix'), consistency: consistencyFromWire(req.consistency) };
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
    capabilityPrefix: req.capability_prefix ?? '',
    verifiedOnly: req.verified_only ?? false,
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

/** Decodes a node role (by name or number); an unknown value is `unspecified`. */
export function roleFromWire(w: RoleInput | string | undefined): NodeRole {
  const name = enumNameOf('Role', ROLE_NAMES, w);
  switch (name) {
    case 'ROLE_FOLLOWER':
      return 'follower';
    case 'ROLE_CANDIDATE':
      return 'candidate';
    case 'ROLE_LEADER':
      return 'leader';
    case 'ROLE_LEARNER':
      return 'learner';
    case 'ROLE_UNSPECIFIED':
    case undefined:
      return 'unspecified';
    default:
      return assertNever(name);
  }
}

/** Encodes a cluster member; an unknown HTTP address is `''`. */
export function memberToWire(m: ClusterMember): WireMember {
  return { id: m.id, address: m.address, voter: m.voter, http_address: m.httpAddress ?? '' };
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
  httpAddress?: string;
}): StatusResponse {
  return {
    node_id: s.nodeId,
    leader_id: s.leaderId,
    term: s.term,
    commit_index: s.commitIndex,
    applied_index: s.appliedIndex,
    role: roleToWire(s.role),
    members: s.members.map(memberToWire),
    snapshot_index: s.snapshotIndex ?? 0,
    first_index: s.firstIndex ?? 0,
    http_address: s.httpAddress ?? '',
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
    members: (w.members ?? []).map((m) => ({ id: m.id ?? '', address: m.address ?? '', voter: Boolean(m.voter), ...(m.http_address ? { httpAddress: m.http_address } : {}) })),
    snapshotIndex: Number(w.snapshot_index ?? 0),
    firstIndex: Number(w.first_index ?? 0),
    httpAddress: w.http_address ?? '',
  };
}

/** Exhaustiveness check for switches over unions. */
function assertNever(x: never): never {
  throw new Error(`unexpected value ${String(x)}`);
}
