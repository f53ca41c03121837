/**
 * Backup and restore on real processes (etcdctl snapshot save / restore): a backup saved from a
 * follower of a live cluster seeds a new cluster that serves the same agents and takes writes;
 * a bad or corrupted file is refused with a clear error and changes nothing.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_BIN, ProcessCluster, REGISTRY_BIN, runBinary } from '../../cluster/process-cluster.js';
import type { RegistryClient } from '../../src/client/index.js';
import type { AgentSpec } from '../../src/registry/types.js';

const AGENTS = 500;
const spec = (i: number): AgentSpec => ({ id: `b-${i}`, name: `b ${i}`, kind: 'service', version: '1', description: '', capabilities: ['backup'], endpoints: {}, labels: {} });

const run = (bin: string, args: string[]) => runBinary(bin, args, 30_000);

async function countAll(client: RegistryClient): Promise<number> {
  let n = 0;
  for await (const page of client.findAll({ capability: 'backup', pageSize: 1000 })) n += page.agents.length;
  return n;
}

describe('backup and restore', () => {
  let source: ProcessCluster;
  const dir = mkdtempSync(join(tmpdir(), 'registry-backup-'));
  const file = join(dir, 'registry.backup');

  beforeAll(async () => {
    source = await ProcessCluster.start(3);
    await source.waitForLeader();
    const client = source.client();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < AGENTS) await client.register(spec(next++));
    }));
    client.close();
  }, 60_000);

  afterAll(async () => {
    await source?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('`registry snapshot save` writes a backup from a follower, and a new cluster restored from it serves the same agents', async () => {
    const leader = await source.waitForLeader();
    const follower = source.ids.find((id) => id !== leader) as string;
    const saved = await run(REGISTRY_BIN, ['--endpoints', source.endpoints([follower]).join(','), 'snapshot', 'save', file]);
    expect(saved.code, saved.out).toBe(0);
    expect(saved.out).toMatch(/saved \d+ bytes/);

    const restored = await ProcessCluster.start(3, ['--restore', file]);
    try {
      await restored.waitForLeader();
      const client = restored.client();
      expect(await countAll(client)).toBe(AGENTS);
      const r = await client.register(spec(AGENTS));
      expect(r.revision).toBeGreaterThan(AGENTS);
      expect(await countAll(client)).toBe(AGENTS + 1);
      const st = await client.status();
      expect(st.members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
      client.close();
    } finally {
      await restored.destroy();
    }
  }, 120_000);

  it('refuses a file that is not a backup, and a corrupted backup, with a clear error', async () => {
    const junk = join(dir, 'junk');
    writeFileSync(junk, 'definitely not a backup');
    const bad = await run(NODE_BIN, ['--id', 'n1', '--listen', '127.0.0.1:0', '--peers', 'n1=127.0.0.1:1', '--data-dir', join(dir, 'r1'), '--restore', junk]);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toMatch(/not a registry backup/);

    const bytes = readFileSync(file);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = (bytes[mid] ?? 0) ^ 0xff;
    const corrupt = join(dir, 'corrupt');
    writeFileSync(corrupt, bytes);
    const broken = await run(NODE_BIN, ['--id', 'n1', '--listen', '127.0.0.1:0', '--peers', 'n1=127.0.0.1:1', '--data-dir', join(dir, 'r2'), '--restore', corrupt]);
    expect(broken.code).not.toBe(0);
    expect(broken.out).toMatch(/corrupt|checksum|does not decode|malformed/i);
  }, 60_000);
});
