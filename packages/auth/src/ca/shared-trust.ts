import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fingerprintSha256, parsePublicKeyText } from '@portcullis/cert-core';
import type { CryptoBackend, PublicKey, Signer } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import { caTrustKey } from '../store/keys.js';
import type { RedisClient } from '../store/redis.js';
import { CA_KINDS, isCaKind } from './keystore.js';
import type { CaKeystore, CaKind } from './keystore.js';

/*
 * Replicas share Redis but may each hold their own copy of the CA directory (a Kubernetes
 * Secret copied into each pod). Redis records, per CA kind, which key signs and which keys are
 * trusted; a replica whose directory disagrees refuses to start instead of signing with (or
 * exporting) a CA the others do not know. docs/ca-rotation.md, "Replicas".
 */

export interface CaKeyRef {
  /** The keystore id: the first 16 hex digits of the SHA-256 of the public key blob. */
  readonly id: string;
  /** `SHA256:...` as ssh-keygen -l prints it. */
  readonly fingerprint: string;
}

/** What one kind's CA is: the key that signs and every key trusted (the active one included). */
export interface CaTrustRecord {
  readonly kind: CaKind;
  readonly active: CaKeyRef;
  readonly trusted: readonly CaKeyRef[];
}

/** The part of a rotation's state the guard needs (ca/rotation.ts RotationState). */
export interface RotationView {
  readonly phase: string;
  readonly oldId?: string;
  readonly newId?: string;
}

export type TrustVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'missing' | 'different'; readonly message: string };

const HINT =
  'copy the CA directory (<state_dir>/ca) from a running replica into this one (or give all replicas one shared volume or HSM), then restart';

function refs(list: readonly CaKeyRef[]): string {
  return list.map((k) => `${k.id} (${k.fingerprint})`).join(', ');
}

/**
 * Whether a replica holding `local` (undefined: no key of that kind, one would be created) may
 * serve `kind` when Redis records `recorded`. Nothing recorded: yes (the caller records). During
 * a rotation the active key may be either of its two keys, since a step writes the keystore
 * before it updates the record.
 */
export function checkSharedTrust(kind: CaKind, local: CaTrustRecord | undefined, recorded: CaTrustRecord | undefined, rotation: RotationView): TrustVerdict {
  if (recorded === undefined) return { ok: true };
  if (local === undefined) {
    return {
      ok: false,
      reason: 'missing',
      message: `ca: the other replicas' ${kind} CA is active ${refs([recorded.active])}, trusted ${refs(recorded.trusted)} (recorded in Redis ${caTrustKey()}), but this replica's CA directory has no ${kind} CA; ${HINT}`,
    };
  }
  if (local.active.id === recorded.active.id) return { ok: true };
  if (rotation.phase !== 'standby') {
    const pair = [rotation.oldId, rotation.newId];
    if (pair.includes(local.active.id) && pair.includes(recorded.active.id)) return { ok: true };
  }
  return {
    ok: false,
    reason: 'different',
    message: `ca: this replica's active ${kind} CA is ${refs([local.active])} (trusting ${refs(local.trusted)}), but the other replicas' is ${refs([recorded.active])} (trusting ${refs(recorded.trusted)}; recorded in Redis ${caTrustKey()})${rotation.phase === 'standby' ? ' and no rotation is in progress' : ` and the ${kind} CA rotation in phase ${rotation.phase} is between ${rotation.oldId ?? '?'} and ${rotation.newId ?? '?'}`}; ${HINT}`,
  };
}

/** The record of what `keystore` holds for `kind`. */
export function trustRecordOf(keystore: CaKeystore, kind: CaKind): CaTrustRecord {
  const keys = keystore.keys(kind);
  const active = keystore.active(kind);
  return { kind, active: { id: active.id, fingerprint: active.fingerprint }, trusted: keys.map((k) => ({ id: k.id, fingerprint: k.fingerprint })) };
}

function keyRef(crypto: CryptoBackend, key: PublicKey): CaKeyRef {
  const fingerprint = fingerprintSha256(crypto, key);
  return { id: Buffer.from(fingerprint.slice('SHA256:'.length), 'base64').subarray(0, 8).toString('hex'), fingerprint };
}

/**
 * What a CA directory holds, read before CaKeystore.open creates a missing kind (which it does
 * on open). A kind with no key but a token signer would get the token key, so that is what it
 * holds. Only the public half is read; open() checks the files fully right after.
 */
