// Benchmark of cert-core against ssh-keygen (signing by process, as people script it) and the
// sshpk package. One process, one thread: "per second" figures are for one core.
// Run: npm run bench:cert-core   (prints a markdown table; medians of several rounds)
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { run, tempDir } from '@portcullis/harness';
import { nodeCrypto } from '@portcullis/cert-core/node';
import {
  DEFAULT_USER_EXTENSIONS,
  flagOption,
  formatCertificate,
  formatPublicKey,
  keySigner,
  parseCertificate,
  publicPart,
  signCertificate,
  verifyCertificateSignature,
} from '@portcullis/cert-core';
import type { PlainKeyType, SigningPrivateKey } from '@portcullis/cert-core';
import { medianOf, rate, table } from './lib/measure.js';
import type { Row } from './lib/measure.js';
import { krlRows } from './lib/krl-bench.js';
import { saveResults } from './lib/results.js';

const require = createRequire(import.meta.url);
// sshpk has no types of its own; it is an anchor here, nothing else.
const sshpk = require('sshpk') as any;
const sshpkOpensshCert = require('sshpk/lib/formats/openssh-cert.js') as any;

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CAS: Array<{ label: string; type: PlainKeyType; bits?: number; keygen: string[] }> = [
  { label: 'ed25519', type: 'ssh-ed25519', keygen: ['-t', 'ed25519'] },
  { label: 'ecdsa-p256', type: 'ecdsa-sha2-nistp256', keygen: ['-t', 'ecdsa', '-b', '256'] },
  { label: 'rsa-3072', type: 'ssh-rsa', bits: 3072, keygen: ['-t', 'rsa', '-b', '3072'] },
];

