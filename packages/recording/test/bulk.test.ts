import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKey, keySigner } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { hasTool } from '@portcullis/harness';
import { Recorder } from '../src/recorder.js';
import { readRecordingEvents } from '../src/replay.js';
import { verifyRecording } from '../src/verify.js';
import { enc, redisFixture, sessionMeta } from './fixture.js';

const skip = !hasTool('redis-server') && 'redis-server is not installed';

test('bulk output: slab-sized events keep their place among the small events around them, none is overwritten by a reused slab, and the signed chain verifies', { skip }, async (t) => {
  const fx = await redisFixture(t);
  const signer = keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
  const rec = new Recorder({ redis: fx.redis, mode: 'best-effort', signer });
  const meta = sessionMeta();
  await rec.start(meta);
  await rec.event({ type: 'exec', channel: 0, command: 'cat big; echo done >&2' });
  // 12 MiB of stdout in 32 KiB chunks, each filled with its own number, and a line of stderr
  // every 40 chunks: the stderr events are small and queue behind bulk ones being hashed.
  const chunks = 384;
  let stderr = 0;
  for (let i = 0; i < chunks; i++) {
    const p = rec.output(0, 0, new Uint8Array(32 * 1024).fill(i & 0xff));
    if (p) await p;
    if (i % 40 === 39) {
      await rec.output(0, 1, enc(`after ${i}\n`));
      stderr++;
    }
  }
  await rec.event({ type: 'exit', channel: 0, status: 0 });
  await rec.event({ type: 'close', channel: 0 });
  await rec.end({ bytesIn: 0, bytesOut: chunks * 32 * 1024 + stderr * 10, reason: 'done' });

  let expect = 0;
  let at = 0;
  let stdout = 0;
  const lines: string[] = [];
  for await (const item of readRecordingEvents(fx.redis, meta.sessionId)) {
    if (item.kind !== 'event' || item.event.type !== 'output') continue;
    const e = item.event;
    if (e.stream === 1) {
      const line = new TextDecoder().decode(e.data);
      lines.push(line);
      // Everything before the line in the session is before it in the recording.
      assert.equal(line, `after ${expect * 40 + 39}\n`);
      assert.equal(stdout, (expect * 40 + 40) * 32 * 1024, `stdout before "${line.trim()}"`);
      expect++;
      continue;
    }
    for (const b of e.data) {
      assert.equal(b, Math.floor(at / (32 * 1024)) & 0xff, `stdout byte ${at}`);
      at++;
    }
    stdout += e.data.length;
  }
  assert.equal(stdout, chunks * 32 * 1024);
  assert.equal(lines.length, stderr);
  const report = await verifyRecording(fx.redis, meta.sessionId, signer.publicKey, nodeCrypto);
  assert.deepEqual(report.problems, []);
  assert.equal(report.ok, true);
});
