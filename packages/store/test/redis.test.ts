import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freePort, hasTool, redisProcessesUnder, startRedis, tempDir } from '@portcullis/harness';
import type { Redis } from 'ioredis';
import { isStoreError } from '../src/errors.js';
import { connectRedis, parseRedisConfig, redisConfigSchema } from '../src/redis.js';

const skip = !hasTool('redis-server') && 'redis-server is not installed';

test('redis config schema: one of embedded, url, sentinel, cluster, nothing else', () => {
  const good = [
    { embedded: { stateDir: '/var/lib/portcullis/redis' } },
    { embedded: { stateDir: '/var/lib/portcullis/redis', port: 6390 } },
    { url: 'redis://:pw@redis.internal:6379/2' },
    { url: 'rediss://redis.internal:6380' },
    { url: 'unix:///run/redis/redis.sock' },
    { sentinel: { sentinels: [{ host: 's1', port: 26379 }], name: 'mymaster', password: 'pw' } },
    { cluster: { nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }], tls: true } },
  ];
  for (const g of good) assert.ok(redisConfigSchema.safeParse(g).success, JSON.stringify(g));
  const bad = [
    {},
    { url: 'http://redis:6379' },
    { url: 'redis://x', embedded: { stateDir: '/x' } },
    { embedded: { stateDir: '' } },
    { embedded: { stateDir: '/x', prot: 1 } },
    { sentinel: { sentinels: [], name: 'm' } },
    { sentinel: { sentinels: [{ host: 'h', port: 70000 }], name: 'm' } },
    { cluster: { nodes: [{ host: 'h' }] } },
  ];
  for (const b of bad) assert.ok(!redisConfigSchema.safeParse(b).success, JSON.stringify(b));
  assert.throws(
    () => parseRedisConfig({ url: 'http://secret-host' }),
    (e: unknown) => isStoreError(e, 'ERR_CONFIG') && /^config: redis(\.url)?: /.test(e.message),
  );
});

test('connectRedis(url): a ready client, pub/sub through subscriber(), close', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const server = await startRedis({ dir: tmp.path });
  t.after(() => server.stop());
  const conn = await connectRedis({ url: server.url });
  t.after(() => conn.close());
  assert.equal(conn.kind, 'url');
  assert.equal(conn.client.status, 'ready');
  assert.equal(conn.embedded, undefined);
  await conn.client.set('pc:{test}:k', 'v');
  assert.equal(await conn.client.get('pc:{test}:k'), 'v');

  const sub = (await conn.subscriber()) as Redis;
  const got = new Promise<string>((resolve) => sub.on('message', (_channel: string, message: string) => resolve(message)));
  await sub.subscribe('pc:locks');
  await conn.client.publish('pc:locks', 'lock:alice');
  assert.equal(await got, 'lock:alice');

  await conn.close();
  assert.equal(conn.client.status, 'end');
  assert.equal(sub.status, 'end');
});

test('connectRedis(url) over a unix socket', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const server = await startRedis({ dir: tmp.path, unixSocket: true });
  t.after(() => server.stop());
  assert.match(server.url, /^unix:\/\//);
  const conn = await connectRedis({ url: server.url });
  t.after(() => conn.close());
  assert.equal(await conn.client.ping(), 'PONG');
});

test('connectRedis: a wrong password fails at once, without the password in the message', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const server = await startRedis({ dir: tmp.path, password: 'right-horse-battery' });
  t.after(() => server.stop());
  const ok = await connectRedis({ url: server.url });
  await ok.close();

  const wrong = `redis://:${encodeURIComponent('wrong-staple-secret')}@127.0.0.1:${server.port}`;
  const started = Date.now();
  await assert.rejects(connectRedis({ url: wrong }, { readyTimeoutMs: 10_000 }), (e: unknown) => {
    assert.ok(isStoreError(e, 'ERR_UNAVAILABLE'));
    assert.match(e.message, /^store: redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ refused authentication: WRONGPASS/);
    assert.ok(!e.message.includes('wrong-staple-secret'));
    return true;
  });
  assert.ok(Date.now() - started < 5_000, 'refusal is not retried until the deadline');
});

