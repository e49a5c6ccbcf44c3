import { parseDocument, stringify } from 'yaml';
import { AuthError } from '../errors.js';
import type { RoleSource } from '../ca/access.js';
import { parseRole, type Role } from '../roles/schema.js';
import { rolesKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { validate } from '../config/validate.js';
import { roleSchema } from '../roles/schema.js';
import { ADMIN_ROLE } from './context.js';

/**
 * Where a role is defined. Roles from the config file are the operator's and read-only through
 * the API (a change there would be undone at the next start); roles made through the API live in
 * Redis (`pc:{roles}:all`, name -> the role as written, re-validated on every read).
 */
export type RoleOrigin = 'config' | 'api' | 'builtin';

export interface RoleEntry {
  readonly name: string;
  readonly origin: RoleOrigin;
  readonly role: Role;
  /** The role as YAML, for `pcctl roles get`. */
  readonly yaml: string;
}

// Stands in when no role named admin is defined, so that an admin with no SSH access still has
// a role that resolves (and so a login session), and gets no login on any host from it.
const BUILTIN_ADMIN = {
  kind: 'role',
  name: ADMIN_ROLE,
  description: 'built-in: administers Portcullis (users, roles, tokens, hosts, locks, revocation, audit); grants no SSH login',
  spec: {},
} as const;

function formatDuration(seconds: number): string {
  const units: [number, string][] = [[86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']];
  let rest = seconds;
  let out = '';
  for (const [size, unit] of units) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out || '0s';
}

/** A parsed role back in its written form (durations as text), for display. */
function roleDocument(role: Role): unknown {
  const o = role.spec.options;
  return {
    ...role,
    spec: {
      ...role.spec,
      options: {
        ...o,
        max_cert_ttl: formatDuration(o.max_cert_ttl),
        login_session_ttl: formatDuration(o.login_session_ttl),
        idle_timeout: formatDuration(o.idle_timeout),
      },
    },
  };
}

export class RoleCatalog implements RoleSource {
  readonly #redis: RedisClient;
  readonly #config: ReadonlyMap<string, Role>;
  readonly #builtin: Role;

  constructor(redis: RedisClient, configRoles: readonly Role[]) {
    this.#redis = redis;
    this.#config = new Map(configRoles.map((r) => [r.name, r]));
    this.#builtin = parseRole(BUILTIN_ADMIN);
  }

  async getRoles(names: readonly string[]): Promise<Role[]> {
    const wanted = [...new Set(names)];
    const fromRedis = wanted.filter((n) => !this.#config.has(n));
    const stored = fromRedis.length === 0 ? [] : await this.#redis.hmget(rolesKey(), ...fromRedis);
    const out: Role[] = [];
    for (const n of wanted) {
      const c = this.#config.get(n);
      if (c !== undefined) {
        out.push(c);
        continue;
      }
      const json = stored[fromRedis.indexOf(n)];
      const r = json === null || json === undefined ? undefined : this.#parseStored(json);
      if (r !== undefined) out.push(r);
      else if (n === ADMIN_ROLE) out.push(this.#builtin);
    }
    return out;
  }

  async get(name: string): Promise<RoleEntry | undefined> {
    const c = this.#config.get(name);
    if (c !== undefined) return { name, origin: 'config', role: c, yaml: stringify(roleDocument(c)) };
    const json = await this.#redis.hget(rolesKey(), name);
    if (json !== null) {
      const role = this.#parseStored(json);
      if (role !== undefined) return { name, origin: 'api', role, yaml: stringify(JSON.parse(json)) };
    }
    if (name === ADMIN_ROLE) return { name, origin: 'builtin', role: this.#builtin, yaml: stringify(BUILTIN_ADMIN) };
    return undefined;
  }

  async list(): Promise<RoleEntry[]> {
    const stored = await this.#redis.hkeys(rolesKey());
    const names = new Set([...this.#config.keys(), ...stored, ADMIN_ROLE]);
    const entries = await Promise.all([...names].sort().map((n) => this.get(n)));
    return entries.filter((e): e is RoleEntry => e !== undefined);
  }

  /**
   * Creates or replaces an API role from YAML. The name in the document must be the one in the
   * URL, so a PUT cannot write somewhere else than it says. Returns whether it was new.
   */
  async put(name: string, yamlText: string): Promise<{ created: boolean; role: Role }> {
    const doc = parseDocument(yamlText, { uniqueKeys: true });
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
      throw new AuthError('ERR_BAD_REQUEST', `invalid role: YAML error${where}: ${e.message.split('\n')[0]}`);
    }
    const raw: unknown = doc.toJS();
    let role: Role;
    try {
      role = validate(roleSchema, raw, 'role');
    } catch (e) {
      // validate() speaks of configuration; through the API it is the request that is wrong.
      throw new AuthError('ERR_BAD_REQUEST', (e as Error).message);
    }
    if (role.name !== name) throw new AuthError('ERR_BAD_REQUEST', `the role document is named ${role.name}, but the request is for ${name}`);
    if (this.#config.has(name)) throw new AuthError('ERR_CONFLICT', `role ${name} is defined in the config file; change it there`);
    const created = (await this.#redis.hset(rolesKey(), name, JSON.stringify(raw))) === 1;
    return { created, role };
  }

  async delete(name: string): Promise<void> {
    if (this.#config.has(name)) throw new AuthError('ERR_CONFLICT', `role ${name} is defined in the config file; remove it there`);
    if ((await this.#redis.hdel(rolesKey(), name)) === 0) {
      throw new AuthError('ERR_NOT_FOUND', name === ADMIN_ROLE ? `role ${name} is built in and cannot be deleted` : `no role ${name} was made through the API`);
    }
  }

  #parseStored(json: string): Role | undefined {
    try {
      return parseRole(JSON.parse(json));
    } catch {
      // A stored role that no longer validates (an older schema) grants nothing.
      return undefined;
    }
  }
}
