import { basename } from 'node:path';
import type protobuf from 'protobufjs';
import type { FormatContext, FormatHandler } from './types.js';
import { loadProtoSchema } from './onnx.js';
import { decodeUtf8Strict, isJsonObject, parseJsonStrict } from './json-strict.js';
import { judgeKerasConfig } from './keras.js';

/**
 * TensorFlow SavedModel `saved_model.pb`, decoded with protobufjs against the subset of the
 * TensorFlow schema in savedmodel.proto. Every graph node and every function body node is checked
 * against operators that reach outside the tensor world: file reads/writes and Python callbacks.
 */

/** Largest saved_model.pb decoded (frozen constants can make it large). */
export const SAVEDMODEL_MAX_BYTES = 512 * 1024 * 1024;
export const SAVEDMODEL_MAX_NODES = 5_000_000;

/** Operators that read or write arbitrary files or run Python: loading the graph can run them. */
export const TF_MALICIOUS_OPS: Readonly<Record<string, string>> = Object.freeze({
  ReadFile: 'reads any file the process can open',
  WriteFile: 'writes any file the process can open',
  MatchingFiles: 'lists files by glob pattern',
  PyFunc: 'runs a Python function',
  PyFuncStateless: 'runs a Python function',
  EagerPyFunc: 'runs a Python function',
  DatasetToTFRecord: 'writes a dataset to a file',
  ExperimentalDatasetToTFRecord: 'writes a dataset to a file',
});
/** Operators with file side effects that ordinary models do not use in their serving graph. */
export const TF_SUSPICIOUS_OPS: Readonly<Record<string, string>> = Object.freeze({
  ImmutableConst: 'memory-maps a file by path',
  CreateSummaryFileWriter: 'creates files under a log directory',
  WriteSummary: 'writes summary event files',
  SnapshotDataset: 'writes dataset snapshots to a path',
  SaveDataset: 'writes a dataset to a path',
  InitializeTableFromTextFile: 'reads a text file by path',
  InitializeTableFromTextFileV2: 'reads a text file by path',
});

interface AttrValue {
  s?: Uint8Array;
}
interface NodeDef {
  name?: string;
  op?: string;
  attr?: Record<string, AttrValue>;
}
interface FunctionDef {
  signature?: { name?: string };
  node_def?: NodeDef[];
}
interface SavedModel {
  meta_graphs?: Array<{ graph_def?: { node?: NodeDef[]; library?: { function?: FunctionDef[] } } }>;
}

let savedModelType: protobuf.Type | undefined;

/** Judges one operator; shared by the binary and the text (`.pbtxt`) forms. */
function judgeOp(op: string, outputStream: string): { verdict: 'malicious' | 'suspicious'; why: string } | undefined {
  if (op in TF_MALICIOUS_OPS) return { verdict: 'malicious', why: TF_MALICIOUS_OPS[op] as string };
  if (op in TF_SUSPICIOUS_OPS) return { verdict: 'suspicious', why: TF_SUSPICIOUS_OPS[op] as string };
  if (op === 'PrintV2' && outputStream.startsWith('file://')) return { verdict: 'malicious', why: `writes to ${outputStream}` };
  return undefined;
}

/** Largest saved_model.pbtxt read. */
export const SAVEDMODEL_MAX_TEXT_BYTES = 64 * 1024 * 1024;

/**
 * The text form `saved_model.pbtxt`: protobuf text format has no kept JS parser, so only the
 * `op: "Name"` fields are read (and PrintV2 `output_stream` values); every one is judged.
 */
