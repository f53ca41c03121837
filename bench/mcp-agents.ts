/**
 * Agents shaped like the real MCP registry data, for the benchmarks that load many (`scale.ts`,
 * `apply.ts`): ids `<seed name>-<n>` (reverse-DNS names of the seed, e.g.
 * `io.github.apache/iotdb-mcp-server-42`), kind `mcp-server` (10% `a2a-agent`, 10% `service`),
 * version `1.0.<n % 10>`, a ~500-byte description (the seed's text padded with words drawn from
 * the seed's descriptions), 1-6 capabilities drawn from a Zipf distribution over 2000 names (the
 * seed's real ones, `npm`, `pypi`, `docker`, `remote`, ranked first, then `tool:<word>`), labels
 * `env` (3 values), `team` (50), `region` (5) and `source`, and 1-3 endpoints. A seeded PRNG
 * (mulberry32) makes every run make the same agents.
 */
import { readFileSync } from 'node:fs';
import { SEED_FILE } from '../cluster/process-cluster.js';
import { seededRandom } from '../src/raft/rand.js';
import { parseSeed } from '../src/registry/seed.js';
import type { AgentSpec, FindQuery } from '../src/registry/types.js';

/** Seed of the PRNG of the startup estimate that picks the rare and common capabilities. */
export const ESTIMATE_SEED = 0x5ca1e;
/** Capability sets drawn by the startup estimate of each capability's share of agents. */
export const ESTIMATE_SAMPLES = 100_000;
/** Names in the capability distribution (the seed's real ones plus synthetic `tool:<word>`). */
export const CAPABILITY_NAMES = 2000;
/** Exponent of the Zipf distribution of capabilities (weight of rank k is k^-s); 0.95 gives the top one ~30%. */
export const ZIPF_EXPONENT = 0.95;
/** Fewest capabilities per agent. */
export const MIN_CAPABILITIES = 1;
/** Most capabilities per agent. */
export const MAX_CAPABILITIES_PER_AGENT = 6;
/** Draws allowed to find an agent's distinct capabilities (bounds the loop; the top names repeat often). */
export const MAX_CAPABILITY_DRAWS = 100;
/** Shortest synthetic capability word, in chars. */
export const MIN_WORD_CHARS = 3;
/** Longest synthetic capability word, in chars. */
export const MAX_WORD_CHARS = 20;
/** Shortest description, in UTF-8 bytes (the seed text is padded up to a length in [min, max]). */
export const DESCRIPTION_MIN_BYTES = 400;
/** Longest padded description, in UTF-8 bytes (lengths are uniform in [min, max]: ~500 on average). */
export const DESCRIPTION_MAX_BYTES = 600;
/** Share of agents of kind `a2a-agent`. */
export const A2A_FRACTION = 0.1;
/** Share of agents of kind `service`. */
export const SERVICE_FRACTION = 0.1;
/** Distinct patch versions (`1.0.<n % this>`). */
export const VERSION_PATCHES = 10;
/** Most endpoints per agent (1 to this many). */
export const MAX_ENDPOINTS_PER_AGENT = 3;
/** Values of the `team` label. */
export const TEAMS = 50;
/** Values of the `env` label with their cumulative shares (prod 50%, staging 30%, dev 20%). */
export const ENVS: readonly (readonly [string, number])[] = [['prod', 0.5], ['staging', 0.8], ['dev', 1]];
/** Values of the `region` label (uniform). */
export const REGIONS: readonly string[] = ['us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-southeast-1'];

/** What the generator takes from the seed: the real agents, capability names in rank order, and words. */
export interface SeedMaterial {
  /** The seed's agents (464 in the 2025-05-16 file). */
  readonly agents: readonly AgentSpec[];
  /** The seed's capabilities, most frequent first. */
  readonly realCapabilities: readonly string[];
  /** Every word of the seed's descriptions, in file order (repeats kept: common words are drawn more). */
  readonly words: readonly string[];
  /** {@link CAPABILITY_NAMES} capability names, rank 1 first: the real ones, then `tool:<word>`. */
  readonly capabilities: readonly string[];
}

