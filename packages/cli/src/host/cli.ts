import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError, EXIT_CODES } from '../common/errors.js';
import { runHostJoin } from './join.js';
import { runKrlRefresh } from './krl.js';
import { runHostRenew } from './renew.js';
import type { TimerMode } from './timers.js';

/*
 * A stand-in for `portcullis host …` until src/bin/portcullis.ts dispatches there:
 *   node --import tsx packages/cli/src/host/cli.ts join --token T --auth URL --fingerprint FP
 * It parses flags into the options of runHostJoin / runHostRenew / runKrlRefresh and turns a
 * CliError into one line and its exit code.
 */

const USAGE = `usage:
  cli.ts join --token T --auth https://auth:3025 [--fingerprint AB:CD:…|sha256//… | --insecure-first-contact]
              [--name N] [--names a,b] [--ssh-dir /etc/ssh] [--sshd-config-dir DIR] [--sshd-config FILE]
              [--exclusive] [--sshd-option 'Keyword value']... [--sshd PATH] [--timers auto|systemd|cron|none]
              [--root DIR] [--dry-run]
  cli.ts renew [--force] [--root DIR] [--auth URL] [--fingerprint FP]
  cli.ts krl-refresh [--root DIR] [--auth URL] [--fingerprint FP]`;

const common = {
  root: { type: 'string' },
  auth: { type: 'string' },
  fingerprint: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const joinFlags = {
  ...common,
  token: { type: 'string' },
  'insecure-first-contact': { type: 'boolean' },
  name: { type: 'string' },
  names: { type: 'string', multiple: true },
  'ssh-dir': { type: 'string' },
  'sshd-config-dir': { type: 'string' },
  'sshd-config': { type: 'string' },
  exclusive: { type: 'boolean' },
  'sshd-option': { type: 'string', multiple: true },
  sshd: { type: 'string' },
  timers: { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

/**
 * How this very process was started, so the timers run the same thing. A bare `--import tsx`
 * is resolved to its file: systemd starts the unit in /, where `tsx` would not resolve.
 */
export function selfCommand(): string[] {
  const execArgv = process.execArgv.map((a, i, all) => (all[i - 1] === '--import' && a === 'tsx' ? fileURLToPath(import.meta.resolve('tsx')) : a));
  return [process.execPath, ...execArgv, resolve(process.argv[1] ?? fileURLToPath(import.meta.url))];
}

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function need(v: string | undefined, flag: string): string {
  if (v === undefined || v === '') throw new CliError('ERR_USAGE', `${flag} is required`);
  return v;
}

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'join') {
      const { values: v } = parseArgs({ args: rest, options: joinFlags, strict: true, allowPositionals: false });
      if (v.help === true) return usage(0);
      const timers = v.timers;
      if (timers !== undefined && !['auto', 'systemd', 'cron', 'none'].includes(timers)) throw new CliError('ERR_USAGE', `--timers expected auto, systemd, cron or none, got ${JSON.stringify(timers)}`);
      await runHostJoin({
        token: need(v.token, '--token'),
        auth: need(v.auth, '--auth'),
        selfCommand: selfCommand(),
        ...opt('fingerprint', v.fingerprint),
        ...opt('insecureFirstContact', v['insecure-first-contact']),
        ...opt('name', v.name),
        ...opt('names', v.names?.flatMap((n) => n.split(',')).filter((n) => n !== '')),
        ...opt('root', v.root),
        ...opt('sshDir', v['ssh-dir']),
        ...opt('sshdConfigDir', v['sshd-config-dir']),
        ...opt('sshdConfig', v['sshd-config']),
        ...opt('exclusive', v.exclusive),
        ...opt('sshdOptions', v['sshd-option']),
        ...opt('sshd', v.sshd),
        ...opt('timers', timers as TimerMode | undefined),
        ...opt('dryRun', v['dry-run']),
      });
      return 0;
    }
    if (command === 'renew' || command === 'krl-refresh') {
      const flags = command === 'renew' ? { ...common, force: { type: 'boolean' } } as const : common;
      const { values: v } = parseArgs({ args: rest, options: flags, strict: true, allowPositionals: false });
      if (v.help === true) return usage(0);
      const o = { ...opt('root', v.root), ...opt('auth', v.auth), ...opt('fingerprint', v.fingerprint) };
      if (command === 'renew') await runHostRenew({ ...o, ...opt('force', (v as { force?: boolean }).force) });
      else await runKrlRefresh(o);
      return 0;
    }
    if (command === undefined || command === '--help' || command === '-h') return usage(command === undefined ? 2 : 0);
    throw new CliError('ERR_USAGE', `unknown command ${JSON.stringify(command)} (join, renew, krl-refresh)`);
  } catch (e) {
    const prefix = `portcullis host${command === undefined ? '' : ` ${command}`}`;
    if (e instanceof CliError) {
      process.stderr.write(`${prefix}: ${e.message}\n`);
      return EXIT_CODES[e.code];
    }
    // parseArgs reports unknown or malformed flags as TypeError with a code.
    if ((e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${prefix}: ${(e as Error).message}\n`);
      return EXIT_CODES.ERR_USAGE;
    }
    process.stderr.write(`${prefix}: ${(e as Error).message ?? String(e)}\n`);
    return 1;
  }
}

function usage(code: number): number {
  (code === 0 ? process.stdout : process.stderr).write(`${USAGE}\n`);
  return code;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
