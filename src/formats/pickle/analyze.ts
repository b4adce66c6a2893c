import type { Policy, GlobalClass } from './policy.js';
import type { Finding } from '../../report/model.js';
import { HIGHEST_PROTOCOL, OPCODES } from './opcodes.js';
import { PickleError, type StreamReader } from './reader.js';
import { KEPT_CHARS, pushItem, render, type Value } from './values.js';
import { boundMethodCall } from './bound.js';
import { decodeEscapedString, decodeRawUnicodeEscapeStrict, decodeUtf8, isUtf8, parseCFloat, parseCIndex, parseCInt, parseCLong } from './strings.js';
import { threadCpuMs } from '../../cpu-time.js';

/** One imported global with every place it was imported and how it was used. */
export interface ImportSite {
  module: string;
  name: string;
  qualified: string;
  cls: GlobalClass;
  reason: string;
  op: string;
  offset: number;
  count: number;
  /** Rendered calls made with it ("os.system('id')"), at most MAX_CALLS_KEPT. */
  calls: string[];
  /** Calls recognised as bound methods of allowlisted torch objects (getattr only; see bound.ts), the first few. */
  boundMethods?: string[];
  /** How many calls were recognised bound methods. */
  boundMethodCalls?: number;
  /** Times the imported value was pushed again (memo GET, DUP): with `count`, every copy of it. */
  reuses?: number;
}

/** A finding about the stream's structure, located by its byte offset in the stream. */
export type StructuralIssue = Omit<Finding, 'location'> & { offset: number };

export interface PickleAnalysis {
  start: number;
  /** Offset just past STOP (or where analysis stopped). */
  end: number;
  protocol: number;
  opcodes: number;
  imports: Map<string, ImportSite>;
  issues: StructuralIssue[];
  error?: PickleError;
  stopped: boolean;
  tensors: number;
  storages: number;
  persistentIds: number;
  /** Raw array bytes skipped (joblib inline arrays). */
  inlineArrays: number;
  result?: Value;
}

export interface AnalyzeOptions {
  policy: Policy;
  maxOpcodes: number;
  maxArgBytes: number;
  /**
   * Thread CPU time (ms, `threadCpuMs()` clock) past which analysis stops with a limit error: CPU
   * time, so that a busy machine cannot turn a large benign pickle into a finding.
   */
  deadline: number;
  /** Treat joblib NumpyArrayWrapper BUILDs as followed by inline array data (joblib.load semantics). */
  joblib?: boolean;
  /** Nested pickle depth (joblib object arrays); internal. */
  nesting?: number;
  /**
   * Width of the loader's C `long` and `Py_ssize_t` (64 on the Linux machines torch.load runs on,
   * 32 in the wasm32 VM): INT falls back to PyLong_FromString past it, and memo indices overflow.
   */
  cLongBits?: number;
  /** Filled in as the pass runs, for comparing it with CPython (test/formats/differential.test.ts). */
  trace?: PickleTrace;
}

/**
 * What the static pass did, in CPython's terms: every find_class call in order, the opcodes it
 * dispatched, the opcode it failed at, and the opcodes where it had to assume a runtime value it
 * cannot know (a call result, a persistent object) behaves permissively.
 */
export interface PickleTrace {
  imports: Array<[string, string]>;
  dispatched: number;
  /** Offset of the opcode the pass failed at (-1 when it stopped cleanly). */
  failOp: number;
  /** Offsets of opcodes whose outcome depended on an opaque value. */
  opaque: number[];
  /** Where the reads of each of those opcodes ended. */
  opaqueEnds: number[];
  /** Offsets and read ends of opcodes only some CPython versions accept (INT `0x10` before 3.14). */
  versioned: number[];
  /** A FRAME was dispatched (the C unpickler then reads whole frames ahead). */
  framed?: boolean;
}

/** Imports and opaque offsets kept in a trace. */
const TRACE_KEPT = 1000;

/** Value kinds whose runtime type the static pass cannot know: a loader may find them permissive. */
const OPAQUE_KINDS = new Set<Value['k']>(['call', 'pers', 'unknown', 'ext', 'global', 'buffer']);

export const MAX_CALLS_KEPT = 3;
/** Nested pickles (joblib object arrays inside object arrays) analysed before giving up. */
export const MAX_PICKLE_NESTING = 16;

const TORCH_TENSOR_REBUILDERS = new Set([
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_qtensor',
  'torch._utils._rebuild_sparse_tensor',
  'torch._utils._rebuild_device_tensor_from_numpy',
  'torch._utils._rebuild_meta_tensor_no_storage',
]);


function str(v: string): Value {
  return v.length > KEPT_CHARS ? { k: 'str', v: v.slice(0, KEPT_CHARS), truncated: true } : { k: 'str', v };
}

function badText(what: string, line: Buffer, offset: number): never {
  // An empty line is what CPython's bad_readline reports.
  if (line.length === 0) throw new PickleError('pickle data was truncated', offset, 'truncated');
  throw new PickleError(`could not convert the ${what} argument ${JSON.stringify(line.subarray(0, 40).toString('latin1'))}`, offset);
}

