/** Closed-loop HTTPS load: N clients, each sending its next request when the last one answered. */
import { Agent, request } from 'node:https';

export interface PinnedAgentOptions {
  /** The server's certificate (PEM), trusted as its own anchor. */
  readonly certPem: string;
  /** SHA-256 fingerprint that certificate must have (what the service printed). */
  readonly fingerprint: string;
  readonly maxSockets: number;
}

/**
 * A keep-alive agent that trusts exactly the pinned certificate. AuthClient pins on a fresh
 * socket per request; a client minting thousands of certificates keeps its connections, so the
 * benchmark measures issuance and not TLS handshakes.
 */
export function pinnedAgent(opts: PinnedAgentOptions): Agent {
  return new Agent({
    keepAlive: true,
    maxSockets: opts.maxSockets,
    maxFreeSockets: opts.maxSockets,
    ca: opts.certPem,
    checkServerIdentity: (_host, cert) =>
      cert.fingerprint256 === opts.fingerprint ? undefined : new Error(`certificate ${cert.fingerprint256} is not the pinned ${opts.fingerprint}`),
  });
}

export interface LoadOptions {
  readonly url: URL;
  readonly agent: Agent;
  readonly headers: Readonly<Record<string, string>>;
  /** The body of the i-th request (each may differ: a fresh public key per certificate). */
  readonly body: (i: number) => string;
  readonly concurrency: number;
  /** Requests answered before the window opens are not counted (JIT, connection set-up). */
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Checks an answer; a false return counts as an error. */
  readonly accept?: (status: number, body: Buffer) => boolean;
}

export interface LoadResult {
  /** Successful requests answered inside the window. */
  readonly completed: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly windowMs: number;
  readonly perSecond: number;
  /** Latency of each request answered inside the window, in ms, sorted. */
  readonly latencies: Float64Array;
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

function send(opts: LoadOptions, body: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(body);
    const req = request(
      opts.url,
      {
        method: 'POST',
        agent: opts.agent,
        headers: { ...opts.headers, 'content-type': 'application/json', 'content-length': String(payload.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      },
    );
    // A lost answer must show up as an error, not as a benchmark that never ends.
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end(payload);
  });
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const start = performance.now();
  const windowStart = start + opts.warmupMs;
  const windowEnd = windowStart + opts.durationMs;
  const latencies: number[] = [];
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;

  const client = async (): Promise<void> => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= windowEnd) return;
      const i = next++;
      let ok = false;
      try {
        const res = await send(opts, opts.body(i));
        ok = opts.accept === undefined ? res.status === 200 : opts.accept(res.status, res.body);
        if (!ok) firstError ??= `HTTP ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`;
      } catch (e) {
        firstError ??= (e as Error).message;
      }
      const t1 = performance.now();
      // Counted when answered inside the window, so the window's rate is what the server kept up.
      if (t1 < windowStart || t1 >= windowEnd) continue;
      if (ok) {
        completed++;
        latencies.push(t1 - t0);
      } else errors++;
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, client));
  const sorted = Float64Array.from(latencies).sort();
  return { completed, errors, firstError, windowMs: opts.durationMs, perSecond: (completed * 1000) / opts.durationMs, latencies: sorted };
}
