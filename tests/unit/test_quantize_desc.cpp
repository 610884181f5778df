// Unit tests (CPU only) of the elementwise quantization family beyond the
// per-value arithmetic of test_ref_quantize.cpp: every descriptor check and
// its status, the reference of every op and scope against hand-computed
// values (ties to even, clamping, NaN / inf, zero-point clamp, packed nibble
// order, dynamic range), the fast quotient the 16-bit kernels use (sampled;
// exhaustive with LOWBIT_EXHAUSTIVE=1), and, where NVRTC is available, that a
// representative set of kernels compiles without spills and that plans narrow
// their vectors where the layout requires.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "jit/nvrtc.hpp"
#include "ops/op_plan.hpp"
#include "lowbit/lowbit.h"
#include "ref/float16.hpp"
#include "support/test_support.hpp"

namespace {

using lowbit::ref::bf16_to_f32;
using lowbit::ref::f16_to_f32;
using lowbit::ref::f32_bits;
using lowbit::ref::f32_from_bits;
using lowbit::ref::f32_to_bf16;
using lowbit::ref::f32_to_f16;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

lowbit_quantize_desc desc(lowbit_quantize_op op, lowbit_quantize_scope scope, lowbit_dtype x, lowbit_dtype q,
                          std::initializer_list<int64_t> dims) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.op = op;
  d.scope = scope;
  d.x_dtype = x;
  d.q_dtype = q;
  d.rank = int32_t(dims.size());
  int i = 0;
  for (int64_t v : dims) d.dims[i++] = v;
  return d;
}

uint64_t host(const void* p) { return uint64_t(uintptr_t(p)); }

// Runs the reference; returns its status.
lowbit_status ref_run(const lowbit_quantize_desc& d, std::vector<lowbit_arg> args) {
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  return lowbit_reference_run(&op, args.data(), args.size());
}

// The status of the descriptor checks alone (pointers valid but unused on
// failure: every check runs before the reference touches memory).
lowbit_status check_status(const lowbit_quantize_desc& d) {
  static std::vector<uint8_t> buf(1 << 16, 0);
  return ref_run(d, {{LOWBIT_ARG_X, 0, host(buf.data())},
                     {LOWBIT_ARG_Q, 0, host(buf.data())},
                     {LOWBIT_ARG_SCALE, 0, host(buf.data())},
                     {LOWBIT_ARG_ZERO_POINT, 0, host(buf.data())},
                     {LOWBIT_ARG_DY, 0, host(buf.data())},
                     {LOWBIT_ARG_DX, 0, host(buf.data())},
                     {LOWBIT_ARG_Y, 0, host(buf.data())}});
}

}  // namespace

// ---------------------------------------------------------------------------
// Descriptor checks

