import { AuthError } from '../errors.js';
import type { Claims } from './store.js';

/** Who an SSO login proved to be, with the Portcullis roles the claims map to. */
export interface SsoIdentity {
  readonly issuer: string;
  readonly subject: string;
  readonly username: string;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  /** String and string-list claims, for role templates such as `{{claims.unix_login}}`. */
  readonly claims: Claims;
}

/** One mapping rule: a user whose `claim` holds `value` (or a list containing it) gets `roles`. */
export interface RoleMappingRule {
  /** Default: the groups claim. */
  readonly claim?: string;
  readonly value: string;
  readonly roles: readonly string[];
}

export interface ClaimMapping {
  /** Claim that becomes the Portcullis user name, e.g. `preferred_username` or `email`. */
  readonly usernameClaim: string;
  /** Claim that lists the user's groups, e.g. `groups`. */
  readonly groupsClaim: string;
  readonly roleMapping: readonly RoleMappingRule[];
}

// Protocol claims say nothing about the person and must not feed role templates.
const PROTOCOL_CLAIMS = new Set(['iss', 'aud', 'azp', 'nonce', 'at_hash', 'c_hash', 's_hash', 'sid', 'jti', 'acr', 'amr']);

function stringList(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

/** The roles the claims map to, sorted and without duplicates. */
export function mapRoles(claims: Readonly<Record<string, unknown>>, mapping: Pick<ClaimMapping, 'groupsClaim' | 'roleMapping'>): string[] {
  const roles = new Set<string>();
  for (const rule of mapping.roleMapping) {
    if (stringList(claims[rule.claim ?? mapping.groupsClaim]).includes(rule.value)) {
      for (const r of rule.roles) roles.add(r);
    }
  }
  return [...roles].sort();
}

/**
 * Turns validated claims (ID token, completed by userinfo) into an identity, or refuses: no
 * subject or username claim is an authentication failure; no mapped role is a refusal that
 * names what was seen, so an operator can fix the mapping.
 */
export function identityFromClaims(issuer: string, claims: Readonly<Record<string, unknown>>, mapping: ClaimMapping): SsoIdentity {
  const subject = claims['sub'];
  if (typeof subject !== 'string' || subject === '') {
    throw new AuthError('ERR_UNAUTHENTICATED', 'identity provider returned no subject (sub claim)');
  }
  const username = claims[mapping.usernameClaim];
  if (typeof username !== 'string' || username === '') {
    throw new AuthError('ERR_UNAUTHENTICATED', `identity provider returned no ${mapping.usernameClaim} claim for subject ${subject}`, {
      subject,
    });
  }
  const groups = stringList(claims[mapping.groupsClaim]);
  const roles = mapRoles(claims, mapping);
  if (roles.length === 0) {
    const seen = groups.length > 0 ? groups.join(', ') : '(none)';
    throw new AuthError(
      'ERR_FORBIDDEN',
      `no Portcullis role for ${username}: ${mapping.groupsClaim} ${seen} match no rule of the role mapping`,
      { user: username, subject },
    );
  }
  const kept: Record<string, string | readonly string[]> = {};
  for (const [k, v] of Object.entries(claims)) {
    if (PROTOCOL_CLAIMS.has(k)) continue;
    if (typeof v === 'string') kept[k] = v;
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) kept[k] = v as string[];
  }
  return { issuer, subject, username, groups, roles, claims: kept };
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]']);

/** Loopback by address, not by name: `localhost` can be re-pointed by a hosts file or resolver. */
export function isLoopbackUrl(url: URL): boolean {
  return LOOPBACK_HOSTS.has(url.hostname);
}

export interface RedirectPolicy {
  /** Exact URIs allowed, e.g. the web app's callback. */
  readonly redirectUris: readonly string[];
  /**
   * Path allowed on loopback redirects (RFC 8252 section 7.3: any port on 127.0.0.1 or [::1],
   * because a CLI picks a free one). Undefined: loopback redirects refused.
   */
  readonly loopbackPath: string | undefined;
}

/** Returns the redirect URI in canonical form, or refuses it with the reason. */
export function checkRedirectUri(uri: string, policy: RedirectPolicy): string {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new AuthError('ERR_BAD_REQUEST', `redirect URI ${JSON.stringify(uri)} is not a URL`);
  }
  if (u.hash !== '' || u.username !== '' || u.password !== '') {
    throw new AuthError('ERR_BAD_REQUEST', `redirect URI ${JSON.stringify(uri)} must not carry a fragment or credentials`);
  }
  if (policy.redirectUris.includes(uri)) return uri;
  if (policy.loopbackPath !== undefined && u.protocol === 'http:' && isLoopbackUrl(u)) {
    if (u.port === '' || u.pathname !== policy.loopbackPath || u.search !== '') {
      throw new AuthError(
        'ERR_BAD_REQUEST',
        `loopback redirect URI ${JSON.stringify(uri)} must be http://127.0.0.1:PORT${policy.loopbackPath} (explicit port, no query)`,
      );
    }
    return u.href;
  }
  throw new AuthError('ERR_BAD_REQUEST', `redirect URI ${JSON.stringify(uri)} is not allowed: not configured and not a loopback URI`);
}
