// Unit tests (CPU only) of the weight-only matmul family: descriptor checks
// and their status codes, the native buffer size, the CPU reference against
// hand-packed values of each format, repack round trips (source -> native ->
// dequantized equals the source dequantized, bit for bit), and NVRTC
// compilation of the kernels for an offline sm_90a context (no spills).
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <memory>
#include <set>
#include <cstring>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "common/error.hpp"
#include "jit/compiler.hpp"
#include "jit/kernel_spec.hpp"
#include "jit/target.hpp"
#include "ops/op_plan.hpp"
#include "ops/wq.hpp"
#include "lowbit/lowbit.h"
#include "ref/float16.hpp"
#include "ref/wq.hpp"
#include "support/test_support.hpp"
#include "unit/wq_pack.hpp"

namespace {

using namespace lowbit::test::wq;

lowbit_wq_matmul_desc make_desc(lowbit_wq_format f, int bits, int64_t group, int64_t n, int64_t k) {
  lowbit_wq_matmul_desc d;
  lowbit_wq_matmul_desc_init(&d);
  d.format = f;
  d.weight_bits = bits;
  d.group_size = group;
  d.n = n;
  d.k = k;
  return d;
}

lowbit_status ref_status(const lowbit_wq_matmul_desc& d) {
  // lowbit_reference_run validates the descriptor before reading any argument.
  lowbit_op_desc op{LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d};
  return lowbit_reference_run(&op, nullptr, 0);
}

// Status of validation alone: reference_run with no args fails validation
// first, else with INVALID_ARGUMENT for the first missing pointer.
lowbit_status validate(const lowbit_wq_matmul_desc& d) { return ref_status(d); }

}  // namespace

TEST_CASE("wq: descriptor defaults and validation codes") {
  lowbit_wq_matmul_desc d;
  std::memset(&d, 0xff, sizeof(d));
  lowbit_wq_matmul_desc_init(&d);
  CHECK(d.struct_size == sizeof(lowbit_wq_matmul_desc));
  CHECK(d.op == LOWBIT_WQ_OP_MATMUL);
  CHECK(d.format == LOWBIT_WQ_FORMAT_NATIVE);
  CHECK(d.weight_bits == 4);
  CHECK(d.group_size == 128);
  CHECK(d.m == 1);
  CHECK(d.act_dtype == LOWBIT_DTYPE_F16);
  CHECK(d.scale_dtype == LOWBIT_DTYPE_F16);
  CHECK(d.alignment == 16);
  CHECK(d.symmetric == 0);
  CHECK(d.act_order == 0);
  CHECK(d.has_bias == 0);
  CHECK(d.programmatic_launch == 0);

  auto ok = make_desc(LOWBIT_WQ_FORMAT_AWQ, 4, 128, 4096, 4096);
  // A valid descriptor passes validation and then misses its first argument.
  CHECK(validate(ok) == LOWBIT_INVALID_ARGUMENT);
  CHECK(std::string(lowbit_last_error_message()).find("missing argument") != std::string::npos);

  SUBCASE("shape errors are INVALID_PROBLEM") {
    auto d2 = ok;
    d2.k = 4096 + 64;  // not a multiple of 128
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);
    CHECK(std::string(lowbit_last_error_message()).find("group_size") != std::string::npos);
    d2 = ok;
    d2.n = 4100;
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);
    d2 = ok;
    d2.k = 4092;
    d2.group_size = -1;
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);  // k not a multiple of 8
    d2 = ok;
    d2.n = 0;
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);
    d2 = ok;
    d2.group_size = 0;
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);
    d2 = ok;
    d2.m = 0;
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);
    d2 = ok;
    d2.x_row_stride = 100;  // < k
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);
    d2 = make_desc(LOWBIT_WQ_FORMAT_GPTQ, 4, -1, 4096, 4096);
    d2.act_order = 1;
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);  // act-order needs groups
    d2 = make_desc(LOWBIT_WQ_FORMAT_NATIVE, 4, 128, 4096, 4096);
    d2.op = LOWBIT_WQ_OP_REPACK;
    CHECK(validate(d2) == LOWBIT_INVALID_PROBLEM);  // native is not a repack source
  }
  SUBCASE("unsupported combinations are UNSUPPORTED") {
    auto d2 = ok;
    d2.weight_bits = 8;  // AWQ packs 4-bit only
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = ok;
    d2.weight_bits = 3;
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = ok;
    d2.group_size = 96;
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = ok;
    d2.act_dtype = LOWBIT_DTYPE_F32;
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = ok;
    d2.scale_dtype = LOWBIT_DTYPE_F32;
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = ok;
    d2.act_order = 1;  // AWQ has no g_idx
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = ok;
    d2.alignment = 8;
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = ok;
    d2.x_row_stride = 4100;  // not a multiple of 8
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
    d2 = make_desc(LOWBIT_WQ_FORMAT_PLAIN, 4, 128, 4096, 4096);  // matmul reads no PLAIN
    CHECK(validate(d2) == LOWBIT_UNSUPPORTED);
  }
  SUBCASE("bad enums and flags are INVALID_ARGUMENT") {
    auto d2 = ok;
    d2.format = 9;
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    d2 = ok;
    d2.op = 0;
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    d2 = ok;
    d2.symmetric = 2;
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    d2 = ok;
    d2.act_dtype = 77;
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    d2 = ok;
    d2.alignment = 3;
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    d2 = ok;
    d2.programmatic_launch = 2;
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    CHECK(std::string(lowbit_last_error_message()).find("programmatic_launch") != std::string::npos);
    d2 = ok;
    d2.struct_size = 8;
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    d2 = ok;
    d2.struct_size = sizeof(lowbit_wq_matmul_desc) + 8;  // a newer lowbit's struct
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
  }
  SUBCASE("a caller built before programmatic_launch existed passes the shorter struct") {
    auto d2 = ok;
    d2.struct_size = uint32_t(offsetof(lowbit_wq_matmul_desc, programmatic_launch));
    d2.programmatic_launch = 7;  // beyond the caller's struct: never read
    CHECK(validate(d2) == LOWBIT_INVALID_ARGUMENT);
    CHECK(std::string(lowbit_last_error_message()).find("missing argument") != std::string::npos);
  }
}

