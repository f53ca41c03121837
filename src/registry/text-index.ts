/**
 * The registry's keyword search: a tokenizer, the inverted index the state machine keeps in its
 * own key space (in the same batch as the records), and BM25 ranking (Robertson & Zaragoza,
 * "The Probabilistic Relevance Framework: BM25 and Beyond", 2009; field weights in the simple
 * BM25F form of Robertson, Zaragoza & Taylor, "Simple BM25 extension to multiple weighted
 * fields", CIKM 2004: a term's frequency is the weighted sum of its frequencies per field).
 *
 * Everything here is pure: the state machine calls {@link textIndexChange} while it applies a
 * command and stages what it returns; a search reads postings with one range scan per query
 * term ({@link textPostingPrefix}) and scores them with {@link bm25TermScore}.
 *
 * ## Key layout (all in the state machine's key space, so snapshots carry them)
 *
 * | key                                          | value                                           |
 * |----------------------------------------------|-------------------------------------------------|
 * | `text/p/<term>\x00<rank, 4 hex>\x00<id>`     | posting: msgpackr `[docLength, tf per field…]`  |
 * | `text/df/<term>`                             | document frequency of `term`, msgpackr number   |
 * | `text/n`                                     | indexed documents (agents), msgpackr number     |
 * | `text/len`                                   | their total length in tokens, msgpackr number   |
 *
 * The counters (`text/df/…`, `text/n`, `text/len`) are kept as in `counters.ts`.
 *
 * `rank` is `0xffff -` {@link postingImpact}: a term's postings come out of a range scan best
 * first (by their BM25 term weight at the reference length), so a scan capped at
 * {@link MAX_POSTINGS_PER_TERM} keeps the best postings of a very common term. The impact
 * depends only on the document itself (its term frequencies and length, integer arithmetic),
 * never on other documents, so a posting key never has to be rewritten when others change, and
 * the key of an old posting is recomputed from the old record when it is removed. Terms never
 * contain `\x00` or `/` (both are separators), so one term's prefix never covers another's.
 *
 * Apply stays deterministic: tokenizing is defined on code points with fixed tables (no locale,
 * no Unicode-version-dependent classes), and the index holds integers only; floating point is
 * used only when a search scores.
 */
import type { WriteBatch } from '../storage/types.js';
import type { CounterDeltas } from './counters.js';
import type { RecordIndex } from './records.js';
import type { Agent } from './types.js';

/** BM25 term-frequency saturation `k1` (the usual 1.2). */
export const BM25_K1 = 1.2;
/** BM25 length normalization `b` (the usual 0.75). */
export const BM25_B = 0.75;

/**
 * Longest token kept, in code points; a longer run of word characters is cut to its first
 * `MAX_TOKEN_CODE_POINTS` (so a search for the same long word still finds it).
 */
export const MAX_TOKEN_CODE_POINTS = 64;
/** Tokens indexed per field of one agent; later tokens of a long description are not indexed. */
export const MAX_TOKENS_PER_FIELD = 1024;
/** Longest search query accepted, in UTF-16 code units; more is `INVALID_ARGUMENT` on `query`. */
export const MAX_SEARCH_QUERY_CHARS = 1024;
/** Distinct terms a search query may hold; more is `INVALID_ARGUMENT` on `query`. */
export const MAX_SEARCH_QUERY_TERMS = 16;
/**
 * Most postings read for one query term (the best by impact, see the module comment). A term
 * found in more agents than this (e.g. `mcp` in an MCP registry) contributes only to these; they
 * are the ones where it weighs most.
 */
export const MAX_POSTINGS_PER_TERM = 2000;
/**
 * Most postings read for one search, over all its terms: each term reads at most
 * `min(MAX_POSTINGS_PER_TERM, floor(MAX_POSTINGS_PER_SEARCH / terms))`, so a search costs at
 * most this many posting reads (about 1.5 µs each on LevelDB), whatever the number of agents.
 */
