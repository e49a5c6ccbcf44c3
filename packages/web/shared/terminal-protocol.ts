/*
 * The browser terminal's WebSocket protocol, version 1. Terminal bytes travel as raw binary
 * frames both ways (keystrokes up, output down), never as strings inside JSON; everything else
 * is a small typed text message. The gateway validates what it receives with zod
 * (src/terminal.ts); the app with parseTerminalServerMessage below, which imports nothing so it
 * compiles into the browser bundle.
 */

/** The subprotocol; a new version gets a new name, so an old page fails loudly, not subtly. */
export const TERMINAL_PROTOCOL = 'portcullis.terminal.v1';
export const TERMINAL_PATH = '/web/api/terminal';

/** Close codes besides 1000 (the shell exited) and 1001 (the gateway is stopping). */
export const TERMINAL_CLOSE = {
  exited: 1000,
  /** The browser session ended, or was never signed in. */
  unauthorized: 4401,
  /** Access refused: login not allowed, host unknown, second factor wrong too often. */
  refused: 4403,
  /** A message that is not protocol v1. */
  protocol: 4400,
  /** The target or the recorder failed; the reason says what. */
  failed: 4500,
} as const;

/** Client to server, as text frames. The first must be `open`. */
export type TerminalClientMessage =
  | { readonly type: 'open'; readonly host: string; readonly login: string; readonly cols: number; readonly rows: number }
  | { readonly type: 'mfa-answer'; readonly totp: string }
  | { readonly type: 'resize'; readonly cols: number; readonly rows: number }
  | { readonly type: 'ping'; readonly t: number }
  | { readonly type: 'close'; readonly reason: string };

/** Server to client, as text frames. */
export type TerminalServerMessage =
  /** The session is recorded under this id (the player and live view find it by it). */
  | { readonly type: 'session'; readonly id: string; readonly host: string; readonly login: string }
  /** A role demands a second factor for this session; answer with `mfa-answer`. */
  | { readonly type: 'mfa'; readonly methods: readonly string[]; readonly error?: string }
  | { readonly type: 'pong'; readonly t: number }
  /** Sent right before the socket closes: why, and the shell's exit when it had one. */
  | { readonly type: 'close'; readonly reason: string; readonly status?: number; readonly signal?: string };

const isInt = (v: unknown, min: number, max: number): v is number => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
const isStr = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;

/** The app's validator for the gateway's text frames; undefined for anything not of v1. */
export function parseTerminalServerMessage(text: string): TerminalServerMessage | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const m = v as Record<string, unknown>;
  switch (m['type']) {
    case 'session':
      return isStr(m['id'], 128) && isStr(m['host'], 256) && isStr(m['login'], 64) ? { type: 'session', id: m['id'], host: m['host'], login: m['login'] } : undefined;
    case 'mfa': {
      const methods = m['methods'];
      if (!Array.isArray(methods) || methods.length > 8 || !methods.every((x) => isStr(x, 32))) return undefined;
      if (m['error'] !== undefined && !isStr(m['error'], 1024)) return undefined;
      return { type: 'mfa', methods: methods as string[], ...(typeof m['error'] === 'string' ? { error: m['error'] } : {}) };
    }
    case 'pong':
      return isInt(m['t'], 0, Number.MAX_SAFE_INTEGER) ? { type: 'pong', t: m['t'] } : undefined;
    case 'close': {
      if (!isStr(m['reason'], 1024)) return undefined;
      if (m['status'] !== undefined && !isInt(m['status'], 0, 255)) return undefined;
      if (m['signal'] !== undefined && !isStr(m['signal'], 32)) return undefined;
      return {
        type: 'close',
        reason: m['reason'],
        ...(typeof m['status'] === 'number' ? { status: m['status'] } : {}),
        ...(typeof m['signal'] === 'string' ? { signal: m['signal'] } : {}),
      };
    }
    default:
      return undefined;
  }
}
