// GPU tests of the elementwise quantization family: every op x scope x input
// dtype x output type, on fresh random data of odd sizes (1, 7, 129, 4095, 14336
// columns, strided rows, long flat tensors), with ties, clamped values and
// specials (NaN, +-inf, +-0, huge, subnormal); outputs poisoned (and guarded
// past their end) before each run, compared bit-exactly with the CPU
// reference (lowbit_reference_run). The kernels are compiled up front with
// lowbit_prewarm on every CPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
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
bool packed(lowbit_dtype q) { return q == LOWBIT_DTYPE_S4 || q == LOWBIT_DTYPE_U4; }
bool signed_q(lowbit_dtype q) { return q == LOWBIT_DTYPE_S8 || q == LOWBIT_DTYPE_S4; }

// Stores v as `dtype`, rounding to nearest even.
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
    REQUIRE_MESSAGE(lowbit_quantize_plan_create(ctx, &d, &plan) == LOWBIT_OK, std::string(lowbit_last_error_message()));
  }
  ~Plan() { lowbit_plan_destroy(plan); }
};

// The problem's geometry, computed here from the contract in lowbit.h.
struct Geometry {
  int64_t rows = 1, cols = 0, stride = 0, x_elems = 0, q_bytes = 0, q_row_bytes = 0, scales = 1;
  int axis = 0;
  int64_t ch_inner = 1, ch_count = 1;
};

Geometry geometry(const lowbit_quantize_desc& d) {
  Geometry g;
  for (int i = 0; i + 1 < d.rank; ++i) g.rows *= d.dims[i];
  g.cols = d.dims[d.rank - 1];
  g.stride = d.x_row_stride != 0 ? d.x_row_stride : g.cols;
  g.x_elems = g.rows == 0 || g.cols == 0 ? 0 : (g.rows - 1) * g.stride + g.cols;
  g.q_row_bytes = packed(d.q_dtype) ? (g.cols + 1) / 2 : g.cols;
  g.q_bytes = g.rows * g.q_row_bytes;
  switch (d.scope) {
    case LOWBIT_SCOPE_PER_CHANNEL:
      g.axis = d.axis < 0 ? d.axis + d.rank : d.axis;
      g.ch_count = d.dims[g.axis];
      for (int i = g.axis + 1; i + 1 < d.rank; ++i) g.ch_inner *= d.dims[i];
      g.scales = g.ch_count;
      break;
    case LOWBIT_SCOPE_PER_TOKEN: g.scales = g.rows; break;
    case LOWBIT_SCOPE_PER_GROUP: g.scales = g.rows * (g.cols / d.group_size); break;
    default: g.scales = 1;
  }
  return g;
}

int64_t scale_index(const lowbit_quantize_desc& d, const Geometry& g, int64_t r, int64_t c) {
  switch (d.scope) {
    case LOWBIT_SCOPE_PER_CHANNEL: return g.axis == d.rank - 1 ? c : (r / g.ch_inner) % g.ch_count;
    case LOWBIT_SCOPE_PER_TOKEN: return r;
    case LOWBIT_SCOPE_PER_GROUP: return r * (g.cols / d.group_size) + c / d.group_size;
    default: return 0;
  }
}

// A special value for `dtype` (NaN, +-inf, +-0, huge, subnormal-ish).
double special(lowbit_dtype dtype, int k) {
  const bool f64 = dtype == LOWBIT_DTYPE_F64, f16 = dtype == LOWBIT_DTYPE_F16;
  switch (k % 8) {
    case 0: return std::nan("");
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return 0.0;
    case 4: return -0.0;
    case 5: return f64 ? 1e300 : f16 ? 60000.0 : 1e30;
    case 6: return f64 ? -1e-310 : f16 ? 1e-6 : 1e-40;
    default: return f16 ? -65504.0 : -3e20;
  }
}

// Which special values the inputs get (one element in a hundred).
enum class Specials { kAll, kNone, kNanOnly };

// Everything one run uses, on the host.
struct Host {
  std::vector<uint8_t> x, dy, q, scale, zp;  // inputs (scale / zp also outputs for dynamic)
  bool has_zp = false;
};

