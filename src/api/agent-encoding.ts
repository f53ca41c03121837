/**
 * Response serializers for the reads that answer with stored agents (`Registry.Get`, `Find` and
 * `Search`) that encode each agent's protobuf bytes once per stored record instead of once per
 * answer.
 *
 * A read answers with {@link WireAgent}s built from `Agent` objects of the state machine; the
 * state machine hands out the same `Agent` object for as long as the stored record is unchanged
 * (its record and decode caches, `src/registry/record-cache.ts`). The handlers build each wire
 * agent through {@link wireAgentOf}, which keeps, per `Agent` object, its wire form and (once a
 * serializer needed it) its encoded `registry.v1.Agent`, without and with its card, in a
 * `WeakMap`: they live exactly as long as the object they were made from. The serializers copy
 * the kept bytes into the answer as the length-delimited field they are on the wire. The one
 * field that changes from answer to answer, `lease_expires_unix_ms` (a wall-clock time), is not
 * in the kept bytes: it is encoded per answer and appended to the agent's bytes (protobuf lets a
 * field come in any order, the last value winning; a decoder sees the same message). A wire
 * agent that did not come from {@link wireAgentOf} is encoded whole, as `@grpc/proto-loader`'s
 * serializer would.
 *
 * Protobuf encoding: https://protobuf.dev/programming-guides/encoding/ (an embedded message is
 * a length-delimited field; "the last value wins" and "fields in any order" for a parser).
 */
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import type { Agent } from '../registry/types.js';
import { REGISTRY_PROTO_PATH, type WireAgent } from './registry-proto.js';

const root = new protobuf.Root().loadSync(REGISTRY_PROTO_PATH, { keepCase: true });
const AgentType = root.lookupType('registry.v1.Agent');
const GetResponseType = root.lookupType('registry.v1.GetResponse');
const FindResponseType = root.lookupType('registry.v1.FindResponse');
const SearchResponseType = root.lookupType('registry.v1.SearchResponse');
const SearchResultType = root.lookupType('registry.v1.SearchResult');

/** Protobuf wire type of a length-delimited field (strings, bytes, embedded messages). */
const WIRE_TYPE_LENGTH_DELIMITED = 2;

/** The key of a field on the wire: `(field number << 3) | wire type`. */
function fieldKey(type: protobuf.Type, name: string, wireType: number): number {
  const field = type.fields[name];
  if (field === undefined) throw new Error(`registry.proto: ${type.name} has no field ${name}`);
  return (field.id << 3) | wireType;
}

const GET_AGENT_KEY = fieldKey(GetResponseType, 'agent', WIRE_TYPE_LENGTH_DELIMITED);
const FIND_AGENTS_KEY = fieldKey(FindResponseType, 'agents', WIRE_TYPE_LENGTH_DELIMITED);
const SEARCH_RESULTS_KEY = fieldKey(SearchResponseType, 'results', WIRE_TYPE_LENGTH_DELIMITED);
const RESULT_AGENT_KEY = fieldKey(SearchResultType, 'agent', WIRE_TYPE_LENGTH_DELIMITED);

/** The field of a wire agent that is encoded per answer. */
const PER_ANSWER_FIELD = 'lease_expires_unix_ms';

/** Slot of the kept forms of an agent: 0 without its card, 1 with it. */
type Slot = 0 | 1;

/** What is kept of one `Agent`: its wire forms (per-answer field 0, frozen) and their encodings without that field. */
interface Kept {
  readonly wire: [WireAgent | undefined, WireAgent | undefined];
  readonly bytes: [Uint8Array | undefined, Uint8Array | undefined];
}

/** Kept forms, by the `Agent` they were made from. */
const kept = new WeakMap<Agent, Kept>();
/** The agent and slot of every wire agent {@link wireAgentOf} returned. */
const sources = new WeakMap<WireAgent, { readonly kept: Kept; readonly slot: Slot }>();

/**
 * The wire form of `agent` (`build()`, with the card emptied unless `withCard`), with
 * `lease_expires_unix_ms` set to `leaseExpiresUnixMs` (Unix ms, 0 for none). `build` runs once
 * per `Agent` object and slot: the form is kept, frozen, and returned as is while the lease field
 * is 0 (a fresh copy with the field set otherwise), so callers must not change it. The
 * serializers below recognise what this returns and copy its kept encoding.
 */
export function wireAgentOf(agent: Agent, withCard: boolean, leaseExpiresUnixMs: number, build: () => WireAgent): WireAgent {
  let k = kept.get(agent);
  if (k === undefined) {
    k = { wire: [undefined, undefined], bytes: [undefined, undefined] };
    kept.set(agent, k);
  }
  const slot: Slot = withCard ? 1 : 0;
  let base = k.wire[slot];
  if (base === undefined) {
    const built = build();
    base = Object.freeze({ ...built, card: withCard ? built.card : '', [PER_ANSWER_FIELD]: 0 });
    k.wire[slot] = base;
    sources.set(base, { kept: k, slot });
  }
  if (leaseExpiresUnixMs === 0) return base;
  const wire = { ...base, [PER_ANSWER_FIELD]: leaseExpiresUnixMs };
  sources.set(wire, { kept: k, slot });
  return wire;
}

/** Encodes a whole message of `type` from a wire-shaped object, as proto-loader does. */
function encodeWhole(type: protobuf.Type, value: object): Uint8Array {
  return type.encode(type.fromObject(value)).finish();
}

