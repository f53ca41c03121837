/**
 * The gRPC front end of the client API: `registry.v1.Registry` and `registry.v1.Cluster` as
 * thin adapters over {@link RegistryApi} (validation, forwarding, consistency and errors live
 * there, once), and {@link GrpcLeaderLink}, the gRPC way a follower reaches its leader.
 */
import * as grpc from '@grpc/grpc-js';
import { peerChannelCredentials, peerChannelOptions, type TlsMaterial } from '../auth/tls.js';
import type { Logger } from '../log.js';
import type { Member } from '../registry/types.js';
import { BackupError } from '../server/backup.js';
import { bearerToken, budgetFrom, type CallContext, type ForwardedCalls, type ForwardedMethod, type LeaderLink, type RegistryApi } from './handlers.js';
import { AuthGrpcClient, ClusterGrpcClient, RegistryGrpcClient, type AuthHandlers, type ClusterHandlers, type RegistryHandlers, type StatusResponse } from './registry-proto.js';
import { ApiError, Code, codeName, toApiError } from './status.js';
import { wellFormed } from '../registry/validation.js';

/**
 * Hears of every answered unary call (for metrics): the RPC `method` (e.g. `Register`), the
 * gRPC status code name it was answered with (`OK`, `NOT_FOUND`, ...) and how long it took, in
 * seconds.
 */
export type RequestObserver = (method: string, code: string, seconds: number) => void;

/** Milliseconds per second. */
const MS_PER_SECOND = 1_000;

/** Metadata key marking a request forwarded by a follower: the receiver never forwards it again. */
export const FORWARDED_METADATA_KEY = 'x-registry-forwarded-by';

/** Metadata key of the caller's bearer token (`authorization: Bearer <token>`), as HTTP has it. */
export const AUTHORIZATION_METADATA_KEY = 'authorization';

/** The IP address of a gRPC peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`), or the string itself. */
function peerAddress(peer: string): string {
  const m = /^(?:ipv4:)?([\d.]+):\d+$/.exec(peer) ?? /^(?:ipv6:)?\[([^\]]+)\]:\d+$/.exec(peer);
  return m ? (m[1] as string) : peer;
}

/** The {@link CallContext} of a gRPC call: its deadline as a budget, the forwarding mark, the token and the peer's address. */
function contextOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): CallContext {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : typeof d === 'number' ? d : Number.POSITIVE_INFINITY;
  const by = call.metadata.get(FORWARDED_METADATA_KEY)[0];
  const token = bearerToken(call.metadata.get(AUTHORIZATION_METADATA_KEY)[0]);
  return {
    budgetMs: budgetFrom(Number.isFinite(at) ? at - Date.now() : undefined),
    ...(typeof by === 'string' && by !== '' ? { forwardedBy: by } : {}),
    ...(token !== undefined ? { token } : {}),
    remoteAddress: peerAddress(call.getPeer()),
  };
}

/** An {@link ApiError} as a gRPC status; the details are made well-formed Unicode, since grpc-js URI-encodes them and a lone surrogate (quoted client input) would throw outside any handler. */
function toGrpcError(err: ApiError): Partial<grpc.ServiceError> {
  return { code: err.code as number as grpc.status, details: wellFormed(err.message) };
}

/** Where {@link safeService} records why a request's bytes did not decode. */
const UNDECODABLE = Symbol('undecodable');

/**
 * `definition` with request deserializers that never throw: grpc-js answers a deserializer's
 * throw with INTERNAL, but bytes that are not the method's message are the caller's error. A
 * request that does not decode reaches the handler marked, and is answered INVALID_ARGUMENT.
 */
export function safeService<T extends grpc.ServiceDefinition>(definition: T): T {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition as grpc.ServiceDefinition)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return { [UNDECODABLE]: err instanceof Error ? err.message : String(err) };
        }
      },
    };
  }
  return out as unknown as T;
}

/** The INVALID_ARGUMENT for a request {@link safeService} could not decode, or undefined. */
function undecodableError(request: unknown, method: string): ApiError | undefined {
  if (typeof request !== 'object' || request === null || !(UNDECODABLE in request)) return undefined;
  return new ApiError(Code.INVALID_ARGUMENT, `request: the bytes are not a ${method} request (${String((request as Record<symbol, unknown>)[UNDECODABLE])})`);
}

