#include "ops/quantize.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/dtype.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "ref/quantize.hpp"

// The kernels' parameter struct, shared with quantize.cuh.
#include <cstdint>
#include "quantize_params.h"

namespace lowbit::quantize {

namespace {

// Launch configuration defaults (tuned on H100/H200, notes/quantize-perf.md).
// LOWBIT_DEV_QUANTIZE_TUNE="vec=16,unroll=4,bpsm=8,hints=0,dqhints=1,per=4" overrides
// them for tuning sessions (developer knob, read at plan creation; it changes
// the kernels and thus their cache keys).
struct Tune {
  int vec_bytes = 32;     // bytes of X per vector (the wide side): quantize-like ops
  int unroll = 1;         // vectors per thread per step (loads run one step ahead)
  int blocks_per_sm = 4;  // resident 256-thread blocks per SM (also the __launch_bounds__ minimum)
  int dq_vec_bytes = 16;  // dequantize: bytes of X per vector
  int dq_unroll = 4;
  int dq_blocks_per_sm = 3;
  int q4_vec_bytes = 64;  // quantize to packed 4-bit: bytes of X per vector (16 bytes of Q per 32 elements)
  int q4_blocks_per_sm = 3;
  int hints = 0;          // streaming cache hints on loads / stores (ld.nc L1::no_allocate, st.cs)
  int dq_hints = 1;       // dequantize: the same (H100: +2-3 points of copy, notes/quantize-perf.md v4)
  int per = 0;            // dynamic segments: target vectors per thread (0: 64 bytes of X)
  int seg_threads = 0;    // dynamic segments: threads per segment (0: from per)
  int two_pass = 0;       // dynamic segments: read each segment twice (range, then quantize)
  // sm_90+: the input stream staged in shared memory by bulk copies
  // (quantize_staged.cuh; 0 keeps the register-staged kernels everywhere).
  int staged = 1;
  int staged_tile_bytes = 16384;  // elementwise / per-group tiles: bytes of the input stream
  int staged_stages = 6;          // tiles in flight per block (per-token: fewer when rows are long)
  int staged_blocks_per_sm = 4;   // at most; fewer where shared memory runs out
  int staged_grid = 0;            // tests: at most this many blocks (many tiles per block); 0 = no cap
  int staged_per_vector = 0;      // dequantize with a scale per vector (per-group) staged for 8-bit Q too
  int staged_dynamic_row_bytes = -1;  // dynamic per-token: staged when a row has more bytes of X (-1: never)
  int staged_all = 0;             // tests: every eligible quantize / dequantize / dynamic plan staged
};

// Read at every plan creation (a developer knob; tests switch it between plans).
Tune tune() {
  Tune r;
  for_each_env_knob("LOWBIT_DEV_QUANTIZE_TUNE", [&](std::string_view k, int v) {
    if (k == "vec" && v >= 1 && v <= 64 && (v & (v - 1)) == 0) r.vec_bytes = v;
    else if (k == "dqvec" && v >= 1 && v <= 64 && (v & (v - 1)) == 0) r.dq_vec_bytes = v;
    else if (k == "dqunroll" && v >= 1 && v <= 16) r.dq_unroll = v;
    else if (k == "q4vec" && v >= 1 && v <= 64 && (v & (v - 1)) == 0) r.q4_vec_bytes = v;
    else if (k == "q4bpsm" && v >= 1 && v <= 64) r.q4_blocks_per_sm = v;
    else if (k == "dqbpsm" && v >= 1 && v <= 64) r.dq_blocks_per_sm = v;
    else if (k == "unroll" && v >= 1 && v <= 16) r.unroll = v;
    else if (k == "bpsm" && v >= 1 && v <= 64) r.blocks_per_sm = v;
    else if (k == "hints") r.hints = v != 0;
    else if (k == "dqhints") r.dq_hints = v != 0;
    else if (k == "per" && v >= 1 && v <= 8) r.per = v;
    else if (k == "segt" && v >= 1 && v <= 1024 && (v <= 32 ? (v & (v - 1)) == 0 : v % 32 == 0)) r.seg_threads = v;
    else if (k == "twopass") r.two_pass = v != 0;
    else if (k == "staged") r.staged = v != 0;
    else if (k == "stile" && v >= 1 && v <= 64) r.staged_tile_bytes = v * 1024;
    else if (k == "sstages" && v >= 1 && v <= 8) r.staged_stages = v;
    else if (k == "sbpsm" && v >= 1 && v <= 8) r.staged_blocks_per_sm = v;
    else if (k == "sgrid" && v >= 1) r.staged_grid = v;
    else if (k == "sgroup") r.staged_per_vector = v != 0;
    else if (k == "sdyn" && v >= 0) r.staged_dynamic_row_bytes = v * 1024;
    else if (k == "sall") r.staged_all = v != 0;
  });
  return r;
}

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;  // dynamic per-tensor: partial ranges of the reduce kernel
constexpr int kMaxSegmentBytes = 128;  // dynamic segments: bytes of X a thread holds in registers
constexpr int kTargetSegmentBytes = 64;  // ... and the share it aims for
constexpr int kMaxPer = 16;            // ... and at most this many vectors (a 32-bit mask tracks them)

bool is_quantized(lowbit_dtype t) {
  return t == LOWBIT_DTYPE_S8 || t == LOWBIT_DTYPE_U8 || t == LOWBIT_DTYPE_S4 || t == LOWBIT_DTYPE_U4;
}
bool is_known(lowbit_dtype t) { return dtype_name(t) != nullptr; }
bool is_packed(lowbit_dtype t) { return t == LOWBIT_DTYPE_S4 || t == LOWBIT_DTYPE_U4; }
bool is_signed_q(lowbit_dtype t) { return t == LOWBIT_DTYPE_S8 || t == LOWBIT_DTYPE_S4; }

const char* device_type(lowbit_dtype t) {
  switch (t) {
    case LOWBIT_DTYPE_F32: return "float";
    case LOWBIT_DTYPE_F64: return "double";
    case LOWBIT_DTYPE_F16: return "lowbit::f16";
    case LOWBIT_DTYPE_BF16: return "lowbit::bf16";
    case LOWBIT_DTYPE_S8: case LOWBIT_DTYPE_S4: return "int8_t";
    case LOWBIT_DTYPE_U8: case LOWBIT_DTYPE_U4: return "uint8_t";
    default: return "void";
  }
}

const char* op_name(lowbit_quantize_op op) {
  switch (op) {
    case LOWBIT_QOP_QUANTIZE: return "quantize";
    case LOWBIT_QOP_DEQUANTIZE: return "dequantize";
    case LOWBIT_QOP_QUANTIZE_BACKWARD: return "quantize_backward";
    case LOWBIT_QOP_DEQUANTIZE_BACKWARD: return "dequantize_backward";
    case LOWBIT_QOP_FAKE_QUANTIZE: return "fake_quantize";
    case LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD: return "fake_quantize_backward";
    case LOWBIT_QOP_DYNAMIC_QUANTIZE: return "dynamic_quantize";
    default: return nullptr;
  }
}

const char* scope_name(lowbit_quantize_scope s) {
  switch (s) {
    case LOWBIT_SCOPE_PER_TENSOR: return "per_tensor";
    case LOWBIT_SCOPE_PER_CHANNEL: return "per_channel";
    case LOWBIT_SCOPE_PER_TOKEN: return "per_token";
    case LOWBIT_SCOPE_PER_GROUP: return "per_group";
    default: return nullptr;
  }
}

int32_t type_min(lowbit_dtype q) {
  return q == LOWBIT_DTYPE_S8 ? -128 : q == LOWBIT_DTYPE_S4 ? -8 : 0;
}
int32_t type_max(lowbit_dtype q) {
  return q == LOWBIT_DTYPE_S8 ? 127 : q == LOWBIT_DTYPE_U8 ? 255 : q == LOWBIT_DTYPE_S4 ? 7 : 15;
}

int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p *= 2;
  return p;
}
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The validated problem.
struct Problem {
  lowbit_quantize_desc desc;
  int64_t rows = 0, cols = 0, stride = 0, numel = 0;
  int32_t qmin = 0, qmax = 0;
  int axis = 0;                  // per-channel, normalized to 0..rank-1
  int64_t ch_inner = 1, ch_count = 1;
  int64_t group = 0;             // per-group G
  int64_t num_scales = 1;        // entries of the SCALE / ZERO_POINT arrays
  int64_t q_row_bytes = 0;       // bytes per row of Q
};

Problem check(const lowbit_quantize_desc& d) {
  Problem p;
  p.desc = d;
  if (op_name(d.op) == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_quantize_desc.op = {} is not a LOWBIT_QOP_* value", d.op);
  if (scope_name(d.scope) == nullptr)
    fail(LOWBIT_INVALID_ARGUMENT, "lowbit_quantize_desc.scope = {} is not a LOWBIT_SCOPE_* value", d.scope);
  for (auto [name, t] : {std::pair{"x_dtype", d.x_dtype}, {"q_dtype", d.q_dtype}, {"scale_dtype", d.scale_dtype}})
    if (!is_known(t)) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_quantize_desc.{} = {} is not a LOWBIT_DTYPE_* value", name, t);
  if (d.symmetric != 0 && d.symmetric != 1)
    fail(LOWBIT_INVALID_ARGUMENT, "lowbit_quantize_desc.symmetric = {} (must be 0 or 1)", d.symmetric);
  if (d.alignment != 1 && d.alignment != 2 && d.alignment != 4 && d.alignment != 8 && d.alignment != 16)
    fail(LOWBIT_INVALID_ARGUMENT, "alignment = {} (must be 1, 2, 4, 8 or 16)", d.alignment);
  if (!dtype_is_float(d.x_dtype))
    fail(LOWBIT_UNSUPPORTED, "x_dtype {} is not a floating-point type (f32, f64, f16, bf16)", dtype_name(d.x_dtype));
  if (!is_quantized(d.q_dtype))
    fail(LOWBIT_UNSUPPORTED, "q_dtype {} is not a quantized type (s8, u8, s4, u4)", dtype_name(d.q_dtype));
  if (d.scale_dtype != LOWBIT_DTYPE_F32 && d.scale_dtype != d.x_dtype)
    fail(LOWBIT_UNSUPPORTED, "scale_dtype {} must be f32 or the x type {}", dtype_name(d.scale_dtype),
         dtype_name(d.x_dtype));
  if (d.rank < 1 || d.rank > 4) fail(LOWBIT_INVALID_PROBLEM, "rank = {} (must be 1..4)", d.rank);
  // The 2^48 bound is on the product of the nonzero dims, not on the running
  // product (which a zero dim resets): an empty tensor's other dims still
  // feed rows, cols, the per-channel inner extent and the packed row bytes,
  // so none of those may overflow either (tests/unit/test_fuzz_regressions.cpp).
  p.numel = 1;
  int64_t extent = 1;  // the product of the nonzero dims, <= 2^48
  for (int i = 0; i < d.rank; ++i) {
    if (d.dims[i] < 0) fail(LOWBIT_INVALID_PROBLEM, "dims[{}] = {} is negative", i, d.dims[i]);
    if (d.dims[i] == 0) {
      p.numel = 0;
      continue;
    }
    if (extent > (int64_t(1) << 48) / d.dims[i])
      fail(LOWBIT_INVALID_PROBLEM, "the tensor has more than 2^48 elements (dims[{}] = {}; zero dims aside)", i,
           d.dims[i]);
    extent *= d.dims[i];
    p.numel *= d.dims[i];
  }
  p.cols = d.dims[d.rank - 1];
  p.rows = 1;
  for (int i = 0; i + 1 < d.rank; ++i) p.rows *= d.dims[i];
  if (d.x_row_stride < 0 || (d.x_row_stride != 0 && d.x_row_stride < p.cols))
    fail(LOWBIT_INVALID_PROBLEM, "x_row_stride = {} is smaller than the row length {}", d.x_row_stride, p.cols);
  if (d.x_row_stride > (int64_t(1) << 48))
    fail(LOWBIT_INVALID_PROBLEM, "x_row_stride = {} is absurdly large", d.x_row_stride);
  p.stride = d.x_row_stride != 0 ? d.x_row_stride : p.cols;
  if (d.qmin == 0 && d.qmax == 0) {
    p.qmin = type_min(d.q_dtype);
    p.qmax = type_max(d.q_dtype);
  } else {
    if (d.qmax < d.qmin) fail(LOWBIT_INVALID_PROBLEM, "qmax = {} is less than qmin = {}", d.qmax, d.qmin);
    if (d.qmin < type_min(d.q_dtype) || d.qmax > type_max(d.q_dtype))
      fail(LOWBIT_INVALID_PROBLEM, "[qmin, qmax] = [{}, {}] is outside the {} range [{}, {}]", d.qmin, d.qmax,
           dtype_name(d.q_dtype), type_min(d.q_dtype), type_max(d.q_dtype));
    p.qmin = d.qmin;
    p.qmax = d.qmax;
  }
  if (d.alignment < dtype_bytes(d.x_dtype))
    fail(LOWBIT_INVALID_PROBLEM, "alignment = {} is below the {}-byte alignment of x_dtype {}", d.alignment,
         dtype_bytes(d.x_dtype), dtype_name(d.x_dtype));
  const bool packed = is_packed(d.q_dtype);
  p.q_row_bytes = packed ? (p.cols + 1) / 2 : p.cols;
  switch (d.scope) {
    case LOWBIT_SCOPE_PER_TENSOR: p.num_scales = 1; break;
    case LOWBIT_SCOPE_PER_CHANNEL: {
      if (d.axis < -d.rank || d.axis >= d.rank)
        fail(LOWBIT_INVALID_PROBLEM, "axis = {} is outside the rank-{} tensor (-{}..{})", d.axis, d.rank, d.rank, d.rank - 1);
      p.axis = d.axis < 0 ? d.axis + d.rank : d.axis;
      p.ch_count = d.dims[p.axis];
      p.ch_inner = 1;
      for (int i = p.axis + 1; i + 1 < d.rank; ++i) p.ch_inner *= d.dims[i];
      p.num_scales = p.ch_count;
      break;
    }
    case LOWBIT_SCOPE_PER_TOKEN: p.num_scales = p.rows; break;
    case LOWBIT_SCOPE_PER_GROUP: {
      if (d.group_size <= 0) fail(LOWBIT_INVALID_PROBLEM, "group_size = {} (must be positive)", d.group_size);
      if (p.cols > 0 && p.cols % d.group_size != 0)
        fail(LOWBIT_INVALID_PROBLEM, "group_size = {} does not divide the last dim {}", d.group_size, p.cols);
      p.group = d.group_size;
      p.num_scales = p.cols == 0 ? 0 : p.rows * (p.cols / p.group);
      break;
    }
  }
  if (d.op == LOWBIT_QOP_DYNAMIC_QUANTIZE) {
    if (d.scope == LOWBIT_SCOPE_PER_CHANNEL)
      fail(LOWBIT_UNSUPPORTED, "dynamic quantize is per-tensor, per-token or per-group (not per-channel)");
    if (d.symmetric == 1 && !(p.qmin < 0 && p.qmax > 0))
      fail(LOWBIT_INVALID_PROBLEM,
           "symmetric dynamic quantize needs qmin < 0 < qmax (got [{}, {}]); use symmetric = 0 for unsigned ranges",
           p.qmin, p.qmax);
    if (d.symmetric == 0 && p.qmin == p.qmax)
      fail(LOWBIT_INVALID_PROBLEM, "asymmetric dynamic quantize needs qmin < qmax (got [{}, {}])", p.qmin, p.qmax);
    if (packed && d.scope == LOWBIT_SCOPE_PER_GROUP && p.group % 2 != 0 && p.cols != p.group)
      fail(LOWBIT_UNSUPPORTED,
           "dynamic per-group quantize to packed {} needs an even group_size (groups {} would share bytes)",
           dtype_name(d.q_dtype), p.group);
  }
  return p;
}

// Bytes of one element of the compute type (workspace of dynamic per-tensor).
int compute_bytes(lowbit_dtype x) { return x == LOWBIT_DTYPE_F64 ? 8 : 4; }

class QuantizePlan final : public OpPlan {
 public:
  QuantizePlan(const Problem& p, const DeviceTraits& device) : p_(p) {
    const lowbit_quantize_desc& d = p.desc;
    const Tune t = tune();
    xb_ = dtype_bytes(d.x_dtype);
    bits_ = is_packed(d.q_dtype) ? 4 : 8;
    const bool uses_q = d.op == LOWBIT_QOP_QUANTIZE || d.op == LOWBIT_QOP_DEQUANTIZE || d.op == LOWBIT_QOP_DYNAMIC_QUANTIZE;
    segmented_ = d.op == LOWBIT_QOP_DYNAMIC_QUANTIZE && d.scope != LOWBIT_SCOPE_PER_TENSOR;
    const int min_vec = bits_ == 4 ? 2 : 1;
    sm_count_ = std::max(device.sm_count, 1);

    // The [rows, cols] view: contiguous per-tensor problems are one long row.
    view_rows_ = p.rows;
    view_cols_ = p.cols;
    view_stride_ = p.stride;
    view_q_row_bytes_ = p.q_row_bytes;
    if (d.scope == LOWBIT_SCOPE_PER_TENSOR && p.rows > 1 && p.stride == p.cols && (bits_ == 8 || p.cols % 2 == 0)) {
      view_rows_ = 1;
      view_cols_ = p.numel;
      view_stride_ = p.numel;
      view_q_row_bytes_ = bits_ == 4 ? (p.numel + 1) / 2 : p.numel;
    }
    const int64_t seg_len = !segmented_ ? 0 : d.scope == LOWBIT_SCOPE_PER_TOKEN ? p.cols : p.group;
    const int64_t seg_per_row = !segmented_ || seg_len == 0 ? 1 : p.cols / seg_len;

    // Vector width: the widest (up to the tuned bytes of X) whose accesses the
    // promised alignment and the row layout keep aligned on both sides;
    // narrowed otherwise (describe says so). Per-group prefers vectors that
    // do not straddle groups.
    // Ops reading two tensors (x and dy) use half-width vectors.
    const bool two_inputs = d.op == LOWBIT_QOP_QUANTIZE_BACKWARD || d.op == LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD;
    const bool q4 = d.op == LOWBIT_QOP_QUANTIZE && bits_ == 4 && xb_ == 2;
    const int vec_bytes = d.op == LOWBIT_QOP_DEQUANTIZE ? t.dq_vec_bytes
                          : q4                          ? t.q4_vec_bytes
                                                        : t.vec_bytes / (two_inputs ? 2 : 1);
    vec_ = std::max(min_vec, vec_bytes / xb_);
    if (d.scope == LOWBIT_SCOPE_PER_GROUP && !segmented_) {
      int64_t gp = 1;
      while (p.group % (gp * 2) == 0 && gp * 2 <= vec_) gp *= 2;
      if (gp < vec_ && gp >= min_vec) {
        vec_ = int(gp);
        narrowed_ = true;
      }
    }
    // A vector wider than 16 bytes moves as 16-byte pieces: 16-byte
    // alignment is all it needs.
    auto x_ok = [&](int v) {
      if (d.alignment < std::min(v * xb_, 16)) return false;
      if (view_rows_ > 1 && view_stride_ % v != 0) return false;
      if (segmented_ && seg_per_row > 1 && seg_len % v != 0) return false;
      return true;
    };
    auto q_ok = [&](int v) {
      if (!uses_q) return true;
      const int64_t qbytes = int64_t(v) * bits_ / 8;
      if (d.alignment < std::min<int64_t>(qbytes, 16)) return false;
      if (view_rows_ > 1 && view_q_row_bytes_ % qbytes != 0) return false;
      if (segmented_ && seg_per_row > 1 && (seg_len * bits_ / 8) % qbytes != 0) return false;
      return true;
    };
    while (vec_ > min_vec && !(x_ok(vec_) && q_ok(vec_))) {
      vec_ /= 2;
      narrowed_ = true;
    }
    x_aligned_ = x_ok(vec_);
    q_aligned_ = q_ok(vec_);
    // Ops reading two tensors (x and dy) halve the unroll, and f64 keeps two
    // vectors per step: the registers stay within the __launch_bounds__
    // minimum of blocks per SM without spills.
    const bool dq = d.op == LOWBIT_QOP_DEQUANTIZE;
    bpsm_ = dq ? t.dq_blocks_per_sm : q4 ? t.q4_blocks_per_sm : t.blocks_per_sm;
    if (d.x_dtype == LOWBIT_DTYPE_F64) bpsm_ = std::min(bpsm_, 2);  // f64 division needs registers; not a speed target
    unroll_ = dq ? t.dq_unroll : std::max(1, two_inputs ? t.unroll / 2 : t.unroll);
    if (d.x_dtype == LOWBIT_DTYPE_F64) unroll_ = std::min(unroll_, 2);
    // Scale lookup: once per row (per-tensor, per-token, per-channel before
    // the last axis), once per step (per-group with one vector per step), per
    // vector, or per element (the last axis; groups narrower than a vector).
    scale_mode_ = 0;
    if (d.scope == LOWBIT_SCOPE_PER_GROUP && !segmented_)
      scale_mode_ = p.group % vec_ != 0 ? 2 : unroll_ == 1 ? 3 : 1;
    if (d.scope == LOWBIT_SCOPE_PER_CHANNEL && p.axis == d.rank - 1) scale_mode_ = 2;
    if (p.numel == 0) return;  // a no-op plan: nothing to compile

    KernelSpec base;
    base.family = "quantize";
    base.header = "quantize.cuh";
    base.function = "lowbit::quantize_kernel";
    base.params_type = "lowbit::QuantizeParams";
    base.types = {{"XT", device_type(d.x_dtype)}, {"QT", device_type(d.q_dtype)}, {"ST", device_type(d.scale_dtype)}};
    base.options = {"-fmad=false"};  // bit-exact arithmetic (the kernels also spell it out in PTX)
    // (NVRTC's -minimal would take ~20% off a cold compile, but options must
    // not depend on whether NVRTC is loadable: they are part of the cache key
    // a process without NVRTC computes too. Left to compile_options().)
    auto constants = [&](int kernel, int dyn_phase, int row_threads, int seg_threads, int per, bool single) {
      return std::vector<std::pair<std::string, std::string>>{
          {"kOp", std::to_string(d.op)},
          {"kScope", std::to_string(d.scope)},
          {"kVec", std::to_string(vec_)},
          {"kUnroll", std::to_string(unroll_)},
          {"kQmin", std::to_string(p.qmin)},
          {"kQmax", std::to_string(p.qmax)},
          {"kBits", std::to_string(bits_)},
          {"kSigned", is_signed_q(d.q_dtype) ? "true" : "false"},
          {"kGroup", std::to_string(std::max<int64_t>(p.group, 1))},
          {"kScaleMode", std::to_string(scale_mode_)},
          {"kRowThreads", std::to_string(row_threads)},
          {"kXAligned", x_aligned_ ? "true" : "false"},
          {"kQAligned", q_aligned_ ? "true" : "false"},
          {"kHints", (d.op == LOWBIT_QOP_DEQUANTIZE ? t.dq_hints : t.hints) ? "true" : "false"},
          {"kKernel", std::to_string(kernel)},
          {"kDynPhase", std::to_string(dyn_phase)},
          {"kSymmetric", d.symmetric ? "true" : "false"},
          {"kSegThreads", std::to_string(seg_threads)},
          {"kPer", std::to_string(per)},
          {"kSinglePass", single ? "true" : "false"},
      };
    };

    if (segmented_) {
      seg_len_ = seg_len;
      seg_per_row_ = seg_per_row;
      segments_ = p.rows * seg_per_row;
      seg_vectors_ = seg_len / vec_;
    }
    if (plan_staged(d, device, t, base, constants)) return;

    if (segmented_) {
      // One segment (a row or a group) per kSegThreads threads, in registers.
      // Packed output needs more registers for its nibble merges: half the data;
      // f32 / f64 (exact division inline) likewise.
      const int seg_bytes = bits_ == 4 || xb_ != 2 ? kMaxSegmentBytes / 2 : kMaxSegmentBytes;
      // Target 64 bytes of X per thread (more threads per segment, shorter
      // per-thread chains: H100, dynamic per-token bf16 -> s8 8192^2 81% ->
      // 87% of copy against 128); segments too long for that at 1024
      // threads still hold up to seg_bytes per thread in one pass.
      const int per_target = t.per > 0 ? std::min(t.per, kMaxPer)
                                       : std::clamp(std::min(seg_bytes, kTargetSegmentBytes) / (vec_ * xb_), 1, kMaxPer);
      // Segments share a warp in power-of-two lane groups; a segment of more
      // than a warp gets a whole block of any multiple of 32 threads, so that
      // rows like 14336 = 896 vectors of 16 run 448 threads x 2 vectors, not
      // 512 threads of which an eighth idle.
      int64_t st = std::max<int64_t>(1, ceil_div(seg_vectors_, per_target));
      st = st <= 32 ? next_pow2(st) : std::min<int64_t>(ceil_div(st, 32) * 32, 1024);
      if (t.seg_threads > 0) st = t.seg_threads;
      seg_threads_ = int(st);
      block_ = seg_threads_ > 32 ? seg_threads_ : kThreads;
      int64_t per = std::max<int64_t>(1, ceil_div(seg_vectors_, st));
      const int max_per = std::clamp(seg_bytes / (vec_ * xb_), 1, kMaxPer);
      single_pass_ = per <= max_per && !t.two_pass;
      per_ = int(std::min<int64_t>(t.two_pass && t.per > 0 ? t.per : per, max_per));
      KernelSpec s = base;
      s.threads = block_;
      s.min_blocks_per_sm = std::max(1, bpsm_ * kThreads / block_);
      s.constants = constants(1, 0, 1, seg_threads_, per_, single_pass_);
      specs_.push_back(std::move(s));
      const int64_t segs_per_block = block_ / seg_threads_;
      const int64_t max_blocks = int64_t(sm_count_) * std::max(1, bpsm_ * kThreads / block_);
      grid_[0][0] = unsigned(std::clamp<int64_t>(ceil_div(segments_, segs_per_block), 1, max_blocks));
      grid_[0][1] = 1;
      return;
    }

    // Elementwise: kRowThreads threads per row, kUnroll vectors each per step.
    chunks_per_row_ = view_cols_ / vec_;
    row_threads_ = int(std::min<int64_t>(kThreads, next_pow2(std::max<int64_t>(1, ceil_div(chunks_per_row_, unroll_)))));
    block_ = kThreads;
    const int64_t rows_per_block = kThreads / row_threads_;
    const int64_t max_blocks = int64_t(sm_count_) * bpsm_;
    const int64_t want_x = std::max<int64_t>(1, ceil_div(view_rows_, rows_per_block));
    const int64_t want_y = std::max<int64_t>(1, ceil_div(chunks_per_row_, int64_t(row_threads_) * unroll_));
    const int64_t gx = std::min(want_x, max_blocks);
    const int64_t gy = std::clamp<int64_t>(max_blocks / gx, 1, std::min<int64_t>(want_y, 65535));
    const bool dyn_tensor = d.op == LOWBIT_QOP_DYNAMIC_QUANTIZE;
    if (dyn_tensor) {
      // Phase 1: partial ranges into the workspace; phase 2 combines them in
      // every block and quantizes.
      const int64_t rx = std::min<int64_t>(gx, kMaxPartials);
      const int64_t ry = std::clamp<int64_t>(kMaxPartials / rx, 1, gy);
      num_partials_ = rx * ry;
      KernelSpec r = base;
      r.threads = kThreads;
      r.min_blocks_per_sm = bpsm_;
      r.constants = constants(0, 1, row_threads_, 1, 1, true);
      specs_.push_back(std::move(r));
      grid_[0][0] = unsigned(rx);
      grid_[0][1] = unsigned(ry);
    }
    KernelSpec s = base;
    s.threads = kThreads;
    s.min_blocks_per_sm = bpsm_;
    s.constants = constants(0, dyn_tensor ? 2 : 0, row_threads_, 1, 1, true);
    specs_.push_back(std::move(s));
    grid_[specs_.size() - 1][0] = unsigned(gx);
    grid_[specs_.size() - 1][1] = unsigned(gy);
  }

  // sm_90+: quantize, dequantize and dynamic per-token / per-group with the
  // input stream (X, or Q for dequantize) staged by bulk copies
  // (quantize_staged.cuh). Needs 16-byte aligned tiles: the promised
  // alignment, the row pitch and a row's whole vectors all multiples of 16
  // bytes. Returns false (the register-staged kernels run) otherwise.
  template <typename Constants>
  bool plan_staged(const lowbit_quantize_desc& d, const DeviceTraits& device, const Tune& t, const KernelSpec& base,
                   const Constants& constants) {
    const bool dq = d.op == LOWBIT_QOP_DEQUANTIZE;
    const bool elementwise = (d.op == LOWBIT_QOP_QUANTIZE || dq) && scale_mode_ != 2;
    if (t.staged == 0 || device.target.sm < 90 || xb_ == 8 || d.alignment < 16 || !x_aligned_ || !q_aligned_)
      return false;
    if (!elementwise && !segmented_) return false;
    // Where it pays (H100, notes/quantize-perf.md v5, v6): dequantize with a
    // scale per row (s4 [8192, 8192] per-tensor 84 -> 87 %, [4096, 14336]
    // 81 -> 86 % of copy), and per-group from 4-bit Q once its scales load
    // a tile ahead (s4 [4096, 14336] 82-83 -> 85.5-86.3 %; s8 stays on the
    // register kernel, 86-88 % against 85-86 % staged). Quantize and dynamic
    // per-token measured slower than the register kernels or within noise
    // (dynamic s8 on 14336-wide rows 82 -> 77 %, s4 72 -> 74-76 %); the
    // knobs keep them reachable for tuning and the tests.
    const bool pays = dq ? (scale_mode_ == 0 || bits_ == 4 || t.staged_per_vector != 0)
                         : segmented_ && seg_per_row_ == 1 && t.staged_dynamic_row_bytes >= 0 &&
                               seg_len_ * xb_ > t.staged_dynamic_row_bytes;
    if (!pays && t.staged_all == 0) return false;
    const int64_t in_vec = dq ? int64_t(vec_) * bits_ / 8 : int64_t(vec_) * xb_;
    const int64_t in_pitch = dq ? view_q_row_bytes_ : view_stride_ * xb_;
    const int64_t chunks = view_cols_ / vec_;
    if (chunks == 0 || (chunks * in_vec) % 16 != 0 || (view_rows_ > 1 && in_pitch % 16 != 0)) return false;
    constexpr int64_t kMaxStage = 48 * 1024;
    int64_t tile_vectors = 0;
    int stages = t.staged_stages, unroll = 1, seg_threads = 1;
    if (elementwise) {
      unroll = int(std::clamp<int64_t>(t.staged_tile_bytes / (int64_t(kThreads) * in_vec), 1, 16));
      tile_vectors = int64_t(kThreads) * unroll;
    } else {
      const int64_t seg_bytes = seg_vectors_ * in_vec;
      if (seg_bytes > kMaxStage || (seg_per_row_ > 1 && seg_vectors_ * vec_ != seg_len_)) return false;
      if (seg_per_row_ == 1) {
        // A row per tile; long rows keep fewer in flight (shared memory).
        tile_vectors = seg_vectors_;
        stages = int(std::clamp<int64_t>(2 * kMaxStage / std::max<int64_t>(seg_bytes, 1), 2, t.staged_stages));
        seg_threads = kThreads;
      } else {
        const int64_t groups = std::clamp<int64_t>(t.staged_tile_bytes / seg_bytes, 1, seg_per_row_);
        tile_vectors = groups * seg_vectors_;
        seg_threads = int(std::min<int64_t>(32, next_pow2(seg_vectors_)));
      }
    }
    tile_vectors = std::min(tile_vectors, std::max<int64_t>(chunks, 1));
    // Rows shorter than the tile target: as many vectors per thread as the
    // tile needs (each unrolled step past it would still cost a branch).
    if (elementwise) unroll = int(ceil_div(tile_vectors, int64_t(kThreads)));
    stage_bytes_ = (tile_vectors * in_vec + 127) / 128 * 128;
    tiles_per_row_ = ceil_div(chunks, tile_vectors);
    tile_vectors_ = tile_vectors;
    stages_ = stages;
    const int64_t smem = int64_t(stages) * stage_bytes_ + 8 * stages;
    // Tiles and stages from the knobs may ask for more than a block can have.
    if (smem > shared_memory_limit(device.target.sm)) return false;
    bpsm_ = int(std::clamp<int64_t>(shared_memory_limit(device.target.sm) / (smem + 1024), 1, t.staged_blocks_per_sm));
    unroll_ = unroll;
    if (scale_mode_ == 3) scale_mode_ = 1;  // one scale per vector (the step mapping is the register kernel's)
    staged_ = true;
    if (segmented_) {
      seg_threads_ = seg_threads;
      per_ = 1;
    }
    KernelSpec s = base;
    s.threads = kThreads;
    s.min_blocks_per_sm = bpsm_;
    s.dynamic_shared_bytes = int(smem);
    s.constants = constants(2, 0, 1, seg_threads, 1, true);
    s.constants.emplace_back("kStages", std::to_string(stages));
    specs_.push_back(std::move(s));
    block_ = kThreads;
    chunks_per_row_ = chunks;
    const int64_t tiles = view_rows_ * tiles_per_row_;
    int64_t max_blocks = int64_t(sm_count_) * bpsm_;
    if (t.staged_grid > 0) max_blocks = std::min<int64_t>(max_blocks, t.staged_grid);
    grid_[0][0] = unsigned(std::clamp<int64_t>(tiles, 1, max_blocks));
    grid_[0][1] = 1;
    return true;
  }

  const char* family() const override { return "quantize"; }
  const std::vector<KernelSpec>& kernels() const override { return specs_; }
  size_t workspace_size() const override {
    return size_t(num_partials_) * 2 * size_t(compute_bytes(p_.desc.x_dtype));
  }

  void run(const RunArgs& args, uint64_t workspace, size_t, const CUfunction* functions, CUstream stream) const override {
    const lowbit_quantize_desc& d = p_.desc;
    if (p_.numel == 0) return;  // no-op: nothing is read or written, pointers may be NULL
    uint64_t xa = x_aligned_ ? std::min<uint64_t>(uint64_t(vec_) * xb_, 16) : uint64_t(xb_);
    if (staged_) xa = 16;  // bulk copies of X, or (dequantize) its 16-byte rows of vectors
    uint64_t qa = q_aligned_ ? std::clamp<uint64_t>(uint64_t(vec_) * bits_ / 8, 1, 16) : 1;
    if (staged_ && d.op == LOWBIT_QOP_DEQUANTIZE) qa = 16;  // bulk copies of Q: 16-byte aligned
    const uint64_t sa = uint64_t(dtype_bytes(d.scale_dtype));
    QuantizeParams k{};
    switch (d.op) {
      case LOWBIT_QOP_QUANTIZE:
        k.x = args.get(LOWBIT_ARG_X, "input", true, xa);
        k.q = args.get(LOWBIT_ARG_Q, "output", true, qa);
        k.scale = args.get(LOWBIT_ARG_SCALE, "scale", true, sa);
        k.zero_point = args.get(LOWBIT_ARG_ZERO_POINT, "zero point (optional)", false, 4);
        break;
      case LOWBIT_QOP_DEQUANTIZE:
        k.q = args.get(LOWBIT_ARG_Q, "input", true, qa);
        k.x = args.get(LOWBIT_ARG_X, "output", true, xa);
        k.scale = args.get(LOWBIT_ARG_SCALE, "scale", true, sa);
        k.zero_point = args.get(LOWBIT_ARG_ZERO_POINT, "zero point (optional)", false, 4);
        break;
      case LOWBIT_QOP_QUANTIZE_BACKWARD:
      case LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD:
        k.x = args.get(LOWBIT_ARG_X, "saved input", true, xa);
        k.dy = args.get(LOWBIT_ARG_DY, "upstream gradient", true, xa);
        k.dx = args.get(LOWBIT_ARG_DX, "gradient output", true, xa);
        k.scale = args.get(LOWBIT_ARG_SCALE, "scale", true, sa);
        k.zero_point = args.get(LOWBIT_ARG_ZERO_POINT, "zero point (optional)", false, 4);
        break;
      case LOWBIT_QOP_DEQUANTIZE_BACKWARD:
        k.dy = args.get(LOWBIT_ARG_DY, "upstream gradient", true, xa);
        k.dx = args.get(LOWBIT_ARG_DX, "gradient output", true, xa);
        k.scale = args.get(LOWBIT_ARG_SCALE, "scale", true, sa);
        break;
      case LOWBIT_QOP_FAKE_QUANTIZE:
        k.x = args.get(LOWBIT_ARG_X, "input", true, xa);
        k.y = args.get(LOWBIT_ARG_Y, "output", true, xa);
        k.scale = args.get(LOWBIT_ARG_SCALE, "scale", true, sa);
        k.zero_point = args.get(LOWBIT_ARG_ZERO_POINT, "zero point (optional)", false, 4);
        break;
      case LOWBIT_QOP_DYNAMIC_QUANTIZE:
        k.x = args.get(LOWBIT_ARG_X, "input", true, xa);
        k.q = args.get(LOWBIT_ARG_Q, "output", true, qa);
        k.scale = args.get(LOWBIT_ARG_SCALE, "scale output", true, sa);
        k.zero_point = args.get(LOWBIT_ARG_ZERO_POINT,
                                d.symmetric ? "zero point output (optional: all 0)" : "zero point output", !d.symmetric, 4);
        break;
    }
    k.rows = view_rows_;
    k.cols = view_cols_;
    k.x_row_stride = view_stride_;
    k.q_row_bytes = view_q_row_bytes_;
    k.chunks_per_row = chunks_per_row_;
    k.ch_inner = std::max<int64_t>(p_.ch_inner, 1);
    k.ch_count = std::max<int64_t>(p_.ch_count, 1);
    k.groups_per_row = p_.group > 0 ? p_.cols / p_.group : 1;
    k.segments = segments_;
    k.seg_per_row = seg_per_row_;
    k.seg_len = seg_len_;
    k.seg_vectors = seg_vectors_;
    k.num_partials = num_partials_;
    k.workspace = workspace;
    k.tile_vectors = tile_vectors_;
    k.tiles_per_row = tiles_per_row_;
    k.stage_bytes = stage_bytes_;
    for (size_t i = 0; i < specs_.size(); ++i)
      launch_kernel(functions[i], grid_[i][0], grid_[i][1], 1, unsigned(specs_[i].threads),
                    unsigned(specs_[i].dynamic_shared_bytes), stream, &k);
  }

  std::string describe() const override {
    const lowbit_quantize_desc& d = p_.desc;
    JsonObject o;
    o.add("op", op_name(d.op))
        .add("scope", scope_name(d.scope))
        .add("x_dtype", dtype_name(d.x_dtype))
        .add("q_dtype", dtype_name(d.q_dtype))
        .add("scale_dtype", dtype_name(d.scale_dtype))
        .add("rows", p_.rows)
        .add("cols", p_.cols)
        .add("x_row_stride", p_.stride)
        .add("qmin", p_.qmin)
        .add("qmax", p_.qmax);
    if (d.scope == LOWBIT_SCOPE_PER_CHANNEL) o.add("axis", int64_t(p_.axis));
    if (d.scope == LOWBIT_SCOPE_PER_GROUP) o.add("group_size", p_.group);
    if (d.op == LOWBIT_QOP_DYNAMIC_QUANTIZE) o.add("symmetric", d.symmetric != 0);
    o.add("scales", p_.num_scales)
        .add("kernel", staged_      ? (segmented_ ? "staged_segments" : "staged_elementwise")
                       : segmented_ ? "dynamic_segments"
                       : d.op == LOWBIT_QOP_DYNAMIC_QUANTIZE ? "reduce+elementwise"
                                                             : "elementwise")
        .add("vector_elements", int64_t(vec_))
        .add("x_vector_bytes", int64_t(x_aligned_ ? vec_ * xb_ : xb_))
        .add("q_vector_bytes", int64_t(q_aligned_ ? std::max(1, vec_ * bits_ / 8) : 1))
        .add("vector_narrowed", narrowed_)
        .add("scale_mode", scale_mode_ == 0   ? "per_row"
                           : scale_mode_ == 1 ? "per_vector"
                           : scale_mode_ == 3 ? "per_step"
                                              : "per_element")
        .add("fast_quotient", (d.x_dtype == LOWBIT_DTYPE_F16 || d.x_dtype == LOWBIT_DTYPE_BF16) && scale_mode_ != 2)
        .add("alignment", d.alignment)
        .add("unroll", int64_t(unroll_));
    if (staged_) {
      o.add("stages", int64_t(stages_)).add("tile_vectors", tile_vectors_).add("tile_bytes", stage_bytes_)
          .add("tiles", view_rows_ * tiles_per_row_).add("shared_bytes", int64_t(specs_[0].dynamic_shared_bytes));
    }
    if (segmented_) {
      o.add("segments", segments_).add("segment_length", seg_len_).add("segment_threads", int64_t(seg_threads_))
          .add("vectors_per_thread", int64_t(per_)).add("single_pass", single_pass_);
    } else {
      o.add("row_threads", int64_t(row_threads_));
      if (num_partials_ > 0) o.add("partials", num_partials_);
    }
    std::string grids;
    for (size_t i = 0; i < specs_.size(); ++i) grids += fmt::format("{}{}x{}", i ? "," : "", grid_[i][0], grid_[i][1]);
    o.add("grid", grids).add("block", int64_t(block_));
    return o.str();
  }

 private:
  Problem p_;
  std::vector<KernelSpec> specs_;
  int xb_ = 1, bits_ = 8, sm_count_ = 1;
  bool segmented_ = false, narrowed_ = false, x_aligned_ = true, q_aligned_ = true, single_pass_ = true;
  int vec_ = 1, unroll_ = 4, scale_mode_ = 0, row_threads_ = 1, block_ = kThreads, bpsm_ = 4;
  int seg_threads_ = 1, per_ = 1;
  int64_t view_rows_ = 0, view_cols_ = 0, view_stride_ = 0, view_q_row_bytes_ = 0, chunks_per_row_ = 0;
  int64_t segments_ = 0, seg_per_row_ = 1, seg_len_ = 0, seg_vectors_ = 0, num_partials_ = 0;
  bool staged_ = false;  // quantize_staged.cuh
  int stages_ = 0;
  int64_t stage_bytes_ = 0, tile_vectors_ = 0, tiles_per_row_ = 0;
  unsigned grid_[2][2] = {{1, 1}, {1, 1}};
};

}  // namespace

void init_desc(lowbit_quantize_desc* d) {
  std::memset(d, 0, sizeof(*d));
  d->struct_size = sizeof(*d);
  d->op = LOWBIT_QOP_QUANTIZE;
  d->scope = LOWBIT_SCOPE_PER_TENSOR;
  d->x_dtype = LOWBIT_DTYPE_F32;
  d->q_dtype = LOWBIT_DTYPE_S8;
  d->scale_dtype = LOWBIT_DTYPE_F32;
  d->rank = 1;
  d->symmetric = 1;
  d->alignment = 16;
}

lowbit_quantize_desc read_desc(const void* desc) {
  if (desc == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "the lowbit_quantize_desc pointer is NULL");
  lowbit_quantize_desc d;
  init_desc(&d);
  uint32_t size = 0;
  std::memcpy(&size, desc, sizeof(size));
  check_struct_size(size, sizeof(lowbit_quantize_desc), sizeof(lowbit_quantize_desc), "lowbit_quantize_desc");
  std::memcpy(&d, desc, size);
  return d;
}

std::unique_ptr<OpPlan> create(const void* desc, const DeviceTraits& device) {
  return std::make_unique<QuantizePlan>(check(read_desc(desc)), device);
}

void reference(const void* desc, const lowbit_arg* args, size_t count) {
  const Problem p = check(read_desc(desc));
  ref::quantize_reference(p.desc, args, count);
}

}  // namespace lowbit::quantize
