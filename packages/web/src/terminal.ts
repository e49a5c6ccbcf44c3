import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { webSessionKeyLine, type WebSessionRequest, type WebTerminal } from '@portcullis/proxy';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { z } from 'zod';
import { TERMINAL_CLOSE, TERMINAL_PATH, TERMINAL_PROTOCOL, type TerminalServerMessage } from '../shared/terminal-protocol.js';
import { type GatewayContext, type SessionCarrier, requireSignedIn } from './context.js';
import { originAllowed } from './csrf.js';
import { WebError } from './errors.js';

/*
 * The browser terminal: a WebSocket per tab at /web/api/terminal (subprotocol
 * portcullis.terminal.v1) relayed to the proxy's session engine, so a browser session is
 * authorized, dialled and recorded exactly as an SSH one. The upgrade is held to the live
 * view's rules (Origin of this gateway, a signed-in browser session, our subprotocol), refused
 * with a plain HTTP status before any WebSocket exists.
 *
 * For each terminal the gateway has auth mint a user certificate with the browser's login
 * session (POST /v1/certs/user). That is where auth applies a role's per-session second
 * factor: ERR_MFA_REQUIRED becomes an `mfa` message, and the page's code goes back in the
 * retry. The certificate then stands where an SSH client's would, and the engine checks it so.
 */

/** The proxy's engine as the gateway uses it (WebSessionEngine). */
export interface TerminalEngine {
  open(r: WebSessionRequest): Promise<WebTerminal>;
}

const size = { cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) };
const clientMessage = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('open'), host: z.string().min(1).max(253), login: z.string().min(1).max(32), ...size }),
  z.strictObject({ type: z.literal('mfa-answer'), totp: z.string().regex(/^\d{6,8}$/) }),
  z.strictObject({ type: z.literal('resize'), ...size }),
  z.strictObject({ type: z.literal('ping'), t: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
  z.strictObject({ type: z.literal('close'), reason: z.string().max(1024) }),
]);
type ClientMessage = z.infer<typeof clientMessage>;

/** A text frame from the page, or the reason it is not a v1 message. */
export function parseTerminalClientMessage(text: string): { ok: true; message: ClientMessage } | { ok: false; reason: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'a text frame that is not JSON' };
  }
  const r = clientMessage.safeParse(parsed);
  if (!r.success) return { ok: false, reason: `not a ${TERMINAL_PROTOCOL} message: ${r.error.issues[0]?.message ?? 'invalid'}` };
  return { ok: true, message: r.data };
}

/** Output queued for a slow browser before the target is no longer read. */
const HIGH_WATER = 1024 * 1024;
const OPEN_TIMEOUT_MS = 15_000;
const MFA_TIMEOUT_MS = 120_000;
const MFA_ATTEMPTS = 3;
const RECHECK_INTERVAL_MS = 30_000;
/** Keystrokes and pastes: a paste of a few hundred KB is plausible, a megabyte frame is not. */
const MAX_FRAME = 1024 * 1024;
/** The certificate only needs to outlive the dial. */
const CERT_TTL_SECONDS = 120;

function refuse(socket: Duplex, status: number, reason: string): void {
  const text = `${reason}\n`;
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
}

export function isTerminalPath(url: string | undefined): boolean {
  return url === TERMINAL_PATH || (url ?? '').startsWith(`${TERMINAL_PATH}?`);
}

export class TerminalSockets {
  readonly #ctx: GatewayContext;
  readonly #engine: TerminalEngine | undefined;
  readonly #wss: WebSocketServer;
  readonly #sockets = new Set<WebSocket>();