export const savedModelTextHandler: FormatHandler = {
  name: 'tf-savedmodel-text',
  detect(head, _size, name) {
    return basename(name.split('!').pop() ?? name) === 'saved_model.pbtxt' && !head.includes(0);
  },
  async scan(ctx: FormatContext) {
    if (ctx.source.size > SAVEDMODEL_MAX_TEXT_BYTES) {
      ctx.sink.add({ rule: 'savedmodel/too-large', severity: 'medium', verdict: 'error', message: `saved_model.pbtxt of ${ctx.source.size} bytes exceeds the ${SAVEDMODEL_MAX_TEXT_BYTES}-byte cap; it was not analysed` });
      return 'tf-savedmodel-text';
    }
    const text = ctx.source.read(0, ctx.source.size).toString('utf8');
    const streams = [...text.matchAll(/output_stream"?\s*value\s*\{\s*s:\s*"([^"]*)"/g)].map((m) => m[1] ?? '');
    const fileStream = streams.find((x) => x.startsWith('file://')) ?? '';
    const seen = new Set<string>();
    let nodes = 0;
    for (const m of text.matchAll(/\bop:\s*"([A-Za-z0-9_>.]+)"/g)) {
      nodes++;
      const op = m[1] as string;
      const j = judgeOp(op, op === 'PrintV2' ? fileStream : '');
      if (!j || seen.has(op)) continue;
      seen.add(op);
      ctx.sink.add({ rule: j.verdict === 'malicious' ? 'savedmodel/dangerous-op' : 'savedmodel/file-op', severity: j.verdict === 'malicious' ? 'critical' : 'medium', verdict: j.verdict, message: `operator ${op} ${j.why}; serving or loading this model can run it`, location: { offset: Buffer.byteLength(text.slice(0, m.index)) }, evidence: op });
    }
    ctx.stats.nodes = nodes;
    ctx.stats.basis = 'no file or Python operators in the graph (text form)';
    return 'tf-savedmodel-text';
  },
};

/** One length-delimited field of a protobuf message, found without a schema. */
interface PbBytes {
  field: number;
  bytes: Buffer;
}

/** The length-delimited fields of one protobuf message (wire format only); undefined when it is not one. */
function pbLengthFields(buf: Buffer): PbBytes[] | undefined {
  const out: PbBytes[] = [];
  let i = 0;
  const varint = (): number | undefined => {
    let v = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (i >= buf.length) return undefined;
      const b = buf[i++] as number;
      if (shift < 49) v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    return undefined;
  };
  while (i < buf.length) {
    const key = varint();
    if (key === undefined || key < 8) return undefined;
    const wire = key % 8;
    const field = Math.floor(key / 8);
    if (wire === 0) {
      if (varint() === undefined) return undefined;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      if (len === undefined || i + len > buf.length) return undefined;
      out.push({ field, bytes: buf.subarray(i, i + len) });
      i += len;
    } else return undefined;
    if (i > buf.length) return undefined;
  }
  return out;
}

/**
 * tf.keras 2 SavedModel `keras_metadata.pb` (SavedMetadata: repeated nodes, each with its layer's
 * Keras config as a JSON string). `keras.models.load_model` rebuilds the layers from these configs,
 * Lambda bytecode included, so every JSON string in every node is judged as a Keras config. The
 * fields are found by wire format, not by number, so a reordered or renumbered schema still shows.
 */
async function scanKerasMetadata(ctx: FormatContext): Promise<string> {
  const format = 'tf-savedmodel-keras-metadata';
  if (ctx.source.size > SAVEDMODEL_MAX_BYTES) {
    ctx.sink.add({ rule: 'savedmodel/too-large', severity: 'medium', verdict: 'error', message: `keras_metadata.pb of ${ctx.source.size} bytes exceeds the ${SAVEDMODEL_MAX_BYTES}-byte cap; it was not analysed` });
    return format;
  }
  const nodes = pbLengthFields(ctx.source.read(0, ctx.source.size));
  if (!nodes) {
    ctx.sink.add({ rule: 'savedmodel/parse', severity: 'high', verdict: 'invalid', message: 'keras_metadata.pb is not a protobuf message; Keras cannot load this SavedModel' });
    return format;
  }
  let configs = 0;
  let layers = 0;
  for (const [k, node] of nodes.entries()) {
    if (k >= SAVEDMODEL_MAX_NODES) {
      ctx.sink.add({ rule: 'savedmodel/too-many-nodes', severity: 'medium', verdict: 'suspicious', message: `more than ${SAVEDMODEL_MAX_NODES} metadata nodes; the rest was not analysed` });
      break;
    }
    for (const f of pbLengthFields(node.bytes) ?? []) {
      const text = f.bytes[0] === 0x7b ? decodeUtf8Strict(f.bytes) : undefined;
      if (text === undefined) continue;
      const parsed = parseJsonStrict(text);
      if (parsed.value === undefined || !isJsonObject(parsed.value)) {
        ctx.sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: `keras_metadata.pb node ${k}: metadata is not valid JSON; Keras cannot load this SavedModel` });
        continue;
      }
      configs++;
      layers = Math.max(layers, judgeKerasConfig(ctx.sink, parsed.value, { source: `keras_metadata.pb node ${k}` }));
    }
  }
  ctx.stats.layers = layers;
  ctx.stats.basis = configs > 0 ? 'Keras SavedModel metadata: only allowlisted Keras objects, no Lambda code' : 'Keras SavedModel metadata without layer configs';
  return format;
}

