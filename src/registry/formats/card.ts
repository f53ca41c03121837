/**
 * Agents registered from their native documents (issue 11, "Native formats"): an A2A AgentCard
 * (`a2a.ts`) or an MCP server.json (`mcp-server.ts`), validated against the official schema
 * (`schemas.ts`) and turned into an agent spec whose indexed fields are derived from it, while
 * the document is kept byte for byte in `AgentSpec.card`.
 *
 * {@link specFromCard} is the one entry point (the API handlers, the client and the import all
 * use it), and it is pure: the same card and fields give the same spec on every node.
 *
 * Merging with fields given beside the card (a `RegisterRequest` may carry both):
 * - `id`: the given one; without it, {@link cardAgentId} of the derived name and version;
 * - `name`, `kind`, `version`, `description`: a given non-empty value wins over the derived one;
 * - `capabilities`: the derived ones, then the given ones (the union, duplicates once);
 * - `endpoints`, `labels`: the derived ones, with given keys replacing derived keys.
 * The result then passes {@link validateAgentSpec} like any spec.
 */
import type { AgentSpec, CardFormat } from '../types.js';
import { MAX_CARD_BYTES, MAX_ID_CHARS, ValidationError, validateAgentSpec } from '../validation.js';
import { a2aSchemaOf, deriveA2aFields } from './a2a.js';
import { CardValidationError, type DerivedFields } from './derived.js';
import { deriveMcpServerFields } from './mcp-server.js';
import { validateAgainstSchema, type CardSchemaId } from './schemas.js';
import { isRecord } from '../../util/json.js';

export { CardValidationError } from './derived.js';
export type { DerivedFields } from './derived.js';

/** Characters of an agent id (as `validation.ts`); a run of any other becomes `-` in a derived id. */
const ID_DISALLOWED_RUN = /[^A-Za-z0-9._:/@-]+/g;
/** The MCP name grammar (schema 2025-12-11 `ServerDetail.name`), used to recognize a server.json. */
const MCP_NAME_PATTERN = /^[a-zA-Z0-9.-]+\/[a-zA-Z0-9._-]+$/;

/** A parsed and schema-checked card. */
export interface ParsedCard {
  readonly doc: unknown;
  readonly format: CardFormat;
  /** The schema it was checked against. */
  readonly schema: CardSchemaId;
}

/**
 * The format a parsed document looks like, or `undefined`: an A2A AgentCard has `skills`,
 * `supportedInterfaces` or `protocolVersion`; an MCP server.json has a `$schema` under
 * `modelcontextprotocol.io`, `packages` or `remotes`, or a reverse-DNS `name` with a `/`.
 */
export function detectCardFormat(doc: unknown): CardFormat | undefined {
  if (!isRecord(doc)) return undefined;
  if ('skills' in doc || 'supportedInterfaces' in doc || 'protocolVersion' in doc || 'defaultInputModes' in doc) return 'a2aAgentCard';
  if (typeof doc.$schema === 'string' && doc.$schema.includes('modelcontextprotocol.io')) return 'mcpServerJson';
  if ('packages' in doc || 'remotes' in doc) return 'mcpServerJson';
  if (typeof doc.name === 'string' && MCP_NAME_PATTERN.test(doc.name)) return 'mcpServerJson';
  return undefined;
}

/**
 * Parses `text` (at most {@link MAX_CARD_BYTES} of UTF-8, one JSON object) and validates it
 * against the schema of `format` (detected with {@link detectCardFormat} when absent).
 * @param field the request field of the card, for errors (`agent.card`).
 * @throws CardValidationError (not JSON, too large, not an object, schema errors: the message
 *   names the JSON Pointer of the first error); ValidationError naming `<field>Format` when the
 *   format cannot be told.
 */
