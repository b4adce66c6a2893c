# modelguard restricted unpickler. Runs inside Pyodide, inside an isolated-vm isolate, inside a
# worker process. CPython's own pickle machine (_pickle.Unpickler) reads the stream; find_class and
# persistent_load are overridden so that no global is ever imported or resolved:
#   * allowlisted names map to the stand-ins below, which build plain descriptors;
#   * every other name becomes an interception placeholder: calling it, building it or setting its
#     state records the call (module, name, repr of the arguments) and yields another placeholder.
# The host classifies recorded names with its policy; this file never decides "safe".
#
# Output: a compact graph as JSON (every container once, shared references and cycles as ids) plus
# one blob of raw bytes (NumPy array payloads that live inside the pickle). Tensor storages are
# references ({"t": "storage", "key": ...}); their bytes never enter the VM.

import _compat_pickle
import io
import json
import pickle
import sys

ARG_REPR_CHARS = 200
MAX_CALLS = 1000
MAX_NODES = 5_000_000
MAX_DEPTH = 400

_calls = []
_imports = []
_notes = []
_costs = []
# (class, method) pairs the host recognises as bound methods of allowlisted torch objects
# (policy.ts BOUND_METHODS, sent with each run): getattr(<instance>, '<method>') on one of them
# builds a BoundMethod record instead of an intercepted getattr call.
_bound_methods = {}


# repr() of a memo-reference bomb is exponential and of a deep structure recursive: reprlib bounds
# both depth and items per container, so an argument's text costs O(1) whatever it holds.
_REPR = __import__("reprlib").Repr()
_REPR.maxlevel = 4
_REPR.maxtuple = _REPR.maxlist = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = _REPR.maxarray = 8
_REPR.maxstring = _REPR.maxother = 120
_REPR.maxlong = 60


def _short(value):
    try:
        text = _REPR.repr(value)
    except Exception as exc:  # a hostile __repr__ cannot exist here, but stay closed anyway
        text = "<unrepresentable %s>" % type(exc).__name__
    if len(text) > ARG_REPR_CHARS:
        text = text[:ARG_REPR_CHARS] + "…"
    return text


def _record(module, name, kind, args, kwargs=None):
    if len(_calls) >= MAX_CALLS:
        return
    parts = [_short(a) for a in args]
    if kwargs:
        parts += ["%s=%s" % (k, _short(v)) for k, v in kwargs.items()]
    _calls.append({"module": module, "name": name, "kind": kind, "args": ", ".join(parts)})


class _InterceptMeta(type):
    """Type of every placeholder class. Calling a placeholder records the call, never runs it."""

    def __call__(cls, *args, **kwargs):
        check = _COST_CHECKS.get("%s.%s" % _resolve(cls._mg_module, cls._mg_name))
        if check is not None:
            check("%s.%s" % _resolve(cls._mg_module, cls._mg_name), args, kwargs)
        _record(cls._mg_module, cls._mg_name, "call", args, kwargs)
        return _result(cls, "%s.%s(%s)" % (cls._mg_module, cls._mg_name, "…" if args or kwargs else ""), args)

    def __repr__(cls):
        return "%s.%s" % (cls._mg_module, cls._mg_name)

    def __getattr__(cls, attr):
        # Attribute access on a placeholder global (never happens through opcodes; kept closed).
        raise AttributeError(attr)


class Intercepted(metaclass=_InterceptMeta):
    """An intercepted global, or the (never computed) result of calling one."""

    _mg_module = "?"
    _mg_name = "?"

    def __new__(cls, *args, **kwargs):
        # NEWOBJ / NEWOBJ_EX: cls.__new__(cls, *args)
        _record(cls._mg_module, cls._mg_name, "new", args, kwargs)
        inst = _result(cls, "%s.%s.__new__(…)" % (cls._mg_module, cls._mg_name), args)
        inst._mg_built = True  # an instance of the class, as pickle builds instances
        return inst

    def __call__(self, *args, **kwargs):
        # Calling what an intercepted call returned (`f(x)(y)`, a getattr result): recorded as a
        # call of that result, and analysis goes on with another placeholder.
        mod, nm = self._mg_split()
        _record(mod, nm, "call", args, kwargs)
        return _result_named(mod, nm, "%s(…)" % object.__getattribute__(self, "_mg_origin"), args)

    def add(self, value):
        # ADDITEMS on something that is not a set calls its .add()
        _record(*self._mg_split(), "add", (value,))

    def __iter__(self):
        # list(x), set(x)… of a placeholder: CPython would run the object's __iter__.
        _record(*self._mg_split(), "iter", ())
        return iter(())

    def __setstate__(self, state):
        _record(*self._mg_split(), "setstate", (state,))
        self._mg_state = state

    def __setitem__(self, key, value):
        _record(*self._mg_split(), "setitem", (key, value))

    def append(self, value):
        _record(*self._mg_split(), "append", (value,))

    def extend(self, values):
        _record(*self._mg_split(), "extend", (list(values)[:8],))

    def _mg_split(self):
        # Calls on a result are attributed to the global that produced it: `mod.Name()`.
        return object.__getattribute__(self, "_mg_mod"), object.__getattribute__(self, "_mg_nm") + "()"

    def __repr__(self):
        try:
            return "<%s result>" % object.__getattribute__(self, "_mg_origin")
        except AttributeError:
            return "<intercepted>"


_placeholders = {}


def _result(cls, origin, args):
    return _result_named(cls._mg_module, cls._mg_name, origin, args)


