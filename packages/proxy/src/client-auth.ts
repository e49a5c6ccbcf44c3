import { checkUserCertificate, fingerprintSha256, isCertError } from '@portcullis/cert-core';
import type { Certificate, CertErrorCode, CryptoBackend, Permissions, TrustedCAs } from '@portcullis/cert-core';
import type { ClientCertificateRef, UserAccess } from './authority.js';
import { isProxyError } from './errors.js';
import type { ProxyErrorCode } from './errors.js';
import type { CertAuthResult } from './metrics.js';
import type { ClientRoute } from './routing.js';

/*
 * Who may come in, as pure decisions. The principal rule for the proxy hop:
 *
 * - The certificate is auth's user certificate: principals are the user's OS logins, the key
 *   id's first field is the user (`alice req=...`; config.userOf changes that).
 * - `login%host`: the login must be one of the certificate's principals (exact match, as sshd)
 *   AND one of the logins auth allows the user now (access().logins, locks applied). auth
 *   checks the login against the host's labels again when it mints the upstream certificate.
 * - a jump hop (bare name): the name must be the user itself, and the certificate must pass
 *   every other check; the login is checked on the inner connection, which authenticates again.
 * - `invalid` names: as a jump hop, so the user learns what is wrong after logging in.
 */

export interface ClientIdentity {
  readonly user: string;
  readonly certificate: Certificate;
  readonly permissions: Permissions;
  /** `SHA256:...` of the user CA that signed the certificate. */
  readonly caFingerprint: string;
}

/** How auth is told which certificate a client authenticated with. */
export function clientCertificateRef(crypto: CryptoBackend, cert: Certificate): ClientCertificateRef {
  return { serial: cert.serial, keyId: cert.keyId, fingerprint: fingerprintSha256(crypto, cert.key) };
}

export type AuthVerdict<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly result: CertAuthResult; readonly code: CertErrorCode | ProxyErrorCode; readonly reason: string };

export interface CertificateDecisionInput {
  readonly certificate: Certificate;
  readonly route: ClientRoute;
  /** The TCP peer address as the socket reports it (source-address is checked against it). */
  readonly peerAddress: string;
  readonly now: number;
  readonly trustedCAs: TrustedCAs;
  readonly isRevoked: (cert: Certificate) => boolean | string;
  readonly crypto: CryptoBackend;
  readonly skewSeconds: number;
  readonly userOf: (cert: Certificate) => string | undefined;
}

const RESULT_OF_CERT_CODE: Readonly<Partial<Record<CertErrorCode, CertAuthResult>>> = {
  ERR_UNTRUSTED_CA: 'untrusted_ca',
  ERR_BAD_SIGNATURE: 'bad_signature',
  ERR_ALGORITHM_MISMATCH: 'bad_signature',
  ERR_EXPIRED: 'expired',
  ERR_NOT_YET_VALID: 'not_yet_valid',
  ERR_REVOKED: 'revoked',
  ERR_WRONG_PRINCIPAL: 'wrong_principal',
  ERR_NO_PRINCIPALS: 'wrong_principal',
  ERR_SOURCE_ADDRESS: 'source_address',
  ERR_MALFORMED: 'malformed',
  ERR_UNSUPPORTED: 'malformed',
  ERR_WRONG_CERT_TYPE: 'malformed',
  ERR_UNKNOWN_CRITICAL_OPTION: 'malformed',
};

const RESULT_OF_PROXY_CODE: Readonly<Partial<Record<ProxyErrorCode, CertAuthResult>>> = {
  ERR_NOT_A_CERTIFICATE: 'not_a_certificate',
  ERR_NO_SIGNATURE: 'bad_signature',
  ERR_UNKNOWN_USER: 'unknown_user',
  ERR_ACCESS_DENIED: 'access_denied',
  ERR_LOGIN_NOT_ALLOWED: 'login_not_allowed',
  ERR_AUTHORITY_UNAVAILABLE: 'unavailable',
};

