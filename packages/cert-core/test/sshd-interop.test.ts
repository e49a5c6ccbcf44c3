// The real OpenSSH sshd and ssh of this machine (9.2p1) judge certificates signed by cert-core.
// One sshd serves every case: it trusts three user CAs, serves two host keys with certificates
// from our host CA, and re-reads its RevokedKeys file on every attempt, so cases rewrite it.
import { after, before, describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { SSHD_PATH, hasTool, runOk, sshRun, startSshd, tempDir } from '@portcullis/harness';
import type { RunResult, SshdHandle, TempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import {
  KrlBuilder,
  encodeKrl,
  DEFAULT_USER_EXTENSIONS,
  SshWriter,
  certTypeFor,
  encodePublicKey,
  encodeSignature,
  fingerprintSha256,
  flagOption,
  forceCommand,
  formatCertificate,
  formatPublicKey,
  keySigner,
  keyTypeLabel,
  parseCertificate,
  parsePublicKeyText,
  publicPart,
  signCertificate,
  sourceAddress,
  verifyCertificateSignature,
  writeKeyFields,
  writeOptions,
} from '../src/index.js';
import type { Certificate, CertificateTemplate, PublicKey, SignatureAlgorithm, Signer, SigningPrivateKey } from '../src/index.js';

const missingTools = [
  ...['ssh', 'ssh-keygen'].filter((t) => !hasTool(t)),
  ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH]),
];
const skip = missingTools.length > 0 ? `needs ${missingTools.join(', ')}` : false;

const REVOKED_SERIAL = 666n;

/**
 * The KRL sshd reads, revoking `serials` of certificates signed by `ca`. Made by ssh-keygen -k
 * for now; this is the one place to switch to cert-core's own KRL encoder.
 */
/** Our own KRL encoder (default safe layout): sshd is the judge of it here. */
async function krlRevokingSerials(_dir: TempDir, ca: PublicKey, serials: readonly bigint[]): Promise<Uint8Array> {
  const krl = new KrlBuilder().revokeSerials(ca, serials).build();
  return encodeKrl(krl, { generatedDate: BigInt(Math.floor(Date.now() / 1000)), comment: 'sshd interop' });
}

/**
 * Test-only encoder for a user certificate with no principals, which signCertificate refuses
 * to issue. Same layout as signCertificate otherwise, so sshd's only objection is the list.
 */
function signWithoutPrincipals(key: PublicKey, keyId: string, validAfter: bigint, validBefore: bigint, signer: Signer): Certificate {
  const w = new SshWriter(1024);
  w.string(certTypeFor(key.type)).string(nodeCrypto.randomBytes(32));
  writeKeyFields(w, key);
  w.uint64(1n).uint32(1).string(keyId).string(new Uint8Array(0)).uint64(validAfter).uint64(validBefore);
  writeOptions(w, []);
  writeOptions(w, DEFAULT_USER_EXTENSIONS.map(flagOption));
  w.string(new Uint8Array(0)).string(encodePublicKey(signer.publicKey));
  w.string(encodeSignature(signer.sign(w.finish())));
  return parseCertificate(w.finish());
}

type CaName = 'ed25519' | 'ecdsa' | 'rsa';

interface Fixture {
  readonly dir: TempDir;
  readonly now: bigint;
  /** The user's private key file, made by ssh-keygen, and its public half. */
  readonly identity: string;
  readonly userKey: PublicKey;
  readonly userCas: Readonly<Record<CaName, SigningPrivateKey>>;
  readonly hostCa: SigningPrivateKey;
  readonly validKrl: Uint8Array;
  /** known_hosts holding only `@cert-authority [127.0.0.1]:PORT <host CA>`. */
  readonly knownHosts: string;
}

