import { randomBytes } from 'node:crypto';
import { parsePublicKeyText } from '@portcullis/cert-core';
import type { PublicKey } from '@portcullis/cert-core';
import type { AuditActor } from '../audit/event.js';
import type { LoginSession } from '../sessions/login-session.js';
import { userCertsKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { findHost } from '../hosts/inventory.js';
import { findLock, listLocks, lockedError } from '../revocation/locks.js';
import { isKeyRevoked } from '../revocation/revocations.js';
import { resolveAccess } from './access.js';
import type { AccessDeps } from './access.js';
import { decideJumpHostCertificate, decideUpstreamCertificate, decideUserCertificate, refusal } from './issue.js';
import type { CertificateDraft, Decision } from './issue.js';
import type { CaKind } from './keystore.js';
import { refuseRevokedClientCertificate } from './client-certificate.js';
import type { ClientCertificateRef } from './client-certificate.js';
import { reportIssued, reportRefused, signDraft } from './signing.js';
import type { IssuanceContext, IssuedCertificate, SigningDeps } from './signing.js';

/*
 * The imperative shell around the decisions in issue.ts: read the world (user, roles, locks,
 * inventory), decide, draw a serial, sign, record, report. Every refusal is audited and counted
 * before it is thrown, and none of them writes to Redis.
 */

export interface IssuerDeps extends SigningDeps, AccessDeps {
  /** Milliseconds since the epoch (default Date.now). */
  readonly clock?: () => number;
  /** Request ids for key ids and audit events (default 12 random base64url characters). */
  readonly newRequestId?: () => string;
}

export interface UserCertificateOptions {
  /** Seconds; default 300, capped by the roles' max_cert_ttl. */
  readonly requestedTtl?: number;
  /** The client's address (pinned as source-address when a role asks for it). */
  readonly sourceAddress?: string;
  /** A second factor was verified for this request (required when a role sets require_session_mfa). */
  readonly mfaVerified?: boolean;
  readonly requestId?: string;
}

const defaultRequestId = (): string => randomBytes(9).toString('base64url');

function subjectKey(publicKey: PublicKey | string): PublicKey {
  if (typeof publicKey !== 'string') return publicKey;
  try {
    return parsePublicKeyText(publicKey, 'publicKey').key;
  } catch (e) {
    throw refusal('ERR_BAD_REQUEST', 'bad_key', `"publicKey" is not an OpenSSH public key line: ${(e as Error).message.replace(/^cert-core: /, '')}`);
  }
}

function decided(d: Decision<CertificateDraft>): CertificateDraft {
  if (!d.ok) throw d.error;
  return d.value;
}

// Records a user's certificate for revoke-by-user; the set lives as long as its newest member,
// and members that expired are dropped on the way.
const RECORD_CERT = `
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
return 1`;

async function recordUserCertificate(redis: RedisClient, user: string, issued: IssuedCertificate, nowMs: number): Promise<void> {
  await redis.eval(RECORD_CERT, 1, userCertsKey(user), String(issued.validBefore), issued.serial.toString(), String(nowMs));
}

async function refuseIfKeyRevoked(deps: IssuerDeps, key: PublicKey): Promise<void> {
  if (await isKeyRevoked(deps.redis, deps.crypto, key)) {
    throw refusal('ERR_FORBIDDEN', 'revoked_key', 'this public key was revoked; make a new key pair');
  }
}

async function run(deps: IssuerDeps, ctx: IssuanceContext, body: () => Promise<IssuedCertificate>, kind: CaKind): Promise<IssuedCertificate> {
  let issued: IssuedCertificate;
  try {
    issued = await body();
  } catch (e) {
    throw await reportRefused(deps, e, ctx);
  }
  await reportIssued(deps, kind, issued, ctx);
  return issued;
}

/**
 * Mints a user certificate for the holder of a login session (authenticateLoginSession first).
 * Re-checks the user, roles and locks at this moment, requires a fresh second factor when a role
 * says so, refuses revoked keys, then signs with the user CA and records the serial under the
 * user for revoke-by-user.
 */
export async function issueUserCertificate(
  deps: IssuerDeps,
  session: LoginSession,
  publicKey: PublicKey | string,
  options: UserCertificateOptions = {},
): Promise<IssuedCertificate> {
  const now = (deps.clock ?? Date.now)();
  const requestId = options.requestId ?? (deps.newRequestId ?? defaultRequestId)();
  const actor: AuditActor = { kind: 'user', name: session.user, ...(options.sourceAddress === undefined ? {} : { address: options.sourceAddress }) };
  const ctx: IssuanceContext = { requestId, actor, purpose: 'user', user: session.user };
  return run(
    deps,
    ctx,
    async () => {
      if (session.expiresAt <= now) throw refusal('ERR_EXPIRED', 'session', 'the login session has expired; log in again');
      const key = subjectKey(publicKey);
      const [access] = await Promise.all([resolveAccess(deps, session.user, now), refuseIfKeyRevoked(deps, key)]);
      const draft = decided(
        decideUserCertificate({
          user: session.user,
          policy: access.policy,
          publicKey: key,
          requestId,
          now,
          mfaVerified: options.mfaVerified === true,
          loginSession: session.id,
          ...(options.requestedTtl === undefined ? {} : { requestedTtl: options.requestedTtl }),
          ...(options.sourceAddress === undefined ? {} : { sourceAddress: options.sourceAddress }),
        }),
      );
      const issued = await signDraft(deps, 'user', draft, now);
      await recordUserCertificate(deps.redis, session.user, issued, now);
      return issued;
    },
    'user',
  );
}

export interface UpstreamRequest {
  /** The enrolled proxy asking (from authenticateProxy). */
  readonly proxy: string;
  readonly user: string;
  readonly login: string;
  /** The target as the user named it; resolved in the inventory. */
  readonly host: string;
  /** The proxy's key for this one connection. */
  readonly publicKey: PublicKey | string;
  /** The user certificate the client authenticated to the proxy with. */
  readonly client: ClientCertificateRef;
  readonly requestId?: string;
}

/**
 * The certificate the proxy dials a target with, for one connection: the host must be
 * enrolled, the user's roles and locks (user, role, login, host) are re-checked now, and so is
 * the client's own certificate (revoked, or its login session revoked: refused at once, not
 * after the proxy's next KRL poll).
 */
export async function issueUpstreamCertificate(deps: IssuerDeps, req: UpstreamRequest): Promise<IssuedCertificate> {
  const now = (deps.clock ?? Date.now)();
  const requestId = req.requestId ?? (deps.newRequestId ?? defaultRequestId)();
  const ctx: IssuanceContext = { requestId, actor: { kind: 'service', name: req.proxy }, purpose: 'upstream', user: req.user, host: req.host };
  return run(
    deps,
    ctx,
    async () => {
      const key = subjectKey(req.publicKey);
      await refuseRevokedClientCertificate(deps.redis, req.user, req.client, now);
      const host = await findHost(deps.redis, req.host);
      const access = await resolveAccess(deps, req.user, now, host.name);
      const loginLock = findLock(access.locks, { logins: [req.login] }, now);
      if (loginLock !== undefined) throw lockedError(loginLock);
      await refuseIfKeyRevoked(deps, key);
      const draft = decided(
        decideUpstreamCertificate({
          user: req.user,
          policy: access.policy,
          login: req.login,
          host: { name: host.name, labels: host.labels },
          publicKey: key,
          now,
          requestId,
          proxy: req.proxy,
        }),
      );
      // The upstream CA, which targets trust; the user CA, which signs what engineers hold,
      // is trusted by the proxy alone.
      const issued = await signDraft(deps, 'upstream', draft, now);
      await recordUserCertificate(deps.redis, req.user, issued, now);
      return issued;
    },
    'upstream',
  );
}

export interface JumpHostRequest {
  readonly proxy: string;
  /** The target the proxy will stand in for. */
  readonly host: string;
  /** The proxy's host key. */
  readonly publicKey: PublicKey | string;
  /** Seconds; default 600. */
  readonly lifetimeSeconds?: number;
  readonly requestId?: string;
}

/**
 * A short host certificate naming an enrolled target, for the proxy's own host key, so that a
 * client using ProxyJump sees the target's name certified by the host CA while the proxy
 * terminates and records the connection.
 */
export async function issueJumpHostCertificate(deps: IssuerDeps, req: JumpHostRequest): Promise<IssuedCertificate> {
  const now = (deps.clock ?? Date.now)();
  const requestId = req.requestId ?? (deps.newRequestId ?? defaultRequestId)();
  const ctx: IssuanceContext = { requestId, actor: { kind: 'service', name: req.proxy }, purpose: 'jump-host', host: req.host };
  return run(
    deps,
    ctx,
    async () => {
      const key = subjectKey(req.publicKey);
      const host = await findHost(deps.redis, req.host);
      const lock = findLock(await listLocks(deps.redis, now), { host: host.name }, now);
      if (lock !== undefined) throw lockedError(lock);
      const draft = decided(
        decideJumpHostCertificate({
          host: { name: host.name, names: host.names },
          requested: req.host,
          publicKey: key,
          now,
          requestId,
          ...(req.lifetimeSeconds === undefined ? {} : { lifetimeSeconds: req.lifetimeSeconds }),
        }),
      );
      return signDraft(deps, 'host', draft, now);
    },
    'host',
  );
}
