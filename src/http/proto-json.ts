/**
 * The proto3 JSON mapping of `registry.v1` messages (https://protobuf.dev/programming-guides/json/,
 * as grpc-gateway applies it), derived from the `.proto` file at start, never restated by hand:
 *
 * - {@link messageSchema}: the JSON Schema of a message's JSON form (lowerCamelCase names, 64-bit
 *   integers as decimal strings or numbers, enums by name, maps as objects), for Fastify's
 *   validation and the OpenAPI document;
 * - {@link fromJson}: validated JSON to the request object the handlers take (the shape
 *   `@grpc/proto-loader` gives the gRPC front end: proto field names, 64-bit integers as Number,
 *   enums by name), with every 64-bit value checked to be a safe integer;
 * - {@link toJson}: a handler's response to JSON, every field present (grpc-gateway's
 *   `EmitUnpopulated`), 64-bit integers as strings.
 */
import protobuf from 'protobufjs';
import { REGISTRY_PROTO_PATH } from '../api/registry-proto.js';
import { ApiError, Code } from '../api/status.js';

/** The package of the registry API messages. */
const PACKAGE = 'registry.v1';

const root = new protobuf.Root();
root.loadSync(REGISTRY_PROTO_PATH, { keepCase: true, alternateCommentMode: true });
root.resolveAll();

/** A JSON Schema object (draft 2020-12 subset that Ajv and OpenAPI 3.1 share). */
export type JsonSchema = Record<string, unknown>;

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const INT_TYPES = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);
const UNSIGNED = new Set(['uint32', 'uint64', 'fixed32', 'fixed64']);

/** The proto3 JSON name of a field: lowerCamelCase of its proto name. */
export function jsonName(protoName: string): string {
  return protoName.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function typeOf(name: string): protobuf.Type {
  return root.lookupType(`${PACKAGE}.${name}`);
}

/** Schema of one scalar or enum value of `field`. */
function valueSchema(field: protobuf.Field, type: string): JsonSchema {
  if (field.resolvedType instanceof protobuf.Enum) {
    const names = Object.keys(field.resolvedType.values);
    return { type: 'string', enum: names, description: field.comment ?? undefined };
  }
  if (field.resolvedType instanceof protobuf.Type) return messageSchemaOf(field.resolvedType);
  if (LONG_TYPES.has(type)) {
    // proto3 JSON: 64-bit integers are decimal strings; numbers are accepted too.
    const pattern = UNSIGNED.has(type) ? '^[0-9]{1,20}$' : '^-?[0-9]{1,19}$';
    return { anyOf: [{ type: 'string', pattern }, { type: 'integer', ...(UNSIGNED.has(type) ? { minimum: 0 } : {}) }] };
  }
  if (INT_TYPES.has(type)) return { type: 'integer', ...(UNSIGNED.has(type) ? { minimum: 0, maximum: 4294967295 } : { minimum: -2147483648, maximum: 2147483647 }) };
  switch (type) {
    case 'string':
      return { type: 'string' };
    case 'bool':
      return { type: 'boolean' };
    case 'bytes':
      return { type: 'string', contentEncoding: 'base64' };
    case 'double':
    case 'float':
      return { type: 'number' };
    default:
      throw new Error(`proto type ${type} has no JSON schema here`);
  }
}

function fieldSchema(field: protobuf.Field): JsonSchema {
  const described = (s: JsonSchema): JsonSchema => (field.comment ? { ...s, description: field.comment } : s);
  if (field instanceof protobuf.MapField) return described({ type: 'object', additionalProperties: valueSchema(field, field.type) });
  if (field.repeated) return described({ type: 'array', items: valueSchema(field, field.type) });
  return described(valueSchema(field, field.type));
}

function messageSchemaOf(type: protobuf.Type): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const f of type.fieldsArray) properties[jsonName(f.name)] = fieldSchema(f);
  return { type: 'object', additionalProperties: false, properties, ...(type.comment ? { description: type.comment } : {}) };
}

/**
 * The JSON Schema of `registry.v1.<name>` in its proto3 JSON form: unknown fields refused
 * (`additionalProperties: false`), nested messages inline. Throws if there is no such message.
 */
export function messageSchema(name: string): JsonSchema {
  return messageSchemaOf(typeOf(name));
}

/**
 * The schema of a response as this front end writes it (64-bit integers as strings, every field
 * present), for documentation and Fastify's serializer.
 */
export function responseSchema(name: string): JsonSchema {
  return outputSchemaOf(typeOf(name));
}

function outputValueSchema(field: protobuf.Field, type: string): JsonSchema {
  if (field.resolvedType instanceof protobuf.Type) return outputSchemaOf(field.resolvedType);
  if (LONG_TYPES.has(type)) return { type: 'string' };
  return valueSchema(field, type);
}

