import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import type { CryptoBackend } from '../src/crypto/backend.js';
import { CertError } from '../src/errors.js';
import type { CertErrorCode } from '../src/errors.js';
import { SshWriter } from '../src/wire/writer.js';
import { utf8 } from '../src/wire/bytes.js';
import type { PublicKey, SigningPrivateKey, SshSignature } from '../src/keys/types.js';
import { encodePublicKey, fingerprintSha256, writeKeyFields } from '../src/keys/public-key.js';
import { encodeSignature, keySigner, publicPart } from '../src/keys/signature.js';
import type { Certificate, CertificateTemplate } from '../src/cert/certificate.js';
import { certTypeFor, parseCertificate, signCertificate } from '../src/cert/certificate.js';
import { DEFAULT_USER_EXTENSIONS, flagOption, forceCommand, sourceAddress, stringOption } from '../src/cert/options.js';
import { checkHostCertificate, checkUserCertificate, trustedAuthorities } from '../src/check/checker.js';
import type { UserCertificateCheckOptions } from '../src/check/checker.js';
import { KrlBuilder } from '../src/krl/builder.js';
import { compileKrl, krlRevocationHook } from '../src/krl/lookup.js';

const U64_MAX = 0xffffffffffffffffn;
const NOW = 1_800_000_000n;

/** Fields of a certificate as raw as the wire allows, for certificates signCertificate refuses to make. */
interface RawFields {
  key: PublicKey;
  kind: number;
  serial: bigint;
  keyId: string;
  principals: string[];
  validAfter: bigint;
  validBefore: bigint;
  critical: [string, Uint8Array][];
  extensions: [string, Uint8Array][];
}

function rawCertificate(f: RawFields, caPublic: PublicKey, sign: (tbs: Uint8Array) => SshSignature): Certificate {
  const w = new SshWriter(1024);
  w.string(certTypeFor(f.key.type)).string(new Uint8Array(32));
  writeKeyFields(w, f.key);
  w.uint64(f.serial).uint32(f.kind).string(f.keyId);
  w.nested((x) => f.principals.forEach((p) => x.string(p)));
  w.uint64(f.validAfter).uint64(f.validBefore);
  w.nested((x) => f.critical.forEach(([n, d]) => x.string(n).string(d)));
  w.nested((x) => f.extensions.forEach(([n, d]) => x.string(n).string(d)));
  w.string(new Uint8Array(0)).string(encodePublicKey(caPublic));
  const tbs = w.finish();
  w.string(encodeSignature(sign(tbs)));
  return parseCertificate(w.finish());
}

function setup(crypto: CryptoBackend, caType: 'ssh-ed25519' | 'ecdsa-sha2-nistp256' | 'ssh-rsa' = 'ssh-ed25519') {
  const ca = crypto.generate(caType, { bits: 2048 });
  const other = crypto.generate('ssh-ed25519');
  const user = publicPart(crypto.generate('ecdsa-sha2-nistp256'));
  const signer = keySigner(crypto, ca);
  const template: CertificateTemplate = {
    key: user,
    kind: 'user',
    serial: 42n,
    keyId: 'alice@example.com',
    principals: ['alice', 'ubuntu'],
    validAfter: NOW - 60n,
    validBefore: NOW + 300n,
    extensions: DEFAULT_USER_EXTENSIONS.map(flagOption),
  };
  const make = (over: Partial<CertificateTemplate> = {}, s = signer) => signCertificate({ ...template, ...over }, s, { crypto });
  const raw = (over: Partial<RawFields> = {}) =>
    rawCertificate(
      { key: user, kind: 1, serial: 42n, keyId: 'alice@example.com', principals: ['alice'], validAfter: NOW - 60n, validBefore: NOW + 300n, critical: [], extensions: [], ...over },
      signer.publicKey,
      (tbs) => signer.sign(tbs),
    );
  const opts: UserCertificateCheckOptions = { principal: 'alice', now: NOW, peerAddress: '10.1.2.3', trustedCAs: [signer.publicKey], crypto };
  return { ca, other, user, signer, make, raw, opts };
}

