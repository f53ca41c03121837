/**
 * Versions: several records may share a `name` (one per `version`, or several; the id stays the
 * unique key), and the registry resolves which one is `latest` (the order of `semver.ts`: the
 * highest semantic version; non-semantic versions rank below every semantic one and among
 * themselves by publication, i.e. `createRevision`).
 *
 * The state machine keeps the versions index `idx/ver/<name>\x00<id>` → `[version,
 * createRevision]` (`keys.ts`) in the same batch as the record, for every record with a non-empty
 * name; snapshots carry it like every other key. Everything here reads that index through a
 * {@link KeyValueReader} and derives the rest (`latest` is computed when read, from the entries
 * of one name, so it is never stored and cannot disagree with the records):
 *
 * - {@link readVersions}: the versions of one name, latest first;
 * - {@link resolveAgentRef}: the id a Get of `<name>@<version>`, `<name>@latest` or `<name>` means;
 * - {@link pageVersions}: every version of every name (or only the latest of each), in name
 *   order, one page at a time, for the MCP registry's `GET /v0.1/servers`.
 */
import { compareUtf8 } from '../storage/staging.js';
import { CorruptionError, type KeyValueReader } from '../storage/types.js';
import { registryPackr } from './commands.js';
import { KEY_SEPARATOR, prefixEnd, VERSION_INDEX_PREFIX, versionIndexKey, versionIndexPrefix } from './keys.js';
import type { RecordIndex } from './records.js';
import { latestOf, newestFirst, type VersionEntry } from './semver.js';
import type { Agent } from './types.js';
import { MAX_NAME_CHARS, MAX_VERSION_CHARS, ValidationError } from './validation.js';

/** The version that names the latest in a reference (`<name>@latest`) and in the MCP API. */
export const LATEST_VERSION = 'latest';

/** Longest reference a Get accepts, in characters: a name, `@`, a version. */
export const MAX_AGENT_REF_CHARS = MAX_NAME_CHARS + 1 + MAX_VERSION_CHARS;

/**
 * Checks the `id` of a Get: an id or a version reference (`<name>@<version>`, `<name>@latest`,
 * `<name>`): a non-empty string of at most {@link MAX_AGENT_REF_CHARS} characters without NUL.
 * Returns it unchanged; throws {@link ValidationError} naming `field`.
 */
export function validateAgentRef(ref: unknown, field = 'id'): string {
  if (typeof ref !== 'string') throw new ValidationError(field, `must be a string, got ${ref === null ? 'null' : typeof ref}`);
  if (ref.length === 0) throw new ValidationError(field, 'must not be empty');
  if ([...ref].length > MAX_AGENT_REF_CHARS) throw new ValidationError(field, `must be at most ${MAX_AGENT_REF_CHARS} characters`);
  if (ref.includes(KEY_SEPARATOR)) throw new ValidationError(field, 'must not contain NUL (\\x00)');
  return ref;
}

/**
 * Checks the name of a ListVersions: a non-empty string of at most `MAX_NAME_CHARS` characters
 * without NUL. Returns it unchanged; throws {@link ValidationError} naming `field`.
 */
export function validateVersionsName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string') throw new ValidationError(field, `must be a string, got ${name === null ? 'null' : typeof name}`);
  if (name.length === 0) throw new ValidationError(field, 'must not be empty');
  if ([...name].length > MAX_NAME_CHARS) throw new ValidationError(field, `must be at most ${MAX_NAME_CHARS} characters`);
  if (name.includes(KEY_SEPARATOR)) throw new ValidationError(field, 'must not contain NUL (\\x00)');
  return name;
}

/** One versions-index entry: a {@link VersionEntry} with its name. */
export interface NamedVersionEntry extends VersionEntry {
  readonly name: string;
}

/** The value of an agent's versions index key: `[version, createRevision]`, msgpackr. */
export function versionIndexValue(agent: Pick<Agent, 'version' | 'createRevision'>): Uint8Array {
  return registryPackr.pack([agent.version, agent.createRevision]);
}

/**
 * The versions index as a step of a record write (`records.ts`): the key of the old record is
 * deleted when the name changes (or the record goes), the key of the new one is always written
 * (its value holds the version, which a replace may change; and a record written before this
 * index existed enters it when it is rewritten). Records with an empty name have no entry.
 */
