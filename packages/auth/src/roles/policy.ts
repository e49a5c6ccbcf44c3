import { matchPattern } from '@portcullis/cert-core';
import type { LabelSelector, Role } from './schema.js';

/** Who someone is, as far as role templates care. */
export interface Identity {
  readonly username: string;
  /** Claims from SSO (or traits of a local user); arrays expand into several logins. */
  readonly claims: Readonly<Record<string, string | readonly string[]>>;
}

/** Everything several roles allow, combined once (Teleport's rules: deny first). */
export interface AccessPolicy {
  readonly roles: readonly string[];
  /** OS logins allowed, templates expanded, denied ones removed, sorted. Never empty when usable. */
  readonly logins: readonly string[];
  readonly allowHosts: readonly LabelSelector[];
  readonly denyHosts: readonly LabelSelector[];
  /** Seconds; the shortest of the roles. */
  readonly maxCertTtl: number;
  readonly loginSessionTtl: number;
  readonly idleTimeout: number;
  /** Any role asking for it turns it on. */
  readonly requireSessionMfa: boolean;
  readonly pinSourceIp: boolean;
  readonly recordInput: boolean;
  /** strict when any role says strict. */
  readonly recordSession: 'strict' | 'best-effort';
  /** Forwarding is allowed when any role allows it (Teleport ORs these). */
  readonly portForwarding: boolean;
  readonly agentForwarding: boolean;
  readonly x11Forwarding: boolean;
}

// POSIX-portable user names, plus the `$` some systems allow at the end; nothing that could be
// read as a list or a pattern (no comma, space, `*`).
const LOGIN_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$/;

export function isValidLogin(s: string): boolean {
  return LOGIN_RE.test(s);
}

function expandLogin(template: string, identity: Identity): string[] {
  const m = /^\{\{(user\.name|claims\.([A-Za-z0-9_]+))\}\}$/.exec(template);
  if (!m) return [template];
  if (m[1] === 'user.name') return [identity.username];
  const v = identity.claims[m[2]!];
  return v === undefined ? [] : typeof v === 'string' ? [v] : [...v];
}

function expandLogins(templates: readonly string[], identity: Identity): Set<string> {
  const out = new Set<string>();
  for (const t of templates) for (const l of expandLogin(t, identity)) if (isValidLogin(l)) out.add(l);
  return out;
}

export function combineRoles(roles: readonly Role[], identity: Identity): AccessPolicy {
  const allowed = new Set<string>();
  const denied = new Set<string>();
  for (const r of roles) {
    for (const l of expandLogins(r.spec.allow.logins, identity)) allowed.add(l);
    for (const l of expandLogins(r.spec.deny.logins, identity)) denied.add(l);
  }
  const opts = roles.map((r) => r.spec.options);
  const min = (f: (o: Role['spec']['options']) => number) => (opts.length ? Math.min(...opts.map(f)) : 0);
  const any = (f: (o: Role['spec']['options']) => boolean) => opts.some(f);
  return {
    roles: roles.map((r) => r.name).sort(),
    logins: [...allowed].filter((l) => !denied.has(l)).sort(),
    allowHosts: roles.map((r) => r.spec.allow.host_labels).filter((s) => Object.keys(s).length > 0),
    denyHosts: roles.map((r) => r.spec.deny.host_labels).filter((s) => Object.keys(s).length > 0),
    maxCertTtl: min((o) => o.max_cert_ttl),
    loginSessionTtl: min((o) => o.login_session_ttl),
    idleTimeout: min((o) => o.idle_timeout),
    requireSessionMfa: any((o) => o.require_session_mfa),
    pinSourceIp: any((o) => o.pin_source_ip),
    recordInput: any((o) => o.record_input),
    recordSession: any((o) => o.record_session === 'strict') ? 'strict' : 'best-effort',
    portForwarding: any((o) => o.port_forwarding),
    agentForwarding: any((o) => o.agent_forwarding),
    x11Forwarding: any((o) => o.x11_forwarding),
  };
}

function valueMatches(value: string | undefined, want: string | readonly string[]): boolean {
  const wants = typeof want === 'string' ? [want] : want;
  if (value === undefined) return false;
  return wants.some((w) => w === '*' || matchPattern(value, w));
}

/** Every label of the selector matches (AND); `'*': '*'` matches every host. */
export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  const entries = Object.entries(selector);
  if (entries.length === 0) return false;
  return entries.every(([k, want]) => {
    if (k === '*') return valueMatches('*', want) || Object.values(labels).some((v) => valueMatches(v, want));
    return valueMatches(labels[k], want);
  });
}

/** A host is reachable when some role allows its labels and none denies them. */
export function canReachHost(policy: AccessPolicy, labels: Readonly<Record<string, string>>): boolean {
  if (policy.denyHosts.some((s) => selectorMatches(s, labels))) return false;
  return policy.allowHosts.some((s) => selectorMatches(s, labels));
}

export function canLogin(policy: AccessPolicy, login: string, labels: Readonly<Record<string, string>>): boolean {
  return policy.logins.includes(login) && canReachHost(policy, labels);
}