function flipped(b: Uint8Array, at: number, mask: number): Uint8Array {
  const c = b.slice();
  c[at] = c[at]! ^ mask;
  return c;
}

function throwsCode(fn: () => unknown, code: CertErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CertError, `expected CertError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, /^cert-core: /);
    if (message) assert.match(e.message, message);
    return true;
  });
}

for (const crypto of [nodeCrypto, nobleCrypto]) {
  for (const caType of ['ssh-ed25519', 'ecdsa-sha2-nistp256'] as const) {
    test(`${crypto.name} ${caType} CA: a good user certificate passes with its permissions`, () => {
      const s = setup(crypto, caType);
      const cert = s.make({ criticalOptions: [forceCommand('/usr/bin/uptime')] });
      const r = checkUserCertificate(cert, s.opts);
      assert.equal(r.principal, 'alice');
      assert.equal(r.cert, cert);
      assert.equal(r.caFingerprint, fingerprintSha256(crypto, s.signer.publicKey));
      assert.deepEqual(r.permissions, {
        pty: true,
        portForwarding: true,
        agentForwarding: true,
        x11Forwarding: true,
        userRc: true,
        noTouchRequired: false,
        verifyRequired: false,
        forceCommand: '/usr/bin/uptime',
        unknownExtensions: [],
      });
    });

    test(`${crypto.name} ${caType} CA: one refusal per error code`, () => {
      const s = setup(crypto, caType);
      const otherSigner = keySigner(crypto, s.other);
      const good = s.make();
      // The baseline passes: each row below fails for its own reason only.
      checkUserCertificate(good, s.opts);

      const keyIdAt = (() => {
        const needle = utf8('alice@example.com');
        outer: for (let i = 0; i < good.raw.length; i++) {
          for (let j = 0; j < needle.length; j++) if (good.raw[i + j] !== needle[j]) continue outer;
          return i;
        }
        throw new Error('key id not found');
      })();
      // "alice" -> "`lice": still parses, no longer what the CA signed.
      const tampered = flipped(good.raw, keyIdAt, 0x01);
      const badSigBody = flipped(good.raw, good.raw.length - 5, 0x40);

      const rows: { name: string; code: CertErrorCode; run: () => unknown; msg?: RegExp }[] = [
        { name: 'other CA', code: 'ERR_UNTRUSTED_CA', run: () => checkUserCertificate(s.make({}, otherSigner), s.opts), msg: /not a trusted CA/ },
        { name: 'tampered key id', code: 'ERR_BAD_SIGNATURE', run: () => checkUserCertificate(parseCertificate(tampered), s.opts) },
        { name: 'tampered signature', code: 'ERR_BAD_SIGNATURE', run: () => checkUserCertificate(parseCertificate(badSigBody), s.opts) },
        { name: 'host cert as user', code: 'ERR_WRONG_CERT_TYPE', run: () => checkUserCertificate(s.make({ kind: 'host', extensions: [] }), s.opts), msg: /expected a user certificate, got a host certificate/ },
        { name: 'not yet valid', code: 'ERR_NOT_YET_VALID', run: () => checkUserCertificate(s.make({ validAfter: NOW + 1n }), s.opts) },
        { name: 'expired', code: 'ERR_EXPIRED', run: () => checkUserCertificate(s.make({ validBefore: NOW }), s.opts) },
        { name: 'no principals', code: 'ERR_NO_PRINCIPALS', run: () => checkUserCertificate(s.raw({ principals: [] }), s.opts) },
        { name: 'wrong principal', code: 'ERR_WRONG_PRINCIPAL', run: () => checkUserCertificate(good, { ...s.opts, principal: 'root' }), msg: /^cert-core: principal "root" not in the certificate's principals \["alice", "ubuntu"\]$/ },
        { name: 'unknown critical option', code: 'ERR_UNKNOWN_CRITICAL_OPTION', run: () => checkUserCertificate(s.make({ criticalOptions: [flagOption('zzz@example.com')] }), s.opts), msg: /"zzz@example.com"/ },
        { name: 'source-address', code: 'ERR_SOURCE_ADDRESS', run: () => checkUserCertificate(s.make({ criticalOptions: [sourceAddress(['10.9.0.0/16', '2001:db8::/32'])] }), s.opts), msg: /peer address 10\.1\.2\.3 not in/ },
        { name: 'revoked', code: 'ERR_REVOKED', run: () => checkUserCertificate(good, { ...s.opts, isRevoked: (c) => c.serial === 42n }) },
      ];
      for (const row of rows) {
        throwsCode(row.run, row.code, row.msg);
      }
    });
  }
}

