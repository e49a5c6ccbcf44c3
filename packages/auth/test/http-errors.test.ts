// How errors become API answers when the store is away: the errors are ioredis's own, made by
// pointing a client at a port nothing listens on, not hand-built look-alikes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { freePort } from '@portcullis/harness';
import { toApiError } from '../src/http/errors.js';

test('a Redis that cannot be reached is 503 ERR_UNAVAILABLE with Retry-After, any other throw 500', async () => {
  const redis = new Redis({ host: '127.0.0.1', port: await freePort(), maxRetriesPerRequest: 1, retryStrategy: () => 20, lazyConnect: false });
  redis.on('error', () => {});
  try {
    const retriesOut = await redis.get('k').then(() => undefined, (e: unknown) => e);
    assert.ok(retriesOut instanceof Error);
    const a = toApiError(retriesOut, 1024);
    assert.deepEqual([a.status, a.code, a.retryAfter], [503, 'ERR_UNAVAILABLE', 5], String(retriesOut));
    assert.match(a.message, /Redis\) is unreachable/);
  } finally {
    redis.disconnect();
  }
  assert.deepEqual([toApiError(new Error('boom'), 1024).status, toApiError(new Error('boom'), 1024).code], [500, 'ERR_INTERNAL']);
});
