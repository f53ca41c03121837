/**
 * Keyword search: the tokenizer, BM25 ranking on a small corpus with known answers, paging by
 * (score, id), search combined with the find filters, `Find.capability_prefix` and the
 * capability counts, on a state machine over an in-memory store.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { logIndex, term, type Entry } from '../../src/raft/types.js';
import { encodeCommand } from '../../src/registry/commands.js';
import { QueryError, RegistryStateMachine } from '../../src/registry/state-machine.js';
import {
  decodeSearchPageToken,
  encodeSearchPageToken,
  MAX_SEARCH_QUERY_TERMS,
  MAX_TOKEN_CODE_POINTS,
  postingImpact,
  queryTerms,
  stem,
  tokenize,
} from '../../src/registry/text-index.js';
import type { AgentSpec, Command } from '../../src/registry/types.js';
import { MemoryStore } from '../../src/storage/memory-store.js';

function spec(id: string, over: Partial<AgentSpec> = {}): AgentSpec {
  return { id, name: id, kind: 'mcp-server', version: '1.0.0', description: '', capabilities: [], endpoints: {}, labels: {}, ...over };
}

let nextIndex = 1;
function entry(cmd: Command): Entry {
  return { index: logIndex(nextIndex++), term: term(1), type: 'normal', data: encodeCommand(cmd) };
}
const reg = (agent: AgentSpec): Entry => entry({ type: 'register', requestId: `r${nextIndex}`, agent });
const dereg = (id: string): Entry => entry({ type: 'deregister', requestId: `r${nextIndex}`, id });

async function machine(agents: AgentSpec[]): Promise<{ sm: RegistryStateMachine; store: MemoryStore; apply: (entries: Entry[]) => Promise<void> }> {
  nextIndex = 1;
  const store = new MemoryStore();
  const sm = new RegistryStateMachine(store);
  await sm.open();
  const apply = async (entries: Entry[]): Promise<void> => {
    const batch = store.batch();
    await sm.applyEntries(entries, batch);
    await batch.write();
    sm.commitApplied(batch);
  };
  await apply(agents.map(reg));
  return { sm, store, apply };
}

async function ids(sm: RegistryStateMachine, query: string, extra: Record<string, unknown> = {}): Promise<string[]> {
  const page = await sm.search({ query, ...extra });
  return page.results.map((r) => r.agent.id);
}

describe('tokenize', () => {
  it('splits reverse-DNS and path names on . / - _ : @ and white space, folding case', () => {
    expect(tokenize('io.github.apache/iotdb-mcp-server')).toEqual(['io', 'github', 'apache', 'iotdb', 'mcp', 'server']);
    expect(tokenize('@Scope/My_Package:Tool  v2')).toEqual(['scope', 'my', 'package', 'tool', 'v2']);
    expect(tokenize('skill:SQL-Query, tag:DataBase!')).toEqual(['skill', 'sql', 'query', 'tag', 'database']);
  });

  it('removes plural endings (Harman S stemmer) on ASCII words', () => {
    expect(tokenize('Databases database queries tools status class bus DBs')).toEqual(['database', 'database', 'query', 'tool', 'status', 'class', 'bus', 'dbs']);
  });

  it('drops empty tokens and keeps non-ASCII letters, folding Latin ones', () => {
    expect(tokenize('--..//  ')).toEqual([]);
    expect(tokenize('')).toEqual([]);
    expect(tokenize('Données\u00a0CAFÉ—naïve 数据库。')).toEqual(['données', 'café', 'naïve', '数据库']);
  });

  it('cuts long tokens and stops at the token limit of a field', () => {
    const long = 'a'.repeat(MAX_TOKEN_CODE_POINTS + 10);
    expect(tokenize(long)).toEqual(['a'.repeat(MAX_TOKEN_CODE_POINTS)]);
    expect(tokenize('a b c d e', 3)).toEqual(['a', 'b', 'c']);
  });

  it('equals the documented rule, code point by code point, on any text (long runs, surrogates, Latin and CJK letters)', () => {
    // The rule as the docstring states it, one code point at a time: a separator ends a token;
    // A-Z and U+00C0–U+024F fold to lower case; a token keeps its first MAX_TOKEN_CODE_POINTS.
    const separator = (c: number): boolean =>
      c < 0x80
        ? !/[0-9A-Za-z]/.test(String.fromCharCode(c))
        : (c >= 0x80 && c <= 0xbf) || c === 0xd7 || c === 0xf7 || (c >= 0x2000 && c <= 0x206f) || (c >= 0x2e00 && c <= 0x2e7f) || (c >= 0x3000 && c <= 0x303f) || c === 0xfeff || (c >= 0xff01 && c <= 0xff0f);
    const model = (text: string, max: number): string[] => {
      const tokens: string[][] = [];
      let current: string[] | undefined;
      for (const ch of text) {
        const c = ch.codePointAt(0) as number;
        if (separator(c)) current = undefined;
        else {
          if (current === undefined) tokens.push((current = []));
          current.push((c >= 0x41 && c <= 0x5a) || (c >= 0xc0 && c <= 0x24f) ? ch.toLowerCase() : ch);
        }
      }
      return tokens.slice(0, max).map((t) => stem(t.slice(0, MAX_TOKEN_CODE_POINTS).join('')));
    };
    const pieces = ['a', 'Z', 'db', 'DBS', 'queries', '7', ' ', '-', '.', '_', '/', '\u00a0', '\u00d7', 'É', 'ß', 'Ǆ', 'ɏ', 'Ω', '数', '😀', '\ud800', '\udc00', '\u2003', '\u3001', '\ufeff', '\uff01', 'x'.repeat(MAX_TOKEN_CODE_POINTS - 1), 'Y'.repeat(MAX_TOKEN_CODE_POINTS + 3), '😀'.repeat(MAX_TOKEN_CODE_POINTS)];
    const text = fc.oneof(fc.array(fc.constantFrom(...pieces), { maxLength: 40 }).map((p) => p.join('')), fc.string({ unit: 'binary', maxLength: 200 }));
    fc.assert(
      fc.property(text, fc.integer({ min: 1, max: 12 }), (t, max) => {
        expect(tokenize(t, max)).toEqual(model(t, max));
      }),
      { numRuns: 3000 },
    );
  });

  it('query terms are distinct, and empty or oversized queries are refused', () => {
    expect(queryTerms('MCP mcp server')).toEqual(['mcp', 'server']);
    expect(() => queryTerms(' -- ')).toThrow(RangeError);
    expect(() => queryTerms(Array.from({ length: MAX_SEARCH_QUERY_TERMS + 1 }, (_, i) => `w${i}`).join(' '))).toThrow(RangeError);
  });

  it('impacts grow with the weighted frequency and fall with the length', () => {
    expect(postingImpact([1, 0, 0], 10)).toBeGreaterThan(postingImpact([0, 0, 1], 10));
    expect(postingImpact([0, 0, 2], 10)).toBeGreaterThan(postingImpact([0, 0, 1], 10));
    expect(postingImpact([0, 0, 1], 5)).toBeGreaterThan(postingImpact([0, 0, 1], 50));
  });
});

describe('search ranking (BM25)', () => {
  const corpus = [
    spec('io.github.acme/postgres-mcp', { description: 'Query a relational store' }),
    spec('io.github.acme/notes', { description: 'Keeps notes; can export them to a postgres table' }),
    spec('io.github.apache/iotdb-mcp-server', { description: 'Time series database server for IoT' }),
    spec('io.github.x/sqlite-database', { description: 'A database tool: database queries over sqlite' }),
    spec('io.github.y/weather', { description: 'Forecasts', capabilities: ['tool:forecast'] }),
    spec('io.github.z/mysql', { description: 'MySQL database access', capabilities: ['tool:query', 'tag:database'] }),
  ];

  it('an exact name match beats a description mention', async () => {
    const { sm } = await machine(corpus);
    expect(await ids(sm, 'postgres')).toEqual(['io.github.acme/postgres-mcp', 'io.github.acme/notes']);
  });

  it('the name weighs more than the description (BM25F field weights)', async () => {
    const { sm } = await machine([spec('sqlite-tool'), spec('other', { description: 'sqlite sqlite' }), spec('filler', { description: 'unrelated words' })]);
    expect(await ids(sm, 'sqlite')).toEqual(['sqlite-tool', 'other']);
  });

  it('more matching query terms rank higher', async () => {
    const { sm } = await machine(corpus);
    const got = await ids(sm, 'time series database');
    expect(got[0]).toBe('io.github.apache/iotdb-mcp-server');
    expect(new Set(got)).toEqual(new Set(['io.github.apache/iotdb-mcp-server', 'io.github.x/sqlite-database', 'io.github.z/mysql']));
  });

  it('finds reverse-DNS names by each of their parts', async () => {
    const { sm } = await machine(corpus);
    for (const word of ['iotdb', 'apache', 'IoTDB', 'server']) expect(await ids(sm, word)).toContain('io.github.apache/iotdb-mcp-server');
    expect(await ids(sm, 'iotdb-mcp-server')).toEqual(['io.github.apache/iotdb-mcp-server', 'io.github.acme/postgres-mcp']);
  });

  it('capabilities are searchable and ranked above a description mention', async () => {
    const { sm } = await machine(corpus);
    expect((await ids(sm, 'forecast'))[0]).toBe('io.github.y/weather');
  });

  it('scores are positive and descending, ties broken by id', async () => {
    const { sm } = await machine([spec('b', { description: 'same words' }), spec('a', { description: 'same words' }), spec('c', { description: 'other' })]);
    const page = await sm.search({ query: 'same' });
    expect(page.results.map((r) => r.agent.id)).toEqual(['a', 'b']);
    expect(page.results[0]?.score).toBe(page.results[1]?.score);
    expect(page.results[0]?.score).toBeGreaterThan(0);
  });

  it('follows replacements and deletes', async () => {
    const { sm, apply } = await machine(corpus);
    await apply([reg(spec('io.github.acme/postgres-mcp', { name: 'renamed', description: 'nothing here' })), dereg('io.github.acme/notes')]);
    expect(await ids(sm, 'postgres')).toEqual([]);
    expect(await ids(sm, 'renamed')).toEqual(['io.github.acme/postgres-mcp']);
  });

  it('combines with every find filter', async () => {
    const { sm } = await machine(corpus);
    expect(await ids(sm, 'database', { capability: 'tag:database' })).toEqual(['io.github.z/mysql']);
    expect(await ids(sm, 'database', { capabilityPrefix: 'tool:' })).toEqual(['io.github.z/mysql']);
    expect(await ids(sm, 'database', { namePrefix: 'io.github.x/' })).toEqual(['io.github.x/sqlite-database']);
    expect(await ids(sm, 'database', { kind: 'service' })).toEqual([]);
    expect(await ids(sm, 'database', { health: 'serving' })).toEqual([]);
    expect(await ids(sm, 'database', { labels: { env: 'prod' } })).toEqual([]);
  });

  it('pages resume after the last (score, id) and visit every match once', async () => {
    const agents = Array.from({ length: 9 }, (_, i) => spec(`agent-${i}`, { description: i % 3 === 0 ? 'db db db' : 'db' }));
    const { sm } = await machine(agents);
    const all = (await sm.search({ query: 'db' })).results.map((r) => r.agent.id);
    const paged: string[] = [];
    let token = '';
    do {
      const page = await sm.search({ query: 'db', pageSize: 2, pageToken: token });
      paged.push(...page.results.map((r) => r.agent.id));
      token = page.nextPageToken;
    } while (token !== '');
    expect(paged).toEqual(all);
    expect(all).toHaveLength(9);
    expect(all.slice(0, 3).sort()).toEqual(['agent-0', 'agent-3', 'agent-6']);
  });

  it('refuses a bad query or page token with a QueryError naming the field', async () => {
    const { sm } = await machine(corpus);
    await expect(sm.search({ query: '...' })).rejects.toMatchObject({ name: 'QueryError', field: 'query' });
    await expect(sm.search({ query: 'db', pageToken: 'not a token' })).rejects.toBeInstanceOf(QueryError);
    await expect(sm.search({ query: 'db', pageToken: 'AAAA' })).rejects.toMatchObject({ field: 'page_token' });
    await expect(sm.search({ query: 'db', pageSize: 5000 })).rejects.toMatchObject({ field: 'page_size' });
  });

  it('page tokens round-trip score and id exactly', () => {
    const position = { score: 1.2345678901234567, id: 'io.github.a/b@1' };
    expect(decodeSearchPageToken(encodeSearchPageToken(position))).toEqual(position);
  });
});

describe('capability prefix and counts', () => {
  const agents = [
    spec('a', { capabilities: ['tool:query', 'tool:export', 'npm'] }),
    spec('b', { capabilities: ['tool:query'] }),
    spec('c', { capabilities: ['resource:file', 'npm'] }),
    spec('d', { capabilities: ['toolbox'] }),
  ];

  it('Find.capabilityPrefix finds agents with any capability under the prefix, once, by id', async () => {
    const { sm } = await machine(agents);
    expect((await sm.find({ capabilityPrefix: 'tool:' })).agents.map((a) => a.id)).toEqual(['a', 'b']);
    expect((await sm.find({ capabilityPrefix: 'tool' })).agents.map((a) => a.id)).toEqual(['a', 'b', 'd']);
    const first = await sm.find({ capabilityPrefix: 'tool', pageSize: 2 });
    expect(first.agents.map((a) => a.id)).toEqual(['a', 'b']);
    expect((await sm.find({ capabilityPrefix: 'tool', pageSize: 2, pageToken: first.nextPageToken })).agents.map((a) => a.id)).toEqual(['d']);
    expect((await sm.find({ capabilityPrefix: 'tool:', kind: 'mcp-server', capability: 'npm' })).agents.map((a) => a.id)).toEqual(['a']);
  });

  it('lists capabilities with their counts, by prefix, kept through replace and delete', async () => {
    const { sm, apply } = await machine(agents);
    expect((await sm.capabilities()).capabilities).toEqual([
      { capability: 'npm', count: 2 },
      { capability: 'resource:file', count: 1 },
      { capability: 'tool:export', count: 1 },
      { capability: 'tool:query', count: 2 },
      { capability: 'toolbox', count: 1 },
    ]);
    await apply([reg(spec('b', { capabilities: ['tool:export'] })), dereg('a')]);
    expect((await sm.capabilities('tool:')).capabilities).toEqual([{ capability: 'tool:export', count: 1 }]);
  });
});
