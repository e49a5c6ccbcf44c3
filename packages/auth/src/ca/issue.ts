import { isIP } from 'node:net';
import { CertError, NO_PERMISSIONS, optionsFromPermissions, publicPart, rsaBits } from '@portcullis/cert-core';
import type { CertificateTemplate, Permissions, PublicKey } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import type { AuthErrorCode } from '../errors.js';
import { canLogin, isValidLogin } from '../roles/policy.js';
import type { AccessPolicy } from '../roles/policy.js';
import { keyIdSessionField } from './client-certificate.js';

/*
 * Pure decisions: what goes into a certificate, or why none is issued. No clock, no Redis, no
 * randomness: `now` (milliseconds) comes in, the serial is added by the caller after the
 * decision (so a refusal never consumes one), and the nonce is drawn when signing.
 *
 * Key ids are `<subject> <key>=<value>...`, space separated, values without spaces:
 *   user certificate      `alice req=01J0ABC sess=0123456789abcdef`
 *   upstream (proxy)      `alice req=01J0ABC via=bastion-1`
 *   host certificate      `host=web01.example.com req=01J0ABC`
 * The subject comes first because sshd logs `ID <key id>`: the target's auth.log then starts
 * with who it was. The request id ties the line to the audit event of the issuance; `sess=` names
 * the login session a user certificate was minted under (the first 16 hex digits of its id, as
 * audit events name it), so the proxy's access check can refuse it once that session is revoked.
 */

/** A decision: the certificate to sign (without its serial), or why not. */
export type Decision<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: AuthError };

/** A certificate template before a serial is drawn for it. */
export type CertificateDraft = Omit<CertificateTemplate, 'serial'>;

/** Why issuance was refused: bounded, so it can label `ssh_ca_issuance_failures_total`. */
export type RefusalReason =
  | 'bad_request'
  | 'bad_key'
  | 'no_roles'
  | 'no_logins'
  | 'login_not_allowed'
  | 'mfa_required'
  | 'source_address_required'
  | 'unknown_user'
  | 'user_disabled'
  | 'session'
  | 'locked'
  | 'revoked_key'
  | 'revoked_certificate'
  | 'unknown_host'
  | 'unavailable';

export const DEFAULT_USER_CERT_TTL = 300;
/** Certificates are back-dated this much so a client whose clock runs late can use them at once. */
export const CLOCK_SKEW_SECONDS = 60;
/** The upstream certificate the proxy dials a target with: used within this many seconds. */
export const UPSTREAM_CERT_TTL = 60;
/**
 * How far a target's clock may be off, either way, and still accept an upstream certificate:
 * it is valid from this long before issuance to this long after its TTL. Targets are many and
 * their clocks less looked after than the bastion's; a wider window costs little, because the
 * certificate's key is made for one connection and never leaves the proxy's memory.
 */
export const UPSTREAM_CLOCK_SKEW_SECONDS = 300;
export const DEFAULT_HOST_CERT_DAYS = 30;
export const MAX_HOST_CERT_DAYS = 365;
/** The proxy's own host certificate for one target name (ProxyJump termination). */
export const DEFAULT_JUMP_HOST_CERT_TTL = 600;
export const MAX_JUMP_HOST_CERT_TTL = 3600;
export const MIN_RSA_BITS = 2048;

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
// Names in key ids: no blanks (they separate fields), no control characters.
const SUBJECT_RE = /^[^\s\u0000-\u001f\u007f]{1,256}$/;
const DNS_NAME_RE = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

export function refusal(code: AuthErrorCode, reason: RefusalReason, message: string, details: Record<string, string | number | boolean> = {}): AuthError {
  return new AuthError(code, `ca: ${message}`, { reason, ...details });
}

function refuse<T>(code: AuthErrorCode, reason: RefusalReason, message: string, details?: Record<string, string | number | boolean>): Decision<T> {
  return { ok: false, error: refusal(code, reason, message, details) };
}

function ok<T>(value: T): Decision<T> {
  return { ok: true, value };
}

function seconds(nowMs: number): bigint {
  if (!Number.isFinite(nowMs) || nowMs < 0) throw new TypeError(`ca: "now" expected milliseconds since the epoch, got ${nowMs}`);
  return BigInt(Math.floor(nowMs / 1000));
}

/** The reason recorded on an AuthError made by these decisions ('bad_request' otherwise). */
export function refusalReason(e: AuthError): RefusalReason {
  const r = e.details?.['reason'];
  return typeof r === 'string' ? (r as RefusalReason) : 'bad_request';
}

/**
 * Whether `key` may be certified: Ed25519, ECDSA (P-256/384/521), RSA of at least 2048 bits,
 * and the two security-key types for users. Returns the refusal message, or undefined.
 */
