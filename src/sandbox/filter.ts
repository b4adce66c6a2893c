/**
 * Turns a profile into one seccomp filter (with the notification listener) and the table the
 * supervisor answers from. What BPF decides here is decided on registers alone; what it hands to
 * the supervisor is decided there without trusting memory the kernel reads again (the rule and the
 * table are at the top of native/addon/supervisor.cc).
 *
 * Profiles whose default denies (loader, inference, Docker's):
 *   default action NOTIFY — every call the profile does not allow reaches the supervisor, which
 *   denies it with the profile's errno *and reports it*; the profile's ALLOW rules stay in BPF, so
 *   hot calls never leave the kernel. Calls modelguard decides (network, exec, write-opens, path
 *   and metadata changes, always-denied, personality, the report list) get no ALLOW rule: they are
 *   notified and the supervisor applies the profile's own rules to them (`profileRules`), then its
 *   policy. `openat`/`open` keep an ALLOW rule for opens without write flags; `ioctl` keeps ALLOW
 *   rules for every 32-bit request but TIOCSTI/TIOCLINUX (as masked blocks: the kernel reads an int).
 * Profiles whose default allows (audit):
 *   default ALLOW; NOTIFY rules for what modelguard decodes and always denies; the profile's other
 *   rules stay as they are.
 * Everywhere, on registers:
 *   - socket(): only the profile's families (and netlink protocols) are allowed; others are
 *     notified, denied with EAFNOSUPPORT and reported;
 *   - clone() with a namespace flag is notified, denied and reported; clone3() answers ENOSYS (its
 *     flags are in memory, out of BPF's reach), and the C library falls back to clone();
 *   - io_uring_* is notified and answered ENOSYS, reported as a runtime probe (libuv falls back);
 *   - foreign architectures and x32 calls are notified (libseccomp's bad-arch action), answered
 *     ENOSYS and reported; a profile's kill rules are notified, and the supervisor kills and
 *     reports: no process of the tree dies of SIGSYS unseen;
 *   - syscalls newer than the profile answer ENOSYS.
 */
import { release } from 'node:os';
import { compileFilterCached } from './bpf-cache.js';
import type { CompareOp, NativeAddon, NativeCondition, NativeFilterSpec, NativeRule, RuleAction } from './native.js';
import { NETLINK_PROTOCOLS, SOCKET_FAMILIES, type OciAction, type OciArg, type OciFilterSelector, type OciOp, type SandboxProfile } from './profile.js';

export const EPERM = 1;
export const ENOSYS = 38;
export const EAFNOSUPPORT = 97;

/** Denied whatever the profile says; every attempt is reported. */
export const ALWAYS_DENIED = [
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd',
  'mount', 'umount', 'umount2', 'pivot_root', 'move_mount', 'open_tree', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'mount_setattr',
  'unshare', 'setns', 'bpf', 'perf_event_open', 'keyctl', 'add_key', 'request_key', 'userfaultfd',
  'kexec_load', 'kexec_file_load',
  'init_module', 'finit_module', 'delete_module', 'seccomp', 'reboot', 'swapon', 'swapoff', 'acct',
  'iopl', 'ioperm', 'name_to_handle_at', 'open_by_handle_at', 'lookup_dcookie', 'quotactl', 'quotactl_fd',
] as const;

/** Denied only with particular arguments (low 32 bits compared: the kernel reads them as int). */
export const CONDITIONALLY_DENIED: { name: string; index: number; value: bigint; why: string }[] = [
  { name: 'prctl', index: 0, value: 22n, why: 'prctl(PR_SET_SECCOMP)' },
  { name: 'ioctl', index: 1, value: 0x5412n, why: 'ioctl(TIOCSTI)' },
  { name: 'ioctl', index: 1, value: 0x541cn, why: 'ioctl(TIOCLINUX)' },
];

/**
 * Calls a supported runtime makes on its own to probe the kernel: answered ENOSYS so it falls back
 * (libuv on Node 22+ tries io_uring at start-up), and reported as a runtime probe, never let through.
 */
export const RUNTIME_PROBES = ['io_uring_setup', 'io_uring_enter', 'io_uring_register'] as const;

/** The namespace flags of clone(): a new namespace of any kind is denied (low 32 bits). */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000n; // NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET

/** Denied when any of `mask`'s bits is set in the argument. */
export const MASK_DENIED: { name: string; index: number; mask: bigint; why: string }[] = [
  { name: 'clone', index: 0, mask: CLONE_NAMESPACE_FLAGS, why: 'clone() into a new namespace' },
];

