/**
 * Native card formats (issue 11, "Native formats" and "Import"): A2A AgentCards (v1.0 and v0.3)
 * and MCP server.json (schema 2025-12-11) are validated against the official schemas, their
 * indexed fields derived exactly as documented in `src/registry/formats/`, and the card is
 * stored and read back byte for byte.
 *
 * Fixtures (test/registry/fixtures/formats/): the sample AgentCard of the A2A specification
 * (`a2aproject/A2A` docs/specification.md §8.5, protocol 0.3.0) as published, the same card in
 * the v1.0 shape of `specification/a2a.proto`, the development seed of the official MCP registry
 * (`modelcontextprotocol/registry` data/seed.json: four valid server.json and one the schema
 * refuses), and a server.json with remotes and publisher-provided tools built from the schema's
 * own examples.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { agentToWire, specFromWire } from '../../src/api/registry-proto.js';
import { Code, toApiError } from '../../src/api/status.js';
import { decodeCommand, encodeCommand, registryPackr } from '../../src/registry/commands.js';
import { CardValidationError, cardAgentId, detectCardFormat, specFromCard } from '../../src/registry/formats/card.js';
import { MCP_PUBLISHER_META_KEY } from '../../src/registry/formats/mcp-server.js';
import { decodeAgentRecord, encodeAgentRecord } from '../../src/registry/records.js';
import { parseImportFile, parseImportFiles } from '../../src/registry/seed.js';
import { RegistryStateMachine } from '../../src/registry/state-machine.js';
import type { Agent, AgentSpec } from '../../src/registry/types.js';
import { MAX_CAPABILITIES, MAX_CARD_BYTES, ValidationError } from '../../src/registry/validation.js';
import { logIndex, term } from '../../src/raft/types.js';
import { MemoryStore } from '../../src/storage/memory-store.js';

const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`./fixtures/formats/${name}`, import.meta.url)), 'utf8');
const A2A_V03 = fixture('a2a-v0.3-sample-agent-card.json');
const A2A_V10 = fixture('a2a-v1.0-sample-agent-card.json');
const MCP_REMOTE = fixture('mcp-server-json-remote.json');
const MCP_SEED_SAMPLE = fixture('mcp-server-json-2025-12-11-seed-sample.json');
const MCP_SEED_DOCS = JSON.parse(MCP_SEED_SAMPLE) as Record<string, unknown>[];
const SEED_2025_05_16 = readFileSync(fileURLToPath(new URL('../../data/mcp-registry-seed-2025-05-16.json', import.meta.url)), 'utf8');

/** The message of what `fn` throws (failing the test when it does not throw a ValidationError). */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect(toApiError(e, pino({ level: 'silent' })).code).toBe(Code.INVALID_ARGUMENT);
    return (e as Error).message;
  }
  throw new Error('expected a refusal, got none');
}

/** A card with `edit` applied to a deep copy of `text`'s document. */
function edited(text: string, edit: (doc: Record<string, any>) => void): string {
  const doc = JSON.parse(text) as Record<string, any>;
  edit(doc);
  return JSON.stringify(doc, null, 2);
}

/** The spec without its card, for comparisons. */
function indexed(spec: AgentSpec): Omit<AgentSpec, 'card' | 'cardFormat'> {
  const { card: _card, cardFormat: _format, ...rest } = spec;
  return rest;
}

const GEO_DESCRIPTION =
  'Provides advanced route planning, traffic analysis, and custom map generation services. This agent can calculate optimal routes, estimate travel times considering real-time traffic, and create personalized maps with points of interest.';
