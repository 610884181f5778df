"""lowbit: low-bit quantization kernels for NVIDIA GPUs, specialized per
problem, JIT-compiled with NVRTC and cached on disk.

A ctypes binding of liblowbit.so (standard library only; numpy and torch are
used when given, never required). The library is found through
$LOWBIT_LIBRARY, the package directory, or the system search path.

    import lowbit
    with lowbit.Context.offline("sm_90a") as ctx:          # no GPU needed
        plan = ctx.quantize_plan(shape=(64, 4096), x_dtype="bf16", q_dtype="s8")
        print(plan.describe())

Failures raise LowbitError (a subclass per status, e.g. NoDeviceError), with
.status, .code and lowbit's detailed .message. Contexts and plans free their
handles on close() / with-blocks (and, as a safety net, when collected). As
lowbit.h documents, a Context may be shared between threads and a Plan may run
from many threads at once.

Device memory may be given as an int (a CUdeviceptr), an object with
__cuda_array_interface__ (torch, CuPy, Numba) or one with __dlpack__; streams
as None, an int, or an object with .cuda_stream / .ptr / __cuda_stream__.
"""
import ctypes
import enum
import json
import threading
from ctypes import byref, c_size_t, c_void_p

from . import _ffi
from ._ffi import lib as _lib

__all__ = [
    "ArgRole", "CacheMode", "CacheStats", "Context", "DType", "DeviceInfo", "LogLevel", "LowbitError", "Plan",
    "QuantizeDesc", "QuantizeOp", "Scope", "Status", "WqFormat", "WqOp", "device_pointer", "host_pointer", "last_error_message",
    "reference_run", "status_string", "version_number", "version_string",
]

# --------------------------------------------------------------------------
# Enumerations
# --------------------------------------------------------------------------


class Status(enum.IntEnum):
    OK = _ffi.LOWBIT_OK
    MISALIGNED = _ffi.LOWBIT_MISALIGNED
    INVALID_PROBLEM = _ffi.LOWBIT_INVALID_PROBLEM
    UNSUPPORTED = _ffi.LOWBIT_UNSUPPORTED
    WORKSPACE_TOO_SMALL = _ffi.LOWBIT_WORKSPACE_TOO_SMALL
    INVALID_ARGUMENT = _ffi.LOWBIT_INVALID_ARGUMENT
    NO_DEVICE = _ffi.LOWBIT_NO_DEVICE
    NO_COMPILER = _ffi.LOWBIT_NO_COMPILER
    COMPILE_FAILED = _ffi.LOWBIT_COMPILE_FAILED
    CUDA_ERROR = _ffi.LOWBIT_CUDA_ERROR
    OUT_OF_MEMORY = _ffi.LOWBIT_OUT_OF_MEMORY
    CACHE_IO = _ffi.LOWBIT_CACHE_IO
    INTERNAL = _ffi.LOWBIT_INTERNAL


class DType(enum.IntEnum):
    F32 = _ffi.LOWBIT_DTYPE_F32
    F64 = _ffi.LOWBIT_DTYPE_F64
    F16 = _ffi.LOWBIT_DTYPE_F16
    BF16 = _ffi.LOWBIT_DTYPE_BF16
    S8 = _ffi.LOWBIT_DTYPE_S8
    U8 = _ffi.LOWBIT_DTYPE_U8
    S4 = _ffi.LOWBIT_DTYPE_S4
    U4 = _ffi.LOWBIT_DTYPE_U4
    S32 = _ffi.LOWBIT_DTYPE_S32

    @property
    def lowbit_name(self):
        """lowbit's short name: "f32", "bf16", "s8", ..."""
        return _lib.lowbit_dtype_name(int(self)).decode()

    @classmethod
    def of(cls, value):
        """A DType from a DType/int, a lowbit name ("bf16"), a numpy dtype name
        ("float16", "int8") or a numpy / torch dtype object."""
        if isinstance(value, (cls, int)):
            return cls(value)
        name = getattr(value, "name", None) if not isinstance(value, str) else value
        if name is None:
            name = str(value)
        name = str(name).lower().replace("torch.", "")
        if name in _DTYPE_ALIASES:
            return _DTYPE_ALIASES[name]
        raise ValueError("lowbit: unknown dtype %r" % (value,))