export const MAX_POSTINGS_PER_SEARCH = 4000;

/** The postings read per term of a query of `terms` terms (see {@link MAX_POSTINGS_PER_SEARCH}). */
export function postingsPerTerm(terms: number): number {
  return Math.max(1, Math.min(MAX_POSTINGS_PER_TERM, Math.floor(MAX_POSTINGS_PER_SEARCH / Math.max(1, terms))));
}
/** The document length (in tokens) at which {@link postingImpact} evaluates a posting's weight. */
export const IMPACT_REFERENCE_LENGTH = 32;
/** Scale of {@link postingImpact}: impacts are integers in `[0, IMPACT_SCALE)`. */
export const IMPACT_SCALE = 0x10000;

/**
 * The indexed fields of an agent, in the order of a posting's term frequencies, with their
 * BM25F weights (integers, so impacts stay integer arithmetic): a name match weighs three
 * description mentions, a capability (e.g. `skill:sql-query`, `tag:database`) two.
 */
export const TEXT_FIELDS = [
  { field: 'name', weight: 3 },
  { field: 'capabilities', weight: 2 },
  { field: 'description', weight: 1 },
] as const;

/** The name of an indexed field. */
export type TextField = (typeof TEXT_FIELDS)[number]['field'];

/** Prefix of the postings: `text/p/<term>\x00<rank>\x00<id>`. */
export const TEXT_POSTING_PREFIX = 'text/p/';
/** Prefix of the document frequencies: `text/df/<term>`. */
export const TEXT_DF_PREFIX = 'text/df/';
/** Key of the number of indexed documents (every agent is one). */
export const TEXT_DOCUMENTS_KEY = 'text/n';
/** Key of the total length of the indexed documents, in tokens. */
export const TEXT_LENGTH_KEY = 'text/len';
/** Prefix of everything of the text index. */
export const TEXT_PREFIX = 'text/';

const SEP = '\x00';

/** Prefix of every posting of `term`, best first: `text/p/<term>\x00`. */
export function textPostingPrefix(term: string): string {
  return TEXT_POSTING_PREFIX + term + SEP;
}

/** The posting key of agent `id` for `term` at `impact`. */
export function textPostingKey(term: string, impact: number, id: string): string {
  return textPostingPrefix(term) + (IMPACT_SCALE - 1 - impact).toString(16).padStart(4, '0') + SEP + id;
}

/** Splits a posting key (under `prefix` = {@link textPostingPrefix}) into its impact and id. */
export function parsePostingKey(key: string, prefix: string): { impact: number; id: string } | undefined {
  const rank = Number.parseInt(key.slice(prefix.length, prefix.length + 4), 16);
  if (!Number.isInteger(rank) || key.charAt(prefix.length + 4) !== SEP) return undefined;
  return { impact: IMPACT_SCALE - 1 - rank, id: key.slice(prefix.length + 5) };
}

/** The key of the document frequency of `term`. */
export function textDfKey(term: string): string {
  return TEXT_DF_PREFIX + term;
}

/** Whether code point `c` separates tokens (fixed ranges, see {@link tokenize}). */
function isSeparator(c: number): boolean {
  if (c < 0x80) return !((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a));
  return (
    (c >= 0x80 && c <= 0xbf) || // C1 controls, no-break space, Latin-1 punctuation and symbols
    c === 0xd7 || // ×
    c === 0xf7 || // ÷
    (c >= 0x2000 && c <= 0x206f) || // General Punctuation (spaces, dashes, quotes)
    (c >= 0x2e00 && c <= 0x2e7f) || // Supplemental Punctuation
    (c >= 0x3000 && c <= 0x303f) || // CJK Symbols and Punctuation (ideographic space, 、。)
    c === 0xfeff || // zero-width no-break space (BOM)
    (c >= 0xff01 && c <= 0xff0f) // fullwidth ASCII punctuation
  );
}

