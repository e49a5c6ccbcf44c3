// The proxy service with `workers: 2` (src/main.ts with a config file, through the stand-in
// wrapper): a primary and two worker processes behind one port. Sessions land on both, the
// primary's /metrics carries both workers' counters, a SIGKILLed worker is replaced and its
// replacement uploads the dead worker's spool, and SIGTERM to the primary drains them all.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { tempDir } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';
import { access, exited, skipWithoutOpenSsh, startFixture } from './support/fixture.js';
import type { Fixture, Identity } from './support/fixture.js';
import { newKey } from './support/authority.js';
import { startProxyProcess, writeProxyStateDir, writeStandInState } from './support/proxy-process.js';
import type { ProxyProcess } from './support/proxy-process.js';
import { finished, recordingOf, skipWithoutRecordingTools, startTestRedis, waitFor } from './support/recording.js';
import type { TestRedis } from './support/recording.js';

const skip = skipWithoutOpenSsh || skipWithoutRecordingTools;

/** Live workers by index, from the primary's "proxy worker <i> (pid <p>) listening" lines (the latest wins). */
function workerPids(stderr: string): Map<number, number> {
  const pids = new Map<number, number>();
  for (const m of stderr.matchAll(/proxy worker (\d+) \(pid (\d+)\) listening/g)) pids.set(Number(m[1]), Number(m[2]));
  return pids;
}

/** `portcullis_proxy_sessions_total` by worker label, from a /metrics page. */
function sessionsByWorker(text: string): Map<string, number> {
  const by = new Map<string, number>();
  for (const m of text.matchAll(/^portcullis_proxy_sessions_total\{worker="(\d+)"\} (\d+)$/gm)) by.set(m[1]!, Number(m[2]));
  return by;
}

describe('the proxy service with workers: 2', { skip }, () => {
  let dir: TempDir;
  let redis: TestRedis;
  let db: Redis;
  let f: Fixture;
  let alice: Identity;
  let child: ChildProcess;
  let port: number;
  let metricsPort: number;
  let proc: ProxyProcess | undefined;
  const out = (): string => proc?.stdout() ?? '';
  const err = (): string => proc?.stderr() ?? '';
  const stateDir = (): string => dir.file('proxy');

  const ssh = (command: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const c = spawn('ssh', [...f.sshOptions(alice), '-p', String(port), 'root%web01@127.0.0.1', '--', command], { stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '';
      let e = '';
      c.stdout.on('data', (b: Buffer) => (o += b.toString()));
      c.stderr.on('data', (b: Buffer) => (e += b.toString()));
      c.once('exit', (code) => resolve({ code, stdout: o, stderr: e }));
    });
  const metrics = async (): Promise<string> => {
    const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(r.status, 200);
    return r.text();
  };

  before(async () => {
    dir = tempDir('portcullis-proxy-workers-');
    redis = await startTestRedis(dir.file('redis'));
    db = redis.connect();
    f = await startFixture({ users: [access('alice')] });
    alice = f.identity('alice');
    const statePath = dir.file('stand-in.json');
    writeStandInState(statePath, f, newKey(), [access('alice')]);
    const config = writeProxyStateDir(stateDir(), f, [
      'listen: 127.0.0.1:0',
      `redis: { url: "${redis.url}" }`,
      'recording: { upload_interval: 1s, retention: 1d }',
      'metrics: { listen: "127.0.0.1:0" }',
      'drain_grace: 10s',
      'workers: 2',
    ]);
    proc = await startProxyProcess(f, statePath, config, /proxy: listening on 127\.0\.0\.1:(\d+) with 2 workers, metrics on port (\d+)/, 60_000);
    child = proc.child;
    port = proc.port;
    metricsPort = Number(proc.listening[2]);
  });

  after(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      for (const pid of workerPids(err()).values()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await f?.stop();
    await redis?.stop();
    dir?.remove();
  });

  test('sessions land on both workers, and the primary /metrics counts each worker', async () => {
    assert.equal(workerPids(err()).size, 2, err());
    for (let i = 0; i < 6; i++) {
      const r = await ssh(`echo run ${i}`);
      assert.equal(r.stdout, `run ${i}\n`, r.stderr);
    }
    // The stand-in wrapper's audit lines carry the pid of the worker that wrote them.
    const startPids = await waitFor('six session.start events', () => {
      const pids = out()
        .split('\n')
        .filter((l) => l.includes('"name":"session.start"'))
        .map((l) => (JSON.parse(l) as { pid: number }).pid);
      return pids.length >= 6 ? pids : undefined;
    });
    assert.deepEqual([...new Set(startPids)].sort(), [...workerPids(err()).values()].sort(), 'both workers served sessions');
    const by = sessionsByWorker(await metrics());
    assert.deepEqual([...by.keys()].sort(), ['0', '1']);
    assert.equal([...by.values()].reduce((a, b) => a + b, 0), 6);
    assert.ok([...by.values()].every((n) => n >= 2), `round-robin spreads them: ${JSON.stringify([...by])}`);
  });

  test('a SIGKILLed worker is replaced, and its replacement uploads the dead worker’s spool', async () => {
    const before = workerPids(err());
    const session = ssh('for i in $(seq 1 3000); do echo "line $i"; sleep 0.003; done');
    const meta = await recordingOf(db, 'alice', (m) => m.command?.startsWith('for i in') === true);
    // Which worker runs it: the one whose spool directory holds its file.
    const index = await waitFor('the spool file', () => {
      for (const i of [0, 1]) if (existsSync(`${stateDir()}/recordings/worker-${i}/${meta.id}.spool`)) return i;
      return undefined;
    });
    const victim = before.get(index)!;
    process.kill(victim, 'SIGKILL');
    assert.equal((await session).code, 255);
    // A scrape while a worker is missing or still starting answers with the others.
    assert.ok(sessionsByWorker(await metrics()).has(String(1 - index)));
    const replacement = await waitFor('a replacement worker', () => {
      const pid = workerPids(err()).get(index);
      return pid !== undefined && pid !== victim ? pid : undefined;
    }, 30_000);
    assert.notEqual(replacement, victim);
    assert.equal((await finished(db, meta.id)).state, 'interrupted');
    assert.equal(existsSync(`${stateDir()}/recordings/worker-${index}/${meta.id}.spool`), false, readdirSync(`${stateDir()}/recordings/worker-${index}`).join(' '));
    // The other worker kept serving throughout; both serve again.
    const r = await ssh('echo again');
    assert.equal(r.stdout, 'again\n', r.stderr);
    const by = sessionsByWorker(await metrics());
    assert.deepEqual([...by.keys()].sort(), ['0', '1'], 'the replacement reports metrics too');
  });

  test('SIGTERM to the primary drains: running sessions finish, new ones are refused, every process exits', async () => {
    const pids = [...workerPids(err()).values()];
    const starts = (): number => out().split('"name":"session.start"').length - 1;
    const earlier = starts();
    const running = ssh('sleep 1.5; echo finished');
    await waitFor('the session to start', () => (starts() > earlier ? true : undefined));
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const late = await ssh('true');
    assert.equal(late.code, 255);
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'finished\n');
    assert.equal(await exited(child), 0, err());
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `worker ${pid} is gone`);
  });
});
