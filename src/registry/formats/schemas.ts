/**
 * The official schemas of the card formats (`schemas/`, sources in `schemas/README.md`),
 * compiled once with Ajv (JSON Schema draft-07, with `ajv-formats` for `format: "uri"`), and the
 * first error of a failed validation as a {@link CardValidationError} naming its JSON Pointer.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { CardValidationError, childPointer } from './derived.js';

/** The schemas a card is checked against. */
export type CardSchemaId = 'a2a-v1.0' | 'a2a-v0.3' | 'mcp-server-2025-12-11';

/** The file of each schema in `schemas/`. */
export const CARD_SCHEMA_FILES: Readonly<Record<CardSchemaId, string>> = {
  'a2a-v1.0': 'a2a-agent-card-v1.0.json',
  'a2a-v0.3': 'a2a-agent-card-v0.3.json',
  'mcp-server-2025-12-11': 'mcp-server-2025-12-11.json',
};

/** `schemas/` beside this module: `src/registry/formats/schemas` from `src/` or, from `dist/src/`, the package's. */
function schemaDir(): string {
  const probe = CARD_SCHEMA_FILES['mcp-server-2025-12-11'];
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const candidate of [join(dir, 'schemas'), join(dir, 'src', 'registry', 'formats', 'schemas')]) {
      if (existsSync(join(candidate, probe))) return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find src/registry/formats/schemas/${probe} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

// ajv-formats is CommonJS: under NodeNext its default import is the module object.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

let compiled: Map<CardSchemaId, ValidateFunction> | undefined;

/** The compiled validators (compiled on first use; the schemas are read from disk once). */
function validators(): Map<CardSchemaId, ValidateFunction> {
  if (compiled) return compiled;
  // strict: false — the official MCP schema uses the OpenAPI annotation `example`, which Ajv's
  // strict mode would refuse as an unknown keyword. allErrors: false — the first error is enough.
  const ajv = new Ajv({ strict: false, allErrors: false, validateSchema: true });
  addFormats(ajv);
  const dir = schemaDir();
  const out = new Map<CardSchemaId, ValidateFunction>();
  for (const [id, file] of Object.entries(CARD_SCHEMA_FILES) as [CardSchemaId, string][]) {
    out.set(id, ajv.compile(JSON.parse(readFileSync(join(dir, file), 'utf8')) as object));
  }
  compiled = out;
  return out;
}

/** One Ajv error as a pointer and a problem (`/skills/0/id`, `must be string`). */
function describe(e: ErrorObject): { pointer: string; problem: string } {
  const params = e.params as Record<string, unknown>;
  if (e.keyword === 'required' && typeof params.missingProperty === 'string') {
    return { pointer: childPointer(e.instancePath, params.missingProperty), problem: 'is required' };
  }
  if (e.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
    return { pointer: childPointer(e.instancePath, params.additionalProperty), problem: 'is not allowed here' };
  }
  const detail = e.keyword === 'enum' && Array.isArray(params.allowedValues) ? ` (${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')})` : '';
  return { pointer: e.instancePath, problem: `${e.message ?? `fails ${e.keyword}`}${detail}` };
}

/**
 * Validates a parsed card against schema `id`.
 * @param field the request field of the card, for the error (`agent.card`).
 * @throws CardValidationError naming the JSON Pointer of the first error Ajv reports.
 */
export function validateAgainstSchema(doc: unknown, id: CardSchemaId, field: string): void {
  const validate = validators().get(id) as ValidateFunction;
  if (validate(doc)) return;
  const first = validate.errors?.[0];
  if (first === undefined) throw new CardValidationError(field, '', `does not match the ${id} schema`);
  const { pointer, problem } = describe(first);
  throw new CardValidationError(field, pointer, problem);
}
