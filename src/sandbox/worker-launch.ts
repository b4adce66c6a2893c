/**
 * spawnWalled(): a long-lived Node child process (the unpickler worker) behind the same launcher
 * and supervisor as `guard run`, with its Node IPC channel intact.
 *
 *   profile → compilePolicy (cached) → child_process.spawn(guard-exec, stdio: [.., .., stderr,
 *   ctl (fd 3), listener socket (fd 4), ipc (fd 5)]) → guard-exec keeps fd 5 (`--keep-fd`), raises
 *   the walls, installs the filter → the listener comes back over fd 4 → the supervisor thread
 *   answers notifications and streams events → "G" → execve(node worker.js).
 *
 * Unlike run(), this returns as soon as the child is spawned: the caller talks to it over IPC
 * (Node finds the channel through NODE_CHANNEL_FD=5, which `spawn` sets and guard-exec passes on)
 * and learns about every denied attempt through `onEvent`. The Landlock read list is exact: the
 * caller names every path the child may read (see src/unpickler/walls.ts for the worker's).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { GuardError } from '../errors.js';
import { compilePolicy, supervisorPolicy, type CompiledPolicy } from './filter.js';
import { guardExecPath, loadNative, type NativeAddon, type NativeEnd, type NativeEvent, type NativeSupervisor } from './native.js';
import { loadProfile, type RlimitName, type SandboxProfile } from './profile.js';
import { toRunEvent, type RunEvent } from './events.js';

/**
 * Devices a walled child may open for writing. Narrower than run()'s list: no /dev/shm (a place to
 * write files), no terminals.
 */
export const DEVICE_WRITABLE = ['/dev/null', '/dev/zero', '/dev/full', '/dev/urandom', '/dev/random'];

/** What was in force for one walled child, as the report's `walls` section states it. */
export interface WalledState {
  /** Profile name. */
  seccomp: string;
  /** `netns`, `seccomp+landlock` or `seccomp`. */
  network: string;
  /** Landlock ABI in force (0: none). */
  landlock: number;
  rlimits: Partial<Record<RlimitName, number>>;
  /** Set once guard-exec reported the walls up and the supervisor holds the listener. */
  up: boolean;
}

export interface WalledSpawnOptions {
  /** Built-in profile name, path, or a loaded profile (default `loader`). */
  profile?: string | SandboxProfile;
  /** Every path the child may read (Landlock); write paths are readable too. */
  read: readonly string[];
  /** Paths the child may write (besides DEVICE_WRITABLE). */
  write?: readonly string[];
  env: Record<string, string | undefined>;
  /** Node IPC serialization of the channel (default `advanced`). */
  serialization?: 'json' | 'advanced';
  /** Called for every event the supervisor reports, as it happens. */
  onEvent?: (event: RunEvent) => void;
  /** Called once the walls are up (`state.up`), or with the step that failed. */
  onSetup?: (error: GuardError | undefined) => void;
  /** Try a fresh network namespace (default true). */
  netns?: boolean;
}

export interface WalledChild {
  /** The launcher process (guard-exec): `send()`, `'message'`, `kill()` work as with `fork()`. */
  child: ChildProcess;
  state: WalledState;
  /** Every event so far. */
  events: RunEvent[];
  /** Set when guard-exec reported a failed setup step. */
  setupError?: GuardError;
  /** Whether the supervisor keeps the event loop alive. */
  ref(): void;
  unref(): void;
}

const policies = new Map<string, CompiledPolicy>();

function policyFor(native: NativeAddon, profile: SandboxProfile): CompiledPolicy {
  const key = JSON.stringify(profile, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  let p = policies.get(key);
  if (!p) {
    p = compilePolicy(native, profile, { reportNetwork: true, reportExec: true, reportWrites: true });
    if (policies.size > 8) policies.clear();
    policies.set(key, p);
  }
  return p;
}

function frame(filters: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]!.writeUInt32LE(filters.length);
  for (const f of filters) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(f.length);
    parts.push(len, f);
  }
  return Buffer.concat(parts);
}

/** Throws SANDBOX_UNAVAILABLE when the native layer cannot be used here. */
export function walledAvailable(): void {
  loadNative();
  guardExecPath();
}

