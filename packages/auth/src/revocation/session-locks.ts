import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { KEY_ID_SESSION_DIGITS } from '../ca/client-certificate.js';
import { userCertsKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { createLock } from './locks.js';
import type { Lock } from './locks.js';

/*
 * A revoked login session ends the SSH and browser sessions opened with its certificates the way
 * a lock does: it becomes a `session` lock, which every proxy reads on its next poll (2 s) and
 * matches against the `sess=` field of each live session's certificate key id. The lock refuses
 * nothing new (auth already refuses the certificates of a revoked session), so it only has to
 * live as long as a proxy might still learn of it: while any certificate of the user is valid,
 * and at least SESSION_LOCK_MIN_TTL_SECONDS for a proxy cut off from auth for a while.
 */

export const SESSION_LOCK_MIN_TTL_SECONDS = 300;
const MAX_LOCK_TTL = 366 * 86400;

/** Seconds a session lock lives, given when the user's newest certificate expires (ms). */
export function sessionLockTtl(newestCertValidBefore: number | undefined, nowMs: number): number {
  const left = newestCertValidBefore === undefined ? 0 : Math.ceil((newestCertValidBefore - nowMs) / 1000);
  return Math.min(MAX_LOCK_TTL, Math.max(SESSION_LOCK_MIN_TTL_SECONDS, left));
}

export interface RevokedLoginSessions {
  readonly user: string;
  /** Full login session ids (or their first 16 hex digits). */
  readonly sessionIds: readonly string[];
  /** Shown to the user whose sessions end, and in the audit log. */
  readonly message: string;
  readonly createdBy?: string;
}

/** Places one `session` lock per revoked login session; returns them (none for no sessions). */
export async function lockRevokedLoginSessions(
  redis: RedisClient,
  input: RevokedLoginSessions,
  nowMs: number,
  randomBytes: (n: number) => Uint8Array = nodeRandomBytes,
): Promise<Lock[]> {
  if (input.sessionIds.length === 0) return [];
  // Certificates are recorded under the user with their expiry as score: the last is the newest.
  const newest = await redis.zrange(userCertsKey(input.user), -1, -1, 'WITHSCORES');
  const ttlSeconds = sessionLockTtl(newest[1] === undefined ? undefined : Number(newest[1]), nowMs);
  const names = [...new Set(input.sessionIds.map((id) => id.slice(0, KEY_ID_SESSION_DIGITS)))];
  return Promise.all(
    names.map((name) =>
      createLock(
        redis,
        { target: { kind: 'session', name }, message: input.message, ttlSeconds, ...(input.createdBy === undefined ? {} : { createdBy: input.createdBy }) },
        nowMs,
        randomBytes,
      ),
    ),
  );
}
