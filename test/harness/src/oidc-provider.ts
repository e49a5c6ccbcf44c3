import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real OpenID provider (the oidc-provider package) on loopback for tests and the quickstart:
 * authorization code with PKCE required, the device authorization grant, a tiny login page of
 * our own (plain HTML forms, so tests can sign in with fetch and a cookie jar, and a browser
 * test with Chromium), and `preferred_username`, `email` and `groups` claims.
 */

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export interface OidcTestUser {
  readonly sub: string;
  readonly username: string;
  readonly password: string;
  readonly groups: readonly string[];
  readonly email?: string;
  /** More claims, released with the `profile` scope (e.g. unix_login for role templates). */
  readonly extraClaims?: Readonly<Record<string, string | readonly string[]>>;
}

export interface OidcTestClient {
  readonly client_id: string;
  /** Absent: a public client (token_endpoint_auth_method none). */
  readonly client_secret?: string;
  readonly redirect_uris: readonly string[];
  /** Default: authorization_code and the device code grant. */
  readonly grant_types?: readonly string[];
  /**
   * Default native: the provider then accepts a loopback redirect URI on any port (RFC 8252
   * section 7.3), which a CLI listening on a free port needs.
   */
  readonly application_type?: 'native' | 'web';
}

export interface OidcProviderOptions {
  /** Default: a free port. */
  readonly port?: number;
  readonly users: readonly OidcTestUser[];
  readonly clients: readonly OidcTestClient[];
  /**
   * Put scope-requested claims (preferred_username, groups...) in the ID token too. Default
   * false: like a conforming provider, they come from userinfo only, so relying parties are
   * tested on that path.
   */
  readonly claimsInIdToken?: boolean;
}

export interface TestOidcProvider {
  /** `http://127.0.0.1:PORT` */
  readonly issuer: string;
  stop(): Promise<void>;
}

// oidc-provider ships no type declarations; this is the part of its surface used here.
interface Interaction {
  readonly uid: string;
  readonly prompt: { readonly name: string; readonly details: Readonly<Record<string, unknown>> };
  readonly params: Readonly<Record<string, unknown>>;
  readonly session?: { readonly accountId?: string };
  readonly grantId?: string;
}
interface Grant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: readonly string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}
interface Provider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: object, opts?: { mergeWithLastSubmission?: boolean }): Promise<void>;
  Grant: { new (init: { accountId: string; clientId: string }): Grant; find(id: string): Promise<Grant | undefined> };
  on(event: string, listener: (...args: unknown[]) => void): void;
}
type ProviderClass = new (issuer: string, configuration: object) => Provider;

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>${esc(title)}</h1>
${body}
</main></body></html>`;
}

function loginPage(uid: string, clientId: string, error?: string): string {
  return page(
    'Sign in',
    `<p>to continue to <b>${esc(clientId)}</b></p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>User name <input name="username" autofocus></label>
  <label>Password <input type="password" name="password"></label>
  <button type="submit">Sign in</button>
</form>
<form id="abort" method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>`,
  );
}

function consentPage(uid: string, clientId: string, scope: string): string {
  return page(
    'Authorize',
    `<p><b>${esc(clientId)}</b> asks for: ${esc(scope)}</p>
