// wq_matmul.cuh - weight-only quantized matmul, decode path (family 2).
//
//   Y[m, n] = sum_k X[m, k] * (q[k, n] - z[g, n]) * s[g, n]  (+ bias[n])
//
// One design for every format. The weights are the A operand of the tensor
// cores' mma.m16n8k16 (16 rows of N x 16 of K) and X^T the B operand (16 of K
// x 8 rows of X), so one MMA serves every M <= 8 at the same cost and the
// kernel stays read-bound at M = 8. Each thread dequantizes its share of the
// A tile to the exact integers q - z in f16/bf16 (LOP3/PRMT magic numbers,
// wq_common.cuh); the MMA multiplies them with X exactly and accumulates in
// f32; the group's scale is applied in f32 when a group (or the part of it a
// warp owns) is done: y += s * acc.
//
// Work split: a CTA owns kNB "n-blocks" (16 columns for the native layout, 32
// for GPTQ, 64 for AWQ) and a range of K (blockIdx.y: split-K); its warps take
// "units" of consecutive k-steps round-robin, so together they sweep each
// n-block's weights front to back. Per unit a warp issues all its loads
// (weights with ld.global.nc.L1::no_allocate, 16 bytes per thread for the
// native layout; scales and zeros with cached loads) kStages - 1 units ahead
// of the one it computes (a ring of registers), and X one unit ahead. At the
// end the warps' partial sums meet in shared memory and are added in a fixed
// order; the CTA writes Y (+ bias) or, with split-K, f32 partials that
// wq_reduce_kernel adds in split order. No atomics: results are deterministic.
//
// Config (the JIT constants): AT activation type, ST scale type, kFormat
// (1 AWQ, 2 GPTQ, 3 GPTQ v1, 4 native), kBits, kGroup (32..256 or -1), kSym,
// kActOrder (GPTQ g_idx), kMT (M tile 1/2/4/8: lanes of higher rows skip
// their X loads and stores), kNB, kUnit (k-steps per unit), kStages (even:
// depth of the register ring of weight loads).
// Tails: n beyond N and k beyond K are predicated (loads skipped, X read as 0,
// group indices clamped), never rejected.
#pragma once

#include "wq_common.cuh"

namespace lowbit {
namespace wq {

// ---- Shared epilogue --------------------------------------------------------

// Shared memory of the cross-warp reduction: [warp][m][n_local].
template <int kW, int kMT, int kNR>
struct Reduction {
  float v[kW][kMT][kNR];
};

// Adds the CTA's warps in order and writes Y (or the split's partials).
template <typename Cfg, int kW, int kMT, int kNR>
LOWBIT_DEVICE void finish(const WqMatmulParams& p, Reduction<kW, kMT, kNR>& red, int64_t n_base, int64_t m0) {
  using AT = typename Cfg::AT;
  __syncthreads();
  for (int idx = threadIdx.x; idx < kMT * kNR; idx += Cfg::kThreads) {
    const int m = idx / kNR, nl = idx % kNR;
    const int64_t n = n_base + nl, mg = m0 + m;
    if (mg >= p.m || n >= p.n) continue;
    float v = red.v[0][m][nl];
#pragma unroll
    for (int w = 1; w < kW; ++w) v += red.v[w][m][nl];
    if (p.partial != 0) {
      mut_ptr<float>(p.partial)[(int64_t(blockIdx.y) * p.m_plan + mg) * p.n + n] = v;
    } else {
      if (p.bias != 0) v += to_f32(ptr<AT>(p.bias)[n]);
      mut_ptr<AT>(p.y)[mg * p.y_stride + n] = from_f32<AT>(v);
    }
  }
}

// Stores one C fragment value (row n_local, column m) of this warp.
template <int kW, int kMT, int kNR>
LOWBIT_DEVICE void put(Reduction<kW, kMT, kNR>& red, int warp, int nl, int m, float v) {
  if (m < kMT) red.v[warp][m][nl] = v;
}

// ---- Native layout ----------------------------------------------------------

template <typename Cfg>
struct NativeKernel {
  using AT = typename Cfg::AT;
  using ST = typename Cfg::ST;
  static constexpr int kBits = Cfg::kBits;
  static constexpr int kG = Cfg::kGroup;
  static constexpr int kNB = Cfg::kNB;      // n-tiles per CTA: the plan makes it divide NT
  static constexpr int kUnit = Cfg::kUnit;  // k-chunks of 64 per unit: divides KC and G / 64
  static constexpr int kH = kBits / 4;      // 16-byte vectors per lane per chunk
  static constexpr int kNR = kNB * 16;
  static constexpr int kStepK = 64;
  // A unit lies in one group (G >= 64, or per-channel); G = 32 splits each
  // chunk in two groups (t = 0,1 and t = 2,3), handled inside the chunk.
  static constexpr int kScales = kG == 32 ? 2 : 1;
  static constexpr uint32_t kSymZero = kBits == 4 ? 8u : 128u;
  static constexpr int kZeroBytes = kBits / 4;  // per (g, n-tile, r)