const GEO_SPEC = {
  id: 'GeoSpatial-Route-Planner-Agent@1.2.0',
  name: 'GeoSpatial Route Planner Agent',
  kind: 'a2a-agent',
  version: '1.2.0',
  description: GEO_DESCRIPTION,
  capabilities: [
    'input:application/json',
    'input:text/plain',
    'output:application/json',
    'output:image/png',
    'skill:custom-map-generator',
    'skill:route-optimizer-traffic',
    'tag:cartography',
    'tag:customization',
    'tag:directions',
    'tag:maps',
    'tag:navigation',
    'tag:routing',
    'tag:traffic',
    'tag:visualization',
  ],
  endpoints: {
    grpc: 'https://georoute-agent.example.com/a2a/grpc',
    'http+json': 'https://georoute-agent.example.com/a2a/json',
    jsonrpc: 'https://georoute-agent.example.com/a2a/v1',
  },
  labels: { 'provider.organization': 'Example Geo Services Inc.', 'provider.url': 'https://www.examplegeoservices.com' },
};

describe('A2A AgentCard: derived fields', () => {
  it('v0.3 (the specification sample): skills, tags, default media types, url + preferredTransport + additionalInterfaces, provider', () => {
    const spec = specFromCard({ card: A2A_V03 });
    expect(indexed(spec)).toEqual(GEO_SPEC);
    expect(spec.cardFormat).toBe('a2aAgentCard');
    expect(spec.card).toBe(A2A_V03);
  });

  it('v1.0 (the same card as a2a.proto shapes it): one endpoint per supportedInterfaces entry, named by its protocolBinding', () => {
    expect(indexed(specFromCard({ card: A2A_V10 }))).toEqual(GEO_SPEC);
  });

  it('v0.3: the main url defaults to JSONRPC; a second interface of one binding at another URL is <binding>-2', () => {
    const card = edited(A2A_V03, (d) => {
      delete d.preferredTransport;
      d.additionalInterfaces = [
        { url: 'https://a.example.com/grpc', transport: 'GRPC' },
        { url: 'https://b.example.com/grpc', transport: 'GRPC' },
      ];
    });
    expect(specFromCard({ card }).endpoints).toEqual({
      jsonrpc: 'https://georoute-agent.example.com/a2a/v1',
      grpc: 'https://a.example.com/grpc',
      'grpc-2': 'https://b.example.com/grpc',
    });
  });

  it('skill-level media types and empty tags derive nothing; duplicate tags once', () => {
    const card = edited(A2A_V10, (d) => {
      d.skills = [{ id: 's', name: 'S', description: 'd', tags: ['x', 'x', ''], inputModes: ['audio/wav'] }];
      d.defaultInputModes = [];
      d.defaultOutputModes = ['text/plain'];
      delete d.provider;
    });
    const spec = specFromCard({ card });
    expect(spec.capabilities).toEqual(['output:text/plain', 'skill:s', 'tag:x']);
    expect(spec.labels).toEqual({});
  });
});

