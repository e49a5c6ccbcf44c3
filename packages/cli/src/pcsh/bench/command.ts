import { CliError } from '../../common/errors.js';
import { parseDurationArg, printJson, writeOut } from '../../common/output.js';
import { dialProxy, proxyIdentity } from '../proxy-ssh.js';
import { defaultLogin } from '../ssh.js';
import { runOpenLoop, runSession, sessionCount } from './engine.js';
import { formatReport, summarizeRun, type BenchReport } from './stats.js';

/*
 * `pcsh bench [login@]host [command]`: load through the proxy as `tsh bench ssh` does, with the
 * user's own certificate (read once; every session is a fresh SSH connection to the proxy
 * naming login%host). Failures are counted and grouped, never thrown: a bench against a host
 * that refuses everyone reports N failures with the reason and exits 1.
 */

export interface BenchCommandOptions {
  readonly profile?: string;
  readonly proxy?: string;
  readonly rate?: string;
  readonly duration?: string;
  readonly interactive?: boolean;
  readonly concurrencyLimit?: string;
  readonly json?: boolean;
}

function positive(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new CliError('ERR_USAGE', `${what}: expected a positive number, got ${JSON.stringify(text)}`);
  return n;
}

export async function bench(o: BenchCommandOptions, destination: string, command: readonly string[]): Promise<BenchReport> {
  const rate = positive(o.rate ?? '10', '--rate');
  const durationMs = parseDurationArg(o.duration ?? '30s', '--duration') * 1000;
  const limit = o.concurrencyLimit === undefined ? undefined : Math.floor(positive(o.concurrencyLimit, '--concurrency-limit'));
  if (sessionCount(rate, durationMs) > 1_000_000) throw new CliError('ERR_USAGE', '--rate x --duration: more than a million sessions');
  const id = await proxyIdentity({ ...(o.profile === undefined ? {} : { profile: o.profile }), ...(o.proxy === undefined ? {} : { proxy: o.proxy }) });
  const at = destination.lastIndexOf('@');
  const login = at > 0 ? destination.slice(0, at) : defaultLogin(id.cert);
  const host = destination.slice(at + 1);
  if (host === '' || login === undefined) throw new CliError('ERR_USAGE', `expected [login@]host, got ${JSON.stringify(destination)}`);
  const username = `${login}%${host}`;
  const spec = {
    dial: () => dialProxy(id, { username }),
    command: command.length === 0 ? 'true' : command.join(' '),
    interactive: o.interactive === true,
  };
  const { outcomes, elapsedMs } = await runOpenLoop({
    ratePerSecond: rate,
    durationMs,
    run: (opened) => runSession(spec, opened),
    ...(limit === undefined ? {} : { concurrencyLimit: limit }),
  });
  const report = summarizeRun(outcomes, { requestedRate: rate, elapsedMs });
  if (o.json === true) printJson(report);
  else writeOut(formatReport(report));
  if (report.failed > 0) process.exitCode = 1;
  return report;
}
