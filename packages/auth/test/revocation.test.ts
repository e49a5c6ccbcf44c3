// Revocation and locks against a real redis-server, judged by the real sshd and ssh-keygen -Q:
// a revoked certificate is refused once sshd reads our KRL; the KRL carries a version and an
// ETag; revocations by serial, key id, user, key and host; notices on pub/sub.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { SSHD_PATH, hasTool, run, sshRun, startSshd } from '@portcullis/harness';
import type { SshdHandle } from '@portcullis/harness';
import { parseKrl, keySigner, signCertificate, formatCertificate, parsePublicKeyText } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { isAuthError } from '../src/errors.js';
import { caRevokedKey, LOCKS_CHANNEL } from '../src/store/keys.js';
import { createLoginSession } from '../src/sessions/login-session.js';
import type { LoginSession } from '../src/sessions/login-session.js';
import { issueUserCertificate } from '../src/ca/issuer.js';
import type { IssuedCertificate } from '../src/ca/signing.js';
import { createJoinToken } from '../src/hosts/join-tokens.js';
import { enrollHost } from '../src/hosts/enrollment.js';
import { currentKrl, getKrl, readRevocations, rebuildKrl } from '../src/revocation/krl.js';
import { isKeyRevoked, revoke, unrevoke } from '../src/revocation/revocations.js';
import type { RevocationDeps } from '../src/revocation/revocations.js';
import { checkNewLock, createLock, findLock, listLocks, lockedLogins, removeLock } from '../src/revocation/locks.js';
import { parseNotice } from '../src/revocation/notices.js';
import { SESSION_LOCK_MIN_TTL_SECONDS, lockRevokedLoginSessions, sessionLockTtl } from '../src/revocation/session-locks.js';
import type { Notice } from '../src/revocation/notices.js';
import { caFixture, escapeRe, sshKeygen } from './ca-fixture.js';
import type { CaFixture } from './ca-fixture.js';

