/**
 * What a Keras config may name. Keras rebuilds a model by importing `module` and fetching
 * `class_name` (or, for `class_name: "function"`, the function named by `config`) from it, then
 * calling it with the config. So a config is a list of calls, and it is judged like a pickle: by an
 * allowlist of what Keras itself ships as building blocks, with the capabilities that fetch, write or
 * turn off safe mode named apart so they are `malicious` wherever they live.
 */

/** Package roots that ship Keras itself (Keras 3, tf.keras 2, the Keras 2 package `tf_keras`). */
export const KERAS_ROOTS: readonly string[] = ['keras', 'keras.src', 'keras.api', 'tf_keras', 'tf_keras.src', 'tensorflow.keras', 'tensorflow.python.keras'];
/** Official Keras model libraries: models, layers and tokenizers only (their `utils` download files). */
export const KERAS_LIBRARY_ROOTS: readonly string[] = ['keras_hub', 'keras_nlp', 'keras_cv', 'keras_hub.src', 'keras_nlp.src', 'keras_cv.src'];

/**
 * Sub-packages of a Keras root in which every public name is a pure building block: constructing it
 * or calling it computes on tensors and touches nothing outside the process.
 */
export const KERAS_PURE_SUBPACKAGES: readonly string[] = [
  'layers', // Dense, Conv2D, …; TFSMLayer is the exception and is named in KERAS_DANGEROUS_NAMES
  'activations',
  'initializers',
  'regularizers',
  'constraints',
  'losses',
  'metrics',
  'optimizers', // includes optimizers.schedules
  'ops', // keras.ops functions a Lambda may wrap (keras.src.ops.numpy.add)
  'random', // SeedGenerator
  'dtype_policies', // DTypePolicy, QuantizedDTypePolicy
  'mixed_precision',
  'quantizers',
  'engine', // tf.keras 2: base_layer, functional, sequential, training (Model)
  'feature_column', // tf.keras 2 DenseFeatures
  'premade_models', // tf.keras 2 LinearModel, WideDeepModel
];
/** Library sub-packages (keras_hub.src.models.gemma…) allowed the same way. */
export const KERAS_LIBRARY_PURE_SUBPACKAGES: readonly string[] = ['models', 'layers', 'tokenizers', 'samplers'];

/** Names allowed directly under a Keras root or its `models` sub-package (model classes, dtype policies). */
export const KERAS_ROOT_NAMES: ReadonlySet<string> = new Set([
  'Sequential', 'Functional', 'Model', 'Layer', 'Operation', 'Variable', 'InputSpec', 'KerasTensor', 'Input',
  'DTypePolicy', 'FloatDTypePolicy', 'QuantizedDTypePolicy', 'QuantizedFloat8DTypePolicy', 'DTypePolicyMap',
  'Initializer', 'Loss', 'Metric', 'Optimizer', 'Regularizer', 'Constraint', 'SeedGenerator',
]);

/**
 * Names that fetch, write, or turn off safe mode; `malicious` in any module (a config can spell the
 * module `keras.utils`, `keras.src.utils.file_utils`, `tf_keras.src.utils.data_utils`…). One entry a
 * capability, with the reason shown to the user.
 */
