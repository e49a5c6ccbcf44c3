import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { AuthError } from '../errors.js';
import { joinTokenKey, secretDigest } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { normalizeHostPrincipal } from '../ca/issue.js';
import type { HostType } from './inventory.js';

/*
 * Join tokens and proxy service credentials share `pc:{tokens}:<sha256>`: both are bearer
 * secrets stored only as their hash, told apart by `type`. A join token is spent atomically on
 * first use and its record kept (marked used) until it would have expired, so a second use is
 * told "already used" rather than "unknown".
 */

export type JoinTokenType = HostType;

/** A join token as stored. Times are milliseconds since the epoch. */
export interface JoinToken {
  /** SHA-256 (hex) of the token: names it in listings and audit events. */
  readonly id: string;
  readonly type: JoinTokenType;
  /** Labels the enrolled host gets (the host cannot choose its own). */
  readonly labels: Readonly<Record<string, string>>;
  /** When set, the only inventory name the token may enroll (and it may re-enroll that host). */
  readonly hostname?: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly createdBy?: string;
  readonly usedAt?: number;
  readonly usedBy?: string;
}

export interface NewJoinToken {
  readonly type: JoinTokenType;
  readonly labels?: Readonly<Record<string, string>>;
  readonly hostname?: string;
  /** Seconds; default 1800, at most 7 days. */
  readonly ttlSeconds?: number;
  readonly createdBy?: string;
}

export const DEFAULT_JOIN_TOKEN_TTL = 1800;
export const MAX_JOIN_TOKEN_TTL = 7 * 86400;
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const LABEL_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9_.\/-]{0,62}$/;
const LABEL_VALUE_RE = /^[^\u0000-\u001f\u007f]{1,256}$/;

function badRequest(message: string): AuthError {
  return new AuthError('ERR_BAD_REQUEST', `hosts: ${message}`);
}

export function checkLabels(labels: unknown): Record<string, string> {
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) throw badRequest('"labels" expected an object of strings');
  const out: Record<string, string> = {};
  const entries = Object.entries(labels as Record<string, unknown>);
  if (entries.length > 64) throw badRequest(`"labels" has ${entries.length} entries; at most 64`);
  for (const [k, v] of entries) {
    if (!LABEL_KEY_RE.test(k)) throw badRequest(`label name ${JSON.stringify(k)} expected letters, digits, _ . / - (max 63)`);
    if (typeof v !== 'string' || !LABEL_VALUE_RE.test(v)) throw badRequest(`label ${k} expected a value of 1-256 characters`);
    out[k] = v;
  }
  return out;
}

function fromFields(id: string, f: Record<string, string>): JoinToken | undefined {
  if (f['type'] !== 'host' && f['type'] !== 'proxy') return undefined;
  return {
    id,
    type: f['type'],
    labels: JSON.parse(f['labels'] ?? '{}') as Record<string, string>,
    ...(f['hostname'] === undefined ? {} : { hostname: f['hostname'] }),
    createdAt: Number(f['createdAt']),
    expiresAt: Number(f['expiresAt']),
    ...(f['createdBy'] === undefined ? {} : { createdBy: f['createdBy'] }),
    ...(f['usedAt'] === undefined ? {} : { usedAt: Number(f['usedAt']) }),
    ...(f['usedBy'] === undefined ? {} : { usedBy: f['usedBy'] }),
  };
}

/**
 * A token never starts with '-': it is pasted after `--token` on command lines, where a leading
 * dash reads as an option (commander refused 1 join in 64 as "ambiguous"). Drawing again costs
 * under 1/64 of the space of 256 random bits.
 */
function newSecret(randomBytes: (n: number) => Uint8Array): string {
  for (let attempt = 0; attempt < 64; attempt++) {
    const token = Buffer.from(randomBytes(32)).toString('base64url');
    if (!TOKEN_RE.test(token)) throw new TypeError('hosts: randomBytes must return 32 bytes');
    if (!token.startsWith('-')) return token;
  }
  throw new TypeError('hosts: randomBytes keeps returning tokens that start with a dash');
}

