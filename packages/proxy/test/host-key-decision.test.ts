// decideHostKey and hostCertificateVerifier without a network: every refusal is a verdict with
// a code and a reason, never an exception out of ssh2's handshake; misconfiguration throws at once.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodePublicKey, keySigner, publicPart, signCertificate } from '@portcullis/cert-core';
import type { CertificateKind, SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { decideHostKey, hostCertificateVerifier } from '../src/index.js';
import type { HostKeyDecisionOptions } from '../src/index.js';

const NOW = 1_800_000_000n;
const ca = nodeCrypto.generate('ssh-ed25519');
const hostKey = nodeCrypto.generate('ecdsa-sha2-nistp256');

function cert(o: { kind?: CertificateKind; principals?: string[]; validBefore?: bigint; signer?: SigningPrivateKey } = {}): Uint8Array {
  return signCertificate(
    {
      key: publicPart(hostKey),
      kind: o.kind ?? 'host',
      serial: 1n,
      keyId: 'web01',
      principals: o.principals ?? ['web01.internal', '*.web.internal'],
      validAfter: NOW - 60n,
      validBefore: o.validBefore ?? NOW + 3600n,
    },
    keySigner(nodeCrypto, o.signer ?? ca),
    { crypto: nodeCrypto },
  ).raw;
}

const options: HostKeyDecisionOptions = {
  trustedHostCAs: [publicPart(ca)],
  hostname: 'web01.internal',
  now: NOW,
  crypto: nodeCrypto,
};

describe('decideHostKey', () => {
  it('accepts a host certificate from the trusted CA naming the host, case-insensitively and by pattern', () => {
    const v = decideHostKey(cert(), options);
    assert.ok(v.accepted);
    assert.equal(v.check.principal, 'web01.internal');
    const w = decideHostKey(cert(), { ...options, hostname: 'DB7.web.internal' });
    assert.ok(w.accepted);
    assert.equal(w.check.principal, '*.web.internal');
  });

  const refusals: [string, Uint8Array, Partial<HostKeyDecisionOptions>, string, RegExp][] = [
    ['a plain key', encodePublicKey(publicPart(hostKey)), {}, 'ERR_NOT_A_CERTIFICATE', /plain host key \(ecdsa-sha2-nistp256 SHA256:/],
    ['garbage', Uint8Array.of(0, 0, 0, 99, 1), {}, 'ERR_MALFORMED', /malformed host key/],
    ['a truncated certificate', cert().subarray(0, 120), {}, 'ERR_MALFORMED', /refused/],
    ['a foreign CA', cert({ signer: nodeCrypto.generate('ssh-ed25519') }), {}, 'ERR_UNTRUSTED_CA', /not a trusted CA/],
    ['a user certificate', cert({ kind: 'user' }), {}, 'ERR_WRONG_CERT_TYPE', /expected a host certificate/],
    ['an expired certificate', cert({ validBefore: NOW }), {}, 'ERR_EXPIRED', /expired/],
    ['another host', cert(), { hostname: 'web02.internal' }, 'ERR_WRONG_PRINCIPAL', /"web02.internal" matches none/],
    ['a revoked certificate', cert(), { isRevoked: () => 'serial 1 in the KRL' }, 'ERR_REVOKED', /serial 1 in the KRL/],
  ];
  for (const [name, blob, extra, code, reason] of refusals) {
    it(`refuses ${name} with ${code}`, () => {
      const v = decideHostKey(blob, { ...options, ...extra });
      assert.ok(!v.accepted);
      assert.equal(v.code, code);
      assert.match(v.reason, reason);
      assert.match(v.reason, /^proxy: host "web0\d\.internal"/);
    });
  }
});

describe('hostCertificateVerifier', () => {
  it('records the verdict and reads the clock when the key arrives', () => {
    let now = NOW;
    const verify = hostCertificateVerifier({ ...options, now: () => now });
    // A function, so TypeScript does not keep the narrowing of the getter across calls.
    const verdict = () => verify.verdict;
    assert.equal(verdict(), undefined);
    assert.equal(verify(Buffer.from(cert())), true);
    assert.equal(verdict()?.accepted, true);
    now = NOW + 7200n;
    assert.equal(verify(Buffer.from(cert())), false);
    const v = verdict();
    assert.equal(v?.accepted === false && v.code, 'ERR_EXPIRED');
  });

  it('throws at construction for an empty CA list, a certificate as CA, or no host name', () => {
    assert.throws(() => hostCertificateVerifier({ ...options, trustedHostCAs: [] }), TypeError);
    assert.throws(() => hostCertificateVerifier({ ...options, trustedHostCAs: [cert()] }), /a certificate cannot be a CA/);
    assert.throws(() => hostCertificateVerifier({ ...options, hostname: '' }), TypeError);
  });
});
