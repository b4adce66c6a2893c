import type { FormatContext, FormatHandler } from './types.js';
import { ConcatSource, SliceSource, type ByteSource } from './source.js';
import { analyzePickle } from './pickle/analyze.js';
import { StreamReader } from './pickle/reader.js';
import type { Value } from './pickle/values.js';
import { threadCpuMs } from '../cpu-time.js';

/**
 * POSIX/GNU tar, for PyTorch's oldest checkpoint layout (members `sys_info`, `pickle`, `tensors`,
 * `storages`) and tarred model folders. Every regular member is scanned by content.
 */

const BLOCK = 512;
/** Names PyTorch's tar layout unpickles. */
const TORCH_TAR_PICKLES = new Set(['sys_info', 'pickle', 'tensors', 'storages']);

/** Bytes per element of the storage classes the tar layout names (torch/serialization.py legacy_load). */
const STORAGE_ELEMENT_BYTES: Record<string, number> = {
  DoubleStorage: 8, FloatStorage: 4, HalfStorage: 2, BFloat16Storage: 2, LongStorage: 8, IntStorage: 4, ShortStorage: 2,
  CharStorage: 1, ByteStorage: 1, BoolStorage: 1, ComplexDoubleStorage: 16, ComplexFloatStorage: 8,
};

interface LegacyLayout {
  /** [start, end) of every pickle legacy_load unpickles from the member, in order. */
  pickles: Array<[number, number]>;
  /** Why the walk stopped before the end, if it did. */
  problem?: string;
}

/**
 * The pickles legacy_load reads from the `storages` and `tensors` members, with the raw bytes
 * between them stepped over exactly as the loader steps over them:
 *   storages: count; per storage (key, location, storage_type) then an int64 element count and
 *             that many elements; then the storage_views list.
 *   tensors:  count; per tensor (key, storage_id, type) then int32 ndim, 4 bytes, ndim int64 sizes,
 *             ndim int64 strides, an int64 offset.
 */
function legacyLayout(data: ByteSource, kind: 'storages' | 'tensors', ctx: FormatContext): LegacyLayout {
  const r = new StreamReader(data, 0, data.size);
  const opts = { policy: ctx.policy, maxOpcodes: ctx.limits.maxOpcodes, maxArgBytes: ctx.limits.maxArgBytes, deadline: threadCpuMs() + ctx.limits.maxScanMs };
  const pickles: Array<[number, number]> = [];
  const next = (): Value | undefined => {
    const a = analyzePickle(r, opts);
    pickles.push([a.start, a.error ? data.size : a.end]);
    return a.error ? undefined : a.result;
  };
  const count = next();
  if (count?.k !== 'int') return { pickles, problem: `the first pickle is not a ${kind} count` };
  if (count.v < 0n || count.v > BigInt(ctx.limits.maxMembers)) return { pickles, problem: `${count.v} ${kind} exceed the limit of ${ctx.limits.maxMembers}` };
  for (let i = 0n; i < count.v; i++) {
    const args = next();
    if (!args) return { pickles };
    const raw = r.remaining() >= 8 ? data.read(r.pos, 8) : Buffer.alloc(0);
    if (raw.length < 8) return { pickles, problem: `the raw data after ${kind.slice(0, -1)} ${i} is truncated` };
    if (kind === 'storages') {
      const type = args.k === 'tuple' ? args.items[2] : undefined;
      const name = type?.k === 'global' ? type.qualified.replace(/^torch\.(cuda\.)?/, '') : '';
      const size = STORAGE_ELEMENT_BYTES[name];
      if (size === undefined) return { pickles, problem: `storage ${i} has a type (${type?.k === 'global' ? type.qualified : type?.k ?? 'none'}) whose element size is unknown, so the bytes after it cannot be stepped over` };
      const bytes = raw.readBigInt64LE(0) * BigInt(size);
      if (bytes < 0n || bytes > BigInt(r.remaining() - 8)) return { pickles, problem: `storage ${i} declares more data than the member holds` };
      r.skip(8 + Number(bytes));
    } else {
      const ndim = raw.readInt32LE(0);
      const skip = 8 + 16 * ndim + 8;
      if (ndim < 0 || skip > r.remaining()) return { pickles, problem: `tensor ${i} declares more data than the member holds` };
      r.skip(skip);
    }
  }
  if (kind === 'storages' && !next()) return { pickles };
  if (r.pos < data.size) return { pickles, problem: `${data.size - r.pos} bytes follow the last pickle legacy_load reads` };
  return { pickles };
}

