// Our side of ssh2 + OpenSSH certificates. ssh2 1.17.0 carries patches/ssh2+1.17.0.patch (see
// ../shared/reference/ssh2-certificates.md); this file gives it certificate-bearing key objects
// and makes the trust decisions ssh2 leaves to its callers.
import { createRequire } from 'node:module';
import ssh2 from 'ssh2';
import type { EncryptedPrivateKey, ParsedKey, ServerHostKeyAlgorithm } from 'ssh2';
import {
  CERT_SUFFIX,
  SshReader,
  checkHostCertificate,
  fingerprintSha256,
  formatPrivateKey,
  isCertError,
  isCertificateType,
  parseCertificate,
  parsePublicKey,
  publicKeysEqual,
  publicPart,
  trustedAuthorities,
  verifyUserauthSignature,
} from '@portcullis/cert-core';
import type {
  Certificate,
  CertErrorCode,
  CryptoBackend,
  HostCertificateCheck,
  PublicKey,
  SigningPrivateKey,
  TrustedCAs,
  UserauthSignature,
} from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { ProxyError } from './errors.js';

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Start-up checks

/**
 * Whether ssh2's native crypto binding (sshcrypto.node, built at install) loaded. Without it
 * ssh2 falls back to slower JavaScript paths for chacha20-poly1305 and AES-GCM, silently.
 */
