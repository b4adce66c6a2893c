/**
 * run(): one command behind the walls, with every attempt it made.
 *
 *   profile → compilePolicy (two BPF programs) → execa spawns guard-exec → guard-exec's target
 *   raises the walls and installs the filters → the listener reaches the addon (pidfd_getfd) →
 *   the supervisor thread answers notifications and streams events → the command exits →
 *   RunResult (the report's JSON contract).
 */
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { execa, type Options as ExecaOptions } from 'execa';
import { GuardError } from '../errors.js';
import { compilePolicy, PERSONALITY_ALLOWED, type CompiledPolicy } from './filter.js';
import { guardExecPath, loadNative, type NativeAddon, type NativeEnd, type NativeEvent, type SupervisorOptions } from './native.js';
import { loadProfile, type BuiltinProfile, type RlimitName, type SandboxProfile } from './profile.js';
import { summarize, toRunEvent, type RunEvent, type RunSummary } from './events.js';

export type { RunEvent, RunSummary, Egress, EventAction } from './events.js';

/** Events kept in a result; later ones are counted (summary.dropped) and still streamed to onEvent. */
export const MAX_EVENTS = 100_000;

/** Signals forwarded to the command when `forwardSignals` is on. */
export const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;

/** Writable by default under every profile that denies writes: devices a program opens for writing. */
export const DEFAULT_WRITABLE = ['/dev/null', '/dev/zero', '/dev/full', '/dev/tty', '/dev/pts', '/dev/ptmx', '/dev/shm', '/dev/urandom', '/dev/random'];

export interface AllowNet {
  host: string;
  port: number;
}

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
  cwd?: string;
  env?: Record<string, string | undefined>;
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

function ipBytes(host: string): Buffer | undefined {
  if (host === '*') return undefined;
  if (isIP(host) === 4) return Buffer.from(host.split('.').map(Number));
  const [head = '', tail = ''] = host.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = host.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(Number.parseInt(g || '0', 16), i * 2));
  return b;
}

function expandPath(p: string, vars: Record<string, string>): string {
  return p.replace(/\$\{?([A-Z_]+)\}?/g, (all, v: string) => vars[v] ?? all);
}

class LineReader {
  private buf = '';
  constructor(private readonly onLine: (line: string) => void) {}
  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      this.onLine(line);
    }
  }
}

interface Settings {
  profile: SandboxProfile;
  netDeny: boolean;
  allowNet: AllowNet[];
  exec: 0 | 1 | 2;
  writeCheck: boolean;
  write: string[];
  tmp: string;
}

function settle(options: RunOptions, profile: SandboxProfile, tmp: string): Settings {
  const mg = profile.modelguard;
  const audit = options.audit === true;
  const allowNet = (options.allowNet ?? []).map((a) => (typeof a === 'string' ? parseAllowNet(a) : a));
  const vars: Record<string, string> = { TMPDIR: tmp, HOME: process.env.HOME ?? '/root', CWD: resolve(options.cwd ?? process.cwd()) };
  const write = [...new Set([...mg.fs.write.map((p) => expandPath(p, vars)), ...(options.write ?? []).map((p) => resolve(p)), ...DEFAULT_WRITABLE])];
  const canon = write.map((p) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  });
  return {
    profile,
    netDeny: mg.network === 'deny' && !audit,
    allowNet,
    exec: audit || mg.exec === 'allow' ? 1 : mg.exec === 'deny' ? 2 : 0,
    writeCheck: !audit && !mg.auditWrites,
    write: [...new Set([...write, ...canon])],
    tmp,
  };
}

function guardExecArgs(s: Settings, options: RunOptions): string[] {
  const mg = s.profile.modelguard;
  const args = ['--ctl', '3', '--listener-sock', '4'];
  // In a fresh namespace guard-exec also sets up the DNS sink (the supervisor reads every query).
  if (s.netDeny && allowsNone(s) && options.netns !== false) args.push('--netns', '--dns-sinkhole');
  if (s.writeCheck || s.netDeny) {
    args.push('--landlock');
    if (s.writeCheck) for (const w of s.write) args.push('--write', w);
    else args.push('--write', '/');
    const reads = mg.fs.read.filter((r) => r !== '/');
    if (reads.length && !mg.fs.read.includes('/')) for (const r of [...reads, ...s.write]) args.push('--read', r);
  }
  if (s.netDeny) {
    args.push('--landlock-net', '--landlock-scope');
    for (const a of s.allowNet) if (a.port) args.push('--allow-port', String(a.port));
  }
  for (const [k, v] of Object.entries(mg.rlimits)) if (v !== undefined) args.push('--rlimit', `${k}=${v}`);
  // RLIMIT_NPROC binds every user but root (who gets the pids cgroup instead).
  if (mg.pids && mg.rlimits.nproc === undefined && process.getuid?.() !== 0) args.push('--rlimit', `nproc=${mg.pids}`);
  if (mg.pids) args.push('--pids-max', String(mg.pids));
  if (options.signalGroup) args.push('--pgroup');
  if (mg.keepCapabilities) args.push('--keep-caps');
  return args;
}

