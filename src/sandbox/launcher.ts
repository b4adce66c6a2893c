/**
 * The one client of guard-exec's control channel, used by `guard run` (run.ts) and by the walled
 * unpickler workers (worker-launch.ts), so that a fix to the handshake reaches both.
 *
 *   launcherArgs()     the walls as guard-exec arguments
 *   policyFor()        the compiled filters for a profile (cached: ~20 ms of libseccomp each)
 *   frameFilters()     filters as guard-exec reads them: u32 count, then u32 length + bytes each
 *   readControl()      the lines guard-exec writes: L (walls up), E (a step failed), X (exit)
 *   startSupervisor()  takes the DNS sink sockets and the listener, starts the supervisor thread
 *   release()          "G": the target may execve
 *
 * native/exec/guard-exec.c documents the channel byte for byte.
 */
import type { Readable, Writable } from 'node:stream';
import { compilePolicy, supervisorPolicy, type CompiledPolicy } from './filter.js';
import type { NativeAddon, NativeEnd, NativeEvent, NativeSupervisor, SupervisorOptions } from './native.js';
import type { RlimitName, SandboxProfile } from './profile.js';

export interface AllowNet {
  host: string;
  port: number;
}

/** What a launch asks guard-exec for. Every policy choice is made by the caller. */
export interface LaunchPlan {
  profile: SandboxProfile;
  netns: boolean;
  dnsSink: boolean;
  netDeny: boolean;
  /** Landlock: write list, or undefined for writes everywhere ("/"). */
  write: readonly string[] | undefined;
  /** Landlock: read list, or undefined for reads everywhere. */
  read: readonly string[] | undefined;
  allowPorts: readonly number[];
  rlimits: Partial<Record<RlimitName, number>>;
  pidsMax?: number;
  pgroup?: boolean;
  keepCaps?: boolean;
  keepFds?: readonly number[];
  /** A memory cgroup ceiling in bytes (RLIMIT_DATA where no cgroup can be had). */
  memoryMax?: number;
  /**
   * Private tmpfs mounts (a mount namespace) of `size` bytes each. `orDeny` paths are left out of
   * the write list when no private mount can be made (a shared /dev/shm would outlive the run).
   */
  tmpfs?: { paths: readonly string[]; orDeny?: readonly string[]; size: number };
  /** Keep guard-exec (and the run's mount namespace) alive after "X" until the channel closes. */
  hold?: boolean;
  /**
   * Without CAP_SYS_ADMIN, make the network and mount namespaces inside a user namespace of the
   * run's own (guard-exec's step_user_namespace): as root in a container the runtime gave no
   * SYS_ADMIN, where its seccomp profile allows unshare(CLONE_NEWUSER) (podman's default does).
   */
  userns?: boolean;
}

export function launcherArgs(p: LaunchPlan): string[] {
  const args = ['--ctl', '3', '--listener-sock', '4'];
  for (const fd of p.keepFds ?? []) args.push('--keep-fd', String(fd));
  if (p.netns) args.push('--netns');
  if (p.netns && p.dnsSink) args.push('--dns-sinkhole');
  if (p.write !== undefined || p.read !== undefined || p.netDeny) {
    args.push('--landlock');
    for (const w of p.write ?? ['/']) args.push('--write', w);
    if (p.read !== undefined) for (const r of p.read) args.push('--read', r);
  }
  if (p.netDeny) {
    args.push('--landlock-net', '--landlock-scope');
    for (const port of p.allowPorts) if (port) args.push('--allow-port', String(port));
  }
  for (const [k, v] of Object.entries(p.rlimits)) if (v !== undefined) args.push('--rlimit', `${k}=${v}`);
  if (p.pidsMax) args.push('--pids-max', String(p.pidsMax));
  if (p.memoryMax) args.push('--memory-max', String(p.memoryMax));
  if (p.tmpfs) {
    for (const t of p.tmpfs.paths) args.push('--tmpfs', `${t}=${p.tmpfs.size}`);
    for (const t of p.tmpfs.orDeny ?? []) args.push('--tmpfs-or-deny', `${t}=${p.tmpfs.size}`);
  }
  if (p.hold) args.push('--hold');
  if (p.pgroup) args.push('--pgroup');
  if (p.keepCaps) args.push('--keep-caps');
  if (p.userns) args.push('--userns');
  return args;
}

