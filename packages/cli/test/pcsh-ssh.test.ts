import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@portcullis/harness';
import { cli, fails, ok } from './pcsh-login-fixture.js';
import { startSshWorld, type SshWorld } from './pcsh-ssh-fixture.js';

/*
 * pcsh ssh, scp, proxy ssh and play as a user runs them: the real pcsh and pcctl binaries,
 * stock OpenSSH, the real proxy and auth, and an sshd enrolled through auth. The tests share
 * one world and run in order: the revoke and lock tests change carol's standing last.
 */

let w: SshWorld;
/** A recorded session a few seconds long (from the join test), for the player's keys. */
let liveId: string | undefined;
before(async () => {
  w = await startSshWorld('pcsh-ssh-');
});
after(async () => {
  await w?.stop();
});

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

test('pcsh ssh host command: the output and the exit status of the remote command', async () => {
  const r = await cli('pcsh', w.carol, ['ssh', 'root@web01', 'echo remote-said-$((40+2)); exit 7']);
  assert.equal(r.code, 7, r.stderr);
  assert.match(r.stdout, /remote-said-42/);
  // Without login@ the certificate's login is used.
  const r2 = await ok('pcsh', w.carol, ['ssh', 'web01', '--', 'id', '-un']);
  assert.equal(r2.stdout.trim(), 'root');
});

test('pcsh ssh -l label=value runs on every matching host with prefixed output', async () => {
  const r = await ok('pcsh', w.carol, ['ssh', '-l', 'env=dev', 'echo', 'fleet-ok']);
  assert.match(r.stdout, /^\[web01\] fleet-ok$/m);
  await fails('pcsh', w.carol, ['ssh', '-l', 'env=nowhere', 'true'], 5, /no host you may reach has the labels env=nowhere/);
});

test('pcsh scp copies a file both ways unchanged', async () => {
  const local = w.stack.dir.file('upload.bin');
  writeFileSync(local, randomBytes(300_000));
  await ok('pcsh', w.carol, ['scp', '-q', local, 'web01:/tmp/pcsh-scp-test.bin']);
  const back = w.stack.dir.file('download.bin');
  await ok('pcsh', w.carol, ['scp', '-q', 'root@web01:/tmp/pcsh-scp-test.bin', back]);
  assert.equal(sha256(back), sha256(local));
});