_DTYPE_ALIASES = {
    "f32": DType.F32, "float32": DType.F32, "float": DType.F32,
    "f64": DType.F64, "float64": DType.F64, "double": DType.F64,
    "f16": DType.F16, "float16": DType.F16, "half": DType.F16,
    "bf16": DType.BF16, "bfloat16": DType.BF16,
    "s8": DType.S8, "int8": DType.S8,
    "u8": DType.U8, "uint8": DType.U8,
    "s4": DType.S4, "int4": DType.S4,
    "u4": DType.U4, "uint4": DType.U4,
    "s32": DType.S32, "int32": DType.S32,
}


class QuantizeOp(enum.IntEnum):
    QUANTIZE = _ffi.LOWBIT_QOP_QUANTIZE
    DEQUANTIZE = _ffi.LOWBIT_QOP_DEQUANTIZE
    QUANTIZE_BACKWARD = _ffi.LOWBIT_QOP_QUANTIZE_BACKWARD
    DEQUANTIZE_BACKWARD = _ffi.LOWBIT_QOP_DEQUANTIZE_BACKWARD
    FAKE_QUANTIZE = _ffi.LOWBIT_QOP_FAKE_QUANTIZE
    FAKE_QUANTIZE_BACKWARD = _ffi.LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD
    DYNAMIC_QUANTIZE = _ffi.LOWBIT_QOP_DYNAMIC_QUANTIZE


class Scope(enum.IntEnum):
    PER_TENSOR = _ffi.LOWBIT_SCOPE_PER_TENSOR
    PER_CHANNEL = _ffi.LOWBIT_SCOPE_PER_CHANNEL
    PER_TOKEN = _ffi.LOWBIT_SCOPE_PER_TOKEN
    PER_GROUP = _ffi.LOWBIT_SCOPE_PER_GROUP


class ArgRole(enum.IntEnum):
    X = _ffi.LOWBIT_ARG_X
    Q = _ffi.LOWBIT_ARG_Q
    SCALE = _ffi.LOWBIT_ARG_SCALE
    ZERO_POINT = _ffi.LOWBIT_ARG_ZERO_POINT
    DY = _ffi.LOWBIT_ARG_DY
    DX = _ffi.LOWBIT_ARG_DX
    Y = _ffi.LOWBIT_ARG_Y
    # Family 2 (weight-only matmul); that family has no Pythonic wrapper yet.
    W = _ffi.LOWBIT_ARG_W
    W_SCALE = _ffi.LOWBIT_ARG_W_SCALE
    W_ZERO = _ffi.LOWBIT_ARG_W_ZERO
    G_IDX = _ffi.LOWBIT_ARG_G_IDX
    BIAS = _ffi.LOWBIT_ARG_BIAS
    W_NATIVE = _ffi.LOWBIT_ARG_W_NATIVE
    ROWS = _ffi.LOWBIT_ARG_ROWS  # not an address: a row count


class WqOp(enum.IntEnum):
    MATMUL = _ffi.LOWBIT_WQ_OP_MATMUL
    REPACK = _ffi.LOWBIT_WQ_OP_REPACK


class WqFormat(enum.IntEnum):
    AWQ = _ffi.LOWBIT_WQ_FORMAT_AWQ
    GPTQ = _ffi.LOWBIT_WQ_FORMAT_GPTQ
    GPTQ_V1 = _ffi.LOWBIT_WQ_FORMAT_GPTQ_V1
    NATIVE = _ffi.LOWBIT_WQ_FORMAT_NATIVE
    PLAIN = _ffi.LOWBIT_WQ_FORMAT_PLAIN


