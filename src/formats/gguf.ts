import type { ByteSource } from './source.js';
import type { FormatContext, FormatHandler } from './types.js';
import { decodeUtf8Strict, isValidUtf8 } from './json-strict.js';
import { analyzeChatTemplate, reportTemplateFindings } from './chat-template.js';
import { threadCpuMs } from '../cpu-time.js';

/**
 * GGUF v2/v3 (llama.cpp): `GGUF` magic, version, tensor count, metadata key/value pairs, tensor
 * infos, padding to `general.alignment`, then tensor data. Every count is checked against the bytes
 * that remain before anything is read, every string against a cap.
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
/** Longest metadata key (llama.cpp keys are short ASCII). */
export const GGUF_MAX_KEY_BYTES = 65_535;
/** Longest metadata string value (chat templates are a few KiB; tokenizer merges are short). */
export const GGUF_MAX_STRING_BYTES = 16 * 1024 * 1024;
/** Elements in one metadata array (the largest vocabularies and merge lists are under 1M). */
export const GGUF_MAX_ARRAY_ELEMENTS = 4 * 1024 * 1024;
/** Nested arrays deeper than this are rejected. */
export const GGUF_MAX_ARRAY_DEPTH = 4;
export const GGUF_MAX_KV = 1_000_000;
export const GGUF_MAX_TENSORS = 1_000_000;
/** ggml's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;
/** Longest tensor name (ggml's GGML_MAX_NAME is 64; we allow headroom for other writers). */
export const GGUF_MAX_TENSOR_NAME = 256;
/** Metadata section bytes walked before giving up (vocabularies take tens of MiB). */
export const GGUF_MAX_HEADER_BYTES = 256 * 1024 * 1024;
/** CPU-time budget (ms, `threadCpuMs()`) for walking the header (a real one takes well under 200 ms). */
export const GGUF_MAX_HEADER_MS = 1500;
/** Metadata strings longer than this are truncated in `metadata` (chat templates are kept whole). */
export const GGUF_KEEP_STRING_CHARS = 4096;
const DEFAULT_ALIGNMENT = 32;
const CHUNK = 1 << 20;

export const GGUF_VALUE_TYPES = ['UINT8', 'INT8', 'UINT16', 'INT16', 'UINT32', 'INT32', 'FLOAT32', 'BOOL', 'STRING', 'ARRAY', 'UINT64', 'INT64', 'FLOAT64'] as const;
const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** ggml types: [name, block size (elements), bytes per block]. Removed ids are absent. */
export const GGML_TYPES: Readonly<Record<number, readonly [string, number, number]>> = Object.freeze({
  0: ['F32', 1, 4],
  1: ['F16', 1, 2],
  2: ['Q4_0', 32, 18],
  3: ['Q4_1', 32, 20],
  6: ['Q5_0', 32, 22],
  7: ['Q5_1', 32, 24],
  8: ['Q8_0', 32, 34],
  9: ['Q8_1', 32, 36],
  10: ['Q2_K', 256, 84],
  11: ['Q3_K', 256, 110],
  12: ['Q4_K', 256, 144],
  13: ['Q5_K', 256, 176],
  14: ['Q6_K', 256, 210],
  15: ['Q8_K', 256, 292],
  16: ['IQ2_XXS', 256, 66],
  17: ['IQ2_XS', 256, 74],
  18: ['IQ3_XXS', 256, 98],
  19: ['IQ1_S', 256, 50],
  20: ['IQ4_NL', 32, 18],
  21: ['IQ3_S', 256, 110],
  22: ['IQ2_S', 256, 82],
  23: ['IQ4_XS', 256, 136],
  24: ['I8', 1, 1],
  25: ['I16', 1, 2],
  26: ['I32', 1, 4],
  27: ['I64', 1, 8],
  28: ['F64', 1, 8],
  29: ['IQ1_M', 256, 56],
  30: ['BF16', 1, 2],
  34: ['TQ1_0', 256, 54],
  35: ['TQ2_0', 256, 66],
  39: ['MXFP4', 32, 17],
});

export type GgufScalar = number | bigint | boolean | string;
export interface GgufArraySummary {
  type: 'ARRAY';
  elementType: string;
  length: number;
  /** Leading elements kept for display (strings and numbers only). */
  head: GgufScalar[];
}
export type GgufValue = GgufScalar | GgufArraySummary;

