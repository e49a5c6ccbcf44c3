import { TerminalChannel, type EventsPage, type RecordingSummary, type WireItem } from '../../shared/protocol.js';
import { api, query } from './api.js';
import { formatDuration, formatTime, h, statusLine, type Page } from './dom.js';
import { createViewer, fromBase64 } from './terminal.js';

/*
 * The player. Events come in pages from the gateway; a seek asks for events from the target
 * offset, which the gateway starts at the nearest terminal snapshot before it, so jumping into
 * hour three of a session draws one screen and at most a few seconds of output, not three
 * hours. Time runs at the chosen speed; with idle skipping, a pause longer than a second is cut
 * to one.
 */

const IDLE_LIMIT_MS = 1000;
const SPEEDS = [0.5, 1, 2, 4, 8, 16];
/** Fetch the next page when fewer items than this are left to play. */
const LOW_WATER = 500;

const itemTime = (i: WireItem): number => (i.kind === 'event' ? i.event.t : i.kind === 'screen' ? i.t : -1);

/** `parent` is in the document already: xterm measures its font when it opens. */
export async function playerPage(id: string, parent: HTMLElement): Promise<Page> {
  const meta = await api<RecordingSummary>('GET', `/web/api/recordings/${encodeURIComponent(id)}`);
  document.title = `${meta.user} as ${meta.login}@${meta.host} · Portcullis`;
  const screenBox = h('div', { class: 'screen', id: 'player-screen' });
  const play = h('button', { type: 'button', id: 'play', class: 'primary', title: 'Play / pause (space or k)' }, 'Play');
  const clock = h('span', { class: 'clock mono', id: 'clock' }, '0:00');
  const seek = h('input', { type: 'range', id: 'seek', min: 0, max: 1, value: 0, step: 100, 'aria-label': 'Position in the recording' });
  const speed = h('select', { id: 'speed', 'aria-label': 'Speed' }, ...SPEEDS.map((s) => h('option', { value: s, selected: s === 1 }, `${s}×`)));
  const idle = h('input', { type: 'checkbox', id: 'skip-idle', checked: true });
  const notes = h('ol', { class: 'notes', id: 'notes', 'aria-label': 'Events' });
  const status = statusLine();

  let duration = Math.max(1, (meta.endedAt ?? Date.now()) - meta.startedAt);
  let queue: WireItem[] = [];
  let cursor: string | null = null;
  let loading: Promise<void> | undefined;
  let channel = new TerminalChannel();
  let pos = 0;
  let anchor = { pos: 0, wall: 0 };
  let playing = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let generation = 0;

  const rate = (): number => Number(speed.value) || 1;
  const showTime = (): void => {
    clock.textContent = `${formatDuration(pos)} / ${formatDuration(duration)}`;
    seek.max = String(duration);
    if (document.activeElement !== seek) seek.value = String(pos);
  };

  function apply(item: WireItem): void {
    if (item.kind === 'screen') {
      channel = new TerminalChannel(item.channel);
      term.reset();
      term.resize(item.cols, item.rows);
      term.write(item.screen);
      return;
    }
    if (item.kind === 'gap') {
      notes.append(h('li', { class: 'warn' }, `events ${item.from}–${item.to} are missing from this recording`));
      return;
    }
    const e = item.event;
    if (e.t > duration) duration = e.t;
    if (e.type === 'output' && channel.claims(e) && typeof e.data === 'string') term.write(fromBase64(e.data));
    else if ((e.type === 'pty' || e.type === 'resize') && channel.claims(e) && e.cols !== undefined && e.rows !== undefined) term.resize(e.cols, e.rows);
    else {
      channel.claims(e);
      if (typeof e.note === 'string') notes.append(h('li', null, h('span', { class: 'mono muted' }, formatDuration(e.t)), ' ', e.note));
    }
  }

  async function fetchPage(params: Record<string, string | number | undefined>): Promise<void> {
    const gen = generation;
    const page = await api<EventsPage>('GET', `/web/api/recordings/${encodeURIComponent(id)}/events${query(params)}`);
    if (gen !== generation) return;
    queue.push(...page.items);
    cursor = page.next;
  }

  function more(): void {
    if (loading === undefined && cursor !== null && queue.length < LOW_WATER) {
      loading = fetchPage({ after: cursor }).finally(() => (loading = undefined));
    }
  }

  function tick(): void {
    timer = undefined;
    if (!playing) return;
    const now = performance.now();
    pos = anchor.pos + (now - anchor.wall) * rate();
    while (queue.length > 0 && itemTime(queue[0]!) <= pos) apply(queue.shift()!);
    more();
    const next = queue[0];
    if (next === undefined) {
      if (cursor === null && loading === undefined) {
        pos = Math.max(pos, duration);
        pause();
        status.say('End of recording');
      } else timer = setTimeout(tick, 50);
      showTime();
      return;
    }
    let wait = itemTime(next) - pos;
    if (idle.checked && wait > IDLE_LIMIT_MS) {
      // Skip the idle stretch: time jumps to a second before the next event.
      anchor = { pos: itemTime(next) - IDLE_LIMIT_MS, wall: now };
      pos = anchor.pos;
      wait = IDLE_LIMIT_MS;
    }
    showTime();
    timer = setTimeout(tick, Math.min(250, Math.max(0, wait / rate())));
  }

  function start(): void {
    if (playing) return;
    if (pos >= duration && cursor === null && queue.length === 0) void seekTo(0).then(start);
    playing = true;
    play.textContent = 'Pause';
    status.say('');
    anchor = { pos, wall: performance.now() };
    tick();
  }

  function pause(): void {
    playing = false;
    play.textContent = 'Play';
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  }

  /** Jumps to `target` ms: the snapshot before it, then everything up to it at once. */
  async function seekTo(target: number): Promise<void> {
    const wasPlaying = playing;
    pause();
    generation++;
    queue = [];
    cursor = null;
    loading = undefined;
    notes.replaceChildren();
    term.reset();
    channel = new TerminalChannel(channel.chosen);
    pos = Math.max(0, Math.min(target, duration));
    await fetchPage({ from_ms: Math.round(pos), channel: channel.chosen });
    while (queue.length > 0 && itemTime(queue[0]!) <= pos) {
      apply(queue.shift()!);
      if (queue.length === 0 && cursor !== null) await fetchPage({ after: cursor });
    }
    showTime();
    if (wasPlaying) start();
  }

  play.addEventListener('click', () => (playing ? pause() : start()));
  seek.addEventListener('input', () => (clock.textContent = `${formatDuration(Number(seek.value))} / ${formatDuration(duration)}`));
  seek.addEventListener('change', () => void seekTo(Number(seek.value)));
  speed.addEventListener('change', () => (anchor = { pos, wall: performance.now() }));
  const onKey = (ev: KeyboardEvent): void => {
    const t = ev.target as HTMLElement | null;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || (t && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(t.tagName) && t !== document.body)) return;
    const i = SPEEDS.indexOf(rate());
    if (ev.key === ' ' || ev.key === 'k') playing ? pause() : start();
    else if (ev.key === 'ArrowLeft' || ev.key === 'j') void seekTo(pos - 5000);
    else if (ev.key === 'ArrowRight' || ev.key === 'l') void seekTo(pos + 5000);
    else if (ev.key === 'Home') void seekTo(0);
    else if (ev.key === '+' || ev.key === '>') speed.value = String(SPEEDS[Math.min(SPEEDS.length - 1, i + 1)]);
    else if (ev.key === '-' || ev.key === '<') speed.value = String(SPEEDS[Math.max(0, i - 1)]);
    else return;
    ev.preventDefault();
  };
  document.addEventListener('keydown', onKey);

  const node = h(
    'section',
    { class: 'player' },
    h('h1', null, `${meta.user} as ${meta.login}@${meta.host}`),
    h('p', { class: 'muted' }, `${formatTime(meta.startedAt)} · ${meta.state}${meta.command === undefined ? '' : ` · ${meta.command}`}${meta.exitStatus === undefined ? '' : ` · exit ${meta.exitStatus}`} · from ${meta.clientAddress}`),
    h(
      'div',
      { class: 'controls' },
      play,
      clock,
      seek,
      speed,
      h('label', { class: 'check' }, idle, ' Skip idle'),
      h('a', { class: 'button', href: `/web/api/recordings/${encodeURIComponent(id)}/asciicast`, download: `${id}.cast`, id: 'download' }, 'Download .cast'),
    ),
    screenBox,
    status,
    h('details', { open: true }, h('summary', null, 'Events'), notes),
    h('p', { class: 'muted small' }, 'Keys: space play/pause · ←/→ 5 s · Home start · +/− speed'),
  );
  parent.replaceChildren(node);
  const viewer = createViewer(screenBox, meta.cols ?? 80, meta.rows ?? 24);
  const term = viewer.term;
  await fetchPage({});
  // What the session showed at its first moment (the login banner), before play is pressed.
  while (queue.length > 0 && itemTime(queue[0]!) <= 0) apply(queue.shift()!);
  showTime();
  return {
    node,
    dispose() {
      pause();
      generation++;
      document.removeEventListener('keydown', onKey);
      viewer.dispose();
    },
  };
}