test('a plain ssh web01 works after pcsh config (ssh -F with the printed block)', async () => {
  const block = (await ok('pcsh', w.carol, ['config'])).stdout;
  assert.match(block, /ProxyCommand .*pcsh.* proxy ssh %r@%h:%p/);
  const config = w.stack.dir.file('ssh_config');
  writeFileSync(config, block);
  const r = await run('ssh', ['-F', config, '-o', 'BatchMode=yes', 'root@web01', 'echo plain-ssh-ok'], { env: w.carol.env, timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /plain-ssh-ok/);
});

test('interactive pcsh ssh in tmux: what is typed runs and shows on the screen', async () => {
  const session = `pcsh-${process.pid}`;
  const env = Object.entries({ ...w.carol.env, TERM: 'xterm-256color' }).map(([k, v]) => `${k}=${v ?? ''}`);
  const bin = new URL('../bin/pcsh', import.meta.url).pathname;
  const tmux = (...args: string[]): string => {
    const r = spawnSync('tmux', ['-L', session, ...args], { encoding: 'utf8' });
    return r.stdout;
  };
  tmux('new-session', '-d', '-x', '100', '-y', '30', 'env', '-i', ...env, bin, 'ssh', 'root@web01');
  try {
    const screen = async (pattern: RegExp): Promise<string> => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const text = tmux('capture-pane', '-p');
        if (pattern.test(text)) return text;
        if (Date.now() > deadline) throw new Error(`no ${pattern} on the screen:\n${text}`);
        await sleep(100);
      }
    };
    await screen(/[#$] ?$/m);
    tmux('send-keys', 'echo typed-$((6*7))', 'Enter');
    await screen(/^typed-42$/m);
    tmux('send-keys', 'exit', 'Enter');
  } finally {
    await sleep(300);
    tmux('kill-server');
  }
});

test('pcsh play replays what was just recorded; recordings ls finds it', async () => {
  await ok('pcsh', w.carol, ['ssh', 'root@web01', 'echo recorded-marker-$((7*6))']);
  const redis = ['--redis', w.stack.redis.url];
  let id: string | undefined;
  for (let i = 0; i < 50 && id === undefined; i++) {
    const list = JSON.parse((await ok('pcsh', w.admin, ['recordings', 'ls', '--json', '--user', 'carol', ...redis])).stdout) as { id: string; command?: string; state: string }[];
    id = list.find((r) => r.command?.includes('recorded-marker') === true && r.state === 'ended')?.id;
    if (id === undefined) await sleep(100);
  }
  assert.ok(id, 'the exec session is listed');
  const played = await ok('pcsh', w.admin, ['play', id, '--speed', 'max', '--no-keys', ...redis]);
  assert.match(played.stdout, /recorded-marker-42/);
  const text = await ok('pcctl', w.admin, ['recordings', 'export', id, '--format', 'text', ...redis]);
  assert.match(text.stdout, /recorded-marker-42/);
  // Signed by auth when the session ended (retried until it is).
  let verified = await cli('pcctl', w.admin, ['recordings', 'verify', id, ...redis]);
  for (let i = 0; i < 30 && verified.code !== 0; i++) {
    await sleep(200);
    verified = await cli('pcctl', w.admin, ['recordings', 'verify', id, ...redis]);
  }
  assert.equal(verified.code, 0, verified.stderr);
  assert.match(verified.stdout, /digest chain and auth's signature verify/);
  await fails('pcsh', w.admin, ['play', 'nosuchrecording', '--no-keys', ...redis], 5, /no recording nosuchrecording/);
});

test('bad input: one line, a non-zero exit, no stack trace', async () => {
  await fails('pcsh', w.carol, ['ssh', 'root@nohost', 'true'], 5, /no host nohost among the hosts you may reach/);
  // ssh's own status for a connection that never came up is 255; the reason is pcsh's one line.
  await fails('pcsh', w.carol, ['ssh', 'root@web01', 'true'], 255, /cannot reach the proxy at 127\.0\.0\.1:1/, { env: { PCSH_PROXY: '127.0.0.1:1' } });
  await fails('pcsh', w.carol, ['proxy', 'ssh', 'root@web01:22'], 2, /proxy address/, { env: { PCSH_PROXY: 'not a host:99999' } });
  const nobody = { ...w.carol, env: { ...w.carol.env, PCSH_HOME: w.stack.dir.file('nobody') } };
  await fails('pcsh', nobody, ['ssh', 'web01', 'true'], 3, /not logged in/);
});

test('pcsh join shows a live session as it happens; sessions ls lists it', async () => {
  const redis = ['--redis', w.stack.redis.url];
  const bin = new URL('../bin/pcsh', import.meta.url).pathname;
  const child = spawn(bin, ['ssh', 'root@web01', 'sleep 2; echo live-marker-$((3*3)); sleep 2'], { env: w.carol.env, stdio: 'ignore' });
  const ended = new Promise((resolve) => child.once('exit', resolve));
  let id: string | undefined;
  for (let i = 0; i < 50 && id === undefined; i++) {
    const live = JSON.parse((await ok('pcsh', w.admin, ['sessions', 'ls', '--json', ...redis])).stdout) as { id: string; command?: string }[];
    id = live.find((r) => r.command?.includes('live-marker') === true)?.id;
    if (id === undefined) await sleep(100);
  }
  assert.ok(id, 'the live session is listed');
  const joined = await ok('pcsh', w.admin, ['join', id, ...redis]);
  assert.match(joined.stdout, /live-marker-9/);
  await ended;
  liveId = id;
});

test('pcsh play keys in a terminal: space pauses and resumes, q quits', async () => {
  assert.ok(liveId, 'the join test recorded a session');
  const session = `pcsh-play-${process.pid}`;
  const bin = new URL('../bin/pcsh', import.meta.url).pathname;
  const env = Object.entries({ ...w.admin.env, TERM: 'xterm-256color' }).map(([k, v]) => `${k}=${v ?? ''}`);
  const tmux = (...args: string[]): string => spawnSync('tmux', ['-L', session, ...args], { encoding: 'utf8' }).stdout;
  const script = `${bin} play ${liveId} --redis ${w.stack.redis.url}; echo PLAY-EXITED-$?; sleep 30`;
  tmux('new-session', '-d', '-x', '100', '-y', '30', 'env', '-i', ...env, 'sh', '-c', script);
  try {
    const screen = async (pattern: RegExp, timeoutMs = 20_000): Promise<string> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = tmux('capture-pane', '-p');
        if (pattern.test(text)) return text;
        if (Date.now() > deadline) throw new Error(`no ${pattern} on the screen:\n${text}`);
        await sleep(100);
      }
    };
    // The marker comes about 2 s into the recording; paused at once, it must not show.
    await sleep(700);
    tmux('send-keys', ' ');
    await sleep(3_000);
    assert.doesNotMatch(tmux('capture-pane', '-p'), /live-marker-9/);
    tmux('send-keys', ' ');
    await screen(/live-marker-9/);
    tmux('send-keys', 'q');
    await screen(/PLAY-EXITED-0/);
  } finally {
    tmux('kill-server');
  }
});

