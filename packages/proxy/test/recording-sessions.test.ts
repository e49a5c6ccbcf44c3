// Issue 5 end to end inside one process: stock ssh, sftp and a tmux pane as the user's
// terminal -> the proxy -> a real sshd, every session recorded to a real redis-server through
// the proxy's recording wiring (src/recording.ts). Only auth is a stand-in.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { run, tempDir } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { exportAsciicast, findRecordingsByCommand, verifyRecording } from '@portcullis/recording';
import type { RecordingEvent, SftpOperation } from '@portcullis/recording';
import { createProxyMetrics, localSignatureService, startSessionRecording } from '../src/index.js';
import type { ProxyAuditEvent, SessionRecording } from '../src/index.js';
import { access, exited, skipWithoutOpenSsh, startFixture } from './support/fixture.js';
import type { Fixture, Identity } from './support/fixture.js';
import {
  TmuxPane,
  comparable,
  finished,
  outputOf,
  recordedEvents,
  recordingOf,
  replayScreen,
  skipWithoutRecordingTools,
  startTestRedis,
  testRecordingKey,
  waitFor,
} from './support/recording.js';
import type { TestRedis } from './support/recording.js';

const skip = skipWithoutOpenSsh || skipWithoutRecordingTools;

describe('the proxy records every session', { skip }, () => {
  let dir: TempDir;
  let redis: TestRedis;
  let db: Redis;
  let recording: SessionRecording;
  let f: Fixture;
  let alice: Identity;
  let bob: Identity;
  const key = testRecordingKey();
  const recordingAudit: ProxyAuditEvent[] = [];
  const metrics = createProxyMetrics({ defaultMetrics: false });

  before(async () => {
    dir = tempDir('portcullis-proxy-rec-');
    redis = await startTestRedis(dir.file('redis'));
    db = redis.connect();
    recording = await startSessionRecording({
      redis: redis.connect(),
      spoolDir: dir.file('spool'),
      signatures: localSignatureService(key),
      audit: (e) => recordingAudit.push(e),
      registry: metrics.registry,
      retentionMs: 24 * 3600_000,
      // An outage is noticed in half a second, not two.
      tuning: { storeTimeoutMs: 500 },
    });
    f = await startFixture({
      users: [access('alice', { recordInput: true }), access('bob', { recordSession: 'strict' })],
      proxy: { tap: recording.tap, metrics },
    });
    alice = f.identity('alice');
    bob = f.identity('bob');
  });

  after(async () => {
    await f?.stop();
    await recording?.stop({ graceMs: 1_000 });
    await redis?.stop();
    dir?.remove();
  });

  test('a pty session typed in a terminal replays to the screen the user saw', async () => {
    const pane = await TmuxPane.start(
      'pc-rec-' + process.pid,
      ['ssh', ...f.sshOptions(alice), '-tt', '-p', String(f.proxy.port), 'root%web01@127.0.0.1'],
      { cols: 80, rows: 24 },
      dir.file('tmux.conf'),
    );
    try {
      await pane.type("PS1='pc\\$ '; printf '\\033[1;31mred\\033[0m and \\033[4munderlined\\033[0m\\n'; echo step-1");
      await pane.settle('step-1');
      await pane.type('seq 1 3000; echo step-2');
      await pane.settle('step-2');
      // The window changes size: a resize event, and programs redraw for the new size.
      await pane.resize(100, 30);
      await pane.type("stty size; printf 'a\\tb\\n'; tput cup 3 10; printf '\\033[7m(3,10)\\033[0m\\n'; echo step-3");
      await pane.settle('step-3');
      const live = await pane.screen();
      const meta = await recordingOf(db, 'alice', (m) => m.term !== undefined);
      assert.equal(meta.state, 'live');
      // What is stored is what the user sees, a few milliseconds later.
      const replayed = await waitFor('the replay to reach the screen', async () => {
        const s = comparable(await replayScreen(db, meta.id));
        return JSON.stringify(s) === JSON.stringify({ cols: live.cols, rows: live.rows, lines: live.lines, cursor: live.cursor }) ? s : undefined;
      }).catch(async (e: unknown) => {
        assert.deepEqual(comparable(await replayScreen(db, meta.id)), { cols: live.cols, rows: live.rows, lines: live.lines, cursor: live.cursor });
        throw e;
      });
      assert.equal(replayed.cols, 100);
      assert.ok(live.lines.some((l) => l.includes('30 100')), 'stty saw the new size');

      await pane.type('exit');
      const done = await finished(db, meta.id);
      const last = await pane.settle(/./);
      assert.equal(last.dead, true, 'ssh has exited');
      assert.equal(done.state, 'ended');
      assert.equal(done.exitStatus, 0);
      assert.deepEqual(comparable(await replayScreen(db, meta.id)), { cols: last.cols, rows: last.rows, lines: last.lines, cursor: last.cursor });

      const { events, gaps } = await recordedEvents(db, meta.id);
      assert.equal(gaps, 0);
      assert.ok(events.some((e) => e.type === 'resize' && e.cols === 100 && e.rows === 30));
      assert.ok(events.some((e) => e.type === 'pty' && e.term === 'xterm-256color'));
      // alice's role records input: typed command lines are searchable.
      const found = await findRecordingsByCommand(db, 'seq 1 3000');
      assert.ok(found.some((m) => m.meta.id === meta.id));
      const report = await verifyRecording(db, meta.id, key.publicKey, nodeCrypto);
      assert.deepEqual(report.problems, []);

      // asciinema plays the export: `asciinema cat` prints exactly the recorded output.
      const cast = dir.file('session.cast');
      writeFileSync(cast, await exportAsciicast(db, meta.id));
      const cat = await run('script', ['-qec', `asciinema cat ${cast}`, '/dev/null'], { timeoutMs: 30_000 });
      assert.equal(cat.code, 0, cat.stderr);
      assert.ok(cat.stdoutBytes.equals(outputOf(events)), `asciinema cat printed ${cat.stdoutBytes.length} bytes, the recording holds ${outputOf(events).length}`);
    } finally {
      await pane.kill();
    }
  });

  test('an exec session records its command, stdout and stderr apart, and the exit status', async () => {
    const r = await f.ssh({ user: 'root%web01', as: alice, command: 'echo to-stdout; echo to-stderr >&2; exit 3' });
    assert.equal(r.code, 3);
    const meta = await recordingOf(db, 'alice', (m) => m.command?.includes('to-stdout') === true);
    const done = await finished(db, meta.id);
    assert.equal(done.exitStatus, 3);
    assert.equal(done.login, 'root');
    assert.equal(done.host, 'web01.example.test');
    const { events } = await recordedEvents(db, meta.id);
    assert.equal(outputOf(events, 0).toString(), 'to-stdout\n');
    assert.equal(outputOf(events, 1).toString(), 'to-stderr\n');
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 2), ['channel', 'exec']);
    assert.ok(events.some((e) => e.type === 'exit' && e.status === 3));
    assert.equal(types.at(-1), 'end');
    assert.equal((await verifyRecording(db, meta.id, key.publicKey, nodeCrypto)).ok, true);
  });

  test('an sftp upload records the path and the size written', async () => {
    const local = dir.file('upload.bin');
    const size = 3 * 1024 * 1024 + 17;
    writeFileSync(local, randomBytes(size));
    const remote = `/tmp/pc-rec-upload-${process.pid}.bin`;
    const batch = dir.file('sftp.batch');
    writeFileSync(batch, `put ${local} ${remote}\nrm ${remote}\n`);
    const r = await run('sftp', [...f.sshOptions(alice), '-P', String(f.proxy.port), '-b', batch, 'root%web01@127.0.0.1'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const meta = await recordingOf(db, 'alice', (m) => m.command === 'subsystem:sftp');
    await finished(db, meta.id);
    const { events } = await recordedEvents(db, meta.id);
    const ops = events.flatMap((e) => (e.type === 'sftp' ? [e.op] : [])) as SftpOperation[];
    assert.ok(ops.some((o) => o.op === 'open' && o.path === remote && o.ok && o.flags.includes('write')), JSON.stringify(ops));
    assert.ok(ops.some((o) => o.op === 'write' && o.path === remote && o.bytes === size && o.complete), JSON.stringify(ops));
    assert.ok(ops.some((o) => o.op === 'remove' && o.path === remote && o.ok));
    // The file's bytes are not stored, only what happened to it.
    assert.ok(outputOf(events).length < 64 * 1024);
  });

  test('best effort: Redis stopped mid-session loses no event once it is back', async () => {
    const before = recordingAudit.length;
    // About 50 KiB over three seconds, through the outage.
    const ssh = f.spawnSsh({ user: 'root%web01', as: alice, command: 'for i in $(seq 1 300); do printf "line %04d %0150d\\n" $i 0; sleep 0.01; done; exit 7' });
    const meta = await recordingOf(db, 'alice', (m) => m.command?.startsWith('for i in') === true && m.state === 'live');
    await sleep(500);
    await redis.down();
    await sleep(1_500);
    await redis.up();
    const code = await exited(ssh);
    assert.equal(code, 7, ssh.output().stderr);
    const received = Buffer.from(ssh.output().stdout);
    assert.equal(received.length, 300 * 161);
    const done = await finished(db, meta.id, 30_000);
    assert.equal(done.state, 'ended');
    assert.equal(done.lostEvents, 0);
    const { events, gaps } = await recordedEvents(db, meta.id);
    assert.equal(gaps, 0, 'no sequence number is missing');
    const stored = outputOf(events);
    assert.equal(stored.length, received.length, 'every byte the client received is in the recording');
    assert.ok(stored.equals(received), 'in the same order');
    assert.deepEqual((await verifyRecording(db, meta.id, key.publicKey, nodeCrypto)).problems, []);
    const kinds = recordingAudit.slice(before).map((e) => `${String(e.fields['kind'])}/${String(e.fields['action'])}`);
    assert.ok(kinds.includes('redis-unreachable/spooling') || kinds.includes('redis-error/spooling'), kinds.join(' '));
    assert.ok(kinds.includes('recovered/drained'), kinds.join(' '));
    assert.equal(recordingAudit.slice(before)[0]?.fields['user'], 'alice');
    // The spool file went away once drained.
    await waitFor('the spool to drain', () => (readdirSync(dir.file('spool')).length === 0 ? true : undefined));
    const metrics = await f.proxy.metrics.text();
    assert.match(metrics, /recording_events_spooled_total [1-9]/);
  });

  test('strict: the session ends with a message when Redis cannot store its events', async () => {
    const ssh = f.spawnSsh({ user: 'root%web01', as: bob, command: 'for i in $(seq 1 600); do echo line $i; sleep 0.01; done' });
    const meta = await recordingOf(db, 'bob', (m) => m.state === 'live');
    await waitFor('output', () => (ssh.output().stdout.includes('line 20') ? true : undefined));
    await redis.down();
    const code = await exited(ssh);
    const { stdout, stderr } = ssh.output();
    assert.notEqual(code, 0);
    assert.match(stderr, /portcullis: the session recording failed .*the session cannot continue/);
    assert.ok(!stdout.includes('line 600'), 'the command did not run to its end');
    assert.equal(f.audit.filter((e) => e.name === 'session.terminated' && e.fields['reason'] === 'recording').length, 1);
    await redis.up();
    // Not silently short: the next spool pass finishes it as interrupted, signed.
    await recording.uploadSpool();
    const done = await finished(db, meta.id);
    assert.equal(done.state, 'interrupted');
    assert.ok(existsSync(dir.file('spool')));
    const { events } = await recordedEvents(db, meta.id);
    const end = events.at(-1) as RecordingEvent & { type: 'end' };
    assert.equal(end.type, 'end');
    assert.equal(end.interrupted, true);
    assert.deepEqual((await verifyRecording(db, meta.id, key.publicKey, nodeCrypto)).problems, []);
  });
});
