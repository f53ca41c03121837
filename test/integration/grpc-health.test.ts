/**
 * The standard gRPC side services on real node processes: the health checking protocol
 * (`grpc.health.v1.Health/Check`, answered from the node's readiness) and server reflection
 * (`grpc.reflection.v1.ServerReflection`). The reflection client here knows nothing of the
 * registry's .proto: it lists the services, fetches the file descriptors of `registry.v1.Cluster`
 * from the node, builds the types from them and calls `Cluster.Status`.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as HEALTH_PROTO_PATH } from 'grpc-health-check';
import protobuf from 'protobufjs';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, waitFor } from '../../cluster/process-cluster.js';

/** The deadline of each health or reflection call, in ms. */
const CALL_DEADLINE_MS = 2_000;
/** How long a node may take to notice it lost its majority and report NOT_SERVING, in ms (election timeouts plus the health check interval). */
const LOSS_NOTICED_WITHIN_MS = 15_000;
/** How long a node may take to report SERVING once the cluster has a leader, in ms (the health check interval, with margin). */
const SERVING_WITHIN_MS = 5_000;

const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

/** `grpc.health.v1.Health`, from the proto shipped with grpc-health-check. */
const HealthClient = (grpc.loadPackageDefinition(protoLoader.loadSync(HEALTH_PROTO_PATH, LOADER_OPTIONS)) as unknown as {
  grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
}).grpc.health.v1.Health;

/** `grpc.reflection.v1.ServerReflection`, from the proto shipped with @grpc/reflection (the protocol, not our API). */
const REFLECTION_PROTO_PATH = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
const ReflectionClient = (grpc.loadPackageDefinition(protoLoader.loadSync(REFLECTION_PROTO_PATH, LOADER_OPTIONS)) as unknown as {
  grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
}).grpc.reflection.v1.ServerReflection;

/** `Health/Check` of `service` at `address`: the status name, or the error's code name when the call fails. */
function check(address: string, service: string): Promise<string> {
  const client = new HealthClient(address, grpc.credentials.createInsecure());
  return new Promise<string>((resolve) => {
    const fn = (client as unknown as Record<string, (req: unknown, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { status: string }) => void) => void>).Check as (
      req: unknown,
      o: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: { status: string }) => void,
    ) => void;
    fn.call(client, { service }, { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) => {
      client.close();
      resolve(err ? `error ${grpc.status[err.code]}` : (res?.status ?? 'none'));
    });
  });
}

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] } | null;
  file_descriptor_response?: { file_descriptor_proto: Buffer[] } | null;
  error_response?: { error_code: number; error_message: string } | null;
}

/** Sends `requests` on one reflection stream and collects one response per request. */
function reflect(address: string, requests: object[]): Promise<ReflectionResponse[]> {
  const client = new ReflectionClient(address, grpc.credentials.createInsecure());
  const open = (client as unknown as Record<string, (o: grpc.CallOptions) => grpc.ClientDuplexStream<object, ReflectionResponse>>).ServerReflectionInfo as (
    o: grpc.CallOptions,
  ) => grpc.ClientDuplexStream<object, ReflectionResponse>;
  const call = open.call(client, { deadline: Date.now() + CALL_DEADLINE_MS });
  return new Promise((resolve, reject) => {
    const got: ReflectionResponse[] = [];
    call.on('data', (r: ReflectionResponse) => {
      got.push(r);
      if (got.length === requests.length) call.end();
    });
    call.on('error', (e) => {
      client.close();
      reject(e);
    });
    call.on('end', () => {
      client.close();
      resolve(got);
    });
    for (const r of requests) call.write(r);
  });
}

describe('gRPC health checking and reflection on a 3-node cluster', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    await cluster.waitForLeader();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('every node answers SERVING for the server and both client services once a leader is elected', async () => {
    for (const id of cluster.ids) {
      const address = cluster.endpoints([id])[0] as string;
      // The status is decided on role changes and every second: a node may need a moment after the election.
      await waitFor(`${id} SERVING`, SERVING_WITHIN_MS, async () => ((await check(address, '')) === 'SERVING' ? true : undefined));
      expect(await check(address, 'registry.v1.Registry')).toBe('SERVING');
      expect(await check(address, 'registry.v1.Cluster')).toBe('SERVING');
      // A service the node does not report on is NOT_FOUND (the protocol's answer).
      expect(await check(address, 'no.such.Service')).toBe('error NOT_FOUND');
    }
  }, 30_000);

  it('a client with reflection alone lists the services and calls Cluster.Status', async () => {
    const id = cluster.ids[1] as string;
    const address = cluster.endpoints([id])[0] as string;
    const [listed, files] = await reflect(address, [{ list_services: '' }, { file_containing_symbol: 'registry.v1.Cluster' }]);
    const names = (listed?.list_services_response?.service ?? []).map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(['registry.v1.Registry', 'registry.v1.Cluster', 'raft.v1.Raft', 'grpc.health.v1.Health']));

    // Build the types from the descriptors the node returned (the file and its dependencies).
    const protos = files?.file_descriptor_response?.file_descriptor_proto ?? [];
    expect(protos.length).toBeGreaterThan(0);
    const fromDescriptor = (protobuf.Root as unknown as { fromDescriptor(d: unknown): protobuf.Root }).fromDescriptor;
    const root = fromDescriptor({ file: protos.map((b) => FileDescriptorProto.decode(b)) });
    const service = root.lookupService('registry.v1.Cluster');
    const method = service.methods.Status as protobuf.Method;
    const req = root.lookupType(method.requestType);
    const res = root.lookupType(method.responseType);

    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const status = await new Promise<Record<string, unknown>>((resolve, reject) => {
        client.makeUnaryRequest(
          '/registry.v1.Cluster/Status',
          (m: object) => Buffer.from(req.encode(req.fromObject(m)).finish()),
          (b: Buffer) => res.toObject(res.decode(b), { longs: Number, enums: String, defaults: true }) as Record<string, unknown>,
          {},
          new grpc.Metadata(),
          { deadline: Date.now() + CALL_DEADLINE_MS },
          (err, value) => (err ? reject(err) : resolve(value as Record<string, unknown>)),
        );
      });
      const nodeIdField = Object.keys(res.fields).find((f) => f === 'nodeId' || f === 'node_id');
      expect(nodeIdField, `fields of ${res.fullName}: ${Object.keys(res.fields).join(', ')}`).toBeDefined();
      expect(status[nodeIdField as string]).toBe(id);
    } finally {
      client.close();
    }
  }, 30_000);

  it('a node that lost its majority (2 of 3 killed) turns NOT_SERVING', async () => {
    const [survivor, ...others] = cluster.ids as [string, ...string[]];
    const address = cluster.endpoints([survivor])[0] as string;
    expect(await check(address, '')).toBe('SERVING');
    for (const id of others) await cluster.kill(id, 'SIGKILL');
    await waitFor(`${survivor} NOT_SERVING`, LOSS_NOTICED_WITHIN_MS, async () => ((await check(address, '')) === 'NOT_SERVING' ? true : undefined));
    expect(await check(address, 'registry.v1.Registry')).toBe('NOT_SERVING');
    expect(await check(address, 'registry.v1.Cluster')).toBe('NOT_SERVING');
  }, 30_000);
});
