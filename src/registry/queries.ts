/**
 * Finding agents: one page of the agents matching every filter of a {@link FindQuery}, read
 * from the indexes of `keys.ts` so the cost grows with the scanned ranges, not with the agents
 * stored; the filters and page tokens checked and normalized.
 */
import { compareUtf8 } from '../storage/staging.js';
import type { KeyCursor, KeyValueReader } from '../storage/types.js';
import { HEALTH_VALUES } from './commands.js';
import {
  AGENT_PREFIX,
  agentKey,
  CAP_INDEX_PREFIX,
  capIndexPrefix,
  healthIndexPrefix,
  KEY_SEPARATOR,
  kindIndexPrefix,
  labelIndexPrefix,
  NAME_INDEX_PREFIX,
  prefixEnd,
  prefixEndAny,
} from './keys.js';
import { decodeAgentRecord, type RecordDecoder } from './records.js';
import type { Agent, FindPage, FindQuery, Health } from './types.js';

/** Results per page of a find when the query gives 0 or nothing. */
export const DEFAULT_PAGE_SIZE = 100;
/** Largest page size a find accepts; more is refused with a {@link QueryError}. */
export const MAX_PAGE_SIZE = 1000;

/**
 * Index keys read by the first range read of each index range a find intersects (its
 * capability, kind, labels and health): a seek past the keys read so far starts a new read.
 */
export const FIND_INTERSECT_CHUNK_KEYS = 64;
/** Most index keys one range read of an intersection reads: each read after the first doubles, up to this. */
export const FIND_INTERSECT_MAX_CHUNK_KEYS = 1024;
/**
 * A seek past a chunk of an intersected range from at least 3/4 of the way through it (the join
 * walked it, the range is dense) makes the next read of that range twice as long.
 */
const WALKED_CHUNK_NUMERATOR = 3;
const WALKED_CHUNK_DENOMINATOR = 4;

/**
 * A find was given a bad argument (gRPC `INVALID_ARGUMENT`); `field` names it in the API's
 * snake_case: `page_size`, `page_token`, `capability`, `kind`, `labels`, `health` or
 * `name_prefix`.
 */
