import { api } from './api.js';
import { h, statusLine, type Page } from './dom.js';

/*
 * The hosts this user's roles reach (auth decides; the proxy checks again at connection time),
 * filterable by name and label. "Open terminal" opens the browser terminal for the chosen login
 * in a tab of its own, so several hosts can be open side by side.
 */

interface Host {
  readonly name: string;
  readonly names: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  readonly logins: readonly string[];
}

/** Does the host match every word of the filter? `key=value` matches a label, other words a name or label. */
export function hostMatches(host: Host, filter: string): boolean {
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  return words.every((w) => {
    const eq = w.indexOf('=');
    if (eq > 0) {
      const v = host.labels[w.slice(0, eq)] ?? Object.entries(host.labels).find(([k]) => k.toLowerCase() === w.slice(0, eq))?.[1];
      return v !== undefined && v.toLowerCase().includes(w.slice(eq + 1));
    }
    return [host.name, ...host.names, ...Object.entries(host.labels).map(([k, v]) => `${k}=${v}`)].some((s) => s.toLowerCase().includes(w));
  });
}

export async function hostsPage(): Promise<Page> {
  document.title = 'Hosts · Portcullis';
  const { hosts } = await api<{ hosts: Host[] }>('GET', '/web/api/hosts');
  const filter = h('input', { id: 'host-filter', type: 'search', placeholder: 'Filter: web env=prod', 'aria-label': 'Filter hosts by name or label', autocomplete: 'off' });
  const body = h('tbody');
  const count = statusLine();
  const render = (): void => {
    const shown = hosts.filter((x) => hostMatches(x, filter.value));
    count.say(`${shown.length} of ${hosts.length} hosts`);
    body.replaceChildren(
      ...shown.map((host) => {
        const login = h('select', { 'aria-label': `Login on ${host.name}` }, ...host.logins.map((l) => h('option', { value: l }, l)));
        return h(
          'tr',
          null,
          h('td', null, h('strong', null, host.name), host.names.length > 1 ? h('div', { class: 'muted small' }, host.names.filter((n) => n !== host.name).join(', ')) : null),
          h('td', null, ...Object.entries(host.labels).map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`))),
          h('td', null, host.logins.length > 0 ? login : h('span', { class: 'muted' }, 'no login')),
          h(
            'td',
            null,
            h(
              'button',
              {
                type: 'button',
                class: 'open-terminal',
                'data-host': host.name,
                disabled: host.logins.length === 0,
                onclick: () => window.open(`/web/terminal?${new URLSearchParams({ host: host.name, login: login.value })}`, '_blank', 'noopener'),
              },
              'Open terminal',
            ),
          ),
        );
      }),
    );
  };
  filter.addEventListener('input', render);
  render();
  setTimeout(() => filter.focus(), 0);
  return {
    node: h(
      'section',
      null,
      h('h1', null, 'Hosts'),
      h('div', { class: 'toolbar' }, filter, count),
      h('table', { class: 'list' }, h('thead', null, h('tr', null, h('th', null, 'Host'), h('th', null, 'Labels'), h('th', null, 'Login'), h('th', null, h('span', { class: 'sr-only' }, 'Actions')))), body),
      hosts.length === 0 ? h('p', { class: 'muted' }, 'No host is reachable with your roles.') : null,
    ),
  };
}