/** `1` for each ASCII code point that separates tokens ({@link isSeparator} below 0x80). */
const ASCII_SEPARATOR = Uint8Array.from({ length: 0x80 }, (_, c) => (isSeparator(c) ? 1 : 0));

/**
 * Folds the case of one code point: ASCII `A-Z` and the Latin-1 Supplement / Latin Extended-A
 * and -B letters (U+00C0–U+024F, whose lower-case mappings have not changed since Unicode 1.1);
 * others are kept, so every node folds alike whatever its Node/ICU version.
 */
function fold(ch: string, c: number): string {
  if (c >= 0x41 && c <= 0x5a) return String.fromCharCode(c + 0x20);
  if (c >= 0xc0 && c <= 0x24f) return ch.toLowerCase();
  return ch;
}

/** Shortest token {@link stem} changes. */
export const MIN_STEM_CHARS = 4;

/**
 * Harman's "S" stemmer (D. Harman, "How effective is suffixing?", JASIS 1991), on ASCII tokens
 * of at least {@link MIN_STEM_CHARS} letters: `-ies` → `-y` (not after `a` or `e`), `-es` → `-e`
 * (not after `a`, `e` or `o`), `-s` → `` (not after `u` or `s`); so `databases` and `database`
 * are one term. Applied alike to the index and to queries.
 */
export function stem(token: string): string {
  if (token.length < MIN_STEM_CHARS || !token.endsWith('s') || !/^[a-z0-9]+$/.test(token)) return token;
  if (token.endsWith('ies') && !token.endsWith('eies') && !token.endsWith('aies')) return token.slice(0, -3) + 'y';
  if (token.endsWith('es') && !token.endsWith('aes') && !token.endsWith('ees') && !token.endsWith('oes')) return token.slice(0, -1);
  if (!token.endsWith('us') && !token.endsWith('ss')) return token.slice(0, -1);
  return token;
}

/**
 * Splits `text` into index terms: case-folded runs of word characters, plural `s` removed
 * ({@link stem}). Separators are every
 * ASCII character but letters and digits (so `.`, `/`, `-`, `_`, `:`, `@`, white space and
 * punctuation: `io.github.apache/iotdb-mcp-server` gives `io github apache iotdb mcp server`),
 * plus fixed ranges of Unicode spaces and punctuation (U+0080–U+00BF, `×`, `÷`, U+2000–U+206F,
 * U+2E00–U+2E7F, U+3000–U+303F, U+FEFF, U+FF01–U+FF0F). Empty tokens are dropped; a token is cut
 * to {@link MAX_TOKEN_CODE_POINTS}; at most `maxTokens` tokens are returned (in text order, with
 * repeats). Deterministic: no locale, no regex Unicode classes.
 */
export function tokenize(text: string, maxTokens = MAX_TOKENS_PER_FIELD): string[] {
  // One pass over UTF-16 units: a token is cut out of `text` with one slice (not built a code
  // point at a time), and folded with `toLowerCase` when it is ASCII (which then changes `A-Z`
  // only) or code point by code point with `fold` when it is not.
  const out: string[] = [];
  const n = text.length;
  let start = 0; // UTF-16 index of the current token's first unit
  let cut = 0; // UTF-16 index just past its MAX_TOKEN_CODE_POINTS-th code point
  let points = 0; // its code points so far (0: no token)
  let ascii = true;
  for (let i = 0; i < n; ) {
    const c = text.codePointAt(i) as number;
    const width = c > 0xffff ? 2 : 1;
    if (c < 0x80 ? ASCII_SEPARATOR[c] === 1 : isSeparator(c)) {
      if (points > 0) {
        out.push(stem(foldToken(text.slice(start, cut), ascii)));
        if (out.length >= maxTokens) return out;
        points = 0;
      }
    } else {
      if (points === 0) {
        start = i;
        ascii = true;
      }
      if (c >= 0x80) ascii = false;
      if (points < MAX_TOKEN_CODE_POINTS) cut = i + width;
      points++;
    }
    i += width;
  }
  if (points > 0 && out.length < maxTokens) out.push(stem(foldToken(text.slice(start, cut), ascii)));
  return out;
}

