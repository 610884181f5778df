// GPU tests of the weight-only matmul family: every format (AWQ, GPTQ v2 and
// v1, 4- and 8-bit, native repacked from each source) x dtype x group size x
// M = 1..8, on odd shard shapes (N not a multiple of 16, K not a multiple of
// 64), symmetric and asymmetric, act-order with a random permutation, split-K,
// M > 8, strides, ROWS; outputs poisoned and guarded. The GPU repack is
// compared bit for bit with the CPU repack; the matmul with an f64 oracle
// computed here from the logical weights (independent of src/ref), with the
// error bound below.
//
// Error bound, per output y = sum_k x_k w_k (+ b), S = sum_k |x_k w_k|:
//  - the kernel forms the products of exact (q - z) and x exactly (11 x 11
//    or 8 x 8 significant bits fit f32) and accumulates in f32: inside an MMA
//    (whose adds may truncate rather than round: 2 u per add), along a
//    warp's k-steps, through the per-group scale multiply, the cross-warp
//    and split-K sums. Every partial sum is bounded by S; a chain of L adds
//    errs by at most L * 2u * S with u = 2^-24. L <= K/16 + 64 (one add per
//    16-deep MMA plus the scale, warp, split and bias adds), so
//    acc_err = (K/16 + 64) * 2^-23 * S. (Typical errors are ~sqrt(L) u S,
//    far below this.)
//  - GPTQ act-order read directly rounds each w to the activation type
//    first: at most half an ulp, 2^-p relative (p = 11 for f16, 8 for bf16):
//    + 2^-p * S.
//  - the prefill path (plans of m >= 9) rounds every w to the activation
//    type by contract (lowbit.h); the oracle rounds its weights the same way
//    (one rounding of the exact product), so this costs nothing in the bound.
//  - the final rounding to the activation type: 2^-p * (|y| + errors), plus
//    half the smallest f16 subnormal (2^-25) for tiny results.
// The reference y is computed in f64 from exactly dequantized weights (error
// ~K * 2^-53 * S: negligible).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/lowbit.h"
#include "ref/float16.hpp"
#include "support/device.hpp"
#include "support/test_support.hpp"
#include "unit/wq_pack.hpp"

#include <cstdint>
#include "wq_layout.h"

namespace {

using lowbit::test::DeviceBuffer;
using namespace lowbit::test::wq;

constexpr uint8_t kPoison = 0xA5;
constexpr size_t kGuard = 256;

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
  Plan(lowbit_context* ctx, const lowbit_wq_matmul_desc& d) {
    REQUIRE_MESSAGE(lowbit_wq_matmul_plan_create(ctx, &d, &plan) == LOWBIT_OK, lowbit_last_error_message());
  }
  ~Plan() { lowbit_plan_destroy(plan); }
  size_t workspace() const {
    size_t b = 0;
    REQUIRE(lowbit_plan_workspace_size(plan, &b) == LOWBIT_OK);
    return b;
  }
};

struct Case {
  lowbit_wq_format format = LOWBIT_WQ_FORMAT_NATIVE;
  lowbit_wq_format source = LOWBIT_WQ_FORMAT_AWQ;  // native: repacked from this
  int bits = 4;
  int64_t group = 128;
  int64_t n = 0, k = 0, m = 1;
  int64_t rows = 0;  // run-time rows (0 = m)
  lowbit_dtype at = LOWBIT_DTYPE_F16, st = LOWBIT_DTYPE_F16;
  int sym = 0, act = 0, bias = 0;
  int64_t xs = 0, ys = 0;
  // Run twice on the same (first poisoned) workspace: the second run must
  // give the same bits (stream-K leaves its flags cleared; no run depends on
  // what the one before it left).
  bool rerun = false;

  lowbit_wq_matmul_desc matmul() const {
    lowbit_wq_matmul_desc d;
    lowbit_wq_matmul_desc_init(&d);
    d.format = format;
    d.weight_bits = bits;
    d.group_size = group;
    d.n = n;
    d.k = k;
    d.m = m;
    d.act_dtype = at;
    d.scale_dtype = st;
    d.symmetric = sym;
    d.act_order = act;
    d.has_bias = bias;
    d.x_row_stride = xs;
    d.y_row_stride = ys;
    return d;
  }
  lowbit_wq_matmul_desc repack() const {
    lowbit_wq_matmul_desc d = matmul();
    d.op = LOWBIT_WQ_OP_REPACK;
    d.format = source;
    return d;
  }
  std::string label() const {
    static const char* names[] = {"?", "awq", "gptq", "gptq_v1", "native", "plain"};
    std::string s = std::string(names[format]);
    if (format == LOWBIT_WQ_FORMAT_NATIVE) s += std::string("<-") + names[source];
    s += " w" + std::to_string(bits) + " g" + std::to_string(group) + " " + lowbit_dtype_name(at) + "/" +
         lowbit_dtype_name(st) + " M" + std::to_string(m) + (rows ? " rows" + std::to_string(rows) : "") + " N" +
         std::to_string(n) + " K" + std::to_string(k) + (sym ? " sym" : "") + (act ? " act" : "") +
         (bias ? " bias" : "") + (xs ? " xs" + std::to_string(xs) : "") + (ys ? " ys" + std::to_string(ys) : "");
    return s;
  }
};

uint16_t to_act(lowbit_dtype t, double v) {
  return t == LOWBIT_DTYPE_BF16 ? lowbit::ref::f32_to_bf16(float(v)) : lowbit::ref::f32_to_f16(float(v));
}
double from_act(lowbit_dtype t, uint16_t h) {
  return t == LOWBIT_DTYPE_BF16 ? lowbit::ref::bf16_to_f32(h) : lowbit::ref::f16_to_f32(h);
}

// Creates (and compiles) every plan of `cases` on all CPUs first.
void prewarm(lowbit_context* ctx, const std::vector<Case>& cases) {
  std::vector<lowbit_wq_matmul_desc> descs;
  for (const Case& c : cases) {
    descs.push_back(c.matmul());
    if (c.format == LOWBIT_WQ_FORMAT_NATIVE) descs.push_back(c.repack());
  }
  std::vector<lowbit_op_desc> ops;
  for (const auto& d : descs) ops.push_back({LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d});
  REQUIRE_MESSAGE(lowbit_prewarm(ctx, ops.data(), ops.size(), 0, nullptr) == LOWBIT_OK, lowbit_last_error_message());
}

