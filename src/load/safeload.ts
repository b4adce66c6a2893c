import { createHash } from 'node:crypto';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, statSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuardError, toGuardError } from '../errors.js';
import { resolveLimits, type Limits } from '../limits.js';
import { scan } from '../scan.js';
import { summarize, verdictOf, verdictRank, type FileReport, type Finding, type Report } from '../report/model.js';
import { BufferSource, FdSource, SliceSource, type ByteSource } from '../formats/source.js';
import { inflateCapped, readZip, type ZipArchive, type ZipEntry } from '../formats/zip.js';
import { decompressToFile, InflateLimitError, type Decompressible } from '../formats/compressed.js';
import { TempWriteError } from '../formats/temp-write.js';
import { DeadlineError } from '../formats/deadline-worker.js';
import { parseNpyHeader } from '../formats/numpy.js';
import { parseSafetensors } from '../formats/safetensors.js';
import { parseGguf } from '../formats/gguf.js';
import { createPolicy } from '../formats/pickle/policy.js';
import { vmFindings, vmUnpickle, type UnpicklerPool, type VmNode, type VmResult, type VmUnpickleOptions } from '../unpickler/index.js';
import { brandTensor, GraphBuilder, type StorageLocation, type StorageResolver, type Tensor } from './graph.js';
import { byteswap, dtypeInfo, FROM_SAFETENSORS, fromNumpyDescr } from './dtypes.js';
import { allocArena, allocTensor, runReads, startReads, type ArenaSlot, type PendingReads, type ReadJob } from './reader.js';
import { currentJournal, enforceRequireWalls, reportWalls, withWallsJournal } from '../unpickler/walls.js';

export type { Tensor } from './graph.js';
export type { TensorData } from './dtypes.js';

/** Default cap on the tensor bytes one load may allocate: 64 GiB. */
export const DEFAULT_MAX_LOAD_BYTES = 64 * 1024 ** 3;
/** Largest pickle handed to the VM (legacy files are probed with growing prefixes up to this). */
const LEGACY_PROBE_BYTES = 4 * 1024 * 1024;

export interface SafeLoadOptions {
  /** Extra qualified names accepted as plain placeholder objects (`mypkg.Config`, `mypkg.*`). */
  allow?: readonly string[];
  /** Load files whose scan verdict is `suspicious` (never `malicious`). Default false. */
  allowSuspicious?: boolean;
  /** Time limit of the VM per pickle (ms). */
  timeoutMs?: number;
  /** Cap on the tensor bytes allocated (default 64 GiB). */
  maxBytes?: number;
  /** Scan limit overrides. */
  limits?: Partial<Limits>;
  /** Unpickler pool to use (default: the process-wide one). */
  pool?: UnpicklerPool;
  /** Display name for in-memory bytes. */
  name?: string;
  /** Add `metadata.sha256`: the hash of the bytes that were scanned and loaded. */
  sha256?: boolean;
  /** Fail (SANDBOX_UNAVAILABLE) rather than run the VM without the kernel walls (isolate-only). */
  requireWalls?: boolean;
}

export interface LoadResult {
  /** `pytorch-zip`, `pytorch-legacy`, `pickle`, `joblib`, `numpy`, `npz`, `safetensors`, `gguf`; `gzip+…`/`zlib+…` when the whole file was compressed. */
  format: string;
  tensors: Map<string, Tensor>;
  /** The object graph as JS values, tensors in place. */
  object: unknown;
  metadata: Record<string, unknown>;
  /** The scan report the load rests on (with the VM's findings added). */
  report: Report;
}

interface Input {
  src: ByteSource;
  fd: number | undefined;
  path: string;
  stat: Stats | undefined;
}

/**
 * Scans the file, refuses it when anything is malicious (or suspicious, by default), then returns
 * its tensors and object graph without running anything from it. Pickles run only in the
 * restricted unpickler VM; tensor bytes are read straight from the file into their buffers.
 */
export async function safeLoad(target: string | Uint8Array, options: SafeLoadOptions = {}): Promise<LoadResult> {
  checkOptions(options);
  return withWallsJournal({ requireWalls: options.requireWalls === true }, async (journal) => {
    let result: LoadResult;
    try {
      result = await safeLoadInner(target, options);
    } catch (e) {
      // One error contract: whatever a parser threw leaves here as a GuardError with a code.
      const err = asLoadError(e, typeof target === 'string' ? target : (options.name ?? '<bytes>'));
      // A load that failed still says which walls were up and what they stopped.
      const report = (err as { report?: Report }).report;
      if (report) report.walls = reportWalls(journal);
      throw err;
    }
    result.report.walls = reportWalls(journal);
    enforceRequireWalls(journal, options.requireWalls);
    return result;
  });
}

/**
 * A parser's own error (NpyFormatError, ZipFormatError, a RangeError from a size) as the GuardError
 * safeLoad promises: the code from codeOf() (format errors are INVALID_MODEL), INTERNAL when nothing
 * is known (a bug, not the file's fault), the path in the message and context, the original as cause.
 */
function asLoadError(e: unknown, path: string): GuardError {
  if (e instanceof GuardError) return e;
  const g = toGuardError(e, 'INTERNAL', { path, step: 'load' });
  if (g.code === 'IO' || g.code === 'NOT_FOUND' || g.message.startsWith(path)) return g;
  return new GuardError(g.code, `${path}: ${g.message}`, { cause: e, context: g.context });
}