<form id="consent" method="post" action="/interaction/${esc(uid)}/confirm"><button type="submit">Allow</button></form>
<form id="abort" method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Deny</button></form>`,
  );
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 64 * 1024) throw new Error('form body too large');
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res: ServerResponse, status: number, html: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

/** Starts the provider; the caller stops it. */
export async function startOidcProvider(opts: OidcProviderOptions): Promise<TestOidcProvider> {
  // A computed specifier: the package has no types, and the harness should not need any.
  const specifier: string = 'oidc-provider';
  const { default: ProviderCtor } = (await import(specifier)) as { default: ProviderClass };

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => send(res, 503, 'starting');
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  const users = new Map(opts.users.map((u) => [u.sub, u]));
  const byName = new Map(opts.users.map((u) => [u.username, u]));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

  const provider = new ProviderCtor(issuer, {
    clients: opts.clients.map((c) => ({
      client_id: c.client_id,
      ...(c.client_secret !== undefined && { client_secret: c.client_secret }),
      token_endpoint_auth_method: c.client_secret !== undefined ? 'client_secret_basic' : 'none',
      redirect_uris: [...c.redirect_uris],
      grant_types: [...(c.grant_types ?? ['authorization_code', DEVICE_CODE_GRANT])],
      response_types: ['code'],
      application_type: c.application_type ?? 'native',
    })),
    async findAccount(_ctx: unknown, sub: string) {
      const u = users.get(sub);
      if (!u) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            preferred_username: u.username,
            name: u.username,
            groups: [...u.groups],
            ...(u.email !== undefined && { email: u.email, email_verified: true }),
            ...u.extraClaims,
          };
        },
      };
    },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name', ...new Set(opts.users.flatMap((u) => Object.keys(u.extraClaims ?? {})))],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    conformIdTokenClaims: !(opts.claimsInIdToken ?? false),
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    jwks: { keys: [jwk] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        async userCodeInputSource(ctx: { body: string }, form: string, _out: unknown, err?: unknown) {
          const msg = err ? '<p class="error" role="alert">That code is not valid. Try again.</p>' : '<p>Enter the code shown on your device.</p>';
          ctx.body = page('Device sign-in', `${msg}\n${form}\n<button type="submit" form="op.deviceInputForm">Continue</button>`);
        },
        async userCodeConfirmSource(ctx: { body: string }, form: string, client: { clientId: string }, _info: unknown, userCode: string) {
          ctx.body = page(
            'Confirm device',
            `<p><b>${esc(client.clientId)}</b> on a device showing <code>${esc(userCode)}</code> asks to sign in as you.</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`,
          );
        },
        async successSource(ctx: { body: string }) {
          ctx.body = page('Device signed in', '<p id="device-success">Sign-in complete; return to your device.</p>');
        },
      },
      revocation: { enabled: true },
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    // Short lifetimes: these tokens only ever live inside one test.
    ttl: { AccessToken: 600, AuthorizationCode: 60, DeviceCode: 600, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  });

  /** A grant holding what the request asked for, so no consent page is needed after sign-in. */
  async function grantFor(details: Interaction, accountId: string): Promise<string> {
    const clientId = String(details.params['client_id']);
    const grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    const g = grant ?? new provider.Grant({ accountId, clientId });
    g.addOIDCScope(String(details.params['scope'] ?? 'openid'));
    const missingClaims = details.prompt.details['missingOIDCClaims'];
    if (Array.isArray(missingClaims)) g.addOIDCClaims(missingClaims as string[]);
    const missingResource = details.prompt.details['missingResourceScopes'];
    if (missingResource && typeof missingResource === 'object') {
      for (const [resource, scopes] of Object.entries(missingResource as Record<string, string[]>)) {
        g.addResourceScope(resource, scopes.join(' '));
      }
    }
    return g.save();
  }

  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string, action: string | undefined): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return send(res, 400, page('Error', '<p>interaction mismatch</p>'));
    const clientId = String(details.params['client_id']);
    if (req.method === 'GET' && action === undefined) {
      if (details.prompt.name === 'login') return send(res, 200, loginPage(uid, clientId));
      return send(res, 200, consentPage(uid, clientId, String(details.params['scope'] ?? '')));
    }
    if (req.method !== 'POST') return send(res, 405, page('Error', '<p>method not allowed</p>'));
    const form = await readForm(req);
    switch (action) {
      case 'login': {
        const u = byName.get(form.get('username') ?? '');
        if (!u || u.password !== form.get('password')) {
          return send(res, 200, loginPage(uid, clientId, 'Invalid user name or password.'));
        }
        const grantId = await grantFor(details, u.sub);
        return provider.interactionFinished(req, res, { login: { accountId: u.sub }, consent: { grantId } }, { mergeWithLastSubmission: false });
      }
      case 'confirm': {
        const accountId = details.session?.accountId;
        if (!accountId) return send(res, 400, page('Error', '<p>not signed in</p>'));
        const grantId = await grantFor(details, accountId);
        return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      }
      case 'abort':
        return provider.interactionFinished(
          req,
          res,
          { error: 'access_denied', error_description: 'End-User aborted interaction' },
          { mergeWithLastSubmission: false },
        );
      default:
        return send(res, 404, page('Error', '<p>not found</p>'));
    }
  }

  const callback = provider.callback();
  handler = (req, res) => {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/.exec(new URL(req.url ?? '/', issuer).pathname);
    if (!m) return callback(req, res);
    interaction(req, res, m[1]!, m[2]).catch((e: unknown) => {
      if (!res.headersSent) send(res, 400, page('Error', `<p>${esc(e instanceof Error ? e.message : String(e))}</p>`));
      else res.end();
    });
  };

  return {
    issuer,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// -------------------------------------------------------------------------------------------
// A browser made of fetch, a cookie jar and a form filler: enough to walk the provider's pages.

interface Cookie {
  readonly name: string;
  readonly value: string;
  readonly path: string;
}

/** Cookies for one host (tests are all on 127.0.0.1), matched by path as RFC 6265 section 5.1.4 says. */
export class CookieJar {
  readonly #cookies = new Map<string, Cookie>();

  store(setCookies: readonly string[], requestUrl: URL): void {
    for (const line of setCookies) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const dir = requestUrl.pathname.slice(0, requestUrl.pathname.lastIndexOf('/')) || '/';
      let path = dir;
      let expired = false;
      for (const a of attrs) {
        const [k = '', v = ''] = a.split('=', 2).map((s) => s.trim());
        const key = k.toLowerCase();
        if (key === 'path' && v.startsWith('/')) path = v;
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const id = `${name}\u0000${path}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { name, value, path });
    }
  }

  header(url: URL): string | undefined {
    const p = url.pathname;
    const matching = [...this.#cookies.values()].filter(
      (c) => p === c.path || (p.startsWith(c.path) && (c.path.endsWith('/') || p[c.path.length] === '/')),
    );
    // Longer paths first, as browsers send them.
    matching.sort((a, b) => b.path.length - a.path.length);
    return matching.length ? matching.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }
}

