import assert from 'node:assert/strict';
import { redisSnapshot } from '@portcullis/harness';
import type { SnapshotSource } from '@portcullis/harness';
import { isAuthError } from '../src/errors.js';
import type { AuthErrorCode } from '../src/errors.js';

/** Asserts that `p` rejects with an AuthError of `code` (and a message matching `message`). */
export async function refused(p: Promise<unknown>, code: AuthErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isAuthError(e, code), `expected AuthError ${code}, got ${String(e)}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** Redis as a refusal must leave it: everything but the audit stream and rate-limit counters. */
export function snapshot(redis: SnapshotSource): Promise<Record<string, unknown>> {
  return redisSnapshot(redis, (key) => key === 'pc:{audit}:events' || key.startsWith('pc:{rate}:'));
}
