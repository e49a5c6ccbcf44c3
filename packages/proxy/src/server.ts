import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import ssh2 from 'ssh2';
import type { Certificate } from '@portcullis/cert-core';
import type { AuthorityNotice } from './authority.js';
import { identityFields, safeAudit } from './audit.js';
import type { AuditFn, AuditIdentity } from './audit.js';
import { channelPolicy } from './client-auth.js';
import { resolveConfig } from './config.js';
import type { ProxyConfig, ResolvedConfig } from './config.js';
import { ProxyError, isProxyError } from './errors.js';
import { startJump } from './jump.js';
import { ClientLogin } from './login.js';
import type { AuthenticatedClient } from './login.js';
import { createProxyMetrics } from './metrics.js';
import type { ProxyMetrics, TerminationReason } from './metrics.js';
import { resolveTarget, routeHint } from './routing.js';
import { refuseSessions, relaySession } from './session/channels.js';
import { handleForwardRequests, relayDirectTcpip } from './session/forwarding.js';
import { Relay } from './session/relay.js';
import type { RelayDeps } from './session/relay.js';
import { NO_TAP } from './session/tap.js';
import { NATIVE_CRYPTO_MISSING, hostCertificateKey, nativeCryptoAvailable, ssh2CertificatePatchApplied } from './ssh2-certs.js';
import { FailureThrottle } from './throttle.js';
import { TrustCache } from './trust.js';
import { UPSTREAM_CIPHERS, dialTarget } from './upstream.js';
import type { Upstream } from './upstream.js';

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
  readonly hostKeys: readonly ssh2.EncryptedPrivateKey[];
}