function allowsNone(s: Settings): boolean {
  return s.allowNet.length === 0;
}

const compiledCache = new Map<string, CompiledPolicy>();

/** Compiling a profile takes libseccomp ~20 ms; the same profile compiles to the same filters. */
function compile(native: NativeAddon, s: Settings): CompiledPolicy {
  const key = JSON.stringify(s.profile, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  let c = compiledCache.get(key);
  if (!c) {
    c = compilePolicy(native, s.profile, { reportNetwork: true, reportExec: true, reportWrites: true });
    if (compiledCache.size > 16) compiledCache.clear();
    compiledCache.set(key, c);
  }
  return c;
}

function frame(filters: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32LE(filters.length);
  parts.push(count);
  for (const f of filters) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(f.length);
    parts.push(len, f);
  }
  return Buffer.concat(parts);
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
  const s = settle(options, profile, tmp);
  const nameCache = new Map<number, string>();
  const syscallName = (nr: number): string => {
    let n = nameCache.get(nr);
    if (n === undefined) {
      n = native.syscallName(nr) ?? `syscall_${nr}`;
      nameCache.set(nr, n);
    }
    return n;
  };
  const events: RunEvent[] = [];
  const maxEvents = options.maxEvents ?? MAX_EVENTS;
  let dropped = 0;
  const started = Date.now();
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
    rlimits: { ...profile.modelguard.rlimits },
    pids: null,
    capabilities: profile.modelguard.keepCapabilities ? 'kept' : 'dropped',
    write: s.writeCheck ? s.write : ['(audit: writes reported, not refused)'],
  };
  const base = (): RunResult => ({
    command: [...command],
    profile: profile.name,
    exitCode: -1,
    signal: null,
    durationMs: Date.now() - started,
    walls,
    events,
    summary: summarize(events),
  });

  const env: Record<string, string | undefined> = { ...(options.env ?? process.env), TMPDIR: tmp };
  // The listener comes back as SCM_RIGHTS on its own socketpair (fd 4 in guard-exec).
  const [listenerSock, childSock] = native.socketPair();
  const io = options.stdio ?? 'inherit';
  // execa's types allow an inherited fd number only for fds 3–9 as values; ours is any number.
  const stdio = [io, io, io, 'pipe', childSock] as unknown as ExecaOptions['stdio'];
  const child = execa(exe, [...guardExecArgs(s, options), '--', ...command], {
    stdio,
    buffer: options.stdio === 'pipe',
    reject: false,
    cwd: options.cwd,
    env,
    extendEnv: false,
    stripFinalNewline: false,
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
  });
  native.closeFd(childSock);
  if (child.pid !== undefined) options.onSpawn?.(child.pid);
  const ctl = child.stdio[3] as unknown as NodeJS.ReadWriteStream & { destroy(): void };
  // Compiled (or read from the cache) after the spawn: guard-exec's own set-up (namespace, DNS
  // sink, cgroup, Landlock) runs meanwhile, and its target reads the filters only when its other
  // walls are up.
  let policy: CompiledPolicy;
  try {
    policy = compile(native, s);
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
  let exitInfo: { code: number; signal: number } | undefined;
  let supervisor: { stop(): void } | undefined;
  let supervisorDone: Promise<void> = Promise.resolve();
  let handshakeError: unknown;

  const onNative = (ev: NativeEvent | NativeEnd): void => {
    if (ev.type === 'end') return;
    const re = toRunEvent(ev, { syscallName });
    if (events.length < maxEvents) events.push(re);
    else dropped++;
    options.onEvent?.(re);
  };

  const reader = new LineReader((line) => {
    const parts = line.split(' ');
    if (parts[0] === 'L') {
      const pid = Number(parts[1]);
      let sinks = 0;
      for (const kv of parts.slice(3)) {
        const [k, v] = kv.split('=');
        if (k === 'netns' && v === '1') walls.network = 'netns';
        if (k === 'landlock') walls.landlock = Number(v);
        if (k === 'pids' && v === '1') walls.pids = `cgroup pids.max=${profile.modelguard.pids}`;
        if (k === 'sinks') sinks = Math.min(Number(v) || 0, 4);
      }
      if (walls.network === 'seccomp' && walls.landlock >= 4) {
        walls.network = 'seccomp+landlock';
        walls.landlockNet = true;
      }
      const nproc = profile.modelguard.rlimits.nproc ?? (process.getuid?.() !== 0 ? profile.modelguard.pids : undefined);
      if (!walls.pids && nproc) walls.pids = `RLIMIT_NPROC=${nproc}`;
      walls.noNewPrivs = true;
      const sinkholeFds: number[] = [];
      try {
        // The DNS sink sockets come first on the socket, then the listener.
        for (let i = 0; i < sinks; i++) sinkholeFds.push(native.recvFd({ fd: listenerSock, timeoutMs: 10_000 }));
        walls.dnsSink = sinkholeFds.length > 0;
        const listenerFd = native.recvFd({ fd: listenerSock, timeoutMs: 10_000 });
        let resolveDone!: () => void;
        supervisorDone = new Promise<void>((r) => (resolveDone = r));
        const opts: SupervisorOptions = {
          listenerFd,
          sinkholeFds,
          firstExecPid: pid,
          netDeny: s.netDeny,
          fakeDns: true,
          unixDeny: s.netDeny,
          netAllow: s.allowNet.map((a) => ({ family: a.host.includes(':') ? 6 : 4, ...(ipBytes(a.host) ? { address: ipBytes(a.host)! } : {}), port: a.port })),
          execMode: s.exec,
          writeCheck: s.writeCheck,
          writeAllowed: s.write,
          unixAllowed: profile.modelguard.unixSockets,
          alwaysDenied: policy.alwaysDenied,
          conditionallyDenied: policy.conditionallyDenied,
          defaultErrno: policy.defaultErrno,
          profileRules: policy.profileRules,
          personalityAllowed: PERSONALITY_ALLOWED.map(Number),
          onEvent: (ev) => {
            if (ev.type === 'end') resolveDone();
            onNative(ev);
          },
        };
        supervisor = new native.Supervisor(opts);
        native.closeFd(listenerFd);
        for (const fd of sinkholeFds.splice(0)) native.closeFd(fd);
        walls.notify = true;
        ctl.write('G');
      } catch (e) {
        for (const fd of sinkholeFds) native.closeFd(fd);
        handshakeError = e;
        child.kill('SIGKILL');
      }
    } else if (parts[0] === 'E') {
      setupError = { step: parts.slice(1, -1).join(' '), errno: Number(parts[parts.length - 1]) };
    } else if (parts[0] === 'X') {
      exitInfo = { code: Number(parts[1]), signal: Number(parts[2]) };
    }
  });
  ctl.on('data', (d: Buffer) => reader.push(d));
  ctl.on('error', () => {});
  ctl.write(frame(policy.filters));

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
    result = await child;
  } finally {
    for (const [sig, h] of forwarded) process.off(sig, h);
  }
  // The supervisor ends when no process uses the filter any more; guard-exec has killed the rest.
  await Promise.race([supervisorDone, new Promise((r) => setTimeout(r, 2000).unref())]);
  supervisor?.stop();
  ctl.destroy();
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
  if (res.signal === 'SIGSYS') {
    const ev: RunEvent = { time: new Date().toISOString(), pid: 0, syscall: 'unknown', action: 'killed', args: { note: 'killed by the seccomp filter: a foreign-architecture or x32 system call, or a kill rule' } };
    events.push(ev);
    options.onEvent?.(ev);
  }
  res.summary = summarize(events);
  if (dropped) res.summary.dropped = dropped;
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

function errnoText(n: number): string {
  const names: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 12: 'ENOMEM', 13: 'EACCES', 16: 'EBUSY', 22: 'EINVAL', 38: 'ENOSYS', 95: 'EOPNOTSUPP' };
  return `${names[n] ?? `errno ${n}`}`;
}