class CacheMode(enum.IntEnum):
    READ_WRITE = _ffi.LOWBIT_CACHE_READ_WRITE
    READ_ONLY = _ffi.LOWBIT_CACHE_READ_ONLY
    MEMORY = _ffi.LOWBIT_CACHE_MEMORY


class LogLevel(enum.IntEnum):
    ERROR = _ffi.LOWBIT_LOG_ERROR
    WARN = _ffi.LOWBIT_LOG_WARN
    INFO = _ffi.LOWBIT_LOG_INFO
    DEBUG = _ffi.LOWBIT_LOG_DEBUG


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class LowbitError(Exception):
    """A failed lowbit call. .status is a Status (or the raw int for a code
    this binding does not know), .code the int, .message lowbit's detail."""

    def __init__(self, code, message=""):
        self.code = int(code)
        try:
            self.status = Status(self.code)
        except ValueError:
            self.status = self.code
        self.message = message
        text = status_string(self.code)
        super().__init__(text + (": " + message if message else ""))


class MisalignedError(LowbitError):
    pass


class InvalidProblemError(LowbitError, ValueError):
    pass


class UnsupportedError(LowbitError):
    pass


class WorkspaceTooSmallError(LowbitError):
    pass


class InvalidArgumentError(LowbitError, ValueError):
    pass


class NoDeviceError(LowbitError):
    pass


class NoCompilerError(LowbitError):
    pass


class CompileFailedError(LowbitError):
    pass


class CudaError(LowbitError):
    pass


class OutOfMemoryError(LowbitError, MemoryError):
    pass


class CacheIOError(LowbitError):
    pass


class InternalError(LowbitError):
    pass


_ERROR_CLASSES = {
    Status.MISALIGNED: MisalignedError, Status.INVALID_PROBLEM: InvalidProblemError,
    Status.UNSUPPORTED: UnsupportedError, Status.WORKSPACE_TOO_SMALL: WorkspaceTooSmallError,
    Status.INVALID_ARGUMENT: InvalidArgumentError, Status.NO_DEVICE: NoDeviceError,
    Status.NO_COMPILER: NoCompilerError, Status.COMPILE_FAILED: CompileFailedError, Status.CUDA_ERROR: CudaError,
    Status.OUT_OF_MEMORY: OutOfMemoryError, Status.CACHE_IO: CacheIOError, Status.INTERNAL: InternalError,
}
__all__ += [c.__name__ for c in _ERROR_CLASSES.values()]


def _error(code, message=None):
    if message is None:
        message = last_error_message()
    cls = _ERROR_CLASSES.get(code, LowbitError)
    e = cls(code, message)
    # OSError/ValueError bases take their own args; keep ours.
    e.args = (status_string(code) + (": " + message if message else ""),)
    return e


def _check(code):
    if code != 0:
        raise _error(code)


# --------------------------------------------------------------------------
# Library-wide functions
# --------------------------------------------------------------------------


__version__ = "0.1.0"  # this binding's; the library's is version_string()


def version_number():
    """The loaded library's MAJOR * 10000 + MINOR * 100 + PATCH."""
    return int(_lib.lowbit_version_number())


def version_string():
    """The loaded library's "MAJOR.MINOR.PATCH"."""
    return _lib.lowbit_version_string().decode()


def status_string(code):
    """lowbit's static description of a status code."""
    return _lib.lowbit_status_string(int(code)).decode()


def last_error_message():
    """The calling thread's last lowbit error message (errors carry it already)."""
    n = _lib.lowbit_copy_last_error_message(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    _lib.lowbit_copy_last_error_message(buf, n + 1)
    return buf.value.decode(errors="replace")


# --------------------------------------------------------------------------
# Pointers
# --------------------------------------------------------------------------

_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED = 1, 2, 3, 13


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("byte_offset", ctypes.c_uint64)]


