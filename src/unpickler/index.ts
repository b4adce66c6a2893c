/**
 * The restricted unpickler's host API: run CPython's pickle machine (Pyodide, in an isolate, in a
 * worker process) on pickle bytes and get back the compact object graph, every import it asked for
 * and every call it would have made.
 */
import { GuardError } from '../errors.js';
import { BOUND_METHODS, payloadArgument, type Policy } from '../formats/pickle/policy.js';
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

/** An allowlisted call whose arguments would cost the real loader more than the VM's limits allow. */
export interface VmCostRecord {
  /** The call as written (`fractions.Fraction('1e999999999')`). */
  call: string;
  /** What it would cost (`computes 10**999999999: an integer of …`). */
  cost: string;
}

export interface VmResult {
  /** One graph root per pickle loaded (null when graph output was not asked for or hit a limit). */
  objects: VmNode[] | null;
  calls: VmCallRecord[];
  /** Allowlisted calls the VM did not run because of their cost (older workers send none). */
  costs?: VmCostRecord[];
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
  /** CPU time the VM's worker used for the call (ms): what `timeoutMs` counts. */
  cpuMs: number;
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
  /** CPU-time budget of the call (ms; default DEFAULT_VM_TIMEOUT_MS), whatever the machine's load. */
  timeoutMs?: number;
  pool?: UnpicklerPool;
}

export async function vmUnpickle(pickle: Uint8Array, options: VmUnpickleOptions = {}): Promise<VmResult> {
  const pool = options.pool ?? defaultPool();
  const reply = await pool.run({
    pickle,
    config: { pickles: options.pickles ?? 1, all: options.all === true, allow: [...(options.allow ?? [])], graph: options.graph !== false, joblib: options.joblib === true, bound: BOUND_METHODS },
    timeoutMs: options.timeoutMs ?? DEFAULT_VM_TIMEOUT_MS,
  });
  let parsed: Omit<VmResult, 'blob' | 'runMs' | 'cpuMs' | 'boot'>;
  try {
    parsed = JSON.parse(reply.json) as Omit<VmResult, 'blob' | 'runMs' | 'cpuMs' | 'boot'>;
  } catch (e) {
    throw new GuardError('INTERNAL', 'the unpickler VM returned malformed output', { cause: e, context: { step: 'vm' } });
  }
  const out: VmResult = { ...parsed, blob: reply.blob, runMs: reply.runMs, cpuMs: reply.cpuMs };
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
  /** Findings ready for a FindingSink: one per intercepted class (its calls grouped), one per costly call, one for an early stop. */
  findings: NewFinding[];
  /** For each finding, the qualified name it is about (empty when none), so callers can merge with their own. */
  targets: string[];
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
      return { calls: [], imports: [], error: err.message, findings: [f], targets: [''], pickles: 0 };
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
    return { calls: [], imports: [], error: err.message, findings: [f], targets: [''], pickles: 0 };
  }
  const { findings, targets } = vmFindingsWithTargets(r, opts.policy, location);
  return { calls: r.calls, imports: r.imports, ...(r.error ? { error: r.error } : {}), findings, targets, pickles: r.count };
}

/** Findings for a VM result: intercepted calls by policy class, runtime-module reaches, costly calls, early stops. */
export function vmFindings(r: Pick<VmResult, 'calls' | 'imports' | 'error' | 'notes' | 'count' | 'costs'>, policy: Policy, location?: { member: string }): NewFinding[] {
  return vmFindingsWithTargets(r, policy, location).findings;
}

/** Calls of one intercepted name with one judgement: reported once, with the first call as evidence. */
interface CallGroup {
  rule: string;
  verdict: 'malicious' | 'suspicious';
  severity: 'critical' | 'high' | 'low';
  qualified: string;
  reason: string;
  first: string;
  count: number;
  kinds: Map<string, number>;
}

const KIND_LABEL: Record<string, string> = { call: 'call', new: '__new__', setstate: '__setstate__', setitem: '__setitem__', append: 'append', extend: 'extend', add: 'add', iter: '__iter__', persistent_id: 'persistent_load' };

