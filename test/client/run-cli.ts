/** Runs the `registry` CLI in-process for the CLI tests, capturing what it prints. */
import { runCli, type CliIo } from '../../src/cli/registry.js';

/** Runs the CLI with `args` (not a TTY); resolves with its exit code and its output lines. */
export async function run(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), isTTY: false };
  const code = await runCli(args, io);
  return { code, out, err };
}
