import { constants as bufferConstants } from 'node:buffer';
import { read as fsRead } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { GuardError } from '../errors.js';
import { loadNative, type NativeAddon } from '../sandbox/native.js';

/** One positional read: `length` bytes at `fileOffset` into `dest` at `destOffset`. */
export interface ReadJob {
  fileOffset: number;
  length: number;
  dest: Uint8Array;
  destOffset: number;
}

/** Without the addon: reads larger than this are split so several threads fault in the destination in parallel. */
export const READ_CHUNK_BYTES = 2 * 1024 * 1024;
/** Without the addon: positional reads in flight at once (libuv's thread pool runs 4 by default). */
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
  const addon = nativeAddon();
  if (!addon || typeof addon.allocPages !== 'function') return (bytes) => new ArrayBuffer(bytes);
  return (bytes) => (bytes >= HUGE_PAGE_MIN_BYTES ? addon.allocPages({ bytes, hugePages: true }) : new ArrayBuffer(bytes));
}

/**
 * Freed arena mappings the addon keeps for the next load (MADV_FREE'd: the kernel takes them back
 * under memory pressure). A warm load then fills pages already mapped, as torch.load refills
 * glibc's heap, instead of faulting in and zeroing fresh ones: 393 MiB cost 125-180 ms of CPU
 * into a fresh mapping, 88-94 ms into a kept one (2-core machine).
 */
export const ARENA_CACHE_BYTES = Math.min(2 ** 30, Math.floor(totalmem() / 16));

let addonState: NativeAddon | null | undefined;

function nativeAddon(): NativeAddon | null {
  if (addonState !== undefined) return addonState;
  try {
    addonState = loadNative();
  } catch {
    addonState = null;
  }
  if (addonState && typeof addonState.setPageCache === 'function') addonState.setPageCache({ maxBytes: ARENA_CACHE_BYTES });
  return addonState;
}

let allocator: TensorAllocator | undefined;
let custom = false;

export function setTensorAllocator(a: TensorAllocator | undefined): void {
  allocator = a;
  custom = a !== undefined;
}

/**
 * Memory for an arena, whose callers write every slot whole (or fail the load): a kept mapping
 * may be reused as it is, with only the `gaps` between slots cleared. Zeroed memory where no
 * addon (or a custom allocator) is in use.
 */
function allocArenaBuffer(bytes: number, what: string, gaps: number[]): ArrayBuffer {
  const addon = custom ? null : nativeAddon();
  if (!addon || typeof addon.allocPages !== 'function' || bytes < HUGE_PAGE_MIN_BYTES) return allocTensor(bytes, what);
  checkTensorBytes(bytes, what);
  try {
    return addon.allocPages({ bytes, hugePages: true, uninitialized: true, clear: new Float64Array(gaps) });
  } catch (e) {
    throw new GuardError('LIMIT_EXCEEDED', `${what}: could not allocate ${bytes} bytes (${e instanceof Error ? e.message : String(e)})`, { cause: e, context: { step: 'alloc', bytes } });
  }
}

/**
 * The most bytes one tensor may hold: every tensor is read through a Uint8Array view over its
 * whole buffer, and a typed array holds at most `buffer.constants.MAX_LENGTH` elements (4 GiB on
 * Node 20; 2^53 − 1 later). A larger tensor is refused by name before anything is allocated.
 */
export const MAX_TENSOR_BYTES = bufferConstants.MAX_LENGTH;

/** Refuses, naming it, a tensor larger than one typed array can view (before anything is allocated). */
export function checkTensorBytes(bytes: number, what = 'tensor'): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new GuardError('INVALID_MODEL', `${what}: size ${bytes} is not a byte count`, { context: { step: 'alloc' } });
  if (bytes > MAX_TENSOR_BYTES) {
    throw new GuardError('LIMIT_EXCEEDED', `${what} needs ${bytes} bytes; one tensor can hold at most ${MAX_TENSOR_BYTES} bytes in Node ${process.version} (buffer.constants.MAX_LENGTH)`, {
      context: { step: 'alloc', bytes, limit: MAX_TENSOR_BYTES },
    });
  }
}

