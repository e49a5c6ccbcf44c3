import type { Command } from 'commander';
import { followRecording, play, readRecordingEvents, type RecordingEvent, type ReplayItem } from '@portcullis/recording';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { REDIS_FLAG, requireRecordingMeta, withRecordings, type RedisOptions } from './recordings.js';

/*
 * `pcsh play` replays a recording in this terminal and `pcsh join` follows a live one. Both
 * draw only the session's terminal channel (its first shell, exec or pty channel) so SFTP or
 * forwarded bytes never garble the screen. Seeking restarts the read from the nearest screen
 * snapshot before the target (readRecordingEvents), so a jump into a long session is quick.
 */

export const SEEK_STEP_MS = 5_000;
const CLEAR = '\x1b[H\x1b[2J\x1b[3J';

/** Picks the terminal channel as events go by and says which events to draw. */
export class TerminalChannel {
  #channel: number | undefined;

  bytes(e: RecordingEvent): Uint8Array | undefined {
    if (!('channel' in e)) return undefined;
    if (this.#channel === undefined && (e.type === 'shell' || e.type === 'exec' || e.type === 'pty' || e.type === 'output')) this.#channel = e.channel;
    if (e.channel !== this.#channel || e.type !== 'output') return undefined;
    return e.data;
  }
}

export interface PlayCommandOptions extends RedisOptions {
  readonly speed?: string;
  /** Cut pauses longer than this many seconds (true: 2 s). */
  readonly skipIdle?: string | boolean;
  /** Keys (space, arrows, q) even when stdin is a terminal; false plays straight through. */
  readonly keys?: boolean;
}

export function parseSpeed(text: string | undefined): number {
  if (text === undefined) return 1;
  if (text === 'max') return Infinity;
  const n = Number(text);
  if (!(n > 0) || !Number.isFinite(n)) throw new CliError('ERR_USAGE', `--speed: expected a number above 0 or max, got ${JSON.stringify(text)}`);
  return n;
}

export function parseIdleLimit(v: string | boolean | undefined): number | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return 2_000;
  const n = Number(v);
  if (!(n >= 0)) throw new CliError('ERR_USAGE', `--skip-idle: expected seconds, got ${JSON.stringify(v)}`);
  return n * 1000;
}

type Key = 'pause' | 'back' | 'forward' | 'quit';

/** Raw key presses from a terminal stdin; undefined when stdin is not one. */
function keyPresses(onKey: (k: Key) => void): (() => void) | undefined {
  const stdin = process.stdin;
  if (!stdin.isTTY) return undefined;
  stdin.setRawMode(true);
  stdin.resume();
  const onData = (b: Buffer): void => {
    const s = b.toString('latin1');
    if (s === ' ') onKey('pause');
    else if (s === '\x1b[D') onKey('back');
    else if (s === '\x1b[C') onKey('forward');
    else if (s === 'q' || s === 'Q' || s === '\x03' || s === '\x04') onKey('quit');
  };
  stdin.on('data', onData);
  return () => {
    stdin.off('data', onData);
    stdin.setRawMode(false);
    stdin.pause();
  };
}

export async function playCommand(o: PlayCommandOptions, id: string): Promise<void> {
  const speed = parseSpeed(o.speed);
  const idleLimitMs = parseIdleLimit(o.skipIdle);
  await withRecordings(o, async (redis) => {
    await requireRecordingMeta(redis, id);
    const out = process.stdout;
    let position = 0;
    let paused = false;
    let resumePaused: (() => void) | undefined;
    let run = new AbortController();
    let next: number | 'quit' | undefined;
    const stopKeys =
      o.keys === false
        ? undefined
        : keyPresses((k) => {
            if (k === 'pause') {
              paused = !paused;
              if (!paused) resumePaused?.();
            } else if (k === 'quit') {
              next = 'quit';
              paused = false;
              resumePaused?.();
              run.abort();
            } else {
              next = Math.max(0, position + (k === 'back' ? -SEEK_STEP_MS : SEEK_STEP_MS));
              paused = false;
              resumePaused?.();
              run.abort();
            }
          });
    // Waits in short slices so that a pause freezes the timeline where it is, rather than
    // holding back only the event after the current wait.
    const slice = (ms: number, signal?: AbortSignal): Promise<void> =>
      new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, ms);
        signal?.addEventListener('abort', done, { once: true });
      });
    const sleep = async (ms: number, signal?: AbortSignal): Promise<void> => {
      let left = Number.isFinite(ms) ? ms : 0;
      for (;;) {
        while (paused && signal?.aborted !== true) await new Promise<void>((resolve) => (resumePaused = resolve));
        if (left <= 0 || signal?.aborted === true) return;
        const step = Math.min(left, 100);
        await slice(step, signal);
        left -= step;
      }
    };
    try {
      let fromMs = 0;
      for (;;) {
        const channel = new TerminalChannel();
        const show = (item: ReplayItem): void => {
          if (item.kind === 'screen') {
            out.write(CLEAR + item.snapshot.screen);
            position = item.snapshot.t;
          } else if (item.kind === 'gap') {
            process.stderr.write(`\r\n[pcsh play: events ${item.from}-${item.to} are missing from the recording]\r\n`);
          } else {
            position = item.event.t;
            const data = channel.bytes(item.event);
            if (data !== undefined) out.write(data);
          }
        };
        await play(readRecordingEvents(redis, id, fromMs > 0 ? { fromMs } : {}), show, {
          speed,
          ...(idleLimitMs === undefined ? {} : { idleLimitMs }),
          fromMs,
          signal: run.signal,
          sleep,
        });
        if (next === undefined || next === 'quit') break;
        fromMs = next;
        next = undefined;
        run = new AbortController();
        out.write(CLEAR);
      }
    } finally {
      stopKeys?.();
    }
  });
}

