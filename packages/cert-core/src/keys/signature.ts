import { CertError, malformed } from '../errors.js';
import type { CryptoBackend } from '../crypto/backend.js';
import { SshReader } from '../wire/reader.js';
import { SshWriter, bigintToBytes } from '../wire/writer.js';
import { bigintFromBytes } from '../wire/reader.js';
import { concatBytes, utf8 } from '../wire/bytes.js';
import type { HashName, PublicKey, SignatureAlgorithm, SigningPrivateKey, SshSignature } from './types.js';
import { CURVE_HASH, CURVE_SIZE } from './types.js';
import { plainKeyOf } from './public-key.js';

const SIGNATURE_ALGORITHMS: readonly SignatureAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-256',
  'rsa-sha2-512',
  'ssh-rsa',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

export function isSignatureAlgorithm(s: string): s is SignatureAlgorithm {
  return (SIGNATURE_ALGORITHMS as readonly string[]).includes(s);
}

/** The signature algorithms a key of this type may produce (OpenSSH sshkey_check_sigtype). */
export function signatureAlgorithmsFor(key: PublicKey): readonly SignatureAlgorithm[] {
  return key.type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [key.type];
}

function rsaHash(alg: SignatureAlgorithm): HashName {
  return alg === 'rsa-sha2-512' ? 'sha512' : alg === 'rsa-sha2-256' ? 'sha256' : 'sha1';
}

/**
 * Parses an SSH signature blob. ECDSA `(mpint r, mpint s)` becomes fixed-size `r || s`; an RSA
 * signature is kept as sent (the verifier left-pads a short one, as OpenSSH does).
 */
export function parseSignature(blob: Uint8Array, context = 'signature'): SshSignature {
  const r = new SshReader(blob, context);
  const algorithm = r.text('algorithm');
  if (!isSignatureAlgorithm(algorithm)) {
    throw new CertError('ERR_UNSUPPORTED', `cert-core: unsupported signature algorithm "${algorithm}"`, {
      where: `${context}.algorithm`,
      what: algorithm,
    });
  }
  const body = r.string('bytes');
  let bytes: Uint8Array;
  switch (algorithm) {
    case 'ssh-ed25519':
    case 'sk-ssh-ed25519@openssh.com':
      if (body.length !== 64) malformed(`${context}.bytes`, `Ed25519 signature of ${body.length} bytes, expected 64`);
      bytes = body.slice();
      break;
    case 'rsa-sha2-256':
    case 'rsa-sha2-512':
    case 'ssh-rsa':
      if (body.length === 0) malformed(`${context}.bytes`, 'empty RSA signature');
      bytes = body.slice();
      break;
    default: {
      const curve = algorithm === 'sk-ecdsa-sha2-nistp256@openssh.com' ? 'nistp256' : (algorithm.slice(11) as 'nistp256');
      const size = CURVE_SIZE[curve];
      const inner = new SshReader(body, `${context}.bytes`);
      const rr = inner.mpint('r', size + 1);
      const ss = inner.mpint('s', size + 1);
      inner.end();
      const limit = 1n << BigInt(size * 8);
      if (rr === 0n || ss === 0n || rr >= limit || ss >= limit) malformed(`${context}.bytes`, 'ECDSA r or s out of range');
      bytes = concatBytes(bigintToBytes(rr, size), bigintToBytes(ss, size));
    }
  }
  if (algorithm.startsWith('sk-')) {
    const flags = r.byte('flags');
    const counter = r.uint32('counter');
    r.end();
    return { algorithm, bytes, sk: { flags, counter } };
  }
  r.end();
  return { algorithm, bytes };
}

export function encodeSignature(sig: SshSignature): Uint8Array {
  const w = new SshWriter(sig.bytes.length + 64);
  w.string(sig.algorithm);
  if (sig.algorithm.startsWith('ecdsa-') || sig.algorithm === 'sk-ecdsa-sha2-nistp256@openssh.com') {
    const half = sig.bytes.length / 2;
    w.nested((x) =>
      x.mpint(bigintFromBytes(sig.bytes.subarray(0, half))).mpint(bigintFromBytes(sig.bytes.subarray(half))),
    );
  } else {
    w.string(sig.bytes);
  }
  if (sig.sk) w.byte(sig.sk.flags).uint32(sig.sk.counter);
  return w.finish();
}

