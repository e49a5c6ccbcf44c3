import { z } from 'zod';
import { validateYaml, validate } from '../config/validate.js';

/** `5m`, `90s`, `12h`, `7d`, `1h30m` -> seconds. */
export function parseDuration(s: string): number | undefined {
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(s.trim());
  if (!m || s.trim() === '') return undefined;
  const [d, h, mi, se] = m.slice(1).map((x) => Number(x ?? 0)) as [number, number, number, number];
  return d * 86400 + h * 3600 + mi * 60 + se;
}

export const durationSchema = z.string().transform((s, ctx) => {
  const v = parseDuration(s);
  if (v === undefined || v <= 0) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not a duration like 5m, 1h30m or 7d` });
    return z.NEVER;
  }
  return v;
});

/** A login or a template such as `{{user.name}}` or `{{claims.unix_login}}`. */
const loginSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^([A-Za-z0-9_.$-]+|\{\{(user\.name|claims\.[A-Za-z0-9_]+)\}\})$/, 'a POSIX login name or {{user.name}} / {{claims.NAME}}');

/** label -> value or values; `*` matches any value; `*`/`?` wildcards within a value. */
const labelsSchema = z.record(z.string().min(1).max(63), z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]));

const ruleSchema = z
  .object({
    logins: z.array(loginSchema).default([]),
    host_labels: labelsSchema.default({}),
  })
  .strict();

export const recordingModes = ['strict', 'best-effort'] as const;

const optionsSchema = z
  .object({
    max_cert_ttl: durationSchema.prefault('5m'),
    login_session_ttl: durationSchema.prefault('12h'),
    require_session_mfa: z.boolean().default(false),
    port_forwarding: z.boolean().default(false),
    agent_forwarding: z.boolean().default(false),
    x11_forwarding: z.boolean().default(false),
    pin_source_ip: z.boolean().default(false),
    record_session: z.enum(recordingModes).default('best-effort'),
    record_input: z.boolean().default(false),
    idle_timeout: durationSchema.prefault('30m'),
  })
  .strict();

export const roleSchema = z
  .object({
    kind: z.literal('role'),
    name: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'lowercase letters, digits, _ . - (max 63)'),
    description: z.string().max(500).optional(),
    spec: z
      .object({
        allow: ruleSchema.default({ logins: [], host_labels: {} }),
        deny: ruleSchema.default({ logins: [], host_labels: {} }),
        options: optionsSchema.prefault({}),
      })
      .strict(),
  })
  .strict();

export type Role = z.infer<typeof roleSchema>;
export type RoleOptions = Role['spec']['options'];
export type LabelSelector = Role['spec']['allow']['host_labels'];

export function parseRoleYaml(text: string): Role {
  return validateYaml(roleSchema, text, 'role');
}

export function parseRole(value: unknown): Role {
  return validate(roleSchema, value, 'role');
}