export interface BrowserPage {
  readonly url: URL;
  readonly status: number;
  readonly html: string;
}

interface HtmlForm {
  readonly id: string | undefined;
  readonly action: string;
  readonly method: string;
  readonly fields: URLSearchParams;
}

const attrsOf = (tag: string): Map<string, string> => {
  const m = new Map<string, string>();
  for (const a of tag.matchAll(/([\w:-]+)\s*=\s*"([^"]*)"/g)) {
    m.set(a[1]!.toLowerCase(), a[2]!.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'));
  }
  return m;
};

/** The forms of a page with their named inputs (including inputs attached by `form="id"`). */
export function parseForms(html: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const f of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const a = attrsOf(f[1]!);
    const id = a.get('id');
    const fields = new URLSearchParams();
    const add = (tag: string): void => {
      const ia = attrsOf(tag);
      const name = ia.get('name');
      if (name && !['submit', 'button'].includes(ia.get('type') ?? '')) fields.set(name, ia.get('value') ?? '');
    };
    for (const i of f[2]!.matchAll(/<input\b([^>]*)>/gi)) add(i[1]!);
    if (id) for (const i of html.matchAll(/<input\b([^>]*)>/gi)) if (attrsOf(i[1]!).get('form') === id) add(i[1]!);
    forms.push({ id, action: a.get('action') ?? '', method: (a.get('method') ?? 'get').toLowerCase(), fields });
  }
  return forms;
}

/**
 * Fetches like a browser would for these pages: cookies kept, redirects followed by hand,
 * stopping (without fetching) at the first redirect that leaves `origin` — the relying party's
 * callback, which the test hands to the code under test instead.
 */
export class FormBrowser {
  readonly jar = new CookieJar();
  readonly #origin: string;
  constructor(origin: string) {
    this.#origin = new URL(origin).origin;
  }

