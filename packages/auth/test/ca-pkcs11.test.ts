// CA keys in a PKCS#11 token (SoftHSM2): auth issues user certificates signed inside the token,
// a real sshd trusts the token key's public line and accepts them from a stock ssh client,
// ssh-keygen reads them, and a wrong PIN or a restarted token behaves as an operator expects.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { SSHD_PATH, hasTool, runOk, sshRun, startSshd } from '@portcullis/harness';
import type { SshdHandle } from '@portcullis/harness';
import { fingerprintSha256, formatPublicKey, parseCertificateText, parsePublicKeyText, publicKeysEqual, utf8, verifySignature } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { AuthError, isAuthError } from '../src/errors.js';
import { CaKeystore } from '../src/ca/keystore.js';
import { openPkcs11Signer } from '../src/ca/pkcs11.js';
import type { Pkcs11Signer } from '../src/ca/pkcs11.js';
import { openTokenSigners } from '../src/ca/pkcs11-config.js';
import { issueUserCertificate } from '../src/ca/issuer.js';
import { decideHostCertificate } from '../src/ca/issue.js';
import { signDraft } from '../src/ca/signing.js';
import { createLoginSession } from '../src/sessions/login-session.js';
import type { LoginSession } from '../src/sessions/login-session.js';
import { caFixture, sshKeygen } from './ca-fixture.js';
import type { CaFixture } from './ca-fixture.js';
import { SOFTHSM_MODULE, softToken, softhsmMissing } from './ca-pkcs11-fixture.js';
import type { SoftToken } from './ca-pkcs11-fixture.js';

const missing = [softhsmMissing(), ...['ssh', 'ssh-keygen'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])].filter(Boolean);
const skip = missing.length > 0 ? missing.join('; ') : false;

const WRONG_PIN = '73914628';

