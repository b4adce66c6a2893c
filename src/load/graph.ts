import { GuardError } from '../errors.js';
import type { BlobRef, NpDtypeSpec, VmNode, VmStorageNode, VmTensorNode } from '../unpickler/index.js';
import { byteswap, dtypeInfo, fromNumpyDescr, numpyDescrFromSpec, type TensorData } from './dtypes.js';
import { allocArena, allocTensor, checkTensorBytes, runReads, type ReadJob } from './reader.js';

/** A tensor as safeLoad returns it: contiguous, row-major, little-endian. */
export interface Tensor {
  /** PyTorch dtype name (`float32`, `bfloat16`, `int64`, …) or `gguf:<type>` for raw quantised blocks. */
  dtype: string;
  shape: number[];
  data: TensorData;
}

/**
 * Where a storage's bytes live: a byte range of the open file, bytes already in memory, or a slot
 * of the load's arena that reads already under way fill (`ready`, given to the builder). An arena
 * slot is handed out as a tensor's own memory, without a copy, to the first tensor that covers a
 * part of it no other tensor has; other tensors over it get copies.
 */
export type StorageLocation = { kind: 'file'; offset: number; size: number } | { kind: 'memory'; bytes: Uint8Array } | { kind: 'arena'; bytes: Uint8Array };

export interface StorageResolver {
  locate(key: string): StorageLocation;
  /** A byte range of the loaded file (joblib's inline arrays). */
  locateRange?(offset: number, size: number): StorageLocation;
}

/** An ndarray node; joblib arrays carry a file range instead of inline bytes. */
type NdarrayNode = Extract<VmNode, { t: 'ndarray' }> & { file?: { o: number; n: number } };

/** Marker for values the loader could not turn into data (intercepted calls, plain allowlisted objects). */
export interface OpaqueObject {
  readonly __class__: string;
  readonly [k: string]: unknown;
}

/** A tensor whose memory is allocated in `finish`, with every other one, in one arena. */
interface PendingTensor {
  tensor: Tensor;
  name: string;
  numel: number;
  bytes: number;
  make: (buf: ArrayBuffer, byteOffset: number, length: number) => TensorData;
  /** Contiguous bytes to read from the file, or to copy once `ready` (null: a gather fills it). */
  from: { fileOffset: number } | { bytes: Uint8Array } | null;
}

/** Zero-copy claims on one arena slot before the rest are copied (bounds the overlap checks). */
const MAX_CLAIMS_PER_SLOT = 64;

/** Placeholder until `finish` gives a pending tensor its memory. */
const NO_BYTES = new ArrayBuffer(0);

interface GatherJob {
  tensor: Tensor;
  src: Uint8Array;
  /** Element offset of the view inside `src`. */
  offset: number;
  shape: number[];
  stride: number[];
  size: number;
}

const MAX_TENSOR_RANK = 64;

/**
 * Tensor rebuild functions whose result `Tensor` cannot represent (no quantization parameters, no
 * sparse layout, no subclass). Returning their parts as ordinary tensors would hand back data that
 * means something else (a COO tensor's indices as `sp.args.1.0`); dropping them would lose it. So
 * the load is refused, naming the tensor.
 */
const UNSUPPORTED_TENSOR_REBUILDS: Readonly<Record<string, string>> = Object.freeze({
  'torch._utils._rebuild_qtensor': 'quantized',
  'torch._utils._rebuild_sparse_tensor': 'sparse',
  'torch._utils._rebuild_sparse_csr_tensor': 'sparse (compressed)',
  'torch._utils._rebuild_nested_tensor': 'nested',
  'torch._utils._rebuild_wrapper_subclass': 'a tensor subclass',
  'torch._utils._rebuild_meta_tensor_no_storage': 'a meta tensor (no data)',
  'torch._utils._rebuild_device_tensor_from_numpy': 'a device tensor',
  'torch._utils._rebuild_mkldnn_tensor': 'an MKL-DNN tensor',
  'torch._tensor._rebuild_from_type': 'a tensor subclass',
  'torch._tensor._rebuild_from_type_v2': 'a tensor subclass',
});

/**
 * A structured (record) NumPy array: the pickle carries its field names but the VM keeps only the
 * element size (`V12`), so its bytes could not be read back. Refused rather than returned as bytes
 * nobody can interpret.
 */
