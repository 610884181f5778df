// GPU tests of the elementwise quantization family: every implemented op,
// dtype and range on fresh random data of odd sizes, outputs poisoned (and
// guarded past their end) before each run, compared bit-exactly with the CPU
// reference (lowbit_reference_run).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cuda/driver.hpp"
#include "lowbit/lowbit.h"
#include "ref/float16.hpp"
#include "support/device.hpp"
#include "support/test_support.hpp"

namespace {

using lowbit::test::DeviceBuffer;

constexpr uint8_t kPoison = 0xA5;
constexpr size_t kGuard = 64;  // poisoned bytes after every output, checked untouched

int bytes_of(lowbit_dtype t) {
  switch (t) {
    case LOWBIT_DTYPE_F64: return 8;
    case LOWBIT_DTYPE_F32: return 4;
    case LOWBIT_DTYPE_F16: case LOWBIT_DTYPE_BF16: return 2;
    default: return 1;
  }
}

// Stores v (exactly representable in f32) as `dtype`, rounding to nearest even.
void put_float(std::vector<uint8_t>& buf, lowbit_dtype dtype, size_t i, double v) {
  switch (dtype) {
    case LOWBIT_DTYPE_F64: std::memcpy(&buf[i * 8], &v, 8); break;
    case LOWBIT_DTYPE_F32: { float f = float(v); std::memcpy(&buf[i * 4], &f, 4); break; }
    case LOWBIT_DTYPE_F16: { uint16_t h = lowbit::ref::f32_to_f16(float(v)); std::memcpy(&buf[i * 2], &h, 2); break; }
    case LOWBIT_DTYPE_BF16: { uint16_t h = lowbit::ref::f32_to_bf16(float(v)); std::memcpy(&buf[i * 2], &h, 2); break; }
    default: FAIL("not a float type");
  }
}
double get_float(const std::vector<uint8_t>& buf, lowbit_dtype dtype, size_t i) {
  switch (dtype) {
    case LOWBIT_DTYPE_F64: { double d; std::memcpy(&d, &buf[i * 8], 8); return d; }
    case LOWBIT_DTYPE_F32: { float f; std::memcpy(&f, &buf[i * 4], 4); return f; }
    case LOWBIT_DTYPE_F16: { uint16_t h; std::memcpy(&h, &buf[i * 2], 2); return lowbit::ref::f16_to_f32(h); }
    default: { uint16_t h; std::memcpy(&h, &buf[i * 2], 2); return lowbit::ref::bf16_to_f32(h); }
  }
}

struct Context {
  lowbit_context* ctx = nullptr;
  Context() {
    lowbit_context_options o;
    lowbit_context_options_init(&o);
    REQUIRE_MESSAGE(lowbit_context_create_device(0, &o, &ctx) == LOWBIT_OK, lowbit_last_error_message());
  }
  ~Context() { lowbit_context_destroy(ctx); }
};

struct Plan {
  lowbit_plan* plan = nullptr;
  Plan(lowbit_context* ctx, const lowbit_quantize_desc& d) {
    REQUIRE_MESSAGE(lowbit_quantize_plan_create(ctx, &d, &plan) == LOWBIT_OK, lowbit_last_error_message());
  }
  ~Plan() { lowbit_plan_destroy(plan); }
};

// Host data for one problem: random x around the quantization grid (values
// beyond the clamp range, exact ties, a few specials), a scale and a zero point.
struct HostProblem {
  std::vector<uint8_t> x, q, scale;
  int32_t zp = 0;
};

HostProblem make_problem(const lowbit_quantize_desc& d, int64_t x_elems, int64_t q_elems, bool specials) {
  auto& rng = lowbit::test::rng();
  HostProblem h;
  std::uniform_real_distribution<double> scale_dist(0.01, 0.2);
  const double s = scale_dist(rng);
  h.scale.resize(size_t(bytes_of(d.scale_dtype)));
  put_float(h.scale, d.scale_dtype, 0, s);
  const double scale = get_float(h.scale, d.scale_dtype, 0);  // as the kernel will see it
  const bool is_signed = d.q_dtype == LOWBIT_DTYPE_S8;
  std::uniform_int_distribution<int> zp_dist(is_signed ? -12 : 100, is_signed ? 12 : 150);
  h.zp = zp_dist(rng);
  std::normal_distribution<double> normal(0.0, 60.0);
  std::uniform_int_distribution<int> pick(0, 9);
  h.x.assign(size_t(x_elems) * size_t(bytes_of(d.x_dtype)), 0);
  for (int64_t i = 0; i < x_elems; ++i) {
    double v = normal(rng) * scale;
    if (pick(rng) == 0) v = (std::floor(normal(rng)) + 0.5) * scale;  // a tie (up to the dtype's rounding)
    put_float(h.x, d.x_dtype, size_t(i), v);
  }
  if (specials && x_elems >= 4) {
    put_float(h.x, d.x_dtype, 0, std::nan(""));
    put_float(h.x, d.x_dtype, 1, INFINITY);
    put_float(h.x, d.x_dtype, 2, -INFINITY);
    put_float(h.x, d.x_dtype, 3, 0.0);
  }
  h.q.resize(size_t(q_elems));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : h.q) b = uint8_t(byte(rng));
  return h;
}