describe('MCP server.json: derived fields', () => {
  it('packages → package:<registryType> and transport:<type>; repository endpoint; source label (the official dev seed)', () => {
    const spec = specFromCard({ card: JSON.stringify(MCP_SEED_DOCS[0]) });
    expect(indexed(spec)).toEqual({
      id: 'io.github.domdomegg/airtable-mcp-server@1.7.2',
      name: 'io.github.domdomegg/airtable-mcp-server',
      kind: 'mcp-server',
      version: '1.7.2',
      description: 'Read and write access to Airtable database schemas, tables, and records.',
      capabilities: ['package:mcpb', 'package:npm', 'package:oci', 'transport:stdio'],
      endpoints: { repository: 'https://github.com/domdomegg/airtable-mcp-server.git' },
      labels: { source: 'github' },
    });
  });

  it('two versions of one server are two ids, <name>@<version>', () => {
    const ids = MCP_SEED_DOCS.slice(0, 2).map((d) => specFromCard({ card: JSON.stringify(d) }).id);
    expect(ids).toEqual(['io.github.domdomegg/airtable-mcp-server@1.7.2', 'io.github.domdomegg/airtable-mcp-server@1.7.3']);
  });

  it('remotes → endpoints by transport, transport:<type> and remote; publisher-provided tools, resources, prompts; title, websiteUrl', () => {
    const spec = specFromCard({ card: MCP_REMOTE });
    expect(indexed(spec)).toEqual({
      id: 'io.github.example/weather@1.0.2',
      name: 'io.github.example/weather',
      kind: 'mcp-server',
      version: '1.0.2',
      description: 'MCP server providing weather data and forecasts via OpenWeatherMap API',
      capabilities: ['prompt:plan_trip', 'remote', 'resource:weather://cities', 'tool:get_alerts', 'tool:get_forecast', 'transport:sse', 'transport:streamable-http'],
      endpoints: {
        repository: 'https://github.com/modelcontextprotocol/servers',
        sse: 'https://mcp-fs.example.com/sse',
        'streamable-http': 'https://api.example.com/mcp',
        website: 'https://modelcontextprotocol.io/examples',
      },
      labels: { source: 'github', title: 'Weather API' },
    });
    // Everything else stays in the card, unchanged.
    const stored = JSON.parse(spec.card as string) as Record<string, any>;
    expect(stored._meta[MCP_PUBLISHER_META_KEY].tool).toBe('publisher-cli');
    expect(stored.repository.subfolder).toBe('src/everything');
  });

  it('refuses publisher-provided tools of the wrong shape, naming the path (the schema leaves that object free)', () => {
    const card = edited(MCP_REMOTE, (d) => {
      d._meta[MCP_PUBLISHER_META_KEY].tools = [{ name: 'ok' }, { title: 'no name' }];
    });
    expect(refusal(() => specFromCard({ card }))).toBe('agent.card: /_meta/io.modelcontextprotocol.registry~1publisher-provided/tools/1/name is required');
  });
});

