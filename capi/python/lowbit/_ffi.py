"""Raw ctypes declarations of include/lowbit/lowbit.h, and the library loader.

Mirrors the header one to one (tests/test_header_sync.py checks every
function, constant and struct field against it). Use the `lowbit` package for
a Pythonic interface.
"""
import ctypes
import ctypes.util
import glob
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_int32, c_int64, c_size_t, c_uint32,
                    c_uint64, c_void_p)

# --------------------------------------------------------------------------
# Constants (#define LOWBIT_*)
# --------------------------------------------------------------------------

LOWBIT_OK = 0
LOWBIT_MISALIGNED = 1
LOWBIT_INVALID_PROBLEM = 2
LOWBIT_UNSUPPORTED = 3
LOWBIT_WORKSPACE_TOO_SMALL = 4
LOWBIT_INVALID_ARGUMENT = 5
LOWBIT_NO_DEVICE = 6
LOWBIT_NO_COMPILER = 7
LOWBIT_COMPILE_FAILED = 8
LOWBIT_CUDA_ERROR = 9
LOWBIT_OUT_OF_MEMORY = 10
LOWBIT_CACHE_IO = 11
LOWBIT_INTERNAL = 12

LOWBIT_DTYPE_F32 = 1
LOWBIT_DTYPE_F64 = 2
LOWBIT_DTYPE_F16 = 3
LOWBIT_DTYPE_BF16 = 4
LOWBIT_DTYPE_S8 = 5
LOWBIT_DTYPE_U8 = 6
LOWBIT_DTYPE_S4 = 7
LOWBIT_DTYPE_U4 = 8
LOWBIT_DTYPE_S32 = 9

LOWBIT_LOG_ERROR = 0
LOWBIT_LOG_WARN = 1
LOWBIT_LOG_INFO = 2
LOWBIT_LOG_DEBUG = 3

LOWBIT_CACHE_READ_WRITE = 0
LOWBIT_CACHE_READ_ONLY = 1
LOWBIT_CACHE_MEMORY = 2

LOWBIT_ARG_X = 1
LOWBIT_ARG_Q = 2
LOWBIT_ARG_SCALE = 3
LOWBIT_ARG_ZERO_POINT = 4
LOWBIT_ARG_DY = 5
LOWBIT_ARG_DX = 6
LOWBIT_ARG_Y = 7
LOWBIT_ARG_W = 8
LOWBIT_ARG_W_SCALE = 9
LOWBIT_ARG_W_ZERO = 10
LOWBIT_ARG_G_IDX = 11
LOWBIT_ARG_BIAS = 12
LOWBIT_ARG_W_NATIVE = 13
LOWBIT_ARG_ROWS = 14

LOWBIT_FAMILY_QUANTIZE = 1
LOWBIT_FAMILY_WEIGHT_MATMUL = 2

LOWBIT_QOP_QUANTIZE = 1
LOWBIT_QOP_DEQUANTIZE = 2
LOWBIT_QOP_QUANTIZE_BACKWARD = 3
LOWBIT_QOP_DEQUANTIZE_BACKWARD = 4
LOWBIT_QOP_FAKE_QUANTIZE = 5
LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD = 6
LOWBIT_QOP_DYNAMIC_QUANTIZE = 7

LOWBIT_SCOPE_PER_TENSOR = 1
LOWBIT_SCOPE_PER_CHANNEL = 2
LOWBIT_SCOPE_PER_TOKEN = 3
LOWBIT_SCOPE_PER_GROUP = 4

LOWBIT_WQ_OP_MATMUL = 1
LOWBIT_WQ_OP_REPACK = 2

LOWBIT_WQ_FORMAT_AWQ = 1
LOWBIT_WQ_FORMAT_GPTQ = 2
LOWBIT_WQ_FORMAT_GPTQ_V1 = 3
LOWBIT_WQ_FORMAT_NATIVE = 4
LOWBIT_WQ_FORMAT_PLAIN = 5

# --------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------

