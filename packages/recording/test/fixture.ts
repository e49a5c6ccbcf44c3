import type { TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { startRedis, tempDir, type RedisHandle, type TempDir } from '@portcullis/harness';
import type { SessionMeta } from '../src/model.js';
import type { ReplayItem } from '../src/replay.js';
import { TerminalScreen, type ScreenText } from '../src/screen.js';

export interface RedisFixture {
  readonly tmp: TempDir;
  server: RedisHandle;
  readonly redis: Redis;
  /** A second, independent connection (another proxy, a viewer). */
  connect(): Redis;
  /** Stops the server; restart() brings it back on the same port with its data (AOF). */
  restart(): Promise<void>;
}

/** A real redis-server with append-only persistence, so a stop and start keeps what it stored. */
export async function redisFixture(t: TestContext): Promise<RedisFixture> {
  const tmp = tempDir('portcullis-recording-');
  const config = ['appendonly yes', 'appendfsync always'];
  const dir = tmp.file('redis');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  const server = await startRedis({ dir, extraConfig: config });
  const clients: Redis[] = [];
  const connect = (): Redis => {
    // Few retries: a recorder must notice a dead Redis quickly; it keeps reconnecting anyway.
    const r = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100, lazyConnect: false });
    r.on('error', () => {});
    clients.push(r);
    return r;
  };
  const fx: RedisFixture = {
    tmp,
    server,
    redis: connect(),
    connect,
    async restart() {
      await fx.server.stop();
      fx.server = await startRedis({ dir, port: server.port!, extraConfig: config });
    },
  };
  t.after(async () => {
    for (const c of clients) c.disconnect();
    await fx.server.stop();
    tmp.remove();
  });
  return fx;
}

let n = 0;
export function sessionMeta(over: Partial<SessionMeta> = {}): SessionMeta {
  n++;
  return {
    sessionId: `s-${process.pid}-${Date.now()}-${n}`,
    user: 'alice',
    login: 'ubuntu',
    host: 'web01',
    clientAddress: '192.0.2.7:50022',
    certSerial: 18446744073709551615n,
    certKeyId: 'alice@example.com',
    route: 'user-name',
    ...over,
  };
}

/** A clock the test moves: offsets in the recording are then exact. */
export function manualClock(start = 1_700_000_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Plays replay items into a terminal, the way a viewer does, and returns the final screen. */
export async function renderReplay(items: AsyncIterable<ReplayItem>, cols: number, rows: number, channel = 0): Promise<{ text: ScreenText; events: number; fromScreen: boolean; gaps: number }> {
  let screen = new TerminalScreen(cols, rows);
  let events = 0;
  let fromScreen = false;
  let gaps = 0;
  for await (const item of items) {
    if (item.kind === 'screen') {
      screen.dispose();
      screen = new TerminalScreen(item.snapshot.cols, item.snapshot.rows);
      screen.write(item.snapshot.screen);
      fromScreen = true;
    } else if (item.kind === 'gap') {
      gaps++;
    } else {
      events++;
      const e = item.event;
      if (e.type === 'output' && e.channel === channel) screen.write(e.data);
      else if (e.type === 'resize' && e.channel === channel) screen.resize(e.cols, e.rows);
    }
  }
  const text = await screen.text();
  screen.dispose();
  return { text, events, fromScreen, gaps };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
