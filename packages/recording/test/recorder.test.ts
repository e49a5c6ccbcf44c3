import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasTool } from '@portcullis/harness';
import { RecordingCounters } from '../src/health.js';
import { indexKeys, recordingKeys } from '../src/keys.js';
import { Recorder } from '../src/recorder.js';
import { readRecordingEvents } from '../src/replay.js';
import { findRecordingsByCommand, listRecordings, pruneRecordingIndexes } from '../src/search.js';
import { readMeta } from '../src/store.js';
import { TerminalScreen } from '../src/screen.js';
import { followRecording } from '../src/follow.js';
import { enc, manualClock, redisFixture, renderReplay, sessionMeta } from './fixture.js';
import { interactiveScript, playScript } from './session-script.js';

const skip = !hasTool('redis-server') && 'redis-server is not installed';

test('interactive session: replay from the start and from a seek both end on the client\'s screen', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const clock = manualClock();
  const metrics = new RecordingCounters();
  const rec = new Recorder({
    redis: fx.redis,
    mode: 'strict',
    spoolDir: fx.tmp.path,
    recordInput: true,
    retentionMs: 7 * 24 * 3600_000,
    now: clock.now,
    snapshotBytes: 64 * 1024,
    metrics,
  });
  const meta = sessionMeta();
  await rec.start(meta);
  const played = await playScript(rec, interactiveScript(), clock.advance);
  await rec.end({ bytesIn: played.bytesIn, bytesOut: played.bytesOut, reason: 'client closed the connection' });
  await rec.drained();
  const want = await played.screen.text();
  played.screen.dispose();

  const stored = await readMeta(fx.redis, meta.sessionId);
  assert.ok(stored);
  assert.equal(stored.state, 'ended');
  assert.equal(stored.user, 'alice');
  assert.equal(stored.certSerial, '18446744073709551615');
  assert.equal(stored.term, 'xterm-256color');
  assert.deepEqual([stored.cols, stored.rows], [80, 24]);
  assert.equal(stored.exitStatus, 0);
  assert.equal(stored.bytesOut, played.bytesOut);
  assert.equal(stored.command, undefined, 'a login shell has no command');
  assert.ok(stored.endedAt! > stored.startedAt);

  const full = await renderReplay(readRecordingEvents(fx.redis, meta.sessionId), 80, 24);
  assert.equal(full.gaps, 0);
  assert.equal(full.fromScreen, false);
  assert.deepEqual(full.text, want);
  assert.equal(full.events, stored.lastSeq);
  // Output was coalesced: far fewer events than the relay's writes (one per typed character).
  assert.ok(stored.lastSeq < 500, `${stored.lastSeq} events`);
  assert.equal(metrics.get('recording_events_stored_total'), stored.lastSeq);

  // Snapshots were taken (the flood is over 64 KiB); a seek starts from one and ends the same.
  const snaps = await fx.redis.zcard(recordingKeys(meta.sessionId).snapshots);
  assert.ok(snaps >= 3, `${snaps} snapshots`);
  const end = stored.endedAt! - stored.startedAt;
  const seek = await renderReplay(readRecordingEvents(fx.redis, meta.sessionId, { fromMs: end - 5 }), 80, 24);
  assert.equal(seek.fromScreen, true);
  assert.ok(seek.events < full.events, `seek replayed ${seek.events} of ${full.events}`);
  assert.deepEqual(seek.text, want);

  // Retention: every key of the recording expires.
  for (const key of Object.values(recordingKeys(meta.sessionId))) {
    const ttl = await fx.redis.pttl(key);
    assert.ok(ttl > 6 * 24 * 3600_000, `${key} ttl ${ttl}`);
  }

  // Typed command lines are searchable: corrected by backspace, killed line and password left out.
  const found = await findRecordingsByCommand(fx.redis, 'echo hello');
  assert.deepEqual(found.map((f) => [f.meta.id, f.commands]), [[meta.sessionId, ['echo hello']]]);
  assert.deepEqual(await findRecordingsByCommand(fx.redis, 'rm -rf'), []);
  assert.equal((await findRecordingsByCommand(fx.redis, 'SYSTEMCTL restart')).length, 1);
});

