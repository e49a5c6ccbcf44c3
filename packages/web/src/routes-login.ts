import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { LoginAnswer } from './auth-upstream.js';
import type { BrowserSession } from './browser-session.js';
import { type GatewayContext, loadSession, parseBody, requireSignedIn, setSessionCookie } from './context.js';
import { WebError } from './errors.js';

/*
 * Browser login through auth's API: SSO (auth's OIDC code flow, redirected back to
 * /web/callback on this gateway), a local user's password, then the second factor (TOTP or
 * WebAuthn) with the ticket auth handed out, which stays in the server-side session. A finished
 * login rotates the cookie; the browser never holds auth's token.
 */

/** What the app learns about its session. */
export interface SessionView {
  readonly stage: BrowserSession['stage'];
  readonly csrf: string;
  readonly user?: string;
  readonly admin?: boolean;
  readonly mfa?: { readonly methods: readonly string[]; readonly expires_at: string };
  readonly expires_at?: string;
}

export function sessionView(s: BrowserSession): SessionView {
  return {
    stage: s.stage,
    csrf: s.csrf,
    ...(s.signedIn === undefined ? {} : { user: s.signedIn.user, admin: s.signedIn.admin, expires_at: new Date(s.signedIn.expiresAt).toISOString() }),
    ...(s.mfa === undefined ? {} : { mfa: { methods: s.mfa.methods, expires_at: new Date(s.mfa.expiresAt).toISOString() } }),
  };
}

const CALLBACK_PATH = '/web/callback';
/** A browser may have a few SSO attempts open (tabs, a back button); the oldest is dropped. */
const MAX_OIDC_STATES = 4;

const passwordBody = z.strictObject({ username: z.string().min(1).max(256), password: z.string().min(1).max(4096) });
const finishBody = z.strictObject({ callback_url: z.string().min(1).max(8192) });
const totpBody = z.strictObject({ totp: z.string().regex(/^\d{6,8}$/, 'expected the digits the authenticator app shows') });
// The browser's PublicKeyCredential JSON; auth validates its fields.
const credential = z.record(z.string(), z.unknown());
const webauthnBody = z.strictObject({ credential });
const registerBody = z.strictObject({ credential, name: z.string().trim().min(1).max(64).optional() });
const emptyBody = z.strictObject({});

/** The origin the request came from: already held to the gateway's origins by the CSRF hook. */
function requestOrigin(ctx: GatewayContext, request: FastifyRequest): string {
  const o = request.headers.origin;
  return typeof o === 'string' && ctx.origins.includes(o) ? o : ctx.origins[0]!;
}

async function sessionOrFail(ctx: GatewayContext, request: FastifyRequest): Promise<BrowserSession> {
  const s = await loadSession(ctx, request);
  if (s === undefined) throw new WebError('ERR_UNAUTHENTICATED', 'no session: reload the page');
  return s;
}

function pendingMfa(s: BrowserSession, now: number): NonNullable<BrowserSession['mfa']> {
  if (s.stage !== 'mfa' || s.mfa === undefined) throw new WebError('ERR_UNAUTHENTICATED', 'no login is waiting for a second factor: sign in again');
  if (s.mfa.expiresAt <= now) throw new WebError('ERR_EXPIRED', 'the second-factor step timed out: sign in again');
  return s.mfa;
}

