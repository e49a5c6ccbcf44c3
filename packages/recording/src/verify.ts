import { parseSignature, verifySignature, type CryptoBackend, type PublicKey } from '@portcullis/cert-core';
import { canonicalEventBytes } from './codec.js';
import { chainDigest, hex, initialDigest, signedRecordingPayload } from './digest.js';
import { decodeEntry, readEntries, requireMeta, type RedisClient } from './store.js';

export type VerifyProblemKind =
  /** The event's bytes no longer hash to the digest stored with it: this event was changed. */
  | 'event-changed'
  /** The event's stored digest does not follow from the one before: events removed or reordered. */
  | 'chain-broken'
  /** Sequence numbers jump: events are missing. */
  | 'events-missing'
  /** The entry does not decode or its id disagrees with its content. */
  | 'event-unreadable'
  /** The last event is not the one the metadata (and the signature) name: events cut off or added. */
  | 'end-mismatch'
  | 'signature-invalid'
  | 'unsigned'
  /** Still live, or interrupted without a signer at upload: nothing final to check against. */
  | 'not-finished';

export interface VerifyProblem {
  readonly kind: VerifyProblemKind;
  /** The event concerned, when there is one. */
  readonly seq?: number;
  readonly message: string;
}

export interface VerifyReport {
  /** True only when every event checks and the signature over the final digest verifies. */
  readonly ok: boolean;
  readonly events: number;
  readonly problems: readonly VerifyProblem[];
}

/**
 * Recomputes the digest chain over the stored events and checks the signature over the final
 * digest and metadata. Each event's stored digest lets a changed event be named; the signature
 * catches a chain rewritten from some event on. Only a malformed signature blob throws.
 */
export async function verifyRecording(redis: RedisClient, id: string, publicKey: PublicKey, crypto: CryptoBackend): Promise<VerifyReport> {
  const meta = await requireMeta(redis, id);
  const problems: VerifyProblem[] = [];
  let h = initialDigest(id);
  let expected = 1;
  let events = 0;
  let lastSeq = 0;
  for await (const entry of readEntries(redis, id)) {
    events++;
    lastSeq = entry.seq;
    const gapBefore = entry.seq !== expected;
    if (gapBefore) {
      problems.push({ kind: 'events-missing', seq: entry.seq, message: `events ${expected}-${entry.seq - 1} are missing before event ${entry.seq}` });
    }
    expected = entry.seq + 1;
    try {
      decodeEntry(entry);
    } catch (e) {
      problems.push({ kind: 'event-unreadable', seq: entry.seq, message: `event ${entry.seq}: ${e instanceof Error ? e.message : String(e)}` });
    }
    const computed = chainDigest(h, canonicalEventBytes(entry));
    if (!entry.digest || !equal(computed, entry.digest)) {
      problems.push(
        gapBefore
          ? { kind: 'chain-broken', seq: entry.seq, message: `event ${entry.seq} does not follow the event stored before it` }
          : { kind: 'event-changed', seq: entry.seq, message: `event ${entry.seq} was changed after it was recorded` },
      );
    }
    // Go on from the stored digest, so one change is reported once, not for every later event.
    h = entry.digest ?? computed;
  }
  if (meta.state === 'live' || meta.digest === undefined) {
    problems.push({ kind: 'not-finished', message: `recording ${id} is ${meta.state} and has no final digest` });
  } else {
    if (meta.lastSeq !== lastSeq) {
      problems.push({ kind: 'end-mismatch', seq: lastSeq, message: `the metadata names event ${meta.lastSeq} as the last, the stream ends at ${lastSeq}` });
    }
    if (meta.digest !== hex(h)) {
      problems.push({ kind: 'end-mismatch', seq: lastSeq, message: 'the final digest in the metadata is not the last event\'s' });
    }
  }
  if (meta.signature === undefined) {
    problems.push({ kind: 'unsigned', message: `recording ${id} carries no signature` });
  } else {
    const sig = parseSignature(new Uint8Array(Buffer.from(meta.signature, 'base64')), 'recording signature');
    if (!verifySignature(crypto, publicKey, sig, signedRecordingPayload(meta))) {
      problems.push({ kind: 'signature-invalid', message: 'the signature does not match the metadata and final digest (changed, or signed by another key)' });
    }
  }
  return { ok: problems.length === 0, events, problems };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
