import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AuthError } from '../errors.js';
import { normalizeUsername, summarizeUser } from '../identity/users.js';
import type { User } from '../identity/store.js';
import { combineRoles } from '../roles/policy.js';
import { findLock, listLocks, lockedError } from '../revocation/locks.js';
import { hasWebauthnCredentials } from '../identity/webauthn.js';
import { MAX_LOGIN_SESSION_TTL, createLoginSession, type LoginMethod, type MfaMethod } from '../sessions/login-session.js';
import { type ApiContext, auditAs, setActor, withResponseFields } from './context.js';
import { createMfaTicket, readMfaTicket, spendMfaTicket } from './mfa-ticket.js';
import { countAttempt } from './rate-limit.js';
import { emptyBody, iso, parseInput, totpCode } from './validation.js';

/** Login session lifetime for a user none of whose roles is defined (they can do little with it). */
const ROLELESS_SESSION_TTL = 3600;

/** The address rate limits and audit events use for the request. */
function address(request: FastifyRequest): string {
  return request.ip;
}

async function countLogin(ctx: ApiContext, request: FastifyRequest, user: string | undefined): Promise<void> {
  await countAttempt(ctx.redis, [
    { kind: 'login-addr', key: address(request), limit: ctx.rateLimits.loginAddress },
    { kind: 'login-user', key: user, limit: ctx.rateLimits.loginUser },
  ]);
}

export async function countTotp(ctx: ApiContext, request: FastifyRequest, user: string): Promise<void> {
  await countAttempt(ctx.redis, [
    { kind: 'totp-addr', key: address(request), limit: ctx.rateLimits.totpAddress },
    { kind: 'totp-user', key: user, limit: ctx.rateLimits.totpUser },
  ]);
}

function tryNormalize(name: string): string | undefined {
  try {
    return normalizeUsername(name);
  } catch {
    return undefined;
  }
}

/**
 * The end of every login: a lock on the user or one of their roles refuses it; an enrolled
 * second factor is demanded (checked now when the client sent a code, else a ticket to finish
 * with); then the login session, as long as the shortest login_session_ttl of the user's roles.
 */
export async function completeLogin(
  ctx: ApiContext,
  request: FastifyRequest,
  user: User,
  method: LoginMethod,
  mfa: { readonly code?: string; readonly verified?: MfaMethod },
): Promise<Record<string, unknown>> {
  const now = ctx.clock();
  setActor(request, 'user', user.name);
  const lock = findLock(await listLocks(ctx.redis, now), { user: user.name, roles: user.roles }, now);
  if (lock !== undefined) throw lockedError(lock);
  let mfaMethod = mfa.verified;
  const factors: MfaMethod[] = [...(user.totp !== undefined ? ['totp' as const] : []), ...((await hasWebauthnCredentials(ctx.redis, user.name)) ? ['webauthn' as const] : [])];
  if (factors.length > 0 && mfaMethod === undefined) {
    if (mfa.code === undefined || user.totp === undefined) {
      const { ticket, expiresAt } = await createMfaTicket(ctx.redis, user.name, method, now);
      const e = new AuthError('ERR_MFA_REQUIRED', `a second factor is required for ${user.name}: POST /v1/login/mfa with the ticket and a TOTP code, or /v1/login/mfa/webauthn`);
      throw withResponseFields(e, { ticket, methods: factors, expires_at: iso(expiresAt) });
    }
    await countTotp(ctx, request, user.name);
    await ctx.totp.verify(user.name, mfa.code);
    mfaMethod = 'totp';
  }
  const mfaVerified = mfaMethod !== undefined;
  const roles = await ctx.roles.getRoles(user.roles);
  const policyTtl = roles.length === 0 ? ROLELESS_SESSION_TTL : combineRoles(roles, { username: user.name, claims: user.claims }).loginSessionTtl;
  const ttlSeconds = Math.max(60, Math.min(policyTtl, MAX_LOGIN_SESSION_TTL));
  const { token, session } = await createLoginSession(
    ctx.redis,
    { user: user.name, method, mfaVerified, ...(mfaMethod === undefined ? {} : { mfaMethod }), ttlSeconds, sourceAddress: address(request) },
    now,
  );
  await auditAs(ctx, request, 'user.login', { method, mfa: mfaMethod ?? 'none', sessionId: session.id.slice(0, 16), roles: user.roles });
  return {
    token,
    expires_at: iso(session.expiresAt),
    mfa_verified: mfaVerified,
    user: summarizeUser(user),
  };
}