export class QueryError extends Error {
  override readonly name = 'QueryError';
  /** The request field at fault, e.g. `page_size`. */
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** The filters of a find, checked and normalized (empty strings and `unspecified` health dropped). */
export interface Filters {
  readonly capability: string | undefined;
  /** Some capability must start with this. */
  readonly capabilityPrefix: string | undefined;
  readonly kind: string | undefined;
  readonly labels: readonly (readonly [string, string])[];
  readonly health: Health | undefined;
  readonly namePrefix: string | undefined;
  /** Only agents with a verified card signature. */
  readonly verifiedOnly: boolean;
}

/** What every scan of one find shares: the store view, the record decoder, the filters, the page size. */
interface Scan {
  readonly kv: KeyValueReader;
  readonly decode: RecordDecoder;
  readonly filters: Filters;
  readonly pageSize: number;
}

/**
 * One page of the agents matching every filter of `query`, ordered by id (UTF-8 byte order).
 * All filters must hold (AND); empty strings, empty maps and health `unspecified` mean "any".
 *
 * Reads indexes so the cost grows with the scanned ranges, not with the number of records:
 * every index an exact filter names (the capability, the kind, each label, the health) is an
 * id-ordered range, and with two or more they are intersected by a leapfrog join (each cursor
 * skips ahead to the furthest id of the others, so the cost follows the shortest range, or the
 * page when matches are dense, and only common ids are read as records); with one, that index;
 * with a capability prefix and none of those, the capability index under `idx/cap/<prefix>`
 * (read whole, ids sorted and de-duplicated: the cost grows with the matches);
 * with only a name prefix, the name index (`idx/name/<prefix>`, read whole, matching ids
 * sorted: the cost grows with the matches); with no filter, every record. Every filter is
 * checked on each record. Stops after `pageSize` matches plus one to know
 * whether another page follows; `nextPageToken` (base64url of the last id returned) resumes
 * strictly after that id, at any later revision. Each record is read when scanned, so a page
 * reflects every write before it started and possibly some after.
 *
 * Records are turned into agents by `decode` ({@link decodeAgentRecord} unless the caller
 * keeps a cache in front of it).
 *
 * Throws {@link QueryError} with `field` `page_size` (not an integer in
 * `[0, MAX_PAGE_SIZE]`), `page_token` (not a token this method returned), `capability`, `capability_prefix`,
 * `kind`, `labels`, `name_prefix` (not strings) or `health` (not a {@link Health}).
 */
export async function findAgents(kv: KeyValueReader, query: FindQuery, decode: RecordDecoder = decodeAgentRecord): Promise<FindPage> {
  const filters = parseFilters(query);
  const pageSize = parsePageSize(query.pageSize);
  const after = parsePageToken(query.pageToken);

  // Likely the most selective first (the first range is the one read in order): a capability,
  // then labels, then the kind and the health, which have few values.
  const prefixes: string[] = [];
  if (filters.capability !== undefined) prefixes.push(capIndexPrefix(filters.capability));
  for (const [k, v] of filters.labels) prefixes.push(labelIndexPrefix(k, v));
  if (filters.kind !== undefined) prefixes.push(kindIndexPrefix(filters.kind));
  if (filters.health !== undefined) prefixes.push(healthIndexPrefix(filters.health));
  const [only] = prefixes;
  let found: Agent[];
  const scan: Scan = { kv, decode, filters, pageSize };
  if (prefixes.length > 1) found = await scanIntersection(scan, prefixes, after);
  else if (only !== undefined) found = await scanIndex(scan, only, after);
  else if (filters.capabilityPrefix !== undefined) found = await scanSortedIds(scan, CAP_INDEX_PREFIX + filters.capabilityPrefix, after);
  else if (filters.namePrefix !== undefined) found = await scanSortedIds(scan, NAME_INDEX_PREFIX + filters.namePrefix, after);
  else found = await scanRecords(scan, after);
  if (found.length <= pageSize) return { agents: found, nextPageToken: '' };
  const agents = found.slice(0, pageSize);
  return { agents, nextPageToken: encodePageToken((agents[agents.length - 1] as Agent).id) };
}

/**
 * Intersects id-ordered index ranges (two or more `prefixes`) after `after` by a leapfrog join
 * (Veldhuizen, "Leapfrog Triejoin", ICDT 2014, one level): the first range is read in order,
 * and every other cursor in turn seeks to the id the last one stopped at; an id all of them
 * agree on is a common one. So the cost follows the first range's ids up to a page of common
 * ones, with one seek per other range where they disagree, and only common ids are read as
 * records (a chunk at a time); up to `pageSize + 1` matches.
 */
async function scanIntersection(scan: Scan, prefixes: readonly string[], after: string | undefined): Promise<Agent[]> {
  const cursors = prefixes.map((p) => new IndexCursor(scan.kv, p));
  try {
    return await leapfrog(scan, cursors, resumeKey(prefixes[0] as string, after));
  } finally {
    await Promise.all(cursors.map((c) => c.close()));
  }
}

/** The join of {@link scanIntersection} over `cursors`, the first read in order from `start`. */
async function leapfrog(scan: Scan, cursors: readonly IndexCursor[], start: string): Promise<Agent[]> {
  const first = cursors[0] as IndexCursor;
  await first.load(start);
  const page = new PageCollector(scan);
  let target = first.id;
  let agree = 1;
  for (let turn = 1; target !== undefined; turn++) {
    const c = cursors[turn % cursors.length] as IndexCursor;
    if (agree === cursors.length) {
      if (await page.add(target)) break;
      await c.next();
      target = c.id;
      agree = 1;
      continue;
    }
    await c.seek(target);
    const id = c.id;
    if (id === target) agree++;
    else {
      target = id;
      agree = 1;
    }
  }
  return page.finish();
}

/** Scans every record after `after`; up to `pageSize + 1` matches. */
async function scanRecords(scan: Scan, after: string | undefined): Promise<Agent[]> {
  const { kv, decode, filters, pageSize } = scan;
  const found: Agent[] = [];
  for await (const [key, value] of kv.range(resumeKey(AGENT_PREFIX, after), prefixEnd(AGENT_PREFIX))) {
    const agent = decode(value, key);
    if (agent.id === key.slice(AGENT_PREFIX.length) && matches(agent, filters)) found.push(agent);
    if (found.length > pageSize) break;
  }
  return found;
}

/**
 * Scans the id-ordered index range `prefix` after `after` (keys only, through an
 * {@link IndexCursor}), resolving hits to records a chunk at a time (one getMany per chunk); up
 * to `pageSize + 1` matches.
 */
async function scanIndex(scan: Scan, prefix: string, after: string | undefined): Promise<Agent[]> {
  const page = new PageCollector(scan);
  // The first read asks for what a page needs when every id matches: the page plus one.
  const cursor = new IndexCursor(scan.kv, prefix, scan.pageSize + 1);
  try {
    // An index key may outlive its record between two reads, and a separator inside a value
    // can make a key look like another prefix's: the record itself decides.
    for (await cursor.load(resumeKey(prefix, after)); cursor.id !== undefined; await cursor.next()) {
      if (await page.add(cursor.id)) break;
    }
  } finally {
    await cursor.close();
  }
  return page.finish();
}

/**
 * Finds by name prefix or capability prefix alone: reads every key under `base` (e.g.
 * `idx/name/<prefix>`, ordered by name, or `idx/cap/<prefix>`, ordered by capability), keeps the
 * ids after `after`, sorts them by id (an id under several capabilities once) and resolves them
 * in order; up to `pageSize + 1` matches. The cost grows with the keys under `base`.
 */
async function scanSortedIds(scan: Scan, base: string, after: string | undefined): Promise<Agent[]> {
  const ids: string[] = [];
  for await (const [key] of scan.kv.range(base, prefixEndAny(base))) {
    // Ids never contain the separator; a name might (if written around validation).
    const id = key.slice(key.lastIndexOf(KEY_SEPARATOR) + 1);
    if (after === undefined || compareUtf8(id, after) > 0) ids.push(id);
  }
  ids.sort(compareUtf8);
  const page = new PageCollector(scan);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i] as string;
    if (i > 0 && ids[i - 1] === id) continue;
    if (await page.add(id)) break;
  }
  return page.finish();
}

