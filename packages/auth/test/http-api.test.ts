import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { signInThroughProvider, startOidcProvider, startRedis, tempDir, type RedisHandle, type TempDir, type TestOidcProvider } from '@portcullis/harness';
import { AuthClient } from '../src/http/client.js';
import {
  adminSession,
  auditMark,
  auditSince,
  expectError,
  expectOk,
  snapshot,
  sshKeygen,
  startTestAuth,
  totpFor,
  type TestAuth,
} from './http-helpers.js';

const DEV_ROLE = {
  kind: 'role',
  name: 'dev',
  spec: { allow: { logins: ['ubuntu', '{{user.name}}'], host_labels: { '*': '*' } }, options: { max_cert_ttl: '10m' } },
};
// Adds nothing but the demand for a fresh second factor on every certificate.
const STRICT_ROLE = { kind: 'role', name: 'strict', spec: { options: { require_session_mfa: true } } };
const ADMIN_PASSWORD = 'correct horse battery staple';
const alice = { sub: 'sub-alice', username: 'alice', password: 'alice-password-1', groups: ['eng'] };

describe('auth HTTP API', () => {
  let dir: TempDir;
  let redisServer: RedisHandle;
  let provider: TestOidcProvider;
  let auth: TestAuth;
  let admin: string;
  let keys: { ed25519: string; rsa1024: string };

  /** A refusal: the status and code, an audit event naming the code, and Redis as it was. */
  async function refused(
    send: () => Promise<Awaited<ReturnType<TestAuth['api']>>>,
    status: number,
    code: string,
    opts: { message?: RegExp; event?: string } = {},
  ): Promise<void> {
    const before = await snapshot(auth.redis);
    const mark = await auditMark(auth.redis);
    const res = await send();
    expectError(res, status, code, opts.message);
    const events = await auditSince(auth.redis, mark);
    // Refusals the HTTP layer audits carry errorCode; the issuer's own events carry `code`, which
    // the audit layer currently redacts (its name reads like a TOTP code), so those match by name.
    const ev = events.find(
      (e) => (opts.event === undefined || e.name === opts.event) && (e.fields['errorCode'] === code || (e.fields['errorCode'] === undefined && e.fields['code'] !== undefined && opts.event !== undefined)),
    );
    assert.ok(ev, `an audit event with code ${code}${opts.event ? ` (${opts.event})` : ''}; got ${JSON.stringify(events.map((e) => [e.name, e.fields['code']]))}`);
    assert.deepEqual(await snapshot(auth.redis), before, 'Redis changed on a refusal');
  }

  before(async () => {
    dir = tempDir('portcullis-http-');
    redisServer = await startRedis({ dir: dir.path });
    provider = await startOidcProvider({ users: [alice], clients: [{ client_id: 'portcullis', client_secret: 'oidc-client-secret-0123', redirect_uris: ['http://127.0.0.1/callback'] }] });
    auth = await startTestAuth({
      stateDir: dir.file('state'),
      redisUrl: redisServer.url,
      config: {
        roles: [DEV_ROLE, STRICT_ROLE],
        rate_limits: { login: { per_user: 4, per_address: 1000 }, totp: { per_user: 1000, per_address: 1000 } },
        oidc: {
          issuer: provider.issuer,
          client_id: 'portcullis',
          client_secret: 'oidc-client-secret-0123',
          allow_insecure_loopback_issuer: true,
          role_mapping: [{ value: 'eng', roles: ['dev'] }],
        },
      },
    });
    admin = await adminSession(auth, ADMIN_PASSWORD);
    expectOk(await auth.api('PATCH', '/v1/admin/users/admin', { token: admin, json: { roles: ['admin', 'dev'] } }));
    keys = {
      ed25519: (await sshKeygen(dir.path, 'id_ed25519')).publicKey,
      rsa1024: (await sshKeygen(dir.path, 'id_rsa1024', 'rsa', 1024)).publicKey,
    };
  });

  after(async () => {
    await auth?.stop();
    await provider?.stop();
    await redisServer?.stop();
    dir?.remove();
  });

  test('health, readiness, metrics and the CA lines', async () => {
    assert.deepEqual(expectOk(await auth.api('GET', '/v1/health')), { status: 'ok' });
    const ready = expectOk(await auth.api<{ status: string; checks: Record<string, string> }>('GET', '/v1/ready'));
    assert.equal(ready.status, 'ready');
    assert.equal(ready.checks['redis'], 'ok');
    const metrics = await auth.api('GET', '/metrics');
    assert.equal(metrics.status, 200);
    const text = metrics.bytes.toString('utf8');
    for (const name of ['ssh_ca_certificates_issued_total', 'ssh_ca_issuance_failures_total', 'ssh_revoked_certs_total', 'portcullis_auth_http_request_duration_seconds_bucket']) {
      assert.ok(text.includes(name), `metrics lack ${name}`);
    }
    // Route templates, never raw paths, label the latency histogram.
    assert.match(text, /route="\/v1\/admin\/users\/:name"/);
    const ca = expectOk(await auth.api<{ user: { authorized_keys: string }; host: { known_hosts: string } }>('GET', '/v1/ca'));
    assert.match(ca.user.authorized_keys, /^ssh-ed25519 AAAA\S+ portcullis-user-ca-[0-9a-f]{16}\n$/);
    assert.match(ca.host.known_hosts, /^@cert-authority \* ssh-ed25519 AAAA\S+ portcullis-host-ca-[0-9a-f]{16}\n$/);
    expectError(await auth.api('GET', '/v1/nothing-here'), 404, 'ERR_NOT_FOUND', /no route GET \/v1\/nothing-here/);
  });

  test('the client refuses a server whose certificate is not the pinned one, before sending anything', async () => {
    const wrong = new AuthClient({ url: auth.info.url, fingerprint: '00'.repeat(32) });
    await assert.rejects(wrong.request('POST', '/v1/login/password', { json: { username: 'admin', password: ADMIN_PASSWORD } }), /not the pinned/);
    assert.match(auth.info.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.match(auth.info.spkiPin, /^sha256\/\/[A-Za-z0-9+/]{43}=$/);
  });

  test('the KRL is served with an ETag; If-None-Match gives 304 until a revocation', async () => {
    const first = await auth.api('GET', '/v1/krl');
    assert.equal(first.status, 200);
    assert.equal(first.headers['content-type'], 'application/octet-stream');
    assert.equal(first.bytes.subarray(0, 8).toString('latin1'), 'SSHKRL\n\0');
    const etag = String(first.headers['etag']);
    assert.match(etag, /^"[0-9a-f]{64}"$/);
    const again = await auth.api('GET', '/v1/krl', { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.equal(again.bytes.length, 0);
    expectOk(await auth.api('POST', '/v1/admin/revoke', { token: admin, json: { serial: '4242', reason: 'test' } }));
    const changed = await auth.api('GET', '/v1/krl', { headers: { 'if-none-match': etag } });
    assert.equal(changed.status, 200);
    assert.notEqual(changed.headers['etag'], etag);
    assert.ok(Number(changed.headers['x-krl-version']) > Number(first.headers['x-krl-version']));
  });

  test('a user certificate for a login session', async () => {
    const res = expectOk(
      await auth.api<{ certificate: string; serial: string; principals: string[]; valid_before: string; key_id: string }>('POST', '/v1/certs/user', {
        token: admin,
        json: { public_key: keys.ed25519, ttl: '2m' },
      }),
    );
    assert.match(res.certificate, /^ssh-ed25519-cert-v01@openssh\.com AAAA/);
    assert.deepEqual(res.principals, ['admin', 'ubuntu']);
    assert.match(res.key_id, /^admin req=/);
    const life = Date.parse(res.valid_before) - Date.now();
    assert.ok(life > 100_000 && life <= 121_000, `two minutes, got ${life} ms`);
    assert.ok(BigInt(res.serial) > 0n);
  });

  test('bad input: each gets the precise 4xx, an audit event, and Redis unchanged', async () => {
    const cert = (json: unknown) => () => auth.api('POST', '/v1/certs/user', { token: admin, json });
    await refused(() => auth.api('POST', '/v1/certs/user', { token: admin, raw: '{"public_key": "ssh-ed25519 AAAA', contentType: 'application/json' }), 400, 'ERR_BAD_REQUEST', {
      message: /^malformed JSON body$/,
      event: 'cert.refused',
    });
    await refused(() => auth.api('POST', '/v1/certs/user', { token: admin, json: { public_key: 'x'.repeat(70_000) } }), 413, 'ERR_PAYLOAD_TOO_LARGE', {
      message: /larger than 65536 bytes/,
    });
    await refused(() => auth.api('POST', '/v1/certs/user', { token: admin, raw: 'public_key=x', contentType: 'application/x-www-form-urlencoded' }), 415, 'ERR_UNSUPPORTED_MEDIA_TYPE');
    await refused(cert({ public_key: keys.ed25519, principals: ['root'] }), 400, 'ERR_BAD_REQUEST', { message: /unknown field "principals"/ });
    await refused(cert({ ttl: 60 }), 400, 'ERR_BAD_REQUEST', { message: /"public_key" is required/ });
    await refused(cert({ public_key: keys.ed25519, ttl: 'forever' }), 400, 'ERR_BAD_REQUEST', { message: /"ttl"/ });
    // An Ed25519 key whose blob is one byte short.
    const [type, blob] = keys.ed25519.split(' ') as [string, string];
    const short = Buffer.from(blob, 'base64');
    short.writeUInt32BE(31, short.length - 36);
    const truncated = `${type} ${short.subarray(0, short.length - 1).toString('base64')}`;
    await refused(cert({ public_key: truncated }), 400, 'ERR_BAD_REQUEST', { message: /publicKey|32/, event: 'cert.refused' });
    await refused(cert({ public_key: keys.rsa1024 }), 400, 'ERR_BAD_REQUEST', { message: /1024-bit RSA key is too small/, event: 'cert.refused' });
    await refused(() => auth.api('POST', '/v1/certs/user', { token: 'A'.repeat(43), json: { public_key: keys.ed25519 } }), 401, 'ERR_UNAUTHENTICATED', {
      message: /unknown, expired or revoked login session/,
    });
    await refused(() => auth.api('POST', '/v1/certs/user', { json: { public_key: keys.ed25519 } }), 401, 'ERR_UNAUTHENTICATED', { message: /Authorization: Bearer/ });
    await refused(() => auth.api('POST', '/v1/login/password', { json: { username: 'admin', password: 'wrong password here' } }), 401, 'ERR_UNAUTHENTICATED', {
      event: 'user.login_failed',
    });
  });

  test('an invite used twice is refused the second time', async () => {
    const created = expectOk(
      await auth.api<{ invite: { token: string; url: string } }>('POST', '/v1/admin/users', { token: admin, json: { name: 'Bob', roles: ['dev'] } }),
    );
    assert.equal(created.invite.url, `${auth.info.url}/invite#${created.invite.token}`);
    const accept = () => auth.api('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: 'bobs new password' } });
    expectOk(await accept());
    await refused(accept, 409, 'ERR_CONFLICT', { message: /invite already used/, event: 'user.login_failed' });
    await refused(() => auth.api('POST', '/v1/invites/accept', { json: { token: 'short', password: 'x' } }), 400, 'ERR_BAD_REQUEST', { message: /"token"/ });
    const bob = expectOk(await auth.api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'bob', password: 'bobs new password' } }));
    // Not an admin: every admin route refuses.
    expectError(await auth.api('GET', '/v1/admin/users', { token: bob.token }), 403, 'ERR_FORBIDDEN', /not an administrator/);
  });

  test('an expired OIDC state is refused with 410 and changes nothing', async () => {
    const started = expectOk(await auth.api<{ url: string }>('POST', '/v1/login/oidc/start', { json: { redirect_uri: 'http://127.0.0.1:45678/callback' } }));
    const callback = await signInThroughProvider(started.url, alice);
    auth.clock.offset += 11 * 60_000;
    try {
      await refused(() => auth.api('POST', '/v1/login/oidc/finish', { json: { callback_url: callback.href } }), 410, 'ERR_EXPIRED', {
        message: /OIDC state expired/,
        event: 'user.login_failed',
      });
    } finally {
      auth.clock.offset -= 11 * 60_000;
    }
    await refused(() => auth.api('POST', '/v1/login/oidc/start', { json: { redirect_uri: 'https://evil.example/cb' } }), 400, 'ERR_BAD_REQUEST', { message: /not allowed/ });
  });

  test('TOTP: enroll, then the login asks for it; a wrong code is refused and changes nothing', async () => {
    const { token: carol } = await newUser('carol', ['dev']);
    const enroll = expectOk(await auth.api<{ secret: string; uri: string }>('POST', '/v1/mfa/totp/enroll', { token: carol, json: {} }));
    assert.match(enroll.uri, /^otpauth:\/\/totp\//);
    await refused(() => auth.api('POST', '/v1/mfa/totp/confirm', { token: carol, json: { totp: wrongCode(enroll.secret) } }), 401, 'ERR_MFA_INVALID', { event: 'mfa.failed' });
    expectOk(await auth.api('POST', '/v1/mfa/totp/confirm', { token: carol, json: { totp: totpFor(enroll.secret, auth.clock.offset) } }));
    auth.clock.offset += 30_000; // the next time step, so the next code is not a replay

    const first = await auth.api<{ error: { ticket: string; methods: string[] } }>('POST', '/v1/login/password', { json: { username: 'carol', password: 'carols password!' } });
    expectError(first, 401, 'ERR_MFA_REQUIRED');
    const ticket = first.body.error.ticket;
    assert.match(ticket, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(first.body.error.methods, ['totp']);
    await refused(() => auth.api('POST', '/v1/login/mfa', { json: { ticket, totp: wrongCode(enroll.secret) } }), 401, 'ERR_MFA_INVALID', { event: 'mfa.failed' });
    const done = expectOk(await auth.api<{ token: string; mfa_verified: boolean }>('POST', '/v1/login/mfa', { json: { ticket, totp: totpFor(enroll.secret, auth.clock.offset) } }));
    assert.equal(done.mfa_verified, true);
    const me = expectOk(await auth.api<{ session: { mfa_verified: boolean } }>('GET', '/v1/me', { token: done.token }));
    assert.equal(me.session.mfa_verified, true);
    // The ticket and the code are spent.
    await refused(() => auth.api('POST', '/v1/login/mfa', { json: { ticket, totp: totpFor(enroll.secret, auth.clock.offset) } }), 401, 'ERR_UNAUTHENTICATED', { message: /unknown, used or expired MFA ticket/ });
    // Password and code in one request; the same code again is a replay.
    auth.clock.offset += 30_000;
    const code = totpFor(enroll.secret, auth.clock.offset);
    expectOk(await auth.api('POST', '/v1/login/password', { json: { username: 'carol', password: 'carols password!', totp: code } }));
    await refused(() => auth.api('POST', '/v1/login/password', { json: { username: 'carol', password: 'carols password!', totp: code } }), 401, 'ERR_MFA_INVALID', {
      message: /already used/,
    });

    // A role that wants a second factor per certificate: the login's code does not count.
    expectOk(await auth.api('PATCH', '/v1/admin/users/carol', { token: admin, json: { roles: ['dev', 'strict'] } }));
    const mint = (totp?: string) => auth.api('POST', '/v1/certs/user', { token: done.token, json: { public_key: keys.ed25519, ...(totp === undefined ? {} : { totp }) } });
    await refused(() => mint(), 401, 'ERR_MFA_REQUIRED', { message: /requires a second factor for every certificate/, event: 'cert.refused' });
    auth.clock.offset += 30_000;
    const cert = expectOk(await mint(totpFor(enroll.secret, auth.clock.offset)));
    assert.ok(cert['certificate']);
  });

  test('login attempts over the limit get 429 with Retry-After, audited', async () => {
    await newUser('dave', ['dev']);
    const attempt = () => auth.api('POST', '/v1/login/password', { json: { username: 'dave', password: 'not his password' } });
    // newUser logged in once; the limit is 4 per user per window.
    for (let i = 0; i < 3; i++) expectError(await attempt(), 401, 'ERR_UNAUTHENTICATED');
    const mark = await auditMark(auth.redis);
    const limited = await attempt();
    expectError(limited, 429, 'ERR_RATE_LIMITED', /too many login attempts for this user/);
    const retry = Number(limited.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 300, `Retry-After ${limited.headers['retry-after']}`);
    const events = await auditSince(auth.redis, mark);
    assert.ok(events.some((e) => e.name === 'rate_limit.exceeded' && e.actor['name'] === 'dave'));
    // Even the right password waits for the window.
    expectError(await auth.api('POST', '/v1/login/password', { json: { username: 'dave', password: 'daves password!!' } }), 429, 'ERR_RATE_LIMITED');
  });

  test('admin: roles through the API, config roles read-only', async () => {
    const yaml = 'kind: role\nname: ops\nspec:\n  allow:\n    logins: [root]\n    host_labels: {env: prod}\n  options:\n    max_cert_ttl: 2m\n';
    assert.deepEqual(expectOk(await auth.api('PUT', '/v1/admin/roles/ops', { token: admin, json: { yaml } })), { name: 'ops', created: true });
    const got = expectOk(await auth.api<{ origin: string; yaml: string }>('GET', '/v1/admin/roles/ops', { token: admin }));
    assert.equal(got.origin, 'api');
    assert.match(got.yaml, /max_cert_ttl: 2m/);
    const list = expectOk(await auth.api<{ roles: { name: string; origin: string }[] }>('GET', '/v1/admin/roles', { token: admin }));
    assert.deepEqual(list.roles.map((r) => [r.name, r.origin]), [['admin', 'builtin'], ['dev', 'config'], ['ops', 'api'], ['strict', 'config']]);
    await refused(() => auth.api('PUT', '/v1/admin/roles/dev', { token: admin, json: { yaml: 'kind: role\nname: dev\nspec: {}\n' } }), 409, 'ERR_CONFLICT', { message: /config file/ });
    await refused(() => auth.api('PUT', '/v1/admin/roles/ops', { token: admin, json: { yaml: 'kind: role\nname: ops\nspec: {allow: {logins: ["a b"]}}\n' } }), 400, 'ERR_BAD_REQUEST', {
      message: /spec\.allow\.logins\[0\]/,
    });
    await refused(() => auth.api('PUT', '/v1/admin/roles/ops', { token: admin, json: { yaml: 'kind: role\nname: other\nspec: {}\n' } }), 400, 'ERR_BAD_REQUEST', { message: /named other/ });
    expectOk(await auth.api('DELETE', '/v1/admin/roles/ops', { token: admin }));
    expectError(await auth.api('GET', '/v1/admin/roles/ops', { token: admin }), 404, 'ERR_NOT_FOUND');
  });

  test('admin: a lock refuses the next certificate at once; removing it lets minting resume', async () => {
    const { token: erin } = await newUser('erin', ['dev']);
    const lock = expectOk(await auth.api<{ id: string }>('POST', '/v1/admin/locks', { token: admin, json: { target: { kind: 'user', name: 'erin' }, message: 'laptop stolen', ttl: '1h' } }));
    const locked = await auth.api('POST', '/v1/certs/user', { token: erin, json: { public_key: keys.ed25519 } });
    expectError(locked, 423, 'ERR_LOCKED', /laptop stolen/);
    const locks = expectOk(await auth.api<{ locks: { id: string }[] }>('GET', '/v1/admin/locks', { token: admin }));
    assert.ok(locks.locks.some((l) => l.id === lock.id));
    expectOk(await auth.api('DELETE', `/v1/admin/locks/${lock.id}`, { token: admin }));
    expectOk(await auth.api('POST', '/v1/certs/user', { token: erin, json: { public_key: keys.ed25519 } }));
    // Revoking the user ends their sessions too.
    const r = expectOk(await auth.api<{ revoked: string[]; sessions_revoked: number }>('POST', '/v1/admin/revoke', { token: admin, json: { user: 'erin', reason: 'offboarded' } }));
    assert.equal(r.revoked.length, 1);
    assert.equal(r.sessions_revoked, 1);
    expectError(await auth.api('GET', '/v1/me', { token: erin }), 401, 'ERR_UNAUTHENTICATED');
    // ... and a session lock tells the proxies to end what erin's login session opened, audited.
    const after = expectOk(await auth.api<{ locks: { id: string; target: { kind: string; name: string }; message: string; created_by?: string }[] }>('GET', '/v1/admin/locks', { token: admin }));
    const sessionLock = after.locks.find((l) => l.target.kind === 'session');
    assert.ok(sessionLock, JSON.stringify(after.locks));
    assert.match(sessionLock.target.name, /^[0-9a-f]{16}$/);
    assert.equal(sessionLock.message, 'offboarded');
    assert.equal(sessionLock.created_by, 'admin');
    const audited = expectOk(await auth.api<{ events: { fields: Record<string, unknown> }[] }>('GET', '/v1/admin/audit?code=lock.created&order=newest&limit=1', { token: admin }));
    assert.deepEqual([audited.events[0]?.fields['target'], audited.events[0]?.fields['user']], [`session:${sessionLock.target.name}`, 'erin']);
    expectOk(await auth.api('DELETE', `/v1/admin/locks/${sessionLock.id}`, { token: admin }));
  });

  test('admin: join tokens, audit query', async () => {
    const t = expectOk(await auth.api<{ token: string; id: string }>('POST', '/v1/admin/tokens', { token: admin, json: { type: 'host', ttl: '10m', labels: { env: 'dev' } } }));
    assert.match(t.token, /^[A-Za-z0-9_-]{43}$/);
    const list = expectOk(await auth.api<{ tokens: { id: string; labels: Record<string, string> }[] }>('GET', '/v1/admin/tokens', { token: admin }));
    assert.deepEqual(list.tokens.find((x) => x.id === t.id)?.labels, { env: 'dev' });
    expectOk(await auth.api('DELETE', `/v1/admin/tokens/${t.id}`, { token: admin }));
    expectError(await auth.api('DELETE', `/v1/admin/tokens/${t.id}`, { token: admin }), 404, 'ERR_NOT_FOUND');
    await refused(() => auth.api('POST', '/v1/admin/tokens', { token: admin, json: { type: 'db' } }), 400, 'ERR_BAD_REQUEST', { message: /"type"/, event: 'admin.action' });

    const q = expectOk(await auth.api<{ events: { name: string; fields: Record<string, unknown> }[] }>('GET', '/v1/admin/audit?code=token.created,PC3013I&order=newest&limit=2', { token: admin }));
    assert.deepEqual(q.events.map((e) => e.name), ['token.deleted', 'token.created']);
    expectError(await auth.api('GET', '/v1/admin/audit?limit=0', { token: admin }), 400, 'ERR_BAD_REQUEST', /"limit"/);
  });

  test('no secret reaches the audit stream', async () => {
    const all = JSON.stringify(await auditSince(auth.redis, '-'));
    for (const secret of [ADMIN_PASSWORD, 'carols password!', 'bobs new password', 'not his password', 'wrong password here', admin]) {
      assert.ok(!all.includes(secret), `audit stream contains a secret: ${secret.slice(0, 4)}…`);
    }
    assert.ok(!all.includes(auth.info.bootstrapInvite!.token));
  });

  /** Creates a local user with a password (`<name>s password!!`-ish) and logs in. */
  async function newUser(name: string, roles: string[]): Promise<{ token: string }> {
    const created = expectOk(await auth.api<{ invite: { token: string } }>('POST', '/v1/admin/users', { token: admin, json: { name, roles } }));
    const password = name === 'carol' ? 'carols password!' : name === 'dave' ? 'daves password!!' : `${name}s password!!`;
    expectOk(await auth.api('POST', '/v1/invites/accept', { json: { token: created.invite.token, password } }));
    return expectOk(await auth.api<{ token: string }>('POST', '/v1/login/password', { json: { username: name, password } }));
  }

  function wrongCode(secret: string): string {
    const right = totpFor(secret, auth.clock.offset);
    // Differs from the codes of the whole acceptance window (previous, current, next step).
    const window = [-30_000, 0, 30_000].map((d) => totpFor(secret, auth.clock.offset + d));
    for (let i = 0; ; i++) {
      const c = String((Number(right) + 1 + i) % 1_000_000).padStart(6, '0');
      if (!window.includes(c)) return c;
    }
  }
});
