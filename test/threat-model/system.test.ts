// Adversaries 1-5 of the threat model (shared/seeds/002) against the whole real system: auth
// over its HTTP API on redis-server, the proxy enrolled through it, OpenSSH sshd targets
// enrolled through /v1/join (test/e2e's fixture). Each threat is tried at the proxy and, where
// a user could reach it, at the target's sshd directly (which trusts only the upstream CA, so
// a user's own certificate never opens it). crafted.test.ts covers the certificate CVEs that
// need the CA's private key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fingerprintSha256, parseCertificateText } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
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
  // A refusal at the proxy's auth stage names the certificate's key id, which starts with the user.
  const whose = (user: string) => (e: { fields: Record<string, unknown> }) => String(e.fields['certKeyId'] ?? '').startsWith(`${user} `);
  const refusedAt = (reason: string) => (e: { fields: Record<string, unknown> }) => e.fields['reason'] === reason;
  /** ssh straight to web01's sshd, bypassing the proxy, as someone on the network could; its host certificate names web01.example.test. */
  const direct = (as: { identity: string; certificate?: string }, login = 'root') =>
    run('ssh', ['-F', '/dev/null', '-o', 'HostKeyAlias=web01.example.test', ...sys.sshOptions(as), '-p', String(web01().port), `${login}@127.0.0.1`, '--', 'id -un'], { timeoutMs: 60_000 });
  const viaProxy = (as: { identity: string; certificate?: string }) => sys.ssh({ user: 'root%web01', as, command: 'id -un', timeoutMs: 60_000 });

  it('control: a current user logs in through the proxy, and the proxy logs in to the target with a certificate of the upstream CA', async () => {
    const since = web01().log().length;
    const r = await viaProxy(aliceId);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'root\n');
    await web01().waitForLog(/Accepted publickey for root .*-CERT SHA256:\S+ ID alice req=\S+ via=bastion\.example\.test /, { since, timeoutMs: 30_000 });
  });

  it('bypass: an engineer\'s own certificate, presented to the target directly, is refused by its sshd; the proxy path works', async () => {
    // Someone with network reach to web01 offers sshd the key and certificate pcsh login wrote,
    // to skip the proxy (its access checks, locks and recording). web01 trusts the upstream CA
    // only, which signs nothing but the proxy's per-connection certificates.
    const ca = (await sys.api<{ user: { keys: { fingerprint: string }[] }; upstream: { authorized_keys: string } }>('GET', '/v1/ca')).body;
    assert.equal(readFileSync(web01().configPath.replace(/sshd_config$/, 'trusted_user_ca_keys'), 'utf8').trim(), ca.upstream.authorized_keys.trim());
    const signer = parseCertificateText(readFileSync(aliceId.certificate, 'utf8')).cert.signatureKey;
    assert.equal(fingerprintSha256(nodeCrypto, signer), ca.user.keys[0]!.fingerprint, 'the certificate is signed by the user CA');
    const since = web01().log().length;
    const d = await direct(aliceId);
    assert.equal(d.code, 255, d.stdout);
    assert.match(d.stderr, /Permission denied/);
    await web01().waitForLog(new RegExp(`Failed publickey for root .*-CERT .* ID alice req=.* CA \\S+ ${fingerprintSha256(nodeCrypto, signer).replace(/[+/]/g, '\\$&')}`), { since, timeoutMs: 30_000 });
    assert.doesNotMatch(web01().log().slice(since), /Accepted publickey/);
    // The same certificate through the proxy: in, recorded, as the upstream CA's certificate.
    const r = await viaProxy(aliceId);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'root\n');
  });

  it('adversary 1 (departed user): offboarded through the admin API, a still-valid certificate is refused at the proxy at once and cannot mint another', async () => {
    const bob = await sys.user('bob', ['dev']);
    const id = await bob.mint();
    assert.equal((await viaProxy(id)).code, 0, 'control: bob gets in before offboarding');
    // pcctl's offboarding: revoke the user (their certificates and login sessions), nothing else.
    const out = await sys.admin<{ sessions_revoked: number }>('POST', '/v1/admin/revoke', { user: 'bob', reason: 'left the company' });
    assert.ok(out.sessions_revoked >= 1);
    // No window: the very next connection is refused. Whichever is first refuses it: the proxy's
    // KRL copy (polled every 0.5 s here), or auth, which the proxy names bob's certificate to in
    // its access check (test/e2e/authority-http.test.ts has auth's refusal without any KRL).
    const r = await viaProxy(id);
    assert.equal(r.code, 255, r.stdout);
    await sys.waitForAudit(
      'session.refused',
      (e) => whose('bob')(e) && (e.fields['reason'] === 'ERR_REVOKED' || (e.fields['reason'] === 'ERR_ACCESS_DENIED' && /is revoked/.test(String(e.fields['message'])))),
      10_000,
    );
    const mint = await sys.api('POST', '/v1/certs/user', { token: bob.token, json: { public_key: readFileSync(`${id.identity}.pub`, 'utf8').trim() } });
    assert.equal(mint.status, 401, `minting after offboarding: ${mint.status}`);
    // The proxy's KRL copy catches up within its poll interval (0.5 s here) and then refuses the
    // certificate on its own, before asking auth.
    const byKrl = () => sys.audit.some((e) => e.name === 'session.refused' && whose('bob')(e) && e.fields['reason'] === 'ERR_REVOKED');
    const deadline = Date.now() + 20_000;
    while (!byKrl() && Date.now() < deadline) assert.equal((await viaProxy(id)).code, 255);
    assert.ok(byKrl(), 'the proxy refuses by its own KRL once it has it');
    // At the target: its sshd never trusted bob's user certificate in the first place.
    assert.equal((await direct(id)).code, 255);
  });

  it('adversary 1 (departed user, session revoked only): logout refuses the certificate at the proxy at once, and it cannot be renewed', async () => {
    const carol = await sys.user('carol', ['dev']);
    const id = await carol.mint();
    assert.equal((await viaProxy(id)).code, 0, 'control: carol gets in before logging out');
    const out = await sys.api('POST', '/v1/logout', { token: carol.token });
    assert.ok(out.status < 300, `logout: ${out.status}`);
    // Her certificate names its login session (sess= in the key id); auth refuses it once the
    // session is gone, on the very next connection.
    const r = await viaProxy(id);
    assert.equal(r.code, 255, r.stdout);
    await sys.waitForAudit('session.refused', (e) => whose('carol')(e) && e.fields['reason'] === 'ERR_ACCESS_DENIED' && /login session [0-9a-f]{16} .*revoked/.test(String(e.fields['message'])), 10_000);
    const mint = await sys.api('POST', '/v1/certs/user', { token: carol.token, json: { public_key: readFileSync(`${id.identity}.pub`, 'utf8').trim() } });
    assert.equal(mint.status, 401);
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
    // Directly at a target it never worked (the user CA is not trusted there), expired or not.
    const d = await direct(old);
    assert.equal(d.code, 255, d.stdout);
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
