import type { AuthorityClient, TargetHost } from './authority.js';
import { ProxyError, isProxyError } from './errors.js';

/**
 * How a client names its target. Decided from the SSH user name alone, before authentication:
 *
 * - `login%host` (`ssh -p 3022 ubuntu%web01@bastion`): the connection goes to `host` as `login`.
 * - a bare name (`ssh -J alice@bastion:3022 ubuntu@web01`, or pcsh's stdio form, which is
 *   `ssh -W web01:22 alice@bastion`): the connection is a jump hop. Each direct-tcpip channel
 *   names a target, and the proxy terminates the SSH connection that runs inside it. A session
 *   channel on it gets a one-line hint instead of a shell.
 * - anything else is `invalid`: authentication still runs (so the user can be told what is
 *   wrong on the first channel, which a userauth failure cannot carry), but nothing can be
 *   reached.
 */
export type ClientRoute =
  | { readonly kind: 'target'; readonly login: string; readonly host: string }
  | { readonly kind: 'jump'; readonly name: string }
  | { readonly kind: 'invalid'; readonly name: string; readonly problem: string };

// POSIX portable login names (and what useradd accepts): no '%', no blanks, no leading '-'.
const LOGIN_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$/;
// Inventory names and addresses: DNS labels, IPv4, or an IPv6 literal.
const HOST_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}$/;
const NAME_RE = /^[^\s%\u0000-\u001f\u007f]{1,256}$/;

/** The one line a client gets when its user name names no target. */
export function routeHint(port: number | string = 3022): string {
  return (
    `portcullis: name the target as LOGIN%HOST in the user name (ssh -p ${port} ubuntu%web01@bastion), ` +
    `or jump through the proxy (ssh -J alice@bastion:${port} ubuntu@web01)`
  );
}

export function parseClientUsername(username: string): ClientRoute {
  const at = username.indexOf('%');
  if (at === -1) {
    return NAME_RE.test(username)
      ? { kind: 'jump', name: username }
      : { kind: 'invalid', name: username, problem: `user name ${JSON.stringify(username)} is not a valid name` };
  }
  const login = username.slice(0, at);
  const host = username.slice(at + 1);
  if (!LOGIN_RE.test(login)) {
    return { kind: 'invalid', name: username, problem: `${JSON.stringify(login)} before the % is not a valid login name` };
  }
  if (!HOST_RE.test(host)) {
    return { kind: 'invalid', name: username, problem: `${JSON.stringify(host)} after the % is not a valid host name` };
  }
  return { kind: 'target', login, host };
}

/**
 * The route of a connection terminated inside a jump: the target is the one the outer hop
 * named, so the user name is only the login.
 */
export function jumpedRoute(username: string, host: string): ClientRoute {
  return LOGIN_RE.test(username)
    ? { kind: 'target', login: username, host }
    : { kind: 'invalid', name: username, problem: `${JSON.stringify(username)} is not a valid login name` };
}

/**
 * Resolves a host name with auth's inventory. auth's answer is passed on when it is already a
 * refusal the user should read (unknown, ambiguous); anything else means auth is unreachable.
 */
export async function resolveTarget(authority: AuthorityClient, query: string): Promise<TargetHost> {
  try {
    return await authority.resolveHost(query);
  } catch (e) {
    if (isProxyError(e, 'ERR_HOST_NOT_FOUND') || isProxyError(e, 'ERR_HOST_AMBIGUOUS') || isProxyError(e, 'ERR_ACCESS_DENIED')) throw e;
    throw new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: cannot resolve host ${JSON.stringify(query)}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The message for an ambiguous name, for AuthorityClient implementations (candidates sorted, at most 10 shown). */
export function ambiguousHostError(query: string, candidates: readonly string[]): ProxyError {
  const sorted = [...candidates].sort();
  const shown = sorted.slice(0, 10).join(', ') + (sorted.length > 10 ? `, ... ${sorted.length - 10} more` : '');
  return new ProxyError('ERR_HOST_AMBIGUOUS', `host ${JSON.stringify(query)} is ambiguous: it matches ${shown}; use the full name`);
}

export function unknownHostError(query: string): ProxyError {
  return new ProxyError('ERR_HOST_NOT_FOUND', `host ${JSON.stringify(query)} is not registered with portcullis`);
}
