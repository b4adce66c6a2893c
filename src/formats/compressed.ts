import { createGunzip, createInflate } from 'node:zlib';
import { mkdtempSync, openSync, closeSync, writeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FormatHandler } from './types.js';
import { FileSource, type ByteSource } from './source.js';
import { decompressSingle, SevenZipCapError } from './sevenzip.js';
import { TempWriteError } from './temp-write.js';
import { DeadlineError } from './deadline-worker.js';

/**
 * Whole-file compression as joblib (`compress=`) and people (`model.pkl.gz`) use it. gzip and zlib
 * streams are inflated by Node, xz, lzma (joblib's `lzma`, the .lzma "alone" format) and bzip2 by
 * 7-Zip (./sevenzip.ts), each into a private temporary file with a byte cap, so a bomb costs
 * bounded disk and no memory, and the result is scanned by content. lz4 and zstd, which neither
 * reads, are reported as `error`: never `safe` unread.
 */

const CHUNK = 1 << 20;

type Kind = 'gzip' | 'zlib' | 'xz' | 'lzma' | 'lz4' | 'bz2' | 'zstd';
export type Decompressible = 'gzip' | 'zlib' | 'xz' | 'lzma' | 'bz2';
const DECOMPRESSIBLE: readonly Kind[] = ['gzip', 'zlib', 'xz', 'lzma', 'bz2'];

/**
 * The .lzma "alone" header: properties byte 0x5d (lc=3, lp=0, pb=2, what every encoder writes by
 * default), a dictionary size of 2^n or 2^n + 2^(n-1) between 4 KiB and 1.5 GiB, and an
 * uncompressed size that is unknown (all ones) or below 2^48. Strict, because 0x5d is also a
 * pickle opcode (EMPTY_LIST).
 */
function isLzmaAlone(h: Buffer): boolean {
  if (h.length < 13 || h[0] !== 0x5d) return false;
  const dict = h.readUInt32LE(1);
  const pow = dict >= 4096 && dict <= 0x60000000 && (Math.log2(dict) % 1 === 0 || Math.log2(dict / 3) % 1 === 0);
  const size = h.readBigUInt64LE(5);
  return pow && (size === 0xffffffffffffffffn || size < 1n << 48n);
}

export function compressionOf(h: Buffer): Kind | undefined {
  if (h.length < 4) return undefined;
  if (h[0] === 0x1f && h[1] === 0x8b && h[2] === 8) return 'gzip';
  if (h[0] === 0x78 && ((h[0] << 8) | (h[1] as number)) % 31 === 0 && [0x01, 0x5e, 0x9c, 0xda].includes(h[1] as number)) return 'zlib';
  if (h.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (isLzmaAlone(h)) return 'lzma';
  if (h.readUInt32LE(0) === 0x184d2204) return 'lz4';
  // "BZh", the block size, then a block's or the end-of-stream's magic.
  if (h.length >= 10 && h.toString('latin1', 0, 3) === 'BZh' && h[3]! >= 0x31 && h[3]! <= 0x39 && ['314159265359', '177245385090'].includes(h.toString('hex', 4, 10))) return 'bz2';
  if (h.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return undefined;
}

export class InflateLimitError extends Error {}


/** Decompresses `src` into a new file `path`: InflateLimitError past `cap` bytes, another Error when damaged. */
export async function decompressToFile(src: ByteSource, kind: Decompressible, path: string, cap: number): Promise<number> {
  if (kind === 'gzip' || kind === 'zlib') return inflateToFile(src, kind, path, cap);
  try {
    return await decompressSingle(src, path, cap);
  } catch (e) {
    throw e instanceof SevenZipCapError ? new InflateLimitError(e.message) : e;
  }
}

/** Streams `kind` from `src` into a new file `path`, stopping with InflateLimitError past `cap` bytes. */
export async function inflateToFile(src: ByteSource, kind: 'gzip' | 'zlib', path: string, cap: number): Promise<number> {
  const z = kind === 'gzip' ? createGunzip() : createInflate();
  const fd = openSync(path, 'wx', 0o600);
  let written = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      z.on('data', (chunk: Buffer) => {
        if (written + chunk.length > cap) {
          z.destroy(new InflateLimitError(`inflates to more than ${cap} bytes`));
          return;
        }
        // A throw from a 'data' listener is uncaught (it kills the process): a failed write ends
        // the stream with an error instead, so the caller's finally removes the temp file.
        try {
          for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off, chunk.length - off);
        } catch (e) {
          z.destroy(new TempWriteError(path, 'the decompressed copy', e));
          return;
        }
        written += chunk.length;
      });
      z.on('error', reject);
      z.on('end', resolve);
      let off = 0;
      const pump = () => {
        while (off < src.size && !z.destroyed) {
          let buf: Buffer;
          try {
            buf = src.read(off, CHUNK);
          } catch (e) {
            z.destroy(e as Error);
            return;
          }
          off += buf.length;
          if (!z.write(buf)) {
            z.once('drain', pump);
            return;
          }
        }
        if (!z.destroyed) z.end();
      };
      pump();
    });
  } finally {
    closeSync(fd);
  }
  return written;
}

export const compressedHandler: FormatHandler = {
  name: 'compressed',
  detect: (h) => compressionOf(h) !== undefined,
  async scan(ctx) {
    const kind = compressionOf(ctx.source.read(0, 16)) as Kind;
    if (!DECOMPRESSIBLE.includes(kind)) {
      ctx.sink.add({ rule: 'compressed/unsupported', severity: 'high', verdict: 'error', message: `${kind}-compressed file: modelguard cannot decompress ${kind}, so the contents were not analysed; decompress it and scan the result` });
      return kind;
    }
    const dir = mkdtempSync(join(tmpdir(), 'modelguard-'));
    const path = join(dir, 'inflated');
    try {
      let size: number;
      try {
        size = await decompressToFile(ctx.source, kind as Decompressible, path, ctx.limits.maxInflateBytes);
      } catch (e) {
        if (e instanceof DeadlineError) {
          ctx.sink.add({ rule: 'compressed/timeout', severity: 'high', verdict: 'error', message: `${kind} stream not analysed: the decompressor timed out (${e.message})` });
          return kind;
        }
        if (e instanceof TempWriteError) {
          ctx.sink.add({ rule: 'compressed/write-failed', severity: 'high', verdict: 'error', message: `${kind} stream not analysed: ${e.message}` });
          return kind;
        }
        if (e instanceof InflateLimitError) {
          ctx.sink.add({ rule: 'compressed/bomb', severity: 'high', verdict: 'invalid', message: `${kind} stream ${e.message} (limit maxInflateBytes): a decompression bomb or an oversized file; not analysed` });
          return kind;
        }
        ctx.sink.add({ rule: 'compressed/corrupt', severity: 'high', verdict: 'invalid', message: `${kind} stream is corrupt: ${(e as Error).message}` });
        return kind;
      }
      if (size === 0) {
        // Damaged data can decompress to nothing without an error; nothing is no model, never `safe`.
        ctx.sink.add({ rule: 'compressed/empty', severity: 'high', verdict: 'invalid', message: `${kind} stream decompresses to nothing: corrupt, truncated or empty` });
        return kind;
      }
      const inner = new FileSource(path);
      try {
        const member = kind === 'gzip' ? 'gunzipped' : kind === 'zlib' ? 'inflated' : 'decompressed';
        const fmt = await ctx.scanNested(inner, member, ctx.sink.forMember(member), { probeOnly: true });
        ctx.stats.inflatedBytes = size;
        return ctx.depth === 0 ? `${kind}+${fmt}` : kind;
      } finally {
        inner.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
