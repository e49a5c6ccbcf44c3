import { api } from './api.js';
import { formatTime, h, statusLine, type Page } from './dom.js';

/* Second factors: the security keys registered with auth, and adding one. */

interface Credential {
  readonly id: string;
  readonly name: string;
  readonly created_at: string;
  readonly last_used_at?: string;
}

export async function accountPage(): Promise<Page> {
  document.title = 'Account · Portcullis';
  const list = h('ul', { class: 'plain', id: 'keys' });
  const status = statusLine();
  const load = async (): Promise<void> => {
    const mfa = await api<{ totp: boolean; webauthn: Credential[] }>('GET', '/web/api/mfa');
    list.replaceChildren(
      h('li', null, `Authenticator app (TOTP): ${mfa.totp ? 'enrolled' : 'not enrolled (pcsh mfa add)'}`),
      ...mfa.webauthn.map((c) => h('li', null, h('strong', null, c.name), ` — added ${formatTime(Date.parse(c.created_at))}`, c.last_used_at === undefined ? '' : `, last used ${formatTime(Date.parse(c.last_used_at))}`)),
    );
  };
  const name = h('input', { id: 'key-name', value: 'security key', maxlength: 64, 'aria-label': 'Name of the new key' });
  const add = h('button', { type: 'submit', id: 'add-key' }, 'Add a security key');
  const form = h('form', { class: 'row' }, name, add);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    add.disabled = true;
    void (async () => {
      try {
        const { startRegistration } = await import('@simplewebauthn/browser');
        const optionsJSON = await api<Parameters<typeof startRegistration>[0]['optionsJSON']>('POST', '/web/api/mfa/webauthn/register/start');
        const credential = await startRegistration({ optionsJSON });
        await api('POST', '/web/api/mfa/webauthn/register/finish', { credential, name: name.value.trim() || 'security key' });
        status.say('Security key added.', 'info');
        await load();
      } catch (e) {
        status.say(e instanceof Error ? e.message : String(e), 'error');
      } finally {
        add.disabled = false;
      }
    })();
  });
  await load();
  return { node: h('section', null, h('h1', null, 'Account'), h('h2', null, 'Second factors'), list, form, status) };
}
