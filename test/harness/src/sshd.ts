import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, runOk } from './process.js';

export const SSHD_PATH = '/usr/sbin/sshd';

/** A host key sshd serves, and optionally the certificate it presents for it. */
export interface HostKeySpec {
  readonly privateKeyPath: string;
  readonly certificatePath?: string;
}

/** The fields of a POST /v1/join answer that a target's sshd uses. */
export interface HostJoinAnswer {
  readonly certificates: readonly { readonly certificate: string }[];
  readonly user_ca: string;
}

/**
 * A target's host key, certified as `pcctl host join` does it: makes `dir`/host_key, hands its
 * public half to `post` (a POST /v1/join with a host token) and writes the first certificate of
 * the answer beside it. The answer's user CA is what the target's sshd should trust.
 */
export async function joinHostKey(dir: string, post: (publicKey: string) => Promise<HostJoinAnswer>): Promise<{ readonly hostKey: Required<HostKeySpec>; readonly userCA: string }> {
  mkdirSync(dir, { recursive: true });
  const privateKeyPath = join(dir, 'host_key');
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'joined host', '-f', privateKeyPath]);
  const answer = await post(readFileSync(`${privateKeyPath}.pub`, 'utf8').trim());
  const certificate = answer.certificates[0]?.certificate;
  if (certificate === undefined) throw new Error(`joinHostKey: the join answer for ${dir} has no certificate`);
  const certificatePath = `${privateKeyPath}-cert.pub`;
  writeFileSync(certificatePath, `${certificate}\n`);
  return { hostKey: { privateKeyPath, certificatePath }, userCA: answer.user_ca };
}

export interface SshdOptions {
  /** Directory for sshd_config, the pid file and the files written from these options. */
  readonly dir: string;
  /** authorized_keys-format lines (one or several, newline-separated) for TrustedUserCAKeys. */
  readonly trustedUserCAKeys?: string;
  /**
   * RevokedKeys: KRL bytes to write, 'missing' (configured path that does not exist) or
   * 'garbage' (a file that is not a KRL). sshd re-reads it on every attempt, so a test may
   * rewrite `revokedKeysPath` between cases (atomically: write a temp file, rename).
   */
  readonly revokedKeys?: Uint8Array | 'missing' | 'garbage';
  /** Host keys (with certificates). Default: a fresh Ed25519 key made with ssh-keygen. */
  readonly hostKey?: HostKeySpec | readonly HostKeySpec[];
  /** AuthorizedPrincipalsFile: a path pattern as sshd takes it (`%u` etc.), or file contents. */
  readonly authorizedPrincipalsFile?: { readonly path: string } | { readonly contents: string };
  /** More sshd_config lines, appended last (sshd takes the first value of most keywords). */
  readonly extraConfig?: readonly string[];
  /** Milliseconds to wait for sshd to listen (default 10 s). */
  readonly startTimeoutMs?: number;
}

