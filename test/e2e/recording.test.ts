// Issue 5's tamper evidence against the real auth service: the proxy (with its HTTP client of
// auth) records a session to redis-server, and auth, not the proxy, signs the finished
// recording over its API; a verifier holding only auth's published recording key checks it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { parsePublicKeyText } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { SSHD_PATH, hasTool } from '@portcullis/harness';
import { httpSignatureService, startSessionRecording } from '@portcullis/proxy';
import type { SessionRecording, SessionTap } from '@portcullis/proxy';
import { listRecordings, readRecordingMeta, verifyRecording } from '@portcullis/recording';
import type { RecordingMeta } from '@portcullis/recording';
import { startSystem } from './support/portcullis.js';
import type { Identity, System } from './support/portcullis.js';

const missing = [...['ssh', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('recordings signed by the real auth service', { skip }, () => {
  let sys: System;
  let recording: SessionRecording;
  let signatures: ReturnType<typeof httpSignatureService>;
  let alice: Identity;
  let recorderRedis: ReturnType<System['auth']['context']['redis']['duplicate']> | undefined;
  // The proxy starts inside startSystem, before its service credential exists for the signer.
  let tap: ((...a: Parameters<SessionRecording['tap']>) => SessionTap) | undefined;

  before(async () => {
    sys = await startSystem({ proxy: { tap: (meta, access) => tap!(meta, access) } });
    signatures = httpSignatureService({ url: sys.auth.info.url, fingerprint: sys.auth.info.fingerprint, credential: sys.enrollment.credential });
    recorderRedis = sys.auth.context.redis.duplicate();
    recorderRedis.on('error', () => {});
    recording = await startSessionRecording({ redis: recorderRedis, spoolDir: sys.dir.file('spool'), signatures });
    tap = recording.tap;
    alice = await (await sys.user('alice', ['dev'])).mint();
  });

  after(async () => {
    await recording?.stop({ graceMs: 1_000 });
    signatures?.close();
    recorderRedis?.disconnect();
    await sys?.stop();
  });

  it('records an exec session in the mode auth gives the role, and auth signs it with its published recording key', async () => {
    const r = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo recorded; exit 4' });
    assert.equal(r.code, 4, r.stderr);
    const redis = sys.auth.context.redis;
    const found = await until('the recording', async () => (await listRecordings(redis, { user: 'alice' }))[0]);
    const meta = await until<RecordingMeta>('the recording to end', async () => {
      const m = await readRecordingMeta(redis, found.id);
      return m?.state === 'ended' ? m : undefined;
    });
    assert.equal(meta.exitStatus, 4);
    assert.equal(meta.host, 'web01.example.test');
    assert.equal(meta.mode, 'best-effort', 'the default mode of a role that names none');
    assert.equal(meta.inputRecorded, false);

    const published = await sys.api<{ public_key: string }>('GET', '/v1/recordings/key');
    assert.equal(published.status, 200);
    const key = parsePublicKeyText(published.body.public_key).key;
    assert.equal(meta.signedBy, published.body.public_key.split(' ').slice(0, 2).join(' '));
    assert.deepEqual((await verifyRecording(redis, meta.id, key, nodeCrypto)).problems, []);
    // A changed exit status is caught by the signature, not only by the digest chain.
    await redis.hset(`pc:{rec:${meta.id}}:meta`, 'exitStatus', '0');
    const tampered = await verifyRecording(redis, meta.id, key, nodeCrypto);
    assert.deepEqual(tampered.problems.map((p) => p.kind), ['signature-invalid']);
  });
});
