import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nodeCrypto } from '../src/crypto/node.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { encodePublicKey } from '../src/keys/public-key.js';
import { parseCertificate, signCertificate, verifyCertificateSignature } from '../src/cert/certificate.js';
import type { CertificateTemplate } from '../src/cert/certificate.js';
import { flagOption, stringOption } from '../src/cert/options.js';
import { CertError } from '../src/errors.js';
import type { PlainKeyType } from '../src/keys/types.js';

const TYPES: PlainKeyType[] = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'];
const KEYS = TYPES.map((t) => nodeCrypto.generate(t, { bits: 2048 }));
const SIGNERS = KEYS.map((k) => keySigner(nodeCrypto, k));

const name = fc.stringMatching(/^[a-zA-Z0-9@._-]{1,20}$/);
const template = fc.record({
  keyIndex: fc.integer({ min: 0, max: KEYS.length - 1 }),
  caIndex: fc.integer({ min: 0, max: KEYS.length - 1 }),
  kind: fc.constantFrom('user' as const, 'host' as const),
  serial: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  keyId: fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0')),
  principals: fc.array(fc.string({ minLength: 1, maxLength: 16 }).filter((s) => !s.includes('\0')), { minLength: 1, maxLength: 6 }),
  validAfter: fc.bigInt({ min: 0n, max: (1n << 63n) }),
  span: fc.bigInt({ min: 1n, max: (1n << 62n) }),
  flags: fc.uniqueArray(name, { maxLength: 5 }),
  strings: fc.uniqueArray(fc.tuple(name, fc.string({ maxLength: 20 })), { maxLength: 3, selector: (x) => x[0] }),
});

type Drawn = typeof template extends fc.Arbitrary<infer T> ? T : never;
function build(t: Drawn): CertificateTemplate {
  const ext = [...t.flags.map(flagOption), ...t.strings.filter(([n]) => !t.flags.includes(n)).map(([n, v]) => stringOption(n, v))];
  return {
    key: publicPart(KEYS[t.keyIndex]!),
    kind: t.kind,
    serial: t.serial,
    keyId: t.keyId,
    principals: t.principals,
    validAfter: t.validAfter,
    validBefore: t.validAfter + t.span,
    extensions: ext,
    ...(t.kind === 'user' ? { criticalOptions: [stringOption('force-command', 'true')] } : {}),
  };
}

test('sign then parse returns every field and verifies', () => {
  fc.assert(
    fc.property(template, (t) => {
      const tpl = build(t);
      const cert = signCertificate(tpl, SIGNERS[t.caIndex]!, { crypto: nodeCrypto });
      const back = parseCertificate(cert.raw);
      assert.equal(back.kind, tpl.kind);
      assert.equal(back.serial, tpl.serial);
      assert.equal(back.keyId, tpl.keyId);
      assert.deepEqual(back.principals, tpl.principals);
      assert.equal(back.validAfter, tpl.validAfter);
      assert.equal(back.validBefore, tpl.validBefore);
      assert.deepEqual(encodePublicKey(back.key), encodePublicKey(tpl.key));
      assert.deepEqual(encodePublicKey(back.signatureKey), encodePublicKey(SIGNERS[t.caIndex]!.publicKey));
      assert.deepEqual(back.extensions.map((e) => e.name), [...(tpl.extensions ?? [])].map((e) => e.name).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
      assert.equal(back.canonical, true);
      assert.equal(back.nonce.length, 32);
      assert.ok(verifyCertificateSignature(nodeCrypto, back));
    }),
    { numRuns: 150 },
  );
});

const SAMPLES = SIGNERS.flatMap((signer, i) =>
  (['user', 'host'] as const).map((kind) =>
    signCertificate(
      {
        key: publicPart(KEYS[(i + 1) % KEYS.length]!),
        kind,
        serial: 42n,
        keyId: 'sample',
        principals: ['a', 'b'],
        validAfter: 1n,
        validBefore: 2n ** 40n,
        extensions: [flagOption('permit-pty')],
        ...(kind === 'user' ? { criticalOptions: [stringOption('source-address', '10.0.0.0/8')] } : {}),
      },
      signer,
      { crypto: nodeCrypto },
    ).raw,
  ),
);

test('mutations and truncations yield CertError or a certificate whose signature fails', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: SAMPLES.length - 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.option(fc.nat(), { nil: undefined }),
      (i, flips, cut) => {
        const bytes = SAMPLES[i]!.slice();
        for (const [pos, x] of flips) bytes[pos % bytes.length]! ^= x;
        const input = cut === undefined ? bytes : bytes.subarray(0, cut % bytes.length);
        try {
          const c = parseCertificate(input);
          // A change that still parses must not still verify, unless it only touched the
          // signature blob's unsigned framing (impossible here: flips are non-zero).
          assert.equal(verifyCertificateSignature(nodeCrypto, c), false);
        } catch (e) {
          assert.ok(e instanceof CertError, `unexpected ${String(e)}`);
        }
      },
    ),
    { numRuns: 1500 },
  );
});

test('random bytes never throw anything but CertError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
      try {
        parseCertificate(b);
      } catch (e) {
        assert.ok(e instanceof CertError, String(e));
      }
    }),
    { numRuns: 2000 },
  );
});

test('issuance refuses what must never be issued', () => {
  const base = build({ keyIndex: 0, caIndex: 0, kind: 'user', serial: 1n, keyId: 'k', principals: ['u'], validAfter: 0n, span: 10n, flags: [], strings: [] });
  const refused = (t: CertificateTemplate) =>
    assert.throws(() => signCertificate(t, SIGNERS[0]!, { crypto: nodeCrypto }), (e: unknown) => e instanceof CertError && e.code === 'ERR_REFUSED');
  refused({ ...base, principals: [] });
  refused({ ...base, principals: [''] });
  refused({ ...base, validBefore: base.validAfter });
  refused({ ...base, extensions: [flagOption('permit-pty'), flagOption('permit-pty')] });
  refused({ ...base, kind: 'host', criticalOptions: [stringOption('force-command', 'x')] });
  assert.throws(
    () => signCertificate(base, SIGNERS[4]!, { crypto: nodeCrypto, algorithm: 'ssh-rsa' }),
    (e: unknown) => e instanceof CertError && e.code === 'ERR_REFUSED',
  );
});
