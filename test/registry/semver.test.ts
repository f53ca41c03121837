/**
 * Semantic Versioning 2.0.0 precedence (semver.org §11) and the order that decides `latest`
 * (semver above non-semver, the official MCP registry's rule; ties by publication).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compareSemVer, compareVersionEntries, isSemVer, latestOf, newestFirst, parseSemVer, type VersionEntry } from '../../src/registry/semver.js';

const cmp = (a: string, b: string): number => compareSemVer(parseSemVer(a)!, parseSemVer(b)!);

describe('semver 2.0.0 parsing (§2, §9, §10)', () => {
  it('accepts versions of the grammar and refuses others', () => {
    for (const v of ['0.0.0', '1.2.3', '1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-0.3.7', '1.0.0-x.7.z.92', '1.0.0-x-y-z.--', '1.0.0+20130313144700', '1.0.0-beta+exp.sha.5114f85', '1.0.0+21AF26D3----117B344092BD', '99999999999999999999.0.0']) {
      expect(isSemVer(v), v).toBe(true);
    }
    for (const v of ['', '1', '1.2', 'v1.2.3', '01.2.3', '1.02.3', '1.2.3-01', '1.2.3-', '1.2.3+', '1.2.3-a..b', ' 1.2.3', '1.2.3 ', '1.2.3.4', 'latest', '2024.1', '^1.2.3', '1.x']) {
      expect(isSemVer(v), v).toBe(false);
    }
    expect(parseSemVer('1.0.0-alpha.1+b.2')).toEqual({ major: '1', minor: '0', patch: '0', prerelease: ['alpha', '1'], build: ['b', '2'] });
  });
});

describe('semver 2.0.0 precedence (§11)', () => {
  it('orders the example chain of §11.4', () => {
    const chain = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '2.0.0', '2.1.0', '2.1.1'];
    for (let i = 0; i < chain.length; i++) {
      for (let j = 0; j < chain.length; j++) expect(Math.sign(cmp(chain[i]!, chain[j]!)), `${chain[i]} vs ${chain[j]}`).toBe(Math.sign(i - j));
    }
  });

  it('compares numerically, not as text (1.10.0 > 1.9.0, beta.11 > beta.2), also beyond 2^53', () => {
    expect(cmp('1.10.0', '1.9.0')).toBeGreaterThan(0);
    expect(cmp('1.0.0-beta.11', '1.0.0-beta.2')).toBeGreaterThan(0);
    expect(cmp('18446744073709551617.0.0', '18446744073709551616.0.0')).toBeGreaterThan(0);
    expect(cmp('9007199254740993.0.0', '9007199254740992.0.0')).toBeGreaterThan(0);
  });

  it('ignores build metadata (§10)', () => {
    expect(cmp('1.0.0+a', '1.0.0+b')).toBe(0);
    expect(cmp('1.0.0-rc.1+x', '1.0.0-rc.1')).toBe(0);
  });

  it('agrees with a reference order on generated versions (fast-check)', () => {
    // The reference: a release is [major, minor, patch, [Infinity]], a pre-release lists its
    // identifiers as numbers (numeric) or [1, text] (alphanumeric, above every number); tuples
    // compare element by element, a shorter prefix first.
    const ident = fc.oneof(fc.nat({ max: 30 }).map(String), fc.constantFrom('alpha', 'beta', 'rc', 'a-b', 'X', '0a'));
    const arbVersion = fc.record({
      core: fc.tuple(fc.nat({ max: 3 }), fc.nat({ max: 12 }), fc.nat({ max: 12 })),
      pre: fc.array(ident, { maxLength: 3 }),
      build: fc.option(fc.constantFrom('b1', 'sha.5114f85', '001'), { nil: undefined }),
    });
    const text = (v: { core: [number, number, number]; pre: string[]; build: string | undefined }): string =>
      `${v.core.join('.')}${v.pre.length > 0 ? `-${v.pre.join('.')}` : ''}${v.build !== undefined ? `+${v.build}` : ''}`;
    const reference = (a: { core: number[]; pre: string[] }, b: { core: number[]; pre: string[] }): number => {
      for (let i = 0; i < 3; i++) if (a.core[i] !== b.core[i]) return Math.sign(a.core[i]! - b.core[i]!);
      if (a.pre.length === 0 && b.pre.length === 0) return 0;
      if (a.pre.length === 0) return 1;
      if (b.pre.length === 0) return -1;
      for (let i = 0; i < Math.min(a.pre.length, b.pre.length); i++) {
        const [x, y] = [a.pre[i]!, b.pre[i]!];
        const [xn, yn] = [/^\d+$/.test(x), /^\d+$/.test(y)];
        if (xn && yn && Number(x) !== Number(y)) return Math.sign(Number(x) - Number(y));
        if (xn !== yn) return xn ? -1 : 1;
        if (!xn && x !== y) return x < y ? -1 : 1;
      }
      return Math.sign(a.pre.length - b.pre.length);
    };
    fc.assert(
      fc.property(arbVersion, arbVersion, (a, b) => {
        expect(isSemVer(text(a))).toBe(true);
        expect(Math.sign(cmp(text(a), text(b)))).toBe(reference(a, b));
        expect(Math.sign(cmp(text(b), text(a))) + reference(a, b)).toBe(0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('latest: the order of the versions of one name', () => {
  const e = (id: string, version: string, createRevision: number): VersionEntry => ({ id, version, createRevision });

  it('a semantic version is above every non-semantic one, whenever it was published', () => {
    expect(latestOf([e('a', '0.0.1', 1), e('b', 'v9', 2), e('c', '2024.12', 3)])?.id).toBe('a');
    expect(latestOf([e('b', 'v9', 2), e('c', 'latest-build', 3)])?.id).toBe('c');
    expect(latestOf([])).toBeUndefined();
  });

  it('a pre-release is below its release; ties in precedence go to the later publication', () => {
    expect(latestOf([e('r', '1.0.0', 5), e('p', '1.0.0-rc.1', 9)])?.id).toBe('r');
    expect(latestOf([e('x', '1.0.0+a', 5), e('y', '1.0.0+b', 9)])?.id).toBe('y');
    expect(newestFirst([e('1', '1.9.0', 1), e('2', '1.10.0', 2), e('3', 'nightly', 3), e('4', '1.10.0-beta', 4)]).map((v) => v.id)).toEqual(['2', '4', '1', '3']);
  });

  it('is a total order: the latest does not depend on the order entries come in (fast-check)', () => {
    const versions = ['1.0.0', '1.0.0-alpha', '1.0.0+b', '2.0.0', '0.9.9', 'v2', '2024.1', 'main', '1.10.0', '1.9.0'];
    const arbEntries = fc.uniqueArray(
      fc.record({ id: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), version: fc.constantFrom(...versions), createRevision: fc.integer({ min: 1, max: 50 }) }),
      { selector: (x) => x.id, minLength: 1, maxLength: 6 },
    );
    fc.assert(
      fc.property(arbEntries, fc.func(fc.integer()), (entries, key) => {
        const shuffled = [...entries].sort((x, y) => key(x.id) - key(y.id));
        expect(latestOf(shuffled)).toEqual(latestOf(entries));
        const sorted = newestFirst(shuffled);
        expect(sorted[0]).toEqual(latestOf(entries));
        for (let i = 1; i < sorted.length; i++) expect(compareVersionEntries(sorted[i - 1]!, sorted[i]!)).toBeGreaterThan(0);
        // Antisymmetric on every pair.
        for (const x of entries) for (const y of entries) expect(Math.sign(compareVersionEntries(x, y)) + Math.sign(compareVersionEntries(y, x))).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});