export const savedModelHandler: FormatHandler = {
  name: 'tf-savedmodel',
  detect(head, _size, name) {
    // Protobuf has no magic: the documented file name breaks the tie, the first tag must fit.
    const base = basename(name.split('!').pop() ?? name);
    if (base === 'keras_metadata.pb') return head.length === 0 || head[0] === 0x0a;
    return base === 'saved_model.pb' && head.length > 0 && (head[0] === 0x08 || head[0] === 0x12);
  },
  async scan(ctx: FormatContext) {
    if (basename(ctx.name.split('!').pop() ?? ctx.name) === 'keras_metadata.pb') return scanKerasMetadata(ctx);
    const size = ctx.source.size;
    if (size > SAVEDMODEL_MAX_BYTES) {
      ctx.sink.add({ rule: 'savedmodel/too-large', severity: 'medium', verdict: 'error', message: `saved_model.pb of ${size} bytes exceeds the ${SAVEDMODEL_MAX_BYTES}-byte decode cap; it was not analysed` });
      return 'tf-savedmodel';
    }
    let model: SavedModel;
    try {
      savedModelType ??= loadProtoSchema('savedmodel.proto').lookupType('tensorflow.SavedModel');
      model = savedModelType.decode(ctx.source.read(0, size)) as unknown as SavedModel;
    } catch (e) {
      ctx.sink.add({ rule: 'savedmodel/parse', severity: 'high', verdict: 'invalid', message: `not a decodable SavedModel: ${String((e as Error)?.message ?? e).slice(0, 200)}` });
      return 'tf-savedmodel';
    }
    if (!model.meta_graphs || model.meta_graphs.length === 0) {
      ctx.sink.add({ rule: 'savedmodel/parse', severity: 'high', verdict: 'invalid', message: 'SavedModel has no meta graphs' });
      return 'tf-savedmodel';
    }
    const reported = new Set<string>();
    let nodes = 0;
    const check = (n: NodeDef, where: string) => {
      nodes++;
      const op = n.op ?? '';
      const stream = op === 'PrintV2' && n.attr?.output_stream?.s ? Buffer.from(n.attr.output_stream.s).toString('utf8') : '';
      const j = judgeOp(op, stream);
      const verdict = j?.verdict;
      const why = j?.why ?? '';
      if (!verdict) return;
      const key = `${op}\0${where}\0${n.name ?? ''}`;
      if (reported.has(key)) return;
      reported.add(key);
      ctx.sink.add({
        rule: verdict === 'malicious' ? 'savedmodel/dangerous-op' : 'savedmodel/file-op',
        severity: verdict === 'malicious' ? 'critical' : 'medium',
        verdict,
        message: `operator ${op} (node "${n.name ?? ''}" in ${where}) ${why}; serving or loading this model can run it`,
        evidence: op,
      });
    };
    for (const [m, mg] of model.meta_graphs.entries()) {
      const g = mg.graph_def;
      for (const n of g?.node ?? []) {
        if (nodes >= SAVEDMODEL_MAX_NODES) break;
        check(n, `meta graph ${m}`);
      }
      for (const f of g?.library?.function ?? []) {
        for (const n of f.node_def ?? []) {
          if (nodes >= SAVEDMODEL_MAX_NODES) break;
          check(n, `function ${f.signature?.name ?? '?'}`);
        }
      }
    }
    if (nodes >= SAVEDMODEL_MAX_NODES) ctx.sink.add({ rule: 'savedmodel/too-many-nodes', severity: 'medium', verdict: 'suspicious', message: `more than ${SAVEDMODEL_MAX_NODES} nodes; the rest was not analysed` });
    ctx.stats.nodes = nodes;
    ctx.stats.basis = 'no file or Python operators in the graph';
    return 'tf-savedmodel';
  },
};
