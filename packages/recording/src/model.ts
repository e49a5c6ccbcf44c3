import type { SftpOperation } from './sftp.js';

/**
 * The shapes the proxy's SessionTap calls with (packages/proxy/src/session/tap.ts), declared
 * here so that the proxy depends on the recorder and never the other way round: TypeScript
 * compares them structurally, so a Recorder is accepted where a SessionTap is expected.
 */
export interface SessionMeta {
  readonly sessionId: string;
  readonly user: string;
  readonly login: string;
  readonly host: string;
  readonly clientAddress: string;
  readonly certSerial: bigint;
  readonly certKeyId: string;
  readonly route: 'user-name' | 'jump' | 'stdio' | 'web';
}

export type ChannelKind = 'session' | 'direct-tcpip' | 'forwarded-tcpip' | 'x11' | 'agent';

export type ChannelEvent =
  | { readonly type: 'open'; readonly channel: number; readonly kind: ChannelKind }
  | { readonly type: 'pty'; readonly channel: number; readonly term: string; readonly cols: number; readonly rows: number }
  | { readonly type: 'resize'; readonly channel: number; readonly cols: number; readonly rows: number }
  | { readonly type: 'env'; readonly channel: number; readonly name: string; readonly value: string }
  | { readonly type: 'shell'; readonly channel: number }
  | { readonly type: 'exec'; readonly channel: number; readonly command: string }
  | { readonly type: 'subsystem'; readonly channel: number; readonly name: string }
  | { readonly type: 'signal'; readonly channel: number; readonly name: string }
  | {
      readonly type: 'forward';
      readonly channel: number;
      readonly direction: 'local' | 'remote';
      readonly host: string;
      readonly port: number;
      readonly origin: string;
    }
  | { readonly type: 'exit'; readonly channel: number; readonly status?: number; readonly signal?: string }
  | { readonly type: 'close'; readonly channel: number };

export interface SessionSummary {
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly reason: string;
}

export type RecordingMode = 'strict' | 'best-effort';
export type RecordingState = 'live' | 'ended' | 'interrupted';

/** Everything known about one recorded session; stored as the `meta` hash. */
export interface RecordingMeta {
  readonly id: string;
  readonly user: string;
  readonly login: string;
  readonly host: string;
  readonly clientAddress: string;
  /** Decimal: a uint64 does not fit a JSON number. */
  readonly certSerial: string;
  readonly certKeyId: string;
  readonly route: string;
  readonly mode: RecordingMode;
  readonly inputRecorded: boolean;
  /** The first exec command, `subsystem:<name>` for a subsystem; absent for a login shell. */
  readonly command?: string;
  readonly term?: string;
  /** The terminal size when the pty was requested (resize events carry later sizes). */
  readonly cols?: number;
  readonly rows?: number;
  /** Unix milliseconds. */
  readonly startedAt: number;
  readonly endedAt?: number;
  readonly exitStatus?: number;
  readonly exitSignal?: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly state: RecordingState;
  readonly endReason?: string;
  /** Sequence number of the last event stored or spooled (events count from 1). */
  readonly lastSeq: number;
  /** Events that could be neither stored nor spooled (best effort, disk and Redis both failing). */
  readonly lostEvents: number;
  /** Hex sha256 chain value after the last event; set when the recording is finished. */
  readonly digest?: string;
  /** Base64 SSH signature blob over signedRecordingPayload(meta). */
  readonly signature?: string;
  /** The signer's public key as an authorized_keys line, for display; verify takes the trusted key. */
  readonly signedBy?: string;
}

interface EventTime {
  /** 1, 2, 3...: a missing number is a missing event. */
  readonly seq: number;
  /** Milliseconds since the session started; never decreases. */
  readonly t: number;
}

export type RecordingEventBody =
  | { readonly type: 'output'; readonly channel: number; readonly stream: 0 | 1; readonly data: Uint8Array }
  | { readonly type: 'input'; readonly channel: number; readonly data: Uint8Array }
  | { readonly type: 'channel'; readonly channel: number; readonly kind: ChannelKind }
  | { readonly type: 'pty'; readonly channel: number; readonly term: string; readonly cols: number; readonly rows: number }
  | { readonly type: 'resize'; readonly channel: number; readonly cols: number; readonly rows: number }
  | { readonly type: 'env'; readonly channel: number; readonly name: string; readonly value: string }
  | { readonly type: 'shell'; readonly channel: number }
  | { readonly type: 'exec'; readonly channel: number; readonly command: string }
  | { readonly type: 'subsystem'; readonly channel: number; readonly name: string }
  | { readonly type: 'signal'; readonly channel: number; readonly name: string }
  | {
      readonly type: 'forward-open';
      readonly channel: number;
      readonly direction: 'local' | 'remote';
      readonly host: string;
      readonly port: number;
      readonly origin: string;
    }
  | { readonly type: 'exit'; readonly channel: number; readonly status?: number; readonly signal?: string }
  /** A channel closed; its byte counts (forwarded channels have no other trace of their data). */
  | { readonly type: 'close'; readonly channel: number; readonly bytesIn: number; readonly bytesOut: number }
  | { readonly type: 'sftp'; readonly channel: number; readonly op: SftpOperation }
  /** Events dropped because neither Redis nor the spool disk would take them. */
  | { readonly type: 'lost'; readonly events: number; readonly bytes: number; readonly reason: string }
  | {
      readonly type: 'end';
      readonly reason: string;
      readonly bytesIn: number;
      readonly bytesOut: number;
      readonly interrupted: boolean;
    };

export type RecordingEvent = RecordingEventBody & EventTime;
export type RecordingEventType = RecordingEvent['type'];

/** A terminal screen at one moment, so a viewer starts from it instead of replaying everything. */
export interface ScreenSnapshot {
  readonly channel: number;
  /** The last event whose output the screen includes. */
  readonly seq: number;
  readonly t: number;
  readonly cols: number;
  readonly rows: number;
  /** Escape sequences that redraw the screen in a fresh terminal of cols x rows. */
  readonly screen: string;
}
