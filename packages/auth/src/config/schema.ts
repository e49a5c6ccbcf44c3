import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { redisConfigSchema, type RedisConfig } from '../store/redis.js';
import { durationSchema, roleSchema } from '../roles/schema.js';

/*
 * The auth service's config file, as YAML (snake_case keys, as roles use). Every object is
 * strict, so a misspelt key is an error naming it rather than a setting silently ignored.
 * Defaults here are the documented ones; config/load.ts applies environment overrides and
 * resolves files (roles_dir, secrets) before and after this schema runs.
 */

export const DEFAULT_LISTEN = { host: '127.0.0.1', port: 3025 } as const;

const port = z.number().int().min(0).max(65535);

/** `127.0.0.1:3025`, `[::1]:3025`, `0.0.0.0:3025`, or `{host, port}`. Port 0 picks a free one (tests). */
const listenSchema = z
  .union([
    z.string(),
    z.strictObject({ host: z.string().min(1).default(DEFAULT_LISTEN.host), port: port.default(DEFAULT_LISTEN.port) }),
  ])
  .transform((v, ctx) => {
    if (typeof v !== 'string') return v;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(v.trim());
    const host = m?.[1] ?? m?.[2];
    const p = Number(m?.[3]);
    if (!m || host === undefined || p > 65535) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not host:port (e.g. 127.0.0.1:3025 or [::1]:3025)` });
      return z.NEVER;
    }
    return { host: host === '' ? '0.0.0.0' : host, port: p };
  });

/** A name the generated TLS certificate covers: a DNS name or an IP address. */
const tlsName = z
  .string()
  .refine((s) => isIP(s) !== 0 || /^(?=.{1,253}$)[A-Za-z0-9*](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(s), {
    message: 'expected a DNS name or an IP address',
  });

const tlsSchema = z
  .strictObject({
    /** An operator's certificate chain (PEM) and key; both or neither. */
    cert_file: z.string().min(1).optional(),
    key_file: z.string().min(1).optional(),
    /** Extra names for the generated certificate (127.0.0.1 and localhost are always in it). */
    names: z.array(tlsName).max(100).default([]),
  })
  .superRefine((t, ctx) => {
    if ((t.cert_file === undefined) !== (t.key_file === undefined)) {
      ctx.addIssue({ code: 'custom', path: [t.cert_file === undefined ? 'cert_file' : 'key_file'], message: 'cert_file and key_file go together' });
    }
  });

const absolutePath = z.string().startsWith('/', 'expected an absolute path');

/** A CA key inside a PKCS#11 token (HSM); see docs/hsm.md. */
const pkcs11KeySchema = z
  .strictObject({
    /** The vendor's PKCS#11 library. */
    module: absolutePath,
    /** The token by label (at most 32 characters in PKCS#11) or by slot id; exactly one. */
    token_label: z.string().min(1).max(32).optional(),
    slot: z.number().int().min(0).optional(),
    /** CKA_LABEL of the private key. */
    key_label: z.string().min(1),
    /** The user PIN: a file (mode 0600 or stricter) or an environment variable; exactly one. */
    pin_file: absolutePath.optional(),
    pin_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name').optional(),
  })
  .superRefine((k, ctx) => {
    if ((k.token_label === undefined) === (k.slot === undefined)) ctx.addIssue({ code: 'custom', path: ['token_label'], message: 'give token_label or slot, exactly one' });
    if ((k.pin_file === undefined) === (k.pin_env === undefined)) ctx.addIssue({ code: 'custom', path: ['pin_file'], message: 'give pin_file or pin_env, exactly one' });
  });

const caKeySchema = z
  .strictObject({
    /** For keys this service makes (file backend); a token key's algorithm is the token's. */
    algorithm: z.enum(['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa']).default('ed25519'),
    /** RSA only; at least 3072. */
    rsa_bits: z.number().int().min(3072).max(8192).optional(),
    /** file (when absent): keys under <state_dir>/ca, for a single machine; pkcs11: the key stays in a token. */
    backend: z.enum(['file', 'pkcs11']).optional(),
    pkcs11: pkcs11KeySchema.optional(),
  })
  .superRefine((k, ctx) => {
    if (k.backend === 'pkcs11' && k.pkcs11 === undefined) ctx.addIssue({ code: 'custom', path: ['pkcs11'], message: 'required when backend is pkcs11' });
    if (k.backend !== 'pkcs11' && k.pkcs11 !== undefined) ctx.addIssue({ code: 'custom', path: ['pkcs11'], message: 'only used when backend is pkcs11' });
  });

const roleMappingRule = z.strictObject({
  /** Default: the groups claim. */
  claim: z.string().min(1).optional(),
  value: z.string().min(1),
  roles: z.array(z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'a role name (lowercase letters, digits, _ . -)')).min(1),
});

const oidcSchema = z
  .strictObject({
    issuer: z.url(),
    client_id: z.string().min(1),
    client_secret: z.string().min(1).optional(),
    /** A file holding the client secret (kept out of the config file). */
    client_secret_file: z.string().min(1).optional(),
    token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
    scopes: z.array(z.string().min(1)).min(1).optional(),
    username_claim: z.string().min(1).optional(),
    groups_claim: z.string().min(1).optional(),
    /** Exact redirect URIs besides loopback ones (the web app's callback). */
    redirect_uris: z.array(z.string().min(1)).optional(),
    /** Path of loopback redirects (default /callback); null refuses loopback redirects. */
    loopback_redirect_path: z.string().startsWith('/').nullable().optional(),
    /** Test providers on 127.0.0.1 over http only. */
    allow_insecure_loopback_issuer: z.boolean().optional(),
    login_ttl: durationSchema.optional(),
    timeout: durationSchema.optional(),
    role_mapping: z.array(roleMappingRule).default([]),
  })
  .superRefine((o, ctx) => {
    if (o.client_secret !== undefined && o.client_secret_file !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['client_secret_file'], message: 'give client_secret or client_secret_file, not both' });
    }
  });

const windowLimit = (perUser: number, perAddress: number) =>
  z
    .strictObject({
      /** Attempts per user name within the window. */
      per_user: z.number().int().min(1).default(perUser),
      /** Attempts per client address within the window. */
      per_address: z.number().int().min(1).default(perAddress),
      window: durationSchema.prefault('5m'),
    })
    .prefault({});

const rateLimitsSchema = z
  .strictObject({
    login: windowLimit(10, 100),
    totp: windowLimit(5, 50),
    /** Host enrollment and renewal, per address (per_user is unused there). */
    enroll: windowLimit(20, 20),
  })
  .prefault({});

const auditSchema = z
  .strictObject({
    /** Where the JSON lines go besides the Redis stream: stdout, a file, or nowhere. */
    sink: z.enum(['stdout', 'file', 'none']).default('stdout'),
    path: z.string().min(1).optional(),
  })
  .prefault({})
  .superRefine((a, ctx) => {
    if (a.sink === 'file' && a.path === undefined) ctx.addIssue({ code: 'custom', path: ['path'], message: 'required when sink is file' });
    if (a.sink !== 'file' && a.path !== undefined) ctx.addIssue({ code: 'custom', path: ['path'], message: 'only used when sink is file' });
  });

const certificatesSchema = z
  .strictObject({
    /** Lifetime of a user certificate when the client asks for none (a role's max_cert_ttl caps it). */
    user_ttl: durationSchema.prefault('5m'),
    /** Lifetime of host certificates, in whole days. */
    host_ttl: durationSchema.prefault('30d').refine((s) => s % 86400 === 0 && s / 86400 <= 365, 'expected whole days, at most 365d'),
  })
  .prefault({});

/** The keys a `redis` section may start with; one of them picks the schema branch to report on. */
const REDIS_KINDS = ['embedded', 'url', 'sentinel', 'cluster'] as const;

/**
 * The redis section: store/redis.ts's schema, except that `embedded` may omit its stateDir
 * (it defaults to `<state_dir>/redis`) and the whole section may be left out (embedded).
 * Errors name the key inside the branch the section chose, instead of "invalid union".
 */
function resolveRedis(raw: unknown, stateDir: string, ctx: z.RefinementCtx): RedisConfig | undefined {
  let input = raw ?? { embedded: {} };
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const keys = Object.keys(input);
    const kind = REDIS_KINDS.find((k) => keys.includes(k));
    if (keys.length !== 1 || kind === undefined) {
      ctx.addIssue({ code: 'custom', path: ['redis'], message: `expected exactly one of ${REDIS_KINDS.join(', ')}, got ${keys.join(', ') || 'nothing'}` });
      return undefined;
    }
    const embedded = (input as { embedded?: unknown }).embedded;
    if (kind === 'embedded' && typeof embedded === 'object' && embedded !== null && !('stateDir' in embedded)) {
      input = { embedded: { stateDir: join(stateDir, 'redis'), ...embedded } };
    }
  }
  const r = redisConfigSchema.safeParse(input);
  if (r.success) return r.data;
  // The union reports its branches' issues nested; show those of the branch the key chose.
  for (const issue of r.error.issues) {
    const nested = issue.code === 'invalid_union' ? issue.errors.flat() : [issue];
    const relevant = nested.filter((i) => i.path.length > 0 && REDIS_KINDS.includes(i.path[0] as (typeof REDIS_KINDS)[number]));
    for (const i of relevant.length > 0 ? relevant : [issue]) {
      const message = i.code === 'unrecognized_keys' ? `unknown key ${i.keys.map((k) => JSON.stringify(k)).join(', ')}` : i.message;
      ctx.addIssue({ code: 'custom', path: ['redis', ...i.path.map((p) => (typeof p === 'symbol' ? String(p) : p))], message });
    }
  }
  return undefined;
}

export const authConfigSchema = z
  .strictObject({
    /** CA keys, the generated TLS certificate and the embedded Redis live here. */
    state_dir: z.string().min(1),
    listen: listenSchema.default(DEFAULT_LISTEN),
    /**
     * How clients and hosts reach this service (KRL URL, invite links). Default:
     * https://<listen address>, with 127.0.0.1 for a wildcard listen address.
     */
    public_url: z
      .url({ protocol: /^https$/ })
      .refine((u) => !/[?#]/.test(u), 'no query or fragment')
      .transform((u) => u.replace(/\/+$/, ''))
      .optional(),
    tls: tlsSchema.prefault({}),
    redis: z.unknown().optional(),
    ca: z
      .strictObject({
        /** Signs engineers' certificates; trusted by the proxy only. */
        user: caKeySchema.prefault({}),
        /** Signs the certificates the proxy dials targets with; targets trust only this one. */
        upstream: caKeySchema.prefault({}),
        host: caKeySchema.prefault({}),
        /** Encrypts the CA key files (as ssh-keygen -N); the file holds the passphrase. */
        passphrase_file: z.string().min(1).optional(),
      })
      .prefault({}),
    certificates: certificatesSchema,
    oidc: oidcSchema.optional(),
    /** Roles defined here are read-only through the API; others are managed with it. */
    roles: z.array(roleSchema).default([]),
    /** A directory of role files (*.yaml, *.yml), one role each. */
    roles_dir: z.string().min(1).optional(),
    rate_limits: rateLimitsSchema,
    audit: auditSchema,
    totp: z.strictObject({ issuer: z.string().min(1).max(64).default('Portcullis') }).prefault({}),
  })
  .transform((c, ctx) => {
    const redis = resolveRedis(c.redis, c.state_dir, ctx);
    const names = new Set<string>();
    c.roles.forEach((r, i) => {
      if (names.has(r.name)) ctx.addIssue({ code: 'custom', path: ['roles', i, 'name'], message: `role ${r.name} is defined twice` });
      names.add(r.name);
    });
    if (redis === undefined) return z.NEVER;
    return { ...c, redis };
  });

/** The validated config (durations in seconds, redis resolved). */
export type AuthConfig = z.output<typeof authConfigSchema>;
export type OidcConfig = NonNullable<AuthConfig['oidc']>;
export type RateLimitConfig = AuthConfig['rate_limits'];
