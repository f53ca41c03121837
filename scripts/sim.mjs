#!/usr/bin/env node
// Long soaks and exact replays of the simulation suite:
//   npm run test:sim -- [--runs N] [--seed S] [--path P] [--file F]
// N schedules per cluster size and fault profile (4 combinations); S is fast-check's seed (the
// suite's own fixed seed without it); P, with the seed a failure printed, replays its shrunk
// counterexample; F limits the run to one file of test/sim (e.g. safety).
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { runs: { type: 'string' }, seed: { type: 'string' }, path: { type: 'string' }, file: { type: 'string' } } });
const env = { ...process.env };
if (values.runs) env.SIM_RUNS = values.runs;
if (values.seed) env.SIM_SEED = values.seed;
if (values.path) env.SIM_PATH = values.path;
const target = values.file ? `test/sim/${values.file}.test.ts` : 'test/sim';
const r = spawnSync('npx', ['vitest', 'run', target], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