TEST_CASE("wq: both matmul paths need sm_80; the repack runs anywhere") {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_mode = LOWBIT_CACHE_MEMORY;
  lowbit_context* ctx = nullptr;
  if (lowbit_context_create_offline("sm_75", &o, &ctx) != LOWBIT_OK) {
    lowbit::test::mark_skipped(std::string("offline context: ") + lowbit_last_error_message());
    return;
  }
  for (const int64_t m : {int64_t(1), int64_t(64)}) {  // decode, prefill
    CAPTURE(m);
    auto d = make_desc(LOWBIT_WQ_FORMAT_AWQ, 4, 128, 4096, 4096);
    d.m = m;
    lowbit_plan* plan = nullptr;
    CHECK(lowbit_wq_matmul_plan_create(ctx, &d, &plan) == LOWBIT_UNSUPPORTED);
    CHECK(std::string(lowbit_last_error_message()).find("needs sm_80 or newer") != std::string::npos);
    CHECK(plan == nullptr);
  }
  auto r = make_desc(LOWBIT_WQ_FORMAT_AWQ, 4, 128, 4096, 4096);
  r.op = LOWBIT_WQ_OP_REPACK;
  lowbit_plan* plan = nullptr;
  CHECK(lowbit_wq_matmul_plan_create(ctx, &r, &plan) == LOWBIT_OK);
  lowbit_plan_destroy(plan);
  lowbit_context_destroy(ctx);
}

