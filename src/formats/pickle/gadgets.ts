/**
 * Code gadgets: callables that import by name, evaluate or compile a string, fetch a URL, or
 * unpickle again. A pickle that reaches one of them runs code chosen by whoever wrote the file,
 * wherever the function lives (standard library, PyTorch, NumPy, scikit-learn, joblib), so each is
 * `malicious` on sight, `--allow` notwithstanding.
 *
 * One entry per gadget. `name` matches the qualified name itself and anything below it (a class
 * matches its methods). `anyModule` also matches the last component in any module, for names
 * distinctive enough that a re-export (`somepkg.compat.get_type_hints`) is the same function.
 * `why` is the reason a report gives; keep it to what the function does with its argument.
 */
export interface Gadget {
  name: string;
  why: string;
  anyModule?: boolean;
}

export const CODE_GADGETS: readonly Gadget[] = [
  // ----- evaluate a string -----
  { name: 'typing.get_type_hints', anyModule: true, why: 'evaluates string annotations (`__annotations__`) with eval()' },
  { name: 'typing.ForwardRef', anyModule: true, why: 'compiles its string argument; evaluating it runs eval()' },
  { name: 'typing._eval_type', anyModule: true, why: 'evaluates ForwardRef strings with eval()' },
  { name: 'typing._type_check', why: 'turns a string argument into a ForwardRef that is later eval()ed' },
  { name: 'typing.NamedTuple', why: 'builds a class from field specs, compiling its methods with eval()' },
  { name: 'typing.TypedDict', why: 'builds a class whose string annotations become ForwardRefs evaluated with eval()' },
  { name: 'dataclasses._create_fn', anyModule: true, why: 'exec()s Python source text it is given' },
  { name: 'dataclasses._FuncBuilder', why: 'collects Python source text and exec()s it (Python 3.13+)' },
  { name: 'dataclasses.make_dataclass', anyModule: true, why: 'creates a class and exec()s generated methods' },
  { name: 'dataclasses._process_class', why: 'generates dataclass methods as source and exec()s them' },
  { name: 'dataclasses.dataclass', why: 'generates methods as source and exec()s them' },
  { name: 'collections.namedtuple', why: 'compiles a constructor from field names with eval()' },
  { name: 'builtins.str.format', why: 'format fields walk attributes and items of the arguments (`{0.__globals__}`)' },
  { name: 'builtins.str.format_map', why: 'format fields walk attributes and items of the mapping' },
  { name: 'optparse.Values.read_file', why: 'exec()s the file it is given' },
  { name: 'optparse.Values.read_module', why: 'imports the module named by its argument' },
  { name: 'numpy.lib.utils.safe_eval', anyModule: true, why: 'evaluates a string (ast.literal_eval); a string-to-object gadget' },
  { name: 'numpy.lib._utils_impl.safe_eval', why: 'evaluates a string (ast.literal_eval); a string-to-object gadget' },
  { name: 'torch.utils.benchmark', why: 'Timer compiles and runs statement strings (timeit)' },
  { name: 'torch._jit_internal', why: 'TorchScript internals resolve names and evaluate type strings' },
  { name: 'torch._sources', why: 'parses and compiles Python source' },
  { name: 'torch.compiler', why: 'compiles and runs generated code' },
  { name: 'annotationlib', why: 'evaluates string annotations (Python 3.14: ForwardRef.evaluate, get_annotations)' },
  { name: 'patsy', why: 'evaluates formula strings as Python expressions' },
  { name: 'asteval', why: 'evaluates Python expression strings' },
  { name: 'simpleeval', why: 'evaluates Python expression strings' },
  // ----- import by dotted name -----
  { name: 'torch._utils._import_dotted_name', anyModule: true, why: 'imports the dotted module path it is given' },
  { name: 'torch.utils._import_utils', why: 'imports optional modules by name' },
  { name: 'torch._library', why: 'registers and loads operator libraries by name' },
  { name: 'warnings._getcategory', anyModule: true, why: 'imports the dotted module path it is given' },
  { name: 'warnings._setoption', why: 'imports the warning category named in its argument' },
  { name: 'warnings._processoptions', why: 'imports the warning categories named in its arguments' },
  { name: 'xml.dom.domreg.getDOMImplementation', why: 'imports the module named by its argument' },
  { name: 'xml.sax.make_parser', why: 'imports each module named in its argument' },
  { name: 'xml.sax._create_parser', why: 'imports the module named by its argument' },
  { name: 'smtpd', why: 'imports the class named on its command line' },
  { name: 'numpy.compat.py3k.npy_load_module', why: 'loads a Python source file as a module' },
  { name: 'numpy.compat', why: 'Python 2/3 shims that load modules from files' },
  { name: 'unittest.mock._importer', why: 'imports the dotted path it is given' },
  { name: 'mock', why: 'the standalone mock package: imports the dotted paths it patches' },
  { name: 'sklearn.utils.discovery', why: 'imports every scikit-learn module (pkgutil.walk_packages)' },
  { name: 'sklearn.utils._testing', why: 'test helpers that run Python scripts and subprocesses' },
  { name: 'sklearn.utils._show_versions', why: 'imports modules by name to report their versions' },
  { name: 'import_string', anyModule: true, why: 'imports the dotted path it is given' },
  { name: 'import_from_string', anyModule: true, why: 'imports the dotted path it is given' },
  { name: 'import_object', anyModule: true, why: 'imports the dotted path it is given' },
  { name: 'import_by_path', anyModule: true, why: 'imports the dotted path it is given' },
  { name: 'dynamic_import', anyModule: true, why: 'imports the dotted path it is given' },
  { name: 'get_class_from_dynamic_module', anyModule: true, why: 'downloads and imports a module (trust_remote_code)' },
  { name: 'copyreg.add_extension', why: 'maps an EXT code to a module and name: later pickles import it by number' },
  { name: 'copyreg.pickle', why: 'registers a reducer: changes what later pickling and copying run' },
  { name: 'copyreg.constructor', why: 'registers a callable as a safe constructor' },
  { name: 'torch.serialization.add_safe_globals', why: "widens torch.load(weights_only=True)'s allowlist for later loads" },
  { name: 'torch.serialization.safe_globals', why: "widens torch.load(weights_only=True)'s allowlist" },
  { name: 'torch.serialization.register_package', why: 'registers tagger and deserializer hooks that torch.load calls' },
  { name: 'torch.utils.hipify', why: 'rewrites source files on disk' },
  // ----- fetch a URL (and usually unpickle what it fetched) -----
  { name: 'torch.utils.model_zoo', why: 'load_url fetches a URL and torch.load()s it: a second, unchecked pickle' },
  { name: 'load_url', anyModule: true, why: 'fetches a URL (torch.utils.model_zoo.load_url and copies unpickle it)' },
  { name: 'torch.hub.load_state_dict_from_url', anyModule: true, why: 'fetches a URL and torch.load()s it' },
  { name: 'torch.hub.download_url_to_file', anyModule: true, why: 'fetches a URL to a file' },
  { name: 'torch.hub.load', why: 'fetches a repository and runs its hubconf.py' },
  { name: 'torch.utils.tensorboard', why: 'writes event files and imports tensorboard' },
  { name: 'transformers.utils.hub', why: 'downloads files from a model hub' },
  { name: 'from_pretrained', anyModule: true, why: 'downloads and loads a model: its pickles and, with trust_remote_code, its Python code' },
  { name: 'joblib.memory', why: 'a Memory or MemorizedResult reads cached pickles from a folder the pickle names' },
  { name: 'joblib.disk', why: 'creates and removes folders it is given' },
  { name: 'joblib.pool', why: 'starts worker processes' },
  { name: 'joblib._parallel_backends', why: 'starts worker processes and threads' },
  { name: 'joblib._memmapping_reducer', why: 'opens the files it is given as memory maps' },
  { name: 'joblib.backports', why: 'make_memmap opens the file it is given' },
  // ----- unpickle again -----
  { name: 'torch.utils.show_pickle', why: 'unpickles the file it is given' },
  { name: 'joblib.numpy_pickle_utils', why: 'opens and unpickles files and streams' },
  { name: 'joblib.numpy_pickle_compat', why: 'unpickles old joblib files with the plain unpickler' },
  { name: 'numpy.core.multiarray.fromfile', why: 'reads the file named by its argument' },
  { name: 'numpy._core.multiarray.fromfile', why: 'reads the file named by its argument' },
  { name: 'numpy.core.records.fromfile', why: 'reads the file named by its argument' },
  { name: 'numpy.rec.fromfile', why: 'reads the file named by its argument' },
];

/** Last components of `anyModule` gadgets. */
export const ANY_MODULE_GADGET_NAMES: ReadonlyMap<string, Gadget> = new Map(
  CODE_GADGETS.filter((g) => g.anyModule).map((g) => [g.name.slice(g.name.lastIndexOf('.') + 1), g] as const),
);

/** The gadget whose name is `qualified` or a dotted prefix of it. */
export function matchGadget(qualified: string): Gadget | undefined {
  for (const g of CODE_GADGETS) {
    if (qualified === g.name || qualified.startsWith(`${g.name}.`)) return g;
  }
  return undefined;
}
