import { createHash, X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { CertError, parseKrl } from '@portcullis/cert-core';
import { AuthClient, normalizeFingerprint, type ApiResponse, type RequestOptions } from '@portcullis/auth';
import { CliError } from '../common/errors.js';
import { PIN_PATTERN } from './layout.js';

/*
 * The host's side of auth's API. Trust in auth is one of: the certificate fingerprint auth
 * printed at start (`AB:CD:…`), its public key pin (`sha256//…`, what curl takes and what we
 * record, because it survives auth re-making its certificate), the system CAs (an operator's
 * own certificate), or, only when asked for, whatever answers first. In every case the request
 * itself goes through AuthClient pinned to the exact certificate seen, so the token never
 * reaches a server that was not checked.
 */

export interface AuthTrustOptions {
  readonly url: string;
  /** `AB:CD:…` certificate fingerprint or `sha256//…` public key pin. */
  readonly fingerprint?: string;
  readonly insecureFirstContact?: boolean;
  readonly timeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface AuthConnection {
  readonly client: AuthClient;
  /** The public key pin to record, when the server's key was seen. */
  readonly pin: string | undefined;
  readonly url: string;
}

export interface PresentedCertificate {
  readonly fingerprint: string;
  readonly pin: string;
}

function unreachable(url: string, e: unknown): CliError {
  const err = e as NodeJS.ErrnoException;
  return new CliError('ERR_UNREACHABLE', `cannot reach auth at ${url}: ${err.code ?? err.message}`);
}

/** The certificate a TLS server presents: its SHA-256 fingerprint and SPKI pin. */
export function probeCertificate(url: string, timeoutMs = 15_000): Promise<PresentedCertificate> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port: Number(u.port || 443),
      // Only looking: the pin comparison below is the check, and nothing is sent on this socket.
      rejectUnauthorized: false,
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error('ETIMEDOUT')));
    socket.once('error', (e) => reject(unreachable(url, e)));
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate(false);
      socket.end();
      if (peer.raw === undefined) {
        reject(new CliError('ERR_UNREACHABLE', `auth at ${url} presented no certificate`));
        return;
      }
      const spki = new X509Certificate(peer.raw).publicKey.export({ type: 'spki', format: 'der' });
      resolve({ fingerprint: peer.fingerprint256, pin: `sha256//${createHash('sha256').update(spki).digest('base64')}` });
    });
  });
}

function checkUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CliError('ERR_USAGE', `--auth expected https://host:port, got ${JSON.stringify(url)}`);
  }
  if (u.protocol !== 'https:' || u.pathname !== '/' || u.search !== '' || u.username !== '') {
    throw new CliError('ERR_USAGE', `--auth expected https://host:port, got ${JSON.stringify(url)}`);
  }
  return u.origin;
}

/** Decides how far to trust the server at `url`, and returns a client pinned accordingly. */
export async function connectAuth(o: AuthTrustOptions): Promise<AuthConnection> {
  const url = checkUrl(o.url);
  const timeoutMs = o.timeoutMs ?? 30_000;
  const given = o.fingerprint?.trim();
  if (given === undefined || given === '') {
    if (o.insecureFirstContact !== true) {
      // System CAs: an operator's certificate from a real CA needs no pin.
      return { client: new AuthClient({ url, timeoutMs }), pin: undefined, url };
    }
    const seen = await probeCertificate(url, timeoutMs);
    o.log?.(`warning: trusting auth at ${url} on first contact: certificate ${seen.fingerprint}, key pin ${seen.pin}; compare them with what auth printed at start`);
    return { client: new AuthClient({ url, fingerprint: seen.fingerprint, timeoutMs }), pin: seen.pin, url };
  }
  const seen = await probeCertificate(url, timeoutMs);
  if (given.startsWith('sha256//')) {
    if (!PIN_PATTERN.test(given)) throw new CliError('ERR_USAGE', `--fingerprint: a key pin is sha256// and 44 base64 characters, got ${JSON.stringify(given)}`);
    if (seen.pin !== given) throw new CliError('ERR_AUTH', `auth at ${url} presented key pin ${seen.pin}, not the expected ${given}`);
  } else {
    let want: string;
    try {
      want = normalizeFingerprint(given);
    } catch (e) {
      throw new CliError('ERR_USAGE', `--fingerprint: ${(e as Error).message.replace(/^"fingerprint" /, '')}`);
    }
    if (seen.fingerprint !== want) throw new CliError('ERR_AUTH', `auth at ${url} presented certificate ${seen.fingerprint}, not the expected ${want}`);
  }
  return { client: new AuthClient({ url, fingerprint: seen.fingerprint, timeoutMs }), pin: seen.pin, url };
}

/** Sends one request; a network or TLS failure becomes one line naming the server. */
export async function call<T>(conn: AuthConnection, method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
  try {
    return await conn.client.request<T>(method, path, opts);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (/certificate|self.signed|unable to verify/i.test(`${err.code} ${err.message}`)) {
      throw new CliError('ERR_AUTH', `cannot verify auth's TLS certificate at ${conn.url} (${err.code ?? err.message}): pass --fingerprint with what auth printed at start, or --insecure-first-contact`);
    }
    if (/presented certificate/.test(err.message)) throw new CliError('ERR_AUTH', err.message);
    throw unreachable(conn.url, e);
  }
}

/** auth's error answer as one line, with the exit code its status deserves. */
export function refusal(res: ApiResponse, what: string): CliError {
  const body = res.body as { error?: { code?: unknown; message?: unknown } } | undefined;
  const message = typeof body?.error?.message === 'string' ? body.error.message : `HTTP ${res.status}`;
  const code = res.status === 401 || res.status === 403 || res.status === 410 || res.status === 423 ? 'ERR_AUTH' : res.status === 404 ? 'ERR_NOT_FOUND' : 'ERR_REFUSED';
  // One line, whatever the server put in it.
  return new CliError(code, `${what}: ${message.replace(/[\x00-\x1f\x7f]+/g, ' ')}`);
}

/** The body of a 2xx answer, or the refusal as a CliError. */
export function okBody<T>(res: ApiResponse<T>, what: string): T {
  if (res.status < 200 || res.status > 299) throw refusal(res, what);
  if (res.body === undefined || res.body === null || typeof res.body !== 'object') throw new CliError('ERR_REFUSED', `${what}: auth answered ${res.status} without a JSON body`);
  return res.body;
}

/** GET /v1/krl, refusing anything that is not a KRL sshd would read. */
export async function fetchKrl(conn: AuthConnection, etag?: string): Promise<Uint8Array | 'unchanged'> {
  const res = await call(conn, 'GET', '/v1/krl', etag === undefined ? {} : { headers: { 'if-none-match': etag } });
  if (res.status === 304) return 'unchanged';
  if (res.status !== 200) {
    okBody(res, 'fetching the KRL');
    throw new CliError('ERR_REFUSED', `fetching the KRL: HTTP ${res.status}`);
  }
  const bytes = new Uint8Array(res.bytes);
  try {
    parseKrl(bytes);
  } catch (e) {
    if (e instanceof CertError) throw new CliError('ERR_REFUSED', `auth served a KRL that does not parse (${e.message.replace(/^cert-core: /, '')}); the current file was kept`);
    throw e;
  }
  return bytes;
}
