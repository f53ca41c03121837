/**
 * The Node.js (V8) flags a registry-node process runs with. The package's launchers pass them
 * (`cluster/start.ts`, `cluster/process-cluster.ts`, `bench/mixed-version.ts`), and the
 * `registry-node` binary's `#!` line carries the same ones, so a node started as `registry-node`
 * or by `npm start` runs the same heap; pass them yourself to `node dist/src/cli/registry-node.js`.
 *
 * `--initial-old-space-size=64` (MiB): with a small heap (a node holding ~10,000 agents has ~27
 * MiB live), V8 started incremental marking by task well under its old-generation limit and ran
 * a full mark-compact every 100-130 ms in place of scavenges while the node served reads: 15-19
 * of them during 500 first-page finds of 100 agents on one follower, each a 2-10 ms pause, and
 * the finds' p99 at 25-31 ms (p50 2.6-3.1). With the old generation allowed to start at 64 MiB
 * the same run had 1 mark-compact and p99 13.4 ms (p50 2.1); the heap stayed at 30-43 MiB used,
 * about 70 MiB committed, as before.
 */
export const REGISTRY_NODE_V8_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
