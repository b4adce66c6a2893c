import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * Random-access bytes of a file or a member. Reads are positional and bounded so a parser never
 * pulls more than it asked for into memory.
 */
export interface ByteSource {
  readonly size: number;
  /** Up to `length` bytes at `offset`; shorter only at the end of the source. */
  read(offset: number, length: number): Buffer;
  close(): void;
}

/** Positional reads on a file descriptor the caller owns (closed by `close`). */
export class FdSource implements ByteSource {
  protected fd: number | null;

  constructor(
    fd: number,
    readonly size: number,
  ) {
    this.fd = fd;
  }

  read(offset: number, length: number): Buffer {
    if (this.fd === null) throw new Error('source is closed');
    const start = Math.max(0, Math.min(offset, this.size));
    const n = Math.max(0, Math.min(length, this.size - start));
    const buf = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const got = readSync(this.fd, buf, done, n - done, start + done);
      if (got === 0) break;
      done += got;
    }
    return done === n ? buf : buf.subarray(0, done);
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

/** A file opened by path; its size is taken once, at open. */
export class FileSource extends FdSource {
  constructor(readonly path: string) {
    const fd = openSync(path, 'r');
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    super(fd, size);
  }
}

export class BufferSource implements ByteSource {
  constructor(readonly bytes: Buffer) {}
  get size(): number {
    return this.bytes.length;
  }
  read(offset: number, length: number): Buffer {
    const start = Math.max(0, Math.min(offset, this.bytes.length));
    return this.bytes.subarray(start, Math.min(this.bytes.length, start + Math.max(0, length)));
  }
  close(): void {}
}

/** A window [start, start+size) of another source (a stored zip member, a tar member). */
export class SliceSource implements ByteSource {
  constructor(
    private readonly parent: ByteSource,
    readonly start: number,
    readonly size: number,
  ) {}
  read(offset: number, length: number): Buffer {
    const off = Math.max(0, Math.min(offset, this.size));
    const n = Math.max(0, Math.min(length, this.size - off));
    return this.parent.read(this.start + off, n);
  }
  close(): void {}
}

/** Several windows of one source read as one stream (the pickles of a tar-layout member, raw bytes left out). */
export class ConcatSource implements ByteSource {
  readonly size: number;
  private readonly starts: number[] = [];
  constructor(
    private readonly parent: ByteSource,
    private readonly segments: ReadonlyArray<readonly [number, number]>,
  ) {
    let n = 0;
    for (const [s, e] of segments) {
      this.starts.push(n);
      n += e - s;
    }
    this.size = n;
  }
  read(offset: number, length: number): Buffer {
    const parts: Buffer[] = [];
    let want = Math.max(0, Math.min(length, this.size - offset));
    let at = Math.max(0, offset);
    for (let i = 0; i < this.segments.length && want > 0; i++) {
      const [s, e] = this.segments[i] as readonly [number, number];
      const base = this.starts[i] as number;
      if (at >= base + (e - s)) continue;
      const from = s + (at - base);
      const n = Math.min(want, e - from);
      const b = this.parent.read(from, n);
      parts.push(b);
      if (b.length < n) break;
      at += n;
      want -= n;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }
  close(): void {}
}
