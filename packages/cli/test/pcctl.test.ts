import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { run, runOk } from '@portcullis/harness';
import { acceptInvite, adminLaptop, cli, fails, laptop, ok, start, startStack, type Laptop, type Stack } from './pcsh-login-fixture.js';

/*
 * pcctl as an administrator uses it, against a real auth service: users with invite links,
 * roles from YAML files, join tokens and enrolled hosts, locks that stop the next certificate,
 * revocation into a KRL that ssh-keygen reads, the audit trail (search and follow), status.
 * Every refusal is one line with the documented exit code.
 */

const DAVE_PASSWORD = 'dave-password-long-enough';

describe('pcctl', () => {
  let stack: Stack;
  let admin: Laptop;
  let dave: Laptop;
  const daveLogin = (): Promise<unknown> =>
    ok('pcsh', dave, ['login', '--auth', stack.info.url, '--fingerprint', stack.info.fingerprint, '--user', 'dave'], { env: { PCSH_PASSWORD: DAVE_PASSWORD } });

  before(async () => {
    stack = await startStack('pcctl-');
    admin = await adminLaptop(stack);
    dave = laptop(stack, 'dave');
  });

  after(async () => {
    await stack?.stop();
  });

  test('users: add prints the invite link, ls, update, reset, rm; mistakes are one line', async () => {
    const invite = await ok('pcctl', admin, ['users', 'add', 'dave', '--roles', 'dev']);
    await acceptInvite(stack, invite.stdout, DAVE_PASSWORD);
    await daveLogin();
    await fails('pcctl', admin, ['users', 'add', 'dave'], 1, /dave/);

    const table = (await ok('pcctl', admin, ['users', 'ls'])).stdout;
    assert.match(table, /^User +Kind +Roles +Status +MFA +Password +Created$/m);
    assert.match(table, /^admin +local +admin +active +- +set +\S+Z$/m);
    assert.match(table, /^dave +local +dev +active +- +set +\S+Z$/m);

    await ok('pcctl', admin, ['users', 'update', 'dave', '--disable']);
    await fails('pcsh', dave, ['status'], 3, /has expired or was revoked/);
    await ok('pcctl', admin, ['users', 'update', 'dave', '--enable']);
    await daveLogin();
    await fails('pcctl', admin, ['users', 'update', 'dave'], 2, /nothing to change/);
    await fails('pcctl', admin, ['users', 'update', 'admin', '--disable'], 1, /cannot disable themselves/);

    await ok('pcctl', admin, ['users', 'add', 'erin']);
    const reset = await ok('pcctl', admin, ['users', 'reset', 'erin', '--json']);
    assert.match((JSON.parse(reset.stdout) as { invite: { url: string } }).invite.url, /\/invite#/);
    await ok('pcctl', admin, ['users', 'rm', 'erin']);
    const names = (JSON.parse((await ok('pcctl', admin, ['users', 'ls', '--json'])).stdout) as { name: string }[]).map((u) => u.name);
    assert.deepEqual(names.sort(), ['admin', 'dave']);
    await fails('pcctl', admin, ['users', 'rm', 'erin'], 5, /user erin does not exist/);
  });

  test('a non-admin is refused in one line', async () => {
    await fails('pcctl', dave, ['users', 'ls'], 3, /dave is not an administrator/);
  });

  test('roles: create from YAML, get, update, rm; malformed files name the file and the line', async () => {
    const file = stack.dir.file('ops.yaml');
    writeFileSync(file, 'kind: role\nname: ops\ndescription: operators\nspec:\n  allow:\n    logins: [ubuntu]\n    host_labels: { env: prod }\n');
    await ok('pcctl', admin, ['roles', 'create', file]);
    assert.match((await ok('pcctl', admin, ['roles', 'ls'])).stdout, /^ops +api +operators$/m);
    assert.match((await ok('pcctl', admin, ['roles', 'get', 'ops'])).stdout, /^name: ops$/m);
    await fails('pcctl', admin, ['roles', 'create', file], 1, /role ops exists already; pcctl roles update/);
    writeFileSync(file, readFileSync(file, 'utf8').replace('operators', 'on call'));
    await ok('pcctl', admin, ['roles', 'update', file]);
    assert.match((await ok('pcctl', admin, ['roles', 'ls'])).stdout, /^ops +api +on call$/m);

    const bad = stack.dir.file('bad.yaml');
    writeFileSync(bad, 'kind: role\nname: broken\nspec:\n  allow: [unclosed\n');
    await fails('pcctl', admin, ['roles', 'create', bad], 6, /bad\.yaml: not valid YAML at line \d+, column \d+/);
    writeFileSync(bad, 'kind: role\nname: broken\nspec:\n  allow:\n    logins: [root]\n    principals: [root]\n');
    await fails('pcctl', admin, ['roles', 'create', bad], 6, /bad\.yaml: .*principals/);
    writeFileSync(bad, 'kind: role\nspec: {}\n');
    await fails('pcctl', admin, ['roles', 'create', bad], 6, /bad\.yaml: a role needs a top-level "name:"/);
    await fails('pcctl', admin, ['roles', 'create', stack.dir.file('missing.yaml')], 6, /missing\.yaml: cannot read it \(ENOENT\)/);
    await fails('pcctl', admin, ['roles', 'rm', 'dev'], 1, /defined in the config file/);
    await ok('pcctl', admin, ['roles', 'rm', 'ops']);
    await fails('pcctl', admin, ['roles', 'get', 'ops'], 5, /no role ops/);
  });

  test('tokens and hosts: a token enrolls a host with its labels; ls shows certificate expiry; rm', async () => {
    const made = JSON.parse((await ok('pcctl', admin, ['tokens', 'add', 'host', '--labels', 'env=prod,team=web', '--ttl', '30m', '--json'])).stdout) as { token: string; id: string };
    const spare = (await ok('pcctl', admin, ['tokens', 'add', 'proxy'])).stdout.trim();
    assert.match(spare, /^[A-Za-z0-9_-]{43}$/);
    const tokens = (await ok('pcctl', admin, ['tokens', 'ls'])).stdout;
    assert.ok(tokens.includes(made.id.slice(0, 16)), tokens);
    assert.match(tokens, /env=prod,team=web +- +\S+Z \(in (29|30)m/);
    await fails('pcctl', admin, ['tokens', 'add', 'host', '--ttl', 'soon'], 2, /--ttl: expected a duration/);
    await fails('pcctl', admin, ['tokens', 'add', 'printer'], 2, /value 'printer' is invalid for argument 'type'\. Allowed choices are host, proxy/);

    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stack.dir.file('hk-web07')]);
    const joined = await stack.client.request('POST', '/v1/join', { json: { token: made.token, hostname: 'web07', host_keys: [readFileSync(stack.dir.file('hk-web07.pub'), 'utf8').trim()] } });
    assert.equal(joined.status, 200, joined.bytes.toString());
    const hosts = (await ok('pcctl', admin, ['hosts', 'ls'])).stdout;
    assert.match(hosts, /^Host +Type +Labels +Other names +Certificate expires$/m);
    assert.match(hosts, /^web07 +host +env=prod,team=web +- +\S+Z \(in \d+d/m);

    const proxyId = (JSON.parse((await ok('pcctl', admin, ['tokens', 'ls', '--json'])).stdout) as { id: string; type: string }[]).find((t) => t.type === 'proxy')!.id;
    await ok('pcctl', admin, ['tokens', 'rm', proxyId.slice(0, 12)]);
    await fails('pcctl', admin, ['tokens', 'rm', proxyId.slice(0, 12)], 5, /no join token/);
    await ok('pcctl', admin, ['hosts', 'rm', 'web07']);
    assert.deepEqual(JSON.parse((await ok('pcctl', admin, ['hosts', 'ls', '--json'])).stdout), []);
    await fails('pcctl', admin, ['hosts', 'rm', 'web07'], 5, /no enrolled host "?web07/);
  });

  test('lock: the next certificate is refused with the message; unlock lets it through again', async () => {
    const id = (await ok('pcctl', admin, ['lock', '--user', 'dave', '--message', 'incident 42', '--ttl', '1h'])).stdout.trim();
    assert.match(id, /^[0-9a-f]{16,64}$/);
    assert.match((await ok('pcctl', admin, ['locks', 'ls'])).stdout, /user:dave +incident 42 +admin/);
    await fails('pcsh', dave, ['certificate', 'ensure', '--force'], 3, /user "dave" is locked until \S+: incident 42/);
    await fails('pcctl', admin, ['lock', '--user', 'dave', '--role', 'dev'], 2, /give one of --user, --role, --login, --host, not --user and --role/);
    await fails('pcctl', admin, ['lock'], 2, /give what to lock/);
    await fails('pcctl', admin, ['unlock', '--host', 'nowhere'], 5, /no lock on host nowhere/);
    await ok('pcctl', admin, ['unlock', '--user', 'dave']);
    await ok('pcsh', dave, ['certificate', 'ensure', '--force']);

    const loginLock = (await ok('pcctl', admin, ['lock', '--login', 'root'])).stdout.trim();
    await fails('pcsh', dave, ['certificate', 'ensure', '--force'], 3, /login "root" is locked/);
    await ok('pcctl', admin, ['unlock', loginLock]);
  });

  test('revoke: a serial goes into the KRL ssh-keygen reads; revoking a user ends their sessions', async () => {
    const serial = (JSON.parse((await ok('pcsh', dave, ['status', '--json'])).stdout) as { certificate: { serial: string } }).certificate.serial;
    const before = JSON.parse((await ok('pcctl', admin, ['krl', 'show', '--json'])).stdout) as { version: number; entries: number };
    const r = await ok('pcctl', admin, ['revoke', '--serial', serial, '--reason', 'test']);
    assert.match(r.stdout, /^revoked 1 \(0 already revoked\); KRL version \d+$/m);
    const afterShow = await ok('pcctl', admin, ['krl', 'show']);
    assert.match(afterShow.stdout, new RegExp(`^Version: +${before.version + 1}$`, 'm'));
    assert.match(afterShow.stdout, new RegExp(`^Entries: +${before.entries + 1}$`, 'm'));

    const krl = stack.dir.file('revoked.krl');
    await ok('pcctl', admin, ['krl', 'export', krl]);
    assert.equal(statSync(krl).mode & 0o777, 0o644);
    const q = await run('ssh-keygen', ['-Q', '-f', krl, `${dave.pcshHome}/keys/127.0.0.1/id_ed25519-cert.pub`]);
    assert.match(q.stdout, /REVOKED/);

    await fails('pcctl', admin, ['revoke', '--serial', serial, '--user', 'dave'], 2, /exactly one of/);
    const u = await ok('pcctl', admin, ['revoke', '--user', 'dave', '--json']);
    assert.ok((JSON.parse(u.stdout) as { sessions_revoked: number }).sessions_revoked >= 1);
    await fails('pcsh', dave, ['ls'], 3, /has expired or was revoked/);
  });

  test('audit: search by user and event, JSON, and --follow sees new events', async () => {
    const lines = (await ok('pcctl', admin, ['audit', '--user', 'dave'])).stdout;
    assert.match(lines, /PC\d{4}[A-Z] +user\.created +admin@\S+ +user=dave/);
    assert.match(lines, /cert\.refused +dave@\S+ .*incident 42/);
    const locks = JSON.parse((await ok('pcctl', admin, ['audit', '--code', 'lock.created', '--json'])).stdout) as { name: string; actor: { name: string } }[];
    assert.ok(locks.length >= 2);
    assert.ok(locks.every((e) => e.name === 'lock.created' && e.actor.name === 'admin'));
    await fails('pcctl', admin, ['audit', '--since', 'yesterday'], 2, /--since: expected an ISO 8601 time or a duration|--since: expected a duration/);

    const follow = start('pcctl', admin, ['audit', '--follow', '--json', '--code', 'user.created', '--since', '1s', '--interval', '0.3']);
    await new Promise((r) => setTimeout(r, 1500));
    await ok('pcctl', admin, ['users', 'add', 'frank']);
    const m = await follow.waitForStderr(/^(\{.*"user\.created".*\})$/m);
    assert.equal((JSON.parse(m[1]!) as { fields: { user: string } }).fields.user, 'frank');
    follow.stop();
    await follow.done;
  });

  test('status and auth export', async () => {
    const s = (await ok('pcctl', admin, ['status'])).stdout;
    assert.match(s, /^Auth: +https:\/\/127\.0\.0\.1:\d+ \(alive, ready: /m);
    assert.match(s, /^Signed in: +admin \(admin\), session until /m);
    assert.match(s, /^User CA: +SHA256:\S+ \(active, id \S+\)$/m);
    assert.match(s, /^Upstream CA: +SHA256:\S+ \(active, id \S+\)$/m);
    assert.match(s, /^Host CA: +SHA256:\S+ /m);
    assert.match(s, /^KRL: +version \d+, \d+ entries/m);
    const j = JSON.parse((await ok('pcctl', admin, ['status', '--json'])).stdout) as { ready: boolean; krl: { version: number } };
    assert.equal(j.ready, true);
    const both = (await ok('pcctl', admin, ['auth', 'export'])).stdout;
    assert.match(both, /^# upstream CA: targets' TrustedUserCAKeys/m);
    assert.match(both, /^# user CA: engineers' certificates, trusted by the proxy only/m);
    // What a target's sshd_config TrustedUserCAKeys file gets: the upstream CA, not the user CA.
    const upstream = (await ok('pcctl', admin, ['auth', 'export', '--type', 'upstream'])).stdout;
    assert.match(upstream, /^ssh-ed25519 AAAA\S+ portcullis-upstream-ca-[0-9a-f]{16}$/m);
    assert.doesNotMatch(upstream, /portcullis-user-ca-/);
    assert.match(both, /^@cert-authority \* /m);
    assert.match((await ok('pcctl', admin, ['auth', 'export', '--type', 'host'])).stdout, /^@cert-authority \* \S+ \S+ portcullis-host-ca-/);
    const r = await cli('pcctl', admin, ['auth', 'export', '--type', 'both']);
    assert.equal(r.code, 2);
  });
});
