// Lookup semantics (OpenSSH krl.c ssh_krl_check_key), the checker hook, builder misuse, and a
// million revoked serials.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { encodePublicKey } from '../src/keys/public-key.js';
import { signCertificate } from '../src/cert/certificate.js';
import type { Certificate } from '../src/cert/certificate.js';
import type { SigningPrivateKey } from '../src/keys/types.js';
import {
  EMPTY_KRL,
  KrlBuilder,
  compileKrl,
  describeKrlMatch,
  encodeKrl,
  findSerialRange,
  isRevoked,
  krlRevocationHook,
  parseKrl,
} from '../src/krl/index.js';

const U64 = 0xffffffffffffffffn;
const gen = (): SigningPrivateKey => nodeCrypto.generate('ssh-ed25519');

function cert(ca: SigningPrivateKey, serial: bigint, keyId: string, subject: SigningPrivateKey = gen()): Certificate {
  return signCertificate(
    { key: publicPart(subject), kind: 'user', serial, keyId, principals: ['p'], validAfter: 0n, validBefore: U64 },
    keySigner(nodeCrypto, ca),
    { crypto: nodeCrypto },
  );
}

const sha1 = (k: SigningPrivateKey): Uint8Array => nodeCrypto.hash('sha1', encodePublicKey(publicPart(k)));
const sha256 = (k: SigningPrivateKey): Uint8Array => nodeCrypto.hash('sha256', encodePublicKey(publicPart(k)));

test("OpenSSH's order: subject SHA1, SHA256, explicit key; issuer key id, serial; any-CA; then the CA key", () => {
  const ca = gen();
  const subject = gen();
  const c = cert(ca, 42n, 'alice', subject);
  const rules = [
    (b: KrlBuilder) => b.revokeSha1(sha1(subject)),
    (b: KrlBuilder) => b.revokeSha256(sha256(subject)),
    (b: KrlBuilder) => b.revokeKey(publicPart(subject)),
    (b: KrlBuilder) => b.revokeKeyId(publicPart(ca), 'alice'),
    (b: KrlBuilder) => b.revokeSerial(publicPart(ca), 42n),
    (b: KrlBuilder) => b.revokeKeyId(null, 'alice'),
    (b: KrlBuilder) => b.revokeSerialRange(null, 40n, 50n),
    (b: KrlBuilder) => b.revokeSha1(sha1(ca)),
    (b: KrlBuilder) => b.revokeSha256(sha256(ca)),
    (b: KrlBuilder) => b.revokeKey(publicPart(ca)),
  ];
  const expected = [
    { rule: 'sha1', subject: 'key' },
    { rule: 'sha256', subject: 'key' },
    { rule: 'key', subject: 'key' },
    { rule: 'keyId', subject: 'certificate', section: 'issuer', keyId: 'alice' },
    { rule: 'serial', subject: 'certificate', section: 'issuer', serial: 42n, range: [42n, 42n] },
    { rule: 'keyId', subject: 'certificate', section: 'any', keyId: 'alice' },
    { rule: 'serial', subject: 'certificate', section: 'any', serial: 42n, range: [40n, 50n] },
    { rule: 'sha1', subject: 'ca' },
    { rule: 'sha256', subject: 'ca' },
    { rule: 'key', subject: 'ca' },
  ];
  // With rules i..end present, rule i is the one reported.
  for (let i = 0; i < rules.length; i++) {
    const b = new KrlBuilder();
    for (const r of rules.slice(i).reverse()) r(b);
    const krl = b.build();
    assert.deepEqual(isRevoked(krl, c, nodeCrypto), expected[i], `from rule ${i}`);
    assert.deepEqual(isRevoked(krl, c, nobleCrypto), expected[i], `noble, from rule ${i}`);
  }
  assert.equal(isRevoked(EMPTY_KRL, c, nodeCrypto), undefined);
});

