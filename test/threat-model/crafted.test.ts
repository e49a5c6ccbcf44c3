// Adversary 5 and the certificate CVEs of the reference (§5) against a real proxy and a real
// OpenSSH sshd: certificates that a careless or hostile CA path could produce, each signed by a
// CA both of them trust, each refused by both. The proxy runs with the stand-in authority
// (packages/proxy/test/support) so these tests hold the user CA's private key; the
// real-auth threats (offboarding, expiry, impersonation) are in system.test.ts. The `direct`
// sshd below is an oracle trusting the user CA, as no real target does: targets (the fixture's
// web01) trust the upstream CA only, and the first tests check that split.
//
// Every refusal is paired with a control: the same identity made well-formed is accepted, so a
// refusal proves the defect is what is refused, not a broken fixture.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import type { ConnectConfig, ParsedKey } from 'ssh2';
import {
  SshWriter,
  certTypeFor,
  encodePublicKey,
  encodeSignature,
  formatPrivateKey,
  formatPublicKey,
  generateKey,
  isCertError,
  parseCertificate,
  publicPart,
  signData,
  trustedAuthorities,
  writeKeyFields,
} from '@portcullis/cert-core';
import type { Certificate, PublicKey, SigningPrivateKey, SshSignature } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { run, startSshd } from '@portcullis/harness';
import type { SshdHandle } from '@portcullis/harness';
import { UPSTREAM_HOST_KEY_ALGORITHMS, certificateIdentity } from '../../packages/proxy/src/ssh2-certs.js';
import { access, skipWithoutOpenSsh, startFixture } from '../../packages/proxy/test/support/fixture.js';
// The fixture's ssh reads only the two paths; a crafted certificate may not even parse.
import type { Fixture, Identity } from '../../packages/proxy/test/support/fixture.js';

interface Craft {
  readonly kind?: 'user' | 'host';
  readonly principals?: readonly string[];
  readonly critical?: readonly (readonly [string, string])[];
  /** Sign over these bytes as the CA key blob instead of the CA's own (a certificate as CA). */
  readonly signatureKeyBlob?: Uint8Array;
  readonly sign?: (data: Uint8Array) => SshSignature;
}

/** Generous limits: CI machines run these beside other suites, at load averages far above the core count. */
const LOADED_MS = 60_000;

const now = (): bigint => BigInt(Math.floor(Date.now() / 1000));

/**
 * Encodes a certificate by hand (PROTOCOL.certkeys): cert-core's signCertificate refuses every
 * defect tested here, which is the point, so the attacker's side needs its own encoder.
 */
function craft(subject: SigningPrivateKey, ca: SigningPrivateKey, c: Craft = {}): Uint8Array {
  const key = publicPart(subject);
  const w = new SshWriter(1024);
  w.string(certTypeFor(key.type)).string(nodeCrypto.randomBytes(32));
  writeKeyFields(w, key);
  w.uint64(BigInt(Date.now()))
    .uint32(c.kind === 'host' ? 2 : 1)
    .string('alice req=threat-model')
    .nested((x) => {
      for (const p of c.principals ?? ['root']) x.string(p);
    })
    .uint64(now() - 60n)
    .uint64(now() + 600n);
  // Options: name, then the value wrapped in a string; a flag has an empty value.
  const options = (list: readonly (readonly [string, string])[]): void => {
    w.nested((x) => {
      for (const [name, value] of list) x.string(name).string(value === '' ? new Uint8Array(0) : new SshWriter().string(value).finish());
    });
  };
  options(c.critical ?? []);
  options(c.kind === 'host' ? [] : [['permit-pty', '']]);
  w.string(new Uint8Array(0)).string(c.signatureKeyBlob ?? encodePublicKey(publicPart(ca)));
  const sig = (c.sign ?? ((d: Uint8Array) => signData(nodeCrypto, ca, d)))(w.peek());
  w.string(encodeSignature(sig));
  return w.finish();
}

