import { caSerialKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { AuthError } from '../errors.js';

/**
 * Serials are `max(INCR, floor)` where floor is the current second shifted left by 20 bits. The
 * counter alone survives restarts (with AOF), but not a wiped Redis or a restore from an older
 * backup: either would hand out serials that were already issued, and a KRL entry for an old
 * serial would then revoke a new certificate (or vice versa). With the floor, a serial is
 * larger than every serial issued before the current second unless more than 2^20 certificates
 * per second were issued on average since then. `serial >> 20` is the issue second, which
 * makes a serial readable in logs. The values fit a double exactly until the year 2242.
 */
export const SERIAL_CLOCK_SHIFT = 20;

// One key, one slot: a cluster runs it where the counter lives. Lua numbers are doubles, exact
// for every value this produces (< 2^53).
const NEXT_SERIAL = `
local v = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if v < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  v = floor
end
return v`;

/** The floor for a clock reading in milliseconds. */
export function serialFloor(nowMs: number): bigint {
  if (!Number.isFinite(nowMs) || nowMs < 0) throw new TypeError(`ca: "now" expected milliseconds since the epoch, got ${nowMs}`);
  return BigInt(Math.floor(nowMs / 1000)) << BigInt(SERIAL_CLOCK_SHIFT);
}

/** A serial never handed out before, for a certificate of either CA. */
export async function nextSerial(redis: RedisClient, nowMs: number): Promise<bigint> {
  const floor = serialFloor(nowMs);
  let reply: unknown;
  try {
    reply = await redis.eval(NEXT_SERIAL, 1, caSerialKey(), floor.toString());
  } catch (e) {
    throw new AuthError('ERR_UNAVAILABLE', `ca: cannot draw a certificate serial from Redis: ${(e as Error).message}`);
  }
  if (typeof reply !== 'number' || !Number.isSafeInteger(reply) || reply <= 0) {
    throw new AuthError('ERR_UNAVAILABLE', `ca: Redis answered ${JSON.stringify(reply)} for the next serial; expected a positive integer`);
  }
  return BigInt(reply);
}

/** The last serial handed out (0 when none), for status pages and tests. */
export async function lastSerial(redis: RedisClient): Promise<bigint> {
  const v = await redis.get(caSerialKey());
  return v === null ? 0n : BigInt(v);
}
