import { z } from 'zod';
import { AuthError } from '../errors.js';
import { issuePath } from '../config/validate.js';
import { parseDuration } from '../roles/schema.js';

/**
 * Parses a request body (or query) with a strict zod schema. The message names every offending
 * field and what was expected, never the value sent: a body may carry a password or token, and
 * the message goes to the audit log.
 */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown, where: 'body' | 'query' = 'body'): z.output<T> {
  const r = schema.safeParse(input === undefined && where === 'body' ? {} : input);
  if (r.success) return r.data;
  const problems = r.error.issues.slice(0, 5).map((i) => {
    if (i.code === 'unrecognized_keys') return i.keys.map((k) => `unknown field ${JSON.stringify(issuePath([...i.path, k]))}`).join('; ');
    const at = i.path.length === 0 ? where : JSON.stringify(issuePath(i.path));
    if (i.code === 'invalid_type' && / received undefined$/.test(i.message) && i.path.length > 0) return `${at} is required`;
    return `${at}: ${i.message}`;
  });
  throw new AuthError('ERR_BAD_REQUEST', `invalid request ${where}: ${problems.join('; ')}`);
}

/** A bearer secret of ours: 32 random bytes as unpadded base64url. */
export const secretToken = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'expected 43 base64url characters');

/** A TOTP code (the authenticator checks the digit count it was configured with). */
export const totpCode = z.string().regex(/^\d{6,8}$/, 'expected the digits the authenticator app shows');

/** An OpenSSH public key line; cert-core parses it (the issuer reports what is wrong with it). */
export const publicKeyLine = z.string().min(1).max(16_384);

/** Seconds, or a duration such as `5m`. */
export const ttlInput = z.union([
  z.number().int().min(1).max(366 * 86400),
  z.string().transform((s, ctx) => {
    const v = parseDuration(s);
    if (v === undefined || v <= 0) {
      ctx.addIssue({ code: 'custom', message: 'expected seconds or a duration like 5m, 1h30m, 7d' });
      return z.NEVER;
    }
    return v;
  }),
]);

/** A body that must be empty or `{}`. */
export const emptyBody = z.strictObject({});

/** Times on the wire are ISO 8601 in UTC; the store keeps milliseconds. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * The user certificate a client showed the proxy (ca/client-certificate.ts): serial as a decimal
 * string (a uint64 does not fit a JSON number), key id, and the certified key's fingerprint.
 */
export const clientCertificateInput = z
  .strictObject({
    serial: z.string().regex(/^[0-9]{1,20}$/, 'expected a decimal certificate serial'),
    key_id: z.string().min(1).max(1024),
    fingerprint: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'expected SHA256:<43 base64 characters>'),
  })
  .transform((c) => ({ serial: BigInt(c.serial), keyId: c.key_id, fingerprint: c.fingerprint }));
