import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { AuthError } from '../errors.js';

/**
 * scrypt cost parameters. N = 2^log2N; memory is about 128 * N * r bytes per hash, time grows
 * with N * r * p.
 */
export interface ScryptParams {
  readonly log2N: number;
  readonly r: number;
  readonly p: number;
}

/** 2^15 * 8 * 128 = 32 MiB and tens of milliseconds per hash: slow for a guesser, fine for a login. */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { log2N: 15, r: 8, p: 1 };

const SALT_BYTES = 16;
const HASH_BYTES = 32;
// Bounds on parameters read back from storage: a corrupted or planted hash must not make one
// login allocate gigabytes or spin for minutes.
const LIMITS = { log2N: [10, 20], r: [1, 32], p: [1, 16] } as const;

function checkParams(params: ScryptParams, what: string): void {
  for (const k of ['log2N', 'r', 'p'] as const) {
    const v = params[k];
    const [lo, hi] = LIMITS[k];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new AuthError('ERR_CONFIG', `${what}: scrypt ${k} expected an integer in [${lo}, ${hi}], got ${String(v)}`);
    }
  }
}

function derive(password: string, salt: Uint8Array, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.log2N;
  return new Promise((resolve, reject) => {
    // Node refuses when 128*N*r exceeds maxmem (32 MiB by default, exactly our default cost), so
    // give room explicitly rather than depend on that edge.
    const maxmem = 256 * N * params.r + (1 << 20);
    // NFC so that the same password typed on systems that compose accents differently matches.
    scrypt(password.normalize('NFC'), salt, HASH_BYTES, { N, r: params.r, p: params.p, maxmem }, (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64').replace(/=+$/, '');

/**
 * Hashes a password into a self-describing string: `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`
 * (PHC string format, unpadded base64), so parameters can be raised later without losing the
 * ability to verify old hashes.
 */
export async function hashPassword(
  password: string,
  params: ScryptParams = DEFAULT_SCRYPT_PARAMS,
  salt: Uint8Array = randomBytes(SALT_BYTES),
): Promise<string> {
  if (typeof password !== 'string') throw new TypeError('"password" expected a string');
  checkParams(params, 'password hashing');
  if (salt.length < 16) throw new TypeError(`"salt" expected at least 16 bytes, got length=${salt.length}`);
  const hash = await derive(password, salt, params);
  return `$scrypt$ln=${params.log2N},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

interface DecodedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

// Salts from 8 bytes verify (so published vectors can be checked); new hashes get 16.
const ENCODED_RE = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{11,88})\$([A-Za-z0-9+/]{43})$/;

/** Parses an encoded hash; malformed input throws (the message never repeats the hash). */
export function decodePasswordHash(encoded: string): DecodedHash {
  const m = ENCODED_RE.exec(encoded);
  if (!m) throw new AuthError('ERR_BAD_REQUEST', 'malformed password hash: expected $scrypt$ln=N,r=R,p=P$salt$hash');
  const params = { log2N: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  checkParams(params, 'stored password hash');
  return { params, salt: Buffer.from(m[4]!, 'base64'), hash: Buffer.from(m[5]!, 'base64') };
}

/**
 * Whether `password` matches `encoded`. The comparison is constant-time; only a malformed
 * stored hash throws.
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  if (typeof password !== 'string') throw new TypeError('"password" expected a string');
  const { params, salt, hash } = decodePasswordHash(encoded);
  const candidate = await derive(password, salt, params);
  return candidate.length === hash.length && timingSafeEqual(candidate, hash);
}

/** Whether a stored hash was made with weaker (or just different) parameters than `params`. */
export function needsRehash(encoded: string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): boolean {
  const d = decodePasswordHash(encoded).params;
  return d.log2N !== params.log2N || d.r !== params.r || d.p !== params.p;
}
