import type { FastifyRequest } from 'fastify';
import type { CryptoBackend } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import type { AuditActor, AuditFieldInput } from '../audit/event.js';
import type { AuditEventName } from '../audit/codes.js';
import type { AuditLog } from '../audit/log.js';
import type { AuthMetrics } from '../metrics.js';
import type { RedisClient } from '../store/redis.js';
import type { CaKeystore } from '../ca/keystore.js';
import type { IssuerDeps } from '../ca/issuer.js';
import type { EnrollmentDeps } from '../hosts/enrollment.js';
import { authenticateProxy } from '../hosts/enrollment.js';
import type { ServicePrincipal } from '../hosts/join-tokens.js';
import type { RevocationDeps } from '../revocation/revocations.js';
import { authenticateLoginSession, type LoginSession } from '../sessions/login-session.js';
import type { OidcLogin } from '../identity/oidc.js';
import type { TotpAuthenticator } from '../identity/totp.js';
import type { User } from '../identity/store.js';
import type { UserDirectory } from '../identity/users.js';
import type { RateLimit } from './rate-limit.js';
import type { RoleCatalog } from './role-catalog.js';

/**
 * The role name that makes a user an administrator of Portcullis itself (users, roles, tokens,
 * hosts, locks, revocation, audit). It is a role name rather than a role option so that SSO
 * groups map to it like to any role; when no role of that name is defined, a built-in one that
 * grants no SSH login stands in (RoleCatalog).
 */
export const ADMIN_ROLE = 'admin';

/** Everything the routes call; built by service.ts. Routes stay thin: parse, call, map. */
export interface ApiContext {
  readonly redis: RedisClient;
  readonly crypto: CryptoBackend;
  readonly keystore: CaKeystore;
  readonly users: UserDirectory;
  readonly totp: TotpAuthenticator;
  /** Undefined when no OpenID provider is configured. */
  readonly oidc: OidcLogin | undefined;
  readonly roles: RoleCatalog;
  readonly audit: AuditLog;
  readonly metrics: AuthMetrics;
  readonly issuer: IssuerDeps;
  readonly enrollment: EnrollmentDeps;
  readonly revocation: RevocationDeps;
  /** Milliseconds since the epoch. */
  readonly clock: () => number;
  readonly rateLimits: {
    readonly loginUser: RateLimit;
    readonly loginAddress: RateLimit;
    readonly totpUser: RateLimit;
    readonly totpAddress: RateLimit;
    readonly enrollAddress: RateLimit;
  };
  /** https://host:port clients and hosts use; fixed once the server listens. */
  publicUrl(): string;
  /** Seconds, when the client asks for no lifetime. */
  readonly defaultUserCertTtl: number;
  /** The service log (operational lines, never secrets). */
  readonly log: (message: string) => void;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The audit event a refusal on this route is recorded as. */
    refusal?: AuditEventName;
    /** Refusals count in ssh_ca_issuance_failures_total (certificate routes). */
    issuance?: boolean;
  }
  interface FastifyRequest {
    /** Who is asking, as far as known; refusals are audited with it. */
    actor: AuditActor | null;
  }
}

// Errors that the module which threw them has already audited (the issuer, enrollment): the
// error handler must not write a second event for them.
const auditedErrors = new WeakSet<object>();

/** Runs a module call that audits its own refusals, and marks what it throws as audited. */
export async function selfAudited<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (typeof e === 'object' && e !== null) auditedErrors.add(e);
    throw e;
  }
}

export function wasAudited(e: unknown): boolean {
  return typeof e === 'object' && e !== null && auditedErrors.has(e);
}

// Fields added to an error response but kept out of the audit event (an MFA ticket is a secret).
const responseFields = new WeakMap<object, Readonly<Record<string, unknown>>>();

export function withResponseFields(e: AuthError, fields: Readonly<Record<string, unknown>>): AuthError {
  responseFields.set(e, fields);
  return e;
}

export function responseFieldsOf(e: unknown): Readonly<Record<string, unknown>> {
  return (typeof e === 'object' && e !== null && responseFields.get(e)) || {};
}

export function actorOf(request: FastifyRequest): AuditActor {
  return request.actor ?? { kind: 'anonymous', name: '-', address: request.ip };
}

export function setActor(request: FastifyRequest, kind: AuditActor['kind'], name: string): AuditActor {
  request.actor = { kind, name, address: request.ip };
  return request.actor;
}

/** Emits an audit event as the request's actor. */
export async function auditAs(ctx: ApiContext, request: FastifyRequest, name: AuditEventName, fields: Readonly<Record<string, AuditFieldInput>> = {}): Promise<void> {
  await ctx.audit.emit(name, actorOf(request), fields);
}

/** The bearer secret of the Authorization header, or undefined. */
export function bearer(request: FastifyRequest): string | undefined {
  const h = request.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

function needBearer(request: FastifyRequest, what: string): string {
  const t = bearer(request);
  if (t === undefined) throw new AuthError('ERR_UNAUTHENTICATED', `this endpoint needs "Authorization: Bearer <${what}>"`);
  return t;
}

/** The login session the request carries. */
export async function requireSession(ctx: ApiContext, request: FastifyRequest): Promise<LoginSession> {
  const session = await authenticateLoginSession(ctx.redis, needBearer(request, 'login session token'), ctx.clock());
  setActor(request, 'user', session.user);
  return session;
}

/**
 * A session whose user holds the admin role now (re-read: a role taken away, a disabled account
 * or a deleted user ends admin rights at once, not at the session's expiry).
 */
export async function requireAdmin(ctx: ApiContext, request: FastifyRequest): Promise<{ session: LoginSession; user: User }> {
  const session = await requireSession(ctx, request);
  const user = await ctx.users.getUser(session.user);
  if (user === undefined || user.status !== 'active') throw new AuthError('ERR_FORBIDDEN', `user ${session.user} is disabled or gone`);
  if (!user.roles.includes(ADMIN_ROLE)) throw new AuthError('ERR_FORBIDDEN', `user ${user.name} is not an administrator (needs the ${ADMIN_ROLE} role)`);
  return { session, user };
}

/** The enrolled proxy whose service credential the request carries. */
export async function requireProxy(ctx: ApiContext, request: FastifyRequest): Promise<ServicePrincipal> {
  const principal = await authenticateProxy(ctx.enrollment, needBearer(request, 'proxy service credential'));
  setActor(request, 'service', principal.host);
  return principal;
}
