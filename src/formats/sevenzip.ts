import { closeSync, openSync, writeSync } from 'node:fs';
import type { FormatContext, FormatHandler } from './types.js';
import { BufferSource, type ByteSource } from './source.js';
import { DeadlineError } from './deadline-worker.js';
import { TempWriteError } from './temp-write.js';
import { decompressSingleRemote, RemoteSevenZip, SEVENZIP_TIMEOUT_MS } from './sevenzip-remote.js';

/**
 * 7z archives, read with 7-Zip itself compiled to WebAssembly (npm `7z-wasm`), in an in-memory
 * file system: listed first, so declared sizes are checked against the limits before anything is
 * extracted, then extracted and each member scanned by content.
 */

const MAGIC = Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]);
/** Archives larger than this are not copied into the in-memory file system. */
export const SEVENZIP_MAX_ARCHIVE_BYTES = 512 * 1024 * 1024;
/** A password nobody uses, so 7-Zip fails on encrypted archives instead of prompting. */
const NO_PASSWORD = '-pmodelguard-has-no-password';

interface SevenZipStream {
  fd: number;
}
interface SevenZipDeviceOps {
  open(stream: SevenZipStream): void;
  close(stream: SevenZipStream): void;
  read(): number;
  write(stream: SevenZipStream, buffer: Uint8Array, offset: number, length: number): number;
}
interface SevenZipFs {
  writeFile(path: string, data: Uint8Array): void;
  readFile(path: string): Uint8Array;
  mkdir(path: string): void;
  unlink(path: string): void;
  makedev(major: number, minor: number): number;
  registerDevice(dev: number, ops: SevenZipDeviceOps): void;
  mkdev(path: string, dev: number): void;
  open(path: string, flags: string): SevenZipStream;
  close(stream: SevenZipStream): void;
  streams: (SevenZipStream | null)[];
}
export interface SevenZipModule {
  FS: SevenZipFs;
  callMain(args: string[]): void;
}

interface Listed {
  path: string;
  size: number;
  folder: boolean;
  encrypted: boolean;
}

async function load(print: (s: string) => void): Promise<SevenZipModule> {
  const mod = (await import('7z-wasm')) as unknown as { default: (o: object) => Promise<SevenZipModule> };
  return mod.default({ print, printErr: print, stdin: () => null });
}

/** 7-Zip's exit status; an exception that is not an exit (such as a device's) propagates. */
function run(sz: SevenZipModule, args: string[]): number {
  try {
    sz.callMain(args);
    return 0;
  } catch (e) {
    const status = (e as { status?: number }).status;
    if (typeof status === 'number') return status;
    if (e instanceof SevenZipCapError) throw e;
    return 255;
  }
}

/** 7-Zip's words for damaged input. */
const DAMAGE = /ERROR|Data Error|CRC Failed|Unexpected end|Headers Error|Is not archive|Can not open/i;

/** What decompressSingle() stops with when the output passes its cap. */
export class SevenZipCapError extends Error {}

export { load as loadSevenZip, run as runSevenZip };

/**
 * decompressSingleHere on a parser worker with a deadline (sevenzip-remote.ts): 7-Zip runs
 * synchronously and could otherwise block the event loop for good.
 */
export async function decompressSingleHere(src: ByteSource, outPath: string, cap: number): Promise<number> {
  if (src.size > SEVENZIP_MAX_ARCHIVE_BYTES) throw new SevenZipCapError(`the compressed file of ${src.size} bytes exceeds the ${SEVENZIP_MAX_ARCHIVE_BYTES}-byte limit for in-memory decompression`);
  return decompressSingleRemote(src.read(0, src.size), outPath, cap);
}

/**
 * Decompresses a single-stream file (xz, lzma, bzip2) with 7-Zip into a new file at `outPath`,
 * streaming: 7-Zip writes to its stdout, which is a device here whose writes go straight to the
 * file, so memory holds only the compressed input. Past `cap` bytes the device throws, which
 * unwinds 7-Zip at once (SevenZipCapError). Returns the decompressed size; a stream 7-Zip calls
 * damaged throws an Error with its message.
 */