// The float tensors an op reads and the role of its float output.
bool reads_x(int op) { return op == 1 || op == 3 || op == 5 || op == 6 || op == 7; }
bool reads_dy(int op) { return op == 3 || op == 4 || op == 6; }
lowbit_arg_role float_out(int op) {
  return op == 2 ? LOWBIT_ARG_X : op == 5 ? LOWBIT_ARG_Y : (op == 3 || op == 4 || op == 6) ? LOWBIT_ARG_DX : 0;
}

Host make_host(const lowbit_quantize_desc& d, const Geometry& g, bool zp_present, Specials specials,
               const std::vector<double>* forced_scales = nullptr) {
  auto& rng = lowbit::test::rng();
  Host h;
  const int sb = bytes_of(d.scale_dtype);
  h.scale.assign(size_t(g.scales) * sb, 0);
  h.zp.assign(size_t(g.scales) * 4, 0);
  h.has_zp = zp_present;
  std::uniform_real_distribution<double> scale_dist(0.01, 0.2);
  const int32_t lo = signed_q(d.q_dtype) ? (packed(d.q_dtype) ? -3 : -12) : (packed(d.q_dtype) ? 5 : 100);
  const int32_t hi = signed_q(d.q_dtype) ? (packed(d.q_dtype) ? 3 : 12) : (packed(d.q_dtype) ? 10 : 150);
  std::uniform_int_distribution<int32_t> zp_dist(lo, hi);
  for (int64_t k = 0; k < g.scales; ++k) {
    const double s = forced_scales ? (*forced_scales)[size_t(k) % forced_scales->size()] : scale_dist(rng);
    put_float(h.scale, d.scale_dtype, size_t(k), s);
    const int32_t z = zp_present ? zp_dist(rng) : 0;
    std::memcpy(&h.zp[size_t(k) * 4], &z, 4);
  }
  std::normal_distribution<double> normal(0.0, 60.0);
  std::uniform_int_distribution<int> pick(0, 99);
  const int xb = bytes_of(d.x_dtype);
  auto fill = [&](std::vector<uint8_t>& buf, bool grid) {
    buf.assign(size_t(g.x_elems) * xb, 0);
    for (int64_t r = 0; r < g.rows; ++r)
      for (int64_t c = 0; c < g.cols; ++c) {
        const size_t i = size_t(r * g.stride + c);
        double s = 0.1;
        if (grid && d.op != LOWBIT_QOP_DYNAMIC_QUANTIZE) {
          s = get_float(h.scale, d.scale_dtype, size_t(scale_index(d, g, r, c)));
          if (!std::isfinite(s) || s == 0) s = 0.1;
        }
        double v = normal(rng) * s;
        const int p = pick(rng);
        if (p < 12) v = (std::floor(normal(rng)) + 0.5) * s;  // a tie (up to the dtype's rounding)
        if (specials != Specials::kNone && p == 99) v = specials == Specials::kAll ? special(d.x_dtype, int(i)) : std::nan("");
        put_float(buf, d.x_dtype, i, v);
      }
  };
  if (reads_x(d.op)) fill(h.x, true);
  if (reads_dy(d.op)) fill(h.dy, false);
  h.q.resize(size_t(g.q_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : h.q) b = uint8_t(byte(rng));
  return h;
}

// Plans that ran the bulk-copy staged kernel (quantize_staged.cuh), so a test
// can check that it exercised it.
int& staged_plans() {
  static int n = 0;
  return n;
}
bool plan_is_staged(lowbit_plan* plan) {
  size_t len = 0;
  lowbit_plan_describe(plan, nullptr, 0, &len);
  std::string j(len + 1, '\0');
  lowbit_plan_describe(plan, j.data(), j.size(), &len);
  return j.find("\"kernel\":\"staged_") != std::string::npos;
}

// Sets LOWBIT_DEV_QUANTIZE_TUNE (read at plan creation) for one scope.
struct TuneScope {
  explicit TuneScope(const char* value) { setenv("LOWBIT_DEV_QUANTIZE_TUNE", value, 1); }
  ~TuneScope() { unsetenv("LOWBIT_DEV_QUANTIZE_TUNE"); }
};

// The GPU's compute capability major (9 on Hopper).
int sm_major() {
  int major = 0;
  lowbit::cu_check(lowbit::driver().DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0),
                   "cuDeviceGetAttribute");
  return major;
}

