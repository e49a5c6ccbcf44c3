import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { AuthClient, loadOrCreateTls, type TlsMaterial } from '@portcullis/auth';
import { connectRedis, type RedisConnection } from '@portcullis/store';
import { buildAppAssets, type AppAssets } from './assets.js';
import { AuthUpstream } from './auth-upstream.js';
import { BrowserSessionStore } from './browser-session.js';
import { gatewayOrigins, type WebConfig } from './config.js';
import type { GatewayContext } from './context.js';
import { buildGatewayApp } from './http.js';
import { LiveViews } from './live.js';
import { TerminalSockets, isTerminalPath, type TerminalEngine } from './terminal.js';

export interface WebGatewayOptions {
  readonly config: WebConfig;
  /** Milliseconds since the epoch (default Date.now). */
  readonly clock?: () => number;
  /** Operational lines (default stderr); never secrets. */
  readonly log?: (line: string) => void;
  /** A bundle already built (tests share one); default: built at start. */
  readonly assets?: AppAssets;
  /**
   * The proxy's session engine (WebSessionEngine from @portcullis/proxy, started) for the
   * browser terminal; without one the terminal WebSocket answers 503.
   */
  readonly terminals?: TerminalEngine;
}

export interface WebGatewayInfo {
  /** https://host:port browsers and pcsh use. */
  readonly url: string;
  readonly origins: readonly string[];
  readonly fingerprint: string;
  readonly spkiPin: string;
  readonly assets: Pick<AppAssets, 'firstLoad' | 'total'>;
}

/**
 * The web gateway: HTTPS (:3080) serving the browser app, browser sessions and the recordings
 * API, the WebSocket live view, and auth's `/v1` API for CLIs. start() and stop() once each.
 */
export class WebGateway {
  readonly #opts: WebGatewayOptions;
  readonly #log: (line: string) => void;
  #redis: RedisConnection | undefined;
  #app: FastifyInstance | undefined;
  #live: LiveViews | undefined;
  #terminals: TerminalSockets | undefined;
  #info: WebGatewayInfo | undefined;

  constructor(opts: WebGatewayOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  get info(): WebGatewayInfo {
    if (this.#info === undefined) throw new Error('web: the gateway is not started');
    return this.#info;
  }

  async start(): Promise<WebGatewayInfo> {
    if (this.#redis !== undefined) throw new Error('web: start() called twice');
    try {
      return await this.#start();
    } catch (e) {
      await this.stop().catch(() => undefined);
      throw e;
    }
  }

  async #start(): Promise<WebGatewayInfo> {
    const c = this.#opts.config;
    const tls = await this.#tls(c);
    const assets = this.#opts.assets ?? (await buildAppAssets());
    this.#redis = await connectRedis(c.redis, { onClientError: (m) => this.#log(`web: redis: ${m}`) });
    const auth = new AuthClient({
      url: c.auth.url,
      ...(c.auth.fingerprint === undefined ? {} : { fingerprint: c.auth.fingerprint }),
      ...(c.auth.ca_file === undefined ? {} : { ca: readFileSync(c.auth.ca_file, 'utf8') }),
    });
    // Filled once the port is known (listen 0 in tests); no request runs before that.
    const origins: string[] = [];
    const ctx: GatewayContext = {
      sessions: new BrowserSessionStore(this.#redis.client, { idleMs: c.sessions.idle * 1000, anonymousMs: c.sessions.anonymous * 1000 }),
      auth: new AuthUpstream(auth),
      redis: this.#redis.client,
      origins,
      clock: this.#opts.clock ?? Date.now,
      log: this.#log,
    };
    const app = buildGatewayApp(ctx, tls, assets);
    this.#app = app;
    const live = new LiveViews(ctx);
    this.#live = live;
    const terminals = new TerminalSockets(ctx, this.#opts.terminals);
    this.#terminals = terminals;
    app.server.on('upgrade', (req, socket, head) => (isTerminalPath(req.url) ? terminals.handleUpgrade(req, socket, head) : live.handleUpgrade(req, socket, head)));
    await app.listen({ host: c.listen.host, port: c.listen.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : c.listen.port;
    origins.push(...gatewayOrigins(c.public_url, port));
    this.#info = { url: origins[0]!, origins, fingerprint: tls.fingerprint, spkiPin: tls.spkiPin, assets: { firstLoad: assets.firstLoad, total: assets.total } };
    this.#log(`web: listening on ${origins[0]} (TLS certificate SHA-256 ${tls.fingerprint}); the app's first load is ${assets.firstLoad.gzip} bytes gzipped`);
    return this.#info;
  }

  async #tls(c: WebConfig): Promise<TlsMaterial> {
    const names = [...c.tls.names];
    if (c.public_url !== undefined) names.push(new URL(c.public_url).hostname.replace(/^\[|\]$/g, ''));
    if (c.listen.host !== '0.0.0.0' && c.listen.host !== '::') names.push(c.listen.host);
    // auth's TLS module, in a directory of the gateway's own: its key is not auth's key.
    return loadOrCreateTls({
      stateDir: join(c.state_dir, 'web'),
      ...(c.tls.cert_file === undefined ? {} : { certFile: c.tls.cert_file }),
      ...(c.tls.key_file === undefined ? {} : { keyFile: c.tls.key_file }),
      names,
      log: this.#log,
    });
  }

  async stop(): Promise<void> {
    this.#live?.closeAll();
    this.#terminals?.closeAll();
    await this.#app?.close();
    await this.#redis?.close();
  }
}
