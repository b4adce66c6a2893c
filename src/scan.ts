import { existsSync, lstatSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { GuardError, toGuardError } from './errors.js';
import { resolveLimits, type Limits } from './limits.js';
import { FindingSink } from './report/findings.js';
import { summarize, verdictOf, type FileReport, type Finding, type Report } from './report/model.js';
import { BufferSource, FileSource, type ByteSource } from './formats/source.js';
import { DETECT_HEAD_BYTES, detectFormat } from './formats/registry.js';
import { pickleHandler } from './formats/pickle/handler.js';
import { analyzePickle } from './formats/pickle/analyze.js';
import { StreamReader } from './formats/pickle/reader.js';
import type { FormatContext, NestedHint } from './formats/types.js';
import { createPolicy, type Policy } from './formats/pickle/policy.js';
import { directoryChecks } from './formats/repository.js';
import { VERSION } from './version.js';
import { enforceRequireWalls, reportWalls, withWallsJournal } from './unpickler/walls.js';
import { threadCpuMs } from './cpu-time.js';
import { defaultPool } from './unpickler/pool.js';

export interface ScanOptions {
  /** Limit overrides (bytes, counts, time). */
  limits?: Partial<Limits>;
  /** Extra allowlisted qualified names, `module.name` or `module.*`. */
  allow?: readonly string[];
  /** Skip the VM pass and use the static pass only. */
  fast?: boolean;
  /** Called after each file of a directory walk. */
  onProgress?: (done: number, total: number, path: string) => void;
  /** Display name used when scanning bytes. */
  name?: string;
  /** Fail (SANDBOX_UNAVAILABLE) rather than run the VM without the kernel walls (isolate-only). */
  requireWalls?: boolean;
  /**
   * Stops the scan: no further file is started, the file in progress is not waited for, and the
   * report holds the files finished so far with `interrupted: true` (the CLI aborts on SIGINT/SIGTERM).
   */
  signal?: AbortSignal;
}

export type ScanResult = Report;

interface Session {
  limits: Limits;
  policy: Policy;
  vm: boolean;
  /** Set once any pickle went through the VM: the report's walls then include the isolate. */
  vmUsed: boolean;
}

/** Scans a file, a directory (recursively) or in-memory bytes. */
export async function scan(target: string | Uint8Array | readonly string[], options: ScanOptions = {}): Promise<ScanResult> {
  return withWallsJournal({ requireWalls: options.requireWalls === true }, (journal) =>
    scanInner(target, options).then((report) => {
      report.walls = reportWalls(journal);
      enforceRequireWalls(journal, options.requireWalls);
      return report;
    }),
  );
}

async function scanInner(target: string | Uint8Array | readonly string[], options: ScanOptions): Promise<ScanResult> {
  const started = Date.now();
  const session: Session = { limits: resolveLimits(options.limits), policy: createPolicy({ allow: options.allow }), vm: options.fast !== true, vmUsed: false };
  const files: FileReport[] = [];
  let repository: Report['repository'];
  if (typeof target === 'string' || Array.isArray(target)) {
    const paths = typeof target === 'string' ? [target] : (target as readonly string[]);
    for (const p of paths) {
      let st;
      try {
        st = statSync(p);
      } catch (e) {
        throw toGuardError(e, 'IO', { path: p, step: 'stat' });
      }
      if (st.isDirectory()) {
        const walked = walk(p, session.limits.maxFilesPerWalk);
        // Files are scanned several at a time so that each VM worker of the pool has one to
        // work on while this thread runs the static passes: one lane more than the pool's workers.
        // Reports keep the walk's order.
        const reports: Array<FileReport | undefined> = new Array<FileReport | undefined>(walked.length);
        let next = 0;
        let done = 0;
        const lane = async (): Promise<void> => {
          while (next < walked.length && !options.signal?.aborted) {
            const i = next++;
            const entry = walked[i] as WalkEntry;
            reports[i] = entry.error ? unreadableReport(entry.path, entry.error) : await untilAborted(scanPath(entry.path, session, true), options.signal);
            options.onProgress?.(++done, walked.length, entry.path);
          }
        };
        const lanes = Math.max(1, Math.min(walked.length, session.vm ? defaultPool().maxWorkers + 1 : 1));
        await Promise.all(Array.from({ length: lanes }, lane));
        for (const r of reports) if (r) files.push(r);
        const repo = directoryChecks(p, files);
        if (repo) repository = repo;
      } else {
        const report = await untilAborted(scanPath(p, session, false), options.signal);
        if (report) files.push(report);
      }
      if (options.signal?.aborted) break;
    }
  } else if (target instanceof Uint8Array) {
    const buf = Buffer.from(target.buffer, target.byteOffset, target.byteLength);
    files.push(await scanSource(new BufferSource(buf), options.name ?? '<bytes>', undefined, session, false));
  } else {
    throw new GuardError('USAGE', 'scan() takes a path, an array of paths, or a Uint8Array');
  }
  const report: Report = {
    tool: { name: 'modelguard', version: VERSION },
    files,
    summary: summarize(files, Date.now() - started),
    walls: session.vmUsed ? { isolate: true, mode: 'isolate-only' } : { isolate: false, mode: 'static' },
  };
  if (repository) report.repository = repository;
  if (options.signal?.aborted) report.interrupted = true;
  return report;
}

/**
 * The file's report, or undefined as soon as `signal` aborts: an interrupted scan does not wait
 * for the file in progress (a VM call may take its whole time limit). That file's own clean-up
 * (temp files, worker) still runs when its work settles.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T | undefined> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.resolve(undefined);
  }
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** A folder the walk could not read: an `error` finding, never a gap. */
function unreadableReport(path: string, err: NodeJS.ErrnoException): FileReport {
  const why = err.code ? `${err.code}${err.syscall ? ` on ${err.syscall}` : ''}` : err.message;
  return {
    path,
    format: 'directory',
    verdict: 'error',
    findings: [{ rule: 'walk/unreadable', severity: 'high', verdict: 'error', message: `the folder cannot be read (${why}), so what it holds was not scanned`, evidence: path }],
  };
}

/** One entry of a walk: a file to scan, or a folder that could not be read (with why). */
interface WalkEntry {
  path: string;
  error?: NodeJS.ErrnoException;
}

/**
 * Regular files under `root`, sorted, `.git` skipped. Symbolic links are followed (a Hugging Face
 * cache snapshot is nothing but links to blobs); each directory is entered once by its real path,
 * so link loops end. Dangling links are kept so the scan can report them. A folder that cannot be
 * read (permissions, a vanished mount) is an entry with its error, and the walk goes on: one
 * unreadable subfolder must not cost the results of the rest of the tree.
 */
function walk(root: string, max: number): WalkEntry[] {
  const out: WalkEntry[] = [];
  const seen = new Set<string>();
  const stack = [root];
  try {
    seen.add(realpathSync(root));
  } catch (e) {
    return [{ path: root, error: e as NodeJS.ErrnoException }];
  }
  let files = 0;
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      out.push({ path: dir, error: e as NodeJS.ErrnoException });
      continue;
    }
    entries.sort((a, b) => (a.name < b.name ? 1 : -1));
    for (const e of entries) {
      if (e.name === '.git') continue;
      const full = join(dir, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        try {
          const st = statSync(full);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          isFile = true; // dangling: scanPath reports it
        }
      }
      if (isDir) {
        let real: string;
        try {
          real = realpathSync(full);
        } catch (err) {
          out.push({ path: full, error: err as NodeJS.ErrnoException });
          continue;
        }
        if (!seen.has(real)) {
          seen.add(real);
          stack.push(full);
        }
      } else if (isFile) {
        out.push({ path: full });
        files++;
      }
      if (files > max) throw new GuardError('LIMIT_EXCEEDED', `more than ${max} files under ${root}`, { context: { path: root } });
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function scanPath(path: string, session: Session, inWalk: boolean): Promise<FileReport | undefined> {
  let src: FileSource;
  try {
    if (inWalk && lstatSync(path).isSymbolicLink() && !existsSync(path)) {
      const sink = new FindingSink();
      sink.add({ rule: 'walk/dangling-symlink', severity: 'medium', verdict: 'error', message: `symbolic link to ${readlinkSync(path)}, which does not exist: the file was not downloaded or was removed`, evidence: path });
      return { path, format: 'symlink', verdict: 'error', findings: [...sink.findings] };
    }
    src = new FileSource(path);
  } catch (e) {
    const err = toGuardError(e, 'IO', { path });
    if (!inWalk) throw err;
    return { path, format: 'unknown', verdict: 'error', findings: [{ rule: 'io/open', severity: 'high', verdict: 'error', message: err.message }] };
  }
  try {
    return await scanSource(src, path, path, session, inWalk);
  } finally {
    src.close();
  }
}

async function scanSource(src: ByteSource, name: string, filePath: string | undefined, session: Session, inWalk: boolean): Promise<FileReport> {
  const sink = new FindingSink();
  const stats: Record<string, number | string> = {};
  const head = src.read(0, DETECT_HEAD_BYTES);
  const handler = detectFormat(head, src.size, name);
  let format = handler?.name ?? 'unknown';
  if (!handler) {
    // No format claims the bytes, but pickle.load / torch.load take any bytes: unless CPython's
    // unpickler rejects the very first opcode, the file is analysed as the pickle a loader sees.
    let why = firstOpcodeRejection(src, session);
    if (why === null) {
      const trial = new FindingSink();
      const trialStats: Record<string, number | string> = {};
      // Most such files are data that breaks within a few opcodes; the VM gets them only while
      // small, so a large unknown blob is judged by the static pass alone, never copied whole.
      const limits = { ...session.limits, maxPickleBytes: Math.min(session.limits.maxPickleBytes, UNDETECTED_VM_BYTES) };
      const ctx = makeContext(src, trial, name, filePath, { ...session, limits }, 0, trialStats);
      let failed: string | null = null;
      try {
        await pickleHandler.scan(ctx);
        if (trialStats.vm) session.vmUsed = true;
      } catch (e) {
        failed = toGuardError(e, 'INTERNAL', { path: name, format: 'pickle' }).message;
      }
      why = failed === null ? nothingRuns(trial.findings, trialStats, session.vm) : null;
      if (why === null) {
        format = 'pickle';
        for (const f of trial.findings) sink.add(f);
        if (failed !== null) sink.add({ rule: 'scan/failed', severity: 'high', verdict: 'error', message: `analysis could not finish: ${failed}` });
        Object.assign(stats, trialStats);
      }
    }
    if (why !== null) {
      if (inWalk) {
        return { path: name, format: 'other', verdict: 'safe', findings: [], basis: `not a model format: ${why}` };
      }
      sink.add({
        rule: 'detect/unknown-format',
        severity: 'medium',
        verdict: 'invalid',
        message: `not a recognised model format (content did not match any supported format; ${why})`,
        evidence: `first bytes: ${head.subarray(0, 16).toString('hex')}`,
      });
    }
  } else {
    const ctx = makeContext(src, sink, name, filePath, session, 0, stats);
    try {
      const refined = await handler.scan(ctx);
      if (refined) format = refined;
      if (stats.vm) session.vmUsed = true;
    } catch (e) {
      const err = toGuardError(e, 'INTERNAL', { path: name, format });
      sink.add({ rule: 'scan/failed', severity: 'high', verdict: 'error', message: `analysis could not finish: ${err.message}` });
    }
  }
  if (sink.dropped > 0) {
    sink.add({ rule: 'report/truncated', severity: 'info', verdict: 'safe', message: `${sink.dropped} further findings were dropped` });
  }
  const findings = [...sink.findings];
  const verdict = verdictOf(findings);
  const report: FileReport = { path: name, format, verdict, findings };
  if (Object.keys(stats).length > 0) report.stats = stats;
  if (verdict === 'safe') report.basis = basisOf(format, stats);
  return report;
}

/** Largest file no format claims that the VM also reads (the static pass reads any size). */
const UNDETECTED_VM_BYTES = 16 * 1024 * 1024;

/** Opcodes the first-opcode check runs: the first, and one more to prove the first finished. */
const FIRST_OPCODE_PROBE = 2;

/**
 * Why CPython's unpickler rejects the first opcode of `src` (so loading it runs nothing), or null
 * when the first opcode is accepted. The static pass reads exactly what CPython reads (checked
 * against the VM by test/formats/differential.test.ts).
 */
function firstOpcodeRejection(src: ByteSource, session: Session): string | null {
  const a = analyzePickle(new StreamReader(src, 0), { policy: session.policy, maxOpcodes: FIRST_OPCODE_PROBE, maxArgBytes: session.limits.maxArgBytes, deadline: threadCpuMs() + session.limits.maxScanMs });
  if (!a.error || a.error.kind === 'limit' || a.opcodes > 1) return null;
  return `CPython's unpickler rejects its first opcode (${a.error.message})`;
}

/** Findings that only say a stream breaks: with no import and no call, loading it ran nothing. */
const BREAK_ONLY_RULES = new Set(['pickle/malformed', 'pickle/truncated', 'vm/error']);

/**
 * Why a stream whose first opcode CPython accepts still runs nothing when loaded, or null. Both
 * readings must say so: the static pass saw no import, persistent id or extension code before the
 * stream broke, and CPython's own machine (the VM) broke too, with no import and no call.
 */
function nothingRuns(findings: readonly Finding[], stats: Record<string, number | string>, vm: boolean): string | null {
  if (!vm || stats.vm !== 1 || (typeof stats.globals === 'number' && stats.globals > 0)) return null;
  if (findings.length === 0 || !findings.every((f) => BREAK_ONLY_RULES.has(f.rule))) return null;
  if (!findings.some((f) => f.rule === 'vm/error')) return null;
  const broken = findings.find((f) => f.rule !== 'vm/error');
  return `CPython's unpickler rejects it before importing or calling anything${broken?.location?.offset !== undefined ? ` (at byte ${broken.location.offset})` : ''}`;
}

function basisOf(format: string, stats: Record<string, number | string>): string {
  const parts: string[] = [];
  if (typeof stats.globals === 'number') parts.push(stats.globals === 0 ? 'no imports' : `only allowlisted globals (${stats.globals})`);
  if (typeof stats.tensors === 'number') parts.push(`${stats.tensors} tensors`);
  if (typeof stats.members === 'number') parts.push(`${stats.members} members`);
  if (typeof stats.basis === 'string') parts.push(stats.basis);
  return parts.length > 0 ? parts.join(', ') : `${format}: no findings`;
}

function makeContext(
  source: ByteSource,
  sink: FindingSink,
  name: string,
  filePath: string | undefined,
  session: Session,
  depth: number,
  stats: Record<string, number | string>,
): FormatContext {
  const ctx: FormatContext = {
    source,
    sink,
    name,
    limits: session.limits,
    policy: session.policy,
    vm: session.vm,
    depth,
    stats,
    async scanNested(child: ByteSource, member: string, childSink: FindingSink, hint?: NestedHint): Promise<string> {
      if (depth + 1 > session.limits.maxNesting) {
        childSink.add({ rule: 'container/nesting', severity: 'medium', verdict: 'suspicious', message: `containers nested deeper than ${session.limits.maxNesting} levels are not analysed` });
        return 'nested';
      }
      const head = child.read(0, DETECT_HEAD_BYTES);
      let handler = detectFormat(head, child.size, member);
      if (!handler && (hint?.expectPickle || hint?.probeOnly)) handler = pickleHandler;
      if (!handler) return 'data';
      const childCtx = makeContext(child, childSink, `${name}!${member}`, filePath, session, depth + 1, stats);
      if (hint) childCtx.hint = hint;
      const refined = await handler.scan(childCtx);
      return refined ?? handler.name;
    },
  };
  if (filePath !== undefined) ctx.filePath = filePath;
  return ctx;
}
