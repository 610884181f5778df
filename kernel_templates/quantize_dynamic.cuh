// quantize_dynamic.cuh - dynamic-range quantize per token and per group, in one
// pass: each segment (a row, or a group of G elements of a row) is loaded
// into registers once, its NaN-ignoring range reduced across the kSegThreads
// threads that hold it, its scale and zero point computed
// (qmath::dynamic_qparams) and written, and the registers quantized. Segments
// longer than the registers of their threads (kSinglePass = false) are read
// twice. Any number of segments: a grid-stride loop, no grid-size limit.
// Included by quantize.cuh (uses its helpers).
#pragma once

namespace lowbit {
namespace qk {

// One unit of a segment by the exact path (an element, or a byte of two
// packed elements): positions pos.. below end of xs, into qs.
template <typename Cfg>
LOWBIT_DEVICE void segment_exact_unit(const typename K<Cfg>::XT* xs, uint8_t* qs, int64_t pos, int64_t end,
                                      const QP<typename K<Cfg>::C>& a) {
  using C = typename K<Cfg>::C;
  uint32_t packed = 0;
#pragma unroll 1
  for (int k = 0; k < K<Cfg>::kUnit && pos + k < end; ++k) {
    const int32_t qv = rint_small_int(quant_exact(C(widen(xs[pos + k])), a)) + a.zp;
    packed |= Cfg::kBits == 8 ? (uint32_t(qv) & 0xffu) : ((uint32_t(qv) & 15u) << (4 * k));
  }
  qs[Cfg::kBits == 8 ? pos : pos / 2] = uint8_t(packed);
}

// A segment's quantization parameters once each of its kSegT threads has
// folded its values into `range`: the range reduced over the segment, the
// scale and zero point (written by lane 0 at index seg) and their QP.
// `unchecked` says whether this thread may quantize with
// K::quantize_unchecked: every x of the segment lies in [mn, mx], and RN(x / s)
// and rint are monotonic in x (s > 0), so when rint(mn / s) and rint(mx / s)
// land in [qmin - zp, qmax - zp] no element needs the clamp and every quotient
// is small enough for the fast quotient to be exact without its per-element
// range check; a thread that saw a NaN keeps the checked path.
template <typename Cfg, int kSegT>
LOWBIT_DEVICE QP<typename K<Cfg>::C> segment_params(const QuantizeParams& p, RangeFold<Cfg, typename K<Cfg>::XT>& range,
                                                     uint32_t member, int lane, int64_t seg, bool& unchecked) {
  using C = typename K<Cfg>::C;
  using ST = typename Cfg::ST;
  range.finish();
  C mn = range.mn, mx = range.mx;
  segment_range<kSegT, Cfg::kThreads>(mn, mx, member);
  ST st;
  C s;
  int32_t zp;
  dynamic_qparams<Cfg>(mn, mx, &st, &s, &zp);
  if (lane == 0) {
    mut_ptr<ST>(p.scale)[seg] = st;
    if (p.zero_point != 0) mut_ptr<int32_t>(p.zero_point)[seg] = zp;
  }
  const QP<C> a = make_qp<Cfg, C>(s, zp, true);
  unchecked = false;
  if constexpr (K<Cfg>::kFast) {
    if (a.fast && !range.nan) {
      const C lo = Cfg::kSymmetric ? -mx : mn;
      unchecked = rint_rn(div_rn(lo, a.s)) >= a.lo && rint_rn(div_rn(mx, a.s)) <= a.hi;
    }
  }
  return a;
}

template <typename Cfg>
LOWBIT_DEVICE void segments(const QuantizeParams& p) {
  using Kk = K<Cfg>;
  using XT = typename Kk::XT;
  using C = typename Kk::C;
  using XVec = typename Kk::XVec;
  using QVec = typename Kk::QVec;
  constexpr int kVec = Cfg::kVec;
  constexpr int kSegT = Cfg::kSegThreads;
  constexpr int kSegsPerBlock = Cfg::kThreads / kSegT;
  constexpr int kPer = Cfg::kPer;
  constexpr int kUnit = Kk::kUnit;
  static_assert(kSegT <= 32 || kSegT == Cfg::kThreads, "a segment is a part of a warp or the whole block");
  static_assert(kSegT <= 32 ? (kSegT & (kSegT - 1)) == 0 : kSegT % 32 == 0,
                "a segment is a power-of-two part of a warp or whole warps");
  static_assert(kPer <= 32, "the fixup mask has 32 bits");
  const int lane = int(threadIdx.x) % kSegT;
  const int sub = int(threadIdx.x) / kSegT;
  // The lanes of this segment inside the warp (shuffles stay among them).
  const uint32_t member =
      kSegT >= 32 ? 0xffffffffu : (((1u << kSegT) - 1u) << ((int(threadIdx.x) & 31) & ~(kSegT - 1)));
  const int64_t nvec = p.seg_vectors;
  const int64_t len = p.seg_len;

  for (int64_t seg = int64_t(blockIdx.x) * kSegsPerBlock + sub; seg < p.segments;
       seg += int64_t(gridDim.x) * kSegsPerBlock) {
    int64_t row = seg, col0 = 0;
    if (p.seg_per_row != 1) {
      row = seg / p.seg_per_row;
      col0 = (seg - row * p.seg_per_row) * len;
    }
    const XT* xs = ptr<XT>(p.x) + row * p.x_row_stride + col0;
    uint8_t* qs = mut_ptr<uint8_t>(p.q) + row * p.q_row_bytes + col0 * Cfg::kBits / 8;

    // Pass 1: the range.
    RangeFold<Cfg, XT> range;
    XVec v[kPer];
    if constexpr (Cfg::kSinglePass) {
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int64_t vi = lane + int64_t(k) * kSegT;
        if (vi < nvec) v[k] = load_vec<XT, kVec, Cfg::kXAligned, Cfg::kHints>(xs + vi * kVec);
      }
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int64_t vi = lane + int64_t(k) * kSegT;
        if (vi < nvec) range.add(v[k]);
      }
    } else {
      for (int64_t base = lane; base < nvec; base += int64_t(kSegT) * kPer) {
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
          const int64_t vi = base + int64_t(k) * kSegT;
          if (vi < nvec) v[k] = load_vec<XT, kVec, Cfg::kXAligned, Cfg::kHints>(xs + vi * kVec);
        }
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
          const int64_t vi = base + int64_t(k) * kSegT;
          if (vi < nvec) range.add(v[k]);
        }
      }
    }
