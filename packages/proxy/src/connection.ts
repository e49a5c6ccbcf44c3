import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type ssh2 from 'ssh2';
import { identityFields } from './audit.js';
import type { AuditIdentity } from './audit.js';
import { channelPolicy, clientCertificateRef } from './client-auth.js';
import type { ClientCertificateRef } from './authority.js';
import type { JumpHop, ProxyContext } from './context.js';
import { ProxyError, isProxyError } from './errors.js';
import { startJump } from './jump.js';
import { ClientLogin } from './login.js';
import type { AuthenticatedClient } from './login.js';
import { resolveTarget, routeHint } from './routing.js';
import { refuseSessions, relaySession } from './session/channels.js';
import { handleForwardRequests, relayDirectTcpip } from './session/forwarding.js';
import { Relay } from './session/relay.js';
import { NO_TAP } from './session/tap.js';
import type { SessionMeta } from './session/tap.js';
import { dialTarget } from './upstream.js';
import type { Upstream } from './upstream.js';

/**
 * One client connection from TCP accept to its end: authentication (login.ts), then the route
 * its user name chose. A connection terminated inside a ProxyJump channel comes through here
 * too, with `jump` saying which target its outer hop asked for.
 */
export function acceptClient(ctx: ProxyContext, client: ssh2.Connection, peer: string, jump?: JumpHop): void {
  const { config } = ctx;
  const login = new ClientLogin(ctx, peer, jump);
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
    const unavailable = login.unavailable;
    if (unavailable !== undefined) {
      tellAndClose(client, unavailable, config.timeouts.authMs);
      return;
    }
    const who = login.authenticated;
    if (who === undefined) {
      // ssh2 only becomes ready after our accept(); this would be a bug, never a way in.
      client.end();
      return;
    }
    routeClient(ctx, client, who, peer, jump === undefined ? 'user-name' : 'jump');
  });
}

/**
 * A connection let in only to hear why it cannot go anywhere: each session channel gets the
 * message and an exit status, port forwards and jumps are rejected, and the connection is ended
 * after `ms` whatever the client does.
 */
function tellAndClose(client: ssh2.Connection, message: string, ms: number): void {
  client.on('session', (accept) => refuseSessions(accept, message));
  client.on('tcpip', (_accept, reject) => reject());
  const timer = setTimeout(() => client.end(), ms);
  timer.unref();
  client.once('close', () => clearTimeout(timer));
}

function routeClient(ctx: ProxyContext, client: ssh2.Connection, who: AuthenticatedClient, peer: string, via: SessionMeta['route']): void {
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
      const relay = openRelay(ctx, client, who, identity, via, connectTarget(ctx, identity, route.host, via, clientCertificateRef(ctx.config.crypto, who.identity.certificate)));
      client.on('session', (accept) => relaySession(relay, accept));
      client.on('tcpip', (accept, reject, info) => relayDirectTcpip(relay, accept, reject, info));
      handleForwardRequests(relay);
      return;
    }
    case 'jump':
      client.on('session', (accept) => refuseSessions(accept, routeHint(ctx.listening.port)));
      client.on('tcpip', (accept, reject, info) =>
        startJump(ctx, who, peer, accept, reject, info, (inner, hop) => acceptClient(ctx, inner, peer, hop)),
      );
      return;
    case 'invalid':
      client.on('session', (accept) => refuseSessions(accept, `portcullis: ${route.problem}\r\n${routeHint(ctx.listening.port)}`));
      return;
  }
}

/** Starts relaying a client connection whose target is being dialled; tracked until it ends. */
export function openRelay(
  ctx: ProxyContext,
  client: ssh2.Connection,
  who: AuthenticatedClient,
  identity: AuditIdentity,
  route: SessionMeta['route'],
  upstream: Promise<Upstream>,
): Relay {
  const policy = channelPolicy(who.identity.permissions, who.access);
  let tap = NO_TAP;
  if (ctx.config.tap !== undefined) {
    try {
      tap = ctx.config.tap({ ...identity, route }, who.access);
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
export async function connectTarget(
  ctx: ProxyContext,
  identity: AuditIdentity,
  hostQuery: string,
  via: SessionMeta['route'],
  client: ClientCertificateRef,
): Promise<Upstream> {
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
      client,
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
      route: via,
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
