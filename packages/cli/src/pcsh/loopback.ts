import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CliError } from '../common/errors.js';

/*
 * The browser half of SSO (RFC 8252, native apps): a one-shot HTTP server on 127.0.0.1 and a
 * random port receives the provider's redirect. Only 127.0.0.1 is bound, so nothing off the
 * machine can deliver a code; the state parameter ties the redirect to this login; the first
 * callback with that state ends the server.
 */

export interface LoopbackListener {
  readonly redirectUri: string;
  /**
   * The full callback URL once the browser arrives with `state`; `respond` then writes the
   * page the browser shows, so it can say how the login ended.
   */
  waitForCallback(state: string, timeoutMs: number): Promise<{ url: string; respond: (ok: boolean, text: string) => void }>;
  close(): void;
}

const page = (title: string, text: string): string =>
  `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
  `<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto"><h1>${title}</h1><p>${text}</p></body></html>`;

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function listenLoopback(): Promise<LoopbackListener> {
  let onRequest: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(404).end();
  };
  const server = createServer((req, res) => onRequest(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const redirectUri = `http://127.0.0.1:${port}/callback`;
  return {
    redirectUri,
    waitForCallback(state, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new CliError('ERR_AUTH', `the browser sign-in did not finish within ${Math.round(timeoutMs / 1000)} s; run pcsh login again`));
        }, timeoutMs);
        onRequest = (req, res) => {
          const url = new URL(req.url ?? '/', redirectUri);
          // Browsers ask for /favicon.ico and the like; only the callback with our state counts.
          if (req.method !== 'GET' || url.pathname !== '/callback' || url.searchParams.get('state') !== state) {
            res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
            return;
          }
          clearTimeout(timer);
          onRequest = (_r, s) => {
            s.writeHead(410, { 'content-type': 'text/plain' }).end('this sign-in is already complete\n');
          };
          resolve({
            url: url.href,
            respond: (ok, text) => {
              res.writeHead(ok ? 200 : 400, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
              res.end(page(ok ? 'Signed in' : 'Sign-in failed', escapeHtml(text)));
            },
          });
        };
      });
    },
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}

/**
 * Opens `url` in the desktop's browser. False when there is none to open (no display, no
 * opener installed); the caller then prints the URL for the user to open elsewhere.
 */
export async function openBrowser(url: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const opener = process.platform === 'darwin' ? 'open' : 'xdg-open';
  if (process.platform === 'linux' && env['DISPLAY'] === undefined && env['WAYLAND_DISPLAY'] === undefined) return false;
  return new Promise((resolve) => {
    const child = spawn(opener, [url], { stdio: 'ignore', detached: true });
    child.once('error', () => resolve(false));
    child.once('spawn', () => {
      child.unref();
      resolve(true);
    });
  });
}
