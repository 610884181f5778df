// Unit tests of the CPU reference (src/ref/): the f16/bf16 conversions and
// the quantize / dequantize arithmetic, checked against hand-computed values
// and an independent decoding of the formats. These are the oracles of the
// GPU tests, so they are pinned down value by value.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "lowbit/lowbit.h"
#include "ref/float16.hpp"
#include "ref/quantize.hpp"

namespace {

using lowbit::ref::bf16_to_f32;
using lowbit::ref::f16_to_f32;
using lowbit::ref::f32_bits;
using lowbit::ref::f32_from_bits;
using lowbit::ref::f32_to_bf16;
using lowbit::ref::f32_to_f16;
using lowbit::ref::quantize_value;
using lowbit::ref::rint_to_s64;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

// binary16 decoded from its definition with ldexp (independent of the
// bit-shuffling in float16.hpp).
double f16_value(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  double v;
  if (exp == 0x1f) {
    v = mant == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (exp == 0) {
    v = std::ldexp(double(mant), -24);
  } else {
    v = std::ldexp(1.0 + double(mant) / 1024.0, exp - 15);
  }
  return sign ? -v : v;
}

float f32_of(uint32_t bits) { return f32_from_bits(bits); }

lowbit_quantize_desc desc_1d(lowbit_quantize_op op, lowbit_dtype x, lowbit_dtype q, int64_t n) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.op = op;
  d.x_dtype = x;
  d.q_dtype = q;
  d.rank = 1;
  d.dims[0] = n;
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------
// Rounding and clamping of one value.

TEST_CASE("ref quantize: rint_to_s64 rounds half to even, saturates, NaN -> 0") {
  CHECK(rint_to_s64(0.5) == 0);
  CHECK(rint_to_s64(1.5) == 2);
  CHECK(rint_to_s64(2.5) == 2);
  CHECK(rint_to_s64(3.5) == 4);
  CHECK(rint_to_s64(-0.5) == 0);
  CHECK(rint_to_s64(-1.5) == -2);
  CHECK(rint_to_s64(-2.5) == -2);
  CHECK(rint_to_s64(0.49999999999999994) == 0);
  CHECK(rint_to_s64(2.5000000000000004) == 3);
  CHECK(rint_to_s64(std::nan("")) == 0);
  CHECK(rint_to_s64(1e300) == std::numeric_limits<int64_t>::max());
  CHECK(rint_to_s64(-1e300) == std::numeric_limits<int64_t>::min());
  CHECK(rint_to_s64(std::numeric_limits<double>::infinity()) == std::numeric_limits<int64_t>::max());
  CHECK(rint_to_s64(-std::numeric_limits<double>::infinity()) == std::numeric_limits<int64_t>::min());
  CHECK(rint_to_s64(9007199254740993.0) == 9007199254740992LL);  // nearest double
}

TEST_CASE("ref quantize: ties to even (f32 and f64)") {
  const struct {
    double x;
    int32_t q;
  } cases[] = {{0.5, 0}, {1.5, 2}, {2.5, 2}, {-0.5, 0}, {-1.5, -2}, {-2.5, -2}, {3.5, 4}, {-3.5, -4},
               {0.4999, 0}, {0.5001, 1}, {-0.5001, -1}, {126.5, 126}, {125.5, 126}};
  for (const auto& c : cases) {
    CAPTURE(c.x);
    CHECK(quantize_value(float(c.x), 1.0f, 0, -128, 127) == c.q);
    CHECK(quantize_value(c.x, 1.0, 0, -128, 127) == c.q);
  }
  // Ties after the division: 5 / 2 = 2.5 -> 2, 7 / 2 = 3.5 -> 4, -3 / 2 -> -2.
  CHECK(quantize_value(5.0f, 2.0f, 0, -128, 127) == 2);
  CHECK(quantize_value(7.0f, 2.0f, 0, -128, 127) == 4);
  CHECK(quantize_value(-3.0f, 2.0f, 0, -128, 127) == -2);
  CHECK(quantize_value(0.25f, 0.5f, 0, -128, 127) == 0);
}

TEST_CASE("ref quantize: clamping at both ends, s8 / u8 and narrowed ranges") {
  // s8 full range.
  CHECK(quantize_value(127.0f, 1.0f, 0, -128, 127) == 127);
  CHECK(quantize_value(127.5f, 1.0f, 0, -128, 127) == 127);  // rounds to 128, clamps
  CHECK(quantize_value(128.0f, 1.0f, 0, -128, 127) == 127);
  CHECK(quantize_value(1e9f, 1.0f, 0, -128, 127) == 127);
  CHECK(quantize_value(-128.0f, 1.0f, 0, -128, 127) == -128);
  CHECK(quantize_value(-128.5f, 1.0f, 0, -128, 127) == -128);  // -128 (even)
  CHECK(quantize_value(-129.5f, 1.0f, 0, -128, 127) == -128);
  CHECK(quantize_value(-1e9f, 1.0f, 0, -128, 127) == -128);
  // u8 full range.
  CHECK(quantize_value(-1.0f, 1.0f, 0, 0, 255) == 0);
  CHECK(quantize_value(-0.5f, 1.0f, 0, 0, 255) == 0);
  CHECK(quantize_value(255.0f, 1.0f, 0, 0, 255) == 255);
  CHECK(quantize_value(255.5f, 1.0f, 0, 0, 255) == 255);
  CHECK(quantize_value(300.0f, 1.0f, 0, 0, 255) == 255);
  // Narrowed (symmetric s8, and an arbitrary window).
  CHECK(quantize_value(-128.0f, 1.0f, 0, -127, 127) == -127);
  CHECK(quantize_value(-127.0f, 1.0f, 0, -127, 127) == -127);
  CHECK(quantize_value(5.0f, 1.0f, 0, 10, 20) == 10);
  CHECK(quantize_value(15.0f, 1.0f, 0, 10, 20) == 15);
  CHECK(quantize_value(25.0f, 1.0f, 0, 10, 20) == 20);
  CHECK(quantize_value(3.0, 1.0, 0, 4, 4) == 4);
  // f64 path.
  CHECK(quantize_value(1e300, 1.0, 0, -128, 127) == 127);
  CHECK(quantize_value(-1e300, 1.0, 0, 0, 255) == 0);
}

TEST_CASE("ref quantize: the zero point is added after rounding, before clamping") {
  CHECK(quantize_value(2.5f, 1.0f, 10, -128, 127) == 12);   // rint(2.5) = 2, + 10
  CHECK(quantize_value(0.5f, 1.0f, 1, -128, 127) == 1);     // not rint(0.5 + 1) = 2
  CHECK(quantize_value(1.5f, 1.0f, -1, -128, 127) == 1);    // rint(1.5) = 2, - 1
  CHECK(quantize_value(-1.0f, 0.5f, 128, 0, 255) == 126);   // -2 + 128
  CHECK(quantize_value(200.0f, 1.0f, 100, 0, 255) == 255);  // 300 clamps
  CHECK(quantize_value(-200.0f, 1.0f, 100, 0, 255) == 0);   // -100 clamps
  CHECK(quantize_value(120.0f, 1.0f, 20, -128, 127) == 127);
  CHECK(quantize_value(2.5, 1.0, 10, -128, 127) == 12);
  // A saturated rint plus an extreme zero point must not wrap around.
  CHECK(quantize_value(1e30f, 1.0f, std::numeric_limits<int32_t>::min(), -128, 127) == 127);
  CHECK(quantize_value(-1e30f, 1.0f, std::numeric_limits<int32_t>::max(), -128, 127) == -128);
  CHECK(quantize_value(1e300, 1.0, std::numeric_limits<int32_t>::min(), 0, 255) == 255);
}

TEST_CASE("ref quantize: NaN -> zero point, +inf -> qmax, -inf -> qmin") {
  CHECK(quantize_value(kNaN, 1.0f, 0, -128, 127) == 0);
  CHECK(quantize_value(kNaN, 1.0f, 7, -128, 127) == 7);
  CHECK(quantize_value(kNaN, 1.0f, 128, 0, 255) == 128);
  CHECK(quantize_value(kNaN, 1.0f, 300, 0, 255) == 255);  // the zero point itself clamps
  CHECK(quantize_value(-kNaN, 1.0f, 3, -128, 127) == 3);
  CHECK(quantize_value(std::nan(""), 1.0, 9, -128, 127) == 9);
  CHECK(quantize_value(kInf, 1.0f, 0, -128, 127) == 127);
  CHECK(quantize_value(-kInf, 1.0f, 0, -128, 127) == -128);
  CHECK(quantize_value(kInf, 1.0f, 0, 0, 255) == 255);
  CHECK(quantize_value(-kInf, 1.0f, 0, 0, 255) == 0);
  CHECK(quantize_value(kInf, 1.0f, -100, -5, 5) == 5);
  CHECK(quantize_value(double(kInf), 1.0, 0, -128, 127) == 127);
  CHECK(quantize_value(double(-kInf), 1.0, 0, -128, 127) == -128);
  // Quotients that overflow or are undefined behave like their IEEE values.
  CHECK(quantize_value(1e38f, 1e-38f, 0, -128, 127) == 127);
  CHECK(quantize_value(1.0f, 0.0f, 0, -128, 127) == 127);    // +inf
  CHECK(quantize_value(-1.0f, 0.0f, 0, -128, 127) == -128);  // -inf
  CHECK(quantize_value(0.0f, 0.0f, 5, -128, 127) == 5);      // NaN
}

TEST_CASE("ref quantize: the quotient is an IEEE f32 division (not f64, not a reciprocal)") {
  // x / s is exactly 2.5000000537 in real numbers; its f32 rounding is 2.5,
  // which rounds to even (2). Computed in f64 it would round to 3.
  const float x1 = f32_of(0x3f3186bcu), s1 = f32_of(0x3e8e0563u);
  CHECK(quantize_value(x1, s1, 0, -128, 127) == 2);
  CHECK(quantize_value(double(x1), double(s1), 0, -128, 127) == 3);
  // x / s is exactly 2.5 (-> 2); x * (1 / s) in f32 is 2.50000024 (-> 3).
  const float x2 = f32_of(0x40943694u), s2 = f32_of(0x3fed2420u);
  REQUIRE(x2 * (1.0f / s2) > 2.5f);
  CHECK(quantize_value(x2, s2, 0, -128, 127) == 2);
}

// ---------------------------------------------------------------------------
// binary16

TEST_CASE("ref float16: every f16 bit pattern round-trips through f32 (NaN -> 0x7fff)") {
  int mismatches = 0, value_mismatches = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = uint16_t(i);
    const float f = f16_to_f32(h);
    const uint16_t back = f32_to_f16(f);
    const uint16_t want = f16_is_nan(h) ? uint16_t(0x7fff) : h;
    if (back != want) {
      if (++mismatches <= 5) FAIL_CHECK("f16 0x" << std::hex << i << " -> " << f << " -> 0x" << back);
    }
    // Widening is exact: the f32 equals the format's definition.
    const double v = f16_value(h);
    const bool ok = f16_is_nan(h) ? std::isnan(f) : (double(f) == v && std::signbit(f) == std::signbit(v));
    if (!ok) {
      if (++value_mismatches <= 5) FAIL_CHECK("f16 0x" << std::hex << i << " widens to " << f << ", expected " << v);
    }
  }
  CHECK(mismatches == 0);
  CHECK(value_mismatches == 0);
}

TEST_CASE("ref float16: f32 -> f16 hand cases (ties, subnormals, overflow)") {
  // Exact values.
  CHECK(f32_to_f16(0.0f) == 0x0000);
  CHECK(f32_to_f16(-0.0f) == 0x8000);
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(-2.0f) == 0xc000);
  CHECK(f32_to_f16(0.5f) == 0x3800);
  CHECK(f32_to_f16(65504.0f) == 0x7bff);  // largest finite
  // Ties to even in the normal range: 1 + 2^-11 is halfway between 0x3c00
  // and 0x3c01; 1 + 3 * 2^-11 between 0x3c01 and 0x3c02.
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -23)) == 0x3c01);  // just above the tie
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11) - std::ldexp(1.0f, -24)) == 0x3c00);  // just below
  CHECK(f32_to_f16(-(1.0f + 3 * std::ldexp(1.0f, -11))) == 0xbc02);
  // A tie that carries into the exponent: 2 - 2^-11 is halfway between
  // 0x3bff (odd) and 0x4000.
  CHECK(f32_to_f16(2.0f - std::ldexp(1.0f, -11)) == 0x4000);
  // Subnormals: the smallest is 2^-24 (0x0001).
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);                          // tie -> 0 (even)
  CHECK(f32_to_f16(std::ldexp(1.0f, -25) * (1.0f + std::ldexp(1.0f, -23))) == 0x0001);  // just above the tie
  CHECK(f32_to_f16(3 * std::ldexp(1.0f, -25)) == 0x0002);                      // 1.5 ulp -> 2 (even)
  CHECK(f32_to_f16(5 * std::ldexp(1.0f, -25)) == 0x0002);                      // 2.5 ulp -> 2 (even)
  CHECK(f32_to_f16(std::ldexp(1.0f, -26)) == 0x0000);
  CHECK(f32_to_f16(std::ldexp(1.0f, -140)) == 0x0000);                         // f32 subnormal input
  CHECK(f32_to_f16(-std::ldexp(1.0f, -24)) == 0x8001);
  CHECK(f32_to_f16(-std::ldexp(1.0f, -26)) == 0x8000);                         // signed zero
  CHECK(f32_to_f16(1023 * std::ldexp(1.0f, -24)) == 0x03ff);                   // largest subnormal
  CHECK(f32_to_f16(std::ldexp(1.0f, -14)) == 0x0400);                          // smallest normal
  CHECK(f32_to_f16(1023.5f * std::ldexp(1.0f, -24)) == 0x0400);                // tie, odd -> up into normals
  CHECK(f32_to_f16(1022.5f * std::ldexp(1.0f, -24)) == 0x03fe);                // tie, even -> down
  // Overflow: 65520 (halfway between 65504 and 2^16) rounds to infinity.
  CHECK(f32_to_f16(65519.996f) == 0x7bff);
  CHECK(f32_to_f16(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_f16(-65520.0f) == 0xfc00);
  CHECK(f32_to_f16(1e10f) == 0x7c00);
  CHECK(f32_to_f16(std::numeric_limits<float>::max()) == 0x7c00);
  CHECK(f32_to_f16(kInf) == 0x7c00);
  CHECK(f32_to_f16(-kInf) == 0xfc00);
  // NaN: canonical 0x7fff whatever the sign or payload.
  CHECK(f32_to_f16(kNaN) == 0x7fff);
  CHECK(f32_to_f16(-kNaN) == 0x7fff);
  CHECK(f32_to_f16(f32_of(0x7f800001u)) == 0x7fff);  // signalling, smallest payload
  CHECK(f32_to_f16(f32_of(0xffffffffu)) == 0x7fff);
  // Widening of the specials.
  CHECK(f16_to_f32(0x7c00) == kInf);
  CHECK(f16_to_f32(0xfc00) == -kInf);
  CHECK(std::isnan(f16_to_f32(0x7e00)));
  CHECK(std::isnan(f16_to_f32(0x7c01)));
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_f32(0x8000) == 0.0f);
  CHECK(std::signbit(f16_to_f32(0x8000)));
}

