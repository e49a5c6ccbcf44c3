import { AuthError, type AuthErrorCode } from '../errors.js';

/**
 * The codes an API error body carries: every AuthError code, plus the few that only the HTTP
 * layer can produce (a body too large to read, a body that is not JSON, a bug).
 */
export type ApiErrorCode = AuthErrorCode | 'ERR_PAYLOAD_TOO_LARGE' | 'ERR_UNSUPPORTED_MEDIA_TYPE' | 'ERR_INTERNAL';

/** The one place AuthError codes become HTTP statuses (docs/auth-http-api.md lists them). */
export const HTTP_STATUS: Readonly<Record<ApiErrorCode, number>> = {
  ERR_BAD_REQUEST: 400,
  ERR_UNAUTHENTICATED: 401,
  // 401 as well: the client has to authenticate (more), and switches on the code to prompt.
  ERR_MFA_REQUIRED: 401,
  ERR_MFA_INVALID: 401,
  ERR_FORBIDDEN: 403,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  // Gone: the state, invite, token or session existed and is past its time; start over.
  ERR_EXPIRED: 410,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  // Locked (RFC 4918): access exists in principle, but a lock holds it.
  ERR_LOCKED: 423,
  ERR_RATE_LIMITED: 429,
  ERR_CONFIG: 500,
  ERR_INTERNAL: 500,
  ERR_UNAVAILABLE: 503,
};

/** What an error becomes on the wire, before extra fields (an MFA ticket) are added. */
export interface ApiError {
  readonly status: number;
  readonly code: ApiErrorCode;
  readonly message: string;
  /** Seconds, for Retry-After (rate limiting). */
  readonly retryAfter?: number;
  /** Non-secret facts from the AuthError (reason, lock id); also go to the audit event. */
  readonly details?: Readonly<Record<string, string | number | boolean>>;
  /** Whether the failure was the service's own (logged with its stack, not a refusal). */
  readonly internal: boolean;
}

interface FastifyLikeError {
  readonly code?: unknown;
  readonly statusCode?: unknown;
}

/**
 * Maps whatever a handler or fastify threw onto the API error. Fastify's own messages are
 * replaced by ours, which never quote the request: a body may hold a password.
 */
export function toApiError(e: unknown, bodyLimit: number): ApiError {
  if (e instanceof AuthError) {
    const retry = e.details?.['retryAfter'];
    return {
      status: HTTP_STATUS[e.code],
      code: e.code,
      message: e.message,
      ...(typeof retry === 'number' ? { retryAfter: retry } : {}),
      ...(e.details === undefined ? {} : { details: e.details }),
      internal: e.code === 'ERR_CONFIG',
    };
  }
  const f = (typeof e === 'object' && e !== null ? e : {}) as FastifyLikeError;
  const code = typeof f.code === 'string' ? f.code : '';
  const status = typeof f.statusCode === 'number' ? f.statusCode : 500;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'ERR_PAYLOAD_TOO_LARGE', message: `request body larger than ${bodyLimit} bytes`, internal: false };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: 'ERR_UNSUPPORTED_MEDIA_TYPE', message: 'request body must be application/json', internal: false };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      // Also what a __proto__ or constructor.prototype key gets (prototype poisoning).
      return { status: 400, code: 'ERR_BAD_REQUEST', message: 'malformed JSON body', internal: false };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: 'ERR_BAD_REQUEST', message: 'empty body with content-type application/json; send {} or no content-type', internal: false };
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { status: 400, code: 'ERR_BAD_REQUEST', message: 'content-length does not match the body', internal: false };
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_ASYNC_CONSTRAINT':
      return { status: 400, code: 'ERR_BAD_REQUEST', message: 'malformed request URL', internal: false };
  }
  if (status >= 400 && status < 500) {
    return { status, code: status === 404 ? 'ERR_NOT_FOUND' : 'ERR_BAD_REQUEST', message: `request refused (${code || status})`, internal: false };
  }
  if (storeUnreachable(e)) {
    // Not a bug: Redis is restarting or away. A client that sees 503 knows to retry; logged
    // (internal) so the operator sees which request met the outage.
    return { status: 503, code: 'ERR_UNAVAILABLE', message: 'the store (Redis) is unreachable; retry in a few seconds', retryAfter: 5, internal: true };
  }
  return { status: 500, code: 'ERR_INTERNAL', message: 'internal error; the service log has the details', internal: true };
}

/**
 * What ioredis throws while it cannot reach Redis: its retries per request ran out, the
 * connection closed under a command, or a socket error surfaced on the command.
 */
function storeUnreachable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === 'MaxRetriesPerRequestError') return true;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT') return true;
  return /^(Connection is closed\.|Stream isn't writeable)/.test(e.message);
}

/** The response body of an error: `{"error": {"code", "message", ...extra}}`. */
export function errorBody(err: Pick<ApiError, 'code' | 'message'>, extra: Readonly<Record<string, unknown>> = {}): { error: Record<string, unknown> } {
  return { error: { code: err.code, message: err.message, ...extra } };
}
