/**
 * Runs a keyword search over the text index of `text-index.ts`: one read of the statistics and
 * document frequencies, one capped range scan per query term, BM25 scores summed in memory,
 * results ranked by score descending then id ascending, records resolved a page at a time and
 * checked against the find filters.
 *
 * Two plans, the cheaper chosen per query:
 *
 * - **Filter first**: when an id-ordered filter index range (a capability, kind or label) holds at
 *   most {@link SEARCH_FILTER_FIRST_MAX_IDS} agents, those records are read and scored exactly from
 *   their own text (the same numbers the postings hold), so a selective filter never loses a match
 *   to the per-term cap.
 * - **Terms first**: otherwise, each term's best postings (at most `MAX_POSTINGS_PER_TERM`, and
 *   `MAX_POSTINGS_PER_SEARCH` over all terms, see `postingsPerTerm`) are read;
 *   candidates are ranked and resolved in rank order until a page (plus one) matches the filters.
 *
 * A page token carries the score and id of the page's last result; the next page holds the
 * results ranked strictly after it, recomputed at the later read. When writes change the index
 * between two pages, scores may shift: a result may then be seen twice or not at all, but the
 * paging still ends and each page is ranked.
 */
import type { KeyValueReader } from '../storage/types.js';
import { decodeCount } from './counters.js';
import {
  agentKey,
  CAP_INDEX_PREFIX,
  capIndexKey,
  capIndexPrefix,
  healthIndexKey,
  KEY_SEPARATOR,
  kindIndexKey,
  kindIndexPrefix,
  labelIndexKey,
  labelIndexPrefix,
  prefixEnd,
  prefixEndAny,
} from './keys.js';
import { matches, parseFilters, parsePageSize, QueryError } from './queries.js';
import { decodeAgentRecord, type RecordDecoder } from './records.js';
import type { Agent, SearchPage, SearchQuery } from './types.js';
import {
  bm25Idf,
  bm25TermScore,
  compareRanked,
  decodeSearchPageToken,
  encodeSearchPageToken,
  decodePosting,
  documentTermsOf,
  isAfter,
  postingsPerTerm,
  parsePostingKey,
  queryTerms,
  type SearchPosition,
  TEXT_DOCUMENTS_KEY,
  TEXT_LENGTH_KEY,
  textDfKey,
  textPostingPrefix,
  weightedTf,
} from './text-index.js';

/**
 * Largest filter index range read whole for the filter-first plan (see the module comment).
 * Above it the terms-first plan runs, and the filters are checked on its candidates.
 */
export const SEARCH_FILTER_FIRST_MAX_IDS = 200;

/** Ranked candidates checked (filter index keys, then records) per read while walking them. */
export const SEARCH_RESOLVE_CHUNK = 256;

/** One ranked result. */
export interface ScoredAgent {
  readonly agent: Agent;
  /** BM25 score (> 0), summed over the query's terms. */
  readonly score: number;
}

/** What a search needs from the state machine. */
export interface SearchContext {
  readonly kv: KeyValueReader;
  /** Reads the records of `ids` (absent ones `undefined`), in order. */
  readonly records: (ids: readonly string[]) => Promise<(Agent | undefined)[]>;
  /** Whether an agent satisfies every find filter. */
  readonly matches: (agent: Agent) => boolean;
  /**
   * Index ranges every match lies in (e.g. the capability filter's), tried in order for the
   * filter-first plan: the first holding at most {@link SEARCH_FILTER_FIRST_MAX_IDS} keys drives
   * it. Each key of a range ends in `\x00<id>` (or is `<prefix><id>`). Empty: no such filter.
   */
  readonly filterRanges: readonly FilterRange[];
  /**
   * For each exact-match filter (capability, kind, label, health): the index key an agent id
   * has when it satisfies it. Ranked candidates are checked against these keys (one `getMany`
   * per chunk, empty values) before their records are read.
   */
  readonly memberKeys: readonly ((id: string) => string)[];
  /** The end of a term's posting range (exclusive). */
  readonly prefixEnd: (prefix: string) => string;
}