test('an expired login is one line before ssh starts', async () => {
  w.stack.clock.offset = 13 * 3600_000;
  try {
    await fails('pcsh', w.carol, ['ssh', 'root@web01', 'true'], 3, /has expired or was revoked; run pcsh login/);
  } finally {
    w.stack.clock.offset = 0;
  }
});

test('pcctl revoke refuses the next connection with that certificate', async () => {
  const status = JSON.parse((await ok('pcsh', w.carol, ['status', '--json'])).stdout) as { certificate: { serial: string } };
  await ok('pcctl', w.admin, ['revoke', '--serial', status.certificate.serial, '--reason', 'test']);
  // The proxy polls the KRL every 2 s.
  let r = await cli('pcsh', w.carol, ['ssh', 'root@web01', 'true']);
  for (let i = 0; i < 30 && r.code === 0; i++) {
    await sleep(200);
    r = await cli('pcsh', w.carol, ['ssh', 'root@web01', 'true']);
  }
  assert.notEqual(r.code, 0);
  // The proxy checks the certificate twice: on pcsh's tunnel and again on the SSH connection
  // inside it. If the KRL refresh lands between the two, the inner one is refused and ssh says
  // so itself; either way it is the proxy refusing the revoked certificate.
  assert.match(r.stderr, /^pcsh: the proxy at .* refused your certificate|^root@web01: Permission denied \(publickey\)/m);
  // A fresh certificate works again.
  await ok('pcsh', w.carol, ['certificate', 'ensure', '--force']);
  await ok('pcsh', w.carol, ['ssh', 'root@web01', 'true']);
});

test('pcctl lock cuts a live pcsh ssh session', async () => {
  const bin = new URL('../bin/pcsh', import.meta.url).pathname;
  const child = spawn(bin, ['ssh', 'root@web01', 'echo started; sleep 60'], { env: w.carol.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  while (!out.includes('started')) {
    assert.ok(Date.now() < deadline, 'the session started');
    await sleep(50);
  }
  const t0 = Date.now();
  await ok('pcctl', w.admin, ['lock', '--user', 'carol', '--ttl', '1m', '--message', 'incident']);
  const code = await exited;
  assert.notEqual(code, 0);
  assert.ok(Date.now() - t0 < 15_000, 'cut within the lock poll interval');
});
