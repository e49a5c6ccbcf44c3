import { fingerprintSha256, formatPublicKey, parsePublicKeyText } from '@portcullis/cert-core';
import type { CryptoBackend, PublicKey } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import { caRevokedKey, userCertsKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { isCaKind } from '../ca/keystore.js';
import type { CaKind } from '../ca/keystore.js';
import { getHost } from '../hosts/inventory.js';
import { rebuildKrl } from './krl.js';
import type { CaTrust, KrlInfo } from './krl.js';
import { publishNotice } from './notices.js';
import type { AuditLog } from '../audit/log.js';
import type { AuditActor } from '../audit/event.js';
import { SYSTEM_ACTOR } from '../audit/event.js';

/**
 * One revocation as stored in `pc:{ca}:revoked` (id -> JSON). The id is derived from what is
 * revoked (`serial:42`, `key-id:alice req=1`, `key:SHA256:…`), so revoking twice is a no-op.
 * Times are milliseconds since the epoch.
 */
export type Revocation = RevocationCommon &
  (
    | { readonly kind: 'serial'; readonly serial: string; readonly ca?: CaKind }
    | { readonly kind: 'keyId'; readonly keyId: string; readonly ca?: CaKind }
    /** `key` is the public key line; `fingerprint` its SHA-256 fingerprint. */
    | { readonly kind: 'key'; readonly key: string; readonly fingerprint: string }
  );

interface RevocationCommon {
  readonly id: string;
  readonly reason: string;
  readonly revokedAt: number;
  readonly revokedBy?: string;
  /**
   * When the revoked certificate expires: after that the entry is dropped from the KRL (sshd
   * refuses the certificate anyway). Absent when unknown; key revocations never expire.
   */
  readonly expiresAt?: number;
}

/** What to revoke. A user or host expands to the serials of all their live certificates. */
export type RevocationTarget =
  | { readonly by: 'serial'; readonly serial: bigint | string; readonly ca?: CaKind; readonly expiresAt?: number }
  | { readonly by: 'keyId'; readonly keyId: string; readonly ca?: CaKind }
  | { readonly by: 'key'; readonly publicKey: PublicKey | string }
  | { readonly by: 'user'; readonly user: string }
  | { readonly by: 'host'; readonly host: string };

export interface RevocationRequest {
  readonly target: RevocationTarget;
  readonly reason?: string;
  readonly revokedBy?: string;
}

export interface RevocationDeps {
  readonly redis: RedisClient;
  readonly crypto: CryptoBackend;
  /** The trusted CA keys now (CaKeystore.keys()), for scoping KRL sections. */
  readonly trust: () => CaTrust;
  /** The revoked-entries gauge (metrics.setRevokedCertificates). */
  readonly onKrl?: (krl: KrlInfo) => void;
  /** Gets cert.revoked and krl.updated events. */
  readonly audit?: Pick<AuditLog, 'emit'>;
}

export interface RevocationResult {
  /** Entries written by this call. */
  readonly added: readonly Revocation[];
  /** Entries that were already revoked. */
  readonly existing: number;
  readonly krl: KrlInfo;
}

const UINT64_MAX = 0xffffffffffffffffn;

function badRequest(message: string): AuthError {
  return new AuthError('ERR_BAD_REQUEST', `revocation: ${message}`);
}

function parseSerial(v: bigint | string): bigint {
  let serial: bigint;
  if (typeof v === 'bigint') serial = v;
  else if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) serial = BigInt(v);
  else throw badRequest(`"serial" expected a decimal certificate serial, got ${JSON.stringify(String(v))}`);
  // Serial 0 cannot be revoked by serial in a KRL (OpenSSH); we never issue it.
  if (serial < 1n || serial > UINT64_MAX) throw badRequest(`"serial" expected 1..${UINT64_MAX}, got ${serial}`);
  return serial;
}

