/**
 * Validation of what clients submit: agent specs, agent ids, find queries, lease lengths and
 * health values. Every limit is a named constant
 * with its unit in the name; every rejection is a {@link ValidationError} that names the field
 * (`agent.id`, `agent.capabilities[3]`, `agent.labels["env"]`), so that the server can answer
 * gRPC `INVALID_ARGUMENT` with a message the caller can act on.
 *
 * "Chars" below are Unicode code points; "bytes" are UTF-8 bytes. No string may contain NUL
 * (`\x00`): the state machine uses it as the separator of its index keys. No string may contain
 * an unpaired UTF-16 surrogate: it cannot be encoded as UTF-8, so it would not survive protobuf.
 */
import { queryTerms } from './text-index.js';
import type { AgentSpec, ClientSession, FindQuery, Health, SearchQuery } from './types.js';
import { isRecord } from '../util/json.js';

/** Longest agent id, in chars (ids are ASCII, so also bytes). */
export const MAX_ID_CHARS = 256;
/** Longest agent name, in chars. */
export const MAX_NAME_CHARS = 256;
/** Longest agent kind (e.g. `mcp-server`), in chars. */
export const MAX_KIND_CHARS = 64;
/** Longest agent version string, in chars. */
export const MAX_VERSION_CHARS = 256;
/** Longest description, in UTF-8 bytes (16 KiB). */
export const MAX_DESCRIPTION_BYTES = 16 * 1024;
/** Most capabilities one agent may list (counted as submitted, before de-duplication). */
export const MAX_CAPABILITIES = 64;
/** Longest capability, in chars. */
export const MAX_CAPABILITY_CHARS = 128;
/** Most named endpoints one agent may have. */
export const MAX_ENDPOINTS = 64;
/** Longest endpoint name (the map key, e.g. `grpc`), in chars. */
export const MAX_ENDPOINT_KEY_CHARS = 64;
/** Longest endpoint address (the map value, e.g. a URL), in chars. */
export const MAX_ENDPOINT_VALUE_CHARS = 2048;
/** Most labels one agent may carry. */
export const MAX_LABELS = 64;
/** Longest label key, in chars. */
export const MAX_LABEL_KEY_CHARS = 128;
/** Longest label value, in chars (a label value may be empty). */
export const MAX_LABEL_VALUE_CHARS = 256;
/** Longest page token of a find, in chars (tokens are opaque, server-made). */
export const MAX_PAGE_TOKEN_CHARS = 1024;
/** Largest page size a request can carry (the wire type is uint32); servers cap it lower. */
export const MAX_PAGE_SIZE_WIRE = 0xffff_ffff;
/** Largest whole agent spec, in UTF-8 bytes of its JSON encoding after normalization (64 KiB); the card is not counted. */
export const MAX_AGENT_BYTES = 64 * 1024;
/** Largest card (`AgentSpec.card`, the registered A2A AgentCard or MCP server.json text), in UTF-8 bytes: the agent limit. */
export const MAX_CARD_BYTES = MAX_AGENT_BYTES;
/**
 * Shortest lease, in seconds (0 means no lease). It must stay at least 1.5 election timeouts
 * (the default election timeout is at most 2 s): a new leader gives every lease a fresh full TTL,
 * and a lease shorter than a failover would expire agents whose heartbeats were only delayed by
 * the election.
 */
export const MIN_TTL_SECONDS = 5;
/** Longest lease, in seconds (one hour). */
export const MAX_TTL_SECONDS = 3600;

/** Characters allowed in an agent id. */
const ID_PATTERN = /^[A-Za-z0-9._:/@-]+$/;
/** Matches an unpaired UTF-16 surrogate (paired ones are consumed as one code point in `u` mode). */
const LONE_SURROGATE_PATTERN = /\p{Surrogate}/u;
/** Every unpaired UTF-16 surrogate. */
const LONE_SURROGATES = /\p{Surrogate}/gu;