/**
 * Whether CPython could hash the value (dict keys, set items): true, false (TypeError), or
 * undefined when the value is opaque to the static pass.
 */
function hashable(v: Value): boolean | undefined {
  switch (v.k) {
    case 'str':
    case 'int':
    case 'float':
    case 'bool':
    case 'none':
    case 'frozenset':
      return true;
    case 'bytes':
      return v.mutable !== true;
    case 'list':
    case 'dict':
    case 'set':
      return false;
    case 'tuple': {
      let unsure = v.count > v.items.length;
      for (const it of v.items) {
        const h = hashable(it);
        if (h === false) return false;
        if (h === undefined) unsure = true;
      }
      return unsure ? undefined : true;
    }
    default:
      return undefined;
  }
}

function smallInt(v: Value): bigint | undefined {
  if (v.k === 'int') return v.v;
  if (v.k === 'bool') return v.v ? 1n : 0n;
  return undefined;
}

function leBigInt(b: Buffer): bigint {
  if (b.length === 0) return 0n;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i] as number);
  if ((b[b.length - 1] as number) & 0x80) v -= 1n << BigInt(b.length * 8);
  return v;
}

/**
 * Runs one pickle (up to and including STOP) through a symbolic copy of CPython's Unpickler:
 * same opcode semantics, same memo rules, same mark handling, nothing executed.
 */
