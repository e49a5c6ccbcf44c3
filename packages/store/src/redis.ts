import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { StoreError } from './errors.js';
import { EmbeddedRedis, type EmbeddedRedisOptions } from './embedded.js';

const port = z.number().int().min(1).max(65535);
const hostPort = z.strictObject({ host: z.string().min(1), port });

const REDIS_URL = /^(redis|rediss|unix):\/\//;

/**
 * The `redis` section of a service config: exactly one of an embedded server (the default a
 * config loader fills in when nothing is configured), a URL, Sentinel, or Cluster. Exported for
 * config/ to compose; the password-bearing fields are never echoed in error messages.
 */
export const redisConfigSchema = z.union([
  z.strictObject({
    embedded: z.strictObject({
      stateDir: z.string().min(1),
      /** Loopback TCP with a generated password instead of the unix socket. */
      port: port.optional(),
    }),
  }),
  z.strictObject({
    url: z.string().regex(REDIS_URL, { message: 'expected a redis://, rediss:// or unix:// URL' }),
  }),
  z.strictObject({
    sentinel: z.strictObject({
      sentinels: z.array(hostPort).min(1),
      /** The monitored master's name (`sentinel monitor <name> ...`). */
      name: z.string().min(1),
      /** Password of the Redis servers (requirepass); sentinelPassword is the sentinels' own. */
      password: z.string().min(1).optional(),
      sentinelPassword: z.string().min(1).optional(),
      username: z.string().min(1).optional(),
      tls: z.boolean().optional(),
    }),
  }),
  z.strictObject({
    cluster: z.strictObject({
      /** Any reachable subset of the nodes; the client discovers the rest. */
      nodes: z.array(hostPort).min(1),
      password: z.string().min(1).optional(),
      username: z.string().min(1).optional(),
      tls: z.boolean().optional(),
    }),
  }),
]);

export type RedisConfig = z.infer<typeof redisConfigSchema>;

export type RedisClient = Redis | Cluster;

export interface RedisConnection {
  /** Ready: the first command does not wait for a handshake. */
  readonly client: RedisClient;
  readonly kind: 'embedded' | 'url' | 'sentinel' | 'cluster';
  /** Where it points, without credentials (for logs and error messages). */
  readonly target: string;
  /** The supervised server when kind is 'embedded'. */
  readonly embedded: EmbeddedRedis | undefined;
  /**
   * A new, ready connection for SUBSCRIBE (a subscribed connection can run nothing else).
   * close() closes every subscriber made here.
   */
  subscriber(): Promise<RedisClient>;
  /** Closes the clients, then stops the embedded server if there is one. */
  close(): Promise<void>;
}

export interface ConnectRedisOptions {
  /** How long to wait for the first ready connection (default 10 s). */
  readonly readyTimeoutMs?: number;
  /**
   * Resolve only once the client is ready (default true). A service that can work without
   * Redis for a while (the proxy spools recordings) passes false and starts at once; the client
   * connects in the background and commands queue or fail as maxRetriesPerRequest says.
   */
  readonly waitForReady?: boolean;
  /**
   * Reconnection attempts a command waits through before it fails (default 2). Small, because
   * callers sit in a request path; the client itself keeps reconnecting in the background.
   */
  readonly maxRetriesPerRequest?: number;
  /** Connection errors after the first ready (already free of passwords); default: dropped. */
  readonly onClientError?: (message: string) => void;
  /** Extra options for the embedded supervisor (restart delays, events, binary path). */
  readonly embedded?: Omit<EmbeddedRedisOptions, 'stateDir' | 'port'>;
}

/** Parses an untrusted config section with the schema; the message names the offending key. */
export function parseRedisConfig(input: unknown): RedisConfig {
  const r = redisConfigSchema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue && issue.path.length > 0 ? `redis.${issue.path.join('.')}` : 'redis';
  throw new StoreError(
    'ERR_CONFIG',
    `config: ${where}: ${issue?.message ?? 'invalid'} (expected one of embedded, url, sentinel, cluster)`,
  );
}