export const KERAS_DANGEROUS_NAMES: Readonly<Record<string, string>> = Object.freeze({
  get_file: 'downloads a file from a URL and can extract it anywhere (CVE-2025-8747)',
  enable_unsafe_deserialization: 'turns off safe mode, so a later Lambda runs its bytecode (CVE-2025-9906)',
  disable_safe_mode: 'turns off safe mode',
  SafeModeScope: 'changes safe mode for what it wraps',
  load_model: 'loads a second model from a path or URL, outside this config',
  save_model: 'writes a model file',
  load_weights: 'reads weights from a path chosen by the config',
  save_weights: 'writes a weights file',
  save: 'writes a file',
  export: 'writes a SavedModel to a path',
  TFSMLayer: 'loads a TensorFlow SavedModel graph from a path or URL',
  TorchModuleWrapper: 'unpickles a PyTorch module from the config (torch.load of attacker bytes)',
  model_from_json: 'rebuilds a nested model from a JSON string, hiding it from review',
  model_from_yaml: 'rebuilds a nested model from YAML, hiding it from review',
  model_from_config: 'rebuilds a nested model from a hidden config',
  load_img: 'reads an image file by path',
  save_img: 'writes an image file',
  array_to_img: 'writes image data',
  plot_model: 'writes an image file and runs graphviz',
  model_to_dot: 'runs graphviz',
  image_dataset_from_directory: 'reads files from a directory',
  text_dataset_from_directory: 'reads files from a directory',
  audio_dataset_from_directory: 'reads files from a directory',
  get_source_inputs: 'walks Python objects outside the model',
  custom_object_scope: 'changes what later names resolve to',
  CustomObjectScope: 'changes what later names resolve to',
  register_keras_serializable: 'registers new classes while loading',
  deserialize_keras_object: 'deserializes a nested object outside the safe-mode scope checks',
  func_load: 'unmarshals Python bytecode',
  ModelCheckpoint: 'writes files',
  BackupAndRestore: 'writes and reads files',
  CSVLogger: 'writes a file',
  TensorBoard: 'writes files',
  RemoteMonitor: 'sends data to a URL',
  LambdaCallback: 'runs Python functions',
});

/**
 * Keras sub-packages that exist to touch files, the network or global settings; nothing in them is
 * a model building block, so any reference is `malicious`.
 */
export const KERAS_DANGEROUS_SUBPACKAGES: Readonly<Record<string, string>> = Object.freeze({
  config: 'changes global Keras settings (safe mode among them)',
  callbacks: 'callbacks write files or send data',
  'utils.file_utils': 'downloads and writes files',
  'utils.io_utils': 'reads and writes files',
  'utils.data_utils': 'downloads files',
  'saving.saving_api': 'loads and saves models by path',
  'saving.saving_lib': 'loads and saves models by path',
  'saving.file_editor': 'rewrites model files',
  'legacy.saving': 'loads models the legacy way, without safe mode',
  'models.cloning': 'clones through arbitrary clone functions',
});

/** `builtins` functions a config may name (Keras 3 serializes plain functions such as max this way). */
export const SAFE_BUILTINS: ReadonlySet<string> = new Set(['max', 'min', 'abs', 'sum', 'round', 'len', 'float', 'int', 'bool', 'str', 'tuple', 'list', 'dict', 'slice', 'divmod', 'all', 'any', 'sorted', 'reversed', 'zip', 'enumerate', 'map', 'filter', 'isinstance', 'range']);
/** `builtins` functions that evaluate code, touch files or reach Python internals. */
export const DANGEROUS_BUILTINS: ReadonlySet<string> = new Set(['exec', 'eval', 'compile', 'open', '__import__', 'getattr', 'setattr', 'delattr', 'globals', 'locals', 'vars', 'input', 'breakpoint', 'help', 'memoryview', 'print', 'exit', 'quit', 'super', 'type', 'object', 'classmethod', 'staticmethod', 'property']);
/** Modules whose import alone gives process, file or network access. */
export const DANGEROUS_MODULES: readonly string[] = ['os', 'posix', 'nt', 'subprocess', 'sys', 'shutil', 'socket', 'importlib', 'pickle', 'marshal', 'runpy', 'pty', 'ctypes', 'webbrowser', 'requests', 'urllib', 'urllib3', 'http', 'httpx', 'code', 'codeop', 'pdb', 'pydoc', 'multiprocessing', 'asyncio', 'tempfile', 'io', 'pathlib', 'glob', 'zipfile', 'tarfile', 'dill', 'cloudpickle', 'types', 'operator', 'functools', 'inspect', 'gc', 'signal', 'threading', 'ftplib', 'smtplib', 'telnetlib', 'platform', 'posixpath', 'ntpath', 'tensorflow.io', 'tensorflow.python.ops.script_ops', 'tensorflow.python.platform', 'huggingface_hub', 'joblib'];

