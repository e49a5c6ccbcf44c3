// A revoked login session ends the sessions opened with its certificates, on the real system:
// auth over HTTP, redis-server, the proxy polling auth's locks, sshd, stock ssh, and the
// browser terminal's session engine beside it. `pcsh logout` is POST /v1/logout; an admin
// disabling a user and `pcctl revoke --user` revoke every login session of that user.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSHD_PATH, hasTool } from '@portcullis/harness';
import { WebSessionEngine, webSessionKeyLine, type WebTerminal, type WebTerminalExit } from '@portcullis/proxy';
import { PASSWORD, exited, startSystem } from './support/portcullis.js';
import type { Identity, System, UserHandle } from './support/portcullis.js';

const missing = [...['ssh', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;
const ENDS_WITHIN_MS = 10_000;

describe('a revoked login session ends its live sessions', { skip }, () => {
  let sys: System;
  let engine: WebSessionEngine;
  let dave: UserHandle;
  let daveId: Identity;

  before(async () => {
    sys = await startSystem();
    engine = new WebSessionEngine({ authority: sys.authority, log: () => {} });
    await engine.start();
    dave = await sys.user('dave', ['dev']);
    daveId = await dave.mint();
  });

  after(async () => {
    engine?.stop();
    await sys?.stop();
  });

  /** An interactive (pty) shell through the proxy, once it has printed `started`. */
  async function openShell(as: Identity): Promise<ReturnType<System['spawnSsh']>> {
    const ssh = sys.spawnSsh({ user: 'root%web01', as, args: ['-tt'], command: 'echo started; sleep 120' });
    const deadline = Date.now() + 20_000;
    while (!ssh.output().stdout.includes('started')) {
      assert.equal(ssh.exitCode, null, ssh.output().stderr);
      assert.ok(Date.now() < deadline, 'the shell did not start');
      await sleep(20);
    }
    return ssh;
  }

  /** A browser terminal as the gateway opens one: a certificate minted with the login session's token. */
  async function openTerminal(token: string, user: string): Promise<{ terminal: WebTerminal; exit: Promise<WebTerminalExit>; output(): string }> {
    const r = await sys.api<{ certificate: string }>('POST', '/v1/certs/user', { token, json: { public_key: webSessionKeyLine() } });
    assert.equal(r.status, 200, r.bytes.toString('utf8'));
    const terminal = await engine.open({ user, certificate: r.body.certificate, login: 'root', host: 'web01', cols: 80, rows: 24, clientAddress: '127.0.0.1' });
    let output = '';
    terminal.onOutput((d) => (output += Buffer.from(d).toString()));
    const exit = new Promise<WebTerminalExit>((resolve) => terminal.onExit(resolve));
    return { terminal, exit, output: () => output };
  }

  async function until(what: string, done: () => boolean, ms = 15_000): Promise<void> {
    for (const deadline = Date.now() + ms; !done(); await sleep(20)) assert.ok(Date.now() < deadline, what);
  }

  async function secondLogin(name: string): Promise<string> {
    const r = await sys.api<{ token: string }>('POST', '/v1/login/password', { json: { username: name, password: PASSWORD } });
    assert.equal(r.status, 200);
    return r.body.token;
  }

  it('logout ends the SSH and browser sessions of that login session only, within seconds', async (t) => {
    const carol = await sys.user('carol', ['dev']);
    const otherToken = await secondLogin('carol');
    const carolId = await carol.mint();
    const ssh = await openShell(carolId);
    const daveShell = await openShell(daveId);
    const web = await openTerminal(carol.token, 'carol');
    const keptWeb = await openTerminal(otherToken, 'carol');
    await until('no prompt in the browser terminals', () => web.output() !== '' && keptWeb.output() !== '');
    try {
      const t0 = Date.now();
      const out = await sys.api('POST', '/v1/logout', { token: carol.token });
      assert.equal(out.status, 200);
      const [code, webExit] = await Promise.all([exited(ssh), web.exit]);
      const elapsed = Date.now() - t0;
      t.diagnostic(`ended ${elapsed} ms after the request`);
      assert.ok(elapsed < ENDS_WITHIN_MS, `the sessions ended ${elapsed} ms after the logout`);
      assert.equal(code, 255);
      assert.match(ssh.output().stderr, /portcullis: your login session [0-9a-f]{16} was revoked: logged out/);
      assert.match(webExit.reason, /your login session [0-9a-f]{16} was revoked: logged out/);
      const ended = await sys.waitForAudit('session.terminated', (e) => e.fields['user'] === 'carol' && e.fields['route'] !== 'web');
      assert.equal(ended.fields['reason'], 'revocation');
      // Auth lists the lock it placed, until the newest certificate of carol's has expired.
      const { locks } = await sys.admin<{ locks: { target: { kind: string; name: string }; message: string; expires_at?: string }[] }>('GET', '/v1/admin/locks');
      const lock = locks.find((l) => l.target.kind === 'session');
      assert.ok(lock !== undefined && /^[0-9a-f]{16}$/.test(lock.target.name) && lock.message === 'logged out', JSON.stringify(locks));
      assert.ok(lock.expires_at !== undefined && Date.parse(lock.expires_at) > Date.now() + 5 * 60_000, lock.expires_at);
      // A poll later, dave's shell and carol's other login session's terminal still run.
      await sleep(2_500);
      assert.equal(daveShell.exitCode, null, daveShell.output().stderr);
      assert.equal(engine.live, 1);
      keptWeb.terminal.write(Buffer.from('echo still-$((20+22))\r'));
      await until('the kept terminal did not run the command', () => keptWeb.output().includes('still-42'));
    } finally {
      ssh.kill();
      daveShell.kill();
      keptWeb.terminal.close('test over');
    }
  });

  it('an admin disabling a user ends their sessions, and no one else\'s', async (t) => {
    const erin = await sys.user('erin', ['dev']);
    const ssh = await openShell(await erin.mint());
    const daveShell = await openShell(daveId);
    try {
      const t0 = Date.now();
      await sys.admin('PATCH', '/v1/admin/users/erin', { status: 'disabled' });
      const code = await exited(ssh);
      const elapsed = Date.now() - t0;
      t.diagnostic(`ended ${elapsed} ms after the request`);
      assert.ok(elapsed < ENDS_WITHIN_MS, `the session ended ${elapsed} ms after the user was disabled`);
      assert.equal(code, 255);
      assert.match(ssh.output().stderr, /portcullis: your login session [0-9a-f]{16} was revoked: account disabled/);
      await sleep(2_500);
      assert.equal(daveShell.exitCode, null, daveShell.output().stderr);
    } finally {
      ssh.kill();
      daveShell.kill();
    }
  });

  it('pcctl revoke --user ends the user\'s sessions and no one else\'s', async (t) => {
    const frank = await sys.user('frank', ['dev']);
    const ssh = await openShell(await frank.mint());
    const daveShell = await openShell(daveId);
    try {
      const t0 = Date.now();
      const r = await sys.admin<{ sessions_revoked: number }>('POST', '/v1/admin/revoke', { user: 'frank', reason: 'offboarded' });
      assert.equal(r.sessions_revoked, 1);
      const code = await exited(ssh);
      const elapsed = Date.now() - t0;
      t.diagnostic(`ended ${elapsed} ms after the request`);
      assert.ok(elapsed < ENDS_WITHIN_MS, `the session ended ${elapsed} ms after the revocation`);
      assert.equal(code, 255);
      // Whichever the proxy saw first ends it: the KRL listing the certificate, or the session lock.
      assert.match(ssh.output().stderr, /portcullis: (your login session [0-9a-f]{16} was revoked: offboarded|the certificate was revoked)/);
      await sleep(2_500);
      assert.equal(daveShell.exitCode, null, daveShell.output().stderr);
    } finally {
      ssh.kill();
      daveShell.kill();
    }
  });
});