export function subjectKeyProblem(key: PublicKey, kind: 'user' | 'host'): string | undefined {
  switch (key.type) {
    case 'ssh-ed25519':
    case 'ecdsa-sha2-nistp256':
    case 'ecdsa-sha2-nistp384':
    case 'ecdsa-sha2-nistp521':
      return undefined;
    case 'ssh-rsa': {
      const bits = rsaBits(key.n);
      return bits < MIN_RSA_BITS ? `a ${bits}-bit RSA key is too small; use at least ${MIN_RSA_BITS} bits (or Ed25519)` : undefined;
    }
    case 'sk-ssh-ed25519@openssh.com':
    case 'sk-ecdsa-sha2-nistp256@openssh.com':
      return kind === 'user' ? undefined : `a host key cannot be a security key (${key.type})`;
    default:
      return `key type ${JSON.stringify((key as { type?: unknown }).type)} is not accepted`;
  }
}

/**
 * `address` as a source-address entry: a single IPv4 /32 or IPv6 /128. An IPv4-mapped IPv6
 * address (what a dual-stack socket reports) becomes the IPv4 address sshd will see.
 */
export function pinnedSourceAddress(address: string): string | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const a = mapped ? mapped[1]! : address;
  const family = isIP(a);
  if (family === 4) return `${a}/32`;
  if (family === 6 && !a.includes('%')) return `${a.toLowerCase()}/128`;
  return undefined;
}

function checkCommon(requestId: unknown, subject: unknown, what: string): string | undefined {
  if (typeof requestId !== 'string' || !REQUEST_ID_RE.test(requestId)) return `"requestId" expected 1-64 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(requestId)}`;
  if (typeof subject !== 'string' || !SUBJECT_RE.test(subject)) return `${what} expected 1-256 characters without blanks or control characters, got ${JSON.stringify(subject)}`;
  return undefined;
}

function extensionsFor(policy: AccessPolicy, sourceAddress: string | undefined): Pick<CertificateTemplate, 'criticalOptions' | 'extensions'> {
  const permissions: Permissions = {
    ...NO_PERMISSIONS,
    // A shell needs a terminal; every certificate gets one, the rest only when a role allows.
    pty: true,
    portForwarding: policy.portForwarding,
    agentForwarding: policy.agentForwarding,
    x11Forwarding: policy.x11Forwarding,
    ...(sourceAddress === undefined ? {} : { sourceAddress }),
  };
  return optionsFromPermissions(permissions);
}

export interface UserCertificateRequest {
  readonly user: string;
  /** The user's roles combined, at this moment. */
  readonly policy: AccessPolicy;
  readonly publicKey: PublicKey;
  /** Seconds; default 300, capped by policy.maxCertTtl. */
  readonly requestedTtl?: number;
  readonly requestId: string;
  /** Milliseconds since the epoch. */
  readonly now: number;
  /** The client's address; required when the policy pins certificates to it. */
  readonly sourceAddress?: string;
  /** A second factor was verified for this very request (per-session MFA). */
  readonly mfaVerified: boolean;
  /** The id of the login session minting it; named in the key id (`sess=`). */
  readonly loginSession?: string;
}

/**
 * The user certificate for a minting request: principals exactly the policy's logins, valid
 * from a minute ago for the requested lifetime (default 5 min, at most the policy's maximum),
 * permit-pty plus the forwarding the roles allow, and source-address when the roles pin it.
 */
