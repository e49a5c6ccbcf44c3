import { mkdirSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { run, runOk } from './process.js';
import { processAlive, startRedis, type RedisHandle } from './redis.js';

/*
 * Redis Cluster and Redis Sentinel as an operator would run them, on loopback: real
 * redis-server and redis-sentinel processes, formed with redis-cli. Tests kill nodes to cause a
 * failover and use the `config` objects with @portcullis/store's connectRedis (the harness
 * itself stays free of ioredis and of our packages: redis-cli answers every question).
 */

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface TopologyNode {
  readonly port: number;
  readonly server: RedisHandle;
  /** SIGKILL: the node dies as in a crash; the topology's stop() still reaps it. */
  kill(): void;
}

export interface RedisClusterOptions {
  readonly dir: string;
  /** Default 3 (the least Redis Cluster accepts). */
  readonly masters?: number;
  /** Default 1: each master gets a replica that takes over when the master dies. */
  readonly replicasPerMaster?: number;
  /** cluster-node-timeout: how long a silent master is given before a replica takes over (default 2000). */
  readonly nodeTimeoutMs?: number;
  /** How long formation may take (default 45 s). */
  readonly readyTimeoutMs?: number;
}

export interface RedisCluster {
  readonly nodes: readonly TopologyNode[];
  /** For connectRedis: `{ cluster: { nodes } }` with every node. */
  readonly config: { readonly cluster: { readonly nodes: HostPort[] } };
  /** The hash slot of a key, as Redis computes it (CLUSTER KEYSLOT). */
  keySlot(key: string): Promise<number>;
  /** The live master serving a slot now, as a live node sees it. */
  masterOf(slot: number): Promise<TopologyNode>;
  /** Ports of the current masters and replicas, as a live node sees them. */
  roles(): Promise<{ masters: number[]; replicas: number[] }>;
  /**
   * Waits until every live node reports cluster_state:ok and every slot is served by a live
   * master (after a kill: the failover is complete).
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisSentinelGroupOptions {
  readonly dir: string;
  /** The monitored master's name (default "portcullis"). */
  readonly name?: string;
  /** Default 2. */
  readonly replicas?: number;
  /** Default 3; the quorum is a majority of them. */
  readonly sentinels?: number;
  /** sentinel down-after-milliseconds (default 1000). */
  readonly downAfterMs?: number;
  /** sentinel failover-timeout (default 6000). */
  readonly failoverTimeoutMs?: number;
  /** How long formation may take (default 45 s). */
  readonly readyTimeoutMs?: number;
}

export interface RedisSentinelGroup {
  readonly name: string;
  /** The data nodes: [0] is the first master, the rest its replicas. */
  readonly servers: readonly TopologyNode[];
  readonly sentinels: readonly TopologyNode[];
  /** For connectRedis: `{ sentinel: { sentinels, name } }`. */
  readonly config: { readonly sentinel: { readonly sentinels: HostPort[]; readonly name: string } };
  /** The data node every live sentinel names as master (waits until they agree). */
  master(timeoutMs?: number): Promise<TopologyNode>;
  /**
   * Waits until the live sentinels agree on a live master that answers as master, and (when
   * `minReplicas` is given) that many live replicas are linked to it.
   */
  waitMaster(o?: { readonly notPort?: number; readonly minReplicas?: number; readonly timeoutMs?: number }): Promise<TopologyNode>;
  stop(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** redis-cli against one loopback port; undefined when the node does not answer. */
async function cli(port: number, args: readonly string[]): Promise<string | undefined> {
  const r = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeoutMs: 5_000 });
  return r.code === 0 ? r.stdout : undefined;
}

function field(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, detail: () => Promise<string> = async () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`redis topology: timed out after ${timeoutMs} ms waiting for ${what}\n${await detail()}`);
    await sleep(150);
  }
}

function node(server: RedisHandle): TopologyNode {
  if (server.port === undefined) throw new TypeError('redis topology: a node without a TCP port');
  return { port: server.port, server, kill: () => server.kill('SIGKILL') };
}

async function startAll(dirs: readonly string[], extra: (i: number) => string[], sentinel = false): Promise<TopologyNode[]> {
  const started: TopologyNode[] = [];
  try {
    for (const [i, d] of dirs.entries()) {
      mkdirSync(d, { recursive: true });
      started.push(node(await startRedis({ dir: d, sentinel, extraConfig: extra(i), startTimeoutMs: 20_000 })));
    }
    return started;
  } catch (e) {
    await Promise.all(started.map((n) => n.server.stop()));
    throw e;
  }
}

interface ClusterNodeLine {
  readonly id: string;
  readonly port: number;
  readonly master: boolean;
  readonly failed: boolean;
  readonly masterId: string;
  readonly slots: readonly [number, number][];
}

