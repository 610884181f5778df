// Suite "wq-decode": the weight-only quantized matmul, decode path, on the
// Llama-3-8B / 70B projection shapes, against the streaming-read ceiling
// measured in the same run (a read-bound kernel moves every weight byte once)
// and against cuBLAS fp16 GEMM on the same M, N, K (the harness's
// cublas_gemm_us: libcublas loaded with dlopen by the bench only).
//
// Timing (the harness's time_kernel_graph): decode steps run as CUDA graphs,
// so each point is a graph of R
// back-to-back launches (R >= 20, weight sets rotated so that no launch finds
// its weights in L2: sets x bytes >= 3 x 60 MB), timed with CUDA events around
// the graph launch; the point is the median over graph runs divided by R.
// Bytes counted: weights + scales + zeros + X + Y (+ bias).
//
// The native layout is also timed with programmatic launch (the descriptor's
// programmatic_launch = 1, tag "(programmatic)"): each kernel of the graph
// may start during the previous one's tail, as in a decode step where
// consecutive layers' kernels follow each other. Both numbers are reported;
// the plain one is what a stream of unrelated kernels sees.
//
// Options (environment): LOWBIT_WQ_SWEEP="cfg1;cfg2;..." also runs the native
// layout at M = 1 and 8 with each LOWBIT_WQ_CONFIG string (tuning); a config
// containing "pdl=1" runs with programmatic launch.
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

struct Shape {
  int64_t k, n;
};

const char* fmt_label(lowbit_wq_format f) {
  return f == LOWBIT_WQ_FORMAT_NATIVE ? "native" : f == LOWBIT_WQ_FORMAT_AWQ ? "awq" : "gptq";
}

// One point: plan, rotated weight sets, graph timing, a record.
void run_point(const Options& o, lowbit_wq_format f, lowbit_dtype at, int64_t m, const Shape& s, double cublas,
               const std::string& tag, bool programmatic = false) {
  lowbit_wq_matmul_desc d = wq_bench_desc(f, at, m, s.n, s.k);
  d.programmatic_launch = programmatic ? 1 : 0;
  lowbit_plan* plan = nullptr;
  if (lowbit_wq_matmul_plan_create(lowbit_ctx(), &d, &plan) != LOWBIT_OK)
    throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  size_t ws_bytes = 0;
  lowbit_plan_workspace_size(plan, &ws_bytes);
  const size_t set_bytes = WqWeightSets::set_bytes(d);
  const WqWeightSets weights(d, WqWeightSets::rotating_count(d));
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
  launch(0);
  cu_check(driver().StreamSynchronize(stream), "wq warm-up");
  const int reps = std::max(sets, 20);
  Timing t = time_kernel_graph(o, device().stream, reps, launch);
  char desc[8192];
  size_t len = 0;
  lowbit_plan_describe(plan, desc, sizeof(desc), &len);
  std::string dj(desc);
  std::string cfg;
  if (size_t p = dj.find("\"config\":"); p != std::string::npos) cfg = dj.substr(p + 9, dj.find('}', p) - p - 8);
  Record r;
  r.suite = "wq-decode";
  r.op = "matmul" + tag;
  r.format = fmt_label(f);
  r.dtype = lowbit_dtype_name(at);
  r.group = 128;
  r.m = m;
  r.n = s.n;
  r.k = s.k;
  r.t = t;
  r.bytes = double(set_bytes) + double(m * s.k * 2) + double(m * s.n * 2);
  r.flops = 2.0 * double(m) * double(s.n) * double(s.k);
  r.ceiling_name = "read";
  r.ceiling_gbps = ceilings(o).read_gbps;
  r.cublas_us = cublas;
  // Registers of the main kernel, for the notes.
  std::string regs;
  for (size_t p = 0; (p = dj.find("\"registers\":", p)) != std::string::npos; p += 12)
    regs += (regs.empty() ? "" : "/") + dj.substr(p + 12, dj.find(',', p) - p - 12);
  auto cfg_int = [&](const char* key) { return json_get_int(cfg, key).value_or(-1); };
  r.config = fmt::format("nb{} u{} st{} w{} s{} regs {}{}", cfg_int("n_blocks_per_cta"), cfg_int("steps_per_unit"),
                         cfg_int("stages"), cfg_int("warps"), cfg_int("split_k"), regs, tag);
  r.extra_json = fmt::format("\"plan_config\":{},\"sets\":{},\"reps\":{}", cfg.empty() ? "{}" : cfg, sets, reps);
  emit(r);
  lowbit_plan_destroy(plan);
}

}  // namespace

void suite_wq(const Options& o) {
  const Shape shapes[] = {{4096, 6144}, {4096, 4096},  {4096, 28672}, {14336, 4096},
                          {8192, 10240}, {8192, 8192}, {8192, 57344}, {28672, 8192}};
  std::vector<int64_t> ms = o.m_values;
  if (ms.empty()) ms = o.quick ? std::vector<int64_t>{1, 8} : std::vector<int64_t>{1, 2, 4, 8};
  // Compile every plan first, in parallel.
  {
    std::vector<lowbit_wq_matmul_desc> descs;
    for (const Shape& s : shapes)
      for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
        for (lowbit_wq_format f : {LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_GPTQ})
          for (int64_t m : ms) {
            descs.push_back(wq_bench_desc(f, at, m, s.n, s.k));
          }
    std::vector<lowbit_op_desc> ops;
    for (const auto& d : descs) ops.push_back({LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d});
    if (lowbit_prewarm(lowbit_ctx(), ops.data(), ops.size(), 0, nullptr) != LOWBIT_OK)
      throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  }
  std::printf("wq-decode: W4 g128, time per kernel inside a CUDA graph; %% of the read ceiling %.0f GB/s\n",
              ceilings(o).read_gbps);
  // The fixed cost of one launch in a graph: a native plan on a tiny shape.
  run_point(o, LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_DTYPE_F16, 1, Shape{256, 256}, 0, " (launch floor)");
  run_point(o, LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_DTYPE_F16, 1, Shape{256, 256}, 0, " (launch floor, programmatic)", true);
  for (const Shape& s : shapes) {
    std::vector<double> cub;
    for (int64_t m : ms) cub.push_back(cublas_gemm_us(o, m, s.n, s.k, LOWBIT_DTYPE_F16));
    for (size_t mi = 0; mi < ms.size(); ++mi)
      for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
        for (lowbit_wq_format f : {LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_GPTQ}) {
          run_point(o, f, at, ms[mi], s, cub[mi], "");
          if (f == LOWBIT_WQ_FORMAT_NATIVE) run_point(o, f, at, ms[mi], s, cub[mi], " (programmatic)", true);
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
      const std::string fmt_cfg = cfg.substr(0, cfg.find(':'));
      const std::string which = cfg.find(':') == std::string::npos ? "native" : cfg.substr(cfg.find(':') + 1);
      setenv("LOWBIT_WQ_CONFIG", fmt_cfg.c_str(), 1);
      const lowbit_wq_format f =
          which == "awq" ? LOWBIT_WQ_FORMAT_AWQ : which == "gptq" ? LOWBIT_WQ_FORMAT_GPTQ : LOWBIT_WQ_FORMAT_NATIVE;
      const bool pdl = fmt_cfg.find("pdl=1") != std::string::npos;
      for (const Shape& s : shapes)
        for (int64_t m : {int64_t(1), int64_t(8)})
          run_point(o, f, LOWBIT_DTYPE_BF16, m, s, 0, " [" + fmt_cfg + "]", pdl);
      unsetenv("LOWBIT_WQ_CONFIG");
    }
  }
}

}  // namespace lowbit::bench
