/**
 * The one error type of the store package. Callers that own an edge (auth's HTTP API, the
 * proxy's startup, a CLI's exit code) switch on `code`.
 */
export type StoreErrorCode =
  /** A redis section that does not validate (the message names the offending key). */
  | 'ERR_CONFIG'
  /** The server is not reachable, refused authentication, or the embedded one cannot run. */
  | 'ERR_UNAVAILABLE';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;
  /** Extra, non-secret facts (the embedded server's last log lines). */
  readonly details: Readonly<Record<string, string | number | boolean>> | undefined;

  constructor(code: StoreErrorCode, message: string, details?: Readonly<Record<string, string | number | boolean>>) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}
