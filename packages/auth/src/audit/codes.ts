/*
 * Stable audit event codes. A code is `PC` + four digits + a severity letter (I info, W warning:
 * a refusal or something security-relevant that went wrong for the requester, E error: the
 * service itself failed). The thousands digit is the area. Codes and names are a public
 * contract with SIEM rules and dashboards: add new rows, never renumber or reuse one.
 *
 *   1xxx identity, login, MFA     2xxx certificates, CA, revocation   3xxx hosts, join tokens
 *   4xxx locks                    5xxx SSH sessions (proxy)           6xxx admin actions, roles
 *   9xxx the service itself
 */

export interface AuditEventSpec {
  readonly code: `PC${number}${AuditSeverityLetter}`;
  readonly description: string;
}

export type AuditSeverityLetter = 'I' | 'W' | 'E';
export type AuditSeverity = 'info' | 'warning' | 'error';

export const AUDIT_EVENTS = {
  'user.login': { code: 'PC1000I', description: 'A user logged in (SSO or password, and MFA when required) and got a login session.' },
  'user.login_failed': { code: 'PC1001W', description: 'A login attempt failed: bad password, OIDC error, expired state, unknown user.' },
  'user.logout': { code: 'PC1002I', description: 'A user ended their own login session.' },
  'user.created': { code: 'PC1003I', description: 'A local or SSO user record was created.' },
  'user.updated': { code: 'PC1004I', description: "A user's roles or status changed." },
  'user.deleted': { code: 'PC1005I', description: 'A user record was deleted.' },
  'user.invite_created': { code: 'PC1006I', description: 'An invite link to set a password was made.' },
  'user.password_set': { code: 'PC1007I', description: 'A local user set or changed their password.' },
  'mfa.enrolled': { code: 'PC1010I', description: 'A second factor (TOTP, WebAuthn) was enrolled.' },
  'mfa.failed': { code: 'PC1011W', description: 'A second factor was wrong, replayed or missing.' },
  'mfa.removed': { code: 'PC1012I', description: 'A second factor was removed.' },
  'login_session.revoked': { code: 'PC1020I', description: 'A login session was revoked (by an admin, a lock or offboarding).' },
  'rate_limit.exceeded': { code: 'PC1030W', description: 'Login or TOTP attempts for a user or address went over the limit.' },

  'cert.issued': { code: 'PC2000I', description: 'A user or host certificate was signed (principals, serial, key id, validity, key fingerprint, requester).' },
  'cert.refused': { code: 'PC2001W', description: 'A certificate request was refused; the reason field says why.' },
  'cert.revoked': { code: 'PC2002I', description: 'Certificates were revoked by serial, key id, user or key.' },
  'cert.breakglass_issued': { code: 'PC2003W', description: 'An emergency long-lived certificate was issued offline from the CLI.' },
  'krl.updated': { code: 'PC2004I', description: 'The KRL was rebuilt with a new version.' },
  'ca.created': { code: 'PC2010I', description: 'A CA key pair was generated.' },
  'ca.trust_changed': { code: 'PC2011I', description: 'The set of trusted CA keys for a kind changed (rotation staged or completed).' },
  'ca.trust_mismatch': { code: 'PC2012E', description: "A replica's CA directory disagrees with the CA other replicas use (recorded in Redis); it refused to start." },

  'host.enrolled': { code: 'PC3000I', description: 'A host enrolled with a join token and got host certificates.' },
  'host.enroll_failed': { code: 'PC3001W', description: 'A host enrollment was refused.' },
  'host.renewed': { code: 'PC3002I', description: 'A host renewed its certificate with a signature by its host key.' },
  'host.removed': { code: 'PC3003I', description: 'A host was removed from the inventory.' },
  'token.created': { code: 'PC3010I', description: 'A join token (host or proxy) was created.' },
  'token.used': { code: 'PC3011I', description: 'A join token was consumed.' },
  'token.refused': { code: 'PC3012W', description: 'A join token was unknown, expired, of the wrong type or already used.' },
  'token.deleted': { code: 'PC3013I', description: 'A join token was deleted before use.' },

  'lock.created': { code: 'PC4000I', description: 'A lock on a user, role, login, host or revoked login session was created.' },
  'lock.removed': { code: 'PC4001I', description: 'A lock was removed.' },

  'session.start': { code: 'PC5000I', description: 'An SSH session channel to a target began.' },
  'session.end': { code: 'PC5001I', description: 'An SSH session channel ended.' },
  'session.refused': { code: 'PC5002W', description: 'The proxy refused a connection or channel.' },
  'session.terminated': { code: 'PC5003W', description: 'A live session was ended by a lock, a revocation or an admin.' },
  'session.breakglass_used': { code: 'PC5004W', description: 'An emergency certificate was used to log in.' },

  'admin.action': { code: 'PC6000I', description: 'An admin changed configuration or state not covered by a more specific event.' },
  'role.created': { code: 'PC6001I', description: 'A role was created.' },
  'role.updated': { code: 'PC6002I', description: 'A role was changed.' },
  'role.deleted': { code: 'PC6003I', description: 'A role was deleted.' },

  'service.started': { code: 'PC9000I', description: 'The auth service started.' },
  'service.stopped': { code: 'PC9001I', description: 'The auth service stopped.' },
  'store.unavailable': { code: 'PC9002E', description: 'Redis could not be reached; requests needing it fail.' },
  'store.restarted': { code: 'PC9003W', description: 'The embedded redis-server died and was restarted.' },
} as const satisfies Record<string, AuditEventSpec>;

export type AuditEventName = keyof typeof AUDIT_EVENTS;
export type AuditCode = (typeof AUDIT_EVENTS)[AuditEventName]['code'];

const NAME_BY_CODE: ReadonlyMap<string, AuditEventName> = new Map(
  (Object.keys(AUDIT_EVENTS) as AuditEventName[]).map((name) => [AUDIT_EVENTS[name].code, name]),
);

export function isAuditEventName(name: string): name is AuditEventName {
  return Object.hasOwn(AUDIT_EVENTS, name);
}

/** The event name for a code, or undefined for a code this version does not know. */
export function auditEventName(code: string): AuditEventName | undefined {
  return NAME_BY_CODE.get(code);
}

export function auditSeverity(code: string): AuditSeverity {
  const letter = code.slice(-1);
  return letter === 'E' ? 'error' : letter === 'W' ? 'warning' : 'info';
}
