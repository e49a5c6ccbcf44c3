// ssh2 1.17.0 + patches/ssh2+1.17.0.patch against the real OpenSSH of this machine (9.2):
// (b) the ssh2 client logs in to sshd with user certificates; (c) it negotiates sshd's host
// certificate and verifies it against the host CA, refusing a foreign CA, a wrong name and a
// plain host key; (d) an ssh2 server presents a host certificate to a stock `ssh` that knows
// only the host CA, and authenticates that ssh's user certificate with our verifier.
// Every test here but the binding check and the key-pairing check fails on an unpatched ssh2
// (checked once by `npx patch-package --reverse`).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import type { Algorithms, ConnectConfig, ParsedKey, PublicKeyAuthMethod, ServerHostKeyAlgorithm } from 'ssh2';
import { SSHD_PATH, hasTool, sshRun, startSshd, tempDir } from '@portcullis/harness';
import type { SshdHandle, TempDir } from '@portcullis/harness';
import {
  DEFAULT_USER_EXTENSIONS,
  checkUserCertificate,
  flagOption,
  formatCertificate,
  formatPrivateKey,
  isCertError,
  formatPublicKey,
  keySigner,
  publicPart,
  signCertificate,
} from '@portcullis/cert-core';
import type { Certificate, CertificateKind, PlainKeyType, SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import {
  HOST_CERTIFICATE_ALGORITHMS,
  UPSTREAM_HOST_KEY_ALGORITHMS,
  certificateIdentity,
  hostCertificateKey,
  hostCertificateVerifier,
  isProxyError,
  nativeCryptoAvailable,
  offeredCertificate,
  ssh2CertificatePatchApplied,
  verifyCertificateUserauth,
} from '../src/index.js';
import type { HostCertificateVerifier, PublicKeyAuthRequest } from '../src/index.js';

const missing = [...['ssh'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

const KEY_TYPES = {
  ed25519: 'ssh-ed25519',
  ecdsa: 'ecdsa-sha2-nistp256',
  rsa: 'ssh-rsa',
} as const satisfies Record<string, PlainKeyType>;
type KeyName = keyof typeof KEY_TYPES;
const KEY_NAMES = Object.keys(KEY_TYPES) as KeyName[];

function newKey(name: KeyName): SigningPrivateKey {
  return nodeCrypto.generate(KEY_TYPES[name], { bits: 2048 });
}

const NOW = BigInt(Math.floor(Date.now() / 1000));

function issue(
  ca: SigningPrivateKey,
  key: SigningPrivateKey,
  kind: CertificateKind,
  principals: readonly string[],
  keyId: string,
): Certificate {
  return signCertificate(
    {
      key: publicPart(key),
      kind,
      serial: 7n,
      keyId,
      principals,
      validAfter: NOW - 300n,
      validBefore: NOW + 3600n,
      ...(kind === 'user' ? { extensions: DEFAULT_USER_EXTENSIONS.map(flagOption) } : {}),
    },
    keySigner(nodeCrypto, ca),
    { crypto: nodeCrypto },
  );
}

/** Writes an OpenSSH private key (mode 0600, as ssh insists) and its certificate beside it. */
function writeIdentity(dir: TempDir, name: string, key: SigningPrivateKey, cert?: Certificate): string {
  const path = dir.file(name);
  writeFileSync(path, formatPrivateKey(key, { crypto: nodeCrypto, comment: name }), { mode: 0o600 });
  if (cert !== undefined) writeFileSync(`${path}-cert.pub`, formatCertificate(cert, name) + '\n');
  return path;
}

interface ExecResult {
  readonly stdout: string;
  readonly code: number | undefined;
  /** The host key algorithm the handshake settled on. */
  readonly serverHostKey: string;
}

interface Ssh2ExecOptions {
  readonly port: number;
  readonly username: string;
  readonly key: ParsedKey;
  readonly command: string;
  readonly hostVerifier?: HostCertificateVerifier;
  readonly serverHostKey?: readonly string[];
}

/** Runs one command with the ssh2 client; rejects with ssh2's error if it cannot. */
function ssh2Exec(o: Ssh2ExecOptions): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let serverHostKey = '';
    client.on('handshake', (negotiated) => {
      serverHostKey = negotiated.serverHostKey;
    });
    client.on('error', (e) => {
      client.end();
      reject(e);
    });
    client.on('ready', () => {
      client.exec(o.command, (err, stream) => {
        if (err) {
          client.end();
          reject(err);
          return;
        }
        let stdout = '';
        stream.on('data', (d: Buffer) => {
          stdout += d.toString('utf8');
        });
        stream.stderr.resume();
        stream.on('close', (code: number | undefined) => {
          client.end();
          resolve({ stdout, code, serverHostKey });
        });
      });
    });
    const auth: PublicKeyAuthMethod = { type: 'publickey', username: o.username, key: o.key };
    const config: ConnectConfig = {
      host: '127.0.0.1',
      port: o.port,
      username: o.username,
      authHandler: [auth],
      readyTimeout: 10_000,
      ...(o.hostVerifier === undefined ? {} : { hostVerifier: o.hostVerifier }),
      ...(o.serverHostKey === undefined
        ? {}
        : { algorithms: { serverHostKey: [...o.serverHostKey] as ServerHostKeyAlgorithm[] } satisfies Algorithms }),
    };
    try {
      client.connect(config);
    } catch (e) {
      // An unpatched ssh2 throws here: "Unsupported algorithm" for certificate host keys.
      reject(e as Error);
    }
  });
}

