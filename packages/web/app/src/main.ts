// xterm's stylesheet rides with the app's: esbuild does not load a lazy chunk's CSS by itself.
import '@xterm/xterm/css/xterm.css';
import './style.css';
import { ApiError, api, type SessionView } from './api.js';
import { h, type Page } from './dom.js';
import { accountPage } from './account.js';
import { hostsPage } from './hosts.js';
import { finishSso, loginPage } from './login.js';
import { liveListPage, recordingsPage } from './recordings.js';

/*
 * The app shell: asks the gateway who this browser is, then shows the login or the page the
 * path names. Pages that need xterm.js (player, live view) are loaded on demand, so the first
 * paint costs only this small bundle.
 */

const root = document.getElementById('app')!;
let session: SessionView = { stage: 'anonymous', csrf: '' };
let current: Page | undefined;

export function navigate(path: string): void {
  if (path !== location.pathname + location.search) history.pushState(null, '', path);
  void route();
}

function signedInAs(s: SessionView): void {
  session = s;
  const to = location.pathname.startsWith('/web/callback') || location.pathname === '/web/login' ? '/web/' : location.pathname + location.search;
  history.replaceState(null, '', to);
  void route();
}

async function signOut(): Promise<void> {
  await api('POST', '/web/api/logout').catch(() => undefined);
  session = await api<SessionView>('GET', '/web/api/session');
  history.replaceState(null, '', '/web/');
  void route();
}

function nav(s: SessionView): HTMLElement {
  const link = (href: string, label: string, key: string) =>
    h('a', { href, 'data-nav': true, 'aria-current': location.pathname.startsWith(href) ? 'page' : null, title: `${label} (g ${key})` }, label);
  return h(
    'header',
    { class: 'top' },
    h('a', { class: 'brand', href: '/web/', 'data-nav': true }, 'Portcullis'),
    h('nav', { 'aria-label': 'Main' }, link('/web/hosts', 'Hosts', 'h'), s.admin === true ? [link('/web/recordings', 'Recordings', 'r'), link('/web/live', 'Live', 'l')] : null, link('/web/account', 'Account', 'a')),
    h('span', { class: 'who' }, s.user ?? ''),
    h('button', { type: 'button', class: 'link', onclick: () => void signOut() }, 'Sign out'),
  );
}

async function pageFor(path: string, main: HTMLElement): Promise<Page> {
  let m: RegExpExecArray | null;
  if ((m = /^\/web\/recordings\/([^/]+)$/.exec(path))) return (await import('./player.js')).playerPage(decodeURIComponent(m[1]!), main);
  if ((m = /^\/web\/live\/([^/]+)$/.exec(path))) return (await import('./liveview.js')).liveViewPage(decodeURIComponent(m[1]!), main);
  if (path === '/web/terminal') return (await import('./shell.js')).terminalPage(new URLSearchParams(location.search), main);
  if (path === '/web/recordings') return recordingsPage(navigate);
  if (path === '/web/live') return liveListPage();
  if (path === '/web/account') return accountPage();
  return hostsPage();
}

async function route(): Promise<void> {
  current?.dispose?.();
  current = undefined;
  if (session.stage !== 'authenticated') {
    document.title = 'Sign in · Portcullis';
    root.replaceChildren(loginPage(session, signedInAs));
    return;
  }
  const main = h('main', { id: 'main', tabindex: '-1' });
  root.replaceChildren(nav(session), main);
  try {
    current = await pageFor(location.pathname, main);
    main.replaceChildren(current.node);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      session = await api<SessionView>('GET', '/web/api/session');
      return route();
    }
    main.replaceChildren(h('p', { class: 'status error', role: 'alert' }, e instanceof Error ? e.message : String(e)));
  }
}

// Links marked data-nav change the page without a reload.
document.addEventListener('click', (ev) => {
  const a = (ev.target as Element | null)?.closest?.('a[data-nav]');
  if (!(a instanceof HTMLAnchorElement) || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
  ev.preventDefault();
  navigate(a.pathname + a.search);
});
window.addEventListener('popstate', () => void route());

// "g" then a letter jumps between sections, as in many web tools; never while typing.
let pendingG = false;
document.addEventListener('keydown', (ev) => {
  const t = ev.target as HTMLElement | null;
  if (ev.ctrlKey || ev.metaKey || ev.altKey || (t && /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName)) || t?.closest('.xterm')) return;
  if (pendingG) {
    pendingG = false;
    const to = { h: '/web/hosts', r: '/web/recordings', l: '/web/live', a: '/web/account' }[ev.key];
    if (to !== undefined && session.stage === 'authenticated') navigate(to);
  } else if (ev.key === 'g') {
    pendingG = true;
    setTimeout(() => (pendingG = false), 1500);
  }
});

async function boot(): Promise<void> {
  try {
    session = await api<SessionView>('GET', '/web/api/session');
    if (location.pathname === '/web/callback') {
      const s = await finishSso();
      if (s !== undefined) return signedInAs(s);
      session = await api<SessionView>('GET', '/web/api/session');
    }
  } catch (e) {
    root.replaceChildren(h('p', { class: 'status error', role: 'alert' }, `The gateway cannot be reached: ${e instanceof Error ? e.message : String(e)}`));
    return;
  }
  await route();
}

void boot();