function refuseStructured(n: NdarrayNode, name: string): void {
  const fields = n.dtype.fields;
  if (!fields || fields.length === 0) return;
  const label = name === '' ? 'the root array' : `array "${name}"`;
  throw new GuardError('UNSUPPORTED', `${label} has a structured (record) NumPy dtype with fields ${fields.slice(0, 8).join(', ')}${fields.length > 8 ? ', …' : ''}; safeLoad returns plain numeric arrays only and refuses rather than return the records as raw bytes. Save each field as its own array.`, { context: { step: 'tensor', tensor: name } });
}

function unsupportedTensor(name: string, kind: string, cls: string, detail: string): GuardError {
  const label = name === '' ? 'the root object' : `tensor "${name}"`;
  const fix = kind === 'quantized' ? 'dequantize it (`t.dequantize()`) before saving' : kind.startsWith('sparse') ? 'convert it with `t.to_dense()` before saving' : 'save it as a plain tensor';
  return new GuardError('UNSUPPORTED', `${label} is ${kind === 'quantized' || kind.startsWith('sparse') || kind === 'nested' ? `a ${kind} tensor` : kind}${detail ? ` (${detail})` : ''}, built by ${cls}; safeLoad returns dense tensors only and refuses rather than return it wrong or drop it. To load the file, ${fix}.`, { context: { step: 'tensor', tensor: name } });
}

/** Storage dtype and layout named in a rebuild call's arguments (`qint8`, `torch.sparse_coo`). */
function describeRebuildArgs(args: readonly VmNode[]): string {
  const parts: string[] = [];
  for (const a of args.slice(0, 2)) {
    if (a && typeof a === 'object' && a.t === 'storage' && a.dtype) parts.push(`torch.${a.dtype}`);
    else if (a && typeof a === 'object' && a.t === 'global') parts.push(a.name);
  }
  return parts.join(', ');
}

function nonNegInt(v: VmNode, what: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new GuardError('INVALID_MODEL', `${what} is not a non-negative integer: ${JSON.stringify(v)}`, { context: { step: 'tensor' } });
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i] as number;
    if (d !== 1 && stride[i] !== expect) return false;
    expect *= d;
  }
  return true;
}

/**
 * Turns the VM's graph into JS values and tensors. Tensor bytes come from the resolver (positional
 * reads straight into each tensor's final buffer); views are gathered bit-exact like `.contiguous()`.
 */
export class GraphBuilder {
  readonly tensors = new Map<string, Tensor>();
  private readonly memo = new Map<number, unknown>();
  private readonly jobs: ReadJob[] = [];
  private readonly gathers: GatherJob[] = [];
  /** Fix-ups that need the bytes read first (byte swaps of file-backed arrays). */
  private readonly posts: Array<() => void> = [];
  private readonly pending: PendingTensor[] = [];
  /** Byte ranges of arena slots already given to a tensor as its own memory. */
  private readonly claims = new Map<Uint8Array, Array<[number, number]>>();
  private totalBytes = 0;

  constructor(
    private readonly blob: Uint8Array,
    private readonly storages: StorageResolver | undefined,
    private readonly maxBytes: number,
    /** Settles when the reads filling `arena` locations are done. */
    private readonly ready?: Promise<void>,
  ) {}

  /** Converts a root node; `name` is the tensor-name prefix (`""` for the root). */
  convert(root: VmNode, name = ''): unknown {
    return this.node(root, name, 0);
  }

  /** Performs the reads and gathers queued by `convert`. */
  async finish(fd: number | undefined, path: string): Promise<void> {
    // Every tensor's memory at once: one arena, so one mapping (and huge pages) for the load.
    const copies: Array<{ dest: Uint8Array; src: Uint8Array }> = [];
    if (this.pending.length > 0) {
      const slots = allocArena(
        this.pending.map((p) => p.bytes),
        (i) => `tensor ${this.pending[i]?.name ?? ''}`,
      );
      this.pending.forEach((p, i) => {
        const slot = slots[i] as { buffer: ArrayBuffer; byteOffset: number };
        p.tensor.data = p.make(slot.buffer, slot.byteOffset, p.numel);
        const dest = new Uint8Array(slot.buffer, slot.byteOffset, p.bytes);
        if (p.from && 'fileOffset' in p.from) this.jobs.push({ fileOffset: p.from.fileOffset, length: p.bytes, dest, destOffset: 0 });
        else if (p.from) copies.push({ dest, src: p.from.bytes });
      });
    }
    if (this.jobs.length > 0) {
      if (fd === undefined) throw new GuardError('INTERNAL', 'file reads queued without a file', { context: { step: 'read' } });
      await runReads(fd, this.jobs, path);
    }
    if (this.ready) await this.ready;
    for (const c of copies) c.dest.set(c.src);
    for (const p of this.posts) p();
    for (const g of this.gathers) gather(g);
    this.jobs.length = 0;
    this.gathers.length = 0;
    this.posts.length = 0;
    this.pending.length = 0;
  }