  struct Batch {
    U4 w[kUnit][kNB][kH];
    uint32_t s[kNB][kScales];
    uint32_t z[kNB];
  };
  struct XBatch {
    U4 x[kUnit][2];
  };
  struct Acc {
    float y[kNB][4];
  };

  const WqMatmulParams& p;
  int lane, r, t;
  int kx;            // K - 16 t: chunk c's X halves exist if 64 c + 8 (16) <= kx
  bool x_ok;
  uint64_t xbase;    // X row + 16 t elements
  uint64_t wbase;    // weights of n-tile nt0, chunk 0, this lane
  uint64_t wcol;     // bytes between n-tile columns
  uint64_t sbase, zbase, sgroup, zgroup;  // scales / zeros of group 0, n-tile nt0, row r; bytes per group
  uint64_t zown;     // G = 32: offset of this thread's own group (t >= 2: the second)

  LOWBIT_DEVICE NativeKernel(const WqMatmulParams& params, int64_t m0) : p(params) {
    lane = threadIdx.x & 31;
    r = lane >> 2;
    t = lane & 3;
    const int64_t nt0 = int64_t(blockIdx.x) * kNB;
    x_ok = r < Cfg::kMT && m0 + r < p.m;
    xbase = p.x + uint64_t((x_ok ? (m0 + r) * p.x_stride : 0) + 16 * t) * 2u;
    kx = int(p.k) - 16 * t;
    wcol = uint64_t(p.k_steps) * (kH * 512);
    wbase = p.w + uint64_t(nt0) * wcol + uint64_t(lane) * 16u;
    sgroup = uint64_t(p.n_tiles) * 32u;
    zgroup = uint64_t(p.n_tiles) * 8u * kZeroBytes;
    sbase = p.scale + (uint64_t(nt0) * 8u + r) * 4u;
    zbase = p.zero + (uint64_t(nt0) * 8u + r) * kZeroBytes;
    zown = kG == 32 && t >= 2 ? zgroup : 0;
  }
  LOWBIT_DEVICE int64_t n_base() const { return int64_t(blockIdx.x) * kNB * 16; }

  LOWBIT_DEVICE void load(Batch& b, int64_t step0) const {
    const uint32_t c = uint32_t(step0);
    const uint64_t w0 = wbase + uint64_t(c) * (kH * 512u);
#pragma unroll
    for (int j = 0; j < kNB; ++j)
#pragma unroll
      for (int u = 0; u < kUnit; ++u)
#pragma unroll
        for (int h = 0; h < kH; ++h) b.w[u][j][h] = ld_stream16(w0 + j * wcol + (u * kH + h) * 512u);
    uint32_t g;
    if constexpr (kG < 0) {
      g = 0;
    } else if constexpr (kG == 32) {
      g = 2 * c;
    } else {
      g = c / uint32_t(kG / 64);
    }
    const uint64_t sg = sbase + uint64_t(g) * sgroup, zg = zbase + uint64_t(g) * zgroup;
    // G = 32 with K % 64 = 32: the last chunk's second group does not exist.
    const bool second = kG == 32 && int64_t(g) + 1 < p.ngroups;
#pragma unroll
    for (int j = 0; j < kNB; ++j) {
      b.s[j][0] = ld4(sg + j * 32u);
      if constexpr (kScales == 2) b.s[j][1] = ld4_if(sg + sgroup + j * 32u, second);
      if constexpr (Cfg::kSym) {
        b.z[j] = 0;
      } else if constexpr (kBits == 4) {
        b.z[j] = ld1(zg + (second ? zown : 0) + j * 8u);
      } else {
        b.z[j] = ld2(zg + (second ? zown : 0) + j * 16u);
      }
    }
  }

  LOWBIT_DEVICE void load_x(XBatch& b, int64_t step0) const {
    const int k0 = int(step0) * 64;
#pragma unroll
    for (int u = 0; u < kUnit; ++u) {
      const uint64_t a = xbase + uint64_t(k0 + 64 * u) * 2u;
      b.x[u][0] = ld16_if(a, x_ok && k0 + 64 * u + 8 <= kx);
      b.x[u][1] = ld16_if(a + 16u, x_ok && k0 + 64 * u + 16 <= kx);
    }
  }

  // The four A registers of k-tile kj (0..3) of chunk vector set `w`.
  LOWBIT_DEVICE static void dequant(uint32_t (&a)[4], const U4 (&w)[kH], int kj, const Zc4& c0, const Zc4& c1,
                                    uint32_t e0, uint32_t e1) {
    if constexpr (kBits == 4) {
      const uint32_t v = word(w[0], kj), v8 = v >> 8;
      a[0] = deq4s<AT, 0>(v, v8, c0);
      a[1] = deq4s<AT, 1>(v, v8, c1);
      a[2] = deq4s<AT, 2>(v, v8, c0);
      a[3] = deq4s<AT, 3>(v, v8, c1);
    } else {
      const U4& vec = w[kj >> 1];
      const uint32_t va = word(vec, 2 * (kj & 1)), vb = word(vec, 2 * (kj & 1) + 1);
      a[0] = deq8<AT, 0>(va, e0);
      a[1] = deq8<AT, 1>(va, e1);
      a[2] = deq8<AT, 0>(vb, e0);
      a[3] = deq8<AT, 1>(vb, e1);
    }
  }