export function analyzePickle(r: StreamReader, opts: AnalyzeOptions, imports: Map<string, ImportSite> = new Map()): PickleAnalysis {
  const a: PickleAnalysis = {
    start: r.pos,
    end: r.pos,
    protocol: 0,
    opcodes: 0,
    imports,
    issues: [],
    stopped: false,
    tensors: 0,
    storages: 0,
    persistentIds: 0,
    inlineArrays: 0,
  };
  const stack: Value[] = [];
  const marks: number[] = [];
  const memo = new Map<number, Value>();
  const trace = opts.trace;
  const longBits = opts.cLongBits ?? 64;
  const ssizeMax = (1n << BigInt(longBits - 1)) - 1n;
  let frameEnd = -1;
  let frameStart = -1;
  let frameIssues = 0;

  const issue = (i: StructuralIssue) => {
    if (a.issues.length < 200) a.issues.push(i);
  };

  const underflow = (off: number): never => {
    throw new PickleError('unpickling stack underflow', off);
  };
  const fence = () => (marks.length ? (marks[marks.length - 1] as number) : 0);
  const pop = (off: number): Value => {
    if (stack.length <= fence()) underflow(off);
    return stack.pop() as Value;
  };
  const top = (off: number): Value => {
    if (stack.length <= fence()) underflow(off);
    return stack[stack.length - 1] as Value;
  };
  const popMark = (off: number): Value[] => {
    if (marks.length === 0) throw new PickleError('could not find MARK', off);
    const m = marks.pop() as number;
    return stack.splice(m);
  };
  const asTuple = (items: Value[]): Value => {
    const t: Value = { k: 'tuple', items: [], count: 0 };
    for (const it of items) pushItem(t, it);
    return t;
  };

  let opaqueNow = false;
  const opaque = (off: number) => {
    opaqueNow = true;
    if (trace && trace.opaque.length < TRACE_KEPT) trace.opaque.push(off);
  };
  const versioned = (off: number, end: number) => {
    if (trace && trace.versioned.length < TRACE_KEPT) trace.versioned.push(off, end);
  };
  const isOpaque = (v: Value) => OPAQUE_KINDS.has(v.k);
  /** A value CPython requires to be hashable here (dict key, set item). */
  const needHashable = (v: Value, off: number, what: string) => {
    const h = hashable(v);
    if (h === false) throw new PickleError(`unhashable type: '${v.k}' as ${what}`, off);
    if (h === undefined) opaque(off);
  };
  /** A line naming a module or a class: non-empty, and valid in the codec CPython decodes it with. */
  const nameLine = (ascii: boolean, off: number, op: string): string => {
    const b = r.line();
    if (b.length === 0) throw new PickleError('pickle data was truncated', off, 'truncated');
    if (ascii ? b.some((c) => c >= 0x80) : !isUtf8(b, false)) throw new PickleError(`${op} name is not ${ascii ? 'ASCII' : 'UTF-8'}`, off);
    return decodeUtf8(b);
  };

  const importGlobal = (moduleRaw: string, name: string, op: string, off: number): Value => {
    if (trace && trace.imports.length < TRACE_KEPT) trace.imports.push([moduleRaw, name]);
    const v = opts.policy.classify(moduleRaw, name);
    const key = v.qualified;
    const site = imports.get(key);
    if (site) site.count++;
    else imports.set(key, { module: moduleRaw, name, qualified: key, cls: v.cls, reason: v.reason, op, offset: off, count: 1, calls: [] });
    return { k: 'global', module: moduleRaw, name, qualified: key, offset: off };
  };

  /** Counts another copy of an imported value on the stack (see ImportSite.reuses). */
  const reused = (v: Value): Value => {
    if (v.k === 'global') {
      const site = imports.get(v.qualified);
      if (site) site.reuses = (site.reuses ?? 0) + 1;
    }
    return v;
  };

  const recordCall = (fn: Value, call: Value & { k: 'call' }, off: number) => {
    if (fn.k === 'global') {
      const site = imports.get(fn.qualified);
      const bound = site ? boundMethodCall(fn.qualified, call.args) : undefined;
      if (site && bound !== undefined) {
        if ((site.boundMethods ??= []).length < MAX_CALLS_KEPT) site.boundMethods.push(bound);
        site.boundMethodCalls = (site.boundMethodCalls ?? 0) + 1;
        return;
      }
      if (site && site.cls !== 'allowed' && site.calls.length < MAX_CALLS_KEPT) site.calls.push(render(call));
      if (TORCH_TENSOR_REBUILDERS.has(fn.qualified)) a.tensors++;
      return;
    }
    if (fn.k === 'str' || fn.k === 'bytes' || fn.k === 'int' || fn.k === 'float' || fn.k === 'bool' || fn.k === 'none' || fn.k === 'list' || fn.k === 'tuple' || fn.k === 'dict' || fn.k === 'set' || fn.k === 'frozenset') {
      throw new PickleError(`'${fn.k}' object is not callable`, off);
    }
    issue({
      rule: 'pickle/dynamic-call',
      severity: 'high',
      verdict: 'suspicious',
      message: 'calls a value computed inside the pickle (not a named import); the callable cannot be checked against the allowlist',
      offset: off,
      evidence: render(call),
    });
  };

  const mutateImported = (target: Value, op: string, off: number, what: string) => {
    if (target.k !== 'global') return;
    issue({
      rule: 'pickle/mutates-import',
      severity: 'critical',
      verdict: 'malicious',
      message: `${op} ${what} an imported object (${target.qualified}): monkey-patching library code or interpreter state`,
      offset: off,
      evidence: `${op} on ${target.qualified}`,
    });
  };

  const argBytes = (n: number, off: number, op: string): Buffer | null => {
    if (n < 0) throw new PickleError(`${op} pickle has negative byte count`, off);
    if (n > r.remaining()) throw new PickleError('pickle data was truncated', off, 'truncated');
    if (n > opts.maxArgBytes) {
      r.skip(n);
      return null;
    }
    return r.bytes(n);
  };

  const stringValue = (b: Buffer | null, unicode: boolean, off: number): Value => {
    if (b === null) return { k: 'str', v: '', truncated: true };
    // BINUNICODE decodes with "surrogatepass": anything else that is not UTF-8 is an error.
    if (unicode && !isUtf8(b, true)) throw new PickleError("'utf-8' codec can't decode the string argument", off);
    return str(unicode ? decodeUtf8(b) : b.toString('latin1'));
  };

  const bytesValue = (b: Buffer | null, n: number): Value => {
    return { k: 'bytes', len: n, preview: b ? b.subarray(0, 64) : Buffer.alloc(0) };
  };

  const nesting = opts.nesting ?? 0;

  let off = r.pos;
  try {
    for (;;) {
      off = r.pos;
      if (++a.opcodes > opts.maxOpcodes) throw new PickleError(`more than ${opts.maxOpcodes} opcodes`, off, 'limit');
      if ((a.opcodes & 0xfff) === 0 && threadCpuMs() > opts.deadline) throw new PickleError('analysis time budget exhausted', off, 'limit');
      const code = r.byte();
      const info = OPCODES[code];
      if (!info) throw new PickleError(`invalid load key, '\\x${code.toString(16).padStart(2, '0')}'`, off);
      if (trace) trace.dispatched++;
      const op = info.name;
      switch (op) {
        case 'PROTO': {
          const p = r.byte();
          if (p > HIGHEST_PROTOCOL) throw new PickleError(`unsupported pickle protocol: ${p}`, off);
          a.protocol = p;
          break;
        }
        case 'FRAME': {
          if (trace) trace.framed = true;
          const lenBuf = r.bytes(8);
          const len = lenBuf.readBigUInt64LE(0);
          if (frameEnd > off && frameIssues++ < 5) {
            issue({ rule: 'pickle/frame-divergence', severity: 'medium', verdict: 'suspicious', message: 'a new FRAME begins before the current frame ends: pure-Python and C unpicklers read this stream differently', offset: off });
          }
          if (len > BigInt(r.remaining())) throw new PickleError('pickle data was truncated (FRAME longer than the stream)', off, 'truncated');
          frameStart = r.pos;
          frameEnd = r.pos + Number(len);
          break;
        }
        case 'STOP': {
          const v = pop(off);
          if (frameEnd > r.pos && frameIssues++ < 5) {
            issue({
              rule: 'pickle/frame-divergence',
              severity: 'medium',
              verdict: 'suspicious',
              message: 'STOP inside a FRAME that runs on: a loader reading a file without peek (BytesIO) resumes after the frame, pickle.loads and buffered files right after STOP',
              offset: off,
              evidence: `frame [${frameStart}, ${frameEnd}) holds STOP at ${off}`,
            });
          }
          a.result = v;
          a.stopped = true;
          a.end = r.pos;
          if (trace) trace.failOp = -1;
          return a;
        }
        case 'MARK':
          marks.push(stack.length);
          break;
        case 'POP':
          if (marks.length && marks[marks.length - 1] === stack.length) marks.pop();
          else pop(off);
          break;
        case 'POP_MARK':
          popMark(off);
          break;
        case 'DUP':
          stack.push(reused(top(off)));
          break;
        case 'NONE':
          stack.push({ k: 'none' });
          break;
        case 'NEWTRUE':
          stack.push({ k: 'bool', v: true });
          break;
        case 'NEWFALSE':
          stack.push({ k: 'bool', v: false });
          break;
        case 'INT': {
          const line = r.line();
          const v = parseCInt(line, longBits);
          if (!v) badText('INT', line, off);
          if (v.onlyOld) versioned(off, r.pos);
          stack.push(v.bool ? { k: 'bool', v: v.value === 1n } : { k: 'int', v: v.value });
          break;
        }
        case 'LONG': {
          const line = r.line();
          const v = parseCLong(line);
          if (v === null) badText('LONG', line, off);
          if (v.onlyOld) versioned(off, r.pos);
          stack.push({ k: 'int', v: v.value });
          break;
        }
        case 'BININT':
          stack.push({ k: 'int', v: BigInt(r.bytes(4).readInt32LE(0)) });
          break;
        case 'BININT1':
          stack.push({ k: 'int', v: BigInt(r.byte()) });
          break;
        case 'BININT2':
          stack.push({ k: 'int', v: BigInt(r.bytes(2).readUInt16LE(0)) });
          break;
        case 'LONG1': {
          const n = r.byte();
          stack.push({ k: 'int', v: leBigInt(r.bytes(n)) });
          break;
        }
        case 'LONG4': {
          const n = r.bytes(4).readInt32LE(0);
          if (n < 0) throw new PickleError('LONG pickle has negative byte count', off);
          const b = argBytes(n, off, 'LONG');
          stack.push(b && n <= 4096 ? { k: 'int', v: leBigInt(b) } : { k: 'unknown', why: `${n}-byte integer` });
          break;
        }
        case 'FLOAT': {
          const line = r.line();
          const f = parseCFloat(line);
          if (f === null) badText('FLOAT', line, off);
          stack.push({ k: 'float', v: f });
          break;
        }
        case 'BINFLOAT':
          stack.push({ k: 'float', v: r.bytes(8).readDoubleBE(0) });
          break;
        case 'STRING': {
          const raw = r.line();
          stack.push(str(decodeEscapedString(raw, off)));
          break;
        }
        case 'BINSTRING': {
          const n = r.bytes(4).readInt32LE(0);
          if (n < 0) throw new PickleError('BINSTRING pickle has negative byte count', off);
          stack.push(stringValue(argBytes(n, off, op), false, off));
          break;
        }
        case 'SHORT_BINSTRING': {
          const n = r.byte();
          stack.push(stringValue(argBytes(n, off, op), false, off));
          break;
        }
        case 'UNICODE':
          stack.push(str(decodeRawUnicodeEscapeStrict(r.line(), off)));
          break;
        case 'BINUNICODE': {
          const n = r.bytes(4).readUInt32LE(0);
          stack.push(stringValue(argBytes(n, off, op), true, off));
          break;
        }
        case 'SHORT_BINUNICODE': {
          const n = r.byte();
          stack.push(stringValue(argBytes(n, off, op), true, off));
          break;
        }
        case 'BINUNICODE8': {
          const n = r.bytes(8).readBigUInt64LE(0);
          if (n > BigInt(r.remaining())) throw new PickleError('pickle data was truncated', off, 'truncated');
          stack.push(stringValue(argBytes(Number(n), off, op), true, off));
          break;
        }
        case 'BINBYTES': {
          const n = r.bytes(4).readUInt32LE(0);
          stack.push(bytesValue(argBytes(n, off, op), n));
          break;
        }
        case 'SHORT_BINBYTES': {
          const n = r.byte();
          stack.push(bytesValue(argBytes(n, off, op), n));
          break;
        }
        case 'BINBYTES8':
        case 'BYTEARRAY8': {
          const n = r.bytes(8).readBigUInt64LE(0);
          if (n > BigInt(r.remaining())) throw new PickleError('pickle data was truncated', off, 'truncated');
          const len = Number(n);
          // Large payloads are skipped, not held: only their length and first bytes matter here.
          const keep = Math.min(len, 64);
          const preview = r.bytes(keep);
          r.skip(len - keep);
          stack.push(op === 'BYTEARRAY8' ? { k: 'bytes', len, preview, mutable: true } : { k: 'bytes', len, preview });
          break;
        }
        case 'NEXT_BUFFER':
          throw new PickleError('pickle stream refers to out-of-band data but no *buffers* argument was given', off);
        case 'READONLY_BUFFER': {
          // memoryview(top): only objects with the buffer protocol.
          const v = top(off);
          if (isOpaque(v)) opaque(off);
          else if (v.k !== 'bytes') throw new PickleError(`memoryview: a bytes-like object is required, not '${v.k}'`, off);
          break;
        }
        case 'EMPTY_TUPLE':
          stack.push({ k: 'tuple', items: [], count: 0 });
          break;
        case 'TUPLE':
          stack.push(asTuple(popMark(off)));
          break;
        case 'TUPLE1': {
          const x = pop(off);
          stack.push(asTuple([x]));
          break;
        }
        case 'TUPLE2': {
          const y = pop(off);
          const x = pop(off);
          stack.push(asTuple([x, y]));
          break;
        }
        case 'TUPLE3': {
          const z = pop(off);
          const y = pop(off);
          const x = pop(off);
          stack.push(asTuple([x, y, z]));
          break;
        }
        case 'EMPTY_LIST':
          stack.push({ k: 'list', items: [], count: 0 });
          break;
        case 'LIST': {
          const l: Value = { k: 'list', items: [], count: 0 };
          for (const it of popMark(off)) pushItem(l, it);
          stack.push(l);
          break;
        }
        case 'EMPTY_DICT':
          stack.push({ k: 'dict', items: [], count: 0 });
          break;
        case 'DICT': {
          const items = popMark(off);
          if (items.length % 2) throw new PickleError('odd number of items for DICT', off);
          const d: Value & { k: 'dict' } = { k: 'dict', items: [], count: 0 };
          for (let i = 0; i < items.length; i += 2) {
            needHashable(items[i] as Value, off, 'a DICT key');
            dictSet(d, items[i] as Value, items[i + 1] as Value);
          }
          stack.push(d);
          break;
        }
        case 'EMPTY_SET':
          stack.push({ k: 'set', items: [], count: 0 });
          break;
        case 'FROZENSET': {
          const s: Value = { k: 'frozenset', items: [], count: 0 };
          for (const it of popMark(off)) {
            needHashable(it, off, 'a FROZENSET item');
            pushItem(s, it);
          }
          stack.push(s);
          break;
        }
        case 'APPEND': {
          const v = pop(off);
          const l = top(off);
          appendTo(l, [v], off, op);
          break;
        }
        case 'APPENDS': {
          // CPython checks the target only when there is something to append.
          const items = popMark(off);
          const l = top(off);
          if (items.length > 0) appendTo(l, items, off, op);
          break;
        }
        case 'ADDITEMS': {
          const items = popMark(off);
          const s = top(off);
          if (items.length === 0) break;
          if (s.k === 'set') {
            for (const it of items) {
              needHashable(it, off, 'a set item');
              pushItem(s, it);
            }
          } else if (s.k === 'global') {
            mutateImported(s, op, off, 'adds items to');
            opaque(off);
          } else if (isOpaque(s)) opaque(off);
          else throw new PickleError(`'${s.k}' object has no attribute 'add'`, off);
          break;
        }
        case 'SETITEM': {
          const v = pop(off);
          const k = pop(off);
          setItems(top(off), [k, v], off, op);
          break;
        }
        case 'SETITEMS': {
          const items = popMark(off);
          const d = top(off);
          if (items.length === 0) break;
          if (items.length % 2) throw new PickleError('odd number of items for SETITEMS', off);
          setItems(d, items, off, op);
          break;
        }
        case 'PUT': {
          const line = r.line();
          if (line.length === 0) throw new PickleError('pickle data was truncated', off, 'truncated');
          const v = top(off);
          const idx = parseCIndex(line);
          if (idx === null) badText('PUT', line, off);
          if (idx < 0n) throw new PickleError('negative PUT argument', off);
          if (idx > ssizeMax) throw new PickleError('PUT index does not fit in a C ssize_t', off);
          memo.set(Number(idx), v);
          break;
        }
        case 'BINPUT':
          memo.set(r.byte(), top(off));
          break;
        case 'LONG_BINPUT': {
          const idx = r.bytes(4).readUInt32LE(0);
          const v = top(off);
          if (BigInt(idx) > ssizeMax) throw new PickleError('negative LONG_BINPUT argument', off);
          memo.set(idx, v);
          break;
        }
        case 'MEMOIZE':
          // CPython stores at len(memo): the number of distinct indices set so far, not a counter.
          memo.set(memo.size, top(off));
          break;
        case 'GET':
        case 'BINGET':
        case 'LONG_BINGET': {
          let idx: number;
          if (op === 'GET') {
            const line = r.line();
            if (line.length === 0) throw new PickleError('pickle data was truncated', off, 'truncated');
            const big = parseCIndex(line);
            if (big === null) badText('GET', line, off);
            if (big > ssizeMax || big < -ssizeMax - 1n) throw new PickleError('GET index does not fit in a C ssize_t', off);
            idx = Number(big);
          } else idx = op === 'BINGET' ? r.byte() : r.bytes(4).readUInt32LE(0);
          const v = memo.get(idx);
          if (v === undefined) throw new PickleError(`Memo value not found at index ${idx}`, off);
          stack.push(reused(v));
          break;
        }
        case 'GLOBAL': {
          const module = nameLine(false, off, op);
          const name = nameLine(false, off, op);
          stack.push(importGlobal(module, name, op, off));
          break;
        }
        case 'STACK_GLOBAL': {
          const name = pop(off);
          const module = pop(off);
          if (module.k !== 'str' || name.k !== 'str') {
            // A global, call result or persistent object can hold any runtime value (even a str planted by an
            // earlier BUILD on a module): the import target is computed at load time.
            const computed = [module.k, name.k].some((k) => k === 'call' || k === 'unknown' || k === 'global' || k === 'pers' || k === 'ext');
            if (!computed) throw new PickleError('STACK_GLOBAL requires str', off);
            opaque(off);
            issue({
              rule: 'pickle/computed-global',
              severity: 'critical',
              verdict: 'malicious',
              message: 'STACK_GLOBAL imports a name computed at load time, hiding what is imported from static review',
              offset: off,
              evidence: `${render(module)} . ${render(name)}`,
            });
            stack.push({ k: 'unknown', why: 'computed global' });
            break;
          }
          stack.push(importGlobal(module.v, name.v, op, off));
          break;
        }
        case 'INST': {
          // CPython takes the mark before it reads the names: no mark, no import.
          const argItems = popMark(off);
          const module = nameLine(true, off, op);
          const name = nameLine(true, off, op);
          const cls = importGlobal(module, name, op, off);
          const args = asTuple(argItems);
          const call: Value & { k: 'call' } = { k: 'call', fn: cls, args, op, offset: off };
          recordCall(cls, call, off);
          stack.push(call);
          break;
        }
        case 'OBJ': {
          const items = popMark(off);
          if (items.length === 0) throw new PickleError('unpickling stack underflow', off);
          const cls = items[0] as Value;
          const call: Value & { k: 'call' } = { k: 'call', fn: cls, args: asTuple(items.slice(1)), op, offset: off };
          recordCall(cls, call, off);
          stack.push(call);
          break;
        }
        case 'NEWOBJ': {
          const args = pop(off);
          const cls = pop(off);
          if (isOpaque(args)) opaque(off);
          else if (args.k !== 'tuple') throw new PickleError('NEWOBJ args argument must be a tuple', off);
          const call: Value & { k: 'call' } = { k: 'call', fn: cls, args, op, offset: off };
          recordCall(cls, call, off);
          stack.push(call);
          break;
        }
        case 'NEWOBJ_EX': {
          const kwargs = pop(off);
          const args = pop(off);
          const cls = pop(off);
          if (isOpaque(args) || isOpaque(kwargs)) opaque(off);
          if (!isOpaque(args) && args.k !== 'tuple') throw new PickleError('NEWOBJ_EX args argument must be a tuple', off);
          if (!isOpaque(kwargs) && kwargs.k !== 'dict') throw new PickleError('NEWOBJ_EX kwargs argument must be a dict', off);
          const call: Value & { k: 'call' } = { k: 'call', fn: cls, args, kwargs, op, offset: off };
          recordCall(cls, call, off);
          stack.push(call);
          break;
        }
        case 'REDUCE': {
          const args = pop(off);
          const fn = pop(off);
          if (isOpaque(args)) opaque(off);
          else if (args.k !== 'tuple') throw new PickleError('REDUCE expected an argument tuple', off);
          const call: Value & { k: 'call' } = { k: 'call', fn, args, op, offset: off };
          recordCall(fn, call, off);
          stack.push(call);
          break;
        }
        case 'BUILD': {
          const state = pop(off);
          const inst = top(off);
          if (inst.k === 'global') {
            mutateImported(inst, op, off, 'sets the state of');
            opaque(off);
          } else if (!isOpaque(inst)) buildBuiltin(state, off);
          else if (inst.k !== 'call') opaque(off);
          else {
            opaque(off);
            inst.state = state;
            if (opts.joblib && inst.fn.k === 'global' && inst.fn.qualified === 'joblib.numpy_pickle.NumpyArrayWrapper') {
              readJoblibArray(inst, off);
            }
          }
          break;
        }
        case 'PERSID': {
          const line = r.line();
          if (line.some((c) => c >= 0x80)) throw new PickleError('persistent IDs in protocol 0 must be ASCII strings', off);
          const pid = line.toString('latin1');
          opaque(off);
          a.persistentIds++;
          stack.push({ k: 'pers', pid: str(pid) });
          break;
        }
        case 'BINPERSID': {
          const pid = pop(off);
          opaque(off);
          a.persistentIds++;
          if (pid.k === 'tuple' && pid.items[0]?.k === 'str' && pid.items[0].v === 'storage') a.storages++;
          stack.push({ k: 'pers', pid });
          break;
        }
        case 'EXT1':
        case 'EXT2':
        case 'EXT4': {
          const codeVal = op === 'EXT1' ? r.byte() : op === 'EXT2' ? r.bytes(2).readUInt16LE(0) : r.bytes(4).readInt32LE(0);
          if (codeVal <= 0) throw new PickleError('EXT specifies code <= 0', off);
          // What the code resolves to lives in the loading process's copyreg registry.
          opaque(off);
          issue({
            rule: 'pickle/extension-code',
            severity: 'high',
            verdict: 'suspicious',
            message: `imports a global through the copyreg extension registry (code ${codeVal}); what it resolves to depends on the loading process, so it cannot be checked`,
            offset: off,
            evidence: `${op} ${codeVal}`,
          });
          stack.push({ k: 'ext', code: codeVal });
          break;
        }
        default:
          throw new PickleError(`opcode ${op} not handled`, off);
      }
      if (opaqueNow) {
        opaqueNow = false;
        if (trace && trace.opaqueEnds.length < TRACE_KEPT) trace.opaqueEnds.push(r.pos);
      }
      if (frameEnd >= 0 && r.pos > frameEnd && off < frameEnd && frameIssues++ < 5) {
        issue({
          rule: 'pickle/frame-divergence',
          severity: 'medium',
          verdict: 'suspicious',
          message: `opcode ${op} straddles the end of a FRAME: Python's pure unpickler rejects this stream while the C unpickler (used by torch.load) reads on`,
          offset: off,
          evidence: `frame [${frameStart}, ${frameEnd}) ends inside ${op} at ${off}..${r.pos}`,
        });
      }
    }
  } catch (e) {
    if (!(e instanceof PickleError)) throw e;
    if (frameEnd >= 0 && off < frameEnd && r.pos > frameEnd && frameIssues++ < 5) {
      // The failing read ran past the frame: the C unpickler reads that argument from after the
      // frame instead, so CPython may well read on where this reading broke.
      issue({
        rule: 'pickle/frame-divergence',
        severity: 'medium',
        verdict: 'suspicious',
        message: `the argument of the opcode at ${off} runs past the end of its FRAME, where the C unpickler reads it from after the frame instead: the stream breaks in one reading and may load in the other`,
        offset: off,
        evidence: `frame [${frameStart}, ${frameEnd}) ends inside the opcode at ${off}`,
      });
    }
    a.error = e;
    a.end = r.pos;
    if (trace) trace.failOp = off;
    return a;
  }

  /**
   * BUILD on a builtin value (str, int, list, …): none has __setstate__ or a __dict__, so only a
   * None state (and an empty slot-state dict) passes CPython's default __setstate__.
   */
  function buildBuiltin(state: Value, off: number): void {
    let st = state;
    let slot: Value | undefined;
    if (st.k === 'tuple' && st.count === 2) {
      slot = st.items[1] as Value;
      st = st.items[0] as Value;
    }
    if (st.k !== 'none') {
      if (isOpaque(st)) opaque(off);
      else throw new PickleError(st.k === 'dict' ? 'the BUILD target has no __dict__' : 'state is not a dictionary', off);
    }
    if (slot) {
      if (isOpaque(slot)) opaque(off);
      else if (slot.k !== 'dict') throw new PickleError('slot state is not a dictionary', off);
      else if (slot.count > 0) throw new PickleError('the BUILD target takes no attributes', off);
    }
  }

  function dictSet(d: Value & { k: 'dict' }, k: Value, v: Value): void {
    if (d.items.length < 2 * 16 || (k.k === 'str' && ['shape', 'dtype', 'order', 'numpy_array_alignment_bytes'].includes(k.v))) {
      d.items.push(k, v);
    }
    d.count++;
  }

  function appendTo(l: Value, items: Value[], off: number, op: string): void {
    if (l.k === 'list') for (const it of items) pushItem(l, it);
    else if (l.k === 'bytes' && l.mutable) {
      // bytearray.extend: every item an int in 0..255.
      for (const it of items) {
        const n = smallInt(it);
        if (n === undefined) {
          if (isOpaque(it)) opaque(off);
          else throw new PickleError(`'${it.k}' object cannot be interpreted as an integer`, off);
        } else if (n < 0n || n > 255n) throw new PickleError('byte must be in range(0, 256)', off);
      }
    } else if (l.k === 'global') {
      mutateImported(l, op, off, 'appends to');
      opaque(off);
    } else if (isOpaque(l)) {
      opaque(off);
      // CPython calls .extend/.append on arbitrary objects: a call result's own methods run.
      if (l.k === 'call' && l.fn.k === 'global') {
        const site = imports.get(l.fn.qualified);
        if (site && site.cls !== 'allowed' && site.calls.length < MAX_CALLS_KEPT) site.calls.push(`${render(l)}.extend(${items.length} items)`);
      }
    } else throw new PickleError(`${op} on a '${l.k}'`, off);
  }

  function setItems(d: Value, items: Value[], off: number, op: string): void {
    if (d.k === 'dict') {
      for (let i = 0; i + 1 < items.length; i += 2) {
        needHashable(items[i] as Value, off, 'a dict key');
        dictSet(d as Value & { k: 'dict' }, items[i] as Value, items[i + 1] as Value);
      }
    } else if (d.k === 'list' || (d.k === 'bytes' && d.mutable)) {
      // list[i] = v / bytearray[i] = v: an int index inside the sequence.
      const len = BigInt(d.k === 'bytes' ? d.len : (d as { count: number }).count);
      for (let i = 0; i + 1 < items.length; i += 2) {
        const key = items[i] as Value;
        const n = smallInt(key);
        if (n === undefined) {
          if (isOpaque(key)) {
            opaque(off);
            continue;
          }
          throw new PickleError(`indices must be integers, not '${key.k}'`, off);
        }
        if (n < -len || n >= len) throw new PickleError('assignment index out of range', off);
        if (d.k === 'bytes') {
          const v = items[i + 1] as Value;
          const b = smallInt(v);
          if (b === undefined) {
            if (isOpaque(v)) opaque(off);
            else throw new PickleError(`'${v.k}' object cannot be interpreted as an integer`, off);
          } else if (b < 0n || b > 255n) throw new PickleError('byte must be in range(0, 256)', off);
        }
      }
    } else if (d.k === 'global') {
      mutateImported(d, op, off, 'assigns items into');
      opaque(off);
    } else if (isOpaque(d)) opaque(off);
    else throw new PickleError(`'${d.k}' object does not support item assignment`, off);
  }

  /** joblib.load reads an inline array right after the wrapper's BUILD; skip exactly those bytes. */
  function readJoblibArray(wrapper: Value & { k: 'call' }, off: number): void {
    const state = wrapper.state;
    const get = (key: string): Value | undefined => {
      if (!state || state.k !== 'dict') return undefined;
      for (let i = 0; i + 1 < state.items.length; i += 2) {
        const k = state.items[i] as Value;
        if (k.k === 'str' && k.v === key) return state.items[i + 1];
      }
      return undefined;
    };
    const shape = get('shape');
    const dtype = get('dtype');
    const align = get('numpy_array_alignment_bytes');
    const layout = joblibLayout(shape, dtype);
    if (!layout) throw new PickleError('joblib array wrapper with a shape or dtype that cannot be sized statically', off);
    a.inlineArrays++;
    // joblib's own frames restart after the inline data: the old frame no longer applies.
    frameEnd = -1;
    if (layout.object) {
      if (nesting + 1 > MAX_PICKLE_NESTING) throw new PickleError(`joblib object arrays nested deeper than ${MAX_PICKLE_NESTING}`, off, 'limit');
      const inner = analyzePickle(r, { ...opts, nesting: nesting + 1 }, imports);
      a.opcodes += inner.opcodes;
      a.tensors += inner.tensors;
      for (const i of inner.issues) issue(i);
      if (inner.error) throw inner.error;
      return;
    }
    if (align && align.k !== 'none') {
      const pad = r.byte();
      r.skip(pad);
    }
    if (layout.bytes > BigInt(r.remaining())) throw new PickleError('joblib inline array data was truncated', r.pos, 'truncated');
    r.skip(Number(layout.bytes));
  }

  return a;
}