test('connectRedis: nothing listening fails at the deadline with the cause', { skip }, async () => {
  const port = await freePort();
  await assert.rejects(connectRedis({ url: `redis://127.0.0.1:${port}` }, { readyTimeoutMs: 600 }), (e: unknown) => {
    assert.ok(isStoreError(e, 'ERR_UNAVAILABLE'));
    assert.equal(e.message, `store: redis at redis://127.0.0.1:${port} not ready within 600 ms: connect ECONNREFUSED 127.0.0.1:${port}`);
    return true;
  });
});

test('connectRedis(waitForReady: false): starts at once with nothing listening, and heals when Redis comes', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const port = await freePort();
  const errors: string[] = [];
  const started = Date.now();
  const conn = await connectRedis({ url: `redis://:pw-secret@127.0.0.1:${port}` }, { waitForReady: false, maxRetriesPerRequest: 1, onClientError: (m) => errors.push(m) });
  t.after(() => conn.close());
  assert.ok(Date.now() - started < 1_000, 'did not wait for a server');
  await assert.rejects(conn.client.set('pc:{test}:k', '1'));
  const server = await startRedis({ dir: tmp.path, port, password: 'pw-secret' });
  t.after(() => server.stop());
  const deadline = Date.now() + 15_000;
  while (conn.client.status !== 'ready' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await conn.client.set('pc:{test}:k', '1'), 'OK');
  assert.ok(errors.length > 0 && errors.every((m) => m.startsWith(`store: redis at redis://:***@127.0.0.1:${port}: `) && !m.includes('pw-secret')), errors.join('\n'));
});

test('connectRedis(embedded): starts the server, and close() stops it', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const conn = await connectRedis({ embedded: { stateDir: tmp.file('redis') } });
  t.after(() => conn.close());
  assert.equal(conn.kind, 'embedded');
  assert.equal(conn.target, `unix://${tmp.file('redis')}/redis.sock`);
  assert.equal(await conn.client.incr('pc:{ca}:serial'), 1);
  const sub = await conn.subscriber();
  assert.equal(sub.status, 'ready');
  assert.equal(redisProcessesUnder(tmp.path).length, 1);
  await conn.close();
  assert.deepEqual(redisProcessesUnder(tmp.path), []);
});

test('connectRedis(sentinel): finds the master through a real redis-sentinel', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const master = await startRedis({ dir: tmp.path, password: 'master-pw' });
  t.after(() => master.stop());
  const sentinelDir = tempDir();
  t.after(() => sentinelDir.remove());
  const sentinel = await startRedis({
    dir: sentinelDir.path,
    sentinel: true,
    extraConfig: [
      'save ""',
      `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
      'sentinel auth-pass mymaster master-pw',
    ],
  });
  t.after(() => sentinel.stop());
  const conn = await connectRedis({
    sentinel: { sentinels: [{ host: '127.0.0.1', port: sentinel.port ?? 0 }], name: 'mymaster', password: 'master-pw' },
  });
  t.after(() => conn.close());
  assert.equal(conn.kind, 'sentinel');
  assert.equal(conn.target, `sentinel master "mymaster" via 127.0.0.1:${sentinel.port}`);
  await conn.client.set('pc:{test}:via-sentinel', '1');
  assert.equal(await conn.client.get('pc:{test}:via-sentinel'), '1');

  await assert.rejects(
    connectRedis({ sentinel: { sentinels: [{ host: '127.0.0.1', port: sentinel.port ?? 0 }], name: 'nosuchmaster' } }, { readyTimeoutMs: 800 }),
    (e: unknown) => isStoreError(e, 'ERR_UNAVAILABLE') && /sentinel master "nosuchmaster"/.test(e.message),
  );
});
