import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import type { AgentSpec } from '../../src/registry/types.js';
import {
  MAX_AGENT_BYTES,
  MAX_CAPABILITIES,
  MAX_CAPABILITY_CHARS,
  MAX_DESCRIPTION_BYTES,
  MAX_ENDPOINTS,
  MAX_ENDPOINT_KEY_CHARS,
  MAX_ENDPOINT_VALUE_CHARS,
  MAX_ID_CHARS,
  MAX_KIND_CHARS,
  MAX_LABELS,
  MAX_LABEL_KEY_CHARS,
  MAX_LABEL_VALUE_CHARS,
  MAX_NAME_CHARS,
  MAX_PAGE_TOKEN_CHARS,
  MAX_TTL_SECONDS,
  MAX_VERSION_CHARS,
  MIN_TTL_SECONDS,
  ValidationError,
  agentSpecBytes,
  validateAgentSpec,
  validateFindQuery,
  validateHealth,
  validateId,
  validateTtlSeconds,
  wellFormed,
} from '../../src/registry/validation.js';

/** Runs `f` and returns the ValidationError it throws (fails the test if it throws nothing else). */
function rejection(f: () => unknown): ValidationError {
  try {
    f();
  } catch (e) {
    if (e instanceof ValidationError) return e;
    throw e;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

const base: AgentSpec = {
  id: 'io.github.example/agent',
  name: 'Example',
  kind: 'mcp-server',
  version: '1.0.0',
  description: 'An example agent',
  capabilities: ['search'],
  endpoints: { grpc: '10.0.0.1:50051' },
  labels: { env: 'prod' },
};

const with_ = (patch: Record<string, unknown>): Record<string, unknown> => ({ ...base, ...patch });
const repeat = (s: string, n: number): string => s.repeat(n);
const manyEntries = (n: number, value = 'v'): Record<string, string> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, value]));

const ID_CHARS = 'ABCXYZabcxyz0189._:/@-';
const idArb = fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: MAX_ID_CHARS });
/** Any Unicode text without NUL, short enough to keep generated specs well under the whole-agent limit. */
const textArb = (maxLength: number) => fc.string({ unit: 'binary', maxLength }).filter((s) => !s.includes('\x00'));
const nonEmptyTextArb = (maxLength: number) => textArb(maxLength).filter((s) => s.length > 0);
const mapArb = (keyMax: number, valueArb: fc.Arbitrary<string>) =>
  fc.dictionary(nonEmptyTextArb(keyMax), valueArb, { maxKeys: 8, noNullPrototype: true });

const specArb: fc.Arbitrary<AgentSpec> = fc.record({
  id: idArb,
  name: textArb(40),
  kind: textArb(MAX_KIND_CHARS),
  version: textArb(20),
  description: textArb(200),
  capabilities: fc.array(nonEmptyTextArb(20), { maxLength: 10 }),
  endpoints: mapArb(20, nonEmptyTextArb(40)),
  labels: mapArb(20, textArb(40)),
});

describe('validateId', () => {
  it('accepts ids of the allowed characters up to MAX_ID_CHARS', () => {
    expect(validateId('io.github.a/b@1:x_y-z')).toBe('io.github.a/b@1:x_y-z');
    expect(validateId('a'.repeat(MAX_ID_CHARS))).toHaveLength(MAX_ID_CHARS);
  });

  it('rejects empty, too long, non-string and bad characters, naming the field', () => {
    expect(rejection(() => validateId('')).message).toBe('id must not be empty');
    expect(rejection(() => validateId('a'.repeat(MAX_ID_CHARS + 1), 'agent.id')).field).toBe('agent.id');
    expect(rejection(() => validateId(42)).message).toContain('must be a string, got number');
    const bad = rejection(() => validateId('has space'));
    expect(bad.field).toBe('id');
    expect(bad.message).toContain('" "');
    expect(rejection(() => validateId('nul\x00')).field).toBe('id');
  });

  it('accepts exactly the strings over [A-Za-z0-9._:/@-] of length 1..256 (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: MAX_ID_CHARS + 4 }), (s) => {
        const ok = s.length >= 1 && s.length <= MAX_ID_CHARS && /^[A-Za-z0-9._:/@-]+$/.test(s);
        if (ok) expect(validateId(s)).toBe(s);
        else expect(rejection(() => validateId(s)).field).toBe('id');
      }),
    );
  });
});

