/**
 * Semantic Versioning 2.0.0 (https://semver.org): parsing and precedence, and the order of the
 * versions of one name that decides which one is `latest`.
 *
 * The order follows the official MCP registry (`modelcontextprotocol/registry`,
 * `internal/service/versioning.go`, `CompareVersions`): two semantic versions compare by semver
 * precedence; a semantic version is always above a non-semantic one; two non-semantic versions
 * compare by publication, which here is the log index that created the record
 * (`createRevision`: the registry has revisions, not clocks, in its state machine). Unlike that
 * file, precedence is the full semver 2.0 rule (§11: pre-release identifiers compared one by one,
 * numeric ones numerically, a longer set above its prefix), not a lexicographic comparison of the
 * whole pre-release string, and build metadata is accepted and ignored (§10). Ties (equal
 * precedence, e.g. `1.0.0+a` and `1.0.0+b`) fall back to `createRevision`, then to the id, so the
 * order is total and `latest` is one record, the same on every node.
 */
import { compareUtf8 } from '../storage/staging.js';

/** A parsed semantic version. Numeric parts are kept as digit strings (they may exceed 2^53). */
export interface SemVer {
  readonly major: string;
  readonly minor: string;
  readonly patch: string;
  /** Pre-release identifiers (`1.0.0-alpha.1` → `['alpha', '1']`), empty for a release. */
  readonly prerelease: readonly string[];
  /** Build metadata identifiers, ignored by precedence. */
  readonly build: readonly string[];
}

/** The grammar of semver.org §2, §9 and §10 (the "suggested regular expression" of the spec). */
const SEMVER_PATTERN =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/** A numeric identifier: digits only (leading zeros are refused by the grammar). */
const NUMERIC_IDENTIFIER = /^\d+$/;

/**
 * Parses `version` as a semantic version 2.0.0 (no leading `v`, no surrounding space); returns
 * `undefined` when it is not one.
 */
export function parseSemVer(version: string): SemVer | undefined {
  const m = SEMVER_PATTERN.exec(version);
  if (m === null) return undefined;
  return {
    major: m[1] as string,
    minor: m[2] as string,
    patch: m[3] as string,
    prerelease: m[4] === undefined ? [] : m[4].split('.'),
    build: m[5] === undefined ? [] : m[5].split('.'),
  };
}

/** Whether `version` is a semantic version 2.0.0. */
export function isSemVer(version: string): boolean {
  return SEMVER_PATTERN.test(version);
}

/** Compares two non-negative integers written in decimal without leading zeros. */
function compareDigits(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compares two pre-release identifiers (semver §11.4.1–§11.4.3). */
function compareIdentifier(a: string, b: string): number {
  const an = NUMERIC_IDENTIFIER.test(a);
  const bn = NUMERIC_IDENTIFIER.test(b);
  if (an && bn) return compareDigits(a, b);
  // §11.4.3: numeric identifiers have lower precedence than alphanumeric ones.
  if (an !== bn) return an ? -1 : 1;
  // §11.4.2: alphanumeric identifiers compare in ASCII order (the grammar allows only ASCII).
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Semver 2.0.0 precedence (§11) of two parsed versions: negative when `a` is lower, positive
 * when higher, 0 when equal in precedence (build metadata is ignored, §10).
 */
export function compareSemVer(a: SemVer, b: SemVer): number {
  const core = compareDigits(a.major, b.major) || compareDigits(a.minor, b.minor) || compareDigits(a.patch, b.patch);
  if (core !== 0) return core;
  // §11.3: a pre-release version has lower precedence than the release.
  if (a.prerelease.length === 0 || b.prerelease.length === 0) {
    if (a.prerelease.length === b.prerelease.length) return 0;
    return a.prerelease.length === 0 ? 1 : -1;
  }
  const n = Math.min(a.prerelease.length, b.prerelease.length);
  for (let i = 0; i < n; i++) {
    const c = compareIdentifier(a.prerelease[i] as string, b.prerelease[i] as string);
    if (c !== 0) return c;
  }
  // §11.4.4: a larger set of pre-release fields has higher precedence when all before are equal.
  return Math.sign(a.prerelease.length - b.prerelease.length);
}

/** One version of a name, as the versions index holds it. */
export interface VersionEntry {
  /** The agent id (the unique key). */
  readonly id: string;
  /** The version string as registered (any string; semver or not). */
  readonly version: string;
  /** The log index that created the record: the publication order. */
  readonly createRevision: number;
}

/**
 * The order of the versions of one name, lowest first (see the module comment): semver above
 * non-semver; two semvers by precedence, two others by `createRevision`; ties by
 * `createRevision`, then by id (UTF-8 byte order). Negative when `a` is older than `b`.
 */
export function compareVersionEntries(a: VersionEntry, b: VersionEntry): number {
  const sa = parseSemVer(a.version);
  const sb = parseSemVer(b.version);
  if ((sa === undefined) !== (sb === undefined)) return sa === undefined ? -1 : 1;
  if (sa !== undefined && sb !== undefined) {
    const c = compareSemVer(sa, sb);
    if (c !== 0) return c;
  }
  if (a.createRevision !== b.createRevision) return a.createRevision < b.createRevision ? -1 : 1;
  return compareUtf8(a.id, b.id);
}

/** The latest of `entries` (the highest by {@link compareVersionEntries}), `undefined` if empty. */
export function latestOf<T extends VersionEntry>(entries: Iterable<T>): T | undefined {
  let best: T | undefined;
  for (const e of entries) if (best === undefined || compareVersionEntries(e, best) > 0) best = e;
  return best;
}

/** `entries` sorted latest first (a copy). */
export function newestFirst<T extends VersionEntry>(entries: Iterable<T>): T[] {
  return [...entries].sort((a, b) => compareVersionEntries(b, a));
}