// Runs `d` on the GPU and the CPU and compares every output byte (and the
// guard bytes after each output) exactly.
void check_against_reference(lowbit_context* ctx, const lowbit_quantize_desc& d, const std::string& label,
                             bool zp_present, Specials specials = Specials::kAll,
                             const std::vector<double>* scales = nullptr) {
  const Geometry g = geometry(d);
  const int op = d.op;
  Host h = make_host(d, g, zp_present, specials, scales);
  const size_t xbytes = size_t(g.x_elems) * bytes_of(d.x_dtype);
  const bool dyn = op == LOWBIT_QOP_DYNAMIC_QUANTIZE;
  const bool q_out = op == LOWBIT_QOP_QUANTIZE || dyn;

  // Device buffers (each with a guard), inputs uploaded, outputs poisoned.
  DeviceBuffer x(xbytes + kGuard), dy(xbytes + kGuard), fout(xbytes + kGuard), q(size_t(g.q_bytes) + kGuard),
      scale(h.scale.size() + kGuard), zp(h.zp.size() + kGuard);
  for (DeviceBuffer* b : {&x, &dy, &fout, &q, &scale, &zp}) b->fill(kPoison);
  if (reads_x(op)) x.upload(h.x.data(), xbytes);
  if (reads_dy(op)) dy.upload(h.dy.data(), xbytes);
  if (op == LOWBIT_QOP_DEQUANTIZE) q.upload(h.q.data(), h.q.size());
  if (!dyn) {
    scale.upload(h.scale.data(), h.scale.size());
    zp.upload(h.zp.data(), h.zp.size());
  }

  std::vector<lowbit_arg> args;
  // Dequantize writes X; everything else reads it (if at all).
  args.push_back({LOWBIT_ARG_X, 0, op == LOWBIT_QOP_DEQUANTIZE ? fout.ptr() : x.ptr()});
  args.push_back({LOWBIT_ARG_Q, 0, q.ptr()});
  args.push_back({LOWBIT_ARG_SCALE, 0, scale.ptr()});
  if (zp_present) args.push_back({LOWBIT_ARG_ZERO_POINT, 0, zp.ptr()});
  args.push_back({LOWBIT_ARG_DY, 0, dy.ptr()});
  if (op == 3 || op == 4 || op == 6) args.push_back({LOWBIT_ARG_DX, 0, fout.ptr()});
  if (op == 5) args.push_back({LOWBIT_ARG_Y, 0, fout.ptr()});

  Plan plan(ctx, d);
  staged_plans() += plan_is_staged(plan.plan) ? 1 : 0;
  size_t ws_bytes = 0;
  REQUIRE(lowbit_plan_workspace_size(plan.plan, &ws_bytes) == LOWBIT_OK);
  std::unique_ptr<DeviceBuffer> ws;
  if (ws_bytes > 0) {
    ws = std::make_unique<DeviceBuffer>(ws_bytes);
    ws->fill(kPoison);
  }
  const lowbit_status st = lowbit_plan_run(plan.plan, args.data(), args.size(), ws ? ws->ptr() : 0, ws_bytes, nullptr);
  REQUIRE_MESSAGE(st == LOWBIT_OK, label << ": " << std::string(lowbit_last_error_message()));
  lowbit::test::synchronize();

  // The reference on host copies; outputs start poisoned like the device's.
  std::vector<uint8_t> e_f(xbytes + kGuard, kPoison), e_q(size_t(g.q_bytes) + kGuard, kPoison);
  std::vector<uint8_t> e_scale(h.scale.size() + kGuard, kPoison), e_zp(h.zp.size() + kGuard, kPoison);
  if (!dyn) {
    std::memcpy(e_scale.data(), h.scale.data(), h.scale.size());
    std::memcpy(e_zp.data(), h.zp.data(), h.zp.size());
  }
  if (op == LOWBIT_QOP_DEQUANTIZE) std::memcpy(e_q.data(), h.q.data(), h.q.size());
  std::vector<lowbit_arg> host_args;
  auto hp = [](const void* p) { return uint64_t(uintptr_t(p)); };
  host_args.push_back({LOWBIT_ARG_X, 0, op == LOWBIT_QOP_DEQUANTIZE ? hp(e_f.data()) : hp(h.x.data())});
  host_args.push_back({LOWBIT_ARG_Q, 0, hp(e_q.data())});
  host_args.push_back({LOWBIT_ARG_SCALE, 0, hp(e_scale.data())});
  if (zp_present) host_args.push_back({LOWBIT_ARG_ZERO_POINT, 0, hp(e_zp.data())});
  host_args.push_back({LOWBIT_ARG_DY, 0, hp(h.dy.data())});
  if (op == 3 || op == 4 || op == 6) host_args.push_back({LOWBIT_ARG_DX, 0, hp(e_f.data())});
  if (op == 5) host_args.push_back({LOWBIT_ARG_Y, 0, hp(e_f.data())});
  lowbit_op_desc od{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  REQUIRE_MESSAGE(lowbit_reference_run(&od, host_args.data(), host_args.size()) == LOWBIT_OK,
                  std::string(lowbit_last_error_message()));

  auto compare = [&](const char* what, const DeviceBuffer& dev, const std::vector<uint8_t>& want) {
    const std::vector<uint8_t> got = dev.to_host();
    size_t mismatches = 0, first = SIZE_MAX;
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i]) {
        if (first == SIZE_MAX) first = i;
        ++mismatches;
      }
    INFO(label << ": " << what << ": " << mismatches << " mismatching bytes of " << got.size() << ", first at byte "
               << first
               << (first != SIZE_MAX ? " got " + std::to_string(got[first]) + " expected " + std::to_string(want[first])
                                     : ""));
    CHECK(mismatches == 0);
  };
  if (q_out) compare("Q", q, e_q);
  if (float_out(op) != 0) compare("float output", fout, e_f);
  if (dyn) {
    compare("SCALE", scale, e_scale);
    if (zp_present) compare("ZERO_POINT", zp, e_zp);
  }
  // Inputs stay untouched.
  if (op == LOWBIT_QOP_DEQUANTIZE) compare("Q (input)", q, e_q);
}

