import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AuthError } from '../errors.js';
import type { IssuedInvite } from '../identity/users.js';
import { revokeUserSessions } from '../sessions/login-session.js';
import { endRevokedLoginSessions } from './session-ending.js';
import { type ApiContext, auditAs, requireAdmin } from './context.js';
import { iso, parseInput } from './validation.js';

const roleName = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'a role name (lowercase letters, digits, _ . -)');
const nameParam = z.strictObject({ name: z.string().min(1).max(256) });
const createUserBody = z.strictObject({ name: z.string().min(1).max(128), roles: z.array(roleName).max(64).default([]) });
const updateUserBody = z.strictObject({ roles: z.array(roleName).max(64).optional(), status: z.enum(['active', 'disabled']).optional() });
const resetBody = z.strictObject({
  /** Remove the password and hand out a new invite link (default true). */
  password: z.boolean().default(true),
  /** Remove the TOTP factor (a lost phone). */
  totp: z.boolean().default(false),
});
const roleBody = z.strictObject({ yaml: z.string().min(1).max(32_768) });

/** The link an invite is used with: the token in the fragment stays out of every access log. */
export function inviteView(ctx: ApiContext, invite: IssuedInvite): Record<string, unknown> {
  return { token: invite.token, url: `${ctx.publicUrl()}/invite#${invite.token}`, purpose: invite.purpose, expires_at: iso(invite.expiresAt) };
}

