/**
 * The one error type of the web gateway. Codes are auth's where the meaning is the same (an
 * error from auth passes through with its own code and status), plus the gateway's own.
 */
export type WebErrorCode =
  | 'ERR_BAD_REQUEST'
  | 'ERR_UNAUTHENTICATED'
  /** A role says no, or the request failed the CSRF or Origin check. */
  | 'ERR_FORBIDDEN'
  | 'ERR_MFA_REQUIRED'
  | 'ERR_MFA_INVALID'
  | 'ERR_NOT_FOUND'
  | 'ERR_CONFLICT'
  | 'ERR_EXPIRED'
  | 'ERR_RATE_LIMITED'
  | 'ERR_LOCKED'
  | 'ERR_PAYLOAD_TOO_LARGE'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  /** Auth or Redis cannot be reached, or auth answered something unreadable. */
  | 'ERR_UNAVAILABLE'
  | 'ERR_CONFIG'
  | 'ERR_INTERNAL';

const STATUS: Readonly<Record<WebErrorCode, number>> = {
  ERR_BAD_REQUEST: 400,
  ERR_UNAUTHENTICATED: 401,
  ERR_MFA_REQUIRED: 401,
  ERR_MFA_INVALID: 401,
  ERR_FORBIDDEN: 403,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  ERR_EXPIRED: 410,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_LOCKED: 423,
  ERR_RATE_LIMITED: 429,
  ERR_CONFIG: 500,
  ERR_INTERNAL: 500,
  ERR_UNAVAILABLE: 503,
};

export function isWebErrorCode(code: unknown): code is WebErrorCode {
  return typeof code === 'string' && Object.hasOwn(STATUS, code);
}

export class WebError extends Error {
  override readonly name = 'WebError';
  readonly code: WebErrorCode;
  /** Seconds, for ERR_RATE_LIMITED passed through from auth. */
  readonly retryAfter: number | undefined;

  constructor(code: WebErrorCode, message: string, opts: { retryAfter?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retryAfter = opts.retryAfter;
  }

  get status(): number {
    return STATUS[this.code];
  }
}

export function isWebError(e: unknown, code?: WebErrorCode): e is WebError {
  return e instanceof WebError && (code === undefined || e.code === code);
}