TEST_CASE("quantize desc: every check returns its status") {
  const lowbit_quantize_desc ok = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, {4, 8});
  REQUIRE(check_status(ok) == LOWBIT_OK);
  auto with = [&](auto edit) {
    lowbit_quantize_desc d = ok;
    edit(d);
    return check_status(d);
  };
  // INVALID_ARGUMENT: unknown enum values, bad alignment value, struct size.
  CHECK(with([](auto& d) { d.op = 0; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.op = 8; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.scope = 5; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.x_dtype = 99; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.q_dtype = 0; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.scale_dtype = -1; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.symmetric = 2; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.alignment = 3; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.alignment = 32; }) == LOWBIT_INVALID_ARGUMENT);
  CHECK(with([](auto& d) { d.struct_size = 8; }) == LOWBIT_INVALID_ARGUMENT);
  // UNSUPPORTED: type pairs and combinations not implemented.
  CHECK(with([](auto& d) { d.x_dtype = LOWBIT_DTYPE_S8; }) == LOWBIT_UNSUPPORTED);
  CHECK(with([](auto& d) { d.q_dtype = LOWBIT_DTYPE_F16; }) == LOWBIT_UNSUPPORTED);
  CHECK(with([](auto& d) { d.q_dtype = LOWBIT_DTYPE_S32; }) == LOWBIT_UNSUPPORTED);
  CHECK(with([](auto& d) { d.scale_dtype = LOWBIT_DTYPE_F16; }) == LOWBIT_UNSUPPORTED);  // neither f32 nor x
  CHECK(with([](auto& d) { d.scale_dtype = LOWBIT_DTYPE_F64; }) == LOWBIT_UNSUPPORTED);
  CHECK(with([](auto& d) { d.op = LOWBIT_QOP_DYNAMIC_QUANTIZE; d.scope = LOWBIT_SCOPE_PER_CHANNEL; }) == LOWBIT_UNSUPPORTED);
  CHECK(with([](auto& d) {
          d.op = LOWBIT_QOP_DYNAMIC_QUANTIZE;
          d.scope = LOWBIT_SCOPE_PER_GROUP;
          d.q_dtype = LOWBIT_DTYPE_S4;
          d.dims[1] = 6;
          d.group_size = 3;  // two groups per row would share a byte
        }) == LOWBIT_UNSUPPORTED);
  // INVALID_PROBLEM: shapes, ranges, groups, axes.
  CHECK(with([](auto& d) { d.rank = 0; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.rank = 5; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.dims[0] = -1; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.dims[0] = int64_t(1) << 30; d.dims[1] = int64_t(1) << 30; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.x_row_stride = 7; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.x_row_stride = -8; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.qmin = 5; d.qmax = 4; }) == LOWBIT_INVALID_PROBLEM);  // qmax < qmin
  CHECK(with([](auto& d) { d.qmin = -129; d.qmax = 0; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.qmin = 0; d.qmax = 128; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.q_dtype = LOWBIT_DTYPE_S4; d.qmin = -9; d.qmax = 7; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.q_dtype = LOWBIT_DTYPE_U4; d.qmin = 0; d.qmax = 16; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.scope = LOWBIT_SCOPE_PER_GROUP; d.group_size = 0; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.scope = LOWBIT_SCOPE_PER_GROUP; d.group_size = -4; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.scope = LOWBIT_SCOPE_PER_GROUP; d.group_size = 3; }) == LOWBIT_INVALID_PROBLEM);  // 3 does not divide 8
  CHECK(with([](auto& d) { d.scope = LOWBIT_SCOPE_PER_GROUP; d.group_size = 16; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.scope = LOWBIT_SCOPE_PER_CHANNEL; d.axis = 2; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.scope = LOWBIT_SCOPE_PER_CHANNEL; d.axis = -3; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) { d.x_dtype = LOWBIT_DTYPE_F32; d.scale_dtype = LOWBIT_DTYPE_F32; d.alignment = 2; }) ==
        LOWBIT_INVALID_PROBLEM);  // below the element's own alignment
  CHECK(with([](auto& d) { d.op = LOWBIT_QOP_DYNAMIC_QUANTIZE; d.q_dtype = LOWBIT_DTYPE_U8; }) ==
        LOWBIT_INVALID_PROBLEM);  // symmetric needs qmin < 0 < qmax
  CHECK(with([](auto& d) { d.op = LOWBIT_QOP_DYNAMIC_QUANTIZE; d.qmin = 0; d.qmax = 100; }) == LOWBIT_INVALID_PROBLEM);
  CHECK(with([](auto& d) {
          d.op = LOWBIT_QOP_DYNAMIC_QUANTIZE;
          d.symmetric = 0;
          d.qmin = 3;
          d.qmax = 3;
        }) == LOWBIT_INVALID_PROBLEM);
  // Accepted: the tensor alignment applies to tensors only (an f32 scale with
  // a 2-aligned bf16 tensor is fine), negative axes, narrowed ranges, every
  // op / scope, packed types, f64 with an f32 scale.
  CHECK(with([](auto& d) { d.alignment = 2; }) == LOWBIT_OK);
  CHECK(with([](auto& d) { d.scope = LOWBIT_SCOPE_PER_CHANNEL; d.axis = -1; }) == LOWBIT_OK);
  CHECK(with([](auto& d) { d.qmin = -127; d.qmax = 127; }) == LOWBIT_OK);
  CHECK(with([](auto& d) { d.qmin = 7; d.qmax = 7; }) == LOWBIT_OK);
  CHECK(with([](auto& d) { d.x_dtype = LOWBIT_DTYPE_F64; }) == LOWBIT_OK);
  CHECK(with([](auto& d) { d.op = LOWBIT_QOP_DYNAMIC_QUANTIZE; d.q_dtype = LOWBIT_DTYPE_U4; d.symmetric = 0; }) == LOWBIT_OK);
  for (int op = LOWBIT_QOP_QUANTIZE; op <= LOWBIT_QOP_DYNAMIC_QUANTIZE; ++op)
    for (int scope = LOWBIT_SCOPE_PER_TENSOR; scope <= LOWBIT_SCOPE_PER_GROUP; ++scope)
      for (lowbit_dtype q : {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U8, LOWBIT_DTYPE_S4, LOWBIT_DTYPE_U4}) {
        if (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && scope == LOWBIT_SCOPE_PER_CHANNEL) continue;
        lowbit_quantize_desc d = ok;
        d.op = op;
        d.scope = scope;
        d.q_dtype = q;
        d.group_size = 4;
        d.symmetric = q == LOWBIT_DTYPE_S8 || q == LOWBIT_DTYPE_S4;
        CAPTURE(op);
        CAPTURE(scope);
        CAPTURE(q);
        CHECK(check_status(d) == LOWBIT_OK);
      }
}

TEST_CASE("quantize desc: messages name the field") {
  lowbit_quantize_desc d = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_GROUP, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S8, {2, 10});
  d.group_size = 4;
  CHECK(check_status(d) == LOWBIT_INVALID_PROBLEM);
  CHECK(std::string(lowbit_last_error_message()).find("group_size = 4 does not divide") != std::string::npos);
  d.group_size = 5;
  d.qmin = 10;
  d.qmax = -10;
  CHECK(check_status(d) == LOWBIT_INVALID_PROBLEM);
  CHECK(std::string(lowbit_last_error_message()).find("qmax") != std::string::npos);
}

