// Corrupt private key files: a table of specific breakages with the code each must give, then
// fast-check truncations and mutations that may only ever end in CertError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import type { CryptoBackend } from '../src/crypto/backend.js';
import { CertError, isCertError } from '../src/errors.js';
import { decodeOpenSshPrivateKey, encodeOpenSshPrivateKey, parsePrivateKey } from '../src/keys/private-key.js';
import type { ParsePrivateKeyOptions } from '../src/keys/private-key.js';
import { decodePkcs8PrivateKey } from '../src/keys/pkcs8.js';
import { checkKeyPair, generateKey } from '../src/keys/generate.js';
import { encodePublicKey } from '../src/keys/public-key.js';
import { publicPart } from '../src/keys/signature.js';
import { SshWriter } from '../src/wire/writer.js';
import { SshReader } from '../src/wire/reader.js';
import { toBase64, utf8 } from '../src/wire/bytes.js';
import type { PlainKeyType, PrivateKey, SigningPrivateKey } from '../src/keys/types.js';
import * as nc from 'node:crypto';

const TYPES: PlainKeyType[] = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'];

function armour(blob: Uint8Array, label = 'OPENSSH PRIVATE KEY'): string {
  const b64 = toBase64(blob).match(/.{1,70}/g)?.join('\n') ?? '';
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Parses and reports the outcome: the key, or the CertError code. Anything else fails. */
function outcome(f: () => { key: PrivateKey }): PrivateKey | CertError {
  try {
    return f().key;
  } catch (e) {
    if (e instanceof CertError) return e;
    throw new Error(`escaped as ${(e as Error)?.constructor?.name}: ${String(e)}`, { cause: e });
  }
}

// --- A hand-assembled file: every field can be replaced -----------------------------------

interface Parts {
  magic: Uint8Array;
  cipher: string;
  kdf: string;
  kdfOptions: Uint8Array;
  count: number;
  publicBlob: Uint8Array;
  check1: number;
  check2: number;
  type: string;
  fields: (w: SshWriter) => void;
  comment: Uint8Array;
  padding: (n: number) => number[];
  trailing: Uint8Array;
  lengthDelta: number;
}

function ed25519Parts(key: SigningPrivateKey & { type: 'ssh-ed25519' }): Parts {
  const sk = new Uint8Array([...key.seed, ...key.publicKey]);
  return {
    magic: utf8('openssh-key-v1\0'),
    cipher: 'none',
    kdf: 'none',
    kdfOptions: new Uint8Array(0),
    count: 1,
    publicBlob: encodePublicKey(publicPart(key)),
    check1: 0x01020304,
    check2: 0x01020304,
    type: 'ssh-ed25519',
    fields: (w) => w.string(key.publicKey).string(sk),
    comment: utf8('comment'),
    padding: (n) => Array.from({ length: n }, (_, i) => i + 1),
    trailing: new Uint8Array(0),
    lengthDelta: 0,
  };
}

function assemble(p: Parts): Uint8Array {
  const s = new SshWriter();
  s.uint32(p.check1).uint32(p.check2).string(p.type);
  p.fields(s);
  s.string(p.comment);
  const padLength = (8 - (s.length % 8)) % 8;
  for (const b of p.padding(padLength)) s.byte(b);
  const section = s.finish();
  const w = new SshWriter();
  w.raw(p.magic).string(p.cipher).string(p.kdf).string(p.kdfOptions).uint32(p.count).string(p.publicBlob);
  w.uint32(section.length + p.lengthDelta).raw(section).raw(p.trailing);
  return w.finish();
}

const ED = generateKey(nodeCrypto, 'ssh-ed25519') as SigningPrivateKey & { type: 'ssh-ed25519' };
const OTHER_ED = generateKey(nodeCrypto, 'ssh-ed25519') as SigningPrivateKey & { type: 'ssh-ed25519' };
const EC = generateKey(nodeCrypto, 'ecdsa-sha2-nistp256') as SigningPrivateKey & { type: 'ecdsa-sha2-nistp256' };
const RSA = generateKey(nodeCrypto, 'ssh-rsa', { bits: 2048 }) as SigningPrivateKey & { type: 'ssh-rsa' };

test('the hand-assembled file is what our writer makes, so each breakage below is the only fault', () => {
  const fixed: CryptoBackend = { ...nodeCrypto, randomBytes: () => new Uint8Array([1, 2, 3, 4]) };
  assert.deepEqual(assemble(ed25519Parts(ED)), encodeOpenSshPrivateKey(ED, { crypto: fixed, comment: 'comment' }));
  assert.deepEqual(parsePrivateKey(armour(assemble(ed25519Parts(ED)))).key, ED);
});

test('a table of corrupt OpenSSH files, each with its error code', () => {
  const bcryptOptions = (salt: Uint8Array, rounds: number, extra: number[] = []) =>
    new SshWriter().string(salt).uint32(rounds).raw(new Uint8Array(extra)).finish();
  const ecFields = (d: bigint) => (w: SshWriter) => w.string(EC.curve).string(EC.point).mpint(d);
  const rsaFields = (over: Partial<Record<'p' | 'q' | 'd' | 'iqmp', bigint>>) => (w: SshWriter) =>
    w.mpint(RSA.n).mpint(RSA.e).mpint(over.d ?? RSA.d).mpint(over.iqmp ?? RSA.iqmp).mpint(over.p ?? RSA.p).mpint(over.q ?? RSA.q);
  const cases: [string, Partial<Parts>, string, RegExp?][] = [
    ['bad magic', { magic: utf8('openssh-key-v2\0') }, 'ERR_MALFORMED', /magic/],
    ['short magic', { magic: utf8('openssh') }, 'ERR_MALFORMED'],
    ['3des-cbc', { cipher: '3des-cbc', kdf: 'bcrypt', kdfOptions: bcryptOptions(new Uint8Array(16), 1) }, 'ERR_UNSUPPORTED', /3des-cbc/],
    ['unknown KDF', { kdf: 'scrypt' }, 'ERR_UNSUPPORTED', /scrypt/],
    ['cipher without KDF', { cipher: 'aes256-ctr' }, 'ERR_MALFORMED'],
    ['KDF without cipher', { kdf: 'bcrypt', kdfOptions: bcryptOptions(new Uint8Array(16), 1) }, 'ERR_MALFORMED'],
    ['options for KDF none', { kdfOptions: new Uint8Array([0, 0, 0, 0]) }, 'ERR_MALFORMED'],
    ['no keys', { count: 0 }, 'ERR_MALFORMED'],
    ['two keys', { count: 2 }, 'ERR_UNSUPPORTED'],
    ['garbage public key', { publicBlob: new Uint8Array([0, 0, 0, 99]) }, 'ERR_MALFORMED'],
    ['ssh-dss public key', { publicBlob: new SshWriter().string('ssh-dss').finish() }, 'ERR_UNSUPPORTED'],
    ['another public key in the envelope', { publicBlob: encodePublicKey(publicPart(OTHER_ED)) }, 'ERR_MALFORMED', /does not match/],
    ['check words differ', { check2: 0x01020305 }, 'ERR_MALFORMED', /check words differ/],
    ['unknown private key type', { type: 'ssh-foo' }, 'ERR_UNSUPPORTED'],
    ['certificate in the private section', { type: 'ssh-ed25519-cert-v01@openssh.com' }, 'ERR_UNSUPPORTED'],
    ['private type differs from public', { type: 'ecdsa-sha2-nistp256', fields: ecFields(EC.d) }, 'ERR_MALFORMED', /does not match/],
    ['63-byte secret key', { fields: (w) => w.string(ED.publicKey).string(new Uint8Array([...ED.seed, ...ED.publicKey]).subarray(1)) }, 'ERR_MALFORMED'],
    ['secret key not ending in the public key', { fields: (w) => w.string(ED.publicKey).string(new Uint8Array([...ED.seed, ...OTHER_ED.publicKey])) }, 'ERR_MALFORMED'],
    ['seed of another key', { fields: (w) => w.string(ED.publicKey).string(new Uint8Array([...OTHER_ED.seed, ...ED.publicKey])) }, 'ERR_MALFORMED', /does not match the seed/],
    ['comment with NUL', { comment: utf8('a\0b') }, 'ERR_MALFORMED'],
    ['padding 1,2,4', { padding: (n) => Array.from({ length: n }, (_, i) => (i === 2 ? 4 : i + 1)) }, 'ERR_MALFORMED', /padding/],
    ['no padding where some is due', { padding: () => [], lengthDelta: 0 }, 'ERR_MALFORMED'],
    ['a trailing byte', { trailing: new Uint8Array([0]) }, 'ERR_MALFORMED', /trailing/],
    ['length one short', { lengthDelta: -1 }, 'ERR_MALFORMED'],
    ['length one long', { lengthDelta: 8 }, 'ERR_MALFORMED'],
  ];
  const ecBase = (): Partial<Parts> => ({ publicBlob: encodePublicKey(publicPart(EC)), type: EC.type });
  const rsaBase = (): Partial<Parts> => ({ publicBlob: encodePublicKey(publicPart(RSA)), type: RSA.type });
  cases.push(
    ['ECDSA scalar zero', { ...ecBase(), fields: ecFields(0n) }, 'ERR_MALFORMED', /outside 1..order-1/],
    ['ECDSA scalar of another key', { ...ecBase(), fields: ecFields(EC.d + 1n) }, 'ERR_MALFORMED', /not d\*G/],
    ['ECDSA scalar of 68 bytes', { ...ecBase(), fields: ecFields(1n << 540n) }, 'ERR_MALFORMED'],
    ['RSA p = 1', { ...rsaBase(), fields: rsaFields({ p: 1n }) }, 'ERR_MALFORMED', /p \* q/],
    ['RSA q = 0', { ...rsaBase(), fields: rsaFields({ q: 0n }) }, 'ERR_MALFORMED'],
    ['RSA p and q swapped (iqmp then wrong)', { ...rsaBase(), fields: rsaFields({ p: RSA.q, q: RSA.p }) }, 'ERR_MALFORMED', /iqmp/],
    ['RSA wrong d', { ...rsaBase(), fields: rsaFields({ d: RSA.d + 2n }) }, 'ERR_MALFORMED', /e \* d/],
    ['RSA d = 0', { ...rsaBase(), fields: rsaFields({ d: 0n }) }, 'ERR_MALFORMED'],
  );
  assert.deepEqual(parsePrivateKey(armour(assemble({ ...ed25519Parts(ED), ...ecBase(), fields: ecFields(EC.d) }))).key, EC);
  assert.deepEqual(parsePrivateKey(armour(assemble({ ...ed25519Parts(ED), ...rsaBase(), fields: rsaFields({}) }))).key, RSA);
  for (const [what, over, code, message] of cases) {
    const blob = assemble({ ...ed25519Parts(ED), ...over });
    const got = outcome(() => parsePrivateKey(armour(blob), { passphrase: 'x', maxRounds: 4 }));
    assert.ok(got instanceof CertError, `${what}: parsed`);
    assert.equal(got.code, code, `${what}: ${got.message}`);
    if (message) assert.match(got.message, message, what);
    assert.match(got.message, /^cert-core: /);
  }
});

/** Where the (encrypted) private section starts in a blob. */
function sectionOffset(blob: Uint8Array): number {
  const r = new SshReader(blob);
  r.raw(15, 'magic');
  for (const f of ['cipher', 'kdf', 'kdfOptions']) r.string(f);
  r.uint32('count');
  r.string('publicKey');
  r.uint32('length');
  return r.offset;
}

test('corrupt armour and encrypted sections', () => {
  const good = armour(encodeOpenSshPrivateKey(ED, { crypto: nodeCrypto }));
  const cases: [string, string, string][] = [
    ['no END line', good.replace(/-----END[^\n]*\n/, ''), 'ERR_MALFORMED'],
    ['END of another label', good.replace('END OPENSSH', 'END RSA'), 'ERR_MALFORMED'],
    ['a base64 character dropped', good.replace(/\n[A-Za-z0-9+/]/, '\n'), 'ERR_MALFORMED'],
    ['a header line', good.replace('KEY-----\n', 'KEY-----\nComment: x\n'), 'ERR_MALFORMED'],
    ['empty body', '-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n', 'ERR_MALFORMED'],
    ['empty text', '', 'ERR_MALFORMED'],
  ];
  for (const [what, text, code] of cases) {
    const got = outcome(() => parsePrivateKey(text));
    assert.ok(got instanceof CertError && got.code === code, `${what}: ${String(got)}`);
  }
  for (const cipher of ['aes256-ctr', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes256-cbc'] as const) {
    const blob = encodeOpenSshPrivateKey(ED, { crypto: nodeCrypto, passphrase: 'pw', rounds: 1, cipher });
    // A flipped bit in the first ciphertext block breaks the check words or the tag.
    const flipped = blob.slice();
    flipped[sectionOffset(blob) + 1]! ^= 0x40;
    const got = outcome(() => decodeOpenSshPrivateKey(flipped, { passphrase: 'pw' }));
    assert.ok(got instanceof CertError && got.code === 'ERR_DECRYPT', `${cipher}: ${String(got)}`);
    // A missing tag is a truncated file, not a wrong passphrase.
    if (cipher.includes('gcm') || cipher.includes('chacha')) {
      const cut = outcome(() => decodeOpenSshPrivateKey(blob.subarray(0, blob.length - 16), { passphrase: 'pw' }));
      assert.ok(cut instanceof CertError && cut.code === 'ERR_MALFORMED', `${cipher} without tag: ${String(cut)}`);
    }
  }
});

test('misuse of the writer is TypeError', () => {
  assert.throws(() => encodeOpenSshPrivateKey(ED, { crypto: nodeCrypto, comment: 'a\0b' }), TypeError);
  assert.throws(() => encodeOpenSshPrivateKey(ED, { crypto: nodeCrypto, passphrase: 'x', rounds: 0 }), TypeError);
  assert.throws(() => encodeOpenSshPrivateKey(ED, { crypto: nodeCrypto, passphrase: 'x', cipher: 'rot13' as 'aes256-ctr' }), TypeError);
  assert.throws(() => encodeOpenSshPrivateKey(ED, {} as { crypto: CryptoBackend }), TypeError);
  assert.throws(() => parsePrivateKey(42 as unknown as string), TypeError);
  // An inconsistent key is refused rather than written.
  assert.throws(() => encodeOpenSshPrivateKey({ ...ED, seed: OTHER_ED.seed }, { crypto: nodeCrypto }), CertError);
});

// --- Properties ----------------------------------------------------------------------------

for (const crypto of [nodeCrypto, nobleCrypto]) {
  const keys = TYPES.map((t) => generateKey(crypto, t, { bits: 2048 }));
  const plain = keys.map((k) => encodeOpenSshPrivateKey(k, { crypto, comment: 'fuzz' }));
  const encrypted = keys.map((k, i) =>
    encodeOpenSshPrivateKey(k, {
      crypto,
      comment: 'fuzz',
      passphrase: 'pw',
      rounds: 1,
      cipher: (['aes256-ctr', 'aes128-cbc', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes192-ctr'] as const)[i]!,
    }),
  );
  const options: ParsePrivateKeyOptions = { passphrase: 'pw', maxRounds: 2 };

  test(`${crypto.name}: every truncation of a key file is a CertError`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: keys.length - 1 }), fc.boolean(), fc.nat(), (i, enc, cut) => {
        const blob = (enc ? encrypted : plain)[i]!;
        const len = cut % blob.length;
        const got = outcome(() => decodeOpenSshPrivateKey(blob.subarray(0, len), options));
        assert.ok(got instanceof CertError, `prefix of ${len} bytes parsed`);
      }),
      { numRuns: 300 },
    );
  });

  test(`${crypto.name}: mutated key files parse to the same key or fail with CertError`, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: keys.length - 1 }),
        fc.boolean(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        (i, enc, edits) => {
          const blob = (enc ? encrypted : plain)[i]!.slice();
          for (const [at, xor] of edits) blob[at % blob.length]! ^= xor;
          const got = outcome(() => decodeOpenSshPrivateKey(blob, options));
          // The key material is guarded by the envelope comparison and the key-pair check: only
          // the comment or check words can change without an error.
          if (!(got instanceof CertError)) assert.deepEqual(got, keys[i]);
        },
      ),
      { numRuns: 400 },
    );
  });

  test(`${crypto.name}: mutated and truncated PKCS#8 keys parse to the same key or fail with CertError`, () => {
    const ders = keys.map((k) => new Uint8Array(nodePkcs8(k)));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: keys.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 3 }),
        fc.nat(),
        (i, edits, cut) => {
          const der = ders[i]!.slice();
          for (const [at, xor] of edits) der[at % der.length]! ^= xor;
          const input = edits.length === 0 ? der.subarray(0, cut % der.length) : der;
          const got = outcome(() => ({ key: decodePkcs8PrivateKey(input) }));
          if (got instanceof CertError) return;
          // An Ed25519 PKCS#8 key is just a seed: any 32 bytes are a key. Elsewhere the stored
          // public key or the RSA factors pin the key down (dp and dq are not used).
          if (got.type === 'ssh-ed25519') checkKeyPair(got);
          else assert.deepEqual(got, keys[i]);
        },
      ),
      { numRuns: 300 },
    );
  });
}

