import { Secret, TOTP } from 'otpauth';
import { AuthError } from '../errors.js';
import { normalizeUsername } from './users.js';
import type { User, UserStore } from './store.js';

export interface TotpParams {
  /** Shown by authenticator apps next to the account (default "Portcullis"). */
  readonly issuer: string;
  readonly digits: number;
  /** Seconds per time step. */
  readonly period: number;
  /** Steps accepted either side of the current one, for clock drift and slow typists. */
  readonly window: number;
}

// SHA-1, 6 digits, 30 s: the only combination every authenticator app implements.
export const DEFAULT_TOTP_PARAMS: TotpParams = { issuer: 'Portcullis', digits: 6, period: 30, window: 1 };

// ---------------------------------------------------------------------------------------------
// Pure: codes and steps.

function totpFor(secretBase32: string, params: TotpParams, label = 'user'): TOTP {
  return new TOTP({
    issuer: params.issuer,
    label,
    algorithm: 'SHA1',
    digits: params.digits,
    period: params.period,
    secret: Secret.fromBase32(secretBase32),
  });
}

/** The time step a code belongs to at `now` (ms), or undefined when it matches none in the window. */
export function matchTotpStep(secretBase32: string, code: string, now: number, params: TotpParams = DEFAULT_TOTP_PARAMS): number | undefined {
  const delta = totpFor(secretBase32, params).validate({ token: code, timestamp: now, window: params.window });
  if (delta === null) return undefined;
  return TOTP.counter({ period: params.period, timestamp: now }) + delta;
}

/** The code for `now` (ms): what an authenticator app would show. For tests and tooling. */
export function totpCode(secretBase32: string, now: number, params: TotpParams = DEFAULT_TOTP_PARAMS): string {
  return totpFor(secretBase32, params).generate({ timestamp: now });
}

function checkCodeFormat(code: unknown, params: TotpParams): asserts code is string {
  if (typeof code !== 'string' || code.length !== params.digits || !/^\d+$/.test(code)) {
    throw new AuthError('ERR_MFA_INVALID', `TOTP code expected ${params.digits} digits`, { reason: 'malformed' });
  }
}

// ---------------------------------------------------------------------------------------------
// The shell.

export interface TotpEnrollment {
  /** Base32 secret, for typing into an app by hand. */
  readonly secret: string;
  /** `otpauth://totp/...` URI, for a QR code. */
  readonly uri: string;
  /** The enrollment must be confirmed with a first valid code before this time (ms). */
  readonly expiresAt: number;
}

export interface TotpAuthenticatorOptions {
  readonly users: UserStore;
  readonly params?: Partial<TotpParams>;
  /** How long a started enrollment waits for its confirming code (default 10 minutes). */
  readonly enrollmentTtlMs?: number;
  readonly now?: () => number;
}

/** TOTP as a second factor: enrollment confirmed by a first code, verification that refuses replays. */
export class TotpAuthenticator {
  readonly #users: UserStore;
  readonly #params: TotpParams;
  readonly #enrollmentTtlMs: number;
  readonly #now: () => number;

  constructor(opts: TotpAuthenticatorOptions) {
    this.#users = opts.users;
    this.#params = { ...DEFAULT_TOTP_PARAMS, ...opts.params };
    this.#enrollmentTtlMs = opts.enrollmentTtlMs ?? 10 * 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Hands out a new secret, pending until confirmed. Replacing an active factor needs
   * `replace: true`: the caller must have checked the current factor (or be an admin), or a
   * stolen login session could swap in the thief's authenticator.
   */
  async beginEnrollment(name: string, opts: { readonly replace?: boolean } = {}): Promise<TotpEnrollment> {
    const user = await this.#activeUser(name);
    if (user.totp && !opts.replace) {
      throw new AuthError('ERR_CONFLICT', `user ${user.name} already has TOTP enrolled; replacing it must be asked for explicitly`);
    }
    // 20 bytes: the HMAC-SHA-1 block-size recommendation of RFC 4226.
    const secret = new Secret({ size: 20 }).base32;
    const now = this.#now();
    const expiresAt = now + this.#enrollmentTtlMs;
    if (!(await this.#users.updateUser(user.name, { totpPending: { secret, expiresAt }, updatedAt: now }))) {
      throw new AuthError('ERR_NOT_FOUND', `user ${user.name} does not exist`);
    }
    return { secret, uri: totpFor(secret, this.#params, user.name).toString(), expiresAt };
  }

  /** Activates the pending secret once the user proves their app holds it. */
  async confirmEnrollment(name: string, code: string): Promise<void> {
    const user = await this.#activeUser(name);
    const pending = user.totpPending;
    if (!pending) throw new AuthError('ERR_NOT_FOUND', `no TOTP enrollment in progress for ${user.name}`);
    const now = this.#now();
    if (now >= pending.expiresAt) {
      throw new AuthError('ERR_EXPIRED', `TOTP enrollment for ${user.name} expired at ${new Date(pending.expiresAt).toISOString()}`);
    }
    checkCodeFormat(code, this.#params);
    const step = matchTotpStep(pending.secret, code, now, this.#params);
    if (step === undefined) throw new AuthError('ERR_MFA_INVALID', `wrong TOTP code for ${user.name}`, { reason: 'wrong' });
    if (!(await this.#users.activateTotp(user.name, pending.secret, step, now))) {
      throw new AuthError('ERR_CONFLICT', `TOTP enrollment for ${user.name} changed meanwhile; start again`);
    }
  }

  /**
   * Checks a code. A code is good once: its time step must be later than the last accepted one,
   * and that is recorded atomically, so two concurrent uses of one code cannot both pass.
   * Returns the accepted step.
   */
  async verify(name: string, code: string): Promise<number> {
    const user = await this.#activeUser(name);
    if (!user.totp) throw new AuthError('ERR_MFA_REQUIRED', `user ${user.name} has no TOTP enrolled`);
    checkCodeFormat(code, this.#params);
    const step = matchTotpStep(user.totp.secret, code, this.#now(), this.#params);
    if (step === undefined) throw new AuthError('ERR_MFA_INVALID', `wrong TOTP code for ${user.name}`, { reason: 'wrong' });
    if (!(await this.#users.acceptTotpStep(user.name, user.totp.secret, step))) {
      throw new AuthError('ERR_MFA_INVALID', `TOTP code for ${user.name} was already used; wait for the next one`, { reason: 'replayed' });
    }
    return step;
  }

  /** Removes the factor and any pending enrollment (an admin's reset for a lost phone). */
  async remove(name: string): Promise<void> {
    const n = normalizeUsername(name);
    if (!(await this.#users.updateUser(n, { totp: null, totpPending: null, updatedAt: this.#now() }))) {
      throw new AuthError('ERR_NOT_FOUND', `user ${n} does not exist`);
    }
  }

  async #activeUser(name: string): Promise<User> {
    const n = normalizeUsername(name);
    const user = await this.#users.getUser(n);
    if (!user) throw new AuthError('ERR_NOT_FOUND', `user ${n} does not exist`);
    if (user.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${n} is disabled`);
    return user;
  }
}