struct Stats {
  int cases = 0;
  double worst_ratio = 0;  // max |err| / bound
  std::string worst;
};

// Repacks on the GPU and checks the buffer against the CPU repack, section by
// section (the gaps between sections are not written).
void gpu_repack(lowbit_context* ctx, const Case& c, const Packed& p, DeviceBuffer& native) {
  const lowbit_wq_matmul_desc rd = c.repack();
  uint64_t bytes = 0;
  REQUIRE(lowbit_wq_native_bytes(&rd, &bytes) == LOWBIT_OK);
  REQUIRE(native.bytes() >= bytes);
  DeviceBuffer w(p.w.size()), s(p.scale.size()), z(std::max<size_t>(p.zero.size(), 4)), gi(p.g_idx.size());
  w.upload(p.w.data(), p.w.size());
  s.upload(p.scale.data(), p.scale.size());
  z.upload(p.zero.data(), p.zero.size());
  gi.upload(p.g_idx.data(), p.g_idx.size());
  native.fill(kPoison);
  Plan plan(ctx, rd);
  lowbit_arg args[] = {{LOWBIT_ARG_W, 0, w.ptr()},
                       {LOWBIT_ARG_W_SCALE, 0, s.ptr()},
                       {LOWBIT_ARG_W_ZERO, 0, z.ptr()},
                       {LOWBIT_ARG_G_IDX, 0, gi.ptr()},
                       {LOWBIT_ARG_W_NATIVE, 0, native.ptr()}};
  REQUIRE_MESSAGE(lowbit_plan_run(plan.plan, args, 5, 0, 0, nullptr) == LOWBIT_OK, lowbit_last_error_message());
  lowbit::test::synchronize();
  const std::vector<uint8_t> got = native.to_host();
  std::vector<uint8_t> want(size_t(bytes), 0);
  lowbit_arg hargs[] = {{LOWBIT_ARG_W, 0, uint64_t(uintptr_t(p.w.data()))},
                        {LOWBIT_ARG_W_SCALE, 0, uint64_t(uintptr_t(p.scale.data()))},
                        {LOWBIT_ARG_W_ZERO, 0, uint64_t(uintptr_t(p.zero.data()))},
                        {LOWBIT_ARG_G_IDX, 0, uint64_t(uintptr_t(p.g_idx.data()))},
                        {LOWBIT_ARG_W_NATIVE, 0, uint64_t(uintptr_t(want.data()))}};
  lowbit_op_desc op{LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &rd};
  REQUIRE_MESSAGE(lowbit_reference_run(&op, hargs, 5) == LOWBIT_OK, lowbit_last_error_message());
  const lowbit::WqNativeLayout l =
      lowbit::wq_native_layout(c.n, c.k, c.bits, c.group, c.sym != 0, c.act != 0, 2);
  const int64_t ranges[4][2] = {{0, l.weight_bytes},
                                {l.scale_offset, l.scale_offset + l.scale_bytes},
                                {l.zero_offset, l.zero_offset + l.zero_bytes},
                                {l.perm_offset, l.perm_offset + l.perm_bytes}};
  size_t bad = 0;
  int64_t first = -1;
  for (const auto& r : ranges)
    for (int64_t i = r[0]; i < r[1]; ++i)
      if (got[size_t(i)] != want[size_t(i)]) {
        if (first < 0) first = i;
        ++bad;
      }
  INFO("repack " << c.label() << ": " << bad << " bytes differ, first at " << first);
  CHECK(bad == 0);
}

