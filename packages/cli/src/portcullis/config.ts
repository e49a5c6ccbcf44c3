import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { CliError } from '../common/errors.js';

/*
 * The one config file of `portcullis start`. Each service keeps its own schema (auth's
 * parseAuthConfig, the proxy's and web's parsers check their sections again); this file adds
 * what only a one-machine install has: one state directory with a subdirectory per service,
 * which services run here, and how a proxy or web started alone finds auth and Redis. When
 * everything runs in one process, the proxy and web take auth's address, pin and Redis
 * without being told.
 */

export const SERVICES = ['auth', 'proxy', 'web'] as const;
export type ServiceName = (typeof SERVICES)[number];

const remoteAuth = z.strictObject({ url: z.url({ protocol: /^https$/ }), fingerprint: z.string().min(1) });
// url, sentinel or cluster (the Redis auth uses); the proxy's and web's own parsers check it.
const sharedRedis = z.record(z.string(), z.unknown());

const schema = z.strictObject({
  /** Everything lives below it: <state_dir>/auth, /proxy, /web. */
  state_dir: z.string().min(1).default('/var/lib/portcullis'),
  /** The services this machine runs (--roles overrides). */
  services: z.array(z.enum(SERVICES)).min(1).default([...SERVICES]),
  /** auth's own config (see packages/auth): listen, oidc, roles, redis, certificates... */
  auth: z.record(z.string(), z.unknown()).default({}),
  proxy: z
    .strictObject({
      listen: z.string().default('0.0.0.0:3022'),
      /** The proxy's name in its host certificate; clients may also use `names`. */
      name: z.string().min(1).optional(),
      names: z.array(z.string().min(1)).default([]),
      drain_grace: z.union([z.string(), z.number()]).default('30s'),
      /** Only when auth runs elsewhere: its URL and pin, and a proxy join token for the first start. */
      auth: remoteAuth.optional(),
      join_token: z.string().min(1).optional(),
      redis: sharedRedis.optional(),
      metrics: z.strictObject({ listen: z.string().min(1) }).optional(),
    })
    .prefault({}),
  web: z
    .strictObject({
      listen: z.string().default('0.0.0.0:3080'),
      public_url: z.string().optional(),
      tls: z.record(z.string(), z.unknown()).optional(),
      sessions: z.record(z.string(), z.unknown()).optional(),
      auth: remoteAuth.optional(),
      redis: sharedRedis.optional(),
    })
    .prefault({}),
});

export type StartConfigInput = z.input<typeof schema>;

export interface StartConfig extends Omit<z.output<typeof schema>, 'services'> {
  readonly services: readonly ServiceName[];
  /** Relative paths inside the file are against this (the file's directory). */
  readonly baseDir: string;
  readonly envOverrides: readonly string[];
}

/**
 * Environment overrides (twelve-factor installs set these instead of templating the file),
 * applied before validation so their values are checked like the file's.
 */
const ENV: readonly { readonly name: string; apply(doc: Record<string, unknown>, value: string): void }[] = [
  { name: 'PORTCULLIS_STATE_DIR', apply: (d, v) => void (d['state_dir'] = v) },
  { name: 'PORTCULLIS_SERVICES', apply: (d, v) => void (d['services'] = v.split(',').map((s) => s.trim()).filter((s) => s !== '')) },
  { name: 'PORTCULLIS_AUTH_LISTEN', apply: (d, v) => void (section(d, 'auth')['listen'] = v) },
  { name: 'PORTCULLIS_PROXY_LISTEN', apply: (d, v) => void (section(d, 'proxy')['listen'] = v) },
  { name: 'PORTCULLIS_WEB_LISTEN', apply: (d, v) => void (section(d, 'web')['listen'] = v) },
  { name: 'REDIS_URL', apply: (d, v) => void (section(d, 'auth')['redis'] = { url: v }) },
];

function section(doc: Record<string, unknown>, key: string): Record<string, unknown> {
  const s = doc[key];
  if (typeof s === 'object' && s !== null && !Array.isArray(s)) return s as Record<string, unknown>;
  const fresh: Record<string, unknown> = {};
  doc[key] = fresh;
  return fresh;
}

function problem(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') return `unknown key ${issue.keys.map((k) => (path === '' ? k : `${path}.${k}`)).join(', ')}`;
  return `${path === '' ? 'config' : path}: ${issue.message}`;
}

/** Checks a parsed document; the first problem names its key. */
export function parseStartConfig(raw: unknown, opts: { env?: NodeJS.ProcessEnv; baseDir?: string; roles?: string } = {}): StartConfig {
  const env = opts.env ?? process.env;
  if (raw !== undefined && raw !== null && (typeof raw !== 'object' || Array.isArray(raw))) throw new CliError('ERR_CONFIG', 'config: expected a mapping of keys at the top level');
  const doc = structuredClone((raw ?? {}) as Record<string, unknown>);
  const applied: string[] = [];
  for (const o of ENV) {
    const v = env[o.name];
    if (v !== undefined && v !== '') {
      o.apply(doc, v);
      applied.push(o.name);
    }
  }
  if (opts.roles !== undefined) doc['services'] = opts.roles.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const r = schema.safeParse(doc);
  if (!r.success) {
    const first = r.error.issues[0];
    const what = first === undefined ? 'invalid' : problem(first);
    throw new CliError('ERR_CONFIG', `config: ${opts.roles !== undefined && first?.path[0] === 'services' ? `--roles: ${first.message}` : what}`);
  }
  const c = r.data;
  const baseDir = opts.baseDir ?? process.cwd();
  const services = [...new Set(c.services)];
  const runs = (s: ServiceName): boolean => services.includes(s);
  // A service alone must be told where auth and Redis are; together they share them.
  if (runs('proxy') && !runs('auth')) {
    if (c.proxy.auth === undefined) throw new CliError('ERR_CONFIG', 'config: proxy.auth: required (url and fingerprint) when auth is not run here');
    if (c.proxy.redis === undefined) throw new CliError('ERR_CONFIG', 'config: proxy.redis: required (url) when auth is not run here');
  }
  if (runs('web') && !runs('auth')) {
    if (c.web.auth === undefined) throw new CliError('ERR_CONFIG', 'config: web.auth: required (url and fingerprint) when auth is not run here');
    if (c.web.redis === undefined) throw new CliError('ERR_CONFIG', 'config: web.redis: required (url) when auth is not run here');
  }
  return { ...c, state_dir: isAbsolute(c.state_dir) ? c.state_dir : resolve(baseDir, c.state_dir), services, baseDir, envOverrides: applied };
}

export function loadStartConfig(path: string | undefined, opts: { env?: NodeJS.ProcessEnv; roles?: string } = {}): StartConfig {
  if (path === undefined) return parseStartConfig({}, opts);
  if (!existsSync(path)) throw new CliError('ERR_CONFIG', `config ${path} does not exist`);
  const doc = parseDocument(readFileSync(path, 'utf8'), { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    throw new CliError('ERR_CONFIG', `config ${path}: YAML error${where}: ${e.message.split('\n')[0]}`);
  }
  return parseStartConfig(doc.toJS(), { ...opts, baseDir: dirname(resolve(path)) });
}

/** The names the proxy's host certificate carries: its name, the loopback names, and `names`. */
export function proxyNames(c: StartConfig): { name: string; names: string[] } {
  const name = c.proxy.name ?? hostname();
  return { name, names: [...new Set(['localhost', '127.0.0.1', ...c.proxy.names].filter((n) => n !== name))] };
}

export const serviceDir = (c: StartConfig, s: ServiceName): string => join(c.state_dir, s);