/**
 * Candidate ids in id order in, the matching records out: ids are held until there are as many
 * as the page still needs (plus one, to know whether another page follows), then resolved in one
 * getMany; up to `pageSize + 1` matches.
 */
class PageCollector {
  private readonly found: Agent[] = [];
  private chunk: string[] = [];

  constructor(private readonly scan: Scan) {}

  /** Adds a candidate; resolves `true` once the page (plus one) is full and no more are needed. */
  async add(id: string): Promise<boolean> {
    this.chunk.push(id);
    if (this.chunk.length < this.scan.pageSize + 1 - this.found.length) return false;
    await this.flush();
    return this.found.length > this.scan.pageSize;
  }

  /** Resolves the candidates still held and returns the matches. */
  async finish(): Promise<Agent[]> {
    if (this.chunk.length > 0) await this.flush();
    return this.found;
  }

  private async flush(): Promise<void> {
    const ids = this.chunk;
    this.chunk = [];
    await resolve(this.scan, ids, this.found);
  }
}

/** Reads the records of `ids` (one getMany) and appends those matching `filters` to `found`, up to `pageSize + 1`. */
async function resolve(scan: Scan, ids: readonly string[], found: Agent[]): Promise<void> {
  const { kv, decode, filters, pageSize } = scan;
  const keys = ids.map(agentKey);
  const values = await kv.getMany(keys);
  ids.forEach((id, i) => {
    const v = values[i];
    if (v === undefined || found.length > pageSize) return;
    const agent = decode(v, keys[i] as string);
    if (agent.id === id && matches(agent, filters) && found[found.length - 1]?.id !== id) found.push(agent);
  });
}

/**
 * A position in an id-ordered index range (`<prefix><id>` keys), read a chunk at a time, through
 * the store's {@link KeyCursor} when it has one: a read that moves on in order (`load`, `next`)
 * asks for {@link FIND_INTERSECT_CHUNK_KEYS} keys at first (or as many as the caller says) and
 * twice as many each time after, up to {@link FIND_INTERSECT_MAX_CHUNK_KEYS}; a seek past the keys read asks for
 * {@link FIND_INTERSECT_CHUNK_KEYS} from the id sought, twice as many as last time when the join
 * had walked most of the chunk it leaves (the range is dense). A cursor
 * never loaded reads nothing until its first `load` or `seek`. `id` is `undefined` once the
 * range is exhausted (or before the first read).
 */