#pragma unroll 1
    for (int64_t j = nvec * kVec + lane; j < len; j += kSegT) range.add(C(widen(xs[j])));
    bool unchecked;
    const QP<C> a = segment_params<Cfg, kSegT>(p, range, member, lane, seg, unchecked);

    // Pass 2: quantize (from the registers, or reloaded), exact fixups after.
    auto fixup = [&](int64_t vi) {
#pragma unroll 1
      for (int e = 0; e < kVec; e += kUnit) segment_exact_unit<Cfg>(xs, qs, vi * kVec + e, len, a);
    };
    auto quantize_regs = [&](int64_t base) {
      if constexpr (Kk::kFast) {
        if (unchecked) {
#pragma unroll
          for (int k = 0; k < kPer; ++k) {
            const int64_t vi = base + int64_t(k) * kSegT;
            if (vi < nvec) {
              QVec qo;
              Kk::quantize_unchecked(a, v[k], qo);
              store_q<Kk::kQBytes, Cfg::kQAligned, Cfg::kHints>(qs + vi * Kk::kQBytes, qo);
            }
          }
          return;
        }
      }
      uint32_t slow = 0;
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int64_t vi = base + int64_t(k) * kSegT;
        if (vi < nvec) {
          QVec qo;
          XVec unused;
          const bool ok = Kk::template compute<Kk::kFast>(a, v[k], v[k], qo, qo, unused);
          store_q<Kk::kQBytes, Cfg::kQAligned, Cfg::kHints>(qs + vi * Kk::kQBytes, qo);
          if constexpr (Kk::kFast) slow |= ok ? 0u : (1u << k);
        }
      }
      if constexpr (Kk::kFast) {
        if (slow != 0) {
#pragma unroll 1
          for (int k = 0; k < kPer; ++k)
            if ((slow >> k) & 1u) fixup(base + int64_t(k) * kSegT);
        }
      }
    };
    if constexpr (Cfg::kSinglePass) {
      quantize_regs(lane);
    } else {
      for (int64_t base = lane; base < nvec; base += int64_t(kSegT) * kPer) {
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
          const int64_t vi = base + int64_t(k) * kSegT;
          if (vi < nvec) v[k] = load_vec<XT, kVec, Cfg::kXAligned, Cfg::kHints>(xs + vi * kVec);
        }
        quantize_regs(base);
      }
    }
    // The segment's tail (fewer than kVec elements), exact.
#pragma unroll 1
    for (int64_t j = nvec * kVec + int64_t(lane) * kUnit; j < len; j += int64_t(kSegT) * kUnit)
      segment_exact_unit<Cfg>(xs, qs, j, len, a);
  }
}

}  // namespace qk
}  // namespace lowbit
