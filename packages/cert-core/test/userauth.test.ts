import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import type { CryptoBackend } from '../src/crypto/backend.js';
import { CertError } from '../src/errors.js';
import type { CertErrorCode } from '../src/errors.js';
import { SshWriter, bytesToHex, hexToBytes } from '../src/wire/writer.js';
import { concatBytes, utf8 } from '../src/wire/bytes.js';
import type { PlainKeyType, PublicKey, SignatureAlgorithm, SigningPrivateKey, SshSignature } from '../src/keys/types.js';
import { encodePublicKey } from '../src/keys/public-key.js';
import { encodeSignature, keySigner, publicPart, signData } from '../src/keys/signature.js';
import type { Certificate } from '../src/cert/certificate.js';
import { signCertificate } from '../src/cert/certificate.js';
import { DEFAULT_USER_EXTENSIONS, flagOption } from '../src/cert/options.js';
import type { CertOption } from '../src/cert/options.js';
import { checkUserCertificate } from '../src/check/checker.js';
import { buildUserauthSignedData, verifyUserauthSignature } from '../src/check/userauth.js';

const U64_MAX = 0xffffffffffffffffn;
const SESSION_ID = hexToBytes('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');

function throwsCode(fn: () => unknown, code: CertErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CertError, `expected CertError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

function certify(crypto: CryptoBackend, ca: SigningPrivateKey, key: PublicKey, extra: { criticalOptions?: CertOption[]; extensions?: CertOption[] } = {}): Certificate {
  return signCertificate(
    {
      key,
      kind: 'user',
      serial: 7n,
      keyId: 'alice',
      principals: ['alice'],
      validAfter: 0n,
      validBefore: U64_MAX,
      extensions: extra.extensions ?? DEFAULT_USER_EXTENSIONS.map(flagOption),
      ...(extra.criticalOptions ? { criticalOptions: extra.criticalOptions } : {}),
    },
    keySigner(crypto, ca),
    { crypto },
  );
}

/** What an SSH client sends: algorithm, key blob, signature over the RFC 4252 data. */
function request(crypto: CryptoBackend, key: SigningPrivateKey, algorithm: string, keyBlob: Uint8Array, sigAlg?: SignatureAlgorithm, user = 'alice') {
  const signedData = buildUserauthSignedData(SESSION_ID, user, 'ssh-connection', algorithm, keyBlob);
  const signature = encodeSignature(signData(crypto, key, signedData, sigAlg));
  return { algorithm, keyBlob, signature, signedData, crypto };
}

test('buildUserauthSignedData is the RFC 4252 section 7 layout', () => {
  const got = buildUserauthSignedData(Uint8Array.of(0xaa, 0xbb), 'u', 'ssh-connection', 'ssh-ed25519', Uint8Array.of(1, 2, 3));
  const expected =
    '00000002aabb' + // string session identifier
    '32' + // byte SSH_MSG_USERAUTH_REQUEST (50)
    '0000000175' + // string user name
    '0000000e' + bytesToHex(utf8('ssh-connection')) +
    '00000009' + bytesToHex(utf8('publickey')) +
    '01' + // boolean TRUE
    '0000000b' + bytesToHex(utf8('ssh-ed25519')) +
    '00000003010203';
  assert.equal(bytesToHex(got), expected);
  assert.throws(() => buildUserauthSignedData('x' as unknown as Uint8Array, 'u', 's', 'a', new Uint8Array(0)), TypeError);
  assert.throws(() => buildUserauthSignedData(SESSION_ID, 1 as unknown as string, 's', 'a', new Uint8Array(0)), TypeError);
});

for (const crypto of [nodeCrypto, nobleCrypto]) {
  test(`${crypto.name}: certificate signatures of every key type verify, then the certificate checks`, () => {
    const ca = crypto.generate('ecdsa-sha2-nistp256');
    const types: PlainKeyType[] = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'];
    for (const t of types) {
      const key = crypto.generate(t);
      const cert = certify(crypto, ca, publicPart(key));
      const alg = cert.certType;
      const r = verifyUserauthSignature(request(crypto, key, alg, cert.raw));
      assert.equal(r.algorithm, alg);
      assert.equal(r.signatureAlgorithm, t);
      assert.deepEqual(encodePublicKey(r.key), encodePublicKey(publicPart(key)));
      assert.ok(r.certificate);
      assert.equal(r.sk, undefined);
      const c = checkUserCertificate(r.certificate, { principal: 'alice', now: 1n, peerAddress: '192.0.2.1', trustedCAs: [publicPart(ca)], crypto });
      assert.equal(c.permissions.pty, true);
      // The plain key works too, and its result carries no certificate.
      const plain = verifyUserauthSignature(request(crypto, key, t, encodePublicKey(publicPart(key))));
      assert.equal(plain.certificate, undefined);
    }
  });
}

test('a signature over different data fails: other user, other session, other algorithm name', () => {
  const crypto = nodeCrypto;
  const ca = crypto.generate('ssh-ed25519');
  const key = crypto.generate('ssh-ed25519');
  const cert = certify(crypto, ca, publicPart(key));
  const req = request(crypto, key, cert.certType, cert.raw);
  verifyUserauthSignature(req);
  const other = (user: string, session: Uint8Array, alg = cert.certType) => buildUserauthSignedData(session, user, 'ssh-connection', alg, cert.raw);
  throwsCode(() => verifyUserauthSignature({ ...req, signedData: other('root', SESSION_ID) }), 'ERR_BAD_SIGNATURE', /does not verify with the ssh-ed25519 key/);
  throwsCode(() => verifyUserauthSignature({ ...req, signedData: other('alice', new Uint8Array(32)) }), 'ERR_BAD_SIGNATURE');
  throwsCode(() => verifyUserauthSignature({ ...req, signedData: other('alice', SESSION_ID, 'ssh-ed25519') }), 'ERR_BAD_SIGNATURE');
  // A signature by another key of the same type.
  const stranger = request(crypto, crypto.generate('ssh-ed25519'), cert.certType, cert.raw);
  throwsCode(() => verifyUserauthSignature({ ...req, signature: stranger.signature }), 'ERR_BAD_SIGNATURE');
});

test('RSA certificates: the advertised rsa-sha2-* algorithm fixes the inner signature algorithm', () => {
  const crypto = nodeCrypto;
  const ca = crypto.generate('ssh-ed25519');
  const key = crypto.generate('ssh-rsa', { bits: 2048 });
  const cert = certify(crypto, ca, publicPart(key));
  assert.equal(cert.certType, 'ssh-rsa-cert-v01@openssh.com');
  for (const h of ['rsa-sha2-256', 'rsa-sha2-512'] as const) {
    const r = verifyUserauthSignature(request(crypto, key, `${h}-cert-v01@openssh.com`, cert.raw, h));
    assert.equal(r.signatureAlgorithm, h);
  }
  // rsa-sha2-256-cert advertised, rsa-sha2-512 signature inside: refused even though it verifies.
  const crossed = request(crypto, key, 'rsa-sha2-256-cert-v01@openssh.com', cert.raw, 'rsa-sha2-512');
  throwsCode(() => verifyUserauthSignature(crossed), 'ERR_ALGORITHM_MISMATCH', /needs a "rsa-sha2-256" signature, got "rsa-sha2-512"/);
  const crossed2 = request(crypto, key, 'rsa-sha2-512', encodePublicKey(publicPart(key)), 'rsa-sha2-256');
  throwsCode(() => verifyUserauthSignature(crossed2), 'ERR_ALGORITHM_MISMATCH');

  // ssh-rsa (SHA-1): refused by default, accepted only when asked for.
  const signedData = buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', 'ssh-rsa-cert-v01@openssh.com', cert.raw);
  const sha1: SshSignature = { algorithm: 'ssh-rsa', bytes: crypto.sign(key, 'sha1', signedData) };
  const sha1Req = { algorithm: 'ssh-rsa-cert-v01@openssh.com', keyBlob: cert.raw, signature: encodeSignature(sha1), signedData, crypto };
  throwsCode(() => verifyUserauthSignature(sha1Req), 'ERR_ALGORITHM_MISMATCH', /SHA-1/);
  assert.equal(verifyUserauthSignature({ ...sha1Req, allowSha1Rsa: true }).signatureAlgorithm, 'ssh-rsa');
  // A SHA-1 signature smuggled under rsa-sha2-256 is a mismatch, not a downgrade.
  const smuggled = { ...sha1Req, algorithm: 'rsa-sha2-256-cert-v01@openssh.com', signedData: buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', 'rsa-sha2-256-cert-v01@openssh.com', cert.raw) };
  throwsCode(() => verifyUserauthSignature({ ...smuggled, allowSha1Rsa: true }), 'ERR_ALGORITHM_MISMATCH');
});

test('ECDSA curve confusion is refused (CVE-2026-35387 class)', () => {
  const crypto = nodeCrypto;
  const ca = crypto.generate('ssh-ed25519');
  const p256 = crypto.generate('ecdsa-sha2-nistp256');
  const p384 = crypto.generate('ecdsa-sha2-nistp384');
  const cert384 = certify(crypto, ca, publicPart(p384));
  // A nistp384 certificate advertised as a nistp256 certificate, with a valid signature.
  throwsCode(
    () => verifyUserauthSignature(request(crypto, p384, 'ecdsa-sha2-nistp256-cert-v01@openssh.com', cert384.raw)),
    'ERR_ALGORITHM_MISMATCH',
    /needs a key of type "ecdsa-sha2-nistp256-cert-v01@openssh.com", got "ecdsa-sha2-nistp384-cert-v01@openssh.com"/,
  );
  throwsCode(
    () => verifyUserauthSignature(request(crypto, p384, 'ecdsa-sha2-nistp256', encodePublicKey(publicPart(p384)))),
    'ERR_ALGORITHM_MISMATCH',
  );
  // Matching blob, but the signature claims another curve.
  const cert256 = certify(crypto, ca, publicPart(p256));
  const good = request(crypto, p256, cert256.certType, cert256.raw);
  const foreign = encodeSignature(signData(crypto, p384, good.signedData));
  throwsCode(() => verifyUserauthSignature({ ...good, signature: foreign }), 'ERR_ALGORITHM_MISMATCH', /needs a "ecdsa-sha2-nistp256" signature, got "ecdsa-sha2-nistp384"/);
  // A non-ECDSA type under an ECDSA name, and a certificate under a plain name and back.
  const ed = crypto.generate('ssh-ed25519');
  const edCert = certify(crypto, ca, publicPart(ed));
  throwsCode(() => verifyUserauthSignature(request(crypto, ed, 'ecdsa-sha2-nistp256-cert-v01@openssh.com', edCert.raw)), 'ERR_ALGORITHM_MISMATCH');
  throwsCode(() => verifyUserauthSignature(request(crypto, ed, 'ssh-ed25519', edCert.raw)), 'ERR_ALGORITHM_MISMATCH');
  throwsCode(() => verifyUserauthSignature(request(crypto, ed, edCert.certType, encodePublicKey(publicPart(ed)))), 'ERR_ALGORITHM_MISMATCH');
});

test('unknown algorithms and malformed blobs give CertError, never another exception', () => {
  const crypto = nodeCrypto;
  const key = crypto.generate('ssh-ed25519');
  const good = request(crypto, key, 'ssh-ed25519', encodePublicKey(publicPart(key)));
  throwsCode(() => verifyUserauthSignature({ ...good, algorithm: 'ssh-dss' }), 'ERR_UNSUPPORTED');
  throwsCode(() => verifyUserauthSignature({ ...good, algorithm: 'rsa-sha2-256-cert-v01@openssh.com-cert-v01@openssh.com' }), 'ERR_UNSUPPORTED');
  throwsCode(() => verifyUserauthSignature({ ...good, algorithm: 'ssh-ed25519-cert-v01@openssh.com' }), 'ERR_ALGORITHM_MISMATCH');
  // Random corruption of each blob: always a CertError.
  let seed = 1;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8);
  for (let i = 0; i < 300; i++) {
    const which = i % 2 === 0 ? 'keyBlob' : 'signature';
    const b = good[which].slice(0, rand() % (good[which].length + 1));
    if (b.length > 0 && (i % 3 === 0 || b.length === good[which].length)) {
      const at = rand() % b.length;
      b[at] = b[at]! ^ (1 << (rand() % 8));
    }
    assert.throws(() => verifyUserauthSignature({ ...good, [which]: b }), CertError);
  }
  assert.throws(() => verifyUserauthSignature({ ...good, keyBlob: 'x' as unknown as Uint8Array }), TypeError);
  assert.throws(() => verifyUserauthSignature({ ...good, crypto: undefined as unknown as CryptoBackend }), TypeError);
});

/** Signs as a FIDO authenticator would (PROTOCOL.u2f), with a software Ed25519 or P-256 key. */
function skSign(crypto: CryptoBackend, key: SigningPrivateKey, application: string, data: Uint8Array, flags: number, counter = 9): SshSignature {
  const ctr = new Uint8Array(4);
  new DataView(ctr.buffer).setUint32(0, counter);
  const signed = concatBytes(crypto.hash('sha256', utf8(application)), Uint8Array.of(flags), ctr, crypto.hash('sha256', data));
  const algorithm = key.type === 'ssh-ed25519' ? 'sk-ssh-ed25519@openssh.com' : 'sk-ecdsa-sha2-nistp256@openssh.com';
  return { algorithm, bytes: crypto.sign(key, key.type === 'ssh-ed25519' ? 'sha512' : 'sha256', signed), sk: { flags, counter } };
}

for (const crypto of [nodeCrypto, nobleCrypto]) {
  test(`${crypto.name}: security keys need user presence unless no-touch-required; verify-required needs UV`, () => {
    const ca = crypto.generate('ssh-ed25519');
    for (const base of ['ssh-ed25519', 'ecdsa-sha2-nistp256'] as const) {
      const inner = crypto.generate(base);
      const application = 'ssh:';
      const skKey: PublicKey =
        inner.type === 'ssh-ed25519'
          ? { type: 'sk-ssh-ed25519@openssh.com', publicKey: inner.publicKey, application }
          : { type: 'sk-ecdsa-sha2-nistp256@openssh.com', curve: 'nistp256', point: (inner as { point: Uint8Array }).point, application };
      const attempt = (cert: Certificate | undefined, flags: number, policy: { noTouchRequired?: boolean; verifyRequired?: boolean } = {}) => {
        const algorithm = cert ? cert.certType : skKey.type;
        const keyBlob = cert ? cert.raw : encodePublicKey(skKey);
        const signedData = buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', algorithm, keyBlob);
        const signature = encodeSignature(skSign(crypto, inner, application, signedData, flags));
        return () => verifyUserauthSignature({ algorithm, keyBlob, signature, signedData, crypto, ...policy });
      };
      const plainCert = certify(crypto, ca, skKey);
      const noTouch = certify(crypto, ca, skKey, { extensions: [flagOption('no-touch-required')] });
      const verify = certify(crypto, ca, skKey, { criticalOptions: [flagOption('verify-required')] });

      assert.deepEqual(attempt(plainCert, 0x01)().sk, { userPresent: true, userVerified: false, counter: 9 });
      throwsCode(attempt(plainCert, 0x00), 'ERR_BAD_SIGNATURE', /lacks user presence \(flags 0x00\)/);
      throwsCode(attempt(plainCert, 0x04), 'ERR_BAD_SIGNATURE', /lacks user presence/);
      assert.deepEqual(attempt(noTouch, 0x00)().sk, { userPresent: false, userVerified: false, counter: 9 });
      // A server policy can only tighten what the certificate grants.
      throwsCode(attempt(noTouch, 0x00, { noTouchRequired: false }), 'ERR_BAD_SIGNATURE');
      assert.ok(attempt(verify, 0x05)().sk?.userVerified);
      throwsCode(attempt(verify, 0x01), 'ERR_BAD_SIGNATURE', /lacks user verification \(flags 0x01\) but verify-required/);
      throwsCode(attempt(plainCert, 0x01, { verifyRequired: true }), 'ERR_BAD_SIGNATURE', /verify-required/);
      // Plain sk keys: presence required unless the caller's own policy says otherwise.
      attempt(undefined, 0x01)();
      throwsCode(attempt(undefined, 0x00), 'ERR_BAD_SIGNATURE');
      attempt(undefined, 0x00, { noTouchRequired: true })();
      // The flags are signed: claiming presence after the fact breaks the signature.
      const signedData = buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', plainCert.certType, plainCert.raw);
      const sig = skSign(crypto, inner, application, signedData, 0x00);
      const forged = encodeSignature({ ...sig, sk: { flags: 0x05, counter: 9 } });
      throwsCode(() => verifyUserauthSignature({ algorithm: plainCert.certType, keyBlob: plainCert.raw, signature: forged, signedData, crypto }), 'ERR_BAD_SIGNATURE', /does not verify/);
    }
  });
}
