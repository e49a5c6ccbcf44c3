import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasTool } from '@portcullis/harness';
import { isRecordingError } from '../src/errors.js';
import { NO_METRICS, type RecordingTrouble } from '../src/health.js';
import type { RecordingMode } from '../src/model.js';
import { RecordingSink } from '../src/sink.js';
import { SpoolFile } from '../src/spool.js';
import { uploadSpool } from '../src/upload.js';
import { readEntries, readMeta, writeItems, type RedisClient, type StoreItem } from '../src/store.js';
import { chainedEvents, storedSeqs, upTo } from './chain.js';
import { redisFixture, type RedisFixture } from './fixture.js';

// Redis refusing one write and taking a later one (OOM, then memory freed by expiry or a
// smaller command) must not leave the refused event out: a stream takes no id below its top.

const skip = !hasTool('redis-server') && 'redis-server is not installed';

function sink(redis: RedisClient, id: string, mode: RecordingMode, spool: SpoolFile | undefined, troubles: RecordingTrouble[]): RecordingSink {
  return new RecordingSink({
    redis,
    id,
    mode,
    spool,
    retentionMs: 3_600_000,
    timeoutMs: 2000,
    highWaterBytes: 64 * 1024 * 1024,
    maxHeldBytes: 64 * 1024 * 1024,
    onTrouble: (t) => troubles.push(t),
    metrics: NO_METRICS,
  });
}

/**
 * Puts Redis over maxmemory (noeviction) with a filler key, so that the next write is refused
 * while deleting the filler, sent right behind it on the same connection, frees the memory
 * before the write after that: Redis runs one connection's commands in the order sent.
 */
async function overMemory(fx: RedisFixture): Promise<void> {
  await fx.redis.set('filler', Buffer.alloc(8 * 1024 * 1024, 1));
  const used = Number(/used_memory:(\d+)/.exec(await fx.redis.info('memory'))![1]);
  await fx.redis.config('SET', 'maxmemory-policy', 'noeviction');
  await fx.redis.config('SET', 'maxmemory', String(used - 4 * 1024 * 1024));
}

/** One big event refused, the filler deleted, then events Redis would take. */
async function refuseThenAccept(fx: RedisFixture, s: RecordingSink, next: (n: number, size: number) => StoreItem[]): Promise<number> {
  await overMemory(fx);
  for (const item of next(1, 512 * 1024)) s.enqueue(item);
  assert.equal(s.inFlight, 1, 'the big event left on its own');
  void fx.redis.del('filler');
  for (const item of next(1, 40)) s.enqueue(item);
  assert.equal(s.inFlight, 2, 'the small event is in flight behind it');
  // A bulk event (guard and XADD) would be accepted too, and small ones after it.
  for (const item of next(1, 100 * 1024)) s.enqueue(item);
  for (const item of next(2, 40)) s.enqueue(item);
  return 5;
}

test('best effort: a big event refused for memory and a small one after it accepted; after the drain every event is stored, in order', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `refused-be-${process.pid}-${Date.now()}`;
  const troubles: RecordingTrouble[] = [];
  const spool = await SpoolFile.create(fx.tmp.path, { version: 1, id, pid: process.pid, meta: { id } }, 'never');
  const s = sink(fx.redis, id, 'best-effort', spool, troubles);
  const next = chainedEvents(id);
  for (const item of next(10, 1000)) s.enqueue(item);
  await s.flush();
  let sent = 10 + (await refuseThenAccept(fx, s, next));
  await s.flush();
  assert.ok(troubles.some((x) => x.kind === 'redis-oom' && x.action === 'spooling'), 'the refusal sent the session to the spool');
  for (const item of next(20, 1000)) s.enqueue(item);
  sent += 20;
  s.finish();
  await s.drained();
  assert.deepEqual(await storedSeqs(fx.redis, id), upTo(sent));
  assert.ok(troubles.some((x) => x.kind === 'recovered'));
});

test('strict: a big event refused for memory ends the recording, and a small one after it is not stored either: an exact prefix', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `refused-strict-${process.pid}-${Date.now()}`;
  const troubles: RecordingTrouble[] = [];
  const s = sink(fx.redis, id, 'strict', undefined, troubles);
  const next = chainedEvents(id);
  for (const item of next(10, 1000)) s.enqueue(item);
  await s.flush();
  await refuseThenAccept(fx, s, next);
  await assert.rejects(s.flush(), (e) => isRecordingError(e) && e.code === 'ERR_NOT_STORED');
  assert.equal(troubles[0]?.kind, 'redis-oom');
  assert.deepEqual(await storedSeqs(fx.redis, id), upTo(10));
});

test('a drain after a crash, with part of the spool already in Redis, stores the rest once: no duplicate, no gap', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `refused-crash-${process.pid}-${Date.now()}`;
  const write = { timeoutMs: 5000, retentionMs: undefined };
  const next = chainedEvents(id);
  // Events 1-9 went to Redis directly; 10-60 were spooled (an outage); the drain had stored
  // 10-35 when the process died. 100 KiB events: the upload reads the file in several slices.
  const direct = next(9, 100 * 1024);
  const spooled = next(51, 100 * 1024);
  await writeItems(fx.redis, id, [{ kind: 'meta', fields: { state: 'live', mode: 'best-effort', startedAt: '1700000000000', user: 'u', login: 'l', host: 'h' } }, ...direct], write, { after: '0-0', afterStored: true });
  const spool = await SpoolFile.create(fx.tmp.path, { version: 1, id, pid: process.pid, meta: { id } }, 'never');
  await spool.append([{ kind: 'after', id: '9-9' }, ...spooled.slice(0, 20)]);
  await spool.append([{ kind: 'after', id: '29-29' }, ...spooled.slice(20)]);
  await spool.close();
  await writeItems(fx.redis, id, spooled.slice(0, 26), write, { after: '9-9', afterStored: true });
  assert.deepEqual(await storedSeqs(fx.redis, id), upTo(35));

  const [up] = await uploadSpool(fx.tmp.path, { redis: fx.redis });
  assert.equal(up?.error, undefined);
  assert.equal(up?.state, 'interrupted');
  // 60 events and the `end` that marks the recording interrupted.
  assert.deepEqual(await storedSeqs(fx.redis, id), upTo(61));
  assert.equal((await readMeta(fx.redis, id))?.lastSeq, 61);
});

test('a write whose predecessor the stream lacks is refused, unless the predecessor was confirmed and Redis lost it', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `refused-gap-${process.pid}-${Date.now()}`;
  const write = { timeoutMs: 5000, retentionMs: undefined };
  const next = chainedEvents(id);
  const events = next(6, 10);
  await writeItems(fx.redis, id, events.slice(0, 2), write, { after: '0-0', afterStored: true });
  await assert.rejects(writeItems(fx.redis, id, events.slice(3), write, { after: '3-3', afterStored: false }), /PCGAP event 4-4 follows 3-3 but the stream ends at 2-2/);
  assert.deepEqual(await storedSeqs(fx.redis, id), [1, 2]);
  // Event 3 was confirmed, then lost (a failover to a replica behind): the rest follows the gap.
  const r = await writeItems(fx.redis, id, events.slice(3), write, { after: '3-3', afterStored: true });
  assert.deepEqual(r, { tail: '6-6', lostAfter: '2-2' });
  const seqs: number[] = [];
  for await (const e of readEntries(fx.redis, id)) seqs.push(e.seq);
  assert.deepEqual(seqs, [1, 2, 4, 5, 6]);
});
