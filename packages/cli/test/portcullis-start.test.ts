import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AuthClient } from '@portcullis/auth';
import { run, tempDir } from '@portcullis/harness';

/*
 * `portcullis start` as an operator runs it: the real binary, an empty state directory, the
 * embedded Redis. It must come up, answer auth's health check and an SSH handshake on the
 * proxy (host certificate from the host CA it just made), print the next steps, and stop
 * cleanly on SIGTERM; a malformed config is one line naming the key.
 */

const BIN = fileURLToPath(new URL('../bin/portcullis', import.meta.url));

test('portcullis start: first start on an empty state, health, an SSH handshake, clean SIGTERM', async () => {
  const dir = tempDir('pc-start-');
  try {
    const config = dir.file('portcullis.yaml');
    writeFileSync(config, ['state_dir: ./state', 'services: [auth, proxy]', 'auth:', '  listen: 127.0.0.1:0', 'proxy:', '  listen: 127.0.0.1:0', '  name: bastion-test', '  drain_grace: 2s', ''].join('\n'));
    const child = spawn(BIN, ['start', '--config', config], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir.path }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 60_000;
      while (!/portcullis: running/.test(err)) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `portcullis start did not come up:\n${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(err, /First start: what to do next/);
      assert.match(err, /pcsh login --auth https:\/\/127\.0\.0\.1:\d+ --fingerprint [0-9A-F:]+ --user admin/);
      const url = /auth: listening on (https:\/\/[^ ]+) \(TLS certificate SHA-256 ([0-9A-F:]+)/.exec(err);
      assert.ok(url, err);
      const health = await new AuthClient({ url: url[1]!, fingerprint: url[2]! }).request('GET', '/v1/health');
      assert.equal(health.status, 200);

      // An SSH handshake with the proxy, its host certificate checked against the new host CA.
      const port = /proxy: listening on 127\.0\.0\.1:(\d+)/.exec(err)?.[1];
      assert.ok(port, err);
      const knownHosts = dir.file('state/proxy/known_hosts');
      assert.ok(existsSync(knownHosts));
      const ssh = await run('ssh', ['-F', '/dev/null', '-p', port, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'IdentitiesOnly=yes', '-o', 'IdentityFile=/dev/null', 'nobody@127.0.0.1', 'true'], { timeoutMs: 15_000 });
      assert.match(ssh.stderr, /Permission denied/, `the host was verified and userauth reached: ${ssh.stderr}`);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, err);
    assert.match(err, /portcullis: stopped/);
  } finally {
    dir.remove();
  }
});

/** A running `portcullis start`, its stderr read as it comes. */
function startService(args: readonly string[], home: string): { err(): string; until(re: RegExp): Promise<RegExpMatchArray>; stop(): Promise<number | null> } {
  const child = spawn(BIN, ['start', ...args], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    err: () => err,
    async until(re) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const m = re.exec(err);
        if (m) return m;
        assert.ok(Date.now() < deadline && child.exitCode === null, `no ${re}:\n${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

test('portcullis start --roles: auth on its own, then a proxy alone enrolled with a join token', async () => {
  const dir = tempDir('pc-split-');
  try {
    const authConfig = dir.file('auth.yaml');
    writeFileSync(authConfig, ['state_dir: ./auth-machine', 'auth:', '  listen: 127.0.0.1:0', ''].join('\n'));
    const auth = startService(['--config', authConfig, '--roles', 'auth'], dir.path);
    try {
      const [, url, fingerprint] = await auth.until(/auth: listening on (https:\/\/[^ ]+) \(TLS certificate SHA-256 ([0-9A-F:]+)/);
      await auth.until(/portcullis: running auth \(/);
      const invite = /\/invite#([A-Za-z0-9_-]+)/.exec(auth.err())?.[1];
      assert.ok(invite, auth.err());
      const client = new AuthClient({ url: url!, fingerprint: fingerprint! });
      assert.equal((await client.request('POST', '/v1/invites/accept', { json: { token: invite, password: 'split-admin-password' } })).status, 200);
      const login = await client.request<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: 'split-admin-password' } });
      const made = await client.request<{ token: string }>('POST', '/v1/admin/tokens', { token: login.body.token, json: { type: 'proxy' } });
      assert.equal(made.status, 200, made.bytes.toString());

      const proxyConfig = dir.file('proxy.yaml');
      const socket = dir.file('auth-machine/auth/redis/redis.sock');
      writeFileSync(
        proxyConfig,
        ['state_dir: ./proxy-machine', 'proxy:', '  listen: 127.0.0.1:0', '  name: bastion-2', `  join_token: ${made.body.token}`, '  auth:', `    url: ${url}`, `    fingerprint: "${fingerprint}"`, '  redis:', `    url: unix://${socket}`, ''].join('\n'),
      );
      const proxy = startService(['--config', proxyConfig, '--roles', 'proxy'], dir.path);
      try {
        await proxy.until(/proxy: enrolled with auth as bastion-2/);
        await proxy.until(/portcullis: running proxy \(/);
        assert.doesNotMatch(proxy.err(), /First start/);
      } finally {
        assert.equal(await proxy.stop(), 0, proxy.err());
      }
    } finally {
      assert.equal(await auth.stop(), 0, auth.err());
    }
  } finally {
    dir.remove();
  }
});

test('portcullis start: a malformed config is one line naming the key, exit 6', async () => {
  const dir = tempDir('pc-start-bad-');
  try {
    const config = dir.file('bad.yaml');
    writeFileSync(config, 'state_dir: ./state\nproxy:\n  listn: 127.0.0.1:0\n');
    const r = await run(BIN, ['start', '--config', config], { timeoutMs: 30_000 });
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^portcullis: config: unknown key proxy\.listn/);
    const r2 = await run(BIN, ['start', '--roles', 'auth,bogus'], { timeoutMs: 30_000 });
    assert.equal(r2.code, 6, r2.stderr);
    assert.match(r2.stderr, /^portcullis: config: --roles: /);
  } finally {
    dir.remove();
  }
});
