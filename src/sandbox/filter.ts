/**
 * Turns a profile into two seccomp filters and the supervisor's answer table.
 *
 *   filter 1, the profile: the OCI rules with runc's semantics, unknown names skipped, syscalls
 *            newer than the profile answered ENOSYS, foreign architectures and x32 killed. The
 *            calls modelguard always denies are *allowed* here so that filter 2 can report them.
 *   filter 2, the overlay: default allow, SCMP_ACT_NOTIFY for the rare calls the supervisor
 *            decodes (network, exec, write-opens, always-denied, the profile's report list).
 *
 * The kernel runs both and keeps the most severe answer (KILL > ERRNO > NOTIFY > ALLOW), so a
 * call the profile denies stays denied without a round trip, and hot calls never leave BPF.
 */
import { release } from 'node:os';
import type { CompareOp, NativeAddon, NativeCondition, NativeFilterSpec, NativeRule, RuleAction } from './native.js';
import type { OciAction, OciArg, OciFilterSelector, OciOp, SandboxProfile } from './profile.js';

export const EPERM = 1;
export const ENOSYS = 38;

/** Denied whatever the profile says; every attempt is reported. */
export const ALWAYS_DENIED = [
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd',
  'mount', 'umount', 'umount2', 'pivot_root', 'move_mount', 'open_tree', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'mount_setattr',
  'unshare', 'setns', 'bpf', 'perf_event_open', 'keyctl', 'add_key', 'request_key', 'userfaultfd',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'kexec_load', 'kexec_file_load',
  'init_module', 'finit_module', 'delete_module', 'seccomp', 'reboot', 'swapon', 'swapoff', 'acct',
  'iopl', 'ioperm', 'name_to_handle_at', 'open_by_handle_at', 'lookup_dcookie', 'quotactl', 'quotactl_fd',
] as const;

/** Denied only with particular arguments (low 32 bits compared: the kernel reads them as int). */
export const CONDITIONALLY_DENIED: { name: string; index: number; value: bigint; why: string }[] = [
  { name: 'prctl', index: 0, value: 22n, why: 'prctl(PR_SET_SECCOMP)' },
  { name: 'ioctl', index: 1, value: 0x5412n, why: 'ioctl(TIOCSTI)' },
  { name: 'ioctl', index: 1, value: 0x541cn, why: 'ioctl(TIOCLINUX)' },
];

/** personality() values that are allowed; anything else is denied and reported. */
export const PERSONALITY_ALLOWED = [0n, 0xffffffffn];

export const NETWORK_CALLS = ['socket', 'connect', 'bind', 'listen', 'sendto', 'sendmsg', 'sendmmsg'] as const;
export const EXEC_CALLS = ['execve', 'execveat'] as const;
const O_WRONLY = 0o1n;
const O_RDWR = 0o2n;
const O_CREAT = 0o100n;
const O_TRUNC = 0o1000n;

export interface CompiledPolicy {
  /** The two BPF programs, in installation order. */
  filters: Buffer[];
  specs: NativeFilterSpec[];
  /** Names the profile listed that this kernel/libseccomp does not know (skipped, like runc). */
  skipped: string[];
  /** Rules left out by includes/excludes. */
  excluded: number;
  /** Numbers answered ENOSYS because they are newer than anything the profile names. */
  enosys: number[];
  alwaysDenied: number[];
  conditionallyDenied: number[];
  /** Syscalls the overlay notifies, with their nr. */
  notified: Map<string, number>;
  /** Answer for notified calls outside the built-in kinds (the profile's report list). */
  verdicts: { nr: number; errno: number }[];
}

const NATIVE_ARCH: Record<string, string[]> = {
  x64: ['amd64', 'x86_64', 'SCMP_ARCH_X86_64'],
  arm64: ['arm64', 'aarch64', 'SCMP_ARCH_AARCH64'],
};

