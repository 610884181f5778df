"""The Python binding against the real liblowbit.so on any machine: version,
status strings, an offline sm_90a context, plan creation and prewarm into a
temporary cache, errors of bad input, and NO_DEVICE where a GPU is needed."""
import array
import ctypes
import gc
import os
import threading
import unittest

import lowbit
from lowbit import _ffi

from .support import cache_dir


class VersionAndStatus(unittest.TestCase):
    def test_version(self):
        parts = [int(p) for p in lowbit.version_string().split(".")]
        self.assertEqual(len(parts), 3)
        self.assertEqual(lowbit.version_number(), parts[0] * 10000 + parts[1] * 100 + parts[2])

    def test_status_strings(self):
        self.assertTrue(lowbit.status_string(0).startswith("LOWBIT_OK"))
        self.assertTrue(lowbit.status_string(lowbit.Status.NO_DEVICE).startswith("LOWBIT_NO_DEVICE"))
        self.assertEqual(lowbit.status_string(4242), "unknown lowbit status")
        self.assertEqual(lowbit.DType.BF16.lowbit_name, "bf16")
        self.assertEqual(lowbit.DType.of("float16"), lowbit.DType.F16)
        self.assertEqual(lowbit.DType.of("s8"), lowbit.DType.S8)

    def test_library_location(self):
        want = os.environ.get("LOWBIT_LIBRARY")
        if want:
            self.assertEqual(_ffi.library_path, want)


class OfflineContext(unittest.TestCase):
    def offline(self, **options):
        options.setdefault("cache_dir", cache_dir(self))
        ctx = lowbit.Context.offline("sm_90a", **options)
        self.addCleanup(ctx.close)
        return ctx

    def test_info(self):
        d = cache_dir(self)
        ctx = self.offline(cache_dir=d)
        info = ctx.info()
        self.assertTrue(info.offline)
        self.assertEqual(info.ordinal, -1)
        self.assertEqual(info.arch, "sm_90a")
        self.assertEqual(info.compute_capability, 90)
        self.assertGreater(info.nvrtc_version, 0)
        self.assertEqual(os.path.realpath(info.cache_dir), os.path.realpath(d))

    def test_plan_cache_prewarm(self):
        d = cache_dir(self)
        lines = []
        lock = threading.Lock()

        def logger(level, message):
            with lock:
                lines.append((level, message))

        ctx = lowbit.Context.offline("sm_90a", cache_dir=d, log_level=lowbit.LogLevel.INFO, logger=logger)
        desc = lowbit.QuantizeDesc(shape=(4096,))
        plan = ctx.quantize_plan(desc)
        self.assertEqual(plan.workspace_size(), 0)
        info = plan.describe_dict()
        self.assertEqual(info["family"], "quantize")
        self.assertEqual(info["arch"], "sm_90a")
        stats = ctx.cache_stats()
        self.assertEqual((stats.misses, stats.compiles), (1, 1))
        self.assertGreaterEqual(stats.disk_entries, 1)
        self.assertTrue(lines, "a cold compile is logged at info level")

        # Plans outlive their context; the logger stays alive with them.
        ctx.close()
        ctx.close()
        del logger
        gc.collect()
        self.assertIn("quantize", plan.describe())
        plan.close()
        with self.assertRaises(lowbit.InvalidArgumentError):
            plan.describe()

        with lowbit.Context.offline("sm_90a", cache_dir=d) as again:
            with again.plan(desc):
                pass
            stats = again.cache_stats()
            self.assertEqual((stats.disk_hits, stats.compiles), (1, 0))
            bad = lowbit.QuantizeDesc(shape=(1, 2, 3, 4, 5))
            with self.assertRaises(lowbit.InvalidProblemError) as cm:
                again.prewarm([desc, bad], threads=2)
            self.assertIn("item 1", cm.exception.message)
            self.assertEqual(cm.exception.results, [lowbit.Status.OK, lowbit.Status.INVALID_PROBLEM])
            self.assertEqual(again.prewarm([desc]), [lowbit.Status.OK])
            self.assertEqual(again.cache_stats().compiles, 0)

    def test_logger_from_prewarm_threads(self):
        # lowbit's prewarm workers are C threads: ctypes takes the GIL for them.
        lines = []
        lock = threading.Lock()

        def logger(level, message):
            with lock:
                lines.append(message)

        ctx = self.offline(cache_mode=lowbit.CacheMode.MEMORY, log_level=lowbit.LogLevel.INFO, logger=logger)
        ctx.prewarm([lowbit.QuantizeDesc(shape=(8, 512)), lowbit.QuantizeDesc(shape=(8, 512), q_dtype="u8")],
                    threads=2)
        self.assertGreaterEqual(len(lines), 2)

    def test_errors(self):
        with self.assertRaises(lowbit.InvalidArgumentError) as cm:
            lowbit.Context.offline("sm_1")
        e = cm.exception
        self.assertIsInstance(e, lowbit.LowbitError)
        self.assertIsInstance(e, ValueError)
        self.assertEqual(e.status, lowbit.Status.INVALID_ARGUMENT)
        self.assertEqual(e.code, 5)
        self.assertIn("sm_1", e.message)
        self.assertTrue(str(e).startswith("LOWBIT_INVALID_ARGUMENT"))
        with self.assertRaises(lowbit.InvalidArgumentError):
            lowbit.Context.offline("sm_90a", cache_mode=42)

        ctx = self.offline()
        with self.assertRaises(lowbit.InvalidProblemError) as cm:
            ctx.quantize_plan(shape=())
        self.assertIn("rank", cm.exception.message)
        with self.assertRaises(lowbit.UnsupportedError):  # well-formed, but not a float input
            ctx.quantize_plan(shape=(16,), x_dtype="s8")
        with self.assertRaises(lowbit.InvalidArgumentError):
            ctx.quantize_plan(shape=(16,), x_dtype=77)  # unknown dtypes reach lowbit, which rejects them
        with self.assertRaises(lowbit.InvalidProblemError):
            ctx.quantize_plan(shape=(16,), qmin=10, qmax=-10)
        desc = lowbit.QuantizeDesc(shape=(16,))
        desc.raw.struct_size = 3
        with self.assertRaises(lowbit.InvalidArgumentError):
            ctx.quantize_plan(desc)
        with self.assertRaises(ValueError):
            lowbit.QuantizeDesc(x_dtype="no-such-type")
        with self.assertRaises(AttributeError):
            lowbit.QuantizeDesc(no_such_field=1)

    def test_no_device(self):
        ctx = self.offline()
        with ctx.quantize_plan(shape=(4096,)) as plan:
            # An offline plan never runs; these pointers are never touched.
            with self.assertRaises(lowbit.NoDeviceError) as cm:
                plan.run(x=256, q=512, scale=1024)
            self.assertTrue(cm.exception.message)
            with self.assertRaises(TypeError):
                plan.run(x=256, q=512, scale=1024, bogus=1)
        try:
            lowbit.Context.device(0).close()
        except lowbit.NoDeviceError as e:
            self.assertEqual(e.status, lowbit.Status.NO_DEVICE)
            with self.assertRaises(lowbit.NoDeviceError):
                lowbit.Context.current()
        else:
            self.skipTest("a GPU is present; NO_DEVICE is checked on CPU-only machines")

    def test_threads(self):
        ctx = self.offline()
        plan = ctx.quantize_plan(shape=(1024,))
        self.addCleanup(plan.close)
        errors = []

        def work(i):
            try:
                assert "quantize" in plan.describe()
                try:
                    ctx.quantize_plan(shape=(-1 - i,))
                except lowbit.InvalidProblemError as e:
                    assert str(-1 - i) in e.message, e.message  # each thread's own message
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


