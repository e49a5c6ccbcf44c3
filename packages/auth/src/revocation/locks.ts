import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { AuthError } from '../errors.js';
import { locksKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { publishNotice } from './notices.js';

/**
 * A lock stops access at once: no new certificate for a locked user, role, login or host, and
 * proxies told over pub/sub end the live sessions it covers. Certificates already issued stay
 * valid until they expire (minutes); revoke them as well to cut those short.
 *
 * A `session` lock names a login session (the 16 hex digits of `sess=` in a user certificate's
 * key id). Revoking a login session places one (see session-locks.ts) so that proxies end the
 * SSH and browser sessions opened with its certificates; it refuses nothing new by itself,
 * since a revoked login session mints nothing and auth refuses its certificates already.
 */
export type LockTargetKind = 'user' | 'role' | 'login' | 'host' | 'session';
export const LOCK_TARGET_KINDS: readonly LockTargetKind[] = ['user', 'role', 'login', 'host', 'session'];
const SESSION_NAME_RE = /^[0-9a-f]{16}$/;

export interface LockTarget {
  readonly kind: LockTargetKind;
  readonly name: string;
}

/** Times are milliseconds since the epoch. */
export interface Lock {
  readonly id: string;
  readonly target: LockTarget;
  /** Shown to the locked-out user and in the audit log. */
  readonly message: string;
  readonly createdAt: number;
  /** Absent: until removed. */
  readonly expiresAt?: number;
  readonly createdBy?: string;
}

export interface NewLock {
  readonly target: LockTarget;
  readonly message?: string;
  /** Seconds; absent for a lock that stays until removed. */
  readonly ttlSeconds?: number;
  readonly createdBy?: string;
}

const NAME_RE = /^[^\u0000-\u001f\u007f]{1,256}$/;
const MAX_LOCK_TTL = 366 * 86400;

function badRequest(message: string): AuthError {
  return new AuthError('ERR_BAD_REQUEST', `locks: ${message}`);
}

/** Checks a NewLock; throws ERR_BAD_REQUEST naming the first bad field. */
export function checkNewLock(l: NewLock): void {
  if (typeof l !== 'object' || l === null) throw new TypeError('locks: expected a NewLock object');
  if (typeof l.target !== 'object' || l.target === null || !LOCK_TARGET_KINDS.includes(l.target.kind)) {
    throw badRequest(`"target.kind" expected one of ${LOCK_TARGET_KINDS.join(', ')}, got ${JSON.stringify(l.target?.kind)}`);
  }
  if (typeof l.target.name !== 'string' || !NAME_RE.test(l.target.name)) {
    throw badRequest('"target.name" expected 1-256 characters without control characters');
  }
  if (l.target.kind === 'session' && !SESSION_NAME_RE.test(l.target.name)) {
    throw badRequest(`"target.name" of a session lock expected 16 lowercase hex digits (sess= of a key id), got ${JSON.stringify(l.target.name)}`);
  }
  if (l.message !== undefined && (typeof l.message !== 'string' || l.message.length > 500)) throw badRequest('"message" expected at most 500 characters');
  if (l.ttlSeconds !== undefined && (!Number.isInteger(l.ttlSeconds) || l.ttlSeconds < 1 || l.ttlSeconds > MAX_LOCK_TTL)) {
    throw badRequest(`"ttlSeconds" expected an integer in 1..${MAX_LOCK_TTL}, got ${l.ttlSeconds}`);
  }
  if (l.createdBy !== undefined && (typeof l.createdBy !== 'string' || !NAME_RE.test(l.createdBy))) throw badRequest('"createdBy" expected a name');
}

function parseLock(id: string, json: string): Lock | undefined {
  try {
    const v = JSON.parse(json) as Partial<Lock>;
    if (typeof v.target?.name !== 'string' || !LOCK_TARGET_KINDS.includes(v.target.kind) || typeof v.createdAt !== 'number') return undefined;
    return {
      id,
      target: { kind: v.target.kind, name: v.target.name },
      message: typeof v.message === 'string' ? v.message : '',
      createdAt: v.createdAt,
      ...(typeof v.expiresAt === 'number' ? { expiresAt: v.expiresAt } : {}),
      ...(typeof v.createdBy === 'string' ? { createdBy: v.createdBy } : {}),
    };
  } catch {
    return undefined;
  }
}

export function isLockActive(lock: Lock, nowMs: number): boolean {
  return lock.expiresAt === undefined || lock.expiresAt > nowMs;
}

/** Stores a lock and tells the proxies (channel `pc:locks`, `{kind: 'lock', lock}`). */
export async function createLock(
  redis: RedisClient,
  input: NewLock,
  nowMs: number,
  randomBytes: (n: number) => Uint8Array = nodeRandomBytes,
): Promise<Lock> {
  checkNewLock(input);
  const lock: Lock = {
    id: Buffer.from(randomBytes(8)).toString('hex'),
    target: { kind: input.target.kind, name: input.target.name },
    message: input.message ?? '',
    createdAt: nowMs,
    ...(input.ttlSeconds === undefined ? {} : { expiresAt: nowMs + input.ttlSeconds * 1000 }),
    ...(input.createdBy === undefined ? {} : { createdBy: input.createdBy }),
  };
  const { id, ...stored } = lock;
  await redis.hset(locksKey(), id, JSON.stringify(stored));
  await publishNotice(redis, { kind: 'lock', lock });
  return lock;
}

/** Removes a lock; false when there was none with that id. */
export async function removeLock(redis: RedisClient, id: string): Promise<boolean> {
  return (await redis.hdel(locksKey(), id)) > 0;
}

/** The locks in force, oldest first. Expired ones are ignored and dropped from Redis. */
export async function listLocks(redis: RedisClient, nowMs: number): Promise<Lock[]> {
  const all = await redis.hgetall(locksKey());
  const live: Lock[] = [];
  const expired: string[] = [];
  for (const [id, json] of Object.entries(all)) {
    const lock = parseLock(id, json);
    // An unreadable entry is kept in Redis for an admin to see, and not applied.
    if (lock === undefined) continue;
    if (isLockActive(lock, nowMs)) live.push(lock);
    else expired.push(id);
  }
  if (expired.length > 0) await redis.hdel(locksKey(), ...expired);
  return live.sort((a, b) => a.createdAt - b.createdAt);
}

/** Who or what is asking: the parts of a request a lock can name. */
export interface LockSubject {
  readonly user?: string;
  readonly roles?: readonly string[];
  readonly logins?: readonly string[];
  readonly host?: string;
  /** The login session (16 hex digits) the request's certificate was minted under. */
  readonly session?: string;
}

/**
 * The first active lock that covers the subject, if any. A login lock covers the subject when
 * any of its logins is locked: callers that can drop a login instead (minting, which lists every
 * allowed login) filter with lockedLogins first and pass only what is left.
 */
export function findLock(locks: readonly Lock[], subject: LockSubject, nowMs: number): Lock | undefined {
  return locks.find((l) => {
    if (!isLockActive(l, nowMs)) return false;
    const { kind, name } = l.target;
    switch (kind) {
      case 'user':
        return subject.user === name;
      case 'role':
        return subject.roles?.includes(name) ?? false;
      case 'login':
        return subject.logins?.includes(name) ?? false;
      case 'host':
        return subject.host === name;
      case 'session':
        return subject.session === name;
    }
  });
}

/** The logins among `logins` that an active login lock covers. */
export function lockedLogins(locks: readonly Lock[], logins: readonly string[], nowMs: number): Set<string> {
  const out = new Set<string>();
  for (const l of locks) if (l.target.kind === 'login' && isLockActive(l, nowMs) && logins.includes(l.target.name)) out.add(l.target.name);
  return out;
}

/** The AuthError for a request a lock refuses. */
export function lockedError(lock: Lock): AuthError {
  const until = lock.expiresAt === undefined ? '' : ` until ${new Date(lock.expiresAt).toISOString()}`;
  const why = lock.message === '' ? '' : `: ${lock.message}`;
  return new AuthError('ERR_LOCKED', `locks: ${lock.target.kind} ${JSON.stringify(lock.target.name)} is locked${until}${why}`, {
    reason: 'locked',
    lockId: lock.id,
    target: `${lock.target.kind}:${lock.target.name}`,
  });
}
