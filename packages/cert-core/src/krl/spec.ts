import { CertError, malformed } from '../errors.js';
import type { CryptoBackend } from '../crypto/backend.js';
import type { PublicKey } from '../keys/types.js';
import { encodePublicKey } from '../keys/public-key.js';
import { parseKeyOrCertificateText } from '../keys/line.js';
import { verifyCertificateSignature } from '../cert/certificate.js';
import { fromBase64 } from '../wire/bytes.js';
import { UINT64_MAX } from './model.js';

/** One revocation from an `ssh-keygen -k` spec file, with the line it came from. */
export type KrlSpecEntry =
  | { readonly line: number; readonly kind: 'serials'; readonly ca: PublicKey | null; readonly lo: bigint; readonly hi: bigint }
  | { readonly line: number; readonly kind: 'keyId'; readonly ca: PublicKey | null; readonly keyId: string }
  | { readonly line: number; readonly kind: 'key'; readonly key: PublicKey }
  | { readonly line: number; readonly kind: 'sha1' | 'sha256'; readonly hash: Uint8Array };

export interface KrlSpecOptions {
  /**
   * The CA that `serial:` and `id:` lines revoke under (`ssh-keygen -s ca.pub`), or 'none' for
   * any CA (`-s none`). Without it those lines are errors, as in ssh-keygen.
   */
  readonly caKey?: PublicKey | 'none';
  /** Hashes `sha1:` / `sha256:` keys and verifies certificates on certificate lines. */
  readonly crypto: CryptoBackend;
}

/**
 * Parses a KRL spec with ssh-keygen's semantics (update_krl_from_file):
 * - leading blanks skipped; `#` starts a comment anywhere; trailing blanks trimmed;
 * - keywords are case-insensitive: `serial: N[-M]` (strtoull base 0, so `0x10` is 16 and `010`
 *   is 8; M must exceed N; 0 is refused), `id: text`, `key: <public key>`, `sha1: <public key>`,
 *   `sha256: <public key>` (these take keys, not hashes), `hash: SHA256:<base64>`;
 * - any other line is a public key (revoked explicitly) or a certificate (revoked by serial
 *   under its own CA, or by key id when its serial is 0).
 * A bad line fails with ERR_MALFORMED at `krl spec line N`.
 */
export function parseKrlSpec(text: string, options: KrlSpecOptions): KrlSpecEntry[] {
  if (typeof text !== 'string') throw new TypeError('cert-core: parseKrlSpec expects the spec text as a string');
  if (typeof options?.crypto?.hash !== 'function') throw new TypeError('cert-core: parseKrlSpec needs options.crypto');
  const ca = options.caKey;
  const scope: PublicKey | null | undefined = ca === 'none' ? null : ca;
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const out: KrlSpecEntry[] = [];
  lines.forEach((raw, i) => {
    const line = i + 1;
    const where = `krl spec line ${line}`;
    try {
      const entry = parseLine(raw, line, scope, options.crypto, where);
      if (entry !== undefined) out.push(entry);
    } catch (e) {
      if (!(e instanceof CertError)) throw e;
      if (e.code === 'ERR_MALFORMED' && e.where === where) throw e;
      // Errors of the key parser name a field below this line: keep it, but at this line.
      const field = e.where?.startsWith(`${where}.`) ? `${e.where.slice(where.length + 1)}: ` : '';
      malformed(where, field + (e.what ?? e.message.replace(/^cert-core: /, '')));
    }
  });
  return out;
}

/** strspn(s, " \t") */
function skipBlanks(s: string, i = 0): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  return i;
}

/** The line as ssh-keygen sees it: a C string, blanks and comment removed. */
function cleanLine(raw: string): string {
  const nul = raw.indexOf('\0');
  const s = (nul >= 0 ? raw.slice(0, nul) : raw).slice(skipBlanks(raw));
  let end = s.length;
  let blank = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '#' || c === '\n') {
      end = i;
      break;
    }
    if (c === ' ' || c === '\t') {
      if (blank === -1) blank = i;
    } else blank = -1;
  }
  return s.slice(0, blank !== -1 ? blank : end);
}

/** strncasecmp(s, keyword, keyword.length) == 0, ASCII only as in the C locale. */
function hasKeyword(s: string, keyword: string): boolean {
  return s.length >= keyword.length && s.slice(0, keyword.length).replace(/[A-Z]/g, (c) => c.toLowerCase()) === keyword;
}