  LOWBIT_DEVICE void compute(const Batch& b, const XBatch& xb, Acc& acc, int64_t) const {
#pragma unroll
    for (int j = 0; j < kNB; ++j) {
      uint32_t z0 = kSymZero, z1 = kSymZero;
      if constexpr (!Cfg::kSym) {
        const uint32_t zz = b.z[j];
        z0 = kBits == 4 ? (zz & 15u) : (zz & 255u);
        z1 = kBits == 4 ? ((zz >> 4) & 15u) : (zz >> 8);
      }
      Zc4 c0{}, c1{};
      uint32_t e0 = 0, e1 = 0;
      if constexpr (kBits == 4) {
        c0 = zero_consts4<AT>(z0);
        c1 = zero_consts4<AT>(z1);
      } else {
        e0 = zero_const8<AT>(z0);
        e1 = zero_const8<AT>(z1);
      }
      float c[kScales][4];
#pragma unroll
      for (int q = 0; q < kScales; ++q) c[q][0] = c[q][1] = c[q][2] = c[q][3] = 0.f;
#pragma unroll
      for (int u = 0; u < kUnit; ++u) {
#pragma unroll
        for (int kj = 0; kj < 4; ++kj) {
          uint32_t a[4];
          dequant(a, b.w[u][j], kj, c0, c1, e0, e1);
          const uint32_t b0 = word(xb.x[u][kj >> 1], 2 * (kj & 1)), b1 = word(xb.x[u][kj >> 1], 2 * (kj & 1) + 1);
          if constexpr (kG == 32) {
            // Rows 0..31 of the chunk (t = 0, 1) are one group, 32..63 the next.
            const bool first = t < 2;
            mma<AT>(c[0], a, first ? b0 : 0u, first ? b1 : 0u);
            mma<AT>(c[kScales - 1], a, first ? 0u : b0, first ? 0u : b1);
          } else {
            mma<AT>(c[0], a, b0, b1);
          }
        }
      }
#pragma unroll
      for (int q = 0; q < kScales; ++q) {
        const float s0 = scale_f32<ST>(b.s[j][q] & 0xffffu), s1 = scale_f32<ST>(b.s[j][q] >> 16);
        acc.y[j][0] += s0 * c[q][0];
        acc.y[j][1] += s0 * c[q][1];
        acc.y[j][2] += s1 * c[q][2];
        acc.y[j][3] += s1 * c[q][3];
      }
    }
  }

  template <int kW, int kMT>
  LOWBIT_DEVICE void store(const Acc& acc, Reduction<kW, kMT, kNR>& red, int warp) const {
#pragma unroll
    for (int j = 0; j < kNB; ++j) {
      put(red, warp, 16 * j + r, 2 * t, acc.y[j][0]);
      put(red, warp, 16 * j + r, 2 * t + 1, acc.y[j][1]);
      put(red, warp, 16 * j + r + 8, 2 * t, acc.y[j][2]);
      put(red, warp, 16 * j + r + 8, 2 * t + 1, acc.y[j][3]);
    }
  }
};

// ---- GPTQ layout, read directly ---------------------------------------------
// qweight int32 [K/8, N] (8-bit: [K/4, N]): lane (r, t) loads the 4 columns
// n = nb + 4r .. +3 of packed row i = 4 step + t, i.e. 8 (8-bit: 4) values of K
// per column. MMA rows: g <-> column 4r + 2h, g + 8 <-> 4r + 2h + 1 (h = 0, 1).
// 4-bit: the k-tile pairs are (0,4), (1,5) [tile A] and (2,6), (3,7) [tile B]
// of the 8 values (what the LOP3 masks give), so X's 8 values are permuted
// the same way with PRMT. 8-bit: one k-tile, pairs (0,1), (2,3).
template <typename Cfg>
struct GptqKernel {
  using AT = typename Cfg::AT;
  using ST = typename Cfg::ST;
  static constexpr int kBits = Cfg::kBits;
  static constexpr int kG = Cfg::kGroup;
  static constexpr int kNB = Cfg::kNB;
  static constexpr int kUnit = Cfg::kUnit;  // steps per unit: the plan makes it divide G / kStepK
  static constexpr int kNR = kNB * 32;
  static constexpr int kStepK = kBits == 4 ? 32 : 16;
  static constexpr int kPerWord = 32 / kBits;  // values of K per int32
  static constexpr bool kV1 = Cfg::kFormat == 3;
  static constexpr bool kActOrder = Cfg::kActOrder;
  static constexpr uint32_t kMask = kBits == 4 ? 15u : 255u;
  static constexpr uint32_t kSymZero = kBits == 4 ? 8u : 128u;

  struct Batch {
    U4 w[kUnit][kNB];
    uint32_t s[kNB][2];  // 4 scales
    uint32_t z[kNB];     // packed zeros word
  };
  struct XBatch {
    U4 x[kUnit];  // 4-bit: 8 values; 8-bit: 4 values in x.x, x.y
  };
  struct Acc {
    float y[kNB][2][4];
  };