/** Case-folds one token ({@link fold} per code point); `ascii` says it holds ASCII only. */
function foldToken(raw: string, ascii: boolean): string {
  if (ascii) return raw.toLowerCase();
  let out = '';
  for (const ch of raw) out += fold(ch, ch.codePointAt(0) as number);
  return out;
}

/** The indexed text of one field of `agent`. */
function fieldText(agent: Pick<Agent, 'name' | 'description' | 'capabilities'>, field: TextField): string {
  switch (field) {
    case 'name':
      return agent.name;
    case 'capabilities':
      return agent.capabilities.join(' ');
    case 'description':
      return agent.description;
  }
}

/** What the index holds of one agent: its length in tokens and each term's frequency per field. */
export interface DocumentTerms {
  /** Tokens over all fields (each field capped at {@link MAX_TOKENS_PER_FIELD}). */
  readonly length: number;
  /** Term → frequency in each field, in {@link TEXT_FIELDS} order. Insertion order = first occurrence. */
  readonly terms: ReadonlyMap<string, readonly number[]>;
}

/** Tokenizes the indexed fields of `agent` ({@link TEXT_FIELDS}). */
export function documentTermsOf(agent: Pick<Agent, 'name' | 'description' | 'capabilities'>): DocumentTerms {
  const terms = new Map<string, number[]>();
  let length = 0;
  TEXT_FIELDS.forEach(({ field }, f) => {
    const tokens = tokenize(fieldText(agent, field));
    length += tokens.length;
    for (const t of tokens) {
      let tfs = terms.get(t);
      if (tfs === undefined) {
        tfs = TEXT_FIELDS.map(() => 0);
        terms.set(t, tfs);
      }
      tfs[f] = (tfs[f] as number) + 1;
    }
  });
  return { length, terms };
}

/** The field-weighted term frequency `Σ weight_f · tf_f` (BM25F). */
export function weightedTf(tfs: readonly number[]): number {
  let w = 0;
  for (let f = 0; f < TEXT_FIELDS.length; f++) w += (TEXT_FIELDS[f] as { weight: number }).weight * (tfs[f] ?? 0);
  return w;
}

/**
 * A posting's impact: its BM25 term weight without the idf, `tf / (tf + k1·(1 − b + b·dl/L))`
 * with `L` = {@link IMPACT_REFERENCE_LENGTH}, scaled to an integer in `[0, IMPACT_SCALE)`.
 * Integer arithmetic only (k1 = 12/10, k1·(1 − b) = 3/10, k1·b = 9/10), so every node computes
 * the same key. Orders a term's postings for capped reads; scores use the real average length.
 */
export function postingImpact(tfs: readonly number[], docLength: number): number {
  const tf = weightedTf(tfs);
  const L = IMPACT_REFERENCE_LENGTH;
  const num = 10 * tf * L;
  // tf / (tf + 0.3 + 0.9·dl/L), both sides multiplied by 10·L.
  const den = 10 * tf * L + 3 * L + 9 * docLength;
  return Math.min(IMPACT_SCALE - 1, Math.floor(((IMPACT_SCALE - 1) * num) / den));
}

/**
 * Bytes of a posting's value: `docLength` then the term frequency of each of
 * {@link TEXT_FIELDS}, each a little-endian uint16 (a field holds at most
 * {@link MAX_TOKENS_PER_FIELD} tokens, so every value fits). Fixed width, so a search decodes a
 * posting with a few byte reads instead of a msgpack decode.
 */
export const POSTING_VALUE_BYTES = 2 * (TEXT_FIELDS.length + 1);