describe('validation against the official schemas', () => {
  const requiredV03 = ['capabilities', 'defaultInputModes', 'defaultOutputModes', 'description', 'name', 'protocolVersion', 'skills', 'url', 'version'];
  it.each(requiredV03)('A2A v0.3: a card without /%s is refused naming it', (field) => {
    const card = edited(A2A_V03, (d) => delete d[field]);
    expect(refusal(() => specFromCard({ card }))).toBe(`agent.card: /${field} is required`);
  });

  const requiredV10 = ['name', 'description', 'supportedInterfaces', 'version', 'capabilities', 'defaultInputModes', 'defaultOutputModes', 'skills'];
  it.each(requiredV10)('A2A v1.0: a card without /%s is refused naming it', (field) => {
    const card = edited(A2A_V10, (d) => delete d[field]);
    expect(refusal(() => specFromCard({ card }))).toBe(`agent.card: /${field} is required`);
  });

  it.each([
    ['skills/0/id', (d: Record<string, any>) => delete d.skills[0].id],
    ['skills/1/tags', (d: Record<string, any>) => delete d.skills[1].tags],
    ['supportedInterfaces/2/protocolBinding', (d: Record<string, any>) => delete d.supportedInterfaces[2].protocolBinding],
    ['provider/url', (d: Record<string, any>) => delete d.provider.url],
    ['signatures/0/signature', (d: Record<string, any>) => delete d.signatures[0].signature],
  ])('A2A v1.0: a nested required field missing is refused naming it: /%s', (path, edit) => {
    expect(refusal(() => specFromCard({ card: edited(A2A_V10, edit) }))).toBe(`agent.card: /${path} is required`);
  });

  it.each(['name', 'description', 'version'])('MCP: a server.json without /%s is refused naming it', (field) => {
    const card = edited(MCP_REMOTE, (d) => delete d[field]);
    expect(refusal(() => specFromCard({ card, cardFormat: 'mcpServerJson' }))).toBe(`agent.card: /${field} is required`);
  });

  it('MCP: nested required fields: a package without transport, a remote without url', () => {
    const noTransport = edited(JSON.stringify(MCP_SEED_DOCS[2]), (d) => delete d.packages[0].transport);
    expect(refusal(() => specFromCard({ card: noTransport }))).toBe('agent.card: /packages/0/transport is required');
    const noUrl = edited(MCP_REMOTE, (d) => delete d.remotes[1].url);
    expect(refusal(() => specFromCard({ card: noUrl }))).toMatch(/^agent\.card: \/remotes\/1(\/url)? /);
  });

  it('the entry of the official dev seed that the schema refuses (kbag) is refused naming a path', () => {
    const kbag = MCP_SEED_DOCS.find((d) => String(d.name).includes('kbag'));
    expect(kbag).toBeDefined();
    expect(refusal(() => specFromCard({ card: JSON.stringify(kbag), cardFormat: 'mcpServerJson' }))).toMatch(/^agent\.card: \/(name|packages\/0\/transport) /);
  });

  it.each([
    ['A2A v0.3', '/skills/0/id must be string', A2A_V03, (d: Record<string, any>) => (d.skills[0].id = 7)],
    ['A2A v0.3', '/capabilities must be object', A2A_V03, (d: Record<string, any>) => (d.capabilities = 'all')],
    ['A2A v0.3', '/additionalInterfaces/1/url must be string', A2A_V03, (d: Record<string, any>) => (d.additionalInterfaces[1].url = null)],
    ['A2A v1.0', '/skills/1/tags must be array', A2A_V10, (d: Record<string, any>) => (d.skills[1].tags = 'maps')],
    ['A2A v1.0', '/capabilities/streaming must be boolean', A2A_V10, (d: Record<string, any>) => (d.capabilities.streaming = 'yes')],
    ['A2A v1.0', '/securitySchemes/google must NOT have more than 1 properties', A2A_V10, (d: Record<string, any>) => (d.securitySchemes.google.mtlsSecurityScheme = {})],
    ['MCP', '/version must be string', MCP_REMOTE, (d: Record<string, any>) => (d.version = 1)],
    ['MCP', '/remotes must be array', MCP_REMOTE, (d: Record<string, any>) => (d.remotes = {})],
    ['MCP', '/websiteUrl must match format "uri"', MCP_REMOTE, (d: Record<string, any>) => (d.websiteUrl = 'not a url')],
  ])('%s: a wrong type is refused naming its path: %s', (_format, message, text, edit) => {
    expect(refusal(() => specFromCard({ card: edited(text, edit) }))).toBe(`agent.card: ${message}`);
  });

  it('refuses what is not a JSON object, and a card it cannot tell the format of', () => {
    expect(refusal(() => specFromCard({ card: '{"name": ' }))).toMatch(/^agent\.card: \(document\) is not valid JSON/);
    expect(refusal(() => specFromCard({ card: '[]' }))).toBe('agent.card: (document) must be a JSON object');
    expect(refusal(() => specFromCard({ card: '{"hello": "world"}' }))).toMatch(/^agent\.cardFormat is required/);
  });

  it('a card of one format registered as the other is checked against the other schema', () => {
    expect(refusal(() => specFromCard({ card: A2A_V03, cardFormat: 'mcpServerJson' }))).toMatch(/^agent\.card: \/(name must match pattern|description must NOT have more than 100 characters)/);
  });
});

