// Kernel parameters of the weight-only matmul family (wq_matmul.cuh,
// wq_repack.cuh). Included by both the kernels (through NVRTC) and the host
// (src/ops/wq.cpp), so the two can never disagree on the layout. Fixed-width
// fields only, 8-byte ones first.
#pragma once

namespace lowbit {

struct WqMatmulParams {
  uint64_t x;        // activations [m, k], rows x_stride apart (native act-order: the permuted copy)
  uint64_t y;        // output [m, n], rows y_stride apart
  uint64_t w;        // packed weights (native: start of the buffer)
  uint64_t scale;    // scales (native: buffer + scale_offset)
  uint64_t zero;     // packed zeros; 0 when symmetric
  uint64_t g_idx;    // GPTQ act-order g_idx; else 0
  uint64_t bias;     // [n] or 0
  uint64_t partial;  // split-K: f32 partials [splits][m_plan][n]; 0 = write y directly
  int64_t m;         // rows this run
  int64_t m_plan;    // row stride of the partials (the plan's m)
  int64_t n, k;
  int64_t x_stride, y_stride;
  int64_t ngroups;
  int64_t n_tiles;          // native: Np / 16
  int64_t k_steps;          // k-steps of the kernel (native: k-chunks of 64)
  int64_t steps_per_split;  // k-steps per blockIdx.y
  int64_t cluster_splits;   // prefill, sm_90: the splits of a tile form one thread block cluster and add
                            // their partials through distributed shared memory (partial = 0); else 0
  // Prefill stream-K (wq_gemm.cuh): stream_ctas = the grid's CTAs, each taking an equal share of every
  // tile's k-chunks laid end to end; partial = one f32 tile per CTA, stream_flags = one uint64 per CTA
  // (set to stream_nonce when its tile is written, cleared when consumed). 0 = tiles x splits grid.
  int64_t stream_ctas;
  uint64_t stream_flags;
  uint64_t stream_nonce;
};

// Sums the split-K partials in a fixed order, adds the bias, rounds to the
// activation type.
struct WqReduceParams {
  uint64_t partial;
  uint64_t y;
  uint64_t bias;
  int64_t m, m_plan, n, y_stride;
  int64_t splits;
};

// Native act-order: xp[r][i] = x[r][perm[i]].
struct WqPermuteParams {
  uint64_t x, xp, perm;
  int64_t m, k, x_stride;
};

// Repack of a source format into the native buffer.
struct WqRepackParams {
  uint64_t w, scale, zero, g_idx;  // source
  uint64_t out;                    // native buffer
  int64_t n, k, ngroups, group;
  int64_t np, kp, nt, kc;
  int64_t scale_offset, zero_offset, perm_offset;
  int64_t weight_words;  // 32-bit words of the weight section
};

}  // namespace lowbit
