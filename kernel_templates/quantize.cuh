// quantize.cuh - elementwise quantization kernels (DESIGN.md section 6.1).
//
//   quantize:            q = clamp(rint_half_even(x / s) + zp, qmin, qmax)
//   dequantize:          x = (q - zp) * s
//   quantize backward:   dx = dy / s where qmin < q < qmax, else +0
//   dequantize backward: dx = dy * s
//   fake quantize:       y = (q - zp) * s
//   fake backward:       dx = dy where qmin <= rint(x / s) + zp <= qmax, else +0
//   dynamic quantize:    s, zp from the data (quantize_math.cuh), then quantize
//
// The arithmetic is in quantize_math.cuh (bit-identical to src/ref/). This
// file has the elementwise kernel for every op and scope (and both phases of
// dynamic per-tensor quantize); quantize_dynamic.cuh has the per-token /
// per-group dynamic kernel.
//
// Elementwise work: the problem is a [rows, cols] view (contiguous per-tensor
// problems are one long row). A block is kThreads / kRowThreads rows wide; its
// kRowThreads threads stride over kVec-element vectors of the row (grid.y
// splits long rows), kUnroll vectors per step with every load issued before the
// first store. A row's last cols % kVec elements (the tail) and any vector the
// fast quotient cannot prove exact are redone one unit at a time by the exact
// path (a rolled loop: one copy of the IEEE division in the code).
#pragma once

#include "quantize_math.cuh"

namespace lowbit {
namespace qk {

using namespace qmath;

// Config (rendered by src/ops/quantize.cpp):
//  XT, QT, ST; kOp, kScope, kVec, kUnroll, kQmin, kQmax, kBits, kSigned,
//  kGroup, kScaleMode (0 row, 1 vector, 2 element, 3 step of kUnroll
//  contiguous vectors), kRowThreads, kXAligned,
//  kQAligned, kHints, kKernel (0 elementwise, 1 dynamic segments, 2 staged:
//  quantize_staged.cuh, which also takes kStages),
//  kDynPhase (0, 1 reduce, 2 quantize), kSymmetric, kSegThreads, kPer,
//  kSinglePass.

template <typename T, int kN, bool kAligned, bool kHints>
LOWBIT_DEVICE Vec<T, kN> load_vec(const T* p) {
  using V = Vec<T, kN>;
  if constexpr (kAligned) {
    if constexpr (kHints && (sizeof(V) == 4 || sizeof(V) == 8 || sizeof(V) % 16 == 0)) {
      union {
        Raw<int(sizeof(V))> r;
        V v;
      } u;
      u.r = load_stream<int(sizeof(V))>(p);
      return u.v;
    } else {
      return *reinterpret_cast<const V*>(p);
    }
  } else {
    V v;
#pragma unroll
    for (int i = 0; i < kN; ++i) v.v[i] = p[i];
    return v;
  }
}

template <typename T, int kN, bool kAligned, bool kHints>
LOWBIT_DEVICE void store_vec(T* p, const Vec<T, kN>& v) {
  using V = Vec<T, kN>;
  if constexpr (kAligned) {
    if constexpr (kHints && (sizeof(V) == 4 || sizeof(V) == 8 || sizeof(V) % 16 == 0)) {
      union {
        Raw<int(sizeof(V))> r;
        V v;
      } u;
      u.v = v;
      store_stream<int(sizeof(V))>(p, u.r);
    } else {
      *reinterpret_cast<V*>(p) = v;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kN; ++i) p[i] = v.v[i];
  }
}

// kN bytes of Q held as 32-bit words (a byte array would cost a register
// per byte): byte i is bits 8 (i % 4) .. of word i / 4.
template <int kN>
struct QWords {
  static constexpr int kW = (kN + 3) / 4;
  uint32_t w[kW];
  LOWBIT_DEVICE uint32_t byte(int i) const { return (w[i >> 2] >> (8 * (i & 3))) & 0xffu; }
};

LOWBIT_DEVICE uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(selector));
  return r;
}
// [a.byte0, b.byte0, c.byte0, d.byte0]
LOWBIT_DEVICE uint32_t pack_bytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return prmt(prmt(a, b, 0x0040u), prmt(c, d, 0x0040u), 0x5410u);
}