describe('validateAgentSpec: normalization', () => {
  it('fills missing optional fields', () => {
    expect(validateAgentSpec({ id: 'x' })).toEqual({
      id: 'x',
      name: '',
      kind: '',
      version: '',
      description: '',
      capabilities: [],
      endpoints: {},
      labels: {},
    });
  });

  it('de-duplicates and sorts capabilities and sorts map keys', () => {
    const spec = validateAgentSpec(with_({ capabilities: ['b', 'a', 'b', 'c', 'a'], labels: { z: '1', a: '2' } }));
    expect(spec.capabilities).toEqual(['a', 'b', 'c']);
    expect(Object.keys(spec.labels)).toEqual(['a', 'z']);
  });

  it('ignores revisions so a stored agent can be re-submitted', () => {
    const spec = validateAgentSpec(with_({ createRevision: 3, modRevision: 9 }));
    expect(spec).not.toHaveProperty('createRevision');
    expect(spec).not.toHaveProperty('modRevision');
  });

  it('keeps a "__proto__" label as plain data', () => {
    const input = JSON.parse('{"id":"x","labels":{"__proto__":"v"}}') as unknown;
    const spec = validateAgentSpec(input);
    expect(Object.getPrototypeOf(spec.labels)).toBe(Object.prototype);
    expect(Object.entries(spec.labels)).toEqual([['__proto__', 'v']]);
  });

  it('any valid spec round-trips: same content, sorted unique capabilities, idempotent (property)', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const out = validateAgentSpec(spec);
        expect(out.id).toBe(spec.id);
        expect(out.name).toBe(spec.name);
        expect(out.kind).toBe(spec.kind);
        expect(out.version).toBe(spec.version);
        expect(out.description).toBe(spec.description);
        expect(out.capabilities).toEqual([...new Set(spec.capabilities)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
        expect(out.endpoints).toEqual(spec.endpoints);
        expect(out.labels).toEqual(spec.labels);
        expect(validateAgentSpec(out)).toEqual(out);
        expect(validateAgentSpec(JSON.parse(JSON.stringify(out)))).toEqual(out);
      }),
    );
  });
});

