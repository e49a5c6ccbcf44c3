import { writeFileSync } from 'node:fs';
import { run } from '@portcullis/harness';
import type { tempDir } from '@portcullis/harness';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { KrlBuilder, compileKrl, encodeKrl, formatPublicKey, keySigner, publicPart, signCertificate } from '@portcullis/cert-core';
import type { Certificate } from '@portcullis/cert-core';
import { medianOf, rate } from './measure.js';
import type { Row } from './measure.js';

const N = 1_000_000;

/** A million distinct serials spread over 1..4,000,000 (a realistic mix of runs and gaps). */
function serials(): BigUint64Array {
  const out = new BigUint64Array(N);
  let x = 1;
  let seed = 12345;
  for (let i = 0; i < N; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    x += 1 + (seed % 7 === 0 ? 5 : seed % 3);
    out[i] = BigInt(x);
  }
  return out;
}

export async function krlRows(dir: ReturnType<typeof tempDir>, rounds: number): Promise<Row[]> {
  const ca = nodeCrypto.generate('ssh-ed25519');
  const caPub = publicPart(ca);
  const revoked = serials();
  const date = BigInt(Math.floor(Date.now() / 1000));

  let krlBytes: Uint8Array = new Uint8Array(0);
  const buildMs = await medianOf(rounds, () => {
    const t = performance.now();
    const krl = new KrlBuilder().revokeSerials(caPub, revoked).build();
    krlBytes = encodeKrl(krl, { generatedDate: date });
    return performance.now() - t;
  });

  // ssh-keygen -k from a spec file with the same serials (spec writing not timed).
  writeFileSync(dir.file('ca.pub'), formatPublicKey(caPub) + '\n');
  writeFileSync(dir.file('spec'), Array.from(revoked, (s) => `serial: ${s}`).join('\n') + '\n');
  const keygenMs = await medianOf(Math.min(rounds, 3), async () => {
    const t = performance.now();
    const r = await run('ssh-keygen', ['-k', '-f', dir.file('ref.krl'), '-s', dir.file('ca.pub'), dir.file('spec')], { timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(r.stderr);
    return performance.now() - t;
  });

  // Lookups: certificates whose serials alternate revoked / not revoked.
  const signer = keySigner(nodeCrypto, ca);
  const subject = publicPart(nodeCrypto.generate('ssh-ed25519'));
  const probes: Certificate[] = [];
  for (let i = 0; i < 64; i++) {
    probes.push(
      signCertificate(
        { key: subject, kind: 'user', serial: i % 2 ? revoked[i * 7919]! : revoked[i * 7919]! + 1n, keyId: 'p', principals: ['u'], validAfter: 0n, validBefore: 1n << 40n },
        signer,
        { crypto: nodeCrypto },
      ),
    );
  }
  const index = compileKrl(new KrlBuilder().revokeSerials(caPub, revoked).build(), nodeCrypto);
  let i = 0;
  const lookups = await medianOf(rounds, () => rate(() => void index.isCertificateRevoked(probes[i++ & 63]!)));
  writeFileSync(dir.file('ours.krl'), krlBytes);
  return [
    { what: `KRL build + encode, ${N.toLocaleString('en-US')} serials`, ours: buildMs, unit: 'ms', higherIsBetter: false, anchors: [{ name: 'ssh-keygen', value: keygenMs }] },
    { what: `KRL lookups, ${N.toLocaleString('en-US')} serials revoked`, ours: lookups, unit: '/s', higherIsBetter: true, anchors: [] },
  ];
}
