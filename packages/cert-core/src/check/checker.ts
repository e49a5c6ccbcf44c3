import { CertError } from '../errors.js';
import type { CryptoBackend } from '../crypto/backend.js';
import type { Certificate, CertificateKind } from '../cert/certificate.js';
import { verifyCertificateSignature } from '../cert/certificate.js';
import type { PublicKey, SignatureAlgorithm } from '../keys/types.js';
import { encodePublicKey, fingerprintSha256, isKeyType, parsePublicKey } from '../keys/public-key.js';
import { bytesToHex } from '../wire/writer.js';
import { matchPattern } from '../text/pattern.js';
import type { Permissions } from './permissions.js';
import { permissionsFromOptions } from './permissions.js';
import { sourceAddressAllows } from './source-address.js';

const UINT64_MAX = 0xffffffffffffffffn;

/**
 * sshd's default CASignatureAlgorithms. ssh-rsa (SHA-1) is absent: OpenSSH refuses CA
 * signatures made with it since 8.2.
 */
export const DEFAULT_CA_SIGNATURE_ALGORITHMS: readonly SignatureAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
  'rsa-sha2-512',
  'rsa-sha2-256',
];

/**
 * A validated set of CA keys, compared by canonical blob. Build it once at configuration time
 * with `trustedAuthorities`; a plain array passed to a check is validated on every call.
 */
export interface TrustedAuthorities {
  readonly keys: readonly PublicKey[];
  /** Hex of each canonical blob. */
  readonly blobs: ReadonlySet<string>;
}

/** What may configure trust: parsed keys, or plain key blobs. A certificate is never a CA. */
export type TrustedCAs = TrustedAuthorities | readonly (PublicKey | Uint8Array)[];

function isTrustedAuthorities(x: unknown): x is TrustedAuthorities {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && (x as TrustedAuthorities).blobs instanceof Set;
}

function authorityKey(entry: unknown, i: number): PublicKey {
  if (entry instanceof Uint8Array) {
    try {
      return parsePublicKey(entry, `trustedCAs[${i}]`);
    } catch (e) {
      if (e instanceof CertError && e.code === 'ERR_UNSUPPORTED' && e.what?.endsWith('-cert-v01@openssh.com')) {
        // Teleport CVE-2025-49825 class: a certificate accepted as an authority.
        throw new CertError('ERR_UNTRUSTED_CA', `cert-core: trustedCAs[${i}] is a certificate (${e.what}); a certificate cannot be a CA`, {
          where: `trustedCAs[${i}]`,
          what: e.what,
        });
      }
      throw e;
    }
  }
  if (typeof entry !== 'object' || entry === null) {
    throw new TypeError(`cert-core: trustedCAs[${i}] must be a PublicKey or a key blob, got ${entry === null ? 'null' : typeof entry}`);
  }
  const e = entry as { type?: unknown; certType?: unknown; signatureKey?: unknown };
  if (e.certType !== undefined || e.signatureKey !== undefined) {
    throw new TypeError(`cert-core: trustedCAs[${i}] is a certificate (${String(e.certType)}); a certificate cannot be a CA`);
  }
  if (typeof e.type !== 'string' || !isKeyType(e.type)) {
    throw new TypeError(`cert-core: trustedCAs[${i}] has key type ${JSON.stringify(e.type)}, expected a plain public key type`);
  }
  return entry as PublicKey;
}

/** Validates CA keys once; throws TypeError or ERR_UNTRUSTED_CA for anything that is not a plain key. */
export function trustedAuthorities(entries: readonly (PublicKey | Uint8Array)[]): TrustedAuthorities {
  if (!Array.isArray(entries)) throw new TypeError('cert-core: trustedCAs must be an array of public keys');
  // An empty list would refuse everyone anyway; it is far more likely a configuration mistake.
  if (entries.length === 0) throw new TypeError('cert-core: trustedCAs is empty: no CA is trusted');
  const keys = entries.map((e, i) => authorityKey(e, i));
  return { keys, blobs: new Set(keys.map((k) => bytesToHex(encodePublicKey(k)))) };
}