TEST_CASE("wq: programmatic launch in the decode plan's description") {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_mode = LOWBIT_CACHE_MEMORY;
  for (const char* arch : {"sm_90a", "sm_80"}) {
    CAPTURE(arch);
    lowbit_context* ctx = nullptr;
    if (lowbit_context_create_offline(arch, &o, &ctx) != LOWBIT_OK) {
      lowbit::test::mark_skipped(std::string("offline context: ") + lowbit_last_error_message());
      return;
    }
    const bool hopper = std::string(arch) == "sm_90a";
    struct Case {
      lowbit_wq_format f;
      int64_t n, k, m;
      int programmatic;
      bool programmatic_used;
    };
    // Used where asked on sm_90+ (ignored on sm_80), decode path only.
    const Case cases[] = {
        {LOWBIT_WQ_FORMAT_NATIVE, 4096, 4096, 1, 1, hopper},
        {LOWBIT_WQ_FORMAT_NATIVE, 4096, 4096, 8, 0, false},
        {LOWBIT_WQ_FORMAT_NATIVE, 57344, 8192, 1, 1, hopper},
        {LOWBIT_WQ_FORMAT_AWQ, 4096, 4096, 1, 1, hopper},
    };
    for (const Case& c : cases) {
      auto d = make_desc(c.f, 4, 128, c.n, c.k);
      d.m = c.m;
      d.programmatic_launch = c.programmatic;
      lowbit_plan* plan = nullptr;
      REQUIRE(lowbit_wq_matmul_plan_create(ctx, &d, &plan) == LOWBIT_OK);
      size_t length = 0;
      REQUIRE(lowbit_plan_describe(plan, nullptr, 0, &length) == LOWBIT_OK);
      std::string s(length + 1, '\0');
      REQUIRE(lowbit_plan_describe(plan, s.data(), s.size(), nullptr) == LOWBIT_OK);
      s.resize(length);
      CAPTURE(s);
      CHECK(s.find(std::string("\"programmatic_launch\":") + (c.programmatic_used ? "true" : "false")) != std::string::npos);
      CHECK(s.find(std::string("\"programmatic_launch_requested\":") + (c.programmatic ? "true" : "false")) !=
            std::string::npos);
      lowbit_plan_destroy(plan);
    }
    lowbit_context_destroy(ctx);
  }
}

TEST_CASE("wq: native buffer size") {
  uint64_t bytes = 0;
  auto d = make_desc(LOWBIT_WQ_FORMAT_NATIVE, 4, 128, 4096, 4096);
  REQUIRE(lowbit_wq_native_bytes(&d, &bytes) == LOWBIT_OK);
  // weights 4096*4096/2, scales 32*4096*2, zeros 32*4096/2
  CHECK(bytes == 4096ull * 4096 / 2 + 32ull * 4096 * 2 + 32ull * 4096 / 2);
  d.symmetric = 1;
  REQUIRE(lowbit_wq_native_bytes(&d, &bytes) == LOWBIT_OK);
  CHECK(bytes == 4096ull * 4096 / 2 + 32ull * 4096 * 2);
  // Odd shard shape: N = 7392 / 8 -> padded to 16, K = 7392 padded to 64.
  d = make_desc(LOWBIT_WQ_FORMAT_NATIVE, 8, 32, 928, 7392);
  d.act_order = 1;
  REQUIRE(lowbit_wq_native_bytes(&d, &bytes) == LOWBIT_OK);
  const uint64_t np = 928, kp = 7424, ng = 231;
  uint64_t expect = np * kp;                                     // weights (8-bit)
  expect = (expect + 255) / 256 * 256 + ng * np * 2;            // scales
  expect = (expect + 255) / 256 * 256 + ng * np;                // zeros (8-bit: one byte each)
  expect = (expect + 255) / 256 * 256 + 7392 * 4;               // permutation
  expect = (expect + 255) / 256 * 256;
  CHECK(bytes == expect);
  CHECK(lowbit_wq_native_bytes(&d, nullptr) == LOWBIT_INVALID_ARGUMENT);
  d.k = 7390;
  CHECK(lowbit_wq_native_bytes(&d, &bytes) == LOWBIT_INVALID_PROBLEM);
}