export class IndexCursor {
  private ids: string[] = [];
  private at = 0;
  /** Whether a read happened (a cursor is loaded lazily, by its first seek). */
  private loaded = false;
  /** Keys the next read in order asks for. */
  private chunkKeys: number;
  /** Keys the next read of a seek past the chunk asks for. */
  private seekChunkKeys = FIND_INTERSECT_CHUNK_KEYS;
  /** Whether the range holds nothing after the ids read. */
  private ended = false;
  private readonly end: string;
  /** The store's open cursor over the range, when it offers one (else each read is a `range`). */
  private cursor: KeyCursor | undefined;

  /**
   * `firstChunkKeys`: the keys the first read in order asks for (then twice as many each time,
   * up to {@link FIND_INTERSECT_MAX_CHUNK_KEYS}); a scan that knows how many ids it needs asks
   * for that many.
   */
  constructor(
    private readonly kv: KeyValueReader,
    private readonly prefix: string,
    firstChunkKeys = FIND_INTERSECT_CHUNK_KEYS,
  ) {
    this.end = prefixEnd(prefix);
    this.chunkKeys = Math.max(1, Math.min(firstChunkKeys, FIND_INTERSECT_MAX_CHUNK_KEYS));
  }

  /** The id at the cursor, or `undefined` past the end. */
  get id(): string | undefined {
    return this.ids[this.at];
  }

  /** Reads the ids from key `gte` on (one chunk, read in order) and moves the cursor to the first. */
  async load(gte: string): Promise<void> {
    await this.read(gte, this.growChunk(), true);
  }

  /** The size of the next read in order, doubling the one after it. */
  private growChunk(): number {
    const limit = this.chunkKeys;
    this.chunkKeys = Math.min(2 * limit, FIND_INTERSECT_MAX_CHUNK_KEYS);
    return limit;
  }

  /** Reads up to `limit` ids from key `gte` on; `seek` false: the store's cursor is already there. */
  private async read(gte: string, limit: number, seek: boolean): Promise<void> {
    this.ids = [];
    this.at = 0;
    if (this.kv.cursor !== undefined) {
      if (this.cursor === undefined) this.cursor = this.kv.cursor(gte, this.end);
      else if (seek) this.cursor.seek(gte);
      for (const key of await this.cursor.next(limit)) this.ids.push(key.slice(this.prefix.length));
    } else {
      for await (const [key] of this.kv.range(gte, this.end, limit)) this.ids.push(key.slice(this.prefix.length));
    }
    this.loaded = true;
    this.ended = this.ids.length < limit;
  }

  /** Moves to the next id. */
  async next(): Promise<void> {
    const current = this.ids[this.at];
    this.at++;
    if (this.at >= this.ids.length && !this.ended && current !== undefined) await this.read(this.prefix + current + KEY_SEPARATOR, this.growChunk(), false);
  }

  /** Moves to the first id at or after `id` (UTF-8 byte order, the order of the keys). */
  async seek(id: string): Promise<void> {
    const last = this.ids[this.ids.length - 1];
    if (last !== undefined && compareUtf8(last, id) >= 0) {
      while (compareUtf8(this.ids[this.at] as string, id) < 0) this.at++;
      return;
    }
    if (this.loaded && this.ended) {
      this.at = this.ids.length;
      return;
    }
    // A chunk the join walked through to near its end (the range is dense among the others'
    // ids: what lies ahead will be read too) makes the next read twice as long; one it leapt
    // out of early (the ids skipped were read for nothing) starts again from the least.
    const walked = this.ids.length > 0 && this.at * WALKED_CHUNK_DENOMINATOR >= this.ids.length * WALKED_CHUNK_NUMERATOR;
    this.seekChunkKeys = walked ? Math.min(2 * this.seekChunkKeys, FIND_INTERSECT_MAX_CHUNK_KEYS) : FIND_INTERSECT_CHUNK_KEYS;
    await this.read(this.prefix + id, this.seekChunkKeys, true);
  }

