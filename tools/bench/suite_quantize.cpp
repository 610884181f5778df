// Suite "quantize": elementwise quantize / dequantize / dynamic quantize
// against the copy ceiling (bytes read + bytes written per second, scales
// included), per-tensor, per-token and per-group (G = 128), f16 / bf16 to s8 /
// s4 and back, on [8192, 8192], [1, 4096] and [4096, 14336]. Each point is
// also compared with a device-to-device copy of the same number of bytes
// timed the same way (what a copy of that size costs, launch latency and
// all): the meaningful ceiling for the small shape.
// $LOWBIT_BENCH_QUANTIZE_FILTER (substrings of "op.scope q x MxN", separated
// by '|') limits the points, for tuning sessions.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "cuda/driver.hpp"
#include "harness.hpp"

namespace lowbit::bench {

namespace {

struct Shape {
  int64_t rows, cols;
};

double dtype_size(lowbit_dtype t) { return t == LOWBIT_DTYPE_F32 ? 4 : t == LOWBIT_DTYPE_F16 || t == LOWBIT_DTYPE_BF16 ? 2 : 1; }

const char* scope_name(lowbit_quantize_scope s) {
  return s == LOWBIT_SCOPE_PER_TENSOR ? "per_tensor" : s == LOWBIT_SCOPE_PER_TOKEN ? "per_token" : "per_group";
}
const char* op_name(lowbit_quantize_op op) {
  return op == LOWBIT_QOP_QUANTIZE ? "quantize" : op == LOWBIT_QOP_DEQUANTIZE ? "dequantize" : "dynamic";
}

struct Summary {
  std::string line;
};
std::vector<Summary>& summary() {
  static std::vector<Summary> s;
  return s;
}

// Median time of a device-to-device copy moving `bytes` in total (bytes / 2
// read, bytes / 2 written), rotated over buffers like the kernel's inputs.
double same_size_copy_us(const Options& o, size_t bytes, int sets) {
  const size_t half = std::max<size_t>(bytes / 2, 16);
  std::vector<Buffer> src, dst;
  for (int i = 0; i < sets; ++i) {
    src.emplace_back(half);
    dst.emplace_back(half);
  }
  CUstream s = device().stream;
  Timing t = time_kernel(o, s, [&](int i) {
    const int k = i % sets;
    cu_check(driver().MemcpyDtoDAsync(dst[k].ptr(), src[k].ptr(), half, s), "cuMemcpyDtoDAsync");
  });
  return t.median_us;
}

void run_point(const Options& o, lowbit_quantize_op op, lowbit_quantize_scope scope, lowbit_dtype x, lowbit_dtype q,
               const Shape& s) {
  const std::string name = fmt::format("{}.{} {} {} {}x{}", op_name(op), scope_name(scope), lowbit_dtype_name(q),
                                       lowbit_dtype_name(x), s.rows, s.cols);
  if (const char* f = std::getenv("LOWBIT_BENCH_QUANTIZE_FILTER"); f != nullptr) {
    // Alternatives separated by '|': the point runs if its name contains any.
    const std::string_view filter(f);
    bool any = false;
    for (size_t pos = 0; pos <= filter.size() && !any;) {
      const size_t end = std::min(filter.find('|', pos), filter.size());
      any = name.find(filter.substr(pos, end - pos)) != std::string::npos;
      pos = end + 1;
    }
    if (!any) return;
  }
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.op = op;
  d.scope = scope;
  d.x_dtype = x;
  d.q_dtype = q;
  d.rank = 2;
  d.dims[0] = s.rows;
  d.dims[1] = s.cols;
  d.group_size = 128;
  d.symmetric = 1;
  lowbit_plan* plan = nullptr;
  if (lowbit_quantize_plan_create(lowbit_ctx(), &d, &plan) != LOWBIT_OK)
    throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  size_t ws_bytes = 0;
  lowbit_plan_workspace_size(plan, &ws_bytes);
  const size_t n = size_t(s.rows * s.cols);
  const size_t x_bytes = n * size_t(dtype_size(x));
  const size_t q_bytes = q == LOWBIT_DTYPE_S4 || q == LOWBIT_DTYPE_U4 ? size_t(s.rows) * size_t((s.cols + 1) / 2) : n;
  const size_t scales = scope == LOWBIT_SCOPE_PER_TENSOR ? 1 : scope == LOWBIT_SCOPE_PER_TOKEN ? size_t(s.rows) : n / 128;
  const size_t scale_bytes = scales * 4;
  // Rotate input/output sets so that one run's data is not in L2 for the next.
  const size_t set_bytes = x_bytes + q_bytes + scale_bytes;
  const int sets = int(std::clamp<size_t>((size_t(256) << 20) / set_bytes, 1, 64));
  std::vector<Buffer> xs, qs, ss;
  const std::vector<float> sv(scales, 0.03f);
  for (int i = 0; i < sets; ++i) {
    xs.emplace_back(x_bytes);
    qs.emplace_back(q_bytes);
    ss.emplace_back(scale_bytes);
    xs.back().fill_random_floats(x, -4.0f, 4.0f, 17 + i);
    qs.back().fill_random(99 + i);
    ss.back().upload(sv.data(), scale_bytes);
  }
  Buffer ws(std::max<size_t>(ws_bytes, 16));
  CUstream stream = device().stream;
  Timing t = time_kernel(o, stream, [&](int i) {
    const int k = i % sets;
    lowbit_arg args[] = {{LOWBIT_ARG_X, 0, xs[k].ptr()}, {LOWBIT_ARG_Q, 0, qs[k].ptr()}, {LOWBIT_ARG_SCALE, 0, ss[k].ptr()}};
    if (lowbit_plan_run(plan, args, 3, ws.ptr(), ws_bytes, stream) != LOWBIT_OK)
      throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  });
  const double bytes = double(x_bytes + q_bytes + scale_bytes);
  const double copy_us = same_size_copy_us(o, size_t(bytes), sets);
  char desc[8192];
  lowbit_plan_describe(plan, desc, sizeof(desc), nullptr);
  std::string regs = "?";
  if (const char* r = std::strstr(desc, "\"registers\":")) regs = std::string(r + 12, std::strcspn(r + 12, ",}"));
  Record r;
  r.suite = "quantize";
  r.op = fmt::format("{}.{}", op_name(op), scope_name(scope));
  r.format = lowbit_dtype_name(q);
  r.dtype = lowbit_dtype_name(x);
  r.group = scope == LOWBIT_SCOPE_PER_GROUP ? 128 : 0;
  r.m = s.rows;
  r.n = s.cols;
  r.t = t;
  r.bytes = bytes;
  r.ceiling_name = "copy";
  r.ceiling_gbps = ceilings(o).copy_gbps;
  r.config = fmt::format("regs={}", regs);
  r.extra_json = fmt::format("\"same_size_copy_us\":{:.3f},\"fraction_of_same_size_copy\":{:.4f}", copy_us,
                             copy_us / t.median_us);
  emit(r);
  const double gbps = bytes / (t.median_us * 1e3);
  summary().push_back({fmt::format("| {:>11} | {:<22} | {:>4} -> {:<3} | {:8.2f} | {:7.1f} | {:5.1f}% | {:5.1f}% |",
                                   fmt::format("{}x{}", s.rows, s.cols), r.op, r.dtype, r.format, t.median_us, gbps,
                                   100.0 * gbps / r.ceiling_gbps, 100.0 * copy_us / t.median_us)});
  lowbit_plan_destroy(plan);
}

}  // namespace

void suite_quantize(const Options& o) {
  const Shape shapes[] = {{8192, 8192}, {1, 4096}, {4096, 14336}};
  for (const Shape& s : shapes)
    for (lowbit_dtype x : {LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F16})
      for (lowbit_dtype q : {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_S4}) {
        for (lowbit_quantize_scope scope : {LOWBIT_SCOPE_PER_TENSOR, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_SCOPE_PER_GROUP}) {
          if (scope == LOWBIT_SCOPE_PER_TENSOR && x != LOWBIT_DTYPE_BF16) continue;
          for (lowbit_quantize_op op : {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE}) run_point(o, op, scope, x, q, s);
        }
        run_point(o, LOWBIT_QOP_DYNAMIC_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, x, q, s);
      }
  std::printf("\n| shape | op | x -> q | us | GB/s | %% of copy (%.0f GB/s) | %% of same-size copy |\n",
              ceilings(o).copy_gbps);
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const Summary& s : summary()) std::printf("%s\n", s.line.c_str());
  summary().clear();
}

}  // namespace lowbit::bench
