import * as oidc from 'openid-client';
import { AuthError } from '../errors.js';
import {
  checkRedirectUri,
  identityFromClaims,
  isLoopbackUrl,
  type ClaimMapping,
  type RedirectPolicy,
  type RoleMappingRule,
  type SsoIdentity,
} from './claims.js';
import type { OidcStateStore, PendingOidcLogin } from './store.js';

export interface OidcSettings {
  /** Issuer URL; its discovery document is read on first use. */
  readonly issuer: string;
  readonly clientId: string;
  /** Absent for a public client (then PKCE alone protects the code). */
  readonly clientSecret?: string;
  /** How the client authenticates at the token endpoint (default client_secret_basic with a secret, none without). */
  readonly tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post' | 'none';
  /** Default openid profile email groups. */
  readonly scopes?: readonly string[];
  /** Default preferred_username. */
  readonly usernameClaim?: string;
  /** Default groups. */
  readonly groupsClaim?: string;
  readonly roleMapping: readonly RoleMappingRule[];
  /** Exact redirect URIs allowed besides loopback ones (the web app's callback). */
  readonly redirectUris?: readonly string[];
  /** Path of loopback redirects, any port (default /callback); null refuses loopback redirects. */
  readonly loopbackRedirectPath?: string | null;
  /**
   * Allows an http:// issuer, for tests against a provider on 127.0.0.1 or [::1] only; any
   * other http issuer is refused even with this set.
   */
  readonly allowInsecureLoopbackIssuer?: boolean;
  /** How long a started browser login may take (default 10 minutes). */
  readonly loginTtlMs?: number;
  /** Per request to the provider, in seconds (default 10). */
  readonly timeoutSeconds?: number;
}

export interface StartedLogin {
  /** Where to send the browser. */
  readonly url: string;
  readonly state: string;
  readonly expiresAt: number;
}

export interface StartedDeviceLogin {
  /** Secret handle to poll with; the provider's device code stays on the server. */
  readonly handle: string;
  readonly userCode: string;
  readonly verificationUri: string;
  readonly verificationUriComplete?: string;
  /** Seconds to wait between polls. */
  readonly interval: number;
  readonly expiresAt: number;
}

export type DevicePollResult =
  | { readonly status: 'pending'; readonly interval: number }
  | { readonly status: 'complete'; readonly identity: SsoIdentity };

/** The authorization response as the redirect URI received it: the full URL or its parameters. */
export type CallbackInput = string | URL | URLSearchParams | Readonly<Record<string, string>>;

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const STATE_RE = /^[A-Za-z0-9_-]{16,128}$/;
// A pending login is kept this long past its expiry so a late or repeated callback is told
// "expired" or "already used" rather than "unknown".
const RETENTION_MS = 15 * 60_000;

/** Pure: may this pending login be finished now? Throws the refusal. */
export function checkPendingLogin<K extends PendingOidcLogin['kind']>(
  pending: PendingOidcLogin | undefined,
  kind: K,
  now: number,
): Extract<PendingOidcLogin, { kind: K }> {
  const what = kind === 'code' ? 'OIDC state' : 'device login';
  if (!pending || pending.kind !== kind) throw new AuthError('ERR_UNAUTHENTICATED', `unknown ${what}`);
  if (pending.usedAt !== undefined) {
    throw new AuthError('ERR_UNAUTHENTICATED', `${what} already used at ${new Date(pending.usedAt).toISOString()}`);
  }
  if (now >= pending.expiresAt) {
    throw new AuthError('ERR_EXPIRED', `${what} expired at ${new Date(pending.expiresAt).toISOString()}; start the login again`);
  }
  return pending as Extract<PendingOidcLogin, { kind: K }>;
}

function callbackParams(input: CallbackInput): URLSearchParams {
  if (typeof input === 'string') {
    try {
      return new URL(input).searchParams;
    } catch {
      throw new AuthError('ERR_BAD_REQUEST', 'callback expected a URL');
    }
  }
  if (input instanceof URL) return input.searchParams;
  if (input instanceof URLSearchParams) return input;
  return new URLSearchParams(input);
}

