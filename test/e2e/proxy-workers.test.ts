// One proxy worker per core behind one port (workers.ts), against the real auth service: two
// worker processes share the port and both serve connections; stopping the pool drains them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatCertificate, formatPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { startProxyWorkers } from '@portcullis/proxy';
import type { ProxyAuditEvent, ProxyWorkerPool } from '@portcullis/proxy';
import { freePort, hasTool } from '@portcullis/harness';
import { startSystem } from './support/portcullis.js';
import type { Identity, System } from './support/portcullis.js';
import type { WorkerConfig } from './support/proxy-worker.js';

const skip = ['ssh', 'redis-server'].find((t) => !hasTool(t));
const WORKER = fileURLToPath(new URL('./support/proxy-worker.ts', import.meta.url));

describe('proxy workers: one port, several processes', { skip: skip === undefined ? false : `needs ${skip}` }, () => {
  let sys: System;
  let pool: ProxyWorkerPool;
  let alice: Identity;
  const starts: { pid: number; event: ProxyAuditEvent }[] = [];
  const onMessage = (worker: Worker, m: unknown): void => {
    const msg = m as { type?: string; event?: ProxyAuditEvent };
    if (msg.type === 'e2e:audit' && msg.event?.name === 'session.start') starts.push({ pid: worker.process.pid!, event: msg.event });
  };

  before(async () => {
    sys = await startSystem();
    alice = await (await sys.user('alice', ['dev'])).mint();
    const config: WorkerConfig = {
      url: sys.auth.info.url,
      fingerprint: sys.auth.info.fingerprint,
      credential: sys.enrollment.credential,
      hostKeys: sys.enrollment.hostKeys.map((k) => ({ privateKey: formatPrivateKey(k.privateKey, { crypto: nodeCrypto }), certificate: formatCertificate(k.certificate) })),
      ports: Object.fromEntries(sys.ports),
      listenPort: await freePort(),
    };
    const path = sys.dir.file('worker.json');
    writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
    cluster.on('message', onMessage);
    pool = await startProxyWorkers({
      workers: 2,
      exec: WORKER,
      execArgv: ['--import', 'tsx'],
      env: { PORTCULLIS_E2E_WORKER_CONFIG: path },
      graceMs: 10_000,
      log: () => {},
    });
  });

  after(async () => {
    cluster.off('message', onMessage);
    await pool?.stop({ graceMs: 0 });
    await sys?.stop();
  });

  it('reports a worker that cannot start, with its reason', async () => {
    const path = sys.dir.file('bad-worker.json');
    writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(sys.dir.file('worker.json'), 'utf8')), credential: 'not-a-credential' }));
    await assert.rejects(
      startProxyWorkers({ workers: 1, exec: WORKER, execArgv: ['--import', 'tsx'], env: { PORTCULLIS_E2E_WORKER_CONFIG: path }, log: () => {} }),
      /proxy worker 0 could not start: .*credential/,
    );
  });

  it('both workers accept connections on the shared port', async () => {
    assert.equal(pool.pids().length, 2);
    for (let i = 0; i < 6; i++) {
      const r = await sys.ssh({ user: 'root%web01', as: alice, command: `echo run ${i}`, port: pool.port });
      assert.equal(r.stdout, `run ${i}\n`, r.stderr);
    }
    const deadline = Date.now() + 5_000;
    while (starts.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const byPid = new Map<number, number>();
    for (const s of starts) byPid.set(s.pid, (byPid.get(s.pid) ?? 0) + 1);
    assert.deepEqual([...byPid.keys()].sort(), pool.pids().sort(), `sessions per worker: ${JSON.stringify([...byPid])}`);
    assert.ok([...byPid.values()].every((n) => n >= 2), `round-robin spreads them: ${JSON.stringify([...byPid])}`);
  });

  it('drains on stop: running sessions finish, new connections are refused, every worker exits', async () => {
    const running = sys.ssh({ user: 'root%web01', as: alice, command: 'sleep 1.5; echo finished', port: pool.port });
    const deadline = Date.now() + 5_000;
    // Stop once the session runs on some worker.
    while (starts.length < 7 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const stopped = pool.stop();
    await new Promise((r) => setTimeout(r, 200));
    const late = await sys.ssh({ user: 'root%web01', as: alice, command: 'true', port: pool.port });
    assert.equal(late.code, 255);
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'finished\n');
    await stopped;
    assert.deepEqual(pool.pids(), []);
  });
});
