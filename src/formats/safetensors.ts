import type { FindingSink } from '../report/findings.js';
import type { ByteSource } from './source.js';
import type { FormatContext, FormatHandler } from './types.js';
import { isJsonObject, isValidUtf8, parseJsonStrict, type JsonValue } from './json-strict.js';

/**
 * safetensors: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data buffer.
 * Validation follows the reference implementation's rules (huggingface/safetensors `validate`),
 * plus duplicate keys (which serde and JSON.parse resolve differently) and trailing bytes.
 */

/** The reference implementation's header cap. */
export const SAFETENSORS_MAX_HEADER = 100_000_000;
/**
 * Entries in one header. The reference has no count cap, but real checkpoints hold at most tens of
 * thousands per file; this bounds descriptor memory (~150 bytes each) for a hostile 100 MB header.
 */
export const SAFETENSORS_MAX_TENSORS = 131_072;
/** Dimensions per tensor. */
export const SAFETENSORS_MAX_RANK = 64;

/** Known dtypes and their width in bits. */
export const SAFETENSORS_DTYPE_BITS: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
});

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range relative to the start of the data buffer (`dataStart`). */
  begin: number;
  end: number;
}

export interface SafetensorsInfo {
  tensors: SafetensorsTensor[];
  metadata: Record<string, string>;
  headerLength: number;
  /** Absolute file offset of the data buffer (8 + headerLength). */
  dataStart: number;
}

export interface SafetensorsProblem {
  rule: string;
  message: string;
  offset?: number;
  evidence?: string;
}

export interface SafetensorsParse {
  /** Present when the header could be read; tensors are only trustworthy when `problems` is empty. */
  info?: SafetensorsInfo;
  problems: SafetensorsProblem[];
}

/** Thrown by `parseSafetensors` for a file that breaks the format's rules. */
export class SafetensorsFormatError extends Error {
  readonly code = 'INVALID_MODEL';
  constructor(readonly problems: SafetensorsProblem[]) {
    super(`invalid safetensors: ${problems.map((p) => `${p.rule}: ${p.message}`).join('; ')}`);
    this.name = 'SafetensorsFormatError';
  }
}

/** Returns the tensor descriptors of a valid safetensors file; throws SafetensorsFormatError otherwise. */
export function parseSafetensors(source: ByteSource): SafetensorsInfo {
  const r = validateSafetensors(source);
  if (r.problems.length > 0 || !r.info) throw new SafetensorsFormatError(r.problems);
  return r.info;
}

class StopParse extends Error {}

const u64 = (x: JsonValue | undefined): number | undefined => (typeof x === 'number' && Number.isInteger(x) && x >= 0 ? x : undefined);

