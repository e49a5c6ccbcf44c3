import { Option, type Command } from 'commander';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { formatTime, printJson, writeOut } from '../common/output.js';
import { adminApi, optsOf } from './admin.js';

/*
 * pcctl auth rotate: one phase of a CA rotation at a time (auth's ca/rotation.ts, and
 * docs/ca-rotation.md). Each step prints what it changed and what has to happen before the next
 * one, because the order is what keeps every session working: hosts and clients must trust a
 * key before it signs, and must be off the old key before it is dropped.
 */

const PHASES = ['init', 'update_clients', 'update_servers', 'standby'] as const;

interface RotationView {
  readonly kind: 'user' | 'upstream' | 'host';
  readonly phase: string;
  readonly next_phase?: string;
  readonly old_ca?: string;
  readonly new_ca?: string;
  readonly started_at?: string;
  readonly signing_switched_at?: string;
  readonly changed_at?: string;
  readonly changed_by?: string;
  readonly hosts_on_old_ca?: readonly string[];
  readonly last?: { readonly outcome: string; readonly at: string; readonly old_ca: string; readonly new_ca: string };
  readonly keys: readonly { readonly id: string; readonly status: string; readonly fingerprint: string; readonly role?: string }[];
}

/** What the operator has to make happen before the next phase, by kind and phase reached. */
function advice(v: RotationView): string {
  const next = `pcctl auth rotate --type ${v.kind} --phase ${v.next_phase ?? 'init'}`;
  if (v.phase === 'init') {
    if (v.kind === 'user') return `the new user CA is trusted but does not sign yet: wait until every proxy has fetched the CA keys again (its CA cache, a minute by default), then: ${next}`;
    return v.kind === 'upstream'
      ? `the new upstream CA is trusted but does not sign yet: wait until every host has run krl-refresh (its TrustedUserCAKeys then lists both keys), then: ${next}`
      : `the new host CA is trusted but does not sign yet: wait until clients and proxies have the new @cert-authority line (pcctl auth export --type host; pcsh login refreshes it), then: ${next}`;
  }
  if (v.phase === 'update_clients') {
    return v.kind !== 'host'
      ? `new ${v.kind} certificates come from the new CA; the old one stays trusted. Then: ${next}`
      : `hosts renewing now get certificates from the new CA; the old one stays trusted. Then: ${next}`;
  }
  if (v.phase === 'update_servers') {
    const pending = v.hosts_on_old_ca ?? [];
    const wait = v.kind !== 'host'
      ? `wait until ${v.kind} certificates of the old CA have expired (they are refused once it is dropped${v.kind === 'upstream' ? '; they run out at most six minutes after signing' : ''})`
      : pending.length > 0
        ? `${pending.length} host(s) still present old certificates (${pending.slice(0, 5).join(', ')}${pending.length > 5 ? ', …' : ''}): wait for their renewal timer or run \`portcullis host renew --force\` there`
        : 'every enrolled host has renewed onto the new CA';
    return `${wait}; then complete with: ${next} (or --rollback)`;
  }
  return v.last === undefined ? 'no rotation under way' : `last rotation ${v.last.outcome.replace('_', ' ')} at ${formatTime(v.last.at)}`;
}

function render(v: RotationView): string {
  const lines = [`${v.kind} CA: phase ${v.phase}${v.changed_at === undefined ? '' : ` since ${formatTime(v.changed_at)}${v.changed_by === undefined ? '' : ` (by ${v.changed_by})`}`}`];
  for (const k of v.keys) lines.push(`  ${k.fingerprint} ${k.status}${k.role === undefined ? '' : `, ${k.role}`} (id ${k.id})`);
  lines.push(`  ${advice(v)}`);
  return lines.join('\n');
}

export function addRotateCommands(program: Command): void {
  const auth = program.commands.find((c) => c.name() === 'auth');
  if (auth === undefined) throw new Error('pcctl: the auth command must be added before rotate');
  withExamples(
    auth
      .command('rotate')
      .description('rotate a CA in phases: init (new key trusted), update_clients (new key signs), update_servers (time to renew), standby (old key dropped); `status` shows where each CA is')
      .argument('[status]', 'show every CA\'s rotation phase instead of changing it')
      .addOption(new Option('--type <kind>', 'which CA').choices(['user', 'upstream', 'host']))
      .addOption(new Option('--phase <phase>', 'the next phase (phases are never skipped)').choices([...PHASES]))
      .option('--rollback', 'before the last step: the old key signs again, the new one is dropped')
      .addOption(new Option('--algorithm <name>', 'with --phase init: the new key\'s algorithm (default: the old key\'s)').choices(['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa']))
      .option('--key <id>', 'with --phase init: rotate to this standby key (imported, or an HSM key auth listed as standby) instead of a new one')
      .option('--force', 'with --phase standby: drop the old host CA although some hosts have not renewed (clients will refuse them)')
      .option('--json', 'print JSON')
      .action(async (what: string | undefined, _o, cmd: Command) => {
        const o = optsOf<{ type?: 'user' | 'upstream' | 'host'; phase?: string; rollback?: boolean; algorithm?: string; key?: string; force?: boolean; json?: boolean }>(cmd);
        const api = adminApi(cmd);
        if (what !== undefined) {
          if (what !== 'status') throw new CliError('ERR_USAGE', `auth rotate: unknown argument ${JSON.stringify(what)}; did you mean \`pcctl auth rotate status\`?`);
          if (o.phase !== undefined || o.rollback === true) throw new CliError('ERR_USAGE', 'auth rotate status: --phase and --rollback change a rotation; give them without `status`');
          const all = await api.call<Record<'user' | 'upstream' | 'host', RotationView>>('GET', '/v1/admin/ca/rotation');
          const shown = o.type === undefined ? [all.user, all.upstream, all.host] : [all[o.type]];
          if (o.json === true) printJson(o.type === undefined ? all : all[o.type]);
          else writeOut(shown.map(render).join('\n'));
          return;
        }
        if (o.type === undefined) throw new CliError('ERR_USAGE', 'auth rotate: give --type user, --type upstream or --type host');
        if ((o.phase === undefined) === (o.rollback !== true)) throw new CliError('ERR_USAGE', 'auth rotate: give one of --phase <next> or --rollback');
        if (o.algorithm !== undefined && o.phase !== 'init') throw new CliError('ERR_USAGE', 'auth rotate: --algorithm goes with --phase init');
        if (o.key !== undefined && o.phase !== 'init') throw new CliError('ERR_USAGE', 'auth rotate: --key goes with --phase init');
        if (o.force === true && o.phase !== 'standby') throw new CliError('ERR_USAGE', 'auth rotate: --force goes with --phase standby');
        const body =
          o.rollback === true
            ? { rollback: true }
            : { phase: o.phase, ...(o.algorithm === undefined ? {} : { algorithm: o.algorithm }), ...(o.key === undefined ? {} : { key: o.key }), ...(o.force === true ? { force: true } : {}) };
        const v = await api.call<RotationView>('POST', `/v1/admin/ca/${o.type}/rotation`, { json: body });
        if (o.json === true) printJson(v);
        else writeOut(render(v));
      }),
    'pcctl auth rotate status',
    'pcctl auth rotate --type user --phase init',
    'pcctl auth rotate --type user --phase update_clients',
    'pcctl auth rotate --type user --rollback',
  );
}
