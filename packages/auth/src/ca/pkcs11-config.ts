import { readFileSync, statSync } from 'node:fs';
import type { CryptoBackend } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import { CA_KINDS } from './keystore.js';
import type { CaKind } from './keystore.js';
import { openPkcs11Signer } from './pkcs11.js';
import type { Pkcs11Signer } from './pkcs11.js';

/** The `ca.<kind>.pkcs11` section of the config, as config/schema.ts validates it. */
export interface Pkcs11KeyConfig {
  readonly module: string;
  readonly token_label?: string | undefined;
  readonly slot?: number | undefined;
  readonly key_label: string;
  readonly pin_file?: string | undefined;
  readonly pin_env?: string | undefined;
}

export interface CaBackendConfig {
  /** Absent means file. */
  readonly backend?: 'file' | 'pkcs11' | undefined;
  readonly pkcs11?: Pkcs11KeyConfig | undefined;
}

export interface OpenTokenSignersOptions {
  readonly crypto: CryptoBackend;
  readonly log?: (message: string) => void;
  /** Where pin_env is looked up (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

function configError(where: string, message: string): AuthError {
  return new AuthError('ERR_CONFIG', `invalid auth config: ${where}: ${message}`);
}

/** The PIN, from a file no one else may read or from the environment; never echoed. */
export function readPin(key: Pkcs11KeyConfig, where: string, env: Readonly<Record<string, string | undefined>>): string {
  if (key.pin_env !== undefined) {
    const pin = env[key.pin_env];
    if (pin === undefined || pin === '') throw configError(`${where}.pin_env`, `the environment variable ${key.pin_env} is not set`);
    return pin;
  }
  const path = key.pin_file;
  if (path === undefined) throw configError(where, 'give pin_file or pin_env');
  let pin: string;
  try {
    const mode = statSync(path).mode & 0o777;
    // The PIN unlocks the CA: a file others can read gives it away as surely as a key file.
    if ((mode & 0o077) !== 0) throw new Error(`mode ${mode.toString(8).padStart(4, '0')}; expected 0600 or stricter`);
    pin = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw configError(`${where}.pin_file`, `cannot use ${path}: ${(e as Error).message}`);
  }
  if (pin === '') throw configError(`${where}.pin_file`, `${path} is empty`);
  return pin;
}

/**
 * Opens the token key of every CA kind whose backend is pkcs11. On failure the ones already
 * opened are closed, so a refused start leaves no session behind.
 */
export function openTokenSigners(ca: Readonly<Partial<Record<CaKind, CaBackendConfig>>>, options: OpenTokenSignersOptions): Partial<Record<CaKind, Pkcs11Signer>> {
  const opened: Partial<Record<CaKind, Pkcs11Signer>> = {};
  try {
    for (const kind of CA_KINDS) {
      const c = ca[kind];
      if (c === undefined || c.backend !== 'pkcs11') continue;
      const where = `ca.${kind}.pkcs11`;
      if (c.pkcs11 === undefined) throw configError(where, 'required when backend is pkcs11');
      const k = c.pkcs11;
      const signer = openPkcs11Signer({
        module: k.module,
        ...(k.token_label === undefined ? {} : { tokenLabel: k.token_label }),
        ...(k.slot === undefined ? {} : { slot: k.slot }),
        keyLabel: k.key_label,
        pin: readPin(k, where, options.env ?? process.env),
        crypto: options.crypto,
        purpose: `${kind} CA`,
        ...(options.log === undefined ? {} : { log: options.log }),
      });
      opened[kind] = signer;
      options.log?.(`ca: ${kind} CA signs in ${signer.description}`);
    }
  } catch (e) {
    closeTokenSigners(opened);
    throw e;
  }
  return opened;
}

export function closeTokenSigners(signers: Partial<Record<CaKind, Pkcs11Signer>>): void {
  for (const kind of CA_KINDS) signers[kind]?.close();
}
