import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { CertError, fingerprintSha256, formatPublicKey, parsePublicKeyText, utf8 } from '@portcullis/cert-core';
import type { PublicKey } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import type { AuditActor } from '../audit/event.js';
import type { AuthMetrics } from '../metrics.js';
import { hostKey } from '../store/keys.js';
import type { CaKeystore } from '../ca/keystore.js';
import { decideHostCertificate, normalizeHostPrincipal, refusal } from '../ca/issue.js';
import type { CertificateDraft } from '../ca/issue.js';
import { reportIssued, reportRefused, signDraft } from '../ca/signing.js';
import type { IssuanceContext, IssuedCertificate, SigningDeps } from '../ca/signing.js';
import { findLock, listLocks, lockedError } from '../revocation/locks.js';
import { claimsConflict, getHost, hostClaims, hostSummary, liveCertificates, saveHost, updateHost } from './inventory.js';
import type { HostCertificateRecord, HostKeyRecord, HostRecord, HostSummary, HostType } from './inventory.js';
import {
  authenticateServiceCredential,
  createServiceCredential,
  deleteServiceCredential,
  peekJoinToken,
  spendJoinToken,
} from './join-tokens.js';
import type { ServicePrincipal } from './join-tokens.js';
import { parseSshSig, verifySshSig } from './sshsig.js';

export interface EnrollmentDeps extends SigningDeps {
  readonly keystore: Pick<CaKeystore, 'trustedUserCaKeys' | 'knownHostsLines'>;
  /** Where hosts fetch the KRL (served by the HTTP API). */
  readonly krlUrl: string;
  readonly metrics?: Pick<AuthMetrics, 'certificateIssued' | 'issuanceFailed' | 'setHostCertificate'>;
  /** Host certificate lifetime (default 30 days). */
  readonly lifetimeDays?: number;
  /** Milliseconds since the epoch (default Date.now). */
  readonly clock?: () => number;
  readonly randomBytes?: (n: number) => Uint8Array;
  readonly newRequestId?: () => string;
}

export interface EnrollmentRequest {
  readonly token: string;
  /** The host's canonical name; becomes its inventory name and first principal. */
  readonly hostname: string;
  /** More names and addresses clients use to reach it. */
  readonly names?: readonly string[];
  /** Its host public keys, as `.pub` lines (`ssh-ed25519 AAAA… [comment]`). */
  readonly publicKeys: readonly string[];
  /** host (default) or proxy; must match the token. */
  readonly type?: HostType;
  /** The enrolling client's address, for the audit event. */
  readonly sourceAddress?: string;
}

export interface HostCertificateIssued {
  /** The host key it certifies, `type base64`. */
  readonly publicKey: string;
  /** The `-cert.pub` line to put next to the key (sshd_config: HostCertificate). */
  readonly certificate: string;
  readonly serial: string;
  readonly fingerprint: string;
  readonly validAfter: number;
  readonly validBefore: number;
}

export interface EnrollmentResult {
  readonly host: HostSummary;
  readonly certificates: readonly HostCertificateIssued[];
  /** The TrustedUserCAKeys file: one authorized_keys line per trusted upstream CA key. */
  readonly trustedUserCaKeys: string;
  /** `@cert-authority` lines for the host CA, for the host's own ssh client. */
  readonly knownHosts: string;
  readonly krlUrl: string;
  /** Milliseconds: renew after this (half the lifetime), and before this (two thirds). */
  readonly renewAfter: number;
  readonly renewBefore: number;
  /** Proxies only: the credential to call auth with; shown once, stored hashed. */
  readonly serviceCredential?: string;
}

/** The namespace a renewal signature must use (`ssh-keygen -Y sign -n ...`). */
export const RENEWAL_NAMESPACE = 'portcullis-host-renewal';
const CHALLENGE_TTL_MS = 5 * 60 * 1000;
const MAX_HOST_KEYS = 8;