/** Makes unary handlers that answer through `body`, map its errors, and report each call to `observe`. */
function unaryMaker(log: Logger, observe: RequestObserver | undefined) {
  return function unary<Req, Res>(method: string, body: (req: Req, call: CallContext) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const started = performance.now();
      const done = (code: number): void => observe?.(method, codeName(code), (performance.now() - started) / MS_PER_SECOND);
      let answer: Promise<Res>;
      const bad = undecodableError(call.request, method);
      try {
        answer = bad ? Promise.reject(bad) : body(call.request, contextOf(call));
      } catch (err) {
        answer = Promise.reject(err);
      }
      answer.then(
        (res) => {
          done(Code.OK);
          callback(null, res);
        },
        (err: unknown) => {
          const e = toApiError(err, log);
          done(e.code);
          callback(toGrpcError(e) as grpc.ServiceError);
        },
      );
    };
  };
}

/** Handlers for `registry.v1.Registry` over `api`; `observe` hears of every unary call answered. */
export function registryHandlers(api: RegistryApi, log: Logger, observe?: RequestObserver): RegistryHandlers {
  const unary = unaryMaker(log, observe);
  return {
    Register: unary('Register', (req, call) => api.register(req, call)),
    Deregister: unary('Deregister', (req, call) => api.deregister(req, call)),
    Get: unary('Get', (req, call) => api.get(req, call)),
    ListVersions: unary('ListVersions', (req, call) => api.listVersions(req, call)),
    Find: unary('Find', (req, call) => api.find(req, call)),
    Search: unary('Search', (req, call) => api.search(req, call)),
    ListCapabilities: unary('ListCapabilities', (req, call) => api.listCapabilities(req, call)),
    Heartbeat: unary('Heartbeat', (req, call) => api.heartbeat(req, call)),
    Watch: (call) => {
      const fail = (err: ApiError): void => {
        if (!call.cancelled) call.destroy(Object.assign(new Error(err.message), toGrpcError(err)));
      };
      const bad = undecodableError(call.request, 'Watch');
      if (bad) {
        fail(bad);
        return;
      }
      api
        .watch(
          call.request,
          {
            write: (e) => call.write(e),
            onDrain: (resume) => call.once('drain', resume),
            fail,
          },
          contextOf(call),
        )
        .then(
          (cancel) => {
            call.on('cancelled', cancel);
            call.on('close', cancel);
            if (call.cancelled) cancel();
          },
          (err: unknown) => fail(toApiError(err, log)),
        );
    },
  };
}

/** Handlers for `registry.v1.Cluster` over `api`; `observe` hears of every unary call answered. */
export function clusterHandlers(api: RegistryApi, log: Logger, observe?: RequestObserver): ClusterHandlers {
  const unary = unaryMaker(log, observe);
  return {
    Status: unary('Status', async () => api.status()),
    TransferLeadership: unary('TransferLeadership', (req, call) => api.transferLeadership(req, call)),
    AddMember: unary('AddMember', (req, call) => api.addMember(req, call)),
    RemoveMember: unary('RemoveMember', (req, call) => api.removeMember(req, call)),
    PromoteMember: unary('PromoteMember', (req, call) => api.promoteMember(req, call)),
    Snapshot: (call) => {
      const bad = undecodableError(call.request, 'Snapshot');
      if (bad) {
        call.destroy(Object.assign(new Error(bad.message), toGrpcError(bad)));
        return;
      }
      void (async () => {
        const chunks = api.backup(contextOf(call));
        try {
          for await (const chunk of chunks) {
            if (call.cancelled) return;
            if (!call.write({ data: chunk })) await new Promise((r) => call.once('drain', r));
          }
          call.end();
        } catch (err) {
          const e = err instanceof BackupError ? new ApiError(Code.FAILED_PRECONDITION, err.message) : toApiError(err, log);
          call.destroy(Object.assign(new Error(e.message), toGrpcError(e)));
        } finally {
          await chunks.return(undefined);
        }
      })();
    },
  };
}