/** IPv4 peers on a dual-stack socket arrive as ::ffff:a.b.c.d; audit and tell them as a.b.c.d. */
function peerAddress(ip: string | undefined): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip ?? '');
  return m ? m[1]! : (ip ?? '');
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
    hostKeys,
  };
  const connections = new Set<ssh2.Connection>();

  const server = new ssh2.Server(
    {
      hostKeys: [...hostKeys],
      ident: 'Portcullis',
      keepaliveInterval: config.timeouts.keepaliveIntervalMs,
      keepaliveCountMax: config.timeouts.keepaliveCountMax,
      // AES-GCM first among what clients offer; OpenSSH's own preference still decides.
      algorithms: { cipher: UPSTREAM_CIPHERS },
    },
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

function acceptClient(ctx: ProxyContext, client: ssh2.Connection, peer: string): void {
  const { config } = ctx;
  const login = new ClientLogin(ctx, peer);
  let username: string | undefined;
  const authTimer = setTimeout(() => client.end(), config.timeouts.authMs);
  authTimer.unref();
  client.on('error', (e: Error) => config.log('info', `client ${peer}: ${e.message}`));
  client.on('authentication', (auth) => {
    username = auth.username;
    login.handle(auth).catch((e: unknown) => {
      config.log('error', `client ${peer}: authentication handler failed: ${e instanceof Error ? e.message : String(e)}`);
      auth.reject(['publickey']);
    });
  });
  client.once('close', () => {
    clearTimeout(authTimer);
    login.closed(username);
  });
  client.once('ready', () => {
    clearTimeout(authTimer);
    const who = login.authenticated;
    if (who === undefined) {
      // ssh2 only becomes ready after our accept(); this would be a bug, never a way in.
      client.end();
      return;
    }
    routeClient(ctx, client, who, peer);
  });
}

function routeClient(ctx: ProxyContext, client: ssh2.Connection, who: AuthenticatedClient, peer: string): void {
  const { route } = who;
  switch (route.kind) {
    case 'target': {
      const identity: AuditIdentity = {
        sessionId: randomUUID(),
        user: who.identity.user,
        login: route.login,
        host: route.host,
        clientAddress: peer,
        certSerial: who.identity.certificate.serial,
        certKeyId: who.identity.certificate.keyId,
      };
      const relay = openRelay(ctx, client, who, identity, 'user-name', connectTarget(ctx, identity, route.host));
      client.on('session', (accept) => relaySession(relay, accept));
      client.on('tcpip', (accept, reject, info) => relayDirectTcpip(relay, accept, reject, info));
      handleForwardRequests(relay);
      return;
    }
    case 'jump':
      client.on('session', (accept) => refuseSessions(accept, routeHint(ctx.config.port)));
      client.on('tcpip', (accept, reject, info) => startJump(ctx, who, peer, accept, reject, info));
      return;
    case 'invalid':
      client.on('session', (accept) => refuseSessions(accept, `portcullis: ${route.problem}\r\n${routeHint(ctx.config.port)}`));
      return;
  }
}

/** Starts relaying a client connection whose target is being dialled; tracked until it ends. */
export function openRelay(
  ctx: ProxyContext,
  client: ssh2.Connection,
  who: AuthenticatedClient,
  identity: AuditIdentity,
  route: 'user-name' | 'jump' | 'stdio',
  upstream: Promise<Upstream>,
): Relay {
  const policy = channelPolicy(who.identity.permissions, who.access);
  let tap = NO_TAP;
  if (ctx.config.tap !== undefined) {
    try {
      tap = ctx.config.tap({ ...identity, route });
    } catch (e) {
      ctx.config.log('error', `session tap could not be created: ${e instanceof Error ? e.message : String(e)}`);
      upstream = Promise.reject(new ProxyError('ERR_TERMINATED', 'proxy: the session recorder is unavailable; the session cannot start'));
      upstream.catch(() => {});
    }
  }
  const relay = new Relay({ client, identity, route, policy, access: who.access, tap, upstream, deps: ctx.relayDeps });
  ctx.relays.set(relay, who.identity.certificate);
  client.once('close', () => ctx.relays.delete(relay));
  upstream.then(
    () => {
      if (relay.ended) ctx.relays.delete(relay);
    },
    // Without a target there is nothing to keep alive but the channels telling the user why.
    () => ctx.relays.delete(relay),
  );
  return relay;
}

/** Resolves the host name, then dials it; every failure is audited and becomes the user's message. */
export async function connectTarget(ctx: ProxyContext, identity: AuditIdentity, hostQuery: string): Promise<Upstream> {
  const { config } = ctx;
  const t0 = performance.now();
  let stage: 'route' | 'upstream' = 'route';
  try {
    const target = await resolveTarget(config.authority, hostQuery);
    stage = 'upstream';
    const hostCAs = await ctx.trust.hostCAs();
    const up = await dialTarget({
      authority: config.authority,
      target,
      user: identity.user,
      login: identity.login,
      requestId: identity.sessionId,
      hostCAs,
      isRevoked: ctx.trust.isRevoked,
      crypto: config.crypto,
      now: config.now,
      timeoutMs: config.timeouts.dialMs,
      keepaliveIntervalMs: config.timeouts.keepaliveIntervalMs,
      keepaliveCountMax: config.timeouts.keepaliveCountMax,
    });
    const seconds = (performance.now() - t0) / 1000;
    ctx.metrics.dial(seconds, true);
    ctx.audit('session.start', {
      ...identityFields({ ...identity, host: target.name }),
      targetAddress: `${target.address}:${target.port}`,
      dialMs: Math.round(seconds * 1000),
      upstreamCertSerial: up.certificate.serial.toString(),
      hostCertKeyId: up.hostCertificate.keyId,
    });
    return up;
  } catch (e) {
    if (stage === 'upstream') ctx.metrics.dial((performance.now() - t0) / 1000, false);
    const err = isProxyError(e) ? e : new ProxyError('ERR_UPSTREAM', `proxy: ${e instanceof Error ? e.message : String(e)}`);
    ctx.audit('session.refused', { ...identityFields(identity), stage, reason: err.code, message: err.message });
    throw err;
  }
}

/**
 * A lock or revocation reached us: end what it covers at once, then re-check every live
 * connection against auth (access() applies role and login locks) and the fresh KRL.
 */
async function onNotice(ctx: ProxyContext, n: AuthorityNotice): Promise<void> {
  const end = (relay: Relay, reason: TerminationReason, message: string): void => void relay.terminate(reason, message);
  if (n.kind === 'lock') {
    const { kind, name } = n.target;
    const why = `${kind} ${JSON.stringify(name)} was locked${n.message === undefined ? '' : `: ${n.message}`}`;
    for (const relay of ctx.relays.keys()) {
      const id = relay.identity;
      if ((kind === 'user' && id.user === name) || (kind === 'login' && id.login === name) || (kind === 'host' && id.host === name)) {
        end(relay, 'lock', why);
      }
    }
  } else if (n.kind === 'session-revoked') {
    // The certificate does not say which login session minted it: end all of the user's.
    for (const relay of ctx.relays.keys()) {
      if (relay.identity.user === n.user) end(relay, 'revocation', 'your login session was revoked');
    }
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