/** Answered ENOSYS in BPF whatever the profile says: their arguments are in memory BPF cannot read. */
export const ENOSYS_CALLS = ['clone3'] as const;

/** Past the highest family the kernel knows (AF_MAX). */
const AF_MAX = 46;

/** personality() values that are allowed; anything else is denied and reported. */
export const PERSONALITY_ALLOWED = [0n, 0xffffffffn];

export const NETWORK_CALLS = ['connect', 'bind', 'listen', 'sendto', 'sendmsg', 'sendmmsg'] as const;
export const EXEC_CALLS = ['execve', 'execveat'] as const;
const O_WRONLY = 0o1n;
const O_RDWR = 0o2n;
const O_CREAT = 0o100n;
const O_TRUNC = 0o1000n;
const WRITE_BITS = [O_WRONLY, O_RDWR, O_CREAT, O_TRUNC];
const WRITE_MASK = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;

/** A profile rule as the supervisor evaluates it for a notified call. */
export interface SupervisorRule {
  nr: number;
  action: 'allow' | 'errno' | 'kill';
  errno: number;
  conds: NativeCondition[];
}

export interface CompiledPolicy {
  /** The BPF program, installed with a notification listener. */
  filters: Buffer[];
  specs: NativeFilterSpec[];
  /** `notify` when the profile's default denies (every such call is reported), `allow` otherwise. */
  mode: 'notify-default' | 'allow-default';
  /** errno for calls no profile rule allows (0: allowed). */
  defaultErrno: number;
  /** Names the profile listed that this kernel/libseccomp does not know (skipped, like runc). */
  skipped: string[];
  /** Rules left out by includes/excludes. */
  excluded: number;
  /** Numbers answered ENOSYS because they are newer than anything the profile names. */
  enosys: number[];
  alwaysDenied: number[];
  /** nr → argument index and low-32-bit values that are always denied. */
  conditionallyDenied: { nr: number; index: number; values: number[] }[];
  /** Syscalls the supervisor decodes, with their nr. */
  notified: Map<string, number>;
  /** The profile's rules, for the supervisor to apply to notified calls. */
  profileRules: SupervisorRule[];
  /** Calls from the report list (allowed by the profile, reported). */
  reportOnly: number[];
  /** nr → argument index and bits that deny (clone's namespace flags). */
  maskDenied: { nr: number; index: number; mask: bigint }[];
  /** Answered ENOSYS by the supervisor and reported as a runtime's probe. */
  runtimeProbes: number[];
  /** Socket families the profile allows (empty: any). */
  socketFamilies: number[];
  /** Netlink protocols the profile allows (empty: any). */
  netlinkProtocols: number[];
}