// ---------------------------------------------------------------------------
// bfloat16

TEST_CASE("ref bfloat16: round trip, ties to even, overflow, NaN") {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = uint16_t(i);
    const bool nan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
    const uint16_t back = f32_to_bf16(bf16_to_f32(h));
    if (back != (nan ? 0x7fff : h)) {
      FAIL_CHECK("bf16 0x" << std::hex << i << " -> 0x" << back);
      break;
    }
    if (!nan && f32_bits(bf16_to_f32(h)) != (i << 16)) {
      FAIL_CHECK("bf16 0x" << std::hex << i << " widens wrongly");
      break;
    }
  }
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_bf16(-1.0f) == 0xbf80);
  // Ties: 0x3f808000 is halfway between 0x3f80 (even) and 0x3f81.
  CHECK(f32_to_bf16(f32_of(0x3f808000u)) == 0x3f80);
  CHECK(f32_to_bf16(f32_of(0x3f818000u)) == 0x3f82);  // between 0x3f81 (odd) and 0x3f82
  CHECK(f32_to_bf16(f32_of(0x3f808001u)) == 0x3f81);  // above the tie
  CHECK(f32_to_bf16(f32_of(0x3f807fffu)) == 0x3f80);  // below the tie
  CHECK(f32_to_bf16(f32_of(0xbf818000u)) == 0xbf82);
  // Carry into the exponent: 0x3fff8000 is halfway between 0x3fff (odd) and 0x4000.
  CHECK(f32_to_bf16(f32_of(0x3fff8000u)) == 0x4000);
  // Subnormals round the same way.
  CHECK(f32_to_bf16(f32_of(0x00008000u)) == 0x0000);
  CHECK(f32_to_bf16(f32_of(0x00018000u)) == 0x0002);
  // Overflow to infinity, infinities kept.
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(f32_to_bf16(f32_of(0x7f7f7fffu)) == 0x7f7f);
  CHECK(f32_to_bf16(kInf) == 0x7f80);
  CHECK(f32_to_bf16(-kInf) == 0xff80);
  // NaN (quiet, signalling, negative) -> canonical 0x7fff, never infinity.
  CHECK(f32_to_bf16(kNaN) == 0x7fff);
  CHECK(f32_to_bf16(-kNaN) == 0x7fff);
  CHECK(f32_to_bf16(f32_of(0x7f800001u)) == 0x7fff);
  CHECK(f32_to_bf16(f32_of(0x7fffffffu)) == 0x7fff);
  CHECK(f32_to_bf16(f32_of(0xff800001u)) == 0x7fff);
}

