/**
 * The one error type of the auth service. Codes become HTTP statuses and audit events only at
 * the edge (http/), never inside decisions.
 */
export type AuthErrorCode =
  /** Input that fails validation: malformed JSON, unknown field, a refused key type or size. */
  | 'ERR_BAD_REQUEST'
  /** No or bad credentials: password, login session token, service token, OIDC callback. */
  | 'ERR_UNAUTHENTICATED'
  /** Authenticated, but a role, lock or policy says no. */
  | 'ERR_FORBIDDEN'
  /** A second factor is needed (or was wrong). */
  | 'ERR_MFA_REQUIRED'
  | 'ERR_MFA_INVALID'
  /** A user, role, host, token or recording that does not exist. */
  | 'ERR_NOT_FOUND'
  /** Would overwrite or duplicate: user exists, token already used. */
  | 'ERR_CONFLICT'
  /** An OIDC state, invite, join token or login session past its time. */
  | 'ERR_EXPIRED'
  | 'ERR_RATE_LIMITED'
  /** A lock applies to the user, role, login or host. */
  | 'ERR_LOCKED'
  /** Redis, the CA key or the OpenID provider is not reachable. */
  | 'ERR_UNAVAILABLE'
  /** Configuration that does not validate (the message names the offending key). */
  | 'ERR_CONFIG';

export class AuthError extends Error {
  override readonly name = 'AuthError';
  readonly code: AuthErrorCode;
  /** Extra, non-secret facts for the audit event and the API response. */
  readonly details: Readonly<Record<string, string | number | boolean>> | undefined;

  constructor(code: AuthErrorCode, message: string, details?: Readonly<Record<string, string | number | boolean>>) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

export function isAuthError(e: unknown, code?: AuthErrorCode): e is AuthError {
  return e instanceof AuthError && (code === undefined || e.code === code);
}