describe('sshd interop: certificates signed by cert-core', { skip }, () => {
  let fx: Fixture;
  let sshd: SshdHandle | undefined;
  let dir: TempDir | undefined;

  function server(): SshdHandle {
    assert.ok(sshd, 'sshd did not start');
    return sshd;
  }

  before(async () => {
    dir = tempDir('portcullis-sshd-');
    const d = dir;
    const now = BigInt(Math.floor(Date.now() / 1000));
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'user', '-f', d.file('id_user')]);
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'host', '-f', d.file('host_ed25519')]);
    await runOk('ssh-keygen', ['-q', '-t', 'ecdsa', '-b', '256', '-N', '', '-C', 'host', '-f', d.file('host_ecdsa')]);
    const userCas = {
      ed25519: nodeCrypto.generate('ssh-ed25519'),
      ecdsa: nodeCrypto.generate('ecdsa-sha2-nistp256'),
      rsa: nodeCrypto.generate('ssh-rsa', { bits: 2048 }),
    };
    // An RSA host CA signing with rsa-sha2-256: the client must not compare the CA key type
    // with the signature algorithm (the jsch bug).
    const hostCa = nodeCrypto.generate('ssh-rsa', { bits: 2048 });
    const hostCert = (file: string, principals: readonly string[]): string => {
      const key = parsePublicKeyText(readFileSync(d.file(`${file}.pub`), 'utf8')).key;
      const cert = signCertificate(
        { key, kind: 'host', serial: 100n, keyId: `host ${file}`, principals, validAfter: now - 300n, validBefore: now + 3600n },
        keySigner(nodeCrypto, hostCa),
        { crypto: nodeCrypto, algorithm: 'rsa-sha2-256' },
      );
      writeFileSync(d.file(`${file}-cert.pub`), formatCertificate(cert) + '\n');
      return d.file(`${file}-cert.pub`);
    };
    const validKrl = await krlRevokingSerials(d, publicPart(userCas.ed25519), [REVOKED_SERIAL]);
    sshd = await startSshd({
      dir: d.path,
      trustedUserCAKeys: Object.values(userCas).map((ca) => formatPublicKey(publicPart(ca))).join('\n'),
      revokedKeys: validKrl,
      hostKey: [
        { privateKeyPath: d.file('host_ed25519'), certificatePath: hostCert('host_ed25519', ['127.0.0.1', 'localhost']) },
        { privateKeyPath: d.file('host_ecdsa'), certificatePath: hostCert('host_ecdsa', ['other.example.com']) },
      ],
    });
    const knownHosts = d.file('known_hosts');
    writeFileSync(knownHosts, `@cert-authority [127.0.0.1]:${sshd.port} ${formatPublicKey(publicPart(hostCa))}\n`);
    fx = {
      dir: d,
      now,
      identity: d.file('id_user'),
      userKey: parsePublicKeyText(readFileSync(d.file('id_user.pub'), 'utf8')).key,
      userCas,
      hostCa,
      validKrl,
      knownHosts,
    };
  });

  after(async () => {
    await sshd?.stop();
    dir?.remove();
  });

  /** Signs a user certificate for `root` (unless overridden) and writes it beside the identity. */
  function issue(
    name: string,
    overrides: Partial<CertificateTemplate> = {},
    ca: CaName = 'ed25519',
    algorithm?: SignatureAlgorithm,
  ): { path: string; cert: Certificate } {
    const cert = signCertificate(
      {
        key: fx.userKey,
        kind: 'user',
        serial: 1n,
        keyId: `case-${name}`,
        principals: ['root'],
        validAfter: fx.now - 120n,
        validBefore: fx.now + 600n,
        extensions: DEFAULT_USER_EXTENSIONS.map(flagOption),
        ...overrides,
      },
      keySigner(nodeCrypto, fx.userCas[ca]),
      algorithm === undefined ? { crypto: nodeCrypto } : { crypto: nodeCrypto, algorithm },
    );
    return { path: writeCert(name, cert), cert };
  }

  function writeCert(name: string, cert: Certificate): string {
    const path = fx.dir.file(`${name}-cert.pub`);
    writeFileSync(path, formatCertificate(cert, name) + '\n');
    return path;
  }

  function login(certificate: string, command = 'whoami'): Promise<RunResult> {
    return sshRun({ port: server().port, user: 'root', identity: fx.identity, certificate, command });
  }

  /** Replaces the RevokedKeys file the way an operator should: write aside, then rename. */
  function installKrl(krl: Uint8Array | 'garbage' | 'missing' | 'directory'): void {
    const path = server().revokedKeysPath;
    assert.ok(path);
    rmSync(path, { recursive: true, force: true });
    if (krl === 'missing') return;
    if (krl === 'directory') {
      mkdirSync(path);
      return;
    }
    writeFileSync(`${path}.tmp`, krl === 'garbage' ? 'SSHKRL\n\0 but not really a KRL\n' : krl);
    renameSync(`${path}.tmp`, path);
  }

  async function assertAccepted(name: string, cert: Certificate, since: number): Promise<void> {
    const ca = cert.signatureKey;
    await server().waitForLog(
      new RegExp(
        `Accepted publickey for root from 127\\.0\\.0\\.1 port \\d+ ssh2: ED25519-CERT ${escape(fingerprintSha256(nodeCrypto, fx.userKey))} ` +
          `ID case-${name} \\(serial ${cert.serial}\\) CA ${keyTypeLabel(ca)} ${escape(fingerprintSha256(nodeCrypto, ca))}`,
      ),
      { since },
    );
  }

  /** The client was refused, and sshd logged `reason` before failing this certificate. */
  async function assertRefused(name: string, r: RunResult, since: number, reason: string | RegExp): Promise<void> {
    assert.equal(r.code, 255, `ssh should fail; stdout=${r.stdout} stderr=${r.stderr}`);
    assert.match(r.stderr, /Permission denied \(publickey\)/);
    assert.equal(r.stdout, '');
    const failed = await server().waitForLog(new RegExp(`Failed publickey for root from .* ID case-${escape(name)} \\(serial`), { since });
    const log = server().log();
    const upToFailure = log.slice(since, log.indexOf(failed[0], since));
    if (typeof reason === 'string') assert.ok(upToFailure.includes(reason), `sshd log lacks "${reason}":\n${upToFailure}`);
    else assert.match(upToFailure, reason);
    assert.doesNotMatch(log.slice(since), /Accepted publickey/);
  }

  const signings: ReadonlyArray<[CaName, SignatureAlgorithm | undefined, SignatureAlgorithm]> = [
    ['ed25519', undefined, 'ssh-ed25519'],
    ['ecdsa', undefined, 'ecdsa-sha2-nistp256'],
    ['rsa', 'rsa-sha2-512', 'rsa-sha2-512'],
    ['rsa', 'rsa-sha2-256', 'rsa-sha2-256'],
  ];
  for (const [ca, algorithm, expected] of signings) {
    it(`accepts a valid user certificate from an ${ca} CA signing ${expected}`, async () => {
      const name = `accepted-${expected}`;
      const { path, cert } = issue(name, { serial: 10n }, ca, algorithm);
      assert.equal(cert.signature.algorithm, expected);
      const since = server().log().length;
      const t = await login(path, 'true');
      assert.equal(t.code, 0, t.stderr);
      assert.equal(t.stdout, '');
      const w = await login(path, 'whoami');
      assert.equal(w.code, 0, w.stderr);
      assert.equal(w.stdout, 'root\n');
      await assertAccepted(name, cert, since);
    });
  }

  it('refuses an expired certificate', async () => {
    const { path } = issue('expired', { validAfter: fx.now - 3600n, validBefore: fx.now - 60n });
    const since = server().log().length;
    await assertRefused('expired', await login(path), since, 'Certificate invalid: expired');
  });

  it('refuses a certificate that is not yet valid', async () => {
    const { path } = issue('future', { validAfter: fx.now + 600n, validBefore: fx.now + 3600n });
    const since = server().log().length;
    await assertRefused('future', await login(path), since, 'Certificate invalid: not yet valid');
  });

  it('refuses a certificate for other principals', async () => {
    // "root2" and "ro" would match a prefix or substring comparison; sshd matches exactly.
    const { path } = issue('wrong-principal', { principals: ['alice', 'root2', 'ro'] });
    const since = server().log().length;
    await assertRefused('wrong-principal', await login(path), since, 'Certificate invalid: name is not a listed principal');
  });

  it('refuses a certificate with no principals (hand-encoded: we refuse to issue one)', async () => {
    assert.throws(() => issue('no-principals', { principals: [] }), /without principals/);
    const cert = signWithoutPrincipals(fx.userKey, 'case-no-principals', fx.now - 120n, fx.now + 600n, keySigner(nodeCrypto, fx.userCas.ed25519));
    assert.deepEqual(cert.principals, []);
    assert.ok(verifyCertificateSignature(nodeCrypto, cert));
    const since = server().log().length;
    await assertRefused('no-principals', await login(writeCert('no-principals', cert)), since, 'Certificate lacks principal list');
  });

  it('refuses a certificate with an unknown critical option', async () => {
    const { path } = issue('unknown-critical', { criticalOptions: [flagOption('unknown-option@example.com')] });
    const since = server().log().length;
    await assertRefused('unknown-critical', await login(path), since, 'Certificate critical option "unknown-option@example.com" is not supported');
  });

  it('refuses a certificate whose source-address excludes 127.0.0.1', async () => {
    const { path } = issue('source-address', { criticalOptions: [sourceAddress(['10.0.0.0/8', '192.168.0.0/16'])] });
    const since = server().log().length;
    await assertRefused('source-address', await login(path), since, 'not from a permitted source address (127.0.0.1)');
  });

  it('accepts a certificate whose source-address includes 127.0.0.1', async () => {
    // The counterpart of the case above: the option itself is encoded in a way sshd reads.
    const { path, cert } = issue('source-address-ok', { criticalOptions: [sourceAddress(['10.0.0.0/8', '127.0.0.0/8'])] });
    const since = server().log().length;
    const r = await login(path);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'root\n');
    await assertAccepted('source-address-ok', cert, since);
  });

  it('refuses a certificate whose serial the KRL revokes under its CA, not under another CA', async () => {
    const { path } = issue('revoked', { serial: REVOKED_SERIAL });
    const since = server().log().length;
    await assertRefused('revoked', await login(path), since, /Authentication key ED25519-CERT \S+ revoked by file/);
    // The same serial from another CA is not in the KRL.
    const other = issue('same-serial-other-ca', { serial: REVOKED_SERIAL }, 'ecdsa');
    const since2 = server().log().length;
    const r = await login(other.path);
    assert.equal(r.code, 0, r.stderr);
    await assertAccepted('same-serial-other-ca', other.cert, since2);
  });

  it('refuses everyone while the KRL is garbage, missing or unreadable', async () => {
    const { path, cert } = issue('krl-broken', { serial: 20n });
    try {
      const broken = [
        ['garbage', 'invalid format'],
        ['missing', 'No such file or directory'],
        ['directory', 'Is a directory'],
      ] as const;
      for (const [kind, error] of broken) {
        installKrl(kind);
        const since = server().log().length;
        await assertRefused('krl-broken', await login(path), since, new RegExp(`Error checking authentication key ED25519-CERT \\S+ in revoked keys file \\S+: ${error}`));
      }
    } finally {
      installKrl(fx.validKrl);
    }
    // The very same certificate logs in once the KRL is readable again.
    const since = server().log().length;
    const r = await login(path);
    assert.equal(r.code, 0, r.stderr);
    await assertAccepted('krl-broken', cert, since);
  });

  it('enforces the force-command of the certificate', async () => {
    const { path, cert } = issue('force-command', { criticalOptions: [forceCommand('echo forced:$SSH_ORIGINAL_COMMAND')] });
    const since = server().log().length;
    const r = await login(path, 'whoami');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'forced:whoami\n');
    await assertAccepted('force-command', cert, since);
    await server().waitForLog(/Starting session: forced-command \(key-option\) 'echo forced:\$SSH_ORIGINAL_COMMAND' for root/, { since });
  });

  describe('host certificates', () => {
    function connect(knownHosts: string, hostKeyAlgorithm: string): Promise<RunResult> {
      const { path } = issue('host-check', { serial: 30n });
      return sshRun({
        port: server().port,
        user: 'root',
        identity: fx.identity,
        certificate: path,
        knownHosts,
        command: 'whoami',
        options: [`HostKeyAlgorithms=${hostKeyAlgorithm}`],
      });
    }

    it('the stock client trusts our host certificate through @cert-authority alone', async () => {
      const before = readFileSync(fx.knownHosts, 'utf8');
      const r = await connect(fx.knownHosts, 'ssh-ed25519-cert-v01@openssh.com');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'root\n');
      assert.doesNotMatch(r.stderr, /Warning|authenticity/);
      assert.equal(readFileSync(fx.knownHosts, 'utf8'), before);
    });

    it('fails host key verification when known_hosts names another CA', async () => {
      const wrongCa = nodeCrypto.generate('ssh-rsa', { bits: 2048 });
      const path = fx.dir.file('known_hosts_wrong_ca');
      writeFileSync(path, `@cert-authority [127.0.0.1]:${server().port} ${formatPublicKey(publicPart(wrongCa))}\n`);
      const r = await connect(path, 'ssh-ed25519-cert-v01@openssh.com');
      assert.equal(r.code, 255);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /Host key verification failed/);
    });

    it('fails when the host certificate does not name 127.0.0.1', async () => {
      // sshd's ECDSA host key carries a certificate for other.example.com only.
      const r = await connect(fx.knownHosts, 'ecdsa-sha2-nistp256-cert-v01@openssh.com');
      assert.equal(r.code, 255);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /Certificate invalid: name is not a listed principal/);
      assert.match(r.stderr, /Host key verification failed/);
    });
  });
});

test('startSshd fails with sshd\'s own complaint when sshd cannot start', { skip }, async () => {
  const dir = tempDir('portcullis-sshd-bad-');
  try {
    await assert.rejects(startSshd({ dir: dir.path, extraConfig: ['NoSuchKeyword yes'] }), /exited before listening[\s\S]*NoSuchKeyword/);
  } finally {
    dir.remove();
  }
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
