// Work bounds that hold on a busy machine. A test never asserts wall-clock time (another process
// on the same cores stretches it at will); it bounds CPU time, which load barely moves, or counts.
import { readFileSync } from 'node:fs';

/**
 * Hang guard for a child process or a wait in a test: long enough that only a hang reaches it on
 * a loaded 2-core machine (a cold Pyodide snapshot build there has taken 77 s of wall time), so
 * it is a timeout that catches hangs, never a speed goal.
 */
export const HANG_GUARD_MS = 10 * 60 * 1000;

const TICKS_PER_SECOND = 100; // USER_HZ on Linux: /proc/*/stat times are in 1/100 s

/** CPU milliseconds (user + system) this process spent running `fn`. */
export function cpuMsOf(fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
}

/** Async form of cpuMsOf; only this process's threads are counted. */
export async function cpuMsOfAsync(fn: () => Promise<unknown>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
}

/** CPU milliseconds of process `pid` so far (utime + stime), or 0 when it is gone. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** CPU milliseconds of this process's reaped children (cutime + cstime): wraps spawnSync calls. */
export function reapedChildrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / TICKS_PER_SECOND;
}
