#include "selftest_cases.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "common/dtype.hpp"
#include "ref/float16.hpp"

namespace lowbit::cli::selftest {

size_t Tensor::bytes() const {
  if (dtype == LOWBIT_DTYPE_S4 || dtype == LOWBIT_DTYPE_U4) return size_t((elements + 1) / 2);
  return size_t(elements) * size_t(dtype_bytes(dtype));
}

lowbit_op_desc Problem::op() const {
  struct Visitor {
    lowbit_op_desc operator()(const lowbit_quantize_desc& d) const { return {LOWBIT_FAMILY_QUANTIZE, 0, &d}; }
  };
  return std::visit(Visitor{}, desc);
}

std::string Shape::label() const {
  if (rows == 1) return std::to_string(cols);
  return stride == cols ? fmt::format("{}x{}", rows, cols) : fmt::format("{}x{}/{}", rows, cols, stride);
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> kShapes = {
      {1, 1, 1},
      {1, 7, 7},
      {1, 4099, 4099},
      {1, (1 << 20) + 3, (1 << 20) + 3},
      {3, 4099, 4104},  // strided rows: the kernel's non-contiguous path
  };
  return kShapes;
}

namespace {

// ---------------------------------------------------------------------------
// Random data.

float uniform(std::mt19937_64& rng, float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }
int32_t uniform_int(std::mt19937_64& rng, int32_t lo, int32_t hi) {
  return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
}

// Stores `v` as element i of a float tensor (rounded to nearest even).
void put_float(Tensor* t, int64_t i, float v) {
  switch (t->dtype) {
    case LOWBIT_DTYPE_F32: std::memcpy(t->data.data() + 4 * i, &v, 4); break;
    case LOWBIT_DTYPE_F64: {
      const double d = v;
      std::memcpy(t->data.data() + 8 * i, &d, 8);
      break;
    }
    case LOWBIT_DTYPE_F16: {
      const uint16_t h = ref::f32_to_f16(v);
      std::memcpy(t->data.data() + 2 * i, &h, 2);
      break;
    }
    case LOWBIT_DTYPE_BF16: {
      const uint16_t h = ref::f32_to_bf16(v);
      std::memcpy(t->data.data() + 2 * i, &h, 2);
      break;
    }
    default: break;
  }
}

Tensor input(lowbit_arg_role role, lowbit_dtype dtype, int64_t elements) {
  Tensor t;
  t.role = role;
  t.dtype = dtype;
  t.elements = elements;
  t.data.assign(t.bytes(), 0);
  return t;
}

Tensor output(lowbit_arg_role role, lowbit_dtype dtype, int64_t elements) {
  Tensor t;
  t.role = role;
  t.dtype = dtype;
  t.elements = elements;
  t.output = true;
  return t;
}

// The scale varies with the shape: exact powers of two (x / scale exact, so
// rounding ties are exact ties), arbitrary values, and large ones (f16
// outputs overflow to infinity).
float pick_scale(size_t index, std::mt19937_64& rng) {
  switch (index % 4) {
    case 0: return std::ldexp(1.0f, -uniform_int(rng, 3, 8));
    case 1: return uniform(rng, 0.003f, 0.2f);
    case 2: return std::ldexp(1.0f, uniform_int(rng, 0, 4));
    default: return uniform(rng, 1.0f, 400.0f);
  }
}

// One input value for quantize, in units of the scale mostly within the
// quantized range [lo, hi] (qmin - zp .. qmax - zp), with a share of values at
// or next to rounding ties, beyond the clamp range, and special values.
float quantize_input(std::mt19937_64& rng, float scale, int32_t lo, int32_t hi) {
  const float r = uniform(rng, 0.0f, 1.0f);
  if (r < 0.5f) return uniform(rng, float(lo) - 0.5f, float(hi) + 0.5f) * scale;
  if (r < 0.75f) {
    float v = (float(uniform_int(rng, lo - 1, hi)) + 0.5f) * scale;  // a tie, exactly when scale is 2^k
    const int nudge = uniform_int(rng, -2, 2);  // and its neighbours, one ulp either side
    if (nudge == -1) v = std::nextafter(v, -std::numeric_limits<float>::infinity());
    if (nudge == 1) v = std::nextafter(v, std::numeric_limits<float>::infinity());
    return v;
  }
  if (r < 0.95f) {
    const float reach = float(std::max(std::abs(lo), std::abs(hi)));
    const float sign = uniform_int(rng, 0, 1) != 0 ? 1.0f : -1.0f;
    return sign * (reach + 1.0f) * uniform(rng, 1.0f, 4.0f) * scale;
  }
  static constexpr float kSpecial[] = {
      std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::quiet_NaN(), 1e30f, -1e30f, 1e-40f, -0.0f, 0.0f,
      std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(), 65504.0f, -65520.0f};
  return kSpecial[uniform_int(rng, 0, int32_t(std::size(kSpecial)) - 1)];
}

// ---------------------------------------------------------------------------
// Family: elementwise quantization (per-tensor quantize / dequantize).

int32_t type_min(lowbit_dtype q) { return q == LOWBIT_DTYPE_S8 ? -128 : 0; }
int32_t type_max(lowbit_dtype q) { return q == LOWBIT_DTYPE_S8 ? 127 : 255; }

// Element i of a tensor as text: its value and its bits.
std::string element_text(const Tensor& t, int64_t i) {
  if (i < 0 || i >= t.elements) return "?";
  const int es = dtype_bytes(t.dtype);
  const uint8_t* p = t.data.data() + size_t(i) * size_t(es);
  uint64_t bits = 0;
  for (int b = es - 1; b >= 0; --b) bits = bits << 8 | p[b];
  double v = 0;
  switch (t.dtype) {
    case LOWBIT_DTYPE_F32: v = ref::f32_from_bits(uint32_t(bits)); break;
    case LOWBIT_DTYPE_F16: v = ref::f16_to_f32(uint16_t(bits)); break;
    case LOWBIT_DTYPE_BF16: v = ref::bf16_to_f32(uint16_t(bits)); break;
    case LOWBIT_DTYPE_S8: v = int8_t(bits); break;
    case LOWBIT_DTYPE_S32: v = int32_t(uint32_t(bits)); break;
    default: v = double(bits); break;
  }
  return fmt::format("{:.9g} (0x{:0{}x})", v, bits, 2 * es);
}

// Which inputs made output element `index` of a per-tensor quantize problem.
std::string explain_quantize(const Problem& p, size_t tensor, int64_t index) {
  const lowbit_quantize_desc& d = std::get<lowbit_quantize_desc>(p.desc);
  const int64_t cols = d.dims[d.rank - 1];
  const int64_t stride = d.x_row_stride != 0 ? d.x_row_stride : cols;
  const Tensor* x = nullptr;
  const Tensor* q = nullptr;
  const Tensor* scale = nullptr;
  const Tensor* zp = nullptr;
  for (const Tensor& t : p.tensors) {
    if (t.role == LOWBIT_ARG_X) x = &t;
    if (t.role == LOWBIT_ARG_Q) q = &t;
    if (t.role == LOWBIT_ARG_SCALE) scale = &t;
    if (t.role == LOWBIT_ARG_ZERO_POINT) zp = &t;
  }
  if (x == nullptr || q == nullptr || scale == nullptr || zp == nullptr || cols <= 0) return "";
  std::string in;
  if (p.tensors[tensor].role == LOWBIT_ARG_Q) {  // quantize: q[r, c] from x[r * stride + c]
    in = "x = " + element_text(*x, index / cols * stride + index % cols);
  } else {  // dequantize: x[r * stride + c] from q[r, c] (the gap past c >= cols is never written)
    if (index % stride >= cols) return "a gap element between rows, which must stay untouched";
    in = "q = " + element_text(*q, index / stride * cols + index % stride);
  }
  return fmt::format("{}, scale = {}, zero point = {}", in, element_text(*scale, 0), element_text(*zp, 0));
}

Problem make_quantize(lowbit_quantize_op qop, lowbit_dtype x, lowbit_dtype q, const Shape& s, size_t index,
                      std::mt19937_64& rng) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.op = qop;
  d.scope = LOWBIT_SCOPE_PER_TENSOR;
  d.x_dtype = x;
  d.q_dtype = q;
  d.scale_dtype = LOWBIT_DTYPE_F32;
  if (s.rows == 1) {
    d.rank = 1;
    d.dims[0] = s.cols;
  } else {
    d.rank = 2;
    d.dims[0] = s.rows;
    d.dims[1] = s.cols;
    d.x_row_stride = s.stride == s.cols ? 0 : s.stride;
  }
  int32_t qmin = type_min(q), qmax = type_max(q);
  if (s.rows > 1) {  // also a narrowed clamp range, e.g. [-127, 127]
    qmin += 1;
    qmax -= 1;
    d.qmin = qmin;
    d.qmax = qmax;
  }
  const float scale = pick_scale(index, rng);
  const int32_t zp = q == LOWBIT_DTYPE_S8 ? uniform_int(rng, -8, 8) : uniform_int(rng, 120, 136);
  const int64_t x_elements = (s.rows - 1) * s.stride + s.cols;
  const int64_t q_elements = s.rows * s.cols;

