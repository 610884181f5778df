// prelude.cuh - the only header lowbit kernels include besides their own.
//
// lowbit never includes toolkit headers (cuda_fp16.h and friends cost tens of
// milliseconds per NVRTC compile and need a toolkit on the user's machine):
// fixed-width integers, fp16/bf16 storage types and their conversions, and the
// few special instructions the kernels use are defined here with inline PTX.
#pragma once

typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;

#define LOWBIT_DEVICE __device__ __forceinline__

namespace lowbit {

// ---- 16-bit floating-point storage types ---------------------------------
// Plain bit containers: arithmetic always happens in f32 after widening.
struct f16 { uint16_t bits; };
struct bf16 { uint16_t bits; };

LOWBIT_DEVICE float to_f32(float x) { return x; }
LOWBIT_DEVICE double to_f64(double x) { return x; }
LOWBIT_DEVICE float to_f32(f16 x) {
  float f;
  asm("{ .reg .b16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(x.bits));
  return f;
}
// bf16 is the top half of an f32: widening is exact and needs no instruction.
LOWBIT_DEVICE float to_f32(bf16 x) { return __int_as_float(int(uint32_t(x.bits) << 16)); }

template <typename T> struct FromF32;
template <> struct FromF32<float> {
  static LOWBIT_DEVICE float cvt(float x) { return x; }
};
// Round to nearest even; NaN becomes the canonical NaN 0x7fff.
template <> struct FromF32<f16> {
  static LOWBIT_DEVICE f16 cvt(float x) {
    f16 r;
    asm("{ .reg .b16 h; cvt.rn.f16.f32 h, %1; mov.b16 %0, h; }" : "=h"(r.bits) : "f"(x));
    return r;
  }
};
template <> struct FromF32<bf16> {
  static LOWBIT_DEVICE bf16 cvt(float x) {
    bf16 r;
#if __CUDA_ARCH__ >= 800
    asm("{ .reg .b16 h; cvt.rn.bf16.f32 h, %1; mov.b16 %0, h; }" : "=h"(r.bits) : "f"(x));
#else
    // Pre-Ampere: round to nearest even by integer arithmetic.
    uint32_t u = uint32_t(__float_as_int(x));
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      r.bits = 0x7fff;
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      r.bits = uint16_t(u >> 16);
    }
#endif
    return r;
  }
};
template <typename T> LOWBIT_DEVICE T from_f32(float x) { return FromF32<T>::cvt(x); }

// ---- IEEE arithmetic spelled out ------------------------------------------
// Kernels that must be bit-exact against the CPU reference use these, so that
// no compiler flag (fast math, FMA contraction) can change their rounding.
LOWBIT_DEVICE float div_rn(float a, float b) {
  float r;
  asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
LOWBIT_DEVICE double div_rn(double a, double b) {
  double r;
  asm("div.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
  return r;
}
LOWBIT_DEVICE float mul_rn(float a, float b) {
  float r;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
LOWBIT_DEVICE double mul_rn(double a, double b) {
  double r;
  asm("mul.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
  return r;
}
// Round half to even, to int64, saturating; NaN gives 0 (PTX cvt semantics,
// mirrored by the CPU reference).
LOWBIT_DEVICE int64_t rint_to_s64(float x) {
  int64_t r;
  asm("cvt.rni.s64.f32 %0, %1;" : "=l"(r) : "f"(x));
  return r;
}
LOWBIT_DEVICE int64_t rint_to_s64(double x) {
  int64_t r;
  asm("cvt.rni.s64.f64 %0, %1;" : "=l"(r) : "d"(x));
  return r;
}
LOWBIT_DEVICE float s64_to_f32(int64_t x) {
  float r;
  asm("cvt.rn.f32.s64 %0, %1;" : "=f"(r) : "l"(x));
  return r;
}
LOWBIT_DEVICE double s64_to_f64(int64_t x) {
  double r;
  asm("cvt.rn.f64.s64 %0, %1;" : "=d"(r) : "l"(x));
  return r;
}

// ---- Memory ----------------------------------------------------------------
// A vector of kN elements moved as one aligned access: NVVM turns the
// aggregate copy of a 16-byte aligned struct into a single ld/st.global.v4.
template <typename T, int kN>
struct alignas(sizeof(T) * kN <= 16 ? sizeof(T) * kN : 16) Vec {
  T v[kN];
};

template <typename T>
LOWBIT_DEVICE const T* ptr(uint64_t address) { return reinterpret_cast<const T*>(address); }
template <typename T>
LOWBIT_DEVICE T* mut_ptr(uint64_t address) { return reinterpret_cast<T*>(address); }

}  // namespace lowbit