TEST_CASE("quantize desc: empty tensors are a no-op that succeeds, even with NULL pointers") {
  for (int op = LOWBIT_QOP_QUANTIZE; op <= LOWBIT_QOP_DYNAMIC_QUANTIZE; ++op) {
    lowbit_quantize_desc d = desc(op, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {0, 16});
    CHECK(ref_run(d, {}) == LOWBIT_OK);
    d.dims[0] = 16;
    d.dims[1] = 0;
    CHECK(ref_run(d, {}) == LOWBIT_OK);
  }
}

// ---------------------------------------------------------------------------
// The reference, hand-computed

TEST_CASE("quantize ref: ties to even, clamping, NaN / inf, zero-point clamp") {
  const float x[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 200.0f, -200.0f, kNaN, kInf, -kInf, 0.0f};
  const int n = int(std::size(x));
  std::vector<int8_t> q(n, 99);
  const float scale = 1.0f;
  lowbit_quantize_desc d = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {n});
  REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_Q, 0, host(q.data())}, {LOWBIT_ARG_SCALE, 0, host(&scale)}}) ==
          LOWBIT_OK);
  const int8_t want[] = {0, 2, 2, 0, -2, -2, 127, -128, 0, 127, -128, 0};
  for (int i = 0; i < n; ++i) CHECK(int(q[i]) == int(want[i]));
  // A zero point beyond 2^21 is clamped to 2^21 first: NaN -> clamp(2^21) = qmax.
  const int32_t big_zp = 1 << 22;
  REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_Q, 0, host(q.data())}, {LOWBIT_ARG_SCALE, 0, host(&scale)},
                      {LOWBIT_ARG_ZERO_POINT, 0, host(&big_zp)}}) == LOWBIT_OK);
  for (int i = 0; i < n; ++i) CHECK(int(q[i]) == (i == 10 ? -128 : 127));  // only -inf reaches qmin
  // A zero point of exactly -2^21 is used as is.
  const float xs2[] = {2097150.0f};
  const int32_t zp2 = -(1 << 21);
  int8_t q2[1] = {0};
  lowbit_quantize_desc d2 = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {1});
  REQUIRE(ref_run(d2, {{LOWBIT_ARG_X, 0, host(xs2)}, {LOWBIT_ARG_Q, 0, host(q2)}, {LOWBIT_ARG_SCALE, 0, host(&scale)},
                       {LOWBIT_ARG_ZERO_POINT, 0, host(&zp2)}}) == LOWBIT_OK);
  CHECK(int(q2[0]) == -2);
}

TEST_CASE("quantize ref: packed 4-bit order is low nibble first, odd rows end in a 0 nibble") {
  // Two rows of 5: s4 values 1, -2, 7, -8, 3 / 0, 1, 2, 3, -1.
  const float x[] = {1, -2, 7, -8, 3, 0, 1, 2, 3, -1};
  uint8_t q[6];
  std::memset(q, 0xAA, sizeof q);
  const float scale = 1.0f;
  lowbit_quantize_desc d = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S4, {2, 5});
  REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_Q, 0, host(q)}, {LOWBIT_ARG_SCALE, 0, host(&scale)}}) == LOWBIT_OK);
  const uint8_t want[] = {0xE1, 0x87, 0x03, 0x10, 0x32, 0x0F};
  for (int i = 0; i < 6; ++i) CHECK(int(q[i]) == int(want[i]));
  // And back: dequantize reads the same order.
  float y[10];
  lowbit_quantize_desc dd = d;
  dd.op = LOWBIT_QOP_DEQUANTIZE;
  REQUIRE(ref_run(dd, {{LOWBIT_ARG_X, 0, host(y)}, {LOWBIT_ARG_Q, 0, host(q)}, {LOWBIT_ARG_SCALE, 0, host(&scale)}}) == LOWBIT_OK);
  for (int i = 0; i < 10; ++i) CHECK(y[i] == x[i]);
  // u4: 0..15, clamped.
  const float xu[] = {0, 15, 16, -1};
  uint8_t qu[2] = {0, 0};
  lowbit_quantize_desc du = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U4, {4});
  REQUIRE(ref_run(du, {{LOWBIT_ARG_X, 0, host(xu)}, {LOWBIT_ARG_Q, 0, host(qu)}, {LOWBIT_ARG_SCALE, 0, host(&scale)}}) == LOWBIT_OK);
  CHECK(int(qu[0]) == 0xF0);
  CHECK(int(qu[1]) == 0x0F);
}