/** The fields of the supervisor's options that come from the compiled policy. */
export function supervisorPolicy(policy: CompiledPolicy, landlockAbi: number): {
  alwaysDenied: number[];
  conditionallyDenied: { nr: number; index: number; values: number[] }[];
  maskDenied: { nr: number; index: number; mask: bigint }[];
  runtimeProbes: number[];
  socketFamilies: number[];
  netlinkProtocols: number[];
  defaultErrno: number;
  profileRules: SupervisorRule[];
  personalityAllowed: number[];
  landlockAbi: number;
} {
  return {
    alwaysDenied: policy.alwaysDenied,
    conditionallyDenied: policy.conditionallyDenied,
    maskDenied: policy.maskDenied,
    runtimeProbes: policy.runtimeProbes,
    socketFamilies: policy.socketFamilies,
    netlinkProtocols: policy.netlinkProtocols,
    defaultErrno: policy.defaultErrno,
    profileRules: policy.profileRules,
    personalityAllowed: PERSONALITY_ALLOWED.map(Number),
    landlockAbi,
  };
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

/** Masked blocks covering every 32-bit value of an argument except `denied` (upper half zero). */
export function allowExcept32(index: number, denied: readonly bigint[]): NativeCondition[] {
  const sorted = [...new Set(denied)].sort((a, b) => (a < b ? -1 : 1));
  const gaps: [bigint, bigint][] = [];
  let lo = 0n;
  for (const d of sorted) {
    if (d > lo) gaps.push([lo, d - 1n]);
    lo = d + 1n;
  }
  if (lo <= 0xffffffffn) gaps.push([lo, 0xffffffffn]);
  const out: NativeCondition[] = [];
  const FULL = 0xffffffffffffffffn;
  for (let [a, b] of gaps) {
    while (a <= b) {
      let k = 0n;
      while (k < 32n && (a & ((1n << (k + 1n)) - 1n)) === 0n && a + (1n << (k + 1n)) - 1n <= b) k++;
      out.push({ index, op: 'masked_eq', a: FULL ^ ((1n << k) - 1n), b: a });
      a += 1n << k;
    }
  }
  return out;
}

export function compilePolicy(native: NativeAddon, profile: SandboxProfile, options: CompileOptions): CompiledPolicy {
  const skipped = new Set<string>();
  const nrOf = (name: string): number => native.resolveSyscall(name);
  const mg = profile.modelguard;
  const defaultAct = ociAction(profile.defaultAction, undefined, profile.defaultErrnoRet);
  const allowDefault = defaultAct.action === 'allow';

  const alwaysDenied = new Set<number>();
  for (const n of ALWAYS_DENIED) {
    const nr = nrOf(n);
    if (nr >= 0) alwaysDenied.add(nr);
  }
  const condDenied = new Map<number, { index: number; values: bigint[] }>();
  for (const c of CONDITIONALLY_DENIED) {
    const nr = nrOf(c.name);
    if (nr < 0) continue;
    const e = condDenied.get(nr) ?? { index: c.index, values: [] };
    e.values.push(c.value);
    condDenied.set(nr, e);
  }
  const maskDenied = new Map<number, { index: number; mask: bigint }>();
  for (const m of MASK_DENIED) {
    const nr = nrOf(m.name);
    if (nr >= 0) maskDenied.set(nr, { index: m.index, mask: m.mask });
  }
  const runtimeProbes = RUNTIME_PROBES.map(nrOf).filter((n) => n >= 0);
  const enosysCalls = new Set(ENOSYS_CALLS.map(nrOf).filter((n) => n >= 0));
  const socketNr = nrOf('socket');
  const families = mg.socketFamilies.map((f) => SOCKET_FAMILIES[f]!).filter((f) => f !== undefined);
  const netlinkProtos = mg.netlinkProtocols.map((f) => NETLINK_PROTOCOLS[f]!).filter((f) => f !== undefined);
  /** Register conditions under which socket() is allowed in BPF: one set per family (and protocol). */
  const socketAllowed: NativeCondition[][] = [];
  for (const f of families) {
    if (f === SOCKET_FAMILIES.netlink && netlinkProtos.length) {
      for (const proto of netlinkProtos) socketAllowed.push([{ index: 0, op: 'eq', a: BigInt(f), b: 0n }, { index: 2, op: 'eq', a: BigInt(proto), b: 0n }]);
    } else {
      socketAllowed.push([{ index: 0, op: 'eq', a: BigInt(f), b: 0n }]);
    }
  }
  // The calls the supervisor decodes.
  const notified = new Map<string, number>();
  const mark = (name: string): void => {
    const nr = nrOf(name);
    if (nr >= 0) notified.set(name, nr);
  };
  for (const nr of alwaysDenied) notified.set(native.syscallName(nr) ?? String(nr), nr);
  for (const nr of runtimeProbes) notified.set(native.syscallName(nr) ?? String(nr), nr);
  mark('personality');
  mark('prctl');
  if (options.reportNetwork) for (const n of NETWORK_CALLS) mark(n);
  if (options.reportExec) for (const n of EXEC_CALLS) mark(n);
  if (options.reportWrites) {
    for (const n of ['creat', 'openat2']) mark(n);
    // The path-changing calls: the supervisor's own table says which, so BPF and decoder agree.
    for (const nr of native.pathWriteSyscalls()) notified.set(native.syscallName(nr) ?? String(nr), nr);
  }
  const reportOnly: number[] = [];
  for (const name of mg.report) {
    const nr = nrOf(name);
    if (nr < 0) skipped.add(name);
    else if (![...notified.values()].includes(nr)) {
      notified.set(name, nr);
      reportOnly.push(nr);
    }
  }
  const fullyNotified = new Set(notified.values());
  const openNr = nrOf('open');
  const openatNr = nrOf('openat');
  const ioctlNr = nrOf('ioctl');
  const flagIndex = new Map<number, number>([[openNr, 1], [openatNr, 2]]);

  // The profile's rules, resolved.
  const profileRules: SupervisorRule[] = [];
  const bpf: NativeRule[] = [];
  const named = new Set<number>();
  let excluded = 0;
  let maxKnown = -1;
  for (const r of profile.syscalls) {
    if (!selectorMatches(r.includes, true) || (r.excludes && selectorMatches(r.excludes, false))) {
      excluded++;
      continue;
    }
    const given = ociAction(r.action, r.errnoRet, profile.defaultErrnoRet);
    // A kill rule kills through the supervisor, which reports it (BPF's SIGSYS would go unseen).
    const act: { action: RuleAction; errno?: number } = given.action === 'kill_process' || given.action === 'kill_thread' ? { action: 'notify' } : given;
    // A rule that says what the default says changes nothing (and libseccomp refuses it).
    const redundant = act.action === defaultAct.action && act.errno === defaultAct.errno;
    for (const name of r.names) {
      const nr = nrOf(name);
      if (nr < 0) {
        skipped.add(name);
        continue;
      }
      named.add(nr);
      maxKnown = Math.max(maxKnown, nr);
      if (redundant) continue;
      for (const conds of expandArgs(r.args)) {
        const sup: SupervisorRule = { nr, action: given.action === 'allow' || given.action === 'log' ? 'allow' : given.action === 'errno' ? 'errno' : 'kill', errno: given.errno ?? 0, conds };
        profileRules.push(sup);
        if (fullyNotified.has(nr) || enosysCalls.has(nr)) continue; // decided by the supervisor, or ENOSYS below
        if (nr === socketNr && families.length && act.action === 'allow') {
          // Only the profile's families stay in BPF; a condition of the profile's own on the family
          // leaves every socket() to the supervisor.
          if (allowDefault || conds.some((c) => c.index === 0 || c.index === 2)) continue;
          for (const fam of socketAllowed) bpf.push({ nr, name, action: 'allow', args: [...conds, ...fam] });
          continue;
        }
        if (maskDenied.has(nr) && act.action === 'allow' && !allowDefault) {
          const md = maskDenied.get(nr)!;
          const own = conds.filter((c) => c.index === md.index);
          // The profile's own mask on that argument is kept only when it already denies every bit.
          if (own.length === 0) bpf.push({ nr, name, action: 'allow', args: [...conds, { index: md.index, op: 'masked_eq', a: md.mask, b: 0n }] });
          else if (own.every((c) => c.op === 'masked_eq' && (c.a & md.mask) === md.mask && (c.b & md.mask) === 0n)) bpf.push({ nr, name, action: 'allow', args: conds });
          continue;
        }
        if (!allowDefault && act.action === 'allow' && flagIndex.has(nr) && options.reportWrites) {
          // Opens without write flags stay in BPF; the rest reach the supervisor.
          const idx = flagIndex.get(nr)!;
          if (conds.some((c) => c.index === idx)) continue;
          bpf.push({ nr, name, action: 'allow', args: [...conds, { index: idx, op: 'masked_eq', a: WRITE_MASK, b: 0n }] });
          continue;
        }
        if (condDenied.has(nr)) {
          const cd = condDenied.get(nr)!;
          if (allowDefault || act.action !== 'allow') continue; // decided by the supervisor
          if (conds.some((c) => c.index === cd.index)) {
            // Explicit values: keep those that are not denied.
            if (conds.some((c) => c.index === cd.index && c.op === 'eq' && cd.values.includes(c.a & 0xffffffffn))) continue;
            if (conds.every((c) => c.index !== cd.index || c.op === 'eq')) bpf.push({ nr, name, action: 'allow', args: conds });
            continue;
          }
          if (nr === ioctlNr) for (const block of allowExcept32(cd.index, cd.values)) bpf.push({ nr, name, action: 'allow', args: [...conds, block] });
          continue;
        }
        if (allowDefault && flagIndex.has(nr) && options.reportWrites) continue; // overlay below
        bpf.push({ nr, name, ...act, args: conds });
      }
    }
  }
  for (const nr of alwaysDenied) named.add(nr);
  for (const nr of runtimeProbes) named.add(nr);
  for (const nr of enosysCalls) {
    named.add(nr);
    bpf.push({ nr, name: native.syscallName(nr) ?? String(nr), action: 'errno', errno: ENOSYS });
  }

  // Calls newer than anything the profile names answer ENOSYS (runc does the same).
  const enosys: number[] = [];
  if (!allowDefault) {
    for (let nr = maxKnown + 1; nr < (options.maxNr ?? 1024); nr++) {
      if (named.has(nr) || fullyNotified.has(nr)) continue;
      enosys.push(nr);
      bpf.push({ nr, action: 'errno', errno: ENOSYS });
    }
  }

  if (allowDefault) {
    // Overlay on an allowing default: notify what the supervisor decodes or always denies.
    for (const nr of fullyNotified) bpf.push({ nr, name: native.syscallName(nr) ?? String(nr), action: 'notify' });
    for (const [nr, cd] of condDenied) {
      if (fullyNotified.has(nr)) continue;
      for (const v of cd.values) bpf.push({ nr, action: 'notify', args: [{ index: cd.index, op: 'masked_eq', a: 0xffffffffn, b: v }] });
    }
    for (const [nr, md] of maskDenied) {
      if (fullyNotified.has(nr)) continue;
      for (let bit = 1n; bit <= 0xffffffffn; bit <<= 1n) if (md.mask & bit) bpf.push({ nr, action: 'notify', args: [{ index: md.index, op: 'masked_eq', a: bit, b: bit }] });
    }
    if (families.length && socketNr >= 0) {
      // Every family value the profile does not name, and every netlink protocol it does not.
      for (let f = 0; f < AF_MAX; f++) {
        if (!families.includes(f)) bpf.push({ nr: socketNr, action: 'notify', args: [{ index: 0, op: 'masked_eq', a: 0xffffffffn, b: BigInt(f) }] });
      }
      bpf.push({ nr: socketNr, action: 'notify', args: [{ index: 0, op: 'ge', a: BigInt(AF_MAX), b: 0n }] });
      if (families.includes(SOCKET_FAMILIES.netlink!) && netlinkProtos.length) {
        for (let p = 0; p < 32; p++) {
          if (!netlinkProtos.includes(p)) bpf.push({ nr: socketNr, action: 'notify', args: [{ index: 0, op: 'masked_eq', a: 0xffffffffn, b: BigInt(SOCKET_FAMILIES.netlink!) }, { index: 2, op: 'eq', a: BigInt(p), b: 0n }] });
        }
        bpf.push({ nr: socketNr, action: 'notify', args: [{ index: 0, op: 'masked_eq', a: 0xffffffffn, b: BigInt(SOCKET_FAMILIES.netlink!) }, { index: 2, op: 'ge', a: 32n, b: 0n }] });
      }
    }
    if (options.reportWrites) {
      for (const [nr, idx] of flagIndex) {
        if (nr < 0) continue;
        for (const bit of WRITE_BITS) bpf.push({ nr, action: 'notify', args: [{ index: idx, op: 'masked_eq', a: bit, b: bit }] });
      }
    }
  }
  // Calls through another ABI are notified, answered ENOSYS and reported, never killed unseen.
  const spec: NativeFilterSpec = { defaultAction: allowDefault ? { action: 'allow' } : { action: 'notify' }, badArchAction: 'notify', rules: bpf, optimize: true };
  const filters = [compileFilterCached(native, spec)];
  return {
    filters,
    specs: [spec],
    mode: allowDefault ? 'allow-default' : 'notify-default',
    defaultErrno: allowDefault ? 0 : defaultAct.action === 'errno' ? (defaultAct.errno ?? EPERM) : EPERM,
    skipped: [...skipped].sort(),
    excluded,
    enosys,
    alwaysDenied: [...alwaysDenied],
    conditionallyDenied: [...condDenied].map(([nr, cd]) => ({ nr, index: cd.index, values: cd.values.map(Number) })),
    notified,
    profileRules,
    reportOnly,
    maskDenied: [...maskDenied].map(([nr, m]) => ({ nr, index: m.index, mask: m.mask })),
    runtimeProbes,
    socketFamilies: families,
    netlinkProtocols: netlinkProtos,
  };
}

/**
 * What the profile says about a call the supervisor sees: 0 allow, else the errno (the addon's
 * ProfileVerdict does the same; `guard profile check` and the tests use this one).
 */
export function profileVerdict(policy: Pick<CompiledPolicy, 'profileRules' | 'defaultErrno'>, nr: number, args: readonly bigint[]): number {
  const rules = policy.profileRules.filter((r) => r.nr === nr);
  if (rules.length === 0) return policy.defaultErrno;
  let err = -1;
  for (const r of rules) {
    const match = r.conds.every((c) => {
      const v = BigInt.asUintN(64, args[c.index] ?? 0n);
      switch (c.op) {
        case 'ne': return v !== c.a;
        case 'lt': return v < c.a;
        case 'le': return v <= c.a;
        case 'eq': return v === c.a;
        case 'ge': return v >= c.a;
        case 'gt': return v > c.a;
        case 'masked_eq': return (v & c.a) === c.b;
      }
    });
    if (!match) continue;
    if (r.action === 'allow') return 0;
    if (err < 0) err = r.action === 'errno' ? r.errno : EPERM;
  }
  return err >= 0 ? err : policy.defaultErrno;
}
