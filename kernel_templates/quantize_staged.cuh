// quantize_staged.cuh - sm_90 quantize, dequantize and dynamic per-token /
// per-group quantize with the input stream staged in shared memory by the
// bulk copy engine (cp.async.bulk, completing on an mbarrier).
//
// Why: the register-staged kernels (quantize.cuh, quantize_dynamic.cuh) keep
// only what their registers hold in flight. Bulk copies of kStages tiles
// ahead keep tens of KB per SM in flight at no register cost (H100 probe,
// notes/quantize-perf.md v5: an s4 widening 2683 GB/s with registers, 2741
// with bulk-loaded input). Plans use it by default only where it measured
// faster: dequantize with a scale per row (s4 84 -> 89 % of a copy) and
// per-group dequantize from 4-bit Q (82-83 -> 85-86 %, v6); the other ops
// reach it through the developer knobs (src/ops/quantize.cpp).
//
// A tile is a run of whole vectors of one row of the input stream (X, or Q
// for dequantize): p.tile_vectors of them (the last tile of a row shorter),
// p.tiles_per_row tiles per row, tiles dealt to blocks round-robin. Thread 0
// issues the bulk copy of tile i + kStages into stage i % kStages once every
// thread is done with tile i (one barrier per tile). The arithmetic, stores
// and exact fixups are K<Cfg>'s (quantize.cuh); outputs are written with
// ordinary vector stores, fixups and row tails read global memory directly.
// Dynamic: a tile is whole segments (a row, or groups of a row); each is
// reduced from shared memory by kSegThreads threads, then quantized from it.
#pragma once

namespace lowbit {
namespace qk {

LOWBIT_DEVICE void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
// Makes the initialized barriers visible to the bulk copy engine.
LOWBIT_DEVICE void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
LOWBIT_DEVICE void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n .reg .pred done;\n"
      "wait_%=: mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      " @!done bra wait_%=;\n}" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}
// One arrival that also expects `bytes` of bulk copy, then the copy itself.
LOWBIT_DEVICE void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_u32(dst)),
               "l"(src), "r"(bytes), "r"(smem_u32(bar))
               : "memory");
}

