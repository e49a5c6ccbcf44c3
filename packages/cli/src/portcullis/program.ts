import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { createProgram } from '../common/main.js';
import { main as hostMain } from '../host/cli.js';
import { backup, restore } from './backup.js';
import { loadStartConfig } from './config.js';
import { startPortcullis } from './start.js';

/*
 * The `portcullis` command tree: `start` runs the services, `host …` enrolls and maintains the
 * machine it runs on (src/host/). Service lines go to stderr; stdout stays for the audit
 * stream the proxy writes as JSON lines, so a log shipper can read it untouched.
 */

const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function start(o: { config?: string; roles?: string }): Promise<void> {
  const config = loadStartConfig(o.config, o.roles === undefined ? {} : { roles: o.roles });
  if (config.envOverrides.length > 0) log(`portcullis: environment overrides: ${config.envOverrides.join(', ')}`);
  const running = await startPortcullis(config, log);
  log(`portcullis: running ${config.services.join(', ')} (state in ${config.state_dir}); SIGTERM or Ctrl-C stops it`);
  if (running.nextSteps.length > 0) log(['', 'First start: what to do next', ...running.nextSteps.map((l) => `  ${l}`), ''].join('\n'));
  await new Promise<void>((resolve, reject) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log(`portcullis: ${signal}: no new connections; letting sessions finish`);
      running.stop().then(() => {
        log('portcullis: stopped');
        resolve();
      }, reject);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** `portcullis host …` is the host tool; its timers must run it, not `portcullis`, so argv[1] says so. */
async function host(args: readonly string[]): Promise<void> {
  process.argv[1] = fileURLToPath(new URL('../host/cli.ts', import.meta.url));
  const code = await hostMain(args);
  if (code !== 0) process.exitCode = code;
}

export function buildPortcullis(): Command {
  const program = createProgram('portcullis', 'Portcullis services: auth (the CA), the SSH proxy and the web gateway, and host enrollment.');
  withExamples(
    program
      .command('start')
      .description('run the services of this machine (all of them by default) from one YAML config')
      .option('-c, --config <file>', 'the config file (default: built-in defaults, state in /var/lib/portcullis)')
      .option('--roles <list>', 'the services to run here: auth,proxy,web (overrides the config)')
      .action(async (_o, cmd: Command) => start(cmd.opts<{ config?: string; roles?: string }>())),
    'portcullis start --config /etc/portcullis/portcullis.yaml',
    'portcullis start --config portcullis.yaml --roles proxy     # a second bastion',
  );
  withExamples(
    program
      .command('backup')
      .description('write the whole state (Redis keys from any topology, CA keys, TLS, proxy credential, config) to one 0600 .tar.gz')
      .requiredOption('-o, --out <file>', 'the archive to write (never overwritten)')
      .option('-c, --config <file>', 'the config portcullis start uses (finds the state and Redis; copied into the backup)')
      .option('--state <dir>', 'the state directory (default: the config\'s state_dir)')
      .option('--redis-url <url>', 'an external Redis to read instead of the one the config names')
      .option('--include-recordings', 'session recordings too (default: left out, they can be far larger than the rest)')
      .action(async (_o, cmd: Command) => backup(cmd.opts<{ out: string; config?: string; state?: string; redisUrl?: string; includeRecordings?: boolean }>(), log)),
    'portcullis backup --config /etc/portcullis/portcullis.yaml --out /backup/portcullis-$(date +%F).tar.gz',
  );
  withExamples(
    program
      .command('restore')
      .description('restore a backup into the state directory and the configured Redis (any topology) while portcullis is stopped')
      .requiredOption('-i, --in <file>', 'the archive portcullis backup wrote')
      .option('-c, --config <file>', 'the config portcullis start uses (finds the state and Redis)')
      .option('--state <dir>', 'the state directory (default: the config\'s state_dir)')
      .option('--redis-url <url>', 'an external Redis to restore into instead of the one the config names')
      .option('--force', 'move existing files aside (into pre-restore-<time>/) and replace the Redis keys instead of refusing')
      .action(async (_o, cmd: Command) => restore(cmd.opts<{ in: string; config?: string; state?: string; redisUrl?: string; force?: boolean }>(), log)),
    'portcullis restore --config /etc/portcullis/portcullis.yaml --in /backup/portcullis-2026-11-22.tar.gz',
  );
  withExamples(
    program
      .command('host')
      .description('enroll this machine as an SSH target (join), renew its certificates, refresh its KRL')
      .argument('<command>', 'join, renew or krl-refresh')
      .argument('[args...]', 'that command\'s flags (portcullis host join --help)')
      .allowUnknownOption()
      .helpOption(false)
      .action(async (command: string, args: string[]) => {
        if (!['join', 'renew', 'krl-refresh', '--help', '-h'].includes(command)) throw new CliError('ERR_USAGE', `host: unknown command ${JSON.stringify(command)} (join, renew, krl-refresh)`);
        await host([command, ...args]);
      }),
    'portcullis host join --token T --auth https://bastion:3025 --fingerprint AB:CD:…',
    'portcullis host renew',
    'portcullis host krl-refresh',
  );
  return program;
}
