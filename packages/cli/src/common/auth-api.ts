import { connect as tlsConnect } from 'node:tls';
// The client module alone, not the package index: the index loads the whole service (fastify,
// ioredis, openid-client) and would add ~0.6 s to every command. Switch to a subpath export
// (`@portcullis/auth/client`) once auth publishes one.
import { AuthClient, normalizeFingerprint, type ApiResponse } from '@portcullis/auth/client';
import { CliError, type CliErrorCode } from './errors.js';

/*
 * The CLIs' side of auth's HTTP API: AuthClient (TLS pinned to a certificate fingerprint)
 * with every failure turned into a CliError whose one line says what to do: unreachable,
 * not trusted, login expired, refused with the server's reason.
 */

export { normalizeFingerprint };

export interface AuthTarget {
  readonly url: string;
  /** Pinned certificate fingerprint; absent when the system's CAs vouch for the service. */
  readonly fingerprint?: string;
}

/** An error answer from auth, keeping its code and extra fields (an MFA ticket...). */
export class ApiRefusal extends CliError {
  readonly apiCode: string;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: CliErrorCode, message: string, apiCode: string, status: number, details: Readonly<Record<string, unknown>>) {
    super(code, message);
    this.apiCode = apiCode;
    this.status = status;
    this.details = details;
  }
}

const CLI_CODE_OF: Readonly<Record<string, CliErrorCode>> = {
  ERR_UNAUTHENTICATED: 'ERR_AUTH',
  ERR_MFA_REQUIRED: 'ERR_AUTH',
  ERR_MFA_INVALID: 'ERR_AUTH',
  ERR_FORBIDDEN: 'ERR_AUTH',
  ERR_LOCKED: 'ERR_AUTH',
  ERR_EXPIRED: 'ERR_AUTH',
  ERR_NOT_FOUND: 'ERR_NOT_FOUND',
  ERR_UNAVAILABLE: 'ERR_UNREACHABLE',
};

/** The label users know a service by in messages: host:port. */
function where(url: string): string {
  return new URL(url).host;
}

/** A transport failure as the one line a user can act on. */
export function transportError(target: AuthTarget, e: unknown): CliError {
  const err = e as NodeJS.ErrnoException;
  const message = err instanceof Error ? err.message : String(e);
  const host = where(target.url);
  const pinned = /presented certificate (\S+), not the pinned (\S+)/.exec(message);
  if (pinned !== null) {
    return new CliError(
      'ERR_AUTH',
      `auth at ${host} presented TLS certificate ${pinned[1]}, not the pinned ${pinned[2]}: the connection may be intercepted; ` +
        `if its operator confirms the new fingerprint, run pcsh login --auth ${target.url} --fingerprint ${pinned[1]}`,
    );
  }
  const reasons: Readonly<Record<string, string>> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'no such host',
    EAI_AGAIN: 'the name does not resolve right now',
    ETIMEDOUT: 'timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    ECONNRESET: 'connection reset',
  };
  const reason = (err.code !== undefined ? reasons[err.code] : undefined) ?? (/timed out/.test(message) ? 'timed out' : undefined);
  if (reason !== undefined) return new CliError('ERR_UNREACHABLE', `cannot reach auth at ${host}: ${reason}`);
  if (/certificate|self.signed|unable to verify|altnames/i.test(message)) {
    return new CliError('ERR_AUTH', `auth at ${host} is not trusted: ${message}; pin its certificate with pcsh login --fingerprint`);
  }
  return new CliError('ERR_UNREACHABLE', `talking to auth at ${host} failed: ${message}`);
}

export interface CallOptions {
  readonly json?: unknown;
  readonly query?: Readonly<Record<string, string | number | undefined>>;
  /** Send this token even when the client holds another (login flows). */
  readonly token?: string;
}

export class AuthApi {
  readonly target: AuthTarget;
  readonly #client: AuthClient;
  readonly #token: string | undefined;

  constructor(target: AuthTarget, token?: string, timeoutMs = 30_000) {
    this.target = target;
    this.#token = token;
    try {
      this.#client = new AuthClient({ url: target.url, ...(target.fingerprint === undefined ? {} : { fingerprint: target.fingerprint }), timeoutMs });
    } catch (e) {
      throw new CliError('ERR_USAGE', (e as Error).message);
    }
  }

  /** The raw response (any status); only transport failures throw. */
  async request<T>(method: string, path: string, opts: CallOptions = {}): Promise<ApiResponse<T>> {
    const query = Object.entries(opts.query ?? {}).filter((e): e is [string, string | number] => e[1] !== undefined);
    const full = query.length === 0 ? path : `${path}?${new URLSearchParams(query.map(([k, v]): [string, string] => [k, String(v)])).toString()}`;
    const token = opts.token ?? this.#token;
    try {
      return await this.#client.request<T>(method, full, {
        ...(opts.json === undefined ? {} : { json: opts.json }),
        ...(token === undefined ? {} : { token }),
      });
    } catch (e) {
      throw transportError(this.target, e);
    }
  }

  /** The parsed body of a 2xx answer; an error answer becomes an ApiRefusal. */
  async call<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
    const res = await this.request<T>(method, path, opts);
    if (res.status >= 200 && res.status < 300) return res.body;
    throw this.refusal(res);
  }

  refusal(res: ApiResponse<unknown>): ApiRefusal {
    const body = res.body as { error?: { code?: unknown; message?: unknown } & Record<string, unknown> } | undefined;
    const apiCode = typeof body?.error?.code === 'string' ? body.error.code : `HTTP_${res.status}`;
    let message = typeof body?.error?.message === 'string' ? body.error.message : `auth answered ${res.status} ${res.bytes.toString('utf8').slice(0, 200)}`;
    const sessionGone = apiCode === 'ERR_UNAUTHENTICATED' || (apiCode === 'ERR_EXPIRED' && /session/i.test(message));
    if (sessionGone && this.#token !== undefined) {
      message = `your login session at ${where(this.target.url)} has expired or was revoked; run pcsh login`;
    }
    if (apiCode === 'ERR_UNAVAILABLE') message = `auth at ${where(this.target.url)} is not ready: ${message}`;
    if (apiCode === 'ERR_RATE_LIMITED') {
      const retry = res.headers['retry-after'];
      message = `${message}${typeof retry === 'string' ? ` (retry in ${retry} s)` : ''}`;
    }
    const { code: _c, message: _m, ...details } = body?.error ?? {};
    return new ApiRefusal(CLI_CODE_OF[apiCode] ?? 'ERR_REFUSED', message, apiCode, res.status, details);
  }
}

export interface PresentedCertificate {
  /** `AB:CD:…` SHA-256 of the leaf certificate. */
  readonly fingerprint: string;
  /** The system's CAs vouch for it under the URL's host name. */
  readonly trusted: boolean;
  readonly reason: string | undefined;
}

/** Connects once to read the certificate auth presents, before deciding whether to trust it. */
export function presentedCertificate(url: string, timeoutMs = 10_000): Promise<PresentedCertificate> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const target: AuthTarget = { url };
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port: Number(u.port || 443),
      // Nothing is sent on this connection; trust is decided from what it shows.
      rejectUnauthorized: false,
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
    });
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(transportError(target, e));
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = socket.getPeerCertificate();
      const err = socket.authorizationError;
      resolve({
        fingerprint: cert.fingerprint256,
        trusted: socket.authorized,
        reason: err === undefined || err === null ? undefined : String(err),
      });
      socket.destroy();
    });
  });
}