/**
 * Allocates a tensor's buffer, or throws LIMIT_EXCEEDED naming the tensor: when it is larger than
 * one typed array can view, or when the allocation itself fails (a RangeError from V8, ENOMEM from
 * mmap) — never a raw RangeError and never a crash.
 */
export function allocTensor(bytes: number, what = 'tensor'): ArrayBuffer {
  checkTensorBytes(bytes, what);
  allocator ??= defaultAllocator();
  try {
    return allocator(bytes);
  } catch (e) {
    throw new GuardError('LIMIT_EXCEEDED', `${what}: could not allocate ${bytes} bytes (${e instanceof Error ? e.message : String(e)})`, { cause: e, context: { step: 'alloc', bytes } });
  }
}

/** Where one tensor's bytes live inside an arena. */
export interface ArenaSlot {
  buffer: ArrayBuffer;
  byteOffset: number;
  length: number;
}

/**
 * Slots start on this boundary: every dtype's alignment (typed arrays need byteOffset % element
 * size == 0) and a cache line, as PyTorch's CPU allocator aligns.
 */
export const SLOT_ALIGN_BYTES = 64;

/**
 * The most bytes one arena buffer holds: what one typed array can view, and no more than the
 * native allocator maps at once (4 GiB). A load larger than this gets several buffers.
 */
export const ARENA_MAX_BYTES = Math.min(MAX_TENSOR_BYTES, 2 ** 32);

/**
 * One allocation for many tensors: the slots of `sizes`, packed in order, each on SLOT_ALIGN_BYTES,
 * into as few buffers as ARENA_MAX_BYTES allows. With the native allocator each buffer is one
 * 2 MiB-aligned mapping with MADV_HUGEPAGE, so filling it costs one fault per 2 MiB; one mapping
 * per tensor left up to 2 MiB at each end on 4 KiB pages (measured on the 393 MiB, 144-tensor
 * checkpoint: 24,600 faults per load against 590). Every size is checked (checkTensorBytes) before
 * anything is allocated. The slots keep their buffer alive: one tensor still referenced keeps its
 * whole buffer mapped, like a view keeps a PyTorch storage. The slots' bytes are NOT zeroed (a
 * kept mapping is reused as it is): every caller writes each slot whole or fails the load. The
 * alignment gaps between slots are cleared, so a buffer never shows an earlier load's bytes (by
 * the addon, and only in a reused mapping: touching a fresh one here cost 220 ms a load, its
 * pages faulted in on the main thread instead of the reader threads).
 */
export function allocArena(sizes: readonly number[], what: (i: number) => string): ArenaSlot[] {
  const groups: Array<{ bytes: number; members: Array<{ index: number; offset: number; length: number }> }> = [];
  let cur: (typeof groups)[number] | undefined;
  sizes.forEach((n, index) => {
    checkTensorBytes(n, what(index));
    const at = cur ? Math.ceil(cur.bytes / SLOT_ALIGN_BYTES) * SLOT_ALIGN_BYTES : 0;
    if (!cur || at + n > ARENA_MAX_BYTES) {
      cur = { bytes: 0, members: [] };
      groups.push(cur);
      cur.members.push({ index, offset: 0, length: n });
      cur.bytes = n;
      return;
    }
    cur.members.push({ index, offset: at, length: n });
    cur.bytes = at + n;
  });
  const slots = new Array<ArenaSlot>(sizes.length);
  for (const g of groups) {
    const first = g.members[0] as { index: number };
    const gaps: number[] = [];
    let end = 0;
    for (const m of g.members) {
      if (m.offset > end) gaps.push(end, m.offset - end);
      end = m.offset + m.length;
    }
    const buffer = allocArenaBuffer(g.bytes, g.members.length === 1 ? what(first.index) : `the tensor arena (${g.members.length} tensors)`, gaps);
    for (const m of g.members) slots[m.index] = { buffer, byteOffset: m.offset, length: m.length };
  }
  return slots;
}