function badRequest(message: string): AuthError {
  return refusal('ERR_BAD_REQUEST', 'bad_request', `hosts: ${message}`);
}

function parseHostKeys(lines: unknown, crypto: SigningDeps['crypto']): { key: PublicKey; record: HostKeyRecord }[] {
  if (!Array.isArray(lines) || lines.length === 0 || lines.length > MAX_HOST_KEYS) {
    throw badRequest(`"publicKeys" expected 1-${MAX_HOST_KEYS} public key lines`);
  }
  const out: { key: PublicKey; record: HostKeyRecord }[] = [];
  for (const [i, line] of lines.entries()) {
    if (typeof line !== 'string') throw badRequest(`"publicKeys[${i}]" expected a string`);
    let key: PublicKey;
    try {
      key = parsePublicKeyText(line, `publicKeys[${i}]`).key;
    } catch (e) {
      throw refusal('ERR_BAD_REQUEST', 'bad_key', `hosts: ${(e as Error).message.replace(/^cert-core: /, '')}`);
    }
    const fingerprint = fingerprintSha256(crypto, key);
    if (!out.some((k) => k.record.fingerprint === fingerprint)) out.push({ key, record: { key: formatPublicKey(key), fingerprint } });
  }
  return out;
}

function hostNames(hostname: unknown, names: unknown): { name: string; names: string[] } {
  const name = typeof hostname === 'string' ? normalizeHostPrincipal(hostname) : undefined;
  if (name === undefined) throw badRequest(`"hostname" ${JSON.stringify(hostname)} is not a host name or address`);
  if (names !== undefined && (!Array.isArray(names) || names.length > 63)) throw badRequest('"names" expected at most 63 names');
  const all = [name];
  for (const n of (names ?? []) as unknown[]) {
    const p = typeof n === 'string' ? normalizeHostPrincipal(n) : undefined;
    if (p === undefined) throw badRequest(`"names" entry ${JSON.stringify(n)} is not a host name or address (no wildcards)`);
    if (!all.includes(p)) all.push(p);
  }
  return { name, names: all };
}

type HostDraft = { readonly draft: CertificateDraft; readonly record: HostKeyRecord };

function draftHostKeys(deps: EnrollmentDeps, name: string, names: readonly string[], keys: readonly { key: PublicKey; record: HostKeyRecord }[], now: number, requestId: string): HostDraft[] {
  return keys.map((k) => {
    const d = decideHostCertificate({ hostname: name, names, publicKey: k.key, now, requestId, ...(deps.lifetimeDays === undefined ? {} : { lifetimeDays: deps.lifetimeDays }) });
    if (!d.ok) throw d.error;
    return { draft: d.value, record: k.record };
  });
}

async function signHostDrafts(deps: EnrollmentDeps, drafts: readonly HostDraft[], now: number): Promise<{ issued: IssuedCertificate; record: HostKeyRecord }[]> {
  const out: { issued: IssuedCertificate; record: HostKeyRecord }[] = [];
  for (const d of drafts) out.push({ issued: await signDraft(deps, 'host', d.draft, now), record: d.record });
  return out;
}

function certificateRecords(signed: readonly { issued: IssuedCertificate; record: HostKeyRecord }[]): HostCertificateRecord[] {
  return signed.map((s) => ({ serial: s.issued.serial.toString(), fingerprint: s.record.fingerprint, validAfter: s.issued.validAfter, expiresAt: s.issued.validBefore }));
}

function issuedView(signed: readonly { issued: IssuedCertificate; record: HostKeyRecord }[]): HostCertificateIssued[] {
  return signed.map(({ issued, record }) => ({
    publicKey: record.key,
    certificate: issued.text,
    serial: issued.serial.toString(),
    fingerprint: record.fingerprint,
    validAfter: issued.validAfter,
    validBefore: issued.validBefore,
  }));
}

