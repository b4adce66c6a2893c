import type { FindingSink } from '../report/findings.js';
import type { FormatContext } from './types.js';
import { isJsonObject, isValidUtf8, parseJsonStrict, type JsonObject, type JsonValue } from './json-strict.js';
import { judgeKerasReference, KERAS_LIBRARY_ROOTS, KERAS_ROOTS } from './keras-allowlist.js';

/**
 * Keras model configs: the v3 `.keras` zip (`config.json` + `metadata.json` + `model.weights.h5`)
 * and the legacy HDF5 `model_config` attribute (keras-h5.ts) share one judge. A Lambda layer carries
 * marshalled Python bytecode that runs when the model is rebuilt; `module`/`registered_name` entries
 * make Keras import arbitrary modules.
 */

/** A read-only view of a zip archive handed to format-specific zip scanners. */
export interface ArchiveView {
  readonly names: readonly string[];
  /** Uncompressed bytes of a member (size-capped by the zip reader), or undefined if absent. */
  read(name: string): Buffer | undefined;
}

/** Objects visited in one config (a large model has a few thousand). */
export const KERAS_MAX_CONFIG_NODES = 2_000_000;
/** Nesting depth of a config (the JSON reader caps it too). */
export const KERAS_MAX_CONFIG_DEPTH = 128;

/** True when a zip's member names say it is a Keras v3 `.keras` archive. */
export function isKerasArchive(names: readonly string[]): boolean {
  return names.includes('config.json') && names.includes('metadata.json');
}

/** True for a Keras model config object (v3 or legacy). */
export function looksLikeKerasConfig(root: JsonObject): boolean {
  if (typeof root.class_name !== 'string' || !isJsonObject(root.config)) return false;
  return 'module' in root || 'registered_name' in root || 'keras_version' in root || 'backend' in root || Array.isArray(root.config.layers);
}

export interface KerasWhere {
  /** "config.json", "model_config attribute". */
  source: string;
  member?: string;
}

/** A dotted Python name (`double`, `my_ops.double`): what a Lambda's named function may be. */
const PY_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** TensorFlow op namespaces a TFOpLambda must not name: files, Python callbacks, summaries, datasets. */
const TF_OP_DANGEROUS = ['io', 'py_function', 'numpy_function', 'compat.v1.py_func', 'compat.v1.io', 'compat.v1.gfile', 'gfile', 'summary', 'saved_model', 'data', 'debugging.experimental', 'print', 'load_op_library', 'load_library', 'keras.utils', 'keras.models', 'keras.config'];

type Emit = (rule: string, verdict: 'malicious' | 'suspicious', message: string, evidence: string) => void;

/**
 * Walks a config iteratively (no recursion on attacker depth): every object Keras would import (its
 * `module` and `class_name`, or the function a `class_name: "function"` entry names) is judged by
 * the allowlist in keras-allowlist.ts, and Lambda code is found wherever it hides. Returns the
 * number of layers seen.
 */
