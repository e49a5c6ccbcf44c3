import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError } from '../common/errors.js';
import type { FileChanges } from './files.js';
import type { HostLayout } from './layout.js';
import { runTool } from './sshd.js';

/*
 * The renewal and KRL refresh schedules. The unit files in deploy/host/ are the only copy the
 * Node side uses (the shell script carries the same text for hosts that have nothing else, and
 * a test holds the two equal); `@COMMAND@` becomes the command that enrolled the host, so the
 * timer runs what the operator ran.
 */

export const UNIT_FILES = ['portcullis-host-renew.service', 'portcullis-host-renew.timer', 'portcullis-krl-refresh.service', 'portcullis-krl-refresh.timer'] as const;
export const TIMER_UNITS = ['portcullis-host-renew.timer', 'portcullis-krl-refresh.timer'] as const;
export const CRON_FILE = 'portcullis-host';

export type TimerMode = 'auto' | 'systemd' | 'cron' | 'none';

export function unitTemplateDir(): string {
  return fileURLToPath(new URL('../../../../deploy/host/', import.meta.url));
}

/** One word of an ExecStart= line: systemd expands % and $, and splits on spaces unless quoted. */
function systemdWord(w: string): string {
  if (/[\x00-\x1f\x7f]/.test(w)) throw new CliError('ERR_USAGE', `cannot put ${JSON.stringify(w)} into a systemd unit`);
  const escaped = w.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** One word of a cron command (run by /bin/sh; cron itself turns an unescaped % into a newline). */
function cronWord(w: string): string {
  if (/[\x00-\x1f\x7f]/.test(w)) throw new CliError('ERR_USAGE', `cannot put ${JSON.stringify(w)} into a crontab`);
  const quoted = /^[A-Za-z0-9_@+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
  return quoted.replace(/%/g, '\\%');
}

export function renderUnits(command: readonly string[], templateDir = unitTemplateDir()): Map<string, string> {
  const exec = command.map(systemdWord).join(' ');
  const out = new Map<string, string>();
  for (const name of UNIT_FILES) {
    const path = join(templateDir, name);
    if (!existsSync(path)) throw new CliError('ERR_CONFIG', `the unit template ${path} is missing`);
    out.set(name, readFileSync(path, 'utf8').replace(/@COMMAND@/g, exec));
  }
  return out;
}

/** A cron.d file; the renewal minute comes from the host name so a fleet spreads over the hour. */
export function renderCron(command: readonly string[], hostName: string): string {
  const cmd = command.map(cronWord).join(' ');
  const minute = createHash('sha256').update(hostName).digest().readUInt16BE(0) % 60;
  return [
    '# Portcullis host timers, installed by host join (no systemd here): host certificate',
    '# renewal (acts only once half the lifetime has passed) and the KRL refresh.',
    'SHELL=/bin/sh',
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    `${minute} */6 * * * root ${cmd} renew >/dev/null`,
    `*/5 * * * * root ${cmd} krl-refresh >/dev/null`,
    '',
  ].join('\n');
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** systemd when it runs (under `root`), else cron.d when there is one, else nothing. */
export function detectTimerMode(layout: HostLayout): Exclude<TimerMode, 'auto'> {
  if (isDir(join(layout.root, 'run/systemd/system'))) return 'systemd';
  if (isDir(layout.cronDir)) return 'cron';
  return 'none';
}

/**
 * Writes the schedule through `changes` (rolled back with the rest) and returns what it did, one
 * line each. Units are enabled only on the real root: under --root nothing outside is touched.
 */
export function writeTimers(layout: HostLayout, changes: FileChanges, requested: TimerMode, command: readonly string[], hostName: string): { mode: Exclude<TimerMode, 'auto'>; notes: string[] } {
  const mode = requested === 'auto' ? detectTimerMode(layout) : requested;
  const renew = [...command, 'renew'].join(' ');
  const refresh = [...command, 'krl-refresh'].join(' ');
  if (mode === 'systemd') {
    for (const [name, text] of renderUnits(command)) changes.write(join(layout.systemdDir, name), text, 0o644);
    return { mode, notes: [] };
  }
  if (mode === 'cron') {
    changes.write(join(layout.cronDir, CRON_FILE), renderCron(command, hostName), 0o644);
    return { mode, notes: [`cron: ${join(layout.cronDir, CRON_FILE)} runs renewal every 6 hours and the KRL refresh every 5 minutes`] };
  }
  return {
    mode,
    notes: [
      'no systemd and no cron.d here: schedule these yourself as root,',
      `  every 6 hours: ${renew}`,
      `  every 5 minutes: ${refresh}`,
    ],
  };
}

/** After the files are in place: systemd loads and starts the timers (real root only). */
export async function enableTimers(layout: HostLayout, mode: Exclude<TimerMode, 'auto'>): Promise<string[]> {
  if (mode !== 'systemd') return [];
  if (layout.root !== '/') return [`systemd units written to ${layout.systemdDir} (not enabled under --root)`];
  const reload = await runTool('systemctl', ['daemon-reload']);
  const enable = reload.code === 0 ? await runTool('systemctl', ['enable', '--now', ...TIMER_UNITS]) : reload;
  if (enable.code !== 0) {
    return [`systemd units written, but enabling failed (${enable.stderr.trim() || `exit ${enable.code}`}): run systemctl enable --now ${TIMER_UNITS.join(' ')}`];
  }
  return [`systemd timers enabled: ${TIMER_UNITS.join(', ')}`];
}
