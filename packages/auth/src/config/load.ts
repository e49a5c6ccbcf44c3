import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { AuthError } from '../errors.js';
import type { OidcSettings } from '../identity/oidc.js';
import { parseRoleYaml, type Role } from '../roles/schema.js';
import { authConfigSchema, type AuthConfig, type OidcConfig } from './schema.js';
import { validate } from './validate.js';

/** The config with files read: roles from roles_dir merged in, secrets loaded, paths absolute. */
export interface LoadedAuthConfig extends Omit<AuthConfig, 'oidc' | 'roles'> {
  readonly roles: readonly Role[];
  readonly oidc: OidcSettings | undefined;
  readonly caPassphrase: string | undefined;
  /** Environment variables that overrode the file, for the startup log. */
  readonly envOverrides: readonly string[];
}

export interface LoadConfigOptions {
  /** Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Relative paths in the config are relative to this (the config file's directory). */
  readonly baseDir?: string;
}

/**
 * Environment overrides, applied to the parsed YAML before validation so their values are
 * checked like the file's. Twelve-factor deployments (compose, Kubernetes) set these instead of
 * templating the file.
 */
const ENV_OVERRIDES: readonly { readonly name: string; apply(raw: Record<string, unknown>, value: string): void }[] = [
  { name: 'PORTCULLIS_STATE_DIR', apply: (raw, v) => void (raw['state_dir'] = v) },
  { name: 'PORTCULLIS_LISTEN', apply: (raw, v) => void (raw['listen'] = v) },
  { name: 'PORTCULLIS_PUBLIC_URL', apply: (raw, v) => void (raw['public_url'] = v) },
  { name: 'REDIS_URL', apply: (raw, v) => void (raw['redis'] = { url: v }) },
  {
    name: 'PORTCULLIS_OIDC_CLIENT_SECRET',
    apply: (raw, v) => {
      const oidc = raw['oidc'];
      if (typeof oidc !== 'object' || oidc === null) throw new AuthError('ERR_CONFIG', 'PORTCULLIS_OIDC_CLIENT_SECRET is set but the config has no oidc section');
      const o = oidc as Record<string, unknown>;
      delete o['client_secret_file'];
      o['client_secret'] = v;
    },
  },
];

