// Suite "cublas": the cuBLAS GEMM baseline itself (the ceiling the GEMM-like
// suites compare against), f16 and bf16 on the model shapes of DESIGN.md
// section 8, against the streaming-read ceiling: at small M a GEMM only has to
// read its weights once, so that is its bound; at large M the TFLOP/s column
// is the figure to read. libcublas is dlopen'ed by the harness; the suite
// records nothing (and says so) where it cannot be loaded.
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "harness.hpp"

namespace lowbit::bench {

void suite_cublas(const Options& o) {
  const CublasInfo& info = cublas_info();
  if (!info.available) {
    std::printf("cublas: not available (%s): no baseline\n", info.problem.c_str());
    return;
  }
  std::printf("cublas: %s, version %d\n", info.library.c_str(), info.version);
  const std::vector<int64_t> ms =
      m_values(o, o.quick ? std::vector<int64_t>{1, 16, 4096} : std::vector<int64_t>{1, 4, 16, 64, 128, 512, 4096});
  for (const GemmShape& s : gemm_shapes(o))
    for (lowbit_dtype dt : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
      for (int64_t m : ms) {
        std::string layout;
        Record r;
        r.t = cublas_gemm_timing(o, m, s.n, s.k, dt, &layout);
        r.suite = "cublas";
        r.op = "gemm";
        r.format = lowbit_dtype_name(dt);
        r.dtype = lowbit_dtype_name(dt);
        r.m = m;
        r.n = s.n;
        r.k = s.k;
        r.bytes = 2.0 * (double(s.k) * s.n + double(m) * s.k + double(m) * s.n);
        r.flops = 2.0 * double(m) * s.n * s.k;
        r.ceiling_name = "read";
        r.ceiling_gbps = ceilings(o).read_gbps;
        r.config = fmt::format("cublasGemmEx f32 compute, layout {}, {} {}", layout, s.model, s.layer);
        emit(r);
      }
}

}  // namespace lowbit::bench