function parseClusterNodes(text: string): ClusterNodeLine[] {
  return text
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id = '', addr = '', flags = '', masterId = '', , , , , ...slots] = l.trim().split(' ');
      const f = flags.split(',');
      return {
        id,
        port: Number(/:(\d+)@/.exec(addr)?.[1] ?? 0),
        master: f.includes('master'),
        failed: f.includes('fail') || f.includes('fail?') || f.includes('noaddr'),
        masterId,
        slots: slots
          .filter((s) => !s.startsWith('['))
          .map((s) => {
            const [a, b] = s.split('-');
            return [Number(a), Number(b ?? a)] as [number, number];
          }),
      };
    });
}

/**
 * A Redis Cluster of `masters` masters with `replicasPerMaster` replicas each, made by
 * `redis-cli --cluster create`. Resolves when every node reports cluster_state:ok, all nodes
 * agree on the slots, and every replica's link to its master is up with the initial sync done.
 */
export async function startRedisCluster(o: RedisClusterOptions): Promise<RedisCluster> {
  const dir = resolvePath(o.dir);
  const masters = o.masters ?? 3;
  const perMaster = o.replicasPerMaster ?? 1;
  const readyMs = o.readyTimeoutMs ?? 45_000;
  const count = masters * (1 + perMaster);
  const nodes = await startAll(
    Array.from({ length: count }, (_, i) => join(dir, `cluster-${i}`)),
    () => [
      'cluster-enabled yes',
      'cluster-config-file nodes.conf',
      `cluster-node-timeout ${o.nodeTimeoutMs ?? 2_000}`,
      // A replica takes over however long its link was down: the test kills on purpose.
      'cluster-replica-validity-factor 0',
    ],
  );
  const live = (): TopologyNode[] => nodes.filter(alive);
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.server.stop()));
  };
  const anyView = async (): Promise<{ from: TopologyNode; lines: ClusterNodeLine[] }> => {
    for (const n of live()) {
      const text = await cli(n.port, ['cluster', 'nodes']);
      if (text !== undefined) return { from: n, lines: parseClusterNodes(text) };
    }
    throw new Error('redis topology: no cluster node answers');
  };
  const byPort = (port: number): TopologyNode => {
    const n = nodes.find((x) => x.port === port);
    if (n === undefined) throw new Error(`redis topology: no node on port ${port}`);
    return n;
  };
  const cluster: RedisCluster = {
    nodes,
    config: { cluster: { nodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })) } },
    async keySlot(key) {
      const first = live()[0];
      if (first === undefined) throw new Error('redis topology: no live node');
      return Number((await runOk('redis-cli', ['-p', String(first.port), 'cluster', 'keyslot', key])).stdout.trim());
    },
    async masterOf(slot) {
      const { lines } = await anyView();
      const m = lines.find((l) => l.master && !l.failed && l.slots.some(([a, b]) => slot >= a && slot <= b));
      if (m === undefined) throw new Error(`redis topology: no live master serves slot ${slot}`);
      return byPort(m.port);
    },
    async roles() {
      const { lines } = await anyView();
      const ok = lines.filter((l) => !l.failed);
      return { masters: ok.filter((l) => l.master).map((l) => l.port), replicas: ok.filter((l) => !l.master).map((l) => l.port) };
    },
    async waitHealthy(timeoutMs = 30_000) {
      await until(
        'cluster_state:ok on every live node with every slot on a live master',
        timeoutMs,
        async () => {
          for (const n of live()) {
            const info = await cli(n.port, ['cluster', 'info']);
            if (info === undefined || field(info, 'cluster_state') !== 'ok') return undefined;
            const text = await cli(n.port, ['cluster', 'nodes']);
            if (text === undefined) return undefined;
            const served = parseClusterNodes(text)
              .filter((l) => l.master && !l.failed && alive(byPort(l.port)))
              .reduce((sum, l) => sum + l.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0);
            if (served !== 16_384) return undefined;
          }
          return true;
        },
        async () => (await Promise.all(live().map(async (n) => `${n.port}:\n${(await cli(n.port, ['cluster', 'nodes'])) ?? '(no answer)'}`))).join('\n'),
      );
    },
    stop,
  };
  try {
    await runOk('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(perMaster), '--cluster-yes'], {
      timeoutMs: readyMs,
    });
    await cluster.waitHealthy(readyMs);
    await until('every node to agree on the slots', readyMs, async () => {
      const r = await run('redis-cli', ['--cluster', 'check', `127.0.0.1:${nodes[0]!.port}`], { timeoutMs: 10_000 });
      return r.code === 0 && /All nodes agree about slots configuration/.test(r.stdout) && !/\[ERR\]|\[WARNING\]/.test(r.stdout) ? true : undefined;
    });
    await until(`${masters * perMaster} replicas in sync`, readyMs, async () => {
      const { masters: m, replicas } = await cluster.roles();
      if (m.length !== masters || replicas.length !== masters * perMaster) return undefined;
      for (const port of replicas) {
        const info = await cli(port, ['info', 'replication']);
        if (info === undefined || field(info, 'master_link_status') !== 'up' || field(info, 'master_sync_in_progress') !== '0') return undefined;
      }
      return true;
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return cluster;
}

/** A SIGKILLed node is a zombie until node reaps it; processAlive counts that as gone. */
function alive(n: TopologyNode): boolean {
  return processAlive(n.server.pid);
}

/**
 * One master, `replicas` replicas (`replicaof`), and `sentinels` redis-sentinel processes with
 * a short down-after-milliseconds. Resolves when every sentinel names the master, knows every
 * replica and the other sentinels, and every replica's link is up.
 */
export async function startRedisSentinelGroup(o: RedisSentinelGroupOptions): Promise<RedisSentinelGroup> {
  const dir = resolvePath(o.dir);
  const name = o.name ?? 'portcullis';
  const replicaCount = o.replicas ?? 2;
  const sentinelCount = o.sentinels ?? 3;
  const readyMs = o.readyTimeoutMs ?? 45_000;
  const servers: TopologyNode[] = [];
  const sentinels: TopologyNode[] = [];
  const stop = async (): Promise<void> => {
    // Sentinels first, so none reconfigures a server that is going away.
    await Promise.all(sentinels.map((n) => n.server.stop()));
    await Promise.all(servers.map((n) => n.server.stop()));
  };
  try {
    servers.push(...(await startAll([join(dir, 'server-0')], () => [])));
    const masterPort = servers[0]!.port;
    servers.push(
      ...(await startAll(
        Array.from({ length: replicaCount }, (_, i) => join(dir, `server-${i + 1}`)),
        () => [`replicaof 127.0.0.1 ${masterPort}`],
      )),
    );
    await until('the replicas to sync', readyMs, async () => {
      for (const r of servers.slice(1)) {
        const info = await cli(r.port, ['info', 'replication']);
        if (info === undefined || field(info, 'master_link_status') !== 'up' || field(info, 'master_sync_in_progress') !== '0') return undefined;
      }
      return true;
    });
    const quorum = Math.floor(sentinelCount / 2) + 1;
    sentinels.push(
      ...(await startAll(
        Array.from({ length: sentinelCount }, (_, i) => join(dir, `sentinel-${i}`)),
        () => [
          `sentinel monitor ${name} 127.0.0.1 ${masterPort} ${quorum}`,
          `sentinel down-after-milliseconds ${name} ${o.downAfterMs ?? 1_000}`,
          `sentinel failover-timeout ${name} ${o.failoverTimeoutMs ?? 6_000}`,
          `sentinel parallel-syncs ${name} 1`,
        ],
        true,
      )),
    );
  } catch (e) {
    await stop();
    throw e;
  }
  const byPort = (port: number): TopologyNode | undefined => servers.find((n) => n.port === port);
  const agreed = async (): Promise<TopologyNode | undefined> => {
    let port: number | undefined;
    for (const s of sentinels.filter(alive)) {
      const out = await cli(s.port, ['sentinel', 'get-master-addr-by-name', name]);
      const p = Number(out?.trim().split('\n')[1]);
      if (!Number.isInteger(p) || (port !== undefined && p !== port)) return undefined;
      port = p;
    }
    const n = port === undefined ? undefined : byPort(port);
    return n !== undefined && alive(n) ? n : undefined;
  };
  const group: RedisSentinelGroup = {
    name,
    servers,
    sentinels,
    config: { sentinel: { sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name } },
    master: (timeoutMs = 30_000) => until('the sentinels to agree on a live master', timeoutMs, agreed),
    async waitMaster(w = {}) {
      return until(
        `a new master${w.notPort === undefined ? '' : ` other than ${w.notPort}`}${w.minReplicas === undefined ? '' : ` with ${w.minReplicas} linked replicas`}`,
        w.timeoutMs ?? 30_000,
        async () => {
          const m = await agreed();
          if (m === undefined || m.port === w.notPort) return undefined;
          const info = await cli(m.port, ['info', 'replication']);
          if (info === undefined || field(info, 'role') !== 'master') return undefined;
          if (w.minReplicas !== undefined) {
            let linked = 0;
            for (const r of servers.filter((s) => s !== m && alive(s))) {
              const ri = await cli(r.port, ['info', 'replication']);
              if (ri !== undefined && field(ri, 'master_port') === String(m.port) && field(ri, 'master_link_status') === 'up') linked++;
            }
            if (linked < w.minReplicas) return undefined;
          }
          return m;
        },
        async () => (await Promise.all(sentinels.map(async (s) => `sentinel ${s.port}: ${(await cli(s.port, ['sentinel', 'master', name]))?.replace(/\n/g, ' ') ?? '(no answer)'}`))).join('\n'),
      );
    },
    stop,
  };
  try {
    await until(
      `${sentinelCount} sentinels to agree on the master and know ${replicaCount} replicas`,
      readyMs,
      async () => {
        if ((await agreed())?.port !== servers[0]!.port) return undefined;
        for (const s of sentinels) {
          const m = await cli(s.port, ['sentinel', 'master', name]);
          if (m === undefined) return undefined;
          const kv = m.trim().split('\n');
          const get = (k: string): string | undefined => kv[kv.indexOf(k) + 1];
          if (Number(get('num-slaves')) !== replicaCount || Number(get('num-other-sentinels')) !== sentinelCount - 1) return undefined;
          if (get('flags') !== 'master') return undefined;
        }
        return true;
      },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return group;
}
