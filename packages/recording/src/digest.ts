import { createHash } from 'node:crypto';
import type { EncodedEvent } from './codec.js';
import type { RecordingMeta } from './model.js';

/**
 * The tamper-evidence chain: h0 = sha256(context || id), h(n) = sha256(h(n-1) || event bytes).
 * Every stored event carries its h(n), so a verifier names the first event that no longer
 * matches; the last h(n) is signed with the recording's metadata when the session ends, so
 * rewriting the chain from some event onwards breaks the signature.
 */
const CONTEXT = 'portcullis-recording-v1';

export function initialDigest(id: string): Uint8Array {
  return createHash('sha256').update(`${CONTEXT}\0${id}`).digest();
}

export function chainDigest(prev: Uint8Array, eventBytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(prev).update(eventBytes).digest();
}

/** chainDigest(prev, canonicalEventBytes(ev)) without copying the event's data into one buffer. */
export function chainEvent(prev: Uint8Array, ev: EncodedEvent): Uint8Array {
  const len = (n: number): Uint8Array => Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  return createHash('sha256').update(prev).update(len(ev.head.length)).update(ev.head).update(len(ev.data.length)).update(ev.data).digest();
}

/** The metadata a signature covers: who, where, when, how it ended, and the chain's last value. */
const SIGNED_FIELDS = [
  'id',
  'user',
  'login',
  'host',
  'clientAddress',
  'certSerial',
  'certKeyId',
  'route',
  'command',
  'startedAt',
  'endedAt',
  'state',
  'exitStatus',
  'exitSignal',
  'bytesIn',
  'bytesOut',
  'lastSeq',
  'lostEvents',
  'digest',
] as const satisfies readonly (keyof RecordingMeta)[];

/** Deterministic bytes to sign: the context line, then one `name=JSON value` line per field. */
export function signedRecordingPayload(meta: RecordingMeta): Uint8Array {
  const lines = [CONTEXT];
  for (const k of SIGNED_FIELDS) lines.push(`${k}=${JSON.stringify(meta[k] ?? null)}`);
  return new TextEncoder().encode(lines.join('\n') + '\n');
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
