// Host enrollment against a real redis-server, with stock OpenSSH on both ends: a host enrolled
// with a join token serves its certificate to `ssh` that trusts only our @cert-authority line;
// a token works once; renewal is proved with `ssh-keygen -Y sign`; proxies get a service
// credential and upstream certificates that sshd accepts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { SSHD_PATH, hasTool, runOk, sshRun, startSshd } from '@portcullis/harness';
import type { SshdHandle } from '@portcullis/harness';
import { parseCertificateText } from '@portcullis/cert-core';
import { isAuthError } from '../src/errors.js';
import { joinTokenKey, secretDigest } from '../src/store/keys.js';
import { createLoginSession, revokeLoginSession } from '../src/sessions/login-session.js';
import { revoke } from '../src/revocation/revocations.js';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { issueJumpHostCertificate, issueUpstreamCertificate, issueUserCertificate } from '../src/ca/issuer.js';
import { createJoinToken, deleteJoinToken, peekJoinToken } from '../src/hosts/join-tokens.js';
import { authenticateProxy, createRenewalChallenge, enrollHost, renewHost, RENEWAL_NAMESPACE } from '../src/hosts/enrollment.js';
import type { EnrollmentDeps, EnrollmentResult } from '../src/hosts/enrollment.js';
import { currentCertificate, findHost, getHost, listHosts, removeHost } from '../src/hosts/inventory.js';
import { createLock, removeLock } from '../src/revocation/locks.js';
import { caFixture, snapshot, sshKeygen } from './ca-fixture.js';
import type { CaFixture } from './ca-fixture.js';
import type { IssuedCertificate } from '../src/ca/signing.js';
import type { ClientCertificateRef } from '../src/ca/client-certificate.js';

