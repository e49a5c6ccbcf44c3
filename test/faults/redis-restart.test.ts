// Fault: redis-server restarts (SIGTERM, then started again on the same port with its saved data)
// while a best-effort recorded session runs. The session must not notice; the recorder spools
// while Redis is away and drains afterwards, so the recording holds every byte the client got;
// auth answers during the outage with a prompt 503, and logs users in again once Redis is back.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { listRecordings } from '@portcullis/recording';
import { exited, metricValue, recordedOutput, recordingEnded, recordedSuite, skipWithoutTools, until } from './support.js';

const PASSWORD = 'correct horse battery staple';

describe('fault: Redis restarts during a recorded session', { skip: skipWithoutTools }, () => {
  const recorded = recordedSuite();

  it('keeps the session, records every byte the client received, and auth answers 503 then serves logins again', async () => {
    const { r, alice } = recorded;
    const { sys } = r;
    const stopFile = sys.dir.file('stop-writing');
    // Writes until the test says stop, so the outage is certainly in the middle of it.
    const ssh = sys.spawnSsh({
      user: 'root%web01',
      as: alice,
      command: `i=0; while [ ! -e ${stopFile} ]; do i=$((i+1)); echo "line $i of a session that outlives a redis restart"; sleep 0.01; done; echo finished`,
    });
    try {
      await until('the session to write', () => ssh.output().stdout.includes('line 20 '));
      await r.redis.stop();
      const linesAtStop = ssh.output().stdout.length;

      // auth during the outage: a clear refusal, promptly, not a hang.
      const t0 = Date.now();
      const login = await sys.api('POST', '/v1/login/password', { json: { username: 'alice', password: PASSWORD } });
      const waited = Date.now() - t0;
      assert.equal(login.status, 503, login.bytes.toString());
      assert.ok(waited < 10_000, `auth answered after ${waited} ms`);

      // A new connection meanwhile: auth cannot answer the proxy's access check without Redis.
      const t1 = Date.now();
      const refused = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo should not run' });
      assert.ok(Date.now() - t1 < 15_000, `the refusal took ${Date.now() - t1} ms`);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /^portcullis: auth \(the access service\) cannot be reached or cannot answer now/m);
      const audited = await sys.waitForAudit('session.refused', (e) => e.fields['reason'] === 'ERR_AUTHORITY_UNAVAILABLE');
      assert.match(String(audited.fields['message']), /503 ERR_UNAVAILABLE/);

      // The recorder noticed and spools; the session goes on.
      await until('the recorder to spool', async () => (await metricValue(sys, 'recording_events_spooled_total')) > 0);
      await sys.waitForAudit('session.recording', (e) => e.fields['kind'] === 'redis-unreachable', 20_000);
      await until('more output during the outage', () => ssh.output().stdout.length > linesAtStop + 2_000);

      await r.redis.start();
      await sys.waitForAudit('session.recording', (e) => e.fields['kind'] === 'recovered', 30_000);
      writeFileSync(stopFile, '');
      assert.equal(await exited(ssh), 0, ssh.output().stderr);
    } finally {
      writeFileSync(stopFile, '');
      ssh.kill();
    }
    const received = ssh.output().stdout;
    assert.match(received, /finished\n$/);

    const [found] = await until('the recording in the index', async () => {
      const l = await listRecordings(r.recorderRedis, { user: 'alice' });
      return l.length > 0 ? l : undefined;
    });
    const meta = await recordingEnded(r.recorderRedis, found!.id);
    assert.equal(meta.state, 'ended');
    assert.equal(meta.lostEvents, 0);
    const stored = await recordedOutput(r.recorderRedis, meta.id);
    assert.equal(stored.gaps, 0);
    assert.equal(stored.lost, 0);
    assert.equal(stored.output.length, Buffer.byteLength(received));
    assert.ok(stored.output.equals(Buffer.from(received)), 'the recording holds exactly what the client received');

    // Logins work again without restarting anything.
    const again = await until('auth to log alice in again', async () => {
      const l = await sys.api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'alice', password: PASSWORD } });
      return l.status === 200 ? l : undefined;
    });
    assert.equal(typeof again.body.token, 'string');
    const next = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo after the restart' });
    assert.equal(next.stdout, 'after the restart\n', next.stderr);
  });
});
