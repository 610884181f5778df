// wq_gemm.cuh - weight-only quantized matmul, prefill path (family 2, M >= 9).
//
//   Y[m, n] = sum_k X[m, k] * w[k, n]  (+ bias[n]),   w = round_AT((q - z) * s)
//
// A tensor-core GEMM over lowbit's native weight layout (wq_layout.h). As in
// the decode kernel the weights are the A operand of mma.m16n8k16 (16 rows of
// N) and X^T the B operand (8 rows of X per MMA), so each dequantized weight
// fragment serves the kTM MMAs of a warp's M extent: dequantization costs
// about (9..16) / kTM integer and f16x2 instructions per MMA. Unlike the decode
// kernel, the group scale is folded into the weights before the MMA (one
// f16x2 / bf16x2 multiply per register, rounded once to the activation type,
// the "dequantize to fp16, then matmul" arithmetic of the AWQ and GPTQ
// reference implementations): applying it in f32 per group would double the
// accumulator registers of a warp tile.
//
// Pipeline. A CTA owns a kBM x kBN tile of Y (kBN = 16 kTN kWarpsN rows of N,
// kBM = 8 kTM kWarpsM rows of M) and a range of K (blockIdx.y: split-K). Each
// stage of a kStages-deep cp.async ring holds one 64-wide k-chunk: the CTA's
// n-tiles of native weights (512 contiguous bytes per n-tile per 4 bits),
// their scales and zeros, and kBM rows of X (row-major, 128 bytes per row,
// 16-byte pieces swizzled by the row's parity so that the 16-byte reads of
// the MMA's B fragments are free of bank conflicts). Rows of X beyond M and
// columns beyond K are zero-filled by cp.async; n-tiles beyond the padded N
// are zero-filled too; the native layout pads K to 64 with q = s = 0.
//
// Fragments. In the native layout lane (r, t) holds rows n0 + r and n0 + r + 8
// at k = 16 t .. 16 t + 15 of the chunk, word j covering k = 16 t + 4 j .. + 3:
// the MMA's k-slots are a permutation of the chunk's k, and the B fragment
// uses the same one: b0, b1 = X[m][16 t + 4 j + 0..1], X[m][16 t + 4 j + 2..3],
// i.e. the 16-byte piece 2 t + j / 2 of the row, words 2 (j % 2) and + 1.
//
// Epilogue: the accumulators (+ bias) are rounded to AT into a padded shared
// tile and written as 16-byte rows of Y (scalar stores when Y or its stride is
// not 16-byte aligned); with split-K the f32 partials go to the workspace and
// wq_reduce_kernel (wq_matmul.cuh) adds them in split order. Deterministic.
//
// Grid: x = m-blocks x n-blocks in groups of kGroupM m-blocks (consecutive CTAs
// share an n-block's weights and a few m-blocks of X in L2), y = splits.
// With kStreamK the grid is instead p.stream_ctas CTAs sharing every tile's
// chunks (see for_each_segment).
#pragma once

#include "wq_common.cuh"

namespace lowbit {
namespace wq {

// 16 (8) bytes global -> shared, zero-filled when `pred` is false.
LOWBIT_DEVICE void cp_async16(uint32_t dst, uint64_t src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(pred ? 16 : 0));
}
LOWBIT_DEVICE void cp_async8(uint32_t dst, uint64_t src, bool pred) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(dst), "l"(src), "r"(pred ? 8 : 0));
}
LOWBIT_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;" ::); }
template <int kN>
LOWBIT_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kN));
}
LOWBIT_DEVICE U4 lds16(uint32_t a) {
  U4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
  return v;
}
LOWBIT_DEVICE uint32_t lds4(uint32_t a) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(a));
  return v;
}
LOWBIT_DEVICE uint32_t lds2(uint32_t a) {
  uint16_t v;
  asm volatile("ld.shared.u16 %0, [%1];" : "=h"(v) : "r"(a));
  return v;
}
LOWBIT_DEVICE uint32_t lds1(uint32_t a) {
  uint32_t v;
  asm volatile("ld.shared.u8 %0, [%1];" : "=r"(v) : "r"(a));
  return v;
}

LOWBIT_DEVICE uint32_t mul_f16x2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
// bf16x2 product rounded once (fma with a -0 addend: exact on sm_80 and up).
LOWBIT_DEVICE uint32_t mul_bf16x2(uint32_t a, uint32_t b) { return fma_bf16x2(a, b, 0x80008000u); }

