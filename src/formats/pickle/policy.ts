/**
 * Allowlist-first policy for pickle globals.
 *
 * A global is `safe` only when its exact qualified name is on the allowlist. Dangerous capabilities
 * are matched on module prefix, on the full dotted path and on every dotted suffix (so
 * `torch` + `serialization.os.system` is `os.system`). Everything else is `unknown` → suspicious.
 */

import { compatPickleName } from './compat.js';
import { ANY_MODULE_GADGET_NAMES, CODE_GADGETS, matchGadget } from './gadgets.js';

export type GlobalClass = 'allowed' | 'dangerous' | 'library' | 'unknown';

export interface GlobalVerdict {
  cls: GlobalClass;
  /** Normalised qualified name after Python-2 aliasing (`__builtin__.eval` → `builtins.eval`). */
  qualified: string;
  /** Capability for dangerous names ("process execution"), library for known ML classes. */
  reason: string;
  /** A dangerous name that a user `--allow` pattern matched: the pattern does not clear it. */
  allowIgnored?: string;
}

/** Python 2 → 3 module names that CPython's Unpickler maps (fix_imports) plus private aliases. */
const MODULE_ALIASES: Record<string, string> = {
  __builtin__: 'builtins',
  exceptions: 'builtins',
  copy_reg: 'copyreg',
  posix: 'os',
  nt: 'os',
  posixpath: 'os.path',
  ntpath: 'os.path',
  _posixsubprocess: 'subprocess',
  commands: 'subprocess',
  _operator: 'operator',
  _pickle: 'pickle',
  cPickle: 'pickle',
  _io: 'io',
  _codecs: 'codecs',
  _functools: 'functools',
  _socket: 'socket',
  httplib: 'http.client',
  urllib2: 'urllib.request',
  urlparse: 'urllib.parse',
  cookielib: 'http.cookiejar',
  SocketServer: 'socketserver',
  BaseHTTPServer: 'http.server',
  SimpleHTTPServer: 'http.server',
  CGIHTTPServer: 'http.server',
  __main__: '__main__',
  _imp: 'importlib',
  _frozen_importlib: 'importlib',
  _frozen_importlib_external: 'importlib',
  _ctypes: 'ctypes',
  _thread: 'threading',
  thread: 'threading',
  _multiprocessing: 'multiprocessing',
  _winapi: 'subprocess',
  _signal: 'signal',
  _asyncio: 'asyncio',
  _ssl: 'ssl',
  _sqlite3: 'sqlite3',
  _shutil: 'shutil',
  _sre: 're',
  Tkinter: 'tkinter',
};

