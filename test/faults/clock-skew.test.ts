// Fault: a target host's clock is off. Its sshd runs under libfaketime, so it judges the
// upstream certificate's validity by the skewed clock. A few minutes either way must still work
// (auth's upstream certificates tolerate UPSTREAM_CLOCK_SKEW_SECONDS); hours off must be refused
// with a message that points at the clock, not a bare "refused".
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { SSHD_PATH, hasTool } from '@portcullis/harness';
import type { SshdHandle } from '@portcullis/harness';
import { startSystem } from '../e2e/support/portcullis.js';
import type { Identity, System } from '../e2e/support/portcullis.js';
import { until } from './support.js';

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const missing = [...['ssh', 'redis-server'].filter((t) => !hasTool(t)), ...[SSHD_PATH, LIBFAKETIME].filter((p) => !existsSync(p))];
const skip = missing.length > 0 ? `needs ${missing.join(', ')} (Debian: faketime)` : false;

/** The target's sshd again, on its port and config, with its clock moved by `offset` (faketime syntax). */
async function skewedSshd(sshd: SshdHandle, offset: string): Promise<{ child: ChildProcess; log(): string; stop(): Promise<void> }> {
  const child = spawn(SSHD_PATH, ['-D', '-e', '-f', sshd.configPath], {
    // sshd re-executes itself per connection with this environment, so every process that
    // checks a certificate runs skewed.
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin', TZ: 'UTC', LD_PRELOAD: LIBFAKETIME, FAKETIME: offset, FAKETIME_DONT_RESET: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => (log += s));
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await gone;
  };
  try {
    await until(`sshd with FAKETIME=${offset} to listen (${log})`, () => (/Server listening/.test(log) ? true : child.exitCode !== null ? false : undefined), 10_000).then((ok) => {
      if (!ok) throw new Error(`sshd with FAKETIME=${offset} exited: ${log}`);
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { child, log: () => log, stop };
}

describe('fault: a target whose clock is off', { skip }, () => {
  let sys: System;
  let alice: Identity;

  before(async () => {
    sys = await startSystem();
    alice = await (await sys.user('alice', ['dev'])).mint({ ttl: 600 });
    // The harness's sshd makes way for the skewed ones on the same port and config.
    await sys.targets.get('web01.example.test')!.stop();
  });
  after(async () => {
    await sys?.stop();
  });

  for (const offset of ['+4m', '-4m']) {
    it(`accepts the proxy's upstream certificate on a target ${offset.startsWith('+') ? 'ahead' : 'behind'} by ${offset.slice(1)}`, async () => {
      const sshd = await skewedSshd(sys.targets.get('web01.example.test')!, offset);
      try {
        const r = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo in' });
        assert.equal(r.code, 0, `${r.stderr}\nsshd: ${sshd.log()}`);
        assert.equal(r.stdout, 'in\n');
      } finally {
        await sshd.stop();
      }
    });
  }

  for (const offset of ['+2h', '-2h']) {
    it(`refuses a target ${offset.slice(1)} ${offset.startsWith('+') ? 'ahead' : 'behind'}, naming the clock`, async () => {
      const sshd = await skewedSshd(sys.targets.get('web01.example.test')!, offset);
      try {
        const t0 = Date.now();
        const r = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo in' });
        assert.ok(Date.now() - t0 < 15_000);
        assert.equal(r.code, 255);
        assert.equal(r.stdout, '');
        assert.match(r.stderr, /portcullis: .*clock/);
        // The skew is real: sshd judged the certificate by its own, moved clock.
        await until('sshd to log why', () => /Certificate invalid: (expired|not yet valid)/.test(sshd.log()), 5_000);
        const refused = await sys.waitForAudit('session.refused', (e) => e.fields['stage'] === 'upstream' && /clock/.test(String(e.fields['message'])));
        assert.equal(refused.fields['reason'], 'ERR_UPSTREAM');
      } finally {
        await sshd.stop();
      }
    });
  }
});