  const WqMatmulParams& p;
  int lane, r, t;
  int64_t nb0;   // first column of the CTA
  int rows;      // packed rows of qweight: K / kPerWord
  bool x_ok;
  uint32_t colmask;  // bit j: this lane's 4 columns of n-block j exist
  uint64_t xbase, wbase, wstep, sbase, zbase, sgroup, zgroup;

  LOWBIT_DEVICE GptqKernel(const WqMatmulParams& params, int64_t m0) : p(params) {
    lane = threadIdx.x & 31;
    r = lane >> 2;
    t = lane & 3;
    nb0 = int64_t(blockIdx.x) * kNR;
    x_ok = r < Cfg::kMT && m0 + r < p.m;
    rows = int(p.k / kPerWord);
    colmask = 0;
#pragma unroll
    for (int j = 0; j < kNB; ++j) colmask |= (nb0 + 32 * j + 4 * r < p.n ? 1u : 0u) << j;
    xbase = p.x + uint64_t(x_ok ? (m0 + r) * p.x_stride : 0) * 2u + uint64_t(t) * (kBits == 4 ? 16u : 8u);
    wbase = p.w + (uint64_t(t) * uint64_t(p.n) + uint64_t(nb0 + 4 * r)) * 4u;
    wstep = uint64_t(p.n) * 16u;  // 4 packed rows
    sgroup = uint64_t(p.n) * 2u;
    zgroup = uint64_t(p.n / kPerWord) * 4u;
    sbase = p.scale + uint64_t(nb0 + 4 * r) * 2u;
    zbase = p.zero + uint64_t((nb0 + 4 * r) / kPerWord) * 4u;
  }
  LOWBIT_DEVICE int64_t n_base() const { return nb0; }

  // Zero point of column c (0..3) of this lane's 4 columns from the packed word.
  LOWBIT_DEVICE uint32_t zero_of(uint32_t zword, int c) const {
    if constexpr (Cfg::kSym) {
      return kSymZero;
    } else {
      const int pos = kBits == 4 ? 4 * ((r & 1) * 4 + c) : 8 * c;
      uint32_t z = (zword >> pos) & kMask;
      if constexpr (kV1) z = (z + 1u) & kMask;
      return z;
    }
  }

  LOWBIT_DEVICE void load(Batch& b, int64_t step0) const {
    const uint32_t s0 = uint32_t(step0);
#pragma unroll
    for (int u = 0; u < kUnit; ++u) {
      const bool k_ok = int(4 * (s0 + u)) + t < rows;
      const uint64_t a = wbase + uint64_t(s0 + u) * wstep;
#pragma unroll
      for (int j = 0; j < kNB; ++j) b.w[u][j] = ld_stream16_if(a + j * 128u, k_ok && ((colmask >> j) & 1u));
    }
    if constexpr (!kActOrder) {
      const uint32_t g = kG < 0 ? 0u : s0 / uint32_t(kG < 0 ? 1 : kG / kStepK);
      const uint64_t sg = sbase + uint64_t(g) * sgroup, zg = zbase + uint64_t(g) * zgroup;
#pragma unroll
      for (int j = 0; j < kNB; ++j) {
        const bool ok = (colmask >> j) & 1u;
        const U2 sv = ld8_if(sg + j * 64u, ok);
        b.s[j][0] = sv.x;
        b.s[j][1] = sv.y;
        b.z[j] = Cfg::kSym ? 0u : ld4_if(zg + j * (128u / kPerWord), ok);
      }
    }
  }

  LOWBIT_DEVICE void load_x(XBatch& b, int64_t step0) const {
    const uint32_t s0 = uint32_t(step0);
#pragma unroll
    for (int u = 0; u < kUnit; ++u) {
      const bool ok = x_ok && int(4 * (s0 + u)) + t < rows;
      if constexpr (kBits == 4) {
        b.x[u] = ld16_if(xbase + uint64_t(s0 + u) * 64u, ok);
      } else {
        const U2 xv = ld8_if(xbase + uint64_t(s0 + u) * 32u, ok);
        b.x[u] = U4{xv.x, xv.y, 0u, 0u};
      }
    }
  }

  // Scales and zeros of one group for this lane's 4 columns (act-order path).
  LOWBIT_DEVICE void load_group(uint32_t (&s)[2], uint32_t& z, int64_t g, int64_t nb) const {
    const U2 sv = ld8(p.scale + uint64_t(g * p.n + nb) * 2u);
    s[0] = sv.x;
    s[1] = sv.y;
    if constexpr (Cfg::kSym) {
      z = 0;
    } else {
      z = ld4(p.zero + uint64_t(g * (p.n / kPerWord) + nb / kPerWord) * 4u);
    }
  }

