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

export interface RunSummary {
  events: number;
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
  /** Events beyond the result's limit (counted, not kept). */
  dropped?: number;
}

export function summarize(events: readonly RunEvent[]): RunSummary {
  const s: RunSummary = {
    events: events.length,
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
  const seen = new Set<string>();
  const once = (list: string[], key: string, v: string): void => {
    if (seen.has(key + v)) return;
    seen.add(key + v);
    list.push(v);
  };
  for (const e of events) {
    s[e.action]++;
    s.byKind[kindOf(e)]++;
    s.bySyscall[e.syscall] = (s.bySyscall[e.syscall] ?? 0) + 1;
    if (e.egress) {
      const host = e.egress.family === 'inet6' ? `[${e.egress.address}]` : e.egress.address;
      once(s.egress, 'e', `${e.egress.protocol} ${host}:${e.egress.port}`);
      if (e.egress.dnsName) once(s.dnsNames, 'd', e.egress.dnsName);
    }
    if (e.action === 'denied' && e.syscall.startsWith('exec')) s.blockedExecs.push({ ...(e.path !== undefined ? { path: e.path } : {}), ...(e.argv ? { argv: e.argv } : {}) });
    if (e.action === 'denied' && kindOf(e) === 'write' && e.path !== undefined) once(s.blockedWrites, 'w', e.path);
    if (e.action !== 'allowed' && kindOf(e) === 'denied-syscall') once(s.deniedSyscalls, 's', e.syscall);
  }
  return s;
}