// w = round_AT((q - z) * s) for a pair of exact integers `v` (q - z in AT) and
// a pair of scales `s` (ST, low half for the low value).
template <typename AT, typename ST>
LOWBIT_DEVICE uint32_t scale_pair(uint32_t v, uint32_t s) {
  if constexpr (IsBf16<AT>::value == IsBf16<ST>::value) {
    return IsBf16<AT>::value ? mul_bf16x2(v, s) : mul_f16x2(v, s);
  } else {
    // Mixed types: the product of an 8-bit integer and a 16-bit scale is
    // exact in f32; round it once to AT.
    float lo, hi;
    if constexpr (IsBf16<AT>::value) {
      lo = __uint_as_float(v << 16);
      hi = __uint_as_float(v & 0xffff0000u);
      lo *= scale_f32<ST>(s & 0xffffu);
      hi *= scale_f32<ST>(s >> 16);
      return pack_bf16x2(lo, hi);
    } else {
      f16 a, b;
      a.bits = uint16_t(v & 0xffffu);
      b.bits = uint16_t(v >> 16);
      lo = to_f32(a) * scale_f32<ST>(s & 0xffffu);
      hi = to_f32(b) * scale_f32<ST>(s >> 16);
      return pack_f16x2(lo, hi);
    }
  }
}

// The (m-block, n-block) of tile `pid`: tiles walk groups of kGroupM
// m-blocks, m fastest inside a group, so that consecutive CTAs share an
// n-block's weights and a few m-blocks of X in L2. False past the grid.
template <int kGroupM>
LOWBIT_DEVICE bool cta_tile(int64_t pid, int64_t m_blocks, int64_t n_blocks, int64_t& mb, int64_t& nb) {
  const int64_t per_group = int64_t(kGroupM) * n_blocks;
  const int64_t first_m = pid / per_group * kGroupM;
  const int64_t size_m = min64(m_blocks - first_m, int64_t(kGroupM));
  const int64_t in_group = pid % per_group;
  mb = first_m + in_group % size_m;
  nb = in_group / size_m;
  return mb < m_blocks;
}

// One group's scales (a 16-byte half per thread of the first kGPC kNT 2)
// and zeros of a stage, for both GEMM kernels: thread (q, j, half) copies
// group q's half `half` of n-tile j's 32 bytes of scales (and with half 0
// the n-tile's zeros) from global group g.
template <int kG, bool kSym, int kZeroBytes>
LOWBIT_DEVICE void cp_async_scales(const WqMatmulParams& p, uint32_t s_dst, uint32_t z_dst, int64_t g, bool ok,
                                   uint64_t s_col, uint64_t z_col, bool first_half) {
  ok = ok && g < p.ngroups;
  cp_async16(s_dst, ok ? p.scale + uint64_t(g) * uint64_t(p.n_tiles) * 32u + s_col : p.scale, ok);
  if constexpr (!kSym) {
    if (first_half) {
      const uint64_t zsrc = ok ? p.zero + uint64_t(g) * uint64_t(p.n_tiles) * (8u * kZeroBytes) + z_col : p.zero;
      if constexpr (kZeroBytes == 1) {
        cp_async8(z_dst, zsrc, ok);
      } else {
        cp_async16(z_dst, zsrc, ok);
      }
    }
  }
}

// The group of chunk c (sub-group q of a G = 32 chunk).
template <int kG>
LOWBIT_DEVICE int64_t chunk_group(int64_t c, int q) {
  if constexpr (kG < 0) return 0;
  else if constexpr (kG == 32) return 2 * c + q;
  else return c / (kG / 64);
}

// Epilogue of both GEMM kernels: the CTA's kBM x kBN tile of Y, rounded into
// shared memory rows kYRow bytes apart, written as 16-byte row pieces (or
// element by element when Y or its stride is not 16-byte aligned).
template <typename AT, int kBM, int kBN, int kYRow, int kThreads>
LOWBIT_DEVICE void store_y_tile(const WqMatmulParams& p, const uint8_t* smem, int64_t m0, int64_t n_cta) {
  const bool vec = (p.y & 15u) == 0 && (p.y_stride & 7) == 0;
  constexpr int kPieces = kBN / 8;
  for (int i = threadIdx.x; i < kBM * kPieces; i += kThreads) {
    const int ml = i / kPieces, piece = i % kPieces;
    const int64_t m = m0 + ml, n = n_cta + 8 * piece;
    if (m >= p.m || n >= p.n) continue;
    const uint8_t* src = smem + ml * kYRow + piece * 16;
    AT* dst = mut_ptr<AT>(p.y) + m * p.y_stride + n;
    if (vec) {
      *reinterpret_cast<U4*>(dst) = *reinterpret_cast<const U4*>(src);
    } else {
      // N is a multiple of 8: a piece is whole or absent.
#pragma unroll
      for (int e = 0; e < 8; ++e) dst[e] = reinterpret_cast<const AT*>(src)[e];
    }
  }
}