export function parseRevocation(id: string, json: string): Revocation | undefined {
  try {
    const v = JSON.parse(json) as Record<string, unknown>;
    const common = {
      id,
      reason: typeof v['reason'] === 'string' ? v['reason'] : '',
      revokedAt: typeof v['revokedAt'] === 'number' ? v['revokedAt'] : 0,
      ...(typeof v['revokedBy'] === 'string' ? { revokedBy: v['revokedBy'] } : {}),
      ...(typeof v['expiresAt'] === 'number' ? { expiresAt: v['expiresAt'] } : {}),
    };
    const ca: { ca?: CaKind } = isCaKind(v['ca']) ? { ca: v['ca'] } : {};
    if (v['kind'] === 'serial' && typeof v['serial'] === 'string' && /^[1-9][0-9]{0,19}$/.test(v['serial'])) {
      return { ...common, kind: 'serial', serial: v['serial'], ...ca };
    }
    if (v['kind'] === 'keyId' && typeof v['keyId'] === 'string') return { ...common, kind: 'keyId', keyId: v['keyId'], ...ca };
    if (v['kind'] === 'key' && typeof v['key'] === 'string' && typeof v['fingerprint'] === 'string') {
      return { ...common, kind: 'key', key: v['key'], fingerprint: v['fingerprint'] };
    }
  } catch {
    // Unreadable entries are skipped (and stay in Redis for an admin to look at).
  }
  return undefined;
}

/** The id a revocation of this public key has: `key:SHA256:…`. */
export function keyRevocationId(crypto: CryptoBackend, key: PublicKey): string {
  return `key:${fingerprintSha256(crypto, key)}`;
}

/** Turns a request into entries, reading a user's or host's live serials from Redis. */
async function entriesFor(deps: RevocationDeps, req: RevocationRequest, nowMs: number): Promise<Revocation[]> {
  const reason = req.reason ?? '';
  if (typeof reason !== 'string' || reason.length > 500) throw badRequest('"reason" expected at most 500 characters');
  if (req.revokedBy !== undefined && typeof req.revokedBy !== 'string') throw badRequest('"revokedBy" expected a string');
  const common = { reason, revokedAt: nowMs, ...(req.revokedBy === undefined ? {} : { revokedBy: req.revokedBy }) };
  const t = req.target;
  switch (t?.by) {
    case 'serial': {
      const serial = parseSerial(t.serial).toString();
      if (t.expiresAt !== undefined && !Number.isSafeInteger(t.expiresAt)) throw badRequest('"expiresAt" expected milliseconds since the epoch');
      return [
        {
          ...common,
          id: `serial:${serial}`,
          kind: 'serial',
          serial,
          ...(t.ca === undefined ? {} : { ca: t.ca }),
          ...(t.expiresAt === undefined ? {} : { expiresAt: t.expiresAt }),
        },
      ];
    }
    case 'keyId':
      if (typeof t.keyId !== 'string' || t.keyId === '' || t.keyId.length > 1024 || t.keyId.includes('\0')) {
        throw badRequest('"keyId" expected 1-1024 characters without NUL');
      }
      return [{ ...common, id: `key-id:${t.keyId}`, kind: 'keyId', keyId: t.keyId, ...(t.ca === undefined ? {} : { ca: t.ca }) }];
    case 'key': {
      let key: PublicKey;
      try {
        key = typeof t.publicKey === 'string' ? parsePublicKeyText(t.publicKey, 'publicKey').key : t.publicKey;
      } catch (e) {
        throw badRequest(`"publicKey": ${(e as Error).message}`);
      }
      const fingerprint = fingerprintSha256(deps.crypto, key);
      return [{ ...common, id: keyRevocationId(deps.crypto, key), kind: 'key', key: formatPublicKey(key), fingerprint }];
    }
    case 'user': {
      if (typeof t.user !== 'string' || t.user === '') throw badRequest('"user" expected a user name');
      const live = await deps.redis.zrangebyscore(userCertsKey(t.user), `(${nowMs}`, '+inf', 'WITHSCORES');
      const out: Revocation[] = [];
      for (let i = 0; i + 1 < live.length; i += 2) {
        const serial = live[i]!;
        if (!/^[1-9][0-9]{0,19}$/.test(serial)) continue;
        // The set holds both the user's own certificates (user CA) and those the proxy dialled
        // targets with for them (upstream CA): serials are unique across our CAs, so the entry is
        // scoped to all of them and targets' KRL drops the upstream ones too.
        out.push({ ...common, id: `serial:${serial}`, kind: 'serial', serial, expiresAt: Number(live[i + 1]) });
      }
      return out;
    }
    case 'host': {
      const host = await getHost(deps.redis, t.host);
      if (host === undefined) throw new AuthError('ERR_NOT_FOUND', `revocation: no enrolled host ${JSON.stringify(t.host)}`);
      return host.certificates
        .filter((c) => c.expiresAt > nowMs)
        .map((c) => ({ ...common, id: `serial:${c.serial}`, kind: 'serial' as const, serial: c.serial, ca: 'host' as const, expiresAt: c.expiresAt }));
    }
    default:
      throw badRequest(`"target.by" expected serial, keyId, key, user or host, got ${JSON.stringify((t as { by?: unknown })?.by)}`);
  }
}