TEST_CASE("wq: reference dequantization of hand-packed words") {
  // One row of AWQ: columns 0..7 hold q = 1..8, zero word = all 3, scale 0.5.
  auto d = make_desc(LOWBIT_WQ_FORMAT_AWQ, 4, -1, 8, 8);
  std::vector<uint32_t> qw(8, 0), qz(1, 0);
  const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // AutoAWQ: nibble p holds column order[p]
  for (int k = 0; k < 8; ++k)
    for (int p = 0; p < 8; ++p) qw[size_t(k)] |= uint32_t((order[p] + 1 + k) & 15) << (4 * p);
  for (int p = 0; p < 8; ++p) qz[0] |= 3u << (4 * p);
  std::vector<uint16_t> s(8, lowbit::ref::f32_to_f16(0.5f));
  auto w = lowbit::ref::wq_dequantize(d, qw.data(), s.data(), qz.data(), nullptr);
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 8; ++n) CHECK(w[size_t(k * 8 + n)] == double(((n + 1 + k) & 15) - 3) * 0.5);

  // GPTQ v1: stored zero 0xF means z = 0 ((15 + 1) mod 16); v2 reads 15.
  d = make_desc(LOWBIT_WQ_FORMAT_GPTQ_V1, 4, -1, 8, 8);
  std::vector<uint32_t> gw(8, 0);
  for (int n = 0; n < 8; ++n)
    for (int j = 0; j < 8; ++j) gw[size_t(n)] |= uint32_t((j + n) & 15) << (4 * j);  // row k = j
  std::vector<uint32_t> gz(1, 0xffffffffu);
  w = lowbit::ref::wq_dequantize(d, gw.data(), s.data(), gz.data(), nullptr);
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 8; ++n) CHECK(w[size_t(k * 8 + n)] == double((k + n) & 15) * 0.5);
  d.format = LOWBIT_WQ_FORMAT_GPTQ;
  w = lowbit::ref::wq_dequantize(d, gw.data(), s.data(), gz.data(), nullptr);
  CHECK(w[0] == -7.5);

  // PLAIN symmetric int4: nibble 0xF is -1.
  d = make_desc(LOWBIT_WQ_FORMAT_PLAIN, 4, -1, 8, 8);
  d.symmetric = 1;
  std::vector<uint8_t> pq(32, 0xF7);  // even k: 7, odd k: -1
  w = lowbit::ref::wq_dequantize(d, pq.data(), s.data(), nullptr, nullptr);
  CHECK(w[0] == 3.5);
  CHECK(w[8] == -0.5);
}

TEST_CASE("wq: reference dequantization matches the logical weights for every format") {
  auto& rng = lowbit::test::rng();
  for (lowbit_wq_format f : {LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_PLAIN})
    for (int bits : {4, 8})
      for (int sym : {0, 1})
        for (int act : {0, 1}) {
          if (f == LOWBIT_WQ_FORMAT_AWQ && bits == 8) continue;
          if (act && (f == LOWBIT_WQ_FORMAT_AWQ || f == LOWBIT_WQ_FORMAT_PLAIN)) continue;
          auto d = make_desc(f, bits, 32, 40, 96);
          d.symmetric = sym;
          d.act_order = act;
          d.scale_dtype = sym ? LOWBIT_DTYPE_BF16 : LOWBIT_DTYPE_F16;
          CAPTURE(f);
          CAPTURE(bits);
          CAPTURE(sym);
          CAPTURE(act);
          const Logical l = random_logical(d, rng, act != 0);
          const Packed p = pack(l, f);
          const auto got = lowbit::ref::wq_dequantize(d, p.w.data(), p.scale.data(), p.zero.data(),
                                                      reinterpret_cast<const int32_t*>(p.g_idx.data()));
          const auto want = logical_weights(l, d.scale_dtype);
          CHECK(got == want);
        }
}

TEST_CASE("wq: repack round trips bit for bit (source -> native -> dequantized)") {
  auto& rng = lowbit::test::rng();
  struct Shape {
    int64_t n, k, g;
  };
  // Odd shards: N not a multiple of 16, K not a multiple of 64.
  const Shape shapes[] = {{40, 96, 32}, {128, 256, 128}, {24, 7392 / 8 - 4, -1}, {56, 448, 64}, {16, 512, 256}};
  for (lowbit_wq_format f : {LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_PLAIN})
    for (int bits : {4, 8})
      for (int sym : {0, 1})
        for (int act : {0, 1})
          for (const Shape& s : shapes) {
            if (f == LOWBIT_WQ_FORMAT_AWQ && bits == 8) continue;
            if (act && (f == LOWBIT_WQ_FORMAT_AWQ || f == LOWBIT_WQ_FORMAT_PLAIN || s.g < 0)) continue;
            auto d = make_desc(f, bits, s.g, s.n, s.k);
            d.op = LOWBIT_WQ_OP_REPACK;
            d.symmetric = sym;
            d.act_order = act;
            CAPTURE(f);
            CAPTURE(bits);
            CAPTURE(sym);
            CAPTURE(act);
            CAPTURE(s.n);
            CAPTURE(s.k);
            const Logical l = random_logical(d, rng, act != 0);
            const Packed p = pack(l, f);
            const auto* gi = reinterpret_cast<const int32_t*>(p.g_idx.data());
            const auto source = lowbit::ref::wq_dequantize(d, p.w.data(), p.scale.data(), p.zero.data(), gi);
            // Through the C API's reference entry point.
            uint64_t bytes = 0;
            REQUIRE(lowbit_wq_native_bytes(&d, &bytes) == LOWBIT_OK);
            std::vector<uint8_t> native(size_t(bytes), 0xA5);
            lowbit_arg args[] = {{LOWBIT_ARG_W, 0, uint64_t(uintptr_t(p.w.data()))},
                                 {LOWBIT_ARG_W_SCALE, 0, uint64_t(uintptr_t(p.scale.data()))},
                                 {LOWBIT_ARG_W_ZERO, 0, uint64_t(uintptr_t(p.zero.data()))},
                                 {LOWBIT_ARG_G_IDX, 0, uint64_t(uintptr_t(p.g_idx.data()))},
                                 {LOWBIT_ARG_W_NATIVE, 0, uint64_t(uintptr_t(native.data()))}};
            lowbit_op_desc op{LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d};
            REQUIRE_MESSAGE(lowbit_reference_run(&op, args, 5) == LOWBIT_OK, lowbit_last_error_message());
            std::vector<int32_t> perm;
            const auto back = lowbit::ref::wq_dequantize_native(d, native.data(), &perm);
            size_t bad = 0;
            for (int64_t i = 0; i < d.k; ++i) {
              const int64_t src = perm[size_t(i)];
              REQUIRE(src >= 0);
              REQUIRE(src < d.k);
              if (act) CHECK(l.g_idx[size_t(src)] == i / d.group_size);  // groups became contiguous
              for (int64_t n = 0; n < d.n; ++n)
                if (back[size_t(i * d.n + n)] != source[size_t(src * d.n + n)]) ++bad;
            }
            CHECK(bad == 0);
            if (!act) {
              for (int64_t i = 0; i < d.k; ++i) CHECK(perm[size_t(i)] == i);
            }
          }
}

