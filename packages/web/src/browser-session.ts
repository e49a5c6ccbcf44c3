import { createHash, randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/*
 * Browser sessions: the cookie holds 32 random bytes; Redis holds the session under the
 * cookie's SHA-256 (`pc:{websession:HASH}`), so a copy of Redis yields no cookie and any
 * gateway replica serves any browser. What the session carries (auth's login session token, an
 * MFA ticket) never reaches the browser.
 */

export type RedisClient = Redis | Cluster;

export type SessionStage = 'anonymous' | 'mfa' | 'authenticated';

export interface PendingMfa {
  /** auth's ticket (a secret): finishes the login with a second factor. */
  readonly ticket: string;
  readonly methods: readonly string[];
  readonly expiresAt: number;
}

export interface SignedIn {
  /** auth's login session token (a secret). */
  readonly token: string;
  readonly user: string;
  readonly admin: boolean;
  readonly mfaVerified: boolean;
  /** When auth's login session ends (Unix ms); the browser session ends with it. */
  readonly expiresAt: number;
  /** When auth last confirmed the session and the admin role (GET /v1/me). */
  readonly checkedAt: number;
}

export interface BrowserSession {
  /** Hex SHA-256 of the cookie value: names the session in logs, never the cookie itself. */
  readonly id: string;
  readonly csrf: string;
  readonly stage: SessionStage;
  readonly createdAt: number;
  /** OIDC `state` values this browser started (a callback must bring one of them). */
  readonly oidcStates: readonly string[];
  readonly mfa?: PendingMfa;
  readonly signedIn?: SignedIn;
}

export interface SessionTimes {
  /** An anonymous or half-logged-in session lives this long (ms). */
  readonly anonymousMs: number;
  /** A signed-in session ends after this long without a request (ms). */
  readonly idleMs: number;
}

const COOKIE_RE = /^[A-Za-z0-9_-]{43}$/;

export const sessionHash = (cookie: string): string => createHash('sha256').update(cookie).digest('hex');
const key = (hash: string): string => `pc:{websession:${hash}}`;

function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** How long the session may live from now: idle time, capped by auth's own expiry. */
export function sessionTtl(s: BrowserSession, now: number, times: SessionTimes): number {
  if (s.stage !== 'authenticated' || s.signedIn === undefined) return times.anonymousMs;
  return Math.max(0, Math.min(times.idleMs, s.signedIn.expiresAt - now));
}

export class BrowserSessionStore {
  readonly #redis: RedisClient;
  readonly #times: SessionTimes;

  constructor(redis: RedisClient, times: SessionTimes) {
    this.#redis = redis;
    this.#times = times;
  }

  get times(): SessionTimes {
    return this.#times;
  }

  /** A fresh anonymous session; returns the cookie value to set. */
  async create(now: number): Promise<{ cookie: string; session: BrowserSession }> {
    const cookie = newSecret();
    const session: BrowserSession = { id: sessionHash(cookie), csrf: newSecret(), stage: 'anonymous', createdAt: now, oidcStates: [] };
    await this.save(session, now);
    return { cookie, session };
  }

  async get(cookie: string | undefined, now: number): Promise<BrowserSession | undefined> {
    if (cookie === undefined || !COOKIE_RE.test(cookie)) return undefined;
    const raw = await this.#redis.get(key(sessionHash(cookie)));
    if (raw === null) return undefined;
    let s: BrowserSession;
    try {
      s = JSON.parse(raw) as BrowserSession;
    } catch {
      return undefined;
    }
    if (s.signedIn !== undefined && s.signedIn.expiresAt <= now) {
      await this.destroy(s.id);
      return undefined;
    }
    return s;
  }

  /** Writes the session and restarts its idle clock. */
  async save(session: BrowserSession, now: number): Promise<void> {
    const ttl = sessionTtl(session, now, this.#times);
    if (ttl <= 0) {
      await this.destroy(session.id);
      return;
    }
    await this.#redis.set(key(session.id), JSON.stringify(session), 'PX', ttl);
  }

  /** Restarts the idle clock without rewriting the session. */
  async touch(session: BrowserSession, now: number): Promise<void> {
    const ttl = sessionTtl(session, now, this.#times);
    if (ttl > 0) await this.#redis.pexpire(key(session.id), ttl);
  }

  /**
   * The same session under a new cookie and a new CSRF token, the old one gone: done at every
   * change of who the session is, so a cookie planted before login is worthless after it.
   */
  async rotate(session: BrowserSession, change: Partial<Omit<BrowserSession, 'id' | 'csrf'>>, now: number): Promise<{ cookie: string; session: BrowserSession }> {
    const cookie = newSecret();
    const next: BrowserSession = { ...session, ...change, id: sessionHash(cookie), csrf: newSecret() };
    await this.save(next, now);
    await this.destroy(session.id);
    return { cookie, session: next };
  }

  async destroy(id: string): Promise<void> {
    if (!/^[0-9a-f]{64}$/.test(id)) throw new TypeError('session id expected a SHA-256 hex digest');
    await this.#redis.del(key(id));
  }
}