  /** Whether [lo, hi) of an arena slot is free to become a tensor's own memory; claims it if so. */
  private claim(slot: Uint8Array, lo: number, hi: number): boolean {
    let list = this.claims.get(slot);
    if (!list) {
      list = [];
      this.claims.set(slot, list);
    }
    if (list.length >= MAX_CLAIMS_PER_SLOT) return false;
    for (const [a, b] of list) if (lo < b && a < hi) return false;
    list.push([lo, hi]);
    return true;
  }

  private charge(bytes: number): void {
    this.totalBytes += bytes;
    if (this.totalBytes > this.maxBytes) {
      throw new GuardError('LIMIT_EXCEEDED', `tensors need more than maxBytes (${this.maxBytes} bytes); raise the \`maxBytes\` option to load this file`, { context: { step: 'tensor' } });
    }
  }

  private blobBytes(ref: BlobRef): Uint8Array {
    if (ref.o < 0 || ref.n < 0 || ref.o + ref.n > this.blob.length) throw new GuardError('INTERNAL', 'VM blob reference out of range', { context: { step: 'graph' } });
    return this.blob.subarray(ref.o, ref.o + ref.n);
  }

  private addTensor(name: string, t: Tensor): void {
    if (!this.tensors.has(name)) this.tensors.set(name, t);
  }

