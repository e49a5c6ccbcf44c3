/* The gateway's API as the app calls it: JSON, the session cookie, and the CSRF header. */

export interface SessionView {
  readonly stage: 'anonymous' | 'mfa' | 'authenticated';
  readonly csrf: string;
  readonly user?: string;
  readonly admin?: boolean;
  readonly mfa?: { readonly methods: readonly string[]; readonly expires_at: string };
  readonly expires_at?: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrf = '';

/** The token of the current session; every login step and logout hands out a new one. */
export function setCsrf(token: string): void {
  csrf = token;
}

export async function api<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') {
    headers['content-type'] = 'application/json';
    headers['x-csrf-token'] = csrf;
  }
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(method === 'GET' ? {} : { body: JSON.stringify(body ?? {}) }),
    ...(signal === undefined ? {} : { signal }),
  });
  const data = (await res.json().catch(() => undefined)) as { error?: { code?: string; message?: string } } | undefined;
  if (!res.ok) throw new ApiError(res.status, data?.error?.code ?? 'ERR_UNAVAILABLE', data?.error?.message ?? `the gateway answered ${res.status}`);
  const view = data as { csrf?: unknown } | undefined;
  if (typeof view?.csrf === 'string') setCsrf(view.csrf);
  return data as T;
}

export function query(params: Readonly<Record<string, string | number | undefined>>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}