const policies = new Map<string, CompiledPolicy>();
/** Profiles compiled per process before the cache starts over. */
const POLICY_CACHE_MAX = 16;

/** The filters for `profile`; the same profile compiles to the same filters, so they are cached. */
export function policyFor(native: NativeAddon, profile: SandboxProfile): CompiledPolicy {
  const key = JSON.stringify(profile, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  let p = policies.get(key);
  if (!p) {
    p = compilePolicy(native, profile, { reportNetwork: true, reportExec: true, reportWrites: true });
    if (policies.size >= POLICY_CACHE_MAX) policies.clear();
    policies.set(key, p);
  }
  return p;
}

export function frameFilters(filters: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]!.writeUInt32LE(filters.length);
  for (const f of filters) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(f.length);
    parts.push(len, f);
  }
  return Buffer.concat(parts);
}

/** "L": the walls are up and the listener is on its way. */
export interface LauncherReady {
  pid: number;
  netns: boolean;
  landlock: number;
  pidsCgroup: boolean;
  sinks: number;
  /** `cgroup` (memory cgroup), `rlimit` (RLIMIT_DATA), or `none`. */
  memory: 'cgroup' | 'rlimit' | 'none';
  /** The private tmpfs mounts are in place (a mount namespace of the run's own). */
  privateTmp: boolean;
  /** The namespaces were made inside a user namespace of the run's own (no CAP_SYS_ADMIN here). */
  userns: boolean;
  /** pidfd_getfd works here (the supervisor makes permitted connects, binds and sends with it); true when guard-exec does not say. */
  getfd: boolean;
}

/** "X": the target was reaped, with what guard-exec saw of its limits. */
export interface LauncherExit {
  code: number;
  signal: number;
  /** Kills by the memory cgroup's OOM killer (cgroup v2 memory.events oom_kill; v1: failcnt > 0 counts as 1). */
  oomKills: number;
  memoryPeak: number;
  /** Per private tmpfs: bytes used and size at exit. */
  tmpfs: { path: string; used: number; size: number }[];
}

export interface ControlHandlers {
  onReady(r: LauncherReady): void;
  onSetupError(step: string, errno: number): void;
  onExit?(x: LauncherExit): void;
}

/** Longest control line taken; guard-exec's are short, so a longer one is an error, not a buffer to grow. */
const MAX_LINE = 64 * 1024;

function fields(parts: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of parts) {
    const eq = kv.indexOf('=');
    if (eq > 0) m.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return m;
}

/** Parses one control line; unknown lines are ignored (an older or newer guard-exec). */
export function parseControlLine(line: string, h: ControlHandlers): void {
  const parts = line.split(' ');
  if (parts[0] === 'L') {
    const f = fields(parts.slice(3));
    const mem = f.get('mem');
    h.onReady({
      pid: Number(parts[1]),
      netns: f.get('netns') === '1',
      landlock: Number(f.get('landlock') ?? 0) || 0,
      pidsCgroup: f.get('pids') === '1',
      sinks: Math.min(Number(f.get('sinks') ?? 0) || 0, 4),
      memory: mem === 'cgroup' || mem === 'rlimit' ? mem : 'none',
      privateTmp: f.get('tmp') === '1',
      userns: f.get('userns') === '1',
      getfd: f.get('getfd') !== '0',
    });
  } else if (parts[0] === 'E') {
    h.onSetupError(parts.slice(1, -1).join(' '), Number(parts[parts.length - 1]));
  } else if (parts[0] === 'X') {
    const f = fields(parts.slice(3));
    const tmpfs: LauncherExit['tmpfs'] = [];
    for (const [k, v] of f) {
      if (!k.startsWith('tmpfs')) continue;
      const m = /^(\d+)\/(\d+):(.*)$/.exec(v);
      if (m) tmpfs.push({ used: Number(m[1]), size: Number(m[2]), path: decodeURIComponent(m[3]!) });
    }
    h.onExit?.({ code: Number(parts[1]), signal: Number(parts[2]), oomKills: Number(f.get('oom') ?? 0) || 0, memoryPeak: Number(f.get('mempeak') ?? 0) || 0, tmpfs });
  }
}

