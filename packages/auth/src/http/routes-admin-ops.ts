import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { CA_KINDS, type CaKind } from '../ca/keystore.js';
import { AuthError } from '../errors.js';
import { queryAuditEvents } from '../audit/query.js';
import { deleteServiceCredential, createJoinToken, deleteJoinToken } from '../hosts/join-tokens.js';
import { listHosts, removeHost } from '../hosts/inventory.js';
import { LOCK_TARGET_KINDS, createLock, listLocks, removeLock } from '../revocation/locks.js';
import { revoke, type RevocationTarget } from '../revocation/revocations.js';
import { revokeUserSessions } from '../sessions/login-session.js';
import { endRevokedLoginSessions } from './session-ending.js';
import type { RedisClient } from '../store/redis.js';
import { type ApiContext, auditAs, requireAdmin } from './context.js';
import { iso, parseInput, ttlInput } from './validation.js';

const labels = z.record(z.string().min(1).max(63), z.string().min(1).max(256));
const tokenBody = z.strictObject({
  type: z.enum(['host', 'proxy']),
  ttl: ttlInput.optional(),
  labels: labels.optional(),
  /** The one host name the token may enroll (and re-enroll). */
  hostname: z.string().min(1).max(253).optional(),
});
const idParam = z.strictObject({ id: z.string().regex(/^[0-9a-f]{16,64}$/, 'expected a hex id') });
const nameParam = z.strictObject({ name: z.string().min(1).max(253) });
const lockBody = z.strictObject({
  target: z.strictObject({ kind: z.enum(LOCK_TARGET_KINDS as [string, ...string[]]), name: z.string().min(1).max(256) }),
  message: z.string().max(500).optional(),
  ttl: ttlInput.optional(),
});
const revokeBody = z
  .strictObject({
    serial: z.union([z.string().regex(/^[0-9]{1,20}$/, 'a decimal serial'), z.number().int().positive()]).optional(),
    key_id: z.string().min(1).max(1024).optional(),
    public_key: z.string().min(1).max(16_384).optional(),
    user: z.string().min(1).max(256).optional(),
    host: z.string().min(1).max(253).optional(),
    /** Scope a serial or key id to one CA kind (default all). */
    ca: z.enum(CA_KINDS as [CaKind, ...CaKind[]]).optional(),
    reason: z.string().max(500).optional(),
  })
  .refine((b) => [b.serial, b.key_id, b.public_key, b.user, b.host].filter((x) => x !== undefined).length === 1, {
    message: 'give exactly one of serial, key_id, public_key, user, host',
  });
const auditQuery = z.strictObject({
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  user: z.string().min(1).max(256).optional(),
  /** Comma-separated event codes or names. */
  code: z.string().min(1).max(1024).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  order: z.enum(['oldest', 'newest']).default('oldest'),
});

interface TokenListing {
  readonly id: string;
  readonly type: string;
  readonly labels: Record<string, string>;
  readonly hostname?: string;
  readonly created_at: string;
  readonly expires_at: string;
  readonly created_by?: string;
  readonly used_at?: string;
  readonly used_by?: string;
}

/*
 * Join tokens by SCAN, as hosts/join-tokens.ts has no listing yet (asked for). Every token key
 * carries the {tokens} tag, so on a cluster they all sit on one master; each master is scanned.
 */
async function listJoinTokens(redis: RedisClient): Promise<TokenListing[]> {
  const nodes = 'nodes' in redis ? redis.nodes('master') : [redis];
  const keys = new Set<string>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', 'pc:{tokens}:*', 'COUNT', 500);
      for (const k of found) keys.add(k);
      cursor = next;
    } while (cursor !== '0');
  }
  const out: TokenListing[] = [];
  for (const key of [...keys].sort()) {
    const f = await redis.hgetall(key);
    // Service credentials share the prefix; they are not tokens to list.
    if (f['type'] !== 'host' && f['type'] !== 'proxy') continue;
    let tokenLabels: Record<string, string> = {};
    try {
      tokenLabels = JSON.parse(f['labels'] ?? '{}') as Record<string, string>;
    } catch {
      // shown without labels
    }
    out.push({
      id: key.slice('pc:{tokens}:'.length),
      type: f['type'],
      labels: tokenLabels,
      ...(f['hostname'] === undefined ? {} : { hostname: f['hostname'] }),
      created_at: iso(Number(f['createdAt'])),
      expires_at: iso(Number(f['expiresAt'])),
      ...(f['createdBy'] === undefined ? {} : { created_by: f['createdBy'] }),
      ...(f['usedAt'] === undefined ? {} : { used_at: iso(Number(f['usedAt'])) }),
      ...(f['usedBy'] === undefined ? {} : { used_by: f['usedBy'] }),
    });
  }
  return out;
}

