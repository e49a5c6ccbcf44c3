import { AuthError } from '../errors.js';
import { rateKey, type RateLimitKind } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';

/** At most `max` attempts per `windowSeconds` for one key (fixed window). */
export interface RateLimit {
  readonly max: number;
  readonly windowSeconds: number;
}

// One round trip, one slot: count the attempt and start the window on the first one. PTTL is
// read back so the refusal can say when to retry. A key somehow left without a TTL gets one, so
// a counter can never lock someone out forever.
const HIT = `
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}`;

/**
 * Counts an attempt against every (kind, key) given and refuses with ERR_RATE_LIMITED when any
 * is over its limit. Every attempt counts, not only failures: a failure can only be known after
 * the expensive check (scrypt, a TOTP step), and counting afterwards would let a burst of
 * parallel guesses all pass the gate before the first one is counted.
 */
export async function countAttempt(
  redis: RedisClient,
  checks: readonly { readonly kind: RateLimitKind; readonly key: string | undefined; readonly limit: RateLimit }[],
): Promise<void> {
  for (const c of checks) {
    if (c.key === undefined || c.key === '') continue;
    const reply = (await redis.eval(HIT, 1, rateKey(c.kind, c.key.slice(0, 256)), String(c.limit.windowSeconds * 1000))) as [number, number];
    const [count, ttlMs] = reply;
    if (count > c.limit.max) {
      const retryAfter = Math.max(1, Math.ceil(ttlMs / 1000));
      const what = c.kind.endsWith('-addr') ? 'this address' : 'this user';
      const attempts = c.kind.startsWith('totp') ? 'second-factor attempts' : c.kind.startsWith('enroll') ? 'enrollment attempts' : 'login attempts';
      throw new AuthError('ERR_RATE_LIMITED', `too many ${attempts} for ${what}: at most ${c.limit.max} per ${c.limit.windowSeconds} s; retry in ${retryAfter} s`, {
        retryAfter,
        limit: c.kind,
      });
    }
  }
}
