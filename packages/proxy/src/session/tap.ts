/**
 * The one place every byte and event of a relayed session passes. The recorder (issue 5)
 * implements SessionTap; until then NO_TAP. A tap may apply backpressure by returning a
 * promise: the relay waits for it before reading more from the side that produced the data.
 */
export interface SessionMeta {
  readonly sessionId: string;
  readonly user: string;
  readonly login: string;
  readonly host: string;
  readonly clientAddress: string;
  readonly certSerial: bigint;
  readonly certKeyId: string;
  /** How the target was chosen: `user-name` (login%host), `jump` (ProxyJump), `stdio`, `web`. */
  readonly route: 'user-name' | 'jump' | 'stdio' | 'web';
}

export type ChannelEvent =
  | { readonly type: 'open'; readonly channel: number; readonly kind: 'session' | 'direct-tcpip' | 'forwarded-tcpip' | 'x11' | 'agent' }
  | { readonly type: 'pty'; readonly channel: number; readonly term: string; readonly cols: number; readonly rows: number }
  | { readonly type: 'resize'; readonly channel: number; readonly cols: number; readonly rows: number }
  | { readonly type: 'env'; readonly channel: number; readonly name: string; readonly value: string }
  | { readonly type: 'shell'; readonly channel: number }
  | { readonly type: 'exec'; readonly channel: number; readonly command: string }
  | { readonly type: 'subsystem'; readonly channel: number; readonly name: string }
  | { readonly type: 'signal'; readonly channel: number; readonly name: string }
  | { readonly type: 'forward'; readonly channel: number; readonly direction: 'local' | 'remote'; readonly host: string; readonly port: number; readonly origin: string }
  | { readonly type: 'exit'; readonly channel: number; readonly status?: number; readonly signal?: string }
  | { readonly type: 'close'; readonly channel: number };

export interface SessionTap {
  start(meta: SessionMeta): void | Promise<void>;
  /** Bytes from the target to the client (stdout = 0, stderr = 1). */
  output(channel: number, stream: 0 | 1, data: Uint8Array): void | Promise<void>;
  /** Bytes from the client to the target. */
  input(channel: number, data: Uint8Array): void | Promise<void>;
  event(e: ChannelEvent): void | Promise<void>;
  end(summary: { readonly bytesIn: number; readonly bytesOut: number; readonly reason: string }): void | Promise<void>;
}

export const NO_TAP: SessionTap = {
  start() {},
  output() {},
  input() {},
  event() {},
  end() {},
};