/** The PKCS#8 DER of a key, exported by node:crypto from its JWK. */
function nodePkcs8(key: SigningPrivateKey): Buffer {
  const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');
  const big = (v: bigint, size?: number) => {
    let hex = v.toString(16);
    if (hex.length % 2) hex = '0' + hex;
    return b64u(size ? Buffer.from(hex.padStart(size * 2, '0'), 'hex') : Buffer.from(hex, 'hex'));
  };
  let jwk: nc.JsonWebKey;
  if (key.type === 'ssh-ed25519') jwk = { kty: 'OKP', crv: 'Ed25519', x: b64u(key.publicKey), d: b64u(key.seed) };
  else if (key.type === 'ssh-rsa') {
    const { n, e, d, p, q, iqmp } = key;
    jwk = { kty: 'RSA', n: big(n), e: big(e), d: big(d), p: big(p), q: big(q), dp: big(d % (p - 1n)), dq: big(d % (q - 1n)), qi: big(iqmp) };
  } else {
    const size = (key.point.length - 1) / 2;
    const crv = { nistp256: 'P-256', nistp384: 'P-384', nistp521: 'P-521' }[key.curve];
    jwk = { kty: 'EC', crv, x: b64u(key.point.subarray(1, 1 + size)), y: b64u(key.point.subarray(1 + size)), d: big(key.d, size) };
  }
  return nc.createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'der' });
}

test('random text and random armoured bytes are CertErrors', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => {
      const got = outcome(() => parsePrivateKey(s));
      assert.ok(got instanceof CertError);
    }),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 400 }),
      fc.constantFrom('OPENSSH PRIVATE KEY', 'PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY'),
      (bytes, label) => {
        const got = outcome(() => parsePrivateKey(armour(bytes, label)));
        assert.ok(got instanceof CertError);
      },
    ),
    { numRuns: 300 },
  );
  // A valid envelope around random private sections.
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 8, maxLength: 200 }), (section) => {
      const w = new SshWriter();
      w.raw(utf8('openssh-key-v1\0')).string('none').string('none').string(new Uint8Array(0)).uint32(1);
      w.string(encodePublicKey(publicPart(ED))).uint32(section.length - (section.length % 8)).raw(section.subarray(0, section.length - (section.length % 8)));
      const got = outcome(() => decodeOpenSshPrivateKey(w.finish()));
      assert.ok(got instanceof CertError || isCertError(got));
    }),
    { numRuns: 300 },
  );
});