function authoritiesOf(trusted: TrustedCAs): TrustedAuthorities {
  return isTrustedAuthorities(trusted) ? trusted : trustedAuthorities(trusted);
}

/** Seconds since the epoch as an unsigned 64-bit value; TypeError for anything else. */
export function epochSeconds(now: bigint | Date): bigint {
  if (typeof now === 'bigint') {
    if (now < 0n || now > UINT64_MAX) throw new TypeError(`cert-core: now ${now} is outside uint64`);
    return now;
  }
  if (now instanceof Date) {
    const ms = now.getTime();
    if (!Number.isFinite(ms)) throw new TypeError('cert-core: now is an invalid Date');
    if (ms < 0) throw new TypeError(`cert-core: now ${now.toISOString()} is before the epoch`);
    return BigInt(Math.floor(ms / 1000));
  }
  throw new TypeError(`cert-core: now must be a bigint (seconds) or a Date, got ${typeof now}`);
}

function skewOf(skew: number | bigint | undefined): bigint {
  if (skew === undefined) return 0n;
  if (typeof skew === 'bigint' && skew >= 0n) return skew;
  if (typeof skew === 'number' && Number.isSafeInteger(skew) && skew >= 0) return BigInt(skew);
  throw new TypeError(`cert-core: skewSeconds must be a non-negative integer, got ${String(skew)}`);
}

/** `1700000000 (2023-11-14T22:13:20Z)`; the date only where a Date can show it. */
function showTime(t: bigint): string {
  if (t === UINT64_MAX) return `${t} (forever)`;
  if (t <= 8_640_000_000_000n) return `${t} (${new Date(Number(t) * 1000).toISOString().replace('.000Z', 'Z')})`;
  return `${t}`;
}

/** Options shared by user and host certificate checks. */
export interface CertificateCheckOptions {
  /** The time to check at: bigint seconds since the epoch, or a Date. */
  readonly now: bigint | Date;
  readonly trustedCAs: TrustedCAs;
  readonly crypto: CryptoBackend;
  /**
   * Seconds of clock difference tolerated at both ends of the validity window (default 0, as
   * OpenSSH). Issuers should backdate valid_after instead where they can.
   */
  readonly skewSeconds?: number | bigint;
  /**
   * Revocation hook (a KRL lookup, a lock list): true or a string (the reason) means revoked.
   * It should look at the certificate and at its CA key. A hook that throws counts as
   * revoked, as sshd treats an unreadable RevokedKeys file.
   */
  readonly isRevoked?: (cert: Certificate) => boolean | string;
  /** CA signature algorithms accepted (default DEFAULT_CA_SIGNATURE_ALGORITHMS). */
  readonly caSignatureAlgorithms?: readonly SignatureAlgorithm[];
}

export interface UserCertificateCheckOptions extends CertificateCheckOptions {
  /** The login requested; must equal one principal exactly. */
  readonly principal: string;
  /** The client's address as the socket reports it (for source-address). */
  readonly peerAddress: string;
  /** See PermissionsOptions.supportedCriticalOptions. */
  readonly supportedCriticalOptions?: readonly string[];
}

export interface HostCertificateCheckOptions extends CertificateCheckOptions {
  /** The host name (or address) dialled, without port. */
  readonly hostname: string;
}

interface CheckedCertificate {
  readonly cert: Certificate;
  /** The trusted CA key that signed it. */
  readonly ca: PublicKey;
  /** `SHA256:...` of the CA key, for logs and audit. */
  readonly caFingerprint: string;
}

export interface UserCertificateCheck extends CheckedCertificate {
  /** The principal that matched (equal to the requested one). */
  readonly principal: string;
  readonly permissions: Permissions;
}

export interface HostCertificateCheck extends CheckedCertificate {
  /** The certificate principal (possibly a wildcard pattern) that matched the host name. */
  readonly principal: string;
}

function fail(code: ConstructorParameters<typeof CertError>[0], message: string, where: string, what: string): never {
  throw new CertError(code, `cert-core: ${message}`, { where, what });
}

