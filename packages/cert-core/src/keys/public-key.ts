import { CertError, malformed } from '../errors.js';
import { SshReader } from '../wire/reader.js';
import { SshWriter } from '../wire/writer.js';
import { NOBLE_CURVES } from '../crypto/noble.js';
import type { CryptoBackend } from '../crypto/backend.js';
import type { EcdsaCurve, KeyType, PlainPublicKey, PublicKey } from './types.js';
import { CURVE_OF, CURVE_SIZE } from './types.js';
import { toBase64 } from '../wire/bytes.js';

export const KEY_TYPES: readonly KeyType[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'ssh-rsa',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

export function isKeyType(s: string): s is KeyType {
  return (KEY_TYPES as readonly string[]).includes(s);
}

/** RSA moduli OpenSSH accepts (SSH_RSA_MINIMUM_MODULUS_SIZE .. SSHBUF_MAX_BIGNUM). */
export const RSA_MIN_BITS = 1024;
export const RSA_MAX_BITS = 16384;

export function rsaBits(n: bigint): number {
  if (n <= 0n) return 0;
  const hex = n.toString(16);
  return (hex.length - 1) * 4 + parseInt(hex[0]!, 16).toString(2).length;
}

// Points already validated: CA keys recur on every certificate, and validation is the
// costliest part of parsing an ECDSA key. Bounded; only valid points are remembered.
const validPoints = new Set<string>();
const VALID_POINTS_MAX = 1024;

/** Validates an uncompressed point on `curve` (OpenSSH sshkey_ec_validate_public). */
function checkPoint(curve: EcdsaCurve, point: Uint8Array, where: string): void {
  const size = CURVE_SIZE[curve];
  if (point.length !== 1 + 2 * size || point[0] !== 4) {
    malformed(where, `expected an uncompressed ${curve} point of ${1 + 2 * size} bytes, got ${point.length}`);
  }
  const id = curve + toBase64(point);
  if (validPoints.has(id)) return;
  try {
    NOBLE_CURVES[curve].Point.fromBytes(point).assertValidity();
  } catch {
    malformed(where, `point is not on curve ${curve}`);
  }
  if (validPoints.size >= VALID_POINTS_MAX) validPoints.delete(validPoints.values().next().value!);
  validPoints.add(id);
}

/**
 * Reads the key fields that follow the type name (and, in a certificate, the nonce). Shared by
 * the plain key parser and the certificate parser.
 */
export function readKeyFields(r: SshReader, type: KeyType, field = 'key'): PublicKey {
  switch (type) {
    case 'ssh-ed25519':
    case 'sk-ssh-ed25519@openssh.com': {
      const pk = r.string(`${field}.publicKey`);
      if (pk.length !== 32) r.fail(`${field}.publicKey`, `expected 32 bytes, got ${pk.length}`);
      const publicKey = pk.slice();
      if (type === 'ssh-ed25519') return { type, publicKey };
      return { type, publicKey, application: r.text(`${field}.application`) };
    }
    case 'ssh-rsa': {
      const e = r.mpint(`${field}.e`);
      const n = r.mpint(`${field}.n`);
      const bits = rsaBits(n);
      if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
        r.fail(`${field}.n`, `RSA modulus of ${bits} bits outside ${RSA_MIN_BITS}..${RSA_MAX_BITS}`);
      }
      if (e < 3n || (e & 1n) === 0n) r.fail(`${field}.e`, 'RSA exponent must be odd and at least 3');
      return { type, e, n };
    }
    default: {
      const curveOf = type === 'sk-ecdsa-sha2-nistp256@openssh.com' ? 'nistp256' : CURVE_OF[type];
      const curve = r.text(`${field}.curve`);
      if (curve !== curveOf) r.fail(`${field}.curve`, `curve "${curve}" does not match key type ${type}`);
      const point = r.string(`${field}.point`).slice();
      checkPoint(curveOf, point, `${field}.point`);
      if (type === 'sk-ecdsa-sha2-nistp256@openssh.com') {
        return { type, curve: 'nistp256', point, application: r.text(`${field}.application`) };
      }
      return { type, curve: curveOf, point } as PublicKey;
    }
  }
}

