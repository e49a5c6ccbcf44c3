import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { describeEvent, followRecording, readRecordingMeta, type ReplayItem } from '@portcullis/recording';
import { WebSocket, WebSocketServer } from 'ws';
import { LIVE_CLOSE, LIVE_PROTOCOL, TerminalChannel, type LiveMessage } from '../shared/protocol.js';
import { type GatewayContext, type SessionCarrier, requireAdmin } from './context.js';
import { originAllowed } from './csrf.js';
import { WebError } from './errors.js';
import { recordingSummary } from './routes-recordings.js';

/*
 * The live view: a WebSocket per viewer at /web/api/recordings/:id/live that starts from the
 * session's current screen (its latest snapshot) and then follows the recording's Redis stream,
 * so any gateway shows a session that any proxy records. Terminal output goes as binary frames;
 * screens, resizes, notes and the end as typed text messages (shared/protocol.ts).
 *
 * The upgrade is refused, with a plain HTTP status before any WebSocket exists, unless the
 * Origin is one of the gateway's (browsers send it and pages cannot forge it, and SameSite does
 * not cover WebSockets), the cookie names a signed-in admin, and the subprotocol is ours.
 */

const PATH = /^\/web\/api\/recordings\/([^/?#]{1,128})\/live(?:\?.*)?$/;
/** Output queued for a slow viewer before reading Redis pauses. */
const HIGH_WATER = 4 * 1024 * 1024;
const RECHECK_INTERVAL_MS = 30_000;
const PING_INTERVAL_MS = 30_000;

function refuse(socket: Duplex, status: number, reason: string): void {
  const text = `${reason}\n`;
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
}

function waitForDrain(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (ws.bufferedAmount < HIGH_WATER / 2 || ws.readyState !== WebSocket.OPEN) resolve();
      else setTimeout(check, 20);
    };
    check();
  });
}

export class LiveViews {
  readonly #ctx: GatewayContext;
  readonly #wss: WebSocketServer;
  readonly #viewers = new Set<WebSocket>();

  constructor(ctx: GatewayContext) {
    this.#ctx = ctx;
    this.#wss = new WebSocketServer({
      noServer: true,
      // Viewers send nothing but pongs.
      maxPayload: 1024,
      handleProtocols: (protocols) => (protocols.has(LIVE_PROTOCOL) ? LIVE_PROTOCOL : false),
    });
  }

  get viewers(): number {
    return this.#viewers.size;
  }

  /** For the HTTPS server's 'upgrade' event. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    void this.#upgrade(req, socket, head).catch((e: unknown) => {
      if (e instanceof WebError) refuse(socket, e.status, e.message.replace(/[\r\n]/g, ' ').slice(0, 200));
      else {
        this.#ctx.log(`web: live view upgrade failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        refuse(socket, 500, 'internal error');
      }
    });
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const m = PATH.exec(req.url ?? '');
    if (m === null) throw new WebError('ERR_NOT_FOUND', 'no WebSocket here');
    if (!originAllowed(req.headers.origin, this.#ctx.origins)) throw new WebError('ERR_FORBIDDEN', 'Forbidden origin');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!offered.includes(LIVE_PROTOCOL)) throw new WebError('ERR_BAD_REQUEST', `Expected subprotocol ${LIVE_PROTOCOL}`);
    const carrier: SessionCarrier = { headers: req.headers, webSession: null };
    await requireAdmin(this.#ctx, carrier);
    const id = decodeURIComponent(m[1]!);
    const meta = await readRecordingMeta(this.#ctx.redis, id).catch(() => undefined);
    if (meta === undefined) throw new WebError('ERR_NOT_FOUND', 'Recording not found');
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#viewers.add(ws);
      ws.on('close', () => this.#viewers.delete(ws));
      void this.#stream(ws, id, recordingSummary(meta), carrier);
    });
  }

  async #stream(ws: WebSocket, id: string, summary: ReturnType<typeof recordingSummary>, carrier: SessionCarrier): Promise<void> {
    const abort = new AbortController();
    const close = (code: number, reason: string): void => {
      abort.abort();
      if (ws.readyState === WebSocket.OPEN) ws.close(code, reason.slice(0, 120));
    };
    ws.on('close', () => abort.abort());
    ws.on('message', () => close(1008, 'viewers send nothing'));
    let alive = true;
    ws.on('pong', () => (alive = true));
    const ping = setInterval(() => {
      if (!alive) return void ws.terminate();
      alive = false;
      ws.ping();
    }, PING_INTERVAL_MS);
    // A viewer who logs out, whose session is revoked or who loses the admin role stops seeing.
    const recheck = setInterval(() => {
      carrier.webSession = null;
      requireAdmin(this.#ctx, carrier).catch((e: unknown) => close(LIVE_CLOSE.unauthorized, e instanceof Error ? e.message : 'signed out'));
    }, RECHECK_INTERVAL_MS);
    const send = (msg: LiveMessage): void => ws.send(JSON.stringify(msg));
    try {
      send({ type: 'hello', recording: summary });
      let terminal = new TerminalChannel();
      for await (const item of followRecording(this.#ctx.redis, id, { signal: abort.signal, blockMs: 2000 })) {
        if (ws.readyState !== WebSocket.OPEN) break;
        if (this.#forward(item, ws, send, (t) => (terminal = t), terminal) === 'end') return close(LIVE_CLOSE.ended, 'the session ended');
        if (ws.bufferedAmount > HIGH_WATER) await waitForDrain(ws);
      }
      close(LIVE_CLOSE.ended, 'the recording is no longer live');
    } catch (e) {
      if (!abort.signal.aborted) close(LIVE_CLOSE.failed, `live view failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      clearInterval(ping);
      clearInterval(recheck);
    }
  }

  /** One replay item to the viewer; 'end' when the session is over. */
  #forward(item: ReplayItem, ws: WebSocket, send: (m: LiveMessage) => void, choose: (t: TerminalChannel) => void, terminal: TerminalChannel): 'end' | undefined {
    if (item.kind === 'screen') {
      choose(new TerminalChannel(item.snapshot.channel));
      send({ type: 'screen', cols: item.snapshot.cols, rows: item.snapshot.rows, screen: item.snapshot.screen });
      return undefined;
    }
    if (item.kind === 'gap') {
      send({ type: 'gap', from: item.from, to: item.to });
      return undefined;
    }
    const e = item.event;
    if (e.type === 'output' && terminal.claims(e)) {
      ws.send(e.data, { binary: true });
    } else if ((e.type === 'pty' || e.type === 'resize') && terminal.claims(e)) {
      send({ type: 'resize', cols: e.cols, rows: e.rows });
    } else if (e.type === 'end') {
      send({ type: 'end', reason: e.reason });
      return 'end';
    } else {
      terminal.claims(e);
      const note = describeEvent(e);
      if (note !== undefined) send({ type: 'note', t: e.t, text: note });
    }
    return undefined;
  }

  /** Closes every viewer (the gateway is stopping). */
  closeAll(): void {
    for (const ws of this.#viewers) ws.close(1001, 'the gateway is shutting down');
    this.#wss.close();
  }
}
