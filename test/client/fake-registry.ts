/**
 * An in-process registry server for client tests: the real `registry.v1` proto, an in-memory map
 * instead of Raft, listening on 127.0.0.1 with an ephemeral port. Failures can be injected per
 * call to exercise the client's failover.
 */
import * as grpc from '@grpc/grpc-js';
import {
  ClusterService,
  RegistryService,
  agentToWire,
  consistencyFromWire,
  findQueryFromWire,
  specFromWire,
  type ClusterHandlers,
  type RegistryHandlers,
} from '../../src/api/registry-proto.js';
import type { Agent } from '../../src/registry/types.js';
import { ValidationError, validateId } from '../../src/registry/validation.js';

/** Page size when a find asks for 0. */
export const FAKE_DEFAULT_PAGE_SIZE = 10;
/** Largest page size the fake accepts. */
export const FAKE_MAX_PAGE_SIZE = 100;

/** What the fake does with one call instead of serving it. */
export type Injected = { readonly code: grpc.status; readonly details: string } | 'hang';

/** A running fake server. */
export interface FakeRegistry {
  readonly address: string;
  readonly agents: Map<string, Agent>;
  /** Calls received, by method name (`Register`, `Get`, `Find`, `Deregister`, `Status`). */
  readonly calls: Map<string, number>;
  /** Consistencies of the reads received, in order. */
  readonly consistencies: string[];
  /** Failures to apply to the next calls, in order (then it serves normally). */
  readonly inject: Injected[];
  /** When set, every call fails like this. */
  always: Injected | undefined;
  stop(): Promise<void>;
}

/** Starts a fake server named `nodeId` on 127.0.0.1:0. */
export async function startFakeRegistry(nodeId = 'n1'): Promise<FakeRegistry> {
  const server = new grpc.Server();
  const agents = new Map<string, Agent>();
  const calls = new Map<string, number>();
  const consistencies: string[] = [];
  const inject: Injected[] = [];
  let revision = 0;
  const fake: FakeRegistry = {
    address: '',
    agents,
    calls,
    consistencies,
    inject,
    always: undefined,
    stop: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };

  /** Wraps a handler: counts the call, applies injected failures, maps errors to statuses. */
  const handle =
    <Req, Res>(name: string, serve: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      const failure = fake.always ?? inject.shift();
      if (failure === 'hang') return; // never answers: the caller's deadline decides
      if (failure !== undefined) return callback({ code: failure.code, details: failure.details });
      try {
        callback(null, serve(call.request));
      } catch (e) {
        if (e instanceof ValidationError) return callback({ code: grpc.status.INVALID_ARGUMENT, details: e.message });
        if (e instanceof NotFound) return callback({ code: grpc.status.NOT_FOUND, details: e.message });
        callback({ code: grpc.status.INTERNAL, details: String(e) });
      }
    };

  const registry: Pick<RegistryHandlers, 'Register' | 'Get' | 'Find' | 'Deregister'> = {
    Register: handle('Register', (req) => {
      const spec = specFromWire(req.agent);
      revision++;
      const agent: Agent = { ...spec, createRevision: agents.get(spec.id)?.createRevision ?? revision, modRevision: revision, ttlSeconds: 0, health: 'unspecified' };
      agents.set(spec.id, agent);
      return { agent: agentToWire(agent), revision };
    }),
    Get: handle('Get', (req) => {
      consistencies.push(consistencyFromWire(req.consistency));
      const id = validateId(req.id, 'id');
      const agent = agents.get(id);
      if (agent === undefined) throw new NotFound(`agent ${id} not found`);
      return { agent: agentToWire(agent), revision };
    }),
    Find: handle('Find', (req) => {
      const { query, consistency } = findQueryFromWire(req);
      consistencies.push(consistency);
      if (query.pageSize > FAKE_MAX_PAGE_SIZE) throw new ValidationError('page_size', `must be at most ${FAKE_MAX_PAGE_SIZE}`);
      const size = query.pageSize === 0 ? FAKE_DEFAULT_PAGE_SIZE : query.pageSize;
      const after = query.pageToken === '' ? '' : Buffer.from(query.pageToken, 'base64url').toString('utf8');
      const matching = [...agents.values()]
        .filter((a) => a.id > after)
        .filter((a) => query.capability === '' || a.capabilities.includes(query.capability))
        .filter((a) => query.kind === '' || a.kind === query.kind)
        .filter((a) => Object.entries(query.labels).every(([k, v]) => a.labels[k] === v))
        .sort((a, b) => (a.id < b.id ? -1 : 1));
      const page = matching.slice(0, size);
      const last = page[page.length - 1];
      const more = matching.length > size && last !== undefined;
      return {
        agents: page.map(agentToWire),
        next_page_token: more ? Buffer.from(last.id, 'utf8').toString('base64url') : '',
        revision,
      };
    }),
    Deregister: handle('Deregister', (req) => {
      const id = validateId(req.id, 'id');
      revision++;
      return { deleted: agents.delete(id), revision };
    }),
  };
  const cluster: Pick<ClusterHandlers, 'Status'> = {
    Status: handle('Status', () => ({
      node_id: nodeId,
      leader_id: nodeId,
      term: 2,
      commit_index: revision,
      applied_index: revision,
      role: 'ROLE_LEADER',
      members: [{ id: nodeId, address: fake.address, voter: true }],
    })),
  };
  server.addService(RegistryService, registry as unknown as grpc.UntypedServiceImplementation);
  server.addService(ClusterService, cluster as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return Object.assign(fake, { address: `127.0.0.1:${port}` });
}

class NotFound extends Error {}

/** An address on 127.0.0.1 where nothing listens: a port bound, then released. */
export async function closedAddress(): Promise<string> {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return `127.0.0.1:${addr.port}`;
}
