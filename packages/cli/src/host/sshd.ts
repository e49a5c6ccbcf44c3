import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { CliError } from '../common/errors.js';
import type { HostLayout } from './layout.js';
import { siblingTempPath, writeNewFile } from './files.js';

/*
 * The sshd side: the drop-in we own, `sshd -t` before anything is activated, `sshd -T` to prove
 * the drop-in is in effect (a main config without `Include sshd_config.d/*.conf`, or an earlier
 * file setting TrustedUserCAKeys, would make it dead text), and the reload.
 */

export interface DropIn {
  readonly userCaFile: string;
  readonly krlFile: string;
  readonly hostCertificates: readonly string[];
  /** AuthorizedKeysFile none: certificates become the only way in by key. */
  readonly exclusive: boolean;
  /** More lines the operator asked for (--sshd-option). */
  readonly extraLines: readonly string[];
}

/**
 * The drop-in text. The shell script writes the same bytes (a test compares them), so this
 * layout changes in both places or not at all.
 *
 * AuthorizedPrincipalsFile none: the login must be one of the certificate's principals, which
 * auth sets to exactly the role's logins. A file per login holding that login would say the
 * same thing with more to keep in sync; saying none explicitly keeps a principals file set
 * later in the main config (for some other CA's principals) from silently refusing ours.
 */
export function renderDropIn(d: DropIn): string {
  const lines = [
    '# Written by `portcullis host join`; replaced on every join. Add your own settings to',
    '# another file in this directory (a lower number wins: sshd keeps the first value).',
    `TrustedUserCAKeys ${d.userCaFile}`,
    `RevokedKeys ${d.krlFile}`,
    'AuthorizedPrincipalsFile none',
    ...d.hostCertificates.map((c) => `HostCertificate ${c}`),
    ...(d.exclusive ? ['AuthorizedKeysFile none'] : []),
    ...d.extraLines,
  ];
  return lines.join('\n') + '\n';
}

/** An --sshd-option line: one keyword and its value, nothing that would change what is tested. */
export function checkExtraLine(line: string): string {
  const t = line.trim();
  if (/[\r\n]/.test(line) || !/^[A-Za-z]+\s+\S/.test(t)) throw new CliError('ERR_USAGE', `--sshd-option expected "Keyword value", got ${JSON.stringify(line)}`);
  // Match would swallow what follows it, Include would pull in files sshd -t never saw with us.
  if (/^(match|include)\s/i.test(t)) throw new CliError('ERR_USAGE', `--sshd-option: ${t.split(/\s/)[0]} is not allowed in the drop-in`);
  return t;
}

export interface SshdRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function runTool(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<SshdRun> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', TZ: 'UTC', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      if (e !== null && typeof e.code === 'string') {
        resolve({ code: 127, stdout: '', stderr: `cannot run ${cmd}: ${e.code}` });
        return;
      }
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : 1, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** sshd's complaint, without the noise of certificates that do not exist yet. */
function complaint(r: SshdRun): string {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !/Could not load host certificate|No matching private key/.test(l));
  return (lines.join('; ') || `exit ${r.code}`).replace(/[\x00-\x1f\x7f]+/g, ' ');
}

/** `sshd -t -f config`; resolves to undefined when it passes, else sshd's complaint. */
export async function sshdTest(sshd: string, config: string): Promise<string | undefined> {
  const r = await runTool(sshd, ['-t', '-f', config]);
  return r.code === 0 ? undefined : complaint(r);
}

