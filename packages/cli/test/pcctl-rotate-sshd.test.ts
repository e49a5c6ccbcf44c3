import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fingerprintSha256, parseCertificateText } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { tempDir, type TempDir } from '@portcullis/harness';
import { makeHostRoot, runHostCli, sshAs, startAuth, startRootSshd, userIdentity, type HostRoot, type RootSshd, type TestAuth } from './host-join-fixture.js';

/*
 * CA rotation against what it must not break: a real auth service and redis-server, a host
 * enrolled with `host join` whose real sshd trusts the upstream CA file that krl-refresh keeps
 * up to date, and stock ssh trusting the host through @cert-authority lines from GET /v1/ca.
 * After every phase (and after the host's refresh or renewal that phase asks for) a freshly
 * minted certificate (what the proxy would dial with) logs in: no step refuses a session.
 */

const NAME = 'web01.test';

interface View {
  readonly phase: string;
  readonly new_ca?: string;
  readonly old_ca?: string;
  readonly hosts_on_old_ca?: readonly string[];
  readonly keys: readonly { id: string; status: string; fingerprint: string }[];
}

describe('CA rotation with a real host', () => {
  let dir: TempDir;
  let auth: TestAuth;
  let host: HostRoot;
  let sshd: RootSshd;
  let admin: string;
  let knownHosts: string;
  let reloads = 1;
  let n = 0;

  const rotate = async (kind: 'upstream' | 'host', body: Record<string, unknown>): Promise<View> => {
    const res = await auth.api<View>('POST', `/v1/admin/ca/${kind}/rotation`, { token: admin, json: body });
    assert.equal(res.status, 200, res.bytes.toString('utf8'));
    return res.body;
  };
  const status = async (): Promise<Record<'upstream' | 'host', View>> => (await auth.api<Record<'upstream' | 'host', View>>('GET', '/v1/admin/ca/rotation', { token: admin })).body;
  const refreshHost = async (): Promise<void> => {
    const r = await runHostCli(['krl-refresh', '--root', host.root]);
    assert.equal(r.code, 0, r.stderr);
  };
  /** What a client does: fetch the @cert-authority lines again. */
  const refreshClient = async (): Promise<number> => {
    const ca = await auth.api<{ host: { known_hosts: string } }>('GET', '/v1/ca');
    writeFileSync(knownHosts, ca.body.host.known_hosts);
    return ca.body.host.known_hosts.trim().split('\n').length;
  };
  /** Mints an upstream certificate now and logs in with it; returns the signing CA's fingerprint. */
  const loginWithFreshCert = async (what: string): Promise<string> => {
    const id = await userIdentity(auth, dir.path, `id_${++n}`, NAME);
    const r = await sshAs(host, NAME, id, knownHosts);
    assert.equal(r.code, 0, `${what}: ${r.stderr}\n${sshd.log().slice(-2000)}`);
    assert.equal(r.stdout.trim(), 'logged-in');
    return fingerprintSha256(nodeCrypto, parseCertificateText(readFileSync(id.cert, 'utf8').trim()).cert.signatureKey);
  };
  const userCaLines = (): number => readFileSync(join(host.sshDir, 'portcullis/user_ca.pub'), 'utf8').trim().split('\n').length;
  const fp = (v: View, id: string | undefined): string => v.keys.find((k) => k.id === id)!.fingerprint;

  before(async () => {
    dir = tempDir('portcullis-rotate-');
    chmodSync(dir.path, 0o755);
    auth = await startAuth(dir.path);
    const login = await auth.api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: 'correct horse battery staple' } });
    admin = login.body.token;
    host = await makeHostRoot(dir.file('root'));
    sshd = await startRootSshd(host);
    const joined = await runHostCli(['join', '--root', host.root, '--token', await auth.token(), '--auth', auth.info.url, '--fingerprint', auth.info.fingerprint, '--name', NAME, '--exclusive', '--timers', 'none']);
    assert.equal(joined.code, 0, joined.stderr);
    await sshd.listening(++reloads);
    knownHosts = dir.file('known_hosts');
    await refreshClient();
  });

  after(async () => {
    await sshd?.stop();
    await auth?.stop();
    dir?.remove();
  });

  test('upstream CA: init, update_clients, update_servers, standby; the host keeps accepting logins at every step', async () => {
    const old = await loginWithFreshCert('before the rotation');

    const init = await rotate('upstream', { phase: 'init' });
    assert.equal(await loginWithFreshCert('init, before the host refreshed'), old, 'init does not sign with the new key');
    await refreshHost();
    assert.equal(userCaLines(), 2, 'the host trusts both upstream CAs');
    assert.equal(await loginWithFreshCert('init'), old);
    // Signed by the old CA just before the switch (upstream certificates are short-lived).
    const early = await userIdentity(auth, dir.path, 'id_early', NAME);

    await rotate('upstream', { phase: 'update_clients' });
    assert.equal(await loginWithFreshCert('update_clients'), fp(init, init.new_ca), 'new certificates come from the new CA');
    // A certificate of the old CA still gets in: the old key stays trusted.
    assert.equal((await sshAs(host, NAME, early, knownHosts)).code, 0);

    await rotate('upstream', { phase: 'update_servers' });
    await refreshHost();
    await loginWithFreshCert('update_servers');
    assert.equal((await sshAs(host, NAME, early, knownHosts)).code, 0);

    const done = await rotate('upstream', { phase: 'standby' });
    assert.equal(done.phase, 'standby');
    assert.deepEqual(done.keys.map((k) => k.id), [init.new_ca]);
    assert.equal(await loginWithFreshCert('standby, before the host refreshed'), fp(init, init.new_ca));
    await refreshHost();
    assert.equal(userCaLines(), 1);
    await loginWithFreshCert('standby');
    // Why completing waits for the old CA's certificates to expire: once dropped, they stop working.
    assert.notEqual((await sshAs(host, NAME, early, knownHosts)).code, 0);
  });

  test('upstream CA rollback from update_clients: the old CA signs again and the host still accepts', async () => {
    const before = (await status()).upstream.keys[0]!.fingerprint;
    const init = await rotate('upstream', { phase: 'init' });
    await refreshHost();
    await rotate('upstream', { phase: 'update_clients' });
    assert.equal(await loginWithFreshCert('update_clients'), fp(init, init.new_ca));
    const back = await rotate('upstream', { rollback: true });
    assert.equal(back.phase, 'standby');
    assert.equal(await loginWithFreshCert('rolled back, before the host refreshed'), before);
    await refreshHost();
    assert.equal(userCaLines(), 1);
    assert.equal(await loginWithFreshCert('rolled back'), before);
  });

  test('host CA: clients trust the new CA first, the host renews onto it, the old CA is dropped; ssh connects throughout', async () => {
    const certPath = join(host.sshDir, 'ssh_host_ed25519_key-cert.pub');
    const hostCa = (): string => fingerprintSha256(nodeCrypto, parseCertificateText(readFileSync(certPath, 'utf8').trim()).cert.signatureKey);
    const old = hostCa();

    const init = await rotate('host', { phase: 'init' });
    await loginWithFreshCert('host init, clients not refreshed');
    assert.equal(await refreshClient(), 2, 'clients trust both host CAs');
    await loginWithFreshCert('host init');

    const clients = await rotate('host', { phase: 'update_clients' });
    // The proxy the fixture enrolled (for upstream certificates) is in the inventory too.
    assert.deepEqual(clients.hosts_on_old_ca, ['bastion.test', NAME], 'the host has not renewed yet');
    await loginWithFreshCert('host update_clients, before the renewal');
    const renewed = await runHostCli(['renew', '--root', host.root, '--force']);
    assert.equal(renewed.code, 0, renewed.stderr);
    await auth.renewProxy();
    await sshd.listening(++reloads);
    assert.equal(hostCa(), fp(init, init.new_ca), 'the host presents a certificate of the new CA');
    assert.notEqual(hostCa(), old);
    await loginWithFreshCert('host update_clients, after the renewal');
    assert.deepEqual((await status()).host.hosts_on_old_ca, []);

    await rotate('host', { phase: 'update_servers' });
    await loginWithFreshCert('host update_servers');
    const done = await rotate('host', { phase: 'standby' });
    assert.deepEqual(done.keys.map((k) => k.id), [init.new_ca]);
    await loginWithFreshCert('host standby, clients not refreshed');
    assert.equal(await refreshClient(), 1);
    await loginWithFreshCert('host standby');
  });

  test('host CA rollback from update_servers: renewed hosts go back to the old CA', async () => {
    const init = await rotate('host', { phase: 'init' });
    await refreshClient();
    await rotate('host', { phase: 'update_clients' });
    await rotate('host', { phase: 'update_servers' });
    // Completing now would drop the CA the host still presents: refused, naming the host.
    const early = await auth.api('POST', '/v1/admin/ca/host/rotation', { token: admin, json: { phase: 'standby' } });
    assert.equal(early.status, 409);
    assert.match(early.bytes.toString('utf8'), /2 host\(s\) still present certificates of the old host CA \(bastion\.test, web01\.test\)/);
    assert.equal((await runHostCli(['renew', '--root', host.root, '--force'])).code, 0);
    await auth.renewProxy();
    await sshd.listening(++reloads);
    await loginWithFreshCert('before the rollback');
    const back = await rotate('host', { rollback: true });
    assert.notEqual(back.keys[0]!.id, init.new_ca);
    // The host still presents the rolled-back CA's certificate until it renews: a client that
    // has not refreshed yet still trusts both, so it connects; then the host renews.
    await loginWithFreshCert('rolled back, host not renewed, client not refreshed');
    assert.equal((await runHostCli(['renew', '--root', host.root, '--force'])).code, 0);
    await sshd.listening(++reloads);
    assert.equal(await refreshClient(), 1);
    await loginWithFreshCert('rolled back');
  });
});