describe('validateAgentSpec: each limit names its field', () => {
  const cases: [string, Record<string, unknown> | unknown, string, string][] = [
    ['not an object', null, 'agent', 'must be an object, got null'],
    ['an array', [], 'agent', 'must be an object, got array'],
    ['unknown field', with_({ capability: 'x' }), 'agent.capability', 'is not a field'],
    ['missing id', { name: 'x' }, 'agent.id', 'must be a string, got undefined'],
    ['name too long', with_({ name: 'n'.repeat(MAX_NAME_CHARS + 1) }), 'agent.name', `at most ${MAX_NAME_CHARS} characters`],
    ['kind too long', with_({ kind: 'k'.repeat(MAX_KIND_CHARS + 1) }), 'agent.kind', `at most ${MAX_KIND_CHARS} characters`],
    ['version too long', with_({ version: 'v'.repeat(MAX_VERSION_CHARS + 1) }), 'agent.version', `at most ${MAX_VERSION_CHARS}`],
    ['version not a string', with_({ version: 1 }), 'agent.version', 'must be a string, got number'],
    [
      'description too many bytes',
      with_({ description: 'é'.repeat(MAX_DESCRIPTION_BYTES / 2 + 1) }),
      'agent.description',
      `at most ${MAX_DESCRIPTION_BYTES} bytes`,
    ],
    ['capabilities not an array', with_({ capabilities: 'x' }), 'agent.capabilities', 'must be an array'],
    [
      'too many capabilities',
      with_({ capabilities: Array.from({ length: MAX_CAPABILITIES + 1 }, (_, i) => `c${i}`) }),
      'agent.capabilities',
      `at most ${MAX_CAPABILITIES} capabilities`,
    ],
    ['empty capability', with_({ capabilities: ['a', 'b', 'c', ''] }), 'agent.capabilities[3]', 'must not be empty'],
    [
      'capability too long',
      with_({ capabilities: ['c'.repeat(MAX_CAPABILITY_CHARS + 1)] }),
      'agent.capabilities[0]',
      `at most ${MAX_CAPABILITY_CHARS}`,
    ],
    ['capability not a string', with_({ capabilities: [7] }), 'agent.capabilities[0]', 'must be a string'],
    ['endpoints an array', with_({ endpoints: [] }), 'agent.endpoints', 'must be an object'],
    ['too many endpoints', with_({ endpoints: manyEntries(MAX_ENDPOINTS + 1) }), 'agent.endpoints', `at most ${MAX_ENDPOINTS}`],
    ['empty endpoint name', with_({ endpoints: { '': 'x' } }), 'agent.endpoints', 'key "" must not be empty'],
    [
      'endpoint name too long',
      with_({ endpoints: { ['e'.repeat(MAX_ENDPOINT_KEY_CHARS + 1)]: 'x' } }),
      'agent.endpoints',
      `at most ${MAX_ENDPOINT_KEY_CHARS}`,
    ],
    ['empty endpoint address', with_({ endpoints: { grpc: '' } }), 'agent.endpoints["grpc"]', 'must not be empty'],
    [
      'endpoint address too long',
      with_({ endpoints: { url: 'u'.repeat(MAX_ENDPOINT_VALUE_CHARS + 1) } }),
      'agent.endpoints["url"]',
      `at most ${MAX_ENDPOINT_VALUE_CHARS}`,
    ],
    ['endpoint address not a string', with_({ endpoints: { grpc: 1 } }), 'agent.endpoints["grpc"]', 'must be a string'],
    ['labels null', with_({ labels: null }), 'agent.labels', 'must be an object'],
    ['too many labels', with_({ labels: manyEntries(MAX_LABELS + 1) }), 'agent.labels', `at most ${MAX_LABELS} labels`],
    ['empty label key', with_({ labels: { '': 'v' } }), 'agent.labels', 'must not be empty'],
    [
      'label key too long',
      with_({ labels: { ['k'.repeat(MAX_LABEL_KEY_CHARS + 1)]: 'v' } }),
      'agent.labels',
      `at most ${MAX_LABEL_KEY_CHARS}`,
    ],
    [
      'label value too long',
      with_({ labels: { env: 'v'.repeat(MAX_LABEL_VALUE_CHARS + 1) } }),
      'agent.labels["env"]',
      `at most ${MAX_LABEL_VALUE_CHARS}`,
    ],
    ['NUL in a name', with_({ name: 'a\x00b' }), 'agent.name', 'NUL'],
    ['NUL in a capability', with_({ capabilities: ['a\x00'] }), 'agent.capabilities[0]', 'NUL'],
    ['NUL in a label key', with_({ labels: { 'a\x00': 'v' } }), 'agent.labels', 'NUL'],
    ['NUL in a label value', with_({ labels: { a: '\x00' } }), 'agent.labels["a"]', 'NUL'],
    ['lone surrogate', with_({ description: 'x\ud800y' }), 'agent.description', 'unpaired surrogates'],
    [
      'whole agent too large',
      with_({ labels: manyEntries(MAX_LABELS, '😀'.repeat(MAX_LABEL_VALUE_CHARS)) }),
      'agent',
      `at most ${MAX_AGENT_BYTES} bytes`,
    ],
  ];

  it.each(cases)('%s', (_label, input, field, fragment) => {
    const err = rejection(() => validateAgentSpec(input));
    expect(err.field).toBe(field);
    expect(err.message.startsWith(field)).toBe(true);
    expect(err.message).toContain(fragment);
  });

  it('accepts every field exactly at its limit', () => {
    const spec = validateAgentSpec({
      id: 'i'.repeat(MAX_ID_CHARS),
      name: 'n'.repeat(MAX_NAME_CHARS),
      kind: 'k'.repeat(MAX_KIND_CHARS),
      version: 'v'.repeat(MAX_VERSION_CHARS),
      description: 'd'.repeat(MAX_DESCRIPTION_BYTES),
      capabilities: Array.from({ length: MAX_CAPABILITIES }, (_, i) => `${i}`.padEnd(MAX_CAPABILITY_CHARS, 'c')),
      endpoints: { ['e'.repeat(MAX_ENDPOINT_KEY_CHARS)]: 'u'.repeat(MAX_ENDPOINT_VALUE_CHARS) },
      labels: { ['k'.repeat(MAX_LABEL_KEY_CHARS)]: 'v'.repeat(MAX_LABEL_VALUE_CHARS) },
    });
    expect(spec.capabilities).toHaveLength(MAX_CAPABILITIES);
    expect(agentSpecBytes(spec)).toBeLessThanOrEqual(MAX_AGENT_BYTES);
  });

  it('counts characters as code points: an emoji name of MAX_NAME_CHARS passes', () => {
    expect(validateAgentSpec(with_({ name: '😀'.repeat(MAX_NAME_CHARS) })).name).toHaveLength(MAX_NAME_CHARS * 2);
    expect(rejection(() => validateAgentSpec(with_({ name: '😀'.repeat(MAX_NAME_CHARS + 1) }))).field).toBe('agent.name');
  });

  it('uses the given path prefix', () => {
    expect(rejection(() => validateAgentSpec({ id: '' }, 'agents[4]')).field).toBe('agents[4].id');
  });

  /** Mutations that each push one field over its limit, with the field the error must name. */
  const overLimitArb: fc.Arbitrary<[Record<string, unknown>, string]> = fc.oneof(
    fc.integer({ min: 1, max: 50 }).map((k): [Record<string, unknown>, string] => [with_({ id: 'a'.repeat(MAX_ID_CHARS + k) }), 'agent.id']),
    fc.constantFrom(' ', '#', '\x00', 'é', '?').map((c): [Record<string, unknown>, string] => [with_({ id: `ab${c}` }), 'agent.id']),
    fc.integer({ min: 1, max: 50 }).map((k): [Record<string, unknown>, string] => [with_({ name: 'n'.repeat(MAX_NAME_CHARS + k) }), 'agent.name']),
    fc.integer({ min: 1, max: 50 }).map((k): [Record<string, unknown>, string] => [with_({ kind: 'k'.repeat(MAX_KIND_CHARS + k) }), 'agent.kind']),
    fc.integer({ min: 1, max: 50 }).map((k): [Record<string, unknown>, string] => [with_({ version: 'v'.repeat(MAX_VERSION_CHARS + k) }), 'agent.version']),
    fc.integer({ min: 1, max: 50 }).map((k): [Record<string, unknown>, string] => [with_({ description: 'd'.repeat(MAX_DESCRIPTION_BYTES + k) }), 'agent.description']),
    fc.integer({ min: 1, max: 10 }).map((k): [Record<string, unknown>, string] => [
      with_({ capabilities: Array.from({ length: MAX_CAPABILITIES + k }, (_, i) => `c${i}`) }),
      'agent.capabilities',
    ]),
    fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 20 })).map(([at, k]): [Record<string, unknown>, string] => {
      const caps = ['a', 'b', 'c', 'd', 'e', 'f'];
      caps[at] = 'x'.repeat(MAX_CAPABILITY_CHARS + k);
      return [with_({ capabilities: caps }), `agent.capabilities[${at}]`];
    }),
    fc.integer({ min: 1, max: 10 }).map((k): [Record<string, unknown>, string] => [with_({ endpoints: manyEntries(MAX_ENDPOINTS + k) }), 'agent.endpoints']),
    fc.integer({ min: 1, max: 20 }).map((k): [Record<string, unknown>, string] => [
      with_({ endpoints: { grpc: 'u'.repeat(MAX_ENDPOINT_VALUE_CHARS + k) } }),
      'agent.endpoints["grpc"]',
    ]),
    fc.integer({ min: 1, max: 10 }).map((k): [Record<string, unknown>, string] => [with_({ labels: manyEntries(MAX_LABELS + k) }), 'agent.labels']),
    fc.integer({ min: 1, max: 20 }).map((k): [Record<string, unknown>, string] => [with_({ labels: { ['k'.repeat(MAX_LABEL_KEY_CHARS + k)]: 'v' } }), 'agent.labels']),
    fc.integer({ min: 1, max: 20 }).map((k): [Record<string, unknown>, string] => [
      with_({ labels: { env: 'v'.repeat(MAX_LABEL_VALUE_CHARS + k) } }),
      'agent.labels["env"]',
    ]),
  );

  it('any over-limit field is rejected, naming the field (property)', () => {
    fc.assert(
      fc.property(overLimitArb, ([input, field]) => {
        const err = rejection(() => validateAgentSpec(input));
        expect(err.field).toBe(field);
        expect(err.message.startsWith(field)).toBe(true);
      }),
    );
  });
});