// ---- Split-K inside a thread block cluster (sm_90) --------------------------
//
// With p.cluster_splits = S > 1 the S CTAs of one output tile (blockIdx.y =
// split = rank in the cluster, cluster dims 1 x S) each leave their f32
// accumulators in their own shared memory (kBM rows of kBN floats, rows
// ClusterTile::kRowFloats apart), and after a cluster barrier CTA `rank` finishes the
// tile's 8-column pieces i with i % S == rank: it reads the piece from every
// CTA of the cluster through distributed shared memory, adds them in split
// order starting from 0.f (the order and arithmetic of wq_reduce_kernel, so
// both reductions give the same bits), adds the bias, rounds and stores.
// No workspace, no second kernel; a second barrier keeps every CTA's shared
// memory alive until its peers have read it.
// (src/ops/wq_gemm.cpp's cluster_tile_bytes sizes the shared memory for it.)
template <int kBN>
struct ClusterTile {
  static constexpr int kRowFloats = kBN + 4;  // +16 bytes: the fragment stores are conflict-free
};

#if __CUDA_ARCH__ >= 900
LOWBIT_DEVICE uint32_t cluster_ctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
LOWBIT_DEVICE void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// 16 bytes of CTA `rank`'s shared memory at the offset of `local` in this CTA's.
LOWBIT_DEVICE U4 ld_cluster16(uint32_t local, uint32_t rank) {
  uint32_t a;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(local), "r"(rank));
  U4 v;
  asm volatile("ld.shared::cluster.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(a)
               : "memory");
  return v;
}
#endif

template <typename AT, int kBM, int kBN, int kThreads>
LOWBIT_DEVICE void cluster_reduce_store(const WqMatmulParams& p, const uint8_t* smem, int64_t m0, int64_t n_cta) {
#if __CUDA_ARCH__ >= 900
  constexpr int kRow = ClusterTile<kBN>::kRowFloats * 4;
  constexpr int kPieces = kBN / 8;
  cluster_sync();  // every CTA's partial tile is written and visible to the cluster
  const uint32_t splits = uint32_t(p.cluster_splits), rank = cluster_ctarank();
  const uint32_t base = smem_u32(smem);
  const bool vec = (p.y & 15u) == 0 && (p.y_stride & 7) == 0;
  for (int i = int(rank) * kThreads + threadIdx.x; i < kBM * kPieces; i += int(splits) * kThreads) {
    const int ml = i / kPieces, piece = i % kPieces;
    const int64_t m = m0 + ml, n = n_cta + 8 * piece;
    if (m >= p.m || n >= p.n) continue;  // N is a multiple of 8: a piece is whole or absent
    float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const uint32_t src = base + uint32_t(ml * kRow + piece * 32);
    for (uint32_t q = 0; q < splits; ++q) {
      const U4 a = ld_cluster16(src, q), b = ld_cluster16(src + 16u, q);
      v[0] += __uint_as_float(a.x), v[1] += __uint_as_float(a.y), v[2] += __uint_as_float(a.z);
      v[3] += __uint_as_float(a.w), v[4] += __uint_as_float(b.x), v[5] += __uint_as_float(b.y);
      v[6] += __uint_as_float(b.z), v[7] += __uint_as_float(b.w);
    }
    AT out[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = from_f32<AT>(p.bias != 0 ? v[e] + to_f32(ptr<AT>(p.bias)[n + e]) : v[e]);
    AT* dst = mut_ptr<AT>(p.y) + m * p.y_stride + n;
    if (vec) {
      U4 w;
      w.x = uint32_t(out[0].bits) | uint32_t(out[1].bits) << 16;
      w.y = uint32_t(out[2].bits) | uint32_t(out[3].bits) << 16;
      w.z = uint32_t(out[4].bits) | uint32_t(out[5].bits) << 16;
      w.w = uint32_t(out[6].bits) | uint32_t(out[7].bits) << 16;
      *reinterpret_cast<U4*>(dst) = w;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) dst[e] = out[e];
    }
  }
  cluster_sync();  // peers are done reading this CTA's shared memory
#else
  __trap();  // clusters need sm_90; plans for older targets never set cluster_splits
#endif
}