/** Reads guard-exec's lines from the control socket. */
export function readControl(ctl: Readable, h: ControlHandlers): void {
  let buf = '';
  ctl.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      parseControlLine(line, h);
    }
    if (buf.length > MAX_LINE) {
      buf = '';
      h.onSetupError('handshake', 71 /* EPROTO */);
    }
  });
  ctl.on('error', () => {});
}

/** "G": the supervisor holds the listener; the target may execve. */
export function release(ctl: Writable): void {
  ctl.write('G');
}

function ipBytes(host: string): Buffer | undefined {
  if (host === '*') return undefined;
  if (!host.includes(':')) return Buffer.from(host.split('.').map(Number));
  const [head = '', tail = ''] = host.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = host.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(Number.parseInt(g || '0', 16), i * 2));
  return b;
}

/** What the supervisor enforces, besides the compiled filters. */
export interface SupervisorPlan {
  profile: SandboxProfile;
  policy: CompiledPolicy;
  netDeny: boolean;
  allowNet: readonly AllowNet[];
  execMode: 0 | 1 | 2;
  writeCheck: boolean;
  write: readonly string[];
}

/**
 * Receives the DNS sink sockets (they come first) and the listener from `listenerSock`, and starts
 * the supervisor thread on them. The fds are closed here whatever happens: the addon keeps its own.
 * `onEvent` must not throw (it runs in the addon's thread-safe call).
 */
export function startSupervisor(native: NativeAddon, plan: SupervisorPlan, ready: LauncherReady, listenerSock: number, onEvent: (ev: NativeEvent | NativeEnd) => void): { supervisor: NativeSupervisor; dnsSink: boolean } {
  const sinkholeFds: number[] = [];
  let listenerFd = -1;
  try {
    for (let i = 0; i < ready.sinks; i++) sinkholeFds.push(native.recvFd({ fd: listenerSock, timeoutMs: 10_000 }));
    listenerFd = native.recvFd({ fd: listenerSock, timeoutMs: 10_000 });
    const opts: SupervisorOptions = {
      listenerFd,
      sinkholeFds,
      firstExecPid: ready.pid,
      netDeny: plan.netDeny,
      fakeDns: true,
      unixDeny: plan.netDeny,
      netAllow: plan.allowNet.map((a) => {
        const address = ipBytes(a.host);
        return { family: a.host.includes(':') ? 6 : 4, ...(address ? { address } : {}), port: a.port };
      }),
      execMode: plan.execMode,
      writeCheck: plan.writeCheck,
      writeAllowed: [...plan.write],
      unixAllowed: plan.profile.modelguard.unixSockets,
      ...supervisorPolicy(plan.policy, ready.landlock),
      onEvent,
    };
    const supervisor = new native.Supervisor(opts);
    return { supervisor, dnsSink: sinkholeFds.length > 0 };
  } finally {
    if (listenerFd >= 0) native.closeFd(listenerFd);
    for (const fd of sinkholeFds) native.closeFd(fd);
  }
}

/** Syscall numbers to names, memoized (the addon asks libseccomp each time). */
export function syscallNamer(native: NativeAddon): (nr: number) => string {
  const names = new Map<number, string>();
  return (nr) => {
    let n = names.get(nr);
    if (n === undefined) names.set(nr, (n = native.syscallName(nr) ?? `syscall_${nr}`));
    return n;
  };
}

const ERRNO: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 12: 'ENOMEM', 13: 'EACCES', 16: 'EBUSY', 22: 'EINVAL', 38: 'ENOSYS', 71: 'EPROTO', 95: 'EOPNOTSUPP' };

export function errnoText(n: number): string {
  return ERRNO[n] ?? `errno ${n}`;
}