// Runs `d` on the GPU and the CPU and compares every output byte; checks that
// no byte after the output changed.
void check_against_reference(lowbit_context* ctx, const lowbit_quantize_desc& d, const std::string& label) {
  int64_t rows = 1;
  for (int i = 0; i + 1 < d.rank; ++i) rows *= d.dims[i];
  const int64_t cols = d.dims[d.rank - 1];
  const int64_t stride = d.x_row_stride != 0 ? d.x_row_stride : cols;
  const int64_t x_elems = rows == 0 || cols == 0 ? 0 : (rows - 1) * stride + cols;
  const int64_t q_elems = rows * cols;
  const bool quantize = d.op == LOWBIT_QOP_QUANTIZE;
  HostProblem h = make_problem(d, x_elems, q_elems, quantize);

  const size_t x_bytes = h.x.size(), q_bytes = h.q.size();
  DeviceBuffer x(x_bytes + kGuard), q(q_bytes + kGuard), scale(h.scale.size()), zp(4);
  const size_t out_bytes = quantize ? q_bytes : x_bytes;
  DeviceBuffer& out = quantize ? q : x;
  out.fill(kPoison);
  if (quantize) x.upload(h.x.data(), x_bytes);
  else q.upload(h.q.data(), q_bytes);
  // Strided gaps of an output x must stay untouched too: poison the host copy alike.
  std::vector<uint8_t> expected(out_bytes + kGuard, kPoison);
  scale.upload(h.scale.data(), h.scale.size());
  zp.upload(&h.zp, 4);

  Plan plan(ctx, d);
  lowbit_arg args[] = {{LOWBIT_ARG_X, 0, x.ptr()}, {LOWBIT_ARG_Q, 0, q.ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()},
                       {LOWBIT_ARG_ZERO_POINT, 0, zp.ptr()}};
  REQUIRE_MESSAGE(lowbit_plan_run(plan.plan, args, 4, 0, 0, nullptr) == LOWBIT_OK, lowbit_last_error_message());
  lowbit::test::synchronize();
  std::vector<uint8_t> got = out.to_host();

  lowbit_arg host_args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(quantize ? h.x.data() : expected.data()))},
                            {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(quantize ? expected.data() : h.q.data()))},
                            {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(h.scale.data()))},
                            {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(&h.zp))}};
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  REQUIRE_MESSAGE(lowbit_reference_run(&op, host_args, 4) == LOWBIT_OK, lowbit_last_error_message());

  size_t mismatches = 0, first = SIZE_MAX;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != expected[i]) {
      if (first == SIZE_MAX) first = i;
      ++mismatches;
    }
  INFO(label << ": " << mismatches << " mismatching bytes of " << got.size() << ", first at byte " << first
             << (first != SIZE_MAX ? " got " + std::to_string(got[first]) + " expected " + std::to_string(expected[first]) : ""));
  CHECK(mismatches == 0);
}

std::string label_of(const lowbit_quantize_desc& d) {
  std::string s = std::string(d.op == LOWBIT_QOP_QUANTIZE ? "quantize" : "dequantize") + " x=" +
                  lowbit_dtype_name(d.x_dtype) + " q=" + lowbit_dtype_name(d.q_dtype) +
                  " scale=" + lowbit_dtype_name(d.scale_dtype) + " dims=";
  for (int i = 0; i < d.rank; ++i) s += (i ? "x" : "") + std::to_string(d.dims[i]);
  s += " stride=" + std::to_string(d.x_row_stride) + " range=[" + std::to_string(d.qmin) + "," +
       std::to_string(d.qmax) + "] align=" + std::to_string(d.alignment);
  return s;
}

}  // namespace

TEST_CASE("gpu: per-tensor quantize and dequantize are bit-exact against the reference") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  const lowbit_dtype xs[] = {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F64};
  const lowbit_dtype qs[] = {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U8};
  const int64_t sizes[] = {1, 7, 129, 4095, 65536 + 17, (1 << 20) + 3};
  for (lowbit_quantize_op op : {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE})
    for (lowbit_dtype x : xs)
      for (lowbit_dtype q : qs)
        for (bool scale_in_x : {false, true})
          for (bool narrow : {false, true}) {
            lowbit_quantize_desc d;
            lowbit_quantize_desc_init(&d);
            d.op = op;
            d.x_dtype = x;
            d.q_dtype = q;
            d.scale_dtype = scale_in_x ? x : LOWBIT_DTYPE_F32;
            if (narrow) {
              d.qmin = q == LOWBIT_DTYPE_S8 ? -127 : 1;
              d.qmax = q == LOWBIT_DTYPE_S8 ? 127 : 254;
            }
            for (int64_t n : sizes) {
              d.rank = 1;
              d.dims[0] = n;
              check_against_reference(c.ctx, d, label_of(d));
            }
          }
}