void run_case(lowbit_context* ctx, const Case& c, Stats* stats) {
  auto& rng = lowbit::test::rng();
  const lowbit_wq_matmul_desc d = c.matmul();
  INFO(c.label());
  const bool native = c.format == LOWBIT_WQ_FORMAT_NATIVE;
  const lowbit_wq_format src = native ? c.source : c.format;
  lowbit_wq_matmul_desc ld = d;
  ld.format = src;
  const Logical l = random_logical(ld, rng, c.act != 0);
  const Packed p = pack(l, src);
  std::vector<double> w = logical_weights(l, c.st);  // input-row order
  const char* forced = std::getenv("LOWBIT_WQ_CONFIG");
  const bool gemm = forced != nullptr && std::strstr(forced, "path=1") ? false : c.m >= 9;
  if (gemm)
    for (double& v : w) v = from_act(c.at, to_act(c.at, v));

  const int64_t rows = c.rows ? c.rows : c.m;
  const int64_t xs = c.xs ? c.xs : c.k, ys = c.ys ? c.ys : c.n;
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<uint16_t> x(size_t(c.m * xs)), bias(size_t(c.n));
  for (auto& v : x) v = to_act(c.at, nd(rng));
  for (auto& v : bias) v = to_act(c.at, nd(rng));

  DeviceBuffer dx(x.size() * 2), dy(size_t(c.m * ys) * 2 + kGuard), db(bias.size() * 2);
  dx.upload(x.data(), x.size() * 2);
  db.upload(bias.data(), bias.size() * 2);
  dy.fill(kPoison);
  std::unique_ptr<DeviceBuffer> dw, ds, dz, dg, dn;
  if (native) {
    uint64_t bytes = 0;
    const lowbit_wq_matmul_desc rd = c.repack();
    REQUIRE(lowbit_wq_native_bytes(&rd, &bytes) == LOWBIT_OK);
    dn = std::make_unique<DeviceBuffer>(size_t(bytes));
    gpu_repack(ctx, c, p, *dn);
  } else {
    dw = std::make_unique<DeviceBuffer>(p.w.size());
    ds = std::make_unique<DeviceBuffer>(p.scale.size());
    dz = std::make_unique<DeviceBuffer>(std::max<size_t>(p.zero.size(), 4));
    dg = std::make_unique<DeviceBuffer>(p.g_idx.size());
    dw->upload(p.w.data(), p.w.size());
    ds->upload(p.scale.data(), p.scale.size());
    dz->upload(p.zero.data(), p.zero.size());
    dg->upload(p.g_idx.data(), p.g_idx.size());
  }
  Plan plan(ctx, d);
  const size_t ws_bytes = plan.workspace();
  DeviceBuffer ws(std::max<size_t>(ws_bytes, 16));
  ws.fill(kPoison);
  std::vector<lowbit_arg> args = {{LOWBIT_ARG_X, 0, dx.ptr()}, {LOWBIT_ARG_Y, 0, dy.ptr()}};
  if (c.bias) args.push_back({LOWBIT_ARG_BIAS, 0, db.ptr()});
  if (c.rows) args.push_back({LOWBIT_ARG_ROWS, 0, uint64_t(c.rows)});
  if (native) {
    args.push_back({LOWBIT_ARG_W_NATIVE, 0, dn->ptr()});
  } else {
    args.push_back({LOWBIT_ARG_W, 0, dw->ptr()});
    args.push_back({LOWBIT_ARG_W_SCALE, 0, ds->ptr()});
    if (!c.sym) args.push_back({LOWBIT_ARG_W_ZERO, 0, dz->ptr()});
    if (c.act) args.push_back({LOWBIT_ARG_G_IDX, 0, dg->ptr()});
  }
  REQUIRE_MESSAGE(lowbit_plan_run(plan.plan, args.data(), args.size(), ws_bytes ? ws.ptr() : 0, ws_bytes, nullptr) ==
                      LOWBIT_OK,
                  lowbit_last_error_message());
  lowbit::test::synchronize();
  std::vector<uint8_t> got_bytes = dy.to_host();
  if (c.rerun) {
    dy.fill(kPoison);
    REQUIRE_MESSAGE(lowbit_plan_run(plan.plan, args.data(), args.size(), ws_bytes ? ws.ptr() : 0, ws_bytes, nullptr) ==
                        LOWBIT_OK,
                    lowbit_last_error_message());
    lowbit::test::synchronize();
    CHECK_MESSAGE(dy.to_host() == got_bytes, "a second run on the same workspace gave different bits");
  }

  // The f64 oracle and the bound.
  const int p_bits = c.at == LOWBIT_DTYPE_BF16 ? 8 : 11;
  const double u_out = std::ldexp(1.0, -p_bits);
  const bool rounded_weights = c.act && !native && !gemm;
  size_t bad = 0, checked = 0;
  std::string first_bad;
  std::vector<double> xr(size_t(c.k));
  for (int64_t m = 0; m < c.m; ++m) {
    for (int64_t k = 0; k < c.k; ++k) xr[size_t(k)] = from_act(c.at, x[size_t(m * xs + k)]);
    for (int64_t n = 0; n < ys; ++n) {
      uint16_t got;
      std::memcpy(&got, &got_bytes[size_t(m * ys + n) * 2], 2);
      if (m >= rows || n >= c.n) {
        if (got != uint16_t(kPoison | kPoison << 8)) {
          ++bad;
          if (first_bad.empty()) first_bad = "wrote outside the output at m=" + std::to_string(m) + " n=" + std::to_string(n);
        }
        continue;
      }
      double y = 0, S = 0;
      for (int64_t k = 0; k < c.k; ++k) {
        const double t = xr[size_t(k)] * w[size_t(k * c.n + n)];
        y += t;
        S += std::fabs(t);
      }
      if (c.bias) {
        const double b = from_act(c.at, bias[size_t(n)]);
        y += b;
        S += std::fabs(b);
      }
      const double acc_err = (double(c.k) / 16.0 + 64.0) * std::ldexp(1.0, -23) * S;
      const double w_err = rounded_weights ? u_out * S : 0.0;
      const double bound = acc_err + w_err + u_out * (std::fabs(y) + acc_err + w_err) + std::ldexp(1.0, -25);
      const double g = from_act(c.at, got);
      const double err = std::fabs(g - y);
      ++checked;
      const double ratio = std::isfinite(err) ? err / bound : 1e30;
      if (ratio > stats->worst_ratio) {
        stats->worst_ratio = ratio;
        stats->worst = c.label();
      }
      if (!(err <= bound)) {
        ++bad;
        if (first_bad.empty())
          first_bad = "m=" + std::to_string(m) + " n=" + std::to_string(n) + " got " + std::to_string(g) + " want " +
                      std::to_string(y) + " bound " + std::to_string(bound);
      }
    }
  }
  for (size_t i = size_t(c.m * ys) * 2; i < got_bytes.size(); ++i)
    if (got_bytes[i] != kPoison) {
      ++bad;
      if (first_bad.empty()) first_bad = "guard bytes after the output were written";
      break;
    }
  // lowbit_reference_run agrees with the oracle within its own rounding.
  if (checked > 0 && c.k * c.n * rows <= (int64_t(1) << 26)) {
    std::vector<uint16_t> ref(size_t(c.m * ys), 0x7777);
    std::vector<lowbit_arg> hargs = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x.data()))},
                                     {LOWBIT_ARG_Y, 0, uint64_t(uintptr_t(ref.data()))},
                                     {LOWBIT_ARG_BIAS, 0, uint64_t(uintptr_t(bias.data()))}};
    if (c.rows) hargs.push_back({LOWBIT_ARG_ROWS, 0, uint64_t(c.rows)});
    std::vector<uint8_t> native_host;
    if (native) {
      native_host = dn->to_host();
      hargs.push_back({LOWBIT_ARG_W_NATIVE, 0, uint64_t(uintptr_t(native_host.data()))});
    } else {
      hargs.push_back({LOWBIT_ARG_W, 0, uint64_t(uintptr_t(p.w.data()))});
      hargs.push_back({LOWBIT_ARG_W_SCALE, 0, uint64_t(uintptr_t(p.scale.data()))});
      hargs.push_back({LOWBIT_ARG_W_ZERO, 0, uint64_t(uintptr_t(p.zero.data()))});
      hargs.push_back({LOWBIT_ARG_G_IDX, 0, uint64_t(uintptr_t(p.g_idx.data()))});
    }
    lowbit_op_desc op{LOWBIT_FAMILY_WEIGHT_MATMUL, 0, &d};
    REQUIRE_MESSAGE(lowbit_reference_run(&op, hargs.data(), hargs.size()) == LOWBIT_OK, lowbit_last_error_message());
    size_t ref_bad = 0;
    for (int64_t m = 0; m < rows; ++m)
      for (int64_t n = 0; n < c.n; ++n) {
        double y = 0;
        for (int64_t k = 0; k < c.k; ++k) y += from_act(c.at, x[size_t(m * xs + k)]) * w[size_t(k * c.n + n)];
        if (c.bias) y += from_act(c.at, bias[size_t(n)]);
        const double r = from_act(c.at, ref[size_t(m * ys + n)]);
        if (std::fabs(r - y) > u_out * std::fabs(y) * 1.0001 + std::ldexp(1.0, -24)) ++ref_bad;
      }
    CHECK_MESSAGE(ref_bad == 0, "lowbit_reference_run disagrees with the f64 oracle");
  }
  ++stats->cases;
  CHECK_MESSAGE(bad == 0, bad << " bad outputs of " << checked << "; first: " << first_bad);
}

