import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CHROMIUM_PATH, HEADLESS_CHROMIUM_ARGS } from '@portcullis/harness';
import { chromium, type BrowserContext } from 'playwright-core';
import { alice, laptop, ok, start, startStack, type Stack } from './pcsh-login-fixture.js';

/*
 * The loopback SSO login as a person does it: the real `pcsh login --no-browser` prints the
 * provider's URL, Debian's Chromium (headless) opens it, the provider's sign-in form (and its
 * consent page) is filled and submitted by clicking, and the browser itself follows the
 * provider's redirect to pcsh's loopback callback. pcsh must finish the login from that.
 */

const CHROMIUM = CHROMIUM_PATH;
const mode = (p: string): number => statSync(p).mode & 0o777;

describe('pcsh login through the loopback redirect, in Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
  let stack: Stack;
  let context: BrowserContext | undefined;

  before(async () => {
    stack = await startStack('pcsh-login-chromium-');
    const profile = stack.dir.file('chromium-profile');
    mkdirSync(profile);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...HEADLESS_CHROMIUM_ARGS],
    });
  });

  after(async () => {
    await context?.close();
    await stack?.stop();
  });

  test('sign in on the provider\'s page; the browser lands on pcsh\'s callback and pcsh exits 0 with a private certificate', async () => {
    const me = laptop(stack, 'alice');
    const login = start('pcsh', me, ['login', '--auth', stack.info.url, '--fingerprint', stack.info.fingerprint, '--no-browser']);
    try {
      const m = await login.waitForStderr(/Open this URL in a browser to sign in: (\S+)/);
      const redirectUri = new URL(m[1]!).searchParams.get('redirect_uri') ?? '';
      assert.match(redirectUri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);

      const page = context!.pages()[0] ?? (await context!.newPage());
      await page.goto(m[1]!);
      // The provider's own sign-in form.
      await page.waitForURL(/^http:\/\/127\.0\.0\.1:\d+\/interaction\//);
      await page.fill('input[name="username"]', alice.username);
      await page.fill('input[name="password"]', alice.password);
      await page.click('#login button[type="submit"]');
      // Its consent page, when it asks; then the redirect to pcsh's loopback listener.
      const atCallback = (u: URL): boolean => u.href.startsWith(`${redirectUri}?`);
      const consent = page.locator('#consent button');
      await Promise.race([
        consent.waitFor({ timeout: 10_000 }).then(() => consent.click()),
        page.waitForURL(atCallback, { timeout: 10_000 }),
      ]).catch(() => undefined);
      await page.waitForURL(atCallback, { timeout: 10_000 });
      await page.getByText(/signed in to Portcullis/).waitFor({ timeout: 10_000 });
      assert.ok(new URL(page.url()).searchParams.get('code'), page.url());

      const r = await login.done;
      assert.equal(r.code, 0, r.stderr);
    } finally {
      login.stop();
    }

    const status = await ok('pcsh', me, ['status']);
    assert.match(status.stdout, /^User: +alice \(sso\)$/m);
    assert.match(status.stdout, /^Session: +oidc, /m);
    const cert = `${me.pcshHome}/keys/127.0.0.1/id_ed25519-cert.pub`;
    assert.ok(existsSync(cert), cert);
    assert.equal(mode(cert), 0o600);
    assert.equal(mode(`${me.pcshHome}/keys/127.0.0.1/id_ed25519`), 0o600);
  });
});
