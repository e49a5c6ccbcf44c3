import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CliError } from '../common/errors.js';
import { parseLabelArgs } from '../common/output.js';
import { ensureCertificate, type EnsuredCertificate } from './certificate.js';
import { reachableHosts } from './hosts.js';

/*
 * `pcsh ssh` and `pcsh scp` are stock OpenSSH with Portcullis' options put in front: the
 * ProxyCommand is `pcsh proxy ssh`, the host CA comes from pcsh's own known_hosts and the key
 * and certificate from the profile. Everything else (-L -R -D -A -N -t, escape sequences, the
 * exit status) is OpenSSH's own, so it behaves exactly as people expect.
 */

export interface SshCommonOptions {
  readonly profile?: string;
  readonly proxy?: string;
}

/** This package's pcsh bin, by absolute path, so the ProxyCommand needs no PATH. */
function pcshBin(): string {
  return fileURLToPath(new URL('../../bin/pcsh', import.meta.url));
}

const shellQuote = (s: string): string => (/^[A-Za-z0-9_./:@%=+-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);

/** The -o options both ssh and scp get; given first, since OpenSSH keeps an option's first value. */
export function portcullisSshOptions(cert: EnsuredCertificate, o: SshCommonOptions): string[] {
  const proxyCommand = [pcshBin(), ...(o.profile === undefined ? [] : ['--profile', o.profile]), 'proxy', 'ssh', ...(o.proxy === undefined ? [] : ['--proxy', o.proxy]), '%r@%h:%p']
    .map(shellQuote)
    .join(' ');
  return [
    `ProxyCommand=${proxyCommand}`,
    `UserKnownHostsFile=${cert.knownHostsPath}`,
    'GlobalKnownHostsFile=/dev/null',
    'StrictHostKeyChecking=yes',
    'UpdateHostKeys=no',
    `IdentityFile=${cert.privateKeyPath}`,
    `CertificateFile=${cert.certificatePath}`,
    'IdentitiesOnly=yes',
    'IdentityAgent=none',
  ].flatMap((opt) => ['-o', opt]);
}

/** The login when none was typed: the local user's name if the certificate allows it, else its first principal. */
export function defaultLogin(cert: EnsuredCertificate, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const principals = cert.certificate.principals;
  const local = env['USER'] ?? env['LOGNAME'];
  if (local !== undefined && principals.includes(local)) return local;
  return principals[0];
}

export interface SshOptions extends SshCommonOptions {
  readonly L?: readonly string[];
  readonly R?: readonly string[];
  readonly D?: readonly string[];
  readonly o?: readonly string[];
  readonly A?: boolean;
  readonly N?: boolean;
  readonly t?: boolean;
  readonly T?: boolean;
  readonly p?: string;
  readonly i?: string;
  /** `-l login` as in OpenSSH, or `-l key=value` to run on every host with those labels. */
  readonly l?: readonly string[];
}

function passThrough(o: SshOptions): string[] {
  const args: string[] = [];
  for (const v of o.L ?? []) args.push('-L', v);
  for (const v of o.R ?? []) args.push('-R', v);
  for (const v of o.D ?? []) args.push('-D', v);
  for (const v of o.o ?? []) args.push('-o', v);
  if (o.A === true) args.push('-A');
  if (o.N === true) args.push('-N');
  if (o.t === true) args.push('-t');
  if (o.T === true) args.push('-T');
  if (o.p !== undefined) args.push('-p', o.p);
  if (o.i !== undefined) args.push('-i', o.i);
  return args;
}

/*
 * When the ProxyCommand fails it has said why in one `pcsh: ` line; OpenSSH then adds its own
 * view of the same failure (the tunnel closed before the banner). Those echoes are dropped so
 * the failure stays one line; everything else ssh writes passes through as it comes.
 */
const TUNNEL_ECHOES = [/^kex_exchange_identification: /, /^Connection closed by UNKNOWN port /, /^ssh_exchange_identification: /, /^lost connection$/];

function relayStderr(from: NodeJS.ReadableStream): Promise<void> {
  return new Promise((done) => {
    let partial = '';
    let tunnelFailed = false;
    const line = (l: string): void => {
      if (l.startsWith('pcsh: ')) tunnelFailed = true;
      else if (tunnelFailed && TUNNEL_ECHOES.some((re) => re.test(l.replace(/\r$/, '')))) return;
      process.stderr.write(`${l}\n`);
    };
    from.setEncoding('utf8');
    from.on('data', (s: string) => {
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(line);
    });
    from.on('end', () => {
      if (partial !== '') line(partial);
      done();
    });
  });
}

/** Runs a program with the terminal; resolves with its exit status (a signal counts as 128+n). */
function runAttached(program: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['inherit', 'inherit', 'pipe'] });
    const relayed = relayStderr(child.stderr!);
    child.once('error', (e) => reject(new CliError('ERR_UNREACHABLE', `cannot run ${program}: ${e.message} (is OpenSSH installed?)`)));
    child.once('exit', (code, signal) => void relayed.then(() => resolve(code ?? (signal === null ? 1 : 128 + 9))));
  });
}

