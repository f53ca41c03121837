/**
 * The registry's TypeScript client: {@link RegistryClient} and its types, and
 * {@link RegistryError}.
 */
export * from './registry-client.js';
export { RegistryError, statusName } from './errors.js';
export type { ClusterMember, ClusterStatus, Consistency, NodeRole } from '../api/registry-proto.js';
export type { Agent, AgentSpec, FindQuery } from '../registry/types.js';
export type { ClientTlsOptions } from '../auth/tls.js';
