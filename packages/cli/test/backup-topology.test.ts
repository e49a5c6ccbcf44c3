import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { hasTool, run, runOk, startRedis, startRedisCluster, startRedisSentinelGroup, tempDir, type RedisCluster } from '@portcullis/harness';
import { AuthClient, AuthService, parseAuthConfig, type AuthServiceInfo } from '@portcullis/auth';
import type { Redis } from 'ioredis';
import { connectRedis, type RedisClient, type RedisConfig } from '@portcullis/store';
import { backup, restore } from '../src/portcullis/backup.js';
import { scanKeys } from '../src/portcullis/backup-keys.js';

/*
 * Backups move between Redis topologies: auth's whole state taken from a 3-master cluster comes
 * back on a single server and auth runs on it with the same CAs; a single server's keys land on
 * a cluster byte for byte with their TTLs; and a restore into a target
 * that already holds our keys refuses, says what is there, and leaves it exactly as it was.
 */

const missing = ['redis-server', 'redis-cli', 'ssh-keygen'].filter((t) => !hasTool(t));
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;
const dir = tempDir('portcullis-backup-topo-');
const ROLES = [{ kind: 'role', name: 'dev', spec: { allow: { logins: ['root'], host_labels: { '*': '*' } } } }];
const PASSWORD = 'correct horse battery staple';
const logs: string[] = [];
const log = (l: string): void => void logs.push(l);
let cluster: RedisCluster | undefined;

before(async () => {
  if (skip !== false) return;
  cluster = await startRedisCluster({ dir: dir.file('cluster'), masters: 3, replicasPerMaster: 1 });
});
after(async () => {
  await cluster?.stop();
  dir.remove();
});

function yaml(state: string, redis: RedisConfig): string {
  const file = dir.file(`${state.split('/').pop()}.yaml`);
  // JSON is YAML: the redis section goes in exactly as connectRedis takes it.
  writeFileSync(file, `state_dir: ${state}\nservices: [auth]\nauth: ${JSON.stringify({ audit: { sink: 'none' }, redis })}\n`);
  return file;
}

