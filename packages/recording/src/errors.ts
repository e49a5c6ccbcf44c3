/**
 * The one error type of the recording package. Callers switch on `code`; the proxy turns
 * ERR_NOT_STORED into the message that ends a strict-mode session.
 */
export type RecordingErrorCode =
  /** Strict mode: an event could not be stored, so the session must not go on. */
  | 'ERR_NOT_STORED'
  /** No recording with this id (or it expired). */
  | 'ERR_NOT_FOUND'
  /** A session id that cannot name Redis keys (empty, too long, or with `{`, `}` or spaces). */
  | 'ERR_BAD_ID'
  /** Stored data that does not decode: a damaged stream entry, spool record or metadata. */
  | 'ERR_CORRUPT'
  /** The tap was called out of order (event before start, anything after end). */
  | 'ERR_STATE';

export class RecordingError extends Error {
  override readonly name = 'RecordingError';
  readonly code: RecordingErrorCode;

  constructor(code: RecordingErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isRecordingError(e: unknown, code?: RecordingErrorCode): e is RecordingError {
  return e instanceof RecordingError && (code === undefined || e.code === code);
}