/**
 * `text` with each unpaired UTF-16 surrogate replaced by U+FFFD (what `String#toWellFormed` does),
 * so it can be encoded as UTF-8 or passed to `encodeURI` (which throws `URIError` otherwise).
 */
export function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATES, '\uFFFD');
}
/** Fields a find query may carry. */
const QUERY_FIELDS = new Set(['capability', 'capabilityPrefix', 'kind', 'labels', 'health', 'namePrefix', 'verifiedOnly', 'pageSize', 'pageToken']);
/** Every spelling of a health value: the internal name, the proto enum name and its number. */
const HEALTH_SPELLINGS: ReadonlyMap<unknown, Health> = new Map<unknown, Health>([
  ['unspecified', 'unspecified'],
  ['serving', 'serving'],
  ['degraded', 'degraded'],
  ['notServing', 'notServing'],
  ['HEALTH_UNSPECIFIED', 'unspecified'],
  ['HEALTH_SERVING', 'serving'],
  ['HEALTH_DEGRADED', 'degraded'],
  ['HEALTH_NOT_SERVING', 'notServing'],
  [0, 'unspecified'],
  [1, 'serving'],
  [2, 'degraded'],
  [3, 'notServing'],
]);
/** Fields an agent spec may carry. */
const SPEC_FIELDS = new Set(['id', 'name', 'kind', 'version', 'description', 'capabilities', 'endpoints', 'labels', 'card', 'cardFormat']);
/** The values of `cardFormat` (proto `CardFormat` by its internal names). */
const CARD_FORMATS: ReadonlySet<unknown> = new Set(['a2aAgentCard', 'mcpServerJson']);
/** Fields of a stored agent that a spec may carry and that are ignored (the registry assigns them). */
const IGNORED_FIELDS = new Set(['createRevision', 'modRevision']);
/** How much of an offending key to quote in a field path, in chars. */
const MAX_QUOTED_KEY_CHARS = 40;

/**
 * A submitted value broke a rule. `field` is the path of the offending value, e.g. `agent.id`,
 * `agent.capabilities[3]`, `agent.labels["env"]`; `message` starts with that path. Servers map it
 * to gRPC `INVALID_ARGUMENT`.
 */
export class ValidationError extends Error {
  override readonly name = 'ValidationError';
  /** Path of the offending value. */
  readonly field: string;

  /**
   * `problem` is the rule that was broken, e.g. `must not be empty`. The message is made
   * well-formed ({@link wellFormed}): it may quote client input (a JSON parser's excerpt of a card
   * can end in half a surrogate pair), and gRPC percent-encodes it with `encodeURI`, which throws
   * on an unpaired surrogate and took the node down.
   */
  constructor(field: string, problem: string) {
    super(wellFormed(`${field} ${problem}`));
    this.field = field;
  }
}

/** Number of Unicode code points in `s`. */
function charCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** A short, quoted rendering of a map key for field paths. */
function quoteKey(key: string): string {
  const shown = charCount(key) > MAX_QUOTED_KEY_CHARS ? [...key].slice(0, MAX_QUOTED_KEY_CHARS).join('') + '…' : key;
  return JSON.stringify(shown);
}

/** The type of `value` as people say it (`null` and `array` are not `object`). */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

interface StringRule {
  readonly maxChars?: number;
  readonly maxBytes?: number;
  readonly nonEmpty?: boolean;
}

/** What is wrong with `value` under `rule`, or `undefined` if nothing is. */
function stringProblem(value: unknown, rule: StringRule): string | undefined {
  if (typeof value !== 'string') return `must be a string, got ${typeName(value)}`;
  if (rule.nonEmpty && value.length === 0) return 'must not be empty';
  if (value.includes('\x00')) return 'must not contain NUL (\\x00)';
  if (LONE_SURROGATE_PATTERN.test(value)) return 'must be valid Unicode (no unpaired surrogates)';
  // Cheap bound first: a string of n UTF-16 units has at most n code points.
  if (rule.maxChars !== undefined && value.length > rule.maxChars) {
    const chars = charCount(value);
    if (chars > rule.maxChars) return `must be at most ${rule.maxChars} characters, got ${chars}`;
  }
  if (rule.maxBytes !== undefined) {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > rule.maxBytes) return `must be at most ${rule.maxBytes} bytes (UTF-8), got ${bytes}`;
  }
  return undefined;
}