const char* op_label(int op) {
  static const char* names[] = {"?", "quantize", "dequantize", "quantize_backward", "dequantize_backward",
                                "fake_quantize", "fake_quantize_backward", "dynamic_quantize"};
  return names[op];
}
const char* scope_label(int s) {
  static const char* names[] = {"?", "per_tensor", "per_channel", "per_token", "per_group"};
  return names[s];
}

std::string label_of(const lowbit_quantize_desc& d, bool zp) {
  std::string s = std::string(op_label(d.op)) + " " + scope_label(d.scope) + " x=" + lowbit_dtype_name(d.x_dtype) +
                  " q=" + lowbit_dtype_name(d.q_dtype) + " scale=" + lowbit_dtype_name(d.scale_dtype) + " dims=";
  for (int i = 0; i < d.rank; ++i) s += (i ? "x" : "") + std::to_string(d.dims[i]);
  s += " stride=" + std::to_string(d.x_row_stride) + " range=[" + std::to_string(d.qmin) + "," + std::to_string(d.qmax) +
       "] align=" + std::to_string(d.alignment) + " group=" + std::to_string(d.group_size) +
       " axis=" + std::to_string(d.axis) + " sym=" + std::to_string(d.symmetric) + (zp ? " zp" : " no-zp");
  return s;
}

struct Case {
  lowbit_quantize_desc d;
  bool zp;
};

// Compiles every case's kernels on all CPUs before the runs.
void prewarm(lowbit_context* ctx, const std::vector<Case>& cases) {
  std::vector<lowbit_op_desc> ops;
  for (const Case& c : cases) ops.push_back({LOWBIT_FAMILY_QUANTIZE, 0, &c.d});
  std::vector<lowbit_status> results(ops.size());
  const lowbit_status s = lowbit_prewarm(ctx, ops.data(), ops.size(), 0, results.data());
  CHECK_MESSAGE(s == LOWBIT_OK, std::string(lowbit_last_error_message()));
}

