import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseCertificateText } from '@portcullis/cert-core';
import { hasTool, run, tempDir, type TempDir } from '@portcullis/harness';
import { readHostKeys } from '../src/host/host-keys.js';
import { hostLayout, parseHostState } from '../src/host/layout.js';
import { renderDropIn } from '../src/host/sshd.js';
import { UNIT_FILES, unitTemplateDir } from '../src/host/timers.js';
import {
  assertOneLine,
  HOST_SCRIPT,
  makeHostRoot,
  runHostCli,
  runHostScript,
  sshAs,
  startAuth,
  startRootSshd,
  userIdentity,
  type HostRoot,
  type RootSshd,
  type TestAuth,
} from './host-join-fixture.js';

/*
 * deploy/host/portcullis-host.sh, the enrollment for hosts without Node, into a second fake
 * root: the same files as the Node command (the drop-in byte for byte), curl pinned to auth's
 * public key, logins through the written config, revocation, renewal, and the Node command
 * renewing a host the script enrolled.
 */

const NAME = 'web02.test';

describe('portcullis-host.sh (bash, curl, ssh-keygen, sed)', () => {
  let dir: TempDir;
  let auth: TestAuth;
  let host: HostRoot;
  let sshd: RootSshd;
  let knownHosts: string;
  let reloads = 1;
  const pin = (): string[] => ['--pin', auth.info.spkiPin];

  before(async () => {
    dir = tempDir('portcullis-host-script-');
    chmodSync(dir.path, 0o755);
    auth = await startAuth(dir.path);
    host = await makeHostRoot(dir.file('root'));
    sshd = await startRootSshd(host);
  });

  after(async () => {
    await sshd?.stop();
    await auth?.stop();
    dir?.remove();
  });

  test('join: the same files as the Node command, sshd reloaded, logins through the written config', async () => {
    const r = await runHostScript(['join', '--root', host.root, '--token', await auth.token(), '--auth', auth.info.url, ...pin(), '--name', NAME]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /enrolled web02\.test: 2 host key\(s\) certified/);
    assert.match(r.stdout, /SIGHUP to sshd/);

    const layout = hostLayout({ root: host.root });
    const keys = readHostKeys(layout.sshDir);
    const expected = renderDropIn({ userCaFile: layout.userCaFile, krlFile: layout.krlFile, hostCertificates: keys.map((k) => k.certificatePath), exclusive: false, extraLines: [] });
    assert.equal(readFileSync(layout.dropIn, 'utf8'), expected);
    for (const k of keys) {
      const cert = parseCertificateText(readFileSync(k.certificatePath, 'utf8').trim()).cert;
      assert.equal(cert.kind, 'host');
      assert.ok(cert.principals.includes(NAME));
    }
    for (const f of [layout.dropIn, layout.userCaFile, layout.krlFile, layout.knownHostsFile, layout.stateFile, ...keys.map((k) => k.certificatePath)]) {
      assert.equal(statSync(f).mode & 0o7777, 0o644, f);
      assert.equal(statSync(f).uid, 0, f);
    }
    const state = parseHostState(readFileSync(layout.stateFile, 'utf8'), 'host.conf');
    assert.deepEqual(state, { authUrl: auth.info.url, authPin: auth.info.spkiPin, hostName: NAME, sshDir: '/etc/ssh', sshdConfigDir: '/etc/ssh/sshd_config.d', sshdConfig: '/etc/ssh/sshd_config', sshd: '/usr/sbin/sshd' });
    // No systemd in this root but a cron.d: the installed copy of the script runs from cron.
    assert.match(readFileSync(host.file('etc/cron.d/portcullis-host'), 'utf8'), /^\d+ \*\/6 \* \* \* root \/usr\/local\/sbin\/portcullis-host renew >\/dev\/null$/m);
    assert.equal(statSync(host.file('usr/local/sbin/portcullis-host')).mode & 0o777, 0o755);
    assert.deepEqual(readFileSync(host.file('usr/local/sbin/portcullis-host')), readFileSync(HOST_SCRIPT));

    await sshd.listening(++reloads);
    knownHosts = dir.file('known_hosts');
    writeFileSync(knownHosts, readFileSync(layout.knownHostsFile));
    const alice = await userIdentity(auth, dir.path, 'id_alice', NAME);
    const login = await sshAs(host, NAME, alice, knownHosts);
    assert.equal(login.code, 0, login.stderr + sshd.log());
    // The host trusts the upstream CA only: an engineer's own certificate does not open it.
    const own = await sshAs(host, NAME, await userIdentity(auth, dir.path, 'id_alice_own', NAME, 'user'), knownHosts);
    assert.equal(own.code, 255, own.stdout);
    assert.match(own.stderr, /Permission denied/);
  });

  test('nothing from the command line reaches the JSON body unchecked', async () => {
    const token = await auth.token();
    const quoted = await runHostScript(['join', '--root', host.root, '--token', token, '--auth', auth.info.url, ...pin(), '--name', 'x","labels":{"env":"prod"},"y":"']);
    assertOneLine(quoted, /--name .* is not a host name or address/);
    assert.equal(quoted.code, 2);
    const names = await runHostScript(['join', '--root', host.root, '--token', token, '--auth', auth.info.url, ...pin(), '--name', 'ok.test', '--names', 'a.test,b"]']);
    assertOneLine(names, /--names entry .* is not a host name/);
    const badToken = await runHostScript(['join', '--root', host.root, '--token', `${token}"`, '--auth', auth.info.url, ...pin()]);
    assertOneLine(badToken, /--token expected/);
  });

  test('krl-refresh: unchanged is silent; a revoked certificate is refused next; a failed download keeps the file', async () => {
    const krlPath = join(host.sshDir, 'portcullis/revoked_keys.krl');
    const quiet = await runHostScript(['krl-refresh', '--root', host.root]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stdout, '');

    const bob = await userIdentity(auth, dir.path, 'id_bob', NAME);
    assert.equal((await sshAs(host, NAME, bob, knownHosts)).code, 0);
    await auth.revoke(bob.serial);
    const r = await runHostScript(['krl-refresh', '--root', host.root]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /KRL updated/);
    const since = sshd.log().length;
    assert.notEqual((await sshAs(host, NAME, bob, knownHosts)).code, 0);
    await sshd.waitForLog(/revoked/i, since);

    const good = readFileSync(krlPath);
    const down = await runHostScript(['krl-refresh', '--root', host.root, '--auth', 'https://127.0.0.1:1']);
    assertOneLine(down, /cannot reach auth at https:\/\/127\.0\.0\.1:1/);
    assert.equal(down.code, 4);
    const wrongPin = await runHostScript(['krl-refresh', '--root', host.root, '--pin', `sha256//${'A'.repeat(43)}=`]);
    assertOneLine(wrongPin, /failed the TLS check/);
    assert.deepEqual(readFileSync(krlPath), good);
  });

  test('renew by the script, then by the Node command on the same host', async () => {
    const certPath = join(host.sshDir, 'ssh_host_ed25519_key-cert.pub');
    const serial = (): bigint => parseCertificateText(readFileSync(certPath, 'utf8').trim()).cert.serial;
    const early = await runHostScript(['renew', '--root', host.root]);
    assert.equal(early.code, 0, early.stderr);
    assert.match(early.stdout, /^not due: renewing after /);

    const first = serial();
    const r = await runHostScript(['renew', '--root', host.root, '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /renewed the host certificates of web02\.test; SIGHUP/);
    const second = serial();
    assert.notEqual(second, first);
    await sshd.listening(++reloads);

    const node = await runHostCli(['renew', '--root', host.root, '--force']);
    assert.equal(node.code, 0, node.stderr);
    assert.notEqual(serial(), second);
    await sshd.listening(++reloads);
    const carol = await userIdentity(auth, dir.path, 'id_carol', NAME);
    assert.equal((await sshAs(host, NAME, carol, knownHosts)).code, 0);
  });

  test('a drop-in sshd refuses changes nothing; a token used twice fails with one line', async () => {
    const dropIn = join(host.sshDir, 'sshd_config.d/50-portcullis.conf');
    const before = readFileSync(dropIn);
    const token = await auth.token(NAME);
    const args = ['join', '--root', host.root, '--token', token, '--auth', auth.info.url, ...pin(), '--name', NAME];
    const broken = await runHostScript([...args, '--sshd-option', 'NoSuchKeyword yes']);
    assertOneLine(broken, /sshd -t refused the drop-in: .*Bad configuration option: NoSuchKeyword.*token was not used/);
    assert.equal(broken.code, 6);
    assert.deepEqual(readFileSync(dropIn), before);

    // The token was not spent: it enrolls the host again (idempotent: same drop-in).
    const again = await runHostScript(args);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(readFileSync(dropIn), before);
    await sshd.listening(++reloads);
    const twice = await runHostScript(args);
    assertOneLine(twice, /^portcullis-host join: auth refused the join: .*already used/);
    const dave = await userIdentity(auth, dir.path, 'id_dave', NAME);
    assert.equal((await sshAs(host, NAME, dave, knownHosts)).code, 0);
  });

  test('the units the script carries are the ones in deploy/host; shellcheck is clean', async () => {
    const printed = await runHostScript(['print-unit']);
    assert.equal(printed.code, 0, printed.stderr);
    const files = UNIT_FILES.map((u) => `=== ${u}\n${readFileSync(join(unitTemplateDir(), u), 'utf8')}`).join('');
    assert.equal(printed.stdout, files);
    if (!hasTool('shellcheck')) return;
    const sc = await run('shellcheck', [HOST_SCRIPT]);
    assert.equal(sc.code, 0, sc.stdout);
  });
});