async function safeLoadInner(target: string | Uint8Array, options: SafeLoadOptions): Promise<LoadResult> {
  const input = openInput(target, options);
  const early = startTorchZip(input, options);
  try {
    const scanOpts: Parameters<typeof scan>[1] = {};
    if (options.allow) scanOpts.allow = options.allow;
    if (options.limits) scanOpts.limits = options.limits;
    if (typeof target !== 'string' && options.name) scanOpts.name = options.name;
    if (options.requireWalls) scanOpts.requireWalls = true;
    const report = await scan(typeof target === 'string' ? target : target, scanOpts);
    if (input.stat && input.fd !== undefined) sameFile(input, target as string);
    refuseIfUnsafe(report, options, input.path);
    const file = report.files[0] as FileReport;
    const ctx: LoadContext = {
      input,
      options,
      report,
      file,
      limits: resolveLimits(options.limits),
      maxBytes: options.maxBytes ?? DEFAULT_MAX_LOAD_BYTES,
      early,
    };
    const result = await loadFormat(ctx);
    if (options.sha256) result.metadata.sha256 = hashSource(input.src);
    return result;
  } finally {
    // No read may still be running on the fd when it closes (a refused or failed load stops them).
    if (early) await early.stop();
    input.src.close();
  }
}

/**
 * A PyTorch zip checkpoint's work that needs no verdict, started before the scan so that it runs
 * while the scan does: its storages (stored members under `<root>/data/`) are read on the addon's
 * threads into one arena, and its data.pkl goes to the VM for the object graph. Nothing of it is
 * used unless the scan and the VM's findings let the load go on; a refused load cancels the reads
 * (what was read by then is freed with the arena). undefined when the file is not such a
 * checkpoint (the scan then decides what it is), is in memory, or its storages exceed `maxBytes`.
 * Measured on the 393 MiB, 144-tensor checkpoint (2 cores): scan, graph and reads one after the
 * other ~255 ms; overlapped, the load costs about the longest of the three.
 */
interface EarlyTorchZip {
  zip: ZipArchive;
  root: string;
  dataPkl: ZipEntry;
  /** The VM run on data.pkl (graph included); judged only after the scan's verdict. */
  vm: Promise<VmResult>;
  /** Arena slots by storage member name; filled once `ready` resolves. */
  slots: Map<string, Uint8Array>;
  ready: Promise<void>;
  /** Cancels what is still running and waits for it (never rejects). */
  stop(): Promise<void>;
}

function startTorchZip(input: Input, options: SafeLoadOptions): EarlyTorchZip | undefined {
  if (input.fd === undefined || input.src.size < 4) return undefined;
  const magic = input.src.read(0, 4);
  if (magic[0] !== 0x50 || magic[1] !== 0x4b || magic[2] !== 3 || magic[3] !== 4) return undefined;
  const limits = resolveLimits(options.limits);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_LOAD_BYTES;
  let zip: ZipArchive;
  try {
    zip = readZip(input.src, limits);
  } catch {
    return undefined; // the scan says what is wrong with it
  }
  const first = zip.entries[0];
  if (!first || !first.name.includes('/')) return undefined;
  const root = first.name.slice(0, first.name.indexOf('/'));
  const byName = new Map<string, ZipEntry>();
  for (const e of zip.entries) if (!byName.has(e.name)) byName.set(e.name, e);
  const dataPkl = byName.get(`${root}/data.pkl`);
  if (!dataPkl || dataPkl.method !== 0 || dataPkl.dataOffset < 0 || dataPkl.compressedSize > limits.maxPickleBytes) return undefined;
  const storages: ZipEntry[] = [];
  let total = 0;
  for (const [name, e] of byName) {
    if (!name.startsWith(`${root}/data/`) || name.endsWith('/') || e.method !== 0 || e.dataOffset < 0) continue;
    storages.push(e);
    total += Math.max(0, Math.min(e.compressedSize, input.src.size - e.dataOffset));
  }
  if (total > maxBytes) return undefined;
  let slots: ArenaSlot[];
  try {
    slots = allocArena(
      storages.map((e) => Math.max(0, Math.min(e.compressedSize, input.src.size - e.dataOffset))),
      (i) => `storage ${storages[i]?.name ?? ''}`,
    );
  } catch {
    return undefined; // too large for one buffer or no memory: the ordinary path says so by name
  }
  const byStorage = new Map<string, Uint8Array>();
  const jobs: ReadJob[] = storages.map((e, i) => {
    const slot = slots[i] as ArenaSlot;
    const dest = new Uint8Array(slot.buffer, slot.byteOffset, slot.length);
    byStorage.set(e.name, dest);
    return { fileOffset: e.dataOffset, length: slot.length, dest, destOffset: 0 };
  });
  const reads: PendingReads = startReads(input.fd, jobs, input.path);
  // Observed here so that a refused load (which never awaits them) leaves no unhandled rejection.
  const ready = reads.done;
  ready.catch(() => undefined);
  const pickle = input.src.read(dataPkl.dataOffset, Math.min(dataPkl.compressedSize, input.src.size - dataPkl.dataOffset));
  const vm = vmUnpickle(pickle, vmOptions(options));
  vm.catch(() => undefined);
  return {
    zip,
    root,
    dataPkl,
    vm,
    slots: byStorage,
    ready,
    async stop() {
      reads.cancel();
      await ready.catch(() => undefined);
      // The VM run holds no fd: a refused load leaves it to finish in its worker.
    },
  };
}

