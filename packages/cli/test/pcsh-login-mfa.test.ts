import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { acceptInvite, adminLaptop, cli, fails, laptop, ok, start, startInTerminal, startStack, type Laptop, type Stack } from './pcsh-login-fixture.js';

/*
 * A local user's whole path with a second factor: invited by an admin with pcctl, password
 * login (prompted on stdin, or PCSH_PASSWORD), `pcsh mfa add` enrolling TOTP, then password +
 * TOTP, a wrong code, and a role that wants a code for every certificate. Each TOTP code is
 * used once (auth refuses replays), so the service clock moves a step between uses.
 */

const PASSWORD = 'carol-password-long-enough';

describe('pcsh login with a password and TOTP', () => {
  let stack: Stack;
  let admin: Laptop;
  let carol: Laptop;
  let secret: string;
  const loginArgs = (): string[] => ['login', '--auth', stack.info.url, '--fingerprint', stack.info.fingerprint, '--user', 'carol'];
  const nextStep = (): void => {
    stack.clock.offset += 30_000;
  };

  before(async () => {
    stack = await startStack('pcsh-mfa-', undefined, { rate_limits: { totp: { per_user: 100, per_address: 100 } } });
    admin = await adminLaptop(stack);
    carol = laptop(stack, 'carol');
    const invite = await ok('pcctl', admin, ['users', 'add', 'carol', '--roles', 'dev']);
    assert.match(invite.stdout, /^https:\/\/127\.0\.0\.1:\d+\/invite#[A-Za-z0-9_-]{43}\n$/);
    await acceptInvite(stack, invite.stdout, PASSWORD);
  });

  after(async () => {
    await stack?.stop();
  });

  test('password from stdin; wrong password, and no password at all, are one line', async () => {
    await fails('pcsh', carol, loginArgs(), 3, /password/i, { input: 'not-her-password\n' });
    await fails('pcsh', carol, loginArgs(), 2, /a password is needed and stdin ended/);
    await ok('pcsh', carol, loginArgs(), { input: `${PASSWORD}\n` });
    assert.match((await ok('pcsh', carol, ['status'])).stdout, /^Session: +password, no second factor/m);
  });

  test('pcsh mfa add enrolls TOTP after a first code', async () => {
    const enroll = start('pcsh', carol, ['mfa', 'add']);
    const m = await enroll.waitForStderr(/secret: ([A-Z2-7]+)/);
    secret = m[1]!;
    enroll.write(`${stack.totp(secret)}\n`);
    const r = await enroll.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /otpauth:\/\/totp\//);
    const users = JSON.parse((await ok('pcctl', admin, ['users', 'ls', '--json'])).stdout) as { name: string; mfa: string[] }[];
    assert.deepEqual(users.find((u) => u.name === 'carol')?.mfa, ['totp']);
  });

  test('password + TOTP: the code is asked for; a wrong or malformed code is one line', async () => {
    await ok('pcsh', carol, ['logout']);
    nextStep();
    const env = { PCSH_PASSWORD: PASSWORD };
    const right = stack.totp(secret);
    const wrong = right === '000000' ? '111111' : '000000';
    await fails('pcsh', carol, loginArgs(), 3, /TOTP|code/i, { env, input: `${wrong}\n` });
    await fails('pcsh', carol, loginArgs(), 2, /a TOTP code is the 6 to 8 digits/, { env, input: 'abc\n' });
    await fails('pcsh', carol, loginArgs(), 2, /a TOTP code is needed and stdin ended/, { env });
    await ok('pcsh', carol, loginArgs(), { env, input: `${right}\n` });
    assert.match((await ok('pcsh', carol, ['status'])).stdout, /^Session: +password, second factor verified/m);
  });

  test('a role with require_session_mfa: every new certificate asks for a code', async () => {
    await ok('pcctl', admin, ['users', 'update', 'carol', '--set-roles', 'dev,strict']);
    nextStep();
    await fails('pcsh', carol, ['certificate', 'ensure', '--force'], 2, /a TOTP code is needed and stdin ended/);
    const before = await ok('pcsh', carol, ['status', '--json']);
    // One code for the mint and its replay: computing it twice could straddle a 30 s step.
    const code = stack.totp(secret);
    await ok('pcsh', carol, ['certificate', 'ensure', '--force'], { input: `${code}\n` });
    const afterMint = JSON.parse((await ok('pcsh', carol, ['status', '--json'])).stdout) as { access: { require_session_mfa: boolean }; certificate: { serial: string } };
    assert.equal(afterMint.access.require_session_mfa, true);
    assert.notEqual(afterMint.certificate.serial, (JSON.parse(before.stdout) as { certificate: { serial: string } }).certificate.serial);
    // A replayed code is refused.
    await fails('pcsh', carol, ['certificate', 'ensure', '--force'], 3, /already used/, { input: `${code}\n` });
  });

  test('an admin reset removes the factor and ends the sessions', async () => {
    const r = await cli('pcctl', admin, ['users', 'reset', 'carol', '--totp', '--no-password']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    await fails('pcsh', carol, ['ls'], 3, /has expired or was revoked/);
    // Without a factor, only a role that does not ask for one per certificate lets her in.
    await ok('pcctl', admin, ['users', 'update', 'carol', '--set-roles', 'dev']);
    await ok('pcsh', carol, loginArgs(), { env: { PCSH_PASSWORD: PASSWORD } });
    assert.match((await ok('pcsh', carol, ['status'])).stdout, /^Session: +password, no second factor/m);
  });

  test('in a terminal: the fingerprint is asked about, the password is read without echo', async () => {
    const fresh = laptop(stack, 'carol-tty');
    const login = startInTerminal('pcsh', fresh, ['login', '--auth', stack.info.url, '--user', 'carol']);
    await login.waitForStderr(new RegExp(`SHA-256 fingerprint: ${stack.info.fingerprint}[\\s\\S]*Does this match the fingerprint its operator gave you\\? \\[y/N\\]`));
    login.write('y\r');
    await login.waitForStderr(/Password for carol@127\.0\.0\.1: /);
    login.write(`${PASSWORD}\r`);
    const r = await login.done;
    assert.equal(r.code, 0, r.stdout);
    assert.doesNotMatch(r.stdout, new RegExp(PASSWORD));
    assert.match((await ok('pcsh', fresh, ['status'])).stdout, /^User: +carol \(local\)$/m);

    // Answering no (or just Enter) leaves nothing behind.
    const other = laptop(stack, 'carol-no');
    const refused = startInTerminal('pcsh', other, ['login', '--auth', stack.info.url, '--user', 'carol']);
    await refused.waitForStderr(/\[y\/N\]/);
    refused.write('\r');
    const n = await refused.done;
    assert.equal(n.code, 3);
    assert.match(n.stdout, /pcsh: auth at 127\.0\.0\.1:\d+ is not trusted yet/);
  });
});
