/**
 * Sandbox profiles: the OCI runtime seccomp JSON that Docker and Podman read, plus an
 * `x-modelguard` section (network, fs, rlimits, exec, report). Loading validates everything and
 * names the option and the fix; explaining says what a profile will do on this machine.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { GuardError } from '../errors.js';
import { PACKAGE_ROOT } from './native.js';

/** Socket families by name, as profiles write them. */
export const SOCKET_FAMILIES: Record<string, number> = { unix: 1, inet: 2, inet6: 10, rds: 21, llc: 26, ib: 27, can: 29, tipc: 30, bluetooth: 31, alg: 38, vsock: 40, qipcrtr: 42, smc: 43, xdp: 44, mctp: 45, netlink: 16, packet: 17 };
/** Netlink protocols by name. */
export const NETLINK_PROTOCOLS: Record<string, number> = { route: 0, sock_diag: 4, xfrm: 6, selinux: 7, audit: 9, connector: 11, netfilter: 12, kobject_uevent: 15, generic: 16 };

export const OCI_ACTIONS = [
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY',
] as const;
export type OciAction = (typeof OCI_ACTIONS)[number];

export const OCI_OPS = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'] as const;
export type OciOp = (typeof OCI_OPS)[number];

export const OCI_ARCHES = [
  'SCMP_ARCH_NATIVE', 'SCMP_ARCH_X86', 'SCMP_ARCH_X86_64', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64', 'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X', 'SCMP_ARCH_PARISC', 'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64', 'SCMP_ARCH_LOONGARCH64',
] as const;

export interface OciArg {
  index: number;
  value: bigint;
  valueTwo: bigint;
  op: OciOp;
}

export interface OciFilterSelector {
  arches?: string[];
  caps?: string[];
  minKernel?: string;
}

export interface OciSyscallRule {
  names: string[];
  action: OciAction;
  errnoRet?: number;
  args: OciArg[];
  comment?: string;
  includes?: OciFilterSelector;
  excludes?: OciFilterSelector;
}

export const RLIMIT_NAMES = ['as', 'nproc', 'nofile', 'cpu', 'fsize', 'core', 'stack', 'memlock', 'data'] as const;
export type RlimitName = (typeof RLIMIT_NAMES)[number];

export type NetworkMode = 'deny' | 'allow';
export type ExecMode = 'first' | 'allow' | 'deny';

export interface ModelguardSection {
  description: string;
  network: NetworkMode;
  /** `first`: the command itself may start, nothing after it; `allow`: report only. */
  exec: ExecMode;
  fs: { read: string[]; write: string[] };
  rlimits: Partial<Record<RlimitName, number>>;
  /** Upper bound on processes+threads (a pids cgroup where possible, RLIMIT_NPROC always). */
  pids: number | null;
  /** Extra syscalls to report (notified, answered per the profile). */
  report: string[];
  /** Report writes but do not refuse them (audit). */
  auditWrites: boolean;
  /**
   * Unix socket paths the command may connect to while the network is denied (the name-service
   * cache by default). Every other unix connect is refused and reported.
   */
  unixSockets: string[];
  /** Keep the user's capabilities (default: none survive, not even root's). */
  keepCapabilities: boolean;
  /**
   * Socket families socket() may create (`unix`, `inet`, `inet6`, `netlink`, …), decided in BPF;
   * every other family is denied and reported. Empty: any family.
   */
  socketFamilies: string[];
  /** Netlink protocols an AF_NETLINK socket may use (`route`, …). Empty: any. */
  netlinkProtocols: string[];
}

/** What a Python/PyTorch or Node program needs: local sockets, the resolver, interface lists. */
export const DEFAULT_SOCKET_FAMILIES = ['unix', 'inet', 'inet6', 'netlink'];
export const DEFAULT_NETLINK_PROTOCOLS = ['route'];

export interface SandboxProfile {
  name: string;
  source: string;
  defaultAction: OciAction;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: OciSyscallRule[];
  modelguard: ModelguardSection;
}

export const BUILTIN_PROFILES = ['loader', 'inference', 'inference-gpu', 'audit'] as const;
export type BuiltinProfile = (typeof BUILTIN_PROFILES)[number];

export function profilesDir(): string {
  return join(PACKAGE_ROOT, 'sandbox-profiles');
}

