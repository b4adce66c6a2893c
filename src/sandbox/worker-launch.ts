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
import { guardExecPath, loadNative, type NativeEnd, type NativeEvent, type NativeSupervisor } from './native.js';
import { loadProfile, type RlimitName, type SandboxProfile } from './profile.js';
import { toRunEvent, type RunEvent } from './events.js';
import { errnoText, frameFilters, launcherArgs, policyFor, readControl, release, startSupervisor, syscallNamer } from './launcher.js';

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
  /** The child's whole environment (see env.ts for the allowlist callers build it from). */
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
  const nproc = mg.rlimits.nproc ?? (mg.pids && process.getuid?.() !== 0 ? mg.pids : undefined);
  const rlimits = { ...mg.rlimits, ...(nproc !== undefined ? { nproc } : {}) };
  const args = launcherArgs({ profile, netns: netDeny && options.netns !== false, dnsSink: false, netDeny, write, read, allowPorts: [], rlimits, keepFds: [5] });

  const state: WalledState = { seccomp: profile.name, network: netDeny ? 'seccomp' : 'open', landlock: 0, rlimits, up: false };
  const events: RunEvent[] = [];
  const syscallName = syscallNamer(native);

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
    const why = errno !== undefined ? errnoText(errno) : cause instanceof Error ? cause.message : String(cause);
    out.setupError = new GuardError('SANDBOX_SETUP', `walled worker setup failed at ${step}: ${why}`, { cause, context: { step } });
    options.onSetup?.(out.setupError);
  };

  const plan = { profile, policy, netDeny, allowNet: [], execMode: mg.exec === 'allow' ? 1 : mg.exec === 'deny' ? 2 : 0, writeCheck: !mg.auditWrites, write } as const;
  const onNative = (ev: NativeEvent | NativeEnd): void => {
    // Never throw back into the addon's thread-safe call.
    try {
      if (ev.type === 'end') return;
      const re = toRunEvent(ev, { syscallName });
      events.push(re);
      options.onEvent?.(re);
    } catch {
      /* a consumer's bug must not take the process down */
    }
  };
  if (ctl) {
    readControl(ctl, {
      onReady: (ready) => {
        if (ready.netns) state.network = 'netns';
        state.landlock = ready.landlock;
        if (state.network === 'seccomp' && state.landlock >= 4) state.network = 'seccomp+landlock';
        try {
          supervisor = startSupervisor(native, plan, ready, listenerSock, onNative).supervisor;
          closeListenerSock();
          if (!wantRef) supervisor.unref();
          state.up = true;
          release(ctl);
          options.onSetup?.(undefined);
        } catch (e) {
          closeListenerSock();
          fail('listener', undefined, e);
          child.kill('SIGKILL');
        }
      },
      onSetupError: (step, errno) => fail(step, errno),
    });
    ctl.write(frameFilters(policy.filters));
  }
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
