import { CertError, malformed } from '../errors.js';
import { fromBase64, toBase64 } from '../wire/bytes.js';
import type { PublicKey } from './types.js';
import { encodePublicKey, parsePublicKey } from './public-key.js';
import type { Certificate } from '../cert/certificate.js';
import { isCertificateType, parseCertificate } from '../cert/certificate.js';

/** `type base64 [comment]`, the form of `id_ed25519.pub` and `id_ed25519-cert.pub`. */
export interface KeyLine {
  readonly type: string;
  readonly blob: Uint8Array;
  readonly comment: string;
}

export function parseKeyLine(line: string, context = 'key line'): KeyLine {
  const m = /^\s*(\S+)\s+(\S+)(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) malformed(context, 'expected "<type> <base64> [comment]"');
  const [, type, b64, comment] = m as unknown as [string, string, string, string | undefined];
  const blob = fromBase64(b64);
  if (blob === undefined) malformed(`${context}.base64`, 'invalid base64');
  return { type, blob, comment: comment ?? '' };
}

function checkLineType(line: KeyLine, inner: string, context: string): void {
  if (line.type !== inner) {
    throw new CertError('ERR_MALFORMED', `cert-core: ${context} says "${line.type}" but holds "${inner}"`, {
      where: `${context}.type`,
      what: `${line.type} != ${inner}`,
    });
  }
}

/** Parses a plain public key line. */
export function parsePublicKeyText(text: string, context = 'public key'): { key: PublicKey; comment: string } {
  const line = parseKeyLine(text, context);
  const key = parsePublicKey(line.blob, context);
  checkLineType(line, key.type, context);
  return { key, comment: line.comment };
}

/** Parses a certificate line (`...-cert-v01@openssh.com AAAA... comment`). */
export function parseCertificateText(text: string, context = 'certificate'): { cert: Certificate; comment: string } {
  const line = parseKeyLine(text, context);
  const cert = parseCertificate(line.blob, context);
  checkLineType(line, cert.certType, context);
  return { cert, comment: line.comment };
}

/** Either kind of line: a certificate when its type says so, otherwise a plain key. */
export function parseKeyOrCertificateText(
  text: string,
  context = 'key',
): { key: PublicKey; cert?: Certificate; comment: string } {
  const line = parseKeyLine(text, context);
  if (isCertificateType(line.type)) {
    const { cert, comment } = parseCertificateText(text, context);
    return { key: cert.key, cert, comment };
  }
  return parsePublicKeyText(text, context);
}

export function formatPublicKey(key: PublicKey, comment = ''): string {
  const s = `${key.type} ${toBase64(encodePublicKey(key))}`;
  return comment ? `${s} ${comment}` : s;
}

export function formatCertificate(cert: Certificate, comment = ''): string {
  const s = `${cert.certType} ${toBase64(cert.raw)}`;
  return comment ? `${s} ${comment}` : s;
}
