import type { FormatContext, FormatHandler } from './types.js';
import { SliceSource, type ByteSource } from './source.js';

/**
 * NumPy `.npy`: magic, version, a Python-literal header dict, then raw array bytes, or, for
 * object arrays, a pickle (which `np.load(allow_pickle=True)` runs).
 */

const MAGIC = Buffer.from('\x93NUMPY', 'latin1');
/** numpy itself refuses headers above this size by default (max_header_size). */
export const NPY_MAX_HEADER_BYTES = 10_000;
/** Dimensions accepted in a shape. */
export const NPY_MAX_DIMS = 64;

export interface NpyHeader {
  version: [number, number];
  descr: string | NpyField[];
  fortranOrder: boolean;
  shape: number[];
  /** Offset of the array data (or the pickle for object arrays) from the start of the source. */
  dataOffset: number;
  /** Bytes per element; 0 for object arrays. */
  itemsize: number;
  /** True when the data is a pickle (object dtype anywhere in descr). */
  isObject: boolean;
  /** Element count. */
  count: number;
  /** Little-endian unless the dtype says otherwise. */
  byteOrder: '<' | '>' | '|';
}

export interface NpyField {
  name: string;
  descr: string | NpyField[];
  shape?: number[];
}

export class NpyFormatError extends Error {
  constructor(
    message: string,
    readonly offset = 0,
  ) {
    super(message);
    this.name = 'NpyFormatError';
  }
}

type Lit = string | number | boolean | null | Lit[] | { [k: string]: Lit };

/** A strict parser for the literal subset numpy writes: dicts, tuples, lists, strings, ints, bools. */
function parseLiteral(src: string): Lit {
  let i = 0;
  let depth = 0;
  const ws = () => {
    while (i < src.length && /\s/.test(src[i] as string)) i++;
  };
  const fail = (what: string): never => {
    throw new NpyFormatError(`header is not a plain Python literal (${what} at ${i})`);
  };
  const value = (): Lit => {
    ws();
    const c = src[i];
    if (c === '{' || c === '(' || c === '[') {
      if (++depth > 16) fail('nesting too deep');
      const close = c === '{' ? '}' : c === '(' ? ')' : ']';
      i++;
      const items: Lit[] = [];
      const obj: Record<string, Lit> = Object.create(null) as Record<string, Lit>;
      for (;;) {
        ws();
        if (src[i] === close) {
          i++;
          break;
        }
        if (c === '{') {
          const k = value();
          if (typeof k !== 'string') fail('non-string key');
          ws();
          if (src[i++] !== ':') fail('expected :');
          if (Object.prototype.hasOwnProperty.call(obj, k as string)) fail(`duplicate key ${String(k)}`);
          obj[k as string] = value();
        } else items.push(value());
        ws();
        if (src[i] === ',') i++;
        else if (src[i] !== close) fail(`expected , or ${close}`);
      }
      depth--;
      return c === '{' ? obj : items;
    }
    if (c === "'" || c === '"') {
      const end = src.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string');
      const s = src.slice(i + 1, end);
      if (s.includes('\\')) fail('escapes in string');
      i = end + 1;
      return s;
    }
    const m = /^(True|False|None|-?\d+L?)/.exec(src.slice(i, i + 40));
    if (!m) return fail('unexpected token');
    i += (m[0] as string).length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    if (m[0] === 'None') return null;
    const n = Number((m[0] as string).replace('L', ''));
    if (!Number.isSafeInteger(n)) fail('integer out of range');
    return n;
  };
  const v = value();
  ws();
  if (i !== src.length) fail('trailing characters');
  return v;
}

const SIMPLE_DESCR = /^([<>|=])?([?bBhHiIlLqQpPefdgFDGSaUVOMmc]|[biufcSUVOMm]\d+)(\[[a-zA-Z0-9]+\])?$/;
const CHAR_SIZES: Record<string, number> = { '?': 1, b: 1, B: 1, h: 2, H: 2, i: 4, I: 4, l: 8, L: 8, q: 8, Q: 8, p: 8, P: 8, e: 2, f: 4, d: 8, g: 16, F: 8, D: 16, G: 32, M: 8, m: 8, c: 1 };

function descrSize(d: string | NpyField[], depth = 0): { size: number; object: boolean } {
  if (depth > 8) throw new NpyFormatError('dtype nested too deeply');
  if (typeof d === 'string') {
    const m = SIMPLE_DESCR.exec(d);
    if (!m) throw new NpyFormatError(`unknown dtype descr ${JSON.stringify(d)}`);
    const code = m[2] as string;
    if (code[0] === 'O') return { size: 8, object: true };
    if (code.length === 1) {
      if (code === 'S' || code === 'a' || code === 'U' || code === 'V') return { size: 0, object: false };
      return { size: CHAR_SIZES[code] as number, object: false };
    }
    const n = Number(code.slice(1));
    return { size: code[0] === 'U' ? n * 4 : n, object: false };
  }
  let size = 0;
  let object = false;
  for (const f of d) {
    const inner = descrSize(f.descr, depth + 1);
    const mult = (f.shape ?? []).reduce((a, b) => a * b, 1);
    size += inner.size * mult;
    object ||= inner.object;
  }
  return { size, object };
}

