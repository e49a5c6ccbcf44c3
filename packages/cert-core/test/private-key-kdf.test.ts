// Blowfish and bcrypt_pbkdf, the KDF of passphrase-protected OpenSSH keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlowfishState, blowfishInitialState, piFractionWords } from '../src/keys/blowfish.js';
import { bcryptPbkdf } from '../src/keys/bcrypt-pbkdf.js';
import { bytesToHex, hexToBytes } from '../src/wire/writer.js';
import { utf8 } from '../src/wire/bytes.js';

test('the Blowfish initial state is the hexadecimal fraction of pi', () => {
  const s = blowfishInitialState();
  assert.equal(s.length, 18 + 4 * 256);
  // Schneier, "Description of a New Variable-Length Key, 64-Bit Block Cipher" (1993): the
  // P-array starts 243f6a88 85a308d3, S-box 1 starts d1310ba6, S-box 4 ends 3ac372e6.
  assert.equal(s[0], 0x243f6a88);
  assert.equal(s[1], 0x85a308d3);
  assert.equal(s[17], 0x8979fb1b);
  assert.equal(s[18], 0xd1310ba6);
  assert.equal(s[18 + 255], 0x6e85076a);
  assert.equal(s[s.length - 1], 0x3ac372e6);
  // Computed once: the same array every time.
  assert.equal(blowfishInitialState(), s);
  // Fewer digits are a prefix of more digits (the guard bits absorb truncation).
  assert.deepEqual(piFractionWords(5), s.subarray(0, 5));
  assert.throws(() => piFractionWords(-1), TypeError);
});

test('Blowfish encrypts the classic test vectors', () => {
  // Eric Young's vectors.txt (https://www.schneier.com/wp-content/uploads/2015/12/vectors2.txt):
  // key, plaintext, ciphertext.
  const vectors: [string, string, string][] = [
    ['0000000000000000', '0000000000000000', '4ef997456198dd78'],
    ['ffffffffffffffff', 'ffffffffffffffff', '51866fd5b85ecb8a'],
    ['3000000000000000', '1000000000000001', '7d856f9a613063f2'],
    ['0123456789abcdef', '1111111111111111', '61f9c3802281b096'],
    ['fedcba9876543210', '0123456789abcdef', '0aceab0fc6a0a28d'],
  ];
  for (const [key, plain, cipher] of vectors) {
    const bf = new BlowfishState();
    bf.expand(hexToBytes(key));
    const p = hexToBytes(plain);
    const words = new Uint32Array([new DataView(p.buffer).getUint32(0), new DataView(p.buffer).getUint32(4)]);
    bf.encryptWords(words);
    assert.equal(words[0]!.toString(16).padStart(8, '0') + words[1]!.toString(16).padStart(8, '0'), cipher, key);
  }
  assert.throws(() => new BlowfishState().expand(new Uint8Array(0)), TypeError);
  assert.throws(() => new BlowfishState().encryptWords(new Uint32Array(3)), TypeError);
});

test('bcrypt_pbkdf matches the OpenBSD vectors', () => {
  // OpenBSD regress/lib/libutil/bcrypt_pbkdf, as listed in RustCrypto/password-hashes
  // bcrypt-pbkdf/tests/test_vectors.rs.
  const vectors: [string, string, number, string][] = [
    ['password', 'salt', 4, '5bbf0cc293587f1c3635555c27796598d47e579071bf427e9d8fbe842aba34d9'],
    ['password', '\0', 4, 'c12b566235eee04c212598970a579a67'],
    ['\0', 'salt', 4, '6051be18c2f4f82cbf0efee5471b4bb9'],
    ['password\0', 'salt\0', 4, '7410e44cf4fa07bfaac8a928b1727fac001375e7bf7384370f48efd121743050'],
    ['pass\0wor', 'sa\0l', 4, 'c2bffd9db38f6569efef4372f4de83c0'],
    ['pass\0word', 'sa\0lt', 4, '4ba4ac3925c0e8d7f0cdb6bb1684a56f'],
    [
      'password',
      'salt',
      8,
      'e1367ec5151a33faac4cc1c144cd23fa15d5548493ecc99b9b5d9c0d3b27bec76227ea66088b849b20ab7aa478010246e74bba51723fefa9f9474d6508845e8d',
    ],
    ['password', 'salt', 42, '833cf0dcf56db65608e8f0dc0ce882bd'],
    [
      'Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.',
      'salis\0',
      8,
      '10978b07253df57f71a162eb0e8ad30a',
    ],
  ];
  for (const [pass, salt, rounds, out] of vectors) {
    assert.equal(bytesToHex(bcryptPbkdf(utf8(pass), utf8(salt), out.length / 2, rounds)), out, `${pass} ${rounds}`);
  }
});

test('bcrypt_pbkdf spreads output with a stride: a longer key is not an extension of a shorter one', () => {
  const a = bcryptPbkdf(utf8('pw'), utf8('salt'), 32, 2);
  const b = bcryptPbkdf(utf8('pw'), utf8('salt'), 48, 2);
  // With 48 bytes the stride is 2, so block 1 lands on even offsets.
  for (let i = 0; i < 24; i++) assert.equal(b[2 * i], a[i]);
  assert.notDeepEqual(b.subarray(0, 32), a);
});

test("bcrypt_pbkdf at ssh-keygen's default 16 rounds takes well under a second", () => {
  bcryptPbkdf(utf8('warm'), utf8('up'), 48, 1);
  const t = performance.now();
  bcryptPbkdf(utf8('correct horse'), new Uint8Array(16).fill(7), 48, 16);
  const ms = performance.now() - t;
  assert.ok(ms < 800, `took ${ms.toFixed(0)} ms`);
});

test('bcrypt_pbkdf refuses what OpenSSH refuses, as misuse', () => {
  const p = utf8('p');
  const s = utf8('s');
  assert.throws(() => bcryptPbkdf(new Uint8Array(0), s, 32, 1), TypeError);
  assert.throws(() => bcryptPbkdf(p, new Uint8Array(0), 32, 1), TypeError);
  assert.throws(() => bcryptPbkdf(p, s, 0, 1), TypeError);
  assert.throws(() => bcryptPbkdf(p, s, 1025, 1), TypeError);
  assert.throws(() => bcryptPbkdf(p, s, 32, 0), TypeError);
  assert.throws(() => bcryptPbkdf(p, s, 32, 1.5), TypeError);
  assert.equal(bcryptPbkdf(p, s, 1024, 1).length, 1024);
});