/** `sshd -T`: the effective configuration, keyword (lower case) to values. */
export async function sshdEffective(sshd: string, config: string): Promise<Map<string, string[]>> {
  const r = await runTool(sshd, ['-T', '-f', config]);
  if (r.code !== 0) throw new CliError('ERR_CONFIG', `${sshd} -T -f ${config} failed: ${complaint(r)}`);
  const out = new Map<string, string[]>();
  for (const line of r.stdout.split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line);
    if (m !== null) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

/**
 * Tests a drop-in that is not in place yet: a throwaway config Includes it first and then the
 * main config, so it is seen where our file will be (before the rest; sshd keeps first values).
 * The staged file's name does not match `*.conf`, so a reload meanwhile does not see it.
 */
export async function testStagedDropIn(layout: HostLayout, sshd: string, staged: string): Promise<string | undefined> {
  const wrapper = siblingTempPath(layout.dropIn, 'sshd-test');
  writeNewFile(wrapper, `Include ${staged}\nInclude ${layout.sshdConfig}\n`, 0o600);
  try {
    return await sshdTest(sshd, wrapper);
  } finally {
    rmSync(wrapper, { force: true });
  }
}

/** Why the drop-in, now in place, is not what sshd uses; undefined when it is. */
export async function dropInIneffective(layout: HostLayout, sshd: string, d: DropIn): Promise<string | undefined> {
  const eff = await sshdEffective(sshd, layout.sshdConfig);
  const one = (k: string): string | undefined => eff.get(k)?.[0];
  const why = `is it missing \`Include ${layout.logical.sshdConfigDir}/*.conf\` near the top, or does an earlier file set it?`;
  if (one('trustedusercakeys') !== d.userCaFile) return `sshd uses TrustedUserCAKeys ${one('trustedusercakeys') ?? 'none'}, not ${d.userCaFile}: ${why}`;
  if (one('revokedkeys') !== d.krlFile) return `sshd uses RevokedKeys ${one('revokedkeys') ?? 'none'}, not ${d.krlFile}: ${why}`;
  const certs = eff.get('hostcertificate') ?? [];
  const missing = d.hostCertificates.find((c) => !certs.includes(c));
  if (missing !== undefined) return `sshd does not load HostCertificate ${missing}: ${why}`;
  return undefined;
}

export type ReloadResult = { readonly how: 'systemd' | 'signal'; readonly detail: string } | { readonly how: 'manual'; readonly detail: string };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes a running sshd read its configuration again. systemd's ssh.service runs `sshd -t`
 * itself before the SIGHUP; elsewhere the SIGHUP goes to the pid in sshd's PidFile, which we
 * only send after our own `sshd -t` passed (sshd exits on a bad config when it re-executes).
 * Under --root only the sshd of that root is touched, never the machine's.
 */
export async function reloadSshd(layout: HostLayout, sshd: string): Promise<ReloadResult> {
  if (layout.root === '/' && existsSync('/run/systemd/system')) {
    for (const unit of ['ssh.service', 'sshd.service']) {
      const active = await runTool('systemctl', ['is-active', '--quiet', unit]);
      if (active.code !== 0) continue;
      const r = await runTool('systemctl', ['reload', unit]);
      if (r.code === 0) return { how: 'systemd', detail: `systemctl reload ${unit}` };
      throw new CliError('ERR_CONFIG', `systemctl reload ${unit} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    }
  }
  let pidFile = `${layout.root === '/' ? '' : layout.root}/run/sshd.pid`;
  try {
    pidFile = (await sshdEffective(sshd, layout.sshdConfig)).get('pidfile')?.[0] ?? pidFile;
  } catch {
    // The default path is as good a guess as any.
  }
  const pid = existsSync(pidFile) ? Number.parseInt(readFileSync(pidFile, 'utf8').trim(), 10) : NaN;
  if (Number.isSafeInteger(pid) && pid > 1 && alive(pid)) {
    process.kill(pid, 'SIGHUP');
    return { how: 'signal', detail: `SIGHUP to sshd (pid ${pid} from ${pidFile})` };
  }
  return { how: 'manual', detail: `no running sshd found (no live pid in ${pidFile}): start or reload sshd to use the new configuration` };
}

/** `sshd -t` of a drop-in text without putting it anywhere sshd reads (before auth is asked). */
export async function preflightDropIn(layout: HostLayout, sshd: string, text: string): Promise<string | undefined> {
  const staged = siblingTempPath(layout.dropIn, 'preflight');
  writeNewFile(staged, text, 0o644);
  try {
    return await testStagedDropIn(layout, sshd, staged);
  } finally {
    rmSync(staged, { force: true });
  }
}