/** Bytes of a joblib inline array from its pickled shape tuple and numpy.dtype call. */
function joblibLayout(shape: Value | undefined, dtype: Value | undefined): { bytes: bigint; object: boolean } | undefined {
  if (!shape || shape.k !== 'tuple' || shape.count !== shape.items.length) return undefined;
  let count = 1n;
  for (const d of shape.items) {
    if (d.k !== 'int' || d.v < 0n) return undefined;
    count *= d.v;
  }
  if (!dtype || dtype.k !== 'call' || dtype.fn.k !== 'global' || !/^numpy(\._core|\.core)?\.(multiarray\.)?dtype$/.test(dtype.fn.qualified)) return undefined;
  if (dtype.args.k !== 'tuple') return undefined;
  const codeV = dtype.args.items[0];
  if (!codeV || codeV.k !== 'str') return undefined;
  const code = codeV.v;
  if (code === 'O' || code === 'O8' || code === 'O4') return { bytes: 0n, object: true };
  // numpy.dtype's BUILD state: (version, byteorder, subarray, names, fields, elsize, alignment, flags).
  let elsize = -1n;
  const st = dtype.state;
  if (st && st.k === 'tuple' && st.items.length >= 8) {
    const es = st.items[5];
    if (es?.k === 'int') elsize = es.v;
    const flags = st.items[7];
    // NPY_ITEM_HASOBJECT (0x01) marks structured dtypes holding objects: pickled, not raw.
    if (flags?.k === 'int' && (flags.v & 1n) === 1n) return { bytes: 0n, object: true };
  }
  if (elsize <= 0n) {
    const m = /^[<>|=]?([biufcmMSUV])(\d+)/.exec(code);
    if (!m) return undefined;
    const n = BigInt(m[2] as string);
    elsize = m[1] === 'U' ? n * 4n : n;
  }
  return { bytes: count * elsize, object: false };
}