describe('limits', () => {
  it(`refuses a card over ${MAX_CARD_BYTES} bytes, and accepts one of exactly that size`, () => {
    const pad = (n: number) => edited(MCP_REMOTE, (d) => (d._meta.padding = '')).replace('"padding": ""', `"padding": "${'x'.repeat(n)}"`);
    const base = Buffer.byteLength(pad(0));
    expect(specFromCard({ card: pad(MAX_CARD_BYTES - base) }).card).toHaveLength(MAX_CARD_BYTES);
    expect(refusal(() => specFromCard({ card: pad(MAX_CARD_BYTES - base + 1) }))).toBe(`agent.card: (document) must be at most ${MAX_CARD_BYTES} bytes (UTF-8), got ${MAX_CARD_BYTES + 1}`);
  });

  it(`refuses a card deriving more than ${MAX_CAPABILITIES} capabilities, naming the first one over (never truncates)`, () => {
    const card = edited(A2A_V10, (d) => {
      d.defaultInputModes = [];
      d.defaultOutputModes = [];
      d.skills = Array.from({ length: 40 }, (_, i) => ({ id: `s${i}`, name: 'n', description: 'd', tags: [`t${i}`] }));
    });
    // s0 t0 s1 t1 … : the 65th distinct capability is the id of skill 32.
    expect(refusal(() => specFromCard({ card }))).toMatch(/^agent\.card: \/skills\/32\/id derives more than 64 capabilities/);
    const fits = edited(card, (d) => (d.skills = d.skills.slice(0, 32)));
    expect(specFromCard({ card: fits }).capabilities).toHaveLength(64);
  });

  it('refuses a derived capability, label or endpoint over its limit, naming the card path', () => {
    const longTag = edited(A2A_V10, (d) => (d.skills[0].tags[2] = 'x'.repeat(125)));
    expect(refusal(() => specFromCard({ card: longTag }))).toMatch(/^agent\.card: \/skills\/0\/tags\/2 derives capability "tag:x+…" longer than 128 characters$/);
    const longUrl = edited(A2A_V10, (d) => (d.provider.url = `https://example.com/${'p'.repeat(300)}`));
    expect(refusal(() => specFromCard({ card: longUrl }))).toMatch(/^agent\.card: \/provider\/url derives label value .* longer than 256 characters$/);
  });
});

describe('merging with fields given beside the card', () => {
  it('a given id, name and kind win; capabilities are the union; given endpoint and label keys replace derived ones', () => {
    const spec = specFromCard({
      card: A2A_V10,
      id: 'geo',
      kind: 'planner',
      capabilities: ['extra'],
      endpoints: { grpc: 'grpc://override:1' },
      labels: { env: 'prod' },
    });
    expect(spec.id).toBe('geo');
    expect(spec.kind).toBe('planner');
    expect(spec.name).toBe('GeoSpatial Route Planner Agent');
    expect(spec.capabilities).toEqual([...GEO_SPEC.capabilities, 'extra'].sort());
    expect(spec.endpoints.grpc).toBe('grpc://override:1');
    expect(spec.labels).toEqual({ ...GEO_SPEC.labels, env: 'prod' });
  });

  it('derived ids replace characters an id may not hold', () => {
    expect(cardAgentId('  My agent (beta) ', '1.0.0+build 7')).toBe('My-agent-beta@1.0.0-build-7');
    expect(refusal(() => cardAgentId('***', '1'))).toBe('agent.card: /name gives no usable agent id; set agent.id');
  });

  it('detects the format from the document', () => {
    expect(detectCardFormat(JSON.parse(A2A_V03))).toBe('a2aAgentCard');
    expect(detectCardFormat(JSON.parse(A2A_V10))).toBe('a2aAgentCard');
    expect(detectCardFormat(MCP_SEED_DOCS[3])).toBe('mcpServerJson');
    expect(detectCardFormat({ title: 'x' })).toBeUndefined();
  });
});

