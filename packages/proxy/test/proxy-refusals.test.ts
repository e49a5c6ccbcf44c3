// What the proxy refuses, and how the user and the audit log learn why: client certificates
// (expired, foreign CA, revoked, wrong login, source-address, plain keys, locked users),
// routing (no target, unknown and ambiguous names), targets that cannot prove who they are
// (foreign host CA, plain host key, a certificate for another name), and live sessions ended
// by a lock, a revocation or idleness. Real ssh and sshd; auth is the stand-in.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { access, exited, skipWithoutOpenSsh, startFixture } from './support/fixture.js';
import type { Fixture } from './support/fixture.js';
import { newKey } from './support/authority.js';
import { formatPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';

describe('proxy: refusals', { skip: skipWithoutOpenSsh }, () => {
  let f: Fixture;

  before(async () => {
    f = await startFixture({
      users: [
        access('alice'),
        access('dave', { logins: ['root'] }),
        access('erin'),
        access('frank'),
        access('idle', { idleTimeout: 1 }),
      ],
      badTargets: true,
      // Every test here fails logins from 127.0.0.1 on purpose: keep the slow-down short.
      proxy: { throttle: { baseDelayMs: 10, maxDelayMs: 50 }, timeouts: { idleCheckMs: 200 } },
    });
  });

  after(async () => {
    await f?.stop();
  });

  const refusedAt = (reason: string) => (e: { fields: Record<string, unknown> }) => e.fields['stage'] === 'auth' && e.fields['reason'] === reason;

  const authRefusals = [
    { name: 'an expired certificate', reason: 'ERR_EXPIRED', result: 'expired', make: (f: Fixture) => f.identity('alice', { principals: ['root'], validFor: -60 }) },
    { name: 'a certificate from another CA', reason: 'ERR_UNTRUSTED_CA', result: 'untrusted_ca', make: (f: Fixture) => f.identity('alice', { principals: ['root'], ca: newKey() }) },
    { name: 'a login not among the principals', reason: 'ERR_WRONG_PRINCIPAL', result: 'wrong_principal', make: (f: Fixture) => f.identity('alice', { principals: ['ubuntu'] }) },
    {
      name: 'a login the roles no longer allow',
      reason: 'ERR_LOGIN_NOT_ALLOWED',
      result: 'login_not_allowed',
      make: (f: Fixture) => f.identity('dave', { principals: ['root', 'daemon'] }),
      login: 'daemon',
    },
    {
      name: 'a source-address the client is not in',
      reason: 'ERR_SOURCE_ADDRESS',
      result: 'source_address',
      make: (f: Fixture) => f.identity('alice', { principals: ['root'], permissions: { sourceAddress: '10.0.0.0/8' } }),
    },
    { name: 'a key id that names no user', reason: 'ERR_UNKNOWN_USER', result: 'unknown_user', make: (f: Fixture) => f.identity('alice', { principals: ['root'], keyId: '' }) },
    { name: 'a user auth does not know', reason: 'ERR_ACCESS_DENIED', result: 'access_denied', make: (f: Fixture) => f.identity('mallory', { principals: ['root'] }) },
  ];
  for (const c of authRefusals) {
    it(`refuses ${c.name} (${c.reason}), audited and counted`, async () => {
      const id = c.make(f);
      const r = await f.ssh({ user: `${c.login ?? 'root'}%web01`, as: id, command: 'true' });
      assert.equal(r.code, 255);
      assert.match(r.stderr, /Permission denied \(publickey\)/);
      const e = await f.waitForAudit('session.refused', refusedAt(c.reason));
      assert.equal(e.severity, 'warning');
      assert.equal(e.fields['clientAddress'], '127.0.0.1');
      assert.match(await f.proxy.metrics.text(), new RegExp(`^ssh_cert_auth_total\\{result="${c.result}"\\} [1-9]`, 'm'));
      assert.equal(f.authority.upstreamRequests.length, 0, 'nothing may be dialled for a refused login');
    });
  }

  it('accepts a certificate whose source-address holds the client', async () => {
    const id = f.identity('alice', { principals: ['root'], permissions: { sourceAddress: '127.0.0.0/8,::1' } });
    const r = await f.ssh({ user: 'root%web01', as: id, command: 'echo in' });
    assert.equal(r.stdout, 'in\n', r.stderr);
  });

  it('refuses a plain key, once per connection', async () => {
    const path = f.dir.file('plain_key');
    writeFileSync(path, formatPrivateKey(newKey(), { crypto: nodeCrypto }), { mode: 0o600 });
    const r = await f.ssh({ user: 'root%web01', as: { identity: path }, command: 'true' });
    assert.equal(r.code, 255);
    const e = await f.waitForAudit('session.refused', refusedAt('ERR_NOT_A_CERTIFICATE'));
    assert.match(String(e.fields['message']), /plain key/);
  });

  it('refuses a revoked certificate once auth publishes the KRL', async () => {
    const id = f.identity('erin', { principals: ['root'] });
    assert.equal((await f.ssh({ user: 'root%web01', as: id, command: 'echo before' })).stdout, 'before\n');
    f.authority.revoke(id.cert);
    // The notice makes the proxy fetch the KRL now, not at the next poll.
    const deadline = Date.now() + 3_000;
    let r;
    do r = await f.ssh({ user: 'root%web01', as: id, command: 'echo after' });
    while (r.code === 0 && Date.now() < deadline);
    assert.equal(r.code, 255);
    const e = await f.waitForAudit('session.refused', refusedAt('ERR_REVOKED'));
    assert.match(String(e.fields['message']), /revoked/);
  });

  it('refuses a locked user', async () => {
    const id = f.identity('frank', { principals: ['root'] });
    f.authority.lockUser('frank', 'offboarded');
    try {
      const r = await f.ssh({ user: 'root%web01', as: id, command: 'true' });
      assert.equal(r.code, 255);
      const e = await f.waitForAudit('session.refused', (a) => refusedAt('ERR_ACCESS_DENIED')(a) && /offboarded/.test(String(a.fields['message'])));
      assert.equal(e.fields['username'], 'root%web01');
    } finally {
      f.authority.unlockUser('frank');
    }
  });

  it('answers a user name without a target with a one-line hint', async () => {
    const id = f.identity('alice', { principals: ['root'] });
    const r = await f.ssh({ user: 'alice', as: id, command: 'true' });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /name the target as LOGIN%HOST .*ssh -p \d+ ubuntu%web01@bastion.*ssh -J/);
    const bad = await f.ssh({ user: 'root%', as: id, command: 'true' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /after the % is not a valid host name/);
  });

  const routeRefusals = [
    { host: 'nosuchhost', message: /host "nosuchhost" is not registered with portcullis/, reason: 'ERR_HOST_NOT_FOUND' },
    { host: 'db', message: /host "db" is ambiguous: it matches db\.eu\.example\.test, db\.us\.example\.test/, reason: 'ERR_HOST_AMBIGUOUS' },
    { host: 'rogue', message: /presented a host certificate that is refused: .*not a trusted CA.*man-in-the-middle/, reason: 'ERR_HOST_KEY' },
    { host: 'plain', message: /presented a plain host key \(ssh-ed25519 SHA256:\S+\), not a host certificate.*man-in-the-middle/, reason: 'ERR_HOST_KEY' },
    { host: 'impostor', message: /"impostor\.example\.test" matches none of the certificate's principals/, reason: 'ERR_HOST_KEY' },
  ];
  for (const c of routeRefusals) {
    it(`tells the user why ${c.host} cannot be reached (${c.reason})`, async () => {
      const id = f.identity('alice', { principals: ['root'] });
      const since = f.authority.upstreamRequests.length;
      const r = await f.ssh({ user: `root%${c.host}`, as: id, command: 'true' });
      assert.equal(r.code, 255);
      assert.match(r.stderr, c.message);
      const e = await f.waitForAudit('session.refused', (a) => a.fields['reason'] === c.reason);
      assert.equal(e.fields['stage'], c.reason === 'ERR_HOST_KEY' ? 'upstream' : 'route');
      if (c.reason !== 'ERR_HOST_KEY') assert.equal(f.authority.upstreamRequests.length, since, 'no certificate minted for an unresolved host');
    });
  }

  it('ends a live session within seconds when its user is locked', async () => {
    const id = f.identity('alice', { principals: ['root'] });
    const ssh = f.spawnSsh({ user: 'root%web01', as: id, command: 'echo started; sleep 30' });
    try {
      await f.waitForAudit('session.exec', (e) => e.fields['command'] === 'echo started; sleep 30');
      while (!ssh.output().stdout.includes('started')) await sleep(20);
      const t0 = Date.now();
      f.authority.lockUser('alice', 'security incident 42');
      const code = await exited(ssh);
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 3_000, `took ${elapsed} ms`);
      assert.equal(code, 255);
      assert.match(ssh.output().stderr, /portcullis: user "alice" was locked: security incident 42/);
      const t = await f.waitForAudit('session.terminated', (e) => e.fields['user'] === 'alice');
      assert.equal(t.fields['reason'], 'lock');
      await f.waitForAudit('session.end', (e) => e.fields['user'] === 'alice' && /terminated/.test(String(e.fields['reason'])));
    } finally {
      f.authority.unlockUser('alice');
      ssh.kill();
    }
  });

  it('ends a live session when its certificate is revoked', async () => {
    const id = f.identity('alice', { principals: ['root'] });
    const ssh = f.spawnSsh({ user: 'root%web01', as: id, command: 'echo started; sleep 30' });
    try {
      while (!ssh.output().stdout.includes('started')) await sleep(20);
      const t0 = Date.now();
      f.authority.revoke(id.cert);
      assert.equal(await exited(ssh), 255);
      assert.ok(Date.now() - t0 < 3_000);
      assert.match(ssh.output().stderr, /portcullis: the certificate was revoked/);
    } finally {
      ssh.kill();
    }
  });

  it('closes an idle session after the role idle timeout, but not a busy one', async () => {
    const id = f.identity('idle', { principals: ['root'] });
    const t0 = Date.now();
    const r = await f.ssh({ user: 'root%web01', as: id, command: 'sleep 10' });
    assert.equal(r.code, 255);
    assert.ok(Date.now() - t0 < 5_000);
    assert.match(r.stderr, /no activity for 1 s; disconnected/);
    // Output every 300 ms keeps it alive past the timeout.
    const busy = await f.ssh({ user: 'root%web01', as: id, command: 'for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.3; done' });
    assert.equal(busy.code, 0, busy.stderr);
    assert.equal(busy.stdout.trim().split('\n').length, 8);
  });
});
