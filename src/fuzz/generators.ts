/**
 * Structure-aware input generators for the fuzz targets (fast-check arbitraries), and byte
 * mutation of seed files. A structure-aware input gets past a parser's magic and length checks
 * and exercises the code behind them; mutation of real fixtures covers what the builders do not.
 */
import fc from 'fast-check';
import { deflateRawSync, gzipSync, deflateSync } from 'node:zlib';
import { crc32 } from '../formats/crc32.js';

type Bytes = Uint8Array;
const concat = (parts: readonly Bytes[]): Buffer => Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));

/** Integers parsers trip over: zero, sign and width boundaries. */
const INTERESTING = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 2 ** 32, 2 ** 53 - 1];
export const interestingInt = fc.oneof(fc.constantFrom(...INTERESTING), fc.nat({ max: 4096 }), fc.nat());

// ---- mutation ------------------------------------------------------------------------------

type Mutation =
  | { k: 'set'; at: number; v: number }
  | { k: 'flip'; at: number; bit: number }
  | { k: 'int'; at: number; v: number; width: 2 | 4 | 8 }
  | { k: 'cut'; at: number }
  | { k: 'del'; at: number; n: number }
  | { k: 'dup'; at: number; n: number; to: number }
  | { k: 'ins'; at: number; bytes: Bytes };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('set' as const), at: fc.nat(), v: fc.nat({ max: 255 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('int' as const), at: fc.nat(), v: interestingInt, width: fc.constantFrom(2 as const, 4 as const, 8 as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('cut' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('del' as const), at: fc.nat(), n: fc.nat({ max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('dup' as const), at: fc.nat(), n: fc.nat({ max: 64 }), to: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('ins' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 32 }) }) },
);

/** Applies mutations to a copy of `seed`; offsets are taken modulo the current length. */
export function mutate(seed: Bytes, muts: readonly Mutation[]): Buffer {
  let b = Buffer.from(seed);
  for (const m of muts) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    switch (m.k) {
      case 'set':
        b[at] = m.v;
        break;
      case 'flip':
        b[at] = (b[at] as number) ^ (1 << m.bit);
        break;
      case 'int': {
        if (at + m.width > b.length) break;
        if (m.width === 2) b.writeUInt16LE(m.v & 0xffff, at);
        else if (m.width === 4) b.writeUInt32LE(m.v >>> 0, at);
        else b.writeBigUInt64LE(BigInt(m.v), at);
        break;
      }
      case 'cut':
        b = b.subarray(0, at);
        break;
      case 'del':
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + m.n))]);
        break;
      case 'dup': {
        const piece = Buffer.from(b.subarray(at, at + m.n));
        const to = m.to % b.length;
        b = Buffer.concat([b.subarray(0, to), piece, b.subarray(to)]);
        break;
      }
      case 'ins':
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
        break;
    }
  }
  return b;
}

/** Seeds with 1–8 mutations each (and now and then the seed itself). */
export function mutated(seeds: readonly Bytes[]): fc.Arbitrary<Buffer> {
  if (seeds.length === 0) return fc.uint8Array({ maxLength: 256 }).map((u) => Buffer.from(u));
  return fc.tuple(fc.nat({ max: seeds.length - 1 }), fc.array(mutation, { minLength: 0, maxLength: 8 })).map(([i, ms]) => mutate(seeds[i] as Bytes, ms));
}

// ---- containers ----------------------------------------------------------------------------

export interface ZipMember {
  name: string;
  data: Bytes;
  deflate: boolean;
  /** Lies written into the headers: declared sizes and CRC that disagree with the data. */
  lie?: { size?: number; csize?: number; crc?: number; offset?: number };
}

