/**
 * Turns what the supervisor decoded into report events: egress destinations, DNS query names,
 * exec argv, write paths. Everything here is wording and decoding; no decision is made here.
 */
import type { NativeEvent } from './native.js';

export type EventAction = 'denied' | 'allowed' | 'killed';

export interface Egress {
  protocol: string;
  address: string;
  port: number;
  family?: string;
  dnsName?: string;
  dnsType?: string;
}

export interface RunEvent {
  /** ISO 8601 time the call was seen. */
  time: string;
  pid: number;
  syscall: string;
  action: EventAction;
  /** Decoded arguments (names, not raw registers, where the call is known). */
  args: Record<string, unknown>;
  egress?: Egress;
  path?: string;
  argv?: string[];
  /** errno name the caller got, when denied. */
  errno?: string;
  /** Why: "always denied", "outside the write list", "network denied"… */
  reason?: string;
  /** A call a supported runtime makes on its own (libuv's io_uring probe), answered so it falls back. */
  runtimeProbe?: boolean;
  /** How many identical attempts this event stands for (absent: one). */
  count?: number;
  /** Time of the last of them, when `count` > 1. */
  lastTime?: string;
  /**
   * The file the kernel acted on, when `path` (as the caller wrote it) led through a symbolic link
   * somewhere else. Landlock judges this one.
   */
  resolvedPath?: string;
  /** `path` is as the caller wrote it: symbolic links on it could not be followed to tell where it led. */
  pathAsWritten?: true;
}

export type EventKind = 'network' | 'dns' | 'exec' | 'write' | 'denied-syscall' | 'syscall';

const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 9: 'EBADF', 13: 'EACCES', 14: 'EFAULT', 22: 'EINVAL', 36: 'ENAMETOOLONG', 38: 'ENOSYS', 90: 'EMSGSIZE', 95: 'EOPNOTSUPP', 97: 'EAFNOSUPPORT', 111: 'ECONNREFUSED' };

export function errnoName(n: number): string {
  return ERRNO_NAMES[n] ?? `E${n}`;
}

const DNS_TYPES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY' };

/** Decodes the first question of a DNS query; `tcp` skips the two-byte length prefix. */
export function decodeDnsQuery(buf: Uint8Array, tcp = false): { name: string; type: string } | null {
  let off = tcp ? 2 : 0;
  if (buf.length < off + 12) return null;
  const flags = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (flags & 0x8000) return null; // a response, not a query
  const qd = (buf[off + 4]! << 8) | buf[off + 5]!;
  if (qd < 1) return null;
  off += 12;
  const labels: string[] = [];
  for (let guard = 0; guard < 128; guard++) {
    if (off >= buf.length) return null;
    const len = buf[off]!;
    off++;
    if (len === 0) break;
    if (len > 63 || off + len > buf.length) return null;
    labels.push(Buffer.from(buf.subarray(off, off + len)).toString('latin1'));
    off += len;
  }
  if (off + 2 > buf.length) return null;
  const t = (buf[off]! << 8) | buf[off + 1]!;
  return { name: labels.join('.') || '.', type: DNS_TYPES[t] ?? `TYPE${t}` };
}

/** A short, printable preview of a payload. */
export function preview(buf: Uint8Array, max = 64): string {
  const s = Buffer.from(buf.subarray(0, max)).toString('latin1');
  return s.replace(/[^\x20-\x7e]/g, '.') + (buf.length > max ? '…' : '');
}

const AF: Record<number, string> = { 1: 'unix', 2: 'inet', 10: 'inet6', 16: 'netlink', 17: 'packet', 40: 'vsock' };
const SOCK: Record<number, string> = { 1: 'stream', 2: 'dgram', 3: 'raw', 5: 'seqpacket' };

