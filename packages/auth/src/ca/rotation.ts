import { AuthError } from '../errors.js';
import type { RedisClient } from '../store/redis.js';
import { caTrustKey } from '../store/keys.js';
import type { CaKeyInfo, CaKeySpec, CaKeystore, CaKind, CaAlgorithm } from './keystore.js';
import { trustRecordField, trustRecordOf } from './shared-trust.js';

/*
 * Phased CA rotation, as Teleport's `tctl auth rotate` does it, one CA kind at a time:
 *
 *   standby --> init --> update_clients --> update_servers --> standby
 *                 \______________\________________\__ rollback --> standby
 *
 * init            a new key is generated and trusted next to the old one (GET /v1/ca lists
 *                 both), so hosts' TrustedUserCAKeys and clients' @cert-authority lines pick
 *                 it up through their refresh before it signs anything;
 * update_clients  the new key signs (user certificates, or host certificates at renewal); the
 *                 old one stays trusted, so everything it signed keeps working;
 * update_servers  nothing changes in the keystore: it is the time given to hosts to renew onto
 *                 the new host CA, and to certificates of the old user CA to run out;
 * standby         the old key is no longer trusted (its files stay on disk for the record).
 *
 * Rollback, allowed before the last step, makes the old key sign again and drops the new one.
 * Completing is the only step that can refuse sessions (whatever the old key signed stops being
 * trusted), so it is manual: an operator runs it once `status` shows nothing is left on the old
 * key. Phases change only by command, never by timer: a timer cannot know every host refreshed.
 *
 * The phase machine (planTransition, nextState) is pure; RotationService applies its steps to
 * the keystore and keeps the state in Redis under one hash-tagged key, so every key of it sits
 * on one Cluster slot.
 */

export type RotationPhase = 'standby' | 'init' | 'update_clients' | 'update_servers';
export const ROTATION_PHASES: readonly RotationPhase[] = ['standby', 'init', 'update_clients', 'update_servers'];

/** Where one kind's rotation stands. `oldId`/`newId` are set while a rotation runs. */
export interface RotationState {
  readonly kind: CaKind;
  readonly phase: RotationPhase;
  readonly oldId?: string;
  readonly newId?: string;
  /** Milliseconds: when init was entered. */
  readonly startedAt?: number;
  /** Milliseconds: when update_clients was entered (the old key's last signature is before it). */
  readonly signingSwitchedAt?: number;
  /** Milliseconds: the last transition. */
  readonly changedAt?: number;
  readonly changedBy?: string;
  /** How the previous rotation ended. */
  readonly last?: { readonly outcome: 'completed' | 'rolled_back'; readonly at: number; readonly oldId: string; readonly newId: string };
}

export type RotationRequest = { readonly to: RotationPhase } | { readonly rollback: true };

/** What the keystore must do for a transition, in order. */
export type KeystoreStep = { readonly op: 'stage' } | { readonly op: 'activate'; readonly id: string } | { readonly op: 'retire'; readonly id: string };

export interface Transition {
  readonly from: RotationPhase;
  readonly to: RotationPhase;
  readonly rollback: boolean;
  readonly steps: readonly KeystoreStep[];
}

const NEXT: Readonly<Record<RotationPhase, RotationPhase>> = {
  standby: 'init',
  init: 'update_clients',
  update_clients: 'update_servers',
  update_servers: 'standby',
};

export function isRotationPhase(s: unknown): s is RotationPhase {
  return typeof s === 'string' && (ROTATION_PHASES as readonly string[]).includes(s);
}

export function nextPhase(p: RotationPhase): RotationPhase {
  return NEXT[p];
}

function conflict(message: string): AuthError {
  return new AuthError('ERR_CONFLICT', `ca rotation: ${message}`);
}

/**
 * The keystore steps that take `state` to the requested phase, or ERR_CONFLICT when the request
 * is not the next phase (phases are never skipped: each one is what makes the next one safe).
 */
