import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BenchReport } from '../src/pcsh/bench/index.js';
import { cli } from './pcsh-login-fixture.js';
import { startSshWorld, type SshWorld } from './pcsh-ssh-fixture.js';

/*
 * `pcsh bench` as a user runs it: the real pcsh binary with carol's certificate, the real
 * proxy and auth, an enrolled OpenSSH target. A bad target is counted failures with the
 * proxy's reason, not a crash.
 */

let w: SshWorld;
before(async () => {
  w = await startSshWorld('pcsh-bench-');
});
after(async () => {
  await w?.stop();
});

async function benchJson(args: readonly string[]): Promise<{ code: number; report: BenchReport; stderr: string }> {
  const r = await cli('pcsh', w.carol, ['bench', '--json', ...args]);
  assert.doesNotMatch(r.stderr, /\n\s+at /, r.stderr);
  return { code: r.code, report: JSON.parse(r.stdout) as BenchReport, stderr: r.stderr };
}

function assertOrdered(name: string, l: BenchReport['setup']): void {
  const xs = [l.p50, l.p90, l.p95, l.p99, l.max];
  assert.ok(xs[0]! > 0, `${name} p50 ${xs[0]}`);
  for (let i = 1; i < xs.length; i++) assert.ok(xs[i]! >= xs[i - 1]!, `${name}: ${xs.join(' ')}`);
}

test('pcsh bench --rate 10 --duration 3s: 30 exec sessions requested, ~30 succeed, ordered percentiles', async () => {
  const { code, report } = await benchJson(['--rate', '10', '--duration', '3s', 'root@web01', 'echo', 'bench-ok']);
  assert.equal(report.requested, 30);
  // The fixture's sshd keeps the default MaxStartups (10:30:100): on a loaded machine it may
  // drop an upstream connection or two, which pcsh bench must then count, not hide.
  assert.ok(report.succeeded >= 27, `${report.succeeded} succeeded: ${JSON.stringify(report.failures)}`);
  assert.equal(code, report.failed === 0 ? 0 : 1);
  assertOrdered('set-up', report.setup);
  assertOrdered('total', report.total);
  assert.ok(report.setup.p50 <= report.total.p50);
  // Open loop: 30 sessions due over 2.9 s, so the run takes about that plus the slowest session
  // (a closed loop of one would take 30 sessions' time).
  assert.ok(report.elapsedMs >= 2900 && report.elapsedMs < 60_000, `elapsed ${report.elapsedMs}`);
});

test('pcsh bench --interactive: a pty shell per session runs the command and exits', async () => {
  const { code, report } = await benchJson(['--interactive', '--rate', '5', '--duration', '1s', 'root@web01', 'true']);
  assert.equal(code, 0, JSON.stringify(report.failures));
  assert.equal(report.succeeded, 5);
});

test('pcsh bench against a host that does not exist: failures counted with the reason, exit 1', async () => {
  const { code, report } = await benchJson(['--rate', '5', '--duration', '1s', 'root@no-such-host']);
  assert.equal(code, 1);
  assert.equal(report.requested, 5);
  assert.equal(report.failed, 5);
  assert.equal(report.failures.length, 1, JSON.stringify(report.failures));
  assert.match(report.failures[0]!.message, /no-such-host/);
  assert.equal(report.failures[0]!.count, 5);
});

test('pcsh bench: a failing command is a failure with its exit status; the text report lists it', async () => {
  const r = await cli('pcsh', w.carol, ['bench', '--rate', '4', '--duration', '1s', 'root@web01', 'exit', '3']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /4 requested, 0 succeeded, 4 failed/);
  assert.match(r.stdout, /^ +4 {2}the command ended with exit status 3$/m);
});