describe('ssh2 with OpenSSH certificates', { skip }, () => {
  let dir: TempDir;
  const userCas = {} as Record<KeyName, SigningPrivateKey>;
  let hostCa: SigningPrivateKey;
  let foreignCa: SigningPrivateKey;
  let sshdCert: SshdHandle | undefined;
  let sshdPlain: SshdHandle | undefined;

  before(async () => {
    dir = tempDir('portcullis-proxy-ssh2-');
    for (const name of KEY_NAMES) userCas[name] = newKey(name);
    hostCa = newKey('ed25519');
    foreignCa = newKey('ed25519');
    // sshd serves one host key of each type, each with a certificate from our host CA.
    const hostKeys = KEY_NAMES.map((name) => {
      const key = newKey(name);
      const cert = issue(hostCa, key, 'host', ['127.0.0.1', 'localhost'], `sshd ${name}`);
      const path = writeIdentity(dir, `sshd_${name}`, key, cert);
      return { privateKeyPath: path, certificatePath: `${path}-cert.pub` };
    });
    const trustedUserCAKeys = KEY_NAMES.map((n) => formatPublicKey(publicPart(userCas[n]))).join('\n');
    sshdCert = await startSshd({ dir: dir.path, trustedUserCAKeys, hostKey: hostKeys });
    const plainDir = dir.file('plain');
    mkdirSync(plainDir);
    sshdPlain = await startSshd({ dir: plainDir, trustedUserCAKeys });
  });

  after(async () => {
    await sshdCert?.stop();
    await sshdPlain?.stop();
    dir?.remove();
  });

  function sshd(): SshdHandle {
    assert.ok(sshdCert, 'sshd did not start');
    return sshdCert;
  }

  function userIdentity(subject: KeyName, ca: KeyName, keyId: string): ParsedKey {
    const key = newKey(subject);
    return certificateIdentity(key, issue(userCas[ca], key, 'user', ['root'], keyId));
  }

  function verifier(trusted: SigningPrivateKey, hostname = '127.0.0.1'): HostCertificateVerifier {
    return hostCertificateVerifier({
      trustedHostCAs: [publicPart(trusted)],
      hostname,
      now: () => new Date(),
      crypto: nodeCrypto,
    });
  }

  it("has ssh2's native crypto binding (built at install)", () => {
    assert.equal(nativeCryptoAvailable(), true, 'sshcrypto.node did not build or load: see allowScripts in package.json');
  });

  it('runs an ssh2 that carries the certificate patch', () => {
    assert.equal(ssh2CertificatePatchApplied(), true, 'patches/ssh2+1.17.0.patch is not applied (postinstall: patch-package)');
  });

  describe('(b) ssh2 client logs in to sshd with a user certificate', () => {
    for (const subject of KEY_NAMES) {
      for (const ca of KEY_NAMES) {
        it(`${subject} key, ${ca} CA`, async () => {
          const keyId = `b-${subject}-${ca}`;
          const since = sshd().log().length;
          const r = await ssh2Exec({
            port: sshd().port,
            username: 'root',
            key: userIdentity(subject, ca, keyId),
            command: 'echo "logged in as $(id -un)"',
          });
          assert.equal(r.stdout, 'logged in as root\n');
          assert.equal(r.code, 0);
          // sshd names the certificate it accepted: proof the certificate, not a key, logged in.
          const m = await sshd().waitForLog(/Accepted publickey for root from \S+ port \d+ ssh2: (\S+) .*ID (\S+) \(serial 7\)/, { since });
          assert.equal(m[1], `${subject === 'ed25519' ? 'ED25519' : subject === 'ecdsa' ? 'ECDSA' : 'RSA'}-CERT`);
          assert.equal(m[2], keyId);
        });
      }
    }

    it('refuses to pair a certificate with a private key it does not certify', () => {
      const key = newKey('ed25519');
      const cert = issue(userCas.ed25519, newKey('ed25519'), 'user', ['root'], 'b-mismatch');
      assert.throws(() => certificateIdentity(key, cert), (e) => isProxyError(e, 'ERR_KEY_MISMATCH'));
    });
  });

  describe("(c) ssh2 client negotiates and verifies sshd's host certificate", () => {
    for (const algorithm of HOST_CERTIFICATE_ALGORITHMS.filter((a) => !a.includes('nistp384') && !a.includes('nistp521'))) {
      it(`accepts ${algorithm} from the trusted host CA`, async () => {
        const hostVerifier = verifier(hostCa);
        const r = await ssh2Exec({
          port: sshd().port,
          username: 'root',
          key: userIdentity('ed25519', 'ed25519', `c-${algorithm}`),
          command: 'true',
          hostVerifier,
          serverHostKey: [algorithm],
        });
        assert.equal(r.serverHostKey, algorithm);
        assert.equal(r.code, 0);
        const v = hostVerifier.verdict;
        assert.ok(v?.accepted, v?.accepted === false ? v.reason : 'verifier was not called');
        assert.equal(v.check.principal, '127.0.0.1');
        assert.equal(v.check.cert.kind, 'host');
      });
    }

    it('prefers a certificate with the upstream algorithm list', async () => {
      const hostVerifier = verifier(hostCa);
      const r = await ssh2Exec({
        port: sshd().port,
        username: 'root',
        key: userIdentity('ecdsa', 'rsa', 'c-upstream'),
        command: 'true',
        hostVerifier,
        serverHostKey: UPSTREAM_HOST_KEY_ALGORITHMS,
      });
      assert.equal(r.serverHostKey, 'ssh-ed25519-cert-v01@openssh.com');
      assert.equal(hostVerifier.verdict?.accepted, true);
    });

    const refusals = [
      { name: 'a host certificate from a foreign CA', server: 'cert', ca: 'foreign', hostname: '127.0.0.1', code: 'ERR_UNTRUSTED_CA', reason: /not a trusted CA/ },
      { name: 'a host certificate for another name', server: 'cert', ca: 'host', hostname: 'web01', code: 'ERR_WRONG_PRINCIPAL', reason: /"web01" matches none/ },
      { name: 'a plain host key', server: 'plain', ca: 'host', hostname: '127.0.0.1', code: 'ERR_NOT_A_CERTIFICATE', reason: /plain host key \(ssh-ed25519 SHA256:/ },
    ] as const;
    for (const c of refusals) {
      it(`refuses ${c.name}, saying why`, async () => {
        const server = c.server === 'cert' ? sshd() : sshdPlain;
        assert.ok(server);
        const hostVerifier = verifier(c.ca === 'foreign' ? foreignCa : hostCa, c.hostname);
        const since = server.log().length;
        await assert.rejects(
          ssh2Exec({
            port: server.port,
            username: 'root',
            key: userIdentity('ed25519', 'ed25519', 'c-refused'),
            command: 'true',
            hostVerifier,
            serverHostKey: UPSTREAM_HOST_KEY_ALGORITHMS,
          }),
          /Host denied/,
        );
        const v = hostVerifier.verdict;
        assert.ok(v !== undefined && !v.accepted, 'the verifier should have refused');
        assert.equal(v.code, c.code);
        assert.match(v.reason, c.reason);
        // Refused before authentication: sshd never saw a login attempt.
        assert.doesNotMatch(server.log().slice(since), /Accepted|Failed publickey/);
      });
    }
  });

  describe('(d) ssh2 server presents a host certificate to a stock ssh', () => {
    interface Login {
      readonly algorithm: string;
      readonly keyId?: string;
      readonly refusal?: string;
    }
    let server: ssh2.Server | undefined;
    let port = 0;
    const logins: Login[] = [];
    /** Signed requests as ssh2 handed them over, by key id, to replay with alterations. */
    const requests = new Map<string, PublicKeyAuthRequest>();
    let knownHosts = '';

    before(async () => {
      const hostKeys = KEY_NAMES.map((name) => {
        const key = newKey(name);
        return hostCertificateKey(key, issue(hostCa, key, 'host', ['127.0.0.1'], `ssh2 server ${name}`));
      });
      const trustedCAs = KEY_NAMES.map((n) => publicPart(userCas[n]));
      server = new ssh2.Server({ hostKeys }, (client, info) => {
        client.on('authentication', (ctx) => {
          if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
          try {
            // The query (no signature yet) is answered from the certificate alone, so a client
            // learns nothing about keys we would refuse; the signed request is checked in full.
            const certificate =
              ctx.signature === undefined ? offeredCertificate(ctx) : verifyCertificateUserauth(ctx, { crypto: nodeCrypto }).certificate;
            checkUserCertificate(certificate, { trustedCAs, principal: ctx.username, peerAddress: info.ip, now: new Date(), crypto: nodeCrypto });
            if (ctx.signature !== undefined) {
              logins.push({ algorithm: ctx.key.algo, keyId: certificate.keyId });
              requests.set(certificate.keyId, { key: { ...ctx.key }, signature: ctx.signature, blob: ctx.blob });
            }
            return ctx.accept();
          } catch (e) {
            logins.push({ algorithm: ctx.key.algo, refusal: e instanceof Error ? `${(e as { code?: string }).code}: ${e.message}` : String(e) });
            return ctx.reject(['publickey']);
          }
        });
        client.on('ready', () => {
          client.on('session', (acceptSession) => {
            acceptSession().on('exec', (acceptExec, _reject, exec) => {
              const channel = acceptExec();
              channel.write(`ssh2 server ran ${JSON.stringify(exec.command)}\n`);
              channel.exit(0);
              channel.end();
            });
          });
        });
        client.on('error', () => {
          // A refused client disconnects abruptly; nothing to do.
        });
      });
      const srv = server;
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
      const address = srv.address();
      port = typeof address === 'object' && address !== null ? address.port : 0;
      knownHosts = dir.file('known_hosts_ssh2_server');
      writeFileSync(knownHosts, `@cert-authority [127.0.0.1]:${port} ${formatPublicKey(publicPart(hostCa))}\n`);
    });

    after(async () => {
      const srv = server;
      if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
    });

    for (const [algorithm, user] of [
      ['ssh-ed25519-cert-v01@openssh.com', 'ed25519'],
      ['ecdsa-sha2-nistp256-cert-v01@openssh.com', 'ecdsa'],
      ['rsa-sha2-512-cert-v01@openssh.com', 'rsa'],
    ] as const) {
      it(`stock ssh accepts the ${algorithm} host certificate; our verifier authenticates its ${user} user certificate`, async () => {
        const key = newKey(user);
        const keyId = `d-${user}`;
        const identity = writeIdentity(dir, `id_d_${user}`, key, issue(userCas[user], key, 'user', ['alice'], keyId));
        const before = logins.length;
        const r = await sshRun({
          port,
          user: 'alice',
          identity,
          certificate: `${identity}-cert.pub`,
          knownHosts,
          options: [`HostKeyAlgorithms=${algorithm}`],
          command: 'uptime',
        });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'ssh2 server ran "uptime"\n');
        // An RSA certificate signs with rsa-sha2-512: server-sig-algs must list it (the comma fix).
        const expected = user === 'ed25519' ? 'ssh-ed25519-cert-v01@openssh.com' : user === 'ecdsa' ? 'ecdsa-sha2-nistp256-cert-v01@openssh.com' : 'rsa-sha2-512-cert-v01@openssh.com';
        assert.deepEqual(logins.slice(before), [{ algorithm: expected, keyId }]);
      });
    }

    it('refuses a user certificate from an untrusted CA, recording why', async () => {
      const key = newKey('ed25519');
      const identity = writeIdentity(dir, 'id_d_foreign', key, issue(foreignCa, key, 'user', ['alice'], 'd-foreign'));
      const before = logins.length;
      const r = await sshRun({ port, user: 'alice', identity, certificate: `${identity}-cert.pub`, knownHosts, command: 'true' });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Permission denied/);
      // ssh offers the certificate, then the bare key: both refused at the query, each with its reason.
      const refused = logins.slice(before).map((l) => l.refusal ?? `accepted ${l.keyId}`);
      assert.equal(refused.length, 2, refused.join('\n'));
      assert.match(refused[0] ?? '', /^ERR_UNTRUSTED_CA: .*not a trusted CA/);
      assert.match(refused[1] ?? '', /^ERR_NOT_A_CERTIFICATE: .*plain ssh-ed25519 key/);
    });

    it("checks the algorithm and the signed session data of ssh's real RSA certificate request", () => {
      const real = requests.get('d-rsa');
      assert.ok(real?.signature && real.blob, 'the rsa login above did not run');
      const { blob } = real;
      assert.equal(verifyCertificateUserauth(real, { crypto: nodeCrypto }).signatureAlgorithm, 'rsa-sha2-512');
      // Advertised as rsa-sha2-256-cert but signed as rsa-sha2-512: refused, not verified either way.
      assert.throws(
        () => verifyCertificateUserauth({ ...real, key: { ...real.key, algo: 'rsa-sha2-256-cert-v01@openssh.com' } }, { crypto: nodeCrypto }),
        (e) => isCertError(e, 'ERR_ALGORITHM_MISMATCH'),
      );
      // The same signature replayed into another session (one byte of the session id differs).
      const otherSession = Buffer.from(blob);
      otherSession[4] = (otherSession[4] ?? 0) ^ 1;
      assert.throws(() => verifyCertificateUserauth({ ...real, blob: otherSession }, { crypto: nodeCrypto }), (e) => isCertError(e, 'ERR_BAD_SIGNATURE'));
      assert.throws(() => verifyCertificateUserauth({ key: real.key }, { crypto: nodeCrypto }), (e) => isProxyError(e, 'ERR_NO_SIGNATURE'));
    });

    it("is refused by ssh2's client when the certificate is not for the key that signs the exchange", async () => {
      // A server holding a genuine host certificate but not its private key: the kex signature,
      // made with another key, must not verify against the key inside the certificate.
      const certified = newKey('ed25519');
      const impostor = newKey('ed25519');
      const genuine = certificateIdentity(certified, issue(hostCa, certified, 'host', ['127.0.0.1'], 'stolen'));
      const parsed = ssh2.utils.parseKey(formatPrivateKey(impostor, { crypto: nodeCrypto }));
      assert.ok(!(parsed instanceof Error));
      const forged = Object.create(parsed, {
        type: { value: genuine.type },
        getPublicSSH: { value: () => genuine.getPublicSSH() },
      }) as ParsedKey;
      const rogue = new ssh2.Server({ hostKeys: [{ key: forged }] }, (client) => {
        client.on('error', () => {});
        client.on('authentication', (ctx) => ctx.reject());
      });
      await new Promise<void>((resolve) => rogue.listen(0, '127.0.0.1', () => resolve()));
      try {
        const address = rogue.address();
        const hostVerifier = verifier(hostCa);
        await assert.rejects(
          ssh2Exec({
            port: typeof address === 'object' && address !== null ? address.port : 0,
            username: 'root',
            key: userIdentity('ed25519', 'ed25519', 'd-rogue'),
            command: 'true',
            hostVerifier,
            serverHostKey: UPSTREAM_HOST_KEY_ALGORITHMS,
          }),
          /signature verification failed/,
        );
        // The certificate itself is fine: only the exchange signature gives the impostor away.
        assert.equal(hostVerifier.verdict?.accepted, true);
      } finally {
        await new Promise<void>((resolve) => rogue.close(() => resolve()));
      }
    });
  });
});