function readOnce(fd: number, dest: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, dest, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/**
 * Native reader threads per load. The copies out of the page cache and the first touch of each
 * destination huge page are what a large load spends its time on, and both scale with cores; past
 * four, memory bandwidth is the limit.
 */
export const READ_THREADS = Math.max(2, Math.min(availableParallelism(), 4));

/** Reads in flight: `done` settles once no read is running (also after `cancel()`). */
export interface PendingReads {
  done: Promise<void>;
  /** Stops taking new chunks; `done` then resolves once the running ones return. */
  cancel(): void;
}

function truncated(path: string, offset: number): GuardError {
  return new GuardError('IO', `${path}: file ended at byte ${offset} while reading tensor data (truncated or changed during load)`, { context: { path, offset, step: 'read' } });
}

/**
 * Starts every job: on the addon's reader threads where it is built (they never wait on the main
 * thread, so reads started before the scan and the VM finish run while those do), else through
 * fs.read in 2 MiB chunks, READ_CONCURRENCY at a time. A short read (file truncated meanwhile) is
 * IO, an errno from the kernel too. The fd must stay open until `done` settles. `via: 'libuv'`
 * takes the fs.read path even where the addon is built (tests of that path).
 */
export function startReads(fd: number, jobs: readonly ReadJob[], path: string, via: 'auto' | 'libuv' = 'auto'): PendingReads {
  const native = via === 'libuv' ? null : nativeAddon();
  if (native && typeof native.readRanges === 'function') return nativeReads(native, fd, jobs, path);
  let stop = false;
  return { done: jsReads(fd, jobs, path, () => stop), cancel: () => (stop = true) };
}

function nativeReads(native: NativeAddon, fd: number, jobs: readonly ReadJob[], path: string): PendingReads {
  const buffers: ArrayBuffer[] = [];
  const index = new Map<ArrayBufferLike, number>();
  const plan = new Float64Array(jobs.length * 4);
  jobs.forEach((j, i) => {
    let b = index.get(j.dest.buffer);
    if (b === undefined) {
      b = buffers.length;
      index.set(j.dest.buffer, b);
      buffers.push(j.dest.buffer as ArrayBuffer);
    }
    plan.set([b, j.dest.byteOffset + j.destOffset, j.fileOffset, j.length], i * 4);
  });
  const cell = new Int32Array(1);
  const done = native.readRanges(fd, buffers, plan, READ_THREADS, cell).then((r) => {
    if (r.cancelled) return;
    if (r.errno !== 0) throw new GuardError('IO', `${path}: reading tensor data failed (errno ${r.errno})`, { context: { path, step: 'read', errno: r.errno } });
    if (r.eofAt >= 0) throw truncated(path, r.eofAt);
  });
  return { done, cancel: () => Atomics.store(cell, 0, 1) };
}

async function jsReads(fd: number, jobs: readonly ReadJob[], path: string, stopped: () => boolean): Promise<void> {
  const chunks: ReadJob[] = [];
  for (const j of jobs) {
    for (let done = 0; done < j.length; done += READ_CHUNK_BYTES) {
      const n = Math.min(READ_CHUNK_BYTES, j.length - done);
      chunks.push({ fileOffset: j.fileOffset + done, length: n, dest: j.dest, destOffset: j.destOffset + done });
    }
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < chunks.length && !stopped()) {
      const c = chunks[next++] as ReadJob;
      let got = 0;
      while (got < c.length) {
        const n = await readOnce(fd, c.dest, c.destOffset + got, c.length - got, c.fileOffset + got);
        if (n === 0) throw truncated(path, c.fileOffset + got);
        got += n;
      }
    }
  };
  // allSettled first: on an error no read may still be running when the caller closes the fd.
  const rs = await Promise.allSettled(Array.from({ length: Math.min(READ_CONCURRENCY, chunks.length) }, worker));
  const bad = rs.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
}

/** Runs every job and waits for them all (see startReads). */
export async function runReads(fd: number, jobs: readonly ReadJob[], path: string): Promise<void> {
  if (jobs.length === 0) return;
  await startReads(fd, jobs, path).done;
}
