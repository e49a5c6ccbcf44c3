/**
 * The one error type of cert-core. Bad input of any shape ends here, never in another
 * exception; misuse by a caller (a wrong argument type) throws TypeError instead.
 */
export type CertErrorCode =
  /** Bytes or text that do not parse; `where` says which field, `what` what was wrong. */
  | 'ERR_MALFORMED'
  /** A well-formed thing this package does not handle (key type, cipher, KDF). */
  | 'ERR_UNSUPPORTED'
  | 'ERR_EXPIRED'
  | 'ERR_NOT_YET_VALID'
  | 'ERR_WRONG_PRINCIPAL'
  | 'ERR_NO_PRINCIPALS'
  | 'ERR_WRONG_CERT_TYPE'
  | 'ERR_UNKNOWN_CRITICAL_OPTION'
  | 'ERR_SOURCE_ADDRESS'
  | 'ERR_REVOKED'
  | 'ERR_UNTRUSTED_CA'
  | 'ERR_BAD_SIGNATURE'
  /** A signature algorithm that does not match the key or the advertised algorithm. */
  | 'ERR_ALGORITHM_MISMATCH'
  /** A private key whose passphrase is wrong or missing. */
  | 'ERR_DECRYPT'
  /** A value we refuse to produce: duplicate option, SHA-1 RSA signing, empty principal list. */
  | 'ERR_REFUSED';

export interface CertErrorDetails {
  /** Where in the input: a field path such as `certificate.principals[2]`. */
  readonly where?: string;
  /** What was wrong there, e.g. `length 4294967295 exceeds 12 remaining bytes`. */
  readonly what?: string;
}

export class CertError extends Error {
  override readonly name = 'CertError';
  readonly code: CertErrorCode;
  readonly where: string | undefined;
  readonly what: string | undefined;

  constructor(code: CertErrorCode, message: string, details: CertErrorDetails = {}) {
    super(message);
    this.code = code;
    this.where = details.where;
    this.what = details.what;
  }
}

/** Throws ERR_MALFORMED for `where` with a message built from both parts. */
export function malformed(where: string, what: string): never {
  throw new CertError('ERR_MALFORMED', `cert-core: malformed ${where}: ${what}`, { where, what });
}

export function isCertError(e: unknown, code?: CertErrorCode): e is CertError {
  return e instanceof CertError && (code === undefined || e.code === code);
}
