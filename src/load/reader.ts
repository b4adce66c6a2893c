import { constants as bufferConstants } from 'node:buffer';
import { read as fsRead } from 'node:fs';
import { GuardError } from '../errors.js';
import { loadNative, type NativeAddon } from '../sandbox/native.js';

/** One positional read: `length` bytes at `fileOffset` into `dest` at `destOffset`. */
export interface ReadJob {
  fileOffset: number;
  length: number;
  dest: Uint8Array;
  destOffset: number;
}

/** Reads larger than this are split so several threads fault in the destination in parallel. */
export const READ_CHUNK_BYTES = 2 * 1024 * 1024;
/** Positional reads in flight at once (libuv's thread pool runs 4 by default). */
export const READ_CONCURRENCY = 4;

/**
 * Allocates the memory a tensor's bytes are read into. The default is a plain ArrayBuffer; a
 * native allocator (anonymous mapping with MADV_HUGEPAGE) can be installed with
 * `setTensorAllocator` — destination page faults dominate large loads.
 */
export type TensorAllocator = (bytes: number) => ArrayBuffer;

/** Below one huge page a plain ArrayBuffer is as fast and cheaper to create. */
export const HUGE_PAGE_MIN_BYTES = 2 * 1024 * 1024;

/**
 * The default: large tensors go into an anonymous mapping with MADV_HUGEPAGE from the native
 * addon (where it is built); small ones, and every tensor without the addon, into ArrayBuffers.
 */
function defaultAllocator(): TensorAllocator {
  let native: NativeAddon | null = null;
  try {
    native = loadNative();
  } catch {
    native = null;
  }
  if (!native || typeof native.allocPages !== 'function') return (bytes) => new ArrayBuffer(bytes);
  const addon = native;
  return (bytes) => (bytes >= HUGE_PAGE_MIN_BYTES ? addon.allocPages({ bytes, hugePages: true }) : new ArrayBuffer(bytes));
}

let allocator: TensorAllocator | undefined;

export function setTensorAllocator(a: TensorAllocator | undefined): void {
  allocator = a;
}

/**
 * The most bytes one tensor may hold: every tensor is read through a Uint8Array view over its
 * whole buffer, and a typed array holds at most `buffer.constants.MAX_LENGTH` elements (4 GiB on
 * Node 20; 2^53 − 1 later). A larger tensor is refused by name before anything is allocated.
 */
export const MAX_TENSOR_BYTES = bufferConstants.MAX_LENGTH;

/**
 * Allocates a tensor's buffer, or throws LIMIT_EXCEEDED naming the tensor: when it is larger than
 * one typed array can view, or when the allocation itself fails (a RangeError from V8, ENOMEM from
 * mmap) — never a raw RangeError and never a crash.
 */
export function allocTensor(bytes: number, what = 'tensor'): ArrayBuffer {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new GuardError('INVALID_MODEL', `${what}: size ${bytes} is not a byte count`, { context: { step: 'alloc' } });
  if (bytes > MAX_TENSOR_BYTES) {
    throw new GuardError('LIMIT_EXCEEDED', `${what} needs ${bytes} bytes; one tensor can hold at most ${MAX_TENSOR_BYTES} bytes in Node ${process.version} (buffer.constants.MAX_LENGTH)`, {
      context: { step: 'alloc', bytes, limit: MAX_TENSOR_BYTES },
    });
  }
  allocator ??= defaultAllocator();
  try {
    return allocator(bytes);
  } catch (e) {
    throw new GuardError('LIMIT_EXCEEDED', `${what}: could not allocate ${bytes} bytes (${e instanceof Error ? e.message : String(e)})`, { cause: e, context: { step: 'alloc', bytes } });
  }
}

function readOnce(fd: number, dest: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, dest, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Runs every job, in chunks, several at a time. A short read (file truncated meanwhile) is an error. */
export async function runReads(fd: number, jobs: readonly ReadJob[], path: string): Promise<void> {
  const chunks: ReadJob[] = [];
  for (const j of jobs) {
    for (let done = 0; done < j.length; done += READ_CHUNK_BYTES) {
      const n = Math.min(READ_CHUNK_BYTES, j.length - done);
      chunks.push({ fileOffset: j.fileOffset + done, length: n, dest: j.dest, destOffset: j.destOffset + done });
    }
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < chunks.length) {
      const c = chunks[next++] as ReadJob;
      let got = 0;
      while (got < c.length) {
        const n = await readOnce(fd, c.dest, c.destOffset + got, c.length - got, c.fileOffset + got);
        if (n === 0) throw new GuardError('IO', `${path}: file ended at byte ${c.fileOffset + got} while reading tensor data (truncated or changed during load)`, { context: { path, offset: c.fileOffset + got, step: 'read' } });
        got += n;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, chunks.length) }, worker));
}
