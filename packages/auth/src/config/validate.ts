import type { z } from 'zod';
import { parseDocument } from 'yaml';
import { AuthError } from '../errors.js';

/** `spec.allow.logins[2]` from a zod issue path. */
export function issuePath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || '(top level)';
}

/** Validates `value` against `schema`; on failure the message names every offending key. */
export function validate<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') {
      return i.keys.map((k) => `${issuePath([...i.path, k])}: unknown key`).join('; ');
    }
    return `${issuePath(i.path)}: ${i.message}`;
  });
  throw new AuthError('ERR_CONFIG', `invalid ${what}: ${problems.join('; ')}`);
}

/** Parses YAML text strictly (duplicate keys refused) and validates it. */
export function validateYaml<T extends z.ZodType>(schema: T, text: string, what: string): z.infer<T> {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    throw new AuthError('ERR_CONFIG', `invalid ${what}: YAML error${where}: ${e.message.split('\n')[0]}`);
  }
  return validate(schema, doc.toJS(), what);
}