/** A zip archive from members (local headers, central directory, end record), lies included. */
export function buildZip(members: readonly ZipMember[]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const name = Buffer.from(m.name, 'utf8');
    const body = m.deflate ? deflateRawSync(m.data) : Buffer.from(m.data);
    const crc = m.lie?.crc ?? crc32(m.data);
    const size = m.lie?.size ?? m.data.length;
    const csize = m.lie?.csize ?? body.length;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(0x800, 6);
    lh.writeUInt16LE(m.deflate ? 8 : 0, 8);
    lh.writeUInt32LE(crc >>> 0, 14);
    lh.writeUInt32LE(csize >>> 0, 18);
    lh.writeUInt32LE(size >>> 0, 22);
    lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0x800, 8);
    ch.writeUInt16LE(m.deflate ? 8 : 0, 10);
    ch.writeUInt32LE(crc >>> 0, 16);
    ch.writeUInt32LE(csize >>> 0, 20);
    ch.writeUInt32LE(size >>> 0, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE((m.lie?.offset ?? offset) >>> 0, 42);
    locals.push(lh, name, body);
    central.push(ch, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length & 0xffff, 8);
  end.writeUInt16LE(members.length & 0xffff, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const lie = fc.option(
  fc.record({ size: fc.option(interestingInt, { nil: undefined }), csize: fc.option(interestingInt, { nil: undefined }), crc: fc.option(fc.nat(), { nil: undefined }), offset: fc.option(interestingInt, { nil: undefined }) }, { requiredKeys: [] }),
  { nil: undefined, freq: 3 },
);

function zipMember(name: fc.Arbitrary<string>, data: fc.Arbitrary<Bytes>): fc.Arbitrary<ZipMember> {
  return fc.record({ name, data, deflate: fc.boolean(), lie }).map((m) => {
    const out: ZipMember = { name: m.name, data: m.data, deflate: m.deflate };
    if (m.lie) out.lie = m.lie;
    return out;
  });
}

const memberName = fc.oneof(fc.constantFrom('archive/data.pkl', 'archive/data/0', 'archive/version', 'a.npy', 'config.json', 'metadata.json', 'model.weights.h5', '../evil', '/abs', 'dir/', 'x'.repeat(300)), fc.string({ maxLength: 40 }));

/** Zip archives with arbitrary members and lying headers. */
export const zipArchive: fc.Arbitrary<Buffer> = fc.array(zipMember(memberName, fc.uint8Array({ maxLength: 512 })), { maxLength: 6 }).map(buildZip);

// ---- NumPy ---------------------------------------------------------------------------------

const npyDescr = fc.oneof(fc.constantFrom('<f4', '<f8', '>f4', '|u1', '|b1', '<i8', '<c8', '<c16', '|O', '<U8', 'V8', '<f2', '<M8[s]'), fc.string({ maxLength: 12 }));
const npyShape = fc.array(fc.oneof(fc.nat({ max: 16 }), interestingInt, fc.integer({ min: -5, max: -1 })), { maxLength: 4 });

/** A .npy file: magic, version, header dict (built or garbage), data. */
export const npyFile: fc.Arbitrary<Buffer> = fc
  .record({
    major: fc.constantFrom(1, 2, 3, 0, 9),
    descr: npyDescr,
    fortran: fc.constantFrom('False', 'True', '0', 'None'),
    shape: npyShape,
    rawHeader: fc.option(fc.string({ maxLength: 80 }), { nil: undefined, freq: 6 }),
    lenLie: fc.option(interestingInt, { nil: undefined, freq: 5 }),
    data: fc.uint8Array({ maxLength: 256 }),
  })
  .map((r) => {
    const shape = r.shape.length === 1 ? `(${r.shape[0]},)` : `(${r.shape.join(', ')})`;
    let header = r.rawHeader ?? `{'descr': '${r.descr}', 'fortran_order': ${r.fortran}, 'shape': ${shape}, }`;
    header += ' '.repeat((64 - ((12 + header.length + 1) % 64)) % 64) + '\n';
    const h = Buffer.from(header, 'latin1');
    const wide = r.major >= 2;
    const pre = Buffer.alloc(wide ? 12 : 10);
    Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, r.major, 0]).copy(pre);
    if (wide) pre.writeUInt32LE((r.lenLie ?? h.length) >>> 0, 8);
    else pre.writeUInt16LE((r.lenLie ?? h.length) & 0xffff, 8);
    return concat([pre, h, r.data]);
  });

/** .npz: a zip of .npy members. */
export const npzFile: fc.Arbitrary<Buffer> = fc.array(zipMember(fc.oneof(fc.constantFrom('a.npy', 'b.npy', 'w.npy'), fc.string({ maxLength: 12 })), npyFile), { minLength: 1, maxLength: 4 }).map(buildZip);

