import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/*
 * Every label takes values from a closed set: a user, login, host or key id as a label would
 * make one series per value and let any client grow the registry without bound. Who did what
 * is the audit log's job.
 */

/** `ssh_cert_auth_total{result}`: how a client's certificate login attempt ended. */
export const CERT_AUTH_RESULTS = [
  'success',
  'not_a_certificate',
  'untrusted_ca',
  'bad_signature',
  'expired',
  'not_yet_valid',
  'revoked',
  'wrong_principal',
  'source_address',
  'malformed',
  'unknown_user',
  'access_denied',
  'login_not_allowed',
  'unavailable',
  'error',
] as const;
export type CertAuthResult = (typeof CERT_AUTH_RESULTS)[number];

export const TERMINATION_REASONS = ['lock', 'revocation', 'idle', 'shutdown', 'recording', 'target_lost'] as const;
export type TerminationReason = (typeof TERMINATION_REASONS)[number];

export const CHANNEL_KINDS = ['session', 'direct-tcpip', 'forwarded-tcpip', 'tcpip-forward', 'x11', 'agent', 'pty', 'env', 'other'] as const;
export type ChannelKind = (typeof CHANNEL_KINDS)[number];

/** Connection set-up toward targets: most take milliseconds on a LAN, a slow WAN seconds. */
const DIAL_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface ProxyMetrics {
  readonly registry: Registry;
  certAuth(result: CertAuthResult): void;
  sessionStarted(): void;
  sessionEnded(): void;
  /** Payload bytes relayed; `toTarget` is client-to-target. */
  bytes(toTarget: number, toClient: number): void;
  dial(seconds: number, ok: boolean): void;
  channelRefused(kind: ChannelKind): void;
  terminated(reason: TerminationReason): void;
  setKrlAge(seconds: number): void;
  setThrottledAddresses(count: number): void;
  text(): Promise<string>;
  readonly contentType: string;
}

export interface ProxyMetricsOptions {
  /** A registry shared with the rest of the process (default: a new one). */
  readonly registry?: Registry;
  /** Also export process_* and nodejs_* metrics (default true with a new registry, false with a shared one). */
  readonly defaultMetrics?: boolean;
}

export function createProxyMetrics(options: ProxyMetricsOptions = {}): ProxyMetrics {
  const registry = options.registry ?? new Registry();
  if (options.defaultMetrics ?? options.registry === undefined) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const auth = new Counter({
    name: 'ssh_cert_auth_total',
    help: "Client certificate logins at the proxy, by result (success or why it was refused).",
    labelNames: ['result'] as const,
    registers,
  });
  const active = new Gauge({
    name: 'portcullis_proxy_active_sessions',
    help: 'Authenticated client connections currently relayed to a target.',
    registers,
  });
  const sessions = new Counter({
    name: 'portcullis_proxy_sessions_total',
    help: 'Authenticated client connections relayed to a target since start.',
    registers,
  });
  const bytes = new Counter({
    name: 'portcullis_proxy_bytes_total',
    help: 'Channel payload bytes relayed, by direction.',
    labelNames: ['direction'] as const,
    registers,
  });
  const dial = new Histogram({
    name: 'portcullis_proxy_dial_duration_seconds',
    help: 'Time from dialling a target to its SSH login completing (certificate minting included), by outcome.',
    labelNames: ['result'] as const,
    buckets: DIAL_BUCKETS,
    registers,
  });
  const refused = new Counter({
    name: 'portcullis_proxy_channel_refusals_total',
    help: 'Channels and channel requests refused by policy, by kind.',
    labelNames: ['kind'] as const,
    registers,
  });
  const terminated = new Counter({
    name: 'portcullis_proxy_sessions_terminated_total',
    help: 'Live connections ended by the proxy, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const krlAge = new Gauge({
    name: 'portcullis_proxy_krl_age_seconds',
    help: 'Seconds since the KRL was last confirmed current with auth (logins stop when it is too old).',
    registers,
  });
  const throttled = new Gauge({
    name: 'portcullis_proxy_throttled_addresses',
    help: 'Client addresses currently slowed down after failed logins.',
    registers,
  });
  for (const result of CERT_AUTH_RESULTS) auth.inc({ result }, 0);
  for (const reason of TERMINATION_REASONS) terminated.inc({ reason }, 0);
  bytes.inc({ direction: 'to_target' }, 0);
  bytes.inc({ direction: 'to_client' }, 0);

  return {
    registry,
    contentType: registry.contentType,
    certAuth(result) {
      auth.inc({ result: CERT_AUTH_RESULTS.includes(result) ? result : 'error' });
    },
    sessionStarted() {
      active.inc();
      sessions.inc();
    },
    sessionEnded() {
      active.dec();
    },
    bytes(toTarget, toClient) {
      if (toTarget > 0) bytes.inc({ direction: 'to_target' }, toTarget);
      if (toClient > 0) bytes.inc({ direction: 'to_client' }, toClient);
    },
    dial(seconds, ok) {
      dial.observe({ result: ok ? 'ok' : 'error' }, seconds);
    },
    channelRefused(kind) {
      refused.inc({ kind: CHANNEL_KINDS.includes(kind) ? kind : 'other' });
    },
    terminated(reason) {
      terminated.inc({ reason });
    },
    setKrlAge(seconds) {
      krlAge.set(seconds);
    },
    setThrottledAddresses(count) {
      throttled.set(count);
    },
    text: () => registry.metrics(),
  };
}
