import { AuthError } from '../errors.js';
import type { User } from '../identity/store.js';
import { combineRoles } from '../roles/policy.js';
import type { AccessPolicy } from '../roles/policy.js';
import { parseRole } from '../roles/schema.js';
import type { Role } from '../roles/schema.js';
import { rolesKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { findLock, listLocks, lockedError, lockedLogins } from '../revocation/locks.js';
import type { Lock } from '../revocation/locks.js';
import { refusal } from './issue.js';

/** Where role definitions come from (Redis `pc:{roles}:all`, or the config in tests). */
export interface RoleSource {
  /** The roles with these names that exist; unknown names are left out. */
  getRoles(names: readonly string[]): Promise<Role[]>;
}

/** Roles stored in `pc:{roles}:all` (name -> validated JSON). An entry that no longer validates is left out. */
export function redisRoleSource(redis: RedisClient): RoleSource {
  return {
    async getRoles(names) {
      if (names.length === 0) return [];
      const values = await redis.hmget(rolesKey(), ...names);
      const out: Role[] = [];
      for (const v of values) {
        if (v === null) continue;
        try {
          out.push(parseRole(JSON.parse(v)));
        } catch {
          // A role that no longer validates grants nothing (the admin API refuses to store one).
        }
      }
      return out;
    },
  };
}

/** Fixed roles, e.g. from the config file. */
export function staticRoleSource(roles: readonly Role[]): RoleSource {
  return { getRoles: async (names) => roles.filter((r) => names.includes(r.name)) };
}

export interface AccessDeps {
  readonly redis: RedisClient;
  readonly users: { getUser(name: string): Promise<User | undefined> };
  readonly roles: RoleSource;
}

/** A user's access right now: their record, combined policy (minus locked logins) and the locks in force. */
export interface Access {
  readonly user: User;
  readonly policy: AccessPolicy;
  readonly locks: readonly Lock[];
}

/**
 * Re-reads everything that may have changed since login: the user exists and is active, their
 * roles (still defined) combine to a policy, no lock covers the user or one of their roles, and
 * locked logins are taken out of the policy. Throws the AuthError to refuse with.
 */
export async function resolveAccess(deps: AccessDeps, userName: string, nowMs: number, host?: string): Promise<Access> {
  let user: User | undefined;
  let roles: Role[];
  let locks: Lock[];
  try {
    user = await deps.users.getUser(userName);
    if (user === undefined) throw refusal('ERR_FORBIDDEN', 'unknown_user', `user ${JSON.stringify(userName)} no longer exists`);
    if (user.status !== 'active') throw refusal('ERR_FORBIDDEN', 'user_disabled', `user ${JSON.stringify(userName)} is disabled`);
    [roles, locks] = await Promise.all([deps.roles.getRoles(user.roles), listLocks(deps.redis, nowMs)]);
  } catch (e) {
    if (e instanceof AuthError) throw e;
    throw refusal('ERR_UNAVAILABLE', 'unavailable', `cannot read user ${JSON.stringify(userName)}: ${(e as Error).message}`);
  }
  const lock = findLock(locks, { user: user.name, roles: user.roles, ...(host === undefined ? {} : { host }) }, nowMs);
  if (lock !== undefined) throw lockedError(lock);
  if (roles.length === 0) {
    const missing = user.roles.length === 0 ? 'has no roles' : `has only roles that no longer exist (${user.roles.join(', ')})`;
    throw refusal('ERR_FORBIDDEN', 'no_roles', `user ${JSON.stringify(userName)} ${missing}`);
  }
  const policy = combineRoles(roles, { username: user.name, claims: user.claims });
  const locked = lockedLogins(locks, policy.logins, nowMs);
  if (locked.size > 0 && locked.size === policy.logins.length) {
    throw lockedError(locks.find((l) => l.target.kind === 'login' && locked.has(l.target.name))!);
  }
  return { user, policy: locked.size === 0 ? policy : { ...policy, logins: policy.logins.filter((l) => !locked.has(l)) }, locks };
}
