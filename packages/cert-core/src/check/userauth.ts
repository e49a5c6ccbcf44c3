import { CertError } from '../errors.js';
import type { CryptoBackend } from '../crypto/backend.js';
import type { Certificate } from '../cert/certificate.js';
import { CERT_SUFFIX, keyTypeOfCertType, parseCertificate } from '../cert/certificate.js';
import { EXT_NO_TOUCH_REQUIRED, CRITICAL_VERIFY_REQUIRED } from '../cert/options.js';
import type { PublicKey, SignatureAlgorithm, SshSignature } from '../keys/types.js';
import { isKeyType, parsePublicKey } from '../keys/public-key.js';
import { parseSignature, verifySignature } from '../keys/signature.js';
import { SshReader } from '../wire/reader.js';
import { SshWriter } from '../wire/writer.js';

/** SSH_MSG_USERAUTH_REQUEST (RFC 4252 section 6). */
const SSH_MSG_USERAUTH_REQUEST = 50;
/** Security-key signature flags (PROTOCOL.u2f). */
export const SK_USER_PRESENCE = 0x01;
export const SK_USER_VERIFICATION = 0x04;

/**
 * The bytes a client signs for "publickey" authentication (RFC 4252 section 7). The caller
 * passes the key blob exactly as received; re-encoding it could change the signed bytes.
 */
export function buildUserauthSignedData(
  sessionId: Uint8Array,
  user: string,
  service: string,
  algorithm: string,
  keyBlob: Uint8Array,
): Uint8Array {
  if (!(sessionId instanceof Uint8Array)) throw new TypeError('cert-core: sessionId must be a Uint8Array');
  if (!(keyBlob instanceof Uint8Array)) throw new TypeError('cert-core: keyBlob must be a Uint8Array');
  for (const [name, v] of [['user', user], ['service', service], ['algorithm', algorithm]] as const) {
    if (typeof v !== 'string') throw new TypeError(`cert-core: ${name} must be a string`);
  }
  return new SshWriter(sessionId.length + keyBlob.length + 128)
    .string(sessionId)
    .byte(SSH_MSG_USERAUTH_REQUEST)
    .string(user)
    .string(service)
    .string('publickey')
    .boolean(true)
    .string(algorithm)
    .string(keyBlob)
    .finish();
}

interface Expected {
  /** The type string the key blob must start with. */
  readonly blobType: string;
  /** The signature algorithm the signature blob must name. */
  readonly signatureAlgorithm: SignatureAlgorithm;
  readonly certificate: boolean;
}

/**
 * What an advertised public key algorithm requires of the key blob and signature. The
 * rsa-sha2-* names are algorithms, never blob types: they ride on ssh-rsa keys and certs.
 */
function expectationsOf(algorithm: string): Expected | undefined {
  const certificate = algorithm.endsWith(CERT_SUFFIX);
  const base = certificate ? algorithm.slice(0, -CERT_SUFFIX.length) : algorithm;
  if (base === 'rsa-sha2-256' || base === 'rsa-sha2-512') {
    return { blobType: certificate ? `ssh-rsa${CERT_SUFFIX}` : 'ssh-rsa', signatureAlgorithm: base, certificate };
  }
  const keyType = certificate ? keyTypeOfCertType(algorithm) : isKeyType(algorithm) ? algorithm : undefined;
  if (keyType === undefined) return undefined;
  return { blobType: algorithm, signatureAlgorithm: keyType, certificate };
}

export interface UserauthSignatureInput {
  /** The public key algorithm name from SSH_MSG_USERAUTH_REQUEST. */
  readonly algorithm: string;
  /** The public key blob from the request (a plain key or a certificate). */
  readonly keyBlob: Uint8Array;
  /** The signature blob from the request. */
  readonly signature: Uint8Array;
  /** What was signed: buildUserauthSignedData(sessionId, user, service, algorithm, keyBlob). */
  readonly signedData: Uint8Array;
  readonly crypto: CryptoBackend;
  /** Accept `ssh-rsa` (RSA with SHA-1) signatures. Off by default, as in OpenSSH >= 8.8. */
  readonly allowSha1Rsa?: boolean;
  /**
   * Policy for security keys beyond the certificate: these can only tighten. For a plain key
   * they are the whole policy (authorized_keys' no-touch-required / verify-required); for a
   * certificate, a touch may be skipped only if the certificate has no-touch-required and this
   * is not false, and verification is required if either asks for it.
   */
  readonly noTouchRequired?: boolean;
  readonly verifyRequired?: boolean;
}

export interface UserauthSignature {
  /** The advertised algorithm. */
  readonly algorithm: string;
  readonly signatureAlgorithm: SignatureAlgorithm;
  /** The key that signed: the certificate's subject key, or the plain key. */
  readonly key: PublicKey;
  /**
   * The certificate from the key blob, parsed but NOT checked: run checkUserCertificate on it
   * before trusting anything in it.
   */
  readonly certificate?: Certificate;
  readonly signature: SshSignature;
  /** Security-key signatures: what the authenticator asserted. */
  readonly sk?: { readonly userPresent: boolean; readonly userVerified: boolean; readonly counter: number };
}

