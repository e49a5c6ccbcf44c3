import { timingSafeEqual } from 'node:crypto';

/*
 * Cross-site request forgery, decided here and nowhere else. Two independent checks must both
 * pass for a state-changing request:
 *  1. Origin: the browser's own statement of which page sent the request must be one of the
 *     gateway's origins (falling back to Sec-Fetch-Site: same-origin; neither header: refused,
 *     as every browser that can run the app sends one of them on a POST).
 *  2. A synchronizer token: the session's random CSRF token in the X-CSRF-Token header. A page
 *     on another site can make the browser send a request, but cannot read the token (it comes
 *     from a same-origin JSON response) nor set a custom header without a CORS preflight.
 * SameSite=Strict on the cookie is a third layer. GET and HEAD change nothing and are exempt.
 */

export const CSRF_HEADER = 'x-csrf-token';

export type CsrfVerdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isSafeMethod(method: string): boolean {
  return SAFE.has(method.toUpperCase());
}

export interface CsrfInput {
  readonly method: string;
  readonly origin: string | undefined;
  readonly secFetchSite: string | undefined;
  readonly token: string | undefined;
  /** The session's token; undefined when the request carries no session. */
  readonly expectedToken: string | undefined;
}

/** Is this request from a page of one of `origins`? (Also what WebSocket upgrades are held to.) */
export function originAllowed(origin: string | undefined, origins: readonly string[]): boolean {
  return origin !== undefined && origins.includes(origin);
}

export function checkCsrf(input: CsrfInput, origins: readonly string[]): CsrfVerdict {
  if (isSafeMethod(input.method)) return { ok: true };
  if (input.origin !== undefined && input.origin !== 'null') {
    if (!originAllowed(input.origin, origins)) return { ok: false, reason: `origin ${input.origin.slice(0, 200)} is not this gateway's` };
  } else if (input.secFetchSite !== 'same-origin') {
    return { ok: false, reason: 'the request says neither its Origin nor Sec-Fetch-Site: same-origin' };
  }
  if (input.expectedToken === undefined) return { ok: false, reason: 'no session: GET /web/api/session first' };
  if (input.token === undefined) return { ok: false, reason: `the ${CSRF_HEADER} header is missing` };
  const a = Buffer.from(input.token);
  const b = Buffer.from(input.expectedToken);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return { ok: false, reason: `the ${CSRF_HEADER} header does not match the session` };
  return { ok: true };
}