TEST_CASE("wq: repack rejects a g_idx without exactly group_size rows per group") {
  auto d = make_desc(LOWBIT_WQ_FORMAT_GPTQ, 4, 32, 16, 64);
  d.op = LOWBIT_WQ_OP_REPACK;
  d.act_order = 1;
  auto& rng = lowbit::test::rng();
  Logical l = random_logical(d, rng, true);
  l.g_idx[0] = 1 - l.g_idx[0];  // one row moves to the other group
  const Packed p = pack(l, d.format);
  CHECK_THROWS(lowbit::ref::wq_repack(d, p.w.data(), p.scale.data(), p.zero.data(),
                                      reinterpret_cast<const int32_t*>(p.g_idx.data())));
  l.g_idx[0] = 7;  // out of range
  const Packed p2 = pack(l, d.format);
  uint64_t bytes = 0;
  REQUIRE(lowbit_wq_native_bytes(&d, &bytes) == LOWBIT_OK);
  std::vector<uint8_t> native(static_cast<size_t>(bytes));
  lowbit_arg args[] = {{LOWBIT_ARG_W, 0, uint64_t(uintptr_t(p2.w.data()))},
                       {LOWBIT_ARG_W_SCALE, 0, uint64_t(uintptr_t(p2.scale.data()))},
                       {LOWBIT_ARG_W_ZERO, 0, uint64_t(uintptr_t(p2.zero.data()))},
                       {LOWBIT_ARG_G_IDX, 0, uint64_t(uintptr_t(p2.g_idx.data()))},
                       {LOWBIT_ARG_W_NATIVE, 0, uint64_t(uintptr_t(native.data()))}};
  lowbit_op_desc op{LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d};
  CHECK(lowbit_reference_run(&op, args, 5) == LOWBIT_INVALID_PROBLEM);
}