def _result_named(module, name, origin, args):
    inst = object.__new__(Intercepted)
    inst._mg_origin = origin
    inst._mg_mod = module
    inst._mg_nm = name
    inst._mg_args = list(args)
    return inst


def _placeholder(module, name):
    key = (module, name)
    cls = _placeholders.get(key)
    if cls is None:
        cls = _InterceptMeta("Intercepted", (Intercepted,), {"_mg_module": module, "_mg_name": name})
        _placeholders[key] = cls
    return cls


# ----- descriptors built by the stand-ins -------------------------------------------------------


class Storage:
    __slots__ = ("key", "dtype", "location", "numel", "view")

    def __init__(self, key, dtype, location, numel, view=None):
        self.key, self.dtype, self.location, self.numel, self.view = key, dtype, location, numel, view


class Tensor:
    __slots__ = ("storage", "offset", "shape", "stride", "dtype", "requires_grad", "parameter", "extra", "state")

    def __init__(self, storage, offset, shape, stride, dtype=None):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)
        self.dtype = dtype
        self.requires_grad = False
        self.parameter = False
        self.extra = None
        self.state = None


class StorageType:
    """torch.FloatStorage & co: only carries the dtype name."""

    def __init__(self, qualified, dtype):
        self.qualified, self.dtype = qualified, dtype

    def __call__(self, *args):
        _notes.append("storage class %s called directly" % self.qualified)
        return _placeholder("torch", self.qualified.split(".")[-1])(*args)


class DType:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "torch." + self.name


class NDArray:
    """numpy.core.multiarray._reconstruct(ndarray, shape, typecode) followed by BUILD."""

    def __init__(self, *args):
        self.shape, self.dtype, self.fortran, self.data, self.objects = None, None, False, None, None
        self.file_offset, self.nbytes = None, None

    def __setstate__(self, state):
        # (version, shape, dtype, is_fortran, rawdata) or without version
        if len(state) == 5:
            state = state[1:]
        shape, dtype, fortran, raw = state
        self.shape, self.dtype, self.fortran = tuple(shape), dtype, bool(fortran)
        if isinstance(raw, (bytes, bytearray)):
            self.data = bytes(raw)
        elif isinstance(raw, str):  # protocol 0/1 keep raw bytes as latin-1 text
            self.data = raw.encode("latin-1")
        elif isinstance(raw, list):
            self.objects = raw
        else:
            self.objects = [raw]


def _ndarray_repr(self):
    dt = self.dtype.spec if isinstance(self.dtype, NPDType) else self.dtype
    return "<ndarray %s %s>" % (dt, tuple(self.shape or ()))


NDArray.__repr__ = _ndarray_repr
Tensor.__repr__ = lambda self: "<tensor %s %s>" % (self.dtype or (self.storage.dtype if isinstance(self.storage, Storage) else "?"), self.shape)
Storage.__repr__ = lambda self: "<storage %s %s>" % (self.key, self.dtype)


class NPDType:
    def __init__(self, spec, align=False, copy=False):
        self.spec, self.order, self.fields = spec, "|", None

    def __setstate__(self, state):
        # (version, endian, subdescr, names, fields, elsize, alignment, flags)
        if len(state) >= 2 and isinstance(state[1], str):
            self.order = state[1]
        if len(state) >= 5 and state[3] is not None:
            self.fields = list(state[3])


class NPScalar:
    def __init__(self, dtype, data=None):
        self.dtype, self.data = dtype, data
        if isinstance(data, str):
            self.data = data.encode("latin-1")


class Obj:
    """An allowlisted class that has no dedicated stand-in: kept as a plain record."""

    def __init__(self, qualified, args=(), kwargs=None):
        self.qualified, self.args, self.kwargs, self.state, self.items = qualified, list(args), kwargs or {}, None, None

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        if self.items is None:
            self.items = []
        self.items.append((key, value))

    def append(self, value):
        if self.items is None:
            self.items = []
        self.items.append(value)

    def extend(self, values):
        for v in values:
            self.append(v)

    def __call__(self, *args, **kwargs):
        # An instance of a user-allowed class, called: its __call__ would run. Recorded.
        module, _, name = self.qualified.rpartition(".")
        _record(module, name + "()", "call", args, kwargs)
        return _result_named(module, name + "()", "%s(…)(…)" % self.qualified, args)


class _PlainMeta(type):
    """Type of a user-allowed class (`allow`): calling it builds a plain Obj record."""

    def __call__(cls, *args, **kwargs):
        return Obj(cls.qualified, args, kwargs)


class ObjType(metaclass=_PlainMeta):
    qualified = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ: cls.__new__(cls, *args)
        return Obj(cls.qualified, args, kwargs)


_plain_types = {}


def _plain_type(qualified):
    cls = _plain_types.get(qualified)
    if cls is None:
        cls = _PlainMeta("Plain", (ObjType,), {"qualified": qualified})
        _plain_types[qualified] = cls
    return cls


class StateDict(dict):
    """collections.OrderedDict: a dict that also accepts BUILD state (torch sets `_metadata`)."""

    def __setstate__(self, state):
        self._mg_state = state

    def __reduce__(self):  # never pickled back; keeps pickle from probing
        raise TypeError("not picklable")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    t = Tensor(storage, storage_offset, size, stride)
    t.requires_grad = bool(requires_grad)
    return t


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    t = Tensor(storage, storage_offset, size, stride, dtype.name if isinstance(dtype, DType) else None)
    t.requires_grad = bool(requires_grad)
    return t


