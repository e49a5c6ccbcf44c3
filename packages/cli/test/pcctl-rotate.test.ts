import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { adminLaptop, fails, ok, startStack, type Laptop, type Stack } from './pcsh-login-fixture.js';

/*
 * `pcctl auth rotate` as an administrator types it, against a real auth service: status, each
 * phase with the advice for the next one, the audit trail of the phases, and every mistake
 * (a skipped phase, a rollback with nothing to roll back, a missing --type) in one line.
 * What the phases do to a real sshd is pcctl-rotate-sshd.test.ts.
 */

describe('pcctl auth rotate', () => {
  let stack: Stack;
  let admin: Laptop;

  before(async () => {
    stack = await startStack('pcctl-rotate-');
    admin = await adminLaptop(stack);
  });

  after(async () => {
    await stack?.stop();
  });

  test('status, the phases in order with advice, rollback; the CA export follows', async () => {
    const idle = (await ok('pcctl', admin, ['auth', 'rotate', 'status'])).stdout;
    assert.match(idle, /^user CA: phase standby$/m);
    assert.match(idle, /^upstream CA: phase standby$/m);
    assert.match(idle, /^host CA: phase standby$/m);
    assert.match(idle, /no rotation under way/);

    const init = (await ok('pcctl', admin, ['auth', 'rotate', '--type', 'user', '--phase', 'init'])).stdout;
    assert.match(init, /^user CA: phase init since \S+Z \(by admin\)$/m);
    assert.match(init, /^ {2}SHA256:\S+ active, old \(id [0-9a-f]{16}\)$/m);
    assert.match(init, /^ {2}SHA256:\S+ standby, new \(id [0-9a-f]{16}\)$/m);
    assert.match(init, /wait until every proxy has fetched the CA keys again .*pcctl auth rotate --type user --phase update_clients/);
    // GET /v1/ca (what proxies and `pcctl auth export` read) now lists both user CA keys.
    const exported = (await ok('pcctl', admin, ['auth', 'export', '--type', 'user'])).stdout;
    assert.equal(exported.trim().split('\n').length, 2);

    await fails('pcctl', admin, ['auth', 'rotate', '--type', 'user', '--phase', 'standby'], 1, /phase init; the next phase is update_clients, not standby \(or --rollback\)/);
    const clients = (await ok('pcctl', admin, ['auth', 'rotate', '--type', 'user', '--phase', 'update_clients'])).stdout;
    assert.match(clients, /^ {2}SHA256:\S+ active, new /m);
    assert.match(clients, /^ {2}SHA256:\S+ standby, old /m);

    const status = JSON.parse((await ok('pcctl', admin, ['auth', 'rotate', 'status', '--type', 'user', '--json'])).stdout) as { phase: string; next_phase: string; old_ca: string; new_ca: string };
    assert.equal(status.phase, 'update_clients');
    assert.equal(status.next_phase, 'update_servers');

    const back = (await ok('pcctl', admin, ['auth', 'rotate', '--type', 'user', '--rollback'])).stdout;
    assert.match(back, /^user CA: phase standby/m);
    assert.match(back, /last rotation rolled back at/);
    const after = JSON.parse((await ok('pcctl', admin, ['auth', 'rotate', 'status', '--json'])).stdout) as { user: { keys: { id: string; status: string }[] } };
    assert.deepEqual(after.user.keys.map((k) => [k.id, k.status]), [[status.old_ca, 'active']]);
    assert.equal((await ok('pcctl', admin, ['auth', 'export', '--type', 'user'])).stdout.trim().split('\n').length, 1);

    // The phases are in the audit trail with who made them.
    const audit = (await ok('pcctl', admin, ['audit', '--json'])).stdout;
    for (const to of ['init', 'update_clients']) assert.ok(audit.includes(`"to":"${to}"`) || audit.includes(`"to": "${to}"`), `audit has the step to ${to}`);
    assert.match(audit, /ca\.rotation\.rollback/);
  });

  test('host CA: a full rotation by command; mistakes are one line', async () => {
    await fails('pcctl', admin, ['auth', 'rotate', '--phase', 'init'], 2, /give --type user, --type upstream or --type host/);
    await fails('pcctl', admin, ['auth', 'rotate', '--type', 'host'], 2, /give one of --phase <next> or --rollback/);
    await fails('pcctl', admin, ['auth', 'rotate', '--type', 'host', '--rollback'], 1, /no host CA rotation to roll back/);
    await fails('pcctl', admin, ['auth', 'rotate', '--type', 'host', '--phase', 'update_clients'], 1, /next phase is init, not update_clients/);
    await fails('pcctl', admin, ['auth', 'rotate', 'stauts'], 2, /did you mean `pcctl auth rotate status`/);

    const init = JSON.parse((await ok('pcctl', admin, ['auth', 'rotate', '--type', 'host', '--phase', 'init', '--algorithm', 'ecdsa-p256', '--json'])).stdout) as { new_ca: string };
    await ok('pcctl', admin, ['auth', 'rotate', '--type', 'host', '--phase', 'update_clients']);
    const servers = (await ok('pcctl', admin, ['auth', 'rotate', '--type', 'host', '--phase', 'update_servers'])).stdout;
    assert.match(servers, /every enrolled host has renewed onto the new CA; then complete with: pcctl auth rotate --type host --phase standby/);
    const done = (await ok('pcctl', admin, ['auth', 'rotate', '--type', 'host', '--phase', 'standby'])).stdout;
    assert.match(done, new RegExp(`^ {2}SHA256:\\S+ active \\(id ${init.new_ca}\\)$`, 'm'));
    assert.match(done, /last rotation completed at/);
    const exported = (await ok('pcctl', admin, ['auth', 'export', '--type', 'host'])).stdout;
    assert.match(exported, /^@cert-authority \* ecdsa-sha2-nistp256 /);
    assert.equal(exported.trim().split('\n').length, 1);
  });
});