TEST_CASE("quantize ref: scale indices of the scopes") {
  // [2, 3, 4] tensor, x = 1 everywhere, scale k = 1 / (k + 1): q = k + 1 shows the index.
  std::vector<float> x(24, 1.0f);
  std::vector<float> scales(24);
  for (int k = 0; k < 24; ++k) scales[k] = 1.0f / float(k + 1);
  auto run = [&](lowbit_quantize_scope scope, int axis, int64_t group) {
    std::vector<int8_t> q(24, 0);
    lowbit_quantize_desc d = desc(LOWBIT_QOP_QUANTIZE, scope, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {2, 3, 4});
    d.axis = axis;
    d.group_size = group;
    REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(x.data())}, {LOWBIT_ARG_Q, 0, host(q.data())},
                        {LOWBIT_ARG_SCALE, 0, host(scales.data())}}) == LOWBIT_OK);
    std::vector<int> idx;
    for (int8_t v : q) idx.push_back(int(v) - 1);
    return idx;
  };
  std::vector<int> want(24);
  for (int i = 0; i < 24; ++i) want[i] = i / 12;  // axis 0
  CHECK(run(LOWBIT_SCOPE_PER_CHANNEL, 0, 0) == want);
  for (int i = 0; i < 24; ++i) want[i] = (i / 4) % 3;  // axis 1
  CHECK(run(LOWBIT_SCOPE_PER_CHANNEL, 1, 0) == want);
  CHECK(run(LOWBIT_SCOPE_PER_CHANNEL, -2, 0) == want);
  for (int i = 0; i < 24; ++i) want[i] = i % 4;  // axis 2 (last)
  CHECK(run(LOWBIT_SCOPE_PER_CHANNEL, 2, 0) == want);
  for (int i = 0; i < 24; ++i) want[i] = i / 4;  // per token: the 6 rows
  CHECK(run(LOWBIT_SCOPE_PER_TOKEN, 0, 0) == want);
  for (int i = 0; i < 24; ++i) want[i] = (i / 4) * 2 + (i % 4) / 2;  // groups of 2
  CHECK(run(LOWBIT_SCOPE_PER_GROUP, 0, 2) == want);
  for (int i = 0; i < 24; ++i) want[i] = 0;
  CHECK(run(LOWBIT_SCOPE_PER_TENSOR, 0, 0) == want);
}

TEST_CASE("quantize ref: backward, fake quantize and its backward") {
  const float x[] = {0.0f, 1.0f, 126.6f, 127.0f, 127.4f, -128.0f, -127.6f, 300.0f, kNaN, 2.0f};
  const int n = int(std::size(x));
  const float scale = 1.0f;
  std::vector<float> dy(n);
  for (int i = 0; i < n; ++i) dy[i] = float(i + 1) * 0.5f;
  dy[9] = f32_from_bits(0x7fc00123u);  // a NaN with a payload
  std::vector<float> dx(n, 99.0f);
  auto args = [&](lowbit_arg_role out) {
    return std::vector<lowbit_arg>{{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_DY, 0, host(dy.data())},
                                   {out, 0, host(dx.data())}, {LOWBIT_ARG_SCALE, 0, host(&scale)}};
  };
  SUBCASE("quantize backward: dy / s where qmin < q < qmax (strict), else +0") {
    lowbit_quantize_desc d = desc(LOWBIT_QOP_QUANTIZE_BACKWARD, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {n});
    REQUIRE(ref_run(d, args(LOWBIT_ARG_DX)) == LOWBIT_OK);
    // q: 0, 1, 127, 127, 127, -128, -128, 127, 0 (NaN -> zp), 2
    const bool pass[] = {true, true, false, false, false, false, false, false, true, true};
    for (int i = 0; i < n; ++i) {
      CAPTURE(i);
      if (pass[i] && i != 9) CHECK(dx[i] == dy[i]);
      if (!pass[i]) CHECK(f32_bits(dx[i]) == 0u);
    }
    CHECK(f32_bits(dx[9]) == 0x7fffffffu);  // NaN / 1: the canonical NaN
  }
  SUBCASE("fake quantize backward: dy where qmin <= rint(x / s) + zp <= qmax, bits unchanged") {
    lowbit_quantize_desc d = desc(LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {n});
    REQUIRE(ref_run(d, args(LOWBIT_ARG_DX)) == LOWBIT_OK);
    // rint: 0, 1, 127, 127, 127, -128, -128, 300, NaN, 2
    const bool pass[] = {true, true, true, true, true, true, true, false, false, true};
    for (int i = 0; i < n; ++i) {
      CAPTURE(i);
      CHECK(f32_bits(dx[i]) == (pass[i] ? f32_bits(dy[i]) : 0u));
    }
  }
  SUBCASE("fake quantize: (q - zp) * s, NaN -> (clamp(zp) - zp) * s") {
    const int32_t zp = 3;
    std::vector<lowbit_arg> a = {{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_Y, 0, host(dx.data())},
                                 {LOWBIT_ARG_SCALE, 0, host(&scale)}, {LOWBIT_ARG_ZERO_POINT, 0, host(&zp)}};
    lowbit_quantize_desc d = desc(LOWBIT_QOP_FAKE_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {n});
    REQUIRE(ref_run(d, a) == LOWBIT_OK);
    const float want[] = {0, 1, 124, 124, 124, -128, -128, 124, 0, 2};
    for (int i = 0; i < n; ++i) CHECK(dx[i] == want[i]);
    CHECK(f32_bits(dx[8]) == 0u);  // +0, not -0
  }
  SUBCASE("dequantize backward: dy * s") {
    const float s2 = 0.25f;
    std::vector<lowbit_arg> a = {{LOWBIT_ARG_DY, 0, host(dy.data())}, {LOWBIT_ARG_DX, 0, host(dx.data())},
                                 {LOWBIT_ARG_SCALE, 0, host(&s2)}};
    lowbit_quantize_desc d = desc(LOWBIT_QOP_DEQUANTIZE_BACKWARD, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {n});
    REQUIRE(ref_run(d, a) == LOWBIT_OK);
    for (int i = 0; i < 9; ++i) CHECK(dx[i] == dy[i] * 0.25f);
    CHECK(f32_bits(dx[9]) == 0x7fffffffu);
  }
}