export async function joinCommand(o: RedisOptions, id: string): Promise<void> {
  await withRecordings(o, async (redis) => {
    const meta = await requireRecordingMeta(redis, id);
    if (meta.state !== 'live') throw new CliError('ERR_NOT_FOUND', `session ${id} is not live (${meta.state}); pcsh play ${id} replays it`);
    const abort = new AbortController();
    const stopKeys = keyPresses((k) => k === 'quit' && abort.abort());
    const onSignal = (): void => abort.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.stderr.write(`watching ${meta.user} as ${meta.login}@${meta.host} (q leaves; the session is not affected)\r\n`);
    const channel = new TerminalChannel();
    try {
      for await (const item of followRecording(redis, id, { signal: abort.signal, blockMs: 1_000 })) {
        if (item.kind === 'screen') process.stdout.write(CLEAR + item.snapshot.screen);
        else if (item.kind === 'event') {
          const data = channel.bytes(item.event);
          if (data !== undefined) process.stdout.write(data);
        }
        if (abort.signal.aborted) break;
      }
    } finally {
      stopKeys?.();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

export function addPlayCommands(program: Command): void {
  withExamples(
    program
      .command('play')
      .description('replay a recorded session here: space pauses, ←/→ seek 5 s, q quits')
      .argument('<session>', 'the session (recording) id; pcsh recordings ls lists them')
      .option('--speed <factor>', '2 plays twice as fast; max shows everything at once', '1')
      .option('--skip-idle [seconds]', 'cut pauses longer than this (default 2 s)')
      .option('--no-keys', 'ignore the keyboard (play straight through)')
      .option(...REDIS_FLAG)
      .action(async (id: string, _o, cmd: Command) => playCommand(cmd.optsWithGlobals<PlayCommandOptions>(), id)),
    'pcsh play 01JC3…',
    'pcsh play 01JC3… --speed 4 --skip-idle',
    'pcsh play 01JC3… --speed max | less -R',
  );
  withExamples(
    program
      .command('join')
      .description('watch a live session (read only); q leaves')
      .argument('<session>', 'the session id; pcsh sessions ls lists live ones')
      .option(...REDIS_FLAG)
      .action(async (id: string, _o, cmd: Command) => joinCommand(cmd.optsWithGlobals<RedisOptions>(), id)),
    'pcsh join 01JC3…',
  );
}