/** Maps what openid-client throws onto AuthError: the provider said no, or could not be reached. */
function translate(e: unknown, doing: string): AuthError {
  if (e instanceof AuthError) return e;
  if (e instanceof oidc.ResponseBodyError || e instanceof oidc.AuthorizationResponseError) {
    const desc = e.error_description ? ` (${e.error_description})` : '';
    return new AuthError('ERR_UNAUTHENTICATED', `identity provider refused ${doing}: ${e.error}${desc}`, { error: e.error });
  }
  if (e instanceof oidc.WWWAuthenticateChallengeError) {
    // userinfo answered 401: the access token was refused (e.g. revoked after a code replay).
    const error = e.cause[0]?.parameters.error ?? `HTTP ${e.status}`;
    return new AuthError('ERR_UNAUTHENTICATED', `identity provider refused ${doing}: ${error}`, { error });
  }
  if (e instanceof oidc.ClientError) {
    // An unexpected status (a 5xx) or non-JSON answer means the provider is broken, not the user.
    if (e.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || e.code === 'OAUTH_RESPONSE_IS_NOT_JSON') {
      return new AuthError('ERR_UNAVAILABLE', `identity provider failed ${doing}: ${e.message}`);
    }
    return new AuthError('ERR_UNAUTHENTICATED', `${doing}: response from the identity provider rejected: ${e.message}`, {
      reason: e.code ?? 'client-error',
    });
  }
  const message = e instanceof Error ? e.message : String(e);
  return new AuthError('ERR_UNAVAILABLE', `identity provider unreachable during ${doing}: ${message}`);
}

/**
 * A relying party for one OpenID provider: browser logins (authorization code + PKCE, with a
 * loopback redirect for the CLI or the web app's URL) and device logins for headless clients.
 * Pending logins live in the store, so any auth replica can finish what another started.
 */
export class OidcLogin {
  readonly #settings: OidcSettings;
  readonly #store: OidcStateStore;
  readonly #now: () => number;
  readonly #mapping: ClaimMapping;
  readonly #redirects: RedirectPolicy;
  readonly #scope: string;
  readonly #insecure: boolean;
  #config: Promise<oidc.Configuration> | undefined;