TEST_CASE("wq: reference matmul equals the sum over the logical weights (rows, stride, bias, act-order)") {
  auto& rng = lowbit::test::rng();
  for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16}) {
    auto d = make_desc(LOWBIT_WQ_FORMAT_GPTQ, 4, 32, 24, 64);
    d.act_order = 1;
    d.m = 3;
    d.act_dtype = at;
    d.has_bias = 1;
    d.x_row_stride = 72;
    d.y_row_stride = 30;
    const Logical l = random_logical(d, rng, true);
    const Packed p = pack(l, d.format);
    const auto w = logical_weights(l, d.scale_dtype);
    std::normal_distribution<double> nd(0, 1);
    std::vector<uint16_t> x(size_t(d.m * d.x_row_stride)), bias(size_t(d.n)), y(size_t(d.m * d.y_row_stride), 0x7777);
    auto put = [&](double v) {
      return at == LOWBIT_DTYPE_BF16 ? lowbit::ref::f32_to_bf16(float(v)) : lowbit::ref::f32_to_f16(float(v));
    };
    auto get = [&](uint16_t h) { return at == LOWBIT_DTYPE_BF16 ? lowbit::ref::bf16_to_f32(h) : lowbit::ref::f16_to_f32(h); };
    for (auto& v : x) v = put(nd(rng));
    for (auto& v : bias) v = put(nd(rng));
    lowbit_arg args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x.data()))},
                         {LOWBIT_ARG_W, 0, uint64_t(uintptr_t(p.w.data()))},
                         {LOWBIT_ARG_W_SCALE, 0, uint64_t(uintptr_t(p.scale.data()))},
                         {LOWBIT_ARG_W_ZERO, 0, uint64_t(uintptr_t(p.zero.data()))},
                         {LOWBIT_ARG_G_IDX, 0, uint64_t(uintptr_t(p.g_idx.data()))},
                         {LOWBIT_ARG_BIAS, 0, uint64_t(uintptr_t(bias.data()))},
                         {LOWBIT_ARG_Y, 0, uint64_t(uintptr_t(y.data()))},
                         {LOWBIT_ARG_ROWS, 0, 2}};
    lowbit_op_desc op{LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d};
    REQUIRE_MESSAGE(lowbit_reference_run(&op, args, 8) == LOWBIT_OK, lowbit_last_error_message());
    for (int64_t m = 0; m < 3; ++m)
      for (int64_t n = 0; n < d.y_row_stride; ++n) {
        const uint16_t got = y[size_t(m * d.y_row_stride + n)];
        if (m == 2 || n >= d.n) {
          CHECK(got == 0x7777);  // rows beyond ROWS and the stride gap untouched
          continue;
        }
        double acc = get(bias[size_t(n)]);
        for (int64_t k = 0; k < d.k; ++k) acc += get(x[size_t(m * d.x_row_stride + k)]) * w[size_t(k * d.n + n)];
        CHECK(got == put(acc));
      }
  }
}

// Every kernel of a plan's describe JSON: no spills, no stack frame.
void check_no_spills(const std::string& js) {
  for (const char* key : {"\"spill_store_bytes\":", "\"spill_load_bytes\":", "\"stack_frame_bytes\":"}) {
    size_t pos = 0, seen = 0;
    while ((pos = js.find(key, pos)) != std::string::npos) {
      pos += std::strlen(key);
      CHECK_MESSAGE(js.compare(pos, 2, "0,") == 0, key << " in " << js);
      ++seen;
    }
    CHECK(seen >= 1);
  }
}