/**
 * Verifies `sig` over `data` with `key`. False when the signature does not verify or its
 * algorithm cannot come from this key type; only malformed input throws (in parseSignature).
 */
export function verifySignature(crypto: CryptoBackend, key: PublicKey, sig: SshSignature, data: Uint8Array): boolean {
  if (!signatureAlgorithmsFor(key).includes(sig.algorithm)) return false;
  const plain = plainKeyOf(key);
  switch (key.type) {
    case 'ssh-ed25519':
      return crypto.verify(plain, 'sha512', sig.bytes, data);
    case 'ssh-rsa':
      return crypto.verify(plain, rsaHash(sig.algorithm), sig.bytes, data);
    case 'sk-ssh-ed25519@openssh.com':
    case 'sk-ecdsa-sha2-nistp256@openssh.com': {
      if (!sig.sk) return false;
      // FIDO signs sha256(application) || flags || counter || sha256(message) (PROTOCOL.u2f).
      const counter = new Uint8Array(4);
      new DataView(counter.buffer).setUint32(0, sig.sk.counter);
      const signed = concatBytes(
        crypto.hash('sha256', utf8(key.application)),
        Uint8Array.of(sig.sk.flags),
        counter,
        crypto.hash('sha256', data),
      );
      return crypto.verify(plain, 'sha256', sig.bytes, signed);
    }
    default:
      return crypto.verify(plain, CURVE_HASH[key.curve], sig.bytes, data);
  }
}

/** Signs `data`. RSA defaults to rsa-sha2-512; SHA-1 RSA (`ssh-rsa`) is refused. */
export function signData(
  crypto: CryptoBackend,
  key: SigningPrivateKey,
  data: Uint8Array,
  algorithm?: SignatureAlgorithm,
): SshSignature {
  const alg = algorithm ?? (key.type === 'ssh-rsa' ? 'rsa-sha2-512' : key.type);
  if (alg === 'ssh-rsa') {
    throw new CertError('ERR_REFUSED', 'cert-core: refusing to sign with ssh-rsa (SHA-1); use rsa-sha2-256 or rsa-sha2-512');
  }
  if (!signatureAlgorithmsFor(key).includes(alg)) {
    throw new CertError('ERR_ALGORITHM_MISMATCH', `cert-core: a ${key.type} key cannot sign as ${alg}`, { what: alg });
  }
  const hash: HashName =
    key.type === 'ssh-rsa' ? rsaHash(alg) : key.type === 'ssh-ed25519' ? 'sha512' : CURVE_HASH[key.curve];
  return { algorithm: alg, bytes: crypto.sign(key, hash, data) };
}

/** Something that signs with a CA key: a key in memory here, an HSM in auth later. */
export interface Signer {
  readonly publicKey: PublicKey;
  sign(data: Uint8Array, algorithm?: SignatureAlgorithm): SshSignature;
}

export function keySigner(crypto: CryptoBackend, key: SigningPrivateKey): Signer {
  const publicKey = publicPart(key);
  return { publicKey, sign: (data, algorithm) => signData(crypto, key, data, algorithm) };
}

/** The public half of a private key, without secret fields. */
export function publicPart(key: PublicKey): PublicKey {
  switch (key.type) {
    case 'ssh-ed25519':
      return { type: key.type, publicKey: key.publicKey };
    case 'ssh-rsa':
      return { type: key.type, e: key.e, n: key.n };
    case 'sk-ssh-ed25519@openssh.com':
      return { type: key.type, publicKey: key.publicKey, application: key.application };
    case 'sk-ecdsa-sha2-nistp256@openssh.com':
      return { type: key.type, curve: key.curve, point: key.point, application: key.application };
    default:
      return { type: key.type, curve: key.curve, point: key.point };
  }
}