_capsule_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get_pointer.restype = ctypes.c_void_p
_capsule_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _dlpack_pointer(obj, device_types):
    """Data address of an object with __dlpack__, without consuming the
    capsule (obj keeps the memory alive)."""
    capsule = obj.__dlpack__()
    if not _capsule_is_valid(capsule, b"dltensor"):
        raise TypeError("lowbit: %s.__dlpack__() did not return a DLPack capsule" % type(obj).__name__)
    t = _DLTensor.from_address(_capsule_get_pointer(capsule, b"dltensor"))
    if t.device.device_type not in device_types:
        raise TypeError("lowbit: %s lives on DLPack device type %d, expected one of %s"
                        % (type(obj).__name__, t.device.device_type, sorted(device_types)))
    return (t.data or 0) + t.byte_offset


def device_pointer(obj):
    """A CUdeviceptr (int) from an int, an object with __cuda_array_interface__
    (torch, CuPy, Numba) or __dlpack__ (on a CUDA device), or a ctypes integer.
    None gives 0 (an absent optional argument)."""
    if obj is None:
        return 0
    if isinstance(obj, int):
        return obj
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        return int(cai["data"][0] or 0)
    if hasattr(obj, "__dlpack__"):
        return _dlpack_pointer(obj, {_KDL_CUDA, _KDL_CUDA_MANAGED, _KDL_CUDA_HOST})
    if isinstance(obj, (ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t)):
        return int(obj.value or 0)
    raise TypeError("lowbit: cannot take a device pointer from %s (give an int, or an object with "
                    "__cuda_array_interface__ or __dlpack__)" % type(obj).__name__)


def host_pointer(obj, keepalive):
    """A host address from an int, a numpy array (__array_interface__), an
    object with __dlpack__ on the CPU, a ctypes object, or any buffer
    (bytearray, array.array, memoryview). Read-only buffers are copied;
    `keepalive` (a list) holds what must outlive the call."""
    if obj is None:
        return 0
    if isinstance(obj, int):
        return obj
    ai = getattr(obj, "__array_interface__", None)
    if ai is not None:
        keepalive.append(obj)
        return int(ai["data"][0] or 0)
    if isinstance(obj, ctypes._SimpleCData) or isinstance(obj, (ctypes.Array, ctypes.Structure)):
        keepalive.append(obj)
        return ctypes.addressof(obj)
    if hasattr(obj, "__dlpack__") and not isinstance(obj, (bytes, bytearray, memoryview)):
        keepalive.append(obj)
        return _dlpack_pointer(obj, {_KDL_CPU, _KDL_CUDA_HOST})
    view = memoryview(obj)
    if not view.c_contiguous:
        raise TypeError("lowbit: host buffers must be contiguous")
    if view.nbytes == 0:
        return 0
    if view.readonly:
        copy = (ctypes.c_char * view.nbytes).from_buffer_copy(view)
        keepalive.append(copy)
        return ctypes.addressof(copy)
    buf = (ctypes.c_char * view.nbytes).from_buffer(view)
    keepalive.append(buf)
    return ctypes.addressof(buf)


def _stream_handle(stream):
    if stream is None:
        return None
    if isinstance(stream, int):
        return stream or None
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1]) or None
    for attr in ("cuda_stream", "ptr", "handle"):
        v = getattr(stream, attr, None)
        if isinstance(v, int):
            return v or None
    if isinstance(stream, ctypes.c_void_p):
        return stream.value
    return int(stream) or None


# --------------------------------------------------------------------------
# Descriptors
# --------------------------------------------------------------------------


