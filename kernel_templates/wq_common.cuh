// wq_common.cuh - device helpers of the weight-only matmul family: streaming
// loads, LOP3/PRMT, f16x2 / bf16x2 arithmetic, the m16n8k16 tensor-core MMA,
// and the "magic number" dequantization of packed integers. Inline PTX only
// (no toolkit headers), in namespace lowbit::wq.
#pragma once

#include "wq_layout.h"
#include "wq_params.h"

namespace lowbit {
namespace wq {

struct alignas(16) U4 {
  uint32_t x, y, z, w;
};
struct alignas(8) U2 {
  uint32_t x, y;
};

LOWBIT_DEVICE U4 zero_u4() { return U4{0u, 0u, 0u, 0u}; }
// Word i (a compile-time constant after unrolling) of a vector.
LOWBIT_DEVICE uint32_t word(const U4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// Weights are read exactly once: bypass L1 (the activations live there).
LOWBIT_DEVICE U4 ld_stream16(uint64_t address) {
  U4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(address));
  return v;
}
LOWBIT_DEVICE uint32_t ld_stream4(uint64_t address) {
  uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(address));
  return v;
}
// Small, reused data (activations, scales, zeros): cached loads.
LOWBIT_DEVICE U4 ld16(uint64_t address) {
  U4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(address));
  return v;
}
LOWBIT_DEVICE U2 ld8(uint64_t address) {
  U2 v;
  asm volatile("ld.global.nc.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(address));
  return v;
}
LOWBIT_DEVICE uint32_t ld4(uint64_t address) {
  uint32_t v;
  asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(v) : "l"(address));
  return v;
}
LOWBIT_DEVICE uint32_t ld2(uint64_t address) {
  uint16_t v;
  asm volatile("ld.global.nc.u16 %0, [%1];" : "=h"(v) : "l"(address));
  return v;
}
LOWBIT_DEVICE uint32_t ld1(uint64_t address) {
  uint32_t v;
  asm volatile("ld.global.nc.u8 %0, [%1];" : "=r"(v) : "l"(address));
  return v;
}

// Predicated loads: zero when `pred` is false, no branch (the predicated-off
// load issues no memory request).
LOWBIT_DEVICE U4 ld_stream16_if(uint64_t address, bool pred) {
  U4 v;
  asm volatile(
      "{ .reg .pred p; setp.ne.b32 p, %5, 0; mov.b32 %0, 0; mov.b32 %1, 0; mov.b32 %2, 0; mov.b32 %3, 0;\n"
      "  @p ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4]; }"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(address), "r"(int(pred)));
  return v;
}
LOWBIT_DEVICE uint32_t ld_stream4_if(uint64_t address, bool pred) {
  uint32_t v;
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %2, 0; mov.b32 %0, 0;\n  @p ld.global.nc.L1::no_allocate.u32 %0, [%1]; }"
               : "=r"(v)
               : "l"(address), "r"(int(pred)));
  return v;
}
LOWBIT_DEVICE U4 ld16_if(uint64_t address, bool pred) {
  U4 v;
  asm volatile(
      "{ .reg .pred p; setp.ne.b32 p, %5, 0; mov.b32 %0, 0; mov.b32 %1, 0; mov.b32 %2, 0; mov.b32 %3, 0;\n"
      "  @p ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4]; }"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(address), "r"(int(pred)));
  return v;
}
LOWBIT_DEVICE U2 ld8_if(uint64_t address, bool pred) {
  U2 v;
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %3, 0; mov.b32 %0, 0; mov.b32 %1, 0;\n  @p ld.global.nc.v2.u32 {%0, %1}, [%2]; }"
               : "=r"(v.x), "=r"(v.y)
               : "l"(address), "r"(int(pred)));
  return v;
}
LOWBIT_DEVICE uint32_t ld4_if(uint64_t address, bool pred) {
  uint32_t v;
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %2, 0; mov.b32 %0, 0;\n  @p ld.global.nc.u32 %0, [%1]; }"
               : "=r"(v)
               : "l"(address), "r"(int(pred)));
  return v;
}

// ---- Launch overlap (sm_90+; no-ops on older targets) -----------------------
//
// Programmatic dependent launch: a kernel launched with programmatic stream
// serialization may start before the kernel ahead of it in the stream has
// finished, as soon as every CTA of that kernel has executed
// launch_dependents (or exited). It must call wait_for_previous_grid before
// reading anything that kernel writes or writing anything it reads; wait
// returns at once when the kernel was launched normally.
LOWBIT_DEVICE void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
LOWBIT_DEVICE void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// d = (a & b) | c in one LOP3.
LOWBIT_DEVICE uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
LOWBIT_DEVICE uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(selector));
  return d;
}

LOWBIT_DEVICE uint32_t sub_f16x2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
LOWBIT_DEVICE uint32_t fma_f16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
LOWBIT_DEVICE uint32_t fma_bf16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
// Two f32 to bf16x2 / f16x2, nearest even; `lo` in the low half.
LOWBIT_DEVICE uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}
LOWBIT_DEVICE uint32_t pack_f16x2(float lo, float hi) {
  uint32_t d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}

// Tag types for the activation type, so templates can select instructions.
template <typename AT> struct IsBf16 { static constexpr bool value = false; };
template <> struct IsBf16<bf16> { static constexpr bool value = true; };

