/**
 * Errors of the HTTP front end: gRPC status codes to HTTP statuses (grpc-gateway's table, with
 * `FAILED_PRECONDITION` as 409 Conflict: a failed compare-and-set is a conflict with the stored
 * state), bodies in the `google.rpc.Status` JSON shape, and Fastify's own request errors (bad
 * JSON, schema violations, oversized bodies) as `INVALID_ARGUMENT` naming the field.
 */
import type { FastifyError } from 'fastify';
import type { Logger } from '../log.js';
import { ApiError, Code, codeName, toApiError } from '../api/status.js';

/** `Retry-After` sent with 503 and 429, in seconds: about one election timeout. */
export const RETRY_AFTER_SECONDS = 1;

/** HTTP status of each gRPC code (https://github.com/grpc-ecosystem/grpc-gateway, runtime/errors.go). */
const HTTP_STATUS: Record<number, number> = {
  [Code.OK]: 200,
  [Code.CANCELLED]: 499,
  [Code.UNKNOWN]: 500,
  [Code.INVALID_ARGUMENT]: 400,
  [Code.DEADLINE_EXCEEDED]: 504,
  [Code.NOT_FOUND]: 404,
  [Code.ALREADY_EXISTS]: 409,
  [Code.PERMISSION_DENIED]: 403,
  [Code.RESOURCE_EXHAUSTED]: 429,
  [Code.FAILED_PRECONDITION]: 409,
  [Code.ABORTED]: 409,
  [Code.OUT_OF_RANGE]: 400,
  [Code.UNIMPLEMENTED]: 501,
  [Code.INTERNAL]: 500,
  [Code.UNAVAILABLE]: 503,
  [Code.DATA_LOSS]: 500,
  [Code.UNAUTHENTICATED]: 401,
};

/** The HTTP status for gRPC code `code` (500 for an unknown code). */
export function httpStatusOf(code: number): number {
  return HTTP_STATUS[code] ?? 500;
}

/** The `google.rpc.Status` JSON body of an error. */
export interface StatusBody {
  readonly code: number;
  readonly message: string;
  readonly details: readonly unknown[];
}

/** The JSON schema of {@link StatusBody}, for the OpenAPI document. */
export const STATUS_BODY_SCHEMA = {
  type: 'object',
  description: 'google.rpc.Status: the gRPC code, a message naming the field or the reason, and details',
  properties: { code: { type: 'integer' }, message: { type: 'string' }, details: { type: 'array', items: {} } },
} as const;

/** One Ajv error as Fastify passes it on `err.validation`. */
interface ValidationIssue {
  readonly instancePath: string;
  readonly keyword: string;
  readonly message?: string;
  readonly params: Record<string, unknown>;
}

/** `/agent/labels/x` → `agent.labels.x`, prefixed by the part of the request (`query.` etc.). */
function fieldPath(context: string | undefined, instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').filter((p) => p !== '').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra) parts.push(extra);
  const where = context === 'querystring' ? 'query' : context === 'params' ? 'path' : context === 'headers' ? 'header' : '';
  const path = parts.join('.');
  if (path === '') return where === '' ? 'body' : where;
  return where === '' ? path : `${where}.${path}`;
}

/** Describes the first schema violation of a request, naming its field. */
function describeValidation(issues: readonly ValidationIssue[], context: string | undefined): string {
  // A value that fits none of an `anyOf` (a 64-bit integer as string or number) is reported as
  // one problem, not as the first branch that failed.
  const first = issues.find((i) => i.keyword === 'anyOf') ?? issues[0];
  if (!first) return 'request is invalid';
  if (first.keyword === 'additionalProperties') {
    return `${fieldPath(context, first.instancePath, String(first.params.additionalProperty))}: unknown field`;
  }
  if (first.keyword === 'required') return `${fieldPath(context, first.instancePath, String(first.params.missingProperty))}: required`;
  if (first.keyword === 'anyOf') return `${fieldPath(context, first.instancePath)}: must be an integer (a number or a decimal string)`;
  if (first.keyword === 'enum') return `${fieldPath(context, first.instancePath)}: must be one of ${(first.params.allowedValues as unknown[]).join(', ')}`;
  return `${fieldPath(context, first.instancePath)}: ${first.message ?? 'is invalid'}`;
}

/**
 * Maps anything a route threw to an {@link ApiError}: Fastify's validation errors and body
 * parsing errors become `INVALID_ARGUMENT` naming the field (never a 500), API errors keep their
 * code, the rest goes through {@link toApiError} (logged, `INTERNAL`).
 */
export function httpApiError(err: unknown, log: Logger, bodyLimitBytes: number): ApiError {
  if (err instanceof ApiError) return err;
  const fe = err as Partial<FastifyError> & { validation?: ValidationIssue[]; validationContext?: string };
  if (Array.isArray(fe.validation)) return new ApiError(Code.INVALID_ARGUMENT, describeValidation(fe.validation, fe.validationContext));
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError(Code.INVALID_ARGUMENT, `body: not valid JSON (${fe.message ?? ''})`);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(Code.INVALID_ARGUMENT, `body: larger than ${bodyLimitBytes} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(Code.INVALID_ARGUMENT, 'body: content-type must be application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError(Code.INVALID_ARGUMENT, 'body: content-length does not match the body');
    default:
      break;
  }
  if (err instanceof SyntaxError) return new ApiError(Code.INVALID_ARGUMENT, `body: not valid JSON (${err.message})`);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new ApiError(fe.statusCode === 404 ? Code.NOT_FOUND : Code.INVALID_ARGUMENT, fe.message ?? 'bad request');
  }
  return toApiError(err, log);
}

/** The body of `err`. */
export function statusBody(err: ApiError): StatusBody {
  return { code: err.code, message: err.message, details: [] };
}

/** The gRPC code name of an HTTP answer, for metrics: `OK` for 2xx and 3xx. */
export function codeNameOfStatus(status: number, code: number | undefined): string {
  if (code !== undefined) return codeName(code);
  return status < 400 ? 'OK' : status === 404 ? 'NOT_FOUND' : 'UNKNOWN';
}