template <int kN, bool kAligned, bool kHints>
LOWBIT_DEVICE QWords<kN> load_q(const uint8_t* p) {
  QWords<kN> r;
  if constexpr (kAligned && kN % 4 == 0) {
    if constexpr (kHints && (kN == 4 || kN == 8 || kN % 16 == 0)) {
      const Raw<kN> raw = load_stream<kN>(p);
#pragma unroll
      for (int i = 0; i < kN / 4; ++i) r.w[i] = raw.w[i];
    } else {
      const Raw<kN> raw = *reinterpret_cast<const Raw<kN>*>(p);
#pragma unroll
      for (int i = 0; i < kN / 4; ++i) r.w[i] = raw.w[i];
    }
  } else if constexpr (kAligned && kN == 2) {
    r.w[0] = *reinterpret_cast<const uint16_t*>(p);
  } else {
#pragma unroll
    for (int i = 0; i < QWords<kN>::kW; ++i) r.w[i] = 0;
#pragma unroll
    for (int i = 0; i < kN; ++i) r.w[i >> 2] |= uint32_t(p[i]) << (8 * (i & 3));
  }
  return r;
}

template <int kN, bool kAligned, bool kHints>
LOWBIT_DEVICE void store_q(uint8_t* p, const QWords<kN>& v) {
  if constexpr (kAligned && kN % 4 == 0) {
    Raw<kN> raw;
#pragma unroll
    for (int i = 0; i < kN / 4; ++i) raw.w[i] = v.w[i];
    if constexpr (kHints && (kN == 4 || kN == 8 || kN % 16 == 0)) store_stream<kN>(p, raw);
    else *reinterpret_cast<Raw<kN>*>(p) = raw;
  } else if constexpr (kAligned && kN == 2) {
    *reinterpret_cast<uint16_t*>(p) = uint16_t(v.w[0]);
  } else {
#pragma unroll
    for (int i = 0; i < kN; ++i) p[i] = uint8_t(v.byte(i));
  }
}

template <typename Cfg>
struct K {
  using XT = typename Cfg::XT;
  using ST = typename Cfg::ST;
  using C = typename Compute<XT>::type;
  static constexpr int kVec = Cfg::kVec;
  static constexpr int kBits = Cfg::kBits;
  static constexpr int kQBytes = kVec * kBits / 8 > 0 ? kVec * kBits / 8 : 1;
  using XVec = Vec<XT, kVec>;
  using QVec = QWords<kQBytes>;
  static constexpr int kOp = Cfg::kOp;
  static constexpr bool kOutQ = kOp == 1 || kOp == 7;
  static constexpr bool kInQ = kOp == 2;
  static constexpr bool kHasDy = kOp == 3 || kOp == 4 || kOp == 6;
  static constexpr bool kInX = kOp != 2 && kOp != 4;
  static constexpr bool kDivides = kOp == 1 || kOp == 3 || kOp == 5 || kOp == 6 || kOp == 7;
  // The fast quotient applies to 16-bit inputs with one scale per row or vector.
  static constexpr bool kFast = FastDiv<XT>::value && kDivides && Cfg::kScaleMode != 2;
  // An exact unit: one element, or a byte (two elements) of packed output.
  static constexpr int kUnit = kOutQ && kBits == 4 ? 2 : 1;

