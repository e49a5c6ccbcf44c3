// The proxy between stock OpenSSH clients (ssh, scp, sftp) and a real sshd, target named in the
// user name (`ssh -p PORT root%web01@127.0.0.1`). auth is the in-memory stand-in
// (support/authority.ts); every SSH byte is real.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, hasTool, run } from '@portcullis/harness';
import { access, exited, skipWithoutOpenSsh, startFixture } from './support/fixture.js';
import type { Fixture, Identity } from './support/fixture.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Sends `data` to 127.0.0.1:port and returns what comes back before the peer closes. */
function roundTrip(port: number, data: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no echo from ${port} within ${timeoutMs} ms (got ${JSON.stringify(got)})`));
    }, timeoutMs);
    s.on('data', (b) => {
      got += b.toString();
      if (got.length >= data.length) s.end();
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.write(data);
  });
}

/** Retries until something listens on the port (ssh sets forwards up after logging in). */
async function roundTripWhenListening(port: number, data: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await roundTrip(port, data);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(50);
    }
  }
}

describe('proxy: sessions through login%host', { skip: skipWithoutOpenSsh }, () => {
  let f: Fixture;
  let alice: Identity;
  let echo: Server;
  let echoPort = 0;

  before(async () => {
    f = await startFixture({ users: [access('alice'), access('bob', { portForwarding: false })] });
    alice = f.identity('alice', { principals: ['root'], permissions: { portForwarding: true } });
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    const a = echo.address();
    echoPort = typeof a === 'object' && a !== null ? a.port : 0;
  });

  after(async () => {
    echo?.close();
    await f?.stop();
  });

  it('runs a command as the login with its exit status, stdout and stderr apart; the target logs the user', async () => {
    const since = f.web01.log().length;
    const r = await f.ssh({ user: 'root%web01', as: alice, command: 'echo out; echo err >&2; id -un; exit 3' });
    assert.equal(r.stdout, 'out\nroot\n');
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.code, 3);
    // sshd names the upstream certificate: key id starts with the user, principal is the login.
    const m = await f.web01.waitForLog(/Accepted publickey for root from \S+ port \d+ ssh2: ED25519-CERT SHA256:\S+ ID (alice req=\S+ via=test-proxy)/, { since });
    assert.ok(m[1]);
    assert.deepEqual(f.authority.upstreamRequests.at(-1), { user: 'alice', login: 'root', host: 'web01.example.test' });
  });

  it('relays 4 MiB of stdin through cat and back unchanged, EOF included', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const r = await f.ssh({ user: 'root%web01', as: alice, command: 'cat', input: data, timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdoutBytes.length, data.length);
    assert.equal(sha256(r.stdoutBytes), sha256(data));
  });

  it('passes exit-signal when the remote process is killed', async () => {
    const r = await f.ssh({ user: 'root%web01', as: alice, command: 'kill -TERM $$' });
    assert.equal(r.code, 255);
    const end = await f.waitForAudit('session.end', (e) => e.fields['exitSignal'] === 'TERM');
    assert.equal(end.fields['exitStatus'], undefined);
  });

  it('gives an interactive pty (ssh -tt) with TERM, and passes only allowed environment variables', async () => {
    const r = await f.ssh({
      user: 'root%web01',
      as: alice,
      args: ['-tt', '-o', 'SendEnv=LANG', '-o', 'SetEnv=FOO=bar LC_TEST=ok'],
      input: 'tty; echo "T=$TERM L=$LANG F=$FOO C=$LC_TEST"; exit 0\n',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\/dev\/pts\/\d+/);
    // FOO is not on the allow-list; LC_* is, but this sshd's AcceptEnv takes LC_TEST too.
    assert.match(r.stdout, /T=xterm-256color L=C\.UTF-8 F= C=ok/);
    const exec = await f.waitForAudit('session.exec', (e) => e.fields['kind'] === 'shell');
    assert.equal(exec.fields['pty'], true);
  });

  it('follows window-change: a tmux resize reaches the remote terminal', { skip: hasTool('tmux') ? false : 'needs tmux' }, async () => {
    const sock = `pc-proxy-${process.pid}`;
    const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
    const cmd = ['ssh', ...f.sshOptions(alice), '-tt', '-p', String(f.proxy.port), 'root%web01@127.0.0.1'].map(q).join(' ');
    const tmux = (...args: string[]): ReturnType<typeof run> => run('tmux', ['-L', sock, '-f', '/dev/null', ...args]);
    try {
      assert.equal((await tmux('new-session', '-d', '-s', 't', '-x', '100', '-y', '30', cmd)).code, 0);
      const size = async (expect: string): Promise<void> => {
        const deadline = Date.now() + 8_000;
        for (;;) {
          await tmux('send-keys', '-t', 't', 'stty size', 'Enter');
          await sleep(200);
          const pane = (await tmux('capture-pane', '-p', '-t', 't')).stdout;
          if (pane.includes(expect)) return;
          if (Date.now() > deadline) assert.fail(`no "${expect}" in the pane:\n${pane}`);
        }
      };
      await size('30 100');
      await tmux('resize-window', '-t', 't', '-x', '120', '-y', '40');
      await size('40 120');
      await tmux('send-keys', '-t', 't', 'exit', 'Enter');
    } finally {
      await tmux('kill-server');
    }
  });

  it('copies a file both ways with scp and sftp, byte for byte', async () => {
    const src = f.dir.file('payload.bin');
    const data = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(src, data);
    const opts = [...f.sshOptions(alice), '-P', String(f.proxy.port)];
    const remote = (name: string): string => `root%web01@127.0.0.1:${f.dir.file(name)}`;
    // scp speaks SFTP by default (OpenSSH >= 9.0); -O is the old scp protocol over exec.
    for (const mode of [[], ['-O']]) {
      const tag = mode.length === 0 ? 'sftp' : 'legacy';
      const up = await run('scp', [...mode, ...opts, src, remote(`scp-up-${tag}.bin`)]);
      assert.equal(up.code, 0, `scp ${tag} upload: ${up.stderr}`);
      assert.equal(sha256(readFileSync(f.dir.file(`scp-up-${tag}.bin`))), sha256(data));
      const down = await run('scp', [...mode, ...opts, remote(`scp-up-${tag}.bin`), f.dir.file(`scp-down-${tag}.bin`)]);
      assert.equal(down.code, 0, `scp ${tag} download: ${down.stderr}`);
      assert.equal(sha256(readFileSync(f.dir.file(`scp-down-${tag}.bin`))), sha256(data));
    }
    const batch = f.dir.file('sftp-batch');
    writeFileSync(batch, `put ${src} ${f.dir.file('sftp-up.bin')}\nget ${f.dir.file('sftp-up.bin')} ${f.dir.file('sftp-down.bin')}\n`);
    const s = await run('sftp', [...opts, '-b', batch, 'root%web01@127.0.0.1']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(sha256(readFileSync(f.dir.file('sftp-up.bin'))), sha256(data));
    assert.equal(sha256(readFileSync(f.dir.file('sftp-down.bin'))), sha256(data));
    await f.waitForAudit('session.exec', (e) => e.fields['subsystem'] === 'sftp');
  });

  it('carries -W and -L port forwards when the certificate and the roles allow them', async () => {
    const w = await f.ssh({ user: 'root%web01', as: alice, args: ['-W', `127.0.0.1:${echoPort}`], input: 'through -W\n' });
    assert.equal(w.code, 0, w.stderr);
    assert.equal(w.stdout, 'through -W\n');

    const local = await freePort();
    const ssh = f.spawnSsh({ user: 'root%web01', as: alice, args: ['-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${echoPort}`] });
    try {
      assert.equal(await roundTripWhenListening(local, 'through -L'), 'through -L');
    } finally {
      ssh.kill();
      await exited(ssh);
    }
    const fwd = await f.waitForAudit('session.port_forward', (e) => e.fields['direction'] === 'local' && e.fields['allowed'] === true);
    assert.equal(fwd.fields['destination'], `127.0.0.1:${echoPort}`);
  });

  it('carries a -R forward: the target listens and connections come back to the client', async () => {
    const remotePort = await freePort();
    const ssh = f.spawnSsh({ user: 'root%web01', as: alice, args: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${remotePort}:127.0.0.1:${echoPort}`] });
    try {
      assert.equal(await roundTripWhenListening(remotePort, 'through -R'), 'through -R');
      assert.equal(await roundTrip(remotePort, 'again'), 'again');
    } finally {
      ssh.kill();
      await exited(ssh);
    }
    await f.waitForAudit('session.port_forward', (e) => e.fields['direction'] === 'remote' && e.fields['allowed'] === true);
  });

  it('refuses -W, -L and -R when the roles forbid forwarding or the certificate lacks permit-port-forwarding', async () => {
    const bob = f.identity('bob', { principals: ['root'], permissions: { portForwarding: true } });
    const noPermit = f.identity('alice', { principals: ['root'], permissions: { portForwarding: false }, name: 'alice-nofwd' });
    for (const who of [bob, noPermit]) {
      const w = await f.ssh({ user: 'root%web01', as: who, args: ['-W', `127.0.0.1:${echoPort}`], input: 'x' });
      assert.equal(w.code, 255);
      assert.match(w.stderr, /stdio forwarding failed|open failed/);
      const remotePort = await freePort();
      const r = await f.ssh({ user: 'root%web01', as: who, args: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${remotePort}:127.0.0.1:${echoPort}`] });
      assert.equal(r.code, 255);
      assert.match(r.stderr, /remote port forwarding failed/);
      // The session itself still works.
      assert.equal((await f.ssh({ user: 'root%web01', as: who, command: 'echo still here' })).stdout, 'still here\n');
    }
    const refused = f.audit.filter((e) => e.name === 'session.port_forward' && e.fields['allowed'] === false);
    assert.ok(refused.length >= 4, `expected 4 refused forwards, got ${refused.length}`);
    assert.ok(refused.every((e) => e.severity === 'warning'));
  });

  it("runs the certificate's force-command whatever the client asked, with SSH_ORIGINAL_COMMAND", async () => {
    const forced = f.identity('alice', { principals: ['root'], permissions: { forceCommand: 'echo "forced [$SSH_ORIGINAL_COMMAND]"' }, name: 'alice-forced' });
    const r = await f.ssh({ user: 'root%web01', as: forced, command: 'rm -rf /nothing' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'forced [rm -rf /nothing]\n');
    const e = await f.waitForAudit('session.exec', (a) => a.fields['forcedCommand'] !== undefined);
    assert.equal(e.fields['command'], 'rm -rf /nothing');
  });

  it('refuses a pty to a certificate without permit-pty', async () => {
    const noPty = f.identity('alice', { principals: ['root'], permissions: { pty: false }, name: 'alice-nopty' });
    // ssh -tt treats a refused pty as fatal (OpenSSH: "a TTY was explicitly requested").
    const r = await f.ssh({ user: 'root%web01', as: noPty, args: ['-tt'], input: '', command: 'tty' });
    assert.equal(r.code, 255);
    assert.match(r.stderr, /PTY allocation request failed/);
    const plain = await f.ssh({ user: 'root%web01', as: noPty, command: 'tty || echo no tty' });
    assert.equal(plain.stdout, 'not a tty\nno tty\n');
    assert.match(await f.proxy.metrics.text(), /^portcullis_proxy_channel_refusals_total\{kind="pty"\} [1-9]/m);
  });

  it('counts sessions, bytes, dial latency and certificate logins in metrics', async () => {
    const text = await f.proxy.metrics.text();
    assert.match(text, /^ssh_cert_auth_total\{result="success"\} [1-9]\d*$/m);
    assert.match(text, /^portcullis_proxy_bytes_total\{direction="to_client"\} [1-9]/m);
    assert.match(text, /^portcullis_proxy_bytes_total\{direction="to_target"\} [1-9]/m);
    assert.match(text, /^portcullis_proxy_dial_duration_seconds_count\{result="ok"\} [1-9]/m);
    assert.match(text, /^portcullis_proxy_sessions_total [1-9]/m);
    assert.match(text, /^portcullis_proxy_active_sessions \d+$/m);
    // Audit: every session that started ended, with bytes each way.
    const ends = f.audit.filter((e) => e.name === 'session.end');
    assert.ok(ends.length > 5);
    assert.ok(ends.some((e) => Number(e.fields['bytesToTarget']) >= 4 * 1024 * 1024));
  });

  // Last: stops the proxy.
  it('drains on stop: a running session finishes, new connections are refused', async () => {
    const running = f.ssh({ user: 'root%web01', as: alice, command: 'sleep 1; echo finished' });
    await f.waitForAudit('session.exec', (e) => e.fields['command'] === 'sleep 1; echo finished');
    const stopped = f.proxy.stop({ graceMs: 10_000 });
    await sleep(100);
    const late = await f.ssh({ user: 'root%web01', as: alice, command: 'true' });
    assert.equal(late.code, 255);
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'finished\n');
    await stopped;
    assert.equal(f.proxy.activeSessions(), 0);
  });
});
