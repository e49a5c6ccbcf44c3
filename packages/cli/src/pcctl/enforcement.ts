import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { formatTime, formatUntil, parseDurationArg, printJson, printTable, writeOut } from '../common/output.js';
import { writeFileAtomic } from '../common/profile.js';
import { adminApi, enc, optsOf } from './admin.js';

/*
 * Stopping access now: locks (refuse new logins, certificates and connections for a user,
 * role, login or host, and cut live sessions at the proxy; lifted later), revocation
 * (certificates, by serial, key id, key, user or host, into the KRL for good) and the KRL
 * itself for hosts' RevokedKeys.
 */

const KINDS = ['user', 'role', 'login', 'host'] as const;
type Kind = (typeof KINDS)[number];

interface LockListing {
  readonly id: string;
  readonly target: { readonly kind: string; readonly name: string };
  readonly message: string;
  readonly created_at: string;
  readonly created_by?: string;
  readonly expires_at?: string;
}

/** The one --user/--role/--login/--host given, or a usage error. */
function lockTarget(o: Partial<Record<Kind, string>>, command: string): { kind: Kind; name: string } | undefined {
  const given = KINDS.filter((k) => o[k] !== undefined);
  if (given.length > 1) throw new CliError('ERR_USAGE', `${command}: give one of --user, --role, --login, --host, not ${given.map((k) => `--${k}`).join(' and ')}`);
  const kind = given[0];
  return kind === undefined ? undefined : { kind, name: o[kind]! };
}

const targetOptions = (cmd: Command): Command =>
  cmd
    .option('--user <name>', 'a user')
    .option('--role <name>', 'everyone with a role')
    .option('--login <name>', 'a login (e.g. root) on every host')
    .option('--host <name>', 'a host');