function mismatch(message: string, where: string, what: string): never {
  throw new CertError('ERR_ALGORITHM_MISMATCH', `cert-core: ${message}`, { where, what });
}

function hasOption(list: readonly { name: string }[], name: string): boolean {
  return list.some((o) => o.name === name);
}

/**
 * Verifies the signature of a "publickey" user-authentication request as sshd does: the key
 * blob's type fits the advertised algorithm (ECDSA curves included, CVE-2026-35387 class), the
 * signature names exactly the advertised signature algorithm, it verifies with the (subject)
 * key, and a security key asserted presence and verification as required. Throws
 * ERR_ALGORITHM_MISMATCH or ERR_BAD_SIGNATURE (ERR_MALFORMED / ERR_UNSUPPORTED for bad blobs).
 */
export function verifyUserauthSignature(input: UserauthSignatureInput): UserauthSignature {
  if (typeof input !== 'object' || input === null) throw new TypeError('cert-core: input is required');
  const { algorithm, keyBlob, signature, signedData, crypto } = input;
  if (typeof algorithm !== 'string') throw new TypeError('cert-core: algorithm must be a string');
  for (const [name, v] of [['keyBlob', keyBlob], ['signature', signature], ['signedData', signedData]] as const) {
    if (!(v instanceof Uint8Array)) throw new TypeError(`cert-core: ${name} must be a Uint8Array`);
  }
  if (typeof crypto?.verify !== 'function') throw new TypeError('cert-core: crypto must be a CryptoBackend');

  const expected = expectationsOf(algorithm);
  if (expected === undefined) {
    throw new CertError('ERR_UNSUPPORTED', `cert-core: unsupported public key algorithm "${algorithm}"`, {
      where: 'userauth.algorithm',
      what: algorithm,
    });
  }
  if (expected.signatureAlgorithm === 'ssh-rsa' && input.allowSha1Rsa !== true) {
    mismatch(`algorithm "${algorithm}" signs with SHA-1 (ssh-rsa), which is refused`, 'userauth.algorithm', algorithm);
  }

  const blobType = new SshReader(keyBlob, 'userauth.keyBlob').text('type');
  if (blobType !== expected.blobType) {
    mismatch(`algorithm "${algorithm}" needs a key of type "${expected.blobType}", got "${blobType}"`, 'userauth.keyBlob.type', blobType);
  }
  const sigAlgorithm = new SshReader(signature, 'userauth.signature').text('algorithm');
  if (sigAlgorithm !== expected.signatureAlgorithm) {
    mismatch(
      `algorithm "${algorithm}" needs a "${expected.signatureAlgorithm}" signature, got "${sigAlgorithm}"`,
      'userauth.signature.algorithm',
      sigAlgorithm,
    );
  }

  const certificate = expected.certificate ? parseCertificate(keyBlob, 'userauth.keyBlob') : undefined;
  const key = certificate?.key ?? parsePublicKey(keyBlob, 'userauth.keyBlob');
  const sig = parseSignature(signature, 'userauth.signature');
  if (!verifySignature(crypto, key, sig, signedData)) {
    throw new CertError('ERR_BAD_SIGNATURE', `cert-core: ${sig.algorithm} user-authentication signature does not verify with the ${key.type} key`, {
      where: 'userauth.signature',
      what: sig.algorithm,
    });
  }

  if (sig.sk === undefined) return { algorithm, signatureAlgorithm: sig.algorithm, key, ...(certificate ? { certificate } : {}), signature: sig };

  const noTouch = certificate
    ? hasOption(certificate.extensions, EXT_NO_TOUCH_REQUIRED) && input.noTouchRequired !== false
    : input.noTouchRequired === true;
  const verify =
    (certificate !== undefined && hasOption(certificate.criticalOptions, CRITICAL_VERIFY_REQUIRED)) ||
    input.verifyRequired === true;
  const userPresent = (sig.sk.flags & SK_USER_PRESENCE) !== 0;
  const userVerified = (sig.sk.flags & SK_USER_VERIFICATION) !== 0;
  if (!userPresent && !noTouch) {
    throw new CertError('ERR_BAD_SIGNATURE', `cert-core: security-key signature lacks user presence (flags 0x${sig.sk.flags.toString(16).padStart(2, '0')}) and no-touch-required is not granted`, {
      where: 'userauth.signature.flags',
      what: `0x${sig.sk.flags.toString(16)}`,
    });
  }
  if (!userVerified && verify) {
    throw new CertError('ERR_BAD_SIGNATURE', `cert-core: security-key signature lacks user verification (flags 0x${sig.sk.flags.toString(16).padStart(2, '0')}) but verify-required is set`, {
      where: 'userauth.signature.flags',
      what: `0x${sig.sk.flags.toString(16)}`,
    });
  }
  return {
    algorithm,
    signatureAlgorithm: sig.algorithm,
    key,
    ...(certificate ? { certificate } : {}),
    signature: sig,
    sk: { userPresent, userVerified, counter: sig.sk.counter },
  };
}
