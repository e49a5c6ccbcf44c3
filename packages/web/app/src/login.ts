import { ApiError, api, type SessionView } from './api.js';
import { append, h, statusLine } from './dom.js';

/*
 * Sign-in: SSO (a redirect to the identity provider and back to /web/callback), or a local
 * user's password; then the second factor auth asks for: a security key (WebAuthn) or a TOTP
 * code. Each step's answer is the session's next stage.
 */

let ssoError: string | undefined;

/** On /web/callback: hands the provider's answer to the gateway; undefined if it failed. */
export async function finishSso(): Promise<SessionView | undefined> {
  const params = new URLSearchParams(location.search);
  history.replaceState(null, '', '/web/login');
  if (params.has('error')) {
    ssoError = `The identity provider said: ${params.get('error_description') ?? params.get('error')}`;
    return undefined;
  }
  try {
    return await api<SessionView>('POST', '/web/api/login/oidc/finish', { callback_url: `${location.origin}/web/callback?${params.toString()}` });
  } catch (e) {
    ssoError = e instanceof Error ? e.message : String(e);
    return undefined;
  }
}

function message(e: unknown): string {
  if (e instanceof ApiError && e.code === 'ERR_UNAUTHENTICATED') return `Sign-in refused: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

export function loginPage(session: SessionView, done: (s: SessionView) => void): HTMLElement {
  const status = statusLine('error');
  if (ssoError !== undefined) status.say(ssoError, 'error');
  ssoError = undefined;
  const card = h('section', { class: 'card login', 'aria-labelledby': 'login-title' });
  const next = (s: SessionView): void => {
    if (s.stage === 'authenticated') done(s);
    else card.replaceWith(loginPage(s, done));
  };
  const busy = async (button: HTMLButtonElement, work: () => Promise<void>): Promise<void> => {
    button.disabled = true;
    status.say('');
    try {
      await work();
    } catch (e) {
      status.say(message(e), 'error');
    } finally {
      button.disabled = false;
    }
  };

  if (session.stage === 'mfa') {
    const methods = session.mfa?.methods ?? [];
    const keyButton = h('button', { type: 'button', class: 'primary', id: 'webauthn-login' }, 'Use your security key');
    keyButton.addEventListener('click', () =>
      void busy(keyButton, async () => {
        const { startAuthentication } = await import('@simplewebauthn/browser');
        const optionsJSON = await api<Parameters<typeof startAuthentication>[0]['optionsJSON']>('POST', '/web/api/login/mfa/webauthn/options');
        const credential = await startAuthentication({ optionsJSON });
        next(await api<SessionView>('POST', '/web/api/login/mfa/webauthn', { credential }));
      }),
    );
    const code = h('input', { id: 'totp', name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6,8}', maxlength: 8, required: true, 'aria-label': 'Code from your authenticator app' });
    const totpSubmit = h('button', { type: 'submit', class: methods.includes('webauthn') ? '' : 'primary' }, 'Verify');
    const totpForm = h('form', { id: 'totp-form', class: 'stack' }, h('label', { for: 'totp' }, 'Code from your authenticator app'), h('div', { class: 'row' }, code, totpSubmit));
    totpForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void busy(totpSubmit, async () => next(await api<SessionView>('POST', '/web/api/login/mfa/totp', { totp: code.value.trim() })));
    });
    const restart = h('button', { type: 'button', class: 'link' }, 'Start over');
    restart.addEventListener('click', () => void busy(restart, async () => {
      await api('POST', '/web/api/logout');
      next(await api<SessionView>('GET', '/web/api/session'));
    }));
    append(card, [
      h('h1', { id: 'login-title' }, 'Second factor'),
      h('p', { class: 'muted' }, 'Your account asks for a second factor.'),
      methods.includes('webauthn') ? keyButton : null,
      methods.includes('webauthn') && methods.includes('totp') ? h('p', { class: 'or' }, 'or') : null,
      methods.includes('totp') ? totpForm : null,
      status,
      restart,
    ]);
    setTimeout(() => (methods.includes('webauthn') ? keyButton : code).focus(), 0);
  } else {
    const sso = h('button', { type: 'button', class: 'primary', id: 'sso' }, 'Sign in with SSO');
    sso.addEventListener('click', () =>
      void busy(sso, async () => {
        const { url } = await api<{ url: string }>('POST', '/web/api/login/oidc/start');
        location.assign(url);
      }),
    );
    const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
    const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const submit = h('button', { type: 'submit' }, 'Sign in');
    const form = h('form', { id: 'password-form', class: 'stack' }, h('label', { for: 'username' }, 'User name'), user, h('label', { for: 'password' }, 'Password'), pass, submit);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void busy(submit, async () => next(await api<SessionView>('POST', '/web/api/login/password', { username: user.value, password: pass.value })));
    });
    card.append(h('h1', { id: 'login-title' }, 'Sign in to Portcullis'), sso, h('p', { class: 'or' }, 'or with a local account'), form, status);
    setTimeout(() => sso.focus(), 0);
  }
  return h('main', { class: 'center' }, card);
}
