// CPU hogs for tests that must hold on a busy machine: processes spinning on every core, bounded
// in time (they stop by themselves) and killed by the test afterwards.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { processCpuMs } from './budget.js';

/** Hogs run at most this long (a bound, should the test's own cleanup never run). */
const HOG_BOUND_MS = 300_000;

/** Processes spinning on every core (twice over), bounded in time; kill them with stopHogs. */
export function startHogs(): ChildProcess[] {
  const n = 2 * availableParallelism();
  const code = `const end = Date.now() + ${HOG_BOUND_MS}; while (Date.now() < end);`;
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', code], { stdio: 'ignore' }));
}

/** Kills the hogs; resolves to the CPU ms they had used (proof that they ran). */
export async function stopHogs(hogs: ChildProcess[]): Promise<number> {
  const used = hogs.reduce((sum, h) => sum + processCpuMs(h.pid as number), 0);
  const gone = hogs.filter((h) => h.exitCode !== null || h.signalCode !== null);
  if (hogs.length > 0 && used === 0) console.log(`hogs: no CPU read for ${hogs.map((h) => h.pid).join(', ')}; ${gone.length} had exited (${gone.map((h) => h.exitCode ?? h.signalCode).join(', ')})`);
  await Promise.all(
    hogs.map(
      (h) =>
        new Promise<void>((resolve) => {
          if (h.exitCode !== null || h.signalCode !== null) return resolve();
          h.once('exit', () => resolve());
          h.kill('SIGKILL');
        }),
    ),
  );
  return used;
}

/** CPU ms of `pid` and every process below it (a walled worker is guard-exec's child). */
export function treeCpuMs(pid: number): number {
  let total = processCpuMs(pid);
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return total;
  }
  for (const t of tasks) {
    let children = '';
    try {
      children = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of children.split(' ').filter(Boolean)) total += treeCpuMs(Number(c));
  }
  return total;
}

