/**
 * Maps the seed list of the official Model Context Protocol server registry
 * (`data/mcp-registry-seed-2025-05-16.json`, from `modelcontextprotocol/registry`) to agent specs.
 *
 * Mapping of one entry (every spec then goes through {@link validateAgentSpec}):
 * - `id` and `name` = the entry's `name` (reverse-DNS style, e.g. `io.github.apache/iotdb-mcp-server`);
 * - `kind` = {@link SEED_AGENT_KIND};
 * - `version` = `version_detail.version`;
 * - `description` = `description` with surrounding white space trimmed (too long: invalid);
 * - `endpoints.repository` = `repository.url` when non-empty; `endpoints.remote` = the first
 *   `remotes[].url`, `endpoints["remote-2"]`, `["remote-3"]`… the next ones;
 * - `capabilities` = one per package registry, lowercased: `registry_name`, or the separate
 *   `registry` field when `registry_name` is `unknown` or empty. A package whose registry stays
 *   unknown adds no capability (the file names none for most packages: an unknown registry is not
 *   something one can find by). Plus {@link REMOTE_CAPABILITY} when the entry has `remotes`;
 * - `labels`: `source` = `repository.source` (e.g. `github`), `registry_id` = the entry's `id`
 *   (a UUID), `repository_id` = `repository.id`, `package` = the package names joined by `,`;
 *   each only when non-empty.
 *
 * Entries that are not objects, blank entries (no name), entries whose fields have the wrong
 * type and entries that fail validation are reported in `invalid` with a reason and skipped.
 * Duplicate names: the first valid entry with a name is kept, later ones are reported invalid
 * (registering them would silently replace the first). The 2025-05-16 file has 471 entries: 7
 * blank ones and 464 distinct names, so an import leaves 464 agents and 7 invalid entries.
 */
import { specFromCard } from './formats/card.js';
import type { AgentSpec } from './types.js';
import { ValidationError, validateAgentSpec } from './validation.js';
import { isRecord } from '../util/json.js';

/** The kind given to every imported agent. */
export const SEED_AGENT_KIND = 'mcp-server';
/** The capability of an entry that lists remote (hosted) endpoints. */
export const REMOTE_CAPABILITY = 'remote';
/** The registry name the seed file uses when it does not know a package's registry. */
const UNKNOWN_REGISTRY = 'unknown';

/** An entry that was not imported: its position in the file, its name (may be empty), and why. */
export interface SeedInvalidEntry {
  /** 0-based position in the seed array. */
  readonly index: number;
  /** The entry's `name`, or `''` when it has none. */
  readonly name: string;
  /** A human-readable reason, naming the offending field. */
  readonly reason: string;
}

/** The result of {@link parseSeed}: the agents to register (distinct ids) and the skipped entries. */
export interface SeedImport {
  readonly agents: AgentSpec[];
  readonly invalid: SeedInvalidEntry[];
}

/** A string field of the raw entry: absent/null becomes `''`; another type is an error naming `field`. */
function str(obj: Record<string, unknown>, key: string, field: string): string {
  const v = obj[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new ValidationError(field, `must be a string, got ${Array.isArray(v) ? 'array' : typeof v}`);
  return v;
}

/** An object field of the raw entry: absent/null becomes `{}`. */
function obj(parent: Record<string, unknown>, key: string, field: string): Record<string, unknown> {
  const v = parent[key];
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) throw new ValidationError(field, 'must be an object');
  return v;
}