export function registerLoginRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  /** Turns auth's answer into the session's next stage, under a new cookie. */
  async function advance(request: FastifyRequest, reply: FastifyReply, session: BrowserSession, answer: LoginAnswer): Promise<SessionView> {
    const now = ctx.clock();
    if (answer.kind === 'mfa') {
      const next = await ctx.sessions.rotate(session, { stage: 'mfa', mfa: { ticket: answer.ticket, methods: answer.methods, expiresAt: answer.expiresAt }, oidcStates: [] }, now);
      setSessionCookie(reply, next.cookie);
      request.webSession = next.session;
      return sessionView(next.session);
    }
    const me = await ctx.auth.call<{ admin?: unknown; user?: { name?: unknown } }>('GET', '/v1/me', { token: answer.token });
    const user = typeof me.user?.name === 'string' ? me.user.name : answer.user;
    const { mfa: _dropped, ...rest } = session;
    const next = await ctx.sessions.rotate(
      rest,
      {
        stage: 'authenticated',
        oidcStates: [],
        signedIn: { token: answer.token, user, admin: me.admin === true, mfaVerified: answer.mfaVerified, expiresAt: answer.expiresAt, checkedAt: now },
      },
      now,
    );
    setSessionCookie(reply, next.cookie);
    request.webSession = next.session;
    ctx.log(`web: ${user} signed in (session ${next.session.id.slice(0, 12)})`);
    return sessionView(next.session);
  }

  // The app's first call: makes an anonymous session (and its CSRF token) when there is none.
  app.get('/web/api/session', async (request, reply) => {
    let s = await loadSession(ctx, request);
    if (s?.stage === 'authenticated') {
      try {
        s = (await requireSignedIn(ctx, request)).session;
      } catch (e) {
        if (!(e instanceof WebError && e.code === 'ERR_UNAUTHENTICATED')) throw e;
        s = undefined;
      }
    }
    if (s === undefined) {
      const made = await ctx.sessions.create(ctx.clock());
      setSessionCookie(reply, made.cookie);
      s = made.session;
    }
    return sessionView(s);
  });

  app.post('/web/api/login/oidc/start', async (request) => {
    parseBody(emptyBody, request.body);
    const s = await sessionOrFail(ctx, request);
    const started = await ctx.auth.call<{ url: string; state: string }>('POST', '/v1/login/oidc/start', { json: { redirect_uri: `${requestOrigin(ctx, request)}${CALLBACK_PATH}` } });
    await ctx.sessions.save({ ...s, oidcStates: [...s.oidcStates, started.state].slice(-MAX_OIDC_STATES) }, ctx.clock());
    return { url: started.url };
  });

  app.post('/web/api/login/oidc/finish', async (request, reply) => {
    const body = parseBody(finishBody, request.body);
    const s = await sessionOrFail(ctx, request);
    let params: URLSearchParams;
    try {
      params = new URL(body.callback_url).searchParams;
    } catch {
      throw new WebError('ERR_BAD_REQUEST', 'callback_url is not a URL');
    }
    // Only a login this browser started may finish here: a callback URL from someone else's
    // login (a link an attacker sent) must not sign this browser in as them.
    const state = params.get('state');
    if (state === null || !s.oidcStates.includes(state)) throw new WebError('ERR_UNAUTHENTICATED', 'this sign-in was not started in this browser (or it was already used): start again');
    await ctx.sessions.save({ ...s, oidcStates: s.oidcStates.filter((x) => x !== state) }, ctx.clock());
    // Rebuilt from our own origin, so auth sees exactly the redirect_uri it was started with.
    const callback = `${requestOrigin(ctx, request)}${CALLBACK_PATH}?${params.toString()}`;
    return advance(request, reply, s, await ctx.auth.login('/v1/login/oidc/finish', { callback_url: callback }));
  });

  app.post('/web/api/login/password', async (request, reply) => {
    const body = parseBody(passwordBody, request.body);
    const s = await sessionOrFail(ctx, request);
    return advance(request, reply, s, await ctx.auth.login('/v1/login/password', body));
  });

  app.post('/web/api/login/mfa/totp', async (request, reply) => {
    const body = parseBody(totpBody, request.body);
    const s = await sessionOrFail(ctx, request);
    const mfa = pendingMfa(s, ctx.clock());
    return advance(request, reply, s, await ctx.auth.login('/v1/login/mfa', { ticket: mfa.ticket, totp: body.totp }));
  });

  app.post('/web/api/login/mfa/webauthn/options', async (request) => {
    parseBody(emptyBody, request.body);
    const s = await sessionOrFail(ctx, request);
    const mfa = pendingMfa(s, ctx.clock());
    return ctx.auth.call('POST', '/v1/login/mfa/webauthn/options', { json: { ticket: mfa.ticket } });
  });

  app.post('/web/api/login/mfa/webauthn', async (request, reply) => {
    const body = parseBody(webauthnBody, request.body);
    const s = await sessionOrFail(ctx, request);
    const mfa = pendingMfa(s, ctx.clock());
    return advance(request, reply, s, await ctx.auth.login('/v1/login/mfa/webauthn', { ticket: mfa.ticket, credential: body.credential }));
  });

  app.post('/web/api/logout', async (request, reply) => {
    parseBody(emptyBody, request.body);
    const s = await loadSession(ctx, request);
    if (s?.signedIn !== undefined) {
      // Ends auth's login session too: the gateway's cookie was its only holder.
      await ctx.auth.call('POST', '/v1/logout', { token: s.signedIn.token }).catch((e: unknown) => ctx.log(`web: logout at auth failed: ${e instanceof Error ? e.message : String(e)}`));
    }
    if (s !== undefined) await ctx.sessions.destroy(s.id);
    request.webSession = null;
    setSessionCookie(reply, undefined);
    return { stage: 'anonymous' };
  });

  app.get('/web/api/hosts', async (request) => {
    const { signedIn } = await requireSignedIn(ctx, request);
    return ctx.auth.call('GET', '/v1/hosts', { token: signedIn.token });
  });

  app.get('/web/api/mfa', async (request) => {
    const { signedIn } = await requireSignedIn(ctx, request);
    const [me, keys] = await Promise.all([
      ctx.auth.call<{ user?: { mfa?: unknown } }>('GET', '/v1/me', { token: signedIn.token }),
      ctx.auth.call<{ credentials: unknown[] }>('GET', '/v1/mfa/webauthn', { token: signedIn.token }),
    ]);
    return { totp: Array.isArray(me.user?.mfa) && me.user.mfa.includes('totp'), webauthn: keys.credentials };
  });

  app.post('/web/api/mfa/webauthn/register/start', async (request) => {
    parseBody(emptyBody, request.body);
    const { signedIn } = await requireSignedIn(ctx, request);
    return ctx.auth.call('POST', '/v1/mfa/webauthn/register/start', { token: signedIn.token, json: {} });
  });

  app.post('/web/api/mfa/webauthn/register/finish', async (request) => {
    const body = parseBody(registerBody, request.body);
    const { signedIn } = await requireSignedIn(ctx, request);
    return ctx.auth.call('POST', '/v1/mfa/webauthn/register/finish', { token: signedIn.token, json: body });
  });
}
