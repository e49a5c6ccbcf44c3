import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { run, startRedis, tempDir } from '@portcullis/harness';
import { AuthClient, AuthService, parseAuthConfig, type AuthServiceInfo } from '@portcullis/auth';
import { connectRedis } from '@portcullis/store';
import { createServer } from 'node:net';
import { backup, restore } from '../src/portcullis/backup.js';

/*
 * A backup is only worth what its restore gives back, so this takes a real auth service with
 * its embedded Redis, uses it, backs it up while it runs, wipes the state directory, restores
 * and starts again: the user still logs in and mints, the serial counter went on from where it
 * was (a repeated serial would make two certificates indistinguishable in the KRL), and the CAs
 * and auth's TLS pin are the ones clients and hosts already trust.
 */

const dir = tempDir('portcullis-backup-');
after(() => dir.remove());
const state = dir.file('state');
const ROLES = [{ kind: 'role', name: 'dev', spec: { allow: { logins: ['root'], host_labels: { '*': '*' } } } }];
const logs: string[] = [];

async function startAuth(): Promise<{ service: AuthService; info: AuthServiceInfo; client: AuthClient }> {
  // No redis section: the embedded redis-server under <state>/auth/redis, as `portcullis start` runs it.
  const config = parseAuthConfig({ state_dir: `${state}/auth`, listen: '127.0.0.1:0', audit: { sink: 'none' }, roles: ROLES }, { env: {} });
  const service = new AuthService({ config, log: (l) => logs.push(l), scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const info = await service.start();
  return { service, info, client: new AuthClient({ url: info.url, fingerprint: info.fingerprint }) };
}

function ok<T>(r: { status: number; body: unknown }): T {
  assert.ok(r.status >= 200 && r.status < 300, `HTTP ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as T;
}

async function mint(client: AuthClient, token: string, publicKey: string): Promise<bigint> {
  const cert = ok<{ serial: string }>(await client.request('POST', '/v1/certs/user', { token, json: { public_key: publicKey } }));
  return BigInt(cert.serial);
}

const login = async (client: AuthClient, username: string, password: string): Promise<string> =>
  ok<{ token: string }>(await client.request('POST', '/v1/login/password', { json: { username, password } })).token;

test('backup of a running auth, wipe, restore: same CAs and TLS pin, the user logs in and mints, serials go on', { timeout: 120_000 }, async () => {
  const key = dir.file('id_bob');
  const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bob', '-f', key]);
  assert.equal(keygen.code, 0, keygen.stderr);
  const publicKey = readFileSync(`${key}.pub`, 'utf8').trim();

  const first = await startAuth();
  const invite = first.info.bootstrapInvite!;
  ok(await first.client.request('POST', '/v1/invites/accept', { json: { token: invite.token, password: 'admin password 123' } }));
  const admin = await login(first.client, 'admin', 'admin password 123');
  const created = ok<{ invite: { token: string } }>(await first.client.request('POST', '/v1/admin/users', { token: admin, json: { name: 'bob', roles: ['dev'] } }));
  ok(await first.client.request('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: 'bobs password!!' } }));
  const bob = await login(first.client, 'bob', 'bobs password!!');
  const serials = [await mint(first.client, bob, publicKey), await mint(first.client, bob, publicKey)];
  const caBefore = ok<unknown>(await first.client.request('GET', '/v1/ca'));

  const config = dir.file('portcullis.yaml');
  writeFileSync(config, `state_dir: ${state}\nservices: [auth]\nauth:\n  audit: { sink: none }\n`);
  const archive = dir.file('backup.tar.gz');
  await backup({ config, env: {}, out: archive }, (l) => logs.push(l));
  assert.equal(statSync(archive).mode & 0o777, 0o600, 'the archive holds CA keys: owner only');
  await assert.rejects(backup({ config, env: {}, out: archive }, () => {}), /never overwritten/);
  await assert.rejects(restore({ config, env: {}, in: archive }, () => {}), /running/, 'restore refuses while the service runs');
  await first.service.stop();
  // Stopped: the embedded AOF directory is at rest and copied as it is.
  const atRest = dir.file('backup-stopped.tar.gz');
  await backup({ config, env: {}, out: atRest }, (l) => logs.push(l));

  await assert.rejects(restore({ config, env: {}, in: archive }, () => {}), /already holds portcullis state: .*holds auth.*--force/);
  rmSync(state, { recursive: true, force: true });
  await restore({ config, env: {}, in: archive }, (l) => logs.push(l));
  assert.ok(existsSync(`${state}/portcullis.yaml.restored`), 'the config comes back beside the state');

  const second = await startAuth();
  try {
    assert.equal(second.info.fingerprint, first.info.fingerprint, 'auth TLS pin unchanged: proxies and hosts still trust it');
    assert.equal(second.info.bootstrapInvite, undefined, 'users came back: no first-start invite');
    assert.deepEqual(ok<unknown>(await second.client.request('GET', '/v1/ca')), caBefore, 'the same user and host CAs');
    const again = await login(second.client, 'bob', 'bobs password!!');
    const next = await mint(second.client, again, publicKey);
    assert.ok(next > serials[1]!, `serial ${next} after ${serials.join(', ')}`);
    ok(await second.client.request('GET', '/v1/ready'));
  } finally {
    await second.service.stop();
  }

  // --force keeps what it replaces; the backup of the stopped service restores as well.
  await restore({ config, env: {}, in: atRest, force: true }, (l) => logs.push(l));
  assert.ok(logs.some((l) => /is now in .*pre-restore-/.test(l)), logs.join('\n'));
  const third = await startAuth();
  try {
    assert.equal(third.info.fingerprint, first.info.fingerprint);
    const token = await login(third.client, 'bob', 'bobs password!!');
    assert.ok((await mint(third.client, token, publicKey)) > serials[1]!);
  } finally {
    await third.service.stop();
  }
});

test('an external Redis with a password: read through its URL, restored straight into another one', { timeout: 60_000 }, async () => {
  const d = tempDir('portcullis-backup-ext-');
  mkdirSync(d.file('a')); mkdirSync(d.file('b'));
  const redis = await startRedis({ dir: d.file('a'), password: 'backup-s3cret' });
  const other = await startRedis({ dir: d.file('b') });
  try {
    // No state directory at all: with an external Redis there is still something to keep.
    const ext = d.file('state');
    const set = await run('redis-cli', ['-p', String(redis.port), 'set', 'pc:test', 'kept'], { env: { ...process.env, REDISCLI_AUTH: 'backup-s3cret' } });
    assert.equal(set.stdout.trim(), 'OK', set.stderr);
    const config = d.file('portcullis.yaml');
    writeFileSync(config, `state_dir: ${ext}\nservices: [auth]\nauth:\n  redis: { url: '${redis.url}' }\n`);
    const archive = d.file('ext.tar.gz');
    await backup({ config, env: {}, out: archive }, () => {});
    await restore({ config, env: {}, redisUrl: other.url, in: archive }, () => {});
    assert.equal((await run('redis-cli', ['-u', other.url, 'get', 'pc:test'])).stdout.trim(), 'kept');
  } finally {
    await redis.stop();
    await other.stop();
    d.remove();
  }
});

test('an embedded Redis on loopback TCP (redis.embedded.port): read with its generated password, and restore refuses while it answers', { timeout: 60_000 }, async () => {
  const d = tempDir('portcullis-backup-tcp-');
  const port = await new Promise<number>((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => done(p));
    });
  });
  const state = d.file('state');
  const config = d.file('portcullis.yaml');
  writeFileSync(config, `state_dir: ${state}\nservices: [auth]\nauth:\n  redis: { embedded: { port: ${port} } }\n`);
  const conn = await connectRedis({ embedded: { stateDir: `${state}/auth/redis`, port } });
  mkdirSync(d.file('target'));
  const other = await startRedis({ dir: d.file('target') });
  try {
    await conn.client.set('pc:{ca}:serial', '7');
    const archive = d.file('tcp.tar.gz');
    await backup({ config, env: {}, out: archive }, () => {});
    await assert.rejects(restore({ config, env: {}, in: archive }, () => {}), /running/);
    await conn.close();
    await restore({ config, env: {}, state: d.file('elsewhere'), redisUrl: other.url, in: archive }, () => {});
    assert.equal((await run('redis-cli', ['-u', other.url, 'get', 'pc:{ca}:serial'])).stdout.trim(), '7');
  } finally {
    await conn.close();
    await other.stop();
    d.remove();
  }
});

test('a file that is not a backup is refused with tar\'s reason, and no state directory is left behind', { timeout: 30_000 }, async () => {
  const d = tempDir('portcullis-backup-bad-');
  const redis = await startRedis({ dir: d.path });
  try {
    const notBackup = d.file('notes.tar.gz');
    writeFileSync(notBackup, 'not an archive\n');
    const config = d.file('portcullis.yaml');
    const fresh = d.file('new/state');
    writeFileSync(config, `state_dir: ${fresh}\nservices: [auth]\nauth:\n  redis: { url: '${redis.url}' }\n`);
    await assert.rejects(restore({ config, env: {}, in: notBackup }, () => {}), /not in gzip format/);
    assert.equal(existsSync(d.file('new')), false, 'the state directory restore made is gone again');
    assert.equal((await run('redis-cli', ['-u', redis.url, 'dbsize'])).stdout.trim(), '0');
  } finally {
    await redis.stop();
    d.remove();
  }
});
