/**
 * The status codes of the client API: the canonical codes of `google.rpc.Code`, which gRPC uses
 * on the wire and the HTTP front end maps to HTTP statuses. Handlers throw {@link ApiError};
 * {@link toApiError} turns anything else thrown below them into one.
 */
import type { Logger } from '../log.js';
import { QueryError } from '../registry/state-machine.js';
import { ValidationError } from '../registry/validation.js';
import { NotLeaderError, UnavailableError } from '../server/proposals.js';

/** `google.rpc.Code` (the numbers gRPC uses). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** One of the {@link Code} values. */
export type Code = (typeof Code)[keyof typeof Code];

/** The name of each {@link Code} value, built once (every answered request asks for one). */
const CODE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Code).map(([name, value]) => [value, name]));

/** The name of a code, e.g. `UNAVAILABLE`; `CODE_<n>` for a number that is not a {@link Code}. */
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? `CODE_${code}`;
}

/** A request failed with a status `code` and a message for the caller. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  /**
   * @param retryAfterMs for `RESOURCE_EXHAUSTED` / `UNAVAILABLE`: when the caller may retry, in
   *   ms (the HTTP front end sends it as `Retry-After`, rounded up to seconds).
   */
  constructor(
    readonly code: Code,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/**
 * Maps what a handler threw to an {@link ApiError}: validation and query errors are
 * `INVALID_ARGUMENT`, not-leader and unavailable are `UNAVAILABLE`; anything else is `INTERNAL`
 * and logged (DESIGN: expected errors are typed; the rest is a bug to look at).
 */
export function toApiError(err: unknown, log: Logger): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ValidationError || err instanceof QueryError) return new ApiError(Code.INVALID_ARGUMENT, err.message);
  if (err instanceof NotLeaderError || err instanceof UnavailableError) return new ApiError(Code.UNAVAILABLE, err.message);
  log.error({ err }, 'request failed');
  return new ApiError(Code.INTERNAL, err instanceof Error ? err.message : String(err));
}