// ---- safetensors ---------------------------------------------------------------------------

const stDtype = fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I8', 'U8', 'I64', 'BOOL', 'F8_E4M3', 'C64', 'Q4'), fc.string({ maxLength: 6 }));

/** safetensors: header length, JSON header of entries (consistent or not), data. */
export const safetensorsFile: fc.Arbitrary<Buffer> = fc
  .record({
    entries: fc.array(fc.record({ name: fc.string({ maxLength: 12 }), dtype: stDtype, shape: npyShape, begin: fc.oneof(fc.nat({ max: 64 }), interestingInt), len: fc.oneof(fc.nat({ max: 64 }), interestingInt) }), { maxLength: 5 }),
    metadata: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 8 }), fc.integer())), { nil: undefined }),
    lenLie: fc.option(interestingInt, { nil: undefined, freq: 5 }),
    raw: fc.option(fc.string({ maxLength: 60 }), { nil: undefined, freq: 8 }),
    data: fc.uint8Array({ maxLength: 256 }),
  })
  .map((r) => {
    const header: Record<string, unknown> = {};
    if (r.metadata) header.__metadata__ = r.metadata;
    for (const e of r.entries) header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [e.begin, e.begin + e.len] };
    const json = Buffer.from(r.raw ?? JSON.stringify(header), 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(r.lenLie ?? json.length));
    return concat([len, json, r.data]);
  });

// ---- GGUF ----------------------------------------------------------------------------------

/** GGUF headers: version, counts (often lying), typed metadata values, tensor infos. */
export const ggufFile: fc.Arbitrary<Buffer> = fc
  .record({
    version: fc.constantFrom(1, 2, 3, 4, 0xffffffff),
    tensorCount: fc.oneof(fc.nat({ max: 4 }), interestingInt),
    kvCount: fc.oneof(fc.nat({ max: 4 }), interestingInt),
    kvs: fc.array(fc.record({ key: fc.string({ maxLength: 16 }), type: fc.nat({ max: 14 }), payload: fc.uint8Array({ maxLength: 24 }), strLen: interestingInt }), { maxLength: 4 }),
    tail: fc.uint8Array({ maxLength: 128 }),
  })
  .map((r) => {
    const parts: Buffer[] = [Buffer.from('GGUF')];
    const u32 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v >>> 0);
      return b;
    };
    const u64 = (v: number) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(v));
      return b;
    };
    const str = (s: string) => {
      const b = Buffer.from(s, 'utf8');
      return Buffer.concat([u64(b.length), b]);
    };
    parts.push(u32(r.version), u64(r.tensorCount), u64(r.kvCount));
    for (const kv of r.kvs) {
      parts.push(str(kv.key), u32(kv.type));
      // type 8 is a string (length-prefixed), 9 an array (element type, count): both get a length that may lie.
      if (kv.type === 8 || kv.type === 9) parts.push(u64(kv.strLen));
      parts.push(Buffer.from(kv.payload));
    }
    parts.push(Buffer.from(r.tail));
    return Buffer.concat(parts);
  });

// ---- tar -----------------------------------------------------------------------------------

/** ustar archives with octal fields that may lie or be garbage. */
export const tarFile: fc.Arbitrary<Buffer> = fc
  .array(fc.record({ name: fc.oneof(memberName, fc.constantFrom('model.pkl', 'data.pkl', 'x.npy')), data: fc.uint8Array({ maxLength: 700 }), size: fc.option(fc.oneof(interestingInt, fc.constant(-1)), { nil: undefined }), type: fc.constantFrom('0', '5', '2', 'L', 'x', 'g', '\0') }), { maxLength: 4 })
  .map((members) => {
    const blocks: Buffer[] = [];
    for (const m of members) {
      const h = Buffer.alloc(512);
      h.write(m.name.slice(0, 100), 0, 'utf8');
      h.write('0000644\0', 100);
      const size = m.size ?? m.data.length;
      h.write(size < 0 ? 'zzzzzzzzzzz\0' : `${size.toString(8).padStart(11, '0').slice(-11)}\0`, 124);
      h.write(m.type, 156);
      h.write('ustar\0' + '00', 257);
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const byte of h) sum += byte;
      h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
      blocks.push(h, Buffer.from(m.data), Buffer.alloc((512 - (m.data.length % 512)) % 512));
    }
    blocks.push(Buffer.alloc(1024));
    return Buffer.concat(blocks);
  });

