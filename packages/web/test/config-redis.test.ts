import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWebConfig } from '../src/config.js';
import { isWebError } from '../src/errors.js';

const base = { state_dir: '/var/lib/portcullis/web', auth: { url: 'https://127.0.0.1:3025', fingerprint: 'AB' } };

test('web config: redis takes url, sentinel or cluster; an embedded Redis is refused; no message echoes a password', () => {
  const sentinel = { sentinel: { sentinels: [{ host: 's1', port: 26379 }], name: 'portcullis', password: 'pw' } };
  assert.deepEqual(parseWebConfig({ ...base, redis: sentinel }).redis, sentinel);
  const cluster = { cluster: { nodes: [{ host: 'n1', port: 7000 }] } };
  assert.deepEqual(parseWebConfig({ ...base, redis: cluster }).redis, cluster);
  assert.throws(
    () => parseWebConfig({ ...base, redis: { embedded: { stateDir: '/x' } } }),
    (e: unknown) => isWebError(e, 'ERR_CONFIG') && /^config: redis\.embedded: the web gateway cannot use an embedded Redis/.test(e.message),
  );
  assert.throws(
    () => parseWebConfig({ ...base, redis: { url: 'http://:hunter2-secret@r:6379' } }),
    (e: unknown) => isWebError(e, 'ERR_CONFIG') && /^config: redis\.url: /.test(e.message) && !e.message.includes('hunter2'),
  );
});
