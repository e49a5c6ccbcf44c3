import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { totpCode } from '@portcullis/auth';
import { signInThroughProvider } from '@portcullis/harness';
import type { EventsPage } from '../shared/protocol.js';
import { ADMIN_PASSWORD, ALICE, setAdminPassword, startWebFixture, type WebFixture } from './fixture.js';
import { startLiveRecording, writeExecRecording, writeSeekableRecording } from './recordings.js';
import { SHOTS, launchChromium, screenText, waitForScreen } from './browser-support.js';

/*
 * The app in Debian's Chromium, headless, against the real gateway, auth, OpenID provider and
 * redis-server: SSO with TOTP, WebAuthn with a virtual authenticator, the recordings list and
 * command search, the player's seek, the live view, and the refusals a browser can produce
 * (a POST without the CSRF token, a WebSocket from a page of another origin). Screenshots go to
 * docs/screenshots/.
 */

describe('the browser app in Chromium', () => {
  let f: WebFixture;
  let context: BrowserContext;
  let page: Page;
  let totpSecret: string;
  let seekable: string;
  let exec: string;

  before(async () => {
    f = await startWebFixture();
    await setAdminPassword(f);
    seekable = await writeSeekableRecording(f.redis, { user: 'carol', host: 'db01' });
    exec = await writeExecRecording(f.redis, 'sudo systemctl restart nginx', 'restarted\n', { user: 'dave', host: 'web02', login: 'deploy' });
    // alice's first SSO login (through auth's API, as pcsh would) enrolls TOTP.
    const start = await f.authApi.request<{ url: string }>('POST', '/v1/login/oidc/start', { json: { redirect_uri: `${f.info.url}/web/callback` } });
    const callback = await signInThroughProvider(start.body.url, ALICE);
    const login = await f.authApi.request<{ token: string }>('POST', '/v1/login/oidc/finish', { json: { callback_url: callback.href } });
    const enroll = await f.authApi.request<{ secret: string }>('POST', '/v1/mfa/totp/enroll', { token: login.body.token, json: {} });
    totpSecret = enroll.body.secret;
    const confirmed = await f.authApi.request('POST', '/v1/mfa/totp/confirm', { token: login.body.token, json: { totp: totpCode(totpSecret, Date.now()) } });
    assert.equal(confirmed.status, 200, confirmed.bytes.toString());

    const profile = f.dir.file('chromium-profile');
    context = await launchChromium(profile, f.info.spkiPin, { viewport: { width: 1100, height: 760 }, acceptDownloads: true });
    page = context.pages()[0] ?? (await context.newPage());
  });

  after(async () => {
    await context?.close();
    await f?.stop();
  });

  test('SSO through the OpenID provider, then TOTP; the cookie is HttpOnly, Secure, SameSite=Strict', async () => {
    await page.goto(`${f.info.url}/web/`);
    await page.locator('#sso').waitFor();
    await page.screenshot({ path: join(SHOTS, 'web-login.png') });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(SHOTS, 'web-login-dark.png') });
    await page.emulateMedia({ colorScheme: 'light' });
    await page.click('#sso');
    // The provider's own sign-in form, then its consent page.
    await page.waitForURL(/^http:\/\/127\.0\.0\.1:\d+\/interaction\//);
    await page.fill('input[name="username"]', ALICE.username);
    await page.fill('input[name="password"]', ALICE.password);
    await page.click('#login button[type="submit"]');
    const consent = page.locator('#consent button');
    await Promise.race([consent.waitFor({ timeout: 10_000 }).then(() => consent.click()), page.waitForURL(/\/web\//, { timeout: 10_000 })]).catch(() => undefined);
    await page.locator('#totp').waitFor();
    assert.equal(new URL(page.url()).search, '', 'the code left the address bar');
    // The next time step: the enrollment spent the current one.
    await page.fill('#totp', totpCode(totpSecret, Date.now() + 30_000));
    await page.click('#totp-form button[type="submit"]');
    await page.locator('h1', { hasText: 'Hosts' }).waitFor();
    assert.equal(await page.locator('header .who').textContent(), 'alice');
    const cookies = await context.cookies(f.info.url);
    const session = cookies.find((c) => c.name === '__Host-pc_session');
    assert.ok(session, JSON.stringify(cookies));
    assert.deepEqual([session.httpOnly, session.secure, session.sameSite, session.path], [true, true, 'Strict', '/']);
    assert.equal(cookies.length, 1, 'no other cookie');
  });

  test('a POST without the CSRF token is refused, and a WebSocket from another origin is refused', async () => {
    const refused = await page.evaluate(async () => {
      const r = await fetch('/web/api/logout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      return { status: r.status, body: (await r.json()) as { error: { code: string } } };
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, 'ERR_FORBIDDEN');
    const still = await page.evaluate(async () => ((await (await fetch('/web/api/session')).json()) as { stage: string }).stage);
    assert.equal(still, 'authenticated');

    const probe = (p: Page, url: string) =>
      p.evaluate(
        (u) =>
          new Promise<string>((resolve) => {
            const ws = new WebSocket(u, 'portcullis.live.v1');
            ws.onopen = () => {
              resolve('open');
              ws.close();
            };
            ws.onclose = (ev) => resolve(`closed ${ev.code}`);
          }),
        url,
      );
    const wsUrl = `${f.info.url.replace('https:', 'wss:')}/web/api/recordings/${seekable}/live`;
    assert.equal(await probe(page, wsUrl), 'open', 'from the app itself');
    const foreign = await context.newPage();
    await foreign.goto(`${f.provider.issuer}/.well-known/openid-configuration`);
    assert.equal(await probe(foreign, wsUrl), 'closed 1006', 'from a page of another origin');
    await foreign.close();
  });

  test('the recordings list shows what the Recorder wrote; command search finds the exec', async () => {
    await page.click('header a[href="/web/recordings"]');
    const table = page.locator('#recordings');
    await table.locator(`a[href="/web/recordings/${seekable}"]`).waitFor();
    assert.match((await table.textContent()) ?? '', /carol.*ubuntu@db01/s);
    await page.fill('#f-command', 'systemctl restart');
    await page.press('#f-command', 'Enter');
    await page.waitForURL(/command=systemctl/);
    await table.locator(`a[href="/web/recordings/${exec}"]`).waitFor();
    assert.equal(await table.locator('tbody tr').count(), 1);
    assert.match((await table.textContent()) ?? '', /sudo systemctl restart nginx/);
  });

  test('the player jumps to the right screen through a snapshot, plays to the end, downloads asciicast', async () => {
    await page.goto(`${f.info.url}/web/recordings/${seekable}`);
    await waitForScreen(page, '#player-screen', (t) => t.includes('phase one'), 'the first screen before playing');
    const seekTo = async (ms: number): Promise<EventsPage> => {
      const response = page.waitForResponse((r) => r.url().includes(`/events?from_ms=${ms}`));
      await page.$eval('#seek', (el, v) => {
        (el as unknown as { value: string }).value = String(v);
        el.dispatchEvent(new Event('change'));
      }, ms);
      return (await (await response).json()) as EventsPage;
    };
    const at9 = await seekTo(9000);
    assert.equal(at9.items[0]?.kind, 'screen', 'the seek started from a snapshot');
    const text = await waitForScreen(page, '#player-screen', (t) => t.includes('phase three') && t.includes('progress of phase three'), 'phase three at 9 s');
    assert.ok(!text.includes('phase two'), text);
    assert.match((await page.locator('#clock').textContent()) ?? '', /^0:09 \/ 0:15$/);
    await page.screenshot({ path: join(SHOTS, 'web-player.png') });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(SHOTS, 'web-player-dark.png') });
    await page.emulateMedia({ colorScheme: 'light' });

    await seekTo(5000);
    await waitForScreen(page, '#player-screen', (t) => t.includes('phase two') && t.includes('progress of phase two') && !t.includes('three'), 'phase two at 5 s');
    // Play at 16x with idle skipping: the rest plays in well under a second of wall time.
    await page.selectOption('#speed', '16');
    await page.click('#play');
    await waitForScreen(page, '#player-screen', (t) => t.includes('phase four') && t.includes('progress of phase four'), 'the last screen after playing');
    await page.locator('.status', { hasText: 'End of recording' }).waitFor();

    const download = page.waitForEvent('download');
    await page.click('#download');
    const file = await (await download).path();
    const cast = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal((JSON.parse(cast[0]!) as { version: number; width: number }).version, 2);
    assert.ok(cast.some((l) => l.includes('phase four')));
  });

  test('the live view starts from the current screen and follows the recording as it is written', async () => {
    const live = await startLiveRecording(f.redis, { user: 'erin', host: 'app03' });
    await live.write('\x1b[2J\x1b[Herin@app03:~$ tail -f /var/log/syslog\r\nfirst line before anyone watched\r\n');
    await page.click('header a[href="/web/live"]');
    await page.locator(`#live a[href="/web/live/${live.id}"]`).click();
    await waitForScreen(page, '#live-screen', (t) => t.includes('first line before anyone watched'), 'the screen when the viewer joined');
    assert.equal(await page.locator('#live-badge').textContent(), 'LIVE');
    await live.write('second line while watching\r\n');
    await waitForScreen(page, '#live-screen', (t) => t.includes('second line while watching'), 'output written after joining');
    await live.end();
    await page.locator('#live-badge', { hasText: 'ended' }).waitFor();
  });

  test('WebAuthn: register a security key, sign out, sign in with password and the key', async () => {
    await page.click('header button:has-text("Sign out")');
    await page.locator('#sso').waitFor();
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: false, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    const passwordLogin = async (): Promise<void> => {
      await page.fill('#username', 'admin');
      await page.fill('#password', ADMIN_PASSWORD);
      await page.click('#password-form button[type="submit"]');
    };
    await passwordLogin();
    await page.locator('h1', { hasText: 'Hosts' }).waitFor();
    await page.click('header a[href="/web/account"]');
    await page.fill('#key-name', 'virtual key');
    await page.click('#add-key');
    await page.locator('.status', { hasText: 'Security key added.' }).waitFor();
    // The list is fetched again after the status line appears: wait for it, do not read it once.
    await page.locator('#keys', { hasText: 'virtual key' }).waitFor({ timeout: 10_000 });

    await page.click('header button:has-text("Sign out")');
    await passwordLogin();
    await page.locator('#webauthn-login').waitFor();
    assert.equal(await page.locator('#totp').count(), 0, 'only the factor the account has');
    await page.screenshot({ path: join(SHOTS, 'web-login-webauthn.png') });
    await page.click('#webauthn-login');
    await page.locator('h1', { hasText: 'Hosts' }).waitFor();
    assert.equal(await page.locator('header .who').textContent(), 'admin');
    const me = await page.evaluate(async () => (await (await fetch('/web/api/session')).json()) as { user: string; admin: boolean });
    assert.deepEqual([me.user, me.admin], ['admin', true]);
  });
});
