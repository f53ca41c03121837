#!/usr/bin/env node
// Long soaks and exact replays of the simulation suite:
//   npm run test:sim -- [--runs N] [--seed S]
// N schedules per cluster size and fault profile (4 combinations); S fixes fast-check's seed.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { runs: { type: 'string' }, seed: { type: 'string' } } });
const env = { ...process.env };
if (values.runs) env.SIM_RUNS = values.runs;
if (values.seed) env.SIM_SEED = values.seed;
const r = spawnSync('npx', ['vitest', 'run', 'test/sim'], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
