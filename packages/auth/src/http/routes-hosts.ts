import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { issueJumpHostCertificate, issueUpstreamCertificate } from '../ca/issuer.js';
import type { IssuedCertificate } from '../ca/signing.js';
import { createRenewalChallenge, enrollHost, renewHost, type EnrollmentResult } from '../hosts/enrollment.js';
import { findHost } from '../hosts/inventory.js';
import { listLocks } from '../revocation/locks.js';
import { type ApiContext, requireProxy, selfAudited, setActor } from './context.js';
import { countAttempt } from './rate-limit.js';
import { clientCertificateInput, iso, parseInput, publicKeyLine, ttlInput } from './validation.js';

const hostName = z.string().min(1).max(253);

/*
 * No `labels` here: a host's labels come from the join token an admin made, because labels
 * decide which roles reach the host, and a host choosing its own could grant itself to anyone.
 */
const joinBody = z.strictObject({
  token: z.string().min(1).max(128),
  hostname: hostName,
  names: z.array(hostName).max(63).optional(),
  host_keys: z.array(publicKeyLine).min(1).max(8),
  type: z.enum(['host', 'proxy']).optional(),
});
const challengeBody = z.strictObject({ hostname: hostName });
const renewBody = z.strictObject({ hostname: hostName, signature: z.string().min(1).max(16_384) });
const upstreamBody = z.strictObject({
  user: z.string().min(1).max(256),
  login: z.string().min(1).max(64),
  host: hostName,
  public_key: publicKeyLine,
  // Required: auth refuses a revoked client certificate, or one whose login session is gone,
  // before the proxy's KRL poll would.
  client: clientCertificateInput,
});
const jumpBody = z.strictObject({ host: hostName, public_key: publicKeyLine, ttl: ttlInput.optional() });

function enrollmentView(r: EnrollmentResult): Record<string, unknown> {
  return {
    host: { name: r.host.name, type: r.host.type, names: r.host.names, labels: r.host.labels },
    certificates: r.certificates.map((c) => ({
      public_key: c.publicKey,
      certificate: c.certificate,
      serial: c.serial,
      fingerprint: c.fingerprint,
      valid_after: iso(c.validAfter),
      valid_before: iso(c.validBefore),
    })),
    // sshd_config TrustedUserCAKeys file content: the upstream CA keys (the certificates the
    // proxy dials with), never the user CA's. The field keeps its name, which host agents read.
    user_ca: r.trustedUserCaKeys,
    known_hosts: r.knownHosts,
    krl_url: r.krlUrl,
    renew_after: iso(r.renewAfter),
    renew_before: iso(r.renewBefore),
    ...(r.serviceCredential === undefined ? {} : { service_credential: r.serviceCredential }),
  };
}

function certificateView(issued: IssuedCertificate): Record<string, unknown> {
  return {
    certificate: issued.text,
    serial: issued.serial.toString(),
    key_id: issued.keyId,
    principals: issued.principals,
    valid_after: iso(issued.validAfter),
    valid_before: iso(issued.validBefore),
  };
}

async function countEnroll(ctx: ApiContext, request: FastifyRequest): Promise<void> {
  await countAttempt(ctx.redis, [{ kind: 'enroll-addr', key: request.ip, limit: ctx.rateLimits.enrollAddress }]);
}

/** Hosts enrolling and renewing, and the proxy's service endpoints. */
export function registerHostRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const hostRefusal = { config: { refusal: 'host.enroll_failed' as const, issuance: true } };

  app.post('/v1/join', hostRefusal, async (request) => {
    const body = parseInput(joinBody, request.body);
    setActor(request, 'host', body.hostname);
    await countEnroll(ctx, request);
    const r = await selfAudited(
      enrollHost(ctx.enrollment, {
        token: body.token,
        hostname: body.hostname,
        publicKeys: body.host_keys,
        sourceAddress: request.ip,
        ...(body.names === undefined ? {} : { names: body.names }),
        ...(body.type === undefined ? {} : { type: body.type }),
      }),
    );
    return enrollmentView(r);
  });

  app.post('/v1/hosts/renew/challenge', hostRefusal, async (request) => {
    const body = parseInput(challengeBody, request.body);
    setActor(request, 'host', body.hostname);
    await countEnroll(ctx, request);
    const c = await createRenewalChallenge(ctx.enrollment, body.hostname);
    return { hostname: c.hostname, challenge: c.challenge, namespace: c.namespace, expires_at: iso(c.expiresAt) };
  });

  app.post('/v1/hosts/renew', hostRefusal, async (request) => {
    const body = parseInput(renewBody, request.body);
    setActor(request, 'host', body.hostname);
    await countEnroll(ctx, request);
    const r = await selfAudited(renewHost(ctx.enrollment, { hostname: body.hostname, signature: body.signature, sourceAddress: request.ip }));
    return enrollmentView(r);
  });

  const proxyRefusal = { config: { refusal: 'cert.refused' as const, issuance: true } };

  app.post('/v1/proxy/certs/upstream', proxyRefusal, async (request) => {
    const proxy = await requireProxy(ctx, request);
    const body = parseInput(upstreamBody, request.body);
    const issued = await selfAudited(
      issueUpstreamCertificate(ctx.issuer, { proxy: proxy.host, user: body.user, login: body.login, host: body.host, publicKey: body.public_key, client: body.client }),
    );
    return certificateView(issued);
  });

  app.post('/v1/proxy/certs/host', proxyRefusal, async (request) => {
    const proxy = await requireProxy(ctx, request);
    const body = parseInput(jumpBody, request.body);
    const issued = await selfAudited(
      issueJumpHostCertificate(ctx.issuer, {
        proxy: proxy.host,
        host: body.host,
        publicKey: body.public_key,
        ...(body.ttl === undefined ? {} : { lifetimeSeconds: body.ttl }),
      }),
    );
    return certificateView(issued);
  });

  // Target resolution for the proxy: the inventory decides what a typed name means.
  app.get('/v1/proxy/hosts/:name', { config: { refusal: 'session.refused' } }, async (request) => {
    await requireProxy(ctx, request);
    const { name } = parseInput(z.strictObject({ name: hostName }), request.params, 'query');
    const h = await findHost(ctx.redis, name);
    return { name: h.name, type: h.type, names: h.names, labels: h.labels };
  });

  // The locks in force, for a proxy that (re)connects to the pub/sub channel.
  app.get('/v1/proxy/locks', { config: { refusal: 'session.refused' } }, async (request) => {
    await requireProxy(ctx, request);
    const locks = await listLocks(ctx.redis, ctx.clock());
    return {
      locks: locks.map((l) => ({
        id: l.id,
        target: l.target,
        message: l.message,
        created_at: iso(l.createdAt),
        ...(l.expiresAt === undefined ? {} : { expires_at: iso(l.expiresAt) }),
      })),
    };
  });
}