describe('the wire and the records', () => {
  it('RegisterRequest.agent with only a card (and a format) becomes the derived spec; card_format without card is refused', () => {
    const spec = specFromWire({ card: MCP_REMOTE, card_format: 'CARD_FORMAT_MCP_SERVER_JSON' });
    expect(spec.id).toBe('io.github.example/weather@1.0.2');
    expect(spec.cardFormat).toBe('mcpServerJson');
    expect(specFromWire({ card: A2A_V03, card_format: 'CARD_FORMAT_UNSPECIFIED' }).cardFormat).toBe('a2aAgentCard');
    expect(refusal(() => specFromWire({ id: 'x', card_format: 'CARD_FORMAT_A2A_AGENT_CARD' }))).toBe('agent.card is required when card_format is set');
    expect(refusal(() => specFromWire({ id: 'x', card: '{}', card_format: 7 as never }))).toMatch(/^agent\.card_format must be/);
    expect(refusal(() => specFromWire({ card: edited(A2A_V10, (d) => (d.skills[0].id = 1)) }))).toBe('agent.card: /skills/0/id must be string');
  });

  it('an agent without a card encodes as before cards existed, and an old record decodes without one', () => {
    const agent: Agent = { ...GEO_SPEC, createRevision: 3, modRevision: 4, ttlSeconds: 0, health: 'unspecified' };
    const unpacked = registryPackr.unpack(encodeAgentRecord(agent)) as Record<string, unknown>;
    expect(Object.keys(unpacked)).not.toContain('card');
    expect(Object.keys(unpacked)).not.toContain('cardFormat');
    const decoded = decodeAgentRecord(registryPackr.pack(unpacked), 'a/x');
    expect(decoded.card).toBeUndefined();
    expect(decoded).toEqual(agent);
  });

  it('a record or command with a card keeps it exactly; a bad cardFormat is a decode error', () => {
    const spec = specFromCard({ card: A2A_V03 });
    const agent: Agent = { ...spec, createRevision: 1, modRevision: 1, ttlSeconds: 0, health: 'serving' };
    expect(decodeAgentRecord(encodeAgentRecord(agent), 'a/x').card).toBe(A2A_V03);
    const cmd = decodeCommand(encodeCommand({ type: 'register', requestId: 'r', agent: spec }));
    expect(cmd.type === 'register' && cmd.agent.card).toBe(A2A_V03);
    const bad = registryPackr.pack({ ...(registryPackr.unpack(encodeAgentRecord(agent)) as object), cardFormat: 'pdf' });
    expect(() => decodeAgentRecord(bad, 'a/x')).toThrow(/cardFormat/);
  });
});

describe('round trip through the state machine: register → get → the same bytes', () => {
  let sm: RegistryStateMachine | undefined;
  afterEach(() => {
    sm = undefined;
  });

  const cards: [string, string][] = [
    ['A2A v0.3 specification sample', A2A_V03],
    ['A2A v1.0 sample', A2A_V10],
    ['MCP server.json with remotes and tools', MCP_REMOTE],
    ...MCP_SEED_DOCS.filter((d) => !String(d.name).includes('kbag')).map((d, i): [string, string] => [`MCP dev seed entry ${i}`, JSON.stringify(d, null, 4)]),
    ['a card with non-ASCII text and odd spacing', edited(A2A_V10, (d) => (d.description = 'Planificación de rutas — 路线规划 🚗')).replace(/\n/g, '\r\n') + '\n\n'],
  ];

  it.each(cards)('%s', async (_name, card) => {
    const store = new MemoryStore();
    sm = new RegistryStateMachine(store, pino({ level: 'silent' }));
    await sm.open();
    const spec = specFromWire({ card });
    const batch = store.batch();
    const data = encodeCommand({ type: 'register', requestId: 'r1', agent: spec });
    await sm.applyEntries([{ index: logIndex(1), term: term(1), type: 'normal', data }], batch);
    await batch.write();
    sm.commitApplied(batch);
    const stored = await sm.get(spec.id);
    const wire = agentToWire(stored as Agent);
    expect(Buffer.compare(Buffer.from(wire.card, 'utf8'), Buffer.from(card, 'utf8'))).toBe(0);
    expect(wire.card_format).toBe(spec.cardFormat === 'a2aAgentCard' ? 'CARD_FORMAT_A2A_AGENT_CARD' : 'CARD_FORMAT_MCP_SERVER_JSON');
  });
});