TEST_CASE("quantize ref: dynamic range per token, symmetric and asymmetric") {
  // Rows: [1, -4, 2, NaN] / [-1, 3, 0, 0] / all zero.
  const float x[] = {1, -4, 2, kNaN, -1, 3, 0, 0, 0, 0, 0, 0};
  SUBCASE("symmetric s8: s = amax / 127, zp = 0, NaN ignored by the range") {
    int8_t q[12];
    float s[3] = {-1, -1, -1};
    int32_t zp[3] = {9, 9, 9};
    lowbit_quantize_desc d = desc(LOWBIT_QOP_DYNAMIC_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {3, 4});
    REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_Q, 0, host(q)}, {LOWBIT_ARG_SCALE, 0, host(s)},
                        {LOWBIT_ARG_ZERO_POINT, 0, host(zp)}}) == LOWBIT_OK);
    CHECK(s[0] == 4.0f / 127.0f);
    CHECK(s[1] == 3.0f / 127.0f);
    CHECK(s[2] == 1.0f);  // a zero range gives scale 1
    for (int i = 0; i < 3; ++i) CHECK(zp[i] == 0);
    CHECK(int(q[0]) == int(std::nearbyint(1.0f / s[0])));
    CHECK(int(q[1]) == -127);
    CHECK(int(q[2]) == int(std::nearbyint(2.0f / s[0])));
    CHECK(int(q[3]) == 0);  // NaN -> zp
    CHECK(int(q[5]) == 127);
    CHECK(int(q[4]) == int(std::nearbyint(-1.0f / s[1])));
  }
  SUBCASE("asymmetric u8: s = (max - min) / 255, zp = -rint(min / s)") {
    uint8_t q[12];
    float s[3];
    int32_t zp[3];
    lowbit_quantize_desc d = desc(LOWBIT_QOP_DYNAMIC_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U8, {3, 4});
    d.symmetric = 0;
    REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_Q, 0, host(q)}, {LOWBIT_ARG_SCALE, 0, host(s)},
                        {LOWBIT_ARG_ZERO_POINT, 0, host(zp)}}) == LOWBIT_OK);
    CHECK(s[0] == 6.0f / 255.0f);
    CHECK(zp[0] == int(std::nearbyint(4.0f / s[0])));  // 170
    CHECK(zp[0] == 170);
    CHECK(int(q[1]) == 0);    // the minimum
    CHECK(int(q[2]) == 255);  // the maximum
    CHECK(int(q[3]) == 170);  // NaN -> zp
    CHECK(s[1] == 4.0f / 255.0f);
    CHECK(zp[1] == 64);  // rint(63.75)
    CHECK(int(q[5]) == 255);
    CHECK(s[2] == 1.0f);
    CHECK(zp[2] == 0);
  }
  SUBCASE("the scale is rounded to the scale type and used as rounded") {
    const uint16_t xh[] = {f32_to_f16(1.0f), f32_to_f16(-3.0f)};
    int8_t q[2];
    uint16_t s = 0;
    lowbit_quantize_desc d = desc(LOWBIT_QOP_DYNAMIC_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S4, {2});
    d.scale_dtype = LOWBIT_DTYPE_F16;
    REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(xh)}, {LOWBIT_ARG_Q, 0, host(q)}, {LOWBIT_ARG_SCALE, 0, host(&s)}}) == LOWBIT_OK);
    CHECK(s == f32_to_f16(3.0f / 7.0f));
    const float sf = f16_to_f32(s);
    const int q0 = int(std::nearbyint(1.0f / sf)), q1 = std::max(-8, int(std::nearbyint(-3.0f / sf)));
    CHECK(int(uint8_t(q[0])) == ((q0 & 15) | ((q1 & 15) << 4)));
  }
}