  private node(n: VmNode, name: string, depth: number): unknown {
    if (n === null || typeof n !== 'object') return n;
    if (depth > 1000) throw new GuardError('LIMIT_EXCEEDED', 'object graph nested too deeply', { context: { step: 'graph' } });
    const d = depth + 1;
    const child = (k: string) => (name === '' ? k : `${name}.${k}`);
    switch (n.t) {
      case 'ref': {
        if (!this.memo.has(n.id)) throw new GuardError('INTERNAL', `VM graph references unknown id ${n.id}`, { context: { step: 'graph' } });
        const v = this.memo.get(n.id);
        if (isTensor(v)) this.addTensor(name, v);
        return v;
      }
      case 'int':
        return BigInt(n.v);
      case 'float':
        return typeof n.v === 'number' ? n.v : n.v === 'nan' ? NaN : n.v === 'inf' ? Infinity : n.v === '-inf' ? -Infinity : Number(n.v);
      case 'bytes': {
        const v = new Uint8Array(this.blobBytes(n.b));
        this.memo.set(n.id, v);
        return v;
      }
      case 'tuple':
      case 'list': {
        const arr: unknown[] = [];
        this.memo.set(n.id, arr);
        n.v.forEach((x, i) => arr.push(this.node(x, child(String(i)), d)));
        return arr;
      }
      case 'set': {
        const s = new Set<unknown>();
        this.memo.set(n.id, s);
        n.v.forEach((x, i) => s.add(this.node(x, child(String(i)), d)));
        return s;
      }
      case 'dict': {
        const stringKeys = n.k.every((k) => typeof k === 'string');
        if (stringKeys) {
          const o = Object.create(null) as Record<string, unknown>;
          this.memo.set(n.id, o);
          n.k.forEach((k, i) => {
            const key = k as string;
            // defineProperty: a key `__proto__` is an ordinary own property of a null-prototype object.
            Object.defineProperty(o, key, { value: this.node(n.v[i] as VmNode, child(key), d), enumerable: true, writable: true, configurable: true });
          });
          return o;
        }
        const m = new Map<unknown, unknown>();
        this.memo.set(n.id, m);
        n.k.forEach((k, i) => {
          const key = this.node(k, '', d);
          const label = typeof key === 'string' || typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean' ? String(key) : String(i);
          m.set(key, this.node(n.v[i] as VmNode, child(label), d));
        });
        return m;
      }
      case 'complex': {
        const v = { re: n.re, im: n.im };
        this.memo.set(n.id, v);
        return v;
      }
      case 'tensor': {
        const t = this.tensor(n, name);
        this.memo.set(n.id, t);
        this.addTensor(name, t);
        return t;
      }
      case 'storage': {
        this.storageById.set(n.id, n);
        const v = opaque('torch.storage', { key: n.key, dtype: n.dtype, numel: n.numel });
        this.memo.set(n.id, v);
        return v;
      }
      case 'ndarray': {
        const v = this.ndarray(n, name, d);
        this.memo.set(n.id, v);
        if (isTensor(v)) this.addTensor(name, v);
        return v;
      }
      case 'npscalar': {
        const v = this.npscalar(n.dtype, n.data);
        this.memo.set(n.id, v);
        return v;
      }
      case 'npdtype': {
        const v = `numpy.${fromNumpyDescr(numpyDescrFromSpec(n.dtype.spec, n.dtype.order))?.dtype ?? n.dtype.spec}`;
        this.memo.set(n.id, v);
        return v;
      }
      case 'dtype': {
        const v = `torch.${n.name}`;
        this.memo.set(n.id, v);
        return v;
      }
      case 'global': {
        const v = opaque(n.name, { global: true });
        this.memo.set(n.id, v);
        return v;
      }
      case 'obj': {
        const kind = Object.prototype.hasOwnProperty.call(UNSUPPORTED_TENSOR_REBUILDS, n.cls) ? UNSUPPORTED_TENSOR_REBUILDS[n.cls] : undefined;
        if (kind !== undefined) throw unsupportedTensor(name, kind, n.cls, describeRebuildArgs(n.args));
        // Registered before its children so cycles through it resolve.
        const v = opaque(n.cls, {});
        this.memo.set(n.id, v);
        setField(v, 'args', n.args.map((a, i) => this.node(a, child(String(i)), d)));
        if (n.kwargs !== undefined) setField(v, 'kwargs', this.node(n.kwargs, child('kwargs'), d));
        if (n.state !== undefined) setField(v, 'state', this.node(n.state, name, d));
        if (n.items !== undefined) setField(v, 'items', this.node(n.items, child('items'), d));
        return v;
      }
      case 'intercepted': {
        // Never-run call: its arguments and the state BUILD gave it are kept as data.
        const ext = n as typeof n & { args?: VmNode[]; state?: VmNode };
        // origin is `module.name(…)`: a tensor rebuild the VM does not model (sparse, nested…).
        const fn = n.origin.replace(/\(.*$/s, '');
        const kind = Object.prototype.hasOwnProperty.call(UNSUPPORTED_TENSOR_REBUILDS, fn) ? UNSUPPORTED_TENSOR_REBUILDS[fn] : undefined;
        if (kind !== undefined) throw unsupportedTensor(name, kind, fn, describeRebuildArgs(ext.args ?? []));
        const v = opaque('intercepted', { origin: n.origin });
        this.memo.set(n.id, v);
        if (ext.args) setField(v, 'args', ext.args.map((a, i) => this.node(a, child(`args.${i}`), d)));
        if (ext.state !== undefined) setField(v, 'state', this.node(ext.state, name, d));
        return v;
      }
      case 'repr': {
        const v = opaque('repr', { repr: n.v });
        this.memo.set(n.id, v);
        return v;
      }
      default:
        throw new GuardError('INTERNAL', `unknown VM node ${JSON.stringify((n as { t: unknown }).t)}`, { context: { step: 'graph' } });
    }
  }

  private storageNode(n: VmNode): VmStorageNode {
    if (n && typeof n === 'object' && n.t === 'storage') return n;
    throw new GuardError('INVALID_MODEL', 'a tensor whose storage is not a PyTorch storage reference', { context: { step: 'tensor' } });
  }

  private tensor(n: VmTensorNode, name: string): Tensor {
    let sn: VmStorageNode;
    if (n.storage && typeof n.storage === 'object' && n.storage.t === 'ref') {
      const prior = this.memo.get(n.storage.id) as { key?: unknown } | undefined;
      const found = this.storageById.get(n.storage.id);
      if (!found) throw new GuardError('INVALID_MODEL', `tensor storage reference ${String(prior?.key)} is not a storage`, { context: { step: 'tensor' } });
      sn = found;
    } else {
      sn = this.storageNode(n.storage);
      this.storageById.set(sn.id, sn);
      this.memo.set(sn.id, opaque('torch.storage', { key: sn.key, dtype: sn.dtype, numel: sn.numel }));
    }
    const dtype = n.dtype ?? sn.dtype;
    const info = dtype ? dtypeInfo(dtype) : undefined;
    if (!dtype || !info) {
      throw new GuardError('UNSUPPORTED', `tensor "${name}" has dtype ${String(dtype)}, which safeLoad does not return${dtype && /^q/.test(dtype) ? ' (a quantized storage; dequantize before saving)' : ''}`, { context: { step: 'tensor', tensor: name } });
    }
    if (n.shape.length > MAX_TENSOR_RANK || n.stride.length !== n.shape.length) throw new GuardError('INVALID_MODEL', 'tensor shape and stride disagree', { context: { step: 'tensor' } });
    const shape = n.shape.map((x) => nonNegInt(x, 'tensor size'));
    const stride = n.stride.map((x) => nonNegInt(x, 'tensor stride'));
    let offset = nonNegInt(n.offset, 'storage offset');
    let numel = 1;
    for (const s of shape) numel *= s;
    if (!Number.isSafeInteger(numel * info.size)) throw new GuardError('INVALID_MODEL', 'tensor size overflows', { context: { step: 'tensor' } });
    const bytes = numel * info.size;
    this.charge(bytes);
    checkTensorBytes(bytes, `tensor ${name}`);
    // Memory comes in finish(), from one arena for the whole load (or an arena slot, below).
    const tensor: Tensor = brandTensor({ dtype, shape, data: info.make(NO_BYTES, 0, 0) });
    const pend: PendingTensor = { tensor, name, numel, bytes, make: info.make, from: null };
    if (numel === 0) {
      this.pending.push(pend);
      return tensor;
    }
    let extent = offset + 1;
    shape.forEach((s, i) => (extent += (s - 1) * (stride[i] as number)));
    // Legacy storage views: (view_key, element offset, size) into the root storage.
    let storageElems = sn.numel;
    const view = sn.view;
    if (view && typeof view === 'object' && view.t === 'tuple' && view.v.length >= 3) {
      const vo = nonNegInt(view.v[1] as VmNode, 'storage view offset');
      const vs = nonNegInt(view.v[2] as VmNode, 'storage view size');
      if (vo + vs > sn.numel) throw new GuardError('INVALID_MODEL', 'storage view runs past its root storage', { context: { step: 'tensor' } });
      if (extent > vs) throw new GuardError('INVALID_MODEL', 'tensor runs past its storage view', { context: { step: 'tensor' } });
      offset += vo;
      extent += vo;
      storageElems = sn.numel;
    }
    const storageItem = sn.dtype ? (dtypeInfo(sn.dtype)?.size ?? 1) : 1;
    const storageBytes = sn.numel >= 0 ? sn.numel * storageItem : Infinity;
    if (extent * info.size > storageBytes || storageElems < 0) {
      throw new GuardError('INVALID_MODEL', `tensor (offset ${offset}, shape [${shape}], stride [${stride}]) runs past its storage ${sn.key} of ${sn.numel} elements`, { context: { step: 'tensor', member: sn.key } });
    }
    if (!this.storages) throw new GuardError('INVALID_MODEL', 'tensor storages referenced where the format has none', { context: { step: 'tensor' } });
    const loc = this.storages.locate(sn.key);
    const locSize = loc.kind === 'file' ? loc.size : loc.bytes.length;
    if (extent * info.size > locSize) throw new GuardError('INVALID_MODEL', `storage ${sn.key} holds ${locSize} bytes, the tensor needs ${extent * info.size}`, { context: { step: 'tensor', member: sn.key } });
    if (isContiguous(shape, stride)) {
      const lo = offset * info.size;
      if (loc.kind === 'arena' && this.claim(loc.bytes, lo, lo + bytes)) {
        // The storage's bytes are already on their way into the arena: they are the tensor's.
        tensor.data = info.make(loc.bytes.buffer as ArrayBuffer, loc.bytes.byteOffset + lo, numel);
        return tensor;
      }
      pend.from = loc.kind === 'file' ? { fileOffset: loc.offset + lo } : { bytes: loc.bytes.subarray(lo, lo + bytes) };
      this.pending.push(pend);
      return tensor;
    }
    this.pending.push(pend);
    // A view: bring the span it touches into memory, gather after the reads.
    const lo = offset * info.size;
    const hi = extent * info.size;
    let src: Uint8Array;
    if (loc.kind === 'file') {
      this.charge(hi - lo);
      src = new Uint8Array(allocTensor(hi - lo, `storage ${sn.key}`));
      this.jobs.push({ fileOffset: loc.offset + lo, length: hi - lo, dest: src, destOffset: 0 });
    } else {
      src = loc.bytes.subarray(lo, hi);
    }
    this.gathers.push({ tensor, src, offset: 0, shape, stride, size: info.size });
    return tensor;
  }

  private readonly storageById = new Map<number, VmStorageNode>();

  private ndarray(n: NdarrayNode, name: string, depth: number): unknown {
    const shape = n.shape.map((x) => nonNegInt(x, 'array dimension'));
    refuseStructured(n, name);
    if (n.file) return this.fileArray(n, n.file, shape);
    if (!n.data) {
      return opaque('numpy.ndarray', { dtype: n.dtype.spec, shape, objects: n.objects === undefined ? null : this.node(n.objects, name, depth) });
    }
    const descr = numpyDescrFromSpec(n.dtype.spec, n.dtype.order);
    const dt = n.dtype.fields ? undefined : fromNumpyDescr(descr);
    const raw = this.blobBytes(n.data);
    if (!dt) return opaque('numpy.ndarray', { dtype: descr, shape, bytes: new Uint8Array(raw) });
    const info = dtypeInfo(dt.dtype);
    if (!info) return opaque('numpy.ndarray', { dtype: descr, shape, bytes: new Uint8Array(raw) });
    let numel = 1;
    for (const s of shape) numel *= s;
    if (numel * info.size !== raw.length) throw new GuardError('INVALID_MODEL', `array of shape [${shape}] ${descr} holds ${raw.length} bytes`, { context: { step: 'tensor' } });
    this.charge(raw.length);
    const buf = allocTensor(raw.length);
    const dest = new Uint8Array(buf);
    dest.set(raw);
    if (dt.bigEndian) byteswap(dest, dt.dtype.startsWith('complex') ? info.size / 2 : info.size);
    const tensor: Tensor = brandTensor({ dtype: dt.dtype, shape, data: info.make(buf, 0, numel) });
    if (n.fortran && shape.length > 1) {
      // Fortran order: element strides are reversed cumulative products.
      const stride: number[] = [];
      let acc = 1;
      for (const s of shape) {
        stride.push(acc);
        acc *= s;
      }
      const out = allocTensor(raw.length);
      const t2: Tensor = brandTensor({ dtype: dt.dtype, shape, data: info.make(out, 0, numel) });
      gather({ tensor: t2, src: dest, offset: 0, shape, stride, size: info.size });
      return t2;
    }
    return tensor;
  }

  /** A joblib inline array: read from the file straight into its buffer (F order gathered after). */
  private fileArray(n: NdarrayNode, range: { o: number; n: number }, shape: number[]): unknown {
    const descr = numpyDescrFromSpec(n.dtype.spec, n.dtype.order);
    const dt = n.dtype.fields ? undefined : fromNumpyDescr(descr);
    const info = dt ? dtypeInfo(dt.dtype) : undefined;
    if (!this.storages?.locateRange) throw new GuardError('INVALID_MODEL', 'an inline array where the format has none', { context: { step: 'tensor' } });
    if (!dt || !info) {
      // Strings, records, datetimes: kept as raw bytes with their NumPy dtype.
      this.charge(range.n);
      const loc = this.storages.locateRange(range.o, range.n);
      const bytes = new Uint8Array(allocTensor(range.n, 'joblib array'));
      if (loc.kind === 'file') this.jobs.push({ fileOffset: loc.offset, length: range.n, dest: bytes, destOffset: 0 });
      else bytes.set(loc.bytes.subarray(0, range.n));
      return opaque('numpy.ndarray', { dtype: descr, shape, bytes });
    }
    let numel = 1;
    for (const s of shape) numel *= s;
    const bytes = numel * info.size;
    if (bytes !== range.n) throw new GuardError('INVALID_MODEL', `joblib array of shape [${shape}] ${descr} spans ${range.n} bytes`, { context: { step: 'tensor' } });
    this.charge(bytes);
    const loc = this.storages.locateRange(range.o, range.n);
    const fortran = n.fortran && shape.length > 1;
    const buf = allocTensor(bytes);
    let raw = new Uint8Array(buf);
    const tensor: Tensor = brandTensor({ dtype: dt.dtype, shape, data: info.make(buf, 0, numel) });
    if (fortran) {
      this.charge(bytes);
      raw = new Uint8Array(allocTensor(bytes, 'joblib array'));
    }
    if (loc.kind === 'file') this.jobs.push({ fileOffset: loc.offset, length: bytes, dest: raw, destOffset: 0 });
    else raw.set(loc.bytes.subarray(0, bytes));
    if (dt.bigEndian) {
      const unit = dt.dtype.startsWith('complex') ? info.size / 2 : info.size;
      this.posts.push(() => byteswap(raw, unit));
    }
    if (fortran) {
      const stride: number[] = [];
      let acc = 1;
      for (const s of shape) {
        stride.push(acc);
        acc *= s;
      }
      this.gathers.push({ tensor, src: raw, offset: 0, shape, stride, size: info.size });
    }
    return tensor;
  }

  private npscalar(dtype: NpDtypeSpec, data: BlobRef | null): unknown {
    if (!data) return null;
    const raw = this.blobBytes(data);
    const dt = fromNumpyDescr(numpyDescrFromSpec(dtype.spec, dtype.order));
    if (!dt) return new Uint8Array(raw);
    const b = new Uint8Array(raw);
    const info = dtypeInfo(dt.dtype);
    if (!info || b.length !== info.size) return b;
    if (dt.bigEndian) byteswap(b, dt.dtype.startsWith('complex') ? info.size / 2 : info.size);
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    switch (dt.dtype) {
      case 'float32':
        return view.getFloat32(0, true);
      case 'float64':
        return view.getFloat64(0, true);
      case 'int8':
        return view.getInt8(0);
      case 'uint8':
        return view.getUint8(0);
      case 'int16':
        return view.getInt16(0, true);
      case 'uint16':
        return view.getUint16(0, true);
      case 'int32':
        return view.getInt32(0, true);
      case 'uint32':
        return view.getUint32(0, true);
      case 'int64':
        return view.getBigInt64(0, true);
      case 'uint64':
        return view.getBigUint64(0, true);
      case 'bool':
        return b[0] !== 0;
      default:
        return b;
    }
  }
}

export function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && tensorBrand.has(v);
}