test('checks run in a safe order: trust and signature before any field', () => {
  const s = setup(nodeCrypto);
  const otherSigner = keySigner(nodeCrypto, s.other);
  // Expired, wrong type, no principals AND from an untrusted CA: the CA is what is reported.
  const bad = rawCertificate(
    { key: s.user, kind: 2, serial: 1n, keyId: 'x', principals: [], validAfter: 0n, validBefore: 1n, critical: [['evil', new Uint8Array(0)]], extensions: [] },
    otherSigner.publicKey,
    (tbs) => otherSigner.sign(tbs),
  );
  throwsCode(() => checkUserCertificate(bad, s.opts), 'ERR_UNTRUSTED_CA');
  // The revocation hook never sees a certificate whose signature does not verify.
  const good = s.make();
  const t = flipped(good.raw, good.raw.length - 3, 1);
  let hookCalls = 0;
  throwsCode(() => checkUserCertificate(parseCertificate(t), { ...s.opts, isRevoked: () => (hookCalls++, false) }), 'ERR_BAD_SIGNATURE');
  assert.equal(hookCalls, 0);
  // Revoked wins over expiry (the more useful audit reason).
  throwsCode(() => checkUserCertificate(s.make({ validBefore: NOW }), { ...s.opts, isRevoked: () => 'key id in KRL' }), 'ERR_REVOKED', /: key id in KRL$/);
});

test('revocation hook: string reasons, and a throwing hook fails closed', () => {
  const s = setup(nodeCrypto);
  const cert = s.make();
  checkUserCertificate(cert, { ...s.opts, isRevoked: () => false });
  throwsCode(() => checkUserCertificate(cert, { ...s.opts, isRevoked: () => true }), 'ERR_REVOKED', /serial 42 key id "alice@example.com" is revoked$/);
  throwsCode(() => checkUserCertificate(cert, { ...s.opts, isRevoked: () => '' }), 'ERR_REVOKED');
  throwsCode(
    () => checkUserCertificate(cert, { ...s.opts, isRevoked: () => { throw new Error('KRL unreadable'); } }),
    'ERR_REVOKED',
    /revocation check failed \(KRL unreadable\)/,
  );
});

test('a KRL plugs in as the revocation hook: serial, key id, subject key, CA key', () => {
  const s = setup(nodeCrypto);
  const cert = s.make();
  const hook = (b: KrlBuilder) => krlRevocationHook(compileKrl(b.build(), nodeCrypto));
  checkUserCertificate(cert, { ...s.opts, isRevoked: hook(new KrlBuilder().revokeSerial(s.signer.publicKey, 41n)) });
  const revoked = [
    new KrlBuilder().revokeSerial(s.signer.publicKey, 42n),
    new KrlBuilder().revokeKeyId(null, 'alice@example.com'),
    new KrlBuilder().revokeKey(s.user),
    new KrlBuilder().revokeKey(s.signer.publicKey),
  ];
  for (const b of revoked) {
    throwsCode(() => checkUserCertificate(cert, { ...s.opts, isRevoked: hook(b) }), 'ERR_REVOKED', /is revoked: /);
  }
  // A serial revoked under another CA does not touch this one.
  checkUserCertificate(cert, { ...s.opts, isRevoked: hook(new KrlBuilder().revokeSerial(publicPart(s.other), 42n)) });
});