function judgeCall(c: VmCallRecord, policy: Policy): Omit<CallGroup, 'first' | 'count' | 'kinds'> | undefined {
  if (c.kind === 'persistent_id') return { rule: 'vm/intercepted-call', verdict: 'suspicious', severity: 'high', qualified: 'persistent_load', reason: 'a persistent id that is not a PyTorch storage' };
  // Records name the object a call acts on (`Linear.__new__` for the state of a NEWOBJ result,
  // `f()` for a call result): the policy judges the imported class, not that synthetic suffix.
  const baseName = c.name.replace(/(\(\)|\.__new__)+$/, '');
  const v = policy.classify(c.module, baseName);
  if (VM_RUNTIME_MODULES.test(c.module)) return { rule: 'vm/intercepted-call', verdict: 'malicious', severity: 'critical', qualified: v.qualified, reason: 'sandbox runtime escape' };
  let cls = v.cls;
  let reason = v.reason;
  if (c.kind === 'call' && c.name.endsWith('()') && cls === 'allowed') {
    // Calling what an allowlisted constructor returned runs that object's __call__ (or fails): not
    // what the allowlist vouches for.
    cls = 'unknown';
    reason = `calls the object that \`${v.qualified}(…)\` returned; the allowlist covers building it, not calling it`;
  }
  if (cls === 'allowed') return undefined;
  if (cls === 'dangerous') return { rule: 'vm/intercepted-call', verdict: 'malicious', severity: 'critical', qualified: v.qualified, reason };
  const p = payloadArgument(`${v.qualified}(${c.args})`);
  if (p) return { rule: 'vm/payload-argument', verdict: 'malicious', severity: 'critical', qualified: v.qualified, reason: `${reason}, given ${p.kind} (${p.match}): used the way payloads are` };
  return { rule: 'vm/intercepted-call', verdict: 'suspicious', severity: cls === 'library' ? 'low' : 'high', qualified: v.qualified, reason };
}

/** vmFindings, with the qualified name each finding is about. */
export function vmFindingsWithTargets(r: Pick<VmResult, 'calls' | 'imports' | 'error' | 'notes' | 'count' | 'costs'>, policy: Policy, location?: { member: string }): { findings: NewFinding[]; targets: string[] } {
  const out: NewFinding[] = [];
  const targets: string[] = [];
  const add = (f: NewFinding, target = '') => {
    if (location) f.location = location;
    out.push(f);
    targets.push(target);
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
  // One finding per (name, judgement): a model with a thousand layers names each class once.
  const groups = new Map<string, CallGroup>();
  for (const c of r.calls) {
    const j = judgeCall(c, policy);
    if (!j) continue;
    const key = `${j.rule}\0${j.verdict}\0${j.qualified}`;
    let g = groups.get(key);
    if (!g) {
      g = { ...j, first: describeCall(c, j.qualified), count: 0, kinds: new Map() };
      groups.set(key, g);
    }
    g.count++;
    const label = KIND_LABEL[c.kind] ?? c.kind;
    g.kinds.set(label, (g.kinds.get(label) ?? 0) + 1);
  }
  for (const g of groups.values()) {
    const more = g.count > 1 ? ` (${g.count} intercepted calls: ${[...g.kinds].map(([k, n]) => `${k} ×${n}`).join(', ')})` : '';
    add({ rule: g.rule, severity: g.severity, verdict: g.verdict, message: `would call ${g.first}: ${g.reason}; intercepted by the VM, never run${more}`, evidence: g.first }, g.qualified);
  }
  for (const c of r.costs ?? []) {
    add({ rule: 'vm/costly-call', severity: 'high', verdict: 'suspicious', message: `would call \`${c.call}\`, allowlisted but costly here: ${c.cost}; the VM did not run it, loading the file would`, evidence: c.call }, c.call.slice(0, Math.max(0, c.call.indexOf('('))));
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
  return { findings: out, targets };
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
    case 'add':
      return `\`${qualified}.${c.kind}(${c.args})\``;
    case 'iter':
      return `\`iter(${qualified}(…))\``;
    case 'persistent_id':
      return `\`persistent_load(${c.args})\``;
    default:
      return c.name.endsWith('()') ? `\`${qualified}(…)(${c.args})\`` : `\`${qualified}(${c.args})\``;
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
