import type { AuthClient, ApiResponse } from '@portcullis/auth';
import { WebError, isWebErrorCode } from './errors.js';

/*
 * The gateway's side of auth's HTTP API. auth is reached only over HTTP, through its pinned
 * client: the certificate fingerprint is checked on the handshake before a request (and the
 * password or token in it) is written.
 */

interface AuthErrorBody {
  readonly error?: { readonly code?: unknown; readonly message?: unknown; readonly ticket?: unknown; readonly methods?: unknown; readonly expires_at?: unknown };
}

/** A login as auth answers it: a login session, or a second factor still to come. */
export type LoginAnswer =
  | { readonly kind: 'session'; readonly token: string; readonly expiresAt: number; readonly mfaVerified: boolean; readonly user: string }
  | { readonly kind: 'mfa'; readonly ticket: string; readonly methods: readonly string[]; readonly expiresAt: number };

/** Headers a forwarded /v1 response keeps; hop-by-hop and server-specific ones are dropped. */
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'cache-control', 'etag', 'retry-after', 'x-krl-version', 'last-modified', 'content-disposition'];
/** Headers a forwarded request keeps: no cookies (a /v1 client authenticates with Bearer only). */
const FORWARDED_REQUEST_HEADERS = ['authorization', 'accept', 'if-none-match', 'content-type', 'user-agent'];

export function upstreamError(res: ApiResponse): WebError {
  const e = (res.body as AuthErrorBody | undefined)?.error;
  const retry = Number(res.headers['retry-after']);
  const opts = Number.isFinite(retry) ? { retryAfter: retry } : {};
  if (e !== undefined && isWebErrorCode(e.code) && typeof e.message === 'string') return new WebError(e.code, e.message, opts);
  return new WebError('ERR_UNAVAILABLE', `auth answered ${res.status} without an error body`);
}

export class AuthUpstream {
  readonly #client: AuthClient;

  constructor(client: AuthClient) {
    this.#client = client;
  }

  async #request(method: string, path: string, opts: Parameters<AuthClient['request']>[2]): Promise<ApiResponse> {
    try {
      return await this.#client.request(method, path, opts);
    } catch (e) {
      throw new WebError('ERR_UNAVAILABLE', `auth at ${this.#client.url.host} cannot be reached: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  /** A JSON call; auth's refusals come back as WebErrors with auth's code and message. */
  async call<T>(method: string, path: string, opts: { readonly json?: unknown; readonly token?: string } = {}): Promise<T> {
    const res = await this.#request(method, path, opts);
    if (res.status >= 200 && res.status < 300) return res.body as T;
    throw upstreamError(res);
  }

  /** A login route: a session, or the ticket for the second factor. */
  async login(path: string, json: unknown): Promise<LoginAnswer> {
    const res = await this.#request('POST', path, { json });
    const body = res.body as Record<string, unknown> & AuthErrorBody;
    if (res.status === 200 && typeof body['token'] === 'string') {
      const user = body['user'] as { name?: unknown } | undefined;
      return {
        kind: 'session',
        token: body['token'],
        expiresAt: Date.parse(String(body['expires_at'])),
        mfaVerified: body['mfa_verified'] === true,
        user: typeof user?.name === 'string' ? user.name : '',
      };
    }
    const e = body?.error;
    if (res.status === 401 && e?.code === 'ERR_MFA_REQUIRED' && typeof e.ticket === 'string') {
      const methods = Array.isArray(e.methods) ? e.methods.filter((m): m is string => typeof m === 'string') : ['totp'];
      return { kind: 'mfa', ticket: e.ticket, methods, expiresAt: Date.parse(String(e.expires_at)) };
    }
    throw upstreamError(res);
  }

  /** Passes a /v1 request through as it came (bytes in, bytes out). */
  async forward(method: string, url: string, headers: Readonly<Record<string, string | string[] | undefined>>, body: Buffer | undefined): Promise<{ status: number; headers: Record<string, string>; bytes: Buffer }> {
    const pass: Record<string, string> = {};
    for (const h of FORWARDED_REQUEST_HEADERS) {
      const v = headers[h];
      if (typeof v === 'string' && h !== 'content-type') pass[h] = v;
    }
    const ct = headers['content-type'];
    const res = await this.#request(method, url, {
      headers: pass,
      ...(body === undefined || body.length === 0 ? {} : { raw: body, contentType: typeof ct === 'string' ? ct : 'application/octet-stream' }),
    });
    const out: Record<string, string> = {};
    for (const h of FORWARDED_RESPONSE_HEADERS) {
      const v = res.headers[h];
      if (typeof v === 'string') out[h] = v;
    }
    return { status: res.status, headers: out, bytes: res.bytes };
  }
}
