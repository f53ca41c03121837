import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { REMOTE_CAPABILITY, SEED_AGENT_KIND, parseSeed } from '../../src/registry/seed.js';
import { ValidationError, validateAgentSpec } from '../../src/registry/validation.js';

const SEED_PATH = fileURLToPath(new URL('../../data/mcp-registry-seed-2025-05-16.json', import.meta.url));

/** The raw entries, read without any of the code under test. */
interface RawEntry {
  id: string;
  name: string;
  description: string;
  repository: { url: string; source: string; id: string };
  version_detail: { version: string };
  packages?: { registry_name: string; registry?: string; name: string }[];
  remotes?: { url: string }[];
}
const raw = JSON.parse(readFileSync(SEED_PATH, 'utf8')) as RawEntry[];

describe('parseSeed on data/mcp-registry-seed-2025-05-16.json', () => {
  const result = parseSeed(raw);

  it('imports 464 agents with distinct ids and reports the 7 blank entries', () => {
    expect(raw).toHaveLength(471);
    expect(result.agents).toHaveLength(464);
    expect(new Set(result.agents.map((a) => a.id)).size).toBe(464);
    expect(result.invalid).toHaveLength(7);
    const blankIndexes = raw.flatMap((e, i) => (e.name === '' ? [i] : []));
    expect(result.invalid.map((x) => x.index)).toEqual(blankIndexes);
    for (const x of result.invalid) {
      expect(x.name).toBe('');
      expect(x.reason).toMatch(/blank entry/);
    }
  });

  it('maps the fields of every entry', () => {
    const byId = new Map(result.agents.map((a) => [a.id, a]));
    for (const entry of raw.filter((e) => e.name !== '')) {
      const agent = byId.get(entry.name);
      expect(agent, entry.name).toBeDefined();
      if (agent === undefined) continue;
      expect(agent.name).toBe(entry.name);
      expect(agent.kind).toBe(SEED_AGENT_KIND);
      expect(agent.version).toBe(entry.version_detail.version);
      expect(agent.description).toBe(entry.description.trim());
      expect(agent.endpoints.repository).toBe(entry.repository.url);
      expect(agent.labels.registry_id).toBe(entry.id);
      expect(agent.labels.source).toBe(entry.repository.source);
      expect(agent.endpoints.remote).toBe(entry.remotes?.[0]?.url);
    }
  });

  it('trims descriptions (the file has trailing spaces)', () => {
    const padded = raw.filter((e) => e.name !== '' && e.description !== e.description.trim());
    expect(padded.length).toBeGreaterThan(0);
    for (const e of padded) {
      const agent = result.agents.find((a) => a.id === e.name);
      expect(agent?.description).toBe(e.description.trim());
    }
  });

  it('derives capabilities that match an independent count from the raw JSON', () => {
    // Independent count: entries per registry named on a package (`registry_name`, or `registry`
    // when the name is "unknown"), and entries with remotes.
    const expected = new Map<string, number>();
    for (const e of raw) {
      if (e.name === '') continue;
      const registries = new Set<string>();
      for (const p of e.packages ?? []) {
        const r = p.registry_name !== 'unknown' ? p.registry_name : (p.registry ?? '');
        if (r !== '' && r !== 'unknown') registries.add(r.toLowerCase());
      }
      if ((e.remotes ?? []).length > 0) registries.add('remote');
      for (const r of registries) expected.set(r, (expected.get(r) ?? 0) + 1);
    }
    const actual = new Map<string, number>();
    for (const a of result.agents) for (const c of a.capabilities) actual.set(c, (actual.get(c) ?? 0) + 1);
    expect(actual).toEqual(expected);
    // The figures of this file, as a fixed point for the mapping.
    expect(Object.fromEntries(actual)).toEqual({ npm: 83, pypi: 53, docker: 26, [REMOTE_CAPABILITY]: 8 });
  });

  it('keeps every imported agent valid and normalized', () => {
    for (const agent of result.agents) expect(validateAgentSpec(agent)).toEqual(agent);
  });

  it('imports the largest entry (over 10 KB of JSON)', () => {
    const largest = raw.reduce((a, b) => (JSON.stringify(a).length >= JSON.stringify(b).length ? a : b));
    expect(JSON.stringify(largest).length).toBeGreaterThan(10_000);
    expect(result.agents.some((a) => a.id === largest.name)).toBe(true);
  });
});

describe('parseSeed on crafted input', () => {
  const entry = (patch: Record<string, unknown>): Record<string, unknown> => ({
    id: 'uuid-1',
    name: 'io.github.x/one',
    description: ' d ',
    repository: { url: 'https://github.com/x/one', source: 'github', id: '1' },
    version_detail: { version: '1.0.0' },
    packages: [{ registry_name: 'npm', name: 'one' }],
    ...patch,
  });

  it('takes the registry from the separate field when registry_name is unknown', () => {
    const { agents } = parseSeed([
      entry({ packages: [{ registry_name: 'unknown', registry: 'PyPI', name: 'one' }] }),
      entry({ name: 'io.github.x/two', packages: [{ registry_name: 'unknown', name: 'two' }] }),
    ]);
    expect(agents[0]?.capabilities).toEqual(['pypi']);
    expect(agents[1]?.capabilities).toEqual([]);
    expect(agents[1]?.labels.package).toBe('two');
  });

  it('keeps the first of duplicate names and reports the others', () => {
    const { agents, invalid } = parseSeed([entry({}), entry({ description: 'second' })]);
    expect(agents).toHaveLength(1);
    expect(agents[0]?.description).toBe('d');
    expect(invalid).toEqual([{ index: 1, name: 'io.github.x/one', reason: 'duplicate name, already imported from entry 0' }]);
  });

  it('reports entries that fail validation or have wrong types, and goes on', () => {
    const { agents, invalid } = parseSeed([
      entry({ name: 'bad name with spaces' }),
      entry({ name: 'io.github.x/long', description: 'x'.repeat(16 * 1024 + 1) }),
      entry({ name: 'io.github.x/typed', version_detail: { version: 3 } }),
      'not an object',
      entry({ name: 'io.github.x/ok' }),
    ]);
    expect(agents.map((a) => a.id)).toEqual(['io.github.x/ok']);
    expect(invalid.map((x) => [x.index, x.name])).toEqual([
      [0, 'bad name with spaces'],
      [1, 'io.github.x/long'],
      [2, 'io.github.x/typed'],
      [3, ''],
    ]);
    expect(invalid[0]?.reason).toMatch(/^agent\.id must only contain/);
    expect(invalid[1]?.reason).toMatch(/^agent\.description must be at most 16384 bytes/);
    expect(invalid[2]?.reason).toMatch(/^version_detail\.version must be a string/);
    expect(invalid[3]?.reason).toBe('entry is not an object');
  });

  it('numbers several remotes', () => {
    const { agents } = parseSeed([entry({ remotes: [{ url: 'https://a/sse' }, { url: 'https://b/sse' }] })]);
    expect(agents[0]?.endpoints).toEqual({ remote: 'https://a/sse', 'remote-2': 'https://b/sse', repository: 'https://github.com/x/one' });
    expect(agents[0]?.capabilities).toEqual(['npm', 'remote']);
  });

  it('refuses a file that is not an array', () => {
    expect(() => parseSeed({ entries: [] })).toThrow(ValidationError);
  });
});
