/**
 * The restricted unpickler's host API: run CPython's pickle machine (Pyodide, in an isolate, in a
 * worker process) on pickle bytes and get back the compact object graph, every import it asked for
 * and every call it would have made.
 */
import { GuardError } from '../errors.js';
import type { Policy } from '../formats/pickle/policy.js';
import type { NewFinding } from '../report/findings.js';
import { defaultPool, DEFAULT_VM_TIMEOUT_MS, type UnpicklerPool } from './pool.js';

export { UnpicklerPool, defaultPool, closeDefaultPool, DEFAULT_VM_TIMEOUT_MS, type PoolOptions } from './pool.js';

/** A node of the graph the VM returns. Containers carry an `id`; later occurrences are `ref`s. */
export type VmNode =
  | null
  | boolean
  | number
  | string
  | { t: 'int'; v: string }
  | { t: 'float'; v: number | string }
  | { t: 'ref'; id: number }
  | { t: 'bytes'; id: number; b: BlobRef }
  | { t: 'tuple' | 'list' | 'set'; id: number; v: VmNode[] }
  | { t: 'dict'; id: number; k: VmNode[]; v: VmNode[]; ordered?: boolean }
  | { t: 'complex'; id: number; re: number; im: number }
  | VmTensorNode
  | VmStorageNode
  | { t: 'ndarray'; id: number; shape: VmNode[]; fortran: boolean; dtype: NpDtypeSpec; data?: BlobRef; objects?: VmNode }
  | { t: 'npscalar'; id: number; dtype: NpDtypeSpec; data: BlobRef | null }
  | { t: 'npdtype'; id: number; dtype: NpDtypeSpec }
  | { t: 'dtype'; id: number; name: string }
  | { t: 'global'; id: number; name: string; intercepted?: boolean }
  | { t: 'obj'; id: number; cls: string; args: VmNode[]; kwargs?: VmNode; state?: VmNode; items?: VmNode }
  | { t: 'intercepted'; id: number; origin: string }
  | { t: 'repr'; id: number; v: string };

export interface BlobRef {
  t: 'blob';
  o: number;
  n: number;
}

export interface NpDtypeSpec {
  spec: string;
  order: string;
  fields: string[] | null;
}

export interface VmTensorNode {
  t: 'tensor';
  id: number;
  storage: VmNode;
  offset: VmNode;
  shape: VmNode[];
  stride: VmNode[];
  dtype: string | null;
  requires_grad: boolean;
  parameter: boolean;
}

export interface VmStorageNode {
  t: 'storage';
  id: number;
  key: string;
  dtype: string | null;
  location: string;
  numel: number;
  view: VmNode;
}

/** One call the VM intercepted instead of running. */
export interface VmCallRecord {
  module: string;
  name: string;
  /** `call` (REDUCE/INST/OBJ), `new` (NEWOBJ), `setstate` (BUILD), `setitem`/`append`/`extend`, `persistent_id`. */
  kind: string;
  /** The arguments' reprs, joined and truncated. */
  args: string;
}

export interface VmResult {
  /** One graph root per pickle loaded (null when graph output was not asked for or hit a limit). */
  objects: VmNode[] | null;
  calls: VmCallRecord[];
  imports: Array<{ module: string; name: string }>;
  notes: string[];
  /** Byte offset just past the last pickle loaded. */
  end: number;
  /** Why the VM stopped early (Python exception, limit), if it did. */
  error: string | null;
  count: number;
  /** Raw bytes referenced by `bytes` / `ndarray` nodes. */
  blob: Uint8Array;
  boot?: { ms: number; snapshot: boolean; built: boolean };
  runMs: number;
  /** Test-only (PoolOptions.testBreakout): what the worker's breakout attempt achieved. */
  breakout?: string;
}

export interface VmUnpickleOptions {
  /** Consecutive pickles to load (PyTorch legacy files hold 5). */
  pickles?: number;
  /** Load pickles until the data ends (up to `pickles`). */
  all?: boolean;
  /** Read the stream like joblib: pure-Python unpickler, inline arrays after NumpyArrayWrapper. */
  joblib?: boolean;
  /** Qualified names accepted as plain placeholder objects. */
  allow?: readonly string[];
  /** Return the object graph (default true). */
  graph?: boolean;
  timeoutMs?: number;
  pool?: UnpicklerPool;
}

