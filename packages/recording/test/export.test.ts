import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { generateKey, keySigner } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { hasTool, run } from '@portcullis/harness';
import { exportAsciicast, exportTranscript } from '../src/export.js';
import { recordingKeys } from '../src/keys.js';
import { Recorder } from '../src/recorder.js';
import { readRecordingEvents } from '../src/replay.js';
import { verifyRecording } from '../src/verify.js';
import { enc, manualClock, redisFixture, sessionMeta, type RedisFixture } from './fixture.js';
import { interactiveScript, playScript } from './session-script.js';

const skip = (!hasTool('redis-server') && 'redis-server is not installed') || (!hasTool('asciinema') && 'asciinema is not installed (scripts/ensure-deps.sh)') || false;

async function recordInteractive(fx: RedisFixture, signer?: ReturnType<typeof keySigner>): Promise<{ id: string; output: Buffer }> {
  const clock = manualClock();
  const rec = new Recorder({ redis: fx.redis, mode: 'strict', spoolDir: fx.tmp.path, recordInput: true, now: clock.now, ...(signer ? { signer } : {}) });
  const meta = sessionMeta();
  await rec.start(meta);
  const played = await playScript(rec, interactiveScript(), clock.advance);
  played.screen.dispose();
  await rec.end({ bytesIn: played.bytesIn, bytesOut: played.bytesOut, reason: 'client closed the connection' });
  const parts: Uint8Array[] = [];
  for await (const item of readRecordingEvents(fx.redis, meta.sessionId)) if (item.kind === 'event' && item.event.type === 'output') parts.push(item.event.data);
  return { id: meta.sessionId, output: Buffer.concat(parts) };
}

/** asciinema reads /dev/tty, so it runs under script(1), which gives it a pty. */
function underPty(command: string): Promise<{ code: number; stdoutBytes: Buffer; stderr: string }> {
  return run('script', ['-qec', command, '/dev/null'], { timeoutMs: 20_000 });
}

test('asciicast v2: asciinema cat and play reproduce the recorded output byte for byte', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const { id, output } = await recordInteractive(fx);
  const cast = await exportAsciicast(fx.redis, id, { idleTimeLimit: 2 });
  const lines = cast.trimEnd().split('\n');
  const header = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(header.version, 2);
  assert.equal(header.width, 80);
  assert.equal(header.height, 24);
  assert.equal(header.timestamp, 1_700_000_000);
  assert.equal(header.idle_time_limit, 2);
  assert.deepEqual(header.env, { TERM: 'xterm-256color' });
  const events = lines.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
  const kinds = new Set(events.map((e) => e[1]));
  assert.deepEqual([...kinds].sort(), ['i', 'm', 'o', 'r']);
  assert.ok(events.some((e) => e[1] === 'r' && e[2] === '100x30'));
  assert.ok(events.some((e) => e[1] === 'm' && e[2] === 'exit status 0'));
  assert.ok(events.every((e, i) => i === 0 || e[0] >= events[i - 1]![0]), 'times never go back');
  // The 30 s pause is in the file (idle_time_limit is the player's business).
  assert.ok(events.some((e, i) => i > 0 && e[0] - events[i - 1]![0] >= 30));

  const file = fx.tmp.file('session.cast');
  writeFileSync(file, cast);
  const cat = await underPty(`asciinema cat ${file}`);
  assert.equal(cat.code, 0, cat.stderr);
  assert.ok(cat.stdoutBytes.equals(output), `asciinema cat printed ${cat.stdoutBytes.length} bytes, the recording has ${output.length}`);
  // Played at speed 100 with idle time cut to 0.1 s: the whole session takes well under 5 s.
  const started = Date.now();
  const play = await underPty(`asciinema play -s 100 -i 0.1 ${file}`);
  assert.equal(play.code, 0, play.stderr);
  assert.ok(play.stdoutBytes.equals(output));
  assert.ok(Date.now() - started < 5000);
});