// ---- Stream-K (both GEMM kernels) -------------------------------------------
//
// With p.stream_ctas = G > 0 the grid is G CTAs (what the SMs hold at once)
// and the work is dealt out by k-chunks, not by tiles: the chunks of every
// tile laid end to end (tile t of the grouped raster, its chunks in k order)
// are cut into G contiguous ranges of q or q + 1 chunks, so every SM gets the
// same work whatever the tile count (96 tiles on 132 SMs run as 132 equal
// shares, not as 96 busy SMs and 36 idle ones). A CTA walks its range from
// the end, one tile segment at a time:
//  - a segment that stops short of its tile's last chunk (later CTAs hold
//    the rest) stores its f32 accumulators in the CTA's slot of the
//    workspace and then sets the slot's flag. Only the first segment a CTA
//    walks can be one: a CTA writes at most one slot, before it waits on
//    anything;
//  - the segment holding a tile's last chunk finishes the tile: if earlier
//    CTAs hold its first chunks, it waits for their flags and adds their
//    slots to its accumulators in CTA order, then adds the bias, rounds and
//    stores.
// A CTA only waits on CTAs with lower indices, which start no later than it
// does and publish before they wait: no deadlock, even if the grid does not
// fit the GPU at once. The sum order is fixed by the plan and the row count
// (deterministic); it is not a split-K plan's order.
// Flags: one uint64 per slot, set to the run's nonce (never 0) and cleared by
// the CTA that consumed it, so all are 0 again when the kernel ends. A stale
// value (a workspace some other op wrote) passes for this run's flag only if
// it equals the 64-bit nonce.
struct StreamK {
  int64_t q, r;  // G ranges: the first r of q + 1 chunks, the rest of q (q >= 1)
  LOWBIT_DEVICE StreamK(int64_t total_chunks, int64_t ctas) : q(total_chunks / ctas), r(total_chunks % ctas) {}
  LOWBIT_DEVICE int64_t begin(int64_t cta) const { return cta * q + min64(cta, r); }
  // The CTA whose range holds chunk position `pos`.
  LOWBIT_DEVICE int64_t owner(int64_t pos) const {
    const int64_t big = (q + 1) * r;
    return pos < big ? pos / (q + 1) : r + (pos - big) / q;
  }
};

// What a tile segment does with its accumulators.
struct TileEnd {
  enum Kind { kStore, kSplitPartial, kCluster, kPublish } kind = kStore;
  int64_t slot = 0;                      // kSplitPartial: the split; kPublish: the CTA's slot
  int64_t absorb_first = 0, absorb_end = 0;  // kStore: slots of earlier CTAs to add first
};

LOWBIT_DEVICE void st_cg4(float* a, float x, float y, float z, float w) {
  asm volatile("st.global.cg.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(a), "f"(x), "f"(y), "f"(z), "f"(w) : "memory");
}
struct F4 {
  float x, y, z, w;
};
LOWBIT_DEVICE F4 ld_cg4(const float* a) {
  F4 v;
  asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(a) : "memory");
  return v;
}
LOWBIT_DEVICE void st_release_gpu(uint64_t a, uint64_t v) {
  asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(a), "l"(v) : "memory");
}
LOWBIT_DEVICE uint64_t ld_acquire_gpu(uint64_t a) {
  uint64_t v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(a) : "memory");
  return v;
}
LOWBIT_DEVICE void st_relaxed_gpu(uint64_t a, uint64_t v) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(a), "l"(v) : "memory");
}

// The CTA's accumulators, in the thread's own register order, to slot
// `slot` (float4 i of thread t at (i kThreads + t) 16 bytes: coalesced),
// then the slot's flag.
template <int kRegs, int kThreads>
LOWBIT_DEVICE void streamk_publish(const WqMatmulParams& p, const float (&acc)[kRegs], int64_t slot) {
  static_assert(kRegs % 4 == 0, "accumulators come in fours");
  float* part = mut_ptr<float>(p.partial) + slot * int64_t(kRegs) * kThreads + threadIdx.x * 4;
#pragma unroll
  for (int i = 0; i < kRegs / 4; ++i)
    st_cg4(part + i * kThreads * 4, acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]);
  __syncthreads();  // every thread's share is written
  if (threadIdx.x == 0) {
    asm volatile("fence.acq_rel.gpu;" ::: "memory");  // with the barrier: the CTA's stores before the flag
    st_release_gpu(p.stream_flags + uint64_t(slot) * 8u, p.stream_nonce);
  }
}

// Adds slots [first, end) to the accumulators, in slot order, once their
// flags are up; clears the flags.
template <int kRegs, int kThreads>
LOWBIT_DEVICE void streamk_absorb(const WqMatmulParams& p, float (&acc)[kRegs], int64_t first, int64_t end) {
  if (first >= end) return;
  if (threadIdx.x == 0)
    for (int64_t c = first; c < end; ++c)
      while (ld_acquire_gpu(p.stream_flags + uint64_t(c) * 8u) != p.stream_nonce)
        asm volatile("nanosleep.u32 64;" ::: "memory");
  __syncthreads();
  for (int64_t c = first; c < end; ++c) {
    const float* part = ptr<float>(p.partial) + c * int64_t(kRegs) * kThreads + threadIdx.x * 4;
#pragma unroll
    for (int i = 0; i < kRegs / 4; ++i) {
      const F4 v = ld_cg4(part + i * kThreads * 4);
      acc[4 * i] += v.x, acc[4 * i + 1] += v.y, acc[4 * i + 2] += v.z, acc[4 * i + 3] += v.w;
    }
  }
  if (threadIdx.x == 0)
    for (int64_t c = first; c < end; ++c) st_relaxed_gpu(p.stream_flags + uint64_t(c) * 8u, 0);
}

