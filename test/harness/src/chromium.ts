/**
 * The machine's Chromium as the browser tests run it (playwright-core drives it; the harness
 * only names it, so it needs no browser library of its own).
 */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Headless, no sandbox (tests run as root), and nothing that reaches out to the network. */
export const HEADLESS_CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
