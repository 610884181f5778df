// Suite "quantize": elementwise quantize / dequantize against the copy
// ceiling (bytes read + bytes written per second).
#include <fmt/format.h>

#include <string>

#include "common/error.hpp"
#include "cuda/driver.hpp"
#include "harness.hpp"

namespace lowbit::bench {

namespace {

struct Shape {
  int64_t rows, cols;
};

double dtype_size(lowbit_dtype t) { return t == LOWBIT_DTYPE_F32 ? 4 : t == LOWBIT_DTYPE_F16 || t == LOWBIT_DTYPE_BF16 ? 2 : 1; }

void run_point(const Options& o, lowbit_quantize_op op, lowbit_dtype x, lowbit_dtype q, const Shape& s) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.op = op;
  d.x_dtype = x;
  d.q_dtype = q;
  d.rank = 2;
  d.dims[0] = s.rows;
  d.dims[1] = s.cols;
  lowbit_plan* plan = nullptr;
  if (lowbit_quantize_plan_create(lowbit_ctx(), &d, &plan) != LOWBIT_OK)
    throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  const size_t n = size_t(s.rows * s.cols);
  const size_t x_bytes = n * size_t(dtype_size(x));
  const size_t q_bytes = q == LOWBIT_DTYPE_S4 || q == LOWBIT_DTYPE_U4 ? (n + 1) / 2 : n;
  // Rotate input/output sets so that one run's data is not in L2 for the next.
  const size_t set_bytes = x_bytes + q_bytes;
  const int sets = int(std::clamp<size_t>((size_t(256) << 20) / set_bytes, 1, 64));
  std::vector<Buffer> xs, qs;
  for (int i = 0; i < sets; ++i) {
    xs.emplace_back(x_bytes);
    qs.emplace_back(q_bytes);
    xs.back().fill_random_floats(x, -4.0f, 4.0f, 17 + i);
    qs.back().fill_random(99 + i);
  }
  Buffer scale(4), flush(set_bytes * sets < (size_t(200) << 20) ? size_t(256) << 20 : 16);
  float sv = 0.03f;
  scale.upload(&sv, 4);
  CUstream stream = device().stream;
  const bool needs_flush = set_bytes * sets < (size_t(200) << 20);
  Timing t = time_kernel(o, stream, [&](int i) {
    const int k = i % sets;
    lowbit_arg args[] = {{LOWBIT_ARG_X, 0, xs[k].ptr()}, {LOWBIT_ARG_Q, 0, qs[k].ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()}};
    if (lowbit_plan_run(plan, args, 3, 0, 0, stream) != LOWBIT_OK) throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
  });
  (void)needs_flush;
  char desc[4096];
  lowbit_plan_describe(plan, desc, sizeof(desc), nullptr);
  Record r;
  r.suite = "quantize";
  r.op = fmt::format("{}.per_tensor", op == LOWBIT_QOP_QUANTIZE ? "quantize" : "dequantize");
  r.format = lowbit_dtype_name(q);
  r.dtype = lowbit_dtype_name(x);
  r.m = s.rows;
  r.n = s.cols;
  r.t = t;
  r.bytes = double(x_bytes + q_bytes);
  r.ceiling_name = "copy";
  r.ceiling_gbps = ceilings(o).copy_gbps;
  emit(r);
  lowbit_plan_destroy(plan);
}

}  // namespace

void suite_quantize(const Options& o) {
  const Shape shapes[] = {{8192, 8192}, {1, 4096}, {4096, 14336}};
  for (const Shape& s : shapes)
    for (lowbit_dtype x : {LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F16})
      for (lowbit_quantize_op op : {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE})
        run_point(o, op, x, LOWBIT_DTYPE_S8, s);
}

}  // namespace lowbit::bench
