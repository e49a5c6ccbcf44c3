import { ed25519 } from '@noble/curves/ed25519.js';
import { p256, p384, p521 } from '@noble/curves/nist.js';
import { sha1 } from '@noble/hashes/legacy.js';
import { sha256, sha384, sha512 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import type { CryptoBackend } from './backend.js';
import type { EcdsaCurve, HashName } from '../keys/types.js';
import { CURVE_OF, CURVE_SIZE } from '../keys/types.js';
import { bigintToBytes } from '../wire/writer.js';
import { bigintFromBytes } from '../wire/reader.js';
import { rsaGenerate, rsaSign, rsaVerify } from './rsa.js';

const HASHES = { sha1, sha256, sha384, sha512 } as const;
export const NOBLE_CURVES = { nistp256: p256, nistp384: p384, nistp521: p521 } as const;

function digest(name: HashName, data: Uint8Array): Uint8Array {
  return HASHES[name](data);
}

function ecdsaFor(curve: EcdsaCurve) {
  return NOBLE_CURVES[curve];
}

/** The portable backend: runs anywhere JavaScript does. */
export const nobleCrypto: CryptoBackend = {
  name: 'noble',
  randomBytes(length) {
    return randomBytes(length);
  },
  hash: digest,
  verify(key, hash, signature, data) {
    try {
      switch (key.type) {
        case 'ssh-ed25519':
          return ed25519.verify(signature, data, key.publicKey, { zip215: false });
        case 'ssh-rsa':
          return rsaVerify(key.n, key.e, hash, digest(hash, data), signature);
        default: {
          const c = ecdsaFor(key.curve);
          // OpenSSH does not normalise S, so high-S signatures are valid.
          return c.verify(signature, digest(hash, data), key.point, { prehash: false, lowS: false });
        }
      }
    } catch {
      return false;
    }
  },
  sign(key, hash, data) {
    switch (key.type) {
      case 'ssh-ed25519':
        return ed25519.sign(data, key.seed);
      case 'ssh-rsa':
        return rsaSign(key, hash, digest(hash, data));
      default: {
        const secret = bigintToBytes(key.d, CURVE_SIZE[key.curve]);
        return ecdsaFor(key.curve).sign(digest(hash, data), secret, { prehash: false, lowS: false });
      }
    }
  },
  generate(type, options = {}) {
    switch (type) {
      case 'ssh-ed25519': {
        const seed = ed25519.utils.randomSecretKey();
        return { type, seed, publicKey: ed25519.getPublicKey(seed) };
      }
      case 'ssh-rsa':
        return rsaGenerate(options.bits ?? 3072, randomBytes);
      default: {
        const curve = CURVE_OF[type];
        const c = ecdsaFor(curve);
        const secret = c.utils.randomSecretKey();
        return { type, curve, point: c.getPublicKey(secret, false), d: bigintFromBytes(secret) };
      }
    }
  },
};