test('exec session: command, stdout and stderr, exit status; listed by user, host, login and time', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const clock = manualClock();
  const mk = (over: Parameters<typeof sessionMeta>[0]) => ({ rec: new Recorder({ redis: fx.redis, mode: 'best-effort', spoolDir: fx.tmp.path, now: clock.now }), meta: sessionMeta(over) });
  const a = mk({ user: 'alice', host: 'db01', login: 'postgres' });
  await a.rec.start(a.meta);
  await a.rec.event({ type: 'open', channel: 3, kind: 'session' });
  await a.rec.event({ type: 'exec', channel: 3, command: 'pg_dump --schema-only app' });
  clock.advance(120);
  await a.rec.output(3, 0, enc('CREATE TABLE users (id int);\n'));
  await a.rec.output(3, 1, enc('pg_dump: warning: something\n'));
  clock.advance(30);
  await a.rec.output(3, 0, enc('CREATE TABLE orders (id int);\n'));
  await a.rec.event({ type: 'exit', channel: 3, status: 2 });
  await a.rec.event({ type: 'close', channel: 3 });
  await a.rec.end({ bytesIn: 0, bytesOut: 87, reason: 'exec finished' });

  const events = [];
  for await (const item of readRecordingEvents(fx.redis, a.meta.sessionId)) if (item.kind === 'event') events.push(item.event);
  const summary = events.map((e) =>
    e.type === 'output' ? `${e.t} out${e.stream} ${new TextDecoder().decode(e.data)}` : `${e.t} ${e.type}${'command' in e ? ` ${e.command}` : ''}${'status' in e ? ` ${e.status}` : ''}`,
  );
  assert.deepEqual(summary, [
    '0 channel',
    '0 exec pg_dump --schema-only app',
    '120 out0 CREATE TABLE users (id int);\n',
    '120 out1 pg_dump: warning: something\n',
    '150 out0 CREATE TABLE orders (id int);\n',
    '150 exit 2',
    '150 close',
    '150 end',
  ]);
  const meta = await readMeta(fx.redis, a.meta.sessionId);
  assert.equal(meta?.command, 'pg_dump --schema-only app');
  assert.equal(meta?.exitStatus, 2);
  assert.equal(meta?.inputRecorded, false);

  clock.advance(60_000);
  const b = mk({ user: 'bob', host: 'db01', login: 'ubuntu' });
  await b.rec.start(b.meta);
  await b.rec.event({ type: 'exec', channel: 0, command: 'uptime' });
  await b.rec.end({ bytesIn: 0, bytesOut: 0, reason: 'done' });
  clock.advance(60_000);
  const c = mk({ user: 'alice', host: 'web02', login: 'ubuntu' });
  await c.rec.start(c.meta);
  // Left live: listings include sessions in progress.

  const ids = (l: { id: string }[]) => l.map((m) => m.id);
  assert.deepEqual(ids(await listRecordings(fx.redis)), [c.meta.sessionId, b.meta.sessionId, a.meta.sessionId]);
  assert.deepEqual(ids(await listRecordings(fx.redis, { user: 'alice' })), [c.meta.sessionId, a.meta.sessionId]);
  assert.deepEqual(ids(await listRecordings(fx.redis, { host: 'db01' })), [b.meta.sessionId, a.meta.sessionId]);
  assert.deepEqual(ids(await listRecordings(fx.redis, { login: 'ubuntu', user: 'bob' })), [b.meta.sessionId]);
  assert.deepEqual(ids(await listRecordings(fx.redis, { state: 'live' })), [c.meta.sessionId]);
  const t0 = 1_700_000_000_000;
  assert.deepEqual(ids(await listRecordings(fx.redis, { from: t0 + 1000, to: t0 + 61_000 })), [b.meta.sessionId]);
  assert.deepEqual(ids(await listRecordings(fx.redis, { limit: 1 })), [c.meta.sessionId]);
  assert.deepEqual((await findRecordingsByCommand(fx.redis, 'PG_DUMP')).map((m) => m.meta.id), [a.meta.sessionId]);
  assert.deepEqual((await findRecordingsByCommand(fx.redis, 'up*')).map((m) => m.meta.id), [], 'glob characters match literally');

  // Retention of the indexes: entries of recordings that expired go, the rest stay.
  await fx.redis.del(...Object.values(recordingKeys(a.meta.sessionId)));
  const removed = await pruneRecordingIndexes(fx.redis, { retentionMs: 1000, now: t0 + 500_000 });
  assert.equal(removed, 5, 'by-time, by-user, by-host, by-login and one command');
  assert.deepEqual(ids(await listRecordings(fx.redis)), [c.meta.sessionId, b.meta.sessionId]);
  assert.equal(await fx.redis.zscore(indexKeys.byUser('alice'), a.meta.sessionId), null);
  await c.rec.end({ bytesIn: 0, bytesOut: 0, reason: 'done' });
});