// Every op x scope x input dtype x output type x shape (ops: those `want`
// accepts), each checked against the reference.
template <typename Want>
void every_op(lowbit_context* ctx, const Want& want, Specials specials = Specials::kAll) {
  struct Shape {
    int64_t rows, cols, stride, group;
  };
  const Shape shapes[] = {{3, 1, 0, 1},     {2, 7, 0, 7},        {3, 129, 0, 3},   {2, 4095, 0, 65},
                          {5, 1024, 0, 128}, {3, 2176, 2200, 128}, {2, 14336, 0, 128}, {1, 65536 + 17, 0, 65553}};
  const lowbit_dtype xs[] = {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F64};
  const lowbit_dtype qs[] = {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U8, LOWBIT_DTYPE_S4, LOWBIT_DTYPE_U4};
  std::vector<Case> cases;
  int variant = 0;
  for (int op = LOWBIT_QOP_QUANTIZE; op <= LOWBIT_QOP_DYNAMIC_QUANTIZE; ++op)
    for (int scope = LOWBIT_SCOPE_PER_TENSOR; scope <= LOWBIT_SCOPE_PER_GROUP; ++scope) {
      if (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && scope == LOWBIT_SCOPE_PER_CHANNEL) continue;
      if (!want(op)) continue;
      for (lowbit_dtype x : xs)
        for (lowbit_dtype q : qs)
          for (const Shape& sh : shapes) {
            if (sh.rows == 1 && sh.cols > 60000 && scope == LOWBIT_SCOPE_PER_CHANNEL && variant % 2) continue;
            // Unsupported (documented): dynamic per-group to packed types with
            // odd groups that share bytes.
            if (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && scope == LOWBIT_SCOPE_PER_GROUP && packed(q) && sh.group % 2 != 0 &&
                sh.group != sh.cols)
              continue;
            ++variant;
            lowbit_quantize_desc d;
            lowbit_quantize_desc_init(&d);
            d.op = op;
            d.scope = scope;
            d.x_dtype = x;
            d.q_dtype = q;
            d.rank = 2;
            d.dims[0] = sh.rows;
            d.dims[1] = sh.cols;
            d.x_row_stride = sh.stride;
            d.group_size = sh.group;
            d.axis = variant % 2 ? 0 : -1;
            d.scale_dtype = variant % 3 == 0 ? x : LOWBIT_DTYPE_F32;
            if (variant % 4 == 1) {  // a narrowed range
              d.qmin = signed_q(q) ? (packed(q) ? -7 : -127) : 1;
              d.qmax = signed_q(q) ? (packed(q) ? 7 : 127) : (packed(q) ? 14 : 254);
            }
            d.symmetric = signed_q(q) && variant % 5 != 0;
            bool zp = variant % 3 != 1 || (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && !d.symmetric);
            cases.push_back({d, zp});
          }
    }
  // LOWBIT_TEST_QUANTIZE_CASES=<substring of the label> keeps the matching
  // cases only (sanitizer runs, which cannot afford them all).
  if (const char* f = std::getenv("LOWBIT_TEST_QUANTIZE_CASES"); f != nullptr) {
    std::vector<Case> kept;
    for (const Case& k : cases)
      if (label_of(k.d, k.zp).find(f) != std::string::npos) kept.push_back(k);
    cases.swap(kept);
  }
  MESSAGE(cases.size() << " cases");
  prewarm(ctx, cases);
  for (const Case& k : cases) check_against_reference(ctx, k.d, label_of(k.d, k.zp), k.zp, specials);
}

bool staged_op(int op) {
  return op == LOWBIT_QOP_QUANTIZE || op == LOWBIT_QOP_DEQUANTIZE || op == LOWBIT_QOP_DYNAMIC_QUANTIZE;
}

}  // namespace

TEST_CASE("gpu: every op x scope x dtype x output type is bit-exact against the reference") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  staged_plans() = 0;
  every_op(c.ctx, [](int) { return true; });
  // sm_90+: dequantize with row scales runs the staged kernel by default.
  MESSAGE(staged_plans() << " plans ran the bulk-copy staged kernel");
  if (std::getenv("LOWBIT_TEST_QUANTIZE_CASES") == nullptr) {
    if (sm_major() >= 9) CHECK(staged_plans() > 20);
    else CHECK(staged_plans() == 0);
  }
}