class QuantizeDesc:
    """An elementwise quantization problem (lowbit_quantize_desc), from
    lowbit's defaults: quantize, per tensor, f32 -> s8, alignment 16.

        QuantizeDesc(shape=(64, 4096), x_dtype="bf16", q_dtype="s8")

    Fields: op, scope, x_dtype, q_dtype, scale_dtype, shape, x_row_stride,
    axis, group_size, qmin, qmax, symmetric, alignment."""

    _ENUMS = {"op": QuantizeOp, "scope": Scope, "x_dtype": DType.of, "q_dtype": DType.of, "scale_dtype": DType.of}
    _FIELDS = ("op", "scope", "x_dtype", "q_dtype", "scale_dtype", "shape", "x_row_stride", "axis", "group_size",
               "qmin", "qmax", "symmetric", "alignment")

    def __init__(self, **fields):
        raw = _ffi.lowbit_quantize_desc()
        _lib.lowbit_quantize_desc_init(byref(raw))
        object.__setattr__(self, "raw", raw)
        for k, v in fields.items():
            setattr(self, k, v)

    def __setattr__(self, name, value):
        if name == "shape":
            dims = [int(d) for d in value]
            self.raw.rank = len(dims)
            for i in range(4):
                self.raw.dims[i] = dims[i] if i < len(dims) else 0
        elif name in self._FIELDS:
            # Plain ints pass through unchecked (lowbit validates them); names
            # and dtype objects are converted.
            if name in self._ENUMS and not isinstance(value, int):
                value = self._ENUMS[name](value)
            setattr(self.raw, name, int(value))
        else:
            raise AttributeError("QuantizeDesc has no field %r" % name)

    def __getattr__(self, name):
        if name == "shape":
            return tuple(self.raw.dims[i] for i in range(max(0, min(self.raw.rank, 4))))
        if name in self._FIELDS:
            v = getattr(self.raw, name)
            conv = self._ENUMS.get(name)
            if conv is not None:
                try:
                    return (DType if conv is DType.of else conv)(v)
                except ValueError:
                    return v
            return v
        raise AttributeError(name)

    def __repr__(self):
        return "QuantizeDesc(%s)" % ", ".join("%s=%r" % (f, getattr(self, f)) for f in self._FIELDS)

    def _op_desc(self):
        return _ffi.lowbit_op_desc(_ffi.LOWBIT_FAMILY_QUANTIZE, 0, ctypes.cast(byref(self.raw), c_void_p))


def _as_op_desc(desc):
    if isinstance(desc, QuantizeDesc):
        return desc._op_desc()
    raise TypeError("lowbit: expected a descriptor such as QuantizeDesc, got %s" % type(desc).__name__)


# --------------------------------------------------------------------------
# Context and Plan
# --------------------------------------------------------------------------


class _Logger:
    """The log callback, kept alive by a context and all its plans."""

    def __init__(self, fn):
        self.fn = fn

        def trampoline(_user, level, message):
            try:
                level = LogLevel(level)
            except ValueError:
                pass
            self.fn(level, message.decode(errors="replace") if message else "")

        self.c_callback = _ffi.lowbit_log_callback(trampoline)


class DeviceInfo:
    """What Context.info() reports."""
    __slots__ = ("offline", "ordinal", "name", "arch", "compute_capability", "sm_count", "driver_version",
                 "nvrtc_version", "global_memory_bytes", "l2_cache_bytes", "cache_dir")

    def __init__(self, raw):
        self.offline = bool(raw.offline)
        self.ordinal = raw.ordinal
        self.name = raw.name.decode(errors="replace")
        self.arch = raw.arch.decode()
        self.compute_capability = raw.compute_capability
        self.sm_count = raw.sm_count
        self.driver_version = raw.driver_version
        self.nvrtc_version = raw.nvrtc_version
        self.global_memory_bytes = raw.global_memory_bytes
        self.l2_cache_bytes = raw.l2_cache_bytes
        self.cache_dir = raw.cache_dir.decode() or None

    def __repr__(self):
        return "DeviceInfo(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__)


class CacheStats:
    """What Context.cache_stats() reports."""
    __slots__ = ("memory_hits", "disk_hits", "misses", "compiles", "compile_failures", "damaged_entries",
                 "compile_ms", "disk_entries", "disk_bytes")

    def __init__(self, raw):
        for k in self.__slots__:
            setattr(self, k, getattr(raw, k))

    def __repr__(self):
        return "CacheStats(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__)