describe('validateFindQuery', () => {
  it('fills defaults and keeps given filters', () => {
    expect(validateFindQuery(undefined)).toEqual({ capability: '', capabilityPrefix: '', kind: '', labels: {}, health: 'unspecified', namePrefix: '', verifiedOnly: false, pageSize: 0, pageToken: '' });
    expect(validateFindQuery({ capability: 'npm', labels: { b: '1', a: '' }, pageSize: 10 })).toEqual({
      capability: 'npm',
      capabilityPrefix: '',
      kind: '',
      labels: { a: '', b: '1' },
      health: 'unspecified',
      namePrefix: '',
      verifiedOnly: false,
      pageSize: 10,
      pageToken: '',
    });
  });

  it('accepts a health filter in any spelling and a name prefix', () => {
    expect(validateFindQuery({ health: 'HEALTH_NOT_SERVING', namePrefix: 'io.github.' })).toMatchObject({ health: 'notServing', namePrefix: 'io.github.' });
    expect(validateFindQuery({ health: 'degraded' }).health).toBe('degraded');
    expect(validateFindQuery({ health: 1 }).health).toBe('serving');
    expect(validateFindQuery({ namePrefix: 'n'.repeat(MAX_NAME_CHARS) }).namePrefix).toHaveLength(MAX_NAME_CHARS);
    expect(rejection(() => validateFindQuery({ health: 'HEALTHY' })).field).toBe('query.health');
    expect(rejection(() => validateFindQuery({ health: 4 })).field).toBe('query.health');
    expect(rejection(() => validateFindQuery({ namePrefix: 'n'.repeat(MAX_NAME_CHARS + 1) })).field).toBe('query.namePrefix');
    expect(rejection(() => validateFindQuery({ namePrefix: 'a\x00' })).field).toBe('query.namePrefix');
    expect(rejection(() => validateFindQuery({ namePrefix: 3 })).field).toBe('query.namePrefix');
  });

  it('rejects bad filters, naming the field', () => {
    expect(rejection(() => validateFindQuery({ pageSize: -1 })).field).toBe('query.pageSize');
    expect(rejection(() => validateFindQuery({ pageSize: 1.5 })).field).toBe('query.pageSize');
    expect(rejection(() => validateFindQuery({ capability: 'c'.repeat(MAX_CAPABILITY_CHARS + 1) })).field).toBe('query.capability');
    expect(rejection(() => validateFindQuery({ kind: 'a\x00' })).field).toBe('query.kind');
    expect(rejection(() => validateFindQuery({ labels: { '': 'x' } })).field).toBe('query.labels');
    expect(rejection(() => validateFindQuery({ pageToken: 't'.repeat(MAX_PAGE_TOKEN_CHARS + 1) })).field).toBe('query.pageToken');
    expect(rejection(() => validateFindQuery({ limit: 3 })).field).toBe('query.limit');
  });
});