const missing = [...['ssh', 'ssh-keygen'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

/** How the proxy names the certificate a client showed it. */
function clientRef(c: IssuedCertificate): ClientCertificateRef {
  return { serial: c.serial, keyId: c.keyId, fingerprint: c.fingerprint };
}

describe('host enrollment', { skip }, () => {
  let fx: CaFixture;
  let deps: EnrollmentDeps;
  let hostEd: { path: string; publicLine: string };
  let hostEcdsa: { path: string; publicLine: string };
  let enrolled: EnrollmentResult;
  let sshd: SshdHandle | undefined;

  before(async () => {
    fx = await caFixture();
    deps = { ...fx.deps(), metrics: fx.metrics, keystore: fx.keystore, krlUrl: 'https://auth.example.com:3025/v1/krl' };
    hostEd = await sshKeygen(fx.dir, 'ssh_host_ed25519_key');
    hostEcdsa = await sshKeygen(fx.dir, 'ssh_host_ecdsa_key', 'ecdsa');
    await fx.putRole(`
kind: role
name: dev
spec:
  allow: { logins: [root], host_labels: { env: dev } }
`);
    fx.addUser('alice', ['dev']);
  });

  after(async () => {
    await sshd?.stop();
    await fx?.close();
  });

  it('join tokens are stored hashed, typed, expiring, and refused when wrong', async () => {
    const now = Date.now();
    const { token, joinToken } = await createJoinToken(fx.redis, { type: 'host', labels: { env: 'dev' }, ttlSeconds: 600 }, now);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(joinToken.id, secretDigest(token));
    assert.deepEqual(await fx.redis.keys(`*${token}*`), []);
    assert.ok((await fx.redis.pttl(joinTokenKey(joinToken.id))) > 590_000);
    assert.deepEqual((await peekJoinToken(fx.redis, token, 'host', now)).labels, { env: 'dev' });
    await assert.rejects(peekJoinToken(fx.redis, token, 'proxy', now), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /enrolls a host, not a proxy/.test(e.message));
    await assert.rejects(peekJoinToken(fx.redis, token, 'host', now + 601_000), (e) => isAuthError(e, 'ERR_EXPIRED'));
    await assert.rejects(peekJoinToken(fx.redis, 'A'.repeat(43), 'host', now), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    await assert.rejects(createJoinToken(fx.redis, { type: 'node' as 'host' }, now), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    await assert.rejects(createJoinToken(fx.redis, { type: 'host', labels: { 'bad key': 'x' } }, now), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    await assert.rejects(createJoinToken(fx.redis, { type: 'host', hostname: '*.example.com' }, now), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    assert.equal(await deleteJoinToken(fx.redis, joinToken.id), true);
    await assert.rejects(peekJoinToken(fx.redis, token, 'host', now), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
  });

  it('a join token never starts with a dash (it follows --token on command lines)', async () => {
    // 0xf8 makes the first base64url character '-'; the second draw is taken instead.
    const draws = [new Uint8Array(32).fill(0xf8), new Uint8Array(32).fill(0x41)];
    let n = 0;
    const { token } = await createJoinToken(fx.redis, { type: 'host' }, Date.now(), () => draws[n++]!);
    assert.equal(n, 2);
    assert.equal(token, Buffer.from(draws[1]!).toString('base64url'));
  });

  it('enrolls a host: certificates for its keys naming its names, the user CA line, the KRL URL, the inventory record', async () => {
    const { token } = await createJoinToken(fx.redis, { type: 'host', labels: { env: 'dev', team: 'web' } }, Date.now());
    enrolled = await enrollHost(deps, { token, hostname: 'Web01.Example.com', names: ['127.0.0.1', 'localhost'], publicKeys: [hostEd.publicLine, hostEcdsa.publicLine, hostEd.publicLine] });
    assert.equal(enrolled.host.name, 'web01.example.com');
    assert.deepEqual(enrolled.host.names, ['web01.example.com', '127.0.0.1', 'localhost']);
    assert.deepEqual(enrolled.host.labels, { env: 'dev', team: 'web' });
    assert.equal(enrolled.certificates.length, 2, 'one certificate per distinct key');
    assert.equal(enrolled.trustedUserCaKeys, fx.keystore.trustedUserCaKeys());
    assert.match(enrolled.knownHosts, /^@cert-authority \* ssh-ed25519 /);
    assert.equal(enrolled.krlUrl, deps.krlUrl);
    for (const c of enrolled.certificates) {
      const cert = parseCertificateText(c.certificate).cert;
      assert.equal(cert.kind, 'host');
      assert.deepEqual(cert.principals, ['web01.example.com', '127.0.0.1', 'localhost']);
      assert.equal(Number(cert.validBefore - cert.validAfter), 30 * 86400 + 60);
      // ssh-keygen reads it back.
      writeFileSync(fx.dir.file('check-cert.pub'), c.certificate + '\n');
      const listing = await runOk('ssh-keygen', ['-L', '-f', fx.dir.file('check-cert.pub')]);
      assert.match(listing.stdout, /host certificate/);
    }
    const c0 = enrolled.certificates[0]!;
    assert.ok(enrolled.renewAfter === c0.validAfter + Math.floor((c0.validBefore - c0.validAfter) / 2));
    assert.ok(enrolled.renewBefore > enrolled.renewAfter && enrolled.renewBefore < c0.validBefore);
    const stored = await getHost(fx.redis, 'web01.example.com');
    assert.equal(stored?.certificates.length, 2);
    assert.equal(stored?.type, 'host');
    assert.ok(fx.events.some((e) => e.name === 'host.enrolled' && e.fields['host'] === 'web01.example.com'));
    assert.ok(fx.events.some((e) => e.name === 'token.used'));
  });

  it('stock ssh with only the exported @cert-authority line verifies the enrolled host; the proxy\'s upstream certificate logs in, the user\'s own does not', async () => {
    const ed = enrolled.certificates.find((c) => c.publicKey.startsWith('ssh-ed25519'))!;
    const ec = enrolled.certificates.find((c) => c.publicKey.startsWith('ecdsa'))!;
    writeFileSync(`${hostEd.path}-cert.pub`, ed.certificate + '\n');
    writeFileSync(`${hostEcdsa.path}-cert.pub`, ec.certificate + '\n');
    sshd = await startSshd({
      dir: fx.dir.path,
      trustedUserCAKeys: enrolled.trustedUserCaKeys,
      hostKey: [
        { privateKeyPath: hostEd.path, certificatePath: `${hostEd.path}-cert.pub` },
        { privateKeyPath: hostEcdsa.path, certificatePath: `${hostEcdsa.path}-cert.pub` },
      ],
    });
    const knownHosts = fx.dir.file('known_hosts');
    writeFileSync(knownHosts, enrolled.knownHosts);
    const user = await sshKeygen(fx.dir, 'id_alice');
    const session = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
    const cert = await issueUserCertificate(fx.deps(), session, user.publicLine);
    writeFileSync(`${user.path}-cert.pub`, cert.text + '\n');
    // The enrolled host trusts the upstream CA only: the certificate an engineer holds does not
    // open it directly (that would skip the proxy's checks and recording).
    const direct = await sshRun({ port: sshd.port, user: 'root', identity: user.path, certificate: `${user.path}-cert.pub`, knownHosts, command: 'echo connected' });
    assert.equal(direct.code, 255, direct.stdout);
    assert.match(direct.stderr, /Permission denied/);
    // What the proxy dials with for that user (same key here, to keep the fixture small) does.
    const up = await issueUpstreamCertificate(fx.deps(), { proxy: 'bastion-test', user: 'alice', login: 'root', host: 'web01.example.com', publicKey: user.publicLine, client: clientRef(cert) });
    assert.equal(up.caFingerprint, fx.keystore.active('upstream').fingerprint);
    writeFileSync(`${user.path}-cert.pub`, up.text + '\n');
    const r = await sshRun({ port: sshd.port, user: 'root', identity: user.path, certificate: `${user.path}-cert.pub`, knownHosts, command: 'echo connected' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'connected');
    assert.doesNotMatch(r.stderr, /authenticity of host|Permanently added/);
    // Both host key types verify.
    for (const alg of ['ssh-ed25519-cert-v01@openssh.com', 'ecdsa-sha2-nistp256-cert-v01@openssh.com']) {
      const x = await sshRun({ port: sshd.port, user: 'root', identity: user.path, certificate: `${user.path}-cert.pub`, knownHosts, command: 'true', options: [`HostKeyAlgorithms=${alg}`] });
      assert.equal(x.code, 0, `${alg}: ${x.stderr}`);
    }
    // A known_hosts trusting another CA refuses the same host: no trust on first use.
    const other = await sshKeygen(fx.dir, 'other_ca');
    writeFileSync(fx.dir.file('known_hosts_other'), `@cert-authority * ${other.publicLine}\n`);
    const refused = await sshRun({ port: sshd.port, user: 'root', identity: user.path, certificate: `${user.path}-cert.pub`, knownHosts: fx.dir.file('known_hosts_other'), command: 'true' });
    assert.equal(refused.code, 255);
    assert.match(refused.stderr, /Host key verification failed/);
  });

  it('a join token used twice fails the second time and changes nothing in Redis', async () => {
    const key = await sshKeygen(fx.dir, 'host2_key');
    const { token } = await createJoinToken(fx.redis, { type: 'host', labels: { env: 'dev' } }, Date.now());
    await enrollHost(deps, { token, hostname: 'web02.example.com', publicKeys: [key.publicLine] });
    const before = await snapshot(fx.redis);
    const again = await sshKeygen(fx.dir, 'host3_key');
    await assert.rejects(enrollHost(deps, { token, hostname: 'web03.example.com', publicKeys: [again.publicLine] }), (e) => isAuthError(e, 'ERR_CONFLICT') && /already used .* by web02.example.com/.test(e.message));
    assert.deepEqual(await snapshot(fx.redis), before);
    assert.ok(fx.events.some((e) => e.name === 'host.enroll_failed' && e.fields['errorCode'] === 'ERR_CONFLICT'));
  });

  it('refusals before the token is spent leave it usable: bad key, taken name, cloned host key, wildcard', async () => {
    const { token } = await createJoinToken(fx.redis, { type: 'host', labels: { env: 'dev' } }, Date.now());
    const fresh = await sshKeygen(fx.dir, 'host4_key');
    const before = await snapshot(fx.redis);
    const cases: [Parameters<typeof enrollHost>[1], string, RegExp][] = [
      [{ token, hostname: 'web04', publicKeys: ['ssh-ed25519 AAAA'] }, 'ERR_BAD_REQUEST', /publicKeys\[0\]/],
      [{ token, hostname: 'web04', publicKeys: [] }, 'ERR_BAD_REQUEST', /"publicKeys"/],
      [{ token, hostname: 'web04', names: ['localhost'], publicKeys: [fresh.publicLine] }, 'ERR_CONFLICT', /"localhost" belongs to enrolled host "web01.example.com"/],
      [{ token, hostname: 'web04', publicKeys: [hostEd.publicLine] }, 'ERR_CONFLICT', /host key SHA256:\S+ \(a cloned image/],
      [{ token, hostname: 'web04', names: ['*.example.com'], publicKeys: [fresh.publicLine] }, 'ERR_BAD_REQUEST', /no wildcards/],
      [{ token, hostname: 'web01.example.com', publicKeys: [fresh.publicLine] }, 'ERR_CONFLICT', /already enrolled/],
      [{ token, hostname: 'web04', publicKeys: [fresh.publicLine], type: 'proxy' }, 'ERR_FORBIDDEN', /enrolls a host, not a proxy/],
    ];
    for (const [req, code, re] of cases) {
      await assert.rejects(enrollHost(deps, req), (e) => isAuthError(e, code as 'ERR_CONFLICT') && re.test(e.message), `${code} ${re}`);
    }
    assert.deepEqual(await snapshot(fx.redis), before);
    const ok = await enrollHost(deps, { token, hostname: 'web04', publicKeys: [fresh.publicLine] });
    assert.equal(ok.host.name, 'web04');
  });

  it('a token pinned to a hostname may re-enroll that host (new keys), releasing names it dropped', async () => {
    const key = await sshKeygen(fx.dir, 'host5_key');
    const first = await createJoinToken(fx.redis, { type: 'host', hostname: 'db1.example.com', labels: { env: 'prod' } }, Date.now());
    await enrollHost(deps, { token: first.token, hostname: 'db1.example.com', names: ['db1', '10.1.1.1'], publicKeys: [key.publicLine] });
    await assert.rejects(enrollHost(deps, { token: (await createJoinToken(fx.redis, { type: 'host', hostname: 'db1.example.com' }, Date.now())).token, hostname: 'db2.example.com', publicKeys: [key.publicLine] }), (e) => isAuthError(e, 'ERR_FORBIDDEN'));
    const rebuilt = await sshKeygen(fx.dir, 'host5b_key');
    const second = await createJoinToken(fx.redis, { type: 'host', hostname: 'db1.example.com', labels: { env: 'prod' } }, Date.now());
    const r = await enrollHost(deps, { token: second.token, hostname: 'db1.example.com', names: ['db1'], publicKeys: [rebuilt.publicLine] });
    assert.deepEqual(r.host.names, ['db1.example.com', 'db1']);
    const h = await getHost(fx.redis, 'db1.example.com');
    assert.equal(h?.certificates.length, 2, 'the old certificate is kept until it expires, for revoke-by-host');
    await assert.rejects(findHost(fx.redis, '10.1.1.1'), (e) => isAuthError(e, 'ERR_NOT_FOUND'));
  });

  it('hosts are found by name, address or short name; ambiguous names list the candidates; unenrolled hosts do not exist', async () => {
    for (const [name, labels] of [['api.prod.example.com', { env: 'prod' }], ['api.staging.example.com', { env: 'staging' }]] as const) {
      const { token } = await createJoinToken(fx.redis, { type: 'host', labels }, Date.now());
      await enrollHost(deps, { token, hostname: name, publicKeys: [(await sshKeygen(fx.dir, `${name}_key`)).publicLine] });
    }
    assert.equal((await findHost(fx.redis, 'WEB01.example.com')).name, 'web01.example.com');
    assert.equal((await findHost(fx.redis, 'web01')).name, 'web01.example.com');
    assert.equal((await findHost(fx.redis, '127.0.0.1')).name, 'web01.example.com');
    assert.equal((await findHost(fx.redis, 'localhost')).name, 'web01.example.com');
    await assert.rejects(findHost(fx.redis, 'api'), (e) => isAuthError(e, 'ERR_CONFLICT') && e.message.includes('api.prod.example.com, api.staging.example.com'));
    await assert.rejects(findHost(fx.redis, 'nowhere'), (e) => isAuthError(e, 'ERR_NOT_FOUND') && /no enrolled host is called "nowhere"/.test(e.message));
    await assert.rejects(findHost(fx.redis, 'web*'), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    assert.ok((await listHosts(fx.redis)).map((h) => h.name).includes('api.prod.example.com'));
  });

  it('renewal: a signature by the host key over a fresh challenge (ssh-keygen -Y sign), no token', async () => {
    const challenge = await createRenewalChallenge(deps, 'web01.example.com');
    assert.equal(challenge.namespace, RENEWAL_NAMESPACE);
    writeFileSync(fx.dir.file('challenge'), challenge.challenge);
    // What a host runs: ssh-keygen -Y sign -n portcullis-host-renewal -f /etc/ssh/ssh_host_ed25519_key challenge
    await runOk('ssh-keygen', ['-Y', 'sign', '-n', RENEWAL_NAMESPACE, '-f', hostEcdsa.path, fx.dir.file('challenge')]);
    const signature = readFileSync(fx.dir.file('challenge.sig'), 'utf8');
    const before = enrolled.certificates.map((c) => BigInt(c.serial));
    const renewed = await renewHost(deps, { hostname: 'web01.example.com', signature });
    assert.equal(renewed.certificates.length, 2);
    for (const c of renewed.certificates) assert.ok(BigInt(c.serial) > before.reduce((a, b) => (a > b ? a : b)));
    assert.deepEqual(parseCertificateText(renewed.certificates[0]!.certificate).cert.principals, ['web01.example.com', '127.0.0.1', 'localhost']);
    const host = await getHost(fx.redis, 'web01.example.com');
    assert.equal(host?.certificates.length, 4);
    assert.equal(currentCertificate(host!, Date.now())?.validAfter, renewed.certificates[0]!.validAfter);
    assert.equal(currentCertificate(host!, Date.now() + 365 * 86400_000), undefined);
    assert.ok(host?.renewedAt !== undefined);
    // The challenge is single use.
    await assert.rejects(renewHost(deps, { hostname: 'web01.example.com', signature }), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED') && /no renewal challenge/.test(e.message));
    assert.ok(fx.events.some((e) => e.name === 'host.renewed'));
  });

  it('renewal refuses another key, another namespace, a stale challenge, an expired certificate and a lock', async () => {
    const sign = async (key: string, ns = RENEWAL_NAMESPACE, host = 'web01.example.com', at?: number): Promise<string> => {
      const c = await createRenewalChallenge({ ...deps, ...(at === undefined ? {} : { clock: () => at }) }, host);
      writeFileSync(fx.dir.file('c2'), c.challenge);
      rmSync(fx.dir.file('c2.sig'), { force: true });
      await runOk('ssh-keygen', ['-Y', 'sign', '-n', ns, '-f', key, fx.dir.file('c2')]);
      return readFileSync(fx.dir.file('c2.sig'), 'utf8');
    };
    const stranger = await sshKeygen(fx.dir, 'stranger');
    await assert.rejects(renewHost(deps, { hostname: 'web01.example.com', signature: await sign(stranger.path) }), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED') && /is not a host key of web01/.test(e.message));
    await assert.rejects(renewHost(deps, { hostname: 'web01.example.com', signature: await sign(hostEd.path, 'file') }), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED') && /does not verify/.test(e.message));
    await assert.rejects(renewHost(deps, { hostname: 'web01.example.com', signature: 'garbage' }), (e) => isAuthError(e, 'ERR_BAD_REQUEST'));
    const stale = await sign(hostEd.path, RENEWAL_NAMESPACE, 'web01.example.com', Date.now() - 10 * 60_000);
    await assert.rejects(renewHost(deps, { hostname: 'web01.example.com', signature: stale }), (e) => isAuthError(e, 'ERR_EXPIRED') && /challenge expired/.test(e.message));
    const later = Date.now() + 40 * 86400_000;
    const late = await sign(hostEd.path, RENEWAL_NAMESPACE, 'web01.example.com', later);
    await assert.rejects(renewHost({ ...deps, clock: () => later }, { hostname: 'web01.example.com', signature: late }), (e) => isAuthError(e, 'ERR_EXPIRED') && /enroll web01.example.com again/.test(e.message));
    const lock = await createLock(fx.redis, { target: { kind: 'host', name: 'web01.example.com' }, message: 'compromised' }, Date.now());
    await assert.rejects(renewHost(deps, { hostname: 'web01.example.com', signature: await sign(hostEd.path) }), (e) => isAuthError(e, 'ERR_LOCKED') && /compromised/.test(e.message));
    await removeLock(fx.redis, lock.id);
    await assert.rejects(createRenewalChallenge(deps, 'nowhere'), (e) => isAuthError(e, 'ERR_NOT_FOUND'));
  });

  it('a proxy enrolls for a service credential and gets upstream certificates that sshd accepts', async () => {
    const proxyHost = await sshKeygen(fx.dir, 'proxy_host_key');
    const { token } = await createJoinToken(fx.redis, { type: 'proxy', labels: { role: 'proxy' } }, Date.now());
    const r = await enrollHost(deps, { token, hostname: 'bastion-1.example.com', publicKeys: [proxyHost.publicLine], type: 'proxy' });
    assert.ok(r.serviceCredential);
    assert.match(r.serviceCredential, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(await fx.redis.keys(`*${r.serviceCredential}*`), []);
    const proxy = await authenticateProxy(deps, r.serviceCredential);
    assert.equal(proxy.host, 'bastion-1.example.com');
    await assert.rejects(authenticateProxy(deps, 'x'.repeat(43)), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    // A join token's secret is never a service credential.
    const join = await createJoinToken(fx.redis, { type: 'proxy' }, Date.now());
    await assert.rejects(authenticateProxy(deps, join.token), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));

    const connKey = await sshKeygen(fx.dir, 'proxy_conn_key');
    const aliceKey = await sshKeygen(fx.dir, 'id_alice_proxy');
    const aliceSession = (await createLoginSession(fx.redis, { user: 'alice', method: 'password', mfaVerified: false, ttlSeconds: 3600 }, Date.now())).session;
    const client = clientRef(await issueUserCertificate(fx.deps(), aliceSession, aliceKey.publicLine));
    const up = await issueUpstreamCertificate(fx.deps(), { proxy: proxy.host, user: 'alice', login: 'root', host: 'web01', publicKey: connKey.publicLine, client, requestId: 'up-1' });
    assert.deepEqual(up.principals, ['root']);
    assert.equal(up.keyId, 'alice req=up-1 via=bastion-1.example.com');
    // A minute of use plus 5 minutes of target clock skew either way (UPSTREAM_CLOCK_SKEW_SECONDS).
    assert.ok(up.validBefore - up.validAfter <= 660_000);
    writeFileSync(`${connKey.path}-cert.pub`, up.text + '\n');
    assert.ok(sshd);
    const since = sshd.log().length;
    const run = await sshRun({ port: sshd.port, user: 'root', identity: connKey.path, certificate: `${connKey.path}-cert.pub`, knownHosts: fx.dir.file('known_hosts'), command: 'whoami' });
    assert.equal(run.code, 0, run.stderr);
    await sshd.waitForLog(/Accepted publickey for root .* ID alice req=up-1 via=bastion-1\.example\.com/, { since });

    // Refusals: a login the roles do not allow, a host outside the labels, an unenrolled host, a host lock.
    await assert.rejects(issueUpstreamCertificate(fx.deps(), { proxy: proxy.host, user: 'alice', login: 'ubuntu', host: 'web01', publicKey: connKey.publicLine, client }), (e) => isAuthError(e, 'ERR_FORBIDDEN'));
    await assert.rejects(issueUpstreamCertificate(fx.deps(), { proxy: proxy.host, user: 'alice', login: 'root', host: 'db1.example.com', publicKey: connKey.publicLine, client }), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /may not log in as "root" on "db1.example.com"/.test(e.message));
    await assert.rejects(issueUpstreamCertificate(fx.deps(), { proxy: proxy.host, user: 'alice', login: 'root', host: 'unknown.example.com', publicKey: connKey.publicLine, client }), (e) => isAuthError(e, 'ERR_NOT_FOUND'));
    const lock = await createLock(fx.redis, { target: { kind: 'host', name: 'web01.example.com' } }, Date.now());
    await assert.rejects(issueUpstreamCertificate(fx.deps(), { proxy: proxy.host, user: 'alice', login: 'root', host: 'web01', publicKey: connKey.publicLine, client }), (e) => isAuthError(e, 'ERR_LOCKED'));
    await assert.rejects(issueJumpHostCertificate(fx.deps(), { proxy: proxy.host, host: 'web01', publicKey: proxyHost.publicLine }), (e) => isAuthError(e, 'ERR_LOCKED'));
    await removeLock(fx.redis, lock.id);
    const loginLock = await createLock(fx.redis, { target: { kind: 'login', name: 'root' } }, Date.now());
    await assert.rejects(issueUpstreamCertificate(fx.deps(), { proxy: proxy.host, user: 'alice', login: 'root', host: 'web01', publicKey: connKey.publicLine, client }), (e) => isAuthError(e, 'ERR_LOCKED'));
    await removeLock(fx.redis, loginLock.id);

    // The client's own certificate is re-checked at this moment, not at the proxy's next KRL
    // poll: it must be the user's, not revoked, and its login session must still be live.
    const upstreamFor = (c: ClientCertificateRef) => issueUpstreamCertificate(fx.deps(), { proxy: proxy.host, user: 'alice', login: 'root', host: 'web01', publicKey: connKey.publicLine, client: c });
    await assert.rejects(upstreamFor({ ...client, keyId: 'mallory req=x' }), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /"mallory"'s, not "alice"'s/.test(e.message));
    await revoke({ redis: fx.redis, crypto: nodeCrypto, trust: fx.trust }, { target: { by: 'serial', serial: client.serial } }, Date.now());
    await assert.rejects(upstreamFor(client), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /is revoked \(serial:/.test(e.message));
    assert.ok(fx.events.some((e) => e.name === 'cert.refused' && e.fields['purpose'] === 'upstream' && e.fields['reason'] === 'revoked_certificate'));
    const second = clientRef(await issueUserCertificate(fx.deps(), aliceSession, aliceKey.publicLine));
    await upstreamFor(second);
    await revokeLoginSession(fx.redis, aliceSession.id);
    await assert.rejects(upstreamFor(second), (e) => isAuthError(e, 'ERR_FORBIDDEN') && /login session [0-9a-f]{16} .* revoked or has expired/.test(e.message));
    assert.ok(fx.events.some((e) => e.name === 'cert.refused' && e.fields['purpose'] === 'upstream' && e.fields['reason'] === 'session'));

    // The jump-host certificate names the target, for the proxy's own host key, under its
    // inventory name and the short name the client typed (which the client's ssh checks).
    const jump = await issueJumpHostCertificate(fx.deps(), { proxy: proxy.host, host: 'web01', publicKey: proxyHost.publicLine });
    assert.equal(jump.certificate.kind, 'host');
    assert.deepEqual(jump.principals, ['web01.example.com', 'web01', '127.0.0.1', 'localhost']);
    assert.ok(jump.validBefore - jump.validAfter <= 11 * 60_000);

    // Removing the proxy retires its credential.
    const removed = await removeHost(fx.redis, 'bastion-1.example.com');
    assert.equal(removed?.name, 'bastion-1.example.com');
    await assert.rejects(authenticateProxy(deps, r.serviceCredential), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    await assert.rejects(findHost(fx.redis, 'bastion-1.example.com'), (e) => isAuthError(e, 'ERR_NOT_FOUND'));
  });
});