/** An array field of the raw entry: absent/null becomes `[]`. */
function arr(parent: Record<string, unknown>, key: string, field: string): unknown[] {
  const v = parent[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ValidationError(field, 'must be an array');
  return v;
}

/** The registry a package is published on, lowercased, or `''` when the entry does not say. */
function packageRegistry(pkg: Record<string, unknown>, field: string): string {
  const named = str(pkg, 'registry_name', `${field}.registry_name`).trim().toLowerCase();
  if (named !== '' && named !== UNKNOWN_REGISTRY) return named;
  const separate = str(pkg, 'registry', `${field}.registry`).trim().toLowerCase();
  return separate === UNKNOWN_REGISTRY ? '' : separate;
}

/**
 * Maps one raw entry to an unvalidated spec-shaped object, or throws {@link ValidationError}
 * naming the raw field that has the wrong type.
 */
function entryToSpec(entry: Record<string, unknown>, name: string): Record<string, unknown> {
  const repository = obj(entry, 'repository', 'repository');
  const versionDetail = obj(entry, 'version_detail', 'version_detail');

  const capabilities: string[] = [];
  const packageNames: string[] = [];
  arr(entry, 'packages', 'packages').forEach((p, i) => {
    const field = `packages[${i}]`;
    if (!isRecord(p)) throw new ValidationError(field, 'must be an object');
    const registry = packageRegistry(p, field);
    if (registry !== '') capabilities.push(registry);
    const packageName = str(p, 'name', `${field}.name`).trim();
    if (packageName !== '') packageNames.push(packageName);
  });

  const endpoints: Record<string, string> = {};
  const repositoryUrl = str(repository, 'url', 'repository.url').trim();
  if (repositoryUrl !== '') endpoints.repository = repositoryUrl;
  const remotes = arr(entry, 'remotes', 'remotes');
  let remoteCount = 0;
  remotes.forEach((r, i) => {
    if (!isRecord(r)) throw new ValidationError(`remotes[${i}]`, 'must be an object');
    const url = str(r, 'url', `remotes[${i}].url`).trim();
    if (url === '') return;
    remoteCount++;
    endpoints[remoteCount === 1 ? 'remote' : `remote-${remoteCount}`] = url;
  });
  if (remotes.length > 0) capabilities.push(REMOTE_CAPABILITY);

  const labels: Record<string, string> = {};
  const addLabel = (key: string, value: string): void => {
    if (value !== '') labels[key] = value;
  };
  addLabel('source', str(repository, 'source', 'repository.source').trim());
  addLabel('registry_id', str(entry, 'id', 'id').trim());
  addLabel('repository_id', str(repository, 'id', 'repository.id').trim());
  addLabel('package', packageNames.join(','));

  return {
    id: name,
    name,
    kind: SEED_AGENT_KIND,
    version: str(versionDetail, 'version', 'version_detail.version').trim(),
    description: str(entry, 'description', 'description').trim(),
    capabilities,
    endpoints,
    labels,
  };
}

/**
 * Maps a parsed seed file to agent specs (see the module comment for the mapping). Never stops
 * half-way: each bad entry is reported in `invalid` and the rest are still mapped.
 *
 * @param json the parsed JSON of the seed file: an array of registry entries.
 * @returns the valid agents in file order (distinct ids) and the skipped entries with reasons.
 * @throws ValidationError (field `seed`) when `json` is not an array.
 */
export function parseSeed(json: unknown): SeedImport {
  if (!Array.isArray(json)) throw new ValidationError('seed', 'must be a JSON array of registry entries');
  const agents: AgentSpec[] = [];
  const invalid: SeedInvalidEntry[] = [];
  const firstIndexByName = new Map<string, number>();

  json.forEach((entry: unknown, index) => {
    if (!isRecord(entry)) {
      invalid.push({ index, name: '', reason: 'entry is not an object' });
      return;
    }
    const rawName = entry.name;
    const name = typeof rawName === 'string' ? rawName : '';
    if (typeof rawName !== 'string' && rawName !== undefined && rawName !== null) {
      invalid.push({ index, name: '', reason: 'name must be a string' });
      return;
    }
    if (name.trim() === '') {
      const blank = ['id', 'description'].every((k) => entry[k] === undefined || entry[k] === '' || entry[k] === null);
      invalid.push({ index, name, reason: blank ? 'blank entry: empty name, id and description' : 'name is empty' });
      return;
    }
    const first = firstIndexByName.get(name);
    if (first !== undefined) {
      invalid.push({ index, name, reason: `duplicate name, already imported from entry ${first}` });
      return;
    }
    try {
      const spec = validateAgentSpec(entryToSpec(entry, name));
      firstIndexByName.set(name, index);
      agents.push(spec);
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      invalid.push({ index, name, reason: e.message });
    }
  });
  return { agents, invalid };
}

// ---------------------------------------------------------------------------------------------
// `registry import`: the format of a file, detected.

/** The formats {@link parseImportFile} recognizes. */
export type ImportFormat = 'mcp-seed-2025-05-16' | 'cards';

/** An entry that was not imported, with the file it came from (a directory import reads several). */
export interface ImportInvalidEntry extends SeedInvalidEntry {
  /** The file the entry is in. */
  readonly source: string;
}

/** What a file (or a directory of files) holds: the agents to register (distinct ids) and the skipped entries. */
export interface ImportResult {
  /** The format of each file read, by file name. */
  readonly formats: Readonly<Record<string, ImportFormat>>;
  readonly agents: AgentSpec[];
  readonly invalid: ImportInvalidEntry[];
}

/** Whether a parsed JSON array is the 2025-05-16 seed list (entries with `version_detail` or `registry_name` packages). */
function isSeedList(list: readonly unknown[]): boolean {
  return list.some(
    (e) => isRecord(e) && ('version_detail' in e || (Array.isArray(e.packages) && e.packages.some((p) => isRecord(p) && 'registry_name' in p))),
  );
}

/** The documents of a file that is not one JSON value: JSON Lines (blank lines skipped). */
function jsonLines(text: string, source: string): { index: number; text: string; doc?: unknown; error?: string }[] {
  const out: { index: number; text: string; doc?: unknown; error?: string }[] = [];
  let parsed = 0;
  let firstError = '';
  text.split(/\r?\n/).forEach((line) => {
    if (line.trim() === '') return;
    const index = out.length;
    try {
      out.push({ index, text: line, doc: JSON.parse(line) as unknown });
      parsed++;
    } catch (e) {
      firstError ||= (e as Error).message;
      out.push({ index, text: line, error: `line ${index + 1} is not valid JSON (${(e as Error).message})` });
    }
  });
  if (parsed === 0) throw new ValidationError(source, `is neither JSON nor JSON Lines (${firstError || 'empty'})`);
  return out;
}

/**
 * Maps the text of one import file to agent specs, detecting its format:
 * - the 2025-05-16 seed list of the MCP registry (a JSON array of entries with `version_detail`):
 *   exactly {@link parseSeed};
 * - otherwise native documents (`formats/card.ts`), each an MCP server.json (schema 2025-12-11) or
 *   an A2A AgentCard (v1.0 or v0.3), the format told per document: a JSON array of them, JSON
 *   Lines (one per line), or one JSON object (the whole file). Each becomes the spec
 *   `specFromCard` derives, keeping as its card the file's text (one object), the line's text
 *   (JSON Lines) or the element re-serialized with `JSON.stringify` (an array: the element's own
 *   bytes are not kept apart by `JSON.parse`). An invalid document is reported with the JSON
 *   Pointer of its first schema error (`card: /packages/0/transport is required`) and skipped.
 *
 * @param source the file name, for the report.
 * @throws ValidationError naming `source` when the text is neither JSON nor JSON Lines.
 */
export function parseImportFile(text: string, source: string): { format: ImportFormat; agents: AgentSpec[]; invalid: ImportInvalidEntry[] } {
  let whole: unknown;
  let docs: { index: number; text: string; doc?: unknown; error?: string }[];
  try {
    whole = JSON.parse(text);
    if (Array.isArray(whole)) {
      if (whole.length === 0 || isSeedList(whole)) {
        const seed = parseSeed(whole);
        return { format: 'mcp-seed-2025-05-16', agents: seed.agents, invalid: seed.invalid.map((x) => ({ ...x, source })) };
      }
      docs = whole.map((doc: unknown, index) => ({ index, text: JSON.stringify(doc), doc }));
    } else {
      docs = [{ index: 0, text, doc: whole }];
    }
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    docs = jsonLines(text, source);
  }
  const agents: AgentSpec[] = [];
  const invalid: ImportInvalidEntry[] = [];
  for (const d of docs) {
    const name = isRecord(d.doc) && typeof d.doc.name === 'string' ? d.doc.name : '';
    if (d.error !== undefined) {
      invalid.push({ index: d.index, name, reason: d.error, source });
      continue;
    }
    try {
      agents.push(specFromCard({ card: d.text }, 'agent', 'card'));
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      invalid.push({ index: d.index, name, reason: e.message, source });
    }
  }
  return { format: 'cards', agents, invalid };
}

/**
 * Maps several import files (a directory's, in the given order) to one import: their agents with
 * distinct ids (a later entry with an id already taken is reported invalid, as the seed import
 * does with names) and every invalid entry.
 * @throws ValidationError naming a file that is neither JSON nor JSON Lines.
 */
export function parseImportFiles(files: readonly { source: string; text: string }[]): ImportResult {
  const formats: Record<string, ImportFormat> = {};
  const agents: AgentSpec[] = [];
  const invalid: ImportInvalidEntry[] = [];
  const firstSource = new Map<string, string>();
  for (const f of files) {
    const r = parseImportFile(f.text, f.source);
    formats[f.source] = r.format;
    invalid.push(...r.invalid);
    r.agents.forEach((a, i) => {
      const first = firstSource.get(a.id);
      if (first !== undefined) {
        invalid.push({ index: i, name: a.name, reason: `duplicate id ${a.id}, already imported from ${first}`, source: f.source });
        return;
      }
      firstSource.set(a.id, f.source);
      agents.push(a);
    });
  }
  return { formats, agents, invalid };
}