test('validity boundaries: valid_after <= now < valid_before, with explicit skew', () => {
  const s = setup(nodeCrypto);
  const cert = s.make({ validAfter: 1000n, validBefore: 2000n });
  const at = (now: bigint | Date, skewSeconds: number | bigint = 0) => () => checkUserCertificate(cert, { ...s.opts, now, skewSeconds });
  at(1000n)();
  at(1999n)();
  throwsCode(at(999n), 'ERR_NOT_YET_VALID', /not valid before 1000 \(1970-01-01T00:16:40Z\), now is 999/);
  throwsCode(at(2000n), 'ERR_EXPIRED', /expired at 2000/);
  at(940n, 60)();
  throwsCode(at(939n, 60), 'ERR_NOT_YET_VALID');
  at(2059n, 60n)();
  throwsCode(at(2060n, 60n), 'ERR_EXPIRED');
  // A Date is floored to whole seconds: 1999.999 s is still inside.
  at(new Date(1999_999))();
  throwsCode(at(new Date(2000_000)), 'ERR_EXPIRED');
  for (const badNow of [-1n, U64_MAX + 1n, new Date(NaN), 1000 as unknown as bigint]) {
    assert.throws(at(badNow), TypeError);
  }
  for (const badSkew of [-1, 1.5, -1n, Number.NaN]) {
    assert.throws(at(1000n, badSkew), TypeError);
  }
});

test('validity is unsigned 64-bit: no int64 wrap at 2^63, 2^64-1 is an ordinary bound', () => {
  const s = setup(nodeCrypto);
  const forever = s.make({ validAfter: 0n, validBefore: U64_MAX });
  checkUserCertificate(forever, { ...s.opts, now: 0n });
  checkUserCertificate(forever, { ...s.opts, now: 1n << 63n });
  checkUserCertificate(forever, { ...s.opts, now: U64_MAX - 1n });
  throwsCode(() => checkUserCertificate(forever, { ...s.opts, now: U64_MAX }), 'ERR_EXPIRED', /\(forever\)/);
  checkUserCertificate(forever, { ...s.opts, now: new Date() });
  // Go cast valid_after to int64: 2^63+1 became negative and "already valid".
  const far = s.make({ validAfter: (1n << 63n) + 1n, validBefore: U64_MAX });
  throwsCode(() => checkUserCertificate(far, s.opts), 'ERR_NOT_YET_VALID');
  // A skew near the top of the range must not overflow into acceptance.
  throwsCode(() => checkUserCertificate(forever, { ...s.opts, now: U64_MAX, skewSeconds: 0n }), 'ERR_EXPIRED');
});

test('principals match exactly: a comma inside a principal is not a list (CVE-2026-35414)', () => {
  const s = setup(nodeCrypto);
  const cert = s.make({ principals: ['alice,root'] });
  throwsCode(() => checkUserCertificate(cert, { ...s.opts, principal: 'root' }), 'ERR_WRONG_PRINCIPAL');
  throwsCode(() => checkUserCertificate(cert, { ...s.opts, principal: 'alice' }), 'ERR_WRONG_PRINCIPAL');
  assert.equal(checkUserCertificate(cert, { ...s.opts, principal: 'alice,root' }).principal, 'alice,root');
  // No case folding, no patterns, no prefix matching for user principals.
  const plain = s.make({ principals: ['alice', 'adm*'] });
  for (const login of ['Alice', 'alic', 'alice ', 'admin', '*', '']) {
    throwsCode(() => checkUserCertificate(plain, { ...s.opts, principal: login }), 'ERR_WRONG_PRINCIPAL');
  }
  // An empty principal in the certificate never matches the empty login (Go's old bug).
  const empty = s.raw({ principals: [''] });
  throwsCode(() => checkUserCertificate(empty, { ...s.opts, principal: '' }), 'ERR_WRONG_PRINCIPAL');
});

