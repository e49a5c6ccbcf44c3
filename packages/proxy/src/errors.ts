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
  | 'ERR_NO_SIGNATURE'
  /** The SSH user name names no target (`login%host`) where one is needed, or is malformed. */
  | 'ERR_BAD_USERNAME'
  /** The certificate's key id names no user the proxy can act for. */
  | 'ERR_UNKNOWN_USER'
  /** auth refused the user (locked, disabled, unknown) or the login; the message says which. */
  | 'ERR_ACCESS_DENIED'
  /** The requested login is not among the certificate's principals or the user's logins. */
  | 'ERR_LOGIN_NOT_ALLOWED'
  /** No registered host has that name (AuthorityClient.resolveHost). */
  | 'ERR_HOST_NOT_FOUND'
  /** Several registered hosts match the name; the message lists them. */
  | 'ERR_HOST_AMBIGUOUS'
  /** The target presented a host key the proxy does not trust (plain key, foreign CA, wrong name). */
  | 'ERR_HOST_KEY'
  /** The target could not be reached or refused the proxy's login. */
  | 'ERR_UPSTREAM'
  /** auth could not be reached, or the KRL is missing or too old to trust. */
  | 'ERR_AUTHORITY_UNAVAILABLE'
  /** A channel or request the certificate or the user's roles do not permit. */
  | 'ERR_FORBIDDEN'
  /** The session was ended by a lock, a revocation, an idle timeout or a shutdown. */
  | 'ERR_TERMINATED'
  /** The proxy's own configuration is unusable. */
  | 'ERR_CONFIG';

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
