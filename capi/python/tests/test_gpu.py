"""One per-tensor quantize plan end to end on a GPU, compared bit-exactly
with lowbit's CPU reference. Device memory comes from torch when it is
importable with CUDA (exercising __cuda_array_interface__, DLPack and torch
streams), else from libcuda through ctypes. Without a GPU: SKIPPED."""
import array
import ctypes
import math
import unittest

import lowbit

from .support import cache_dir

N = 1 << 20
SCALE = 0.037
ZERO_POINT = 3


def host_data():
    return array.array("f", (4.0 * math.sin(0.001 * i) + 0.37 * (i % 7) for i in range(N)))


def reference(desc, x):
    want = bytearray(N)
    lowbit.reference_run(desc, x=x, q=want, scale=array.array("f", [SCALE]),
                         zero_point=array.array("i", [ZERO_POINT]))
    return bytes(want)


class LibCuda:
    """The few driver calls the test needs, through ctypes."""

    def __init__(self):
        self.lib = ctypes.CDLL("libcuda.so.1")
        u64, vp, sz = ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t
        for name, argtypes in {
            "cuInit": [ctypes.c_uint], "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
            "cuDevicePrimaryCtxRetain": [ctypes.POINTER(vp), ctypes.c_int],
            "cuDevicePrimaryCtxRelease_v2": [ctypes.c_int], "cuCtxSetCurrent": [vp],
            "cuMemAlloc_v2": [ctypes.POINTER(u64), sz], "cuMemFree_v2": [u64],
            "cuMemcpyHtoD_v2": [u64, vp, sz], "cuMemcpyDtoH_v2": [vp, u64, sz], "cuCtxSynchronize": [],
        }.items():
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int

    def __call__(self, name, *args):
        rc = getattr(self.lib, name)(*args)
        if rc != 0:
            raise RuntimeError("%s failed: CUresult %d" % (name, rc))


class GpuQuantize(unittest.TestCase):
    def setUp(self):
        try:
            self.ctx = lowbit.Context.device(0, cache_dir=cache_dir(self))
        except lowbit.NoDeviceError as e:
            self.skipTest("no GPU: " + e.message)
        self.addCleanup(self.ctx.close)
        self.desc = lowbit.QuantizeDesc(shape=(N,), x_dtype="f32", q_dtype="s8")
        self.plan = self.ctx.quantize_plan(self.desc)
        self.addCleanup(self.plan.close)

    def test_with_torch(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not importable (test_with_libcuda covers the GPU path)")
        if not torch.cuda.is_available():
            self.skipTest("torch has no CUDA")
        xh = host_data()
        want = reference(self.desc, xh)
        x = torch.frombuffer(bytearray(xh.tobytes()), dtype=torch.float32).cuda()
        scale = torch.tensor([SCALE], dtype=torch.float32, device="cuda")
        zp = torch.tensor([ZERO_POINT], dtype=torch.int32, device="cuda")
        q = torch.empty(N, dtype=torch.int8, device="cuda")
        stream = torch.cuda.current_stream()
        self.plan.run(x=x, q=q, scale=scale, zero_point=zp, stream=stream)  # __cuda_array_interface__
        torch.cuda.synchronize()
        self.assertEqual(bytes(q.cpu().view(torch.uint8).tolist()), want)

        class DLPackOnly:  # only __dlpack__, as a JAX or other DLPack producer gives
            def __init__(self, t):
                self.t = t

            def __dlpack__(self, stream=None):
                return self.t.__dlpack__()

        q2 = torch.zeros(N, dtype=torch.int8, device="cuda")
        self.plan.run(x=DLPackOnly(x), q=DLPackOnly(q2), scale=scale.data_ptr(), zero_point=zp, stream=stream)
        torch.cuda.synchronize()
        self.assertTrue(torch.equal(q, q2))

    def test_with_libcuda(self):
        try:
            cu = LibCuda()
        except OSError as e:
            self.skipTest("libcuda.so.1 cannot be loaded: %s" % e)
        xh = host_data()
        want = reference(self.desc, xh)
        cu("cuInit", 0)
        dev, pctx = ctypes.c_int(), ctypes.c_void_p()
        cu("cuDeviceGet", ctypes.byref(dev), 0)
        cu("cuDevicePrimaryCtxRetain", ctypes.byref(pctx), dev)
        cu("cuCtxSetCurrent", pctx)
        ptrs = []
        try:
            for size in (4 * N, N, 4, 4):
                p = ctypes.c_uint64()
                cu("cuMemAlloc_v2", ctypes.byref(p), size)
                ptrs.append(p.value)
            dx, dq, ds, dz = ptrs
            scale, zp = ctypes.c_float(SCALE), ctypes.c_int32(ZERO_POINT)
            cu("cuMemcpyHtoD_v2", dx, xh.buffer_info()[0], 4 * N)
            cu("cuMemcpyHtoD_v2", ds, ctypes.addressof(scale), 4)
            cu("cuMemcpyHtoD_v2", dz, ctypes.addressof(zp), 4)
            self.plan.run(x=dx, q=dq, scale=ds, zero_point=dz)  # raw CUdeviceptr ints, default stream
            cu("cuCtxSynchronize")
            got = (ctypes.c_char * N)()
            cu("cuMemcpyDtoH_v2", ctypes.addressof(got), dq, N)
        finally:
            for p in ptrs:
                cu("cuMemFree_v2", p)
            cu("cuDevicePrimaryCtxRelease_v2", dev)
        mismatches = sum(1 for a, b in zip(got.raw, want) if a != b)
        self.assertEqual(mismatches, 0, "%d of %d elements differ from the reference" % (mismatches, N))


if __name__ == "__main__":
    unittest.main()