// The kernels' tile schedule: one (tile, split) per CTA, or (kStreamK, a JIT
// constant so that the other plans' kernels carry none of it) the stream-K
// walk. `run(mb, nb, chunk_begin, chunk_end, end)` computes one segment.
template <int kGroupM, int kBM, int kNT, bool kStreamK, typename Run>
LOWBIT_DEVICE void for_each_segment(const WqMatmulParams& p, Run&& run) {
  const int64_t m_blocks = (p.m + kBM - 1) / kBM;
  const int64_t n_blocks = (p.n_tiles + kNT - 1) / kNT;
  int64_t mb, nb;
  TileEnd end;
  if constexpr (kStreamK) {
    const int64_t chunks = p.k_steps;
    const StreamK sk(m_blocks * n_blocks * chunks, p.stream_ctas);
    const int64_t cta = blockIdx.x, b = sk.begin(cta);
    for (int64_t pos = sk.begin(cta + 1); pos > b;) {
      const int64_t tile = (pos - 1) / chunks, ts = tile * chunks, sb = b > ts ? b : ts;
      cta_tile<kGroupM>(tile, m_blocks, n_blocks, mb, nb);
      end.kind = pos < ts + chunks ? TileEnd::kPublish : TileEnd::kStore;
      end.slot = cta;
      end.absorb_first = sk.owner(ts);
      end.absorb_end = sb > ts ? cta : end.absorb_first;
      run(mb, nb, sb - ts, pos - ts, end);
      pos = sb;
    }
    return;
  }
  if (!cta_tile<kGroupM>(blockIdx.x, m_blocks, n_blocks, mb, nb)) return;
  const int64_t chunk_begin = int64_t(blockIdx.y) * p.steps_per_split;
  end.kind = p.cluster_splits > 1 ? TileEnd::kCluster : p.partial != 0 ? TileEnd::kSplitPartial : TileEnd::kStore;
  end.slot = blockIdx.y;
  run(mb, nb, chunk_begin, min64(p.k_steps, chunk_begin + p.steps_per_split), end);
}

template <typename Cfg>
struct Gemm {
  using AT = typename Cfg::AT;
  using ST = typename Cfg::ST;
  static constexpr int kBits = Cfg::kBits;
  static constexpr int kG = Cfg::kGroup;
  static constexpr bool kSym = Cfg::kSym;
  static constexpr int kWN = Cfg::kWarpsN, kWM = Cfg::kWarpsM;
  static constexpr int kTN = Cfg::kTileN, kTM = Cfg::kTileM;
  static constexpr int kStages = Cfg::kStages;
  static constexpr int kThreads = Cfg::kThreads;
  static_assert(kThreads == 32 * kWN * kWM, "threads = 32 x warps");
  static constexpr int kNT = kTN * kWN;  // n-tiles of 16 per CTA
  static constexpr int kBN = 16 * kNT;
  static constexpr int kBM = 8 * kTM * kWM;
  static constexpr int kH = kBits / 4;           // 16-byte vectors per lane per chunk
  static constexpr int kGPC = kG == 32 ? 2 : 1;  // groups per 64-wide chunk
  static constexpr uint32_t kSymZero = kBits == 4 ? 8u : 128u;
  static constexpr int kZeroBytes = kBits / 4;  // per (group, n-tile, r)
  // Stage layout (bytes).
  static constexpr int kWBytes = kNT * kH * 512;
  static constexpr int kSBytes = kGPC * kNT * 32;
  static constexpr int kZBytes = kSym ? 0 : ((kGPC * kNT * 8 * kZeroBytes + 15) / 16) * 16;
  static constexpr int kXBytes = kBM * 128;
  static constexpr int kSOff = kWBytes, kZOff = kSOff + kSBytes, kXOff = kZOff + kZBytes;
  static constexpr int kStageBytes = kXOff + kXBytes;
  // Epilogue tile: kBM rows of kBN AT values, padded by 16 bytes per row.
  static constexpr int kYRow = kBN * 2 + 16;
  static constexpr int kYBytes = kBM * kYRow;
  static constexpr int kSmemBytes = kStages * kStageBytes > kYBytes ? kStages * kStageBytes : kYBytes;
};

}  // namespace wq