// Appends a case (the other fields keep their defaults) and returns it.
Case& add_case(std::vector<Case>& cases, lowbit_wq_format f, lowbit_wq_format src, int bits, int64_t g, int64_t n,
               int64_t k, int64_t m, lowbit_dtype at, lowbit_dtype st) {
  Case c;
  c.format = f;
  c.source = src;
  c.bits = bits;
  c.group = g;
  c.n = n;
  c.k = k;
  c.m = m;
  c.at = at;
  c.st = st;
  cases.push_back(c);
  return cases.back();
}

void run_all(const std::vector<Case>& cases, const char* title) {
  Context ctx;
  prewarm(ctx.ctx, cases);
  Stats stats;
  for (const Case& c : cases) run_case(ctx.ctx, c, &stats);
  MESSAGE(title << ": " << stats.cases << " cases, worst |err|/bound = " << stats.worst_ratio << " (" << stats.worst
                << ")");
}

}  // namespace

TEST_CASE("gpu: wq matmul, every format x dtype x group size x M = 1..8 on odd shard shapes") {
  LOWBIT_REQUIRE_GPU();
  struct Fmt {
    lowbit_wq_format f;
    int bits;
    lowbit_wq_format sources[5];  // native: the repack source per group size
  };
  const Fmt fmts[] = {
      {LOWBIT_WQ_FORMAT_AWQ, 4, {}},
      {LOWBIT_WQ_FORMAT_GPTQ, 4, {}},
      {LOWBIT_WQ_FORMAT_GPTQ_V1, 4, {}},
      {LOWBIT_WQ_FORMAT_GPTQ, 8, {}},
      {LOWBIT_WQ_FORMAT_GPTQ_V1, 8, {}},
      {LOWBIT_WQ_FORMAT_NATIVE, 4,
       {LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_PLAIN, LOWBIT_WQ_FORMAT_GPTQ,
        LOWBIT_WQ_FORMAT_AWQ}},
      {LOWBIT_WQ_FORMAT_NATIVE, 8,
       {LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_PLAIN, LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_PLAIN,
        LOWBIT_WQ_FORMAT_GPTQ}},
  };
  const int64_t groups[] = {32, 64, 128, 256, -1};
  // K per group size: tensor-parallel shard sizes (7392 = 231 x 32, 11008 =
  // 172 x 64) and K not a multiple of 64 (1152 = 18 x 64 + 0, 1280, 920).
  const int64_t ks[] = {7392, 11008 / 4, 1152 + 128, 1280, 920};
  std::vector<Case> cases;
  for (const Fmt& f : fmts)
    for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
      for (int gi = 0; gi < 5; ++gi)
        for (int64_t m = 1; m <= 8; ++m) {
          Case c;
          c.format = f.f;
          c.bits = f.bits;
          c.source = f.f == LOWBIT_WQ_FORMAT_NATIVE ? f.sources[gi] : f.f;
          c.group = groups[gi];
          c.n = 200;  // not a multiple of 16, 32 or 64
          c.k = ks[gi];
          c.m = m;
          c.at = at;
          c.st = gi % 2 ? LOWBIT_DTYPE_BF16 : LOWBIT_DTYPE_F16;
          c.sym = gi == 2;
          c.bias = int(m % 2);
          cases.push_back(c);
        }
  run_all(cases, "formats x dtypes x groups x M");
}

TEST_CASE("gpu: wq act-order (random g_idx permutation), direct GPTQ and native with permuted K") {
  LOWBIT_REQUIRE_GPU();
  std::vector<Case> cases;
  for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
    for (int64_t g : {32, 128})
      for (int bits : {4, 8})
        for (int64_t m : {1, 3, 8}) {
          Case c;
          c.bits = bits;
          c.group = g;
          c.n = 136;
          c.k = 1024 + 2 * g;
          c.m = m;
          c.at = at;
          c.act = 1;
          c.bias = m == 3;
          c.format = bits == 4 ? LOWBIT_WQ_FORMAT_GPTQ_V1 : LOWBIT_WQ_FORMAT_GPTQ;
          c.source = c.format;
          cases.push_back(c);  // read directly
          c.format = LOWBIT_WQ_FORMAT_NATIVE;
          cases.push_back(c);  // repacked
          c.sym = 1;
          c.source = LOWBIT_WQ_FORMAT_GPTQ;
          cases.push_back(c);
        }
  run_all(cases, "act-order");
}

