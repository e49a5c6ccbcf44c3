// Fault: the sshd process serving a session on the target is SIGKILLed (an OOM kill, a crash).
// The client must hear about it at once with a message and exit status, the recording must be
// closed (not left `live` for ever), and the proxy must let go of the session.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { listRecordings } from '@portcullis/recording';
import { childrenOf, exited, recordedOutput, recordingEnded, sshdListenerPid, recordedSuite, skipWithoutTools, until } from './support.js';


const exe = (pid: number): string => {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return '';
  }
};
const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
};

/** The processes below `pid`, depth first. */
function descendants(pid: number): number[] {
  return childrenOf(pid).flatMap((c) => [c, ...descendants(c)]);
}

describe('fault: the target sshd serving a session is killed', { skip: skipWithoutTools }, () => {
  const recorded = recordedSuite();

  it('tells the client promptly, ends the recording and releases the session', async (t) => {
    const { r, alice } = recorded;
    const { sys } = r;
    const web01 = sys.targets.get('web01.example.test')!;
    const listener = sshdListenerPid(web01.configPath);
    // An odd duration so the orphaned shell can be found and cleaned up afterwards.
    const ssh = sys.spawnSsh({ user: 'root%web01', as: alice, command: 'echo started; sleep 53; echo not reached' });
    const orphans: number[] = [];
    try {
      await until('the session to start', () => ssh.output().stdout.includes('started\n'));
      assert.equal(sys.proxy.activeSessions(), 1);
      const below = descendants(listener);
      const sshds = below.filter((p) => /sshd/.test(exe(p)));
      orphans.push(...below.filter((p) => /sleep 53/.test(cmdline(p))));
      assert.ok(sshds.length > 0, `no sshd serving the session below ${listener}`);
      const t0 = Date.now();
      for (const p of sshds) process.kill(p, 'SIGKILL');

      const code = await exited(ssh);
      const took = Date.now() - t0;
      assert.ok(took < 10_000, `the client learnt after ${took} ms`);
      assert.equal(code, 255, ssh.output().stderr);
      assert.match(ssh.output().stderr, /portcullis: .*web01\.example\.test.*(closed|lost|ended)/i);
      assert.doesNotMatch(ssh.output().stdout, /not reached/);
      t.diagnostic(`client learnt after ${took} ms: ${ssh.output().stderr.trim()}`);
    } finally {
      ssh.kill();
      for (const p of orphans) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // Already gone with its session.
        }
      }
    }

    await until('the proxy to let go of the session', () => sys.proxy.activeSessions() === 0, 10_000);
    await until('the recorder to let go of the session', () => r.recording.live === 0, 10_000);
    const [found] = await until('the recording in the index', async () => {
      const l = await listRecordings(r.recorderRedis, { user: 'alice' });
      return l.length > 0 ? l : undefined;
    });
    const meta = await recordingEnded(r.recorderRedis, found!.id, 15_000);
    assert.equal(meta.state, 'ended');
    assert.ok(meta.endedAt !== undefined);
    const stored = await recordedOutput(r.recorderRedis, meta.id);
    assert.equal(stored.output.toString(), 'started\n');
    assert.ok(stored.types.includes('end'), stored.types.join(' '));
    const lost = await sys.waitForAudit('session.terminated', (e) => e.fields['user'] === 'alice');
    assert.equal(lost.fields['reason'], 'target_lost');
    await sys.waitForAudit('session.end', (e) => e.fields['user'] === 'alice');
    assert.match(await sys.proxy.metrics.text(), /portcullis_proxy_sessions_terminated_total\{reason="target_lost"\} 1/);
  });
});