export function planTransition(state: RotationState, req: RotationRequest): Transition {
  const from = state.phase;
  if ('rollback' in req) {
    if (from === 'standby') throw conflict(`no ${state.kind} CA rotation to roll back`);
    const { oldId, newId } = ids(state);
    // Before update_clients the old key never stopped signing; afterwards it must sign again
    // before the new one is dropped, or nothing would sign.
    const steps: KeystoreStep[] = from === 'init' ? [] : [{ op: 'activate', id: oldId }];
    steps.push({ op: 'retire', id: newId });
    return { from, to: 'standby', rollback: true, steps };
  }
  const to = req.to;
  if (to === from) throw conflict(`the ${state.kind} CA rotation is in phase ${from} already`);
  if (NEXT[from] !== to) {
    throw conflict(`the ${state.kind} CA rotation is in phase ${from}; the next phase is ${NEXT[from]}, not ${to}${from !== 'standby' ? ' (or --rollback)' : ''}`);
  }
  switch (to) {
    case 'init':
      return { from, to, rollback: false, steps: [{ op: 'stage' }] };
    case 'update_clients':
      return { from, to, rollback: false, steps: [{ op: 'activate', id: ids(state).newId }] };
    case 'update_servers':
      return { from, to, rollback: false, steps: [] };
    case 'standby':
      return { from, to, rollback: false, steps: [{ op: 'retire', id: ids(state).oldId }] };
  }
}

function ids(state: RotationState): { oldId: string; newId: string } {
  if (state.oldId === undefined || state.newId === undefined) throw new Error(`ca rotation: ${state.kind} state in phase ${state.phase} names no keys`);
  return { oldId: state.oldId, newId: state.newId };
}

/** The state after a transition. `keys` are the ids when entering init (the staged one is new). */
export function nextState(state: RotationState, t: Transition, at: number, by: string, keys?: { oldId: string; newId: string }): RotationState {
  const base = { kind: state.kind, changedAt: at, changedBy: by };
  if (t.to === 'standby') {
    const { oldId, newId } = ids(state);
    return { ...base, phase: 'standby', last: { outcome: t.rollback ? 'rolled_back' : 'completed', at, oldId, newId } };
  }
  if (t.to === 'init') {
    if (keys === undefined) throw new Error('ca rotation: entering init needs the old and the new key ids');
    return { ...base, phase: 'init', oldId: keys.oldId, newId: keys.newId, startedAt: at, ...(state.last === undefined ? {} : { last: state.last }) };
  }
  return { ...state, ...base, phase: t.to, ...(t.to === 'update_clients' ? { signingSwitchedAt: at } : {}) };
}

/** The Redis key holding both kinds' states, one JSON field per kind. */
export const ROTATION_KEY = 'pc:{ca}:rotation';
const LOCK_KEY = 'pc:{ca}:rotation:lock';
const LOCK_MS = 30_000;

const ALGORITHM_OF: Readonly<Record<string, CaAlgorithm>> = {
  'ssh-ed25519': 'ed25519',
  'ecdsa-sha2-nistp256': 'ecdsa-p256',
  'ecdsa-sha2-nistp384': 'ecdsa-p384',
  'ssh-rsa': 'rsa',
};

/** The new key is made like the one it replaces unless the operator names an algorithm. */
function specLike(key: CaKeyInfo): CaKeySpec {
  return { algorithm: ALGORITHM_OF[key.publicKey.type] ?? 'ed25519' };
}

function parseState(kind: CaKind, text: string | null | undefined): RotationState {
  if (text === null || text === undefined) return { kind, phase: 'standby' };
  const v = JSON.parse(text) as RotationState;
  if (v === null || typeof v !== 'object' || v.kind !== kind || !isRotationPhase(v.phase)) throw new Error(`ca rotation: ${ROTATION_KEY} ${kind} does not parse`);
  return v;
}

/** Where `kind`'s rotation stands in Redis (standby when none was ever made). */
export async function readRotationState(redis: RedisClient, kind: CaKind): Promise<RotationState> {
  return parseState(kind, await redis.hget(ROTATION_KEY, kind));
}

export interface RotationDeps {
  readonly redis: RedisClient;
  readonly keystore: CaKeystore;
  readonly clock: () => number;
}

export interface RotateOptions {
  readonly by: string;
  /** For init: the new key's algorithm (default: the old key's). */
  readonly spec?: CaKeySpec;
  /**
   * For init: adopt this standby key instead of generating one (a key imported with
   * CaKeystore.import, or a PKCS#11 token key that auth listed as standby: docs/hsm.md).
   */
  readonly useKey?: string;
}

