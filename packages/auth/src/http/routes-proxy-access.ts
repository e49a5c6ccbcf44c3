import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { resolveAccess } from '../ca/access.js';
import { type ApiContext, requireProxy } from './context.js';
import { parseInput } from './validation.js';

/*
 * The proxy asks this after a client proved it holds a certificate, and again on every lock or
 * revocation notice for each live session's user: what may this user do right now? It is the
 * same resolveAccess the issuer runs (user active, roles still defined, user and role locks
 * refuse, locked logins are taken out), so the proxy and the CA never disagree. A refusal is
 * the AuthError itself (403 unknown or disabled user, 423 locked), audited as session.refused.
 */

const params = z.strictObject({ user: z.string().min(1).max(256) });

export function registerProxyAccessRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/v1/proxy/access/:user', { config: { refusal: 'session.refused' } }, async (request) => {
    await requireProxy(ctx, request);
    const { user } = parseInput(params, request.params, 'query');
    const { user: record, policy } = await resolveAccess(ctx.issuer, user, ctx.clock());
    // Only what the proxy enforces per session; host labels are checked when auth mints the
    // upstream certificate, where the chosen host is known.
    return {
      user: record.name,
      roles: policy.roles,
      logins: policy.logins,
      port_forwarding: policy.portForwarding,
      agent_forwarding: policy.agentForwarding,
      x11_forwarding: policy.x11Forwarding,
      record_session: policy.recordSession,
      record_input: policy.recordInput,
      idle_timeout: policy.idleTimeout,
    };
  });
}
