// Issue 4's list against the real system: auth (CA, users, roles, inventory, locks, KRL) over
// its HTTP API, redis-server, the proxy with its HTTP client, sshd targets enrolled through
// /v1/join, and stock ssh, scp and sftp. The proxy's own tests run the same flows against an
// in-memory stand-in for auth, fast; these prove the contract holds with the real one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSHD_PATH, freePort, hasTool, run, runOk } from '@portcullis/harness';
import { startSshAgent } from '../../packages/proxy/test/support/ssh-agent.js';
import type { SshAgent } from '../../packages/proxy/test/support/ssh-agent.js';
import { exited, startSystem } from './support/portcullis.js';
import type { Identity, System, UserHandle } from './support/portcullis.js';

const missing = [...['ssh', 'scp', 'sftp', 'ssh-agent', 'ssh-add', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Sends `data` to 127.0.0.1:port, retrying until something listens; returns the echo. */
async function echoThrough(port: number, data: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await new Promise<string>((resolve, reject) => {
        const s = connect(port, '127.0.0.1');
        let got = '';
        s.on('data', (b) => {
          got += b.toString();
          if (got.length >= data.length) s.end();
        });
        s.on('error', reject);
        s.on('close', () => (got === '' ? reject(new Error('closed without data')) : resolve(got)));
        s.write(data);
      });
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(50);
    }
  }
}

