import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasTool, runOk, startRedisSentinelGroup, tempDir } from '@portcullis/harness';
import { connectRedis } from '../src/redis.js';

const skip = (!hasTool('redis-server') || !hasTool('redis-cli')) && 'needs redis-server and redis-cli';

test('connectRedis(sentinel): after a manual failover (old master demoted, still alive) writes go to the new master', { skip, timeout: 90_000 }, async (t) => {
  const undo: (() => Promise<void> | void)[] = [];
  t.after(async () => {
    for (const u of undo.reverse()) await Promise.resolve(u()).catch(() => {});
  });
  const dir = tempDir();
  undo.push(() => dir.remove());
  const group = await startRedisSentinelGroup({ dir: dir.path, replicas: 1, sentinels: 3 });
  undo.push(() => group.stop());
  const conn = await connectRedis(group.config, { maxRetriesPerRequest: 1, onClientError: () => {} });
  undo.push(() => conn.close());
  const old = await group.master();
  assert.equal(await conn.client.set('pc:{test}:k', 'before'), 'OK');

  // What an operator does before maintenance on the master's machine.
  await runOk('redis-cli', ['-p', String(group.sentinels[0]!.port), 'sentinel', 'failover', group.name]);
  const promoted = await group.waitMaster({ notPort: old.port, timeoutMs: 45_000 });
  assert.notEqual(promoted.port, old.port);
  // Until the sentinels turn the old master into a replica it still takes writes (and loses
  // them when it resyncs): Redis's own window, closed only by min-replicas-to-write. What is
  // tested here is the client once the old master answers READONLY.
  const demoteBy = Date.now() + 30_000;
  while (!/^role:slave/m.test((await runOk('redis-cli', ['-p', String(old.port), 'info', 'replication'])).stdout)) {
    if (Date.now() > demoteBy) assert.fail('the old master was never turned into a replica');
    await new Promise((r) => setTimeout(r, 100));
  }

  const errors: string[] = [];
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      assert.equal(await conn.client.set('pc:{test}:k', 'after'), 'OK');
      break;
    } catch (e) {
      errors.push((e as Error).message);
      if (Date.now() > deadline) assert.fail(`writes never reached the new master; last errors: ${errors.slice(-3).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.equal((await runOk('redis-cli', ['-p', String(promoted.port), 'get', 'pc:{test}:k'])).stdout.trim(), 'after');
  t.diagnostic(`errors seen while the client moved: ${errors.length === 0 ? 'none' : errors.join(' | ')}`);
});