/** Checks every rule and collects the problems. Never throws on hostile input. */
export function validateSafetensors(source: ByteSource): SafetensorsParse {
  const problems: SafetensorsProblem[] = [];
  const add = (rule: string, message: string, offset?: number, evidence?: string) => {
    const p: SafetensorsProblem = { rule, message };
    if (offset !== undefined) p.offset = offset;
    if (evidence !== undefined) p.evidence = evidence;
    problems.push(p);
  };
  if (source.size < 8) {
    add('safetensors/truncated', `file is ${source.size} bytes, shorter than the 8-byte header length`, 0);
    return { problems };
  }
  const lenBuf = source.read(0, 8);
  const declared = lenBuf.readBigUInt64LE(0);
  if (declared > BigInt(SAFETENSORS_MAX_HEADER)) {
    add('safetensors/header-too-large', `header length ${declared} exceeds the ${SAFETENSORS_MAX_HEADER}-byte cap of the reference loader`, 0);
    return { problems };
  }
  const headerLength = Number(declared);
  if (8 + headerLength > source.size) {
    add('safetensors/header-out-of-bounds', `header length ${headerLength} runs past the end of the ${source.size}-byte file`, 0);
    return { problems };
  }
  const headerBytes = source.read(8, headerLength);
  if (!isValidUtf8(headerBytes)) {
    add('safetensors/header-not-utf8', 'header is not valid UTF-8', 8);
    return { problems };
  }
  if (headerBytes[0] !== 0x7b) {
    add('safetensors/header-start', `header must start with '{', found ${JSON.stringify(headerBytes.toString('utf8', 0, 8))}`, 8);
    return { problems };
  }
  const dataStart = 8 + headerLength;
  const dataSize = source.size - dataStart;
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const tensors: SafetensorsTensor[] = [];
  let entries = 0;
  // Entries are judged one by one as the parser meets them; only compact descriptors are kept.
  const onEntry = (name: string, entry: JsonValue, at: number) => {
    if (++entries > SAFETENSORS_MAX_TENSORS) {
      add('safetensors/too-many-tensors', `more than ${SAFETENSORS_MAX_TENSORS} entries; the header was not analysed further`, 8 + at);
      throw new StopParse();
    }
    if (problems.length > 1000) return;
    if (name === '__metadata__') {
      if (!isJsonObject(entry)) {
        add('safetensors/metadata-type', '__metadata__ must be an object of string to string', 8 + at);
        return;
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') add('safetensors/metadata-type', `__metadata__ value for ${JSON.stringify(k)} is not a string`, 8 + at, JSON.stringify(v, bigintJson)?.slice(0, 80));
        else metadata[k] = v;
      }
      return;
    }
    const q = JSON.stringify(name.slice(0, 200));
    if (!isJsonObject(entry)) {
      add('safetensors/tensor-entry', `entry ${q} is not an object`, 8 + at);
      return;
    }
    const dtype = entry.dtype;
    if (typeof dtype !== 'string' || !(dtype in SAFETENSORS_DTYPE_BITS)) {
      add('safetensors/unknown-dtype', `tensor ${q} has unknown dtype ${JSON.stringify(dtype, bigintJson)?.slice(0, 40)}`, 8 + at);
      return;
    }
    const shapeV = entry.shape;
    if (!Array.isArray(shapeV) || shapeV.length > SAFETENSORS_MAX_RANK || shapeV.some((d) => u64(d) === undefined && typeof d !== 'bigint')) {
      add('safetensors/bad-shape', `tensor ${q} shape must be a list of at most ${SAFETENSORS_MAX_RANK} non-negative integers`, 8 + at, JSON.stringify(shapeV, bigintJson)?.slice(0, 120));
      return;
    }
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || u64(offs[0]) === undefined || u64(offs[1]) === undefined) {
      add('safetensors/bad-offsets', `tensor ${q} data_offsets must be two non-negative integers`, 8 + at, JSON.stringify(offs, bigintJson)?.slice(0, 120));
      return;
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) {
      add('safetensors/offsets-reversed', `tensor ${q} ends (${end}) before it begins (${begin})`, 8 + at);
      return;
    }
    // Checked multiplication: elements × bits must equal the byte range × 8 (Number while exact).
    let small = SAFETENSORS_DTYPE_BITS[dtype] as number;
    let bits = -1n;
    for (const d of shapeV as Array<number | bigint>) {
      if (typeof d === 'number' && small * d <= Number.MAX_SAFE_INTEGER) small *= d;
      else {
        bits = BigInt(small);
        break;
      }
    }
    if (bits < 0n) bits = BigInt(small);
    else {
      bits = BigInt(SAFETENSORS_DTYPE_BITS[dtype] as number);
      for (const d of shapeV as Array<number | bigint>) bits *= BigInt(d);
    }
    if (bits / 8n > BigInt(Number.MAX_SAFE_INTEGER)) {
      add('safetensors/shape-overflow', `tensor ${q} shape [${(shapeV as Array<number | bigint>).join(', ')}] overflows a 64-bit byte count`, 8 + at);
      return;
    }
    if (bits % 8n !== 0n) {
      add('safetensors/size-mismatch', `tensor ${q} has ${bits} bits of ${dtype}, not a whole number of bytes`, 8 + at);
      return;
    }
    const shape = shapeV as number[];
    const expected = Number(bits / 8n);
    if (expected !== end - begin) {
      add('safetensors/size-mismatch', `tensor ${q} ${dtype}[${shape.join(', ')}] needs ${expected} bytes but data_offsets span ${end - begin}`, 8 + at);
      return;
    }
    tensors.push({ name, dtype, shape, begin, end });
  };
  let parsed;
  try {
    parsed = parseJsonStrict(headerBytes, { onRootEntry: onEntry });
  } catch (e) {
    if (e instanceof StopParse) return { problems };
    throw e;
  }
  const syntax = parsed.issues.find((x) => x.kind !== 'duplicate-key');
  if (syntax || parsed.value === undefined) {
    add('safetensors/header-json', `header is not valid JSON: ${syntax?.message ?? 'no value'}`, 8 + (syntax?.offset ?? 0));
    return { problems };
  }
  for (const d of parsed.issues.filter((x) => x.kind === 'duplicate-key')) {
    add('safetensors/duplicate-key', `${d.message} in header: loaders disagree on which entry wins`, 8 + d.offset);
  }
  // Offsets: sorted, starting at 0, contiguous, ending exactly at the end of the file.
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const t of sorted) {
    if (t.begin > cursor) {
      add(cursor === 0 ? 'safetensors/offsets-start' : 'safetensors/offsets-gap', cursor === 0 ? `first tensor ${JSON.stringify(t.name)} starts at data offset ${t.begin}, not 0` : `gap of ${t.begin - cursor} bytes before tensor ${JSON.stringify(t.name)} (hidden bytes between tensors)`, dataStart + cursor);
    } else if (t.begin < cursor) {
      add('safetensors/offsets-overlap', `tensor ${JSON.stringify(t.name)} starts at ${t.begin}, inside the previous tensor (ends at ${cursor})`, dataStart + t.begin);
    }
    cursor = Math.max(cursor, t.end);
  }
  if (cursor > dataSize) {
    add('safetensors/data-out-of-bounds', `tensor data ends at ${cursor} but the data buffer holds ${dataSize} bytes`, dataStart + dataSize);
  } else if (cursor < dataSize) {
    add('safetensors/trailing-bytes', `${dataSize - cursor} bytes after the last tensor (possible polyglot payload)`, dataStart + cursor);
  }
  return { info: { tensors, metadata, headerLength, dataStart }, problems };
}