/** Admin: users and roles. */
export function registerAdminUserRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const admin = { config: { refusal: 'admin.action' as const } };

  app.get('/v1/admin/users', admin, async (request) => {
    await requireAdmin(ctx, request);
    return { users: await ctx.users.listUsers() };
  });

  app.post('/v1/admin/users', admin, async (request) => {
    await requireAdmin(ctx, request);
    const body = parseInput(createUserBody, request.body);
    const user = await ctx.users.createLocalUser(body.name, body.roles);
    await auditAs(ctx, request, 'user.created', { user: user.name, kind: 'local', roles: user.roles });
    const invite = await ctx.users.createInvite(user.name);
    await auditAs(ctx, request, 'user.invite_created', { user: user.name, purpose: invite.purpose, expiresAt: new Date(invite.expiresAt) });
    return { user, invite: inviteView(ctx, invite) };
  });

  app.patch('/v1/admin/users/:name', admin, async (request) => {
    const { user: me } = await requireAdmin(ctx, request);
    const { name } = parseInput(nameParam, request.params, 'query');
    const body = parseInput(updateUserBody, request.body);
    if (body.roles === undefined && body.status === undefined) throw new AuthError('ERR_BAD_REQUEST', 'nothing to change: give "roles" or "status"');
    const target = await ctx.users.getUser(name);
    if (target === undefined) throw new AuthError('ERR_NOT_FOUND', `user ${name} does not exist`);
    // Locking oneself out of administration is a mistake worth refusing.
    if (target.name === me.name && (body.status === 'disabled' || (body.roles !== undefined && !body.roles.includes('admin')))) {
      throw new AuthError('ERR_CONFLICT', 'an administrator cannot disable themselves or drop their own admin role; ask another admin');
    }
    if (body.roles !== undefined) await ctx.users.setRoles(target.name, body.roles);
    if (body.status !== undefined) await ctx.users.setStatus(target.name, body.status);
    // A disabled account loses its login sessions at once (certificates expire within minutes).
    const revoked = body.status === 'disabled' ? await revokeUserSessions(ctx.redis, target.name) : [];
    await endRevokedLoginSessions(ctx, request, { user: target.name, sessionIds: revoked, message: 'account disabled', by: me.name });
    await auditAs(ctx, request, 'user.updated', { user: target.name, roles: body.roles, status: body.status, sessionsRevoked: revoked.length });
    const updated = (await ctx.users.listUsers()).find((u) => u.name === target.name);
    return { user: updated };
  });

  app.delete('/v1/admin/users/:name', admin, async (request) => {
    const { user: me } = await requireAdmin(ctx, request);
    const { name } = parseInput(nameParam, request.params, 'query');
    const target = await ctx.users.getUser(name);
    if (target === undefined) throw new AuthError('ERR_NOT_FOUND', `user ${name} does not exist`);
    if (target.name === me.name) throw new AuthError('ERR_CONFLICT', 'an administrator cannot delete themselves; ask another admin');
    await ctx.users.deleteUser(target.name);
    const revoked = await revokeUserSessions(ctx.redis, target.name);
    await endRevokedLoginSessions(ctx, request, { user: target.name, sessionIds: revoked, message: 'account deleted', by: me.name });
    await auditAs(ctx, request, 'user.deleted', { user: target.name, sessionsRevoked: revoked.length });
    return { deleted: target.name, sessions_revoked: revoked.length };
  });

  app.post('/v1/admin/users/:name/reset', admin, async (request) => {
    const { user: me } = await requireAdmin(ctx, request);
    const { name } = parseInput(nameParam, request.params, 'query');
    const body = parseInput(resetBody, request.body);
    const target = await ctx.users.getUser(name);
    if (target === undefined) throw new AuthError('ERR_NOT_FOUND', `user ${name} does not exist`);
    if (!body.password && !body.totp) throw new AuthError('ERR_BAD_REQUEST', 'nothing to reset: "password" and "totp" are both false');
    if (body.password && target.kind !== 'local') throw new AuthError('ERR_CONFLICT', `user ${target.name} signs in with SSO and has no password`);
    let invite: IssuedInvite | undefined;
    if (body.password) {
      invite = await ctx.users.resetPassword(target.name);
      await auditAs(ctx, request, 'user.invite_created', { user: target.name, purpose: invite.purpose, expiresAt: new Date(invite.expiresAt) });
    }
    if (body.totp) {
      await ctx.totp.remove(target.name);
      await auditAs(ctx, request, 'mfa.removed', { user: target.name, method: 'totp' });
    }
    // Whoever held the old password or phone may hold a session too.
    const revoked = await revokeUserSessions(ctx.redis, target.name);
    await endRevokedLoginSessions(ctx, request, { user: target.name, sessionIds: revoked, message: 'credentials reset', by: me.name });
    return { user: target.name, sessions_revoked: revoked.length, ...(invite === undefined ? {} : { invite: inviteView(ctx, invite) }) };
  });

  app.get('/v1/admin/roles', admin, async (request) => {
    await requireAdmin(ctx, request);
    const roles = await ctx.roles.list();
    return { roles: roles.map((r) => ({ name: r.name, origin: r.origin, description: r.role.description ?? '' })) };
  });

  app.get('/v1/admin/roles/:name', admin, async (request) => {
    await requireAdmin(ctx, request);
    const { name } = parseInput(nameParam, request.params, 'query');
    const r = await ctx.roles.get(name);
    if (r === undefined) throw new AuthError('ERR_NOT_FOUND', `no role ${name}`);
    return { name: r.name, origin: r.origin, yaml: r.yaml };
  });

  app.put('/v1/admin/roles/:name', admin, async (request) => {
    await requireAdmin(ctx, request);
    const { name } = parseInput(nameParam, request.params, 'query');
    const body = parseInput(roleBody, request.body);
    const { created } = await ctx.roles.put(name, body.yaml);
    await auditAs(ctx, request, created ? 'role.created' : 'role.updated', { role: name });
    return { name, created };
  });

  app.delete('/v1/admin/roles/:name', admin, async (request) => {
    await requireAdmin(ctx, request);
    const { name } = parseInput(nameParam, request.params, 'query');
    await ctx.roles.delete(name);
    await auditAs(ctx, request, 'role.deleted', { role: name });
    return { deleted: name };
  });
}
