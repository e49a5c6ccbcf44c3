// A SoftHSM2 token in a temporary directory, with CA keys made inside it by pkcs11-tool (OpenSC),
// as an operator would: the private halves never exist outside the token.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hasTool, runOk } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';

/** Debian's softhsm2 package puts the module here (and a compatibility link under pkcs11/). */
export const SOFTHSM_MODULE = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'].find((p) => existsSync(p)) ?? '/usr/lib/softhsm/libsofthsm2.so';

/** Why the token tests cannot run here, or false. */
export function softhsmMissing(): string | false {
  const missing = [...['softhsm2-util', 'pkcs11-tool'].filter((t) => !hasTool(t)), ...(existsSync(SOFTHSM_MODULE) ? [] : [SOFTHSM_MODULE])];
  return missing.length > 0 ? `needs ${missing.join(', ')} (Debian softhsm2, opensc)` : false;
}

export interface SoftToken {
  readonly label: string;
  readonly pin: string;
  /** The environment every process that opens the token needs (SOFTHSM2_CONF). */
  readonly env: Readonly<Record<string, string>>;
  /** Makes a key pair in the token (pkcs11-tool --keypairgen) with this label and CKA_ID. */
  generate(keyType: 'EC:edwards25519' | 'EC:prime256v1' | 'EC:secp384r1', label: string, id: string): Promise<void>;
}

/**
 * Initialises a token (softhsm2-util --init-token --free) in `dir`. SOFTHSM2_CONF is also set
 * in this process, because the module reads it when the signer under test loads it.
 */
export async function softToken(dir: TempDir, label = 'portcullis-ca', pin = '480213'): Promise<SoftToken> {
  const tokens = dir.file('softhsm-tokens');
  mkdirSync(tokens, { recursive: true });
  const conf = dir.file('softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env['SOFTHSM2_CONF'] = conf;
  const env = { ...process.env, SOFTHSM2_CONF: conf } as Record<string, string>;
  await runOk('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', '97531864'], { env });
  return {
    label,
    pin,
    env,
    async generate(keyType, keyLabel, id) {
      await runOk(
        'pkcs11-tool',
        ['--module', SOFTHSM_MODULE, '--token-label', label, '--login', '--pin', pin, '--keypairgen', '--key-type', keyType, '--label', keyLabel, '--id', id],
        { env },
      );
    },
  };
}