function parseLine(
  raw: string,
  line: number,
  ca: PublicKey | null | undefined,
  crypto: CryptoBackend,
  where: string,
): KrlSpecEntry | undefined {
  const cp = cleanLine(raw);
  if (cp === '') return undefined;
  if (hasKeyword(cp, 'serial:')) {
    if (ca === undefined) malformed(where, 'revoking certificates by serial number requires a CA key (caKey, or "none" for any CA)');
    const [lo, hi] = parseSerials(cp.slice(skipBlanks(cp, 7)), where);
    return { line, kind: 'serials', ca, lo, hi };
  }
  if (hasKeyword(cp, 'id:')) {
    if (ca === undefined) malformed(where, 'revoking certificates by key id requires a CA key (caKey, or "none" for any CA)');
    return { line, kind: 'keyId', ca, keyId: cp.slice(skipBlanks(cp, 3)) };
  }
  if (hasKeyword(cp, 'hash:')) {
    return { line, kind: 'sha256', hash: parseHash(cp.slice(skipBlanks(cp, 5)), where) };
  }
  let kind: 'key' | 'sha1' | 'sha256' | 'bare' = 'bare';
  let rest = cp;
  for (const k of ['key', 'sha1', 'sha256'] as const) {
    if (hasKeyword(cp, `${k}:`)) {
      kind = k;
      rest = cp.slice(skipBlanks(cp, k.length + 1));
      break;
    }
  }
  const parsed = parseKeyOrCertificateText(rest, where);
  if (parsed.cert !== undefined && !verifyCertificateSignature(crypto, parsed.cert)) {
    malformed(where, 'certificate signature does not verify');
  }
  const key = parsed.key;
  switch (kind) {
    case 'key':
      return { line, kind: 'key', key };
    case 'sha1':
    case 'sha256':
      return { line, kind, hash: crypto.hash(kind, encodePublicKey(key)) };
    default: {
      const cert = parsed.cert;
      if (cert === undefined) return { line, kind: 'key', key };
      if (cert.serial === 0n) return { line, kind: 'keyId', ca: cert.signatureKey, keyId: cert.keyId };
      return { line, kind: 'serials', ca: cert.signatureKey, lo: cert.serial, hi: cert.serial };
    }
  }
}

function parseSerials(cp: string, where: string): [bigint, bigint] {
  const bad = (s: string): never => malformed(where, `invalid serial ${JSON.stringify(s)}`);
  const first = strtoull(cp, 0);
  if (cp === '' || (first.end < cp.length && cp[first.end] !== '-')) bad(cp);
  if (first.overflow) malformed(where, 'serial out of range');
  let lo = first.value;
  let hi = lo;
  if (cp[first.end] === '-') {
    const rest = cp.slice(first.end + 1);
    const second = strtoull(rest, 0);
    if (rest === '' || second.end < rest.length) bad(rest);
    if (second.overflow) malformed(where, 'serial out of range');
    hi = second.value;
    if (hi <= lo) malformed(where, `invalid serial range ${lo}:${hi}`);
  }
  if (lo === 0n) malformed(where, 'serial 0 cannot be revoked by serial');
  return [lo, hi];
}

const ISSPACE = /[ \t\n\v\f\r]/;

/**
 * glibc strtoull(s + from, &end, 0): leading white space, an optional sign (a minus negates
 * modulo 2^64), `0x` hex, a leading `0` octal, else decimal. With no digits, end is `from`
 * and the value 0; `0x` without a hex digit parses as 0 with end at the `x`. Overflow gives
 * 2^64-1 with `overflow` set.
 */
export function strtoull(s: string, from: number): { value: bigint; end: number; overflow: boolean } {
  let i = from;
  while (i < s.length && ISSPACE.test(s[i]!)) i++;
  let negative = false;
  if (s[i] === '+' || s[i] === '-') {
    negative = s[i] === '-';
    i++;
  }
  let base = 10;
  if (s[i] === '0' && (s[i + 1] === 'x' || s[i + 1] === 'X') && /[0-9a-fA-F]/.test(s[i + 2] ?? '')) {
    base = 16;
    i += 2;
  } else if (s[i] === '0') {
    base = 8;
  }
  const digits = base === 16 ? /[0-9a-fA-F]/ : base === 8 ? /[0-7]/ : /[0-9]/;
  const start = i;
  let value = 0n;
  let overflow = false;
  while (i < s.length && digits.test(s[i]!)) {
    value = value * BigInt(base) + BigInt(parseInt(s[i]!, base));
    if (value > UINT64_MAX) overflow = true;
    i++;
  }
  if (i === start) return { value: 0n, end: from, overflow: false };
  if (overflow) return { value: UINT64_MAX, end: i, overflow: true };
  if (negative && value !== 0n) value = (1n << 64n) - value;
  return { value, end: i, overflow: false };
}

/** `SHA256:<base64>` as ssh-keygen's hash_to_blob: padding optional, exactly 32 bytes. */
function parseHash(cp: string, where: string): Uint8Array {
  if (!cp.startsWith('SHA256:')) malformed(where, `unsupported hash algorithm in ${JSON.stringify(cp)}`);
  let b64 = cp.slice(7);
  while (b64.length % 4 !== 0) b64 += '=';
  const hash = fromBase64(b64);
  if (hash === undefined) malformed(where, `invalid base64 in ${JSON.stringify(cp)}`);
  if (hash.length !== 32) malformed(where, `SHA256 hash of ${hash.length} bytes, expected 32`);
  return hash;
}