/** Spawns `command` (argv[0] an absolute path) behind the profile's walls, with an IPC channel. */
export function spawnWalled(command: readonly string[], options: WalledSpawnOptions): WalledChild {
  const native = loadNative();
  const exe = guardExecPath();
  const profile = typeof options.profile === 'object' ? options.profile : loadProfile(options.profile ?? 'loader');
  const mg = profile.modelguard;
  const policy = policyFor(native, profile);
  const netDeny = mg.network === 'deny';
  const write = [...new Set([...(options.write ?? []), ...DEVICE_WRITABLE])];
  const read = [...new Set(options.read)];

  const args = ['--ctl', '3', '--listener-sock', '4', '--keep-fd', '5'];
  if (netDeny && options.netns !== false) args.push('--netns');
  args.push('--landlock');
  for (const w of write) args.push('--write', w);
  for (const r of read) args.push('--read', r);
  if (netDeny) args.push('--landlock-net', '--landlock-scope');
  for (const [k, v] of Object.entries(mg.rlimits)) if (v !== undefined) args.push('--rlimit', `${k}=${v}`);
  const nproc = mg.rlimits.nproc ?? (mg.pids && process.getuid?.() !== 0 ? mg.pids : undefined);
  if (nproc !== undefined && mg.rlimits.nproc === undefined) args.push('--rlimit', `nproc=${nproc}`);

  const state: WalledState = { seccomp: profile.name, network: netDeny ? 'seccomp' : 'open', landlock: 0, rlimits: { ...mg.rlimits, ...(nproc !== undefined ? { nproc } : {}) }, up: false };
  const events: RunEvent[] = [];
  const names = new Map<number, string>();
  const syscallName = (nr: number): string => {
    let n = names.get(nr);
    if (n === undefined) names.set(nr, (n = native.syscallName(nr) ?? `syscall_${nr}`));
    return n;
  };

  const [listenerSock, childSock] = native.socketPair();
  let child: ChildProcess;
  try {
    child = spawn(exe, [...args, '--', ...command], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', childSock, 'ipc'],
      serialization: options.serialization ?? 'advanced',
      env: options.env,
    });
  } finally {
    native.closeFd(childSock);
  }
  let supervisor: NativeSupervisor | undefined;
  let wantRef = true;
  let exited = false;
  let listenerOpen = true;
  const closeListenerSock = (): void => {
    if (listenerOpen) native.closeFd(listenerSock);
    listenerOpen = false;
  };
  const ctl = child.stdio[3] as (Readable & Writable & { unref?: () => void; ref?: () => void }) | null;
  const out: WalledChild = {
    child,
    state,
    events,
    ref() {
      wantRef = true;
      supervisor?.ref();
      ctl?.ref?.();
    },
    unref() {
      // After exit the supervisor stays ref'd until its last event is delivered (see 'exit' below).
      if (exited) return;
      wantRef = false;
      supervisor?.unref();
      ctl?.unref?.();
    },
  };
  const fail = (step: string, errno: number | undefined, cause?: unknown): void => {
    const why = errno !== undefined ? `errno ${errno}` : cause instanceof Error ? cause.message : String(cause);
    out.setupError = new GuardError('SANDBOX_SETUP', `walled worker setup failed at ${step}: ${why}`, { cause, context: { step } });
    options.onSetup?.(out.setupError);
  };

  let buf = '';
  ctl?.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const parts = buf.slice(0, i).split(' ');
      buf = buf.slice(i + 1);
      if (parts[0] === 'L') {
        for (const kv of parts.slice(3)) {
          const [k, v] = kv.split('=');
          if (k === 'netns' && v === '1') state.network = 'netns';
          if (k === 'landlock') state.landlock = Number(v);
        }
        if (state.network === 'seccomp' && state.landlock >= 4) state.network = 'seccomp+landlock';
        try {
          const listenerFd = native.recvFd({ fd: listenerSock, timeoutMs: 10_000 });
          closeListenerSock();
          supervisor = new native.Supervisor({
            listenerFd,
            firstExecPid: Number(parts[1]),
            netDeny,
            fakeDns: true,
            unixDeny: netDeny,
            netAllow: [],
            execMode: mg.exec === 'allow' ? 1 : mg.exec === 'deny' ? 2 : 0,
            writeCheck: !mg.auditWrites,
            writeAllowed: write,
            unixAllowed: mg.unixSockets,
            ...supervisorPolicy(policy, state.landlock),
            onEvent: (ev: NativeEvent | NativeEnd) => {
              // Never throw back into the addon's thread-safe call.
              try {
                if (ev.type === 'end') return;
                const re = toRunEvent(ev, { syscallName });
                events.push(re);
                options.onEvent?.(re);
              } catch {
                /* a consumer's bug must not take the process down */
              }
            },
          });
          native.closeFd(listenerFd);
          if (!wantRef) supervisor.unref();
          state.up = true;
          ctl.write('G');
          options.onSetup?.(undefined);
        } catch (e) {
          fail('listener', undefined, e);
          child.kill('SIGKILL');
        }
      } else if (parts[0] === 'E') {
        fail(parts.slice(1, -1).join(' '), Number(parts[parts.length - 1]));
      }
    }
  });
  ctl?.on('error', () => {});
  ctl?.write(frame(policy.filters));
  child.once('exit', () => {
    exited = true;
    closeListenerSock();
    // The filter's last user is gone: make sure the supervisor thread ends, and keep the event loop
    // alive until its last event is delivered (an event delivered during teardown aborts).
    supervisor?.ref();
    supervisor?.stop();
    ctl?.destroy();
  });
  return out;
}