TEST_CASE("gpu: wq split-K, M > 8, ROWS, strides and Llama shapes") {
  LOWBIT_REQUIRE_GPU();
  std::vector<Case> cases;
  auto add = [&](lowbit_wq_format f, lowbit_wq_format src, int bits, int64_t g, int64_t n, int64_t k, int64_t m,
                 lowbit_dtype at) -> Case& { return add_case(cases, f, src, bits, g, n, k, m, at, LOWBIT_DTYPE_F16); };
  for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16}) {
    // Small N, large K: split-K with the reduce kernel (14336 / 8 x 4096 shards).
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 512, 14336, 1, at).bias = 1;
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ, 8, 64, 256, 4096, 8, at);
    add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 512, 14336 / 2, 4, at).bias = 1;
    add(LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ, 4, 128, 1792, 4096, 2, at);
    // M > 8: tiles of 8 in grid z; ROWS below m.
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ_V1, 4, 64, 264, 1024, 19, at).bias = 1;
    add(LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_GPTQ_V1, 4, 32, 264, 1024, 11, at).rows = 9;
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 200, 1024, 8, at).rows = 3;
    add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 200, 1024, 8, at).rows = 5;
    // Strided rows of X and Y (gaps stay untouched).
    Case& s1 = add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_PLAIN, 4, 32, 96, 352, 5, at);
    s1.xs = 352 + 40;
    s1.ys = 96 + 13;
    Case& s2 = add(LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ, 8, 128, 96, 512, 3, at);
    s2.xs = 1024;
    s2.ys = 100;
    // Full Llama-3-8B projections at M = 1 and 8.
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 4096, 4096, 1, at);
    add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 6144, 4096, 8, at);
    add(LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ, 4, 128, 4096, 4096, 1, at);
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ, 4, 128, 4096, 14336, 8, at);
  }
  run_all(cases, "split-K / M > 8 / rows / strides / Llama");
}

TEST_CASE("gpu: wq every kernel configuration the plan may choose (forced through LOWBIT_WQ_CONFIG)") {
  LOWBIT_REQUIRE_GPU();
  // The heuristic picks n-blocks per CTA, steps per unit, ring depth, warps
  // and split-K from the shape; force each variant on odd shapes so that a
  // tuning change can never select an untested kernel.
  const char* configs[] = {"nb=1,unit=1,stages=4", "nb=2,unit=2,stages=2", "nb=4,unit=1,stages=2",
                           "nb=2,unit=2,stages=2,splits=3", "nb=2,unit=1,stages=4,warps=4",
                           "nb=1,unit=4,stages=2,warps=16", "nb=2,unit=4,stages=2,splits=2",
                           "nb=2,unit=2,stages=2,warps=16,splits=1"};
  std::vector<Case> cases;
  for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
    for (int64_t m : {1, 8}) {
      auto add = [&](lowbit_wq_format f, lowbit_wq_format src, int bits, int64_t g, int64_t n, int64_t k) {
        add_case(cases, f, src, bits, g, n, k, m, at, at).bias = m == 8;
      };
      add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 4 * 16 * 3, 2048);
      add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ, 8, 64, 2 * 16 * 5, 1536);
      add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_PLAIN, 4, 32, 16 * 7, 1376);
      add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ_V1, 4, -1, 200, 1000);
      add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 328, 2048);
      add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 32, 456, 1344);
      add(LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ, 4, 128, 328, 2048);
      add(LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_GPTQ_V1, 8, 64, 296, 1472);
      add(LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ, 4, -1, 200, 1000);
    }
  for (const char* cfg : configs) {
    setenv("LOWBIT_WQ_CONFIG", cfg, 1);
    run_all(cases, cfg);
  }
  unsetenv("LOWBIT_WQ_CONFIG");
}

// ---- Prefill path (tensor-core GEMM, plans of m >= 9) ----------------------

TEST_CASE("gpu: wq prefill GEMM, every format x dtype x group size at M = 16, 17, 64, 100, 512, 1000") {
  LOWBIT_REQUIRE_GPU();
  struct Fmt {
    lowbit_wq_format f;
    int bits;
    lowbit_wq_format sources[5];
  };
  const Fmt fmts[] = {
      {LOWBIT_WQ_FORMAT_AWQ, 4, {}},
      {LOWBIT_WQ_FORMAT_GPTQ, 4, {}},
      {LOWBIT_WQ_FORMAT_GPTQ_V1, 4, {}},
      {LOWBIT_WQ_FORMAT_GPTQ, 8, {}},
      {LOWBIT_WQ_FORMAT_GPTQ_V1, 8, {}},
      {LOWBIT_WQ_FORMAT_NATIVE, 4,
       {LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_PLAIN, LOWBIT_WQ_FORMAT_GPTQ_V1,
        LOWBIT_WQ_FORMAT_AWQ}},
      {LOWBIT_WQ_FORMAT_NATIVE, 8,
       {LOWBIT_WQ_FORMAT_PLAIN, LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_PLAIN,
        LOWBIT_WQ_FORMAT_GPTQ}},
  };
  const int64_t groups[] = {32, 64, 128, 256, -1};
  // Shard-like K (7392 = 231 x 32, 2752 = 43 x 64), K % 64 != 0 (1376, 920);
  // smaller K at M >= 512 keeps the f64 oracle quick.
  const int64_t ks_small[] = {7392, 2752, 1280, 1280, 920};
  const int64_t ks_big[] = {1376, 2752, 1280, 1280, 920};
  std::vector<Case> cases;
  for (const Fmt& f : fmts)
    for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
      for (int gi = 0; gi < 5; ++gi)
        for (int64_t m : {16, 17, 64, 100, 512, 1000}) {
          Case c;
          c.format = f.f;
          c.bits = f.bits;
          c.source = f.f == LOWBIT_WQ_FORMAT_NATIVE ? f.sources[gi] : f.f;
          c.group = groups[gi];
          c.n = m >= 512 ? 136 : 200;  // n-tiles beyond N, CTA tiles beyond N
          c.k = m >= 512 ? ks_big[gi] : ks_small[gi];
          c.m = m;
          c.at = at;
          c.st = (gi + int(m)) % 2 ? LOWBIT_DTYPE_BF16 : LOWBIT_DTYPE_F16;
          c.sym = gi == 2;
          c.bias = int(m % 2) || m == 64;
          cases.push_back(c);
        }
  run_all(cases, "prefill formats x dtypes x groups x M");
}