export const versionsIndex: RecordIndex = {
  stage(batch, existing, agent) {
    const oldKey = existing === undefined || existing.name === '' ? undefined : versionIndexKey(existing.name, existing.id);
    const newKey = agent === undefined || agent.name === '' ? undefined : versionIndexKey(agent.name, agent.id);
    if (oldKey !== undefined && oldKey !== newKey) batch.del(oldKey);
    if (agent !== undefined && newKey !== undefined) batch.put(newKey, versionIndexValue(agent));
  },
};

/**
 * Decodes the versions index entry at `key` (`idx/ver/<name>\x00<id>`). Throws
 * {@link CorruptionError} naming the key when the key or the value has the wrong shape.
 */
export function decodeVersionIndexEntry(key: string, value: Uint8Array): NamedVersionEntry {
  const sep = key.indexOf(KEY_SEPARATOR, VERSION_INDEX_PREFIX.length);
  let decoded: unknown;
  try {
    decoded = registryPackr.unpack(value);
  } catch {
    decoded = undefined;
  }
  if (
    !key.startsWith(VERSION_INDEX_PREFIX) ||
    sep < 0 ||
    !Array.isArray(decoded) ||
    typeof decoded[0] !== 'string' ||
    typeof decoded[1] !== 'number' ||
    !Number.isSafeInteger(decoded[1]) ||
    decoded[1] < 1
  ) {
    throw new CorruptionError(`versions index entry ${JSON.stringify(key)} does not decode`);
  }
  return { name: key.slice(VERSION_INDEX_PREFIX.length, sep), id: key.slice(sep + 1), version: decoded[0], createRevision: decoded[1] };
}

/**
 * The versions of `name` as the store holds them, latest first (empty for an unknown or empty
 * name). One range read of the name's index entries. Rejects with {@link CorruptionError} on a
 * damaged entry.
 */
export async function readVersions(kv: KeyValueReader, name: string): Promise<NamedVersionEntry[]> {
  if (name === '' || name.includes(KEY_SEPARATOR)) return [];
  const prefix = versionIndexPrefix(name);
  const out: NamedVersionEntry[] = [];
  for await (const [key, value] of kv.range(prefix, prefixEnd(prefix))) out.push(decodeVersionIndexEntry(key, value));
  return newestFirst(out);
}

/**
 * The id that the reference `ref` names when no agent has `ref` as its id (the caller tries that
 * first), or `undefined`:
 *
 * - `<name>@latest`: the latest version of `name`;
 * - `<name>@<version>`: the version of `name` whose version string is exactly `<version>` (when
 *   several records of the name carry it, the latest of them);
 * - `<name>`: the latest version of `name`.
 *
 * The split is at the last `@` that is not the first character (npm-style names such as
 * `@scope/pkg` start with one); when `<name>` has no versions, the whole `ref` is tried as a
 * name. Rejects with {@link CorruptionError} on a damaged index entry.
 */
export async function resolveAgentRef(kv: KeyValueReader, ref: string): Promise<string | undefined> {
  const at = ref.lastIndexOf('@');
  if (at > 0) {
    const versions = await readVersions(kv, ref.slice(0, at));
    if (versions.length > 0) {
      const version = ref.slice(at + 1);
      // readVersions is latest first, so the first match is the latest of equal versions.
      const found = version === LATEST_VERSION ? versions[0] : versions.find((v) => v.version === version);
      if (found !== undefined) return found.id;
    }
  }
  return (await readVersions(kv, ref))[0]?.id;
}

/** Filters and position of a {@link pageVersions} read. */
export interface VersionPageQuery {
  /** Most items returned (a positive integer; the caller applies its own limits). */
  readonly limit: number;
  /** A `nextCursor` of an earlier page, or `undefined`/`''` for the first page. */
  readonly cursor?: string;
  /** Only names containing this, ignoring case (the official registry's `search`); `''`: any. */
  readonly nameContains?: string;
  /** Only the latest version of each name. */
  readonly latestOnly?: boolean;
  /** Only versions whose version string is exactly this. */
  readonly version?: string;
  /** Only records for which this holds (read after the index filters). */
  readonly accept?: (agent: Agent) => boolean;
}

/** One item of a {@link pageVersions} page: the record and whether it is its name's latest. */
export interface VersionPageItem {
  readonly agent: Agent;
  readonly isLatest: boolean;
}

