import type { AuditIdentity } from './audit.js';

/*
 * Which live sessions a lock notice ends, for the SSH listener and the browser terminal alike.
 * A `session` lock names a login session by the 16 hex digits auth puts into every user
 * certificate's key id as `sess=`; auth places one when a login session is revoked (logout, an
 * admin revoking a user's sessions), so the sessions opened with its certificates end.
 */

export type LockTargetKind = 'user' | 'role' | 'login' | 'host' | 'session';
export const LOCK_TARGET_KINDS: readonly LockTargetKind[] = ['user', 'role', 'login', 'host', 'session'];

export interface LockTarget {
  readonly kind: LockTargetKind;
  readonly name: string;
}

const SESSION_FIELD_RE = /^sess=([0-9a-f]{16})$/;

/** The login session (16 hex digits) a user certificate's key id names, if any. */
export function loginSessionOfKeyId(keyId: string): string | undefined {
  for (const field of keyId.split(' ').slice(1)) {
    const m = SESSION_FIELD_RE.exec(field);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * Whether a lock ends a live session at once. A role lock is not matched here (a session does
 * not carry the user's roles): the access re-check that follows every notice ends those.
 */
export function lockCovers(target: LockTarget, id: Pick<AuditIdentity, 'user' | 'login' | 'host' | 'certKeyId'>): boolean {
  switch (target.kind) {
    case 'user':
      return id.user === target.name;
    case 'login':
      return id.login === target.name;
    case 'host':
      return id.host === target.name;
    case 'session':
      return loginSessionOfKeyId(id.certKeyId) === target.name;
    case 'role':
      return false;
  }
}

/** What the user whose session a lock ends is told. */
export function lockEndMessage(target: LockTarget, message: string | undefined): string {
  const why = message === undefined || message === '' ? '' : `: ${message}`;
  if (target.kind === 'session') return `your login session ${target.name} was revoked${why}`;
  return `${target.kind} ${JSON.stringify(target.name)} was locked${why}`;
}
