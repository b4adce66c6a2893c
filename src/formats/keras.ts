import type { FindingSink } from '../report/findings.js';
import type { FormatContext } from './types.js';
import { isJsonObject, isValidUtf8, parseJsonStrict, type JsonObject, type JsonValue } from './json-strict.js';

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

/** Module roots that belong to Keras itself or its official libraries. */
const KERAS_MODULES = ['keras', 'tf_keras', 'keras_hub', 'keras_nlp', 'keras_cv', 'tensorflow.keras', 'tensorflow.python.keras'];
/** Modules whose import alone gives process, file or network access. */
const DANGEROUS_MODULES = ['os', 'posix', 'nt', 'subprocess', 'sys', 'shutil', 'socket', 'importlib', 'pickle', 'marshal', 'runpy', 'pty', 'ctypes', 'webbrowser', 'requests', 'urllib', 'http', 'code', 'codeop', 'pdb', 'pydoc', 'multiprocessing', 'asyncio', 'tempfile', 'io', 'pathlib', 'glob', 'zipfile', 'tarfile', 'dill', 'cloudpickle', 'types', 'operator', 'functools'];
const DANGEROUS_BUILTINS = new Set(['exec', 'eval', 'compile', 'open', '__import__', 'getattr', 'setattr', 'delattr', 'globals', 'locals', 'vars', 'input', 'breakpoint', 'help', 'memoryview', 'print']);

/** True when a zip's member names say it is a Keras v3 `.keras` archive. */
export function isKerasArchive(names: readonly string[]): boolean {
  return names.includes('config.json') && names.includes('metadata.json');
}

/** True for a Keras model config object (v3 or legacy). */
export function looksLikeKerasConfig(root: JsonObject): boolean {
  if (typeof root.class_name !== 'string' || !isJsonObject(root.config)) return false;
  return 'module' in root || 'registered_name' in root || 'keras_version' in root || 'backend' in root || Array.isArray(root.config.layers);
}

function moduleRoot(m: string): string {
  return m.split('.')[0] ?? m;
}

function isKerasModule(m: string): boolean {
  return KERAS_MODULES.some((k) => m === k || m.startsWith(`${k}.`));
}

export interface KerasWhere {
  /** "config.json", "model_config attribute". */
  source: string;
  member?: string;
}

/**
 * Walks a config iteratively (no recursion on attacker depth) and reports Lambda code and foreign
 * modules. Returns the number of layers seen.
 */
export function judgeKerasConfig(sink: FindingSink, root: JsonValue, where: KerasWhere): number {
  const loc = where.member !== undefined ? { location: { member: where.member } } : {};
  const emit = (rule: string, verdict: 'malicious' | 'suspicious', message: string, evidence: string) =>
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
    if (cls === 'Lambda') {
      lambdaHere = true;
      const cfg = isJsonObject(v.config) ? v.config : undefined;
      const fn = cfg?.function;
      const fnType = cfg?.function_type;
      const code = lambdaCode(fn, fnType);
      if (code !== undefined) {
        emit('keras/lambda-layer', 'malicious', `Lambda layer ${label} carries marshalled Python bytecode that runs when the model is loaded (safe_mode=False or legacy loaders). Do not load it; rebuild the layer in code.`, code.slice(0, 120));
      } else if (!(isJsonObject(fn) && typeof fn.module === 'string' && isKerasModule(fn.module))) {
        // A Lambda around a Keras op (module keras.*) is plain Keras; anything else is user code.
        emit('keras/lambda-function', 'suspicious', `Lambda layer ${label} calls a named Python function that Keras imports on load; check where it comes from`, JSON.stringify(fn ?? null).slice(0, 200));
      }
    }
    if (cls === '__lambda__' && !inLambda) {
      emit('keras/lambda-layer', 'malicious', `serialized lambda at ${path || '/'} carries marshalled Python bytecode that runs when the model is loaded`, JSON.stringify(v.config ?? null).slice(0, 120));
    }
    if (typeof v.module === 'string') {
      const mod = v.module;
      const fnName = cls === 'function' && typeof v.config === 'string' ? v.config : undefined;
      if (DANGEROUS_MODULES.includes(moduleRoot(mod)) || (moduleRoot(mod) === 'builtins' && (fnName === undefined || DANGEROUS_BUILTINS.has(fnName)))) {
        emit('keras/dangerous-module', 'malicious', `${label} makes Keras import ${mod}${fnName ? `.${fnName}` : ''}, which gives process, file or network access`, `module: ${mod}${fnName ? `, config: ${fnName}` : ''}`);
      } else if (!isKerasModule(mod) && !(moduleRoot(mod) === 'builtins' && fnName !== undefined)) {
        emit('keras/foreign-module', 'suspicious', `${label} makes Keras import code from module ${mod}, outside Keras`, `module: ${mod}`);
      }
    }
    if (typeof v.registered_name === 'string' && v.registered_name.includes('>')) {
      const pkg = v.registered_name.slice(0, v.registered_name.indexOf('>'));
      if (!isKerasModule(pkg)) emit('keras/custom-object', 'suspicious', `${label} is a custom object registered as ${v.registered_name}; its code lives outside Keras`, `registered_name: ${v.registered_name}`);
    }
    const keys = Object.keys(v);
    for (let k = keys.length - 1; k >= 0; k--) {
      const key = keys[k] as string;
      stack.push({ v: v[key] as JsonValue, depth: depth + 1, path: `${path}/${key}`, inLambda: lambdaHere });
    }
  }
  return layers;
}

/** The code a Lambda layer's `function` entry carries, if any. */
function lambdaCode(fn: JsonValue | undefined, fnType: JsonValue | undefined): string | undefined {
  if (isJsonObject(fn)) {
    if (fn.class_name === '__lambda__') {
      const c = isJsonObject(fn.config) ? fn.config.code ?? fn.config.value : fn.config;
      return typeof c === 'string' ? c : Array.isArray(c) && typeof c[0] === 'string' ? c[0] : JSON.stringify(c ?? '');
    }
    return undefined;
  }
  // Legacy tf.keras: function is [base64 marshal, defaults, closure] or the code string, function_type "lambda".
  if (fnType === 'lambda') return Array.isArray(fn) ? String(fn[0]) : typeof fn === 'string' ? fn : JSON.stringify(fn ?? null);
  if (Array.isArray(fn) && typeof fn[0] === 'string') return fn[0];
  if (typeof fn === 'string' && fn.length > 40 && /^[A-Za-z0-9+/=\s]+$/.test(fn)) return fn;
  return undefined;
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
  ctx.stats.basis = 'Keras config: only Keras layers, no Lambda code';
}