/** An index range of a filter: keys `gte <= key < lt`, each naming one agent id. */
export interface FilterRange {
  readonly gte: string;
  readonly lt: string;
  /** The agent id of a key of the range. */
  readonly idOf: (key: string) => string;
}

/**
 * The results ranked after `after` (from the top when `undefined`), up to `pageSize + 1`, so the
 * caller knows whether another page follows. `terms` are distinct (see `queryTerms`).
 */
export async function searchRanked(ctx: SearchContext, terms: readonly string[], pageSize: number, after: SearchPosition | undefined): Promise<ScoredAgent[]> {
  const stats = await ctx.kv.getMany([TEXT_DOCUMENTS_KEY, TEXT_LENGTH_KEY, ...terms.map(textDfKey)]);
  const documents = decodeCount(stats[0]);
  if (documents === 0) return [];
  const avgLength = decodeCount(stats[1]) / documents;
  const idfs = terms.map((_, i) => bm25Idf(documents, decodeCount(stats[i + 2])));

  for (const range of ctx.filterRanges) {
    const ids = await readIds(ctx.kv, range, SEARCH_FILTER_FIRST_MAX_IDS + 1);
    if (ids !== undefined) return filterFirst(ctx, ids, terms, idfs, avgLength, pageSize, after);
  }

  // Terms first: term by term, in query order, so every node and every page sums alike.
  const scores = new Map<string, number>();
  const perTerm = postingsPerTerm(terms.length);
  for (let t = 0; t < terms.length; t++) {
    const prefix = textPostingPrefix(terms[t] as string);
    const idf = idfs[t] as number;
    for await (const [key, value] of ctx.kv.range(prefix, ctx.prefixEnd(prefix), perTerm)) {
      const at = parsePostingKey(key, prefix);
      const posting = decodePosting(value);
      if (at === undefined || posting === undefined) continue;
      const s = bm25TermScore(idf, weightedTf(posting.tfs), posting.docLength, avgLength);
      scores.set(at.id, (scores.get(at.id) ?? 0) + s);
    }
  }
  const ranked: { id: string; score: number }[] = [];
  for (const [id, score] of scores) if (after === undefined || isAfter(score, id, after)) ranked.push({ id, score });
  ranked.sort(compareRanked);

  const found: ScoredAgent[] = [];
  for (let next = 0; next < ranked.length && found.length <= pageSize; ) {
    let chunk = ranked.slice(next, next + Math.max(SEARCH_RESOLVE_CHUNK, pageSize + 1 - found.length));
    next += chunk.length;
    if (ctx.memberKeys.length > 0) {
      // Index keys first: cheap to read, and they spare the records of candidates filtered out.
      const keys = chunk.flatMap((c) => ctx.memberKeys.map((key) => key(c.id)));
      const present = await ctx.kv.getMany(keys);
      const k = ctx.memberKeys.length;
      chunk = chunk.filter((_, i) => present.slice(i * k, (i + 1) * k).every((v) => v !== undefined));
      if (chunk.length === 0) continue;
    }
    const agents = await ctx.records(chunk.map((c) => c.id));
    chunk.forEach((c, i) => {
      const agent = agents[i];
      if (agent !== undefined && found.length <= pageSize && ctx.matches(agent)) found.push({ agent, score: c.score });
    });
  }
  return found;
}

/** The distinct ids of a filter range, or `undefined` when it holds more than `limit - 1` keys. */
async function readIds(kv: KeyValueReader, range: FilterRange, limit: number): Promise<string[] | undefined> {
  const ids = new Set<string>();
  let keys = 0;
  for await (const [key] of kv.range(range.gte, range.lt, limit)) {
    ids.add(range.idOf(key));
    keys++;
  }
  return keys >= limit ? undefined : [...ids];
}

