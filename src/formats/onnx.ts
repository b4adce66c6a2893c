import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { FormatContext, FormatHandler } from './types.js';

/**
 * ONNX models, decoded with protobufjs against the published onnx.proto schema (the subset in
 * onnx.proto next to this file). Judged: external-data paths that leave the model folder, operator
 * domains outside the standard ones, and tensor sizes that disagree with the bytes behind them.
 */

/** Largest model decoded in memory (bigger models keep weights in external data files). */
export const ONNX_MAX_PROTO_BYTES = 512 * 1024 * 1024;
/** Graph nesting (If/Loop/Scan bodies) walked. */
export const ONNX_MAX_GRAPH_DEPTH = 64;
/** Nodes plus tensors visited. */
export const ONNX_MAX_ITEMS = 5_000_000;

export const ONNX_STANDARD_DOMAINS: ReadonlySet<string> = new Set(['', 'ai.onnx', 'ai.onnx.ml', 'ai.onnx.training', 'ai.onnx.preview.training']);
/** ONNX Runtime's own contrib/internal domains: not standard, but not third-party code either. */
export const ONNX_RUNTIME_DOMAINS: ReadonlySet<string> = new Set(['com.microsoft', 'com.microsoft.nchwc', 'com.microsoft.experimental', 'com.microsoft.dml', 'com.ms.internal.nhwc', 'org.pytorch.aten']);
const PYTHON_OPS = new Set(['PyOp', 'PythonOp', 'PythonOpGrad', 'PyFunc']);

/** Bits per element for TensorProto.DataType. */
const DTYPE_BITS: Record<number, number> = { 1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 4, 25: 8 };

interface Long {
  low: number;
  high: number;
  unsigned?: boolean;
  toString(): string;
}
type Int64 = number | Long | null | undefined;
interface KV {
  key?: string;
  value?: string;
}
interface Tensor {
  dims?: Int64[];
  data_type?: number;
  name?: string;
  raw_data?: Uint8Array;
  external_data?: KV[];
  data_location?: number;
}
interface SparseTensor {
  values?: Tensor;
  indices?: Tensor;
}
interface Attribute {
  name?: string;
  t?: Tensor;
  g?: Graph;
  sparse_tensor?: SparseTensor;
  tensors?: Tensor[];
  graphs?: Graph[];
  sparse_tensors?: SparseTensor[];
}
interface Node {
  name?: string;
  op_type?: string;
  domain?: string;
  attribute?: Attribute[];
}
interface Graph {
  node?: Node[];
  name?: string;
  initializer?: Tensor[];
  sparse_initializer?: SparseTensor[];
}
interface Func {
  name?: string;
  domain?: string;
  node?: Node[];
}
interface Model {
  ir_version?: Int64;
  producer_name?: string;
  graph?: Graph;
  opset_import?: Array<{ domain?: string; version?: Int64 }>;
  training_info?: Array<{ initialization?: Graph; algorithm?: Graph }>;
  functions?: Func[];
}

/** Loads a `.proto` schema kept next to this module's source (src/formats/*.proto). */
export function loadProtoSchema(fileName: string): protobuf.Root {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, fileName), resolve(here, '../../../src/formats', fileName)];
  const path = candidates.find((p) => existsSync(p));
  if (!path) throw new Error(`${fileName} schema not found (tried ${candidates.join(', ')})`);
  return protobuf.parse(readFileSync(path, 'utf8'), { keepCase: true }).root;
}

let modelType: protobuf.Type | undefined;
function getModelType(): protobuf.Type {
  modelType ??= loadProtoSchema('onnx.proto').lookupType('onnx.ModelProto');
  return modelType;
}

function toBig(x: Int64): bigint {
  if (x === null || x === undefined) return 0n;
  if (typeof x === 'number') return BigInt(Math.trunc(x));
  const v = (BigInt(x.high >>> 0) << 32n) | BigInt(x.low >>> 0);
  return !x.unsigned && x.high < 0 ? v - (1n << 64n) : v;
}

