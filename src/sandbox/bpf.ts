/**
 * A classic-BPF interpreter for seccomp filters: evaluates a compiled filter against one
 * `seccomp_data`, so tests and `guard profile check` can ask "what would the kernel answer?"
 * without installing anything. Only the instructions seccomp accepts are implemented.
 */
export interface SeccompData {
  nr: number;
  arch: number;
  instructionPointer?: bigint;
  args?: readonly bigint[];
}

export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_I386 = 0x40000003;
export const AUDIT_ARCH_AARCH64 = 0xc00000b7;

export const SECCOMP_RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  USER_NOTIF: 0x7fc00000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

export type Verdict =
  | { action: 'allow' | 'notify' | 'log' | 'kill_process' | 'kill_thread' | 'trap' }
  | { action: 'errno'; errno: number }
  | { action: 'trace'; data: number };

function dataWord(d: SeccompData, off: number): number {
  if (off === 0) return d.nr >>> 0;
  if (off === 4) return d.arch >>> 0;
  const ip = d.instructionPointer ?? 0n;
  if (off === 8) return Number(ip & 0xffffffffn);
  if (off === 12) return Number(ip >> 32n);
  if (off >= 16 && off < 64 && off % 4 === 0) {
    const i = (off - 16) >> 3;
    const v = BigInt.asUintN(64, d.args?.[i] ?? 0n);
    return Number((off - 16) % 8 === 0 ? v & 0xffffffffn : v >> 32n);
  }
  throw new RangeError(`seccomp_data offset ${off} out of range`);
}

/** Runs the filter; returns the raw 32-bit return value. */
export function runFilter(filter: Uint8Array, d: SeccompData): number {
  const view = new DataView(filter.buffer, filter.byteOffset, filter.byteLength);
  const n = filter.byteLength / 8;
  let A = 0;
  let X = 0;
  const mem = new Uint32Array(16);
  for (let pc = 0, steps = 0; pc < n && steps < 100_000; steps++) {
    const code = view.getUint16(pc * 8, true);
    const jt = view.getUint8(pc * 8 + 2);
    const jf = view.getUint8(pc * 8 + 3);
    const k = view.getUint32(pc * 8 + 4, true);
    pc++;
    const cls = code & 0x07;
    switch (cls) {
      case 0x00: // LD
        if ((code & 0xe0) === 0x20) A = dataWord(d, k); // ABS
        else if ((code & 0xe0) === 0x00) A = k; // IMM
        else if ((code & 0xe0) === 0x60) A = mem[k & 15]!;
        else if ((code & 0xe0) === 0x80) A = 64; // LEN
        else throw new Error(`unsupported BPF ld ${code.toString(16)}`);
        break;
      case 0x01: // LDX
        if ((code & 0xe0) === 0x00) X = k;
        else if ((code & 0xe0) === 0x60) X = mem[k & 15]!;
        else if ((code & 0xe0) === 0x80) X = 64;
        else throw new Error(`unsupported BPF ldx ${code.toString(16)}`);
        break;
      case 0x02:
        mem[k & 15] = A;
        break;
      case 0x03:
        mem[k & 15] = X;
        break;
      case 0x04: {
        const src = code & 0x08 ? X : k;
        switch (code & 0xf0) {
          case 0x00: A = (A + src) >>> 0; break;
          case 0x10: A = (A - src) >>> 0; break;
          case 0x20: A = Math.imul(A, src) >>> 0; break;
          case 0x30: A = src === 0 ? 0 : Math.floor(A / src) >>> 0; break;
          case 0x40: A = (A | src) >>> 0; break;
          case 0x50: A = (A & src) >>> 0; break;
          case 0x60: A = src >= 32 ? 0 : (A << src) >>> 0; break;
          case 0x70: A = src >= 32 ? 0 : A >>> src; break;
          case 0x80: A = -A >>> 0; break;
          case 0xa0: A = (A ^ src) >>> 0; break;
          default: throw new Error(`unsupported BPF alu ${code.toString(16)}`);
        }
        break;
      }
      case 0x05: {
        const op = code & 0xf0;
        if (op === 0x00) {
          pc += k;
          break;
        }
        const src = (code & 0x08 ? X : k) >>> 0;
        let cond: boolean;
        if (op === 0x10) cond = A === src;
        else if (op === 0x20) cond = A > src;
        else if (op === 0x30) cond = A >= src;
        else if (op === 0x40) cond = (A & src) !== 0;
        else throw new Error(`unsupported BPF jmp ${code.toString(16)}`);
        pc += cond ? jt : jf;
        break;
      }
      case 0x06:
        return (code & 0x18) === 0x10 ? A : k; // RET A | RET K
      case 0x07:
        if (code === 0x07) X = A; // TAX
        else A = X; // TXA
        break;
    }
  }
  throw new Error('BPF program ran off its end');
}

/** Runs the filter and names the action the kernel would take. */
export function evaluate(filter: Uint8Array, d: SeccompData): Verdict {
  const ret = runFilter(filter, d) >>> 0;
  const action = ret & 0xffff0000;
  const data = ret & 0xffff;
  if (ret === SECCOMP_RET.KILL_PROCESS) return { action: 'kill_process' };
  switch (action >>> 0) {
    case SECCOMP_RET.KILL_THREAD: return { action: 'kill_thread' };
    case SECCOMP_RET.TRAP: return { action: 'trap' };
    case SECCOMP_RET.ERRNO: return { action: 'errno', errno: data };
    case SECCOMP_RET.USER_NOTIF: return { action: 'notify' };
    case SECCOMP_RET.TRACE: return { action: 'trace', data };
    case SECCOMP_RET.LOG: return { action: 'log' };
    case SECCOMP_RET.ALLOW: return { action: 'allow' };
    default: return { action: 'kill_process' };
  }
}
