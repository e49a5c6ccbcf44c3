import {
  CertError,
  parseCertificateText,
  parseKnownHosts,
  parsePublicKeyText,
  publicKeysEqual,
  verifyCertificateSignature,
  type Certificate,
  type CryptoBackend,
  type PublicKey,
} from '@portcullis/cert-core';
import { CliError } from '../common/errors.js';
import type { HostKeyFile } from './host-keys.js';

/*
 * What auth answers to a join or a renewal, checked before anything reaches the disk. A pinned
 * channel says who answered, not that the answer is usable: a certificate for another key, a
 * user certificate, one that excludes our name or is already expired would be written next to
 * the host key and sshd would present it, and every client would refuse the host. Pure: the
 * time and the crypto backend are parameters.
 */

/** The fields of POST /v1/join and POST /v1/hosts/renew answers that a host uses. */
export interface EnrollmentAnswer {
  readonly host?: { readonly name?: unknown; readonly labels?: unknown };
  readonly certificates?: unknown;
  readonly user_ca?: unknown;
  readonly known_hosts?: unknown;
  readonly renew_after?: unknown;
  readonly renew_before?: unknown;
}

export interface CheckedCertificate {
  readonly hostKey: HostKeyFile;
  /** The `-cert.pub` line as auth sent it. */
  readonly text: string;
  readonly cert: Certificate;
}

export interface CheckedEnrollment {
  readonly hostName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly certificates: readonly CheckedCertificate[];
  /** The TrustedUserCAKeys file, one key per line. */
  readonly userCa: string;
  /** `@cert-authority` lines for the host CA. */
  readonly knownHosts: string;
}

function bad(what: string): CliError {
  return new CliError('ERR_REFUSED', `auth's answer is unusable: ${what}`);
}

function certError(e: unknown, what: string): CliError {
  if (e instanceof CertError) return bad(`${what}: ${e.message.replace(/^cert-core: /, '')}`);
  throw e;
}

/** A TrustedUserCAKeys file: at least one key, every non-comment line a plain public key. */
export function checkUserCaFile(text: unknown, where = 'user_ca'): string {
  if (typeof text !== 'string') throw bad(`"${where}" is missing`);
  let keys = 0;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      // sshd takes no options on these lines, only `type base64 [comment]`.
      parsePublicKeyText(line, `${where} line ${i + 1}`);
    } catch (e) {
      throw certError(e, `${where} line ${i + 1}`);
    }
    keys++;
  }
  // An empty file makes sshd trust no user CA: every certificate login would fail.
  if (keys === 0) throw bad(`"${where}" holds no key`);
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** The host CA keys from `@cert-authority` lines. */
export function hostCaKeys(knownHosts: unknown): { text: string; keys: PublicKey[] } {
  if (typeof knownHosts !== 'string') throw bad('"known_hosts" is missing');
  let keys: PublicKey[];
  try {
    keys = parseKnownHosts(knownHosts)
      .filter((e) => e.marker === 'cert-authority')
      .map((e) => e.key);
  } catch (e) {
    throw certError(e, 'known_hosts');
  }
  if (keys.length === 0) throw bad('"known_hosts" has no @cert-authority line');
  return { text: knownHosts.endsWith('\n') ? knownHosts : `${knownHosts}\n`, keys };
}

/**
 * Pairs each host key with its new certificate and checks every one: a host certificate for
 * exactly that key, naming `hostName`, valid at `nowSeconds`, signed by a host CA the same
 * answer names, with a signature that verifies.
 */
export function checkEnrollmentAnswer(
  answer: EnrollmentAnswer,
  hostKeys: readonly HostKeyFile[],
  hostName: string,
  nowSeconds: number,
  crypto: CryptoBackend,
  /** 'every': each host key needs a certificate (join). 'answered': the keys auth certified (renewal renews what was enrolled). */
  coverage: 'every' | 'answered' = 'every',
): CheckedEnrollment {
  const name = typeof answer.host?.name === 'string' ? answer.host.name : hostName;
  const cas = hostCaKeys(answer.known_hosts);
  const userCa = checkUserCaFile(answer.user_ca);
  if (!Array.isArray(answer.certificates)) throw bad('"certificates" is missing');
  const parsed: Certificate[] = [];
  const texts: string[] = [];
  for (const [i, c] of (answer.certificates as unknown[]).entries()) {
    const text = (c as { certificate?: unknown } | null)?.certificate;
    if (typeof text !== 'string' || /[\r\n]/.test(text)) throw bad(`certificates[${i}] is not one certificate line`);
    try {
      parsed.push(parseCertificateText(text, `certificates[${i}]`).cert);
    } catch (e) {
      throw certError(e, `certificates[${i}]`);
    }
    texts.push(text);
  }
  const now = BigInt(Math.floor(nowSeconds));
  const out: CheckedCertificate[] = [];
  for (const hostKey of hostKeys) {
    const i = parsed.findIndex((c) => publicKeysEqual(c.key, hostKey.key));
    if (i < 0 && coverage === 'answered') continue;
    if (i < 0) throw bad(`no certificate for ${hostKey.publicKeyPath}`);
    const cert = parsed[i]!;
    const what = `the certificate for ${hostKey.publicKeyPath}`;
    if (cert.kind !== 'host') throw bad(`${what} is a ${cert.kind} certificate, not a host certificate`);
    if (!cert.principals.includes(name.toLowerCase())) throw bad(`${what} does not name ${JSON.stringify(name)} (principals ${cert.principals.join(',')})`);
    if (!(cert.validAfter <= now + 300n && now < cert.validBefore)) throw bad(`${what} is not valid now (${cert.validAfter}..${cert.validBefore})`);
    if (!cas.keys.some((k) => publicKeysEqual(k, cert.signatureKey))) throw bad(`${what} is signed by a key that is not among the host CA keys auth lists`);
    if (!verifyCertificateSignature(crypto, cert)) throw bad(`${what} has a signature that does not verify`);
    out.push({ hostKey, text: texts[i]!, cert });
  }
  if (out.length === 0) throw bad('no certificate for any of the host keys');
  const labels: Record<string, string> = {};
  if (answer.host?.labels !== null && typeof answer.host?.labels === 'object') {
    for (const [k, v] of Object.entries(answer.host.labels as Record<string, unknown>)) if (typeof v === 'string') labels[k] = v;
  }
  return { hostName: name, labels, certificates: out, userCa, knownHosts: cas.text };
}

/** When to renew: after half the lifetime of the certificate that ends first (two thirds is the deadline auth names). */
export function renewalWindow(certs: readonly Certificate[]): { renewAfter: number; renewBefore: number; expires: number } {
  if (certs.length === 0) throw new TypeError('renewalWindow: no certificates');
  const first = [...certs].sort((a, b) => (a.validBefore < b.validBefore ? -1 : 1))[0]!;
  const va = Number(first.validAfter);
  const vb = Number(first.validBefore);
  const life = vb - va;
  return { renewAfter: va + Math.floor(life / 2), renewBefore: va + Math.floor((life * 2) / 3), expires: vb };
}
