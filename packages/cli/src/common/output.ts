import { CliError } from './errors.js';

/*
 * What commands print. Lists are tables for people and `--json` for programs; the table never
 * carries information the JSON lacks. Times are shown in UTC ISO form with a relative hint,
 * because "valid until 14:02" means nothing across time zones in an incident channel.
 */

export function writeOut(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  writeOut(JSON.stringify(value, null, 2));
}

/** Columns padded to their widest cell; the last column is not padded (no trailing blanks). */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w));
  return [line(headers), line(rule), ...rows.map(line)].join('\n') + '\n';
}

export function printTable(headers: readonly string[], rows: readonly (readonly string[])[]): void {
  process.stdout.write(formatTable(headers, rows));
}

/** `4m12s`, `11h59m`, `29d3h`: the two largest units, enough to act on. */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [size, unit] of units) {
    if (rest >= size || (parts.length === 0 && size === 1)) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join('');
}

/** `2025-01-02T03:04:05Z (in 4m12s)` or `(expired 3m ago)`. */
export function formatUntil(iso: string | number, now: number): string {
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const stamp = new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return t > now ? `${stamp} (in ${formatSpan(t - now)})` : `${stamp} (expired ${formatSpan(now - t)} ago)`;
}

export function formatTime(iso: string | number): string {
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  return Number.isNaN(t) ? String(iso) : new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** `5m`, `90s`, `1h30m`, `7d` or plain seconds -> seconds; a usage error otherwise. */
export function parseDurationArg(text: string, what: string): number {
  const t = text.trim();
  if (/^\d+$/.test(t) && Number(t) > 0) return Number(t);
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(t);
  const secs = m === null ? 0 : Number(m[1] ?? 0) * 86400 + Number(m[2] ?? 0) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
  if (t === '' || secs <= 0) throw new CliError('ERR_USAGE', `${what}: expected a duration like 90s, 5m, 1h30m or 7d, got ${JSON.stringify(text)}`);
  return secs;
}

/** An absolute time (ISO 8601) or a duration back from now (`1h` = an hour ago). */
export function parseTimeArg(text: string, what: string, now: number): Date {
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const t = Date.parse(/[zZ]|[+-]\d{2}:?\d{2}$/.test(text) || !text.includes('T') ? text : `${text}Z`);
    if (Number.isNaN(t)) throw new CliError('ERR_USAGE', `${what}: expected an ISO 8601 time or a duration such as 1h, got ${JSON.stringify(text)}`);
    return new Date(t);
  }
  return new Date(now - parseDurationArg(text, what) * 1000);
}

/** `k=v` pairs from arguments (and comma-separated lists of them). */
export function parseLabelArgs(args: readonly string[], what = 'label'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of args.flatMap((a) => a.split(',')).filter((a) => a !== '')) {
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new CliError('ERR_USAGE', `${what}: expected NAME=VALUE, got ${JSON.stringify(pair)}`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