function invalid(source: string, message: string): GuardError {
  return new GuardError('PROFILE_INVALID', `${source}: ${message}`, { context: { path: source } });
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
  return d[a.length]![b.length]!;
}

function suggest(word: string, known: readonly string[]): string {
  let best = '';
  let bestD = Infinity;
  for (const k of known) {
    const dd = editDistance(word, k);
    if (dd < bestD) {
      bestD = dd;
      best = k;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? `; did you mean \`${best}\`?` : `; expected one of ${known.map((k) => `\`${k}\``).join(', ')}`;
}

function checkKeys(source: string, where: string, obj: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) throw invalid(source, `unknown option \`${k}\` in ${where}${suggest(k, known)}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringList(source: string, where: string, v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(source, `\`${where}\` must be an array of strings`);
  return v as string[];
}

function toBig(source: string, where: string, v: unknown): bigint {
  if (v === undefined || v === null) return 0n;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(v)) return BigInt(v);
  throw invalid(source, `\`${where}\` must be a non-negative integer (use a string for values above 2^53)`);
}

function parseSelector(source: string, where: string, v: unknown): OciFilterSelector | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw invalid(source, `\`${where}\` must be an object`);
  checkKeys(source, where, v, ['arches', 'caps', 'minKernel']);
  const out: OciFilterSelector = {};
  if (v.arches !== undefined) out.arches = stringList(source, `${where}.arches`, v.arches);
  if (v.caps !== undefined) out.caps = stringList(source, `${where}.caps`, v.caps);
  if (v.minKernel !== undefined) {
    if (typeof v.minKernel !== 'string' || !/^\d+\.\d+/.test(v.minKernel)) throw invalid(source, `\`${where}.minKernel\` must look like "4.8"`);
    out.minKernel = v.minKernel;
  }
  return out;
}

const SECTION_DEFAULTS: ModelguardSection = {
  description: '',
  network: 'deny',
  exec: 'first',
  fs: { read: ['/'], write: ['$TMPDIR'] },
  rlimits: {},
  pids: null,
  report: [],
  auditWrites: false,
  unixSockets: [],
  keepCapabilities: false,
  socketFamilies: DEFAULT_SOCKET_FAMILIES,
  netlinkProtocols: DEFAULT_NETLINK_PROTOCOLS,
};

function parseSection(source: string, v: unknown): ModelguardSection {
  if (v === undefined) return structuredClone(SECTION_DEFAULTS);
  if (!isObject(v)) throw invalid(source, '`x-modelguard` must be an object');
  checkKeys(source, 'x-modelguard', v, ['description', 'network', 'exec', 'fs', 'rlimits', 'pids', 'report', 'auditWrites', 'unixSockets', 'keepCapabilities', 'socketFamilies', 'netlinkProtocols']);
  const s = structuredClone(SECTION_DEFAULTS);
  if (v.description !== undefined) {
    if (typeof v.description !== 'string') throw invalid(source, '`x-modelguard.description` must be a string');
    s.description = v.description;
  }
  if (v.network !== undefined) {
    if (v.network !== 'deny' && v.network !== 'allow') throw invalid(source, `\`x-modelguard.network\` must be "deny" or "allow", not ${JSON.stringify(v.network)}`);
    s.network = v.network;
  }
  if (v.exec !== undefined) {
    if (v.exec !== 'first' && v.exec !== 'allow' && v.exec !== 'deny') throw invalid(source, '`x-modelguard.exec` must be "first", "allow" or "deny"');
    s.exec = v.exec;
  }
  if (v.fs !== undefined) {
    if (!isObject(v.fs)) throw invalid(source, '`x-modelguard.fs` must be an object');
    checkKeys(source, 'x-modelguard.fs', v.fs, ['read', 'write']);
    if (v.fs.read !== undefined) s.fs.read = stringList(source, 'x-modelguard.fs.read', v.fs.read);
    s.fs.write = stringList(source, 'x-modelguard.fs.write', v.fs.write);
  }
  if (v.rlimits !== undefined) {
    if (!isObject(v.rlimits)) throw invalid(source, '`x-modelguard.rlimits` must be an object');
    checkKeys(source, 'x-modelguard.rlimits', v.rlimits, RLIMIT_NAMES);
    for (const [k, val] of Object.entries(v.rlimits)) {
      if (val === null) continue;
      if (typeof val !== 'number' || !Number.isSafeInteger(val) || val < 0) throw invalid(source, `\`x-modelguard.rlimits.${k}\` must be a non-negative integer or null`);
      s.rlimits[k as RlimitName] = val;
    }
  }
  if (v.pids !== undefined && v.pids !== null) {
    if (typeof v.pids !== 'number' || !Number.isSafeInteger(v.pids) || v.pids < 1) throw invalid(source, '`x-modelguard.pids` must be a positive integer or null');
    s.pids = v.pids;
  }
  if (v.report !== undefined) s.report = stringList(source, 'x-modelguard.report', v.report);
  if (v.keepCapabilities !== undefined) {
    if (typeof v.keepCapabilities !== 'boolean') throw invalid(source, '`x-modelguard.keepCapabilities` must be a boolean');
    s.keepCapabilities = v.keepCapabilities;
  }
  if (v.unixSockets !== undefined) s.unixSockets = stringList(source, 'x-modelguard.unixSockets', v.unixSockets);
  if (v.socketFamilies !== undefined) {
    s.socketFamilies = stringList(source, 'x-modelguard.socketFamilies', v.socketFamilies);
    for (const f of s.socketFamilies) if (!(f in SOCKET_FAMILIES)) throw invalid(source, `unknown socket family \`${f}\` in \`x-modelguard.socketFamilies\`${suggest(f, Object.keys(SOCKET_FAMILIES))}`);
  }
  if (v.netlinkProtocols !== undefined) {
    s.netlinkProtocols = stringList(source, 'x-modelguard.netlinkProtocols', v.netlinkProtocols);
    for (const f of s.netlinkProtocols) if (!(f in NETLINK_PROTOCOLS)) throw invalid(source, `unknown netlink protocol \`${f}\` in \`x-modelguard.netlinkProtocols\`${suggest(f, Object.keys(NETLINK_PROTOCOLS))}`);
  }
  if (v.auditWrites !== undefined) {
    if (typeof v.auditWrites !== 'boolean') throw invalid(source, '`x-modelguard.auditWrites` must be a boolean');
    s.auditWrites = v.auditWrites;
  }
  return s;
}