test('serial 0 is never matched by serial, only by an exact key id; other CAs and ids do not match', () => {
  const ca = gen();
  const other = gen();
  const krl = new KrlBuilder().revokeSerialRange(publicPart(ca), 1n, U64).revokeSerialRange(null, 1n, U64).revokeKeyId(publicPart(ca), 'zero').build();
  assert.equal(isRevoked(krl, cert(ca, 0n, 'not-zero'), nodeCrypto), undefined);
  assert.deepEqual(isRevoked(krl, cert(ca, 0n, 'zero'), nodeCrypto), { rule: 'keyId', subject: 'certificate', section: 'issuer', keyId: 'zero' });
  assert.equal(isRevoked(krl, cert(other, 0n, 'zero'), nodeCrypto), undefined);
  assert.equal(isRevoked(krl, cert(ca, 0n, 'zer'), nodeCrypto), undefined);
  assert.equal(isRevoked(krl, cert(ca, 0n, 'zero '), nodeCrypto), undefined);
  assert.deepEqual(isRevoked(krl, cert(other, U64, 'x'), nodeCrypto), { rule: 'serial', subject: 'certificate', section: 'any', serial: U64, range: [1n, U64] });

  const narrow = new KrlBuilder().revokeSerials(publicPart(ca), [5n, 7n]).build();
  assert.equal(isRevoked(narrow, cert(ca, 6n, 'x'), nodeCrypto), undefined);
  assert.equal(isRevoked(narrow, cert(other, 5n, 'x'), nodeCrypto), undefined);
  assert.ok(isRevoked(narrow, cert(ca, 7n, 'x'), nodeCrypto));
});

test('plain keys: revoked by hash or explicitly; serial and key-id rules never apply to them', () => {
  const [a, b, c, d] = [gen(), gen(), gen(), gen()];
  const krl = new KrlBuilder().revokeSha1(sha1(a)).revokeSha256(sha256(b)).revokeKey(publicPart(c)).revokeSerialRange(null, 1n, 9n).build();
  const index = compileKrl(krl, nodeCrypto);
  assert.deepEqual(index.isKeyRevoked(publicPart(a)), { rule: 'sha1', subject: 'key' });
  assert.deepEqual(index.isKeyRevoked(publicPart(b)), { rule: 'sha256', subject: 'key' });
  assert.deepEqual(index.check(publicPart(c)), { rule: 'key', subject: 'key' });
  assert.equal(index.check(publicPart(d)), undefined);
  // A certificate is matched through its subject key, whatever its CA.
  assert.deepEqual(index.check(cert(gen(), 100n, 'x', c)), { rule: 'key', subject: 'key' });
  // Key types other than Ed25519 hash their canonical blob too.
  const rsa = nodeCrypto.generate('ssh-rsa', { bits: 2048 });
  const ec = nodeCrypto.generate('ecdsa-sha2-nistp384');
  const k2 = new KrlBuilder().revokeSha256(sha256(rsa)).revokeKey(publicPart(ec)).build();
  assert.ok(isRevoked(k2, publicPart(rsa), nobleCrypto));
  assert.ok(isRevoked(k2, cert(rsa, 1n, 'x', ec), nodeCrypto));
});

test('checker hook: false when not revoked, the reason when revoked', () => {
  const ca = gen();
  const krl = new KrlBuilder().revokeSerialRange(publicPart(ca), 10n, 20n).revokeKeyId(null, 'mallory').build();
  const hook = krlRevocationHook(compileKrl(krl, nodeCrypto));
  assert.equal(hook(cert(ca, 9n, 'x')), false);
  assert.equal(hook(cert(ca, 15n, 'x')), "certificate serial 15 is revoked under the certificate's CA (range 10-20)");
  assert.equal(hook(cert(gen(), 1n, 'mallory')), 'certificate key id "mallory" is revoked for any CA');
  assert.equal(describeKrlMatch({ rule: 'sha256', subject: 'ca' }), 'CA key is revoked by its SHA256 fingerprint');
  assert.equal(describeKrlMatch({ rule: 'key', subject: 'key' }), 'key is revoked explicitly');
});

test('findSerialRange: boundaries of sorted disjoint ranges', () => {
  const ranges = { lo: new BigUint64Array([1n, 10n, U64 - 1n]), hi: new BigUint64Array([3n, 10n, U64]) };
  const cases: [bigint, number][] = [[0n, -1], [1n, 0], [3n, 0], [4n, -1], [9n, -1], [10n, 1], [11n, -1], [U64 - 2n, -1], [U64 - 1n, 2], [U64, 2]];
  for (const [s, want] of cases) assert.equal(findSerialRange(ranges, s), want, String(s));
  assert.equal(findSerialRange({ lo: new BigUint64Array(0), hi: new BigUint64Array(0) }, 1n), -1);
});