export function parseCard(text: string, format: CardFormat | undefined, field = 'agent.card'): ParsedCard {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_CARD_BYTES) throw new CardValidationError(field, '', `must be at most ${MAX_CARD_BYTES} bytes (UTF-8), got ${bytes}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new CardValidationError(field, '', `is not valid JSON (${(err as Error).message})`);
  }
  if (!isRecord(doc)) throw new CardValidationError(field, '', 'must be a JSON object');
  const f = format ?? detectCardFormat(doc);
  if (f === undefined) {
    throw new ValidationError(`${field}Format`, 'is required: the card is neither recognizably an A2A AgentCard nor an MCP server.json');
  }
  const schema: CardSchemaId = f === 'a2aAgentCard' ? a2aSchemaOf(doc) : 'mcp-server-2025-12-11';
  validateAgainstSchema(doc, schema, field);
  return { doc, format: f, schema };
}

/** The indexed fields of a parsed card (see `a2a.ts` and `mcp-server.ts`). */
export function deriveCardFields(card: ParsedCard, field = 'agent.card'): DerivedFields {
  return card.format === 'a2aAgentCard' ? deriveA2aFields(card.doc, card.schema, field) : deriveMcpServerFields(card.doc, field);
}

/**
 * The id of an agent registered from a card without an explicit id: `<name>@<version>` (or
 * `<name>` without a version), each run of characters an id may not hold replaced by `-`, and
 * leading/trailing `-` of the name dropped. So an MCP server `io.github.user/weather` 1.0.2 is
 * `io.github.user/weather@1.0.2`, and the A2A "GeoSpatial Route Planner Agent" 1.2.0 is
 * `GeoSpatial-Route-Planner-Agent@1.2.0`; the versions of one name are separate records.
 * @throws CardValidationError (`/name`) when nothing is left of the name, or the id would exceed
 *   {@link MAX_ID_CHARS}: give an id.
 */
export function cardAgentId(name: string, version: string, field = 'agent.card'): string {
  const base = name.replace(ID_DISALLOWED_RUN, '-').replace(/^-+|-+$/g, '');
  if (base === '') throw new CardValidationError(field, '/name', 'gives no usable agent id; set agent.id');
  const v = version.replace(ID_DISALLOWED_RUN, '-');
  const id = v === '' ? base : `${base}@${v}`;
  if (id.length > MAX_ID_CHARS) throw new CardValidationError(field, '/name', `gives an agent id longer than ${MAX_ID_CHARS} characters; set agent.id`);
  return id;
}

/** Fields given beside a card (all optional; empty strings mean "not given"). */
export interface CardSpecInput {
  /** The card text, stored exactly. */
  readonly card: string;
  /** Its format; detected from the document when absent. */
  readonly cardFormat?: CardFormat;
  readonly id?: string;
  readonly name?: string;
  readonly kind?: string;
  readonly version?: string;
  readonly description?: string;
  readonly capabilities?: readonly string[];
  readonly endpoints?: Readonly<Record<string, string>>;
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * The agent spec of a card (see the module comment for the merge with given fields): the card is
 * validated against its schema, the indexed fields derived, the whole spec validated.
 * @param path the request field of the agent (`agent`), named by errors of the merged spec.
 * @param field the name of the card in errors (`<path>.card` by default; the import says `card`).
 * @throws CardValidationError naming the card path of the first problem; ValidationError for the
 *   given fields or the merged spec (e.g. `agent.capabilities must list at most 64`).
 */
export function specFromCard(input: CardSpecInput, path = 'agent', field = `${path}.card`): AgentSpec {
  if (typeof input.card !== 'string' || input.card === '') throw new ValidationError(field, 'must be a non-empty string (the JSON of the card)');
  const parsed = parseCard(input.card, input.cardFormat, field);
  const derived = deriveCardFields(parsed, field);
  const given = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const merged = {
    id: given(input.id) ?? cardAgentId(derived.name, derived.version, field),
    name: given(input.name) ?? derived.name,
    kind: given(input.kind) ?? derived.kind,
    version: given(input.version) ?? derived.version,
    description: given(input.description) ?? derived.description,
    capabilities: [...new Set([...derived.capabilities, ...(input.capabilities ?? [])])],
    endpoints: { ...derived.endpoints, ...(input.endpoints ?? {}) },
    labels: { ...derived.labels, ...(input.labels ?? {}) },
    card: input.card,
    cardFormat: parsed.format,
  };
  return validateAgentSpec(merged, path);
}