template <typename Cfg>
LOWBIT_DEVICE void staged(const QuantizeParams& p) {
  using Kk = K<Cfg>;
  using XT = typename Kk::XT;
  using ST = typename Cfg::ST;
  using C = typename Kk::C;
  using XVec = typename Kk::XVec;
  using QVec = typename Kk::QVec;
  constexpr int kVec = Cfg::kVec;
  constexpr int kThreads = Cfg::kThreads;
  constexpr int kStages = Cfg::kStages;
  constexpr bool kDyn = Cfg::kOp == 7;
  constexpr int kInVec = Kk::kInQ ? Kk::kQBytes : kVec * int(sizeof(XT));  // staged bytes per vector
  static_assert(Cfg::kScaleMode != 2, "per-element scales are not staged");
  static_assert(!kDyn || Cfg::kSegThreads <= 32 || Cfg::kSegThreads == kThreads,
                "a segment is a power-of-two part of a warp or the whole block");
  extern __shared__ __align__(128) uint8_t staged_smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(staged_smem + int64_t(kStages) * p.stage_bytes);
  const int tid = int(threadIdx.x);

  const uint8_t* in = reinterpret_cast<const uint8_t*>(Kk::kInQ ? p.q : p.x);
  const int64_t in_pitch = Kk::kInQ ? p.q_row_bytes : p.x_row_stride * int64_t(sizeof(XT));
  const int64_t tiles = p.rows * p.tiles_per_row;
  // Where tile t lies: its row, its first vector and its vector count (a tile
  // is at most 48 KB, so the count fits an int).
  struct Tile {
    int64_t row, v0;
    int nv;
  };
  auto tile_at = [&](int64_t t) {
    Tile r;
    r.row = t / p.tiles_per_row;
    r.v0 = (t - r.row * p.tiles_per_row) * p.tile_vectors;
    r.nv = int(min(p.tile_vectors, p.chunks_per_row - r.v0));
    return r;
  };
  auto issue = [&](int64_t t, int s) {
    const Tile g = tile_at(t);
    bulk_load(staged_smem + int64_t(s) * p.stage_bytes, in + g.row * in_pitch + g.v0 * kInVec,
              uint32_t(g.nv * kInVec), full + s);
  };
  if (tid == 0) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) mbar_init(full + s, 1);
    mbar_init_fence();
  }
  block_sync();
  if (tid == 0) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      const int64_t t = int64_t(blockIdx.x) + int64_t(s) * gridDim.x;
      if (t < tiles) issue(t, s);
    }
  }

  QP<C> tp{};
  if constexpr (!kDyn && Cfg::kScope == 1) tp = Kk::load_qp(p, 0, Kk::kDivides);

  // Scales of a tile, as raw values (two registers each): a row's scale is
  // loaded before the tile's data is waited for; per-vector (per-group)
  // scales are loaded a tile ahead, so their latency overlaps the previous
  // tile's arithmetic instead of adding to this tile's wait.
  constexpr int kNS = kDyn ? 1 : Cfg::kScaleMode == 0 ? 1 : Cfg::kUnroll;
  constexpr bool kLoadScale = !kDyn && Cfg::kScope != 1;
  constexpr bool kScalesAhead = kLoadScale && Cfg::kScaleMode != 0;
  ST sraw[kNS], snext[kNS];
  int32_t zraw[kNS], znext[kNS];
  auto load_scales = [&](const Tile& g, ST (&sv)[kNS], int32_t (&zv)[kNS]) {
#pragma unroll
    for (int k = 0; k < kNS; ++k) {
      const int lv = tid + k * kThreads;
      if (Cfg::kScaleMode == 0 || lv < g.nv) {
        const int64_t idx = Kk::template stepped_index<kThreads>(p, g.row, (g.v0 + tid) * kVec, k);
        sv[k] = ptr<ST>(p.scale)[idx];
        zv[k] = p.zero_point != 0 ? ptr<int32_t>(p.zero_point)[idx] : 0;
      }
    }
  };
  // Each tile's position is computed once: the next one's when its scales
  // are loaded ahead (or at the end of the iteration), then carried over.
  Tile next = tile_at(blockIdx.x);
  if constexpr (kScalesAhead) {
    if (int64_t(blockIdx.x) < tiles) load_scales(next, snext, znext);
  }

  int i = 0;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x, ++i) {
    const int s = i % kStages;
    const Tile cur = next;
    const int64_t row = cur.row, v0 = cur.v0;
    const int nv = cur.nv;
    const uint8_t* stage = staged_smem + int64_t(s) * p.stage_bytes;
    const bool more = t + gridDim.x < tiles;
    if (more) next = tile_at(t + gridDim.x);
    if constexpr (kScalesAhead) {
#pragma unroll
      for (int k = 0; k < kNS; ++k) {
        sraw[k] = snext[k];
        zraw[k] = znext[k];
      }
      if (more) load_scales(next, snext, znext);
    } else if constexpr (kLoadScale) {
      load_scales(cur, sraw, zraw);
    }
    mbar_wait(full + s, uint32_t(i / kStages) & 1u);

    if constexpr (!kDyn) {
      // This tile's first vector of output (32-bit offsets from here on).
      XT* out_f = mut_ptr<XT>(p.x) + row * p.x_row_stride + v0 * kVec;  // dequantize's output
      uint8_t* q_out = mut_ptr<uint8_t>(p.q) + row * p.q_row_bytes + v0 * Kk::kQBytes;
      QP<C> rqp = tp;
      if constexpr (kLoadScale && kNS == 1) rqp = make_qp<Cfg, C>(C(widen(sraw[0])), zraw[0], Kk::kDivides);
      uint32_t slow = 0;
#pragma unroll
      for (int u = 0; u < Cfg::kUnroll; ++u) {
        const int lv = tid + u * kThreads;
        if (lv < nv) {
          QP<C> a = rqp;
          if constexpr (kLoadScale && kNS > 1) a = make_qp<Cfg, C>(C(widen(sraw[u])), zraw[u], Kk::kDivides);
          XVec xv;
          QVec qin, qo;
          XVec fo;
          if constexpr (Kk::kInQ) qin = load_q<Kk::kQBytes, true, false>(stage + lv * kInVec);
          else xv = *reinterpret_cast<const XVec*>(stage + lv * kInVec);
          const bool ok = Kk::template compute<Kk::kFast>(a, xv, xv, qin, qo, fo);
          if constexpr (Kk::kOutQ) store_q<Kk::kQBytes, true, Cfg::kHints>(q_out + lv * Kk::kQBytes, qo);
          else store_vec<XT, kVec, true, Cfg::kHints>(out_f + lv * kVec, fo);
          if constexpr (Kk::kFast) slow |= ok ? 0u : (1u << u);
        }
      }
      if constexpr (Kk::kFast) {
        if (slow != 0) {
#pragma unroll 1
          for (int u = 0; u < Cfg::kUnroll; ++u) {
            if (((slow >> u) & 1u) == 0) continue;
            const int64_t c = v0 + tid + int64_t(u) * kThreads;
            // (exact_unit reloads per-vector scales itself)
#pragma unroll 1
            for (int e = 0; e < kVec; e += Kk::kUnit) Kk::exact_unit(p, rqp, row, c * kVec + e);
          }
        }
      }
    } else {
      constexpr int kSegT = Cfg::kSegThreads;
      const int lane = tid % kSegT, sub = tid / kSegT;
      const uint32_t member = kSegT >= 32 ? 0xffffffffu : (((1u << kSegT) - 1u) << ((tid & 31) & ~(kSegT - 1)));
      const int64_t sv = p.seg_vectors, len = p.seg_len;
      const int64_t nsegs = p.seg_per_row == 1 ? 1 : nv / sv;
      const int64_t seg0 = row * p.seg_per_row + (p.seg_per_row == 1 ? 0 : v0 / sv);
      for (int64_t k = sub; k < nsegs; k += kThreads / kSegT) {
        const int64_t col0 = p.seg_per_row == 1 ? 0 : (v0 / sv + k) * len;
        const XT* xs = ptr<XT>(p.x) + row * p.x_row_stride + col0;
        uint8_t* qs = mut_ptr<uint8_t>(p.q) + row * p.q_row_bytes + col0 * Cfg::kBits / 8;
        const uint8_t* ss = stage + k * sv * kInVec;
        RangeFold<Cfg, XT> range;
        for (int64_t vi = lane; vi < sv; vi += kSegT) range.add(*reinterpret_cast<const XVec*>(ss + vi * kInVec));
#pragma unroll 1
        for (int64_t j = sv * kVec + lane; j < len; j += kSegT) range.add(C(widen(xs[j])));
        bool unchecked;
        const QP<C> a = segment_params<Cfg, kSegT>(p, range, member, lane, seg0 + k, unchecked);
        for (int64_t vi = lane; vi < sv; vi += kSegT) {
          const XVec v = *reinterpret_cast<const XVec*>(ss + vi * kInVec);
          QVec qo;
          if constexpr (Kk::kFast) {
            if (unchecked) {
              Kk::quantize_unchecked(a, v, qo);
              store_q<Kk::kQBytes, true, Cfg::kHints>(qs + vi * Kk::kQBytes, qo);
              continue;
            }
          }
          XVec unused;
          const bool ok = Kk::template compute<Kk::kFast>(a, v, v, qo, qo, unused);
          store_q<Kk::kQBytes, true, Cfg::kHints>(qs + vi * Kk::kQBytes, qo);
          if (Kk::kFast && !ok) {
#pragma unroll 1
            for (int e = 0; e < kVec; e += Kk::kUnit) segment_exact_unit<Cfg>(xs, qs, vi * kVec + e, len, a);
          }
        }
#pragma unroll 1
        for (int64_t j = sv * kVec + int64_t(lane) * Kk::kUnit; j < len; j += int64_t(kSegT) * Kk::kUnit)
          segment_exact_unit<Cfg>(xs, qs, j, len, a);
      }
    }
    block_sync();  // every thread is done with this stage
    if (tid == 0) {
      const int64_t tn = t + int64_t(kStages) * gridDim.x;
      if (tn < tiles) issue(tn, s);
    }
  }

  // Elementwise: each row's tail (fewer than kVec elements), exact.
  if constexpr (!kDyn) {
    const int64_t tail_start = p.chunks_per_row * kVec;
    if (tail_start < p.cols) {
      for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
        QP<C> rqp = tp;
        if constexpr (Cfg::kScope != 1 && Cfg::kScaleMode == 0) rqp = Kk::load_qp(p, Kk::row_index(p, row), false);
#pragma unroll 1
        for (int64_t col = tail_start + int64_t(tid) * Kk::kUnit; col < p.cols; col += int64_t(kThreads) * Kk::kUnit)
          Kk::exact_unit(p, rqp, row, col);
      }
    }
  }
}

}  // namespace qk
}  // namespace lowbit