// ---- pickle --------------------------------------------------------------------------------

const GLOBALS = ['torch._utils\n_rebuild_tensor_v2', 'collections\nOrderedDict', 'builtins\nprint', 'os\nsystem', 'numpy.core.multiarray\n_reconstruct', '__builtin__\nset', 'x\ny'];

/** One pickle opcode with an argument, lengths sometimes lying. */
const pickleOp: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constantFrom(...[0x28, 0x29, 0x5d, 0x7d, 0x4e, 0x88, 0x89, 0x52, 0x62, 0x74, 0x6c, 0x64, 0x73, 0x75, 0x61, 0x65, 0x94, 0x85, 0x86, 0x87, 0x30, 0x32, 0x31, 0x81, 0x92, 0x93, 0x90, 0x8f, 0x91, 0x2e].map((o) => Buffer.from([o]))),
  fc.constantFrom(...GLOBALS).map((g) => Buffer.concat([Buffer.from('c'), Buffer.from(`${g}\n`)])),
  fc.string({ maxLength: 20 }).map((s) => {
    const b = Buffer.from(s, 'utf8');
    return Buffer.concat([Buffer.from([0x8c, b.length & 0xff]), b]);
  }),
  fc.tuple(interestingInt, fc.uint8Array({ maxLength: 16 })).map(([n, b]) => {
    const h = Buffer.alloc(5);
    h[0] = 0x58; // BINUNICODE with a length that may lie
    h.writeUInt32LE(n >>> 0, 1);
    return Buffer.concat([h, Buffer.from(b)]);
  }),
  fc.tuple(fc.constantFrom(0x4b, 0x68, 0x71), fc.nat({ max: 255 })).map(([op, v]) => Buffer.from([op, v])),
  fc.tuple(fc.constantFrom(0x4a, 0x72, 0x6a), fc.nat()).map(([op, v]) => {
    const b = Buffer.alloc(5);
    b[0] = op;
    b.writeUInt32LE(v >>> 0, 1);
    return b;
  }),
  fc.tuple(fc.constantFrom(0x95, 0x8e, 0x96), interestingInt).map(([op, v]) => {
    const b = Buffer.alloc(9);
    b[0] = op; // FRAME, BINBYTES8, BYTEARRAY8 with 64-bit lengths
    b.writeBigUInt64LE(BigInt(v), 1);
    return b;
  }),
  fc.tuple(interestingInt).map(([v]) => {
    const b = Buffer.alloc(5);
    b[0] = 0x8b; // LONG4
    b.writeUInt32LE(v >>> 0, 1);
    return b;
  }),
);

/** Pickle streams: a PROTO, opcodes, usually a STOP. */
export const pickleStream: fc.Arbitrary<Buffer> = fc.record({ proto: fc.nat({ max: 6 }), ops: fc.array(pickleOp, { maxLength: 40 }), stop: fc.boolean() }).map((r) => Buffer.concat([Buffer.from([0x80, r.proto]), ...r.ops, r.stop ? Buffer.from('.') : Buffer.alloc(0)]));

// ---- JSON configs, Keras, templates --------------------------------------------------------

const layerName = fc.constantFrom('Dense', 'Lambda', 'Conv2D', 'InputLayer', 'TFOpLambda', 'Functional', 'Sequential', 'Custom>Thing', 'keras.layers.Dense');
const jsonLeaf = fc.oneof(fc.string({ maxLength: 12 }), fc.integer(), fc.boolean(), fc.constant(null), fc.double({ noNaN: true }));
const kerasLayer = fc.letrec((tie) => ({
  layer: fc.record(
    {
      class_name: layerName,
      module: fc.oneof(fc.constantFrom('keras.layers', 'builtins', '__main__', 'os'), fc.string({ maxLength: 10 })),
      registered_name: fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
      config: fc.record({ name: fc.string({ maxLength: 8 }), function: fc.option(fc.oneof(fc.string({ maxLength: 40 }), fc.array(jsonLeaf, { maxLength: 3 })), { nil: undefined }), layers: fc.option(fc.array(tie('layer'), { maxLength: 3 }), { nil: undefined }), extra: jsonLeaf }, { requiredKeys: ['name'] }),
    },
    { requiredKeys: ['class_name', 'config'] },
  ),
}));

