#include "ref/quantize.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "common/error.hpp"
#include "ref/float16.hpp"

namespace lowbit::ref {

int64_t rint_to_s64(double v) {
  if (std::isnan(v)) return 0;
  if (v >= 9223372036854775807.0) return std::numeric_limits<int64_t>::max();
  if (v <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
  return int64_t(std::nearbyint(v));  // the default rounding mode: to nearest, ties to even
}

namespace {

int32_t clamp_q(int64_t r, int32_t zp, int32_t qmin, int32_t qmax) {
  // r is within int64 and zp within int32: the sum cannot overflow unless r
  // saturated, where it only needs to stay outside [qmin, qmax].
  int64_t v = (r > INT64_MAX / 2) ? r : (r < INT64_MIN / 2 ? r : r + zp);
  if (v < qmin) return qmin;
  if (v > qmax) return qmax;
  return int32_t(v);
}

}  // namespace

int32_t quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const float v = x / scale;  // f32 IEEE division (SSE on x86-64; no excess precision)
  return clamp_q(rint_to_s64(double(v)), zp, qmin, qmax);
}

int32_t quantize_value(double x, double scale, int32_t zp, int32_t qmin, int32_t qmax) {
  return clamp_q(rint_to_s64(x / scale), zp, qmin, qmax);
}

namespace {

const void* find(const lowbit_arg* args, size_t count, lowbit_arg_role role, const char* what, bool required) {
  for (size_t i = 0; i < count; ++i)
    if (args[i].role == role && args[i].ptr != 0) return reinterpret_cast<const void*>(args[i].ptr);
  if (required) fail(LOWBIT_INVALID_ARGUMENT, "reference: missing argument {}", what);
  return nullptr;
}

// Loads element i of a float tensor of `dtype` as double (exact for every type).
double load_float(const void* base, lowbit_dtype dtype, int64_t i) {
  switch (dtype) {
    case LOWBIT_DTYPE_F32: return static_cast<const float*>(base)[i];
    case LOWBIT_DTYPE_F64: return static_cast<const double*>(base)[i];
    case LOWBIT_DTYPE_F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case LOWBIT_DTYPE_BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default: fail(LOWBIT_INTERNAL, "reference: not a float dtype {}", dtype);
  }
}

// Stores a value computed in f32 (or f64 for F64) rounding to nearest even.
void store_float(void* base, lowbit_dtype dtype, int64_t i, double v) {
  switch (dtype) {
    case LOWBIT_DTYPE_F32: static_cast<float*>(base)[i] = float(v); break;
    case LOWBIT_DTYPE_F64: static_cast<double*>(base)[i] = v; break;
    case LOWBIT_DTYPE_F16: static_cast<uint16_t*>(base)[i] = f32_to_f16(float(v)); break;
    case LOWBIT_DTYPE_BF16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(float(v)); break;
    default: fail(LOWBIT_INTERNAL, "reference: not a float dtype {}", dtype);
  }
}

int32_t load_q(const void* base, lowbit_dtype dtype, int64_t i) {
  switch (dtype) {
    case LOWBIT_DTYPE_S8: return static_cast<const int8_t*>(base)[i];
    case LOWBIT_DTYPE_U8: return static_cast<const uint8_t*>(base)[i];
    case LOWBIT_DTYPE_S4: {
      const uint8_t b = static_cast<const uint8_t*>(base)[i / 2];
      const int nib = (i % 2 == 0) ? (b & 15) : (b >> 4);
      return nib >= 8 ? nib - 16 : nib;
    }
    case LOWBIT_DTYPE_U4: {
      const uint8_t b = static_cast<const uint8_t*>(base)[i / 2];
      return (i % 2 == 0) ? (b & 15) : (b >> 4);
    }
    default: fail(LOWBIT_INTERNAL, "reference: not a quantized dtype {}", dtype);
  }
}

void store_q(void* base, lowbit_dtype dtype, int64_t i, int32_t v) {
  switch (dtype) {
    case LOWBIT_DTYPE_S8: static_cast<int8_t*>(base)[i] = int8_t(v); break;
    case LOWBIT_DTYPE_U8: static_cast<uint8_t*>(base)[i] = uint8_t(v); break;
    case LOWBIT_DTYPE_S4:
    case LOWBIT_DTYPE_U4: {
      uint8_t& b = static_cast<uint8_t*>(base)[i / 2];
      const uint8_t nib = uint8_t(v) & 15;
      b = (i % 2 == 0) ? uint8_t((b & 0xf0) | nib) : uint8_t((b & 0x0f) | (nib << 4));
      break;
    }
    default: fail(LOWBIT_INTERNAL, "reference: not a quantized dtype {}", dtype);
  }
}

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

}  // namespace

void quantize_reference(const lowbit_quantize_desc& d, const lowbit_arg* args, size_t count) {
  int64_t rows = 1;
  for (int i = 0; i + 1 < d.rank; ++i) rows *= d.dims[i];
  const int64_t cols = d.rank > 0 ? d.dims[d.rank - 1] : 0;
  if (rows == 0 || cols == 0) return;
  const int64_t stride = d.x_row_stride != 0 ? d.x_row_stride : cols;
  const bool full_range = d.qmin == 0 && d.qmax == 0;
  const int32_t qmin = full_range ? type_min(d.q_dtype) : d.qmin;
  const int32_t qmax = full_range ? type_max(d.q_dtype) : d.qmax;
  const bool f64 = d.x_dtype == LOWBIT_DTYPE_F64;

  if (d.scope != LOWBIT_SCOPE_PER_TENSOR) fail(LOWBIT_UNSUPPORTED, "reference: scope {} not implemented", d.scope);
  const void* scale_p = find(args, count, LOWBIT_ARG_SCALE, "LOWBIT_ARG_SCALE", true);
  const void* zp_p = find(args, count, LOWBIT_ARG_ZERO_POINT, "LOWBIT_ARG_ZERO_POINT", false);
  const double scale = load_float(scale_p, d.scale_dtype, 0);
  const int32_t zp = zp_p != nullptr ? *static_cast<const int32_t*>(zp_p) : 0;

  switch (d.op) {
    case LOWBIT_QOP_QUANTIZE: {
      const void* x = find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
      void* q = const_cast<void*>(find(args, count, LOWBIT_ARG_Q, "LOWBIT_ARG_Q", true));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const double xv = load_float(x, d.x_dtype, r * stride + c);
          const int32_t qv = f64 ? quantize_value(xv, scale, zp, qmin, qmax)
                                 : quantize_value(float(xv), float(scale), zp, qmin, qmax);
          store_q(q, d.q_dtype, r * cols + c, qv);
        }
      break;
    }
    case LOWBIT_QOP_DEQUANTIZE: {
      const void* q = find(args, count, LOWBIT_ARG_Q, "LOWBIT_ARG_Q", true);
      void* x = const_cast<void*>(find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t centered = int64_t(load_q(q, d.q_dtype, r * cols + c)) - zp;
          const double v = f64 ? double(centered) * scale : double(float(centered) * float(scale));
          store_float(x, d.x_dtype, r * stride + c, v);
        }
      break;
    }
    default: fail(LOWBIT_UNSUPPORTED, "reference: op {} not implemented", d.op);
  }
}

}  // namespace lowbit::ref