function readSecretFile(path: string, key: string): string {
  try {
    const s = readFileSync(path, 'utf8').trim();
    if (s === '') throw new Error('the file is empty');
    return s;
  } catch (e) {
    throw new AuthError('ERR_CONFIG', `invalid auth config: ${key}: cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Every *.yaml / *.yml file of the directory as a role; the file name must match the role name. */
export function loadRolesDir(dir: string): Role[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch (e) {
    throw new AuthError('ERR_CONFIG', `invalid auth config: roles_dir: cannot read ${dir}: ${(e as Error).message}`);
  }
  return files.map((f) => {
    const path = join(dir, f);
    if (!statSync(path).isFile()) throw new AuthError('ERR_CONFIG', `invalid auth config: roles_dir: ${path} is not a file`);
    let role: Role;
    try {
      role = parseRoleYaml(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new AuthError('ERR_CONFIG', `${path}: ${(e as Error).message}`);
    }
    // One name per file keeps `ls roles/` an index of the roles.
    const stem = f.replace(/\.ya?ml$/, '');
    if (stem !== role.name) throw new AuthError('ERR_CONFIG', `${path}: the role is named ${role.name}; name the file ${role.name}.yaml`);
    return role;
  });
}

function oidcSettings(o: OidcConfig, base: string): OidcSettings {
  const secret = o.client_secret ?? (o.client_secret_file === undefined ? undefined : readSecretFile(resolve(base, o.client_secret_file), 'oidc.client_secret_file'));
  return {
    issuer: o.issuer,
    clientId: o.client_id,
    roleMapping: o.role_mapping.map((r) => ({ value: r.value, roles: r.roles, ...(r.claim === undefined ? {} : { claim: r.claim }) })),
    ...(secret === undefined ? {} : { clientSecret: secret }),
    ...(o.token_endpoint_auth_method === undefined ? {} : { tokenEndpointAuthMethod: o.token_endpoint_auth_method }),
    ...(o.scopes === undefined ? {} : { scopes: o.scopes }),
    ...(o.username_claim === undefined ? {} : { usernameClaim: o.username_claim }),
    ...(o.groups_claim === undefined ? {} : { groupsClaim: o.groups_claim }),
    ...(o.redirect_uris === undefined ? {} : { redirectUris: o.redirect_uris }),
    ...(o.loopback_redirect_path === undefined ? {} : { loopbackRedirectPath: o.loopback_redirect_path }),
    ...(o.allow_insecure_loopback_issuer === undefined ? {} : { allowInsecureLoopbackIssuer: o.allow_insecure_loopback_issuer }),
    ...(o.login_ttl === undefined ? {} : { loginTtlMs: o.login_ttl * 1000 }),
    ...(o.timeout === undefined ? {} : { timeoutSeconds: o.timeout }),
  };
}

/**
 * Validates a parsed config document (a YAML file's content, or an object a test builds),
 * applies the environment and reads the files it points to. Errors are ERR_CONFIG naming the key.
 */
export function parseAuthConfig(raw: unknown, options: LoadConfigOptions = {}): LoadedAuthConfig {
  const env = options.env ?? process.env;
  const base = options.baseDir ?? process.cwd();
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new AuthError('ERR_CONFIG', 'invalid auth config: expected a mapping of keys at the top level');
  const doc = structuredClone(raw) as Record<string, unknown>;
  const applied: string[] = [];
  for (const o of ENV_OVERRIDES) {
    const v = env[o.name];
    if (v !== undefined && v !== '') {
      o.apply(doc, v);
      applied.push(o.name);
    }
  }
  if (typeof doc['state_dir'] === 'string' && doc['state_dir'] !== '') doc['state_dir'] = resolve(base, doc['state_dir']);
  const what = applied.length === 0 ? 'auth config' : `auth config (with ${applied.join(', ')} from the environment)`;
  const c = validate(authConfigSchema, doc, what);

  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const fromDir = c.roles_dir === undefined ? [] : loadRolesDir(abs(c.roles_dir));
  const roles = [...c.roles];
  for (const r of fromDir) {
    if (roles.some((x) => x.name === r.name)) throw new AuthError('ERR_CONFIG', `invalid ${what}: role ${r.name} is defined both in roles and in roles_dir`);
    roles.push(r);
  }
  const { oidc, roles: _inline, ...rest } = c;
  void _inline;
  const redis = 'embedded' in c.redis ? { embedded: { ...c.redis.embedded, stateDir: abs(c.redis.embedded.stateDir) } } : c.redis;
  return {
    ...rest,
    redis,
    tls: {
      ...c.tls,
      ...(c.tls.cert_file === undefined ? {} : { cert_file: abs(c.tls.cert_file) }),
      ...(c.tls.key_file === undefined ? {} : { key_file: abs(c.tls.key_file) }),
    },
    audit: c.audit.path === undefined ? c.audit : { ...c.audit, path: abs(c.audit.path) },
    roles,
    oidc: oidc === undefined ? undefined : oidcSettings(oidc, base),
    caPassphrase: c.ca.passphrase_file === undefined ? undefined : readSecretFile(abs(c.ca.passphrase_file), 'ca.passphrase_file'),
    envOverrides: applied,
  };
}

/** Reads and validates a YAML config file (duplicate keys refused). */
export function loadAuthConfig(path: string, options: Omit<LoadConfigOptions, 'baseDir'> = {}): LoadedAuthConfig {
  if (!existsSync(path)) throw new AuthError('ERR_CONFIG', `auth config ${path} does not exist`);
  const doc = parseDocument(readFileSync(path, 'utf8'), { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    throw new AuthError('ERR_CONFIG', `invalid auth config ${path}: YAML error${where}: ${e.message.split('\n')[0]}`);
  }
  try {
    return parseAuthConfig(doc.toJS(), { ...options, baseDir: dirname(resolve(path)) });
  } catch (e) {
    if (e instanceof AuthError && !e.message.includes(path)) throw new AuthError(e.code, `${path}: ${e.message}`);
    throw e;
  }
}