test('live view: a second connection follows a session from its current screen to its end', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const clock = manualClock();
  const rec = new Recorder({ redis: fx.redis, mode: 'strict', spoolDir: fx.tmp.path, now: clock.now, snapshotBytes: 4096 });
  const meta = sessionMeta();
  const client = new TerminalScreen(40, 10);
  const output = async (s: string): Promise<void> => {
    client.write(s);
    await rec.output(0, 0, enc(s));
  };
  await rec.start(meta);
  await rec.event({ type: 'pty', channel: 0, term: 'xterm', cols: 40, rows: 10 });
  await rec.event({ type: 'shell', channel: 0 });
  // Enough output before the viewer joins for a snapshot: the viewer must not start blank.
  for (let i = 0; i < 200; i++) await output(`before ${i} ${'x'.repeat(20)}\r\n`);
  await output('$ ');
  // The snapshot is taken in the emulator's write callback and stored with the next flush:
  // wait for it to be in Redis rather than for a fixed time (the machine may be loaded).
  await until(async () => {
    await rec.flush();
    return (await fx.redis.zcard(recordingKeys(meta.sessionId).snapshots)) > 0;
  }, 'a snapshot is stored');

  const viewer = fx.connect();
  const seen: string[] = [];
  const follow = (async () => {
    const items = followRecording(viewer, meta.sessionId, { fromScreen: true, blockMs: 200 });
    const result = await renderReplay(
      (async function* () {
        for await (const item of items) {
          seen.push(item.kind === 'event' ? item.event.type : item.kind);
          yield item;
        }
      })(),
      40,
      10,
    );
    return result;
  })();
  await until(async () => seen.length > 0, 'the viewer sees something');
  assert.equal(seen[0], 'screen', 'the viewer starts from a snapshot');
  const before = seen.length;
  for (let i = 0; i < 5; i++) {
    await output(`live ${i}\r\n`);
    clock.advance(100);
    await new Promise((r) => setTimeout(r, 40));
  }
  assert.ok(seen.length >= before + 4, `the viewer saw events as they came (${seen.length - before})`);
  await rec.event({ type: 'resize', channel: 0, cols: 50, rows: 12 });
  client.resize(50, 12);
  await output('after resize\r\n$ ');
  await rec.end({ bytesIn: 0, bytesOut: 0, reason: 'done' });
  const result = await follow;
  assert.equal(seen[seen.length - 1], 'end');
  assert.equal(result.gaps, 0);
  assert.deepEqual(result.text, await client.text());
  assert.ok(result.text.lines.includes('after resize'));
  assert.equal(result.text.cols, 50);
  client.dispose();
});

/** Polls `check` every 20 ms until it holds, failing after 10 s with `what`. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
