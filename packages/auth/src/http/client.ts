import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';

/*
 * A small client of the auth API for the CLIs and tests. Trust comes from a pinned certificate
 * fingerprint (what a first start prints) or the system's CAs. Pinning is checked on the
 * finished handshake, before a single byte of the request is written: a request (and the
 * password or token in it) never reaches a server whose certificate is not the pinned one.
 */

export interface AuthClientOptions {
  /** https://host:port of the auth service. */
  readonly url: string;
  /** SHA-256 fingerprint of the server's certificate (`AB:CD:…`, colons and case optional). */
  readonly fingerprint?: string;
  /** Extra PEM CAs when not pinning (an operator's private CA). */
  readonly ca?: string;
  /** Per request (default 30 s). */
  readonly timeoutMs?: number;
}

export interface ApiResponse<T = unknown> {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** Parsed JSON, or undefined for an empty or non-JSON body. */
  readonly body: T;
  readonly bytes: Buffer;
}

export interface RequestOptions {
  /** A JSON body (serialized) or raw bytes / text sent as is. */
  readonly json?: unknown;
  readonly raw?: string | Uint8Array;
  readonly contentType?: string;
  /** Login session token or service credential, sent as `Authorization: Bearer`. */
  readonly token?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export function normalizeFingerprint(fp: string): string {
  const hex = fp.replace(/^sha256:/i, '').replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new TypeError(`"fingerprint" expected 32 bytes of hex (SHA-256), got ${JSON.stringify(fp)}`);
  return hex.match(/../g)!.join(':');
}

/** Connects and checks the server's certificate against the pin; rejects on a mismatch. */
function pinnedSocket(url: URL, fingerprint: string, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const socket = tlsConnect({
      host,
      port: Number(url.port || 443),
      // Trust is the pin, checked below; the chain and name are not what is being relied on.
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
    });
    const timer = setTimeout(() => socket.destroy(new Error(`TLS handshake with ${url.host} timed out`)), timeoutMs);
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const presented = socket.getPeerCertificate().fingerprint256;
      if (presented !== fingerprint) {
        socket.destroy();
        reject(new Error(`the server at ${url.host} presented certificate ${presented}, not the pinned ${fingerprint}`));
        return;
      }
      resolve(socket);
    });
  });
}

export class AuthClient {
  readonly url: URL;
  readonly #fingerprint: string | undefined;
  readonly #ca: string | undefined;
  readonly #timeoutMs: number;

  constructor(opts: AuthClientOptions) {
    this.url = new URL(opts.url);
    if (this.url.protocol !== 'https:') throw new TypeError(`"url" expected https://, got ${opts.url}`);
    this.#fingerprint = opts.fingerprint === undefined ? undefined : normalizeFingerprint(opts.fingerprint);
    this.#ca = opts.ca;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
  }

  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const target = new URL(path, this.url);
    const payload =
      opts.json !== undefined ? Buffer.from(JSON.stringify(opts.json)) : opts.raw !== undefined ? Buffer.from(opts.raw) : undefined;
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (payload !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
    const socket = this.#fingerprint === undefined ? undefined : await pinnedSocket(target, this.#fingerprint, this.#timeoutMs);
    return new Promise((resolve, reject) => {
      const onResponse = (res: IncomingMessage): void => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const bytes = Buffer.concat(chunks);
          let body: unknown;
          if (/json/.test(String(res.headers['content-type'])) && bytes.length > 0) {
            try {
              body = JSON.parse(bytes.toString('utf8'));
            } catch {
              body = undefined;
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body as T, bytes });
        });
      };
      // Pinned: HTTP/1.1 over the socket whose handshake was already checked (node:http does
      // not care that it is TLS underneath). Otherwise ordinary https with CA validation.
      const req =
        socket === undefined
          ? httpsRequest(target, { method, headers, timeout: this.#timeoutMs, ...(this.#ca === undefined ? {} : { ca: this.#ca }) }, onResponse)
          : httpRequest(
              { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method, headers: { host: target.host, ...headers }, timeout: this.#timeoutMs, createConnection: () => socket },
              onResponse,
            );
      req.on('timeout', () => req.destroy(new Error(`${method} ${target.pathname} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
