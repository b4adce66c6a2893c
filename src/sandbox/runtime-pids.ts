/**
 * The process bound a container runtime set (`--pids-limit`, a pod's pid limit): pids.max of the
 * cgroup this process is in, or of the nearest ancestor that has one. When guard cannot make a pids
 * cgroup of its own (a container's /sys/fs/cgroup is read-only unless --privileged) and runs as
 * root (whom RLIMIT_NPROC does not bind), this is the bound that holds a fork bomb: the runtime's
 * cgroup counts guard, the command and everything it starts together.
 *
 * cgroup v1 (`N:pids:/path`) and v2 (`0::/path`) alike. Inside a container the cgroup folder is
 * usually mounted at the hierarchy's root (/sys/fs/cgroup/pids or /sys/fs/cgroup), while
 * /proc/self/cgroup names the host's path: both places are tried, nearest first.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Folders to read pids.max from, nearest first, for the /proc/self/cgroup text given. */
export function pidsMaxCandidates(procCgroup: string, cgroupRoot = '/sys/fs/cgroup'): string[] {
  const out: string[] = [];
  for (const line of procCgroup.split('\n')) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line.trim());
    if (!m) continue;
    const controllers = m[1]!.split(',');
    const mount = m[1] === '' ? cgroupRoot : controllers.includes('pids') ? join(cgroupRoot, 'pids') : undefined;
    if (!mount) continue;
    for (let p = m[2]!; ; p = dirname(p)) {
      out.push(p === '/' ? mount : join(mount, p));
      if (p === '/') break;
    }
  }
  return [...new Set(out)];
}

/** The runtime's bound on this process's tasks, or null when there is none (`max`, or no pids controller). */
export function runtimePidsMax(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | null {
  let text: string;
  try {
    text = read('/proc/self/cgroup');
  } catch {
    return null;
  }
  let best: number | null = null;
  for (const dir of pidsMaxCandidates(text)) {
    let v: string;
    try {
      v = read(join(dir, 'pids.max')).trim();
    } catch {
      continue;
    }
    const n = Number(v);
    if (/^\d+$/.test(v) && n > 0) best = best === null ? n : Math.min(best, n);
  }
  return best;
}