/**
 * Checks one string: type, NUL, well-formed Unicode, emptiness and length.
 * Throws {@link ValidationError} naming `field`.
 */
function checkString(value: unknown, field: string, rule: StringRule): string {
  const problem = stringProblem(value, rule);
  if (problem !== undefined) throw new ValidationError(field, problem);
  return value as string;
}

/** An optional string field: `undefined` becomes `''`. */
function optionalString(value: unknown, field: string, rule: StringRule): string {
  return value === undefined ? '' : checkString(value, field, rule);
}

/**
 * Checks an agent id: a string of 1..{@link MAX_ID_CHARS} characters from `[A-Za-z0-9._:/@-]`.
 * Returns it unchanged; throws {@link ValidationError} naming `field` otherwise.
 */
export function validateId(id: unknown, field = 'id'): string {
  if (typeof id !== 'string') throw new ValidationError(field, `must be a string, got ${typeName(id)}`);
  if (id.length === 0) throw new ValidationError(field, 'must not be empty');
  if (id.length > MAX_ID_CHARS) throw new ValidationError(field, `must be at most ${MAX_ID_CHARS} characters, got ${id.length}`);
  if (!ID_PATTERN.test(id)) {
    const bad = [...id].find((c) => !ID_PATTERN.test(c)) ?? '';
    throw new ValidationError(field, `must only contain [A-Za-z0-9._:/@-], found ${JSON.stringify(bad)}`);
  }
  return id;
}

/** Capabilities: an array of non-empty strings; returned de-duplicated and sorted. */
function validateCapabilities(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ValidationError(field, `must be an array of strings, got ${typeName(value)}`);
  if (value.length > MAX_CAPABILITIES) {
    throw new ValidationError(field, `must list at most ${MAX_CAPABILITIES} capabilities, got ${value.length}`);
  }
  const seen = new Set<string>();
  value.forEach((c, i) => {
    seen.add(checkString(c, `${field}[${i}]`, { nonEmpty: true, maxChars: MAX_CAPABILITY_CHARS }));
  });
  return [...seen].sort(compareStrings);
}

interface MapRule {
  readonly maxEntries: number;
  readonly noun: string;
  readonly key: StringRule;
  readonly value: StringRule;
}

/** Label rules, shared by agent labels and find filters. */
const LABEL_MAP_RULE: MapRule = {
  maxEntries: MAX_LABELS,
  noun: 'labels',
  key: { nonEmpty: true, maxChars: MAX_LABEL_KEY_CHARS },
  value: { maxChars: MAX_LABEL_VALUE_CHARS },
};

/** A string-to-string map (endpoints, labels); returned as a fresh object with sorted keys. */
function validateStringMap(value: unknown, field: string, rule: MapRule): Record<string, string> {
  if (value === undefined) return {};
  if (!isRecord(value)) throw new ValidationError(field, `must be an object of string values, got ${typeName(value)}`);
  const entries = Object.entries(value);
  if (entries.length > rule.maxEntries) {
    throw new ValidationError(field, `must have at most ${rule.maxEntries} ${rule.noun}, got ${entries.length}`);
  }
  const out: [string, string][] = [];
  for (const [k, v] of entries) {
    const keyProblem = stringProblem(k, rule.key);
    if (keyProblem !== undefined) throw new ValidationError(field, `key ${quoteKey(k)} ${keyProblem}`);
    out.push([k, checkString(v, `${field}[${quoteKey(k)}]`, rule.value)]);
  }
  out.sort((a, b) => compareStrings(a[0], b[0]));
  // Object.fromEntries defines own properties, so a key like "__proto__" stays plain data.
  return Object.fromEntries(out);
}

