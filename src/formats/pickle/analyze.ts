import type { Policy, GlobalClass } from './policy.js';
import type { Finding } from '../../report/model.js';
import { HIGHEST_PROTOCOL, OPCODES } from './opcodes.js';
import { PickleError, type StreamReader } from './reader.js';
import { KEPT_CHARS, pushItem, render, type Value } from './values.js';
import { boundMethodCall } from './bound.js';
import { decodeEscapedString, decodeRawUnicodeEscape, decodeUtf8 } from './strings.js';

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
  /** Absolute time (ms since epoch) after which analysis stops with a limit error. */
  deadline: number;
  /** Treat joblib NumpyArrayWrapper BUILDs as followed by inline array data (joblib.load semantics). */
  joblib?: boolean;
  /** Nested pickle depth (joblib object arrays); internal. */
  nesting?: number;
}

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

function parseIntLine(line: string, offset: number, what: string): bigint {
  const t = line.trim().replace(/_/g, '');
  if (!/^[+-]?\d+$/.test(t)) throw new PickleError(`invalid literal for int() in ${what}: ${JSON.stringify(line.slice(0, 40))}`, offset);
  return BigInt(t);
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

  const importGlobal = (moduleRaw: string, name: string, op: string, off: number): Value => {
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

  const textLine = (enc: 'utf8' | 'latin1' = 'utf8'): string => {
    const b = r.line();
    return enc === 'utf8' ? decodeUtf8(b) : b.toString('latin1');
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

  const stringValue = (b: Buffer | null, unicode: boolean): Value => {
    if (b === null) return { k: 'str', v: '', truncated: true };
    return str(unicode ? decodeUtf8(b) : b.toString('latin1'));
  };

  const bytesValue = (b: Buffer | null, n: number): Value => {
    return { k: 'bytes', len: n, preview: b ? b.subarray(0, 64) : Buffer.alloc(0) };
  };

  const nesting = opts.nesting ?? 0;

  try {
    for (;;) {
      const off = r.pos;
      if (++a.opcodes > opts.maxOpcodes) throw new PickleError(`more than ${opts.maxOpcodes} opcodes`, off, 'limit');
      if ((a.opcodes & 0xfff) === 0 && Date.now() > opts.deadline) throw new PickleError('analysis time budget exhausted', off, 'limit');
      const code = r.byte();
      const info = OPCODES[code];
      if (!info) throw new PickleError(`invalid load key, '\\x${code.toString(16).padStart(2, '0')}'`, off);
      const op = info.name;
      switch (op) {
        case 'PROTO': {
          const p = r.byte();
          if (p > HIGHEST_PROTOCOL) throw new PickleError(`unsupported pickle protocol: ${p}`, off);
          a.protocol = p;
          break;
        }
        case 'FRAME': {
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
          a.result = v;
          a.stopped = true;
          a.end = r.pos;
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
          const line = textLine('latin1');
          if (line === '01') stack.push({ k: 'bool', v: true });
          else if (line === '00') stack.push({ k: 'bool', v: false });
          else stack.push({ k: 'int', v: parseIntLine(line, off, 'INT') });
          break;
        }
        case 'LONG': {
          let line = textLine('latin1');
          if (line.endsWith('L')) line = line.slice(0, -1);
          stack.push({ k: 'int', v: parseIntLine(line, off, 'LONG') });
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
          const line = textLine('latin1').trim();
          const f = Number(line);
          if (line === '' || (Number.isNaN(f) && !/^[+-]?nan$/i.test(line))) {
            if (!/^[+-]?inf(inity)?$/i.test(line)) throw new PickleError(`could not convert string to float: ${JSON.stringify(line.slice(0, 40))}`, off);
          }
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
          stack.push(stringValue(argBytes(n, off, op), false));
          break;
        }
        case 'SHORT_BINSTRING': {
          const n = r.byte();
          stack.push(stringValue(argBytes(n, off, op), false));
          break;
        }
        case 'UNICODE':
          stack.push(str(decodeRawUnicodeEscape(r.line())));
          break;
        case 'BINUNICODE': {
          const n = r.bytes(4).readUInt32LE(0);
          stack.push(stringValue(argBytes(n, off, op), true));
          break;
        }
        case 'SHORT_BINUNICODE': {
          const n = r.byte();
          stack.push(stringValue(argBytes(n, off, op), true));
          break;
        }
        case 'BINUNICODE8': {
          const n = r.bytes(8).readBigUInt64LE(0);
          if (n > BigInt(r.remaining())) throw new PickleError('pickle data was truncated', off, 'truncated');
          stack.push(stringValue(argBytes(Number(n), off, op), true));
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
          stack.push({ k: 'bytes', len, preview });
          break;
        }
        case 'NEXT_BUFFER':
          throw new PickleError('pickle stream refers to out-of-band data but no *buffers* argument was given', off);
        case 'READONLY_BUFFER':
          top(off);
          break;
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
          for (let i = 0; i < items.length; i += 2) dictSet(d, items[i] as Value, items[i + 1] as Value);
          stack.push(d);
          break;
        }
        case 'EMPTY_SET':
          stack.push({ k: 'set', items: [], count: 0 });
          break;
        case 'FROZENSET': {
          const s: Value = { k: 'frozenset', items: [], count: 0 };
          for (const it of popMark(off)) pushItem(s, it);
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
          const items = popMark(off);
          const l = top(off);
          appendTo(l, items, off, op);
          break;
        }
        case 'ADDITEMS': {
          const items = popMark(off);
          const s = top(off);
          if (s.k === 'set') for (const it of items) pushItem(s, it);
          else if (s.k === 'global') mutateImported(s, op, off, 'adds items to');
          else if (s.k !== 'call' && s.k !== 'unknown' && s.k !== 'pers') throw new PickleError(`ADDITEMS on a '${s.k}'`, off);
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
          if (items.length % 2) throw new PickleError('odd number of items for SETITEMS', off);
          setItems(top(off), items, off, op);
          break;
        }
        case 'PUT': {
          const idx = parseIntLine(textLine('latin1'), off, 'PUT');
          if (idx < 0n) throw new PickleError('negative PUT argument', off);
          memo.set(Number(idx), top(off));
          break;
        }
        case 'BINPUT':
          memo.set(r.byte(), top(off));
          break;
        case 'LONG_BINPUT':
          memo.set(r.bytes(4).readUInt32LE(0), top(off));
          break;
        case 'MEMOIZE':
          // CPython stores at len(memo): the number of distinct indices set so far, not a counter.
          memo.set(memo.size, top(off));
          break;
        case 'GET':
        case 'BINGET':
        case 'LONG_BINGET': {
          const idx = op === 'GET' ? Number(parseIntLine(textLine('latin1'), off, 'GET')) : op === 'BINGET' ? r.byte() : r.bytes(4).readUInt32LE(0);
          const v = memo.get(idx);
          if (v === undefined) throw new PickleError(`Memo value not found at index ${idx}`, off);
          stack.push(reused(v));
          break;
        }
        case 'GLOBAL': {
          const module = textLine();
          const name = textLine();
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
          const module = textLine();
          const name = textLine();
          const cls = importGlobal(module, name, op, off);
          const args = asTuple(popMark(off));
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
          if (args.k !== 'tuple' && args.k !== 'unknown' && args.k !== 'call') throw new PickleError('NEWOBJ expected an arg tuple', off);
          const call: Value & { k: 'call' } = { k: 'call', fn: cls, args, op, offset: off };
          recordCall(cls, call, off);
          stack.push(call);
          break;
        }
        case 'NEWOBJ_EX': {
          const kwargs = pop(off);
          const args = pop(off);
          const cls = pop(off);
          const call: Value & { k: 'call' } = { k: 'call', fn: cls, args, kwargs, op, offset: off };
          recordCall(cls, call, off);
          stack.push(call);
          break;
        }
        case 'REDUCE': {
          const args = pop(off);
          const fn = pop(off);
          if (args.k !== 'tuple' && args.k !== 'unknown' && args.k !== 'call' && args.k !== 'pers') throw new PickleError('REDUCE expected an argument tuple', off);
          const call: Value & { k: 'call' } = { k: 'call', fn, args, op, offset: off };
          recordCall(fn, call, off);
          stack.push(call);
          break;
        }
        case 'BUILD': {
          const state = pop(off);
          const inst = top(off);
          if (inst.k === 'global') mutateImported(inst, op, off, 'sets the state of');
          else if (inst.k === 'call') {
            inst.state = state;
            if (opts.joblib && inst.fn.k === 'global' && inst.fn.qualified === 'joblib.numpy_pickle.NumpyArrayWrapper') {
              readJoblibArray(inst, off);
            }
          }
          break;
        }
        case 'PERSID': {
          const pid = textLine('latin1');
          a.persistentIds++;
          stack.push({ k: 'pers', pid: str(pid) });
          break;
        }
        case 'BINPERSID': {
          const pid = pop(off);
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
    a.error = e;
    a.end = r.pos;
    return a;
  }

  function dictSet(d: Value & { k: 'dict' }, k: Value, v: Value): void {
    if (d.items.length < 2 * 16 || (k.k === 'str' && ['shape', 'dtype', 'order', 'numpy_array_alignment_bytes'].includes(k.v))) {
      d.items.push(k, v);
    }
    d.count++;
  }

  function appendTo(l: Value, items: Value[], off: number, op: string): void {
    if (l.k === 'list') for (const it of items) pushItem(l, it);
    else if (l.k === 'global') mutateImported(l, op, off, 'appends to');
    else if (l.k === 'call' || l.k === 'unknown' || l.k === 'pers' || l.k === 'ext') {
      // CPython calls .extend/.append on arbitrary objects: a call result's own methods run.
      if (l.k === 'call' && l.fn.k === 'global') {
        const site = imports.get(l.fn.qualified);
        if (site && site.cls !== 'allowed' && site.calls.length < MAX_CALLS_KEPT) site.calls.push(`${render(l)}.extend(${items.length} items)`);
      }
    } else throw new PickleError(`${op} on a '${l.k}'`, off);
  }

  function setItems(d: Value, items: Value[], off: number, op: string): void {
    if (d.k === 'dict') for (let i = 0; i + 1 < items.length; i += 2) dictSet(d as Value & { k: 'dict' }, items[i] as Value, items[i + 1] as Value);
    else if (d.k === 'global') mutateImported(d, op, off, 'assigns items into');
    else if (d.k !== 'call' && d.k !== 'unknown' && d.k !== 'pers' && d.k !== 'ext') throw new PickleError(`${op} on a '${d.k}'`, off);
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