namespace wq {

// One tile segment: chunks [chunk_begin, chunk_end) of tile (mb, nb), then
// what `end` says.
template <typename Cfg>
LOWBIT_DEVICE void gemm_segment(const WqMatmulParams& p, uint8_t* smem, int64_t mb, int64_t nb, int64_t chunk_begin,
                                int64_t chunk_end, const TileEnd& end) {
  using G = Gemm<Cfg>;
  using AT = typename Cfg::AT;
  using ST = typename Cfg::ST;
  constexpr int kTN = G::kTN, kTM = G::kTM, kNT = G::kNT, kBM = G::kBM, kH = G::kH, kGPC = G::kGPC;
  constexpr int kStages = G::kStages, kThreads = G::kThreads, kBits = G::kBits;
  const uint32_t sbase = smem_u32(smem);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = lane >> 2, t = lane & 3;
  const int warp_n = warp % G::kWN, warp_m = warp / G::kWN;

  const int64_t m0 = mb * kBM, nt0 = nb * kNT;
  const int chunks = int(chunk_end - chunk_begin);
  if constexpr (Cfg::kStreamK) __syncthreads();  // the previous segment's epilogue is done with shared memory

  // ---- Loads of one stage (all threads), addresses computed once ----
  // X: thread tid copies piece tid % 8 of rows tid / 8 + j kThreads / 8 (the
  // row parity, hence the swizzle, is the same for every j).
  constexpr int kXPieces = kBM * 8;
  constexpr int kXPer = (kXPieces + kThreads - 1) / kThreads;
  constexpr int kRowStep = kThreads / 8;
  const int x_row0 = tid >> 3, x_piece = tid & 7;
  const int64_t rows_left = p.m - m0;
  const uint64_t x_src0 = p.x + (uint64_t(m0 + x_row0) * uint64_t(p.x_stride) + uint64_t(8 * x_piece)) * 2u;
  const uint64_t x_src_step = uint64_t(kRowStep) * uint64_t(p.x_stride) * 2u;
  const uint32_t x_dst0 = G::kXOff + uint32_t(x_row0) * 128u + uint32_t(x_piece ^ (x_row0 & 1)) * 16u;
  // Weights: kNT x kH x 32 pieces; thread tid copies pieces tid + j kThreads.
  constexpr int kWPieces = kNT * kH * 32;
  constexpr int kWPer = (kWPieces + kThreads - 1) / kThreads;
  const uint64_t wcol = uint64_t(p.k_steps) * (kH * 512);  // bytes between n-tile columns
  uint64_t w_src0[kWPer];
  bool w_ok[kWPer];
#pragma unroll
  for (int j = 0; j < kWPer; ++j) {
    const int i = tid + j * kThreads;
    const int jt = i / (kH * 32), rest = i % (kH * 32);
    w_ok[j] = i < kWPieces && nt0 + jt < p.n_tiles;
    w_src0[j] = w_ok[j] ? p.w + uint64_t(nt0 + jt) * wcol + uint64_t(rest) * 16u : p.w;
  }
  // Scales and zeros: thread tid < kGPC kNT 2 copies one 16-byte half.
  const int sq = tid / (kNT * 2), sj = (tid / 2) % kNT, shalf = tid & 1;
  const bool s_thread = tid < kGPC * kNT * 2 && nt0 + sj < p.n_tiles;
  const uint64_t s_col = uint64_t(nt0 + sj) * 32u + uint64_t(shalf) * 16u;
  const uint64_t z_col = uint64_t(nt0 + sj) * (8u * G::kZeroBytes);
  auto load_stage = [&](int slot, int64_t c) {
    const uint32_t st = sbase + uint32_t(slot) * G::kStageBytes;
#pragma unroll
    for (int j = 0; j < kWPer; ++j)
      if (kWPieces % kThreads == 0 || tid + j * kThreads < kWPieces)
        cp_async16(st + uint32_t(tid + j * kThreads) * 16u, w_ok[j] ? w_src0[j] + uint64_t(c) * (kH * 512) : p.w, w_ok[j]);
    if (tid < G::kGPC * kNT * 2)
      cp_async_scales<G::kG, G::kSym, G::kZeroBytes>(
          p, st + G::kSOff + uint32_t(sq * kNT + sj) * 32u + uint32_t(shalf) * 16u,
          st + G::kZOff + uint32_t(sq * kNT + sj) * (8u * G::kZeroBytes), chunk_group<G::kG>(c, sq), s_thread, s_col,
          z_col, shalf == 0);
    const int64_t k0 = c * 64;
    const bool k_ok = k0 + 8 * x_piece < p.k;
#pragma unroll
    for (int j = 0; j < kXPer; ++j) {
      if (kXPieces % kThreads != 0 && tid + j * kThreads >= kXPieces) break;
      const bool ok = k_ok && x_row0 + j * kRowStep < rows_left;
      cp_async16(st + x_dst0 + uint32_t(j * kRowStep) * 128u,
                 ok ? x_src0 + uint64_t(j) * x_src_step + uint64_t(k0) * 2u : p.x, ok);
    }
  };

  float acc[kTN][kTM][4];
#pragma unroll
  for (int j = 0; j < kTN; ++j)
#pragma unroll
    for (int i = 0; i < kTM; ++i) acc[j][i][0] = acc[j][i][1] = acc[j][i][2] = acc[j][i][3] = 0.f;

  // Thread's offsets inside a stage.
  const int ntw = warp_n * kTN;                // first n-tile of the warp within the CTA
  const uint32_t w_off = uint32_t(ntw) * (kH * 512u) + uint32_t(lane) * 16u;
  const int q_own = kGPC == 2 ? (t >> 1) : 0;  // G = 32: lanes t >= 2 hold the chunk's second group
  const uint32_t s_off = G::kSOff + uint32_t(q_own * kNT + ntw) * 32u + uint32_t(r) * 4u;
  const uint32_t z_off = G::kZOff + uint32_t(q_own * kNT + ntw) * (8u * G::kZeroBytes) + uint32_t(r) * G::kZeroBytes;
  const int mrow = warp_m * kTM * 8 + r;  // row of m-tile 0 for this lane (r is even/odd like the row)
  const uint32_t x_off = G::kXOff + uint32_t(mrow) * 128u;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < chunks) load_stage(s, chunk_begin + s);
    cp_async_commit();
  }
  int slot = 0, load_slot = kStages - 1;
  for (int c = 0; c < chunks; ++c) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    if (c + kStages - 1 < chunks) load_stage(load_slot, chunk_begin + c + kStages - 1);
    cp_async_commit();
    load_slot = load_slot + 1 == kStages ? 0 : load_slot + 1;

    const uint32_t st = sbase + uint32_t(slot) * G::kStageBytes;
    slot = slot + 1 == kStages ? 0 : slot + 1;
    // Every shared-memory read of the chunk first, back to back, so that one
    // latency covers them all: the weight vectors, the raw scales and zeros,
    // and the B fragments of both k-halves.
    U4 wv[kH][kTN];
    uint32_t sraw[kTN], zraw[kTN];
    U4 xb[2][kTM];