async function report(deps: EnrollmentDeps, signed: readonly { issued: IssuedCertificate }[], ctx: IssuanceContext): Promise<void> {
  for (const s of signed) await reportIssued(deps, 'host', s.issued, ctx);
  const first = signed[0]?.issued;
  if (first !== undefined && ctx.host !== undefined) {
    deps.metrics?.setHostCertificate(ctx.host, { validAfter: first.validAfter / 1000, validBefore: first.validBefore / 1000 });
  }
}

function renewalWindow(signed: readonly { issued: IssuedCertificate }[]): { renewAfter: number; renewBefore: number } {
  const c = signed[0]!.issued;
  const life = c.validBefore - c.validAfter;
  return { renewAfter: c.validAfter + Math.floor(life / 2), renewBefore: c.validAfter + Math.floor((life * 2) / 3) };
}

/**
 * Enrolls a host (or proxy) with a join token. Everything that can be refused is checked
 * before the token is spent: the request, the token (known, unused, unexpired, right type, the
 * hostname it pins), locks, and that no other host owns one of the names or keys. Then the token
 * is spent atomically (a second use fails and changes nothing), the keys are certified and the
 * host is written to the inventory with the token's labels.
 */
export async function enrollHost(deps: EnrollmentDeps, req: EnrollmentRequest): Promise<EnrollmentResult> {
  const now = (deps.clock ?? Date.now)();
  const requestId = (deps.newRequestId ?? (() => Buffer.from((deps.randomBytes ?? nodeRandomBytes)(9)).toString('base64url')))();
  const actor: AuditActor = { kind: 'host', name: typeof req?.hostname === 'string' ? req.hostname.slice(0, 253) : '?', ...(req?.sourceAddress === undefined ? {} : { address: req.sourceAddress }) };
  const ctx: IssuanceContext = { requestId, actor, purpose: 'host', host: actor.name };
  const type = req?.type ?? 'host';
  let result: EnrollmentResult;
  try {
    if (type !== 'host' && type !== 'proxy') throw badRequest(`"type" expected host or proxy, got ${JSON.stringify(type)}`);
    const { name, names } = hostNames(req.hostname, req.names);
    const keys = parseHostKeys(req.publicKeys, deps.crypto);
    const token = await peekJoinToken(deps.redis, req.token, type, now);
    const previous = await getHost(deps.redis, name);
    if (token.hostname !== undefined && token.hostname !== name) {
      throw refusal('ERR_FORBIDDEN', 'bad_request', `hosts: this join token enrolls ${JSON.stringify(token.hostname)}, not ${JSON.stringify(name)}`);
    }
    if (previous !== undefined && token.hostname !== name) {
      throw new AuthError('ERR_CONFLICT', `hosts: ${JSON.stringify(name)} is already enrolled; to replace it, use a join token made for that hostname`, { reason: 'bad_request' });
    }
    const lock = findLock(await listLocks(deps.redis, now), { host: name }, now);
    if (lock !== undefined) throw lockedError(lock);
    const claims = hostClaims({ names, keys: keys.map((k) => k.record) });
    const conflict = await claimsConflict(deps.redis, name, claims);
    if (conflict !== undefined) throw conflict;
    const drafts = draftHostKeys(deps, name, names, keys, now, requestId);

    await spendJoinToken(deps.redis, token.id, name, now);
    await deps.audit?.emit('token.used', actor, { requestId, tokenId: token.id, type, host: name });
    const signed = await signHostDrafts(deps, drafts, now);
    let serviceCredential: string | undefined;
    let credentialId: string | undefined;
    if (type === 'proxy') {
      const c = await createServiceCredential(deps.redis, name, now, deps.randomBytes);
      serviceCredential = c.credential;
      credentialId = c.id;
    }
    const record: HostRecord = {
      name,
      type,
      names,
      labels: token.labels,
      keys: keys.map((k) => k.record),
      certificates: liveCertificates(previous?.certificates ?? [], certificateRecords(signed), now),
      enrolledAt: now,
      ...(credentialId === undefined ? {} : { credentialId }),
    };
    await saveHost(deps.redis, record, previous);
    if (previous?.credentialId !== undefined && previous.credentialId !== credentialId) await deleteServiceCredential(deps.redis, previous.credentialId);
    result = {
      host: hostSummary(record),
      certificates: issuedView(signed),
      trustedUserCaKeys: deps.keystore.trustedUserCaKeys(),
      knownHosts: deps.keystore.knownHostsLines(),
      krlUrl: deps.krlUrl,
      ...renewalWindow(signed),
      ...(serviceCredential === undefined ? {} : { serviceCredential }),
    };
    await report(deps, signed, ctx);
  } catch (e) {
    throw await reportRefused(deps, e, ctx, 'host.enroll_failed');
  }
  await deps.audit?.emit('host.enrolled', actor, {
    requestId,
    host: result.host.name,
    type,
    names: result.host.names,
    labels: Object.entries(result.host.labels).map(([k, v]) => `${k}=${v}`),
    serials: result.certificates.map((c) => c.serial),
  });
  return result;
}