test('transcript: what the user saw as text, with the session around it', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const { id } = await recordInteractive(fx);
  const text = await exportTranscript(fx.redis, id);
  const lines = text.split('\n');
  assert.match(lines[0]!, /^# session .*: alice as ubuntu@web01 from 192\.0\.2\.7:50022 \(certificate alice@example\.com, serial 18446744073709551615\)$/);
  assert.ok(lines.includes('alice@web01:~$ echo hello'), 'backspaces applied as the terminal did');
  assert.ok(lines.includes('hello'));
  assert.ok(lines.includes('6000\tline 6000 of the flood'.replace('\t', '    ')), 'tabs expand, colours go');
  assert.ok(!text.includes('\x1b'));
  assert.ok(!lines.some((l) => l.includes('hello notes')), 'the alternate screen (vim) leaves no text');
  assert.equal(lines.filter((l) => l.startsWith('#')).at(-1), '# end: client closed the connection');

  // An exec session without a pty: LF alone ends lines, stderr interleaves.
  const rec = new Recorder({ redis: fx.redis, mode: 'strict', spoolDir: fx.tmp.path });
  const meta = sessionMeta();
  await rec.start(meta);
  await rec.event({ type: 'exec', channel: 0, command: 'cat /etc/hostname; false' });
  await rec.output(0, 0, enc('web01\n'));
  await rec.output(0, 1, enc('cat: warning\n'));
  await rec.event({ type: 'exit', channel: 0, status: 1 });
  await rec.end({ bytesIn: 0, bytesOut: 19, reason: 'exec finished' });
  const exec = await exportTranscript(fx.redis, meta.sessionId);
  assert.deepEqual(exec.split('\n').slice(2), ['# command: cat /etc/hostname; false', 'web01', 'cat: warning', '# exit status 1', '# end: exec finished', '']);
});

test('verify: a signed recording checks; a changed, removed or cut event and changed metadata are named', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const signer = keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
  const { id } = await recordInteractive(fx, signer);
  const ok = await verifyRecording(fx.redis, id, signer.publicKey, nodeCrypto);
  assert.deepEqual(ok.problems, []);
  assert.equal(ok.ok, true);
  const other = keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
  assert.deepEqual((await verifyRecording(fx.redis, id, other.publicKey, nodeCrypto)).problems.map((p) => p.kind), ['signature-invalid']);

  const keys = recordingKeys(id);
  const entries = await fx.redis.xrangeBuffer(keys.events, '-', '+');
  // Rewrite the stream (entries cannot be edited in place) with one output byte changed.
  const rewrite = async (change: (i: number, fields: Buffer[]) => Buffer[] | undefined): Promise<void> => {
    await fx.redis.del(keys.events);
    for (const [i, [eid, fields]] of entries.entries()) {
      const f = change(i, fields.map((b) => Buffer.from(b)));
      if (f) await fx.redis.xadd(keys.events, eid.toString(), ...f);
    }
  };
  const target = entries.findIndex(([, f]) => f[1]!.toString().includes('"output"') && f[3]!.length > 10);
  const targetSeq = Number(entries[target]![0].toString().split('-')[1]);
  await rewrite((i, f) => {
    const data = f[3]!;
    if (i === target) data[5] = data[5]! ^ 0x20; // flip a letter's case in the output bytes
    return f;
  });
  let r = await verifyRecording(fx.redis, id, signer.publicKey, nodeCrypto);
  assert.equal(r.ok, false);
  assert.deepEqual(r.problems.map((p) => [p.kind, p.seq]), [['event-changed', targetSeq]]);

  // Removed: the gap and the broken link both point at the event after it.
  await rewrite((i, f) => (i === target ? undefined : f));
  r = await verifyRecording(fx.redis, id, signer.publicKey, nodeCrypto);
  assert.deepEqual(r.problems.map((p) => [p.kind, p.seq]), [
    ['events-missing', targetSeq + 1],
    ['chain-broken', targetSeq + 1],
  ]);

  // The tail cut off: the metadata (signed) names a later last event.
  await rewrite((i, f) => (i < entries.length - 2 ? f : undefined));
  r = await verifyRecording(fx.redis, id, signer.publicKey, nodeCrypto);
  assert.deepEqual([...new Set(r.problems.map((p) => p.kind))], ['end-mismatch']);

  // Back to the original stream, but the metadata says someone else ran it.
  await rewrite((_, f) => f);
  await fx.redis.hset(keys.meta, 'user', 'mallory');
  r = await verifyRecording(fx.redis, id, signer.publicKey, nodeCrypto);
  assert.deepEqual(r.problems.map((p) => p.kind), ['signature-invalid']);
});