function kernelAtLeast(min: string): boolean {
  const [a = 0, b = 0] = release().split(/[.-]/).map((x) => Number.parseInt(x, 10));
  const [c = 0, d = 0] = min.split('.').map((x) => Number.parseInt(x, 10));
  return a > c || (a === c && b >= d);
}

/** Docker's selector semantics; the sandbox is granted no capabilities beyond its user's. */
function selectorMatches(sel: OciFilterSelector | undefined, wantAll: boolean): boolean {
  if (!sel) return wantAll;
  const checks: boolean[] = [];
  const arch = NATIVE_ARCH[process.arch] ?? [process.arch];
  if (sel.arches && sel.arches.length) checks.push(sel.arches.some((a) => arch.includes(a)));
  if (sel.caps && sel.caps.length) checks.push(false);
  if (sel.minKernel) checks.push(kernelAtLeast(sel.minKernel));
  if (checks.length === 0) return wantAll;
  return wantAll ? checks.every(Boolean) : checks.some(Boolean);
}

const OP: Record<OciOp, CompareOp> = {
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
};

function condition(a: OciArg): NativeCondition {
  // OCI: MASKED_EQ is (arg & value) == valueTwo; libseccomp: (arg & datum_a) == datum_b.
  return { index: a.index, op: OP[a.op], a: a.value, b: a.valueTwo };
}

/** runc: conditions on different indexes AND together; a repeated index ORs (one rule each). */
export function expandArgs(args: readonly OciArg[]): NativeCondition[][] {
  if (args.length === 0) return [[]];
  const byIndex = new Map<number, OciArg[]>();
  for (const a of args) byIndex.set(a.index, [...(byIndex.get(a.index) ?? []), a]);
  let out: NativeCondition[][] = [[]];
  for (const group of [...byIndex.keys()].sort((x, y) => x - y).map((k) => byIndex.get(k)!)) {
    const next: NativeCondition[][] = [];
    for (const prefix of out) for (const a of group) next.push([...prefix, condition(a)]);
    out = next;
  }
  return out;
}

export function ociAction(action: OciAction, errnoRet: number | undefined, defaultErrno: number | undefined): { action: RuleAction; errno?: number } {
  switch (action) {
    case 'SCMP_ACT_ALLOW':
    case 'SCMP_ACT_NOTIFY': // reported by the overlay, allowed here
      return { action: 'allow' };
    case 'SCMP_ACT_ERRNO':
      return { action: 'errno', errno: errnoRet ?? defaultErrno ?? EPERM };
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return { action: 'kill_thread' };
    case 'SCMP_ACT_KILL_PROCESS':
      return { action: 'kill_process' };
    case 'SCMP_ACT_TRAP':
      return { action: 'trap' };
    case 'SCMP_ACT_TRACE': // no tracer is ever attached: the kernel answers ENOSYS
      return { action: 'errno', errno: ENOSYS };
    case 'SCMP_ACT_LOG':
      return { action: 'log' };
  }
}

export interface CompileOptions {
  /** Notify write-opens (for reporting and path checks). */
  reportWrites: boolean;
  /** Notify network calls. */
  reportNetwork: boolean;
  /** Notify execve/execveat. */
  reportExec: boolean;
  /** Highest syscall number to consider for the ENOSYS range. */
  maxNr?: number;
}