function octal(buf: Buffer, off: number, len: number): number {
  const b = buf.subarray(off, off + len);
  if ((b[0] as number) & 0x80) {
    // GNU base-256 size
    let v = 0;
    for (let i = 1; i < b.length; i++) v = v * 256 + (b[i] as number);
    return v;
  }
  const s = b.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return -1;
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = octal(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
  return stored === sum;
}

/**
 * Every pickle legacy_load reads from `storages`/`tensors` (the storage_views list after the raw
 * storages included) is analysed, in groups that the pickle scanner takes in one stream.
 */
async function scanLegacyMember(ctx: FormatContext, data: ByteSource, name: 'storages' | 'tensors'): Promise<void> {
  const msink = ctx.sink.forMember(name);
  const layout = legacyLayout(data, name, ctx);
  if (layout.problem) {
    msink.add({ rule: 'pytorch/tar-layout', severity: 'high', verdict: 'suspicious', message: `PyTorch's tar layout: ${layout.problem}; the bytes from there on were scanned as one stream` });
    // What legacy_load would do with the rest is unknown: all of it is scanned, as one stream.
    const last = layout.pickles[layout.pickles.length - 1];
    const from = last ? last[1] : 0;
    if (from < data.size) layout.pickles.push([from, data.size]);
  }
  const group = Math.max(1, ctx.limits.maxPicklesPerStream);
  for (let i = 0; i < layout.pickles.length; i += group) {
    const part = layout.pickles.slice(i, i + group);
    await ctx.scanNested(new ConcatSource(data, part), name, msink, { expectPickle: true });
  }
  ctx.stats.legacyPickles = (typeof ctx.stats.legacyPickles === 'number' ? ctx.stats.legacyPickles : 0) + layout.pickles.length;
}

export const tarHandler: FormatHandler = {
  name: 'tar',
  detect(h) {
    if (h.length < BLOCK) return false;
    const block = h.subarray(0, BLOCK);
    return (block.toString('latin1', 257, 262) === 'ustar' || block[0] !== 0) && checksumOk(block);
  },
  async scan(ctx: FormatContext) {
    const { source: src, sink, limits } = ctx;
    let pos = 0;
    let members = 0;
    let longName: string | null = null;
    let torchLayout = false;
    while (pos + BLOCK <= src.size) {
      const h = src.read(pos, BLOCK);
      if (h.every((b) => b === 0)) break;
      if (!checksumOk(h)) {
        sink.add({ rule: 'tar/bad-checksum', severity: 'high', verdict: 'invalid', message: 'tar header checksum is wrong', location: { offset: pos } });
        break;
      }
      const size = octal(h, 124, 12);
      if (size < 0 || pos + BLOCK + size > src.size) {
        sink.add({ rule: 'tar/truncated', severity: 'high', verdict: 'invalid', message: 'tar member runs past the end of the file', location: { offset: pos } });
        break;
      }
      const type = String.fromCharCode(h[156] as number);
      const prefix = h.toString('latin1', 345, 500).replace(/\0.*$/s, '');
      let name = longName ?? `${prefix ? `${prefix}/` : ''}${h.toString('latin1', 0, 100).replace(/\0.*$/s, '')}`;
      longName = null;
      const data = new SliceSource(src, pos + BLOCK, size);
      if (type === 'L') {
        longName = data.read(0, Math.min(size, 4096)).toString('latin1').replace(/\0.*$/s, '');
      } else if (type === '0' || type === '\0' || type === '7') {
        if (++members > limits.maxMembers) {
          sink.add({ rule: 'tar/too-many-members', severity: 'high', verdict: 'invalid', message: `more than ${limits.maxMembers} members` });
          break;
        }
        name = name.replace(/^\.\//, '');
        if (TORCH_TAR_PICKLES.has(name)) torchLayout = true;
        const expect = TORCH_TAR_PICKLES.has(name) || /\.(pkl|pickle)$/i.test(name);
        if (name === 'storages' || name === 'tensors') await scanLegacyMember(ctx, data, name);
        else await ctx.scanNested(data, name, sink.forMember(name), expect ? { expectPickle: true } : { probeOnly: true });
      } else if (type === '1' || type === '2') {
        sink.add({ rule: 'tar/link', severity: 'low', verdict: 'suspicious', message: `member ${name} is a ${type === '1' ? 'hard' : 'symbolic'} link to ${h.toString('latin1', 157, 257).replace(/\0.*$/s, '')}; extracting it may write outside the target folder`, location: { offset: pos } });
      }
      pos += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    }
    ctx.stats.members = members;
    return ctx.depth === 0 && torchLayout ? 'pytorch-tar' : 'tar';
  },
};
