// Output events chained as the recorder chains them, and the check that what Redis holds is
// that chain, unbroken: shared by the sink tests that make Redis stall or refuse writes.
import assert from 'node:assert/strict';
import { encodeEvent } from '../src/codec.js';
import { chainEvent, hex, initialDigest } from '../src/digest.js';
import { readEntries, type RedisClient, type StoreItem } from '../src/store.js';

/** Output events numbered from 1 and chained; each carries `size` bytes (or `size(seq)`) of data. */
export function chainedEvents(id: string): (n: number, size: number | ((seq: number) => number)) => StoreItem[] {
  let seq = 0;
  let digest = initialDigest(id);
  return (n, size) => {
    const out: StoreItem[] = [];
    for (let i = 0; i < n; i++) {
      seq++;
      const data = new Uint8Array(typeof size === 'number' ? size : size(seq)).fill(seq & 0xff);
      const event = encodeEvent({ type: 'output', channel: 0, stream: 0, data, seq, t: seq });
      digest = chainEvent(digest, event);
      out.push({ kind: 'event', seq, t: seq, event, digest });
    }
    return out;
  };
}

/** Sequence numbers as stored, checking each stored digest follows from the one before. */
export async function storedSeqs(redis: RedisClient, id: string): Promise<number[]> {
  const seqs: number[] = [];
  let digest = initialDigest(id);
  for await (const e of readEntries(redis, id)) {
    digest = chainEvent(digest, { head: e.head, data: e.data });
    assert.equal(hex(e.digest ?? new Uint8Array(0)), hex(digest), `event ${e.seq}: the chain breaks`);
    seqs.push(e.seq);
  }
  return seqs;
}

export const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