describe('registry import: the format of a file, detected', () => {
  it('the 2025-05-16 seed list still imports exactly as before: 464 agents, 7 invalid', () => {
    const r = parseImportFiles([{ source: 'seed.json', text: SEED_2025_05_16 }]);
    expect(r.formats).toEqual({ 'seed.json': 'mcp-seed-2025-05-16' });
    expect(r.agents).toHaveLength(464);
    expect(r.invalid).toHaveLength(7);
    expect(r.agents.every((a) => a.card === undefined)).toBe(true);
  });

  it('a JSON array of server.json documents: each valid one imported, the invalid one reported with its schema path, the rest goes on', () => {
    const r = parseImportFile(MCP_SEED_SAMPLE, 'sample.json');
    expect(r.format).toBe('cards');
    expect(r.agents.map((a) => a.id)).toEqual([
      'io.github.domdomegg/airtable-mcp-server@1.7.2',
      'io.github.domdomegg/airtable-mcp-server@1.7.3',
      'io.github.domdomegg/time-mcp-nuget@1.0.8',
      'io.github.domdomegg/time-mcp-pypi@1.0.6',
    ].filter((id) => r.agents.some((a) => a.id === id)));
    expect(r.agents).toHaveLength(4);
    expect(r.invalid).toHaveLength(1);
    expect(r.invalid[0]?.reason).toMatch(/^card: \/(name|packages\/0\/transport) /);
    expect(r.invalid[0]?.name).toMatch(/kbag/);
  });

  it('JSON Lines of documents of both formats, keeping each line as the card; a broken line is reported', () => {
    const lines = [JSON.stringify(JSON.parse(A2A_V03)), '', JSON.stringify(MCP_SEED_DOCS[2]), '{"broken": ', JSON.stringify(JSON.parse(A2A_V10))].join('\n');
    const r = parseImportFile(lines, 'cards.jsonl');
    expect(r.agents.map((a) => a.cardFormat)).toEqual(['a2aAgentCard', 'mcpServerJson', 'a2aAgentCard']);
    expect(r.agents[1]?.card).toBe(JSON.stringify(MCP_SEED_DOCS[2]));
    expect(r.invalid).toEqual([{ index: 2, name: '', reason: expect.stringMatching(/^line 3 is not valid JSON/), source: 'cards.jsonl' }]);
  });

  it('a list of A2A AgentCards; one object per file keeps the file text; a directory reports a duplicate id', () => {
    const list = JSON.stringify([JSON.parse(A2A_V03), edited(A2A_V10, (d) => (d.skills[0].id = false))].map((x) => (typeof x === 'string' ? JSON.parse(x) : x)));
    const r = parseImportFiles([
      { source: 'a.json', text: list },
      { source: 'b.json', text: A2A_V10 },
    ]);
    expect(r.formats).toEqual({ 'a.json': 'cards', 'b.json': 'cards' });
    expect(r.agents.map((a) => a.id)).toEqual(['GeoSpatial-Route-Planner-Agent@1.2.0']);
    expect(r.invalid.map((x) => [x.source, x.index, x.reason])).toEqual([
      ['a.json', 1, 'card: /skills/0/id must be string'],
      ['b.json', 0, 'duplicate id GeoSpatial-Route-Planner-Agent@1.2.0, already imported from a.json'],
    ]);
  });

  it('a file that is neither JSON nor JSON Lines is refused naming it', () => {
    expect(() => parseImportFile('not json\nat all', 'x.json')).toThrow(/^x\.json is neither JSON nor JSON Lines/);
  });

  it('card errors are CardValidationErrors carrying the pointer', () => {
    try {
      specFromCard({ card: edited(A2A_V10, (d) => delete d.skills[1].name) });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CardValidationError);
      expect((e as CardValidationError).pointer).toBe('/skills/1/name');
    }
  });
});

describe('a card that is not JSON', () => {
  // Found by test/fuzz/api.fuzz.test.ts: JSON.parse's message quotes the start of the text and can
  // cut a surrogate pair in half; the error became gRPC status details, and grpc-js's encodeURI
  // threw on it and killed the node.
  it('is refused with a well-formed message even when the parser quotes half an emoji', () => {
    for (const card of ['\u{1F600}'.repeat(200), 'x' + '\u{1F600}'.repeat(200)]) {
      let err: unknown;
      try {
        specFromCard({ card });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CardValidationError);
      const message = (err as Error).message;
      expect(message).toMatch(/not valid JSON/);
      expect(() => encodeURI(message)).not.toThrow();
    }
  });
});
