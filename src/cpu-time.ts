// CPU-time clocks for the limits that decide a verdict. A wall-clock limit depends on how busy the
// machine is (another process on the same cores stretches it at will), so a benign file could be
// judged by the machine's load; CPU time is what the work itself costs. Wall-clock time is kept
// only as a hang guard, WALL_HANG_GUARD_FACTOR times the CPU budget it backs up.
import { readFileSync, readlinkSync } from 'node:fs';

/**
 * Wall-clock hang guards are this many times the CPU budget they back up, and never under
 * HANG_GUARD_MIN_MS: reached only by work stuck without using the CPU, not by load. Measured: with
 * 4 CPU hogs beside other helpers' tests on a 2-core machine (load average ~22) the h5wasm worker
 * got under a tenth of a core, and a guard of 10 x 3 s stopped it after 1.3 s of CPU.
 */
export const WALL_HANG_GUARD_FACTOR = 10;
export const HANG_GUARD_MIN_MS = 10 * 60 * 1000;

/** The wall-clock hang guard (ms) behind a CPU budget of `cpuBudgetMs`. */
export function hangGuardMs(cpuBudgetMs: number): number {
  return Math.max(HANG_GUARD_MIN_MS, cpuBudgetMs * WALL_HANG_GUARD_FACTOR);
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux: /proc/*/stat times are in 1/100 s

function statCpuMs(path: string): number | undefined {
  try {
    const stat = readFileSync(path, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? (ticks * 1000) / TICKS_PER_SECOND : undefined;
  } catch {
    return undefined;
  }
}

let threadClock: boolean | undefined;

/**
 * CPU milliseconds the calling thread has used (user + system; 10 ms resolution), for synchronous
 * work with a budget (the static pickle pass, the GGUF header walk). Other threads of the process
 * (a parser worker, libuv's pool) are not counted. Where /proc/thread-self is missing (not Linux),
 * the whole process's CPU time: stricter, still independent of other processes.
 */
export function threadCpuMs(): number {
  if (threadClock !== false) {
    const ms = statCpuMs('/proc/thread-self/stat');
    threadClock = ms !== undefined;
    if (ms !== undefined) return ms;
  }
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** This thread's id as the kernel knows it (for another thread to read its CPU time), if it can be told. */
export function currentThreadId(): number | undefined {
  try {
    const m = /task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU milliseconds used so far by thread `tid` of this process, or undefined when it cannot be read. */
export function threadCpuMsOf(tid: number): number | undefined {
  return statCpuMs(`/proc/self/task/${tid}/stat`);
}

/** CPU milliseconds (user + system, every thread) this process has used since `since` (process.cpuUsage()). */
export function cpuMsSince(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}