// C[16 x 8] += A[16 x 16] * B[16 x 8], f32 accumulators. Fragments as in the
// PTX ISA (mma.m16n8k16 .row.col): thread (g = lane / 4, t = lane % 4) holds
// a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..],
// b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g], c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..].
template <typename AT>
LOWBIT_DEVICE void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (IsBf16<AT>::value) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// ---- Dequantization of packed integers to exact (q - z) pairs -------------
//
// 4-bit, f16: (w & 0x000f000f) | 0x6400_6400 is the f16 pair 1024 + q for the
// nibbles at bits 0 and 16; subtracting 1024 + z is exact. The nibbles at bits
// 4 and 20 give 1024 + 16 q: times 1/16 minus (64 + z), also exact (one fma).
// 4-bit, bf16: bf16 has 7 mantissa bits, so each nibble pair is shifted down
// first: ((w >> s) & 0x000f000f) | 0x4300_4300 is 128 + q, minus 128 + z.
// 8-bit, f16: PRMT puts a byte under a 0x64 high byte: 1024 + q, minus 1024 + z.
// 8-bit, bf16: bytes become f32 2^23 + q (PRMT under 0x4b00_00), minus 2^23 + z
// in f32, then packed to bf16x2; |q - z| <= 255 is exact in bf16.
// Every result is an integer of at most 8 significant bits: exact in both types.

// Per-row constants for a given zero point z.
struct Zc4 {
  uint32_t lo;  // f16: (1024 + z) x2; bf16: -(128 + z) x2
  uint32_t hi;  // f16: -(64 + z) x2; bf16: unused
};
template <typename AT>
LOWBIT_DEVICE Zc4 zero_consts4(uint32_t z) {
  Zc4 c;
  if constexpr (IsBf16<AT>::value) {
    c.lo = (0xC300u | z) * 0x10001u;
    c.hi = c.lo;
  } else {
    c.lo = (0x6400u | z) * 0x10001u;
    c.hi = (0xD400u | (z << 4)) * 0x10001u;
  }
  return c;
}

// The pair of nibbles at bits (4s, 16 + 4s), s = 0..3, of `w` as exact q - z.
template <typename AT, int kS>
LOWBIT_DEVICE uint32_t deq4(uint32_t w, const Zc4& c) {
  if constexpr (IsBf16<AT>::value) {
    const uint32_t v = and_or(kS == 0 ? w : (w >> (4 * kS)), 0x000f000fu, 0x43004300u);
    return fma_bf16x2(v, 0x3f803f80u, c.lo);
  } else {
    const uint32_t base = (kS >= 2) ? (w >> 8) : w;
    if constexpr ((kS & 1) == 0) {
      return sub_f16x2(and_or(base, 0x000f000fu, 0x64006400u), c.lo);
    } else {
      return fma_f16x2(and_or(base, 0x00f000f0u, 0x64006400u), 0x2c002c00u, c.hi);
    }
  }
}
// Same, with the f16 shift shared by callers that dequantize all four pairs
// of a word (saves a shift per pair): w8 = w >> 8.
template <typename AT, int kS>
LOWBIT_DEVICE uint32_t deq4s(uint32_t w, uint32_t w8, const Zc4& c) {
  if constexpr (IsBf16<AT>::value) {
    return deq4<AT, kS>(w, c);
  } else {
    const uint32_t base = (kS >= 2) ? w8 : w;
    if constexpr ((kS & 1) == 0) {
      return sub_f16x2(and_or(base, 0x000f000fu, 0x64006400u), c.lo);
    } else {
      return fma_f16x2(and_or(base, 0x00f000f0u, 0x64006400u), 0x2c002c00u, c.hi);
    }
  }
}

// 8-bit: constants and the pair of bytes (b0, b1) = bytes (0,1) (kHalf = 0) or
// (2,3) (kHalf = 1) of `w` as exact q - z.
template <typename AT>
LOWBIT_DEVICE uint32_t zero_const8(uint32_t z) {
  if constexpr (IsBf16<AT>::value) {
    return __float_as_uint(8388608.0f + float(z));  // 2^23 + z (exact)
  } else {
    return (0x6400u | z) * 0x10001u;
  }
}
template <typename AT, int kHalf>
LOWBIT_DEVICE uint32_t deq8(uint32_t w, uint32_t zc) {
  if constexpr (IsBf16<AT>::value) {
    const float z = __uint_as_float(zc);
    const float lo = __uint_as_float(prmt(w, 0x4b000000u, kHalf ? 0x7442u : 0x7440u)) - z;
    const float hi = __uint_as_float(prmt(w, 0x4b000000u, kHalf ? 0x7443u : 0x7441u)) - z;
    return pack_bf16x2(lo, hi);
  } else {
    return sub_f16x2(prmt(w, 0x64646464u, kHalf ? 0x4342u : 0x4140u), zc);
  }
}

// Widening of a scale stored as f16 / bf16 bits.
template <typename ST> LOWBIT_DEVICE float scale_f32(uint32_t bits);
template <> LOWBIT_DEVICE float scale_f32<f16>(uint32_t bits) {
  f16 h;
  h.bits = uint16_t(bits);
  return to_f32(h);
}
template <> LOWBIT_DEVICE float scale_f32<bf16>(uint32_t bits) { return __uint_as_float(bits << 16); }

LOWBIT_DEVICE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

}  // namespace wq
}  // namespace lowbit
