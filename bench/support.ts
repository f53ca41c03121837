/**
 * What the benches share: the latency histogram they record into, the agent most of them
 * register (a plain service with a 512-byte description, like the compare bench's values), and
 * the CPU time of a process or thread as the kernel counts it.
 */
import { readFileSync } from 'node:fs';
import * as hdr from 'hdr-histogram-js';
import type { AgentSpec } from '../src/registry/types.js';

/** Bytes of a bench agent's description. */
export const BENCH_DESCRIPTION_BYTES = 512;
/** Longest latency a histogram records, in µs (60 s). */
export const HISTOGRAM_MAX_LATENCY_US = 60_000_000;

/** A histogram of latencies in µs, 1 µs to {@link HISTOGRAM_MAX_LATENCY_US}, 3 significant digits. */
export function latencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HISTOGRAM_MAX_LATENCY_US, numberOfSignificantValueDigits: 3 });
}

/** The agent a bench registers under `id`. */
export function benchSpec(id: string): AgentSpec {
  return {
    id,
    name: id,
    kind: 'service',
    version: '1.0.0',
    description: 'd'.repeat(BENCH_DESCRIPTION_BYTES),
    capabilities: ['bench'],
    endpoints: { grpc: '127.0.0.1:1' },
    labels: { env: 'bench' },
  };
}

/** Kernel clock ticks per second, the unit of utime and stime in /proc/<pid>/stat. */
export const CLOCK_TICKS_PER_S = 100;
/** Index of utime among the fields of /proc/<pid>/stat that follow the command name (field 14 of proc(5)). */
const STAT_UTIME_INDEX = 11;
/** Index of stime, likewise (field 15 of proc(5)). */
const STAT_STIME_INDEX = 12;

/**
 * utime + stime, in clock ticks ({@link CLOCK_TICKS_PER_S}), of the process `pid` (all its
 * threads), or of its thread `tid` when given. Throws when /proc has no such process or thread.
 */
export function cpuTicks(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: split after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[STAT_UTIME_INDEX]) + Number(fields[STAT_STIME_INDEX]);
}