  constructor(ctx: GatewayContext, engine: TerminalEngine | undefined) {
    this.#ctx = ctx;
    this.#engine = engine;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_FRAME,
      // Terminal bytes are small and latency-bound; compression would cost more than it saves.
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(TERMINAL_PROTOCOL) ? TERMINAL_PROTOCOL : false),
    });
  }

  get open(): number {
    return this.#sockets.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    void this.#upgrade(req, socket, head).catch((e: unknown) => {
      if (e instanceof WebError) refuse(socket, e.status, e.message.replace(/[\r\n]/g, ' ').slice(0, 200));
      else {
        this.#ctx.log(`web: terminal upgrade failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        refuse(socket, 500, 'internal error');
      }
    });
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (!originAllowed(req.headers.origin, this.#ctx.origins)) throw new WebError('ERR_FORBIDDEN', 'Forbidden origin');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!offered.includes(TERMINAL_PROTOCOL)) throw new WebError('ERR_BAD_REQUEST', `Expected subprotocol ${TERMINAL_PROTOCOL}`);
    const carrier: SessionCarrier = { headers: req.headers, webSession: null };
    await requireSignedIn(this.#ctx, carrier);
    if (this.#engine === undefined) throw new WebError('ERR_UNAVAILABLE', 'This gateway has no session engine for terminals');
    const engine = this.#engine;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#sockets.add(ws);
      ws.on('close', () => this.#sockets.delete(ws));
      void new TerminalSocket(this.#ctx, engine, ws, carrier, req.socket.remoteAddress ?? '').run();
    });
  }

  closeAll(): void {
    for (const ws of this.#sockets) ws.close(1001, 'the gateway is shutting down');
    this.#wss.close();
  }
}

/** One browser tab's terminal, from its `open` message to the close. */
class TerminalSocket {
  #terminal: WebTerminal | undefined;
  #closed = false;
  #waiter: ((m: ClientMessage) => void) | undefined;
  #pending: Buffer[] = [];
  #flush: NodeJS.Immediate | undefined;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly engine: TerminalEngine,
    private readonly ws: WebSocket,
    private readonly carrier: SessionCarrier,
    private readonly peer: string,
  ) {}

  #send(m: TerminalServerMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  /** Says why in a message (close reasons are capped at 123 bytes), then closes. */
  #close(code: number, reason: string, exit: { status?: number; signal?: string } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#flushNow();
    this.#send({ type: 'close', reason, ...exit });
    this.#terminal?.close(reason);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, Buffer.from(reason).subarray(0, 120).toString());
  }

  async run(): Promise<void> {
    const ws = this.ws;
    ws.on('message', (data: RawData, binary: boolean) => this.#onMessage(data, binary));
    ws.on('close', () => {
      this.#closed = true;
      this.#terminal?.close('the browser closed the terminal');
    });
    const recheck = setInterval(() => {
      this.carrier.webSession = null;
      requireSignedIn(this.ctx, this.carrier).catch((e: unknown) => this.#close(TERMINAL_CLOSE.unauthorized, e instanceof Error ? e.message : 'signed out'));
    }, RECHECK_INTERVAL_MS);
    ws.once('close', () => clearInterval(recheck));
    try {
      const open = await this.#next(OPEN_TIMEOUT_MS);
      if (open?.type !== 'open') return this.#close(TERMINAL_CLOSE.protocol, 'the first message must be "open"');
      const certificate = await this.#certificate();
      if (certificate === undefined) return;
      const { signedIn } = await requireSignedIn(this.ctx, this.carrier);
      const terminal = await this.engine.open({
        user: signedIn.user,
        certificate,
        login: open.login,
        host: open.host,
        cols: open.cols,
        rows: open.rows,
        clientAddress: this.peer.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1'),
      });
      if (this.#closed) return terminal.close('the browser closed the terminal');
      this.#terminal = terminal;
      this.#send({ type: 'session', id: terminal.sessionId, host: terminal.host, login: terminal.login });
      terminal.onOutput((d) => this.#output(d));
      terminal.onExit((e) => {
        this.#terminal = undefined;
        this.#close(TERMINAL_CLOSE.exited, e.reason, { ...(e.status === undefined ? {} : { status: e.status }), ...(e.signal === undefined ? {} : { signal: e.signal }) });
      });
    } catch (e) {
      const message = (e instanceof Error ? e.message : String(e)).replace(/^proxy: /, '');
      const code = e instanceof WebError && e.code === 'ERR_UNAUTHENTICATED' ? TERMINAL_CLOSE.unauthorized : e instanceof WebError && e.status >= 500 ? TERMINAL_CLOSE.failed : TERMINAL_CLOSE.refused;
      this.#close(code, message);
    }
  }

  /** A user certificate from auth for this session, asking the page for a code while auth wants one. */
  async #certificate(): Promise<string | undefined> {
    let totp: string | undefined;
    for (let attempt = 0; ; attempt++) {
      const { signedIn } = await requireSignedIn(this.ctx, this.carrier);
      try {
        const r = await this.ctx.auth.call<{ certificate: string }>('POST', '/v1/certs/user', {
          token: signedIn.token,
          json: { public_key: webSessionKeyLine(), ttl: CERT_TTL_SECONDS, ...(totp === undefined ? {} : { totp }) },
        });
        return r.certificate;
      } catch (e) {
        const mfa = e instanceof WebError && (e.code === 'ERR_MFA_REQUIRED' || (e.code === 'ERR_MFA_INVALID' && totp !== undefined));
        if (!mfa) throw e;
        if (attempt >= MFA_ATTEMPTS) throw new WebError('ERR_FORBIDDEN', 'too many wrong codes; open the terminal again');
        this.#send({ type: 'mfa', methods: ['totp'], ...(totp === undefined ? {} : { error: e.message }) });
        const answer = await this.#next(MFA_TIMEOUT_MS, 'mfa-answer');
        if (answer?.type !== 'mfa-answer') {
          this.#close(TERMINAL_CLOSE.refused, 'no second factor given');
          return undefined;
        }
        totp = answer.totp;
      }
    }
  }

  /** The next text message (of a type, if given), or undefined on timeout or close. */
  #next(timeoutMs: number, type?: ClientMessage['type']): Promise<ClientMessage | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), timeoutMs);
      const onClose = (): void => done(undefined);
      const done = (m: ClientMessage | undefined): void => {
        clearTimeout(timer);
        this.ws.off('close', onClose);
        this.#waiter = undefined;
        resolve(m);
      };
      this.ws.once('close', onClose);
      this.#waiter = (m) => {
        if (type === undefined || m.type === type) done(m);
      };
    });
  }

  #onMessage(data: RawData, binary: boolean): void {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (binary) {
      // Keystrokes before the shell exists have nowhere to go; the page only sends after `session`.
      this.#terminal?.write(bytes);
      return;
    }
    const r = parseTerminalClientMessage(bytes.toString('utf8'));
    if (!r.ok) return this.#close(TERMINAL_CLOSE.protocol, r.reason);
    const m = r.message;
    if (this.#waiter !== undefined) return this.#waiter(m);
    switch (m.type) {
      case 'ping':
        return this.#send({ type: 'pong', t: m.t });
      case 'resize':
        return this.#terminal?.resize(m.cols, m.rows);
      case 'close':
        return this.#close(TERMINAL_CLOSE.exited, m.reason || 'closed by the user');
      default:
        return undefined;
    }
  }

  /**
   * Output chunks read in the same turn of the event loop go out as one frame: a burst of small
   * ssh2 packets costs one WebSocket frame, and a lone keystroke echo waits no timer.
   */
  #output(d: Uint8Array): void {
    this.#pending.push(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    this.#flush ??= setImmediate(() => this.#flushNow());
  }

  #flushNow(): void {
    if (this.#flush !== undefined) clearImmediate(this.#flush);
    this.#flush = undefined;
    if (this.#pending.length === 0 || this.ws.readyState !== WebSocket.OPEN) return;
    const frame = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    this.#pending = [];
    this.ws.send(frame, { binary: true });
    if (this.ws.bufferedAmount > HIGH_WATER && this.#terminal !== undefined) {
      const t = this.#terminal;
      t.pause();
      const check = (): void => {
        if (this.ws.readyState !== WebSocket.OPEN) return;
        if (this.ws.bufferedAmount < HIGH_WATER / 4) t.resume();
        else setTimeout(check, 10);
      };
      setTimeout(check, 10);
    }
  }
}