function stored(r: Revocation): string {
  const { id, ...rest } = r;
  void id;
  return JSON.stringify(rest);
}

/**
 * Records revocations, rebuilds and stores the KRL (new version, new ETag) and tells the
 * proxies. Revoking what is already revoked changes nothing and publishes nothing.
 */
export async function revoke(deps: RevocationDeps, req: RevocationRequest, nowMs: number): Promise<RevocationResult> {
  const entries = await entriesFor(deps, req, nowMs);
  const added: Revocation[] = [];
  for (const e of entries) {
    if ((await deps.redis.hsetnx(caRevokedKey(), e.id, stored(e))) === 1) added.push(e);
  }
  const krl = await rebuildKrl(deps.redis, deps.trust(), nowMs);
  deps.onKrl?.(krl);
  if (added.length > 0) {
    const serials = added.flatMap((e) => (e.kind === 'serial' ? [e.serial] : []));
    const keyIds = added.flatMap((e) => (e.kind === 'keyId' ? [e.keyId] : []));
    const keys = added.flatMap((e) => (e.kind === 'key' ? [e.fingerprint] : []));
    await publishNotice(deps.redis, { kind: 'revocation', krlVersion: krl.version, serials, keyIds, keys });
    const actor: AuditActor = req.revokedBy === undefined ? SYSTEM_ACTOR : { kind: 'user', name: req.revokedBy };
    await deps.audit?.emit('cert.revoked', actor, {
      by: req.target.by,
      user: req.target.by === 'user' ? req.target.user : undefined,
      host: req.target.by === 'host' ? req.target.host : undefined,
      serials,
      keyIds,
      fingerprints: keys,
      reason: req.reason,
      krlVersion: krl.version,
    });
    await auditKrl(deps, krl);
  }
  return { added, existing: entries.length - added.length, krl };
}

/** Takes back a revocation (a mistake); false when there was none with that id. */
export async function unrevoke(deps: RevocationDeps, id: string, nowMs: number): Promise<boolean> {
  const removed = (await deps.redis.hdel(caRevokedKey(), id)) > 0;
  if (removed) {
    const krl = await rebuildKrl(deps.redis, deps.trust(), nowMs);
    deps.onKrl?.(krl);
    await auditKrl(deps, krl);
  }
  return removed;
}

async function auditKrl(deps: RevocationDeps, krl: KrlInfo): Promise<void> {
  await deps.audit?.emit('krl.updated', SYSTEM_ACTOR, { version: krl.version, entries: krl.entries, sha256: krl.sha256 });
}

/** Whether a public key was revoked outright (issuance refuses to certify it again). */
export async function isKeyRevoked(redis: RedisClient, crypto: CryptoBackend, key: PublicKey): Promise<boolean> {
  return (await redis.hexists(caRevokedKey(), keyRevocationId(crypto, key))) === 1;
}
