import { LOCKS_CHANNEL } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import type { Lock } from './locks.js';

/**
 * What auth tells proxies on channel `pc:locks`, as JSON. Proxies do not import auth: this
 * shape is the contract, so it stays flat and stringly (serials as decimal strings).
 *
 *   {"kind":"lock","lock":{"id":"…","target":{"kind":"user","name":"alice"},"message":"…",
 *    "createdAt":1700000000000,"expiresAt":1700003600000}}
 *   {"kind":"revocation","krlVersion":7,"serials":["123"],"keyIds":[],"keys":["SHA256:…"]}
 *
 * A proxy ends the live sessions a lock covers, and on a revocation re-fetches the KRL (and may
 * end sessions whose certificate serial, key id or key is listed). Pub/sub is at-most-once: a
 * proxy that was disconnected re-reads the locks and the KRL when it reconnects.
 */
export type Notice =
  | { readonly kind: 'lock'; readonly lock: Lock }
  | {
      readonly kind: 'revocation';
      readonly krlVersion: number;
      readonly serials: readonly string[];
      readonly keyIds: readonly string[];
      /** SHA-256 fingerprints of revoked keys. */
      readonly keys: readonly string[];
    };

/** Publishes a notice; returns how many subscribers received it. */
export async function publishNotice(redis: RedisClient, notice: Notice): Promise<number> {
  return redis.publish(LOCKS_CHANNEL, JSON.stringify(notice));
}

/** Reads a message from `pc:locks`; undefined for anything that is not a notice. */
export function parseNotice(text: string): Notice | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const n = v as Record<string, unknown>;
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === 'string');
  if (n['kind'] === 'lock') {
    const lock = n['lock'] as Record<string, unknown> | null | undefined;
    const target = lock?.['target'] as Record<string, unknown> | undefined;
    if (typeof lock?.['id'] !== 'string' || typeof target?.['kind'] !== 'string' || typeof target['name'] !== 'string') return undefined;
    return { kind: 'lock', lock: lock as unknown as Lock };
  }
  if (n['kind'] === 'revocation') {
    if (typeof n['krlVersion'] !== 'number' || !strings(n['serials']) || !strings(n['keyIds']) || !strings(n['keys'])) return undefined;
    return { kind: 'revocation', krlVersion: n['krlVersion'], serials: n['serials'], keyIds: n['keyIds'], keys: n['keys'] };
  }
  return undefined;
}