// ---------------------------------------------------------------------------
// The reference op (quantize_reference) on host buffers.

TEST_CASE("ref quantize: quantize_reference on f32 / f16 / bf16 / f64 inputs") {
  const float xs[] = {-1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 300.0f, -300.0f, kNaN, kInf, -kInf, 0.75f};
  const int n = int(std::size(xs));
  const int8_t want_s8[] = {-2, 0, 0, 2, 2, 127, -128, 0, 127, -128, 1};

  SUBCASE("f32 -> s8, scale 1") {
    std::vector<int8_t> q(n, 99);
    const float scale = 1.0f;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_QUANTIZE, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, n);
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(xs))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q.data()))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))}};
    lowbit::ref::quantize_reference(d, args, 3);
    for (int i = 0; i < n; ++i) CHECK(q[i] == want_s8[i]);
  }
  SUBCASE("f16 -> u8 with a zero point") {
    std::vector<uint16_t> x(n);
    for (int i = 0; i < n; ++i) x[i] = f32_to_f16(xs[i]);  // all exactly representable
    std::vector<uint8_t> q(n, 99);
    const uint16_t scale = f32_to_f16(0.5f);
    const int32_t zp = 128;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_QUANTIZE, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_U8, n);
    d.scale_dtype = LOWBIT_DTYPE_F16;
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x.data()))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q.data()))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))},
                               {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(&zp))}};
    lowbit::ref::quantize_reference(d, args, 4);
    // x / 0.5: -3, -1, 1, 3, 5, 600, -600, NaN, inf, -inf, 1.5 -> rint + 128, clamp [0, 255].
    const uint8_t want[] = {125, 127, 129, 131, 133, 255, 0, 128, 255, 0, 130};
    for (int i = 0; i < n; ++i) CHECK(int(q[i]) == int(want[i]));
  }
  SUBCASE("bf16 -> s8, narrowed range [-127, 127]") {
    std::vector<uint16_t> x(n);
    for (int i = 0; i < n; ++i) x[i] = f32_to_bf16(xs[i]);
    std::vector<int8_t> q(n, 99);
    const float scale = 1.0f;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_QUANTIZE, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, n);
    d.qmin = -127;
    d.qmax = 127;
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x.data()))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q.data()))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))}};
    lowbit::ref::quantize_reference(d, args, 3);
    for (int i = 0; i < n; ++i) CHECK(int(q[i]) == std::max(-127, int(want_s8[i])));
  }
  SUBCASE("f64 divides in f64") {
    const double x[] = {double(f32_of(0x3f3186bcu)), 2.5, -2.5};
    const double scale = double(f32_of(0x3e8e0563u));
    int8_t q[3] = {99, 99, 99};
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_QUANTIZE, LOWBIT_DTYPE_F64, LOWBIT_DTYPE_S8, 3);
    d.scale_dtype = LOWBIT_DTYPE_F64;
    const double one = 1.0;
    const lowbit_arg args1[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))},
                                {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                                {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))}};
    lowbit::ref::quantize_reference(d, args1, 3);
    CHECK(q[0] == 3);  // 2.50000005 in f64 (2 in f32)
    const lowbit_arg args2[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))},
                                {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                                {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&one))}};
    lowbit::ref::quantize_reference(d, args2, 3);
    CHECK(q[1] == 2);
    CHECK(q[2] == -2);
  }
  SUBCASE("strided rows: the gap between rows is neither read nor written") {
    // [2, 3] with x_row_stride 5; Q is contiguous [2, 3].
    const float x[10] = {0.4f, 1.6f, -2.6f, 1e9f, 1e9f, 3.0f, -3.0f, 4.5f, 1e9f, 1e9f};
    int8_t q[8] = {99, 99, 99, 99, 99, 99, 99, 99};
    const float scale = 1.0f;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_QUANTIZE, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, 0);
    d.rank = 2;
    d.dims[0] = 2;
    d.dims[1] = 3;
    d.x_row_stride = 5;
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))}};
    lowbit::ref::quantize_reference(d, args, 3);
    const int8_t want[8] = {0, 2, -3, 3, -3, 4, 99, 99};
    for (int i = 0; i < 8; ++i) CHECK(int(q[i]) == int(want[i]));
  }
}