export function judgeKerasConfig(sink: FindingSink, root: JsonValue, where: KerasWhere): number {
  const loc = where.member !== undefined ? { location: { member: where.member } } : {};
  const emit: Emit = (rule, verdict, message, evidence) =>
    sink.add({ rule, severity: verdict === 'malicious' ? 'critical' : 'medium', verdict, message: `${where.source}: ${message}`, evidence, ...loc });
  const stack: Array<{ v: JsonValue; depth: number; path: string; inLambda: boolean }> = [{ v: root, depth: 0, path: '', inLambda: false }];
  let visited = 0;
  let layers = 0;
  while (stack.length > 0) {
    const { v, depth, path, inLambda } = stack.pop() as { v: JsonValue; depth: number; path: string; inLambda: boolean };
    if (++visited > KERAS_MAX_CONFIG_NODES || depth > KERAS_MAX_CONFIG_DEPTH) {
      emit('keras/config-too-large', 'suspicious', `config exceeds ${KERAS_MAX_CONFIG_NODES} nodes or ${KERAS_MAX_CONFIG_DEPTH} levels; the rest was not analysed`, path);
      break;
    }
    if (Array.isArray(v)) {
      for (let k = v.length - 1; k >= 0; k--) stack.push({ v: v[k] as JsonValue, depth: depth + 1, path: `${path}[${k}]`, inLambda });
      continue;
    }
    if (!isJsonObject(v)) continue;
    const cls = typeof v.class_name === 'string' ? v.class_name : undefined;
    const name = isJsonObject(v.config) && typeof v.config.name === 'string' ? v.config.name : undefined;
    const label = `${cls ?? 'object'}${name ? ` "${name}"` : ''} at ${path || '/'}`;
    let lambdaHere = inLambda;
    if (cls !== undefined && isJsonObject(v.config) && 'name' in v.config) layers++;
    if (cls === 'Lambda' || cls === 'TFOpLambda' || cls === 'SlicingOpLambda') {
      lambdaHere = true;
      judgeLambda(emit, isJsonObject(v.config) ? v.config : undefined, label, cls !== 'Lambda');
    }
    if (cls === '__lambda__' && !inLambda) {
      emit('keras/lambda-layer', 'malicious', `serialized lambda at ${path || '/'} carries marshalled Python bytecode that runs when the model is loaded`, JSON.stringify(v.config ?? null).slice(0, 120));
    }
    if (cls !== undefined) judgeReference(emit, v, cls, label);
    if (typeof v.registered_name === 'string' && v.registered_name.includes('>')) {
      const pkg = v.registered_name.slice(0, v.registered_name.indexOf('>'));
      if (!KERAS_LIBRARY_ROOTS.includes(pkg) && !KERAS_ROOTS.includes(pkg)) emit('keras/custom-object', 'suspicious', `${label} is a custom object registered as ${v.registered_name}; its code lives outside Keras`, `registered_name: ${v.registered_name}`);
    }
    const keys = Object.keys(v);
    for (let k = keys.length - 1; k >= 0; k--) {
      const key = keys[k] as string;
      stack.push({ v: v[key] as JsonValue, depth: depth + 1, path: `${path}/${key}`, inLambda: lambdaHere });
    }
  }
  return layers;
}

/** Judges the import an object `{module, class_name, config}` makes Keras perform. */
function judgeReference(emit: Emit, v: JsonObject, cls: string, label: string): void {
  // `__lambda__`, `__numpy__`, `__tensor__`, `__bytes__`…: Keras's own data markers, judged elsewhere.
  if (/^__\w+__$/.test(cls) && v.module === undefined) return;
  const module = typeof v.module === 'string' ? v.module : undefined;
  const names = [cls === 'function' && typeof v.config === 'string' ? v.config : cls];
  // Keras 3 resolves a registered name before the class name; judge both.
  if (typeof v.registered_name === 'string' && !v.registered_name.includes('>') && v.registered_name !== 'function' && !names.includes(v.registered_name)) names.push(v.registered_name);
  for (const fn of names) {
    const j = judgeKerasReference(module, fn);
    if (j.verdict === 'allowed') continue;
    const ref = `module: ${module ?? '(none)'}, ${cls === 'function' ? `function: ${fn}` : `class_name: ${fn}`}`;
    emit(j.rule, j.verdict, `${label} makes Keras import ${module ? `${module}.` : ''}${fn}: ${j.why}`, ref);
  }
}

/**
 * A Lambda layer's `function` (and `output_shape`): marshalled bytecode (`__lambda__`, a base64
 * string, a `[code, defaults, closure]` list), source text, or a named function. Code is
 * `malicious` in every form, since some loader runs each; a named function is judged like any import.
 */