/** Scores the records of `ids` from their own text; keeps those matching the filters and some term. */
async function filterFirst(
  ctx: SearchContext,
  ids: readonly string[],
  terms: readonly string[],
  idfs: readonly number[],
  avgLength: number,
  pageSize: number,
  after: SearchPosition | undefined,
): Promise<ScoredAgent[]> {
  const agents = await ctx.records(ids);
  const ranked: ScoredAgent[] = [];
  agents.forEach((agent, i) => {
    if (agent === undefined || agent.id !== ids[i] || !ctx.matches(agent)) return;
    const doc = documentTermsOf(agent);
    let score = 0;
    let hit = false;
    terms.forEach((term, t) => {
      const tfs = doc.terms.get(term);
      if (tfs === undefined) return;
      hit = true;
      score += bm25TermScore(idfs[t] as number, weightedTf(tfs), doc.length, avgLength);
    });
    if (hit && (after === undefined || isAfter(score, agent.id, after))) ranked.push({ agent, score });
  });
  ranked.sort((a, b) => compareRanked({ score: a.score, id: a.agent.id }, { score: b.score, id: b.agent.id }));
  return ranked.slice(0, pageSize + 1);
}

/**
 * One page of a keyword search (`Registry.Search`): the agents matching some word of
 * `query.query` and every find filter, ranked by BM25 (score descending, then id ascending), from
 * the text index (see the module comment for the plans and their cost). `nextPageToken` carries
 * the score and id of the page's last result; empty on the last page.
 *
 * Throws {@link QueryError} with `field` `query` (see `queryTerms`), `page_token` (not a token a
 * search returned), `page_size` or a filter's field, as {@link findAgents} does. Records are
 * turned into agents by `decode`, as in {@link findAgents}.
 */
export async function searchAgents(kv: KeyValueReader, query: SearchQuery, decode: RecordDecoder = decodeAgentRecord): Promise<SearchPage> {
  if (typeof query !== 'object' || query === null) throw new QueryError('query', 'must be an object');
  const filters = parseFilters(query);
  const pageSize = parsePageSize(query.pageSize);
  if (typeof query.query !== 'string') throw new QueryError('query', 'must be a string');
  let terms: string[];
  try {
    terms = queryTerms(query.query);
  } catch (err) {
    throw new QueryError('query', (err as Error).message);
  }
  let after: SearchPosition | undefined;
  if (query.pageToken !== undefined && query.pageToken !== '') {
    try {
      after = decodeSearchPageToken(query.pageToken);
    } catch (err) {
      throw new QueryError('page_token', (err as Error).message);
    }
  }
  const filterRanges: FilterRange[] = [];
  const exact = (prefix: string): FilterRange => ({ gte: prefix, lt: prefixEnd(prefix), idOf: (key) => key.slice(prefix.length) });
  if (filters.capability !== undefined) filterRanges.push(exact(capIndexPrefix(filters.capability)));
  for (const [key, value] of filters.labels) filterRanges.push(exact(labelIndexPrefix(key, value)));
  if (filters.kind !== undefined) filterRanges.push(exact(kindIndexPrefix(filters.kind)));
  if (filters.capabilityPrefix !== undefined) {
    const base = CAP_INDEX_PREFIX + filters.capabilityPrefix;
    filterRanges.push({ gte: base, lt: prefixEndAny(base), idOf: (key) => key.slice(key.lastIndexOf(KEY_SEPARATOR) + 1) });
  }
  const memberKeys: ((id: string) => string)[] = [];
  const { capability, kind, health } = filters;
  if (capability !== undefined) memberKeys.push((id) => capIndexKey(capability, id));
  if (kind !== undefined) memberKeys.push((id) => kindIndexKey(kind, id));
  for (const [key, value] of filters.labels) memberKeys.push((id) => labelIndexKey(key, value, id));
  if (health !== undefined) memberKeys.push((id) => healthIndexKey(health, id));
  const ctx: SearchContext = {
    kv,
    filterRanges,
    memberKeys,
    prefixEnd,
    matches: (agent) => matches(agent, filters),
    records: async (ids) => {
      const keys = ids.map(agentKey);
      const values = await kv.getMany(keys);
      return values.map((v, i) => {
        if (v === undefined) return undefined;
        const agent = decode(v, keys[i] as string);
        return agent.id === ids[i] ? agent : undefined;
      });
    },
  };
  const found = await searchRanked(ctx, terms, pageSize, after);
  const results = found.slice(0, pageSize);
  const last = results[results.length - 1];
  const nextPageToken = found.length > pageSize && last !== undefined ? encodeSearchPageToken({ score: last.score, id: last.agent.id }) : '';
  return { results, nextPageToken };
}