TEST_CASE("ref quantize: dequantize is (q - zp) * scale in f32, then rounded to the x type") {
  // (q - zp) first: 183 - 204 = -21, times s in f32 -> 0xc1516bf3. Computing
  // q * s - zp * s instead gives 0xc1516bf0.
  const float s = f32_of(0x3f1f8f33u);
  REQUIRE(f32_bits(183.0f * s - 204.0f * s) != 0xc1516bf3u);
  {
    const uint8_t q[2] = {183, 204};
    float x[2] = {99.0f, 99.0f};
    const int32_t zp = 204;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_DEQUANTIZE, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U8, 2);
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&s))},
                               {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(&zp))}};
    lowbit::ref::quantize_reference(d, args, 4);
    CHECK(f32_bits(x[0]) == 0xc1516bf3u);
    CHECK(x[1] == 0.0f);
    CHECK_FALSE(std::signbit(x[1]));  // (204 - 204) * s = +0
  }
  // f16 output rounds the f32 product (double rounding is the contract):
  // 211 * 0x3ef32f51 = 100.218748... -> f32 100.21875 (0x42c87000) -> f16
  // tie -> 0x5644 (100.25); rounding the exact product gives 0x5643.
  {
    const float s2 = f32_of(0x3ef32f51u);
    const uint8_t q[1] = {221};
    uint16_t x[1] = {0};
    const int32_t zp = 10;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_DEQUANTIZE, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_U8, 1);
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&s2))},
                               {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(&zp))}};
    lowbit::ref::quantize_reference(d, args, 4);
    CHECK(x[0] == 0x5644);
  }
  // bf16 output: -128 * 0.1f in f32 is 0xc14ccccd -> bf16 0xc14d.
  {
    const int8_t q[3] = {-128, 0, 127};
    uint16_t x[3] = {0, 0, 0};
    const float scale = 0.1f;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_DEQUANTIZE, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, 3);
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))}};
    lowbit::ref::quantize_reference(d, args, 3);
    CHECK(f32_bits(-128.0f * 0.1f) == 0xc14ccccdu);
    CHECK(x[0] == 0xc14d);
    CHECK(x[1] == 0x0000);
    CHECK(x[2] == f32_to_bf16(127.0f * 0.1f));
    CHECK(x[2] == 0x414b);  // 12.7f = 0x414b3333
  }
  // f64: computed in f64 from the integer difference.
  {
    const int8_t q[2] = {-24, 4};
    double x[2] = {0, 0};
    const double scale = 0.1;
    const int32_t zp = -3;
    lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_DEQUANTIZE, LOWBIT_DTYPE_F64, LOWBIT_DTYPE_S8, 2);
    d.scale_dtype = LOWBIT_DTYPE_F64;
    const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))},
                               {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(&zp))}};
    lowbit::ref::quantize_reference(d, args, 4);
    CHECK(x[0] == -21.0 * 0.1);
    CHECK(x[1] == 7.0 * 0.1);
    CHECK(x[0] != double(-21.0f * 0.1f));  // not an f32 product
  }
}

TEST_CASE("ref quantize: quantize_reference rejects missing arguments") {
  const float x[1] = {1.0f};
  int8_t q[1] = {0};
  const float scale = 1.0f;
  lowbit_quantize_desc d = desc_1d(LOWBIT_QOP_QUANTIZE, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, 1);
  const lowbit_arg no_scale[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))}, {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))}};
  const lowbit_arg no_q[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x))}, {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))}};
  const lowbit_arg null_x[] = {{LOWBIT_ARG_X, 0, 0},
                               {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q))},
                               {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(&scale))}};
  for (const lowbit_arg* args : {no_scale, no_q}) {
    try {
      lowbit::ref::quantize_reference(d, args, 2);
      FAIL_CHECK("no exception");
    } catch (const lowbit::Error& e) {
      CHECK(e.status() == LOWBIT_INVALID_ARGUMENT);
      CHECK(e.message().find("missing") != std::string::npos);
    }
  }
  CHECK_THROWS_AS(lowbit::ref::quantize_reference(d, null_x, 3), lowbit::Error);
}