describe('validateTtlSeconds', () => {
  it('accepts 0 (no lease), absence, and whole seconds within the bounds', () => {
    expect(validateTtlSeconds(0)).toBe(0);
    expect(validateTtlSeconds(undefined)).toBe(0);
    expect(validateTtlSeconds(MIN_TTL_SECONDS)).toBe(MIN_TTL_SECONDS);
    expect(validateTtlSeconds(MAX_TTL_SECONDS)).toBe(MAX_TTL_SECONDS);
    expect(validateTtlSeconds(30)).toBe(30);
  });

  it('rejects leases outside the bounds and non-integers, naming the field', () => {
    for (const bad of [MIN_TTL_SECONDS - 1, 1, MAX_TTL_SECONDS + 1, -5, 2.5, '30', Number.NaN, Infinity]) {
      expect(rejection(() => validateTtlSeconds(bad)).field).toBe('ttl_seconds');
    }
    expect(rejection(() => validateTtlSeconds(1, 'lease')).field).toBe('lease');
  });

  it('keeps the shortest lease longer than a failover (1.5 election timeouts of at most 2 s)', () => {
    expect(MIN_TTL_SECONDS).toBeGreaterThanOrEqual(3);
  });
});

describe('validateHealth', () => {
  it('maps proto names, numbers and internal names to the internal names', () => {
    const cases: [unknown, string][] = [
      ['HEALTH_UNSPECIFIED', 'unspecified'],
      ['HEALTH_SERVING', 'serving'],
      ['HEALTH_DEGRADED', 'degraded'],
      ['HEALTH_NOT_SERVING', 'notServing'],
      [0, 'unspecified'],
      [1, 'serving'],
      [2, 'degraded'],
      [3, 'notServing'],
      ['unspecified', 'unspecified'],
      ['serving', 'serving'],
      ['degraded', 'degraded'],
      ['notServing', 'notServing'],
    ];
    for (const [input, want] of cases) expect(validateHealth(input)).toBe(want);
  });

  it('rejects anything else, naming the field', () => {
    for (const bad of [undefined, null, 4, -1, 1.5, 'SERVING', 'not_serving', 'HEALTH_UNKNOWN', {}, []]) {
      expect(rejection(() => validateHealth(bad)).field).toBe('health');
    }
    expect(rejection(() => validateHealth('x', 'agent.health')).field).toBe('agent.health');
  });
});

describe('error messages are well-formed Unicode (they become gRPC status details)', () => {
  // Found by test/fuzz/api.fuzz.test.ts: a card of emoji made JSON.parse quote half a surrogate
  // pair in its message; grpc-js percent-encodes status details with encodeURI, which threw
  // URIError outside any handler and killed the node.
  it('wellFormed replaces unpaired surrogates and keeps pairs', () => {
    expect(wellFormed('a\uD800b\uDFFFc')).toBe('a\uFFFDb\uFFFDc');
    expect(wellFormed('\u{1F600}')).toBe('\u{1F600}');
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const w = wellFormed(s);
        expect(() => encodeURI(w)).not.toThrow();
        if (!/\p{Surrogate}/u.test(s)) expect(w).toBe(s);
      }),
    );
  });

  it('a ValidationError quoting a lone surrogate has a message encodeURI accepts', () => {
    const e = new ValidationError('agent.card', 'is not valid JSON (Unexpected token, "x\uD83D"...)');
    expect(() => encodeURI(e.message)).not.toThrow();
    expect(e.message).toContain('\uFFFD');
  });
});
