import { Agent, request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ProxyError } from './errors.js';

/*
 * HTTPS to auth, trusted by the SHA-256 fingerprint of auth's certificate (what auth prints at
 * its first start), with keep-alive: the proxy calls auth two or three times per SSH connection,
 * and a TLS handshake each time would show in the connection set-up time.
 *
 * The pin is checked on the finished handshake, before the socket is handed to node:http, so
 * no byte of a request (and the service credential in it) reaches a server that does not hold
 * the pinned certificate. The proxy does not import auth (DESIGN.md), so this is its own small
 * client rather than auth's AuthClient.
 */

export interface PinnedHttpsOptions {
  /** https://host:port of auth. */
  readonly url: string;
  /** SHA-256 fingerprint of auth's TLS certificate (`AB:CD:…`; colons, case and `sha256:` optional). */
  readonly fingerprint: string;
  /** Per request, connection included (default 10 s). */
  readonly timeoutMs?: number;
  /** Connections kept to auth at most (default 16). */
  readonly maxSockets?: number;
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface HttpCall {
  readonly method: 'GET' | 'POST';
  /** Path and query, e.g. `/v1/proxy/hosts/web01`. */
  readonly path: string;
  readonly json?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Answers larger than this are refused: nothing auth sends the proxy comes near it (KRLs are KiB). */
const MAX_BODY = 32 * 1024 * 1024;

export function normalizeFingerprint(fp: string): string {
  const hex = String(fp).replace(/^sha256:/i, '').replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new TypeError(`proxy: "fingerprint" expected 32 bytes of hex (SHA-256), got ${JSON.stringify(fp)}`);
  return hex.match(/../g)!.join(':');
}

export class PinnedHttps {
  readonly url: URL;
  readonly #fingerprint: string;
  readonly #timeoutMs: number;
  readonly #agent: Agent;

  constructor(o: PinnedHttpsOptions) {
    this.url = new URL(o.url);
    if (this.url.protocol !== 'https:') throw new TypeError(`proxy: auth's "url" expected https://, got ${JSON.stringify(o.url)}`);
    this.#fingerprint = normalizeFingerprint(o.fingerprint);
    this.#timeoutMs = o.timeoutMs ?? 10_000;
    // A plain http.Agent: the TLS socket comes from createConnection below, already checked.
    // lifo reuses the warmest connection, so idle ones age out and few stay open.
    this.#agent = new Agent({ keepAlive: true, maxSockets: o.maxSockets ?? 16, maxFreeSockets: 4, scheduling: 'lifo' });
    (this.#agent as unknown as { createConnection: (opts: unknown, cb: (e: Error | null, s?: Socket) => void) => undefined }).createConnection = (
      _opts,
      cb,
    ) => {
      this.#connect().then(
        (s) => cb(null, s),
        (e: Error) => cb(e),
      );
      return undefined;
    };
  }

  /** Closes idle connections; requests in flight finish. */
  close(): void {
    this.#agent.destroy();
  }

  #connect(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const host = this.url.hostname.replace(/^\[|\]$/g, '');
      const socket = tlsConnect({
        host,
        port: Number(this.url.port || 443),
        // Trust is the pin, checked below; chain and name are not what is relied on.
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
        ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
      });
      const timer = setTimeout(() => socket.destroy(new Error(`TLS handshake with ${this.url.host} timed out`)), this.#timeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        const presented = socket.getPeerCertificate().fingerprint256;
        if (presented !== this.#fingerprint) {
          socket.destroy();
          reject(new Error(`auth at ${this.url.host} presented certificate ${presented}, not the pinned ${this.#fingerprint}`));
          return;
        }
        resolve(socket);
      });
    });
  }

  /**
   * One request. A keep-alive connection that auth closed while idle fails on reuse before any
   * answer: that one attempt is repeated on a fresh connection (for a POST too: a request that
   * got no answer on a dead socket was never read).
   */
  async request(call: HttpCall): Promise<HttpAnswer> {
    try {
      return await this.#once(call);
    } catch (e) {
      if (e instanceof StaleSocket) return this.#once(call);
      throw e;
    }
  }

  #once(call: HttpCall): Promise<HttpAnswer> {
    const payload = call.json === undefined ? undefined : Buffer.from(JSON.stringify(call.json));
    const headers: Record<string, string> = { accept: 'application/json', host: this.url.host, ...call.headers };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    return new Promise<HttpAnswer>((resolve, reject) => {
      let answered = false;
      const req: ClientRequest = httpRequest(
        { host: this.url.hostname, port: this.url.port, path: call.path, method: call.method, headers, agent: this.#agent },
        (res: IncomingMessage) => {
          answered = true;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY) {
              req.destroy(new Error(`${call.method} ${call.path}: answer larger than ${MAX_BODY} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('error', reject);
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        },
      );
      const timer = setTimeout(() => req.destroy(new Error(`${call.method} ${call.path} to auth timed out after ${this.#timeoutMs} ms`)), this.#timeoutMs);
      req.once('close', () => clearTimeout(timer));
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (!answered && req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) reject(new StaleSocket());
        else reject(e);
      });
      req.end(payload);
    });
  }
}

class StaleSocket extends Error {}

/** For callers that want auth's own words: the `{"error": {"code", "message"}}` body, if any. */
export function apiError(a: HttpAnswer): { readonly code: string; readonly message: string } {
  try {
    const e = (JSON.parse(a.body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } }).error;
    if (typeof e?.code === 'string' && typeof e.message === 'string') return { code: e.code, message: e.message };
  } catch {
    // not JSON: a proxy in between, or a crash page
  }
  return { code: `HTTP_${a.status}`, message: `auth answered ${a.status}` };
}

/** The body as JSON, or a ProxyError saying what came instead. */
export function jsonOf(a: HttpAnswer, what: string): unknown {
  try {
    return JSON.parse(a.body.toString('utf8'));
  } catch {
    throw new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: ${what}: auth answered ${a.status} with a body that is not JSON`);
  }
}
