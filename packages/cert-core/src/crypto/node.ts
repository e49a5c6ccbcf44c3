import * as nc from 'node:crypto';
import type { CryptoBackend } from './backend.js';
import type {
  EcdsaCurve,
  HashName,
  PlainKeyType,
  PlainPublicKey,
  SigningPrivateKey,
} from '../keys/types.js';
import { CURVE_OF, CURVE_SIZE } from '../keys/types.js';
import { bigintToBytes } from '../wire/writer.js';
import { toBase64 } from '../wire/bytes.js';
import { decodePkcs8PrivateKey } from '../keys/pkcs8.js';

const NODE_CURVE: Record<EcdsaCurve, string> = { nistp256: 'P-256', nistp384: 'P-384', nistp521: 'P-521' };

function b64u(b: Uint8Array): string {
  return toBase64(b, false).replace(/\+/g, '-').replace(/\//g, '_');
}
function bigB64u(v: bigint, size?: number): string {
  let hex = v.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  const b = Buffer.from(hex, 'hex');
  return b64u(size === undefined ? b : bigintToBytes(v, size));
}

// KeyObjects are costly to build; cache them. Private keys by identity (WeakMap), public keys
// by their JWK text in a bounded map (CA keys repeat on every certificate verified).
const privateCache = new WeakMap<object, nc.KeyObject>();
const publicCache = new Map<string, nc.KeyObject>();
const PUBLIC_CACHE_MAX = 1024;

function publicJwk(key: PlainPublicKey): nc.JsonWebKey {
  switch (key.type) {
    case 'ssh-ed25519':
      return { kty: 'OKP', crv: 'Ed25519', x: b64u(key.publicKey) };
    case 'ssh-rsa':
      return { kty: 'RSA', n: bigB64u(key.n), e: bigB64u(key.e) };
    default: {
      const size = CURVE_SIZE[key.curve];
      const p = key.point;
      return {
        kty: 'EC',
        crv: NODE_CURVE[key.curve],
        x: b64u(p.subarray(1, 1 + size)),
        y: b64u(p.subarray(1 + size, 1 + 2 * size)),
      };
    }
  }
}

function publicKeyObject(key: PlainPublicKey): nc.KeyObject {
  const jwk = publicJwk(key);
  const id = `${jwk.kty}|${jwk.crv ?? ''}|${jwk.x ?? ''}|${jwk.y ?? ''}|${jwk.n ?? ''}|${jwk.e ?? ''}`;
  let ko = publicCache.get(id);
  if (ko === undefined) {
    ko = nc.createPublicKey({ key: jwk, format: 'jwk' });
    if (publicCache.size >= PUBLIC_CACHE_MAX) publicCache.delete(publicCache.keys().next().value!);
    publicCache.set(id, ko);
  }
  return ko;
}

function privateKeyObject(key: SigningPrivateKey): nc.KeyObject {
  let ko = privateCache.get(key);
  if (ko !== undefined) return ko;
  const pub = publicJwk(key);
  switch (key.type) {
    case 'ssh-ed25519':
      ko = nc.createPrivateKey({ key: { ...pub, d: b64u(key.seed) }, format: 'jwk' });
      break;
    case 'ssh-rsa': {
      const { p, q, d } = key;
      ko = nc.createPrivateKey({
        key: {
          ...pub,
          d: bigB64u(d),
          p: bigB64u(p),
          q: bigB64u(q),
          dp: bigB64u(d % (p - 1n)),
          dq: bigB64u(d % (q - 1n)),
          qi: bigB64u(key.iqmp),
        },
        format: 'jwk',
      });
      break;
    }
    default:
      ko = nc.createPrivateKey({ key: { ...pub, d: bigB64u(key.d, CURVE_SIZE[key.curve]) }, format: 'jwk' });
  }
  privateCache.set(key, ko);
  return ko;
}

function nodeHash(key: PlainPublicKey, hash: HashName): string | null {
  return key.type === 'ssh-ed25519' ? null : hash;
}

// Small random requests (a certificate nonce per signature) are served from a pool filled
// in one call: a system call per 32 bytes was a tenth of the signing time.
const POOL_SIZE = 8192;
const pool = new Uint8Array(POOL_SIZE);
let poolPos = POOL_SIZE;

function randomBytes(length: number): Uint8Array {
  if (length > 256) return new Uint8Array(nc.randomBytes(length));
  if (poolPos + length > POOL_SIZE) {
    nc.randomFillSync(pool);
    poolPos = 0;
  }
  const out = pool.slice(poolPos, poolPos + length);
  // Bytes handed out are wiped from the pool so they can never be handed out twice.
  pool.fill(0, poolPos, poolPos + length);
  poolPos += length;
  return out;
}

export const nodeCrypto: CryptoBackend = {
  name: 'node',
  randomBytes,
  hash(name, data) {
    return new Uint8Array(nc.createHash(name).update(data).digest());
  },
  verify(key, hash, signature, data) {
    try {
      const ko = publicKeyObject(key);
      if (key.type === 'ssh-rsa') {
        // node accepts a short signature; OpenSSH left-pads it, so pad here for equal results.
        const size = Math.ceil(key.n.toString(16).length / 2);
        if (signature.length > size) return false;
        const padded = new Uint8Array(size);
        padded.set(signature, size - signature.length);
        return nc.verify(hash, data, ko, padded);
      }
      if (key.type === 'ssh-ed25519') return nc.verify(null, data, ko, signature);
      return nc.verify(hash, data, { key: ko, dsaEncoding: 'ieee-p1363' }, signature);
    } catch {
      return false;
    }
  },
  sign(key, hash, data) {
    const ko = privateKeyObject(key);
    if (key.type === 'ssh-ed25519' || key.type === 'ssh-rsa') {
      return new Uint8Array(nc.sign(nodeHash(key, hash), data, ko));
    }
    return new Uint8Array(nc.sign(hash, data, { key: ko, dsaEncoding: 'ieee-p1363' }));
  },
  generate(type: PlainKeyType, options = {}) {
    // Keys come out as PKCS#8 DER from the generation call itself and are read with our own
    // decoder. Exporting a freshly generated KeyObject as JWK can deadlock on Node 20.20 (a GC
    // during the export destroys the generation job while the export holds the key's mutex).
    const privateKeyEncoding = { type: 'pkcs8', format: 'der' } as const;
    const publicKeyEncoding = { type: 'spki', format: 'der' } as const;
    let pkcs8: Buffer;
    switch (type) {
      case 'ssh-ed25519':
        pkcs8 = nc.generateKeyPairSync('ed25519', { privateKeyEncoding, publicKeyEncoding }).privateKey;
        break;
      case 'ssh-rsa':
        pkcs8 = nc.generateKeyPairSync('rsa', { modulusLength: options.bits ?? 3072, publicExponent: 65537, privateKeyEncoding, publicKeyEncoding }).privateKey;
        break;
      default:
        pkcs8 = nc.generateKeyPairSync('ec', { namedCurve: NODE_CURVE[CURVE_OF[type]], privateKeyEncoding, publicKeyEncoding }).privateKey;
    }
    const key = decodePkcs8PrivateKey(new Uint8Array(pkcs8), 'generated key');
    if (key.type !== type) throw new Error(`node:crypto generated a ${key.type} key, not ${type}`);
    return key;
  },
};
