import type { RecordingSummary } from '../../shared/protocol.js';
import { api, query } from './api.js';
import { formatBytes, formatDuration, formatTime, h, statusLine, type Page } from './dom.js';

/*
 * Recordings (admins): filters by user, host, login, state and time, and command search; the
 * filters live in the URL, so a search can be bookmarked or sent to a colleague.
 */

const FIELDS = ['user', 'host', 'login', 'command'] as const;

function stateBadge(r: RecordingSummary): HTMLElement {
  return h('span', { class: `badge ${r.state}` }, r.state);
}

function duration(r: RecordingSummary): string {
  return r.endedAt === undefined ? 'running' : formatDuration(r.endedAt - r.startedAt);
}

function toLocalInput(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '';
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

export async function recordingsPage(navigate: (path: string) => void): Promise<Page> {
  document.title = 'Recordings · Portcullis';
  const params = new URLSearchParams(location.search);
  const inputs = Object.fromEntries(
    FIELDS.map((f) => [f, h('input', { id: `f-${f}`, name: f, value: params.get(f) ?? '', type: f === 'command' ? 'search' : 'text', placeholder: f === 'command' ? 'e.g. rm -rf' : '', autocomplete: 'off' })]),
  ) as Record<(typeof FIELDS)[number], HTMLInputElement>;
  const from = h('input', { id: 'f-from', type: 'datetime-local', value: toLocalInput(Number(params.get('from') ?? NaN)) });
  const to = h('input', { id: 'f-to', type: 'datetime-local', value: toLocalInput(Number(params.get('to') ?? NaN)) });
  const state = h('select', { id: 'f-state' }, ...['', 'live', 'ended', 'interrupted'].map((s) => h('option', { value: s, selected: params.get('state') === s }, s === '' ? 'any' : s)));
  const field = (label: string, el: HTMLElement): HTMLElement => h('label', { class: 'field' }, h('span', null, label), el);
  const form = h(
    'form',
    { class: 'filters', role: 'search' },
    field('Command contains', inputs.command),
    field('User', inputs.user),
    field('Host', inputs.host),
    field('Login', inputs.login),
    field('State', state),
    field('From', from),
    field('To', to),
    h('button', { type: 'submit', class: 'primary' }, 'Search'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q: Record<string, string | number | undefined> = Object.fromEntries(FIELDS.map((f) => [f, inputs[f].value.trim()]));
    q['state'] = state.value;
    if (from.value) q['from'] = new Date(from.value).getTime();
    if (to.value) q['to'] = new Date(to.value).getTime();
    navigate(`/web/recordings${query(q)}`);
  });

  const apiQuery: Record<string, string> = {};
  for (const [k, v] of params) if ([...FIELDS, 'state', 'from', 'to'].includes(k) && v !== '') apiQuery[k] = v;
  const { recordings } = await api<{ recordings: RecordingSummary[] }>('GET', `/web/api/recordings${query(apiQuery)}`);
  const status = statusLine();
  status.say(`${recordings.length} recording${recordings.length === 1 ? '' : 's'}${params.get('command') ? ` where a command contains “${params.get('command')}”` : ''}`);
  const rows = recordings.map((r) =>
    h(
      'tr',
      null,
      h('td', null, h('a', { href: `/web/recordings/${encodeURIComponent(r.id)}`, 'data-nav': true }, formatTime(r.startedAt))),
      h('td', null, r.user),
      h('td', null, `${r.login}@${r.host}`),
      h('td', { class: 'mono' }, r.matches?.length ? r.matches.join(' · ') : (r.command ?? h('span', { class: 'muted' }, 'shell'))),
      h('td', null, duration(r)),
      h('td', null, formatBytes(r.bytesOut)),
      h('td', null, stateBadge(r), r.state === 'live' ? [' ', h('a', { href: `/web/live/${encodeURIComponent(r.id)}`, 'data-nav': true }, 'watch')] : null),
    ),
  );
  return {
    node: h(
      'section',
      null,
      h('h1', null, 'Recordings'),
      form,
      status,
      h(
        'table',
        { class: 'list', id: 'recordings' },
        h('thead', null, h('tr', null, ...['Started', 'User', 'Login@host', 'Command', 'Length', 'Output', 'State'].map((t) => h('th', null, t)))),
        h('tbody', null, ...rows),
      ),
    ),
  };
}

/** Sessions running now; refreshed every few seconds. */
export async function liveListPage(): Promise<Page> {
  document.title = 'Live sessions · Portcullis';
  const body = h('tbody');
  const status = statusLine();
  const load = async (): Promise<void> => {
    const { recordings } = await api<{ recordings: RecordingSummary[] }>('GET', '/web/api/live');
    status.say(`${recordings.length} live session${recordings.length === 1 ? '' : 's'}`);
    body.replaceChildren(
      ...recordings.map((r) =>
        h(
          'tr',
          null,
          h('td', null, h('a', { href: `/web/live/${encodeURIComponent(r.id)}`, 'data-nav': true }, `${r.user} → ${r.login}@${r.host}`)),
          h('td', null, formatTime(r.startedAt)),
          h('td', null, formatDuration(Date.now() - r.startedAt)),
          h('td', { class: 'mono' }, r.command ?? h('span', { class: 'muted' }, 'shell')),
          h('td', null, r.clientAddress),
        ),
      ),
    );
  };
  await load();
  const timer = setInterval(() => void load().catch((e: unknown) => status.say(e instanceof Error ? e.message : String(e), 'error')), 5000);
  return {
    node: h(
      'section',
      null,
      h('h1', null, 'Live sessions'),
      status,
      h('table', { class: 'list', id: 'live' }, h('thead', null, h('tr', null, ...['Session', 'Started', 'Running', 'Command', 'From'].map((t) => h('th', null, t)))), body),
    ),
    dispose: () => clearInterval(timer),
  };
}
