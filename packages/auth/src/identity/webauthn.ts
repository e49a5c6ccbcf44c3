import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { AuthError } from '../errors.js';
import { userRecordKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';

/*
 * WebAuthn (security keys, platform authenticators) as a second factor, next to TOTP. The
 * credentials live with the user (`pc:{user:NAME}:webauthn`, one hash field per credential id),
 * so deleting or resetting a user touches one slot. Challenges are single-use: a registration
 * challenge per user, an assertion challenge per MFA ticket, both taken with GETDEL before the
 * check, so a captured response cannot be replayed even within the ticket's life.
 * TODO(store): move the key names to store/keys.ts with the others.
 */

/** Where a ceremony must have happened for it to count. */
export interface WebauthnRelyingParty {
  /** A DNS name (browsers refuse IP addresses): the gateway's host name or a parent of it. */
  readonly rpId: string;
  /** Shown by some authenticators when registering. */
  readonly rpName: string;
  /** Is this browser origin (from the signed client data) one of ours? */
  allowsOrigin(origin: string): boolean;
}

/**
 * The relying party for a public URL: its host name is the RP id, and any https origin on that
 * host counts (the web gateway on :3080 beside auth on :3025 share the name, not the port).
 */
export function relyingPartyFor(publicUrl: string, rpName = 'Portcullis'): WebauthnRelyingParty {
  const host = new URL(publicUrl).hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0) {
    throw new AuthError('ERR_CONFIG', `webauthn: the public URL ${publicUrl} names an IP address; browsers accept WebAuthn only for a DNS name (set public_url to one)`);
  }
  return {
    rpId: host,
    rpName,
    allowsOrigin(origin) {
      try {
        const u = new URL(origin);
        return u.protocol === 'https:' && u.hostname === host && u.origin === origin;
      } catch {
        return false;
      }
    },
  };
}

/** A registered authenticator as stored (the public key, never a secret). */
export interface WebauthnCredential {
  /** base64url credential id, as the browser reports it. */
  readonly id: string;
  /** base64url COSE public key. */
  readonly publicKey: string;
  readonly counter: number;
  readonly transports: readonly string[];
  /** The user's label for it ("yubikey", "laptop"). */
  readonly name: string;
  readonly aaguid: string;
  readonly backedUp: boolean;
  readonly createdAt: number;
  readonly lastUsedAt?: number;
}

/** What listing shows: no key material. */
export type WebauthnCredentialSummary = Omit<WebauthnCredential, 'publicKey' | 'counter'>;

const CHALLENGE_TTL_MS = 5 * 60_000;
/** Enough for a few keys and laptops; a bound keeps the hash (read on every login) small. */
export const MAX_WEBAUTHN_CREDENTIALS = 16;

/** Validates the name as the user keys do (throws ERR_BAD_REQUEST), then names the key. */
function credentialsKey(user: string): string {
  userRecordKey(user);
  return `pc:{user:${user}}:webauthn`;
}

function registrationChallengeKey(user: string): string {
  userRecordKey(user);
  return `pc:{user:${user}}:webauthn-challenge`;
}

/** Beside the ticket's own key, in its slot (`pc:{mfa:HASH}`, see http/mfa-ticket.ts). */
function assertionChallengeKey(ticketHash: string): string {
  if (!/^[0-9a-f]{64}$/.test(ticketHash)) throw new TypeError('webauthn: ticket hash expected a SHA-256 hex digest');
  return `pc:{mfa:${ticketHash}}:webauthn`;
}

/** Does the user have a WebAuthn credential? (A login must then ask for a second factor.) */
export async function hasWebauthnCredentials(redis: RedisClient, user: string): Promise<boolean> {
  return (await redis.hlen(credentialsKey(user))) > 0;
}

function parseCredential(raw: string): WebauthnCredential | undefined {
  try {
    const c = JSON.parse(raw) as WebauthnCredential;
    return typeof c.id === 'string' && typeof c.publicKey === 'string' && Number.isSafeInteger(c.counter) ? c : undefined;
  } catch {
    return undefined;
  }
}

export async function listWebauthnCredentials(redis: RedisClient, user: string): Promise<WebauthnCredential[]> {
  const all = await redis.hvals(credentialsKey(user));
  return all
    .map(parseCredential)
    .filter((c): c is WebauthnCredential => c !== undefined)
    .sort((a, b) => a.createdAt - b.createdAt);
}

export function summarizeCredential(c: WebauthnCredential): WebauthnCredentialSummary {
  const { publicKey: _k, counter: _c, ...rest } = c;
  return rest;
}

export async function removeWebauthnCredential(redis: RedisClient, user: string, id: string): Promise<boolean> {
  return (await redis.hdel(credentialsKey(user), id)) === 1;
}

/** The origin the browser signed into clientDataJSON, checked against the relying party. */
function signedOrigin(clientDataJSON: string, rp: WebauthnRelyingParty): string {
  let origin: unknown;
  try {
    origin = (JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { origin?: unknown }).origin;
  } catch {
    throw new AuthError('ERR_MFA_INVALID', 'webauthn: clientDataJSON is not base64url JSON', { reason: 'malformed' });
  }
  if (typeof origin !== 'string' || !rp.allowsOrigin(origin)) {
    throw new AuthError('ERR_MFA_INVALID', `webauthn: the ceremony ran on origin ${JSON.stringify(String(origin).slice(0, 200))}, not on ${rp.rpId}`, { reason: 'origin' });
  }
  return origin;
}

/** simplewebauthn throws plain Errors for every mismatch; to the API they are a wrong factor. */
async function verified<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof AuthError) throw e;
    throw new AuthError('ERR_MFA_INVALID', `webauthn: ${e instanceof Error ? e.message : String(e)}`, { reason: 'wrong' });
  }
}