  // ---- Scales ----------------------------------------------------------------
  static LOWBIT_DEVICE QP<C> load_qp(const QuantizeParams& p, int64_t idx, bool want_rcp) {
    const C s = C(widen(ptr<ST>(p.scale)[idx]));
    const int32_t zp = p.zero_point != 0 ? ptr<int32_t>(p.zero_point)[idx] : 0;
    return make_qp<Cfg, C>(s, zp, want_rcp);
  }
  // The scale index shared by a whole row (scale modes 0 and 1).
  static LOWBIT_DEVICE int64_t row_index(const QuantizeParams& p, int64_t row) {
    if constexpr (Cfg::kScope == 1) return 0;
    else if constexpr (Cfg::kScope == 3) return row;
    else if constexpr (Cfg::kScope == 2) return (row / p.ch_inner) % p.ch_count;
    else return row * p.groups_per_row;
  }
  static LOWBIT_DEVICE int64_t index(const QuantizeParams& p, int64_t row, int64_t col) {
    if constexpr (Cfg::kScope == 4) return row * p.groups_per_row + col / Cfg::kGroup;
    else if constexpr (Cfg::kScope == 2 && Cfg::kScaleMode == 2) return col;  // the last axis
    else return row_index(p, row);
  }
  // The scale index of vector k of a run of vectors kStep vectors apart, the
  // first at column col0 of `row`. Per-group scales whose group index advances
  // by the same whole number per step get one index plus constant offsets
  // (folded into the loads) instead of 64-bit index arithmetic per vector.
  template <int kStep>
  static LOWBIT_DEVICE int64_t stepped_index(const QuantizeParams& p, int64_t row, int64_t col0, int k) {
    constexpr int64_t kSpan = int64_t(kStep) * Cfg::kVec;
    if constexpr (Cfg::kScaleMode == 0) return row_index(p, row);
    else if constexpr (Cfg::kScope == 4 && Cfg::kScaleMode == 1 && kSpan % Cfg::kGroup == 0)
      return index(p, row, col0) + k * (kSpan / Cfg::kGroup);
    else return index(p, row, col0 + k * kSpan);
  }

  // ---- The exact path: one unit at (row, col) ---------------------------------
  static LOWBIT_DEVICE void exact_unit(const QuantizeParams& p, const QP<C>& rqp, int64_t row, int64_t col) {
    uint32_t packed = 0;
#pragma unroll 1
    for (int k = 0; k < kUnit; ++k) {
      const int64_t cc = col + k;
      if (cc >= p.cols) break;
      QP<C> a = rqp;
      if constexpr (Cfg::kScaleMode != 0) a = load_qp(p, index(p, row, cc), false);
      const int64_t xo = row * p.x_row_stride + cc;
      if constexpr (kOutQ) {
        const int32_t qv = rint_small_int(quant_exact(C(widen(ptr<XT>(p.x)[xo])), a)) + a.zp;
        packed |= kBits == 8 ? (uint32_t(qv) & 0xffu) : ((uint32_t(qv) & 15u) << (4 * k));
      } else if constexpr (kOp == 2) {
        const int64_t qi = row * p.q_row_bytes + (kBits == 8 ? cc : cc / 2);
        const int32_t qv = q_from_byte<kBits, Cfg::kSigned>(ptr<uint8_t>(p.q)[qi], int(cc & 1));
        mut_ptr<XT>(p.x)[xo] = narrow<XT>(mul_rn(small_int_to_c(qv - a.zp, C()), a.s));
      } else if constexpr (kOp == 3) {
        const int32_t ci = rint_small_int(quant_exact(C(widen(ptr<XT>(p.x)[xo])), a));
        const bool pass = ci > Cfg::kQmin - a.zp && ci < Cfg::kQmax - a.zp;
        const C v = pass ? div_rn(C(widen(ptr<XT>(p.dy)[xo])), a.s) : C(0);
        mut_ptr<XT>(p.dx)[xo] = narrow<XT>(v);
      } else if constexpr (kOp == 4) {
        mut_ptr<XT>(p.dx)[xo] = narrow<XT>(mul_rn(C(widen(ptr<XT>(p.dy)[xo])), a.s));
      } else if constexpr (kOp == 5) {
        const int32_t ci = rint_small_int(quant_exact(C(widen(ptr<XT>(p.x)[xo])), a));
        mut_ptr<XT>(p.y)[xo] = narrow<XT>(mul_rn(small_int_to_c(ci, C()), a.s));
      } else if constexpr (kOp == 6) {
        const C t = rint_rn(div_rn(C(widen(ptr<XT>(p.x)[xo])), a.s));
        const bool pass = t >= a.lo && t <= a.hi;  // false for NaN
        XT zero{};
        mut_ptr<XT>(p.dx)[xo] = pass ? ptr<XT>(p.dy)[xo] : zero;
      }
    }
    if constexpr (kOutQ) mut_ptr<uint8_t>(p.q)[row * p.q_row_bytes + (kBits == 8 ? col : col / 2)] = uint8_t(packed);
  }