  // Act-order: every value has its own group; w = (q - z) * s rounded to AT.
  LOWBIT_DEVICE void dequant_act_order(uint32_t (&a)[2][2][4], const U4& wv, int64_t i, int64_t nb) const {
    float f[4][8];
    const uint32_t ws[4] = {wv.x, wv.y, wv.z, wv.w};
    const int64_t k0 = i * kPerWord;
#pragma unroll
    for (int v = 0; v < kPerWord; ++v) {
      const int64_t k = k0 + v < p.k ? k0 + v : p.k - 1;
      int64_t g = int64_t(int32_t(ld4(p.g_idx + uint64_t(k) * 4u)));
      g = g < 0 ? 0 : (g >= p.ngroups ? p.ngroups - 1 : g);
      uint32_t s[2], zw;
      load_group(s, zw, g, nb);
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const uint32_t q = (ws[c] >> (kBits * v)) & kMask;
        const float sc = scale_f32<ST>(c & 1 ? (s[c >> 1] >> 16) : (s[c >> 1] & 0xffffu));
        f[c][v] = (float(int32_t(q) - int32_t(zero_of(zw, c)))) * sc;
      }
    }
    auto pack = [](float lo, float hi) { return IsBf16<AT>::value ? pack_bf16x2(lo, hi) : pack_f16x2(lo, hi); };
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if constexpr (kBits == 4) {
        // tile A: pairs (0,4) and (1,5); tile B: (2,6) and (3,7)
#pragma unroll
        for (int tile = 0; tile < 2; ++tile) {
          a[h][tile][0] = pack(f[2 * h][2 * tile], f[2 * h][2 * tile + 4]);
          a[h][tile][1] = pack(f[2 * h + 1][2 * tile], f[2 * h + 1][2 * tile + 4]);
          a[h][tile][2] = pack(f[2 * h][2 * tile + 1], f[2 * h][2 * tile + 5]);
          a[h][tile][3] = pack(f[2 * h + 1][2 * tile + 1], f[2 * h + 1][2 * tile + 5]);
        }
      } else {
        a[h][0][0] = pack(f[2 * h][0], f[2 * h][1]);
        a[h][0][1] = pack(f[2 * h + 1][0], f[2 * h + 1][1]);
        a[h][0][2] = pack(f[2 * h][2], f[2 * h][3]);
        a[h][0][3] = pack(f[2 * h + 1][2], f[2 * h + 1][3]);
      }
    }
  }

  LOWBIT_DEVICE void compute(const Batch& b, const XBatch& xbat, Acc& acc, int64_t step0) const {
    if constexpr (kActOrder) {
#pragma unroll
      for (int u = 0; u < kUnit; ++u) {
        const int64_t i = (step0 + u) * 4 + t;
        if (step0 + u >= p.k_steps) continue;  // warp-uniform
        uint32_t xb[2][2];
        if constexpr (kBits == 4) {
          xb[0][0] = prmt(xbat.x[u].x, xbat.x[u].z, 0x5410u);
          xb[0][1] = prmt(xbat.x[u].x, xbat.x[u].z, 0x7632u);
          xb[1][0] = prmt(xbat.x[u].y, xbat.x[u].w, 0x5410u);
          xb[1][1] = prmt(xbat.x[u].y, xbat.x[u].w, 0x7632u);
        } else {
          xb[0][0] = xbat.x[u].x;
          xb[0][1] = xbat.x[u].y;
        }
#pragma unroll
        for (int j = 0; j < kNB; ++j) {
          const int64_t nb = min64(nb0 + 32 * j + 4 * r, p.n - 4);
          uint32_t a[2][2][4];
          dequant_act_order(a, b.w[u][j], i < rows ? i : rows - 1, nb);
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            mma<AT>(acc.y[j][h], a[h][0], xb[0][0], xb[0][1]);
            if constexpr (kBits == 4) mma<AT>(acc.y[j][h], a[h][1], xb[1][0], xb[1][1]);
          }
        }
      }
      return;
    } else {
#pragma unroll
      for (int j = 0; j < kNB; ++j) {
        float c[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        if constexpr (kBits == 4) {
          Zc4 zc[4];
#pragma unroll
          for (int q = 0; q < 4; ++q) zc[q] = zero_consts4<AT>(zero_of(b.z[j], q));
#pragma unroll
          for (int u = 0; u < kUnit; ++u) {
            const U4& x = xbat.x[u];
            const uint32_t xa0 = prmt(x.x, x.z, 0x5410u), xa1 = prmt(x.x, x.z, 0x7632u);
            const uint32_t xb0 = prmt(x.y, x.w, 0x5410u), xb1 = prmt(x.y, x.w, 0x7632u);
            const U4& w = b.w[u][j];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const uint32_t wa = h ? w.z : w.x, wb = h ? w.w : w.y;
              const uint32_t wa8 = wa >> 8, wb8 = wb >> 8;
              uint32_t a[4];
              a[0] = deq4s<AT, 0>(wa, wa8, zc[2 * h]);
              a[1] = deq4s<AT, 0>(wb, wb8, zc[2 * h + 1]);
              a[2] = deq4s<AT, 1>(wa, wa8, zc[2 * h]);
              a[3] = deq4s<AT, 1>(wb, wb8, zc[2 * h + 1]);
              mma<AT>(c[h], a, xa0, xa1);
              a[0] = deq4s<AT, 2>(wa, wa8, zc[2 * h]);
              a[1] = deq4s<AT, 2>(wb, wb8, zc[2 * h + 1]);
              a[2] = deq4s<AT, 3>(wa, wa8, zc[2 * h]);
              a[3] = deq4s<AT, 3>(wb, wb8, zc[2 * h + 1]);
              mma<AT>(c[h], a, xb0, xb1);
            }
          }
        } else {
          uint32_t zc[4];
#pragma unroll
          for (int q = 0; q < 4; ++q) zc[q] = zero_const8<AT>(zero_of(b.z[j], q));
#pragma unroll
          for (int u = 0; u < kUnit; ++u) {
            const U4& w = b.w[u][j];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const uint32_t wa = h ? w.z : w.x, wb = h ? w.w : w.y;
              uint32_t a[4];
              a[0] = deq8<AT, 0>(wa, zc[2 * h]);
              a[1] = deq8<AT, 0>(wb, zc[2 * h + 1]);
              a[2] = deq8<AT, 1>(wa, zc[2 * h]);
              a[3] = deq8<AT, 1>(wb, zc[2 * h + 1]);
              mma<AT>(c[h], a, xbat.x[u].x, xbat.x[u].y);
            }
          }
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float s0 = scale_f32<ST>(b.s[j][h] & 0xffffu), s1 = scale_f32<ST>(b.s[j][h] >> 16);
          acc.y[j][h][0] += s0 * c[h][0];
          acc.y[j][h][1] += s0 * c[h][1];
          acc.y[j][h][2] += s1 * c[h][2];
          acc.y[j][h][3] += s1 * c[h][3];
        }
      }
    }
  }

  template <int kW, int kMT>
  LOWBIT_DEVICE void store(const Acc& acc, Reduction<kW, kMT, kNR>& red, int warp) const {
#pragma unroll
    for (int j = 0; j < kNB; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int nl = 32 * j + 4 * r + 2 * h;
        put(red, warp, nl, 2 * t, acc.y[j][h][0]);
        put(red, warp, nl, 2 * t + 1, acc.y[j][h][1]);
        put(red, warp, nl + 1, 2 * t, acc.y[j][h][2]);
        put(red, warp, nl + 1, 2 * t + 1, acc.y[j][h][3]);
      }
  }
};