/** Exact qualified names a legitimate checkpoint uses. */
const ALLOWED = new Set<string>([
  // PyTorch rebuild functions and helpers
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._utils._rebuild_qtensor',
  'torch._utils._rebuild_sparse_tensor',
  'torch._utils._rebuild_sparse_csr_tensor',
  'torch._utils._rebuild_device_tensor_from_numpy',
  'torch._utils._rebuild_meta_tensor_no_storage',
  'torch._utils._rebuild_nested_tensor',
  'torch._utils._rebuild_wrapper_subclass',
  'torch._tensor._rebuild_from_type',
  'torch._tensor._rebuild_from_type_v2',
  'torch.serialization._get_layout',
  'torch.Size',
  'torch.Tensor',
  'torch.device',
  'torch.nn.parameter.Parameter',
  'torch.nn.parameter.Buffer',
  'torch.nn.parameter.UninitializedParameter',
  'torch.storage.UntypedStorage',
  'torch.storage.TypedStorage',
  'torch.UntypedStorage',
  'torch.TypedStorage',
  // Optimizers and LR schedulers: what `scheduler.state_dict()` and whole-object saves pickle. Their
  // NEWOBJ is object.__new__ and their BUILD sets attributes (Optimizer.__setstate__ re-adds its
  // profiling hook); their bound methods are recognised by BOUND_METHODS, never getattr in general.
  ...['sgd.SGD', 'adam.Adam', 'adamw.AdamW', 'adagrad.Adagrad', 'adadelta.Adadelta', 'adamax.Adamax', 'asgd.ASGD', 'lbfgs.LBFGS',
    'nadam.NAdam', 'radam.RAdam', 'rmsprop.RMSprop', 'rprop.Rprop', 'sparse_adam.SparseAdam']
    .map((n) => `torch.optim.${n}`),
  ...['LambdaLR', 'MultiplicativeLR', 'StepLR', 'MultiStepLR', 'ConstantLR', 'LinearLR', 'ExponentialLR', 'SequentialLR',
    'CosineAnnealingLR', 'ChainedScheduler', 'ReduceLROnPlateau', 'CyclicLR', 'CosineAnnealingWarmRestarts', 'OneCycleLR',
    'PolynomialLR', 'LRScheduler', '_LRScheduler']
    .map((n) => `torch.optim.lr_scheduler.${n}`),
  // torch.layout / memory_format / qscheme singletons
  'torch.strided', 'torch.sparse_coo', 'torch.sparse_csr', 'torch.sparse_csc', 'torch.sparse_bsr', 'torch.sparse_bsc', 'torch._mkldnn',
  'torch.contiguous_format', 'torch.channels_last', 'torch.channels_last_3d', 'torch.preserve_format',
  'torch.per_tensor_affine', 'torch.per_channel_affine', 'torch.per_tensor_symmetric', 'torch.per_channel_symmetric', 'torch.per_channel_affine_float_qparams',
  // Python containers and harmless builtins
  'collections.OrderedDict',
  'collections.defaultdict',
  'collections.deque',
  'collections.Counter',
  'builtins.set',
  'builtins.frozenset',
  'builtins.bytearray',
  'builtins.bytes',
  'builtins.slice',
  'builtins.complex',
  'builtins.range',
  'builtins.list',
  'builtins.dict',
  'builtins.tuple',
  'builtins.int',
  'builtins.float',
  'builtins.bool',
  'builtins.str',
  'builtins.object',
  'builtins.NoneType',
  'builtins.Ellipsis',
  'builtins.NotImplemented',
  'copyreg._reconstructor',
  'codecs.encode',
  'datetime.datetime',
  'datetime.date',
  'datetime.time',
  'datetime.timedelta',
  'datetime.timezone',
  'decimal.Decimal',
  'fractions.Fraction',
  'uuid.UUID',
  'pathlib.PosixPath',
  'pathlib.WindowsPath',
  'pathlib.PurePosixPath',
  'pathlib.PureWindowsPath',
  'argparse.Namespace',
  'types.SimpleNamespace',
  // NumPy reconstruction
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
  'numpy.core.numeric._frombuffer',
  'numpy._core.numeric._frombuffer',
  'numpy.ndarray',
  'numpy.dtype',
  'numpy.ma.core._mareconstruct',
  'numpy.ma.core.MaskedArray',
  'numpy.random._pickle.__randomstate_ctor',
  'numpy.random._pickle.__generator_ctor',
  'numpy.random._pickle.__bit_generator_ctor',
  'numpy.random.mtrand.RandomState',
  'numpy.random._mt19937.MT19937',
  'numpy.random._pcg64.PCG64',
  'numpy.random.bit_generator.SeedSequence',
  // joblib's inline array wrappers
  'joblib.numpy_pickle.NumpyArrayWrapper',
  'joblib.numpy_pickle.NDArrayWrapper',
]);

/** torch.<Dtype>Storage classes, torch dtypes and NumPy scalar/dtype classes are allowed by pattern. */
const TORCH_STORAGE = /^torch\.(cuda\.)?(Float|Double|Half|BFloat16|Long|Int|Short|Char|Byte|Bool|ComplexFloat|ComplexDouble|QInt8|QUInt8|QInt32|QUInt4x2|QUInt2x4|Float8_e4m3fn|Float8_e5m2|UInt16|UInt32|UInt64)Storage$/;
const TORCH_DTYPE = /^torch\.(float(16|32|64)|double|half|bfloat16|complex(32|64|128)|cfloat|cdouble|chalf|u?int(1|2|3|4|5|6|7|8|16|32|64)|short|int|long|bool|quint8|qint8|qint32|quint4x2|quint2x4|float8_e4m3fn|float8_e5m2|float8_e4m3fnuz|float8_e5m2fnuz|bits8|bits16)$/;
const NUMPY_DTYPE_CLASS = /^numpy\.dtypes\.[A-Za-z0-9]+DType$/;
const NUMPY_SCALAR = /^numpy\.(bool_|int8|int16|int32|int64|uint8|uint16|uint32|uint64|float16|float32|float64|longdouble|complex64|complex128|str_|bytes_|void|datetime64|timedelta64|intc|uintc|longlong|ulonglong|half|single|double|csingle|cdouble)$/;