describe('CA keys in a PKCS#11 token (SoftHSM2)', { skip }, () => {
  let fx: CaFixture;
  let token: SoftToken;
  let identity: { path: string; publicLine: string };
  let session: LoginSession;
  const logs: string[] = [];
  const signers: Pkcs11Signer[] = [];

  const open = (keyLabel: string, pin = token.pin): Pkcs11Signer => {
    const s = openPkcs11Signer({ module: SOFTHSM_MODULE, tokenLabel: token.label, keyLabel, pin, crypto: nodeCrypto, purpose: 'user CA', log: (m) => logs.push(m) });
    signers.push(s);
    return s;
  };

  before(async () => {
    fx = await caFixture();
    token = await softToken(fx.dir);
    await token.generate('EC:edwards25519', 'user-ca-ed25519', '01');
    await token.generate('EC:prime256v1', 'user-ca-p256', '02');
    await token.generate('EC:prime256v1', 'host-ca-p256', '03');
    await fx.putRole(`
kind: role
name: admin
spec:
  allow: { logins: [root], host_labels: { '*': '*' } }
  options: { max_cert_ttl: 10m }
`);
    fx.addUser('alice', ['admin']);
    identity = await sshKeygen(fx.dir, 'alice_key');
    session = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
  });

  after(async () => {
    for (const s of signers) s.close();
    await fx?.close();
  });

  // First, while no session is open: login is per token and process, so once a signer has logged
  // in, C_Login answers CKR_USER_ALREADY_LOGGED_IN whatever the PIN (as at a real service start).
  it('a wrong PIN is ERR_CONFIG naming the token and the CKR code, never the PIN', async () => {
    assert.throws(
      () => open('user-ca-p256', WRONG_PIN),
      (e: unknown) => {
        assert.ok(isAuthError(e, 'ERR_CONFIG'), String(e));
        assert.match(e.message, /refused the PIN .*"portcullis-ca".*CKR_PIN_INCORRECT/);
        assert.doesNotMatch(JSON.stringify({ m: e.message, s: e.stack, d: e.details }), new RegExp(WRONG_PIN));
        return true;
      },
    );
    // Through the config: a PIN file others can read is refused before the token sees it.
    const pinFile = fx.dir.file('pin');
    writeFileSync(pinFile, `${WRONG_PIN}\n`, { mode: 0o644 });
    chmodSync(pinFile, 0o644);
    const ca = (pin_file: string) => ({ user: { backend: 'pkcs11' as const, pkcs11: { module: SOFTHSM_MODULE, token_label: token.label, key_label: 'user-ca-p256', pin_file } }, host: {} });
    assert.throws(() => openTokenSigners(ca(pinFile), { crypto: nodeCrypto }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /ca\.user\.pkcs11\.pin_file: .*mode 0644/.test(e.message));
    chmodSync(pinFile, 0o600);
    assert.throws(
      () => openTokenSigners(ca(pinFile), { crypto: nodeCrypto }),
      (e: unknown) => isAuthError(e, 'ERR_CONFIG') && e.message.includes('CKR_PIN_INCORRECT') && !e.message.includes(WRONG_PIN),
    );
    writeFileSync(pinFile, `${token.pin}\n`);
    const opened = openTokenSigners(ca(pinFile), { crypto: nodeCrypto });
    assert.ok(opened.user !== undefined && opened.host === undefined);
    opened.user.close();
    // And from the environment.
    const fromEnv = openTokenSigners(
      { user: {}, host: { backend: 'pkcs11', pkcs11: { module: SOFTHSM_MODULE, token_label: token.label, key_label: 'host-ca-p256', pin_env: 'CA_PIN' } } },
      { crypto: nodeCrypto, env: { CA_PIN: token.pin } },
    );
    assert.equal(fromEnv.host?.publicKey.type, 'ecdsa-sha2-nistp256');
    fromEnv.host?.close();
  });

  for (const [algorithm, keyLabel, caType] of [
    ['ed25519', 'user-ca-ed25519', 'ED25519'],
    ['ecdsa-p256', 'user-ca-p256', 'ECDSA'],
  ] as const) {
    it(`${algorithm}: auth issues a user certificate signed in the token, sshd accepts it, ssh-keygen -L reads it`, async () => {
      const signer = open(keyLabel);
      const stateDir = fx.dir.file(`state-${algorithm}`);
      fx.keystore = CaKeystore.open({ stateDir, crypto: nodeCrypto, tokenSigners: { user: signer } });
      const active = fx.keystore.active('user');
      assert.ok(publicKeysEqual(active.publicKey, signer.publicKey));
      // Only the public half is on disk: no private key file for the token key.
      assert.equal(existsSync(fx.keystore.keyPath(active.id)), false);
      assert.equal(readFileSync(`${fx.keystore.keyPath(active.id)}.pub`, 'utf8').trim(), formatPublicKey(signer.publicKey, `portcullis-user-ca-${active.id}`));
      // Reopening lists the same key from the index, still without a file.
      fx.keystore = CaKeystore.open({ stateDir, crypto: nodeCrypto, tokenSigners: { user: signer } });
      assert.equal(fx.keystore.active('user').id, active.id);

      const issued = await issueUserCertificate(fx.deps(), session, identity.publicLine, { requestId: `hsm-${algorithm}` });
      assert.equal(issued.caFingerprint, fingerprintSha256(nodeCrypto, signer.publicKey));
      const certPath = fx.dir.file(`alice-${algorithm}-cert.pub`);
      writeFileSync(certPath, issued.text + '\n');
      const printed = (await runOk('ssh-keygen', ['-L', '-f', certPath])).stdout;
      assert.match(printed, new RegExp(`Signing CA: ${caType} ${active.fingerprint.replace(/[+/]/g, '\\$&')}`));
      assert.match(printed, /Principals: \n\s+root\n/);

      const sshdDir = fx.dir.file(`sshd-${algorithm}`);
      mkdirSync(sshdDir);
      const sshd: SshdHandle = await startSshd({ dir: sshdDir, trustedUserCAKeys: fx.keystore.authorizedKeys('user') });
      try {
        const r = await sshRun({ port: sshd.port, user: 'root', identity: identity.path, certificate: certPath, command: 'whoami' });
        assert.equal(r.code, 0, r.stderr + sshd.log());
        assert.equal(r.stdout.trim(), 'root');
        await sshd.waitForLog(/Accepted publickey for root .* ID alice req=hsm-/);
      } finally {
        await sshd.stop();
      }
    });
  }

  it('both CAs in the token: ssh verifies a host certificate signed in it against the @cert-authority line', async () => {
    const userSigner = open('user-ca-ed25519');
    const hostSigner = open('host-ca-p256');
    fx.keystore = CaKeystore.open({ stateDir: fx.dir.file('state-both'), crypto: nodeCrypto, tokenSigners: { user: userSigner, host: hostSigner } });
    const sshdDir = fx.dir.file('sshd-both');
    mkdirSync(sshdDir);
    const hostKey = await sshKeygen(fx.dir, 'host_ecdsa_key', 'ecdsa');
    const decided = decideHostCertificate({ hostname: 'web01', names: ['127.0.0.1'], publicKey: parsePublicKeyText(hostKey.publicLine).key, now: Date.now(), requestId: 'hsm-host' });
    assert.ok(decided.ok);
    const hostCert = await signDraft(fx.deps(), 'host', decided.value, Date.now());
    writeFileSync(`${hostKey.path}-cert.pub`, hostCert.text + '\n');
    assert.match((await runOk('ssh-keygen', ['-L', '-f', `${hostKey.path}-cert.pub`])).stdout, /Type: ecdsa-sha2-nistp256-cert-v01@openssh.com host certificate[\s\S]*Signing CA: ECDSA /);
    const issued = await issueUserCertificate(fx.deps(), session, identity.publicLine, { requestId: 'hsm-both' });
    const certPath = fx.dir.file('alice-both-cert.pub');
    writeFileSync(certPath, issued.text + '\n');
    const knownHosts = fx.dir.file('known_hosts_both');
    writeFileSync(knownHosts, fx.keystore.knownHostsLines());
    const sshd = await startSshd({ dir: sshdDir, trustedUserCAKeys: fx.keystore.authorizedKeys('user'), hostKey: { privateKeyPath: hostKey.path, certificatePath: `${hostKey.path}-cert.pub` } });
    try {
      const r = await sshRun({ port: sshd.port, user: 'root', identity: identity.path, certificate: certPath, knownHosts, command: 'echo connected', options: ['HostKeyAlgorithms=ecdsa-sha2-nistp256-cert-v01@openssh.com'] });
      assert.equal(r.code, 0, r.stderr + sshd.log());
      assert.equal(r.stdout.trim(), 'connected');
    } finally {
      await sshd.stop();
    }
  });

  it('the public key read from the token is the one OpenSSH reads from it (ssh-keygen -D)', async () => {
    const signer = open('host-ca-p256');
    const listed = (await runOk('ssh-keygen', ['-D', SOFTHSM_MODULE], { env: token.env })).stdout;
    const keys = listed.split('\n').filter((l) => l.startsWith('ecdsa-')).map((l) => parsePublicKeyText(l).key);
    assert.ok(keys.some((k) => publicKeysEqual(k, signer.publicKey)), listed);
  });

  it('missing token or key labels are ERR_CONFIG that say what was looked for', () => {
    assert.throws(() => openPkcs11Signer({ module: SOFTHSM_MODULE, tokenLabel: 'no-such-token', keyLabel: 'x', pin: token.pin, crypto: nodeCrypto }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /no token labelled "no-such-token"/.test(e.message));
    assert.throws(() => open('no-such-key'), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /no private key labelled "no-such-key"/.test(e.message));
    assert.throws(() => openPkcs11Signer({ module: '/nonexistent/libpkcs11.so', tokenLabel: 't', keyLabel: 'x', pin: '1', crypto: nodeCrypto }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /cannot load the PKCS#11 module/.test(e.message));
  });

  it('signing goes on after the token drops every session and after the module is finalized', () => {
    const signer = open('user-ca-ed25519');
    const data = utf8('to be signed');
    assert.ok(verifySignature(nodeCrypto, signer.publicKey, signer.sign(data), data));
    // Another user of the same library in this process: what a token restart looks like to us.
    const p = createRequire(import.meta.url)('pkcs11js') as typeof import('pkcs11js');
    const other = new p.PKCS11();
    other.load(SOFTHSM_MODULE);
    try {
      other.C_Initialize();
    } catch (e) {
      if ((e as { code?: number }).code !== p.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
    }
    for (const slot of other.C_GetSlotList(true)) other.C_CloseAllSessions(slot);
    logs.length = 0;
    signer.check(); // what the readiness check calls: it recovers the session too
    assert.ok(logs.some((l) => /CKR_SESSION_HANDLE_INVALID .*reopening the session/.test(l)), logs.join('\n'));
    for (const slot of other.C_GetSlotList(true)) other.C_CloseAllSessions(slot);
    logs.length = 0;
    assert.ok(verifySignature(nodeCrypto, signer.publicKey, signer.sign(data), data));
    assert.ok(logs.some((l) => /CKR_SESSION_HANDLE_INVALID .*reopening the session/.test(l)), logs.join('\n'));

    other.C_Finalize();
    logs.length = 0;
    assert.ok(verifySignature(nodeCrypto, signer.publicKey, signer.sign(data), data));
    assert.ok(logs.some((l) => /CKR_CRYPTOKI_NOT_INITIALIZED/.test(l)), logs.join('\n'));
    other.close();
  });

  it('refuses an algorithm the token key cannot make', () => {
    const signer = open('user-ca-p256');
    assert.throws(() => signer.sign(utf8('x'), 'ssh-ed25519'), /cannot sign as ssh-ed25519/);
    assert.ok(!(signer.sign(utf8('x')) instanceof AuthError));
  });
});
