import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { generateKey, keySigner } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { hasTool } from '@portcullis/harness';
import { RecordingCounters } from '../src/health.js';
import { Recorder } from '../src/recorder.js';
import { readRecordingEvents } from '../src/replay.js';
import { parseSpool, readSpoolFile, spoolPath } from '../src/spool.js';
import { readMeta } from '../src/store.js';
import { uploadSpool } from '../src/upload.js';
import { verifyRecording } from '../src/verify.js';
import { enc, redisFixture, sessionMeta } from './fixture.js';

const skip = !hasTool('redis-server') && 'redis-server is not installed';
const CHILD = fileURLToPath(new URL('./child-recorder.ts', import.meta.url));

test('a recorder killed mid-session: the next start uploads its spool and marks the recording interrupted', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const id = `killed-${process.pid}-${Date.now()}`;
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, fx.server.url, fx.tmp.path, id], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  let confirmed = 0;
  const waiters: [number, () => void][] = [];
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (s: string) => {
    for (const m of s.matchAll(/stored (\d+)/g)) confirmed = Number(m[1]);
    for (const [n, resolve] of waiters) if (confirmed >= n) resolve();
  });
  const reach = (n: number) => new Promise<void>((resolve) => (confirmed >= n ? resolve() : waiters.push([n, resolve])));

  await reach(200);
  // Redis goes away: the child keeps recording into its spool file...
  await fx.server.stop();
  const atStop = confirmed;
  await reach(atStop + 200);
  // ...and dies without a chance to clean up.
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const lastConfirmed = confirmed;
  assert.ok(existsSync(spoolPath(fx.tmp.path, id)), 'the spool file is left behind');

  await fx.restart();
  const signer = keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
  const metrics = new RecordingCounters();
  const results = await uploadSpool(fx.tmp.path, { redis: fx.redis, signer, metrics });
  assert.equal(results.length, 1);
  const r = results[0]!;
  assert.equal(r.error, undefined);
  assert.equal(r.state, 'interrupted');
  assert.ok(r.uploadedEvents > 0);
  assert.equal(metrics.get('recording_spool_uploads_total', { state: 'interrupted' }), 1);
  assert.deepEqual(readdirSync(fx.tmp.path).filter((f) => f.endsWith('.spool')), []);

  const meta = await readMeta(fx.redis, id);
  assert.equal(meta?.state, 'interrupted');
  assert.equal(meta?.user, 'carol');
  assert.equal(meta?.command, 'journalctl -f');
  const entries: string[] = [];
  let last = '';
  let gaps = 0;
  for await (const item of readRecordingEvents(fx.redis, id)) {
    if (item.kind === 'gap') gaps++;
    if (item.kind !== 'event') continue;
    if (item.event.type === 'output') entries.push(...new TextDecoder().decode(item.event.data).split('\n').filter(Boolean));
    last = item.event.type === 'end' ? `end ${item.event.interrupted}` : item.event.type;
  }
  assert.equal(gaps, 0);
  assert.equal(last, 'end true');
  // Everything the child had confirmed (in Redis before the stop, in the spool after) is there, in order.
  assert.ok(entries.length >= lastConfirmed, `${entries.length} entries, ${lastConfirmed} confirmed`);
  assert.ok(entries.every((e, i) => e === `entry ${i}`));
  const report = await verifyRecording(fx.redis, id, signer.publicKey, nodeCrypto);
  assert.deepEqual(report.problems, []);

  // Uploading again finds nothing to do.
  assert.deepEqual(await uploadSpool(fx.tmp.path, { redis: fx.redis }), []);
});

test('spool: a live recorder\'s file is left alone; a torn tail is ignored; garbage is not uploaded', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const rec = new Recorder({ redis: fx.redis, mode: 'best-effort', spoolDir: fx.tmp.path });
  const meta = sessionMeta();
  await rec.start(meta);
  await rec.output(0, 0, enc('hello'));
  const results = await uploadSpool(fx.tmp.path, { redis: fx.redis });
  assert.deepEqual(results.map((r) => [r.id, r.skipped]), [[meta.sessionId, 'live']]);
  await rec.end({ bytesIn: 0, bytesOut: 5, reason: 'done' });
  await rec.drained();

  // A file cut in the middle of a record (a crash during a write): whole records are uploaded.
  const cut = sessionMeta();
  const rec2 = new Recorder({ redis: fx.redis, mode: 'best-effort', spoolDir: fx.tmp.path });
  await rec2.start(cut);
  await fx.redis.config('SET', 'maxmemory', '1');
  for (let i = 0; i < 5; i++) {
    await rec2.output(0, 0, enc(`chunk ${i}\r\n`));
    await rec2.flush(); // one event per flush, each its own spool record
  }
  await rec2.stop();
  await fx.redis.config('SET', 'maxmemory', '0');
  const path = spoolPath(fx.tmp.path, cut.sessionId);
  const whole = readSpoolFile(path);
  assert.equal(whole.tornBytes, 0);
  assert.equal(whole.items.filter((i) => i.kind === 'event').length, 5);
  truncateSync(path, statSync(path).size - 3);
  const torn = parseSpool(new Uint8Array(readFileSync(path)));
  assert.equal(torn.items.filter((i) => i.kind === 'event').length, 4);
  const up = await uploadSpool(fx.tmp.path, { redis: fx.redis });
  assert.deepEqual(up.map((r) => [r.state, r.uploadedEvents, r.tornBytes > 0]), [['interrupted', 4, true]]);
  let text = '';
  for await (const item of readRecordingEvents(fx.redis, cut.sessionId)) if (item.kind === 'event' && item.event.type === 'output') text += new TextDecoder().decode(item.event.data);
  assert.equal(text, 'chunk 0\r\nchunk 1\r\nchunk 2\r\nchunk 3\r\n');

  writeFileSync(`${fx.tmp.path}/not-a-recording.spool`, 'garbage');
  const r2 = await uploadSpool(fx.tmp.path, { redis: fx.redis });
  assert.deepEqual(r2.map((r) => [r.id, r.skipped]), [['not-a-recording', 'unreadable']]);
});
