import { existsSync, readFileSync, rmSync } from 'node:fs';
import {
  formatPrivateKey,
  formatPublicKey,
  generateKey,
  parseCertificateText,
  parsePublicKeyText,
  publicKeysEqual,
  publicPart,
  type Certificate,
} from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { ApiRefusal } from '../common/auth-api.js';
import { CliError } from '../common/errors.js';
import { writePrivateFile, ProfileStore, type KeyPaths, type Profile } from '../common/profile.js';
import { promptTotp } from '../common/prompt.js';
import { loggedIn } from '../common/session.js';

/*
 * The certificate an SSH connection presents. Certificates live minutes, so every connection
 * starts with ensureCertificate(): keep the current one while it has a minute left, else mint
 * a fresh one from the login session for the profile's key. A role that wants a second factor
 * per certificate gets a TOTP prompt here (ERR_MFA_REQUIRED on the mint).
 */

export const DEFAULT_MIN_VALID_SECONDS = 60;

export interface EnsureCertificateOptions {
  readonly store?: ProfileStore;
  /** The profile named on the command line; default the current one. */
  readonly profile?: string;
  /** Mint when the current certificate has less than this left (default 60 s). */
  readonly minValidSeconds?: number;
  /** Mint even when the current certificate is still good. */
  readonly force?: boolean;
  /** Requested lifetime (seconds or `5m`); auth caps it by the roles' max_cert_ttl. */
  readonly ttl?: number | string;
  /** Where a TOTP code comes from when a role wants one per certificate (default: a prompt). */
  readonly totp?: () => Promise<string>;
  readonly now?: () => number;
}

export interface EnsuredCertificate {
  readonly profile: Profile;
  readonly privateKeyPath: string;
  readonly certificatePath: string;
  /** pcsh's own known_hosts with the host CA line (UserKnownHostsFile). */
  readonly knownHostsPath: string;
  readonly certificate: Certificate;
  /** A new certificate was minted by this call. */
  readonly minted: boolean;
}

interface MintAnswer {
  readonly certificate: string;
  readonly serial: string;
  readonly valid_before: string;
}

/** Reads a certificate file; undefined when absent or unreadable (it is then replaced). */
export function readCertificate(path: string): Certificate | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return parseCertificateText(readFileSync(path, 'utf8').trim(), path).cert;
  } catch {
    return undefined;
  }
}

/** A fresh Ed25519 key pair in the profile's key directory, replacing any old one and its certificate. */
export function newKeyPair(store: ProfileStore, profile: Profile): KeyPaths {
  const paths = store.ensureKeyDir(profile.name);
  rmSync(paths.certificate, { force: true });
  const key = generateKey(nodeCrypto, 'ssh-ed25519');
  const comment = `${profile.user ?? 'pcsh'}@${profile.name}`;
  writePrivateFile(paths.privateKey, formatPrivateKey(key, { crypto: nodeCrypto, comment }));
  writePrivateFile(paths.publicKey, `${formatPublicKey(publicPart(key), comment)}\n`);
  return paths;
}

function keyOf(paths: KeyPaths): string | undefined {
  if (!existsSync(paths.privateKey) || !existsSync(paths.publicKey)) return undefined;
  return readFileSync(paths.publicKey, 'utf8').trim();
}

/** Still good for `minValid` seconds, not from the future, and for this very key. */
function usable(cert: Certificate | undefined, publicKeyLine: string, now: number, minValid: number): cert is Certificate {
  if (cert === undefined || cert.kind !== 'user') return false;
  const t = BigInt(Math.floor(now / 1000));
  if (cert.validBefore < t + BigInt(minValid) || cert.validAfter > t + 60n) return false;
  try {
    return publicKeysEqual(cert.key, parsePublicKeyText(publicKeyLine).key);
  } catch {
    return false;
  }
}

export async function ensureCertificate(opts: EnsureCertificateOptions = {}): Promise<EnsuredCertificate> {
  const now = opts.now ?? Date.now;
  const { store, profile, api } = loggedIn(opts.profile, now(), opts.store);
  let paths = store.keyPaths(profile.name);
  let publicKey = keyOf(paths);
  if (publicKey === undefined) {
    paths = newKeyPair(store, profile);
    publicKey = readFileSync(paths.publicKey, 'utf8').trim();
  }
  const result = (certificate: Certificate, minted: boolean): EnsuredCertificate => ({
    profile,
    privateKeyPath: paths.privateKey,
    certificatePath: paths.certificate,
    knownHostsPath: store.knownHostsPath(),
    certificate,
    minted,
  });
  const current = readCertificate(paths.certificate);
  if (opts.force !== true && usable(current, publicKey, now(), opts.minValidSeconds ?? DEFAULT_MIN_VALID_SECONDS)) return result(current, false);

  const body = { public_key: publicKey, ...(opts.ttl === undefined ? {} : { ttl: opts.ttl }) };
  let answer: MintAnswer;
  try {
    answer = await api.call<MintAnswer>('POST', '/v1/certs/user', { json: body });
  } catch (e) {
    if (!(e instanceof ApiRefusal) || e.apiCode !== 'ERR_MFA_REQUIRED') throw e;
    const totp = await (opts.totp ?? (() => promptTotp('A role requires a second factor for each certificate. Code: ')))();
    answer = await api.call<MintAnswer>('POST', '/v1/certs/user', { json: { ...body, totp } });
  }
  let cert: Certificate;
  try {
    cert = parseCertificateText(answer.certificate, 'the minted certificate').cert;
  } catch (e) {
    throw new CliError('ERR_REFUSED', `auth returned a certificate pcsh cannot read: ${(e as Error).message}`);
  }
  writePrivateFile(paths.certificate, `${answer.certificate.trim()}\n`);
  return result(cert, true);
}
