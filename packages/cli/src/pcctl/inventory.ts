import { Argument, type Command } from 'commander';
import { CliError } from '../common/errors.js';
import { collect, withExamples } from '../common/help.js';
import { formatLabels, formatTime, formatUntil, parseDurationArg, parseLabelArgs, printJson, printTable, writeOut } from '../common/output.js';
import type { AuthApi } from '../common/auth-api.js';
import { adminApi, enc, optsOf } from './admin.js';

/*
 * pcctl tokens (join tokens that enroll a host or a proxy) and pcctl hosts (what enrolled).
 * A token's labels decide which roles reach the host, so they are fixed when the token is
 * made, not chosen by the host joining. Host certificate expiry is shown because an expired
 * host certificate locks everyone out of that host.
 */

interface TokenListing {
  readonly id: string;
  readonly type: string;
  readonly labels: Record<string, string>;
  readonly hostname?: string;
  readonly expires_at: string;
  readonly created_by?: string;
  readonly used_at?: string;
  readonly used_by?: string;
}

interface HostListing {
  readonly name: string;
  readonly type: string;
  readonly names: readonly string[];
  readonly labels: Record<string, string>;
  readonly enrolled_at: string;
  readonly renewed_at?: string;
  readonly certificates: readonly { readonly serial: string; readonly valid_before: string }[];
}

/** A token id from a unique prefix of one (the table shows 16 of its 64 characters). */
async function resolveTokenId(api: AuthApi, given: string): Promise<string> {
  if (!/^[0-9a-f]{4,64}$/.test(given)) throw new CliError('ERR_USAGE', `token id: expected hex characters (4 to 64), got ${JSON.stringify(given)}`);
  if (given.length === 64) return given;
  const { tokens } = await api.call<{ tokens: TokenListing[] }>('GET', '/v1/admin/tokens');
  const hits = tokens.filter((t) => t.id.startsWith(given));
  if (hits.length === 0) throw new CliError('ERR_NOT_FOUND', `no join token ${given}`);
  if (hits.length > 1) throw new CliError('ERR_NOT_FOUND', `token id ${given} is ambiguous (${hits.length} tokens); give more characters`);
  return hits[0]!.id;
}

/** The latest expiry among a host's certificates. */
function certExpiry(h: HostListing): string | undefined {
  return h.certificates.map((c) => c.valid_before).sort().at(-1);
}

export function addInventoryCommands(program: Command): void {
  const tokens = withExamples(program.command('tokens').description('join tokens that enroll hosts and proxies'), 'pcctl tokens add host --labels env=prod');

  withExamples(
    tokens
      .command('add')
      .description('make a join token and print it (shown once)')
      .addArgument(new Argument('<type>', 'what it enrolls').choices(['host', 'proxy']))
      .option('--ttl <duration>', 'how long it may be used', '1h')
      .option('--labels <k=v,...>', 'labels the enrolled host gets (repeatable)', collect)
      .option('--hostname <name>', 'the one host name it may enroll')
      .option('--json', 'print JSON (token, id, labels, expiry)')
      .action(async (type: string, _o, cmd: Command) => {
        const o = optsOf<{ ttl: string; labels?: string[]; hostname?: string }>(cmd);
        const ttl = parseDurationArg(o.ttl, '--ttl');
        const labels = parseLabelArgs(o.labels ?? [], '--labels');
        const api = adminApi(cmd);
        const body = await api.call<{ token: string; id: string; expires_at: string }>('POST', '/v1/admin/tokens', {
          json: { type, ttl, ...(Object.keys(labels).length === 0 ? {} : { labels }), ...(o.hostname === undefined ? {} : { hostname: o.hostname }) },
        });
        if (o.json === true) return printJson(body);
        writeOut(body.token);
        if (process.stderr.isTTY === true) {
          process.stderr.write(`Valid until ${formatTime(body.expires_at)}. On the ${type}: portcullis host join --token ${body.token} --auth ${api.target.url}\n`);
        }
      }),
    'pcctl tokens add host --labels env=prod,team=web --ttl 30m',
    'pcctl tokens add proxy --hostname bastion2.example.com',
  );

  withExamples(
    tokens
      .command('ls')
      .description('list join tokens')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const { tokens: list } = await adminApi(cmd).call<{ tokens: TokenListing[] }>('GET', '/v1/admin/tokens');
        if (optsOf(cmd).json === true) return printJson(list);
        const now = Date.now();
        printTable(
          ['ID', 'Type', 'Labels', 'Hostname', 'Expires', 'Used by'],
          list.map((t) => [t.id.slice(0, 16), t.type, formatLabels(t.labels) || '-', t.hostname ?? '-', formatUntil(t.expires_at, now), t.used_by ?? '-']),
        );
      }),
    'pcctl tokens ls',
  );

  withExamples(
    tokens
      .command('rm')
      .description('delete a join token (by id or a unique prefix of it)')
      .argument('<id>', 'token id')
      .action(async (id: string, _o, cmd: Command) => {
        const api = adminApi(cmd);
        await api.call('DELETE', `/v1/admin/tokens/${enc(await resolveTokenId(api, id))}`);
      }),
    'pcctl tokens rm 3f2a9c01d4e5b6a7',
  );

  const hosts = withExamples(program.command('hosts').description('enrolled hosts and proxies'), 'pcctl hosts ls');

  withExamples(
    hosts
      .command('ls')
      .description('list enrolled hosts with labels and host certificate expiry')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const { hosts: list } = await adminApi(cmd).call<{ hosts: HostListing[] }>('GET', '/v1/admin/hosts');
        if (optsOf(cmd).json === true) return printJson(list);
        const now = Date.now();
        printTable(
          ['Host', 'Type', 'Labels', 'Other names', 'Certificate expires'],
          list.map((h) => {
            const exp = certExpiry(h);
            return [h.name, h.type, formatLabels(h.labels) || '-', h.names.filter((n) => n !== h.name).join(',') || '-', exp === undefined ? '-' : formatUntil(exp, now)];
          }),
        );
      }),
    'pcctl hosts ls',
    'pcctl hosts ls --json | jq -r ".[] | select(.type == \\"proxy\\") | .name"',
  );

  withExamples(
    hosts
      .command('rm')
      .description("remove a host: its certificates are revoked first, then its record")
      .argument('<name>', 'host name')
      .action(async (name: string, _o, cmd: Command) => {
        await adminApi(cmd).call('DELETE', `/v1/admin/hosts/${enc(name)}`);
      }),
    'pcctl hosts rm web03',
  );
}
