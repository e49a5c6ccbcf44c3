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