// ---- AWQ layout, read directly ----------------------------------------------
// qweight int32 [K, N/8] with AutoAWQ's nibble order. Lane (r, t) reads word
// column nw = 8 nb-block + r (columns 8nw .. 8nw+7) of the 4 rows
// k0 = 16 step + 4t .. k0 + 3. PRMT joins rows (k0, k0+1) and (k0+2, k0+3)
// of a word's low / high halves, so that the LOP3 pairs become (row k, row
// k+1) of one column: P = prmt(A0, A1, 0x5410) holds the even columns 0, 2,
// 4, 6 at nibble pairs (p, p+4), Q = prmt(A0, A1, 0x7632) the odd ones.
// MMA i (0..3) has rows g <-> column 2i and g + 8 <-> column 2i + 1.
template <typename Cfg>
struct AwqKernel {
  using AT = typename Cfg::AT;
  using ST = typename Cfg::ST;
  static constexpr int kG = Cfg::kGroup;
  static constexpr int kNB = Cfg::kNB;
  static constexpr int kUnit = Cfg::kUnit;  // steps per unit: the plan makes it divide G / 16
  static constexpr int kNR = kNB * 64;
  static constexpr int kStepK = 16;

  struct Batch {
    uint32_t w[kUnit][kNB][4];
    U4 s[kNB];
    uint32_t z[kNB];
  };
  struct XBatch {
    U2 x[kUnit];
  };
  struct Acc {
    float y[kNB][4][4];
  };

  const WqMatmulParams& p;
  int lane, r, t;
  int64_t nw0;  // first word column of the CTA
  int kx;       // K - 4 t: step s exists for this lane if 16 s < kx
  bool x_ok;
  uint32_t colmask;
  uint64_t xbase, wbase, rowb, wstep, sbase, zbase, sgroup, zgroup;

  LOWBIT_DEVICE AwqKernel(const WqMatmulParams& params, int64_t m0) : p(params) {
    lane = threadIdx.x & 31;
    r = lane >> 2;
    t = lane & 3;
    nw0 = int64_t(blockIdx.x) * kNB * 8;
    x_ok = r < Cfg::kMT && m0 + r < p.m;
    kx = int(p.k) - 4 * t;
    const int64_t words = p.n / 8;
    colmask = 0;
#pragma unroll
    for (int j = 0; j < kNB; ++j) colmask |= (nw0 + 8 * j + r < words ? 1u : 0u) << j;
    xbase = p.x + uint64_t(x_ok ? (m0 + r) * p.x_stride : 0) * 2u + uint64_t(t) * 8u;
    rowb = uint64_t(words) * 4u;
    wstep = rowb * 16u;
    wbase = p.w + uint64_t(4 * t) * rowb + uint64_t(nw0 + r) * 4u;
    sgroup = uint64_t(p.n) * 2u;
    zgroup = rowb;
    sbase = p.scale + uint64_t(nw0 + r) * 16u;
    zbase = p.zero + uint64_t(nw0 + r) * 4u;
  }
  LOWBIT_DEVICE int64_t n_base() const { return nw0 * 8; }