function assertCertificate(cert: unknown): asserts cert is Certificate {
  const c = cert as Partial<Certificate> | null;
  if (typeof c !== 'object' || c === null || !(c.raw instanceof Uint8Array) || typeof c.signedLength !== 'number') {
    throw new TypeError('cert-core: expected a parsed Certificate (from parseCertificate or signCertificate)');
  }
}

/**
 * The checks that come before any field of the certificate is believed: the CA is trusted,
 * its signature algorithm is accepted, the signature verifies over the received bytes; then
 * revocation, kind and validity window.
 */
function checkCommon(cert: Certificate, kind: CertificateKind, o: CertificateCheckOptions): CheckedCertificate {
  assertCertificate(cert);
  if (typeof o.crypto?.verify !== 'function') throw new TypeError('cert-core: crypto must be a CryptoBackend');
  const authorities = authoritiesOf(o.trustedCAs);
  const now = epochSeconds(o.now);
  const skew = skewOf(o.skewSeconds);
  const caAlgorithms = o.caSignatureAlgorithms ?? DEFAULT_CA_SIGNATURE_ALGORITHMS;
  if (o.isRevoked !== undefined && typeof o.isRevoked !== 'function') {
    throw new TypeError('cert-core: isRevoked must be a function');
  }

  const caFingerprint = fingerprintSha256(o.crypto, cert.signatureKey);
  if (!authorities.blobs.has(bytesToHex(encodePublicKey(cert.signatureKey)))) {
    fail('ERR_UNTRUSTED_CA', `certificate signed by ${cert.signatureKey.type} CA ${caFingerprint}, which is not a trusted CA`, 'certificate.signatureKey', caFingerprint);
  }
  if (!caAlgorithms.includes(cert.signature.algorithm)) {
    fail(
      'ERR_ALGORITHM_MISMATCH',
      `CA signature algorithm "${cert.signature.algorithm}" not accepted (expected one of ${caAlgorithms.join(', ')})`,
      'certificate.signature.algorithm',
      cert.signature.algorithm,
    );
  }
  if (!verifyCertificateSignature(o.crypto, cert)) {
    fail('ERR_BAD_SIGNATURE', `CA signature (${cert.signature.algorithm}) by ${caFingerprint} does not verify over the certificate`, 'certificate.signature', caFingerprint);
  }

  if (o.isRevoked !== undefined) {
    let verdict: boolean | string;
    try {
      verdict = o.isRevoked(cert);
    } catch (e) {
      verdict = `revocation check failed (${e instanceof Error ? e.message : String(e)})`;
    }
    if (verdict !== false) {
      const reason = typeof verdict === 'string' && verdict !== '' ? `: ${verdict}` : '';
      fail('ERR_REVOKED', `certificate serial ${cert.serial} key id ${JSON.stringify(cert.keyId)} is revoked${reason}`, 'certificate', `serial ${cert.serial}`);
    }
  }

  if (cert.kind !== kind) {
    fail('ERR_WRONG_CERT_TYPE', `expected a ${kind} certificate, got a ${cert.kind} certificate`, 'certificate.kind', cert.kind);
  }
  // valid_after <= now < valid_before, widened by the skew at both ends; bigint, no overflow.
  if (now + skew < cert.validAfter) {
    fail(
      'ERR_NOT_YET_VALID',
      `certificate not valid before ${showTime(cert.validAfter)}, now is ${showTime(now)} (skew ${skew}s)`,
      'certificate.validAfter',
      `${cert.validAfter}`,
    );
  }
  if (now >= cert.validBefore + skew) {
    fail(
      'ERR_EXPIRED',
      `certificate expired at ${showTime(cert.validBefore)}, now is ${showTime(now)} (skew ${skew}s)`,
      'certificate.validBefore',
      `${cert.validBefore}`,
    );
  }
  if (cert.principals.length === 0) {
    // Vault CVE-2024-7594 class: an empty list would otherwise mean "anyone" to some verifiers.
    fail('ERR_NO_PRINCIPALS', `${kind} certificate has no principals; refusing it`, 'certificate.principals', '[]');
  }
  return { cert, ca: cert.signatureKey, caFingerprint };
}

