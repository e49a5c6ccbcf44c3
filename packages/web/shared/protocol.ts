/*
 * What the gateway and the browser app say to each other about recordings, written once and
 * compiled into both (this file imports nothing, so it runs in either). JSON over HTTP for the
 * player; a WebSocket for the live view, where terminal output travels as raw binary frames and
 * everything else as small typed messages that both ends validate.
 */

/** The WebSocket subprotocol of the live view; a new version gets a new name. */
export const LIVE_PROTOCOL = 'portcullis.live.v1';

/** Close codes the live view uses besides the standard ones. */
export const LIVE_CLOSE = {
  /** The recording ended (after the `end` message). */
  ended: 1000,
  /** The viewer's session expired, was logged out or lost the admin role. */
  unauthorized: 4401,
  notFound: 4404,
  /** The gateway failed (Redis); the reason says what. */
  failed: 4500,
} as const;

/** A recording as lists and the player show it (the gateway's view of RecordingMeta). */
export interface RecordingSummary {
  readonly id: string;
  readonly user: string;
  readonly login: string;
  readonly host: string;
  readonly clientAddress: string;
  readonly route: string;
  readonly state: 'live' | 'ended' | 'interrupted';
  readonly command?: string;
  readonly cols?: number;
  readonly rows?: number;
  /** Unix ms. */
  readonly startedAt: number;
  readonly endedAt?: number;
  readonly exitStatus?: number;
  readonly exitSignal?: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly lostEvents: number;
  readonly signed: boolean;
  /** Command search: the matching command lines. */
  readonly matches?: readonly string[];
}

/** One item of a recording as the player receives it; `data` is base64. */
export type WireItem =
  | { readonly kind: 'screen'; readonly channel: number; readonly seq: number; readonly t: number; readonly cols: number; readonly rows: number; readonly screen: string }
  | { readonly kind: 'gap'; readonly from: number; readonly to: number }
  | { readonly kind: 'event'; readonly event: WireEvent };

/** A recording event with its bytes as base64; other fields as the recording package stores them. */
export interface WireEvent {
  readonly type: string;
  readonly seq: number;
  readonly t: number;
  readonly channel?: number;
  readonly data?: string;
  readonly cols?: number;
  readonly rows?: number;
  /** What a non-terminal event was, for the player's markers ("exec: ls", "exit status 0"). */
  readonly note?: string;
  readonly [field: string]: unknown;
}

export interface EventsPage {
  readonly items: readonly WireItem[];
  /** Pass as `after` for the next page; null at the end of what is stored now. */
  readonly next: string | null;
}

/** Server to client, as text frames (terminal output goes as binary frames, unwrapped). */
export type LiveMessage =
  | { readonly type: 'hello'; readonly recording: RecordingSummary }
  | { readonly type: 'screen'; readonly cols: number; readonly rows: number; readonly screen: string }
  | { readonly type: 'resize'; readonly cols: number; readonly rows: number }
  | { readonly type: 'note'; readonly t: number; readonly text: string }
  | { readonly type: 'gap'; readonly from: number; readonly to: number }
  | { readonly type: 'end'; readonly reason: string };

const isInt = (v: unknown, min = 0, max = 1_000_000_000_000_000): v is number => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
const isStr = (v: unknown, max = 1 << 20): v is string => typeof v === 'string' && v.length <= max;

/** Terminal sizes both ends accept: what a pty may be, not what a screen is. */
export function isTerminalSize(cols: unknown, rows: unknown): boolean {
  return isInt(cols, 1, 1000) && isInt(rows, 1, 1000);
}

function isSummary(v: unknown): v is RecordingSummary {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return isStr(r['id'], 128) && isStr(r['user'], 256) && isStr(r['host'], 256) && isStr(r['login'], 256) && isInt(r['startedAt']) && (r['state'] === 'live' || r['state'] === 'ended' || r['state'] === 'interrupted');
}

/** Parses a text frame; undefined for anything that is not a message of this version. */
export function parseLiveMessage(text: string): LiveMessage | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const m = v as Record<string, unknown>;
  switch (m['type']) {
    case 'hello':
      return isSummary(m['recording']) ? { type: 'hello', recording: m['recording'] } : undefined;
    case 'screen':
      return isTerminalSize(m['cols'], m['rows']) && isStr(m['screen']) ? { type: 'screen', cols: m['cols'] as number, rows: m['rows'] as number, screen: m['screen'] } : undefined;
    case 'resize':
      return isTerminalSize(m['cols'], m['rows']) ? { type: 'resize', cols: m['cols'] as number, rows: m['rows'] as number } : undefined;
    case 'note':
      return isInt(m['t']) && isStr(m['text'], 4096) ? { type: 'note', t: m['t'], text: m['text'] } : undefined;
    case 'gap':
      return isInt(m['from']) && isInt(m['to']) ? { type: 'gap', from: m['from'], to: m['to'] } : undefined;
    case 'end':
      return isStr(m['reason'], 4096) ? { type: 'end', reason: m['reason'] } : undefined;
    default:
      return undefined;
  }
}

/**
 * Which channel of a session is "the terminal": the first to ask for a pty, a shell or an exec,
 * or to print. Players and the live view follow that one and show the rest as notes.
 */
export class TerminalChannel {
  #chosen: number | undefined;

  constructor(chosen?: number) {
    this.#chosen = chosen;
  }

  get chosen(): number | undefined {
    return this.#chosen;
  }

  /** Does this event belong to the terminal channel (choosing it if none is chosen yet)? */
  claims(e: { readonly type: string; readonly channel?: number }): boolean {
    if (e.channel === undefined) return false;
    if (this.#chosen === undefined && (e.type === 'pty' || e.type === 'shell' || e.type === 'exec' || e.type === 'output')) this.#chosen = e.channel;
    return e.channel === this.#chosen;
  }
}
