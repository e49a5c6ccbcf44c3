import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { isRecordingError } from '@portcullis/recording';
import { ASSET_PREFIX, type AppAssets, type Asset } from './assets.js';
import { type GatewayContext, loadSession } from './context.js';
import { CSRF_HEADER, checkCsrf } from './csrf.js';
import { WebError, isWebError } from './errors.js';
import { registerLoginRoutes } from './routes-login.js';
import { registerRecordingRoutes } from './routes-recordings.js';

/** Same as auth's: every body is a few fields, a WebAuthn credential or a role document. */
export const BODY_LIMIT = 64 * 1024;

// The app's own files only. 'unsafe-inline' styles: xterm.js writes a <style> for its rows;
// scripts stay same-origin files.
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/** Any thrown thing as the API's error: ours, the recording package's, fastify's. */
export function toWebError(e: unknown): WebError {
  if (isWebError(e)) return e;
  if (isRecordingError(e, 'ERR_NOT_FOUND')) return new WebError('ERR_NOT_FOUND', e.message);
  if (isRecordingError(e, 'ERR_BAD_ID')) return new WebError('ERR_BAD_REQUEST', e.message);
  const f = e as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (f.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new WebError('ERR_PAYLOAD_TOO_LARGE', `request body over ${BODY_LIMIT} bytes`);
  if (f.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new WebError('ERR_UNSUPPORTED_MEDIA_TYPE', 'expected application/json');
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) return new WebError('ERR_BAD_REQUEST', String(f.message ?? 'bad request'));
  return new WebError('ERR_INTERNAL', 'internal error (the gateway log has the details)', { cause: e });
}

function sendAsset(request: FastifyRequest, reply: FastifyReply, a: Asset): FastifyReply {
  reply.header('content-type', a.type).header('etag', a.etag).header('vary', 'accept-encoding');
  reply.header('cache-control', a.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  if (request.headers['if-none-match'] === a.etag) return reply.code(304).send();
  if (a.gzip !== undefined && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) {
    return reply.header('content-encoding', 'gzip').send(a.gzip);
  }
  return reply.send(a.bytes);
}

/** Builds the gateway's fastify app over TLS; listen() is the caller's. */
export function buildGatewayApp(ctx: GatewayContext, tls: { readonly cert: string; readonly key: string }, assets: AppAssets): FastifyInstance {
  const app = Fastify({
    https: { key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' },
    bodyLimit: BODY_LIMIT,
    logger: false,
    // Browsers and CLIs connect directly; a forwarded-for header would be anyone's to set.
    trustProxy: false,
    requestIdHeader: false,
    connectionTimeout: 30_000,
    requestTimeout: 60_000,
    keepAliveTimeout: 10_000,
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  app.decorateRequest('webSession', null);

  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    // The SSO callback URL carries a code: never let it leave in a Referer.
    reply.header('referrer-policy', 'no-referrer');
    reply.header('strict-transport-security', 'max-age=31536000');
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    if (String(reply.getHeader('content-type') ?? '').startsWith('text/html')) {
      reply.header('content-security-policy', CSP).header('x-frame-options', 'DENY');
    }
    if (request.url.startsWith('/web/api/')) reply.header('cross-origin-resource-policy', 'same-origin');
    return payload;
  });

  app.setErrorHandler(async (err, request, reply) => {
    const e = toWebError(err);
    if (e.code === 'ERR_INTERNAL' || e.code === 'ERR_UNAVAILABLE') {
      const cause = e.cause ?? err;
      ctx.log(`web: ${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}`);
    }
    if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
    return reply.code(e.status).send(errorBody(e.code, e.message));
  });

  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0]!;
    // Any other page under /web/ is the app's to route (a reload on /web/recordings/ID).
    if (request.method === 'GET' && (path === '/web' || path.startsWith('/web/')) && !path.startsWith('/web/api/') && !path.startsWith(ASSET_PREFIX)) {
      return sendAsset(request, reply, assets.index);
    }
    return reply.code(404).send(errorBody('ERR_NOT_FOUND', `no route ${request.method} ${path}`));
  });

  // CSRF: every state-changing request under /web/api must pass both checks (csrf.ts).
  app.addHook('preHandler', async (request) => {
    if (!request.url.startsWith('/web/api/')) return;
    const method = request.method;
    if (method === 'GET' || method === 'HEAD') return;
    const session = await loadSession(ctx, request);
    const header = request.headers[CSRF_HEADER];
    const verdict = checkCsrf(
      {
        method,
        origin: request.headers.origin,
        secFetchSite: typeof request.headers['sec-fetch-site'] === 'string' ? request.headers['sec-fetch-site'] : undefined,
        token: typeof header === 'string' ? header : undefined,
        expectedToken: session?.csrf,
      },
      ctx.origins,
    );
    if (!verdict.ok) throw new WebError('ERR_FORBIDDEN', `refused as a possible cross-site request: ${verdict.reason}`);
  });

  app.get('/', async (_request, reply) => reply.redirect('/web/', 302));
  app.get(`${ASSET_PREFIX}*`, async (request, reply) => {
    const a = assets.files.get(request.url.split('?')[0]!);
    if (a === undefined) return reply.code(404).send(errorBody('ERR_NOT_FOUND', 'no such asset (the app was updated: reload)'));
    return sendAsset(request, reply, a);
  });

  registerLoginRoutes(app, ctx);
  registerRecordingRoutes(app, ctx);
  registerAuthForward(app, ctx);
  return app;
}

/**
 * auth's API on the public port, for pcsh and other clients (`--proxy https://bastion:3080`):
 * bytes in, bytes out, no cookies (clients authenticate with Bearer tokens only).
 */
function registerAuthForward(app: FastifyInstance, ctx: GatewayContext): void {
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_req, body, done) => done(null, body));
    scope.all('/v1/*', async (request, reply) => {
      const res = await ctx.auth.forward(request.method, request.url, request.headers, request.body as Buffer | undefined);
      reply.code(res.status);
      for (const [k, v] of Object.entries(res.headers)) reply.header(k, v);
      return reply.send(res.bytes);
    });
  });
}