export interface RenewalChallenge {
  readonly hostname: string;
  /** The exact text to sign (`ssh-keygen -Y sign -n portcullis-host-renewal -f KEY FILE`). */
  readonly challenge: string;
  readonly namespace: string;
  readonly expiresAt: number;
}

/** A fresh single-use challenge for an enrolled host's renewal, valid for five minutes. */
export async function createRenewalChallenge(deps: Pick<EnrollmentDeps, 'redis' | 'clock' | 'randomBytes'>, hostname: string): Promise<RenewalChallenge> {
  const now = (deps.clock ?? Date.now)();
  const host = await getHost(deps.redis, hostname);
  if (host === undefined) throw new AuthError('ERR_NOT_FOUND', `hosts: no enrolled host ${JSON.stringify(hostname)}`);
  const nonce = Buffer.from((deps.randomBytes ?? nodeRandomBytes)(32)).toString('base64url');
  const expiresAt = now + CHALLENGE_TTL_MS;
  const challenge = `portcullis host renewal\nhost: ${host.name}\nnonce: ${nonce}\nexpires: ${new Date(expiresAt).toISOString()}\n`;
  await deps.redis.hset(hostKey(host.name), { renewalChallenge: challenge, renewalExpiresAt: String(expiresAt) });
  return { hostname: host.name, challenge, namespace: RENEWAL_NAMESPACE, expiresAt };
}

// Spends the stored challenge if it is the one given: a signature over it renews once.
const SPEND_CHALLENGE = `
if redis.call('HGET', KEYS[1], 'renewalChallenge') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'renewalChallenge', 'renewalExpiresAt')
return 1`;

export interface RenewalRequest {
  readonly hostname: string;
  /** The armored output of `ssh-keygen -Y sign` over the challenge. */
  readonly signature: string;
  readonly sourceAddress?: string;
}

/**
 * Renews every host certificate of an enrolled host without a token. The proof is a signature
 * over the current challenge by one of the host's enrolled keys, whose certificate must still be
 * valid: a host that let it lapse enrolls again with a join token.
 */