// Dynamic quantize skips the per-element checks for a segment whose range
// proves them unneeded, in each thread that saw no NaN (quantize_dynamic.cuh).
// The default inputs hold an inf or NaN in most long segments, which keeps
// them on the checked path; these runs reach the unchecked one: clean data
// (every segment whose bounds hold), and NaN as the only special (threads of
// one segment on both paths). A build whose unchecked path is off by one in
// one element fails this case (checked on the H100).
TEST_CASE("gpu: dynamic quantize on clean data and with NaN as the only special value is bit-exact") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  const auto dynamic = [](int op) { return op == LOWBIT_QOP_DYNAMIC_QUANTIZE; };
  every_op(c.ctx, dynamic, Specials::kNone);
  every_op(c.ctx, dynamic, Specials::kNanOnly);
  {
    TuneScope tune("sall=1");  // the staged segment kernel shares the range fold and the unchecked path
    every_op(c.ctx, dynamic, Specials::kNone);
  }
}

TEST_CASE("gpu: the staged kernel on every op it can take (sall=1) is bit-exact") {
  LOWBIT_REQUIRE_GPU();
  if (sm_major() < 9) LOWBIT_SKIP("the bulk-copy staged kernel needs sm_90");
  Context c;
  TuneScope tune("sall=1");
  staged_plans() = 0;
  every_op(c.ctx, staged_op);
  MESSAGE(staged_plans() << " plans ran the bulk-copy staged kernel");
  CHECK(staged_plans() > (std::getenv("LOWBIT_TEST_QUANTIZE_CASES") == nullptr ? 100 : 0));
}

TEST_CASE("gpu: the register-staged kernels (staged=0) are bit-exact too") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  TuneScope tune("staged=0");
  staged_plans() = 0;
  every_op(c.ctx, staged_op);
  CHECK(staged_plans() == 0);
}

TEST_CASE("gpu: staged kernel with many tiles per block (stage reuse, phase wrap) is bit-exact") {
  LOWBIT_REQUIRE_GPU();
  if (sm_major() < 9) LOWBIT_SKIP("the bulk-copy staged kernel needs sm_90");
  Context c;
  // Smallest tiles, two stages, at most three blocks: each block walks many
  // tiles and reuses each stage (and its barrier phase) many times.
  TuneScope tune("sall=1,stile=1,sstages=2,sgrid=3");
  staged_plans() = 0;
  every_op(c.ctx, staged_op);
  MESSAGE(staged_plans() << " plans ran the bulk-copy staged kernel");
  CHECK(staged_plans() > (std::getenv("LOWBIT_TEST_QUANTIZE_CASES") == nullptr ? 100 : 0));
}

TEST_CASE("gpu: rank 3 and 4, strided rows, narrow alignments, more rows than a grid dimension") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  std::vector<Case> cases;
  for (lowbit_dtype x : {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F16})
    for (int op = LOWBIT_QOP_QUANTIZE; op <= LOWBIT_QOP_DYNAMIC_QUANTIZE; ++op)
      for (int scope = LOWBIT_SCOPE_PER_TENSOR; scope <= LOWBIT_SCOPE_PER_GROUP; ++scope) {
        if (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && scope == LOWBIT_SCOPE_PER_CHANNEL) continue;
        lowbit_quantize_desc d;
        lowbit_quantize_desc_init(&d);
        d.op = op;
        d.scope = scope;
        d.x_dtype = x;
        d.q_dtype = (op + scope) % 2 ? LOWBIT_DTYPE_U8 : LOWBIT_DTYPE_S4;
        d.symmetric = d.q_dtype == LOWBIT_DTYPE_S4;
        d.rank = 4;
        d.dims[0] = 2; d.dims[1] = 3; d.dims[2] = 5; d.dims[3] = 48;
        d.group_size = 16;
        d.axis = 1 + (op % 3);  // 1, 2 or 3
        cases.push_back({d, true});
        d.rank = 2;
        d.dims[0] = 70000; d.dims[1] = 4;  // more rows than grid.y allows
        d.x_row_stride = 6;
        d.alignment = 4;
        d.group_size = 2;
        d.axis = 0;
        cases.push_back({d, true});
        d.dims[0] = 41; d.dims[1] = 1000;
        d.x_row_stride = 1032;  // vectors fit the stride
        d.alignment = 16;
        d.group_size = 40;
        cases.push_back({d, op % 2 == 0 || (op == LOWBIT_QOP_DYNAMIC_QUANTIZE && !d.symmetric)});
        d.x_row_stride = 1001;  // they do not: the plan narrows its vectors
        cases.push_back({d, true});
      }
  prewarm(c.ctx, cases);
  for (const Case& k : cases) check_against_reference(c.ctx, k.d, label_of(k.d, k.zp), k.zp);
}