interface DangerRule {
  /** Qualified-name prefix: matches `p` itself and anything under `p.` */
  prefix: string;
  capability: string;
}

/**
 * Dangerous capabilities. A prefix matches the module or any dotted path below it, and is also
 * checked against every dotted suffix of the qualified name.
 */
const DANGER: DangerRule[] = [
  // process and shell
  ...['os', 'subprocess', 'pty', 'posix', 'nt', 'multiprocessing', 'concurrent.futures.process', 'popen2', 'spawn', 'signal',
    'asyncio.subprocess', 'asyncio.unix_events', 'asyncio.windows_events', 'asyncio.base_subprocess', 'asyncio.create_subprocess_exec',
    'asyncio.create_subprocess_shell', '_posixsubprocess', 'platform.popen', 'platform._syscmd_ver', 'platform._syscmd_file',
    'uuid._get_command_stdout', 'uuid._popen', 'uuid._find_mac', '_aix_support', '_osx_support', 'ctypes.util',
    'distutils.spawn', 'distutils.util.execute', 'distutils.command', 'setuptools', 'webbrowser', 'shutil',
    'imaplib.IMAP4_stream', 'mailcap', 'pipes', 'tempfile', 'tty', 'termios', 'fcntl', 'resource', 'threading', 'sched']
    .map((prefix) => ({ prefix, capability: 'process, shell or OS access' })),
  // code evaluation
  ...['builtins.eval', 'builtins.exec', 'builtins.execfile', 'builtins.compile', 'builtins.__import__', 'builtins.apply',
    'builtins.getattr', 'builtins.setattr', 'builtins.delattr', 'builtins.globals', 'builtins.locals', 'builtins.vars',
    'builtins.open', 'builtins.input', 'builtins.breakpoint', 'builtins.help', 'builtins.exit', 'builtins.quit', 'builtins.memoryview',
    'builtins.type', 'builtins.super', 'builtins.classmethod', 'builtins.staticmethod', 'builtins.property', 'builtins.__build_class__',
    'builtins.dir', 'builtins.print', 'builtins.copyright', 'builtins.credits', 'builtins.license',
    'code', 'codeop', 'types.CodeType', 'types.FunctionType', 'types.LambdaType', 'types.MethodType', 'types.ModuleType',
    'marshal', 'dis', 'ast', 'runpy', 'timeit', 'trace', 'profile', 'cProfile', 'pstats', 'bdb', 'pdb', 'doctest', 'unittest',
    'test', 'idlelib', 'lib2to3', 'pydoc', 'pydoc_data', 'rlcompleter', 'readline', 'site', 'sitecustomize', '_pyrepl', 'pyrepl',
    'cgitb', 'cgi', 'tkinter', 'turtle', 'numpy.testing', 'numpy.f2py', 'numpy.distutils', 'numpy.load', 'numpy.lib.npyio',
    'numpy.lib.format.read_array', 'numpy.ctypeslib', 'numpy.fromfile', 'numpy.memmap',
    'jinja2', 'mako', 'cloudpickle', 'dill', 'IPython', 'ipykernel', 'jupyter_client', 'fire', 'invoke', 'fabric',
    'sympy', 'numexpr', 'pandas.eval', 'pandas.io', 'pandas.read_pickle', 'pandas.core.computation', 'scipy.weave',
    'torch.jit', 'torch._dynamo', 'torch._inductor', 'torch.fx', 'torch.utils.bottleneck', 'torch.utils.collect_env',
    'torch.utils.cpp_extension', 'torch.utils.data.datapipes', 'torch.utils._config_module', 'torch.compile', 'torch._C._jit',
    'torch.package', 'torch.hub', 'torch.ops', 'torch._ops', 'torch.library', 'torch.load', 'torch.serialization.load',
    'torch.serialization._load', 'torch.storage._load_from_bytes_unsafe', 'torch.distributed', 'torch.multiprocessing',
    'torch.backends', 'torch.onnx', 'torch._export', 'torch.export', 'torch.testing', 'torch.autograd.profiler', 'torch.profiler',
    'keras', 'tensorflow', 'transformers.dynamic_module_utils', 'huggingface_hub', 'accelerate.commands', 'pip', 'ensurepip',
    'venv', 'virtualenv', 'conda', 'importlib', 'pkgutil', 'zipimport', 'imp', 'inspect', 'gc', 'sys', 'ctypes', 'cffi',
    'operator.attrgetter', 'operator.methodcaller', 'operator.itemgetter', 'functools.partial', 'functools.reduce',
    'functools.partialmethod', 'functools.singledispatch', 'copyreg._reconstructor_unsafe', 'copy', 'weakref', 'abc',
    'pickle', 'pickletools', 'shelve', 'dbm', 'joblib.load', 'joblib.numpy_pickle.load', 'joblib._store_backends',
    'joblib.parallel', 'joblib.externals', 'sklearn.utils._joblib', 'yaml', 'ruamel', 'xmlrpc', 'logging.config',
    'builtins.bytes.fromhex', 'string.Formatter', 'string.Template', 'locale', 'gettext', 'codecs.open', 'codecs.lookup',
    'codecs.getdecoder', 'codecs.getencoder', 'encodings', 'builtins.object.__reduce__', 'builtins.object.__reduce_ex__',
    'builtins.object.__subclasses__', 'builtins.type.__subclasses__', 'collections.abc', 'contextlib', 'atexit', 'faulthandler',
    'tracemalloc', 'sysconfig', 'zipapp', 'compileall', 'py_compile', 'modulefinder', 'plistlib', 'glob', 'fnmatch', 'linecache',
    'tokenize', 'keyword', 'symtable', 'builtins.reversed', 'builtins.map', 'builtins.filter', 'builtins.iter', 'builtins.next',
    'builtins.sorted', 'builtins.min', 'builtins.max', 'builtins.any', 'builtins.all', 'builtins.sum', 'builtins.zip',
    'builtins.enumerate', 'builtins.hasattr', 'builtins.id', 'builtins.hash', 'builtins.callable', 'builtins.isinstance',
    'builtins.issubclass', 'builtins.repr', 'builtins.format', 'builtins.ascii', 'builtins.chr', 'builtins.ord', 'builtins.__loader__',
    'builtins.__spec__', 'builtins.__builtins__', 'builtins.__dict__', 'builtins.BaseException', 'builtins.Exception',
    'builtins.__main__', 'numpy.core._multiarray_umath.add_docstring', 'numpy.lib.utils', 'numpy.lib.format.open_memmap',
    'numpy.save', 'numpy.savez', 'numpy.savetxt', 'numpy.loadtxt', 'numpy.genfromtxt', 'numpy.fromregex', 'numpy.DataSource',
    'numpy.lib._datasource', 'numpy.tofile', 'numpy.ndarray.tofile', 'numpy.ndarray.dump',
    // pickle re-entry: these unpickle nested bytes with the plain (unrestricted) loader
    'torch.storage._load_from_bytes', 'jsonpickle', 'numpy.core.multiarray._reconstruct_unsafe', 'torch._C', 'torch._weights_only_unpickler',
    'distutils', 'pkg_resources', 'antigravity', 'msvcrt', 'winreg', '_winreg', 'winsound', 'scipy.io', 'sklearn.datasets',
    'datasets.load', 'transformers.pipelines', 'onnxruntime', 'nturl2path', 'opcode', 'gc', 'linecache', 'zipimport',
    'concurrent', 'torch.classes', 'torch.utils.data.dataloader', '_sitebuiltins', 'sitecustomize', 'usercustomize', 'builtins.__loader__']
    .map((prefix) => ({ prefix, capability: 'code execution, import machinery or object introspection' })),
  // file system writes and reads
  ...['io', 'builtins.file', 'pathlib.Path', 'pathlib.PosixPath.write_text', 'pathlib.PosixPath.write_bytes', 'pathlib.PosixPath.open',
    'pathlib.PosixPath.unlink', 'pathlib.PosixPath.read_text', 'pathlib.PosixPath.read_bytes', 'pathlib.Path.write_text',
    'logging.FileHandler', 'logging.handlers', 'logging.basicConfig', 'distutils.file_util', 'distutils.dir_util',
    'distutils.archive_util', 'zipfile', 'tarfile', 'gzip.open', 'bz2.open', 'lzma.open', 'fileinput', 'filecmp', 'mmap',
    'sqlite3', 'csv.writer', 'configparser', 'netrc', 'mailbox', 'sndhdr', 'aifc', 'wave', 'sunau', 'chunk', 'tabnanny', 'genericpath']
    .map((prefix) => ({ prefix, capability: 'file system access' })),
  // network
  ...['socket', 'ssl', 'http', 'urllib', 'urllib3', 'requests', 'aiohttp', 'httpx', 'ftplib', 'smtplib', 'smtpd', 'poplib',
    'imaplib', 'nntplib', 'telnetlib', 'socketserver', 'asyncio', 'select', 'selectors', 'xmlrpc', 'email.utils', 'wsgiref',
    'paramiko', 'boto3', 'botocore', 'websocket', 'websockets', 'grpc', 'dns', 'pycurl', 'twisted', 'tornado', 'zmq']
    .map((prefix) => ({ prefix, capability: 'network access' })),
];