function outputSchemaOf(type: protobuf.Type): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const f of type.fieldsArray) {
    const v = f instanceof protobuf.MapField
      ? { type: 'object', additionalProperties: outputValueSchema(f, f.type) }
      : f.repeated
        ? { type: 'array', items: outputValueSchema(f, f.type) }
        : outputValueSchema(f, f.type);
    properties[jsonName(f.name)] = f.comment ? { ...v, description: f.comment } : v;
  }
  return { type: 'object', properties, ...(type.comment ? { description: type.comment } : {}) };
}

function invalid(path: string, why: string): ApiError {
  return new ApiError(Code.INVALID_ARGUMENT, `${path}: ${why}`);
}

/** A 64-bit JSON value (string or number) as a safe Number, naming `path` when it is not one. */
function longFromJson(v: unknown, path: string): number {
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw invalid(path, 'must be an integer within ±2^53');
  return n;
}

function valueFromJson(field: protobuf.Field, type: string, v: unknown, path: string): unknown {
  if (field.resolvedType instanceof protobuf.Type) return messageFromJson(field.resolvedType, v, path);
  if (LONG_TYPES.has(type)) return longFromJson(v, path);
  if (type === 'bytes') return Buffer.from(String(v), 'base64');
  return v;
}

function messageFromJson(type: protobuf.Type, value: unknown, path: string): Record<string, unknown> {
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(path, 'must be an object');
  const out: Record<string, unknown> = {};
  const obj = value as Record<string, unknown>;
  for (const f of type.fieldsArray) {
    const key = jsonName(f.name);
    const v = obj[key];
    if (v === undefined || v === null) continue;
    const at = path === '' ? key : `${path}.${key}`;
    if (f instanceof protobuf.MapField) {
      out[f.name] = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, valueFromJson(f, f.type, x, `${at}.${k}`)]));
    } else if (f.repeated) {
      out[f.name] = (v as unknown[]).map((x, i) => valueFromJson(f, f.type, x, `${at}[${i}]`));
    } else out[f.name] = valueFromJson(f, f.type, v, at);
  }
  return out;
}

/**
 * Turns the JSON form of `registry.v1.<name>` (already checked against {@link messageSchema})
 * into the request object the handlers take. Throws {@link ApiError} `INVALID_ARGUMENT` naming
 * the field when a 64-bit value is not a safe integer.
 */
export function fromJson<T>(name: string, value: unknown): T {
  return messageFromJson(typeOf(name), value, '') as T;
}

function valueToJson(field: protobuf.Field, type: string, v: unknown): unknown {
  if (field.resolvedType instanceof protobuf.Type) return messageToJson(field.resolvedType, v);
  if (field.resolvedType instanceof protobuf.Enum) {
    if (typeof v === 'number') return field.resolvedType.valuesById[v] ?? String(v);
    return v ?? Object.keys(field.resolvedType.values)[0];
  }
  if (LONG_TYPES.has(type)) return String(v ?? 0);
  if (type === 'bytes') return Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString('base64') : '';
  if (v !== undefined && v !== null) return v;
  if (type === 'string') return '';
  if (type === 'bool') return false;
  return 0;
}

function messageToJson(type: protobuf.Type, value: unknown): Record<string, unknown> {
  const obj = (value ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of type.fieldsArray) {
    const v = obj[f.name];
    const key = jsonName(f.name);
    if (f instanceof protobuf.MapField) {
      out[key] = Object.fromEntries(Object.entries((v ?? {}) as Record<string, unknown>).map(([k, x]) => [k, valueToJson(f, f.type, x)]));
    } else if (f.repeated) {
      out[key] = ((v ?? []) as unknown[]).map((x) => valueToJson(f, f.type, x));
    } else if (f.resolvedType instanceof protobuf.Type && (v === undefined || v === null)) {
      out[key] = null;
    } else out[key] = valueToJson(f, f.type, v);
  }
  return out;
}

/**
 * A handler's response object (proto field names, 64-bit integers as Number, enums by name) as
 * the JSON form of `registry.v1.<name>`: lowerCamelCase names, every field present, 64-bit
 * integers as strings, an absent message field as `null`.
 */
export function toJson(name: string, value: unknown): Record<string, unknown> {
  return messageToJson(typeOf(name), value);
}

/** The names of the values of enum `registry.v1.<name>`, in number order. */
export function enumNames(name: string): string[] {
  const e = root.lookupEnum(`${PACKAGE}.${name}`);
  return Object.entries(e.values).sort((a, b) => a[1] - b[1]).map(([k]) => k);
}