  constructor(opts: { readonly settings: OidcSettings; readonly store: OidcStateStore; readonly now?: () => number }) {
    const s = opts.settings;
    this.#settings = s;
    this.#store = opts.store;
    this.#now = opts.now ?? Date.now;
    this.#mapping = {
      usernameClaim: s.usernameClaim ?? 'preferred_username',
      groupsClaim: s.groupsClaim ?? 'groups',
      roleMapping: s.roleMapping,
    };
    const scopes = s.scopes ?? ['openid', 'profile', 'email', 'groups'];
    if (!scopes.includes('openid')) throw new AuthError('ERR_CONFIG', 'oidc.scopes: must include openid');
    this.#scope = scopes.join(' ');
    for (const uri of s.redirectUris ?? []) {
      const u = URL.canParse(uri) ? new URL(uri) : undefined;
      if (!u || u.search !== '' || u.hash !== '' || (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackUrl(u)))) {
        throw new AuthError('ERR_CONFIG', `oidc.redirect_uris: ${JSON.stringify(uri)} must be an https URL without query or fragment`);
      }
    }
    this.#redirects = {
      redirectUris: s.redirectUris ?? [],
      loopbackPath: s.loopbackRedirectPath === null ? undefined : (s.loopbackRedirectPath ?? '/callback'),
    };
    let issuer: URL;
    try {
      issuer = new URL(s.issuer);
    } catch {
      throw new AuthError('ERR_CONFIG', `oidc.issuer: ${JSON.stringify(s.issuer)} is not a URL`);
    }
    this.#insecure = issuer.protocol === 'http:';
    if (this.#insecure && !(s.allowInsecureLoopbackIssuer === true && isLoopbackUrl(issuer))) {
      throw new AuthError(
        'ERR_CONFIG',
        `oidc.issuer: ${s.issuer} uses http; only https is allowed (http only for a test provider on 127.0.0.1 with allow_insecure_loopback_issuer)`,
      );
    }
    if (issuer.protocol !== 'http:' && issuer.protocol !== 'https:') {
      throw new AuthError('ERR_CONFIG', `oidc.issuer: ${s.issuer} must be an https URL`);
    }
  }

  /** Starts a browser login; the returned URL goes to the browser, the state back to finishLogin. */
  async startLogin(opts: { readonly redirectUri: string }): Promise<StartedLogin> {
    const redirectUri = checkRedirectUri(opts.redirectUri, this.#redirects);
    const config = await this.#configuration();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: this.#scope,
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    });
    const now = this.#now();
    const expiresAt = now + (this.#settings.loginTtlMs ?? 10 * 60_000);
    await this.#store.putPending(state, { kind: 'code', redirectUri, codeVerifier, nonce, createdAt: now, expiresAt }, expiresAt + RETENTION_MS);
    return { url: url.href, state, expiresAt };
  }

  /**
   * Finishes a browser login from what reached the redirect URI. Every refusal (unknown,
   * expired or used state, provider error, bad token, no role) leaves the store as it was; the
   * state is marked used only when an identity is about to be returned, and only once.
   */
  async finishLogin(callback: CallbackInput): Promise<SsoIdentity> {
    const params = callbackParams(callback);
    const state = params.get('state');
    if (state === null || !STATE_RE.test(state)) throw new AuthError('ERR_UNAUTHENTICATED', 'callback carries no valid state');
    const pending = checkPendingLogin(await this.#store.getPending(state), 'code', this.#now());
    const error = params.get('error');
    if (error !== null) {
      const desc = params.get('error_description');
      throw new AuthError('ERR_UNAUTHENTICATED', `identity provider refused the login: ${error}${desc ? ` (${desc})` : ''}`, { error });
    }
    const config = await this.#configuration();
    // The redirect URI sent to the token endpoint is the one stored at start, not whatever
    // host the callback claims, so a forwarded callback cannot change it.
    const current = new URL(pending.redirectUri);
    for (const [k, v] of params) current.searchParams.append(k, v);
    let claims: Record<string, unknown>;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: pending.codeVerifier,
        expectedState: state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
      claims = await this.#claims(config, tokens);
    } catch (e) {
      throw translate(e, 'the authorization code exchange');
    }
    const identity = identityFromClaims(config.serverMetadata().issuer, claims, this.#mapping);
    if (!(await this.#store.markPendingUsed(state, this.#now()))) {
      throw new AuthError('ERR_UNAUTHENTICATED', 'OIDC state already used');
    }
    return identity;
  }

  /** Starts a device login: show the user code and URI, then poll with the handle. */
  async startDeviceLogin(): Promise<StartedDeviceLogin> {
    const config = await this.#configuration();
    if (!config.serverMetadata().device_authorization_endpoint) {
      throw new AuthError('ERR_CONFIG', `oidc.issuer: ${this.#settings.issuer} offers no device authorization endpoint`);
    }
    let r: oidc.DeviceAuthorizationResponse;
    try {
      r = await oidc.initiateDeviceAuthorization(config, { scope: this.#scope });
    } catch (e) {
      throw translate(e, 'the device authorization request');
    }
    const now = this.#now();
    const handle = oidc.randomState();
    const interval = r.interval ?? 5;
    const expiresAt = now + r.expires_in * 1000;
    await this.#store.putPending(handle, { kind: 'device', deviceCode: r.device_code, interval, createdAt: now, expiresAt }, expiresAt + RETENTION_MS);
    return {
      handle,
      userCode: r.user_code,
      verificationUri: r.verification_uri,
      ...(r.verification_uri_complete !== undefined && { verificationUriComplete: r.verification_uri_complete }),
      interval,
      expiresAt,
    };
  }

  /**
   * Asks the provider once whether the user approved. Pending answers change nothing; the
   * handle is marked used only when an identity is returned.
   */
  async pollDeviceLogin(handle: string): Promise<DevicePollResult> {
    if (typeof handle !== 'string' || !STATE_RE.test(handle)) throw new AuthError('ERR_UNAUTHENTICATED', 'unknown device login');
    const pending = checkPendingLogin(await this.#store.getPending(handle), 'device', this.#now());
    const config = await this.#configuration();
    let claims: Record<string, unknown>;
    try {
      // One token request per poll (openid-client's pollDeviceAuthorizationGrant loops until
      // done); the client's polling pace is its own, and slow_down is passed back to it.
      const tokens = await oidc.genericGrantRequest(config, DEVICE_GRANT, { device_code: pending.deviceCode });
      claims = await this.#claims(config, tokens);
    } catch (e) {
      if (e instanceof oidc.ResponseBodyError) {
        if (e.error === 'authorization_pending') return { status: 'pending', interval: pending.interval };
        if (e.error === 'slow_down') return { status: 'pending', interval: pending.interval + 5 };
        if (e.error === 'expired_token') throw new AuthError('ERR_EXPIRED', 'device login expired; start the login again');
        if (e.error === 'access_denied') throw new AuthError('ERR_UNAUTHENTICATED', 'device login was denied at the identity provider');
      }
      throw translate(e, 'the device login poll');
    }
    const identity = identityFromClaims(config.serverMetadata().issuer, claims, this.#mapping);
    if (!(await this.#store.markPendingUsed(handle, this.#now()))) {
      throw new AuthError('ERR_UNAUTHENTICATED', 'device login already used');
    }
    return { status: 'complete', identity };
  }

  /**
   * ID token claims (already validated by openid-client: signature, issuer, audience, expiry,
   * nonce), completed from userinfo when the provider keeps the username or groups there, as
   * conforming providers do for claims requested by scope.
   */
  async #claims(config: oidc.Configuration, tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): Promise<Record<string, unknown>> {
    const idClaims = tokens.claims();
    if (!idClaims) throw new AuthError('ERR_UNAUTHENTICATED', 'identity provider returned no ID token');
    const { usernameClaim, groupsClaim } = this.#mapping;
    if (idClaims[usernameClaim] !== undefined && idClaims[groupsClaim] !== undefined) return { ...idClaims };
    if (!config.serverMetadata().userinfo_endpoint) return { ...idClaims };
    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, idClaims.sub);
    // The signed ID token wins where both speak.
    return { ...userinfo, ...idClaims };
  }

  #configuration(): Promise<oidc.Configuration> {
    this.#config ??= this.#discover().catch((e: unknown) => {
      this.#config = undefined; // retry discovery on the next call
      throw e;
    });
    return this.#config;
  }

  async #discover(): Promise<oidc.Configuration> {
    const s = this.#settings;
    const method = s.tokenEndpointAuthMethod ?? (s.clientSecret !== undefined ? 'client_secret_basic' : 'none');
    let auth: oidc.ClientAuth;
    if (method === 'none') auth = oidc.None();
    else if (s.clientSecret === undefined) throw new AuthError('ERR_CONFIG', `oidc.client_secret: required by ${method}`);
    else auth = method === 'client_secret_basic' ? oidc.ClientSecretBasic(s.clientSecret) : oidc.ClientSecretPost(s.clientSecret);
    try {
      const config = await oidc.discovery(new URL(s.issuer), s.clientId, undefined, auth, {
        timeout: s.timeoutSeconds ?? 10,
        // Checked in the constructor: only a loopback issuer with the test flag gets here with http.
        ...(this.#insecure && { execute: [oidc.allowInsecureRequests] }),
      });
      // Verify ID token signatures against the provider's JWKS too, not only TLS to the token endpoint.
      oidc.enableNonRepudiationChecks(config);
      return config;
    } catch (e) {
      throw new AuthError('ERR_UNAVAILABLE', `OpenID provider ${s.issuer}: discovery failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}
