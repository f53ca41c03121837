/**
 * The error the client surfaces: a gRPC status code with the server's details, and the endpoint
 * that answered (if any).
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * A call failed with a gRPC status the client does not retry (e.g. `NOT_FOUND`,
 * `INVALID_ARGUMENT`), or every retry failed within the deadline (then `code` is the last
 * status seen, usually `UNAVAILABLE` or `DEADLINE_EXCEEDED`).
 */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  /** The gRPC status code (`@grpc/grpc-js` `status`). */
  readonly code: GrpcStatus;
  /** The server's (or the client's) explanation. */
  readonly details: string;
  /** The endpoint that produced the status, when one did. */
  readonly endpoint: string | undefined;

  /** Builds an error; `message` is `<CODE_NAME> <details>`. */
  constructor(code: GrpcStatus, details: string, endpoint?: string) {
    super(`${statusName(code)} ${details}`);
    this.code = code;
    this.details = details;
    this.endpoint = endpoint;
  }

  /** The status code's name, e.g. `NOT_FOUND`. */
  get codeName(): string {
    return statusName(this.code);
  }
}

/** The name of a gRPC status code, e.g. `statusName(5) === 'NOT_FOUND'`; unknown codes print as `CODE_<n>`. */
export function statusName(code: number): string {
  const name = (GrpcStatus as unknown as Record<number, string | undefined>)[code];
  return name ?? `CODE_${code}`;
}

/** Whether `e` looks like a gRPC `ServiceError` (an Error with a numeric `code`). */
export function isServiceError(e: unknown): e is Error & { code: number; details?: string } {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'number';
}
