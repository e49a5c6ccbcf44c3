import { caRevokedKey, userSessionsKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { getLoginSession } from '../sessions/login-session.js';
import { parseRevocation } from '../revocation/revocations.js';
import { refusal } from './issue.js';

/*
 * The user certificate a client showed the proxy, as the proxy names it to auth when it asks
 * for the user's access or for an upstream certificate. auth re-checks it at that moment, so a
 * revocation or a logout refuses the next connection at once instead of after the proxy's next
 * KRL poll (seconds), and a certificate whose login session is gone opens nothing more.
 */

/** What identifies a client certificate: enough to find every revocation that may cover it. */
export interface ClientCertificateRef {
  readonly serial: bigint;
  readonly keyId: string;
  /** `SHA256:...` of the certified key. */
  readonly fingerprint: string;
}

/** Hex digits of a login session id put into key ids (as audit events name sessions). */
export const KEY_ID_SESSION_DIGITS = 16;
const SESSION_FIELD_RE = /^sess=([0-9a-f]{16})$/;
const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const UINT64_MAX = 0xffffffffffffffffn;

/** The `sess=` field a user certificate's key id carries for the login session it was minted under. */
export function keyIdSessionField(sessionId: string): string {
  return `sess=${sessionId.slice(0, KEY_ID_SESSION_DIGITS)}`;
}

/** The login session (first 16 hex digits of its id) named in a key id, if any. */
export function loginSessionOfKeyId(keyId: string): string | undefined {
  for (const field of keyId.split(' ').slice(1)) {
    const m = SESSION_FIELD_RE.exec(field);
    if (m) return m[1];
  }
  return undefined;
}

/** Checks the shape of a reference (it comes over HTTP); throws ERR_BAD_REQUEST naming the field. */
export function checkClientCertificateRef(ref: ClientCertificateRef): void {
  if (typeof ref?.serial !== 'bigint' || ref.serial < 0n || ref.serial > UINT64_MAX) throw refusal('ERR_BAD_REQUEST', 'bad_request', '"client.serial" expected a uint64');
  if (typeof ref.keyId !== 'string' || ref.keyId === '' || ref.keyId.length > 1024 || ref.keyId.includes('\0')) {
    throw refusal('ERR_BAD_REQUEST', 'bad_request', '"client.key_id" expected 1-1024 characters without NUL');
  }
  if (typeof ref.fingerprint !== 'string' || !FINGERPRINT_RE.test(ref.fingerprint)) {
    throw refusal('ERR_BAD_REQUEST', 'bad_request', `"client.fingerprint" expected SHA256:<43 base64 characters>, got ${JSON.stringify(String(ref.fingerprint))}`);
  }
}

/**
 * Refuses, with the AuthError to throw, a client certificate that is not `user`'s, whose serial,
 * key id or key is revoked, or whose login session was revoked (pcsh logout, pcctl revoke) or has
 * expired. A key id without a session (minted before key ids named one) is judged on the rest.
 */
export async function refuseRevokedClientCertificate(redis: RedisClient, user: string, ref: ClientCertificateRef, nowMs: number): Promise<void> {
  checkClientCertificateRef(ref);
  const subject = ref.keyId.split(' ')[0];
  if (subject !== user) {
    throw refusal('ERR_FORBIDDEN', 'bad_request', `the client certificate is ${JSON.stringify(subject)}'s, not ${JSON.stringify(user)}'s`);
  }
  const ids = [`serial:${ref.serial}`, `key-id:${ref.keyId}`, `key:${ref.fingerprint}`];
  const found = await redis.hmget(caRevokedKey(), ...ids);
  for (const [i, json] of found.entries()) {
    if (json === null) continue;
    const r = parseRevocation(ids[i]!, json);
    // Serials are drawn from one counter for every CA, so a host certificate's serial never
    // names a user certificate; the scope is checked anyway.
    if (r === undefined || (r.kind !== 'key' && r.ca !== undefined && r.ca !== 'user')) continue;
    throw refusal('ERR_FORBIDDEN', 'revoked_certificate', `the client certificate (serial ${ref.serial}, key id ${JSON.stringify(ref.keyId)}) is revoked (${r.id})`, {
      revocation: r.id,
    });
  }
  const session = loginSessionOfKeyId(ref.keyId);
  if (session === undefined) return;
  // Only the ids with that prefix are read (one, barring a 64-bit collision), not every session.
  const candidates = (await redis.smembers(userSessionsKey(user))).filter((id) => id.startsWith(session));
  const sessions = await Promise.all(candidates.map((id) => getLoginSession(redis, id)));
  if (!sessions.some((s) => s !== undefined && s.user === user && s.expiresAt > nowMs)) {
    throw refusal('ERR_FORBIDDEN', 'session', `the login session ${session} that minted the client certificate was revoked or has expired; log in again`, { session });
  }
}
