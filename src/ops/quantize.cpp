#include "ops/quantize.hpp"

#include <algorithm>
#include <cstring>

#include "common/dtype.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "ref/quantize.hpp"

// The kernels' parameter struct, shared with quantize.cuh.
#include <cstdint>
#include "quantize_params.h"

namespace lowbit::quantize {

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;

bool is_float(lowbit_dtype t) { return dtype_is_float(t); }
bool is_quantized(lowbit_dtype t) {
  return t == LOWBIT_DTYPE_S8 || t == LOWBIT_DTYPE_U8 || t == LOWBIT_DTYPE_S4 || t == LOWBIT_DTYPE_U4;
}
bool is_known(lowbit_dtype t) { return dtype_name(t) != nullptr; }

const char* device_type(lowbit_dtype t) {
  switch (t) {
    case LOWBIT_DTYPE_F32: return "float";
    case LOWBIT_DTYPE_F64: return "double";
    case LOWBIT_DTYPE_F16: return "lowbit::f16";
    case LOWBIT_DTYPE_BF16: return "lowbit::bf16";
    case LOWBIT_DTYPE_S8: return "int8_t";
    case LOWBIT_DTYPE_U8: return "uint8_t";
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

// The validated problem.
struct Problem {
  lowbit_quantize_desc desc;
  int64_t rows = 0, cols = 0, stride = 0, numel = 0;
  int32_t qmin = 0, qmax = 0;
};

Problem check(const lowbit_quantize_desc& d) {
  Problem p;
  p.desc = d;
  if (op_name(d.op) == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_quantize_desc.op = {} is not a LOWBIT_QOP_* value", d.op);
  if (scope_name(d.scope) == nullptr)
    fail(LOWBIT_INVALID_ARGUMENT, "lowbit_quantize_desc.scope = {} is not a LOWBIT_SCOPE_* value", d.scope);
  for (auto [name, t] : {std::pair{"x_dtype", d.x_dtype}, {"q_dtype", d.q_dtype}, {"scale_dtype", d.scale_dtype}})
    if (!is_known(t)) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_quantize_desc.{} = {} is not a LOWBIT_DTYPE_* value", name, t);
  if (!is_float(d.x_dtype))
    fail(LOWBIT_UNSUPPORTED, "x_dtype {} is not a floating-point type (f32, f64, f16, bf16)", dtype_name(d.x_dtype));
  if (!is_quantized(d.q_dtype))
    fail(LOWBIT_UNSUPPORTED, "q_dtype {} is not a quantized type (s8, u8, s4, u4)", dtype_name(d.q_dtype));
  if (d.scale_dtype != LOWBIT_DTYPE_F32 && d.scale_dtype != d.x_dtype)
    fail(LOWBIT_UNSUPPORTED, "scale_dtype {} must be f32 or the x type {}", dtype_name(d.scale_dtype),
         dtype_name(d.x_dtype));
  if (d.rank < 1 || d.rank > 4) fail(LOWBIT_INVALID_PROBLEM, "rank = {} (must be 1..4)", d.rank);
  p.numel = 1;
  for (int i = 0; i < d.rank; ++i) {
    if (d.dims[i] < 0) fail(LOWBIT_INVALID_PROBLEM, "dims[{}] = {} is negative", i, d.dims[i]);
    if (d.dims[i] > 0 && p.numel > (int64_t(1) << 48) / d.dims[i])
      fail(LOWBIT_INVALID_PROBLEM, "the tensor has more than 2^48 elements (dims[{}] = {})", i, d.dims[i]);
    p.numel *= d.dims[i];
  }
  p.cols = d.dims[d.rank - 1];
  p.rows = p.cols == 0 ? 0 : p.numel / p.cols;
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
  if (d.alignment != 1 && d.alignment != 2 && d.alignment != 4 && d.alignment != 8 && d.alignment != 16)
    fail(LOWBIT_INVALID_ARGUMENT, "alignment = {} (must be 1, 2, 4, 8 or 16)", d.alignment);
  if (d.alignment < dtype_bytes(d.x_dtype) || d.alignment < dtype_bytes(d.scale_dtype) ||
      (d.scope != LOWBIT_SCOPE_PER_TENSOR && d.alignment < 4))
    fail(LOWBIT_INVALID_PROBLEM, "alignment = {} is below the natural alignment of the element types", d.alignment);
  // Implemented so far: per-tensor quantize / dequantize to 8-bit types.
  if (d.scope != LOWBIT_SCOPE_PER_TENSOR)
    fail(LOWBIT_UNSUPPORTED, "scope {} is not implemented yet", scope_name(d.scope));
  if (d.op != LOWBIT_QOP_QUANTIZE && d.op != LOWBIT_QOP_DEQUANTIZE)
    fail(LOWBIT_UNSUPPORTED, "op {} is not implemented yet", op_name(d.op));
  if (d.q_dtype != LOWBIT_DTYPE_S8 && d.q_dtype != LOWBIT_DTYPE_U8)
    fail(LOWBIT_UNSUPPORTED, "q_dtype {} is not implemented yet", dtype_name(d.q_dtype));
  return p;
}

class QuantizePlan final : public OpPlan {
 public:
  QuantizePlan(const Problem& p, const DeviceTraits& device) : p_(p) {
    const lowbit_quantize_desc& d = p.desc;
    const int xb = dtype_bytes(d.x_dtype);
    // Contiguous rows flatten into one long row: vectors never straddle a row.
    contiguous_ = p.stride == p.cols || p.rows <= 1;
    view_rows_ = contiguous_ ? (p.numel > 0 ? 1 : 0) : p.rows;
    view_cols_ = contiguous_ ? p.numel : p.cols;
    // Widest vector the promised alignment allows (16 bytes of x at most),
    // narrowed while strided rows would start off a vector boundary.
    vec_ = std::max(1, std::min(d.alignment, 16) / xb);
    while (vec_ > 1 && !contiguous_ && ((p.stride % vec_) != 0 || (p.cols % vec_) != 0)) {
      vec_ /= 2;
      narrowed_ = true;
    }
    if (p.numel == 0) return;  // a no-op plan: nothing to compile
    KernelSpec spec;
    spec.family = "quantize";
    spec.header = "quantize.cuh";
    spec.function = "lowbit::quantize_kernel";
    spec.params_type = "lowbit::QuantizeParams";
    spec.threads = kThreads;
    spec.types = {{"XT", device_type(d.x_dtype)}, {"QT", device_type(d.q_dtype)}, {"ST", device_type(d.scale_dtype)}};
    spec.constants = {{"kOp", std::to_string(d.op)},       {"kScope", std::to_string(d.scope)},
                      {"kVec", std::to_string(vec_)},      {"kUnroll", std::to_string(kUnroll)},
                      {"kQmin", std::to_string(p.qmin)},   {"kQmax", std::to_string(p.qmax)}};
    spec.options = {"-fmad=false"};  // bit-exact arithmetic (prelude also spells it out in PTX)
    specs_.push_back(std::move(spec));

    chunks_per_row_ = view_cols_ / vec_;
    const int64_t per_block = int64_t(kThreads) * kUnroll;
    const int64_t max_blocks = int64_t(std::max(device.sm_count, 1)) * (2048 / kThreads);
    grid_y_ = unsigned(std::min<int64_t>(view_rows_, 65535));
    const int64_t want_x = std::max<int64_t>(1, (chunks_per_row_ + per_block - 1) / per_block);
    grid_x_ = unsigned(std::clamp<int64_t>(std::min(want_x, max_blocks / std::max<int64_t>(1, grid_y_)), 1, want_x));
  }

  const char* family() const override { return "quantize"; }
  const std::vector<KernelSpec>& kernels() const override { return specs_; }

  void run(const RunArgs& args, uint64_t, size_t, const CUfunction* functions, CUstream stream) const override {
    const lowbit_quantize_desc& d = p_.desc;
    const uint64_t xa = uint64_t(vec_) * dtype_bytes(d.x_dtype);
    const uint64_t qa = uint64_t(vec_) * dtype_bytes(d.q_dtype);
    QuantizeParams k{};
    const bool quant = d.op == LOWBIT_QOP_QUANTIZE;
    k.x = args.get(LOWBIT_ARG_X, quant ? "input" : "output", true, xa);
    k.q = args.get(LOWBIT_ARG_Q, quant ? "output" : "input", true, qa);
    k.scale = args.get(LOWBIT_ARG_SCALE, "scale", true, dtype_bytes(d.scale_dtype));
    k.zero_point = args.get(LOWBIT_ARG_ZERO_POINT, "zero point (optional)", false, 4);
    if (p_.numel == 0) return;
    k.rows = view_rows_;
    k.cols = view_cols_;
    k.x_row_stride = contiguous_ ? view_cols_ : p_.stride;
    k.chunks_per_row = chunks_per_row_;
    launch_kernel(functions[0], grid_x_, grid_y_, 1, kThreads, 0, stream, &k);
  }

  std::string describe() const override {
    const lowbit_quantize_desc& d = p_.desc;
    return JsonObject()
        .add("op", op_name(d.op))
        .add("scope", scope_name(d.scope))
        .add("x_dtype", dtype_name(d.x_dtype))
        .add("q_dtype", dtype_name(d.q_dtype))
        .add("scale_dtype", dtype_name(d.scale_dtype))
        .add("rows", p_.rows)
        .add("cols", p_.cols)
        .add("x_row_stride", p_.stride)
        .add("qmin", p_.qmin)
        .add("qmax", p_.qmax)
        .add("vector_elements", int64_t(vec_))
        .add("vector_narrowed", narrowed_)
        .add("alignment", d.alignment)
        .add("grid", fmt::format("{}x{}", grid_x_, grid_y_))
        .add("block", int64_t(kThreads))
        .str();
  }

 private:
  Problem p_;
  std::vector<KernelSpec> specs_;
  bool contiguous_ = true;
  bool narrowed_ = false;
  int vec_ = 1;
  int64_t view_rows_ = 0, view_cols_ = 0, chunks_per_row_ = 0;
  unsigned grid_x_ = 1, grid_y_ = 1;
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
