import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { CA_KINDS, type CaKind } from '../ca/keystore.js';
import { ROTATION_PHASES, RotationService, nextPhase, type RotationPhase, type RotationState } from '../ca/rotation.js';
import { AuthError } from '../errors.js';
import { listHosts } from '../hosts/inventory.js';
import { type ApiContext, auditAs, requireAdmin } from './context.js';
import { iso, parseInput } from './validation.js';

/*
 * Admin: phased CA rotation (ca/rotation.ts). POST moves one kind one phase on, or rolls it back;
 * GET reports every kind with what is still on the old key, so the operator knows when the
 * next step is safe.
 */

const kindParam = z.strictObject({ kind: z.enum(CA_KINDS as [CaKind, ...CaKind[]]) });
const rotateBody = z
  .strictObject({
    phase: z.enum(ROTATION_PHASES as [RotationPhase, ...RotationPhase[]]).optional(),
    rollback: z.literal(true).optional(),
    algorithm: z.enum(['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa']).optional(),
    /** With phase init: adopt this standby key (imported, or an HSM key) instead of generating one. */
    key: z.string().regex(/^[0-9a-f]{16}$/, 'a CA key id (16 hex digits)').optional(),
    /** Complete a host CA rotation although some hosts still present old certificates. */
    force: z.literal(true).optional(),
  })
  .refine((b) => (b.phase === undefined) !== (b.rollback === undefined), { message: 'give exactly one of phase, rollback' });

/** Hosts whose certificates were all issued before the new host CA started signing. */
async function hostsOnOldCa(ctx: ApiContext, state: RotationState): Promise<string[] | undefined> {
  if (state.kind !== 'host' || state.signingSwitchedAt === undefined) return undefined;
  const switched = state.signingSwitchedAt;
  return (await listHosts(ctx.redis)).filter((h) => Math.max(h.enrolledAt, h.renewedAt ?? 0) < switched).map((h) => h.name);
}

async function describe(ctx: ApiContext, state: RotationState): Promise<Record<string, unknown>> {
  const keys = ctx.keystore.keys(state.kind).map((k) => ({
    id: k.id,
    status: k.status,
    fingerprint: k.fingerprint,
    ...(k.id === state.oldId ? { role: 'old' } : k.id === state.newId ? { role: 'new' } : {}),
  }));
  const pending = await hostsOnOldCa(ctx, state);
  return {
    kind: state.kind,
    phase: state.phase,
    ...(state.phase === 'standby' ? {} : { next_phase: nextPhase(state.phase) }),
    ...(state.oldId === undefined ? {} : { old_ca: state.oldId }),
    ...(state.newId === undefined ? {} : { new_ca: state.newId }),
    ...(state.startedAt === undefined ? {} : { started_at: iso(state.startedAt) }),
    ...(state.signingSwitchedAt === undefined ? {} : { signing_switched_at: iso(state.signingSwitchedAt) }),
    ...(state.changedAt === undefined ? {} : { changed_at: iso(state.changedAt) }),
    ...(state.changedBy === undefined ? {} : { changed_by: state.changedBy }),
    ...(pending === undefined ? {} : { hosts_on_old_ca: pending }),
    ...(state.last === undefined ? {} : { last: { outcome: state.last.outcome, at: iso(state.last.at), old_ca: state.last.oldId, new_ca: state.last.newId } }),
    keys,
  };
}

export function registerRotationRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const admin = { config: { refusal: 'admin.action' as const } };
  const rotation = new RotationService({ redis: ctx.redis, keystore: ctx.keystore, clock: ctx.clock });

  app.get('/v1/admin/ca/rotation', admin, async (request) => {
    await requireAdmin(ctx, request);
    const out: Record<string, unknown> = {};
    for (const kind of CA_KINDS) out[kind] = await describe(ctx, await rotation.state(kind));
    return out;
  });

  app.post('/v1/admin/ca/:kind/rotation', admin, async (request) => {
    const { user } = await requireAdmin(ctx, request);
    const { kind } = parseInput(kindParam, request.params, 'query') as { kind: CaKind };
    const body = parseInput(rotateBody, request.body);
    const req = body.rollback === true ? ({ rollback: true } as const) : { to: body.phase! };
    if (body.phase === 'standby' && body.force !== true) {
      // Dropping the old host CA while a host still presents its certificate makes every client
      // refuse that host: the one step of a rotation that would refuse sessions.
      const pending = await hostsOnOldCa(ctx, await rotation.state(kind));
      if (pending !== undefined && pending.length > 0) {
        throw new AuthError('ERR_CONFLICT', `ca rotation: ${pending.length} host(s) still present certificates of the old host CA (${pending.slice(0, 5).join(', ')}${pending.length > 5 ? ', …' : ''}); renew them first, or complete with force`);
      }
    }
    const { transition, state } = await rotation.rotate(kind, req, {
      by: user.name,
      ...(body.algorithm === undefined ? {} : { spec: { algorithm: body.algorithm } }),
      ...(body.key === undefined ? {} : { useKey: body.key }),
    });
    // The keystore audits the key changes themselves (ca.created, ca.trust_changed); this
    // records the phase, which is what an auditor reads the rotation by.
    await auditAs(ctx, request, 'admin.action', {
      action: transition.rollback ? 'ca.rotation.rollback' : 'ca.rotation.phase',
      kind,
      from: transition.from,
      to: transition.to,
      oldCa: state.oldId ?? state.last?.oldId,
      newCa: state.newId ?? state.last?.newId,
    });
    return describe(ctx, state);
  });
}
