#include "ref/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/error.hpp"
#include "ref/float16.hpp"

namespace lowbit::ref {

int64_t rint_to_s64(double v) {
  if (std::isnan(v)) return 0;
  if (v >= 9223372036854775807.0) return std::numeric_limits<int64_t>::max();
  if (v <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
  return int64_t(std::nearbyint(v));  // the default rounding mode: to nearest, ties to even
}

int32_t clamp_zero_point(int32_t zp) { return std::clamp(zp, -kZeroPointLimit, kZeroPointLimit); }

namespace {

// clamp(rint(v) + zp, qmin, qmax) for a quotient v already rounded to its
// type: NaN gives clamp(zp), +-inf the ends. Integers as doubles: exact while
// |rint(v)| < 2^52, and beyond that the sum is outside [qmin, qmax] anyway.
int32_t round_clamp(double v, int32_t zp, int32_t qmin, int32_t qmax) {
  const int32_t z = clamp_zero_point(zp);
  if (std::isnan(v)) return std::clamp(z, qmin, qmax);
  const double t = std::nearbyint(v) + double(z);
  if (t <= double(qmin)) return qmin;
  if (t >= double(qmax)) return qmax;
  return int32_t(t);
}

}  // namespace

int32_t quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const float v = x / scale;  // f32 IEEE division (SSE on x86-64; no excess precision)
  return round_clamp(double(v), zp, qmin, qmax);
}

int32_t quantize_value(double x, double scale, int32_t zp, int32_t qmin, int32_t qmax) {
  return round_clamp(x / scale, zp, qmin, qmax);
}

namespace {

const void* find(const lowbit_arg* args, size_t count, lowbit_arg_role role, const char* what, bool required) {
  for (size_t i = 0; i < count; ++i)
    if (args[i].role == role && args[i].ptr != 0) return reinterpret_cast<const void*>(args[i].ptr);
  if (required) fail(LOWBIT_INVALID_ARGUMENT, "reference: missing argument {}", what);
  return nullptr;
}
void* find_out(const lowbit_arg* args, size_t count, lowbit_arg_role role, const char* what, bool required) {
  return const_cast<void*>(find(args, count, role, what, required));
}

// Element i of a float tensor of `dtype`, as double (exact for every type).
double load_float(const void* base, lowbit_dtype dtype, int64_t i) {
  switch (dtype) {
    case LOWBIT_DTYPE_F32: return static_cast<const float*>(base)[i];
    case LOWBIT_DTYPE_F64: return static_cast<const double*>(base)[i];
    case LOWBIT_DTYPE_F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case LOWBIT_DTYPE_BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default: fail(LOWBIT_INTERNAL, "reference: not a float dtype {}", dtype);
  }
}

// Stores a result computed in f32 (f32/f16/bf16) or f64 (f64), rounding to
// nearest even; NaN is stored as the type's canonical NaN.
void store_f32_result(void* base, lowbit_dtype dtype, int64_t i, float v) {
  switch (dtype) {
    case LOWBIT_DTYPE_F32: {
      const uint32_t bits = std::isnan(v) ? 0x7fffffffu : f32_bits(v);
      std::memcpy(static_cast<char*>(base) + 4 * i, &bits, 4);
      break;
    }
    case LOWBIT_DTYPE_F16: static_cast<uint16_t*>(base)[i] = f32_to_f16(v); break;
    case LOWBIT_DTYPE_BF16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(v); break;
    default: fail(LOWBIT_INTERNAL, "reference: not an f32-computed dtype {}", dtype);
  }
}
void store_f64_result(void* base, int64_t i, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  if (std::isnan(v)) bits = 0x7fffffffffffffffull;
  std::memcpy(static_cast<char*>(base) + 8 * i, &bits, 8);
}

// Element i of a row of Q (packed: element 2j in the low nibble of byte j).
int32_t load_q(const uint8_t* row, lowbit_dtype dtype, int64_t i) {
  switch (dtype) {
    case LOWBIT_DTYPE_S8: return int8_t(row[i]);
    case LOWBIT_DTYPE_U8: return row[i];
    case LOWBIT_DTYPE_S4: {
      const int nib = (i % 2 == 0) ? (row[i / 2] & 15) : (row[i / 2] >> 4);
      return nib >= 8 ? nib - 16 : nib;
    }
    case LOWBIT_DTYPE_U4: return (i % 2 == 0) ? (row[i / 2] & 15) : (row[i / 2] >> 4);
    default: fail(LOWBIT_INTERNAL, "reference: not a quantized dtype {}", dtype);
  }
}

bool packed(lowbit_dtype q) { return q == LOWBIT_DTYPE_S4 || q == LOWBIT_DTYPE_U4; }

int32_t type_min(lowbit_dtype q) {
  switch (q) {
    case LOWBIT_DTYPE_S8: return -128;
    case LOWBIT_DTYPE_S4: return -8;
    default: return 0;
  }
}
int32_t type_max(lowbit_dtype q) {
  switch (q) {
    case LOWBIT_DTYPE_S8: return 127;
    case LOWBIT_DTYPE_U8: return 255;
    case LOWBIT_DTYPE_S4: return 7;
    default: return 15;
  }
}

// Everything one run needs, decoded from the descriptor.
struct Shape {
  int64_t rows = 1, cols = 0, stride = 0, q_row_bytes = 0;
  int32_t qmin = 0, qmax = 0;
  int axis = 0;
  int64_t ch_inner = 1, ch_count = 1, group = 1;
  bool f64 = false;
};

Shape shape_of(const lowbit_quantize_desc& d) {
  Shape s;
  for (int i = 0; i + 1 < d.rank; ++i) s.rows *= d.dims[i];
  s.cols = d.rank > 0 ? d.dims[d.rank - 1] : 0;
  s.stride = d.x_row_stride != 0 ? d.x_row_stride : s.cols;
  s.q_row_bytes = packed(d.q_dtype) ? (s.cols + 1) / 2 : s.cols;
  const bool full_range = d.qmin == 0 && d.qmax == 0;
  s.qmin = full_range ? type_min(d.q_dtype) : d.qmin;
  s.qmax = full_range ? type_max(d.q_dtype) : d.qmax;
  s.f64 = d.x_dtype == LOWBIT_DTYPE_F64;
  if (d.scope == LOWBIT_SCOPE_PER_CHANNEL) {
    s.axis = d.axis < 0 ? d.axis + d.rank : d.axis;
    s.ch_count = d.dims[s.axis];
    for (int i = s.axis + 1; i + 1 < d.rank; ++i) s.ch_inner *= d.dims[i];
  }
  if (d.scope == LOWBIT_SCOPE_PER_GROUP) s.group = d.group_size;
  return s;
}

// The scale / zero-point index of element (row, col).
int64_t scale_index(const lowbit_quantize_desc& d, const Shape& s, int64_t row, int64_t col) {
  switch (d.scope) {
    case LOWBIT_SCOPE_PER_TENSOR: return 0;
    case LOWBIT_SCOPE_PER_CHANNEL:
      return s.axis == d.rank - 1 ? col : (row / s.ch_inner) % s.ch_count;
    case LOWBIT_SCOPE_PER_TOKEN: return row;
    default: return row * (s.cols / s.group) + col / s.group;
  }
}

// Writes a whole row of Q from its integer values (packed: pairs per byte,
// an odd row's last high nibble 0).
void store_q_row(uint8_t* row, lowbit_dtype dtype, const std::vector<int32_t>& v) {
  if (!packed(dtype)) {
    for (size_t i = 0; i < v.size(); ++i) row[i] = uint8_t(v[i]);
    return;
  }
  for (size_t i = 0; i < v.size(); i += 2) {
    const uint32_t lo = uint32_t(v[i]) & 15u;
    const uint32_t hi = i + 1 < v.size() ? (uint32_t(v[i + 1]) & 15u) : 0u;
    row[i / 2] = uint8_t(lo | (hi << 4));
  }
}

// The scale as stored in `dtype` from a value computed in f32 / f64, and back.
double round_scale(double v, lowbit_dtype dtype, void* out, int64_t i) {
  switch (dtype) {
    case LOWBIT_DTYPE_F32: {
      const float f = float(v);
      if (out) static_cast<float*>(out)[i] = f;
      return f;
    }
    case LOWBIT_DTYPE_F64:
      if (out) static_cast<double*>(out)[i] = v;
      return v;
    case LOWBIT_DTYPE_F16: {
      const uint16_t h = f32_to_f16(float(v));
      if (out) static_cast<uint16_t*>(out)[i] = h;
      return f16_to_f32(h);
    }
    case LOWBIT_DTYPE_BF16: {
      const uint16_t h = f32_to_bf16(float(v));
      if (out) static_cast<uint16_t*>(out)[i] = h;
      return bf16_to_f32(h);
    }
    default: fail(LOWBIT_INTERNAL, "reference: not a scale dtype {}", dtype);
  }
}

// The quotient x / s rounded in the compute type (f32 or f64).
double quotient(const Shape& s, double x, double scale) {
  if (s.f64) return x / scale;
  return double(float(x) / float(scale));
}
double product(const Shape& s, double a, double b) {
  if (s.f64) return a * b;
  return double(float(a) * float(b));
}

// Dynamic range of the values: (min(0, min x), max(0, max x)), or (0, max |x|)
// when symmetric; NaN ignored.
struct Range {
  double mn = 0, mx = 0;
  void add(double v, bool symmetric) {
    if (std::isnan(v)) return;
    if (symmetric) {
      mx = std::max(mx, std::fabs(v));
    } else {
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
  }
};

// Scale (rounded to scale_dtype, 0 -> 1) and zero point from a range, in the
// compute type. Writes them at index i of the outputs.
void dynamic_params(const lowbit_quantize_desc& d, const Shape& s, const Range& r, void* scale_out, int32_t* zp_out,
                    int64_t i, double* scale, int32_t* zp) {
  double sc;
  if (d.symmetric) {
    const int32_t den = std::min(-s.qmin, s.qmax);
    sc = quotient(s, r.mx, double(den));
  } else {
    const double range = s.f64 ? r.mx - r.mn : double(float(r.mx) - float(r.mn));
    sc = quotient(s, range, double(s.qmax - s.qmin));
  }
  double st = round_scale(sc, d.scale_dtype, nullptr, 0);
  if (st == 0.0) st = 1.0;
  *scale = round_scale(st, d.scale_dtype, scale_out, i);
  if (d.symmetric) {
    *zp = 0;
  } else {
    double t = std::nearbyint(quotient(s, r.mn, *scale));
    if (std::isnan(t)) t = 0;
    t = std::clamp(t, double(s.qmin - s.qmax), 0.0);
    *zp = s.qmin - int32_t(t);
  }
  if (zp_out != nullptr) zp_out[i] = *zp;
}

}  // namespace

void quantize_reference(const lowbit_quantize_desc& d, const lowbit_arg* args, size_t count) {
  const Shape s = shape_of(d);
  if (s.rows == 0 || s.cols == 0) return;
  const lowbit_dtype xt = d.x_dtype;
  const int64_t rows = s.rows, cols = s.cols, stride = s.stride;

  if (d.op == LOWBIT_QOP_DYNAMIC_QUANTIZE) {
    const void* x = find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
    uint8_t* q = static_cast<uint8_t*>(find_out(args, count, LOWBIT_ARG_Q, "LOWBIT_ARG_Q", true));
    void* scale_out = find_out(args, count, LOWBIT_ARG_SCALE, "LOWBIT_ARG_SCALE", true);
    int32_t* zp_out =
        static_cast<int32_t*>(find_out(args, count, LOWBIT_ARG_ZERO_POINT, "LOWBIT_ARG_ZERO_POINT", !d.symmetric));
    // Segments: the whole tensor, a row, or a group of a row.
    const int64_t seg_len = d.scope == LOWBIT_SCOPE_PER_GROUP ? s.group : cols;
    const int64_t per_row = cols / seg_len;
    std::vector<int32_t> qrow(static_cast<size_t>(cols));
    if (d.scope == LOWBIT_SCOPE_PER_TENSOR) {
      Range r;
      for (int64_t row = 0; row < rows; ++row)
        for (int64_t c = 0; c < cols; ++c) r.add(load_float(x, xt, row * stride + c), d.symmetric);
      double sc;
      int32_t zp;
      dynamic_params(d, s, r, scale_out, zp_out, 0, &sc, &zp);
      for (int64_t row = 0; row < rows; ++row) {
        for (int64_t c = 0; c < cols; ++c)
          qrow[size_t(c)] = round_clamp(quotient(s, load_float(x, xt, row * stride + c), sc), zp, s.qmin, s.qmax);
        store_q_row(q + row * s.q_row_bytes, d.q_dtype, qrow);
      }
      return;
    }
    for (int64_t row = 0; row < rows; ++row) {
      for (int64_t g = 0; g < per_row; ++g) {
        Range r;
        for (int64_t c = g * seg_len; c < (g + 1) * seg_len; ++c) r.add(load_float(x, xt, row * stride + c), d.symmetric);
        double sc;
        int32_t zp;
        dynamic_params(d, s, r, scale_out, zp_out, row * per_row + g, &sc, &zp);
        for (int64_t c = g * seg_len; c < (g + 1) * seg_len; ++c)
          qrow[size_t(c)] = round_clamp(quotient(s, load_float(x, xt, row * stride + c), sc), zp, s.qmin, s.qmax);
      }
      store_q_row(q + row * s.q_row_bytes, d.q_dtype, qrow);
    }
    return;
  }

  const void* scale_p = find(args, count, LOWBIT_ARG_SCALE, "LOWBIT_ARG_SCALE", true);
  const int32_t* zp_p = static_cast<const int32_t*>(find(args, count, LOWBIT_ARG_ZERO_POINT, "LOWBIT_ARG_ZERO_POINT", false));
  auto scale_at = [&](int64_t i) { return load_float(scale_p, d.scale_dtype, i); };
  auto zp_at = [&](int64_t i) { return zp_p != nullptr ? clamp_zero_point(zp_p[i]) : 0; };
  auto store_result = [&](void* base, int64_t i, double v) {
    if (s.f64) store_f64_result(base, i, v);
    else store_f32_result(base, xt, i, float(v));
  };
  const int xbytes = xt == LOWBIT_DTYPE_F64 ? 8 : xt == LOWBIT_DTYPE_F32 ? 4 : 2;

  switch (d.op) {
    case LOWBIT_QOP_QUANTIZE: {
      const void* x = find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
      uint8_t* q = static_cast<uint8_t*>(find_out(args, count, LOWBIT_ARG_Q, "LOWBIT_ARG_Q", true));
      std::vector<int32_t> qrow(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t k = scale_index(d, s, r, c);
          qrow[size_t(c)] = round_clamp(quotient(s, load_float(x, xt, r * stride + c), scale_at(k)), zp_at(k), s.qmin, s.qmax);
        }
        store_q_row(q + r * s.q_row_bytes, d.q_dtype, qrow);
      }
      break;
    }
    case LOWBIT_QOP_DEQUANTIZE: {
      const uint8_t* q = static_cast<const uint8_t*>(find(args, count, LOWBIT_ARG_Q, "LOWBIT_ARG_Q", true));
      void* x = find_out(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t k = scale_index(d, s, r, c);
          const int32_t centered = load_q(q + r * s.q_row_bytes, d.q_dtype, c) - zp_at(k);
          store_result(x, r * stride + c, product(s, double(centered), scale_at(k)));
        }
      break;
    }
    case LOWBIT_QOP_QUANTIZE_BACKWARD: {
      const void* x = find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
      const void* dy = find(args, count, LOWBIT_ARG_DY, "LOWBIT_ARG_DY", true);
      void* dx = find_out(args, count, LOWBIT_ARG_DX, "LOWBIT_ARG_DX", true);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t k = scale_index(d, s, r, c), i = r * stride + c;
          const int32_t qv = round_clamp(quotient(s, load_float(x, xt, i), scale_at(k)), zp_at(k), s.qmin, s.qmax);
          const bool pass = s.qmin < qv && qv < s.qmax;
          store_result(dx, i, pass ? quotient(s, load_float(dy, xt, i), scale_at(k)) : 0.0);
        }
      break;
    }
    case LOWBIT_QOP_DEQUANTIZE_BACKWARD: {
      const void* dy = find(args, count, LOWBIT_ARG_DY, "LOWBIT_ARG_DY", true);
      void* dx = find_out(args, count, LOWBIT_ARG_DX, "LOWBIT_ARG_DX", true);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t k = scale_index(d, s, r, c), i = r * stride + c;
          store_result(dx, i, product(s, load_float(dy, xt, i), scale_at(k)));
        }
      break;
    }
    case LOWBIT_QOP_FAKE_QUANTIZE: {
      const void* x = find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
      void* y = find_out(args, count, LOWBIT_ARG_Y, "LOWBIT_ARG_Y", true);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t k = scale_index(d, s, r, c), i = r * stride + c;
          const int32_t qv = round_clamp(quotient(s, load_float(x, xt, i), scale_at(k)), zp_at(k), s.qmin, s.qmax);
          store_result(y, i, product(s, double(qv - zp_at(k)), scale_at(k)));
        }
      break;
    }
    case LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD: {
      const void* x = find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
      const char* dy = static_cast<const char*>(find(args, count, LOWBIT_ARG_DY, "LOWBIT_ARG_DY", true));
      char* dx = static_cast<char*>(find_out(args, count, LOWBIT_ARG_DX, "LOWBIT_ARG_DX", true));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t k = scale_index(d, s, r, c), i = r * stride + c;
          // The unclamped rint(x / s) + zp inside [qmin, qmax]; NaN is outside.
          const double t = std::nearbyint(quotient(s, load_float(x, xt, i), scale_at(k)));
          const bool pass = !std::isnan(t) && t >= double(s.qmin - zp_at(k)) && t <= double(s.qmax - zp_at(k));
          if (pass) std::memcpy(dx + i * xbytes, dy + i * xbytes, size_t(xbytes));  // DY's bits, unchanged
          else std::memset(dx + i * xbytes, 0, size_t(xbytes));                    // +0
        }
      break;
    }
    default: fail(LOWBIT_UNSUPPORTED, "reference: op {} not implemented", d.op);
  }
}

}  // namespace lowbit::ref
