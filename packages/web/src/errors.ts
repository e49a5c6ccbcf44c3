import { HTTP_STATUS, type ApiErrorCode } from '@portcullis/auth';

/**
 * The one error type of the web gateway. It speaks auth's error vocabulary — the same codes and
 * one status per code (auth's http/errors.ts) — so an error from auth passes through unchanged
 * and the gateway's own refusals read the same.
 */
export type WebErrorCode = ApiErrorCode;
const STATUS = HTTP_STATUS;

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
