import { ed25519 } from '@noble/curves/ed25519.js';
import { CertError } from '../errors.js';
import type { CryptoBackend } from '../crypto/backend.js';
import { NOBLE_CURVES } from '../crypto/noble.js';
import { equalBytes } from '../wire/bytes.js';
import type { EcdsaCurve, PlainKeyType, PrivateKey, SigningPrivateKey } from './types.js';
import { CURVE_OF } from './types.js';
import { RSA_MAX_BITS, RSA_MIN_BITS, rsaBits } from './public-key.js';

/** Smallest RSA key we make. OpenSSH still reads 1024-bit keys; nobody should create one. */
export const RSA_MIN_GENERATE_BITS = 2048;
/** ssh-keygen's default RSA size. */
export const RSA_DEFAULT_BITS = 3072;

const FIXED_SIZE_TYPES: ReadonlySet<string> = new Set<PlainKeyType>([
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
]);

export interface GenerateKeyOptions {
  /** RSA modulus size (default 3072, at least 2048). Ignored for the fixed-size types, as by CryptoBackend.generate. */
  readonly bits?: number;
}

/**
 * A new key pair of `type`, checked for consistency before it is returned: a backend that
 * produced a broken key would otherwise only show it in signatures nobody can verify.
 */
export function generateKey(crypto: CryptoBackend, type: PlainKeyType, options: GenerateKeyOptions = {}): SigningPrivateKey {
  const { bits } = options;
  if (bits !== undefined && !Number.isInteger(bits)) throw new TypeError(`"bits" expected an integer, got ${bits}`);
  if (type === 'ssh-rsa') {
    const size = bits ?? RSA_DEFAULT_BITS;
    if (size < RSA_MIN_GENERATE_BITS || size > RSA_MAX_BITS) {
      throw new CertError(
        'ERR_REFUSED',
        `cert-core: refusing to generate a ${size}-bit RSA key; use ${RSA_MIN_GENERATE_BITS}..${RSA_MAX_BITS} bits`,
        { what: String(size) },
      );
    }
    const key = crypto.generate(type, { bits: size });
    checkKeyPair(key);
    return key;
  }
  if (!FIXED_SIZE_TYPES.has(type)) throw new TypeError(`cannot generate a key of type ${JSON.stringify(type)}`);
  const key = crypto.generate(type);
  checkKeyPair(key);
  return key;
}

/** The Ed25519 public key of a 32-byte seed. */
export function ed25519PublicKey(seed: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(seed);
}

/** The order of the group of `curve`. */
export function curveOrder(curve: EcdsaCurve): bigint {
  return NOBLE_CURVES[curve].Point.Fn.ORDER;
}

/** The uncompressed public point d*G of scalar `d`, which must be in 1..order-1. */
export function ecdsaPublicPoint(curve: EcdsaCurve, d: bigint): Uint8Array {
  return NOBLE_CURVES[curve].Point.BASE.multiply(d).toBytes(false);
}

function mismatch(key: PrivateKey, what: string): never {
  throw new CertError('ERR_MALFORMED', `cert-core: ${key.type} private key: ${what}`, { where: 'privateKey', what });
}

/**
 * Checks that the private half of a key pair belongs to its public half: the Ed25519 public key
 * follows from the seed, the ECDSA point is d*G, and the RSA factors, exponents and CRT
 * coefficient agree with the modulus. Throws ERR_MALFORMED otherwise. Security-key handles hold
 * no secret to check against and always pass.
 *
 * Everything here is bounded: RSA checks are a few multiplications and reductions, no
 * exponentiation, so a hostile key file cannot make this slow.
 */
export function checkKeyPair(key: PrivateKey): void {
  switch (key.type) {
    case 'ssh-ed25519': {
      if (key.seed.length !== 32) mismatch(key, `seed of ${key.seed.length} bytes, expected 32`);
      if (key.publicKey.length !== 32) mismatch(key, `public key of ${key.publicKey.length} bytes, expected 32`);
      if (!equalBytes(ed25519PublicKey(key.seed), key.publicKey)) mismatch(key, 'public key does not match the seed');
      return;
    }
    case 'ecdsa-sha2-nistp256':
    case 'ecdsa-sha2-nistp384':
    case 'ecdsa-sha2-nistp521': {
      if (key.curve !== CURVE_OF[key.type]) mismatch(key, `curve ${key.curve} does not match the type`);
      const n = curveOrder(key.curve);
      if (key.d < 1n || key.d >= n) mismatch(key, 'private scalar outside 1..order-1');
      if (!equalBytes(ecdsaPublicPoint(key.curve, key.d), key.point)) mismatch(key, 'public point is not d*G');
      return;
    }
    case 'ssh-rsa': {
      const { n, e, d, p, q, iqmp } = key;
      const bits = rsaBits(n);
      if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) mismatch(key, `modulus of ${bits} bits outside ${RSA_MIN_BITS}..${RSA_MAX_BITS}`);
      if (e < 3n || (e & 1n) === 0n) mismatch(key, 'public exponent must be odd and at least 3');
      if (p <= 1n || q <= 1n || p * q !== n) mismatch(key, 'p * q is not the modulus');
      if (d <= 1n || d >= n) mismatch(key, 'private exponent outside 2..n-1');
      if ((e * d) % (p - 1n) !== 1n || (e * d) % (q - 1n) !== 1n) mismatch(key, 'e * d is not 1 mod p-1 and q-1');
      if (iqmp <= 0n || iqmp >= p || (iqmp * q) % p !== 1n) mismatch(key, 'iqmp is not q^-1 mod p');
      return;
    }
    default:
      return;
  }
}

/** Whether `key` holds a secret this package can sign with (security-key handles cannot). */
export function isSigningPrivateKey(key: PrivateKey): key is SigningPrivateKey {
  return !key.type.startsWith('sk-');
}