async function takeChallenge(redis: RedisClient, key: string, what: string): Promise<string> {
  const challenge = await redis.getdel(key);
  if (challenge === null) throw new AuthError('ERR_EXPIRED', `webauthn: no ${what} in progress (it expired or was used); start again`);
  return challenge;
}

export interface WebauthnOptions {
  readonly redis: RedisClient;
  /** Milliseconds since the epoch. */
  readonly now?: () => number;
}

/** Registration and assertion ceremonies against the stored credentials. */
export class WebauthnAuthenticator {
  readonly #redis: RedisClient;
  readonly #now: () => number;

  constructor(opts: WebauthnOptions) {
    this.#redis = opts.redis;
    this.#now = opts.now ?? Date.now;
  }

  /** Options for navigator.credentials.create(); the challenge waits five minutes for finish. */
  async registrationOptions(user: string, rp: WebauthnRelyingParty): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await listWebauthnCredentials(this.#redis, user);
    if (existing.length >= MAX_WEBAUTHN_CREDENTIALS) {
      throw new AuthError('ERR_CONFLICT', `user ${user} already has ${existing.length} WebAuthn credentials (at most ${MAX_WEBAUTHN_CREDENTIALS}); remove one first`);
    }
    const options = await generateRegistrationOptions({
      rpName: rp.rpName,
      rpID: rp.rpId,
      userName: user,
      // Not the name: the user handle is stored on the authenticator and should say nothing.
      userID: new Uint8Array(randomBytes(16)),
      attestationType: 'none',
      excludeCredentials: existing.map((c) => ({ id: c.id, transports: [...c.transports] })),
      // A second factor beside a password or SSO: presence is enough, a PIN is the key's business.
      authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
      timeout: CHALLENGE_TTL_MS,
    });
    await this.#redis.set(registrationChallengeKey(user), options.challenge, 'PX', CHALLENGE_TTL_MS);
    return options;
  }

  async finishRegistration(user: string, response: RegistrationResponseJSON, name: string, rp: WebauthnRelyingParty): Promise<WebauthnCredential> {
    const origin = signedOrigin(response.response.clientDataJSON, rp);
    const challenge = await takeChallenge(this.#redis, registrationChallengeKey(user), 'registration');
    const result = await verified(
      verifyRegistrationResponse({ response, expectedChallenge: challenge, expectedOrigin: origin, expectedRPID: rp.rpId, requireUserVerification: false }),
    );
    if (!result.verified) throw new AuthError('ERR_MFA_INVALID', 'webauthn: the registration did not verify', { reason: 'wrong' });
    const info = result.registrationInfo;
    const credential: WebauthnCredential = {
      id: info.credential.id,
      publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      transports: info.credential.transports ?? [],
      name,
      aaguid: info.aaguid,
      backedUp: info.credentialBackedUp,
      createdAt: this.#now(),
    };
    // HSETNX: a credential id registered twice (excludeCredentials ignored) keeps its first owner's record.
    if ((await this.#redis.hsetnx(credentialsKey(user), credential.id, JSON.stringify(credential))) !== 1) {
      throw new AuthError('ERR_CONFLICT', `webauthn: that authenticator is already registered for ${user}`);
    }
    return credential;
  }

  /** Options for navigator.credentials.get() during a login; the challenge is bound to the MFA ticket. */
  async assertionOptions(ticketHash: string, user: string, rp: WebauthnRelyingParty): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const credentials = await listWebauthnCredentials(this.#redis, user);
    if (credentials.length === 0) throw new AuthError('ERR_MFA_REQUIRED', `user ${user} has no WebAuthn credential; use another second factor`);
    const options = await generateAuthenticationOptions({
      rpID: rp.rpId,
      allowCredentials: credentials.map((c) => ({ id: c.id, transports: [...c.transports] })),
      userVerification: 'preferred',
      timeout: CHALLENGE_TTL_MS,
    });
    await this.#redis.set(assertionChallengeKey(ticketHash), options.challenge, 'PX', CHALLENGE_TTL_MS);
    return options;
  }

  /** Checks an assertion for the ticket's user; the challenge is spent whatever the outcome. */
  async verifyAssertion(ticketHash: string, user: string, response: AuthenticationResponseJSON, rp: WebauthnRelyingParty): Promise<WebauthnCredential> {
    const origin = signedOrigin(response.response.clientDataJSON, rp);
    const challenge = await takeChallenge(this.#redis, assertionChallengeKey(ticketHash), 'WebAuthn login');
    const key = credentialsKey(user);
    const raw = await this.#redis.hget(key, response.id);
    const stored = raw === null ? undefined : parseCredential(raw);
    if (stored === undefined) throw new AuthError('ERR_MFA_INVALID', `webauthn: that authenticator is not registered for ${user}`, { reason: 'unknown-credential' });
    const result = await verified(
      verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: origin,
        expectedRPID: rp.rpId,
        credential: { id: stored.id, publicKey: new Uint8Array(Buffer.from(stored.publicKey, 'base64url')), counter: stored.counter, transports: [...stored.transports] },
        requireUserVerification: false,
      }),
    );
    if (!result.verified) throw new AuthError('ERR_MFA_INVALID', 'webauthn: the assertion did not verify', { reason: 'wrong' });
    const updated: WebauthnCredential = { ...stored, counter: result.authenticationInfo.newCounter, lastUsedAt: this.#now() };
    await this.#redis.hset(key, stored.id, JSON.stringify(updated));
    return updated;
  }
}
