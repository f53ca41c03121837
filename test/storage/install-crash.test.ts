/**
 * Crash safety of LevelStore installs (§7): a real child process installs whole new state
 * machines and is killed with SIGKILL, mostly while it copies the next one aside. After each
 * kill the store reopens with exactly one complete generation live (never a mix), the log reset
 * and hard state from the same install, at least the last acknowledged one, and no other
 * generation left on disk.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLevelStore } from '../../src/storage/level-store.js';

const here = dirname(fileURLToPath(import.meta.url));
const WRITER = join(here, 'fixtures', 'install-writer.mjs');
const BUILT_STORAGE = join(here, '..', '..', 'dist', 'src', 'storage', 'index.js');
/** Pairs per install: 2,500 values of 2 KiB, more than one copy batch. */
const INSTALL_PAIRS = 2500;
/** Upper bound of installs one child runs if it is never killed. */
const MAX_INSTALLS_PER_CHILD = 50;
/**
 * When to kill each child: on its `count`-th line of kind `on` ("ack": an install resolved, the
 * next one starts; "copying": an install stalls with its first copy batch on disk).
 */
const KILLS: readonly Kill[] = [
  { on: 'copying', count: 1 },
  { on: 'ack', count: 1 },
  { on: 'copying', count: 2 },
];

interface Kill {
  readonly on: 'ack' | 'copying';
  readonly count: number;
}
/** Give up on a child that neither installs nor exits within this time. */
const CHILD_TIMEOUT_MS = 20_000;

/**
 * Runs the writer on `dir`, SIGKILLs it as `kill` says, returns the last acknowledged generation
 * (the one before the first install of this child when none was acknowledged).
 */
function runAndKill(dir: string, kill: Kill, before: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dir, String(MAX_INSTALLS_PER_CHILD)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, INSTALL_PAIRS: String(INSTALL_PAIRS) },
    });
    let acked = before;
    let count = 0;
    let lines = 0;
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`writer timed out after ${count} installs; stderr: ${stderr}`));
    }, CHILD_TIMEOUT_MS);
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines++;
      const [kind, g] = line.split(' ');
      if (kind === 'ack') acked = Number(g);
      if (kind === kill.on && ++count === kill.count) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (lines === 0) reject(new Error(`writer wrote nothing (code ${code}, signal ${signal}): ${stderr}`));
      else if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`writer failed with code ${code}: ${stderr}`));
      else resolve(acked);
    });
  });
}

/** Keys of every state machine generation (`!sm!…`, `!sm-<n>!…`) in the database at `dir`. */
async function generationKeyCount(dir: string): Promise<number> {
  const raw = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await raw.open();
  try {
    return (await raw.keys({ gte: '!sm!', lt: '!sm.' }).all()).length;
  } finally {
    await raw.close();
  }
}

describe('LevelStore install crash safety (SIGKILL during installs, §7)', () => {
  let root: string;
  beforeAll(async () => {
    if (!existsSync(BUILT_STORAGE)) {
      throw new Error(`${BUILT_STORAGE} is missing: build first with "npx tsc -p tsconfig.json"`);
    }
    root = await mkdtemp(join(tmpdir(), 'install-crash-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reopens with one whole installed state machine, its log reset and hard state, and no stray generation', async () => {
    const dir = join(root, 'data');
    let previous = 0;
    for (const kill of KILLS) {
      const acked = await runAndKill(dir, kill, previous);
      if (kill.on === 'copying') {
        // The kill landed in an install: a partial copy is on disk beside the live generation.
        expect(await generationKeyCount(dir)).toBeGreaterThan(previous === 0 ? 0 : INSTALL_PAIRS + 1);
      }

      const store = await openLevelStore(dir);
      let g: number;
      try {
        const stored = await store.kv.get('gen');
        // 0: killed during the very first install, so the store must still be empty.
        g = stored === undefined ? 0 : Number(new TextDecoder().decode(stored));
        expect(g).toBeGreaterThanOrEqual(acked);
        let count = 0;
        for await (const [key, value] of store.kv.range('k/', 'k0')) {
          expect(new TextDecoder().decode(value.subarray(0, 16)).split('.')[0]).toBe(`${g}/${Number(key.slice(2))}`);
          count++;
        }
        expect(count).toBe(g === 0 ? 0 : INSTALL_PAIRS);
        expect(await store.stable.compactedTo()).toEqual({ index: g * 10, term: g });
        expect([store.log.firstIndex(), store.log.lastIndex()]).toEqual([g * 10 + 1, g * 10]);
        expect(await store.stable.hardState()).toEqual(g === 0 ? undefined : { currentTerm: g, votedFor: 'n1', commitIndex: g * 10 });
      } finally {
        await store.close();
      }
      expect(await generationKeyCount(dir)).toBe(g === 0 ? 0 : INSTALL_PAIRS + 1);
      previous = g;
    }
  });
});