def _rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    if isinstance(data, Tensor):
        data.parameter = True
        data.requires_grad = bool(requires_grad)
        if rest:
            data.state = rest[0]
    return data


def _rebuild_qtensor(*args):
    _notes.append("quantized tensor (torch._utils._rebuild_qtensor) is not materialised")
    return Obj("torch._utils._rebuild_qtensor", args)


def _size(*args):
    if len(args) == 1 and isinstance(args[0], (tuple, list, range)):
        return _BUILTIN_STANDINS["tuple"](args[0])  # torch.Size(range(10**11)) is bounded like tuple()
    return tuple(args)


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    if isinstance(obj, str) and encoding in ("latin1", "latin-1", "iso-8859-1"):
        return obj.encode("latin-1")
    if isinstance(obj, str) and encoding in ("utf-8", "utf8", "ascii"):
        return obj.encode(encoding)
    return _placeholder("codecs", "encode")(obj, encoding)


def _reconstructor(cls, base, state=None):
    # copyreg._reconstructor(cls, object, None) is how protocol 0/1 build instances.
    if isinstance(cls, type) and issubclass(cls, Intercepted):
        return cls.__new__(cls)
    if isinstance(cls, type) and issubclass(cls, ObjType):
        return Obj(cls.qualified, ())
    return _placeholder("copyreg", "_reconstructor")(cls, base, state)


def _np_reconstruct(subtype, shape, typecode):
    if isinstance(subtype, type) and subtype is NDArray:
        return NDArray()
    return _placeholder("numpy.core.multiarray", "_reconstruct")(subtype, shape, typecode)


def _np_scalar(dtype, data=None):
    return NPScalar(dtype, data)


def _np_frombuffer(buf, dtype, shape, order):
    arr = NDArray()
    arr.shape, arr.dtype, arr.fortran = tuple(shape), dtype, order == "F"
    arr.data = bytes(buf)
    return arr


# ----- bound methods of allowlisted torch objects ------------------------------------------------


class BoundMethod:
    """getattr(<instance of an allowlisted torch class>, '<method>'): a recognised bound method.
    Nothing runs; calling it is recorded like any other call."""

    def __init__(self, module, cls_name, method):
        self.module, self.cls_name, self.method = module, cls_name, method

    def __call__(self, *args, **kwargs):
        name = "%s.%s" % (self.cls_name, self.method)
        _record(self.module, name, "call", args, kwargs)
        return _result_named(self.module, name, "%s.%s(…)" % (self.module, name), args)

    def __repr__(self):
        return "<bound method %s.%s.%s>" % (self.module, self.cls_name, self.method)


def _getattr(obj, name, *default):
    if not default and type(obj) is Intercepted and type(name) is str:
        d = object.__getattribute__(obj, "__dict__")
        if d.get("_mg_built"):
            module, cls_name = _resolve(d["_mg_mod"], d["_mg_nm"])
            if name in _bound_methods.get(module + "." + cls_name, ()):
                return BoundMethod(module, cls_name, name)
    return _placeholder("builtins", "getattr")(obj, name, *default)


# ----- allowlisted constructors under limits -----------------------------------------------------
# The VM builds what allowlisted names build. Some of them cost the real loader far more than the
# bytes that ask for it: bytearray(2**40), list(range(10**11)), Fraction('1e999999999') (computes
# 10**999999999). Their arguments are checked first; over a limit the cost is recorded (the host
# makes it a finding) and an empty stand-in is returned so the rest of the stream is still read.

MAX_BUILD_BYTES = 64 * 1024 * 1024  # one bytes/bytearray the VM will allocate
MAX_TOTAL_BUILD_BYTES = 256 * 1024 * 1024  # all of them together, in one run
MAX_BUILD_ITEMS = 1_000_000  # items of a container built from a range
MAX_INT_DIGITS = 4300  # decimal digits of an integer to parse or compute (CPython's int_max_str_digits)
MAX_GCD_BITS = 1 << 19  # Fraction(n, d) reduces by gcd, quadratic in the size: ~1 s of CPU at this size
_BYTES_PER_ITEM = 36  # a list slot plus a small int, what CPython spends per item (approximate)
_built_bytes = [0]


def _size_text(n):
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return "%.1f %s" % (n / scale, unit)
    return "%d bytes" % n


# When the caller wants the object graph (safeLoad), a stand-in would be silently different data:
# a cost over a limit then stops the run instead (a limit error), after it is recorded.
_stop_at_cost = [False]


def _cost(call, cost):
    if len(_costs) < MAX_CALLS:
        _costs.append({"call": call, "cost": cost})
    if _stop_at_cost[0]:
        raise _Limit("%s %s" % (call, cost))


def _call_text(qualified, args, kwargs=None):
    parts = [_short(a) for a in args] + ["%s=%s" % (k, _short(v)) for k, v in (kwargs or {}).items()]
    return "%s(%s)" % (qualified, ", ".join(parts))


