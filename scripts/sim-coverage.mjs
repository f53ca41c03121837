#!/usr/bin/env node
// Which code the deterministic simulator does not run: runs test/sim with V8 coverage over src/
// and prints, per file, the lines it never executed (and the files it never loaded at all).
//   npm run coverage:sim [-- --runs N]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { runs: { type: 'string' } } });
const env = { ...process.env, SIM_RUNS: values.runs ?? '50', SIM_LEASE_RUNS: values.runs ?? '50' };
const r = spawnSync('npx', ['vitest', 'run', 'test/sim', '--coverage.enabled', '--coverage.provider=v8', '--coverage.include=src/**', '--coverage.all', '--coverage.reporter=json-summary', '--coverage.reportsDirectory=coverage/sim'], { stdio: 'inherit', env });
if (r.status !== 0) process.exit(r.status ?? 1);
const summary = JSON.parse(readFileSync('coverage/sim/coverage-summary.json', 'utf8'));
const rows = Object.entries(summary)
  .filter(([file]) => file !== 'total')
  .map(([file, s]) => ({ file: file.slice(file.indexOf('/src/') + 1), total: s.lines.total, missed: s.lines.total - s.lines.covered }))
  .sort((a, b) => b.missed - a.missed);
const never = rows.filter((x) => x.missed === x.total && x.total > 0);
const partly = rows.filter((x) => x.missed > 0 && x.missed < x.total);
console.log(`\nFiles the simulator never runs (${never.reduce((n, x) => n + x.total, 0)} lines):`);
for (const x of never) console.log(`  ${x.file}: ${x.total}`);
console.log(`\nLines not run in files the simulator does run (${partly.reduce((n, x) => n + x.missed, 0)} of ${partly.reduce((n, x) => n + x.total, 0)}):`);
for (const x of partly) console.log(`  ${x.file}: ${x.missed} of ${x.total}`);