  // q = clamp(rint(x / s) + zp, qmin, qmax): fast (clears ok where it cannot
  // vouch for the result) or exact.
  template <bool kFastPath>
  static LOWBIT_DEVICE int32_t quant_q(C x, const QP<C>& a, bool& ok) {
    if constexpr (kFastPath) {
      const int32_t q = quant_fast_k(x, a, ok) + a.zp;
      return q < Cfg::kQmin ? Cfg::kQmin : (q > Cfg::kQmax ? Cfg::kQmax : q);
    } else {
      return rint_small_int(quant_exact(x, a)) + a.zp;
    }
  }

  // Packs kVec quantized values (only their low kBits bits are read).
  static LOWBIT_DEVICE void pack_q(const int32_t (&qv)[kVec], QVec& qout) {
    if constexpr (kBits == 8 && kVec % 4 == 0) {
      // Byte 0 of four values per word: three byte permutes.
#pragma unroll
      for (int j = 0; j < kVec / 4; ++j)
        qout.w[j] = pack_bytes(uint32_t(qv[4 * j]), uint32_t(qv[4 * j + 1]), uint32_t(qv[4 * j + 2]), uint32_t(qv[4 * j + 3]));
    } else if constexpr (kBits == 4 && kVec % 8 == 0) {
      // Even elements' bytes in A, odd ones' in B, then one nibble merge.
#pragma unroll
      for (int j = 0; j < kVec / 8; ++j) {
        const int* e = qv + 8 * j;
        const uint32_t lo = pack_bytes(uint32_t(e[0]), uint32_t(e[2]), uint32_t(e[4]), uint32_t(e[6]));
        const uint32_t hi = pack_bytes(uint32_t(e[1]), uint32_t(e[3]), uint32_t(e[5]), uint32_t(e[7]));
        qout.w[j] = (lo & 0x0f0f0f0fu) | ((hi << 4) & 0xf0f0f0f0u);
      }
    } else {
#pragma unroll
      for (int j = 0; j < QVec::kW; ++j) qout.w[j] = 0;
#pragma unroll
      for (int i = 0; i < kQBytes; ++i) {
        uint32_t b;
        if constexpr (kBits == 8) b = uint32_t(qv[i]) & 0xffu;
        else b = (uint32_t(qv[2 * i]) & 15u) | ((uint32_t(qv[2 * i + 1]) & 15u) << 4);
        qout.w[i >> 2] |= b << (8 * (i & 3));
      }
    }
  }

  // Quantizes a vector whose every element is known to be neither NaN nor out
  // of [qmin, qmax] after rounding and whose scale is in the fast range:
  // dynamic quantize proves that per segment from its range
  // (quantize_dynamic.cuh), so neither the per-element check of quant_fast_k
  // nor the clamp is needed. The magic-number addition rounds half to even;
  // its low bits are the two's complement of the integer, which is all the
  // packing reads, so the magic number is not subtracted.
  static LOWBIT_DEVICE void quantize_unchecked(const QP<float>& a, const XVec& xv, QVec& qout) {
    int32_t qv[kVec];
#pragma unroll
    for (int i = 0; i < kVec; ++i)
      qv[i] = __float_as_int(add_rn(quot_fast(widen_at(xv, i), a.s, a.r), kMagic)) + a.zp;
    pack_q(qv, qout);
  }