test('critical options: duplicates, unsupported, malformed data', () => {
  const s = setup(nodeCrypto);
  const str = (v: string) => new SshWriter().string(v).finish();
  const cmd = (...c: [string, Uint8Array][]) => () => checkUserCertificate(s.raw({ critical: c }), s.opts);
  cmd(['force-command', str('/bin/true')], ['verify-required', new Uint8Array(0)])();
  throwsCode(cmd(['force-command', str('/bin/true')], ['force-command', str('/bin/true')]), 'ERR_UNKNOWN_CRITICAL_OPTION', /more than one "force-command"/);
  throwsCode(cmd(['source-address', str('10.1.2.3')], ['source-address', str('10.1.2.3')]), 'ERR_UNKNOWN_CRITICAL_OPTION', /more than one "source-address"/);
  // sshd only refuses repeats of the two string options; a repeated flag is harmless.
  cmd(['verify-required', new Uint8Array(0)], ['verify-required', new Uint8Array(0)])();
  // Extensions are not critical options, even the known names.
  throwsCode(cmd(['permit-pty', new Uint8Array(0)]), 'ERR_UNKNOWN_CRITICAL_OPTION');
  // A string option whose data is not one nested string (the classic double-length bug).
  throwsCode(cmd(['force-command', utf8('/bin/true')]), 'ERR_MALFORMED');
  throwsCode(cmd(['verify-required', str('yes')]), 'ERR_MALFORMED');
  // A server that cannot enforce force-command says so, and such certificates fail.
  throwsCode(
    () => checkUserCertificate(s.make({ criticalOptions: [forceCommand('/bin/true')] }), { ...s.opts, supportedCriticalOptions: ['source-address'] }),
    'ERR_UNKNOWN_CRITICAL_OPTION',
    /supported: source-address/,
  );
  // A caller may accept an option of its own and interpret it from the certificate.
  const own = s.make({ criticalOptions: [stringOption('tenant@example.com', 'blue')] });
  const r = checkUserCertificate(own, { ...s.opts, supportedCriticalOptions: ['tenant@example.com'] });
  assert.equal(r.cert.criticalOptions[0]?.name, 'tenant@example.com');
});

test('source-address: peer must be inside a listed block; a malformed list is refused', () => {
  const s = setup(nodeCrypto);
  const cert = s.make({ criticalOptions: [sourceAddress(['192.0.2.0/24', '10.1.2.3', '2001:db8::/32'])] });
  const from = (peerAddress: string, c: Certificate = cert) => () => checkUserCertificate(c, { ...s.opts, peerAddress });
  assert.equal(from('10.1.2.3')().permissions.sourceAddress, '192.0.2.0/24,10.1.2.3,2001:db8::/32');
  from('192.0.2.200')();
  from('2001:db8:1::7')();
  // Node reports IPv4 peers on a dual-stack socket as v4-mapped IPv6.
  from('::ffff:10.1.2.3')();
  for (const peer of ['10.1.2.4', '192.0.3.1', '2001:db9::1', 'localhost', '']) {
    throwsCode(from(peer), 'ERR_SOURCE_ADDRESS', new RegExp(`peer address ${peer.replace(/\./g, '\\.')} not in the certificate's source-address`));
  }
  // Malformed lists (host bits set, host name, spaces): sshd refuses the certificate outright.
  for (const list of ['10.1.2.3/8', 'example.com', '10.0.0.0/8, 192.0.2.0/24', '']) {
    const bad = s.make({ criticalOptions: [stringOption('source-address', list)] });
    throwsCode(from('10.1.2.3', bad), 'ERR_SOURCE_ADDRESS', /is malformed/);
  }
  // No peer address string at all is caller misuse, never a silent allow.
  assert.throws(() => checkUserCertificate(cert, { ...s.opts, peerAddress: undefined as unknown as string }), TypeError);
});

