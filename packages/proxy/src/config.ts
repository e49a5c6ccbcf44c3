import type { Certificate, CryptoBackend, SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import type { AuthorityClient, UserAccess } from './authority.js';
import { ProxyError } from './errors.js';
import type { ProxyAuditEvent } from './audit.js';
import type { ProxyMetrics } from './metrics.js';
import type { SessionMeta, SessionTap } from './session/tap.js';

/** What `startProxy` takes. Only `authority` and `hostKeys` are required. */
export interface ProxyConfig {
  /** The contract with auth: CAs, KRL, inventory, access, upstream certificates, notices. */
  readonly authority: AuthorityClient;
  /** The proxy's host keys, each with the host certificate auth's host CA signed for it. */
  readonly hostKeys: readonly ProxyHostKey[];
  /** Default 0.0.0.0:3022. Port 0 picks a free port (startProxy reports it). */
  readonly listen?: { readonly host?: string; readonly port?: number };
  /** Security events (refusals, sessions, commands, forwards); must not throw. */
  readonly audit?: (event: ProxyAuditEvent) => void;
  /** Counters and gauges; default a private registry (createProxyMetrics()). */
  readonly metrics?: ProxyMetrics;
  /**
   * One tap per proxied connection, where the recorder sits (recording.ts). It gets the user's
   * access as auth decided it at login, because the role chooses the recording mode and whether
   * input is recorded. Default: none.
   */
  readonly tap?: (meta: SessionMeta, access: UserAccess) => SessionTap;
  /** Operational messages (start-up warnings, unexpected errors). Default: stderr. */
  readonly log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /** Milliseconds since the epoch; the clock of every decision. Default Date.now. */
  readonly now?: () => number;
  readonly crypto?: CryptoBackend;
  /**
   * Who the certificate belongs to. Default: the key id's first blank-separated field, the
   * form auth issues (`alice req=01J...`). Return undefined to refuse the certificate.
   */
  readonly userOf?: (cert: Certificate) => string | undefined;
  /** Environment variables a client may pass to the target (`LC_*` style prefixes). */
  readonly envAllowList?: readonly string[];
  /** Seconds of clock skew tolerated on certificate validity. Default 0 (auth back-dates). */
  readonly skewSeconds?: number;
  /** The proxy's name for logs and the upstream request ids. Default `proxy`. */
  readonly name?: string;
  readonly timeouts?: Partial<ProxyTimeouts>;
  readonly revocation?: Partial<RevocationSettings>;
  readonly throttle?: Partial<ThrottleSettings>;
  /** Most concurrent client connections; more are dropped at accept. Default 10,000. */
  readonly maxConnections?: number;
}

export interface ProxyHostKey {
  readonly privateKey: SigningPrivateKey;
  readonly certificate: Certificate;
}

export interface ProxyTimeouts {
  /** Milliseconds from TCP connect to the target until its SSH login completes. */
  readonly dialMs: number;
  /** Milliseconds a client has to authenticate. */
  readonly authMs: number;
  /** Keepalive interval toward clients and targets (ms); 0 turns keepalives off. */
  readonly keepaliveIntervalMs: number;
  /** Unanswered keepalives before a peer is considered gone. */
  readonly keepaliveCountMax: number;
  /** How long stop() waits for live sessions before ending them. */
  readonly drainGraceMs: number;
  /** How often idle timeouts are checked (ms). */
  readonly idleCheckMs: number;
  /** How long a trusted CA list is reused before asking auth again (ms). */
  readonly caCacheMs: number;
}

export interface RevocationSettings {
  /** How often the KRL is re-fetched (with its ETag, so mostly a 304). */
  readonly refreshMs: number;
  /**
   * After this long without a successful refresh, logins are refused: a proxy cut off from
   * auth must not keep accepting certificates that may have been revoked since.
   */
  readonly maxStaleMs: number;
}

export interface ThrottleSettings {
  /** Delay after the first failure from an address; doubles per further failure. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Addresses remembered at once (least recently seen forgotten first). */
  readonly maxEntries: number;
  /** A failure count is forgotten after this long without another failure. */
  readonly forgetAfterMs: number;
}

export const DEFAULT_LISTEN_PORT = 3022;

/** What a client may set in the target's environment unless configured otherwise. */
export const DEFAULT_ENV_ALLOW_LIST: readonly string[] = ['LANG', 'LC_*', 'TERM'];

export const DEFAULT_TIMEOUTS: ProxyTimeouts = {
  dialMs: 10_000,
  authMs: 30_000,
  keepaliveIntervalMs: 15_000,
  keepaliveCountMax: 3,
  drainGraceMs: 30_000,
  idleCheckMs: 1_000,
  caCacheMs: 60_000,
};

export const DEFAULT_REVOCATION: RevocationSettings = { refreshMs: 5_000, maxStaleMs: 300_000 };

export const DEFAULT_THROTTLE: ThrottleSettings = {
  baseDelayMs: 250,
  maxDelayMs: 8_000,
  maxEntries: 10_000,
  forgetAfterMs: 15 * 60_000,
};

/** The configuration with every default filled in and checked. */
export interface ResolvedConfig {
  readonly authority: AuthorityClient;
  readonly hostKeys: readonly ProxyHostKey[];
  readonly host: string;
  readonly port: number;
  readonly audit: (event: ProxyAuditEvent) => void;
  readonly metrics: ProxyMetrics | undefined;
  readonly tap: ((meta: SessionMeta, access: UserAccess) => SessionTap) | undefined;
  readonly log: (level: 'info' | 'warn' | 'error', message: string) => void;
  readonly now: () => number;
  readonly crypto: CryptoBackend;
  readonly userOf: (cert: Certificate) => string | undefined;
  readonly envAllowList: readonly string[];
  readonly skewSeconds: number;
  readonly name: string;
  readonly timeouts: ProxyTimeouts;
  readonly revocation: RevocationSettings;
  readonly throttle: ThrottleSettings;
  readonly maxConnections: number;
}

// The same shape auth checks before it puts a user into a key id: no blanks, no controls.
const USER_RE = /^[^\s\u0000-\u001f\u007f]{1,256}$/;

/** auth's key id form: `<user> req=<id> ...`. */
export function userFromKeyId(cert: Certificate): string | undefined {
  const first = cert.keyId.split(' ', 1)[0] ?? '';
  return USER_RE.test(first) ? first : undefined;
}

function defaultLog(level: 'info' | 'warn' | 'error', message: string): void {
  process.stderr.write(`portcullis proxy ${level}: ${message}\n`);
}

function positive(name: string, value: number, allowZero = false): number {
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new ProxyError('ERR_CONFIG', `proxy: ${name} expected a ${allowZero ? 'non-negative' : 'positive'} number, got ${value}`);
  }
  return value;
}

