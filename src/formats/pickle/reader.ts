import type { ByteSource } from '../source.js';

/** Raised for anything CPython's Unpickler would reject; `offset` is where it happened. */
export class PickleError extends Error {
  constructor(
    message: string,
    readonly offset: number,
    readonly kind: 'truncated' | 'malformed' | 'limit' = 'malformed',
  ) {
    super(message);
    this.name = 'PickleError';
  }
}

/** Longest text line (GLOBAL/INST/INT/STRING arguments) accepted before calling the stream hostile. */
export const MAX_LINE_BYTES = 1024 * 1024;
const CHUNK = 1024 * 1024;

/**
 * Sequential reader over a ByteSource with a bounded window, so a multi-gigabyte stream never sits
 * in memory and an absurd declared length costs nothing until it is checked against `end`.
 */
export class StreamReader {
  pos: number;
  private buf: Buffer = Buffer.alloc(0);
  private bufStart = 0;

  constructor(
    private readonly src: ByteSource,
    start: number,
    readonly end: number = src.size,
  ) {
    this.pos = start;
  }

  remaining(): number {
    return this.end - this.pos;
  }

  private window(n: number): Buffer {
    const need = Math.min(n, this.end - this.pos);
    const off = this.pos - this.bufStart;
    if (off >= 0 && off + need <= this.buf.length) return this.buf.subarray(off, off + need);
    this.bufStart = this.pos;
    this.buf = this.src.read(this.pos, Math.min(Math.max(need, CHUNK), this.end - this.pos));
    return this.buf.subarray(0, Math.min(need, this.buf.length));
  }

  byte(): number {
    // Hot path: one opcode byte from the current window, no allocation.
    const off = this.pos - this.bufStart;
    if (off >= 0 && off < this.buf.length && this.pos < this.end) {
      this.pos++;
      return this.buf[off] as number;
    }
    if (this.pos >= this.end) throw new PickleError('pickle data was truncated', this.pos, 'truncated');
    const w = this.window(1);
    if (w.length < 1) throw new PickleError('pickle data was truncated', this.pos, 'truncated');
    this.pos++;
    return w[0] as number;
  }

  /** Exactly n bytes; n must already be known to be small enough to hold in memory. */
  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.end) throw new PickleError('pickle data was truncated', this.pos, 'truncated');
    let out: Buffer;
    if (n <= CHUNK) out = Buffer.from(this.window(n));
    else out = this.src.read(this.pos, n);
    if (out.length < n) throw new PickleError('pickle data was truncated', this.pos, 'truncated');
    this.pos += n;
    return out;
  }

  skip(n: number): void {
    if (n < 0 || this.pos + n > this.end) throw new PickleError('pickle data was truncated', this.pos, 'truncated');
    this.pos += n;
  }

  /** Bytes up to and excluding the next '\n' (which is consumed). */
  line(): Buffer {
    const start = this.pos;
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      if (this.pos >= this.end) throw new PickleError('pickle data was truncated', start, 'truncated');
      const w = this.window(Math.min(CHUNK, MAX_LINE_BYTES + 1 - total));
      // A source whose declared size is a claim (a member that inflates to less) can come up
      // short: no bytes means no progress, so the line is truncated rather than read forever.
      if (w.length === 0) throw new PickleError('pickle data was truncated (the source ended before its declared size)', start, 'truncated');
      const nl = w.indexOf(0x0a);
      if (nl >= 0) {
        parts.push(Buffer.from(w.subarray(0, nl)));
        this.pos += nl + 1;
        return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      }
      parts.push(Buffer.from(w));
      total += w.length;
      this.pos += w.length;
      if (total > MAX_LINE_BYTES) throw new PickleError(`text argument longer than ${MAX_LINE_BYTES} bytes`, start, 'limit');
    }
  }

  /** Peeks up to n bytes at the current position without consuming them. */
  peek(n: number): Buffer {
    return Buffer.from(this.window(n));
  }
}
