import { Option, type Command } from 'commander';
import { AuthApi } from '../common/auth-api.js';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { formatTime, formatUntil, printJson, writeOut } from '../common/output.js';
import { ProfileStore } from '../common/profile.js';
import { targetOf } from '../common/session.js';
import { optsOf } from './admin.js';

/*
 * pcctl status (is auth alive and ready, which CA keys it trusts, which KRL it serves, who is
 * signed in) and pcctl auth export (the CA public keys for sshd and for clients). Both use
 * only public routes and the profile's pin, so they work before and after a session expires.
 */

interface CaKeys {
  readonly user: { readonly authorized_keys: string; readonly keys: readonly CaKey[] };
  readonly upstream: { readonly authorized_keys: string; readonly keys: readonly CaKey[] };
  readonly host: { readonly known_hosts: string; readonly keys: readonly CaKey[] };
}
interface CaKey {
  readonly id: string;
  readonly status: string;
  readonly fingerprint: string;
  readonly created_at: number | string;
}

function publicApi(cmd: Command): AuthApi {
  return new AuthApi(targetOf(new ProfileStore().resolve(optsOf(cmd).profile)));
}

async function runStatus(cmd: Command): Promise<void> {
  const store = new ProfileStore();
  const profile = store.resolve(optsOf(cmd).profile);
  const api = new AuthApi(targetOf(profile), profile.token);
  const now = Date.now();
  const health = await api.request<{ status: string }>('GET', '/v1/health');
  const ready = await api.request<{ status: string; checks: Record<string, string> }>('GET', '/v1/ready');
  const ca = await api.call<CaKeys>('GET', '/v1/ca');
  const krl = await api.call<{ version: number; entries: number; generated_at: string; sha256: string }>('GET', '/v1/krl/info');
  const meRes = profile.token === undefined ? undefined : await api.request<{ user: { name: string }; admin: boolean; session: { expires_at: string } }>('GET', '/v1/me');
  const me = meRes?.status === 200 ? meRes.body : undefined;
  const checks = ready.body?.checks ?? {};
  const isReady = ready.status === 200;
  if (optsOf(cmd).json === true) {
    printJson({
      auth_url: profile.authUrl,
      health: health.status === 200 ? 'ok' : `HTTP ${health.status}`,
      ready: isReady,
      checks,
      ca: { user: ca.user.keys, upstream: ca.upstream.keys, host: ca.host.keys },
      krl,
      session: me === undefined ? null : { user: me.user.name, admin: me.admin, expires_at: me.session.expires_at },
    });
  } else {
    const caLines = (kind: string, keys: readonly CaKey[]): string[] => keys.map((k) => `${`${kind} CA:`.padEnd(12)} ${k.fingerprint} (${k.status}, id ${k.id})`);
    writeOut(
      [
        `Auth:       ${profile.authUrl} (${health.status === 200 ? 'alive' : `health HTTP ${health.status}`}, ${isReady ? 'ready' : 'NOT READY'}: ${Object.entries(checks).map(([k, v]) => `${k} ${v}`).join(', ')})`,
        `Signed in:  ${me === undefined ? 'no (pcsh login)' : `${me.user.name}${me.admin ? ' (admin)' : ''}, session until ${formatUntil(me.session.expires_at, now)}`}`,
        ...caLines('User', ca.user.keys),
        ...caLines('Upstream', ca.upstream.keys),
        ...caLines('Host', ca.host.keys),
        `KRL:        version ${krl.version}, ${krl.entries} entries, generated ${formatTime(krl.generated_at)}`,
      ].join('\n'),
    );
  }
  if (!isReady) throw new CliError('ERR_UNREACHABLE', `auth at ${new URL(profile.authUrl).host} is not ready: ${Object.entries(checks).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k} ${v}`).join(', ') || `HTTP ${ready.status}`}`);
}

export function addStatusCommands(program: Command): void {
  withExamples(
    program
      .command('status')
      .description("auth's health and readiness, CA key fingerprints, KRL version, who is signed in")
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => runStatus(cmd)),
    'pcctl status',
  );

  const auth = withExamples(program.command('auth').description('the certificate authorities'), 'pcctl auth export --type upstream');
  withExamples(
    auth
      .command('export')
      .description(
        "print the CA public keys: upstream CA as authorized_keys (targets' sshd TrustedUserCAKeys), user CA as authorized_keys (what the proxy trusts; never give it to a target), host CA as known_hosts lines",
      )
      .addOption(new Option('--type <kind>', 'only one CA').choices(['upstream', 'user', 'host']))
      .action(async (_o, cmd: Command) => {
        const type = optsOf<{ type?: string }>(cmd).type;
        const ca = await publicApi(cmd).call<CaKeys>('GET', '/v1/ca');
        if (type === 'upstream') return writeOut(ca.upstream.authorized_keys);
        if (type === 'user') return writeOut(ca.user.authorized_keys);
        if (type === 'host') return writeOut(ca.host.known_hosts);
        writeOut(
          [
            "# upstream CA: targets' TrustedUserCAKeys (authorized_keys format)",
            ca.upstream.authorized_keys.trim(),
            '# user CA: engineers\' certificates, trusted by the proxy only (never by a target)',
            ca.user.authorized_keys.trim(),
            '# host CA: known_hosts lines',
            ca.host.known_hosts.trim(),
          ].join('\n'),
        );
      }),
    'pcctl auth export --type upstream | sudo tee /etc/ssh/portcullis_user_ca.pub',
    'pcctl auth export --type host >> ~/.ssh/known_hosts',
  );
}
