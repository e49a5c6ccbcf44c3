import { fileURLToPath } from 'node:url';
import { CliError } from '../common/errors.js';
import { formatLabels, parseLabelArgs, printJson, printTable, writeOut } from '../common/output.js';
import { loggedIn } from '../common/session.js';

/*
 * pcsh ls (the hosts the user's roles reach) and pcsh config (the ssh_config block that makes
 * plain `ssh web01` go through pcsh). auth lists the hosts; label filters are applied here,
 * since a label selector is what a person types, not what auth indexes.
 */

export interface ReachableHost {
  readonly name: string;
  readonly names: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  readonly logins: readonly string[];
}

function matches(host: ReachableHost, want: Readonly<Record<string, string>>): boolean {
  return Object.entries(want).every(([k, v]) => host.labels[k] === v);
}

export async function reachableHosts(profileName: string | undefined, labelArgs: readonly string[] = []): Promise<ReachableHost[]> {
  const want = parseLabelArgs(labelArgs);
  const { api } = loggedIn(profileName);
  const { hosts } = await api.call<{ hosts: ReachableHost[] }>('GET', '/v1/hosts');
  return hosts.filter((h) => matches(h, want)).sort((a, b) => a.name.localeCompare(b.name));
}

export async function listHosts(opts: { profile?: string; json?: boolean }, labels: readonly string[]): Promise<void> {
  const hosts = await reachableHosts(opts.profile, labels);
  if (opts.json === true) {
    printJson(hosts);
    return;
  }
  printTable(
    ['Host', 'Labels', 'Logins'],
    hosts.map((h) => [h.name, formatLabels(h.labels), h.logins.join(',')]),
  );
}

/** The pcsh users' shells run: this package's bin, by absolute path, so ssh needs no PATH. */
function pcshCommand(): string {
  return fileURLToPath(new URL('../../bin/pcsh', import.meta.url));
}

const quoteIfNeeded = (s: string): string => (/[\s"]/.test(s) ? `"${s.replace(/"/g, '\\"')}"` : s);

export async function printSshConfig(opts: { profile?: string; pattern?: boolean }, only: readonly string[]): Promise<void> {
  const { store, profile } = loggedIn(opts.profile);
  const keys = store.keyPaths(profile.name);
  const profileFlag = opts.profile === undefined ? '' : ` --profile ${opts.profile}`;
  const common = [
    `  ProxyCommand ${quoteIfNeeded(pcshCommand())}${profileFlag} proxy ssh %r@%h:%p`,
    `  UserKnownHostsFile ${quoteIfNeeded(store.knownHostsPath())}`,
    '  StrictHostKeyChecking yes',
    `  IdentityFile ${quoteIfNeeded(keys.privateKey)}`,
    `  CertificateFile ${quoteIfNeeded(keys.certificate)}`,
    '  IdentitiesOnly yes',
  ];
  const out = [`# Portcullis (${profile.authUrl}), from pcsh config; add it to ~/.ssh/config.`];
  if (opts.pattern === true) {
    out.push(`Host *.${profile.name}`, ...common);
  } else {
    let hosts = await reachableHosts(opts.profile);
    if (only.length > 0) {
      const missing = only.filter((n) => !hosts.some((h) => h.name === n || h.names.includes(n)));
      if (missing.length > 0) throw new CliError('ERR_NOT_FOUND', `no host ${missing.join(', ')} among the hosts you may reach (pcsh ls lists them)`);
      hosts = hosts.filter((h) => only.some((n) => h.name === n || h.names.includes(n)));
    }
    if (hosts.length === 0) throw new CliError('ERR_NOT_FOUND', `your roles reach no host yet; pcsh config --pattern prints a Host *.${profile.name} block instead`);
    const names = [...new Set(hosts.flatMap((h) => [h.name, ...h.names]))];
    out.push(`Host ${names.join(' ')}`, ...common);
  }
  writeOut(out.join('\n'));
}
