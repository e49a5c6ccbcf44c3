import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  approveDeviceLogin,
  runOk,
  signInThroughProvider,
  sshRun,
  startOidcProvider,
  startRedis,
  startSshd,
  tempDir,
  type RedisHandle,
  type SshdHandle,
  type TempDir,
  type TestOidcProvider,
} from '@portcullis/harness';
import { AuthClient } from '../src/http/client.js';
import { parseAuthConfig } from '../src/config/load.js';
import { AuthService } from '../src/service.js';
import { adminSession, expectError, expectOk, sshKeygen, startTestAuth, totpFor, type TestAuth } from './http-helpers.js';

/*
 * The whole path an engineer takes, against real processes on loopback: an OpenID provider
 * (code + PKCE through its login form, and the device grant), TOTP, the auth API over HTTPS
 * pinned by the fingerprint the service printed, a certificate minted from the login session,
 * and OpenSSH's sshd trusting the exported user CA line.
 */

const CLIENT = { client_id: 'portcullis', client_secret: 'e2e-client-secret-0123456789' };
const alice = { sub: 'sub-alice', username: 'alice', password: 'alice-password-1', groups: ['eng'] };
const bob = { sub: 'sub-bob', username: 'bob', password: 'bob-password-123', groups: ['eng'] };
const ROLES = [
  {
    kind: 'role',
    name: 'dev',
    // root is the login sshd can actually serve in the test container; nobody exists but is not granted.
    spec: { allow: { logins: ['root'], host_labels: { '*': '*' } }, options: { max_cert_ttl: '10m' } },
  },
];

interface Cert {
  certificate: string;
  serial: string;
  principals: string[];
  valid_before: string;
}