const missing = [...['ssh', 'ssh-keygen'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

describe('revocation and locks', { skip }, () => {
  let fx: CaFixture;
  let sshd: SshdHandle;
  let deps: RevocationDeps;
  let identity: { path: string; publicLine: string };
  let session: LoginSession;
  let subscriber: Redis;
  const notices: Notice[] = [];

  before(async () => {
    fx = await caFixture();
    await fx.putRole('kind: role\nname: admin\nspec:\n  allow: { logins: [root] }\n');
    fx.addUser('alice', ['admin']);
    fx.addUser('bob', ['admin']);
    identity = await sshKeygen(fx.dir, 'id_alice');
    const audit = fx.deps().audit;
    assert.ok(audit);
    deps = { redis: fx.redis, crypto: nodeCrypto, trust: fx.trust, onKrl: (k) => fx.metrics.setRevokedCertificates(k.entries), audit };
    const krl = await currentKrl(fx.redis, fx.trust(), Date.now());
    sshd = await startSshd({ dir: fx.dir.path, trustedUserCAKeys: fx.keystore.authorizedKeys('user'), revokedKeys: krl.bytes });
    session = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
    subscriber = new Redis(fx.server.url, { maxRetriesPerRequest: 1 });
    await subscriber.subscribe(LOCKS_CHANNEL);
    subscriber.on('message', (_channel: string, message: string) => {
      const n = parseNotice(message);
      if (n) notices.push(n);
    });
  });

  after(async () => {
    subscriber?.disconnect();
    await sshd?.stop();
    await fx?.close();
  });

  async function mint(name: string, s: LoginSession = session, key = identity): Promise<{ issued: IssuedCertificate; path: string }> {
    const issued = await issueUserCertificate(fx.deps(), s, key.publicLine, { requestId: name });
    const path = fx.dir.file(`${name}-cert.pub`);
    writeFileSync(path, issued.text + '\n');
    return { issued, path };
  }

  /** Installs the stored KRL as sshd's RevokedKeys the way a host should: write aside, rename. */
  async function installKrl(): Promise<Uint8Array> {
    const krl = await getKrl(fx.redis);
    assert.ok(krl);
    const path = sshd.revokedKeysPath!;
    writeFileSync(`${path}.tmp`, krl.bytes);
    renameSync(`${path}.tmp`, path);
    return krl.bytes;
  }

  async function loginCode(cert: string, key = identity.path): Promise<number> {
    return (await sshRun({ port: sshd.port, user: 'root', identity: key, certificate: cert, command: 'true' })).code;
  }

  /** ssh-keygen -Q -f KRL FILE: exit 0 when not revoked, 1 with "REVOKED" when revoked. */
  async function queryKrl(certPath: string): Promise<boolean> {
    const krlPath = fx.dir.file('query.krl');
    writeFileSync(krlPath, (await getKrl(fx.redis))!.bytes);
    const r = await run('ssh-keygen', ['-Q', '-f', krlPath, certPath]);
    assert.ok(r.code === 0 || r.code === 1, r.stderr);
    return r.code === 1;
  }

  it('a certificate revoked by serial is refused by sshd after it reads our KRL', async () => {
    const { issued, path } = await mint('serial-1');
    assert.equal(await loginCode(path), 0);
    const v0 = (await getKrl(fx.redis))!.version;
    const r = await revoke(deps, { target: { by: 'serial', serial: issued.serial, ca: 'user', expiresAt: issued.validBefore }, reason: 'test', revokedBy: 'admin' }, Date.now());
    assert.equal(r.added.length, 1);
    assert.equal(r.krl.version, v0 + 1);
    assert.equal(r.krl.sha256, createHash('sha256').update(r.krl.bytes).digest('hex'));
    assert.equal(r.krl.etag, `"${r.krl.sha256}"`);
    const bytes = await installKrl();
    const decoded = parseKrl(bytes);
    assert.equal(decoded.header.version, BigInt(r.krl.version));
    const since = sshd.log().length;
    assert.equal(await loginCode(path), 255);
    await sshd.waitForLog(new RegExp(`(revoked|REVOKED).*|Authentication key .* revoked`), { since });
    assert.equal(await queryKrl(path), true);
    // A fresh certificate for the same key is not affected.
    assert.equal(await loginCode((await mint('serial-2')).path), 0);
    // Revoking again changes nothing and publishes nothing.
    const before = notices.length;
    const again = await revoke(deps, { target: { by: 'serial', serial: issued.serial.toString() } }, Date.now());
    assert.equal(again.added.length, 0);
    assert.equal(again.existing, 1);
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(notices.length, before);
    assert.match(await fx.metrics.text(), /ssh_revoked_certs_total [1-9]/);
  });

  it('revoke by user: every live certificate of the user, from the zset', async () => {
    const bobSession = (await createLoginSession(fx.redis, { user: 'bob', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
    const bobKey = await sshKeygen(fx.dir, 'id_bob');
    const b1 = await mint('bob-1', bobSession, bobKey);
    const b2 = await mint('bob-2', bobSession, bobKey);
    const a = await mint('alice-unrelated');
    const r = await revoke(deps, { target: { by: 'user', user: 'bob' }, reason: 'offboarding' }, Date.now());
    assert.deepEqual(r.added.map((e) => (e.kind === 'serial' ? e.serial : '')).sort(), [b1.issued.serial.toString(), b2.issued.serial.toString()].sort());
    await installKrl();
    assert.equal(await loginCode(b1.path, bobKey.path), 255);
    assert.equal(await loginCode(b2.path, bobKey.path), 255);
    assert.equal(await loginCode(a.path), 0);
    await new Promise((res) => setTimeout(res, 50));
    const n = [...notices].reverse().find((x) => x.kind === 'revocation');
    assert.ok(n && n.kind === 'revocation');
    assert.deepEqual([...n.serials].sort(), r.added.map((e) => (e.kind === 'serial' ? e.serial : '')).sort());
    assert.equal(n.krlVersion, r.krl.version);
    const event = [...fx.events].reverse().find((e) => e.name === 'cert.revoked');
    assert.ok(event);
    assert.equal(event.code, 'PC2002I');
    assert.equal(event.fields['by'], 'user');
    assert.equal(event.fields['user'], 'bob');
    assert.equal(event.fields['reason'], 'offboarding');
    assert.ok(fx.events.some((e) => e.name === 'krl.updated' && e.fields['version'] === r.krl.version));
  });

  it('revoke by key id and by key', async () => {
    const k = await mint('by-key-id');
    await revoke(deps, { target: { by: 'keyId', keyId: k.issued.keyId } }, Date.now());
    await installKrl();
    assert.equal(await loginCode(k.path), 255);
    assert.equal(await queryKrl(k.path), true);

    const other = await sshKeygen(fx.dir, 'id_lost');
    const c = await mint('lost-laptop', session, other);
    assert.equal(await loginCode(c.path, other.path), 0);
    await revoke(deps, { target: { by: 'key', publicKey: other.publicLine }, reason: 'laptop lost' }, Date.now());
    assert.equal(await isKeyRevoked(fx.redis, nodeCrypto, parsePublicKeyText(other.publicLine).key), true);
    await installKrl();
    assert.equal(await loginCode(c.path, other.path), 255);
    await assert.rejects(revoke(deps, { target: { by: 'key', publicKey: 'nonsense' } }, Date.now()), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
  });

  it('serials are scoped to our CA keys: the same serial from another CA is not revoked', async () => {
    const { issued } = await mint('scope');
    await revoke(deps, { target: { by: 'serial', serial: issued.serial, ca: 'user' } }, Date.now());
    const foreignCa = nodeCrypto.generate('ssh-ed25519');
    const foreign = signCertificate(
      { ...issued.certificate, serial: issued.serial, criticalOptions: [], extensions: [] },
      keySigner(nodeCrypto, foreignCa),
      { crypto: nodeCrypto },
    );
    writeFileSync(fx.dir.file('foreign-cert.pub'), formatCertificate(foreign) + '\n');
    assert.equal(await queryKrl(fx.dir.file('foreign-cert.pub')), false);
    writeFileSync(fx.dir.file('scope-cert.pub'), issued.text + '\n');
    assert.equal(await queryKrl(fx.dir.file('scope-cert.pub')), true);
  });

  it('revoke by host: its host certificates', async () => {
    const hostKey = await sshKeygen(fx.dir, 'host_key');
    const { token } = await createJoinToken(fx.redis, { type: 'host' }, Date.now());
    const e = await enrollHost({ ...fx.deps(), metrics: fx.metrics, keystore: fx.keystore, krlUrl: 'https://x/krl' }, { token, hostname: 'old.example.com', publicKeys: [hostKey.publicLine] });
    writeFileSync(fx.dir.file('host-cert.pub'), e.certificates[0]!.certificate + '\n');
    assert.equal(await queryKrl(fx.dir.file('host-cert.pub')), false);
    const r = await revoke(deps, { target: { by: 'host', host: 'old.example.com' }, reason: 'decommissioned' }, Date.now());
    assert.equal(r.added.length, 1);
    assert.equal(await queryKrl(fx.dir.file('host-cert.pub')), true);
    await assert.rejects(revoke(deps, { target: { by: 'host', host: 'never.example.com' } }, Date.now()), (x) => isAuthError(x, 'ERR_NOT_FOUND'));
  });

  it('entries of expired certificates leave the KRL on the next rebuild; unrevoke takes one back', async () => {
    const now = Date.now();
    await revoke(deps, { target: { by: 'serial', serial: 999_999n, expiresAt: now + 1000 } }, now);
    assert.ok((await readRevocations(fx.redis)).some((e) => e.id === 'serial:999999'));
    const later = await rebuildKrl(fx.redis, fx.trust(), now + 2000);
    assert.ok(!(await readRevocations(fx.redis)).some((e) => e.id === 'serial:999999'));
    assert.equal(later.entries, (await fx.redis.hlen(caRevokedKey())));
    await revoke(deps, { target: { by: 'keyId', keyId: 'oops' } }, now);
    assert.equal(await unrevoke(deps, 'key-id:oops', now), true);
    assert.equal(await unrevoke(deps, 'key-id:oops', now), false);
  });

  it('KRL versions only go up; an older build never overwrites a newer one; a trust change rebuilds', async () => {
    const a = await rebuildKrl(fx.redis, fx.trust(), Date.now());
    const b = await rebuildKrl(fx.redis, fx.trust(), Date.now());
    assert.ok(b.version > a.version);
    // A build that drew an older version (a slow replica) cannot replace the stored one.
    await fx.redis.decr('pc:{ca}:krl:version');
    await fx.redis.decr('pc:{ca}:krl:version');
    const stale = await rebuildKrl(fx.redis, fx.trust(), Date.now());
    assert.equal(stale.version, b.version);
    assert.equal((await getKrl(fx.redis))!.version, b.version);
    await fx.redis.set('pc:{ca}:krl:version', String(b.version));
    assert.equal((await currentKrl(fx.redis, fx.trust(), Date.now())).version, b.version);
    fx.keystore.stage('user');
    const rotated = await currentKrl(fx.redis, fx.trust(), Date.now());
    assert.ok(rotated.version > b.version, 'a staged CA key puts its scope into the KRL');
    assert.equal(parseKrl(rotated.bytes).certificates.length >= 3, true);
  });

  it('locks: stored in pc:{locks}:all, expired ones ignored, notices published', async () => {
    const now = Date.now();
    const before = notices.length;
    const l = await createLock(fx.redis, { target: { kind: 'host', name: 'web01' }, message: 'maintenance', ttlSeconds: 60, createdBy: 'admin' }, now);
    await createLock(fx.redis, { target: { kind: 'login', name: 'root' }, ttlSeconds: 1 }, now - 5000);
    const live = await listLocks(fx.redis, now);
    assert.deepEqual(live.map((x) => x.id), [l.id]);
    assert.equal(await fx.redis.hlen('pc:{locks}:all'), 1, 'the expired lock was dropped');
    assert.equal(findLock(live, { host: 'web01' }, now)?.id, l.id);
    assert.equal(findLock(live, { host: 'web02' }, now), undefined);
    assert.equal(findLock(live, { host: 'web01' }, now + 61_000), undefined);
    assert.deepEqual([...lockedLogins([{ ...l, target: { kind: 'login', name: 'root' } }], ['root', 'ubuntu'], now)], ['root']);
    await new Promise((res) => setTimeout(res, 50));
    const n = notices.slice(before).find((x) => x.kind === 'lock' && x.lock.id === l.id);
    assert.ok(n && n.kind === 'lock');
    assert.equal(n.lock.message, 'maintenance');
    assert.deepEqual(n.lock.target, { kind: 'host', name: 'web01' });
    assert.equal(await removeLock(fx.redis, l.id), true);
    assert.equal(await removeLock(fx.redis, l.id), false);
    assert.throws(() => checkNewLock({ target: { kind: 'team' as 'user', name: 'x' } }), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    assert.throws(() => checkNewLock({ target: { kind: 'user', name: '' } }), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    assert.throws(() => checkNewLock({ target: { kind: 'user', name: 'a' }, ttlSeconds: 0 }), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    assert.equal(parseNotice('not json'), undefined);
    assert.equal(parseNotice('{"kind":"other"}'), undefined);
    assert.deepEqual(parseNotice('{"kind":"revocation","krlVersion":3,"serials":["1"],"keyIds":[],"keys":[]}'), { kind: 'revocation', krlVersion: 3, serials: ['1'], keyIds: [], keys: [] });
  });

  it('a revoked login session becomes a session lock, living while any certificate of the user is valid (5 min at least)', async () => {
    const now = Date.now();
    assert.equal(sessionLockTtl(undefined, now), SESSION_LOCK_MIN_TTL_SECONDS);
    assert.equal(sessionLockTtl(now - 1000, now), SESSION_LOCK_MIN_TTL_SECONDS);
    assert.equal(sessionLockTtl(now + 3600_000 + 1, now), 3601);
    const s = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, now)).session;
    const m = await mint('alice-session-lock', s);
    const before = notices.length;
    assert.deepEqual(await lockRevokedLoginSessions(fx.redis, { user: 'alice', sessionIds: [], message: 'x' }, now), []);
    // The full id and its 16-digit prefix name one login session: one lock.
    const locks = await lockRevokedLoginSessions(fx.redis, { user: 'alice', sessionIds: [s.id, s.id.slice(0, 16)], message: 'logged out', createdBy: 'alice' }, now);
    assert.equal(locks.length, 1);
    const [lock] = locks;
    assert.deepEqual(lock!.target, { kind: 'session', name: s.id.slice(0, 16) });
    assert.match(m.issued.keyId, new RegExp(` sess=${lock!.target.name}$`));
    assert.ok(lock!.expiresAt! >= Math.max(m.issued.validBefore, now + SESSION_LOCK_MIN_TTL_SECONDS * 1000), `${lock!.expiresAt} vs ${m.issued.validBefore}`);
    assert.equal(findLock(await listLocks(fx.redis, now), { user: 'alice', session: lock!.target.name }, now)?.id, lock!.id);
    assert.equal(findLock(await listLocks(fx.redis, now), { user: 'alice', session: '0'.repeat(16) }, now), undefined);
    await new Promise((res) => setTimeout(res, 50));
    assert.ok(notices.slice(before).some((n) => n.kind === 'lock' && n.lock.id === lock!.id));
    assert.throws(() => checkNewLock({ target: { kind: 'session', name: 'alice' } }), (e) => isAuthError(e, 'ERR_BAD_REQUEST') && /16 lowercase hex/.test(e.message));
    await removeLock(fx.redis, lock!.id);
  });

  it('checks revocation requests', async () => {
    for (const target of [{ by: 'serial', serial: 0n }, { by: 'serial', serial: '-1' }, { by: 'serial', serial: 1n << 64n }, { by: 'keyId', keyId: '' }, { by: 'user', user: '' }, { by: 'nothing' }] as const) {
      await assert.rejects(revoke(deps, { target: target as never }, Date.now()), (e) => isAuthError(e, 'ERR_BAD_REQUEST'), JSON.stringify(target, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
    }
  });

  it('sshd log names the revoked serial', async () => {
    const { issued, path } = await mint('logged');
    await revoke(deps, { target: { by: 'serial', serial: issued.serial } }, Date.now());
    await installKrl();
    const since = sshd.log().length;
    assert.equal(await loginCode(path), 255);
    await sshd.waitForLog(new RegExp(`ID ${escapeRe(issued.keyId)} \\(serial ${issued.serial}\\)`), { since });
  });
});