  // ---- One vector, scale fixed (modes 0, 1, 3) ----------------------------------
  // Returns false when some element needs the exact path (fast quotient only).
  template <bool kFastPath>
  static LOWBIT_DEVICE bool compute(const QP<C>& a, const XVec& xv, const XVec& dyv, const QVec& qin, QVec& qout,
                                    XVec& fout) {
    bool ok = kFastPath ? a.fast : true;
    if constexpr (kOutQ) {
      int32_t qv[kVec];
#pragma unroll
      for (int i = 0; i < kVec; ++i) qv[i] = quant_q<kFastPath>(C(widen_at(xv, i)), a, ok);
      pack_q(qv, qout);
    } else if constexpr (kOp == 2) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        const int32_t qv = q_from_byte<kBits, Cfg::kSigned>(qin.byte(kBits == 8 ? i : i / 2), i & 1);
        fout.v[i] = narrow<XT>(mul_rn(small_int_to_c(qv - a.zp, C()), a.s));
      }
    } else if constexpr (kOp == 4) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) fout.v[i] = narrow<XT>(mul_rn(C(widen_at(dyv, i)), a.s));
    } else {
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        const C x = C(widen_at(xv, i));
        if constexpr (kOp == 6) {
          bool pass;
          if constexpr (kFastPath) {
            const int32_t k = quant_fast_k(x, a, ok);
            pass = k >= Cfg::kQmin - a.zp && k <= Cfg::kQmax - a.zp;
          } else {
            const C t = rint_rn(div_rn(x, a.s));
            pass = t >= a.lo && t <= a.hi;  // false for NaN
          }
          XT zero{};
          fout.v[i] = pass ? dyv.v[i] : zero;
        } else {
          const int32_t ci = quant_q<kFastPath>(x, a, ok) - a.zp;  // q - zp
          if constexpr (kOp == 5) {
            fout.v[i] = narrow<XT>(mul_rn(small_int_to_c(ci, C()), a.s));
          } else {  // 3: quantize backward
            const bool pass = ci > Cfg::kQmin - a.zp && ci < Cfg::kQmax - a.zp;
            const C dy = C(widen_at(dyv, i));
            C v = C(0);
            if constexpr (kFastPath) {
              ok &= !pass || in_div_fast_range(dy);
              if (pass) v = quot_fast(dy, a.s, a.r);
            } else {
              if (pass) v = div_rn(dy, a.s);
            }
            fout.v[i] = narrow<XT>(v);
          }
        }
      }
    }
    return ok;
  }
};

