import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AuthError } from '../errors.js';
import { issueUserCertificate } from '../ca/issuer.js';
import { listHosts } from '../hosts/inventory.js';
import { summarizeUser } from '../identity/users.js';
import { canReachHost, combineRoles } from '../roles/policy.js';
import { revokeLoginSession } from '../sessions/login-session.js';
import { ADMIN_ROLE, type ApiContext, auditAs, requireSession, selfAudited, setActor } from './context.js';
import { endRevokedLoginSessions } from './session-ending.js';
import { countAttempt } from './rate-limit.js';
import { countTotp } from './routes-login.js';
import { emptyBody, iso, parseInput, publicKeyLine, secretToken, totpCode, ttlInput } from './validation.js';

const certBody = z.strictObject({
  public_key: publicKeyLine,
  ttl: ttlInput.optional(),
  /** A fresh code, for roles that require a second factor for every certificate. */
  totp: totpCode.optional(),
});
const enrollBody = z.strictObject({
  /** Replace an enrolled factor; needs a code from it. */
  replace: z.boolean().optional(),
  totp: totpCode.optional(),
});
const confirmBody = z.strictObject({ totp: totpCode });
const inviteBody = z.strictObject({ token: secretToken, password: z.string().min(1).max(4096) });

/** What a login session holder does: who am I, certificates, hosts, second factor, logout. */
export function registerSessionRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/v1/me', { config: { refusal: 'user.login_failed' } }, async (request) => {
    const session = await requireSession(ctx, request);
    const user = await ctx.users.getUser(session.user);
    if (user === undefined) throw new AuthError('ERR_UNAUTHENTICATED', `user ${session.user} no longer exists`);
    const roles = await ctx.roles.getRoles(user.roles);
    const policy = combineRoles(roles, { username: user.name, claims: user.claims });
    return {
      user: summarizeUser(user),
      admin: user.roles.includes(ADMIN_ROLE),
      session: {
        id: session.id.slice(0, 16),
        method: session.method,
        mfa_verified: session.mfaVerified,
        created_at: iso(session.createdAt),
        expires_at: iso(session.expiresAt),
      },
      access: {
        roles: policy.roles,
        logins: policy.logins,
        max_cert_ttl: policy.maxCertTtl,
        require_session_mfa: policy.requireSessionMfa,
        port_forwarding: policy.portForwarding,
        agent_forwarding: policy.agentForwarding,
        x11_forwarding: policy.x11Forwarding,
      },
    };
  });

  app.post('/v1/logout', { config: { refusal: 'user.login_failed' } }, async (request) => {
    parseInput(emptyBody, request.body);
    const session = await requireSession(ctx, request);
    if (await revokeLoginSession(ctx.redis, session.id)) {
      await endRevokedLoginSessions(ctx, request, { user: session.user, sessionIds: [session.id], message: 'logged out', by: session.user });
    }
    await auditAs(ctx, request, 'user.logout', { sessionId: session.id.slice(0, 16) });
    return { status: 'logged out' };
  });

  app.post('/v1/certs/user', { config: { refusal: 'cert.refused', issuance: true } }, async (request) => {
    const session = await requireSession(ctx, request);
    const body = parseInput(certBody, request.body);
    let mfaVerified = false;
    if (body.totp !== undefined) {
      await countTotp(ctx, request, session.user);
      await ctx.totp.verify(session.user, body.totp);
      mfaVerified = true;
    }
    const issued = await selfAudited(
      issueUserCertificate(ctx.issuer, session, body.public_key, {
        requestedTtl: body.ttl ?? ctx.defaultUserCertTtl,
        sourceAddress: request.ip,
        mfaVerified,
      }),
    );
    return {
      certificate: issued.text,
      serial: issued.serial.toString(),
      key_id: issued.keyId,
      principals: issued.principals,
      valid_after: iso(issued.validAfter),
      valid_before: iso(issued.validBefore),
      fingerprint: issued.fingerprint,
      ca_fingerprint: issued.caFingerprint,
    };
  });

  // The hosts this user's roles reach (pcsh ls); the proxy re-checks at connection time.
  app.get('/v1/hosts', { config: { refusal: 'user.login_failed' } }, async (request) => {
    const session = await requireSession(ctx, request);
    const user = await ctx.users.getUser(session.user);
    if (user === undefined) throw new AuthError('ERR_UNAUTHENTICATED', `user ${session.user} no longer exists`);
    const policy = combineRoles(await ctx.roles.getRoles(user.roles), { username: user.name, claims: user.claims });
    const hosts = (await listHosts(ctx.redis)).filter((h) => h.type === 'host' && canReachHost(policy, h.labels));
    return { hosts: hosts.map((h) => ({ name: h.name, names: h.names, labels: h.labels, logins: policy.logins })) };
  });

  app.post('/v1/mfa/totp/enroll', { config: { refusal: 'mfa.failed' } }, async (request) => {
    const session = await requireSession(ctx, request);
    const body = parseInput(enrollBody, request.body);
    const user = await ctx.users.getUser(session.user);
    // Replacing a factor needs the current one: a stolen session must not swap in another phone.
    if (user?.totp !== undefined && body.replace === true) {
      if (body.totp === undefined) throw new AuthError('ERR_MFA_REQUIRED', 'replacing TOTP needs a code from the current authenticator ("totp")');
      await countTotp(ctx, request, session.user);
      await ctx.totp.verify(session.user, body.totp);
    }
    const e = await ctx.totp.beginEnrollment(session.user, { replace: body.replace === true });
    return { secret: e.secret, uri: e.uri, expires_at: iso(e.expiresAt) };
  });

  app.post('/v1/mfa/totp/confirm', { config: { refusal: 'mfa.failed' } }, async (request) => {
    const session = await requireSession(ctx, request);
    const body = parseInput(confirmBody, request.body);
    await countTotp(ctx, request, session.user);
    await ctx.totp.confirmEnrollment(session.user, body.totp);
    await auditAs(ctx, request, 'mfa.enrolled', { method: 'totp' });
    return { status: 'enrolled', methods: ['totp'] };
  });

  app.post('/v1/invites/accept', { config: { refusal: 'user.login_failed' } }, async (request) => {
    const body = parseInput(inviteBody, request.body);
    // Each acceptance hashes a password: bounded per address like logins.
    await countAttempt(ctx.redis, [{ kind: 'login-addr', key: request.ip, limit: ctx.rateLimits.loginAddress }]);
    const user = await ctx.users.acceptInvite(body.token, body.password);
    setActor(request, 'user', user.name);
    await auditAs(ctx, request, 'user.password_set', { via: 'invite' });
    return { user };
  });
}
