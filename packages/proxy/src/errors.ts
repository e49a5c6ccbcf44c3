/**
 * The one error type of the proxy package. Codes become SSH disconnect messages, audit events
 * and metrics labels at the edge; cert-core's own CertError passes through unchanged.
 */
export type ProxyErrorCode =
  /** A key or certificate that does not fit the role it is used in (host vs user, wrong key). */
  | 'ERR_KEY_MISMATCH'
  /** A plain public key where only a certificate is accepted. */
  | 'ERR_NOT_A_CERTIFICATE'
  /** ssh2 could not read a key we produced (a bug or an unsupported key type). */
  | 'ERR_SSH2_KEY'
  /** A publickey request without the signature or the signed data. */
  | 'ERR_NO_SIGNATURE';

export class ProxyError extends Error {
  override readonly name = 'ProxyError';
  readonly code: ProxyErrorCode;

  constructor(code: ProxyErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function isProxyError(e: unknown, code?: ProxyErrorCode): e is ProxyError {
  return e instanceof ProxyError && (code === undefined || e.code === code);
}