/** A malformed `cursor` of {@link pageVersions}. */
export class VersionCursorError extends Error {
  override readonly name = 'VersionCursorError';
}

/** The cursor of a page ending at `entry`: base64url of `<name>\x00<id>`. */
function encodeCursor(entry: NamedVersionEntry): string {
  return Buffer.from(entry.name + KEY_SEPARATOR + entry.id, 'utf8').toString('base64url');
}

/** The `[name, id]` a cursor resumes after; throws {@link VersionCursorError}. */
function decodeCursor(cursor: string): [string, string] {
  const text = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const sep = text.indexOf(KEY_SEPARATOR);
  if (sep < 1 || sep === text.length - 1 || Buffer.from(text, 'utf8').toString('base64url') !== cursor) throw new VersionCursorError('malformed cursor');
  return [text.slice(0, sep), text.slice(sep + 1)];
}

/**
 * One page of versions in versions-index order (name, then id, UTF-8 byte order), each with
 * whether it is the latest of its name, and the cursor of the next page (`''` on the last one).
 *
 * The index is read one name at a time (all of a name's entries, to know its latest); the name
 * filter runs on the index keys, the records are read (one `getMany` per name) only for entries
 * that pass it, then `accept` runs on them. A cursor names the last item returned, so the next
 * page resumes strictly after it at any later revision: an item present during the whole walk
 * is returned exactly once, one added or removed meanwhile at most once. Reads up to `limit + 1`
 * matches, to tell whether another page follows. Throws {@link VersionCursorError} on a cursor
 * it did not return; rejects with {@link CorruptionError} on damaged data.
 */
export async function pageVersions(
  kv: KeyValueReader,
  query: VersionPageQuery,
  decodeRecord: (value: Uint8Array, key: string) => Agent,
  recordKey: (id: string) => string,
): Promise<{ items: VersionPageItem[]; nextCursor: string }> {
  const after = query.cursor === undefined || query.cursor === '' ? undefined : decodeCursor(query.cursor);
  const needle = (query.nameContains ?? '').toLowerCase();
  const found: { entry: NamedVersionEntry; item: VersionPageItem }[] = [];
  const start = after === undefined ? VERSION_INDEX_PREFIX : versionIndexPrefix(after[0]);

  let group: NamedVersionEntry[] = [];
  const flush = async (): Promise<void> => {
    const entries = group;
    group = [];
    const first = entries[0];
    if (first === undefined || found.length > query.limit) return;
    if (needle !== '' && !first.name.toLowerCase().includes(needle)) return;
    const latest = latestOf(entries) as NamedVersionEntry;
    let candidates = query.latestOnly === true ? [latest] : entries;
    if (after !== undefined && first.name === after[0]) {
      // The cursor's name: with only latests it was returned already; else resume after its id.
      candidates = query.latestOnly === true ? [] : candidates.filter((e) => compareUtf8(e.id, after[1]) > 0);
    }
    if (query.version !== undefined) candidates = candidates.filter((e) => e.version === query.version);
    if (candidates.length === 0) return;
    const keys = candidates.map((e) => recordKey(e.id));
    const values = await kv.getMany(keys);
    candidates.forEach((entry, i) => {
      const value = values[i];
      if (value === undefined || found.length > query.limit) return;
      const agent = decodeRecord(value, keys[i] as string);
      // An index entry may outlive its record between two reads: the record decides.
      if (agent.id !== entry.id || agent.name !== entry.name) return;
      if (query.accept !== undefined && !query.accept(agent)) return;
      found.push({ entry, item: { agent, isLatest: entry.id === latest.id } });
    });
  };

  for await (const [key, value] of kv.range(start, prefixEnd(VERSION_INDEX_PREFIX))) {
    const entry = decodeVersionIndexEntry(key, value);
    if (group.length > 0 && (group[0] as NamedVersionEntry).name !== entry.name) {
      await flush();
      if (found.length > query.limit) break;
    }
    group.push(entry);
  }
  await flush();
  if (found.length <= query.limit) return { items: found.map((f) => f.item), nextCursor: '' };
  const page = found.slice(0, query.limit);
  return { items: page.map((f) => f.item), nextCursor: encodeCursor((page[page.length - 1] as (typeof found)[number]).entry) };
}