/** RSA with SHA-1 (`ssh-rsa`): cert-core refuses to make it, node:crypto does not. */
const sha1Rsa = (ca: SigningPrivateKey) => (data: Uint8Array): SshSignature => ({ algorithm: 'ssh-rsa', bytes: nodeCrypto.sign(ca, 'sha1', data) });

describe('threat model: crafted certificates at the proxy and at sshd', { skip: skipWithoutOpenSsh, timeout: 300_000 }, () => {
  let f: Fixture;
  let sshd: SshdHandle;
  let rsaCA: SigningPrivateKey;
  let n = 0;

  before(async () => {
    f = await startFixture({ users: [access('alice')], proxy: { throttle: { baseDelayMs: 10, maxDelayMs: 50 } } });
    rsaCA = generateKey(nodeCrypto, 'ssh-rsa', { bits: 2048 } as never);
    // Both trust the stand-in's user CA and an RSA CA (for the SHA-1 case); the proxy reads
    // its CA list lazily at the first login, so replacing the method now is in time.
    const cas: PublicKey[] = [publicPart(f.authority.userCA), publicPart(rsaCA)];
    f.authority.userCAs = async () => cas;
    mkdirSync(f.dir.file('sshd-direct'));
    sshd = await startSshd({
      dir: f.dir.file('sshd-direct'),
      trustedUserCAKeys: cas.map((k) => formatPublicKey(k)).join('\n') + '\n',
      authorizedPrincipalsFile: { contents: 'root\n' },
    });
  });

  after(async () => {
    await sshd?.stop();
    await f?.stop();
  });

  /** Writes the subject key and the crafted certificate as ssh reads them. */
  const identity = (subject: SigningPrivateKey, blob: Uint8Array): { identity: string; certificate: string } => {
    const path = f.dir.file(`crafted-${++n}`);
    writeFileSync(path, formatPrivateKey(subject, { crypto: nodeCrypto }), { mode: 0o600 });
    const type = new TextDecoder().decode(blob.subarray(4, 4 + new DataView(blob.buffer, blob.byteOffset).getUint32(0)));
    writeFileSync(`${path}-cert.pub`, `${type} ${Buffer.from(blob).toString('base64')}\n`);
    return { identity: path, certificate: `${path}-cert.pub` };
  };

  const viaProxy = (id: { identity: string; certificate: string }, login = 'root') => f.ssh({ user: `${login}%web01`, as: id as Identity, command: 'id -un', timeoutMs: LOADED_MS });
  const direct = (id: { identity: string; certificate: string }, login = 'root') =>
    run('ssh', [
      '-F', '/dev/null',
      ...['IdentitiesOnly=yes', 'IdentityAgent=none', `IdentityFile=${id.identity}`, `CertificateFile=${id.certificate}`, 'BatchMode=yes',
        'StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'LogLevel=ERROR', 'ConnectTimeout=10'].flatMap((o) => ['-o', o]),
      '-p', String(sshd.port), `${login}@127.0.0.1`, '--', 'id -un',
    ], { timeoutMs: LOADED_MS });

  async function refusedBoth(what: string, reason: string, id: { identity: string; certificate: string }, login = 'root'): Promise<void> {
    f.audit.length = 0;
    const p = await viaProxy(id, login);
    assert.equal(p.code, 255, `proxy accepted ${what}: ${p.stdout}`);
    // Refused for the defect itself, not for some other reason the craft might have introduced.
    await f.waitForAudit('session.refused', (e) => e.fields['reason'] === reason, 30_000);
    assert.match(p.stderr, /Permission denied/);
    const d = await direct(id, login);
    assert.equal(d.code, 255, `sshd accepted ${what}: ${d.stdout}`);
    assert.match(d.stderr, /Permission denied/);
  }

  /** ssh straight to the fixture's target web01, around the proxy, as someone on its network could. */
  const atTarget = (id: { identity: string; certificate: string }) =>
    run('ssh', [
      '-F', '/dev/null',
      ...['IdentitiesOnly=yes', 'IdentityAgent=none', `IdentityFile=${id.identity}`, `CertificateFile=${id.certificate}`, 'BatchMode=yes',
        'StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'LogLevel=ERROR', 'ConnectTimeout=10'].flatMap((o) => ['-o', o]),
      '-p', String(f.web01.port), 'root@127.0.0.1', '--', 'id -un',
    ], { timeoutMs: LOADED_MS });

  it('bypass: an engineer\'s own certificate opens the proxy, and not the target behind it (which trusts the upstream CA only)', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    const id = identity(subject, craft(subject, f.authority.userCA));
    const p = await viaProxy(id);
    assert.equal(p.code, 0, p.stderr);
    assert.equal(p.stdout, 'root\n');
    const since = f.web01.log().length;
    const t = await atTarget(id);
    assert.equal(t.code, 255, `the target accepted a user certificate directly: ${t.stdout}`);
    assert.match(t.stderr, /Permission denied/);
    await f.web01.waitForLog(/Failed publickey for root .*-CERT /, { since, timeoutMs: LOADED_MS });
  });

  it('the proxy does not take a certificate of the upstream CA from a client (that CA is for targets)', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    const id = identity(subject, craft(subject, f.authority.upstreamCA));
    f.audit.length = 0;
    const p = await viaProxy(id);
    assert.equal(p.code, 255, `proxy accepted an upstream CA certificate: ${p.stdout}`);
    await f.waitForAudit('session.refused', (e) => e.fields['reason'] === 'ERR_UNTRUSTED_CA', 30_000);
    // The target itself would take it: what keeps it from users is that only the proxy holds such keys.
    assert.equal((await atTarget(id)).code, 0);
  });

  it('control: a well-formed certificate from each trusted CA is accepted by both', async () => {
    for (const ca of [f.authority.userCA, rsaCA]) {
      const subject = generateKey(nodeCrypto, 'ssh-ed25519');
      const id = identity(subject, craft(subject, ca));
      const p = await viaProxy(id);
      assert.equal(p.code, 0, p.stderr);
      assert.equal(p.stdout, 'root\n');
      const d = await direct(id);
      assert.equal(d.code, 0, d.stderr);
    }
  });

  it('adversary 5 / CVE-2024-7594 (Vault): a certificate with no principals is refused (valid-for-everyone is never accepted)', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    await refusedBoth('empty principals', 'ERR_NO_PRINCIPALS', identity(subject, craft(subject, f.authority.userCA, { principals: [] })));
  });

  it('adversary 5: a wildcard principal grants nothing ("*" is a name, not a pattern)', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    await refusedBoth('principal *', 'ERR_WRONG_PRINCIPAL', identity(subject, craft(subject, f.authority.userCA, { principals: ['*'] })));
  });

  it('CVE-2026-35414: the principal "root,alice" does not grant root', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    await refusedBoth('principal root,alice', 'ERR_WRONG_PRINCIPAL', identity(subject, craft(subject, f.authority.userCA, { principals: ['root,alice'] })));
  });

  it('an unknown critical option is refused', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    await refusedBoth('unknown critical option', 'ERR_UNKNOWN_CRITICAL_OPTION', identity(subject, craft(subject, f.authority.userCA, { critical: [['portcullis-unknown@example.test', 'x']] })));
  });

  it('a certificate signed with SHA-1 RSA (ssh-rsa signature) by a trusted RSA CA is refused', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    await refusedBoth('ssh-rsa CA signature', 'ERR_ALGORITHM_MISMATCH', identity(subject, craft(subject, rsaCA, { sign: sha1Rsa(rsaCA) })));
  });

  it('CVE-2025-49825 (Teleport): a certificate whose signing key is itself a certificate is refused at parse, at the proxy and at sshd', async () => {
    // The "CA" is a user certificate the trusted CA issued; the attacker holds its private key.
    const middle = generateKey(nodeCrypto, 'ssh-ed25519');
    const middleCert = craft(middle, f.authority.userCA);
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    const blob = craft(subject, middle, { signatureKeyBlob: middleCert });
    assert.throws(() => parseCertificate(blob), (e: unknown) => isCertError(e));
    // The proxy cannot parse it as a certificate at all, so it counts as no certificate offered.
    await refusedBoth('certificate as CA', 'ERR_NOT_A_CERTIFICATE', identity(subject, blob));
  });

  it('CVE-2025-49825: a certificate in a trusted-CA list is refused at configuration', () => {
    const middle = generateKey(nodeCrypto, 'ssh-ed25519');
    const cert: Certificate = parseCertificate(craft(middle, f.authority.userCA));
    assert.throws(() => trustedAuthorities([cert.raw]));
    assert.throws(() => trustedAuthorities([cert as unknown as PublicKey]));
  });

  it('a host certificate presented as a user one, and CVE-2026-35387 (an ECDSA curve mismatch in userauth), are refused by both (our ssh2 client offers them: OpenSSH\'s will not)', async () => {
    const subject = generateKey(nodeCrypto, 'ssh-ed25519');
    const host = parseCertificate(craft(subject, f.authority.userCA, { kind: 'host', principals: ['root'] }));
    const user = parseCertificate(craft(subject, f.authority.userCA));
    const login = async (port: number, username: string, key: ParsedKey): Promise<'ready' | string> =>
      new Promise((resolve) => {
        const c = new ssh2.Client();
        c.once('ready', () => {
          c.end();
          resolve('ready');
        });
        c.once('error', (e: Error & { level?: string }) => resolve(e.level === 'client-authentication' ? e.level : `${e.level}: ${e.message}`));
        // One publickey attempt with the certificate-bearing key, as the proxy's upstream dials.
        let tried = false;
        const authHandler = (_m: unknown, _p: unknown, next: (a: unknown) => void): void => {
          next(tried ? false : { type: 'publickey', username, key });
          tried = true;
        };
        const cfg: ConnectConfig = { host: '127.0.0.1', port, username, hostVerifier: () => true, readyTimeout: LOADED_MS, authHandler: authHandler as never, algorithms: { serverHostKey: UPSTREAM_HOST_KEY_ALGORITHMS } };
        c.connect(cfg);
      });
    // Control: the same key as a user certificate logs in at both.
    assert.equal(await login(sshd.port, 'root', certificateIdentity(subject, user)), 'ready');
    assert.equal(await login(f.proxy.port, 'root%web01', certificateIdentity(subject, user)), 'ready');
    assert.equal(await login(sshd.port, 'root', certificateIdentity(subject, host)), 'client-authentication');
    assert.equal(await login(f.proxy.port, 'root%web01', certificateIdentity(subject, host)), 'client-authentication');

    // CVE-2026-35387 (ECDSA curve confusion): a P-256 certificate and signature advertised in
    // userauth as P-384. The same key advertised under its own curve is the control.
    const p256 = generateKey(nodeCrypto, 'ecdsa-sha2-nistp256');
    const honest = certificateIdentity(p256, parseCertificate(craft(p256, f.authority.userCA)));
    const confused = Object.create(honest, { type: { value: 'ecdsa-sha2-nistp384-cert-v01@openssh.com', enumerable: true } }) as ParsedKey;
    assert.equal(await login(sshd.port, 'root', honest), 'ready');
    assert.equal(await login(f.proxy.port, 'root%web01', honest), 'ready');
    assert.equal(await login(sshd.port, 'root', confused), 'client-authentication');
    assert.equal(await login(f.proxy.port, 'root%web01', confused), 'client-authentication');
  });
});
