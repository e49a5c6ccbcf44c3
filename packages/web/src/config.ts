import { isStoreError, parseRedisConfig, type RedisConfig } from '@portcullis/store';
import { z } from 'zod';
import { WebError } from './errors.js';

/*
 * The gateway's configuration (YAML `web:` section or a file of its own), strict like auth's: an
 * unknown key is an error naming it.
 *
 *   listen: 0.0.0.0:3080
 *   public_url: https://bastion.example.com:3080   # what browsers type; Origin checks and the SSO redirect use it
 *   state_dir: /var/lib/portcullis/web             # the generated TLS certificate
 *   tls: { names: [bastion.example.com] }          # or cert_file + key_file
 *   auth: { url: https://127.0.0.1:3025, fingerprint: "AB:CD:…" }
 *   redis: { url: redis://10.0.0.5:6379 }          # the recordings; same schema as auth's
 *   sessions: { idle: 3600, anonymous: 900 }       # seconds
 */

const listen = z.string().transform((s, ctx) => {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: 'expected host:port (e.g. 0.0.0.0:3080)' });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2])!, port };
});

export const webConfigSchema = z.strictObject({
  listen: listen.default({ host: '127.0.0.1', port: 3080 }),
  public_url: z
    .url({ protocol: /^https$/ })
    .refine((u) => new URL(u).pathname === '/' && !/[?#]/.test(u), 'expected an origin: https://host[:port] with no path')
    .optional(),
  state_dir: z.string().min(1),
  tls: z
    .strictObject({
      cert_file: z.string().min(1).optional(),
      key_file: z.string().min(1).optional(),
      names: z.array(z.string().min(1)).default([]),
    })
    .prefault({}),
  auth: z.strictObject({
    url: z.url({ protocol: /^https$/ }),
    /** SHA-256 of auth's certificate, as auth prints it at start. */
    fingerprint: z.string().min(1).optional(),
    /** PEM file of a CA that signed auth's certificate (when not pinning). */
    ca_file: z.string().min(1).optional(),
  }),
  redis: z.unknown(),
  sessions: z
    .strictObject({
      idle: z.number().int().min(60).max(7 * 86400).default(3600),
      anonymous: z.number().int().min(60).max(86400).default(900),
    })
    .prefault({}),
});

export type WebConfigInput = z.input<typeof webConfigSchema>;

export interface WebConfig extends Omit<z.output<typeof webConfigSchema>, 'redis'> {
  /** The Redis auth and the proxies use (url, sentinel or cluster); never an embedded one. */
  readonly redis: Exclude<RedisConfig, { embedded: unknown }>;
}

export function parseWebConfig(raw: unknown): WebConfig {
  const r = webConfigSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i?.path.length ? i.path.join('.') : 'web';
    const what = i?.code === 'unrecognized_keys' ? `unknown key ${i.keys.join(', ')}` : (i?.message ?? 'invalid');
    throw new WebError('ERR_CONFIG', `config: ${where}: ${what}`);
  }
  return { ...r.data, redis: webRedisConfig(r.data.redis) };
}

/** An embedded server is private to auth: a gateway starting its own would read an empty Redis. */
function webRedisConfig(raw: unknown): Exclude<RedisConfig, { embedded: unknown }> {
  if (typeof raw === 'object' && raw !== null && 'embedded' in raw) {
    throw new WebError('ERR_CONFIG', 'config: redis.embedded: the web gateway cannot use an embedded Redis (it is private to auth); give the Redis auth uses as url, sentinel or cluster');
  }
  let c: RedisConfig;
  try {
    c = parseRedisConfig(raw);
  } catch (e) {
    if (!isStoreError(e)) throw e;
    throw new WebError('ERR_CONFIG', e.message.replace('expected one of embedded, url, sentinel, cluster', 'expected one of url, sentinel, cluster'));
  }
  if ('embedded' in c) throw new TypeError('unreachable: embedded refused above');
  return c;
}

/**
 * The origins browsers may use: the public URL's, or with none configured, the loopback names of
 * the listen port (a browser on the machine itself may type localhost or 127.0.0.1).
 */
export function gatewayOrigins(publicUrl: string | undefined, port: number): string[] {
  if (publicUrl !== undefined) return [new URL(publicUrl).origin];
  return [`https://localhost:${port}`, `https://127.0.0.1:${port}`, `https://[::1]:${port}`];
}