test('CA signature algorithm: ssh-rsa (SHA-1) CA signatures are refused by default', () => {
  const crypto = nodeCrypto;
  const ca = crypto.generate('ssh-rsa', { bits: 2048 }) as SigningPrivateKey;
  const caPub = publicPart(ca);
  const user = publicPart(crypto.generate('ssh-ed25519'));
  const fields: RawFields = { key: user, kind: 1, serial: 1n, keyId: 'k', principals: ['alice'], validAfter: 0n, validBefore: U64_MAX, critical: [], extensions: [] };
  const sha1 = rawCertificate(fields, caPub, (tbs) => ({ algorithm: 'ssh-rsa', bytes: crypto.sign(ca, 'sha1', tbs) }));
  const opts: UserCertificateCheckOptions = { principal: 'alice', now: NOW, peerAddress: '10.1.2.3', trustedCAs: [caPub], crypto };
  throwsCode(() => checkUserCertificate(sha1, opts), 'ERR_ALGORITHM_MISMATCH', /"ssh-rsa" not accepted/);
  // The signature itself is fine: an operator who opts in gets it through.
  checkUserCertificate(sha1, { ...opts, caSignatureAlgorithms: ['ssh-rsa'] });
  for (const alg of ['rsa-sha2-256', 'rsa-sha2-512'] as const) {
    const c = signCertificate({ ...fields, kind: 'user', extensions: [] }, keySigner(crypto, ca), { crypto, algorithm: alg });
    checkUserCertificate(c, opts);
    throwsCode(() => checkUserCertificate(c, { ...opts, caSignatureAlgorithms: ['ssh-ed25519'] }), 'ERR_ALGORITHM_MISMATCH');
  }
});

test('trustedCAs: compared by canonical blob; a certificate is refused at configuration time', () => {
  const s = setup(nodeCrypto);
  const cert = s.make();
  // A blob and a prebuilt set both work.
  checkUserCertificate(cert, { ...s.opts, trustedCAs: [encodePublicKey(s.signer.publicKey)] });
  const authorities = trustedAuthorities([publicPart(s.other), s.signer.publicKey]);
  checkUserCertificate(cert, { ...s.opts, trustedCAs: authorities });
  // Same key type, different key: untrusted.
  throwsCode(() => checkUserCertificate(cert, { ...s.opts, trustedCAs: [publicPart(s.other)] }), 'ERR_UNTRUSTED_CA');
  // A certificate blob, a Certificate object, or a certificate-typed "key" cannot be a CA
  // (Teleport CVE-2025-49825).
  throwsCode(() => trustedAuthorities([cert.raw]), 'ERR_UNTRUSTED_CA', /is a certificate/);
  throwsCode(() => checkUserCertificate(cert, { ...s.opts, trustedCAs: [cert.raw] }), 'ERR_UNTRUSTED_CA');
  assert.throws(() => trustedAuthorities([cert as unknown as PublicKey]), TypeError);
  assert.throws(() => trustedAuthorities([{ ...cert.key, type: cert.certType } as unknown as PublicKey]), TypeError);
  assert.throws(() => trustedAuthorities([]), TypeError);
  assert.throws(() => trustedAuthorities([null as unknown as PublicKey]), TypeError);
  throwsCode(() => trustedAuthorities([utf8('garbage')]), 'ERR_MALFORMED');
});

