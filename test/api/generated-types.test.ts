/**
 * `src/gen/` holds the types `proto-loader-gen-types` generates from the `.proto` files, committed
 * because the build (`tsc`) generates nothing. This test regenerates them into a temporary
 * directory, with the same script and options as `npm run gen:proto`, and fails when the committed
 * files differ: a proto change without `npm run gen:proto` fails CI.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERATED_DIR, GENERATED_HEADER, genTypesFlags, generateProtoTypes, listFiles, packageRoot } from '../../scripts/gen-proto.js';
import { PROTO_LOADER_OPTIONS } from '../../src/util/proto-options.js';

const REGENERATE = 'src/gen/ is out of date with the .proto files: run `npm run gen:proto` and commit src/gen/';

describe('generated proto types (src/gen/)', () => {
  const root = packageRoot();
  const committed = join(root, GENERATED_DIR);
  let fresh = '';

  beforeAll(() => {
    fresh = join(mkdtempSync(join(tmpdir(), 'gen-proto-')), 'gen');
    generateProtoTypes(fresh, root);
  }, 60_000);

  afterAll(() => {
    if (fresh !== '') rmSync(join(fresh, '..'), { recursive: true, force: true });
  });

  it('holds exactly the files the generator writes', () => {
    expect(listFiles(committed), REGENERATE).toEqual(listFiles(fresh));
  });

  it('holds exactly what the generator writes, file by file', () => {
    const stale = listFiles(fresh).filter((f) => {
      let old: string;
      try {
        old = readFileSync(join(committed, f), 'utf8');
      } catch {
        return true;
      }
      return old !== readFileSync(join(fresh, f), 'utf8');
    });
    expect(stale, REGENERATE).toEqual([]);
  });

  it('covers both protos, with .js import suffixes and the generated-file header', () => {
    const files = listFiles(fresh);
    expect(files).toContain('registry.ts');
    expect(files).toContain('raft.ts');
    expect(files).toContain('registry/v1/Agent.ts');
    expect(files).toContain('raft/v1/Message.ts');
    for (const f of files) {
      const text = readFileSync(join(fresh, f), 'utf8');
      expect(text.startsWith(`${GENERATED_HEADER}\n`), f).toBe(true);
      for (const [, spec] of text.matchAll(/from '(\.[^']*)'/g)) expect(spec, `${f} imports ${spec}`).toMatch(/\.js$/);
    }
  });

  it('is generated with the loaders’ own options', () => {
    expect(genTypesFlags(PROTO_LOADER_OPTIONS).sort()).toEqual(
      ['--arrays', '--defaults', '--enums=String', '--keepCase', '--longs=Number', '--objects', '--oneofs'].sort(),
    );
    expect(() => genTypesFlags({ ...PROTO_LOADER_OPTIONS, longs: Boolean } as never)).toThrow(/longs/);
  });
});
