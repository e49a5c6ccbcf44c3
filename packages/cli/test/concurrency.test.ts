import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { holdSessions, summarizeRun } from '../src/pcsh/bench/index.js';
import { dialProxy, proxyIdentity } from '../src/pcsh/proxy-ssh.js';
import { startSshWorld, type SshWorld } from './pcsh-ssh-fixture.js';

/*
 * The CI form of bench/concurrent.ts: 200 sessions through one real proxy (recording to Redis)
 * to a real sshd, all open at the same time with a shell each, every one proven alive by
 * echoing its own token, then all closed, and the proxy left with no session behind.
 */

const openFds = (): number => readdirSync('/proc/self/fd').length;
const COUNT = Number(process.env['CONCURRENCY_TEST_SESSIONS'] ?? 200);
let w: SshWorld;
before(async () => {
  w = await startSshWorld('pcsh-concurrency-');
  // pcsh's own profile code reads carol's key and certificate from her PCSH_HOME.
  process.env['PCSH_HOME'] = w.carol.pcshHome;
});
after(async () => {
  await w?.stop();
});

test(`${COUNT} concurrent shell sessions through one proxy, all alive at once`, { timeout: 300_000 }, async () => {
  const id = await proxyIdentity({ proxy: w.proxyAddress });
  // The proxy, auth and the clients share this process: its descriptors must come back.
  const fds0 = openFds();
  const t0 = performance.now();
  // sshd's default MaxStartups (10:30:100) drops connections past 10 unauthenticated ones.
  const held = holdSessions({ count: COUNT, ratePerSecond: 50, maxSettingUp: 8, dial: () => dialProxy(id, { username: 'root%web01', readyTimeoutMs: 30_000 }) });
  // A stuck ramp fails with how far it got rather than at the test's timeout.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([held.ramped, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`ramp stuck: ${held.shells.size} of ${COUNT} open after 240 s`)), 240_000)))]);
  clearTimeout(timer);
  const rampMs = performance.now() - t0;
  assert.equal(held.shells.size, COUNT, `${held.shells.size} of ${COUNT} open`);
  assert.equal(w.proxy.proxy.activeSessions(), COUNT);
  const dead = await held.checkAlive(30_000);
  assert.deepEqual(dead, []);
  const { outcomes, elapsedMs } = await held.closeAll();
  const report = summarizeRun(outcomes, { requestedRate: 50, elapsedMs });
  assert.equal(report.failed, 0, JSON.stringify(report.failures));
  assert.ok(report.setup.p50 > 0 && report.setup.p99 >= report.setup.p50);
  // Every relayed connection is gone from the proxy once the clients closed.
  const deadline = Date.now() + 10_000;
  while (w.proxy.proxy.activeSessions() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(w.proxy.proxy.activeSessions(), 0);
  while (openFds() > fds0 + 10 && Date.now() < deadline + 20_000) await new Promise((r) => setTimeout(r, 100));
  assert.ok(openFds() <= fds0 + 10, `${openFds()} fds after every session closed, ${fds0} before`);
  process.stdout.write(`# ${COUNT} sessions ramped in ${(rampMs / 1000).toFixed(1)} s; set-up p50 ${report.setup.p50.toFixed(0)} ms, p99 ${report.setup.p99.toFixed(0)} ms\n`);
});