  LOWBIT_DEVICE void load(Batch& b, int64_t step0) const {
    const uint32_t s0 = uint32_t(step0);
#pragma unroll
    for (int u = 0; u < kUnit; ++u) {
      const bool k_ok = int(16 * (s0 + u)) < kx;  // K % 8 == 0: rows 4t..4t+3 all exist or none
      const uint64_t a = wbase + uint64_t(s0 + u) * wstep;
#pragma unroll
      for (int j = 0; j < kNB; ++j) {
        const bool ok = k_ok && ((colmask >> j) & 1u);
        b.w[u][j][0] = ld_stream4_if(a + j * 32u, ok);
        b.w[u][j][1] = ld_stream4_if(a + rowb + j * 32u, ok);
        b.w[u][j][2] = ld_stream4_if(a + 2 * rowb + j * 32u, ok);
        b.w[u][j][3] = ld_stream4_if(a + 3 * rowb + j * 32u, ok);
      }
    }
    const uint32_t g = kG < 0 ? 0u : s0 / uint32_t(kG < 0 ? 1 : kG / 16);
    const uint64_t sg = sbase + uint64_t(g) * sgroup, zg = zbase + uint64_t(g) * zgroup;
#pragma unroll
    for (int j = 0; j < kNB; ++j) {
      const bool ok = (colmask >> j) & 1u;
      b.s[j] = ld16_if(sg + j * 128u, ok);
      b.z[j] = Cfg::kSym ? 0u : ld4_if(zg + j * 32u, ok);
    }
  }

  LOWBIT_DEVICE void load_x(XBatch& b, int64_t step0) const {
    const uint32_t s0 = uint32_t(step0);
#pragma unroll
    for (int u = 0; u < kUnit; ++u) b.x[u] = ld8_if(xbase + uint64_t(s0 + u) * 32u, x_ok && int(16 * (s0 + u)) < kx);
  }

  LOWBIT_DEVICE void compute(const Batch& b, const XBatch& xb, Acc& acc, int64_t) const {
#pragma unroll
    for (int j = 0; j < kNB; ++j) {
      Zc4 zc[8];
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        // Column c of the word sits at nibble AWQ_REVERSE_ORDER[c] = {0,4,1,5,2,6,3,7}[c].
        const int pos = (c & 1) * 4 + (c >> 1);
        zc[c] = zero_consts4<AT>(Cfg::kSym ? 8u : (b.z[j] >> (4 * pos)) & 15u);
      }
      float c4[4][4] = {};
#pragma unroll
      for (int u = 0; u < kUnit; ++u) {
        const uint32_t* a4 = b.w[u][j];
        const uint32_t P01 = prmt(a4[0], a4[1], 0x5410u), Q01 = prmt(a4[0], a4[1], 0x7632u);
        const uint32_t P23 = prmt(a4[2], a4[3], 0x5410u), Q23 = prmt(a4[2], a4[3], 0x7632u);
        const uint32_t P01s = P01 >> 8, Q01s = Q01 >> 8, P23s = P23 >> 8, Q23s = Q23 >> 8;
        uint32_t a[4];
#define LOWBIT_AWQ_MMA(I)                        \
  a[0] = deq4s<AT, I>(P01, P01s, zc[2 * I]);     \
  a[1] = deq4s<AT, I>(Q01, Q01s, zc[2 * I + 1]); \
  a[2] = deq4s<AT, I>(P23, P23s, zc[2 * I]);     \
  a[3] = deq4s<AT, I>(Q23, Q23s, zc[2 * I + 1]); \
  mma<AT>(c4[I], a, xb.x[u].x, xb.x[u].y);
        LOWBIT_AWQ_MMA(0)
        LOWBIT_AWQ_MMA(1)
        LOWBIT_AWQ_MMA(2)
        LOWBIT_AWQ_MMA(3)
#undef LOWBIT_AWQ_MMA
      }
      const uint32_t sw[4] = {b.s[j].x, b.s[j].y, b.s[j].z, b.s[j].w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float s0 = scale_f32<ST>(sw[i] & 0xffffu), s1 = scale_f32<ST>(sw[i] >> 16);
        acc.y[j][i][0] += s0 * c4[i][0];
        acc.y[j][i][1] += s0 * c4[i][1];
        acc.y[j][i][2] += s1 * c4[i][2];
        acc.y[j][i][3] += s1 * c4[i][3];
      }
    }
  }

  template <int kW, int kMT>
  LOWBIT_DEVICE void store(const Acc& acc, Reduction<kW, kMT, kNR>& red, int warp) const {
#pragma unroll
    for (int j = 0; j < kNB; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int nl = 64 * j + 8 * r + 2 * i;
        put(red, warp, nl, 2 * t, acc.y[j][i][0]);
        put(red, warp, nl, 2 * t + 1, acc.y[j][i][1]);
        put(red, warp, nl + 1, 2 * t, acc.y[j][i][2]);
        put(red, warp, nl + 1, 2 * t + 1, acc.y[j][i][3]);
      }
  }
};

