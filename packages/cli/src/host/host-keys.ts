import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertError, parsePublicKeyText, type PublicKey } from '@portcullis/cert-core';
import { CliError } from '../common/errors.js';

/** One of the machine's host keys, as sshd loads it. */
export interface HostKeyFile {
  /** `ssh_host_ed25519_key`: the private key sshd loads (HostKey). */
  readonly privateKeyPath: string;
  readonly publicKeyPath: string;
  /** `<private key>-cert.pub`, where HostCertificate points. */
  readonly certificatePath: string;
  readonly key: PublicKey;
  /** `type base64`, the form auth names it by. */
  readonly line: string;
}

/*
 * DSA is gone from OpenSSH and auth certifies only Ed25519, ECDSA and RSA; a leftover
 * ssh_host_dsa_key would make auth refuse the whole request, so it is passed over.
 */
const CERTIFIABLE = /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa)$/;

/** The ssh_host_*_key.pub files in `dir` with their private keys, Ed25519 first. */
export function readHostKeys(dir: string): HostKeyFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new CliError('ERR_CONFIG', `cannot read host keys in ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const out: HostKeyFile[] = [];
  for (const name of names.filter((n) => /^ssh_host_[a-z0-9]+_key\.pub$/.test(n)).sort()) {
    const publicKeyPath = join(dir, name);
    const privateKeyPath = publicKeyPath.slice(0, -'.pub'.length);
    if (!existsSync(privateKeyPath)) continue;
    let key: PublicKey;
    try {
      key = parsePublicKeyText(readFileSync(publicKeyPath, 'utf8').trim(), publicKeyPath).key;
    } catch (e) {
      if (e instanceof CertError) throw new CliError('ERR_CONFIG', `${publicKeyPath} is not a public key: ${e.message.replace(/^cert-core: /, '')}`);
      throw e;
    }
    if (!CERTIFIABLE.test(key.type)) continue;
    const line = readFileSync(publicKeyPath, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
    out.push({ privateKeyPath, publicKeyPath, certificatePath: `${privateKeyPath}-cert.pub`, key, line });
  }
  if (out.length === 0) throw new CliError('ERR_CONFIG', `no host keys in ${dir} (expected ssh_host_*_key with its .pub; \`ssh-keygen -A\` makes them)`);
  const rank = (k: HostKeyFile): number => (k.key.type === 'ssh-ed25519' ? 0 : k.key.type.startsWith('ecdsa') ? 1 : 2);
  return out.sort((a, b) => rank(a) - rank(b));
}
