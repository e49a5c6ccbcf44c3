// Helpers for the proxy's recording tests: a real redis-server that can be stopped and brought
// back with its data, a tmux pane as the user's terminal, and readers that turn a stored
// recording back into a screen or a byte stream.
import { mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { generateKey, keySigner } from '@portcullis/cert-core';
import type { Signer } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { hasTool, run, runOk, startRedis } from '@portcullis/harness';
import type { RedisHandle } from '@portcullis/harness';
import { TerminalScreen, followRecording, listRecordings, readRecordingEvents, readRecordingMeta } from '@portcullis/recording';
import type { RecordingEvent, RecordingMeta, ReplayItem, ScreenText } from '@portcullis/recording';

export const skipWithoutRecordingTools =
  (['redis-server', 'tmux', 'asciinema', 'script'].filter((t) => !hasTool(t)).map((t) => `needs ${t}`)[0] as string | undefined) ?? false;

export interface TestRedis {
  server: RedisHandle;
  readonly url: string;
  /** An independent connection; closed by stop(). */
  connect(): Redis;
  /** Stops the server (a Redis outage). */
  down(): Promise<void>;
  /** Starts it again on the same port with the data it had (AOF). */
  up(): Promise<void>;
  stop(): Promise<void>;
}

/** redis-server with appendfsync always, so an outage in a test loses nothing Redis had confirmed. */
export async function startTestRedis(dir: string): Promise<TestRedis> {
  mkdirSync(dir, { recursive: true });
  const config = ['appendonly yes', 'appendfsync always'];
  const clients: Redis[] = [];
  const r: TestRedis = {
    server: await startRedis({ dir, extraConfig: config }),
    get url() {
      return r.server.url;
    },
    connect() {
      // One attempt per command and quick reconnects: the recorder must notice an outage fast.
      const c = new Redis(r.server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      c.on('error', () => {});
      clients.push(c);
      return c;
    },
    down: () => r.server.stop(),
    async up() {
      r.server = await startRedis({ dir, port: r.server.port!, extraConfig: config });
    },
    async stop() {
      for (const c of clients) c.disconnect();
      await r.server.stop();
    },
  };
  return r;
}

/** A recording key standing in for auth's (the HTTP route has its own test in auth). */
export function testRecordingKey(): Signer {
  return keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
    await sleep(everyMs);
  }
}

/** The newest recording of `user` that satisfies `match`. */
export function recordingOf(redis: Redis, user: string, match: (m: RecordingMeta) => boolean = () => true, timeoutMs = 10_000): Promise<RecordingMeta> {
  return waitFor(`a recording of ${user}`, async () => (await listRecordings(redis, { user, limit: 20 })).find(match), timeoutMs);
}

/** Waits until the recording is no longer live and returns its metadata. */
export function finished(redis: Redis, id: string, timeoutMs = 15_000): Promise<RecordingMeta> {
  return waitFor(`recording ${id} to finish`, async () => {
    const m = await readRecordingMeta(redis, id);
    return m !== undefined && m.state !== 'live' ? m : undefined;
  }, timeoutMs);
}

export async function recordedEvents(redis: Redis, id: string): Promise<{ events: RecordingEvent[]; gaps: number }> {
  const events: RecordingEvent[] = [];
  let gaps = 0;
  for await (const item of readRecordingEvents(redis, id)) {
    if (item.kind === 'event') events.push(item.event);
    else if (item.kind === 'gap') gaps++;
  }
  return { events, gaps };
}

/** The output bytes of one channel and stream, in order. */
export function outputOf(events: readonly RecordingEvent[], stream: 0 | 1 = 0): Buffer {
  return Buffer.concat(events.flatMap((e) => (e.type === 'output' && e.stream === stream ? [e.data] : [])));
}

/**
 * A viewer's terminal: replay items (a starting screen, events) drawn as a player draws them.
 * The size comes from the recording's pty and resize events, as a player takes it.
 */
export class ViewerScreen {
  screen = new TerminalScreen(80, 24);
  events = 0;
  fromScreen = false;
  gaps = 0;

  apply(item: ReplayItem): void {
    if (item.kind === 'screen') {
      this.screen.dispose();
      this.screen = new TerminalScreen(item.snapshot.cols, item.snapshot.rows);
      this.screen.write(item.snapshot.screen);
      this.fromScreen = true;
    } else if (item.kind === 'gap') {
      this.gaps++;
    } else {
      this.events++;
      const e = item.event;
      if (e.type === 'pty') this.screen.resize(e.cols, e.rows);
      else if (e.type === 'resize') this.screen.resize(e.cols, e.rows);
      else if (e.type === 'output') this.screen.write(e.data);
    }
  }

  text(): Promise<ScreenText> {
    return this.screen.text();
  }

  dispose(): void {
    this.screen.dispose();
  }
}

/** Replays a whole stored recording into a fresh terminal. */
export async function replayScreen(redis: Redis, id: string): Promise<ScreenText> {
  const v = new ViewerScreen();
  for await (const item of readRecordingEvents(redis, id)) v.apply(item);
  const t = await v.text();
  v.dispose();
  return t;
}

/** Follows a live recording in the background; `screen` is what a watching admin sees now. */
export function watch(redis: Redis, id: string): { readonly viewer: ViewerScreen; readonly done: Promise<void>; stop(): void } {
  const viewer = new ViewerScreen();
  const abort = new AbortController();
  const done = (async () => {
    for await (const item of followRecording(redis, id, { signal: abort.signal, blockMs: 500 })) viewer.apply(item);
  })();
  return { viewer, done, stop: () => abort.abort() };
}

/**
 * The screen as lines and cursor, the part both terminals can be compared on. Trailing blanks
 * go: tmux does not report them, xterm keeps blanks that were written (a prompt's last space).
 */
export function comparable(t: ScreenText): { cols: number; rows: number; lines: readonly string[]; cursor: [number, number] } {
  return { cols: t.cols, rows: t.rows, lines: t.lines.map((l) => l.replace(/\s+$/, '')), cursor: [t.cursorX, t.cursorY] };
}

/**
 * A tmux pane as the user's terminal: keys typed into it reach a stock ssh client running inside
 * with a real pty, and capture-pane shows what the user sees.
 */
export class TmuxPane {
  readonly #socket: string;

  private constructor(socket: string) {
    this.#socket = socket;
  }

  static async start(socket: string, command: readonly string[], size: { cols: number; rows: number }, confPath: string): Promise<TmuxPane> {
    // No status line (the pane is the whole window); the pane stays after ssh exits so its last
    // screen can be read; xterm's TERM, the terminal most users' sessions are recorded from.
    writeFileSync(
      confPath,
      ['set -g status off', 'set -g remain-on-exit on', "set -g remain-on-exit-format ''", 'set -g default-terminal xterm-256color', 'set -g history-limit 0'].join('\n') + '\n',
    );
    const pane = new TmuxPane(socket);
    const shellCommand = command.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    await runOk('tmux', ['-L', socket, '-f', confPath, 'new-session', '-d', '-s', 'rec', '-x', String(size.cols), '-y', String(size.rows), shellCommand], {
      env: { ...process.env, LANG: 'C.UTF-8', SSH_AUTH_SOCK: '' },
    });
    return pane;
  }

  #tmux(args: readonly string[]): Promise<{ stdout: string }> {
    return runOk('tmux', ['-L', this.#socket, ...args]);
  }

  /** Types text literally, then Enter when asked. */
  async type(text: string, enter = true): Promise<void> {
    await this.#tmux(['send-keys', '-t', 'rec', '-l', text]);
    if (enter) await this.#tmux(['send-keys', '-t', 'rec', 'Enter']);
  }

  async resize(cols: number, rows: number): Promise<void> {
    await this.#tmux(['resize-window', '-t', 'rec', '-x', String(cols), '-y', String(rows)]);
  }

  async screen(): Promise<{ cols: number; rows: number; lines: string[]; cursor: [number, number]; dead: boolean }> {
    const info = (await this.#tmux(['display-message', '-p', '-t', 'rec', '#{pane_width} #{pane_height} #{cursor_x} #{cursor_y} #{pane_dead}'])).stdout.trim().split(' ').map(Number);
    const [cols, rows, cx, cy, dead] = info as [number, number, number, number, number];
    const text = (await this.#tmux(['capture-pane', '-p', '-t', 'rec'])).stdout;
    const lines = text.split('\n').slice(0, rows).map((l) => l.replace(/\s+$/, ''));
    while (lines.length < rows) lines.push('');
    return { cols, rows, lines, cursor: [cx, cy], dead: dead === 1 };
  }

  /** Waits until `marker` is on screen and the screen has not changed for `quietMs`. */
  async settle(marker: string | RegExp, timeoutMs = 15_000, quietMs = 300): Promise<Awaited<ReturnType<TmuxPane['screen']>>> {
    let last = '';
    let since = Date.now();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.screen();
      const key = JSON.stringify(s);
      const has = s.lines.some((l) => (typeof marker === 'string' ? l.includes(marker) : marker.test(l)));
      if (key !== last) {
        last = key;
        since = Date.now();
      } else if (has && Date.now() - since >= quietMs) {
        return s;
      }
      if (Date.now() > deadline) throw new Error(`tmux: ${String(marker)} did not appear; screen:\n${s.lines.join('\n')}`);
      await sleep(50);
    }
  }

  async kill(): Promise<void> {
    await run('tmux', ['-L', this.#socket, 'kill-server']);
  }
}
