import { Command, Option } from 'commander';
import { addCompletionCommand } from '../common/completion.js';
import { withExamples } from '../common/help.js';
import { createProgram } from '../common/main.js';

/*
 * The pcsh command tree (engineers). The SSH commands (ssh, scp, proxy ssh, play, join...)
 * are added by their own modules; everything here talks to auth. Each action loads its module
 * when it runs: cert-core alone costs ~0.2 s to load, which --help, completion, ls and config
 * should not pay.
 */

interface Globals {
  readonly profile?: string;
}

const globals = (cmd: Command): Globals => cmd.optsWithGlobals<Globals>();

export function buildPcsh(): Command {
  const program = createProgram('pcsh', 'Portcullis client: sign in, get short-lived SSH certificates, reach hosts through the proxy.');
  program.option('--profile <name>', 'the profile (auth service) to use; default: the last one logged in to');

  withExamples(
    program
      .command('login')
      .description('sign in (SSO in the browser, --headless device code, or --user for a local password) and get a certificate')
      .option('--auth <url>', 'the auth service, https://HOST:3025 (remembered in the profile)')
      .option('--fingerprint <sha256>', "pin auth's TLS certificate to this SHA-256 fingerprint (as the service printed it)")
      .option('--insecure-accept-fingerprint', 'trust whatever certificate auth presents now (trust on first use)')
      .option('--headless', 'sign in on another device with a code (OAuth device flow)')
      .option('--user <name>', 'a local user with a password (PCSH_PASSWORD or a prompt)')
      .option('--no-browser', 'print the sign-in URL instead of opening a browser')
      .option('--ttl <duration>', 'lifetime asked for the first certificate (capped by your roles)')
      .action(async (_o, cmd: Command) => {
        const o = cmd.opts<{ auth?: string; fingerprint?: string; insecureAcceptFingerprint?: boolean; headless?: boolean; user?: string; browser: boolean; ttl?: string }>();
        const profile = globals(cmd).profile;
        const { login } = await import('./login.js');
        await login({ ...o, ...(profile === undefined ? {} : { profile }) });
      }),
    'pcsh login --auth https://bastion.example.com:3025 --fingerprint AB:CD:…',
    'pcsh login --headless                 # on a machine without a browser',
    'PCSH_PASSWORD=… pcsh login --user admin',
  );

  withExamples(
    program
      .command('logout')
      .description('end the login session at auth and delete the local key, certificate and token')
      .action(async (_o, cmd: Command) => (await import('./login.js')).logout(globals(cmd).profile)),
    'pcsh logout',
    'pcsh logout --profile staging',
  );

  withExamples(
    program
      .command('status')
      .description('show the user, roles, logins, session expiry and the current certificate')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => (await import('./status.js')).status({ ...globals(cmd), ...cmd.opts<{ json?: boolean }>() })),
    'pcsh status',
    'pcsh status --json | jq .certificate.valid_before',
  );

  withExamples(
    program
      .command('ls')
      .description('list the hosts your roles reach, optionally only those with these labels')
      .argument('[label=value...]', 'label filters (all must match)')
      .option('--json', 'print JSON')
      .action(async (labels: string[], _o, cmd: Command) => (await import('./hosts.js')).listHosts({ ...globals(cmd), ...cmd.opts<{ json?: boolean }>() }, labels)),
    'pcsh ls',
    'pcsh ls env=prod team=web',
    'pcsh ls --json | jq -r ".[].name"',
  );

  withExamples(
    program
      .command('config')
      .description('print an ssh_config block so that plain ssh, scp and rsync go through Portcullis')
      .argument('[host...]', 'only these hosts (default: every host you may reach)')
      .option('--pattern', 'one Host *.<profile> block instead of listing hosts')
      .action(async (hosts: string[], _o, cmd: Command) => (await import('./hosts.js')).printSshConfig({ ...globals(cmd), ...cmd.opts<{ pattern?: boolean }>() }, hosts)),
    'pcsh config >> ~/.ssh/config && ssh ubuntu@web01',
    'pcsh config --pattern',
  );

  const certificate = withExamples(program.command('certificate').description('the SSH certificate pcsh presents'), 'pcsh certificate ensure');
  withExamples(
    certificate
      .command('ensure')
      .description('mint a fresh certificate when the current one expires within a minute (quiet otherwise)')
      .option('--force', 'mint even when the current certificate is still good')
      .option('--ttl <duration>', 'lifetime to ask for (capped by your roles)')
      .addOption(new Option('--min-valid <seconds>', 'mint when less than this is left').default('60').argParser((v) => v))
      .action(async (_o, cmd: Command) => {
        const o = cmd.opts<{ force?: boolean; ttl?: string; minValid: string }>();
        const profile = globals(cmd).profile;
        const { ensureCertificate } = await import('./certificate.js');
        await ensureCertificate({
          ...(profile === undefined ? {} : { profile }),
          ...(o.force === true ? { force: true } : {}),
          ...(o.ttl === undefined ? {} : { ttl: o.ttl }),
          minValidSeconds: Number(o.minValid),
        });
      }),
    'pcsh certificate ensure && ssh -o CertificateFile=~/.pcsh/keys/bastion/id_ed25519-cert.pub …',
  );

  const mfa = withExamples(program.command('mfa').description('second factors'), 'pcsh mfa add');
  withExamples(
    mfa
      .command('add')
      .description('enroll a TOTP authenticator app')
      .option('--replace', 'replace the enrolled one (asks for a code from it first)')
      .action(async (_o, cmd: Command) => (await import('./mfa.js')).addTotp({ ...globals(cmd), ...cmd.opts<{ replace?: boolean }>() })),
    'pcsh mfa add',
  );

  addCompletionCommand(program);
  withExamples(program, 'pcsh login --auth https://bastion.example.com:3025', 'pcsh ls env=prod', 'pcsh status');
  return program;
}
