import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './run-cli.js';
import { closedAddress, startFakeRegistry, type FakeRegistry } from './fake-registry.js';

const SEED_PATH = fileURLToPath(new URL('../../data/mcp-registry-seed-2025-05-16.json', import.meta.url));


describe('registry CLI', () => {
  let fake: FakeRegistry;
  let dead: string;
  let dir: string;
  let g: string[];

  beforeAll(async () => {
    [fake, dead] = await Promise.all([startFakeRegistry('n1'), closedAddress()]);
    dir = mkdtempSync(join(tmpdir(), 'registry-cli-'));
  });
  afterAll(async () => {
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    fake.agents.clear();
    fake.always = undefined;
    g = ['--endpoints', `${dead},${fake.address}`, '--timeout', '5000'];
  });

  it('imports the real seed file: 464 registered, each invalid entry reported', async () => {
    const r = await run([...g, 'import', SEED_PATH]);
    expect(r.code).toBe(0);
    expect(fake.agents.size).toBe(464);
    const invalidLines = r.out.filter((l) => l.startsWith('invalid entry '));
    expect(invalidLines).toHaveLength(7);
    expect(invalidLines[0]).toMatch(/^invalid entry 15 \(no name\): blank entry/);
    expect(r.out.at(-1)).toMatch(/^registered 464, invalid 7, failed 0 in \d+ ms$/);
    expect(r.err).toEqual([]);
  });

  it('import --json reports counts and exits non-zero when registrations fail', async () => {
    fake.always = { code: 9, details: 'refused' }; // FAILED_PRECONDITION, not retried
    const r = await run([...g, '--json', 'import', SEED_PATH]);
    expect(r.code).toBe(1);
    const summary = JSON.parse(r.out.join('\n')) as { registered: number; invalid: unknown[]; failed: { code: string }[]; elapsedMs: number };
    expect(summary.registered).toBe(0);
    expect(summary.invalid).toHaveLength(7);
    expect(summary.failed).toHaveLength(464);
    expect(summary.failed[0]?.code).toBe('FAILED_PRECONDITION');
  });

  it('registers from a file, gets, finds by label and capability, and deregisters', async () => {
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify({ id: 'svc-1', kind: 'service', capabilities: ['search'], labels: { env: 'prod' } }));
    const reg = await run([...g, 'register', '--file', file]);
    expect(reg.code).toBe(0);
    expect(reg.out[0]).toMatch(/^registered svc-1 at revision \d+/);

    const got = await run([...g, '--json', 'get', 'svc-1', '--serializable']);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.out.join('\n')).agent).toMatchObject({ id: 'svc-1', kind: 'service', labels: { env: 'prod' } });
    expect(fake.consistencies.at(-1)).toBe('serializable');

    const human = await run([...g, 'get', 'svc-1']);
    expect(human.out.some((l) => /^capabilities:\s+search$/.test(l))).toBe(true);

    const found = await run([...g, 'find', '--label', 'env=prod', '--capability', 'search']);
    expect(found.out[0]).toMatch(/^ID\s+KIND\s+VERSION\s+CAPABILITIES$/);
    expect(found.out[1]).toMatch(/^svc-1\s+service\s+search$/);
    expect(found.out.at(-1)).toMatch(/^1 agent \(revision \d+\)$/);
    expect((await run([...g, 'find', '--label', 'env=dev'])).out.at(-1)).toMatch(/^0 agents/);

    const del = await run([...g, 'deregister', 'svc-1']);
    expect(del.out[0]).toMatch(/^deregistered svc-1 at revision \d+$/);
    expect(fake.agents.has('svc-1')).toBe(false);
  });

  it('find pages through and stops at --limit', async () => {
    await run([...g, 'import', SEED_PATH]);
    const all = await run([...g, '--json', 'find', '--capability', 'pypi', '--page-size', '7']);
    const agents = (JSON.parse(all.out.join('\n')) as { agents: { id: string }[] }).agents;
    expect(agents).toHaveLength(53);
    expect(agents.map((a) => a.id)).toEqual([...agents.map((a) => a.id)].sort());
    const limited = await run([...g, '--json', 'find', '--limit', '12', '--page-size', '5']);
    expect((JSON.parse(limited.out.join('\n')) as { agents: unknown[] }).agents).toHaveLength(12);
  });

  it('prints a status table with a row per endpoint', async () => {
    const r = await run([...g, 'status']);
    expect(r.code).toBe(0);
    expect(r.out[0]).toMatch(/^ENDPOINT\s+ID\s+ROLE\s+TERM\s+LEADER\s+COMMIT\s+APPLIED\s+SNAPSHOT\s+FIRST$/);
    expect(r.out[1]).toContain(`${dead}  error: UNAVAILABLE`);
    expect(r.out[2]).toMatch(new RegExp(`^${fake.address}\\s+n1\\s+leader\\s+2\\s+n1\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+$`));
    const none = await run(['--endpoints', dead, 'status']);
    expect(none.code).toBe(1);
  });

  it('takes the endpoints from REGISTRY_ENDPOINTS when --endpoints is not given', async () => {
    const saved = process.env.REGISTRY_ENDPOINTS;
    process.env.REGISTRY_ENDPOINTS = `${fake.address},${dead}`;
    try {
      const r = await run(['status']);
      expect(r.out).toHaveLength(3);
      expect(r.out[1]?.startsWith(fake.address)).toBe(true);
      expect(r.out[2]?.startsWith(dead)).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.REGISTRY_ENDPOINTS;
      else process.env.REGISTRY_ENDPOINTS = saved;
    }
  });

  it('prints "error: <code> <message>" and exits non-zero', async () => {
    const missing = await run([...g, 'get', 'nobody']);
    expect(missing.code).toBe(1);
    expect(missing.err).toEqual(['error: NOT_FOUND agent nobody not found']);

    const badFile = join(dir, 'bad.json');
    writeFileSync(badFile, JSON.stringify({ id: 'x', capabilities: [''] }));
    const invalid = await run([...g, 'register', '--file', badFile]);
    expect(invalid.err[0]).toMatch(/^error: INVALID_ARGUMENT agent\.capabilities\[0\] must not be empty/);

    const noFile = await run([...g, 'import', join(dir, 'absent.json')]);
    expect(noFile.code).toBe(1);
    expect(noFile.err[0]).toMatch(/^error: ENOENT /);

    const timeout = await run(['--timeout', 'soon', 'get', 'x']);
    expect(timeout.err[0]).toMatch(/^error: INVALID_ARGUMENT --timeout must be/);

    const label = await run([...g, 'find', '--label', 'novalue']);
    expect(label.err[0]).toMatch(/^error: INVALID_ARGUMENT --label must be key=value/);

    const unknown = await run(['frobnicate']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.err.join('\n')).toMatch(/unknown command/);
  });

  it('is an executable module whose first line is the node shebang', () => {
    const source = readFileSync(fileURLToPath(new URL('../../src/cli/registry.ts', import.meta.url)), 'utf8');
    expect(source.split('\n')[0]).toBe('#!/usr/bin/env node');
  });
});
