import { AuthError } from '../errors.js';
import { hostKey, hostsIndexKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';

/**
 * Every name and address of every enrolled host -> the host's inventory name. Lives in the
 * `{hosts}` slot with the index so that claiming names is one script.
 * TODO(store): move to store/keys.ts with the other key names.
 */
export const hostNamesKey = (): string => 'pc:{hosts}:names';

export type HostType = 'host' | 'proxy';

/** A host certificate the CA issued to this host (kept until it expires, for revoke-by-host). */
export interface HostCertificateRecord {
  readonly serial: string;
  /** SHA-256 fingerprint of the host key it certifies. */
  readonly fingerprint: string;
  /** Milliseconds since the epoch. */
  readonly validAfter: number;
  readonly expiresAt: number;
}

export interface HostKeyRecord {
  /** `type base64`. */
  readonly key: string;
  /** SHA-256 fingerprint. */
  readonly fingerprint: string;
}

/** An enrolled host or proxy. Times are milliseconds since the epoch. */
export interface HostRecord {
  /** Inventory name: the host's canonical name, lower case. */
  readonly name: string;
  readonly type: HostType;
  /** Every name and address it answers to (principals of its certificates), `name` first. */
  readonly names: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** Its host public keys. */
  readonly keys: readonly HostKeyRecord[];
  readonly certificates: readonly HostCertificateRecord[];
  readonly enrolledAt: number;
  readonly renewedAt?: number;
  /** SHA-256 (hex) of a proxy's service credential. */
  readonly credentialId?: string;
}

/** The public view of a host (for listings and the API): no credential id. */
export type HostSummary = Omit<HostRecord, 'credentialId'>;

function json<T>(s: string | undefined, fallback: T): T {
  if (s === undefined) return fallback;
  try {
    return JSON.parse(s) as T;
  } catch {
    return fallback;
  }
}

function fromFields(f: Record<string, string>): HostRecord | undefined {
  if (f['name'] === undefined || (f['type'] !== 'host' && f['type'] !== 'proxy')) return undefined;
  return {
    name: f['name'],
    type: f['type'],
    names: json<string[]>(f['names'], [f['name']]),
    labels: json<Record<string, string>>(f['labels'], {}),
    keys: json<HostKeyRecord[]>(f['keys'], []),
    certificates: json<HostCertificateRecord[]>(f['certificates'], []),
    enrolledAt: Number(f['enrolledAt'] ?? 0),
    ...(f['renewedAt'] === undefined ? {} : { renewedAt: Number(f['renewedAt']) }),
    ...(f['credentialId'] === undefined ? {} : { credentialId: f['credentialId'] }),
  };
}

function toFields(h: HostRecord): Record<string, string> {
  return {
    name: h.name,
    type: h.type,
    names: JSON.stringify(h.names),
    labels: JSON.stringify(h.labels),
    keys: JSON.stringify(h.keys),
    certificates: JSON.stringify(h.certificates),
    enrolledAt: String(h.enrolledAt),
    ...(h.renewedAt === undefined ? {} : { renewedAt: String(h.renewedAt) }),
    ...(h.credentialId === undefined ? {} : { credentialId: h.credentialId }),
  };
}

export function hostSummary(h: HostRecord): HostSummary {
  const { credentialId, ...rest } = h;
  void credentialId;
  return rest;
}

/** A host by its inventory name, or undefined. */
export async function getHost(redis: RedisClient, name: string): Promise<HostRecord | undefined> {
  if (typeof name !== 'string' || name === '' || /[{}\s]/.test(name)) return undefined;
  return fromFields(await redis.hgetall(hostKey(name.toLowerCase())));
}

/** Every enrolled host, by name. */
export async function listHosts(redis: RedisClient): Promise<HostRecord[]> {
  const names = (await redis.smembers(hostsIndexKey())).sort();
  const hosts = await Promise.all(names.map((n) => getHost(redis, n)));
  return hosts.filter((h): h is HostRecord => h !== undefined);
}

/** Which host owns a name or address, if any. */
export async function hostOwning(redis: RedisClient, name: string): Promise<string | undefined> {
  return (await redis.hget(hostNamesKey(), name.toLowerCase())) ?? undefined;
}

/**
 * Resolves what a user typed (`web01`, `web01.prod.example.com`, `10.0.0.5`) to one enrolled
 * host. An exact name or address wins; otherwise a name without dots matches hosts whose name
 * starts with `<query>.`. Several matches are refused with the candidates listed, never guessed;
 * no match is ERR_NOT_FOUND: a host that did not enroll does not exist.
 */
export async function findHost(redis: RedisClient, query: string): Promise<HostRecord> {
  if (typeof query !== 'string' || query === '' || query.length > 253 || /[\s{}*?]/.test(query)) {
    throw new AuthError('ERR_BAD_REQUEST', `hosts: ${JSON.stringify(query)} is not a host name or address`);
  }
  const q = query.toLowerCase().replace(/\.$/, '');
  const owner = await hostOwning(redis, q);
  if (owner !== undefined) {
    const host = await getHost(redis, owner);
    if (host !== undefined) return host;
  }
  const candidates = new Set<string>();
  if (!q.includes('.') && !q.includes(':')) {
    let cursor = '0';
    do {
      const [next, flat] = await redis.hscan(hostNamesKey(), cursor, 'MATCH', `${q.replace(/[\\[\]^-]/g, '\\$&')}.*`, 'COUNT', 500);
      for (let i = 1; i < flat.length; i += 2) candidates.add(flat[i]!);
      cursor = next;
    } while (cursor !== '0');
  }
  if (candidates.size === 1) {
    const host = await getHost(redis, [...candidates][0]!);
    if (host !== undefined) return host;
  }
  if (candidates.size > 1) {
    const list = [...candidates].sort();
    throw new AuthError('ERR_CONFLICT', `hosts: ${JSON.stringify(query)} is ambiguous; did you mean ${list.join(', ')}?`, {
      candidates: list.join(','),
    });
  }
  throw new AuthError('ERR_NOT_FOUND', `hosts: no enrolled host is called ${JSON.stringify(query)}`);
}

// Claims the host's names for it, all or none: a name another host owns is returned and
// nothing changes. Names the host had before and no longer lists are released.
// KEYS: index, names. ARGV: host, count of old names, old names..., new names...
const CLAIM_NAMES = `
local host = ARGV[1]
local nold = tonumber(ARGV[2])
for i = 3 + nold, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and owner ~= host then return ARGV[i] end
end
local keep = {}
for i = 3 + nold, #ARGV do keep[ARGV[i]] = true end
for i = 3, 2 + nold do
  if not keep[ARGV[i]] and redis.call('HGET', KEYS[2], ARGV[i]) == host then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
for i = 3 + nold, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], host) end
redis.call('SADD', KEYS[1], host)
return ''`;

/** The ERR_CONFLICT for a name or key another host owns. */
export function claimConflict(claim: string, owner: string): AuthError {
  const what = claim.startsWith('key:') ? `the host key ${claim.slice(4)} (a cloned image? regenerate the host keys)` : `the name ${JSON.stringify(claim)}`;
  return new AuthError('ERR_CONFLICT', `hosts: ${what} belongs to enrolled host ${JSON.stringify(owner)}`, { name: claim, owner });
}

/**
 * The first of `names` that another host owns, if any (a check before a token is spent;
 * saveHost checks again atomically).
 */
export async function claimsConflict(redis: RedisClient, host: string, claims: readonly string[]): Promise<AuthError | undefined> {
  if (claims.length === 0) return undefined;
  const owners = await redis.hmget(hostNamesKey(), ...claims);
  const i = owners.findIndex((o) => o !== null && o !== host);
  return i === -1 ? undefined : claimConflict(claims[i]!, owners[i]!);
}

/**
 * What a host claims in the names hash: its names and addresses, and its keys as
 * `key:SHA256:…` (no DNS name or address contains ':' followed by that), so that two hosts
 * cloned from one image, sharing host keys, cannot both enroll: each could impersonate the
 * other with its certificate.
 */
export function hostClaims(host: Pick<HostRecord, 'names' | 'keys'>): string[] {
  return [...host.names, ...host.keys.map((k) => `key:${k.fingerprint}`)];
}

/**
 * Writes a host record after claiming its names. `previous` is the record it replaces (its
 * names no longer listed are released). ERR_CONFLICT names a name another host owns.
 */
export async function saveHost(redis: RedisClient, host: HostRecord, previous?: HostRecord): Promise<void> {
  const old = previous === undefined ? [] : hostClaims(previous);
  const taken = await redis.eval(CLAIM_NAMES, 2, hostsIndexKey(), hostNamesKey(), host.name, String(old.length), ...old, ...hostClaims(host));
  if (typeof taken === 'string' && taken !== '') throw claimConflict(taken, (await hostOwning(redis, taken)) ?? '?');
  await redis.multi().del(hostKey(host.name)).hset(hostKey(host.name), toFields(host)).exec();
}

/** Updates fields of an existing record without touching its names. */
export async function updateHost(redis: RedisClient, host: HostRecord): Promise<void> {
  await redis.hset(hostKey(host.name), toFields(host));
}

// Releases the names a host owns and drops it from the index. KEYS: index, names. ARGV: host, names...
const RELEASE = `
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return redis.call('SREM', KEYS[1], ARGV[1])`;

/**
 * Removes a host from the inventory and returns its record (to revoke its certificates and
 * its service credential). Undefined when there was none.
 */
export async function removeHost(redis: RedisClient, name: string): Promise<HostRecord | undefined> {
  const host = await getHost(redis, name);
  if (host === undefined) return undefined;
  await redis.eval(RELEASE, 2, hostsIndexKey(), hostNamesKey(), host.name, ...hostClaims(host));
  await redis.del(hostKey(host.name));
  return host;
}

/** Certificates still valid at `nowMs`, plus `added`: what a host record keeps. */
export function liveCertificates(current: readonly HostCertificateRecord[], added: readonly HostCertificateRecord[], nowMs: number): HostCertificateRecord[] {
  return [...current.filter((c) => c.expiresAt > nowMs), ...added];
}

/**
 * The newest certificate of a host still valid at `nowMs` (for the host certificate expiry
 * gauge, which the service fills from listHosts at start), or undefined when all have lapsed.
 */
export function currentCertificate(host: Pick<HostRecord, 'certificates'>, nowMs: number): HostCertificateRecord | undefined {
  let best: HostCertificateRecord | undefined;
  for (const c of host.certificates) if (c.expiresAt > nowMs && (best === undefined || c.validAfter > best.validAfter)) best = c;
  return best;
}