class _Handle:
    _destroy = None

    def __init__(self, ptr, logger):
        self._ptr = ptr
        self._logger = logger
        self._lock = threading.Lock()

    @property
    def handle(self):
        """The raw ctypes pointer (owned by this object)."""
        if not self._ptr:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "%s is closed" % type(self).__name__)
        return self._ptr

    def close(self):
        """Frees the handle now; later calls raise. Closing twice is a no-op."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr:
            type(self)._destroy(ptr)
        self._logger = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Context(_Handle):
    """A lowbit context: one device (or, offline, one target architecture) and
    its kernel cache. Shareable between threads. Make one with
    Context.device(), Context.current() or Context.offline()."""

    _destroy = staticmethod(_lib.lowbit_context_destroy)

    @classmethod
    def _create(cls, make, cache_dir=None, cache_mode=None, cache_max_bytes=None, log_level=None, logger=None):
        opts = _ffi.lowbit_context_options()
        _lib.lowbit_context_options_init(byref(opts))
        if cache_dir is not None:
            opts.cache_dir = str(cache_dir).encode()
        if cache_mode is not None:
            opts.cache_mode = int(cache_mode)
        if cache_max_bytes is not None:
            opts.cache_max_bytes = int(cache_max_bytes)
        if log_level is not None:
            opts.log_level = int(log_level)
        log = _Logger(logger) if logger is not None else None
        if log is not None:
            opts.log_callback = log.c_callback
        out = ctypes.POINTER(_ffi.lowbit_context)()
        _check(make(byref(opts), byref(out)))
        return cls(out, log)

    @classmethod
    def device(cls, ordinal=0, **options):
        """A context on GPU `ordinal` (its primary context). NoDeviceError
        without a driver or such a GPU. Options: cache_dir, cache_mode,
        cache_max_bytes, log_level, logger (a callable(level, message))."""
        return cls._create(lambda o, out: _lib.lowbit_context_create_device(int(ordinal), o, out), **options)

    @classmethod
    def current(cls, **options):
        """A context on the calling thread's current CUDA context (e.g. the
        one torch made current)."""
        return cls._create(lambda o, out: _lib.lowbit_context_create_current(o, out), **options)

    @classmethod
    def offline(cls, arch, **options):
        """A context for a target such as "sm_90a" that needs no GPU: plans
        compile into the cache but cannot run."""
        if not isinstance(arch, str) or "\0" in arch:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "arch must be a string such as 'sm_90a'")
        return cls._create(lambda o, out: _lib.lowbit_context_create_offline(arch.encode(), o, out), **options)

    def info(self):
        raw = _ffi.lowbit_device_info()
        raw.struct_size = ctypes.sizeof(raw)
        _check(_lib.lowbit_context_get_info(self.handle, byref(raw)))
        return DeviceInfo(raw)

    def cache_stats(self):
        raw = _ffi.lowbit_cache_stats()
        raw.struct_size = ctypes.sizeof(raw)
        _check(_lib.lowbit_context_cache_stats(self.handle, byref(raw)))
        return CacheStats(raw)

    def plan(self, desc):
        """Creates a plan for a descriptor of any family: validates it, selects
        a kernel, loads it from the cache or compiles it (the first time)."""
        op = _as_op_desc(desc)
        out = ctypes.POINTER(_ffi.lowbit_plan)()
        _check(_lib.lowbit_plan_create(self.handle, byref(op), byref(out)))
        return Plan(out, self._logger, desc)

    def quantize_plan(self, desc=None, **fields):
        """A quantize plan from a QuantizeDesc or its fields
        (ctx.quantize_plan(shape=(64, 4096), x_dtype="bf16"))."""
        if desc is None:
            desc = QuantizeDesc(**fields)
        elif fields:
            raise TypeError("give a QuantizeDesc or fields, not both")
        out = ctypes.POINTER(_ffi.lowbit_plan)()
        _check(_lib.lowbit_quantize_plan_create(self.handle, byref(desc.raw), byref(out)))
        return Plan(out, self._logger, desc)

    def prewarm(self, descs, threads=0):
        """Compiles and caches the plans of all descriptors on up to `threads`
        threads (0: all CPUs). Returns each item's Status; raises the first
        failure's error (its message names the item, .results has them all)."""
        descs = list(descs)
        ops = (_ffi.lowbit_op_desc * max(1, len(descs)))(*[_as_op_desc(d) for d in descs])
        results = (_ffi.lowbit_status * max(1, len(descs)))()
        code = _lib.lowbit_prewarm(self.handle, ops, len(descs), int(threads), results)
        statuses = []
        for r in results[:len(descs)]:
            try:
                statuses.append(Status(r))
            except ValueError:
                statuses.append(r)
        if code != 0:
            e = _error(code)
            e.results = statuses
            raise e
        return statuses