lowbit_status = c_int32
lowbit_dtype = c_int32
lowbit_arg_role = c_int32
lowbit_op_family = c_int32
lowbit_quantize_op = c_int32
lowbit_quantize_scope = c_int32
lowbit_wq_op = c_int32
lowbit_wq_format = c_int32


class lowbit_context(Structure):
    """Opaque handle; shareable between threads."""


class lowbit_plan(Structure):
    """Opaque handle; immutable, may run from many threads at once."""


lowbit_log_callback = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)


class lowbit_context_options(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("cache_dir", c_char_p),
        ("cache_mode", c_int32),
        ("cache_max_bytes", c_uint64),
        ("log_callback", lowbit_log_callback),
        ("log_user_data", c_void_p),
        ("log_level", c_int32),
    ]


class lowbit_device_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("offline", c_int32),
        ("ordinal", c_int32),
        ("name", c_char * 128),
        ("arch", c_char * 16),
        ("compute_capability", c_int32),
        ("sm_count", c_int32),
        ("driver_version", c_int32),
        ("nvrtc_version", c_int32),
        ("global_memory_bytes", c_uint64),
        ("l2_cache_bytes", c_uint64),
        ("cache_dir", c_char * 512),
    ]


class lowbit_cache_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("memory_hits", c_uint64),
        ("disk_hits", c_uint64),
        ("misses", c_uint64),
        ("compiles", c_uint64),
        ("compile_failures", c_uint64),
        ("damaged_entries", c_uint64),
        ("compile_ms", c_double),
        ("disk_entries", c_uint64),
        ("disk_bytes", c_uint64),
    ]


class lowbit_arg(Structure):
    _fields_ = [
        ("role", lowbit_arg_role),
        ("reserved", c_int32),
        ("ptr", c_uint64),
    ]


class lowbit_op_desc(Structure):
    _fields_ = [
        ("family", lowbit_op_family),
        ("reserved", c_int32),
        ("desc", c_void_p),
    ]


class lowbit_quantize_desc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("op", lowbit_quantize_op),
        ("scope", lowbit_quantize_scope),
        ("x_dtype", lowbit_dtype),
        ("q_dtype", lowbit_dtype),
        ("scale_dtype", lowbit_dtype),
        ("rank", c_int32),
        ("dims", c_int64 * 4),
        ("x_row_stride", c_int64),
        ("axis", c_int32),
        ("group_size", c_int64),
        ("qmin", c_int32),
        ("qmax", c_int32),
        ("symmetric", c_int32),
        ("alignment", c_int32),
    ]


class lowbit_wq_matmul_desc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("op", lowbit_wq_op),
        ("format", lowbit_wq_format),
        ("weight_bits", c_int32),
        ("symmetric", c_int32),
        ("act_order", c_int32),
        ("group_size", c_int64),
        ("m", c_int64),
        ("n", c_int64),
        ("k", c_int64),
        ("act_dtype", lowbit_dtype),
        ("scale_dtype", lowbit_dtype),
        ("has_bias", c_int32),
        ("alignment", c_int32),
        ("x_row_stride", c_int64),
        ("y_row_stride", c_int64),
        ("programmatic_launch", c_int32),
    ]


# --------------------------------------------------------------------------
# Functions: name -> (restype, argtypes), in header order
# --------------------------------------------------------------------------

