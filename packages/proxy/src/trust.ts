import { compileKrl, krlRevocationHook, parseKrl, trustedAuthorities } from '@portcullis/cert-core';
import type { Certificate, CryptoBackend, TrustedAuthorities } from '@portcullis/cert-core';
import type { AuthorityClient } from './authority.js';
import type { RevocationSettings } from './config.js';
import { ProxyError } from './errors.js';

/**
 * What the proxy trusts, cached from auth: the user and host CA lists (re-read every
 * `caCacheMs`, so a rotation reaches the proxy without a restart) and the KRL (polled with its
 * ETag every few seconds, and at once on a revocation notice).
 *
 * Fail closed: before the first KRL arrives, or once the last successful refresh is older than
 * `maxStaleMs`, every certificate counts as revoked. A CA list that cannot be refreshed keeps
 * its last value (removing trust needs a KRL entry or a restart anyway).
 */
export class TrustCache {
  readonly #authority: AuthorityClient;
  readonly #crypto: CryptoBackend;
  readonly #now: () => number;
  readonly #settings: RevocationSettings;
  readonly #caCacheMs: number;
  readonly #log: (level: 'warn', message: string) => void;
  #userCAs: { value: TrustedAuthorities; at: number } | undefined;
  #hostCAs: { value: TrustedAuthorities; at: number } | undefined;
  #krl: { etag: string; check: (cert: Certificate) => false | string; confirmedAt: number } | undefined;
  #refreshing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;

  constructor(o: {
    readonly authority: AuthorityClient;
    readonly crypto: CryptoBackend;
    readonly now: () => number;
    readonly revocation: RevocationSettings;
    readonly caCacheMs: number;
    readonly log: (level: 'warn', message: string) => void;
  }) {
    this.#authority = o.authority;
    this.#crypto = o.crypto;
    this.#now = o.now;
    this.#settings = o.revocation;
    this.#caCacheMs = o.caCacheMs;
    this.#log = o.log;
  }

  /** Loads the KRL once (so the first login is not refused) and starts polling. */
  async start(): Promise<void> {
    await this.refreshKrl().catch(() => {});
    this.#timer = setInterval(() => void this.refreshKrl().catch(() => {}), this.#settings.refreshMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async userCAs(): Promise<TrustedAuthorities> {
    this.#userCAs = await this.#cas(this.#userCAs, () => this.#authority.userCAs(), 'user');
    return this.#userCAs.value;
  }

  async hostCAs(): Promise<TrustedAuthorities> {
    this.#hostCAs = await this.#cas(this.#hostCAs, () => this.#authority.hostCAs(), 'host');
    return this.#hostCAs.value;
  }

  async #cas(
    cached: { value: TrustedAuthorities; at: number } | undefined,
    fetch: AuthorityClient['userCAs'],
    kind: string,
  ): Promise<{ value: TrustedAuthorities; at: number }> {
    const now = this.#now();
    if (cached !== undefined && now - cached.at < this.#caCacheMs) return cached;
    try {
      return { value: trustedAuthorities(await fetch()), at: now };
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (cached !== undefined) {
        this.#log('warn', `cannot refresh the trusted ${kind} CAs from auth, keeping the last list: ${why}`);
        return { value: cached.value, at: now };
      }
      throw new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: cannot read the trusted ${kind} CAs from auth: ${why}`);
    }
  }

  /**
   * Fetches the KRL if it changed. Concurrent callers share one request. Rejects when auth
   * cannot be reached; the previous KRL then stays in force until it is too old.
   */
  refreshKrl(): Promise<void> {
    this.#refreshing ??= this.#fetchKrl().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #fetchKrl(): Promise<void> {
    try {
      const r = await this.#authority.krl(this.#krl?.etag);
      const now = this.#now();
      if (r === 'unchanged') {
        if (this.#krl !== undefined) this.#krl.confirmedAt = now;
      } else {
        const index = compileKrl(parseKrl(r.bytes), this.#crypto);
        this.#krl = { etag: r.etag, check: krlRevocationHook(index), confirmedAt: now };
      }
      this.#lastError = undefined;
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (this.#lastError !== why) this.#log('warn', `cannot refresh the KRL from auth: ${why}`);
      this.#lastError = why;
      throw e;
    }
  }

  /** Seconds since the KRL was last confirmed current; Infinity before the first one. */
  krlAgeSeconds(): number {
    return this.#krl === undefined ? Infinity : (this.#now() - this.#krl.confirmedAt) / 1000;
  }

  /** The checker's `isRevoked` hook: the KRL's verdict, or revoked when the KRL cannot be trusted. */
  readonly isRevoked = (cert: Certificate): false | string => {
    const krl = this.#krl;
    if (krl === undefined) return `the revocation list has not been loaded from auth${this.#lastError === undefined ? '' : ` (${this.#lastError})`}`;
    const age = this.#now() - krl.confirmedAt;
    if (age > this.#settings.maxStaleMs) {
      return `the revocation list is ${Math.round(age / 1000)} s old (auth unreachable); refusing until it is refreshed`;
    }
    return krl.check(cert);
  };
}