export function compilePolicy(native: NativeAddon, profile: SandboxProfile, options: CompileOptions): CompiledPolicy {
  const skipped = new Set<string>();
  const resolve = (name: string): number => {
    const nr = native.resolveSyscall(name);
    if (nr < 0) skipped.add(name);
    return nr;
  };
  const mg = profile.modelguard;
  const alwaysDenied = new Set<number>();
  for (const n of ALWAYS_DENIED) {
    const nr = native.resolveSyscall(n);
    if (nr >= 0) alwaysDenied.add(nr);
  }

  // Filter 1: the profile.
  const defaultAct = ociAction(profile.defaultAction, undefined, profile.defaultErrnoRet);
  const rules: NativeRule[] = [];
  const named = new Set<number>();
  let excluded = 0;
  let maxKnown = -1;
  for (const r of profile.syscalls) {
    if (!selectorMatches(r.includes, true) || (r.excludes && selectorMatches(r.excludes, false))) {
      excluded++;
      continue;
    }
    const act = ociAction(r.action, r.errnoRet, profile.defaultErrnoRet);
    // libseccomp refuses (EACCES) a rule whose action is the default one; it would change nothing.
    const redundant = act.action === defaultAct.action && act.errno === defaultAct.errno;
    for (const name of r.names) {
      const nr = resolve(name);
      if (nr < 0) continue;
      named.add(nr);
      maxKnown = Math.max(maxKnown, nr);
      if (alwaysDenied.has(nr) || redundant) continue;
      for (const conds of expandArgs(r.args)) rules.push({ nr, name, ...act, args: conds });
    }
  }
  for (const nr of alwaysDenied) {
    named.add(nr);
    if (defaultAct.action !== 'allow') rules.push({ nr, name: native.syscallName(nr) ?? String(nr), action: 'allow' });
  }
  const enosys: number[] = [];
  if (defaultAct.action !== 'allow') {
    for (let nr = maxKnown + 1; nr < (options.maxNr ?? 1024); nr++) {
      if (named.has(nr)) continue;
      enosys.push(nr);
      rules.push({ nr, action: 'errno', errno: ENOSYS });
    }
  }
  const profileSpec: NativeFilterSpec = { defaultAction: defaultAct, rules, optimize: true };

  // Filter 2: the notify overlay (default allow, every rule NOTIFY, so no rule can shadow another).
  const notified = new Map<string, number>();
  const overlay: NativeRule[] = [];
  const notify = (name: string, args: NativeCondition[] = []): number => {
    const nr = native.resolveSyscall(name);
    if (nr < 0) return nr;
    notified.set(name, nr);
    overlay.push({ nr, name, action: 'notify', args });
    return nr;
  };
  for (const nr of alwaysDenied) notify(native.syscallName(nr)!);
  const conditionallyDenied = new Set<number>();
  for (const c of CONDITIONALLY_DENIED) {
    const nr = notify(c.name, [{ index: c.index, op: 'masked_eq', a: 0xffffffffn, b: c.value }]);
    if (nr >= 0) conditionallyDenied.add(nr);
  }
  notify('personality');
  if (options.reportNetwork) for (const n of NETWORK_CALLS) notify(n);
  if (options.reportExec) for (const n of EXEC_CALLS) notify(n);
  if (options.reportWrites) {
    for (const bit of [O_WRONLY, O_RDWR, O_CREAT, O_TRUNC]) {
      notify('open', [{ index: 1, op: 'masked_eq', a: bit, b: bit }]);
      notify('openat', [{ index: 2, op: 'masked_eq', a: bit, b: bit }]);
    }
    notify('creat');
    notify('openat2');
  }
  const verdicts: { nr: number; errno: number }[] = [];
  const builtin = new Set([...notified.keys()]);
  for (const name of mg.report) {
    if (builtin.has(name)) continue;
    const nr = notify(name);
    if (nr < 0) skipped.add(name);
    else verdicts.push({ nr, errno: 0 });
  }
  const overlaySpec: NativeFilterSpec = { defaultAction: { action: 'allow' }, rules: overlay };
  const filters = [native.compileFilter(profileSpec), native.compileFilter(overlaySpec)];
  return {
    filters,
    specs: [profileSpec, overlaySpec],
    skipped: [...skipped].sort(),
    excluded,
    enosys,
    alwaysDenied: [...alwaysDenied],
    conditionallyDenied: [...conditionallyDenied],
    notified,
    verdicts,
  };
}
