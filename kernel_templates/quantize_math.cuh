// quantize_math.cuh - the per-value arithmetic of the elementwise quantization
// family, shared by its kernels (quantize.cuh, quantize_dynamic.cuh). Every
// operation is an IEEE operation spelled out in PTX (prelude.cuh), so results
// are bit-identical to the CPU reference (src/ref/quantize.cpp) under any flags.
//
// Semantics (lowbit.h documents them for users):
//  - C, the compute type, is f32 for f32/f16/bf16 inputs (16-bit values are
//    widened exactly) and f64 for f64 inputs. Scales are widened to C.
//  - zero points are clamped into [-2^21, 2^21] before use, so qmin - zp and
//    qmax - zp are exact in C and no integer arithmetic can overflow.
//  - quantize: v = x / s (IEEE, correctly rounded); c = rint_half_even(v);
//    NaN -> c = 0; c = clamp(c, qmin - zp, qmax - zp); q = c + zp. So NaN
//    gives clamp(zp, qmin, qmax), +inf gives qmax, -inf gives qmin.
//  - float results that are NaN are written as the canonical NaN.
#pragma once

#include "quantize_params.h"

namespace lowbit {
namespace qmath {

template <typename T> struct Compute { using type = float; };
template <> struct Compute<double> { using type = double; };

LOWBIT_DEVICE float widen(float x) { return x; }
LOWBIT_DEVICE float widen(f16 x) { return to_f32(x); }
LOWBIT_DEVICE float widen(bf16 x) { return to_f32(x); }
LOWBIT_DEVICE double widen(double x) { return x; }

// Rounds a C value to T, to nearest even; NaN becomes T's canonical NaN.
template <typename T> struct Narrow {
  static LOWBIT_DEVICE T cvt(float v) { return from_f32<T>(v); }  // f16 / bf16: cvt gives 0x7fff for NaN
};
template <> struct Narrow<float> {
  static LOWBIT_DEVICE float cvt(float v) { return canonical_nan(v); }
  static LOWBIT_DEVICE float cvt(double v) {  // an f32 scale computed in f64
    float r;
    asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(v));
    return canonical_nan(r);
  }
};
template <> struct Narrow<double> {
  static LOWBIT_DEVICE double cvt(double v) { return canonical_nan(v); }
};
template <typename T, typename C> LOWBIT_DEVICE T narrow(C v) { return Narrow<T>::cvt(v); }

// True for the 16-bit input types, whose quotient x / s is computed with the
// reciprocal + one correction (proven exact below); f32 and f64 divide.
template <typename XT> struct FastDiv { static constexpr bool value = false; };
template <> struct FastDiv<f16> { static constexpr bool value = true; };
template <> struct FastDiv<bf16> { static constexpr bool value = true; };

constexpr int32_t kZpLimit = 1 << 21;

// The quantization parameters of one scale / zero-point pair.
template <typename C> struct QP {
  C s;          // scale
  C r;          // RN(1 / s), fast path only
  C lo, hi;     // qmin - zp, qmax - zp: exact
  int32_t zp;   // the clamped zero point
  bool fast;    // s is inside the range where the fast quotient is proven exact
};

template <typename Cfg, typename C>
LOWBIT_DEVICE QP<C> make_qp(C s, int32_t zp_raw, bool want_rcp) {
  QP<C> p;
  p.s = s;
  p.zp = zp_raw < -kZpLimit ? -kZpLimit : (zp_raw > kZpLimit ? kZpLimit : zp_raw);
  if constexpr (sizeof(C) == 8) {
    p.lo = s32_to_f64(Cfg::kQmin - p.zp);
    p.hi = s32_to_f64(Cfg::kQmax - p.zp);
    p.r = 0;
    p.fast = false;
  } else {
    p.lo = s32_to_f32(Cfg::kQmin - p.zp);
    p.hi = s32_to_f32(Cfg::kQmax - p.zp);
    if (want_rcp) {
      p.r = rcp_rn(s);
      const float as = abs_f(s);
      p.fast = as >= 0x1p-40f && as <= 0x1p60f;
    } else {
      p.r = 0.0f;
      p.fast = false;
    }
  }
  return p;
}

// ---- The quotient ------------------------------------------------------------
// Fast quotient for 16-bit inputs: q0 = RN(x * r) with r = RN(1/s), the
// remainder e = RN(x - q0 * s) (exact: an FMA of a near-quotient), and
// q1 = RN(q0 + e * r). Claim: q1 == RN(x / s), the IEEE quotient, whenever
//   2^-40 <= |s| <= 2^60 (QP::fast) and 2^-60 <= |x| <= 2^60.
// Why: every step is a correctly rounded IEEE operation, so scaling x or s by
// a power of two scales q0, e, q1 and RN(x / s) by the same power as long as
// no value leaves the normal range, where representability is unchanged. In
// that range the quotient magnitude is in [2^-120, 2^100] (normal), and the
// exact remainder x - q0 * s is a multiple of ulp(q0) * ulp(s) >= 2^-107 with
// at most 25 significant bits, so it is representable exactly as it is at
// unit scale. The outcome therefore depends only on the two significands and
// the signs (RN is symmetric). x has at most 11 significant bits (f16: 11, bf16:
// 8; f16 subnormals widen to f32 normals with fewer), s has 24: we checked all
// 2^30 (bf16) and 2^33 (f16) significand pairs against IEEE division on the
// CPU: zero mismatches (tests/unit/test_quantize_desc.cpp runs it exhaustively
// with LOWBIT_EXHAUSTIVE=1 and sampled otherwise).
// Quantize only needs rint(RN(x/s)): for |x| < 2^-60 (with |s| >= 2^-40) the
// quotient is below 2^-20, q1 stays far below 1/2 and both round to 0, so there
// the lower bound on |x| is not needed; the upper bound only serves to keep
// every intermediate finite, which |x| <= 2^82 does as well (quant_fast_k).
LOWBIT_DEVICE float quot_fast(float x, float s, float r) {
  const float q0 = mul_rn(x, r);
  const float e = fma_rn(-q0, s, x);
  return fma_rn(e, r, q0);
}
LOWBIT_DEVICE bool in_div_fast_range(float x) {
  const float a = abs_f(x);
  return a >= 0x1p-60f && a <= 0x1p60f;
}

// ---- Quantize ----------------------------------------------------------------
// c = clamp(rint(x / s), lo, hi) with NaN -> 0, by IEEE division.
template <typename C>
LOWBIT_DEVICE C quant_exact(C x, const QP<C>& p) {
  C v = rint_rn(div_rn(x, p.s));
  v = v != v ? C(0) : v;
  return min_num(max_num(v, p.lo), p.hi);
}
LOWBIT_DEVICE float fabs_op(float x) {  // abs.f32: folds into a comparison's operand modifier
  float r;
  asm("abs.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
// The fast quotient rounded to an integer, unclamped: k = rint(RN(x / s)).
// Valid (ok stays true) when p.fast and |RN(x r)| <= 2^21: then |x| <= 2^82
// (no intermediate overflows, so the argument above holds; tiny quotients
// round to 0 either way) and |q1| < 2^22, where rint_small is exact. NaN and
// inf inputs fail the test.
LOWBIT_DEVICE int32_t quant_fast_k(float x, const QP<float>& p, bool& ok);

// rint of |c| <= 2^22 by the 1.5 * 2^23 trick: the addition rounds to an
// integer, half to even (the magic number is even), exactly.
constexpr float kMagic = 12582912.0f;  // 0x4B400000
LOWBIT_DEVICE float rint_small(float c) { return sub_rn(add_rn(c, kMagic), kMagic); }
LOWBIT_DEVICE double rint_small(double c) { return rint_rn(c); }
LOWBIT_DEVICE int32_t rint_small_int(float c) { return __float_as_int(add_rn(c, kMagic)) - 0x4B400000; }
LOWBIT_DEVICE int32_t rint_small_int(double c) { return f64_to_s32_rz(rint_rn(c)); }

LOWBIT_DEVICE int32_t quant_fast_k(float x, const QP<float>& p, bool& ok) {
  const float q0 = mul_rn(x, p.r);
  ok &= fabs_op(q0) <= 0x1p21f;
  const float e = fma_rn(-q0, p.s, x);
  return rint_small_int(fma_rn(e, p.r, q0));
}
// An integer |k| < 2^22 as an exact C value, without a conversion instruction.
LOWBIT_DEVICE float small_int_to_c(int32_t k, float) { return sub_rn(__int_as_float(0x4B400000 + k), kMagic); }
LOWBIT_DEVICE double small_int_to_c(int32_t k, double) { return s32_to_f64(k); }

// ---- Dynamic range -------------------------------------------------------------
// From the NaN-ignoring min / max of a tensor, token or group (mn <= 0 <= mx,
// both start at 0), the scale rounded to the scale type ST (0 -> 1) and the
// zero point:
//   symmetric:  s = RN_ST(mx / min(-qmin, qmax)), zp = 0, with mx = max |x|;
//   asymmetric: s = RN_ST((mx - mn) / (qmax - qmin)),
//               zp = qmin - clamp(rint(mn / s) (NaN -> 0), qmin - qmax, 0).
template <typename Cfg, typename C, typename ST>
LOWBIT_DEVICE void dynamic_qparams(C mn, C mx, ST* s_out, C* s, int32_t* zp) {
  C sc;
  if constexpr (Cfg::kSymmetric) {
    constexpr int32_t d = -Cfg::kQmin < Cfg::kQmax ? -Cfg::kQmin : Cfg::kQmax;
    sc = div_rn(mx, C(d));
  } else {
    sc = div_rn(sub_rn(mx, mn), C(Cfg::kQmax - Cfg::kQmin));
  }
  ST st = narrow<ST>(sc);
  C sw = widen(st);
  if (sw == C(0)) {
    st = narrow<ST>(C(1));
    sw = C(1);
  }
  *s_out = st;
  *s = sw;
  if constexpr (Cfg::kSymmetric) {
    *zp = 0;
  } else {
    C t = rint_rn(div_rn(mn, sw));
    t = t != t ? C(0) : t;
    t = min_num(max_num(t, C(Cfg::kQmin - Cfg::kQmax)), C(0));
    int32_t ti;
    if constexpr (sizeof(C) == 8) ti = f64_to_s32_rz(t);
    else ti = f32_to_s32_rz(t);
    *zp = Cfg::kQmin - ti;
  }
}

// min / max folding that ignores NaN; symmetric folds |x| into mx.
template <typename Cfg, typename C>
LOWBIT_DEVICE void fold_range(C v, C& mn, C& mx) {
  if constexpr (Cfg::kSymmetric) {
    mx = max_num(mx, abs_f(v));
  } else {
    mn = min_num(mn, v);
    mx = max_num(mx, v);
  }
}

template <typename T> struct IsBf16 { static constexpr bool value = false; };
template <> struct IsBf16<bf16> { static constexpr bool value = true; };

// The 32-bit word holding elements 2j and 2j + 1 of a vector of 16-bit values
// (in registers the pair already is one word: no instruction).
template <typename XT, int kN>
LOWBIT_DEVICE uint32_t pair_word(const Vec<XT, kN>& v, int j) {
  return uint32_t(v.v[2 * j].bits) | (uint32_t(v.v[2 * j + 1].bits) << 16);
}
// Element i of a vector widened to its compute type. bf16: the odd element of
// a pair is its word with the low half cleared.
template <typename XT, int kN>
LOWBIT_DEVICE typename Compute<XT>::type widen_at(const Vec<XT, kN>& v, int i) {
  if constexpr (IsBf16<XT>::value && kN % 2 == 0) {
    if (i & 1) {
      // One byte permute (bytes 2, 3 kept, 0, 1 zeroed); written in C++ the
      // compiler turns it back into extract-and-shift, two instructions.
      return __int_as_float(int(__byte_perm(pair_word(v, i / 2), 0u, 0x3244u)));
    }
  }
  return typename Compute<XT>::type(widen(v.v[i]));
}

// The NaN-ignoring range of a segment, element by element (fold_range) or,
// for 16-bit inputs on sm_80+, two elements per instruction: max.{f16x2,bf16x2}
// and min.* return the non-NaN operand like max.f32 and only select, so the
// packed accumulators widened and folded at the end hold exactly the range the
// elementwise fold finds (up to the sign of a zero, which neither the scale
// nor the zero point sees). |x| is the word with its two sign bits cleared.
// `nan` records whether any value folded was NaN (pairs: one more packed max
// that propagates NaN); dynamic quantize uses it to skip per-element checks.
template <typename XT> struct PairFold { static constexpr bool value = false; };
#if __CUDA_ARCH__ >= 800
template <> struct PairFold<f16> { static constexpr bool value = true; };
template <> struct PairFold<bf16> { static constexpr bool value = true; };
#endif
template <typename Cfg, typename XT>
struct RangeFold {
  using C = typename Compute<XT>::type;
  static constexpr bool kPairs = PairFold<XT>::value;
  C mn = C(0), mx = C(0);
  uint32_t pmn = 0u, pmx = 0u, pnan = 0u;  // +0 in both halves
  bool nan = false;

  LOWBIT_DEVICE void add(C v) {
    fold_range<Cfg>(v, mn, mx);
    nan |= v != v;
  }
  template <int kN>
  LOWBIT_DEVICE void add(const Vec<XT, kN>& v) {
    if constexpr (kPairs && kN % 2 == 0) {
#pragma unroll
      for (int j = 0; j < kN / 2; ++j) {
        const uint32_t w = pair_word(v, j);
        pnan = pair<PairOp::kMaxNaN>(pnan, w);
        if constexpr (Cfg::kSymmetric) {
          pmx = pair<PairOp::kMax>(pmx, w & 0x7fff7fffu);
        } else {
          pmn = pair<PairOp::kMin>(pmn, w);
          pmx = pair<PairOp::kMax>(pmx, w);
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < kN; ++i) add(C(widen(v.v[i])));
    }
  }
  // The range so far, the packed halves included.
  LOWBIT_DEVICE void finish() {
    if constexpr (kPairs) {
      add(C(widen(XT{uint16_t(pmx & 0xffffu)})));
      add(C(widen(XT{uint16_t(pmx >> 16)})));
      if constexpr (!Cfg::kSymmetric) {
        add(C(widen(XT{uint16_t(pmn & 0xffffu)})));
        add(C(widen(XT{uint16_t(pmn >> 16)})));
      }
      constexpr uint32_t kInf = IsBf16<XT>::value ? 0x7f80u : 0x7c00u;
      nan |= (pnan & 0x7fffu) > kInf || ((pnan >> 16) & 0x7fffu) > kInf;
      pmn = pmx = pnan = 0u;
    }
  }

 private:
  // max / min of two packed pairs: NaN-ignoring, or (kMaxNaN) NaN-propagating.
  enum class PairOp { kMax, kMaxNaN, kMin };
  template <PairOp kOp>
  static LOWBIT_DEVICE uint32_t pair(uint32_t a, uint32_t b) {
    uint32_t r = a;
#if __CUDA_ARCH__ >= 800
    constexpr bool kBf = IsBf16<XT>::value;
    if constexpr (kOp == PairOp::kMax && kBf) asm("max.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    else if constexpr (kOp == PairOp::kMax) asm("max.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    else if constexpr (kOp == PairOp::kMaxNaN && kBf) asm("max.NaN.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    else if constexpr (kOp == PairOp::kMaxNaN) asm("max.NaN.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    else if constexpr (kBf) asm("min.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    else asm("min.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
#endif
    return r;
  }
};

// Reduces (mn, mx) over the whole block; every thread gets the result.
template <int kThreads, typename C>
LOWBIT_DEVICE void block_range(C& mn, C& mx) {
  __shared__ C red[2][32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    mn = min_num(mn, shfl_xor(mn, o, 0xffffffffu));
    mx = max_num(mx, shfl_xor(mx, o, 0xffffffffu));
  }
  if constexpr (kThreads > 32) {
    const int warp = int(threadIdx.x) / 32;
    if ((threadIdx.x & 31) == 0) {
      red[0][warp] = mn;
      red[1][warp] = mx;
    }
    block_sync();
    mn = red[0][0];
    mx = red[1][0];
#pragma unroll
    for (int w = 1; w < kThreads / 32; ++w) {
      mn = min_num(mn, red[0][w]);
      mx = max_num(mx, red[1][w]);
    }
    block_sync();  // red may be reused right after
  }
}

// Reduces (mn, mx) over a segment's threads: kSegT lanes of a warp (member:
// their mask) by shuffles, or the whole block (kSegT == kThreads).
template <int kSegT, int kThreads, typename C>
LOWBIT_DEVICE void segment_range(C& mn, C& mx, uint32_t member) {
  if constexpr (kSegT <= 32) {
#pragma unroll
    for (int o = kSegT / 2; o > 0; o >>= 1) {
      mn = min_num(mn, shfl_xor(mn, o, member));
      mx = max_num(mx, shfl_xor(mx, o, member));
    }
  } else {
    block_range<kThreads>(mn, mx);
  }
}

// ---- Packed storage -------------------------------------------------------------
// 8-bit: one byte per value. 4-bit: two per byte, element 2i in the low nibble.
template <int kBits, bool kSigned>
LOWBIT_DEVICE int32_t q_from_byte(uint32_t byte, int nibble) {
  if constexpr (kBits == 8) {
    return kSigned ? int32_t(int8_t(uint8_t(byte))) : int32_t(byte & 0xffu);
  } else {
    const int32_t n = int32_t((byte >> (4 * nibble)) & 15u);
    return kSigned ? (n ^ 8) - 8 : n;
  }
}

}  // namespace qmath
}  // namespace lowbit