TEST_CASE("gpu: wq prefill act-order, split-K, large K, ROWS, strides and Llama shapes") {
  LOWBIT_REQUIRE_GPU();
  std::vector<Case> cases;
  auto add = [&](lowbit_wq_format f, lowbit_wq_format src, int bits, int64_t g, int64_t n, int64_t k, int64_t m,
                 lowbit_dtype at) -> Case& { return add_case(cases, f, src, bits, g, n, k, m, at, at); };
  for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16}) {
    // Act-order: GPTQ repacked by the plan into its workspace, and native.
    for (int bits : {4, 8})
      for (int64_t g : {32, 128}) {
        add(LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_GPTQ_V1, bits, g, 136, 1024 + 2 * g, 16, at).act = 1;
        Case& c = add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ, bits, g, 136, 1024 + 2 * g, 100, at);
        c.act = 1;
        c.bias = 1;
      }
    // Large K (f32 accumulation over 28672 against the f64 oracle), split-K.
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 64, 28672, 16, at);
    add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 128, 28672, 33, at).bias = 1;
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ, 8, -1, 520, 14336, 24, at);
    // ROWS below the plan's m, strided X and Y (unaligned Y rows: scalar stores).
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 200, 1024, 64, at).rows = 37;
    add(LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ, 4, 64, 264, 1024, 512, at).rows = 9;
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ_V1, 4, 128, 136, 512, 300, at).rows = 1;
    Case& s1 = add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_PLAIN, 4, 32, 96, 352, 21, at);
    s1.xs = 352 + 40;
    s1.ys = 96 + 13;
    s1.bias = 1;
    Case& s2 = add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 264, 512, 130, at);
    s2.xs = 1024;
    s2.ys = 264 + 8;
    // Llama-3-8B projections.
    add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 4096, 4096, 16, at);
    add(LOWBIT_WQ_FORMAT_AWQ, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 6144, 4096, 17, at);
    add(LOWBIT_WQ_FORMAT_GPTQ, LOWBIT_WQ_FORMAT_GPTQ, 4, 128, 1024, 14336, 40, at);
  }
  run_all(cases, "prefill act-order / split-K / large K / rows / strides / Llama");
}

TEST_CASE("gpu: wq prefill every GEMM tile the plan may choose (forced through LOWBIT_WQ_CONFIG)") {
  LOWBIT_REQUIRE_GPU();
  const char* configs[] = {"bm=16,bn=1",          "bm=16,bn=2,splits=3", "bm=32,bn=1,stages=3", "bm=32,bn=2",
                           "bm=64,bn=1,splits=2", "bm=64,bn=2,stages=8", "bm=128,bn=1",         "bm=128,bn=2,stages=3",
                           "bm=256,bn=1",         "bm=256,bn=2,splits=2",
                           // sm_90a: the warpgroup kernel (ignored elsewhere: the plan falls back to mma.sync)
                           "kernel=2,bm=128", "kernel=2,bm=256", "kernel=2,bn=2,stages=3", "kernel=2,splits=2",
                           "kernel=1,bm=128",
                           // split-K: on sm_90 the splits of a tile add up inside a cluster (up to 8, any
                           // count); nocluster=1 keeps the workspace and reduce kernel there as on sm_80
                           "bm=16,bn=2,splits=8", "bm=32,bn=1,splits=5", "kernel=2,bm=256,splits=3",
                           "kernel=2,bm=128,bn=2,splits=4", "bm=64,bn=1,splits=2,nocluster=1",
                           "kernel=2,splits=2,nocluster=1", "bm=16,bn=1,splits=12",
                           // stream-K (any arch): one grid of equal chunk shares, partial tiles finished in
                           // the GEMM; streamk=2 forbids it
                           "bm=16,bn=1,streamk=1", "bm=32,bn=2,streamk=1", "bm=64,bn=1,streamk=1",
                           "bm=128,bn=2,streamk=1", "bm=256,bn=1,streamk=1", "kernel=2,bm=128,streamk=1",
                           "kernel=2,bm=256,streamk=1", "kernel=2,bn=2,streamk=1", "streamk=2"};
  std::vector<Case> cases;
  for (lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
    for (int64_t m : {40, 300}) {
      auto add = [&](lowbit_wq_format f, lowbit_wq_format src, int bits, int64_t g, int64_t n, int64_t k) {
        Case& c = add_case(cases, f, src, bits, g, n, k, m, at, at);
        c.bias = m == 40;
        c.rerun = true;
      };
      add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_AWQ, 4, 128, 4 * 16 * 3 + 8, 1536);
      add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_GPTQ, 8, 64, 2 * 16 * 5, 1088);
      add(LOWBIT_WQ_FORMAT_NATIVE, LOWBIT_WQ_FORMAT_PLAIN, 4, 32, 16 * 7, 1376);
      add(LOWBIT_WQ_FORMAT_GPTQ_V1, LOWBIT_WQ_FORMAT_GPTQ_V1, 4, -1, 200, 1000);
    }
  // The reduction each split configuration takes, from its plan's description
  // (first case): in clusters on sm_90 for 2..8 splits unless nocluster=1,
  // else the workspace and the reduce kernel.
  Context info_ctx;
  lowbit_device_info info{};
  info.struct_size = sizeof(info);
  REQUIRE(lowbit_context_get_info(info_ctx.ctx, &info) == LOWBIT_OK);
  // LOWBIT_TEST_WQ_CONFIGS=text keeps the configurations containing it (a
  // sanitizer run of a few; the skipped ones are reported).
  const char* only = std::getenv("LOWBIT_TEST_WQ_CONFIGS");
  for (const char* cfg : configs) {
    if (only != nullptr && std::strstr(cfg, only) == nullptr) {
      MESSAGE("skipped (LOWBIT_TEST_WQ_CONFIGS=" << only << "): " << cfg);
      continue;
    }
    setenv("LOWBIT_WQ_CONFIG", cfg, 1);
    if (std::strstr(cfg, "streamk=") != nullptr || std::strstr(cfg, "splits=") != nullptr) {
      Plan plan(info_ctx.ctx, cases[0].matmul());
      size_t length = 0;
      REQUIRE(lowbit_plan_describe(plan.plan, nullptr, 0, &length) == LOWBIT_OK);
      std::string text(length + 1, '\0');
      REQUIRE(lowbit_plan_describe(plan.plan, text.data(), text.size(), nullptr) == LOWBIT_OK);
      INFO(cfg << ": " << text);
      if (std::strstr(cfg, "streamk=") != nullptr) {
        const bool stream = std::strstr(cfg, "streamk=1") != nullptr;
        CHECK((text.find("\"split_k_reduce\":\"stream-K") != std::string::npos) == stream);
      } else {
        const size_t at = text.find("\"split_k\":");
        REQUIRE(at != std::string::npos);
        const long long splits = std::atoll(text.c_str() + at + std::strlen("\"split_k\":"));
        const bool cluster = info.compute_capability >= 90 && splits >= 2 && splits <= 8 &&
                             std::strstr(cfg, "nocluster=1") == nullptr;
        CHECK(text.find(splits == 1  ? "\"split_k_reduce\":\"none\""
                        : cluster    ? "\"split_k_reduce\":\"cluster"
                                     : "\"split_k_reduce\":\"workspace + reduce kernel\"") != std::string::npos);
      }
    }
    run_all(cases, cfg);
  }
  unsetenv("LOWBIT_WQ_CONFIG");
}