TEST_CASE("quantize ref: dequantize of f32 outputs writes the canonical NaN") {
  const int8_t q[2] = {0, 5};
  float x[2];
  const float scale = kNaN;
  lowbit_quantize_desc d = desc(LOWBIT_QOP_DEQUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {2});
  REQUIRE(ref_run(d, {{LOWBIT_ARG_X, 0, host(x)}, {LOWBIT_ARG_Q, 0, host(q)}, {LOWBIT_ARG_SCALE, 0, host(&scale)}}) == LOWBIT_OK);
  CHECK(f32_bits(x[0]) == 0x7fffffffu);
  CHECK(f32_bits(x[1]) == 0x7fffffffu);
}

// ---------------------------------------------------------------------------
// The fast quotient of the 16-bit kernels (quantize_math.cuh): r = RN(1/s),
// q0 = RN(x r), e = RN(x - q0 s), q1 = RN(q0 + e r) equals RN(x / s) when
// 2^-40 <= |s| <= 2^60 and 2^-60 <= |x| <= 2^60, for x with at most 11
// significant bits. Its correctness depends only on the significands (see the
// proof sketch in quantize_math.cuh); checked here on the CPU, exhaustively
// over significand pairs with LOWBIT_EXHAUSTIVE=1.

namespace {

float fast_quotient(float x, float s) {
  const float r = 1.0f / s;
  const float q0 = x * r;
  const float e = std::fma(-q0, s, x);
  return std::fma(e, r, q0);
}

// Mismatches over every x significand with `xbits` fraction bits and the s
// significands sm_begin, sm_begin + step, ... (unit exponents).
uint64_t scan(int xbits, uint32_t sm_begin, uint32_t sm_step) {
  uint64_t bad = 0;
  for (uint32_t xm = 0; xm < (1u << xbits); ++xm) {
    const float x = f32_from_bits(0x3f800000u | (xm << (23 - xbits)));
    for (uint32_t sm = sm_begin; sm < (1u << 23); sm += sm_step) {
      const float s = f32_from_bits(0x3f800000u | sm);
      bad += fast_quotient(x, s) != x / s;
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("quantize fast quotient: equals IEEE division for 16-bit inputs (sampled significands)") {
  CHECK(scan(7, 12345, 2047) == 0);   // bf16
  CHECK(scan(10, 777, 16381) == 0);   // f16
  // The checker catches a wrong formula: the first product alone is not exact.
  uint64_t bad = 0;
  for (uint32_t sm = 0; sm < (1u << 23); sm += 977)
    bad += f32_from_bits(0x3fc00000u) * (1.0f / f32_from_bits(0x3f800000u | sm)) !=
           f32_from_bits(0x3fc00000u) / f32_from_bits(0x3f800000u | sm);
  CHECK(bad > 0);
}

TEST_CASE("quantize fast quotient: scale invariance inside the proven range (random exponents)") {
  auto& rng = lowbit::test::rng();
  std::uniform_int_distribution<uint32_t> mant(0, (1u << 23) - 1), bits(0, 65535);
  std::uniform_int_distribution<int> ex(-60, 59), es(-40, 59);
  uint64_t bad = 0, n = 0;
  for (int i = 0; i < 400000; ++i) {
    const uint16_t h = uint16_t(bits(rng));
    float x = (i & 1) ? bf16_to_f32(h) : f16_to_f32(h);
    if (!std::isfinite(x) || x == 0.0f) continue;
    int xe;
    std::frexp(x, &xe);
    x = std::ldexp(x, ex(rng) - xe + 1);  // |x| in [2^-60, 2^60)
    float s = std::ldexp(f32_from_bits(0x3f800000u | mant(rng)), es(rng));
    if (i & 2) s = -s;
    ++n;
    bad += fast_quotient(x, s) != x / s;
  }
  CHECK(n > 100000);
  CHECK(bad == 0);
}

TEST_CASE("quantize fast quotient: exhaustive over significand pairs (LOWBIT_EXHAUSTIVE=1)") {
  if (std::getenv("LOWBIT_EXHAUSTIVE") == nullptr) LOWBIT_SKIP("set LOWBIT_EXHAUSTIVE=1 (minutes)");
  CHECK(scan(7, 0, 1) == 0);   // every bf16 x significand with every f32 s significand: 2^30 pairs
  CHECK(scan(10, 0, 1) == 0);  // f16: 2^33 pairs
}

// ---------------------------------------------------------------------------
// Plans on an offline context (NVRTC compiles; no GPU needed)

namespace {

struct Offline {
  lowbit_context* ctx = nullptr;
  explicit Offline(const char* arch = "sm_90a") {
    lowbit_context_options o;
    lowbit_context_options_init(&o);
    o.cache_mode = LOWBIT_CACHE_MEMORY;
    REQUIRE(lowbit_context_create_offline(arch, &o, &ctx) == LOWBIT_OK);
  }
  ~Offline() { lowbit_context_destroy(ctx); }
  std::string describe(const lowbit_quantize_desc& d) {
    lowbit_plan* plan = nullptr;
    const lowbit_status s = lowbit_quantize_plan_create(ctx, &d, &plan);
    if (s != LOWBIT_OK) return std::string("FAILED: ") + lowbit_last_error_message();
    size_t len = 0;
    lowbit_plan_describe(plan, nullptr, 0, &len);
    std::string out(len + 1, '\0');
    lowbit_plan_describe(plan, out.data(), out.size(), &len);
    out.resize(len);
    lowbit_plan_destroy(plan);
    return out;
  }
};

bool has(const std::string& json, const std::string& s) { return json.find(s) != std::string::npos; }

// Sets LOWBIT_DEV_QUANTIZE_TUNE (read at plan creation) for one scope.
struct TuneScope {
  explicit TuneScope(const char* value) { setenv("LOWBIT_DEV_QUANTIZE_TUNE", value, 1); }
  ~TuneScope() { unsetenv("LOWBIT_DEV_QUANTIZE_TUNE"); }
};

}  // namespace

TEST_CASE("plan knobs: key=int items in order, first value wins for env_knob, malformed items skipped") {
  setenv("LOWBIT_TEST_KNOBS", "a=3,bad,b=-2,,a=7,c=x", 1);
  std::string seen;
  lowbit::for_each_env_knob("LOWBIT_TEST_KNOBS",
                            [&](std::string_view k, int v) { seen += std::string(k) + ":" + std::to_string(v) + ";"; });
  CHECK(seen == "a:3;b:-2;a:7;c:0;");
  CHECK(lowbit::env_knob("LOWBIT_TEST_KNOBS", "a") == 3);
  CHECK(lowbit::env_knob("LOWBIT_TEST_KNOBS", "b") == -2);
  CHECK(lowbit::env_knob("LOWBIT_TEST_KNOBS", "missing") == 0);
  unsetenv("LOWBIT_TEST_KNOBS");
  CHECK(lowbit::env_knob("LOWBIT_TEST_KNOBS", "a") == 0);
}

TEST_CASE("quantize plans: the staged kernel where it pays on sm_90, never before; every variant compiles without spills") {
  if (!lowbit::nvrtc().available) LOWBIT_SKIP("NVRTC is not available: " + lowbit::nvrtc().problem);
  Offline hopper("sm_90a"), ampere("sm_80");
  // Dequantize with a scale per row: staged on sm_90 (bulk copies), the
  // register kernel on sm_80.
  for (lowbit_quantize_scope scope : {LOWBIT_SCOPE_PER_TENSOR, LOWBIT_SCOPE_PER_TOKEN}) {
    lowbit_quantize_desc d = desc(LOWBIT_QOP_DEQUANTIZE, scope, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S4, {4096, 14336});
    std::string j = hopper.describe(d);
    CAPTURE(j);
    CHECK(has(j, "\"kernel\":\"staged_elementwise\""));
    CHECK(has(j, "\"spill_store_bytes\":0"));
    CHECK(has(j, "\"stack_frame_bytes\":0"));
    CHECK(has(ampere.describe(d), "\"kernel\":\"elementwise\""));
    // Bulk copies need 16-byte aligned tiles: an 8-byte promise, or rows
    // whose pitch is not a multiple of 16 bytes, keep the register kernel.
    d.alignment = 8;
    CHECK(has(hopper.describe(d), "\"kernel\":\"elementwise\""));
    d.alignment = 16;
    d.x_row_stride = 14344;  // strided X (the output here); Q, the staged stream, keeps packed rows
    CHECK(has(hopper.describe(d), "\"kernel\":\"staged_elementwise\""));
  }
  // Per-group dequantize: staged from 4-bit Q (its scales load a tile
  // ahead), the register kernel from 8-bit Q, where it measured faster.
  {
    lowbit_quantize_desc d = desc(LOWBIT_QOP_DEQUANTIZE, LOWBIT_SCOPE_PER_GROUP, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S4,
                                  {4096, 14336});
    d.group_size = 128;
    std::string j = hopper.describe(d);
    CAPTURE(j);
    CHECK(has(j, "\"kernel\":\"staged_elementwise\""));
    CHECK(has(j, "\"stages\":6"));
    CHECK(has(j, "\"spill_store_bytes\":0"));
    CHECK(has(ampere.describe(d), "\"kernel\":\"elementwise\""));
    d.q_dtype = LOWBIT_DTYPE_S8;
    CHECK(has(hopper.describe(d), "\"kernel\":\"elementwise\""));
  }
  // Where the register kernels measured faster they stay the default.
  CHECK(has(hopper.describe(desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, {64, 4096})),
            "\"kernel\":\"elementwise\""));
  CHECK(has(hopper.describe(desc(LOWBIT_QOP_DYNAMIC_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S4,
                                 {64, 14336})),
            "\"kernel\":\"dynamic_segments\""));
  // Every staged variant the tests force (sall=1) compiles without spills.
  TuneScope tune("sall=1");
  int staged = 0;
  for (int op : {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE, LOWBIT_QOP_DYNAMIC_QUANTIZE})
    for (int scope = LOWBIT_SCOPE_PER_TENSOR; scope <= LOWBIT_SCOPE_PER_GROUP; ++scope)
      for (lowbit_dtype q : {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_S4}) {
        if (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && scope == LOWBIT_SCOPE_PER_CHANNEL) continue;
        lowbit_quantize_desc d = desc(op, scope, scope % 2 ? LOWBIT_DTYPE_BF16 : LOWBIT_DTYPE_F16, q, {64, 14336});
        d.group_size = 128;
        const std::string j = hopper.describe(d);
        CAPTURE(j);
        CHECK_FALSE(has(j, "FAILED"));
        CHECK(has(j, "\"spill_store_bytes\":0"));
        CHECK(has(j, "\"stack_frame_bytes\":0"));
        staged += has(j, "\"kernel\":\"staged_") ? 1 : 0;
      }
  // All but dynamic per-tensor (two kernels of its own) take it.
  CHECK(staged == 20);
}

TEST_CASE("quantize plans: representative kernels compile without spills; vectors narrow where needed") {
  if (!lowbit::nvrtc().available) LOWBIT_SKIP("NVRTC is not available: " + lowbit::nvrtc().problem);
  Offline o;
  int compiled = 0;
  for (int op = LOWBIT_QOP_QUANTIZE; op <= LOWBIT_QOP_DYNAMIC_QUANTIZE; ++op)
    for (int scope = LOWBIT_SCOPE_PER_TENSOR; scope <= LOWBIT_SCOPE_PER_GROUP; ++scope) {
      if (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && scope == LOWBIT_SCOPE_PER_CHANNEL) continue;
      const lowbit_dtype x = (op + scope) % 2 ? LOWBIT_DTYPE_BF16 : LOWBIT_DTYPE_F16;
      const lowbit_dtype q = (op + scope) % 3 == 0 ? LOWBIT_DTYPE_S4 : LOWBIT_DTYPE_S8;
      lowbit_quantize_desc d = desc(op, scope, x, q, {64, 4096});
      d.group_size = 128;
      d.axis = scope == LOWBIT_SCOPE_PER_CHANNEL && op % 2 ? 1 : 0;
      const std::string j = o.describe(d);
      CAPTURE(j);
      CHECK_FALSE(has(j, "FAILED"));
      CHECK(has(j, "\"spill_store_bytes\":0"));
      CHECK(has(j, "\"stack_frame_bytes\":0"));
      CHECK_FALSE(has(j, "\"vector_narrowed\":true"));
      ++compiled;
    }
  for (lowbit_dtype x : {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_F64}) {
    lowbit_quantize_desc d = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, x, LOWBIT_DTYPE_U8, {8, 512});
    const std::string j = o.describe(d);
    CAPTURE(j);
    CHECK(has(j, "\"spill_store_bytes\":0"));
    CHECK(has(j, "\"fast_quotient\":false"));
  }
  MESSAGE(compiled << " representative quantize kernels compiled");

  // Narrowing: strided rows that break 16-byte vectors; an odd per-group size.
  lowbit_quantize_desc d = desc(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, {41, 1000});
  d.x_row_stride = 1001;
  std::string j = o.describe(d);
  CAPTURE(j);
  CHECK(has(j, "\"vector_narrowed\":true"));
  CHECK(has(j, "\"vector_elements\":1"));
  d.x_row_stride = 1032;
  j = o.describe(d);
  CHECK(has(j, "\"vector_elements\":8"));
  CHECK(has(j, "\"x_vector_bytes\":16"));
  // A 2-byte alignment promise: element accesses (no vectors), still a plan.
  d.alignment = 2;
  j = o.describe(d);
  CHECK(has(j, "\"x_vector_bytes\":2"));
  // Packed output keeps two-element vectors (one byte) even when unaligned.
  d.q_dtype = LOWBIT_DTYPE_U4;
  d.x_row_stride = 1001;
  d.alignment = 16;
  j = o.describe(d);
  CHECK(has(j, "\"vector_elements\":2"));
  CHECK(has(j, "\"x_vector_bytes\":2"));
  // Groups of 4 bf16: vectors of 4 (8 bytes), one scale per vector.
  lowbit_quantize_desc g = desc(LOWBIT_QOP_DEQUANTIZE, LOWBIT_SCOPE_PER_GROUP, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, {16, 64});
  g.group_size = 4;
  j = o.describe(g);
  CHECK(has(j, "\"vector_elements\":4"));
  CHECK(has(j, "\"scale_mode\":\"per_vector\""));
  // Dynamic per-token on a long row uses a whole block per row, in one pass.
  lowbit_quantize_desc t = desc(LOWBIT_QOP_DYNAMIC_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, {100000, 8192});
  j = o.describe(t);
  CAPTURE(j);
  CHECK(has(j, "\"segment_threads\":256"));  // 512 vectors of 16, 2 per thread (64 bytes of X)
  CHECK(has(j, "\"single_pass\":true"));
  CHECK(has(j, "\"segments\":100000"));  // more rows than a grid dimension: fine
}