function judgeLambda(emit: Emit, cfg: JsonObject | undefined, label: string, tfOp: boolean): void {
  if (!cfg) return;
  for (const [key, typeKey] of [['function', 'function_type'], ['output_shape', 'output_shape_type']] as const) {
    const fn = cfg[key];
    const fnType = cfg[typeKey];
    if (fn === undefined || fn === null) continue;
    if (isJsonObject(fn)) {
      if (fn.class_name === '__lambda__') {
        emit('keras/lambda-layer', 'malicious', `Lambda layer ${label} carries marshalled Python bytecode that runs when the model is loaded (safe_mode=False or legacy loaders). Do not load it; rebuild the layer in code.`, lambdaEvidence(fn.config));
      } else if (typeof fn.module === 'string' && typeof fn.config === 'string') {
        const j = judgeKerasReference(fn.module, fn.config);
        // A Lambda around a Keras op is plain Keras; a function from elsewhere is user code.
        if (j.verdict === 'suspicious') emit('keras/lambda-function', 'suspicious', `Lambda layer ${label} calls ${fn.module}.${fn.config}, which Keras imports on load; check where it comes from`, JSON.stringify(fn).slice(0, 200));
      }
      continue;
    }
    if (key === 'output_shape' && fnType !== 'lambda' && fnType !== 'function') continue; // a shape, not code
    if (typeof fn === 'string' && tfOp && PY_NAME.test(fn)) {
      // TFOpLambda names a TensorFlow op (`math.add`, `__operators__.getitem`) resolved inside `tf`.
      const bad = TF_OP_DANGEROUS.find((p) => fn === p || fn.startsWith(`${p}.`));
      if (bad) emit('keras/dangerous-function', 'malicious', `${label} calls tf.${fn}, which reads or writes files or runs Python`, `function: ${fn}`);
      continue;
    }
    if (typeof fn === 'string' && fnType !== 'lambda' && PY_NAME.test(fn)) {
      // tf.keras 2 `function_type: "function"`: the name is imported from the layer's `module`.
      const module = typeof cfg.module === 'string' ? cfg.module : undefined;
      const j = module === undefined || module === '__main__' ? { verdict: 'suspicious' as const, rule: 'keras/lambda-function' as const, why: 'the function must come from the loading program' } : judgeKerasReference(module, fn);
      if (j.verdict === 'malicious') emit(j.rule, 'malicious', `Lambda layer ${label} calls ${module}.${fn}: ${j.why}`, `function: ${fn}, module: ${module}`);
      else if (j.verdict === 'suspicious') emit('keras/lambda-function', 'suspicious', `Lambda layer ${label} calls ${module ?? '(no module)'}.${fn}, which Keras imports on load; check where it comes from`, `function: ${fn}, module: ${module ?? '(none)'}`);
      continue;
    }
    // Anything else is code: a base64 marshal string, [code, defaults, closure], or Python source.
    emit('keras/lambda-layer', 'malicious', `Lambda layer ${label} carries Python code in its ${key} (marshalled bytecode or source text) that legacy loaders and safe_mode=False run. Do not load it; rebuild the layer in code.`, lambdaEvidence(fn));
  }
}

function lambdaEvidence(c: JsonValue | undefined): string {
  const code = isJsonObject(c) ? c.code ?? c.value : Array.isArray(c) ? c[0] : c;
  return (typeof code === 'string' ? code : JSON.stringify(code ?? null)).slice(0, 120);
}

function parseMember(ctx: FormatContext, archive: ArchiveView, member: string): JsonValue | undefined {
  const sink = ctx.sink;
  let bytes: Buffer | undefined;
  try {
    bytes = archive.read(member);
  } catch (e) {
    // A damaged member (no local header, corrupt deflate, past its cap) is this archive's finding,
    // not a failed scan: Keras could not read it either.
    sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: `${member} cannot be read (${e instanceof Error ? e.message : String(e)}); Keras cannot load this archive`, location: { member } });
    return undefined;
  }
  if (!bytes) return undefined;
  if (!isValidUtf8(bytes)) {
    sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: `${member} is not valid UTF-8; Keras cannot load this archive`, location: { member } });
    return undefined;
  }
  const parsed = parseJsonStrict(bytes);
  const bad = parsed.issues.find((x) => x.kind !== 'duplicate-key');
  if (bad || parsed.value === undefined) {
    sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: `${member} is not valid JSON (${bad?.message ?? 'empty'}); Keras cannot load this archive`, location: { member, offset: bad?.offset ?? 0 } });
    return undefined;
  }
  for (const d of parsed.issues) {
    sink.add({ rule: 'keras/duplicate-key', severity: 'medium', verdict: 'suspicious', message: `${member}: ${d.message}; Python keeps the last value, a reviewer may have seen the first`, location: { member, offset: d.offset } });
  }
  return parsed.value;
}

/** Judges a Keras v3 archive's config (Lambda layers, foreign modules). */
export async function scanKerasArchive(ctx: FormatContext, archive: ArchiveView): Promise<void> {
  const config = parseMember(ctx, archive, 'config.json');
  if (config !== undefined) {
    const layers = judgeKerasConfig(ctx.sink, config, { source: 'config.json', member: 'config.json' });
    ctx.stats.layers = layers;
  } else if (!archive.names.includes('config.json')) {
    ctx.sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: 'Keras archive has no config.json' });
  }
  const meta = parseMember(ctx, archive, 'metadata.json');
  if (isJsonObject(meta) && typeof meta.keras_version === 'string') ctx.stats.kerasVersion = meta.keras_version.slice(0, 40);
  ctx.stats.basis = 'Keras config: only allowlisted Keras objects, no Lambda code';
}