/** Reads the seed file through the seed import's parser and derives the generator's material. */
export function loadSeedMaterial(): SeedMaterial {
  const { agents } = parseSeed(JSON.parse(readFileSync(SEED_FILE, 'utf8')));
  const capCounts = new Map<string, number>();
  for (const a of agents) for (const c of a.capabilities) capCounts.set(c, (capCounts.get(c) ?? 0) + 1);
  const realCapabilities = [...capCounts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([c]) => c);
  const words = agents.flatMap((a) => a.description.split(/\s+/).filter((w) => w !== ''));
  const capabilities = [...realCapabilities];
  const taken = new Set(capabilities);
  const wordPattern = new RegExp(`^[a-z][a-z0-9]{${MIN_WORD_CHARS - 1},${MAX_WORD_CHARS - 1}}$`);
  for (const w of words) {
    if (capabilities.length >= CAPABILITY_NAMES) break;
    const lower = w.toLowerCase().replace(/[^a-z0-9]/g, '');
    const name = `tool:${lower}`;
    if (wordPattern.test(lower) && !taken.has(name)) {
      taken.add(name);
      capabilities.push(name);
    }
  }
  for (let k = 0; capabilities.length < CAPABILITY_NAMES; k++) {
    const name = `tool:extra-${k}`;
    if (!taken.has(name)) capabilities.push(name);
  }
  return { agents, realCapabilities, words, capabilities };
}

/** The cumulative distribution of a Zipf law over `n` ranks with exponent `s` (entry k: P(rank <= k+1)). */
export function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 1; k <= n; k++) total += k ** -s;
  let acc = 0;
  for (let k = 1; k <= n; k++) {
    acc += k ** -s / total;
    cdf[k - 1] = acc;
  }
  cdf[n - 1] = 1;
  return cdf;
}

