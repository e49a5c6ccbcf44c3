import { createHash } from 'node:crypto';
import { KrlBuilder, encodeKrl, encodePublicKey, parsePublicKeyText } from '@portcullis/cert-core';
import type { PublicKey } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import { caKrlKey, caKrlVersionKey, caRevokedKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import type { CaKind } from '../ca/keystore.js';
import { parseRevocation } from './revocations.js';
import type { Revocation } from './revocations.js';

/** The public keys of every trusted CA (active and standby), per kind. */
export interface CaTrust {
  readonly user: readonly PublicKey[];
  readonly upstream: readonly PublicKey[];
  readonly host: readonly PublicKey[];
}

/** The KRL as served to hosts: `ETag` is `"<sha256>"`, hosts replace RevokedKeys when it changes. */
export interface KrlInfo {
  readonly bytes: Uint8Array;
  /** Monotonic across rebuilds (also inside the KRL header, as `ssh-keygen -Q -l` shows). */
  readonly version: number;
  /** Hex SHA-256 of `bytes`. */
  readonly sha256: string;
  readonly etag: string;
  /** Milliseconds since the epoch. */
  readonly generatedAt: number;
  /** Revocation entries it holds. */
  readonly entries: number;
  /** trustDigest of the CA keys it was built for. */
  readonly trust: string;
}

/** Names the set of trusted CA keys, so a KRL built for another set is noticed. */
export function trustDigest(trust: CaTrust): string {
  const blobs = (['user', 'upstream', 'host'] as const).flatMap((kind) => trust[kind].map((k) => `${kind}:${Buffer.from(encodePublicKey(k)).toString('base64')}`));
  return createHash('sha256').update(blobs.sort().join('\n')).digest('hex');
}

function scopes(trust: CaTrust, ca: CaKind | undefined): readonly PublicKey[] {
  return ca === undefined ? [...trust.user, ...trust.upstream, ...trust.host] : trust[ca];
}

/**
 * Encodes revocations as a KRL (cert-core, the `safe` layout: no bitmap sshd cannot read back).
 * Serial and key-id entries are scoped to our CA keys, not to "any CA": serials are ours, and a
 * host that also trusts another CA must not see that CA's certificate 5 revoked with ours.
 */
export function encodeRevocations(entries: readonly Revocation[], trust: CaTrust, version: number, nowMs: number): Uint8Array {
  const b = new KrlBuilder();
  for (const e of entries) {
    switch (e.kind) {
      case 'serial':
        for (const ca of scopes(trust, e.ca)) b.revokeSerial(ca, BigInt(e.serial));
        break;
      case 'keyId':
        for (const ca of scopes(trust, e.ca)) b.revokeKeyId(ca, e.keyId);
        break;
      case 'key':
        b.revokeKey(parsePublicKeyText(e.key, `revocation ${e.id}`).key);
        break;
    }
  }
  return encodeKrl(b.build(), {
    version: BigInt(version),
    generatedDate: BigInt(Math.floor(nowMs / 1000)),
    comment: `portcullis krl v${version}`,
    layout: 'safe',
  });
}

// Stores the KRL only if it is newer than the stored one: two auth replicas rebuilding at once
// may finish out of order, and the older build must not overwrite the newer.
const STORE_IF_NEWER = `
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'bytes', ARGV[2], 'sha256', ARGV[3], 'generatedAt', ARGV[4], 'entries', ARGV[5], 'trust', ARGV[6])
return 1`;

/** The stored revocations, without dropping expired ones. */
export async function readRevocations(redis: RedisClient): Promise<Revocation[]> {
  const all = await redis.hgetall(caRevokedKey());
  const out: Revocation[] = [];
  for (const [id, json] of Object.entries(all)) {
    const r = parseRevocation(id, json);
    if (r !== undefined) out.push(r);
  }
  return out.sort((a, b) => a.revokedAt - b.revokedAt || a.id.localeCompare(b.id));
}

/**
 * Rebuilds the KRL from the revocations in Redis and stores it with a new version. Entries for
 * certificates that have expired are dropped first: sshd refuses those anyway, and the KRL stays
 * as small as the set of live revoked certificates. The version is drawn before the entries are
 * read, so a build with a higher version always saw every revocation written before it began.
 */
export async function rebuildKrl(redis: RedisClient, trust: CaTrust, nowMs: number): Promise<KrlInfo> {
  const version = await redis.incr(caKrlVersionKey());
  const entries = await readRevocations(redis);
  const expired = entries.filter((e) => e.expiresAt !== undefined && e.expiresAt <= nowMs);
  const live = entries.filter((e) => !expired.includes(e));
  if (expired.length > 0) await redis.hdel(caRevokedKey(), ...expired.map((e) => e.id));
  const bytes = encodeRevocations(live, trust, version, nowMs);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const stored = await redis.eval(STORE_IF_NEWER, 1, caKrlKey(), String(version), Buffer.from(bytes), sha256, String(nowMs), String(live.length), trustDigest(trust));
  if (stored === 1) return { bytes, version, sha256, etag: `"${sha256}"`, generatedAt: nowMs, entries: live.length, trust: trustDigest(trust) };
  const newer = await getKrl(redis);
  if (newer === undefined) throw new AuthError('ERR_UNAVAILABLE', 'revocation: the KRL vanished from Redis while it was rebuilt');
  return newer;
}

/** The stored KRL, or undefined before the first build. */
export async function getKrl(redis: RedisClient): Promise<KrlInfo | undefined> {
  const f = await redis.hgetallBuffer(caKrlKey());
  const bytes = f['bytes'];
  if (bytes === undefined) return undefined;
  const sha256 = f['sha256']?.toString('latin1') ?? createHash('sha256').update(bytes).digest('hex');
  return {
    bytes: new Uint8Array(bytes),
    version: Number(f['version']?.toString('latin1') ?? '0'),
    sha256,
    etag: `"${sha256}"`,
    generatedAt: Number(f['generatedAt']?.toString('latin1') ?? '0'),
    entries: Number(f['entries']?.toString('latin1') ?? '0'),
    trust: f['trust']?.toString('latin1') ?? '',
  };
}

/**
 * The KRL to serve: the stored one, or a fresh build when there is none yet or when the trusted
 * CA keys changed since (a rotation must put the new key's scope into the KRL). Pass
 * `maxAgeMs` to also rebuild a KRL older than that (it drops expired entries).
 */
export async function currentKrl(redis: RedisClient, trust: CaTrust, nowMs: number, maxAgeMs?: number): Promise<KrlInfo> {
  const stored = await getKrl(redis);
  const fresh = stored !== undefined && stored.trust === trustDigest(trust) && (maxAgeMs === undefined || nowMs - stored.generatedAt < maxAgeMs);
  if (fresh) return stored;
  return rebuildKrl(redis, trust, nowMs);
}
