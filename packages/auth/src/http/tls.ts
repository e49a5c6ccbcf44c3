import { X509Certificate, createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { AuthError } from '../errors.js';
import { installReflectMetadata } from './reflect-shim.js';

/** The certificate and key the API serves, and what clients pin. */
export interface TlsMaterial {
  /** PEM: the leaf first, then any chain. */
  readonly cert: string;
  readonly key: string;
  /** SHA-256 of the leaf certificate (DER), colon-separated hex as openssl and browsers show it. */
  readonly fingerprint: string;
  /** `sha256//<base64>` of the leaf's SubjectPublicKeyInfo, as `curl --pinnedpubkey` takes it. */
  readonly spkiPin: string;
  readonly generated: boolean;
  /** The DNS names and addresses the leaf covers. */
  readonly names: readonly string[];
}

export interface TlsOptions {
  readonly stateDir: string;
  /** An operator's certificate and key (PEM files); otherwise one is generated. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Names the generated certificate must cover (127.0.0.1, ::1 and localhost always are). */
  readonly names?: readonly string[];
  readonly now?: () => number;
  readonly log?: (message: string) => void;
}

// Pinned, not validated against a CA, so a long life costs nothing and spares operators a
// renewal that would change the fingerprint clients pinned.
const GENERATED_LIFETIME_DAYS = 3650;
const RENEW_BEFORE_DAYS = 30;
const ALWAYS_NAMES = ['127.0.0.1', '::1', 'localhost'];

/** The leaf's SHA-256 fingerprint and SPKI pin. */
export function certificatePins(leafPem: string): { fingerprint: string; spkiPin: string; names: string[]; validTo: number } {
  const x = new X509Certificate(leafPem);
  const spki = x.publicKey.export({ type: 'spki', format: 'der' });
  return {
    fingerprint: x.fingerprint256,
    spkiPin: `sha256//${createHash('sha256').update(spki).digest('base64')}`,
    names: sanNames(x),
    validTo: Date.parse(x.validTo),
  };
}

function sanNames(x: X509Certificate): string[] {
  const san = x.subjectAltName ?? '';
  return san
    .split(/,\s*/)
    .map((s) => /^(?:DNS|IP Address):(.+)$/.exec(s.trim())?.[1])
    .filter((s): s is string => s !== undefined)
    .map((s) => (isIP(s) === 6 ? normalizeV6(s) : s.toLowerCase()));
}

function normalizeV6(s: string): string {
  // Node prints IPv6 SANs expanded (0:0:0:0:0:0:0:1); compare in URL's canonical form.
  try {
    return new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    return s.toLowerCase();
  }
}

function wanted(names: readonly string[]): string[] {
  return [...new Set([...ALWAYS_NAMES, ...names].map((n) => (isIP(n) === 6 ? normalizeV6(n) : n.toLowerCase())))];
}

function firstPem(chain: string): string {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chain);
  if (!m) throw new AuthError('ERR_CONFIG', 'tls: the certificate file holds no PEM certificate');
  return m[0];
}

function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, data, { mode, flag: 'wx' });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

async function selfSigned(keyPem: string, names: readonly string[], nowMs: number): Promise<string> {
  installReflectMetadata();
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const nodeKey = createPrivateKey(keyPem);
  const subtle = webcrypto.subtle;
  const privateKey = await subtle.importKey('pkcs8', nodeKey.export({ type: 'pkcs8', format: 'der' }), alg, true, ['sign']);
  const publicKey = await subtle.importKey('spki', createPublicKey(nodeKey).export({ type: 'spki', format: 'der' }), alg, true, ['verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // A random positive serial (RFC 5280: unique per issuer, at most 20 octets).
    serialNumber: '01' + randomBytes(15).toString('hex'),
    name: 'CN=portcullis auth',
    // Back-dated an hour for clients whose clock runs late.
    notBefore: new Date(nowMs - 3600_000),
    notAfter: new Date(nowMs + GENERATED_LIFETIME_DAYS * 86400_000),
    keys: { privateKey, publicKey },
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => (isIP(n) !== 0 ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }))),
    ],
  });
  return cert.toString('pem') + '\n';
}

/**
 * The API's TLS certificate. With an operator's files, those. Otherwise a self-signed ECDSA
 * P-256 certificate in `<stateDir>/tls/`, made once; it is re-made (same key, so the SPKI pin
 * holds) only when a configured name is missing from it or it nears expiry.
 */
export async function loadOrCreateTls(opts: TlsOptions): Promise<TlsMaterial> {
  const log = opts.log ?? (() => {});
  if (opts.certFile !== undefined || opts.keyFile !== undefined) {
    if (opts.certFile === undefined || opts.keyFile === undefined) throw new AuthError('ERR_CONFIG', 'tls: cert_file and key_file go together');
    let cert: string;
    let key: string;
    try {
      cert = readFileSync(opts.certFile, 'utf8');
      key = readFileSync(opts.keyFile, 'utf8');
    } catch (e) {
      throw new AuthError('ERR_CONFIG', `tls: ${(e as Error).message}`);
    }
    const leaf = firstPem(cert);
    let pins: ReturnType<typeof certificatePins>;
    try {
      pins = certificatePins(leaf);
      if (!new X509Certificate(leaf).checkPrivateKey(createPrivateKey(key))) throw new Error('the key does not belong to the certificate');
    } catch (e) {
      throw new AuthError('ERR_CONFIG', `tls: ${opts.certFile} / ${opts.keyFile}: ${(e as Error).message}`);
    }
    return { cert, key, fingerprint: pins.fingerprint, spkiPin: pins.spkiPin, generated: false, names: pins.names };
  }

  const now = (opts.now ?? Date.now)();
  const dir = join(opts.stateDir, 'tls');
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyPath = join(dir, 'auth-key.pem');
  const certPath = join(dir, 'auth-cert.pem');
  if (!existsSync(keyPath)) {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeAtomic(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  }
  const key = readFileSync(keyPath, 'utf8');
  const names = wanted(opts.names ?? []);
  let cert = existsSync(certPath) ? readFileSync(certPath, 'utf8') : undefined;
  let reason: string | undefined = cert === undefined ? 'first start' : undefined;
  if (cert !== undefined) {
    const pins = certificatePins(firstPem(cert));
    const missing = names.filter((n) => !pins.names.includes(n));
    if (missing.length > 0) reason = `it does not name ${missing.join(', ')}`;
    else if (pins.validTo - now < RENEW_BEFORE_DAYS * 86400_000) reason = 'it expires soon';
    else if (!new X509Certificate(firstPem(cert)).checkPrivateKey(createPrivateKey(key))) reason = 'it does not match the key';
  }
  if (reason !== undefined) {
    cert = await selfSigned(key, names, now);
    writeAtomic(certPath, cert, 0o644);
    log(`tls: generated a self-signed certificate (${reason}) in ${certPath}`);
  }
  const pins = certificatePins(firstPem(cert!));
  return { cert: cert!, key, fingerprint: pins.fingerprint, spkiPin: pins.spkiPin, generated: true, names: pins.names };
}