  /** Releases the store's cursor, if one was opened. */
  async close(): Promise<void> {
    await this.cursor?.close();
  }
}

/** The first key of a scan of `prefix` that resumes strictly after id `after`. */
export function resumeKey(prefix: string, after: string | undefined): string {
  return after === undefined ? prefix : prefix + after + KEY_SEPARATOR;
}

/** Whether `agent` satisfies every filter (labels match exactly, key and value). */
export function matches(agent: Agent, filters: Filters): boolean {
  if (filters.capability !== undefined && !agent.capabilities.includes(filters.capability)) return false;
  const capabilityPrefix = filters.capabilityPrefix;
  if (capabilityPrefix !== undefined && !agent.capabilities.some((c) => c.startsWith(capabilityPrefix))) return false;
  if (filters.kind !== undefined && agent.kind !== filters.kind) return false;
  if (filters.health !== undefined && agent.health !== filters.health) return false;
  if (filters.namePrefix !== undefined && !agent.name.startsWith(filters.namePrefix)) return false;
  if (filters.verifiedOnly && agent.verifiedKeyId === undefined) return false;
  for (const [key, value] of filters.labels) {
    if (!Object.hasOwn(agent.labels, key) || agent.labels[key] !== value) return false;
  }
  return true;
}

export function parseFilters(query: FindQuery): Filters {
  if (typeof query !== 'object' || query === null) throw new QueryError('query', 'must be an object');
  const { capability, capabilityPrefix, kind, labels, health, namePrefix, verifiedOnly } = query;
  if (verifiedOnly !== undefined && typeof verifiedOnly !== 'boolean') throw new QueryError('verified_only', 'must be a boolean');
  if (capability !== undefined && typeof capability !== 'string') throw new QueryError('capability', 'must be a string');
  if (capabilityPrefix !== undefined && typeof capabilityPrefix !== 'string') throw new QueryError('capability_prefix', 'must be a string');
  if (kind !== undefined && typeof kind !== 'string') throw new QueryError('kind', 'must be a string');
  if (namePrefix !== undefined && typeof namePrefix !== 'string') throw new QueryError('name_prefix', 'must be a string');
  if (health !== undefined && !(HEALTH_VALUES as readonly unknown[]).includes(health)) {
    throw new QueryError('health', `must be one of ${HEALTH_VALUES.join(', ')}`);
  }
  const labelFilters: [string, string][] = [];
  if (labels !== undefined) {
    if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
      throw new QueryError('labels', 'must be a map of strings');
    }
    for (const [key, value] of Object.entries(labels)) {
      if (typeof value !== 'string') throw new QueryError('labels', `value of ${JSON.stringify(key)} must be a string`);
      labelFilters.push([key, value]);
    }
  }
  return {
    capability: capability === undefined || capability === '' ? undefined : capability,
    capabilityPrefix: capabilityPrefix === undefined || capabilityPrefix === '' ? undefined : capabilityPrefix,
    kind: kind === undefined || kind === '' ? undefined : kind,
    labels: labelFilters,
    // `unspecified` is the proto default: no health filter, like an empty string.
    health: health === undefined || health === 'unspecified' ? undefined : health,
    namePrefix: namePrefix === undefined || namePrefix === '' ? undefined : namePrefix,
    verifiedOnly: verifiedOnly === true,
  };
}

export function parsePageSize(pageSize: number | undefined): number {
  if (pageSize === undefined || pageSize === 0) return DEFAULT_PAGE_SIZE;
  if (typeof pageSize !== 'number' || !Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE) {
    throw new QueryError('page_size', `must be an integer in [0, ${MAX_PAGE_SIZE}], got ${String(pageSize)}`);
  }
  return pageSize;
}

/** The page token of a page ending at `id`: base64url of its UTF-8 bytes. */
export function encodePageToken(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

/** The id a page token resumes after, or `undefined` for the first page. */
export function parsePageToken(token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]+$/.test(token)) {
    throw new QueryError('page_token', 'malformed page token');
  }
  const id = Buffer.from(token, 'base64url').toString('utf8');
  if (id.length === 0 || encodePageToken(id) !== token) throw new QueryError('page_token', 'malformed page token');
  return id;
}
