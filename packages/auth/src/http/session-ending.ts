import type { FastifyRequest } from 'fastify';
import { lockRevokedLoginSessions } from '../revocation/session-locks.js';
import { type ApiContext, auditAs } from './context.js';

/**
 * After login sessions were revoked: locks each (kind `session`) so every proxy ends the SSH and
 * browser sessions opened with its certificates within a poll, and audits each lock like one an
 * admin placed. Every route that revokes login sessions calls this, so none can forget to.
 */
export async function endRevokedLoginSessions(
  ctx: ApiContext,
  request: FastifyRequest,
  revoked: { readonly user: string; readonly sessionIds: readonly string[]; readonly message: string; readonly by: string },
): Promise<void> {
  const locks = await lockRevokedLoginSessions(ctx.redis, { user: revoked.user, sessionIds: revoked.sessionIds, message: revoked.message, createdBy: revoked.by }, ctx.clock());
  for (const lock of locks) {
    await auditAs(ctx, request, 'lock.created', {
      lockId: lock.id,
      target: `${lock.target.kind}:${lock.target.name}`,
      user: revoked.user,
      message: lock.message,
      expiresAt: lock.expiresAt === undefined ? undefined : new Date(lock.expiresAt),
    });
  }
}
