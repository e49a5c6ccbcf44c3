import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { z } from 'zod';
import type { AuthUpstream } from './auth-upstream.js';
import type { BrowserSession, BrowserSessionStore, RedisClient, SignedIn } from './browser-session.js';
import { SESSION_COOKIE, clearedSessionCookie, readCookie, sessionCookie } from './cookies.js';
import { WebError } from './errors.js';

/** Everything the gateway's routes use; built by gateway.ts. */
export interface GatewayContext {
  readonly sessions: BrowserSessionStore;
  readonly auth: AuthUpstream;
  /** The Redis the recordings are in. */
  readonly redis: RedisClient;
  /** Origins browsers may use (Origin checks, the SSO redirect). */
  readonly origins: readonly string[];
  /** Milliseconds since the epoch. */
  readonly clock: () => number;
  readonly log: (line: string) => void;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The browser session, once loaded (the CSRF hook loads it for state-changing requests). */
    webSession: BrowserSession | null;
  }
}

/** A fastify request, or a WebSocket upgrade request with a slot for its session. */
export interface SessionCarrier {
  readonly headers: IncomingHttpHeaders;
  webSession: BrowserSession | null;
}

/** How long auth's word on a session and the admin role is trusted before asking again. */
export const RECHECK_MS = 30_000;

export function parseBody<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const r = schema.safeParse(input ?? {});
  if (r.success) return r.data;
  const i = r.error.issues[0];
  const what = i?.code === 'unrecognized_keys' ? `unknown field ${i.keys.map((k) => JSON.stringify(k)).join(', ')}` : `${i?.path.length ? JSON.stringify(i.path.join('.')) : 'body'}: ${i?.message ?? 'invalid'}`;
  // Never the value: a body may hold a password.
  throw new WebError('ERR_BAD_REQUEST', `invalid request: ${what}`);
}

export async function loadSession(ctx: GatewayContext, request: SessionCarrier): Promise<BrowserSession | undefined> {
  if (request.webSession !== null) return request.webSession;
  const s = await ctx.sessions.get(readCookie(request.headers.cookie, SESSION_COOKIE), ctx.clock());
  request.webSession = s ?? null;
  return s;
}

export function setSessionCookie(reply: FastifyReply, cookie: string | undefined): void {
  reply.header('set-cookie', cookie === undefined ? clearedSessionCookie() : sessionCookie(cookie));
}

/**
 * The signed-in session, confirmed with auth at most every RECHECK_MS: a login session revoked
 * at auth (offboarding, an admin's revoke) or a role taken away ends here within that time.
 */
export async function requireSignedIn(ctx: GatewayContext, request: SessionCarrier): Promise<{ session: BrowserSession; signedIn: SignedIn }> {
  const session = await loadSession(ctx, request);
  if (session === undefined || session.stage !== 'authenticated' || session.signedIn === undefined) {
    throw new WebError('ERR_UNAUTHENTICATED', 'sign in first');
  }
  const now = ctx.clock();
  let signedIn = session.signedIn;
  if (now - signedIn.checkedAt < RECHECK_MS) {
    await ctx.sessions.touch(session, now);
    return { session, signedIn };
  }
  let me: { admin?: unknown };
  try {
    me = await ctx.auth.call<{ admin?: unknown }>('GET', '/v1/me', { token: signedIn.token });
  } catch (e) {
    if (e instanceof WebError && (e.code === 'ERR_UNAUTHENTICATED' || e.code === 'ERR_FORBIDDEN' || e.code === 'ERR_LOCKED')) {
      await ctx.sessions.destroy(session.id);
      request.webSession = null;
      throw new WebError('ERR_UNAUTHENTICATED', `your session ended: ${e.message}`);
    }
    throw e;
  }
  signedIn = { ...signedIn, admin: me.admin === true, checkedAt: now };
  const next: BrowserSession = { ...session, signedIn };
  await ctx.sessions.save(next, now);
  request.webSession = next;
  return { session: next, signedIn };
}

/** Recordings and live views are for users with auth's `admin` role. */
export async function requireAdmin(ctx: GatewayContext, request: SessionCarrier): Promise<{ session: BrowserSession; signedIn: SignedIn }> {
  const s = await requireSignedIn(ctx, request);
  if (!s.signedIn.admin) throw new WebError('ERR_FORBIDDEN', `${s.signedIn.user} is not an administrator (recordings need the admin role)`);
  return s;
}