  /** Follows redirects; `leftTo` is set when a redirect pointed outside the origin. */
  async open(url: string | URL, init: { method?: string; body?: URLSearchParams } = {}): Promise<BrowserPage & { leftTo?: URL }> {
    let target = new URL(url);
    let method = init.method ?? 'GET';
    let body = init.body;
    for (let hops = 0; hops < 20; hops++) {
      const headers = new Headers();
      const cookie = this.jar.header(target);
      if (cookie) headers.set('cookie', cookie);
      if (body) headers.set('content-type', 'application/x-www-form-urlencoded');
      const res = await fetch(target, { method, headers, redirect: 'manual', ...(body && { body: body.toString() }) });
      this.jar.store(res.headers.getSetCookie(), target);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        const next = new URL(location, target);
        if (next.origin !== this.#origin) return { url: target, status: res.status, html: '', leftTo: next };
        target = next;
        method = 'GET';
        body = undefined;
        continue;
      }
      return { url: target, status: res.status, html: await res.text() };
    }
    throw new Error(`too many redirects from ${String(url)}`);
  }

  /** Submits the page's form (the first, or the one with `formId`) with `values` filled in. */
  async submit(p: BrowserPage, values: Readonly<Record<string, string>> = {}, formId?: string): Promise<BrowserPage & { leftTo?: URL }> {
    const forms = parseForms(p.html);
    const form = formId === undefined ? forms[0] : forms.find((f) => f.id === formId);
    if (!form) throw new Error(`no form${formId ? ` #${formId}` : ''} on ${p.url.href} (status ${p.status})`);
    const fields = new URLSearchParams(form.fields);
    for (const [k, v] of Object.entries(values)) fields.set(k, v);
    const action = new URL(form.action || p.url.href, p.url);
    if (form.method === 'post') return this.open(action, { method: 'POST', body: fields });
    for (const [k, v] of fields) action.searchParams.set(k, v);
    return this.open(action);
  }
}

/**
 * Signs in through the provider's login page starting from an authorization URL and returns the
 * callback URL the provider redirected to (code and state in its query), unfetched.
 */
export async function signInThroughProvider(
  authorizationUrl: string,
  user: { readonly username: string; readonly password: string },
  browser = new FormBrowser(authorizationUrl),
): Promise<URL> {
  let p = await browser.open(authorizationUrl);
  for (let step = 0; step < 5 && !p.leftTo; step++) {
    if (/class="error"/.test(p.html) && step > 0) throw new Error(`provider refused the sign-in: ${p.url.href}`);
    const hasLogin = parseForms(p.html).some((f) => f.id === 'login');
    p = await browser.submit(p, hasLogin ? { username: user.username, password: user.password } : {}, hasLogin ? 'login' : undefined);
  }
  if (!p.leftTo) throw new Error(`sign-in did not end in a redirect to the relying party (at ${p.url.href}, status ${p.status})`);
  return p.leftTo;
}

/**
 * Approves a device login as the user would on a phone: opens the verification URI, enters the
 * user code, signs in, confirms. Resolves when the provider shows its success page.
 */
export async function approveDeviceLogin(
  verificationUri: string,
  userCode: string,
  user: { readonly username: string; readonly password: string },
  browser = new FormBrowser(verificationUri),
): Promise<void> {
  let p = await browser.open(verificationUri);
  for (let step = 0; step < 8; step++) {
    if (p.html.includes('id="device-success"')) return;
    if (p.leftTo) throw new Error(`device approval left the provider for ${p.leftTo.href}`);
    if (/class="error"/.test(p.html) && step > 0) throw new Error(`provider refused the device approval: ${p.url.href}`);
    const ids = parseForms(p.html).map((f) => f.id);
    if (ids.includes('login')) p = await browser.submit(p, { username: user.username, password: user.password }, 'login');
    else if (ids.includes('op.deviceInputForm')) p = await browser.submit(p, { user_code: userCode }, 'op.deviceInputForm');
    else p = await browser.submit(p, {}, ids.find((id) => id !== 'abort'));
  }
  throw new Error(`device approval did not finish (at ${p.url.href}, status ${p.status})`);
}
