import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { resolveAccess } from '../ca/access.js';
import { refuseRevokedClientCertificate } from '../ca/client-certificate.js';
import { type ApiContext, requireProxy } from './context.js';
import { clientCertificateInput, parseInput } from './validation.js';

/*
 * The proxy asks this after a client proved it holds a certificate, and again on every lock or
 * revocation notice for each live session's user: what may this user do right now? It is the
 * same resolveAccess the issuer runs (user active, roles still defined, user and role locks
 * refuse, locked logins are taken out), so the proxy and the CA never disagree. With the client
 * certificate in the query (serial, key_id, fingerprint) it is re-checked too: revoked, or its
 * login session revoked, refuses. A refusal is the AuthError itself (403 unknown or disabled
 * user, revoked certificate or session, 423 locked), audited as session.refused.
 */

const params = z.strictObject({ user: z.string().min(1).max(256) });
// The client certificate the access is asked for (all three, or none for a re-check by user).
const query = z.union([
  z.strictObject({}).transform(() => undefined),
  z.strictObject({ serial: z.string(), key_id: z.string(), fingerprint: z.string() }).pipe(clientCertificateInput),
]);

export function registerProxyAccessRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/v1/proxy/access/:user', { config: { refusal: 'session.refused' } }, async (request) => {
    await requireProxy(ctx, request);
    const { user } = parseInput(params, request.params, 'query');
    const client = parseInput(query, request.query ?? {}, 'query');
    const now = ctx.clock();
    // A revoked certificate, or one whose login session was revoked (logout), is refused here
    // at once; the proxy's KRL copy would only catch the first, seconds later.
    if (client !== undefined) await refuseRevokedClientCertificate(ctx.redis, user, client, now);
    const { user: record, policy } = await resolveAccess(ctx.issuer, user, now);
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