/** A refusal verdict for an error thrown by cert-core or the proxy; other errors are bugs and rethrown. */
export function refusalOf(e: unknown): AuthVerdict<never> {
  if (isCertError(e)) return { ok: false, result: RESULT_OF_CERT_CODE[e.code] ?? 'error', code: e.code, reason: e.message };
  if (isProxyError(e)) return { ok: false, result: RESULT_OF_PROXY_CODE[e.code] ?? 'error', code: e.code, reason: e.message };
  throw e;
}

function refuse(result: CertAuthResult, code: ProxyErrorCode, reason: string): AuthVerdict<never> {
  return { ok: false, result, code, reason };
}

/**
 * May this certificate open a connection with this user name, from this address, now? The
 * certificate's signature over the session must have been verified already (or this is the
 * signature-less query step, answered from the certificate alone).
 */
export function decideClientCertificate(i: CertificateDecisionInput): AuthVerdict<ClientIdentity> {
  const user = i.userOf(i.certificate);
  if (user === undefined) {
    return refuse('unknown_user', 'ERR_UNKNOWN_USER', `proxy: certificate key id ${JSON.stringify(i.certificate.keyId)} names no user`);
  }
  // For a jump hop every other check still runs; its principal is checked on the inner hop.
  const principal = i.route.kind === 'target' ? i.route.login : (i.certificate.principals[0] ?? '');
  let check;
  try {
    check = checkUserCertificate(i.certificate, {
      trustedCAs: i.trustedCAs,
      principal,
      peerAddress: i.peerAddress,
      now: BigInt(Math.floor(i.now / 1000)),
      crypto: i.crypto,
      skewSeconds: i.skewSeconds,
      isRevoked: i.isRevoked,
    });
  } catch (e) {
    return refusalOf(e);
  }
  if (i.route.kind === 'jump' && i.route.name !== user) {
    return refuse(
      'wrong_principal',
      'ERR_LOGIN_NOT_ALLOWED',
      `proxy: a jump connection logs in as the certificate's user ${JSON.stringify(user)}, not ${JSON.stringify(i.route.name)}`,
    );
  }
  return { ok: true, value: { user, certificate: i.certificate, permissions: check.permissions, caFingerprint: check.caFingerprint } };
}

/** Does auth's current view of the user allow this route? (access() already refused locked users.) */
export function decideAccess(identity: ClientIdentity, route: ClientRoute, access: UserAccess): AuthVerdict<UserAccess> {
  if (access.user !== identity.user) {
    return refuse('error', 'ERR_ACCESS_DENIED', `proxy: auth answered for user ${JSON.stringify(access.user)}, asked about ${JSON.stringify(identity.user)}`);
  }
  if (route.kind === 'target' && !access.logins.includes(route.login)) {
    return refuse(
      'login_not_allowed',
      'ERR_LOGIN_NOT_ALLOWED',
      `proxy: user ${JSON.stringify(identity.user)} may not log in as ${JSON.stringify(route.login)} (allowed now: ${access.logins.map((l) => JSON.stringify(l)).join(', ') || 'none'})`,
    );
  }
  return { ok: true, value: access };
}

/** What the client may do on the target: the certificate's permissions AND the user's roles now. */
export interface ChannelPolicy {
  readonly pty: boolean;
  readonly portForwarding: boolean;
  readonly agentForwarding: boolean;
  readonly x11Forwarding: boolean;
  readonly forceCommand?: string;
}

export function channelPolicy(permissions: Permissions, access: UserAccess): ChannelPolicy {
  return {
    pty: permissions.pty,
    portForwarding: permissions.portForwarding && access.portForwarding,
    agentForwarding: permissions.agentForwarding && access.agentForwarding,
    x11Forwarding: permissions.x11Forwarding && access.x11Forwarding,
    ...(permissions.forceCommand === undefined ? {} : { forceCommand: permissions.forceCommand }),
  };
}