export function resolveConfig(c: ProxyConfig): ResolvedConfig {
  if (typeof c !== 'object' || c === null) throw new TypeError('proxy: config is required');
  if (typeof c.authority?.userCAs !== 'function') throw new TypeError('proxy: config.authority must be an AuthorityClient');
  if (!Array.isArray(c.hostKeys) || c.hostKeys.length === 0) {
    throw new ProxyError('ERR_CONFIG', 'proxy: config.hostKeys expected at least one host key with its certificate');
  }
  const port = c.listen?.port ?? DEFAULT_LISTEN_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ProxyError('ERR_CONFIG', `proxy: listen.port expected 0..65535, got ${port}`);
  const timeouts = { ...DEFAULT_TIMEOUTS, ...c.timeouts };
  for (const [k, v] of Object.entries(timeouts)) positive(`timeouts.${k}`, v, k === 'keepaliveIntervalMs' || k === 'keepaliveCountMax');
  const revocation = { ...DEFAULT_REVOCATION, ...c.revocation };
  for (const [k, v] of Object.entries(revocation)) positive(`revocation.${k}`, v);
  const throttle = { ...DEFAULT_THROTTLE, ...c.throttle };
  for (const [k, v] of Object.entries(throttle)) positive(`throttle.${k}`, v, k === 'baseDelayMs' || k === 'maxDelayMs');
  const skewSeconds = positive('skewSeconds', c.skewSeconds ?? 0, true);
  return {
    authority: c.authority,
    hostKeys: c.hostKeys,
    host: c.listen?.host ?? '0.0.0.0',
    port,
    audit: c.audit ?? (() => {}),
    metrics: c.metrics,
    tap: c.tap,
    log: c.log ?? defaultLog,
    now: c.now ?? Date.now,
    crypto: c.crypto ?? nodeCrypto,
    userOf: c.userOf ?? userFromKeyId,
    envAllowList: c.envAllowList ?? DEFAULT_ENV_ALLOW_LIST,
    skewSeconds: Math.floor(skewSeconds),
    name: c.name ?? 'proxy',
    timeouts,
    revocation,
    throttle,
    maxConnections: positive('maxConnections', c.maxConnections ?? 10_000),
  };
}

/** Whether `name` may be passed to the target: an exact entry, or a `PREFIX*` entry. */
export function envAllowed(allowList: readonly string[], name: string): boolean {
  return allowList.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}
