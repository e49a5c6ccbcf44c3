import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertError, parseCertificateText, type Certificate } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { CliError } from '../common/errors.js';
import { activate } from './activate.js';
import { checkEnrollmentAnswer, renewalWindow, type EnrollmentAnswer } from './answer.js';
import { call, connectAuth, okBody, type AuthConnection } from './auth-api.js';
import { readIfExists } from './files.js';
import { readHostKeys, type HostKeyFile } from './host-keys.js';
import { hostLayout, readHostState, type HostLayout, type HostState } from './layout.js';
import { runTool, type ReloadResult } from './sshd.js';
import { writeEnrollmentFiles } from './join.js';

/** What auth names the renewal namespace; a signature is only ever made in this one. */
export const RENEWAL_NAMESPACE = 'portcullis-host-renewal';

export interface HostCommandOptions {
  /** Treat this directory as `/` (tests). */
  readonly root?: string;
  /** Another auth URL than the one recorded at join (auth moved). */
  readonly auth?: string;
  /** Another fingerprint or pin than the recorded one. */
  readonly fingerprint?: string;
  readonly out?: (line: string) => void;
  readonly clock?: () => number;
}

export interface HostRenewOptions extends HostCommandOptions {
  /** Renew even before half the lifetime has passed. */
  readonly force?: boolean;
}

export interface HostRenewResult {
  readonly renewed: boolean;
  readonly certificates: readonly { readonly path: string; readonly serial: string; readonly validBefore: number }[];
  readonly reload: ReloadResult | undefined;
}

/** The recorded enrollment with the layout it describes. */
export function enrolledHost(o: HostCommandOptions): { state: HostState; layout: HostLayout } {
  const state = readHostState(o.root);
  const layout = hostLayout({ ...(o.root === undefined ? {} : { root: o.root }), sshDir: state.sshDir, sshdConfigDir: state.sshdConfigDir, sshdConfig: state.sshdConfig });
  return { state, layout };
}

export async function connectRecorded(o: HostCommandOptions, state: HostState, out: (l: string) => void): Promise<AuthConnection> {
  const fingerprint = o.fingerprint ?? state.authPin;
  return connectAuth({ url: o.auth ?? state.authUrl, ...(fingerprint === undefined ? {} : { fingerprint }), log: out });
}

/** The certificates next to the host keys now (absent or unreadable ones are left out). */
function currentCertificates(keys: readonly HostKeyFile[]): { key: HostKeyFile; cert: Certificate }[] {
  const out: { key: HostKeyFile; cert: Certificate }[] = [];
  for (const key of keys) {
    const text = readIfExists(key.certificatePath)?.toString('utf8').trim();
    if (text === undefined) continue;
    try {
      out.push({ key, cert: parseCertificateText(text, key.certificatePath).cert });
    } catch (e) {
      if (!(e instanceof CertError)) throw e;
    }
  }
  return out;
}

/** Signs the challenge with the host key through the stock tool, as the docs tell operators to. */
async function signChallenge(key: HostKeyFile, challenge: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-renew-'));
  try {
    const file = join(dir, 'challenge');
    writeFileSync(file, challenge, { mode: 0o600 });
    const r = await runTool('ssh-keygen', ['-Y', 'sign', '-n', RENEWAL_NAMESPACE, '-f', key.privateKeyPath, file]);
    if (r.code !== 0) throw new CliError('ERR_CONFIG', `ssh-keygen -Y sign with ${key.privateKeyPath} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    return readFileSync(`${file}.sig`, 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Renews the host certificates once half their lifetime has passed (auth wants it before two
 * thirds): a challenge from auth signed with a host key whose certificate is still valid, new
 * certificates checked and written, sshd reloaded. A host whose certificates lapsed must join
 * again with a token.
 */
export async function runHostRenew(o: HostRenewOptions = {}): Promise<HostRenewResult> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const now = (o.clock ?? Date.now)() / 1000;
  const { state, layout } = enrolledHost(o);
  const keys = readHostKeys(layout.sshDir);
  const current = currentCertificates(keys);
  const valid = current.filter((c) => Number(c.cert.validAfter) <= now && now < Number(c.cert.validBefore));
  if (valid.length === 0) {
    throw new CliError('ERR_AUTH', `no valid host certificate next to the host keys in ${layout.sshDir}: a lapsed host cannot renew; join again with a token made for ${state.hostName}`);
  }
  const window = renewalWindow(valid.map((c) => c.cert));
  const due = o.force === true || now >= window.renewAfter;
  if (!due) {
    out(`not due: renewing after ${new Date(window.renewAfter * 1000).toISOString()} (certificates valid until ${new Date(window.expires * 1000).toISOString()})`);
    return { renewed: false, certificates: [], reload: undefined };
  }
  const conn = await connectRecorded(o, state, out);
  const c = okBody(await call<{ challenge?: unknown; namespace?: unknown }>(conn, 'POST', '/v1/hosts/renew/challenge', { json: { hostname: state.hostName } }), 'auth refused the renewal challenge');
  // The host key signs only this namespace and only a challenge about this host: it must not
  // be made to sign something meant for another use.
  if (c.namespace !== RENEWAL_NAMESPACE) throw new CliError('ERR_REFUSED', `auth asked for a signature in namespace ${JSON.stringify(c.namespace)}, not ${RENEWAL_NAMESPACE}`);
  if (typeof c.challenge !== 'string' || !c.challenge.startsWith(`portcullis host renewal\nhost: ${state.hostName}\n`) || c.challenge.length > 1024) {
    throw new CliError('ERR_REFUSED', 'auth sent a renewal challenge that is not about this host');
  }
  const signature = await signChallenge(valid[0]!.key, c.challenge);
  const res = await call<EnrollmentAnswer>(conn, 'POST', '/v1/hosts/renew', { json: { hostname: state.hostName, signature } });
  // auth renews the keys it enrolled: a key added since then gets a certificate at the next join.
  const renewed = checkEnrollmentAnswer(okBody(res, 'auth refused the renewal'), keys, state.hostName, now, nodeCrypto, 'answered');
  const activated = await activate({ layout, sshd: state.sshd, write: (changes) => writeEnrollmentFiles(changes, layout, renewed) });
  const until = Math.min(...renewed.certificates.map((x) => Number(x.cert.validBefore)));
  out(`renewed ${renewed.certificates.length} host certificate(s) of ${state.hostName}, valid until ${new Date(until * 1000).toISOString()}; ${activated.reload?.detail ?? 'nothing new for sshd'}`);
  return {
    renewed: true,
    certificates: renewed.certificates.map((x) => ({ path: x.hostKey.certificatePath, serial: x.cert.serial.toString(), validBefore: Number(x.cert.validBefore) })),
    reload: activated.reload,
  };
}