test('builder misuse throws TypeError; revocations merge and sort canonically', () => {
  const b = new KrlBuilder();
  const ca = publicPart(gen());
  assert.throws(() => b.revokeSerial(ca, 0n), TypeError);
  assert.throws(() => b.revokeSerialRange(ca, 5n, 4n), TypeError);
  assert.throws(() => b.revokeSerial(ca, -1n), TypeError);
  assert.throws(() => b.revokeSerial(ca, U64 + 1n), TypeError);
  assert.throws(() => b.revokeSerial(ca, 5 as unknown as bigint), TypeError);
  assert.throws(() => b.revokeSerials(ca, [1n, 0n]), TypeError);
  assert.throws(() => b.revokeSha1(new Uint8Array(32)), TypeError);
  assert.throws(() => b.revokeSha256(new Uint8Array(20)), TypeError);
  assert.throws(() => b.revokeKeyId(ca, 'a\0b'), TypeError);
  assert.throws(() => b.revokeSerial({} as never, 1n), TypeError);
  assert.throws(() => encodeKrl(EMPTY_KRL, {} as never), TypeError);
  assert.throws(() => encodeKrl(EMPTY_KRL, { generatedDate: 1n, comment: 'a\0' }), TypeError);
  assert.throws(() => encodeKrl(EMPTY_KRL, { generatedDate: 1n, layout: 'fast' as never }), TypeError);
  // A failed call leaves no empty CA section behind to disturb the CA order.
  assert.equal(b.build().certificates.length, 0);

  const ca2 = publicPart(gen());
  const krl = b
    .revokeSerial(ca2, 9n)
    .revokeSerialRange(ca, 5n, 7n)
    .revokeSerials(ca, [8n, 1n, 3n, 2n, 100n, 7n])
    .revokeKeyId(ca, 'b')
    .revokeKeyId(ca, 'a')
    .revokeKeyId(ca, 'a')
    .revokeKeyId(ca, 'ab')
    .build();
  assert.deepEqual(krl.certificates.map((s) => s.caBlob), [encodePublicKey(ca2), encodePublicKey(ca)]);
  const s = krl.certificates[1]!;
  assert.deepEqual([...s.serials.lo], [1n, 5n, 100n]);
  assert.deepEqual([...s.serials.hi], [3n, 8n, 100n]);
  assert.deepEqual(s.keyIds.map((k) => new TextDecoder().decode(k)), ['a', 'ab', 'b']);
  assert.ok(Object.isFrozen(krl) && Object.isFrozen(krl.certificates));
  // from(): a builder seeded with a KRL (ssh-keygen -u) yields the same KRL.
  const again = KrlBuilder.from(krl).build();
  assert.deepEqual(encodeKrl(again, { generatedDate: 1n }), encodeKrl(krl, { generatedDate: 1n }));
});

/** Deterministic 32-bit generator (xorshift), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}

test('a million revoked serials: build, a million lookups, encode and parse back', () => {
  const caPriv = gen();
  const ca = publicPart(caPriv);
  const r = rng(0xc0ffee);
  const N = 1_000_000;
  const serials = new BigUint64Array(N);
  const revoked = new Set<number>();
  for (let i = 0; i < N; i++) {
    const s = 1 + (r() % 4_000_000);
    serials[i] = BigInt(s);
    revoked.add(s);
  }
  const krl = new KrlBuilder().revokeSerials(ca, serials).revokeSerialRange(ca, 2n ** 60n, 2n ** 60n + 5n).build();
  const index = compileKrl(krl, nodeCrypto);
  const base = cert(caPriv, 1n, 'x');
  let hits = 0;
  for (let i = 0; i < N; i++) {
    const s = 1 + (r() % 4_100_000);
    const m = index.isCertificateRevoked({ ...base, serial: BigInt(s) });
    const want = revoked.has(s);
    if ((m !== undefined) !== want) assert.fail(`serial ${s}: got ${JSON.stringify(m?.rule)}, want ${want}`);
    if (m !== undefined) hits++;
  }
  assert.ok(hits > N / 5 && hits < N, `hits ${hits}`);
  // Serials above 2^53 take the bigint path.
  assert.ok(index.isCertificateRevoked({ ...base, serial: 2n ** 60n + 5n }));
  assert.equal(index.isCertificateRevoked({ ...base, serial: 2n ** 60n + 6n }), undefined);

  const bytes = encodeKrl(krl, { generatedDate: 1n });
  const back = parseKrl(bytes);
  const a = krl.certificates[0]!.serials;
  const b = back.certificates[0]!.serials;
  assert.equal(b.lo.length, a.lo.length);
  assert.ok(a.lo.every((v, i) => b.lo[i] === v) && a.hi.every((v, i) => b.hi[i] === v));
  // ssh-keygen's own layout packs this dense set into one huge bitmap no OpenSSH can read.
  assert.throws(() => parseKrl(encodeKrl(krl, { generatedDate: 1n, layout: 'openssh' })), /exceeds 2048/);
});
