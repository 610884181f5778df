"""Keeps lowbit/_ffi.py in sync with include/lowbit/lowbit.h (the source of
truth): every LOWBIT_API function with its argument and return types, every
#define, every struct field and typedef; and every function is used by the
package or listed as deliberately not wrapped."""
import ctypes
import os
import re
import unittest

import lowbit
from lowbit import _ffi

from .support import header_path

# Functions of the header the Pythonic layer deliberately does not call.
NOT_WRAPPED = {
    "lowbit_last_error_message": "borrowed per-thread pointer; lowbit_copy_last_error_message is used instead",
    # Family 2 (weight-only matmul) is declared in _ffi but has no Pythonic layer yet.
    "lowbit_wq_matmul_desc_init": "family 2: raw declaration only (lowbit._ffi)",
    "lowbit_wq_matmul_plan_create": "family 2: raw declaration only (lowbit._ffi)",
    "lowbit_wq_native_bytes": "family 2: raw declaration only (lowbit._ffi)",
}

SCALARS = {
    "int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32, "int64_t": ctypes.c_int64, "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t, "double": ctypes.c_double, "float": ctypes.c_float, "char": ctypes.c_char,
}


def ctype_of(c_type):
    """A C type without a name -> the ctypes type lowbit/_ffi.py must use."""
    tokens = c_type.replace("*", " * ").split()
    base = next(t for t in tokens if t not in ("const", "*"))
    pointers = tokens.count("*")
    if pointers == 1 and base == "char":
        return ctypes.c_char_p
    if pointers == 1 and base == "void":
        return ctypes.c_void_p
    if base == "void":
        assert pointers == 0, c_type
        return None
    t = SCALARS.get(base) or getattr(_ffi, base)
    for _ in range(pointers):
        t = ctypes.POINTER(t)
    return t


def split_decl(decl):
    """ "const char* arch" -> ("arch", ctype); "char name[128]" -> ("name", c_char * 128)."""
    decl = decl.replace("*", "* ").strip()
    m = re.match(r"(.*?)\s*\b(\w+)\s*(?:\[(\d+)\])?$", decl)
    c_type, name, length = m.group(1), m.group(2), m.group(3)
    t = ctype_of(c_type)
    return name, (t * int(length) if length else t)


class Header:
    def __init__(self, path):
        with open(path) as f:
            src = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
        self.defines = {m.group(1): int(m.group(2))
                        for m in re.finditer(r"^\s*#\s*define\s+(LOWBIT_\w+)\s+(-?\d+)\s*$", src, re.M)}
        body = re.sub(r"^\s*#.*$", "", src, flags=re.M)
        self.functions = {}
        for m in re.finditer(r"^LOWBIT_API\s+([^;]*?)\b(lowbit_\w+)\s*\(([^)]*)\)\s*;", body, re.M | re.S):
            params = " ".join(m.group(3).split())
            params = [] if params in ("", "void") else [split_decl(p)[1] for p in params.split(",")]
            self.functions[m.group(2)] = (ctype_of(m.group(1).strip()), params)
        self.structs = {}
        for m in re.finditer(r"typedef struct (\w+) \{(.*?)\} \1;", body, re.S):
            fields = [" ".join(f.split()) for f in m.group(2).split(";") if f.strip()]
            self.structs[m.group(1)] = [split_decl(f) for f in fields]
        self.opaque = re.findall(r"typedef struct (\w+) \1;", body)
        self.int_typedefs = dict((b, a) for a, b in re.findall(r"typedef (u?int\d+_t) (\w+);", body))
        m = re.search(r"typedef (\w+) \(\*(lowbit_log_callback)\)\(([^)]*)\);", body)
        self.callback = (ctype_of(m.group(1)), [split_decl(p)[1] for p in m.group(3).split(",")])


class HeaderSync(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.h = Header(header_path())

    def test_parsed_enough(self):
        self.assertGreaterEqual(len(self.h.functions), 22)
        self.assertGreaterEqual(len(self.h.defines), 40)
        self.assertIn("lowbit_quantize_desc", self.h.structs)

    def test_functions(self):
        self.assertEqual(sorted(self.h.functions), sorted(_ffi.FUNCTIONS))
        for name, (restype, argtypes) in self.h.functions.items():
            self.assertEqual(_ffi.FUNCTIONS[name], (restype, argtypes), name)

    def test_constants(self):
        ours = {k: v for k, v in vars(_ffi).items() if k.startswith("LOWBIT_") and isinstance(v, int)}
        self.assertEqual(self.h.defines, ours)

    def test_types(self):
        for name, fields in self.h.structs.items():
            struct = getattr(_ffi, name)
            self.assertEqual([(f, t) for f, t in struct._fields_], fields, name)
        for name in self.h.opaque:
            self.assertTrue(issubclass(getattr(_ffi, name), ctypes.Structure), name)
        for name, c_type in self.h.int_typedefs.items():
            self.assertIs(getattr(_ffi, name), SCALARS[c_type], name)
        restype, argtypes = self.h.callback
        self.assertEqual(_ffi.lowbit_log_callback._restype_, restype)
        self.assertEqual(list(_ffi.lowbit_log_callback._argtypes_), argtypes)

    def test_library_exports_the_header(self):
        # Informational: the library's own tests check its exports.
        if _ffi.missing_functions:
            print("\nnote: %s lacks %s" % (_ffi.library_path, ", ".join(_ffi.missing_functions)))

    def test_every_function_is_wrapped(self):
        with open(os.path.join(os.path.dirname(lowbit.__file__), "__init__.py")) as f:
            src = f.read()
        for name in self.h.functions:
            used = re.search(r"_lib\.%s\b" % name, src) is not None
            self.assertNotEqual(used, name in NOT_WRAPPED,
                                "%s: %s" % (name, "listed in NOT_WRAPPED but used" if used else "not wrapped"))

    def test_enums_cover_the_constants(self):
        groups = {"LOWBIT_DTYPE_": lowbit.DType, "LOWBIT_QOP_": lowbit.QuantizeOp, "LOWBIT_SCOPE_": lowbit.Scope,
                  "LOWBIT_ARG_": lowbit.ArgRole, "LOWBIT_CACHE_": lowbit.CacheMode, "LOWBIT_LOG_": lowbit.LogLevel,
                  "LOWBIT_WQ_OP_": lowbit.WqOp, "LOWBIT_WQ_FORMAT_": lowbit.WqFormat}
        # A status is a define named like a Status member (LOWBIT_CACHE_IO) or
        # one that no group prefix claims.
        def is_status(k):
            return (k[len("LOWBIT_"):] in lowbit.Status.__members__
                    or not any(k.startswith(p) for p in list(groups) + ["LOWBIT_FAMILY_"]))

        for prefix, enum in groups.items():
            want = {k[len(prefix):]: v for k, v in self.h.defines.items() if k.startswith(prefix) and not is_status(k)}
            self.assertEqual({m.name: int(m) for m in enum}, want, prefix)
        statuses = {k[len("LOWBIT_"):]: v for k, v in self.h.defines.items() if is_status(k)}
        self.assertEqual({m.name: int(m) for m in lowbit.Status}, statuses)


if __name__ == "__main__":
    unittest.main()