/** Decodes an ONNX model; throws on bytes that are not a ModelProto. */
export function decodeOnnx(bytes: Uint8Array): Model {
  const type = getModelType();
  return type.decode(bytes) as unknown as Model;
}

interface Where {
  graph: string;
}

export const onnxHandler: FormatHandler = {
  name: 'onnx',
  detect(head, _size, name) {
    // ModelProto starts with ir_version (field 1, varint; 3 and up since 2017) in every writer we
    // know, then usually producer_name (field 2, a printable string). TensorFlow's SavedModel also
    // starts 08 01 12, but its field 2 is a message, not text.
    if (head.length >= 3 && head[0] === 0x08 && (head[1] as number) >= 3 && (head[1] as number) <= 20) {
      const tag = head[2] as number;
      if (tag === 0x12) {
        const len = head[3] as number;
        if (len > 0 && len < 0x80 && head.length >= 4 + Math.min(len, 16)) {
          const s = head.subarray(4, 4 + Math.min(len, 16));
          if (s.every((b) => b >= 0x20 && b < 0x7f)) return true;
        }
      } else if ([0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72].includes(tag)) return true;
    }
    return /\.onnx$/i.test(name) && head.length > 0 && [0x08, 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72].includes(head[0] as number);
  },
  async scan(ctx: FormatContext) {
    const size = ctx.source.size;
    if (size > ONNX_MAX_PROTO_BYTES) {
      ctx.sink.add({ rule: 'onnx/too-large', severity: 'medium', verdict: 'error', message: `model of ${size} bytes exceeds the ${ONNX_MAX_PROTO_BYTES}-byte decode cap; it was not analysed (raise the cap or keep weights in external data)` });
      return 'onnx';
    }
    let model: Model;
    try {
      model = decodeOnnx(ctx.source.read(0, size));
    } catch (e) {
      ctx.sink.add({ rule: 'onnx/parse', severity: 'high', verdict: 'invalid', message: `not a decodable ONNX ModelProto: ${String((e as Error)?.message ?? e).slice(0, 200)}` });
      return 'onnx';
    }
    if (!model.graph) {
      ctx.sink.add({ rule: 'onnx/parse', severity: 'high', verdict: 'invalid', message: 'ModelProto has no graph' });
      return 'onnx';
    }
    const modelDir = ctx.depth === 0 && ctx.filePath !== undefined ? dirname(resolve(ctx.filePath)) : undefined;
    const localFunctions = new Set((model.functions ?? []).map((f) => `${f.domain ?? ''}::${f.name ?? ''}`));
    const stats = { nodes: 0, tensors: 0, external: 0 };
    const reportedDomains = new Set<string>();

    const checkNode = (node: Node, where: Where) => {
      stats.nodes++;
      const domain = node.domain ?? '';
      const op = node.op_type ?? '';
      if (PYTHON_OPS.has(op)) {
        ctx.sink.add({ rule: 'onnx/python-op', severity: 'high', verdict: 'suspicious', message: `operator ${domain || 'ai.onnx'}::${op} (node "${node.name ?? ''}" in ${where.graph}) calls into Python code registered by the runtime host`, evidence: `${domain}::${op}` });
      }
      if (ONNX_STANDARD_DOMAINS.has(domain) || localFunctions.has(`${domain}::${op}`)) return;
      const key = `${domain}::${op}`;
      if (reportedDomains.has(key)) return;
      reportedDomains.add(key);
      if (ONNX_RUNTIME_DOMAINS.has(domain)) {
        ctx.sink.add({ rule: 'onnx/runtime-domain', severity: 'info', verdict: 'safe', message: `operator ${key} is an ONNX Runtime contrib operator (not in the ONNX standard; needs ONNX Runtime)`, evidence: key });
      } else {
        ctx.sink.add({ rule: 'onnx/custom-domain', severity: 'medium', verdict: 'suspicious', message: `operator ${key} (node "${node.name ?? ''}" in ${where.graph}) is outside the standard ONNX domains: it runs a custom operator library the host must load`, evidence: key });
      }
    };

    const checkTensor = (t: Tensor, where: Where) => {
      stats.tensors++;
      const name = t.name ?? '';
      let elements = 1n;
      for (const d of t.dims ?? []) {
        const v = toBig(d);
        if (v < 0n) {
          ctx.sink.add({ rule: 'onnx/bad-dims', severity: 'high', verdict: 'invalid', message: `tensor "${name}" in ${where.graph} has a negative dimension ${v}`, evidence: name });
          return;
        }
        elements *= v;
      }
      const bits = DTYPE_BITS[t.data_type ?? 0];
      const expected = bits !== undefined ? (elements * BigInt(bits) + 7n) / 8n : undefined;
      const ext = t.external_data ?? [];
      if (t.data_location === 1 || ext.length > 0) {
        stats.external++;
        checkExternal(t, ext, expected, where);
        return;
      }
      if (t.raw_data && t.raw_data.length > 0 && expected !== undefined && BigInt(t.raw_data.length) !== expected) {
        ctx.sink.add({ rule: 'onnx/tensor-size-mismatch', severity: 'high', verdict: 'invalid', message: `tensor "${name}" in ${where.graph} declares ${elements} elements (${expected} bytes) but holds ${t.raw_data.length} raw bytes`, evidence: name });
      }
    };

    const checkExternal = (t: Tensor, ext: KV[], expected: bigint | undefined, where: Where) => {
      const name = t.name ?? '';
      const get = (k: string) => ext.find((e) => e.key === k)?.value;
      const location = get('location');
      const escape = (why: string) =>
        ctx.sink.add({ rule: 'onnx/external-data-escape', severity: 'critical', verdict: 'malicious', message: `tensor "${name}" in ${where.graph} loads external data from ${JSON.stringify(location)}: ${why}. Loading this model makes the runtime read that file into the model.`, evidence: String(location).slice(0, 300) });
      if (!location) {
        ctx.sink.add({ rule: 'onnx/external-data-bad', severity: 'high', verdict: 'invalid', message: `tensor "${name}" in ${where.graph} is external but has no location`, evidence: name });
        return;
      }
      if (location.includes('\0')) return escape('the path contains a NUL byte');
      if (location.startsWith('/') || location.startsWith('\\') || /^[A-Za-z]:/.test(location) || location.startsWith('~') || isAbsolute(location)) return escape('the path is absolute');
      if (location.split(/[\\/]/).includes('..')) return escape("the path climbs out of the model folder with '..'");
      const offset = get('offset') !== undefined ? Number(get('offset')) : 0;
      const length = get('length') !== undefined ? Number(get('length')) : undefined;
      if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0))) {
        ctx.sink.add({ rule: 'onnx/external-data-bad', severity: 'high', verdict: 'invalid', message: `tensor "${name}" has a non-numeric or negative external offset/length`, evidence: `offset=${get('offset')}, length=${get('length')}` });
        return;
      }
      if (length !== undefined && expected !== undefined && BigInt(length) !== expected) {
        ctx.sink.add({ rule: 'onnx/tensor-size-mismatch', severity: 'high', verdict: 'invalid', message: `tensor "${name}" declares ${expected} bytes but its external length is ${length}`, evidence: name });
      }
      if (modelDir === undefined) return; // bytes or a nested member: only the path itself can be judged
      const target = resolve(modelDir, location);
      let realDir = modelDir;
      try {
        realDir = realpathSync(modelDir);
      } catch {
        /* keep the lexical folder */
      }
      let realTarget: string;
      try {
        realTarget = realpathSync(target);
      } catch {
        ctx.sink.add({ rule: 'onnx/external-data-missing', severity: 'high', verdict: 'error', message: `tensor "${name}" needs external data file ${JSON.stringify(location)}, which is missing: the weights cannot be checked`, evidence: location });
        return;
      }
      const rel = relative(realDir, realTarget);
      if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) return escape(`it resolves (through a symbolic link) to ${realTarget}, outside the model folder`);
      let st;
      try {
        st = statSync(realTarget);
      } catch {
        return;
      }
      if (!st.isFile()) {
        ctx.sink.add({ rule: 'onnx/external-data-special', severity: 'high', verdict: 'suspicious', message: `tensor "${name}" external data ${JSON.stringify(location)} is not a regular file (device, FIFO or folder)`, evidence: location });
        return;
      }
      const need = BigInt(offset) + (length !== undefined ? BigInt(length) : (expected ?? 0n));
      if (need > BigInt(st.size)) {
        ctx.sink.add({ rule: 'onnx/external-data-bounds', severity: 'high', verdict: 'invalid', message: `tensor "${name}" reads bytes [${offset}, ${need}) of ${JSON.stringify(location)}, which has only ${st.size} bytes`, evidence: location });
      }
    };

    // Iterative walk over the main graph, training graphs, functions and every subgraph attribute.
    const graphs: Array<{ g: Graph; depth: number; label: string }> = [{ g: model.graph, depth: 0, label: `graph "${model.graph.name ?? ''}"` }];
    for (const [k, ti] of (model.training_info ?? []).entries()) {
      if (ti.initialization) graphs.push({ g: ti.initialization, depth: 1, label: `training_info[${k}].initialization` });
      if (ti.algorithm) graphs.push({ g: ti.algorithm, depth: 1, label: `training_info[${k}].algorithm` });
    }
    for (const f of model.functions ?? []) graphs.push({ g: { node: f.node ?? [] }, depth: 1, label: `function ${f.domain ?? ''}::${f.name ?? ''}` });
    let items = 0;
    while (graphs.length > 0) {
      const { g, depth, label } = graphs.pop() as { g: Graph; depth: number; label: string };
      if (depth > ONNX_MAX_GRAPH_DEPTH) {
        ctx.sink.add({ rule: 'onnx/graph-depth', severity: 'medium', verdict: 'suspicious', message: `subgraphs nested deeper than ${ONNX_MAX_GRAPH_DEPTH}; deeper graphs were not analysed` });
        continue;
      }
      const where = { graph: label };
      for (const t of g.initializer ?? []) checkTensor(t, where);
      for (const s of g.sparse_initializer ?? []) {
        if (s.values) checkTensor(s.values, where);
        if (s.indices) checkTensor(s.indices, where);
      }
      for (const node of g.node ?? []) {
        if (++items > ONNX_MAX_ITEMS) break;
        checkNode(node, where);
        for (const a of node.attribute ?? []) {
          const sub = `${label} / ${node.op_type ?? ''} "${node.name ?? ''}".${a.name ?? ''}`;
          if (a.t) checkTensor(a.t, { graph: sub });
          for (const t of a.tensors ?? []) checkTensor(t, { graph: sub });
          if (a.sparse_tensor?.values) checkTensor(a.sparse_tensor.values, { graph: sub });
          for (const s of a.sparse_tensors ?? []) if (s.values) checkTensor(s.values, { graph: sub });
          if (a.g) graphs.push({ g: a.g, depth: depth + 1, label: sub });
          for (const sg of a.graphs ?? []) graphs.push({ g: sg, depth: depth + 1, label: sub });
        }
      }
      if (items > ONNX_MAX_ITEMS) {
        ctx.sink.add({ rule: 'onnx/too-many-nodes', severity: 'medium', verdict: 'suspicious', message: `more than ${ONNX_MAX_ITEMS} nodes; the rest was not analysed` });
        break;
      }
    }
    ctx.stats.nodes = stats.nodes;
    ctx.stats.tensors = stats.tensors;
    if (stats.external > 0) ctx.stats.externalTensors = stats.external;
    if (model.producer_name) ctx.stats.producer = model.producer_name.slice(0, 60);
    ctx.stats.basis = 'standard ONNX operators, external data inside the model folder';
    return 'onnx';
  },
};
