import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseCertificateText, parseKrl } from '@portcullis/cert-core';
import { runOk, tempDir, type TempDir } from '@portcullis/harness';
import {
  assertOneLine,
  HOST_CLI,
  makeHostRoot,
  runHostCli,
  sshAs,
  startAuth,
  startRootSshd,
  userIdentity,
  type HostRoot,
  type RootSshd,
  type TestAuth,
} from './host-join-fixture.js';

/*
 * `host join` with the Node command into a fake root whose sshd runs from the written config:
 * stock ssh trusts the host with one @cert-authority line, a user certificate from auth logs in,
 * a revocation reaches sshd through krl-refresh, renew swaps the certificate, and a config sshd
 * refuses changes nothing.
 */

const NAME = 'web01.test';

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

/** Files whose names start with a dot: leftovers of a temp-and-rename that went wrong. */
function strays(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith('.'));
}

describe('portcullis host join (Node)', () => {
  let dir: TempDir;
  let auth: TestAuth;
  let host: HostRoot;
  let sshd: RootSshd;
  let knownHosts: string;
  let reloads = 1;
  const base = (): string[] => ['--root', host.root];
  const join_ = (token: string, ...more: string[]) =>
    runHostCli(['join', ...base(), '--token', token, '--auth', auth.info.url, '--fingerprint', auth.info.fingerprint, '--name', NAME, '--exclusive', ...more]);

  before(async () => {
    dir = tempDir('portcullis-host-join-');
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

  test('join writes certificates, CA files, KRL and drop-in; sshd reloads; stock ssh and a user certificate get in', async () => {
    // systemd "runs" in this root: the units are written (never enabled under --root).
    const systemd = host.file('run/systemd/system');
    await runOk('mkdir', ['-p', systemd]);
    const token = await auth.token();
    const r = await join_(token);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /enrolled web01\.test \(env=dev\): 2 host certificate/);
    assert.match(r.stdout, /SIGHUP to sshd/);

    const data = join(host.sshDir, 'portcullis');
    const dropIn = join(host.sshDir, 'sshd_config.d/50-portcullis.conf');
    assert.equal(
      readFileSync(dropIn, 'utf8'),
      [
        '# Written by `portcullis host join`; replaced on every join. Add your own settings to',
        '# another file in this directory (a lower number wins: sshd keeps the first value).',
        `TrustedUserCAKeys ${data}/user_ca.pub`,
        `RevokedKeys ${data}/revoked_keys.krl`,
        'AuthorizedPrincipalsFile none',
        `HostCertificate ${host.sshDir}/ssh_host_ed25519_key-cert.pub`,
        `HostCertificate ${host.sshDir}/ssh_host_ecdsa_key-cert.pub`,
        'AuthorizedKeysFile none',
        '',
      ].join('\n'),
    );
    for (const t of ['ed25519', 'ecdsa']) {
      const path = join(host.sshDir, `ssh_host_${t}_key-cert.pub`);
      assert.equal(mode(path), 0o644);
      const cert = parseCertificateText(readFileSync(path, 'utf8').trim()).cert;
      assert.equal(cert.kind, 'host');
      assert.ok(cert.principals.includes(NAME));
    }
    for (const f of [dropIn, `${data}/user_ca.pub`, `${data}/revoked_keys.krl`, `${data}/known_hosts`, host.file('etc/portcullis/host.conf')]) {
      assert.equal(mode(f), 0o644, f);
      assert.equal(statSync(f).uid, 0, f);
    }
    parseKrl(new Uint8Array(readFileSync(`${data}/revoked_keys.krl`)));
    const state = readFileSync(host.file('etc/portcullis/host.conf'), 'utf8');
    assert.match(state, new RegExp(`^AUTH_URL=${auth.info.url}$`, 'm'));
    assert.match(state, new RegExp(`^AUTH_PIN=${auth.info.spkiPin.replace(/[+/]/g, '\\$&')}$`, 'm'));
    assert.match(state, /^SSH_DIR=\/etc\/ssh$/m);
    // The timers run this very command, tsx resolved to a file (systemd starts units in /).
    const unit = readFileSync(host.file('etc/systemd/system/portcullis-host-renew.service'), 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath} --import \\S+/tsx/dist/loader\\.mjs ${HOST_CLI} renew$`, 'm'));
    assert.ok(existsSync(host.file('etc/systemd/system/portcullis-krl-refresh.timer')));
    assert.deepEqual(strays(join(host.sshDir, 'sshd_config.d')), []);
    assert.deepEqual(strays(data), []);

    await sshd.listening(++reloads);
    // Only the exported line: no host key anywhere, strict checking, no prompt possible.
    knownHosts = dir.file('known_hosts');
    writeFileSync(knownHosts, readFileSync(`${data}/known_hosts`, 'utf8'));
    assert.match(readFileSync(knownHosts, 'utf8'), /^@cert-authority \* /);
    const alice = await userIdentity(auth, dir.path, 'id_alice', NAME);
    const login = await sshAs(host, NAME, alice, knownHosts);
    assert.equal(login.code, 0, login.stderr + sshd.log());
    assert.equal(login.stdout.trim(), 'logged-in');
    await sshd.waitForLog(/Accepted publickey for root .*ID admin req=\S+ via=bastion\.test/);
    // The host trusts the upstream CA only: an engineer's own certificate does not open it.
    const own = await sshAs(host, NAME, await userIdentity(auth, dir.path, 'id_alice_own', NAME, 'user'), knownHosts);
    assert.equal(own.code, 255, own.stdout);
    assert.match(own.stderr, /Permission denied/);
  });

  test('krl-refresh: 304 when unchanged; a revoked certificate is refused at the next login; a failed download keeps the file', async () => {
    const krlPath = join(host.sshDir, 'portcullis/revoked_keys.krl');
    const unchanged = await runHostCli(['krl-refresh', ...base()]);
    assert.equal(unchanged.code, 0, unchanged.stderr);
    assert.equal(unchanged.stdout, '');

    const bob = await userIdentity(auth, dir.path, 'id_bob', NAME);
    assert.equal((await sshAs(host, NAME, bob, knownHosts)).code, 0);
    await auth.revoke(bob.serial);
    const before = readFileSync(krlPath);
    const refreshed = await runHostCli(['krl-refresh', ...base()]);
    assert.equal(refreshed.code, 0, refreshed.stderr);
    assert.match(refreshed.stdout, /KRL updated/);
    assert.notDeepEqual(readFileSync(krlPath), before);
    const since = sshd.log().length;
    const refused = await sshAs(host, NAME, bob, knownHosts);
    assert.notEqual(refused.code, 0);
    await sshd.waitForLog(/revoked/i, since);

    // auth unreachable, then a server that answers garbage: the KRL on disk stays as it was.
    const good = readFileSync(krlPath);
    const down = await runHostCli(['krl-refresh', ...base(), '--auth', 'https://127.0.0.1:1']);
    assertOneLine(down, /cannot reach auth at https:\/\/127\.0\.0\.1:1/);
    const liar = await garbageServer(dir);
    try {
      const bad = await runHostCli(['krl-refresh', ...base(), '--auth', liar.url, '--fingerprint', liar.fingerprint]);
      assertOneLine(bad, /KRL that does not parse.*kept/);
    } finally {
      liar.server.close();
    }
    assert.deepEqual(readFileSync(krlPath), good);
    assert.deepEqual(strays(join(host.sshDir, 'portcullis')), []);
  });

  test('renew: not due yet without --force; with it, new certificates and a reload', async () => {
    const certPath = join(host.sshDir, 'ssh_host_ed25519_key-cert.pub');
    const old = parseCertificateText(readFileSync(certPath, 'utf8').trim()).cert;
    const early = await runHostCli(['renew', ...base()]);
    assert.equal(early.code, 0, early.stderr);
    assert.match(early.stdout, /^not due: renewing after /);

    const r = await runHostCli(['renew', ...base(), '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /renewed 2 host certificate\(s\) of web01\.test/);
    const renewed = parseCertificateText(readFileSync(certPath, 'utf8').trim()).cert;
    assert.notEqual(renewed.serial, old.serial);
    await sshd.listening(++reloads);
    const carol = await userIdentity(auth, dir.path, 'id_carol', NAME);
    const login = await sshAs(host, NAME, carol, knownHosts);
    assert.equal(login.code, 0, login.stderr);
  });

  test('a drop-in sshd -t refuses changes nothing and spends no token; a dry run neither; joining again is safe', async () => {
    const dropIn = join(host.sshDir, 'sshd_config.d/50-portcullis.conf');
    const before = readFileSync(dropIn);
    const token = await auth.token(NAME);
    const broken = await join_(token, '--sshd-option', 'NoSuchKeyword yes');
    assertOneLine(broken, /sshd -t refused the drop-in: .*Bad configuration option: NoSuchKeyword.*token was not used/);
    assert.equal(broken.code, 6);
    assert.deepEqual(readFileSync(dropIn), before);
    assert.deepEqual(strays(join(host.sshDir, 'sshd_config.d')), []);

    const dry = await join_(token, '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /dry run: .*the token was not used/);

    // The same token still works: joining again rewrites what changed (the certificates) only.
    const again = await join_(token);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(readFileSync(dropIn), before);
    await sshd.listening(++reloads);
    const dave = await userIdentity(auth, dir.path, 'id_dave', NAME);
    assert.equal((await sshAs(host, NAME, dave, knownHosts)).code, 0);
  });

  test('sshd -t failing on the final configuration puts every file back; the old config stays in force', async () => {
    const watched = [
      join(host.sshDir, 'sshd_config.d/50-portcullis.conf'),
      join(host.sshDir, 'ssh_host_ed25519_key-cert.pub'),
      join(host.sshDir, 'portcullis/user_ca.pub'),
      host.file('etc/portcullis/host.conf'),
    ];
    const before = watched.map((f) => readFileSync(f));
    // An sshd that refuses the real config once our drop-in carries a Banner line, as if an
    // Include ordering made it invalid there and nowhere else: the wrapper test passes, the
    // final one fails.
    const fake = dir.file('fake-sshd');
    writeFileSync(fake, `#!/bin/sh\nif [ "$1" = -t ] && [ "$3" = "${host.sshDir}/sshd_config" ] && grep -q '^Banner none' "${watched[0]}"; then\n  echo "line 9: simulated refusal" >&2; exit 255\nfi\nexec /usr/sbin/sshd "$@"\n`, { mode: 0o755 });
    const r = await join_(await auth.token(NAME), '--sshd', fake, '--sshd-option', 'Banner none');
    assertOneLine(r, /sshd -t -f \S+ failed with the new files: line 9: simulated refusal; every file was put back as it was/);
    watched.forEach((f, i) => assert.deepEqual(readFileSync(f), before[i], f));
    const erin = await userIdentity(auth, dir.path, 'id_erin', NAME);
    assert.equal((await sshAs(host, NAME, erin, knownHosts)).code, 0);
  });

  test('trust on first contact only when asked; a join token used twice fails with one line', async () => {
    const token = await auth.token();
    const other = await makeHostRoot(dir.file('root-other'));
    const unpinned = await runHostCli(['join', '--root', other.root, '--token', token, '--auth', auth.info.url, '--name', 'web09.test']);
    assertOneLine(unpinned, /cannot verify auth's TLS certificate .*--fingerprint .*--insecure-first-contact/);
    const first = await runHostCli(['join', '--root', other.root, '--token', token, '--auth', auth.info.url, '--insecure-first-contact', '--name', 'web09.test', '--timers', 'none']);
    assert.equal(first.code, 0, first.stderr);
    assert.ok(first.stdout.includes(`warning: trusting auth at ${auth.info.url} on first contact: certificate ${auth.info.fingerprint}, key pin ${auth.info.spkiPin}`), first.stdout);
    assert.match(first.stdout, /schedule these yourself/);
    assert.ok(readFileSync(other.file('etc/portcullis/host.conf'), 'utf8').includes(`AUTH_PIN=${auth.info.spkiPin}\n`));
    const second = await runHostCli(['join', '--root', other.root, '--token', token, '--auth', auth.info.url, '--fingerprint', auth.info.spkiPin, '--name', 'web09.test']);
    assertOneLine(second, /^portcullis host join: auth refused the join: .*already used/);
    const wrongPin = await runHostCli(['join', '--root', other.root, '--token', token, '--auth', auth.info.url, '--fingerprint', 'sha256//' + 'A'.repeat(43) + '=', '--name', 'web09.test']);
    assertOneLine(wrongPin, /presented key pin sha256\/\/\S+, not the expected/);
  });
});

/** An HTTPS server answering 200 with bytes that are not a KRL, and its certificate fingerprint. */
async function garbageServer(dir: TempDir): Promise<{ server: Server; url: string; fingerprint: string }> {
  const key = dir.file('liar.key');
  const cert = dir.file('liar.crt');
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1', '-days', '1', '-keyout', key, '-out', cert]);
  const server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    if (req.url === '/v1/krl') res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('SSHKRL\n\0 but not really');
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { server, url: `https://127.0.0.1:${port}`, fingerprint: new X509Certificate(readFileSync(cert)).fingerprint256 };
}