export async function decompressSingle(src: ByteSource, outPath: string, cap: number): Promise<number> {
  if (src.size > SEVENZIP_MAX_ARCHIVE_BYTES) throw new SevenZipCapError(`the compressed file of ${src.size} bytes exceeds the ${SEVENZIP_MAX_ARCHIVE_BYTES}-byte limit for in-memory decompression`);
  const lines: string[] = [];
  const sz = await load((s) => lines.push(s));
  const out = openSync(outPath, 'wx', 0o600);
  let written = 0;
  let writeError: TempWriteError | undefined;
  try {
    const dev = sz.FS.makedev(64, 0);
    sz.FS.registerDevice(dev, {
      open() {},
      close() {},
      read: () => 0,
      write(_stream, buffer, offset, length) {
        if (written + length > cap) throw new SevenZipCapError(`decompresses to more than ${cap} bytes`);
        try {
          for (let off = 0; off < length; ) off += writeSync(out, buffer, offset + off, length - off);
        } catch (e) {
          writeError = new TempWriteError(outPath, 'the decompressed copy', e);
          throw writeError;
        }
        written += length;
        return length;
      },
    });
    sz.FS.mkdev('/sink', dev);
    sz.FS.writeFile('/in', src.read(0, src.size));
    // fd 1 becomes the sink: `-so` sends the data there, and 7-Zip's messages go to stderr.
    const stdout = sz.FS.streams[1];
    if (stdout) sz.FS.close(stdout);
    if (sz.FS.open('/sink', 'w').fd !== 1) throw new Error('could not redirect 7-Zip\'s output');
    let status: number;
    try {
      status = run(sz, ['e', '-so', NO_PASSWORD, '/in']);
    } catch (e) {
      if (e instanceof SevenZipCapError) throw e;
      throw writeError ?? new Error(`7-Zip stopped: ${(e as Error).message}`);
    }
    if (writeError) throw writeError;
    // 7-Zip reports damaged data ("Data Error", "Unexpected end of data") on stderr and may still
    // exit 0: its messages decide, not only its status.
    const damage = lines.filter((l) => DAMAGE.test(l));
    if (status !== 0 || damage.length > 0) throw new Error(damage.slice(0, 2).join(' ') || `7-Zip exited with status ${status}`);
    return written;
  } finally {
    closeSync(out);
  }
}

function parseListing(lines: string[]): Listed[] {
  const out: Listed[] = [];
  let cur: Partial<Listed> | null = null;
  let started = false;
  for (const line of lines) {
    if (line.startsWith('----------')) {
      started = true;
      continue;
    }
    if (!started) continue;
    const m = /^(\w[\w ]*?) = (.*)$/.exec(line);
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    if (key === 'Path') {
      if (cur?.path !== undefined) out.push({ path: cur.path, size: cur.size ?? 0, folder: cur.folder ?? false, encrypted: cur.encrypted ?? false });
      cur = { path: value };
    } else if (cur) {
      if (key === 'Size') cur.size = Number(value) || 0;
      else if (key === 'Folder') cur.folder = value === '+';
      else if (key === 'Encrypted') cur.encrypted = value === '+';
      else if (key === 'Attributes' && value.startsWith('D')) cur.folder = true;
    }
  }
  if (cur?.path !== undefined) out.push({ path: cur.path, size: cur.size ?? 0, folder: cur.folder ?? false, encrypted: cur.encrypted ?? false });
  return out;
}