/** A host the user's roles do not reach is refused here, in one line, before ssh starts. */
async function requireReachable(profile: string | undefined, host: string): Promise<void> {
  const hosts = await reachableHosts(profile);
  if (!hosts.some((h) => h.name === host || h.names.includes(host))) {
    throw new CliError('ERR_NOT_FOUND', `no host ${host} among the hosts you may reach (pcsh ls lists them)`);
  }
}

function setExit(code: number): void {
  if (code !== 0) process.exitCode = code;
}

/** `pcsh ssh [login@]host [command...]`. */
export async function ssh(o: SshOptions, destination: string | undefined, command: readonly string[]): Promise<void> {
  const labelArgs = (o.l ?? []).filter((v) => v.includes('='));
  const logins = (o.l ?? []).filter((v) => !v.includes('='));
  if (logins.length > 1) throw new CliError('ERR_USAGE', `-l: one login, got ${logins.join(', ')}`);
  const cert = await ensureCertificate(o.profile === undefined ? {} : { profile: o.profile });
  const base = [...portcullisSshOptions(cert, o), ...passThrough(o)];

  if (labelArgs.length > 0) {
    // With labels, the first positional argument is part of the command (there is no host).
    const cmd = [...(destination === undefined ? [] : [destination]), ...command];
    if (cmd.length === 0) throw new CliError('ERR_USAGE', 'a command to run on the hosts with those labels is required (pcsh ssh -l env=dev uptime)');
    parseLabelArgs(labelArgs);
    const hosts = await reachableHosts(o.profile, labelArgs);
    if (hosts.length === 0) throw new CliError('ERR_NOT_FOUND', `no host you may reach has the labels ${labelArgs.join(' ')} (pcsh ls lists them)`);
    const login = logins[0] ?? defaultLogin(cert);
    const codes = await Promise.all(hosts.map((h) => runPrefixed(h.name, [...base, '-T', '-o', 'BatchMode=yes', ...(login === undefined ? [] : ['-l', login]), h.name, '--', ...cmd])));
    setExit(codes.find((c) => c !== 0) ?? 0);
    return;
  }

  if (destination === undefined) throw new CliError('ERR_USAGE', 'missing the host: pcsh ssh [login@]host [command]');
  const at = destination.lastIndexOf('@');
  const login = at > 0 ? destination.slice(0, at) : (logins[0] ?? defaultLogin(cert));
  const host = at >= 0 ? destination.slice(at + 1) : destination;
  if (host === '') throw new CliError('ERR_USAGE', `no host in ${JSON.stringify(destination)}`);
  await requireReachable(o.profile, host);
  const args = [...base, ...(login === undefined ? [] : ['-l', login]), host, ...(command.length === 0 ? [] : ['--', ...command])];
  setExit(await runAttached('ssh', args));
}

/** One host of a label run: its output line by line behind `[host] `. */
function runPrefixed(host: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const relay = (from: NodeJS.ReadableStream, to: NodeJS.WritableStream): Promise<void> =>
      new Promise((done) => {
        let partial = '';
        from.setEncoding('utf8');
        from.on('data', (s: string) => {
          const lines = (partial + s).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) to.write(`[${host}] ${line}\n`);
        });
        from.on('end', () => {
          if (partial !== '') to.write(`[${host}] ${partial}\n`);
          done();
        });
      });
    const out = relay(child.stdout, process.stdout);
    const err = relay(child.stderr, process.stderr);
    child.once('error', (e) => {
      process.stderr.write(`[${host}] cannot run ssh: ${e.message}\n`);
      resolve(1);
    });
    child.once('close', (code) => void Promise.all([out, err]).then(() => resolve(code ?? 1)));
  });
}

export interface ScpOptions extends SshCommonOptions {
  readonly r?: boolean;
  readonly p?: boolean;
  readonly q?: boolean;
  readonly P?: string;
  readonly o?: readonly string[];
}

/** `pcsh scp [-r] src... dst`: host:path arguments as scp takes them (login@host:path too). */
export async function scp(o: ScpOptions, paths: readonly string[]): Promise<void> {
  if (paths.length < 2) throw new CliError('ERR_USAGE', 'scp needs a source and a destination: pcsh scp file web01:/tmp/');
  const cert = await ensureCertificate(o.profile === undefined ? {} : { profile: o.profile });
  const login = defaultLogin(cert);
  // A remote argument without a login gets the default one, as pcsh ssh does.
  for (const p of paths) {
    const m = /^(?:[^/@:]+@)?([^/@:]+):/.exec(p);
    if (m) await requireReachable(o.profile, m[1]!);
  }
  const withLogin = paths.map((p) => (/^[^/@:]+:/.test(p) && login !== undefined ? `${login}@${p}` : p));
  const args = [
    ...portcullisSshOptions(cert, o),
    ...(o.o ?? []).flatMap((v) => ['-o', v]),
    ...(o.r === true ? ['-r'] : []),
    ...(o.p === true ? ['-p'] : []),
    ...(o.q === true ? ['-q'] : []),
    ...(o.P === undefined ? [] : ['-P', o.P]),
    '--',
    ...withLogin,
  ];
  setExit(await runAttached('scp', args));
}
