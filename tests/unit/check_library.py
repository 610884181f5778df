#!/usr/bin/env python3
"""Checks the ABI surface of the built liblowbit.so (DESIGN.md sections 3, 7).

Usage: check_library.py LIBRARY [--header include/lowbit/lowbit.h]

1. It exports exactly the functions lowbit.h declares with LOWBIT_API, all
   named lowbit_*, and nothing else (nm -D --defined-only).
2. It needs no CUDA driver, NVRTC or fmt at load time: readelf -d lists only
   the C/C++ runtime (libc, libstdc++, libm, libgcc_s, ld-linux).
3. It loads with ctypes on a machine without a driver, does not map libcuda
   or libnvrtc until asked to, and lowbit_context_create_device returns
   LOWBIT_NO_DEVICE (6) there; status strings, the error message and an
   offline plan's describe() JSON work through the C ABI.

Prints one line per check and ends with "library: N passed, N failed, N
skipped", which is also appended to $LOWBIT_TEST_SUMMARY if set. Exit status:
1 if a check failed, 77 (Meson's skip) if every check was skipped, else 0.
Python 3 standard library only.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

LOWBIT_OK = 0
LOWBIT_INVALID_ARGUMENT = 5
LOWBIT_NO_DEVICE = 6
LOWBIT_NO_COMPILER = 7

# Libraries liblowbit.so may need at load time: the C and C++ runtimes only.
ALLOWED_NEEDED = [
    re.compile(r"^libc\.so\.\d+$"),
    re.compile(r"^libstdc\+\+\.so\.\d+$"),
    re.compile(r"^libm\.so\.\d+$"),
    re.compile(r"^libgcc_s\.so\.\d+$"),
    re.compile(r"^ld-linux(-[\w-]+)?\.so\.\d+$"),
]
FORBIDDEN_NEEDED = re.compile(r"libcuda|libnvrtc|libfmt|libcudart")


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"[pass] {name}")
        else:
            self.failed += 1
            print(f"[FAIL] {name}" + (f": {detail}" if detail else ""))
        return ok

    def skip(self, name, why):
        self.skipped += 1
        print(f"[skip] {name}: {why}")


def declared_functions(header_text):
    """Names of the functions declared with LOWBIT_API in lowbit.h."""
    # Drop comments so that prose mentioning LOWBIT_API cannot count.
    text = re.sub(r"/\*.*?\*/", " ", header_text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    # Drop preprocessor lines (continuations included): "#define LOWBIT_API
    # __attribute__((...))" is not a declaration.
    text = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)
    names = set()
    for m in re.finditer(r"\bLOWBIT_API\b([^;{]*?)\(", text):
        ident = re.findall(r"\b([A-Za-z_]\w*)\s*$", m.group(1))
        if ident:
            names.add(ident[0])
    return names


def run_tool(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def check_exports(res, lib, header):
    name = "exports: exactly the LOWBIT_API functions of lowbit.h"
    if shutil.which("nm") is None:
        res.skip(name, "nm (binutils) is not installed")
        return
    try:
        with open(header, encoding="utf-8") as f:
            declared = declared_functions(f.read())
    except OSError as e:
        res.check(name, False, f"cannot read the header {header}: {e}")
        return
    res.check("header: declares LOWBIT_API functions, all named lowbit_*",
              len(declared) > 10 and all(n.startswith("lowbit_") for n in declared),
              f"parsed {sorted(declared)}")
    out = run_tool(["nm", "-D", "--defined-only", lib])
    exported = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            sym = parts[2].split("@")[0]
            exported[sym] = parts[1]
    bad_prefix = sorted(s for s in exported if not s.startswith("lowbit_"))
    res.check("exports: every exported symbol starts with lowbit_", not bad_prefix,
              f"{len(bad_prefix)} others, e.g. {bad_prefix[:10]}")
    missing = sorted(declared - set(exported))
    extra = sorted(set(exported) - declared)
    res.check(name, not missing and not extra,
              f"declared but not exported: {missing}; exported but not declared: {extra}")
    not_code = sorted(s for s, t in exported.items() if s in declared and t not in ("T", "t", "W", "i"))
    res.check("exports: the API symbols are functions", not not_code, f"{not_code}")


def check_needed(res, lib):
    name = "NEEDED: only the C/C++ runtime (no libcuda, libnvrtc, libfmt)"
    if shutil.which("readelf") is None:
        res.skip(name, "readelf (binutils) is not installed")
        return
    out = run_tool(["readelf", "-d", lib])
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    forbidden = [n for n in needed if FORBIDDEN_NEEDED.search(n)]
    unexpected = [n for n in needed if not any(p.match(n) for p in ALLOWED_NEEDED)]
    res.check(name, bool(needed) and not forbidden and not unexpected,
              f"NEEDED = {needed}; forbidden: {forbidden}; unexpected: {unexpected}")
    rpath = re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library (?:rpath|runpath): \[([^\]]*)\]", out)
    res.check("NEEDED: no RPATH/RUNPATH into a CUDA installation",
              not any("cuda" in r.lower() for r in rpath), f"{rpath}")


def mapped_libraries():
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def driver_present():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


class DeviceInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("offline", ctypes.c_int32),
        ("ordinal", ctypes.c_int32),
        ("name", ctypes.c_char * 128),
        ("arch", ctypes.c_char * 16),
        ("compute_capability", ctypes.c_int32),
        ("sm_count", ctypes.c_int32),
        ("driver_version", ctypes.c_int32),
        ("nvrtc_version", ctypes.c_int32),
        ("global_memory_bytes", ctypes.c_uint64),
        ("l2_cache_bytes", ctypes.c_uint64),
        ("cache_dir", ctypes.c_char * 512),
    ]


class ContextOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("cache_dir", ctypes.c_char_p),
        ("cache_mode", ctypes.c_int32),
        ("cache_max_bytes", ctypes.c_uint64),
        ("log_callback", ctypes.c_void_p),
        ("log_user_data", ctypes.c_void_p),
        ("log_level", ctypes.c_int32),
    ]


class QuantizeDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("op", ctypes.c_int32),
        ("scope", ctypes.c_int32),
        ("x_dtype", ctypes.c_int32),
        ("q_dtype", ctypes.c_int32),
        ("scale_dtype", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int64 * 4),
        ("x_row_stride", ctypes.c_int64),
        ("axis", ctypes.c_int32),
        ("group_size", ctypes.c_int64),
        ("qmin", ctypes.c_int32),
        ("qmax", ctypes.c_int32),
        ("symmetric", ctypes.c_int32),
        ("alignment", ctypes.c_int32),
    ]


def check_ctypes(res, lib_path):
    before = mapped_libraries()
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as e:
        res.check("ctypes: the library loads without a driver", False, str(e))
        return
    res.check("ctypes: the library loads without a driver", True)
    maps = mapped_libraries()
    if maps is None:
        res.skip("ctypes: libcuda and libnvrtc are not loaded at load time", "no /proc/self/maps")
    else:
        new = set(re.findall(r"(\S*lib(?:cuda|nvrtc)\S*)", maps)) - set(re.findall(r"(\S*lib(?:cuda|nvrtc)\S*)", before or ""))
        res.check("ctypes: libcuda and libnvrtc are not loaded at load time", not new, f"mapped: {sorted(new)}")

    void_pp = ctypes.POINTER(ctypes.c_void_p)
    lib.lowbit_status_string.restype = ctypes.c_char_p
    lib.lowbit_status_string.argtypes = [ctypes.c_int32]
    lib.lowbit_last_error_message.restype = ctypes.c_char_p
    lib.lowbit_last_error_message.argtypes = []
    lib.lowbit_copy_last_error_message.restype = ctypes.c_size_t
    lib.lowbit_copy_last_error_message.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.lowbit_context_create_device.restype = ctypes.c_int32
    lib.lowbit_context_create_device.argtypes = [ctypes.c_int32, ctypes.c_void_p, void_pp]
    lib.lowbit_context_create_offline.restype = ctypes.c_int32
    lib.lowbit_context_create_offline.argtypes = [ctypes.c_char_p, ctypes.POINTER(ContextOptions), void_pp]
    lib.lowbit_context_options_init.restype = None
    lib.lowbit_context_options_init.argtypes = [ctypes.POINTER(ContextOptions)]
    lib.lowbit_context_destroy.restype = None
    lib.lowbit_context_destroy.argtypes = [ctypes.c_void_p]
    lib.lowbit_context_get_info.restype = ctypes.c_int32
    lib.lowbit_context_get_info.argtypes = [ctypes.c_void_p, ctypes.POINTER(DeviceInfo)]
    lib.lowbit_quantize_desc_init.restype = None
    lib.lowbit_quantize_desc_init.argtypes = [ctypes.POINTER(QuantizeDesc)]
    lib.lowbit_quantize_plan_create.restype = ctypes.c_int32
    lib.lowbit_quantize_plan_create.argtypes = [ctypes.c_void_p, ctypes.POINTER(QuantizeDesc), void_pp]
    lib.lowbit_plan_describe.restype = ctypes.c_int32
    lib.lowbit_plan_describe.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                         ctypes.POINTER(ctypes.c_size_t)]
    lib.lowbit_plan_destroy.restype = None
    lib.lowbit_plan_destroy.argtypes = [ctypes.c_void_p]
    lib.lowbit_version_string.restype = ctypes.c_char_p
    lib.lowbit_version_number.restype = ctypes.c_uint32

    res.check("ctypes: lowbit_status_string(6) is LOWBIT_NO_DEVICE",
              (lib.lowbit_status_string(6) or b"").startswith(b"LOWBIT_NO_DEVICE"),
              repr(lib.lowbit_status_string(6)))
    version = (lib.lowbit_version_string() or b"").decode()
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    res.check("ctypes: version string and number agree",
              bool(m) and lib.lowbit_version_number() == int(m[1]) * 10000 + int(m[2]) * 100 + int(m[3]),
              f"{version!r} vs {lib.lowbit_version_number()}")

    ctx = ctypes.c_void_p(1)
    name = "ctypes: lowbit_context_create_device returns LOWBIT_NO_DEVICE without a driver"
    if driver_present():
        res.skip(name, "this machine has a CUDA driver (libcuda.so.1 loads)")
    else:
        status = lib.lowbit_context_create_device(0, None, ctypes.byref(ctx))
        message = (lib.lowbit_last_error_message() or b"").decode(errors="replace")
        res.check(name, status == LOWBIT_NO_DEVICE and ctx.value is None,
                  f"status {status}, out {ctx.value}, message {message!r}")
        size = lib.lowbit_copy_last_error_message(None, 0)
        buf = ctypes.create_string_buffer(size + 1)
        copied = lib.lowbit_copy_last_error_message(buf, size + 1)
        res.check("ctypes: the error message says why and copies into a buffer",
                  size > 0 and copied == size and buf.value.decode(errors="replace") == message
                  and "driver" in message,
                  f"{message!r} ({size} bytes, copied {buf.value!r})")

    status = lib.lowbit_context_create_device(0, None, None)
    res.check("ctypes: a NULL out pointer is LOWBIT_INVALID_ARGUMENT", status == LOWBIT_INVALID_ARGUMENT,
              f"status {status}")

    # An offline plan, described as JSON.
    with tempfile.TemporaryDirectory(prefix="lowbit-check-") as tmp:
        opts = ContextOptions()
        lib.lowbit_context_options_init(ctypes.byref(opts))
        res.check("ctypes: the options struct matches lowbit.h's size", opts.struct_size == ctypes.sizeof(opts),
                  f"{opts.struct_size} vs {ctypes.sizeof(opts)}")
        opts.cache_dir = os.path.join(tmp, "cache").encode()
        opts.log_level = 0
        ctx = ctypes.c_void_p()
        status = lib.lowbit_context_create_offline(b"sm_90a", ctypes.byref(opts), ctypes.byref(ctx))
        if not res.check("ctypes: offline sm_90a context", status == LOWBIT_OK and ctx.value,
                         f"status {status}: {lib.lowbit_last_error_message()!r}"):
            return
        try:
            info = DeviceInfo()
            info.struct_size = ctypes.sizeof(info)
            status = lib.lowbit_context_get_info(ctx, ctypes.byref(info))
            res.check("ctypes: context info of the offline context",
                      status == LOWBIT_OK and info.offline == 1 and info.arch == b"sm_90a"
                      and info.compute_capability == 90,
                      f"status {status}, offline {info.offline}, arch {info.arch!r}")
            desc = QuantizeDesc()
            lib.lowbit_quantize_desc_init(ctypes.byref(desc))
            res.check("ctypes: the descriptor struct matches lowbit.h's size", desc.struct_size == ctypes.sizeof(desc),
                      f"{desc.struct_size} vs {ctypes.sizeof(desc)}")
            desc.dims[0] = 1000
            plan = ctypes.c_void_p()
            status = lib.lowbit_quantize_plan_create(ctx, ctypes.byref(desc), ctypes.byref(plan))
            name = "ctypes: an offline plan describes itself as JSON"
            if status == LOWBIT_NO_COMPILER or info.nvrtc_version == 0:
                res.skip(name, "NVRTC is not available")
                return
            if not res.check("ctypes: offline plan creation", status == LOWBIT_OK,
                             f"status {status}: {lib.lowbit_last_error_message()!r}"):
                return
            try:
                length = ctypes.c_size_t()
                lib.lowbit_plan_describe(plan, None, 0, ctypes.byref(length))
                buf = ctypes.create_string_buffer(length.value + 1)
                lib.lowbit_plan_describe(plan, buf, len(buf), None)
                try:
                    doc = json.loads(buf.value.decode())
                    kernel = doc["kernels"][0]
                    ok = (doc["family"] == "quantize" and doc["arch"] == "sm_90a"
                          and kernel["template"] == "quantize.cuh" and kernel["cache"] == "compiled"
                          and kernel["registers"] > 0 and kernel["key"] and isinstance(kernel["compile"], dict))
                    res.check(name, ok, buf.value.decode())
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    res.check(name, False, f"{e}: {buf.value!r}")
            finally:
                lib.lowbit_plan_destroy(plan)
        finally:
            lib.lowbit_context_destroy(ctx)


def default_header():
    src = os.environ.get("LOWBIT_SOURCE_DIR")
    if src:
        return os.path.join(src, "include", "lowbit", "lowbit.h")
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "include", "lowbit", "lowbit.h")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", help="path of the built liblowbit.so")
    parser.add_argument("--header", default=None, help="lowbit.h (default: from $LOWBIT_SOURCE_DIR or the source tree)")
    args = parser.parse_args()
    header = args.header or default_header()
    res = Results()
    if not os.path.isfile(args.library):
        res.check("the library exists", False, args.library)
    else:
        checks = [("exports", lambda: check_exports(res, args.library, header)),
                  ("NEEDED", lambda: check_needed(res, args.library)),
                  ("ctypes", lambda: check_ctypes(res, args.library))]
        for what, check in checks:
            try:
                check()
            except Exception as e:  # a crash of the checker is a failure, never a pass
                res.check(f"{what}: the checks ran to the end", False, f"{type(e).__name__}: {e}")
    line = f"library: {res.passed} passed, {res.failed} failed, {res.skipped} skipped"
    print(line)
    summary = os.environ.get("LOWBIT_TEST_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    if res.failed:
        return 1
    if res.passed == 0 and res.skipped > 0:
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