function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

function report(sink: FindingSink, problems: readonly SafetensorsProblem[]): void {
  for (const p of problems) {
    sink.add({
      rule: p.rule,
      severity: 'high',
      verdict: 'invalid',
      message: `${p.message}; reference loaders reject this file, other parsers may read it differently`,
      ...(p.offset !== undefined ? { location: { offset: p.offset } } : {}),
      ...(p.evidence !== undefined ? { evidence: p.evidence } : {}),
    });
  }
}

/**
 * Claims a file whose first 8 bytes are a plausible header length followed by `{`, or a
 * `.safetensors` file (so a malformed one is judged `invalid` rather than unknown).
 */
export const safetensorsHandler: FormatHandler = {
  name: 'safetensors',
  detect(head, size, name) {
    if (head.length >= 9 && head[8] === 0x7b) {
      const n = head.readBigUInt64LE(0);
      if (n >= 2n && n <= BigInt(size) - 8n) return true;
      if (n > 0n && n < 1n << 40n && head[9] === 0x22) return true; // `{"`: a truncated or lying header
    }
    return /\.safetensors$/i.test(name) && !(head.length >= 4 && head.readUInt32LE(0) === 0x04034b50);
  },
  async scan(ctx: FormatContext) {
    const r = validateSafetensors(ctx.source);
    report(ctx.sink, r.problems);
    if (r.info) {
      ctx.stats.tensors = r.info.tensors.length;
      ctx.stats.headerBytes = r.info.headerLength;
      if (r.problems.length === 0) ctx.stats.basis = 'header valid by the reference rules, no code';
    }
    return 'safetensors';
  },
};
