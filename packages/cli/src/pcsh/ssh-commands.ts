import type { Command } from 'commander';
import { collect, withExamples } from '../common/help.js';
import { proxySsh } from './proxy-ssh.js';
import { scp, ssh, type ScpOptions, type SshOptions } from './ssh.js';

/*
 * The commands that reach hosts through the proxy. Single-letter options keep OpenSSH's
 * meaning, so muscle memory carries over; anything after `--` (or an unknown option after the
 * host) is the remote command, untouched.
 */

interface Globals {
  readonly profile?: string;
}

const PROXY_FLAG = ['--proxy <host:port>', 'the Portcullis proxy (default: PCSH_PROXY, else the auth host on port 3022)'] as const;

export function addSshCommands(program: Command): void {
  withExamples(
    program
      .command('ssh')
      .description('ssh to a host through the proxy (stock OpenSSH with a fresh certificate); exits with the remote status')
      .argument('[destination]', '[login@]host')
      .argument('[command...]', 'the remote command (a shell when absent)')
      .option('-L <spec>', 'local port forward, as ssh -L', collect)
      .option('-R <spec>', 'remote port forward, as ssh -R', collect)
      .option('-D <spec>', 'dynamic (SOCKS) forward, as ssh -D', collect)
      .option('-o <option>', 'an ssh_config option, as ssh -o', collect)
      .option('-A', 'forward the ssh-agent (when your role allows it)')
      .option('-N', 'run no command (forwarding only)')
      .option('-t', 'force a terminal')
      .option('-T', 'no terminal')
      .option('-p <port>', "the host's SSH port")
      .option('-i <file>', 'an extra identity file')
      .option('-l <login|label=value>', 'the login, or label=value to run the command on every host with those labels', collect)
      .option(...PROXY_FLAG)
      .allowUnknownOption()
      .action(async (destination: string | undefined, command: string[], _o, cmd: Command) =>
        ssh({ ...cmd.optsWithGlobals<SshOptions & Globals>() }, destination, command),
      ),
    'pcsh ssh web01',
    'pcsh ssh root@web01 uptime',
    'pcsh ssh -L 8080:localhost:80 -N web01',
    'pcsh ssh -l env=dev uptime          # every dev host, output prefixed with its name',
  );

  withExamples(
    program
      .command('scp')
      .description('copy files to or from hosts through the proxy (stock scp)')
      .argument('<paths...>', 'sources and the destination; remote ones as [login@]host:path')
      .option('-r', 'copy directories recursively')
      .option('-p', 'keep times and modes')
      .option('-q', 'no progress meter')
      .option('-P <port>', "the host's SSH port")
      .option('-o <option>', 'an ssh_config option', collect)
      .option(...PROXY_FLAG)
      .action(async (paths: string[], _o, cmd: Command) => scp(cmd.optsWithGlobals<ScpOptions & Globals>(), paths)),
    'pcsh scp ./build.tar.gz web01:/tmp/',
    'pcsh scp -r root@web01:/var/log/app ./logs',
  );

  withExamples(
    program
      .command('bench')
      .description('load test: open sessions through the proxy at a fixed rate (open loop) and report latency percentiles and failures')
      .argument('<destination>', '[login@]host')
      .argument('[command...]', 'the remote command each session runs (default: true)')
      .option('--rate <n>', 'sessions started per second, however slow earlier ones are', '10')
      .option('--duration <d>', 'how long to keep starting sessions (30s, 5m)', '30s')
      .option('--interactive', 'a pty shell that runs the command and exits, instead of exec')
      .option('--concurrency-limit <n>', 'at most this many sessions at once; the wait for a slot counts as latency')
      .option('--json', 'print the report as JSON')
      .option(...PROXY_FLAG)
      .action(async (destination: string, command: string[], _o, cmd: Command) => {
        const { bench } = await import('./bench/command.js');
        await bench(cmd.optsWithGlobals(), destination, command);
      }),
    'pcsh bench --rate 20 --duration 1m root@web01 uptime',
    'pcsh bench --interactive --json web01 "ls /" | jq .total.p99',
  );

  const proxy = program.command('proxy').description('the tunnel stock OpenSSH uses (ProxyCommand)');
  withExamples(
    proxy
      .command('ssh')
      .description('connect stdin/stdout to login@host:port through the proxy, minting a certificate first when needed')
      .argument('<target>', '[login@]host[:port] (ssh_config: %r@%h:%p)')
      .option(...PROXY_FLAG)
      .action(async (target: string, _o, cmd: Command) => proxySsh(cmd.optsWithGlobals<{ profile?: string; proxy?: string }>(), target)),
    'ssh -o "ProxyCommand=pcsh proxy ssh %r@%h:%p" root@web01',
  );
}
