// Minting user certificates against a real redis-server and judged by the real sshd: accepted
// for an allowed login, refused for another and after expiry; locks, roles, MFA and revoked keys
// refuse the next mint without touching Redis; serials survive a Redis restart and a new key store.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { SSHD_PATH, hasTool, sshRun, startSshd } from '@portcullis/harness';
import type { RunResult, SshdHandle } from '@portcullis/harness';
import { parseCertificateText, permissionsFromOptions, publicKeysEqual } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { isAuthError } from '../src/errors.js';
import { userCertsKey } from '../src/store/keys.js';
import { createLoginSession } from '../src/sessions/login-session.js';
import type { LoginSession } from '../src/sessions/login-session.js';
import { CaKeystore } from '../src/ca/keystore.js';
import { issueUserCertificate } from '../src/ca/issuer.js';
import type { IssuedCertificate } from '../src/ca/signing.js';
import { SERIAL_CLOCK_SHIFT, lastSerial } from '../src/ca/serials.js';
import { createLock, removeLock } from '../src/revocation/locks.js';
import { revoke } from '../src/revocation/revocations.js';
import { caFixture, escapeRe, snapshot, sshKeygen } from './ca-fixture.js';
import type { CaFixture } from './ca-fixture.js';

const missing = [...['ssh', 'ssh-keygen'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

describe('issuing user certificates', { skip }, () => {
  let fx: CaFixture;
  let sshd: SshdHandle;
  let identity: { path: string; publicLine: string };
  let session: LoginSession;

  before(async () => {
    fx = await caFixture({ aof: true });
    await fx.putRole(`
kind: role
name: admin
spec:
  allow: { logins: [root, '{{user.name}}'], host_labels: { '*': '*' } }
  options: { max_cert_ttl: 10m, agent_forwarding: true }
`);
    await fx.putRole(`
kind: role
name: strict
spec:
  allow: { logins: [root] }
  options: { require_session_mfa: true, pin_source_ip: true }
`);
    fx.addUser('alice', ['admin']);
    fx.addUser('mallory', ['strict']);
    identity = await sshKeygen(fx.dir, 'id_alice');
    sshd = await startSshd({ dir: fx.dir.path, trustedUserCAKeys: fx.keystore.authorizedKeys('user') });
    session = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
  });

  after(async () => {
    await sshd?.stop();
    await fx?.close();
  });

  function writeCert(name: string, issued: IssuedCertificate): string {
    const path = fx.dir.file(`${name}-cert.pub`);
    writeFileSync(path, issued.text + '\n');
    return path;
  }

  function login(user: string, certificate: string): Promise<RunResult> {
    return sshRun({ port: sshd.port, user, identity: identity.path, certificate, command: 'whoami' });
  }

  it('a minted certificate logs in for an allowed login, and sshd logs who it was', async () => {
    const issued = await issueUserCertificate(fx.deps(), session, identity.publicLine, { requestId: 'mint-1' });
    assert.deepEqual(issued.principals, ['alice', 'root']);
    // The login session it was minted under, as audit events name it: logging out ends it at the proxy.
    assert.equal(issued.keyId, `alice req=mint-1 sess=${session.id.slice(0, 16)}`);
    assert.ok(issued.validBefore - issued.validAfter === 360_000, 'five minutes plus the minute back-dated');
    const cert = parseCertificateText(issued.text).cert;
    assert.ok(publicKeysEqual(cert.signatureKey, fx.keystore.active('user').publicKey));
    const perms = permissionsFromOptions(cert.criticalOptions, cert.extensions);
    assert.equal(perms.pty, true);
    assert.equal(perms.agentForwarding, true);
    assert.equal(perms.portForwarding, false);
    const since = sshd.log().length;
    const r = await login('root', writeCert('alice', issued));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'root');
    await sshd.waitForLog(new RegExp(`Accepted publickey for root .* ID ${escapeRe(issued.keyId)} \\(serial ${issued.serial}\\)`), { since });
    // Recorded under the user for revoke-by-user, scored by expiry.
    assert.equal(Number(await fx.redis.zscore(userCertsKey('alice'), issued.serial.toString())), issued.validBefore);
  });

  it('the same certificate is refused for a login it does not name', async () => {
    const issued = await issueUserCertificate(fx.deps(), session, identity.publicLine);
    const r = await login('nobody', writeCert('alice-2', issued));
    assert.equal(r.code, 255);
    assert.match(r.stderr, /Permission denied/);
  });

  it('an expired certificate is refused by sshd', async () => {
    const deps = { ...fx.deps(), clock: () => Date.now() - 20 * 60_000 };
    const old = await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now() - 20 * 60_000);
    const issued = await issueUserCertificate(deps, old.session, identity.publicLine);
    assert.ok(issued.validBefore < Date.now());
    const since = sshd.log().length;
    const r = await login('root', writeCert('expired', issued));
    assert.equal(r.code, 255);
    await sshd.waitForLog(/expired|Certificate invalid/, { since });
  });

  it('audit events and metrics record issuance and refusal', async () => {
    const before = fx.events.length;
    const issued = await issueUserCertificate(fx.deps(), session, identity.publicLine, { requestId: 'audit-1' });
    const e = fx.events.slice(before).find((x) => x.name === 'cert.issued');
    assert.ok(e);
    assert.equal(e.code, 'PC2000I');
    assert.deepEqual(e.actor, { kind: 'user', name: 'alice' });
    assert.equal(e.fields['serial'], issued.serial.toString());
    assert.equal(e.fields['keyId'], `alice req=audit-1 sess=${session.id.slice(0, 16)}`);
    assert.deepEqual(e.fields['principals'], ['alice', 'root']);
    assert.equal(e.fields['fingerprint'], issued.fingerprint);
    await assert.rejects(issueUserCertificate(fx.deps(), session, 'ssh-rsa AAAA', { requestId: 'audit-2' }), (x) => isAuthError(x, 'ERR_BAD_REQUEST'));
    const refused = fx.events.find((x) => x.name === 'cert.refused' && x.fields['requestId'] === 'audit-2');
    assert.ok(refused);
    assert.equal(refused.fields['reason'], 'bad_key');
    const text = await fx.metrics.text();
    assert.match(text, /ssh_ca_certificates_issued_total\{kind="user"\} [1-9]/);
    assert.match(text, /ssh_ca_issuance_failures_total\{reason="bad_request"\} [1-9]/);
  });

  it('a lock refuses the next mint, changes nothing in Redis, and lifting it restores minting', async () => {
    const lock = await createLock(fx.redis, { target: { kind: 'user', name: 'alice' }, message: 'offboarding', ttlSeconds: 600 }, Date.now());
    const before = await snapshot(fx.redis);
    await assert.rejects(
      issueUserCertificate(fx.deps(), session, identity.publicLine),
      (e) => isAuthError(e, 'ERR_LOCKED') && /user "alice" is locked until .*: offboarding/.test(e.message),
    );
    assert.deepEqual(await snapshot(fx.redis), before);
    await removeLock(fx.redis, lock.id);
    assert.ok(await issueUserCertificate(fx.deps(), session, identity.publicLine));
  });

  it('role and login locks: a locked role refuses, a locked login is left out of the principals', async () => {
    const role = await createLock(fx.redis, { target: { kind: 'role', name: 'admin' } }, Date.now());
    await assert.rejects(issueUserCertificate(fx.deps(), session, identity.publicLine), (e) => isAuthError(e, 'ERR_LOCKED') && /role "admin"/.test(e.message));
    await removeLock(fx.redis, role.id);
    const root = await createLock(fx.redis, { target: { kind: 'login', name: 'root' } }, Date.now());
    const issued = await issueUserCertificate(fx.deps(), session, identity.publicLine);
    assert.deepEqual(issued.principals, ['alice']);
    const alice2 = await createLock(fx.redis, { target: { kind: 'login', name: 'alice' } }, Date.now());
    await assert.rejects(issueUserCertificate(fx.deps(), session, identity.publicLine), (e) => isAuthError(e, 'ERR_LOCKED'));
    await removeLock(fx.redis, root.id);
    await removeLock(fx.redis, alice2.id);
    // An expired lock is ignored (and dropped).
    await createLock(fx.redis, { target: { kind: 'user', name: 'alice' }, ttlSeconds: 1 }, Date.now() - 5000);
    assert.ok(await issueUserCertificate(fx.deps(), session, identity.publicLine));
  });

  it('re-checks the user and roles at mint time', async () => {
    const before = await snapshot(fx.redis);
    fx.addUser('alice', ['admin'], { status: 'disabled' });
    await assert.rejects(issueUserCertificate(fx.deps(), session, identity.publicLine), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /disabled/.test(e.message));
    fx.addUser('alice', ['gone']);
    await assert.rejects(issueUserCertificate(fx.deps(), session, identity.publicLine), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /no longer exist \(gone\)/.test(e.message));
    fx.users.delete('alice');
    await assert.rejects(issueUserCertificate(fx.deps(), session, identity.publicLine), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /no longer exists/.test(e.message));
    fx.addUser('alice', ['admin']);
    const expired = { ...session, expiresAt: Date.now() - 1 };
    await assert.rejects(issueUserCertificate(fx.deps(), expired, identity.publicLine), (e) => isAuthError(e, 'ERR_EXPIRED'));
    assert.deepEqual(await snapshot(fx.redis), before);
  });

  it('per-session MFA and source pinning from the roles', async () => {
    const s = (await createLoginSession(fx.redis, { user: 'mallory', method: 'oidc', mfaVerified: true, mfaMethod: 'totp', ttlSeconds: 3600 }, Date.now())).session;
    await assert.rejects(issueUserCertificate(fx.deps(), s, identity.publicLine, { sourceAddress: '127.0.0.1' }), (e) => isAuthError(e, 'ERR_MFA_REQUIRED'));
    const issued = await issueUserCertificate(fx.deps(), s, identity.publicLine, { sourceAddress: '127.0.0.1', mfaVerified: true });
    const perms = permissionsFromOptions(issued.certificate.criticalOptions, issued.certificate.extensions);
    assert.equal(perms.sourceAddress, '127.0.0.1/32');
    const r = await login('root', writeCert('mallory', issued));
    assert.equal(r.code, 0, r.stderr);
    const elsewhere = await issueUserCertificate(fx.deps(), s, identity.publicLine, { sourceAddress: '192.0.2.1', mfaVerified: true });
    const refused = await login('root', writeCert('mallory-2', elsewhere));
    assert.equal(refused.code, 255);
  });

  it('refuses to certify a revoked key', async () => {
    const other = await sshKeygen(fx.dir, 'id_revoked');
    await revoke({ redis: fx.redis, crypto: nodeCrypto, trust: fx.trust }, { target: { by: 'key', publicKey: other.publicLine }, reason: 'laptop stolen' }, Date.now());
    await assert.rejects(issueUserCertificate(fx.deps(), session, other.publicLine), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /revoked/.test(e.message));
  });

  it('refuses small RSA keys and garbage', async () => {
    const small = await sshKeygen(fx.dir, 'id_rsa1024', 'rsa', 1024);
    await assert.rejects(issueUserCertificate(fx.deps(), session, small.publicLine), (e) => isAuthError(e, 'ERR_BAD_REQUEST') && /1024-bit RSA/.test(e.message));
    await assert.rejects(issueUserCertificate(fx.deps(), session, 'not a key'), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    const cert = (await issueUserCertificate(fx.deps(), session, identity.publicLine)).text;
    await assert.rejects(issueUserCertificate(fx.deps(), session, cert), (e) => isAuthError(e, 'ERR_BAD_REQUEST') && /certificate/.test(e.message));
  });

  it('serials keep increasing across a Redis restart (AOF) and a new key store instance', async () => {
    const first = await issueUserCertificate(fx.deps(), session, identity.publicLine);
    await fx.restartRedis();
    assert.ok((await lastSerial(fx.redis)) >= first.serial, 'the counter survived the restart');
    fx.keystore = CaKeystore.open({ stateDir: fx.dir.file('state'), crypto: nodeCrypto });
    const s2 = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
    const second = await issueUserCertificate(fx.deps(), s2, identity.publicLine);
    assert.ok(second.serial > first.serial, `${second.serial} > ${first.serial}`);
    // The same CA key: sshd still trusts it.
    assert.equal((await login('root', writeCert('after-restart', second))).code, 0);
    // Even a wiped Redis does not hand out an old serial again: the clock floor is above every
    // serial of an earlier second (a wipe and restart take longer than the rest of a second).
    await fx.redis.flushall();
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 10));
    fx.addUser('alice', ['admin']);
    await fx.putRole('kind: role\nname: admin\nspec:\n  allow: { logins: [root] }\n');
    const s3 = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
    const third = await issueUserCertificate(fx.deps(), s3, identity.publicLine);
    assert.ok(third.serial > second.serial, `${third.serial} > ${second.serial}`);
    assert.ok(Math.abs(Number(third.serial >> BigInt(SERIAL_CLOCK_SHIFT)) - Date.now() / 1000) < 5, 'serial >> 20 is the issue second');
  });
});
