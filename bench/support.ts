/**
 * What the benches share: the latency histogram they record into, and the agent most of them
 * register (a plain service with a 512-byte description, like the compare bench's values).
 */
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
