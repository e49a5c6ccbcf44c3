import Fastify, { type FastifyInstance } from 'fastify';
import { isAuthError } from '../errors.js';
import { issuanceFailureReason } from '../metrics.js';
import type { AuditEventName } from '../audit/codes.js';
import { type ApiContext, actorOf, responseFieldsOf, wasAudited } from './context.js';
import { errorBody, toApiError } from './errors.js';
import type { TlsMaterial } from './tls.js';
import { registerAdminOpsRoutes } from './routes-admin-ops.js';
import { registerAdminUserRoutes } from './routes-admin-users.js';
import { registerHostRoutes } from './routes-hosts.js';
import { registerLoginRoutes } from './routes-login.js';
import { registerProxyAccessRoutes } from './routes-proxy-access.js';
import { registerPublicRoutes } from './routes-public.js';
import { registerRecordingSignRoutes } from './routes-recording-sign.js';
import { registerRotationRoutes } from './routes-rotation.js';
import { registerSessionRoutes } from './routes-session.js';
import { registerWebauthnRoutes } from './routes-webauthn.js';
import type { WebauthnRelyingParty } from '../identity/webauthn.js';

/** Small: every request body is a few fields or one role document. */
export const BODY_LIMIT = 64 * 1024;

export interface ApiServerOptions {
  readonly ctx: ApiContext;
  readonly tls: Pick<TlsMaterial, 'cert' | 'key'>;
  /** Reports readiness for GET /v1/ready. */
  readonly ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** WebAuthn's relying party; default: the public URL's host name, any https port on it. */
  readonly webauthn?: WebauthnRelyingParty;
}

/** The audit event for a refusal: by what went wrong first, by where it happened second. */
function refusalEvent(code: string, routeEvent: AuditEventName | undefined): AuditEventName {
  if (code === 'ERR_RATE_LIMITED') return 'rate_limit.exceeded';
  if (code === 'ERR_MFA_INVALID') return 'mfa.failed';
  return routeEvent ?? 'admin.action';
}

/**
 * The API server: fastify over TLS, JSON in and out, errors as `{"error": {"code", "message"}}`
 * with the status mapped from the code (errors.ts), every refusal audited once, every request
 * timed. Call listen() on the result.
 */
export async function buildApiServer(opts: ApiServerOptions): Promise<FastifyInstance> {
  const { ctx } = opts;
  const app = Fastify({
    https: { key: opts.tls.key, cert: opts.tls.cert, minVersion: 'TLSv1.2' },
    bodyLimit: BODY_LIMIT,
    // Our own error handler logs what matters; fastify's request log would record URLs and
    // addresses for every health probe.
    logger: false,
    // The service faces clients directly; a trusted proxy header would let anyone pick the
    // address that rate limits and audit events see.
    trustProxy: false,
    // Request ids from the client would end up in logs unchecked.
    requestIdHeader: false,
    connectionTimeout: 30_000,
    requestTimeout: 60_000,
    keepAliveTimeout: 10_000,
    forceCloseConnections: true,
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  app.decorateRequest('actor', null);

  app.addHook('onSend', async (_request, reply, payload) => {
    // Bodies carry tokens and certificates: no cache, no sniffing.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    return payload;
  });

  app.addHook('onResponse', async (request, reply) => {
    ctx.metrics.observeHttpRequest({
      method: request.method,
      route: request.routeOptions.url,
      status: reply.statusCode,
      seconds: reply.elapsedTime / 1000,
    });
  });

  app.setNotFoundHandler(async (request, reply) => {
    // Not audited: scanners probing paths would drown the audit trail; the metrics count them.
    return reply.code(404).send(errorBody({ code: 'ERR_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }));
  });

  app.setErrorHandler(async (err, request, reply) => {
    const api = toApiError(err, BODY_LIMIT);
    const config = request.routeOptions.config;
    if (api.internal) {
      const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
      ctx.log(`http: ${request.method} ${request.routeOptions.url ?? request.url}: ${stack}`);
    }
    // An MFA-required answer with a ticket is a step of the login, not a refusal.
    const step = isAuthError(err, 'ERR_MFA_REQUIRED') && 'ticket' in responseFieldsOf(err);
    if (!wasAudited(err) && !step) {
      if (config.issuance === true) ctx.metrics.issuanceFailed(issuanceFailureReason(isAuthError(err) ? err.code : undefined));
      await ctx.audit.emit(refusalEvent(api.code, config.refusal), actorOf(request), {
        result: 'refused',
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: api.status,
        // Not `code`: the audit layer treats a field of that name as a secret (a TOTP code).
        errorCode: api.code,
        reason: typeof api.details?.['reason'] === 'string' ? api.details['reason'] : api.code,
        message: api.message,
      });
    }
    if (api.retryAfter !== undefined) reply.header('retry-after', String(api.retryAfter));
    return reply.code(api.status).send(errorBody(api, responseFieldsOf(err)));
  });

  registerPublicRoutes(app, ctx, opts.ready);
  registerLoginRoutes(app, ctx);
  registerSessionRoutes(app, ctx);
  registerWebauthnRoutes(app, ctx, opts.webauthn);
  registerHostRoutes(app, ctx);
  registerProxyAccessRoutes(app, ctx);
  registerAdminUserRoutes(app, ctx);
  registerAdminOpsRoutes(app, ctx);
  registerRecordingSignRoutes(app, ctx);
  registerRotationRoutes(app, ctx);
  return app;
}