/**
 * Applies transitions: one at a time across auth replicas (a Redis lock), keystore first and
 * the Redis state after it, so a failed keystore write leaves the recorded phase as it was.
 */
export class RotationService {
  readonly #d: RotationDeps;
  #seen: string | undefined;

  constructor(deps: RotationDeps) {
    this.#d = deps;
  }

  async state(kind: CaKind): Promise<RotationState> {
    return readRotationState(this.#d.redis, kind);
  }

  async rotate(kind: CaKind, req: RotationRequest, o: RotateOptions): Promise<{ transition: Transition; state: RotationState }> {
    const token = `${process.pid}:${this.#d.clock()}:${Math.random()}`;
    const got = await this.#d.redis.set(LOCK_KEY, token, 'PX', LOCK_MS, 'NX');
    if (got !== 'OK') throw conflict('another rotation step is being applied; try again in a moment');
    try {
      // Another replica sharing the state directory may have made the last step.
      this.#d.keystore.reload();
      const state = await this.state(kind);
      const t = planTransition(state, req);
      if ((o.spec !== undefined || o.useKey !== undefined) && t.to !== 'init') throw new AuthError('ERR_BAD_REQUEST', 'ca rotation: an algorithm or key applies when entering init only');
      if (o.spec !== undefined && o.useKey !== undefined) throw new AuthError('ERR_BAD_REQUEST', 'ca rotation: give an algorithm or an existing key, not both');
      const ks = this.#d.keystore;
      this.#checkKeys(state, t);
      let keys: { oldId: string; newId: string } | undefined;
      for (const step of t.steps) {
        if (step.op === 'stage') {
          const old = ks.active(kind);
          if (o.useKey !== undefined) {
            const k = ks.keys(kind).find((x) => x.id === o.useKey);
            if (k === undefined || k.status !== 'standby') throw new AuthError('ERR_NOT_FOUND', `ca rotation: no standby ${kind} CA key ${o.useKey}`);
            keys = { oldId: old.id, newId: k.id };
          } else {
            keys = { oldId: old.id, newId: ks.stage(kind, o.spec ?? specLike(old)).id };
          }
        } else if (step.op === 'activate') {
          if (ks.active(kind).id !== step.id) ks.activate(step.id);
        } else if (ks.keys(kind).some((k) => k.id === step.id)) {
          ks.retire(step.id);
        }
      }
      const next = nextState(state, t, this.#d.clock(), o.by, keys);
      // The shared-trust record moves with the phase, in one transaction (both keys are {ca}), so
      // a replica starting later compares its CA directory with the keys of the new phase.
      await this.#d.redis.multi().hset(ROTATION_KEY, kind, JSON.stringify(next)).hset(caTrustKey(), ...trustRecordField(trustRecordOf(ks, kind))).exec();
      return { transition: t, state: next };
    } finally {
      // Released only if still ours: a step that outlived the lock must not free another's.
      await this.#d.redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", 1, LOCK_KEY, token);
    }
  }

  /**
   * Follows steps made by other replicas: when the recorded state changed since the last call,
   * the keystore is re-read from the (shared) state directory, so this replica signs with and
   * exports the keys of the current phase. Returns whether it re-read. auth calls it on a timer.
   */
  async sync(): Promise<boolean> {
    const all = await this.#d.redis.hgetall(ROTATION_KEY);
    const seen = JSON.stringify(Object.entries(all).sort(([a], [b]) => a.localeCompare(b)));
    if (seen === this.#seen) return false;
    this.#d.keystore.reload();
    this.#seen = seen;
    return true;
  }

  /** A keystore changed behind the rotation's back (a key retired by hand) stops it with a clear message. */
  #checkKeys(state: RotationState, t: Transition): void {
    if (state.phase === 'standby') return;
    const present = new Set(this.#d.keystore.keys(state.kind).map((k) => k.id));
    for (const id of [state.oldId, state.newId]) {
      if (id !== undefined && !present.has(id) && !(t.rollback && id === state.newId)) {
        throw conflict(`${state.kind} CA key ${id} of this rotation is no longer in the keystore; roll back`);
      }
    }
  }
}
