import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { approveDeviceLogin, freePort, runOk, signInThroughProvider, sshRun, startSshd, type SshdHandle } from '@portcullis/harness';
import { adminLaptop, alice, bob, cli, fails, laptop, ok, start, startStack, type Laptop, type Stack } from './pcsh-login-fixture.js';

/*
 * pcsh as an engineer uses it, end to end: trust decisions on first contact, SSO by device
 * code and by loopback redirect through a real OpenID provider, the files it leaves (modes,
 * known_hosts), status / ls / config output, a certificate a real sshd accepts, logout, and
 * one-line failures for an expired login and an unreachable auth.
 */

const mode = (p: string): number => statSync(p).mode & 0o777;

describe('pcsh login, status, ls, config, logout', () => {
  let stack: Stack;
  let admin: Laptop;
  let me: Laptop;
  let sshd: SshdHandle | undefined;

  before(async () => {
    stack = await startStack('pcsh-login-');
    admin = await adminLaptop(stack);
    me = laptop(stack, 'alice');
  });

  after(async () => {
    await sshd?.stop();
    await stack?.stop();
  });

  test('first contact: an unpinned certificate is refused with its fingerprint; a wrong pin and a dead port are one line', async () => {
    const line = await fails('pcsh', me, ['login', '--auth', stack.info.url, '--headless'], 3, /not trusted yet/);
    assert.ok(line.includes(stack.info.fingerprint), line);
    const wrong = `${'00:'.repeat(31)}00`;
    await fails('pcsh', me, ['login', '--auth', stack.info.url, '--fingerprint', wrong, '--headless'], 3, /presented TLS certificate .* not the pinned 00:00/);
    await fails('pcsh', me, ['login', '--auth', `https://127.0.0.1:${await freePort()}`, '--headless'], 4, /cannot reach auth at 127\.0\.0\.1:\d+: connection refused/);
    await fails('pcsh', me, ['login', '--auth', 'http://127.0.0.1:3025'], 2, /only spoken to over https/);
    assert.equal(existsSync(me.pcshHome), false, 'nothing written before trust and login');
  });

  test('--headless: the device code approved on the provider\'s page; key, certificate and known_hosts written private', async () => {
    const login = start('pcsh', me, ['login', '--auth', stack.info.url, '--insecure-accept-fingerprint', '--headless']);
    const m = await login.waitForStderr(/open (\S+) on any device and enter the code (\S+)/);
    await approveDeviceLogin(m[1]!, m[2]!, alice);
    const r = await login.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`trusting auth at 127\\.0\\.0\\.1:\\d+ on first use: certificate SHA-256 ${stack.info.fingerprint}`));

    assert.equal(mode(me.pcshHome), 0o700);
    const keys = `${me.pcshHome}/keys/127.0.0.1`;
    assert.equal(mode(keys), 0o700);
    for (const f of ['id_ed25519', 'id_ed25519.pub', 'id_ed25519-cert.pub']) assert.equal(mode(`${keys}/${f}`), 0o600, f);
    assert.equal(mode(`${me.pcshHome}/profiles/127.0.0.1.json`), 0o600);
    assert.equal(mode(`${me.pcshHome}/known_hosts`), 0o600);
    const ca = await stack.client.request<{ host: { known_hosts: string } }>('GET', '/v1/ca');
    const knownHosts = readFileSync(`${me.pcshHome}/known_hosts`, 'utf8');
    assert.match(ca.body.host.known_hosts, /^@cert-authority \* /);
    assert.ok(knownHosts.includes(ca.body.host.known_hosts.trim()), knownHosts);
    const profile = JSON.parse(readFileSync(`${me.pcshHome}/profiles/127.0.0.1.json`, 'utf8')) as { fingerprint: string; user: string };
    assert.equal(profile.fingerprint, stack.info.fingerprint);
    assert.equal(profile.user, 'alice');
    // ssh-keygen reads what pcsh wrote: the key pair matches and the certificate names alice.
    const shown = await runOk('ssh-keygen', ['-L', '-f', `${keys}/id_ed25519-cert.pub`]);
    assert.match(shown.stdout, /Key ID: "alice /);
    assert.match(shown.stdout, /Principals: \n\s+root\n/);
    const pub = await runOk('ssh-keygen', ['-y', '-f', `${keys}/id_ed25519`]);
    assert.equal(pub.stdout.trim().split(' ').slice(0, 2).join(' '), readFileSync(`${keys}/id_ed25519.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' '));
  });

  test('status shows user, roles, logins, session and the certificate; --json carries the same', async () => {
    const r = await ok('pcsh', me, ['status']);
    assert.match(r.stdout, /^Profile: +127\.0\.0\.1 \(current\)$/m);
    assert.match(r.stdout, /^User: +alice \(sso\)$/m);
    assert.match(r.stdout, /^Roles: +dev$/m);
    assert.match(r.stdout, /^Logins: +root$/m);
    assert.match(r.stdout, /^Session: +oidc-device, no second factor, valid until \S+Z \(in \d+h/m);
    assert.match(r.stdout, /^ {2}Principals: +root$/m);
    assert.match(r.stdout, /^ {2}Valid: +from \S+ until \S+ \(in [1-5]m/m);
    assert.match(r.stdout, /^ {2}Extensions: +permit-pty$/m);
    const j = JSON.parse((await ok('pcsh', me, ['status', '--json'])).stdout) as { user: { name: string }; access: { logins: string[] }; certificate: { valid: boolean; principals: string[]; extensions: string[] } };
    assert.equal(j.user.name, 'alice');
    assert.deepEqual(j.access.logins, ['root']);
    assert.equal(j.certificate.valid, true);
    assert.deepEqual(j.certificate.extensions, ['permit-pty']);
  });

  test('the certificate opens a real sshd that trusts `pcctl auth export --type user`', async () => {
    const exported = await ok('pcctl', me, ['auth', 'export', '--type', 'user']);
    assert.match(exported.stdout, /^ssh-ed25519 \S+ portcullis-user-ca-/);
    sshd = await startSshd({ dir: stack.dir.path, trustedUserCAKeys: exported.stdout });
    const keys = `${me.pcshHome}/keys/127.0.0.1`;
    const r = await sshRun({ port: sshd.port, user: 'root', identity: `${keys}/id_ed25519`, certificate: `${keys}/id_ed25519-cert.pub`, command: 'echo via-pcsh' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'via-pcsh');
  });

  test('certificate ensure keeps a good certificate and mints with --force', async () => {
    const certPath = `${me.pcshHome}/keys/127.0.0.1/id_ed25519-cert.pub`;
    const before = readFileSync(certPath, 'utf8');
    const r = await ok('pcsh', me, ['certificate', 'ensure']);
    assert.equal(r.stdout + r.stderr, '');
    assert.equal(readFileSync(certPath, 'utf8'), before);
    await ok('pcsh', me, ['certificate', 'ensure', '--force']);
    assert.notEqual(readFileSync(certPath, 'utf8'), before);
    // Less than --min-valid left counts as expiring.
    const again = readFileSync(certPath, 'utf8');
    await ok('pcsh', me, ['certificate', 'ensure', '--min-valid', '3600']);
    assert.notEqual(readFileSync(certPath, 'utf8'), again);
  });

  test('ls lists reachable hosts as a table and JSON, filtered by labels; config prints the ssh_config block', async () => {
    for (const [name, labels] of [['web01', 'env=prod'], ['db01', 'env=staging']] as const) {
      const token = (await ok('pcctl', admin, ['tokens', 'add', 'host', '--labels', labels])).stdout.trim();
      const key = await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stack.dir.file(`hk-${name}`)]);
      assert.equal(key.code, 0);
      const res = await stack.client.request('POST', '/v1/join', { json: { token, hostname: name, host_keys: [readFileSync(stack.dir.file(`hk-${name}.pub`), 'utf8').trim()] } });
      assert.equal(res.status, 200, res.bytes.toString());
    }
    const table = (await ok('pcsh', me, ['ls'])).stdout.split('\n');
    assert.match(table[0]!, /^Host +Labels +Logins$/);
    assert.match(table[2]!, /^db01 +env=staging +root$/);
    assert.match(table[3]!, /^web01 +env=prod +root$/);
    const prod = JSON.parse((await ok('pcsh', me, ['ls', 'env=prod', '--json'])).stdout) as { name: string }[];
    assert.deepEqual(prod.map((h) => h.name), ['web01']);
    assert.deepEqual(JSON.parse((await ok('pcsh', me, ['ls', 'env=nowhere', '--json'])).stdout), []);
    await fails('pcsh', me, ['ls', 'env'], 2, /label: expected NAME=VALUE, got "env"/);

    const cfg = (await ok('pcsh', me, ['config'])).stdout;
    assert.match(cfg, /^Host db01 web01$/m);
    assert.match(cfg, /^ {2}ProxyCommand \S+\/bin\/pcsh proxy ssh %r@%h:%p$/m);
    assert.ok(cfg.includes(`UserKnownHostsFile ${me.pcshHome}/known_hosts`));
    assert.ok(cfg.includes(`CertificateFile ${me.pcshHome}/keys/127.0.0.1/id_ed25519-cert.pub`));
    assert.ok(cfg.includes(`IdentityFile ${me.pcshHome}/keys/127.0.0.1/id_ed25519`));
    assert.match((await ok('pcsh', me, ['config', '--pattern'])).stdout, /^Host \*\.127\.0\.0\.1$/m);
    await fails('pcsh', me, ['config', 'web99'], 5, /no host web99 among the hosts you may reach/);
    // OpenSSH reads the block as meant.
    writeFileSync(stack.dir.file('ssh_config'), cfg);
    const g = (await runOk('ssh', ['-G', '-F', stack.dir.file('ssh_config'), 'web01'])).stdout;
    assert.match(g, /^proxycommand \S+\/bin\/pcsh proxy ssh %r@%h:%p$/m);
    assert.ok(g.includes(`userknownhostsfile ${me.pcshHome}/known_hosts`), g);
    assert.ok(g.includes(`certificatefile ${me.pcshHome}/keys/127.0.0.1/id_ed25519-cert.pub`), g);
  });

  test('loopback SSO: --no-browser prints the URL; the provider redirects to pcsh, which finishes the login', async () => {
    const other = laptop(stack, 'bob');
    const login = start('pcsh', other, ['login', '--auth', stack.info.url, '--fingerprint', stack.info.fingerprint, '--no-browser']);
    const m = await login.waitForStderr(/Open this URL in a browser to sign in: (\S+)/);
    const authUrl = new URL(m[1]!);
    assert.match(authUrl.searchParams.get('redirect_uri') ?? '', /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    const callback = await signInThroughProvider(m[1]!, bob);
    // A request without the state is not the callback; the real one is.
    assert.equal((await fetch(new URL('/callback?code=x&state=forged', callback))).status, 404);
    const page = await fetch(callback);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /signed in to Portcullis/);
    const r = await login.done;
    assert.equal(r.code, 0, r.stderr);
    const status = await ok('pcsh', other, ['status']);
    assert.match(status.stdout, /^User: +bob \(sso\)$/m);
    assert.match(status.stdout, /^Session: +oidc, /m);
  });

  test('an expired login is one line; logout revokes the session at auth and deletes the secrets', async () => {
    const profile = JSON.parse(readFileSync(`${me.pcshHome}/profiles/127.0.0.1.json`, 'utf8')) as { token: string };
    stack.clock.offset = 13 * 3600_000;
    try {
      await fails('pcsh', me, ['ls'], 3, /your login session at 127\.0\.0\.1:\d+ has expired or was revoked; run pcsh login/);
      await fails('pcsh', me, ['certificate', 'ensure', '--force'], 3, /has expired or was revoked/);
    } finally {
      stack.clock.offset = 0;
    }
    await ok('pcsh', me, ['logout']);
    assert.equal((await stack.client.request('GET', '/v1/me', { token: profile.token })).status, 401);
    assert.equal(existsSync(`${me.pcshHome}/keys/127.0.0.1`), false);
    assert.doesNotMatch(readFileSync(`${me.pcshHome}/known_hosts`, 'utf8'), /cert-authority/);
    await fails('pcsh', me, ['status'], 3, /not logged in to 127\.0\.0\.1:\d+: run pcsh login/);
    // Logging out twice is harmless.
    await ok('pcsh', me, ['logout']);
  });

  test('auth going away is one line with exit 4', async () => {
    const other = laptop(stack, 'bob');
    const profile = JSON.parse(readFileSync(`${other.pcshHome}/profiles/127.0.0.1.json`, 'utf8')) as Record<string, unknown>;
    const dead = `https://127.0.0.1:${await freePort()}`;
    writeFileSync(`${other.pcshHome}/profiles/127.0.0.1.json`, JSON.stringify({ ...profile, authUrl: dead }));
    await fails('pcsh', other, ['ls'], 4, /cannot reach auth at 127\.0\.0\.1:\d+: connection refused/);
    await fails('pcsh', other, ['status'], 4, /cannot reach auth/);
    const r = await cli('pcsh', other, ['logout']);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /^pcsh: local keys and session deleted, but the session could not be revoked at auth: cannot reach auth/);
  });
});