export function nativeCryptoAvailable(): boolean {
  const mod = require('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: unknown };
  return mod.bindingAvailable === true;
}

/** What to log at start-up when nativeCryptoAvailable() is false. */
export const NATIVE_CRYPTO_MISSING =
  "ssh2's native crypto binding is not loaded: the proxy works, but SSH encryption is markedly " +
  'slower; rebuild it with `npm rebuild ssh2` (needs a C++ toolchain and node headers)';

/**
 * Whether the installed ssh2 carries our certificate patch. Without it the proxy can neither
 * log in to targets with certificates nor verify their host certificates, so it must not start.
 */
export function ssh2CertificatePatchApplied(): boolean {
  const utils = require('ssh2/lib/protocol/utils.js') as { plainAlgo?: unknown };
  const constants = require('ssh2/lib/protocol/constants.js') as { SUPPORTED_SERVER_HOST_KEY?: unknown };
  return (
    typeof utils.plainAlgo === 'function' &&
    Array.isArray(constants.SUPPORTED_SERVER_HOST_KEY) &&
    constants.SUPPORTED_SERVER_HOST_KEY.includes(`ssh-ed25519${CERT_SUFFIX}`)
  );
}

// ---------------------------------------------------------------------------------------------
// Presenting a certificate (client login, server host key)

/**
 * RSA certificates are presented as rsa-sha2-512-cert: ssh2's algorithm choice for RSA
 * (client.js getKeyAlgos) only knows plain ssh-rsa, and the ssh-rsa-cert name means SHA-1,
 * which OpenSSH refuses by default.
 */
const RSA_CERT_ALGORITHM = `rsa-sha2-512${CERT_SUFFIX}`;

function describeKey(key: PublicKey, crypto: CryptoBackend = nodeCrypto): string {
  return `${key.type} ${fingerprintSha256(crypto, key)}`;
}

function ssh2PrivateKey(privateKey: SigningPrivateKey): ParsedKey {
  // ssh2 reads OpenSSH and PKCS#1/SEC1 PEM, not PKCS#8, so hand it the OpenSSH format.
  const parsed = ssh2.utils.parseKey(formatPrivateKey(privateKey, { crypto: nodeCrypto }));
  if (parsed instanceof Error) {
    throw new ProxyError('ERR_SSH2_KEY', `proxy: ssh2 cannot read a ${privateKey.type} private key: ${parsed.message}`);
  }
  return parsed;
}

/**
 * A key object that ssh2 accepts wherever it takes a parsed private key (an `authHandler`
 * publickey entry, a server host key) and that presents `cert` instead of the plain public
 * key. Signing is the private key's own; the patched ssh2 names the signature with the plain
 * algorithm, as OpenSSH expects. Throws ERR_KEY_MISMATCH when `cert` does not certify
 * `privateKey`.
 */
export function certificateIdentity(privateKey: SigningPrivateKey, cert: Certificate): ParsedKey {
  const ours = publicPart(privateKey);
  if (!publicKeysEqual(cert.key, ours)) {
    throw new ProxyError(
      'ERR_KEY_MISMATCH',
      `proxy: certificate ${JSON.stringify(cert.keyId)} certifies ${describeKey(cert.key)}, not the private key ${describeKey(ours)}`,
    );
  }
  const parsed = ssh2PrivateKey(privateKey);
  const blob = Buffer.from(cert.raw);
  const rsa = cert.key.type === 'ssh-rsa';
  // Object.create keeps ssh2's private symbols (its isParsedKey test and the key material)
  // reachable through the prototype; only what names and presents the key is overridden.
  return Object.create(parsed, {
    type: { value: rsa ? RSA_CERT_ALGORITHM : cert.certType, enumerable: true },
    getPublicSSH: { value: () => Buffer.from(blob) },
    ...(rsa ? { sign: { value: (data: Buffer | string) => parsed.sign(data, 'sha512') } } : {}),
  }) as ParsedKey;
}

/**
 * An entry for ssh2 Server's `hostKeys` that presents the host certificate `cert` for
 * `privateKey`. Stock OpenSSH clients with an `@cert-authority` line for the CA then connect
 * without a prompt.
 */
export function hostCertificateKey(privateKey: SigningPrivateKey, cert: Certificate): EncryptedPrivateKey {
  if (cert.kind !== 'host') {
    throw new ProxyError('ERR_KEY_MISMATCH', `proxy: a server presents a host certificate, got a ${cert.kind} certificate (key id ${JSON.stringify(cert.keyId)})`);
  }
  return { key: certificateIdentity(privateKey, cert) };
}

// ---------------------------------------------------------------------------------------------
// Verifying the target's host certificate (ssh2 client)

/** The certificate host key algorithms the patched ssh2 client can negotiate. */
export const HOST_CERTIFICATE_ALGORITHMS: readonly string[] = [
  `ssh-ed25519${CERT_SUFFIX}`,
  `ecdsa-sha2-nistp256${CERT_SUFFIX}`,
  `ecdsa-sha2-nistp384${CERT_SUFFIX}`,
  `ecdsa-sha2-nistp521${CERT_SUFFIX}`,
  `rsa-sha2-512${CERT_SUFFIX}`,
  `rsa-sha2-256${CERT_SUFFIX}`,
];

/**
 * For ssh2's `algorithms.serverHostKey` when dialling a target: certificates first, so any
 * host with a certificate is verified by its certificate. The plain algorithms come last only
 * so that a host without a certificate reaches the verifier and is refused with a reason
 * ("plain host key"), instead of an opaque "no matching host key type"; the verifier accepts
 * nothing but a certificate. (@types/ssh2 does not know the certificate names.)
 */
export const UPSTREAM_HOST_KEY_ALGORITHMS = [
  ...HOST_CERTIFICATE_ALGORITHMS,
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
] as ServerHostKeyAlgorithm[];

export type HostKeyRefusalCode = CertErrorCode | 'ERR_NOT_A_CERTIFICATE';

export type HostKeyVerdict =
  | { readonly accepted: true; readonly check: HostCertificateCheck }
  | { readonly accepted: false; readonly code: HostKeyRefusalCode; readonly reason: string };

export interface HostKeyDecisionOptions {
  /** The host CA keys; a plain array is validated once by hostCertificateVerifier. */
  readonly trustedHostCAs: TrustedCAs;
  /** The name dialled (no port); one certificate principal must match it. */
  readonly hostname: string;
  readonly now: bigint | Date;
  readonly crypto: CryptoBackend;
  readonly skewSeconds?: number | bigint;
  /** KRL and lock lookup, as in cert-core's checker. */
  readonly isRevoked?: (cert: Certificate) => boolean | string;
}

/**
 * Decides whether the host key blob a target presented is acceptable: only a host certificate
 * from a trusted host CA, valid now, naming `hostname`. Never throws on what the host sent.
 * (That the host holds the certificate's key is proved by the key exchange signature, which
 * the patched ssh2 verifies with the certificate's key.)
 */
export function decideHostKey(blob: Uint8Array, o: HostKeyDecisionOptions): HostKeyVerdict {
  const host = JSON.stringify(o.hostname);
  let type: string;
  try {
    type = new SshReader(blob, 'host key').text('type');
  } catch (e) {
    if (!isCertError(e)) throw e;
    return { accepted: false, code: e.code, reason: `proxy: host ${host} sent a malformed host key: ${e.message}` };
  }
  if (!isCertificateType(type)) {
    let what = type;
    try {
      what = describeKey(parsePublicKey(blob, 'host key'), o.crypto);
    } catch {
      // An unknown or malformed key is still a plain key; its type name says enough.
    }
    return {
      accepted: false,
      code: 'ERR_NOT_A_CERTIFICATE',
      reason: `proxy: host ${host} presented a plain host key (${what}), not a host certificate; refusing it, since host keys are trusted only through the host CA`,
    };
  }
  try {
    const cert = parseCertificate(blob, 'host certificate');
    const check = checkHostCertificate(cert, {
      trustedCAs: o.trustedHostCAs,
      hostname: o.hostname,
      now: o.now,
      crypto: o.crypto,
      ...(o.skewSeconds === undefined ? {} : { skewSeconds: o.skewSeconds }),
      ...(o.isRevoked === undefined ? {} : { isRevoked: o.isRevoked }),
    });
    return { accepted: true, check };
  } catch (e) {
    if (!isCertError(e)) throw e;
    return { accepted: false, code: e.code, reason: `proxy: host ${host} presented a host certificate that is refused: ${e.message}` };
  }
}

export interface HostCertificateVerifierOptions extends Omit<HostKeyDecisionOptions, 'now'> {
  /** The time to check at, or a clock read when the host key arrives. */
  readonly now: bigint | Date | (() => bigint | Date);
}

/** ssh2's synchronous `hostVerifier` (raw key blob), with the decision it made readable. */
export interface HostCertificateVerifier {
  (key: Buffer): boolean;
  /** The last decision; undefined until the handshake reached the host key. */
  readonly verdict: HostKeyVerdict | undefined;
}

/**
 * The `hostVerifier` for an ssh2 client dialling `hostname` (leave `hostHash` unset, so ssh2
 * passes the whole certificate). After a refused handshake, `verdict.reason` says why.
 */
export function hostCertificateVerifier(options: HostCertificateVerifierOptions): HostCertificateVerifier {
  if (typeof options.hostname !== 'string' || options.hostname === '') {
    throw new TypeError('proxy: hostname must be a non-empty string');
  }
  // A bad CA list is a configuration error: report it now, not as a refused host later.
  const trusted = Array.isArray(options.trustedHostCAs)
    ? trustedAuthorities(options.trustedHostCAs as readonly (PublicKey | Uint8Array)[])
    : options.trustedHostCAs;
  const { now } = options;
  let verdict: HostKeyVerdict | undefined;
  const verify = (key: Buffer): boolean => {
    verdict = decideHostKey(key, { ...options, trustedHostCAs: trusted, now: typeof now === 'function' ? now() : now });
    return verdict.accepted;
  };
  Object.defineProperty(verify, 'verdict', { get: () => verdict, enumerable: true });
  return verify as HostCertificateVerifier;
}

// ---------------------------------------------------------------------------------------------
// Verifying a client's user certificate (ssh2 server `authentication` event)

/** The parts of ssh2's publickey authentication context that matter here. */
export interface PublicKeyAuthRequest {
  /** `algo` is the algorithm as sent; `data` the whole key blob (here, a certificate). */
  readonly key: { readonly algo: string; readonly data: Uint8Array };
  /** The whole SSH signature blob; ssh2 leaves it unconverted for certificate algorithms. */
  readonly signature?: Uint8Array | undefined;
  /** The signed data: session id and the request up to the key blob. */
  readonly blob?: Uint8Array | undefined;
}

export function isCertificateAlgorithm(algorithm: string): boolean {
  return algorithm.endsWith(CERT_SUFFIX);
}

/**
 * The certificate a publickey request offers, parsed but NOT checked (run cert-core's
 * checkUserCertificate on it). For the signature-less query step, so the handler can refuse
 * early; ERR_NOT_A_CERTIFICATE for a plain key.
 */
export function offeredCertificate(request: PublicKeyAuthRequest): Certificate {
  requireCertificateAlgorithm(request.key.algo);
  return parseCertificate(request.key.data, 'userauth.keyBlob');
}

function requireCertificateAlgorithm(algorithm: string): void {
  if (!isCertificateAlgorithm(algorithm)) {
    throw new ProxyError('ERR_NOT_A_CERTIFICATE', `proxy: only user certificates are accepted, got a plain ${algorithm} key`);
  }
}

/**
 * Verifies the signature of a certificate publickey request as sshd does (cert-core's
 * verifyUserauthSignature: the blob fits the algorithm, the signature names exactly the
 * algorithm's plain signature algorithm, and verifies with the certificate's key). Returns the
 * parsed certificate, which the caller must still check (CA, validity, principal, source
 * address, revocation). Throws ProxyError or CertError.
 */
export function verifyCertificateUserauth(
  request: PublicKeyAuthRequest,
  options: { readonly crypto: CryptoBackend },
): UserauthSignature & { readonly certificate: Certificate } {
  requireCertificateAlgorithm(request.key.algo);
  const { signature, blob } = request;
  if (signature === undefined || blob === undefined) {
    throw new ProxyError('ERR_NO_SIGNATURE', 'proxy: publickey request carries no signature; check it with offeredCertificate');
  }
  const result = verifyUserauthSignature({
    algorithm: request.key.algo,
    keyBlob: request.key.data,
    signature,
    signedData: blob,
    crypto: options.crypto,
  });
  const { certificate } = result;
  if (certificate === undefined) {
    // verifyUserauthSignature parses a certificate for every *-cert algorithm.
    throw new ProxyError('ERR_NOT_A_CERTIFICATE', `proxy: ${request.key.algo} request without a certificate`);
  }
  return { ...result, certificate };
}