/** Encodes a posting's value: `[docLength, tf per field…]` as {@link POSTING_VALUE_BYTES} bytes. */
export function encodePosting(docLength: number, tfs: readonly number[]): Uint8Array {
  const out = new Uint8Array(POSTING_VALUE_BYTES);
  [docLength, ...tfs].forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`posting value ${v} does not fit 16 bits`);
    out[2 * i] = v & 0xff;
    out[2 * i + 1] = v >>> 8;
  });
  return out;
}

/** Decodes a posting's value, or `undefined` when it is not one. */
export function decodePosting(value: Uint8Array): { docLength: number; tfs: number[] } | undefined {
  if (value.length !== POSTING_VALUE_BYTES) return undefined;
  const tfs: number[] = [];
  for (let i = 1; i <= TEXT_FIELDS.length; i++) tfs.push((value[2 * i] as number) | ((value[2 * i + 1] as number) << 8));
  return { docLength: (value[0] as number) | ((value[1] as number) << 8), tfs };
}

/** The postings of `agent`: key → value, in term order of first occurrence. */
export function postingsOf(agent: Pick<Agent, 'id' | 'name' | 'description' | 'capabilities'>, doc = documentTermsOf(agent)): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [term, tfs] of doc.terms) out.set(textPostingKey(term, postingImpact(tfs, doc.length), agent.id), encodePosting(doc.length, tfs));
  return out;
}

/** What replacing one record by another does to the text index. */
export interface TextIndexChange {
  /** Posting keys to write (new or changed), with their values. */
  readonly puts: ReadonlyMap<string, Uint8Array>;
  /** Posting keys to delete. */
  readonly dels: readonly string[];
  /** Change of each term's document frequency (non-zero entries only). */
  readonly df: ReadonlyMap<string, number>;
  /** Change of the number of indexed documents (−1, 0 or +1). */
  readonly documents: number;
  /** Change of the total length of the indexed documents, in tokens. */
  readonly length: number;
}

/**
 * The index change of replacing `before` by `after` (either may be absent: a register creates,
 * a deregister or expiry deletes). Unchanged postings are neither deleted nor rewritten.
 * Deterministic; the state machine stages the result in the record's batch.
 */
export function textIndexChange(before: Agent | undefined, after: Agent | undefined): TextIndexChange {
  const oldDoc = before === undefined ? undefined : documentTermsOf(before);
  const newDoc = after === undefined ? undefined : documentTermsOf(after);
  const oldPostings = before === undefined ? new Map<string, Uint8Array>() : postingsOf(before, oldDoc);
  const newPostings = after === undefined ? new Map<string, Uint8Array>() : postingsOf(after, newDoc);
  const puts = new Map<string, Uint8Array>();
  const dels: string[] = [];
  for (const key of oldPostings.keys()) if (!newPostings.has(key)) dels.push(key);
  for (const [key, value] of newPostings) {
    const old = oldPostings.get(key);
    if (old === undefined || Buffer.compare(old, value) !== 0) puts.set(key, value);
  }
  const df = new Map<string, number>();
  for (const term of oldDoc?.terms.keys() ?? []) if (!newDoc?.terms.has(term)) df.set(term, -1);
  for (const term of newDoc?.terms.keys() ?? []) if (!oldDoc?.terms.has(term)) df.set(term, 1);
  return {
    puts,
    dels,
    df,
    documents: (after === undefined ? 0 : 1) - (before === undefined ? 0 : 1),
    length: (newDoc?.length ?? 0) - (oldDoc?.length ?? 0),
  };
}

/**
 * The text index as a {@link RecordIndex}: stages the posting changes of a record write or delete
 * ({@link textIndexChange}) and adds the document frequency and totals deltas.
 */
export const textIndex: RecordIndex = {
  stage(batch: WriteBatch, existing: Agent | undefined, agent: Agent | undefined, counters?: CounterDeltas): void {
    if (counters === undefined) throw new Error('the text index needs counters');
    const change = textIndexChange(existing, agent);
    for (const key of change.dels) batch.del(key);
    for (const [key, value] of change.puts) batch.put(key, value);
    for (const [term, d] of change.df) counters.add(textDfKey(term), d);
    counters.add(TEXT_DOCUMENTS_KEY, change.documents);
    counters.add(TEXT_LENGTH_KEY, change.length);
  },
};