/** Orders strings by UTF-16 code units, the same everywhere (no locale). */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Checks an agent spec submitted by a client and returns it normalized: missing optional fields
 * become `''`, `[]` or `{}`; capabilities are de-duplicated and sorted; endpoint and label keys
 * are sorted. `id` is required ({@link validateId}); unknown fields are refused, except
 * `createRevision` and `modRevision`, which are ignored so a fetched agent can be re-submitted.
 *
 * Limits: {@link MAX_NAME_CHARS}, {@link MAX_KIND_CHARS}, {@link MAX_VERSION_CHARS},
 * {@link MAX_DESCRIPTION_BYTES}, {@link MAX_CAPABILITIES} × {@link MAX_CAPABILITY_CHARS} (non-empty),
 * {@link MAX_ENDPOINTS} (keys non-empty ≤ {@link MAX_ENDPOINT_KEY_CHARS}, values non-empty ≤
 * {@link MAX_ENDPOINT_VALUE_CHARS}), {@link MAX_LABELS} (keys non-empty ≤
 * {@link MAX_LABEL_KEY_CHARS}, values ≤ {@link MAX_LABEL_VALUE_CHARS}), and the whole spec
 * ≤ {@link MAX_AGENT_BYTES} as UTF-8 JSON.
 *
 * @param input the untrusted value (e.g. parsed JSON or a decoded request).
 * @param path the field path prefix used in errors, `agent` by default.
 * @throws ValidationError naming the first offending field.
 */
export function validateAgentSpec(input: unknown, path = 'agent'): AgentSpec {
  if (!isRecord(input)) throw new ValidationError(path, `must be an object, got ${typeName(input)}`);
  for (const key of Object.keys(input)) {
    if (!SPEC_FIELDS.has(key) && !IGNORED_FIELDS.has(key)) {
      throw new ValidationError(`${path}.${key}`, `is not a field of an agent (allowed: ${[...SPEC_FIELDS].join(', ')})`);
    }
  }
  const spec: AgentSpec = {
    id: validateId(input.id, `${path}.id`),
    name: optionalString(input.name, `${path}.name`, { maxChars: MAX_NAME_CHARS }),
    kind: optionalString(input.kind, `${path}.kind`, { maxChars: MAX_KIND_CHARS }),
    version: optionalString(input.version, `${path}.version`, { maxChars: MAX_VERSION_CHARS }),
    description: optionalString(input.description, `${path}.description`, { maxBytes: MAX_DESCRIPTION_BYTES }),
    capabilities: validateCapabilities(input.capabilities, `${path}.capabilities`),
    endpoints: validateStringMap(input.endpoints, `${path}.endpoints`, {
      maxEntries: MAX_ENDPOINTS,
      noun: 'endpoints',
      key: { nonEmpty: true, maxChars: MAX_ENDPOINT_KEY_CHARS },
      value: { nonEmpty: true, maxChars: MAX_ENDPOINT_VALUE_CHARS },
    }),
    labels: validateStringMap(input.labels, `${path}.labels`, LABEL_MAP_RULE),
    ...validateCardFields(input, path),
  };
  const bytes = agentSpecBytes(spec);
  if (bytes > MAX_AGENT_BYTES) {
    throw new ValidationError(path, `must be at most ${MAX_AGENT_BYTES} bytes as UTF-8 JSON, got ${bytes}`);
  }
  return spec;
}

/**
 * The `card` and `cardFormat` of a spec: both absent (or an empty card without a format: no
 * card), or a card of at most {@link MAX_CARD_BYTES} with a format. This checks the envelope only;
 * whether the card is a valid document of its format is `src/registry/formats/`'s concern.
 */
function validateCardFields(input: Record<string, unknown>, path: string): Pick<AgentSpec, 'card' | 'cardFormat'> {
  const { card, cardFormat } = input;
  if ((card === undefined || card === '') && cardFormat === undefined) return {};
  const text = checkString(card, `${path}.card`, { nonEmpty: true, maxBytes: MAX_CARD_BYTES });
  if (!CARD_FORMATS.has(cardFormat)) {
    throw new ValidationError(`${path}.cardFormat`, `must be one of ${[...CARD_FORMATS].join(', ')} with a card, got ${JSON.stringify(cardFormat) ?? 'nothing'}`);
  }
  return { card: text, cardFormat: cardFormat as NonNullable<AgentSpec['cardFormat']> };
}