export function writeKeyFields(w: SshWriter, key: PublicKey): void {
  switch (key.type) {
    case 'ssh-ed25519':
      w.string(key.publicKey);
      return;
    case 'sk-ssh-ed25519@openssh.com':
      w.string(key.publicKey).string(key.application);
      return;
    case 'ssh-rsa':
      w.mpint(key.e).mpint(key.n);
      return;
    case 'sk-ecdsa-sha2-nistp256@openssh.com':
      w.string(key.curve).string(key.point).string(key.application);
      return;
    default:
      w.string(key.curve).string(key.point);
  }
}

/** Parses a plain public key blob. A certificate blob is refused: use parseCertificate. */
export function parsePublicKey(blob: Uint8Array, context = 'publicKey'): PublicKey {
  const r = new SshReader(blob, context);
  const type = r.text('type');
  if (type.endsWith('-cert-v01@openssh.com')) {
    throw new CertError('ERR_UNSUPPORTED', `cert-core: ${context} is a certificate (${type}), not a plain key`, {
      where: `${context}.type`,
      what: type,
    });
  }
  if (!isKeyType(type)) {
    throw new CertError('ERR_UNSUPPORTED', `cert-core: unsupported key type "${type}"`, {
      where: `${context}.type`,
      what: type,
    });
  }
  const key = readKeyFields(r, type);
  r.end();
  return key;
}

/** The canonical blob of a plain public key (what fingerprints and KRLs are computed over). */
export function encodePublicKey(key: PublicKey): Uint8Array {
  const w = new SshWriter(key.type === 'ssh-rsa' ? 600 : 128);
  w.string(key.type);
  writeKeyFields(w, key);
  return w.finish();
}

export function publicKeysEqual(a: PublicKey, b: PublicKey): boolean {
  const x = encodePublicKey(a);
  const y = encodePublicKey(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The key a security key signs with, as a plain key, for verification. */
export function plainKeyOf(key: PublicKey): PlainPublicKey {
  switch (key.type) {
    case 'sk-ssh-ed25519@openssh.com':
      return { type: 'ssh-ed25519', publicKey: key.publicKey };
    case 'sk-ecdsa-sha2-nistp256@openssh.com':
      return { type: 'ecdsa-sha2-nistp256', curve: 'nistp256', point: key.point };
    default:
      return key;
  }
}

/** `SHA256:<base64 without padding>` as `ssh-keygen -l` prints it. */
export function fingerprintSha256(crypto: CryptoBackend, key: PublicKey): string {
  return `SHA256:${toBase64(crypto.hash('sha256', encodePublicKey(key)), false)}`;
}

/** Key size in bits as `ssh-keygen -l` prints it. */
export function keyBits(key: PublicKey): number {
  switch (key.type) {
    case 'ssh-rsa':
      return rsaBits(key.n);
    case 'ecdsa-sha2-nistp256':
    case 'sk-ecdsa-sha2-nistp256@openssh.com':
      return 256;
    case 'ecdsa-sha2-nistp384':
      return 384;
    case 'ecdsa-sha2-nistp521':
      return 521;
    default:
      return 256;
  }
}

/** The short key type name `ssh-keygen -l` prints in parentheses (ED25519, ECDSA-SK, RSA ...). */
export function keyTypeLabel(key: PublicKey): string {
  switch (key.type) {
    case 'ssh-ed25519':
      return 'ED25519';
    case 'sk-ssh-ed25519@openssh.com':
      return 'ED25519-SK';
    case 'ssh-rsa':
      return 'RSA';
    case 'sk-ecdsa-sha2-nistp256@openssh.com':
      return 'ECDSA-SK';
    default:
      return 'ECDSA';
  }
}