/**
 * Names that are dangerous in any module: code runners, loaders and shell helpers.
 * Applied to the last component of a non-allowlisted name, so a gadget in a module we have never
 * heard of (`somepkg.utils.run_command`) is still called malicious rather than merely unknown.
 */
const DANGEROUS_ATTRS =
  /^(eval|exec|execfile|execv\w*|execl\w*|spawn\w*|system|popen\w*|Popen|call|check_call|check_output|getoutput|getstatusoutput|run|runcode|runsource|runcommand|runctx|run_code|run_module|run_path|run_command|run_cmd|run_script|run_shell\w*|runstring|runfile|_run\w*|\w*_run|load|loads|load_module|import_module|__import__|resolve_name|locate|compile|compile_file|compile_command|load_source|load_config|load_state|open|urlopen|urlretrieve|create_connection|system_call|shell|\w*shell\w*|\w*subprocess\w*|\w*_cmd\w*|\w*command\w*|\w*_exec\w*|\w*exec_\w*|pipe_pager|pipepager|tempfilepager|pager|write_file|write_text|write_bytes|execWrapper|read_pickle|read_csv|read_table|read_parquet|read_hdf|read_sql\w*|read_json|read_excel|read_html|read_feather|read_fwf|read_clipboard|evaluate_\w*|fetch_\w*|get_entity|SetText|debug_script|debug_src|make_label|getlincoef|get_server_certificate|_builtin_type|_make_cell|subimport|_fill_function|_make_function|_make_skel_func|attrgetter|methodcaller|partial|reduce|__reduce__|__reduce_ex__|__setstate__|__getattribute__|__getattr__|__call__|__init__|__new__|__class__|__globals__|__builtins__|__subclasses__|__mro__|__bases__|__base__|__code__|__func__|__self__|__dict__|__module__|__loader__|__spec__|__import__|__closure__|__defaults__|__kwdefaults__|f_globals|f_locals|f_back|gi_frame|cr_frame|tb_frame)$/;