/**
 * Size of a spec as counted against {@link MAX_AGENT_BYTES}: UTF-8 bytes of its JSON encoding,
 * without the card (which has its own limit, {@link MAX_CARD_BYTES}).
 */
export function agentSpecBytes(spec: AgentSpec): number {
  return Buffer.byteLength(JSON.stringify({ ...spec, card: undefined, cardFormat: undefined }), 'utf8');
}

/**
 * Checks the filters of a find and returns them normalized (every field present; empty strings
 * and health `unspecified` mean "any"). `capability` and `kind` follow the agent limits (but may
 * be empty), `labels` the agent label rules, `health` is any spelling {@link validateHealth}
 * accepts (absent: `unspecified`), `namePrefix` at most {@link MAX_NAME_CHARS}, `pageSize` is an
 * integer in `[0, MAX_PAGE_SIZE_WIRE]` (0: the server's default; the server enforces its own
 * maximum), `pageToken` at most {@link MAX_PAGE_TOKEN_CHARS}.
 *
 * @param input the untrusted value.
 * @param path the field path prefix used in errors, `query` by default.
 * @throws ValidationError naming the first offending field.
 */
export function validateFindQuery(input: unknown, path = 'query'): Required<FindQuery> {
  if (input === undefined) input = {};
  if (!isRecord(input)) throw new ValidationError(path, `must be an object, got ${typeName(input)}`);
  for (const key of Object.keys(input)) {
    if (!QUERY_FIELDS.has(key)) {
      throw new ValidationError(`${path}.${key}`, `is not a field of a find query (allowed: ${[...QUERY_FIELDS].join(', ')})`);
    }
  }
  const pageSize = input.pageSize ?? 0;
  if (typeof pageSize !== 'number' || !Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE_WIRE) {
    throw new ValidationError(`${path}.pageSize`, `must be an integer from 0 to ${MAX_PAGE_SIZE_WIRE}, got ${String(pageSize)}`);
  }
  return {
    capability: optionalString(input.capability, `${path}.capability`, { maxChars: MAX_CAPABILITY_CHARS }),
    capabilityPrefix: optionalString(input.capabilityPrefix, `${path}.capabilityPrefix`, { maxChars: MAX_CAPABILITY_CHARS }),
    kind: optionalString(input.kind, `${path}.kind`, { maxChars: MAX_KIND_CHARS }),
    labels: validateStringMap(input.labels, `${path}.labels`, LABEL_MAP_RULE),
    health: input.health === undefined ? 'unspecified' : validateHealth(input.health, `${path}.health`),
    namePrefix: optionalString(input.namePrefix, `${path}.namePrefix`, { maxChars: MAX_NAME_CHARS }),
    verifiedOnly: optionalBoolean(input.verifiedOnly, `${path}.verifiedOnly`),
    pageSize,
    pageToken: optionalString(input.pageToken, `${path}.pageToken`, { maxChars: MAX_PAGE_TOKEN_CHARS }),
  };
}

/** An optional boolean (absent: false). @throws ValidationError naming `field`. */
function optionalBoolean(value: unknown, field: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new ValidationError(field, `must be a boolean, got ${typeName(value)}`);
  return value;
}

/**
 * Checks a search query: `query` a string of at most `MAX_SEARCH_QUERY_CHARS` holding 1 to
 * `MAX_SEARCH_QUERY_TERMS` distinct words (see `text-index.ts`), and every find filter as
 * {@link validateFindQuery} checks it.
 * @throws ValidationError naming the first offending field (`query.query`, `query.capability`…).
 */
