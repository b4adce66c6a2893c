/**
 * The only module that loads the native addon. It declares the addon's shape, hands it the
 * error class it throws, and, when loading fails, lists every path it tried.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GuardError } from '../errors.js';

/** A failed system call in the addon: `code` is the errno name, like Node's own system errors. */
export class NativeError extends GuardError {
  readonly syscall: string;
  readonly errno: number;
  readonly sysCode: string;
  constructor(message: string, options: { code?: string; syscall?: string; errno?: number } = {}) {
    super('NATIVE', message, { context: { step: options.syscall } });
    this.name = 'NativeError';
    this.syscall = options.syscall ?? 'unknown';
    this.errno = options.errno ?? 0;
    this.sysCode = options.code ?? 'EUNKNOWN';
  }
}

export type RuleAction = 'allow' | 'errno' | 'notify' | 'log' | 'trap' | 'kill_process' | 'kill_thread';
export type CompareOp = 'ne' | 'lt' | 'le' | 'eq' | 'ge' | 'gt' | 'masked_eq';

export interface NativeCondition {
  index: number;
  op: CompareOp;
  a: bigint;
  b: bigint;
}

export interface NativeRule {
  nr: number;
  name?: string;
  action: RuleAction;
  errno?: number;
  args?: NativeCondition[];
}

export interface NativeFilterSpec {
  defaultAction: { action: RuleAction; errno?: number };
  /** For calls through another architecture or the x32 ABI (default `kill_process`). */
  badArchAction?: 'kill_process' | 'notify';
  /** Ask libseccomp for a binary-tree filter (SCMP_FLTATR_CTL_OPTIMIZE=2). */
  optimize?: boolean;
  rules: NativeRule[];
}

/** One notification as the supervisor thread decoded it. */
export interface NativeEvent {
  type: 'syscall';
  time: number;
  pid: number;
  nr: number;
  action: 'denied' | 'allowed' | 'killed';
  simulated?: boolean;
  /** A call a supported runtime makes on its own (io_uring), answered ENOSYS so it falls back. */
  runtimeProbe?: boolean;
  /** The ABI of a call made through another one than the native (`x32`, `i386`, `arch 0x…`). */
  abi?: string;
  /** Denied because the profile does not allow it. */
  byProfile?: boolean;
  /** Denied because modelguard always denies it. */
  alwaysDenied?: boolean;
  errno?: number;
  args: bigint[];
  fd?: number;
  sockaddr?: { family: 'inet' | 'inet6' | 'unix' | 'netlink' | 'unspec' | 'other'; address?: string; port?: number };
  sockType?: string;
  payload?: Buffer;
  payloadLength?: number;
  message?: number;
  path?: string;
  /** rename/link: the source path; symlink: the link text. */
  otherPath?: string;
  argv?: string[];
  flags?: number;
  note?: string;
}

export interface NativeEnd {
  type: 'end';
  error?: string;
}

export interface SupervisorOptions {
  listenerFd: number;
  /** UDP sockets on port 53 in the sandbox's network namespace (guard-exec --dns-sinkhole), at most two. */
  sinkholeFds?: number[];
  firstExecPid: number;
  netDeny: boolean;
  fakeDns: boolean;
  unixDeny: boolean;
  netAllow: { family: 4 | 6; address?: Buffer; port: number }[];
  execMode: 0 | 1 | 2;
  writeCheck: boolean;
  writeAllowed: string[];
  /** Unix socket paths that may be connected to while the network is denied. */
  unixAllowed: string[];
  alwaysDenied: number[];
  /** Denied when the argument's low 32 bits are one of `values`. */
  conditionallyDenied: { nr: number; index: number; values: number[] }[];
  /** errno for calls no profile rule allows (0: allowed). */
  defaultErrno: number;
  /** The profile's rules, applied by the supervisor to the calls it sees. */
  profileRules: { nr: number; action: 'allow' | 'errno' | 'kill'; errno: number; conds: NativeCondition[] }[];
  /** personality() values let through (low 32 bits). */
  personalityAllowed: number[];
  /** Denied when any bit of `mask` is set in the argument (clone's namespace flags). */
  maskDenied?: { nr: number; index: number; mask: bigint }[];
  /** Answered ENOSYS and reported as a runtime's probe (io_uring). */
  runtimeProbes?: number[];
  /** Socket families allowed (empty: any); netlink protocols allowed (empty: any). */
  socketFamilies?: number[];
  netlinkProtocols?: number[];
  /**
   * Landlock ABI in force in the target (0: none). The supervisor lets a write the kernel will check
   * again go on only where Landlock holds the kernel to the write list; without it, such writes are
   * denied.
   */
  landlockAbi?: number;
  onEvent: (event: NativeEvent | NativeEnd) => void;
}

export interface NativeSupervisor {
  stop(): void;
  /** Whether the live supervisor keeps the event loop alive (default: it does). */
  ref(): void;
  unref(): void;
}