const LIBRARY_PREFIXES: Array<{ prefix: string; library: string }> = [
  { prefix: 'sklearn', library: 'scikit-learn' },
  { prefix: 'numpy', library: 'NumPy' },
  { prefix: 'scipy', library: 'SciPy' },
  { prefix: 'pandas', library: 'pandas' },
  { prefix: 'torch', library: 'PyTorch' },
  { prefix: 'xgboost', library: 'XGBoost' },
  { prefix: 'lightgbm', library: 'LightGBM' },
  { prefix: 'catboost', library: 'CatBoost' },
  { prefix: 'transformers', library: 'Hugging Face Transformers' },
  { prefix: 'tokenizers', library: 'Hugging Face Tokenizers' },
  { prefix: 'joblib', library: 'joblib' },
  { prefix: 'collections', library: 'Python standard library' },
];

export interface PolicyOptions {
  /** Extra qualified names (or `prefix.*`) the user accepts as safe. */
  allow?: readonly string[];
}

export interface Policy {
  classify(module: string, name: string): GlobalVerdict;
}

export function normaliseModule(module: string): string {
  const first = module.split('.')[0] ?? module;
  const alias = MODULE_ALIASES[first];
  if (alias === undefined) return module;
  return alias + module.slice(first.length);
}

function matchDanger(qualified: string): DangerRule | undefined {
  for (const rule of DANGER) {
    if (qualified === rule.prefix || qualified.startsWith(`${rule.prefix}.`)) return rule;
  }
  return undefined;
}