TEST_CASE("wq: kernels compile for sm_90a and sm_80 without spills") {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_mode = LOWBIT_CACHE_MEMORY;
  struct Case {
    lowbit_wq_format f;
    int bits;
    int64_t g;
    int64_t m;
    lowbit_dtype at;
    int sym, act;
    int64_t n, k;
  };
  const Case cases[] = {
      {LOWBIT_WQ_FORMAT_NATIVE, 4, 128, 1, LOWBIT_DTYPE_F16, 0, 0, 4096, 4096},
      {LOWBIT_WQ_FORMAT_NATIVE, 4, 32, 8, LOWBIT_DTYPE_BF16, 0, 1, 512, 14336},
      {LOWBIT_WQ_FORMAT_NATIVE, 8, -1, 4, LOWBIT_DTYPE_BF16, 1, 0, 57344, 8192},
      {LOWBIT_WQ_FORMAT_AWQ, 4, 128, 2, LOWBIT_DTYPE_F16, 0, 0, 4096, 4096},
      {LOWBIT_WQ_FORMAT_GPTQ, 4, 64, 8, LOWBIT_DTYPE_BF16, 0, 0, 4096, 4096},
      {LOWBIT_WQ_FORMAT_GPTQ_V1, 8, 128, 1, LOWBIT_DTYPE_F16, 1, 1, 4096, 4096},
      // Prefill (tensor-core GEMM): every M tile, wide and narrow N tiles,
      // split-K, both bit widths, G = 32 (two groups per chunk), act-order.
      {LOWBIT_WQ_FORMAT_NATIVE, 4, 128, 16, LOWBIT_DTYPE_F16, 0, 0, 4096, 4096},
      {LOWBIT_WQ_FORMAT_NATIVE, 4, 128, 32, LOWBIT_DTYPE_BF16, 0, 0, 28672, 8192},
      {LOWBIT_WQ_FORMAT_NATIVE, 8, 64, 64, LOWBIT_DTYPE_F16, 0, 0, 6144, 4096},
      {LOWBIT_WQ_FORMAT_NATIVE, 4, 32, 128, LOWBIT_DTYPE_BF16, 0, 1, 1024, 8192},
      {LOWBIT_WQ_FORMAT_NATIVE, 4, 128, 4096, LOWBIT_DTYPE_BF16, 1, 0, 14336, 4096},
      {LOWBIT_WQ_FORMAT_NATIVE, 8, -1, 4096, LOWBIT_DTYPE_F16, 0, 0, 8192, 8192},
      {LOWBIT_WQ_FORMAT_AWQ, 4, 128, 512, LOWBIT_DTYPE_F16, 0, 0, 4096, 4096},
      {LOWBIT_WQ_FORMAT_GPTQ, 4, 128, 100, LOWBIT_DTYPE_BF16, 1, 1, 4096, 4096},
  };
  for (const char* arch : {"sm_90a", "sm_80"}) {
    lowbit_context* ctx = nullptr;
    if (lowbit_context_create_offline(arch, &o, &ctx) != LOWBIT_OK) {
      lowbit::test::mark_skipped(std::string("offline context: ") + lowbit_last_error_message());
      return;
    }
    for (const Case& c : cases) {
      auto d = make_desc(c.f, c.bits, c.g, c.n, c.k);
      d.m = c.m;
      d.act_dtype = c.at;
      d.symmetric = c.sym;
      d.act_order = c.act;
      lowbit_plan* plan = nullptr;
      const lowbit_status st = lowbit_wq_matmul_plan_create(ctx, &d, &plan);
      if (st == LOWBIT_NO_COMPILER) {
        lowbit_context_destroy(ctx);
        lowbit::test::mark_skipped("NVRTC not available");
        return;
      }
      REQUIRE_MESSAGE(st == LOWBIT_OK, std::string(lowbit_last_error_message()));
      size_t len = 0;
      REQUIRE(lowbit_plan_describe(plan, nullptr, 0, &len) == LOWBIT_OK);
      std::string js(len + 1, '\0');
      REQUIRE(lowbit_plan_describe(plan, js.data(), js.size(), &len) == LOWBIT_OK);
      js.resize(len);
      check_no_spills(js);
      lowbit_plan_destroy(plan);
      if (c.f != LOWBIT_WQ_FORMAT_NATIVE) {
        auto r = d;
        r.op = LOWBIT_WQ_OP_REPACK;
        REQUIRE_MESSAGE(lowbit_wq_matmul_plan_create(ctx, &r, &plan) == LOWBIT_OK, lowbit_last_error_message());
        lowbit_plan_destroy(plan);
      }
    }
    lowbit_context_destroy(ctx);
  }
}

// The forced stream-K configurations of the GPU forced-tile case (on its
// first shape, M = 40, N = 200, K = 1536) give more CTAs than tiles, so at
// least one tile is split across CTAs and its partials are finished in the
// GEMM: the GPU case exercises the publish / absorb path, not only whole
// tiles. Offline plans for both targets (sm_80 falls back to mma.sync).
TEST_CASE("wq: forced stream-K plans on the GPU test's shape split tiles across CTAs") {
  const char* configs[] = {"bm=16,bn=1,streamk=1",  "bm=32,bn=2,streamk=1",      "bm=64,bn=1,streamk=1",
                           "bm=128,bn=2,streamk=1", "bm=256,bn=1,streamk=1",     "kernel=2,bm=128,streamk=1",
                           "kernel=2,bm=256,streamk=1", "kernel=2,bn=2,streamk=1"};
  for (const bool hopper : {true, false}) {
    lowbit::DeviceTraits dev;
    lowbit::Target::parse(hopper ? "sm_90a" : "sm_80", &dev.target);
    dev.sm_count = hopper ? 132 : 108;
    dev.offline = true;
    for (const char* cfg : configs) {
      setenv("LOWBIT_WQ_CONFIG", cfg, 1);
      auto d = make_desc(LOWBIT_WQ_FORMAT_NATIVE, 4, 128, 4 * 16 * 3 + 8, 1536);
      d.m = 40;
      const std::unique_ptr<lowbit::OpPlan> plan = lowbit::wq::create(&d, dev);
      std::string js = plan->describe();
      js = js.substr(js.find("\"config\":") + 9);
      INFO(cfg << (hopper ? " sm_90a: " : " sm_80: ") << js);
      CHECK(js.find("\"split_k_reduce\":\"stream-K") != std::string::npos);
      const auto ctas = lowbit::json_get_int(js, "stream_ctas");
      const auto tile_m = lowbit::json_get_int(js, "tile_m"), tile_n = lowbit::json_get_int(js, "tile_n");
      REQUIRE(ctas);
      REQUIRE(tile_m);
      REQUIRE(tile_n);
      const int64_t tiles = (d.m + *tile_m - 1) / *tile_m * ((d.n + *tile_n - 1) / *tile_n);
      CHECK(*ctas > tiles);
    }
    unsetenv("LOWBIT_WQ_CONFIG");
  }
}

