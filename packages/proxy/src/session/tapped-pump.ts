import type { Readable, Writable } from 'node:stream';
import { pump, type PumpEnd } from './pump.js';
import type { Relay } from './relay.js';

interface TappedPumpOptions {
  readonly signal: AbortSignal;
  readonly onError: (e: unknown) => void;
}

/**
 * Client to target through the tap (counted as input); the client's EOF becomes the target's.
 * Shared by session channels and forwarded TCP so both count and record bytes the same way.
 */
export function pumpToTarget(relay: Relay, ch: number, client: Readable, upstream: Writable, o: TappedPumpOptions): Promise<void> {
  return pump(client, upstream, {
    ...o,
    onChunk: (c) => {
      relay.traffic(c.length, 0);
      return relay.tapInput(ch, c);
    },
  }).then((how) => {
    if (how === 'end') upstream.end();
  });
}

/**
 * Target to client through the tap (counted as output on `stream`: 0 stdout, 1 stderr). Does
 * not end the client: a session channel must send its exit status first.
 */
export function pumpToClient(relay: Relay, ch: number, stream: 0 | 1, upstream: Readable, client: Writable, o: TappedPumpOptions): Promise<PumpEnd> {
  return pump(upstream, client, {
    ...o,
    onChunk: (c) => {
      relay.traffic(0, c.length);
      return relay.tapOutput(ch, stream, c);
    },
  });
}
