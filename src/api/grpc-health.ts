/**
 * The standard gRPC side services of a node: the health checking protocol
 * (`grpc.health.v1.Health`, what load balancers, Kubernetes' gRPC probes and `grpc_health_probe`
 * ask) and server reflection (`grpc.reflection.v1` and `v1alpha`, what `grpcurl` and `grpcui`
 * use to discover the API without the .proto files).
 *
 * Health: the overall service `''` and the client services `registry.v1.Registry` and
 * `registry.v1.Cluster` are `SERVING` exactly when {@link nodeHealth} says the node is ready (it
 * knows a leader and has applied what it knows committed), else `NOT_SERVING`. The status is
 * decided again whenever the node's role or known leader changes, and every
 * {@link HEALTH_CHECK_INTERVAL_MS} (a node cut off from its leader notices only by its election
 * timeout, and an apply lag shrinks without a role change); `Watch` streams hear each change.
 *
 * Reflection covers the client API (`proto/registry/v1/registry.proto`), the peer service
 * (`proto/raft/v1/raft.proto`) and the health service.
 */
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as HEALTH_PROTO_PATH, type ServingStatus } from 'grpc-health-check';
import type { Logger } from '../log.js';
import type { SoftState } from '../raft/index.js';
import type { RaftNode } from '../server/raft-node.js';
import { resolveRaftProtoPath } from '../transport/codec.js';
import { nodeHealth } from './health.js';
import { PROTO_LOADER_OPTIONS, REGISTRY_PROTO_PATH } from './registry-proto.js';

/** How often the health status is decided again without a role change, in ms. */
export const HEALTH_CHECK_INTERVAL_MS = 1_000;

/** The services whose health follows the node's readiness: the overall server (`''`) and the client API. */
export const HEALTH_CHECKED_SERVICES: readonly string[] = ['', 'registry.v1.Registry', 'registry.v1.Cluster'];

/** What {@link addHealthAndReflection} leaves running. */
export interface HealthAndReflection {
  /** The status the health service reports now for every service of {@link HEALTH_CHECKED_SERVICES}. */
  readonly status: ServingStatus;
  /** Decides the status again now (also done on role changes and every {@link HEALTH_CHECK_INTERVAL_MS}). */
  update(): void;
  /** Stops updating; the health service then reports `NOT_SERVING` (the node is going away). Idempotent. */
  close(): void;
}

/**
 * Registers `grpc.health.v1.Health` and server reflection on `server` (before it is bound or
 * started), with the health of `raft`'s node. Returns the handle that keeps the status current;
 * call its `close()` when the node stops. Throws when a proto file cannot be found or parsed.
 */
export function addHealthAndReflection(server: grpc.Server, raft: RaftNode, log?: Logger): HealthAndReflection {
  const health = new HealthImplementation(Object.fromEntries(HEALTH_CHECKED_SERVICES.map((s) => [s, 'NOT_SERVING' as ServingStatus])));
  health.addToServer(server);
  const definitions = protoLoader.loadSync([REGISTRY_PROTO_PATH, resolveRaftProtoPath(), HEALTH_PROTO_PATH], PROTO_LOADER_OPTIONS);
  new ReflectionService(definitions).addToServer(server);

  let status: ServingStatus = 'NOT_SERVING';
  let closed = false;
  const set = (next: ServingStatus, reason: string): void => {
    if (next === status) return;
    status = next;
    for (const s of HEALTH_CHECKED_SERVICES) health.setStatus(s, next);
    log?.info({ status: next, reason }, 'grpc health changed');
  };
  const update = (): void => {
    if (closed) return;
    const h = nodeHealth(raft);
    set(h.ready ? 'SERVING' : 'NOT_SERVING', h.reason);
  };
  const onRole = (_s: SoftState): void => update();
  raft.on('role', onRole);
  const timer = setInterval(update, HEALTH_CHECK_INTERVAL_MS);
  timer.unref();
  update();
  return {
    get status() {
      return status;
    },
    update,
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      raft.off('role', onRole);
      set('NOT_SERVING', 'node stopping');
    },
  };
}