export interface GgufTensor {
  name: string;
  /** ggml type name (`F32`, `Q4_K`, …). */
  dtype: string;
  typeId: number;
  /** Dimensions in ggml order (ne[0] is the fastest-moving). */
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface GgufInfo {
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensor[];
  /** Absolute file offset of the tensor data section. */
  dataStart: number;
  /** Offset of each metadata key/value pair (for findings). */
  keyOffsets: Map<string, number>;
}

export interface GgufProblem {
  rule: string;
  message: string;
  offset?: number;
  evidence?: string;
}

export class GgufFormatError extends Error {
  readonly code = 'INVALID_MODEL';
  constructor(readonly problems: GgufProblem[]) {
    super(`invalid GGUF: ${problems.map((p) => `${p.rule}: ${p.message}`).join('; ')}`);
    this.name = 'GgufFormatError';
  }
}

class Stop extends Error {}

/** Sequential reader over a ByteSource with a 1 MiB window; never reads past the source. */
class Cursor {
  pos = 0;
  private buf: Buffer = Buffer.alloc(0);
  private bufStart = 0;
  constructor(
    private readonly src: ByteSource,
    private readonly onShort: (what: string, at: number) => never,
  ) {}
  get remaining(): number {
    return this.src.size - this.pos;
  }
  private ensure(n: number, what: string): void {
    if (n > this.remaining) this.onShort(what, this.pos);
    const rel = this.pos - this.bufStart;
    if (rel >= 0 && rel + n <= this.buf.length) return;
    this.bufStart = this.pos;
    this.buf = this.src.read(this.pos, Math.max(n, CHUNK));
  }
  bytes(n: number, what: string): Buffer {
    this.ensure(n, what);
    const rel = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(rel, rel + n);
  }
  skip(n: number, what: string): void {
    if (n > this.remaining) this.onShort(what, this.pos);
    this.pos += n;
  }
  u8(what: string): number {
    return this.bytes(1, what)[0] as number;
  }
  u32(what: string): number {
    return this.bytes(4, what).readUInt32LE(0);
  }
  u64(what: string): bigint {
    return this.bytes(8, what).readBigUInt64LE(0);
  }
}

function readScalar(c: Cursor, type: number, what: string): GgufScalar {
  switch (type) {
    case 0: return c.bytes(1, what).readUInt8(0);
    case 1: return c.bytes(1, what).readInt8(0);
    case 2: return c.bytes(2, what).readUInt16LE(0);
    case 3: return c.bytes(2, what).readInt16LE(0);
    case 4: return c.bytes(4, what).readUInt32LE(0);
    case 5: return c.bytes(4, what).readInt32LE(0);
    case 6: return c.bytes(4, what).readFloatLE(0);
    case 7: return c.bytes(1, what)[0] !== 0;
    case 10: return c.bytes(8, what).readBigUInt64LE(0);
    case 11: return c.bytes(8, what).readBigInt64LE(0);
    case 12: return c.bytes(8, what).readDoubleLE(0);
    default: throw new Error(`not a scalar type ${type}`);
  }
}

/** Returns the descriptors of a valid GGUF file; throws GgufFormatError otherwise. */
export function parseGguf(source: ByteSource): GgufInfo {
  const r = validateGguf(source);
  if (r.problems.length > 0 || !r.info) throw new GgufFormatError(r.problems);
  return r.info;
}

/** Checks every rule; `info` is present when the header could be walked to the end. Never throws. */
export function validateGguf(source: ByteSource, deadline = threadCpuMs() + GGUF_MAX_HEADER_MS): { info?: GgufInfo; problems: GgufProblem[] } {
  const problems: GgufProblem[] = [];
  const add = (rule: string, message: string, offset?: number, evidence?: string) => {
    const p: GgufProblem = { rule, message };
    if (offset !== undefined) p.offset = offset;
    if (evidence !== undefined) p.evidence = evidence;
    problems.push(p);
  };
  const fatal = (rule: string, message: string, offset?: number, evidence?: string): never => {
    add(rule, message, offset, evidence);
    throw new Stop();
  };
  const c = new Cursor(source, (what, at) => fatal('gguf/truncated', `file ends while reading ${what}`, at));
  const readString = (what: string, cap: number): string => {
    const at = c.pos;
    const len = c.u64(`${what} length`);
    if (len > BigInt(cap)) fatal('gguf/string-too-long', `${what} declares ${len} bytes (cap ${cap})`, at);
    if (len > BigInt(c.remaining)) fatal('gguf/truncated', `${what} declares ${len} bytes but only ${c.remaining} remain`, at);
    const b = c.bytes(Number(len), what);
    const s = decodeUtf8Strict(b);
    if (s === undefined) {
      add('gguf/bad-utf8', `${what} is not valid UTF-8`, at);
      return b.toString('utf8');
    }
    return s;
  };
  const metadata = new Map<string, GgufValue>();
  const keyOffsets = new Map<string, number>();
  const tensors: GgufTensor[] = [];
  let version = 0;
  let alignment = DEFAULT_ALIGNMENT;
  try {
    const magic = c.u32('magic');
    if (magic !== GGUF_MAGIC) fatal('gguf/bad-magic', 'file does not start with GGUF', 0);
    version = c.u32('version');
    if (version === 1) fatal('gguf/unsupported-version', 'GGUF v1 (32-bit counts) is not supported by current loaders', 4);
    if (version === 0x02000000 || version === 0x03000000) fatal('gguf/unsupported-version', 'big-endian GGUF (version bytes swapped) is not supported by little-endian loaders', 4, `version ${version}`);
    if (version !== 2 && version !== 3) fatal('gguf/unsupported-version', `unknown GGUF version ${version}`, 4, `version ${version}`);
    const tensorCount = c.u64('tensor count');
    const kvCount = c.u64('metadata count');
    // Each kv needs at least 8 (key len) + 4 (type) + 1 bytes; each tensor info at least 8+4+4+8.
    if (kvCount > BigInt(GGUF_MAX_KV) || kvCount * 13n > BigInt(c.remaining)) fatal('gguf/bad-count', `metadata count ${kvCount} cannot fit in the ${c.remaining} remaining bytes (cap ${GGUF_MAX_KV})`, 16);
    if (tensorCount > BigInt(GGUF_MAX_TENSORS) || tensorCount * 24n > BigInt(c.remaining)) fatal('gguf/bad-count', `tensor count ${tensorCount} cannot fit in the ${c.remaining} remaining bytes (cap ${GGUF_MAX_TENSORS})`, 8);

    const readValue = (type: number, key: string, depth: number): GgufValue => {
      if (type in SCALAR_SIZE) return readScalar(c, type, `value of ${key}`);
      if (type === 8) return readString(`string value of ${key}`, GGUF_MAX_STRING_BYTES);
      if (type === 9) {
        const at = c.pos;
        if (depth >= GGUF_MAX_ARRAY_DEPTH) fatal('gguf/array-depth', `arrays nested deeper than ${GGUF_MAX_ARRAY_DEPTH} in ${key}`, at);
        const et = c.u32(`array element type of ${key}`);
        const count = c.u64(`array length of ${key}`);
        if (!(et in SCALAR_SIZE) && et !== 8 && et !== 9) fatal('gguf/bad-value-type', `array ${key} has unknown element type ${et}`, at);
        const minSize = et in SCALAR_SIZE ? (SCALAR_SIZE[et] as number) : et === 8 ? 8 : 12;
        if (count > BigInt(GGUF_MAX_ARRAY_ELEMENTS)) fatal('gguf/array-too-long', `array ${key} declares ${count} elements (cap ${GGUF_MAX_ARRAY_ELEMENTS})`, at);
        if (count * BigInt(minSize) > BigInt(c.remaining)) fatal('gguf/array-too-long', `array ${key} declares ${count} elements that cannot fit in the ${c.remaining} remaining bytes`, at);
        const n = Number(count);
        const head: GgufScalar[] = [];
        if (et in SCALAR_SIZE) {
          const keep = Math.min(n, 16);
          for (let i = 0; i < keep; i++) head.push(readScalar(c, et, `element of ${key}`));
          c.skip((n - keep) * (SCALAR_SIZE[et] as number), `elements of ${key}`);
        } else if (et === 8) {
          // String arrays (vocabularies, merges): length checked without BigInt, bytes validated as
          // UTF-8 in place, only the first few decoded.
          for (let i = 0; i < n; i++) {
            if ((i & 0xffff) === 0 && threadCpuMs() > deadline) fatal('gguf/time-limit', `metadata walk exceeded its time budget in ${key}`, c.pos);
            const at = c.pos;
            const lb = c.bytes(8, `string length in ${key}`);
            const lo = lb.readUInt32LE(0);
            const hi = lb.readUInt32LE(4);
            if (hi !== 0 || lo > GGUF_MAX_STRING_BYTES) fatal('gguf/string-too-long', `element ${i} of ${key} declares ${BigInt(hi) * 4294967296n + BigInt(lo)} bytes (cap ${GGUF_MAX_STRING_BYTES})`, at);
            if (lo > c.remaining) fatal('gguf/truncated', `element ${i} of ${key} declares ${lo} bytes but only ${c.remaining} remain`, at);
            const b = c.bytes(lo, `element of ${key}`);
            if (!isValidUtf8(b)) add('gguf/bad-utf8', `element ${i} of ${key} is not valid UTF-8`, at);
            if (i < 16) head.push(b.toString('utf8', 0, Math.min(b.length, 800)).slice(0, 200));
          }
        } else {
          for (let i = 0; i < n; i++) {
            if ((i & 0xfff) === 0 && threadCpuMs() > deadline) fatal('gguf/time-limit', `metadata walk exceeded its time budget in ${key}`, c.pos);
            const v = readValue(et, key, depth + 1);
            if (i < 16 && typeof v !== 'object') head.push(typeof v === 'string' ? v.slice(0, 200) : v);
          }
        }
        return { type: 'ARRAY', elementType: GGUF_VALUE_TYPES[et] ?? String(et), length: n, head };
      }
      return fatal('gguf/bad-value-type', `metadata ${key} has unknown value type ${type}`, c.pos - 4);
    };

    for (let k = 0n; k < kvCount; k++) {
      const at = c.pos;
      if ((k & 0xfffn) === 0n && threadCpuMs() > deadline) fatal('gguf/time-limit', 'metadata walk exceeded its time budget', at);
      if (at > GGUF_MAX_HEADER_BYTES) fatal('gguf/header-too-large', `metadata runs past ${GGUF_MAX_HEADER_BYTES} bytes`, at);
      const key = readString('metadata key', GGUF_MAX_KEY_BYTES);
      if (key.length === 0) add('gguf/bad-key', 'empty metadata key', at);
      const type = c.u32(`type of ${key}`);
      const value = readValue(type, key, 0);
      if (metadata.has(key)) add('gguf/duplicate-key', `metadata key ${JSON.stringify(key)} appears twice; loaders disagree on which wins`, at);
      else {
        // Long strings are kept whole only for chat templates; others are cut for display.
        const keep = typeof value === 'string' && value.length > GGUF_KEEP_STRING_CHARS && !key.startsWith('tokenizer.chat_template') ? `${value.slice(0, GGUF_KEEP_STRING_CHARS)}…` : value;
        metadata.set(key, keep);
        keyOffsets.set(key, at);
      }
      if (key === 'general.alignment') {
        if (type !== 4) add('gguf/bad-alignment', `general.alignment must be UINT32, found ${GGUF_VALUE_TYPES[type] ?? type}`, at);
        else {
          const a = value as number;
          if (a === 0 || (a & (a - 1)) !== 0) add('gguf/bad-alignment', `general.alignment ${a} is not a power of two`, at, `alignment ${a}`);
          else alignment = a;
        }
      }
    }

    const names = new Set<string>();
    const infos: Array<{ name: string; typeId: number; shape: number[]; offset: bigint; nbytes: bigint; at: number }> = [];
    for (let t = 0n; t < tensorCount; t++) {
      const at = c.pos;
      if ((t & 0xfffn) === 0n && threadCpuMs() > deadline) fatal('gguf/time-limit', 'tensor infos exceeded the time budget', at);
      const name = readString('tensor name', GGUF_MAX_TENSOR_NAME * 4);
      if (Buffer.byteLength(name) > GGUF_MAX_TENSOR_NAME) add('gguf/tensor-name', `tensor name of ${Buffer.byteLength(name)} bytes exceeds ${GGUF_MAX_TENSOR_NAME}`, at);
      if (names.has(name)) add('gguf/duplicate-tensor', `tensor ${JSON.stringify(name)} appears twice`, at);
      names.add(name);
      const nDims = c.u32(`dimension count of ${name}`);
      if (nDims > GGUF_MAX_DIMS) fatal('gguf/too-many-dims', `tensor ${JSON.stringify(name)} has ${nDims} dimensions (ggml allows ${GGUF_MAX_DIMS})`, at);
      const shape: number[] = [];
      let elements = 1n;
      for (let d = 0; d < nDims; d++) {
        const ne = c.u64(`dimension of ${name}`);
        if (ne > BigInt(Number.MAX_SAFE_INTEGER)) fatal('gguf/bad-shape', `tensor ${JSON.stringify(name)} dimension ${ne} is out of range`, at);
        elements *= ne;
        shape.push(Number(ne));
      }
      if (elements > (1n << 62n)) fatal('gguf/bad-shape', `tensor ${JSON.stringify(name)} element count overflows`, at);
      const typeId = c.u32(`type of ${name}`);
      const offset = c.u64(`offset of ${name}`);
      const gt = GGML_TYPES[typeId];
      if (!gt) {
        add('gguf/unknown-type', `tensor ${JSON.stringify(name)} has unknown ggml type ${typeId}`, at);
        continue;
      }
      const [, blck, tsize] = gt;
      if ((shape[0] ?? 1) % blck !== 0) {
        add('gguf/bad-shape', `tensor ${JSON.stringify(name)} row of ${shape[0]} elements is not a multiple of the ${gt[0]} block size ${blck}`, at);
        continue;
      }
      const nbytes = (elements * BigInt(tsize)) / BigInt(blck);
      infos.push({ name, typeId, shape, offset, nbytes, at });
    }

    const headerEnd = c.pos;
    const dataStart = Math.ceil(headerEnd / alignment) * alignment;
    const al = BigInt(alignment);
    let expected = 0n;
    for (const ti of infos) {
      if (ti.offset % al !== 0n) add('gguf/unaligned-tensor', `tensor ${JSON.stringify(ti.name)} offset ${ti.offset} is not a multiple of the alignment ${alignment}`, ti.at);
      else if (ti.offset !== expected) add(ti.offset > expected ? 'gguf/tensor-gap' : 'gguf/tensor-overlap', `tensor ${JSON.stringify(ti.name)} at data offset ${ti.offset}, expected ${expected} (tensors must be contiguous in order)`, ti.at);
      const begin = BigInt(dataStart) + ti.offset;
      const end = begin + ti.nbytes;
      if (end > BigInt(source.size)) {
        add('gguf/data-out-of-bounds', `tensor ${JSON.stringify(ti.name)} data [${begin}, ${end}) runs past the end of the ${source.size}-byte file`, ti.at);
      } else {
        tensors.push({ name: ti.name, dtype: (GGML_TYPES[ti.typeId] as readonly [string, number, number])[0], typeId: ti.typeId, shape: ti.shape, begin: Number(begin), end: Number(end) });
      }
      const padded = ((ti.nbytes + al - 1n) / al) * al;
      expected = (ti.offset > expected ? ti.offset : expected) + padded;
    }
    if (infos.length > 0 && dataStart > source.size) add('gguf/data-out-of-bounds', `data section starts at ${dataStart}, past the end of the file`, headerEnd);
    return { info: { version, alignment, metadata, tensors, dataStart, keyOffsets }, problems };
  } catch (e) {
    if (e instanceof Stop) return { problems };
    throw e;
  }
}

export const ggufHandler: FormatHandler = {
  name: 'gguf',
  // The magic decides; a `.gguf` without it is still judged (as invalid) rather than skipped.
  detect: (head, _size, name) => (head.length >= 4 && head.readUInt32LE(0) === GGUF_MAGIC) || /\.gguf$/i.test(name),
  async scan(ctx: FormatContext) {
    const r = validateGguf(ctx.source, threadCpuMs() + Math.min(ctx.limits.maxScanMs, GGUF_MAX_HEADER_MS));
    for (const p of r.problems) {
      ctx.sink.add({
        rule: p.rule,
        severity: 'high',
        verdict: 'invalid',
        message: `${p.message}; llama.cpp-style loaders reject or misread this file`,
        ...(p.offset !== undefined ? { location: { offset: p.offset } } : {}),
        ...(p.evidence !== undefined ? { evidence: p.evidence } : {}),
      });
    }
    if (!r.info) return 'gguf';
    ctx.stats.tensors = r.info.tensors.length;
    ctx.stats.ggufVersion = r.info.version;
    let templates = 0;
    for (const [key, value] of r.info.metadata) {
      if (!key.startsWith('tokenizer.chat_template') || typeof value !== 'string') continue;
      templates++;
      const found = analyzeChatTemplate(value);
      reportTemplateFindings(ctx.sink, found, { source: `GGUF metadata ${key}`, offset: r.info.keyOffsets.get(key) });
    }
    if (templates > 0) ctx.stats.chatTemplates = templates;
    if (r.problems.length === 0) ctx.stats.basis = templates > 0 ? 'header valid, chat template has no escape patterns' : 'header valid, no code';
    return 'gguf';
  },
};