/** A Keras model config (JSON text), valid or a little broken. */
export const kerasConfigText: fc.Arbitrary<string> = fc.tuple(fc.record({ class_name: layerName, config: fc.record({ name: fc.string({ maxLength: 8 }), layers: fc.array(kerasLayer.layer, { maxLength: 4 }) }) }), fc.option(fc.nat(), { nil: undefined, freq: 4 })).map(([cfg, cut]) => {
  const s = JSON.stringify(cfg);
  return cut === undefined ? s : s.slice(0, cut % (s.length + 1));
});

/** A .keras archive (config.json + metadata.json) around a generated config. */
export const kerasArchive: fc.Arbitrary<Buffer> = fc.tuple(kerasConfigText, fc.boolean()).map(([cfg, deflate]) =>
  buildZip([
    { name: 'metadata.json', data: Buffer.from('{"keras_version": "3.3.3"}'), deflate },
    { name: 'config.json', data: Buffer.from(cfg), deflate },
  ]),
);

const jinjaPiece = fc.oneof(
  fc.constantFrom('{{ messages }}', '{% for m in messages %}', '{% endfor %}', '{% if x %}', '{% endif %}', "{{ m['content'] }}", '{{ x.__class__ }}', '{{ x.__init__.__globals__ }}', "{{ ''.__class__.__mro__[1].__subclasses__() }}", '{{ cycler.__init__ }}', '{% set x = namespace() %}', '{{ x|attr("__class__") }}', '{{ range(99999999) }}', '{% raw %}', '{% endraw %}', '{#', '#}', '{{', '}}', '{%', '%}', '{{ "a" ~ "b" }}', '{% macro f() %}{% endmacro %}', '{{ self }}', '{{ lipsum }}', '{% include "x" %}'),
  fc.string({ maxLength: 10 }),
);

/** Jinja chat templates from fragments (balanced or not). */
export const chatTemplate: fc.Arbitrary<string> = fc.array(jinjaPiece, { maxLength: 24 }).map((a) => a.join(''));

/** tokenizer_config.json around a generated template. */
export const tokenizerConfig: fc.Arbitrary<Buffer> = fc.tuple(chatTemplate, fc.boolean()).map(([t, list]) => Buffer.from(JSON.stringify(list ? { chat_template: [{ name: 'default', template: t }] } : { chat_template: t, tokenizer_class: 'X' })));

// ---- compressed streams --------------------------------------------------------------------

/** gzip and zlib streams of generated content, sometimes with header or trailer damage. */
export const compressedStream: fc.Arbitrary<Buffer> = fc.record({ inner: fc.oneof(pickleStream, npyFile, fc.uint8Array({ maxLength: 512 })), gzip: fc.boolean(), muts: fc.array(mutation, { maxLength: 3 }) }).map((r) => mutate(r.gzip ? gzipSync(r.inner) : deflateSync(r.inner), r.muts));

/** ONNX-like protobuf bytes: field tags with varints and length-delimited parts that may lie. */
export const protobufBytes: fc.Arbitrary<Buffer> = fc
  .array(fc.record({ field: fc.nat({ max: 20 }), wire: fc.constantFrom(0, 1, 2, 5, 3, 7), len: fc.oneof(fc.nat({ max: 32 }), interestingInt), payload: fc.uint8Array({ maxLength: 32 }) }), { maxLength: 12 })
  .map((fields) => {
    const out: number[] = [];
    const varint = (v: number) => {
      let x = BigInt(v);
      do {
        let byte = Number(x & 0x7fn);
        x >>= 7n;
        if (x > 0n) byte |= 0x80;
        out.push(byte);
      } while (x > 0n);
    };
    for (const f of fields) {
      varint((f.field << 3) | f.wire);
      if (f.wire === 0) varint(f.len);
      else if (f.wire === 2) {
        varint(f.len);
        out.push(...f.payload);
      } else out.push(...f.payload.subarray(0, f.wire === 1 ? 8 : 4));
    }
    return Buffer.from(out);
  });