def _range_len(r):
    try:
        return len(r)
    except OverflowError:  # longer than sys.maxsize
        return max(0, (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step)


def _digits_text(digits):
    return "an integer of %s digits (~%s)" % (format(digits, ","), _size_text(digits * 3322 // 8000))


def _decimal_exponent(text):
    """Digits and exponent of a decimal literal as Fraction and Decimal parse it (None if not one)."""
    import re
    m = re.match(r"\s*[-+]?(\d[\d_]*)?(?:\.(\d[\d_]*)?)?(?:[eE]([-+]?\d[\d_]*))?\s*$", text)
    if not m or not (m.group(1) or m.group(2)):
        return None
    digits = len((m.group(1) or "").replace("_", "")) + len((m.group(2) or "").replace("_", ""))
    exp_text = (m.group(3) or "0").replace("_", "")
    if len(exp_text.lstrip("+-")) > 20:  # an exponent with more digits than anything we can compute
        return digits, 10 ** 20
    return digits, int(exp_text)


def _decimal_of(x):
    """(digits, exponent) of a decimal.Decimal placeholder built from a string or a tuple."""
    if type(x) is not Intercepted:
        return None
    d = object.__getattribute__(x, "__dict__")
    if _resolve(d.get("_mg_mod", ""), d.get("_mg_nm", "")) != ("decimal", "Decimal"):
        return None
    args = d.get("_mg_args") or []
    if not args:
        return None
    a = args[0]
    if type(a) is str:
        return _decimal_exponent(a)
    if type(a) is tuple and len(a) == 3 and type(a[2]) is int and isinstance(a[1], (tuple, list)):
        return len(a[1]), a[2]
    return None


def _huge_power(qualified, args, kwargs, digits, exp, what):
    total = digits + abs(exp)
    if total > MAX_INT_DIGITS:
        _cost(_call_text(qualified, args, kwargs),
              "%s computes 10**%d: %s; CPython spends minutes of CPU and that memory on it (limit: %d digits)"
              % (what, abs(exp), _digits_text(total), MAX_INT_DIGITS))
        return True
    return False


def _check_fraction(qualified, args, kwargs):
    if not args:
        return
    bits = max((x.bit_length() for x in args[:2] if type(x) is int), default=0)
    if bits > MAX_GCD_BITS:
        _cost(_call_text(qualified, args, kwargs), "reduces %d-bit integers by gcd, quadratic in their size: ~%d s of CPU (limit: %d bits)"
              % (bits, (bits / MAX_GCD_BITS) ** 2, MAX_GCD_BITS))
        return
    a = args[0]
    if type(a) is str:
        if "/" in a:
            digits = sum(len(p.strip().replace("_", "")) for p in a.split("/"))
            if digits > MAX_INT_DIGITS:
                _cost(_call_text(qualified, args, kwargs), "parses %s (quadratic before Python 3.11; refused after)" % _digits_text(digits))
            return
        parsed = _decimal_exponent(a)
        if parsed is not None:
            _huge_power(qualified, args, kwargs, parsed[0], parsed[1], "Fraction(str)")
        return
    dec = _decimal_of(a)
    if dec is not None:
        _huge_power(qualified, args, kwargs, dec[0], dec[1], "Fraction(Decimal)")


def _check_iterable_consumer(qualified, args, kwargs):
    for a in list(args[:1]) + list((kwargs or {}).values())[:1]:
        if type(a) is range:
            n = _range_len(a)
            if n > MAX_BUILD_ITEMS:
                _cost(_call_text(qualified, args, kwargs),
                      "iterates a range of %s items (~%s if kept) (limit: %s)" % (format(n, ","), _size_text(n * _BYTES_PER_ITEM), format(MAX_BUILD_ITEMS, ",")))


# Allowlisted names the VM keeps as placeholders (the host drops their records) whose arguments
# can still cost the real loader: checked before the call is recorded.
_COST_CHECKS = {
    "fractions.Fraction": _check_fraction,
    "collections.Counter": _check_iterable_consumer,
    "collections.deque": _check_iterable_consumer,
}


class _BoundedMeta(type):
    """Type of the bounded builtins: a type (so NEWOBJ accepts it) whose call checks the cost first."""

    def __call__(cls, *args, **kwargs):
        real = cls._mg_real
        name = "builtins." + real.__name__
        if real in (bytes, bytearray) and len(args) == 1 and not kwargs and type(args[0]) is int and args[0] > 0:
            n = args[0]
            if n > MAX_BUILD_BYTES or _built_bytes[0] + n > MAX_TOTAL_BUILD_BYTES:
                _cost(_call_text(name, args), "allocates %s (limit: %s per object, %s in all)" % (_size_text(n), _size_text(MAX_BUILD_BYTES), _size_text(MAX_TOTAL_BUILD_BYTES)))
                return real()
            _built_bytes[0] += n
        # (bytes/bytearray of a range fail at its 257th item, dict at its first: never costly)
        if real in (list, tuple, set, frozenset) and args and type(args[0]) is range:
            n = _range_len(args[0])
            if n > MAX_BUILD_ITEMS:
                _cost(_call_text(name, args, kwargs), "builds %s items (~%s) (limit: %s)" % (format(n, ","), _size_text(n * _BYTES_PER_ITEM), format(MAX_BUILD_ITEMS, ",")))
                return real()
        if real is int and args and type(args[0]) in (str, bytes, bytearray) and (len(args) < 2 or args[1] not in (2, 4, 8, 16, 32)):
            digits = len(args[0])
            if digits > MAX_INT_DIGITS:
                _cost(_call_text(name, args, kwargs), "parses %s: quadratic before Python 3.11, refused after (limit: %d digits)" % (_digits_text(digits), MAX_INT_DIGITS))
                return 0
        if real is str and len(args) == 1 and type(args[0]) is int and args[0].bit_length() > MAX_INT_DIGITS * 3322 // 1000:
            digits = args[0].bit_length() * 301 // 1000
            _cost(_call_text(name, args, kwargs), "converts an integer of ~%s digits to text: quadratic before Python 3.11, refused after (limit: %d digits)" % (format(digits, ","), MAX_INT_DIGITS))
            return ""
        if real in (int, float, complex) and args:
            dec = _decimal_of(args[0])
            if dec is not None and real is int and _huge_power(name, args, kwargs, dec[0], dec[1], "int(Decimal)"):
                return 0
            if type(args[0]) is Intercepted:
                # int(x) of a placeholder runs x.__int__ in CPython: recorded, not run.
                return _placeholder("builtins", real.__name__)(*args, **kwargs)
        return real(*args, **kwargs)


def _bounded(real):
    def new(cls, *args):
        return real.__new__(real, *args)
    return _BoundedMeta(real.__name__, (), {"_mg_real": real, "__new__": new})


_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "UInt16Storage": "uint16", "UInt32Storage": "uint32", "UInt64Storage": "uint64",
    "Float8_e4m3fnStorage": "float8_e4m3fn", "Float8_e5m2Storage": "float8_e5m2",
    "QInt8Storage": "qint8", "QUInt8Storage": "quint8", "QInt32Storage": "qint32",
    "UntypedStorage": "uint8",
}

_TORCH_DTYPES = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int8", "uint8", "int16", "short", "int32", "int",
    "int64", "long", "bool", "complex64", "cfloat", "complex128", "cdouble", "uint16", "uint32", "uint64",
    "float8_e4m3fn", "float8_e5m2", "complex32", "chalf",
}
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "short": "int16", "int": "int32", "long": "int64",
                  "cfloat": "complex64", "cdouble": "complex128", "chalf": "complex32"}