describe('proxy against the real auth service', { skip }, () => {
  let sys: System;
  let alice: UserHandle;
  let bob: UserHandle;
  let aliceId: Identity;
  let bobId: Identity;
  let echo: Server;
  let echoPort = 0;

  before(async () => {
    sys = await startSystem({ badTargets: true, proxy: { throttle: { baseDelayMs: 10, maxDelayMs: 50 } } });
    alice = await sys.user('alice', ['dev']);
    bob = await sys.user('bob', ['restricted']);
    aliceId = await alice.mint();
    bobId = await bob.mint();
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    const a = echo.address();
    echoPort = typeof a === 'object' && a !== null ? a.port : 0;
  });

  after(async () => {
    echo?.close();
    await sys?.stop();
  });

  const web01 = (): ReturnType<System['targets']['get']> & object => sys.targets.get('web01.example.test')!;

  it('runs a command through login%host with auth\'s minute-scale certificate; the target logs the user', async () => {
    const since = web01().log().length;
    const r = await sys.ssh({ user: 'root%web01', as: aliceId, command: 'echo out; echo err >&2; id -un; exit 3' });
    assert.equal(r.stdout, 'out\nroot\n');
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.code, 3);
    await web01().waitForLog(/Accepted publickey for root from \S+ port \d+ ssh2: ED25519-CERT SHA256:\S+ ID alice req=\S+ via=bastion\.example\.test/, { since });
    const start = await sys.waitForAudit('session.start', (e) => e.fields['user'] === 'alice');
    assert.equal(start.fields['host'], 'web01.example.test');
  });

  it('gives an interactive pty through login%host and through ssh -J', async () => {
    const pty = await sys.ssh({ user: 'root%web01', as: aliceId, args: ['-tt'], input: 'tty; echo "T=$TERM"; exit 0\n' });
    assert.equal(pty.code, 0, pty.stderr);
    assert.match(pty.stdout, /\/dev\/pts\/\d+/);
    assert.match(pty.stdout, /T=xterm-256color/);

    // ssh -J gives the jump hop no -o options: a config file carries them to both hops.
    const cfg = sys.dir.file('ssh_config_alice');
    writeFileSync(
      cfg,
      ['Host *', '  IdentitiesOnly yes', '  IdentityAgent none', `  IdentityFile ${aliceId.identity}`, `  CertificateFile ${aliceId.certificate}`, '  BatchMode yes',
        '  StrictHostKeyChecking yes', `  UserKnownHostsFile ${sys.knownHosts}`, '  GlobalKnownHostsFile /dev/null', '  LogLevel ERROR', ''].join('\n'),
    );
    const jump = ['-F', cfg, '-J', `alice@127.0.0.1:${sys.proxy.port}`];
    // `web01`, as typed: auth's jump certificate names it beside web01.example.test.
    const exec = await run('ssh', [...jump, 'root@web01', 'echo via jump; id -un']);
    assert.equal(exec.code, 0, exec.stderr);
    assert.equal(exec.stdout, 'via jump\nroot\n');
    const t = await run('ssh', [...jump, '-tt', 'root@web01.example.test'], { input: 'tty; exit 0\n' });
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /\/dev\/pts\/\d+/);
    await sys.waitForAudit('session.start', (e) => e.fields['route'] === 'jump' && e.fields['user'] === 'alice');
  });

  it('copies a file both ways with scp (SFTP and legacy) and sftp, identical sha256', async () => {
    const src = sys.dir.file('payload.bin');
    const data = randomBytes(5 * 1024 * 1024 + 3);
    writeFileSync(src, data);
    const opts = ['-F', '/dev/null', ...sys.sshOptions(aliceId), '-P', String(sys.proxy.port)];
    const remote = (name: string): string => `root%web01@127.0.0.1:${sys.dir.file(name)}`;
    for (const mode of [[], ['-O']]) {
      const tag = mode.length === 0 ? 'sftp' : 'legacy';
      const up = await run('scp', [...mode, ...opts, src, remote(`up-${tag}.bin`)]);
      assert.equal(up.code, 0, `scp ${tag} up: ${up.stderr}`);
      assert.equal(sha256(readFileSync(sys.dir.file(`up-${tag}.bin`))), sha256(data));
      const down = await run('scp', [...mode, ...opts, remote(`up-${tag}.bin`), sys.dir.file(`down-${tag}.bin`)]);
      assert.equal(down.code, 0, `scp ${tag} down: ${down.stderr}`);
      assert.equal(sha256(readFileSync(sys.dir.file(`down-${tag}.bin`))), sha256(data));
    }
    const batch = sys.dir.file('sftp-batch');
    writeFileSync(batch, `put ${src} ${sys.dir.file('sftp-up.bin')}\nget ${sys.dir.file('sftp-up.bin')} ${sys.dir.file('sftp-down.bin')}\n`);
    const s = await run('sftp', [...opts, '-b', batch, 'root%web01@127.0.0.1']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(sha256(readFileSync(sys.dir.file('sftp-down.bin'))), sha256(data));
  });

  it('carries -L and -R for a role that allows forwarding, refuses both for one that does not', async () => {
    const local = await freePort();
    const l = sys.spawnSsh({ user: 'root%web01', as: aliceId, args: ['-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${echoPort}`] });
    try {
      assert.equal(await echoThrough(local, 'through -L'), 'through -L');
    } finally {
      l.kill();
      await exited(l);
    }
    const remotePort = await freePort();
    const r = sys.spawnSsh({ user: 'root%web01', as: aliceId, args: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${remotePort}:127.0.0.1:${echoPort}`] });
    try {
      assert.equal(await echoThrough(remotePort, 'through -R'), 'through -R');
    } finally {
      r.kill();
      await exited(r);
    }

    const w = await sys.ssh({ user: 'root%web01', as: bobId, args: ['-W', `127.0.0.1:${echoPort}`], input: 'x' });
    assert.equal(w.code, 255);
    const refusedR = await sys.ssh({ user: 'root%web01', as: bobId, args: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${await freePort()}:127.0.0.1:${echoPort}`] });
    assert.equal(refusedR.code, 255);
    assert.match(refusedR.stderr, /remote port forwarding failed/);
    const refused = sys.audit.filter((e) => e.name === 'session.port_forward' && e.fields['allowed'] === false && e.fields['user'] === 'bob');
    assert.equal(refused.length, 2);
    assert.equal((await sys.ssh({ user: 'root%web01', as: bobId, command: 'echo bob here' })).stdout, 'bob here\n');
  });

  it('forwards the agent (ssh -A): ssh-add -l on the target lists the client\'s key; not for a role without it', async () => {
    let agent: SshAgent | undefined;
    try {
      agent = await startSshAgent(sys.dir.file('agent.sock'));
      const fp = await agent.addNewKey(sys.dir.file('agent_key'));
      // OpenSSH forwards only an agent it can reach itself: IdentityAgent names it.
      const withAgent = ['-o', `IdentityAgent=${agent.socket}`, '-o', 'ForwardAgent=yes'];
      const r = await sys.ssh({ user: 'root%web01', as: aliceId, args: withAgent, command: 'ssh-add -l' });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.includes(fp), r.stdout);
      const no = await sys.ssh({ user: 'root%web01', as: bobId, args: withAgent, command: 'ssh-add -l 2>&1; echo "exit=$?"' });
      assert.match(no.stdout, /Could not open a connection to your authentication agent[\s\S]*exit=2/);
    } finally {
      await agent?.stop();
    }
  });

  describe('refusals', () => {
    const refusedAt = (reason: string) => (e: { fields: Record<string, unknown> }) => e.fields['stage'] === 'auth' && e.fields['reason'] === reason;

    async function refused(id: { identity: string; certificate?: string }, user = 'root%web01'): Promise<void> {
      const r = await sys.ssh({ user, as: id, command: 'true' });
      assert.equal(r.code, 255);
      assert.match(r.stderr, /Permission denied \(publickey\)/);
    }

    it('an expired certificate', async () => {
      // Minted by auth with its clock two hours back: valid for 5 minutes, long ago.
      sys.authClock.offset = -2 * 3600_000;
      let old: Identity;
      try {
        old = await alice.mint({ ttl: 300, tag: 'expired' });
      } finally {
        sys.authClock.offset = 0;
      }
      await refused(old);
      await sys.waitForAudit('session.refused', refusedAt('ERR_EXPIRED'));
    });

    it('a certificate from a CA auth does not hold', async () => {
      const d = sys.dir;
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', d.file('foreign_user_ca')]);
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', d.file('foreign_id')]);
      await runOk('ssh-keygen', ['-q', '-s', d.file('foreign_user_ca'), '-I', 'alice req=forged', '-n', 'root', '-V', '-5m:+10m', d.file('foreign_id.pub')]);
      await refused({ identity: d.file('foreign_id'), certificate: d.file('foreign_id-cert.pub') });
      await sys.waitForAudit('session.refused', refusedAt('ERR_UNTRUSTED_CA'));
    });

    it('a certificate revoked through the admin API: refused by auth on the very next connection, then by the proxy\'s own KRL', async () => {
      const id = await alice.mint({ tag: 'revoked' });
      assert.equal((await sys.ssh({ user: 'root%web01', as: id, command: 'echo before' })).stdout, 'before\n');
      await sys.admin('POST', '/v1/admin/revoke', { serial: id.serial, reason: 'laptop stolen' });
      // No wait for the proxy's KRL poll (2 s): the proxy names the client certificate to auth in
      // its access check, and auth refuses a revoked one at once. (Should the poll land within
      // the connection's first milliseconds, the proxy's own KRL refuses it instead: also at once.)
      const r = await sys.ssh({ user: 'root%web01', as: id, command: 'echo after' });
      assert.equal(r.code, 255, r.stderr);
      assert.match(r.stderr, /Permission denied/);
      await sys.waitForAudit(
        'session.refused',
        (e) => refusedAt('ERR_REVOKED')(e) || (refusedAt('ERR_ACCESS_DENIED')(e) && new RegExp(`serial ${id.serial}.* is revoked`).test(String(e.fields['message']))),
      );
      // Once the KRL reaches the proxy, it refuses the certificate itself, before asking auth.
      const deadline = Date.now() + 10_000;
      while (!sys.audit.some((e) => e.name === 'session.refused' && refusedAt('ERR_REVOKED')(e)) && Date.now() < deadline) {
        assert.equal((await sys.ssh({ user: 'root%web01', as: id, command: 'true' })).code, 255);
      }
      await sys.waitForAudit('session.refused', refusedAt('ERR_REVOKED'));
      // Her other certificate is untouched.
      assert.equal((await sys.ssh({ user: 'root%web01', as: aliceId, command: 'echo still' })).stdout, 'still\n');
    });

    it('a login that is not among the certificate\'s principals', async () => {
      await refused(aliceId, 'ubuntu%web01');
      await sys.waitForAudit('session.refused', refusedAt('ERR_WRONG_PRINCIPAL'));
    });

    const targets = [
      { host: 'rogue', message: /presented a host certificate that is refused: .*not a trusted CA.*man-in-the-middle/ },
      { host: 'plain', message: /presented a plain host key \(ssh-ed25519 SHA256:\S+\), not a host certificate.*man-in-the-middle/ },
    ];
    for (const t of targets) {
      it(`a target that cannot prove it is the enrolled host (${t.host})`, async () => {
        const r = await sys.ssh({ user: `root%${t.host}`, as: aliceId, command: 'true' });
        assert.equal(r.code, 255);
        assert.match(r.stderr, t.message);
        const e = await sys.waitForAudit('session.refused', (a) => a.fields['reason'] === 'ERR_HOST_KEY' && String(a.fields['host']).startsWith(t.host));
        assert.equal(e.fields['stage'], 'upstream');
      });
    }

    it('an unknown host and a locked user, with auth\'s reasons', async () => {
      const r = await sys.ssh({ user: 'root%nosuchhost', as: aliceId, command: 'true' });
      assert.equal(r.code, 255);
      assert.match(r.stderr, /host "nosuchhost" is not registered with portcullis/);
    });
  });

  it('ends a live session within seconds of a lock placed through the admin API', async () => {
    const carol = await sys.user('carol', ['dev']);
    const id = await carol.mint();
    const ssh = sys.spawnSsh({ user: 'root%web01', as: id, command: 'echo started; sleep 60' });
    try {
      while (!ssh.output().stdout.includes('started')) {
        assert.equal(ssh.exitCode, null, ssh.output().stderr);
        await sleep(20);
      }
      const t0 = Date.now();
      await sys.admin('POST', '/v1/admin/locks', { target: { kind: 'user', name: 'carol' }, message: 'security incident 42' });
      const code = await exited(ssh);
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 5_000, `the session ended ${elapsed} ms after the lock`);
      assert.equal(code, 255);
      assert.match(ssh.output().stderr, /portcullis: user "carol" was locked: security incident 42/);
      const t = await sys.waitForAudit('session.terminated', (e) => e.fields['user'] === 'carol');
      assert.equal(t.fields['reason'], 'lock');
      // And she cannot come back while the lock holds: auth refuses her access.
      const again = await sys.ssh({ user: 'root%web01', as: id, command: 'true' });
      assert.equal(again.code, 255);
      const refusedLocked = await sys.waitForAudit('session.refused', (e) => e.fields['reason'] === 'ERR_ACCESS_DENIED' && /carol/.test(String(e.fields['message'])));
      assert.match(String(refusedLocked.fields['message']), /lock/i);
    } finally {
      ssh.kill();
    }
  });
});