function vmOptions(options: SafeLoadOptions, extra: Partial<VmUnpickleOptions> = {}): VmUnpickleOptions {
  const o: VmUnpickleOptions = { pickles: 1, ...extra };
  if (options.allow) o.allow = options.allow;
  if (options.timeoutMs) o.timeoutMs = options.timeoutMs;
  if (options.pool) o.pool = options.pool;
  return o;
}

function hashSource(src: ByteSource): string {
  const h = createHash('sha256');
  const step = 16 * 1024 * 1024;
  for (let off = 0; off < src.size; off += step) h.update(src.read(off, Math.min(step, src.size - off)));
  return h.digest('hex');
}

async function loadFormat(ctx: LoadContext): Promise<LoadResult> {
  const { file, input } = ctx;
  const wrapped = /^(gzip|zlib|xz|lzma|bz2)\+(.+)$/.exec(file.format);
  if (wrapped) return loadInflated(ctx, wrapped[1] as Decompressible, wrapped[2]!);
  {
    switch (file.format) {
      case 'pytorch-zip':
        return await loadTorchZip(ctx);
      case 'pytorch-legacy':
        return await loadTorchLegacy(ctx);
      case 'pickle':
        return await loadPickle(ctx);
      case 'joblib':
        return await loadJoblib(ctx);
      case 'numpy':
        return await loadNpy(ctx);
      case 'npz':
        return await loadNpz(ctx);
      case 'safetensors':
        return await loadSafetensors(ctx);
      case 'gguf':
        return await loadGguf(ctx);
      default:
        throw new GuardError('UNSUPPORTED', `safeLoad cannot load ${file.format} files (${input.path})`, { context: { path: input.path, format: file.format } });
    }
  }
}

/**
 * A whole-file gzip/zlib/xz/lzma/bzip2 stream (joblib `compress=`, `model.pkl.gz`): decompressed, under the same cap
 * the scan used, into a private temporary file that is loaded like the file itself would be (the
 * scan already judged these inflated bytes) and removed once the tensors are read.
 */
