import { createHash } from 'node:crypto';
import { AuthError } from '../errors.js';

/*
 * Redis key names, one function per row of the key table in docs/auth-design.md. The part in
 * braces is the Redis Cluster hash tag: only it decides the slot, so keys that one operation
 * must change atomically (MULTI or a script) share it. Operations that span tags (creating a
 * login session touches {session:HASH} and {user:NAME}; issuing touches {ca} and {user:NAME})
 * cannot be atomic on a cluster and are written as ordered, idempotent steps instead.
 */

/** A rate-limit family; closed so that a kind can never contain the ':' that separates KEY. */
export type RateLimitKind = 'login-user' | 'login-addr' | 'totp-user' | 'totp-addr' | 'enroll-addr' | 'mint-user';

/** Pub/sub channel for lock and revocation notices to proxies (channels have no slot). */
export const LOCKS_CHANNEL = 'pc:locks';

// A brace would end or open the hash tag early, moving the key to another slot than its
// siblings; control characters make keys unreadable in redis-cli and logs.
const UNSAFE_NAME = /[{}\u0000-\u001f\u007f]/;

function name(what: string, value: string): string {
  if (value.length === 0 || value.length > 256 || UNSAFE_NAME.test(value)) {
    throw new AuthError(
      'ERR_BAD_REQUEST',
      `store: ${what} ${JSON.stringify(value.slice(0, 64))} must be 1-256 characters without "{", "}" or control characters`,
    );
  }
  return value;
}

// Secrets are keyed by their SHA-256 only; requiring the hex digest form here stops a caller
// from ever writing a raw token into a key name (and so into MONITOR output or a backup).
function digest(what: string, value: string): string {
  if (!/^[0-9a-f]{64}$/.test(value)) {
    throw new TypeError(`store: ${what} expected a lowercase hex SHA-256 digest (64 characters), got length=${value.length}`);
  }
  return value;
}

/** The digest form every secret-keyed entry (invite, login session, join token) uses. */
export function secretDigest(secret: string | Uint8Array): string {
  return createHash('sha256').update(secret).digest('hex');
}

export const caSerialKey = (): string => 'pc:{ca}:serial';
export const caRevokedKey = (): string => 'pc:{ca}:revoked';
export const caKrlKey = (): string => 'pc:{ca}:krl';
export const caKrlVersionKey = (): string => 'pc:{ca}:krl:version';
/** Per CA kind, the active and trusted keys every replica must hold (ca/shared-trust.ts). */
export const caTrustKey = (): string => 'pc:{ca}:trust';

export const auditEventsKey = (): string => 'pc:{audit}:events';

export const usersIndexKey = (): string => 'pc:{users}:index';
export const userRecordKey = (user: string): string => `pc:{user:${name('user name', user)}}:record`;
export const userTotpUsedKey = (user: string): string => `pc:{user:${name('user name', user)}}:totp-used`;
export const userCertsKey = (user: string): string => `pc:{user:${name('user name', user)}}:certs`;
export const userSessionsKey = (user: string): string => `pc:{user:${name('user name', user)}}:sessions`;

export const inviteKey = (inviteHash: string): string => `pc:{invite:${digest('invite hash', inviteHash)}}`;
export const sessionKey = (sessionHash: string): string => `pc:{session:${digest('session hash', sessionHash)}}`;
export const oidcStateKey = (state: string): string => `pc:{oidc:${name('OIDC state', state)}}`;

export const rolesKey = (): string => 'pc:{roles}:all';

export const joinTokenKey = (tokenHash: string): string => `pc:{tokens}:${digest('join token hash', tokenHash)}`;

export const hostsIndexKey = (): string => 'pc:{hosts}:index';
export const hostKey = (host: string): string => `pc:{host:${name('host name', host)}}`;

export const locksKey = (): string => 'pc:{locks}:all';

export const rateKey = (kind: RateLimitKind, key: string): string => `pc:{rate}:${kind}:${name('rate-limit key', key)}`;

/**
 * The hash tag Redis Cluster hashes for a key: the text between the first '{' and the next '}'
 * when that is non-empty, else the whole key (the rule in the Redis Cluster specification).
 */
export function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

// CRC16-CCITT (XModem: polynomial 0x1021, initial value 0), the checksum the Redis Cluster
// specification names for key slots; a 256-entry table keeps it a lookup per byte.
const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ byte) & 0xff] ?? 0);
  return crc;
}

/** The Redis Cluster slot (0-16383) of a key. */
export function keySlot(key: string): number {
  return crc16(Buffer.from(hashTag(key), 'utf8')) % 16384;
}

/** Whether all keys live in one slot, i.e. may be used together in MULTI or a script on a cluster. */
export function sameSlot(...keys: readonly string[]): boolean {
  const first = keys[0];
  if (first === undefined) return true;
  const slot = keySlot(first);
  return keys.every((k) => keySlot(k) === slot);
}