describe('end to end: SSO + TOTP login, a certificate sshd accepts, device login, restart', () => {
  let dir: TempDir;
  let redisServer: RedisHandle;
  let provider: TestOidcProvider;
  let auth: TestAuth;
  let sshd: SshdHandle;
  let key: { path: string; publicKey: string };
  let aliceToken: string;
  let firstSerial: bigint;
  const config = () => ({
    roles: ROLES,
    oidc: { issuer: provider.issuer, ...CLIENT, allow_insecure_loopback_issuer: true, role_mapping: [{ value: 'eng', roles: ['dev'] }] },
  });

  before(async () => {
    dir = tempDir('portcullis-e2e-');
    redisServer = await startRedis({ dir: dir.path });
    provider = await startOidcProvider({ users: [alice, bob], clients: [{ ...CLIENT, redirect_uris: ['http://127.0.0.1/callback'] }] });
    auth = await startTestAuth({ stateDir: dir.file('state'), redisUrl: redisServer.url, config: config() });
    key = await sshKeygen(dir.path, 'id_alice');
    // sshd trusts exactly the line the API exports.
    const ca = expectOk(await auth.api<{ user: { authorized_keys: string } }>('GET', '/v1/ca'));
    sshd = await startSshd({ dir: dir.path, trustedUserCAKeys: ca.user.authorized_keys });
  });

  after(async () => {
    await sshd?.stop();
    await auth?.stop();
    await provider?.stop();
    await redisServer?.stop();
    dir?.remove();
  });

  async function ssoLogin(): Promise<Awaited<ReturnType<TestAuth['api']>>> {
    // What pcsh does: a loopback redirect on a port of its own, the browser through the provider's form.
    const started = expectOk(await auth.api<{ url: string }>('POST', '/v1/login/oidc/start', { json: { redirect_uri: 'http://127.0.0.1:53682/callback' } }));
    const url = new URL(started.url);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    const callback = await signInThroughProvider(started.url, alice);
    return auth.api('POST', '/v1/login/oidc/finish', { json: { callback_url: callback.href } });
  }

  async function sshAs(user: string, certPath: string): Promise<{ code: number; log: string }> {
    const since = sshd.log().length;
    const r = await sshRun({ port: sshd.port, user, identity: key.path, certificate: certPath, command: 'echo portcullis-ok' });
    const log = r.code === 0 ? '' : (await sshd.waitForLog(/(Certificate invalid|not a listed principal|Connection closed|Disconnected)[^\n]*/, { since })).input ?? '';
    return { code: r.code, log: r.code === 0 ? r.stdout : log.slice(since) };
  }

  test('SSO with PKCE, TOTP enrolled, then SSO + TOTP; the minted certificate opens root and not nobody', async () => {
    // First login: no second factor yet.
    const first = expectOk(await ssoLogin()) as { token: string; user: { name: string; kind: string; roles: string[] } };
    assert.deepEqual([first.user.name, first.user.kind, first.user.roles], ['alice', 'sso', ['dev']]);
    const enroll = expectOk(await auth.api<{ secret: string }>('POST', '/v1/mfa/totp/enroll', { token: first.token, json: {} }));
    expectOk(await auth.api('POST', '/v1/mfa/totp/confirm', { token: first.token, json: { totp: totpFor(enroll.secret, auth.clock.offset) } }));
    expectOk(await auth.api('POST', '/v1/logout', { token: first.token }));
    expectError(await auth.api('GET', '/v1/me', { token: first.token }), 401, 'ERR_UNAUTHENTICATED');

    // Second login: the provider's yes is not enough any more.
    auth.clock.offset += 30_000;
    const second = await ssoLogin();
    expectError(second, 401, 'ERR_MFA_REQUIRED');
    const { ticket } = (second.body as { error: { ticket: string } }).error;
    const done = expectOk(await auth.api<{ token: string; mfa_verified: boolean }>('POST', '/v1/login/mfa', { json: { ticket, totp: totpFor(enroll.secret, auth.clock.offset) } }));
    assert.equal(done.mfa_verified, true);
    aliceToken = done.token;
    const me = expectOk(await auth.api<{ session: { method: string }; access: { logins: string[] } }>('GET', '/v1/me', { token: aliceToken }));
    assert.equal(me.session.method, 'oidc');
    assert.deepEqual(me.access.logins, ['root']);

    const cert = expectOk(await auth.api<Cert>('POST', '/v1/certs/user', { token: aliceToken, json: { public_key: key.publicKey } }));
    assert.deepEqual(cert.principals, ['root']);
    firstSerial = BigInt(cert.serial);
    const certPath = `${key.path}-cert.pub`;
    writeFileSync(certPath, `${cert.certificate}\n`);
    const shown = await runOk('ssh-keygen', ['-L', '-f', certPath]);
    assert.match(shown.stdout, new RegExp(`Serial: ${cert.serial}`));
    assert.match(shown.stdout, /Key ID: "alice req=/);

    const ok = await sshAs('root', certPath);
    assert.equal(ok.code, 0, ok.log);
    assert.match(ok.log, /portcullis-ok/);
    const refused = await sshAs('nobody', certPath);
    assert.notEqual(refused.code, 0);
    assert.match(sshd.log(), /name is not a listed principal|not a listed principal/i);
  });

  test('device login: the user approves on another device while the CLI polls', async () => {
    const d = expectOk(await auth.api<{ handle: string; user_code: string; verification_uri: string; interval: number }>('POST', '/v1/login/device/start'));
    assert.match(d.user_code, /\S/);
    const pending = expectOk(await auth.api<{ status: string }>('POST', '/v1/login/device/poll', { json: { handle: d.handle } }));
    assert.equal(pending.status, 'pending');
    await approveDeviceLogin(d.verification_uri, d.user_code, bob);
    const done = expectOk(await auth.api<{ status: string; token: string; user: { name: string } }>('POST', '/v1/login/device/poll', { json: { handle: d.handle } }));
    assert.equal(done.status, 'complete');
    assert.equal(done.user.name, 'bob');
    const me = expectOk(await auth.api<{ session: { method: string } }>('GET', '/v1/me', { token: done.token }));
    assert.equal(me.session.method, 'oidc-device');
    // The handle is spent.
    expectError(await auth.api('POST', '/v1/login/device/poll', { json: { handle: d.handle } }), 401, 'ERR_UNAUTHENTICATED', /already used/);
  });

  test('restarting auth on the same state dir and Redis loses nothing; serials keep increasing', async () => {
    const before = auth.info;
    await auth.stop();
    auth = await startTestAuth({ stateDir: dir.file('state'), redisUrl: redisServer.url, config: config(), clock: auth.clock });
    // Same TLS key and certificate (clients keep their pin), same CA, no second admin invite.
    assert.equal(auth.info.fingerprint, before.fingerprint);
    assert.equal(auth.info.spkiPin, before.spkiPin);
    assert.equal(auth.info.bootstrapInvite, undefined);
    const ca = expectOk(await auth.api<{ user: { authorized_keys: string } }>('GET', '/v1/ca'));
    assert.equal(ca.user.authorized_keys.trim(), readFileSync(sshd.configPath.replace(/sshd_config$/, 'trusted_user_ca_keys'), 'utf8').trim());
    // The login session made before the restart still works, and mints.
    const cert = expectOk(await auth.api<Cert>('POST', '/v1/certs/user', { token: aliceToken, json: { public_key: key.publicKey } }));
    assert.ok(BigInt(cert.serial) > firstSerial, `serial ${cert.serial} after ${firstSerial}`);
    const certPath = `${key.path}-cert.pub`;
    writeFileSync(certPath, `${cert.certificate}\n`);
    assert.equal((await sshAs('root', certPath)).code, 0);
  });

  test('with the embedded Redis, a restart of auth and its redis-server keeps users and serials', async () => {
    const state = dir.file('embedded-state');
    const cfg = parseAuthConfig({ state_dir: state, listen: '127.0.0.1:0', audit: { sink: 'none' }, roles: ROLES }, { env: {} });
    const start = async (): Promise<AuthService> => {
      const s = new AuthService({ config: cfg, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
      await s.start();
      return s;
    };
    let service = await start();
    try {
      const invite = service.info.bootstrapInvite;
      assert.ok(invite);
      const client1 = new AuthClient({ url: service.info.url, fingerprint: service.info.fingerprint });
      const t: Pick<TestAuth, 'info' | 'api'> = { info: service.info, api: (m, p, o) => client1.request(m, p, o) };
      const token = await adminSession(t);
      expectOk(await t.api('PATCH', '/v1/admin/users/admin', { token, json: { roles: ['admin', 'dev'] } }));
      const c1 = expectOk(await t.api<Cert>('POST', '/v1/certs/user', { token, json: { public_key: key.publicKey } }));
      await service.stop();

      service = await start();
      assert.equal(service.info.bootstrapInvite, undefined, 'users survived: no new admin invite');
      const client = new AuthClient({ url: service.info.url, fingerprint: service.info.fingerprint });
      const c2 = expectOk(await client.request<Cert>('POST', '/v1/certs/user', { token, json: { public_key: key.publicKey } }));
      assert.ok(BigInt(c2.serial) > BigInt(c1.serial), `serial ${c2.serial} after ${c1.serial}`);
    } finally {
      await service.stop();
    }
  });
});
