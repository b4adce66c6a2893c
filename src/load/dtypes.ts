/** Tensor dtypes, named as PyTorch names them, and the TypedArray each one comes back as. */

export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

interface DtypeInfo {
  /** Bytes per element (complex: both parts). */
  size: number;
  make: (buf: ArrayBuffer, byteOffset: number, length: number) => TensorData;
  /** safetensors dtype name, when the format has one. */
  safetensors?: string;
}

const f32 = (b: ArrayBuffer, o: number, n: number) => new Float32Array(b, o, n);
const f64 = (b: ArrayBuffer, o: number, n: number) => new Float64Array(b, o, n);
const u8 = (b: ArrayBuffer, o: number, n: number) => new Uint8Array(b, o, n);
const u16 = (b: ArrayBuffer, o: number, n: number) => new Uint16Array(b, o, n);

export const DTYPES: Readonly<Record<string, DtypeInfo>> = Object.freeze({
  float32: { size: 4, make: f32, safetensors: 'F32' },
  float64: { size: 8, make: f64, safetensors: 'F64' },
  float16: { size: 2, make: u16, safetensors: 'F16' },
  bfloat16: { size: 2, make: u16, safetensors: 'BF16' },
  int8: { size: 1, make: (b, o, n) => new Int8Array(b, o, n), safetensors: 'I8' },
  uint8: { size: 1, make: u8, safetensors: 'U8' },
  int16: { size: 2, make: (b, o, n) => new Int16Array(b, o, n), safetensors: 'I16' },
  uint16: { size: 2, make: u16, safetensors: 'U16' },
  int32: { size: 4, make: (b, o, n) => new Int32Array(b, o, n), safetensors: 'I32' },
  uint32: { size: 4, make: (b, o, n) => new Uint32Array(b, o, n), safetensors: 'U32' },
  int64: { size: 8, make: (b, o, n) => new BigInt64Array(b, o, n), safetensors: 'I64' },
  uint64: { size: 8, make: (b, o, n) => new BigUint64Array(b, o, n), safetensors: 'U64' },
  bool: { size: 1, make: u8, safetensors: 'BOOL' },
  complex64: { size: 8, make: (b, o, n) => new Float32Array(b, o, n * 2), safetensors: 'C64' },
  complex128: { size: 16, make: (b, o, n) => new Float64Array(b, o, n * 2) },
  complex32: { size: 4, make: (b, o, n) => new Uint16Array(b, o, n * 2) },
  float8_e4m3fn: { size: 1, make: u8, safetensors: 'F8_E4M3' },
  float8_e5m2: { size: 1, make: u8, safetensors: 'F8_E5M2' },
});

export function dtypeInfo(name: string): DtypeInfo | undefined {
  return Object.prototype.hasOwnProperty.call(DTYPES, name) ? DTYPES[name] : undefined;
}

/** safetensors dtype → PyTorch dtype name. */
export const FROM_SAFETENSORS: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(Object.entries(DTYPES).filter(([, v]) => v.safetensors).map(([k, v]) => [v.safetensors as string, k])),
);

/** NumPy type string (`<f4`, `|b1`, `<c8`…) → PyTorch dtype name; undefined when not a plain numeric dtype. */
export function fromNumpyDescr(descr: string): { dtype: string; bigEndian: boolean } | undefined {
  const m = /^([<>|=]?)([a-zA-Z])(\d+)$/.exec(descr);
  if (!m) {
    if (descr === '?' || descr === 'bool') return { dtype: 'bool', bigEndian: false };
    return undefined;
  }
  const order = m[1] as string;
  const kind = m[2] as string;
  const size = Number(m[3]);
  const bigEndian = order === '>' && size > 1;
  const table: Record<string, Record<number, string>> = {
    f: { 2: 'float16', 4: 'float32', 8: 'float64' },
    i: { 1: 'int8', 2: 'int16', 4: 'int32', 8: 'int64' },
    u: { 1: 'uint8', 2: 'uint16', 4: 'uint32', 8: 'uint64' },
    b: { 1: 'bool' },
    c: { 8: 'complex64', 16: 'complex128' },
  };
  const dtype = table[kind]?.[size];
  return dtype ? { dtype, bigEndian } : undefined;
}

/** NumPy one-character type codes used by pickled dtypes (`dtype('f4')` pickles as `'f4'`). */
export function numpyDescrFromSpec(spec: string, order: string): string {
  if (/^[<>|=]/.test(spec)) return spec;
  const o = order === '>' ? '>' : '<';
  const named: Record<string, string> = { float32: 'f4', float64: 'f8', float16: 'f2', int64: 'i8', int32: 'i4', int16: 'i2', int8: 'i1', uint8: 'u1', uint16: 'u2', uint32: 'u4', uint64: 'u8', bool: 'b1', complex64: 'c8', complex128: 'c16' };
  const s = named[spec] ?? spec;
  if (s === '?' || s === 'b1') return '|b1';
  return `${o}${s}`;
}

/** Byte-swaps elements of `size` bytes in place (big-endian NumPy data to little-endian). */
export function byteswap(bytes: Uint8Array, size: number): void {
  if (size <= 1) return;
  for (let i = 0; i + size <= bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a] as number;
      bytes[a] = bytes[b] as number;
      bytes[b] = t;
    }
  }
}