FUNCTIONS = {
    "lowbit_status_string": (c_char_p, [lowbit_status]),
    "lowbit_last_error_message": (c_char_p, []),
    "lowbit_copy_last_error_message": (c_size_t, [c_char_p, c_size_t]),
    "lowbit_version_number": (c_uint32, []),
    "lowbit_version_string": (c_char_p, []),
    "lowbit_dtype_name": (c_char_p, [lowbit_dtype]),
    "lowbit_context_options_init": (None, [POINTER(lowbit_context_options)]),
    "lowbit_context_create_device": (lowbit_status, [c_int32, POINTER(lowbit_context_options),
                                                     POINTER(POINTER(lowbit_context))]),
    "lowbit_context_create_current": (lowbit_status, [POINTER(lowbit_context_options),
                                                      POINTER(POINTER(lowbit_context))]),
    "lowbit_context_create_offline": (lowbit_status, [c_char_p, POINTER(lowbit_context_options),
                                                      POINTER(POINTER(lowbit_context))]),
    "lowbit_context_destroy": (None, [POINTER(lowbit_context)]),
    "lowbit_context_get_info": (lowbit_status, [POINTER(lowbit_context), POINTER(lowbit_device_info)]),
    "lowbit_context_cache_stats": (lowbit_status, [POINTER(lowbit_context), POINTER(lowbit_cache_stats)]),
    "lowbit_plan_create": (lowbit_status, [POINTER(lowbit_context), POINTER(lowbit_op_desc),
                                           POINTER(POINTER(lowbit_plan))]),
    "lowbit_plan_destroy": (None, [POINTER(lowbit_plan)]),
    "lowbit_plan_workspace_size": (lowbit_status, [POINTER(lowbit_plan), POINTER(c_size_t)]),
    "lowbit_plan_run": (lowbit_status, [POINTER(lowbit_plan), POINTER(lowbit_arg), c_size_t, c_uint64, c_size_t,
                                        c_void_p]),
    "lowbit_plan_describe": (lowbit_status, [POINTER(lowbit_plan), c_char_p, c_size_t, POINTER(c_size_t)]),
    "lowbit_prewarm": (lowbit_status, [POINTER(lowbit_context), POINTER(lowbit_op_desc), c_size_t, c_uint32,
                                       POINTER(lowbit_status)]),
    "lowbit_quantize_desc_init": (None, [POINTER(lowbit_quantize_desc)]),
    "lowbit_quantize_plan_create": (lowbit_status, [POINTER(lowbit_context), POINTER(lowbit_quantize_desc),
                                                    POINTER(POINTER(lowbit_plan))]),
    "lowbit_wq_matmul_desc_init": (None, [POINTER(lowbit_wq_matmul_desc)]),
    "lowbit_wq_matmul_plan_create": (lowbit_status, [POINTER(lowbit_context), POINTER(lowbit_wq_matmul_desc),
                                                     POINTER(POINTER(lowbit_plan))]),
    "lowbit_wq_native_bytes": (lowbit_status, [POINTER(lowbit_wq_matmul_desc), POINTER(c_uint64)]),
    "lowbit_reference_run": (lowbit_status, [POINTER(lowbit_op_desc), POINTER(lowbit_arg), c_size_t]),
}

# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def candidates():
    """Where the library is looked for, in order: $LOWBIT_LIBRARY, the package
    directory (a liblowbit.so* shipped inside the package, also in lib/), then
    the system's search path (LD_LIBRARY_PATH, the ld.so cache)."""
    env = os.environ.get("LOWBIT_LIBRARY")
    if env:
        yield env
        return
    for pattern in ("liblowbit.so*", os.path.join("lib", "liblowbit.so*"), "liblowbit*.dylib", "lowbit*.dll"):
        for path in sorted(glob.glob(os.path.join(_PACKAGE_DIR, pattern))):
            yield path
    yield "liblowbit.so.0"
    found = ctypes.util.find_library("lowbit")
    if found:
        yield found


def load(path=None):
    """Loads liblowbit (from `path`, or the first of candidates() that loads)
    and declares its functions. Returns the ctypes.CDLL."""
    tried = []
    for candidate in ([path] if path else candidates()):
        try:
            lib = ctypes.CDLL(candidate)
            break
        except OSError as e:
            tried.append("%s (%s)" % (candidate, e))
    else:
        raise ImportError("lowbit: cannot load liblowbit; set LOWBIT_LIBRARY to its path, put it in the package "
                          "directory or on the system search path. Tried: " + "; ".join(tried))
    global missing_functions
    missing_functions = []
    for name, (restype, argtypes) in FUNCTIONS.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            # A library older than this binding: calls to it raise.
            missing_functions.append(name)
            setattr(lib, name, _missing(name, candidate))
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _missing(name, path):
    def call(*_args):
        raise NotImplementedError("lowbit: %s is not exported by %s (a library older than this binding)"
                                  % (name, path))
    return call


#: Functions of the header that the loaded library does not export.
missing_functions = []


lib = load()
library_path = lib._name