_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg", "_codecs": "codecs", "numpy._core": "numpy.core"}

_BUILTINS = {
    "set": set, "frozenset": frozenset, "bytearray": bytearray, "bytes": bytes, "slice": slice, "complex": complex,
    "range": range, "list": list, "dict": dict, "tuple": tuple, "int": int, "float": float, "bool": bool, "str": str,
}
# What find_class hands out for them: the same builtins, behind the cost checks above.
_BUILTIN_STANDINS = {name: (_bounded(t) if t in (bytearray, bytes, list, tuple, set, frozenset, int, float, complex, str) else t)
                     for name, t in _BUILTINS.items()}

_STANDINS = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._utils._rebuild_qtensor": _rebuild_qtensor,
    "torch.Size": _size,
    "collections.OrderedDict": StateDict,
    "codecs.encode": _codecs_encode,
    "copyreg._reconstructor": _reconstructor,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy.core.numeric._frombuffer": _np_frombuffer,
    "numpy.ndarray": NDArray,
    "numpy.dtype": NPDType,
    "builtins.object": object,
    "builtins.getattr": _getattr,
}


def _normalise(module):
    for old, new in _MODULE_ALIASES.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old):]
    return module


def _resolve(module, name):
    """(module, name) as CPython's find_class resolves them for protocols 0-2 (fix_imports, through
    _compat_pickle, the interpreter's own table), then the module aliases above. Applied whatever
    the protocol, as the host's policy does: `__builtin__.eval` is builtins.eval."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return _normalise(module), name


class _Restricted:
    """find_class / persistent_load shared by the C unpickler and the pure-Python one (joblib)."""

    def _mg_init(self, allowed_plain):
        # `mypkg.*` entries accept every name under the prefix.
        self._allowed_plain = frozenset(a for a in allowed_plain if not a.endswith(".*"))
        self._allowed_prefixes = tuple(a[:-1] for a in allowed_plain if a.endswith(".*"))

    def find_class(self, module, name):
        # Never imports, never resolves. The answer depends only on the two strings.
        module, name = str(module), str(name)
        if len(_imports) < MAX_CALLS:
            _imports.append({"module": module, "name": name})
        mod, name = _resolve(module, name)
        qualified = mod + "." + name
        standin = _STANDINS.get(qualified)
        if standin is not None:
            return standin
        if mod == "builtins" and name in _BUILTIN_STANDINS:
            return _BUILTIN_STANDINS[name]
        if mod in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return StorageType(qualified, _STORAGE_DTYPES[name])
        if mod in ("torch.storage",) and name in ("UntypedStorage", "TypedStorage"):
            return StorageType(qualified, "uint8")
        if mod == "torch" and name in _TORCH_DTYPES:
            return DType(_DTYPE_ALIASES.get(name, name))
        if qualified in self._allowed_plain or any(qualified.startswith(p) for p in self._allowed_prefixes):
            return _plain_type(qualified)
        return _placeholder(module, name)

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            stype, key, location, numel = pid[1], pid[2], pid[3], pid[4]
            dtype = stype.dtype if isinstance(stype, StorageType) else None
            if dtype is None:
                _notes.append("storage with an unknown type %s" % _short(stype))
            view = None
            if len(pid) >= 6 and pid[5] is not None:
                view = pid[5]  # legacy: (view_key, offset, size)
            return Storage(str(key), dtype, str(location), int(numel) if isinstance(numel, int) else -1, view)
        _record("pickle", "persistent_load", "persistent_id", (pid,))
        return _placeholder("pickle", "persistent_load")(pid)


class RestrictedUnpickler(_Restricted, pickle.Unpickler):
    """CPython's C unpickler (what torch.load and pickle.load use)."""

    def __init__(self, file, allowed_plain):
        pickle.Unpickler.__init__(self, file, encoding="latin1")
        self._mg_init(allowed_plain)


class JoblibWrapper:
    """joblib.numpy_pickle.NumpyArrayWrapper: its BUILD is followed by the raw array bytes."""

    def __init__(self, *args):
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}


_STANDINS["joblib.numpy_pickle.NumpyArrayWrapper"] = JoblibWrapper