export interface SshdHandle {
  readonly port: number;
  readonly configPath: string;
  /** Where RevokedKeys points (undefined when not configured). */
  readonly revokedKeysPath: string | undefined;
  /** sshd's stderr so far (it runs with -e, so this is its log). */
  log(): string;
  /**
   * Waits until the log after offset `since` matches `pattern` and returns the match. The log
   * arrives on a pipe, independently of the client's exit, so a test reads it this way rather
   * than right after the client returns. Rejects with the log slice on timeout.
   */
  waitForLog(pattern: RegExp, options?: { readonly since?: number; readonly timeoutMs?: number }): Promise<RegExpMatchArray>;
  /** Kills sshd (and with it the listener) and waits for it to exit. */
  stop(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function defaultHostKey(dir: string): Promise<HostKeySpec> {
  const path = join(dir, 'ssh_host_ed25519_key');
  if (!existsSync(path)) await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test host', '-f', path]);
  return { privateKeyPath: path };
}

async function writeConfig(opts: SshdOptions, port: number): Promise<{ configPath: string; revokedKeysPath: string | undefined }> {
  const { dir } = opts;
  const hostKeys = opts.hostKey === undefined ? [await defaultHostKey(dir)] : ([] as HostKeySpec[]).concat(opts.hostKey);
  const lines = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    ...hostKeys.flatMap((k) => [
      `HostKey ${k.privateKeyPath}`,
      ...(k.certificatePath === undefined ? [] : [`HostCertificate ${k.certificatePath}`]),
    ]),
    `PidFile ${join(dir, 'sshd.pid')}`,
    'UsePAM no',
    'StrictModes no',
    'UseDNS no',
    // Keys and certificates only: root may log in with them, never with a password.
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'AuthorizedKeysFile none',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PrintMotd no',
    'PrintLastLog no',
    'LogLevel VERBOSE',
  ];
  if (opts.trustedUserCAKeys !== undefined) {
    const path = join(dir, 'trusted_user_ca_keys');
    writeFileSync(path, opts.trustedUserCAKeys.endsWith('\n') ? opts.trustedUserCAKeys : opts.trustedUserCAKeys + '\n');
    lines.push(`TrustedUserCAKeys ${path}`);
  }
  let revokedKeysPath: string | undefined;
  if (opts.revokedKeys !== undefined) {
    revokedKeysPath = join(dir, 'revoked_keys.krl');
    if (opts.revokedKeys === 'garbage') writeFileSync(revokedKeysPath, 'this is not a KRL\n');
    else if (opts.revokedKeys !== 'missing') writeFileSync(revokedKeysPath, opts.revokedKeys);
    lines.push(`RevokedKeys ${revokedKeysPath}`);
  }
  const principals = opts.authorizedPrincipalsFile;
  if (principals !== undefined) {
    let path: string;
    if ('contents' in principals) {
      path = join(dir, 'authorized_principals');
      writeFileSync(path, principals.contents);
    } else {
      path = principals.path;
    }
    lines.push(`AuthorizedPrincipalsFile ${path}`);
  }
  lines.push(...(opts.extraConfig ?? []));
  const configPath = join(dir, 'sshd_config');
  writeFileSync(configPath, lines.join('\n') + '\n');
  return { configPath, revokedKeysPath };
}

/**
 * Runs the machine's OpenSSH sshd as root on 127.0.0.1 and a free port, in the foreground with
 * its log on stderr. Resolves once sshd says it listens; rejects with its stderr when it exits
 * first. Callers must stop() it (try/finally or t.after).
 */
export async function startSshd(opts: SshdOptions): Promise<SshdHandle> {
  // The privilege-separation chroot; sshd refuses to start without it.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  // freePort releases the port before sshd binds it, so another process can take it in
  // between; sshd then exits with "Address already in use" and we try a fresh port.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const { configPath, revokedKeysPath } = await writeConfig(opts, port);
    try {
      return await launch(configPath, port, revokedKeysPath, opts.startTimeoutMs ?? 10_000);
    } catch (e) {
      if (attempt < 3 && e instanceof Error && /Address already in use/.test(e.message)) continue;
      throw e;
    }
  }
}

function launch(configPath: string, port: number, revokedKeysPath: string | undefined, timeoutMs: number): Promise<SshdHandle> {
  const child = spawn(SSHD_PATH, ['-D', '-e', '-f', configPath], {
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', TZ: 'UTC' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr += s;
  });
  // A test runner that dies without calling stop() must not leave a root sshd listening.
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let done = false;
  void exited.then(() => {
    done = true;
    process.removeListener('exit', killOnExit);
  });

  const handle: SshdHandle = {
    port,
    configPath,
    revokedKeysPath,
    log: () => stderr,
    async waitForLog(pattern, o = {}) {
      const since = o.since ?? 0;
      const deadline = Date.now() + (o.timeoutMs ?? 5_000);
      for (;;) {
        const m = stderr.slice(since).match(pattern);
        if (m) return m;
        if (Date.now() > deadline) {
          throw new Error(`sshd log has no ${pattern} after offset ${since}:\n${stderr.slice(since)}`);
        }
        await sleep(20);
      }
    },
    async stop() {
      if (!done) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };

  // Readiness is sshd's own "Server listening" line, not a probe connection: a probe would
  // put a preauth line into the log the tests read, and could reach some other process that
  // took the port after freePort released it.
  const ready = `Server listening on 127.0.0.1 port ${port}.`;
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const poll = (): void => {
      if (stderr.includes(ready)) {
        resolve(handle);
      } else if (done) {
        reject(new Error(`sshd -f ${configPath} exited before listening (code ${child.exitCode}):\n${stderr}`));
      } else if (Date.now() > deadline) {
        void handle.stop().then(() => reject(new Error(`sshd -f ${configPath} did not listen within ${timeoutMs} ms:\n${stderr}`)));
      } else {
        setTimeout(poll, 20);
      }
    };
    child.once('error', (e) => reject(new Error(`cannot run ${SSHD_PATH}: ${e.message}`)));
    poll();
  });
}