function toFields(v: Lit): string | NpyField[] {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v) || v.length > 4096) throw new NpyFormatError('descr must be a string or a list of fields');
  return v.map((f) => {
    if (!Array.isArray(f) || f.length < 2 || f.length > 3) throw new NpyFormatError('malformed structured dtype field');
    const name = Array.isArray(f[0]) ? f[0][1] : f[0];
    if (typeof name !== 'string') throw new NpyFormatError('structured dtype field name must be a string');
    const field: NpyField = { name, descr: toFields(f[1] as Lit) };
    if (f.length === 3) field.shape = toShape(f[2] as Lit);
    return field;
  });
}

function toShape(v: Lit): number[] {
  if (!Array.isArray(v) || v.length > NPY_MAX_DIMS) throw new NpyFormatError('shape must be a tuple of at most 64 ints');
  return v.map((d) => {
    if (typeof d !== 'number' || d < 0) throw new NpyFormatError('shape entries must be non-negative ints');
    return d;
  });
}

export function parseNpyHeader(src: ByteSource): NpyHeader {
  const pre = src.read(0, 12);
  if (pre.length < 10 || !pre.subarray(0, 6).equals(MAGIC)) throw new NpyFormatError('not a .npy file (bad magic)');
  const major = pre[6] as number;
  const minor = pre[7] as number;
  if (major < 1 || major > 3) throw new NpyFormatError(`unsupported .npy version ${major}.${minor}`, 6);
  const hlenSize = major === 1 ? 2 : 4;
  if (pre.length < 8 + hlenSize) throw new NpyFormatError('truncated header', 8);
  const hlen = major === 1 ? pre.readUInt16LE(8) : pre.readUInt32LE(8);
  if (hlen > NPY_MAX_HEADER_BYTES) throw new NpyFormatError(`header of ${hlen} bytes exceeds ${NPY_MAX_HEADER_BYTES}`, 8);
  const start = 8 + hlenSize;
  if (start + hlen > src.size) throw new NpyFormatError('header runs past the end of the file', start);
  const text = src.read(start, hlen).toString(major === 3 ? 'utf8' : 'latin1');
  const lit = parseLiteral(text.trimEnd());
  if (lit === null || typeof lit !== 'object' || Array.isArray(lit)) throw new NpyFormatError('header is not a dict', start);
  const keys = Object.keys(lit).sort().join(',');
  if (keys !== 'descr,fortran_order,shape') throw new NpyFormatError(`header keys are ${keys}, expected descr, fortran_order, shape`, start);
  const h = lit as Record<string, Lit>;
  if (typeof h.fortran_order !== 'boolean') throw new NpyFormatError('fortran_order must be a bool', start);
  const descr = toFields(h.descr as Lit);
  const shape = toShape(h.shape as Lit);
  const { size, object } = descrSize(descr);
  let count = 1;
  for (const d of shape) {
    count *= d;
    if (!Number.isSafeInteger(count)) throw new NpyFormatError('element count overflows', start);
  }
  const bo = typeof descr === 'string' && /^[<>|]/.test(descr) ? (descr[0] as '<' | '>' | '|') : '<';
  return { version: [major, minor], descr, fortranOrder: h.fortran_order, shape, dataOffset: start + hlen, itemsize: object ? 0 : size, isObject: object, count, byteOrder: bo };
}

export const numpyHandler: FormatHandler = {
  name: 'numpy',
  detect: (h) => h.length >= 8 && h.subarray(0, 6).equals(MAGIC),
  async scan(ctx: FormatContext) {
    const { source: src, sink } = ctx;
    let h: NpyHeader;
    try {
      h = parseNpyHeader(src);
    } catch (e) {
      if (!(e instanceof NpyFormatError)) throw e;
      sink.add({ rule: 'numpy/malformed', severity: 'high', verdict: 'invalid', message: `malformed .npy: ${e.message}`, location: { offset: e.offset } });
      return 'numpy';
    }
    if (h.isObject) {
      sink.add({
        rule: 'numpy/object-array',
        severity: 'info',
        verdict: 'safe',
        message: 'object array: the data is a pickle that np.load(allow_pickle=True) unpickles; analysed below',
        location: { offset: h.dataOffset },
      });
      const data = new SliceSource(src, h.dataOffset, src.size - h.dataOffset);
      await ctx.scanNested(data, 'array-pickle', sink.forMember('array-data'), { expectPickle: true });
      return 'numpy';
    }
    const need = h.count * h.itemsize;
    const have = src.size - h.dataOffset;
    if (have < need) {
      sink.add({ rule: 'numpy/truncated', severity: 'high', verdict: 'invalid', message: `array needs ${need} bytes but only ${have} follow the header`, location: { offset: h.dataOffset } });
    } else if (have > need) {
      sink.add({ rule: 'numpy/trailing-bytes', severity: 'low', verdict: 'suspicious', message: `${have - need} bytes follow the array data: a polyglot file or hidden payload`, location: { offset: h.dataOffset + need } });
    }
    ctx.stats.tensors = (typeof ctx.stats.tensors === 'number' ? ctx.stats.tensors : 0) + 1;
    return 'numpy';
  },
};