TEST_CASE("gpu: per-tensor on rank-3 tensors, strided rows and narrow alignments") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  for (lowbit_dtype x : {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F16})
    for (lowbit_quantize_op op : {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE}) {
      lowbit_quantize_desc d;
      lowbit_quantize_desc_init(&d);
      d.op = op;
      d.x_dtype = x;
      d.q_dtype = LOWBIT_DTYPE_U8;
      d.rank = 3;
      d.dims[0] = 3; d.dims[1] = 37; d.dims[2] = 129;
      check_against_reference(c.ctx, d, label_of(d));
      d.rank = 2;
      d.dims[0] = 70000; d.dims[1] = 3;  // more rows than a grid's y dimension
      d.x_row_stride = 5;
      d.alignment = bytes_of(x);
      check_against_reference(c.ctx, d, label_of(d));
      d.dims[0] = 41; d.dims[1] = 1000;
      d.x_row_stride = 1032;  // vectors fit the stride
      d.alignment = 16;
      check_against_reference(c.ctx, d, label_of(d));
      d.x_row_stride = 1001;  // they do not: the plan narrows its vectors
      check_against_reference(c.ctx, d, label_of(d));
    }
}

TEST_CASE("gpu: run rejects misaligned pointers and missing arguments") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.x_dtype = LOWBIT_DTYPE_BF16;
  d.dims[0] = 1024;
  Plan plan(c.ctx, d);
  DeviceBuffer x(4096), q(4096), scale(4);
  lowbit_arg misaligned[] = {{LOWBIT_ARG_X, 0, x.ptr() + 2}, {LOWBIT_ARG_Q, 0, q.ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()}};
  CHECK(lowbit_plan_run(plan.plan, misaligned, 3, 0, 0, nullptr) == LOWBIT_MISALIGNED);
  CHECK(std::string(lowbit_last_error_message()).find("LOWBIT_ARG_X") != std::string::npos);
  lowbit_arg missing[] = {{LOWBIT_ARG_X, 0, x.ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()}};
  CHECK(lowbit_plan_run(plan.plan, missing, 2, 0, 0, nullptr) == LOWBIT_INVALID_ARGUMENT);
  CHECK(std::string(lowbit_last_error_message()).find("LOWBIT_ARG_Q") != std::string::npos);
}

TEST_CASE("gpu: one plan runs on two non-default streams from two threads at once") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.x_dtype = LOWBIT_DTYPE_BF16;
  d.rank = 1;
  d.dims[0] = (1 << 22) + 5;
  Plan plan(c.ctx, d);
  HostProblem h = make_problem(d, d.dims[0], d.dims[0], false);
  std::vector<uint8_t> expected(size_t(d.dims[0]));
  lowbit_arg host_args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(h.x.data()))},
                            {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(expected.data()))},
                            {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(h.scale.data()))},
                            {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(&h.zp))}};
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  REQUIRE(lowbit_reference_run(&op, host_args, 4) == LOWBIT_OK);

  std::vector<uint8_t> results[2];
  lowbit_status statuses[2] = {LOWBIT_INTERNAL, LOWBIT_INTERNAL};
  auto worker = [&](int t) {
    // No CUDA context is current on a new thread: lowbit makes its own current.
    const lowbit::DriverApi& api = lowbit::driver();
    DeviceBuffer x(h.x.size()), q(expected.size()), scale(h.scale.size()), zp(4);
    x.upload(h.x.data(), h.x.size());
    scale.upload(h.scale.data(), h.scale.size());
    zp.upload(&h.zp, 4);
    q.fill(kPoison);
    CUstream stream = nullptr;
    lowbit::cu_check(api.StreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    lowbit_arg args[] = {{LOWBIT_ARG_X, 0, x.ptr()}, {LOWBIT_ARG_Q, 0, q.ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()},
                         {LOWBIT_ARG_ZERO_POINT, 0, zp.ptr()}};
    lowbit_status s = LOWBIT_OK;
    for (int i = 0; i < 50 && s == LOWBIT_OK; ++i) s = lowbit_plan_run(plan.plan, args, 4, 0, 0, stream);
    statuses[t] = s;
    lowbit::cu_check(api.StreamSynchronize(stream), "cuStreamSynchronize");
    api.StreamDestroy(stream);
    results[t] = q.to_host();
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  for (int t = 0; t < 2; ++t) {
    CHECK(statuses[t] == LOWBIT_OK);
    CHECK(results[t] == expected);
  }
}