template <bool kCond, typename A, typename B> struct Select { using type = A; };
template <typename A, typename B> struct Select<false, A, B> { using type = B; };

}  // namespace wq

// The kernel entry: grid (n-blocks, splits, m-tiles of 8), kThreads threads.
template <typename Cfg>
LOWBIT_DEVICE void wq_matmul_kernel(const WqMatmulParams& p) {
  using namespace wq;
  using Kernel = typename Select<Cfg::kFormat == 4, NativeKernel<Cfg>,
                                 typename Select<Cfg::kFormat == 1, AwqKernel<Cfg>, GptqKernel<Cfg>>::type>::type;
  constexpr int kW = Cfg::kThreads / 32;
  constexpr int kMT = Cfg::kMT;
  constexpr int kUnit = Cfg::kUnit;
  __shared__ Reduction<kW, kMT, Kernel::kNR> red;
  const int warp = threadIdx.x >> 5;
  const int64_t m0 = int64_t(blockIdx.z) * 8;
  const Kernel kern(p, m0);
  typename Kernel::Acc acc;
  {
    float* a = reinterpret_cast<float*>(&acc);
#pragma unroll
    for (int i = 0; i < int(sizeof(acc) / sizeof(float)); ++i) a[i] = 0.f;
  }
  const int64_t split_begin = int64_t(blockIdx.y) * p.steps_per_split;
  const int64_t split_end = min64(p.k_steps, split_begin + p.steps_per_split);
  const int64_t first = split_begin + int64_t(warp) * kUnit;
  constexpr int64_t kStride = int64_t(kW) * kUnit;
  // This warp's units: first, first + kStride, ... A ring of kStages weight
  // batches keeps kStages - 1 units of loads in flight while one is computed;
  // X (cached, short latency) is loaded one unit ahead.
  constexpr int kD = Cfg::kStages;
  const int64_t units = first < split_end ? (split_end - first + kStride - 1) / kStride : 0;
  typename Kernel::Batch ring[kD];
  typename Kernel::XBatch xb[2];
  // A kernel queued behind this one with programmatic launch may start now:
  // our CTAs are all resident once the last one gets here, and it waits for
  // our completion before touching our outputs.
  allow_dependent_launch();
  // Weights, scales and zeros are constant while the plan runs: fetch them
  // before waiting for the previous kernel in the stream (with programmatic
  // launch that wait is what orders us after it; otherwise it returns at
  // once). X, bias, Y and the workspace are touched only after it.
#pragma unroll
  for (int d = 0; d < kD - 1; ++d)
    if (d < units) kern.load(ring[d], first + d * kStride);
  wait_for_previous_grid();
  if (units > 0) kern.load_x(xb[0], first);
  for (int64_t i0 = 0; i0 < units; i0 += kD) {
#pragma unroll
    for (int d = 0; d < kD; ++d) {
      const int64_t i = i0 + d;
      if (i >= units) break;
      if (i + kD - 1 < units) kern.load(ring[(d + kD - 1) % kD], first + (i + kD - 1) * kStride);
      if (i + 1 < units) kern.load_x(xb[(d + 1) % 2], first + (i + 1) * kStride);
      kern.compute(ring[d], xb[d % 2], acc, first + i * kStride);
    }
  }
  kern.template store<kW, kMT>(acc, red, warp);
  finish<Cfg, kW, kMT, Kernel::kNR>(p, red, kern.n_base(), m0);
}

// Split-K: y = sum over splits (in order) + bias, rounded to AT.
template <typename Cfg>
LOWBIT_DEVICE void wq_reduce_kernel(const WqReduceParams& p) {
  using AT = typename Cfg::AT;
  const int64_t total = p.m * p.n;
  for (int64_t i = int64_t(blockIdx.x) * Cfg::kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * Cfg::kThreads) {
    const int64_t m = i / p.n, n = i % p.n;
    float v = 0.f;
    for (int64_t s = 0; s < p.splits; ++s) v += ptr<float>(p.partial)[(s * p.m_plan + m) * p.n + n];
    if (p.bias != 0) v += to_f32(ptr<AT>(p.bias)[n]);
    mut_ptr<AT>(p.y)[m * p.y_stride + n] = from_f32<AT>(v);
  }
}

// Native act-order: xp[m][i] = x[m][perm[i]] (perm values clamped into [0, k)).
template <typename Cfg>
LOWBIT_DEVICE void wq_permute_kernel(const WqPermuteParams& p) {
  using AT = typename Cfg::AT;
  const int64_t total = p.m * p.k;
  for (int64_t i = int64_t(blockIdx.x) * Cfg::kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * Cfg::kThreads) {
    const int64_t m = i / p.k, c = i % p.k;
    int64_t src = ptr<int32_t>(p.perm)[c];
    src = src < 0 ? 0 : (src >= p.k ? p.k - 1 : src);
    mut_ptr<AT>(p.xp)[i] = ptr<AT>(p.x)[m * p.x_stride + src];
  }
}

}  // namespace lowbit
