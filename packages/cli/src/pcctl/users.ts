import type { Command } from 'commander';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { formatTime, printJson, printTable, writeOut } from '../common/output.js';
import { adminApi, enc, optsOf } from './admin.js';

/*
 * pcctl users: local users are created with an invite link (the admin never learns or sets a
 * password); SSO users appear on their first login and get their roles from the mapping.
 * `add` and `reset` print the link alone on stdout, so it can be piped into a message.
 */

interface UserSummary {
  readonly name: string;
  readonly kind: string;
  readonly roles: readonly string[];
  readonly status: string;
  readonly createdAt: number | string;
  readonly hasPassword: boolean;
  readonly mfa: readonly string[];
}

interface Invite {
  readonly url: string;
  readonly expires_at: string;
  readonly purpose: string;
}

const rolesArg = (s: string | undefined): string[] | undefined =>
  s === undefined ? undefined : s.split(',').map((r) => r.trim()).filter((r) => r !== '');

function printInvite(json: boolean | undefined, body: unknown, invite: Invite | undefined, who: string): void {
  if (json === true) printJson(body);
  else if (invite !== undefined) {
    writeOut(invite.url);
    if (process.stderr.isTTY === true) process.stderr.write(`Send this link to ${who}; it sets a password and expires ${formatTime(invite.expires_at)}.\n`);
  }
}

export function addUserCommands(program: Command): void {
  const users = withExamples(program.command('users').description('people who sign in: local users (invite links) and SSO users'), 'pcctl users ls', 'pcctl users add alice --roles dev');

  withExamples(
    users
      .command('ls')
      .description('list users')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const { users: list } = await adminApi(cmd).call<{ users: UserSummary[] }>('GET', '/v1/admin/users');
        if (optsOf(cmd).json === true) return printJson(list);
        printTable(
          ['User', 'Kind', 'Roles', 'Status', 'MFA', 'Password', 'Created'],
          list.map((u) => [u.name, u.kind, u.roles.join(',') || '-', u.status, u.mfa.join(',') || '-', u.kind === 'local' ? (u.hasPassword ? 'set' : 'invited') : '-', formatTime(u.createdAt)]),
        );
      }),
    'pcctl users ls',
    'pcctl users ls --json | jq -r ".[] | select(.status == \\"disabled\\") | .name"',
  );

  withExamples(
    users
      .command('add')
      .description('create a local user and print the invite link that sets their password')
      .argument('<name>', 'user name')
      .option('--roles <roles>', 'comma-separated roles', '')
      .option('--json', 'print JSON (user and invite)')
      .action(async (name: string, _o, cmd: Command) => {
        const o = optsOf<{ roles: string }>(cmd);
        const body = await adminApi(cmd).call<{ user: UserSummary; invite: Invite }>('POST', '/v1/admin/users', { json: { name, roles: rolesArg(o.roles) ?? [] } });
        printInvite(o.json, body, body.invite, name);
      }),
    'pcctl users add alice --roles dev,oncall',
  );

  withExamples(
    users
      .command('update')
      .description("change a user's roles, or disable / enable them (disabling ends their sessions)")
      .argument('<name>', 'user name')
      .option('--set-roles <roles>', 'replace the roles with these (comma-separated)')
      .option('--disable', 'refuse their logins and end their sessions')
      .option('--enable', 'allow them again')
      .action(async (name: string, _o, cmd: Command) => {
        const o = optsOf<{ setRoles?: string; disable?: boolean; enable?: boolean }>(cmd);
        if (o.disable === true && o.enable === true) throw new CliError('ERR_USAGE', '--disable and --enable exclude each other');
        const roles = rolesArg(o.setRoles);
        const status = o.disable === true ? 'disabled' : o.enable === true ? 'active' : undefined;
        if (roles === undefined && status === undefined) throw new CliError('ERR_USAGE', 'nothing to change: give --set-roles, --disable or --enable');
        await adminApi(cmd).call('PATCH', `/v1/admin/users/${enc(name)}`, { json: { ...(roles === undefined ? {} : { roles }), ...(status === undefined ? {} : { status }) } });
      }),
    'pcctl users update alice --set-roles dev,admin',
    'pcctl users update bob --disable',
  );

  withExamples(
    users
      .command('rm')
      .description('delete a user and end their login sessions')
      .argument('<name>', 'user name')
      .action(async (name: string, _o, cmd: Command) => {
        await adminApi(cmd).call('DELETE', `/v1/admin/users/${enc(name)}`);
      }),
    'pcctl users rm bob',
  );

  withExamples(
    users
      .command('reset')
      .description('new invite link for a forgotten password, and/or remove a lost TOTP factor; ends their sessions')
      .argument('<name>', 'user name')
      .option('--totp', 'also remove their TOTP factor (a lost phone)')
      .option('--no-password', 'keep the password (with --totp: only the factor goes)')
      .option('--json', 'print JSON')
      .action(async (name: string, _o, cmd: Command) => {
        const o = optsOf<{ totp?: boolean; password: boolean }>(cmd);
        const body = await adminApi(cmd).call<{ invite?: Invite }>('POST', `/v1/admin/users/${enc(name)}/reset`, { json: { password: o.password, totp: o.totp === true } });
        printInvite(o.json, body, body.invite, name);
      }),
    'pcctl users reset alice',
    'pcctl users reset alice --totp --no-password',
  );
}