TEST_CASE("gpu: wq prefill repacks AWQ/GPTQ once, and again when the weights move") {
  LOWBIT_REQUIRE_GPU();
  Context ctx;
  auto& rng = lowbit::test::rng();
  Case c;
  c.format = LOWBIT_WQ_FORMAT_AWQ;
  c.n = 264;
  c.k = 1024;
  c.m = 32;
  const lowbit_wq_matmul_desc d = c.matmul();
  Plan plan(ctx.ctx, d);
  const size_t ws_bytes = plan.workspace();
  uint64_t native_bytes = 0;
  REQUIRE(lowbit_wq_native_bytes(&d, &native_bytes) == LOWBIT_OK);
  CHECK(ws_bytes >= native_bytes);  // the repacked weights live in the caller's workspace
  DeviceBuffer ws(ws_bytes);
  std::vector<uint16_t> x(size_t(c.m * c.k));
  std::normal_distribution<double> nd(0.0, 1.0);
  for (auto& v : x) v = to_act(c.at, nd(rng));
  DeviceBuffer dx(x.size() * 2), dy(size_t(c.m * c.n) * 2);
  dx.upload(x.data(), x.size() * 2);
  // Two weight sets in separate buffers.
  struct Weights {
    Packed p;
    std::vector<double> w;
    std::unique_ptr<DeviceBuffer> dw, ds, dz;
  } sets[2];
  for (Weights& s : sets) {
    const Logical l = random_logical(d, rng, false);
    s.p = pack(l, LOWBIT_WQ_FORMAT_AWQ);
    s.w = logical_weights(l, c.st);
    for (double& v : s.w) v = from_act(c.at, to_act(c.at, v));
    s.dw = std::make_unique<DeviceBuffer>(s.p.w.size());
    s.ds = std::make_unique<DeviceBuffer>(s.p.scale.size());
    s.dz = std::make_unique<DeviceBuffer>(s.p.zero.size());
    s.dw->upload(s.p.w.data(), s.p.w.size());
    s.ds->upload(s.p.scale.data(), s.p.scale.size());
    s.dz->upload(s.p.zero.data(), s.p.zero.size());
  }
  auto run_and_check = [&](const Weights& s, const char* what) {
    dy.fill(kPoison);
    lowbit_arg args[] = {{LOWBIT_ARG_X, 0, dx.ptr()},         {LOWBIT_ARG_Y, 0, dy.ptr()},
                         {LOWBIT_ARG_W, 0, s.dw->ptr()},      {LOWBIT_ARG_W_SCALE, 0, s.ds->ptr()},
                         {LOWBIT_ARG_W_ZERO, 0, s.dz->ptr()}};
    REQUIRE(lowbit_plan_run(plan.plan, args, 5, ws.ptr(), ws_bytes, nullptr) == LOWBIT_OK);
    lowbit::test::synchronize();
    std::vector<uint8_t> got = dy.to_host();
    size_t bad = 0;
    for (int64_t m = 0; m < c.m; ++m)
      for (int64_t n = 0; n < c.n; ++n) {
        double y = 0, S = 0;
        for (int64_t k = 0; k < c.k; ++k) {
          const double t = from_act(c.at, x[size_t(m * c.k + k)]) * s.w[size_t(k * c.n + n)];
          y += t;
          S += std::fabs(t);
        }
        uint16_t h;
        std::memcpy(&h, &got[size_t(m * c.n + n) * 2], 2);
        const double acc_err = (double(c.k) / 16.0 + 64.0) * std::ldexp(1.0, -23) * S;
        if (!(std::fabs(from_act(c.at, h) - y) <= acc_err + std::ldexp(1.0, -11) * (std::fabs(y) + acc_err) + 1e-7))
          ++bad;
      }
    CHECK_MESSAGE(bad == 0, what << ": " << bad << " bad outputs");
  };
  run_and_check(sets[0], "first run (repacks)");
  run_and_check(sets[0], "second run (reuses the repacked weights)");
  run_and_check(sets[1], "other weights (repacks again)");
  run_and_check(sets[0], "back to the first weights");
}

