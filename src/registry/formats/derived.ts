/**
 * The indexed fields a card derives, collected with the card path each one comes from, so that a
 * value breaking an agent limit (`validation.ts`) is refused with the path in the card that
 * produced it (`agent.card: /skills/3/tags/0 derives capability "tag:…" longer than 128
 * characters`), never truncated.
 */
import {
  MAX_CAPABILITIES,
  MAX_CAPABILITY_CHARS,
  MAX_DESCRIPTION_BYTES,
  MAX_ENDPOINT_KEY_CHARS,
  MAX_ENDPOINT_VALUE_CHARS,
  MAX_ENDPOINTS,
  MAX_LABEL_KEY_CHARS,
  MAX_LABEL_VALUE_CHARS,
  MAX_LABELS,
  MAX_NAME_CHARS,
  MAX_VERSION_CHARS,
  ValidationError,
  wellFormed,
} from '../validation.js';
import type { AgentSpec } from '../types.js';

/** How much of an offending derived value to quote in an error, in chars. */
const MAX_QUOTED_VALUE_CHARS = 60;
/** Matches an unpaired UTF-16 surrogate. */
const LONE_SURROGATE_PATTERN = /\p{Surrogate}/u;

/**
 * A card does not fit its schema, or derives a field that breaks an agent limit. `field` is the
 * request field holding the card (`agent.card`), `pointer` the JSON Pointer (RFC 6901) into the
 * card of the first offending value (`''` for the whole card). The message is
 * `<field>: <pointer> <problem>`, e.g. `agent.card: /skills/0/id must be string`. Servers answer
 * it with `INVALID_ARGUMENT`, like every {@link ValidationError}.
 */
export class CardValidationError extends ValidationError {
  /** JSON Pointer into the card, `''` for the document itself. */
  readonly pointer: string;

  constructor(field: string, pointer: string, problem: string) {
    super(field, problem);
    this.pointer = pointer;
    this.message = wellFormed(`${field}: ${pointer === '' ? '(document)' : pointer} ${problem}`);
  }
}

/** A JSON Pointer token (RFC 6901 §3: `~` → `~0`, `/` → `~1`). */
export function pointerToken(key: string | number): string {
  return String(key).replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The pointer of `key` under `parent`. */
export function childPointer(parent: string, ...keys: (string | number)[]): string {
  return parent + keys.map((k) => `/${pointerToken(k)}`).join('');
}

/**
 * The fields of an agent spec that a card derives (everything but the id and the card);
 * capabilities distinct, in the order the card lists them.
 */
export type DerivedFields = Pick<AgentSpec, 'name' | 'kind' | 'version' | 'description' | 'capabilities' | 'endpoints' | 'labels'>;

function quote(value: string): string {
  const chars = [...value];
  return JSON.stringify(chars.length > MAX_QUOTED_VALUE_CHARS ? chars.slice(0, MAX_QUOTED_VALUE_CHARS).join('') + '…' : value);
}

/** What is wrong with a derived string, or undefined. */
function stringProblem(value: string, maxChars: number | undefined, maxBytes: number | undefined): string | undefined {
  if (value.includes('\x00')) return 'must not contain NUL (\\x00)';
  if (LONE_SURROGATE_PATTERN.test(value)) return 'must be valid Unicode (no unpaired surrogates)';
  if (maxChars !== undefined && [...value].length > maxChars) return `longer than ${maxChars} characters`;
  if (maxBytes !== undefined && Buffer.byteLength(value, 'utf8') > maxBytes) return `longer than ${maxBytes} bytes (UTF-8)`;
  return undefined;
}

/**
 * Collects derived fields, checking each value against the agent limits as it is added and
 * naming the card path it came from. Every method throws {@link CardValidationError}.
 */
export class DerivedBuilder {
  private readonly capabilities = new Set<string>();
  private readonly endpoints = new Map<string, string>();
  private readonly labels = new Map<string, string>();
  private name = '';
  private version = '';
  private description = '';

  /** @param field the request field of the card, e.g. `agent.card`. */
  constructor(
    private readonly field: string,
    private readonly kind: string,
  ) {}

  private fail(pointer: string, problem: string): never {
    throw new CardValidationError(this.field, pointer, problem);
  }

  private check(pointer: string, what: string, value: string, maxChars?: number, maxBytes?: number): void {
    const problem = stringProblem(value, maxChars, maxBytes);
    if (problem !== undefined) this.fail(pointer, `derives ${what} ${quote(value)} ${problem}`);
  }

  /** Sets the name, version and description (empty strings are allowed). */
  setScalars(fields: { name: string; version: string; description: string }, pointers: { name: string; version: string; description: string }): void {
    this.check(pointers.name, 'name', fields.name, MAX_NAME_CHARS);
    this.check(pointers.version, 'version', fields.version, MAX_VERSION_CHARS);
    this.check(pointers.description, 'description', fields.description, undefined, MAX_DESCRIPTION_BYTES);
    this.name = fields.name;
    this.version = fields.version;
    this.description = fields.description;
  }

  /** Adds `prefix + value` as a capability (an empty `value` adds nothing); refuses the 65th distinct one. */
  capability(prefix: string, value: string, pointer: string): void {
    if (value === '') return;
    const capability = prefix + value;
    this.check(pointer, 'capability', capability, MAX_CAPABILITY_CHARS);
    if (this.capabilities.has(capability)) return;
    if (this.capabilities.size >= MAX_CAPABILITIES) this.fail(pointer, `derives more than ${MAX_CAPABILITIES} capabilities (the agent limit); register fewer skills, tags or tools`);
    this.capabilities.add(capability);
  }

  /**
   * Adds an endpoint named `name`, or `name-2`, `name-3`… when the name is taken by another
   * address; the same name and address twice is one endpoint. An empty address adds nothing.
   */
  endpoint(name: string, address: string, pointer: string): void {
    if (address === '' || name === '') return;
    let key = name;
    for (let n = 2; this.endpoints.has(key); n++) {
      if (this.endpoints.get(key) === address) return;
      key = `${name}-${n}`;
    }
    this.check(pointer, 'endpoint name', key, MAX_ENDPOINT_KEY_CHARS);
    this.check(pointer, 'endpoint address', address, MAX_ENDPOINT_VALUE_CHARS);
    if (this.endpoints.size >= MAX_ENDPOINTS) this.fail(pointer, `derives more than ${MAX_ENDPOINTS} endpoints (the agent limit)`);
    this.endpoints.set(key, address);
  }

  /** Sets a label (an empty value sets nothing). */
  label(key: string, value: string, pointer: string): void {
    if (value === '') return;
    this.check(pointer, 'label key', key, MAX_LABEL_KEY_CHARS);
    this.check(pointer, 'label value', value, MAX_LABEL_VALUE_CHARS);
    if (!this.labels.has(key) && this.labels.size >= MAX_LABELS) this.fail(pointer, `derives more than ${MAX_LABELS} labels (the agent limit)`);
    this.labels.set(key, value);
  }

  /** The fields collected so far. */
  build(): DerivedFields {
    return {
      name: this.name,
      kind: this.kind,
      version: this.version,
      description: this.description,
      capabilities: [...this.capabilities],
      endpoints: Object.fromEntries(this.endpoints),
      labels: Object.fromEntries(this.labels),
    };
  }
}
