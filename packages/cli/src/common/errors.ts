/**
 * The CLI's one error type. Everything a user can cause ends as a CliError: one line on stderr,
 * a non-zero exit code, never a stack trace (main() in each bin catches it).
 */
export type CliErrorCode =
  /** Bad flags or arguments: exit 2, like getopt tools. */
  | 'ERR_USAGE'
  /** Not logged in, login expired, or refused by auth. */
  | 'ERR_AUTH'
  /** The proxy or auth cannot be reached. */
  | 'ERR_UNREACHABLE'
  /** A host, user, role, token or recording that does not exist (or is ambiguous). */
  | 'ERR_NOT_FOUND'
  /** A config file that does not validate. */
  | 'ERR_CONFIG'
  /** Anything else the server refused, with its message. */
  | 'ERR_REFUSED';

export const EXIT_CODES: Readonly<Record<CliErrorCode, number>> = {
  ERR_USAGE: 2,
  ERR_AUTH: 3,
  ERR_UNREACHABLE: 4,
  ERR_NOT_FOUND: 5,
  ERR_CONFIG: 6,
  ERR_REFUSED: 1,
};

export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: CliErrorCode;
  constructor(code: CliErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