// The prefill heuristics table, pinned: for each shape, the path, kernel,
// tile, stages and split-K the plan chooses on an H100-sized sm_90a and an
// A100-sized sm_80. A change to the heuristics shows up here as a diff to
// review (and the forced-config GPU test covers every tile it may pick).
TEST_CASE("wq: prefill heuristic choices for a table of shapes are stable, and each chosen kernel compiles without spills") {
  struct Row {
    int64_t m, n, k;
    const char* sm90;  // "kernel tile_m x tile_n stages splits" or "decode"
    const char* sm80;
  };
  const Row rows[] = {
#include "wq_heuristics_table.inc"
  };
  for (const bool hopper : {true, false}) {
    lowbit::DeviceTraits dev;
    lowbit::Target::parse(hopper ? "sm_90a" : "sm_80", &dev.target);
    dev.sm_count = hopper ? 132 : 108;
    dev.offline = true;
    std::set<std::string> compiled;
    for (const Row& r : rows) {
      auto d = make_desc(LOWBIT_WQ_FORMAT_NATIVE, 4, r.k % 128 == 0 ? 128 : -1, r.n, r.k);
      d.m = r.m;
      d.act_dtype = LOWBIT_DTYPE_BF16;
      d.scale_dtype = LOWBIT_DTYPE_BF16;
      const std::unique_ptr<lowbit::OpPlan> plan = lowbit::wq::create(&d, dev);
      std::string js = plan->describe();
      js = js.substr(js.find("\"config\":") + 9);  // the chosen configuration
      std::string got = "decode";
      using lowbit::json_get_int;
      if (json_get_int(js, "tile_m")) {
        const bool wg = js.find("wgmma m64") != std::string::npos;
        got = std::string(wg ? "wgmma " : "mma ") + std::to_string(*json_get_int(js, "tile_m")) + "x" +
              std::to_string(*json_get_int(js, "tile_n")) + " st" + std::to_string(*json_get_int(js, "stages")) +
              " s" + std::to_string(*json_get_int(js, "split_k")) +
              (js.find("\"split_k_reduce\":\"cluster") != std::string::npos  ? "c"
               : js.find("\"split_k_reduce\":\"stream-K") != std::string::npos ? "k"
                                                                                 : "");
      }
      INFO("M=" << r.m << " N=" << r.n << " K=" << r.k << (hopper ? " sm_90a" : " sm_80"));
      CHECK(got == std::string(hopper ? r.sm90 : r.sm80));
      // Each distinct kernel the table chooses (tile and stages; split-K
      // only adds the reduce kernel) compiles with NVRTC without spills.
      const std::string kernel = got.substr(0, got.rfind(" s"));
      if (got == "decode" || !compiled.insert(kernel).second) continue;
      // The plan's own specs, compiled for its target as a context would.
      for (const lowbit::KernelSpec& spec : plan->kernels()) {
        INFO("kernel " << spec.name());
        bool ptx_only = false;
        const std::vector<std::string> options = lowbit::compile_options(spec, dev.target, &ptx_only);
        try {
          const lowbit::CompileOutput out =
              lowbit::compile_with_nvrtc(lowbit::render_source(spec), spec.name(), options, ptx_only);
          CHECK_MESSAGE(!out.report.spills(), out.log);
          CHECK(out.report.registers > 0);
        } catch (const lowbit::Error& e) {
          if (e.status() != LOWBIT_NO_COMPILER) throw;
          lowbit::test::mark_skipped("NVRTC not available: the chosen kernels were not compiled");
          return;
        }
      }
    }
  }
}
