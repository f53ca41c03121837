/**
 * The gRPC serializers of Get, Find and Search copy each agent's kept encoding instead of
 * encoding it per answer (`src/api/agent-encoding.ts`). Whatever they write must decode, with
 * the service's own deserializer, to exactly what proto-loader's serializer would have sent:
 * checked over random agents, leases, cards, scores and answers, and for the same `Agent`
 * answered again (the kept bytes) with a different lease and without its card.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { serializeFindResponse, serializeGetResponse, serializeSearchResponse, wireAgentOf, withKeptAgentEncodings } from '../../src/api/agent-encoding.js';
import { agentToWire, RegistryService } from '../../src/api/registry-proto.js';
import type { Agent, Health } from '../../src/registry/types.js';

const word = fc.string({ minLength: 1, maxLength: 12 });
const HEALTHS: Health[] = ['unspecified', 'serving', 'degraded', 'notServing'];

/** Random stored agents: the fields a record carries, with and without a card. */
const agentArb: fc.Arbitrary<Agent> = fc
  .record({
    id: word,
    name: word,
    kind: fc.constantFrom('mcp-server', 'a2a-agent', 'service'),
    version: fc.constantFrom('1.0.0', '2.1.3'),
    description: fc.string({ maxLength: 200 }),
    capabilities: fc.array(word, { maxLength: 5 }),
    endpoints: fc.dictionary(word, word, { maxKeys: 3 }),
    labels: fc.dictionary(word, word, { maxKeys: 3 }),
    card: fc.option(fc.string({ minLength: 1, maxLength: 100 }), { nil: undefined }),
    createRevision: fc.integer({ min: 1, max: 1000 }),
    bump: fc.integer({ min: 0, max: 1000 }),
    ttlSeconds: fc.integer({ min: 0, max: 3600 }),
    health: fc.constantFrom(...HEALTHS),
  })
  .map(({ bump, card, ...a }) => ({ ...a, modRevision: a.createRevision + bump, ...(card === undefined ? {} : { card, cardFormat: 'mcpServerJson' as const }) }));

/** Unix ms of a lease deadline, or 0 for none. */
const leaseArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 41 }));

/** What proto-loader's own serializer would have sent, decoded. */
const expected = (method: 'Get' | 'Find' | 'Search', res: unknown): unknown => RegistryService[method].responseDeserialize(RegistryService[method].responseSerialize(res as never));
const decoded = (method: 'Get' | 'Find' | 'Search', bytes: Buffer): unknown => RegistryService[method].responseDeserialize(bytes);

describe('kept agent encodings in Get, Find and Search answers', () => {
  it('decode to what proto-loader would have sent, first and again, with and without the card and a lease', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(agentArb, fc.boolean(), leaseArb, leaseArb, fc.double({ min: 0.001, max: 100, noNaN: true })), { maxLength: 6 }),
        fc.string({ maxLength: 20 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (rows, token, revision) => {
          // Each agent is answered twice: the second answer copies the bytes kept by the first.
          for (const round of [0, 1]) {
            const wires = rows.map(([agent, withCard, lease1, lease2]) => wireAgentOf(agent, withCard, round === 0 ? lease1 : lease2, () => agentToWire(agent)));
            const find = { agents: wires, next_page_token: token, revision };
            expect(decoded('Find', serializeFindResponse(find))).toEqual(expected('Find', find));
            const search = { results: wires.map((agent, i) => ({ agent, score: (rows[i] as [unknown, unknown, unknown, unknown, number])[4] })), next_page_token: token, revision };
            expect(decoded('Search', serializeSearchResponse(search))).toEqual(expected('Search', search));
            for (const agent of wires) {
              const get = { agent, revision };
              expect(decoded('Get', serializeGetResponse(get))).toEqual(expected('Get', get));
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('encode a wire agent that did not come from wireAgentOf whole, and an empty answer as proto-loader does', () => {
    const agent: Agent = { id: 'a', name: 'a', kind: 'service', version: '1.0.0', description: 'd', capabilities: ['x'], endpoints: {}, labels: { env: 'prod' }, createRevision: 3, modRevision: 4, ttlSeconds: 10, health: 'serving' };
    const plain = { ...agentToWire(agent), lease_expires_unix_ms: 1234 };
    const find = { agents: [plain], next_page_token: 'n', revision: 9 };
    expect(decoded('Find', serializeFindResponse(find))).toEqual(expected('Find', find));
    const emptyFind = { agents: [], next_page_token: '', revision: 0 };
    expect(decoded('Find', serializeFindResponse(emptyFind))).toEqual(expected('Find', emptyFind));
    const emptySearch = { results: [], next_page_token: '', revision: 0 };
    expect(decoded('Search', serializeSearchResponse(emptySearch))).toEqual(expected('Search', emptySearch));
    expect(decoded('Get', serializeGetResponse({ agent: null, revision: 5 } as never))).toEqual(expected('Get', { agent: null, revision: 5 }));
  });

  it('keeps one frozen wire form per Agent object and slot, a copy when the lease is set', () => {
    const agent: Agent = { id: 'a', name: 'a', kind: 'service', version: '1.0.0', description: 'd', capabilities: [], endpoints: {}, labels: {}, card: '{}', cardFormat: 'a2aAgentCard', createRevision: 1, modRevision: 1, ttlSeconds: 0, health: 'unspecified' };
    let builds = 0;
    const build = () => (builds++, agentToWire(agent));
    const a = wireAgentOf(agent, false, 0, build);
    expect(wireAgentOf(agent, false, 0, build)).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(a.card).toBe('');
    expect(wireAgentOf(agent, true, 0, build).card).toBe('{}');
    const leased = wireAgentOf(agent, false, 99, build);
    expect(leased).not.toBe(a);
    expect(leased.lease_expires_unix_ms).toBe(99);
    expect(builds).toBe(2);
    // A different object with the same fields is a different record as far as the cache knows.
    expect(wireAgentOf({ ...agent }, false, 0, build)).not.toBe(a);
    expect(builds).toBe(3);
  });

  it('replace the response serializers of Get, Find and Search only', () => {
    const def = withKeptAgentEncodings(RegistryService);
    for (const [name, method] of Object.entries(def)) {
      const replaced = method.responseSerialize !== (RegistryService as unknown as Record<string, typeof method>)[name]?.responseSerialize;
      expect([name, replaced]).toEqual([name, ['Get', 'Find', 'Search'].includes(name)]);
    }
  });
});