function builtinAllowed(q: string): boolean {
  return ALLOWED.has(q) || TORCH_STORAGE.test(q) || TORCH_DTYPE.test(q) || NUMPY_DTYPE_CLASS.test(q) || NUMPY_SCALAR.test(q);
}

/** Identifiers only: anything else in a module or name is a trick (newlines, slashes, spaces). */
const IDENT_PATH = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/**
 * The dangerous verdict for a (normalised) name, or undefined. This is "the dangerous set": the
 * capability prefixes, the code gadgets, dunder walks and gadget-like names in any module.
 */
function dangerOf(module: string, name: string, qualified: string): GlobalVerdict | undefined {
  // Every dotted suffix of the path is checked: `torch.serialization.os.system` reaches `os.system`.
  // Suffixes are taken from the full name and from every point where the attribute walk (the
  // dotted `name`, resolved by getattr from the imported module) could be holding a module.
  const parts = qualified.split('.');
  const moduleDepth = module.split('.').length;
  for (let i = 0; i < parts.length; i++) {
    if (i > 0 && i < moduleDepth) continue;
    const suffix = parts.slice(i).join('.');
    const via = i === 0 ? '' : ` (reached through ${parts.slice(0, i).join('.')})`;
    const gadget = matchGadget(suffix);
    if (gadget) return { cls: 'dangerous', qualified, reason: `code gadget: ${gadget.why}${via}` };
    const rule = matchDanger(suffix);
    if (rule) return { cls: 'dangerous', qualified, reason: `${rule.capability}${via}` };
  }
  const nameParts = name.split('.');
  for (const part of nameParts) {
    if (part.startsWith('__') && part.endsWith('__')) {
      return { cls: 'dangerous', qualified, reason: `dunder attribute \`${part}\` reaches interpreter internals` };
    }
  }
  const last = nameParts[nameParts.length - 1] ?? name;
  const anywhere = ANY_MODULE_GADGET_NAMES.get(last);
  if (anywhere) return { cls: 'dangerous', qualified, reason: `code gadget \`${last}\` in any module: ${anywhere.why}` };
  if (DANGEROUS_ATTRS.test(last)) {
    return { cls: 'dangerous', qualified, reason: `\`${last}\` runs code, loads data or reaches the OS in any module` };
  }
  return undefined;
}

/** `[module, name, qualified]` as CPython would resolve them: fix_imports first, then module aliases. */
export function resolveName(moduleRaw: string, nameRaw: string): [string, string, string] {
  const [m, name] = compatPickleName(moduleRaw, nameRaw);
  const module = normaliseModule(m);
  return [module, name, `${module}.${name}`];
}

