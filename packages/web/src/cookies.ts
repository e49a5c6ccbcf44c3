/*
 * The session cookie. `__Host-` makes the browser insist on Secure, Path=/ and no Domain, so a
 * sibling host cannot plant or read it; HttpOnly keeps page scripts (and an XSS) away from it;
 * SameSite=Strict keeps it off every cross-site request, which is the first CSRF defence.
 */
export const SESSION_COOKIE = '__Host-pc_session';

/** The value of one cookie in a Cookie header (the first, if a name repeats). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Set-Cookie for the session; no Max-Age: the browser forgets it on exit, the server decides expiry. */
export function sessionCookie(value: string): string {
  if (!/^[A-Za-z0-9_-]{43}$/.test(value)) throw new TypeError('session cookie value expected 43 base64url characters');
  return `${SESSION_COOKIE}=${value}; Path=/; Secure; HttpOnly; SameSite=Strict`;
}

export function clearedSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`;
}
