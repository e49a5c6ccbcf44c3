// The proxy's AuthorityClient over HTTP against the real auth service: every method of the
// contract (packages/proxy/src/authority.ts), its refusals mapped to the proxy's error codes,
// and notices for locks and revocations.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fingerprintSha256, generateKey, parseCertificateText, publicPart } from '@portcullis/cert-core';
import type { PublicKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { isProxyError } from '@portcullis/proxy';
import type { AuthorityNotice } from '@portcullis/proxy';
import { hasTool, runOk } from '@portcullis/harness';
import { startSystem } from './support/portcullis.js';
import type { System } from './support/portcullis.js';

const skip = ['redis-server', 'ssh-keygen'].find((t) => !hasTool(t));

describe('HttpAuthority against auth', { skip: skip === undefined ? false : `needs ${skip}` }, () => {
  let sys: System;
  const key = () => publicPart(generateKey(nodeCrypto, 'ssh-ed25519'));
  // The certificate a client authenticated to the proxy with, as the proxy names it to auth.
  const clientOf = (user: string, k: PublicKey = key(), serial = 1n) => ({ serial, keyId: `${user} req=e2e`, fingerprint: fingerprintSha256(nodeCrypto, k) });

  before(async () => {
    sys = await startSystem();
    await sys.user('alice', ['dev']);
    await sys.user('bob', ['restricted']);
    // Two hosts with the short name `db`, enrolled without an sshd (never dialled).
    for (const name of ['db.eu.example.test', 'db.us.example.test']) {
      const { token } = await sys.admin<{ token: string }>('POST', '/v1/admin/tokens', { type: 'host', hostname: name, labels: { env: 'prod' } });
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', sys.dir.file(name)]);
      const r = await sys.api('POST', '/v1/join', { json: { token, hostname: name, host_keys: [readFileSync(sys.dir.file(`${name}.pub`), 'utf8').trim()] } });
      assert.equal(r.status, 200);
    }
  });

  after(async () => {
    await sys?.stop();
  });

  it('reads the CA keys and the KRL (with its ETag)', async () => {
    const [users, hosts] = await Promise.all([sys.authority.userCAs(), sys.authority.hostCAs()]);
    assert.equal(users.length, 1);
    assert.equal(hosts.length, 1);
    const k = await sys.authority.krl();
    assert.ok(k !== 'unchanged');
    assert.equal(await sys.authority.krl(k.etag), 'unchanged');
  });

  it('resolves names as the inventory does: short, full, ambiguous, unknown', async () => {
    const h = await sys.authority.resolveHost('web01');
    assert.equal(h.name, 'web01.example.test');
    assert.deepEqual(h.labels, { env: 'test' });
    assert.equal(h.address, '127.0.0.1');
    assert.equal(h.port, sys.targets.get('web01.example.test')!.port);
    assert.equal((await sys.authority.resolveHost('WEB01.example.test')).name, 'web01.example.test');
    await assert.rejects(sys.authority.resolveHost('db'), (e) => isProxyError(e, 'ERR_HOST_AMBIGUOUS') && /db\.eu\.example\.test, db\.us\.example\.test/.test(e.message));
    await assert.rejects(sys.authority.resolveHost('nope'), (e) => isProxyError(e, 'ERR_HOST_NOT_FOUND'));
    // The proxy itself is enrolled, as a proxy: not a target.
    await assert.rejects(sys.authority.resolveHost('bastion.example.test'), (e) => isProxyError(e, 'ERR_HOST_NOT_FOUND') && /proxy, not a target/.test(e.message));
  });

  it("gives a user's access now: roles' logins and forwarding; unknown users and locks refuse", async () => {
    const a = await sys.authority.access('alice');
    assert.deepEqual(a, {
      user: 'alice', roles: ['dev'], logins: ['root'], portForwarding: true, agentForwarding: true, x11Forwarding: true,
      recordSession: 'best-effort', recordInput: false, idleTimeout: 1800,
    });
    assert.equal((await sys.authority.access('bob')).portForwarding, false);
    await assert.rejects(sys.authority.access('mallory'), (e) => isProxyError(e, 'ERR_ACCESS_DENIED') && /mallory/.test(e.message));
    const lock = await sys.admin<{ id: string }>('POST', '/v1/admin/locks', { target: { kind: 'role', name: 'restricted' }, message: 'audit week' });
    try {
      await assert.rejects(sys.authority.access('bob'), (e) => isProxyError(e, 'ERR_ACCESS_DENIED') && /audit week/.test(e.message));
    } finally {
      await sys.admin('DELETE', `/v1/admin/locks/${lock.id}`);
    }
    const login = await sys.admin<{ id: string }>('POST', '/v1/admin/locks', { target: { kind: 'login', name: 'root' } });
    try {
      // Every login of alice's is locked: auth refuses her outright.
      await assert.rejects(sys.authority.access('alice'), (e) => isProxyError(e, 'ERR_ACCESS_DENIED'));
    } finally {
      await sys.admin('DELETE', `/v1/admin/locks/${login.id}`);
    }
  });

  it('mints upstream certificates for exactly the login, refuses what the roles do not allow', async () => {
    const pub = key();
    const issued = await sys.authority.upstreamCertificate({ user: 'alice', login: 'root', host: 'web01', publicKey: pub, requestId: 'sess-1', client: clientOf('alice') });
    const { cert } = parseCertificateText(issued.certificate);
    assert.deepEqual(cert.principals, ['root']);
    assert.match(cert.keyId, /^alice req=\S+ via=bastion\.example\.test$/);
    // 60 s of use plus 5 minutes of target clock skew (auth's UPSTREAM_CLOCK_SKEW_SECONDS).
    assert.ok(cert.validBefore - BigInt(Math.floor(Date.now() / 1000)) <= 361n);
    assert.equal(issued.serial, cert.serial);
    await assert.rejects(sys.authority.upstreamCertificate({ user: 'alice', login: 'ubuntu', host: 'web01', publicKey: pub, requestId: 's', client: clientOf('alice') }), (e) => isProxyError(e, 'ERR_ACCESS_DENIED'));
    // bob's role reaches env=test hosts only.
    await assert.rejects(sys.authority.upstreamCertificate({ user: 'bob', login: 'root', host: 'db.eu.example.test', publicKey: pub, requestId: 's', client: clientOf('bob') }), (e) => isProxyError(e, 'ERR_ACCESS_DENIED'));
    await assert.rejects(sys.authority.upstreamCertificate({ user: 'alice', login: 'root', host: 'nope', publicKey: pub, requestId: 's', client: clientOf('alice') }), (e) => isProxyError(e, 'ERR_HOST_NOT_FOUND'));
  });

  it("refuses a revoked client certificate at once, in the access check and for an upstream certificate", async () => {
    const userKey = key();
    const client = clientOf('alice', userKey, 987654321n);
    assert.equal((await sys.authority.access('alice', client)).user, 'alice');
    await sys.admin('POST', '/v1/admin/revoke', { serial: '987654321', reason: 'test' });
    // No wait for a KRL poll: auth itself refuses the certificate the proxy names.
    await assert.rejects(sys.authority.access('alice', client), (e) => isProxyError(e, 'ERR_ACCESS_DENIED') && /revoked \(serial:987654321\)/.test(e.message));
    await assert.rejects(
      sys.authority.upstreamCertificate({ user: 'alice', login: 'root', host: 'web01', publicKey: key(), requestId: 's', client }),
      (e) => isProxyError(e, 'ERR_ACCESS_DENIED') && /revoked/.test(e.message),
    );
    // Another certificate of hers is not concerned; one that names another user is refused.
    assert.equal((await sys.authority.access('alice', clientOf('alice'))).user, 'alice');
    await assert.rejects(sys.authority.access('alice', clientOf('bob')), (e) => isProxyError(e, 'ERR_ACCESS_DENIED') && /"bob"'s, not "alice"'s/.test(e.message));
  });

  it('mints jump host certificates naming the host as typed and its inventory name', async () => {
    const issued = await sys.authority.jumpHostCertificate({ host: 'web01', publicKey: key() });
    const { cert } = parseCertificateText(issued.certificate);
    assert.equal(cert.kind, 'host');
    assert.deepEqual(cert.principals.slice(0, 2), ['web01.example.test', 'web01']);
  });

  it('notices a lock and a revocation within a poll or two', async () => {
    const got: AuthorityNotice[] = [];
    const stop = sys.authority.onNotice((n) => got.push(n));
    try {
      await sys.authority.pollNow();
      await sys.admin('POST', '/v1/admin/locks', { target: { kind: 'host', name: 'db.us.example.test' }, message: 'patching' });
      await sys.admin('POST', '/v1/admin/revoke', { key_id: 'nobody req=x', reason: 'test' });
      const deadline = Date.now() + 6_000;
      while (got.length < 2 && Date.now() < deadline) await sleep(50);
      assert.deepEqual(got.find((n) => n.kind === 'lock'), { kind: 'lock', target: { kind: 'host', name: 'db.us.example.test' }, message: 'patching' });
      assert.ok(got.some((n) => n.kind === 'revocation'));
    } finally {
      stop();
    }
  });
});