/** A 0-based rank drawn from `cdf` with the uniform draw `u` in [0, 1) (binary search). */
export function drawRank(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((cdf[mid] as number) <= u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Draws one agent's distinct capability ranks: 1-6 of them (uniform count), each from the Zipf law. */
export function drawCapabilityRanks(rnd: () => number, cdf: Float64Array): Set<number> {
  const want = MIN_CAPABILITIES + Math.floor(rnd() * (MAX_CAPABILITIES_PER_AGENT - MIN_CAPABILITIES + 1));
  const ranks = new Set<number>();
  for (let draws = 0; ranks.size < want && draws < MAX_CAPABILITY_DRAWS; draws++) ranks.add(drawRank(cdf, rnd()));
  return ranks;
}

/**
 * Estimates each capability's share of agents by drawing {@link ESTIMATE_SAMPLES} capability sets
 * with a separate fixed seed; returns the share per rank (0..1).
 */
export function estimateCapabilityShares(cdf: Float64Array): Float64Array {
  const rnd = seededRandom(ESTIMATE_SEED);
  const counts = new Float64Array(cdf.length);
  for (let i = 0; i < ESTIMATE_SAMPLES; i++) for (const r of drawCapabilityRanks(rnd, cdf)) counts[r] = (counts[r] as number) + 1;
  return counts.map((c) => c / ESTIMATE_SAMPLES);
}

/** The rank whose share is nearest `target` (the lowest such rank). */
export function rankNearest(shares: Float64Array, target: number): number {
  let best = 0;
  shares.forEach((s, r) => {
    if (Math.abs(s - target) < Math.abs((shares[best] as number) - target)) best = r;
  });
  return best;
}

/** One measured find: its name, the filters, and which index the server walks for it. */
export interface BenchQuery {
  /** Row label, e.g. `rare capability`. */
  readonly label: string;
  /** The filters (no page size or token). */
  readonly query: FindQuery;
  /** The index the server reads for this query (the capability's if given, else the kind's, else the first label's). */
  readonly index: string;
}

/** Whether `agent` matches every filter of `q` (capability, kind, labels), as the server decides. */
export function matchesQuery(agent: AgentSpec, q: FindQuery): boolean {
  if (q.capability !== undefined && !agent.capabilities.includes(q.capability)) return false;
  if (q.kind !== undefined && agent.kind !== q.kind) return false;
  for (const [k, v] of Object.entries(q.labels ?? {})) if (agent.labels[k] !== v) return false;
  return true;
}

/** Whether `agent` is in the index the server walks for `q` (so whether a full scan reads it). */
export function inQueryIndex(agent: AgentSpec, q: FindQuery): boolean {
  if (q.capability !== undefined) return agent.capabilities.includes(q.capability);
  if (q.kind !== undefined) return agent.kind === q.kind;
  const first = Object.entries(q.labels ?? {})[0];
  return first === undefined || agent.labels[first[0]] === first[1];
}

/** What the generator counted for one query over the agents made so far. */
export interface QueryTally {
  /** Agents matching every filter. */
  matches: number;
  /** Agents in the index the server walks for the query. */
  indexEntries: number;
}

/**
 * Makes agent n, n+1, ... from one seeded PRNG stream (so agents must be made in index order),
 * and counts for every tracked query how many of them match and how many its index holds.
 */
export class AgentFactory {
  private readonly rnd: () => number;
  private next = 0;
  /** Per tracked query (same order as given), the counts over every agent made so far. */
  readonly tallies: QueryTally[];

  constructor(
    seed: number,
    private readonly material: SeedMaterial,
    private readonly cdf: Float64Array,
    private readonly queries: readonly BenchQuery[],
  ) {
    this.rnd = seededRandom(seed);
    this.tallies = queries.map(() => ({ matches: 0, indexEntries: 0 }));
  }

  /** How many agents were made. */
  get made(): number {
    return this.next;
  }

  /** A uniform integer in [0, n). */
  private int(n: number): number {
    return Math.floor(this.rnd() * n);
  }

  /** Makes agent `i`; throws unless `i` is the next index (the PRNG stream is sequential). */
  make(i: number): AgentSpec {
    if (i !== this.next) throw new Error(`agents must be made in order: asked for ${i}, next is ${this.next}`);
    this.next++;
    const { agents, words, capabilities } = this.material;
    const base = agents[this.int(agents.length)] as AgentSpec;
    const id = `${base.id}-${i}`;
    const u = this.rnd();
    const kind = u < A2A_FRACTION ? 'a2a-agent' : u < A2A_FRACTION + SERVICE_FRACTION ? 'service' : 'mcp-server';

    const targetBytes = DESCRIPTION_MIN_BYTES + this.int(DESCRIPTION_MAX_BYTES - DESCRIPTION_MIN_BYTES + 1);
    let description = base.description;
    let bytes = Buffer.byteLength(description);
    while (bytes < targetBytes) {
      const w = words[this.int(words.length)] as string;
      description += (description === '' ? '' : ' ') + w;
      bytes += Buffer.byteLength(w) + 1;
    }

    const caps = [...drawCapabilityRanks(this.rnd, this.cdf)].map((r) => capabilities[r] as string);

    const slug = base.id.slice(base.id.lastIndexOf('/') + 1);
    const endpoints: Record<string, string> = { repository: base.endpoints.repository ?? `https://github.com/${base.id.replace(/^io\.github\./, '')}` };
    const nEndpoints = 1 + this.int(MAX_ENDPOINTS_PER_AGENT);
    if (nEndpoints >= 2) endpoints.remote = `https://${slug}-${i}.mcp.example.com/sse`;
    if (nEndpoints >= 3) endpoints.grpc = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:50051`;

    const e = this.rnd();
    const env = (ENVS.find(([, cum]) => e < cum) ?? ENVS[ENVS.length - 1] ?? ['prod', 1])[0];
    const labels = {
      env,
      team: `team-${String(this.int(TEAMS)).padStart(2, '0')}`,
      region: REGIONS[this.int(REGIONS.length)] as string,
      source: 'github',
    };

    const spec: AgentSpec = { id, name: id, kind, version: `1.0.${i % VERSION_PATCHES}`, description, capabilities: caps, endpoints, labels };
    this.queries.forEach((q, k) => {
      const t = this.tallies[k] as QueryTally;
      if (inQueryIndex(spec, q.query)) t.indexEntries++;
      if (matchesQuery(spec, q.query)) t.matches++;
    });
    return spec;
  }
}

