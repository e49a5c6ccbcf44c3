import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { runOk, tempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto, keySigner, signCertificate, formatCertificate, formatPublicKey, parseCertificateText, verifyCertificateSignature, DEFAULT_USER_EXTENSIONS, flagOption, publicPart } from '../src/index.js';

for (const crypto of [nodeCrypto, nobleCrypto]) {
  test(`smoke ${crypto.name}: sign, ssh-keygen -L reads it, we parse ssh-keygen's`, async () => {
    const dir = tempDir();
    try {
      for (const t of ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'] as const) {
        const ca = crypto.generate(t, { bits: 2048 });
        const user = crypto.generate('ssh-ed25519');
        const cert = signCertificate(
          { key: publicPart(user), kind: 'user', serial: 7n, keyId: 'alice', principals: ['ubuntu'], validAfter: 0n, validBefore: 0xffffffffffffffffn, extensions: DEFAULT_USER_EXTENSIONS.map(flagOption) },
          keySigner(crypto, ca),
          { crypto },
        );
        writeFileSync(dir.file('c-cert.pub'), formatCertificate(cert) + '\n');
        const out = await runOk('ssh-keygen', ['-L', '-f', dir.file('c-cert.pub')]);
        assert.match(out.stdout, /Key ID: "alice"/);
        const back = parseCertificateText(formatCertificate(cert)).cert;
        assert.ok(verifyCertificateSignature(crypto, back));
        writeFileSync(dir.file('ca.pub'), formatPublicKey(publicPart(ca)) + '\n');
      }
      await runOk('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', dir.file('k')]);
      await runOk('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', dir.file('ca2')]);
      await runOk('ssh-keygen', ['-q', '-s', dir.file('ca2'), '-I', 'x', '-n', 'a,b', dir.file('k.pub')]);
      const { readFileSync } = await import('node:fs');
      const text = readFileSync(dir.file('k-cert.pub'), 'utf8');
      const c = parseCertificateText(text).cert;
      assert.ok(verifyCertificateSignature(crypto, c));
      assert.deepEqual(c.principals, ['a', 'b']);
      assert.equal(formatCertificate(c, 'x').split(' ')[1], text.split(' ')[1]);
    } finally {
      dir.remove();
    }
  });
}
