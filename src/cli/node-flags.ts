/**
 * The Node.js (V8) flags a registry-node process runs with. The package's launchers pass them
 * (`cluster/start.ts`, `cluster/process-cluster.ts`, `bench/mixed-version.ts`), and the
 * `registry-node` binary's `#!` line carries the same ones, so a node started as `registry-node`
 * or by `npm start` runs the same heap; pass them yourself to `node dist/src/cli/registry-node.js`.
 *
 * `--initial-old-space-size=64` (MiB): with a small heap (a node holding ~10,000 agents has ~27
 * MiB live), V8 starts incremental marking as soon as the old generation's room under its first
 * limit is less than the young generation can promote, and then runs a full mark-compact every
 * ~100-130 ms in place of scavenges while the node serves reads (16-19 of them during 500
 * first-page finds of 100 agents on one follower, each a 2-10 ms pause). An old generation
 * allowed to start at 64 MiB gets 0-1 (the same run), the heap stays at 30-43 MiB used (about
 * 70 MiB committed, as before), and the finds' p99 went from 25-31 ms to 11-13 ms.
 */
export const REGISTRY_NODE_V8_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