const TOP_KEYS = ['defaultAction', 'defaultErrnoRet', 'architectures', 'archMap', 'syscalls', 'flags', 'listenerPath', 'listenerMetadata', 'x-modelguard', '$comment', 'comment'] as const;

/** Validates parsed JSON as an OCI seccomp profile with an optional x-modelguard section. */
export function parseProfile(json: unknown, source = '<profile>', name = basename(source).replace(/\.json$/, '')): SandboxProfile {
  if (!isObject(json)) throw invalid(source, 'a profile is a JSON object');
  checkKeys(source, 'the profile', json, TOP_KEYS);
  if (typeof json.defaultAction !== 'string') throw invalid(source, '`defaultAction` is required (for example "SCMP_ACT_ERRNO")');
  if (!(OCI_ACTIONS as readonly string[]).includes(json.defaultAction)) throw invalid(source, `unknown \`defaultAction\` \`${json.defaultAction}\`${suggest(json.defaultAction, OCI_ACTIONS)}`);
  let defaultErrnoRet: number | undefined;
  if (json.defaultErrnoRet !== undefined) {
    if (typeof json.defaultErrnoRet !== 'number' || !Number.isInteger(json.defaultErrnoRet) || json.defaultErrnoRet < 0 || json.defaultErrnoRet > 4095) throw invalid(source, '`defaultErrnoRet` must be an errno number (0–4095)');
    defaultErrnoRet = json.defaultErrnoRet;
  }
  const architectures = stringList(source, 'architectures', json.architectures);
  if (json.archMap !== undefined && json.archMap !== null) {
    if (!Array.isArray(json.archMap)) throw invalid(source, '`archMap` must be an array');
    for (const [i, m] of json.archMap.entries()) {
      if (!isObject(m) || typeof m.architecture !== 'string') throw invalid(source, `\`archMap[${i}].architecture\` must be a string`);
      checkKeys(source, `archMap[${i}]`, m, ['architecture', 'subArchitectures']);
      architectures.push(m.architecture, ...stringList(source, `archMap[${i}].subArchitectures`, m.subArchitectures));
    }
  }
  for (const a of architectures) if (!(OCI_ARCHES as readonly string[]).includes(a)) throw invalid(source, `unknown architecture \`${a}\`${suggest(a, OCI_ARCHES)}`);
  const syscalls: OciSyscallRule[] = [];
  const list = json.syscalls ?? [];
  if (!Array.isArray(list)) throw invalid(source, '`syscalls` must be an array');
  for (const [i, r] of list.entries()) {
    const where = `syscalls[${i}]`;
    if (!isObject(r)) throw invalid(source, `\`${where}\` must be an object`);
    checkKeys(source, where, r, ['names', 'name', 'action', 'errnoRet', 'args', 'comment', 'includes', 'excludes']);
    const names = r.names !== undefined ? stringList(source, `${where}.names`, r.names) : typeof r.name === 'string' ? [r.name] : [];
    if (names.length === 0) throw invalid(source, `\`${where}.names\` must list at least one syscall`);
    if (typeof r.action !== 'string' || !(OCI_ACTIONS as readonly string[]).includes(r.action)) throw invalid(source, `\`${where}.action\` ${JSON.stringify(r.action)} is not an action${typeof r.action === 'string' ? suggest(r.action, OCI_ACTIONS) : ''}`);
    const rule: OciSyscallRule = { names, action: r.action as OciAction, args: [] };
    if (r.errnoRet !== undefined) {
      if (typeof r.errnoRet !== 'number' || !Number.isInteger(r.errnoRet) || r.errnoRet < 0 || r.errnoRet > 4095) throw invalid(source, `\`${where}.errnoRet\` must be an errno number`);
      rule.errnoRet = r.errnoRet;
    }
    if (r.args !== undefined && r.args !== null) {
      if (!Array.isArray(r.args)) throw invalid(source, `\`${where}.args\` must be an array`);
      for (const [j, a] of r.args.entries()) {
        const aw = `${where}.args[${j}]`;
        if (!isObject(a)) throw invalid(source, `\`${aw}\` must be an object`);
        checkKeys(source, aw, a, ['index', 'value', 'valueTwo', 'op']);
        if (typeof a.index !== 'number' || !Number.isInteger(a.index) || a.index < 0 || a.index > 5) throw invalid(source, `\`${aw}.index\` must be 0–5`);
        if (typeof a.op !== 'string' || !(OCI_OPS as readonly string[]).includes(a.op)) throw invalid(source, `\`${aw}.op\` ${JSON.stringify(a.op)} is not a comparison${typeof a.op === 'string' ? suggest(a.op, OCI_OPS) : ''}`);
        rule.args.push({ index: a.index, op: a.op as OciOp, value: toBig(source, `${aw}.value`, a.value), valueTwo: toBig(source, `${aw}.valueTwo`, a.valueTwo) });
      }
    }
    if (typeof r.comment === 'string') rule.comment = r.comment;
    const inc = parseSelector(source, `${where}.includes`, r.includes);
    const exc = parseSelector(source, `${where}.excludes`, r.excludes);
    if (inc) rule.includes = inc;
    if (exc) rule.excludes = exc;
    syscalls.push(rule);
  }
  const profile: SandboxProfile = { name, source, defaultAction: json.defaultAction as OciAction, architectures, syscalls, modelguard: parseSection(source, json['x-modelguard']) };
  if (defaultErrnoRet !== undefined) profile.defaultErrnoRet = defaultErrnoRet;
  for (const n of profile.modelguard.report) if (!/^[a-z0-9_]+$/.test(n)) throw invalid(source, `\`x-modelguard.report\` entry \`${n}\` is not a syscall name`);
  return profile;
}

/** Loads a built-in profile by name (`loader`, `inference`, `inference-gpu`, `audit`) or a file. */
export function loadProfile(nameOrPath: string): SandboxProfile {
  let path = nameOrPath;
  let name = basename(nameOrPath).replace(/\.json$/, '');
  if (/^[a-z0-9-]+$/.test(nameOrPath) && !existsSync(nameOrPath)) {
    path = join(profilesDir(), `${nameOrPath}.json`);
    name = nameOrPath;
    if (!existsSync(path)) throw new GuardError('PROFILE_INVALID', `no built-in profile \`${nameOrPath}\`${suggest(nameOrPath, BUILTIN_PROFILES)} (or give a path to a JSON file)`, { context: { path } });
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new GuardError('PROFILE_INVALID', `cannot read profile ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e, context: { path } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new GuardError('PROFILE_INVALID', `${path}: not valid JSON (${(e as Error).message})`, { cause: e, context: { path } });
  }
  return parseProfile(json, path, name);
}