export function createPolicy(options: PolicyOptions = {}): Policy {
  // Patterns are resolved like the names they are matched against (`posix.*` is `os.*`), and
  // remembered as written for the report.
  const extra = new Map<string, string>();
  const extraPrefixes: Array<[string, string]> = [];
  for (const a of options.allow ?? []) {
    if (a.endsWith('.*')) extraPrefixes.push([`${normaliseModule(a.slice(0, -2))}.`, a]);
    else {
      const dot = a.lastIndexOf('.');
      extra.set(dot > 0 ? resolveName(a.slice(0, dot), a.slice(dot + 1))[2] : a, a);
    }
  }
  /** The user pattern that accepts `q`, as written. */
  const userAllow = (q: string): string | undefined => extra.get(q) ?? extraPrefixes.find(([p]) => q.startsWith(p))?.[1];
  return {
    classify(moduleRaw: string, nameRaw: string): GlobalVerdict {
      const [module, name, qualified] = resolveName(moduleRaw, nameRaw);
      if (!IDENT_PATH.test(moduleRaw) || !IDENT_PATH.test(nameRaw)) {
        return { cls: 'dangerous', qualified, reason: 'a module or attribute name that is not a plain identifier path' };
      }
      if (builtinAllowed(qualified)) return { cls: 'allowed', qualified, reason: 'allowlisted' };
      // The dangerous set is judged before the user's --allow patterns: no pattern clears it.
      const danger = dangerOf(module, name, qualified);
      if (danger) {
        const pattern = userAllow(qualified);
        if (pattern !== undefined) {
          danger.allowIgnored = pattern;
          danger.reason += ` (--allow ${pattern} does not clear a dangerous capability)`;
        }
        return danger;
      }
      if (userAllow(qualified) !== undefined) return { cls: 'allowed', qualified, reason: 'allowed by --allow' };
      const nameParts = name.split('.');
      if (nameParts.length > 1) {
        // Dotted access through a module: allowed only if it is on the allowlist exactly.
        return { cls: 'unknown', qualified, reason: 'dotted attribute path through a module' };
      }
      for (const lib of LIBRARY_PREFIXES) {
        if (module === lib.prefix || module.startsWith(`${lib.prefix}.`)) {
          return { cls: 'library', qualified, reason: `${lib.library} class or function outside the allowlist` };
        }
      }
      return { cls: 'unknown', qualified, reason: 'not on the allowlist' };
    },
  };
}

/** Dangerous names that an `--allow` pattern would match, with why: a warning for the user. */
export interface AllowConflict {
  pattern: string;
  /** Dangerous names or prefixes the pattern covers (a few). */
  covers: string[];
  reason: string;
}

/** Most dangerous names listed per pattern in a warning. */
const ALLOW_CONFLICT_EXAMPLES = 5;

/**
 * The `--allow` patterns that would match a name in the dangerous set. Those names stay
 * `malicious`; the caller says so (stderr, report).
 */
export function allowConflicts(allow: readonly string[]): AllowConflict[] {
  const out: AllowConflict[] = [];
  const known = [...DANGER.map((r) => ({ name: r.prefix, why: r.capability })), ...CODE_GADGETS.map((g) => ({ name: g.name, why: `code gadget: ${g.why}` }))];
  for (const pattern of allow) {
    if (pattern.endsWith('.*')) {
      const p = pattern.slice(0, -2);
      const [, , q] = p.includes('.') ? resolveName(p.slice(0, p.lastIndexOf('.')), p.slice(p.lastIndexOf('.') + 1)) : [p, '', normaliseModule(p)];
      const hits = known.filter((k) => k.name === q || k.name.startsWith(`${q}.`) || q.startsWith(`${k.name}.`));
      if (hits.length > 0) {
        const covers = [...new Set(hits.map((h) => h.name))];
        out.push({ pattern, covers: covers.slice(0, ALLOW_CONFLICT_EXAMPLES), reason: (hits[0] as { why: string }).why });
      }
      continue;
    }
    const dot = pattern.lastIndexOf('.');
    if (dot <= 0) continue;
    const v = DEFAULT_POLICY.classify(pattern.slice(0, dot), pattern.slice(dot + 1));
    if (v.cls === 'dangerous') out.push({ pattern, covers: [v.qualified], reason: v.reason });
  }
  return out;
}

/** `--allow` warning text, one line per conflicting pattern. */
export function allowConflictWarnings(allow: readonly string[]): string[] {
  return allowConflicts(allow).map(
    (c) => `--allow ${c.pattern} matches dangerous names (${c.covers.join(', ')}${c.covers.length >= ALLOW_CONFLICT_EXAMPLES ? ', …' : ''}: ${c.reason}); they stay malicious: --allow never clears a dangerous capability`,
  );
}

/**
 * What payloads pass to a gadget, read from a rendered call (`fn('…', …)`, string arguments
 * quoted as Python reprs). A callable that is not on the allowlist and receives one is judged
 * malicious, so a gadget nobody has named yet still is.
 */
