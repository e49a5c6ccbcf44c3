import { randomBytes } from 'node:crypto';
import { AuthError } from '../errors.js';
import { secretDigest } from '../store/keys.js';
import type { SsoIdentity } from './claims.js';
import { DEFAULT_SCRYPT_PARAMS, hashPassword, needsRehash, verifyPassword, type ScryptParams } from './password.js';
import type { Claims, Invite, InvitePurpose, InviteStore, User, UserKind, UserStatus, UserStore } from './store.js';

// ---------------------------------------------------------------------------------------------
// Pure decisions: no I/O, time passed in.

/**
 * Lower-case, because `Alice` and `alice` must not be two accounts that certificates and audit
 * lines tell apart only by case. The character set keeps names safe inside Redis keys, key ids
 * and log lines, and admits e-mail addresses as SSO usernames.
 */
export function normalizeUsername(name: string): string {
  const n = typeof name === 'string' ? name.trim().toLowerCase() : '';
  if (!/^[a-z0-9][a-z0-9._@+-]{0,127}$/.test(n)) {
    throw new AuthError(
      'ERR_BAD_REQUEST',
      `user name ${JSON.stringify(String(name).slice(0, 140))} is not valid: expected letters, digits and . _ @ + - (max 128), starting with a letter or digit`,
    );
  }
  return n;
}

const ROLE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
export function checkRoleNames(roles: readonly string[]): readonly string[] {
  for (const r of roles) {
    if (typeof r !== 'string' || !ROLE_NAME.test(r)) {
      throw new AuthError('ERR_BAD_REQUEST', `role name ${JSON.stringify(r)} is not valid: expected lowercase letters, digits, _ . - (max 63)`);
    }
  }
  return [...new Set(roles)].sort();
}

export interface PasswordPolicy {
  /** Minimum length in characters (code points). */
  readonly minLength: number;
}
export const DEFAULT_PASSWORD_POLICY: PasswordPolicy = { minLength: 12 };
// Far above any real passphrase; stops a megabyte "password" from being hashed on request.
const MAX_PASSWORD_LENGTH = 1024;

/** Throws ERR_BAD_REQUEST saying what is wrong with a new password; says nothing of the password itself. */
export function checkPasswordPolicy(password: string, username: string, policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY): void {
  if (typeof password !== 'string') throw new AuthError('ERR_BAD_REQUEST', 'password expected a string');
  const length = [...password].length;
  if (length < policy.minLength) {
    throw new AuthError('ERR_BAD_REQUEST', `password too short: expected at least ${policy.minLength} characters, got ${length}`);
  }
  if (length > MAX_PASSWORD_LENGTH) {
    throw new AuthError('ERR_BAD_REQUEST', `password too long: expected at most ${MAX_PASSWORD_LENGTH} characters, got ${length}`);
  }
  if (password.trim().toLowerCase() === username.toLowerCase()) {
    throw new AuthError('ERR_BAD_REQUEST', 'password must not be the user name');
  }
}

/** What an admin or the API may see of a user: no password hash, no TOTP secret. */
export interface UserSummary {
  readonly name: string;
  readonly kind: UserKind;
  readonly roles: readonly string[];
  readonly status: UserStatus;
  readonly createdAt: number;
  readonly hasPassword: boolean;
  readonly mfa: readonly 'totp'[];
  readonly sso?: { readonly issuer: string; readonly subject: string };
}

export function summarizeUser(u: User): UserSummary {
  return {
    name: u.name,
    kind: u.kind,
    roles: u.roles,
    status: u.status,
    createdAt: u.createdAt,
    hasPassword: u.passwordHash !== undefined,
    mfa: u.totp ? ['totp'] : [],
    ...(u.sso && { sso: u.sso }),
  };
}

export const INVITE_TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/**
 * May this invite set this user's password now? Throws the refusal. The lookup is by the
 * token's SHA-256, so no stored secret is ever compared with attacker input byte by byte.
 */
