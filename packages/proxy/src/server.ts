import ssh2 from 'ssh2';
import type { AuthorityNotice } from './authority.js';
import { safeAudit } from './audit.js';
import { resolveConfig } from './config.js';
import type { ProxyConfig } from './config.js';
import { acceptClient } from './connection.js';
import { peerAddress, serverConfig } from './context.js';
import type { ProxyContext } from './context.js';
import { ProxyError, isProxyError } from './errors.js';
import { JumpHostKeys } from './jump.js';
import { createProxyMetrics } from './metrics.js';
import type { ProxyMetrics, TerminationReason } from './metrics.js';
import type { Relay } from './session/relay.js';
import { NATIVE_CRYPTO_MISSING, hostCertificateKey, nativeCryptoAvailable, ssh2CertificatePatchApplied } from './ssh2-certs.js';
import { FailureThrottle } from './throttle.js';
import { lockCovers, lockEndMessage } from './locks.js';
import { TrustCache } from './trust.js';

export interface RunningProxy {
  /** The port listened on (the chosen one when the config said 0). */
  readonly port: number;
  readonly host: string;
  readonly metrics: ProxyMetrics;
  /** Relayed connections now. */
  activeSessions(): number;
  /**
   * Stops accepting, lets live sessions finish for up to `graceMs` (default
   * timeouts.drainGraceMs), then ends the rest, telling their users why.
   */
  stop(options?: { readonly graceMs?: number }): Promise<void>;
}

export async function startProxy(input: ProxyConfig): Promise<RunningProxy> {
  const config = resolveConfig(input);
  if (!ssh2CertificatePatchApplied()) {
    throw new ProxyError('ERR_CONFIG', 'proxy: the installed ssh2 lacks the certificate patch (patches/ssh2+1.17.0.patch); run npm install');
  }
  if (!nativeCryptoAvailable()) config.log('warn', NATIVE_CRYPTO_MISSING);
  const hostKeys = config.hostKeys.map((k) => hostCertificateKey(k.privateKey, k.certificate));
  const metrics = config.metrics ?? createProxyMetrics();
  const audit = safeAudit(config.audit, config.log, config.now);
  const trust = new TrustCache({
    authority: config.authority,
    crypto: config.crypto,
    now: config.now,
    revocation: config.revocation,
    caCacheMs: config.timeouts.caCacheMs,
    log: config.log,
  });
  await trust.start();
  const ctx: ProxyContext = {
    config,
    trust,
    throttle: new FailureThrottle(config.throttle),
    metrics,
    audit,
    relayDeps: { audit, metrics, log: config.log, now: config.now, envAllowList: config.envAllowList },
    relays: new Map(),
    listening: { port: config.port },
    jumpKeys: new JumpHostKeys(),
  };
  const connections = new Set<ssh2.Connection>();

  const server = new ssh2.Server(
    serverConfig(config, hostKeys),
    (client, info) => {
      connections.add(client);
      client.once('close', () => connections.delete(client));
      acceptClient(ctx, client, peerAddress(info.ip));
    },
  );
  (server as unknown as { maxConnections: number }).maxConnections = config.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  server.on('error', (e: Error) => config.log('error', `listener: ${e.message}`));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  ctx.listening.port = port;

  const unsubscribe = config.authority.onNotice((n) => void onNotice(ctx, n));
  const housekeeping = setInterval(() => {
    const now = config.now();
    for (const relay of ctx.relays.keys()) {
      const limit = relay.access.idleTimeout;
      if (limit > 0 && relay.idleMs(now) > limit * 1000) {
        void relay.terminate('idle', `no activity for ${limit} s; disconnected`);
      }
    }
    metrics.setKrlAge(Math.min(trust.krlAgeSeconds(), 1e9));
    metrics.setThrottledAddresses(ctx.throttle.size);
  }, config.timeouts.idleCheckMs);
  housekeeping.unref();

  let stopping: Promise<void> | undefined;
  return {
    port,
    host: config.host,
    metrics,
    activeSessions: () => ctx.relays.size,
    stop(options = {}) {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        unsubscribe();
        clearInterval(housekeeping);
        trust.stop();
        // Connections still logging in have nothing to finish.
        for (const c of connections) if (!c.authenticated) c.end();
        const grace = options.graceMs ?? config.timeouts.drainGraceMs;
        const deadline = Date.now() + grace;
        while (ctx.relays.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        await Promise.all([...ctx.relays.keys()].map((r) => r.terminate('shutdown', 'the proxy is shutting down')));
        for (const c of connections) c.end();
        await closed;
      })();
      return stopping;
    },
  };
}

/**
 * A lock or revocation reached us: end what it covers at once, then re-check every live
 * connection against auth (access() applies role and login locks) and the fresh KRL.
 */
async function onNotice(ctx: ProxyContext, n: AuthorityNotice): Promise<void> {
  const end = (relay: Relay, reason: TerminationReason, message: string): void => void relay.terminate(reason, message);
  if (n.kind === 'lock') {
    const why = lockEndMessage(n.target, n.message);
    // A revoked login session is a revocation to the audit log, not an admin's lock.
    const reason: TerminationReason = n.target.kind === 'session' ? 'revocation' : 'lock';
    for (const relay of ctx.relays.keys()) if (lockCovers(n.target, relay.identity)) end(relay, reason, why);
  }
  let krlFresh = false;
  try {
    await ctx.trust.refreshKrl();
    krlFresh = true;
  } catch {
    // auth unreachable: the access() calls below will likely fail too; keep sessions running.
  }
  const byUser = new Map<string, Relay[]>();
  for (const [relay, cert] of ctx.relays) {
    if (relay.ended) continue;
    if (krlFresh) {
      const revoked = ctx.trust.isRevoked(cert);
      if (revoked !== false) {
        end(relay, 'revocation', `the certificate was revoked (${revoked})`);
        continue;
      }
    }
    const list = byUser.get(relay.identity.user) ?? [];
    list.push(relay);
    byUser.set(relay.identity.user, list);
  }
  await Promise.all(
    [...byUser].map(async ([user, relays]) => {
      try {
        const access = await ctx.config.authority.access(user);
        for (const relay of relays) {
          if (!access.logins.includes(relay.identity.login)) end(relay, 'lock', `the login ${JSON.stringify(relay.identity.login)} is no longer allowed`);
        }
      } catch (e) {
        if (isProxyError(e, 'ERR_ACCESS_DENIED')) {
          for (const relay of relays) end(relay, 'lock', e.message.replace(/^proxy: /, ''));
        } else {
          ctx.config.log('warn', `cannot re-check the access of ${JSON.stringify(user)} after a notice: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }),
  );
}
