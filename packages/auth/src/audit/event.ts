import { AUDIT_EVENTS, type AuditCode, type AuditEventName, isAuditEventName } from './codes.js';

/** Values an event field may hold once built: flat and JSON-safe, as ELK and the stream take them. */
export type AuditFieldValue = string | number | boolean | null | readonly string[];

/** What a caller may pass: bigints (serials) and dates are turned into strings; undefined is dropped. */
export type AuditFieldInput = AuditFieldValue | bigint | Date | undefined | readonly (string | number | bigint)[];

export interface AuditActor {
  /** user: a person (SSO or local); host / service: an enrolled machine or the proxy; system: auth itself. */
  readonly kind: 'user' | 'host' | 'service' | 'system' | 'anonymous';
  readonly name: string;
  /** The client address the request came from, when there was one. */
  readonly address?: string;
}

export interface AuditEvent {
  readonly code: AuditCode;
  readonly name: AuditEventName;
  /** ISO 8601 in UTC with milliseconds, from the clock the AuditLog was given. */
  readonly time: string;
  readonly actor: AuditActor;
  readonly fields: Readonly<Record<string, AuditFieldValue>>;
}

/** What replaces a value that must not reach an audit sink. */
export const REDACTED = '[REDACTED]';

export const SYSTEM_ACTOR: AuditActor = { kind: 'system', name: 'auth' };

/*
 * Secrets never enter an event. A field is redacted (value replaced, name kept so a reviewer
 * sees that something was attempted) when its name reads like a secret, or its value looks
 * like one. Redacting rather than throwing keeps a careless field from failing the request
 * that was being audited.
 *
 * A name is split into words ("sessionToken", "session_token" -> session, token). It is secret
 * when a word is one of SECRET_WORDS and the next word does not make it a harmless attribute
 * (token_type, token_id, password_set), or when two words make a secret together (private key,
 * key material, auth code), or the whole name is one of SECRET_NAMES.
 */
const SECRET_WORDS = new Set([
  'password', 'passwd', 'passphrase', 'pwd', 'secret', 'secrets', 'token', 'tokens', 'credential',
  'credentials', 'cookie', 'cookies', 'authorization', 'otp', 'totp', 'hotp', 'pin', 'seed',
  'verifier', 'bearer', 'apikey', 'privatekey', 'mnemonic', 'jwt', 'assertion',
]);
const HARMLESS_NEXT = new Set([
  'id', 'ids', 'type', 'kind', 'name', 'ttl', 'expires', 'expiry', 'count', 'uses', 'labels',
  'enrolled', 'required', 'set', 'changed', 'fingerprint', 'length', 'age', 'algorithm', 'valid',
]);
const SECRET_PAIRS = new Set([
  'private key', 'key material', 'key data', 'key pem', 'key bytes', 'signing key', 'api key',
  'access key', 'auth code', 'authorization code', 'device code', 'recovery code', 'mfa code',
  'client secret', 'refresh token', 'id token', 'access token',
]);
const SECRET_NAMES = new Set(['key', 'code', 'pem', 'private', 'hash']);

function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
}

/** Whether a field of this name may not carry its value into an audit event. */
export function isSecretFieldName(name: string): boolean {
  const w = words(name);
  if (w.length === 0 || SECRET_NAMES.has(w.join(''))) return true;
  for (let i = 0; i < w.length; i++) {
    const word = w[i] ?? '';
    const next = w[i + 1];
    if (next !== undefined && SECRET_PAIRS.has(`${word} ${next}`) && !HARMLESS_NEXT.has(w[i + 2] ?? '')) return true;
    if (SECRET_WORDS.has(word) && (next === undefined || !HARMLESS_NEXT.has(next))) return true;
  }
  return false;
}

const SECRET_VALUE = [
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, // PEM / OpenSSH private keys
  /^\s*bearer\s+\S/i, // an Authorization header
  /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/, // a JWT (ID token, access token)
];

export function looksLikeSecretValue(value: string): boolean {
  return SECRET_VALUE.some((re) => re.test(value));
}

function normalize(value: Exclude<AuditFieldInput, undefined>): AuditFieldValue {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (Array.isArray(value)) return value.map((v: string | number | bigint) => String(v));
  return value as AuditFieldValue;
}

function containsSecretValue(value: AuditFieldValue): boolean {
  if (typeof value === 'string') return looksLikeSecretValue(value);
  if (Array.isArray(value)) return value.some((v: string) => looksLikeSecretValue(v));
  return false;
}

/** Normalized fields with every secret-looking value replaced by REDACTED, and which were. */
export function redactAuditFields(fields: Readonly<Record<string, AuditFieldInput>>): {
  fields: Record<string, AuditFieldValue>;
  redacted: string[];
} {
  const out: Record<string, AuditFieldValue> = {};
  const redacted: string[] = [];
  for (const [name, raw] of Object.entries(fields)) {
    if (raw === undefined) continue;
    const value = normalize(raw);
    if (value !== null && (isSecretFieldName(name) || containsSecretValue(value))) {
      out[name] = REDACTED;
      redacted.push(name);
    } else {
      out[name] = value;
    }
  }
  return { fields: out, redacted };
}

/**
 * Builds an event. `time` is a parameter, not a clock read, so that building is pure; the
 * AuditLog passes its clock's reading. An unknown name is a programming error (TypeError).
 */
export function createAuditEvent(
  name: AuditEventName,
  actor: AuditActor,
  fields: Readonly<Record<string, AuditFieldInput>>,
  time: Date,
): AuditEvent {
  if (!isAuditEventName(name)) throw new TypeError(`audit: unknown event name ${JSON.stringify(name)}`);
  if (Number.isNaN(time.getTime())) throw new TypeError('audit: "time" expected a valid Date');
  return {
    code: AUDIT_EVENTS[name].code,
    name,
    time: time.toISOString(),
    actor: { ...actor },
    fields: redactAuditFields(fields).fields,
  };
}
