import { AuthApi } from './auth-api.js';
import { CliError } from './errors.js';
import { ProfileStore, type Profile } from './profile.js';

/*
 * A command that needs a login: the profile (named with --profile or the current one), its
 * session token, and an API client pinned as the profile says. A session already past its
 * expiry is refused here, without a round trip, with the same advice auth would give.
 */

export interface LoggedIn {
  readonly store: ProfileStore;
  readonly profile: Profile & { readonly token: string };
  readonly api: AuthApi;
}

export function targetOf(profile: Profile): { url: string; fingerprint?: string } {
  return { url: profile.authUrl, ...(profile.fingerprint === undefined ? {} : { fingerprint: profile.fingerprint }) };
}

export function loggedIn(explicitProfile: string | undefined, now: number = Date.now(), store = new ProfileStore()): LoggedIn {
  const profile = store.resolve(explicitProfile);
  const host = new URL(profile.authUrl).host;
  if (profile.token === undefined) throw new CliError('ERR_AUTH', `not logged in to ${host}: run pcsh login`);
  if (profile.sessionExpiresAt !== undefined && Date.parse(profile.sessionExpiresAt) <= now) {
    throw new CliError('ERR_AUTH', `your login session at ${host} expired at ${profile.sessionExpiresAt}; run pcsh login`);
  }
  const withToken = { ...profile, token: profile.token };
  return { store, profile: withToken, api: new AuthApi(targetOf(profile), profile.token) };
}
