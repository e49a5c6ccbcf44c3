// Cross-check of verifyUserauthSignature and checkUserCertificate against real OpenSSH:
// keys and certificates from ssh-keygen, signatures from ssh-agent (the component that signs
// for `ssh` during public-key authentication) and from node:crypto over keys converted with
// `ssh-keygen -p -m PKCS8 -N ''`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createPrivateKey, sign as nodeSign } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hasTool, runOk, tempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import { CertError } from '../src/errors.js';
import { SshReader } from '../src/wire/reader.js';
import { SshWriter } from '../src/wire/writer.js';
import { bigintFromBytes } from '../src/wire/reader.js';
import { parseCertificateText, parsePublicKeyText } from '../src/keys/line.js';
import { checkUserCertificate } from '../src/check/checker.js';
import { buildUserauthSignedData, verifyUserauthSignature } from '../src/check/userauth.js';

const TOOLS = ['ssh-keygen', 'ssh-agent', 'ssh-add'].every(hasTool);
const SESSION_ID = new Uint8Array(32).map((_, i) => i * 7);

/** ssh-keygen -t/-b for each key we test, with the file name used. */
const KEYS = [
  { name: 'ed25519', args: ['-t', 'ed25519'], certAlgs: ['ssh-ed25519-cert-v01@openssh.com'] },
  { name: 'p256', args: ['-t', 'ecdsa', '-b', '256'], certAlgs: ['ecdsa-sha2-nistp256-cert-v01@openssh.com'] },
  { name: 'p384', args: ['-t', 'ecdsa', '-b', '384'], certAlgs: ['ecdsa-sha2-nistp384-cert-v01@openssh.com'] },
  { name: 'p521', args: ['-t', 'ecdsa', '-b', '521'], certAlgs: ['ecdsa-sha2-nistp521-cert-v01@openssh.com'] },
  { name: 'rsa', args: ['-t', 'rsa', '-b', '2048'], certAlgs: ['rsa-sha2-256-cert-v01@openssh.com', 'rsa-sha2-512-cert-v01@openssh.com'] },
] as const;

/** One SSH agent request/response over the agent's Unix socket (draft-miller-ssh-agent). */
function agentCall(sock: string, type: number, payload: Uint8Array): Promise<{ type: number; body: Uint8Array }> {
  return new Promise((resolve, reject) => {
    const c = connect(sock);
    const chunks: Buffer[] = [];
    c.on('error', reject);
    c.on('data', (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      if (all.length >= 4 && all.length >= 4 + all.readUInt32BE(0)) {
        c.end();
        resolve({ type: all[4]!, body: new Uint8Array(all.subarray(5, 4 + all.readUInt32BE(0))) });
      }
    });
    const msg = new SshWriter().byte(type).raw(payload).finish();
    c.write(new SshWriter().string(msg).finish());
  });
}

const SSH2_AGENTC_SIGN_REQUEST = 13;
const SSH2_AGENT_SIGN_RESPONSE = 14;
const SSH_AGENT_RSA_SHA2_256 = 2;
const SSH_AGENT_RSA_SHA2_512 = 4;

async function agentSign(sock: string, keyBlob: Uint8Array, data: Uint8Array, flags: number): Promise<Uint8Array> {
  const req = new SshWriter().string(keyBlob).string(data).uint32(flags).finish();
  const res = await agentCall(sock, SSH2_AGENTC_SIGN_REQUEST, req);
  assert.equal(res.type, SSH2_AGENT_SIGN_RESPONSE, 'ssh-agent refused to sign');
  const r = new SshReader(res.body, 'agent');
  const sig = r.string('signature').slice();
  r.end();
  return sig;
}

function agentFlags(algorithm: string): number {
  if (algorithm.startsWith('rsa-sha2-256')) return SSH_AGENT_RSA_SHA2_256;
  if (algorithm.startsWith('rsa-sha2-512')) return SSH_AGENT_RSA_SHA2_512;
  return 0;
}

