// One bastion of a scaled-out install, in a process of its own, as `portcullis start --roles
// proxy,web` runs it: the proxy service (SSH listener, recorder to the shared Redis, recordings
// signed by auth) and the web gateway attached to the proxy's session engine. The one difference
// is dialling: auth's inventory has names, not the free ports the test's sshd listen on, so the
// authority maps them (HttpAuthorityOptions.dialAddress). Audit events go to the parent over IPC;
// SIGTERM stops the gateway, then drains the proxy.
import { readFileSync } from 'node:fs';
import { HttpAuthority } from '@portcullis/proxy';
import type { ProxyAuditEvent } from '@portcullis/proxy';
import { WebGateway, parseWebConfig } from '@portcullis/web';
import { parseProxyServiceConfig, startProxyService } from '../../../packages/proxy/src/main.js';

export interface BastionConfig {
  /** Holds host_key, host_key-cert.pub and credential (the shared enrollment), and the spool. */
  readonly stateDir: string;
  readonly name: string;
  readonly sshPort: number;
  readonly webPort: number;
  readonly redisUrl: string;
  /** The auth replica this bastion talks to. */
  readonly auth: { readonly url: string; readonly fingerprint: string };
  /** Where each target's sshd listens, by inventory name. */
  readonly ports: Readonly<Record<string, number>>;
}

export type BastionMessage =
  | { readonly type: 'ready'; readonly sshPort: number; readonly webUrl: string; readonly webFingerprint: string }
  | { readonly type: 'audit'; readonly event: ProxyAuditEvent };

const config = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as BastionConfig;
const send = (m: BastionMessage): void => void process.send?.(m);
const log = (line: string): void => void process.stderr.write(`bastion ${config.sshPort}: ${line}\n`);

const authority = new HttpAuthority({
  url: config.auth.url,
  fingerprint: config.auth.fingerprint,
  credential: readFileSync(`${config.stateDir}/credential`, 'utf8').trim(),
  dialAddress: (h) => ({ address: '127.0.0.1', port: config.ports[h.name] ?? 1 }),
  log: (_level, m) => log(m),
});
const proxy = await startProxyService(
  parseProxyServiceConfig({
    state_dir: config.stateDir,
    name: config.name,
    listen: `127.0.0.1:${config.sshPort}`,
    redis: { url: config.redisUrl },
    auth: config.auth,
    drain_grace: '5s',
  }),
  {
    authority,
    audit: (event) => send({ type: 'audit', event }),
    log: (level, m) => {
      if (level !== 'info') log(`${level}: ${m}`);
    },
  },
);
const web = new WebGateway({
  config: parseWebConfig({ listen: `127.0.0.1:${config.webPort}`, state_dir: config.stateDir, auth: config.auth, redis: { url: config.redisUrl } }),
  log: () => {},
  terminals: proxy.webSessions,
});
const info = await web.start();

process.once('SIGTERM', () => {
  void web
    .stop()
    .then(() => proxy.stop())
    .finally(() => {
      authority.close();
      process.exit(0);
    });
});
send({ type: 'ready', sshPort: proxy.proxy.port, webUrl: info.url, webFingerprint: info.fingerprint });