export function decideUserCertificate(r: UserCertificateRequest): Decision<CertificateDraft> {
  const bad = checkCommon(r.requestId, r.user, '"user"');
  if (bad !== undefined) return refuse('ERR_BAD_REQUEST', 'bad_request', bad);
  if (r.loginSession !== undefined && (typeof r.loginSession !== 'string' || !/^[0-9a-f]{16,64}$/.test(r.loginSession))) {
    return refuse('ERR_BAD_REQUEST', 'bad_request', `"loginSession" expected a session id (hex), got ${JSON.stringify(r.loginSession)}`);
  }
  const keyProblem = subjectKeyProblem(r.publicKey, 'user');
  if (keyProblem !== undefined) return refuse('ERR_BAD_REQUEST', 'bad_key', keyProblem, { keyType: String(r.publicKey.type) });
  if (r.requestedTtl !== undefined && (!Number.isInteger(r.requestedTtl) || r.requestedTtl < 1)) {
    return refuse('ERR_BAD_REQUEST', 'bad_request', `"requestedTtl" expected a positive number of seconds, got ${r.requestedTtl}`);
  }
  const { policy } = r;
  if (policy.roles.length === 0 || policy.maxCertTtl <= 0) {
    return refuse('ERR_FORBIDDEN', 'no_roles', `user ${JSON.stringify(r.user)} has no roles that grant access`);
  }
  // A certificate without principals is valid for every login: never issue one.
  const logins = policy.logins.filter(isValidLogin);
  if (logins.length === 0) {
    return refuse('ERR_FORBIDDEN', 'no_logins', `no role of ${JSON.stringify(r.user)} allows any login (roles: ${policy.roles.join(', ')})`);
  }
  if (policy.requireSessionMfa && !r.mfaVerified) {
    return refuse('ERR_MFA_REQUIRED', 'mfa_required', `a role of ${JSON.stringify(r.user)} requires a second factor for every certificate`);
  }
  let source: string | undefined;
  if (policy.pinSourceIp) {
    source = r.sourceAddress === undefined ? undefined : pinnedSourceAddress(r.sourceAddress);
    if (source === undefined) {
      return refuse('ERR_FORBIDDEN', 'source_address_required', `a role pins certificates to the client address, and ${JSON.stringify(r.sourceAddress ?? null)} is not an IP address`);
    }
  }
  const ttl = Math.min(r.requestedTtl ?? DEFAULT_USER_CERT_TTL, policy.maxCertTtl);
  const now = seconds(r.now);
  try {
    return ok({
      key: publicPart(r.publicKey),
      kind: 'user',
      keyId: `${r.user} req=${r.requestId}${r.loginSession === undefined ? '' : ` ${keyIdSessionField(r.loginSession)}`}`,
      principals: logins,
      validAfter: now - BigInt(CLOCK_SKEW_SECONDS),
      validBefore: now + BigInt(ttl),
      ...extensionsFor(policy, source),
    });
  } catch (e) {
    if (e instanceof CertError) return refuse('ERR_BAD_REQUEST', 'bad_request', e.message.replace(/^cert-core: /, ''));
    throw e;
  }
}

/** A target host as the inventory knows it. */
export interface TargetHost {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface UpstreamCertificateRequest {
  readonly user: string;
  readonly policy: AccessPolicy;
  /** The one OS login the proxy will use on the target. */
  readonly login: string;
  readonly host: TargetHost;
  /** The proxy's key for this one connection. */
  readonly publicKey: PublicKey;
  readonly now: number;
  readonly requestId: string;
  /** The proxy asking (its enrolled name), recorded in the key id. */
  readonly proxy?: string;
}

/**
 * The certificate the proxy dials one target with: principal exactly [login] after canLogin
 * says this user may use that login on that host, valid for its TTL plus the clock skew a
 * target may have either way. No source-address: the proxy, not the user, connects.
 */
export function decideUpstreamCertificate(r: UpstreamCertificateRequest): Decision<CertificateDraft> {
  const bad = checkCommon(r.requestId, r.user, '"user"') ?? (r.proxy === undefined ? undefined : checkCommon(r.requestId, r.proxy, '"proxy"'));
  if (bad !== undefined) return refuse('ERR_BAD_REQUEST', 'bad_request', bad);
  if (typeof r.login !== 'string' || !isValidLogin(r.login)) {
    return refuse('ERR_BAD_REQUEST', 'bad_request', `"login" expected a POSIX login name, got ${JSON.stringify(r.login)}`);
  }
  if (typeof r.host?.name !== 'string' || typeof r.host.labels !== 'object' || r.host.labels === null) {
    return refuse('ERR_BAD_REQUEST', 'bad_request', '"host" expected { name, labels }');
  }
  const keyProblem = subjectKeyProblem(r.publicKey, 'user');
  if (keyProblem !== undefined) return refuse('ERR_BAD_REQUEST', 'bad_key', keyProblem);
  if (r.policy.roles.length === 0 || r.policy.maxCertTtl <= 0) {
    return refuse('ERR_FORBIDDEN', 'no_roles', `user ${JSON.stringify(r.user)} has no roles that grant access`);
  }
  if (!canLogin(r.policy, r.login, r.host.labels)) {
    return refuse('ERR_FORBIDDEN', 'login_not_allowed', `${JSON.stringify(r.user)} may not log in as ${JSON.stringify(r.login)} on ${JSON.stringify(r.host.name)}`, {
      login: r.login,
      host: r.host.name,
    });
  }
  const now = seconds(r.now);
  const ttl = Math.min(UPSTREAM_CERT_TTL, r.policy.maxCertTtl);
  return ok({
    key: publicPart(r.publicKey),
    kind: 'user',
    keyId: `${r.user} req=${r.requestId}${r.proxy === undefined ? '' : ` via=${r.proxy}`}`,
    principals: [r.login],
    validAfter: now - BigInt(UPSTREAM_CLOCK_SKEW_SECONDS),
    validBefore: now + BigInt(ttl + UPSTREAM_CLOCK_SKEW_SECONDS),
    ...extensionsFor(r.policy, undefined),
  });
}

/**
 * A host certificate principal: a DNS name (lower-cased, as ssh lower-cases the name it
 * connects to) or an IP address. Wildcards are refused: a host certificate for `*` would let
 * one enrolled host impersonate every other.
 */
export function normalizeHostPrincipal(name: string): string | undefined {
  if (typeof name !== 'string') return undefined;
  if (isIP(name) === 4) return name;
  if (isIP(name) === 6) return name.includes('%') ? undefined : name.toLowerCase();
  const lower = name.toLowerCase().replace(/\.$/, '');
  return DNS_NAME_RE.test(lower) && !/^\d+(\.\d+)*$/.test(lower) ? lower : undefined;
}

function hostPrincipals(hostname: string, names: readonly string[]): { principals: string[] } | { error: string } {
  const out: string[] = [];
  for (const n of [hostname, ...names]) {
    const p = normalizeHostPrincipal(n);
    if (p === undefined) return { error: `${JSON.stringify(n)} is not a host name or IP address (no wildcards)` };
    if (!out.includes(p)) out.push(p);
  }
  if (out.length > 64) return { error: `${out.length} names; a host may have at most 64` };
  return { principals: out };
}

export interface HostCertificateRequest {
  /** The host's canonical name (its inventory name). */
  readonly hostname: string;
  /** More names and addresses it answers to. */
  readonly names?: readonly string[];
  readonly publicKey: PublicKey;
  readonly now: number;
  /** Default 30. */
  readonly lifetimeDays?: number;
  readonly requestId: string;
}

/** A host certificate: principals the host's names and addresses, valid for days. */
export function decideHostCertificate(r: HostCertificateRequest): Decision<CertificateDraft> {
  const days = r.lifetimeDays ?? DEFAULT_HOST_CERT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_HOST_CERT_DAYS) {
    return refuse('ERR_BAD_REQUEST', 'bad_request', `"lifetimeDays" expected an integer in 1..${MAX_HOST_CERT_DAYS}, got ${days}`);
  }
  return hostDraft(r.hostname, r.names ?? [], r.publicKey, r.now, days * 86400, r.requestId);
}