/** Handlers for `registry.v1.Auth` over `api`; `observe` hears of every call answered. */
export function authHandlers(api: RegistryApi, log: Logger, observe?: RequestObserver): AuthHandlers {
  const unary = unaryMaker(log, observe);
  return {
    AuthStatus: unary('AuthStatus', (_req, call) => api.authStatus(call)),
    CreateToken: unary('CreateToken', (req, call) => api.createToken(req, call)),
    RevokeToken: unary('RevokeToken', (req, call) => api.revokeToken(req, call)),
    RotateSigningKey: unary('RotateSigningKey', (req, call) => api.rotateSigningKey(req, call)),
    TrustCardKey: unary('TrustCardKey', (req, call) => api.trustCardKey(req, call)),
    UntrustCardKey: unary('UntrustCardKey', (req, call) => api.untrustCardKey(req, call)),
  };
}

/** The services a follower forwards to. */
type ForwardService = 'registry' | 'cluster' | 'auth';

/** Which service each forwarded call belongs to. */
const SERVICE_OF: Record<ForwardedMethod, ForwardService> = {
  Register: 'registry',
  Deregister: 'registry',
  Heartbeat: 'registry',
  AddMember: 'cluster',
  RemoveMember: 'cluster',
  PromoteMember: 'cluster',
  TransferLeadership: 'cluster',
  RevokeToken: 'auth',
  RotateSigningKey: 'auth',
  TrustCardKey: 'auth',
  UntrustCardKey: 'auth',
};

/**
 * {@link LeaderLink} over gRPC: one client per leader address and service, kept until `close`.
 * With `tls` (this node's material) it dials with mutual TLS and accepts only a server whose
 * certificate names the member it calls (`peerChannelCredentials`).
 */
export class GrpcLeaderLink implements LeaderLink {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(private readonly tls?: TlsMaterial) {}

  /** {@inheritDoc LeaderLink.call} */
  call<M extends ForwardedMethod>(to: Member, method: M, request: ForwardedCalls[M][0], budgetMs: number, from: string, token?: string): Promise<ForwardedCalls[M][1]> {
    const md = new grpc.Metadata();
    md.set(FORWARDED_METADATA_KEY, from);
    if (token !== undefined) md.set(AUTHORIZATION_METADATA_KEY, `Bearer ${token}`);
    return this.unary(SERVICE_OF[method], to, method, request, md, budgetMs);
  }

  /** {@inheritDoc LeaderLink.status} */
  status(to: Member, budgetMs: number): Promise<StatusResponse> {
    return this.unary('cluster', to, 'Status', {}, new grpc.Metadata(), budgetMs);
  }

  /** One unary call of `method` on `service` at member `to`; a failure rejects with an {@link ApiError} of its status. */
  private unary<Res>(service: ForwardService, to: Member, method: string, request: unknown, md: grpc.Metadata, budgetMs: number): Promise<Res> {
    const client = this.clientFor(service, to);
    type Method = (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: Res) => void) => void;
    const fn = (client as unknown as Record<string, Method>)[method] as Method;
    return new Promise((resolve, reject) => {
      fn.call(client, request, md, { deadline: Date.now() + budgetMs }, (err, value) => {
        if (err) reject(new ApiError((err.code as number as Code) ?? Code.UNKNOWN, err.details || err.message));
        else resolve(value);
      });
    });
  }

  /** The kept client of `service` at member `to`'s address, created on first use. */
  private clientFor(service: ForwardService, to: Member): grpc.Client {
    const { address } = to;
    const key = `${service} ${address} ${to.id}`;
    let client = this.clients.get(key);
    if (!client) {
      const creds = this.tls ? peerChannelCredentials(this.tls, to.id) : grpc.credentials.createInsecure();
      const options = this.tls ? peerChannelOptions(to.id) : {};
      const Client = service === 'registry' ? RegistryGrpcClient : service === 'cluster' ? ClusterGrpcClient : AuthGrpcClient;
      client = new Client(address, creds, options);
      this.clients.set(key, client);
    }
    return client;
  }

  /** {@inheritDoc LeaderLink.close} */
  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