class Pointers(unittest.TestCase):
    def test_device_pointers(self):
        class CAI:
            __cuda_array_interface__ = {"data": (0x7000, False), "shape": (4,), "typestr": "<f4", "version": 3}

        self.assertEqual(lowbit.device_pointer(0x1234), 0x1234)
        self.assertEqual(lowbit.device_pointer(None), 0)
        self.assertEqual(lowbit.device_pointer(CAI()), 0x7000)
        self.assertEqual(lowbit.device_pointer(ctypes.c_uint64(0x99)), 0x99)
        with self.assertRaises(TypeError):
            lowbit.device_pointer("not memory")

    def test_dlpack(self):
        # A hand-made DLPack capsule, as torch or CuPy would return.
        class DLManagedTensor(ctypes.Structure):
            _fields_ = [("dl_tensor", lowbit._DLTensor), ("manager_ctx", ctypes.c_void_p),
                        ("deleter", ctypes.c_void_p)]

        new_capsule = ctypes.pythonapi.PyCapsule_New
        new_capsule.restype = ctypes.py_object
        new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        managed = DLManagedTensor()
        managed.dl_tensor.data = 0x10000
        managed.dl_tensor.byte_offset = 64

        class Tensor:
            def __init__(self, device_type):
                self.device_type = device_type

            def __dlpack__(self, stream=None):
                managed.dl_tensor.device.device_type = self.device_type
                return new_capsule(ctypes.addressof(managed), b"dltensor", None)

        self.assertEqual(lowbit.device_pointer(Tensor(2)), 0x10000 + 64)  # kDLCUDA
        with self.assertRaises(TypeError):
            lowbit.device_pointer(Tensor(1))  # a CPU tensor is not device memory
        self.assertEqual(lowbit.host_pointer(Tensor(1), []), 0x10000 + 64)

    def test_host_buffers(self):
        keep = []
        a = array.array("f", [1.0, 2.0])
        self.assertEqual(lowbit.host_pointer(a, keep), a.buffer_info()[0])
        c = (ctypes.c_int8 * 4)()
        self.assertEqual(lowbit.host_pointer(c, keep), ctypes.addressof(c))
        self.assertNotEqual(lowbit.host_pointer(b"\x00\x00\x80\x3f", keep), 0)  # read-only: copied
        try:
            import numpy as np
        except ImportError:
            return
        x = np.zeros(4, dtype=np.float32)
        self.assertEqual(lowbit.host_pointer(x, keep), x.ctypes.data)

    def test_reference(self):
        x = array.array("f", [1.0, 0.25, 0.75, -100.0, 100.0, -0.25])
        q = bytearray(6)
        desc = lowbit.QuantizeDesc(shape=(6,))
        lowbit.reference_run(desc, x=x, q=q, scale=array.array("f", [0.5]), zero_point=array.array("i", [0]))
        self.assertEqual(list(array.array("b", bytes(q))), [2, 0, 2, -128, 127, 0])  # half to even, clamp
        with self.assertRaises(lowbit.InvalidArgumentError):
            lowbit.reference_run(desc, x=x)
        try:
            import numpy as np
        except ImportError:
            return
        qn = np.zeros(6, dtype=np.int8)
        lowbit.reference_run(desc, x=np.array(x, dtype=np.float32), q=qn, scale=np.float32([0.5]))
        self.assertEqual(qn.tolist(), [2, 0, 2, -128, 127, 0])


if __name__ == "__main__":
    unittest.main()
