import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasTool } from '@portcullis/harness';
import { isRecordingError } from '../src/errors.js';
import { NO_METRICS, RecordingCounters } from '../src/health.js';
import type { RecordingMode } from '../src/model.js';
import { RecordingSink } from '../src/sink.js';
import { SpoolFile } from '../src/spool.js';
import type { RedisClient, StoreItem } from '../src/store.js';
import { chainedEvents, storedSeqs, upTo } from './chain.js';
import { redisFixture, sleep, type RedisFixture } from './fixture.js';

// The sink keeps several batches unanswered at once; these tests hold Redis still (CLIENT PAUSE)
// so that batches pile up in flight, then check what lands, and in which order.

const skip = !hasTool('redis-server') && 'redis-server is not installed';

/** Output events numbered from 1, chained as the recorder chains them; three in four bulk-sized. */
function eventSource(id: string): (n: number) => StoreItem[] {
  const next = chainedEvents(id);
  // Bulk events (>= 64 KiB) go as commands of their own, small ones in a pipeline: mixing
  // them checks that no batch's writes overtake an earlier batch's.
  return (n) => next(n, (seq) => (seq % 4 === 0 ? 40 : 100 * 1024));
}

function sink(redis: RedisClient, id: string, mode: RecordingMode, spool?: SpoolFile, metrics = NO_METRICS): RecordingSink {
  return new RecordingSink({
    redis,
    id,
    mode,
    spool,
    retentionMs: undefined,
    timeoutMs: 500,
    highWaterBytes: 64 * 1024 * 1024,
    maxHeldBytes: 64 * 1024 * 1024,
    onTrouble: () => {},
    metrics,
  });
}

/** Enqueues while Redis is paused until `inFlight` batches are unanswered; returns how many events. */
async function fillPipeline(fx: RedisFixture, s: RecordingSink, next: (n: number) => StoreItem[], inFlight: number): Promise<number> {
  const admin = fx.connect();
  await admin.call('CLIENT', 'PAUSE', '400', 'WRITE');
  let n = 0;
  while (s.inFlight < inFlight) {
    for (const item of next(7)) s.enqueue(item);
    n += 7;
    // Let each enqueue's batch leave on its own, so several are out at once.
    await sleep(1);
  }
  // More behind them, queued while all are in flight: several batches' worth (IN_FLIGHT_BYTES).
  for (const item of next(200)) s.enqueue(item);
  return n + 200;
}

test('pipelined sink: batches in flight together land in order, contiguous, the chain intact', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `pipe-order-${process.pid}-${Date.now()}`;
  const metrics = new RecordingCounters();
  const s = sink(fx.redis, id, 'best-effort', undefined, metrics);
  const next = eventSource(id);
  let sent = 0;
  for (let round = 0; round < 3; round++) {
    sent += await fillPipeline(fx, s, next, 4);
    assert.equal(s.inFlight, 4, 'four batches out at once while Redis is paused');
    await s.flush();
    assert.equal(s.inFlight, 0);
  }
  assert.deepEqual(await storedSeqs(fx.redis, id), upTo(sent));
  assert.equal(metrics.get('recording_events_stored_total'), sent);
  assert.equal(metrics.get('recording_events_spooled_total'), 0);
});

test('pipelined sink, best effort: Redis stopped with batches in flight; they and later events spool, then drain in order; nothing lost', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `pipe-spool-${process.pid}-${Date.now()}`;
  const metrics = new RecordingCounters();
  const spool = await SpoolFile.create(fx.tmp.path, { version: 1, id, pid: process.pid, meta: { id } }, 'never');
  const s = sink(fx.redis, id, 'best-effort', spool, metrics);
  const next = eventSource(id);
  for (const item of next(20)) s.enqueue(item);
  await s.flush();
  let sent = 20 + (await fillPipeline(fx, s, next, 4));
  await fx.server.stop();
  for (const item of next(100)) s.enqueue(item);
  sent += 100;
  await s.flush();
  assert.ok(metrics.get('recording_events_spooled_total') > 0, 'the batches in flight went to the spool');
  await fx.restart();
  for (const item of next(30)) s.enqueue(item);
  sent += 30;
  s.finish();
  await s.drained();
  assert.deepEqual(await storedSeqs(fx.redis, id), upTo(sent));
});

test('pipelined sink, strict: Redis stopped with batches in flight ends the recording; what is stored is a prefix', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `pipe-strict-${process.pid}-${Date.now()}`;
  const s = sink(fx.redis, id, 'strict');
  const next = eventSource(id);
  for (const item of next(20)) s.enqueue(item);
  await s.flush();
  await fillPipeline(fx, s, next, 4);
  await fx.server.stop();
  await assert.rejects(s.flush(), (e) => isRecordingError(e) && e.code === 'ERR_NOT_STORED');
  assert.equal(s.inFlight, 0);
  await assert.rejects(s.pressure() ?? Promise.resolve(), (e) => isRecordingError(e) && e.code === 'ERR_NOT_STORED');
  await fx.restart();
  const seqs = await storedSeqs(fx.redis, id);
  assert.ok(seqs.length >= 20, `the events confirmed before the failure are stored (${seqs.length})`);
  assert.deepEqual(seqs, upTo(seqs.length), 'no gap: later batches never landed ahead of a failed one');
});