/** The `registry.v1.Agent` bytes of `wire`: kept bytes plus its per-answer field, or all of it. */
function agentBytes(wire: WireAgent): Uint8Array {
  const source = sources.get(wire);
  if (source === undefined) return encodeWhole(AgentType, wire);
  const { kept: k, slot } = source;
  let bytes = k.bytes[slot];
  if (bytes === undefined) {
    const { [PER_ANSWER_FIELD]: _perAnswer, ...rest } = k.wire[slot] as WireAgent;
    bytes = new Uint8Array(encodeWhole(AgentType, rest));
    k.bytes[slot] = bytes;
  }
  const perAnswer = wire[PER_ANSWER_FIELD];
  if (perAnswer === 0) return bytes;
  return Buffer.concat([bytes, encodeWhole(AgentType, { [PER_ANSWER_FIELD]: perAnswer })]);
}

/**
 * Checks at load that every field of `type` but `carrier` (the one holding agents) is a singular
 * scalar, the only kind {@link writeScalars} writes: a field of another kind added to the proto
 * fails here, not silently on the wire.
 */
function scalarFieldsOf(type: protobuf.Type, carrier: string): readonly protobuf.Field[] {
  const fields = type.fieldsArray.filter((f) => f.name !== carrier);
  for (const f of fields) {
    const writes = typeof (protobuf.Writer.prototype as unknown as Record<string, unknown>)[f.type] === 'function';
    if (f.repeated || f.map || !(f.type in protobuf.types.basic) || !writes) throw new Error(`registry.proto: ${type.name}.${f.name} is not a singular scalar; agent-encoding.ts does not write it`);
  }
  return fields;
}

const GET_SCALARS = scalarFieldsOf(GetResponseType, 'agent');
const FIND_SCALARS = scalarFieldsOf(FindResponseType, 'agents');
const SEARCH_SCALARS = scalarFieldsOf(SearchResponseType, 'results');
const RESULT_SCALARS = scalarFieldsOf(SearchResultType, 'agent');

/**
 * Writes the scalar `fields` of `value` that differ from their proto3 default (a field at its
 * default is absent on the wire; a decoder fills it in). Values are wire-shaped: numbers for the
 * 64-bit integers, strings, booleans.
 */
function writeScalars(writer: protobuf.Writer, fields: readonly protobuf.Field[], value: object): void {
  for (const f of fields) {
    const v = (value as Record<string, unknown>)[f.name];
    if (v === undefined || v === null || v === 0 || v === '' || v === false) continue;
    const wireType = (protobuf.types.basic as Record<string, number>)[f.type] as number;
    (writer.uint32((f.id << 3) | wireType) as unknown as Record<string, (x: unknown) => protobuf.Writer>)[f.type]!(v);
  }
}

/** Serializes a `GetResponse`: the agent from its kept bytes, then the other fields. */
export function serializeGetResponse(res: { agent?: WireAgent | null }): Buffer {
  const writer = protobuf.Writer.create();
  if (res.agent !== undefined && res.agent !== null) writer.uint32(GET_AGENT_KEY).bytes(agentBytes(res.agent));
  writeScalars(writer, GET_SCALARS, res);
  return writer.finish() as Buffer;
}

/** Serializes a `FindResponse`: each agent from its kept bytes, then the other fields. */
export function serializeFindResponse(res: { agents?: readonly WireAgent[] | null }): Buffer {
  const writer = protobuf.Writer.create();
  for (const agent of res.agents ?? []) writer.uint32(FIND_AGENTS_KEY).bytes(agentBytes(agent));
  writeScalars(writer, FIND_SCALARS, res);
  return writer.finish() as Buffer;
}

/** Serializes a `SearchResponse`: each result's agent from its kept bytes, then the other fields. */
export function serializeSearchResponse(res: { results?: readonly { agent?: WireAgent | null; score?: number }[] | null }): Buffer {
  const writer = protobuf.Writer.create();
  for (const result of res.results ?? []) {
    // A sub-message of its own (length-delimited, so its length comes first): the agent's
    // bytes, then the score.
    writer.uint32(SEARCH_RESULTS_KEY).fork();
    if (result.agent !== undefined && result.agent !== null) writer.uint32(RESULT_AGENT_KEY).bytes(agentBytes(result.agent));
    writeScalars(writer, RESULT_SCALARS, result);
    writer.ldelim();
  }
  writeScalars(writer, SEARCH_SCALARS, res);
  return writer.finish() as Buffer;
}

/** The methods whose answers {@link withKeptAgentEncodings} serializes, with their serializers. */
const SERIALIZERS: Readonly<Record<string, (res: never) => Buffer>> = {
  Get: serializeGetResponse,
  Find: serializeFindResponse,
  Search: serializeSearchResponse,
};

/**
 * `definition` (the `registry.v1.Registry` service) with the response serializers of `Get`,
 * `Find` and `Search` replaced by the ones above; every other method as it was.
 */
export function withKeptAgentEncodings<T extends grpc.ServiceDefinition>(definition: T): T {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition as grpc.ServiceDefinition)) {
    const serialize = SERIALIZERS[name];
    out[name] = serialize === undefined ? method : { ...method, responseSerialize: serialize as (res: unknown) => Buffer };
  }
  return out as unknown as T;
}
