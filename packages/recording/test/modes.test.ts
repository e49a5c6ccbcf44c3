import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { generateKey, keySigner } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { hasTool } from '@portcullis/harness';
import { isRecordingError } from '../src/errors.js';
import { RecordingCounters, type RecordingTrouble } from '../src/health.js';
import { Recorder } from '../src/recorder.js';
import { readRecordingEvents } from '../src/replay.js';
import { spoolPath } from '../src/spool.js';
import { readMeta } from '../src/store.js';
import { verifyRecording } from '../src/verify.js';
import { enc, redisFixture, sessionMeta, sleep, type RedisFixture } from './fixture.js';

const skip = !hasTool('redis-server') && 'redis-server is not installed';

/** Output bytes and sequence numbers as stored: what a replay would get. */
async function stored(fx: RedisFixture, id: string): Promise<{ bytes: number; seqs: number[]; text: string; types: string[]; gaps: number }> {
  let bytes = 0;
  let gaps = 0;
  const seqs: number[] = [];
  const types: string[] = [];
  let text = '';
  for await (const item of readRecordingEvents(fx.redis, id)) {
    if (item.kind === 'gap') gaps++;
    if (item.kind !== 'event') continue;
    seqs.push(item.event.seq);
    types.push(item.event.type);
    if (item.event.type === 'output') {
      bytes += item.event.data.length;
      text += new TextDecoder().decode(item.event.data);
    }
  }
  return { bytes, seqs, text, types, gaps };
}

function contiguous(seqs: readonly number[]): boolean {
  return seqs.every((s, i) => s === i + 1);
}

/** Writes numbered lines until `until` resolves or `max` lines; returns how many bytes went out. */
async function writeLines(rec: Recorder, from: number, count: number, pauseEvery = 20): Promise<{ bytes: number; next: number }> {
  let bytes = 0;
  for (let i = from; i < from + count; i++) {
    const line = enc(`line ${String(i).padStart(6, '0')} ${'.'.repeat(50)}\r\n`);
    await rec.output(0, 0, line);
    bytes += line.length;
    if (i % pauseEvery === 0) await sleep(5);
  }
  return { bytes, next: from + count };
}

test('best effort: Redis stopped mid-session, events spool to disk and drain in order; nothing lost', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const troubles: RecordingTrouble[] = [];
  const metrics = new RecordingCounters();
  const signer = keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
  const rec = new Recorder({
    redis: fx.redis,
    mode: 'best-effort',
    spoolDir: fx.tmp.path,
    storeTimeoutMs: 300,
    signer,
    onTrouble: (x) => troubles.push(x),
    metrics,
  });
  const meta = sessionMeta();
  await rec.start(meta);
  await rec.event({ type: 'pty', channel: 0, term: 'xterm', cols: 80, rows: 24 });
  await rec.event({ type: 'shell', channel: 0 });
  let sent = 0;
  let w = await writeLines(rec, 0, 300);
  sent += w.bytes;
  await rec.flush();

  await fx.server.stop();
  w = await writeLines(rec, w.next, 600);
  sent += w.bytes;
  await rec.flush();
  // The session was never slowed down or refused: every call returned, the events are on disk.
  assert.ok(troubles.some((x) => x.kind === 'redis-unreachable' && x.action === 'spooling'), JSON.stringify(troubles));
  assert.ok(metrics.get('recording_events_spooled_total') > 0);

  await fx.restart();
  w = await writeLines(rec, w.next, 300);
  sent += w.bytes;
  await rec.event({ type: 'exit', channel: 0, status: 0 });
  await rec.end({ bytesIn: 0, bytesOut: sent, reason: 'done' });
  await rec.drained();
  assert.ok(troubles.some((x) => x.kind === 'recovered'), JSON.stringify(troubles.map((x) => x.kind)));

  const got = await stored(fx, meta.sessionId);
  assert.equal(got.bytes, sent, 'every output byte the client got is in the recording');
  assert.ok(contiguous(got.seqs), 'no sequence number is missing');
  const lines = got.text.split('\r\n').filter(Boolean);
  assert.equal(lines.length, 1200);
  assert.ok(lines.every((l, i) => l.startsWith(`line ${String(i).padStart(6, '0')} `)), 'in order');
  assert.equal((await readMeta(fx.redis, meta.sessionId))?.state, 'ended');
  assert.equal(existsSync(spoolPath(fx.tmp.path, meta.sessionId)), false, 'the spool file is gone once drained');
  const report = await verifyRecording(fx.redis, meta.sessionId, signer.publicKey, nodeCrypto);
  assert.deepEqual(report.problems, []);
});

test('strict: Redis stopped mid-session rejects the tap, so the proxy ends the session', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const troubles: RecordingTrouble[] = [];
  const rec = new Recorder({ redis: fx.redis, mode: 'strict', spoolDir: fx.tmp.path, storeTimeoutMs: 300, onTrouble: (x) => troubles.push(x) });
  const meta = sessionMeta();
  await rec.start(meta);
  await rec.event({ type: 'exec', channel: 0, command: 'tail -f /var/log/syslog' });
  await writeLines(rec, 0, 50);
  await rec.flush();
  await fx.server.stop();
  let rejected: unknown;
  try {
    for (let i = 0; i < 2000 && rejected === undefined; i++) {
      await rec.output(0, 0, enc(`more ${i}\n`));
      if (i % 10 === 0) await sleep(10);
    }
  } catch (e) {
    rejected = e;
  }
  assert.ok(isRecordingError(rejected, 'ERR_NOT_STORED'), String(rejected));
  assert.match((rejected as Error).message, /strict recording ends the session/);
  assert.deepEqual(
    troubles.map((x) => [x.kind, x.action]),
    [['redis-unreachable', 'session-ended']],
  );
  // Every later call says the same, and so does end().
  await assert.rejects(async () => rec.output(0, 0, enc('x')), /could not be recorded/);
  await assert.rejects(rec.end({ bytesIn: 0, bytesOut: 0, reason: 'recording failed' }), /could not be recorded/);

  // A strict session also cannot start without Redis.
  const rec2 = new Recorder({ redis: fx.redis, mode: 'strict', spoolDir: fx.tmp.path, storeTimeoutMs: 300 });
  await assert.rejects(rec2.start(sessionMeta()), (e) => isRecordingError(e, 'ERR_NOT_STORED'));
});