const tensorBrand = new WeakSet<object>();

function opaque(cls: string, fields: Record<string, unknown>): OpaqueObject {
  const o = Object.create(null) as Record<string, unknown>;
  Object.defineProperty(o, '__class__', { value: cls, enumerable: true });
  for (const [k, v] of Object.entries(fields)) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true });
  return o as OpaqueObject;
}

function setField(o: OpaqueObject, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true });
}

/** Registers a tensor object so `isTensor` recognises it. */
export function brandTensor<T extends Tensor>(t: T): T {
  tensorBrand.add(t);
  return t;
}

/** Strided copy of `g.src` (element offset, shape, stride) into the tensor's contiguous buffer. */
function gather(g: GatherJob): void {
  const dst = new Uint8Array(g.tensor.data.buffer, g.tensor.data.byteOffset, g.tensor.data.byteLength);
  const { shape, stride, size, src } = g;
  const rank = shape.length;
  if (rank === 0) {
    dst.set(src.subarray(g.offset * size, g.offset * size + size));
    return;
  }
  const inner = shape[rank - 1] as number;
  const innerStride = stride[rank - 1] as number;
  const idx = new Array<number>(rank - 1).fill(0);
  let out = 0;
  let base = g.offset;
  const total = dst.length / size;
  if (total === 0) return;
  for (;;) {
    if (innerStride === 1) {
      dst.set(src.subarray(base * size, (base + inner) * size), out);
      out += inner * size;
    } else {
      for (let i = 0; i < inner; i++) {
        const s = (base + i * innerStride) * size;
        for (let b = 0; b < size; b++) dst[out++] = src[s + b] as number;
      }
    }
    let k = rank - 2;
    while (k >= 0) {
      idx[k] = (idx[k] as number) + 1;
      base += stride[k] as number;
      if ((idx[k] as number) < (shape[k] as number)) break;
      base -= (shape[k] as number) * (stride[k] as number);
      idx[k] = 0;
      k--;
    }
    if (k < 0) return;
  }
}