export function checkInviteUse(invite: Invite | undefined, user: User | undefined, hash: string, now: number): asserts invite is Invite {
  if (!invite) throw new AuthError('ERR_UNAUTHENTICATED', 'unknown invite: never issued, or expired long ago');
  if (invite.usedAt !== undefined) {
    throw new AuthError('ERR_CONFLICT', `invite already used at ${new Date(invite.usedAt).toISOString()}`);
  }
  if (now >= invite.expiresAt) {
    throw new AuthError('ERR_EXPIRED', `invite expired at ${new Date(invite.expiresAt).toISOString()}`);
  }
  if (!user) throw new AuthError('ERR_NOT_FOUND', `user ${invite.user} no longer exists`);
  if (user.kind !== 'local') throw new AuthError('ERR_CONFLICT', `user ${user.name} signs in with SSO and has no password`);
  if (user.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${user.name} is disabled`);
  if (user.inviteHash !== hash) throw new AuthError('ERR_CONFLICT', `invite replaced by a newer invite for ${user.name}`);
}

export type SsoLoginDecision = { readonly action: 'create'; readonly user: User } | { readonly action: 'update'; readonly user: User };

/**
 * What an SSO login does to the user table. A username is bound to the (issuer, subject) that
 * first used it: when the username claim later names someone else (a recycled e-mail, a renamed
 * account), or names a local user, the login is refused instead of handing over the account.
 */
export function decideSsoLogin(existing: User | undefined, id: SsoIdentity, now: number): SsoLoginDecision {
  if (!existing) {
    return {
      action: 'create',
      user: {
        name: id.username,
        kind: 'sso',
        roles: id.roles,
        status: 'active',
        claims: id.claims,
        sso: { issuer: id.issuer, subject: id.subject },
        createdAt: now,
        updatedAt: now,
      },
    };
  }
  if (existing.kind !== 'sso') {
    throw new AuthError('ERR_CONFLICT', `user ${existing.name} is a local user; an SSO login cannot take it over`);
  }
  if (existing.sso?.issuer !== id.issuer || existing.sso.subject !== id.subject) {
    throw new AuthError('ERR_CONFLICT', `user ${existing.name} belongs to another SSO subject; refusing subject ${id.subject}`, {
      user: existing.name,
    });
  }
  if (existing.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${existing.name} is disabled`);
  return { action: 'update', user: { ...existing, roles: id.roles, claims: id.claims, updatedAt: now } };
}

// ---------------------------------------------------------------------------------------------
// The shell: the decisions above applied to a store.

export interface UserDirectoryOptions {
  readonly users: UserStore;
  readonly invites: InviteStore;
  readonly scrypt?: ScryptParams;
  readonly passwordPolicy?: PasswordPolicy;
  /** How long an invite or reset link works (default 24 hours). */
  readonly inviteTtlMs?: number;
  readonly now?: () => number;
  /** 32 random bytes, base64url; injectable for tests. */
  readonly randomToken?: () => string;
}

export interface IssuedInvite {
  /** The secret to put in the link; only its SHA-256 is stored. */
  readonly token: string;
  readonly user: string;
  readonly purpose: InvitePurpose;
  readonly expiresAt: number;
}

// A used or expired invite is kept this long after its expiry so a second click says "already
// used" or "expired" instead of "unknown".
const INVITE_RETENTION_MS = 24 * 3600_000;

export class UserDirectory {
  readonly #users: UserStore;
  readonly #invites: InviteStore;
  readonly #scrypt: ScryptParams;
  readonly #policy: PasswordPolicy;
  readonly #inviteTtlMs: number;
  readonly #now: () => number;
  readonly #randomToken: () => string;
  #dummyHash: Promise<string> | undefined;

  constructor(opts: UserDirectoryOptions) {
    this.#users = opts.users;
    this.#invites = opts.invites;
    this.#scrypt = opts.scrypt ?? DEFAULT_SCRYPT_PARAMS;
    this.#policy = opts.passwordPolicy ?? DEFAULT_PASSWORD_POLICY;
    this.#inviteTtlMs = opts.inviteTtlMs ?? 24 * 3600_000;
    this.#now = opts.now ?? Date.now;
    this.#randomToken = opts.randomToken ?? (() => randomBytes(32).toString('base64url'));
  }

  async getUser(name: string): Promise<User | undefined> {
    return this.#users.getUser(normalizeUsername(name));
  }

