import { CertError, fingerprintSha256, formatCertificate, signCertificate } from '@portcullis/cert-core';
import type { Certificate, CryptoBackend, Signer } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import type { AuditLog } from '../audit/log.js';
import type { AuditActor } from '../audit/event.js';
import type { AuthMetrics } from '../metrics.js';
import { issuanceFailureReason } from '../metrics.js';
import type { RedisClient } from '../store/redis.js';
import type { CaKind } from './keystore.js';
import { withSerial } from './issue.js';
import type { CertificateDraft } from './issue.js';
import { refusalReason } from './issue.js';
import { nextSerial } from './serials.js';

/** Where issuance reports to; both optional so decisions can be tested without them. */
export interface IssuanceObservers {
  readonly audit?: Pick<AuditLog, 'emit'>;
  readonly metrics?: Pick<AuthMetrics, 'certificateIssued' | 'issuanceFailed'>;
}

export interface SigningDeps extends IssuanceObservers {
  readonly redis: RedisClient;
  readonly crypto: CryptoBackend;
  /** The active CA signer of a kind (CaKeystore.signer). */
  readonly signer: (kind: CaKind) => Signer;
}

/** A signed certificate and the facts callers and audit events need. */
export interface IssuedCertificate {
  readonly certificate: Certificate;
  /** The `-cert.pub` line (`ssh-ed25519-cert-v01@openssh.com AAAA… <key id>`). */
  readonly text: string;
  readonly serial: bigint;
  readonly keyId: string;
  readonly principals: readonly string[];
  /** Milliseconds since the epoch. */
  readonly validAfter: number;
  readonly validBefore: number;
  /** SHA-256 fingerprint of the certified key. */
  readonly fingerprint: string;
  /** SHA-256 fingerprint of the CA key that signed it. */
  readonly caFingerprint: string;
}

/** What the audit event of an issuance names besides the certificate itself. */
export interface IssuanceContext {
  readonly requestId: string;
  readonly actor: AuditActor;
  /** 'user' | 'upstream' | 'host' | 'jump-host'. */
  readonly purpose: string;
  /** The user the certificate is for, when it is a user certificate. */
  readonly user?: string;
  /** The target host or enrolled host. */
  readonly host?: string;
}

/**
 * Draws a serial for a decided certificate and signs it with the active CA of its kind. Only
 * this step consumes a serial, so refused requests leave the counter alone.
 */
export async function signDraft(deps: SigningDeps, kind: CaKind, draft: CertificateDraft, nowMs: number): Promise<IssuedCertificate> {
  const signer = deps.signer(kind);
  const serial = await nextSerial(deps.redis, nowMs);
  let certificate: Certificate;
  try {
    certificate = signCertificate(withSerial(draft, serial), signer, { crypto: deps.crypto });
  } catch (e) {
    if (e instanceof CertError) throw new AuthError('ERR_BAD_REQUEST', `ca: ${e.message.replace(/^cert-core: /, '')}`, { reason: 'bad_request' });
    throw new AuthError('ERR_UNAVAILABLE', `ca: the ${kind} CA could not sign: ${(e as Error).message}`, { reason: 'unavailable' });
  }
  return {
    certificate,
    text: formatCertificate(certificate, draft.keyId.split(' ')[0] ?? ''),
    serial,
    keyId: certificate.keyId,
    principals: certificate.principals,
    validAfter: Number(certificate.validAfter) * 1000,
    validBefore: Number(certificate.validBefore) * 1000,
    fingerprint: fingerprintSha256(deps.crypto, certificate.key),
    caFingerprint: fingerprintSha256(deps.crypto, signer.publicKey),
  };
}

/** Audit event and metric for a signed certificate. */
export async function reportIssued(obs: IssuanceObservers, kind: CaKind, issued: IssuedCertificate, ctx: IssuanceContext): Promise<void> {
  obs.metrics?.certificateIssued(kind);
  await obs.audit?.emit('cert.issued', ctx.actor, {
    kind,
    purpose: ctx.purpose,
    requestId: ctx.requestId,
    user: ctx.user,
    host: ctx.host,
    serial: issued.serial,
    keyId: issued.keyId,
    principals: issued.principals,
    validAfter: new Date(issued.validAfter),
    validBefore: new Date(issued.validBefore),
    fingerprint: issued.fingerprint,
    caFingerprint: issued.caFingerprint,
  });
}

/** Audit event and metric for a refusal; returns the error for the caller to throw. */
export async function reportRefused(
  obs: IssuanceObservers,
  error: unknown,
  ctx: IssuanceContext,
  event: 'cert.refused' | 'host.enroll_failed' = 'cert.refused',
): Promise<unknown> {
  const authError = error instanceof AuthError ? error : undefined;
  obs.metrics?.issuanceFailed(issuanceFailureReason(authError?.code));
  await obs.audit?.emit(event, ctx.actor, {
    purpose: ctx.purpose,
    requestId: ctx.requestId,
    user: ctx.user,
    host: ctx.host,
    // Not `code`: the audit layer redacts fields named like secrets (auth code, device code).
    errorCode: authError?.code ?? 'internal',
    reason: authError === undefined ? 'internal' : refusalReason(authError),
    message: authError?.message ?? 'internal error',
  });
  return error;
}