export interface JumpHostCertificateRequest {
  /** The target the proxy stands in for. */
  readonly host: { readonly name: string; readonly names?: readonly string[] };
  /**
   * The name as the client typed it (`web01` for `web01.example.com`), which its ssh checks the
   * certificate against; resolved to `host` by the caller. Added to the principals.
   */
  readonly requested?: string;
  /** The proxy's host key. */
  readonly publicKey: PublicKey;
  readonly now: number;
  /** Seconds; default 600, at most 3600. */
  readonly lifetimeSeconds?: number;
  readonly requestId: string;
}

/**
 * A short host certificate naming a target, for the proxy's key: with ProxyJump the client's
 * inner SSH connection ends at the proxy, which must then prove to be that target.
 */
export function decideJumpHostCertificate(r: JumpHostCertificateRequest): Decision<CertificateDraft> {
  const ttl = r.lifetimeSeconds ?? DEFAULT_JUMP_HOST_CERT_TTL;
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_JUMP_HOST_CERT_TTL) {
    return refuse('ERR_BAD_REQUEST', 'bad_request', `"lifetimeSeconds" expected an integer in 60..${MAX_JUMP_HOST_CERT_TTL}, got ${ttl}`);
  }
  const names = [...(r.requested === undefined ? [] : [r.requested]), ...(r.host.names ?? [])];
  return hostDraft(r.host.name, names, r.publicKey, r.now, ttl, r.requestId);
}

function hostDraft(hostname: string, names: readonly string[], publicKey: PublicKey, nowMs: number, ttl: number, requestId: string): Decision<CertificateDraft> {
  const bad = checkCommon(requestId, hostname, '"hostname"');
  if (bad !== undefined) return refuse('ERR_BAD_REQUEST', 'bad_request', bad);
  if (!Array.isArray(names)) return refuse('ERR_BAD_REQUEST', 'bad_request', '"names" expected an array of strings');
  const p = hostPrincipals(hostname, names);
  if ('error' in p) return refuse('ERR_BAD_REQUEST', 'bad_request', p.error);
  const keyProblem = subjectKeyProblem(publicKey, 'host');
  if (keyProblem !== undefined) return refuse('ERR_BAD_REQUEST', 'bad_key', keyProblem);
  const now = seconds(nowMs);
  return ok({
    key: publicPart(publicKey),
    kind: 'host',
    keyId: `host=${p.principals[0]!} req=${requestId}`,
    principals: p.principals,
    validAfter: now - BigInt(CLOCK_SKEW_SECONDS),
    validBefore: now + BigInt(ttl),
  });
}

/** The template to sign: the draft with the serial drawn for it. */
export function withSerial(draft: CertificateDraft, serial: bigint): CertificateTemplate {
  return { ...draft, serial };
}
