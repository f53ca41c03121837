/**
 * Native cards on a real 3-node cluster (issue 11, "Native formats" and "Serving cards back"): an
 * A2A AgentCard registered over HTTP with nothing but the card, an MCP server.json over gRPC,
 * both read back byte for byte from `GET /v1/agents/{id}/card` with an ETag (304 on
 * If-None-Match), from every node; a bad card refused with its schema path; an id that itself
 * ends in `/card` still served by Get.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../../cluster/process-cluster.js';
import { RegistryError } from '../../src/client/errors.js';
import { specFromCard } from '../../src/registry/formats/card.js';

const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`../registry/fixtures/formats/${name}`, import.meta.url)), 'utf8');
const A2A_CARD = fixture('a2a-v0.3-sample-agent-card.json');
const MCP_CARD = fixture('mcp-server-json-remote.json');

describe('agent cards on a cluster', () => {
  let cluster: ProcessCluster;
  let leader: string;
  let follower: string;

  beforeAll(async () => {
    cluster = await ProcessCluster.start(3);
    leader = await cluster.waitForLeader();
    follower = cluster.ids.find((id) => id !== leader) as string;
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('registers an A2A AgentCard over HTTP (card only), derives its fields, serves it back byte for byte with an ETag', async () => {
    const base = cluster.httpUrl(follower);
    const res = await fetch(`${base}/v1/agents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ agent: { card: A2A_CARD } }),
    });
    const body = (await res.json()) as { agent: Record<string, unknown> };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.agent.id).toBe('GeoSpatial-Route-Planner-Agent@1.2.0');
    expect(body.agent.cardFormat).toBe('CARD_FORMAT_A2A_AGENT_CARD');
    expect(body.agent.capabilities).toContain('skill:route-optimizer-traffic');
    expect(body.agent.endpoints).toEqual({
      jsonrpc: 'https://georoute-agent.example.com/a2a/v1',
      grpc: 'https://georoute-agent.example.com/a2a/grpc',
      'http+json': 'https://georoute-agent.example.com/a2a/json',
    });

    let etag = '';
    for (const id of cluster.ids) {
      const card = await fetch(`${cluster.httpUrl(id)}/v1/agents/GeoSpatial-Route-Planner-Agent@1.2.0/card`);
      expect(card.status).toBe(200);
      expect(card.headers.get('content-type')).toMatch(/^application\/json/);
      const bytes = Buffer.from(await card.arrayBuffer());
      expect(Buffer.compare(bytes, Buffer.from(A2A_CARD, 'utf8'))).toBe(0);
      const tag = card.headers.get('etag') ?? '';
      expect(tag).toMatch(/^"[0-9a-f]{64}"$/);
      if (etag !== '') expect(tag).toBe(etag); // the same on every node
      etag = tag;
    }
    const again = await fetch(`${base}/v1/agents/GeoSpatial-Route-Planner-Agent@1.2.0/card`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    const other = await fetch(`${base}/v1/agents/GeoSpatial-Route-Planner-Agent@1.2.0/card`, { headers: { 'if-none-match': '"something-else"' } });
    expect(other.status).toBe(200);
  });

  it('registers an MCP server.json over gRPC and reads the same bytes back over gRPC and HTTP', async () => {
    const client = cluster.client([leader]);
    try {
      const spec = specFromCard({ card: MCP_CARD });
      const res = await client.register(spec);
      expect(res.agent.id).toBe('io.github.example/weather@1.0.2');
      expect(res.agent.capabilities).toEqual(expect.arrayContaining(['tool:get_forecast', 'transport:streamable-http', 'remote']));
      const got = await client.get('io.github.example/weather@1.0.2');
      expect(got.agent.card).toBe(MCP_CARD);
      expect(got.agent.cardFormat).toBe('mcpServerJson');
    } finally {
      client.close();
    }
    const card = await fetch(`${cluster.httpUrl(follower)}/v1/agents/io.github.example/weather@1.0.2/card`);
    expect(card.status).toBe(200);
    expect(Buffer.compare(Buffer.from(await card.arrayBuffer()), Buffer.from(MCP_CARD, 'utf8'))).toBe(0);
  });

  it('refuses a bad card with its schema path, over HTTP and gRPC, and writes nothing', async () => {
    const bad = JSON.stringify({ ...JSON.parse(A2A_CARD), skills: [{ id: 1, name: 'x', description: 'y', tags: [] }], version: '9.9.9' });
    const res = await fetch(`${cluster.httpUrl(leader)}/v1/agents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ agent: { card: bad, cardFormat: 'CARD_FORMAT_A2A_AGENT_CARD' } }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toBe('agent.card: /skills/0/id must be string');
    const client = cluster.client([follower]);
    try {
      const err = await client.register({ id: 'x', name: '', kind: '', version: '', description: '', capabilities: [], endpoints: {}, labels: {}, card: '{"name":"a/b"}', cardFormat: 'mcpServerJson' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as RegistryError).details).toBe('agent.card: /description is required');
      const gone = await client.get('GeoSpatial-Route-Planner-Agent@9.9.9').catch((e: unknown) => e);
      expect((gone as RegistryError).codeName).toBe('NOT_FOUND');
    } finally {
      client.close();
    }
  });

  it('404 for an agent without a card; an id that itself ends in /card is served by Get', async () => {
    const base = cluster.httpUrl(follower);
    for (const id of ['plain/agent', 'plain/agent/card']) {
      const reg = await fetch(`${base}/v1/agents`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ agent: { id, name: id, kind: 'service' } }),
      });
      expect(reg.status).toBe(200);
    }
    const get = await fetch(`${base}/v1/agents/plain/agent/card`);
    expect(get.status).toBe(200);
    expect(((await get.json()) as { agent: { id: string } }).agent.id).toBe('plain/agent/card');
    const none = await fetch(`${base}/v1/agents/plain/agent/card/card`);
    expect(none.status).toBe(404);
    expect(((await none.json()) as { message: string }).message).toBe('agent "plain/agent/card" has no card');
    const absent = await fetch(`${base}/v1/agents/nobody/card`);
    expect(absent.status).toBe(404);
  });
});