#pragma unroll
    for (int j = 0; j < kTN; ++j)
#pragma unroll
      for (int h = 0; h < kH; ++h) wv[h][j] = lds16(st + w_off + uint32_t(j) * (kH * 512u) + uint32_t(h) * 512u);
#pragma unroll
    for (int kh = 0; kh < 2; ++kh)
#pragma unroll
      for (int i = 0; i < kTM; ++i)
        xb[kh][i] = lds16(st + x_off + uint32_t(i) * 1024u + uint32_t((2 * t + kh) ^ (r & 1)) * 16u);
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      sraw[j] = lds4(st + s_off + uint32_t(j) * 32u);
      if constexpr (G::kSym) {
        zraw[j] = 0;
      } else if constexpr (kBits == 4) {
        zraw[j] = lds1(st + z_off + uint32_t(j) * 8u);
      } else {
        zraw[j] = lds2(st + z_off + uint32_t(j) * 16u);
      }
    }
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      // Scale pairs (rows r, r + 8) and zero constants of n-tile j.
      uint32_t s_lo, s_hi;
      if constexpr (IsBf16<AT>::value == IsBf16<ST>::value) {
        s_lo = prmt(sraw[j], sraw[j], 0x1010u);
        s_hi = prmt(sraw[j], sraw[j], 0x3232u);
      } else {
        s_lo = (sraw[j] & 0xffffu) * 0x10001u;
        s_hi = (sraw[j] >> 16) * 0x10001u;
      }
      uint32_t z0 = G::kSymZero, z1 = G::kSymZero;
      if constexpr (!G::kSym) {
        z0 = kBits == 4 ? (zraw[j] & 15u) : (zraw[j] & 255u);
        z1 = kBits == 4 ? (zraw[j] >> 4) : (zraw[j] >> 8);
      }
      Zc4 c0{0u, 0u}, c1{0u, 0u};
      uint32_t e0 = 0, e1 = 0;
      if constexpr (kBits == 4) {
        c0 = zero_consts4<AT>(z0);
        c1 = zero_consts4<AT>(z1);
      } else {
        e0 = zero_const8<AT>(z0);
        e1 = zero_const8<AT>(z1);
      }