def _np_itemsize(spec):
    import re
    m = re.match(r"^([<>|=]?)([a-zA-Z])(\d*)$", spec or "")
    if not m:
        return None, False
    kind, size = m.group(2), m.group(3)
    if kind == "O":
        return 0, True
    if kind == "b" and not size:
        return 1, False
    if kind == "?":
        return 1, False
    if not size:
        return None, False
    return int(size) * (4 if kind == "U" else 1), False


class JoblibUnpickler(_Restricted, pickle._Unpickler):
    """The pure-Python unpickler joblib itself uses; after a NumpyArrayWrapper's BUILD it reads the
    array the way joblib does. Plain arrays are not copied: their file offset is recorded and
    skipped, and the host reads the bytes from the file. Object arrays are a nested pickle, loaded
    by the restricted C unpickler."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, allowed_plain):
        pickle._Unpickler.__init__(self, file, encoding="latin1")
        self._mg_init(allowed_plain)
        self._mg_file = file

    def load_build(self):
        pickle._Unpickler.load_build(self)
        top = self.stack[-1]
        if isinstance(top, JoblibWrapper):
            self.stack[-1] = self._mg_read_array(top.state)

    dispatch[pickle.BUILD[0]] = load_build

    def _mg_read_array(self, st):
        f = self._mg_file
        dt = st.get("dtype")
        spec = dt.spec if isinstance(dt, NPDType) else str(dt)
        itemsize, is_object = _np_itemsize(spec)
        shape = tuple(st.get("shape") or ())
        arr = NDArray()
        arr.shape, arr.dtype, arr.fortran = shape, dt if isinstance(dt, NPDType) else NPDType(spec), st.get("order") == "F"
        if is_object:
            nested = RestrictedUnpickler(f, self._allowed_plain | frozenset(p + "*" for p in self._allowed_prefixes)).load()
            return nested
        if itemsize is None:
            raise pickle.UnpicklingError("joblib array with unsupported dtype %r" % (spec,))
        if st.get("numpy_array_alignment_bytes") is not None:
            pad = f.read(1)
            if len(pad) != 1:
                raise pickle.UnpicklingError("joblib array padding truncated")
            f.seek(pad[0], 1)
        count = 1
        for d in shape:
            count *= int(d)
        nbytes = count * itemsize
        start = f.tell()
        total = f.seek(0, 2)
        if start + nbytes > total:
            raise pickle.UnpicklingError("joblib array data runs past the end of the file")
        f.seek(start + nbytes)
        arr.file_offset, arr.nbytes = start, nbytes
        return arr


# ----- graph encoding ---------------------------------------------------------------------------


class _Encoder:
    def __init__(self):
        self.ids = {}
        self.nodes = 0
        self.blob = bytearray()
        self.keep = []  # keeps encoded objects alive so id() stays unique

    def blob_ref(self, data):
        off = len(self.blob)
        self.blob += data
        return {"t": "blob", "o": off, "n": len(data)}

    def enc(self, v, depth=0):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Limit("object graph has more than %d nodes" % MAX_NODES)
        if v is None or v is True or v is False:
            return v
        t = type(v)
        if t is int:
            if -(2 ** 53) < v < 2 ** 53:
                return v
            return {"t": "int", "v": str(v)}
        if t is float:
            if v != v or v in (float("inf"), float("-inf")):
                return {"t": "float", "v": repr(v)}
            return {"t": "float", "v": v} if v == int(v) and abs(v) < 2 ** 53 else v
        if t is str:
            return v
        if depth > MAX_DEPTH:
            raise _Limit("object graph nested deeper than %d levels" % MAX_DEPTH)
        oid = id(v)
        if oid in self.ids:
            return {"t": "ref", "id": self.ids[oid]}
        nid = len(self.ids)
        self.ids[oid] = nid
        self.keep.append(v)
        d = depth + 1
        if t is bytes or t is bytearray:
            return {"t": "bytes", "id": nid, "b": self.blob_ref(v)}
        if t is tuple:
            return {"t": "tuple", "id": nid, "v": [self.enc(x, d) for x in v]}
        if t is list:
            return {"t": "list", "id": nid, "v": [self.enc(x, d) for x in v]}
        if t is dict or t is StateDict:
            out = {"t": "dict", "id": nid, "k": [], "v": []}
            if t is StateDict:
                out["ordered"] = True
            for k, x in v.items():
                out["k"].append(self.enc(k, d))
                out["v"].append(self.enc(x, d))
            return out
        if t is set or t is frozenset:
            return {"t": "set", "id": nid, "v": [self.enc(x, d) for x in v]}
        if t is complex:
            return {"t": "complex", "id": nid, "re": v.real, "im": v.imag}
        if t is slice or t is range:
            return {"t": "obj", "id": nid, "cls": "builtins." + t.__name__, "args": [self.enc(x, d) for x in (v.start, v.stop, v.step)]}
        if t is Tensor:
            return {"t": "tensor", "id": nid, "storage": self.enc(v.storage, d), "offset": self.enc(v.offset, d),
                    "shape": [self.enc(x, d) for x in v.shape], "stride": [self.enc(x, d) for x in v.stride],
                    "dtype": v.dtype, "requires_grad": v.requires_grad, "parameter": v.parameter}
        if t is Storage:
            view = None
            if v.view is not None:
                view = self.enc(v.view, d)
            return {"t": "storage", "id": nid, "key": v.key, "dtype": v.dtype, "location": v.location, "numel": v.numel, "view": view}
        if t is NDArray:
            dt = v.dtype
            out = {"t": "ndarray", "id": nid, "shape": [self.enc(x, d) for x in (v.shape or ())], "fortran": v.fortran,
                   "dtype": self.enc_dtype(dt)}
            if v.data is not None:
                out["data"] = self.blob_ref(v.data)
            elif v.file_offset is not None:
                out["file"] = {"o": v.file_offset, "n": v.nbytes}
            else:
                out["objects"] = self.enc(v.objects or [], d)
            return out
        if t is NPScalar:
            return {"t": "npscalar", "id": nid, "dtype": self.enc_dtype(v.dtype),
                    "data": self.blob_ref(v.data) if isinstance(v.data, (bytes, bytearray)) else None}
        if t is NPDType:
            return {"t": "npdtype", "id": nid, "dtype": self.enc_dtype(v)}
        if t is DType:
            return {"t": "dtype", "id": nid, "name": v.name}
        if t is StorageType:
            return {"t": "global", "id": nid, "name": v.qualified}
        if t is Obj:
            out = {"t": "obj", "id": nid, "cls": v.qualified, "args": [self.enc(x, d) for x in v.args]}
            if v.kwargs:
                out["kwargs"] = self.enc(dict(v.kwargs), d)
            if v.state is not None:
                out["state"] = self.enc(v.state, d)
            if v.items is not None:
                out["items"] = self.enc(v.items, d)
            return out
        if isinstance(v, type) and issubclass(v, ObjType):
            return {"t": "global", "id": nid, "name": v.qualified}
        if t is Intercepted:
            out = {"t": "intercepted", "id": nid, "origin": object.__getattribute__(v, "_mg_origin")}
            d_ = object.__getattribute__(v, "__dict__")
            if d_.get("_mg_args"):
                out["args"] = [self.enc(x, d) for x in d_["_mg_args"]]
            if "_mg_state" in d_:
                out["state"] = self.enc(d_["_mg_state"], d)
            return out
        if isinstance(v, type) and issubclass(v, Intercepted):
            return {"t": "global", "id": nid, "name": "%s.%s" % (v._mg_module, v._mg_name), "intercepted": True}
        if v is object:
            return {"t": "global", "id": nid, "name": "builtins.object"}
        if t is object:
            return {"t": "obj", "id": nid, "cls": "builtins.object", "args": []}
        if isinstance(v, type) or callable(v):
            name = getattr(v, "__name__", "?")
            builtin = any(v is b for b in _BUILTINS.values()) or any(v is b for b in _BUILTIN_STANDINS.values())
            return {"t": "global", "id": nid, "name": "builtins." + name if builtin else "standin." + name}
        return {"t": "repr", "id": nid, "v": _short(v)}

    def enc_dtype(self, dt):
        if isinstance(dt, NPDType):
            spec = dt.spec if isinstance(dt.spec, str) else _short(dt.spec)
            return {"spec": spec, "order": dt.order, "fields": dt.fields}
        if isinstance(dt, str):
            return {"spec": dt, "order": "|", "fields": None}
        return {"spec": _short(dt), "order": "|", "fields": None}


class _Limit(Exception):
    pass


# Objects whose deallocation would recurse deeper than the VM's native (wasm) stack allows. They
# are parked here and the host disposes the whole isolate after the call instead.
_graveyard = []
RECYCLE_INPUT_BYTES = 8 * 1024
RECYCLE_DEPTH = 1000


def _children(o):
    t = type(o)
    if t in (list, tuple, set, frozenset):
        return o
    if isinstance(o, dict):
        return list(o.keys()) + list(o.values())
    if t is Obj:
        return list(o.args) + [o.state, o.items]
    if t is Intercepted:
        d = object.__getattribute__(o, "__dict__")
        return list(d.get("_mg_args") or ()) + [d.get("_mg_state")]
    if t is NDArray:
        return [o.objects]
    return ()


def _too_deep(roots, limit=RECYCLE_DEPTH, budget=2_000_000):
    """Iterative depth check (never recursive, so it cannot overflow what it measures)."""
    stack = [(r, 1) for r in roots]
    seen = set()
    keep = []
    while stack:
        o, depth = stack.pop()
        if depth > limit:
            return True
        kids = _children(o)
        if not kids:
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        keep.append(o)
        budget -= 1
        if budget < 0:
            return True
        for c in kids:
            stack.append((c, depth + 1))
    return False


def _mg_run(data, config_json):
    """Loads up to `pickles` consecutive pickles from `data`; returns [json, blob]."""
    config = json.loads(str(config_json))
    if hasattr(data, "to_bytes"):
        data = data.to_bytes()
    del _calls[:]
    del _imports[:]
    del _notes[:]
    del _costs[:]
    _built_bytes[0] = 0
    _stop_at_cost[0] = bool(config.get("graph", True))
    _bound_methods.clear()
    for owner, methods in (config.get("bound") or {}).items():
        _bound_methods[str(owner)] = frozenset(str(m) for m in methods)
    results = []
    error = None
    end = 0
    f = io.BytesIO(bytes(data))
    enc = _Encoder()
    allowed_plain = frozenset(config.get("allow", []))
    u = None
    try:
        for _ in range(int(config.get("pickles", 1))):
            if config.get("all") and f.tell() >= len(data):
                break
            u = JoblibUnpickler(f, allowed_plain) if config.get("joblib") else RestrictedUnpickler(f, allowed_plain)
            obj = u.load()
            end = f.tell()
            results.append(obj)
            if config.get("all") and f.tell() >= len(data):
                break
    except _Limit as exc:
        error = "limit: %s" % exc
    except RecursionError:
        error = "limit: recursion"
    except MemoryError:
        error = "MemoryError: the pickle asked for more memory than the VM allows"
    except BaseException as exc:  # noqa: BLE001 — every failure is reported, none is fatal
        error = "%s: %s" % (type(exc).__name__, _short(str(exc)))
    graph = None
    if config.get("graph", True):
        try:
            graph = [enc.enc(r) for r in results]
        except _Limit as exc:
            error = error or "limit: %s" % exc
            graph = None
        except RecursionError:
            error = error or "limit: recursion while encoding"
            graph = None
    out = {"objects": graph, "calls": list(_calls), "imports": list(_imports), "notes": list(_notes), "costs": list(_costs), "end": end,
           "error": error, "count": len(results)}
    recycle = False
    if len(data) > RECYCLE_INPUT_BYTES and (error is not None or _too_deep(results)):
        # A large stream that broke (its half-built objects sit in the unpickler) or built a deep
        # graph: freeing it would recurse past the native stack. Park it; the isolate is replaced.
        _graveyard.append((u, results, enc.keep))
        recycle = True
    out["recycle"] = recycle
    text = json.dumps(out, ensure_ascii=True, allow_nan=False)
    enc.keep = []
    _placeholders.clear()
    _plain_types.clear()
    return [text, bytes(enc.blob), recycle]


# ----- differential testing (test/formats/differential.test.ts; never used by a scan) ------------
# Runs many small streams in one call, each through CPython's C unpickler (what pickle.load and
# torch.load run) and through the pure-Python one with every opcode counted. Both resolve every
# name and persistent id to one permissive stand-in, so only the pickle machine itself can fail.


class _DiffAnyMeta(type):
    def __call__(cls, *args, **kwargs):
        return cls

    def __setstate__(cls, state):
        pass

    def append(cls, value):
        pass

    def extend(cls, values):
        pass

    def add(cls, value):
        pass

    def __setitem__(cls, key, value):
        pass


def _diff_any_new(cls, *args, **kwargs):
    return cls


_DiffAny = _DiffAnyMeta("Any", (), {"__new__": _diff_any_new})


class _DiffC(pickle.Unpickler):
    def find_class(self, module, name):
        self.mg_imports.append([str(module), str(name)])
        return _DiffAny

    def persistent_load(self, pid):
        return _DiffAny


class _DiffPy(pickle._Unpickler):
    find_class = _DiffC.find_class
    persistent_load = _DiffC.persistent_load

    def mg_pos(self):
        frame = getattr(self, "_unframer", None)
        frame = frame.current_frame if frame is not None else None
        if frame:
            with frame.getbuffer() as buf:
                size = buf.nbytes
            return self.mg_file.tell() - size + frame.tell()
        return self.mg_file.tell()


def _diff_counted(fn):
    def run(self):
        self.mg_ops += 1
        self.mg_at = self.mg_pos() - 1
        self.mg_in = True
        fn(self)
        self.mg_in = False
    return run


def _diff_invalid(self):
    self.mg_at = self.mg_pos() - 1
    self.mg_in = True
    raise pickle.UnpicklingError("invalid load key")


_DiffPy.dispatch = {k: _diff_counted(v) for k, v in pickle._Unpickler.dispatch.items()}
for _k in range(256):
    _DiffPy.dispatch.setdefault(_k, _diff_invalid)


def _diff_one(data):
    f = io.BytesIO(data)
    u = _DiffC(f, encoding="latin1")
    u.mg_imports = []
    try:
        u.load()
        c = [True, f.tell(), u.mg_imports, None]
    except BaseException as exc:  # noqa: BLE001 — every failure is an outcome here
        # With a BytesIO (no peek) and outside frames the C unpickler reads exactly what each
        # opcode asks for, so the file position is where the failing opcode's reads ended.
        c = [False, f.tell(), u.mg_imports, "%s: %s" % (type(exc).__name__, _short(str(exc)))]
    f = io.BytesIO(data)
    p = _DiffPy(f, encoding="latin1")
    p.mg_imports, p.mg_file, p.mg_ops, p.mg_at, p.mg_in = [], f, 0, -1, False
    try:
        p.load()
        py = [True, f.tell(), p.mg_imports, p.mg_ops, -1, None]
    except BaseException as exc:  # noqa: BLE001
        try:
            at = p.mg_at if p.mg_in else p.mg_pos()
        except BaseException:  # noqa: BLE001
            at = -2
        py = [False, f.tell(), p.mg_imports, p.mg_ops, at, "%s: %s" % (type(exc).__name__, _short(str(exc)))]
    return c + py


def _mg_diff_batch(data):
    """data: streams as [u32 little-endian length][bytes]...; returns one result row per stream."""
    rows = []
    pos = 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        rows.append(_diff_one(bytes(data[pos + 4:pos + 4 + n])))
        pos += 4 + n
    return rows


_mg_run_single = _mg_run


def _mg_run(data, config_json):  # noqa: F811 — the batch entry wraps the scan entry
    config = json.loads(str(config_json))
    if not config.get("diffBatch"):
        return _mg_run_single(data, config_json)
    if hasattr(data, "to_bytes"):
        data = data.to_bytes()
    out = {"objects": None, "calls": [], "imports": [], "notes": [], "end": 0, "error": None, "count": 0,
           "recycle": False, "diff": _mg_diff_batch(bytes(data))}
    return [json.dumps(out, ensure_ascii=True), b"", False]