template <typename Cfg>
LOWBIT_DEVICE void elementwise(const QuantizeParams& p) {
  using Kk = K<Cfg>;
  using XT = typename Kk::XT;
  using C = typename Kk::C;
  using XVec = typename Kk::XVec;
  using QVec = typename Kk::QVec;
  constexpr int kVec = Cfg::kVec;
  constexpr int kUnroll = Cfg::kUnroll;
  constexpr int kRowT = Cfg::kRowThreads;
  constexpr int kRowsPerBlock = Cfg::kThreads / kRowT;
  constexpr bool kReduce = Cfg::kDynPhase == 1;
  static_assert(kUnroll <= 32, "the fixup mask has 32 bits");
  const int lane = int(threadIdx.x) % kRowT;
  const int sub = int(threadIdx.x) / kRowT;

  // Per-tensor parameters: loaded, or (dynamic phase 2) computed from the
  // partial ranges of phase 1.
  QP<C> tp{};
  if constexpr (Cfg::kDynPhase == 2) {
    C mn = C(0), mx = C(0);
    const C* ws = ptr<C>(p.workspace);
    for (int64_t j = threadIdx.x; j < p.num_partials; j += Cfg::kThreads) {
      mn = min_num(mn, ws[2 * j]);
      mx = max_num(mx, ws[2 * j + 1]);
    }
    block_range<Cfg::kThreads>(mn, mx);
    typename Cfg::ST st;
    C s;
    int32_t zp;
    dynamic_qparams<Cfg>(mn, mx, &st, &s, &zp);
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
      *mut_ptr<typename Cfg::ST>(p.scale) = st;
      if (p.zero_point != 0) *mut_ptr<int32_t>(p.zero_point) = zp;
    }
    tp = make_qp<Cfg, C>(s, zp, true);
  } else if constexpr (Cfg::kScope == 1 && !kReduce) {
    tp = Kk::load_qp(p, 0, Kk::kDivides);
  }
  RangeFold<Cfg, XT> range;  // phase 1 only
  const int64_t tail_start = p.chunks_per_row * kVec;

  // Work items: (row, b), b a step of this thread inside the row: chunks
  // b + u * kRowThreads (coalesced per unrolled load). Scale mode 3 (one
  // vector per step) loads the step's scale once.
  constexpr bool kContig = false;  // (a contiguous mapping measured slower: uncoalesced per load)
  const int64_t r0 = int64_t(blockIdx.x) * kRowsPerBlock + sub;
  const int64_t rs = int64_t(gridDim.x) * kRowsPerBlock;
  const int64_t b0 = kContig ? int64_t(blockIdx.y) * kRowT + lane : int64_t(blockIdx.y) * kRowT * kUnroll + lane;
  const int64_t bs = kContig ? int64_t(gridDim.y) * kRowT : int64_t(gridDim.y) * kRowT * kUnroll;
  const int64_t bl = kContig ? (p.chunks_per_row + kUnroll - 1) / kUnroll : p.chunks_per_row;
  auto chunk = [&](int64_t b, int u) -> int64_t { return kContig ? b * kUnroll + u : b + int64_t(u) * kRowT; };

  if constexpr (Cfg::kScaleMode == 2) {
    // One scale per element (per-channel on the last axis, or groups
    // narrower than a vector): the exact path throughout.
    for (int64_t row = r0; row < p.rows; row += rs)
      for (int64_t b = b0; b < bl; b += bs) {
#pragma unroll 1
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t c = chunk(b, u);
          if (c >= p.chunks_per_row) break;
#pragma unroll 1
          for (int e = 0; e < kVec; e += Kk::kUnit) Kk::exact_unit(p, tp, row, c * kVec + e);
        }
      }
  } else if (b0 < bl && r0 < p.rows) {
    // Every item's loads (data and its scales) are issued one item ahead of
    // its arithmetic and stores: the next item's memory latency hides behind
    // this item's work.
    using ST = typename Cfg::ST;
    constexpr int kNS = Cfg::kScaleMode == 1 ? kUnroll : 1;
    constexpr bool kLoadScale = !kReduce && Cfg::kScope != 1;
    struct Batch {
      XVec a[kUnroll];
      XVec dy[kUnroll];
      QVec q[kUnroll];
      ST s[kNS];
      int32_t z[kNS];
    };
    auto load = [&](Batch& t, int64_t row, int64_t b) {
      const XT* in_a = ptr<XT>(Kk::kOp == 4 ? p.dy : p.x) + row * p.x_row_stride;  // x, or dy
      const XT* in_dy = ptr<XT>(p.dy) + row * p.x_row_stride;
      const uint8_t* q_in = ptr<uint8_t>(p.q) + row * p.q_row_bytes;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = chunk(b, u);
        if (c < p.chunks_per_row) {
          if constexpr (Kk::kInX || Kk::kOp == 4)
            t.a[u] = load_vec<XT, kVec, Cfg::kXAligned, Cfg::kHints>(in_a + c * kVec);
          if constexpr (Kk::kOp == 3 || Kk::kOp == 6)
            t.dy[u] = load_vec<XT, kVec, Cfg::kXAligned, Cfg::kHints>(in_dy + c * kVec);
          if constexpr (Kk::kInQ)
            t.q[u] = load_q<Kk::kQBytes, Cfg::kQAligned, Cfg::kHints>(q_in + c * Kk::kQBytes);
        }
      }
      if constexpr (kLoadScale) {
#pragma unroll
        for (int k = 0; k < kNS; ++k) {
          const int64_t c = chunk(b, k);
          const int64_t idx = Kk::template stepped_index<kContig ? 1 : kRowT>(p, row, chunk(b, 0) * kVec, k);
          if (Cfg::kScaleMode == 0 || c < p.chunks_per_row) {
            t.s[k] = ptr<ST>(p.scale)[idx];
            t.z[k] = p.zero_point != 0 ? ptr<int32_t>(p.zero_point)[idx] : 0;
          }
        }
      }
    };
    auto process = [&](const Batch& t, int64_t row, int64_t b) {
      if constexpr (kReduce) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (chunk(b, u) < p.chunks_per_row) range.add(t.a[u]);
        }
      } else {
        XT* out_f = mut_ptr<XT>(Kk::kOp == 2 ? p.x : Kk::kOp == 5 ? p.y : p.dx) + row * p.x_row_stride;
        uint8_t* q_out = mut_ptr<uint8_t>(p.q) + row * p.q_row_bytes;
        QP<C> rqp = tp;
        if constexpr (kLoadScale && kNS == 1) rqp = make_qp<Cfg, C>(C(widen(t.s[0])), t.z[0], Kk::kDivides);
        uint32_t slow = 0;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t c = chunk(b, u);
          if (c < p.chunks_per_row) {
            QP<C> a = rqp;
            if constexpr (kNS > 1) a = make_qp<Cfg, C>(C(widen(t.s[u])), t.z[u], Kk::kDivides);
            QVec qo;
            XVec fo;
            // Op 4 reads dy through `a`; ops 3 and 6 read dy into `dy`.
            const bool ok =
                Kk::template compute<Kk::kFast>(a, t.a[u], Kk::kOp == 4 ? t.a[u] : t.dy[u], t.q[u], qo, fo);
            if constexpr (Kk::kOutQ)
              store_q<Kk::kQBytes, Cfg::kQAligned, Cfg::kHints>(q_out + c * Kk::kQBytes, qo);
            else
              store_vec<XT, kVec, Cfg::kXAligned, Cfg::kHints>(out_f + c * kVec, fo);
            if constexpr (Kk::kFast) slow |= ok ? 0u : (1u << u);
          }
        }
        if constexpr (Kk::kFast) {
          if (slow != 0) {
#pragma unroll 1
            for (int u = 0; u < kUnroll; ++u) {
              if (((slow >> u) & 1u) == 0) continue;
              const int64_t c = chunk(b, u);
#pragma unroll 1
              for (int e = 0; e < kVec; e += Kk::kUnit) Kk::exact_unit(p, rqp, row, c * kVec + e);
            }
          }
        }
      }
    };
    Batch cur, nxt;
    int64_t row = r0, b = b0;
    load(cur, row, b);
    while (true) {
      int64_t nrow = row, nb = b + bs;
      if (nb >= bl) {
        nb = b0;
        nrow += rs;
      }
      const bool more = nrow < p.rows;
      if (more) load(nxt, nrow, nb);
      process(cur, row, b);
      if (!more) break;
      cur = nxt;
      row = nrow;
      b = nb;
    }
  }

  // Each row's tail: fewer than kVec elements, by the threads of grid column 0.
  if (blockIdx.y == 0 && tail_start < p.cols) {
    for (int64_t row = r0; row < p.rows; row += rs) {
      QP<C> rqp = tp;
      if constexpr (Cfg::kScope != 1 && Cfg::kScaleMode == 0 && !kReduce)
        rqp = Kk::load_qp(p, Kk::row_index(p, row), false);
      const XT* in_a = ptr<XT>(p.x) + row * p.x_row_stride;
#pragma unroll 1
      for (int64_t col = tail_start + int64_t(lane) * Kk::kUnit; col < p.cols; col += int64_t(kRowT) * Kk::kUnit) {
        if constexpr (kReduce) range.add(C(widen(in_a[col])));
        else Kk::exact_unit(p, rqp, row, col);
      }
    }
  }

  if constexpr (kReduce) {
    range.finish();
    C mn = range.mn, mx = range.mx;
    block_range<Cfg::kThreads>(mn, mx);
    if (threadIdx.x == 0) {
      C* ws = mut_ptr<C>(p.workspace);
      const int64_t b = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
      ws[2 * b] = mn;
      ws[2 * b + 1] = mx;
    }
  }
}

}  // namespace qk
}  // namespace lowbit

#include "quantize_dynamic.cuh"
#include "quantize_staged.cuh"

namespace lowbit {

template <typename Cfg>
LOWBIT_DEVICE void quantize_kernel(const QuantizeParams& p) {
  if constexpr (Cfg::kKernel == 2) qk::staged<Cfg>(p);
  else if constexpr (Cfg::kKernel == 1) qk::segments<Cfg>(p);
  else qk::elementwise<Cfg>(p);
}

}  // namespace lowbit