export async function renewHost(deps: EnrollmentDeps, req: RenewalRequest): Promise<EnrollmentResult> {
  const now = (deps.clock ?? Date.now)();
  const requestId = (deps.newRequestId ?? (() => Buffer.from((deps.randomBytes ?? nodeRandomBytes)(9)).toString('base64url')))();
  const actor: AuditActor = { kind: 'host', name: String(req?.hostname).slice(0, 253), ...(req?.sourceAddress === undefined ? {} : { address: req.sourceAddress }) };
  const ctx: IssuanceContext = { requestId, actor, purpose: 'host-renewal', host: actor.name };
  let result: EnrollmentResult;
  try {
    const host = await getHost(deps.redis, req.hostname);
    if (host === undefined) throw new AuthError('ERR_NOT_FOUND', `hosts: no enrolled host ${JSON.stringify(req.hostname)}`, { reason: 'unknown_host' });
    const stored = await deps.redis.hmget(hostKey(host.name), 'renewalChallenge', 'renewalExpiresAt');
    const [challenge, expires] = stored;
    if (challenge === null || challenge === undefined) throw new AuthError('ERR_UNAUTHENTICATED', 'hosts: no renewal challenge pending; ask for one first');
    if (Number(expires) <= now) throw new AuthError('ERR_EXPIRED', 'hosts: the renewal challenge expired; ask for a new one');
    let sig;
    try {
      sig = parseSshSig(req.signature);
    } catch (e) {
      if (e instanceof CertError) throw badRequest(`"signature": ${e.message}`);
      throw e;
    }
    const fingerprint = fingerprintSha256(deps.crypto, sig.publicKey);
    if (!host.keys.some((k) => k.fingerprint === fingerprint)) {
      throw new AuthError('ERR_UNAUTHENTICATED', `hosts: ${fingerprint} is not a host key of ${host.name}`);
    }
    if (!verifySshSig(deps.crypto, sig, RENEWAL_NAMESPACE, utf8(challenge))) {
      throw new AuthError('ERR_UNAUTHENTICATED', `hosts: the signature does not verify over the challenge in namespace ${RENEWAL_NAMESPACE}`);
    }
    if (!host.certificates.some((c) => c.fingerprint === fingerprint && c.expiresAt > now)) {
      throw new AuthError('ERR_EXPIRED', `hosts: the certificate of ${fingerprint} has expired; enroll ${host.name} again with a join token`);
    }
    const lock = findLock(await listLocks(deps.redis, now), { host: host.name }, now);
    if (lock !== undefined) throw lockedError(lock);
    const keys = host.keys.map((k) => ({ key: parsePublicKeyText(k.key, 'host key').key, record: k }));
    const drafts = draftHostKeys(deps, host.name, host.names, keys, now, requestId);
    if ((await deps.redis.eval(SPEND_CHALLENGE, 1, hostKey(host.name), challenge)) !== 1) {
      throw new AuthError('ERR_CONFLICT', 'hosts: the renewal challenge was already used');
    }
    const signed = await signHostDrafts(deps, drafts, now);
    const record: HostRecord = { ...host, certificates: liveCertificates(host.certificates, certificateRecords(signed), now), renewedAt: now };
    await updateHost(deps.redis, record);
    result = {
      host: hostSummary(record),
      certificates: issuedView(signed),
      trustedUserCaKeys: deps.keystore.trustedUserCaKeys(),
      knownHosts: deps.keystore.knownHostsLines(),
      krlUrl: deps.krlUrl,
      ...renewalWindow(signed),
    };
    await report(deps, signed, ctx);
  } catch (e) {
    throw await reportRefused(deps, e, ctx);
  }
  await deps.audit?.emit('host.renewed', actor, { requestId, host: result.host.name, serials: result.certificates.map((c) => c.serial) });
  return result;
}

/**
 * The proxy a service credential belongs to, if it is still enrolled as a proxy with that very
 * credential (re-enrollment or removal retires the old one).
 */
export async function authenticateProxy(deps: Pick<EnrollmentDeps, 'redis'>, credential: string): Promise<ServicePrincipal> {
  const principal = await authenticateServiceCredential(deps.redis, credential);
  const host = await getHost(deps.redis, principal.host);
  if (host === undefined || host.type !== 'proxy' || host.credentialId !== principal.credentialId) {
    throw new AuthError('ERR_UNAUTHENTICATED', 'hosts: this service credential belongs to no enrolled proxy');
  }
  return principal;
}