async function loadInflated(ctx: LoadContext, kind: Decompressible, inner: string): Promise<LoadResult> {
  let dir: string;
  try {
    dir = mkdtempSync(join(tmpdir(), 'modelguard-load-'));
  } catch (e) {
    throw toGuardError(e, 'IO', { path: ctx.input.path, step: 'inflate', writing: join(tmpdir(), 'modelguard-load-*') });
  }
  const path = join(dir, 'inflated');
  let fd: number | undefined;
  try {
    try {
      await decompressToFile(ctx.input.src, kind, path, Math.min(ctx.limits.maxInflateBytes, ctx.maxBytes));
    } catch (e) {
      if (e instanceof TempWriteError) {
        throw new GuardError('IO', `${ctx.input.path}: could not decompress the ${kind} stream: ${e.message}`, { cause: e, context: { path: ctx.input.path, step: 'inflate', writing: e.path, errno: e.code } });
      }
      if (e instanceof DeadlineError) throw new GuardError('TIMEOUT', `${ctx.input.path}: the ${kind} stream: ${e.message}`, { cause: e, context: { path: ctx.input.path, step: 'inflate' } });
      if (e instanceof InflateLimitError) throw new GuardError('LIMIT_EXCEEDED', `${ctx.input.path}: the ${kind} stream ${e.message}`, { context: { path: ctx.input.path } });
      throw new GuardError('INVALID_MODEL', `${ctx.input.path}: the ${kind} stream is corrupt: ${(e as Error).message}`, { context: { path: ctx.input.path } });
    }
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const input: Input = { src: new FdSource(fd, size), fd, path: ctx.input.path, stat: undefined };
    const result = await loadFormat({ ...ctx, input, file: { ...ctx.file, format: inner } });
    result.format = `${kind}+${result.format}`;
    return result;
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

const KNOWN_OPTIONS = new Set(['requireWalls', 'allow', 'allowSuspicious', 'timeoutMs', 'maxBytes', 'limits', 'pool', 'name', 'sha256']);

function checkOptions(options: SafeLoadOptions): void {
  for (const k of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(k)) {
      const near = [...KNOWN_OPTIONS].find((o) => o.toLowerCase() === k.toLowerCase());
      throw new GuardError('USAGE', `Unknown option \`${k}\`${near ? `; did you mean \`${near}\`?` : `; known options: ${[...KNOWN_OPTIONS].join(', ')}`}`);
    }
  }
  if (options.maxBytes !== undefined && !(Number.isSafeInteger(options.maxBytes) && options.maxBytes > 0)) throw new GuardError('USAGE', '`maxBytes` must be a positive integer number of bytes');
  if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs > 0)) throw new GuardError('USAGE', '`timeoutMs` must be a positive number of milliseconds');
  if (options.allow !== undefined && (!Array.isArray(options.allow) || options.allow.some((a) => typeof a !== 'string'))) throw new GuardError('USAGE', '`allow` must be an array of qualified names such as `mypkg.Config`');
}

function openInput(target: string | Uint8Array, options: SafeLoadOptions): Input {
  if (typeof target === 'string') {
    let fd: number;
    try {
      fd = openSync(target, 'r');
    } catch (e) {
      throw toGuardError(e, 'IO', { path: target, step: 'open' });
    }
    const stat = fstatSync(fd);
    if (!stat.isFile()) {
      closeSync(fd);
      throw new GuardError('USAGE', `${target} is not a regular file`, { context: { path: target } });
    }
    return { src: new FdSource(fd, stat.size), fd, path: target, stat };
  }
  if (!(target instanceof Uint8Array)) throw new GuardError('USAGE', 'safeLoad() takes a path or a Uint8Array');
  const buf = Buffer.from(target.buffer, target.byteOffset, target.byteLength);
  return { src: new BufferSource(buf), fd: undefined, path: options.name ?? '<bytes>', stat: undefined };
}

/** The file scanned by path must be the file we hold open: same inode, size and mtime. */
function sameFile(input: Input, path: string): void {
  const a = input.stat as Stats;
  let b: Stats;
  try {
    b = statSync(path);
  } catch (e) {
    throw toGuardError(e, 'IO', { path, step: 'stat' });
  }
  const now = fstatSync(input.fd as number);
  if (a.ino !== b.ino || a.dev !== b.dev || a.size !== b.size || a.mtimeMs !== b.mtimeMs || now.size !== a.size || now.mtimeMs !== a.mtimeMs) {
    throw new GuardError('IO', `${path} changed while it was being scanned; refusing to load bytes that were not checked`, { context: { path, step: 'scan' } });
  }
}

/** Scan findings that mean the environment failed (a write to TMPDIR), not the file: safeLoad throws IO. */
const ENVIRONMENT_RULES: ReadonlySet<string> = new Set(['compressed/write-failed']);

function refuseIfUnsafe(report: Report, options: SafeLoadOptions, path: string): void {
  const worst = report.files.reduce((v, f) => (verdictRank(f.verdict) > verdictRank(v) ? f.verdict : v), 'safe' as FileReport['verdict']);
  const malicious = report.files.some((f) => f.verdict === 'malicious');
  const suspicious = report.files.some((f) => f.verdict === 'suspicious');
  if (malicious || (suspicious && !options.allowSuspicious)) {
    const top = report.files.flatMap((f) => f.findings).filter((f) => f.verdict === 'malicious' || f.verdict === 'suspicious');
    const first = top.find((f) => f.verdict === 'malicious') ?? top[0];
    const err = new GuardError('UNSAFE_MODEL', `${path} is ${worst}: ${first ? first.message : 'see the report'}${suspicious && !malicious ? ' (pass allowSuspicious: true or --allow NAME to load it anyway)' : ''}`, {
      context: { path, step: 'scan', verdict: worst },
    });
    (err as GuardError & { report: Report }).report = report;
    throw err;
  }
  if (worst === 'invalid' || worst === 'error') {
    const env = report.files.flatMap((f) => f.findings).find((f) => f.verdict === 'error' && ENVIRONMENT_RULES.has(f.rule));
    if (env) {
      // The scan could not finish because of the machine (a full TMPDIR), not the file: IO.
      const err = new GuardError('IO', `${path}: ${env.message}`, { context: { path, step: 'scan', rule: env.rule } });
      (err as GuardError & { report: Report }).report = report;
      throw err;
    }
    const first = report.files.flatMap((f) => f.findings).find((f) => f.verdict === 'invalid' || f.verdict === 'error');
    const err = new GuardError('INVALID_MODEL', `${path} could not be verified (${worst}): ${first?.message ?? 'see the report'}`, { context: { path, step: 'scan', verdict: worst } });
    (err as GuardError & { report: Report }).report = report;
    throw err;
  }
}

interface LoadContext {
  input: Input;
  options: SafeLoadOptions;
  report: Report;
  file: FileReport;
  limits: Limits;
  maxBytes: number;
  early?: EarlyTorchZip | undefined;
}

/** Runs the VM on pickle bytes; its findings join the report and can still refuse the load. */
async function runVm(ctx: LoadContext, pickle: Uint8Array, member: string | undefined, extra: Partial<VmUnpickleOptions> = {}, started?: Promise<VmResult>): Promise<VmResult> {
  let r: VmResult;
  try {
    r = await (started ?? vmUnpickle(pickle, vmOptions(ctx.options, extra)));
  } catch (e) {
    if (e instanceof GuardError && !(e as { report?: Report }).report) (e as GuardError & { report: Report }).report = ctx.report;
    throw e;
  }
  const policy = createPolicy(ctx.options.allow ? { allow: ctx.options.allow } : {});
  const findings = vmFindings(r, policy, member !== undefined ? { member } : undefined);
  if (findings.length > 0) {
    const existing = new Set(ctx.file.findings.map((f) => `${f.rule}\0${f.message}`));
    for (const f of findings) {
      const fin: Finding = { rule: f.rule, severity: f.severity, verdict: f.verdict, message: f.message };
      if (f.location) fin.location = f.location;
      if (f.evidence !== undefined) fin.evidence = f.evidence;
      if (!existing.has(`${fin.rule}\0${fin.message}`)) ctx.file.findings.push(fin);
    }
    ctx.file.verdict = verdictOf(ctx.file.findings);
    ctx.report.summary = summarize(ctx.report.files, ctx.report.summary.durationMs);
    refuseIfUnsafe(ctx.report, ctx.options, ctx.input.path);
  }
  ctx.report.walls = reportWalls(currentJournal());
  if (r.error) {
    throw new GuardError('INVALID_MODEL', `${ctx.input.path}: CPython's pickle machine could not load the pickle: ${r.error}`, { context: { path: ctx.input.path, step: 'vm', ...(member ? { member } : {}) } });
  }
  return r;
}

function vmMeta(r: VmResult): Record<string, unknown> {
  return { vm: { runMs: r.runMs, boot: r.boot ?? null, imports: r.imports.length, notes: r.notes } };
}

function collectStorages(n: VmNode, out: Map<string, { dtype: string | null; numel: number }>): void {
  const stack: VmNode[] = [n];
  while (stack.length > 0) {
    const x = stack.pop();
    if (x === null || typeof x !== 'object') continue;
    switch (x.t) {
      case 'storage':
        if (!out.has(x.key)) out.set(x.key, { dtype: x.dtype, numel: x.numel });
        break;
      case 'tensor':
        stack.push(x.storage);
        break;
      case 'tuple':
      case 'list':
      case 'set':
        stack.push(...x.v);
        break;
      case 'dict':
        stack.push(...x.k, ...x.v);
        break;
      case 'obj':
        stack.push(...x.args);
        if (x.state !== undefined) stack.push(x.state);
        if (x.items !== undefined) stack.push(x.items);
        if (x.kwargs !== undefined) stack.push(x.kwargs);
        break;
      case 'ndarray':
        if (x.objects !== undefined) stack.push(x.objects);
        break;
      default:
        break;
    }
  }
}

async function build(ctx: LoadContext, r: VmResult, root: VmNode, storages: StorageResolver | undefined, format: string, metadata: Record<string, unknown>, ready?: Promise<void>): Promise<LoadResult> {
  const g = new GraphBuilder(r.blob, storages, ctx.maxBytes, ready);
  const object = g.convert(root, '');
  await g.finish(ctx.input.fd, ctx.input.path);
  return { format, tensors: g.tensors, object, metadata: { ...metadata, ...vmMeta(r) }, report: ctx.report };
}

function entryLocation(ctx: LoadContext, e: ZipEntry, inflated: Map<string, Uint8Array>): Exclude<StorageLocation, { kind: 'arena' }> {
  if (e.dataOffset < 0) throw new GuardError('INVALID_MODEL', `member ${e.name} has no readable data`, { context: { path: ctx.input.path, member: e.name } });
  if (e.method === 0) {
    const size = Math.min(e.compressedSize, ctx.input.src.size - e.dataOffset);
    if (ctx.input.fd === undefined) return { kind: 'memory', bytes: ctx.input.src.read(e.dataOffset, size) };
    return { kind: 'file', offset: e.dataOffset, size };
  }
  if (e.method === 8) {
    let b = inflated.get(e.name);
    if (!b) {
      b = inflateCapped(ctx.input.src.read(e.dataOffset, e.compressedSize), Math.min(ctx.maxBytes, 2 ** 31 - 1));
      inflated.set(e.name, b);
    }
    return { kind: 'memory', bytes: b };
  }
  throw new GuardError('UNSUPPORTED', `member ${e.name} uses compression method ${e.method}`, { context: { path: ctx.input.path, member: e.name } });
}

function readEntry(ctx: LoadContext, e: ZipEntry, cap: number): Uint8Array {
  const loc = entryLocation(ctx, e, new Map());
  if (loc.kind === 'memory') return loc.bytes;
  if (loc.size > cap) throw new GuardError('LIMIT_EXCEEDED', `member ${e.name} is larger than ${cap} bytes`, { context: { path: ctx.input.path, member: e.name } });
  return ctx.input.src.read(loc.offset, loc.size);
}

async function loadTorchZip(ctx: LoadContext): Promise<LoadResult> {
  const early = ctx.early;
  const zip = early ? early.zip : readZip(ctx.input.src, ctx.limits);
  const first = zip.entries[0];
  if (!first) throw new GuardError('INVALID_MODEL', 'empty archive', { context: { path: ctx.input.path } });
  // PyTorch's reader takes the archive root from the first record's name.
  const root = first.name.includes('/') ? first.name.slice(0, first.name.indexOf('/')) : '';
  const byName = new Map<string, ZipEntry>();
  for (const e of zip.entries) if (!byName.has(e.name)) byName.set(e.name, e);
  const dataPkl = byName.get(`${root}/data.pkl`);
  if (!dataPkl) throw new GuardError('INVALID_MODEL', `no ${root}/data.pkl in the archive`, { context: { path: ctx.input.path } });
  const pickle = readEntry(ctx, dataPkl, ctx.limits.maxPickleBytes);
  const r = await runVm(ctx, pickle, dataPkl.name, {}, early && early.dataPkl === dataPkl ? early.vm : undefined);
  const inflated = new Map<string, Uint8Array>();
  const storages: StorageResolver = {
    locate(key) {
      const e = byName.get(`${root}/data/${key}`);
      if (!e) throw new GuardError('INVALID_MODEL', `storage ${key} has no member ${root}/data/${key}`, { context: { path: ctx.input.path, member: `${root}/data/${key}` } });
      const slot = early?.slots.get(e.name);
      if (slot) return { kind: 'arena', bytes: slot };
      return entryLocation(ctx, e, inflated);
    },
  };
  const metadata: Record<string, unknown> = { archiveRoot: root };
  for (const k of ['byteorder', 'version', '.data/version']) {
    const e = byName.get(`${root}/${k}`);
    if (e && e.uncompressedSize < 256) metadata[k.replace('.data/', '')] = Buffer.from(readEntry(ctx, e, 256)).toString('latin1').trim();
  }
  if (metadata.byteorder !== undefined && metadata.byteorder !== 'little') throw new GuardError('UNSUPPORTED', `byte order ${String(metadata.byteorder)} is not supported`, { context: { path: ctx.input.path } });
  return build(ctx, r, (r.objects ?? [null])[0] as VmNode, storages, 'pytorch-zip', metadata, early?.ready);
}

async function loadTorchLegacy(ctx: LoadContext): Promise<LoadResult> {
  const src = ctx.input.src;
  let want = Math.min(src.size, LEGACY_PROBE_BYTES);
  let r: VmResult;
  for (;;) {
    const prefix = src.read(0, want);
    const o: VmUnpickleOptions = { pickles: 5, ...(ctx.options.pool ? { pool: ctx.options.pool } : {}), ...(ctx.options.timeoutMs ? { timeoutMs: ctx.options.timeoutMs } : {}) };
    const probe = await vmUnpickle(prefix, { ...o, graph: false });
    const truncated = probe.error !== null && /truncat|EOF|ran out of input/i.test(probe.error);
    if (!truncated || want >= src.size || want >= ctx.limits.maxPickleBytes) {
      r = await runVm(ctx, prefix, undefined, { pickles: 5 });
      break;
    }
    want = Math.min(src.size, want * 4, ctx.limits.maxPickleBytes);
  }
  const objs = r.objects ?? [];
  if (r.count < 5) throw new GuardError('INVALID_MODEL', `legacy file holds ${r.count} of 5 pickles`, { context: { path: ctx.input.path } });
  const main = objs[3] as VmNode;
  const keysNode = objs[4] as VmNode;
  const keys: string[] = [];
  if (keysNode && typeof keysNode === 'object' && (keysNode.t === 'list' || keysNode.t === 'tuple')) {
    for (const k of keysNode.v) if (typeof k === 'string') keys.push(k);
  }
  const info = new Map<string, { dtype: string | null; numel: number }>();
  collectStorages(main, info);
  // Raw storages follow the pickles in key order: int64 element count, then the bytes.
  const where = new Map<string, StorageLocation>();
  let pos = r.end;
  for (const k of keys) {
    const s = info.get(k);
    if (!s) throw new GuardError('INVALID_MODEL', `storage key ${k} is not referenced by the object`, { context: { path: ctx.input.path } });
    const hdr = src.read(pos, 8);
    if (hdr.length < 8) throw new GuardError('INVALID_MODEL', `legacy storage ${k} is truncated`, { context: { path: ctx.input.path, offset: pos } });
    const numel = Number(hdr.readBigInt64LE(0));
    const size = dtypeInfo(s.dtype ?? '')?.size;
    if (size === undefined) throw new GuardError('UNSUPPORTED', `legacy storage ${k} has dtype ${String(s.dtype)}`, { context: { path: ctx.input.path } });
    if (numel !== s.numel || numel < 0) throw new GuardError('INVALID_MODEL', `legacy storage ${k} says ${numel} elements, the object says ${s.numel}`, { context: { path: ctx.input.path, offset: pos } });
    const bytes = numel * size;
    if (pos + 8 + bytes > src.size) throw new GuardError('INVALID_MODEL', `legacy storage ${k} runs past the end of the file`, { context: { path: ctx.input.path, offset: pos } });
    where.set(k, ctx.input.fd === undefined ? { kind: 'memory', bytes: src.read(pos + 8, bytes) } : { kind: 'file', offset: pos + 8, size: bytes });
    pos += 8 + bytes;
  }
  const storages: StorageResolver = {
    locate(key) {
      const l = where.get(key);
      if (!l) throw new GuardError('INVALID_MODEL', `storage ${key} is not in the file`, { context: { path: ctx.input.path } });
      return l;
    },
  };
  const g = new GraphBuilder(r.blob, undefined, ctx.maxBytes);
  const sysInfo = g.convert(objs[2] as VmNode);
  return build(ctx, r, main, storages, 'pytorch-legacy', { protocol: typeof objs[1] === 'number' ? objs[1] : null, sysInfo });
}

async function loadPickle(ctx: LoadContext): Promise<LoadResult> {
  const src = ctx.input.src;
  if (src.size > ctx.limits.maxPickleBytes) throw new GuardError('LIMIT_EXCEEDED', `pickle of ${src.size} bytes exceeds maxPickleBytes`, { context: { path: ctx.input.path } });
  const r = await runVm(ctx, src.read(0, src.size), undefined);
  return build(ctx, r, (r.objects ?? [null])[0] as VmNode, undefined, 'pickle', {});
}

/**
 * joblib: the pickle stream has each array's raw bytes right after its NumpyArrayWrapper. The VM
 * reads the stream with the pure-Python unpickler joblib uses, records each array's file range and
 * skips it; the bytes are read from the file into the array's buffer here.
 */
async function loadJoblib(ctx: LoadContext): Promise<LoadResult> {
  const src = ctx.input.src;
  if (src.size > ctx.limits.maxPickleBytes) throw new GuardError('LIMIT_EXCEEDED', `joblib file of ${src.size} bytes exceeds maxPickleBytes`, { context: { path: ctx.input.path } });
  const r = await runVm(ctx, src.read(0, src.size), undefined, { joblib: true });
  const storages: StorageResolver = {
    locate(key) {
      throw new GuardError('INVALID_MODEL', `joblib file references a PyTorch storage (${key})`, { context: { path: ctx.input.path } });
    },
    locateRange(offset, size) {
      if (offset < 0 || offset + size > src.size) throw new GuardError('INVALID_MODEL', 'joblib array runs past the end of the file', { context: { path: ctx.input.path, offset } });
      return ctx.input.fd !== undefined ? { kind: 'file', offset, size } : { kind: 'memory', bytes: src.read(offset, size) };
    },
  };
  return build(ctx, r, (r.objects ?? [null])[0] as VmNode, storages, 'joblib', {});
}

/** Reads a plain (non-object) .npy from `src` at `base` (absolute file offset when from the file). */
async function npyTensor(ctx: LoadContext, src: ByteSource, fileBase: number | undefined, name: string, inMemory?: Uint8Array): Promise<Tensor> {
  const h = parseNpyHeader(src);
  if (h.isObject) throw new GuardError('UNSUPPORTED', `${name}: object arrays hold a pickle; loaded through the VM instead`, { context: { path: ctx.input.path } });
  const descr = typeof h.descr === 'string' ? h.descr : '';
  const dt = fromNumpyDescr(descr);
  const info = dt ? dtypeInfo(dt.dtype) : undefined;
  if (!dt || !info) {
    const label = name === '<array>' ? 'the array' : `array "${name}"`;
    if (Array.isArray(h.descr)) {
      // A structured (record) dtype: one element holds several named fields of different types.
      const fields = (h.descr as unknown[]).map((f) => (f && typeof f === 'object' && 'name' in f ? String((f as { name: unknown }).name) : '?'));
      throw new GuardError('UNSUPPORTED', `${label} has a structured (record) NumPy dtype with fields ${fields.slice(0, 8).join(', ')}${fields.length > 8 ? ', …' : ''}; safeLoad returns plain numeric arrays only and refuses rather than return the records as raw bytes. Save each field as its own array (np.savez(f, ${fields[0] ?? 'a'}=rec['${fields[0] ?? 'a'}'], …)).`, { context: { path: ctx.input.path, tensor: name } });
    }
    throw new GuardError('UNSUPPORTED', `${label} has NumPy dtype ${JSON.stringify(h.descr)}, which safeLoad does not return (plain numeric dtypes only)`, { context: { path: ctx.input.path, tensor: name } });
  }
  const bytes = h.count * info.size;
  if (h.dataOffset + bytes > src.size) throw new GuardError('INVALID_MODEL', `${name}: array data runs past the end`, { context: { path: ctx.input.path } });
  if (bytes > ctx.maxBytes) throw new GuardError('LIMIT_EXCEEDED', `${name}: ${bytes} bytes exceed maxBytes`, { context: { path: ctx.input.path } });
  const buf = allocTensor(bytes, name);
  const dest = new Uint8Array(buf);
  if (inMemory) dest.set(inMemory.subarray(h.dataOffset, h.dataOffset + bytes));
  else if (fileBase !== undefined && ctx.input.fd !== undefined) {
    const job: ReadJob = { fileOffset: fileBase + h.dataOffset, length: bytes, dest, destOffset: 0 };
    await runReads(ctx.input.fd, [job], ctx.input.path);
  } else dest.set(src.read(h.dataOffset, bytes));
  if (dt.bigEndian) byteswap(dest, dt.dtype.startsWith('complex') ? info.size / 2 : info.size);
  let shape = h.shape;
  let data = info.make(buf, 0, h.count);
  if (h.fortranOrder && shape.length > 1) {
    // Transpose Fortran order into row-major.
    const stride: number[] = [];
    let acc = 1;
    for (const s of shape) {
      stride.push(acc);
      acc *= s;
    }
    const g = new GraphBuilder(new Uint8Array(0), { locate: () => ({ kind: 'memory', bytes: dest }) }, ctx.maxBytes);
    const t = g.convert({ t: 'tensor', id: 0, storage: { t: 'storage', id: 1, key: 'a', dtype: dt.dtype, location: 'cpu', numel: h.count, view: null }, offset: 0, shape, stride, dtype: dt.dtype, requires_grad: false, parameter: false }) as Tensor;
    await g.finish(undefined, ctx.input.path);
    shape = t.shape;
    data = t.data;
  }
  return brandTensor({ dtype: dt.dtype, shape, data });
}

async function loadNpy(ctx: LoadContext): Promise<LoadResult> {
  const src = ctx.input.src;
  const h = parseNpyHeader(src);
  if (h.isObject) {
    const pickle = src.read(h.dataOffset, src.size - h.dataOffset);
    const r = await runVm(ctx, pickle, undefined);
    return build(ctx, r, (r.objects ?? [null])[0] as VmNode, undefined, 'numpy', { npyVersion: h.version.join('.'), object: true });
  }
  const t = await npyTensor(ctx, src, ctx.input.fd !== undefined ? 0 : undefined, '<array>');
  return { format: 'numpy', tensors: new Map([['', t]]), object: t, metadata: { npyVersion: h.version.join('.') }, report: ctx.report };
}

async function loadNpz(ctx: LoadContext): Promise<LoadResult> {
  const zip = readZip(ctx.input.src, ctx.limits);
  const tensors = new Map<string, Tensor>();
  const object = Object.create(null) as Record<string, unknown>;
  for (const e of zip.entries) {
    if (e.name.endsWith('/')) continue;
    const name = e.name.endsWith('.npy') ? e.name.slice(0, -4) : e.name;
    let t: Tensor;
    const inflated = new Map<string, Uint8Array>();
    const loc = entryLocation(ctx, e, inflated);
    if (loc.kind === 'file') {
      const member = new SliceSource(ctx.input.src, loc.offset, loc.size);
      const h = parseNpyHeader(member);
      if (h.isObject) {
        const r = await runVm(ctx, member.read(h.dataOffset, member.size - h.dataOffset), e.name);
        const g = new GraphBuilder(r.blob, undefined, ctx.maxBytes);
        Object.defineProperty(object, name, { value: g.convert((r.objects ?? [null])[0] as VmNode, name), enumerable: true, writable: true });
        for (const [k, v] of g.tensors) tensors.set(k, v);
        continue;
      }
      t = await npyTensor(ctx, member, ctx.input.fd !== undefined ? loc.offset : undefined, e.name);
    } else {
      const member = new BufferSource(Buffer.from(loc.bytes.buffer, loc.bytes.byteOffset, loc.bytes.byteLength));
      const h = parseNpyHeader(member);
      if (h.isObject) {
        const r = await runVm(ctx, loc.bytes.subarray(h.dataOffset), e.name);
        const g = new GraphBuilder(r.blob, undefined, ctx.maxBytes);
        Object.defineProperty(object, name, { value: g.convert((r.objects ?? [null])[0] as VmNode, name), enumerable: true, writable: true });
        for (const [k, v] of g.tensors) tensors.set(k, v);
        continue;
      }
      t = await npyTensor(ctx, member, undefined, e.name, loc.bytes);
    }
    tensors.set(name, t);
    Object.defineProperty(object, name, { value: t, enumerable: true, writable: true });
  }
  return { format: 'npz', tensors, object, metadata: { members: zip.entries.length }, report: ctx.report };
}

async function readRanges(ctx: LoadContext, items: Array<{ name: string; dtype: string; shape: number[]; begin: number; end: number; make: (b: ArrayBuffer, o: number, n: number) => Tensor['data'] }>): Promise<Map<string, Tensor>> {
  const tensors = new Map<string, Tensor>();
  const jobs: ReadJob[] = [];
  let total = 0;
  for (const it of items) {
    total += it.end - it.begin;
    if (total > ctx.maxBytes) throw new GuardError('LIMIT_EXCEEDED', `tensors need more than maxBytes (${ctx.maxBytes})`, { context: { path: ctx.input.path } });
  }
  // One arena for all of them (see allocArena), each size checked by name first.
  const slots = allocArena(
    items.map((it) => it.end - it.begin),
    (i) => `tensor ${items[i]?.name ?? ''}`,
  );
  items.forEach((it, i) => {
    const bytes = it.end - it.begin;
    const slot = slots[i] as ArenaSlot;
    const dest = new Uint8Array(slot.buffer, slot.byteOffset, bytes);
    if (ctx.input.fd !== undefined) jobs.push({ fileOffset: it.begin, length: bytes, dest, destOffset: 0 });
    else dest.set(ctx.input.src.read(it.begin, bytes));
    tensors.set(it.name, brandTensor({ dtype: it.dtype, shape: it.shape, data: it.make(slot.buffer, slot.byteOffset, bytes) }));
  });
  if (ctx.input.fd !== undefined) await runReads(ctx.input.fd, jobs, ctx.input.path);
  return tensors;
}

async function loadSafetensors(ctx: LoadContext): Promise<LoadResult> {
  const info = parseSafetensors(ctx.input.src);
  const items = info.tensors.map((t) => {
    const dtype = FROM_SAFETENSORS[t.dtype];
    const d = dtype ? dtypeInfo(dtype) : undefined;
    if (!dtype || !d) throw new GuardError('UNSUPPORTED', `safetensors dtype ${t.dtype} (${t.name}) is not supported`, { context: { path: ctx.input.path } });
    return { name: t.name, dtype, shape: t.shape, begin: info.dataStart + t.begin, end: info.dataStart + t.end, make: (b: ArrayBuffer, o: number, n: number) => d.make(b, o, n / d.size) };
  });
  const tensors = await readRanges(ctx, items);
  const object = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of tensors) Object.defineProperty(object, k, { value: v, enumerable: true, writable: true });
  return { format: 'safetensors', tensors, object, metadata: { ...info.metadata }, report: ctx.report };
}

const GGUF_PLAIN: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64', I8: 'int8', I16: 'int16', I32: 'int32', I64: 'int64' };

async function loadGguf(ctx: LoadContext): Promise<LoadResult> {
  const info = parseGguf(ctx.input.src);
  const items = info.tensors.map((t) => {
    const plain = GGUF_PLAIN[t.dtype];
    const d = plain ? dtypeInfo(plain) : undefined;
    // ggml lists dimensions fastest-first; PyTorch/NumPy order is the reverse.
    const shape = [...t.shape].reverse();
    if (plain && d) return { name: t.name, dtype: plain, shape, begin: t.begin, end: t.end, make: (b: ArrayBuffer, o: number, n: number) => d.make(b, o, n / d.size) };
    return { name: t.name, dtype: `gguf:${t.dtype}`, shape, begin: t.begin, end: t.end, make: (b: ArrayBuffer, o: number, n: number) => new Uint8Array(b, o, n) };
  });
  const tensors = await readRanges(ctx, items);
  const metadata: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of info.metadata) Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true });
  const object = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of tensors) Object.defineProperty(object, k, { value: v, enumerable: true, writable: true });
  return { format: 'gguf', tensors, object, metadata: { version: info.version, gguf: metadata }, report: ctx.report };
}
