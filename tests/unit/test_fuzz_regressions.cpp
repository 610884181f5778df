// Regression tests for the inputs the fuzz targets (tests/fuzz/) found
// crashing, each written out as the descriptor it decodes to
// (LOWBIT_FUZZ_PRINT=1 build-fuzz/targets/fuzz_<target> CRASH_FILE prints it).
// The inputs themselves are kept in tests/fuzz/corpus/<target>/ too, so every
// fuzz run replays them. These tests matter most under UBSan (the asan-unit
// check of tools/run_checks.sh), where undefined behaviour aborts the run.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "lowbit/lowbit.h"

namespace {

lowbit_context* offline_memory_context() {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_mode = LOWBIT_CACHE_MEMORY;
  o.log_level = LOWBIT_LOG_ERROR;
  lowbit_context* ctx = nullptr;
  REQUIRE_MESSAGE(lowbit_context_create_offline("sm_90a", &o, &ctx) == LOWBIT_OK, lowbit_last_error_message());
  return ctx;
}

lowbit_quantize_desc quantize_desc(lowbit_quantize_op op, lowbit_quantize_scope scope, lowbit_dtype x, lowbit_dtype q,
                                   int32_t rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.op = op;
  d.scope = scope;
  d.x_dtype = x;
  d.q_dtype = q;
  d.rank = rank;
  d.dims[0] = d0;
  d.dims[1] = d1;
  d.dims[2] = d2;
  d.dims[3] = d3;
  return d;
}

// An empty tensor (a zero dim) whose other dims multiply past 2^48 is an
// invalid problem, like the same tensor without the zero dim: the bound is
// on the product of the nonzero dims (ops/quantize.cpp), so nothing derived
// from them (rows, cols, the per-channel inner extent, packed row bytes) can
// overflow on the way.
void check_empty_with_huge_dims(const lowbit_quantize_desc& d) {
  lowbit_context* ctx = offline_memory_context();
  lowbit_plan* plan = nullptr;
  const lowbit_status s = lowbit_quantize_plan_create(ctx, &d, &plan);
  const std::string message = lowbit_last_error_message();
  CAPTURE(message);
  CHECK(s == LOWBIT_INVALID_PROBLEM);
  CHECK(message.find("2^48") != std::string::npos);
  CHECK(plan == nullptr);
  lowbit_plan_destroy(plan);
  lowbit_context_destroy(ctx);
}

}  // namespace

// fuzz_plan_create crash-384ca43358dd093fc03d7fb841a4b261d451d8cb: the
// 2^48-element bound was checked on the running product of the dims, which a
// zero dim resets, so the dims after it were unbounded: (cols + 1) / 2 for a
// packed q_dtype overflowed with cols = INT64_MAX (ops/quantize.cpp; fixed by
// bounding the product of the nonzero dims).
TEST_CASE("fuzz regression: packed per-token quantize with dims {15, 33, 0, INT64_MAX} does not overflow") {
  lowbit_quantize_desc d = quantize_desc(LOWBIT_QOP_FAKE_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32,
                                         LOWBIT_DTYPE_S4, 4, 15, 33, 0, INT64_MAX);
  d.symmetric = 0;
  check_empty_with_huge_dims(d);
}

// fuzz_plan_create crash-78e3507d06dd8f6e40eb3708b1473dc53819016c: the same
// with rank 2 and a u4 per-channel problem, dims {0, INT64_MAX}.
TEST_CASE("fuzz regression: packed per-channel fake-quantize backward with dims {0, INT64_MAX} does not overflow") {
  lowbit_quantize_desc d = quantize_desc(LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD, LOWBIT_SCOPE_PER_CHANNEL, LOWBIT_DTYPE_F32,
                                         LOWBIT_DTYPE_U4, 2, 0, INT64_MAX, 127, 100);
  d.axis = 0;
  d.qmin = 0;
  d.qmax = 7;
  d.symmetric = 0;
  check_empty_with_huge_dims(d);
}

// Found by reading the same code (the fuzzer's structured mode reaches it
// too): the per-channel inner extent multiplies the dims between the axis
// and the last dim, 2^40 * 2^40 after a leading zero.
TEST_CASE("fuzz regression: per-channel quantize with dims {0, 2^40, 2^40, 1} does not overflow") {
  lowbit_quantize_desc d = quantize_desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_CHANNEL, LOWBIT_DTYPE_F32,
                                         LOWBIT_DTYPE_S8, 4, 0, int64_t(1) << 40, int64_t(1) << 40, 1);
  d.axis = 0;
  check_empty_with_huge_dims(d);
}

// The other side of the fix: an empty tensor whose nonzero dims are within
// the bound is still a valid, no-op plan, in every scope.
TEST_CASE("fuzz regression: empty tensors with bounded dims are still valid plans") {
  lowbit_context* ctx = offline_memory_context();
  for (lowbit_quantize_scope scope :
       {LOWBIT_SCOPE_PER_TENSOR, LOWBIT_SCOPE_PER_CHANNEL, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_SCOPE_PER_GROUP}) {
    lowbit_quantize_desc d = quantize_desc(LOWBIT_QOP_QUANTIZE, scope, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S4, 4, 3, 0,
                                           int64_t(1) << 20, 64);
    d.axis = 2;
    d.group_size = 32;
    d.symmetric = 0;
    CAPTURE(scope);
    lowbit_plan* plan = nullptr;
    CHECK_MESSAGE(lowbit_quantize_plan_create(ctx, &d, &plan) == LOWBIT_OK, lowbit_last_error_message());
    lowbit_plan_destroy(plan);
  }
  lowbit_context_destroy(ctx);
}