#pragma unroll
      for (int kj = 0; kj < 4; ++kj) {
        const int kh = kj >> 1, kk = kj & 1;
        uint32_t a[4];
        if constexpr (kBits == 4) {
          const uint32_t v = word(wv[0][j], kj), v8 = v >> 8;
          a[0] = deq4s<AT, 0>(v, v8, c0);
          a[1] = deq4s<AT, 1>(v, v8, c1);
          a[2] = deq4s<AT, 2>(v, v8, c0);
          a[3] = deq4s<AT, 3>(v, v8, c1);
        } else {
          const uint32_t va = word(wv[kh][j], 2 * kk), vb = word(wv[kh][j], 2 * kk + 1);
          a[0] = deq8<AT, 0>(va, e0);
          a[1] = deq8<AT, 1>(va, e1);
          a[2] = deq8<AT, 0>(vb, e0);
          a[3] = deq8<AT, 1>(vb, e1);
        }
        a[0] = scale_pair<AT, ST>(a[0], s_lo);
        a[1] = scale_pair<AT, ST>(a[1], s_hi);
        a[2] = scale_pair<AT, ST>(a[2], s_lo);
        a[3] = scale_pair<AT, ST>(a[3], s_hi);
#pragma unroll
        for (int i = 0; i < kTM; ++i) mma<AT>(acc[j][i], a, word(xb[kh][i], 2 * kk), word(xb[kh][i], 2 * kk + 1));
      }
    }
  }
  cp_async_wait<0>();

  // ---- Epilogue ----
  const int64_t n_cta = nt0 * 16;
  const int nl0 = ntw * 16 + r;      // CTA-local n of acc[j][i][0]
  const int ml0 = warp_m * kTM * 8 + 2 * t;  // CTA-local m of acc[j][i][0]
  constexpr int kRegs = kTN * kTM * 4;
  float(&flat)[kRegs] = reinterpret_cast<float(&)[kRegs]>(acc);
  if (Cfg::kStreamK && end.kind == TileEnd::kPublish) {
    streamk_publish<kRegs, kThreads>(p, flat, end.slot);
    return;
  }
  if (end.kind == TileEnd::kCluster) {
    __syncthreads();  // every warp is done with the stages: the f32 tile reuses them
    float* f = reinterpret_cast<float*>(smem);
    constexpr int kRow = ClusterTile<G::kBN>::kRowFloats;
#pragma unroll
    for (int j = 0; j < kTN; ++j)
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          f[(ml0 + 8 * i + (e & 1)) * kRow + nl0 + 16 * j + (e >= 2 ? 8 : 0)] = acc[j][i][e];
    cluster_reduce_store<AT, kBM, G::kBN, kThreads>(p, smem, m0, n_cta);
    return;
  }
  if (end.kind == TileEnd::kSplitPartial) {
    float* part = mut_ptr<float>(p.partial) + end.slot * p.m_plan * p.n;
#pragma unroll
    for (int j = 0; j < kTN; ++j)
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t n = n_cta + nl0 + 16 * j + (e >= 2 ? 8 : 0), m = m0 + ml0 + 8 * i + (e & 1);
          if (n < p.n && m < p.m) part[m * p.n + n] = acc[j][i][e];
        }
    return;
  }
  if constexpr (Cfg::kStreamK) streamk_absorb<kRegs, kThreads>(p, flat, end.absorb_first, end.absorb_end);
  __syncthreads();  // every warp is done with the stages: reuse them for the Y tile
#pragma unroll
  for (int j = 0; j < kTN; ++j) {
    float b0 = 0.f, b1 = 0.f;
    if (p.bias != 0) {
      const int64_t n = n_cta + nl0 + 16 * j;
      if (n < p.n) b0 = to_f32(ptr<AT>(p.bias)[n]);
      if (n + 8 < p.n) b1 = to_f32(ptr<AT>(p.bias)[n + 8]);
    }
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int nl = nl0 + 16 * j + (e >= 2 ? 8 : 0), ml = ml0 + 8 * i + (e & 1);
        mut_ptr<AT>(uint64_t(smem) + uint64_t(ml) * G::kYRow)[nl] = from_f32<AT>(acc[j][i][e] + (e >= 2 ? b1 : b0));
      }
  }
  __syncthreads();
  store_y_tile<AT, kBM, G::kBN, G::kYRow, kThreads>(p, smem, m0, n_cta);
}

}  // namespace wq

// The kernel entry; dynamic shared memory of Gemm<Cfg>::kSmemBytes.
template <typename Cfg>
LOWBIT_DEVICE void wq_gemm_kernel(const WqMatmulParams& p) {
  using G = wq::Gemm<Cfg>;
  extern __shared__ __align__(16) uint8_t smem[];
  wq::for_each_segment<Cfg::kGroupM, G::kBM, G::kNT, Cfg::kStreamK>(
      p, [&](int64_t mb, int64_t nb, int64_t chunk_begin, int64_t chunk_end, const wq::TileEnd& end) {
        wq::gemm_segment<Cfg>(p, smem, mb, nb, chunk_begin, chunk_end, end);
      });
}

}  // namespace lowbit
