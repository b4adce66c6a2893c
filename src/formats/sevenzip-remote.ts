import { DeadlineWorker, RemoteError } from './deadline-worker.js';
import { TempWriteError } from './temp-write.js';
import { BufferSource } from './source.js';
import { decompressSingleHere, loadSevenZip, runSevenZip, SevenZipCapError, type SevenZipModule } from './sevenzip.js';

/**
 * 7-Zip (WebAssembly) on a parser worker with a deadline. 7-Zip's calls are synchronous and can
 * spin on a hostile archive; here each session is one worker holding one 7-Zip instance and its
 * in-memory file system, and the main thread drives it with the same steps it would take in
 * process (write the archive, run a command, read a member). Past the deadline the worker is
 * terminated and the caller gets a DeadlineError.
 */

/** Most CPU time (ms, the parser thread's) one 7-Zip call (list, extract, read a member; or a whole decompression) may use. */
export const SEVENZIP_TIMEOUT_MS = 60_000;
const PARSER_WORKER = new URL('./parser-worker.js', import.meta.url);

// ---- worker side --------------------------------------------------------------------------

let session: { sz: SevenZipModule; lines: string[] } | undefined;
function live(): { sz: SevenZipModule; lines: string[] } {
  if (!session) throw new Error('7-Zip is not started');
  return session;
}

/** Operations the parser worker runs (see parser-worker.ts). */
export const sevenZipOps = {
  '7z.open': async (): Promise<void> => {
    const lines: string[] = [];
    session = { sz: await loadSevenZip((s) => lines.push(s)), lines };
  },
  // Nothing is returned from the file-system calls: Emscripten's mkdir returns its FSNode, which
  // cannot be posted back (DataCloneError outside the reply's try, and the worker died).
  '7z.writeFile': (a: { path: string; data: Uint8Array }): void => {
    live().sz.FS.writeFile(a.path, a.data);
  },
  '7z.mkdir': (a: { path: string }): void => {
    live().sz.FS.mkdir(a.path);
  },
  '7z.unlink': (a: { path: string }): void => {
    live().sz.FS.unlink(a.path);
  },
  '7z.run': (a: { args: string[] }): { status: number; lines: string[] } => {
    const s = live();
    s.lines.length = 0;
    const status = runSevenZip(s.sz, a.args);
    return { status, lines: [...s.lines] };
  },
  '7z.readFile': (a: { path: string }): Uint8Array => {
    const b = live().sz.FS.readFile(a.path);
    // A copy of its own, so the reply can hand the buffer over instead of cloning it.
    const out = new Uint8Array(b.byteLength);
    out.set(b);
    return out;
  },
  '7z.decompress': (a: { data: Uint8Array; outPath: string; cap: number }): Promise<number> => decompressSingleHere(new BufferSource(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength)), a.outPath, a.cap),
};

// ---- main-thread side ---------------------------------------------------------------------

/**
 * A 7-Zip instance on its own worker. Each call has its own deadline (the caller scans members
 * between calls, which may take a while and is bounded elsewhere).
 */
export class RemoteSevenZip {
  private constructor(
    private readonly w: DeadlineWorker,
    readonly ms: number,
  ) {}

  static async open(ms: number = SEVENZIP_TIMEOUT_MS): Promise<RemoteSevenZip> {
    const r = new RemoteSevenZip(new DeadlineWorker(PARSER_WORKER), ms);
    try {
      await r.call('7z.open', {});
    } catch (e) {
      await r.close();
      throw e;
    }
    return r;
  }

  private call<T>(op: string, args: unknown, transfer?: ArrayBuffer[]): Promise<T> {
    return this.w.call<T>(op, args, this.ms, transfer);
  }

  writeFile(path: string, data: Uint8Array): Promise<void> {
    return this.call('7z.writeFile', { path, data });
  }
  mkdir(path: string): Promise<void> {
    return this.call('7z.mkdir', { path });
  }
  unlink(path: string): Promise<void> {
    return this.call('7z.unlink', { path });
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.call('7z.readFile', { path });
  }
  /** Runs 7-Zip with `args`; its output lines are appended to `lines`. Returns its exit status. */
  async run(args: string[], lines: string[]): Promise<number> {
    const r = await this.call<{ status: number; lines: string[] }>('7z.run', { args });
    lines.push(...r.lines);
    return r.status;
  }
  close(): Promise<void> {
    return this.w.close();
  }
}

/** decompressSingle on a worker: SevenZipCapError past `cap`, DeadlineError past `ms`. */
export async function decompressSingleRemote(data: Uint8Array, outPath: string, cap: number, ms: number = SEVENZIP_TIMEOUT_MS): Promise<number> {
  const w = new DeadlineWorker(PARSER_WORKER);
  try {
    return await w.call<number>('7z.decompress', { data, outPath, cap }, ms);
  } catch (e) {
    if (e instanceof Error && e.name === 'SevenZipCapError') throw new SevenZipCapError(e.message);
    if (e instanceof RemoteError && e.name === 'TempWriteError') throw new TempWriteError(outPath, 'the decompressed copy', Object.assign(new Error(e.message), { code: e.code }));
    throw e;
  } finally {
    await w.close();
  }
}