const PAYLOAD_KINDS: ReadonlyArray<{ kind: string; re: RegExp }> = [
  {
    kind: 'a shell command',
    re: /(\bcurl\s|\bwget\s|\/bin\/(ba|z|da)?sh\b|\bsh\s+-c\b|\bbash\s+-[ci]\b|\bpowershell\b|\bnc\s+-[elvn]|\bncat\b|\brm\s+-rf\b|\bchmod\s+\+x\b|\|\s*(ba)?sh\b|\/dev\/tcp\/|\/etc\/(passwd|shadow)\b|base64\s+(-d|--decode)|\bpython[0-9.]*\s+-c\b)/i,
  },
  {
    kind: 'Python source',
    re: /(__import__\s*\(|(?:^|[;'"(]|\\n)\s*(?:import\s+[A-Za-z_][\w.]*|from\s+[A-Za-z_][\w.]*\s+import\s)|\bos\.(system|popen|exec\w*|spawn\w*)\s*\(|\bsubprocess\.\w+\s*\(|\b(eval|exec|compile|getattr|setattr|globals|locals|breakpoint)\s*\(|\blambda\b[^:'"]{0,40}:|\bdef\s+[A-Za-z_]\w*\s*\(|__(builtins|globals|subclasses|class|code|import|loader|reduce|reduce_ex|mro|bases)__)/,
  },
  { kind: 'a URL', re: /\b(?:https?|ftp|sftp|file|s3|gs|hdfs|wss?|git\+\w+):\/\//i },
];

/** A quoted string argument that is entirely a dotted import path (`'os.system'`, `'pkg.mod:attr'`). */
const DOTTED_PATH_ARG = /(?:^|[(,\s=])(['"])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?)\1/g;
/** File names look like dotted paths; these last components mean "a file", not a module. */
const FILE_SUFFIX = /^(json|jsonl|txt|bin|pt|pth|safetensors|pkl|pickle|joblib|npy|npz|ya?ml|csv|tsv|onnx|h5|hdf5|keras|msgpack|model|gguf|ggml|ckpt|md|cfg|ini|toml|log|png|jpe?g|gif|wav|mp3|zip|tar|gz|tgz|bz2|xz|zst|parquet|arrow|tflite|pb|vocab|spm|tiktoken|html?|xml)$/i;

/** What kind of payload a rendered call carries, and the matching text, or undefined. */
export function payloadArgument(rendered: string): { kind: string; match: string } | undefined {
  for (const { kind, re } of PAYLOAD_KINDS) {
    const m = re.exec(rendered);
    if (m) return { kind, match: m[0] };
  }
  for (const m of rendered.matchAll(DOTTED_PATH_ARG)) {
    const path = m[2] as string;
    if (!path.includes('.') && !path.includes(':')) continue;
    const last = path.split(/[.:]/).pop() as string;
    if (!FILE_SUFFIX.test(last)) return { kind: 'a dotted import path', match: path };
  }
  return undefined;
}

/**
 * Bound methods of allowlisted torch objects, pickled by real tools as
 * `builtins.getattr(<instance>, '<method>')`: OneCycleLR keeps `anneal_func` and CyclicLR
 * `scale_fn` as bound methods in the `__dict__` their `state_dict()` returns (PyTorch 1.x). Only
 * these (class, method) pairs on an instance of the class are recognised; getattr stays dangerous.
 */
export const BOUND_METHODS: Readonly<Record<string, readonly string[]>> = {
  'torch.optim.lr_scheduler.OneCycleLR': ['_annealing_cos', '_annealing_linear'],
  'torch.optim.lr_scheduler.CyclicLR': ['_triangular_scale_fn', '_triangular2_scale_fn', '_exp_range_scale_fn'],
};

/** The global that pickles a bound method. */
export const BOUND_METHOD_GETTER = 'builtins.getattr';

/** Whether `owner.method` is a recognised bound method of an allowlisted torch object. */
export function isBoundMethod(owner: string, method: string): boolean {
  return BOUND_METHODS[owner]?.includes(method) === true;
}

export const DEFAULT_POLICY: Policy = createPolicy();