export async function vmUnpickle(pickle: Uint8Array, options: VmUnpickleOptions = {}): Promise<VmResult> {
  const pool = options.pool ?? defaultPool();
  const reply = await pool.run({
    pickle,
    config: { pickles: options.pickles ?? 1, all: options.all === true, allow: [...(options.allow ?? [])], graph: options.graph !== false, joblib: options.joblib === true },
    timeoutMs: options.timeoutMs ?? DEFAULT_VM_TIMEOUT_MS,
  });
  let parsed: Omit<VmResult, 'blob' | 'runMs' | 'boot'>;
  try {
    parsed = JSON.parse(reply.json) as Omit<VmResult, 'blob' | 'runMs' | 'boot'>;
  } catch (e) {
    throw new GuardError('INTERNAL', 'the unpickler VM returned malformed output', { cause: e, context: { step: 'vm' } });
  }
  const out: VmResult = { ...parsed, blob: reply.blob, runMs: reply.runMs };
  if (reply.boot) out.boot = reply.boot;
  if (reply.breakout !== undefined) out.breakout = reply.breakout;
  return out;
}

/** Modules that only exist inside the VM's own runtime: reaching for them is an escape attempt. */
const VM_RUNTIME_MODULES = /^(js|pyodide|pyodide_js|_pyodide|pyodide_http|micropip|emscripten)(\.|$)/;

export interface VmScanOptions {
  policy: Policy;
  /** Member name for finding locations. */
  member?: string;
  timeoutMs?: number;
  /** Number of consecutive pickles in the stream to run (default: all, up to 64). */
  pickles?: number;
  /** The stream is a joblib file: read it like joblib (inline array bytes are skipped, not parsed as opcodes). */
  joblib?: boolean;
  pool?: UnpicklerPool;
}

export interface VmScanResult {
  /** Every call the VM intercepted, in stream order. */
  calls: VmCallRecord[];
  /** Every (module, name) the VM's find_class was asked for, in stream order. */
  imports: Array<{ module: string; name: string }>;
  /** Set when the VM stopped early (exception, limit, timeout, crash). */
  error?: string;
  /** Findings ready for a FindingSink: one per non-allowlisted intercepted call, one for an early stop. */
  findings: NewFinding[];
  /** Pickles the VM finished. */
  pickles: number;
}

/**
 * The VM pass for `guard scan`: runs every pickle of the stream in the restricted unpickler and turns
 * each intercepted call into a finding ("would call `os.system('…')`"). Never throws for a hostile
 * input: timeouts, crashes and memory limits become findings.
 */
export async function vmScanPass(pickleBytes: Uint8Array, opts: VmScanOptions): Promise<VmScanResult> {
  const location = opts.member !== undefined ? { member: opts.member } : undefined;
  let r: VmResult;
  try {
    const o: VmUnpickleOptions = { pickles: opts.joblib ? 1 : (opts.pickles ?? 64), all: true, graph: false, timeoutMs: opts.timeoutMs ?? DEFAULT_VM_TIMEOUT_MS, joblib: opts.joblib === true };
    if (opts.pool) o.pool = opts.pool;
    r = await vmUnpickle(pickleBytes, o);
  } catch (e) {
    const err = e instanceof GuardError ? e : new GuardError('INTERNAL', String(e));
    if (err.code === 'SANDBOX_VIOLATION') {
      // Something in the worker got past Pyodide and the isolate: the file attacked the parser.
      const f: NewFinding = { rule: 'vm/wall-violation', severity: 'critical', verdict: 'malicious', message: `the kernel walls around the unpickler stopped an escape: ${err.message}` };
      if (location) f.location = location;
      return { calls: [], imports: [], error: err.message, findings: [f], pickles: 0 };
    }
    // A time limit is the file's doing as far as we can tell (a pickle can grind); a dead or
    // unstartable worker with nothing denied by its walls is not (its runtime, a missing library,
    // the host's OOM killer, an unusable cache): `error`, modelguard could not finish, never a
    // judgement of the model, and never `malicious`.
    const timedOut = err.code === 'TIMEOUT';
    const f: NewFinding = {
      rule: timedOut ? 'vm/timeout' : err.code === 'WORKER_CRASHED' ? 'vm/crash' : 'vm/failed',
      severity: 'high',
      verdict: timedOut ? 'suspicious' : 'error',
      message: `the restricted unpickler could not finish (${err.code}): ${err.message}; the file is not known to be safe`,
    };
    if (location) f.location = location;
    return { calls: [], imports: [], error: err.message, findings: [f], pickles: 0 };
  }
  return { calls: r.calls, imports: r.imports, ...(r.error ? { error: r.error } : {}), findings: vmFindings(r, opts.policy, location), pickles: r.count };
}

