// The contract both crypto backends must satisfy, run against each, plus cross-checks:
// what one signs the other verifies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import type { CryptoBackend } from '../src/crypto/backend.js';
import type { PlainKeyType } from '../src/keys/types.js';
import { publicPart, signData, verifySignature, encodeSignature, parseSignature } from '../src/keys/signature.js';
import { utf8 } from '../src/wire/bytes.js';
import { bytesToHex } from '../src/wire/writer.js';
import { CertError } from '../src/errors.js';

const TYPES: PlainKeyType[] = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'];
const BACKENDS: CryptoBackend[] = [nodeCrypto, nobleCrypto];

test('hashes agree between backends and with known vectors', () => {
  // FIPS 180 "abc" vectors.
  const abc = utf8('abc');
  const want = {
    sha1: 'a9993e364706816aba3e25717850c26c9cd0d89d',
    sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  };
  for (const b of BACKENDS) {
    assert.equal(bytesToHex(b.hash('sha1', abc)), want.sha1);
    assert.equal(bytesToHex(b.hash('sha256', abc)), want.sha256);
    assert.equal(bytesToHex(b.hash('sha512', abc)), bytesToHex(nodeCrypto.hash('sha512', abc)));
    assert.equal(bytesToHex(b.hash('sha384', abc)), bytesToHex(nodeCrypto.hash('sha384', abc)));
    assert.equal(b.randomBytes(32).length, 32);
    assert.notDeepEqual(b.randomBytes(16), b.randomBytes(16));
  }
});

for (const signer of BACKENDS) {
  for (const type of TYPES) {
    test(`${signer.name} signs ${type}; both backends verify; tampering is caught`, () => {
      const key = signer.generate(type, { bits: 2048 });
      const data = utf8('portcullis');
      const algs = type === 'ssh-rsa' ? (['rsa-sha2-256', 'rsa-sha2-512'] as const) : [undefined];
      for (const alg of algs) {
        const sig = signData(signer, key, data, alg);
        const blob = encodeSignature(sig);
        const back = parseSignature(blob);
        assert.deepEqual(encodeSignature(back), blob);
        for (const verifier of BACKENDS) {
          assert.equal(verifySignature(verifier, publicPart(key), back, data), true, `${verifier.name} verify`);
          assert.equal(verifySignature(verifier, publicPart(key), back, utf8('portcullit')), false);
          const flipped = { ...back, bytes: back.bytes.map((x, i) => (i === 5 ? x ^ 1 : x)) };
          assert.equal(verifySignature(verifier, publicPart(key), flipped, data), false);
        }
      }
    });
  }
}

test('ed25519 signatures are deterministic and identical across backends', () => {
  const key = nodeCrypto.generate('ssh-ed25519');
  const data = utf8('same bytes');
  assert.deepEqual(nodeCrypto.sign(key, 'sha512', data), nobleCrypto.sign(key, 'sha512', data));
});

test('RSA PKCS#1 v1.5 signatures are identical across backends', () => {
  const key = nodeCrypto.generate('ssh-rsa', { bits: 2048 });
  const data = utf8('same bytes');
  for (const h of ['sha256', 'sha512'] as const) {
    assert.deepEqual(nodeCrypto.sign(key, h, data), nobleCrypto.sign(key, h, data));
  }
});

test('SHA-1 RSA signing is refused; an algorithm foreign to the key is refused', () => {
  const rsa = nodeCrypto.generate('ssh-rsa', { bits: 2048 });
  assert.throws(() => signData(nodeCrypto, rsa, utf8('x'), 'ssh-rsa'), (e: unknown) => e instanceof CertError && e.code === 'ERR_REFUSED');
  const ed = nodeCrypto.generate('ssh-ed25519');
  assert.throws(() => signData(nodeCrypto, ed, utf8('x'), 'rsa-sha2-256'), (e: unknown) => e instanceof CertError && e.code === 'ERR_ALGORITHM_MISMATCH');
  // A valid Ed25519 signature presented under an RSA key's name does not verify.
  const sig = signData(nodeCrypto, ed, utf8('x'));
  assert.equal(verifySignature(nodeCrypto, publicPart(rsa), sig, utf8('x')), false);
});

test('a high-S ECDSA signature (which OpenSSH accepts) verifies on both backends', () => {
  const key = nodeCrypto.generate('ecdsa-sha2-nistp256');
  const data = utf8('malleable');
  const sig = signData(nodeCrypto, key, data);
  const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const s = BigInt('0x' + bytesToHex(sig.bytes.subarray(32)));
  const flippedS = (n - s).toString(16).padStart(64, '0');
  const other = { ...sig, bytes: Uint8Array.from([...sig.bytes.subarray(0, 32), ...Buffer.from(flippedS, 'hex')]) };
  for (const b of BACKENDS) {
    assert.equal(verifySignature(b, publicPart(key), sig, data), true);
    assert.equal(verifySignature(b, publicPart(key), other, data), true);
  }
});
