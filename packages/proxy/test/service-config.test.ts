import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isProxyError } from '../src/errors.js';
import { parseProxyServiceConfig } from '../src/service-config.js';

const base = { state_dir: '/var/lib/portcullis/proxy' };

test('proxy config: redis takes url, sentinel or cluster, as auth does', () => {
  const kinds = [
    { url: 'redis://:pw@redis.internal:6379/0' },
    { sentinel: { sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], name: 'portcullis', password: 'pw' } },
    { cluster: { nodes: [{ host: 'n1', port: 7000 }], password: 'pw' } },
  ];
  for (const redis of kinds) assert.deepEqual(parseProxyServiceConfig({ ...base, redis }).redis, redis);
});

test('proxy config: an embedded Redis is refused with the reason, and no message echoes a password', () => {
  assert.throws(
    () => parseProxyServiceConfig({ ...base, redis: { embedded: { stateDir: '/x' } } }),
    (e: unknown) => isProxyError(e, 'ERR_CONFIG') && /redis\.embedded: a proxy cannot use an embedded Redis/.test(e.message),
  );
  const bad: unknown[] = [
    undefined,
    { url: 'http://:hunter2-secret@redis:6379' },
    { sentinel: { sentinels: [], name: 'm', password: 'hunter2-secret' } },
    { cluster: { nodes: [{ host: 'n1' }], password: 'hunter2-secret' } },
    { url: 'redis://x', sentinel: { sentinels: [{ host: 's', port: 1 }], name: 'm', sentinelPassword: 'hunter2-secret' } },
  ];
  for (const redis of bad) {
    assert.throws(
      () => parseProxyServiceConfig({ ...base, ...(redis === undefined ? {} : { redis }) }),
      (e: unknown) => isProxyError(e, 'ERR_CONFIG') && /^proxy config: redis/.test(e.message) && !e.message.includes('hunter2'),
      JSON.stringify(redis),
    );
  }
});