export function validateSearchQuery(input: unknown, path = 'query'): Required<SearchQuery> {
  if (!isRecord(input)) throw new ValidationError(path, `must be an object, got ${typeName(input)}`);
  const { query, ...filters } = input;
  if (typeof query !== 'string') throw new ValidationError(`${path}.query`, `must be a string, got ${typeName(query)}`);
  try {
    queryTerms(query);
  } catch (err) {
    throw new ValidationError(`${path}.query`, (err as Error).message);
  }
  return { ...validateFindQuery(filters, path), query };
}

/**
 * Checks a capability prefix of `ListCapabilities` (may be empty: every capability), at most
 * {@link MAX_CAPABILITY_CHARS}. @throws ValidationError naming `field`.
 */
export function validateCapabilityPrefix(input: unknown, field = 'prefix'): string {
  return optionalString(input, field, { maxChars: MAX_CAPABILITY_CHARS });
}

/**
 * Checks a lease length in seconds: 0 (or absent) for no lease, else an integer from `min`
 * ({@link MIN_TTL_SECONDS} by default; a node with faster timing may allow less) to
 * {@link MAX_TTL_SECONDS}. Returns it as a number.
 * @throws ValidationError naming `field` (`ttl_seconds` by default).
 */
export function validateTtlSeconds(ttl: unknown, field = 'ttl_seconds', min = MIN_TTL_SECONDS): number {
  const value = ttl ?? 0;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ValidationError(field, `must be a non-negative integer number of seconds, got ${String(value)}`);
  }
  if (value !== 0 && (value < min || value > MAX_TTL_SECONDS)) {
    throw new ValidationError(field, `must be 0 (no lease) or from ${min} to ${MAX_TTL_SECONDS} seconds, got ${value}`);
  }
  return value;
}

/**
 * Checks a health value and returns its internal name. Accepts the proto enum names
 * (`HEALTH_UNSPECIFIED`, `HEALTH_SERVING`, `HEALTH_DEGRADED`, `HEALTH_NOT_SERVING`), their
 * numbers (0-3) and the internal names (`unspecified`, `serving`, `degraded`, `notServing`).
 * @throws ValidationError naming `field` (`health` by default) on anything else, absence included.
 */
export function validateHealth(h: unknown, field = 'health'): Health {
  const health = HEALTH_SPELLINGS.get(h);
  if (health === undefined) {
    throw new ValidationError(field, `must be one of HEALTH_UNSPECIFIED, HEALTH_SERVING, HEALTH_DEGRADED, HEALTH_NOT_SERVING, got ${typeof h === 'string' ? JSON.stringify(h) : String(h)}`);
  }
  return health;
}

/** Longest exactly-once client id, in characters. */
export const MAX_CLIENT_ID_CHARS = 128;
const CLIENT_ID_PATTERN = /^[A-Za-z0-9._:-]+$/;

/**
 * Checks the exactly-once identity of a write (thesis §6.3): an empty `clientId` means none
 * (then `sequence` must be 0); otherwise 1..{@link MAX_CLIENT_ID_CHARS} characters of
 * `[A-Za-z0-9._:-]` and a positive safe-integer `sequence`.
 * @throws ValidationError naming `client_id` or `sequence`.
 */
export function validateSession(clientId: unknown, sequence: unknown): ClientSession | undefined {
  const id = clientId ?? '';
  const seq = sequence ?? 0;
  if (typeof id !== 'string') throw new ValidationError('client_id', 'must be a string');
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw new ValidationError('sequence', 'must be a non-negative integer');
  if (id === '') {
    if (seq !== 0) throw new ValidationError('sequence', 'must be 0 without a client_id');
    return undefined;
  }
  if (id.length > MAX_CLIENT_ID_CHARS || !CLIENT_ID_PATTERN.test(id)) {
    throw new ValidationError('client_id', `must be 1-${MAX_CLIENT_ID_CHARS} characters of [A-Za-z0-9._:-]`);
  }
  if (seq === 0) throw new ValidationError('sequence', 'must be positive with a client_id');
  return { clientId: id, sequence: seq };
}
