/**
 * RSA PKCS#1 v1.5 (RFC 8017) over bigint, for the portable backend: @noble has no RSA, and a
 * browser's WebCrypto is asynchronous. Slow next to node:crypto, which the servers use.
 */
import type { HashName, RsaPrivateKey } from '../keys/types.js';
import { bigintFromBytes } from '../wire/reader.js';
import { bigintToBytes, hexToBytes } from '../wire/writer.js';
import { equalBytes } from '../wire/bytes.js';

// DER DigestInfo prefixes, RFC 8017 section 9.2 note 1.
const DIGEST_INFO: Record<HashName, Uint8Array> = {
  sha1: hexToBytes('3021300906052b0e03021a05000414'),
  sha256: hexToBytes('3031300d060960864801650304020105000420'),
  sha384: hexToBytes('3041300d060960864801650304020205000430'),
  sha512: hexToBytes('3051300d060960864801650304020305000440'),
};

export function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  let b = base % mod;
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % mod;
    b = (b * b) % mod;
    e >>= 1n;
  }
  return result;
}

export function modInverse(a: bigint, m: bigint): bigint {
  let [oldR, r] = [((a % m) + m) % m, m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  if (oldR !== 1n) throw new RangeError('not invertible');
  return ((oldS % m) + m) % m;
}

export function byteLength(n: bigint): number {
  return Math.ceil(n.toString(16).length / 2);
}

function encodedMessage(hash: HashName, digest: Uint8Array, k: number): Uint8Array | undefined {
  const t = new Uint8Array(DIGEST_INFO[hash].length + digest.length);
  t.set(DIGEST_INFO[hash]);
  t.set(digest, DIGEST_INFO[hash].length);
  if (k < t.length + 11) return undefined;
  const em = new Uint8Array(k).fill(0xff);
  em[0] = 0;
  em[1] = 1;
  em[k - t.length - 1] = 0;
  em.set(t, k - t.length);
  return em;
}

export function rsaVerify(
  n: bigint,
  e: bigint,
  hash: HashName,
  digest: Uint8Array,
  signature: Uint8Array,
): boolean {
  const k = byteLength(n);
  if (signature.length > k) return false;
  const s = bigintFromBytes(signature);
  if (s >= n) return false;
  const em = encodedMessage(hash, digest, k);
  if (em === undefined) return false;
  return equalBytes(bigintToBytes(modPow(s, e, n), k), em);
}

export function rsaSign(key: RsaPrivateKey, hash: HashName, digest: Uint8Array): Uint8Array {
  const k = byteLength(key.n);
  const em = encodedMessage(hash, digest, k);
  if (em === undefined) throw new RangeError('RSA modulus too small for this hash');
  const m = bigintFromBytes(em);
  // CRT: m1 = m^dp mod p, m2 = m^dq mod q, h = qinv (m1 - m2) mod p, s = m2 + h q.
  const { p, q, d, iqmp } = key;
  const m1 = modPow(m, d % (p - 1n), p);
  const m2 = modPow(m, d % (q - 1n), q);
  const h = (((m1 - m2) % p) + p) % p * iqmp % p;
  const s = m2 + h * q;
  return bigintToBytes(s, k);
}

const SMALL_PRIMES: number[] = [];
for (let i = 3; SMALL_PRIMES.length < 300; i += 2) {
  if (SMALL_PRIMES.every((p) => i % p !== 0)) SMALL_PRIMES.push(i);
}

function isProbablePrime(n: bigint, random: (len: number) => Uint8Array, rounds = 40): boolean {
  for (const p of SMALL_PRIMES) if (n % BigInt(p) === 0n) return n === BigInt(p);
  let d = n - 1n;
  let r = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    r++;
  }
  const len = byteLength(n);
  for (let i = 0; i < rounds; i++) {
    const a = (bigintFromBytes(random(len)) % (n - 3n)) + 2n;
    let x = modPow(a, d, n);
    if (x === 1n || x === n - 1n) continue;
    let composite = true;
    for (let j = 1; j < r; j++) {
      x = (x * x) % n;
      if (x === n - 1n) {
        composite = false;
        break;
      }
    }
    if (composite) return false;
  }
  return true;
}

function randomPrime(bits: number, random: (len: number) => Uint8Array): bigint {
  const len = Math.ceil(bits / 8);
  for (;;) {
    const b = random(len);
    let c = bigintFromBytes(b) >> BigInt(len * 8 - bits);
    // Top two bits set so p*q has exactly 2*bits bits; odd.
    c |= (3n << BigInt(bits - 2)) | 1n;
    if ((c - 1n) % 65537n !== 0n && isProbablePrime(c, random)) return c;
  }
}

export function rsaGenerate(bits: number, random: (len: number) => Uint8Array): RsaPrivateKey {
  const e = 65537n;
  for (;;) {
    const p0 = randomPrime(bits >> 1, random);
    const q0 = randomPrime(bits - (bits >> 1), random);
    if (p0 === q0) continue;
    const [p, q] = p0 > q0 ? [p0, q0] : [q0, p0];
    const n = p * q;
    const phi = (p - 1n) * (q - 1n);
    const d = modInverse(e, phi);
    return { type: 'ssh-rsa', n, e, d, p, q, iqmp: modInverse(q, p) };
  }
}
