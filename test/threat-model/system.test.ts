// Adversaries 1-5 of the threat model (shared/seeds/002) against the whole real system: auth
// over its HTTP API on redis-server, the proxy enrolled through it, OpenSSH sshd targets
// enrolled through /v1/join (test/e2e's fixture). Each threat is tried at the proxy and, where
// a user could reach it, at the target's sshd directly. crafted.test.ts covers the certificate
// CVEs that need the CA's private key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseCertificateText } from '@portcullis/cert-core';
import { SSHD_PATH, hasTool, run } from '@portcullis/harness';
import { startSystem } from '../e2e/support/portcullis.js';
import type { Identity, System, UserHandle } from '../e2e/support/portcullis.js';

const missing = [...['ssh', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

describe('threat model against the real system', { skip, timeout: 300_000 }, () => {
  let sys: System;
  let alice: UserHandle;
  let aliceId: Identity;

  before(async () => {
    // KRL polled every 0.5 s (default 5 s) so the offboarding test does not wait on the interval.
    sys = await startSystem({ badTargets: true, proxy: { throttle: { baseDelayMs: 10, maxDelayMs: 50 }, revocation: { refreshMs: 500, maxStaleMs: 300_000 } } });
    alice = await sys.user('alice', ['dev']);
    aliceId = await alice.mint();
  });

  after(async () => {
    await sys?.stop();
  });

  const web01 = () => sys.targets.get('web01.example.test')!;
  const refusedAt = (reason: string) => (e: { fields: Record<string, unknown> }) => e.fields['reason'] === reason;
  /** ssh straight to web01's sshd, bypassing the proxy, as someone on the network could; its host certificate names web01.example.test. */
  const direct = (as: { identity: string; certificate?: string }, login = 'root') =>
    run('ssh', ['-F', '/dev/null', '-o', 'HostKeyAlias=web01.example.test', ...sys.sshOptions(as), '-p', String(web01().port), `${login}@127.0.0.1`, '--', 'id -un'], { timeoutMs: 60_000 });
  const viaProxy = (as: { identity: string; certificate?: string }) => sys.ssh({ user: 'root%web01', as, command: 'id -un', timeoutMs: 60_000 });

  it('control: a current user logs in through the proxy, and the proxy logs in to the target with a certificate', async () => {
    const since = web01().log().length;
    const r = await viaProxy(aliceId);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'root\n');
    await web01().waitForLog(/Accepted publickey for root .*-CERT SHA256:\S+ ID alice /, { since, timeoutMs: 30_000 });
    // The user CA is the targets' too, so the same certificate also opens sshd directly: the
    // sshd-side tests below are real, not refused for some other reason.
    const d = await direct(aliceId);
    assert.equal(d.code, 0, d.stderr);
  });

  it('adversary 1 (departed user): offboarded through the admin API, a still-valid certificate is refused at the proxy and cannot mint another', async () => {
    const bob = await sys.user('bob', ['dev']);
    const id = await bob.mint();
    assert.equal((await viaProxy(id)).code, 0, 'control: bob gets in before offboarding');
    // pcctl's offboarding: revoke the user (their certificates and login sessions), nothing else.
    const out = await sys.admin<{ sessions_revoked: number }>('POST', '/v1/admin/revoke', { user: 'bob', reason: 'left the company' });
    assert.ok(out.sessions_revoked >= 1);
    // The proxy learns of the revocation with its next KRL poll; until then (a window of the
    // poll interval) the certificate still works, and auth still mints the upstream
    // certificate, since that request does not carry the user's certificate serial.
    const deadline = Date.now() + 20_000;
    let r = await viaProxy(id);
    while (r.code === 0 && Date.now() < deadline) r = await viaProxy(id);
    assert.equal(r.code, 255, r.stdout);
    await sys.waitForAudit('session.refused', (e) => JSON.stringify(e.fields).includes('bob') && e.fields['reason'] === 'ERR_REVOKED', 10_000);
    const mint = await sys.api('POST', '/v1/certs/user', { token: bob.token, json: { public_key: readFileSync(`${id.identity}.pub`, 'utf8').trim() } });
    assert.equal(mint.status, 401, `minting after offboarding: ${mint.status}`);
    // At the target: once its KRL is refreshed (pcctl host's timer does this from GET
    // /v1/krl; here by hand), sshd refuses the certificate too. sshd reads RevokedKeys per login.
    assert.equal((await direct(id)).code, 0, 'control: the stale KRL still lets bob in directly');
    writeFileSync(web01().revokedKeysPath!, (await sys.api('GET', '/v1/krl')).bytes);
    const since = web01().log().length;
    const d = await direct(id);
    assert.equal(d.code, 255, d.stdout);
    await web01().waitForLog(/revoked/i, { since, timeoutMs: 30_000 });
  });

  it('adversary 1 (departed user, session revoked only): the certificate cannot be renewed and dies within max_cert_ttl', async () => {
    const carol = await sys.user('carol', ['dev']);
    const id = await carol.mint();
    const out = await sys.api('POST', '/v1/logout', { token: carol.token });
    assert.ok(out.status < 300, `logout: ${out.status}`);
    const mint = await sys.api('POST', '/v1/certs/user', { token: carol.token, json: { public_key: readFileSync(`${id.identity}.pub`, 'utf8').trim() } });
    assert.equal(mint.status, 401);
    // What the proxy still accepts is bounded by the certificate's life: the role's 10 minutes.
    const cert = parseCertificateText(readFileSync(id.certificate, 'utf8')).cert;
    assert.ok(cert.validBefore - BigInt(Math.floor(Date.now() / 1000)) <= 600n);
  });

  it('adversary 1 (stale key): the key alone is refused at the proxy and at sshd (AuthorizedKeysFile none)', async () => {
    // A copy of the key with no -cert.pub beside it: ssh would otherwise load the certificate.
    const bare = sys.dir.file('alice-bare-key');
    copyFileSync(aliceId.identity, bare);
    chmodSync(bare, 0o600);
    const r = await viaProxy({ identity: bare });
    assert.equal(r.code, 255);
    await sys.waitForAudit('session.refused', refusedAt('ERR_NOT_A_CERTIFICATE'), 30_000);
    const d = await direct({ identity: bare });
    assert.equal(d.code, 255, d.stdout);
    assert.match(d.stderr, /Permission denied/);
  });

  it('adversary 2 (stolen certificate): once its minutes are over it is refused at the proxy and at sshd', async () => {
    sys.authClock.offset = -2 * 3600_000;
    let old: Identity;
    try {
      old = await alice.mint({ ttl: 300, tag: 'stolen' });
    } finally {
      sys.authClock.offset = 0;
    }
    const cert = parseCertificateText(readFileSync(old.certificate, 'utf8')).cert;
    assert.ok(cert.validBefore - cert.validAfter <= 600n, 'user certificates live minutes');
    const r = await viaProxy(old);
    assert.equal(r.code, 255);
    await sys.waitForAudit('session.refused', refusedAt('ERR_EXPIRED'), 30_000);
    const since = web01().log().length;
    const d = await direct(old);
    assert.equal(d.code, 255, d.stdout);
    await web01().waitForLog(/Certificate invalid: expired/, { since, timeoutMs: 30_000 });
  });

  it('adversary 3 (host impersonation): a foreign host CA, a plain host key and a valid certificate for another name are refused', async () => {
    // The plain.example.test address now answers with web01's sshd: a host certificate our CA
    // issued, but for another name (an on-path attacker replaying a real host).
    const ports = sys.ports as Map<string, number>;
    const cases = [
      { host: 'rogue', what: 'a host certificate from a foreign CA', why: /not a trusted CA/, before: () => {} },
      { host: 'plain', what: 'a plain host key', why: /plain host key/, before: () => {} },
      {
        host: 'plain',
        what: 'web01\'s valid certificate at another name\'s address',
        why: /"plain\.example\.test" matches none of the certificate's principals \["web01\.example\.test"\]/,
        before: () => ports.set('plain.example.test', web01().port),
      },
    ];
    for (const c of cases) {
      c.before();
      sys.audit.length = 0;
      const r = await sys.ssh({ user: `root%${c.host}`, as: aliceId, command: 'true', timeoutMs: 60_000 });
      assert.equal(r.code, 255, `${c.what}: ${r.stdout}`);
      assert.match(r.stderr, /man-in-the-middle/, c.what);
      const e = await sys.waitForAudit('session.refused', (e) => e.fields['reason'] === 'ERR_HOST_KEY' && String(e.fields['host']).startsWith(c.host), 30_000);
      assert.match(String(e.fields['message']), c.why, c.what);
    }
  });

  it('adversary 4 (key added to authorized_keys): the target reads none, and the proxy only ever logs in with a certificate', () => {
    const config = readFileSync(web01().configPath, 'utf8');
    assert.match(config, /^AuthorizedKeysFile none$/m);
    // Every login the target accepted from the proxy was a certificate login.
    const accepted = web01().log().split('\n').filter((l) => /Accepted publickey/.test(l));
    assert.ok(accepted.length > 0);
    for (const l of accepted) assert.match(l, /-CERT /);
  });

  it('adversary 5 (broad principals): auth issues only the user\'s own principals and takes none from the request', async () => {
    const cert = parseCertificateText(readFileSync(aliceId.certificate, 'utf8')).cert;
    assert.ok(cert.principals.length > 0);
    for (const p of cert.principals) assert.ok(!/[*?,!\s]/.test(p), `principal ${JSON.stringify(p)}`);
    const asked = await sys.api('POST', '/v1/certs/user', {
      token: alice.token,
      json: { public_key: readFileSync(`${aliceId.identity}.pub`, 'utf8').trim(), principals: ['*', 'root'] },
    });
    assert.equal(asked.status, 400);
    for (const logins of [['*'], ['root,alice'], ['']]) {
      const r = await sys.api('POST', '/v1/admin/roles', { token: sys.adminToken, json: { kind: 'role', name: `broad${logins[0]!.length}`, spec: { allow: { logins, host_labels: { '*': '*' } } } } });
      assert.ok(r.status >= 400 && r.status < 500, `a role with logins ${JSON.stringify(logins)}: ${r.status}`);
    }
  });
});