export function peekCaDirectory(stateDir: string, crypto: CryptoBackend, tokenSigners: Partial<Readonly<Record<CaKind, Signer>>> = {}): Partial<Record<CaKind, CaTrustRecord>> {
  const path = join(stateDir, 'ca', 'index.json');
  const out: Partial<Record<CaKind, CaTrustRecord>> = {};
  const entries: { kind: CaKind; status: string; ref: CaKeyRef }[] = [];
  if (existsSync(path)) {
    const index = JSON.parse(readFileSync(path, 'utf8')) as { keys?: unknown };
    for (const e of Array.isArray(index.keys) ? (index.keys as { kind?: unknown; status?: unknown; publicKey?: unknown }[]) : []) {
      if (!isCaKind(e.kind) || typeof e.publicKey !== 'string') continue;
      entries.push({ kind: e.kind, status: String(e.status), ref: keyRef(crypto, parsePublicKeyText(e.publicKey, path).key) });
    }
  }
  for (const kind of CA_KINDS) {
    const mine = entries.filter((e) => e.kind === kind);
    const active = mine.find((e) => e.status === 'active');
    if (active !== undefined) {
      out[kind] = { kind, active: active.ref, trusted: mine.map((e) => e.ref) };
    } else if (mine.length === 0 && tokenSigners[kind] !== undefined) {
      const ref = keyRef(crypto, tokenSigners[kind].publicKey);
      out[kind] = { kind, active: ref, trusted: [ref] };
    }
  }
  return out;
}

function parseRecord(kind: CaKind, text: string | null | undefined): CaTrustRecord | undefined {
  if (text === null || text === undefined) return undefined;
  const v = JSON.parse(text) as CaTrustRecord | null;
  if (v === null || typeof v !== 'object' || v.kind !== kind || typeof v.active?.id !== 'string' || !Array.isArray(v.trusted)) {
    throw new AuthError('ERR_CONFIG', `ca: ${caTrustKey()} ${kind} does not parse; delete that field (HDEL) to record this replica's CA again`);
  }
  return v;
}

/** What Redis records for every kind. */
export async function readTrustRecords(redis: RedisClient): Promise<Partial<Record<CaKind, CaTrustRecord>>> {
  return parseRecords(await redis.hgetall(caTrustKey()));
}

function parseRecords(all: Readonly<Record<string, string>>): Partial<Record<CaKind, CaTrustRecord>> {
  const out: Partial<Record<CaKind, CaTrustRecord>> = {};
  for (const kind of CA_KINDS) {
    const r = parseRecord(kind, all[kind]);
    if (r !== undefined) out[kind] = r;
  }
  return out;
}

// One script for every kind, so that of two replicas racing at first start one records all its
// CAs and the other finds them all recorded (per-kind HSETNX calls could split the win).
const RECORD_ABSENT = "for i = 1, #ARGV, 2 do redis.call('hsetnx', KEYS[1], ARGV[i], ARGV[i + 1]) end return redis.call('hgetall', KEYS[1])";

/** Records each of `records` whose kind nothing records yet, atomically; returns what Redis holds afterwards. */
export async function recordTrustIfAbsent(redis: RedisClient, records: readonly CaTrustRecord[]): Promise<Partial<Record<CaKind, CaTrustRecord>>> {
  const flat = (await redis.eval(RECORD_ABSENT, 1, caTrustKey(), ...records.flatMap(trustRecordField))) as string[];
  const all: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) all[flat[i]!] = flat[i + 1]!;
  return parseRecords(all);
}

/** The field and value that record `record` (rotation.ts writes it in the MULTI with the rotation state). */
export function trustRecordField(record: CaTrustRecord): [string, string] {
  return [record.kind, JSON.stringify(record)];
}

export interface SharedTrustRefusal {
  readonly kind: CaKind;
  readonly reason: 'missing' | 'different';
  readonly message: string;
  readonly local: CaTrustRecord | undefined;
  readonly recorded: CaTrustRecord;
}

/** The first disagreement between what this replica holds and what Redis records, if any. */
export function firstRefusal(
  local: Partial<Record<CaKind, CaTrustRecord>>,
  recorded: Partial<Record<CaKind, CaTrustRecord>>,
  rotations: Readonly<Record<CaKind, RotationView>>,
): SharedTrustRefusal | undefined {
  for (const kind of CA_KINDS) {
    const r = recorded[kind];
    const v = checkSharedTrust(kind, local[kind], r, rotations[kind]);
    if (!v.ok && r !== undefined) return { kind, reason: v.reason, message: v.message, local: local[kind], recorded: r };
  }
  return undefined;
}
