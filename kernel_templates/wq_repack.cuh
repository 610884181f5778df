// wq_repack.cuh - repack AWQ / GPTQ / PLAIN weights into lowbit's native
// layout (wq_layout.h). Deterministic and bit-exact: every output word is
// computed from the source by one thread; no arithmetic on the values.
//
//   wq_perm_kernel    (act-order only, one CTA): perm = the rows of K sorted
//                     by g_idx, stable; group g occupies native rows
//                     [g G, (g + 1) G). Rows are first set to the identity so a
//                     malformed g_idx (a group without exactly G rows) still
//                     yields in-range indices.
//   wq_repack_kernel  one thread per 32-bit word of the weight section, then
//                     per scale, then per zero entry (grid-stride).
//
// Config: kFormat (1 AWQ, 2 GPTQ, 3 GPTQ v1, 5 PLAIN), kBits, kSym, kActOrder.
#pragma once

#include "wq_layout.h"
#include "wq_params.h"

namespace lowbit {
namespace wq_repack {

template <typename Cfg>
LOWBIT_DEVICE uint32_t source_q(const WqRepackParams& p, int64_t k, int64_t n) {
  constexpr int kBits = Cfg::kBits;
  if constexpr (Cfg::kFormat == 1) {  // AWQ: column 8j + c at nibble AWQ_REVERSE_ORDER[c]
    const uint32_t w = ptr<uint32_t>(p.w)[k * (p.n / 8) + n / 8];
    const int c = int(n % 8);
    const int pos = (c & 1) * 4 + (c >> 1);
    return (w >> (4 * pos)) & 15u;
  } else if constexpr (Cfg::kFormat == 2 || Cfg::kFormat == 3) {  // GPTQ: along K
    constexpr int kPer = 32 / kBits;
    const uint32_t w = ptr<uint32_t>(p.w)[(k / kPer) * p.n + n];
    return (w >> (kBits * int(k % kPer))) & ((1u << kBits) - 1u);
  } else {  // PLAIN: [N, K], K contiguous; symmetric stores signed q
    uint32_t q;
    if constexpr (kBits == 4) {
      const uint32_t b = ptr<uint8_t>(p.w)[n * (p.k / 2) + k / 2];
      q = (k & 1) ? (b >> 4) : (b & 15u);
    } else {
      q = ptr<uint8_t>(p.w)[n * p.k + k];
    }
    if constexpr (Cfg::kSym) q ^= (kBits == 4 ? 8u : 128u);  // signed q -> q + 2^(bits-1)
    return q;
  }
}

template <typename Cfg>
LOWBIT_DEVICE uint32_t source_scale(const WqRepackParams& p, int64_t g, int64_t n) {
  if constexpr (Cfg::kFormat == 5) return ptr<uint16_t>(p.scale)[n * p.ngroups + g];
  return ptr<uint16_t>(p.scale)[g * p.n + n];
}

template <typename Cfg>
LOWBIT_DEVICE uint32_t source_zero(const WqRepackParams& p, int64_t g, int64_t n) {
  constexpr int kBits = Cfg::kBits;
  constexpr uint32_t kMask = (1u << kBits) - 1u;
  if constexpr (Cfg::kFormat == 1) {
    const uint32_t w = ptr<uint32_t>(p.zero)[g * (p.n / 8) + n / 8];
    const int c = int(n % 8);
    return (w >> (4 * ((c & 1) * 4 + (c >> 1)))) & 15u;
  } else if constexpr (Cfg::kFormat == 2 || Cfg::kFormat == 3) {
    constexpr int kPer = 32 / kBits;
    const uint32_t w = ptr<uint32_t>(p.zero)[g * (p.n / kPer) + n / kPer];
    uint32_t z = (w >> (kBits * int(n % kPer))) & kMask;
    if constexpr (Cfg::kFormat == 3) z = (z + 1u) & kMask;
    return z;
  } else {
    return uint32_t(ptr<int32_t>(p.zero)[n * p.ngroups + g]) & kMask;
  }
}

template <typename Cfg>
LOWBIT_DEVICE uint32_t value(const WqRepackParams& p, int64_t k, int64_t n) {
  if (k >= p.k || n >= p.n) return 0u;
  if constexpr (Cfg::kActOrder) {
    int64_t src = ptr<int32_t>(p.out + uint64_t(p.perm_offset))[k];
    src = src < 0 ? 0 : (src >= p.k ? p.k - 1 : src);
    return source_q<Cfg>(p, src, n);
  }
  return source_q<Cfg>(p, k, n);
}

}  // namespace wq_repack

template <typename Cfg>
LOWBIT_DEVICE void wq_perm_kernel(const WqRepackParams& p) {
  constexpr int kTile = 4096;
  __shared__ int32_t tile[kTile];
  int32_t* perm = mut_ptr<int32_t>(p.out + uint64_t(p.perm_offset));
  for (int64_t i = threadIdx.x; i < p.k; i += Cfg::kThreads) perm[i] = int32_t(i);
  __syncthreads();
  // One thread per group scans g_idx in order (tiles staged in shared memory).
  const int64_t groups_per_pass = Cfg::kThreads;
  for (int64_t g0 = 0; g0 < p.ngroups; g0 += groups_per_pass) {
    const int64_t g = g0 + threadIdx.x;
    int64_t count = 0;
    for (int64_t base = 0; base < p.k; base += kTile) {
      __syncthreads();
      for (int64_t i = threadIdx.x; i < kTile && base + i < p.k; i += Cfg::kThreads)
        tile[i] = ptr<int32_t>(p.g_idx)[base + i];
      __syncthreads();
      if (g < p.ngroups) {
        const int64_t len = p.k - base < kTile ? p.k - base : kTile;
        for (int64_t i = 0; i < len; ++i) {
          if (tile[i] == g) {
            if (count < p.group) perm[g * p.group + count] = int32_t(base + i);
            ++count;
          }
        }
      }
    }
  }
}

template <typename Cfg>
LOWBIT_DEVICE void wq_repack_kernel(const WqRepackParams& p) {
  using namespace wq_repack;
  constexpr int kBits = Cfg::kBits;
  const int64_t scale_entries = p.ngroups * p.np;
  const int64_t zero_entries = Cfg::kSym ? 0 : p.ngroups * p.nt * 8;
  const int64_t total = p.weight_words + scale_entries + zero_entries;
  for (int64_t i = int64_t(blockIdx.x) * Cfg::kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * Cfg::kThreads) {
    if (i < p.weight_words) {
      const int64_t v = i >> 2;
      const int wi = int(i & 3);
      const int lane = int(v & 31);
      const int r = lane >> 2, t = lane & 3;
      int64_t rest = v >> 5;
      uint32_t word = 0;
      if constexpr (kBits == 4) {
        const int64_t kc = rest % p.kc, nt = rest / p.kc;
        const int64_t n0 = nt * 16 + r, k = kc * 64 + 16 * t + 4 * wi;
        // nibble p: (k + dk[p], n0 + dn[p])
        const int dk[8] = {0, 0, 2, 2, 1, 1, 3, 3};
        const int dn[8] = {0, 8, 0, 8, 0, 8, 0, 8};
#pragma unroll
        for (int q = 0; q < 8; ++q) word |= value<Cfg>(p, k + dk[q], n0 + dn[q]) << (4 * q);
      } else {
        const int h = int(rest & 1);
        rest >>= 1;
        const int64_t kc = rest % p.kc, nt = rest / p.kc;
        const int64_t n0 = nt * 16 + r;
        const int64_t k = kc * 64 + 16 * t + 8 * h + 4 * (wi >> 1) + 2 * (wi & 1);
        word = value<Cfg>(p, k, n0) | value<Cfg>(p, k + 1, n0) << 8 | value<Cfg>(p, k, n0 + 8) << 16 |
               value<Cfg>(p, k + 1, n0 + 8) << 24;
      }
      mut_ptr<uint32_t>(p.out)[i] = word;
    } else if (i < p.weight_words + scale_entries) {
      const int64_t e = i - p.weight_words;
      const int64_t g = e / p.np, rem = e % p.np;
      const int64_t nt = rem / 16, within = rem % 16;
      const int64_t n = nt * 16 + within / 2 + 8 * (within % 2);
      mut_ptr<uint16_t>(p.out + uint64_t(p.scale_offset))[e] = uint16_t(n < p.n ? source_scale<Cfg>(p, g, n) : 0u);
    } else {
      const int64_t e = i - p.weight_words - scale_entries;
      const int64_t g = e / (p.nt * 8), rem = e % (p.nt * 8);
      const int64_t n0 = (rem / 8) * 16 + rem % 8;
      const uint32_t z0 = n0 < p.n ? source_zero<Cfg>(p, g, n0) : 0u;
      const uint32_t z1 = n0 + 8 < p.n ? source_zero<Cfg>(p, g, n0 + 8) : 0u;
      if constexpr (kBits == 4) {
        mut_ptr<uint8_t>(p.out + uint64_t(p.zero_offset))[e] = uint8_t(z0 | z1 << 4);
      } else {
        mut_ptr<uint16_t>(p.out + uint64_t(p.zero_offset))[e] = uint16_t(z0 | z1 << 8);
      }
    }
  }
}

}  // namespace lowbit