export function addEnforcementCommands(program: Command): void {
  withExamples(
    targetOptions(program.command('lock').description('refuse logins, certificates and connections for a user, role, login or host; cuts live sessions'))
      .option('--ttl <duration>', 'lift it by itself after this long (default: until unlocked)')
      .option('--message <text>', 'shown to whoever is refused')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const o = optsOf<Partial<Record<Kind, string>> & { ttl?: string; message?: string }>(cmd);
        const target = lockTarget(o, 'lock');
        if (target === undefined) throw new CliError('ERR_USAGE', 'lock: give what to lock: --user, --role, --login or --host');
        const ttl = o.ttl === undefined ? undefined : parseDurationArg(o.ttl, '--ttl');
        const lock = await adminApi(cmd).call<LockListing>('POST', '/v1/admin/locks', {
          json: { target, ...(o.message === undefined ? {} : { message: o.message }), ...(ttl === undefined ? {} : { ttl }) },
        });
        if (o.json === true) printJson(lock);
        else writeOut(lock.id);
      }),
    'pcctl lock --user alice --message "laptop stolen; call security" ',
    'pcctl lock --host db01 --ttl 2h --message "maintenance"',
  );

  withExamples(
    targetOptions(program.command('unlock').description('lift a lock by id, or every lock on a target').argument('[id]', 'lock id (pcctl locks ls)')).action(
      async (id: string | undefined, _o, cmd: Command) => {
        const target = lockTarget(optsOf<Partial<Record<Kind, string>>>(cmd), 'unlock');
        if ((id === undefined) === (target === undefined)) throw new CliError('ERR_USAGE', 'unlock: give a lock id or one of --user, --role, --login, --host');
        const api = adminApi(cmd);
        let ids = id === undefined ? [] : [id];
        if (target !== undefined) {
          const { locks } = await api.call<{ locks: LockListing[] }>('GET', '/v1/admin/locks');
          ids = locks.filter((l) => l.target.kind === target.kind && l.target.name === target.name).map((l) => l.id);
          if (ids.length === 0) throw new CliError('ERR_NOT_FOUND', `no lock on ${target.kind} ${target.name}`);
        }
        for (const lockId of ids) await api.call('DELETE', `/v1/admin/locks/${enc(lockId)}`);
      },
    ),
    'pcctl unlock --user alice',
    'pcctl unlock 9f86d081884c7d65',
  );

  const locks = withExamples(program.command('locks').description('locks in force'), 'pcctl locks ls');
  withExamples(
    locks
      .command('ls')
      .description('list locks in force')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const { locks: list } = await adminApi(cmd).call<{ locks: LockListing[] }>('GET', '/v1/admin/locks');
        if (optsOf(cmd).json === true) return printJson(list);
        const now = Date.now();
        printTable(
          ['ID', 'Target', 'Message', 'By', 'Created', 'Expires'],
          list.map((l) => [l.id, `${l.target.kind}:${l.target.name}`, l.message || '-', l.created_by ?? '-', formatTime(l.created_at), l.expires_at === undefined ? 'never' : formatUntil(l.expires_at, now)]),
        );
      }),
    'pcctl locks ls',
  );

  withExamples(
    program
      .command('revoke')
      .description('revoke certificates for good (into the KRL); revoking a user also ends their login sessions')
      .option('--serial <n>', 'one certificate by serial')
      .option('--key-id <id>', 'certificates with this key id')
      .option('--public-key <file>', 'certificates of the key in this .pub file')
      .option('--user <name>', "every certificate of a user, and their sessions")
      .option('--host <name>', "a host's certificates")
      .addOption(new Option('--ca <kind>', 'with --serial or --key-id: only this CA').choices(['user', 'upstream', 'host']))
      .option('--reason <text>', 'recorded in the audit trail')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const o = optsOf<{ serial?: string; keyId?: string; publicKey?: string; user?: string; host?: string; ca?: string; reason?: string }>(cmd);
        const given = (['serial', 'keyId', 'publicKey', 'user', 'host'] as const).filter((k) => o[k] !== undefined);
        if (given.length !== 1) throw new CliError('ERR_USAGE', 'revoke: give exactly one of --serial, --key-id, --public-key, --user, --host');
        if (o.serial !== undefined && !/^\d{1,20}$/.test(o.serial)) throw new CliError('ERR_USAGE', `--serial: expected a decimal number, got ${JSON.stringify(o.serial)}`);
        let publicKey: string | undefined;
        if (o.publicKey !== undefined) {
          try {
            publicKey = readFileSync(o.publicKey, 'utf8').trim();
          } catch (e) {
            throw new CliError('ERR_USAGE', `--public-key: cannot read ${o.publicKey} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
          }
        }
        const body = {
          ...(o.serial === undefined ? {} : { serial: o.serial }),
          ...(o.keyId === undefined ? {} : { key_id: o.keyId }),
          ...(publicKey === undefined ? {} : { public_key: publicKey }),
          ...(o.user === undefined ? {} : { user: o.user }),
          ...(o.host === undefined ? {} : { host: o.host }),
          ...(o.ca === undefined ? {} : { ca: o.ca }),
          ...(o.reason === undefined ? {} : { reason: o.reason }),
        };
        const r = await adminApi(cmd).call<{ revoked: string[]; already_revoked: number; sessions_revoked: number; krl_version: number }>('POST', '/v1/admin/revoke', { json: body });
        if (o.json === true) return printJson(r);
        const sessions = r.sessions_revoked > 0 ? `, ended ${r.sessions_revoked} login session(s)` : '';
        writeOut(`revoked ${r.revoked.length} (${r.already_revoked} already revoked)${sessions}; KRL version ${r.krl_version}`);
      }),
    'pcctl revoke --serial 1042 --reason "key left on a shared host"',
    'pcctl revoke --user mallory',
  );

  const krl = withExamples(program.command('krl').description('the key revocation list hosts load as RevokedKeys'), 'pcctl krl show', 'pcctl krl export revoked.krl');
  withExamples(
    krl
      .command('show')
      .description('version, ETag, digest and number of entries of the current KRL')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const info = await adminApi(cmd).call<{ version: number; sha256: string; etag: string; entries: number; generated_at: string }>('GET', '/v1/krl/info');
        if (optsOf(cmd).json === true) return printJson(info);
        writeOut(`Version:   ${info.version}\nEntries:   ${info.entries}\nGenerated: ${formatTime(info.generated_at)}\nETag:      ${info.etag}\nSHA-256:   ${info.sha256}`);
      }),
    'pcctl krl show',
  );
  withExamples(
    krl
      .command('export')
      .description('write the KRL (OpenSSH binary format) to a file')
      .argument('<file>', "where to write it ('-' for stdout)")
      .action(async (file: string, _o, cmd: Command) => {
        const api = adminApi(cmd);
        const res = await api.request('GET', '/v1/krl');
        if (res.status !== 200) throw api.refusal(res);
        if (file === '-') {
          if (process.stdout.isTTY === true) throw new CliError('ERR_USAGE', 'krl export: the KRL is binary; give a file or redirect stdout');
          process.stdout.write(res.bytes);
          return;
        }
        // Public data that sshd (root) and anyone auditing the host may read.
        writeFileAtomic(file, res.bytes, 0o644);
      }),
    'pcctl krl export /etc/ssh/revoked_keys.krl',
    'ssh-keygen -Q -f revoked_keys.krl ~/.pcsh/keys/bastion/id_ed25519-cert.pub',
  );
}
