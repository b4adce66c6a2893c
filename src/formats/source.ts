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