/** Connects to the configured Redis (starting the embedded server first) and waits until ready. */
export async function connectRedis(config: RedisConfig, options: ConnectRedisOptions = {}): Promise<RedisConnection> {
  const common: RedisOptions = {
    maxRetriesPerRequest: options.maxRetriesPerRequest ?? 2,
    connectTimeout: 5_000,
    // Never give up in the background: Redis coming back must heal the service by itself.
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  };
  const secrets: string[] = [];
  let embedded: EmbeddedRedis | undefined;
  let client: RedisClient;
  let kind: RedisConnection['kind'];
  let target: string;

  if ('embedded' in config) {
    kind = 'embedded';
    embedded = new EmbeddedRedis({
      ...options.embedded,
      stateDir: config.embedded.stateDir,
      ...(config.embedded.port === undefined ? {} : { port: config.embedded.port }),
    });
    await embedded.start();
    const ep = embedded.endpoint;
    if ('path' in ep) {
      target = `unix://${ep.path}`;
      client = new Redis({ ...common, path: ep.path });
    } else {
      secrets.push(ep.password);
      target = `redis://${ep.host}:${ep.port}`;
      client = new Redis({ ...common, host: ep.host, port: ep.port, password: ep.password });
    }
  } else if ('url' in config) {
    kind = 'url';
    const { display, password } = describeUrl(config.url);
    if (password !== undefined) secrets.push(password);
    target = display;
    client = new Redis(config.url, common);
  } else if ('sentinel' in config) {
    kind = 'sentinel';
    const s = config.sentinel;
    for (const p of [s.password, s.sentinelPassword]) if (p !== undefined) secrets.push(p);
    target = `sentinel master "${s.name}" via ${s.sentinels.map((n) => `${n.host}:${n.port}`).join(',')}`;
    client = new Redis({
      ...common,
      sentinels: s.sentinels,
      name: s.name,
      ...(s.password === undefined ? {} : { password: s.password }),
      ...(s.sentinelPassword === undefined ? {} : { sentinelPassword: s.sentinelPassword }),
      ...(s.username === undefined ? {} : { username: s.username }),
      ...(s.tls === true ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
    });
  } else {
    kind = 'cluster';
    const c = config.cluster;
    if (c.password !== undefined) secrets.push(c.password);
    target = `cluster via ${c.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
    const clusterOptions: ClusterOptions = {
      clusterRetryStrategy: (times) => Math.min(times * 200, 2_000),
      redisOptions: {
        ...common,
        ...(c.password === undefined ? {} : { password: c.password }),
        ...(c.username === undefined ? {} : { username: c.username }),
        ...(c.tls === true ? { tls: {} } : {}),
      },
    };
    client = new Cluster(c.nodes, clusterOptions);
  }

  const scrub = (message: string): string => secrets.reduce((m, s) => m.split(s).join('***'), message);
  const timeoutMs = options.readyTimeoutMs ?? 10_000;
  const subscribers = new Set<RedisClient>();
  const watch = (c: RedisClient): RedisClient => {
    const onError = options.onClientError;
    // Always a listener: without one ioredis prints every reconnection failure to stderr with a
    // stack (a CLI's output, a test's log). The command that fails still reports its error.
    c.on('error', (e: Error) => onError?.(`store: redis at ${target}: ${scrub(e.message)}`));
    return c;
  };

  try {
    if (options.waitForReady !== false) await waitReady(client, target, timeoutMs, scrub);
  } catch (e) {
    await embedded?.stop();
    throw e;
  }
  watch(client);

  return {
    client,
    kind,
    target,
    embedded,
    async subscriber() {
      const sub = client.duplicate();
      subscribers.add(sub);
      try {
        await waitReady(sub, target, timeoutMs, scrub);
      } catch (e) {
        subscribers.delete(sub);
        throw e;
      }
      return watch(sub);
    },
    async close() {
      await Promise.all([...subscribers, client].map(quit));
      subscribers.clear();
      await embedded?.stop();
    },
  };
}

/** The URL with its password masked, and the password (to scrub it from error text). */
function describeUrl(url: string): { display: string; password: string | undefined } {
  try {
    const u = new URL(url);
    const password = u.password === '' ? undefined : decodeURIComponent(u.password);
    if (u.password !== '') u.password = '***';
    return { display: u.toString(), password };
  } catch {
    throw new StoreError('ERR_CONFIG', 'config: redis.url: not a parseable URL');
  }
}

// Refusals that retrying cannot fix: fail at once instead of at the deadline.
const AUTH_REFUSED = /WRONGPASS|NOAUTH|invalid password|invalid username-password|AUTH.*without any password/i;

function waitReady(client: RedisClient, target: string, timeoutMs: number, scrub: (m: string) => string): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError = '';
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('end', onEnd);
    };
    const fail = (what: string): void => {
      cleanup();
      client.disconnect();
      reject(new StoreError('ERR_UNAVAILABLE', `store: redis at ${target} ${what}`));
    };
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const onError = (e: Error): void => {
      lastError = scrub(e.message);
      if (AUTH_REFUSED.test(e.message)) fail(`refused authentication: ${lastError}`);
    };
    const onEnd = (): void => fail(`closed the connection${lastError ? `: ${lastError}` : ''}`);
    const timer = setTimeout(
      () => fail(`not ready within ${timeoutMs} ms${lastError ? `: ${lastError}` : ' (no answer)'}`),
      timeoutMs,
    );
    client.on('ready', onReady);
    client.on('error', onError);
    client.on('end', onEnd);
  });
}

/** QUIT politely and wait for the socket to close, but never hang on a server that is gone. */
async function quit(c: RedisClient): Promise<void> {
  if (c.status === 'end') return;
  // The QUIT reply comes before the socket closes; 'end' is when the client is really done.
  const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
  if (c.status === 'ready') {
    c.quit().catch(() => c.disconnect());
  } else {
    c.disconnect();
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    ended,
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        c.disconnect();
        resolve();
      }, 2_000);
    }),
  ]);
  clearTimeout(timer);
}