/** Makes a join token and returns it once (only its hash is stored). */
export async function createJoinToken(
  redis: RedisClient,
  input: NewJoinToken,
  nowMs: number,
  randomBytes: (n: number) => Uint8Array = nodeRandomBytes,
): Promise<{ token: string; joinToken: JoinToken }> {
  if (input?.type !== 'host' && input?.type !== 'proxy') throw badRequest(`"type" expected host or proxy, got ${JSON.stringify(input?.type)}`);
  const labels = checkLabels(input.labels ?? {});
  let hostname: string | undefined;
  if (input.hostname !== undefined) {
    hostname = normalizeHostPrincipal(input.hostname);
    if (hostname === undefined) throw badRequest(`"hostname" ${JSON.stringify(input.hostname)} is not a host name or address`);
  }
  const ttl = input.ttlSeconds ?? DEFAULT_JOIN_TOKEN_TTL;
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_JOIN_TOKEN_TTL) throw badRequest(`"ttlSeconds" expected an integer in 60..${MAX_JOIN_TOKEN_TTL}, got ${ttl}`);
  if (input.createdBy !== undefined && (typeof input.createdBy !== 'string' || input.createdBy.length > 256)) throw badRequest('"createdBy" expected a name');
  const token = newSecret(randomBytes);
  const id = secretDigest(token);
  const joinToken: JoinToken = {
    id,
    type: input.type,
    labels,
    ...(hostname === undefined ? {} : { hostname }),
    createdAt: nowMs,
    expiresAt: nowMs + ttl * 1000,
    ...(input.createdBy === undefined ? {} : { createdBy: input.createdBy }),
  };
  const fields: Record<string, string> = {
    type: joinToken.type,
    labels: JSON.stringify(labels),
    createdAt: String(nowMs),
    expiresAt: String(joinToken.expiresAt),
    ...(hostname === undefined ? {} : { hostname }),
    ...(input.createdBy === undefined ? {} : { createdBy: input.createdBy }),
  };
  await redis.multi().hset(joinTokenKey(id), fields).pexpireat(joinTokenKey(id), joinToken.expiresAt).exec();
  return { token, joinToken };
}

/**
 * The join token a presented secret names, checked: unknown, used, expired or of another type
 * is an AuthError. Reading does not spend it; spendJoinToken does.
 */
export async function peekJoinToken(redis: RedisClient, token: string, type: JoinTokenType, nowMs: number): Promise<JoinToken> {
  if (typeof token !== 'string' || !TOKEN_RE.test(token)) throw new AuthError('ERR_UNAUTHENTICATED', 'hosts: a join token is 43 base64url characters');
  const id = secretDigest(token);
  const t = fromFields(id, await redis.hgetall(joinTokenKey(id)));
  if (t === undefined) throw new AuthError('ERR_UNAUTHENTICATED', 'hosts: unknown or expired join token');
  if (t.usedAt !== undefined) {
    throw new AuthError('ERR_CONFLICT', `hosts: join token already used at ${new Date(t.usedAt).toISOString()}${t.usedBy ? ` by ${t.usedBy}` : ''}`, { tokenId: id });
  }
  if (t.expiresAt <= nowMs) throw new AuthError('ERR_EXPIRED', `hosts: join token expired at ${new Date(t.expiresAt).toISOString()}`, { tokenId: id });
  if (t.type !== type) throw new AuthError('ERR_FORBIDDEN', `hosts: this join token enrolls a ${t.type}, not a ${type}`, { tokenId: id });
  return t;
}

// Marks a token used, once: of two concurrent enrollments with one token exactly one gets 1.
const SPEND = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'usedAt') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'usedAt', ARGV[1], 'usedBy', ARGV[2])
return 1`;

/** Spends a join token for `usedBy` (the enrolled host). ERR_CONFLICT when someone was first. */
export async function spendJoinToken(redis: RedisClient, id: string, usedBy: string, nowMs: number): Promise<void> {
  const r = await redis.eval(SPEND, 1, joinTokenKey(id), String(nowMs), usedBy);
  if (r === 1) return;
  if (r === 0) throw new AuthError('ERR_CONFLICT', 'hosts: join token already used', { tokenId: id });
  throw new AuthError('ERR_UNAUTHENTICATED', 'hosts: unknown or expired join token');
}

/** Join tokens not yet used or expired are revocable by id. */
export async function deleteJoinToken(redis: RedisClient, id: string): Promise<boolean> {
  return (await redis.del(joinTokenKey(id))) > 0;
}

/** A proxy's identity when it calls auth with its service credential. */
export interface ServicePrincipal {
  /** The proxy's inventory name. */
  readonly host: string;
  readonly credentialId: string;
}

/** Makes a service credential for an enrolled proxy; returns it once. */
export async function createServiceCredential(
  redis: RedisClient,
  host: string,
  nowMs: number,
  randomBytes: (n: number) => Uint8Array = nodeRandomBytes,
): Promise<{ credential: string; id: string }> {
  const credential = newSecret(randomBytes);
  const id = secretDigest(credential);
  await redis.hset(joinTokenKey(id), { type: 'service', host, createdAt: String(nowMs) });
  return { credential, id };
}

export async function deleteServiceCredential(redis: RedisClient, id: string): Promise<void> {
  await redis.del(joinTokenKey(id));
}

/**
 * The proxy a presented service credential belongs to. The hash is looked up, not compared; the
 * record must still be a service credential (a join token's hash never authenticates a proxy).
 */
export async function authenticateServiceCredential(redis: RedisClient, credential: string): Promise<ServicePrincipal> {
  const unknown = new AuthError('ERR_UNAUTHENTICATED', 'hosts: unknown service credential');
  if (typeof credential !== 'string' || !TOKEN_RE.test(credential)) throw unknown;
  const id = secretDigest(credential);
  const f = await redis.hgetall(joinTokenKey(id));
  if (f['type'] !== 'service' || f['host'] === undefined) throw unknown;
  return { host: f['host'], credentialId: id };
}