async function waitFor(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) throw new Error(`ssh-agent exited ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('ssh-agent socket did not appear');
}

test('OpenSSH: ssh-agent signatures over our userauth data verify, with ssh-keygen certificates', { skip: !TOOLS && 'ssh-keygen/ssh-agent missing' }, async () => {
  const dir = tempDir();
  const sock = dir.file('agent.sock');
  // -D: stay in the foreground, so the child we kill is the agent itself.
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  try {
    await waitFor(sock, agent);
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ca', '-f', dir.file('ca')]);
    const caKey = parsePublicKeyText(readFileSync(dir.file('ca.pub'), 'utf8')).key;
    for (const k of KEYS) {
      await runOk('ssh-keygen', ['-q', ...k.args, '-N', '', '-C', k.name, '-f', dir.file(k.name)]);
      // ssh-keygen -s ca -I alice-<type> -n alice,deploy -z 5 -V always:forever -O source-address=10.0.0.0/8,2001:db8::/32 <key>.pub
      await runOk('ssh-keygen', ['-q', '-s', dir.file('ca'), '-I', `alice-${k.name}`, '-n', 'alice,deploy', '-z', '5', '-V', 'always:forever', '-O', 'source-address=10.0.0.0/8,2001:db8::/32', dir.file(`${k.name}.pub`)]);
      // ssh-add picks up <key>-cert.pub next to the key and holds both identities.
      await runOk('ssh-add', [dir.file(k.name)], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
    }
    for (const k of KEYS) {
      const cert = parseCertificateText(readFileSync(dir.file(`${k.name}-cert.pub`), 'utf8')).cert;
      for (const algorithm of k.certAlgs) {
        const signedData = buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', algorithm, cert.raw);
        const signature = await agentSign(sock, cert.raw, signedData, agentFlags(algorithm));
        for (const crypto of [nodeCrypto, nobleCrypto]) {
          const r = verifyUserauthSignature({ algorithm, keyBlob: cert.raw, signature, signedData, crypto });
          assert.ok(r.certificate, `${k.name} ${algorithm}`);
          const checked = checkUserCertificate(r.certificate, { principal: 'deploy', now: new Date(), peerAddress: '10.20.30.40', trustedCAs: [caKey], crypto });
          assert.equal(checked.cert.keyId, `alice-${k.name}`);
          assert.deepEqual(checked.permissions.unknownExtensions, []);
          assert.equal(checked.permissions.pty, true);
          assert.throws(
            () => checkUserCertificate(r.certificate!, { principal: 'deploy', now: new Date(), peerAddress: '192.0.2.1', trustedCAs: [caKey], crypto }),
            (e: unknown) => e instanceof CertError && e.code === 'ERR_SOURCE_ADDRESS',
          );
        }
        // Same signature presented for another user: the signed data no longer matches.
        const forRoot = buildUserauthSignedData(SESSION_ID, 'root', 'ssh-connection', algorithm, cert.raw);
        assert.throws(
          () => verifyUserauthSignature({ algorithm, keyBlob: cert.raw, signature, signedData: forRoot, crypto: nodeCrypto }),
          (e: unknown) => e instanceof CertError && e.code === 'ERR_BAD_SIGNATURE',
        );
      }
    }
    // The agent signing rsa-sha2-512 while the client advertised rsa-sha2-256: refused.
    const rsaCert = parseCertificateText(readFileSync(dir.file('rsa-cert.pub'), 'utf8')).cert;
    const alg = 'rsa-sha2-256-cert-v01@openssh.com';
    const data = buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', alg, rsaCert.raw);
    const sig512 = await agentSign(sock, rsaCert.raw, data, SSH_AGENT_RSA_SHA2_512);
    assert.throws(
      () => verifyUserauthSignature({ algorithm: alg, keyBlob: rsaCert.raw, signature: sig512, signedData: data, crypto: nodeCrypto }),
      (e: unknown) => e instanceof CertError && e.code === 'ERR_ALGORITHM_MISMATCH',
    );
    // With no flags the agent makes a SHA-1 ssh-rsa signature: refused unless allowed.
    const sha1Alg = 'ssh-rsa-cert-v01@openssh.com';
    const sha1Data = buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', sha1Alg, rsaCert.raw);
    const sha1 = await agentSign(sock, rsaCert.raw, sha1Data, 0);
    const sha1Input = { algorithm: sha1Alg, keyBlob: rsaCert.raw, signature: sha1, signedData: sha1Data, crypto: nodeCrypto };
    assert.throws(() => verifyUserauthSignature(sha1Input), (e: unknown) => e instanceof CertError && e.code === 'ERR_ALGORITHM_MISMATCH');
    assert.equal(verifyUserauthSignature({ ...sha1Input, allowSha1Rsa: true }).signatureAlgorithm, 'ssh-rsa');
  } finally {
    agent.kill();
    dir.remove();
  }
});

const NODE_CURVE_HASH = { p256: 'sha256', p384: 'sha384', p521: 'sha512' } as const;
const CURVE_BYTES = { p256: 32, p384: 48, p521: 66 } as const;

test('OpenSSH: ssh-keygen keys exported as PKCS8 sign through node:crypto; we verify', { skip: !hasTool('ssh-keygen') && 'ssh-keygen missing' }, async () => {
  const dir = tempDir();
  try {
    await runOk('ssh-keygen', ['-q', '-t', 'ecdsa', '-b', '384', '-N', '', '-f', dir.file('ca')]);
    const caKey = parsePublicKeyText(readFileSync(dir.file('ca.pub'), 'utf8')).key;
    for (const k of KEYS) {
      // ssh-keygen 9.2 cannot write Ed25519 as PKCS8; the agent test above covers Ed25519.
      if (k.name === 'ed25519') continue;
      await runOk('ssh-keygen', ['-q', ...k.args, '-N', '', '-f', dir.file(k.name)]);
      // ssh-keygen -s ca -I pkcs8-<type> -n alice -V -5m:+1h <key>.pub
      await runOk('ssh-keygen', ['-q', '-s', dir.file('ca'), '-I', `pkcs8-${k.name}`, '-n', 'alice', '-V', '-5m:+1h', dir.file(`${k.name}.pub`)]);
      copyFileSync(dir.file(k.name), dir.file(`${k.name}.p8`));
      await runOk('ssh-keygen', ['-q', '-p', '-m', 'PKCS8', '-N', '', '-f', dir.file(`${k.name}.p8`)]);
      const pkcs8 = createPrivateKey(readFileSync(dir.file(`${k.name}.p8`)));
      const cert = parseCertificateText(readFileSync(dir.file(`${k.name}-cert.pub`), 'utf8')).cert;
      const plainBlob = parseKeyBlob(readFileSync(dir.file(`${k.name}.pub`), 'utf8'));
      for (const [algorithm, keyBlob] of [...k.certAlgs.map((a) => [a, cert.raw] as const), [k.certAlgs[0].replace('-cert-v01@openssh.com', ''), plainBlob] as const]) {
        const signedData = buildUserauthSignedData(SESSION_ID, 'alice', 'ssh-connection', algorithm, keyBlob);
        let signature: Uint8Array;
        if (k.name === 'rsa') {
          const hash = algorithm.startsWith('rsa-sha2-512') ? 'sha512' : 'sha256';
          const raw = nodeSign(hash, signedData, pkcs8);
          signature = new SshWriter().string(`rsa-sha2-${hash.slice(3)}`).string(raw).finish();
        } else {
          const curve = k.name as keyof typeof CURVE_BYTES;
          const raw = nodeSign(NODE_CURVE_HASH[curve], signedData, { key: pkcs8, dsaEncoding: 'ieee-p1363' });
          const n: number = CURVE_BYTES[curve];
          const r = bigintFromBytes(raw.subarray(0, n));
          const s = bigintFromBytes(raw.subarray(n));
          const sigName = `ecdsa-sha2-nist${curve}`;
          signature = new SshWriter().string(sigName).nested((w) => w.mpint(r).mpint(s)).finish();
        }
        for (const crypto of [nodeCrypto, nobleCrypto]) {
          const v = verifyUserauthSignature({ algorithm, keyBlob, signature, signedData, crypto });
          if (keyBlob === cert.raw) {
            checkUserCertificate(v.certificate!, { principal: 'alice', now: new Date(), peerAddress: '127.0.0.1', trustedCAs: [caKey], crypto });
          } else {
            assert.equal(v.certificate, undefined);
          }
        }
      }
    }
  } finally {
    dir.remove();
  }
});

function parseKeyBlob(line: string): Uint8Array {
  const b64 = line.trim().split(/\s+/)[1]!;
  return new Uint8Array(Buffer.from(b64, 'base64'));
}
