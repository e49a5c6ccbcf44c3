import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { AuthError } from '../errors.js';
import { inviteKey, oidcStateKey, userRecordKey, userTotpUsedKey, usersIndexKey } from '../store/keys.js';
import type {
  Claims,
  Invite,
  InviteStore,
  OidcStateStore,
  PendingOidcLogin,
  User,
  UserChange,
  UserStore,
} from './store.js';

// A single Redis, a Sentinel-managed one or a Cluster: all share these commands.
type RedisClient = Redis | Cluster;

// Key names come from store/keys.ts (docs/auth-design.md). Each script below touches keys of
// one hash tag only: a user's record and last TOTP step share {user:NAME}.

/** EVALSHA with a fallback to EVAL when the server has not seen the script (restart, new node). */
class LuaScript {
  readonly #source: string;
  readonly #sha: string;
  constructor(source: string) {
    this.#source = source;
    this.#sha = createHash('sha1').update(source).digest('hex');
  }
  async run(redis: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.#sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return redis.eval(this.#source, keys.length, ...keys, ...args);
    }
  }
}

const CREATE_IF_ABSENT = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`);

// ARGV: count of set items (field, value, ...), the items, then fields to delete.
const UPDATE_IF_PRESENT = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 2, 1 + n)) end
if #ARGV > 1 + n then redis.call('HDEL', KEYS[1], unpack(ARGV, 2 + n)) end
return 1`);

const SET_PASSWORD_FROM_INVITE = new LuaScript(`
if redis.call('HGET', KEYS[1], 'inviteHash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'passwordHash', ARGV[2], 'updatedAt', ARGV[3])
redis.call('HDEL', KEYS[1], 'inviteHash')
return 1`);

const ACTIVATE_TOTP = new LuaScript(`
if redis.call('HGET', KEYS[1], 'totpPendingSecret') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'totpSecret', ARGV[1], 'totpEnrolledAt', ARGV[3], 'updatedAt', ARGV[3])
redis.call('HDEL', KEYS[1], 'totpPendingSecret', 'totpPendingExpiresAt')
redis.call('SET', KEYS[2], ARGV[2])
return 1`);

// The compare and the write are one script, so of two requests carrying the same code only the
// first moves the step forward; the second sees step <= last and is refused.
const ACCEPT_TOTP_STEP = new LuaScript(`
if redis.call('HGET', KEYS[1], 'totpSecret') ~= ARGV[2] then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]))
local step = tonumber(ARGV[1])
if last ~= nil and step <= last then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1`);

