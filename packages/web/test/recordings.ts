import { Recorder, type SessionMeta } from '@portcullis/recording';
import type { Redis } from 'ioredis';

/*
 * Recordings made by the real Recorder, the way the proxy makes them, into the test's Redis. The
 * seekable one has a manual clock: four screens four seconds apart, each starting with a clear,
 * so the screen at any offset is known; snapshots every two seconds make seeking start from one.
 */

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
let n = 0;

export function sessionMeta(over: Partial<SessionMeta> = {}): SessionMeta {
  n++;
  return {
    sessionId: `web-${process.pid}-${Date.now()}-${n}`,
    user: 'carol',
    login: 'ubuntu',
    host: 'web01',
    clientAddress: '192.0.2.7:50022',
    certSerial: 1234n,
    certKeyId: 'carol req=1',
    route: 'user-name',
    ...over,
  };
}

/** The text on the screen from `t` ms until the next phase. */
export const PHASES = [
  { t: 0, text: 'phase one: the beginning' },
  { t: 4000, text: 'phase two: deploying' },
  { t: 8000, text: 'phase three: checking' },
  { t: 12000, text: 'phase four: done' },
] as const;
export const SEEKABLE_END_MS = 15000;

export async function writeSeekableRecording(redis: Redis, over: Partial<SessionMeta> = {}): Promise<string> {
  let now = 1_700_000_000_000;
  const rec = new Recorder({ redis, mode: 'best-effort', now: () => now, snapshotIntervalMs: 2000 });
  const meta = sessionMeta(over);
  await rec.start(meta);
  await rec.event({ type: 'open', channel: 0, kind: 'session' });
  await rec.event({ type: 'pty', channel: 0, term: 'xterm-256color', cols: 80, rows: 24 });
  await rec.event({ type: 'shell', channel: 0 });
  for (const p of PHASES) {
    now = 1_700_000_000_000 + p.t;
    await rec.output(0, 0, enc(`\x1b[2J\x1b[H${p.text}\r\n`));
    await rec.flush();
    // A line a second after each phase: there is output between snapshots.
    now += 1000;
    await rec.output(0, 0, enc(`  progress of ${p.text.split(':')[0]}\r\n$ `));
    await rec.flush();
  }
  now = 1_700_000_000_000 + SEEKABLE_END_MS;
  await rec.event({ type: 'exit', channel: 0, status: 0 });
  await rec.event({ type: 'close', channel: 0 });
  await rec.end({ bytesIn: 10, bytesOut: 400, reason: 'client closed' });
  return meta.sessionId;
}

export async function writeExecRecording(redis: Redis, command: string, output: string, over: Partial<SessionMeta> = {}): Promise<string> {
  const rec = new Recorder({ redis, mode: 'best-effort' });
  const meta = sessionMeta(over);
  await rec.start(meta);
  await rec.event({ type: 'open', channel: 0, kind: 'session' });
  await rec.event({ type: 'exec', channel: 0, command });
  await rec.output(0, 0, enc(output));
  await rec.event({ type: 'exit', channel: 0, status: 0 });
  await rec.event({ type: 'close', channel: 0 });
  await rec.end({ bytesIn: 0, bytesOut: output.length, reason: 'exit' });
  return meta.sessionId;
}

/** A session still being recorded: the test writes to it and ends it. */
export async function startLiveRecording(redis: Redis, over: Partial<SessionMeta> = {}): Promise<{ id: string; write(text: string): Promise<void>; end(): Promise<void> }> {
  const rec = new Recorder({ redis, mode: 'best-effort', snapshotIntervalMs: 500 });
  const meta = sessionMeta(over);
  await rec.start(meta);
  await rec.event({ type: 'open', channel: 0, kind: 'session' });
  await rec.event({ type: 'pty', channel: 0, term: 'xterm', cols: 80, rows: 24 });
  await rec.event({ type: 'shell', channel: 0 });
  return {
    id: meta.sessionId,
    async write(text) {
      await rec.output(0, 0, enc(text));
      await rec.flush();
    },
    async end() {
      await rec.event({ type: 'exit', channel: 0, status: 0 });
      await rec.event({ type: 'close', channel: 0 });
      await rec.end({ bytesIn: 0, bytesOut: 100, reason: 'client closed' });
    },
  };
}
