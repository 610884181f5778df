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

// ---- More IEEE arithmetic, spelled out (appended for the quantize family) --
namespace lowbit {

LOWBIT_DEVICE float fma_rn(float a, float b, float c) {
  float r;
  asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(a), "f"(b), "f"(c));
  return r;
}
LOWBIT_DEVICE double fma_rn(double a, double b, double c) {
  double r;
  asm("fma.rn.f64 %0, %1, %2, %3;" : "=d"(r) : "d"(a), "d"(b), "d"(c));
  return r;
}
LOWBIT_DEVICE float add_rn(float a, float b) {
  float r;
  asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
LOWBIT_DEVICE double add_rn(double a, double b) {
  double r;
  asm("add.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
  return r;
}
LOWBIT_DEVICE float sub_rn(float a, float b) {
  float r;
  asm("sub.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
LOWBIT_DEVICE double sub_rn(double a, double b) {
  double r;
  asm("sub.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
  return r;
}
// Correctly rounded reciprocal (IEEE 1/x).
LOWBIT_DEVICE float rcp_rn(float a) {
  float r;
  asm("rcp.rn.f32 %0, %1;" : "=f"(r) : "f"(a));
  return r;
}
// Round to an integral value, half to even; NaN and +-inf pass through.
LOWBIT_DEVICE float rint_rn(float a) {
  float r;
  asm("cvt.rni.f32.f32 %0, %1;" : "=f"(r) : "f"(a));
  return r;
}
LOWBIT_DEVICE double rint_rn(double a) {
  double r;
  asm("cvt.rni.f64.f64 %0, %1;" : "=d"(r) : "d"(a));
  return r;
}
// IEEE minNum / maxNum: a NaN operand is ignored (the other one is returned).
LOWBIT_DEVICE float min_num(float a, float b) {
  float r;
  asm("min.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
LOWBIT_DEVICE float max_num(float a, float b) {
  float r;
  asm("max.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
LOWBIT_DEVICE double min_num(double a, double b) {
  double r;
  asm("min.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
  return r;
}
LOWBIT_DEVICE double max_num(double a, double b) {
  double r;
  asm("max.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
  return r;
}
LOWBIT_DEVICE float abs_f(float a) { return __int_as_float(__float_as_int(a) & 0x7fffffff); }
LOWBIT_DEVICE double abs_f(double a) {
  uint64_t u;
  asm("mov.b64 %0, %1;" : "=l"(u) : "d"(a));
  u &= 0x7fffffffffffffffull;
  double r;
  asm("mov.b64 %0, %1;" : "=d"(r) : "l"(u));
  return r;
}
// The canonical quiet NaN for a NaN, else the value (f32 0x7fffffff, f64
// 0x7fffffffffffffff): makes NaN results bit-reproducible.
LOWBIT_DEVICE float canonical_nan(float a) { return a != a ? __int_as_float(0x7fffffff) : a; }
LOWBIT_DEVICE double canonical_nan(double a) {
  if (a == a) return a;
  double r;
  asm("mov.b64 %0, %1;" : "=d"(r) : "l"(0x7fffffffffffffffull));
  return r;
}
LOWBIT_DEVICE float s32_to_f32(int32_t x) {
  float r;
  asm("cvt.rn.f32.s32 %0, %1;" : "=f"(r) : "r"(x));
  return r;
}
LOWBIT_DEVICE double s32_to_f64(int32_t x) {
  double r;
  asm("cvt.rn.f64.s32 %0, %1;" : "=d"(r) : "r"(x));
  return r;
}
// Truncating conversions of values already integral and in range.
LOWBIT_DEVICE int32_t f32_to_s32_rz(float x) {
  int32_t r;
  asm("cvt.rzi.s32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
LOWBIT_DEVICE int32_t f64_to_s32_rz(double x) {
  int32_t r;
  asm("cvt.rzi.s32.f64 %0, %1;" : "=r"(r) : "d"(x));
  return r;
}

// ---- Warp and block primitives ----------------------------------------------
LOWBIT_DEVICE uint32_t shfl_xor(uint32_t v, int lane_mask, uint32_t member_mask) {
  uint32_t r;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, %3;" : "=r"(r) : "r"(v), "r"(lane_mask), "r"(member_mask));
  return r;
}
LOWBIT_DEVICE float shfl_xor(float v, int lane_mask, uint32_t member_mask) {
  return __int_as_float(int(shfl_xor(uint32_t(__float_as_int(v)), lane_mask, member_mask)));
}
LOWBIT_DEVICE double shfl_xor(double v, int lane_mask, uint32_t member_mask) {
  uint32_t lo, hi;
  asm("mov.b64 {%0, %1}, %2;" : "=r"(lo), "=r"(hi) : "d"(v));
  lo = shfl_xor(lo, lane_mask, member_mask);
  hi = shfl_xor(hi, lane_mask, member_mask);
  double r;
  asm("mov.b64 %0, {%1, %2};" : "=d"(r) : "r"(lo), "r"(hi));
  return r;
}
LOWBIT_DEVICE void block_sync() { asm volatile("bar.sync 0;" ::: "memory"); }

// The 32-bit shared-window address of a pointer into shared memory (the
// operand form of ldmatrix, cp.async, mbarrier and bulk copies).
LOWBIT_DEVICE uint32_t smem_u32(const void* p) {
  uint32_t a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}

// ---- Streaming global memory accesses -----------------------------------------
// Loads that bypass L1 allocation (data read once) and stores marked
// evict-first: streaming kernels keep L1/L2 for what is reused. `Raw<N>` is N
// bytes moved as one aligned access (N = 4, 8, 16) or as 16-byte pieces.
template <int kBytes>
struct alignas(kBytes < 16 ? kBytes : 16) Raw {
  uint32_t w[kBytes / 4];
};
template <int kBytes>
LOWBIT_DEVICE Raw<kBytes> load_stream(const void* p) {
  Raw<kBytes> r;
  if constexpr (kBytes % 16 == 0) {
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i)
      asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                   : "=r"(r.w[4 * i]), "=r"(r.w[4 * i + 1]), "=r"(r.w[4 * i + 2]), "=r"(r.w[4 * i + 3])
                   : "l"(static_cast<const char*>(p) + 16 * i));
  } else if constexpr (kBytes == 8) {
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(r.w[0]), "=r"(r.w[1]) : "l"(p));
  } else {
    static_assert(kBytes == 4, "load_stream: 4, 8 or a multiple of 16 bytes");
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(r.w[0]) : "l"(p));
  }
  return r;
}
template <int kBytes>
LOWBIT_DEVICE void store_stream(void* p, const Raw<kBytes>& r) {
  if constexpr (kBytes % 16 == 0) {
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i)
      asm volatile("st.global.cs.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(static_cast<char*>(p) + 16 * i),
                   "r"(r.w[4 * i]), "r"(r.w[4 * i + 1]), "r"(r.w[4 * i + 2]), "r"(r.w[4 * i + 3])
                   : "memory");
  } else if constexpr (kBytes == 8) {
    asm volatile("st.global.cs.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(r.w[0]), "r"(r.w[1]) : "memory");
  } else {
    static_assert(kBytes == 4, "store_stream: 4, 8 or a multiple of 16 bytes");
    asm volatile("st.global.cs.u32 [%0], %1;" ::"l"(p), "r"(r.w[0]) : "memory");
  }
}

}  // namespace lowbit