_ROLE_NAMES = {"x": ArgRole.X, "q": ArgRole.Q, "scale": ArgRole.SCALE, "zero_point": ArgRole.ZERO_POINT,
               "dy": ArgRole.DY, "dx": ArgRole.DX, "y": ArgRole.Y}


def _args(named, extra, pointer):
    items = [(ArgRole(r), v) for r, v in (extra or [])]
    for name, value in named.items():
        if name not in _ROLE_NAMES:
            raise TypeError("lowbit: unknown argument role %r (expected one of %s)" % (name, ", ".join(_ROLE_NAMES)))
        items.append((_ROLE_NAMES[name], value))
    arr = (_ffi.lowbit_arg * max(1, len(items)))()
    for i, (role, value) in enumerate(items):
        arr[i].role = int(role)
        arr[i].ptr = pointer(value)
    return arr, len(items)


class Plan(_Handle):
    """A validated problem with its kernel compiled and loaded. Immutable; may
    run from many threads at once. Made by Context.quantize_plan / plan."""

    _destroy = staticmethod(_lib.lowbit_plan_destroy)

    def __init__(self, ptr, logger, desc):
        super().__init__(ptr, logger)
        self.desc = desc

    def workspace_size(self):
        """Bytes of device workspace run() needs (0 for most ops)."""
        n = c_size_t()
        _check(_lib.lowbit_plan_workspace_size(self.handle, byref(n)))
        return n.value

    def describe(self):
        """The chosen kernel(s) as JSON text."""
        n = c_size_t()
        _check(_lib.lowbit_plan_describe(self.handle, None, 0, byref(n)))
        buf = ctypes.create_string_buffer(n.value + 1)
        _check(_lib.lowbit_plan_describe(self.handle, buf, n.value + 1, byref(n)))
        return buf.value.decode()

    def describe_dict(self):
        return json.loads(self.describe())

    def run(self, args=None, stream=None, workspace=0, workspace_bytes=0, **roles):
        """Enqueues the plan on `stream` (None: the default stream).
        Asynchronous. Device memory by role name, e.g.
        plan.run(x=tensor, q=out, scale=s, zero_point=zp, stream=torch_stream);
        or args=[(ArgRole.X, ptr), ...]. Values: ints, objects with
        __cuda_array_interface__ or __dlpack__."""
        arr, n = _args(roles, args, device_pointer)
        _check(_lib.lowbit_plan_run(self.handle, arr, n, device_pointer(workspace), int(workspace_bytes),
                                    _stream_handle(stream)))


def reference_run(desc, args=None, **roles):
    """Runs lowbit's CPU reference of `desc` on host memory: the same roles as
    Plan.run, with host buffers (numpy arrays, array.array, bytearray, ctypes
    arrays, CPU DLPack tensors, or int addresses)."""
    keep = []
    arr, n = _args(roles, args, lambda v: host_pointer(v, keep))
    op = _as_op_desc(desc)
    _check(_lib.lowbit_reference_run(byref(op), arr, n))
