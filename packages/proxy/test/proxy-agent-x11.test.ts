// Agent and X11 forwarding through the proxy: channels the target opens back to the client,
// with a real ssh-agent, real sshd and a fake X display. auth is the stand-in.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { formatPublicKey, publicPart } from '@portcullis/cert-core';
import { hasTool, run, startSshd } from '@portcullis/harness';
import type { SshdHandle } from '@portcullis/harness';
import { newKey, writeKeyAndCertificate } from './support/authority.js';
import { access, skipWithoutOpenSsh, startFixture } from './support/fixture.js';
import type { Fixture, Identity } from './support/fixture.js';
import { startFakeDisplay, startSshAgent, x11ClientCommand } from './support/ssh-agent.js';
import type { FakeDisplay, SshAgent } from './support/ssh-agent.js';

const missingTool = ['ssh-agent', 'ssh-add', 'xauth'].find((t) => !hasTool(t));
const skip = skipWithoutOpenSsh || (missingTool === undefined ? false : `needs ${missingTool}`);

describe('proxy: agent and X11 forwarding', { skip }, () => {
  let f: Fixture;
  let agent: SshAgent;
  let agentKey: string;
  let display: FakeDisplay;
  let x11Target: SshdHandle;
  let alice: Identity;
  // bob's roles allow neither; carol's certificate permits neither.
  let bob: Identity;
  let carol: Identity;

  before(async () => {
    f = await startFixture({
      users: [
        access('alice', { agentForwarding: true, x11Forwarding: true }),
        access('bob'),
        access('carol', { agentForwarding: true, x11Forwarding: true }),
      ],
    });
    const both = { agentForwarding: true, x11Forwarding: true };
    alice = f.identity('alice', { principals: ['root'], permissions: both });
    bob = f.identity('bob', { principals: ['root'], permissions: both });
    carol = f.identity('carol', { principals: ['root'] });
    agent = await startSshAgent(f.dir.file('agent.sock'));
    agentKey = await agent.addNewKey(f.dir.file('forwarded_key'));
    display = await startFakeDisplay();
    // The fixture's targets do not forward X11 (sshd's default); this one does.
    const d = f.dir.file('x11.example.test');
    mkdirSync(d);
    const key = newKey();
    const spec = writeKeyAndCertificate(`${d}/host_key`, key, f.authority.hostCertificate(key, ['x11.example.test']));
    x11Target = await startSshd({
      dir: d,
      trustedUserCAKeys: formatPublicKey(publicPart(f.authority.upstreamCA)),
      hostKey: spec,
      extraConfig: ['X11Forwarding yes', 'X11UseLocalhost yes', 'XAuthLocation /usr/bin/xauth'],
    });
    f.authority.hosts.push({ name: 'x11.example.test', address: '127.0.0.1', port: x11Target.port, labels: {} });
  });

  after(async () => {
    display?.close();
    await agent?.stop();
    await x11Target?.stop();
    await f?.stop();
  });

  /**
   * ssh with the test's agent forwarded. OpenSSH requests forwarding only when it can reach an
   * agent itself, so IdentityAgent names it; these -o come first, so they win over the
   * fixture's IdentityAgent=none (ssh keeps the first value of an option).
   */
  const sshWithAgent = (who: Identity, user: string, command: string): ReturnType<typeof run> =>
    run('ssh', ['-o', `IdentityAgent=${agent.socket}`, '-o', 'ForwardAgent=yes', ...f.sshOptions(who), '-p', String(f.proxy.port), `${user}@127.0.0.1`, '--', command]);

  it('ssh -A: ssh-add -l on the target lists the key held by the client\'s agent', async () => {
    const r = await sshWithAgent(alice, 'root%web01', 'ssh-add -l');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(agentKey.replace(/[+/]/g, '\\$&')));
    // The forwarded agent is used again within one connection: two channels, both relayed.
    const twice = await sshWithAgent(alice, 'root%web01', 'ssh-add -l >/dev/null && ssh-add -l');
    assert.equal(twice.code, 0, twice.stderr);
    assert.match(twice.stdout, /forwarded-key/);
  });

  it('ssh -A through ProxyJump forwards the agent to the final target', async () => {
    // ssh -J passes no -o options to the jump hop: a config file carries them to both hops.
    const cfg = f.dir.file('ssh_config_jump');
    writeFileSync(f.dir.file('known_hosts_jump'), `@cert-authority * ${formatPublicKey(publicPart(f.authority.hostCA))}\n`);
    writeFileSync(
      cfg,
      ['Host *', '  IdentitiesOnly yes', `  IdentityAgent ${agent.socket}`, '  ForwardAgent yes', `  IdentityFile ${alice.identity}`, `  CertificateFile ${alice.certificate}`, '  BatchMode yes',
        `  UserKnownHostsFile ${f.dir.file('known_hosts_jump')}`, '  GlobalKnownHostsFile /dev/null', '  LogLevel ERROR', ''].join('\n'),
    );
    const r = await run('ssh', ['-F', cfg, '-J', `alice@127.0.0.1:${f.proxy.port}`, 'root@web01', 'ssh-add -l']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /forwarded-key/);
  });

  it('refuses agent forwarding when the roles or the certificate do not permit it', async () => {
    for (const who of [bob, carol]) {
      const r = await sshWithAgent(who, 'root%web01', 'ssh-add -l 2>&1; echo "exit=$?"');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Could not open a connection to your authentication agent/);
      assert.match(r.stdout, /exit=2/);
    }
    assert.match(await f.proxy.metrics.text(), /^portcullis_proxy_channel_refusals_total\{kind="agent"\} [1-9]/m);
  });

  /** The fixture's ssh() takes its environment from process.env at the call. */
  async function withDisplay<T>(fn: () => Promise<T>): Promise<T> {
    const before = process.env['DISPLAY'];
    process.env['DISPLAY'] = display.display;
    try {
      return await fn();
    } finally {
      if (before === undefined) delete process.env['DISPLAY'];
      else process.env['DISPLAY'] = before;
    }
  }

  it('ssh -X: an X client on the target reaches the display on the client, cookie swapped by ssh', async () => {
    const r = await withDisplay(() =>
      f.ssh({ user: 'root%x11.example.test', as: alice, args: ['-X', '-o', 'ForwardX11Trusted=yes', '-o', 'LogLevel=QUIET'], command: x11ClientCommand() }),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'X11-OK\n');
    assert.deepEqual(display.seen.slice(-1), ['MIT-MAGIC-COOKIE-1']);
  });

  it('refuses X11 forwarding when the roles or the certificate do not permit it', async () => {
    for (const who of [bob, carol]) {
      const r = await withDisplay(() => f.ssh({ user: 'root%x11.example.test', as: who, args: ['-X', '-o', 'LogLevel=INFO'], command: 'echo "display=[$DISPLAY]"' }));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'display=[]\n');
      assert.match(r.stderr, /X11 forwarding request failed/);
    }
    assert.match(await f.proxy.metrics.text(), /^portcullis_proxy_channel_refusals_total\{kind="x11"\} [1-9]/m);
  });
});
