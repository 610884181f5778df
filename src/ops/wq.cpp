#include "ops/wq.hpp"
#include "ops/wq_internal.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/dtype.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "ref/wq.hpp"

namespace lowbit::wq {

namespace {
constexpr int64_t kMaxDim = int64_t(1) << 30;
}  // namespace

// ---- Shared with the prefill path (wq_internal.hpp) ----------------------

const char* format_name(lowbit_wq_format f) {
  switch (f) {
    case LOWBIT_WQ_FORMAT_AWQ: return "awq";
    case LOWBIT_WQ_FORMAT_GPTQ: return "gptq";
    case LOWBIT_WQ_FORMAT_GPTQ_V1: return "gptq_v1";
    case LOWBIT_WQ_FORMAT_NATIVE: return "native";
    case LOWBIT_WQ_FORMAT_PLAIN: return "plain";
    default: return nullptr;
  }
}

const char* device_type(lowbit_dtype t) { return t == LOWBIT_DTYPE_BF16 ? "lowbit::bf16" : "lowbit::f16"; }

namespace {

const char* op_name(lowbit_wq_op op) {
  switch (op) {
    case LOWBIT_WQ_OP_MATMUL: return "matmul";
    case LOWBIT_WQ_OP_REPACK: return "repack";
    default: return nullptr;
  }
}


void check_flag(int32_t v, const char* name) {
  if (v != 0 && v != 1) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_wq_matmul_desc.{} = {} (must be 0 or 1)", name, v);
}

void check_half_dtype(lowbit_dtype t, const char* name) {
  if (dtype_name(t) == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_wq_matmul_desc.{} = {} is not a LOWBIT_DTYPE_* value", name, t);
  if (t != LOWBIT_DTYPE_F16 && t != LOWBIT_DTYPE_BF16)
    fail(LOWBIT_UNSUPPORTED, "{} {} is not supported (f16 or bf16)", name, dtype_name(t));
}

// The weight-shape fields: what the native layout depends on.
void check_weight_shape(const lowbit_wq_matmul_desc& d) {
  if (d.weight_bits != 4 && d.weight_bits != 8) {
    if (d.weight_bits < 1 || d.weight_bits > 32)
      fail(LOWBIT_INVALID_ARGUMENT, "weight_bits = {} is not a bit width", d.weight_bits);
    fail(LOWBIT_UNSUPPORTED, "weight_bits = {} is not supported (4 or 8)", d.weight_bits);
  }
  check_flag(d.symmetric, "symmetric");
  check_flag(d.act_order, "act_order");
  const int64_t g = d.group_size;
  if (g == 0 || g < -1) fail(LOWBIT_INVALID_PROBLEM, "group_size = {} (a positive size, or -1 for per-channel)", g);
  if (g != -1 && g != 32 && g != 64 && g != 128 && g != 256)
    fail(LOWBIT_UNSUPPORTED, "group_size = {} is not supported (32, 64, 128, 256 or -1)", g);
  if (d.n < 1 || d.k < 1) fail(LOWBIT_INVALID_PROBLEM, "n = {} and k = {} must be positive", d.n, d.k);
  if (d.n > kMaxDim || d.k > kMaxDim) fail(LOWBIT_INVALID_PROBLEM, "n = {} or k = {} is above 2^30", d.n, d.k);
  if (d.n % 8 != 0)
    fail(LOWBIT_INVALID_PROBLEM, "n = {} is not a multiple of 8 (the packed formats hold 8 columns per int32)", d.n);
  if (d.k % 8 != 0) fail(LOWBIT_INVALID_PROBLEM, "k = {} is not a multiple of 8", d.k);
  if (g > 0 && d.k % g != 0) fail(LOWBIT_INVALID_PROBLEM, "k = {} is not a multiple of group_size = {}", d.k, g);
  if (d.act_order && g < 0) fail(LOWBIT_INVALID_PROBLEM, "act_order needs groups (group_size = -1 given)");
  check_half_dtype(d.scale_dtype, "scale_dtype");
}

}  // namespace

Problem check(const lowbit_wq_matmul_desc& d) {
  Problem p;
  p.d = d;
  if (op_name(d.op) == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_wq_matmul_desc.op = {} is not a LOWBIT_WQ_OP_* value", d.op);
  if (format_name(d.format) == nullptr)
    fail(LOWBIT_INVALID_ARGUMENT, "lowbit_wq_matmul_desc.format = {} is not a LOWBIT_WQ_FORMAT_* value", d.format);
  check_weight_shape(d);
  p.ngroups = d.group_size > 0 ? d.k / d.group_size : 1;
  if (d.format == LOWBIT_WQ_FORMAT_AWQ && d.weight_bits != 4)
    fail(LOWBIT_UNSUPPORTED, "AWQ is 4-bit only (AutoAWQ's GEMM packer packs 4-bit weights)");
  if (d.act_order && (d.format == LOWBIT_WQ_FORMAT_AWQ || d.format == LOWBIT_WQ_FORMAT_PLAIN))
    fail(LOWBIT_UNSUPPORTED, "act_order applies to GPTQ (g_idx) and the native layout, not {}", format_name(d.format));
  if (d.op == LOWBIT_WQ_OP_REPACK) {
    if (d.format == LOWBIT_WQ_FORMAT_NATIVE) fail(LOWBIT_INVALID_PROBLEM, "repack reads a source format; NATIVE is the output");
    return p;
  }
  if (d.format == LOWBIT_WQ_FORMAT_PLAIN)
    fail(LOWBIT_UNSUPPORTED, "the matmul does not read PLAIN weights: repack them (LOWBIT_WQ_OP_REPACK) to NATIVE");
  if (d.m < 1 || d.m > kMaxDim) fail(LOWBIT_INVALID_PROBLEM, "m = {} must be in 1..2^30", d.m);
  check_half_dtype(d.act_dtype, "act_dtype");
  check_flag(d.has_bias, "has_bias");
  check_flag(d.programmatic_launch, "programmatic_launch");
  if (d.alignment != 1 && d.alignment != 2 && d.alignment != 4 && d.alignment != 8 && d.alignment != 16)
    fail(LOWBIT_INVALID_ARGUMENT, "alignment = {} (must be 1, 2, 4, 8 or 16)", d.alignment);
  if (d.alignment < 16) fail(LOWBIT_UNSUPPORTED, "alignment = {}: the kernels load 16 bytes at a time and need 16", d.alignment);
  if (d.x_row_stride < 0 || (d.x_row_stride != 0 && d.x_row_stride < d.k) || d.x_row_stride > kMaxDim * 4)
    fail(LOWBIT_INVALID_PROBLEM, "x_row_stride = {} is smaller than k = {} or absurd", d.x_row_stride, d.k);
  if (d.x_row_stride % 8 != 0)
    fail(LOWBIT_UNSUPPORTED, "x_row_stride = {} is not a multiple of 8 elements (rows are read 16 bytes at a time)",
         d.x_row_stride);
  if (d.y_row_stride < 0 || (d.y_row_stride != 0 && d.y_row_stride < d.n) || d.y_row_stride > kMaxDim * 4)
    fail(LOWBIT_INVALID_PROBLEM, "y_row_stride = {} is smaller than n = {} or absurd", d.y_row_stride, d.n);
  p.x_stride = d.x_row_stride != 0 ? d.x_row_stride : d.k;
  p.y_stride = d.y_row_stride != 0 ? d.y_row_stride : d.n;
  return p;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

namespace {

// ---- Decode path ----------------------------------------------------------

// The launch configuration of the matmul kernel.
struct Config {
  int m_tile = 1;       // 1, 2, 4, 8
  int nb = 1;           // n-blocks per CTA
  int unit = 1;         // k-steps per warp unit
  int warps = 8;
  int stages = 4;       // depth of the register ring of weight loads (even)
  int64_t block_n = 16;   // columns of one n-block
  int64_t step_k = 64;    // k per step
  int64_t k_steps = 0;
  int64_t steps_per_split = 0;
  int64_t splits = 1;
  int64_t blocks_x = 0;
  double score = 0;     // the heuristic's estimate of the fraction of the read rate
  bool tuned = false;   // LOWBIT_WQ_CONFIG was applied
};

// Developer knob for tuning sweeps (the bench's LOWBIT_WQ_SWEEP sets it):
// LOWBIT_WQ_CONFIG="nb=2,unit=1,warps=8,splits=1,stages=4" (any subset).
// Read at plan creation; describe reports the result and "from_env".
struct Forced {
  int nb = 0, unit = 0, warps = 0, splits = 0, stages = 0;
};
Forced read_env() {
  Forced f;
  for_each_env_knob("LOWBIT_WQ_CONFIG", [&](std::string_view key, int v) {
    if (key == "nb") f.nb = v;
    else if (key == "unit") f.unit = v;
    else if (key == "warps") f.warps = v;
    else if (key == "splits") f.splits = v;
    else if (key == "stages") f.stages = v;
  });
  return f;
}

}  // namespace

int floor_pow2(int v) {
  int p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

// Estimated fraction of the streaming rate a grid of `ctas` equal CTAs
// reaches. Each warp streams at the rate its loads in flight allow, so a CTA
// takes about the same time whatever runs beside it, and `slots` resident
// CTAs per SM (slots x warps = 16 warps) saturate an SM. The busiest SM runs
// ceil(ceil(ctas / sms) / slots) rounds of CTAs where the ideal is
// ctas / (sms x slots): wave quantization, imbalance and under-occupancy in
// one number.
double grid_score(int64_t ctas, int slots, int sms) {
  const double ideal = double(ctas) / (double(sms) * slots);
  const int64_t rounds = ceil_div(ceil_div(ctas, sms), slots);
  return ideal / double(std::max<int64_t>(rounds, 1));
}

namespace {

// The largest power of two <= want that divides both a and b (b = 0: any).
int fit_unit(int want, int64_t a, int64_t b) {
  int u = std::max(1, floor_pow2(std::max(want, 1)));
  while (u > 1 && (a % u != 0 || (b != 0 && b % u != 0))) u /= 2;
  return u;
}

Config choose_config(const Problem& p, const DeviceTraits& device) {
  const lowbit_wq_matmul_desc& d = p.d;
  Config c;
  c.m_tile = d.m <= 1 ? 1 : d.m <= 2 ? 2 : d.m <= 4 ? 4 : 8;
  const int sms = std::max(device.sm_count, 1);
  int max_nb = 1;
  const bool native = d.format == LOWBIT_WQ_FORMAT_NATIVE;
  if (native) {
    c.block_n = 16;
    c.step_k = 64;
    max_nb = 4;
  } else if (d.format == LOWBIT_WQ_FORMAT_AWQ) {
    c.block_n = 64;
    c.step_k = 16;
    max_nb = 2;
  } else {
    c.block_n = 32;
    c.step_k = d.weight_bits == 4 ? 32 : 16;
    max_nb = d.act_order ? 1 : 2;
  }
  c.k_steps = ceil_div(d.k, c.step_k);
  const int64_t n_blocks = ceil_div(d.n, c.block_n);
  // A unit (the k-steps a warp loads at once) must lie in one group (the
  // native G = 32 kernel splits its chunk itself) and, for the native layout,
  // divide the chunk count so that no unit has a tail.
  const int64_t group_steps = d.group_size > 0 ? std::max<int64_t>(1, d.group_size / c.step_k) : 0;
  auto unit_for = [&](int want) { return fit_unit(want, group_steps != 0 ? group_steps : 1 << 20, native ? c.k_steps : 0); };
  const int slots = 2;  // CTAs of 8 warps per SM (the kernels are capped at 128 registers)
  const double weight_bytes = double(d.n) * double(d.k) * d.weight_bits / 8.0;
  const double main_us = weight_bytes / 3.5e6;
  // Candidates: n-blocks per CTA x split-K; the reduce kernel of a split costs
  // a launch and the partials' traffic, so splits must buy real balance.
  double best = -1;
  // Measured on H200 (notes/wq-decode.md): the native layout runs best with 2
  // n-tiles per CTA (X loads and addressing shared by twice the weights),
  // even where a grid of 1-tile CTAs balances better.
  if (native) max_nb = ceil_div(d.n, 16) % 2 == 0 ? 2 : 1;
  for (int nb = max_nb; nb >= 1; nb /= 2) {
    if (native && nb != max_nb) continue;
    const int64_t blocks = ceil_div(n_blocks, nb);
    for (int64_t splits : {1, 2, 3, 4, 6, 8, 12, 16}) {
      const int64_t steps_per_split = ceil_div(c.k_steps, splits);
      if (splits > 1 && steps_per_split < int64_t(c.warps) * 4) break;  // too little K per warp
      double score = grid_score(blocks * splits, slots, sms);
      // A split adds the reduce kernel: about 2 us next to a main kernel of
      // roughly bytes / (3.5 TB/s).
      if (splits > 1) score *= main_us / (main_us + 2.0 + 0.3 * double(splits));
      score *= 1.0 + 0.002 * (nb - 1);  // ties: fewer X re-reads with wider CTAs
      if (score > best + 1e-9) {
        best = score;
        c.nb = nb;
        c.splits = splits;
      }
    }
  }
  c.score = best;
  // At most one CTA per SM (small N, no split): an 8-warp CTA leaves half of
  // the SM's 16 warp slots empty while the kernel is bound by the latency of
  // its few loads in flight; 16 warps put twice as many in flight (H100,
  // 4096 x 4096 bf16: 5.6 -> 5.3 us, 5.2 -> 4.1 us with programmatic launch;
  // notes/wq-decode.md). With more CTAs than SMs two 8-warp CTAs fill an SM
  // and balance better.
  if (native && c.splits == 1 && ceil_div(n_blocks, c.nb) <= sms) c.warps = 16;
  // Per-thread weight bytes per unit ~32-64, ring depth for ~64-96 in flight.
  const int per_step = native ? d.weight_bits / 4 : 1;
  if (native) {
    c.unit = unit_for(c.nb * per_step >= 4 ? 1 : 2);  // <= 4 weight vectors per thread per unit
    c.stages = c.nb * c.unit * per_step <= 1 ? 4 : 2;
  } else if (d.format == LOWBIT_WQ_FORMAT_AWQ) {
    c.unit = unit_for(c.nb == 2 ? 2 : 4);
    c.stages = 2;
  } else {
    c.unit = d.act_order ? 1 : unit_for(c.nb == 1 ? 4 : 2);
    c.stages = 2;
  }
  const Forced f = read_env();
  if (f.nb > 0) {
    c.nb = std::min(floor_pow2(f.nb), native ? 4 : max_nb);
    while (native && c.nb > 1 && ceil_div(d.n, 16) % c.nb != 0) c.nb /= 2;
  }
  if (f.unit > 0) c.unit = d.act_order && !native ? 1 : unit_for(std::min(f.unit, 8));
  if (f.warps > 0) c.warps = std::min(f.warps, 16);
  if (f.stages > 0) c.stages = std::clamp(f.stages / 2 * 2, 2, 8);
  if (f.splits > 0) c.splits = std::min(f.splits, 64);
  c.tuned = f.nb || f.unit || f.warps || f.stages || f.splits;
  c.blocks_x = ceil_div(n_blocks, c.nb);
  const int64_t units = ceil_div(c.k_steps, c.unit);
  c.steps_per_split = ceil_div(units, c.splits) * c.unit;
  c.splits = ceil_div(c.k_steps, c.steps_per_split);
  return c;
}

}  // namespace

KernelSpec base_spec(const char* header, const char* function, const char* params, int threads) {
  KernelSpec s;
  s.family = "wq";
  s.header = header;
  s.function = function;
  s.params_type = params;
  s.threads = threads;
  return s;
}

uint64_t align256(uint64_t v) { return (v + 255) / 256 * 256; }

std::vector<KernelSpec> repack_specs(const Problem& p) {
  const lowbit_wq_matmul_desc& d = p.d;
  const std::vector<std::pair<std::string, std::string>> constants = {{"kFormat", std::to_string(d.format)},
                                                                      {"kBits", std::to_string(d.weight_bits)},
                                                                      {"kSym", d.symmetric ? "true" : "false"},
                                                                      {"kActOrder", d.act_order ? "true" : "false"}};
  std::vector<KernelSpec> specs;
  if (d.act_order) {
    KernelSpec s = base_spec("wq_repack.cuh", "lowbit::wq_perm_kernel", "lowbit::WqRepackParams", 1024);
    s.constants = constants;
    specs.push_back(std::move(s));
  }
  KernelSpec s = base_spec("wq_repack.cuh", "lowbit::wq_repack_kernel", "lowbit::WqRepackParams", 256);
  s.constants = constants;
  specs.push_back(std::move(s));
  return specs;
}

RepackSources repack_sources(const RunArgs& args, const lowbit_wq_matmul_desc& d) {
  RepackSources s;
  s.w = args.get(LOWBIT_ARG_W, "packed weights", true, 4);
  s.scale = args.get(LOWBIT_ARG_W_SCALE, "scales", true, 2);
  s.zero = d.symmetric ? 0 : args.get(LOWBIT_ARG_W_ZERO, "zero points", true, 4);
  s.g_idx = d.act_order ? args.get(LOWBIT_ARG_G_IDX, "g_idx", true, 4) : 0;
  return s;
}

void launch_repack(const Problem& p, const WqNativeLayout& layout, const RepackSources& src, uint64_t out,
                   const CUfunction* functions, int sm_count, CUstream stream) {
  const lowbit_wq_matmul_desc& d = p.d;
  WqRepackParams k{};
  k.w = src.w;
  k.scale = src.scale;
  k.zero = src.zero;
  k.g_idx = src.g_idx;
  k.out = out;
  k.n = d.n;
  k.k = d.k;
  k.ngroups = p.ngroups;
  k.group = d.group_size;
  k.np = layout.np;
  k.kp = layout.kp;
  k.nt = layout.nt;
  k.kc = layout.kc;
  k.scale_offset = layout.scale_offset;
  k.zero_offset = layout.zero_offset;
  k.perm_offset = layout.perm_offset;
  k.weight_words = layout.weight_bytes / 4;
  size_t i = 0;
  if (d.act_order) launch_kernel(functions[i++], 1, 1, 1, 1024, 0, stream, &k);
  const int64_t total = k.weight_words + layout.ngroups * layout.np + (d.symmetric ? 0 : layout.ngroups * layout.nt * 8);
  const unsigned grid = unsigned(std::clamp<int64_t>(ceil_div(total, 256), 1, int64_t(sm_count) * 16));
  launch_kernel(functions[i], grid, 1, 1, 256, 0, stream, &k);
}

int64_t run_rows(const RunArgs& args, const lowbit_wq_matmul_desc& d) {
  const uint64_t rows_arg = args.get(LOWBIT_ARG_ROWS, "row count (optional)", false, 1);
  if (rows_arg == 0) return d.m;
  if (rows_arg > uint64_t(d.m)) fail(LOWBIT_INVALID_ARGUMENT, "LOWBIT_ARG_ROWS = {} is above the plan's m = {}", rows_arg, d.m);
  return int64_t(rows_arg);
}

void launch_permute(const Problem& p, uint64_t x, uint64_t xp, uint64_t perm, int64_t rows, CUfunction function,
                    int sm_count, CUstream stream) {
  WqPermuteParams pp{};
  pp.x = x;
  pp.xp = xp;
  pp.perm = perm;
  pp.m = rows;
  pp.k = p.d.k;
  pp.x_stride = p.x_stride;
  const unsigned grid = unsigned(std::clamp<int64_t>(ceil_div(rows * p.d.k, 256), 1, int64_t(sm_count) * 8));
  launch_kernel(function, grid, 1, 1, 256, 0, stream, &pp);
}

void launch_reduce(const Problem& p, uint64_t partial, uint64_t y, uint64_t bias, int64_t rows, int64_t splits,
                   CUfunction function, int sm_count, CUstream stream) {
  WqReduceParams r{};
  r.partial = partial;
  r.y = y;
  r.bias = bias;
  r.m = rows;
  r.m_plan = p.d.m;
  r.n = p.d.n;
  r.y_stride = p.y_stride;
  r.splits = splits;
  const unsigned grid = unsigned(std::clamp<int64_t>(ceil_div(rows * p.d.n, 256), 1, int64_t(sm_count) * 8));
  launch_kernel(function, grid, 1, 1, 256, 0, stream, &r);
}

JsonObject matmul_problem_json(const Problem& p) {
  const lowbit_wq_matmul_desc& d = p.d;
  JsonObject o;
  o.add("op", "matmul")
      .add("format", format_name(d.format))
      .add("weight_bits", int64_t(d.weight_bits))
      .add("group_size", d.group_size)
      .add("symmetric", d.symmetric != 0)
      .add("act_order", d.act_order != 0)
      .add("m", d.m)
      .add("n", d.n)
      .add("k", d.k)
      .add("act_dtype", dtype_name(d.act_dtype))
      .add("scale_dtype", dtype_name(d.scale_dtype))
      .add("has_bias", d.has_bias != 0)
      .add("programmatic_launch_requested", d.programmatic_launch != 0)
      .add("x_row_stride", p.x_stride)
      .add("y_row_stride", p.y_stride)
      .add("deterministic", true);
  return o;
}

bool uses_gemm(const lowbit_wq_matmul_desc& d) {
  const int path = config_knob("path");
  if (path == 1 || path == 2) return path == 2;
  return ref::wq_rounds_weights(d);
}

int config_knob(const char* key) { return env_knob("LOWBIT_WQ_CONFIG", key); }

namespace {

class MatmulPlan final : public OpPlan {
 public:
  MatmulPlan(const Problem& p, const DeviceTraits& device) : p_(p), sm_count_(std::max(device.sm_count, 1)) {
    const lowbit_wq_matmul_desc& d = p.d;
    c_ = choose_config(p, device);
    // Programmatic launch needs sm_90; on older targets the flag is ignored
    // (the kernel's griddepcontrol instructions compile to nothing there).
    programmatic_ = d.programmatic_launch != 0 && device.target.sm >= 90;
    native_act_ = d.format == LOWBIT_WQ_FORMAT_NATIVE && d.act_order;
    if (native_act_) {
      KernelSpec s = base_spec("wq_matmul.cuh", "lowbit::wq_permute_kernel", "lowbit::WqPermuteParams", 256);
      s.types = {{"AT", device_type(d.act_dtype)}};
      specs_.push_back(std::move(s));
      xp_bytes_ = align256(uint64_t(d.m) * uint64_t(d.k) * 2);
    }
    KernelSpec s = base_spec("wq_matmul.cuh", "lowbit::wq_matmul_kernel", "lowbit::WqMatmulParams", 32 * c_.warps);
    s.types = {{"AT", device_type(d.act_dtype)}, {"ST", device_type(d.scale_dtype)}};
    const int fmt = d.format;
    s.constants = {{"kFormat", std::to_string(fmt)},
                   {"kBits", std::to_string(d.weight_bits)},
                   {"kGroup", std::to_string(d.group_size)},
                   {"kSym", d.symmetric ? "true" : "false"},
                   {"kActOrder", d.act_order && d.format != LOWBIT_WQ_FORMAT_NATIVE ? "true" : "false"},
                   {"kMT", std::to_string(c_.m_tile)},
                   {"kNB", std::to_string(c_.nb)},
                   {"kUnit", std::to_string(c_.unit)},
                   {"kStages", std::to_string(c_.stages)}};
    // At most 128 registers: two CTAs of 8 warps (16 warps) per SM.
    s.min_blocks_per_sm = std::max(1, 512 / (32 * c_.warps));
    main_index_ = specs_.size();
    specs_.push_back(std::move(s));
    if (c_.splits > 1) {
      KernelSpec r = base_spec("wq_matmul.cuh", "lowbit::wq_reduce_kernel", "lowbit::WqReduceParams", 256);
      r.types = {{"AT", device_type(d.act_dtype)}};
      specs_.push_back(std::move(r));
      partial_bytes_ = align256(uint64_t(c_.splits) * uint64_t(d.m) * uint64_t(d.n) * 4);
    }
    if (d.format == LOWBIT_WQ_FORMAT_NATIVE)
      layout_ = wq_native_layout(d.n, d.k, d.weight_bits, d.group_size, d.symmetric != 0, d.act_order != 0, 2);
  }

  const char* family() const override { return "wq"; }
  const std::vector<KernelSpec>& kernels() const override { return specs_; }
  size_t workspace_size() const override { return size_t(xp_bytes_ + partial_bytes_); }

  void run(const RunArgs& args, uint64_t workspace, size_t, const CUfunction* functions, CUstream stream) const override {
    const lowbit_wq_matmul_desc& d = p_.d;
    const int64_t rows = run_rows(args, d);
    WqMatmulParams k{};
    k.x = args.get(LOWBIT_ARG_X, "activations", true, 16);
    k.y = args.get(LOWBIT_ARG_Y, "output", true, 2);
    k.bias = d.has_bias ? args.get(LOWBIT_ARG_BIAS, "bias", true, 2) : 0;
    if (d.format == LOWBIT_WQ_FORMAT_NATIVE) {
      const uint64_t base = args.get(LOWBIT_ARG_W_NATIVE, "native weights", true, 16);
      k.w = base;
      k.scale = base + uint64_t(layout_.scale_offset);
      k.zero = d.symmetric ? 0 : base + uint64_t(layout_.zero_offset);
      k.n_tiles = layout_.nt;
    } else {
      k.w = args.get(LOWBIT_ARG_W, "packed weights (qweight)", true, 16);
      k.scale = args.get(LOWBIT_ARG_W_SCALE, "scales", true, 16);
      k.zero = d.symmetric ? 0 : args.get(LOWBIT_ARG_W_ZERO, "zero points (qzeros)", true, 4);
      k.g_idx = d.act_order ? args.get(LOWBIT_ARG_G_IDX, "g_idx (act-order)", true, 4) : 0;
    }
    k.m = rows;
    k.m_plan = d.m;
    k.n = d.n;
    k.k = d.k;
    k.x_stride = p_.x_stride;
    k.y_stride = p_.y_stride;
    k.ngroups = p_.ngroups;
    k.k_steps = c_.k_steps;
    k.steps_per_split = c_.steps_per_split;
    if (native_act_) {
      launch_permute(p_, k.x, workspace, k.w + uint64_t(layout_.perm_offset), rows, functions[0], sm_count_, stream);
      k.x = workspace;
      k.x_stride = d.k;
    }
    if (c_.splits > 1) k.partial = workspace + xp_bytes_;
    const unsigned grid_z = c_.m_tile == 8 ? unsigned(ceil_div(rows, 8)) : 1u;
    launch_kernel(functions[main_index_], unsigned(c_.blocks_x), unsigned(c_.splits), grid_z, unsigned(32 * c_.warps), 0,
                  stream, &k, programmatic_);
    if (c_.splits > 1)
      launch_reduce(p_, k.partial, k.y, k.bias, rows, c_.splits, functions[main_index_ + 1], sm_count_, stream);
  }

  std::string describe() const override {
    const lowbit_wq_matmul_desc& d = p_.d;
    std::string config = JsonObject()
                             .add("m_tile", int64_t(c_.m_tile))
                             .add("n_block_columns", c_.block_n)
                             .add("n_blocks_per_cta", int64_t(c_.nb))
                             .add("k_per_step", c_.step_k)
                             .add("steps_per_unit", int64_t(c_.unit))
                             .add("warps", int64_t(c_.warps))
                             .add("stages", int64_t(c_.stages))
                             .add("split_k", c_.splits)
                             .add("steps_per_split", c_.steps_per_split)
                             .add("grid", fmt::format("{}x{}x{}", c_.blocks_x, c_.splits, c_.m_tile == 8 ? "ceil(rows/8)" : "1"))
                             .add("programmatic_launch", programmatic_)
                             .add("from_env", c_.tuned)
                             .add("score", c_.score)
                             .str();
    return matmul_problem_json(p_)
        .add("exact_weights", !(d.act_order && d.format != LOWBIT_WQ_FORMAT_NATIVE))
        .add("path", d.act_order && d.format != LOWBIT_WQ_FORMAT_NATIVE
                         ? "gptq act-order read directly (per-value groups, slow; repack to native for speed)"
                         : native_act_ ? "native with permuted X" : "direct")
        .raw("config", config)
        .str();
  }

 private:
  Problem p_;
  int sm_count_;
  Config c_;
  bool native_act_ = false;
  bool programmatic_ = false;
  size_t main_index_ = 0;
  uint64_t xp_bytes_ = 0, partial_bytes_ = 0;
  WqNativeLayout layout_{};
  std::vector<KernelSpec> specs_;
};

class RepackPlan final : public OpPlan {
 public:
  RepackPlan(const Problem& p, const DeviceTraits& device) : p_(p), sm_count_(std::max(device.sm_count, 1)) {
    const lowbit_wq_matmul_desc& d = p.d;
    layout_ = wq_native_layout(d.n, d.k, d.weight_bits, d.group_size, d.symmetric != 0, d.act_order != 0, 2);
    specs_ = repack_specs(p);
  }

  const char* family() const override { return "wq"; }
  const std::vector<KernelSpec>& kernels() const override { return specs_; }

  void run(const RunArgs& args, uint64_t, size_t, const CUfunction* functions, CUstream stream) const override {
    const lowbit_wq_matmul_desc& d = p_.d;
    const RepackSources src = repack_sources(args, d);
    const uint64_t out = args.get(LOWBIT_ARG_W_NATIVE, "native weights (output)", true, 16);
    launch_repack(p_, layout_, src, out, functions, sm_count_, stream);
  }

  std::string describe() const override {
    const lowbit_wq_matmul_desc& d = p_.d;
    return JsonObject()
        .add("op", "repack")
        .add("format", format_name(d.format))
        .add("weight_bits", int64_t(d.weight_bits))
        .add("group_size", d.group_size)
        .add("symmetric", d.symmetric != 0)
        .add("act_order", d.act_order != 0)
        .add("n", d.n)
        .add("k", d.k)
        .add("scale_dtype", dtype_name(d.scale_dtype))
        .add("native_bytes", layout_.total_bytes)
        .add("scale_offset", layout_.scale_offset)
        .add("zero_offset", layout_.zero_offset)
        .add("perm_offset", layout_.perm_offset)
        .add("deterministic", true)
        .str();
  }

 private:
  Problem p_;
  int sm_count_;
  WqNativeLayout layout_{};
  std::vector<KernelSpec> specs_;
};

}  // namespace

void init_desc(lowbit_wq_matmul_desc* d) {
  std::memset(d, 0, sizeof(*d));
  d->struct_size = sizeof(*d);
  d->op = LOWBIT_WQ_OP_MATMUL;
  d->format = LOWBIT_WQ_FORMAT_NATIVE;
  d->weight_bits = 4;
  d->group_size = 128;
  d->m = 1;
  d->act_dtype = LOWBIT_DTYPE_F16;
  d->scale_dtype = LOWBIT_DTYPE_F16;
  d->alignment = 16;
}

lowbit_wq_matmul_desc read_desc(const void* desc) {
  if (desc == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "the lowbit_wq_matmul_desc pointer is NULL");
  lowbit_wq_matmul_desc d;
  init_desc(&d);
  uint32_t size = 0;
  std::memcpy(&size, desc, sizeof(size));
  // Callers built against the header before programmatic_launch existed pass
  // the shorter struct; the field then keeps its default (0).
  check_struct_size(size, offsetof(lowbit_wq_matmul_desc, programmatic_launch), sizeof(lowbit_wq_matmul_desc),
                    "lowbit_wq_matmul_desc");
  std::memcpy(&d, desc, size);
  return d;
}

uint64_t native_bytes(const lowbit_wq_matmul_desc& d) {
  check_weight_shape(d);
  return uint64_t(
      wq_native_layout(d.n, d.k, d.weight_bits, d.group_size, d.symmetric != 0, d.act_order != 0, 2).total_bytes);
}

std::unique_ptr<OpPlan> create(const void* desc, const DeviceTraits& device) {
  const Problem p = check(read_desc(desc));
  if (p.d.op == LOWBIT_WQ_OP_REPACK) return std::make_unique<RepackPlan>(p, device);
  // Both matmul paths are built on mma.m16n8k16 (bf16/f16).
  if (device.target.sm < 80)
    fail(LOWBIT_UNSUPPORTED, "the weight-only matmul needs sm_80 or newer (bf16/f16 mma.m16n8k16); target is {}",
         device.target.name());
  if (uses_gemm(p.d)) return create_gemm_plan(p, device);
  return std::make_unique<MatmulPlan>(p, device);
}

void reference(const void* desc, const lowbit_arg* args, size_t count) {
  const Problem p = check(read_desc(desc));
  ref::wq_reference(p.d, args, count);
}

}  // namespace lowbit::wq
