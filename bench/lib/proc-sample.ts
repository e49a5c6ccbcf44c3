/** Memory and descriptors of processes from /proc (Linux), for the load and soak scripts. */
import { readdirSync, readFileSync } from 'node:fs';
import { processCpuMs } from './proc-cpu.js';

function statusField(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Resident set size in bytes, or undefined when the process is gone. */
export const rssBytes = (pid: number): number | undefined => statusField(pid, 'VmRSS');

/** Open file descriptors (entries of /proc/PID/fd). */
export function openFds(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/**
 * Proportional set size in bytes (/proc/PID/smaps_rollup): shared pages divided among the
 * processes sharing them, so the PSS of a forking server's processes adds up to its real
 * memory, where their RSS would count the shared binary and libraries once per process.
 */
export function pssBytes(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** `pid` and all its descendants now (one scan of /proc). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // Gone between readdir and read.
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** Summed PSS of a process tree (a forking server and its sessions). */
export function treePssBytes(pid: number): { bytes: number; processes: number } {
  let bytes = 0;
  const tree = processTree(pid);
  for (const p of tree) bytes += pssBytes(p) ?? 0;
  return { bytes, processes: tree.length };
}

/** The sshd master serving `configPath` (its title keeps the -f path; its session processes' do not). */
export function sshdPid(configPath: string): number {
  const ppids = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (!readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(configPath)) continue;
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      ppids.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const master = [...ppids].find(([, ppid]) => !ppids.has(ppid));
  if (master === undefined) throw new Error(`no sshd running with ${configPath}`);
  return master[0];
}

/** CPU milliseconds of `pid` and its living descendants. */
export const treeCpuMs = (pid: number): number => processTree(pid).reduce((s, p) => s + (processCpuMs(p) ?? 0), 0);