export type KerasJudgement =
  | { verdict: 'allowed' }
  | { verdict: 'malicious'; rule: 'keras/dangerous-module' | 'keras/dangerous-function'; why: string }
  | { verdict: 'suspicious'; rule: 'keras/foreign-module' | 'keras/unlisted-object'; why: string };

const IDENT = /^[A-Za-z][A-Za-z0-9_]*$/;

/** The part of `module` after a Keras root, `''` for the root itself, undefined outside Keras. */
function underRoot(module: string, roots: readonly string[]): string | undefined {
  // The longest root wins, so `keras.src.layers` is `layers` under `keras.src`, not `src.layers`.
  let best: string | undefined;
  let bestLen = -1;
  for (const r of roots) {
    if (r.length <= bestLen) continue;
    if (module === r) [best, bestLen] = ['', r.length];
    else if (module.startsWith(`${r}.`)) [best, bestLen] = [module.slice(r.length + 1), r.length];
  }
  return best;
}

function inSubpackage(rest: string, subs: readonly string[]): boolean {
  return subs.some((s) => rest === s || rest.startsWith(`${s}.`));
}

/** Judges one import Keras would perform: `name` fetched from `module` (undefined: Keras's own registry). */
export function judgeKerasReference(module: string | undefined, name: string): KerasJudgement {
  const dangerousName = Object.prototype.hasOwnProperty.call(KERAS_DANGEROUS_NAMES, name) ? KERAS_DANGEROUS_NAMES[name] : undefined;
  if (module === undefined) {
    // A name with no module resolves only through Keras's registry of built-ins and the caller's
    // custom_objects, so only the names that are dangerous everywhere matter.
    return dangerousName ? { verdict: 'malicious', rule: 'keras/dangerous-function', why: `${name} ${dangerousName}` } : { verdict: 'allowed' };
  }
  const root = module.split('.')[0] ?? module;
  if (root === 'builtins' || root === '__builtin__') {
    if (SAFE_BUILTINS.has(name)) return { verdict: 'allowed' };
    if (DANGEROUS_BUILTINS.has(name) || !IDENT.test(name)) return { verdict: 'malicious', rule: 'keras/dangerous-module', why: `builtins.${name} evaluates code or reaches Python internals` };
    return { verdict: 'suspicious', rule: 'keras/foreign-module', why: `builtins.${name} is not a function Keras configs use` };
  }
  if (DANGEROUS_MODULES.some((m) => module === m || module.startsWith(`${m}.`))) {
    return { verdict: 'malicious', rule: 'keras/dangerous-module', why: `${module} gives process, file or network access` };
  }
  if (dangerousName) return { verdict: 'malicious', rule: 'keras/dangerous-function', why: `${module}.${name} ${dangerousName}` };
  const rest = underRoot(module, KERAS_ROOTS);
  const libRest = underRoot(module, KERAS_LIBRARY_ROOTS);
  for (const r of [rest, libRest]) {
    if (r === undefined) continue;
    for (const [sub, why] of Object.entries(KERAS_DANGEROUS_SUBPACKAGES)) {
      if (r === sub || r.startsWith(`${sub}.`)) return { verdict: 'malicious', rule: 'keras/dangerous-function', why: `${module}.${name}: ${module} ${why}` };
    }
  }
  const nameOk = IDENT.test(name);
  if (rest !== undefined) {
    if (nameOk && (((rest === '' || rest === 'models' || rest.startsWith('models.')) && KERAS_ROOT_NAMES.has(name)) || inSubpackage(rest, KERAS_PURE_SUBPACKAGES))) return { verdict: 'allowed' };
    return { verdict: 'suspicious', rule: 'keras/unlisted-object', why: `${module}.${name} is part of Keras but not one of its model building blocks` };
  }
  if (libRest !== undefined) {
    if (nameOk && inSubpackage(libRest, KERAS_LIBRARY_PURE_SUBPACKAGES)) return { verdict: 'allowed' };
    return { verdict: 'suspicious', rule: 'keras/unlisted-object', why: `${module}.${name} is part of a Keras library but not one of its model building blocks` };
  }
  return { verdict: 'suspicious', rule: 'keras/foreign-module', why: `${module}.${name} is code from outside Keras` };
}