// ARGV[1] = now, then the fields holding secrets to forget once used.
const MARK_USED = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'usedAt') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'usedAt', ARGV[1])
if #ARGV > 1 then redis.call('HDEL', KEYS[1], unpack(ARGV, 2)) end
return 1`);

function corrupt(what: string, field: string): never {
  throw new AuthError('ERR_UNAVAILABLE', `stored ${what} is corrupt: field ${field}`);
}
function num(h: Record<string, string>, field: string, what: string): number {
  const v = Number(h[field]);
  if (h[field] === undefined || !Number.isSafeInteger(v)) corrupt(what, field);
  return v;
}
function str(h: Record<string, string>, field: string, what: string): string {
  const v = h[field];
  if (v === undefined) corrupt(what, field);
  return v;
}
function json<T>(h: Record<string, string>, field: string, what: string, check: (v: unknown) => v is T): T {
  let v: unknown;
  try {
    v = JSON.parse(str(h, field, what));
  } catch {
    corrupt(what, field);
  }
  if (!check(v)) corrupt(what, field);
  return v;
}
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
const isClaims = (v: unknown): v is Claims =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x === 'string' || isStringArray(x));

function userFields(user: User): (string | number)[] {
  const f: (string | number)[] = [
    'name', user.name,
    'kind', user.kind,
    'roles', JSON.stringify(user.roles),
    'status', user.status,
    'claims', JSON.stringify(user.claims),
    'createdAt', user.createdAt,
    'updatedAt', user.updatedAt,
  ];
  if (user.passwordHash !== undefined) f.push('passwordHash', user.passwordHash);
  if (user.inviteHash !== undefined) f.push('inviteHash', user.inviteHash);
  if (user.sso) f.push('ssoIssuer', user.sso.issuer, 'ssoSubject', user.sso.subject);
  if (user.totp) f.push('totpSecret', user.totp.secret, 'totpEnrolledAt', user.totp.enrolledAt);
  if (user.totpPending) {
    f.push('totpPendingSecret', user.totpPending.secret, 'totpPendingExpiresAt', user.totpPending.expiresAt);
  }
  return f;
}

function parseUser(name: string, h: Record<string, string>): User {
  const what = `user ${name}`;
  const kind = str(h, 'kind', what);
  const status = str(h, 'status', what);
  if (kind !== 'local' && kind !== 'sso') corrupt(what, 'kind');
  if (status !== 'active' && status !== 'disabled') corrupt(what, 'status');
  return {
    name,
    kind,
    status,
    roles: json(h, 'roles', what, isStringArray),
    claims: json(h, 'claims', what, isClaims),
    createdAt: num(h, 'createdAt', what),
    updatedAt: num(h, 'updatedAt', what),
    ...(h['passwordHash'] !== undefined && { passwordHash: h['passwordHash'] }),
    ...(h['inviteHash'] !== undefined && { inviteHash: h['inviteHash'] }),
    ...(h['ssoSubject'] !== undefined && {
      sso: { issuer: str(h, 'ssoIssuer', what), subject: h['ssoSubject'] },
    }),
    ...(h['totpSecret'] !== undefined && {
      totp: { secret: h['totpSecret'], enrolledAt: num(h, 'totpEnrolledAt', what) },
    }),
    ...(h['totpPendingSecret'] !== undefined && {
      totpPending: { secret: h['totpPendingSecret'], expiresAt: num(h, 'totpPendingExpiresAt', what) },
    }),
  };
}

export class RedisUserStore implements UserStore {
  readonly #redis: RedisClient;
  constructor(redis: RedisClient) {
    this.#redis = redis;
  }

  async getUser(name: string): Promise<User | undefined> {
    const h = await this.#redis.hgetall(userRecordKey(name));
    return Object.keys(h).length === 0 ? undefined : parseUser(name, h);
  }

  async createUser(user: User): Promise<boolean> {
    const created = (await CREATE_IF_ABSENT.run(this.#redis, [userRecordKey(user.name)], userFields(user))) === 1;
    // The index lives in another slot, so it is written after the record: a crash in between
    // leaves a user missing from listings, never a listed user without a record.
    if (created) await this.#redis.sadd(usersIndexKey(), user.name);
    return created;
  }

  async updateUser(name: string, change: UserChange): Promise<boolean> {
    const set: (string | number)[] = ['updatedAt', change.updatedAt];
    const del: string[] = [];
    if (change.roles !== undefined) set.push('roles', JSON.stringify(change.roles));
    if (change.status !== undefined) set.push('status', change.status);
    if (change.claims !== undefined) set.push('claims', JSON.stringify(change.claims));
    if (change.sso !== undefined) set.push('ssoIssuer', change.sso.issuer, 'ssoSubject', change.sso.subject);
    if (change.passwordHash === null) del.push('passwordHash');
    else if (change.passwordHash !== undefined) set.push('passwordHash', change.passwordHash);
    if (change.inviteHash === null) del.push('inviteHash');
    else if (change.inviteHash !== undefined) set.push('inviteHash', change.inviteHash);
    if (change.totp === null) del.push('totpSecret', 'totpEnrolledAt');
    if (change.totpPending === null) del.push('totpPendingSecret', 'totpPendingExpiresAt');
    else if (change.totpPending !== undefined) {
      set.push('totpPendingSecret', change.totpPending.secret, 'totpPendingExpiresAt', change.totpPending.expiresAt);
    }
    const r = await UPDATE_IF_PRESENT.run(this.#redis, [userRecordKey(name)], [set.length, ...set, ...del]);
    return r === 1;
  }

  async deleteUser(name: string): Promise<boolean> {
    const n = await this.#redis.del(userRecordKey(name), userTotpUsedKey(name));
    await this.#redis.srem(usersIndexKey(), name);
    return n > 0;
  }

  async listUserNames(): Promise<string[]> {
    return (await this.#redis.smembers(usersIndexKey())).sort();
  }

  async setPasswordFromInvite(name: string, inviteHash: string, passwordHash: string, now: number): Promise<boolean> {
    const r = await SET_PASSWORD_FROM_INVITE.run(this.#redis, [userRecordKey(name)], [inviteHash, passwordHash, now]);
    return r === 1;
  }

  async activateTotp(name: string, pendingSecret: string, step: number, now: number): Promise<boolean> {
    const keys = [userRecordKey(name), userTotpUsedKey(name)];
    return (await ACTIVATE_TOTP.run(this.#redis, keys, [pendingSecret, step, now])) === 1;
  }

  async acceptTotpStep(name: string, secret: string, step: number): Promise<boolean> {
    const keys = [userRecordKey(name), userTotpUsedKey(name)];
    return (await ACCEPT_TOTP_STEP.run(this.#redis, keys, [step, secret])) === 1;
  }

  async lastTotpStep(name: string): Promise<number | undefined> {
    const v = await this.#redis.get(userTotpUsedKey(name));
    return v === null ? undefined : Number(v);
  }
}

export class RedisInviteStore implements InviteStore {
  readonly #redis: RedisClient;
  constructor(redis: RedisClient) {
    this.#redis = redis;
  }

  async putInvite(hash: string, invite: Invite, retainUntil: number): Promise<void> {
    const key = inviteKey(hash);
    await this.#redis
      .multi()
      .del(key)
      .hset(key, 'user', invite.user, 'purpose', invite.purpose, 'createdAt', invite.createdAt, 'expiresAt', invite.expiresAt)
      .pexpireat(key, retainUntil)
      .exec();
  }

  async getInvite(hash: string): Promise<Invite | undefined> {
    const h = await this.#redis.hgetall(inviteKey(hash));
    if (Object.keys(h).length === 0) return undefined;
    const purpose = str(h, 'purpose', 'invite');
    if (purpose !== 'set-password' && purpose !== 'reset') corrupt('invite', 'purpose');
    return {
      user: str(h, 'user', 'invite'),
      purpose,
      createdAt: num(h, 'createdAt', 'invite'),
      expiresAt: num(h, 'expiresAt', 'invite'),
      ...(h['usedAt'] !== undefined && { usedAt: num(h, 'usedAt', 'invite') }),
    };
  }

  async markInviteUsed(hash: string, now: number): Promise<boolean> {
    return (await MARK_USED.run(this.#redis, [inviteKey(hash)], [now])) === 1;
  }
}

export class RedisOidcStateStore implements OidcStateStore {
  readonly #redis: RedisClient;
  constructor(redis: RedisClient) {
    this.#redis = redis;
  }

  async putPending(state: string, p: PendingOidcLogin, retainUntil: number): Promise<void> {
    const key = oidcStateKey(state);
    const fields: (string | number)[] = ['kind', p.kind, 'createdAt', p.createdAt, 'expiresAt', p.expiresAt];
    if (p.kind === 'code') fields.push('redirectUri', p.redirectUri, 'codeVerifier', p.codeVerifier, 'nonce', p.nonce);
    else fields.push('deviceCode', p.deviceCode, 'interval', p.interval);
    await this.#redis.multi().del(key).hset(key, ...fields).pexpireat(key, retainUntil).exec();
  }

  async getPending(state: string): Promise<PendingOidcLogin | undefined> {
    const h = await this.#redis.hgetall(oidcStateKey(state));
    if (Object.keys(h).length === 0) return undefined;
    const what = 'OIDC login';
    const base = {
      createdAt: num(h, 'createdAt', what),
      expiresAt: num(h, 'expiresAt', what),
      ...(h['usedAt'] !== undefined && { usedAt: num(h, 'usedAt', what) }),
    };
    // Once used, the secrets are gone; an empty string stands in so the record still parses
    // and the caller can say "already used".
    const used = h['usedAt'] !== undefined;
    const secret = (f: string): string => (used ? (h[f] ?? '') : str(h, f, what));
    switch (h['kind']) {
      case 'code':
        return {
          kind: 'code',
          redirectUri: str(h, 'redirectUri', what),
          codeVerifier: secret('codeVerifier'),
          nonce: secret('nonce'),
          ...base,
        };
      case 'device':
        return { kind: 'device', deviceCode: secret('deviceCode'), interval: num(h, 'interval', what), ...base };
      default:
        return corrupt(what, 'kind');
    }
  }

  async markPendingUsed(state: string, now: number): Promise<boolean> {
    const r = await MARK_USED.run(this.#redis, [oidcStateKey(state)], [now, 'codeVerifier', 'nonce', 'deviceCode']);
    return r === 1;
  }
}
