import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { cli, fails, ok } from './pcsh-login-fixture.js';
import { startSshWorld, type SshWorld } from './pcsh-ssh-fixture.js';

/*
 * pcsh ssh, scp and proxy ssh as a user runs them: the real pcsh binary, stock OpenSSH,
 * the real proxy and auth, and an sshd enrolled through auth.
 */

let w: SshWorld;
before(async () => {
  w = await startSshWorld('pcsh-ssh-');
});
after(async () => {
  await w?.stop();
});

test('pcsh ssh host command: the output and the exit status of the remote command', async () => {
  const r = await cli('pcsh', w.carol, ['ssh', 'root@web01', 'echo hello-from-$(hostname -s 2>/dev/null || echo web01); exit 7']);
  assert.equal(r.code, 7, r.stderr + JSON.stringify(w.audit));
  assert.match(r.stdout, /hello-from-/);
});