  async listUsers(): Promise<UserSummary[]> {
    const names = await this.#users.listUserNames();
    const users = await Promise.all(names.map((n) => this.#users.getUser(n)));
    return users.filter((u): u is User => u !== undefined).map(summarizeUser);
  }

  async createLocalUser(name: string, roles: readonly string[], claims: Claims = {}): Promise<UserSummary> {
    const now = this.#now();
    const user: User = {
      name: normalizeUsername(name),
      kind: 'local',
      roles: checkRoleNames(roles),
      status: 'active',
      claims,
      createdAt: now,
      updatedAt: now,
    };
    if (!(await this.#users.createUser(user))) throw new AuthError('ERR_CONFLICT', `user ${user.name} already exists`);
    return summarizeUser(user);
  }

  async setRoles(name: string, roles: readonly string[]): Promise<void> {
    await this.#update(name, { roles: checkRoleNames(roles), updatedAt: this.#now() });
  }

  async setStatus(name: string, status: UserStatus): Promise<void> {
    if (status !== 'active' && status !== 'disabled') throw new AuthError('ERR_BAD_REQUEST', `status expected active or disabled, got ${String(status)}`);
    await this.#update(name, { status, updatedAt: this.#now() });
  }

  async deleteUser(name: string): Promise<void> {
    if (!(await this.#users.deleteUser(normalizeUsername(name)))) throw new AuthError('ERR_NOT_FOUND', `user ${name} does not exist`);
  }

  /** A link that lets a local user set their password once, before it expires. */
  async createInvite(name: string, purpose: InvitePurpose = 'set-password'): Promise<IssuedInvite> {
    const user = await this.#requireUser(name);
    if (user.kind !== 'local') throw new AuthError('ERR_CONFLICT', `user ${user.name} signs in with SSO and has no password`);
    const now = this.#now();
    const token = this.#randomToken();
    if (!INVITE_TOKEN_RE.test(token)) throw new TypeError('randomToken must return 43 base64url characters');
    const hash = secretDigest(token);
    const invite: Invite = { user: user.name, purpose, createdAt: now, expiresAt: now + this.#inviteTtlMs };
    await this.#invites.putInvite(hash, invite, invite.expiresAt + INVITE_RETENTION_MS);
    // Only the newest link works: pointing the user at this hash disowns every earlier one.
    await this.#update(user.name, { inviteHash: hash, updatedAt: now });
    return { token, user: user.name, purpose, expiresAt: invite.expiresAt };
  }

  /** Removes the current password at once and returns a link to set a new one. */
  async resetPassword(name: string): Promise<IssuedInvite> {
    const user = await this.#requireUser(name);
    if (user.kind !== 'local') throw new AuthError('ERR_CONFLICT', `user ${user.name} signs in with SSO and has no password`);
    await this.#update(user.name, { passwordHash: null, updatedAt: this.#now() });
    return this.createInvite(user.name, 'reset');
  }

  /**
   * Sets the password from an invite link. Every refusal happens before anything is written;
   * the single write is conditional on the invite still being the user's current one.
   */
  async acceptInvite(token: string, password: string): Promise<UserSummary> {
    if (typeof token !== 'string' || !INVITE_TOKEN_RE.test(token)) {
      throw new AuthError('ERR_UNAUTHENTICATED', 'malformed invite token: expected 43 base64url characters');
    }
    const hash = secretDigest(token);
    const invite = await this.#invites.getInvite(hash);
    const user = invite ? await this.#users.getUser(invite.user) : undefined;
    checkInviteUse(invite, user, hash, this.#now());
    checkPasswordPolicy(password, invite.user, this.#policy);
    const passwordHash = await hashPassword(password, this.#scrypt);
    const now = this.#now();
    if (!(await this.#users.setPasswordFromInvite(invite.user, hash, passwordHash, now))) {
      throw new AuthError('ERR_CONFLICT', 'invite already used or replaced');
    }
    await this.#invites.markInviteUsed(hash, now);
    return summarizeUser({ ...user!, passwordHash, updatedAt: now });
  }

  /**
   * Checks a local user's password. Unknown users, SSO users and users without a password cost
   * the same scrypt work and get the same message, so the answer does not reveal which names exist.
   */
  async authenticateLocal(name: string, password: string): Promise<User> {
    const refuse = (): AuthError => new AuthError('ERR_UNAUTHENTICATED', 'invalid user name or password');
    let normalized: string | undefined;
    try {
      normalized = normalizeUsername(name);
    } catch {
      normalized = undefined;
    }
    const user = normalized === undefined ? undefined : await this.#users.getUser(normalized);
    if (typeof password !== 'string' || password.length > MAX_PASSWORD_LENGTH * 4) throw refuse();
    if (!user || user.kind !== 'local' || user.passwordHash === undefined) {
      this.#dummyHash ??= hashPassword('portcullis-timing-equalizer', this.#scrypt);
      await verifyPassword(password, await this.#dummyHash);
      throw refuse();
    }
    if (!(await verifyPassword(password, user.passwordHash))) throw refuse();
    if (user.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${user.name} is disabled`);
    if (needsRehash(user.passwordHash, this.#scrypt)) {
      // Raising the cost in the config upgrades each stored hash at its owner's next login.
      const passwordHash = await hashPassword(password, this.#scrypt);
      await this.#users.updateUser(user.name, { passwordHash, updatedAt: this.#now() });
      return { ...user, passwordHash };
    }
    return user;
  }

  /** Creates or refreshes the user behind an SSO login (roles and claims follow the identity provider). */
  async recordSsoLogin(identity: SsoIdentity): Promise<User> {
    const name = normalizeUsername(identity.username);
    const existing = await this.#users.getUser(name);
    const decision = decideSsoLogin(existing, { ...identity, username: name }, this.#now());
    if (decision.action === 'create') {
      if (!(await this.#users.createUser(decision.user))) {
        throw new AuthError('ERR_CONFLICT', `user ${name} was created concurrently; try again`);
      }
    } else {
      const u = decision.user;
      await this.#update(name, { roles: u.roles, claims: u.claims, updatedAt: u.updatedAt });
    }
    return decision.user;
  }

  async #requireUser(name: string): Promise<User> {
    const n = normalizeUsername(name);
    const user = await this.#users.getUser(n);
    if (!user) throw new AuthError('ERR_NOT_FOUND', `user ${n} does not exist`);
    return user;
  }

  async #update(name: string, change: Parameters<UserStore['updateUser']>[1]): Promise<void> {
    const n = normalizeUsername(name);
    if (!(await this.#users.updateUser(n, change))) throw new AuthError('ERR_NOT_FOUND', `user ${n} does not exist`);
  }
}