async function startAuth(state: string, redis: RedisConfig): Promise<{ service: AuthService; info: AuthServiceInfo; client: AuthClient }> {
  const config = parseAuthConfig({ state_dir: `${state}/auth`, listen: '127.0.0.1:0', audit: { sink: 'none' }, roles: ROLES, redis }, { env: {} });
  const service = new AuthService({ config, log, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const info = await service.start();
  return { service, info, client: new AuthClient({ url: info.url, fingerprint: info.fingerprint }) };
}

function ok<T>(r: { status: number; body: unknown }): T {
  assert.ok(r.status >= 200 && r.status < 300, `HTTP ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as T;
}

const login = async (client: AuthClient, username: string): Promise<string> =>
  ok<{ token: string }>(await client.request('POST', '/v1/login/password', { json: { username, password: PASSWORD } })).token;

async function mint(client: AuthClient, token: string, publicKey: string): Promise<{ serial: bigint; certificate: string }> {
  const c = ok<{ serial: string; certificate: string }>(await client.request('POST', '/v1/certs/user', { token, json: { public_key: publicKey } }));
  return { serial: BigInt(c.serial), certificate: c.certificate };
}

/** The fingerprint of the CA that signed a certificate, as ssh-keygen reads it. */
async function signingCa(certificate: string): Promise<string> {
  const file = dir.file(`cert-${Math.random().toString(36).slice(2)}-cert.pub`);
  writeFileSync(file, certificate);
  const r = await run('ssh-keygen', ['-L', '-f', file]);
  assert.equal(r.code, 0, r.stderr);
  const m = /Signing CA: \S+ (SHA256:\S+)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  return m[1]!;
}

/** A key's value as its type reads it (a set's DUMP order is its hash table's, not its content). */
async function valueOf(node: Redis, key: string): Promise<unknown> {
  const type = await node.type(key);
  if (type === 'string') return [type, await node.get(key)];
  if (type === 'hash') return [type, await node.hgetall(key)];
  if (type === 'set') return [type, (await node.smembers(key)).sort()];
  if (type === 'zset') return [type, await node.zrange(key, 0, -1, 'WITHSCORES')];
  if (type === 'list') return [type, await node.lrange(key, 0, -1)];
  if (type === 'stream') return [type, await node.xrange(key, '-', '+')];
  return [type];
}

/** Every key of ours with its value and PTTL, from every master. */
async function contents(client: RedisClient): Promise<Map<string, { value: unknown; pttl: number }>> {
  const out = new Map<string, { value: unknown; pttl: number }>();
  for (const { node, keys } of await scanKeys(client, () => true)) {
    for (const key of keys) out.set(key, { value: await valueOf(node, key), pttl: await node.pttl(key) });
  }
  return out;
}

/** The same without the PTTLs' drift: whether a TTL is set. */
async function settled(client: RedisClient): Promise<Map<string, unknown>> {
  return new Map([...(await contents(client))].map(([k, v]) => [k, { value: v.value, expires: v.pttl > 0 }]));
}

async function flushCluster(client: RedisClient): Promise<void> {
  for (const { node, keys } of await scanKeys(client, () => true)) for (const k of keys) await node.del(k);
}

test('cluster -> single server: auth starts on the restored server, the same CA signs, logins and serials go on', { skip, timeout: 60_000 }, async () => {
  const c = cluster!;
  const state = dir.file('from-cluster');
  const key = dir.file('id_bob');
  assert.equal((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bob', '-f', key])).code, 0);
  const publicKey = readFileSync(`${key}.pub`, 'utf8').trim();

  const first = await startAuth(state, c.config);
  let before: { serial: bigint; certificate: string };
  let caBefore: unknown;
  try {
    ok(await first.client.request('POST', '/v1/invites/accept', { json: { token: first.info.bootstrapInvite!.token, password: PASSWORD } }));
    const admin = await login(first.client, 'admin');
    const created = ok<{ invite: { token: string } }>(await first.client.request('POST', '/v1/admin/users', { token: admin, json: { name: 'bob', roles: ['dev'] } }));
    ok(await first.client.request('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: PASSWORD } }));
    before = await mint(first.client, await login(first.client, 'bob'), publicKey);
    caBefore = ok<unknown>(await first.client.request('GET', '/v1/ca'));
  } finally {
    await first.service.stop();
  }
  // A recording's key: left out unless --include-recordings.
  const conn = await connectRedis(c.config);
  try {
    await conn.client.hset('pc:{rec:s1}:meta', 'user', 'bob');
    const spread = new Set((await scanKeys(conn.client, () => true)).filter((n) => n.keys.length > 0).map((n) => n.node.options.port));
    assert.ok(spread.size > 1, 'the state is spread over several masters, or this would not test the cluster walk');
  } finally {
    await conn.close();
  }

  const archive = dir.file('cluster.tar.gz');
  await backup({ config: yaml(state, c.config), env: {}, out: archive }, log);
  assert.equal(statSync(archive).mode & 0o777, 0o600, 'the archive holds CA keys: owner only');

  mkdirSync(dir.file('single'));
  const single = await startRedis({ dir: dir.file('single') });
  const restored = dir.file('on-single');
  try {
    await restore({ config: yaml(restored, { url: single.url }), env: {}, in: archive }, log);
    assert.equal((await run('redis-cli', ['-u', single.url, 'exists', 'pc:{rec:s1}:meta'])).stdout.trim(), '0', 'recordings stay out by default');
    const second = await startAuth(restored, { url: single.url });
    try {
      assert.equal(second.info.fingerprint, first.info.fingerprint, 'auth TLS pin unchanged');
      assert.equal(second.info.bootstrapInvite, undefined, 'users came back: no first-start invite');
      assert.deepEqual(ok<unknown>(await second.client.request('GET', '/v1/ca')), caBefore, 'the same CAs');
      const after = await mint(second.client, await login(second.client, 'bob'), publicKey);
      assert.ok(after.serial > before.serial, `serial ${after.serial} after ${before.serial}`);
      assert.equal(await signingCa(after.certificate), await signingCa(before.certificate), 'the same CA key signs');
    } finally {
      await second.service.stop();
    }
  } finally {
    await single.stop();
  }
});

test('single server -> cluster: every key reads back equal, TTLs kept, keys not ours left behind', { skip, timeout: 60_000 }, async () => {
  const c = cluster!;
  mkdirSync(dir.file('source'));
  const source = await startRedis({ dir: dir.file('source') });
  const src = await connectRedis({ url: source.url });
  const dst = await connectRedis(c.config);
  try {
    await flushCluster(dst.client);
    const s = src.client;
    await s.set('pc:{ca}:serial', '123456789');
    await s.hset('pc:{user:alice}:record', { name: 'alice', roles: '["dev"]' });
    await s.sadd('pc:{user:alice}:sessions', 'a', 'b');
    await s.set('pc:{session:' + 'ab'.repeat(32) + '}', 'session', 'PX', 600_000);
    await s.zadd('pc:{ca}:revoked', 1, '17', 2, '18');
    await s.xadd('pc:{audit}:events', '*', 'type', 'login');
    await s.rpush('pc:{rec:s2}:snapshots', 'x');
    await s.set('not-ours', 'left alone');
    const expected = await contents(s);
    expected.delete('not-ours');

    const archive = dir.file('single.tar.gz');
    await backup({ config: yaml(dir.file('single-state'), { url: source.url }), env: {}, out: archive, includeRecordings: true }, log);
    const manifest = JSON.parse((await run('tar', ['-xzOf', archive, './manifest.json'])).stdout) as { version: number; redis: { keys: number; recordings: boolean } };
    assert.deepEqual([manifest.version, manifest.redis.keys, manifest.redis.recordings], [2, expected.size, true]);

    await restore({ config: yaml(dir.file('cluster-state'), c.config), env: {}, in: archive }, log);
    const got = await contents(dst.client);
    assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
    for (const [k, v] of expected) {
      const g = got.get(k)!;
      assert.deepEqual(g.value, v.value, `${k}: the same value`);
      if (v.pttl < 0) assert.equal(g.pttl, -1, `${k}: no TTL`);
      else assert.ok(g.pttl > v.pttl - 10_000 && g.pttl <= v.pttl, `${k}: TTL ${g.pttl} ms, was ${v.pttl} ms`);
    }
    assert.equal(await dst.client.get('pc:{ca}:serial'), '123456789', 'read through the cluster client: on the master of its slot');
  } finally {
    await src.close();
    await dst.close();
    await source.stop();
  }
});

test('restore into a target holding our keys: refuses, names them, changes nothing; --force replaces', { skip, timeout: 60_000 }, async () => {
  const c = cluster!;
  const dst = await connectRedis(c.config);
  try {
    // Whatever the previous test left on the cluster, and a user the backup does not know.
    await dst.client.set('pc:{ca}:serial', '999');
    await dst.client.hset('pc:{user:zed}:record', 'name', 'zed');
    const before = await settled(dst.client);
    assert.ok(before.size >= 2);

    const state = dir.file('refused-state');
    const config = yaml(state, c.config);
    const archive = dir.file('single.tar.gz');
    await assert.rejects(restore({ config, env: {}, in: archive }, log), (e: Error) => {
      assert.match(e.message, new RegExp(`redis at cluster via .* holds ${before.size} keys \\(.*user.*; e\\.g\\. .*pc:\\{ca\\}:serial`));
      assert.match(e.message, /Nothing was changed; --force/);
      return true;
    });
    assert.deepEqual(await settled(dst.client), before, 'the cluster is as it was');
    assert.ok(!['auth', 'proxy', 'web'].some((d) => existsSync(`${state}/${d}`)), 'no files were written');

    await restore({ config, env: {}, in: archive, force: true }, log);
    assert.equal(await dst.client.get('pc:{ca}:serial'), '123456789');
    assert.equal(await dst.client.exists('pc:{user:zed}:record'), 0, 'a key the backup does not have is gone');
    assert.ok(logs.some((l) => /deleted 1 keys the backup did not have/.test(l)), logs.join('\n'));
  } finally {
    await dst.close();
  }
});

test('a version 1 archive (an RDB) restores into Sentinel, and a backup through Sentinel reads the master', { skip, timeout: 60_000 }, async () => {
  const group = await startRedisSentinelGroup({ dir: dir.file('sentinel'), replicas: 1, sentinels: 3 });
  mkdirSync(dir.file('v1-source'));
  const source = await startRedis({ dir: dir.file('v1-source') });
  try {
    // What `portcullis backup` wrote before format 2: the server's RDB beside the files.
    const src = await connectRedis({ url: source.url });
    let expected: Map<string, unknown>;
    try {
      await src.client.hset('pc:{user:carol}:record', 'name', 'carol');
      await src.client.set('pc:{ca}:serial', '42');
      await src.client.set('pc:{session:' + 'cd'.repeat(32) + '}', 'x', 'PX', 300_000);
      expected = await settled(src.client);
    } finally {
      await src.close();
    }
    const stage = dir.file('v1-stage');
    mkdirSync(`${stage}/state/auth`, { recursive: true });
    writeFileSync(`${stage}/state/auth/ca-marker`, 'kept');
    await runOk('redis-cli', ['-u', source.url, '--rdb', `${stage}/redis.rdb`]);
    writeFileSync(`${stage}/manifest.json`, JSON.stringify({ format: 'portcullis-backup', version: 1, createdAt: '2026-11-01T00:00:00.000Z', redis: 'external', stateDir: '/var/lib/portcullis' }));
    const v1 = dir.file('v1.tar.gz');
    await runOk('tar', ['-C', stage, '-czf', v1, '.']);

    const state = dir.file('on-sentinel');
    const config = yaml(state, group.config);
    await restore({ config, env: {}, in: v1 }, log);
    assert.equal(readFileSync(`${state}/auth/ca-marker`, 'utf8'), 'kept');
    const sentinel = await connectRedis(group.config);
    try {
      assert.deepEqual(await settled(sentinel.client), expected);
    } finally {
      await sentinel.close();
    }

    const again = dir.file('from-sentinel.tar.gz');
    await backup({ config, env: {}, out: again }, log);
    const manifest = JSON.parse((await run('tar', ['-xzOf', again, './manifest.json'])).stdout) as { redis: { source: string; keys: number } };
    assert.deepEqual([manifest.redis.source, manifest.redis.keys], ['sentinel', expected.size]);
  } finally {
    await source.stop();
    await group.stop();
  }
});
