import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAuthError } from '../src/errors.js';
import {
  DEFAULT_SCRYPT_PARAMS,
  decodePasswordHash,
  hashPassword,
  needsRehash,
  verifyPassword,
} from '../src/identity/password.js';

const FAST = { log2N: 10, r: 8, p: 1 };
const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64').replace(/=+$/, '');

describe('password hashing (scrypt)', () => {
  test('RFC 7914 section 12 vector 3 verifies in our encoded form', async () => {
    // scrypt(P="pleaseletmein", S="SodiumChloride", N=16384, r=8, p=1): first 32 bytes of the
    // 64-byte output printed in RFC 7914.
    const dk = '7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2';
    const encoded = `$scrypt$ln=14,r=8,p=1$${Buffer.from('SodiumChloride').toString('base64').replace(/=+$/, '')}$${b64(dk)}`;
    assert.equal(await verifyPassword('pleaseletmein', encoded), true);
    assert.equal(await verifyPassword('pleaseletmeim', encoded), false);
  });

  test('default parameters: self-describing form, verifies, and is salted', async () => {
    assert.deepEqual(DEFAULT_SCRYPT_PARAMS, { log2N: 15, r: 8, p: 1 });
    const a = await hashPassword('correct horse battery staple');
    const b = await hashPassword('correct horse battery staple');
    assert.match(a, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.notEqual(a, b);
    assert.equal(await verifyPassword('correct horse battery staple', a), true);
    assert.equal(await verifyPassword('correct horse battery stapl', a), false);
    assert.equal(await verifyPassword('', a), false);
    assert.deepEqual(decodePasswordHash(a).params, DEFAULT_SCRYPT_PARAMS);
  });

  test('parameters are configurable and a hash remembers its own', async () => {
    const weak = await hashPassword('some long passphrase', FAST);
    assert.match(weak, /^\$scrypt\$ln=10,r=8,p=1\$/);
    assert.equal(await verifyPassword('some long passphrase', weak), true);
    assert.equal(needsRehash(weak), true);
    assert.equal(needsRehash(weak, FAST), false);
    const strong = await hashPassword('some long passphrase', { log2N: 11, r: 8, p: 2 });
    assert.equal(await verifyPassword('some long passphrase', strong), true);
  });

  test('a fixed salt gives a deterministic hash', async () => {
    const salt = new Uint8Array(16).fill(7);
    assert.equal(await hashPassword('pw-pw-pw-pw-pw', FAST, salt), await hashPassword('pw-pw-pw-pw-pw', FAST, salt));
  });

  test('composed and decomposed accents are the same password (NFC)', async () => {
    const composed = 'caf\u00e9 au lait s\u00fbr';
    const decomposed = 'cafe\u0301 au lait su\u0302r';
    assert.notEqual(composed, decomposed);
    const h = await hashPassword(composed, FAST);
    assert.equal(await verifyPassword(decomposed, h), true);
  });

  test('malformed stored hashes throw ERR_BAD_REQUEST without echoing the hash', async () => {
    const good = await hashPassword('x'.repeat(12), FAST);
    const cases = [
      '',
      'plaintext',
      good.replace('$scrypt$', '$argon2id$'),
      good.replace('ln=10', 'ln=ten'),
      good.slice(0, -1), // hash one character short
      `${good}A`, // trailing bytes
      good.replace(/\$[^$]+\$([^$]+)$/, '$$$1'), // empty salt
      good.replace(',p=1', ''), // a parameter missing
    ];
    for (const c of cases) {
      await assert.rejects(verifyPassword('x'.repeat(12), c), (e: unknown) => {
        assert.ok(isAuthError(e, 'ERR_BAD_REQUEST'), `${JSON.stringify(c)}: ${String(e)}`);
        if (c.length > 20) assert.ok(!e.message.includes(c.split('$').pop()!), 'message repeats the hash');
        return true;
      });
    }
  });

  test('out-of-range parameters are refused, stored or requested', async () => {
    const good = await hashPassword('y'.repeat(12), FAST);
    // A planted hash asking for 2^25 * 8 * 128 bytes must not be attempted.
    await assert.rejects(verifyPassword('y'.repeat(12), good.replace('ln=10', 'ln=25')), (e: unknown) => isAuthError(e, 'ERR_CONFIG'));
    await assert.rejects(verifyPassword('y'.repeat(12), good.replace('r=8', 'r=99')), (e: unknown) => isAuthError(e, 'ERR_CONFIG'));
    await assert.rejects(hashPassword('pw', { log2N: 9, r: 8, p: 1 }), (e: unknown) => isAuthError(e, 'ERR_CONFIG'));
    await assert.rejects(hashPassword('pw', { log2N: 15.5, r: 8, p: 1 }), (e: unknown) => isAuthError(e, 'ERR_CONFIG'));
    await assert.rejects(hashPassword('pw', FAST, new Uint8Array(8)), TypeError);
    await assert.rejects(hashPassword(undefined as unknown as string), TypeError);
  });
});
