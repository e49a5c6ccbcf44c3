/** CPU time of processes, to say which process a benchmark's time went to. Linux only (/proc). */
import { readFileSync } from 'node:fs';

// USER_HZ: the unit of utime/stime in /proc/PID/stat. 100 on every Linux architecture that
// Node supports; `getconf CLK_TCK` would need a process to ask.
const TICKS_PER_SECOND = 100;

/** user + system CPU milliseconds a process has used so far, or undefined when it is gone. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** This process's CPU milliseconds (finer than /proc). */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Busy and total CPU milliseconds of the whole machine so far (all cores), from /proc/stat: what
 * other processes took while a benchmark ran is total busy minus the benchmark's own.
 */
export function machineCpuMs(): { readonly busy: number; readonly total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guests are in user).
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const busy = user! + nice! + system! + irq! + softirq! + steal!;
  return { busy: (busy * 1000) / TICKS_PER_SECOND, total: ((busy + idle! + iowait!) * 1000) / TICKS_PER_SECOND };
}
