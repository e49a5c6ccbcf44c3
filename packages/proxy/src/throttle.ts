import type { ThrottleSettings } from './config.js';

interface Entry {
  failures: number;
  lastFailure: number;
}

/**
 * Slows down authentication from addresses that keep failing: after n failures, each further
 * attempt from the address waits base * 2^(n-1) ms (capped). Memory is bounded: at most
 * `maxEntries` addresses are remembered, the least recently failing forgotten first (a Map
 * keeps insertion order, and a failure re-inserts its address at the end). A success clears
 * the address; a count is forgotten `forgetAfterMs` after its last failure.
 *
 * A delay, not a ban: a user behind a NAT shared with an attacker is slowed, never locked
 * out, and an attacker cannot lock a victim's address out on purpose.
 */
export class FailureThrottle {
  readonly #entries = new Map<string, Entry>();
  readonly #settings: ThrottleSettings;

  constructor(settings: ThrottleSettings) {
    this.#settings = settings;
  }

  /** Milliseconds to wait before answering an attempt from `address` at `now`. */
  delayFor(address: string, now: number): number {
    const e = this.#entries.get(address);
    if (e === undefined) return 0;
    if (now - e.lastFailure >= this.#settings.forgetAfterMs) {
      this.#entries.delete(address);
      return 0;
    }
    const { baseDelayMs, maxDelayMs } = this.#settings;
    // 2^(n-1) grows past any cap quickly; stop the exponent before it overflows to Infinity.
    const exponent = Math.min(e.failures - 1, 30);
    return Math.min(maxDelayMs, baseDelayMs * 2 ** exponent);
  }

  failure(address: string, now: number): void {
    const e = this.#entries.get(address);
    const fresh = e === undefined || now - e.lastFailure >= this.#settings.forgetAfterMs;
    this.#entries.delete(address);
    this.#entries.set(address, { failures: fresh ? 1 : e.failures + 1, lastFailure: now });
    while (this.#entries.size > this.#settings.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }

  success(address: string): void {
    this.#entries.delete(address);
  }

  /** Addresses currently remembered (for metrics and tests). */
  get size(): number {
    return this.#entries.size;
  }
}
