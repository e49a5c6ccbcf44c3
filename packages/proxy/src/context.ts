import type ssh2 from 'ssh2';
import type { Certificate } from '@portcullis/cert-core';
import type { JumpHostKeys } from './jump.js';
import type { AuditFn } from './audit.js';
import type { ResolvedConfig } from './config.js';
import type { ProxyMetrics } from './metrics.js';
import type { Relay, RelayDeps } from './session/relay.js';
import type { FailureThrottle } from './throttle.js';
import type { TrustCache } from './trust.js';
import { UPSTREAM_CIPHERS } from './upstream.js';

/** A connection terminated inside a ProxyJump channel: who opened the channel, to which name. */
export interface JumpHop {
  /** The user of the outer connection; the inner one must authenticate as the same user. */
  readonly user: string;
  /** The target as the client named it in the direct-tcpip request (its ssh checks this name). */
  readonly host: string;
}

/** Everything one running proxy shares between its connections. */
export interface ProxyContext {
  readonly config: ResolvedConfig;
  readonly trust: TrustCache;
  readonly throttle: FailureThrottle;
  readonly metrics: ProxyMetrics;
  readonly audit: AuditFn;
  readonly relayDeps: RelayDeps;
  /** Live relays and the certificate each was opened with (re-checked on notices). */
  readonly relays: Map<Relay, Certificate>;
  /** Where the listener ended up (its port goes into the hint for users). */
  readonly listening: { port: number };
  /** The proxy's short host certificates for the names it stands in for (ProxyJump). */
  readonly jumpKeys: JumpHostKeys;
}

/** ssh2 server settings, the same for the listener and for connections terminated inside a jump. */
export function serverConfig(config: ResolvedConfig, hostKeys: readonly ssh2.EncryptedPrivateKey[]): ssh2.ServerConfig {
  return {
    hostKeys: [...hostKeys],
    ident: 'Portcullis',
    keepaliveInterval: config.timeouts.keepaliveIntervalMs,
    keepaliveCountMax: config.timeouts.keepaliveCountMax,
    // AES-GCM first among what clients offer; OpenSSH's own preference still decides.
    algorithms: { cipher: UPSTREAM_CIPHERS },
  };
}

/** IPv4 peers on a dual-stack socket arrive as ::ffff:a.b.c.d; audit and tell them as a.b.c.d. */
export function peerAddress(ip: string | undefined): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip ?? '');
  return m ? m[1]! : (ip ?? '');
}
