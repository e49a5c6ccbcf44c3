// The proxy as a process (src/main.ts with a config file): killed with SIGKILL mid-session and
// restarted, it finishes the dead session's recording from its spool; a session running on it
// is watched live from another process through Redis alone.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { keySigner } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { tempDir } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';
import { recordingKeys, verifyRecording } from '@portcullis/recording';
import type { RecordingEvent } from '@portcullis/recording';
import { access, exited, skipWithoutOpenSsh, startFixture } from './support/fixture.js';
import type { Fixture, Identity } from './support/fixture.js';
import { newKey } from './support/authority.js';
import { startProxyProcess, writeProxyStateDir, writeStandInState } from './support/proxy-process.js';
import type { ProxyProcess } from './support/proxy-process.js';
import {
  TmuxPane,
  comparable,
  finished,
  outputOf,
  recordedEvents,
  recordingOf,
  skipWithoutRecordingTools,
  startTestRedis,
  waitFor,
  watch,
} from './support/recording.js';
import type { TestRedis } from './support/recording.js';

const skip = skipWithoutOpenSsh || skipWithoutRecordingTools;

describe('the proxy process', { skip }, () => {
  let dir: TempDir;
  let redis: TestRedis;
  let db: Redis;
  let f: Fixture;
  let alice: Identity;
  // auth's recording key, handed to the proxy processes' stand-in signer.
  const recordingKey = newKey();
  const key = keySigner(nodeCrypto, recordingKey);
  const children: ChildProcess[] = [];
  let statePath: string;

  before(async () => {
    dir = tempDir('portcullis-proxy-proc-');
    redis = await startTestRedis(dir.file('redis'));
    db = redis.connect();
    f = await startFixture({ users: [access('alice')] });
    alice = f.identity('alice');
    statePath = dir.file('stand-in.json');
    writeStandInState(statePath, f, recordingKey, [access('alice')]);
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await f?.stop();
    await redis?.stop();
    dir?.remove();
  });

  /** Starts `node main.ts` (through the stand-in wrapper) on a state directory. */
  async function startProxyOn(stateDir: string): Promise<ProxyProcess> {
    const config = writeProxyStateDir(stateDir, f, [
      'listen: 127.0.0.1:0',
      `redis: { url: "${redis.url}" }`,
      'recording: { upload_interval: 1s, retention: 1d }',
      'drain_grace: 1s',
    ]);
    const p = await startProxyProcess(f, statePath, config, /proxy: listening on 127\.0\.0\.1:(\d+)/, 30_000);
    children.push(p.child);
    return p;
  }

  test('SIGKILLed mid-session, restarted: the spool is uploaded and the recording marked interrupted', async () => {
    const stateDir = dir.file('proxy-a');
    const a = await startProxyOn(stateDir);
    const ssh = spawn('ssh', [...f.sshOptions(alice), '-p', String(a.port), 'root%web01@127.0.0.1', '--', 'for i in $(seq 1 3000); do echo "line $i"; sleep 0.003; done'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let received = '';
    ssh.stdout.on('data', (b: Buffer) => (received += b.toString()));
    const meta = await recordingOf(db, 'alice', (m) => m.command?.startsWith('for i in') === true);
    // Kill once the client is well past line 300 (~300 ms of output later): what the recorder
    // had not yet flushed when killed is the last 10 ms or so, which the 4 KiB bound allows for.
    await waitFor('output to flow', () => (received.includes('line 400\n') ? true : undefined));
    a.child.kill('SIGKILL');
    await exited(a.child);
    await exited(ssh);

    // The dead proxy left its spool file and a recording that still says live.
    assert.ok(existsSync(`${stateDir}/recordings/${meta.id}.spool`), readdirSync(`${stateDir}/recordings`).join(' '));
    assert.equal((await recordingOf(db, 'alice', (m) => m.id === meta.id)).state, 'live');

    const restarted = await startProxyOn(stateDir);
    const done = await finished(db, meta.id);
    assert.equal(done.state, 'interrupted');
    assert.equal(done.endReason, 'recorder stopped');
    assert.ok(done.signature !== undefined, 'signed when it was finished');
    assert.equal(existsSync(`${stateDir}/recordings/${meta.id}.spool`), false, 'the spool file is gone once uploaded');
    const { events, gaps } = await recordedEvents(db, meta.id);
    assert.equal(gaps, 0);
    const end = events.at(-1) as RecordingEvent & { type: 'end' };
    assert.equal(end.type, 'end');
    assert.equal(end.interrupted, true);
    assert.deepEqual((await verifyRecording(db, meta.id, key.publicKey, nodeCrypto)).problems, []);
    // What was recorded and what the client got agree up to the last few milliseconds of output
    // (the part a SIGKILL can take: output still being coalesced, or relayed but not yet stored).
    const stored = outputOf(events).toString();
    const common = stored.length <= received.length ? stored : received;
    assert.ok((stored.length <= received.length ? received : stored).startsWith(common), 'one is a prefix of the other');
    assert.ok(Math.abs(stored.length - received.length) < 4096, `recorded ${stored.length} bytes, the client got ${received.length}`);
    assert.ok(stored.includes('line 300\n'));
    // The restarted proxy said so in the audit log.
    await waitFor('the audit event', () => (restarted.stdout().includes('"kind":"interrupted"') ? true : undefined));
    restarted.child.kill('SIGTERM');
    assert.equal(await exited(restarted.child), 0, restarted.stderr());
  });

  test('a session on one proxy process is watched live from another process, starting from its screen', async () => {
    const a = await startProxyOn(dir.file('proxy-b'));
    const pane = await TmuxPane.start(
      'pc-live-' + process.pid,
      ['ssh', ...f.sshOptions(alice), '-tt', '-p', String(a.port), 'root%web01@127.0.0.1'],
      { cols: 80, rows: 24 },
      dir.file('tmux-live.conf'),
    );
    let w: ReturnType<typeof watch> | undefined;
    try {
      // Over 256 KiB of output: the recorder has made a screen snapshot by then.
      await pane.type("PS1='live\\$ '; seq 1 60000; echo step-1");
      await pane.settle('step-1');
      const meta = await recordingOf(db, 'alice', (m) => m.state === 'live' && m.term !== undefined);
      // The recorder's emulator parses behind the relay; its snapshot lands a moment later.
      await waitFor('a screen snapshot', async () => ((await db.zcard(recordingKeys(meta.id).snapshots)) > 0 ? true : undefined));
      w = watch(db, meta.id);
      const viewer = w.viewer;
      const same = async (): Promise<true | undefined> => {
        const s = await pane.screen();
        return JSON.stringify(comparable(await viewer.text())) === JSON.stringify({ cols: s.cols, rows: s.rows, lines: s.lines, cursor: s.cursor }) ? true : undefined;
      };
      await waitFor('the viewer to show the current screen', same);
      assert.equal(viewer.fromScreen, true, 'joined from a snapshot, not a blank screen');
      const total = (await recordedEvents(db, meta.id)).events.length;
      assert.ok(viewer.events < total, `the viewer replayed ${viewer.events} of ${total} events`);

      await pane.type("printf '\\033[1mwatched\\033[0m\\n'; echo step-2");
      await pane.settle('step-2');
      await waitFor('the viewer to follow', same);
      await pane.type('exit');
      await w.done;
      assert.equal(viewer.gaps, 0);
      assert.equal((await finished(db, meta.id)).state, 'ended');
    } finally {
      w?.stop();
      await pane.kill();
      a.child.kill('SIGTERM');
      await exited(a.child);
    }
  });
});

