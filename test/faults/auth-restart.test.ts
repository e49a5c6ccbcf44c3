// Fault: auth stops and starts again (same state directory, same address) while a session is
// live. An established session needs nothing from auth, so it goes on; a new connection while
// auth is down is refused promptly with a message that says auth is unreachable; once auth is
// back, new sessions work with the same proxy, which was not restarted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { AuthService, parseAuthConfig } from '@portcullis/auth';
import { SSHD_PATH, hasTool } from '@portcullis/harness';
import { ROLES, startSystem } from '../e2e/support/portcullis.js';
import type { Identity, System } from '../e2e/support/portcullis.js';
import { exited, until } from './support.js';

const missing = [...['ssh', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

describe('fault: auth restarts during a live session', { skip }, () => {
  let sys: System;
  let alice: Identity;
  let restarted: AuthService | undefined;
  const logs: string[] = [];

  before(async () => {
    sys = await startSystem({ proxy: { log: (level, message) => void logs.push(`${level} ${message}`) } });
    alice = await (await sys.user('alice', ['dev'])).mint({ ttl: 600 });
  });
  after(async () => {
    await sys?.proxy.stop({ graceMs: 0 });
    await restarted?.stop();
    await sys?.stop();
  });

  it('keeps the live session, refuses new ones clearly while auth is down, and serves them again after', async () => {
    const session = sys.spawnSsh({ user: 'root%web01', as: alice, command: 'while read l; do echo "got $l"; done' });
    const roundTrip = async (word: string): Promise<void> => {
      session.stdin!.write(`${word}\n`);
      await until(`the echo of ${word} (${JSON.stringify(session.output())})`, () => session.output().stdout.includes(`got ${word}\n`), 10_000);
    };
    try {
      await roundTrip('before');

      const url = new URL(sys.auth.info.url);
      const redisPort = Number((sys.auth.context.redis.options as { port?: number }).port);
      await sys.auth.stop();
      await roundTrip('while-auth-is-down');

      const t0 = Date.now();
      const refused = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo should not run' });
      const took = Date.now() - t0;
      assert.notEqual(refused.code, 0);
      assert.equal(refused.stdout, '');
      // Said after userauth (a userauth failure carries no reason): the user learns it is auth.
      assert.match(refused.stderr, /^portcullis: auth \(the access service\) cannot be reached or cannot answer now.*try again/m);
      assert.doesNotMatch(refused.stderr, /ECONNREFUSED|https:/, 'the cause is for the operator, not the user');
      assert.ok(took < 15_000, `the refusal took ${took} ms`);
      const audited = await sys.waitForAudit('session.refused', (e) => e.fields['reason'] === 'ERR_AUTHORITY_UNAVAILABLE');
      assert.equal(audited.fields['user'], 'alice');
      assert.match(String(audited.fields['message']), /auth/);
      assert.match(await sys.proxy.metrics.text(), /ssh_cert_auth_total\{result="unavailable"\} 1/);
      assert.equal(sys.proxy.activeSessions(), 1, 'the refused connection is not a session');
      await roundTrip('after-a-refusal');

      // The same service on the same address and state: the TLS key, so the pinned fingerprint,
      // and the CA keys are on disk in state_dir.
      const config = parseAuthConfig(
        { state_dir: sys.dir.file('auth'), listen: `127.0.0.1:${url.port}`, redis: { url: `redis://127.0.0.1:${redisPort}` }, audit: { sink: 'none' }, roles: ROLES },
        { env: {} },
      );
      restarted = new AuthService({ config, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
      const info = await restarted.start();
      assert.equal(info.fingerprint, sys.auth.info.fingerprint);

      const back = await until('a new session through the same proxy', async () => {
        const r = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo auth is back' });
        return r.code === 0 ? r : undefined;
      });
      assert.equal(back.stdout, 'auth is back\n');
      await roundTrip('after');
      session.stdin!.end();
      assert.equal(await exited(session), 0, session.output().stderr);
    } finally {
      session.kill();
    }
  });
});
