// ProxyJump through the proxy with stock OpenSSH: `ssh -J alice@proxy root@web01`, and the
// stdio form pcsh uses (`ProxyCommand ssh -W %h:%p alice@proxy`). The proxy terminates the
// inner connection with a short host certificate for the name asked for, authenticates the
// user certificate again and dials the real sshd. ssh -J does not pass -o options to the jump
// hop, so these tests use a config file.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { run } from '@portcullis/harness';
import { formatPublicKey, publicPart } from '@portcullis/cert-core';
import { access, skipWithoutOpenSsh, startFixture } from './support/fixture.js';
import type { Fixture, Identity } from './support/fixture.js';

describe('proxy: ProxyJump and the stdio form', { skip: skipWithoutOpenSsh }, () => {
  let f: Fixture;
  let alice: Identity;

  before(async () => {
    f = await startFixture({ users: [access('alice'), access('bob')] });
    alice = f.identity('alice', { principals: ['root'] });
    // What `pcsh login` writes: one line trusting the host CA for every name.
    writeFileSync(f.dir.file('known_hosts_jump'), `@cert-authority * ${formatPublicKey(publicPart(f.authority.hostCA))}\n`);
  });

  after(async () => {
    await f?.stop();
  });

  function config(id: Identity, name: string): string {
    const path = f.dir.file(`ssh_config_${name}`);
    writeFileSync(
      path,
      [
        'Host *',
        '  IdentitiesOnly yes',
        '  IdentityAgent none',
        `  IdentityFile ${id.identity}`,
        `  CertificateFile ${id.certificate}`,
        '  BatchMode yes',
        '  StrictHostKeyChecking yes',
        `  UserKnownHostsFile ${f.dir.file('known_hosts_jump')}`,
        '  GlobalKnownHostsFile /dev/null',
        '  UpdateHostKeys no',
        '  ConnectTimeout 10',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    );
    return path;
  }

  const jump = (cfg: string, outerUser = 'alice'): string[] => ['-F', cfg, '-J', `${outerUser}@127.0.0.1:${f.proxy.port}`];

  it('runs a command through ssh -J; the target sees the upstream certificate, the session is audited as a jump', async () => {
    const cfg = config(alice, 'alice');
    const since = f.web01.log().length;
    const r = await run('ssh', [...jump(cfg), 'root@web01', 'echo via jump; id -un']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'via jump\nroot\n');
    await f.web01.waitForLog(/Accepted publickey for root .*ID alice req=\S+ via=test-proxy/, { since });
    const start = await f.waitForAudit('session.start', (e) => e.fields['route'] === 'jump');
    assert.equal(start.fields['host'], 'web01.example.test');
    assert.equal(start.fields['user'], 'alice');
    assert.deepEqual(f.authority.jumpRequests, ['web01']);
  });

  it('runs the stdio form (ProxyCommand ssh -W), as pcsh proxy ssh does, and an interactive pty', async () => {
    const cfg = config(alice, 'alice-stdio');
    const proxyCommand = `ProxyCommand=ssh -F ${cfg} -W %h:%p -p ${f.proxy.port} alice@127.0.0.1`;
    const r = await run('ssh', ['-F', cfg, '-o', proxyCommand, 'root@web01.example.test', 'hostname >/dev/null && echo stdio ok']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'stdio ok\n');
    const t = await run('ssh', [...jump(cfg), '-tt', 'root@web01'], { input: 'tty; exit 0\n' });
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /\/dev\/pts\/\d+/);
  });

  it('copies a file with scp through the jump, byte for byte', async () => {
    const cfg = config(alice, 'alice-scp');
    const data = randomBytes(1024 * 1024 + 3);
    writeFileSync(f.dir.file('jump-src.bin'), data);
    const r = await run('scp', [...jump(cfg), f.dir.file('jump-src.bin'), `root@web01:${f.dir.file('jump-dst.bin')}`]);
    assert.equal(r.code, 0, r.stderr);
    const hash = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
    assert.equal(hash(readFileSync(f.dir.file('jump-dst.bin'))), hash(data));
  });

  it('refuses a jump hop that does not log in as the certificate user', async () => {
    const cfg = config(alice, 'alice-wrong-outer');
    const r = await run('ssh', [...jump(cfg, 'root'), 'root@web01', 'true']);
    assert.notEqual(r.code, 0);
    const e = await f.waitForAudit('session.refused', (a) => a.fields['reason'] === 'ERR_LOGIN_NOT_ALLOWED' && a.fields['username'] === 'root');
    assert.match(String(e.fields['message']), /jump connection logs in as the certificate's user "alice", not "root"/);
  });

  it('refuses an inner login that is not among the principals', async () => {
    const cfg = config(alice, 'alice-ubuntu');
    const r = await run('ssh', [...jump(cfg), 'ubuntu@web01', 'true']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Permission denied/);
    await f.waitForAudit('session.refused', (a) => a.fields['reason'] === 'ERR_WRONG_PRINCIPAL' && a.fields['username'] === 'ubuntu');
  });

  it("refuses an inner connection made with another user's certificate", async () => {
    const bob = f.identity('bob', { principals: ['root'] });
    const outer = config(alice, 'outer-alice');
    const inner = config(bob, 'inner-bob');
    const proxyCommand = `ProxyCommand=ssh -F ${outer} -W %h:%p -p ${f.proxy.port} alice@127.0.0.1`;
    const r = await run('ssh', ['-F', inner, '-o', proxyCommand, 'root@web01', 'true']);
    assert.notEqual(r.code, 0);
    const e = await f.waitForAudit('session.refused', (a) => a.fields['reason'] === 'ERR_LOGIN_NOT_ALLOWED' && /jump was opened by "alice"/.test(String(a.fields['message'])));
    assert.equal(e.fields['signed'], false);
  });

  it('refuses a jump to an unregistered or ambiguous name, auditing why', async () => {
    const cfg = config(alice, 'alice-nohost');
    for (const [host, reason] of [['nosuchhost', 'ERR_HOST_NOT_FOUND'], ['db', 'ERR_HOST_AMBIGUOUS']] as const) {
      const r = await run('ssh', [...jump(cfg), `root@${host}`, 'true']);
      assert.equal(r.code, 255);
      const e = await f.waitForAudit('session.refused', (a) => a.fields['route'] === 'jump' && a.fields['reason'] === reason);
      assert.equal(e.fields['host'], host);
    }
  });
});