function revocationTarget(b: z.output<typeof revokeBody>): { target: RevocationTarget; label: string } {
  const ca = b.ca === undefined ? {} : { ca: b.ca };
  if (b.serial !== undefined) return { target: { by: 'serial', serial: String(b.serial), ...ca }, label: `serial ${b.serial}` };
  if (b.key_id !== undefined) return { target: { by: 'keyId', keyId: b.key_id, ...ca }, label: `key id ${b.key_id}` };
  if (b.public_key !== undefined) return { target: { by: 'key', publicKey: b.public_key }, label: 'public key' };
  if (b.user !== undefined) return { target: { by: 'user', user: b.user }, label: `user ${b.user}` };
  return { target: { by: 'host', host: b.host! }, label: `host ${b.host!}` };
}

/** Admin: join tokens, hosts, locks, revocation, audit. */
export function registerAdminOpsRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const admin = { config: { refusal: 'admin.action' as const } };

  app.post('/v1/admin/tokens', admin, async (request) => {
    const { user } = await requireAdmin(ctx, request);
    const body = parseInput(tokenBody, request.body);
    const { token, joinToken } = await createJoinToken(
      ctx.redis,
      {
        type: body.type,
        createdBy: user.name,
        ...(body.ttl === undefined ? {} : { ttlSeconds: body.ttl }),
        ...(body.labels === undefined ? {} : { labels: body.labels }),
        ...(body.hostname === undefined ? {} : { hostname: body.hostname }),
      },
      ctx.clock(),
    );
    await auditAs(ctx, request, 'token.created', { tokenId: joinToken.id, type: joinToken.type, hostname: joinToken.hostname, expiresAt: new Date(joinToken.expiresAt) });
    return { token, id: joinToken.id, type: joinToken.type, labels: joinToken.labels, expires_at: iso(joinToken.expiresAt) };
  });

  app.get('/v1/admin/tokens', admin, async (request) => {
    await requireAdmin(ctx, request);
    return { tokens: await listJoinTokens(ctx.redis) };
  });

  app.delete('/v1/admin/tokens/:id', admin, async (request) => {
    await requireAdmin(ctx, request);
    const { id } = parseInput(idParam, request.params, 'query');
    if (!/^[0-9a-f]{64}$/.test(id) || !(await deleteJoinToken(ctx.redis, id))) throw new AuthError('ERR_NOT_FOUND', `no join token ${id}`);
    await auditAs(ctx, request, 'token.deleted', { tokenId: id });
    return { deleted: id };
  });

  app.get('/v1/admin/hosts', admin, async (request) => {
    await requireAdmin(ctx, request);
    const hosts = await listHosts(ctx.redis);
    return {
      hosts: hosts.map((h) => ({
        name: h.name,
        type: h.type,
        names: h.names,
        labels: h.labels,
        enrolled_at: iso(h.enrolledAt),
        ...(h.renewedAt === undefined ? {} : { renewed_at: iso(h.renewedAt) }),
        certificates: h.certificates.map((c) => ({ serial: c.serial, fingerprint: c.fingerprint, valid_after: iso(c.validAfter), valid_before: iso(c.expiresAt) })),
      })),
    };
  });

  app.delete('/v1/admin/hosts/:name', admin, async (request) => {
    const { user } = await requireAdmin(ctx, request);
    const { name } = parseInput(nameParam, request.params, 'query');
    // Revoked first, while the record still lists the certificates: a removed host's
    // certificates must not keep vouching for its names until they expire.
    const revoked = await revoke(ctx.revocation, { target: { by: 'host', host: name }, reason: 'host removed', revokedBy: user.name }, ctx.clock());
    const host = await removeHost(ctx.redis, name);
    if (host === undefined) throw new AuthError('ERR_NOT_FOUND', `no enrolled host ${name}`);
    if (host.credentialId !== undefined) await deleteServiceCredential(ctx.redis, host.credentialId);
    ctx.metrics.removeHostCertificate(host.name);
    await auditAs(ctx, request, 'host.removed', { host: host.name, type: host.type, serialsRevoked: revoked.added.length, krlVersion: revoked.krl.version });
    return { deleted: host.name, certificates_revoked: revoked.added.length, krl_version: revoked.krl.version };
  });

  app.post('/v1/admin/locks', admin, async (request) => {
    const { user } = await requireAdmin(ctx, request);
    const body = parseInput(lockBody, request.body);
    const lock = await createLock(
      ctx.redis,
      {
        target: { kind: body.target.kind as (typeof LOCK_TARGET_KINDS)[number], name: body.target.name },
        createdBy: user.name,
        ...(body.message === undefined ? {} : { message: body.message }),
        ...(body.ttl === undefined ? {} : { ttlSeconds: body.ttl }),
      },
      ctx.clock(),
    );
    await auditAs(ctx, request, 'lock.created', { lockId: lock.id, target: `${lock.target.kind}:${lock.target.name}`, message: lock.message, expiresAt: lock.expiresAt === undefined ? undefined : new Date(lock.expiresAt) });
    return { id: lock.id, target: lock.target, message: lock.message, created_at: iso(lock.createdAt), ...(lock.expiresAt === undefined ? {} : { expires_at: iso(lock.expiresAt) }) };
  });

  app.get('/v1/admin/locks', admin, async (request) => {
    await requireAdmin(ctx, request);
    const locks = await listLocks(ctx.redis, ctx.clock());
    return {
      locks: locks.map((l) => ({
        id: l.id,
        target: l.target,
        message: l.message,
        created_at: iso(l.createdAt),
        ...(l.createdBy === undefined ? {} : { created_by: l.createdBy }),
        ...(l.expiresAt === undefined ? {} : { expires_at: iso(l.expiresAt) }),
      })),
    };
  });

  app.delete('/v1/admin/locks/:id', admin, async (request) => {
    await requireAdmin(ctx, request);
    const { id } = parseInput(idParam, request.params, 'query');
    if (!(await removeLock(ctx.redis, id))) throw new AuthError('ERR_NOT_FOUND', `no lock ${id}`);
    await auditAs(ctx, request, 'lock.removed', { lockId: id });
    return { deleted: id };
  });

  app.post('/v1/admin/revoke', admin, async (request) => {
    const { user } = await requireAdmin(ctx, request);
    const body = parseInput(revokeBody, request.body);
    const { target, label } = revocationTarget(body);
    const r = await revoke(ctx.revocation, { target, revokedBy: user.name, ...(body.reason === undefined ? {} : { reason: body.reason }) }, ctx.clock());
    // Revoking a user is offboarding: their login sessions go too, so nothing new is minted.
    // (revoke() audits cert.revoked and krl.updated itself.)
    const sessions = body.user === undefined ? [] : await revokeUserSessions(ctx.redis, body.user);
    if (body.user !== undefined && sessions.length > 0) {
      await endRevokedLoginSessions(ctx, request, { user: body.user, sessionIds: sessions, message: body.reason ?? `revoked: ${label}`, by: user.name });
      await auditAs(ctx, request, 'login_session.revoked', { user: body.user, count: sessions.length, reason: `revoked: ${label}` });
    }
    return { revoked: r.added.map((e) => e.id), already_revoked: r.existing, sessions_revoked: sessions.length, krl_version: r.krl.version };
  });

  app.get('/v1/admin/audit', admin, async (request) => {
    await requireAdmin(ctx, request);
    const q = parseInput(auditQuery, request.query, 'query');
    const events = await queryAuditEvents(ctx.redis, {
      limit: q.limit,
      newestFirst: q.order === 'newest',
      ...(q.from === undefined ? {} : { from: new Date(q.from) }),
      ...(q.to === undefined ? {} : { to: new Date(q.to) }),
      ...(q.user === undefined ? {} : { user: q.user }),
      ...(q.code === undefined ? {} : { codes: q.code.split(',').map((c) => c.trim()).filter((c) => c !== '') }),
    });
    return { events };
  });
}
