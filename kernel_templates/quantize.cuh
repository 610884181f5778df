// quantize.cuh - elementwise quantization kernels (DESIGN.md section 6.1).
//
//   quantize:   q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)
//   dequantize: x = (q - zero_point) * scale
//
// Arithmetic is f32 for f32/f16/bf16 inputs (16-bit inputs are widened
// exactly) and f64 for f64, with the division, rounding and conversions spelled
// out in PTX (prelude.cuh), so results are bit-identical to the CPU reference
// in src/ref/quantize.cpp under any compiler flags. NaN quantizes to the zero
// point (cvt.rni gives 0), +-inf to qmax/qmin.
//
// The problem is a [rows, cols] view; the grid strides over rows in y and over
// kVec-element vectors of a row in x, each thread handling kUnroll vectors per
// step with all loads issued before the first store. A row's last cols % kVec
// elements are done one by one.
#pragma once

#include "quantize_params.h"

namespace lowbit {

template <typename T> struct ComputeType { using type = float; };
template <> struct ComputeType<double> { using type = double; };

template <typename T> LOWBIT_DEVICE typename ComputeType<T>::type widen(T x) { return to_f32(x); }
template <> LOWBIT_DEVICE double widen<double>(double x) { return x; }

template <typename T, typename C> LOWBIT_DEVICE T narrow(C x) { return from_f32<T>(x); }
template <> LOWBIT_DEVICE double narrow<double, double>(double x) { return x; }

template <typename Cfg>
LOWBIT_DEVICE typename Cfg::QT quantize_value(typename ComputeType<typename Cfg::XT>::type x,
                                              typename ComputeType<typename Cfg::XT>::type scale, int32_t zp) {
  int64_t r = rint_to_s64(div_rn(x, scale)) + int64_t(zp);
  r = r < Cfg::kQmin ? int64_t(Cfg::kQmin) : r;
  r = r > Cfg::kQmax ? int64_t(Cfg::kQmax) : r;
  return typename Cfg::QT(r);
}

template <typename Cfg, typename C>
LOWBIT_DEVICE typename Cfg::XT dequantize_value(int32_t q, C scale, int32_t zp) {
  const int64_t centered = int64_t(q) - int64_t(zp);
  if constexpr (sizeof(C) == 8) {
    return narrow<typename Cfg::XT, C>(mul_rn(s64_to_f64(centered), scale));
  } else {
    return narrow<typename Cfg::XT, C>(mul_rn(s64_to_f32(centered), scale));
  }
}

// One [rows, cols] elementwise pass with per-tensor scale and zero point.
template <typename Cfg>
LOWBIT_DEVICE void quantize_per_tensor(const QuantizeParams& p) {
  using XT = typename Cfg::XT;
  using QT = typename Cfg::QT;
  using ST = typename Cfg::ST;
  using C = typename ComputeType<XT>::type;
  constexpr int kVec = Cfg::kVec;
  constexpr int kUnroll = Cfg::kUnroll;
  using XVec = Vec<XT, kVec>;
  using QVec = Vec<QT, kVec>;

  const C scale = C(widen(*ptr<ST>(p.scale)));
  const int32_t zp = p.zero_point != 0 ? *ptr<int32_t>(p.zero_point) : 0;

  for (int64_t row = blockIdx.y; row < p.rows; row += gridDim.y) {
    const int64_t x_row = row * p.x_row_stride;
    const int64_t q_row = row * p.cols;
    const int64_t step = int64_t(gridDim.x) * Cfg::kThreads * kUnroll;
    for (int64_t base = int64_t(blockIdx.x) * Cfg::kThreads * kUnroll + threadIdx.x; base < p.chunks_per_row;
         base += step) {
      if constexpr (Cfg::kOp == 1) {  // quantize
        XVec in[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t c = base + int64_t(u) * Cfg::kThreads;
          if (c < p.chunks_per_row) in[u] = ptr<XVec>(p.x + sizeof(XT) * uint64_t(x_row))[c];
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t c = base + int64_t(u) * Cfg::kThreads;
          if (c < p.chunks_per_row) {
            QVec out;
#pragma unroll
            for (int i = 0; i < kVec; ++i) out.v[i] = quantize_value<Cfg>(widen(in[u].v[i]), scale, zp);
            mut_ptr<QVec>(p.q + uint64_t(q_row))[c] = out;
          }
        }
      } else {  // dequantize
        QVec in[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t c = base + int64_t(u) * Cfg::kThreads;
          if (c < p.chunks_per_row) in[u] = ptr<QVec>(p.q + uint64_t(q_row))[c];
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t c = base + int64_t(u) * Cfg::kThreads;
          if (c < p.chunks_per_row) {
            XVec out;
#pragma unroll
            for (int i = 0; i < kVec; ++i) out.v[i] = dequantize_value<Cfg>(int32_t(in[u].v[i]), scale, zp);
            mut_ptr<XVec>(p.x + sizeof(XT) * uint64_t(x_row))[c] = out;
          }
        }
      }
    }
    // Tail of the row: fewer than kVec elements, one per thread of block x 0.
    const int64_t tail_start = p.chunks_per_row * kVec;
    if (blockIdx.x == 0 && tail_start + threadIdx.x < p.cols) {
      const int64_t col = tail_start + threadIdx.x;
      if constexpr (Cfg::kOp == 1) {
        mut_ptr<QT>(p.q)[q_row + col] = quantize_value<Cfg>(widen(ptr<XT>(p.x)[x_row + col]), scale, zp);
      } else {
        mut_ptr<XT>(p.x)[x_row + col] = dequantize_value<Cfg>(int32_t(ptr<QT>(p.q)[q_row + col]), scale, zp);
      }
    }
  }
}

template <typename Cfg>
LOWBIT_DEVICE void quantize_kernel(const QuantizeParams& p) {
  if constexpr (Cfg::kScope == 1) {
    quantize_per_tensor<Cfg>(p);
  }
}

}  // namespace lowbit