/**
 * BM25's inverse document frequency (the Lucene form, never negative):
 * `ln(1 + (N − df + 0.5) / (df + 0.5))` for `N` documents of which `df` hold the term.
 */
export function bm25Idf(documents: number, df: number): number {
  return Math.log(1 + (documents - df + 0.5) / (df + 0.5));
}

/**
 * One term's BM25 contribution to a document's score:
 * `idf · tf·(k1 + 1) / (tf + k1·(1 − b + b·dl/avgdl))` with `tf` the field-weighted frequency
 * ({@link weightedTf}), `dl` the document's length and `avgdl` the average length (1 when the
 * index is empty, so the formula stays finite).
 */
export function bm25TermScore(idf: number, tf: number, docLength: number, avgLength: number): number {
  const avg = avgLength > 0 ? avgLength : 1;
  return (idf * (tf * (BM25_K1 + 1))) / (tf + BM25_K1 * (1 - BM25_B + (BM25_B * docLength) / avg));
}

/**
 * The distinct terms of a search query, in order of first occurrence. Throws `RangeError`
 * (the caller answers `INVALID_ARGUMENT` on `query`) when the query is longer than
 * {@link MAX_SEARCH_QUERY_CHARS}, holds no term, or more than {@link MAX_SEARCH_QUERY_TERMS}.
 */
export function queryTerms(query: string): string[] {
  if (query.length > MAX_SEARCH_QUERY_CHARS) throw new RangeError(`must be at most ${MAX_SEARCH_QUERY_CHARS} characters, got ${query.length}`);
  const terms = [...new Set(tokenize(query, MAX_SEARCH_QUERY_CHARS))];
  if (terms.length === 0) throw new RangeError('must contain at least one word (letters or digits)');
  if (terms.length > MAX_SEARCH_QUERY_TERMS) throw new RangeError(`must contain at most ${MAX_SEARCH_QUERY_TERMS} distinct words, got ${terms.length}`);
  return terms;
}

/** The position a search page ends at: the score and id of its last result. */
export interface SearchPosition {
  readonly score: number;
  readonly id: string;
}

/**
 * Whether a result `(score, id)` comes after `position` in the ranking (score descending, then
 * id ascending: ids are ASCII, so string order is byte order).
 */
export function isAfter(score: number, id: string, position: SearchPosition): boolean {
  return score < position.score || (score === position.score && id > position.id);
}

/** Orders ranked results: higher score first, then id ascending. */
export function compareRanked(a: { score: number; id: string }, b: { score: number; id: string }): number {
  if (a.score !== b.score) return b.score > a.score ? 1 : -1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The page token of a search page ending at `position`: base64url of the score (float64, big-endian) and the id's UTF-8 bytes. */
export function encodeSearchPageToken(position: SearchPosition): string {
  const id = Buffer.from(position.id, 'utf8');
  const buf = Buffer.alloc(8 + id.length);
  buf.writeDoubleBE(position.score, 0);
  id.copy(buf, 8);
  return buf.toString('base64url');
}

/** The position a search page token resumes after; throws `RangeError` on a token {@link encodeSearchPageToken} did not make. */
export function decodeSearchPageToken(token: string): SearchPosition {
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw new RangeError('malformed page token');
  const buf = Buffer.from(token, 'base64url');
  if (buf.length < 9) throw new RangeError('malformed page token');
  const score = buf.readDoubleBE(0);
  const id = buf.subarray(8).toString('utf8');
  if (!Number.isFinite(score) || score < 0 || encodeSearchPageToken({ score, id }) !== token) throw new RangeError('malformed page token');
  return { score, id };
}
