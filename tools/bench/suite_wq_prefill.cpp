// Suite "wq-prefill": the weight-only W4 g128 matmul on the prefill path (the
// tensor-core GEMM, plans of M >= 9) on the Llama-3-8B / 70B projection
// shapes, against cuBLAS GEMM of the same dtype, M, N, K in the same run, and
// at M <= 128 also against the decode path of the same plan shape (forced
// with LOWBIT_WQ_CONFIG=path=1) and the streaming-read ceiling.
//
// Timing: M <= 128 points are short and read-bound, so they run as CUDA
// graphs of R launches over rotated weight sets (no launch finds its weights
// in L2); M >= 512 points are long and compute-bound: events around each
// launch, median of >= 50 runs / 200 ms. Each point names its bound: "read"
// (fraction of the read ceiling) for M <= 128, "cublas" (cuBLAS time / ours)
// for M >= 512.
//
// Formats: native for every point; AWQ (repacked once into the plan's
// workspace, then the same GEMM) at bf16 to show that the checkpoint path
// runs at the native speed.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "cuda/driver.hpp"
#include "harness.hpp"
#include "wq_weight_sets.hpp"

namespace lowbit::bench {

namespace {

lowbit_wq_matmul_desc prefill_desc(lowbit_wq_format f, lowbit_dtype at, int64_t m, const GemmShape& s) {
  return wq_bench_desc(f, at, m, s.n, s.k);
}

void run_point(const Options& o, lowbit_wq_format f, lowbit_dtype at, int64_t m, const GemmShape& s, double cublas,
               const std::string& tag) {
  const lowbit_wq_matmul_desc d = prefill_desc(f, at, m, s);
  lowbit_plan* plan = nullptr;
  if (lowbit_wq_matmul_plan_create(lowbit_ctx(), &d, &plan) != LOWBIT_OK)
    throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  size_t ws_bytes = 0;
  lowbit_plan_workspace_size(plan, &ws_bytes);
  const bool native = f == LOWBIT_WQ_FORMAT_NATIVE;
  const bool short_point = m <= 128;
  // Read-bound points rotate weight sets (>= 180 MB in all); a repacked
  // format reads its workspace copy, so only native rotates.
  const size_t set_bytes = WqWeightSets::set_bytes(d);
  const WqWeightSets weights(d, short_point && native ? WqWeightSets::rotating_count(d) : 1);
  const int sets = weights.count();
  Buffer x(size_t(m * s.k) * 2), y(size_t(m * s.n) * 2), ws(std::max<size_t>(ws_bytes, 16));
  x.fill_random_floats(at, -1.0f, 1.0f, 5);
  CUstream stream = device().stream;
  auto launch = [&](int i) {
    std::vector<lowbit_arg> args = {{LOWBIT_ARG_X, 0, x.ptr()}, {LOWBIT_ARG_Y, 0, y.ptr()}};
    weights.add_args(args, i);
    if (lowbit_plan_run(plan, args.data(), args.size(), ws_bytes ? ws.ptr() : 0, ws_bytes, stream) != LOWBIT_OK)
      throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  };
  launch(0);  // a repacked format repacks here, once
  cu_check(driver().StreamSynchronize(stream), "wq-prefill warm-up");
  const int reps = std::max(sets, 20);
  const Timing t = short_point ? time_kernel_graph(o, stream, reps, launch) : time_kernel(o, stream, launch);
  char desc[8192];
  size_t len = 0;
  lowbit_plan_describe(plan, desc, sizeof(desc), &len);
  const std::string dj(desc);
  std::string cfg;
  if (size_t p = dj.find("\"config\":"); p != std::string::npos) cfg = dj.substr(p + 9, dj.find('}', p) - p - 8);
  std::string regs;
  for (size_t p = 0; (p = dj.find("\"registers\":", p)) != std::string::npos; p += 12)
    regs += (regs.empty() ? "" : "/") + dj.substr(p + 12, dj.find(',', p) - p - 12);
  Record r;
  r.suite = "wq-prefill";
  r.op = "matmul" + tag;
  r.format = native ? "native" : "awq";
  r.dtype = lowbit_dtype_name(at);
  r.group = 128;
  r.m = m;
  r.n = s.n;
  r.k = s.k;
  r.t = t;
  r.bytes = double(set_bytes) + double(m * s.k * 2) + double(m * s.n * 2);
  r.flops = 2.0 * double(m) * double(s.n) * double(s.k);
  r.ceiling_name = short_point ? "read" : "cublas";
  r.ceiling_gbps = short_point ? ceilings(o).read_gbps : 0.0;
  r.cublas_us = cublas;
  if (json_get_int(cfg, "tile_m")) {
    r.config = fmt::format("{}x{} st{} s{} regs {}", json_get_int(cfg, "tile_m").value_or(0),
                           json_get_int(cfg, "tile_n").value_or(0), json_get_int(cfg, "stages").value_or(0),
                           json_get_int(cfg, "split_k").value_or(0), regs);
  } else {
    r.config = fmt::format("decode nb{} s{} regs {}", json_get_int(cfg, "n_blocks_per_cta").value_or(0),
                           json_get_int(cfg, "split_k").value_or(0), regs);
  }
  r.extra_json = fmt::format("\"model\":\"{}\",\"layer\":\"{}\",\"plan_config\":{},\"sets\":{}", s.model, s.layer,
                             cfg.empty() ? "{}" : cfg, sets);
  emit(r);
  lowbit_plan_destroy(plan);
}

}  // namespace

void suite_wq_prefill(const Options& o) {
  const std::vector<GemmShape> shapes = gemm_shapes(o);
  const std::vector<int64_t> ms =
      m_values(o, o.quick ? std::vector<int64_t>{16, 128, 512, 4096}
                          : std::vector<int64_t>{16, 32, 64, 128, 512, 2048, 4096, 8192});
  {
    std::vector<lowbit_wq_matmul_desc> descs;
    for (const GemmShape& s : shapes)
      for (int64_t m : ms) {
        for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
          descs.push_back(prefill_desc(LOWBIT_WQ_FORMAT_NATIVE, at, m, s));
        descs.push_back(prefill_desc(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_DTYPE_BF16, m, s));
      }
    std::vector<lowbit_op_desc> ops;
    for (const auto& d : descs) ops.push_back({LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d});
    if (lowbit_prewarm(lowbit_ctx(), ops.data(), ops.size(), 0, nullptr) != LOWBIT_OK)
      throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  }
  std::printf("wq-prefill: W4 g128; M <= 128 against the read ceiling %.0f GB/s, M >= 512 against cuBLAS\n",
              ceilings(o).read_gbps);
  for (const GemmShape& s : shapes)
    for (int64_t m : ms) {
      const double cub16 = cublas_gemm_us(o, m, s.n, s.k, LOWBIT_DTYPE_F16);
      const double cub_bf = cublas_gemm_us(o, m, s.n, s.k, LOWBIT_DTYPE_BF16);
      run_point(o, LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_DTYPE_F16, m, s, cub16, "");
      run_point(o, LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_DTYPE_BF16, m, s, cub_bf, "");
      run_point(o, LOWBIT_WQ_FORMAT_AWQ, LOWBIT_DTYPE_BF16, m, s, cub_bf, "");
      if (m <= 128) {  // the other path at the same M, for the "never slower" check
        const bool gemm_default = m >= 9;
        setenv("LOWBIT_WQ_CONFIG", gemm_default ? "path=1" : "path=2", 1);
        run_point(o, LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_DTYPE_F16, m, s, cub16, gemm_default ? " (decode path)" : " (gemm path)");
        unsetenv("LOWBIT_WQ_CONFIG");
      }
    }
  if (const char* sweep = std::getenv("LOWBIT_WQ_SWEEP"); sweep != nullptr && *sweep != 0) {
    std::string all(sweep);
    size_t pos = 0;
    while (pos <= all.size()) {
      size_t end = all.find(';', pos);
      if (end == std::string::npos) end = all.size();
      const std::string cfg = all.substr(pos, end - pos);
      pos = end + 1;
      if (cfg.empty()) continue;
      setenv("LOWBIT_WQ_CONFIG", cfg.c_str(), 1);
      for (const GemmShape& s : shapes)
        for (int64_t m : ms) run_point(o, LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_DTYPE_F16, m, s, 0, " [" + cfg + "]");
      unsetenv("LOWBIT_WQ_CONFIG");
    }
  }
}

}  // namespace lowbit::bench
