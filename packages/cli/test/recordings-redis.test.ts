import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { hasTool, startRedisCluster, tempDir } from '@portcullis/harness';
import { listRecordings } from '@portcullis/recording';
import { CliError, type CliErrorCode } from '../src/common/errors.js';
import { redisConfigOf, withRecordings } from '../src/pcsh/recordings.js';

const isCliError = (e: unknown, code?: CliErrorCode): e is CliError => e instanceof CliError && (code === undefined || e.code === code);

test('recordings --redis: a URL as is, or the redis section of a service config file', (t) => {
  const dir = tempDir();
  t.after(() => dir.remove());
  assert.deepEqual(redisConfigOf({ redis: 'redis://:pw@10.0.0.5:6379' }), { url: 'redis://:pw@10.0.0.5:6379' });
  assert.deepEqual(redisConfigOf({}, { PORTCULLIS_REDIS_URL: 'unix:///run/redis.sock' }), { url: 'unix:///run/redis.sock' });
  assert.deepEqual(redisConfigOf({}, {}), { url: 'redis://127.0.0.1:6379' });
  const proxyYaml = dir.file('proxy.yaml');
  writeFileSync(proxyYaml, 'state_dir: /var/lib/portcullis/proxy\nredis:\n  sentinel:\n    name: portcullis\n    sentinels: [{ host: 10.0.0.1, port: 26379 }]\n    password: hunter2-secret\n');
  assert.deepEqual(redisConfigOf({ redis: proxyYaml }), {
    sentinel: { name: 'portcullis', sentinels: [{ host: '10.0.0.1', port: 26379 }], password: 'hunter2-secret' },
  });
  const refusals: [string, RegExp][] = [
    ['state_dir: /x\nredis: { embedded: { stateDir: /var/lib/portcullis/auth/redis } }\n', /pass its socket instead: --redis unix:\/\/\/var\/lib\/portcullis\/auth\/redis\/redis\.sock/],
    ['state_dir: /x\n', /has no redis section/],
    ['redis: { cluster: { nodes: [], password: hunter2-secret } }\n', /redis\.cluster\.nodes/],
  ];
  for (const [text, why] of refusals) {
    const f = dir.file('bad.yaml');
    writeFileSync(f, text);
    assert.throws(() => redisConfigOf({ redis: f }), (e: unknown) => isCliError(e) && why.test(e.message) && !e.message.includes('hunter2'), text);
  }
  assert.throws(() => redisConfigOf({ redis: dir.file('missing.yaml') }), /cannot read/);
});

test('recordings --redis <file>: reads recordings from a Redis Cluster', { skip: (!hasTool('redis-server') || !hasTool('redis-cli')) && 'needs redis-server and redis-cli', timeout: 60_000 }, async (t) => {
  const dir = tempDir();
  t.after(() => dir.remove());
  const cluster = await startRedisCluster({ dir: dir.path, masters: 3, replicasPerMaster: 0 });
  t.after(() => cluster.stop());
  const file = dir.file('web.yaml');
  writeFileSync(file, `redis:\n  cluster:\n    nodes: [{ host: 127.0.0.1, port: ${cluster.nodes[0]!.port} }]\n`);
  assert.deepEqual(await withRecordings({ redis: file }, (redis) => listRecordings(redis, {})), []);
  await assert.rejects(
    withRecordings({ redis: 'redis://:hunter2-secret@127.0.0.1:1' }, async () => undefined),
    (e: unknown) => isCliError(e, 'ERR_UNREACHABLE') && !e.message.includes('hunter2') && /--redis/.test(e.message),
  );
});
