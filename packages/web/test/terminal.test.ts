import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page, WebSocketRoute } from 'playwright-core';
import { totpCode } from '@portcullis/auth';
import { readRecordingMeta } from '@portcullis/recording';
import { TERMINAL_PROTOCOL } from '../shared/terminal-protocol.js';
import { ERIN, startTerminalWorld, type TerminalWorld } from './terminal-world.js';
import { SHOTS, launchChromium, screenText, waitForScreen } from './browser-support.js';

/*
 * The browser terminal in Debian's Chromium, headless, through the gateway and the proxy's
 * session engine to a real sshd enrolled through auth: the role's per-session second factor is
 * asked in the page, a command's output is read from xterm's screen, a resized window reaches
 * the pty (`stty size`), the session is recorded with route `web` and replays in the player,
 * and a terminal WebSocket from a page of another origin is refused.
 */

async function size(page: Page): Promise<{ cols: number; rows: number }> {
  return page.$eval('#term-size', (el) => {
    const d = (el as unknown as { dataset: Record<string, string | undefined> }).dataset;
    return { cols: Number(d['cols']), rows: Number(d['rows']) };
  });
}

describe('the browser terminal in Chromium', () => {
  let w: TerminalWorld;
  let context: BrowserContext;
  let page: Page;
  let tab: Page;
  let sessionId = '';
  let hello = '';

  before(async () => {
    w = await startTerminalWorld();
    const profile = w.f.dir.file('chromium-profile');
    context = await launchChromium(profile, w.f.info.spkiPin, { viewport: { width: 1100, height: 700 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: w.f.info.url });
    page = context.pages()[0] ?? (await context.newPage());
  });

  after(async () => {
    await context?.close();
    await w?.stop();
  });

  test('sign in, open a terminal from the hosts page, answer the session second factor, run a command', async () => {
    await page.goto(`${w.f.info.url}/web/`);
    await page.fill('#username', ERIN.name);
    await page.fill('#password', ERIN.password);
    await page.click('#password-form button[type="submit"]');
    await page.locator('#totp').waitFor();
    await page.fill('#totp', totpCode(w.totpSecret, Date.now()));
    await page.click('#totp-form button[type="submit"]');
    await page.locator('h1', { hasText: 'Hosts' }).waitFor();

    const [opened] = await Promise.all([context.waitForEvent('page'), page.click('button.open-terminal[data-host="web01"]')]);
    tab = opened;
    await tab.locator('#term-mfa').waitFor({ state: 'visible' });
    // The login spent this time step; the session's factor takes the next.
    await tab.fill('#term-totp', totpCode(w.totpSecret, Date.now() + 30_000));
    await tab.click('#term-mfa button[type="submit"]');
    await tab.locator('#term-state', { hasText: 'connected' }).waitFor({ timeout: 15_000 });
    sessionId = (await tab.$eval('#term-session', (el) => (el as unknown as { dataset: Record<string, string | undefined> }).dataset['id'])) ?? '';
    assert.match(sessionId, /^[0-9a-f-]{36}$/);

    await waitForScreen(tab, '#term-screen', (t) => /# ?$/m.test(t), 'the prompt');
    await tab.locator('#term-screen .xterm-helper-textarea').focus();
    await tab.keyboard.type('echo hello-$RANDOM\n');
    const text = await waitForScreen(tab, '#term-screen', (t) => /^hello-\d+$/m.test(t), 'the echo output');
    hello = /^(hello-\d+)$/m.exec(text)![1]!;
    await tab.screenshot({ path: join(SHOTS, 'web-terminal.png') });
  });

  test('the pty follows the window: stty size on the host matches xterm after a resize', async () => {
    const check = async (what: string): Promise<void> => {
      const { cols, rows } = await size(tab);
      await tab.keyboard.type('clear; stty size\n');
      await waitForScreen(tab, '#term-screen', (t) => new RegExp(`^${rows} ${cols}$`, 'm').test(t), `${what}: stty size = ${rows} ${cols}`);
    };
    await check('first size');
    const before = await size(tab);
    await tab.setViewportSize({ width: 820, height: 520 });
    for (let i = 0; i < 100 && (await size(tab)).cols === before.cols; i++) await tab.waitForTimeout(50);
    const after = await size(tab);
    assert.ok(after.cols < before.cols && after.rows < before.rows, `${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
    await check('after the resize');
    await tab.keyboard.type(`clear; echo ${hello}\n`);
    await waitForScreen(tab, '#term-screen', (t) => t.includes(hello), 'the marker again');
    await tab.screenshot({ path: join(SHOTS, 'web-terminal-small.png') });
  });

  test('copy with Ctrl+Shift+C puts xterm\'s selection on the clipboard; Ctrl+Shift+V pastes it', async () => {
    await tab.evaluate("navigator.clipboard.writeText('')");
    await tab.locator('#term-screen .xterm-helper-textarea').focus();
    // Select everything xterm shows, copy it.
    await tab.keyboard.type('clear; echo copy-me-42\n');
    await waitForScreen(tab, '#term-screen', (t) => /^copy-me-42$/m.test(t), 'the text to copy');
    const box = (await tab.locator('#term-screen .xterm-screen').boundingBox())!;
    await tab.mouse.dblclick(box.x + 30, box.y + 8);
    // A double click on the first row selects its first word; the whole screen is simpler to copy.
    await tab.mouse.move(box.x + 2, box.y + 2);
    await tab.mouse.down();
    await tab.mouse.move(box.x + box.width - 4, box.y + 60, { steps: 5 });
    await tab.mouse.up();
    await tab.keyboard.press('Control+Shift+C');
    let copied = '';
    for (let i = 0; i < 40 && !copied.includes('copy-me-42'); i++) {
      copied = await tab.evaluate<string>('navigator.clipboard.readText()');
      await tab.waitForTimeout(50);
    }
    assert.match(copied, /copy-me-42/);
    await tab.evaluate("navigator.clipboard.writeText('echo pasted-$((6*7))')");
    await tab.locator('#term-screen .xterm-helper-textarea').focus();
    await tab.keyboard.press('Control+Shift+V');
    // The clipboard is read asynchronously; Enter must come after the paste.
    await waitForScreen(tab, '#term-screen', (t) => t.includes('echo pasted-$((6*7))'), 'the pasted text');
    await tab.keyboard.press('Enter');
    await waitForScreen(tab, '#term-screen', (t) => /^pasted-42$/m.test(t), 'the pasted command ran');
  });

  test('the session is recorded with route web; the end says so and offers to reconnect', async () => {
    const meta = await readRecordingMeta(w.f.redis, sessionId);
    assert.ok(meta !== undefined, 'no recording');
    assert.equal(meta.route, 'web');
    assert.equal(meta.user, ERIN.name);
    assert.equal(meta.login, 'root');
    assert.equal(meta.host, 'web01');
    await tab.keyboard.type('exit\n');
    await tab.locator('#term-state', { hasText: 'ended' }).waitFor();
    await tab.locator('#term-reconnect').waitFor({ state: 'visible' });
    assert.match((await tab.textContent('#term-status')) ?? '', /ended/);
    let state = '';
    for (let i = 0; i < 100 && state !== 'ended'; i++) {
      state = (await readRecordingMeta(w.f.redis, sessionId))?.state ?? '';
      await tab.waitForTimeout(50);
    }
    assert.equal(state, 'ended');
    const names = w.audit.filter((e) => e.fields['sessionId'] === sessionId).map((e) => e.name);
    assert.deepEqual([names.includes('session.start'), names.includes('session.exec'), names.includes('session.end')], [true, true, true], names.join(', '));
  });

  test('the player replays the session and seeks', async () => {
    await page.goto(`${w.f.info.url}/web/recordings/${sessionId}`);
    await page.locator('#seek').waitFor();
    const max = Number(await page.getAttribute('#seek', 'max'));
    assert.ok(max > 0, `duration ${max}`);
    const seekTo = async (ms: number): Promise<void> => {
      await page.$eval('#seek', (el, v) => {
        (el as unknown as { value: string }).value = String(v);
        el.dispatchEvent(new Event('change'));
      }, ms);
    };
    // When the echo's output was recorded, from the events API the player uses.
    const events = await page.evaluate<{ items: { kind: string; event?: { type: string; t: number; data?: string } }[] }, string>(
      (id) => fetch(`/web/api/recordings/${id}/events?from_ms=0&limit=2000`).then((r) => r.json() as Promise<never>),
      sessionId,
    );
    const echoed = events.items.find((i) => i.event?.type === 'output' && Buffer.from(i.event.data ?? '', 'base64').toString().includes(`${hello}\r\n`));
    assert.ok(echoed?.event !== undefined, 'the echo is in the recording');
    // The seek bar moves in 100 ms steps; the screen is cleared a good while after the echo.
    await seekTo(Math.ceil((echoed.event.t + 1) / 100) * 100);
    await waitForScreen(page, '#player-screen', (t) => new RegExp(`^${hello}$`, 'm').test(t), `the echo ${hello} after a seek`);
    await page.screenshot({ path: join(SHOTS, 'web-terminal-replay.png') });
    await seekTo(0);
    await waitForScreen(page, '#player-screen', (t) => !t.includes(hello), 'the start of the session');
  });

  test('a terminal WebSocket from a page of another origin is refused', async () => {
    const probe = (p: Page, url: string) =>
      p.evaluate(
        ([u, proto]) =>
          new Promise<string>((resolve) => {
            const ws = new WebSocket(u!, proto);
            ws.onopen = () => {
              resolve('open');
              ws.close();
            };
            ws.onclose = (ev) => resolve(`closed ${ev.code}`);
          }),
        [url, TERMINAL_PROTOCOL] as const,
      );
    const wsUrl = `${w.f.info.url.replace('https:', 'wss:')}/web/api/terminal`;
    assert.equal(await probe(page, wsUrl), 'open', 'from the app itself');
    const foreign = await context.newPage();
    await foreign.goto(`${w.f.provider.issuer}/.well-known/openid-configuration`);
    assert.equal(await probe(foreign, wsUrl), 'closed 1006', 'from a page of another origin');
    await foreign.close();
  });

  test('a dropped connection says so and offers to reconnect, which opens a new session', async () => {
    // Playwright stands between the page and the gateway and cuts the connection, as a network
    // would; everything else goes through to the real gateway.
    const routes: WebSocketRoute[] = [];
    const other = await context.newPage();
    await other.routeWebSocket(/\/web\/api\/terminal$/, (ws) => {
      ws.connectToServer();
      routes.push(ws);
    });
    await other.goto(`${w.f.info.url}/web/terminal?host=web01&login=root`);
    // The gateway asks for this session's second factor: the socket is up.
    await other.locator('#term-mfa').waitFor({ state: 'visible' });
    await routes[0]!.close({ code: 1011, reason: '' });
    await other.locator('#term-state', { hasText: 'disconnected' }).waitFor();
    assert.match((await other.textContent('#term-status')) ?? '', /connection dropped/);
    await other.click('#term-reconnect');
    await other.locator('#term-mfa').waitFor({ state: 'visible' });
    assert.equal(routes.length, 2, 'a new WebSocket');
    assert.equal(await other.isVisible('#term-reconnect'), false);
    await other.close();
  });
});
