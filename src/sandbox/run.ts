/**
 * run(): one command behind the walls, with every attempt it made.
 *
 *   profile → compilePolicy (two BPF programs) → execa spawns guard-exec → guard-exec's target
 *   raises the walls and installs the filters → the listener reaches the addon (pidfd_getfd) →
 *   the supervisor thread answers notifications and streams events → the command exits →
 *   RunResult (the report's JSON contract).
 */
import { lstatSync, mkdtempSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { constants, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { execa, type Options as ExecaOptions } from 'execa';
import { GuardError } from '../errors.js';
import type { CompiledPolicy } from './filter.js';
import { guardExecPath, loadNative, type NativeEnd, type NativeEvent, type NativeSupervisor } from './native.js';
import { loadProfile, type BuiltinProfile, type RlimitName, type SandboxProfile } from './profile.js';
import { EventLog, kindOf, toRunEvent, type RunEvent, type RunSummary } from './events.js';
import { allowlistedEnv, heldBack, WALLED_ENV, type EnvSpec } from './env.js';
import { errnoText, frameFilters, launcherArgs, policyFor, readControl, release, startSupervisor, syscallNamer, type AllowNet, type LauncherExit, type LauncherReady, type LaunchPlan } from './launcher.js';
import { commandReadList, SYSTEM_READ_TOKEN, whichCommand } from './reads.js';
import { runtimePidsMax } from './runtime-pids.js';

export type { RunEvent, RunSummary, Egress, EventAction } from './events.js';

/**
 * Distinct attempts of each kind kept in a result (identical attempts fold into one event with a
 * count); further distinct ones are counted in `summary.unlisted` and still streamed to onEvent.
 */
export { MAX_DISTINCT_PER_KIND as MAX_EVENTS } from './events.js';

/** Memory ceiling when none is given: this share of the machine's memory. */
export const DEFAULT_MEMORY_FRACTION = 0.75;
/** Disk quota when none is given: the private /tmp and /dev/shm may each hold this much (and no file may grow beyond it). */
export const DEFAULT_DISK_BYTES = 4 * 1024 ** 3;
/** ...but never more than this share of memory: the private folders are tmpfs, held in memory. */
export const DEFAULT_DISK_MEMORY_FRACTION = 0.25;
/** Symbolic links followed when telling where a reported path led (the kernel's own limit). */
const MAX_SYMLINKS = 40;

/** Signals forwarded to the command when `forwardSignals` is on. */
export const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;

/** Writable by default under every profile that denies writes: devices a program opens for writing. */
export const DEFAULT_WRITABLE = ['/dev/null', '/dev/zero', '/dev/full', '/dev/tty', '/dev/pts', '/dev/ptmx', '/dev/shm', '/dev/urandom', '/dev/random'];

export type { AllowNet } from './launcher.js';

export interface RunOptions {
  /** Built-in profile name or path to a profile JSON file (default `inference`). */
  profile?: BuiltinProfile | (string & {}) | SandboxProfile;
  /** Allow connections to these destinations (IP literal or `*`; port 0 = any). */
  allowNet?: readonly (string | AllowNet)[];
  /** Extra writable folders. */
  write?: readonly string[];
  /** Report everything, deny only what is always denied. */
  audit?: boolean;
  /** Called for every event as it happens. */
  onEvent?: (event: RunEvent) => void;
  /** Forward SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH to the command. */
  forwardSignals?: boolean;
  /** Signals go to the command's process group instead of the command. */
  signalGroup?: boolean;
  /** Extra folders or files the command may read (reads are confined when the profile says "$SYSTEM"). */
  read?: readonly string[];
  cwd?: string;
  /**
   * The environment the command's is taken from (default process.env). Only its allowlisted part
   * passes (see env.ts); name others in `passEnv`.
   */
  env?: Record<string, string | undefined>;
  /** `NAME` (passed from `env` whatever it looks like) or `NAME=VALUE`: the `--env` flag. */
  passEnv?: readonly (string | EnvSpec)[];
  /** Memory ceiling in bytes (default DEFAULT_MEMORY_FRACTION of the machine's); 0: none. */
  memory?: number;
  /** Disk quota in bytes for the private /tmp and /dev/shm, and the largest file the command may write; 0: none. */
  disk?: number;
  /** stdio of the command (default inherit). */
  stdio?: 'inherit' | 'pipe' | 'ignore';
  /** Kill the command after this many milliseconds. */
  timeoutMs?: number;
  /** Try a fresh network namespace first (default true). */
  netns?: boolean;
  /** Keep at most this many events in the result (default MAX_EVENTS). */
  maxEvents?: number;
  /** Called with the launcher's pid once it is spawned (the only child Node starts for a run). */
  onSpawn?: (pid: number) => void;
  /** Called once the walls are up, just before the command starts, with what they are (`guard entrypoint` prints them then). */
  onWalls?: (walls: RunWalls) => void;
}

export interface RunWalls {
  /** The same two fields every Report's walls carry: the command ran behind the kernel walls, no isolate. */
  mode: 'walled';
  isolate: false;
  seccomp: string;
  notify: boolean;
  noNewPrivs: boolean;
  architectures: string;
  /** `netns` (fresh namespace), `seccomp+landlock`, `seccomp`, or `open`. */
  network: string;
  /** DNS queries to any resolver land in the supervisor's sink (fresh namespace only), whichever call sends them. */
  dnsSink: boolean;
  /** Landlock ABI in force, 0 when unavailable. */
  landlock: number;
  landlockNet: boolean;
  rlimits: Partial<Record<RlimitName, number>>;
  pids: string | null;
  /** `dropped`: no capability survives the execve (bounding set cleared), `kept` otherwise. */
  capabilities: 'dropped' | 'kept';
  write: string[];
  /** What the command may read: a list (Landlock), or "everywhere". */
  read: string[] | 'everywhere';
  /** Environment variables passed, by name; the rest were held back (`envHeldBack` of them). */
  env: string[];
  envHeldBack: number;
  /** `private`: the run's own tmpfs /tmp ($TMPDIR) and /dev/shm, gone with it; `shared` otherwise. */
  tmp: 'private' | 'shared';
  /** The network and mount namespaces are inside a user namespace of the run's own (guard lacked CAP_SYS_ADMIN). */
  userNamespace: boolean;
  limits: { memory: number; memoryHow: 'cgroup' | 'rlimit' | 'none'; disk: number; text: string } | null;
  /** Walls the profile asked for that could not be had here, each with what would give it (`--cap-add …`). */
  unavailable: string[];
}

export interface RunResult {
  command: string[];
  profile: string;
  exitCode: number;
  signal: string | null;
  durationMs: number;
  walls: RunWalls;
  events: RunEvent[];
  summary: RunSummary;
  stdout?: string;
  stderr?: string;
  /** Limits the command ran into (memory ceiling, disk quota), in words. */
  limitsHit?: string[];
  failed?: boolean;
  shortMessage?: string;
}

/** A run that could not start: the result's fields plus `failed` and `shortMessage`. */
export class RunError extends GuardError {
  readonly result: RunResult;
  readonly failed = true;
  readonly shortMessage: string;
  constructor(message: string, result: RunResult, step: string, cause?: unknown) {
    super('SANDBOX_SETUP', message, { cause, context: { step } });
    this.name = 'RunError';
    this.result = { ...result, failed: true, shortMessage: message };
    this.shortMessage = message;
  }
}

function signalName(n: number): string {
  return Object.entries(constants.signals as Record<string, number>).find(([, v]) => v === n)?.[0] ?? `SIG${n}`;
}

/** Parses `HOST:PORT`, `[v6]:PORT`, `*:PORT`, `HOST:*`. */
export function parseAllowNet(spec: string): AllowNet {
  const m = /^\[([^\]]+)\]:(\d+|\*)$/.exec(spec) ?? /^([^:]+):(\d+|\*)$/.exec(spec);
  if (!m) throw new GuardError('USAGE', `--allow-net \`${spec}\`: expected HOST:PORT, [IPv6]:PORT or *:PORT`);
  const host = m[1]!;
  const port = m[2] === '*' ? 0 : Number(m[2]);
  if (host !== '*' && !isIP(host)) throw new GuardError('USAGE', `--allow-net \`${spec}\`: HOST must be an IP address or * (names are not resolved inside the sandbox)`);
  if (port > 65535) throw new GuardError('USAGE', `--allow-net \`${spec}\`: port out of range`);
  return { host, port };
}

function expandPath(p: string, vars: Record<string, string>): string {
  return p.replace(/\$\{?([A-Z_]+)\}?/g, (all, v: string) => vars[v] ?? all);
}

interface Settings {
  profile: SandboxProfile;
  netDeny: boolean;
  allowNet: AllowNet[];
  exec: 0 | 1 | 2;
  writeCheck: boolean;
  write: string[];
  /** Landlock read list; undefined: reads everywhere. */
  read: string[] | undefined;
  tmp: string;
  env: Record<string, string>;
  memory: number;
  disk: number;
}

/** `N`, `NK`, `NM`, `NG`, `NT` (powers of 1024; `KiB`… and `B` accepted), `0` for none. */
export function parseSize(spec: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(spec.trim());
  if (!m) throw new GuardError('USAGE', `${option} \`${spec}\`: expected a size such as 512M, 8G or 0 for none`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

function settle(command: readonly string[], options: RunOptions, profile: SandboxProfile, tmp: string): Settings {
  const mg = profile.modelguard;
  const audit = options.audit === true;
  const allowNet = (options.allowNet ?? []).map((a) => (typeof a === 'string' ? parseAllowNet(a) : a));
  const cwd = resolve(options.cwd ?? process.cwd());
  const source = options.env ?? process.env;
  const vars: Record<string, string> = { TMPDIR: tmp, HOME: source.HOME ?? process.env.HOME ?? '/root', CWD: cwd };
  const write = [...new Set([...mg.fs.write.map((p) => expandPath(p, vars)), ...(options.write ?? []).map((p) => resolve(p)), ...DEFAULT_WRITABLE])];
  const canon = write.map((p) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  });
  // The command's home is its own temporary folder unless the user passes HOME: caches land inside the quota, secrets stay out of sight.
  // WALLED_ENV last: a guard started inside sees the walls it is under (nested.ts), whatever the caller passed.
  const env: Record<string, string> = { HOME: tmp, ...allowlistedEnv(source, options.passEnv ?? []), TMPDIR: tmp, [WALLED_ENV]: profile.name };
  const allWrite = [...new Set([...write, ...canon])];
  let read: string[] | undefined;
  if (!mg.fs.read.includes('/') && !(options.read ?? []).includes('/')) {
    const listed: string[] = [];
    for (const r of mg.fs.read) {
      if (r === SYSTEM_READ_TOKEN) {
        const executable = whichCommand(command[0]!, env.PATH, cwd) ?? command[0]!;
        listed.push(...commandReadList({ executable, argv: command, cwd, ...(env.PYTHONPATH !== undefined ? { pythonPath: env.PYTHONPATH } : {}), home: vars.HOME, extra: options.read ?? [] }));
      } else listed.push(expandPath(r, vars));
    }
    read = [...new Set([...listed, ...(options.read ?? []).map((p) => resolve(cwd, p)), ...allWrite])];
  }
  const memory = options.memory ?? Math.floor(totalmem() * DEFAULT_MEMORY_FRACTION);
  const disk = options.disk ?? Math.min(DEFAULT_DISK_BYTES, Math.floor(totalmem() * DEFAULT_DISK_MEMORY_FRACTION));
  return {
    profile,
    netDeny: mg.network === 'deny' && !audit,
    allowNet,
    exec: audit || mg.exec === 'allow' ? 1 : mg.exec === 'deny' ? 2 : 0,
    writeCheck: !audit && !mg.auditWrites,
    write: allWrite,
    read,
    tmp,
    env,
    memory,
    disk,
  };
}

function launchPlan(s: Settings, options: RunOptions): LaunchPlan {
  const mg = s.profile.modelguard;
  const rlimits: Partial<Record<RlimitName, number>> = { ...mg.rlimits };
  // RLIMIT_NPROC binds every user but root (who gets the pids cgroup instead).
  if (mg.pids && mg.rlimits.nproc === undefined && process.getuid?.() !== 0) rlimits.nproc = mg.pids;
  // No single file beyond the disk quota, wherever the command may write.
  if (s.disk > 0) rlimits.fsize = Math.min(rlimits.fsize ?? Infinity, s.disk);
  const confined = s.writeCheck || s.netDeny || s.read !== undefined;
  // /dev/shm is private only when writable at all: a profile that does not list it keeps it out of reach.
  const shm = s.write.includes('/dev/shm') ? ['/dev/shm'] : [];
  return {
    profile: s.profile,
    // In a fresh namespace guard-exec also sets up the DNS sink (the supervisor reads every query).
    netns: s.netDeny && s.allowNet.length === 0 && options.netns !== false,
    dnsSink: true,
    netDeny: s.netDeny,
    write: confined ? (s.writeCheck ? s.write : undefined) : undefined,
    read: confined ? s.read : undefined,
    allowPorts: s.allowNet.map((a) => a.port),
    rlimits,
    ...(mg.pids ? { pidsMax: mg.pids } : {}),
    ...(s.memory > 0 ? { memoryMax: s.memory } : {}),
    // Without a disk quota the folders still get a private tmpfs (of the kernel's default size): /dev/shm must not outlive the run.
    tmpfs: { paths: [s.tmp], orDeny: shm, size: s.disk > 0 ? s.disk : 0 },
    hold: true,
    pgroup: options.signalGroup === true,
    keepCaps: mg.keepCapabilities,
    // Capabilities kept would not reach files whose owners the user namespace leaves unmapped.
    userns: !mg.keepCapabilities,
  };
}

/** Whether `p` is `dir` or below it. */
function under(p: string, dir: string): boolean {
  return p === dir || dir === '/' || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Calls whose last path component the kernel follows when it is a symbolic link (unless told not to). */
const FOLLOWS_LAST = new Set(['open', 'openat', 'openat2', 'creat', 'truncate', 'chmod', 'fchmodat', 'fchmodat2', 'chown', 'lchown', 'fchownat', 'utime', 'utimes', 'utimensat', 'futimesat', 'setxattr', 'removexattr']);

/**
 * Where `path` leads, walked the way the kernel walks it, in the mount namespace of `root`
 * (`/proc/PID/root`): returns the path reached and whether a symbolic link was on the way, or
 * undefined when it cannot be told (the process is gone, a folder is unreadable, a loop).
 */
export function followPath(root: string, path: string, followLast: boolean): { path: string; viaLink: boolean } | undefined {
  const todo = path.split('/').filter(Boolean).reverse();
  const done: string[] = [];
  let links = 0;
  let viaLink = false;
  while (todo.length) {
    const part = todo.pop()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const here = `/${[...done, part].join('/')}`;
    let st;
    try {
      st = lstatSync(root + here);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        // The rest does not exist yet: the kernel creates (or fails on) it as written.
        done.push(part, ...todo.reverse());
        return { path: `/${done.join('/')}`, viaLink };
      }
      return undefined;
    }
    if (st.isSymbolicLink() && (todo.length > 0 || followLast)) {
      if (++links > MAX_SYMLINKS) return undefined;
      let target: string;
      try {
        target = readlinkSync(root + here);
      } catch {
        return undefined;
      }
      viaLink = true;
      if (target.startsWith('/')) done.length = 0;
      todo.push(...target.split('/').filter(Boolean).reverse());
      continue;
    }
    done.push(part);
  }
  return { path: `/${done.join('/')}`, viaLink };
}

/** Runs `command` behind seccomp, network denial, Landlock and rlimits; resolves when it exits. */
export async function run(command: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  if (!Array.isArray(command) || command.length === 0 || command.some((c) => typeof c !== 'string')) {
    throw new GuardError('USAGE', 'run() takes the command as a non-empty array of strings, e.g. run(["python3", "infer.py"])');
  }
  const native = loadNative();
  const exe = guardExecPath();
  const profile = typeof options.profile === 'object' ? options.profile : loadProfile(options.profile ?? 'inference');
  const tmp = realpathSync(mkdtempSync(join(tmpdir(), 'modelguard-run-')));
  let s: Settings;
  try {
    s = settle(command, options, profile, tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const plan = launchPlan(s, options);
  const syscallName = syscallNamer(native);
  const log = new EventLog(options.maxEvents);
  const started = Date.now();
  const memoryHow: 'cgroup' | 'rlimit' | 'none' = 'none';
  const walls: RunWalls = {
    mode: 'walled',
    isolate: false,
    seccomp: '',
    notify: false,
    noNewPrivs: false,
    architectures: 'native only (foreign architectures and x32 are killed)',
    network: s.netDeny ? 'seccomp' : 'open',
    dnsSink: false,
    landlock: 0,
    landlockNet: false,
    rlimits: { ...plan.rlimits },
    pids: null,
    capabilities: profile.modelguard.keepCapabilities ? 'kept' : 'dropped',
    write: s.writeCheck ? s.write : ['(audit: writes reported, not refused)'],
    read: s.read ?? 'everywhere',
    env: Object.keys(s.env).sort(),
    envHeldBack: heldBack(options.env ?? process.env, s.env).length,
    tmp: 'shared',
    userNamespace: false,
    limits: s.memory > 0 || s.disk > 0 ? { memory: s.memory, memoryHow, disk: s.disk, text: '' } : null,
    unavailable: [],
  };
  const base = (): RunResult => ({
    command: [...command],
    profile: profile.name,
    exitCode: -1,
    signal: null,
    durationMs: Date.now() - started,
    walls,
    events: log.events,
    summary: log.summary(),
  });

  // The listener comes back as SCM_RIGHTS on its own socketpair (fd 4 in guard-exec).
  const [listenerSock, childSock] = native.socketPair();
  const io = options.stdio ?? 'inherit';
  // execa's types allow an inherited fd number only for fds 3–9 as values; ours is any number.
  const stdio = [io, io, io, 'pipe', childSock] as unknown as ExecaOptions['stdio'];
  const child = execa(exe, [...launcherArgs(plan), '--', ...command], {
    stdio,
    buffer: options.stdio === 'pipe',
    reject: false,
    cwd: options.cwd,
    env: s.env,
    extendEnv: false,
    stripFinalNewline: false,
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
  });
  native.closeFd(childSock);
  if (child.pid !== undefined) options.onSpawn?.(child.pid);
  const ctl = child.stdio[3] as unknown as Duplex;
  // Compiled (or read from the cache) after the spawn: guard-exec's own set-up (namespace, DNS
  // sink, cgroup, Landlock) runs meanwhile, and its target reads the filters only when its other
  // walls are up.
  let policy: CompiledPolicy;
  try {
    policy = policyFor(native, profile);
  } catch (e) {
    // The target is blocked reading the filters: closing the channel makes it stop at that step,
    // and guard-exec then removes its cgroup and exits.
    ctl.destroy();
    await child;
    native.closeFd(listenerSock);
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  walls.seccomp = `${profile.name}: ${policy.specs[0]!.rules.length} BPF rules, default ${policy.mode === 'notify-default' ? `notify (denied with errno ${policy.defaultErrno} and reported)` : 'allow'}; ${policy.notified.size} syscalls decoded by the supervisor`;
  let setupError: { step: string; errno: number } | undefined;
  let exitInfo: LauncherExit | undefined;
  let supervisor: NativeSupervisor | undefined;
  let supervisorDone: Promise<void> = Promise.resolve();
  let handshakeError: unknown;
  let resolveExited!: () => void;
  const exited = new Promise<void>((r) => (resolveExited = r));
  // guard-exec holds the run's mount namespace open until the channel closes: paths are followed there.
  const nsRoot = child.pid !== undefined ? `/proc/${child.pid}/root` : undefined;

  const placePath = (re: RunEvent): void => {
    if (re.path === undefined || kindOf(re) !== 'write') return;
    const flags = Array.isArray(re.args.flags) ? (re.args.flags as string[]) : [];
    const followLast = FOLLOWS_LAST.has(re.syscall) && !flags.includes('O_NOFOLLOW') && !(flags.includes('O_CREAT') && flags.includes('O_EXCL'));
    const where = nsRoot ? followPath(nsRoot, re.path, followLast) : undefined;
    if (!where) {
      re.pathAsWritten = true;
      return;
    }
    if (!where.viaLink || where.path === re.path) return;
    re.resolvedPath = where.path;
    // The supervisor judged the path as written; Landlock judges the file it leads to.
    if (re.action === 'allowed' && s.writeCheck && !s.write.some((w) => under(where.path, w))) {
      re.action = 'denied';
      re.errno = 'EACCES';
      re.reason = 'outside the write list, through a symbolic link (refused by Landlock)';
    }
  };

  const onNative = (ev: NativeEvent | NativeEnd): void => {
    if (ev.type === 'end') return;
    const re = toRunEvent(ev, { syscallName });
    placePath(re);
    options.onEvent?.(re);
    log.add(re);
  };

  readControl(ctl, {
    onReady: (ready) => {
      if (ready.netns) walls.network = 'netns';
      walls.landlock = ready.landlock;
      if (ready.pidsCgroup) walls.pids = `cgroup pids.max=${profile.modelguard.pids}`;
      if (walls.network === 'seccomp' && walls.landlock >= 4) {
        walls.network = 'seccomp+landlock';
        walls.landlockNet = true;
      }
      const nproc = plan.rlimits.nproc;
      if (!walls.pids && nproc) walls.pids = `RLIMIT_NPROC=${nproc}`;
      // No bound of guard's own (a container's read-only cgroup, as root): the runtime's, when it set one (--pids-limit).
      if (!walls.pids && plan.pidsMax) {
        const runtime = runtimePidsMax();
        if (runtime !== null) walls.pids = `runtime cgroup pids.max=${runtime}`;
      }
      walls.noNewPrivs = true;
      walls.tmp = ready.privateTmp ? 'private' : 'shared';
      walls.userNamespace = ready.userns;
      if (!ready.privateTmp && plan.tmpfs?.orDeny?.length) {
        // guard-exec left them out of Landlock's write list: the supervisor and the report say the same.
        const gone = new Set(plan.tmpfs.orDeny);
        s.write = s.write.filter((w) => !gone.has(w));
        if (s.writeCheck) walls.write = s.write;
      }
      if (walls.limits) walls.limits.memoryHow = ready.memory;
      try {
        let resolveDone!: () => void;
        supervisorDone = new Promise<void>((r) => (resolveDone = r));
        const started = startSupervisor(native, { profile, policy, netDeny: s.netDeny, allowNet: s.allowNet, execMode: s.exec, writeCheck: s.writeCheck, write: s.write }, ready, listenerSock, (ev) => {
          if (ev.type === 'end') resolveDone();
          onNative(ev);
        });
        supervisor = started.supervisor;
        walls.dnsSink = started.dnsSink;
        walls.notify = true;
        walls.unavailable = unavailableWalls(plan, ready, walls);
        options.onWalls?.(walls);
        release(ctl);
      } catch (e) {
        handshakeError = e;
        child.kill('SIGKILL');
      }
    },
    onSetupError: (step, errno) => {
      setupError = { step, errno };
    },
    onExit: (x) => {
      exitInfo = x;
      resolveExited();
    },
  });
  ctl.write(frameFilters(policy.filters));

  const forwarded: [string, () => void][] = [];
  if (options.forwardSignals) {
    for (const sig of FORWARDED_SIGNALS) {
      const h = (): void => {
        child.kill(sig);
      };
      process.on(sig, h);
      forwarded.push([sig, h]);
    }
  }
  let result: Awaited<typeof child>;
  try {
    // guard-exec reports the exit ("X") and then waits for the channel to close (--hold).
    await Promise.race([exited, child.then(() => undefined)]);
    // The supervisor ends when no process uses the filter any more; guard-exec has killed the rest.
    await Promise.race([supervisorDone, new Promise((r) => setTimeout(r, 2000).unref())]);
    ctl.destroy();
    result = await child;
  } finally {
    for (const [sig, h] of forwarded) process.off(sig, h);
  }
  supervisor?.stop();
  native.closeFd(listenerSock);
  rmSync(tmp, { recursive: true, force: true });

  const res = base();
  if (exitInfo) {
    res.exitCode = exitInfo.code;
    res.signal = exitInfo.signal ? signalName(exitInfo.signal) : null;
  } else {
    // guard-exec itself was killed before it could report: fall back to what Node saw.
    const signo = result.signal ? (constants.signals as Record<string, number>)[result.signal] : undefined;
    res.exitCode = result.exitCode ?? (signo !== undefined ? 128 + signo : -1);
    res.signal = result.signal ?? null;
  }
  const hit = limitsHit(s, walls, exitInfo);
  if (hit.length) res.limitsHit = hit;
  if (walls.limits) walls.limits.text = limitsText(walls);
  if (res.signal === 'SIGSYS') {
    const ev: RunEvent = { time: new Date().toISOString(), pid: 0, syscall: 'unknown', action: 'killed', args: { note: 'killed by the seccomp filter: a foreign-architecture or x32 system call, or a kill rule' } };
    log.add(ev);
    options.onEvent?.(ev);
  }
  res.events = log.events;
  res.summary = log.summary();
  if (options.stdio === 'pipe') {
    res.stdout = String(result.stdout ?? '');
    res.stderr = String(result.stderr ?? '');
  }
  if (handshakeError !== undefined) {
    const msg = handshakeError instanceof Error ? handshakeError.message : String(handshakeError);
    throw new RunError(`sandbox setup failed: could not take the seccomp listener: ${msg}`, res, 'listener', handshakeError);
  }
  if (setupError) {
    const what = setupError.step === 'execve' ? `cannot execute \`${command[0]}\`` : `sandbox setup failed at ${setupError.step}`;
    throw new RunError(`${what}: ${errnoText(setupError.errno)}`, res, setupError.step);
  }
  return res;
}

/**
 * What the profile asked for and this place did not give, with the flag that would give it. The
 * flags are a container's (where these walls are most often missing): the runtime's default
 * seccomp profile refuses unshare() without CAP_SYS_ADMIN, the DNS sink configures the new
 * namespace's loopback (CAP_NET_ADMIN), and a read-only /sys/fs/cgroup leaves root, whom
 * RLIMIT_NPROC does not bind, without a process bound of guard's own. docs/kubernetes.md has the same for a pod.
 */
function unavailableWalls(plan: LaunchPlan, ready: LauncherReady, w: RunWalls): string[] {
  const out: string[] = [];
  const root = process.getuid?.() === 0;
  if (plan.netns && !ready.netns) {
    // Without SYS_ADMIN guard tried a user namespace: a seccomp profile that refuses unshare(CLONE_NEWUSER) (Docker's) or a sysctl stopped it.
    const how = root ? '--cap-add SYS_ADMIN, or --security-opt seccomp=unconfined for a user namespace, would give one' : 'unprivileged user namespaces are off here: run guard as root, or in a container with --cap-add SYS_ADMIN, for one';
    out.push(`network: ${w.network} (no network namespace: ${how})`);
  } else if (plan.netns && plan.dnsSink && !w.dnsSink) {
    out.push('DNS: no sink, lookups are refused unread (--cap-add NET_ADMIN would give one)');
  }
  if (plan.netDeny && w.landlock < 4 && !ready.netns) out.push(`network: TCP by seccomp alone (Landlock ${w.landlock ? `ABI ${w.landlock}` : 'off'}; ABI 4 needs Linux 6.7)`);
  if (w.landlock === 0 && (plan.write !== undefined || plan.read !== undefined)) out.push('landlock: off (a kernel without Landlock, or a seccomp profile refusing landlock_*: --security-opt seccomp=unconfined would give it)');
  // Docker's default seccomp profile allows pidfd_getfd only with CAP_SYS_PTRACE: without it every connect, bind or send the supervisor would make fails (EBADF), permitted or not.
  if (!ready.getfd) out.push('network: permitted connects, binds and sends fail too (EBADF): the supervisor makes them with pidfd_getfd, which the runtime\'s seccomp profile refuses (--cap-add SYS_PTRACE, or --security-opt seccomp=unconfined, would allow it; guard drops the capability before the command starts)');
  if (plan.pidsMax && !ready.pidsCgroup && plan.rlimits.nproc === undefined && !w.pids) out.push('pids: not bounded by guard (read-only cgroup, and root ignores RLIMIT_NPROC: run with --pids-limit N so the runtime bounds it, or --privileged for guard\'s own)');
  return out;
}

function bytes(n: number): string {
  for (const [u, m] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (n >= m) return `${+(n / m).toFixed(1)} ${u}`;
  return `${n} B`;
}

function limitsText(w: RunWalls): string {
  const l = w.limits!;
  const parts: string[] = [];
  if (l.memory > 0) parts.push(`memory ${bytes(l.memory)} (${l.memoryHow === 'cgroup' ? 'memory cgroup' : l.memoryHow === 'rlimit' ? 'RLIMIT_DATA' : 'not enforced here'})`);
  if (l.disk > 0) parts.push(`disk ${bytes(l.disk)} (${w.tmp === 'private' ? 'private tmpfs /tmp and /dev/shm' : 'shared temporary folder'}, RLIMIT_FSIZE)`);
  return parts.join(', ');
}

/** How close the command came to its ceilings, in words, when it reached one. */
function limitsHit(s: Settings, w: RunWalls, x: LauncherExit | undefined): string[] {
  const out: string[] = [];
  if (!x) return out;
  if (x.oomKills > 0) out.push(`memory ceiling of ${bytes(s.memory)}: the kernel killed ${x.oomKills} process${x.oomKills === 1 ? '' : 'es'} that went beyond it`);
  // tmpfs rounds to pages; "full" is within a page of the size.
  for (const t of x.tmpfs) if (t.size > 0 && t.used + 4096 >= t.size) out.push(`disk quota of ${bytes(t.size)} on ${t.path}: full (${bytes(t.used)} used at exit): writes beyond it failed (ENOSPC; EFBIG for one file past the quota)`);
  void w;
  return out;
}