TEST_CASE("gpu: scales outside the fast quotient's range, zero, negative, NaN and inf scales match the reference") {
  LOWBIT_REQUIRE_GPU();
  Context c;
  // Per-token: each row gets one of these scales (the kernel uses whatever
  // the caller stored: see lowbit.h).
  const std::vector<double> scales = {0.05, 0.0, -0.07, std::nan(""), INFINITY, 1e-30, 1e30, 0x1p-40, 0x1p-41,
                                      0x1p60, 3e-39 /* f32 subnormal */, -1e-20};
  std::vector<Case> cases;
  for (lowbit_dtype x : {LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_F64})
    for (int op : {1, 2, 3, 4, 5, 6}) {
      lowbit_quantize_desc d;
      lowbit_quantize_desc_init(&d);
      d.op = op;
      d.scope = LOWBIT_SCOPE_PER_TOKEN;
      d.x_dtype = x;
      d.q_dtype = op % 2 ? LOWBIT_DTYPE_S8 : LOWBIT_DTYPE_U4;
      d.rank = 2;
      d.dims[0] = int64_t(scales.size());
      d.dims[1] = 512;
      cases.push_back({d, true});
    }
  prewarm(c.ctx, cases);
  for (const Case& k : cases)
    check_against_reference(c.ctx, k.d, label_of(k.d, k.zp) + " (special scales)", k.zp, Specials::kAll, &scales);
}

TEST_CASE("gpu: run rejects misaligned pointers and missing arguments; empty tensors are a no-op") {
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
  // A 2-byte alignment promise for bf16 with an f32 scale: the plan uses
  // element accesses and accepts 2-aligned tensors.
  d.alignment = 2;
  Plan narrow(c.ctx, d);
  lowbit_arg two[] = {{LOWBIT_ARG_X, 0, x.ptr() + 2}, {LOWBIT_ARG_Q, 0, q.ptr() + 1}, {LOWBIT_ARG_SCALE, 0, scale.ptr()}};
  CHECK(lowbit_plan_run(narrow.plan, two, 3, 0, 0, nullptr) == LOWBIT_OK);
  lowbit::test::synchronize();
  // Dynamic per-tensor needs its workspace.
  d.op = LOWBIT_QOP_DYNAMIC_QUANTIZE;
  d.alignment = 16;
  Plan dyn(c.ctx, d);
  size_t ws = 0;
  REQUIRE(lowbit_plan_workspace_size(dyn.plan, &ws) == LOWBIT_OK);
  CHECK(ws > 0);
  lowbit_arg dargs[] = {{LOWBIT_ARG_X, 0, x.ptr()}, {LOWBIT_ARG_Q, 0, q.ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()}};
  CHECK(lowbit_plan_run(dyn.plan, dargs, 3, 0, 0, nullptr) == LOWBIT_WORKSPACE_TOO_SMALL);
  // Empty: nothing is read or written, NULL pointers are fine.
  d.op = LOWBIT_QOP_QUANTIZE;
  d.rank = 2;
  d.dims[0] = 0;
  d.dims[1] = 4096;
  Plan empty(c.ctx, d);
  CHECK(lowbit_plan_run(empty.plan, nullptr, 0, 0, 0, nullptr) == LOWBIT_OK);
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
  const Geometry g = geometry(d);
  Host h = make_host(d, g, true, Specials::kNone);
  std::vector<uint8_t> expected(size_t(d.dims[0]));
  lowbit_arg host_args[] = {{LOWBIT_ARG_X, 0, uint64_t(uintptr_t(h.x.data()))},
                            {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(expected.data()))},
                            {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(h.scale.data()))},
                            {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(h.zp.data()))}};
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
    zp.upload(h.zp.data(), 4);
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