  Problem p;
  Tensor st = input(LOWBIT_ARG_SCALE, LOWBIT_DTYPE_F32, 1);
  put_float(&st, 0, scale);
  Tensor zt = input(LOWBIT_ARG_ZERO_POINT, LOWBIT_DTYPE_S32, 1);
  std::memcpy(zt.data.data(), &zp, 4);
  if (qop == LOWBIT_QOP_QUANTIZE) {
    Tensor xt = input(LOWBIT_ARG_X, x, x_elements);
    for (int64_t i = 0; i < x_elements; ++i) put_float(&xt, i, quantize_input(rng, scale, qmin - zp, qmax - zp));
    p.tensors.push_back(std::move(xt));
    p.tensors.push_back(output(LOWBIT_ARG_Q, q, q_elements));
  } else {
    Tensor qt = input(LOWBIT_ARG_Q, q, q_elements);
    for (uint8_t& b : qt.data) b = uint8_t(rng());
    p.tensors.push_back(std::move(qt));
    p.tensors.push_back(output(LOWBIT_ARG_X, x, x_elements));
  }
  p.tensors.push_back(std::move(st));
  p.tensors.push_back(std::move(zt));
  p.desc = d;
  p.explain = &explain_quantize;
  return p;
}

void add_quantize_cases(std::vector<Case>* cases) {
  for (lowbit_quantize_op op : {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE})
    for (lowbit_dtype x : {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16})
      for (lowbit_dtype q : {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U8}) {
        Case c;
        c.op = op == LOWBIT_QOP_QUANTIZE ? "quantize" : "dequantize";
        c.dtypes = fmt::format("x={} q={}", dtype_name(x), dtype_name(q));
        c.make = [op, x, q](const Shape& s, size_t index, std::mt19937_64& rng) {
          return make_quantize(op, x, q, s, index, rng);
        };
        cases->push_back(std::move(c));
      }
}

}  // namespace

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  add_quantize_cases(&cases);
  return cases;
}

}  // namespace lowbit::cli::selftest
