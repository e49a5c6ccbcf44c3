import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { AuthApi } from '../common/auth-api.js';
import { CliError } from '../common/errors.js';
import { collect, withExamples } from '../common/help.js';
import { formatTime, parseTimeArg, printJson, writeOut } from '../common/output.js';
import { adminApi, optsOf } from './admin.js';

/*
 * pcctl audit: search the audit stream by user, event code or name, and time; `--follow`
 * keeps polling for new events like `tail -f`. The newest events of the range are shown,
 * oldest first, so the last line on the screen is the latest thing that happened.
 */

interface AuditEvent {
  readonly id: string;
  readonly code: string;
  readonly name: string;
  readonly time: string;
  readonly actor: { readonly kind: string; readonly name: string; readonly address?: string };
  readonly fields: Readonly<Record<string, unknown>>;
}

interface AuditOptions {
  readonly user?: string;
  readonly code?: string[];
  readonly since?: string;
  readonly from?: string;
  readonly to?: string;
  readonly limit: string;
  readonly follow?: boolean;
  readonly interval: string;
  readonly json?: boolean;
}

/** Stream ids `<ms>-<seq>` in order. */
function idAfter(a: string, b: string): boolean {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am !== bm ? am > bm : as > bs;
}

const fieldText = (v: unknown): string => (typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v));

export function formatAuditLine(e: AuditEvent): string {
  const actor = `${e.actor.name}${e.actor.address === undefined ? '' : `@${e.actor.address}`}`;
  const fields = Object.entries(e.fields)
    .map(([k, v]) => `${k}=${fieldText(v)}`)
    .join(' ');
  return `${formatTime(e.time)}  ${e.code}  ${e.name.padEnd(22)} ${actor.padEnd(20)} ${fields}`.trimEnd();
}

async function fetchEvents(api: AuthApi, o: AuditOptions, from: Date | undefined, to: Date | undefined, limit: number): Promise<AuditEvent[]> {
  const { events } = await api.call<{ events: AuditEvent[] }>('GET', '/v1/admin/audit', {
    query: {
      ...(from === undefined ? {} : { from: from.toISOString() }),
      ...(to === undefined ? {} : { to: to.toISOString() }),
      ...(o.user === undefined ? {} : { user: o.user }),
      ...(o.code === undefined ? {} : { code: o.code.join(',') }),
      limit,
      order: 'newest',
    },
  });
  return events.reverse();
}

async function runAudit(cmd: Command): Promise<void> {
  const o = optsOf<AuditOptions>(cmd);
  const now = Date.now();
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new CliError('ERR_USAGE', `--limit: expected 1 to 10000, got ${JSON.stringify(o.limit)}`);
  if (o.since !== undefined && o.from !== undefined) throw new CliError('ERR_USAGE', '--since and --from exclude each other');
  const from = o.from !== undefined ? parseTimeArg(o.from, '--from', now) : parseTimeArg(o.since ?? '24h', '--since', now);
  const to = o.to === undefined ? undefined : parseTimeArg(o.to, '--to', now);
  if (o.follow === true && to !== undefined) throw new CliError('ERR_USAGE', '--follow and --to exclude each other');
  const api = adminApi(cmd);
  const events = await fetchEvents(api, o, from, to, limit);
  if (o.follow !== true) {
    if (o.json === true) return printJson(events);
    for (const e of events) writeOut(formatAuditLine(e));
    return;
  }
  // Following: one event per line (JSON Lines with --json), as they come.
  const emit = (e: AuditEvent): void => writeOut(o.json === true ? JSON.stringify(e) : formatAuditLine(e));
  events.forEach(emit);
  const intervalMs = Math.max(0.2, Number(o.interval) || 2) * 1000;
  let last = events.at(-1)?.id;
  let since = last === undefined ? new Date(now) : new Date(Number(last.split('-')[0]));
  for (;;) {
    await sleep(intervalMs);
    const fresh = (await fetchEvents(api, o, since, undefined, 10_000)).filter((e) => last === undefined || idAfter(e.id, last));
    for (const e of fresh) emit(e);
    if (fresh.length > 0) {
      last = fresh.at(-1)!.id;
      since = new Date(Number(last.split('-')[0]));
    }
  }
}

export function addAuditCommand(program: Command): void {
  withExamples(
    program
      .command('audit')
      .description('search the audit trail (newest events of the range, oldest first); --follow for new ones')
      .option('--user <name>', 'events by or about this user')
      .option('--code <code>', 'an event code (PC2000I) or name (cert.issued); repeatable', collect)
      .option('--since <duration>', 'from this long ago (default 24h)')
      .option('--from <time>', 'from this time (ISO 8601)')
      .option('--to <time>', 'until this time (ISO 8601 or a duration ago)')
      .option('--limit <n>', 'at most this many events', '100')
      .option('-f, --follow', 'keep printing new events')
      .option('--interval <seconds>', 'with --follow: how often to poll', '2')
      .option('--json', 'print JSON (JSON Lines with --follow)')
      .action(async (_o, cmd: Command) => runAudit(cmd)),
    'pcctl audit --user alice --since 2h',
    'pcctl audit --code cert.issued --code user.login_failed --from 2025-06-01T00:00:00Z --to 2025-06-02T00:00:00Z',
    'pcctl audit --follow --json | jq .name',
  );
}
