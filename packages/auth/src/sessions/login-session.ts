import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { AuthError } from '../errors.js';
import { secretDigest, sessionKey, userSessionsKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';

/** How the user proved who they are when the session was made. */
export type LoginMethod = 'password' | 'oidc' | 'oidc-device';
export const LOGIN_METHODS: readonly LoginMethod[] = ['password', 'oidc', 'oidc-device'];

export type MfaMethod = 'totp' | 'webauthn';

/**
 * A login session as stored. `id` is the SHA-256 (hex) of the token: it names the session in
 * logs, audit events and admin listings; the token itself exists only in the client's hands.
 * Times are milliseconds since the epoch.
 */
export interface LoginSession {
  readonly id: string;
  readonly user: string;
  readonly method: LoginMethod;
  readonly mfaVerified: boolean;
  readonly mfaMethod?: MfaMethod;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** The client address at login, for audit (certificates are pinned separately). */
  readonly sourceAddress?: string;
}

export interface NewLoginSession {
  readonly user: string;
  readonly method: LoginMethod;
  readonly mfaVerified: boolean;
  readonly mfaMethod?: MfaMethod;
  /** From the access policy (login_session_ttl). */
  readonly ttlSeconds: number;
  readonly sourceAddress?: string;
}

/** Longest login session accepted, whatever a role says: a week. */
export const MAX_LOGIN_SESSION_TTL = 7 * 86400;
const TOKEN_BYTES = 32;
// 32 bytes in unpadded base64url.
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

function badRequest(message: string): AuthError {
  return new AuthError('ERR_BAD_REQUEST', `sessions: ${message}`);
}

/** Checks a NewLoginSession; throws ERR_BAD_REQUEST naming the first bad field. */
export function checkNewLoginSession(s: NewLoginSession): void {
  if (typeof s !== 'object' || s === null) throw new TypeError('sessions: expected a NewLoginSession object');
  if (typeof s.user !== 'string' || s.user === '') throw badRequest('"user" expected a non-empty string');
  if (!LOGIN_METHODS.includes(s.method)) throw badRequest(`"method" expected one of ${LOGIN_METHODS.join(', ')}, got ${JSON.stringify(s.method)}`);
  if (typeof s.mfaVerified !== 'boolean') throw badRequest('"mfaVerified" expected a boolean');
  if (s.mfaMethod !== undefined && s.mfaMethod !== 'totp' && s.mfaMethod !== 'webauthn') {
    throw badRequest(`"mfaMethod" expected totp or webauthn, got ${JSON.stringify(s.mfaMethod)}`);
  }
  if (s.mfaMethod !== undefined && !s.mfaVerified) throw badRequest('"mfaMethod" given but "mfaVerified" is false');
  if (!Number.isInteger(s.ttlSeconds) || s.ttlSeconds < 60 || s.ttlSeconds > MAX_LOGIN_SESSION_TTL) {
    throw badRequest(`"ttlSeconds" expected an integer in 60..${MAX_LOGIN_SESSION_TTL}, got ${s.ttlSeconds}`);
  }
  if (s.sourceAddress !== undefined && (typeof s.sourceAddress !== 'string' || s.sourceAddress.length > 64)) {
    throw badRequest('"sourceAddress" expected an address of at most 64 characters');
  }
}

// Grows the expiry of the user's session set to cover its newest session; a plain PEXPIREAT
// would let a shorter session cut the set's life under a longer one.
const EXTEND_EXPIRY = `
local ttl = redis.call('PTTL', KEYS[1])
local want = tonumber(ARGV[1]) - tonumber(ARGV[2])
if ttl == -1 or ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
return 1`;

function toFields(s: LoginSession): Record<string, string> {
  return {
    user: s.user,
    method: s.method,
    mfa: s.mfaVerified ? '1' : '0',
    ...(s.mfaMethod === undefined ? {} : { mfaMethod: s.mfaMethod }),
    createdAt: String(s.createdAt),
    expiresAt: String(s.expiresAt),
    ...(s.sourceAddress === undefined ? {} : { sourceAddress: s.sourceAddress }),
  };
}

function fromFields(id: string, f: Record<string, string>): LoginSession | undefined {
  const { user, method, mfa, mfaMethod, createdAt, expiresAt, sourceAddress } = f;
  if (user === undefined || method === undefined || !LOGIN_METHODS.includes(method as LoginMethod)) return undefined;
  const created = Number(createdAt);
  const expires = Number(expiresAt);
  if (!Number.isSafeInteger(created) || !Number.isSafeInteger(expires)) return undefined;
  return {
    id,
    user,
    method: method as LoginMethod,
    mfaVerified: mfa === '1',
    ...(mfaMethod === 'totp' || mfaMethod === 'webauthn' ? { mfaMethod } : {}),
    createdAt: created,
    expiresAt: expires,
    ...(sourceAddress === undefined ? {} : { sourceAddress }),
  };
}

/**
 * Makes a login session and returns its token, once: only the token's SHA-256 is stored. The
 * user's session set is written first, so "revoke all of alice's sessions" finds a session even
 * if the process dies between the two writes (they live in different cluster slots).
 */
export async function createLoginSession(
  redis: RedisClient,
  input: NewLoginSession,
  nowMs: number,
  randomBytes: (n: number) => Uint8Array = nodeRandomBytes,
): Promise<{ token: string; session: LoginSession }> {
  checkNewLoginSession(input);
  const token = Buffer.from(randomBytes(TOKEN_BYTES)).toString('base64url');
  if (!TOKEN_RE.test(token)) throw new TypeError('sessions: randomBytes must return 32 bytes');
  const id = secretDigest(token);
  const session: LoginSession = {
    id,
    user: input.user,
    method: input.method,
    mfaVerified: input.mfaVerified,
    ...(input.mfaMethod === undefined ? {} : { mfaMethod: input.mfaMethod }),
    createdAt: nowMs,
    expiresAt: nowMs + input.ttlSeconds * 1000,
    ...(input.sourceAddress === undefined ? {} : { sourceAddress: input.sourceAddress }),
  };
  const setKey = userSessionsKey(input.user);
  await pruneUserSessions(redis, input.user);
  await redis.sadd(setKey, id);
  await redis.eval(EXTEND_EXPIRY, 1, setKey, String(session.expiresAt), String(nowMs));
  await redis.multi().hset(sessionKey(id), toFields(session)).pexpireat(sessionKey(id), session.expiresAt).exec();
  return { token, session };
}

/**
 * The session a presented token names. The token is hashed and the hash looked up: no secret
 * is compared as a string, so timing says nothing about how much of a guess was right.
 */
export async function authenticateLoginSession(redis: RedisClient, token: string, nowMs: number): Promise<LoginSession> {
  if (typeof token !== 'string' || !TOKEN_RE.test(token)) {
    throw new AuthError('ERR_UNAUTHENTICATED', 'sessions: a login session token is 43 base64url characters');
  }
  const session = await getLoginSession(redis, secretDigest(token));
  if (session === undefined) throw new AuthError('ERR_UNAUTHENTICATED', 'sessions: unknown, expired or revoked login session; log in again');
  // Redis expires the key too; this covers a Redis clock that lags ours.
  if (session.expiresAt <= nowMs) {
    throw new AuthError('ERR_EXPIRED', `sessions: login session expired at ${new Date(session.expiresAt).toISOString()}; log in again`);
  }
  return session;
}

/** A session by id (the token's SHA-256), or undefined. */
export async function getLoginSession(redis: RedisClient, id: string): Promise<LoginSession | undefined> {
  const fields = await redis.hgetall(sessionKey(id));
  return fromFields(id, fields);
}

/** Revokes one session by id; false when it did not exist (any more). */
export async function revokeLoginSession(redis: RedisClient, id: string): Promise<boolean> {
  const session = await getLoginSession(redis, id);
  const removed = await redis.del(sessionKey(id));
  if (session !== undefined) await redis.srem(userSessionsKey(session.user), id);
  return removed > 0;
}

/** Revokes every login session of `user`; returns the ids of those that were live. */
export async function revokeUserSessions(redis: RedisClient, user: string): Promise<string[]> {
  const setKey = userSessionsKey(user);
  const ids = await redis.smembers(setKey);
  // One DEL per session: they live in different cluster slots.
  const removed = await Promise.all(ids.map((id) => redis.del(sessionKey(id))));
  if (ids.length > 0) await redis.srem(setKey, ...ids);
  return ids.filter((_, i) => removed[i]! > 0);
}

/** The live sessions of `user`, newest first. */
export async function listUserSessions(redis: RedisClient, user: string, nowMs: number): Promise<LoginSession[]> {
  const ids = await redis.smembers(userSessionsKey(user));
  const sessions = await Promise.all(ids.map((id) => getLoginSession(redis, id)));
  return sessions
    .filter((s): s is LoginSession => s !== undefined && s.expiresAt > nowMs)
    .sort((a, b) => b.createdAt - a.createdAt);
}

/** Drops ids of sessions Redis has expired from the user's set, so it does not grow forever. */
async function pruneUserSessions(redis: RedisClient, user: string): Promise<void> {
  const setKey = userSessionsKey(user);
  const ids = await redis.smembers(setKey);
  if (ids.length === 0) return;
  const exists = await Promise.all(ids.map((id) => redis.exists(sessionKey(id))));
  const gone = ids.filter((_, i) => exists[i] === 0);
  if (gone.length > 0) await redis.srem(setKey, ...gone);
}