function requireOidc(ctx: ApiContext): NonNullable<ApiContext['oidc']> {
  if (ctx.oidc === undefined) throw new AuthError('ERR_NOT_FOUND', 'single sign-on is not configured on this service (no oidc section)');
  return ctx.oidc;
}

const passwordBody = z.strictObject({
  username: z.string().min(1).max(256),
  password: z.string().min(1).max(4096),
  totp: totpCode.optional(),
});
const oidcStartBody = z.strictObject({ redirect_uri: z.string().min(1).max(2048) });
const oidcFinishBody = z.strictObject({ callback_url: z.string().min(1).max(8192) });
const devicePollBody = z.strictObject({ handle: z.string().min(1).max(128) });
const mfaBody = z.strictObject({ ticket: z.string().min(1).max(128), totp: totpCode });

export function registerLoginRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const refusal = { config: { refusal: 'user.login_failed' as const } };

  app.post('/v1/login/password', refusal, async (request) => {
    const body = parseInput(passwordBody, request.body);
    const name = tryNormalize(body.username);
    if (name !== undefined) setActor(request, 'user', name);
    await countLogin(ctx, request, name);
    const user = await ctx.users.authenticateLocal(body.username, body.password);
    return completeLogin(ctx, request, user, 'password', body.totp === undefined ? {} : { code: body.totp });
  });

  app.post('/v1/login/oidc/start', refusal, async (request) => {
    const body = parseInput(oidcStartBody, request.body);
    const started = await requireOidc(ctx).startLogin({ redirectUri: body.redirect_uri });
    return { url: started.url, state: started.state, expires_at: iso(started.expiresAt) };
  });

  app.post('/v1/login/oidc/finish', refusal, async (request) => {
    const body = parseInput(oidcFinishBody, request.body);
    const oidc = requireOidc(ctx);
    await countLogin(ctx, request, undefined);
    const identity = await oidc.finishLogin(body.callback_url);
    setActor(request, 'user', identity.username);
    const user = await ctx.users.recordSsoLogin(identity);
    return completeLogin(ctx, request, user, 'oidc', {});
  });

  app.post('/v1/login/device/start', refusal, async (request) => {
    parseInput(emptyBody, request.body);
    await countLogin(ctx, request, undefined);
    const d = await requireOidc(ctx).startDeviceLogin();
    return {
      handle: d.handle,
      user_code: d.userCode,
      verification_uri: d.verificationUri,
      ...(d.verificationUriComplete === undefined ? {} : { verification_uri_complete: d.verificationUriComplete }),
      interval: d.interval,
      expires_at: iso(d.expiresAt),
    };
  });

  app.post('/v1/login/device/poll', refusal, async (request) => {
    const body = parseInput(devicePollBody, request.body);
    const r = await requireOidc(ctx).pollDeviceLogin(body.handle);
    if (r.status === 'pending') return { status: 'pending', interval: r.interval };
    setActor(request, 'user', r.identity.username);
    const user = await ctx.users.recordSsoLogin(r.identity);
    return { status: 'complete', ...(await completeLogin(ctx, request, user, 'oidc-device', {})) };
  });

  app.post('/v1/login/mfa', { config: { refusal: 'mfa.failed' } }, async (request) => {
    const body = parseInput(mfaBody, request.body);
    const ticket = await readMfaTicket(ctx.redis, body.ticket, ctx.clock());
    setActor(request, 'user', ticket.user);
    await countTotp(ctx, request, ticket.user);
    await ctx.totp.verify(ticket.user, body.totp);
    if (!(await spendMfaTicket(ctx.redis, body.ticket))) throw new AuthError('ERR_UNAUTHENTICATED', 'the MFA ticket was already used; log in again');
    const user = await ctx.users.getUser(ticket.user);
    if (user === undefined || user.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${ticket.user} is disabled or gone`);
    return completeLogin(ctx, request, user, ticket.method, { verified: 'totp' });
  });
}
