import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { runOk, sshRun, startRedis, startSshd, tempDir, type RedisHandle, type SshdHandle, type TempDir } from '@portcullis/harness';
import { adminSession, auditMark, auditSince, expectError, expectOk, snapshot, sshKeygen, startTestAuth, type TestAuth } from './http-helpers.js';

/*
 * Hosts through the API: a join token made by an admin enrolls a real sshd, whose certificate a
 * stock ssh client verifies with only the exported @cert-authority line; renewal by signature;
 * a proxy enrolls, mints a per-connection certificate sshd accepts, and a revocation reaches
 * sshd through the KRL the API serves.
 */

const ROLES = [{ kind: 'role', name: 'dev', spec: { allow: { logins: ['root'], host_labels: { env: 'dev' } } } }];

interface JoinResult {
  host: { name: string; names: string[]; labels: Record<string, string> };
  certificates: { certificate: string; serial: string; valid_before: string }[];
  user_ca: string;
  known_hosts: string;
  krl_url: string;
  service_credential?: string;
}

describe('hosts and the proxy through the HTTP API', () => {
  let dir: TempDir;
  let redisServer: RedisHandle;
  let auth: TestAuth;
  let admin: string;
  let sshd: SshdHandle;
  let hostKey: { path: string; publicKey: string };
  let proxyCredential: string;

  async function token(type: 'host' | 'proxy', labels: Record<string, string> = {}): Promise<string> {
    return expectOk(await auth.api<{ token: string }>('POST', '/v1/admin/tokens', { token: admin, json: { type, ttl: '10m', labels } })).token;
  }

  before(async () => {
    dir = tempDir('portcullis-http-hosts-');
    redisServer = await startRedis({ dir: dir.path });
    auth = await startTestAuth({ stateDir: dir.file('state'), redisUrl: redisServer.url, config: { roles: ROLES } });
    admin = await adminSession(auth);
    expectOk(await auth.api('POST', '/v1/admin/users', { token: admin, json: { name: 'alice', roles: ['dev'] } }));
    hostKey = await sshKeygen(dir.path, 'ssh_host_ed25519_key');
  });

  after(async () => {
    await sshd?.stop();
    await auth?.stop();
    await redisServer?.stop();
    dir?.remove();
  });

  test('a host joins with a token; stock ssh verifies it with only the @cert-authority line; the user CA does not open it', async () => {
    const t = await token('host', { env: 'dev', team: 'web' });
    const joined = expectOk(
      await auth.api<JoinResult>('POST', '/v1/join', { json: { token: t, hostname: 'web01.example.com', names: ['127.0.0.1', 'web01'], host_keys: [hostKey.publicKey] } }),
    );
    assert.deepEqual(joined.host.labels, { env: 'dev', team: 'web' });
    assert.deepEqual(joined.host.names, ['web01.example.com', '127.0.0.1', 'web01']);
    assert.equal(joined.krl_url, `${auth.info.url}/v1/krl`);
    const certPath = `${hostKey.path}-cert.pub`;
    writeFileSync(certPath, `${joined.certificates[0]!.certificate}\n`);
    const krl = await auth.api('GET', '/v1/krl');
    sshd = await startSshd({
      dir: dir.path,
      hostKey: { privateKeyPath: hostKey.path, certificatePath: certPath },
      trustedUserCAKeys: joined.user_ca,
      revokedKeys: krl.bytes,
    });
    const knownHosts = dir.file('known_hosts');
    writeFileSync(knownHosts, joined.known_hosts);
    // The user side: a certificate from a login session, checked against the host strictly.
    const userKey = await sshKeygen(dir.path, 'id_admin');
    expectOk(await auth.api('PATCH', '/v1/admin/users/admin', { token: admin, json: { roles: ['admin', 'dev'] } }));
    const cert = expectOk(await auth.api<{ certificate: string }>('POST', '/v1/certs/user', { token: admin, json: { public_key: userKey.publicKey } }));
    writeFileSync(`${userKey.path}-cert.pub`, `${cert.certificate}\n`);
    // The host is verified (no prompt, no mismatch), and then refuses the engineer's own
    // certificate: the join answer's user_ca is the upstream CA, which signs only what the proxy
    // dials with (the next test), so nobody reaches the host around the proxy.
    const r = await sshRun({ port: sshd.port, user: 'root', identity: userKey.path, certificate: `${userKey.path}-cert.pub`, knownHosts, command: 'echo joined' });
    assert.equal(r.code, 255, r.stdout);
    assert.match(r.stderr, /Permission denied/);
    assert.doesNotMatch(r.stderr, /Host key verification failed|authenticity of host/);
    const ca = expectOk(await auth.api<{ upstream: { authorized_keys: string }; user: { authorized_keys: string } }>('GET', '/v1/ca'));
    assert.equal(joined.user_ca, ca.upstream.authorized_keys);
    assert.notEqual(ca.user.authorized_keys.split(' ')[1], ca.upstream.authorized_keys.split(' ')[1]);
  });

  test('a join token used twice: 409, audited, Redis unchanged', async () => {
    const t = await token('host', { env: 'dev' });
    const other = await sshKeygen(dir.path, 'other_host_key');
    expectOk(await auth.api('POST', '/v1/join', { json: { token: t, hostname: 'db01.example.com', host_keys: [other.publicKey] } }));
    const before = await snapshot(auth.redis);
    const mark = await auditMark(auth.redis);
    const again = await auth.api('POST', '/v1/join', { json: { token: t, hostname: 'db02.example.com', host_keys: [(await sshKeygen(dir.path, 'third_host_key')).publicKey] } });
    expectError(again, 409, 'ERR_CONFLICT', /join token already used/);
    const events = await auditSince(auth.redis, mark);
    assert.ok(events.some((e) => e.name === 'host.enroll_failed'), JSON.stringify(events.map((e) => e.name)));
    assert.deepEqual(await snapshot(auth.redis), before);
    // Labels come from the token, never from the host.
    const withLabels = await auth.api('POST', '/v1/join', { json: { token: await token('host'), hostname: 'x.example.com', host_keys: [other.publicKey], labels: { env: 'prod' } } });
    expectError(withLabels, 400, 'ERR_BAD_REQUEST', /unknown field "labels"/);
  });

  test('renewal: the host signs the challenge with its host key (ssh-keygen -Y sign)', async () => {
    const c = expectOk(await auth.api<{ challenge: string; namespace: string }>('POST', '/v1/hosts/renew/challenge', { json: { hostname: 'web01.example.com' } }));
    const file = dir.file('challenge');
    writeFileSync(file, c.challenge);
    await runOk('ssh-keygen', ['-Y', 'sign', '-n', c.namespace, '-f', hostKey.path, file]);
    const signature = readFileSync(`${file}.sig`, 'utf8');
    const renewed = expectOk(await auth.api<JoinResult>('POST', '/v1/hosts/renew', { json: { hostname: 'web01.example.com', signature } }));
    assert.equal(renewed.certificates.length, 1);
    // The challenge is single-use.
    expectError(await auth.api('POST', '/v1/hosts/renew', { json: { hostname: 'web01.example.com', signature } }), 401, 'ERR_UNAUTHENTICATED', /no renewal challenge/);
  });

  test('a proxy enrolls and mints per-connection certificates; a revoked one is refused by sshd via the KRL', async () => {
    const proxyKey = await sshKeygen(dir.path, 'proxy_host_key');
    const joined = expectOk(await auth.api<JoinResult>('POST', '/v1/join', { json: { token: await token('proxy'), type: 'proxy', hostname: 'bastion.example.com', host_keys: [proxyKey.publicKey] } }));
    assert.match(joined.service_credential ?? '', /^[A-Za-z0-9_-]{43}$/);
    proxyCredential = joined.service_credential!;

    const resolved = expectOk(await auth.api<{ name: string; labels: Record<string, string> }>('GET', '/v1/proxy/hosts/web01', { token: proxyCredential }));
    assert.equal(resolved.name, 'web01.example.com');
    expectError(await auth.api('GET', '/v1/proxy/hosts/nowhere', { token: proxyCredential }), 404, 'ERR_NOT_FOUND');
    expectError(await auth.api('GET', '/v1/proxy/hosts/web01', { token: admin }), 401, 'ERR_UNAUTHENTICATED');

    const connKey = await sshKeygen(dir.path, 'id_conn');
    // alice's own certificate as the proxy names it (key id, serial, key fingerprint); auth
    // re-checks it on every upstream request.
    const aliceCert = { serial: '1', key_id: 'alice req=http-test', fingerprint: `SHA256:${'A'.repeat(43)}` };
    const up = expectOk(
      await auth.api<{ certificate: string; serial: string; principals: string[]; key_id: string }>('POST', '/v1/proxy/certs/upstream', {
        token: proxyCredential,
        json: { user: 'alice', login: 'root', host: 'web01', public_key: connKey.publicKey, client: aliceCert },
      }),
    );
    assert.deepEqual(up.principals, ['root']);
    assert.match(up.key_id, /^alice req=\S+ via=bastion\.example\.com$/);
    expectError(
      await auth.api('POST', '/v1/proxy/certs/upstream', { token: proxyCredential, json: { user: 'alice', login: 'postgres', host: 'web01', public_key: connKey.publicKey, client: aliceCert } }),
      403,
      'ERR_FORBIDDEN',
      /may not log in as "postgres"/,
    );
    const jump = expectOk(await auth.api<{ principals: string[] }>('POST', '/v1/proxy/certs/host', { token: proxyCredential, json: { host: 'web01', public_key: proxyKey.publicKey, ttl: '5m' } }));
    assert.ok(jump.principals.includes('web01.example.com'));

    const certPath = `${connKey.path}-cert.pub`;
    writeFileSync(certPath, `${up.certificate}\n`);
    const run = () => sshRun({ port: sshd.port, user: 'root', identity: connKey.path, certificate: certPath, command: 'true' });
    assert.equal((await run()).code, 0);

    const before = await auth.api('GET', '/v1/krl');
    expectOk(await auth.api('POST', '/v1/admin/revoke', { token: admin, json: { serial: up.serial, reason: 'test' } }));
    const krl = await auth.api('GET', '/v1/krl', { headers: { 'if-none-match': String(before.headers['etag']) } });
    assert.equal(krl.status, 200);
    // As a host's refresh timer does: write the new KRL beside the old one and rename it in place.
    writeFileSync(`${sshd.revokedKeysPath!}.new`, krl.bytes);
    renameSync(`${sshd.revokedKeysPath!}.new`, sshd.revokedKeysPath!);
    assert.notEqual((await run()).code, 0);
    await sshd.waitForLog(/revoked/i);

    // Revoking alice's own certificate refuses the proxy's next request for her at once, and a
    // request without the client certificate is not served at all.
    expectOk(await auth.api('POST', '/v1/admin/revoke', { token: admin, json: { key_id: aliceCert.key_id, reason: 'test' } }));
    const upstream = (client?: typeof aliceCert) =>
      auth.api('POST', '/v1/proxy/certs/upstream', { token: proxyCredential, json: { user: 'alice', login: 'root', host: 'web01', public_key: connKey.publicKey, ...(client === undefined ? {} : { client }) } });
    expectError(await upstream(aliceCert), 403, 'ERR_FORBIDDEN', /client certificate .* is revoked \(key-id:alice req=http-test\)/);
    expectError(await upstream(), 400, 'ERR_BAD_REQUEST', /"client" is required/);
    const access = (q: string) => auth.api('GET', `/v1/proxy/access/alice${q}`, { token: proxyCredential });
    expectOk(await access(''));
    const mark = await auditMark(auth.redis);
    expectError(await access(`?serial=1&key_id=${encodeURIComponent(aliceCert.key_id)}&fingerprint=${encodeURIComponent(aliceCert.fingerprint)}`), 403, 'ERR_FORBIDDEN', /is revoked/);
    const refused = (await auditSince(auth.redis, mark)).find((e) => e.name === 'session.refused');
    assert.equal(refused?.fields['reason'], 'revoked_certificate', JSON.stringify(refused));
    expectError(await access('?serial=1'), 400, 'ERR_BAD_REQUEST');
  });

  test('admin: the inventory lists hosts; removing one revokes its certificates', async () => {
    const list = expectOk(await auth.api<{ hosts: { name: string; certificates: unknown[] }[] }>('GET', '/v1/admin/hosts', { token: admin }));
    assert.deepEqual(list.hosts.map((h) => h.name).sort(), ['bastion.example.com', 'db01.example.com', 'web01.example.com']);
    const removed = expectOk(await auth.api<{ certificates_revoked: number }>('DELETE', '/v1/admin/hosts/db01.example.com', { token: admin }));
    assert.equal(removed.certificates_revoked, 1);
    expectError(await auth.api('DELETE', '/v1/admin/hosts/db01.example.com', { token: admin }), 404, 'ERR_NOT_FOUND');
    expectError(await auth.api('GET', '/v1/proxy/hosts/db01', { token: proxyCredential }), 404, 'ERR_NOT_FOUND');
    // The user's view: only hosts their roles reach (env=dev), not the proxy.
    const mine = expectOk(await auth.api<{ hosts: { name: string }[] }>('GET', '/v1/hosts', { token: admin }));
    assert.deepEqual(mine.hosts.map((h) => h.name), ['web01.example.com']);
  });
});