test('a CA key blob with a non-minimal mpint still matches its canonical key', () => {
  const crypto = nodeCrypto;
  const ca = crypto.generate('ssh-rsa', { bits: 2048 });
  const caPub = publicPart(ca) as Extract<PublicKey, { type: 'ssh-rsa' }>;
  const cert = signCertificate(
    { key: publicPart(crypto.generate('ssh-ed25519')), kind: 'user', serial: 1n, keyId: 'k', principals: ['alice'], validAfter: 0n, validBefore: U64_MAX },
    keySigner(crypto, ca),
    { crypto },
  );
  // e = 65537 written with a superfluous leading zero byte.
  const w = new SshWriter().string('ssh-rsa').string(Uint8Array.of(0, 1, 0, 1)).mpint(caPub.n);
  checkUserCertificate(cert, { principal: 'alice', now: NOW, peerAddress: '10.1.2.3', trustedCAs: [w.finish()], crypto });
});

test('misuse throws TypeError', () => {
  const s = setup(nodeCrypto);
  const cert = s.make();
  assert.throws(() => checkUserCertificate({} as Certificate, s.opts), TypeError);
  assert.throws(() => checkUserCertificate(cert, { ...s.opts, principal: 7 as unknown as string }), TypeError);
  assert.throws(() => checkUserCertificate(cert, { ...s.opts, crypto: {} as CryptoBackend }), TypeError);
  assert.throws(() => checkUserCertificate(cert, { ...s.opts, isRevoked: 'no' as unknown as () => boolean }), TypeError);
  assert.throws(() => checkUserCertificate(cert, undefined as unknown as UserCertificateCheckOptions), TypeError);
});

test('host certificates: wildcard principals, case-insensitive, no critical options', () => {
  for (const crypto of [nodeCrypto, nobleCrypto]) {
    const s = setup(crypto);
    const host = s.make({ kind: 'host', extensions: [], principals: ['*.web.example.com', 'db0?.example.com', 'bastion'] });
    const h = (hostname: string, cert: Certificate = host) => () =>
      checkHostCertificate(cert, { hostname, now: NOW, trustedCAs: [s.signer.publicKey], crypto });
    assert.equal(h('a.web.example.com')().principal, '*.web.example.com');
    assert.equal(h('A.Web.EXAMPLE.com')().principal, '*.web.example.com');
    assert.equal(h('db01.example.com')().principal, 'db0?.example.com');
    assert.equal(h('BASTION')().principal, 'bastion');
    for (const name of ['web.example.com', 'db10.example.com', 'db0.example.com', 'bastion2', 'a.web.example.com.evil']) {
      throwsCode(h(name), 'ERR_WRONG_PRINCIPAL', /matches none of the certificate's principals/);
    }
    // A comma is part of the pattern, not a list separator.
    const comma = s.make({ kind: 'host', extensions: [], principals: ['a.example.com,b.example.com'] });
    throwsCode(h('b.example.com', comma), 'ERR_WRONG_PRINCIPAL');
    throwsCode(h('a.example.com', comma), 'ERR_WRONG_PRINCIPAL');
    // A user certificate is not a host certificate.
    throwsCode(h('bastion', s.make({ principals: ['bastion'] })), 'ERR_WRONG_CERT_TYPE', /expected a host certificate, got a user certificate/);
    // Empty principal list: "any host" before OpenSSH 10.3; refused here.
    throwsCode(h('bastion', s.raw({ kind: 2, principals: [] })), 'ERR_NO_PRINCIPALS');
    throwsCode(h('bastion', s.raw({ kind: 2, principals: ['bastion'], critical: [['force-command', new SshWriter().string('x').finish()]] })), 'ERR_UNKNOWN_CRITICAL_OPTION');
    throwsCode(h('bastion', s.make({ kind: 'host', extensions: [], principals: ['bastion'], validBefore: NOW })), 'ERR_EXPIRED');
    throwsCode(h('bastion', s.make({ kind: 'host', extensions: [], principals: ['bastion'] }, keySigner(crypto, s.other))), 'ERR_UNTRUSTED_CA');
    throwsCode(() => checkHostCertificate(host, { hostname: 'bastion', now: NOW, trustedCAs: [s.signer.publicKey], crypto, isRevoked: () => true }), 'ERR_REVOKED');
    assert.throws(h(''), TypeError);
  }
});
