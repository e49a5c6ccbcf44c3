import type { FastifyInstance } from 'fastify';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { z } from 'zod';
import { AuthError } from '../errors.js';
import {
  WebauthnAuthenticator,
  hasWebauthnCredentials,
  listWebauthnCredentials,
  relyingPartyFor,
  removeWebauthnCredential,
  summarizeCredential,
  type WebauthnRelyingParty,
} from '../identity/webauthn.js';
import { secretDigest } from '../store/keys.js';
import { type ApiContext, auditAs, requireSession, setActor } from './context.js';
import { readMfaTicket, spendMfaTicket } from './mfa-ticket.js';
import { completeLogin, countTotp } from './routes-login.js';
import { emptyBody, iso, parseInput, secretToken } from './validation.js';

/*
 * WebAuthn routes: registration for a logged-in user, and the second step of a login that
 * answered ERR_MFA_REQUIRED with a ticket. The browser ceremony happens on the web gateway's
 * page, which forwards the JSON that @simplewebauthn/browser produced.
 */

const b64url = z.string().regex(/^[A-Za-z0-9_-]{1,2048}$/, 'expected base64url');
const clientExtensionResults = z.record(z.string(), z.unknown());
// The browser's PublicKeyCredential as JSON. Not strict inside: browsers add fields over time,
// and only the named ones are read (zod drops the rest).
const registrationCredential = z.object({
  id: b64url,
  rawId: b64url,
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: b64url,
    attestationObject: z.string().regex(/^[A-Za-z0-9_-]{1,32768}$/, 'expected base64url'),
    transports: z.array(z.string().max(32)).max(8).optional(),
  }),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
  clientExtensionResults: clientExtensionResults.default({}),
});
const assertionCredential = z.object({
  id: b64url,
  rawId: b64url,
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: b64url,
    authenticatorData: b64url,
    signature: b64url,
    userHandle: z.string().regex(/^[A-Za-z0-9_-]{0,1024}$/).optional(),
  }),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
  clientExtensionResults: clientExtensionResults.default({}),
});

const registerFinishBody = z.strictObject({ credential: registrationCredential, name: z.string().trim().min(1).max(64).optional() });
const ticketBody = z.strictObject({ ticket: secretToken });
const loginBody = z.strictObject({ ticket: secretToken, credential: assertionCredential });
const idParam = z.strictObject({ id: b64url });

/**
 * The relying party: given, or derived from the service's public URL on each use (the URL is
 * known only once the server listens).
 */
export function registerWebauthnRoutes(app: FastifyInstance, ctx: ApiContext, relyingParty?: WebauthnRelyingParty): void {
  const webauthn = new WebauthnAuthenticator({ redis: ctx.redis, now: ctx.clock });
  const rp = (): WebauthnRelyingParty => relyingParty ?? relyingPartyFor(ctx.publicUrl());
  const mfa = { config: { refusal: 'mfa.failed' as const } };

  /**
   * Adding or removing a factor needs a session that passed the second factor when the user
   * has one: a stolen password-only session must not add the thief's key.
   */
  async function factorSession(request: Parameters<typeof requireSession>[1]) {
    const session = await requireSession(ctx, request);
    const user = await ctx.users.getUser(session.user);
    if (user === undefined || user.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${session.user} is disabled or gone`);
    const enrolled = user.totp !== undefined || (await hasWebauthnCredentials(ctx.redis, user.name));
    if (enrolled && !session.mfaVerified) {
      throw new AuthError('ERR_MFA_REQUIRED', `changing ${user.name}'s second factors needs a login session that passed one; log in again`);
    }
    return session;
  }

  app.post('/v1/mfa/webauthn/register/start', mfa, async (request) => {
    parseInput(emptyBody, request.body);
    const session = await factorSession(request);
    return webauthn.registrationOptions(session.user, rp());
  });

  app.post('/v1/mfa/webauthn/register/finish', mfa, async (request) => {
    const session = await factorSession(request);
    const body = parseInput(registerFinishBody, request.body);
    await countTotp(ctx, request, session.user);
    const c = await webauthn.finishRegistration(session.user, body.credential as RegistrationResponseJSON, body.name ?? 'security key', rp());
    await auditAs(ctx, request, 'mfa.enrolled', { method: 'webauthn', credential: c.id.slice(0, 16), name: c.name, aaguid: c.aaguid });
    return { status: 'enrolled', credential: { ...summarizeCredential(c), created_at: iso(c.createdAt) } };
  });

  app.get('/v1/mfa/webauthn', mfa, async (request) => {
    const session = await requireSession(ctx, request);
    const list = await listWebauthnCredentials(ctx.redis, session.user);
    return {
      credentials: list.map((c) => ({
        ...summarizeCredential(c),
        created_at: iso(c.createdAt),
        ...(c.lastUsedAt === undefined ? {} : { last_used_at: iso(c.lastUsedAt) }),
      })),
    };
  });

  app.delete('/v1/mfa/webauthn/:id', mfa, async (request) => {
    const session = await factorSession(request);
    const { id } = parseInput(idParam, request.params, 'query');
    if (!(await removeWebauthnCredential(ctx.redis, session.user, id))) throw new AuthError('ERR_NOT_FOUND', `no WebAuthn credential ${id.slice(0, 16)}… for ${session.user}`);
    await auditAs(ctx, request, 'mfa.removed', { method: 'webauthn', credential: id.slice(0, 16) });
    return { status: 'removed' };
  });

  app.post('/v1/login/mfa/webauthn/options', mfa, async (request) => {
    const body = parseInput(ticketBody, request.body);
    const ticket = await readMfaTicket(ctx.redis, body.ticket, ctx.clock());
    setActor(request, 'user', ticket.user);
    return webauthn.assertionOptions(secretDigest(body.ticket), ticket.user, rp());
  });

  app.post('/v1/login/mfa/webauthn', mfa, async (request) => {
    const body = parseInput(loginBody, request.body);
    const ticket = await readMfaTicket(ctx.redis, body.ticket, ctx.clock());
    setActor(request, 'user', ticket.user);
    // Second-factor attempts share TOTP's limits: one budget per user and address.
    await countTotp(ctx, request, ticket.user);
    await webauthn.verifyAssertion(secretDigest(body.ticket), ticket.user, body.credential as AuthenticationResponseJSON, rp());
    if (!(await spendMfaTicket(ctx.redis, body.ticket))) throw new AuthError('ERR_UNAUTHENTICATED', 'the MFA ticket was already used; log in again');
    const user = await ctx.users.getUser(ticket.user);
    if (user === undefined || user.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${ticket.user} is disabled or gone`);
    return completeLogin(ctx, request, user, ticket.method, { verified: 'webauthn' });
  });
}