// Programmatic launch lets each decode kernel start while the one before it
// is finishing; it must still wait for it before reading X (written by that
// kernel: read-after-write) and before writing Y (read by it: write-after-
// read). A chain of runs ping-ponging between two buffers, with weights that
// make each run an exact permutation of X's columns (q - z = 1 at (perm[n],
// n), 0 elsewhere, scale 1; integer X exact in f16/bf16), has exactly one
// right answer: X permuted `steps` times. A run that read X too early would
// see the previous value or the poison; one that wrote Y too early would
// corrupt its predecessor's input. Also with split-K, whose reduce kernel
// (launched normally) sits between two programmatic launches.
TEST_CASE("gpu: wq decode with programmatic launch orders each run after the previous one (exact permutation chain)") {
  LOWBIT_REQUIRE_GPU();
  Context ctx;
  auto& rng = lowbit::test::rng();
  for (const lowbit_dtype at : {LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16}) {
    // 4096: one 16-warp CTA per SM; 1024 with a forced 4-way split-K: the
    // reduce kernel (launched normally) sits between two programmatic ones.
    for (const int64_t nk : {int64_t(4096), int64_t(1024), int64_t(-1024)}) {
      const bool split = nk < 0;
      Case c;
      c.format = LOWBIT_WQ_FORMAT_NATIVE;
      c.source = LOWBIT_WQ_FORMAT_GPTQ;
      c.n = c.k = split ? -nk : nk;
      c.m = 8;
      c.at = at;
      c.st = at;
      CAPTURE(c.label());
      CAPTURE(split);
      const int64_t n_k = c.n;
      lowbit_wq_matmul_desc d = c.matmul();
      d.programmatic_launch = 1;
      Logical l = random_logical(d, rng, false);
      std::vector<int64_t> perm(static_cast<size_t>(n_k));
      for (int64_t i = 0; i < n_k; ++i) perm[size_t(i)] = i;
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int64_t k = 0; k < n_k; ++k)
        for (int64_t n = 0; n < n_k; ++n) l.q[size_t(k * n_k + n)] = l.z[size_t(k / c.group * n_k + n)];
      for (int64_t n = 0; n < n_k; ++n) {
        const int64_t k = perm[size_t(n)];
        int32_t& z = l.z[size_t(k / c.group * n_k + n)];
        z = std::min(z, 14);
        for (int64_t kk = k / c.group * c.group; kk < (k / c.group + 1) * c.group; ++kk) l.q[size_t(kk * n_k + n)] = z;
        l.q[size_t(k * n_k + n)] = z + 1;
      }
      for (auto& sbits : l.s) sbits = to_act(at, 1.0);
      const Packed packed = pack(l, LOWBIT_WQ_FORMAT_GPTQ);
      uint64_t native_bytes = 0;
      REQUIRE(lowbit_wq_native_bytes(&d, &native_bytes) == LOWBIT_OK);
      DeviceBuffer native(native_bytes);
      gpu_repack(ctx.ctx, c, packed, native);
      if (split) setenv("LOWBIT_WQ_CONFIG", "splits=4", 1);
      Plan plan(ctx.ctx, d);
      if (split) unsetenv("LOWBIT_WQ_CONFIG");
      size_t length = 0;
      REQUIRE(lowbit_plan_describe(plan.plan, nullptr, 0, &length) == LOWBIT_OK);
      std::string text(length + 1, '\0');
      REQUIRE(lowbit_plan_describe(plan.plan, text.data(), text.size(), nullptr) == LOWBIT_OK);
      INFO(text);
      CHECK(text.find(split ? "\"split_k\":4" : "\"split_k\":1") != std::string::npos);
      CHECK(text.find("\"programmatic_launch\":true") != std::string::npos);
      const size_t ws_bytes = plan.workspace();
      DeviceBuffer ws(std::max<size_t>(ws_bytes, 16));
      std::vector<uint16_t> x(size_t(c.m * n_k));
      std::uniform_int_distribution<int> vd(-200, 200);
      for (auto& v : x) v = to_act(at, double(vd(rng)));
      DeviceBuffer buf0(x.size() * 2), buf1(x.size() * 2);
      buf0.upload(x.data(), x.size() * 2);
      buf1.fill(kPoison);
      const int steps = 33;
      for (int i = 0; i < steps; ++i) {
        const DeviceBuffer& in = i % 2 == 0 ? buf0 : buf1;
        const DeviceBuffer& out = i % 2 == 0 ? buf1 : buf0;
        lowbit_arg args[] = {{LOWBIT_ARG_X, 0, in.ptr()}, {LOWBIT_ARG_Y, 0, out.ptr()},
                             {LOWBIT_ARG_W_NATIVE, 0, native.ptr()}};
        REQUIRE_MESSAGE(lowbit_plan_run(plan.plan, args, 3, ws_bytes ? ws.ptr() : 0, ws_bytes, nullptr) == LOWBIT_OK,
                        lowbit_last_error_message());
      }
      lowbit::test::synchronize();
      // y[m][n] = x[m][perm[n]], applied `steps` times.
      std::vector<uint16_t> want = x, next(want.size());
      for (int i = 0; i < steps; ++i) {
        for (int64_t m = 0; m < c.m; ++m)
          for (int64_t n = 0; n < n_k; ++n) next[size_t(m * n_k + n)] = want[size_t(m * n_k + perm[size_t(n)])];
        want.swap(next);
      }
      const std::vector<uint8_t> got = (steps % 2 == 1 ? buf1 : buf0).to_host();
      size_t bad = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, &got[i * 2], 2);
        if (h != want[i]) ++bad;
      }
      CHECK_MESSAGE(bad == 0, bad << " of " << want.size() << " outputs differ after " << steps << " chained runs");
    }
  }
}

TEST_CASE("gpu: wq run rejects missing, misaligned and out-of-range arguments") {
  LOWBIT_REQUIRE_GPU();
  Context ctx;
  Case c;
  c.format = LOWBIT_WQ_FORMAT_AWQ;
  c.n = 64;
  c.k = 256;
  c.m = 2;
  Plan plan(ctx.ctx, c.matmul());
  DeviceBuffer x(4096), y(4096), w(65536), s(4096), z(4096);
  lowbit_arg args[] = {{LOWBIT_ARG_X, 0, x.ptr()},
                       {LOWBIT_ARG_Y, 0, y.ptr()},
                       {LOWBIT_ARG_W, 0, w.ptr()},
                       {LOWBIT_ARG_W_SCALE, 0, s.ptr()},
                       {LOWBIT_ARG_W_ZERO, 0, z.ptr()},
                       {LOWBIT_ARG_ROWS, 0, 2}};
  CHECK(lowbit_plan_run(plan.plan, args, 6, 0, 0, nullptr) == LOWBIT_OK);
  args[5].ptr = 3;  // above m
  CHECK(lowbit_plan_run(plan.plan, args, 6, 0, 0, nullptr) == LOWBIT_INVALID_ARGUMENT);
  args[5].ptr = 1;
  CHECK(lowbit_plan_run(plan.plan, args, 5, 0, 0, nullptr) == LOWBIT_OK);
  args[0].ptr = x.ptr() + 8;  // X must be 16-byte aligned
  CHECK(lowbit_plan_run(plan.plan, args, 6, 0, 0, nullptr) == LOWBIT_MISALIGNED);
  args[0].ptr = x.ptr();
  CHECK(lowbit_plan_run(plan.plan, args, 4, 0, 0, nullptr) == LOWBIT_INVALID_ARGUMENT);  // no W_ZERO
  lowbit::test::synchronize();
}
