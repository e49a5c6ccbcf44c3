import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { isStoreError, parseRedisConfig, type RedisConfig } from '@portcullis/store';
import { ProxyError } from './errors.js';

// The proxy service's config file (main.ts runs it): YAML, checked, with paths made absolute
// and durations in milliseconds.

const duration = z.union([z.number().positive(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v * 1000;
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(v.trim());
  if (!m || v.trim() === '') {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration like 500ms, 60s, 5m or 90d` });
    return z.NEVER;
  }
  const [d, h, mi, s, ms] = m.slice(1).map((x) => Number(x ?? 0)) as [number, number, number, number, number];
  return (((d * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms;
});

const configSchema = z.strictObject({
  /** Spool files, the credential and host keys live here; relative paths below are against it. */
  state_dir: z.string().min(1),
  name: z.string().min(1).max(253).optional(),
  listen: z.string().default('0.0.0.0:3022'),
  host_keys: z.array(z.strictObject({ private_key: z.string().min(1), certificate: z.string().min(1) })).min(1).optional(),
  /** url, sentinel or cluster, as in auth's config (@portcullis/store); checked by proxyRedisConfig. */
  redis: z.unknown(),
  auth: z
    .strictObject({
      url: z.string().url(),
      fingerprint: z.string().min(1),
      credential_file: z.string().min(1).optional(),
    })
    .optional(),
  recording: z
    .strictObject({
      spool_dir: z.string().min(1).optional(),
      retention: duration.optional(),
      upload_interval: duration.default(60_000),
      spool_fsync: z.enum(['always', 'interval', 'never']).default('interval'),
    })
    .default({ upload_interval: 60_000, spool_fsync: 'interval' }),
  metrics: z.strictObject({ listen: z.string().min(1) }).optional(),
  drain_grace: duration.default(30_000),
  /** Proxy processes behind the one listener (service-workers.ts): a count or `auto`, one per core. */
  workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
});

/** The config file, checked, with paths made absolute and durations in milliseconds. */
export interface ProxyServiceConfig {
  readonly stateDir: string;
  readonly name: string | undefined;
  readonly listen: { readonly host: string; readonly port: number };
  readonly hostKeys: readonly { readonly privateKey: string; readonly certificate: string }[];
  /** Where recordings go: the same Redis auth uses (never an embedded one). */
  readonly redis: ProxyRedisConfig;
  readonly auth: { readonly url: string; readonly fingerprint: string; readonly credentialFile: string } | undefined;
  readonly recording: {
    readonly spoolDir: string;
    readonly retentionMs: number | undefined;
    readonly uploadIntervalMs: number;
    readonly spoolFsync: 'always' | 'interval' | 'never';
  };
  readonly metricsListen: { readonly host: string; readonly port: number } | undefined;
  readonly drainGraceMs: number;
  /** Proxy processes sharing the listener; 1 runs the proxy in this process, `auto` one per core. */
  readonly workers: number | 'auto';
}

function hostPort(s: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new ProxyError('ERR_CONFIG', `proxy config: ${what} expected host:port, got ${JSON.stringify(s)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Checks a parsed config document; `baseDir` resolves a relative state_dir (the file's directory). */
export function parseProxyServiceConfig(doc: unknown, baseDir = process.cwd()): ProxyServiceConfig {
  const r = configSchema.safeParse(doc ?? {});
  if (!r.success) {
    const problems = r.error.issues.slice(0, 5).map((i) =>
      i.code === 'unrecognized_keys' ? `unknown key ${[...i.path, ...i.keys].join('.')}` : `${i.path.join('.') || 'config'}: ${i.message}`,
    );
    throw new ProxyError('ERR_CONFIG', `proxy config: ${problems.join('; ')}`);
  }
  const c = r.data;
  const stateDir = resolve(baseDir, c.state_dir);
  const inState = (p: string): string => (isAbsolute(p) ? p : join(stateDir, p));
  return {
    stateDir,
    name: c.name,
    listen: hostPort(c.listen, 'listen'),
    hostKeys: (c.host_keys ?? [{ private_key: 'host_key', certificate: 'host_key-cert.pub' }]).map((k) => ({
      privateKey: inState(k.private_key),
      certificate: inState(k.certificate),
    })),
    redis: proxyRedisConfig(c.redis),
    auth: c.auth === undefined ? undefined : { url: c.auth.url, fingerprint: c.auth.fingerprint, credentialFile: inState(c.auth.credential_file ?? 'credential') },
    recording: {
      spoolDir: inState(c.recording.spool_dir ?? 'recordings'),
      retentionMs: c.recording.retention,
      uploadIntervalMs: c.recording.upload_interval,
      spoolFsync: c.recording.spool_fsync,
    },
    metricsListen: c.metrics === undefined ? undefined : hostPort(c.metrics.listen, 'metrics.listen'),
    drainGraceMs: c.drain_grace,
    workers: c.workers,
  };
}

export function loadProxyServiceConfig(path: string): ProxyServiceConfig {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ProxyError('ERR_CONFIG', `proxy config: cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseProxyServiceConfig(doc, dirname(resolve(path)));
}

/** The redis kinds a proxy can use: an embedded server is auth's private store, not shared. */
export type ProxyRedisConfig = Exclude<RedisConfig, { embedded: unknown }>;

/**
 * Checks the `redis` section. zod's messages name the key and the expected shape, never the
 * value, so a password in a URL or a sentinel section does not reach a log.
 */
export function proxyRedisConfig(raw: unknown): ProxyRedisConfig {
  if (typeof raw === 'object' && raw !== null && 'embedded' in raw) {
    throw new ProxyError(
      'ERR_CONFIG',
      'proxy config: redis.embedded: a proxy cannot use an embedded Redis (it is private to auth); give the Redis auth uses as url, sentinel or cluster',
    );
  }
  try {
    const c = parseRedisConfig(raw ?? {});
    if ('embedded' in c) throw new TypeError('unreachable: embedded refused above');
    return c;
  } catch (e) {
    if (!isStoreError(e)) throw e;
    throw new ProxyError('ERR_CONFIG', `proxy ${e.message.replace('expected one of embedded, url, sentinel, cluster', 'expected one of url, sentinel, cluster')}`);
  }
}
