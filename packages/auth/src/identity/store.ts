/**
 * What identity needs from storage, as small interfaces so the decisions can be tested without
 * Redis and the Redis adapter (redis-store.ts) can be checked against one contract. Times are
 * milliseconds since the epoch.
 */

export type UserKind = 'local' | 'sso';
export type UserStatus = 'active' | 'disabled';

/** String or string-list claims from SSO (or traits of a local user); role templates read them. */
export type Claims = Readonly<Record<string, string | readonly string[]>>;

/** One user as stored. Holds secrets (password hash, TOTP secret): never return it over the API as is. */
export interface User {
  readonly name: string;
  readonly kind: UserKind;
  readonly roles: readonly string[];
  readonly status: UserStatus;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly claims: Claims;
  /** Local users with a password set. */
  readonly passwordHash?: string;
  /** SHA-256 (hex) of the one invite link that may still set this user's password. */
  readonly inviteHash?: string;
  /** SSO users: who the identity provider says they are; the username must not move to another subject. */
  readonly sso?: { readonly issuer: string; readonly subject: string };
  /** Active TOTP factor. */
  readonly totp?: { readonly secret: string; readonly enrolledAt: number };
  /** TOTP secret handed out but not yet confirmed by a first valid code. */
  readonly totpPending?: { readonly secret: string; readonly expiresAt: number };
}

/** Fields to set; `null` removes an optional field. */
export interface UserChange {
  readonly roles?: readonly string[];
  readonly status?: UserStatus;
  readonly claims?: Claims;
  readonly passwordHash?: string | null;
  readonly inviteHash?: string | null;
  readonly sso?: { readonly issuer: string; readonly subject: string };
  readonly totp?: null;
  readonly totpPending?: { readonly secret: string; readonly expiresAt: number } | null;
  readonly updatedAt: number;
}

export interface UserStore {
  getUser(name: string): Promise<User | undefined>;
  /** Creates the user; false when the name is taken (nothing written then). */
  createUser(user: User): Promise<boolean>;
  /** Applies the change; false when the user does not exist (nothing written then). */
  updateUser(name: string, change: UserChange): Promise<boolean>;
  deleteUser(name: string): Promise<boolean>;
  listUserNames(): Promise<string[]>;
  /**
   * Sets the password hash and clears the invite in one step, only while `inviteHash` is still
   * the user's current invite: of two concurrent uses of one link, one wins.
   */
  setPasswordFromInvite(name: string, inviteHash: string, passwordHash: string, now: number): Promise<boolean>;
  /**
   * Makes the pending TOTP secret active if it still equals `pendingSecret`, and records
   * `step` as the last accepted time step (so the confirming code cannot be replayed).
   */
  activateTotp(name: string, pendingSecret: string, step: number, now: number): Promise<boolean>;
  /**
   * Records `step` as the last accepted TOTP time step if it is greater than the stored one and
   * the active secret is still `secret`; false otherwise. Atomic: two concurrent uses of one
   * code cannot both succeed.
   */
  acceptTotpStep(name: string, secret: string, step: number): Promise<boolean>;
  /** The last accepted TOTP time step, if any. */
  lastTotpStep(name: string): Promise<number | undefined>;
}

export type InvitePurpose = 'set-password' | 'reset';

export interface Invite {
  readonly user: string;
  readonly purpose: InvitePurpose;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly usedAt?: number;
}

export interface InviteStore {
  /** Stores the invite under the SHA-256 (hex) of its token, kept until `retainUntil`. */
  putInvite(hash: string, invite: Invite, retainUntil: number): Promise<void>;
  getInvite(hash: string): Promise<Invite | undefined>;
  /** Marks the invite used; false when it is gone or already used. */
  markInviteUsed(hash: string, now: number): Promise<boolean>;
}

/** A login started with the identity provider and not yet finished. */
export type PendingOidcLogin =
  | {
      readonly kind: 'code';
      readonly redirectUri: string;
      readonly codeVerifier: string;
      readonly nonce: string;
      readonly createdAt: number;
      readonly expiresAt: number;
      readonly usedAt?: number;
    }
  | {
      readonly kind: 'device';
      readonly deviceCode: string;
      readonly interval: number;
      readonly createdAt: number;
      readonly expiresAt: number;
      readonly usedAt?: number;
    };

export interface OidcStateStore {
  /** Stores a pending login under its state (or device handle), kept until `retainUntil`. */
  putPending(state: string, pending: PendingOidcLogin, retainUntil: number): Promise<void>;
  getPending(state: string): Promise<PendingOidcLogin | undefined>;
  /**
   * Marks the pending login used and forgets its secrets (verifier, nonce, device code); false
   * when it is gone or was used already. Atomic: one of two concurrent finishes wins.
   */
  markPendingUsed(state: string, now: number): Promise<boolean>;
}