function openFlags(flags: number): string[] {
  const out: string[] = [];
  const acc = flags & 3;
  out.push(acc === 0 ? 'O_RDONLY' : acc === 1 ? 'O_WRONLY' : 'O_RDWR');
  const bits: [number, string][] = [[0o100, 'O_CREAT'], [0o200, 'O_EXCL'], [0o1000, 'O_TRUNC'], [0o2000, 'O_APPEND'], [0o20000000, 'O_TMPFILE']];
  for (const [b, n] of bits) if ((flags & b) === b) out.push(n);
  return out;
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

export interface DecodeContext {
  syscallName(nr: number): string;
}

/** One report event per native event. */
export function toRunEvent(ev: NativeEvent, ctx: DecodeContext): RunEvent {
  const syscall = ctx.syscallName(ev.nr);
  const out: RunEvent = { time: new Date(ev.time).toISOString(), pid: ev.pid, syscall, action: ev.action, args: {} };
  if (ev.action === 'denied' && ev.errno) out.errno = errnoName(ev.errno);
  const a = ev.args;
  if (ev.fd !== undefined) out.args.fd = ev.fd;
  if (ev.sockType) out.args.socketType = ev.sockType;
  if (ev.note) out.args.note = ev.note;
  if (ev.message !== undefined) out.args.message = ev.message;
  if (ev.sockaddr) {
    const sa = ev.sockaddr;
    out.args.family = sa.family;
    if (sa.address !== undefined) out.args.address = sa.address;
    if (sa.port !== undefined) out.args.port = sa.port;
    if ((sa.family === 'inet' || sa.family === 'inet6') && sa.address !== undefined && syscall !== 'bind' && syscall !== 'listen') {
      const protocol = ev.sockType === 'tcp' || ev.sockType === 'udp' ? ev.sockType : ev.sockType || 'ip';
      out.egress = { protocol, address: sa.address, port: sa.port ?? 0, family: sa.family };
    }
  }
  if (ev.payload && ev.payload.length) {
    const port = ev.sockaddr?.port;
    const dns = port === 53 ? decodeDnsQuery(ev.payload, ev.sockType === 'tcp') : null;
    if (dns && out.egress) {
      out.egress.dnsName = dns.name;
      out.egress.dnsType = dns.type;
    } else {
      out.args.payload = preview(ev.payload);
    }
    out.args.length = ev.payloadLength ?? ev.payload.length;
  }
  switch (syscall) {
    case 'socket':
      out.args.family = AF[Number(a[0]! & 0xffffn)] ?? Number(a[0]);
      out.args.type = SOCK[Number(a[1]! & 0xfn)] ?? Number(a[1]! & 0xfn);
      out.args.protocol = Number(a[2]);
      break;
    case 'execve':
    case 'execveat':
      if (ev.path !== undefined) out.path = ev.path;
      if (ev.argv) out.argv = ev.argv;
      break;
    case 'open':
    case 'openat':
    case 'openat2':
    case 'creat':
      if (ev.path !== undefined) out.path = ev.path;
      if (ev.flags !== undefined) out.args.flags = openFlags(ev.flags);
      break;
    case 'rename':
    case 'renameat':
    case 'renameat2':
    case 'link':
    case 'linkat':
      if (ev.path !== undefined) out.path = ev.path;
      if (ev.otherPath !== undefined) out.args.from = ev.otherPath;
      break;
    case 'symlink':
    case 'symlinkat':
      if (ev.path !== undefined) out.path = ev.path;
      if (ev.otherPath !== undefined) out.args.target = ev.otherPath;
      break;
    case 'ioctl':
      out.args.fd = Number(a[0]);
      out.args.request = hex(a[1]! & 0xffffffffn);
      break;
    case 'prctl':
      out.args.option = Number(a[0]! & 0xffffffffn);
      break;
    case 'personality':
      out.args.persona = hex(a[0]! & 0xffffffffn);
      break;
    case 'ptrace':
      out.args.request = Number(a[0]);
      out.args.pid = Number(a[1]);
      break;
    default:
      if (ev.path !== undefined) out.path = ev.path;
      if (!ev.sockaddr && ev.path === undefined) out.args.raw = a.map(hex);
  }
  if (ev.abi) out.args.abi = ev.abi;
  if (ev.runtimeProbe) out.runtimeProbe = true;
  if (ev.action === 'killed') out.reason = 'killed by a profile rule';
  if (ev.action === 'denied') {
    if (ev.abi) out.reason = `a call through the ${ev.abi} ABI, answered ENOSYS`;
    else if (ev.runtimeProbe) out.reason = 'a runtime probe, answered ENOSYS so it falls back';
    else if (ev.alwaysDenied) out.reason = 'always denied';
    else if (ev.byProfile) out.reason = 'denied by the profile';
    else if (ev.simulated) out.reason = 'simulated: nothing was sent';
    else if (out.egress || ev.sockaddr) out.reason = 'network denied';
    else if (syscall.startsWith('exec')) out.reason = 'exec after the first is denied';
    else if (out.path !== undefined) out.reason = 'outside the write list';
    else out.reason = 'denied by the profile';
  }
  return out;
}

export function kindOf(e: RunEvent): EventKind {
  if (e.egress?.dnsName) return 'dns';
  if (e.egress || ['connect', 'bind', 'listen', 'sendto', 'sendmsg', 'sendmmsg', 'socket'].includes(e.syscall)) return 'network';
  if (e.syscall.startsWith('exec')) return 'exec';
  if (e.path !== undefined) return 'write';
  if (e.action === 'denied' || e.action === 'killed') return 'denied-syscall';
  return 'syscall';
}

/**
 * Distinct attempts of one kind kept in a result; identical attempts fold into one event with a
 * count, so a burst of junk calls costs one entry. Past the bound, attempts are counted per kind
 * (`summary.unlisted`) and the text report says so on a line of its own.
 */
export const MAX_DISTINCT_PER_KIND = 10_000;

export interface RunSummary {
  /** Every attempt seen, folded or not. */
  events: number;
  /** Entries in `events` (identical attempts fold into one, with `count`). */
  distinct: number;
  denied: number;
  allowed: number;
  killed: number;
  byKind: Record<EventKind, number>;
  bySyscall: Record<string, number>;
  /** "protocol address:port" for every attempted destination (deduplicated, in order). */
  egress: string[];
  dnsNames: string[];
  blockedExecs: { path?: string; argv?: string[] }[];
  blockedWrites: string[];
  deniedSyscalls: string[];
  /** Distinct attempts beyond MAX_DISTINCT_PER_KIND of their kind: counted, not listed. Absent when none. */
  unlisted?: { distinct: number; events: number; byKind: Partial<Record<EventKind, number>>; limitPerKind: number };
  /** @deprecated kept for readers of older reports: the same as `unlisted.events`. */
  dropped?: number;
}

/**
 * What makes two attempts the same for the report: the kind's identity (the destination, the DNS
 * name, the exec'd path and argv, the path written, or for any other call its name), the outcome
 * and the reason. Arguments that vary freely (raw registers, payload bytes, pids, times) do not
 * count, so varying them cannot flood the report.
 */
export function foldKey(e: RunEvent): string {
  const k = kindOf(e);
  const head = `${k}\0${e.syscall}\0${e.action}\0${e.errno ?? ''}\0${e.reason ?? ''}`;
  switch (k) {
    case 'dns':
      return `${head}\0${e.egress!.dnsName}\0${e.egress!.dnsType ?? ''}\0${e.egress!.protocol}\0${e.egress!.address}`;
    case 'network':
      return e.egress ? `${head}\0${e.egress.protocol}\0${e.egress.address}\0${e.egress.port}` : `${head}\0${String(e.args.family ?? '')}\0${String(e.args.address ?? '')}\0${String(e.args.port ?? '')}\0${String(e.args.type ?? '')}`;
    case 'exec':
      return `${head}\0${e.path ?? ''}\0${JSON.stringify(e.argv ?? [])}`;
    case 'write':
      return `${head}\0${e.path}\0${String(e.args.from ?? e.args.target ?? '')}\0${e.resolvedPath ?? ''}`;
    default:
      return head;
  }
}

function emptySummary(): RunSummary {
  return {
    events: 0,
    distinct: 0,
    denied: 0,
    allowed: 0,
    killed: 0,
    byKind: { network: 0, dns: 0, exec: 0, write: 0, 'denied-syscall': 0, syscall: 0 },
    bySyscall: {},
    egress: [],
    dnsNames: [],
    blockedExecs: [],
    blockedWrites: [],
    deniedSyscalls: [],
  };
}

/**
 * The events of one run, folded as they arrive: memory and report size grow with the number of
 * distinct attempts (bounded per kind), not with the number of calls.
 */
export class EventLog {
  readonly events: RunEvent[] = [];
  private readonly index = new Map<string, RunEvent>();
  private readonly perKind = new Map<EventKind, number>();
  private readonly seen = new Set<string>();
  private readonly s = emptySummary();
  private unlistedDistinct = new Set<string>();
  private unlistedEvents = 0;
  private readonly unlistedByKind: Partial<Record<EventKind, number>> = {};
  /** Distinct unlisted keys remembered, to count distinct attempts; beyond it they are counted as events only. */
  private static readonly UNLISTED_KEYS_MAX = 100_000;

  constructor(private readonly limitPerKind = MAX_DISTINCT_PER_KIND) {}

  /** Adds `times` identical attempts (the event is kept, not copied, when it is the first of its kind). */
  add(e: RunEvent, times = 1): void {
    const s = this.s;
    const kind = kindOf(e);
    s.events += times;
    s[e.action] += times;
    s.byKind[kind] += times;
    s.bySyscall[e.syscall] = (s.bySyscall[e.syscall] ?? 0) + times;
    const key = foldKey(e);
    const had = this.index.get(key);
    if (had) {
      had.count = (had.count ?? 1) + times;
      had.lastTime = e.time;
      return;
    }
    const n = this.perKind.get(kind) ?? 0;
    if (n >= this.limitPerKind) {
      this.unlistedEvents += times;
      if (!this.unlistedDistinct.has(key)) {
        if (this.unlistedDistinct.size < EventLog.UNLISTED_KEYS_MAX) this.unlistedDistinct.add(key);
        this.unlistedByKind[kind] = (this.unlistedByKind[kind] ?? 0) + 1;
      }
      return;
    }
    this.perKind.set(kind, n + 1);
    if (times > 1) e.count = times;
    this.index.set(key, e);
    this.events.push(e);
    this.list(e, kind);
  }

  private once(list: string[], tag: string, v: string): void {
    if (this.seen.has(tag + v)) return;
    this.seen.add(tag + v);
    list.push(v);
  }

  private list(e: RunEvent, kind: EventKind): void {
    const s = this.s;
    if (e.egress) {
      const host = e.egress.family === 'inet6' ? `[${e.egress.address}]` : e.egress.address;
      this.once(s.egress, 'e', `${e.egress.protocol} ${host}:${e.egress.port}`);
      if (e.egress.dnsName) this.once(s.dnsNames, 'd', e.egress.dnsName);
    }
    if (e.action === 'denied' && kind === 'exec') s.blockedExecs.push({ ...(e.path !== undefined ? { path: e.path } : {}), ...(e.argv ? { argv: e.argv } : {}) });
    if (e.action === 'denied' && kind === 'write' && e.path !== undefined) this.once(s.blockedWrites, 'w', e.resolvedPath ?? e.path);
    if (e.action !== 'allowed' && kind === 'denied-syscall') this.once(s.deniedSyscalls, 's', e.syscall);
  }

  summary(): RunSummary {
    const out: RunSummary = {
      ...this.s,
      distinct: this.events.length,
      byKind: { ...this.s.byKind },
      bySyscall: { ...this.s.bySyscall },
      egress: [...this.s.egress],
      dnsNames: [...this.s.dnsNames],
      blockedExecs: [...this.s.blockedExecs],
      blockedWrites: [...this.s.blockedWrites],
      deniedSyscalls: [...this.s.deniedSyscalls],
    };
    if (this.unlistedEvents > 0) {
      const distinct = Object.values(this.unlistedByKind).reduce((a, b) => a + (b ?? 0), 0);
      out.unlisted = { distinct, events: this.unlistedEvents, byKind: { ...this.unlistedByKind }, limitPerKind: this.limitPerKind };
      out.dropped = this.unlistedEvents;
    }
    return out;
  }
}

/** The summary of a list of events (folding them as a run would). */
export function summarize(events: readonly RunEvent[]): RunSummary {
  const log = new EventLog(Number.MAX_SAFE_INTEGER);
  for (const e of events) {
    const { count, ...one } = e;
    log.add(one, count ?? 1);
  }
  return log.summary();
}
