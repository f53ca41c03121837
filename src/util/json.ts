/**
 * Small readers of parsed JSON (`unknown` from `JSON.parse` or a decoder) that never throw:
 * the shared guards of the seed import, the validators and the card formats.
 */

/** Whether `v` is a plain object: not null, not an array. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `v` if it is a string, else `''`. */
export function stringOr(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** `v` if it is an array, else `[]`. */
export function arrayOr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