function pkcs8Pem(key: SigningPrivateKey): string {
  // The bench hands the same CA key to sshpk; node:crypto exports it as PKCS#8 for that.
  const { createPrivateKey } = require('node:crypto') as typeof import('node:crypto');
  const jwkOf = (k: SigningPrivateKey): import('node:crypto').JsonWebKey => {
    const b = (x: Uint8Array) => Buffer.from(x).toString('base64url');
    const big = (v: bigint, size?: number) => {
      let h = v.toString(16);
      if (h.length % 2) h = '0' + h;
      if (size) h = h.padStart(size * 2, '0');
      return Buffer.from(h, 'hex').toString('base64url');
    };
    if (k.type === 'ssh-ed25519') return { kty: 'OKP', crv: 'Ed25519', x: b(k.publicKey), d: b(k.seed) };
    if (k.type === 'ssh-rsa')
      return { kty: 'RSA', n: big(k.n), e: big(k.e), d: big(k.d), p: big(k.p), q: big(k.q), dp: big(k.d % (k.p - 1n)), dq: big(k.d % (k.q - 1n)), qi: big(k.iqmp) };
    return { kty: 'EC', crv: 'P-256', x: b(k.point.subarray(1, 33)), y: b(k.point.subarray(33)), d: big(k.d, 32) };
  };
  return createPrivateKey({ key: jwkOf(key), format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' }).toString();
}

async function sshKeygenSignRate(dir: ReturnType<typeof tempDir>, keygen: string[]): Promise<number> {
  await run('ssh-keygen', ['-q', ...keygen, '-N', '', '-f', dir.file('ca')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', dir.file('user')]);
  const n = 40;
  return medianOf(ROUNDS, async () => {
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const r = await run('ssh-keygen', ['-q', '-s', dir.file('ca'), '-I', `alice-${i}`, '-n', 'ubuntu', '-V', '-1m:+5m', '-z', String(i + 1), dir.file('user.pub')]);
      if (r.code !== 0) throw new Error(r.stderr);
    }
    return (n * 1000) / (performance.now() - start);
  });
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const user = publicPart(nodeCrypto.generate('ssh-ed25519'));
  const dir = tempDir('portcullis-bench-');
  try {
    for (const ca of CAS) {
      const caKey = nodeCrypto.generate(ca.type, ca.bits ? { bits: ca.bits } : {});
      const signer = keySigner(nodeCrypto, caKey);
      let serial = 1n;
      const now = BigInt(Math.floor(Date.now() / 1000));
      const sign = () =>
        signCertificate(
          {
            key: user,
            kind: 'user',
            serial: serial++,
            keyId: 'alice',
            principals: ['ubuntu'],
            validAfter: now - 60n,
            validBefore: now + 300n,
            extensions: DEFAULT_USER_EXTENSIONS.map(flagOption),
          },
          signer,
          { crypto: nodeCrypto },
        );
      const ours = await medianOf(ROUNDS, () => rate(() => void sign()));

      const sshpkCa = sshpk.parsePrivateKey(pkcs8Pem(caKey), 'pem');
      const sshpkUser = sshpk.parseKey(formatPublicKey(user), 'ssh');
      const id = sshpk.identityForUser('ubuntu');
      const sshpkSign = () => {
        // Certificate.create also signs an X.509 form; sign only the OpenSSH form, like ours.
        const cert = new sshpk.Certificate({
          subjects: [id], issuer: sshpk.identityForHost('ca'), subjectKey: sshpkUser, issuerKey: sshpkCa.toPublic(),
          signatures: {}, serial: Buffer.from('0000000000000001', 'hex'), validFrom: new Date(), validUntil: new Date(Date.now() + 300e3), purposes: ['signature', 'clientAuth'],
        });
        sshpkOpensshCert.sign(cert, sshpkCa);
        cert.toBuffer('openssh');
      };
      const sshpkRate = await medianOf(ROUNDS, () => rate(sshpkSign));
      const keygenRate = await sshKeygenSignRate(dir, ca.keygen);
      rows.push({
        what: `sign user certificate, ${ca.label} CA`,
        ours,
        unit: '/s',
        higherIsBetter: true,
        anchors: [
          { name: 'ssh-keygen', value: keygenRate },
          { name: 'sshpk', value: sshpkRate },
        ],
      });

      const cert = sign();
      const text = formatCertificate(cert);
      const oursParse = await medianOf(ROUNDS, () => rate(() => void parseCertificate(cert.raw)));
      // sshpk parses OpenSSH certificates but never verifies their signatures (its
      // isSignedByKey only compares the issuer key), so it is an anchor for parsing alone.
      const sshpkParse = await medianOf(ROUNDS, () => rate(() => void sshpk.parseCertificate(text, 'openssh')));
      rows.push({
        what: `parse certificate, ${ca.label} CA`,
        ours: oursParse,
        unit: '/s',
        higherIsBetter: true,
        anchors: [{ name: 'sshpk', value: sshpkParse }],
      });
      const parseVerify = () => {
        const c = parseCertificate(cert.raw);
        if (!verifyCertificateSignature(nodeCrypto, c)) throw new Error('verify failed');
      };
      rows.push({
        what: `parse + verify certificate, ${ca.label} CA (sshpk cannot verify)`,
        ours: await medianOf(ROUNDS, () => rate(parseVerify)),
        unit: '/s',
        higherIsBetter: true,
        anchors: [],
      });
      writeFileSync(dir.file('last-cert.pub'), text);
    }
    rows.push(...(await krlRows(dir, ROUNDS)));
  } finally {
    dir.remove();
  }
  console.log(`cert-core benchmark — node ${process.version}, ${ROUNDS} rounds, medians, one thread\n`);
  console.log(table(rows));
  saveResults({
    suite: 'cert-core',
    title: 'cert-core: signing, parsing and KRLs, one thread',
    command: 'npm run bench:cert-core',
    rows,
    notes: [
      `Medians of ${ROUNDS} rounds in one process on one thread; ratios are ours over the anchor's rate, or the anchor's time over ours.`,
      'ssh-keygen signs by process, as people script it (`ssh-keygen -s ca -I id -n u -V ... key.pub` per certificate).',
      "sshpk is an anchor for signing and parsing only: it never verifies an OpenSSH certificate's signature.",
    ],
  });
}

await main();