test('Redis out of memory: strict ends the session, best effort spools and drains once memory is freed', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const troubles: RecordingTrouble[] = [];
  const metrics = new RecordingCounters();
  const opts = { redis: fx.redis, spoolDir: fx.tmp.path, onTrouble: (x: RecordingTrouble) => troubles.push(x), metrics };
  const strict = new Recorder({ ...opts, mode: 'strict' });
  const lax = new Recorder({ ...opts, mode: 'best-effort' });
  const a = sessionMeta();
  const b = sessionMeta();
  await strict.start(a);
  await lax.start(b);
  await fx.redis.config('SET', 'maxmemory', '1');
  await strict.output(0, 0, enc('one line\r\n'));
  await assert.rejects(strict.flush(), /redis-oom: OOM command not allowed/);
  let sent = 0;
  for (let i = 0; i < 100; i++) {
    const line = enc(`oom ${i}\r\n`);
    await lax.output(0, 0, line);
    sent += line.length;
  }
  await lax.flush();
  assert.deepEqual(
    troubles.map((x) => [x.sessionId === a.sessionId ? 'strict' : 'best-effort', x.kind, x.action]),
    [
      ['strict', 'redis-oom', 'session-ended'],
      ['best-effort', 'redis-oom', 'spooling'],
    ],
  );
  assert.equal(metrics.get('recording_store_failures_total', { reason: 'redis-oom' }), 2);
  await fx.redis.config('SET', 'maxmemory', '0');
  await lax.end({ bytesIn: 0, bytesOut: sent, reason: 'done' });
  await lax.drained();
  const got = await stored(fx, b.sessionId);
  assert.equal(got.bytes, sent);
  assert.ok(contiguous(got.seqs));
});

/** A 64 KiB tmpfs: a real full disk. Needs root (or CAP_SYS_ADMIN); skipped otherwise. */
function smallDisk(dir: string): boolean {
  mkdirSync(dir);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('best effort with Redis out of memory and a full spool disk: held, then dropped and said so', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const disk = fx.tmp.file('spool');
  if (!smallDisk(disk)) {
    t.skip('cannot mount a tmpfs here (needs root)');
    return;
  }
  try {
    await fullDiskSession(fx, disk);
  } finally {
    // Lazily when the spool file is still open (EBUSY): a test must not leave a mount behind,
    // and a failing umount here used to hide the test's own failure and keep the mount.
    try {
      execFileSync('umount', [disk], { stdio: 'ignore' });
    } catch {
      execFileSync('umount', ['-l', disk], { stdio: 'ignore' });
    }
  }
});

async function fullDiskSession(fx: RedisFixture, disk: string): Promise<void> {
  const troubles: RecordingTrouble[] = [];
  const metrics = new RecordingCounters();
  const rec = new Recorder({
    redis: fx.redis,
    mode: 'best-effort',
    spoolDir: disk,
    maxHeldBytes: 48 * 1024,
    onTrouble: (x) => troubles.push(x),
    metrics,
  });
  const meta = sessionMeta();
  await rec.start(meta);
  await fx.redis.config('SET', 'maxmemory', '1');
  let sent = 0;
  for (let i = 0; i < 4000; i++) {
    const line = enc(`full ${String(i).padStart(5, '0')} ${'#'.repeat(40)}\r\n`);
    // Never blocks: a broken disk must not freeze the session.
    const r = rec.output(0, 0, line);
    assert.equal(r, undefined);
    sent += line.length;
    if (i % 50 === 0) await rec.flush();
  }
  await rec.flush();
  const kinds = [...new Set(troubles.map((x) => `${x.kind}/${x.action}`))];
  assert.deepEqual(kinds, ['redis-oom/spooling', 'disk-full/holding-in-memory', 'events-lost/dropping']);
  assert.ok(metrics.get('recording_store_failures_total', { reason: 'disk-full' }) >= 1);
  const lost = metrics.get('recording_events_lost_total');
  assert.ok(lost > 0 && rec.lostEvents === lost);

  await fx.redis.config('SET', 'maxmemory', '0');
  await rec.end({ bytesIn: 0, bytesOut: sent, reason: 'done' });
  await rec.drained();
  const got = await stored(fx, meta.sessionId);
  // Everything not dropped arrived; the loss is in the recording itself and its metadata.
  assert.ok(got.bytes < sent && got.bytes > 0);
  assert.ok(got.gaps > 0, 'the dropped events show as a gap in the sequence');
  assert.equal(got.types.at(-2), 'lost');
  const m = await readMeta(fx.redis, meta.sessionId);
  assert.equal(m?.lostEvents, lost);
  assert.equal(m?.state, 'ended');
}