export interface NativeAddon {
  init(options: { NativeError: typeof NativeError }): void;
  version(): { libseccomp: string; api: number; arch: number };
  resolveSyscall(name: string): number;
  syscallName(nr: number): string | null;
  /** The syscalls the supervisor decodes and checks as path-changing writes (mkdir, rename, …). */
  pathWriteSyscalls(): number[];
  compileFilter(spec: NativeFilterSpec): Buffer;
  closeFd(fd: number): void;
  /**
   * Anonymous zeroed memory as an ArrayBuffer that owns the mapping; `hugePages` adds MADV_HUGEPAGE
   * (and, from 2 MiB, a 2 MiB-aligned start). `uninitialized`: the caller overwrites every byte but
   * the `clear` ranges ([offset, length] pairs), so a kept mapping (setPageCache) may come back
   * with stale bytes outside them.
   */
  allocPages(options: { bytes: number; hugePages: boolean; uninitialized?: boolean; clear?: Float64Array }): ArrayBuffer;
  /** Keep up to `maxBytes` of freed huge-page mappings (MADV_FREE'd) for allocPages to reuse; 0 keeps none. */
  setPageCache(options: { maxBytes: number }): void;
  /**
   * Positional reads on native threads: `plan` holds rows of [index into `dests`, offset in that
   * buffer, file offset, length]; every row is bounds-checked before any read. Setting
   * `cancel[0]` to non-zero stops taking new chunks. Resolves with the bytes read, the file offset
   * where the file ended early (-1: it did not), the first errno (0: none).
   */
  readRanges(fd: number, dests: ArrayBuffer[], plan: Float64Array, threads: number, cancel: Int32Array | null): Promise<{ bytes: number; eofAt: number; errno: number; cancelled: boolean }>;
  /** A close-on-exec unix socketpair: [parent end, child end]. */
  socketPair(): [number, number];
  /** Receives one fd sent with SCM_RIGHTS on `fd`. */
  recvFd(options: { fd: number; timeoutMs?: number }): number;
  /** Reaps zombies reparented to this process (PID 1), never one of `known` (Node's own children). */
  reapOrphans(options: { known: number[] }): number[];
  Supervisor: new (options: SupervisorOptions) => NativeSupervisor;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The package root: the nearest folder above this module with package.json and binding.gyp
 * (dist/src/sandbox → ../../.., the run bundle dist/bundle → ../.., src/sandbox → ../..). */
function packageRoot(): string {
  for (let dir = here, up = 0; up < 4; up++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
  }
  return resolve(here, '../../..');
}

export const PACKAGE_ROOT = packageRoot();

/** The platform whose binaries the package ships prebuilt (scripts/prebuild.mjs, at `npm pack`). */
export const PREBUILT_PLATFORMS = ['linux-x64'];

/**
 * Where `file` may be, in order: a source build (the install script's fallback, `npm rebuild
 * modelguard` or `npx node-gyp rebuild` in a checkout), then the binary shipped for this platform.
 * scripts/native-files.mjs names the same places for the install script.
 */
function candidates(file: string): string[] {
  return [
    join(PACKAGE_ROOT, 'build', 'Release', file),
    join(PACKAGE_ROOT, 'build', 'Debug', file),
    join(PACKAGE_ROOT, 'prebuilds', `${process.platform}-${process.arch}`, file),
  ];
}

/** What to do when neither a prebuilt nor a source build is usable: for every loader error. */
function howToFix(): string {
  const tag = `${process.platform}-${process.arch}`;
  const shipped = PREBUILT_PLATFORMS.includes(tag)
    ? `the prebuilt ${tag} binaries did not load here (they need glibc 2.34 or later), so they must be built from source`
    : `modelguard ships prebuilt binaries for ${PREBUILT_PLATFORMS.join(', ')} only, so on ${tag} they are built from source`;
  return (
    `${shipped}: install python3, make and a C++ compiler (Debian/Ubuntu: apt-get install python3 make g++), then run ` +
    `\`npm rebuild modelguard\` in your project (on npm 11 its install script must be allowed: add "modelguard": true to "allowScripts" in your package.json), ` +
    `or \`npx node-gyp rebuild\` in ${PACKAGE_ROOT}`
  );
}

let cached: NativeAddon | undefined;
let cachedError: GuardError | undefined;

/** Loads the addon once, or throws SANDBOX_UNAVAILABLE naming every path tried and why. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  if (process.platform !== 'linux') {
    cachedError = new GuardError('SANDBOX_UNAVAILABLE', `the kernel sandbox needs Linux (seccomp, Landlock); this is ${process.platform}`);
    throw cachedError;
  }
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidates('modelguard.node')) {
    if (!existsSync(path)) {
      tried.push(`${path}: not built`);
      continue;
    }
    try {
      const addon = require(path) as NativeAddon;
      addon.init({ NativeError });
      addon.version(); // loads libseccomp.so.2 now, so a missing runtime is reported here
      cached = addon;
      return addon;
    } catch (e) {
      tried.push(`${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  // A binary that loads but finds no libseccomp is not a build problem: the runtime library is missing.
  const fix = tried.some((t) => t.includes('libseccomp.so.2'))
    ? 'install the libseccomp runtime (Debian/Ubuntu: apt-get install libseccomp2; Fedora/RHEL: dnf install libseccomp)'
    : howToFix();
  cachedError = new GuardError('SANDBOX_UNAVAILABLE', `the kernel sandbox is unavailable: could not load the native addon\n  ${tried.join('\n  ')}\n  Fix: ${fix}.`);
  throw cachedError;
}

/** Path of the guard-exec launcher, or SANDBOX_UNAVAILABLE. */
export function guardExecPath(): string {
  const found = candidates('guard-exec').find((p) => existsSync(p));
  if (!found) throw new GuardError('SANDBOX_UNAVAILABLE', `the kernel sandbox is unavailable: guard-exec is not built (tried ${candidates('guard-exec').join(', ')}).\n  Fix: ${howToFix()}.`);
  return found;
}