/** Findings for a VM result: intercepted calls by policy class, runtime-module reaches, early stops. */
export function vmFindings(r: Pick<VmResult, 'calls' | 'imports' | 'error' | 'notes' | 'count'>, policy: Policy, location?: { member: string }): NewFinding[] {
  const out: NewFinding[] = [];
  const add = (f: NewFinding) => {
    if (location) f.location = location;
    out.push(f);
  };
  const seenImports = new Set<string>();
  for (const imp of r.imports) {
    const key = `${imp.module}\0${imp.name}`;
    if (seenImports.has(key)) continue;
    seenImports.add(key);
    if (VM_RUNTIME_MODULES.test(imp.module)) {
      add({ rule: 'vm/runtime-escape', severity: 'critical', verdict: 'malicious', message: `asks the VM for \`${imp.module}.${imp.name}\`, a module of the sandbox runtime itself: an escape attempt; intercepted, never resolved`, evidence: `find_class(${JSON.stringify(imp.module)}, ${JSON.stringify(imp.name)})` });
    }
  }
  for (const c of r.calls) {
    // Records name the object a call acts on (`Linear.__new__` for the state of a NEWOBJ result,
    // `f()` for a call result): the policy judges the imported class, not that synthetic suffix.
    const baseName = c.name.replace(/(\(\)|\.__new__)+$/, '');
    const v = c.kind === 'persistent_id' ? { cls: 'unknown' as const, qualified: 'persistent_load', reason: 'a persistent id that is not a PyTorch storage' } : policy.classify(c.module, baseName);
    const runtime = VM_RUNTIME_MODULES.test(c.module);
    const cls = runtime ? 'dangerous' : v.cls;
    if (cls === 'allowed') continue;
    const what = describeCall(c, v.qualified);
    if (cls === 'dangerous') {
      add({ rule: 'vm/intercepted-call', severity: 'critical', verdict: 'malicious', message: `would call ${what}: ${runtime ? 'sandbox runtime escape' : v.reason}; intercepted by the VM, never run`, evidence: what });
    } else if (cls === 'library') {
      add({ rule: 'vm/intercepted-call', severity: 'low', verdict: 'suspicious', message: `would call ${what}: ${v.reason}; intercepted by the VM, never run`, evidence: what });
    } else {
      add({ rule: 'vm/intercepted-call', severity: 'high', verdict: 'suspicious', message: `would call ${what}: ${v.reason}; intercepted by the VM, never run`, evidence: what });
    }
  }
  if (r.error) {
    const limit = /^(limit:|MemoryError|OverflowError|RecursionError)/.test(r.error);
    if (limit) {
      add({ rule: 'vm/limit', severity: 'high', verdict: 'suspicious', message: `CPython's pickle machine stopped at a resource limit: ${r.error}` });
    } else if (r.count > 0) {
      // The loader reads the first pickle; bytes after a complete pickle that do not unpickle are
      // not run by anything (the static pass reports trailing data on its own).
      add({ rule: 'vm/trailing-data', severity: 'info', verdict: 'safe', message: `after ${r.count} complete pickle(s), the rest of the stream does not unpickle: ${r.error}` });
    } else {
      add({ rule: 'vm/error', severity: 'high', verdict: 'invalid', message: `CPython's pickle machine rejects the stream: ${r.error}` });
    }
  }
  for (const n of r.notes) add({ rule: 'vm/note', severity: 'info', verdict: 'safe', message: n });
  return out;
}

function describeCall(c: VmCallRecord, qualified: string): string {
  switch (c.kind) {
    case 'new':
      return `\`${qualified}.__new__(${c.args})\``;
    case 'setstate':
      return `\`${qualified}.__setstate__(${c.args})\``;
    case 'setitem':
    case 'append':
    case 'extend':
      return `\`${qualified}.${c.kind}(${c.args})\``;
    case 'persistent_id':
      return `\`persistent_load(${c.args})\``;
    default:
      return `\`${qualified}(${c.args})\``;
  }
}

/**
 * Starts a worker and boots its VM (building the snapshot cache on first use) so that the first
 * real call does not pay for it. Returns how the VM booted.
 */
export async function prepareUnpickler(pool: UnpicklerPool = defaultPool()): Promise<{ ms: number; boot: VmResult['boot'] | null }> {
  const t0 = Date.now();
  const r = await vmUnpickle(Uint8Array.of(0x80, 2, 0x4e, 0x2e), { pool });
  return { ms: Date.now() - t0, boot: r.boot ?? null };
}