export const sevenZipHandler: FormatHandler = {
  name: '7z',
  detect: (h) => h.length >= 6 && h.subarray(0, 6).equals(MAGIC),
  async scan(ctx: FormatContext) {
    const { source: src, sink, limits } = ctx;
    if (src.size > SEVENZIP_MAX_ARCHIVE_BYTES) {
      sink.add({ rule: '7z/too-large', severity: 'high', verdict: 'error', message: `7z archive of ${src.size} bytes exceeds the ${SEVENZIP_MAX_ARCHIVE_BYTES}-byte limit for in-memory extraction; not analysed` });
      return '7z';
    }
    const lines: string[] = [];
    let sz: RemoteSevenZip;
    try {
      sz = await RemoteSevenZip.open(Math.min(limits.maxScanMs, SEVENZIP_TIMEOUT_MS));
    } catch (e) {
      sink.add({ rule: '7z/unavailable', severity: 'high', verdict: 'error', message: `the 7-Zip reader could not start (${(e as Error).message}); contents not analysed` });
      return '7z';
    }
    // Every 7-Zip step runs on the session's worker under one deadline; past it the worker is
    // stopped and the archive is an error finding, never a blocked event loop.
    try {
      await sz.writeFile('/in.7z', src.read(0, src.size));
      if ((await sz.run(['l', '-slt', NO_PASSWORD, '/in.7z'], lines)) !== 0 || lines.some((l) => DAMAGE.test(l))) {
        sink.add({ rule: '7z/unreadable', severity: 'high', verdict: 'error', message: `7-Zip cannot list the archive: ${lines.filter((l) => /ERROR|Error|error/.test(l)).slice(0, 2).join(' ') || 'unknown error'}` });
        return '7z';
      }
      const entries = parseListing(lines).filter((e) => !e.folder);
      ctx.stats.members = entries.length;
      if (entries.length === 0) {
        // An archive with no file in it is no model: damaged headers list nothing, and nothing is never `safe`.
        sink.add({ rule: '7z/empty', severity: 'high', verdict: 'invalid', message: '7-Zip lists no file in the archive: it is empty or its headers are damaged' });
        return '7z';
      }
      if (entries.length > limits.maxMembers) {
        sink.add({ rule: '7z/too-many-members', severity: 'high', verdict: 'invalid', message: `${entries.length} members exceed the limit of ${limits.maxMembers}` });
        return '7z';
      }
      const total = entries.reduce((n, e) => n + e.size, 0);
      if (total > limits.maxTotalInflateBytes || entries.some((e) => e.size > limits.maxInflateBytes)) {
        sink.add({ rule: '7z/bomb', severity: 'high', verdict: 'invalid', message: `members declare ${total} bytes uncompressed, beyond the extraction limits: not extracted` });
        return '7z';
      }
      if (entries.some((e) => e.encrypted)) {
        sink.add({ rule: '7z/encrypted', severity: 'high', verdict: 'error', message: 'archive members are encrypted and cannot be analysed' });
        return '7z';
      }
      await sz.mkdir('/out');
      lines.length = 0;
      if ((await sz.run(['x', NO_PASSWORD, '-y', '-snl-', '-o/out', '/in.7z'], lines)) !== 0 || lines.some((l) => DAMAGE.test(l))) {
        sink.add({ rule: '7z/extract-failed', severity: 'high', verdict: 'invalid', message: `7-Zip could not extract the archive: ${lines.filter((l) => /ERROR|Error/.test(l)).slice(0, 2).join(' ') || 'unknown error'}` });
        return '7z';
      }
      for (const e of entries) {
        let bytes: Uint8Array;
        try {
          bytes = await sz.readFile(`/out/${e.path}`);
        } catch (err) {
          if (err instanceof DeadlineError) throw err;
          sink.forMember(e.path).add({ rule: '7z/missing-member', severity: 'medium', verdict: 'error', message: 'listed member was not extracted' });
          continue;
        }
        const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        if (buf.length !== e.size) {
          sink.forMember(e.path).add({ rule: '7z/size-mismatch', severity: 'high', verdict: 'invalid', message: `listed as ${e.size} bytes but extracts to ${buf.length}: damaged data` });
        }
        await ctx.scanNested(new BufferSource(buf), e.path, sink.forMember(e.path), /\.(pkl|pickle)$/i.test(e.path) ? { expectPickle: true } : { probeOnly: true });
        await sz.unlink(`/out/${e.path}`);
      }
    } catch (e) {
      if (!(e instanceof DeadlineError)) throw e;
      sink.add({ rule: '7z/timeout', severity: 'high', verdict: 'error', message: `7-Zip timed out: one step on this archive had not finished after ${sz.ms} ms of CPU time and was stopped; contents not analysed` });
    } finally {
      await sz.close();
    }
    return '7z';
  },
};
