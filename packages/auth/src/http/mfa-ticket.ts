import { randomBytes } from 'node:crypto';
import { AuthError } from '../errors.js';
import type { LoginMethod } from '../sessions/login-session.js';
import { secretDigest } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';

/*
 * The ticket between a first factor that passed and the second factor still to come. It is a
 * random secret handed to the client, stored (as its SHA-256) in Redis for a few minutes, so any
 * auth replica can finish the login; it says who passed the first factor and how.
 * TODO(store): move the key name to store/keys.ts with the others.
 */

export const MFA_TICKET_TTL_MS = 5 * 60_000;

export const mfaTicketKey = (hash: string): string => {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new TypeError('mfa ticket key expected a SHA-256 hex digest');
  return `pc:{mfa:${hash}}`;
};

export interface MfaTicket {
  readonly user: string;
  readonly method: LoginMethod;
  readonly expiresAt: number;
}

export async function createMfaTicket(redis: RedisClient, user: string, method: LoginMethod, nowMs: number): Promise<{ ticket: string; expiresAt: number }> {
  const ticket = randomBytes(32).toString('base64url');
  const expiresAt = nowMs + MFA_TICKET_TTL_MS;
  const key = mfaTicketKey(secretDigest(ticket));
  await redis.multi().hset(key, { user, method, expiresAt: String(expiresAt) }).pexpireat(key, expiresAt).exec();
  return { ticket, expiresAt };
}

const unknown = (): AuthError => new AuthError('ERR_UNAUTHENTICATED', 'unknown, used or expired MFA ticket; log in again');

/** The ticket's login, without spending it (a wrong code may be retried until it expires). */
export async function readMfaTicket(redis: RedisClient, ticket: string, nowMs: number): Promise<MfaTicket> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(ticket)) throw unknown();
  const f = await redis.hgetall(mfaTicketKey(secretDigest(ticket)));
  const expiresAt = Number(f['expiresAt']);
  if (f['user'] === undefined || (f['method'] !== 'password' && f['method'] !== 'oidc' && f['method'] !== 'oidc-device')) throw unknown();
  if (!(expiresAt > nowMs)) throw new AuthError('ERR_EXPIRED', 'the MFA ticket expired; log in again');
  return { user: f['user'], method: f['method'], expiresAt };
}

/** Spends the ticket; of two concurrent completions only one gets true. */
export async function spendMfaTicket(redis: RedisClient, ticket: string): Promise<boolean> {
  return (await redis.del(mfaTicketKey(secretDigest(ticket)))) === 1;
}