function showPrincipals(principals: readonly string[]): string {
  const shown = principals.slice(0, 8).map((p) => JSON.stringify(p));
  if (principals.length > 8) shown.push(`... ${principals.length - 8} more`);
  return `[${shown.join(', ')}]`;
}

/**
 * May this certificate log in as `principal` from `peerAddress` at `now`? Returns what the
 * certificate permits, or throws CertError naming the first check that failed. Does not look
 * at the user-authentication signature: verifyUserauthSignature (userauth.ts) does that.
 */
export function checkUserCertificate(cert: Certificate, options: UserCertificateCheckOptions): UserCertificateCheck {
  if (typeof options !== 'object' || options === null) throw new TypeError('cert-core: options are required');
  if (typeof options.principal !== 'string') throw new TypeError('cert-core: principal must be a string');
  if (typeof options.peerAddress !== 'string') throw new TypeError('cert-core: peerAddress must be a string');
  const checked = checkCommon(cert, 'user', options);

  // Exact match only: "a,b" is one principal named "a,b", never a list (CVE-2026-35414), and
  // the empty login never matches anything but an empty principal, which we refuse to match.
  if (options.principal === '' || !cert.principals.includes(options.principal)) {
    fail(
      'ERR_WRONG_PRINCIPAL',
      `principal ${JSON.stringify(options.principal)} not in the certificate's principals ${showPrincipals(cert.principals)}`,
      'certificate.principals',
      options.principal,
    );
  }

  const permissions = permissionsFromOptions(cert.criticalOptions, cert.extensions, {
    ...(options.supportedCriticalOptions !== undefined ? { supportedCriticalOptions: options.supportedCriticalOptions } : {}),
  });
  if (permissions.sourceAddress !== undefined) {
    let allowed: boolean;
    try {
      allowed = sourceAddressAllows(permissions.sourceAddress, options.peerAddress);
    } catch (e) {
      if (!(e instanceof CertError)) throw e;
      fail('ERR_SOURCE_ADDRESS', `cannot match peer ${options.peerAddress} against source-address "${permissions.sourceAddress}": ${e.message}`, 'certificate.criticalOptions.source-address', permissions.sourceAddress);
    }
    if (!allowed) {
      fail('ERR_SOURCE_ADDRESS', `peer address ${options.peerAddress} not in the certificate's source-address "${permissions.sourceAddress}"`, 'certificate.criticalOptions.source-address', options.peerAddress);
    }
  }
  return { ...checked, principal: options.principal, permissions };
}

/**
 * Is this the certificate of `hostname` at `now`? As the OpenSSH >= 10.3 client: a host
 * certificate, no critical options, a non-empty principal list, and a principal that matches
 * the host name, where principals may use `*` and `?` and case does not matter.
 */
export function checkHostCertificate(cert: Certificate, options: HostCertificateCheckOptions): HostCertificateCheck {
  if (typeof options !== 'object' || options === null) throw new TypeError('cert-core: options are required');
  if (typeof options.hostname !== 'string' || options.hostname === '') {
    throw new TypeError('cert-core: hostname must be a non-empty string');
  }
  const checked = checkCommon(cert, 'host', options);
  const first = cert.criticalOptions[0];
  if (first !== undefined) {
    fail('ERR_UNKNOWN_CRITICAL_OPTION', `host certificate carries critical option "${first.name}"; host certificates may carry none`, 'certificate.criticalOptions', first.name);
  }
  const host = options.hostname.toLowerCase();
  const principal = cert.principals.find((p) => matchPattern(host, p.toLowerCase()));
  if (principal === undefined) {
    fail(
      'ERR_WRONG_PRINCIPAL',
      `host name ${JSON.stringify(options.hostname)} matches none of the certificate's principals ${showPrincipals(cert.principals)}`,
      'certificate.principals',
      options.hostname,
    );
  }
  return { ...checked, principal };
}
