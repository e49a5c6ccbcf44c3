import type { Command } from 'commander';
import type { AuthApi } from '../common/auth-api.js';
import { loggedIn } from '../common/session.js';

/*
 * pcctl has no login of its own: an administrator signs in with pcsh (any method; the admin
 * role is what counts) and pcctl uses that profile's session. auth checks the role and audits
 * every admin call with the session's user.
 */

export interface AdminGlobals {
  readonly profile?: string;
  readonly json?: boolean;
}

/** The options of the command and of the program (`--profile` may come before or after it). */
export function optsOf<T extends object>(cmd: Command): T & AdminGlobals {
  return cmd.optsWithGlobals<T & AdminGlobals>();
}

export function adminApi(cmd: Command): AuthApi {
  return loggedIn(optsOf(cmd).profile).api;
}

export const enc = encodeURIComponent;
