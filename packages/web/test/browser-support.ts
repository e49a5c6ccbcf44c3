/**
 * What the Chromium tests share: the browser as this machine allows it (Debian's chromium,
 * headless, no background networking on a closed network), trust of the gateway's generated
 * certificate by its key pin, the screenshot directory, and reading xterm.js screens.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHROMIUM_PATH, HEADLESS_CHROMIUM_ARGS } from '@portcullis/harness';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

// The README's screenshots are refreshed only on request (UPDATE_SCREENSHOTS=1), so a test run
// never dirties the checkout; otherwise they go to a temporary directory.
export const SHOTS = process.env['UPDATE_SCREENSHOTS']
  ? join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'docs', 'screenshots')
  : join(tmpdir(), 'portcullis-screenshots');

/** A fresh Chromium profile in `profileDir` trusting the gateway whose key pin is `spkiPin`. */
export async function launchChromium(
  profileDir: string,
  spkiPin: string,
  options: { readonly viewport: { readonly width: number; readonly height: number }; readonly acceptDownloads?: boolean },
): Promise<BrowserContext> {
  mkdirSync(profileDir);
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      ...HEADLESS_CHROMIUM_ARGS,
      // Trust the gateway's generated certificate by its key, as pcsh pins it: a page with a
      // certificate error would get no WebAuthn.
      `--ignore-certificate-errors-spki-list=${spkiPin.replace(/^sha256\/\//, '')}`,
    ],
    viewport: { ...options.viewport },
    acceptDownloads: options.acceptDownloads ?? false,
  });
}

/** The visible rows of the xterm.js inside `box`, right-trimmed. */
export async function screenText(page: Page, box: string): Promise<string> {
  return page.$eval(`${box} .xterm-rows`, (el) => [...el.children].map((r) => (r.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd()).join('\n'));
}

/** Waits up to 15 s (CI runs other suites beside this one on two cores) for `pred` to hold. */
export async function waitForScreen(page: Page, box: string, pred: (text: string) => boolean, what: string): Promise<string> {
  let text = '';
  for (let i = 0; i < 300; i++) {
    text = await screenText(page, box).catch(() => '');
    if (pred(text)) return text;
    await page.waitForTimeout(50);
  }
  assert.fail(`${what}; the screen shows:\n${text}`);
}
